/* common/k8s.h: the Kubernetes API as a service registry.
 *
 * In a cluster, Services and their endpoints are not declared in YAML: the API server knows
 * them. This client lists and watches three resources through the pod's service account and
 * turns them into the registry weir already understands, so the rest of weir does not know
 * where an endpoint came from:
 *
 *   Service (v1)                 -> a ServiceEntry: hosts <name>.<ns>.svc.<cluster domain>,
 *                                   addresses its clusterIPs, ports with the protocol Istio
 *                                   derives (appProtocol, then the port name's prefix),
 *                                   MESH_INTERNAL, STATIC, workloadSelector its selector
 *   ready endpoint of its        -> a WorkloadEntry: the address, the Pod's labels (plus
 *   EndpointSlices (v1) + Pod       security.istio.io/tlsMode: istio when the Pod carries a
 *                                   proxy), the Pod's serviceAccountName, the slice's ports
 *
 * as YAML text (weir_k8s_registry_t.yaml) that weir_config_load_string() accepts, and as
 * typed arrays. Istio's kube registry does the same (pilot/pkg/serviceregistry/kube).
 *
 * Protocol, as client-go's reflector: LIST each resource (paged, `limit`), then WATCH from the
 * list's resourceVersion with allowWatchBookmarks; ADDED / MODIFIED / DELETED change the
 * store, BOOKMARK only moves the resourceVersion. A watch the server ends (its timeoutSeconds)
 * is resumed from the last resourceVersion seen. 410 Gone (an ERROR event whose Status has
 * code 410, or an HTTP 410) means that version is compacted away: the resource is listed
 * again and its store replaced, so events missed meanwhile cannot leave stale entries.
 * Connection and server errors retry with exponential back-off (with jitter, capped).
 * The watch stream is HTTP/1.1 chunked JSON, one event object after another; events are cut
 * out of the byte stream by their braces, so how the server splits them into chunks does
 * not matter.
 *
 * Transport: "https://host:port" verifies the API server's certificate against the service
 * account's ca.crt with the server name "kubernetes.default.svc" (SNI and certificate check),
 * as client-go's in-cluster config does, and sends the service account token (re-read for
 * every request: the kubelet rotates bound tokens). mbedTLS is used directly, not
 * common/tls.h, because that engine offers ECDHE-ECDSA only and kubeadm (kind) gives the API
 * server an RSA key. "http://host:port" is plain text, for `kubectl proxy` and the tests.
 *
 * Changes reach the caller debounced: once all three resources have been listed, on_change
 * runs at most once per debounce interval (default 100 ms) and only when the rendered
 * registry differs from the last one delivered. The registry passed in stays valid until the
 * next on_change or weir_k8s_stop().
 *
 * Loop thread only. The client's handles do not keep the loop alive (uv_unref), like the
 * config watchers of common/reload.c: the roles' shutdown need not wait for it. */
#ifndef WEIR_K8S_H
#define WEIR_K8S_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/config.h"

/* The standard service account mount of every pod. */
#define WEIR_K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
/* The name the API server's certificate is checked against (client-go's in-cluster config). */
#define WEIR_K8S_SERVER_NAME "kubernetes.default.svc"

/* One port of a Service, as its ServiceEntry declares it. */
typedef struct {
    char *name; /* the Service port's name; "port-<number>" for an unnamed single port */
    uint32_t number;
    char *protocol; /* HTTP, HTTP2, GRPC, GRPC-WEB, HTTPS, TLS, TCP, UDP, MONGO, REDIS,
                     * MYSQL; NULL when Istio would sniff (nothing says) */
} weir_k8s_port_t;

/* An endpoint: a WorkloadEntry, or an inline endpoint of a Service without selector. */
typedef struct {
    char *name; /* the Pod's name; NULL for an inline endpoint */
    char *namespace;
    char *address;          /* an IP */
    weir_labels_t labels;   /* sorted by key */
    char *service_account;  /* NULL: none known (inline endpoints) */
    weir_port_map_t *ports; /* service port name -> endpoint port, sorted by name */
    size_t n_ports;
} weir_k8s_endpoint_t;

typedef struct {
    char *name, *namespace;
    char *host;       /* <name>.<ns>.svc.<cluster domain> */
    char **addresses; /* clusterIPs; for a headless Service its ready endpoints' IPs */
    size_t n_addresses;
    weir_k8s_port_t *ports; /* by number, one per number (TCP preferred over UDP) */
    size_t n_ports;
    bool has_selector;              /* false: endpoints are inline (managed EndpointSlices) */
    weir_labels_t selector;         /* sorted by key */
    weir_k8s_endpoint_t *endpoints; /* inline endpoints, only without selector */
    size_t n_endpoints;
} weir_k8s_service_t;

/* What the cluster holds, sorted (namespace, name) so equal content renders equal text. */
typedef struct weir_k8s_registry {
    uint64_t generation; /* 1 for the first delivered, then +1 per delivery */
    weir_k8s_service_t *services;
    size_t n_services;
    weir_k8s_endpoint_t *workloads; /* WorkloadEntries: one per Pod behind a selector Service */
    size_t n_workloads;
    /* The same as Istio YAML: ServiceEntry and WorkloadEntry documents, every string quoted.
     * Load it with weir_config_load_string(WEIR_K8S_SOURCE_NAME, yaml, diags). */
    char *yaml;
} weir_k8s_registry_t;

/* The file name the rendered registry's diagnostics and /config_dump places show. */
#define WEIR_K8S_SOURCE_NAME "kubernetes-api"

typedef struct weir_k8s_client weir_k8s_client_t;

typedef void (*weir_k8s_change_fn)(const weir_k8s_registry_t *reg, void *data);

typedef struct {
    /* "https://10.96.0.1:443", "http://127.0.0.1:8001" ([v6] literals and names work too).
     * Required: weir_k8s_in_cluster_url() gives the in-cluster one. */
    const char *api_url;
    const char *token_path;  /* NULL: WEIR_K8S_SA_DIR/token; "": send no token. A missing
                              * file is an error over https, tolerated over http */
    const char *ca_path;     /* https only. NULL: WEIR_K8S_SA_DIR/ca.crt; re-read per connection */
    const char *server_name; /* https only. NULL: WEIR_K8S_SERVER_NAME */
    const char *namespace;   /* watch only this namespace; NULL: all (needs a ClusterRole) */
    const char *cluster_domain;   /* NULL: "cluster.local" */
    unsigned debounce_ms;         /* 0: 100 */
    unsigned backoff_initial_ms;  /* 0: 250 */
    unsigned backoff_max_ms;      /* 0: 30000 */
    unsigned watch_timeout_s;     /* the watch's timeoutSeconds; 0: 300 (the server picks a
                                   * random time near it, as client-go asks) */
    unsigned page_size;           /* list `limit`; 0: 500 */
    size_t max_body;              /* largest list page or event accepted; 0: 256 MiB */
    weir_k8s_change_fn on_change; /* required */
    void *data;
} weir_k8s_options_t;

/* Counters for /stats and the tests. */
typedef struct {
    uint64_t lists;         /* list requests that succeeded (pages) */
    uint64_t watches;       /* watch streams opened (200 received) */
    uint64_t events;        /* watch events applied, bookmarks included */
    uint64_t relists_gone;  /* re-lists forced by 410 Gone */
    uint64_t errors;        /* failed connections, handshakes, requests and streams */
    uint64_t changes;       /* on_change calls */
    const char *last_error; /* "" when none; owned by the client */
} weir_k8s_stats_t;

/* "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT" (brackets around an IPv6
 * host), as client-go's rest.InClusterConfig builds it. Returns 0, or -1 when either variable
 * is unset or empty (not in a cluster) or the URL does not fit. */
int weir_k8s_in_cluster_url(char *out, size_t cap);

/* The namespace the pod runs in, from <sa_dir>/namespace (NULL: WEIR_K8S_SA_DIR), trailing
 * whitespace removed. Returns 0 or -1. */
int weir_k8s_read_namespace(const char *sa_dir, char *out, size_t cap);

/* Starts listing and watching. Returns NULL with a message in err for a malformed URL, an
 * unreadable CA file (https), or missing options. Everything else (an unreachable server,
 * 401, 403, TLS failures) is retried with back-off and reported in the stats and the log. */
weir_k8s_client_t *weir_k8s_start(uv_loop_t *loop, const weir_k8s_options_t *opts, char *err,
                                  size_t errlen);

/* Stops: closes connections and timers; the client frees itself once every handle is closed,
 * then calls done(data) if not NULL. on_change never runs after this call. */
void weir_k8s_stop(weir_k8s_client_t *c, void (*done)(void *data), void *data);

/* The last registry delivered to on_change, or NULL before the first. */
const weir_k8s_registry_t *weir_k8s_current(const weir_k8s_client_t *c);
/* True once all three resources have been listed. */
bool weir_k8s_synced(const weir_k8s_client_t *c);
weir_k8s_stats_t weir_k8s_stats(const weir_k8s_client_t *c);

/* Istio's protocol for a Kubernetes Service port (kube.ConvertProtocol): a UDP port is UDP;
 * else the appProtocol if set, in place of the name ("kubernetes.io/h2c" is HTTP2, ".../ws"
 * HTTP, ".../wss" HTTPS); the name's "grpc-web" prefix is GRPC-WEB, else its part before '-'
 * names the protocol ("http-web" -> HTTP); else the well-known server-first ports 25, 53,
 * 3306 and 27017 are TCP; else NULL (unknown: Istio sniffs). transport is the Service port's
 * protocol (NULL: TCP). Returns a static string. Exposed for the tests. */
const char *weir_k8s_port_protocol(const char *port_name, const char *app_protocol,
                                   const char *transport, uint32_t port);

#endif
