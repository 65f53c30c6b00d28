/* common/snapshot.c: see snapshot.h. */
#include "common/snapshot.h"

#include <assert.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/mem.h"
#include "common/cluster_state.h"
#include "common/outlier.h"
#include "common/tls.h"
#include "common/upstream_pool.h"

static weir_snapshot_t *current;
static uint64_t next_generation = 1;

/* Istio's client TLS decision (cluster_tls.go): the DestinationRule's tls when it has one
 * (the subset's, merged at load), else auto mTLS: an in-mesh service's endpoint labelled
 * security.istio.io/tlsMode=istio gets ISTIO_MUTUAL unless its own PeerAuthentication says
 * DISABLE. */
static weir_transport_t endpoint_transport(const weir_config_t *cfg, const weir_cluster_t *c,
                                           const weir_traffic_policy_t *policy,
                                           const weir_endpoint_t *ep)
{
    if (policy != NULL && policy->has_tls) {
        switch (policy->tls.mode) {
        case WEIR_CLIENT_TLS_ISTIO_MUTUAL:
            return WEIR_TRANSPORT_ISTIO_MUTUAL;
        case WEIR_CLIENT_TLS_SIMPLE:
        case WEIR_CLIENT_TLS_MUTUAL:
            return WEIR_TRANSPORT_TLS;
        case WEIR_CLIENT_TLS_DISABLE:
            return WEIR_TRANSPORT_PLAIN;
        }
    }
    if (c->service == NULL || c->service->location != WEIR_LOCATION_MESH_INTERNAL)
        return WEIR_TRANSPORT_PLAIN;
    const char *mode = weir_labels_get(ep->labels, "security.istio.io/tlsMode");
    if (mode == NULL || strcmp(mode, "istio") != 0)
        return WEIR_TRANSPORT_PLAIN;
    const char *ns = ep->workload && ep->workload->namespace ? ep->workload->namespace
                                                             : c->service->namespace;
    if (weir_config_peer_authentication_mode(cfg, WEIR_ROOT_NAMESPACE, ns, ep->labels, ep->port) ==
        WEIR_MTLS_DISABLE)
        return WEIR_TRANSPORT_PLAIN;
    return WEIR_TRANSPORT_ISTIO_MUTUAL;
}

/* DestinationRule SIMPLE/MUTUAL: a TLS client of its own, built once from the rule's files.
 * Plain TLS identity: the server's certificate must name the SNI (tls.sni, else the host). */
static void bind_originated_tls(weir_snapshot_t *s, weir_cluster_t *c, const weir_client_tls_t *t)
{
    c->sni = weir_mem_strdup(t->sni ? t->sni : c->host);
    if (t->credential_name || t->ca_certificates == NULL) {
        weir_diags_add(s->build_diags, WEIR_DIAG_WARNING, NULL, 0, 0,
                       "%s: DestinationRule tls needs caCertificates (credentialName is not "
                       "applied by weir yet): requests to it will fail",
                       c->name);
        return;
    }
    weir_tls_options_t o = {
        .role = WEIR_TLS_CLIENT,
        .root_pem_path = t->ca_certificates,
        .chain_pem_path = t->mode == WEIR_CLIENT_TLS_MUTUAL ? t->client_certificate : NULL,
        .key_pem_path = t->mode == WEIR_CLIENT_TLS_MUTUAL ? t->private_key : NULL,
    };
    char err[256];
    c->tls_config = weir_tls_config_new(&o, err, sizeof(err));
    if (c->tls_config == NULL)
        weir_diags_add(s->build_diags, WEIR_DIAG_WARNING, NULL, 0, 0,
                       "%s: DestinationRule tls: %s: requests to it will fail", c->name, err);
}

static void bind_transport(weir_snapshot_t *s, weir_cluster_t *c)
{
    const weir_config_t *cfg = s->config;
    const weir_destination_rule_t *dr = weir_config_find_destination_rule(cfg, c->host);
    const weir_subset_t *ss = dr && c->subset ? weir_destination_rule_subset(dr, c->subset) : NULL;
    const weir_traffic_policy_t *policy = ss ? &ss->policy : dr ? &dr->policy : NULL;
    bool any_mtls = false, any_tls = false;
    for (size_t i = 0; i < c->n_endpoints; i++) {
        c->endpoints[i].transport = endpoint_transport(cfg, c, policy, &c->endpoints[i]);
        any_mtls |= c->endpoints[i].transport == WEIR_TRANSPORT_ISTIO_MUTUAL;
        any_tls |= c->endpoints[i].transport == WEIR_TRANSPORT_TLS;
    }
    if (any_tls)
        bind_originated_tls(s, c, &policy->tls);
    if (!any_mtls)
        return;
    weir_buf_t sni = WEIR_BUF_INIT;
    weir_buf_appendf(&sni, "outbound_.%u_.%s_.%s", c->port, c->subset ? c->subset : "", c->host);
    c->sni = sni.base;
    if (c->service)
        c->peer_ids = weir_config_service_accounts(cfg, c->service, s->trust_domain);
}

/* The cluster's lasting state: circuit breakers from the DestinationRule's connectionPool
 * (Istio applies only values > 0), and an outlier detector that carries the previous
 * snapshot's host state over. */
static void bind_state(weir_snapshot_t *s, weir_cluster_t *c)
{
    const weir_destination_rule_t *dr = weir_config_find_destination_rule(s->config, c->host);
    const weir_subset_t *ss = dr && c->subset ? weir_destination_rule_subset(dr, c->subset) : NULL;
    const weir_traffic_policy_t *policy = ss ? &ss->policy : dr ? &dr->policy : NULL;
    c->state = weir_cluster_state_acquire(c->name);
    weir_cluster_limits_t l;
    weir_cluster_limits_unlimited(&l);
    if (policy && policy->has_connection_pool) {
        const weir_connection_pool_t *p = &policy->connection_pool;
        if (p->max_connections)
            l.max_connections = p->max_connections;
        if (p->http1_max_pending_requests)
            l.max_pending_requests = p->http1_max_pending_requests;
        if (p->http2_max_requests)
            l.max_requests = p->http2_max_requests;
        if (p->max_retries)
            l.max_retries = p->max_retries;
        l.max_requests_per_connection = p->max_requests_per_connection;
        c->connect_timeout_ms = p->connect_timeout_ms > 0 ? (uint64_t)p->connect_timeout_ms : 0;
        if (p->has_idle_timeout)
            c->idle_timeout_ms = (uint64_t)p->idle_timeout_ms;
        if (p->has_tcp_keepalive) {
            c->tcp_keepalive = true;
            c->keepalive_probes = p->tcp_keepalive.probes;
            /* Istio's durations become whole seconds, as Envoy's tcp_keepalive takes them */
            c->keepalive_time_s = (uint32_t)((p->tcp_keepalive.time_ms + 999) / 1000);
            c->keepalive_interval_s = (uint32_t)((p->tcp_keepalive.interval_ms + 999) / 1000);
        }
    }
    weir_cluster_state_set_limits(c->state, &l);
    if (policy == NULL || !policy->has_outlier_detection || c->n_endpoints == 0) {
        weir_cluster_state_set_detector(c->state, NULL, 0);
        return;
    }
    const weir_outlier_detection_t *o = &policy->outlier_detection;
    weir_outlier_config_t oc;
    weir_outlier_config_istio_defaults(&oc);
    oc.consecutive_5xx = o->consecutive_5xx;
    oc.enforcing_consecutive_5xx = o->enforcing_consecutive_5xx;
    oc.consecutive_gateway_failure = o->consecutive_gateway_errors;
    oc.enforcing_consecutive_gateway_failure = o->enforcing_consecutive_gateway_errors;
    oc.consecutive_local_origin_failure = o->consecutive_local_origin_failures;
    oc.enforcing_consecutive_local_origin_failure = true;
    oc.split_external_local_origin_errors = o->split_external_local_origin_errors;
    oc.interval_ms = (uint64_t)o->interval_ms;
    oc.base_ejection_ms = (uint64_t)o->base_ejection_time_ms;
    oc.max_ejection_percent = o->max_ejection_percent;
    c->min_health_percent = o->min_health_percent;
    const char **keys = weir_mem_calloc(c->n_endpoints, sizeof(*keys));
    for (size_t i = 0; i < c->n_endpoints; i++)
        keys[i] = c->endpoints[i].host_port;
    weir_outlier_t *prev = weir_cluster_state_detector(c->state);
    c->od = prev ? weir_outlier_rebuild(prev, &oc, c->n_endpoints, keys)
                 : weir_outlier_create(&oc, c->n_endpoints, keys);
    free(keys);
    weir_cluster_state_set_detector(c->state, c->od, oc.interval_ms);
}

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
    bind_transport(s, c);
    bind_state(s, c);
    for (size_t i = 0; i < c->n_endpoints; i++) {
        weir_endpoint_t *ep = &c->endpoints[i];
        /* pools are per cluster, as Envoy's (the circuit breakers count per cluster); a
         * connection made with mTLS for one SNI is no use for plain text or another SNI */
        weir_buf_t key = WEIR_BUF_INIT;
        weir_buf_appendf(&key, "%s %s", c->name, ep->host_port);
        if (ep->transport == WEIR_TRANSPORT_ISTIO_MUTUAL)
            weir_buf_appendf(&key, " mtls %s", c->sni);
        else if (ep->transport == WEIR_TRANSPORT_TLS)
            weir_buf_appendf(&key, " tls %s %p", c->sni, (void *)c->tls_config);
        ep->pool = weir_upstream_pool_acquire(key.base, (const struct sockaddr *)&ep->addr,
                                              ep->addr_len);
        weir_cluster_state_add_pool(c->state, ep->pool);
        weir_buf_free(&key);
    }
    s->clusters = weir_mem_realloc(s->clusters, (s->n_clusters + 1) * sizeof(*s->clusters));
    s->clusters[s->n_clusters++] = c;
    return c;
}

/* How a server's port takes connections; -1 for what weir cannot serve (with the reason). */
static int server_mode(const weir_gateway_server_t *srv, const char **why)
{
    const char *p = srv->protocol;
    if (strcmp(p, "HTTP") == 0 || strcmp(p, "HTTP2") == 0 || strcmp(p, "GRPC") == 0 ||
        strcmp(p, "GRPC-WEB") == 0)
        return WEIR_LISTENER_PLAIN_HTTP;
    if (strcmp(p, "HTTPS") == 0 || strcmp(p, "TLS") == 0) {
        if (srv->tls_mode == WEIR_TLS_MODE_PASSTHROUGH)
            return WEIR_LISTENER_TLS_PASSTHROUGH;
        if (strcmp(p, "HTTPS") == 0 &&
            (srv->tls_mode == WEIR_TLS_MODE_SIMPLE || srv->tls_mode == WEIR_TLS_MODE_MUTUAL))
            return WEIR_LISTENER_TLS_TERMINATE;
        *why = "this tls.mode is not served by weir yet";
        return -1;
    }
    *why = "this protocol is not served by weir yet";
    return -1;
}

static bool gateway_selects(const weir_gateway_t *gw, const weir_gateway_identity_t *id)
{
    return !gw->has_selector || weir_labels_match(&gw->selector, id->labels);
}

/* A terminating server's certificate: the Gateway's file paths, else its credentialName in
 * the credential directory. */
static struct weir_tls_config *server_tls(const weir_gateway_identity_t *id,
                                          const weir_gateway_server_t *srv, weir_diags_t *diags)
{
    char chain[4096], key[4096], ca[4096];
    if (srv->credential_name) {
        const char *dir = id->credential_dir ? id->credential_dir : "/etc/weir/credentials";
        snprintf(chain, sizeof(chain), "%s/%s/tls.crt", dir, srv->credential_name);
        snprintf(key, sizeof(key), "%s/%s/tls.key", dir, srv->credential_name);
        snprintf(ca, sizeof(ca), "%s/%s/ca.crt", dir, srv->credential_name);
    } else {
        snprintf(chain, sizeof(chain), "%s", srv->server_certificate ? srv->server_certificate : "");
        snprintf(key, sizeof(key), "%s", srv->private_key ? srv->private_key : "");
        snprintf(ca, sizeof(ca), "%s", srv->ca_certificates ? srv->ca_certificates : "");
    }
    bool mutual = srv->tls_mode == WEIR_TLS_MODE_MUTUAL;
    weir_tls_options_t o = {
        .role = WEIR_TLS_SERVER,
        .root_pem_path = mutual ? ca : NULL,
        .chain_pem_path = chain,
        .key_pem_path = key,
        .no_client_cert = !mutual,
    };
    char err[256];
    struct weir_tls_config *cfg = weir_tls_config_new(&o, err, sizeof(err));
    if (cfg == NULL)
        weir_diags_add(diags, WEIR_DIAG_WARNING, srv->place.file, srv->place.line, srv->place.col,
                       "port %u: cannot terminate TLS (%s); the server is not served", srv->port,
                       err);
    return cfg;
}

static void add_server(weir_listener_spec_t *spec, const weir_gateway_server_t *srv,
                       struct weir_tls_config *tls)
{
    spec->servers = weir_mem_realloc(spec->servers, (spec->n_servers + 1) * sizeof(*spec->servers));
    spec->servers[spec->n_servers++] = (weir_listener_server_t){.server = srv, .tls = tls};
}

/* VirtualService tls[] routes of the Gateways on a PASSTHROUGH port. */
static void build_sni_routes(weir_snapshot_t *s, weir_listener_spec_t *spec, const char **names,
                             size_t n_names)
{
    const weir_config_t *cfg = s->config;
    for (size_t v = 0; v < cfg->n_virtual_services; v++) {
        const weir_virtual_service_t *vs = &cfg->virtual_services[v];
        bool bound = false;
        for (size_t g = 0; g < vs->n_gateways && !bound; g++) {
            for (size_t k = 0; k < n_names && !bound; k++)
                bound = strcmp(vs->gateways[g], names[k]) == 0;
        }
        for (size_t r = 0; bound && r < vs->n_tls; r++) {
            const weir_l4_route_t *tr = &vs->tls[r];
            for (size_t m = 0; m < tr->n_matches; m++) {
                const weir_l4_match_t *mt = &tr->matches[m];
                if (mt->port && mt->port != spec->port)
                    continue;
                weir_sni_route_t sr = {.sni_hosts = mt->sni_hosts, .n_sni_hosts = mt->n_sni_hosts};
                sr.n_clusters = tr->n_route;
                sr.clusters = weir_mem_calloc(tr->n_route, sizeof(*sr.clusters));
                sr.cumulative_weight = weir_mem_calloc(tr->n_route, sizeof(*sr.cumulative_weight));
                uint64_t sum = 0;
                for (size_t d = 0; d < tr->n_route; d++) {
                    const weir_route_destination_t *rd = &tr->route[d];
                    sr.clusters[d] = lookup_cluster(s, rd->destination.host,
                                                    rd->destination.subset, rd->destination.port);
                    sum += tr->n_route == 1 ? 1 : (uint64_t)(rd->weight > 0 ? rd->weight : 0);
                    sr.cumulative_weight[d] = sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
                }
                spec->sni_routes = weir_mem_realloc(
                    spec->sni_routes, (spec->n_sni_routes + 1) * sizeof(*spec->sni_routes));
                spec->sni_routes[spec->n_sni_routes++] = sr;
            }
        }
    }
}

/* Collects, for one port, the Gateways and servers that share it, then builds its routes:
 * the HTTP route table (plain or terminated TLS) or the SNI routes (PASSTHROUGH). Istio merges
 * servers on one port into one listener the same way; the first server decides the port's
 * mode, and servers of another mode on the same port are left out with a warning. */
static void build_listener(weir_snapshot_t *s, const weir_gateway_identity_t *id, uint32_t port,
                           weir_listener_mode_t mode, weir_diags_t *diags)
{
    const weir_config_t *cfg = s->config;
    const char **names = NULL, **hosts = NULL;
    size_t n_names = 0, n_hosts = 0;
    weir_listener_spec_t spec = {.port = port, .mode = mode};
    for (size_t g = 0; g < cfg->n_gateways; g++) {
        const weir_gateway_t *gw = &cfg->gateways[g];
        if (!gateway_selects(gw, id))
            continue;
        bool named = false;
        for (size_t i = 0; i < gw->n_servers; i++) {
            const weir_gateway_server_t *srv = &gw->servers[i];
            const char *why = NULL;
            if (srv->port != port || server_mode(srv, &why) != (int)mode)
                continue;
            if (mode == WEIR_LISTENER_TLS_TERMINATE) {
                struct weir_tls_config *tls = server_tls(id, srv, diags);
                if (tls == NULL)
                    continue;
                add_server(&spec, srv, tls);
            } else if (mode == WEIR_LISTENER_TLS_PASSTHROUGH) {
                add_server(&spec, srv, NULL);
            }
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
    if (mode == WEIR_LISTENER_TLS_PASSTHROUGH)
        build_sni_routes(s, &spec, names, n_names);
    else
        spec.routes = weir_router_build(cfg, &scope);
    free(names);
    free(hosts);
    s->listeners = weir_mem_realloc(s->listeners, (s->n_listeners + 1) * sizeof(*s->listeners));
    s->listeners[s->n_listeners++] = spec;
}

/* What both roles' snapshots start with: the config they own, a generation, the trust domain
 * (cluster.local when none is given), and where the build reports. */
static weir_snapshot_t *snapshot_new(weir_config_t *cfg, const char *trust_domain,
                                     weir_diags_t *diags)
{
    weir_snapshot_t *s = weir_mem_calloc(1, sizeof(*s));
    s->refs = 1;
    s->generation = next_generation++;
    s->config = cfg;
    s->trust_domain = weir_mem_strdup(trust_domain ? trust_domain : "cluster.local");
    s->build_diags = diags;
    return s;
}

weir_snapshot_t *weir_snapshot_build_gateway(weir_config_t *cfg, const weir_gateway_identity_t *id,
                                             weir_diags_t *diags)
{
    weir_snapshot_t *s = snapshot_new(cfg, id->trust_domain, diags);
    size_t selected = 0;
    for (size_t g = 0; g < cfg->n_gateways; g++) {
        const weir_gateway_t *gw = &cfg->gateways[g];
        if (!gateway_selects(gw, id))
            continue;
        selected++;
        for (size_t i = 0; i < gw->n_servers; i++) {
            const weir_gateway_server_t *srv = &gw->servers[i];
            const char *why = NULL;
            int mode = server_mode(srv, &why);
            if (mode < 0) {
                weir_diags_add(diags, WEIR_DIAG_WARNING, srv->place.file, srv->place.line,
                               srv->place.col, "servers[%zu]: %s on port %u: %s; ignored", i,
                               srv->protocol, srv->port, why);
                continue;
            }
            const weir_listener_spec_t *l = weir_snapshot_listener(s, srv->port);
            if (l == NULL)
                build_listener(s, id, srv->port, (weir_listener_mode_t)mode, diags);
            else if ((int)l->mode != mode)
                weir_diags_add(diags, WEIR_DIAG_WARNING, srv->place.file, srv->place.line,
                               srv->place.col,
                               "servers[%zu]: port %u already serves another protocol or TLS "
                               "mode; this server is ignored",
                               i, srv->port);
        }
    }
    if (selected == 0)
        weir_diags_add(diags, WEIR_DIAG_WARNING, NULL, 0, 0,
                       "no Gateway selects this gateway's labels: nothing to listen on");
    s->build_diags = NULL;
    return s;
}

/* "*", "*.suffix" or exact; returns a rank for precedence (higher wins), or -1. */
static int host_rank(const char *pattern, const char *name)
{
    if (strcmp(pattern, "*") == 0)
        return 0;
    if (name == NULL)
        return -1;
    if (pattern[0] == '*' && pattern[1] == '.') {
        size_t pl = strlen(pattern) - 1, nl = strlen(name);
        return nl > pl && strcasecmp(name + nl - pl, pattern + 1) == 0 ? (int)pl : -1;
    }
    return strcasecmp(pattern, name) == 0 ? 1 << 20 : -1;
}

const weir_listener_server_t *weir_listener_pick_server(const weir_listener_spec_t *l,
                                                        const char *sni)
{
    const weir_listener_server_t *best = NULL;
    int best_rank = -1;
    for (size_t i = 0; i < l->n_servers; i++) {
        const weir_gateway_server_t *srv = l->servers[i].server;
        for (size_t h = 0; h < srv->n_hosts; h++) {
            int r = host_rank(srv->hosts[h], sni);
            if (r > best_rank) {
                best_rank = r;
                best = &l->servers[i];
            }
        }
    }
    return best;
}

const weir_sni_route_t *weir_listener_pick_sni_route(const weir_listener_spec_t *l,
                                                     const char *sni)
{
    const weir_sni_route_t *best = NULL;
    int best_rank = -1;
    for (size_t i = 0; i < l->n_sni_routes; i++) { /* the first route wins among equals */
        for (size_t h = 0; h < l->sni_routes[i].n_sni_hosts; h++) {
            int r = host_rank(l->sni_routes[i].sni_hosts[h], sni);
            if (r > best_rank) {
                best_rank = r;
                best = &l->sni_routes[i];
            }
        }
    }
    return best;
}

/* PeerAuthentication is resolved once per snapshot: the workload-wide mode, plus every port
 * some policy names whose mode differs. */
static void compute_inbound_mtls(weir_snapshot_t *s, const weir_sidecar_identity_t *id)
{
    const weir_config_t *cfg = s->config;
    s->inbound_mtls =
        weir_config_peer_authentication_mode(cfg, WEIR_ROOT_NAMESPACE, id->namespace, id->labels, 0);
    for (size_t i = 0; i < cfg->n_peer_authentications; i++) {
        const weir_peer_authentication_t *pa = &cfg->peer_authentications[i];
        for (size_t p = 0; p < pa->n_port_mtls; p++) {
            uint32_t port = pa->port_mtls[p].port;
            if (weir_snapshot_inbound_mtls(s, port) != s->inbound_mtls)
                continue; /* already listed */
            weir_mtls_mode_t m = weir_config_peer_authentication_mode(
                cfg, WEIR_ROOT_NAMESPACE, id->namespace, id->labels, port);
            if (m == s->inbound_mtls)
                continue;
            s->inbound_port_mtls = weir_mem_realloc(
                s->inbound_port_mtls, (s->n_inbound_port_mtls + 1) * sizeof(*s->inbound_port_mtls));
            s->inbound_port_mtls[s->n_inbound_port_mtls++] = (weir_port_mtls_t){.port = port, .mode = m};
        }
    }
}

weir_mtls_mode_t weir_snapshot_inbound_mtls(const weir_snapshot_t *s, uint32_t port)
{
    for (size_t i = 0; i < s->n_inbound_port_mtls; i++) {
        if (s->inbound_port_mtls[i].port == port)
            return s->inbound_port_mtls[i].mode;
    }
    return s->inbound_mtls;
}

static bool has_outbound_port(const weir_snapshot_t *s, uint32_t port)
{
    return weir_snapshot_outbound_routes(s, port) != NULL;
}

/* What the sidecar parses as HTTP: Istio's HTTP family, and an unset protocol, which Istio
 * sniffs and weir, speaking HTTP/1.1 only, takes to be HTTP. */
static bool http_protocol(const char *p)
{
    return p == NULL || p[0] == '\0' || strcmp(p, "HTTP") == 0 || strcmp(p, "HTTP2") == 0 ||
           strcmp(p, "GRPC") == 0 || strcmp(p, "GRPC-WEB") == 0 || strcmp(p, "HTTP_PROXY") == 0;
}

weir_snapshot_t *weir_snapshot_build_sidecar(weir_config_t *cfg, const weir_sidecar_identity_t *id,
                                             weir_diags_t *diags)
{
    weir_snapshot_t *s = snapshot_new(cfg, id->trust_domain, diags);
    compute_inbound_mtls(s, id);
    static const char *const mesh[] = {"mesh"};
    for (size_t i = 0; i < cfg->n_service_entries; i++) {
        const weir_service_entry_t *se = &cfg->service_entries[i];
        for (size_t p = 0; p < se->n_ports; p++) {
            uint32_t port = se->ports[p].number;
            if (!http_protocol(se->ports[p].protocol)) {
                for (size_t a = 0; a < se->n_addresses; a++) {
                    s->opaque = weir_mem_realloc(s->opaque, (s->n_opaque + 1) * sizeof(*s->opaque));
                    s->opaque[s->n_opaque++] =
                        (struct weir_opaque_port){&se->address_ranges[a], port};
                }
                continue;
            }
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
    s->build_diags = NULL;
    return s;
}

bool weir_snapshot_outbound_opaque(const weir_snapshot_t *s, const struct sockaddr *addr,
                                   uint32_t port)
{
    for (size_t i = 0; i < s->n_opaque; i++) {
        if (s->opaque[i].port == port && weir_cidr_contains(s->opaque[i].range, addr))
            return true;
    }
    return false;
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
        weir_listener_spec_t *l = &s->listeners[i];
        weir_router_free(l->routes);
        free(l->bind);
        for (size_t k = 0; k < l->n_servers; k++)
            weir_tls_config_unref(l->servers[k].tls);
        free(l->servers);
        for (size_t k = 0; k < l->n_sni_routes; k++) {
            free(l->sni_routes[k].clusters);
            free(l->sni_routes[k].cumulative_weight);
        }
        free(l->sni_routes);
    }
    free(s->listeners);
    for (size_t i = 0; i < s->n_outbound; i++)
        weir_router_free(s->outbound[i].routes);
    free(s->outbound);
    free(s->opaque);
    for (size_t i = 0; i < s->n_clusters; i++) {
        weir_cluster_t *c = s->clusters[i];
        for (size_t e = 0; e < c->n_endpoints; e++) {
            if (c->endpoints[e].pool)
                weir_upstream_pool_unref(c->endpoints[e].pool);
        }
        weir_cluster_free(c);
    }
    free(s->clusters);
    free(s->trust_domain);
    free(s->inbound_port_mtls);
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
