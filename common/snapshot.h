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

typedef struct {
    char *bind;    /* "0.0.0.0" unless a Gateway server says `bind` */
    uint32_t port;
    bool https_redirect; /* an HTTP server with tls.httpsRedirect: every request gets a 301 */
    weir_route_table_t *routes;
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
    weir_outbound_port_t *outbound; /* sidecar: one per port any ServiceEntry declares */
    size_t n_outbound;
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

/* A sidecar's outbound routes for a destination port, or NULL when no service uses it (the
 * connection is then passed through as plain TCP, Istio's ALLOW_ANY). */
const weir_route_table_t *weir_snapshot_outbound_routes(const weir_snapshot_t *s, uint32_t port);

/* How an inbound connection to `port` must arrive: STRICT (mTLS only), PERMISSIVE (mTLS or
 * plain text, told apart by the first bytes) or DISABLE (plain text only). */
weir_mtls_mode_t weir_snapshot_inbound_mtls(const weir_snapshot_t *s, uint32_t port);

weir_snapshot_t *weir_snapshot_ref(weir_snapshot_t *s);
void weir_snapshot_unref(weir_snapshot_t *s);

/* The listener spec serving `port`, or NULL. */
const weir_listener_spec_t *weir_snapshot_listener(const weir_snapshot_t *s, uint32_t port);

/* The snapshot new requests use. set_current takes over the caller's reference. */
weir_snapshot_t *weir_snapshot_current(void);
void weir_snapshot_set_current(weir_snapshot_t *s);

#endif
