/* common/metrics.c: see metrics.h. */
#include "common/metrics.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct weir_metrics_peer {
    struct weir_metrics_peer *next;
    char *workload, *namespace, *principal, *app, *version;
};

#define N_DURATION_BUCKETS 19
#define N_BYTES_BUCKETS 10
/* Envoy's default histogram buckets (milliseconds), and powers of ten for sizes. */
static const double duration_buckets[N_DURATION_BUCKETS] = {
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
    1800000, 3600000};
static const double bytes_buckets[N_BYTES_BUCKETS] = {1,      10,      100,      1000,      10000,
                                                      100000, 1000000, 10000000, 100000000, 1e9};

typedef struct {
    uint64_t counts[N_DURATION_BUCKETS]; /* per bucket, cumulated only when rendered */
    uint64_t count;
    double sum;
} histogram_t;

typedef struct series {
    struct series *next; /* hash chain */
    bool reporter_destination, mutual_tls;
    const weir_metrics_peer_t *source, *destination;
    char *destination_service;
    int response_code;
    char flags[64];
    uint64_t requests;
    histogram_t duration, request_bytes, response_bytes;
} series_t;

#define N_SLOTS 256

static weir_metrics_peer_t *peers;
static series_t *slots[N_SLOTS];
static size_t n_series;
static series_t **all; /* every series, in the order first seen */
static size_t all_cap;

static const char *known(const char *s)
{
    return s && *s ? s : "unknown";
}

static bool same(const char *a, const char *b)
{
    return strcmp(known(a), known(b)) == 0;
}

const weir_metrics_peer_t *weir_metrics_peer(const char *workload, const char *namespace,
                                             const char *principal, const char *app,
                                             const char *version)
{
    for (weir_metrics_peer_t *p = peers; p; p = p->next) {
        if (same(p->workload, workload) && same(p->namespace, namespace) &&
            same(p->principal, principal) && same(p->app, app) && same(p->version, version))
            return p;
    }
    weir_metrics_peer_t *p = weir_mem_calloc(1, sizeof(*p));
    p->workload = weir_mem_strdup(known(workload));
    p->namespace = weir_mem_strdup(known(namespace));
    p->principal = weir_mem_strdup(known(principal));
    p->app = weir_mem_strdup(known(app));
    p->version = weir_mem_strdup(known(version));
    p->next = peers;
    peers = p;
    return p;
}

const weir_metrics_peer_t *weir_metrics_unknown_peer(void)
{
    return weir_metrics_peer(NULL, NULL, NULL, NULL, NULL);
}

static void observe(histogram_t *h, const double *buckets, size_t n, double v)
{
    for (size_t i = 0; i < n; i++) {
        if (v <= buckets[i]) {
            h->counts[i]++;
            break;
        }
    }
    h->count++;
    h->sum += v;
}

static size_t slot_of(const weir_request_metric_t *m, const char *flags)
{
    uintptr_t h = (uintptr_t)m->source * 31u + (uintptr_t)m->destination * 17u +
                  (uintptr_t)(unsigned)m->response_code * 7u + (m->reporter_destination ? 1u : 0u);
    for (const char *p = flags; *p; p++)
        h = h * 33u + (unsigned char)*p;
    return (size_t)(h % N_SLOTS);
}

void weir_metrics_record(const weir_request_metric_t *m)
{
    const char *flags = m->response_flags && *m->response_flags ? m->response_flags : "-";
    const char *svc = known(m->destination_service);
    size_t slot = slot_of(m, flags);
    series_t *s = slots[slot];
    for (; s; s = s->next) {
        if (s->source == m->source && s->destination == m->destination &&
            s->response_code == m->response_code &&
            s->reporter_destination == m->reporter_destination &&
            s->mutual_tls == m->mutual_tls && strcmp(s->flags, flags) == 0 &&
            strcmp(s->destination_service, svc) == 0)
            break;
    }
    if (s == NULL) {
        s = weir_mem_calloc(1, sizeof(*s));
        s->reporter_destination = m->reporter_destination;
        s->mutual_tls = m->mutual_tls;
        s->source = m->source;
        s->destination = m->destination;
        s->destination_service = weir_mem_strdup(svc);
        s->response_code = m->response_code;
        strncpy(s->flags, flags, sizeof(s->flags) - 1);
        s->next = slots[slot];
        slots[slot] = s;
        if (n_series == all_cap) {
            all_cap = all_cap ? all_cap * 2 : 64;
            all = weir_mem_realloc(all, all_cap * sizeof(*all));
        }
        all[n_series++] = s;
    }
    s->requests++;
    observe(&s->duration, duration_buckets, N_DURATION_BUCKETS, (double)m->duration_ms);
    observe(&s->request_bytes, bytes_buckets, N_BYTES_BUCKETS, (double)m->request_bytes);
    observe(&s->response_bytes, bytes_buckets, N_BYTES_BUCKETS, (double)m->response_bytes);
}

void weir_metrics_escape(weir_buf_t *out, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p == '\\' || *p == '"')
            weir_buf_append(out, "\\", 1);
        if (*p == '\n') {
            weir_buf_append_str(out, "\\n");
            continue;
        }
        weir_buf_append(out, p, 1);
    }
}

static void label(weir_buf_t *o, const char *name, const char *value, bool first)
{
    if (!first)
        weir_buf_append(o, ",", 1);
    weir_buf_append_str(o, name);
    weir_buf_append_str(o, "=\"");
    weir_metrics_escape(o, value);
    weir_buf_append(o, "\"", 1);
}

static void peer_labels(weir_buf_t *o, const char *side, const weir_metrics_peer_t *p)
{
    char name[64];
#define PEER_LABEL(suffix, value)                                                                  \
    do {                                                                                           \
        snprintf(name, sizeof(name), "%s_%s", side, suffix);                                       \
        label(o, name, value, false);                                                              \
    } while (0)
    PEER_LABEL("workload", p->workload);
    PEER_LABEL("workload_namespace", p->namespace);
    PEER_LABEL("principal", p->principal);
    PEER_LABEL("app", p->app);
    PEER_LABEL("version", p->version);
    PEER_LABEL("canonical_service", p->app);
    PEER_LABEL("canonical_revision", strcmp(p->version, "unknown") == 0 ? "latest" : p->version);
    PEER_LABEL("cluster", "Kubernetes");
#undef PEER_LABEL
}

/* The labels of one series, without braces. */
static void series_labels(weir_buf_t *o, const series_t *s)
{
    label(o, "reporter", s->reporter_destination ? "destination" : "source", true);
    peer_labels(o, "source", s->source);
    peer_labels(o, "destination", s->destination);
    label(o, "destination_service", s->destination_service, false);
    char svc_name[256], svc_ns[256];
    const char *dot = strchr(s->destination_service, '.');
    if (dot && strcmp(s->destination_service, "unknown") != 0) {
        snprintf(svc_name, sizeof(svc_name), "%.*s", (int)(dot - s->destination_service),
                 s->destination_service);
        const char *dot2 = strchr(dot + 1, '.');
        snprintf(svc_ns, sizeof(svc_ns), "%.*s", dot2 ? (int)(dot2 - dot - 1) : 0, dot + 1);
    } else {
        snprintf(svc_name, sizeof(svc_name), "%s", s->destination_service);
        snprintf(svc_ns, sizeof(svc_ns), "unknown");
    }
    label(o, "destination_service_name", svc_name, false);
    label(o, "destination_service_namespace", svc_ns[0] ? svc_ns : "unknown", false);
    label(o, "request_protocol", "http", false);
    char code[16];
    snprintf(code, sizeof(code), "%d", s->response_code);
    label(o, "response_code", code, false);
    label(o, "grpc_response_status", "", false);
    label(o, "response_flags", s->flags, false);
    label(o, "connection_security_policy",
          !s->reporter_destination ? "unknown" : s->mutual_tls ? "mutual_tls" : "none", false);
}

static void render_histogram(weir_buf_t *o, const char *name, const char *help, size_t field,
                             bool bytes)
{
    weir_buf_appendf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    const double *buckets = bytes ? bytes_buckets : duration_buckets;
    size_t n = bytes ? N_BYTES_BUCKETS : N_DURATION_BUCKETS;
    weir_buf_t labels = WEIR_BUF_INIT;
    for (size_t i = 0; i < n_series; i++) {
        const series_t *s = all[i];
        const histogram_t *h = (const histogram_t *)((const char *)s + field);
        weir_buf_reset(&labels);
        series_labels(&labels, s);
        uint64_t cum = 0;
        for (size_t b = 0; b < n; b++) {
            cum += h->counts[b];
            weir_buf_appendf(o, "%s_bucket{%.*s,le=\"%g\"} %llu\n", name, (int)labels.len,
                             labels.base, buckets[b], (unsigned long long)cum);
        }
        weir_buf_appendf(o, "%s_bucket{%.*s,le=\"+Inf\"} %llu\n", name, (int)labels.len,
                         labels.base, (unsigned long long)h->count);
        weir_buf_appendf(o, "%s_sum{%.*s} %.17g\n", name, (int)labels.len, labels.base, h->sum);
        weir_buf_appendf(o, "%s_count{%.*s} %llu\n", name, (int)labels.len, labels.base,
                         (unsigned long long)h->count);
    }
    weir_buf_free(&labels);
}

void weir_metrics_render(weir_buf_t *o)
{
    weir_buf_append_str(o, "# HELP istio_requests_total Requests, by source, destination and "
                           "response (Istio standard metric).\n"
                           "# TYPE istio_requests_total counter\n");
    weir_buf_t labels = WEIR_BUF_INIT;
    for (size_t i = 0; i < n_series; i++) {
        weir_buf_reset(&labels);
        series_labels(&labels, all[i]);
        weir_buf_appendf(o, "istio_requests_total{%.*s} %llu\n", (int)labels.len, labels.base,
                         (unsigned long long)all[i]->requests);
    }
    weir_buf_free(&labels);
    render_histogram(o, "istio_request_duration_milliseconds", "Request duration.",
                     offsetof(series_t, duration), false);
    render_histogram(o, "istio_request_bytes", "Request body sizes.",
                     offsetof(series_t, request_bytes), true);
    render_histogram(o, "istio_response_bytes", "Response body sizes.",
                     offsetof(series_t, response_bytes), true);
}
