/* common/k8s.c: see k8s.h. */
#include "common/k8s.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "common/diag.h"
#include "common/http_codec.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/mem.h"

#define DEFAULT_DEBOUNCE_MS 100
#define DEFAULT_BACKOFF_INITIAL_MS 250
#define DEFAULT_BACKOFF_MAX_MS 30000
#define DEFAULT_WATCH_TIMEOUT_S 300
#define DEFAULT_PAGE_SIZE 500
#define DEFAULT_MAX_BODY ((size_t)256 << 20)
/* A request (connect, handshake, a list page) that makes no progress for this long is dead. */
#define REQUEST_IDLE_MS 30000
/* A watch is given its timeoutSeconds plus this before silence counts as a dead connection:
 * the server ends it at about timeoutSeconds and sends bookmarks meanwhile. */
#define WATCH_GRACE_MS 60000
/* A watch that ends this soon without one event did not really work: retry with back-off,
 * as client-go does for "very short watches", instead of reconnecting in a tight loop. */
#define SHORT_WATCH_MS 1000
#define ERROR_BODY_MAX 4096
#define TOKEN_MAX 65536

typedef enum { R_SERVICES, R_PODS, R_SLICES, R_N } res_t;

static const struct {
    const char *name;
    const char *prefix;
} res_info[R_N] = {
    {"services", "/api/v1"},
    {"pods", "/api/v1"},
    {"endpointslices", "/apis/discovery.k8s.io/v1"},
};

typedef struct conn conn_t;
typedef struct stream stream_t;

/* One resource's reflector: its store and where its list/watch stands. */
struct stream {
    weir_k8s_client_t *client;
    res_t res;
    json_t *store;   /* "ns/name" -> the compact object (see compact_*) */
    json_t *pending; /* a paged list being gathered; replaces store when complete */
    char *rv;        /* resourceVersion to watch from; NULL: list first */
    char *cont;      /* the list's continue token between pages */
    bool synced;     /* listed completely at least once */
    unsigned failures;
    uint64_t last_gone_ms;
    uv_timer_t retry;
    conn_t *conn; /* the exchange in progress, or NULL */
};

struct weir_k8s_client {
    uv_loop_t *loop;
    /* options, copied */
    char *url, *token_path, *ca_path, *server_name, *ns, *domain;
    unsigned debounce_ms, backoff_initial_ms, backoff_max_ms, watch_timeout_s, page_size;
    size_t max_body;
    weir_k8s_change_fn on_change;
    void *data;
    /* the server */
    bool tls;
    char *authority; /* Host header */
    struct sockaddr_storage addr;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;

    stream_t streams[R_N];
    uv_timer_t debounce;
    weir_k8s_registry_t *current;
    uint64_t generation;
    weir_k8s_stats_t stats;
    char last_error[320];

    unsigned handles; /* open uv handles, connections' included */
    bool stopping;
    void (*done)(void *);
    void *done_data;
};

/* Why an exchange ended, for the stream to decide what comes next. */
typedef enum {
    END_NONE,
    END_LIST_PAGE,  /* a list page arrived whole and parsed (in conn->page) */
    END_WATCH_OVER, /* the server ended a watch normally */
    END_GONE,       /* 410: list again */
    END_ERROR,      /* back off, then retry */
} end_t;

struct conn {
    stream_t *s;
    weir_k8s_client_t *client;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    unsigned open_handles;
    bool closing;
    bool watch;
    uint64_t started_ms;
    unsigned events;

    bool tls;       /* https: the bytes go through mbedTLS */
    bool tls_ready; /* TLS structures initialised (freed on close) */
    bool handshake_done;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca;
    mbedtls_ssl_context ssl;
    weir_buf_t cin; /* ciphertext received, not yet taken by mbedTLS */
    size_t cin_off;
    weir_buf_t cout; /* ciphertext to send */
    weir_buf_t request;

    weir_http_parser_t *parser;
    int status;
    weir_buf_t body; /* a list page; a watch's unparsed tail; an error's Status */
    /* the watch stream's event scanner */
    size_t scan_pos, obj_start;
    int depth;
    bool in_str, esc;

    end_t end; /* set by a callback that must stop the exchange */
    char why[256];
    json_t *page; /* END_LIST_PAGE: the parsed list */
};

typedef struct {
    uv_write_t req;
    char *data;
} write_req_t;

static void stream_next(stream_t *s, conn_t *c, end_t how);
static void schedule_change(weir_k8s_client_t *c);

/* ---- small helpers ---------------------------------------------------------------------- */

static const char *jstr(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static const char *jpath_str(const json_t *obj, const char *a, const char *b)
{
    return jstr(json_object_get(obj, a), b);
}

static char *read_small_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    weir_buf_t b = WEIR_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b.len + n > max) {
            fclose(f);
            weir_buf_free(&b);
            errno = EFBIG;
            return NULL;
        }
        weir_buf_append(&b, chunk, n);
    }
    fclose(f);
    if (b.base == NULL)
        weir_buf_append(&b, "", 0);
    if (len)
        *len = b.len;
    return b.base;
}

static void rtrim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
}

/* ---- public helpers --------------------------------------------------------------------- */

int weir_k8s_in_cluster_url(char *out, size_t cap)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (host == NULL || *host == '\0' || port == NULL || *port == '\0')
        return -1;
    int n = strchr(host, ':') ? snprintf(out, cap, "https://[%s]:%s", host, port)
                              : snprintf(out, cap, "https://%s:%s", host, port);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int weir_k8s_read_namespace(const char *sa_dir, char *out, size_t cap)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/namespace", sa_dir ? sa_dir : WEIR_K8S_SA_DIR);
    char *text = read_small_file(path, 1024, NULL);
    if (text == NULL)
        return -1;
    rtrim(text);
    int rc = (*text && strlen(text) < cap) ? 0 : -1;
    if (rc == 0)
        strcpy(out, text);
    free(text);
    return rc;
}

const char *weir_k8s_port_protocol(const char *port_name, const char *app_protocol,
                                   const char *transport, uint32_t port)
{
    static const char *const names[][2] = {
        {"http", "HTTP"},   {"http2", "HTTP2"}, {"https", "HTTPS"}, {"grpc", "GRPC"},
        {"tls", "TLS"},     {"tcp", "TCP"},     {"udp", "UDP"},     {"mongo", "MONGO"},
        {"redis", "REDIS"}, {"mysql", "MYSQL"},
    };
    if (transport && strcmp(transport, "UDP") == 0)
        return "UDP";
    /* appProtocol, when set, replaces the name entirely (Istio does not fall back to the
     * port name when appProtocol names nothing it knows). */
    const char *name = port_name ? port_name : "";
    if (app_protocol && *app_protocol) {
        name = app_protocol;
        if (strcmp(name, "kubernetes.io/h2c") == 0)
            return "HTTP2";
        if (strcmp(name, "kubernetes.io/ws") == 0)
            return "HTTP";
        if (strcmp(name, "kubernetes.io/wss") == 0)
            return "HTTPS";
    }
    if (strncasecmp(name, "grpc-web", 8) == 0)
        return "GRPC-WEB";
    size_t len = strcspn(name, "-");
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i][0]) == len && strncasecmp(name, names[i][0], len) == 0)
            return names[i][1];
    /* Ports whose servers speak first (SMTP, DNS, MySQL, MongoDB): sniffing would break
     * them, so Istio takes them as TCP when nothing else says. */
    if (port == 25 || port == 53 || port == 3306 || port == 27017)
        return "TCP";
    return NULL;
}

/* ---- compact objects: what the registry needs of each, so a Pod costs its labels -------- */

static void copy_field(json_t *dst, const json_t *src, const char *key)
{
    json_t *v = json_object_get(src, key);
    if (v)
        json_object_set(dst, key, v);
}

static bool has_container(const json_t *list, const char *name)
{
    size_t i;
    json_t *ct;
    json_array_foreach(list, i, ct)
    {
        const char *n = jstr(ct, "name");
        if (n && strcmp(n, name) == 0)
            return true;
    }
    return false;
}

static json_t *compact_service(const json_t *obj)
{
    const json_t *spec = json_object_get(obj, "spec");
    json_t *out = json_object();
    copy_field(out, spec, "type");
    copy_field(out, spec, "clusterIP");
    copy_field(out, spec, "clusterIPs");
    copy_field(out, spec, "selector");
    copy_field(out, spec, "ports");
    return out;
}

/* Whether the Pod carries a mesh proxy: Istio's injector marks the Pod with the
 * sidecar.istio.io/status annotation and names the container istio-proxy; weir's hand-injected
 * manifests (deploy/kind) name it weir-proxy. */
static bool pod_has_proxy(const json_t *obj)
{
    const json_t *spec = json_object_get(obj, "spec");
    const json_t *ann = json_object_get(json_object_get(obj, "metadata"), "annotations");
    if (json_object_get(ann, "sidecar.istio.io/status"))
        return true;
    static const char *const names[] = {"istio-proxy", "weir-proxy"};
    for (size_t i = 0; i < 2; i++)
        if (has_container(json_object_get(spec, "containers"), names[i]) ||
            has_container(json_object_get(spec, "initContainers"), names[i]))
            return true;
    return false;
}

static json_t *compact_pod(const json_t *obj)
{
    json_t *out = json_object();
    copy_field(out, json_object_get(obj, "metadata"), "labels");
    const char *sa = jpath_str(obj, "spec", "serviceAccountName");
    if (sa)
        json_object_set_new(out, "sa", json_string(sa));
    if (pod_has_proxy(obj))
        json_object_set_new(out, "proxy", json_true());
    return out;
}

static json_t *compact_slice(const json_t *obj)
{
    json_t *out = json_object();
    const json_t *labels = json_object_get(json_object_get(obj, "metadata"), "labels");
    const char *svc = jstr(labels, "kubernetes.io/service-name");
    if (svc)
        json_object_set_new(out, "service", json_string(svc));
    copy_field(out, obj, "addressType");
    copy_field(out, obj, "ports");
    json_t *eps = json_array();
    size_t i;
    json_t *ep;
    json_array_foreach(json_object_get(obj, "endpoints"), i, ep)
    {
        json_t *e = json_object();
        copy_field(e, ep, "addresses");
        /* EndpointConditions: "ready ... nil should be interpreted as true". */
        const json_t *ready = json_object_get(json_object_get(ep, "conditions"), "ready");
        json_object_set_new(e, "ready", json_boolean(ready == NULL || !json_is_false(ready)));
        copy_field(e, ep, "targetRef");
        json_array_append_new(eps, e);
    }
    json_object_set_new(out, "endpoints", eps);
    return out;
}

static json_t *compact(res_t res, const json_t *obj)
{
    switch (res) {
    case R_SERVICES:
        return compact_service(obj);
    case R_PODS:
        return compact_pod(obj);
    default:
        return compact_slice(obj);
    }
}

/* "ns/name", or NULL when the object has no name. */
static char *object_key(const json_t *obj)
{
    const json_t *md = json_object_get(obj, "metadata");
    const char *name = jstr(md, "name"), *ns = jstr(md, "namespace");
    if (name == NULL || *name == '\0')
        return NULL;
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_appendf(&b, "%s/%s", ns ? ns : "", name);
    return b.base;
}

/* Puts obj (compacted) into store; returns whether the store changed. */
static bool store_put(json_t *store, res_t res, const json_t *obj)
{
    char *key = object_key(obj);
    if (key == NULL)
        return false;
    json_t *v = compact(res, obj);
    const json_t *old = json_object_get(store, key);
    bool changed = old == NULL || !json_equal(old, v);
    json_object_set_new(store, key, v);
    free(key);
    return changed;
}

static bool store_del(json_t *store, const json_t *obj)
{
    char *key = object_key(obj);
    if (key == NULL)
        return false;
    bool changed = json_object_del(store, key) == 0;
    free(key);
    return changed;
}

/* ---- the registry: build, render, free -------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of a JSON object, sorted. The strings belong to obj. */
static const char **sorted_keys(const json_t *obj, size_t *n)
{
    *n = json_object_size(obj);
    const char **keys = weir_mem_calloc(*n ? *n : 1, sizeof(*keys));
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        keys[i++] = k;
    }
    qsort(keys, *n, sizeof(*keys), cmp_str);
    return keys;
}

static void labels_from_json(weir_labels_t *out, const json_t *obj, const char *extra_key,
                             const char *extra_value)
{
    size_t n;
    const char **keys = sorted_keys(obj, &n);
    bool add_extra = extra_key && json_object_get(obj, extra_key) == NULL;
    out->items = weir_mem_calloc(n + 1, sizeof(*out->items));
    out->count = 0;
    for (size_t i = 0; i <= n; i++) {
        /* the extra label goes where its key sorts */
        if (add_extra && (i == n || strcmp(extra_key, keys[i]) < 0)) {
            out->items[out->count++] =
                (weir_label_t){weir_mem_strdup(extra_key), weir_mem_strdup(extra_value)};
            add_extra = false;
        }
        if (i == n)
            break;
        const char *v = json_string_value(json_object_get(obj, keys[i]));
        out->items[out->count++] =
            (weir_label_t){weir_mem_strdup(keys[i]), weir_mem_strdup(v ? v : "")};
    }
    free(keys);
}

static void endpoint_free(weir_k8s_endpoint_t *e)
{
    free(e->name);
    free(e->namespace);
    free(e->address);
    weir_labels_free(&e->labels);
    free(e->service_account);
    for (size_t i = 0; i < e->n_ports; i++)
        free(e->ports[i].name);
    free(e->ports);
}

static void service_free(weir_k8s_service_t *s)
{
    free(s->name);
    free(s->namespace);
    free(s->host);
    for (size_t j = 0; j < s->n_addresses; j++)
        free(s->addresses[j]);
    free(s->addresses);
    for (size_t j = 0; j < s->n_ports; j++) {
        free(s->ports[j].name);
        free(s->ports[j].protocol);
    }
    free(s->ports);
    weir_labels_free(&s->selector);
    for (size_t j = 0; j < s->n_endpoints; j++)
        endpoint_free(&s->endpoints[j]);
    free(s->endpoints);
}

static void registry_free(weir_k8s_registry_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_services; i++)
        service_free(&r->services[i]);
    free(r->services);
    for (size_t i = 0; i < r->n_workloads; i++)
        endpoint_free(&r->workloads[i]);
    free(r->workloads);
    free(r->yaml);
    free(r);
}

static void port_map_add(weir_k8s_endpoint_t *e, const char *name, uint32_t number)
{
    for (size_t i = 0; i < e->n_ports; i++)
        if (strcmp(e->ports[i].name, name) == 0)
            return; /* the first slice that names the port wins */
    e->ports = weir_mem_realloc(e->ports, (e->n_ports + 1) * sizeof(*e->ports));
    e->ports[e->n_ports++] = (weir_port_map_t){weir_mem_strdup(name), number};
}

static int cmp_port_map(const void *a, const void *b)
{
    return strcmp(((const weir_port_map_t *)a)->name, ((const weir_port_map_t *)b)->name);
}

static bool is_ipv4(const char *a)
{
    return strchr(a, ':') == NULL;
}

/* Adds a slice's ports to an endpoint, under the Service's port names. */
static void endpoint_add_slice_ports(weir_k8s_endpoint_t *e, const json_t *slice,
                                     const weir_k8s_service_t *svc)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(slice, "ports"), i, p)
    {
        json_t *num = json_object_get(p, "port");
        if (!json_is_integer(num) || json_integer_value(num) < 1 || json_integer_value(num) > 65535)
            continue;
        const char *transport = jstr(p, "protocol");
        if (transport && strcmp(transport, "TCP") != 0)
            continue; /* UDP and SCTP: no ServiceEntry port of weir's has them */
        const char *name = jstr(p, "name");
        /* An unnamed slice port belongs to the Service's only port, named by us. */
        if ((name == NULL || *name == '\0') && svc->n_ports == 1)
            name = svc->ports[0].name;
        if (name == NULL || *name == '\0')
            continue;
        port_map_add(e, name, (uint32_t)json_integer_value(num));
    }
}

/* Istio's injector labels the Pods it injects security.istio.io/tlsMode: istio; a Pod that
 * carries a proxy without that label (hand injected) gets it here, so that auto mTLS reaches
 * it. A label already there (also "disabled") is kept. */
static void pod_labels(weir_labels_t *out, const json_t *pinfo)
{
    bool proxy = json_is_true(json_object_get(pinfo, "proxy"));
    labels_from_json(out, json_object_get(pinfo, "labels"),
                     proxy ? "security.istio.io/tlsMode" : NULL, "istio");
}

typedef struct {
    weir_k8s_client_t *client;
    weir_k8s_registry_t *reg;
    json_t *by_pod; /* "ns/pod" -> index into reg->workloads */
    size_t cap_workloads;
} build_t;

static weir_k8s_endpoint_t *workload_for_pod(build_t *b, const char *ns, const char *pod,
                                             const json_t *pinfo, const char *address)
{
    weir_buf_t key = WEIR_BUF_INIT;
    weir_buf_appendf(&key, "%s/%s", ns, pod);
    json_t *idx = json_object_get(b->by_pod, key.base);
    weir_k8s_registry_t *r = b->reg;
    weir_k8s_endpoint_t *e;
    if (idx) {
        e = &r->workloads[json_integer_value(idx)];
        /* a dual-stack Pod has a slice per family: the WorkloadEntry keeps the IPv4 one */
        if (!is_ipv4(e->address) && is_ipv4(address)) {
            free(e->address);
            e->address = weir_mem_strdup(address);
        }
    } else {
        if (r->n_workloads == b->cap_workloads) {
            b->cap_workloads = b->cap_workloads ? 2 * b->cap_workloads : 16;
            r->workloads = weir_mem_realloc(r->workloads, b->cap_workloads * sizeof(*e));
        }
        e = &r->workloads[r->n_workloads];
        memset(e, 0, sizeof(*e));
        e->name = weir_mem_strdup(pod);
        e->namespace = weir_mem_strdup(ns);
        e->address = weir_mem_strdup(address);
        pod_labels(&e->labels, pinfo);
        const char *sa = jstr(pinfo, "sa");
        e->service_account = weir_mem_strdup(sa && *sa ? sa : "default");
        json_object_set_new(b->by_pod, key.base, json_integer((json_int_t)r->n_workloads));
        r->n_workloads++;
    }
    weir_buf_free(&key);
    return e;
}

static void add_address(weir_k8s_service_t *s, const char *a)
{
    for (size_t i = 0; i < s->n_addresses; i++)
        if (strcmp(s->addresses[i], a) == 0)
            return;
    s->addresses = weir_mem_realloc(s->addresses, (s->n_addresses + 1) * sizeof(char *));
    s->addresses[s->n_addresses++] = weir_mem_strdup(a);
}

/* The Service's ports, one per number: a TCP and a UDP port of one number (kube-dns's 53)
 * would be a ServiceEntry error ("declared twice"); weir proxies TCP, so TCP wins. */
static void service_ports(weir_k8s_service_t *s, const json_t *ports)
{
    size_t n = json_array_size(ports), i;
    json_t *p;
    bool *udp = weir_mem_calloc(n ? n : 1, sizeof(bool));
    s->ports = weir_mem_calloc(n ? n : 1, sizeof(*s->ports));
    json_array_foreach(ports, i, p)
    {
        json_t *num = json_object_get(p, "port");
        if (!json_is_integer(num) || json_integer_value(num) < 1 || json_integer_value(num) > 65535)
            continue;
        uint32_t number = (uint32_t)json_integer_value(num);
        const char *transport = jstr(p, "protocol");
        bool is_udp = transport && strcmp(transport, "UDP") == 0;
        if (transport && strcmp(transport, "TCP") != 0 && !is_udp)
            continue; /* SCTP: nothing weir could carry */
        size_t j;
        for (j = 0; j < s->n_ports && s->ports[j].number != number; j++)
            ;
        if (j < s->n_ports && !(udp[j] && !is_udp))
            continue;
        const char *name = jstr(p, "name");
        char gen[32];
        if (name == NULL || *name == '\0') {
            snprintf(gen, sizeof(gen), "port-%u", number);
            name = gen;
        }
        const char *proto = weir_k8s_port_protocol(name, jstr(p, "appProtocol"), transport, number);
        if (j < s->n_ports) { /* replace the UDP one */
            free(s->ports[j].name);
            free(s->ports[j].protocol);
        } else {
            s->n_ports++;
        }
        s->ports[j] = (weir_k8s_port_t){weir_mem_strdup(name), number, weir_mem_strdup(proto)};
        udp[j] = is_udp;
    }
    free(udp);
}

static void build_service(build_t *b, const char *key, const json_t *svc, const json_t *slices)
{
    weir_k8s_client_t *c = b->client;
    const char *type = jstr(svc, "type");
    if (type && strcmp(type, "ExternalName") == 0)
        return; /* a DNS alias, no endpoints: nothing for a STATIC ServiceEntry */
    const char *slash = strchr(key, '/');
    weir_k8s_service_t s = {0};
    s.namespace = weir_mem_strndup(key, (size_t)(slash - key));
    s.name = weir_mem_strdup(slash + 1);
    weir_buf_t host = WEIR_BUF_INIT;
    weir_buf_appendf(&host, "%s.%s.svc.%s", s.name, s.namespace, c->domain);
    s.host = host.base;
    service_ports(&s, json_object_get(svc, "ports"));

    const json_t *sel = json_object_get(svc, "selector");
    s.has_selector = json_object_size(sel) > 0;
    if (s.has_selector)
        labels_from_json(&s.selector, sel, NULL, NULL);

    const char *cip = jstr(svc, "clusterIP");
    bool headless = cip && strcmp(cip, "None") == 0;
    if (!headless) {
        const json_t *ips = json_object_get(svc, "clusterIPs");
        size_t i;
        json_t *ip;
        json_array_foreach(ips, i, ip)
        {
            const char *a = json_string_value(ip);
            if (a && *a && strcmp(a, "None") != 0)
                add_address(&s, a);
        }
        if (s.n_addresses == 0 && cip && *cip)
            add_address(&s, cip);
    }

    size_t i;
    json_t *slice;
    json_array_foreach(slices, i, slice)
    {
        const char *family = jstr(slice, "addressType");
        if (family == NULL || (strcmp(family, "IPv4") != 0 && strcmp(family, "IPv6") != 0))
            continue; /* FQDN slices: not addresses weir can connect to */
        size_t j;
        json_t *ep;
        json_array_foreach(json_object_get(slice, "endpoints"), j, ep)
        {
            if (!json_is_true(json_object_get(ep, "ready")))
                continue;
            /* "Consumers ... may choose to only use the first element." */
            const json_t *addrs = json_object_get(ep, "addresses");
            const char *addr = json_string_value(json_array_get(addrs, 0));
            if (addr == NULL || *addr == '\0')
                continue;
            const json_t *ref = json_object_get(ep, "targetRef");
            const char *kind = jstr(ref, "kind"), *pod = jstr(ref, "name");
            const char *pod_ns = jstr(ref, "namespace");
            const json_t *pinfo = NULL;
            if (kind && strcmp(kind, "Pod") == 0 && pod) {
                weir_buf_t pk = WEIR_BUF_INIT;
                weir_buf_appendf(&pk, "%s/%s", pod_ns ? pod_ns : s.namespace, pod);
                pinfo = json_object_get(c->streams[R_PODS].store, pk.base);
                weir_buf_free(&pk);
            }
            if (s.has_selector) {
                /* A Pod not seen yet will come with its own event; without its labels the
                 * endpoint would match no subset, so it waits until then. */
                if (pinfo == NULL)
                    continue;
                if (headless)
                    add_address(&s, addr);
                weir_k8s_endpoint_t *e =
                    workload_for_pod(b, pod_ns ? pod_ns : s.namespace, pod, pinfo, addr);
                endpoint_add_slice_ports(e, slice, &s);
            } else {
                if (headless)
                    add_address(&s, addr);
                s.endpoints =
                    weir_mem_realloc(s.endpoints, (s.n_endpoints + 1) * sizeof(*s.endpoints));
                weir_k8s_endpoint_t *e = &s.endpoints[s.n_endpoints++];
                memset(e, 0, sizeof(*e));
                e->namespace = weir_mem_strdup(s.namespace);
                e->address = weir_mem_strdup(addr);
                if (pinfo) {
                    const char *sa = jstr(pinfo, "sa");
                    pod_labels(&e->labels, pinfo);
                    e->service_account = weir_mem_strdup(sa && *sa ? sa : "default");
                } else {
                    labels_from_json(&e->labels, NULL, NULL, NULL);
                }
                endpoint_add_slice_ports(e, slice, &s);
            }
        }
    }
    /* A ServiceEntry without addresses is matched by port alone (the sidecar's 0.0.0.0:<port>
     * listener), which would capture every connection to that port: a headless Service with
     * no ready endpoint, or one without ports, is left out. */
    weir_k8s_registry_t *r = b->reg;
    if (s.n_ports == 0 || s.n_addresses == 0) {
        service_free(&s);
        return;
    }
    for (size_t k = 0; k < s.n_endpoints; k++)
        qsort(s.endpoints[k].ports, s.endpoints[k].n_ports, sizeof(weir_port_map_t), cmp_port_map);
    r->services = weir_mem_realloc(r->services, (r->n_services + 1) * sizeof(s));
    r->services[r->n_services++] = s;
}

static int cmp_workload(const void *a, const void *b)
{
    const weir_k8s_endpoint_t *x = a, *y = b;
    int d = strcmp(x->namespace, y->namespace);
    return d ? d : strcmp(x->name, y->name);
}

/* YAML double-quoted scalar: safe for any label text ("true", "1.0", ": ", "#"). */
static void yq(weir_buf_t *b, const char *s)
{
    weir_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            weir_buf_appendf(b, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            weir_buf_appendf(b, "\\x%02x", *p);
        else
            weir_buf_append(b, p, 1);
    }
    weir_buf_append(b, "\"", 1);
}

static void render_labels(weir_buf_t *b, const weir_labels_t *l, const char *indent)
{
    for (size_t i = 0; i < l->count; i++) {
        weir_buf_append_str(b, indent);
        yq(b, l->items[i].key);
        weir_buf_append_str(b, ": ");
        yq(b, l->items[i].value);
        weir_buf_append_str(b, "\n");
    }
}

static void render_port_map(weir_buf_t *b, const weir_k8s_endpoint_t *e, const char *indent)
{
    for (size_t i = 0; i < e->n_ports; i++) {
        weir_buf_append_str(b, indent);
        yq(b, e->ports[i].name);
        weir_buf_appendf(b, ": %u\n", e->ports[i].number);
    }
}

static void render_metadata(weir_buf_t *b, const char *kind, const char *name, const char *ns)
{
    weir_buf_appendf(
        b, "---\napiVersion: networking.istio.io/v1\nkind: %s\nmetadata:\n  name: ", kind);
    yq(b, name);
    weir_buf_append_str(b, "\n  namespace: ");
    yq(b, ns);
    weir_buf_append_str(b, "\n");
}

static char *render(const weir_k8s_registry_t *r)
{
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_append_str(&b, "# Generated by weir from the Kubernetes API: a ServiceEntry per "
                            "Service, a WorkloadEntry\n# per ready Pod behind one "
                            "(EndpointSlices), with the Pod's labels and service account.\n");
    for (size_t i = 0; i < r->n_services; i++) {
        const weir_k8s_service_t *s = &r->services[i];
        render_metadata(&b, "ServiceEntry", s->name, s->namespace);
        weir_buf_append_str(&b, "spec:\n  hosts:\n  - ");
        yq(&b, s->host);
        weir_buf_append_str(&b, "\n  addresses:\n");
        for (size_t j = 0; j < s->n_addresses; j++) {
            weir_buf_append_str(&b, "  - ");
            yq(&b, s->addresses[j]);
            weir_buf_append_str(&b, "\n");
        }
        weir_buf_append_str(&b, "  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n");
        for (size_t j = 0; j < s->n_ports; j++) {
            weir_buf_appendf(&b, "  - number: %u\n    name: ", s->ports[j].number);
            yq(&b, s->ports[j].name);
            if (s->ports[j].protocol)
                weir_buf_appendf(&b, "\n    protocol: %s", s->ports[j].protocol);
            weir_buf_append_str(&b, "\n");
        }
        if (s->has_selector) {
            weir_buf_append_str(&b, "  workloadSelector:\n    labels:\n");
            render_labels(&b, &s->selector, "      ");
        } else if (s->n_endpoints > 0) {
            weir_buf_append_str(&b, "  endpoints:\n");
            for (size_t j = 0; j < s->n_endpoints; j++) {
                const weir_k8s_endpoint_t *e = &s->endpoints[j];
                weir_buf_append_str(&b, "  - address: ");
                yq(&b, e->address);
                weir_buf_append_str(&b, "\n");
                if (e->labels.count) {
                    weir_buf_append_str(&b, "    labels:\n");
                    render_labels(&b, &e->labels, "      ");
                }
                if (e->n_ports) {
                    weir_buf_append_str(&b, "    ports:\n");
                    render_port_map(&b, e, "      ");
                }
                if (e->service_account) {
                    weir_buf_append_str(&b, "    serviceAccount: ");
                    yq(&b, e->service_account);
                    weir_buf_append_str(&b, "\n");
                }
            }
        }
    }
    for (size_t i = 0; i < r->n_workloads; i++) {
        const weir_k8s_endpoint_t *e = &r->workloads[i];
        render_metadata(&b, "WorkloadEntry", e->name, e->namespace);
        weir_buf_append_str(&b, "spec:\n  address: ");
        yq(&b, e->address);
        weir_buf_append_str(&b, "\n");
        if (e->labels.count) {
            weir_buf_append_str(&b, "  labels:\n");
            render_labels(&b, &e->labels, "    ");
        }
        if (e->n_ports) {
            weir_buf_append_str(&b, "  ports:\n");
            render_port_map(&b, e, "    ");
        }
        weir_buf_append_str(&b, "  serviceAccount: ");
        yq(&b, e->service_account);
        weir_buf_append_str(&b, "\n");
    }
    return b.base;
}

static weir_k8s_registry_t *build_registry(weir_k8s_client_t *c)
{
    build_t b = {.client = c, .by_pod = json_object()};
    b.reg = weir_mem_calloc(1, sizeof(*b.reg));

    /* the slices of each Service, by "ns/service" */
    json_t *by_svc = json_object();
    json_t *v;
    /* EndpointSlice order inside one Service by name, so the output does not depend on the
     * order events came in. */
    size_t n_slices;
    const char **slice_keys = sorted_keys(c->streams[R_SLICES].store, &n_slices);
    for (size_t i = 0; i < n_slices; i++) {
        v = json_object_get(c->streams[R_SLICES].store, slice_keys[i]);
        const char *svc = jstr(v, "service");
        if (svc == NULL)
            continue;
        weir_buf_t k = WEIR_BUF_INIT;
        weir_buf_appendf(&k, "%.*s/%s", (int)strcspn(slice_keys[i], "/"), slice_keys[i], svc);
        json_t *list = json_object_get(by_svc, k.base);
        if (list == NULL) {
            list = json_array();
            json_object_set_new(by_svc, k.base, list);
        }
        json_array_append(list, v);
        weir_buf_free(&k);
    }
    free(slice_keys);

    size_t n;
    const char **keys = sorted_keys(c->streams[R_SERVICES].store, &n);
    for (size_t i = 0; i < n; i++)
        build_service(&b, keys[i], json_object_get(c->streams[R_SERVICES].store, keys[i]),
                      json_object_get(by_svc, keys[i]));
    free(keys);
    json_decref(by_svc);
    json_decref(b.by_pod);

    weir_k8s_registry_t *r = b.reg;
    for (size_t i = 0; i < r->n_workloads; i++)
        qsort(r->workloads[i].ports, r->workloads[i].n_ports, sizeof(weir_port_map_t),
              cmp_port_map);
    qsort(r->workloads, r->n_workloads, sizeof(*r->workloads), cmp_workload);
    r->yaml = render(r);
    return r;
}

/* ---- debounced delivery ----------------------------------------------------------------- */

static bool all_synced(const weir_k8s_client_t *c)
{
    for (int i = 0; i < R_N; i++)
        if (!c->streams[i].synced)
            return false;
    return true;
}

static void on_debounce(uv_timer_t *t)
{
    weir_k8s_client_t *c = t->data;
    if (c->stopping)
        return;
    weir_k8s_registry_t *r = build_registry(c);
    if (c->current && strcmp(c->current->yaml, r->yaml) == 0) {
        registry_free(r); /* a change nothing in the registry shows (a Pod's status ...) */
        return;
    }
    r->generation = ++c->generation;
    weir_k8s_registry_t *old = c->current;
    c->current = r;
    c->stats.changes++;
    weir_log_debug("k8s: registry generation %llu: %zu services, %zu workloads",
                   (unsigned long long)r->generation, r->n_services, r->n_workloads);
    c->on_change(r, c->data);
    registry_free(old);
}

/* Trailing debounce with a bounded delay: the first change starts the timer and later ones
 * ride along, so a burst of events (a rollout) is delivered once, at most debounce_ms late. */
static void schedule_change(weir_k8s_client_t *c)
{
    if (c->stopping || !all_synced(c) || uv_is_active((uv_handle_t *)&c->debounce))
        return;
    uv_timer_start(&c->debounce, on_debounce, c->debounce_ms, 0);
}

/* ---- connections: TCP, TLS, HTTP -------------------------------------------------------- */

static void client_handle_closed(weir_k8s_client_t *c);

static void conn_free(conn_t *k)
{
    if (k->tls_ready) {
        mbedtls_ssl_free(&k->ssl);
        mbedtls_ssl_config_free(&k->conf);
        mbedtls_x509_crt_free(&k->ca);
    }
    weir_buf_free(&k->cin);
    weir_buf_free(&k->cout);
    weir_buf_free(&k->request);
    weir_buf_free(&k->body);
    if (k->parser)
        weir_http_parser_free(k->parser);
    json_decref(k->page);
    free(k);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    conn_t *k = h->data;
    weir_k8s_client_t *c = k->client;
    if (--k->open_handles == 0)
        conn_free(k);
    client_handle_closed(c);
}

static void conn_close(conn_t *k)
{
    if (k->closing)
        return;
    k->closing = true;
    if (k->s->conn == k)
        k->s->conn = NULL;
    uv_close((uv_handle_t *)&k->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&k->timer, on_conn_handle_closed);
}

static void record_error(weir_k8s_client_t *c, const char *res, const char *why)
{
    c->stats.errors++;
    snprintf(c->last_error, sizeof(c->last_error), "%s: %s", res, why);
}

/* Ends the exchange: closes it and lets the stream decide what comes next. */
static void conn_end(conn_t *k, end_t how)
{
    if (k->closing)
        return;
    stream_t *s = k->s;
    conn_close(k);
    stream_next(s, k, how);
}

static void conn_fail(conn_t *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_fail(conn_t *k, const char *fmt, ...)
{
    if (k->closing)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->why, sizeof(k->why), fmt, ap);
    va_end(ap);
    conn_end(k, END_ERROR);
}

static void on_written(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    conn_t *k = req->data;
    free(w->data);
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        conn_fail(k, "write: %s", uv_strerror(status));
}

/* Sends b's bytes and empties b (its memory goes with the write). */
static void send_buf(conn_t *k, weir_buf_t *b)
{
    if (b->len == 0 || k->closing)
        return;
    write_req_t *w = weir_mem_alloc(sizeof(*w));
    w->data = b->base;
    w->req.data = k;
    uv_buf_t buf = uv_buf_init(b->base, (unsigned)b->len);
    *b = (weir_buf_t)WEIR_BUF_INIT;
    int rc = uv_write(&w->req, (uv_stream_t *)&k->tcp, &buf, 1, on_written);
    if (rc < 0) {
        free(w->data);
        free(w);
        conn_fail(k, "write: %s", uv_strerror(rc));
    }
}

static void touch(conn_t *k);

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    conn_t *k = ctx;
    weir_buf_append(&k->cout, buf, len);
    return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    conn_t *k = ctx;
    size_t avail = k->cin.len - k->cin_off;
    if (avail == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (len > avail)
        len = avail;
    memcpy(buf, k->cin.base + k->cin_off, len);
    k->cin_off += len;
    if (k->cin_off == k->cin.len) {
        weir_buf_reset(&k->cin);
        k->cin_off = 0;
    }
    return (int)len;
}

static const char *tls_error(int rc, char *buf, size_t cap)
{
    mbedtls_strerror(rc, buf, cap);
    return buf;
}

static int tls_setup(conn_t *k)
{
    weir_k8s_client_t *c = k->client;
    char e[160];
    mbedtls_ssl_config_init(&k->conf);
    mbedtls_x509_crt_init(&k->ca);
    mbedtls_ssl_init(&k->ssl);
    k->tls_ready = true;
    /* Re-read per connection: the kubelet refreshes the projected ca.crt when it rotates. */
    int rc = mbedtls_x509_crt_parse_file(&k->ca, c->ca_path);
    if (rc < 0 || k->ca.version == 0) {
        conn_fail(k, "CA %s: %s", c->ca_path,
                  rc < 0 ? tls_error(rc, e, sizeof(e)) : "no certificate");
        return -1;
    }
    static const char *alpn[] = {"http/1.1", NULL}; /* keep Go's server on HTTP/1.1 */
    if ((rc = mbedtls_ssl_config_defaults(&k->conf, MBEDTLS_SSL_IS_CLIENT,
                                          MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT)) != 0 ||
        (rc = mbedtls_ssl_conf_alpn_protocols(&k->conf, alpn)) != 0) {
        conn_fail(k, "TLS setup: %s", tls_error(rc, e, sizeof(e)));
        return -1;
    }
    mbedtls_ssl_conf_min_version(&k->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_authmode(&k->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&k->conf, &k->ca, NULL);
    mbedtls_ssl_conf_rng(&k->conf, mbedtls_ctr_drbg_random, &c->drbg);
#if defined(MBEDTLS_SSL_RENEGOTIATION)
    mbedtls_ssl_conf_renegotiation(&k->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
#endif
    if ((rc = mbedtls_ssl_setup(&k->ssl, &k->conf)) != 0 ||
        (rc = mbedtls_ssl_set_hostname(&k->ssl, c->server_name)) != 0) {
        conn_fail(k, "TLS setup: %s", tls_error(rc, e, sizeof(e)));
        return -1;
    }
    mbedtls_ssl_set_bio(&k->ssl, k, bio_send, bio_recv, NULL);
    return 0;
}

static void http_feed(conn_t *k, const char *data, size_t len);
static void http_eof(conn_t *k);

static void tls_send_request(conn_t *k)
{
    size_t off = 0;
    while (off < k->request.len) {
        int rc = mbedtls_ssl_write(&k->ssl, (const unsigned char *)k->request.base + off,
                                   k->request.len - off);
        if (rc < 0) {
            char e[160];
            conn_fail(k, "TLS write: %s", tls_error(rc, e, sizeof(e)));
            return;
        }
        off += (size_t)rc;
    }
    weir_buf_reset(&k->request);
}

/* Runs the handshake, then decrypts whatever arrived into the HTTP parser. */
static void tls_pump(conn_t *k)
{
    char e[160];
    if (!k->handshake_done) {
        int rc = mbedtls_ssl_handshake(&k->ssl);
        send_buf(k, &k->cout);
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            return;
        if (rc != 0) {
            uint32_t flags = mbedtls_ssl_get_verify_result(&k->ssl);
            if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0 && flags != (uint32_t)-1) {
                char info[256];
                mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
                rtrim(info);
                for (char *p = info; *p; p++)
                    if (*p == '\n')
                        *p = ';';
                conn_fail(k, "TLS handshake with %s: certificate verify failed: %s",
                          k->client->server_name, info);
            } else {
                conn_fail(k, "TLS handshake: %s", tls_error(rc, e, sizeof(e)));
            }
            return;
        }
        k->handshake_done = true;
        tls_send_request(k);
        send_buf(k, &k->cout);
    }
    unsigned char plain[16384];
    while (!k->closing) {
        int rc = mbedtls_ssl_read(&k->ssl, plain, sizeof(plain));
        if (rc > 0) {
            http_feed(k, (const char *)plain, (size_t)rc);
            continue;
        }
        send_buf(k, &k->cout);
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            return;
        if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
            http_eof(k);
            return;
        }
        conn_fail(k, "TLS read: %s", tls_error(rc, e, sizeof(e)));
        return;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char slab[65536]; /* loop thread only; every read is consumed before the next */
    buf->base = slab;
    buf->len = sizeof(slab);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *k = st->data;
    if (k->closing)
        return;
    if (nread > 0) {
        touch(k);
        if (k->tls) {
            weir_buf_append(&k->cin, buf->base, (size_t)nread);
            tls_pump(k);
        } else {
            http_feed(k, buf->base, (size_t)nread);
        }
    } else if (nread == UV_EOF) {
        if (k->tls && !k->handshake_done)
            conn_fail(k, "connection closed during the TLS handshake");
        else
            http_eof(k);
    } else if (nread < 0) {
        conn_fail(k, "read: %s", uv_strerror((int)nread));
    }
}

static void on_connected(uv_connect_t *req, int status)
{
    conn_t *k = req->data;
    if (k->closing)
        return;
    if (status < 0) {
        conn_fail(k, "connect to %s: %s", k->client->authority, uv_strerror(status));
        return;
    }
    touch(k);
    uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read);
    if (k->tls) {
        if (tls_setup(k) == 0)
            tls_pump(k);
    } else {
        send_buf(k, &k->request);
    }
}

static void on_timeout(uv_timer_t *t)
{
    conn_t *k = t->data;
    conn_fail(k, "%s", k->watch ? "watch silent for too long" : "no progress for 30 s");
}

static void touch(conn_t *k)
{
    weir_k8s_client_t *c = k->client;
    uint64_t ms = k->watch && k->status == 200
                      ? (uint64_t)c->watch_timeout_s * 1000 + WATCH_GRACE_MS
                      : REQUEST_IDLE_MS;
    uv_timer_start(&k->timer, on_timeout, ms, 0);
}

/* ---- HTTP responses and the watch stream ------------------------------------------------ */

/* "HTTP 403: pods is forbidden: ..." from a Status body, or the bare status. */
static void describe_status(conn_t *k, char *out, size_t cap)
{
    json_t *st = json_loadb(k->body.base ? k->body.base : "", k->body.len, 0, NULL);
    const char *msg = jstr(st, "message");
    if (msg)
        snprintf(out, cap, "HTTP %d: %s", k->status, msg);
    else
        snprintf(out, cap, "HTTP %d", k->status);
    json_decref(st);
}

/* One watch event. Returns END_NONE to go on, or how the exchange must end. */
static end_t handle_event(conn_t *k, const char *text, size_t len)
{
    stream_t *s = k->s;
    weir_k8s_client_t *c = s->client;
    json_error_t jerr;
    json_t *ev = json_loadb(text, len, 0, &jerr);
    if (ev == NULL) {
        snprintf(k->why, sizeof(k->why), "malformed watch event: %s", jerr.text);
        return END_ERROR;
    }
    const char *type = jstr(ev, "type");
    json_t *obj = json_object_get(ev, "object");
    end_t how = END_NONE;
    if (type == NULL || !json_is_object(obj)) {
        snprintf(k->why, sizeof(k->why), "watch event without type or object");
        how = END_ERROR;
        goto out;
    }
    if (strcmp(type, "ERROR") == 0) {
        json_int_t code = json_integer_value(json_object_get(obj, "code"));
        const char *msg = jstr(obj, "message");
        snprintf(k->why, sizeof(k->why), "watch ERROR event: code %lld: %s", (long long)code,
                 msg ? msg : "(no message)");
        how = code == 410 ? END_GONE : END_ERROR;
        goto out;
    }
    const char *rv = jpath_str(obj, "metadata", "resourceVersion");
    bool changed = false;
    if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0) {
        changed = store_put(s->store, s->res, obj);
    } else if (strcmp(type, "DELETED") == 0) {
        changed = store_del(s->store, obj);
    } else if (strcmp(type, "BOOKMARK") != 0) {
        weir_log_warn("k8s: %s watch: unknown event type \"%s\" ignored", res_info[s->res].name,
                      type);
    }
    if (rv && *rv) {
        free(s->rv);
        s->rv = weir_mem_strdup(rv);
    }
    c->stats.events++;
    k->events++;
    s->failures = 0; /* the stream works */
    if (changed)
        schedule_change(c);
out:
    json_decref(ev);
    return how;
}

/* Cuts complete JSON objects out of the stream by their braces (strings and escapes
 * respected). The scan resumes where it stopped, so each byte is looked at once. */
static end_t scan_events(conn_t *k)
{
    weir_buf_t *b = &k->body;
    while (k->scan_pos < b->len) {
        char ch = b->base[k->scan_pos];
        if (k->depth == 0) {
            if (ch == '{') {
                k->obj_start = k->scan_pos;
                k->depth = 1;
            } else if (!isspace((unsigned char)ch)) {
                snprintf(k->why, sizeof(k->why), "unexpected byte 0x%02x between watch events",
                         (unsigned char)ch);
                return END_ERROR;
            }
        } else if (k->in_str) {
            if (k->esc)
                k->esc = false;
            else if (ch == '\\')
                k->esc = true;
            else if (ch == '"')
                k->in_str = false;
        } else if (ch == '"') {
            k->in_str = true;
        } else if (ch == '{' || ch == '[') {
            k->depth++;
        } else if (ch == '}' || ch == ']') {
            if (--k->depth == 0) {
                end_t how = handle_event(k, b->base + k->obj_start, k->scan_pos + 1 - k->obj_start);
                if (how != END_NONE)
                    return how;
            }
        }
        k->scan_pos++;
    }
    /* keep only the event in progress */
    size_t drop = k->depth == 0 ? b->len : k->obj_start;
    weir_buf_consume(b, drop);
    k->scan_pos -= drop;
    k->obj_start = 0;
    if (b->len > k->client->max_body) {
        snprintf(k->why, sizeof(k->why), "a watch event over %zu bytes", k->client->max_body);
        return END_ERROR;
    }
    return END_NONE;
}

static int on_head(weir_http_parser_t *p, weir_http_head_t *h)
{
    conn_t *k = weir_http_parser_data(p);
    k->status = h->status;
    if (k->status == 200 && k->watch) {
        k->client->stats.watches++;
        touch(k); /* now the watch timeout applies */
    }
    return 0;
}

static int on_body(weir_http_parser_t *p, const char *data, size_t len)
{
    conn_t *k = weir_http_parser_data(p);
    if (k->status != 200) {
        if (k->body.len < ERROR_BODY_MAX)
            weir_buf_append(&k->body, data, len < ERROR_BODY_MAX ? len : ERROR_BODY_MAX);
        return 0;
    }
    if (!k->watch && k->body.len + len > k->client->max_body) {
        snprintf(k->why, sizeof(k->why), "a list page over %zu bytes", k->client->max_body);
        k->end = END_ERROR;
        return -1;
    }
    if (weir_buf_try_reserve(&k->body, len + 1) != 0) {
        snprintf(k->why, sizeof(k->why), "out of memory for %zu bytes", k->body.len + len);
        k->end = END_ERROR;
        return -1;
    }
    weir_buf_append(&k->body, data, len);
    if (k->watch) {
        end_t how = scan_events(k);
        if (how != END_NONE) {
            k->end = how;
            return -1;
        }
    }
    return 0;
}

static int on_complete(weir_http_parser_t *p)
{
    conn_t *k = weir_http_parser_data(p);
    if (k->status == 410) {
        describe_status(k, k->why, sizeof(k->why));
        k->end = END_GONE;
    } else if (k->status != 200) {
        describe_status(k, k->why, sizeof(k->why));
        k->end = END_ERROR;
    } else if (k->watch) {
        k->end = END_WATCH_OVER;
    } else {
        json_error_t jerr;
        k->page = json_loadb(k->body.base ? k->body.base : "", k->body.len, 0, &jerr);
        if (k->page == NULL || !json_is_array(json_object_get(k->page, "items"))) {
            snprintf(k->why, sizeof(k->why), "malformed list: %s",
                     k->page ? "no items" : jerr.text);
            k->end = END_ERROR;
        } else {
            k->end = END_LIST_PAGE;
        }
    }
    return -1; /* one response per connection: stop here */
}

static const weir_http_parser_cbs_t parser_cbs = {
    .on_head = on_head, .on_body = on_body, .on_complete = on_complete};

static void http_feed(conn_t *k, const char *data, size_t len)
{
    if (k->closing)
        return;
    size_t used;
    weir_http_result_t r = weir_http_parser_execute(k->parser, data, len, &used);
    if (r == WEIR_HTTP_ERROR)
        conn_fail(k, "malformed HTTP response: %s", weir_http_parser_error_reason(k->parser));
    else if (r == WEIR_HTTP_ABORTED || r == WEIR_HTTP_PAUSED)
        conn_end(k, k->end != END_NONE ? k->end : END_ERROR);
}

static void http_eof(conn_t *k)
{
    if (k->closing)
        return;
    bool started = weir_http_parser_started(k->parser);
    weir_http_result_t r = weir_http_parser_finish(k->parser);
    if (k->end != END_NONE) /* an EOF-delimited response completed */
        conn_end(k, k->end);
    else if (r == WEIR_HTTP_ERROR || started)
        conn_fail(k, "connection closed in the middle of the response");
    else
        conn_fail(k, "connection closed before a response");
}

/* ---- requests --------------------------------------------------------------------------- */

/* Appends s percent-encoded for a query value (continue tokens are base64). */
static void query_escape(weir_buf_t *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~')
            weir_buf_append(b, p, 1);
        else
            weir_buf_appendf(b, "%%%02X", *p);
    }
}

static void build_request(conn_t *k, const char *token)
{
    stream_t *s = k->s;
    weir_k8s_client_t *c = s->client;
    weir_buf_t *b = &k->request;
    weir_buf_appendf(b, "GET %s", res_info[s->res].prefix);
    if (c->ns)
        weir_buf_appendf(b, "/namespaces/%s", c->ns);
    weir_buf_appendf(b, "/%s?", res_info[s->res].name);
    if (k->watch) {
        weir_buf_append_str(b, "watch=1&allowWatchBookmarks=true&resourceVersion=");
        query_escape(b, s->rv);
        weir_buf_appendf(b, "&timeoutSeconds=%u", c->watch_timeout_s);
    } else {
        weir_buf_appendf(b, "limit=%u", c->page_size);
        if (s->cont) {
            weir_buf_append_str(b, "&continue=");
            query_escape(b, s->cont);
        }
    }
    weir_buf_appendf(b,
                     " HTTP/1.1\r\nHost: %s\r\nUser-Agent: weir/%s\r\n"
                     "Accept: application/json\r\n",
                     c->authority, WEIR_VERSION);
    if (token && *token)
        weir_buf_appendf(b, "Authorization: Bearer %s\r\n", token);
    weir_buf_append_str(b, "Connection: close\r\n\r\n");
}

/* Reads the token (again for every request: bound tokens rotate). *token NULL: none. */
static int read_token(weir_k8s_client_t *c, char **token, char *why, size_t cap)
{
    *token = NULL;
    if (c->token_path == NULL)
        return 0;
    char *t = read_small_file(c->token_path, TOKEN_MAX, NULL);
    if (t == NULL) {
        if (!c->tls)
            return 0; /* kubectl proxy and the tests need none */
        snprintf(why, cap, "token %s: %s", c->token_path, strerror(errno));
        return -1;
    }
    rtrim(t);
    for (char *p = t; *p; p++) {
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) {
            snprintf(why, cap, "token %s: not a bearer token (byte 0x%02x)", c->token_path,
                     (unsigned char)*p);
            free(t);
            return -1;
        }
    }
    *token = t;
    return 0;
}

static void conn_open(stream_t *s, bool watch)
{
    weir_k8s_client_t *c = s->client;
    conn_t *k = weir_mem_calloc(1, sizeof(*k));
    k->s = s;
    k->client = c;
    k->watch = watch;
    k->tls = c->tls;
    k->started_ms = uv_now(c->loop);
    k->parser = weir_http_parser_new(WEIR_HTTP_RESPONSE, &parser_cbs, k);
    uv_tcp_init(c->loop, &k->tcp);
    uv_timer_init(c->loop, &k->timer);
    k->tcp.data = k->timer.data = k->connect.data = k;
    uv_unref((uv_handle_t *)&k->tcp);
    uv_unref((uv_handle_t *)&k->timer);
    k->open_handles = 2;
    c->handles += 2;
    s->conn = k;

    char *token;
    if (read_token(c, &token, k->why, sizeof(k->why)) != 0) {
        conn_end(k, END_ERROR);
        return;
    }
    build_request(k, token);
    free(token);
    touch(k);
    int rc = uv_tcp_connect(&k->connect, &k->tcp, (const struct sockaddr *)&c->addr, on_connected);
    if (rc < 0)
        conn_fail(k, "connect to %s: %s", c->authority, uv_strerror(rc));
}

/* ---- the reflector ---------------------------------------------------------------------- */

static void on_retry(uv_timer_t *t)
{
    stream_t *s = t->data;
    if (s->client->stopping)
        return;
    /* Resume the watch where it was when a list is behind us; otherwise (re)list. */
    conn_open(s, s->synced && s->rv != NULL && s->pending == NULL);
}

static void backoff(stream_t *s)
{
    weir_k8s_client_t *c = s->client;
    unsigned shift = s->failures < 16 ? s->failures : 16;
    uint64_t ms = (uint64_t)c->backoff_initial_ms << shift;
    if (ms > c->backoff_max_ms)
        ms = c->backoff_max_ms;
    /* +-25 % jitter, so that every proxy of a cluster does not come back at once */
    ms = ms * (75 + weir_random_u32() % 51) / 100;
    s->failures++;
    uv_timer_start(&s->retry, on_retry, ms, 0);
}

static void list_restart(stream_t *s)
{
    json_decref(s->pending);
    s->pending = NULL;
    free(s->cont);
    s->cont = NULL;
    free(s->rv);
    s->rv = NULL;
}

static void list_page(stream_t *s, json_t *page)
{
    weir_k8s_client_t *c = s->client;
    c->stats.lists++;
    if (s->pending == NULL)
        s->pending = json_object();
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(page, "items"), i, item)
    {
        store_put(s->pending, s->res, item);
    }
    const json_t *md = json_object_get(page, "metadata");
    const char *cont = jstr(md, "continue"), *rv = jstr(md, "resourceVersion");
    free(s->cont);
    s->cont = cont && *cont ? weir_mem_strdup(cont) : NULL;
    if (s->cont) {
        conn_open(s, false);
        return;
    }
    /* the whole list: it replaces the store (what was deleted meanwhile is gone with it) */
    bool changed = !json_equal(s->store, s->pending);
    json_decref(s->store);
    s->store = s->pending;
    s->pending = NULL;
    free(s->rv);
    s->rv = weir_mem_strdup(rv && *rv ? rv : "0");
    bool first = !s->synced;
    s->synced = true;
    s->failures = 0;
    weir_log_debug("k8s: listed %zu %s at resourceVersion %s", json_object_size(s->store),
                   res_info[s->res].name, s->rv);
    if (changed || first)
        schedule_change(c);
    conn_open(s, true);
}

static void stream_next(stream_t *s, conn_t *k, end_t how)
{
    weir_k8s_client_t *c = s->client;
    if (c->stopping)
        return;
    const char *name = res_info[s->res].name;
    uint64_t now = uv_now(c->loop);
    switch (how) {
    case END_LIST_PAGE:
        list_page(s, k->page);
        return;
    case END_WATCH_OVER:
        if (k->events == 0 && now - k->started_ms < SHORT_WATCH_MS) {
            snprintf(k->why, sizeof(k->why), "the watch ended at once without an event");
            break;
        }
        conn_open(s, true); /* the server's timeoutSeconds: resume from the last version */
        return;
    case END_GONE:
        c->stats.relists_gone++;
        weir_log_info("k8s: %s: %s: listing again", name, k->why);
        list_restart(s);
        /* 410 right after a fresh list would mean a confused server: then back off */
        if (s->last_gone_ms && now - s->last_gone_ms < SHORT_WATCH_MS) {
            s->last_gone_ms = now;
            backoff(s);
        } else {
            s->last_gone_ms = now;
            conn_open(s, false);
        }
        return;
    default:
        break;
    }
    record_error(c, name, k->why);
    weir_log_warn("k8s: %s %s: %s (retrying)", name, k->watch ? "watch" : "list", k->why);
    if (!k->watch)
        list_restart(s); /* a failed page: start the list over */
    backoff(s);
}

/* ---- the client ------------------------------------------------------------------------- */

static int parse_url(weir_k8s_client_t *c, const char *url, char *err, size_t errlen)
{
    const char *p;
    unsigned port;
    if (strncmp(url, "https://", 8) == 0) {
        c->tls = true;
        p = url + 8;
        port = 443;
    } else if (strncmp(url, "http://", 7) == 0) {
        p = url + 7;
        port = 80;
    } else {
        weir_errorf(err, errlen, "API URL \"%s\": must start with https:// or http://", url);
        return -1;
    }
    char host[256];
    const char *end;
    if (*p == '[') {
        end = strchr(p, ']');
        if (end == NULL || (size_t)(end - p - 1) >= sizeof(host)) {
            weir_errorf(err, errlen, "API URL \"%s\": bad IPv6 literal", url);
            return -1;
        }
        memcpy(host, p + 1, (size_t)(end - p - 1));
        host[end - p - 1] = '\0';
        end++;
    } else {
        end = p + strcspn(p, ":/");
        if (end == p || (size_t)(end - p) >= sizeof(host)) {
            weir_errorf(err, errlen, "API URL \"%s\": no host", url);
            return -1;
        }
        memcpy(host, p, (size_t)(end - p));
        host[end - p] = '\0';
    }
    if (*end == ':') {
        char *stop;
        unsigned long v = strtoul(end + 1, &stop, 10);
        if (stop == end + 1 || v < 1 || v > 65535 || (*stop && strcmp(stop, "/") != 0)) {
            weir_errorf(err, errlen, "API URL \"%s\": bad port", url);
            return -1;
        }
        port = (unsigned)v;
    } else if (*end && strcmp(end, "/") != 0) {
        weir_errorf(err, errlen, "API URL \"%s\": a path is not supported", url);
        return -1;
    }
    weir_buf_t auth = WEIR_BUF_INIT;
    weir_buf_appendf(&auth, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
    c->authority = auth.base;

    struct sockaddr_in *v4 = (struct sockaddr_in *)&c->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&c->addr;
    if (uv_ip4_addr(host, (int)port, v4) == 0 || uv_ip6_addr(host, (int)port, v6) == 0)
        return 0;
    /* A name (kubectl proxy on localhost): resolved once, here, at start. */
    uv_getaddrinfo_t req;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char ports[8];
    snprintf(ports, sizeof(ports), "%u", port);
    int rc = uv_getaddrinfo(c->loop, &req, NULL, host, ports, &hints);
    if (rc != 0 || req.addrinfo == NULL) {
        weir_errorf(err, errlen, "API URL \"%s\": cannot resolve %s: %s", url, host,
                rc ? uv_strerror(rc) : "no address");
        if (rc == 0)
            uv_freeaddrinfo(req.addrinfo);
        return -1;
    }
    memcpy(&c->addr, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
    uv_freeaddrinfo(req.addrinfo);
    return 0;
}

static void client_free(weir_k8s_client_t *c)
{
    for (int i = 0; i < R_N; i++) {
        json_decref(c->streams[i].store);
        json_decref(c->streams[i].pending);
        free(c->streams[i].rv);
        free(c->streams[i].cont);
    }
    registry_free(c->current);
    if (c->tls) {
        mbedtls_ctr_drbg_free(&c->drbg);
        mbedtls_entropy_free(&c->entropy);
    }
    free(c->url);
    free(c->token_path);
    free(c->ca_path);
    free(c->server_name);
    free(c->ns);
    free(c->domain);
    free(c->authority);
    void (*done)(void *) = c->done;
    void *data = c->done_data;
    free(c);
    if (done)
        done(data);
}

static void client_handle_closed(weir_k8s_client_t *c)
{
    if (--c->handles == 0 && c->stopping)
        client_free(c);
}

static void on_debounce_closed(uv_handle_t *h)
{
    client_handle_closed(h->data);
}

static void on_retry_closed(uv_handle_t *h)
{
    client_handle_closed(((stream_t *)h->data)->client);
}

weir_k8s_client_t *weir_k8s_start(uv_loop_t *loop, const weir_k8s_options_t *o, char *err,
                                  size_t errlen)
{
    if (o == NULL || o->api_url == NULL || o->on_change == NULL) {
        weir_errorf(err, errlen, "k8s: api_url and on_change are required");
        return NULL;
    }
    weir_k8s_client_t *c = weir_mem_calloc(1, sizeof(*c));
    c->loop = loop;
    c->url = weir_mem_strdup(o->api_url);
    if (parse_url(c, o->api_url, err, errlen) != 0) {
        client_free(c);
        return NULL;
    }
    if (o->token_path == NULL)
        c->token_path = weir_mem_strdup(WEIR_K8S_SA_DIR "/token");
    else if (*o->token_path)
        c->token_path = weir_mem_strdup(o->token_path);
    c->ca_path = weir_mem_strdup(o->ca_path ? o->ca_path : WEIR_K8S_SA_DIR "/ca.crt");
    c->server_name = weir_mem_strdup(o->server_name ? o->server_name : WEIR_K8S_SERVER_NAME);
    c->ns = o->namespace && *o->namespace ? weir_mem_strdup(o->namespace) : NULL;
    c->domain = weir_mem_strdup(o->cluster_domain ? o->cluster_domain : "cluster.local");
    c->debounce_ms = o->debounce_ms ? o->debounce_ms : DEFAULT_DEBOUNCE_MS;
    c->backoff_initial_ms =
        o->backoff_initial_ms ? o->backoff_initial_ms : DEFAULT_BACKOFF_INITIAL_MS;
    c->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
    if (c->backoff_max_ms < c->backoff_initial_ms)
        c->backoff_max_ms = c->backoff_initial_ms;
    c->watch_timeout_s = o->watch_timeout_s ? o->watch_timeout_s : DEFAULT_WATCH_TIMEOUT_S;
    c->page_size = o->page_size ? o->page_size : DEFAULT_PAGE_SIZE;
    c->max_body = o->max_body ? o->max_body : DEFAULT_MAX_BODY;
    c->on_change = o->on_change;
    c->data = o->data;

    if (c->tls) {
        /* Check the CA now, so a broken mount is a startup error, not a retry loop. */
        mbedtls_x509_crt ca;
        mbedtls_x509_crt_init(&ca);
        int rc = mbedtls_x509_crt_parse_file(&ca, c->ca_path);
        bool ok = rc >= 0 && ca.version != 0;
        mbedtls_x509_crt_free(&ca);
        if (!ok) {
            char e[160];
            weir_errorf(err, errlen, "k8s: CA %s: %s", c->ca_path,
                    rc < 0 ? tls_error(rc, e, sizeof(e)) : "no certificate");
            c->tls = false; /* nothing of the TLS state is set up yet */
            client_free(c);
            return NULL;
        }
        mbedtls_entropy_init(&c->entropy);
        mbedtls_ctr_drbg_init(&c->drbg);
        static const char pers[] = "weir-k8s";
        if (mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy,
                                  (const unsigned char *)pers, sizeof(pers) - 1) != 0) {
            weir_errorf(err, errlen, "k8s: cannot seed the random generator");
            client_free(c);
            return NULL;
        }
    }

    uv_timer_init(loop, &c->debounce);
    c->debounce.data = c;
    uv_unref((uv_handle_t *)&c->debounce);
    c->handles++;
    for (int i = 0; i < R_N; i++) {
        stream_t *s = &c->streams[i];
        s->client = c;
        s->res = (res_t)i;
        s->store = json_object();
        uv_timer_init(loop, &s->retry);
        s->retry.data = s;
        uv_unref((uv_handle_t *)&s->retry);
        c->handles++;
    }
    c->last_error[0] = '\0';
    for (int i = 0; i < R_N; i++)
        conn_open(&c->streams[i], false);
    return c;
}

void weir_k8s_stop(weir_k8s_client_t *c, void (*done)(void *data), void *data)
{
    if (c == NULL || c->stopping)
        return;
    c->stopping = true;
    c->done = done;
    c->done_data = data;
    for (int i = 0; i < R_N; i++) {
        stream_t *s = &c->streams[i];
        if (s->conn)
            conn_close(s->conn);
        uv_close((uv_handle_t *)&s->retry, on_retry_closed);
    }
    uv_close((uv_handle_t *)&c->debounce, on_debounce_closed);
}

const weir_k8s_registry_t *weir_k8s_current(const weir_k8s_client_t *c)
{
    return c->current;
}

bool weir_k8s_synced(const weir_k8s_client_t *c)
{
    return all_synced(c);
}

weir_k8s_stats_t weir_k8s_stats(const weir_k8s_client_t *c)
{
    weir_k8s_stats_t st = c->stats;
    st.last_error = c->last_error;
    return st;
}
