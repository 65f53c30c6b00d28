/* common/cluster_state.c: see cluster_state.h. */
#include "common/cluster_state.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/loop.h"
#include "common/mem.h"

struct weir_cluster_state {
    struct weir_cluster_state *next; /* registry */
    char *name;
    unsigned refs;
    weir_cluster_limits_t limits;
    weir_cluster_gauges_t gauges;
    weir_cluster_counters_t counters;
    weir_upstream_pool_t **pools; /* referenced */
    size_t n_pools;
    weir_pool_link_t waiters; /* sentinel: FIFO, oldest first */
    weir_cluster_wake_fn wake;
    uv_timer_t wake_timer, sweep_timer;
    int closing_handles; /* freed when both timers have closed, in whatever order */
    weir_outlier_t *od; /* borrowed from the newest snapshot's cluster */
};

/* Cluster names are few and looked up at config load only. */
static weir_cluster_state_t *registry;

void weir_cluster_limits_unlimited(weir_cluster_limits_t *l)
{
    l->max_connections = l->max_pending_requests = l->max_requests = l->max_retries = UINT32_MAX;
    l->max_requests_per_connection = 0;
}

weir_cluster_state_t *weir_cluster_state_acquire(const char *name)
{
    for (weir_cluster_state_t *cs = registry; cs; cs = cs->next) {
        if (strcmp(cs->name, name) == 0)
            return weir_cluster_state_ref(cs);
    }
    weir_cluster_state_t *cs = weir_mem_calloc(1, sizeof(*cs));
    cs->name = weir_mem_strdup(name);
    cs->refs = 1;
    weir_cluster_limits_unlimited(&cs->limits);
    cs->waiters.next = cs->waiters.prev = &cs->waiters;
    uv_timer_init(weir_loop(), &cs->wake_timer);
    uv_timer_init(weir_loop(), &cs->sweep_timer);
    cs->wake_timer.data = cs->sweep_timer.data = cs;
    /* housekeeping never keeps the loop alive on its own */
    uv_unref((uv_handle_t *)&cs->wake_timer);
    uv_unref((uv_handle_t *)&cs->sweep_timer);
    cs->next = registry;
    registry = cs;
    return cs;
}

void weir_cluster_state_foreach(void (*fn)(weir_cluster_state_t *cs, void *ctx), void *ctx)
{
    for (weir_cluster_state_t *cs = registry; cs; cs = cs->next)
        fn(cs, ctx);
}

weir_cluster_state_t *weir_cluster_state_ref(weir_cluster_state_t *cs)
{
    cs->refs++;
    return cs;
}

static void timer_closed(uv_handle_t *h)
{
    weir_cluster_state_t *cs = h->data;
    if (--cs->closing_handles == 0)
        free(cs);
}

void weir_cluster_state_unref(weir_cluster_state_t *cs)
{
    assert(cs->refs > 0);
    if (--cs->refs > 0)
        return;
    for (weir_cluster_state_t **pp = &registry; *pp; pp = &(*pp)->next) {
        if (*pp == cs) {
            *pp = cs->next;
            break;
        }
    }
    for (size_t i = 0; i < cs->n_pools; i++)
        weir_upstream_pool_unref(cs->pools[i]);
    free(cs->pools);
    free(cs->name);
    cs->closing_handles = 2;
    uv_close((uv_handle_t *)&cs->wake_timer, timer_closed);
    uv_close((uv_handle_t *)&cs->sweep_timer, timer_closed);
}

const char *weir_cluster_state_name(const weir_cluster_state_t *cs)
{
    return cs->name;
}

void weir_cluster_state_set_limits(weir_cluster_state_t *cs, const weir_cluster_limits_t *l)
{
    cs->limits = *l;
}

const weir_cluster_limits_t *weir_cluster_state_limits(const weir_cluster_state_t *cs)
{
    return &cs->limits;
}

weir_cluster_gauges_t *weir_cluster_state_gauges(weir_cluster_state_t *cs)
{
    return &cs->gauges;
}

weir_cluster_counters_t *weir_cluster_state_counters(weir_cluster_state_t *cs)
{
    return &cs->counters;
}

void weir_cluster_state_add_pool(weir_cluster_state_t *cs, weir_upstream_pool_t *pool)
{
    for (size_t i = 0; i < cs->n_pools; i++) {
        if (cs->pools[i] == pool)
            return;
    }
    cs->pools = weir_mem_realloc(cs->pools, (cs->n_pools + 1) * sizeof(*cs->pools));
    cs->pools[cs->n_pools++] = weir_upstream_pool_ref(pool);
}

weir_pool_link_t *weir_cluster_state_take_any_idle(weir_cluster_state_t *cs,
                                                   const weir_upstream_pool_t *except)
{
    for (size_t i = 0; i < cs->n_pools; i++) {
        if (cs->pools[i] != except && weir_upstream_pool_idle_count(cs->pools[i]) > 0)
            return weir_upstream_pool_take_idle(cs->pools[i]);
    }
    return NULL;
}

void weir_cluster_state_enqueue(weir_cluster_state_t *cs, weir_pool_link_t *w)
{
    w->prev = cs->waiters.prev;
    w->next = &cs->waiters;
    cs->waiters.prev->next = w;
    cs->waiters.prev = w;
}

void weir_cluster_state_dequeue(weir_cluster_state_t *cs, weir_pool_link_t *w)
{
    if (w->next == NULL)
        return;
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->next = w->prev = NULL;
}

static void on_wake(uv_timer_t *t)
{
    weir_cluster_state_t *cs = t->data;
    weir_pool_link_t *w = cs->waiters.next;
    if (w == &cs->waiters || cs->wake == NULL)
        return;
    weir_cluster_state_dequeue(cs, w);
    cs->wake(w);
    /* more may be able to go: each wake handles one, the next notify or this re-check the rest */
    if (cs->waiters.next != &cs->waiters)
        uv_timer_start(&cs->wake_timer, on_wake, 0, 0);
}

void weir_cluster_state_notify(weir_cluster_state_t *cs, weir_cluster_wake_fn wake)
{
    cs->wake = wake;
    if (cs->waiters.next != &cs->waiters)
        uv_timer_start(&cs->wake_timer, on_wake, 0, 0);
}

static void on_sweep(uv_timer_t *t)
{
    weir_cluster_state_t *cs = t->data;
    if (cs->od)
        weir_outlier_sweep(cs->od, weir_now_ms());
}

void weir_cluster_state_set_detector(weir_cluster_state_t *cs, weir_outlier_t *od,
                                     uint64_t interval_ms)
{
    cs->od = od;
    if (od == NULL || interval_ms == 0) {
        uv_timer_stop(&cs->sweep_timer);
        return;
    }
    uv_timer_start(&cs->sweep_timer, on_sweep, interval_ms, interval_ms);
}

weir_outlier_t *weir_cluster_state_detector(const weir_cluster_state_t *cs)
{
    return cs->od;
}

void weir_cluster_state_forget_detector(weir_cluster_state_t *cs, const weir_outlier_t *od)
{
    if (cs->od == od) {
        cs->od = NULL;
        uv_timer_stop(&cs->sweep_timer);
    }
}
