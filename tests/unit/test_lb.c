/* tests/unit/test_lb.c: the endpoint pickers, driven with chosen random numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/lb.h"

static void test_round_robin_cycles(void **state)
{
    weir_lb_t lb;
    weir_lb_init(&lb, WEIR_LB_ROUND_ROBIN);
    int want[] = {0, 1, 2, 0, 1, 2, 0};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_int_equal(weir_lb_pick(&lb, 3, NULL, NULL, 7, 9), want[i]);
}

static void test_round_robin_skips_excluded(void **state)
{
    weir_lb_t lb;
    weir_lb_init(&lb, WEIR_LB_ROUND_ROBIN);
    bool eligible[] = {true, false, true};
    int want[] = {0, 2, 0, 2, 0};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_int_equal(weir_lb_pick(&lb, 3, eligible, NULL, 0, 0), want[i]);

    /* The cursor sits on 1 after picking 0; excluding 1 passes the turn to 2, and the next
     * pick with everything eligible goes on from there. */
    weir_lb_init(&lb, WEIR_LB_ROUND_ROBIN);
    assert_int_equal(weir_lb_pick(&lb, 3, NULL, NULL, 0, 0), 0);
    assert_int_equal(weir_lb_pick(&lb, 3, eligible, NULL, 0, 0), 2);
    assert_int_equal(weir_lb_pick(&lb, 3, NULL, NULL, 0, 0), 0);
    assert_int_equal(weir_lb_pick(&lb, 3, NULL, NULL, 0, 0), 1);
}

static void test_random_indexes_eligible(void **state)
{
    weir_lb_t lb;
    weir_lb_init(&lb, WEIR_LB_RANDOM);
    bool eligible[] = {false, true, false, true, true};
    assert_int_equal(weir_lb_pick(&lb, 5, eligible, NULL, 0, 0), 1);
    assert_int_equal(weir_lb_pick(&lb, 5, eligible, NULL, 1, 0), 3);
    assert_int_equal(weir_lb_pick(&lb, 5, eligible, NULL, 2, 0), 4);
    assert_int_equal(weir_lb_pick(&lb, 5, eligible, NULL, 3, 0), 1);
    const int eligible_idx[] = {1, 3, 4};
    assert_int_equal(weir_lb_pick(&lb, 5, eligible, NULL, UINT32_MAX, 0),
                     eligible_idx[UINT32_MAX % 3]);
    assert_int_equal(weir_lb_pick(&lb, 5, NULL, NULL, 7, 0), 2);

    /* PASSTHROUGH picks as RANDOM (the caller handles the original destination). */
    weir_lb_init(&lb, WEIR_LB_PASSTHROUGH);
    assert_int_equal(weir_lb_pick(&lb, 5, eligible, NULL, 1, 0), 3);
}

static void test_p2c_prefers_fewer_active(void **state)
{
    weir_lb_t lb;
    weir_lb_init(&lb, WEIR_LB_LEAST_REQUEST);
    uint32_t active[] = {5, 1, 3};
    assert_int_equal(weir_lb_pick(&lb, 3, NULL, active, 0, 1), 1);
    assert_int_equal(weir_lb_pick(&lb, 3, NULL, active, 1, 0), 1);
    assert_int_equal(weir_lb_pick(&lb, 3, NULL, active, 0, 2), 2);
    assert_int_equal(weir_lb_pick(&lb, 3, NULL, active, 2, 0), 2);
    /* Both samples on the same candidate: that one, whatever its load. */
    assert_int_equal(weir_lb_pick(&lb, 3, NULL, active, 0, 3), 0);

    /* A tie keeps the first sample, as Envoy's P2C. */
    uint32_t even[] = {2, 2};
    assert_int_equal(weir_lb_pick(&lb, 2, NULL, even, 1, 0), 1);
    assert_int_equal(weir_lb_pick(&lb, 2, NULL, even, 0, 1), 0);

    /* Samples are drawn among eligible candidates only: the idle excluded one never wins. */
    bool eligible[] = {true, false, true};
    uint32_t load[] = {4, 0, 1};
    for (uint32_t r1 = 0; r1 < 4; r1++) {
        for (uint32_t r2 = 0; r2 < 4; r2++) {
            int got = weir_lb_pick(&lb, 3, eligible, load, r1, r2);
            assert_int_not_equal(got, 1);
            if (r1 % 2 != r2 % 2)
                assert_int_equal(got, 2);
        }
    }
}

static void test_no_eligible(void **state)
{
    weir_lb_policy_t policies[] = {WEIR_LB_LEAST_REQUEST, WEIR_LB_ROUND_ROBIN, WEIR_LB_RANDOM,
                                   WEIR_LB_PASSTHROUGH};
    bool none[] = {false, false};
    uint32_t active[] = {0, 0};
    for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
        weir_lb_t lb;
        weir_lb_init(&lb, policies[i]);
        assert_int_equal(weir_lb_pick(&lb, 2, none, active, 1, 2), -1);
        assert_int_equal(weir_lb_pick(&lb, 0, NULL, NULL, 1, 2), -1);
    }
}

/* Every draw in [0, 1e6) once: the exact number of hits for a percentage. */
static uint32_t hits_over_all_draws(double percent)
{
    uint32_t n = 0;
    for (uint32_t d = 0; d < 1000000u; d++)
        n += weir_lb_percent_hits(percent, d);
    return n;
}

static void test_percent_hits_exactly(void **state)
{
    assert_int_equal(hits_over_all_draws(0), 0);
    assert_int_equal(hits_over_all_draws(100), 1000000);
    assert_int_equal(hits_over_all_draws(50), 500000);
    assert_int_equal(hits_over_all_draws(10), 100000);
    assert_int_equal(hits_over_all_draws(0.0001), 1); /* Istio's finest step */
    assert_int_equal(hits_over_all_draws(12.3456), 123456);
    assert_int_equal(hits_over_all_draws(99.9999), 999999);
    assert_int_equal(hits_over_all_draws(-5), 0);
    assert_int_equal(hits_over_all_draws(250), 1000000);
}

static void test_percent_draw_is_reduced(void **state)
{
    /* any 32-bit draw is folded into [0, 1e6): 1e6 + 3 behaves as 3 */
    assert_true(weir_lb_percent_hits(0.0004, 1000003u));
    assert_false(weir_lb_percent_hits(0.0004, 1000004u));
    assert_false(weir_lb_percent_hits(100 - 0.0001, 999999u));
    assert_true(weir_lb_percent_hits(100, UINT32_MAX));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_cycles),
        cmocka_unit_test(test_round_robin_skips_excluded),
        cmocka_unit_test(test_random_indexes_eligible),
        cmocka_unit_test(test_p2c_prefers_fewer_active),
        cmocka_unit_test(test_no_eligible),
        cmocka_unit_test(test_percent_hits_exactly),
        cmocka_unit_test(test_percent_draw_is_reduced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
