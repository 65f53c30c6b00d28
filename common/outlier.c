/* common/outlier.c: see outlier.h. */
#include "common/outlier.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

#define DEFAULT_MAX_EJECTION_MS 300000u

typedef struct {
    weir_outlier_host_state_t st;
    char *key; /* owned; NULL when the caller gave none */
} host_t;

struct weir_outlier {
    weir_outlier_config_t cfg;
    weir_outlier_stats_t stats;
    size_t n_hosts;
    host_t *hosts;
};

/* Detections found by one report, run after its counters are all updated, in the order
 * Envoy's posted events would run. */
enum { DETECT_GATEWAY = 1 << 0, DETECT_5XX = 1 << 1, DETECT_LOCAL_ORIGIN = 1 << 2 };

void weir_outlier_config_istio_defaults(weir_outlier_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->consecutive_5xx = 5;
    cfg->enforcing_consecutive_5xx = true;
    cfg->consecutive_gateway_failure = 5;
    cfg->enforcing_consecutive_gateway_failure = false;
    cfg->consecutive_local_origin_failure = 5;
    cfg->enforcing_consecutive_local_origin_failure = true;
    cfg->split_external_local_origin_errors = false;
    cfg->interval_ms = 10000;
    cfg->base_ejection_ms = 30000;
    cfg->max_ejection_ms = DEFAULT_MAX_EJECTION_MS;
    cfg->max_ejection_percent = 10;
}

static void resolve_config(weir_outlier_config_t *cfg)
{
    /* Envoy defaults max_ejection_time to max(300 s, base) and rejects a max below base; Istio
     * has no field for it, so a max below base can only come from our own callers: clamp. */
    if (cfg->max_ejection_ms == 0)
        cfg->max_ejection_ms = cfg->base_ejection_ms > DEFAULT_MAX_EJECTION_MS
                                   ? cfg->base_ejection_ms
                                   : DEFAULT_MAX_EJECTION_MS;
    if (cfg->max_ejection_ms < cfg->base_ejection_ms)
        cfg->max_ejection_ms = cfg->base_ejection_ms;
    if (cfg->max_ejection_percent > 100)
        cfg->max_ejection_percent = 100;
}

weir_outlier_t *weir_outlier_create(const weir_outlier_config_t *cfg, size_t n_hosts,
                                    const char *const *keys)
{
    weir_outlier_t *od = weir_mem_calloc(1, sizeof(*od));
    od->cfg = *cfg;
    resolve_config(&od->cfg);
    od->n_hosts = n_hosts;
    od->hosts = n_hosts ? weir_mem_calloc(n_hosts, sizeof(*od->hosts)) : NULL;
    for (size_t i = 0; keys != NULL && i < n_hosts; i++)
        od->hosts[i].key = weir_mem_strdup(keys[i]);
    return od;
}

/* An old host that has a key, for the sorted lookup a rebuild does. */
typedef struct {
    const char *key;
    size_t index;
} keyed_t;

static int cmp_keyed(const void *a, const void *b)
{
    return strcmp(((const keyed_t *)a)->key, ((const keyed_t *)b)->key);
}

static const keyed_t *find_keyed(const keyed_t *sorted, size_t n, const char *key)
{
    keyed_t probe = {key, 0};
    return bsearch(&probe, sorted, n, sizeof(*sorted), cmp_keyed);
}

weir_outlier_t *weir_outlier_rebuild(const weir_outlier_t *old, const weir_outlier_config_t *cfg,
                                     size_t n_hosts, const char *const *keys)
{
    weir_outlier_t *od = weir_outlier_create(cfg, n_hosts, keys);
    if (old == NULL)
        return od;

    /* Cluster-wide counters are the cluster's, not this host list's: they carry over whole
     * (Envoy's stats outlive a cluster update), except the gauge, recounted below. */
    od->stats = old->stats;
    od->stats.ejections_active = 0;

    /* Sort the old keys once so a reload costs O((n + m) log m), not n * m string compares. */
    keyed_t *sorted = weir_mem_alloc((old->n_hosts ? old->n_hosts : 1) * sizeof(*sorted));
    size_t n_sorted = 0;
    for (size_t i = 0; i < old->n_hosts; i++) {
        if (old->hosts[i].key != NULL)
            sorted[n_sorted++] = (keyed_t){old->hosts[i].key, i};
    }
    qsort(sorted, n_sorted, sizeof(*sorted), cmp_keyed);

    for (size_t i = 0; i < n_hosts; i++) {
        host_t *h = &od->hosts[i];
        const keyed_t *k = h->key != NULL ? find_keyed(sorted, n_sorted, h->key) : NULL;
        if (k != NULL)
            h->st = old->hosts[k->index].st;
        if (h->st.ejected)
            od->stats.ejections_active++;
    }
    free(sorted);
    return od;
}

void weir_outlier_free(weir_outlier_t *od)
{
    if (od == NULL)
        return;
    for (size_t i = 0; i < od->n_hosts; i++)
        free(od->hosts[i].key);
    free(od->hosts);
    free(od);
}

static uint64_t elapsed(uint64_t now_ms, uint64_t since_ms)
{
    /* A caller whose clock went backwards sees no time pass rather than a huge one. */
    return now_ms > since_ms ? now_ms - since_ms : 0;
}

static bool is_enforcing(const weir_outlier_config_t *cfg, weir_outlier_kind_t kind)
{
    switch (kind) {
    case WEIR_OUTLIER_CONSECUTIVE_5XX:
        return cfg->enforcing_consecutive_5xx;
    case WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE:
        return cfg->enforcing_consecutive_gateway_failure;
    case WEIR_OUTLIER_CONSECUTIVE_LOCAL_ORIGIN_FAILURE:
        return cfg->enforcing_consecutive_local_origin_failure;
    default:
        return false;
    }
}

static void eject(weir_outlier_t *od, host_t *h, weir_outlier_kind_t kind, uint64_t now_ms)
{
    const weir_outlier_config_t *cfg = &od->cfg;

    /* The strict rule of current Envoy: ejecting this host must keep the ejected share within
     * the limit. 100 * (active + 1) / n <= max, multiplied out so no rounding is involved. */
    if (100 * (od->stats.ejections_active + 1) >
        (uint64_t)cfg->max_ejection_percent * od->n_hosts) {
        od->stats.ejections_overflow++;
        return;
    }
    if (kind == WEIR_OUTLIER_CONSECUTIVE_5XX)
        od->stats.ejections_total++; /* deprecated: counted before the enforcement decision */
    if (!is_enforcing(cfg, kind))
        return;

    od->stats.ejections_active++;
    od->stats.ejections_enforced_total++;
    od->stats.ejections_enforced[kind]++;
    h->st.ejected = true;
    h->st.num_ejections++;
    h->st.last_ejection_ms = now_ms;
    h->st.last_ejection_kind = kind;
    /* Grow the backoff only while it can still lengthen the ejection: once base * backoff has
     * passed max, more ejections in a row change nothing, and a smaller counter decays faster. */
    if ((uint64_t)h->st.backoff * cfg->base_ejection_ms <
            cfg->max_ejection_ms + cfg->base_ejection_ms &&
        h->st.backoff < UINT32_MAX)
        h->st.backoff++;
}

static void on_consecutive_error(weir_outlier_t *od, host_t *h, weir_outlier_kind_t kind,
                                 uint64_t now_ms)
{
    /* Envoy ignores a detection for a host already ejected and leaves its counter alone, so
     * errors from requests still in flight cannot re-trigger until the return resets it. */
    if (h->st.ejected)
        return;
    od->stats.ejections_detected[kind]++;
    if (kind == WEIR_OUTLIER_CONSECUTIVE_5XX)
        od->stats.ejections_consecutive_5xx++; /* deprecated */
    eject(od, h, kind, now_ms);

    /* Reset the detecting counter even when nothing was ejected (overflow, not enforced), so a
     * fresh run of errors is needed to detect again. */
    switch (kind) {
    case WEIR_OUTLIER_CONSECUTIVE_5XX:
        h->st.consecutive_5xx = 0;
        break;
    case WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE:
        h->st.consecutive_gateway_failure = 0;
        break;
    case WEIR_OUTLIER_CONSECUTIVE_LOCAL_ORIGIN_FAILURE:
        h->st.consecutive_local_origin_failure = 0;
        break;
    default:
        break;
    }
}

/* Envoy's putHttpResponseCode: returns the detections to run. */
static unsigned put_http_status(const weir_outlier_config_t *cfg, host_t *h, int status)
{
    unsigned detect = 0;
    if (status >= 500 && status < 600) {
        if (status == 502 || status == 503 || status == 504) {
            if (++h->st.consecutive_gateway_failure == cfg->consecutive_gateway_failure)
                detect |= DETECT_GATEWAY;
        } else {
            h->st.consecutive_gateway_failure = 0;
        }
        if (++h->st.consecutive_5xx == cfg->consecutive_5xx)
            detect |= DETECT_5XX;
    } else {
        h->st.consecutive_5xx = 0;
        h->st.consecutive_gateway_failure = 0;
    }
    return detect;
}

void weir_outlier_report(weir_outlier_t *od, size_t host, int result, uint64_t now_ms)
{
    if (od == NULL || host >= od->n_hosts)
        return;
    host_t *h = &od->hosts[host];
    const weir_outlier_config_t *cfg = &od->cfg;
    unsigned detect = 0;

    if (result >= 0) {
        detect = put_http_status(cfg, h, result);
    } else if (!cfg->split_external_local_origin_errors) {
        /* Envoy's resultToHttpCode: local failures look like the gateway errors a proxy would
         * answer with; a connect success says nothing about the response yet. */
        switch (result) {
        case WEIR_OUTLIER_CONNECT_FAILED:
        case WEIR_OUTLIER_RESET:
            detect = put_http_status(cfg, h, 503);
            break;
        case WEIR_OUTLIER_TIMEOUT:
            detect = put_http_status(cfg, h, 504);
            break;
        default:
            break;
        }
    } else {
        switch (result) {
        case WEIR_OUTLIER_CONNECT_FAILED:
        case WEIR_OUTLIER_RESET:
        case WEIR_OUTLIER_TIMEOUT:
            if (++h->st.consecutive_local_origin_failure == cfg->consecutive_local_origin_failure)
                detect = DETECT_LOCAL_ORIGIN;
            break;
        case WEIR_OUTLIER_CONNECT_SUCCESS:
            h->st.consecutive_local_origin_failure = 0;
            break;
        default:
            break;
        }
    }

    if (detect & DETECT_GATEWAY)
        on_consecutive_error(od, h, WEIR_OUTLIER_CONSECUTIVE_GATEWAY_FAILURE, now_ms);
    if (detect & DETECT_5XX)
        on_consecutive_error(od, h, WEIR_OUTLIER_CONSECUTIVE_5XX, now_ms);
    if (detect & DETECT_LOCAL_ORIGIN)
        on_consecutive_error(od, h, WEIR_OUTLIER_CONSECUTIVE_LOCAL_ORIGIN_FAILURE, now_ms);
}

static uint64_t ejection_ms(const weir_outlier_config_t *cfg, const host_t *h)
{
    uint64_t t = cfg->base_ejection_ms * h->st.backoff;
    return t < cfg->max_ejection_ms ? t : cfg->max_ejection_ms;
}

size_t weir_outlier_sweep(weir_outlier_t *od, uint64_t now_ms)
{
    if (od == NULL)
        return 0;
    size_t returned = 0;

    for (size_t i = 0; i < od->n_hosts; i++) {
        host_t *h = &od->hosts[i];
        if (!h->st.ejected || elapsed(now_ms, h->st.last_ejection_ms) < ejection_ms(&od->cfg, h))
            continue;
        od->stats.ejections_active--;
        h->st.ejected = false;
        /* A host coming back with a counter one error short of its threshold would be
         * re-ejected by a single failure: start it clean. */
        h->st.consecutive_5xx = 0;
        h->st.consecutive_gateway_failure = 0;
        h->st.consecutive_local_origin_failure = 0;
        h->st.has_unejection = true;
        h->st.last_unejection_ms = now_ms;
        returned++;
    }

    /* Decay after the returns, so a host that came back in this very sweep keeps its backoff
     * for one more interval: re-ejected that soon, it stays out longer. */
    for (size_t i = 0; i < od->n_hosts; i++) {
        host_t *h = &od->hosts[i];
        if (!h->st.ejected && h->st.has_unejection && h->st.backoff > 0 &&
            elapsed(now_ms, h->st.last_unejection_ms) >= od->cfg.interval_ms)
            h->st.backoff--;
    }
    return returned;
}

bool weir_outlier_is_ejected(const weir_outlier_t *od, size_t host)
{
    return od != NULL && host < od->n_hosts && od->hosts[host].st.ejected;
}

size_t weir_outlier_host_count(const weir_outlier_t *od)
{
    return od != NULL ? od->n_hosts : 0;
}

size_t weir_outlier_healthy_hosts(const weir_outlier_t *od)
{
    if (od == NULL)
        return 0;
    return od->n_hosts - (size_t)od->stats.ejections_active;
}

bool weir_outlier_panic(size_t healthy_hosts, size_t total_hosts, uint32_t min_health_percent)
{
    /* Envoy's isHostSetInPanic: healthy% = 100 * healthy / total (0 with no hosts), panic when
     * it is below the threshold. Multiplied out: 100 * healthy < threshold * total. */
    if (min_health_percent > 100)
        min_health_percent = 100;
    return (uint64_t)100 * healthy_hosts < (uint64_t)min_health_percent * total_hosts ||
           (total_hosts == 0 && min_health_percent > 0);
}

const weir_outlier_host_state_t *weir_outlier_host_state(const weir_outlier_t *od, size_t host)
{
    if (od == NULL || host >= od->n_hosts)
        return NULL;
    return &od->hosts[host].st;
}

const char *weir_outlier_host_key(const weir_outlier_t *od, size_t host)
{
    if (od == NULL || host >= od->n_hosts)
        return NULL;
    return od->hosts[host].key;
}

uint64_t weir_outlier_ejection_ms(const weir_outlier_t *od, size_t host)
{
    if (od == NULL || host >= od->n_hosts)
        return 0;
    return ejection_ms(&od->cfg, &od->hosts[host]);
}

const weir_outlier_config_t *weir_outlier_config(const weir_outlier_t *od)
{
    return &od->cfg;
}

const weir_outlier_stats_t *weir_outlier_stats(const weir_outlier_t *od)
{
    return &od->stats;
}
