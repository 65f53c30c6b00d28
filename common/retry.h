/* common/retry.h: the retry decision for one request, Envoy's RetryState as Istio configures it
 * (VirtualService http[].retries, or Istio's default policy when `retries` is unset).
 *
 * A policy (weir_retry_policy_t) is compiled once per route and owned, by value, by whoever
 * holds the route (the snapshot). A state (weir_retry_state_t) lives in the request, embedded,
 * and points at its policy, which must outlive it (the request holds the snapshot). The module
 * is pure: the back-off takes its random number as an argument and nothing reads the clock, so
 * tests drive every decision. It does not pick hosts: the caller excludes the hosts already
 * tried when the policy says so (Envoy's previous_hosts predicate). Loop thread only.
 *
 * The condition names (`retryOn`) live in one table in retry.c; the config parser maps names
 * with weir_retry_condition_from_name() and keeps integers as retriable status codes, as Istio
 * does (a status code in retryOn also turns on retriable-status-codes).
 *
 * Decisions follow Envoy's retry_state_impl.cc and router.cc:
 *  - a local overflow (circuit breaker) is never retried;
 *  - a response is retried on 5xx (500-599), gateway-error (502, 503, 504), retriable-4xx (409),
 *    retriable-status-codes (the policy's list), envoy-ratelimited (x-envoy-ratelimited present:
 *    only that condition retries it), or a gRPC condition matching the head's grpc-status;
 *    x-envoy-overloaded does not stop a retry (Envoy dropped that rule in 1.15, PR #10847);
 *  - a reset (a connect failure, a close before the response head, a per-try timeout) is retried
 *    on reset, 5xx or gateway-error; on connect-failure if it was a connect failure; on
 *    reset-before-request if no request byte ever went upstream on any attempt of the request
 *    (Envoy's sticky upstream_request_started_); on refused-stream if it was a refused stream;
 *  - a wanted retry with no retries left is "retry limit reached" (the caller adds flag URX);
 *  - Istio's `attempts: 0` emits no Envoy retry policy at all: a policy with num_retries 0 never
 *    retries and never reports the limit (no URX). */
#ifndef WEIR_RETRY_H
#define WEIR_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Envoy's retry conditions, one bit each: its x-envoy-retry-on conditions, then its
 * x-envoy-retry-grpc-on ones, which look at the grpc-status of the response head (trailers-only
 * responses). retriable-headers never matches (Istio cannot configure the header matchers it
 * needs) and http3-post-connect-failure never does (weir speaks no HTTP/3); both are accepted
 * so any retryOn Istio accepts parses. */
enum {
    WEIR_RETRY_ON_5XX = 1u << 0,
    WEIR_RETRY_ON_GATEWAY_ERROR = 1u << 1,
    WEIR_RETRY_ON_RESET = 1u << 2,
    WEIR_RETRY_ON_RESET_BEFORE_REQUEST = 1u << 3,
    WEIR_RETRY_ON_CONNECT_FAILURE = 1u << 4,
    WEIR_RETRY_ON_RETRIABLE_4XX = 1u << 5,
    WEIR_RETRY_ON_REFUSED_STREAM = 1u << 6,
    WEIR_RETRY_ON_RETRIABLE_STATUS_CODES = 1u << 7,
    WEIR_RETRY_ON_RETRIABLE_HEADERS = 1u << 8,
    WEIR_RETRY_ON_ENVOY_RATELIMITED = 1u << 9,
    WEIR_RETRY_ON_HTTP3_POST_CONNECT_FAILURE = 1u << 10,
    /* x-envoy-retry-grpc-on conditions: the head's grpc-status 1, 4, 13, 8, 14 */
    WEIR_RETRY_ON_CANCELLED = 1u << 11,
    WEIR_RETRY_ON_DEADLINE_EXCEEDED = 1u << 12,
    WEIR_RETRY_ON_INTERNAL = 1u << 13,
    WEIR_RETRY_ON_RESOURCE_EXHAUSTED = 1u << 14,
    WEIR_RETRY_ON_UNAVAILABLE = 1u << 15
};

#define WEIR_RETRY_MAX_STATUS_CODES 32
#define WEIR_RETRY_BASE_INTERVAL_MS 25 /* Envoy's upstream.base_retry_backoff_ms */

/* A route's retry policy. Plain data: copy it freely. */
typedef struct {
    uint32_t num_retries; /* Istio `attempts`: retries after the first try; 0 disables */
    uint32_t retry_on;    /* WEIR_RETRY_ON_* */
    uint16_t status_codes[WEIR_RETRY_MAX_STATUS_CODES]; /* for retriable-status-codes */
    uint32_t n_status_codes;
    uint64_t per_try_timeout_ms;          /* 0: none (each try bounded only by the route timeout) */
    uint64_t base_interval_ms;            /* Istio `retries.backoff`; 25 by default */
    uint64_t max_interval_ms;             /* 0: 10 x base, Envoy's default cap */
    bool retry_other_host;                /* Istio retryIgnorePreviousHosts (default true) */
    uint32_t host_selection_max_attempts; /* picks to find an untried host; Istio sets 5 */
} weir_retry_policy_t;

/* How an upstream attempt ended. */
typedef enum {
    WEIR_RETRY_OUTCOME_STATUS,          /* a response head arrived: status, grpc_status, flags */
    WEIR_RETRY_OUTCOME_CONNECT_FAILURE, /* refused, connect timeout, TLS handshake failure */
    WEIR_RETRY_OUTCOME_RESET_BEFORE_REQUEST, /* connected, closed before a request byte went out */
    WEIR_RETRY_OUTCOME_RESET,           /* closed or reset after the request went out, no head */
    WEIR_RETRY_OUTCOME_REFUSED_STREAM,  /* HTTP/2 REFUSED_STREAM (nothing was processed) */
    WEIR_RETRY_OUTCOME_PER_TRY_TIMEOUT, /* perTryTimeout expired; the request had gone out */
    WEIR_RETRY_OUTCOME_OVERFLOW         /* a local circuit breaker refused it: never retried */
} weir_retry_outcome_kind_t;

typedef struct {
    weir_retry_outcome_kind_t kind;
    int status;              /* STATUS: the HTTP status */
    int grpc_status;         /* STATUS: grpc-status in the head, -1 when absent */
    bool ratelimited;        /* STATUS: x-envoy-ratelimited present */
    bool overloaded;         /* STATUS: x-envoy-overloaded present (recorded; retried anyway) */
    bool retry_breaker_full; /* the cluster's max_retries circuit breaker has no room now */
} weir_retry_outcome_t;

typedef enum {
    WEIR_RETRY_NO,         /* not a retriable failure under the policy (or a success) */
    WEIR_RETRY_YES,        /* retry after weir_retry_backoff_ms() */
    WEIR_RETRY_NO_LIMIT,   /* retriable, but the retries are used up: add flag URX */
    WEIR_RETRY_NO_OVERFLOW /* retriable, but the max_retries breaker is full: add flag UO */
} weir_retry_status_t;

/* One request's retry state. Embedded in the request; start it with weir_retry_init(). */
typedef struct {
    const weir_retry_policy_t *policy;
    uint32_t retries_remaining;
    uint32_t attempt;         /* the attempt under way, from 1: x-envoy-attempt-count */
    uint64_t next_backoff_ms; /* upper bound (exclusive) of the next back-off */
    bool request_started;     /* some attempt reset after sending: no reset-before-request */
} weir_retry_state_t;

/* The bit for an Envoy retry condition name ("5xx", "gateway-error", "reset",
 * "reset-before-request", "connect-failure", "retriable-4xx", "refused-stream",
 * "retriable-status-codes", "retriable-headers", "envoy-ratelimited",
 * "http3-post-connect-failure", "cancelled", "deadline-exceeded", "internal",
 * "resource-exhausted", "unavailable"), or 0 for anything else. Exact and case-sensitive, as
 * Envoy; the caller trims. The _len form reads len bytes (no terminator needed). */
uint32_t weir_retry_condition_from_name(const char *name);
uint32_t weir_retry_condition_from_name_len(const char *name, size_t len);

/* The name of one condition bit, or NULL if `bit` is not exactly one known condition. */
const char *weir_retry_condition_name(uint32_t bit);

/* A policy that never retries: no conditions, no retries, base interval 25 ms, retry to other
 * hosts (Istio's default for that flag), 5 host selection attempts. */
void weir_retry_policy_init(weir_retry_policy_t *p);

/* Istio's default for a route without `retries` (reference S4): 2 retries on connect-failure,
 * refused-stream, unavailable, cancelled and retriable-status-codes with no codes listed (so a
 * 503 response is not retried), to a host not tried yet, 5 host selection attempts, no per-try
 * timeout, back-off 25 ms..250 ms. */
void weir_retry_policy_istio_default(weir_retry_policy_t *p);

/* Adds a code to the retriable status codes (Istio's integers in retryOn). A code already there
 * is not added again. Returns 0, or -1 if the code is outside 100..599 or the list is full. */
int weir_retry_policy_add_status_code(weir_retry_policy_t *p, unsigned code);

/* Starts a request's state on `policy` (which must outlive it): attempt 1, all retries left,
 * back-off at base. */
void weir_retry_init(weir_retry_state_t *st, const weir_retry_policy_t *policy);

/* Decides what to do after an attempt ended with `outcome`. On WEIR_RETRY_YES a retry is used
 * up and the attempt count moves on (the next attempt sends x-envoy-attempt-count with it); the
 * caller then waits weir_retry_backoff_ms() and tries again, on another host if the policy says
 * so. On anything else the caller answers with what it has (the response, or its local reply),
 * adding URX for WEIR_RETRY_NO_LIMIT and UO for WEIR_RETRY_NO_OVERFLOW. A success is simply
 * WEIR_RETRY_NO. */
weir_retry_status_t weir_retry_should_retry(weir_retry_state_t *st,
                                            const weir_retry_outcome_t *outcome);

/* The attempt under way (1 for the first try): the value of x-envoy-attempt-count. */
uint32_t weir_retry_attempt(const weir_retry_state_t *st);

/* The wait before the retry just granted: Envoy's fully jittered exponential back-off,
 * `random % interval` where interval starts at the base and, after each call, doubles while it
 * is below half the max (10 x base by default) and becomes the max otherwise: with 25 ms,
 * 0..24, 0..49, 0..99, 0..199, then 0..249 for good. */
uint64_t weir_retry_backoff_ms(weir_retry_state_t *st, uint64_t random);

/* A short name for a decision, for logs: "no", "yes", "retry limit reached", "retry overflow". */
const char *weir_retry_status_name(weir_retry_status_t s);

/* Outcome constructors. */
static inline weir_retry_outcome_t weir_retry_outcome_status(int status);
static inline weir_retry_outcome_t weir_retry_outcome(weir_retry_outcome_kind_t kind);

/* inline defs */

static inline weir_retry_outcome_t weir_retry_outcome_status(int status)
{
    weir_retry_outcome_t o = {WEIR_RETRY_OUTCOME_STATUS, status, -1, false, false, false};
    return o;
}

static inline weir_retry_outcome_t weir_retry_outcome(weir_retry_outcome_kind_t kind)
{
    weir_retry_outcome_t o = {kind, 0, -1, false, false, false};
    return o;
}

#endif
