/* common/retry.c: see retry.h. */
#include "common/retry.h"

#include <string.h>

/* The one table of retryOn names: Envoy's x-envoy-retry-on values, then its
 * x-envoy-retry-grpc-on values, which Istio accepts in the same list. */
static const struct {
    const char *name;
    uint32_t bit;
} conditions[] = {
    {"5xx", WEIR_RETRY_ON_5XX},
    {"gateway-error", WEIR_RETRY_ON_GATEWAY_ERROR},
    {"reset", WEIR_RETRY_ON_RESET},
    {"reset-before-request", WEIR_RETRY_ON_RESET_BEFORE_REQUEST},
    {"connect-failure", WEIR_RETRY_ON_CONNECT_FAILURE},
    {"retriable-4xx", WEIR_RETRY_ON_RETRIABLE_4XX},
    {"refused-stream", WEIR_RETRY_ON_REFUSED_STREAM},
    {"retriable-status-codes", WEIR_RETRY_ON_RETRIABLE_STATUS_CODES},
    {"retriable-headers", WEIR_RETRY_ON_RETRIABLE_HEADERS},
    {"envoy-ratelimited", WEIR_RETRY_ON_ENVOY_RATELIMITED},
    {"http3-post-connect-failure", WEIR_RETRY_ON_HTTP3_POST_CONNECT_FAILURE},
    {"cancelled", WEIR_RETRY_ON_CANCELLED},
    {"deadline-exceeded", WEIR_RETRY_ON_DEADLINE_EXCEEDED},
    {"internal", WEIR_RETRY_ON_INTERNAL},
    {"resource-exhausted", WEIR_RETRY_ON_RESOURCE_EXHAUSTED},
    {"unavailable", WEIR_RETRY_ON_UNAVAILABLE},
};

/* gRPC status codes (grpc/status.h) for the gRPC conditions. */
enum {
    GRPC_CANCELLED = 1,
    GRPC_DEADLINE_EXCEEDED = 4,
    GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14
};

uint32_t weir_retry_condition_from_name_len(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(conditions) / sizeof(conditions[0]); i++) {
        if (strlen(conditions[i].name) == len && memcmp(conditions[i].name, name, len) == 0)
            return conditions[i].bit;
    }
    return 0;
}

uint32_t weir_retry_condition_from_name(const char *name)
{
    return weir_retry_condition_from_name_len(name, strlen(name));
}

const char *weir_retry_condition_name(uint32_t bit)
{
    for (size_t i = 0; i < sizeof(conditions) / sizeof(conditions[0]); i++) {
        if (conditions[i].bit == bit)
            return conditions[i].name;
    }
    return NULL;
}

void weir_retry_policy_init(weir_retry_policy_t *p)
{
    memset(p, 0, sizeof(*p));
    p->base_interval_ms = WEIR_RETRY_BASE_INTERVAL_MS;
    p->retry_other_host = true;
    p->host_selection_max_attempts = 5;
}

void weir_retry_policy_istio_default(weir_retry_policy_t *p)
{
    weir_retry_policy_init(p);
    p->num_retries = 2;
    p->retry_on = WEIR_RETRY_ON_CONNECT_FAILURE | WEIR_RETRY_ON_REFUSED_STREAM |
                  WEIR_RETRY_ON_UNAVAILABLE | WEIR_RETRY_ON_CANCELLED |
                  WEIR_RETRY_ON_RETRIABLE_STATUS_CODES;
}

int weir_retry_policy_add_status_code(weir_retry_policy_t *p, unsigned code)
{
    if (code < 100 || code > 599)
        return -1;
    for (uint32_t i = 0; i < p->n_status_codes; i++) {
        if (p->status_codes[i] == code)
            return 0;
    }
    if (p->n_status_codes == WEIR_RETRY_MAX_STATUS_CODES)
        return -1;
    p->status_codes[p->n_status_codes++] = (uint16_t)code;
    return 0;
}

void weir_retry_init(weir_retry_state_t *st, const weir_retry_policy_t *policy)
{
    st->policy = policy;
    st->retries_remaining = policy->num_retries;
    st->attempt = 1;
    st->next_backoff_ms = policy->base_interval_ms ? policy->base_interval_ms : 1;
    st->request_started = false;
}

static bool grpc_matches(uint32_t on, int grpc_status)
{
    switch (grpc_status) {
    case GRPC_CANCELLED:
        return on & WEIR_RETRY_ON_CANCELLED;
    case GRPC_DEADLINE_EXCEEDED:
        return on & WEIR_RETRY_ON_DEADLINE_EXCEEDED;
    case GRPC_RESOURCE_EXHAUSTED:
        return on & WEIR_RETRY_ON_RESOURCE_EXHAUSTED;
    case GRPC_INTERNAL:
        return on & WEIR_RETRY_ON_INTERNAL;
    case GRPC_UNAVAILABLE:
        return on & WEIR_RETRY_ON_UNAVAILABLE;
    default:
        return false;
    }
}

/* Envoy's wouldRetryFromHeaders. */
static bool would_retry_status(const weir_retry_policy_t *p, const weir_retry_outcome_t *o)
{
    uint32_t on = p->retry_on;
    int s = o->status;

    /* x-envoy-ratelimited comes from an upstream Envoy that shed the request on purpose: only
     * the condition named for it may retry it, whatever the status. */
    if (o->ratelimited)
        return on & WEIR_RETRY_ON_ENVOY_RATELIMITED;
    if ((on & WEIR_RETRY_ON_5XX) && s >= 500 && s < 600)
        return true;
    if ((on & WEIR_RETRY_ON_GATEWAY_ERROR) && (s == 502 || s == 503 || s == 504))
        return true;
    if ((on & WEIR_RETRY_ON_RETRIABLE_4XX) && s == 409)
        return true;
    if (on & WEIR_RETRY_ON_RETRIABLE_STATUS_CODES) {
        for (uint32_t i = 0; i < p->n_status_codes; i++) {
            if (p->status_codes[i] == s)
                return true;
        }
    }
    if (o->grpc_status >= 0 && grpc_matches(on, o->grpc_status))
        return true;
    return false;
}

/* Envoy's wouldRetryFromReset, for every outcome that is not a response head. */
static bool would_retry_reset(const weir_retry_policy_t *p, const weir_retry_outcome_t *o,
                              bool request_started)
{
    uint32_t on = p->retry_on;

    if (o->kind == WEIR_RETRY_OUTCOME_OVERFLOW)
        return false; /* our own circuit breaker: retrying would only add load */
    if (o->kind == WEIR_RETRY_OUTCOME_CONNECT_FAILURE && (on & WEIR_RETRY_ON_CONNECT_FAILURE))
        return true;
    if ((on & WEIR_RETRY_ON_RESET_BEFORE_REQUEST) && !request_started)
        return true;
    if (on & (WEIR_RETRY_ON_RESET | WEIR_RETRY_ON_5XX | WEIR_RETRY_ON_GATEWAY_ERROR))
        return true; /* a reset becomes a 503 or 504, so the 5xx conditions cover it too */
    if ((on & WEIR_RETRY_ON_REFUSED_STREAM) && o->kind == WEIR_RETRY_OUTCOME_REFUSED_STREAM)
        return true;
    return false;
}

weir_retry_status_t weir_retry_should_retry(weir_retry_state_t *st,
                                            const weir_retry_outcome_t *outcome)
{
    const weir_retry_policy_t *p = st->policy;

    /* Envoy's router marks the request started once any attempt that ends in a reset had sent
     * bytes upstream, and never clears it: from then on reset-before-request cannot retry. A
     * refused stream had sent its HEADERS frame; a timed-out try had sent its request. */
    if (outcome->kind == WEIR_RETRY_OUTCOME_RESET ||
        outcome->kind == WEIR_RETRY_OUTCOME_REFUSED_STREAM ||
        outcome->kind == WEIR_RETRY_OUTCOME_PER_TRY_TIMEOUT)
        st->request_started = true;

    /* Istio turns `attempts: 0` into no retry policy at all, so Envoy has no retry state to
     * report a limit from: the failure goes back as it is, without URX. */
    if (p->num_retries == 0 || p->retry_on == 0)
        return WEIR_RETRY_NO;

    bool would = outcome->kind == WEIR_RETRY_OUTCOME_STATUS
                     ? would_retry_status(p, outcome)
                     : would_retry_reset(p, outcome, st->request_started);
    if (!would)
        return WEIR_RETRY_NO;
    if (st->retries_remaining == 0)
        return WEIR_RETRY_NO_LIMIT;
    /* Envoy spends the retry before asking the breaker, so an overflow still uses one up. */
    st->retries_remaining--;
    if (outcome->retry_breaker_full)
        return WEIR_RETRY_NO_OVERFLOW;
    st->attempt++;
    return WEIR_RETRY_YES;
}

uint32_t weir_retry_attempt(const weir_retry_state_t *st)
{
    return st->attempt;
}

uint64_t weir_retry_backoff_ms(weir_retry_state_t *st, uint64_t random)
{
    const weir_retry_policy_t *p = st->policy;
    uint64_t base = p->base_interval_ms ? p->base_interval_ms : 1;
    uint64_t max = p->max_interval_ms ? p->max_interval_ms : 10 * base;
    if (max < base)
        max = base;

    uint64_t interval = st->next_backoff_ms;
    if (interval == 0)
        interval = base; /* a state that was zeroed rather than initialised */
    /* Double while the double stays within the cap, else jump to the cap, as Envoy's
     * JitteredExponentialBackOffStrategy (which also never overflows this way). */
    st->next_backoff_ms = interval < max / 2 ? interval * 2 : max;
    return random % interval;
}

const char *weir_retry_status_name(weir_retry_status_t s)
{
    switch (s) {
    case WEIR_RETRY_NO:
        return "no";
    case WEIR_RETRY_YES:
        return "yes";
    case WEIR_RETRY_NO_LIMIT:
        return "retry limit reached";
    case WEIR_RETRY_NO_OVERFLOW:
        return "retry overflow";
    }
    return "?";
}
