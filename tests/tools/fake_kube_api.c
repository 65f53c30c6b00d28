/* tests/tools/fake_kube_api.c: a Kubernetes API server small enough to script, for the
 * client in common/k8s.c (tests/unit/test_k8s.c) and for end-to-end tests that drive a running
 * proxy's endpoints.
 *
 *   fake_kube_api --script FILE [--bind 127.0.0.1] [--port 0] [--port-file PATH]
 *                 [--token TOKEN] [--tls-cert PEM --tls-key PEM]
 *
 * It serves what the client asks for, in the wire format of the real API server (shapes from
 * the Kubernetes API reference, "API Concepts: Efficient detection of changes"):
 *   GET /api/v1[/namespaces/NS]/{pods,services}[?limit=&continue=]
 *   GET /apis/discovery.k8s.io/v1[/namespaces/NS]/endpointslices[...]
 *       -> {"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"N",
 *           "continue":"..."},"items":[...]}     (items without kind/apiVersion, as the server)
 *   the same with ?watch=1&resourceVersion=N[&allowWatchBookmarks=true]
 *       -> 200, Transfer-Encoding: chunked, one {"type":"ADDED","object":{...}}\n per chunk:
 *          first every change after N (the history), then changes as the script makes them.
 *          N older than the last compaction: one ERROR event with a 410 "Expired" Status, and
 *          the stream ends (what the API server does for a compacted resourceVersion).
 * With --token, API requests without "Authorization: Bearer TOKEN" get 401. With --tls-cert
 * and --tls-key (ECDSA, common/tls.h's server engine) it speaks HTTPS.
 *
 * Control (no token needed): POST /fake/resume continues a `pause`; GET /fake/log is every
 * API request so far, one line each ("LIST pods ns=* limit=500 continue=- auth=Bearer x",
 * "WATCH pods ns=* rv=1003 bookmarks=1 auth=..."); GET /fake/status is
 * "step=I/N pauses=P paused=0|1 watches=W rv=R" (P: pause steps reached so far).
 *
 * The script: one step per line, '#' starts a comment, FILE paths are relative to the
 * script's directory. Steps before the first waiting one build the initial state.
 *   add RES FILE         a JSON object (a Kubernetes object as written) is created: a new
 *                        resourceVersion, an ADDED event        (RES: pods services endpointslices)
 *   modify RES FILE      MODIFIED
 *   delete RES NS/NAME   DELETED
 *   sleep MS             waits
 *   await-watches N      waits until N watch streams are open
 *   pause                waits for POST /fake/resume
 *   hold                 open watch streams stop receiving events (a silent partition)
 *   expire               compaction: every resourceVersion so far is gone; each open watch
 *                        gets an ERROR 410 event and ends (and `hold` ends)
 *   gone-next N          the next N watch requests are answered HTTP 410
 *   fail-next N CODE     the next N API requests are answered HTTP CODE
 *   end-watches          every open watch ends normally (as at its timeoutSeconds); `hold`
 *                        ends
 *   drop                 every API connection is closed at once, mid-stream
 *   bookmark             a BOOKMARK event to every watch that allows them
 *   split-events on|off  each event is sent as two chunks cut in its middle
 *   exit                 the server stops (status 0)
 *
 * Only 127.0.0.0/8 is expected (--bind); it refuses other addresses. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/http_codec.h"
#include "common/mem.h"
#include "common/tls.h"

enum { R_PODS, R_SERVICES, R_SLICES, R_N };

static const struct {
    const char *plural, *prefix, *kind, *api_version;
} res_info[R_N] = {
    {"pods", "/api/v1", "Pod", "v1"},
    {"services", "/api/v1", "Service", "v1"},
    {"endpointslices", "/apis/discovery.k8s.io/v1", "EndpointSlice", "discovery.k8s.io/v1"},
};

typedef enum {
    OP_ADD,
    OP_MODIFY,
    OP_DELETE,
    OP_SLEEP,
    OP_AWAIT_WATCHES,
    OP_PAUSE,
    OP_HOLD,
    OP_EXPIRE,
    OP_GONE_NEXT,
    OP_FAIL_NEXT,
    OP_END_WATCHES,
    OP_DROP,
    OP_BOOKMARK,
    OP_SPLIT,
    OP_EXIT,
} op_t;

typedef struct {
    op_t op;
    int res;
    char *arg;  /* file (resolved) or NS/NAME */
    long n, n2; /* numbers */
    unsigned line;
} step_t;

typedef struct {
    int res;
    long rv;
    char *ns;
    char *text; /* the event line, newline included */
} event_t;

typedef struct fconn {
    uv_tcp_t tcp;
    weir_http_parser_t *parser;
    weir_tls_t *tls;
    bool closing, close_after_write, api;
    unsigned writes;
    /* the request */
    char method[16];
    char target[4096];
    char auth[1024];
    /* a watch stream */
    bool watching, bookmarks;
    int res;
    char ns[254]; /* "" all */
    struct fconn *prev, *next;
} fconn_t;

static struct {
    uv_loop_t *loop;
    uv_tcp_t server;
    weir_tls_config_t *tls;
    const char *token;
    step_t *steps;
    size_t n_steps, pc;
    bool paused, holding, split;
    unsigned resumes; /* POST /fake/resume not yet used by a pause */
    unsigned pauses;  /* pause steps reached so far */
    uv_timer_t step_timer;
    long rv, min_rv;
    json_t *store[R_N]; /* "ns/name" -> object (with kind and apiVersion) */
    event_t *history;
    size_t n_history;
    long gone_next, fail_next, fail_code;
    weir_buf_t log;
    fconn_t *conns;
} fk;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fake_kube_api: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* ---- connections ------------------------------------------------------------------------ */

static void on_closed(uv_handle_t *h)
{
    fconn_t *c = h->data;
    weir_http_parser_free(c->parser);
    weir_tls_free(c->tls);
    free(c);
}

static void conn_close(fconn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        fk.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

typedef struct {
    uv_write_t req;
    fconn_t *c;
    char *data;
} wreq_t;

static void on_written(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    fconn_t *c = w->c;
    free(w->data);
    free(w);
    c->writes--;
    if (!c->closing && (status < 0 || (c->close_after_write && c->writes == 0)))
        conn_close(c);
}

static void write_raw(fconn_t *c, weir_buf_t *b)
{
    if (b->len == 0 || c->closing) {
        weir_buf_free(b);
        return;
    }
    wreq_t *w = weir_mem_alloc(sizeof(*w));
    w->c = c;
    w->data = b->base;
    uv_buf_t buf = uv_buf_init(b->base, (unsigned)b->len);
    *b = (weir_buf_t)WEIR_BUF_INIT;
    c->writes++;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written) < 0) {
        c->writes--;
        free(w->data);
        free(w);
        conn_close(c);
    }
}

static void flush_tls(fconn_t *c)
{
    weir_buf_t out = WEIR_BUF_INIT;
    weir_tls_take_cipher(c->tls, &out);
    write_raw(c, &out);
}

static void send_bytes(fconn_t *c, const char *data, size_t len)
{
    if (c->closing)
        return;
    if (c->tls == NULL) {
        weir_buf_t b = WEIR_BUF_INIT;
        weir_buf_append(&b, data, len);
        write_raw(c, &b);
        return;
    }
    while (len > 0) {
        size_t used = 0;
        if (weir_tls_write(c->tls, data, len, &used) != WEIR_TLS_DONE) {
            flush_tls(c);
            conn_close(c);
            return;
        }
        data += used;
        len -= used;
        flush_tls(c);
    }
}

static void send_str(fconn_t *c, const char *s)
{
    send_bytes(c, s, strlen(s));
}

static void respond(fconn_t *c, int status, const char *type, const char *body)
{
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_appendf(&b,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nCache-Control: no-cache, private\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, weir_http_reason_phrase(status), type, strlen(body), body);
    send_bytes(c, b.base, b.len);
    weir_buf_free(&b);
    c->close_after_write = true;
    if (c->writes == 0)
        conn_close(c);
}

static char *status_json(int code, const char *reason, const char *message)
{
    json_t *st = json_pack("{s:s, s:s, s:{}, s:s, s:s, s:s, s:i}", "kind", "Status", "apiVersion",
                           "v1", "metadata", "status", "Failure", "message", message, "reason",
                           reason, "code", code);
    char *text = json_dumps(st, JSON_COMPACT);
    json_decref(st);
    return text;
}

static void respond_status(fconn_t *c, int code, const char *reason, const char *message)
{
    char *body = status_json(code, reason, message);
    respond(c, code, "application/json", body);
    free(body);
}

static void send_chunk(fconn_t *c, const char *data, size_t len)
{
    char head[32];
    snprintf(head, sizeof(head), "%zx\r\n", len);
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_append_str(&b, head);
    weir_buf_append(&b, data, len);
    weir_buf_append_str(&b, "\r\n");
    send_bytes(c, b.base, b.len);
    weir_buf_free(&b);
}

static void send_event(fconn_t *c, const char *text)
{
    size_t len = strlen(text);
    if (fk.split && len > 2) {
        send_chunk(c, text, len / 2);
        send_chunk(c, text + len / 2, len - len / 2);
    } else {
        send_chunk(c, text, len);
    }
}

static void end_stream(fconn_t *c)
{
    send_str(c, "0\r\n\r\n");
    c->watching = false;
    c->close_after_write = true;
    if (c->writes == 0)
        conn_close(c);
}

/* ---- the store and its events ----------------------------------------------------------- */

static const char *obj_ns(const json_t *o)
{
    const json_t *md = json_object_get(o, "metadata");
    const char *ns = json_string_value(json_object_get(md, "namespace"));
    return ns ? ns : "";
}

static bool ns_matches(const fconn_t *c, const char *ns)
{
    return c->ns[0] == '\0' || strcmp(c->ns, ns) == 0;
}

static char *event_text(const char *type, const json_t *obj)
{
    json_t *ev = json_pack("{s:s, s:O}", "type", type, "object", obj);
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_appendf(&b, "%s\n", text); /* Go's json.Encoder ends every event with a newline */
    free(text);
    return b.base;
}

static void emit(int res, const char *type, const json_t *obj)
{
    event_t ev = {res, fk.rv, weir_mem_strdup(obj_ns(obj)), event_text(type, obj)};
    fk.history = weir_mem_realloc(fk.history, (fk.n_history + 1) * sizeof(ev));
    fk.history[fk.n_history++] = ev;
    if (fk.holding)
        return;
    for (fconn_t *c = fk.conns, *next; c; c = next) {
        next = c->next;
        if (c->watching && c->res == res && ns_matches(c, ev.ns))
            send_event(c, ev.text);
    }
}

static void set_rv(json_t *obj)
{
    json_t *md = json_object_get(obj, "metadata");
    if (!json_is_object(md))
        die("object without metadata");
    char rv[32];
    snprintf(rv, sizeof(rv), "%ld", fk.rv);
    json_object_set_new(md, "resourceVersion", json_string(rv));
    if (json_object_get(md, "uid") == NULL) {
        char uid[48];
        snprintf(uid, sizeof(uid), "00000000-0000-4000-8000-%012ld", fk.rv);
        json_object_set_new(md, "uid", json_string(uid));
    }
}

static char *key_of(const json_t *obj)
{
    const json_t *md = json_object_get(obj, "metadata");
    const char *name = json_string_value(json_object_get(md, "name"));
    if (name == NULL)
        die("object without metadata.name");
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_appendf(&b, "%s/%s", obj_ns(obj), name);
    return b.base;
}

static void do_put(const step_t *st)
{
    json_error_t jerr;
    json_t *obj = json_load_file(st->arg, 0, &jerr);
    if (obj == NULL)
        die("%s:%d: %s", st->arg, jerr.line, jerr.text);
    json_object_set_new(obj, "kind", json_string(res_info[st->res].kind));
    json_object_set_new(obj, "apiVersion", json_string(res_info[st->res].api_version));
    fk.rv++;
    set_rv(obj);
    char *key = key_of(obj);
    bool existed = json_object_get(fk.store[st->res], key) != NULL;
    const char *type = st->op == OP_ADD ? "ADDED" : "MODIFIED";
    if ((st->op == OP_ADD) == existed)
        fprintf(stderr, "fake_kube_api: script line %u: %s of %s, which %s\n", st->line, type, key,
                existed ? "exists" : "does not exist");
    json_object_set(fk.store[st->res], key, obj);
    emit(st->res, type, obj);
    json_decref(obj);
    free(key);
}

static void do_delete(const step_t *st)
{
    json_t *obj = json_object_get(fk.store[st->res], st->arg);
    if (obj == NULL)
        die("script line %u: delete of %s, which does not exist", st->line, st->arg);
    json_incref(obj);
    json_object_del(fk.store[st->res], st->arg);
    fk.rv++;
    set_rv(obj);
    emit(st->res, "DELETED", obj);
    json_decref(obj);
}

/* ---- serving API requests --------------------------------------------------------------- */

static const char *query_get(const char *query, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = query; p && *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > n && strncmp(p, name, n) == 0 && p[n] == '=') {
            size_t v = len - n - 1;
            /* percent-decoding: the client escapes continue tokens */
            size_t o = 0;
            for (size_t i = 0; i < v && o + 1 < cap; i++) {
                const char *q = p + n + 1 + i;
                unsigned x;
                if (*q == '%' && i + 2 < v + 1 && sscanf(q + 1, "%2x", &x) == 1) {
                    out[o++] = (char)x;
                    i += 2;
                } else {
                    out[o++] = *q;
                }
            }
            out[o] = '\0';
            return out;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

/* Which resource a path names, and its namespace (""); -1 when none. */
static int route(const char *path, char *ns, size_t cap)
{
    for (int r = 0; r < R_N; r++) {
        size_t pl = strlen(res_info[r].prefix);
        if (strncmp(path, res_info[r].prefix, pl) != 0)
            continue;
        const char *rest = path + pl;
        ns[0] = '\0';
        if (strncmp(rest, "/namespaces/", 12) == 0) {
            const char *slash = strchr(rest + 12, '/');
            if (slash == NULL || (size_t)(slash - rest - 12) >= cap)
                continue;
            memcpy(ns, rest + 12, (size_t)(slash - rest - 12));
            ns[slash - rest - 12] = '\0';
            rest = slash;
        }
        if (rest[0] == '/' && strcmp(rest + 1, res_info[r].plural) == 0)
            return r;
    }
    return -1;
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void serve_list(fconn_t *c, int res, const char *ns, const char *query)
{
    char buf[64], cont[128];
    long limit = query_get(query, "limit", buf, sizeof(buf)) ? atol(buf) : 0;
    long offset = 0, list_rv = fk.rv;
    if (query_get(query, "continue", cont, sizeof(cont)) && cont[0]) {
        if (sscanf(cont, "c%ld-%ld", &offset, &list_rv) != 2) {
            respond_status(c, 400, "BadRequest", "invalid continue token");
            return;
        }
        if (list_rv < fk.min_rv) {
            respond_status(c, 410, "Expired",
                           "The provided continue parameter is too old to display a consistent "
                           "list result. You can start a new list without the continue "
                           "parameter.");
            return;
        }
    }
    json_t *store = fk.store[res];
    size_t n = json_object_size(store), k = 0;
    const char **keys = weir_mem_calloc(n + 1, sizeof(*keys));
    const char *key;
    json_t *v;
    json_object_foreach(store, key, v)
    {
        if (ns[0] == '\0' || strcmp(obj_ns(v), ns) == 0)
            keys[k++] = key;
    }
    qsort(keys, k, sizeof(*keys), cmp_keys);
    json_t *items = json_array();
    long end = limit > 0 && offset + limit < (long)k ? offset + limit : (long)k;
    for (long i = offset; i < end; i++) {
        json_t *item = json_deep_copy(json_object_get(store, keys[i]));
        json_object_del(item, "kind"); /* list items carry neither, as the API server's */
        json_object_del(item, "apiVersion");
        json_array_append_new(items, item);
    }
    free(keys);
    char rv[32], kind[64];
    snprintf(rv, sizeof(rv), "%ld", list_rv);
    snprintf(kind, sizeof(kind), "%sList", res_info[res].kind);
    json_t *md = json_pack("{s:s}", "resourceVersion", rv);
    if (end < (long)k) {
        char next[64];
        snprintf(next, sizeof(next), "c%ld-%ld", end, list_rv);
        json_object_set_new(md, "continue", json_string(next));
    }
    json_t *list = json_pack("{s:s, s:s, s:o, s:o}", "kind", kind, "apiVersion",
                             res_info[res].api_version, "metadata", md, "items", items);
    char *text = json_dumps(list, JSON_COMPACT);
    json_decref(list);
    respond(c, 200, "application/json", text);
    free(text);
}

static void serve_watch(fconn_t *c, int res, const char *ns, const char *query)
{
    char buf[64];
    long from = query_get(query, "resourceVersion", buf, sizeof(buf)) ? atol(buf) : 0;
    send_str(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                "Cache-Control: no-cache, private\r\nTransfer-Encoding: chunked\r\n\r\n");
    c->watching = true;
    c->res = res;
    snprintf(c->ns, sizeof(c->ns), "%s", ns);
    c->bookmarks =
        query_get(query, "allowWatchBookmarks", buf, sizeof(buf)) && strcmp(buf, "true") == 0;
    if (from != 0 && from < fk.min_rv - 1) {
        char msg[128];
        snprintf(msg, sizeof(msg), "too old resource version: %ld (%ld)", from, fk.min_rv - 1);
        char *st = status_json(410, "Expired", msg);
        json_t *obj = json_loads(st, 0, NULL);
        char *text = event_text("ERROR", obj);
        send_event(c, text);
        free(text);
        json_decref(obj);
        free(st);
        end_stream(c);
        return;
    }
    if (from == 0) { /* "any": the current state as ADDED events */
        const char *key;
        json_t *v;
        json_object_foreach(fk.store[res], key, v)
        {
            if (ns_matches(c, obj_ns(v))) {
                char *text = event_text("ADDED", v);
                send_event(c, text);
                free(text);
            }
        }
        return;
    }
    for (size_t i = 0; i < fk.n_history; i++) {
        const event_t *ev = &fk.history[i];
        if (ev->res == res && ev->rv > from && ns_matches(c, ev->ns))
            send_event(c, ev->text);
    }
}

static void serve(fconn_t *c)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s", c->target);
    char *query = strchr(path, '?');
    if (query)
        *query++ = '\0';

    if (strcmp(path, "/fake/resume") == 0 && strcmp(c->method, "POST") == 0) {
        fk.resumes++;
        respond(c, 200, "text/plain", "resumed\n");
        return;
    }
    if (strcmp(path, "/fake/log") == 0) {
        respond(c, 200, "text/plain", fk.log.base ? fk.log.base : "");
        return;
    }
    if (strcmp(path, "/fake/status") == 0) {
        unsigned w = 0;
        for (fconn_t *x = fk.conns; x; x = x->next)
            w += x->watching;
        char body[160];
        snprintf(body, sizeof(body), "step=%zu/%zu pauses=%u paused=%d watches=%u rv=%ld\n", fk.pc,
                 fk.n_steps, fk.pauses, fk.paused, w, fk.rv);
        respond(c, 200, "text/plain", body);
        return;
    }

    c->api = true;
    char ns[254], buf[64];
    int res = route(path, ns, sizeof(ns));
    bool watch = query && query_get(query, "watch", buf, sizeof(buf)) &&
                 (strcmp(buf, "1") == 0 || strcmp(buf, "true") == 0);
    char cont[128], lim[32], rv[32];
    if (res >= 0 && watch)
        weir_buf_appendf(
            &fk.log, "WATCH %s ns=%s rv=%s bookmarks=%d auth=%s\n", res_info[res].plural,
            ns[0] ? ns : "*", query_get(query, "resourceVersion", rv, sizeof(rv)) ? rv : "-",
            query_get(query, "allowWatchBookmarks", buf, sizeof(buf)) && strcmp(buf, "true") == 0,
            c->auth[0] ? c->auth : "-");
    else if (res >= 0)
        weir_buf_appendf(&fk.log, "LIST %s ns=%s limit=%s continue=%s auth=%s\n",
                         res_info[res].plural, ns[0] ? ns : "*",
                         query_get(query, "limit", lim, sizeof(lim)) ? lim : "-",
                         query_get(query, "continue", cont, sizeof(cont)) && cont[0] ? cont : "-",
                         c->auth[0] ? c->auth : "-");
    else
        weir_buf_appendf(&fk.log, "OTHER %s %s\n", c->method, c->target);

    if (fk.token) {
        char want[1100];
        snprintf(want, sizeof(want), "Bearer %s", fk.token);
        if (strcmp(c->auth, want) != 0) {
            respond_status(c, 401, "Unauthorized", "Unauthorized");
            return;
        }
    }
    if (res < 0 || strcmp(c->method, "GET") != 0) {
        respond_status(c, 404, "NotFound", "the server could not find the requested resource");
    } else if (fk.fail_next > 0) {
        fk.fail_next--;
        respond_status(c, (int)fk.fail_code, "InternalError", "scripted failure");
    } else if (watch && fk.gone_next > 0) {
        fk.gone_next--;
        respond_status(c, 410, "Gone", "scripted 410 Gone");
    } else if (watch) {
        serve_watch(c, res, ns, query);
    } else {
        serve_list(c, res, ns, query ? query : "");
    }
}

static int on_head(weir_http_parser_t *p, weir_http_head_t *h)
{
    fconn_t *c = weir_http_parser_data(p);
    snprintf(c->method, sizeof(c->method), "%.*s", (int)h->method_len, h->method);
    snprintf(c->target, sizeof(c->target), "%.*s", (int)h->target_len, h->target);
    const weir_http_header_t *a = weir_http_head_find(h, "authorization");
    snprintf(c->auth, sizeof(c->auth), "%.*s", a ? (int)a->value_len : 0, a ? a->value : "");
    return 0;
}

static int on_complete(weir_http_parser_t *p)
{
    serve(weir_http_parser_data(p));
    return -1; /* one request per connection */
}

static const weir_http_parser_cbs_t cbs = {.on_head = on_head, .on_complete = on_complete};

static void feed(fconn_t *c, const char *data, size_t len)
{
    if (c->closing || c->watching || c->close_after_write)
        return; /* one request per connection; later bytes are ignored */
    size_t used;
    weir_http_result_t r = weir_http_parser_execute(c->parser, data, len, &used);
    if (r == WEIR_HTTP_ERROR)
        respond(c, weir_http_parser_error_status(c->parser), "text/plain", "bad request\n");
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    static char slab[65536];
    buf->base = slab;
    buf->len = sizeof(slab);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    fconn_t *c = s->data;
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (c->tls == NULL) {
        feed(c, buf->base, (size_t)n);
        return;
    }
    size_t off = 0;
    while (off < (size_t)n && !c->closing) {
        size_t took = weir_tls_feed_cipher(c->tls, buf->base + off, (size_t)n - off);
        off += took;
        char plain[16384];
        size_t got;
        weir_tls_status_t st = WEIR_TLS_WANT_INPUT;
        while (!c->closing &&
               (st = weir_tls_read(c->tls, plain, sizeof(plain), &got)) == WEIR_TLS_DONE)
            feed(c, plain, got);
        flush_tls(c);
        if (!c->closing && (st == WEIR_TLS_ERROR || st == WEIR_TLS_CLOSED)) {
            fprintf(stderr, "fake_kube_api: TLS: %s\n", weir_tls_reason(c->tls));
            conn_close(c);
            return;
        }
        if (took == 0)
            break;
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    fconn_t *c = weir_mem_calloc(1, sizeof(*c));
    uv_tcp_init(fk.loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    c->parser = weir_http_parser_new(WEIR_HTTP_REQUEST, &cbs, c);
    if (fk.tls) {
        char err[256];
        c->tls = weir_tls_new(fk.tls, NULL, err, sizeof(err));
        if (c->tls == NULL)
            die("TLS: %s", err);
    }
    c->next = fk.conns;
    if (fk.conns)
        fk.conns->prev = c;
    fk.conns = c;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- the script ------------------------------------------------------------------------- */

static void run_steps(void);

static void on_step_timer(uv_timer_t *t)
{
    run_steps();
}

static unsigned open_watches(void)
{
    unsigned n = 0;
    for (fconn_t *c = fk.conns; c; c = c->next)
        n += c->watching && !c->closing;
    return n;
}

static void stop_all(void)
{
    for (fconn_t *c = fk.conns, *next; c; c = next) {
        next = c->next;
        conn_close(c);
    }
    uv_close((uv_handle_t *)&fk.server, NULL);
    uv_close((uv_handle_t *)&fk.step_timer, NULL);
}

/* Runs steps until one has to wait; a waiting step polls every 5 ms (or sleeps). */
static void run_steps(void)
{
    while (fk.pc < fk.n_steps) {
        step_t *st = &fk.steps[fk.pc];
        switch (st->op) {
        case OP_ADD:
        case OP_MODIFY:
            do_put(st);
            break;
        case OP_DELETE:
            do_delete(st);
            break;
        case OP_SLEEP:
            fk.pc++;
            uv_timer_start(&fk.step_timer, on_step_timer, (uint64_t)st->n, 0);
            return;
        case OP_AWAIT_WATCHES:
            if (open_watches() < (unsigned)st->n) {
                uv_timer_start(&fk.step_timer, on_step_timer, 5, 0);
                return;
            }
            break;
        case OP_PAUSE:
            /* A resume that came before the pause was reached counts: the test may see the
             * state it waits for before this script gets here. */
            if (!fk.paused && st->n2 == 0) {
                st->n2 = 1;
                fk.pauses++;
            }
            if (fk.resumes == 0) {
                fk.paused = true;
                uv_timer_start(&fk.step_timer, on_step_timer, 5, 0);
                return;
            }
            fk.resumes--;
            fk.paused = false;
            break;
        case OP_HOLD:
            fk.holding = true;
            break;
        case OP_EXPIRE:
            fk.holding = false;
            fk.min_rv = fk.rv + 1;
            for (fconn_t *c = fk.conns, *next; c; c = next) {
                next = c->next;
                if (!c->watching)
                    continue;
                char msg[128];
                snprintf(msg, sizeof(msg), "too old resource version: (%ld)", fk.rv);
                char *stj = status_json(410, "Expired", msg);
                json_t *obj = json_loads(stj, 0, NULL);
                char *text = event_text("ERROR", obj);
                send_event(c, text);
                free(text);
                json_decref(obj);
                free(stj);
                end_stream(c);
            }
            break;
        case OP_GONE_NEXT:
            fk.gone_next = st->n;
            break;
        case OP_FAIL_NEXT:
            fk.fail_next = st->n;
            fk.fail_code = st->n2;
            break;
        case OP_END_WATCHES:
            fk.holding = false; /* the next watches see events again */
            for (fconn_t *c = fk.conns, *next; c; c = next) {
                next = c->next;
                if (c->watching)
                    end_stream(c);
            }
            break;
        case OP_DROP:
            for (fconn_t *c = fk.conns, *next; c; c = next) {
                next = c->next;
                if (c->api || c->method[0] == '\0')
                    conn_close(c);
            }
            break;
        case OP_BOOKMARK:
            fk.rv++;
            for (fconn_t *c = fk.conns; c; c = c->next) {
                if (!c->watching || !c->bookmarks)
                    continue;
                char rv[32];
                snprintf(rv, sizeof(rv), "%ld", fk.rv);
                json_t *obj = json_pack("{s:s, s:s, s:{s:s, s:{s:s}}}", "kind",
                                        res_info[c->res].kind, "apiVersion",
                                        res_info[c->res].api_version, "metadata", "resourceVersion",
                                        rv, "annotations", "k8s.io/initial-events-end", "true");
                char *text = event_text("BOOKMARK", obj);
                send_event(c, text);
                free(text);
                json_decref(obj);
            }
            break;
        case OP_SPLIT:
            fk.split = st->n != 0;
            break;
        case OP_EXIT:
            fk.pc++;
            stop_all();
            return;
        }
        fk.pc++;
    }
}

static int res_of(const char *name, const char *file, unsigned line)
{
    for (int r = 0; r < R_N; r++)
        if (strcmp(name, res_info[r].plural) == 0)
            return r;
    die("%s:%u: unknown resource \"%s\" (pods, services, endpointslices)", file, line, name);
}

static void load_script(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("%s: %s", path, strerror(errno));
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    char line[4096];
    unsigned lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *w[4] = {0};
        int n = 0;
        for (char *tok = strtok(line, " \t\r\n"); tok && n < 4; tok = strtok(NULL, " \t\r\n"))
            w[n++] = tok;
        if (n == 0)
            continue;
        step_t st = {.line = lineno};
        const char *op = w[0];
        if ((strcmp(op, "add") == 0 || strcmp(op, "modify") == 0) && n == 3) {
            st.op = op[0] == 'a' ? OP_ADD : OP_MODIFY;
            st.res = res_of(w[1], path, lineno);
            weir_buf_t p = WEIR_BUF_INIT;
            if (w[2][0] == '/')
                weir_buf_append_str(&p, w[2]);
            else
                weir_buf_appendf(&p, "%s/%s", dir, w[2]);
            st.arg = p.base;
        } else if (strcmp(op, "delete") == 0 && n == 3) {
            st.op = OP_DELETE;
            st.res = res_of(w[1], path, lineno);
            st.arg = weir_mem_strdup(w[2]);
        } else if (strcmp(op, "sleep") == 0 && n == 2) {
            st.op = OP_SLEEP;
            st.n = atol(w[1]);
        } else if (strcmp(op, "await-watches") == 0 && n == 2) {
            st.op = OP_AWAIT_WATCHES;
            st.n = atol(w[1]);
        } else if (strcmp(op, "pause") == 0 && n == 1) {
            st.op = OP_PAUSE;
        } else if (strcmp(op, "hold") == 0 && n == 1) {
            st.op = OP_HOLD;
        } else if (strcmp(op, "expire") == 0 && n == 1) {
            st.op = OP_EXPIRE;
        } else if (strcmp(op, "gone-next") == 0 && n == 2) {
            st.op = OP_GONE_NEXT;
            st.n = atol(w[1]);
        } else if (strcmp(op, "fail-next") == 0 && n == 3) {
            st.op = OP_FAIL_NEXT;
            st.n = atol(w[1]);
            st.n2 = atol(w[2]);
        } else if (strcmp(op, "end-watches") == 0 && n == 1) {
            st.op = OP_END_WATCHES;
        } else if (strcmp(op, "drop") == 0 && n == 1) {
            st.op = OP_DROP;
        } else if (strcmp(op, "bookmark") == 0 && n == 1) {
            st.op = OP_BOOKMARK;
        } else if (strcmp(op, "split-events") == 0 && n == 2) {
            st.op = OP_SPLIT;
            st.n = strcmp(w[1], "on") == 0;
        } else if (strcmp(op, "exit") == 0 && n == 1) {
            st.op = OP_EXIT;
        } else {
            die("%s:%u: cannot read step \"%s\"", path, lineno, op);
        }
        fk.steps = weir_mem_realloc(fk.steps, (fk.n_steps + 1) * sizeof(st));
        fk.steps[fk.n_steps++] = st;
    }
    fclose(f);
}

static void free_all(void)
{
    for (size_t i = 0; i < fk.n_steps; i++)
        free(fk.steps[i].arg);
    free(fk.steps);
    for (size_t i = 0; i < fk.n_history; i++) {
        free(fk.history[i].ns);
        free(fk.history[i].text);
    }
    free(fk.history);
    for (int r = 0; r < R_N; r++)
        json_decref(fk.store[r]);
    weir_buf_free(&fk.log);
    weir_tls_config_unref(fk.tls);
}

int main(int argc, char **argv)
{
    const char *script = NULL, *bind = "127.0.0.1", *port_file = NULL;
    const char *cert = NULL, *key = NULL;
    long port = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            die("%s needs a value", a);
        const char *v = argv[++i];
        if (strcmp(a, "--script") == 0)
            script = v;
        else if (strcmp(a, "--bind") == 0)
            bind = v;
        else if (strcmp(a, "--port") == 0)
            port = atol(v);
        else if (strcmp(a, "--port-file") == 0)
            port_file = v;
        else if (strcmp(a, "--token") == 0)
            fk.token = v;
        else if (strcmp(a, "--tls-cert") == 0)
            cert = v;
        else if (strcmp(a, "--tls-key") == 0)
            key = v;
        else
            die("unknown option %s", a);
    }
    if (script == NULL)
        die("usage: fake_kube_api --script FILE [--bind 127.0.0.1] [--port 0] "
            "[--port-file PATH] [--token T] [--tls-cert PEM --tls-key PEM]");
    if (strncmp(bind, "127.", 4) != 0)
        die("--bind %s: only 127.0.0.0/8 addresses", bind);
    if ((cert == NULL) != (key == NULL))
        die("--tls-cert and --tls-key go together");
    if (cert) {
        char err[256];
        weir_tls_options_t o = {.role = WEIR_TLS_SERVER,
                                .chain_pem_path = cert,
                                .key_pem_path = key,
                                .no_client_cert = true,
                                .no_session_tickets = true};
        fk.tls = weir_tls_config_new(&o, err, sizeof(err));
        if (fk.tls == NULL)
            die("TLS: %s", err);
    }
    fk.loop = uv_default_loop();
    fk.rv = 1000;
    for (int r = 0; r < R_N; r++)
        fk.store[r] = json_object();
    load_script(script);
    uv_timer_init(fk.loop, &fk.step_timer);
    run_steps(); /* the initial state, up to the first step that waits */

    struct sockaddr_in addr;
    if (uv_ip4_addr(bind, (int)port, &addr) != 0)
        die("--bind %s: not an IPv4 address", bind);
    uv_tcp_init(fk.loop, &fk.server);
    int rc = uv_tcp_bind(&fk.server, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&fk.server, 64, on_connection);
    if (rc != 0)
        die("listen on %s:%ld: %s", bind, port, uv_strerror(rc));
    struct sockaddr_in bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&fk.server, (struct sockaddr *)&bound, &len);
    int actual = ntohs(bound.sin_port);
    if (port_file) {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (f == NULL || fprintf(f, "%d\n", actual) < 0 || fclose(f) != 0 ||
            rename(tmp, port_file) != 0)
            die("%s: %s", port_file, strerror(errno));
    }
    printf("fake_kube_api: listening on %s:%d%s\n", bind, actual, fk.tls ? " (TLS)" : "");
    fflush(stdout);
    uv_run(fk.loop, UV_RUN_DEFAULT);
    free_all();
    uv_loop_close(fk.loop);
    return 0;
}
