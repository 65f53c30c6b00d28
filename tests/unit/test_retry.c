/* tests/unit/test_retry.c: the retry decision, driven outcome by outcome. Tests named
 * envoy_<Case> replay the case of that name in Envoy's test/common/router/retry_state_impl_test.cc
 * (x-envoy-retry-on request headers there are policy bits here; Envoy's default of one retry
 * for header-enabled policies is num_retries 1); t9_* are case T9 of
 * shared/reference/istio-semantics.md section 7; the rest check Istio's default policy (S4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/retry.h"

static weir_retry_policy_t policy(uint32_t retry_on, uint32_t num_retries)
{
    weir_retry_policy_t p;
    weir_retry_policy_init(&p);
    p.retry_on = retry_on;
    p.num_retries = num_retries;
    return p;
}

static weir_retry_status_t on_status(weir_retry_state_t *st, int status)
{
    weir_retry_outcome_t o = weir_retry_outcome_status(status);
    return weir_retry_should_retry(st, &o);
}

static weir_retry_status_t on_grpc(weir_retry_state_t *st, int grpc_status)
{
    weir_retry_outcome_t o = weir_retry_outcome_status(200);
    o.grpc_status = grpc_status;
    return weir_retry_should_retry(st, &o);
}

static weir_retry_status_t on(weir_retry_state_t *st, weir_retry_outcome_kind_t kind)
{
    weir_retry_outcome_t o = weir_retry_outcome(kind);
    return weir_retry_should_retry(st, &o);
}

/* Envoy's verifyPolicyWithRemoteResponse: one retry on that response, then the limit. */
static void retried_once_then_limit(uint32_t retry_on, int status, int grpc_status)
{
    weir_retry_policy_t p = policy(retry_on, 1);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    weir_retry_outcome_t o = weir_retry_outcome_status(status);
    o.grpc_status = grpc_status;
    assert_int_equal(weir_retry_should_retry(&st, &o), WEIR_RETRY_YES);
    assert_int_equal(weir_retry_should_retry(&st, &o), WEIR_RETRY_NO_LIMIT);
}

/* ---- condition names ---- */

/* Every name Istio's validation accepts maps to one distinct bit, and back. */
static void test_condition_names(void **state)
{
    static const char *const names[] = {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    };
    uint32_t seen = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        uint32_t bit = weir_retry_condition_from_name(names[i]);
        assert_int_not_equal(bit, 0);
        assert_int_equal(bit & (bit - 1), 0);
        assert_int_equal(seen & bit, 0);
        seen |= bit;
        assert_string_equal(weir_retry_condition_name(bit), names[i]);
    }
    assert_int_equal(weir_retry_condition_from_name("5xx"), WEIR_RETRY_ON_5XX);
    assert_int_equal(weir_retry_condition_from_name("unavailable"), WEIR_RETRY_ON_UNAVAILABLE);
    assert_int_equal(weir_retry_condition_from_name("reset-before-request"),
                     WEIR_RETRY_ON_RESET_BEFORE_REQUEST);
}

/* Envoy's ParseRetryOn: unknown, misspelt, padded or differently cased names are not
 * conditions (the parser trims; the table does not guess). */
static void envoy_ParseRetryOn(void **state)
{
    assert_int_equal(weir_retry_condition_from_name("xxx"), 0);
    assert_int_equal(weir_retry_condition_from_name(" 5xx"), 0);
    assert_int_equal(weir_retry_condition_from_name("5 xx"), 0);
    assert_int_equal(weir_retry_condition_from_name("5XX"), 0);
    assert_int_equal(weir_retry_condition_from_name("resource-exhaust"), 0);
    assert_int_equal(weir_retry_condition_from_name(""), 0);
    assert_int_equal(weir_retry_condition_from_name("503"), 0); /* codes are the parser's */

    /* The _len form reads a piece of a comma list in place. */
    const char *list = "5xx,gateway-error,connect-failure";
    assert_int_equal(weir_retry_condition_from_name_len(list, 3), WEIR_RETRY_ON_5XX);
    assert_int_equal(weir_retry_condition_from_name_len(list + 4, 13), WEIR_RETRY_ON_GATEWAY_ERROR);
    assert_int_equal(weir_retry_condition_from_name_len(list + 4, 12), 0);
    assert_int_equal(weir_retry_condition_from_name_len(list + 18, strlen(list + 18)),
                     WEIR_RETRY_ON_CONNECT_FAILURE);

    assert_null(weir_retry_condition_name(0));
    assert_null(weir_retry_condition_name(WEIR_RETRY_ON_5XX | WEIR_RETRY_ON_RESET));
}

/* ---- Envoy's cases ---- */

static void envoy_PolicyRefusedStream(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_REFUSED_STREAM, 1);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_REFUSED_STREAM), WEIR_RETRY_YES);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_REFUSED_STREAM), WEIR_RETRY_NO_LIMIT);
    /* Other resets are not refused streams. */
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_NO);
}

static void envoy_Policy5xxResetOverflow(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_5XX, 1);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_OVERFLOW), WEIR_RETRY_NO);
}

static void envoy_Policy5xxRemoteReset(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_5XX, 1);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_YES);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_NO_LIMIT);
}

static void envoy_Policy5xxRemote503(void **state)
{
    retried_once_then_limit(WEIR_RETRY_ON_5XX, 503, -1);
    retried_once_then_limit(WEIR_RETRY_ON_5XX, 500, -1);
    retried_once_then_limit(WEIR_RETRY_ON_5XX, 599, -1);
}

/* Envoy's case expected no retry when the upstream sets x-envoy-overloaded; Envoy 1.15 changed
 * that (PR #10847, "allow retries by default when upstream responds with x-envoy-overloaded")
 * and current Envoy retries it like any 503. weir follows current Envoy. */
static void envoy_Policy5xxRemote503Overloaded(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_5XX, 1);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    weir_retry_outcome_t o = weir_retry_outcome_status(503);
    o.overloaded = true;
    assert_int_equal(weir_retry_should_retry(&st, &o), WEIR_RETRY_YES);
}

/* x-envoy-ratelimited: only envoy-ratelimited retries it, whatever else matches. */
static void envoy_PolicyResourceExhaustedRemoteRateLimited(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_RESOURCE_EXHAUSTED | WEIR_RETRY_ON_5XX, 1);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    weir_retry_outcome_t o = weir_retry_outcome_status(200);
    o.grpc_status = 8;
    o.ratelimited = true;
    assert_int_equal(weir_retry_should_retry(&st, &o), WEIR_RETRY_NO);
    o = weir_retry_outcome_status(503);
    o.ratelimited = true;
    assert_int_equal(weir_retry_should_retry(&st, &o), WEIR_RETRY_NO);

    p.retry_on |= WEIR_RETRY_ON_ENVOY_RATELIMITED;
    weir_retry_init(&st, &p);
    o = weir_retry_outcome_status(429);
    o.ratelimited = true;
    assert_int_equal(weir_retry_should_retry(&st, &o), WEIR_RETRY_YES);
}

static void envoy_PolicyGatewayErrorRemote502(void **state)
{
    retried_once_then_limit(WEIR_RETRY_ON_GATEWAY_ERROR, 502, -1);
}

static void envoy_PolicyGatewayErrorRemote503(void **state)
{
    retried_once_then_limit(WEIR_RETRY_ON_GATEWAY_ERROR, 503, -1);
}

static void envoy_PolicyGatewayErrorRemote504(void **state)
{
    retried_once_then_limit(WEIR_RETRY_ON_GATEWAY_ERROR, 504, -1);
}

/* gateway-error is 502, 503 and 504 only. */
static void test_gateway_error_not_500(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_GATEWAY_ERROR, 3);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on_status(&st, 500), WEIR_RETRY_NO);
    assert_int_equal(on_status(&st, 501), WEIR_RETRY_NO);
    assert_int_equal(on_status(&st, 505), WEIR_RETRY_NO);
    assert_int_equal(on_status(&st, 429), WEIR_RETRY_NO);
    assert_int_equal(st.retries_remaining, 3);
}

static void envoy_PolicyGatewayErrorResetOverflow(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_GATEWAY_ERROR, 1);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_OVERFLOW), WEIR_RETRY_NO);
}

static void envoy_PolicyGatewayErrorRemoteReset(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_GATEWAY_ERROR, 1);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_YES);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_NO_LIMIT);
}

static void envoy_PolicyGrpcCancelled(void **state)
{
    retried_once_then_limit(WEIR_RETRY_ON_CANCELLED, 200, 1);
}

static void envoy_PolicyGrpcDeadlineExceeded(void **state)
{
    retried_once_then_limit(WEIR_RETRY_ON_DEADLINE_EXCEEDED, 200, 4);
}

static void envoy_PolicyGrpcResourceExhausted(void **state)
{
    retried_once_then_limit(WEIR_RETRY_ON_RESOURCE_EXHAUSTED, 200, 8);
}

static void envoy_PolicyGrpcUnavilable(void **state)
{
    retried_once_then_limit(WEIR_RETRY_ON_UNAVAILABLE, 200, 14);
}

static void envoy_PolicyGrpcInternal(void **state)
{
    retried_once_then_limit(WEIR_RETRY_ON_INTERNAL, 200, 13);
}

/* A gRPC condition needs its own grpc-status; HTTP statuses never match it. */
static void test_grpc_conditions_need_grpc_status(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_UNAVAILABLE | WEIR_RETRY_ON_CANCELLED, 2);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on_status(&st, 503), WEIR_RETRY_NO);
    assert_int_equal(on_grpc(&st, 4), WEIR_RETRY_NO); /* deadline-exceeded: not asked for */
    assert_int_equal(on_grpc(&st, 0), WEIR_RETRY_NO); /* OK */
    assert_int_equal(on_grpc(&st, 14), WEIR_RETRY_YES);
    assert_int_equal(on_grpc(&st, 1), WEIR_RETRY_YES);
}

/* A success is "no"; a reset afterwards (another attempt) is judged on its own. */
static void envoy_Policy5xxRemote200RemoteReset(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_5XX, 1);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on_status(&st, 200), WEIR_RETRY_NO);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_YES);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_NO_LIMIT);
}

static void envoy_PolicyConnectFailureOtherReset(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_CONNECT_FAILURE, 1);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_NO);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET_BEFORE_REQUEST), WEIR_RETRY_NO);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_PER_TRY_TIMEOUT), WEIR_RETRY_NO);
    assert_int_equal(on_status(&st, 503), WEIR_RETRY_NO);
}

static void envoy_PolicyConnectFailureResetConnectFailure(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_CONNECT_FAILURE, 1);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_CONNECT_FAILURE), WEIR_RETRY_YES);
}

static void envoy_PolicyRetriable4xxRetry(void **state)
{
    retried_once_then_limit(WEIR_RETRY_ON_RETRIABLE_4XX, 409, -1);
}

static void envoy_PolicyRetriable4xxNoRetry(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_RETRIABLE_4XX, 1);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on_status(&st, 400), WEIR_RETRY_NO);
    assert_int_equal(on_status(&st, 404), WEIR_RETRY_NO);
}

static void envoy_PolicyRetriable4xxReset(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_RETRIABLE_4XX, 1);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_NO);
}

static void envoy_RetriableStatusCodes(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_RETRIABLE_STATUS_CODES, 1);
    assert_int_equal(weir_retry_policy_add_status_code(&p, 409), 0);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on_status(&st, 200), WEIR_RETRY_NO);
    assert_int_equal(on_status(&st, 503), WEIR_RETRY_NO);
    assert_int_equal(on_status(&st, 409), WEIR_RETRY_YES);
    assert_int_equal(on_status(&st, 409), WEIR_RETRY_NO_LIMIT);
}

static void envoy_RetriableStatusCodesUpstreamReset(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_RETRIABLE_STATUS_CODES, 1);
    weir_retry_policy_add_status_code(&p, 409);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_NO);
}

/* A list of codes, kept without duplicates, bounded, and only for retriable-status-codes. */
static void test_retriable_status_code_list(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_RETRIABLE_STATUS_CODES, 5);
    assert_int_equal(weir_retry_policy_add_status_code(&p, 503), 0);
    assert_int_equal(weir_retry_policy_add_status_code(&p, 429), 0);
    assert_int_equal(weir_retry_policy_add_status_code(&p, 503), 0);
    assert_int_equal(p.n_status_codes, 2);
    assert_int_equal(weir_retry_policy_add_status_code(&p, 99), -1);
    assert_int_equal(weir_retry_policy_add_status_code(&p, 600), -1);

    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on_status(&st, 503), WEIR_RETRY_YES);
    assert_int_equal(on_status(&st, 429), WEIR_RETRY_YES);
    assert_int_equal(on_status(&st, 502), WEIR_RETRY_NO);

    /* The codes do nothing without the condition. */
    p.retry_on = WEIR_RETRY_ON_CONNECT_FAILURE;
    weir_retry_init(&st, &p);
    assert_int_equal(on_status(&st, 503), WEIR_RETRY_NO);

    weir_retry_policy_t full = policy(WEIR_RETRY_ON_RETRIABLE_STATUS_CODES, 1);
    for (unsigned c = 0; c < WEIR_RETRY_MAX_STATUS_CODES; c++)
        assert_int_equal(weir_retry_policy_add_status_code(&full, 400 + c), 0);
    assert_int_equal(weir_retry_policy_add_status_code(&full, 599), -1);
}

static void envoy_PolicyResetRemoteReset(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_RESET, 1);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_YES);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_NO_LIMIT);
}

/* `reset` covers every kind of reset, but not responses nor overflow. */
static void test_reset_covers_every_reset(void **state)
{
    static const weir_retry_outcome_kind_t resets[] = {
        WEIR_RETRY_OUTCOME_CONNECT_FAILURE, WEIR_RETRY_OUTCOME_RESET_BEFORE_REQUEST,
        WEIR_RETRY_OUTCOME_RESET,           WEIR_RETRY_OUTCOME_REFUSED_STREAM,
        WEIR_RETRY_OUTCOME_PER_TRY_TIMEOUT,
    };
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_RESET, 1);
    weir_retry_state_t st;
    for (size_t i = 0; i < sizeof(resets) / sizeof(resets[0]); i++) {
        weir_retry_init(&st, &p);
        assert_int_equal(on(&st, resets[i]), WEIR_RETRY_YES);
    }
    weir_retry_init(&st, &p);
    assert_int_equal(on_status(&st, 503), WEIR_RETRY_NO);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_OVERFLOW), WEIR_RETRY_NO);
}

/* Envoy's integration case RouterRetryOnResetBeforeRequestBeforeHeaders: reset-before-request
 * retries a reset or connect failure that happened before any byte went upstream. */
static void envoy_RouterRetryOnResetBeforeRequestBeforeHeaders(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_RESET_BEFORE_REQUEST, 3);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET_BEFORE_REQUEST), WEIR_RETRY_YES);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_CONNECT_FAILURE), WEIR_RETRY_YES);
    assert_int_equal(on_status(&st, 503), WEIR_RETRY_NO);
}

/* ...and its AfterHeaders twin: once an attempt reset after sending (or timed out after
 * sending), reset-before-request retries nothing more for this request, as Envoy's sticky
 * upstream_request_started_. */
static void envoy_RouterRetryOnResetBeforeRequestAfterHeaders(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_RESET_BEFORE_REQUEST, 3);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_NO);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET_BEFORE_REQUEST), WEIR_RETRY_NO);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_CONNECT_FAILURE), WEIR_RETRY_NO);

    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_PER_TRY_TIMEOUT), WEIR_RETRY_NO);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET_BEFORE_REQUEST), WEIR_RETRY_NO);

    /* A response does not mark the request started (Envoy marks it on resets only). */
    p.retry_on |= WEIR_RETRY_ON_5XX;
    weir_retry_init(&st, &p);
    assert_int_equal(on_status(&st, 503), WEIR_RETRY_YES);
    assert_false(st.request_started);
    p.retry_on = WEIR_RETRY_ON_RESET_BEFORE_REQUEST;
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET_BEFORE_REQUEST), WEIR_RETRY_YES);

    /* connect-failure still retries a connect failure after a started attempt. */
    p.retry_on = WEIR_RETRY_ON_RESET_BEFORE_REQUEST | WEIR_RETRY_ON_CONNECT_FAILURE;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_NO);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_CONNECT_FAILURE), WEIR_RETRY_YES);
}

/* A per-try timeout is a reset to Envoy: 5xx, gateway-error and reset retry it; connect-failure,
 * retriable-status-codes and the gRPC conditions do not. */
static void test_per_try_timeout(void **state)
{
    static const uint32_t yes[] = {WEIR_RETRY_ON_5XX, WEIR_RETRY_ON_GATEWAY_ERROR,
                                   WEIR_RETRY_ON_RESET};
    static const uint32_t no[] = {
        WEIR_RETRY_ON_CONNECT_FAILURE, WEIR_RETRY_ON_RETRIABLE_STATUS_CODES,
        WEIR_RETRY_ON_REFUSED_STREAM, WEIR_RETRY_ON_RETRIABLE_4XX, WEIR_RETRY_ON_UNAVAILABLE};
    weir_retry_state_t st;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        weir_retry_policy_t p = policy(yes[i], 1);
        weir_retry_init(&st, &p);
        assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_PER_TRY_TIMEOUT), WEIR_RETRY_YES);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        weir_retry_policy_t p = policy(no[i], 1);
        weir_retry_init(&st, &p);
        assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_PER_TRY_TIMEOUT), WEIR_RETRY_NO);
    }
}

/* Overflow is never retried, whatever the policy. */
static void test_overflow_never_retried(void **state)
{
    weir_retry_policy_t p = policy(0xffffffffu, 5);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_OVERFLOW), WEIR_RETRY_NO);
    assert_int_equal(st.retries_remaining, 5);
    assert_int_equal(weir_retry_attempt(&st), 1);
}

/* Envoy's NoAvailableRetries: a wanted retry with the max_retries breaker full is an overflow
 * (flag UO), and it spends the retry as Envoy does. */
static void envoy_NoAvailableRetries(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_CONNECT_FAILURE, 2);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    weir_retry_outcome_t o = weir_retry_outcome(WEIR_RETRY_OUTCOME_CONNECT_FAILURE);
    o.retry_breaker_full = true;
    assert_int_equal(weir_retry_should_retry(&st, &o), WEIR_RETRY_NO_OVERFLOW);
    assert_int_equal(st.retries_remaining, 1);
    assert_int_equal(weir_retry_attempt(&st), 1);
    /* A full breaker does not matter when nothing would be retried. */
    o = weir_retry_outcome_status(200);
    o.retry_breaker_full = true;
    assert_int_equal(weir_retry_should_retry(&st, &o), WEIR_RETRY_NO);
}

/* Envoy's MaxRetriesHeader, with the count from the policy: three retries, then the limit. */
static void envoy_MaxRetriesHeader(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_CONNECT_FAILURE | WEIR_RETRY_ON_CANCELLED, 3);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    for (int i = 0; i < 3; i++)
        assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_CONNECT_FAILURE), WEIR_RETRY_YES);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_CONNECT_FAILURE), WEIR_RETRY_NO_LIMIT);
    assert_int_equal(weir_retry_attempt(&st), 4);
}

/* Envoy's NoPreferredOverLimitExceeded: with no retries left, a good response is "no", not
 * "limit reached". */
static void envoy_NoPreferredOverLimitExceeded(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_5XX, 1);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on_status(&st, 503), WEIR_RETRY_YES);
    assert_int_equal(on_status(&st, 200), WEIR_RETRY_NO);
}

/* Envoy's RouteConfigNoRetriesAllowed gives "limit exceeded" for num_retries 0. Istio never
 * emits that: `attempts: 0` removes the retry policy, so the failure is returned without URX.
 * weir models Istio's translation. */
static void envoy_RouteConfigNoRetriesAllowed(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_CONNECT_FAILURE, 0);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_CONNECT_FAILURE), WEIR_RETRY_NO);
    assert_int_equal(weir_retry_attempt(&st), 1);
}

/* Envoy's PolicyNoneRemoteReset: no conditions, no retries. */
static void envoy_PolicyNoneRemoteReset(void **state)
{
    weir_retry_policy_t p;
    weir_retry_policy_init(&p);
    p.num_retries = 3;
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_NO);
    assert_int_equal(on_status(&st, 503), WEIR_RETRY_NO);
}

/* Envoy's Backoff: base 25 ms, random 190 each time: 190 % 25, % 50, % 100. */
static void envoy_Backoff(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_CONNECT_FAILURE, 3);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_CONNECT_FAILURE), WEIR_RETRY_YES);
    assert_int_equal(weir_retry_backoff_ms(&st, 190), 15);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_CONNECT_FAILURE), WEIR_RETRY_YES);
    assert_int_equal(weir_retry_backoff_ms(&st, 190), 40);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_CONNECT_FAILURE), WEIR_RETRY_YES);
    assert_int_equal(weir_retry_backoff_ms(&st, 190), 90);
    assert_int_equal(on_status(&st, 200), WEIR_RETRY_NO);
}

/* Envoy's CustomBackOffInterval: base 100 ms, max 1200 ms. */
static void envoy_CustomBackOffInterval(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_CONNECT_FAILURE, 10);
    p.base_interval_ms = 100;
    p.max_interval_ms = 1200;
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(weir_retry_backoff_ms(&st, 149), 49);
    assert_int_equal(weir_retry_backoff_ms(&st, 350), 150);
    assert_int_equal(weir_retry_backoff_ms(&st, 751), 351);
    assert_int_equal(weir_retry_backoff_ms(&st, 2399), 799);
    assert_int_equal(weir_retry_backoff_ms(&st, 2399), 1199);
}

/* Envoy's CustomBackOffIntervalDefaultMax: base 100 ms, max 10 x base. */
static void envoy_CustomBackOffIntervalDefaultMax(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_CONNECT_FAILURE, 10);
    p.base_interval_ms = 100;
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(weir_retry_backoff_ms(&st, 149), 49);
    assert_int_equal(weir_retry_backoff_ms(&st, 350), 150);
    assert_int_equal(weir_retry_backoff_ms(&st, 751), 351);
    assert_int_equal(weir_retry_backoff_ms(&st, 2999), 599);
    assert_int_equal(weir_retry_backoff_ms(&st, 2999), 999);
}

/* Over driven random values the default back-off stays within [0, 25), [0, 50), [0, 100),
 * [0, 200), then [0, 250) forever, and reaches each bound minus one. */
static void test_backoff_bounds(void **state)
{
    static const uint64_t bound[] = {25, 50, 100, 200, 250, 250, 250, 250};
    static const uint64_t randoms[] = {0, 1, 24, 25, 49, 99, 199, 249, 250, 12345, UINT64_MAX};
    weir_retry_policy_t p;
    weir_retry_policy_istio_default(&p);
    for (size_t r = 0; r < sizeof(randoms) / sizeof(randoms[0]); r++) {
        weir_retry_state_t st;
        weir_retry_init(&st, &p);
        for (size_t k = 0; k < sizeof(bound) / sizeof(bound[0]); k++) {
            uint64_t b = weir_retry_backoff_ms(&st, randoms[r]);
            assert_true(b < bound[k]);
            assert_int_equal(b, randoms[r] % bound[k]);
        }
    }
    for (size_t k = 0; k < sizeof(bound) / sizeof(bound[0]); k++) {
        weir_retry_state_t st;
        weir_retry_init(&st, &p);
        for (size_t j = 0; j < k; j++)
            weir_retry_backoff_ms(&st, 0);
        assert_int_equal(weir_retry_backoff_ms(&st, bound[k] - 1), bound[k] - 1);
    }
}

/* A max below base is treated as base: the wait never exceeds it. */
static void test_backoff_max_below_base(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_RESET, 5);
    p.base_interval_ms = 100;
    p.max_interval_ms = 40;
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    for (int i = 0; i < 5; i++)
        assert_true(weir_retry_backoff_ms(&st, 99999) < 100);
}

/* The interval doubles only while it is below half the max (Envoy's doubling limit, integer
 * division), else it jumps to the max: with base 1 and max 3 the bounds are 1, 3, 3. */
static void test_backoff_doubling_limit(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_RESET, 5);
    p.base_interval_ms = 1;
    p.max_interval_ms = 3;
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(weir_retry_backoff_ms(&st, 2), 0);
    assert_int_equal(weir_retry_backoff_ms(&st, 2), 2);
    assert_int_equal(weir_retry_backoff_ms(&st, 5), 2);
}

/* ---- Istio's default policy (S4) ---- */

static void test_istio_default_policy_fields(void **state)
{
    weir_retry_policy_t p;
    weir_retry_policy_istio_default(&p);
    assert_int_equal(p.num_retries, 2);
    assert_int_equal(p.retry_on, WEIR_RETRY_ON_CONNECT_FAILURE | WEIR_RETRY_ON_REFUSED_STREAM |
                                     WEIR_RETRY_ON_UNAVAILABLE | WEIR_RETRY_ON_CANCELLED |
                                     WEIR_RETRY_ON_RETRIABLE_STATUS_CODES);
    assert_int_equal(p.n_status_codes, 0);
    assert_true(p.retry_other_host);
    assert_int_equal(p.host_selection_max_attempts, 5);
    assert_int_equal(p.per_try_timeout_ms, 0);
    assert_int_equal(p.base_interval_ms, 25);
    assert_int_equal(p.max_interval_ms, 0); /* 10 x base */
}

/* The default policy does not retry a 503 (nor any response without a gRPC status), does not
 * retry a reset after the request went out nor a timeout, and retries a connect failure twice,
 * then reports the limit. */
static void test_istio_default_policy_decisions(void **state)
{
    weir_retry_policy_t p;
    weir_retry_policy_istio_default(&p);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on_status(&st, 503), WEIR_RETRY_NO);
    assert_int_equal(on_status(&st, 500), WEIR_RETRY_NO);
    assert_int_equal(on_status(&st, 502), WEIR_RETRY_NO);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET), WEIR_RETRY_NO);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_RESET_BEFORE_REQUEST), WEIR_RETRY_NO);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_PER_TRY_TIMEOUT), WEIR_RETRY_NO);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_OVERFLOW), WEIR_RETRY_NO);
    assert_int_equal(weir_retry_attempt(&st), 1);

    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_CONNECT_FAILURE), WEIR_RETRY_YES);
    assert_int_equal(weir_retry_attempt(&st), 2);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_REFUSED_STREAM), WEIR_RETRY_YES);
    assert_int_equal(weir_retry_attempt(&st), 3);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_CONNECT_FAILURE), WEIR_RETRY_NO_LIMIT);
    assert_string_equal(weir_retry_status_name(WEIR_RETRY_NO_LIMIT), "retry limit reached");

    /* gRPC UNAVAILABLE and CANCELLED are retried. */
    weir_retry_init(&st, &p);
    assert_int_equal(on_grpc(&st, 14), WEIR_RETRY_YES);
    assert_int_equal(on_grpc(&st, 1), WEIR_RETRY_YES);
    assert_int_equal(on_grpc(&st, 14), WEIR_RETRY_NO_LIMIT);
}

/* ---- T9 ---- */

/* T9: retries {attempts: 3, retryOn: "503"} (Istio: code 503 + retriable-status-codes);
 * upstream answers 503, 503, 200: the client gets 200 and the attempts carry
 * x-envoy-attempt-count 1, 2, 3. */
static void t9_retry_on_503_three_attempts(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_RETRIABLE_STATUS_CODES, 3);
    weir_retry_policy_add_status_code(&p, 503);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    static const int answers[] = {503, 503, 200};
    uint32_t seen[3];
    size_t n = 0;
    for (;;) {
        seen[n] = weir_retry_attempt(&st);
        weir_retry_status_t s = on_status(&st, answers[n++]);
        if (s != WEIR_RETRY_YES) {
            assert_int_equal(s, WEIR_RETRY_NO);
            break;
        }
        assert_true(weir_retry_backoff_ms(&st, 7) < 250);
    }
    assert_int_equal(n, 3);
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 2);
    assert_int_equal(seen[2], 3);
}

/* T9: with three 503 retries spent, a fourth 503 goes back with URX. */
static void t9_retries_exhausted_reports_limit(void **state)
{
    weir_retry_policy_t p = policy(WEIR_RETRY_ON_RETRIABLE_STATUS_CODES, 3);
    weir_retry_policy_add_status_code(&p, 503);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    for (int i = 0; i < 3; i++)
        assert_int_equal(on_status(&st, 503), WEIR_RETRY_YES);
    assert_int_equal(on_status(&st, 503), WEIR_RETRY_NO_LIMIT);
    assert_int_equal(weir_retry_attempt(&st), 4);
}

/* T9: the default policy with one endpoint refusing connections: the connect failure is retried
 * (on another host: the policy says so) and the next attempt's 200 ends it. */
static void t9_default_policy_connect_refused_then_ok(void **state)
{
    weir_retry_policy_t p;
    weir_retry_policy_istio_default(&p);
    assert_true(p.retry_other_host);
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_CONNECT_FAILURE), WEIR_RETRY_YES);
    assert_true(weir_retry_backoff_ms(&st, 1000) < 25);
    assert_int_equal(weir_retry_attempt(&st), 2);
    assert_int_equal(on_status(&st, 200), WEIR_RETRY_NO);
}

/* T9: attempts 0 returns the first failure as it is (no retry, no URX). */
static void t9_attempts_zero(void **state)
{
    weir_retry_policy_t p;
    weir_retry_policy_istio_default(&p);
    p.num_retries = 0;
    weir_retry_state_t st;
    weir_retry_init(&st, &p);
    assert_int_equal(on(&st, WEIR_RETRY_OUTCOME_CONNECT_FAILURE), WEIR_RETRY_NO);
    weir_retry_policy_add_status_code(&p, 503);
    assert_int_equal(on_status(&st, 503), WEIR_RETRY_NO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_condition_names),
        cmocka_unit_test(envoy_ParseRetryOn),
        cmocka_unit_test(envoy_PolicyRefusedStream),
        cmocka_unit_test(envoy_Policy5xxResetOverflow),
        cmocka_unit_test(envoy_Policy5xxRemoteReset),
        cmocka_unit_test(envoy_Policy5xxRemote503),
        cmocka_unit_test(envoy_Policy5xxRemote503Overloaded),
        cmocka_unit_test(envoy_PolicyResourceExhaustedRemoteRateLimited),
        cmocka_unit_test(envoy_PolicyGatewayErrorRemote502),
        cmocka_unit_test(envoy_PolicyGatewayErrorRemote503),
        cmocka_unit_test(envoy_PolicyGatewayErrorRemote504),
        cmocka_unit_test(test_gateway_error_not_500),
        cmocka_unit_test(envoy_PolicyGatewayErrorResetOverflow),
        cmocka_unit_test(envoy_PolicyGatewayErrorRemoteReset),
        cmocka_unit_test(envoy_PolicyGrpcCancelled),
        cmocka_unit_test(envoy_PolicyGrpcDeadlineExceeded),
        cmocka_unit_test(envoy_PolicyGrpcResourceExhausted),
        cmocka_unit_test(envoy_PolicyGrpcUnavilable),
        cmocka_unit_test(envoy_PolicyGrpcInternal),
        cmocka_unit_test(test_grpc_conditions_need_grpc_status),
        cmocka_unit_test(envoy_Policy5xxRemote200RemoteReset),
        cmocka_unit_test(envoy_PolicyConnectFailureOtherReset),
        cmocka_unit_test(envoy_PolicyConnectFailureResetConnectFailure),
        cmocka_unit_test(envoy_PolicyRetriable4xxRetry),
        cmocka_unit_test(envoy_PolicyRetriable4xxNoRetry),
        cmocka_unit_test(envoy_PolicyRetriable4xxReset),
        cmocka_unit_test(envoy_RetriableStatusCodes),
        cmocka_unit_test(envoy_RetriableStatusCodesUpstreamReset),
        cmocka_unit_test(test_retriable_status_code_list),
        cmocka_unit_test(envoy_PolicyResetRemoteReset),
        cmocka_unit_test(test_reset_covers_every_reset),
        cmocka_unit_test(envoy_RouterRetryOnResetBeforeRequestBeforeHeaders),
        cmocka_unit_test(envoy_RouterRetryOnResetBeforeRequestAfterHeaders),
        cmocka_unit_test(test_per_try_timeout),
        cmocka_unit_test(test_overflow_never_retried),
        cmocka_unit_test(envoy_NoAvailableRetries),
        cmocka_unit_test(envoy_MaxRetriesHeader),
        cmocka_unit_test(envoy_NoPreferredOverLimitExceeded),
        cmocka_unit_test(envoy_RouteConfigNoRetriesAllowed),
        cmocka_unit_test(envoy_PolicyNoneRemoteReset),
        cmocka_unit_test(envoy_Backoff),
        cmocka_unit_test(envoy_CustomBackOffInterval),
        cmocka_unit_test(envoy_CustomBackOffIntervalDefaultMax),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_backoff_max_below_base),
        cmocka_unit_test(test_backoff_doubling_limit),
        cmocka_unit_test(test_istio_default_policy_fields),
        cmocka_unit_test(test_istio_default_policy_decisions),
        cmocka_unit_test(t9_retry_on_503_three_attempts),
        cmocka_unit_test(t9_retries_exhausted_reports_limit),
        cmocka_unit_test(t9_default_policy_connect_refused_then_ok),
        cmocka_unit_test(t9_attempts_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
