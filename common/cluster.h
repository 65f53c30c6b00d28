/* common/cluster.h: one upstream cluster, as Envoy names it
 * `outbound|<port>|<subset>|<host>`: the endpoints of a service port, narrowed to a
 * DestinationRule subset, and the traffic policy that applies to them.
 *
 * Endpoints come from the registry in the config: the ServiceEntry whose hosts contain the
 * host, its inline endpoints or (workloadSelector) the WorkloadEntries of its namespace whose
 * labels match; a subset keeps those whose labels match the subset's labels. The endpoint port
 * is the WorkloadEntry's `ports[<service port name>]`, else the port's targetPort, else its
 * number.
 *
 * Ownership: a cluster is built at config load and owned by the snapshot that built it; its
 * endpoints are owned by it. Labels and names point into the weir_config_t, which outlives it.
 * Mutable per-endpoint counters (active requests) are only touched on the loop thread. */
#ifndef WEIR_CLUSTER_H
#define WEIR_CLUSTER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/config.h"
#include "common/lb.h"

/* How weir reaches an endpoint. ISTIO_MUTUAL: mTLS with the mesh certificates, the peer's
 * SPIFFE ID checked against the service's identities (Istio's secure naming). TLS: the
 * DestinationRule's SIMPLE or MUTUAL origination with its own files (cluster->tls_config). */
typedef enum {
    WEIR_TRANSPORT_PLAIN,
    WEIR_TRANSPORT_ISTIO_MUTUAL,
    WEIR_TRANSPORT_TLS
} weir_transport_t;

typedef struct weir_endpoint {
    char *address;                /* "10.244.0.11" (owned) */
    uint16_t port;                /* endpoint port */
    char *host_port;              /* "10.244.0.11:80" for logs and /clusters (owned) */
    struct sockaddr_storage addr; /* ready for connect() */
    socklen_t addr_len;
    const weir_labels_t *labels;  /* the WorkloadEntry's; never NULL (may be empty) */
    const char *service_account;  /* "default" when the entry names none */
    uint32_t active_requests;     /* in flight now: LEAST_REQUEST reads it */
    uint64_t total_requests;
    const weir_workload_entry_t *workload; /* where it came from (namespace, labels) */
    /* Set by the snapshot at load: how to reach it (auto mTLS or the DestinationRule's tls)
     * and the pool of idle connections made that way. */
    weir_transport_t transport;
    struct weir_upstream_pool *pool;
    const struct weir_metrics_peer *metrics_peer; /* its labels for Istio's metrics, once known */
} weir_endpoint_t;

typedef struct weir_cluster {
    char *name;   /* outbound|80|v1|web-service.default.svc.cluster.local (owned) */
    const char *host;   /* FQDN; points into the config */
    const char *subset; /* NULL: the whole service */
    uint32_t port;      /* service port */
    const weir_service_entry_t *service; /* NULL: no ServiceEntry has this host */
    const weir_service_port_t *service_port; /* NULL when service is NULL or has no such port */
    weir_lb_t lb;
    weir_endpoint_t *endpoints;
    size_t n_endpoints;
    /* For ISTIO_MUTUAL endpoints, set by the snapshot: the SNI Istio sends
     * ("outbound_.80_.v1_.web-service.default.svc.cluster.local") and the SPIFFE IDs the
     * server may present. Owned. */
    char *sni;
    weir_string_list_t peer_ids;
    /* TLS endpoints: the client configuration built from the DestinationRule's files (a
     * reference), or NULL when they could not be loaded (requests then fail 503 UF). */
    struct weir_tls_config *tls_config;
    /* Set by the snapshot: the state that outlives reloads (circuit breakers, pending queue;
     * a reference), and the outlier detector over these endpoints (owned; NULL without
     * outlierDetection), endpoint i being its host i. */
    struct weir_cluster_state *state;
    struct weir_outlier *od;
    uint32_t min_health_percent; /* panic threshold: below it, ejections are ignored */
    uint64_t connect_timeout_ms; /* connectionPool.tcp.connectTimeout; 0: the proxy's default */
    /* connectionPool http.idleTimeout (else tcp.idleTimeout): an upstream connection idle in
     * the pool this long is closed; Envoy's 1 h by default, 0: never. */
    uint64_t idle_timeout_ms;
    /* connectionPool.tcp.tcpKeepalive: SO_KEEPALIVE on upstream connections; a 0 field keeps
     * the OS default. */
    bool tcp_keepalive;
    uint32_t keepalive_probes, keepalive_time_s, keepalive_interval_s;
} weir_cluster_t;

#define WEIR_CLUSTER_DEFAULT_IDLE_TIMEOUT_MS (3600u * 1000u) /* Envoy's upstream idle_timeout */

/* Builds the cluster for (host, subset, port). port 0 means "the service's only port"; when
 * the service has several, the first. Never NULL. A host no ServiceEntry declares gives a
 * cluster with service NULL and no endpoints (the request path answers 503). Endpoints whose
 * address is not an IP literal are skipped (DNS resolution is not done by weir). */
weir_cluster_t *weir_cluster_build(const weir_config_t *cfg, const char *host_fqdn,
                                   const char *subset, uint32_t port);
void weir_cluster_free(weir_cluster_t *c);

/* The Envoy cluster name for (host, subset, port); a new string. */
char *weir_cluster_name(const char *host_fqdn, const char *subset, uint32_t port);

/* Picks an endpoint with the cluster's load balancer; `excluded` (may be NULL) lists
 * endpoints not to use (already tried). Returns NULL when none is eligible. r1 and r2 are
 * random numbers, passed in so tests choose them. */
weir_endpoint_t *weir_cluster_pick(weir_cluster_t *c, const weir_endpoint_t *const *excluded,
                                   size_t n_excluded, uint32_t r1, uint32_t r2);

#endif
