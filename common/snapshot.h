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

typedef struct weir_snapshot {
    unsigned refs;
    uint64_t generation;
    weir_config_t *config;
    weir_listener_spec_t *listeners;
    size_t n_listeners;
    weir_cluster_t **clusters; /* every cluster a route reaches, built once each */
    size_t n_clusters;
} weir_snapshot_t;

/* Who the gateway is: its pod labels (Gateway selectors are matched against them). */
typedef struct {
    const weir_labels_t *labels;
    const char *namespace;
} weir_gateway_identity_t;

/* Builds a gateway's snapshot: a listener for each port of each Gateway server whose Gateway
 * selects `id`, routing the VirtualServices bound to those Gateways. Takes ownership of cfg
 * (freed on failure too). Problems (a server protocol weir cannot serve yet, a port claimed
 * twice with different binds) are warnings in diags. Never NULL. */
weir_snapshot_t *weir_snapshot_build_gateway(weir_config_t *cfg, const weir_gateway_identity_t *id,
                                             weir_diags_t *diags);

weir_snapshot_t *weir_snapshot_ref(weir_snapshot_t *s);
void weir_snapshot_unref(weir_snapshot_t *s);

/* The listener spec serving `port`, or NULL. */
const weir_listener_spec_t *weir_snapshot_listener(const weir_snapshot_t *s, uint32_t port);

/* The snapshot new requests use. set_current takes over the caller's reference. */
weir_snapshot_t *weir_snapshot_current(void);
void weir_snapshot_set_current(weir_snapshot_t *s);

#endif
