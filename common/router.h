/* common/router.h: VirtualService routing, compiled at config load and matched per request.
 *
 * A route table serves one listener: its virtual hosts are the hosts of the VirtualServices
 * bound to that listener, each holding the http[] rules of those VirtualServices in order
 * (one weir_route_t per match[] entry, as Istio emits one Envoy route per entry; a rule with
 * no match is one catch-all route, and nothing after a catch-all is kept). Matching, Envoy's:
 *  - vhost by the request's authority with any :port removed (case-insensitive): exact domain,
 *    then the longest `*.suffix`, then `*`;
 *  - first route whose match holds: uri exact/prefix/regex on the path without the query
 *    (regex is a full match), scheme, method, authority (as sent, port included), headers
 *    (presence for `{}`), withoutHeaders (a missing header is ""), queryParams (`exact: ""`
 *    matches `?key`).
 *
 * Ownership: the table owns its vhosts and routes; routes point into the weir_config_t and
 * at clusters owned by the snapshot, both of which outlive the table. Immutable after build. */
#ifndef WEIR_ROUTER_H
#define WEIR_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cluster.h"
#include "common/config.h"
#include "common/http_codec.h"
#include "common/mem.h"
#include "common/retry.h"

typedef struct weir_route {
    const weir_virtual_service_t *vs; /* NULL for a default route (no VirtualService) */
    const weir_http_route_t *rule;
    const weir_http_match_t *match; /* NULL: the rule has no match (catch-all) */
    /* ROUTE action: clusters[i] serves rule->route[i]; cumulative_weight[i] is the sum of
     * the effective weights of 0..i (a single destination has weight 1; weight 0 is never
     * picked). */
    weir_cluster_t **clusters;
    uint32_t *cumulative_weight;
    size_t n_clusters;
    char *name; /* for %ROUTE_NAME%: rule->name, else "default" */
    /* The rule's `retries` compiled for common/retry, or Istio's default policy when the rule
     * has none (S4). */
    weir_retry_policy_t retry_policy;
    /* ROUTE action: mirror_clusters[i] receives rule->mirrors[i]'s copies. */
    weir_cluster_t **mirror_clusters;
    size_t n_mirrors;
} weir_route_t;

typedef struct {
    char *domain; /* "*", "*.example.com" or "example.com" (lower case) */
    weir_route_t *routes;
    size_t n_routes;
    bool shared_routes; /* an alias: routes belong to the vhost of the service's full name */
} weir_vhost_t;

typedef struct weir_route_table {
    weir_vhost_t *vhosts; /* ordered for lookup: exact, suffix (longest first), "*" */
    size_t n_vhosts;
} weir_route_table_t;

/* Returns the cluster for a destination; the snapshot owns and caches it. */
typedef weir_cluster_t *(*weir_cluster_lookup_fn)(void *ctx, const char *host_fqdn,
                                                  const char *subset, uint32_t port);

typedef struct {
    /* Which VirtualServices bind: those whose gateways list (or a match's gateways) holds one
     * of these names ("<ns>/<name>", or "mesh" for sidecars). */
    const char *const *gateway_names;
    size_t n_gateway_names;
    /* Hosts the listener serves (Gateway server hosts, namespace part stripped); a VS host
     * binds when it equals one or falls under a wildcard one ("*" takes all). Ignored when
     * n_server_hosts is 0 (sidecars). */
    const char *const *server_hosts;
    size_t n_server_hosts;
    uint32_t listener_port; /* match.port filter; destination port when the service has many */
    /* Sidecars only (NULL on gateways): every ServiceEntry host with a port equal to
     * listener_port gets a vhost, routed to that service itself when no VirtualService claims
     * the host (Istio's default route), and is also found by the names Kubernetes DNS would
     * resolve from a pod in this namespace (`web-service`, `web-service.default`,
     * `web-service.default.svc`) and by the service's addresses. */
    const char *proxy_namespace;
    weir_cluster_lookup_fn lookup;
    void *lookup_ctx;
} weir_router_scope_t;

/* Builds the table. Never NULL; a table with no vhosts answers every request 404. */
weir_route_table_t *weir_router_build(const weir_config_t *cfg, const weir_router_scope_t *scope);
void weir_router_free(weir_route_table_t *t);

/* What matching needs from a request. */
typedef struct {
    const char *method;
    size_t method_len;
    const char *path; /* request-target: path and query */
    size_t path_len;
    const char *authority; /* Host as sent, may carry :port */
    size_t authority_len;
    const char *scheme; /* "http" or "https" */
    const weir_http_header_t *headers;
    size_t n_headers;
} weir_route_request_t;

/* The vhost for an authority, or NULL. */
const weir_vhost_t *weir_router_find_vhost(const weir_route_table_t *t, const char *authority,
                                           size_t len);
/* The first matching route, or NULL (404 NR). */
const weir_route_t *weir_router_match(const weir_route_table_t *t, const weir_route_request_t *req);

/* Index into route->clusters for a weighted pick with `random_value` (as Envoy: the value mod
 * the total weight selects the bucket). */
size_t weir_route_pick(const weir_route_t *r, uint32_t random_value);

/* The path to send upstream under rewrite.uri, with Envoy's semantics: a prefix match replaces
 * exactly the matched prefix (`/v1` + `/` turns `/v1/x` into `//x`), exact and regex matches
 * replace the whole path; the query string is kept. Returns false (out untouched) when the
 * route does not rewrite the path. */
bool weir_route_rewrite_path(const weir_route_t *r, const char *path, size_t path_len,
                             weir_buf_t *out);

/* The Location of a redirect route: scheme (redirect.scheme, else `https` when `tls`, else
 * `http`), authority (redirect.authority, else the request's without port), port (redirect.port,
 * else derivePort rules; 80/443 omitted by default), path (redirect.uri, else the request's). */
void weir_route_redirect_location(const weir_route_t *r, const weir_route_request_t *req,
                                  uint32_t listener_port, bool tls, weir_buf_t *out);

#endif
