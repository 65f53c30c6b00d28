/* common/snapshot.c: see snapshot.h. */
#include "common/snapshot.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/upstream_pool.h"

static weir_snapshot_t *current;
static uint64_t next_generation = 1;

/* Routes reach clusters through this, so each (host, subset, port) is built once and every
 * route sharing it shares its load-balancer state. */
static weir_cluster_t *lookup_cluster(void *ctx, const char *host, const char *subset,
                                      uint32_t port)
{
    weir_snapshot_t *s = ctx;
    for (size_t i = 0; i < s->n_clusters; i++) {
        weir_cluster_t *c = s->clusters[i];
        bool same_subset = (c->subset == NULL && subset == NULL) ||
                           (c->subset && subset && strcmp(c->subset, subset) == 0);
        if (strcmp(c->host, host) == 0 && same_subset && (port == 0 || c->port == port))
            return c;
    }
    weir_cluster_t *c = weir_cluster_build(s->config, host, subset, port);
    for (size_t i = 0; i < c->n_endpoints; i++) {
        weir_endpoint_t *ep = &c->endpoints[i];
        ep->pool = weir_upstream_pool_acquire(ep->host_port, (const struct sockaddr *)&ep->addr,
                                              ep->addr_len);
    }
    s->clusters = weir_mem_realloc(s->clusters, (s->n_clusters + 1) * sizeof(*s->clusters));
    s->clusters[s->n_clusters++] = c;
    return c;
}

static bool protocol_is_http(const char *p)
{
    return strcmp(p, "HTTP") == 0 || strcmp(p, "HTTP2") == 0 || strcmp(p, "GRPC") == 0 ||
           strcmp(p, "GRPC-WEB") == 0;
}

static bool gateway_selects(const weir_gateway_t *gw, const weir_gateway_identity_t *id)
{
    return !gw->has_selector || weir_labels_match(&gw->selector, id->labels);
}

/* Collects, for one port, the Gateways and server hosts that share it, then builds its route
 * table. Istio merges servers on one port into one listener the same way. */
static void build_listener(weir_snapshot_t *s, const weir_gateway_identity_t *id, uint32_t port,
                           weir_diags_t *diags)
{
    const weir_config_t *cfg = s->config;
    const char **names = NULL, **hosts = NULL;
    size_t n_names = 0, n_hosts = 0;
    weir_listener_spec_t spec = {.port = port};
    for (size_t g = 0; g < cfg->n_gateways; g++) {
        const weir_gateway_t *gw = &cfg->gateways[g];
        if (!gateway_selects(gw, id))
            continue;
        bool named = false;
        for (size_t i = 0; i < gw->n_servers; i++) {
            const weir_gateway_server_t *srv = &gw->servers[i];
            if (srv->port != port || !protocol_is_http(srv->protocol))
                continue;
            if (!named) {
                names = weir_mem_realloc(names, (n_names + 1) * sizeof(*names));
                names[n_names++] = gw->qualified_name;
                named = true;
            }
            hosts = weir_mem_realloc(hosts, (n_hosts + srv->n_hosts) * sizeof(*hosts));
            for (size_t h = 0; h < srv->n_hosts; h++)
                hosts[n_hosts++] = srv->hosts[h];
            if (srv->https_redirect)
                spec.https_redirect = true;
            if (srv->bind && spec.bind == NULL)
                spec.bind = weir_mem_strdup(srv->bind);
        }
    }
    if (spec.bind == NULL)
        spec.bind = weir_mem_strdup("0.0.0.0");
    weir_router_scope_t scope = {
        .gateway_names = names,
        .n_gateway_names = n_names,
        .server_hosts = hosts,
        .n_server_hosts = n_hosts,
        .listener_port = port,
        .lookup = lookup_cluster,
        .lookup_ctx = s,
    };
    spec.routes = weir_router_build(cfg, &scope);
    free(names);
    free(hosts);
    s->listeners = weir_mem_realloc(s->listeners, (s->n_listeners + 1) * sizeof(*s->listeners));
    s->listeners[s->n_listeners++] = spec;
    (void)diags;
}

weir_snapshot_t *weir_snapshot_build_gateway(weir_config_t *cfg, const weir_gateway_identity_t *id,
                                             weir_diags_t *diags)
{
    weir_snapshot_t *s = weir_mem_calloc(1, sizeof(*s));
    s->refs = 1;
    s->generation = next_generation++;
    s->config = cfg;
    size_t selected = 0;
    for (size_t g = 0; g < cfg->n_gateways; g++) {
        const weir_gateway_t *gw = &cfg->gateways[g];
        if (!gateway_selects(gw, id))
            continue;
        selected++;
        for (size_t i = 0; i < gw->n_servers; i++) {
            const weir_gateway_server_t *srv = &gw->servers[i];
            if (!protocol_is_http(srv->protocol)) {
                weir_diags_add(diags, WEIR_DIAG_WARNING, srv->place.file, srv->place.line,
                               srv->place.col,
                               "servers[%zu]: protocol %s on port %u is not served by weir yet; "
                               "ignored",
                               i, srv->protocol, srv->port);
                continue;
            }
            if (weir_snapshot_listener(s, srv->port) == NULL)
                build_listener(s, id, srv->port, diags);
        }
    }
    if (selected == 0)
        weir_diags_add(diags, WEIR_DIAG_WARNING, NULL, 0, 0,
                       "no Gateway selects this gateway's labels: nothing to listen on");
    return s;
}

static bool has_outbound_port(const weir_snapshot_t *s, uint32_t port)
{
    return weir_snapshot_outbound_routes(s, port) != NULL;
}

weir_snapshot_t *weir_snapshot_build_sidecar(weir_config_t *cfg, const weir_sidecar_identity_t *id,
                                             weir_diags_t *diags)
{
    weir_snapshot_t *s = weir_mem_calloc(1, sizeof(*s));
    s->refs = 1;
    s->generation = next_generation++;
    s->config = cfg;
    static const char *const mesh[] = {"mesh"};
    for (size_t i = 0; i < cfg->n_service_entries; i++) {
        const weir_service_entry_t *se = &cfg->service_entries[i];
        for (size_t p = 0; p < se->n_ports; p++) {
            uint32_t port = se->ports[p].number;
            if (has_outbound_port(s, port))
                continue;
            weir_router_scope_t scope = {
                .gateway_names = mesh,
                .n_gateway_names = 1,
                .listener_port = port,
                .proxy_namespace = id->namespace,
                .lookup = lookup_cluster,
                .lookup_ctx = s,
            };
            s->outbound = weir_mem_realloc(s->outbound, (s->n_outbound + 1) * sizeof(*s->outbound));
            /* append before building: lookups during the build may add clusters, not ports */
            s->outbound[s->n_outbound].port = port;
            s->outbound[s->n_outbound].routes = NULL;
            s->n_outbound++;
            s->outbound[s->n_outbound - 1].routes = weir_router_build(cfg, &scope);
        }
    }
    (void)diags;
    return s;
}

const weir_route_table_t *weir_snapshot_outbound_routes(const weir_snapshot_t *s, uint32_t port)
{
    for (size_t i = 0; i < s->n_outbound; i++) {
        if (s->outbound[i].port == port)
            return s->outbound[i].routes;
    }
    return NULL;
}

weir_snapshot_t *weir_snapshot_ref(weir_snapshot_t *s)
{
    s->refs++;
    return s;
}

void weir_snapshot_unref(weir_snapshot_t *s)
{
    if (s == NULL)
        return;
    assert(s->refs > 0);
    if (--s->refs > 0)
        return;
    for (size_t i = 0; i < s->n_listeners; i++) {
        weir_router_free(s->listeners[i].routes);
        free(s->listeners[i].bind);
    }
    free(s->listeners);
    for (size_t i = 0; i < s->n_outbound; i++)
        weir_router_free(s->outbound[i].routes);
    free(s->outbound);
    for (size_t i = 0; i < s->n_clusters; i++) {
        weir_cluster_t *c = s->clusters[i];
        for (size_t e = 0; e < c->n_endpoints; e++) {
            if (c->endpoints[e].pool)
                weir_upstream_pool_unref(c->endpoints[e].pool);
        }
        weir_cluster_free(c);
    }
    free(s->clusters);
    weir_config_free(s->config);
    free(s);
}

const weir_listener_spec_t *weir_snapshot_listener(const weir_snapshot_t *s, uint32_t port)
{
    for (size_t i = 0; i < s->n_listeners; i++) {
        if (s->listeners[i].port == port)
            return &s->listeners[i];
    }
    return NULL;
}

weir_snapshot_t *weir_snapshot_current(void)
{
    return current;
}

void weir_snapshot_set_current(weir_snapshot_t *s)
{
    weir_snapshot_t *old = current;
    current = s;
    weir_snapshot_unref(old);
}
