/* common/upstream_pool.h: idle upstream connections, one pool per endpoint address.
 *
 * Pools are keyed by "ip:port" and shared across config snapshots, so a reload that keeps an
 * endpoint keeps its warm connections. A snapshot resolves each endpoint's pool once, at
 * load (weir_upstream_pool_acquire), so the request path never looks one up.
 *
 * The pool only links idle connections; the connection objects belong to proxy.c, which
 * embeds a weir_pool_link_t in each. LIFO reuse keeps the hottest connection busy and lets
 * the others age out. Refcounted: every snapshot endpoint and every idle or active
 * connection holds a reference. Loop thread only. */
#ifndef WEIR_UPSTREAM_POOL_H
#define WEIR_UPSTREAM_POOL_H

#include <stddef.h>
#include <sys/socket.h>

typedef struct weir_pool_link {
    struct weir_pool_link *prev, *next;
} weir_pool_link_t;

typedef struct weir_upstream_pool weir_upstream_pool_t;

/* The pool for host_port, created on first use (addr is copied). Takes a reference. */
weir_upstream_pool_t *weir_upstream_pool_acquire(const char *host_port, const struct sockaddr *addr,
                                                 socklen_t addr_len);
weir_upstream_pool_t *weir_upstream_pool_ref(weir_upstream_pool_t *p);
/* Drops a reference; the last one frees the pool (it must have no idle links then). */
void weir_upstream_pool_unref(weir_upstream_pool_t *p);

const struct sockaddr *weir_upstream_pool_addr(const weir_upstream_pool_t *p, socklen_t *len);
const char *weir_upstream_pool_name(const weir_upstream_pool_t *p);

/* Most recently parked idle connection, unlinked; NULL when none. */
weir_pool_link_t *weir_upstream_pool_take_idle(weir_upstream_pool_t *p);
/* Parks an idle connection. */
void weir_upstream_pool_put_idle(weir_upstream_pool_t *p, weir_pool_link_t *link);
/* Unlinks a parked connection that died while idle. */
void weir_upstream_pool_remove_idle(weir_upstream_pool_t *p, weir_pool_link_t *link);
size_t weir_upstream_pool_idle_count(const weir_upstream_pool_t *p);

struct weir_tls_session;
/* The TLS session to offer on the next mTLS connection to this endpoint, so repeated
 * connections between the same proxies skip the full handshake; NULL when none. The pool owns
 * it; set replaces (and frees) the previous one. */
const struct weir_tls_session *weir_upstream_pool_session(const weir_upstream_pool_t *p);
void weir_upstream_pool_set_session(weir_upstream_pool_t *p, struct weir_tls_session *s);

#endif
