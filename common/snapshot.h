/* common/snapshot.h: the compiled configuration one proxy serves, immutable and refcounted.
 *
 * A snapshot is built once per config load from a weir_config_t for one role and identity
 * (a gateway's labels): its listeners, each listener's route table, and the clusters those
 * routes reach, each endpoint already bound to its connection pool. The request path takes a
 * reference when a request starts and reads only the snapshot from then on, so a reload that
 * swaps in a new one never changes a request in flight.
 *
 * Ownership: the snapshot owns the config, the route tables and the clusters. Loop thread only. */
#ifndef WEIR_SNAPSHOT_H
#define WEIR_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/cluster.h"
#include "common/config.h"
#include "common/diag.h"
#include "common/router.h"

/* How a gateway port takes its connections. */
typedef enum {
    WEIR_LISTENER_PLAIN_HTTP,      /* HTTP servers */
    WEIR_LISTENER_TLS_TERMINATE,   /* HTTPS servers, tls.mode SIMPLE or MUTUAL */
    WEIR_LISTENER_TLS_PASSTHROUGH  /* HTTPS/TLS servers, tls.mode PASSTHROUGH: routed by SNI */
} weir_listener_mode_t;

/* A server on a TLS port: its hosts choose it by SNI; a terminating one has its certificate. */
typedef struct {
    const weir_gateway_server_t *server;
    struct weir_tls_config *tls; /* TERMINATE: a reference; NULL otherwise */
} weir_listener_server_t;

/* A VirtualService tls[] route on a PASSTHROUGH port: SNI patterns to weighted clusters. */
typedef struct {
    char *const *sni_hosts; /* point into the config */
    size_t n_sni_hosts;
    weir_cluster_t **clusters;
    uint32_t *cumulative_weight;
    size_t n_clusters;
} weir_sni_route_t;

typedef struct {
    char *bind;    /* "0.0.0.0" unless a Gateway server says `bind` */
    uint32_t port;
    bool https_redirect; /* an HTTP server with tls.httpsRedirect: every request gets a 301 */
    weir_route_table_t *routes;
    weir_listener_mode_t mode;
    weir_listener_server_t *servers; /* TLS ports */
    size_t n_servers;
    weir_sni_route_t *sni_routes; /* PASSTHROUGH ports */
    size_t n_sni_routes;
} weir_listener_spec_t;

/* A sidecar's outbound routes for one service port (Envoy's route config named "80"). */
typedef struct {
    uint32_t port;
    weir_route_table_t *routes;
} weir_outbound_port_t;

typedef struct weir_snapshot {
    unsigned refs;
    uint64_t generation;
    weir_config_t *config;
    weir_listener_spec_t *listeners; /* gateway */
    size_t n_listeners;
    weir_outbound_port_t *outbound; /* sidecar: one per port a ServiceEntry declares HTTP */
    size_t n_outbound;
    /* sidecar: service addresses and ports whose protocol is not HTTP (TCP, TLS, HTTPS,
     * MONGO ...): relayed as bytes; ranges point into config */
    struct weir_opaque_port {
        const weir_cidr_t *range;
        uint32_t port;
    } *opaque;
    size_t n_opaque;
    weir_cluster_t **clusters; /* every cluster a route reaches, built once each */
    size_t n_clusters;
    char *trust_domain;
    weir_diags_t *build_diags; /* where problems found while building go; NULL afterwards */
    /* Sidecar: how inbound connections must arrive (PeerAuthentication for this workload):
     * the workload-wide mode and the ports that override it. */
    weir_mtls_mode_t inbound_mtls;
    weir_port_mtls_t *inbound_port_mtls;
    size_t n_inbound_port_mtls;
} weir_snapshot_t;

/* Who the gateway is: its pod labels (Gateway selectors are matched against them). */
typedef struct {
    const weir_labels_t *labels;
    const char *namespace;
    const char *trust_domain; /* SPIFFE IDs of mesh peers: spiffe://<td>/ns/<ns>/sa/<sa> */
    /* Where a server's tls.credentialName is found: <dir>/<credentialName>/tls.crt, tls.key
     * and, for MUTUAL, ca.crt (the keys of a Kubernetes TLS Secret mounted as a directory). */
    const char *credential_dir;
} weir_gateway_identity_t;

/* Builds a gateway's snapshot: a listener for each port of each Gateway server whose Gateway
 * selects `id`, routing the VirtualServices bound to those Gateways. Takes ownership of cfg
 * (freed on failure too). Problems (a server protocol weir cannot serve yet, a port claimed
 * twice with different binds) are warnings in diags. Never NULL. */
weir_snapshot_t *weir_snapshot_build_gateway(weir_config_t *cfg, const weir_gateway_identity_t *id,
                                             weir_diags_t *diags);

/* Who a sidecar is: its pod's namespace (short names and PeerAuthentication are read in it),
 * labels and service account. */
typedef struct {
    const weir_labels_t *labels;
    const char *namespace;
    const char *service_account;
    const char *trust_domain;
} weir_sidecar_identity_t;

/* Builds a sidecar's snapshot: for every port a ServiceEntry declares, the outbound routes of
 * the VirtualServices that apply to the mesh plus a default route for every service host none
 * of them claims. Takes ownership of cfg. Never NULL. */
weir_snapshot_t *weir_snapshot_build_sidecar(weir_config_t *cfg, const weir_sidecar_identity_t *id,
                                             weir_diags_t *diags);

/* A sidecar's outbound routes for a destination port, or NULL when no service uses it for
 * HTTP (the connection is then passed through as plain TCP: Istio's ALLOW_ANY, or a TCP, TLS
 * or other opaque service port). Ports whose protocol a ServiceEntry leaves unset are HTTP
 * (Istio would sniff). */
const weir_route_table_t *weir_snapshot_outbound_routes(const weir_snapshot_t *s, uint32_t port);

/* True when (addr, port) is a service address whose port is not HTTP: a port can carry HTTP
 * for one service and TCP for another, told apart by the service address. */
bool weir_snapshot_outbound_opaque(const weir_snapshot_t *s, const struct sockaddr *addr,
                                   uint32_t port);

/* How an inbound connection to `port` must arrive: STRICT (mTLS only), PERMISSIVE (mTLS or
 * plain text, told apart by the first bytes) or DISABLE (plain text only). */
weir_mtls_mode_t weir_snapshot_inbound_mtls(const weir_snapshot_t *s, uint32_t port);

weir_snapshot_t *weir_snapshot_ref(weir_snapshot_t *s);
void weir_snapshot_unref(weir_snapshot_t *s);

/* The server a ClientHello's SNI picks on a TLS port (exact host, then the longest `*.suffix`,
 * then `*`; NULL sni matches only `*`), or NULL. */
const weir_listener_server_t *weir_listener_pick_server(const weir_listener_spec_t *l,
                                                        const char *sni);
/* The PASSTHROUGH route for an SNI, or NULL. */
const weir_sni_route_t *weir_listener_pick_sni_route(const weir_listener_spec_t *l,
                                                     const char *sni);

/* The listener spec serving `port`, or NULL. */
const weir_listener_spec_t *weir_snapshot_listener(const weir_snapshot_t *s, uint32_t port);

/* The snapshot new requests use. set_current takes over the caller's reference. */
weir_snapshot_t *weir_snapshot_current(void);
void weir_snapshot_set_current(weir_snapshot_t *s);

#endif
