/* tests/unit/test_outlier.c: the outlier detector over a driven clock. Tests named envoy_<Case>
 * replay the case of that name in Envoy's test/common/upstream/outlier_detection_impl_test.cc
 * (the consecutive-error ones; success-rate and failure-percentage detection are not built
 * because Istio turns them off), adapted where Envoy's runtime mocks stood in for config; tests
 * named t3_* are case T3 of shared/reference/istio-semantics.md section 7 and its variants. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/outlier.h"

#define SEC 1000u

/* Envoy's defaults for an empty OutlierDetection are Istio's for an empty block (enforcing 5xx,
 * not enforcing gateway errors, 10 s interval, 30 s base, 10 %). Envoy's tests mostly raise
 * max_ejection_percent to 100 through the runtime; here that is config. */
static weir_outlier_config_t defaults(uint32_t max_ejection_percent)
{
    weir_outlier_config_t cfg;
    weir_outlier_config_istio_defaults(&cfg);
    cfg.max_ejection_percent = max_ejection_percent;
    return cfg;
}

static weir_outlier_config_t split_defaults(uint32_t max_ejection_percent)
{
    weir_outlier_config_t cfg = defaults(max_ejection_percent);
    cfg.split_external_local_origin_errors = true;
    return cfg;
}

static void load(weir_outlier_t *od, size_t host, int n, int result, uint64_t now_ms)
{
    for (int i = 0; i < n; i++)
        weir_outlier_report(od, host, result, now_ms);
}

static const weir_outlier_host_state_t *st(const weir_outlier_t *od, size_t host)
{
    return weir_outlier_host_state(od, host);
}

static uint64_t active(const weir_outlier_t *od)
{
    return weir_outlier_stats(od)->ejections_active;
}

static const char *const two_keys[] = {"127.0.0.1:80", "127.0.0.1:81"};

/* ---- configuration ---- */

/* An outlierDetection block with no field set gets Istio's values (reference 3.4, S10). */
static void test_istio_defaults(void **state)
{
    weir_outlier_config_t cfg;
    weir_outlier_config_istio_defaults(&cfg);
    assert_int_equal(cfg.consecutive_5xx, 5);
    assert_true(cfg.enforcing_consecutive_5xx);
    assert_int_equal(cfg.consecutive_gateway_failure, 5);
    assert_false(cfg.enforcing_consecutive_gateway_failure);
    assert_int_equal(cfg.consecutive_local_origin_failure, 5);
    assert_true(cfg.enforcing_consecutive_local_origin_failure);
    assert_false(cfg.split_external_local_origin_errors);
    assert_int_equal(cfg.interval_ms, 10 * SEC);
    assert_int_equal(cfg.base_ejection_ms, 30 * SEC);
    assert_int_equal(cfg.max_ejection_ms, 300 * SEC);
    assert_int_equal(cfg.max_ejection_percent, 10);
}

/* max_ejection_time unset defaults to 300 s when base is below it. */
static void envoy_DetectorStaticConfigMaxDefaultValue(void **state)
{
    weir_outlier_config_t cfg = defaults(10);
    cfg.interval_ms = 100;
    cfg.base_ejection_ms = 10 * SEC;
    cfg.max_ejection_ms = 0;
    weir_outlier_t *od = weir_outlier_create(&cfg, 0, NULL);
    assert_int_equal(weir_outlier_config(od)->interval_ms, 100);
    assert_int_equal(weir_outlier_config(od)->base_ejection_ms, 10 * SEC);
    assert_int_equal(weir_outlier_config(od)->max_ejection_ms, 300 * SEC);
    weir_outlier_free(od);
}

/* max_ejection_time unset with base above 300 s becomes base. */
static void envoy_DetectorStaticConfigBaseLargerThanMaxNoMax(void **state)
{
    weir_outlier_config_t cfg = defaults(10);
    cfg.base_ejection_ms = 400 * SEC;
    cfg.max_ejection_ms = 0;
    weir_outlier_t *od = weir_outlier_create(&cfg, 0, NULL);
    assert_int_equal(weir_outlier_config(od)->max_ejection_ms, 400 * SEC);
    weir_outlier_free(od);
}

/* Envoy rejects max below base; Istio cannot express it, so weir clamps max up to base. */
static void envoy_DetectorStaticConfigiInvalidMaxEjectTime(void **state)
{
    weir_outlier_config_t cfg = defaults(150);
    cfg.base_ejection_ms = 10 * SEC;
    cfg.max_ejection_ms = 3 * SEC;
    weir_outlier_t *od = weir_outlier_create(&cfg, 0, NULL);
    assert_int_equal(weir_outlier_config(od)->max_ejection_ms, 10 * SEC);
    assert_int_equal(weir_outlier_config(od)->max_ejection_percent, 100); /* 150 caps at 100 */
    weir_outlier_free(od);
}

/* ---- consecutive errors ---- */

/* Five consecutive 5xx eject; an interval sweep before base does not return the host, one after
 * it does; a second ejection right after the return counts as a second in a row. */
static void envoy_BasicFlow5xxViaHttpCodes(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 2, two_keys);

    load(od, 0, 1, 500, 0);
    load(od, 0, 1, 200, 0);
    load(od, 0, 4, 500, 0);
    assert_false(weir_outlier_is_ejected(od, 0));
    load(od, 0, 1, 500, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(active(od), 1);
    assert_int_equal(st(od, 0)->last_ejection_kind, WEIR_OUTLIER_CONSECUTIVE_5XX);

    /* Interval that doesn't bring the host back in. */
    assert_int_equal(weir_outlier_sweep(od, 9999), 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_false(st(od, 0)->has_unejection);

    /* Interval that does. */
    assert_int_equal(weir_outlier_sweep(od, 30001), 1);
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_true(st(od, 0)->has_unejection);
    assert_int_equal(st(od, 0)->last_unejection_ms, 30001);

    /* Eject again after the return. */
    load(od, 0, 4, 500, 40000);
    load(od, 0, 1, 500, 40000);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(active(od), 1);
    assert_int_equal(st(od, 0)->num_ejections, 2);
    assert_int_equal(weir_outlier_ejection_ms(od, 0),
                     60 * SEC); /* backoff 2: no sweep decayed it */

    /* Removing the hosts (a rebuild without them) drops the active gauge, keeps the counters. */
    weir_outlier_t *gone = weir_outlier_rebuild(od, &cfg, 0, NULL);
    const weir_outlier_stats_t *s = weir_outlier_stats(gone);
    assert_int_equal(s->ejections_active, 0);
    assert_int_equal(s->ejections_total, 2);
    assert_int_equal(s->ejections_consecutive_5xx, 2);
    assert_int_equal(s->ejections_detected[WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE], 0);
    assert_int_equal(s->ejections_enforced[WEIR_OUTLIER_CONSECUTIVE_5XX], 2);
    weir_outlier_free(gone);
    weir_outlier_free(od);
}

/* Without split mode connect failures count as 503s: both the gateway detector (not enforced)
 * and the 5xx detector (enforced) fire on the fifth. */
static void envoy_BasicFlow5xxViaNonHttpCodes(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 2, two_keys);

    load(od, 0, 1, WEIR_OUTLIER_CONNECT_FAILED, 0);
    load(od, 0, 1, 200, 0);
    load(od, 0, 4, WEIR_OUTLIER_CONNECT_FAILED, 0);
    assert_false(weir_outlier_is_ejected(od, 0));
    load(od, 0, 1, WEIR_OUTLIER_CONNECT_FAILED, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(active(od), 1);
    const weir_outlier_stats_t *s = weir_outlier_stats(od);
    assert_int_equal(s->ejections_detected[WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE], 1);
    assert_int_equal(s->ejections_enforced[WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE], 0);
    assert_int_equal(s->ejections_enforced[WEIR_OUTLIER_CONSECUTIVE_5XX], 1);

    weir_outlier_sweep(od, 9999);
    assert_false(st(od, 0)->has_unejection);
    weir_outlier_sweep(od, 30001);
    assert_false(weir_outlier_is_ejected(od, 0));

    load(od, 0, 4, WEIR_OUTLIER_CONNECT_FAILED, 40000);
    load(od, 0, 1, WEIR_OUTLIER_CONNECT_FAILED, 40000);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(active(od), 1);
    assert_int_equal(s->ejections_total, 2);
    assert_int_equal(s->ejections_consecutive_5xx, 2);
    assert_int_equal(s->ejections_enforced[WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE], 0);
    weir_outlier_free(od);
}

/* Gateway failures enforced, 5xx not: a 500 in the run resets only the gateway counter; the 5xx
 * detection on the way is counted but ejects nothing; the fifth 503 in a row ejects. */
static void envoy_BasicFlowGatewayFailure(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    cfg.enforcing_consecutive_gateway_failure = true;
    cfg.enforcing_consecutive_5xx = false;
    weir_outlier_t *od = weir_outlier_create(&cfg, 2, two_keys);

    load(od, 0, 1, 503, 0);
    load(od, 0, 1, 500, 0);
    load(od, 0, 2, 503, 0);
    load(od, 0, 2, 503, 0); /* fifth 5xx: detected, not enforced */
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_int_equal(st(od, 0)->consecutive_gateway_failure, 4);
    load(od, 0, 1, 503, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(st(od, 0)->last_ejection_kind, WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE);
    assert_int_equal(active(od), 1);

    weir_outlier_sweep(od, 9999);
    assert_false(st(od, 0)->has_unejection);
    weir_outlier_sweep(od, 30001);
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_true(st(od, 0)->has_unejection);

    load(od, 0, 4, 503, 40000);
    load(od, 0, 1, 503, 40000);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(active(od), 1);

    const weir_outlier_stats_t *s = weir_outlier_stats(od);
    assert_int_equal(s->ejections_total, 1); /* deprecated: the one 5xx detection */
    assert_int_equal(s->ejections_enforced_total, 2);
    assert_int_equal(s->ejections_detected[WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE], 2);
    assert_int_equal(s->ejections_enforced[WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE], 2);
    /* The second run's 5xx detection found the host already ejected: not counted. */
    assert_int_equal(s->ejections_detected[WEIR_OUTLIER_CONSECUTIVE_5XX], 1);
    assert_int_equal(s->ejections_enforced[WEIR_OUTLIER_CONSECUTIVE_5XX], 0);
    weir_outlier_free(od);
}

/* A timeout without split mode is a 504: five of them eject through the 5xx detector, the
 * gateway detector firing unenforced; with gateway enforcement the gateway detector ejects. */
static void envoy_TimeoutWithHttpCode(void **state)
{
    static const char *const keys[] = {"127.0.0.1:80", "127.0.0.1:81", "127.0.0.1:84"};
    weir_outlier_config_t cfg = defaults(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 3, keys);

    load(od, 0, 5, WEIR_OUTLIER_TIMEOUT, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(st(od, 0)->last_ejection_kind, WEIR_OUTLIER_CONSECUTIVE_5XX);
    assert_int_equal(
        weir_outlier_stats(od)->ejections_detected[WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE], 1);
    weir_outlier_sweep(od, 50001);
    assert_false(weir_outlier_is_ejected(od, 0));

    /* Timeouts answered with a non-5xx code (the router's choice) do not count. */
    load(od, 0, 5, 200, 50001);
    assert_false(weir_outlier_is_ejected(od, 0));
    weir_outlier_free(od);

    cfg.enforcing_consecutive_gateway_failure = true;
    od = weir_outlier_create(&cfg, 3, keys);
    load(od, 1, 5, WEIR_OUTLIER_TIMEOUT, 0);
    assert_true(weir_outlier_is_ejected(od, 1));
    assert_int_equal(st(od, 1)->last_ejection_kind, WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE);
    weir_outlier_free(od);
}

/* Split mode: timeouts feed the local-origin counter. Timeouts reported while ejected do not
 * shorten or extend the ejection, and after the return a fresh run ejects again. */
static void envoy_LargeNumberOfTimeouts(void **state)
{
    weir_outlier_config_t cfg = split_defaults(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, two_keys);

    load(od, 0, 5, WEIR_OUTLIER_TIMEOUT, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(st(od, 0)->last_ejection_kind, WEIR_OUTLIER_CONSECUTIVE_LOCAL_ORIGIN_FAILURE);
    assert_int_equal(st(od, 0)->consecutive_5xx, 0); /* the 5xx counter never saw them */

    load(od, 0, 10, WEIR_OUTLIER_TIMEOUT, 0);
    assert_int_equal(st(od, 0)->consecutive_local_origin_failure, 10);

    weir_outlier_sweep(od, 50001);
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_int_equal(st(od, 0)->consecutive_local_origin_failure, 0);

    load(od, 0, 5, WEIR_OUTLIER_TIMEOUT, 50001);
    assert_true(weir_outlier_is_ejected(od, 0));
    weir_outlier_free(od);
}

/* Split mode: connect failures eject by the local-origin detector; a connect success resets
 * the run. */
static void envoy_BasicFlowLocalOriginFailure(void **state)
{
    weir_outlier_config_t cfg = split_defaults(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, two_keys);

    load(od, 0, 5, WEIR_OUTLIER_CONNECT_FAILED, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(active(od), 1);

    /* More failures while ejected change nothing for the future. */
    load(od, 0, 5, WEIR_OUTLIER_CONNECT_FAILED, 0);

    weir_outlier_sweep(od, 9999);
    assert_false(st(od, 0)->has_unejection);
    weir_outlier_sweep(od, 30001);
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_true(st(od, 0)->has_unejection);
    assert_int_equal(active(od), 0);

    /* Ejected again at once: backoff 2, 60 s. */
    load(od, 0, 5, WEIR_OUTLIER_CONNECT_FAILED, 30001);
    assert_int_equal(active(od), 1);
    weir_outlier_sweep(od, 40000);
    assert_true(weir_outlier_is_ejected(od, 0));
    weir_outlier_sweep(od, 90002);
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_int_equal(active(od), 0);

    /* Four failures, a success, two failures: no ejection. */
    load(od, 0, 4, WEIR_OUTLIER_CONNECT_FAILED, 90002);
    load(od, 0, 1, WEIR_OUTLIER_CONNECT_SUCCESS, 90002);
    load(od, 0, 2, WEIR_OUTLIER_CONNECT_FAILED, 90002);
    assert_false(weir_outlier_is_ejected(od, 0));

    const weir_outlier_stats_t *s = weir_outlier_stats(od);
    assert_int_equal(s->ejections_enforced_total, 2);
    assert_int_equal(s->ejections_detected[WEIR_OUTLIER_CONSECUTIVE_LOCAL_ORIGIN_FAILURE], 2);
    assert_int_equal(s->ejections_enforced[WEIR_OUTLIER_CONSECUTIVE_LOCAL_ORIGIN_FAILURE], 2);
    weir_outlier_free(od);
}

/* Both detectors enforced: five 503s eject as gateway failures; after the return, 503s and 500s
 * mixed eject as 5xx, and the gateway detector does not fire again. */
static void envoy_BasicFlowGatewayFailureAnd5xx(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    cfg.enforcing_consecutive_gateway_failure = true;
    weir_outlier_t *od = weir_outlier_create(&cfg, 2, two_keys);

    load(od, 0, 1, 503, 0);
    load(od, 0, 1, 200, 0);
    load(od, 0, 4, 503, 0);
    load(od, 0, 1, 503, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(st(od, 0)->last_ejection_kind, WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE);

    weir_outlier_sweep(od, 9999);
    weir_outlier_sweep(od, 30001);
    assert_false(weir_outlier_is_ejected(od, 0));

    load(od, 0, 2, 503, 40000);
    assert_false(weir_outlier_is_ejected(od, 0));
    load(od, 0, 2, 500, 40000);
    load(od, 0, 1, 500, 40000);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(st(od, 0)->last_ejection_kind, WEIR_OUTLIER_CONSECUTIVE_5XX);
    assert_int_equal(active(od), 1);

    const weir_outlier_stats_t *s = weir_outlier_stats(od);
    assert_int_equal(s->ejections_total, 1);
    assert_int_equal(s->ejections_enforced_total, 2);
    assert_int_equal(s->ejections_consecutive_5xx, 1);
    assert_int_equal(s->ejections_detected[WEIR_OUTLIER_CONSECUTIVE_5XX], 1);
    assert_int_equal(s->ejections_enforced[WEIR_OUTLIER_CONSECUTIVE_5XX], 1);
    assert_int_equal(s->ejections_detected[WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE], 1);
    assert_int_equal(s->ejections_enforced[WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE], 1);
    weir_outlier_free(od);
}

/* Without split mode a success cancels a connect failure, and a connect success (the
 * connection came up, no response yet) neither counts nor breaks a run of failures. */
static void envoy_BasicFlowNonHttpCodesExternalOrigin(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 2, two_keys);

    for (int i = 0; i < 100; i++) {
        load(od, 0, 1, WEIR_OUTLIER_CONNECT_FAILED, 0);
        load(od, 0, 1, 200, 0);
    }
    assert_false(weir_outlier_is_ejected(od, 0));

    load(od, 0, 1, WEIR_OUTLIER_CONNECT_FAILED, 0);
    load(od, 0, 1, WEIR_OUTLIER_CONNECT_SUCCESS, 0);
    load(od, 0, 3, WEIR_OUTLIER_CONNECT_FAILED, 0);
    assert_false(weir_outlier_is_ejected(od, 0));
    load(od, 0, 1, WEIR_OUTLIER_CONNECT_FAILED, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(active(od), 1);
    weir_outlier_free(od);
}

/* Split mode still counts HTTP statuses with the 5xx detector; local-origin events neither
 * feed nor reset it. */
static void envoy_ExternalOriginEventsWithSplit(void **state)
{
    weir_outlier_config_t cfg = split_defaults(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, two_keys);

    for (int i = 0; i < 100; i++) {
        load(od, 0, 1, 503, 0);
        load(od, 0, 1, 200, 0);
    }
    assert_false(weir_outlier_is_ejected(od, 0));

    load(od, 0, 4, 503, 0);
    load(od, 0, 3, WEIR_OUTLIER_CONNECT_FAILED, 0);
    load(od, 0, 1, WEIR_OUTLIER_CONNECT_SUCCESS, 0);
    assert_int_equal(st(od, 0)->consecutive_5xx, 4);
    assert_int_equal(st(od, 0)->consecutive_local_origin_failure, 0);
    load(od, 0, 1, 503, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(st(od, 0)->last_ejection_kind, WEIR_OUTLIER_CONSECUTIVE_5XX);
    weir_outlier_free(od);
}

/* A host removed while ejected leaves the active count; the sweep copes. */
static void envoy_RemoveWhileEjected(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, two_keys);
    load(od, 0, 5, 500, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(active(od), 1);

    weir_outlier_t *next = weir_outlier_rebuild(od, &cfg, 0, NULL);
    weir_outlier_free(od);
    assert_int_equal(active(next), 0);
    assert_int_equal(weir_outlier_sweep(next, 9999), 0);
    weir_outlier_free(next);
}

/* The strict rule: with 2 hosts and 50 %, the first ejection fits (50 <= 50), the second would
 * make 100 % and overflows instead. (Envoy's own case predates the strict rule: its 1 % let one
 * host go because "at least one" was always allowed; current Envoy and weir eject none there.) */
static void envoy_Overflow(void **state)
{
    weir_outlier_config_t cfg = defaults(50);
    weir_outlier_t *od = weir_outlier_create(&cfg, 2, two_keys);
    load(od, 0, 5, 500, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    load(od, 1, 5, 500, 0);
    assert_false(weir_outlier_is_ejected(od, 1));
    assert_int_equal(active(od), 1);
    assert_int_equal(weir_outlier_stats(od)->ejections_overflow, 1);
    weir_outlier_free(od);

    cfg.max_ejection_percent = 1;
    od = weir_outlier_create(&cfg, 2, two_keys);
    load(od, 0, 5, 500, 0);
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_int_equal(weir_outlier_stats(od)->ejections_overflow, 1);
    weir_outlier_free(od);
}

/* Not enforcing: detections are counted, nothing is ejected. */
static void envoy_NotEnforcing(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    cfg.enforcing_consecutive_5xx = false;
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, two_keys);
    load(od, 0, 4, 503, 0);
    load(od, 0, 1, 503, 0);
    assert_false(weir_outlier_is_ejected(od, 0));

    const weir_outlier_stats_t *s = weir_outlier_stats(od);
    assert_int_equal(s->ejections_active, 0);
    assert_int_equal(s->ejections_total, 1);
    assert_int_equal(s->ejections_enforced_total, 0);
    assert_int_equal(s->ejections_consecutive_5xx, 1);
    assert_int_equal(s->ejections_detected[WEIR_OUTLIER_CONSECUTIVE_5XX], 1);
    assert_int_equal(s->ejections_enforced[WEIR_OUTLIER_CONSECUTIVE_5XX], 0);
    assert_int_equal(s->ejections_detected[WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE], 1);
    assert_int_equal(s->ejections_enforced[WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE], 0);
    /* The counters were reset by the (unenforced) detections: five more are needed. */
    assert_int_equal(st(od, 0)->consecutive_5xx, 0);
    assert_int_equal(st(od, 0)->consecutive_gateway_failure, 0);
    weir_outlier_free(od);
}

/* A detection for a host already ejected does nothing (also Envoy's CrossThreadFailRace: a
 * second detection yields a single ejection); its counter keeps counting until the return. */
static void envoy_Consecutive_5xxAlreadyEjected(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, two_keys);
    load(od, 0, 4, 500, 0);
    load(od, 0, 1, 500, 0);
    assert_true(weir_outlier_is_ejected(od, 0));

    load(od, 0, 1, 200, 0);
    load(od, 0, 5, 500, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(active(od), 1);
    assert_int_equal(st(od, 0)->num_ejections, 1);
    assert_int_equal(st(od, 0)->consecutive_5xx, 5);
    assert_int_equal(weir_outlier_stats(od)->ejections_detected[WEIR_OUTLIER_CONSECUTIVE_5XX], 1);
    load(od, 0, 3, 500, 0);
    assert_int_equal(st(od, 0)->consecutive_5xx, 8);

    weir_outlier_sweep(od, 30 * SEC);
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_int_equal(st(od, 0)->consecutive_5xx, 0);
    weir_outlier_free(od);
}

/* A 50 % limit ejects one host of three. */
static void envoy_MaxEjectionPercentage(void **state)
{
    static const char *const keys[] = {"127.0.0.2:80", "127.0.0.3:80", "127.0.0.4:80"};
    weir_outlier_config_t cfg = defaults(50);
    weir_outlier_t *od = weir_outlier_create(&cfg, 3, keys);
    load(od, 0, 5, 500, 0);
    load(od, 1, 5, 500, 0);
    load(od, 2, 5, 500, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_false(weir_outlier_is_ejected(od, 1));
    assert_false(weir_outlier_is_ejected(od, 2));
    assert_int_equal(weir_outlier_stats(od)->ejections_overflow, 2);
    weir_outlier_free(od);
}

/* A single host is never ejected with a limit below 100 %. */
static void envoy_MaxEjectionPercentageSingleHost(void **state)
{
    weir_outlier_config_t cfg = defaults(90);
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, two_keys);
    load(od, 0, 5, 500, 0);
    assert_false(weir_outlier_is_ejected(od, 0));
    weir_outlier_free(od);
}

/* Over many host counts and limits, failing every host ejects exactly floor(max * n / 100) of
 * them: 100 * (ejected + 1) / n <= max, never "at least one". */
static void test_max_ejection_percent_is_strict(void **state)
{
    static const uint32_t limits[] = {1, 10, 20, 25, 33, 34, 50, 66, 90, 99, 100};
    for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
        for (size_t n = 1; n <= 20; n++) {
            weir_outlier_config_t cfg = defaults(limits[l]);
            weir_outlier_t *od = weir_outlier_create(&cfg, n, NULL);
            for (size_t h = 0; h < n; h++)
                load(od, h, 5, 500, 0);
            size_t want = limits[l] * n / 100;
            assert_int_equal(active(od), want);
            assert_int_equal(weir_outlier_healthy_hosts(od), n - want);
            assert_int_equal(weir_outlier_stats(od)->ejections_overflow, n - want);
            for (size_t h = 0; h < n; h++)
                assert_int_equal(weir_outlier_is_ejected(od, h), h < want);
            weir_outlier_free(od);
        }
    }
}

/* The ejection time grows with ejections in a row (10, 20, 30 s), shrinks by one base per
 * healthy interval, and after a long healthy period is back to one base. */
static void envoy_EjectTimeBackoff(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    cfg.base_ejection_ms = 10 * SEC;
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, two_keys);

    load(od, 0, 5, 500, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    weir_outlier_sweep(od, 10 * SEC);
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_int_equal(active(od), 0);

    /* Second in a row: 20 s. */
    load(od, 0, 5, 500, 10 * SEC);
    assert_int_equal(active(od), 1);
    weir_outlier_sweep(od, 20 * SEC);
    assert_true(weir_outlier_is_ejected(od, 0));
    weir_outlier_sweep(od, 30 * SEC);
    assert_false(weir_outlier_is_ejected(od, 0));

    /* Third in a row: 30 s. */
    load(od, 0, 5, 500, 30 * SEC);
    weir_outlier_sweep(od, 40 * SEC);
    assert_true(weir_outlier_is_ejected(od, 0));
    weir_outlier_sweep(od, 50 * SEC);
    assert_true(weir_outlier_is_ejected(od, 0));
    weir_outlier_sweep(od, 60 * SEC);
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_int_equal(st(od, 0)->backoff, 3);

    /* Two healthy intervals take two off. */
    weir_outlier_sweep(od, 70 * SEC);
    weir_outlier_sweep(od, 80 * SEC);
    assert_int_equal(st(od, 0)->backoff, 1);

    load(od, 0, 5, 500, 80 * SEC);
    assert_true(weir_outlier_is_ejected(od, 0));
    weir_outlier_sweep(od, 90 * SEC);
    assert_true(weir_outlier_is_ejected(od, 0));
    weir_outlier_sweep(od, 100 * SEC);
    assert_false(weir_outlier_is_ejected(od, 0));

    /* A long healthy period: back to 1 x base. */
    for (uint64_t i = 1; i <= 50; i++)
        weir_outlier_sweep(od, (100 + i * 10) * SEC);
    assert_int_equal(st(od, 0)->backoff, 0);
    load(od, 0, 5, 500, 610 * SEC);
    assert_true(weir_outlier_is_ejected(od, 0));
    weir_outlier_sweep(od, 620 * SEC);
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_int_equal(active(od), 0);
    weir_outlier_free(od);
}

/* Runs Envoy's MaxEjectTime loop: `grow` ejections in a row, the i-th lasting i intervals, then
 * nine more, each lasting `capped` intervals (one sweep per 10 s). */
static void eject_in_a_row(weir_outlier_t *od, int grow, int capped)
{
    uint64_t tick = 0;
    for (int i = 1; i <= grow; i++) {
        load(od, 0, 5, 500, tick * 10 * SEC);
        assert_true(weir_outlier_is_ejected(od, 0));
        for (int j = 1; j < i; j++) {
            weir_outlier_sweep(od, ++tick * 10 * SEC);
            assert_true(weir_outlier_is_ejected(od, 0));
            assert_int_equal(active(od), 1);
        }
        weir_outlier_sweep(od, ++tick * 10 * SEC);
        assert_false(weir_outlier_is_ejected(od, 0));
        assert_int_equal(active(od), 0);
    }
    for (int i = 1; i < 10; i++) {
        load(od, 0, 5, 500, tick * 10 * SEC);
        assert_true(weir_outlier_is_ejected(od, 0));
        for (int j = 1; j < capped; j++) {
            weir_outlier_sweep(od, ++tick * 10 * SEC);
            assert_true(weir_outlier_is_ejected(od, 0));
        }
        weir_outlier_sweep(od, ++tick * 10 * SEC);
        assert_false(weir_outlier_is_ejected(od, 0));
    }
}

/* max_ejection_time caps the growth: base 10 s, max 300 s, the 30th ejection in a row lasts
 * 300 s and so do all later ones. */
static void envoy_MaxEjectTime(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    cfg.base_ejection_ms = 10 * SEC;
    cfg.max_ejection_ms = 300 * SEC;
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, two_keys);
    eject_in_a_row(od, 30, 30);
    /* The counter stopped one past the cap (backoff * base < max + base). */
    assert_int_equal(st(od, 0)->backoff, 31);
    weir_outlier_free(od);
}

/* A max that is not a multiple of base: ejections grow to 310 s worth of backoff but last 305 s,
 * which the 10 s sweep turns into 31 intervals. */
static void envoy_MaxEjectTimeNotAlligned(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    cfg.interval_ms = 10 * SEC;
    cfg.base_ejection_ms = 10 * SEC;
    cfg.max_ejection_ms = 305 * SEC;
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, two_keys);
    eject_in_a_row(od, 31, 31);
    assert_int_equal(st(od, 0)->backoff, 32);
    assert_int_equal(weir_outlier_ejection_ms(od, 0), 305 * SEC);
    weir_outlier_free(od);
}

/* ---- the rules stated in the brief, one each ---- */

/* A success anywhere in the run resets both counters; any other 5xx resets only the gateway
 * counter. */
static void test_success_resets_counters(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, NULL);
    load(od, 0, 4, 500, 0);
    load(od, 0, 1, 204, 0);
    load(od, 0, 4, 500, 0);
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_int_equal(st(od, 0)->consecutive_5xx, 4);

    load(od, 0, 1, 404, 0); /* 4xx is a success to the detector */
    assert_int_equal(st(od, 0)->consecutive_5xx, 0);

    load(od, 0, 3, 502, 0);
    load(od, 0, 1, 501, 0);
    assert_int_equal(st(od, 0)->consecutive_gateway_failure, 0);
    assert_int_equal(st(od, 0)->consecutive_5xx, 4);
    load(od, 0, 1, 599, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    weir_outlier_free(od);
}

/* Only the sweep returns a host, however long ago its time ran out; responses from requests
 * still in flight count but return nothing. */
static void test_unejection_only_on_sweep(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, NULL);
    load(od, 0, 5, 500, 1000);
    load(od, 0, 20, 200, 1000 + 3600 * SEC);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(weir_outlier_healthy_hosts(od), 0);
    assert_int_equal(weir_outlier_sweep(od, 1000 + 30 * SEC - 1), 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(weir_outlier_sweep(od, 1000 + 30 * SEC), 1); /* exactly base: back */
    assert_false(weir_outlier_is_ejected(od, 0));
    weir_outlier_free(od);
}

/* The return resets all three counters, so one failure cannot re-eject a host that came back
 * with its counters one short. */
static void test_counters_reset_on_unejection(void **state)
{
    weir_outlier_config_t cfg = split_defaults(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, NULL);
    load(od, 0, 5, 500, 0);
    load(od, 0, 4, 502, 0);
    load(od, 0, 4, WEIR_OUTLIER_RESET, 0);
    assert_int_equal(st(od, 0)->consecutive_5xx, 4);
    assert_int_equal(st(od, 0)->consecutive_gateway_failure, 4);
    assert_int_equal(st(od, 0)->consecutive_local_origin_failure, 4);

    weir_outlier_sweep(od, 30 * SEC);
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_int_equal(st(od, 0)->consecutive_5xx, 0);
    assert_int_equal(st(od, 0)->consecutive_gateway_failure, 0);
    assert_int_equal(st(od, 0)->consecutive_local_origin_failure, 0);
    load(od, 0, 1, 502, 30 * SEC);
    load(od, 0, 1, WEIR_OUTLIER_RESET, 30 * SEC);
    assert_false(weir_outlier_is_ejected(od, 0));
    weir_outlier_free(od);
}

/* Without split mode a reset is a connect failure to Envoy's router (503); overflow is never
 * reported; a connect success is ignored. */
static void test_reset_maps_to_503(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    cfg.enforcing_consecutive_gateway_failure = true;
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, NULL);
    load(od, 0, 2, WEIR_OUTLIER_RESET, 0);
    load(od, 0, 1, WEIR_OUTLIER_CONNECT_SUCCESS, 0);
    load(od, 0, 1, WEIR_OUTLIER_TIMEOUT, 0);
    assert_int_equal(st(od, 0)->consecutive_gateway_failure, 3);
    assert_int_equal(st(od, 0)->consecutive_5xx, 3);
    assert_int_equal(st(od, 0)->consecutive_local_origin_failure, 0);
    load(od, 0, 2, WEIR_OUTLIER_CONNECT_FAILED, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(st(od, 0)->last_ejection_kind, WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE);
    weir_outlier_free(od);
}

/* A threshold of 0 never detects (Istio's consecutive5xxErrors: 0 disables). */
static void test_zero_threshold_never_detects(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    cfg.consecutive_5xx = 0;
    cfg.enforcing_consecutive_gateway_failure = true;
    cfg.consecutive_gateway_failure = 0;
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, NULL);
    load(od, 0, 1000, 503, 0);
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_int_equal(weir_outlier_stats(od)->ejections_detected[WEIR_OUTLIER_CONSECUTIVE_5XX], 0);
    weir_outlier_free(od);
}

/* No detector (no outlierDetection block) and bad indexes are harmless. */
static void test_null_and_out_of_range(void **state)
{
    weir_outlier_report(NULL, 0, 500, 0);
    assert_false(weir_outlier_is_ejected(NULL, 0));
    assert_int_equal(weir_outlier_sweep(NULL, 0), 0);
    assert_int_equal(weir_outlier_host_count(NULL), 0);
    assert_null(weir_outlier_host_state(NULL, 0));
    weir_outlier_free(NULL);

    weir_outlier_config_t cfg = defaults(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 2, two_keys);
    load(od, 2, 10, 500, 0);
    assert_false(weir_outlier_is_ejected(od, 2));
    assert_null(weir_outlier_host_state(od, 2));
    assert_null(weir_outlier_host_key(od, 2));
    assert_string_equal(weir_outlier_host_key(od, 1), "127.0.0.1:81");
    assert_int_equal(weir_outlier_ejection_ms(od, 5), 0);
    assert_int_equal(active(od), 0);
    weir_outlier_free(od);
}

/* ---- reload ---- */

/* A rebuild keeps, by key, the state of the hosts that persist (wherever they now sit), starts
 * new hosts fresh, drops removed ones from the gauge, and leaves the old detector usable. */
static void test_rebuild_keeps_state_by_key(void **state)
{
    static const char *const before[] = {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"};
    static const char *const after[] = {"10.0.0.3:80", "10.0.0.4:80", "10.0.0.2:80"};
    weir_outlier_config_t cfg = defaults(100);
    weir_outlier_t *old = weir_outlier_create(&cfg, 3, before);
    load(old, 0, 5, 500, 0); /* 10.0.0.1: ejected, then removed */
    load(old, 1, 5, 500, 0); /* 10.0.0.2: ejected, persists at index 2 */
    load(old, 2, 3, 503, 0); /* 10.0.0.3: counters, persists at index 0 */
    assert_int_equal(active(old), 2);

    cfg.base_ejection_ms = 20 * SEC; /* the new config applies to the carried ejection */
    weir_outlier_t *od = weir_outlier_rebuild(old, &cfg, 3, after);
    assert_int_equal(weir_outlier_host_count(od), 3);
    assert_int_equal(active(od), 1);
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_int_equal(st(od, 0)->consecutive_5xx, 3);
    assert_int_equal(st(od, 0)->consecutive_gateway_failure, 3);
    assert_false(weir_outlier_is_ejected(od, 1));
    assert_int_equal(st(od, 1)->consecutive_5xx, 0);
    assert_true(weir_outlier_is_ejected(od, 2));
    assert_int_equal(st(od, 2)->backoff, 1);
    assert_int_equal(st(od, 2)->last_ejection_ms, 0);
    assert_int_equal(weir_outlier_stats(od)->ejections_enforced_total, 2);

    assert_int_equal(weir_outlier_sweep(od, 10 * SEC), 0);
    assert_int_equal(weir_outlier_sweep(od, 20 * SEC), 1);
    assert_false(weir_outlier_is_ejected(od, 2));

    /* The old detector is untouched and still takes reports from in-flight requests. */
    assert_true(weir_outlier_is_ejected(old, 1));
    load(old, 2, 2, 503, 0);
    assert_true(weir_outlier_is_ejected(old, 2));
    assert_int_equal(st(od, 0)->consecutive_5xx, 3);

    weir_outlier_free(old);
    weir_outlier_free(od);
}

/* Hosts without keys, or a first build, carry nothing; a rebuild from NULL is a create. */
static void test_rebuild_without_keys(void **state)
{
    weir_outlier_config_t cfg = defaults(100);
    weir_outlier_t *old = weir_outlier_create(&cfg, 2, NULL);
    load(old, 0, 5, 500, 0);
    weir_outlier_t *od = weir_outlier_rebuild(old, &cfg, 2, NULL);
    assert_false(weir_outlier_is_ejected(od, 0));
    assert_int_equal(active(od), 0);
    assert_int_equal(weir_outlier_stats(od)->ejections_enforced_total, 1);
    weir_outlier_free(od);

    od = weir_outlier_rebuild(old, &cfg, 2, two_keys);
    assert_false(weir_outlier_is_ejected(od, 0));
    weir_outlier_free(od);

    od = weir_outlier_rebuild(NULL, &cfg, 2, two_keys);
    assert_int_equal(weir_outlier_stats(od)->ejections_enforced_total, 0);
    weir_outlier_free(od);
    weir_outlier_free(old);
}

/* ---- panic threshold ---- */

/* Envoy's panic check with Istio's minHealthPercent: healthy% below the threshold; 0 never. */
static void test_panic_threshold(void **state)
{
    assert_false(weir_outlier_panic(0, 2, 0));
    assert_false(weir_outlier_panic(0, 1, 0));
    assert_false(weir_outlier_panic(0, 0, 0));
    assert_false(weir_outlier_panic(1, 2, 50)); /* 50 % is not below 50 */
    assert_true(weir_outlier_panic(0, 2, 50));
    assert_true(weir_outlier_panic(4, 10, 50));
    assert_false(weir_outlier_panic(5, 10, 50));
    assert_true(weir_outlier_panic(9, 10, 100));
    assert_false(weir_outlier_panic(10, 10, 100));
    assert_true(weir_outlier_panic(0, 0, 1));   /* no hosts: 0 % */
    assert_true(weir_outlier_panic(2, 3, 200)); /* above 100 means 100 */
}

/* ---- T3 ---- */

static weir_outlier_config_t t3_config(uint32_t max_ejection_percent)
{
    weir_outlier_config_t cfg;
    weir_outlier_config_istio_defaults(&cfg);
    cfg.consecutive_5xx = 5;
    cfg.interval_ms = 1 * SEC;
    cfg.base_ejection_ms = 10 * SEC;
    if (max_ejection_percent)
        cfg.max_ejection_percent = max_ejection_percent;
    return cfg;
}

/* Sweeps every interval (at t = k s + 300 ms, out of phase with the ejection) from `from` until
 * the host returns; returns the time of the sweep that brought it back. */
static uint64_t sweep_until_back(weir_outlier_t *od, size_t host, uint64_t from)
{
    uint64_t t = (from / SEC + 1) * SEC + 300;
    while (weir_outlier_is_ejected(od, host)) {
        weir_outlier_sweep(od, t);
        if (weir_outlier_is_ejected(od, host))
            t += SEC;
    }
    return t;
}

/* T3: A (500 always) and B (200), maxEjectionPercent 100: A is ejected by its 5th consecutive
 * 5xx, every pick goes to B while it is out, and A is back at the first sweep past base, within
 * base + interval. */
static void t3_ejected_after_fifth_5xx_and_back_after_base(void **state)
{
    weir_outlier_config_t cfg = t3_config(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 2, two_keys);
    uint64_t t = 0;
    for (int i = 0; i < 4; i++, t += 100) {
        weir_outlier_report(od, 0, 500, t);
        weir_outlier_report(od, 1, 200, t + 50);
    }
    assert_false(weir_outlier_is_ejected(od, 0));
    weir_outlier_report(od, 0, 500, 450);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(weir_outlier_healthy_hosts(od), 1);
    assert_false(weir_outlier_is_ejected(od, 1));

    uint64_t back = sweep_until_back(od, 0, 450);
    assert_true(back - 450 >= 10 * SEC);
    assert_true(back - 450 < 11 * SEC);
    assert_int_equal(weir_outlier_healthy_hosts(od), 2);
    weir_outlier_free(od);
}

/* T3: re-ejected within one interval of returning, A stays out twice as long. */
static void t3_reejected_within_interval_doubles(void **state)
{
    weir_outlier_config_t cfg = t3_config(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 2, two_keys);
    load(od, 0, 5, 500, 450);
    uint64_t back = sweep_until_back(od, 0, 450);

    /* Five more 500s before the next sweep. */
    load(od, 0, 5, 500, back + 500);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(weir_outlier_ejection_ms(od, 0), 20 * SEC);
    uint64_t back2 = sweep_until_back(od, 0, back + 500);
    assert_true(back2 - (back + 500) >= 20 * SEC);
    assert_true(back2 - (back + 500) < 21 * SEC);
    weir_outlier_free(od);
}

/* T3: re-ejected after a sweep has seen A healthy for an interval, the backoff has decayed and
 * the ejection is one base again. */
static void t3_reejected_later_decays_to_base(void **state)
{
    weir_outlier_config_t cfg = t3_config(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 2, two_keys);
    load(od, 0, 5, 500, 450);
    uint64_t back = sweep_until_back(od, 0, 450);
    weir_outlier_sweep(od, back + SEC); /* healthy for one interval: backoff 1 -> 0 */
    assert_int_equal(st(od, 0)->backoff, 0);

    load(od, 0, 5, 500, back + SEC + 100);
    assert_true(weir_outlier_is_ejected(od, 0));
    assert_int_equal(weir_outlier_ejection_ms(od, 0), 10 * SEC);
    uint64_t back2 = sweep_until_back(od, 0, back + SEC + 100);
    assert_true(back2 - (back + SEC + 100) < 11 * SEC);
    weir_outlier_free(od);
}

/* T3 variant: without maxEjectionPercent (10 %) and two hosts, A is never ejected (S2). */
static void t3_default_max_percent_two_hosts_never_ejected(void **state)
{
    weir_outlier_config_t cfg = t3_config(0);
    assert_int_equal(cfg.max_ejection_percent, 10);
    weir_outlier_t *od = weir_outlier_create(&cfg, 2, two_keys);
    for (uint64_t t = 0; t < 60 * SEC; t += 100) {
        weir_outlier_report(od, 0, 500, t);
        weir_outlier_report(od, 1, 200, t);
        if (t % SEC == 0)
            weir_outlier_sweep(od, t);
        assert_false(weir_outlier_is_ejected(od, 0));
    }
    const weir_outlier_stats_t *s = weir_outlier_stats(od);
    assert_int_equal(s->ejections_enforced_total, 0);
    assert_int_equal(s->ejections_detected[WEIR_OUTLIER_CONSECUTIVE_5XX], 600 / 5);
    assert_int_equal(s->ejections_overflow, 600 / 5);
    weir_outlier_free(od);
}

/* T3 variant: a single host at 100 % is ejected; every host is then ejected and, with Istio's
 * minHealthPercent 0, there is no panic: the caller answers 503 UH. */
static void t3_single_host_all_ejected(void **state)
{
    weir_outlier_config_t cfg = t3_config(100);
    weir_outlier_t *od = weir_outlier_create(&cfg, 1, two_keys);
    load(od, 0, 5, 500, 0);
    assert_true(weir_outlier_is_ejected(od, 0));
    size_t healthy = weir_outlier_healthy_hosts(od);
    assert_int_equal(healthy, 0);
    assert_false(weir_outlier_panic(healthy, weir_outlier_host_count(od), 0));
    /* With minHealthPercent 50 the LB would ignore the ejection instead. */
    assert_true(weir_outlier_panic(healthy, weir_outlier_host_count(od), 50));
    weir_outlier_free(od);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_istio_defaults),
        cmocka_unit_test(envoy_DetectorStaticConfigMaxDefaultValue),
        cmocka_unit_test(envoy_DetectorStaticConfigBaseLargerThanMaxNoMax),
        cmocka_unit_test(envoy_DetectorStaticConfigiInvalidMaxEjectTime),
        cmocka_unit_test(envoy_BasicFlow5xxViaHttpCodes),
        cmocka_unit_test(envoy_BasicFlow5xxViaNonHttpCodes),
        cmocka_unit_test(envoy_BasicFlowGatewayFailure),
        cmocka_unit_test(envoy_TimeoutWithHttpCode),
        cmocka_unit_test(envoy_LargeNumberOfTimeouts),
        cmocka_unit_test(envoy_BasicFlowLocalOriginFailure),
        cmocka_unit_test(envoy_BasicFlowGatewayFailureAnd5xx),
        cmocka_unit_test(envoy_BasicFlowNonHttpCodesExternalOrigin),
        cmocka_unit_test(envoy_ExternalOriginEventsWithSplit),
        cmocka_unit_test(envoy_RemoveWhileEjected),
        cmocka_unit_test(envoy_Overflow),
        cmocka_unit_test(envoy_NotEnforcing),
        cmocka_unit_test(envoy_Consecutive_5xxAlreadyEjected),
        cmocka_unit_test(envoy_MaxEjectionPercentage),
        cmocka_unit_test(envoy_MaxEjectionPercentageSingleHost),
        cmocka_unit_test(test_max_ejection_percent_is_strict),
        cmocka_unit_test(envoy_EjectTimeBackoff),
        cmocka_unit_test(envoy_MaxEjectTime),
        cmocka_unit_test(envoy_MaxEjectTimeNotAlligned),
        cmocka_unit_test(test_success_resets_counters),
        cmocka_unit_test(test_unejection_only_on_sweep),
        cmocka_unit_test(test_counters_reset_on_unejection),
        cmocka_unit_test(test_reset_maps_to_503),
        cmocka_unit_test(test_zero_threshold_never_detects),
        cmocka_unit_test(test_null_and_out_of_range),
        cmocka_unit_test(test_rebuild_keeps_state_by_key),
        cmocka_unit_test(test_rebuild_without_keys),
        cmocka_unit_test(test_panic_threshold),
        cmocka_unit_test(t3_ejected_after_fifth_5xx_and_back_after_base),
        cmocka_unit_test(t3_reejected_within_interval_doubles),
        cmocka_unit_test(t3_reejected_later_decays_to_base),
        cmocka_unit_test(t3_default_max_percent_two_hosts_never_ejected),
        cmocka_unit_test(t3_single_host_all_ejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
