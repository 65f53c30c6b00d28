/* common/proxy.c: see proxy.h.
 *
 * Three objects, one owner each:
 *  - downstream_t: a client connection. Owns its parser, its pending input and its current
 *    stream. Freed when both of its handles (tcp, timer) have closed.
 *  - stream_t: one request/response exchange. Owned by its downstream; holds a snapshot
 *    reference, so everything it reads stays valid while it lives. Freed by stream_finish().
 *  - upstream_t: a connection to an endpoint. Owned by the stream using it, or by its pool
 *    while idle. Freed in its close callback.
 *
 * Bytes for the other side are appended to a weir_buf_t while a parser runs and handed to one
 * uv_write per batch; the write request takes the buffer, so nothing is copied twice. The
 * parser callbacks never close anything: they set flags, and the read callback that ran the
 * parser acts on them once the parser has returned. */
#include "common/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/cluster.h"
#include "common/cluster_state.h"
#include "common/outlier.h"
#include "common/http_codec.h"
#include "common/identity.h"
#include "common/lb.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/metrics.h"
#include "common/mem.h"
#include "common/retry.h"
#include "common/router.h"
#include "common/sni.h"
#include "common/snapshot.h"
#include "common/tls.h"
#include "common/upstream_pool.h"

#define READ_BUF_SIZE (64 * 1024)
#define LINGER_MS 2000

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

typedef struct listener {
    uv_tcp_t tcp;
    uint32_t port;
    weir_listener_opts_t opts;
    struct listener *next;
} listener_t;

/* An endpoint weir reaches without a cluster from the config: the app behind an inbound port,
 * or an outbound original destination no service knows (Envoy's InboundPassthroughCluster and
 * PassthroughCluster). Inbound targets live for the process, one per port; passthrough
 * targets are made per connection, since the destination is anyone's guess. */
typedef struct {
    weir_cluster_t cluster; /* only name, host and port are meaningful */
    weir_endpoint_t endpoint;
    char name[48];
} adhoc_target_t;

typedef struct stream stream_t;

typedef enum { TIMER_NONE, TIMER_IDLE, TIMER_HEADERS, TIMER_STREAM, TIMER_CONNECT, TIMER_NEXT,
               TIMER_LINGER, TIMER_HANDSHAKE, TIMER_RETRY, TIMER_FAULT_DELAY } timer_mode_t;

typedef struct upstream upstream_t;
typedef struct shadow shadow_t;

typedef struct downstream {
    uv_tcp_t tcp;
    uv_timer_t timer;
    timer_mode_t timer_mode;
    uv_timer_t route_timer; /* the current request's route and per-try timeouts */
    int open_handles;
    uint32_t port;
    weir_listener_kind_t kind;
    struct sockaddr_storage orig_dst; /* sidecar listeners: where the client was going */
    uint32_t orig_port;
    adhoc_target_t *passthrough; /* outbound to an unknown destination: owned */
    upstream_t *raw_up; /* plain TCP relay mode: no HTTP parsing on this connection */
    weir_tls_t *tls;    /* inbound mTLS: the server side */
    bool tls_decided;   /* PERMISSIVE ports wait for the first bytes to choose */
    bool handshake_done;
    weir_buf_t sniff;   /* those first bytes, until there are enough to tell */
    char peer_hash[65]; /* SHA-256 of the client's certificate, for XFCC; "" without one */
    char sni[256];      /* gateway TLS ports: the ClientHello's server name; "" for none */
    const weir_metrics_peer_t *metrics_peer; /* inbound: the client, as its certificate named it */
    weir_http_parser_t *parser;
    stream_t *stream;
    weir_buf_t pending; /* input read but not parsed: a pipelined next request */
    weir_buf_t out;     /* bytes for the client, written after each parser run */
    char remote_ip[INET6_ADDRSTRLEN];
    char remote[INET6_ADDRSTRLEN + 8], local[INET6_ADDRSTRLEN + 8];
    bool reading, closing, read_eof, lingering;
    bool close_after_response; /* no keep-alive once the current exchange is done */
    struct downstream *prev, *next; /* all connections, for shutdown */
} downstream_t;

struct upstream {
    uv_tcp_t tcp;
    uv_timer_t idle_timer; /* runs while parked in the pool: the cluster's idleTimeout */
    int open_handles;      /* tcp and idle_timer: freed when both have closed */
    uv_connect_t connect_req;
    weir_pool_link_t link;
    weir_upstream_pool_t *pool;
    weir_http_parser_t *parser;
    stream_t *stream; /* NULL while idle in the pool */
    char local[INET6_ADDRSTRLEN + 8];
    bool connected, closing, idle, reading, reusable, read_eof;
    const weir_metrics_peer_t *metrics_peer; /* the server, as its certificate named it */
    weir_tls_t *tls;  /* ISTIO_MUTUAL: the client side of the mTLS session */
    weir_cluster_state_t *cstate; /* counts this connection against max_connections */
    uint32_t requests;            /* served on this connection (maxRequestsPerConnection) */
    bool tls_ready;   /* connected, and the handshake (if any) is done: requests may flow */
    downstream_t *raw_down; /* plain TCP relay: the client side */
    shadow_t *shadow;       /* a mirror's connection: its answer is dropped */
};

struct stream {
    downstream_t *down;
    upstream_t *up;
    weir_snapshot_t *snap;
    weir_http_head_t *req;
    const weir_route_t *route;
    weir_cluster_t *cluster;
    weir_endpoint_t *endpoint;
    weir_buf_t up_pending; /* upstream-bound bytes not yet handed to a write */
    weir_buf_t xff;        /* x-forwarded-for as sent upstream */
    char request_id[64];
    char flags[64];      /* Envoy's %RESPONSE_FLAGS%, comma-joined; "" is "-" */
    uint32_t flag_bits; /* which of flag_order[] are set */
    const char *details;
    /* retries and timeouts (Envoy's router): the chosen destination, the attempt's state, what
     * was sent of the body so a retry can send it again, and the deadlines */
    size_t dest_index;
    weir_retry_state_t retry;
    bool retry_pending;      /* the attempt's response is being dropped for a retry */
    bool replay_overflow;    /* the body outgrew the replay buffer: no more retries */
    weir_buf_t replay;       /* upstream-framed body bytes sent so far */
    const weir_endpoint_t *tried[8];
    size_t n_tried;
    uint64_t route_deadline_ms, try_deadline_ms; /* 0: none */
    bool continue_sent;
    bool endpoint_active; /* s->endpoint counts this attempt in its active requests */
    bool counted_active;  /* in the cluster's active requests (max_requests) */
    bool counted_retry;   /* in the cluster's active retries (max_retries) */
    shadow_t *shadows;    /* mirrors of this request still being fed */
    weir_pool_link_t wait_link; /* in the cluster's pending queue while linked */
    int status;
    bool local_reply;   /* answered by weir: request body bytes are read and dropped */
    bool req_chunked, req_trailers_sent, req_complete;
    bool resp_started, resp_complete, out_chunked, resp_trailers_sent;
    bool head_request;
    uint64_t start_ms, start_us, upstream_start_ms, upstream_time_ms;
    uint64_t bytes_received, bytes_sent;
    bool upstream_time_set;
    char upstream_failure[192]; /* %UPSTREAM_TRANSPORT_FAILURE_REASON% */
};

typedef struct {
    uv_write_t req;
    weir_buf_t buf;
} write_req_t;

/* A mirrored copy of a request (Envoy's shadow): its own connection to the mirror cluster,
 * fed the request as the primary forwards it, its answer read and dropped. It never delays or
 * fails the primary: when it cannot keep up it is abandoned. Owned by itself: freed in its
 * timer's close callback, once its exchange is over. */
struct shadow {
    uv_timer_t timer; /* the deadline it never outlives */
    upstream_t *up;
    weir_snapshot_t *snap; /* keeps cluster and endpoint alive */
    weir_cluster_t *cluster;
    weir_endpoint_t *ep;
    weir_buf_t pending;    /* request bytes waiting for the connection */
    stream_t *primary;     /* NULL once the primary is done */
    struct shadow *next;   /* in the primary's list */
    bool req_complete, resp_complete, finished;
    bool burst; /* holds one of the few slots to fall further behind */
};

static weir_proxy_options_t options;
static weir_retry_policy_t no_retries; /* requests without a route: inbound, passthrough */
static listener_t *listeners;
static downstream_t *all_downstreams;
static char read_buf[READ_BUF_SIZE]; /* every read is parsed before the next one starts */
static char plain_buf[READ_BUF_SIZE]; /* decrypted bytes, also consumed before the next read */

static void down_close(downstream_t *d);
static void down_process(downstream_t *d, const char *data, size_t len);
static void down_update_reading(downstream_t *d);
static void up_close(upstream_t *u);
static void up_update_reading(upstream_t *u);
static void stream_finish(stream_t *s);
static void stream_abort(stream_t *s, const char *flag, const char *details);
static void stream_after_io(stream_t *s);
static void relay_start(downstream_t *d);
static void relay_start_to(downstream_t *d, weir_upstream_pool_t *pool);
static void relay_update(downstream_t *d);

void weir_proxy_options_default(weir_proxy_options_t *o)
{
    memset(o, 0, sizeof(*o));
    o->use_remote_address = true;
    o->request_headers_timeout_ms = 60 * 1000;
    o->idle_timeout_ms = 3600 * 1000;
    o->stream_idle_timeout_ms = 300 * 1000;
    o->connect_timeout_ms = 10 * 1000;
    o->server_name = "istio-envoy";
    o->inbound_source_address = "127.0.0.6";
    o->shadow_host_suffix = true;
}

void weir_proxy_init(const weir_proxy_options_t *o)
{
    options = *o;
    weir_retry_policy_init(&no_retries);
}

/* ------------------------------------------------------------------ writes */

/* Decimal digits of v, for the numbers every head carries (printf's machinery costs more
 * than the rest of a small head). */
static void append_uint(weir_buf_t *o, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[sizeof(digits) - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    weir_buf_append(o, digits + sizeof(digits) - n, n);
}

static void down_write_done(uv_write_t *req, int status);
static void up_write_done(uv_write_t *req, int status);

/* Writes b's bytes, at once when the socket takes them, else with one uv_write for the rest; b
 * is left empty (a pending write owns the memory). Trying first matters: a uv_write that
 * completes still makes libuv re-arm the fd in epoll (one epoll_ctl per write), where a
 * direct write costs only the write. libuv refuses the direct write while earlier writes are
 * queued, so bytes never overtake each other; errors are left to uv_write to report. done
 * runs only for bytes that had to wait, which is when the queue it reports on had grown. */
static int write_buf(uv_stream_t *h, weir_buf_t *b, uv_write_cb done)
{
    if (b->len == 0)
        return 0;
    uv_buf_t direct = uv_buf_init(b->base, (unsigned)b->len);
    int n = uv_try_write(h, &direct, 1);
    if (n > 0 && (size_t)n == b->len) {
        weir_buf_free(b); /* as if a write had taken it: callers hand over local buffers */
        return 0;
    }
    if (n > 0)
        weir_buf_consume(b, (size_t)n);
    write_req_t *w = weir_mem_alloc(sizeof(*w));
    w->buf = *b;
    *b = (weir_buf_t)WEIR_BUF_INIT;
    uv_buf_t ub = uv_buf_init(w->buf.base, (unsigned)w->buf.len);
    w->req.data = h->data;
    int rc = uv_write(&w->req, h, &ub, 1, done);
    if (rc < 0) {
        weir_buf_free(&w->buf);
        free(w);
    }
    return rc;
}

/* Writes b on h, encrypted first when the connection has TLS. b is left empty. */
static int send_on(uv_stream_t *h, weir_tls_t *tls, weir_buf_t *b, uv_write_cb done)
{
    if (tls == NULL)
        return write_buf(h, b, done);
    weir_buf_t cipher = WEIR_BUF_INIT;
    size_t off = 0;
    while (off < b->len) {
        size_t used = 0;
        if (weir_tls_write(tls, b->base + off, b->len - off, &used) == WEIR_TLS_ERROR ||
            used == 0) {
            weir_buf_free(&cipher);
            weir_buf_reset(b);
            return -1;
        }
        off += used;
        weir_tls_take_cipher(tls, &cipher); /* keeps the engine under its high-water mark */
    }
    weir_buf_reset(b);
    weir_tls_take_cipher(tls, &cipher);
    int rc = write_buf(h, &cipher, done);
    weir_buf_free(&cipher); /* only when nothing was handed to the write */
    return rc;
}

static size_t queued(uv_tcp_t *t)
{
    return uv_stream_get_write_queue_size((uv_stream_t *)t);
}

static void down_flush(downstream_t *d)
{
    if (d->closing) {
        weir_buf_reset(&d->out);
        return;
    }
    if (send_on((uv_stream_t *)&d->tcp, d->tls, &d->out, down_write_done) < 0)
        down_close(d);
}

static void up_flush(stream_t *s)
{
    upstream_t *u = s->up;
    if (u == NULL || !u->tls_ready || u->closing)
        return;
    if (send_on((uv_stream_t *)&u->tcp, u->tls, &s->up_pending, up_write_done) < 0)
        up_close(u);
}

static void set_timer(struct downstream *d, timer_mode_t mode, uint64_t ms);

static void shutdown_done(uv_shutdown_t *req, int status)
{
    downstream_t *d = req->handle->data;
    free(req);
    if (status == UV_ECANCELED || d->closing)
        return;
    if (status < 0 || d->read_eof)
        down_close(d);
}

/* Sends FIN once every queued byte is written, then keeps reading (and dropping) for a
 * moment, so a client still sending its body gets our answer instead of a reset that could
 * destroy it. A client that already closed its side is closed at once. */
static void down_linger(downstream_t *d)
{
    if (d->closing || d->lingering)
        return;
    d->lingering = true;
    uv_shutdown_t *req = weir_mem_alloc(sizeof(*req));
    if (uv_shutdown(req, (uv_stream_t *)&d->tcp, shutdown_done) < 0) {
        free(req);
        down_close(d);
        return;
    }
    set_timer(d, TIMER_LINGER, LINGER_MS);
    down_update_reading(d);
}

/* Frees a finished write; reports whether the handle's owner may be touched. */
static bool write_finished(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    weir_buf_free(&w->buf);
    free(w);
    return status != UV_ECANCELED;
}

/* ------------------------------------------------------------------ helpers */

static void sockaddr_to_text(const struct sockaddr_storage *ss, char *ip, size_t ip_len,
                             char *full, size_t full_len)
{
    char tmp[INET6_ADDRSTRLEN] = "-";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, tmp, sizeof(tmp));
        port = ntohs(a->sin_port);
        snprintf(full, full_len, "%s:%d", tmp, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, tmp, sizeof(tmp));
        port = ntohs(a->sin6_port);
        snprintf(full, full_len, "[%s]:%d", tmp, port);
    } else {
        snprintf(full, full_len, "-");
    }
    if (ip)
        snprintf(ip, ip_len, "%s", tmp);
}

static void append_header(weir_buf_t *b, const char *name, size_t nlen, const char *value,
                          size_t vlen)
{
    weir_buf_append(b, name, nlen);
    weir_buf_append(b, ": ", 2);
    weir_buf_append(b, value, vlen);
    weir_buf_append(b, "\r\n", 2);
}

static void append_chunk(weir_buf_t *b, const char *data, size_t len)
{
    char hdr[24];
    size_t n = weir_http_chunk_header(hdr, len);
    weir_buf_append(b, hdr, n);
    weir_buf_append(b, data, len);
    weir_buf_append(b, "\r\n", 2);
}

static void append_trailers(weir_buf_t *b, const weir_http_header_t *t, size_t n)
{
    weir_buf_append(b, "0\r\n", 3);
    for (size_t i = 0; i < n; i++)
        append_header(b, t[i].name, t[i].name_len, t[i].value, t[i].value_len);
    weir_buf_append(b, "\r\n", 2);
}

/* The VirtualService header operations for this exchange, in the order Envoy applies them:
 * with one destination the route's then the destination's (so the destination wins); with a
 * weighted split the destination's then the route's (istio-semantics 2.10). */
static size_t header_ops(const stream_t *s, bool request, const weir_header_ops_t *out[2])
{
    const weir_http_route_t *rule = s->route ? s->route->rule : NULL;
    if (rule == NULL)
        return 0;
    const weir_headers_t *route_h = &rule->headers;
    const weir_headers_t *dest_h = s->dest_index < rule->n_route ? &rule->route[s->dest_index].headers
                                                                 : NULL;
    const weir_headers_t *first = route_h, *second = dest_h;
    if (rule->n_route > 1) {
        first = dest_h;
        second = route_h;
    }
    size_t n = 0;
    if (first)
        out[n++] = request ? &first->request : &first->response;
    if (second)
        out[n++] = request ? &second->request : &second->response;
    return n;
}

/* True when a header of this name is removed or replaced by one of the ops. */
static bool header_op_drops(const weir_header_ops_t *const *ops, size_t n, const char *name,
                            size_t len)
{
    for (size_t k = 0; k < n; k++) {
        for (size_t i = 0; i < ops[k]->n_remove; i++) {
            if (weir_http_name_is(name, len, ops[k]->remove[i]))
                return true;
        }
        for (size_t i = 0; i < ops[k]->n_set; i++) {
            if (weir_http_name_is(name, len, ops[k]->set[i].name))
                return true;
        }
    }
    return false;
}

/* Writes what the ops set (the last op to set a name wins) and add. */
static void header_ops_write(weir_buf_t *o, const weir_header_ops_t *const *ops, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        for (size_t i = 0; i < ops[k]->n_set; i++) {
            const weir_header_op_t *op = &ops[k]->set[i];
            bool overridden = false;
            for (size_t later = k + 1; later < n && !overridden; later++) {
                for (size_t j = 0; j < ops[later]->n_set && !overridden; j++)
                    overridden = strcmp(ops[later]->set[j].name, op->name) == 0;
            }
            if (!overridden)
                append_header(o, op->name, strlen(op->name), op->value, strlen(op->value));
        }
    }
    for (size_t k = 0; k < n; k++) {
        for (size_t i = 0; i < ops[k]->n_add; i++) {
            const weir_header_op_t *op = &ops[k]->add[i];
            append_header(o, op->name, strlen(op->name), op->value, strlen(op->value));
        }
    }
}

/* Envoy's response flags in the order Envoy prints them (ResponseFlagUtils), so a retried
 * connect failure reads "UF,URX" as it does in Envoy's logs. */
static const char *const flag_order[] = {"LH",  "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR",
                                         "DI",  "FI", "RL", "UAEX", "RLSE", "DC", "URX", "SI",
                                         "IH", "DPE", "UMSDR", "UPE", "NC", "OM", "DF"};

/* Adds an Envoy response flag ("UF", "URX" ...); "-" and NULL add nothing. */
static void add_flag(stream_t *s, const char *flag)
{
    if (flag == NULL || strcmp(flag, "-") == 0)
        return;
    for (size_t i = 0; i < sizeof(flag_order) / sizeof(flag_order[0]); i++) {
        if (strcmp(flag_order[i], flag) == 0) {
            s->flag_bits |= 1u << i;
            break;
        }
    }
    s->flags[0] = '\0';
    for (size_t i = 0; i < sizeof(flag_order) / sizeof(flag_order[0]); i++) {
        if (s->flag_bits & (1u << i)) {
            if (s->flags[0])
                strcat(s->flags, ",");
            strcat(s->flags, flag_order[i]);
        }
    }
}

/* ------------------------------------------------------------------ access log */

static const weir_metrics_peer_t *metrics_self;
static size_t active_streams;
static bool draining;

/* The other side's labels: for a request this proxy sends on, the endpoint's workload (with the
 * SPIFFE ID its certificate showed); for one it receives, the client's SPIFFE ID. Interned once
 * per endpoint or connection. */
static const weir_metrics_peer_t *endpoint_peer(stream_t *s)
{
    weir_endpoint_t *ep = s->endpoint;
    if (ep == NULL)
        return weir_metrics_unknown_peer();
    const char *principal = s->up && s->up->tls ? weir_tls_peer_spiffe_id(s->up->tls) : NULL;
    if (principal && s->up->metrics_peer)
        return s->up->metrics_peer;
    if (principal == NULL && ep->metrics_peer)
        return ep->metrics_peer;
    const weir_workload_entry_t *we = ep->workload;
    const weir_metrics_peer_t *p = weir_metrics_peer(
        we ? (we->name ? we->name : weir_labels_get(&we->labels, "app")) : NULL,
        we ? we->namespace : NULL, principal, weir_labels_get(ep->labels, "app"),
        weir_labels_get(ep->labels, "version"));
    if (principal)
        s->up->metrics_peer = p;
    else
        ep->metrics_peer = p;
    return p;
}

/* Istio's standard metrics for one finished request. */
static void record_metrics(stream_t *s)
{
    downstream_t *d = s->down;
    bool inbound = d->kind == WEIR_LISTENER_INBOUND;
    const weir_metrics_peer_t *peer;
    if (inbound) {
        if (d->metrics_peer == NULL)
            d->metrics_peer = weir_metrics_peer(
                NULL, NULL, d->tls ? weir_tls_peer_spiffe_id(d->tls) : NULL, NULL, NULL);
        peer = d->metrics_peer;
    } else {
        peer = endpoint_peer(s);
    }
    weir_request_metric_t m = {
        .reporter_destination = inbound,
        .source = inbound ? peer : metrics_self,
        .destination = inbound ? metrics_self : peer,
        .destination_service = s->cluster && s->cluster->host[0] ? s->cluster->host : NULL,
        .response_code = s->status,
        .response_flags = s->flags,
        .mutual_tls = d->tls != NULL,
        .duration_ms = weir_now_ms() - s->start_ms,
        .request_bytes = s->bytes_received,
        .response_bytes = s->bytes_sent,
    };
    weir_metrics_record(&m);
}

static void log_stream(stream_t *s)
{
    if (metrics_self)
        record_metrics(s);
    if (!weir_access_log_enabled())
        return;
    const weir_http_head_t *h = s->req;
    char method[32], proto[16], ua[512], path[2048], authority[512];
    const weir_http_header_t *uah = weir_http_head_find(h, "user-agent");
    snprintf(method, sizeof(method), "%.*s", (int)h->method_len, h->method);
    snprintf(proto, sizeof(proto), "HTTP/%d.%d", h->version_major, h->version_minor);
    snprintf(path, sizeof(path), "%.*s", (int)h->target_len, h->target);
    if (uah)
        snprintf(ua, sizeof(ua), "%.*s", (int)uah->value_len, uah->value);
    if (h->host_index >= 0)
        snprintf(authority, sizeof(authority), "%.*s", (int)h->headers[h->host_index].value_len,
                 h->headers[h->host_index].value);
    weir_access_log_entry_t e = {
        .start_us = s->start_us,
        .method = method,
        .path = path,
        .protocol = proto,
        .response_code = s->status,
        .response_flags = s->flags[0] ? s->flags : "-",
        .response_code_details = s->details,
        .bytes_received = s->bytes_received,
        .bytes_sent = s->bytes_sent,
        .duration_ms = weir_now_ms() - s->start_ms,
        .upstream_service_time_ms = s->upstream_time_set ? (int64_t)s->upstream_time_ms : -1,
        .x_forwarded_for = s->xff.len ? s->xff.base : NULL,
        .user_agent = uah ? ua : NULL,
        .request_id = s->request_id,
        .authority = h->host_index >= 0 ? authority : NULL,
        .upstream_failure = s->upstream_failure[0] ? s->upstream_failure : NULL,
        .upstream_host = s->endpoint ? s->endpoint->host_port : NULL,
        .upstream_cluster = s->cluster ? s->cluster->name : NULL,
        .upstream_local_address = s->up ? s->up->local : NULL,
        .downstream_local_address = s->down->local,
        .downstream_remote_address = s->down->remote,
        .route_name = s->route ? s->route->name : NULL,
        .requested_server_name = s->down->sni[0] ? s->down->sni : NULL,
        .downstream_peer_uri_san = s->down->tls ? weir_tls_peer_spiffe_id(s->down->tls) : NULL,
        .upstream_peer_uri_san = s->up && s->up->tls ? weir_tls_peer_spiffe_id(s->up->tls) : NULL,
    };
    weir_access_log_write(&e);
}

/* Requests that fail before a head exists (malformed input) are logged too, as Envoy logs
 * its 400s with flag DPE. */
static void log_codec_error(downstream_t *d, int status)
{
    if (!weir_access_log_enabled())
        return;
    weir_access_log_entry_t e = {
        .start_us = weir_wall_us(),
        .response_code = status,
        .response_flags = "DPE",
        .response_code_details = weir_http_parser_error_reason(d->parser),
        .upstream_service_time_ms = -1,
        .downstream_local_address = d->local,
        .downstream_remote_address = d->remote,
    };
    weir_access_log_write(&e);
}

/* ------------------------------------------------------------------ local replies */

/* Answers the request from weir itself. Never called once the response has started. */
static void local_reply(stream_t *s, int status, const char *flag, const char *details,
                        const char *body, size_t body_len, const char *extra_headers)
{
    downstream_t *d = s->down;
    assert(!s->resp_started);
    s->local_reply = true;
    s->resp_started = s->resp_complete = true;
    s->status = status;
    add_flag(s, flag);
    s->details = details;
    if (!s->req_complete && s->req->has_body && s->req->content_length < 0)
        d->close_after_response = true; /* an unknown amount may follow: don't wait for it */
    if (!s->req->keep_alive || draining)
        d->close_after_response = true;
    weir_buf_appendf(&d->out, "HTTP/1.1 %d %s\r\ndate: %s\r\nserver: %s\r\n", status,
                     weir_http_reason_phrase(status), weir_http_date(), options.server_name);
    if (s->flags[0]) /* why weir answered itself, for the person reading curl -v */
        weir_buf_appendf(&d->out, "x-weir-flag: %s\r\n", s->flags);
    if (extra_headers)
        weir_buf_append_str(&d->out, extra_headers);
    if (body_len)
        weir_buf_append_str(&d->out, "content-type: text/plain\r\n");
    weir_buf_appendf(&d->out, "content-length: %zu\r\n", body_len);
    if (d->close_after_response)
        weir_buf_append_str(&d->out, "connection: close\r\n");
    weir_buf_append(&d->out, "\r\n", 2);
    if (!s->head_request)
        weir_buf_append(&d->out, body, body_len);
    s->bytes_sent = body_len;
}

static void reply_upstream_failure(stream_t *s, int status, const char *flag, const char *details,
                                   const char *reason)
{
    char body[160];
    int n = snprintf(body, sizeof(body),
                     "upstream connect error or disconnect/reset before headers. reset reason: %s",
                     reason);
    local_reply(s, status, flag, details, body, (size_t)n, NULL);
}

/* The upstream failed this stream: answer from weir if nothing was sent yet, else reset the
 * client (a truncated message must never look complete). Returns false when the stream (and
 * its downstream) are gone, so the caller must not touch either. */
static bool stream_upstream_failed(stream_t *s, int status, const char *flag,
                                   const char *details, const char *reason)
{
    if (!s->resp_started) {
        reply_upstream_failure(s, status, flag, details, reason);
        return true;
    }
    stream_abort(s, flag, "upstream_reset_after_response_started");
    return false;
}

/* The same, with a body of its own (timeouts: "upstream request timeout"). */
static bool stream_upstream_failed_with(stream_t *s, int status, const char *flag,
                                        const char *details, const char *body)
{
    if (!s->resp_started) {
        local_reply(s, status, flag, details, body, strlen(body), NULL);
        return true;
    }
    stream_abort(s, flag, details);
    return false;
}

static void start_attempt(stream_t *s);
static void set_timer(struct downstream *d, timer_mode_t mode, uint64_t ms);
static bool attempt_failed(stream_t *s, weir_retry_outcome_kind_t kind, int status,
                           const char *flag, const char *details, const char *reason);
static void release_endpoint(stream_t *s);
static void arm_route_timer(stream_t *s);

/* The route timeout ends the whole exchange: 504 UT before the response, a reset after. */
static void route_timeout(stream_t *s)
{
    if (s->up)
        up_close(s->up);
    release_endpoint(s);
    if (stream_upstream_failed_with(s, 504, "UT", "upstream_response_timeout",
                                    "upstream request timeout"))
        stream_after_io(s);
}

static void route_timer_cb(uv_timer_t *t)
{
    downstream_t *d = t->data;
    stream_t *s = d->stream;
    if (s == NULL || s->resp_complete || s->local_reply)
        return;
    uint64_t now = weir_now_ms();
    if (s->route_deadline_ms && now >= s->route_deadline_ms) {
        route_timeout(s);
        return;
    }
    if (s->try_deadline_ms && now >= s->try_deadline_ms) {
        s->try_deadline_ms = 0;
        if (attempt_failed(s, WEIR_RETRY_OUTCOME_PER_TRY_TIMEOUT, 504, "UT",
                           "upstream_per_try_timeout", NULL))
            stream_after_io(s);
        return;
    }
    arm_route_timer(s);
}

static void arm_route_timer(stream_t *s)
{
    uint64_t next = s->route_deadline_ms;
    if (s->try_deadline_ms && (next == 0 || s->try_deadline_ms < next))
        next = s->try_deadline_ms;
    uv_timer_t *t = &s->down->route_timer;
    if (next == 0 || s->down->closing) {
        uv_timer_stop(t);
        return;
    }
    uint64_t now = weir_now_ms();
    uv_timer_start(t, route_timer_cb, next > now ? next - now : 0, 0);
}

/* Envoy starts the route timeout once the downstream request is complete, and each per-try
 * timeout when its attempt starts or then, whichever is later. */
static void start_deadlines(stream_t *s)
{
    if (s->route == NULL || s->local_reply || s->resp_started)
        return;
    uint64_t now = weir_now_ms();
    if (s->route->rule->timeout_ms > 0 && s->route_deadline_ms == 0)
        s->route_deadline_ms = now + (uint64_t)s->route->rule->timeout_ms;
    if (s->route->retry_policy.per_try_timeout_ms && s->endpoint_active)
        s->try_deadline_ms = now + s->route->retry_policy.per_try_timeout_ms;
    arm_route_timer(s);
}

/* The endpoint no longer carries this attempt (it may still be named in the log). */
static void release_endpoint(stream_t *s)
{
    if (s->endpoint && s->endpoint_active) {
        s->endpoint->active_requests--;
        s->endpoint_active = false;
        if (s->n_tried < sizeof(s->tried) / sizeof(s->tried[0]))
            s->tried[s->n_tried++] = s->endpoint;
    }
}

/* The cluster's max_retries breaker: concurrent retries, cluster-wide (Istio: unlimited). */
static bool retry_breaker_full(const stream_t *s)
{
    weir_cluster_state_t *cs = s->cluster ? s->cluster->state : NULL;
    return cs && !s->counted_retry &&
           weir_cluster_state_gauges(cs)->active_retries >=
               weir_cluster_state_limits(cs)->max_retries;
}

/* Tells the cluster's outlier detector how the attempt on s->endpoint ended: an HTTP status,
 * or one of WEIR_OUTLIER_CONNECT_FAILED / TIMEOUT / RESET. */
static void report_outlier(stream_t *s, int result)
{
    weir_cluster_t *c = s->cluster;
    if (c == NULL || c->od == NULL || s->endpoint == NULL || !s->endpoint_active)
        return;
    size_t host = (size_t)(s->endpoint - c->endpoints);
    if (host < c->n_endpoints)
        weir_outlier_report(c->od, host, result, weir_now_ms());
}

/* The attempt is over and another follows after Envoy's jittered back-off. */
static void retry_after_failure(stream_t *s)
{
    if (s->up)
        up_close(s->up);
    release_endpoint(s);
    weir_cluster_state_t *cs = s->cluster ? s->cluster->state : NULL;
    if (cs && !s->counted_retry) {
        weir_cluster_state_gauges(cs)->active_retries++;
        s->counted_retry = true;
    }
    s->retry_pending = true;
    s->try_deadline_ms = 0;
    arm_route_timer(s);
    set_timer(s->down, TIMER_RETRY, weir_retry_backoff_ms(&s->retry, weir_random_u32()));
}

/* An upstream attempt failed before its response started (the caller closed the
 * connection). Retries when the route's policy allows; otherwise answers as Envoy does, with
 * URX added once the retries are used up. Returns false when the stream is gone. */
static bool attempt_failed(stream_t *s, weir_retry_outcome_kind_t kind, int status,
                           const char *flag, const char *details, const char *reason)
{
    if (s->up)
        up_close(s->up);
    report_outlier(s, kind == WEIR_RETRY_OUTCOME_CONNECT_FAILURE ? WEIR_OUTLIER_CONNECT_FAILED
                      : kind == WEIR_RETRY_OUTCOME_PER_TRY_TIMEOUT  ? WEIR_OUTLIER_TIMEOUT
                                                                    : WEIR_OUTLIER_RESET);
    if (!s->resp_started && !s->replay_overflow) {
        weir_retry_outcome_t oc = weir_retry_outcome(kind);
        oc.retry_breaker_full = retry_breaker_full(s);
        weir_retry_status_t r = weir_retry_should_retry(&s->retry, &oc);
        if (r == WEIR_RETRY_YES) {
            retry_after_failure(s);
            return true;
        }
        if (r == WEIR_RETRY_NO_LIMIT)
            add_flag(s, "URX");
        if (r == WEIR_RETRY_NO_OVERFLOW)
            add_flag(s, "UO");
    }
    release_endpoint(s);
    if (reason == NULL) /* a per-try timeout: Envoy's timeout body */
        return stream_upstream_failed_with(s, status, flag, details, "upstream request timeout");
    return stream_upstream_failed(s, status, flag, details, reason);
}

/* ------------------------------------------------------------------ upstream */

static void wake_waiter(weir_pool_link_t *w);

static void up_close_cb(uv_handle_t *h)
{
    upstream_t *u = h->data;
    if (--u->open_handles > 0)
        return;
    if (u->cstate) { /* room for another connection: a waiting request may go */
        weir_cluster_state_gauges(u->cstate)->open_connections--;
        weir_cluster_state_notify(u->cstate, wake_waiter);
        weir_cluster_state_unref(u->cstate);
    }
    weir_tls_free(u->tls);
    weir_http_parser_free(u->parser);
    weir_upstream_pool_unref(u->pool);
    free(u);
}

static void up_close(upstream_t *u)
{
    if (u->closing)
        return;
    u->closing = true;
    if (u->idle) {
        weir_upstream_pool_remove_idle(u->pool, &u->link);
        u->idle = false;
    }
    if (u->stream && u->stream->up == u)
        u->stream->up = NULL;
    u->stream = NULL;
    if (u->shadow) {
        u->shadow->up = NULL;
        u->shadow = NULL;
    }
    downstream_t *partner = u->raw_down;
    u->raw_down = NULL;
    uv_close((uv_handle_t *)&u->idle_timer, up_close_cb);
    uv_close((uv_handle_t *)&u->tcp, up_close_cb);
    if (partner) {
        partner->raw_up = NULL;
        down_close(partner);
    }
}

static int up_on_head(weir_http_parser_t *p, weir_http_head_t *h);
static int up_on_body(weir_http_parser_t *p, const char *data, size_t len);
static int up_on_trailers(weir_http_parser_t *p, const weir_http_header_t *t, size_t n);
static int up_on_complete(weir_http_parser_t *p);

static const weir_http_parser_cbs_t up_cbs = {up_on_head, up_on_body, up_on_trailers,
                                              up_on_complete};

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void up_read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);

static void up_idle_expired(uv_timer_t *t)
{
    upstream_t *u = t->data;
    weir_log_debug("closing the connection to %s: idle for the cluster's idleTimeout",
                   weir_upstream_pool_name(u->pool));
    up_close(u);
}

/* Parks a finished connection in its endpoint's pool, under the idle timeout of the cluster
 * that used it last. It stays readable so a close by the server is noticed at once, rather
 * than when the next request is written into a dead socket. */
static void up_park(upstream_t *u, const weir_cluster_t *c)
{
    u->reusable = false;
    weir_http_parser_resume(u->parser);
    u->idle = true;
    weir_upstream_pool_put_idle(u->pool, &u->link);
    uint64_t idle_ms = c ? c->idle_timeout_ms : WEIR_CLUSTER_DEFAULT_IDLE_TIMEOUT_MS;
    if (idle_ms)
        uv_timer_start(&u->idle_timer, up_idle_expired, idle_ms, 0);
    up_update_reading(u);
}

/* A parked connection taken from the pool for a request. */
static upstream_t *up_unpark(weir_pool_link_t *l)
{
    upstream_t *u = container_of(l, upstream_t, link);
    u->idle = false;
    uv_timer_stop(&u->idle_timer);
    return u;
}

/* SO_KEEPALIVE as the DestinationRule's tcpKeepalive asks; the socket exists once the
 * connect has been issued. Best effort: a refusal only costs the probes. */
static void up_keepalive(upstream_t *u, const weir_cluster_t *c)
{
    uv_os_fd_t fd;
    if (!c->tcp_keepalive || u->closing || uv_fileno((uv_handle_t *)&u->tcp, &fd) != 0)
        return;
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    int v;
    if ((v = (int)c->keepalive_time_s) > 0)
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v));
    if ((v = (int)c->keepalive_interval_s) > 0)
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof(v));
    if ((v = (int)c->keepalive_probes) > 0)
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof(v));
}

static void up_release(stream_t *s)
{
    upstream_t *u = s->up;
    if (u == NULL)
        return;
    s->up = NULL;
    u->stream = NULL;
    uint32_t per_conn = u->cstate ? weir_cluster_state_limits(u->cstate)->max_requests_per_connection
                                  : 0;
    if (!u->reusable || u->closing || !s->req_complete || (per_conn && u->requests >= per_conn)) {
        up_close(u);
        return;
    }
    up_park(u, s->cluster);
    if (u->cstate)
        weir_cluster_state_notify(u->cstate, wake_waiter);
}

static void up_update_reading(upstream_t *u)
{
    if (u->closing || !u->connected)
        return;
    bool want = u->idle || (u->shadow && !u->shadow->resp_complete);
    if (u->stream) {
        stream_t *s = u->stream;
        want = !s->resp_complete && queued(&s->down->tcp) < WEIR_PROXY_HIGH_WATERMARK;
        if (u->reading && queued(&s->down->tcp) >= WEIR_PROXY_HIGH_WATERMARK)
            want = false;
        else if (!u->reading && queued(&s->down->tcp) > WEIR_PROXY_LOW_WATERMARK)
            want = false;
    }
    if (want && !u->reading) {
        if (uv_read_start((uv_stream_t *)&u->tcp, alloc_cb, up_read_cb) == 0)
            u->reading = true;
    } else if (!want && u->reading) {
        uv_read_stop((uv_stream_t *)&u->tcp);
        u->reading = false;
    }
}

static void relay_connected(upstream_t *u, int status);
static void shadow_connected(upstream_t *u, int status);
static void up_tls_failed(upstream_t *u, stream_t *s);
static void up_flush_cipher(upstream_t *u);

static void up_connect_cb(uv_connect_t *req, int status)
{
    upstream_t *u = req->data;
    if (status == UV_ECANCELED || u->closing)
        return;
    if (u->raw_down) {
        relay_connected(u, status);
        return;
    }
    if (u->shadow) {
        shadow_connected(u, status);
        return;
    }
    stream_t *s = u->stream;
    if (status < 0) {
        weir_log_debug("connect to %s failed: %s", weir_upstream_pool_name(u->pool),
                       uv_strerror(status));
        up_close(u);
        if (s && attempt_failed(s, WEIR_RETRY_OUTCOME_CONNECT_FAILURE, 503, "UF",
                                "upstream_reset_before_response_started{connection_failure}",
                                "connection failure"))
            stream_after_io(s);
        return;
    }
    u->connected = true;
    uv_tcp_nodelay(&u->tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&u->tcp, (struct sockaddr *)&ss, &len) == 0)
        sockaddr_to_text(&ss, NULL, 0, u->local, sizeof(u->local));
    up_update_reading(u);
    if (u->tls) {
        /* the ClientHello; the request waits for the handshake (the connect timer still runs) */
        if (weir_tls_handshake(u->tls) == WEIR_TLS_ERROR) {
            if (s)
                up_tls_failed(u, s);
            else
                up_close(u);
            return;
        }
        up_flush_cipher(u);
        return;
    }
    u->tls_ready = true;
    if (s)
        set_timer(s->down, TIMER_STREAM, options.stream_idle_timeout_ms);
    if (s) {
        up_flush(s);
        stream_after_io(s);
    }
}

/* Starts a new connection to the pool's address; *out is set even on failure (then it is
 * closing). Connections to the app behind an inbound port come from the inbound source
 * address, which the pod's iptables rules let through uncaptured. */
typedef struct {
    weir_tls_config_t *config; /* NULL: plain text */
    const char *sni;
    const weir_string_list_t *peer_ids; /* the SPIFFE IDs the server may present */
} up_tls_params_t;

static int up_open(weir_upstream_pool_t *pool, bool from_inbound_source, const up_tls_params_t *tp,
                   upstream_t **out)
{
    upstream_t *u = weir_mem_calloc(1, sizeof(*u));
    *out = u;
    u->pool = weir_upstream_pool_ref(pool);
    u->parser = weir_http_parser_new(WEIR_HTTP_RESPONSE, &up_cbs, u);
    uv_tcp_init(weir_loop(), &u->tcp);
    u->tcp.data = u;
    uv_timer_init(weir_loop(), &u->idle_timer);
    u->idle_timer.data = u;
    u->open_handles = 2;
    u->connect_req.data = u;
    int rc = 0;
    if (tp && tp->config) {
        char err[128];
        u->tls = weir_tls_new(tp->config, tp->sni, err, sizeof(err));
        if (u->tls == NULL) {
            weir_log_error("TLS setup for %s: %s", weir_upstream_pool_name(pool), err);
            rc = UV_ENOMEM;
        } else {
            if (tp->peer_ids && tp->peer_ids->count)
                weir_tls_expect_peer_ids(u->tls, (const char *const *)tp->peer_ids->items,
                                         tp->peer_ids->count);
            const struct weir_tls_session *sess = weir_upstream_pool_session(pool);
            if (sess)
                weir_tls_session_offer(u->tls, sess);
        }
    }
    if (rc == 0 && from_inbound_source && options.inbound_source_address) {
        struct sockaddr_in src;
        rc = uv_ip4_addr(options.inbound_source_address, 0, &src);
        if (rc == 0)
            rc = uv_tcp_bind(&u->tcp, (const struct sockaddr *)&src, 0);
    }
    socklen_t alen;
    const struct sockaddr *addr = weir_upstream_pool_addr(pool, &alen);
    if (rc == 0)
        rc = uv_tcp_connect(&u->connect_req, &u->tcp, addr, up_connect_cb);
    if (rc < 0)
        up_close(u);
    return rc;
}

/* Leases an idle connection to the endpoint or opens one. */
/* Envoy's overflow answer: a circuit breaker refused the request. Never retried. */
static void reply_overflow(stream_t *s)
{
    static const char body[] =
        "upstream connect error or disconnect/reset before headers. reset reason: overflow";
    release_endpoint(s);
    local_reply(s, 503, "UO", "upstream_reset_before_response_started{overflow}", body,
                sizeof(body) - 1, "x-envoy-overloaded: true\r\n");
}

static bool up_attach(stream_t *s, weir_endpoint_t *ep);

/* How to reach ep: plain (config NULL), mesh mTLS, or the DestinationRule's TLS. Returns NULL,
 * or why it cannot be reached. */
static const char *tls_params(const weir_cluster_t *c, const weir_endpoint_t *ep,
                              up_tls_params_t *tp)
{
    memset(tp, 0, sizeof(*tp));
    if (ep->transport == WEIR_TRANSPORT_PLAIN)
        return NULL;
    bool mesh = ep->transport == WEIR_TRANSPORT_ISTIO_MUTUAL;
    tp->config = mesh ? weir_identity_client() : c->tls_config;
    tp->sni = c->sni;
    tp->peer_ids = mesh ? &c->peer_ids : NULL;
    if (tp->config == NULL)
        return mesh ? "no mesh certificate (--certs) for ISTIO_MUTUAL"
                    : "the DestinationRule's TLS files did not load";
    return NULL;
}

/* A connection of the cluster closed or went idle: the oldest waiting request tries again. */
static void wake_waiter(weir_pool_link_t *w)
{
    stream_t *s = container_of(w, stream_t, wait_link);
    weir_cluster_gauges_t *g = weir_cluster_state_gauges(s->cluster->state);
    g->pending_requests--;
    if (s->local_reply || s->resp_started || s->endpoint == NULL)
        return;
    up_attach(s, s->endpoint);
    stream_after_io(s);
}

/* Leases an idle connection to the endpoint or opens one, within the cluster's circuit
 * breakers (Envoy's HTTP/1 pool): at max_connections an idle connection to another endpoint
 * is closed to make room, else the request waits in the pending queue, else it overflows.
 * Returns false when the request was answered instead (overflow or failure). */
static bool up_attach(stream_t *s, weir_endpoint_t *ep)
{
    weir_cluster_state_t *cs = s->cluster->state;
    weir_pool_link_t *l = weir_upstream_pool_take_idle(ep->pool);
    upstream_t *u;
    if (l == NULL && cs) {
        weir_cluster_gauges_t *g = weir_cluster_state_gauges(cs);
        const weir_cluster_limits_t *lim = weir_cluster_state_limits(cs);
        if (g->open_connections >= lim->max_connections) {
            weir_pool_link_t *other = weir_cluster_state_take_any_idle(cs, ep->pool);
            if (other) {
                up_close(up_unpark(other)); /* already unlinked from its pool */
            } else if (g->pending_requests < lim->max_pending_requests) {
                g->pending_requests++;
                weir_cluster_state_counters(cs)->rq_pending_total++;
                weir_cluster_state_enqueue(cs, &s->wait_link);
                return true; /* wake_waiter comes back here */
            } else {
                weir_cluster_state_counters(cs)->rq_pending_overflow++;
                reply_overflow(s);
                return false;
            }
        }
    }
    if (l) {
        u = up_unpark(l);
        set_timer(s->down, TIMER_STREAM, options.stream_idle_timeout_ms);
    } else {
        up_tls_params_t tp;
        const char *why = tls_params(s->cluster, ep, &tp);
        if (why) {
            snprintf(s->upstream_failure, sizeof(s->upstream_failure), "TLS_error:%s", why);
            reply_upstream_failure(s, 503, "UF",
                                   "upstream_reset_before_response_started{connection_failure}",
                                   "connection failure, transport failure reason: TLS error");
            return false;
        }
        if (up_open(ep->pool, s->down->kind == WEIR_LISTENER_INBOUND, &tp, &u) < 0) {
            reply_upstream_failure(s, 503, "UF",
                                   "upstream_reset_before_response_started{connection_failure}",
                                   "connection failure");
            return false;
        }
        up_keepalive(u, s->cluster);
        if (cs) {
            u->cstate = weir_cluster_state_ref(cs);
            weir_cluster_state_gauges(cs)->open_connections++;
            weir_cluster_state_counters(cs)->cx_total++;
        }
        set_timer(s->down, TIMER_CONNECT,
                  s->cluster->connect_timeout_ms ? s->cluster->connect_timeout_ms
                                                 : options.connect_timeout_ms);
    }
    u->stream = s;
    u->requests++;
    s->up = u;
    s->upstream_start_ms = weir_now_ms();
    weir_http_parser_expect_head_response(u->parser, s->head_request);
    up_update_reading(u);
    return true;
}

static void relay_up_read(upstream_t *u, ssize_t nread, const uv_buf_t *buf);
static void shadow_read(upstream_t *u, ssize_t nread, const uv_buf_t *buf);
static const void *up_owner(const upstream_t *u);
static void up_dispatch_tls_failed(upstream_t *u);
static void up_dispatch_ready(upstream_t *u);
static void up_dispatch_plain(upstream_t *u, const char *data, size_t len);
static void up_dispatch_eof(upstream_t *u);

/* The upstream closed (or its TLS did): EOF completes a response delimited by the close;
 * anything else was cut short. */
static void up_eof(upstream_t *u, stream_t *s)
{
    weir_http_parser_finish(u->parser);
    u->reusable = false;
    up_close(u);
    if (s->resp_complete ||
        attempt_failed(s, WEIR_RETRY_OUTCOME_RESET, 503, "UC",
                       "upstream_reset_before_response_started{connection_termination}",
                       "connection termination"))
        stream_after_io(s);
}

/* Response bytes (decrypted, if the connection has TLS). */
static void up_plain(upstream_t *u, stream_t *s, const char *data, size_t len)
{
    set_timer(s->down, TIMER_STREAM, options.stream_idle_timeout_ms);
    size_t used = 0;
    weir_http_result_t r = weir_http_parser_execute(u->parser, data, len, &used);
    if (r == WEIR_HTTP_ERROR) {
        weir_log_debug("bad response from %s: %s", weir_upstream_pool_name(u->pool),
                       weir_http_parser_error_reason(u->parser));
        up_close(u);
        if (!stream_upstream_failed(s, 502, "UPE",
                                    "upstream_reset_before_response_started{protocol_error}",
                                    "protocol error"))
            return;
    } else if (r == WEIR_HTTP_ABORTED && s->retry_pending) {
        retry_after_failure(s); /* the head asked for a retry: drop this response */
        return;
    } else if (r == WEIR_HTTP_PAUSED && used != len) {
        u->reusable = false; /* bytes after the response: never reuse this connection */
    }
    stream_after_io(s);
}

static void up_flush_cipher(upstream_t *u)
{
    weir_buf_t b = WEIR_BUF_INIT;
    if (!u->closing && weir_tls_take_cipher(u->tls, &b) > 0 &&
        write_buf((uv_stream_t *)&u->tcp, &b, up_write_done) < 0)
        up_close(u);
    weir_buf_free(&b);
}

/* The mTLS handshake to the endpoint failed: Envoy's 503 UF with the TLS reason. */
static void up_tls_failed(upstream_t *u, stream_t *s)
{
    snprintf(s->upstream_failure, sizeof(s->upstream_failure), "TLS_error:%s",
             weir_tls_reason(u->tls));
    weir_log_info("TLS handshake with %s failed: %s", weir_upstream_pool_name(u->pool),
                  weir_tls_reason(u->tls));
    up_flush_cipher(u); /* the alert, so the server knows why */
    up_close(u);
    if (attempt_failed(s, WEIR_RETRY_OUTCOME_CONNECT_FAILURE, 503, "UF",
                       "upstream_reset_before_response_started{connection_failure}",
                       "connection failure, transport failure reason: TLS error"))
        stream_after_io(s);
}

/* Ciphertext from an mTLS upstream: finish the handshake (then send the request held back
 * until now), then hand every decrypted byte to the response parser. */
static void up_tls_input(upstream_t *u, const char *data, size_t len)
{
    size_t off = 0;
    for (;;) {
        size_t fed = weir_tls_feed_cipher(u->tls, data + off, len - off);
        off += fed;
        if (!u->tls_ready) {
            weir_tls_status_t st = weir_tls_handshake(u->tls);
            up_flush_cipher(u);
            if (st == WEIR_TLS_ERROR) {
                up_dispatch_tls_failed(u);
                return;
            }
            if (st != WEIR_TLS_DONE) {
                if (off >= len || fed == 0)
                    return;
                continue;
            }
            u->tls_ready = true;
            weir_upstream_pool_set_session(u->pool, weir_tls_session_save(u->tls));
            up_dispatch_ready(u);
            if (u->closing)
                return;
        }
        for (;;) {
            size_t n = 0;
            weir_tls_status_t st = weir_tls_read(u->tls, plain_buf, sizeof(plain_buf), &n);
            if (st == WEIR_TLS_DONE) {
                const void *owner = up_owner(u);
                up_dispatch_plain(u, plain_buf, n);
                if (u->closing || up_owner(u) != owner)
                    return; /* the exchange ended (its owner may be gone): later bytes are not its */
                continue;
            }
            if (st == WEIR_TLS_WANT_INPUT)
                break;
            up_flush_cipher(u);
            if (st == WEIR_TLS_ERROR && u->stream)
                snprintf(u->stream->upstream_failure, sizeof(u->stream->upstream_failure),
                         "TLS_error:%s", weir_tls_reason(u->tls));
            up_dispatch_eof(u);
            return;
        }
        if (off >= len || fed == 0)
            break;
    }
    up_flush_cipher(u);
}

static void up_read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    upstream_t *u = h->data;
    if (nread == 0)
        return;
    if (u->raw_down) {
        relay_up_read(u, nread, buf);
        return;
    }
    if (u->shadow) {
        shadow_read(u, nread, buf);
        return;
    }
    if (u->idle) {
        /* data or EOF on an idle connection: the server closed or misbehaves; drop it */
        up_close(u);
        return;
    }
    stream_t *s = u->stream;
    if (s == NULL) {
        up_close(u);
        return;
    }
    if (nread < 0) {
        if (u->tls && !u->tls_ready) {
            weir_tls_feed_eof(u->tls);
            snprintf(s->upstream_failure, sizeof(s->upstream_failure),
                     "TLS_error:connection closed during the handshake");
            up_close(u);
            if (attempt_failed(s, WEIR_RETRY_OUTCOME_CONNECT_FAILURE, 503, "UF",
                               "upstream_reset_before_response_started{connection_failure}",
                               "connection failure, transport failure reason: TLS error"))
                stream_after_io(s);
            return;
        }
        up_eof(u, s);
        return;
    }
    if (u->tls)
        up_tls_input(u, buf->base, (size_t)nread);
    else
        up_plain(u, s, buf->base, (size_t)nread);
}

static void shadow_count_status(shadow_t *sh, int status);

static int up_on_head(weir_http_parser_t *p, weir_http_head_t *h)
{
    upstream_t *u = weir_http_parser_data(p);
    if (u->shadow) {
        shadow_count_status(u->shadow, h->status);
        u->reusable = h->keep_alive;
        return 0;
    }
    stream_t *s = u->stream;
    downstream_t *d = s->down;
    if (s->resp_started) /* answered locally already */
        return -1;
    report_outlier(s, h->status);
    if (!s->replay_overflow) {
        weir_retry_outcome_t oc = weir_retry_outcome_status(h->status);
        oc.overloaded = weir_http_head_find(h, "x-envoy-overloaded") != NULL;
        oc.retry_breaker_full = retry_breaker_full(s);
        weir_retry_status_t r = weir_retry_should_retry(&s->retry, &oc);
        if (r == WEIR_RETRY_YES) {
            s->retry_pending = true; /* up_plain sees the abort and retries */
            return -1;
        }
        if (r == WEIR_RETRY_NO_LIMIT)
            add_flag(s, "URX");
        if (r == WEIR_RETRY_NO_OVERFLOW)
            add_flag(s, "UO");
    }
    s->try_deadline_ms = 0; /* the response has begun: no more tries */
    s->resp_started = true;
    s->status = h->status;
    s->details = "via_upstream";
    s->upstream_time_ms = weir_now_ms() - s->upstream_start_ms;
    s->upstream_time_set = true;
    weir_buf_t *o = &d->out;
    weir_buf_append_str(o, "HTTP/1.1 ");
    append_uint(o, (uint64_t)h->status);
    weir_buf_append(o, " ", 1);
    if (h->reason_len)
        weir_buf_append(o, h->reason, h->reason_len);
    else
        weir_buf_append_str(o, weir_http_reason_phrase(h->status));
    weir_buf_append(o, "\r\n", 2);
    const weir_header_ops_t *ops[2];
    size_t n_ops = header_ops(s, false, ops);
    for (size_t i = 0; i < h->n_headers; i++) {
        const weir_http_header_t *f = &h->headers[i];
        if (header_op_drops(ops, n_ops, f->name, f->name_len) ||
            weir_http_is_hop_by_hop(h, f->name, f->name_len) ||
            weir_http_name_is(f->name, f->name_len, "server") ||
            weir_http_name_is(f->name, f->name_len, "x-envoy-upstream-service-time"))
            continue;
        append_header(o, f->name, f->name_len, f->value, f->value_len);
    }
    weir_buf_append_str(o, "server: ");
    weir_buf_append_str(o, options.server_name);
    weir_buf_append_str(o, "\r\nx-envoy-upstream-service-time: ");
    append_uint(o, s->upstream_time_ms);
    weir_buf_append(o, "\r\n", 2);
    header_ops_write(o, ops, n_ops);
    bool client_11 = s->req->version_major == 1 && s->req->version_minor >= 1;
    if (h->has_body && !s->head_request) {
        if (h->chunked) {
            s->out_chunked = true;
        } else if (h->content_length < 0) {
            /* read to EOF upstream: re-frame as chunked for 1.1 clients so keep-alive
             * survives; a 1.0 client learns the end from our close */
            if (client_11)
                s->out_chunked = true;
            else
                d->close_after_response = true;
        }
    } else if (h->chunked && s->head_request) {
        /* HEAD: the headers describe the GET's framing; pass it through unchanged */
        weir_buf_append_str(o, "transfer-encoding: chunked\r\n");
    }
    if (s->out_chunked)
        weir_buf_append_str(o, "transfer-encoding: chunked\r\n");
    if (!s->req->keep_alive || (!s->req_complete && s->req->has_body) || draining)
        d->close_after_response = true;
    if (d->close_after_response)
        weir_buf_append_str(o, "connection: close\r\n");
    else if (!client_11)
        weir_buf_append_str(o, "connection: keep-alive\r\n");
    weir_buf_append(o, "\r\n", 2);
    u->reusable = h->keep_alive;
    return 0;
}

static int up_on_body(weir_http_parser_t *p, const char *data, size_t len)
{
    upstream_t *u = weir_http_parser_data(p);
    if (u->shadow)
        return 0; /* a shadow's answer is read and dropped */
    stream_t *s = u->stream;
    s->bytes_sent += len;
    if (s->out_chunked)
        append_chunk(&s->down->out, data, len);
    else
        weir_buf_append(&s->down->out, data, len);
    return 0;
}

static int up_on_trailers(weir_http_parser_t *p, const weir_http_header_t *t, size_t n)
{
    upstream_t *u = weir_http_parser_data(p);
    if (u->shadow)
        return 0;
    stream_t *s = u->stream;
    if (s->out_chunked) {
        append_trailers(&s->down->out, t, n);
        s->resp_trailers_sent = true;
    }
    return 0;
}

static int up_on_complete(weir_http_parser_t *p)
{
    upstream_t *u = weir_http_parser_data(p);
    if (u->shadow) {
        u->shadow->resp_complete = true;
        return 0;
    }
    stream_t *s = u->stream;
    if (s->out_chunked && !s->resp_trailers_sent)
        weir_buf_append(&s->down->out, "0\r\n\r\n", 5);
    s->resp_complete = true;
    return 0;
}

/* ------------------------------------------------------------------ streams */

static void mirror_detach(stream_t *s);

static void stream_free(stream_t *s)
{
    active_streams--;
    mirror_detach(s);
    if (s->endpoint && s->endpoint_active)
        s->endpoint->active_requests--;
    weir_cluster_state_t *cs = s->cluster ? s->cluster->state : NULL;
    if (cs) {
        weir_cluster_gauges_t *g = weir_cluster_state_gauges(cs);
        if (s->wait_link.next) {
            weir_cluster_state_dequeue(cs, &s->wait_link);
            g->pending_requests--;
        }
        if (s->counted_active)
            g->active_requests--;
        if (s->counted_retry)
            g->active_retries--;
    }
    uv_timer_stop(&s->down->route_timer);
    weir_snapshot_unref(s->snap);
    weir_buf_free(&s->up_pending);
    weir_buf_free(&s->replay);
    weir_buf_free(&s->xff);
    free(s);
}

/* Ends the exchange: log, release the upstream, and make the connection ready for the next
 * request (or close it). */
static void stream_finish(stream_t *s)
{
    downstream_t *d = s->down;
    log_stream(s);
    if (s->up)
        up_release(s);
    d->stream = NULL;
    stream_free(s);
    if (d->close_after_response || d->read_eof) {
        down_flush(d);
        down_linger(d);
        return;
    }
    weir_http_parser_resume(d->parser);
    if (d->pending.len)
        set_timer(d, TIMER_NEXT, 0); /* parse the pipelined request outside this callback */
    else
        set_timer(d, TIMER_IDLE, options.idle_timeout_ms);
    down_update_reading(d);
}

/* Ends the exchange abnormally after the response started: the client connection is reset
 * rather than given a truncated message that looks complete. */
static void stream_abort(stream_t *s, const char *flag, const char *details)
{
    downstream_t *d = s->down;
    add_flag(s, flag);
    s->details = details;
    log_stream(s);
    if (s->up)
        up_close(s->up);
    d->stream = NULL;
    stream_free(s);
    down_close(d);
}

/* Runs after any I/O touched the stream: writes what is queued and finishes the exchange
 * when both directions are done. May free s. */
static void stream_after_io(stream_t *s)
{
    downstream_t *d = s->down;
    if (d->stream != s) /* aborted meanwhile */
        return;
    up_flush(s);
    down_flush(d);
    if (d->closing)
        return;
    if (s->req_complete && s->resp_complete) {
        stream_finish(s);
        return;
    }
    if (s->up)
        up_update_reading(s->up);
    down_update_reading(d);
}

/* ------------------------------------------------------------------ downstream requests */

static bool path_is_origin_form(const weir_http_head_t *h)
{
    return h->target_len > 0 && h->target[0] == '/';
}

/* x-forwarded-client-cert at a sidecar's inbound mTLS port, as Istio configures Envoy
 * (APPEND_FORWARD with Subject and URI): what came in, then this hop's element. On any other
 * connection the header is dropped (SANITIZE). */
static void append_xfcc(weir_buf_t *o, const weir_http_head_t *h, const downstream_t *d)
{
    const char *own = weir_identity_id();
    const char *peer = weir_tls_peer_spiffe_id(d->tls);
    weir_buf_append_str(o, "x-forwarded-client-cert: ");
    for (size_t i = 0; i < h->n_headers; i++) {
        const weir_http_header_t *f = &h->headers[i];
        if (!weir_http_name_is(f->name, f->name_len, "x-forwarded-client-cert"))
            continue;
        weir_buf_append(o, f->value, f->value_len);
        weir_buf_append(o, ",", 1);
    }
    weir_buf_appendf(o, "By=%s", own ? own : "");
    if (d->peer_hash[0])
        weir_buf_appendf(o, ";Hash=%s", d->peer_hash);
    weir_buf_append_str(o, ";Subject=\"\"");
    if (peer)
        weir_buf_appendf(o, ";URI=%s", peer);
    weir_buf_append(o, "\r\n", 2);
}

static void build_head_into(stream_t *s, const weir_route_t *route, weir_buf_t *o, bool shadow);

/* Writes the request head for the upstream into s->up_pending. */
static void build_upstream_head(stream_t *s, const weir_route_t *route)
{
    build_head_into(s, route, &s->up_pending, false);
}

/* Writes "host: <authority>", with Envoy's "-shadow" before any port for a mirror. */
static void append_host(weir_buf_t *o, const char *name, size_t nlen, const char *value,
                        size_t vlen, bool shadow)
{
    if (!shadow || !options.shadow_host_suffix) {
        append_header(o, name, nlen, value, vlen);
        return;
    }
    const char *colon = vlen && value[0] != '[' ? memchr(value, ':', vlen) : NULL;
    if (vlen && value[0] == '[') { /* [v6]:port */
        const char *bracket = memchr(value, ']', vlen);
        if (bracket && (size_t)(bracket - value) + 1 < vlen && bracket[1] == ':')
            colon = bracket + 1;
    }
    size_t host_len = colon ? (size_t)(colon - value) : vlen;
    weir_buf_append(o, name, nlen);
    weir_buf_append(o, ": ", 2);
    weir_buf_append(o, value, host_len);
    weir_buf_append_str(o, "-shadow");
    weir_buf_append(o, value + host_len, vlen - host_len);
    weir_buf_append(o, "\r\n", 2);
}

static void build_head_into(stream_t *s, const weir_route_t *route, weir_buf_t *o, bool shadow)
{
    const weir_http_head_t *h = s->req;
    weir_buf_t path = WEIR_BUF_INIT;
    bool rewritten = route && weir_route_rewrite_path(route, h->target, h->target_len, &path);
    weir_buf_append(o, h->method, h->method_len);
    weir_buf_append(o, " ", 1);
    if (rewritten)
        weir_buf_append(o, path.base, path.len);
    else
        weir_buf_append(o, h->target, h->target_len);
    weir_buf_append_str(o, " HTTP/1.1\r\n");
    const char *new_authority =
        route && route->rule->has_rewrite ? route->rule->rewrite.authority : NULL;
    if (new_authority == NULL && route && s->dest_index < route->rule->n_route)
        new_authority = route->rule->route[s->dest_index].headers.authority;
    const weir_header_ops_t *ops[2];
    size_t n_ops = header_ops(s, true, ops);
    bool host_written = false;
    for (size_t i = 0; i < h->n_headers; i++) {
        const weir_http_header_t *f = &h->headers[i];
        if (header_op_drops(ops, n_ops, f->name, f->name_len) ||
            weir_http_is_hop_by_hop(h, f->name, f->name_len) ||
            weir_http_name_is(f->name, f->name_len, "x-forwarded-for") ||
            weir_http_name_is(f->name, f->name_len, "x-forwarded-proto") ||
            weir_http_name_is(f->name, f->name_len, "x-request-id") ||
            weir_http_name_is(f->name, f->name_len, "x-envoy-original-path") ||
            weir_http_name_is(f->name, f->name_len, "x-forwarded-client-cert") ||
            (weir_http_name_is(f->name, f->name_len, "expect") && h->expect_continue))
            continue;
        if ((int)i == h->host_index) {
            if (new_authority)
                append_host(o, "host", 4, new_authority, strlen(new_authority), shadow);
            else
                append_host(o, f->name, f->name_len, f->value, f->value_len, shadow);
            host_written = true;
            continue;
        }
        append_header(o, f->name, f->name_len, f->value, f->value_len);
    }
    if (!host_written) { /* HTTP/1.0 without Host: name the service, as Envoy does */
        const char *host = new_authority ? new_authority : s->cluster->host;
        append_host(o, "host", 4, host, strlen(host), shadow);
    }
    if (s->xff.len)
        append_header(o, "x-forwarded-for", 15, s->xff.base, s->xff.len);
    weir_tls_t *tls = s->down->tls;
    weir_buf_append_str(o, tls ? "x-forwarded-proto: https\r\n" : "x-forwarded-proto: http\r\n");
    if (tls && s->down->kind == WEIR_LISTENER_INBOUND)
        append_xfcc(o, h, s->down);
    append_header(o, "x-request-id", 12, s->request_id, strlen(s->request_id));
    if (rewritten)
        append_header(o, "x-envoy-original-path", 21, h->target, h->target_len);
    if (route) { /* Istio sets include_request_attempt_count on every route */
        weir_buf_append_str(o, "x-envoy-attempt-count: ");
        append_uint(o, weir_retry_attempt(&s->retry));
        weir_buf_append(o, "\r\n", 2);
    }
    header_ops_write(o, ops, n_ops);
    if (s->req_chunked)
        weir_buf_append_str(o, "transfer-encoding: chunked\r\n");
    weir_buf_append(o, "\r\n", 2);
    weir_buf_free(&path);
}

static void prepare_request_fields(stream_t *s, downstream_t *d)
{
    const weir_http_head_t *h = s->req;
    const weir_http_header_t *rid = weir_http_head_find(h, "x-request-id");
    if (rid && rid->value_len > 0 && rid->value_len < sizeof(s->request_id))
        snprintf(s->request_id, sizeof(s->request_id), "%.*s", (int)rid->value_len, rid->value);
    else
        weir_uuid4(s->request_id);
    /* x-forwarded-for: all values joined, then the client's address when we are the edge */
    for (size_t i = 0; i < h->n_headers; i++) {
        const weir_http_header_t *f = &h->headers[i];
        if (!weir_http_name_is(f->name, f->name_len, "x-forwarded-for"))
            continue;
        if (s->xff.len)
            weir_buf_append(&s->xff, ",", 1);
        weir_buf_append(&s->xff, f->value, f->value_len);
    }
    if (options.use_remote_address) {
        if (s->xff.len)
            weir_buf_append(&s->xff, ",", 1);
        weir_buf_append_str(&s->xff, d->remote_ip);
    }
}

static const weir_labels_t no_labels;

/* Fills an ad-hoc target for addr; takes a pool reference. */
static void adhoc_init(adhoc_target_t *t, const char *cluster_name, const struct sockaddr_storage *addr)
{
    char ip[INET6_ADDRSTRLEN], host_port[INET6_ADDRSTRLEN + 8];
    sockaddr_to_text(addr, ip, sizeof(ip), host_port, sizeof(host_port));
    snprintf(t->name, sizeof(t->name), "%s", cluster_name);
    t->cluster.name = t->name;
    t->cluster.host = "";
    t->cluster.endpoints = &t->endpoint;
    t->cluster.n_endpoints = 1;
    weir_endpoint_t *ep = &t->endpoint;
    ep->address = weir_mem_strdup(ip);
    ep->host_port = weir_mem_strdup(host_port);
    ep->port = addr->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)addr)->sin6_port)
                                           : ntohs(((const struct sockaddr_in *)addr)->sin_port);
    memcpy(&ep->addr, addr, sizeof(*addr));
    ep->addr_len = addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                               : sizeof(struct sockaddr_in);
    ep->labels = &no_labels;
    ep->service_account = "default";
    ep->pool = weir_upstream_pool_acquire(host_port, (const struct sockaddr *)addr, ep->addr_len);
}

static void adhoc_free(adhoc_target_t *t)
{
    if (t == NULL)
        return;
    weir_upstream_pool_unref(t->endpoint.pool);
    free(t->endpoint.address);
    free(t->endpoint.host_port);
    free(t);
}

/* The app behind an inbound port: 127.0.0.1:<port>, one target per port for the process. */
static adhoc_target_t *inbound_target(uint32_t port)
{
    static adhoc_target_t **targets;
    static size_t n_targets;
    for (size_t i = 0; i < n_targets; i++) {
        if (targets[i]->endpoint.port == port)
            return targets[i];
    }
    adhoc_target_t *t = weir_mem_calloc(1, sizeof(*t));
    struct sockaddr_storage ss;
    uv_ip4_addr("127.0.0.1", (int)port, (struct sockaddr_in *)&ss);
    char name[48];
    snprintf(name, sizeof(name), "inbound|%u||", port);
    adhoc_init(t, name, &ss);
    targets = weir_mem_realloc(targets, (n_targets + 1) * sizeof(*targets));
    targets[n_targets++] = t;
    return t;
}

static adhoc_target_t *passthrough_target(downstream_t *d)
{
    if (d->passthrough == NULL) {
        d->passthrough = weir_mem_calloc(1, sizeof(*d->passthrough));
        adhoc_init(d->passthrough, "PassthroughCluster", &d->orig_dst);
    }
    return d->passthrough;
}

/* Sends the request to one endpoint chosen without load balancing. */
static void forward_to(stream_t *s, adhoc_target_t *t)
{
    s->cluster = &t->cluster;
    s->endpoint = &t->endpoint;
    s->endpoint_active = true;
    t->endpoint.active_requests++;
    t->endpoint.total_requests++;
    build_upstream_head(s, NULL);
    if (s->req->expect_continue && !s->req_complete)
        weir_buf_append_str(&s->down->out, "HTTP/1.1 100 Continue\r\n\r\n");
    up_attach(s, &t->endpoint);
}

static void abort_or_forward(stream_t *s);
static void start_deadlines(stream_t *s);
static void mirror_start(stream_t *s);

/* A fault without a percentage injects nothing (S7). */
static bool fault_hits(const weir_percent_t *p)
{
    return p->set && weir_lb_percent_hits(p->value, weir_random_u32());
}

static void route_request(stream_t *s)
{
    downstream_t *d = s->down;
    const weir_http_head_t *h = s->req;
    const weir_listener_spec_t *spec =
        d->kind == WEIR_LISTENER_GATEWAY ? weir_snapshot_listener(s->snap, d->port) : NULL;
    const weir_http_header_t *host = h->host_index >= 0 ? &h->headers[h->host_index] : NULL;
    weir_route_request_t rr = {
        .method = h->method,
        .method_len = h->method_len,
        .path = h->target,
        .path_len = h->target_len,
        .authority = host ? host->value : "",
        .authority_len = host ? host->value_len : 0,
        .scheme = "http",
        .headers = h->headers,
        .n_headers = h->n_headers,
    };
    if (h->method_len == 7 && memcmp(h->method, "CONNECT", 7) == 0) {
        /* tunnels are not configured on any route: refuse rather than forward blindly */
        d->close_after_response = true;
        local_reply(s, 403, "-", "upgrade_failed", NULL, 0, NULL);
        return;
    }
    if (!path_is_origin_form(h)) {
        local_reply(s, 404, "NR", "route_not_found", NULL, 0, NULL);
        return;
    }
    if (d->kind == WEIR_LISTENER_INBOUND) {
        forward_to(s, inbound_target(d->orig_port));
        return;
    }
    const weir_route_table_t *table = NULL;
    if (d->kind == WEIR_LISTENER_OUTBOUND) {
        table = weir_snapshot_outbound_routes(s->snap, d->orig_port);
        if (table == NULL || weir_router_find_vhost(table, rr.authority, rr.authority_len) == NULL) {
            forward_to(s, passthrough_target(d)); /* a host no service declares: ALLOW_ANY */
            return;
        }
    } else if (spec == NULL) {
        local_reply(s, 404, "NR", "route_not_found", NULL, 0, NULL);
        return;
    } else {
        table = spec->routes;
    }
    if (spec && spec->https_redirect) {
        weir_buf_t loc = WEIR_BUF_INIT;
        weir_buf_append_str(&loc, "location: https://");
        /* the https URL gets the default port: drop the request's (after any [v6]) */
        size_t alen = rr.authority_len;
        const char *host_end = rr.authority;
        if (alen && rr.authority[0] == '[') {
            const char *bracket = memchr(rr.authority, ']', alen);
            host_end = bracket ? bracket : rr.authority;
        }
        const char *colon = memchr(host_end, ':', alen - (size_t)(host_end - rr.authority));
        if (colon)
            alen = (size_t)(colon - rr.authority);
        weir_buf_append(&loc, rr.authority, alen);
        weir_buf_append(&loc, rr.path, rr.path_len);
        weir_buf_append_str(&loc, "\r\n");
        local_reply(s, 301, "-", "https_redirect", NULL, 0, loc.base);
        weir_buf_free(&loc);
        return;
    }
    const weir_route_t *route = weir_router_match(table, &rr);
    if (route == NULL) {
        local_reply(s, 404, "NR", "route_not_found", NULL, 0, NULL);
        return;
    }
    s->route = route;
    const weir_http_route_t *rule = route->rule;
    if (rule->action == WEIR_ACTION_REDIRECT) {
        weir_buf_t loc = WEIR_BUF_INIT;
        weir_buf_append_str(&loc, "location: ");
        weir_route_redirect_location(route, &rr, d->port, false, &loc);
        weir_buf_append_str(&loc, "\r\n");
        local_reply(s, rule->redirect.redirect_code, "-", "direct_response", NULL, 0, loc.base);
        weir_buf_free(&loc);
        return;
    }
    if (rule->action == WEIR_ACTION_DIRECT_RESPONSE) {
        local_reply(s, rule->direct.status, "-", "direct_response", rule->direct.body,
                    rule->direct.body_len, NULL);
        return;
    }
    /* Envoy's fault filter: a delay first, then an abort, each with its own percentage */
    if (rule->fault.has_delay && fault_hits(&rule->fault.delay_percent)) {
        add_flag(s, "DI");
        set_timer(d, TIMER_FAULT_DELAY, (uint64_t)rule->fault.delay_ms);
        return;
    }
    abort_or_forward(s);
}

/* After any fault delay: the fault abort, else the destination. */
static void abort_or_forward(stream_t *s)
{
    const weir_route_t *route = s->route;
    const weir_fault_t *f = &route->rule->fault;
    if (f->has_abort && fault_hits(&f->abort_percent)) {
        static const char body[] = "fault filter abort";
        if (f->abort_http_status > 0) {
            local_reply(s, f->abort_http_status, "FI", "fault_filter_abort", body,
                        sizeof(body) - 1, NULL);
        } else { /* a gRPC status travels in a 200 */
            char hdr[64];
            snprintf(hdr, sizeof(hdr), "grpc-status: %d\r\n", f->abort_grpc_status);
            local_reply(s, 200, "FI", "fault_filter_abort", NULL, 0, hdr);
        }
        return;
    }
    /* the weighted cluster is chosen once per request; retries stay in it */
    s->dest_index = weir_route_pick(route, weir_random_u32());
    weir_cluster_t *c = route->clusters[s->dest_index];
    s->cluster = c;
    if (c == NULL || c->service == NULL) {
        local_reply(s, 503, "NC", "cluster_not_found", NULL, 0, NULL);
        return;
    }
    weir_retry_init(&s->retry, &route->retry_policy);
    mirror_start(s);
    start_attempt(s);
}

/* One try: an endpoint (another than those tried, when the policy says so and one is left),
 * the head with this attempt's number, what the body has sent so far, and a connection. */
static void start_attempt(stream_t *s)
{
    weir_cluster_t *c = s->cluster;
    s->retry_pending = false;
    if (c->state && !s->counted_active) {
        weir_cluster_gauges_t *g = weir_cluster_state_gauges(c->state);
        if (g->active_requests >= weir_cluster_state_limits(c->state)->max_requests) {
            weir_cluster_state_counters(c->state)->rq_overflow++;
            reply_overflow(s);
            return;
        }
        g->active_requests++;
        weir_cluster_state_counters(c->state)->rq_total++;
        s->counted_active = true;
    }
    const weir_endpoint_t *const *excluded =
        s->route->retry_policy.retry_other_host ? s->tried : NULL;
    weir_endpoint_t *ep =
        weir_cluster_pick(c, excluded, excluded ? s->n_tried : 0, weir_random_u32(), weir_random_u32());
    if (ep == NULL && s->n_tried) /* every host was tried: any will do */
        ep = weir_cluster_pick(c, NULL, 0, weir_random_u32(), weir_random_u32());
    if (ep == NULL) {
        static const char body[] = "no healthy upstream";
        local_reply(s, 503, "UH", "no_healthy_upstream", body, sizeof(body) - 1, NULL);
        return;
    }
    s->endpoint = ep;
    s->endpoint_active = true;
    ep->active_requests++;
    ep->total_requests++;
    /* the first try sends what waited for it (a fault delay); a retry sends the body again */
    weir_buf_t waiting = s->up_pending;
    s->up_pending = (weir_buf_t)WEIR_BUF_INIT;
    build_upstream_head(s, s->route);
    if (weir_retry_attempt(&s->retry) == 1)
        weir_buf_append(&s->up_pending, waiting.base, waiting.len);
    else
        weir_buf_append(&s->up_pending, s->replay.base, s->replay.len);
    weir_buf_free(&waiting);
    if (s->req->expect_continue && !s->req_complete && !s->continue_sent) {
        weir_buf_append_str(&s->down->out, "HTTP/1.1 100 Continue\r\n\r\n");
        s->continue_sent = true;
    }
    up_attach(s, ep);
    if (s->req_complete && !s->local_reply)
        start_deadlines(s);
}

static int down_on_head(weir_http_parser_t *p, weir_http_head_t *h)
{
    downstream_t *d = weir_http_parser_data(p);
    stream_t *s = weir_mem_calloc(1, sizeof(*s));
    active_streams++;
    s->down = d;
    s->req = h;
    s->snap = weir_snapshot_ref(weir_snapshot_current());
    s->start_ms = weir_now_ms();
    s->start_us = weir_wall_us();
    s->req_chunked = h->chunked;
    weir_retry_init(&s->retry, &no_retries);
    s->head_request = h->method_len == 4 && memcmp(h->method, "HEAD", 4) == 0;
    s->req_complete = !h->has_body;
    d->stream = s;
    set_timer(d, TIMER_STREAM, options.stream_idle_timeout_ms);
    prepare_request_fields(s, d);
    route_request(s);
    return 0;
}

/* Envoy buffers a request body for retries up to its buffer limit; a longer body is sent on
 * without a copy and its request is not retried. */
#define REPLAY_MAX (1024 * 1024)

static void mirror_body(stream_t *s, const char *framed, size_t len);

static void keep_for_replay(stream_t *s, const char *framed, size_t len)
{
    if (s->shadows)
        mirror_body(s, framed, len);
    if (s->replay_overflow || s->route == NULL || s->route->retry_policy.num_retries == 0)
        return;
    if (s->replay.len + len > REPLAY_MAX) {
        s->replay_overflow = true;
        weir_buf_free(&s->replay);
        return;
    }
    weir_buf_append(&s->replay, framed, len);
}

static int down_on_body(weir_http_parser_t *p, const char *data, size_t len)
{
    downstream_t *d = weir_http_parser_data(p);
    stream_t *s = d->stream;
    s->bytes_received += len;
    if (s->local_reply)
        return 0;
    size_t before = s->up_pending.len;
    if (s->req_chunked)
        append_chunk(&s->up_pending, data, len);
    else
        weir_buf_append(&s->up_pending, data, len);
    keep_for_replay(s, s->up_pending.base + before, s->up_pending.len - before);
    return 0;
}

static int down_on_trailers(weir_http_parser_t *p, const weir_http_header_t *t, size_t n)
{
    downstream_t *d = weir_http_parser_data(p);
    stream_t *s = d->stream;
    if (s->local_reply || !s->req_chunked)
        return 0;
    size_t before = s->up_pending.len;
    append_trailers(&s->up_pending, t, n);
    keep_for_replay(s, s->up_pending.base + before, s->up_pending.len - before);
    s->req_trailers_sent = true;
    return 0;
}

static int down_on_complete(weir_http_parser_t *p)
{
    downstream_t *d = weir_http_parser_data(p);
    stream_t *s = d->stream;
    if (s->req_chunked && !s->req_trailers_sent && !s->local_reply) {
        weir_buf_append(&s->up_pending, "0\r\n\r\n", 5);
        keep_for_replay(s, "0\r\n\r\n", 5);
    }
    s->req_complete = true;
    for (shadow_t *sh = s->shadows; sh; sh = sh->next)
        sh->req_complete = true;
    start_deadlines(s);
    return 0;
}

static const weir_http_parser_cbs_t down_cbs = {down_on_head, down_on_body, down_on_trailers,
                                                down_on_complete};

/* ------------------------------------------------------------------ downstream connection */

static void down_handle_closed(uv_handle_t *h)
{
    downstream_t *d = h->data;
    if (--d->open_handles > 0)
        return;
    weir_http_parser_free(d->parser);
    weir_buf_free(&d->pending);
    weir_buf_free(&d->out);
    weir_buf_free(&d->sniff);
    weir_tls_free(d->tls);
    adhoc_free(d->passthrough);
    free(d);
}

static void down_close(downstream_t *d)
{
    if (d->closing)
        return;
    d->closing = true;
    if (d->stream) {
        stream_t *s = d->stream;
        if (!s->resp_complete || !s->req_complete) {
            if (s->flags[0] == '\0')
                add_flag(s, "DC");
            if (s->details == NULL)
                s->details = "downstream_remote_disconnect";
        }
        log_stream(s);
        if (s->up)
            up_close(s->up);
        d->stream = NULL;
        stream_free(s);
    }
    if (d->raw_up) {
        upstream_t *u = d->raw_up;
        d->raw_up = NULL;
        u->raw_down = NULL;
        up_close(u);
    }
    if (d->prev)
        d->prev->next = d->next;
    else
        all_downstreams = d->next;
    if (d->next)
        d->next->prev = d->prev;
    uv_close((uv_handle_t *)&d->tcp, down_handle_closed);
    uv_close((uv_handle_t *)&d->timer, down_handle_closed);
    uv_close((uv_handle_t *)&d->route_timer, down_handle_closed);
}

static void down_read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);
static void down_input(downstream_t *d, const char *data, size_t len);

/* The client went away (or half-closed). */
static void down_eof(downstream_t *d)
{
    d->read_eof = true;
    if (d->reading) {
        uv_read_stop((uv_stream_t *)&d->tcp);
        d->reading = false;
    }
    stream_t *s = d->stream;
    if (d->lingering || s == NULL || !s->req_complete) {
        down_close(d);
        return;
    }
    d->close_after_response = true; /* half-closed after a full request: answer, then close */
}

static void down_flush_cipher(downstream_t *d)
{
    weir_buf_t b = WEIR_BUF_INIT;
    if (!d->closing && weir_tls_take_cipher(d->tls, &b) > 0 &&
        write_buf((uv_stream_t *)&d->tcp, &b, down_write_done) < 0)
        down_close(d);
    weir_buf_free(&b);
}

/* Inbound mTLS: the server side of the handshake with the mesh identity. Returns 0, or -1
 * when the connection was closed (no certificate to serve with). */
static int down_start_tls(downstream_t *d, weir_tls_config_t *cfg)
{
    char err[128] = "no mesh certificate (--certs)";
    d->tls = cfg ? weir_tls_new(cfg, NULL, err, sizeof(err)) : NULL;
    if (d->tls == NULL) {
        weir_log_warn("%s: cannot accept mTLS: %s", d->remote, err);
        down_close(d);
        return -1;
    }
    set_timer(d, TIMER_HANDSHAKE, options.connect_timeout_ms);
    return 0;
}

/* Ciphertext from an inbound mTLS client: every decrypted byte goes to the request parser. A
 * failed handshake (a plain-text client on a STRICT port, a certificate from another CA, an
 * expired one, a wrong trust domain, an old TLS version) closes the connection after the
 * alert, without an HTTP answer. */
static void down_tls_input(downstream_t *d, const char *data, size_t len)
{
    size_t off = 0;
    for (;;) {
        size_t fed = weir_tls_feed_cipher(d->tls, data + off, len - off);
        off += fed;
        for (;;) {
            size_t n = 0;
            weir_tls_status_t st = weir_tls_read(d->tls, plain_buf, sizeof(plain_buf), &n);
            if (!d->handshake_done && weir_tls_state(d->tls) == WEIR_TLS_OPEN) {
                d->handshake_done = true;
                if (weir_tls_peer_cert_sha256(d->tls, NULL, d->peer_hash) != 0)
                    d->peer_hash[0] = '\0';
                set_timer(d, TIMER_IDLE, options.idle_timeout_ms);
            }
            if (st == WEIR_TLS_DONE) {
                down_input(d, plain_buf, n);
                if (d->closing || d->lingering)
                    return;
                continue;
            }
            if (st == WEIR_TLS_WANT_INPUT)
                break;
            if (st == WEIR_TLS_ERROR)
                weir_log_info("%s: TLS from %s failed: %s", d->local, d->remote,
                              weir_tls_reason(d->tls));
            down_flush_cipher(d); /* the alert or close_notify */
            if (st == WEIR_TLS_ERROR) {
                d->close_after_response = true;
                d->read_eof = true;
                down_linger(d);
            } else {
                down_eof(d);
            }
            return;
        }
        if (off >= len || fed == 0)
            break;
    }
    down_flush_cipher(d);
}

static void down_update_reading(downstream_t *d)
{
    if (d->closing || d->read_eof)
        return;
    bool want = true;
    stream_t *s = d->stream;
    if (d->lingering) {
        want = true;
    } else if (s == NULL) {
        want = d->pending.len == 0; /* a queued pipelined request is parsed first */
    } else if (s->req_complete) {
        /* Reading goes on until bytes of a next (pipelined) request actually arrive: they
         * wait in d->pending, and only then does reading stop. Stopping at once would cost
         * two epoll_ctl calls per request on keep-alive connections, and a client that goes
         * away is noticed at once. */
        want = d->pending.len == 0;
    } else if (!s->local_reply) {
        /* also while no connection is attached (connecting, a fault delay, a retry back-off):
         * what waits in up_pending counts */
        size_t backlog =
            s->up_pending.len + (s->up && s->up->connected ? queued(&s->up->tcp) : 0);
        want = d->reading ? backlog < WEIR_PROXY_HIGH_WATERMARK
                          : backlog <= WEIR_PROXY_LOW_WATERMARK;
    }
    if (want && !d->reading) {
        if (uv_read_start((uv_stream_t *)&d->tcp, alloc_cb, down_read_cb) == 0)
            d->reading = true;
    } else if (!want && d->reading) {
        uv_read_stop((uv_stream_t *)&d->tcp);
        d->reading = false;
    }
}

static void reply_codec_error(downstream_t *d)
{
    int status = weir_http_parser_error_status(d->parser);
    weir_log_debug("%s: malformed request: %s", d->remote, weir_http_parser_error_reason(d->parser));
    stream_t *s = d->stream;
    if (s && s->resp_started) {
        stream_abort(s, "DPE", "http1.codec_error");
        return;
    }
    if (s) {
        if (s->up)
            up_close(s->up);
        s->status = status;
        add_flag(s, "DPE");
        s->details = "http1.codec_error";
        log_stream(s);
        d->stream = NULL;
        stream_free(s);
    } else {
        log_codec_error(d, status);
    }
    weir_buf_appendf(&d->out,
                     "HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\ndate: %s\r\n"
                     "server: %s\r\n\r\n",
                     status, weir_http_reason_phrase(status), weir_http_date(),
                     options.server_name);
    down_flush(d);
    d->close_after_response = true;
    down_linger(d);
}

/* Request bytes (decrypted, if the connection has TLS). */
static void down_input(downstream_t *d, const char *data, size_t len)
{
    if (d->stream == NULL && d->timer_mode == TIMER_IDLE)
        set_timer(d, TIMER_HEADERS, options.request_headers_timeout_ms);
    else if (d->stream && d->timer_mode == TIMER_STREAM)
        set_timer(d, TIMER_STREAM, options.stream_idle_timeout_ms);
    down_process(d, data, len);
}

static void down_process(downstream_t *d, const char *data, size_t len)
{
    while (len > 0 && !d->closing && !d->lingering) {
        stream_t *s = d->stream;
        if (s && s->req_complete) { /* pipelined: keep it for after this exchange */
            weir_buf_append(&d->pending, data, len);
            break;
        }
        size_t used = 0;
        weir_http_result_t r = weir_http_parser_execute(d->parser, data, len, &used);
        data += used;
        len -= used;
        if (r == WEIR_HTTP_ERROR) {
            reply_codec_error(d);
            return;
        }
        if (r == WEIR_HTTP_ABORTED)
            return;
        if (r == WEIR_HTTP_NEED_MORE)
            break;
        /* PAUSED: a request completed; anything left is the next one */
        if (len)
            weir_buf_append(&d->pending, data, len);
        break;
    }
    if (d->closing)
        return;
    if (d->stream)
        stream_after_io(d->stream);
    else
        down_flush(d);
    if (!d->closing)
        down_update_reading(d);
}

static void relay_down_read(downstream_t *d, ssize_t nread, const uv_buf_t *buf);

/* A gateway TLS port: the ClientHello's SNI picks the server (TERMINATE: its certificate) or
 * the route (PASSTHROUGH: the TLS bytes go, untouched, to an endpoint of the route's
 * cluster). Called with each read until the ClientHello is whole. */
static void gateway_tls_start(downstream_t *d)
{
    weir_sni_result_t r =
        weir_sni_parse((const unsigned char *)d->sniff.base, d->sniff.len, d->sni, sizeof(d->sni));
    if (r == WEIR_SNI_NEED_MORE && d->sniff.len < WEIR_SNI_MAX_HELLO)
        return;
    if (r != WEIR_SNI_FOUND)
        d->sni[0] = '\0';
    const weir_listener_spec_t *spec = weir_snapshot_listener(weir_snapshot_current(), d->port);
    if (r == WEIR_SNI_NOT_TLS || r == WEIR_SNI_NEED_MORE || spec == NULL) {
        weir_log_debug("%s: not a TLS ClientHello on a TLS port: closed", d->remote);
        down_close(d);
        return;
    }
    const char *sni = d->sni[0] ? d->sni : NULL;
    d->tls_decided = true;
    if (spec->mode == WEIR_LISTENER_TLS_PASSTHROUGH) {
        const weir_sni_route_t *rt = weir_listener_pick_sni_route(spec, sni);
        weir_cluster_t *c = NULL;
        if (rt && rt->n_clusters) {
            uint32_t total = rt->cumulative_weight[rt->n_clusters - 1];
            uint32_t pick = total ? weir_random_u32() % total : 0;
            size_t i = 0;
            while (i + 1 < rt->n_clusters && pick >= rt->cumulative_weight[i])
                i++;
            c = rt->clusters[i];
        }
        weir_endpoint_t *ep =
            c ? weir_cluster_pick(c, NULL, 0, weir_random_u32(), weir_random_u32()) : NULL;
        if (ep == NULL) {
            weir_log_debug("%s: no route or endpoint for SNI %s: closed", d->remote, d->sni);
            down_close(d);
            return;
        }
        relay_start_to(d, ep->pool);
        return;
    }
    const weir_listener_server_t *srv = weir_listener_pick_server(spec, sni);
    if (srv == NULL || srv->tls == NULL) {
        weir_log_debug("%s: no server for SNI %s: closed", d->remote, d->sni);
        down_close(d);
        return;
    }
    if (down_start_tls(d, srv->tls) != 0)
        return;
    weir_buf_t first = d->sniff;
    d->sniff = (weir_buf_t)WEIR_BUF_INIT;
    down_tls_input(d, first.base, first.len);
    weir_buf_free(&first);
}

static void down_read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    downstream_t *d = h->data;
    if (nread == 0)
        return;
    if (d->raw_up) {
        relay_down_read(d, nread, buf);
        return;
    }
    if (nread < 0) {
        down_eof(d);
        return;
    }
    if (d->lingering)
        return; /* dropping whatever the client still sends */
    const char *data = buf->base;
    size_t len = (size_t)nread;
    if (!d->tls_decided && d->kind == WEIR_LISTENER_GATEWAY) {
        weir_buf_append(&d->sniff, data, len);
        gateway_tls_start(d);
        return;
    }
    if (!d->tls_decided) {
        /* PERMISSIVE: a TLS ClientHello or plain text, told apart by the first bytes */
        weir_buf_append(&d->sniff, data, len);
        int hello = weir_tls_looks_like_client_hello(d->sniff.base, d->sniff.len);
        if (hello < 0)
            return;
        d->tls_decided = true;
        if (hello == 1 && down_start_tls(d, weir_identity_server()) != 0)
            return;
        weir_buf_t first = d->sniff;
        d->sniff = (weir_buf_t)WEIR_BUF_INIT;
        if (d->tls)
            down_tls_input(d, first.base, first.len);
        else
            down_input(d, first.base, first.len);
        weir_buf_free(&first);
        return;
    }
    if (d->tls)
        down_tls_input(d, data, len);
    else
        down_input(d, data, len);
}

static void timer_cb(uv_timer_t *t)
{
    downstream_t *d = t->data;
    timer_mode_t mode = d->timer_mode;
    d->timer_mode = TIMER_NONE;
    stream_t *s = d->stream;
    switch (mode) {
    case TIMER_NEXT: {
        /* parse the pipelined request saved in pending */
        weir_buf_t pending = d->pending;
        d->pending = (weir_buf_t)WEIR_BUF_INIT;
        set_timer(d, TIMER_HEADERS, options.request_headers_timeout_ms);
        down_process(d, pending.base, pending.len);
        weir_buf_free(&pending);
        return;
    }
    case TIMER_HEADERS:
        if (s == NULL) {
            weir_buf_appendf(&d->out,
                             "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n"
                             "connection: close\r\n\r\n");
            log_codec_error(d, 408);
            down_flush(d);
            d->close_after_response = true;
            down_linger(d);
        }
        return;
    case TIMER_CONNECT:
        if (s && s->up && !s->up->tls_ready) {
            if (s->up->connected)
                snprintf(s->upstream_failure, sizeof(s->upstream_failure),
                         "TLS_error:handshake timeout");
            up_close(s->up);
            if (attempt_failed(s, WEIR_RETRY_OUTCOME_CONNECT_FAILURE, 503, "UF",
                               "upstream_reset_before_response_started{connection_timeout}",
                               "connection timeout"))
                stream_after_io(s);
        }
        return;
    case TIMER_STREAM:
        if (s && !s->resp_started) {
            static const char body[] = "stream timeout";
            if (s->up)
                up_close(s->up);
            local_reply(s, 408, "SI", "stream_idle_timeout", body, sizeof(body) - 1, NULL);
            d->close_after_response = true;
            s->req_complete = true;
            stream_after_io(s);
        } else if (s) {
            stream_abort(s, "SI", "stream_idle_timeout");
        }
        return;
    case TIMER_RETRY:
        if (s && s->retry_pending && !s->resp_started)
            start_attempt(s);
        if (d->stream == s && s)
            stream_after_io(s);
        return;
    case TIMER_FAULT_DELAY:
        if (s && !s->resp_started) {
            abort_or_forward(s);
            stream_after_io(s);
        }
        return;
    case TIMER_IDLE:
    case TIMER_LINGER:
    case TIMER_HANDSHAKE:
        down_close(d);
        return;
    case TIMER_NONE:
        return;
    }
}

static void set_timer(downstream_t *d, timer_mode_t mode, uint64_t ms)
{
    if (d->closing)
        return;
    d->timer_mode = mode;
    /* a timeout of 0 is "no timeout"; a wait of 0 (the next request, a retry back-off drawn
     * as 0, a fault delay) still has to happen */
    bool is_wait = mode == TIMER_NEXT || mode == TIMER_RETRY || mode == TIMER_FAULT_DELAY;
    if (ms == 0 && !is_wait) {
        uv_timer_stop(&d->timer);
        return;
    }
    uv_timer_start(&d->timer, timer_cb, ms, 0);
}

static void on_connection(uv_stream_t *server, int status)
{
    listener_t *l = server->data;
    if (status < 0)
        return;
    downstream_t *d = weir_mem_calloc(1, sizeof(*d));
    uv_tcp_init(weir_loop(), &d->tcp);
    uv_timer_init(weir_loop(), &d->timer);
    uv_timer_init(weir_loop(), &d->route_timer);
    d->tcp.data = d;
    d->timer.data = d;
    d->route_timer.data = d;
    d->open_handles = 3;
    d->port = l->port;
    d->kind = l->opts.kind;
    d->tls_decided = true;
    if (d->kind == WEIR_LISTENER_GATEWAY) {
        const weir_listener_spec_t *spec = weir_snapshot_listener(weir_snapshot_current(), l->port);
        d->tls_decided = spec == NULL || spec->mode == WEIR_LISTENER_PLAIN_HTTP;
    }
    d->parser = weir_http_parser_new(WEIR_HTTP_REQUEST, &down_cbs, d);
    d->next = all_downstreams;
    if (all_downstreams)
        all_downstreams->prev = d;
    all_downstreams = d;
    if (uv_accept(server, (uv_stream_t *)&d->tcp) < 0) {
        down_close(d);
        return;
    }
    uv_tcp_nodelay(&d->tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&d->tcp, (struct sockaddr *)&ss, &len) == 0)
        sockaddr_to_text(&ss, d->remote_ip, sizeof(d->remote_ip), d->remote, sizeof(d->remote));
    len = sizeof(ss);
    if (uv_tcp_getsockname(&d->tcp, (struct sockaddr *)&ss, &len) == 0)
        sockaddr_to_text(&ss, NULL, 0, d->local, sizeof(d->local));
    if (d->kind != WEIR_LISTENER_GATEWAY) {
        int rc = l->opts.original_dst ? l->opts.original_dst(&d->tcp, &d->orig_dst) : -1;
        d->orig_port = rc < 0 ? 0
                       : d->orig_dst.ss_family == AF_INET6
                           ? ntohs(((struct sockaddr_in6 *)&d->orig_dst)->sin6_port)
                           : ntohs(((struct sockaddr_in *)&d->orig_dst)->sin_port);
        /* Not redirected (someone connected to the capture port itself): relaying it would
         * loop back into this listener, so Istio drops it; so do we. */
        if (rc < 0 || d->orig_port == l->port || d->orig_port == l->opts.other_capture_port) {
            weir_log_debug("%s: connection to the capture port itself (original port %u): "
                           "closed",
                           d->remote, d->orig_port);
            down_close(d);
            return;
        }
        sockaddr_to_text(&d->orig_dst, NULL, 0, d->local, sizeof(d->local));
        if (d->kind == WEIR_LISTENER_INBOUND) {
            /* PeerAuthentication for the port: STRICT starts the handshake at once,
             * PERMISSIVE decides on the first bytes, DISABLE stays plain */
            weir_mtls_mode_t mode = weir_snapshot_inbound_mtls(weir_snapshot_current(), d->orig_port);
            d->tls_decided = mode != WEIR_MTLS_PERMISSIVE;
            if (mode == WEIR_MTLS_STRICT && down_start_tls(d, weir_identity_server()) != 0)
                return;
        }
        if (d->kind == WEIR_LISTENER_OUTBOUND &&
            (weir_snapshot_outbound_routes(weir_snapshot_current(), d->orig_port) == NULL ||
             weir_snapshot_outbound_opaque(weir_snapshot_current(),
                                           (const struct sockaddr *)&d->orig_dst, d->orig_port))) {
            relay_start(d);
            return;
        }
    }
    if (d->timer_mode != TIMER_HANDSHAKE)
        set_timer(d, TIMER_IDLE, options.idle_timeout_ms);
    down_update_reading(d);
}

/* ------------------------------------------------------------------ mirrors (shadows) */

/* A shadow may hold back this much of the request (unsent, or queued in its socket) before
 * it is abandoned: the primary never waits for it, and memory stays bounded. */
#define SHADOW_MAX_BACKLOG (1024 * 1024) /* Envoy's default per-connection buffer limit */
#define SHADOW_BURST_BACKLOG (4 * 1024 * 1024)
#define SHADOW_BURSTS 8 /* shadows allowed past SHADOW_MAX_BACKLOG at once */
#define SHADOWS_MAX_IN_FLIGHT 1024

typedef enum { SHADOW_DONE, SHADOW_FAILED, SHADOW_ABANDONED } shadow_end_t;

static size_t shadows_in_flight, shadows_bursting;

static const void *up_owner(const upstream_t *u)
{
    return u->shadow ? (const void *)u->shadow : (const void *)u->stream;
}

static weir_cluster_counters_t *shadow_counters(const shadow_t *sh)
{
    return sh->cluster->state ? weir_cluster_state_counters(sh->cluster->state) : NULL;
}

static void shadow_freed(uv_handle_t *h)
{
    shadow_t *sh = h->data;
    weir_buf_free(&sh->pending);
    weir_snapshot_unref(sh->snap);
    free(sh);
}

/* The shadow's exchange is over: its connection goes back to the pool when it finished
 * cleanly, and it leaves its primary's list. */
static void shadow_finish(shadow_t *sh, shadow_end_t end)
{
    if (sh->finished)
        return;
    sh->finished = true;
    shadows_in_flight--;
    if (sh->burst)
        shadows_bursting--;
    if (end != SHADOW_DONE)
        weir_log_debug("shadow to %s %s", sh->ep->host_port,
                       end == SHADOW_FAILED ? "failed" : "abandoned: it fell behind");
    weir_cluster_counters_t *cnt = shadow_counters(sh);
    if (cnt && end == SHADOW_FAILED)
        cnt->shadow_rq_failed++;
    if (cnt && end == SHADOW_ABANDONED)
        cnt->shadow_abandoned++;
    upstream_t *u = sh->up;
    if (u) {
        sh->up = NULL;
        u->shadow = NULL;
        if (end == SHADOW_DONE && sh->req_complete && u->reusable && u->tls_ready && !u->closing) {
            up_park(u, sh->cluster);
        } else {
            up_close(u);
        }
    }
    if (sh->primary) {
        for (shadow_t **pp = &sh->primary->shadows; *pp; pp = &(*pp)->next) {
            if (*pp == sh) {
                *pp = sh->next;
                break;
            }
        }
        sh->primary = NULL;
    }
    uv_timer_stop(&sh->timer);
    uv_close((uv_handle_t *)&sh->timer, shadow_freed);
}

static void shadow_count_status(shadow_t *sh, int status)
{
    weir_cluster_counters_t *cnt = shadow_counters(sh);
    if (cnt == NULL)
        return;
    if (status < 300)
        cnt->shadow_rq_2xx++;
    else if (status < 400)
        cnt->shadow_rq_3xx++;
    else if (status < 500)
        cnt->shadow_rq_4xx++;
    else
        cnt->shadow_rq_5xx++;
}

static void shadow_flush(shadow_t *sh)
{
    upstream_t *u = sh->up;
    if (u == NULL || !u->tls_ready || u->closing || sh->pending.len == 0)
        return;
    if (send_on((uv_stream_t *)&u->tcp, u->tls, &sh->pending, up_write_done) < 0)
        shadow_finish(sh, SHADOW_FAILED);
}

static void shadow_deadline(uv_timer_t *t)
{
    shadow_finish(t->data, SHADOW_FAILED);
}

/* Starts the copies the route's mirrors ask for (each with its own percentage roll), head as
 * forwarded but for the -shadow Host, plus any body that already waited. */
static void mirror_start(stream_t *s)
{
    const weir_route_t *r = s->route;
    for (size_t i = 0; i < r->n_mirrors; i++) {
        weir_cluster_t *c = r->mirror_clusters[i];
        double pct = r->rule->mirrors[i].percent;
        if (c == NULL || c->service == NULL || !weir_lb_percent_hits(pct, weir_random_u32()))
            continue;
        weir_cluster_counters_t *cnt = c->state ? weir_cluster_state_counters(c->state) : NULL;
        weir_endpoint_t *ep = weir_cluster_pick(c, NULL, 0, weir_random_u32(), weir_random_u32());
        up_tls_params_t tp;
        if (ep == NULL || tls_params(c, ep, &tp) != NULL || shadows_in_flight >= SHADOWS_MAX_IN_FLIGHT) {
            if (cnt)
                cnt->shadow_rq_failed++;
            continue;
        }
        shadow_t *sh = weir_mem_calloc(1, sizeof(*sh));
        sh->snap = weir_snapshot_ref(s->snap);
        sh->cluster = c;
        sh->ep = ep;
        sh->primary = s;
        sh->req_complete = s->req_complete;
        build_head_into(s, r, &sh->pending, true);
        weir_buf_append(&sh->pending, s->up_pending.base, s->up_pending.len);
        uv_timer_init(weir_loop(), &sh->timer);
        sh->timer.data = sh;
        uint64_t limit = r->rule->timeout_ms > 0 ? (uint64_t)r->rule->timeout_ms
                                                 : options.stream_idle_timeout_ms;
        uv_timer_start(&sh->timer, shadow_deadline, limit, 0);
        shadows_in_flight++;
        if (cnt)
            cnt->shadow_rq_total++;
        sh->next = s->shadows;
        s->shadows = sh;
        weir_pool_link_t *l = weir_upstream_pool_take_idle(ep->pool);
        upstream_t *u;
        if (l) {
            u = up_unpark(l);
        } else if (up_open(ep->pool, false, &tp, &u) < 0) {
            shadow_finish(sh, SHADOW_FAILED);
            continue;
        } else {
            up_keepalive(u, c);
            if (c->state) {
                u->cstate = weir_cluster_state_ref(c->state);
                weir_cluster_state_gauges(c->state)->open_connections++;
            }
        }
        u->shadow = sh;
        u->requests++;
        sh->up = u;
        weir_http_parser_expect_head_response(u->parser, s->head_request);
        up_update_reading(u);
        shadow_flush(sh);
    }
}

/* More of the request, framed as forwarded: each shadow gets it, or is abandoned when it has
 * fallen too far behind. */
static void mirror_body(stream_t *s, const char *framed, size_t len)
{
    for (shadow_t *sh = s->shadows, *next; sh; sh = next) {
        next = sh->next;
        upstream_t *u = sh->up;
        size_t backlog = sh->pending.len + (u && u->connected ? queued(&u->tcp) : 0);
        /* a shadow connection just back from idle is in TCP slow start and lags for a
         * moment: a few shadows at a time may run further behind before they are dropped */
        if (u && backlog + len > SHADOW_MAX_BACKLOG && !sh->burst && shadows_bursting < SHADOW_BURSTS) {
            sh->burst = true;
            shadows_bursting++;
        }
        size_t limit = sh->burst ? SHADOW_BURST_BACKLOG : SHADOW_MAX_BACKLOG;
        if (u == NULL || backlog + len > limit) {
            shadow_finish(sh, u ? SHADOW_ABANDONED : SHADOW_FAILED);
            continue;
        }
        weir_buf_append(&sh->pending, framed, len);
        shadow_flush(sh);
    }
}

/* The primary is done: shadows whose request is whole carry on alone; the others can never
 * be completed and are abandoned. */
static void mirror_detach(stream_t *s)
{
    for (shadow_t *sh = s->shadows, *next; sh; sh = next) {
        next = sh->next;
        sh->primary = NULL;
        if (!sh->req_complete)
            shadow_finish(sh, SHADOW_ABANDONED);
    }
    s->shadows = NULL;
}

static void shadow_connected(upstream_t *u, int status)
{
    shadow_t *sh = u->shadow;
    if (status < 0) {
        shadow_finish(sh, SHADOW_FAILED);
        return;
    }
    u->connected = true;
    uv_tcp_nodelay(&u->tcp, 1);
    up_update_reading(u);
    if (u->tls) {
        if (weir_tls_handshake(u->tls) == WEIR_TLS_ERROR) {
            shadow_finish(sh, SHADOW_FAILED);
            return;
        }
        up_flush_cipher(u);
        return;
    }
    u->tls_ready = true;
    shadow_flush(sh);
}

static void shadow_plain(upstream_t *u, const char *data, size_t len)
{
    shadow_t *sh = u->shadow;
    size_t used = 0;
    weir_http_result_t r = weir_http_parser_execute(u->parser, data, len, &used);
    if (r == WEIR_HTTP_ERROR) {
        shadow_finish(sh, SHADOW_FAILED);
        return;
    }
    if (r == WEIR_HTTP_PAUSED && used != len)
        u->reusable = false;
    if (sh->resp_complete)
        shadow_finish(sh, SHADOW_DONE);
}

static void shadow_eof(upstream_t *u)
{
    shadow_t *sh = u->shadow;
    weir_http_parser_finish(u->parser); /* completes an answer delimited by the close */
    u->reusable = false;
    shadow_finish(sh, sh->resp_complete ? SHADOW_DONE : SHADOW_FAILED);
}

static void shadow_read(upstream_t *u, ssize_t nread, const uv_buf_t *buf)
{
    if (nread < 0) {
        shadow_eof(u);
        return;
    }
    if (u->tls)
        up_tls_input(u, buf->base, (size_t)nread);
    else
        shadow_plain(u, buf->base, (size_t)nread);
}

/* The upstream's owner, a request or a shadow, decides what its events mean. */
static void up_dispatch_tls_failed(upstream_t *u)
{
    if (u->shadow)
        shadow_finish(u->shadow, SHADOW_FAILED);
    else if (u->stream)
        up_tls_failed(u, u->stream);
}

static void up_dispatch_ready(upstream_t *u)
{
    if (u->shadow) {
        shadow_flush(u->shadow);
    } else if (u->stream) {
        set_timer(u->stream->down, TIMER_STREAM, options.stream_idle_timeout_ms);
        up_flush(u->stream);
    }
}

static void up_dispatch_plain(upstream_t *u, const char *data, size_t len)
{
    if (u->shadow)
        shadow_plain(u, data, len);
    else if (u->stream)
        up_plain(u, u->stream, data, len);
}

static void up_dispatch_eof(upstream_t *u)
{
    if (u->shadow)
        shadow_eof(u);
    else if (u->stream)
        up_eof(u, u->stream);
}

/* ------------------------------------------------------------------ plain TCP relay */

/* A connection to a port no service uses is relayed byte for byte to its original destination
 * (Istio's ALLOW_ANY PassthroughCluster for TCP). Each side reads only while the other's write
 * queue is short; a FIN from one side is passed on as a shutdown of the other, and the pair
 * closes once both directions have ended. */

static void relay_update(downstream_t *d)
{
    upstream_t *u = d->raw_up;
    if (u == NULL || d->closing || u->closing)
        return;
    if (d->read_eof && u->read_eof && queued(&d->tcp) == 0 && queued(&u->tcp) == 0) {
        down_close(d); /* closes u too */
        return;
    }
    bool down_want = u->connected && !d->read_eof && queued(&u->tcp) < WEIR_PROXY_HIGH_WATERMARK;
    if (down_want && !d->reading) {
        if (uv_read_start((uv_stream_t *)&d->tcp, alloc_cb, down_read_cb) == 0)
            d->reading = true;
    } else if (!down_want && d->reading) {
        uv_read_stop((uv_stream_t *)&d->tcp);
        d->reading = false;
    }
    bool up_want = u->connected && !u->read_eof && queued(&d->tcp) < WEIR_PROXY_HIGH_WATERMARK;
    if (up_want && !u->reading) {
        if (uv_read_start((uv_stream_t *)&u->tcp, alloc_cb, up_read_cb) == 0)
            u->reading = true;
    } else if (!up_want && u->reading) {
        uv_read_stop((uv_stream_t *)&u->tcp);
        u->reading = false;
    }
}

static void relay_shutdown_done(uv_shutdown_t *req, int status)
{
    free(req);
}

static void relay_half_close(uv_stream_t *h)
{
    uv_shutdown_t *req = weir_mem_alloc(sizeof(*req));
    if (uv_shutdown(req, h, relay_shutdown_done) < 0)
        free(req);
}

static void relay_connected(upstream_t *u, int status)
{
    downstream_t *d = u->raw_down;
    if (status < 0) {
        weir_log_debug("passthrough connect to %s failed: %s", weir_upstream_pool_name(u->pool),
                       uv_strerror(status));
        down_close(d);
        return;
    }
    u->connected = true;
    uv_tcp_nodelay(&u->tcp, 1);
    set_timer(d, TIMER_IDLE, options.idle_timeout_ms);
    if (d->sniff.len && write_buf((uv_stream_t *)&u->tcp, &d->sniff, up_write_done) < 0) {
        down_close(d);
        return;
    }
    relay_update(d);
}

static void relay_down_read(downstream_t *d, ssize_t nread, const uv_buf_t *buf)
{
    upstream_t *u = d->raw_up;
    if (nread < 0) {
        d->read_eof = true;
        uv_read_stop((uv_stream_t *)&d->tcp);
        d->reading = false;
        if (nread != UV_EOF) {
            down_close(d);
            return;
        }
        relay_half_close((uv_stream_t *)&u->tcp);
        relay_update(d);
        return;
    }
    set_timer(d, TIMER_IDLE, options.idle_timeout_ms);
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_append(&b, buf->base, (size_t)nread);
    if (write_buf((uv_stream_t *)&u->tcp, &b, up_write_done) < 0) {
        weir_buf_free(&b);
        down_close(d);
        return;
    }
    relay_update(d);
}

static void relay_up_read(upstream_t *u, ssize_t nread, const uv_buf_t *buf)
{
    downstream_t *d = u->raw_down;
    if (nread < 0) {
        u->read_eof = true;
        uv_read_stop((uv_stream_t *)&u->tcp);
        u->reading = false;
        if (nread != UV_EOF) {
            down_close(d);
            return;
        }
        relay_half_close((uv_stream_t *)&d->tcp);
        relay_update(d);
        return;
    }
    set_timer(d, TIMER_IDLE, options.idle_timeout_ms);
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_append(&b, buf->base, (size_t)nread);
    if (write_buf((uv_stream_t *)&d->tcp, &b, down_write_done) < 0) {
        weir_buf_free(&b);
        down_close(d);
        return;
    }
    relay_update(d);
}

/* Starts relaying d to its original destination. */
static void relay_start(downstream_t *d)
{
    relay_start_to(d, passthrough_target(d)->endpoint.pool);
}

/* Relays d, byte for byte, to the pool's address; what was read to decide (d->sniff) goes
 * first once connected. */
static void relay_start_to(downstream_t *d, weir_upstream_pool_t *pool)
{
    upstream_t *u;
    if (up_open(pool, false, NULL, &u) < 0) {
        down_close(d);
        return;
    }
    u->raw_down = d;
    d->raw_up = u;
    set_timer(d, TIMER_IDLE, options.connect_timeout_ms);
}

/* Write completions release backpressure: the side that was paused because this queue was
 * full may read again. */
static void down_write_done(uv_write_t *req, int status)
{
    downstream_t *d = req->handle->data;
    if (!write_finished(req, status) || d->closing)
        return;
    if (d->raw_up)
        relay_update(d);
    else if (d->stream && d->stream->up)
        up_update_reading(d->stream->up);
}

static void up_write_done(uv_write_t *req, int status)
{
    upstream_t *u = req->handle->data;
    if (!write_finished(req, status) || u->closing)
        return;
    if (u->raw_down)
        relay_update(u->raw_down);
    else if (u->stream)
        down_update_reading(u->stream->down);
}

int weir_proxy_listen(const char *bind, uint32_t port, const weir_listener_opts_t *opts)
{
    listener_t *l = weir_mem_calloc(1, sizeof(*l));
    l->opts = *opts;
    struct sockaddr_storage ss;
    int rc;
    if (strchr(bind, ':'))
        rc = uv_ip6_addr(bind, (int)port, (struct sockaddr_in6 *)&ss);
    else
        rc = uv_ip4_addr(bind, (int)port, (struct sockaddr_in *)&ss);
    if (rc < 0) {
        free(l);
        return rc;
    }
    uv_tcp_init(weir_loop(), &l->tcp);
    l->tcp.data = l;
    l->port = port;
    rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 1024, on_connection);
    if (rc < 0) {
        uv_close((uv_handle_t *)&l->tcp, (uv_close_cb)free);
        return rc;
    }
    l->next = listeners;
    listeners = l;
    return 0;
}

static void listener_closed(uv_handle_t *h)
{
    free(h->data);
}

size_t weir_proxy_listener_ports(uint32_t *out, size_t max)
{
    size_t n = 0;
    for (listener_t *l = listeners; l && n < max; l = l->next)
        out[n++] = l->port;
    return n;
}

void weir_proxy_close_listener(uint32_t port)
{
    for (listener_t **pp = &listeners; *pp; pp = &(*pp)->next) {
        if ((*pp)->port == port) {
            listener_t *l = *pp;
            *pp = l->next;
            uv_close((uv_handle_t *)&l->tcp, listener_closed);
            return;
        }
    }
}

void weir_proxy_close_listeners(void)
{
    while (listeners) {
        listener_t *l = listeners;
        listeners = l->next;
        uv_close((uv_handle_t *)&l->tcp, listener_closed);
    }
}

void weir_proxy_set_metrics_identity(const weir_metrics_peer_t *self)
{
    metrics_self = self;
}

size_t weir_proxy_active_requests(void)
{
    return active_streams;
}

void weir_proxy_drain(void)
{
    draining = true;
    weir_proxy_close_listeners();
    weir_proxy_close_idle();
}

bool weir_proxy_draining(void)
{
    return draining;
}

void weir_proxy_close_idle(void)
{
    downstream_t *d = all_downstreams;
    while (d) {
        downstream_t *next = d->next;
        if (d->stream == NULL)
            down_close(d);
        else
            d->close_after_response = true;
        d = next;
    }
}
