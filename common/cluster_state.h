/* common/cluster_state.h: what a cluster keeps across config reloads: Envoy's circuit
 * breakers (counted per cluster and per proxy, Istio S8), the queue of requests waiting for a
 * connection, the outlier detector's state and its sweep, and the cluster's counters.
 *
 * Snapshots come and go; a cluster of the same name (outbound|80|v1|web-service...) in the next
 * snapshot finds the same state, so pools, ejections and counts carry over. Refcounted: each
 * snapshot cluster, each open upstream connection and each waiting request holds a reference.
 * Loop thread only. */
#ifndef WEIR_CLUSTER_STATE_H
#define WEIR_CLUSTER_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/outlier.h"
#include "common/upstream_pool.h"

/* Istio's circuit breaker thresholds; UINT32_MAX when the DestinationRule sets none. */
typedef struct {
    uint32_t max_connections;
    uint32_t max_pending_requests;
    uint32_t max_requests;
    uint32_t max_requests_per_connection; /* 0: unlimited */
    uint32_t max_retries;
} weir_cluster_limits_t;

/* Envoy's names for what is counted (cluster.<name>.upstream_*). */
typedef struct {
    uint64_t rq_total, rq_pending_total;
    uint64_t rq_pending_overflow, cx_overflow, rq_overflow, rq_retry_overflow;
    uint64_t cx_total;
    /* as the shadow cluster: copies sent, copies given up (too slow, or over the limit), and
     * the shadows' answers by class (failed: no answer at all) */
    uint64_t shadow_rq_total, shadow_abandoned;
    uint64_t shadow_rq_2xx, shadow_rq_3xx, shadow_rq_4xx, shadow_rq_5xx, shadow_rq_failed;
} weir_cluster_counters_t;

typedef struct weir_cluster_state weir_cluster_state_t;

/* Called with a waiting request when a connection may be available (one closed, or went back
 * to its pool). The waiter has already been taken off the queue. */
typedef void (*weir_cluster_wake_fn)(weir_pool_link_t *waiter);

/* Calls fn for every cluster state alive (for /stats), in no particular order. */
void weir_cluster_state_foreach(void (*fn)(weir_cluster_state_t *cs, void *ctx), void *ctx);

/* The state for a cluster name, created on first use. Takes a reference. */
weir_cluster_state_t *weir_cluster_state_acquire(const char *name);
weir_cluster_state_t *weir_cluster_state_ref(weir_cluster_state_t *cs);
void weir_cluster_state_unref(weir_cluster_state_t *cs);

const char *weir_cluster_state_name(const weir_cluster_state_t *cs);

/* The limits in force (the newest snapshot's). */
void weir_cluster_state_set_limits(weir_cluster_state_t *cs, const weir_cluster_limits_t *l);
const weir_cluster_limits_t *weir_cluster_state_limits(const weir_cluster_state_t *cs);
/* What no DestinationRule limits: Istio's 2^32-1 for everything, unlimited per connection. */
void weir_cluster_limits_unlimited(weir_cluster_limits_t *l);

/* Gauges the proxy keeps up to date. */
typedef struct {
    uint32_t open_connections; /* connecting, busy or idle */
    uint32_t pending_requests; /* waiting in the queue */
    uint32_t active_requests;  /* attempts holding or waiting for a connection */
    uint32_t active_retries;   /* requests waiting out a retry back-off or retrying */
} weir_cluster_gauges_t;
weir_cluster_gauges_t *weir_cluster_state_gauges(weir_cluster_state_t *cs);
weir_cluster_counters_t *weir_cluster_state_counters(weir_cluster_state_t *cs);

/* The pools of this cluster's endpoints (the snapshot registers them), so a request at the
 * connection limit can close an idle connection to another endpoint and open its own. */
void weir_cluster_state_add_pool(weir_cluster_state_t *cs, weir_upstream_pool_t *pool);
/* An idle connection of this cluster other than to `except`, unlinked from its pool, or NULL. */
weir_pool_link_t *weir_cluster_state_take_any_idle(weir_cluster_state_t *cs,
                                                   const weir_upstream_pool_t *except);

/* The pending queue (FIFO). The link is the waiter's own. */
void weir_cluster_state_enqueue(weir_cluster_state_t *cs, weir_pool_link_t *waiter);
void weir_cluster_state_dequeue(weir_cluster_state_t *cs, weir_pool_link_t *waiter);
/* A connection closed or went idle: wake the first waiter soon (from the loop, not from inside
 * the caller), with `wake`. */
void weir_cluster_state_notify(weir_cluster_state_t *cs, weir_cluster_wake_fn wake);

/* Outlier detection: the detector the newest snapshot's cluster owns, so the next one can
 * carry its host state over (weir_outlier_rebuild), and the sweep that un-ejects hosts every
 * interval. od may be NULL (no outlierDetection). */
void weir_cluster_state_set_detector(weir_cluster_state_t *cs, weir_outlier_t *od,
                                     uint64_t interval_ms);
weir_outlier_t *weir_cluster_state_detector(const weir_cluster_state_t *cs);
/* The owner of od is going away: stop sweeping it if it is the current one. */
void weir_cluster_state_forget_detector(weir_cluster_state_t *cs, const weir_outlier_t *od);

#endif
