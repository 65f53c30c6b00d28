/* common/upstream_pool.c: see upstream_pool.h. */
#include "common/upstream_pool.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/tls.h"

struct weir_upstream_pool {
    struct weir_upstream_pool *next; /* registry chain */
    char *name;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    unsigned refs;
    weir_pool_link_t idle; /* sentinel of a circular list, most recent first */
    size_t n_idle;
    weir_tls_session_t *session;
};

/* Endpoints number in the tens or hundreds and lookups happen only at config load, so a
 * plain list is the simplest registry that is fast enough. */
static weir_upstream_pool_t *registry;

weir_upstream_pool_t *weir_upstream_pool_acquire(const char *host_port, const struct sockaddr *addr,
                                                 socklen_t addr_len)
{
    for (weir_upstream_pool_t *p = registry; p; p = p->next) {
        if (strcmp(p->name, host_port) == 0)
            return weir_upstream_pool_ref(p);
    }
    weir_upstream_pool_t *p = weir_mem_calloc(1, sizeof(*p));
    p->name = weir_mem_strdup(host_port);
    assert(addr_len <= sizeof(p->addr));
    memcpy(&p->addr, addr, addr_len);
    p->addr_len = addr_len;
    p->refs = 1;
    p->idle.prev = p->idle.next = &p->idle;
    p->next = registry;
    registry = p;
    return p;
}

weir_upstream_pool_t *weir_upstream_pool_ref(weir_upstream_pool_t *p)
{
    p->refs++;
    return p;
}

void weir_upstream_pool_unref(weir_upstream_pool_t *p)
{
    assert(p->refs > 0);
    if (--p->refs > 0)
        return;
    assert(p->n_idle == 0);
    for (weir_upstream_pool_t **pp = &registry; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    weir_tls_session_free(p->session);
    free(p->name);
    free(p);
}

const struct sockaddr *weir_upstream_pool_addr(const weir_upstream_pool_t *p, socklen_t *len)
{
    *len = p->addr_len;
    return (const struct sockaddr *)&p->addr;
}

const char *weir_upstream_pool_name(const weir_upstream_pool_t *p)
{
    return p->name;
}

weir_pool_link_t *weir_upstream_pool_take_idle(weir_upstream_pool_t *p)
{
    if (p->n_idle == 0)
        return NULL;
    weir_pool_link_t *l = p->idle.next;
    weir_upstream_pool_remove_idle(p, l);
    return l;
}

void weir_upstream_pool_put_idle(weir_upstream_pool_t *p, weir_pool_link_t *l)
{
    l->next = p->idle.next;
    l->prev = &p->idle;
    p->idle.next->prev = l;
    p->idle.next = l;
    p->n_idle++;
}

void weir_upstream_pool_remove_idle(weir_upstream_pool_t *p, weir_pool_link_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = NULL;
    p->n_idle--;
}

size_t weir_upstream_pool_idle_count(const weir_upstream_pool_t *p)
{
    return p->n_idle;
}

const weir_tls_session_t *weir_upstream_pool_session(const weir_upstream_pool_t *p)
{
    return p->session;
}

void weir_upstream_pool_set_session(weir_upstream_pool_t *p, weir_tls_session_t *s)
{
    weir_tls_session_free(p->session);
    p->session = s;
}
