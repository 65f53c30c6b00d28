/* common/admin_pages.c: see admin_pages.h. JSON pages are built with jansson, text pages in
 * Envoy's formats. */
#include "common/admin_pages.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "common/admin.h"
#include "common/cluster_state.h"
#include "common/identity.h"
#include "common/k8s.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/outlier.h"
#include "common/proxy.h"
#include "common/reload.h"
#include "common/runtime.h"
#include "common/snapshot.h"

static bool ready;
static weir_admin_options_t opts;

void weir_admin_set_ready(bool r)
{
    ready = r;
}

bool weir_admin_ready(void)
{
    return ready && !weir_proxy_draining();
}

static void json_body(weir_admin_response_t *resp, json_t *doc)
{
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    resp->content_type = "application/json";
    if (text) {
        weir_buf_append_str(&resp->body, text);
        weir_buf_append(&resp->body, "\n", 1);
        free(text);
    }
}

/* ---- readiness ---- */

static void page_ready(const weir_admin_request_t *req, weir_admin_response_t *resp)
{
    bool ok = weir_admin_ready();
    resp->status = ok ? 200 : 503;
    weir_buf_append_str(&resp->body, ok ? "LIVE\n" : weir_proxy_draining() ? "DRAINING\n"
                                                                             : "PRE_INITIALIZING\n");
}

static void page_healthz(const weir_admin_request_t *req, weir_admin_response_t *resp)
{
    bool ok = weir_admin_ready();
    resp->status = ok ? 200 : 503;
    weir_buf_append_str(&resp->body, ok ? "ready\n" : "not ready\n");
}

/* ---- stats ---- */

typedef struct {
    weir_buf_t *out;
    const char *metric;
    int which;
} render_ctx_t;

enum {
    ST_RQ_TOTAL,
    ST_CX_TOTAL,
    ST_PENDING_TOTAL,
    ST_PENDING_OVERFLOW,
    ST_RQ_OVERFLOW,
    ST_RETRY_OVERFLOW,
    ST_CX_ACTIVE,
    ST_RQ_ACTIVE,
    ST_PENDING_ACTIVE,
    ST_EJECTIONS_ACTIVE,
    ST_EJECTIONS_ENFORCED,
    ST_EJECTIONS_OVERFLOW,
    ST_SHADOW_TOTAL,
    ST_SHADOW_ABANDONED,
    ST_COUNT
};

static const struct {
    const char *envoy_name; /* cluster.<name>.<this> in /stats */
    const char *prom_name;
    const char *type;
    const char *help;
} cluster_stats[ST_COUNT] = {
    {"upstream_rq_total", "envoy_cluster_upstream_rq_total", "counter", "Requests sent."},
    {"upstream_cx_total", "envoy_cluster_upstream_cx_total", "counter", "Connections opened."},
    {"upstream_rq_pending_total", "envoy_cluster_upstream_rq_pending_total", "counter",
     "Requests that waited for a connection."},
    {"upstream_rq_pending_overflow", "envoy_cluster_upstream_rq_pending_overflow_total", "counter",
     "Requests refused: the pending queue was full (503 UO)."},
    {"upstream_rq_overflow", "envoy_cluster_upstream_rq_overflow_total", "counter",
     "Requests refused: too many active requests (503 UO)."},
    {"upstream_rq_retry_overflow", "envoy_cluster_upstream_rq_retry_overflow_total", "counter",
     "Retries refused by the max_retries circuit breaker."},
    {"upstream_cx_active", "envoy_cluster_upstream_cx_active", "gauge", "Open connections."},
    {"upstream_rq_active", "envoy_cluster_upstream_rq_active", "gauge", "Requests in flight."},
    {"upstream_rq_pending_active", "envoy_cluster_upstream_rq_pending_active", "gauge",
     "Requests waiting for a connection."},
    {"outlier_detection.ejections_active", "envoy_cluster_outlier_detection_ejections_active",
     "gauge", "Hosts ejected now."},
    {"outlier_detection.ejections_enforced_total",
     "envoy_cluster_outlier_detection_ejections_enforced_total", "counter",
     "Ejections carried out."},
    {"outlier_detection.ejections_overflow", "envoy_cluster_outlier_detection_ejections_overflow_total",
     "counter", "Ejections skipped by maxEjectionPercent."},
    {"mirror.requests_total", "weir_mirror_requests_total", "counter",
     "Mirrored copies sent to this (shadow) cluster."},
    {"mirror.abandoned_total", "weir_mirror_abandoned_total", "counter",
     "Mirrored copies given up because they fell behind or lost their primary."},
};

static uint64_t cluster_value(weir_cluster_state_t *cs, int which)
{
    const weir_cluster_counters_t *c = weir_cluster_state_counters(cs);
    const weir_cluster_gauges_t *g = weir_cluster_state_gauges(cs);
    const weir_outlier_t *od = weir_cluster_state_detector(cs);
    const weir_outlier_stats_t *os = od ? weir_outlier_stats(od) : NULL;
    switch (which) {
    case ST_RQ_TOTAL:
        return c->rq_total;
    case ST_CX_TOTAL:
        return c->cx_total;
    case ST_PENDING_TOTAL:
        return c->rq_pending_total;
    case ST_PENDING_OVERFLOW:
        return c->rq_pending_overflow;
    case ST_RQ_OVERFLOW:
        return c->rq_overflow;
    case ST_RETRY_OVERFLOW:
        return c->rq_retry_overflow;
    case ST_CX_ACTIVE:
        return g->open_connections;
    case ST_RQ_ACTIVE:
        return g->active_requests;
    case ST_PENDING_ACTIVE:
        return g->pending_requests;
    case ST_EJECTIONS_ACTIVE:
        return os ? os->ejections_active : 0;
    case ST_EJECTIONS_ENFORCED:
        return os ? os->ejections_enforced_total : 0;
    case ST_EJECTIONS_OVERFLOW:
        return os ? os->ejections_overflow : 0;
    case ST_SHADOW_TOTAL:
        return c->shadow_rq_total;
    case ST_SHADOW_ABANDONED:
        return c->shadow_abandoned;
    }
    return 0;
}

static void prom_cluster_line(weir_cluster_state_t *cs, void *ctx)
{
    render_ctx_t *r = ctx;
    weir_buf_appendf(r->out, "%s{cluster_name=\"", r->metric);
    weir_metrics_escape(r->out, weir_cluster_state_name(cs));
    weir_buf_appendf(r->out, "\"} %llu\n", (unsigned long long)cluster_value(cs, r->which));
}

static void prom_shadow_classes(weir_cluster_state_t *cs, void *ctx)
{
    weir_buf_t *o = ctx;
    const weir_cluster_counters_t *c = weir_cluster_state_counters(cs);
    const struct {
        const char *cls;
        uint64_t v;
    } rows[] = {{"2xx", c->shadow_rq_2xx}, {"3xx", c->shadow_rq_3xx}, {"4xx", c->shadow_rq_4xx},
                {"5xx", c->shadow_rq_5xx}, {"failed", c->shadow_rq_failed}};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        weir_buf_append_str(o, "weir_mirror_responses_total{cluster_name=\"");
        weir_metrics_escape(o, weir_cluster_state_name(cs));
        weir_buf_appendf(o, "\",response_code_class=\"%s\"} %llu\n", rows[i].cls,
                         (unsigned long long)rows[i].v);
    }
}

static void render_prometheus(weir_buf_t *o)
{
    weir_metrics_render(o);
    for (int i = 0; i < ST_COUNT; i++) {
        weir_buf_appendf(o, "# HELP %s %s\n# TYPE %s %s\n", cluster_stats[i].prom_name,
                         cluster_stats[i].help, cluster_stats[i].prom_name, cluster_stats[i].type);
        render_ctx_t r = {o, cluster_stats[i].prom_name, i};
        weir_cluster_state_foreach(prom_cluster_line, &r);
    }
    weir_buf_append_str(o, "# HELP weir_mirror_responses_total Answers of mirrored copies, by "
                           "class (failed: none).\n# TYPE weir_mirror_responses_total counter\n");
    weir_cluster_state_foreach(prom_shadow_classes, o);
    weir_buf_appendf(o,
                     "# HELP weir_config_reloads_total Config reloads, by result.\n"
                     "# TYPE weir_config_reloads_total counter\n"
                     "weir_config_reloads_total{result=\"success\"} %llu\n"
                     "weir_config_reloads_total{result=\"failure\"} %llu\n"
                     "# HELP weir_config_info The config in force (its content hash).\n"
                     "# TYPE weir_config_info gauge\n"
                     "weir_config_info{hash=\"%016llx\"} 1\n",
                     (unsigned long long)weir_reload_successes(),
                     (unsigned long long)weir_reload_failures(),
                     (unsigned long long)weir_reload_config_hash());
    weir_buf_appendf(o,
                     "# HELP weir_cert_expiry_timestamp_seconds When the workload certificate "
                     "expires.\n# TYPE weir_cert_expiry_timestamp_seconds gauge\n"
                     "weir_cert_expiry_timestamp_seconds %lld\n"
                     "# HELP weir_requests_active Requests in flight.\n"
                     "# TYPE weir_requests_active gauge\nweir_requests_active %zu\n",
                     (long long)weir_identity_expiry(), weir_proxy_active_requests());
}

static void page_prometheus(const weir_admin_request_t *req, weir_admin_response_t *resp)
{
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    render_prometheus(&resp->body);
}

static void stats_cluster_lines(weir_cluster_state_t *cs, void *ctx)
{
    weir_buf_t *o = ctx;
    for (int i = 0; i < ST_COUNT; i++)
        weir_buf_appendf(o, "cluster.%s.%s: %llu\n", weir_cluster_state_name(cs),
                         cluster_stats[i].envoy_name, (unsigned long long)cluster_value(cs, i));
}

static void page_stats(const weir_admin_request_t *req, weir_admin_response_t *resp)
{
    weir_cluster_state_foreach(stats_cluster_lines, &resp->body);
    weir_buf_appendf(&resp->body,
                     "server.live: %d\nserver.draining: %d\nserver.requests_active: %zu\n"
                     "weir.config.reloads.success: %llu\nweir.config.reloads.failure: %llu\n",
                     weir_admin_ready(), weir_proxy_draining(), weir_proxy_active_requests(),
                     (unsigned long long)weir_reload_successes(),
                     (unsigned long long)weir_reload_failures());
    const weir_k8s_client_t *k = weir_runtime_k8s();
    if (k) {
        weir_k8s_stats_t st = weir_k8s_stats(k);
        weir_buf_appendf(&resp->body,
                         "weir.k8s.synced: %d\nweir.k8s.lists: %llu\nweir.k8s.watches: %llu\n"
                         "weir.k8s.events: %llu\nweir.k8s.relists_gone: %llu\n"
                         "weir.k8s.errors: %llu\nweir.k8s.changes: %llu\n"
                         "weir.k8s.last_error: %s\n",
                         weir_k8s_synced(k), (unsigned long long)st.lists,
                         (unsigned long long)st.watches, (unsigned long long)st.events,
                         (unsigned long long)st.relists_gone, (unsigned long long)st.errors,
                         (unsigned long long)st.changes, st.last_error);
    }
}

/* ---- clusters ---- */

static const weir_cluster_t *const *snapshot_clusters(size_t *n)
{
    const weir_snapshot_t *s = weir_snapshot_current();
    *n = s ? s->n_clusters : 0;
    return s ? (const weir_cluster_t *const *)s->clusters : NULL;
}

static bool ejected(const weir_cluster_t *c, size_t i)
{
    return c->od && weir_outlier_is_ejected(c->od, i);
}

static void page_clusters(const weir_admin_request_t *req, weir_admin_response_t *resp)
{
    char fmt[16];
    bool json = weir_admin_query_get(req->query, "format", fmt, sizeof(fmt)) &&
                strcmp(fmt, "json") == 0;
    size_t n;
    const weir_cluster_t *const *cl = snapshot_clusters(&n);
    if (!json) {
        for (size_t k = 0; k < n; k++) {
            const weir_cluster_t *c = cl[k];
            for (size_t i = 0; i < c->n_endpoints; i++) {
                const weir_endpoint_t *ep = &c->endpoints[i];
                const char *pre = c->name, *hp = ep->host_port;
                weir_buf_appendf(&resp->body, "%s::%s::rq_active::%u\n", pre, hp,
                                 ep->active_requests);
                weir_buf_appendf(&resp->body, "%s::%s::rq_total::%llu\n", pre, hp,
                                 (unsigned long long)ep->total_requests);
                weir_buf_appendf(&resp->body, "%s::%s::health_flags::%s\n", pre, hp,
                                 ejected(c, i) ? "/failed_outlier_check" : "healthy");
                weir_buf_appendf(&resp->body, "%s::%s::weight::1\n", pre, hp);
            }
        }
        return;
    }
    json_t *doc = json_object(), *statuses = json_array();
    for (size_t k = 0; k < n; k++) {
        const weir_cluster_t *c = cl[k];
        json_t *jc = json_object(), *hosts = json_array();
        json_object_set_new(jc, "name", json_string(c->name));
        if (c->state) {
            const weir_cluster_gauges_t *g = weir_cluster_state_gauges(c->state);
            const weir_cluster_limits_t *l = weir_cluster_state_limits(c->state);
            json_object_set_new(jc, "active_requests", json_integer(g->active_requests));
            json_object_set_new(jc, "pending_requests", json_integer(g->pending_requests));
            json_object_set_new(jc, "open_connections", json_integer(g->open_connections));
            json_object_set_new(
                jc, "circuit_breakers",
                json_pack("{s:I,s:I,s:I,s:I}", "max_connections", (json_int_t)l->max_connections,
                          "max_pending_requests", (json_int_t)l->max_pending_requests,
                          "max_requests", (json_int_t)l->max_requests, "max_retries",
                          (json_int_t)l->max_retries));
        }
        for (size_t i = 0; i < c->n_endpoints; i++) {
            const weir_endpoint_t *ep = &c->endpoints[i];
            json_t *h = json_object();
            json_object_set_new(h, "address", json_string(ep->host_port));
            json_object_set_new(h, "health_status",
                                json_pack("{s:s,s:b}", "eds_health_status", "HEALTHY",
                                          "failed_outlier_check", ejected(c, i)));
            json_object_set_new(h, "stats", json_pack("{s:I,s:I}", "rq_active",
                                                      (json_int_t)ep->active_requests, "rq_total",
                                                      (json_int_t)ep->total_requests));
            if (c->od) {
                const weir_outlier_host_state_t *st = weir_outlier_host_state(c->od, i);
                json_object_set_new(
                    h, "outlier",
                    json_pack("{s:b,s:I,s:I,s:I,s:I}", "ejected", st->ejected, "num_ejections",
                              (json_int_t)st->num_ejections, "backoff", (json_int_t)st->backoff,
                              "consecutive_5xx", (json_int_t)st->consecutive_5xx,
                              "consecutive_gateway_failure",
                              (json_int_t)st->consecutive_gateway_failure));
            }
            json_array_append_new(hosts, h);
        }
        json_object_set_new(jc, "host_statuses", hosts);
        json_array_append_new(statuses, jc);
    }
    json_object_set_new(doc, "cluster_statuses", statuses);
    json_body(resp, doc);
}

/* ---- config_dump ---- */

static json_t *place(const weir_place_t *p)
{
    return json_pack("{s:s,s:i,s:i}", "file", p->file ? p->file : "", "line", (int)p->line,
                     "column", (int)p->col);
}

static json_t *route_table_json(const weir_route_table_t *t)
{
    json_t *vhosts = json_array();
    for (size_t v = 0; t && v < t->n_vhosts; v++) {
        const weir_vhost_t *vh = &t->vhosts[v];
        json_t *jv = json_object(), *routes = json_array();
        json_object_set_new(jv, "domain", json_string(vh->domain));
        for (size_t r = 0; r < vh->n_routes; r++) {
            const weir_route_t *rt = &vh->routes[r];
            json_t *jr = json_object(), *clusters = json_array();
            json_object_set_new(jr, "name", json_string(rt->name));
            if (rt->vs) {
                json_object_set_new(jr, "virtual_service",
                                    json_pack("{s:s,s:s}", "name", rt->vs->name, "namespace",
                                              rt->vs->namespace));
                json_object_set_new(jr, "source", place(&rt->rule->place));
            } else {
                json_object_set_new(jr, "virtual_service", json_null());
            }
            for (size_t c = 0; c < rt->n_clusters; c++)
                json_array_append_new(clusters, json_string(rt->clusters[c] ? rt->clusters[c]->name
                                                                            : "(none)"));
            json_object_set_new(jr, "clusters", clusters);
            json_array_append_new(routes, jr);
        }
        json_object_set_new(jv, "routes", routes);
        json_array_append_new(vhosts, jv);
    }
    return vhosts;
}

static void page_config_dump(const weir_admin_request_t *req, weir_admin_response_t *resp)
{
    const weir_snapshot_t *s = weir_snapshot_current();
    json_t *doc = json_object();
    json_object_set_new(doc, "role", json_string(opts.role ? opts.role : "-"));
    char hash[32];
    snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)weir_reload_config_hash());
    json_object_set_new(doc, "config_hash", json_string(hash));
    if (s == NULL) {
        json_body(resp, doc);
        return;
    }
    json_object_set_new(doc, "generation", json_integer((json_int_t)s->generation));
    json_t *files = json_array();
    for (size_t i = 0; i < s->config->n_files; i++)
        json_array_append_new(files, json_string(s->config->files[i]));
    json_object_set_new(doc, "files", files);
    json_t *listeners = json_array();
    for (size_t i = 0; i < s->n_listeners; i++) {
        const weir_listener_spec_t *l = &s->listeners[i];
        static const char *const modes[] = {"http", "tls_terminate", "tls_passthrough"};
        json_array_append_new(listeners,
                              json_pack("{s:s,s:i,s:s,s:o}", "bind", l->bind, "port", (int)l->port,
                                        "mode", modes[l->mode], "virtual_hosts",
                                        route_table_json(l->routes)));
    }
    json_object_set_new(doc, "listeners", listeners);
    json_t *outbound = json_array();
    for (size_t i = 0; i < s->n_outbound; i++)
        json_array_append_new(outbound, json_pack("{s:i,s:o}", "port", (int)s->outbound[i].port,
                                                  "virtual_hosts",
                                                  route_table_json(s->outbound[i].routes)));
    json_object_set_new(doc, "outbound", outbound);
    json_t *clusters = json_array();
    for (size_t i = 0; i < s->n_clusters; i++) {
        const weir_cluster_t *c = s->clusters[i];
        json_t *jc = json_object(), *eps = json_array();
        json_object_set_new(jc, "name", json_string(c->name));
        if (c->service) {
            json_object_set_new(jc, "service_entry",
                                json_pack("{s:s,s:s}", "name", c->service->name, "namespace",
                                          c->service->namespace));
            json_object_set_new(jc, "source", place(&c->service->place));
        }
        static const char *const transports[] = {"plaintext", "istio_mutual", "tls"};
        for (size_t e = 0; e < c->n_endpoints; e++)
            json_array_append_new(eps, json_pack("{s:s,s:s}", "address", c->endpoints[e].host_port,
                                                 "transport",
                                                 transports[c->endpoints[e].transport]));
        json_object_set_new(jc, "endpoints", eps);
        json_array_append_new(clusters, jc);
    }
    json_object_set_new(doc, "clusters", clusters);
    json_object_set_new(doc, "rejected", json_string(weir_reload_last_rejection()));
    json_body(resp, doc);
}

/* ---- certs, logging, lifecycle ---- */

static void page_certs(const weir_admin_request_t *req, weir_admin_response_t *resp)
{
    const char *id = weir_identity_id();
    json_t *doc = json_pack("{s:s?,s:s,s:I,s:I}", "identity", id, "trust_domain",
                            weir_identity_trust_domain(), "expiration_time_seconds",
                            (json_int_t)weir_identity_expiry(), "generation",
                            (json_int_t)weir_identity_generation());
    json_body(resp, doc);
}

static const char *const level_names[] = {"debug", "info", "warning", "error"};

static void page_logging_get(const weir_admin_request_t *req, weir_admin_response_t *resp)
{
    weir_buf_appendf(&resp->body, "active loggers:\n  weir: %s\n",
                     level_names[weir_log_get_level()]);
}

static void page_logging_post(const weir_admin_request_t *req, weir_admin_response_t *resp)
{
    char level[16];
    if (weir_admin_query_get(req->query, "level", level, sizeof(level))) {
        for (int i = 0; i < 4; i++) {
            if (strcmp(level, level_names[i]) == 0) {
                weir_log_set_level((weir_log_level_t)i);
                page_logging_get(req, resp);
                return;
            }
        }
    }
    resp->status = 400;
    weir_buf_append_str(&resp->body, "usage: POST /logging?level=debug|info|warning|error\n");
}

static void page_quit(const weir_admin_request_t *req, weir_admin_response_t *resp)
{
    weir_buf_append_str(&resp->body, "OK\n");
    if (opts.quit)
        opts.quit();
}

static void page_drain(const weir_admin_request_t *req, weir_admin_response_t *resp)
{
    weir_proxy_drain();
    weir_buf_append_str(&resp->body, "OK\n");
}

static const weir_admin_route_t admin_routes[] = {
    {NULL, "/ready", page_ready},
    {NULL, "/stats", page_stats},
    {NULL, "/stats/prometheus", page_prometheus},
    {NULL, "/clusters", page_clusters},
    {NULL, "/config_dump", page_config_dump},
    {NULL, "/certs", page_certs},
    {NULL, "/logging", page_logging_get},
    {"POST", "/logging", page_logging_post},
    {"POST", "/quitquitquit", page_quit},
    {"POST", "/drain_listeners", page_drain},
};
static const weir_admin_route_t health_routes[] = {{NULL, "/healthz/ready", page_healthz}};
static const weir_admin_route_t prometheus_routes[] = {
    {NULL, "/stats/prometheus", page_prometheus}};

static int open_port(const char *bind, uint32_t port, const weir_admin_route_t *r, size_t n)
{
    int rc = weir_admin_listen(bind, port, r, n);
    if (rc < 0) {
        weir_log_error("cannot listen on %s:%u: %s", bind, port, uv_strerror(rc));
        return -1;
    }
    weir_log_info("listening on %s:%u (%s)", bind, port, r[0].path);
    return 0;
}

int weir_admin_pages_start(const weir_admin_options_t *o)
{
    opts = *o;
    if (o->admin_bind &&
        open_port(o->admin_bind, o->admin_port, admin_routes,
                  sizeof(admin_routes) / sizeof(admin_routes[0])) != 0)
        return -1;
    if (o->health_port && open_port("0.0.0.0", o->health_port, health_routes, 1) != 0)
        return -1;
    if (o->prometheus_port && open_port("0.0.0.0", o->prometheus_port, prometheus_routes, 1) != 0)
        return -1;
    return 0;
}
