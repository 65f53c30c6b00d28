/* common/outlier.h: passive outlier detection for one cluster, Envoy's detector as Istio
 * configures it (DestinationRule trafficPolicy.outlierDetection).
 *
 * Consecutive-error detection only: 5xx, gateway errors (502/503/504) and, in split mode,
 * local-origin failures. Success-rate and failure-percentage detection are left out because
 * Istio forces their enforcement to 0. The rules follow Envoy's outlier_detection_impl.cc:
 *  - a counter that reaches its threshold exactly (==) detects; detection of a host that is
 *    already ejected does nothing (its counter keeps climbing until the un-ejection resets it);
 *  - ejection is allowed only if 100 * (active + 1) / hosts <= max_ejection_percent (strict:
 *    no "always eject one host", which Istio never sets), else ejections_overflow counts;
 *  - the ejection lasts min(base * backoff, max) where backoff is a decaying counter: +1 on each
 *    ejection while backoff * base < max + base, -1 on each sweep that finds the host in service
 *    and its last return at least one interval old;
 *  - hosts return only in weir_outlier_sweep(), so an ejection lasts up to one interval longer
 *    than its time, and the return resets the host's consecutive counters.
 * Envoy posts detection to its main thread; weir has one loop thread, so detection runs inside
 * weir_outlier_report(), in the order Envoy's posted events would run (gateway, then 5xx).
 *
 * Pure: the module never reads the clock nor draws random numbers; callers pass now_ms (the
 * loop's monotonic milliseconds). Enforcement is a bool, not Envoy's percentage roll, because
 * Istio only ever sets enforcing_* to 0 or 100. Ejection jitter is Envoy's default, 0.
 *
 * Ownership: a detector is created for one cluster's host list and owned by whoever holds that
 * cluster (the snapshot); hosts are identified by their index in that list, and by a stable key
 * ("ip:port", copied) so a reload can build the next detector keeping the state of the hosts
 * that persist. Per-host state is one array allocated at creation: reports never allocate.
 * Loop thread only. */
#ifndef WEIR_OUTLIER_H
#define WEIR_OUTLIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Local-origin results for weir_outlier_report(), beside plain HTTP statuses (>= 0). Mapped as
 * Envoy's router reports them: a reset of the upstream stream (anything but an overflow, which
 * the caller must not report at all) is LocalOriginConnectFailed in Envoy, like a refused connect.
 * Without split mode: CONNECT_FAILED and RESET count as a 503, TIMEOUT as a 504 (both gateway
 * errors), CONNECT_SUCCESS is ignored. With split mode they feed the local-origin counter and
 * CONNECT_SUCCESS resets it. */
enum {
    WEIR_OUTLIER_CONNECT_FAILED = -1, /* connect refused, connect timeout, TLS handshake failure */
    WEIR_OUTLIER_TIMEOUT = -2,        /* per-try or route timeout while waiting for the answer */
    WEIR_OUTLIER_RESET = -3,          /* connection closed or reset before the response head */
    WEIR_OUTLIER_CONNECT_SUCCESS = -4 /* the connection is up (before any response) */
};

/* What detected an ejection; indexes the per-kind stats. */
typedef enum {
    WEIR_OUTLIER_CONSECUTIVE_5XX,
    WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE,
    WEIR_OUTLIER_CONSECUTIVE_LOCAL_ORIGIN_FAILURE,
    WEIR_OUTLIER_KIND_COUNT
} weir_outlier_kind_t;

/* Envoy's OutlierDetection fields that Istio sets. A threshold of 0 never detects (a counter
 * that was just incremented is never 0), as in Envoy. */
typedef struct {
    uint32_t consecutive_5xx;
    bool enforcing_consecutive_5xx;
    uint32_t consecutive_gateway_failure;
    bool enforcing_consecutive_gateway_failure;
    uint32_t consecutive_local_origin_failure; /* counted only in split mode */
    bool enforcing_consecutive_local_origin_failure;
    bool split_external_local_origin_errors;
    uint64_t interval_ms; /* how often the caller runs weir_outlier_sweep() */
    uint64_t base_ejection_ms;
    uint64_t max_ejection_ms;      /* 0: Envoy's default, max(300 s, base); below base: base */
    uint32_t max_ejection_percent; /* above 100 means 100 */
} weir_outlier_config_t;

/* Per-host state, for load balancing and for /clusters. Times are the caller's now_ms. */
typedef struct {
    bool ejected;
    uint64_t last_ejection_ms; /* meaningful when num_ejections > 0: "ejected since" */
    bool has_unejection;
    uint64_t last_unejection_ms; /* meaningful when has_unejection */
    uint32_t num_ejections;      /* lifetime, this host */
    uint32_t backoff;            /* Envoy's eject_time_backoff: the current ejection is base * it */
    weir_outlier_kind_t last_ejection_kind;
    uint32_t consecutive_5xx;
    uint32_t consecutive_gateway_failure;
    uint32_t consecutive_local_origin_failure;
} weir_outlier_host_state_t;

/* Cluster-wide counters, named after Envoy's outlier_detection.* stats. ejections_total and
 * ejections_consecutive_5xx are Envoy's deprecated counters, kept with their odd rules
 * (consecutive-5xx detections that passed the max-percent check, enforced or not; all
 * consecutive-5xx detections) because Envoy still emits them. */
typedef struct {
    uint64_t ejections_active; /* gauge: hosts ejected now */
    uint64_t ejections_overflow;
    uint64_t ejections_enforced_total;
    uint64_t ejections_detected[WEIR_OUTLIER_KIND_COUNT];
    uint64_t ejections_enforced[WEIR_OUTLIER_KIND_COUNT];
    uint64_t ejections_total;
    uint64_t ejections_consecutive_5xx;
} weir_outlier_stats_t;

typedef struct weir_outlier weir_outlier_t;

/* Fills cfg with what Istio emits for an `outlierDetection: {}` block with no field set:
 * consecutive_5xx 5 enforced, consecutive_gateway_failure 5 not enforced, local-origin 5
 * enforced (Envoy's default, used only in split mode), split off, interval 10 s, base ejection
 * 30 s, max ejection 300 s, max_ejection_percent 10. The config parser overrides what the YAML
 * sets (Istio: a field > 0 also turns its enforcement on; 0 turns it off). */
void weir_outlier_config_istio_defaults(weir_outlier_config_t *cfg);

/* Creates a detector for n_hosts hosts, all in service with zeroed counters. keys[i] is host
 * i's stable identity (copied); keys may be NULL, and so may any keys[i], when state need never
 * carry over. The config is copied. Never NULL (allocation failure aborts). */
weir_outlier_t *weir_outlier_create(const weir_outlier_config_t *cfg, size_t n_hosts,
                                    const char *const *keys);

/* Creates the detector for a reloaded cluster: like weir_outlier_create(), but each host whose
 * key was in `old` starts with that host's state (ejection, backoff, counters), and the
 * cluster-wide counters carry over; ejections_active is recounted over the new host list, so
 * removed hosts no longer count. `old` is only read (it may be NULL) and stays valid: requests
 * still running on the old snapshot report to it, and what they report after this call is not
 * carried. The new config applies from now on, also to the carried ejections. */
weir_outlier_t *weir_outlier_rebuild(const weir_outlier_t *old, const weir_outlier_config_t *cfg,
                                     size_t n_hosts, const char *const *keys);

/* Frees the detector and its copied keys. NULL is a no-op. */
void weir_outlier_free(weir_outlier_t *od);

/* Records one finished upstream attempt of host `host`: an HTTP status (the response head's),
 * or one of the WEIR_OUTLIER_* local-origin results. May eject the host, never past
 * max_ejection_percent. Never allocates. A NULL detector (no outlierDetection), an index out of
 * range or an unknown negative result is ignored. Results for an ejected host (requests already
 * in flight) still count. */
void weir_outlier_report(weir_outlier_t *od, size_t host, int result, uint64_t now_ms);

/* The interval sweep; the caller runs it every config interval_ms. Returns to service every
 * ejected host whose ejection time, min(base * backoff, max), has elapsed since it was ejected
 * (resetting its consecutive counters), then lowers by one the backoff of every host in service
 * whose last return is at least one interval old. Returns how many hosts came back. */
size_t weir_outlier_sweep(weir_outlier_t *od, uint64_t now_ms);

/* Whether load balancing must skip host `host`. False for a NULL detector or an index out of
 * range. */
bool weir_outlier_is_ejected(const weir_outlier_t *od, size_t host);

/* The number of hosts, and of hosts not ejected (both 0 for a NULL detector). */
size_t weir_outlier_host_count(const weir_outlier_t *od);
size_t weir_outlier_healthy_hosts(const weir_outlier_t *od);

/* Envoy's panic mode with Istio's minHealthPercent as the healthy_panic_threshold: true when the
 * percentage of healthy hosts is below min_health_percent, in which case load balancing ignores
 * ejections. Istio's default is 0, so this is never true and a cluster whose hosts are all
 * ejected has no host to pick: the caller answers 503 with flag UH, "no healthy upstream". */
bool weir_outlier_panic(size_t healthy_hosts, size_t total_hosts, uint32_t min_health_percent);

/* Host `host`'s state, or NULL for an index out of range. Valid until the detector is freed. */
const weir_outlier_host_state_t *weir_outlier_host_state(const weir_outlier_t *od, size_t host);

/* Host `host`'s stable key as given at creation (NULL if none was given or out of range). */
const char *weir_outlier_host_key(const weir_outlier_t *od, size_t host);

/* How long host `host`'s current ejection lasts: min(base * backoff, max). Meaningful while the
 * host is ejected; 0 for an index out of range. */
uint64_t weir_outlier_ejection_ms(const weir_outlier_t *od, size_t host);

/* The effective config (max_ejection_ms resolved) and the cluster-wide counters. od must not
 * be NULL. */
const weir_outlier_config_t *weir_outlier_config(const weir_outlier_t *od);
const weir_outlier_stats_t *weir_outlier_stats(const weir_outlier_t *od);

#endif
