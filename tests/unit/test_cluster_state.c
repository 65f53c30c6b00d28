/* tests/unit/test_cluster_state.c: the accounting behind Envoy's HTTP/1 connection pool as
 * the proxy drives it: state that outlives reloads by cluster name, Istio's "unlimited"
 * thresholds, the FIFO pending queue and its wake-ups from the loop, and idle connections of
 * other endpoints that can be closed to make room at maxConnections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>
#include <uv.h>

#include "common/cluster_state.h"
#include "common/loop.h"
#include "common/upstream_pool.h"

static void test_state_outlives_a_snapshot_by_name(void **state)
{
    weir_cluster_state_t *a = weir_cluster_state_acquire("outbound|80|v1|web.default.svc.cluster.local");
    weir_cluster_state_counters(a)->rq_total = 7;
    weir_cluster_state_gauges(a)->open_connections = 2;
    /* the next snapshot's cluster of the same name, before the old snapshot lets go */
    weir_cluster_state_t *b = weir_cluster_state_acquire("outbound|80|v1|web.default.svc.cluster.local");
    assert_ptr_equal(a, b);
    weir_cluster_state_unref(a);
    assert_int_equal(weir_cluster_state_counters(b)->rq_total, 7);
    assert_int_equal(weir_cluster_state_gauges(b)->open_connections, 2);
    weir_cluster_state_t *other = weir_cluster_state_acquire("outbound|80|v2|web.default.svc.cluster.local");
    assert_ptr_not_equal(other, b);
    assert_int_equal(weir_cluster_state_counters(other)->rq_total, 0);
    weir_cluster_state_gauges(b)->open_connections = 0;
    weir_cluster_state_unref(b);
    weir_cluster_state_unref(other);
}

static void test_limits_default_to_istio_unlimited_and_follow_the_newest(void **state)
{
    weir_cluster_limits_t l;
    weir_cluster_limits_unlimited(&l);
    assert_int_equal(l.max_connections, UINT32_MAX);
    assert_int_equal(l.max_pending_requests, UINT32_MAX);
    assert_int_equal(l.max_requests, UINT32_MAX);
    assert_int_equal(l.max_retries, UINT32_MAX);
    assert_int_equal(l.max_requests_per_connection, 0);

    weir_cluster_state_t *cs = weir_cluster_state_acquire("limits");
    weir_cluster_state_set_limits(cs, &l);
    l.max_connections = 1;
    l.max_pending_requests = 1;
    weir_cluster_state_set_limits(cs, &l); /* a reload tightens them */
    assert_int_equal(weir_cluster_state_limits(cs)->max_connections, 1);
    assert_int_equal(weir_cluster_state_limits(cs)->max_pending_requests, 1);
    weir_cluster_state_unref(cs);
}

static weir_pool_link_t *woken[8];
static size_t n_woken;

static void record_wake(weir_pool_link_t *w)
{
    woken[n_woken++] = w;
}

static void test_pending_queue_is_fifo_and_woken_from_the_loop(void **state)
{
    n_woken = 0;
    weir_cluster_state_t *cs = weir_cluster_state_acquire("queue");
    weir_pool_link_t w1 = {0}, w2 = {0}, w3 = {0};
    weir_cluster_state_enqueue(cs, &w1);
    weir_cluster_state_enqueue(cs, &w2);
    weir_cluster_state_enqueue(cs, &w3);
    weir_cluster_state_dequeue(cs, &w2); /* gave up (client went away): leaves the queue */
    weir_cluster_state_dequeue(cs, &w2); /* twice is harmless */

    weir_cluster_state_notify(cs, record_wake);
    assert_int_equal(n_woken, 0); /* never from inside the caller */
    uv_run(weir_loop(), UV_RUN_NOWAIT);
    assert_true(n_woken >= 1);
    assert_ptr_equal(woken[0], &w1);
    while (n_woken < 2)
        uv_run(weir_loop(), UV_RUN_ONCE);
    assert_ptr_equal(woken[1], &w3);
    /* the queue is empty: another notify wakes nobody */
    weir_cluster_state_notify(cs, record_wake);
    uv_run(weir_loop(), UV_RUN_NOWAIT);
    assert_int_equal(n_woken, 2);
    weir_cluster_state_unref(cs);
    uv_run(weir_loop(), UV_RUN_NOWAIT);
}

static weir_upstream_pool_t *pool_for(const char *ip, uint16_t port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, ip, &sa.sin_addr);
    char name[64];
    snprintf(name, sizeof(name), "%s:%u", ip, port);
    return weir_upstream_pool_acquire(name, (const struct sockaddr *)&sa, sizeof(sa));
}

static void test_idle_connections_lifo_and_taken_from_other_endpoints(void **state)
{
    weir_upstream_pool_t *p1 = pool_for("10.244.0.11", 80), *p2 = pool_for("10.244.0.12", 80);
    /* one pool per address, shared by every cluster and snapshot that names it */
    weir_upstream_pool_t *again = pool_for("10.244.0.11", 80);
    assert_ptr_equal(again, p1);
    weir_upstream_pool_unref(again);

    weir_pool_link_t a = {0}, b = {0}, c = {0};
    weir_upstream_pool_put_idle(p1, &a);
    weir_upstream_pool_put_idle(p1, &b);
    weir_upstream_pool_put_idle(p2, &c);
    assert_int_equal(weir_upstream_pool_idle_count(p1), 2);
    /* LIFO: the hottest connection is reused, the others age out */
    assert_ptr_equal(weir_upstream_pool_take_idle(p1), &b);
    weir_upstream_pool_put_idle(p1, &b);

    weir_cluster_state_t *cs = weir_cluster_state_acquire("room");
    weir_cluster_state_add_pool(cs, p1);
    weir_cluster_state_add_pool(cs, p2);
    /* at maxConnections, a request for p2 may close an idle connection of p1, never its own */
    weir_pool_link_t *l = weir_cluster_state_take_any_idle(cs, p2);
    assert_true(l == &a || l == &b);
    assert_int_equal(weir_upstream_pool_idle_count(p1), 1);
    assert_int_equal(weir_upstream_pool_idle_count(p2), 1);
    assert_null(l->next); /* unlinked: the caller must not remove it again */
    weir_pool_link_t *l2 = weir_cluster_state_take_any_idle(cs, p2);
    assert_non_null(l2);
    assert_null(weir_cluster_state_take_any_idle(cs, p2)); /* only p2's own is left */
    assert_ptr_equal(weir_upstream_pool_take_idle(p2), &c);
    assert_null(weir_upstream_pool_take_idle(p2));

    weir_cluster_state_unref(cs);
    weir_upstream_pool_unref(p1);
    weir_upstream_pool_unref(p2);
    uv_run(weir_loop(), UV_RUN_NOWAIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_outlives_a_snapshot_by_name),
        cmocka_unit_test(test_limits_default_to_istio_unlimited_and_follow_the_newest),
        cmocka_unit_test(test_pending_queue_is_fifo_and_woken_from_the_loop),
        cmocka_unit_test(test_idle_connections_lifo_and_taken_from_other_endpoints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
