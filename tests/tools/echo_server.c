/* tests/tools/echo_server.c: the backend that end-to-end tests put behind weir.
 *
 *   echo_server --listen IP:PORT [--listen IP:PORT ...] --name NAME [--log FILE]
 *               [--fail-all STATUS | --hang-all | --delay-all MS | --stall-all]
 *
 * One process, one libuv loop, HTTP/1.1 through weir's own codec (common/http_codec.h), with
 * keep-alive and pipelining (responses go out in request order). Bodies are streamed both
 * ways and never held whole: reading stops while the write queue is over WQ_HIGH or while
 * pipelined input waits behind a response.
 *
 *   /echo         the request body comes back as it arrives (chunked), 200
 *   /bytes/N      N bytes 'a' + i % 26 with Content-Length, produced as the socket drains
 *   /status/NNN   status NNN (200..599), body "status=NNN name=NAME"
 *   /delay/MS     the default answer, MS milliseconds after the request is read
 *   /reset        the connection is reset (SO_LINGER 0), no answer
 *   /close        the default answer with Connection: close, then close
 *   /flaky/KEY/N  the first N requests with that KEY (per process) answer 503 (or ?code=NNN,
 *                 200..599) with body "status=NNN name=NAME flaky=KEY served=I attempt=A",
 *                 after ?delay=MS if given, later ones the default answer at once; A is the
 *                 request's x-envoy-attempt-count (e.g. /flaky/k/1?code=200&delay=3000: the
 *                 first request is slow, the next ones fast)
 *   anything else 200 text/plain: name, method, path, host, each header (x-envoy-attempt-count
 *                 among them), then the body's length and SHA-256, once the whole request is read
 *
 * The whole server can be told to misbehave, for every request except /admin/...: at start with
 * --fail-all STATUS (answer STATUS, body "status=NNN name=NAME"), --hang-all (read the request,
 * never answer, keep the connection) or --delay-all MS (the default answer MS ms late), and at
 * run time with the commands below. --stall-all accepts connections and never reads from them,
 * a peer that cannot keep up (the sender's writes block once the socket buffers are full); it
 * cannot be switched off, since not even /admin/ requests are read. The commands:
 *   /admin/fail?status=NNN   /admin/hang   /admin/delay?ms=MS   /admin/ok (back to normal)
 *   /admin/count             "count=N" requests (not /admin/...) read in full since start/reset
 *   /admin/reset             count and /flaky counters back to zero
 * each answered 200 "mode=... count=N name=NAME".
 * A malformed request gets the codec's status (400, or 414/431/501) and a close.
 * --log FILE appends, per request read in full,
 *   `METHOD PATH host=HOST x-request-id=ID body_bytes=N attempt=A body_sha256=HEX t_ms=T conn_req=K`
 * (A: x-envoy-attempt-count or -, T: wall clock in ms since the epoch, K: 1 for the first
 * request on its connection, 2 for the next...); /admin/... is not logged.
 * On start it prints `listening NAME IP:PORT` per listener (port 0 picks a free port).
 * Memory stays bounded: bodies are streamed, /flaky keeps at most FLAKY_SLOTS keys (the oldest
 * is forgotten first). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <mbedtls/sha256.h>
#include <uv.h>

#include "common/http_codec.h"
#include "common/mem.h"

#define MAX_LISTENERS 16
#define READ_BUF_SIZE (64 * 1024)
#define WQ_HIGH (256 * 1024)    /* stop reading while this much is queued for writing */
#define INBUF_MAX (64 * 1024)   /* unparsed input kept while a response is pending */
#define BYTES_PIECE (64 * 1024) /* /bytes writes at most this much at a time */
#define LINGER_MS 2000          /* after our FIN, drain the peer this long before closing */
#define MAX_DELAY_MS (3600 * 1000)
#define FLAKY_SLOTS 1024
#define FLAKY_KEY_MAX 64

typedef enum { MODE_OK, MODE_FAIL, MODE_HANG, MODE_DELAY, MODE_STALL } srv_mode_t;

typedef struct {
    char key[FLAKY_KEY_MAX + 1];
    uint64_t served;
    bool used;
} flaky_slot_t;

typedef struct server server_t;

typedef struct {
    uv_tcp_t tcp;
    server_t *srv;
    char addr[64];
} listener_t;

struct server {
    uv_loop_t *loop;
    const char *name;
    FILE *log;
    listener_t *listeners[MAX_LISTENERS];
    size_t n_listeners;
    uv_signal_t sigterm, sigint;
    struct conn *conns; /* every open connection, to close them on exit */
    bool stopping;
    /* misbehaviour for every request but /admin/... */
    srv_mode_t mode;
    int fail_status;
    uint64_t mode_delay_ms;
    uint64_t count; /* requests (not /admin/...) read in full */
    flaky_slot_t flaky[FLAKY_SLOTS];
    size_t flaky_next; /* the slot a new key takes when none is free: the oldest */
};

typedef enum {
    R_DEFAULT,
    R_ECHO,
    R_BYTES,
    R_STATUS,
    R_DELAY,
    R_RESET,
    R_CLOSE,
    R_FLAKY, /* status set: fail with it; 0: the default answer */
    R_HANG,
    R_ADMIN
} route_t;

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* /delay, and the lingering close */
    uv_shutdown_t shutdown_req;
    server_t *srv;
    struct conn *prev, *next;
    int open_handles;

    weir_http_parser_t *parser;
    weir_buf_t inbuf; /* read but not yet parsed */
    size_t wq_bytes;  /* queued in uv_write and not yet written */
    bool reading;
    bool read_eof;
    bool closing;  /* uv_close called */
    bool shutting; /* our FIN is queued: drain and discard what the peer still sends */
    bool waiting;  /* the parser paused on a request whose response is not finished */
    uint64_t n_requests; /* requests begun on this connection, this one included */

    /* the request in progress */
    const weir_http_head_t *head;
    route_t route;
    bool is_head; /* HEAD: no response body */
    bool keep_alive;
    bool resp_started; /* response bytes were queued: an error now can only close */
    bool resp_done;
    uint64_t body_bytes;
    mbedtls_sha256_context sha;
    unsigned char digest[32]; /* of the body, once the request is read */
    int status;
    char text[192];           /* R_FLAKY (failing) and R_ADMIN: the answer's body */
    uint64_t delay_ms;
    uint64_t bytes_total, bytes_sent;
} conn_t;

typedef struct {
    uv_write_t req;
    conn_t *c;
    size_t len;
    char data[]; /* empty when the buffer is the static /bytes pattern */
} wreq_t;

static server_t g_srv;
static char g_pattern[BYTES_PIECE + 26]; /* 'a' + i % 26: any window of BYTES_PIECE bytes */

static void conn_close(conn_t *c, bool reset);
static void conn_pump(conn_t *c);
static void update_reading(conn_t *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* ---- small helpers ---- */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "echo_server: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

/* Parses a decimal number in [min, max] from s[0..len). */
static bool parse_u64(const char *s, size_t len, uint64_t min, uint64_t max, uint64_t *out)
{
    if (len == 0 || len > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool path_has_prefix(const char *path, size_t len, const char *prefix, const char **rest,
                            size_t *rest_len)
{
    size_t n = strlen(prefix);
    if (len < n || memcmp(path, prefix, n) != 0)
        return false;
    *rest = path + n;
    *rest_len = len - n;
    return true;
}

/* The value of query parameter `name` in target[0..len) (after its '?'), or NULL. */
static const char *query_param(const char *target, size_t len, const char *name, size_t *vlen)
{
    const char *q = memchr(target, '?', len);
    if (q == NULL)
        return NULL;
    const char *end = target + len;
    size_t nlen = strlen(name);
    for (const char *p = q + 1; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            *vlen = (size_t)(stop - p - (ptrdiff_t)nlen - 1);
            return p + nlen + 1;
        }
        p = stop + 1;
    }
    return NULL;
}

static bool query_u64(const char *target, size_t len, const char *name, uint64_t min,
                      uint64_t max, uint64_t *out)
{
    size_t vlen;
    const char *v = query_param(target, len, name, &vlen);
    return v != NULL && parse_u64(v, vlen, min, max, out);
}

static uint64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* The /flaky counter of a key: how many requests with it came before this one. */
static uint64_t flaky_take(server_t *srv, const char *key, size_t len)
{
    flaky_slot_t *free_slot = NULL;
    for (size_t i = 0; i < FLAKY_SLOTS; i++) {
        flaky_slot_t *f = &srv->flaky[i];
        if (!f->used) {
            if (free_slot == NULL)
                free_slot = f;
            continue;
        }
        if (strlen(f->key) == len && memcmp(f->key, key, len) == 0)
            return f->served++;
    }
    if (free_slot == NULL) { /* full: forget the oldest key */
        free_slot = &srv->flaky[srv->flaky_next];
        srv->flaky_next = (srv->flaky_next + 1) % FLAKY_SLOTS;
    }
    memcpy(free_slot->key, key, len);
    free_slot->key[len] = '\0';
    free_slot->used = true;
    free_slot->served = 1;
    return 0;
}

static const char *mode_name(const server_t *srv)
{
    switch (srv->mode) {
    case MODE_FAIL:
        return "fail";
    case MODE_HANG:
        return "hang";
    case MODE_DELAY:
        return "delay";
    case MODE_STALL:
        return "stall";
    default:
        return "ok";
    }
}

/* /admin/...: changes the server's mode; false for an unknown command. */
static bool admin_command(conn_t *c, const char *cmd, size_t len, const char *target,
                          size_t target_len)
{
    server_t *srv = c->srv;
    uint64_t v;
#define IS(lit) (len == sizeof(lit) - 1 && memcmp(cmd, lit, len) == 0)
    if (IS("fail")) {
        if (!query_u64(target, target_len, "status", 200, 599, &v))
            v = 500;
        srv->mode = MODE_FAIL;
        srv->fail_status = (int)v;
    } else if (IS("hang")) {
        srv->mode = MODE_HANG;
    } else if (IS("delay")) {
        if (!query_u64(target, target_len, "ms", 0, MAX_DELAY_MS, &v))
            return false;
        srv->mode = MODE_DELAY;
        srv->mode_delay_ms = v;
    } else if (IS("ok")) {
        srv->mode = MODE_OK;
    } else if (IS("reset")) {
        srv->count = 0;
        memset(srv->flaky, 0, sizeof(srv->flaky));
        srv->flaky_next = 0;
    } else if (!IS("count")) {
        return false;
    }
#undef IS
    if (srv->mode == MODE_FAIL)
        snprintf(c->text, sizeof(c->text), "mode=fail status=%d count=%" PRIu64 " name=%s\n",
                 srv->fail_status, srv->count, srv->name);
    else if (srv->mode == MODE_DELAY)
        snprintf(c->text, sizeof(c->text), "mode=delay ms=%" PRIu64 " count=%" PRIu64 " name=%s\n",
                 srv->mode_delay_ms, srv->count, srv->name);
    else
        snprintf(c->text, sizeof(c->text), "mode=%s count=%" PRIu64 " name=%s\n", mode_name(srv),
                 srv->count, srv->name);
    return true;
}

/* ---- writing ---- */

static void on_write(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    conn_t *c = w->c;
    c->wq_bytes -= w->len;
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c, false);
        return;
    }
    conn_pump(c); /* a /bytes response produces more as the queue drains */
}

static void write_buf(conn_t *c, wreq_t *w, const char *base, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)base, (unsigned)len);
    w->c = c;
    w->len = len;
    c->wq_bytes += len;
    c->resp_started = true;
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        c->wq_bytes -= len;
        free(w);
        conn_close(c, false);
    }
}

static void conn_write(conn_t *c, const char *data, size_t len)
{
    if (c->closing || len == 0)
        return;
    wreq_t *w = weir_mem_alloc(sizeof(*w) + len);
    memcpy(w->data, data, len);
    write_buf(c, w, w->data, len);
}

static void conn_write_buf(conn_t *c, const weir_buf_t *b)
{
    conn_write(c, b->base, b->len);
}

/* ---- closing ---- */

static void on_handle_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->open_handles > 0)
        return;
    weir_http_parser_free(c->parser);
    weir_buf_free(&c->inbuf);
    mbedtls_sha256_free(&c->sha);
    free(c);
}

static void conn_close(conn_t *c, bool reset)
{
    if (c->closing)
        return;
    c->closing = true;
    if (reset) {
        /* SO_LINGER 0: close() sends RST instead of FIN. */
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_linger_timeout(uv_timer_t *t)
{
    conn_close(t->data, false);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn_t *c = req->data;
    if (c->closing)
        return;
    if (status < 0 || c->read_eof) {
        conn_close(c, false);
        return;
    }
    /* Closing with unread input would send RST and could destroy the response in flight;
     * read and discard until the peer closes too, or the linger time is over. */
    uv_timer_start(&c->timer, on_linger_timeout, LINGER_MS, 0);
    update_reading(c);
}

/* Sends FIN once everything queued is written. */
static void conn_shutdown(conn_t *c)
{
    if (c->closing || c->shutting)
        return;
    c->shutting = true;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        conn_close(c, false);
}

/* ---- responses ---- */

/* content_length: >= 0 sent as is, -1 chunked, -2 neither (204) */
static void response_head(conn_t *c, weir_buf_t *b, int status, const char *ctype,
                          int64_t content_length)
{
    weir_buf_appendf(b, "HTTP/1.1 %d %s\r\n", status, weir_http_reason_phrase(status));
    weir_buf_appendf(b, "x-served-by: %s\r\n", c->srv->name);
    if (ctype)
        weir_buf_appendf(b, "content-type: %s\r\n", ctype);
    if (content_length >= 0)
        weir_buf_appendf(b, "content-length: %" PRId64 "\r\n", content_length);
    else if (content_length == -1)
        weir_buf_append_str(b, "transfer-encoding: chunked\r\n");
    if (!c->keep_alive)
        weir_buf_append_str(b, "connection: close\r\n");
    else if (c->head->version_minor == 0)
        weir_buf_append_str(b, "connection: keep-alive\r\n");
    weir_buf_append_str(b, "\r\n");
}

static void send_with_body(conn_t *c, int status, const char *ctype, const weir_buf_t *body)
{
    weir_buf_t b = WEIR_BUF_INIT;
    bool bodyless = c->is_head || status == 204 || status == 304;
    if (status == 204)
        response_head(c, &b, status, NULL, -2);
    else
        response_head(c, &b, status, ctype, (int64_t)body->len);
    if (!bodyless)
        weir_buf_append(&b, body->base, body->len);
    conn_write_buf(c, &b);
    weir_buf_free(&b);
}

static void send_default(conn_t *c)
{
    const weir_http_head_t *h = c->head;
    weir_buf_t body = WEIR_BUF_INIT;
    weir_buf_appendf(&body, "name=%s\n", c->srv->name);
    weir_buf_appendf(&body, "method=%.*s\n", (int)h->method_len, h->method);
    weir_buf_appendf(&body, "path=%.*s\n", (int)h->target_len, h->target);
    if (h->host_index >= 0) {
        const weir_http_header_t *host = &h->headers[h->host_index];
        weir_buf_appendf(&body, "host=%.*s\n", (int)host->value_len, host->value);
    } else {
        weir_buf_append_str(&body, "host=\n");
    }
    for (size_t i = 0; i < h->n_headers; i++) {
        const weir_http_header_t *f = &h->headers[i];
        weir_buf_appendf(&body, "header=%.*s: %.*s\n", (int)f->name_len, f->name, (int)f->value_len,
                         f->value);
    }
    weir_buf_appendf(&body, "body_bytes=%" PRIu64 "\nbody_sha256=", c->body_bytes);
    for (int i = 0; i < 32; i++)
        weir_buf_appendf(&body, "%02x", c->digest[i]);
    weir_buf_append_str(&body, "\n");
    send_with_body(c, 200, "text/plain", &body);
    weir_buf_free(&body);
}

static void send_simple(conn_t *c, int status, const char *text)
{
    weir_buf_t body = WEIR_BUF_INIT;
    weir_buf_append_str(&body, text);
    send_with_body(c, status, "text/plain", &body);
    weir_buf_free(&body);
}

/* Queues /bytes output while the write queue has room. */
static void pump_bytes(conn_t *c)
{
    while (!c->closing && c->bytes_sent < c->bytes_total && c->wq_bytes < WQ_HIGH) {
        uint64_t left = c->bytes_total - c->bytes_sent;
        size_t n = left < BYTES_PIECE ? (size_t)left : BYTES_PIECE;
        wreq_t *w = weir_mem_alloc(sizeof(*w));
        /* The pattern is immutable, so the write points at it instead of a copy. */
        write_buf(c, w, g_pattern + c->bytes_sent % 26, n);
        c->bytes_sent += n;
    }
    if (!c->closing && c->bytes_sent == c->bytes_total)
        c->resp_done = true;
}

static void finish_response(conn_t *c);

static void send_text(conn_t *c, int status)
{
    weir_buf_t body = WEIR_BUF_INIT;
    weir_buf_append_str(&body, c->text);
    send_with_body(c, status, "text/plain", &body);
    weir_buf_free(&body);
}

static void on_delay(uv_timer_t *t)
{
    conn_t *c = t->data;
    if (c->route == R_FLAKY)
        send_text(c, c->status); /* a failing /flaky with ?delay= */
    else
        send_default(c);
    c->resp_done = true;
    finish_response(c);
}

/* ---- parser callbacks ---- */

static int on_head(weir_http_parser_t *p, weir_http_head_t *h)
{
    conn_t *c = weir_http_parser_data(p);
    c->head = h;
    c->n_requests++;
    c->is_head = h->method_len == 4 && memcmp(h->method, "HEAD", 4) == 0;
    c->keep_alive = h->keep_alive;
    c->body_bytes = 0;
    c->resp_started = c->resp_done = false;
    mbedtls_sha256_free(&c->sha);
    mbedtls_sha256_init(&c->sha);
    mbedtls_sha256_starts_ret(&c->sha, 0);

    /* Route on the path without its query. */
    size_t plen = 0;
    while (plen < h->target_len && h->target[plen] != '?')
        plen++;
    const char *rest;
    size_t rlen;
    c->route = R_DEFAULT;
    if (plen == 5 && memcmp(h->target, "/echo", 5) == 0) {
        c->route = R_ECHO;
    } else if (path_has_prefix(h->target, plen, "/bytes/", &rest, &rlen)) {
        c->route = R_BYTES;
        if (!parse_u64(rest, rlen, 0, UINT64_C(1) << 40, &c->bytes_total))
            c->route = R_STATUS, c->status = 400;
    } else if (path_has_prefix(h->target, plen, "/status/", &rest, &rlen)) {
        uint64_t st;
        c->route = R_STATUS;
        c->status = parse_u64(rest, rlen, 200, 599, &st) ? (int)st : 400;
    } else if (path_has_prefix(h->target, plen, "/delay/", &rest, &rlen)) {
        c->route = R_DELAY;
        if (!parse_u64(rest, rlen, 0, MAX_DELAY_MS, &c->delay_ms))
            c->route = R_STATUS, c->status = 400;
    } else if (plen == 6 && memcmp(h->target, "/reset", 6) == 0) {
        c->route = R_RESET;
    } else if (plen == 6 && memcmp(h->target, "/close", 6) == 0) {
        c->route = R_CLOSE;
        c->keep_alive = false;
    } else if (path_has_prefix(h->target, plen, "/flaky/", &rest, &rlen)) {
        /* /flaky/KEY/N: decided now, so pipelined requests count in order */
        const char *slash = rlen > 0 ? memchr(rest, '/', rlen) : NULL;
        uint64_t n, code = 503;
        size_t klen = slash ? (size_t)(slash - rest) : 0, vlen;
        bool has_code = query_param(h->target, h->target_len, "code", &vlen) != NULL;
        bool has_delay = query_param(h->target, h->target_len, "delay", &vlen) != NULL;
        c->delay_ms = 0;
        if (slash == NULL || klen == 0 || klen > FLAKY_KEY_MAX ||
            !parse_u64(slash + 1, rlen - klen - 1, 0, 1000000, &n) ||
            (has_code && !query_u64(h->target, h->target_len, "code", 200, 599, &code)) ||
            (has_delay &&
             !query_u64(h->target, h->target_len, "delay", 0, MAX_DELAY_MS, &c->delay_ms))) {
            c->route = R_STATUS, c->status = 400;
        } else {
            uint64_t before = flaky_take(c->srv, rest, klen);
            const weir_http_header_t *att = weir_http_head_find(h, "x-envoy-attempt-count");
            c->route = R_FLAKY;
            c->status = before < n ? (int)code : 0;
            snprintf(c->text, sizeof(c->text),
                     "status=%d name=%s flaky=%.*s served=%" PRIu64 " attempt=%.*s\n",
                     (int)code, c->srv->name, (int)klen, rest, before + 1,
                     att ? (int)(att->value_len > 16 ? 16 : att->value_len) : 1,
                     att ? att->value : "-");
        }
    } else if (path_has_prefix(h->target, plen, "/admin/", &rest, &rlen)) {
        c->route = R_ADMIN;
        if (!admin_command(c, rest, rlen, h->target, h->target_len))
            snprintf(c->text, sizeof(c->text), "unknown admin command\n"), c->status = 404;
        else
            c->status = 200;
    }

    /* The server-wide misbehaviour replaces every route but /admin/. */
    if (c->route != R_ADMIN) {
        switch (c->srv->mode) {
        case MODE_FAIL:
            c->route = R_STATUS;
            c->status = c->srv->fail_status;
            c->keep_alive = h->keep_alive;
            break;
        case MODE_HANG:
            c->route = R_HANG;
            c->keep_alive = h->keep_alive;
            break;
        case MODE_DELAY:
            c->route = R_DELAY;
            c->delay_ms = c->srv->mode_delay_ms;
            c->keep_alive = h->keep_alive;
            break;
        case MODE_OK:
        case MODE_STALL: /* nothing is read, so nothing gets here */
            break;
        }
    }

    if (h->expect_continue && h->has_body && h->version_minor == 1 && c->route != R_RESET)
        conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    if (c->route == R_ECHO) {
        weir_buf_t b = WEIR_BUF_INIT;
        if (h->version_minor == 0)
            c->keep_alive = false; /* no chunked for HTTP/1.0: the body ends at our close */
        weir_buf_appendf(&b,
                         "HTTP/1.1 200 OK\r\nx-served-by: %s\r\n"
                         "content-type: application/octet-stream\r\n",
                         c->srv->name);
        if (h->version_minor == 1)
            weir_buf_append_str(&b, "transfer-encoding: chunked\r\n");
        if (!c->keep_alive)
            weir_buf_append_str(&b, "connection: close\r\n");
        weir_buf_append_str(&b, "\r\n");
        conn_write_buf(c, &b);
        weir_buf_free(&b);
    }
    return 0;
}

static int on_body(weir_http_parser_t *p, const char *data, size_t len)
{
    conn_t *c = weir_http_parser_data(p);
    c->body_bytes += len;
    mbedtls_sha256_update_ret(&c->sha, (const unsigned char *)data, len);
    if (c->route == R_ECHO && !c->is_head) {
        if (c->head->version_minor == 0) {
            conn_write(c, data, len);
        } else {
            wreq_t *w = weir_mem_alloc(sizeof(*w) + len + 20);
            size_t n = weir_http_chunk_header(w->data, len);
            memcpy(w->data + n, data, len);
            memcpy(w->data + n + len, "\r\n", 2);
            write_buf(c, w, w->data, n + len + 2);
        }
    }
    return 0;
}

static void log_request(conn_t *c)
{
    FILE *f = c->srv->log;
    if (f == NULL)
        return;
    const weir_http_head_t *h = c->head;
    const weir_http_header_t *host = h->host_index >= 0 ? &h->headers[h->host_index] : NULL;
    const weir_http_header_t *rid = weir_http_head_find(h, "x-request-id");
    const weir_http_header_t *att = weir_http_head_find(h, "x-envoy-attempt-count");
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", c->digest[i]);
    fprintf(f,
            "%.*s %.*s host=%.*s x-request-id=%.*s body_bytes=%" PRIu64
            " attempt=%.*s body_sha256=%s t_ms=%" PRIu64 " conn_req=%" PRIu64 "\n",
            (int)h->method_len, h->method, (int)h->target_len, h->target,
            host ? (int)host->value_len : 1, host ? host->value : "-",
            rid ? (int)rid->value_len : 1, rid ? rid->value : "-", c->body_bytes,
            att ? (int)att->value_len : 1, att ? att->value : "-", hex, now_ms(), c->n_requests);
    fflush(f);
}

static int on_complete(weir_http_parser_t *p)
{
    conn_t *c = weir_http_parser_data(p);
    mbedtls_sha256_finish_ret(&c->sha, c->digest);
    if (c->route != R_ADMIN) {
        c->srv->count++;
        log_request(c);
    }
    switch (c->route) {
    case R_ADMIN:
        send_text(c, c->status);
        c->resp_done = true;
        break;
    case R_FLAKY:
        if (c->status != 0 && c->delay_ms > 0) {
            uv_timer_start(&c->timer, on_delay, c->delay_ms, 0);
            break;
        }
        if (c->status == 0)
            send_default(c);
        else
            send_text(c, c->status);
        c->resp_done = true;
        break;
    case R_HANG:
        break; /* never answered: the connection waits until the peer or a signal closes it */
    case R_DEFAULT:
    case R_CLOSE:
        send_default(c);
        c->resp_done = true;
        break;
    case R_ECHO:
        if (c->head->version_minor == 1 && !c->is_head)
            conn_write(c, "0\r\n\r\n", 5);
        c->resp_done = true;
        break;
    case R_STATUS: {
        char text[128];
        snprintf(text, sizeof(text), "status=%d name=%s", c->status, c->srv->name);
        send_simple(c, c->status, text);
        c->resp_done = true;
        break;
    }
    case R_BYTES: {
        weir_buf_t b = WEIR_BUF_INIT;
        response_head(c, &b, 200, "application/octet-stream", (int64_t)c->bytes_total);
        conn_write_buf(c, &b);
        weir_buf_free(&b);
        if (c->is_head)
            c->bytes_total = 0;
        c->bytes_sent = 0;
        pump_bytes(c);
        break;
    }
    case R_DELAY:
        uv_timer_start(&c->timer, on_delay, c->delay_ms, 0);
        break;
    case R_RESET:
        break; /* conn_pump resets the connection once execute() returns */
    }
    return 0;
}

static const weir_http_parser_cbs_t parser_cbs = {
    .on_head = on_head,
    .on_body = on_body,
    .on_complete = on_complete,
};

/* ---- input ---- */

static void update_reading(conn_t *c)
{
    bool want;
    if (c->closing || c->read_eof || c->srv->mode == MODE_STALL)
        want = false;
    else if (c->shutting)
        want = true; /* discard until EOF */
    else
        want = c->wq_bytes < WQ_HIGH && c->inbuf.len < INBUF_MAX;
    if (want == c->reading)
        return;
    c->reading = want;
    if (want)
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    else
        uv_read_stop((uv_stream_t *)&c->tcp);
}

/* The response to the paused request is fully queued: accept the next request, or close.
 * Returns false when the connection is going away. */
static bool next_request(conn_t *c)
{
    if (c->closing)
        return false;
    if (!c->keep_alive) {
        conn_shutdown(c);
        return false;
    }
    c->waiting = false;
    c->head = NULL; /* resume() frees it */
    c->resp_started = false;
    weir_http_parser_resume(c->parser);
    return true;
}

/* A response that finished later than its request (/delay, /bytes). */
static void finish_response(conn_t *c)
{
    if (c->waiting && next_request(c))
        conn_pump(c);
}

static void reply_error(conn_t *c)
{
    int status = weir_http_parser_error_status(c->parser);
    if (c->resp_started) {
        conn_close(c, false); /* mid-response: nothing sensible can be said any more */
        return;
    }
    char buf[160];
    int n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", status,
                     weir_http_reason_phrase(status));
    conn_write(c, buf, (size_t)n);
    conn_shutdown(c);
}

/* Parses what is buffered, one request at a time. */
static void conn_pump(conn_t *c)
{
    if (c->closing)
        return;
    if (c->route == R_BYTES && c->waiting && !c->resp_done) {
        pump_bytes(c);
        if (c->resp_done && !next_request(c))
            return;
    }
    /* A loop, not recursion: a buffer of pipelined requests is answered one after another. */
    while (!c->closing && !c->shutting && !c->waiting && c->inbuf.len > 0) {
        size_t used = 0;
        weir_http_result_t r =
            weir_http_parser_execute(c->parser, c->inbuf.base, c->inbuf.len, &used);
        weir_buf_consume(&c->inbuf, used);
        if (r == WEIR_HTTP_NEED_MORE)
            break;
        if (r == WEIR_HTTP_ERROR) {
            reply_error(c);
            return;
        }
        if (r == WEIR_HTTP_ABORTED) {
            conn_close(c, false);
            return;
        }
        /* PAUSED: a request is complete. */
        if (c->route == R_RESET) {
            conn_close(c, true);
            return;
        }
        c->waiting = true;
        if (c->resp_done && !next_request(c))
            return;
    }
    if (!c->closing && c->read_eof && !c->waiting && !c->shutting) {
        /* The peer is done sending: a request cut short gets no answer, otherwise close
         * once the responses are out. */
        if (weir_http_parser_finish(c->parser) != WEIR_HTTP_NEED_MORE) {
            conn_close(c, false);
            return;
        }
        conn_shutdown(c);
        return;
    }
    update_reading(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char readbuf[READ_BUF_SIZE]; /* consumed before the next read: one is enough */
    *buf = uv_buf_init(readbuf, sizeof(readbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF) {
            conn_close(c, false);
            return;
        }
        c->read_eof = true;
        c->reading = false;
        uv_read_stop(s);
        if (c->shutting || (c->waiting && c->route == R_HANG)) {
            /* lingering done, or the peer gave up on a request that is never answered */
            conn_close(c, false);
            return;
        }
        conn_pump(c);
        return;
    }
    if (nread == 0)
        return;
    if (c->shutting)
        return; /* lingering: discard */
    weir_buf_append(&c->inbuf, buf->base, (size_t)nread);
    conn_pump(c);
}

/* ---- accepting ---- */

static void on_connection(uv_stream_t *ls, int status)
{
    listener_t *l = ls->data;
    server_t *srv = l->srv;
    if (status < 0 || srv->stopping)
        return;
    conn_t *c = weir_mem_calloc(1, sizeof(*c));
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    c->parser = weir_http_parser_new(WEIR_HTTP_REQUEST, &parser_cbs, c);
    mbedtls_sha256_init(&c->sha);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c, false);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    update_reading(c);
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

static void stop_server(server_t *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = true;
    for (size_t i = 0; i < srv->n_listeners; i++)
        uv_close((uv_handle_t *)&srv->listeners[i]->tcp, on_listener_closed);
    while (srv->conns)
        conn_close(srv->conns, false);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    stop_server(s->data);
}

static void add_listener(server_t *srv, const char *spec)
{
    if (srv->n_listeners == MAX_LISTENERS)
        die("too many --listen");
    char host[64];
    const char *colon;
    struct sockaddr_storage ss;
    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof(host))
            die("bad --listen %s (want IP:PORT or [IPv6]:PORT)", spec);
        memcpy(host, spec + 1, (size_t)(end - spec - 1));
        host[end - spec - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL || (size_t)(colon - spec) >= sizeof(host))
            die("bad --listen %s (want IP:PORT)", spec);
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
    }
    uint64_t port;
    if (!parse_u64(colon + 1, strlen(colon + 1), 0, 65535, &port))
        die("bad port in --listen %s", spec);
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&ss) != 0)
        die("bad address in --listen %s", spec);

    listener_t *l = weir_mem_calloc(1, sizeof(*l));
    l->srv = srv;
    uv_tcp_init(srv->loop, &l->tcp);
    l->tcp.data = l;
    int rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 1024, on_connection);
    if (rc < 0)
        die("cannot listen on %s: %s", spec, uv_strerror(rc));

    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &blen);
    char ip[48] = "?";
    int bport = 0;
    if (bound.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&bound, ip, sizeof(ip));
        bport = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
        snprintf(l->addr, sizeof(l->addr), "[%s]:%d", ip, bport);
    } else {
        uv_ip4_name((struct sockaddr_in *)&bound, ip, sizeof(ip));
        bport = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        snprintf(l->addr, sizeof(l->addr), "%s:%d", ip, bport);
    }
    srv->listeners[srv->n_listeners++] = l;
}

static void usage(void)
{
    fprintf(stderr, "usage: echo_server --listen IP:PORT [--listen IP:PORT ...] --name NAME "
                    "[--log FILE] [--fail-all STATUS | --hang-all | --delay-all MS | --stall-all]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    server_t *srv = &g_srv;
    const char *listens[MAX_LISTENERS];
    size_t n_listens = 0;
    const char *log_path = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--hang-all") == 0) {
            srv->mode = MODE_HANG;
            continue;
        }
        if (strcmp(a, "--stall-all") == 0) {
            srv->mode = MODE_STALL;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        if (strcmp(a, "--listen") == 0) {
            if (n_listens == MAX_LISTENERS)
                die("too many --listen");
            listens[n_listens++] = argv[++i];
        } else if (strcmp(a, "--name") == 0) {
            srv->name = argv[++i];
        } else if (strcmp(a, "--log") == 0) {
            log_path = argv[++i];
        } else if (strcmp(a, "--fail-all") == 0) {
            uint64_t st;
            if (!parse_u64(argv[i + 1], strlen(argv[i + 1]), 200, 599, &st))
                die("bad --fail-all %s (want 200..599)", argv[i + 1]);
            srv->mode = MODE_FAIL;
            srv->fail_status = (int)st;
            i++;
        } else if (strcmp(a, "--delay-all") == 0) {
            if (!parse_u64(argv[i + 1], strlen(argv[i + 1]), 0, MAX_DELAY_MS, &srv->mode_delay_ms))
                die("bad --delay-all %s (want milliseconds)", argv[i + 1]);
            srv->mode = MODE_DELAY;
            i++;
        } else {
            usage();
        }
    }
    if (n_listens == 0 || srv->name == NULL)
        usage();

    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof(g_pattern); i++)
        g_pattern[i] = (char)('a' + i % 26);
    if (log_path) {
        srv->log = fopen(log_path, "a");
        if (srv->log == NULL)
            die("cannot open %s: %s", log_path, strerror(errno));
    }

    srv->loop = uv_default_loop();
    for (size_t i = 0; i < n_listens; i++)
        add_listener(srv, listens[i]);
    uv_signal_init(srv->loop, &srv->sigterm);
    uv_signal_init(srv->loop, &srv->sigint);
    srv->sigterm.data = srv->sigint.data = srv;
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    for (size_t i = 0; i < srv->n_listeners; i++)
        printf("listening %s %s\n", srv->name, srv->listeners[i]->addr);
    fflush(stdout);

    uv_run(srv->loop, UV_RUN_DEFAULT);
    uv_loop_close(srv->loop);
    if (srv->log)
        fclose(srv->log);
    return 0;
}
