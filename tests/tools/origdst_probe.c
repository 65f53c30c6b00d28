/* tests/tools/origdst_probe.c: tells a client where its connection was really going.
 *
 *   origdst_probe --listen IP:PORT [--listen IP:PORT ...]      (IPv6 as [IP]:PORT)
 *
 * Accepts on every listener; for each connection it asks weir_original_dst() (agent/
 * original_dst.h) for the original destination, writes "ORIG <ip>:<port>\n" back, and closes.
 * tests/e2e/20_iptables.sh runs it on 15001 and 15006 in a pod with `weir iptables` rules, in
 * place of the sidecar, to see what the kernel really redirects.
 *
 * On stdout, one line per listener when it is ready, `listening IP:PORT`, and one per
 * connection: `conn listener=PORT peer=IP:PORT orig=IP:PORT` (or `orig-error=NAME`), so a test
 * can tell which listener a connection reached. A failed lookup answers "ERR <name>\n".
 * SIGTERM and SIGINT close everything and exit 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "agent/original_dst.h"
#include "common/mem.h"

#define MAX_LISTENERS 16

typedef struct {
    uv_tcp_t tcp;
    int port;
} listener_t;

typedef struct {
    uv_tcp_t tcp;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    char reply[128];
} conn_t;

static listener_t *listeners[MAX_LISTENERS];
static size_t n_listeners;
static uv_signal_t sigterm, sigint;

static void addr_text(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof(ip));
        port = ntohs(a->sin_port);
        snprintf(buf, size, "%s:%d", ip, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof(ip));
        port = ntohs(a->sin6_port);
        snprintf(buf, size, "[%s]:%d", ip, port);
    } else {
        snprintf(buf, size, "?");
    }
}

static void on_conn_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Closes unless already closing (a signal's close_walk cancels pending requests, whose
 * callbacks then run on a closing handle). */
static void conn_close(conn_t *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn_close(req->data);
}

static void on_written(uv_write_t *req, int status)
{
    conn_t *c = req->data;
    /* A FIN after the line, so a client reading to EOF gets exactly one line. */
    c->shutdown_req.data = c;
    if (status != 0 || uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        conn_close(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    listener_t *l = server->data;
    if (status != 0) {
        fprintf(stderr, "origdst_probe: accept on %d: %s\n", l->port, uv_strerror(status));
        return;
    }
    conn_t *c = weir_mem_calloc(1, sizeof(*c));
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    struct sockaddr_storage peer, orig;
    int len = sizeof(peer);
    char peer_s[80] = "?", orig_s[80];
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &len) == 0)
        addr_text(&peer, peer_s, sizeof(peer_s));
    int r = weir_original_dst(&c->tcp, &orig);
    if (r == 0) {
        addr_text(&orig, orig_s, sizeof(orig_s));
        printf("conn listener=%d peer=%s orig=%s\n", l->port, peer_s, orig_s);
        snprintf(c->reply, sizeof(c->reply), "ORIG %s\n", orig_s);
    } else {
        printf("conn listener=%d peer=%s orig-error=%s\n", l->port, peer_s, uv_err_name(r));
        snprintf(c->reply, sizeof(c->reply), "ERR %s\n", uv_err_name(r));
    }
    fflush(stdout);
    uv_buf_t buf = uv_buf_init(c->reply, (unsigned)strlen(c->reply));
    c->write_req.data = c;
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, h->type == UV_TCP && h->data ? on_conn_closed : NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    /* Listeners carry their listener_t as data too: free them here instead, and mark them. */
    for (size_t i = 0; i < n_listeners; i++)
        listeners[i]->tcp.data = NULL;
    uv_walk(s->loop, close_walk, NULL);
}

static int add_listener(uv_loop_t *loop, const char *spec)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || (size_t)(colon - spec) >= sizeof(host)) {
        fprintf(stderr, "origdst_probe: --listen: expected IP:PORT, got \"%s\"\n", spec);
        return -1;
    }
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    /* "[::]:15001": the brackets are for the reader, not for uv_ip6_addr. */
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    int port = atoi(colon + 1);
    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
        fprintf(stderr, "origdst_probe: --listen: bad address \"%s\"\n", spec);
        return -1;
    }
    if (n_listeners == MAX_LISTENERS) {
        fprintf(stderr, "origdst_probe: too many listeners\n");
        return -1;
    }
    listener_t *l = weir_mem_calloc(1, sizeof(*l));
    listeners[n_listeners++] = l;
    l->port = port;
    uv_tcp_init(loop, &l->tcp);
    l->tcp.data = l;
    int r = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&l->tcp, 128, on_connection);
    if (r != 0) {
        fprintf(stderr, "origdst_probe: listen on %s: %s\n", spec, uv_strerror(r));
        return -1;
    }
    printf("listening %s\n", spec);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    signal(SIGPIPE, SIG_IGN);
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            if (add_listener(loop, argv[++i]) != 0) {
                rc = 1;
                break;
            }
        } else {
            fprintf(stderr, "usage: origdst_probe --listen IP:PORT [--listen IP:PORT ...]\n");
            rc = 2;
            break;
        }
    }
    if (rc == 0 && n_listeners == 0) {
        fprintf(stderr, "usage: origdst_probe --listen IP:PORT [--listen IP:PORT ...]\n");
        rc = 2;
    }
    if (rc == 0) {
        uv_signal_init(loop, &sigterm);
        uv_signal_init(loop, &sigint);
        uv_signal_start(&sigterm, on_signal, SIGTERM);
        uv_signal_start(&sigint, on_signal, SIGINT);
        uv_run(loop, UV_RUN_DEFAULT);
    } else {
        for (size_t i = 0; i < n_listeners; i++)
            listeners[i]->tcp.data = NULL;
        uv_walk(loop, close_walk, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
    }
    for (size_t i = 0; i < n_listeners; i++)
        free(listeners[i]);
    uv_loop_close(loop);
    return rc;
}
