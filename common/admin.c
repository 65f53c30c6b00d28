/* common/admin.c: see admin.h. */
#include "common/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/http_codec.h"
#include "common/loop.h"

typedef struct server {
    uv_tcp_t tcp;
    const weir_admin_route_t *routes;
    size_t n_routes;
    struct server *next;
} server_t;

typedef struct conn {
    uv_tcp_t tcp;
    server_t *server;
    weir_http_parser_t *parser;
    bool answered;
    struct conn *prev, *next;
} conn_t;

static server_t *servers;
static conn_t *conns;
static char read_buf[16 * 1024];

static void conn_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    weir_http_parser_free(c->parser);
    free(c);
}

static void conn_close(conn_t *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

typedef struct {
    uv_write_t req;
    weir_buf_t buf;
    conn_t *conn;
} write_t;

static void write_done(uv_write_t *req, int status)
{
    write_t *w = (write_t *)req;
    conn_t *c = w->conn;
    weir_buf_free(&w->buf);
    free(w);
    if (status != UV_ECANCELED)
        conn_close(c); /* one request per connection */
}

static void respond(conn_t *c, weir_admin_response_t *r)
{
    c->answered = true;
    write_t *w = weir_mem_calloc(1, sizeof(*w));
    w->conn = c;
    weir_buf_appendf(&w->buf,
                     "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n"
                     "cache-control: no-cache, max-age=0\r\nx-content-type-options: nosniff\r\n"
                     "connection: close\r\n\r\n",
                     r->status, weir_http_reason_phrase(r->status),
                     r->content_type ? r->content_type : "text/plain; charset=utf-8", r->body.len);
    weir_buf_append(&w->buf, r->body.base, r->body.len);
    uv_buf_t ub = uv_buf_init(w->buf.base, (unsigned)w->buf.len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, write_done) < 0) {
        weir_buf_free(&w->buf);
        free(w);
        conn_close(c);
    }
}

static int on_head(weir_http_parser_t *p, weir_http_head_t *h)
{
    conn_t *c = weir_http_parser_data(p);
    char method[16], target[1024];
    snprintf(method, sizeof(method), "%.*s", (int)h->method_len, h->method);
    snprintf(target, sizeof(target), "%.*s", (int)h->target_len, h->target);
    char *q = strchr(target, '?');
    if (q)
        *q++ = '\0';
    weir_admin_request_t req = {.method = method, .path = target, .query = q ? q : ""};
    weir_admin_response_t resp = {.status = 200};
    bool path_known = false;
    for (size_t i = 0; i < c->server->n_routes; i++) {
        const weir_admin_route_t *r = &c->server->routes[i];
        if (strcmp(r->path, target) != 0)
            continue;
        path_known = true;
        if (strcmp(r->method ? r->method : "GET", method) == 0) {
            r->handler(&req, &resp);
            respond(c, &resp);
            weir_buf_free(&resp.body);
            return 0;
        }
    }
    resp.status = path_known ? 405 : 404;
    weir_buf_append_str(&resp.body, path_known ? "method not allowed: this endpoint wants POST\n"
                                               : "not found\n");
    respond(c, &resp);
    weir_buf_free(&resp.body);
    return 0;
}

static const weir_http_parser_cbs_t cbs = {on_head, NULL, NULL, NULL};

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = h->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0 || c->answered)
        return;
    size_t used;
    if (weir_http_parser_execute(c->parser, buf->base, (size_t)nread, &used) == WEIR_HTTP_ERROR) {
        weir_admin_response_t resp = {.status = weir_http_parser_error_status(c->parser)};
        respond(c, &resp);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    conn_t *c = weir_mem_calloc(1, sizeof(*c));
    c->server = server->data;
    uv_tcp_init(weir_loop(), &c->tcp);
    c->tcp.data = c;
    c->parser = weir_http_parser_new(WEIR_HTTP_REQUEST, &cbs, c);
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) < 0)
        conn_close(c);
}

int weir_admin_listen(const char *bind, uint32_t port, const weir_admin_route_t *routes,
                      size_t n_routes)
{
    struct sockaddr_storage ss;
    int rc = strchr(bind, ':') ? uv_ip6_addr(bind, (int)port, (struct sockaddr_in6 *)&ss)
                               : uv_ip4_addr(bind, (int)port, (struct sockaddr_in *)&ss);
    if (rc < 0)
        return rc;
    server_t *s = weir_mem_calloc(1, sizeof(*s));
    s->routes = routes;
    s->n_routes = n_routes;
    uv_tcp_init(weir_loop(), &s->tcp);
    s->tcp.data = s;
    rc = uv_tcp_bind(&s->tcp, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->tcp, 64, on_connection);
    if (rc < 0) {
        uv_close((uv_handle_t *)&s->tcp, (uv_close_cb)free);
        return rc;
    }
    s->next = servers;
    servers = s;
    return 0;
}

static void server_closed(uv_handle_t *h)
{
    free(h->data);
}

void weir_admin_close_all(void)
{
    while (servers) {
        server_t *s = servers;
        servers = s->next;
        uv_close((uv_handle_t *)&s->tcp, server_closed);
    }
    while (conns)
        conn_close(conns);
}

bool weir_admin_query_get(const char *query, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            snprintf(out, outlen, "%.*s", (int)(len - nl - 1), p + nl + 1);
            return true;
        }
        if (len == nl && strncmp(p, name, nl) == 0) {
            snprintf(out, outlen, "%s", "");
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}
