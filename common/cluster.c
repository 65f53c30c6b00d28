/* common/cluster.c: see cluster.h. */
#include "common/cluster.h"
#include "common/cluster_state.h"
#include "common/outlier.h"
#include "common/tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

/* Picks on clusters up to this size use stack arrays, so the request path never allocates for
 * the clusters weir is meant for; larger ones pay one allocation per pick. */
#define PICK_STACK_MAX 64

char *weir_cluster_name(const char *host_fqdn, const char *subset, uint32_t port)
{
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_appendf(&b, "outbound|%u|%s|%s", (unsigned)port, subset ? subset : "",
                     host_fqdn ? host_fqdn : "");
    return b.base;
}

static bool str_eq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* port 0: the only port, or the first when there are several (cluster.h). */
static const weir_service_port_t *find_service_port(const weir_service_entry_t *se, uint32_t port)
{
    if (se->n_ports == 0)
        return NULL;
    if (port == 0)
        return &se->ports[0];
    for (size_t i = 0; i < se->n_ports; i++) {
        if (se->ports[i].number == port)
            return &se->ports[i];
    }
    return NULL;
}

/* WorkloadEntry ports[<service port name>], else targetPort, else the port number. */
static uint32_t endpoint_port(const weir_workload_entry_t *we, const weir_service_port_t *sp)
{
    for (size_t i = 0; i < we->n_ports; i++) {
        if (str_eq(we->ports[i].name, sp->name))
            return we->ports[i].number;
    }
    return sp->target_port ? sp->target_port : sp->number;
}

/* Fills ep from a WorkloadEntry; false when its address is not an IP literal (a DNS name or
 * unix:// endpoint: weir does not resolve names) or its port is out of range. */
static bool endpoint_init(weir_endpoint_t *ep, const weir_workload_entry_t *we,
                          const weir_service_port_t *sp)
{
    uint32_t port = endpoint_port(we, sp);
    if (we->address == NULL || port == 0 || port > 65535)
        return false;

    memset(ep, 0, sizeof(*ep));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ep->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ep->addr;
    weir_buf_t hp = WEIR_BUF_INIT;
    if (inet_pton(AF_INET, we->address, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        ep->addr_len = sizeof(*sin);
        weir_buf_appendf(&hp, "%s:%u", we->address, (unsigned)port);
    } else if (inet_pton(AF_INET6, we->address, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        ep->addr_len = sizeof(*sin6);
        weir_buf_appendf(&hp, "[%s]:%u", we->address, (unsigned)port);
    } else {
        return false;
    }
    ep->address = weir_mem_strdup(we->address);
    ep->port = (uint16_t)port;
    ep->host_port = hp.base;
    ep->labels = &we->labels;
    ep->workload = we;
    ep->service_account = we->service_account ? we->service_account : "default";
    return true;
}

/* Appends the endpoint for `we` when it passes the subset selector (NULL: no subset). */
static void add_endpoint(weir_cluster_t *c, size_t *cap, const weir_workload_entry_t *we,
                         const weir_labels_t *subset_labels)
{
    if (subset_labels != NULL && !weir_labels_match(subset_labels, &we->labels))
        return;
    if (c->n_endpoints == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        c->endpoints = weir_mem_realloc(c->endpoints, *cap * sizeof(*c->endpoints));
    }
    if (endpoint_init(&c->endpoints[c->n_endpoints], we, c->service_port))
        c->n_endpoints++;
}

weir_cluster_t *weir_cluster_build(const weir_config_t *cfg, const char *host_fqdn,
                                   const char *subset, uint32_t port)
{
    weir_cluster_t *c = weir_mem_calloc(1, sizeof(*c));
    c->idle_timeout_ms = WEIR_CLUSTER_DEFAULT_IDLE_TIMEOUT_MS;
    const weir_service_entry_t *se = weir_config_find_service(cfg, host_fqdn);
    const weir_service_port_t *sp = se ? find_service_port(se, port) : NULL;
    if (sp != NULL)
        port = sp->number;

    /* The name buffer also carries the subset after its NUL, and the host is the name's own
     * tail, so host and subset stay valid for the cluster's life whatever the caller passed. */
    char *name = weir_cluster_name(host_fqdn, subset, port);
    size_t name_len = strlen(name);
    size_t subset_len = subset ? strlen(subset) : 0;
    c->name = weir_mem_realloc(name, name_len + 1 + subset_len + 1);
    c->host = c->name + name_len - (host_fqdn ? strlen(host_fqdn) : 0);
    if (subset != NULL) {
        memcpy(c->name + name_len + 1, subset, subset_len + 1);
        c->subset = c->name + name_len + 1;
    }
    c->port = port;
    c->service = se;
    c->service_port = sp;

    /* Traffic policy: the subset's (already merged with the top level at load), else the
     * DestinationRule's, else Istio's default LEAST_REQUEST. */
    const weir_destination_rule_t *dr = weir_config_find_destination_rule(cfg, host_fqdn);
    const weir_subset_t *ss =
        (dr != NULL && subset != NULL) ? weir_destination_rule_subset(dr, subset) : NULL;
    weir_lb_policy_t policy = WEIR_LB_LEAST_REQUEST;
    if (ss != NULL && ss->policy.has_lb)
        policy = ss->policy.lb;
    else if (dr != NULL && dr->policy.has_lb)
        policy = dr->policy.lb;
    weir_lb_init(&c->lb, policy);

    /* A subset no DestinationRule defines is a cluster Envoy would not have (503 NC): leave it
     * empty rather than fall back to the whole service. */
    if (sp == NULL || (subset != NULL && ss == NULL))
        return c;
    const weir_labels_t *subset_labels = ss ? &ss->labels : NULL;

    size_t cap = 0;
    if (se->has_workload_selector) {
        for (size_t i = 0; i < cfg->n_workload_entries; i++) {
            const weir_workload_entry_t *we = &cfg->workload_entries[i];
            if (str_eq(we->namespace, se->namespace) &&
                weir_labels_match(&se->workload_selector, &we->labels))
                add_endpoint(c, &cap, we, subset_labels);
        }
    } else {
        for (size_t i = 0; i < se->n_endpoints; i++)
            add_endpoint(c, &cap, &se->endpoints[i], subset_labels);
    }
    return c;
}

void weir_cluster_free(weir_cluster_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_endpoints; i++) {
        free(c->endpoints[i].address);
        free(c->endpoints[i].host_port);
    }
    free(c->endpoints);
    free(c->name);
    free(c->sni);
    weir_string_list_free(&c->peer_ids);
    weir_tls_config_unref(c->tls_config);
    if (c->state) {
        weir_cluster_state_forget_detector(c->state, c->od);
        weir_cluster_state_unref(c->state);
    }
    weir_outlier_free(c->od);
    free(c);
}

weir_endpoint_t *weir_cluster_pick(weir_cluster_t *c, const weir_endpoint_t *const *excluded,
                                   size_t n_excluded, uint32_t r1, uint32_t r2)
{
    size_t n = c->n_endpoints;
    if (n == 0)
        return NULL;

    bool eligible_stack[PICK_STACK_MAX];
    uint32_t active_stack[PICK_STACK_MAX];
    bool *eligible = eligible_stack;
    uint32_t *active = active_stack;
    if (n > PICK_STACK_MAX) {
        eligible = weir_mem_alloc(n * sizeof(*eligible));
        active = weir_mem_alloc(n * sizeof(*active));
    }
    /* Ejected hosts are left out unless too few are healthy (Envoy's panic mode; Istio's
     * default threshold 0 never panics, so a cluster with every host ejected has none). */
    bool use_od = c->od != NULL &&
                  !weir_outlier_panic(weir_outlier_healthy_hosts(c->od), n, c->min_health_percent);
    for (size_t i = 0; i < n; i++) {
        eligible[i] = !(use_od && weir_outlier_is_ejected(c->od, i));
        active[i] = c->endpoints[i].active_requests;
    }
    for (size_t k = 0; k < n_excluded; k++) {
        /* Compared as integers: relational operators on pointers into different arrays are
         * undefined, and `excluded` may hold endpoints of another cluster (a retry that moved
         * to another destination). */
        uintptr_t x = (uintptr_t)excluded[k], base = (uintptr_t)c->endpoints;
        if (x >= base && x < base + n * sizeof(weir_endpoint_t) &&
            (x - base) % sizeof(weir_endpoint_t) == 0)
            eligible[(x - base) / sizeof(weir_endpoint_t)] = false;
    }

    int idx = weir_lb_pick(&c->lb, n, eligible, active, r1, r2);
    if (n > PICK_STACK_MAX) {
        free(eligible);
        free(active);
    }
    return idx < 0 ? NULL : &c->endpoints[idx];
}
