/* common/config.h: Istio resources parsed from YAML into typed, validated structures.
 *
 * weir_config_load() reads every `-c` path (a file, or a directory whose *.yaml / *.yml files
 * are read in name order), every document of each, and keeps the kinds weir knows:
 *   networking.istio.io/{v1alpha3,v1beta1,v1}: Gateway, VirtualService, DestinationRule,
 *                                              ServiceEntry, WorkloadEntry
 *   security.istio.io/{v1beta1,v1}:            PeerAuthentication
 * Other Kubernetes objects (Pod, Service, Deployment, ConfigMap ...) are skipped quietly.
 * Unknown fields are warnings with their place; invalid values and dangling references
 * (a subset no DestinationRule defines, a gateway no Gateway names) are errors. Istio fields
 * that weir parses but does not act on yet are warnings too, so config never silently does
 * nothing.
 *
 * Semantics follow Istio (shared/reference/istio-semantics.md): short hosts resolve in the
 * resource's namespace (`web-service` in `default` -> web-service.default.svc.cluster.local),
 * a VirtualService without `gateways` applies to `mesh`, regexes are full-match and compiled
 * once here.
 *
 * Ownership: a weir_config_t owns every structure and string reachable from it, and the
 * compiled regexes. It is immutable after load; the snapshot that compiles it keeps it alive. */
#ifndef WEIR_CONFIG_H
#define WEIR_CONFIG_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/diag.h"
#include "common/retry.h" /* WEIR_RETRY_ON_*: the retryOn conditions */

struct sockaddr;

/* Istio's default root namespace (meshConfig.rootNamespace): selector-less PeerAuthentications
 * there are mesh-wide. */
#define WEIR_ROOT_NAMESPACE "istio-system"

/* Where a resource or field was written, for diagnostics and /config_dump. */
typedef struct {
    const char *file; /* owned by the config */
    unsigned line, col;
} weir_place_t;

typedef struct {
    char *key, *value;
} weir_label_t;

/* A label map in the order written. */
typedef struct {
    weir_label_t *items;
    size_t count;
} weir_labels_t;

/* True when every key=value of `selector` is present in `labels` (an empty selector matches). */
bool weir_labels_match(const weir_labels_t *selector, const weir_labels_t *labels);
/* The value of `key`, or NULL. */
const char *weir_labels_get(const weir_labels_t *labels, const char *key);
/* Frees a label map whose keys, values and array are each malloc'd (weir_labels_parse, the
 * Kubernetes registry); *l is left empty. A config's own labels go with weir_config_free. */
void weir_labels_free(weir_labels_t *l);

/* An IP range: an exact address is a /32 or /128. Parsed once at load. */
typedef struct {
    int family;          /* AF_INET or AF_INET6 */
    unsigned prefix_len; /* 0..32 or 0..128 */
    uint8_t addr[16];    /* network order, host bits cleared; IPv4 uses the first 4 bytes */
} weir_cidr_t;

/* Parses "10.0.0.1", "10.96.0.0/16", "fd00::1" or "fd00::/8" (no zone, no leading zeros in
 * the prefix length). Host bits after the prefix are cleared, as Go's netip masks them. */
bool weir_cidr_parse(const char *text, weir_cidr_t *out);
/* Whether the address of a sockaddr_in / sockaddr_in6 (its port ignored) lies in the range.
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket reports) is matched
 * as the IPv4 address. */
bool weir_cidr_contains(const weir_cidr_t *cidr, const struct sockaddr *addr);

/* Parses a google.protobuf.Duration as Istio reads it from Kubernetes YAML, which is Go's
 * time.ParseDuration: decimal numbers, each with an optional fraction and a unit ("ns", "us",
 * "µs", "ms", "s", "m", "h"), as in "1s", "500ms", "1.5s", "2m" or "1h30m"; a lone "0" is zero.
 * Sets *ms and returns 0; returns -1 and sets *why (a static string, when why is not NULL) for
 * a malformed text, a negative duration, one beyond Go's range (about 292 years), or one that
 * is not a whole number of milliseconds (Istio's validation accepts only ms precision). Whether
 * 0 is allowed is the field's business, not this function's. */
int weir_config_duration_ms(const char *text, int64_t *ms, const char **why);

/* An Istio Percent ({value: double}) or one of the deprecated integer percents that precede it.
 * `set` tells "not written" from an explicit value, because the two mean different things:
 * a fault without percentage injects nothing, a mirror without one mirrors everything (S7). */
typedef struct {
    bool set;
    double value; /* 0..100; 0 when not set */
} weir_percent_t;

/* Istio StringMatch: oneof exact | prefix | regex. NONE means "not given". */
typedef enum {
    WEIR_MATCH_NONE,
    WEIR_MATCH_EXACT,
    WEIR_MATCH_PREFIX,
    WEIR_MATCH_REGEX
} weir_match_kind_t;

typedef struct {
    weir_match_kind_t kind;
    char *value;     /* exact text, prefix, or the regex source */
    size_t value_len;
    pcre2_code *re;  /* REGEX only: compiled with PCRE2_ANCHORED | PCRE2_ENDANCHORED (RE2 full match) */
} weir_string_match_t;

/* headers / withoutHeaders / queryParams entry. `name` is as written (headers must be lower
 * case, which validation enforces). match.kind NONE means presence only (`{}`). */
typedef struct {
    char *name;
    weir_string_match_t match;
} weir_kv_match_t;

/* One entry of HTTPRoute.match[] (fields AND together; entries OR together). */
typedef struct {
    char *name;                   /* may be NULL */
    weir_string_match_t uri, scheme, method, authority;
    bool ignore_uri_case;         /* applies to uri exact/prefix */
    weir_kv_match_t *headers;
    size_t n_headers;
    weir_kv_match_t *without_headers;
    size_t n_without_headers;
    weir_kv_match_t *query_params;
    size_t n_query_params;
    uint32_t port;                /* 0: any */
    char **gateways;              /* match-level gateways (normalised as below), NULL: inherit */
    size_t n_gateways;
    weir_place_t place;
} weir_http_match_t;

typedef struct {
    char *host;   /* resolved FQDN (short names in the VirtualService's namespace) */
    char *subset; /* NULL: the whole service */
    uint32_t port; /* 0: not given */
} weir_destination_t;

/* One header operation of Headers.{request,response}.{set,add}. */
typedef struct {
    char *name;  /* lower-cased, as Envoy keeps header names */
    char *value; /* as it is sent: Envoy's "%%" escape already turned into "%" */
} weir_header_op_t;

typedef struct {
    weir_header_op_t *set; /* Envoy OVERWRITE_IF_EXISTS_OR_ADD */
    size_t n_set;
    weir_header_op_t *add; /* Envoy APPEND_IF_EXISTS_OR_ADD */
    size_t n_add;
    char **remove; /* lower-cased */
    size_t n_remove;
} weir_header_ops_t;

/* Headers (route level and per destination). Names are checked as Istio does: no pseudo
 * header (":x") and no `host` anywhere, except that `host` or `:authority` in request.set or
 * request.add is not a header operation but a host rewrite (Istio's translateAppendHeaders);
 * it is kept in `authority`, never in the ops. Only one may be given per Headers, and at the
 * route level not together with rewrite.authority (validateAuthorityRewrite). A value with
 * Envoy's %VARIABLE% substitutions is dropped with a warning: weir does not expand them. */
typedef struct {
    weir_header_ops_t request, response;
    char *authority; /* NULL: no host rewrite here */
} weir_headers_t;

typedef struct {
    weir_destination_t destination;
    int32_t weight; /* as written; 0 when omitted */
    bool weight_set;
    weir_place_t place;
    /* http[].route[].headers; always empty in tls[] and tcp[] routes, which have none. Istio
     * puts them on the weighted cluster, or after the route's own with one destination, whose
     * host rewrite then applies only when the route has none (route.go processDestination). */
    weir_headers_t headers;
} weir_route_destination_t;

/* Istio's retry policy for a route without `retries`, and the retryOn of one whose `retries`
 * has no retryOn (retry.go; S4): 2 retries on these conditions, no status codes listed, so an
 * upstream 503 response is not retried. */
#define WEIR_RETRY_ON_ISTIO_DEFAULT                                                                \
    (WEIR_RETRY_ON_CONNECT_FAILURE | WEIR_RETRY_ON_REFUSED_STREAM | WEIR_RETRY_ON_UNAVAILABLE |    \
     WEIR_RETRY_ON_CANCELLED | WEIR_RETRY_ON_RETRIABLE_STATUS_CODES)
#define WEIR_RETRY_ISTIO_DEFAULT_ATTEMPTS 2

/* HTTPRetry, filled in as Istio's retry.ConvertPolicy does; the proxy compiles it into a
 * weir_retry_policy_t (common/retry.h), whose WEIR_RETRY_ON_* bits retry_on uses. Without
 * `retries` the fields hold Istio's default policy (set false); the proxy still owes what
 * depends on the cluster: no previous-hosts predicate for consistent-hash destinations, and
 * host_selection_retry_max_attempts 5 in every policy. */
typedef struct {
    bool set;                         /* `retries` was written */
    int32_t attempts;                 /* retries after the first try; 0: no retries at all */
    int64_t per_try_timeout_ms;       /* 0: none, only the route timeout bounds the tries */
    uint32_t retry_on;                /* WEIR_RETRY_ON_*; RETRIABLE_STATUS_CODES added with codes */
    /* The integers of retryOn, in the order written, without repeats, at most
     * WEIR_RETRY_MAX_STATUS_CODES (more is an error). */
    uint32_t *retriable_status_codes;
    size_t n_retriable_status_codes;
    bool retry_remote_localities;
    bool ignore_previous_hosts; /* retryIgnorePreviousHosts, default true */
    int64_t backoff_ms;         /* base interval; 0: Envoy's 25 ms */
} weir_http_retry_t;

/* HTTPFaultInjection. Validated as Istio, and stricter where Istio would silently drop a part
 * (an abort without a status, a delay without fixedDelay): weir refuses those. */
typedef struct {
    bool has_delay;
    int64_t delay_ms;             /* fixedDelay, >= 1 */
    weir_percent_t delay_percent; /* percentage, else the deprecated integer percent; not set: 0% */
    bool has_abort;
    int abort_http_status;        /* 200..599; 0 with a gRPC status */
    int abort_grpc_status;        /* grpcStatus as its code, 0 (OK) .. 16; -1 with an HTTP status */
    weir_percent_t abort_percent; /* not set: 0% (S7) */
} weir_fault_t;

/* One request mirror policy. `mirror` (with mirrorPercentage, or the deprecated mirrorPercent)
 * and each entry of `mirrors` become one of these, as Istio translates both into Envoy's
 * request_mirror_policies: no percentage means 100%, an explicit 0 drops the policy. */
typedef struct {
    weir_destination_t destination;
    double percent; /* (0, 100] */
    weir_place_t place;
} weir_mirror_policy_t;

typedef struct {
    char *uri;       /* NULL: not rewritten */
    char *authority; /* NULL: not rewritten */
} weir_rewrite_t;

typedef enum {
    WEIR_DERIVE_PORT_NONE,
    WEIR_DERIVE_PORT_FROM_PROTOCOL_DEFAULT,
    WEIR_DERIVE_PORT_FROM_REQUEST_PORT
} weir_derive_port_t;

typedef struct {
    char *uri;       /* replaces the whole path; NULL: keep */
    char *authority; /* NULL: keep */
    char *scheme;    /* NULL: keep */
    uint32_t port;   /* 0: not given */
    weir_derive_port_t derive_port;
    int redirect_code; /* 301 when not given */
} weir_redirect_t;

typedef struct {
    int status;
    char *body; /* NULL: no body; body.bytes (base64) is decoded here */
    size_t body_len;
} weir_direct_response_t;

typedef enum {
    WEIR_ACTION_ROUTE,
    WEIR_ACTION_REDIRECT,
    WEIR_ACTION_DIRECT_RESPONSE
} weir_action_kind_t;

/* One element of VirtualService.http[]. */
typedef struct {
    char *name; /* may be NULL */
    weir_http_match_t *matches; /* empty: catch-all */
    size_t n_matches;
    weir_action_kind_t action;
    weir_route_destination_t *route; /* ROUTE: at least one */
    size_t n_route;
    bool has_rewrite;
    weir_rewrite_t rewrite;
    weir_redirect_t redirect;        /* REDIRECT */
    weir_direct_response_t direct;   /* DIRECT_RESPONSE */
    weir_place_t place;
    /* The fields below act on a ROUTE only; with a redirect or a direct response Istio ignores
     * timeout, retries and mirrors (weir warns) and refuses fault.
     * A host or :authority header in headers.request is a host rewrite (weir_headers_t): on a
     * ROUTE it is also put in rewrite.authority, with has_rewrite set, as Istio translates it. */
    int64_t timeout_ms;            /* 0: no timeout (Istio turns Envoy's 15 s default off, S3) */
    weir_http_retry_t retries;     /* Istio's default policy when not set (S4) */
    weir_fault_t fault;            /* neither has_delay nor has_abort: no fault */
    weir_mirror_policy_t *mirrors; /* mirror / mirrors normalised; 0% policies left out */
    size_t n_mirrors;
    weir_headers_t headers;        /* http[].headers */
} weir_http_route_t;

/* TLSMatchAttributes (tls[].match[]) and L4MatchAttributes (tcp[].match[]): the fields of an
 * entry AND together, entries OR together. */
typedef struct {
    char **sni_hosts; /* tls[] only, at least one there; as written ("*.x" kept), each within
                       * the VirtualService's hosts */
    size_t n_sni_hosts;
    uint32_t port;                   /* 0: any */
    char **destination_subnets;      /* as written */
    weir_cidr_t *destination_ranges; /* destination_subnets[i], parsed */
    size_t n_destination_subnets;
    weir_labels_t source_labels; /* empty: any client */
    char **gateways;             /* as weir_http_match_t.gateways; NULL: inherit */
    size_t n_gateways;
    weir_place_t place;
} weir_l4_match_t;

/* One element of VirtualService.tls[] (TLSRoute: match required) or tcp[] (TCPRoute: an empty
 * match is a catch-all). Weights follow the HTTP rules (S14), per connection. */
typedef struct {
    weir_l4_match_t *matches;
    size_t n_matches;
    weir_route_destination_t *route; /* at least one; their headers are empty */
    size_t n_route;
    weir_place_t place;
} weir_l4_route_t;

typedef struct {
    char *name, *namespace;
    char **hosts;   /* as written, except short names resolved to FQDN; "*" and "*.x" kept */
    size_t n_hosts;
    /* "<ns>/<name>" for gateways (a bare name is qualified with the VS namespace), or the
     * reserved "mesh". Omitted in YAML: exactly {"mesh"}. */
    char **gateways;
    size_t n_gateways;
    weir_http_route_t *http;
    size_t n_http;
    weir_place_t place;
    weir_l4_route_t *tls; /* tls[]: unterminated TLS routed by SNI */
    size_t n_tls;
    weir_l4_route_t *tcp; /* tcp[] */
    size_t n_tcp;
} weir_virtual_service_t;

typedef enum {
    WEIR_TLS_MODE_PASSTHROUGH, /* Istio's default (enum value 0) */
    WEIR_TLS_MODE_SIMPLE,
    WEIR_TLS_MODE_MUTUAL,
    WEIR_TLS_MODE_AUTO_PASSTHROUGH,
    WEIR_TLS_MODE_ISTIO_MUTUAL,
    WEIR_TLS_MODE_OPTIONAL_MUTUAL
} weir_server_tls_mode_t;

/* ServerTLSSettings.TLSProtocol, in the proto's order. */
typedef enum {
    WEIR_TLS_AUTO, /* not given: Envoy's default, TLS 1.2 minimum */
    WEIR_TLS_V1_0,
    WEIR_TLS_V1_1,
    WEIR_TLS_V1_2,
    WEIR_TLS_V1_3
} weir_tls_version_t;

typedef struct {
    uint32_t port;
    char *port_name;
    char *protocol;  /* upper-cased: HTTP, HTTPS, HTTP2, GRPC, TCP, TLS ... */
    char **hosts;    /* the dnsName part, "namespace/" prefix stripped */
    size_t n_hosts;
    char *bind;      /* NULL: all addresses */
    char *name;
    bool has_tls;
    bool https_redirect;
    weir_server_tls_mode_t tls_mode;
    char *credential_name;
    weir_place_t place;
    /* ServerTLSSettings, validated as Istio's validateTLSOptions: SIMPLE, MUTUAL and
     * OPTIONAL_MUTUAL need credentialName or serverCertificate + privateKey, and the two
     * MUTUALs caCertificates unless credentialName names it; credentialName excludes the file
     * fields; ISTIO_MUTUAL takes none of them; the PASSTHROUGH modes ignore them (a warning).
     * weir speaks TLS 1.2 only (mbedTLS 2.28): minimum TLSV1_3 is an error, a lower minimum a
     * warning, cipherSuites a warning (its own ECDHE-ECDSA AES-GCM suites are used). */
    char *server_certificate; /* file paths as Istio's; NULL: not given */
    char *private_key;
    char *ca_certificates;
    char **subject_alt_names; /* MUTUAL: the client certificate must carry one of them */
    size_t n_subject_alt_names;
    weir_tls_version_t min_protocol_version;
    weir_tls_version_t max_protocol_version;
    char **cipher_suites; /* as written; not used */
    size_t n_cipher_suites;
} weir_gateway_server_t;

typedef struct {
    char *name, *namespace;
    char *qualified_name; /* "<ns>/<name>", what VirtualService.gateways refers to */
    bool has_selector;    /* false: applies to every gateway workload */
    weir_labels_t selector;
    weir_gateway_server_t *servers;
    size_t n_servers;
    weir_place_t place;
} weir_gateway_t;

typedef enum {
    WEIR_LB_LEAST_REQUEST, /* Istio's default (UNSPECIFIED), and LEAST_CONN */
    WEIR_LB_ROUND_ROBIN,
    WEIR_LB_RANDOM,
    WEIR_LB_PASSTHROUGH
} weir_lb_policy_t;

/* ClientTLSSettings.mode, in the proto's order. */
typedef enum {
    WEIR_CLIENT_TLS_DISABLE, /* Istio's default (enum value 0) */
    WEIR_CLIENT_TLS_SIMPLE,
    WEIR_CLIENT_TLS_MUTUAL,
    WEIR_CLIENT_TLS_ISTIO_MUTUAL
} weir_client_tls_mode_t;

/* DestinationRule trafficPolicy.tls: how this proxy originates TLS to the endpoints. Validated
 * as Istio's validateTLS: MUTUAL needs clientCertificate and privateKey unless credentialName
 * names them; credentialName excludes the file fields; insecureSkipVerify excludes what would
 * verify. ISTIO_MUTUAL (mesh certificates) takes no certificate field at all (the proto says
 * they "should be empty"; Istio would ignore them, weir refuses them); its sni and
 * subjectAltNames still apply, as in Istio's buildAutoMtlsSettings. NULL / 0: not given. */
typedef struct {
    weir_client_tls_mode_t mode;
    char *client_certificate; /* file paths, as Istio's */
    char *private_key;
    char *ca_certificates;
    char *credential_name;
    char **subject_alt_names; /* ISTIO_MUTUAL without them: the service's accounts */
    size_t n_subject_alt_names;
    char *sni;
    bool insecure_skip_verify;
} weir_client_tls_t;

/* ConnectionPoolSettings.http.h2UpgradePolicy, in the proto's order. */
typedef enum {
    WEIR_H2_UPGRADE_DEFAULT,
    WEIR_H2_DO_NOT_UPGRADE,
    WEIR_H2_UPGRADE
} weir_h2_upgrade_policy_t;

/* ConnectionPoolSettings.tcp.tcpKeepalive: SO_KEEPALIVE with these; 0: the OS default. */
typedef struct {
    uint32_t probes;
    int64_t time_ms;
    int64_t interval_ms;
} weir_tcp_keepalive_t;

/* ConnectionPoolSettings (tcp and http in one), limits per client proxy and cluster (S8).
 * Istio applies a count only when it is > 0 (cluster_traffic_policy.go applyConnectionPool),
 * so 0 is "not set": then the limits are Istio's 2^32-1, maxRequestsPerConnection unlimited.
 * Durations are >= 1 ms when set (Istio's validation), so 0 is "not set" for them too; only the
 * idle timeout may be an explicit 0 (tcp.idleTimeout "0s": none), hence its flag. */
typedef struct {
    uint32_t max_connections;   /* tcp.maxConnections */
    int64_t connect_timeout_ms; /* tcp.connectTimeout; 0: the mesh's 10 s */
    bool has_tcp_keepalive;
    weir_tcp_keepalive_t tcp_keepalive;
    int64_t max_connection_duration_ms; /* tcp.maxConnectionDuration; 0: none */
    bool has_idle_timeout;              /* false: Envoy's 1 h */
    int64_t idle_timeout_ms;            /* http.idleTimeout, else tcp.idleTimeout; 0: none */
    uint32_t http1_max_pending_requests;
    uint32_t http2_max_requests;          /* max active requests, HTTP/1.1 too */
    uint32_t max_requests_per_connection; /* 1 turns keep-alive off */
    uint32_t max_retries;                 /* concurrent retries, cluster-wide */
    weir_h2_upgrade_policy_t h2_upgrade_policy;
    bool use_client_protocol;
} weir_connection_pool_t;

/* OutlierDetection as Istio turns it into Envoy's (applyOutlierDetection; reference 3.4, S2,
 * S9, S10), every default filled in: the block being present turns the detector on. A
 * threshold of 0 never ejects. Success-rate ejection is always off. */
typedef struct {
    uint32_t consecutive_5xx;                  /* consecutive5xxErrors, default 5 */
    bool enforcing_consecutive_5xx;            /* false only when set to 0 */
    uint32_t consecutive_gateway_errors;       /* default 5 (Envoy's) ... */
    bool enforcing_consecutive_gateway_errors; /* ... but enforced only when set > 0 */
    bool split_external_local_origin_errors;
    /* Counted in split mode only; default 5 (also for an explicit 0, which Istio does not
     * pass on), always enforced. */
    uint32_t consecutive_local_origin_failures;
    int64_t interval_ms;           /* default 10 s */
    int64_t base_ejection_time_ms; /* default 30 s */
    uint32_t max_ejection_percent; /* default 10 (0 is "not set"); strict rule (S2) */
    uint32_t min_health_percent;   /* Envoy's panic threshold; default 0: panic mode off (S9) */
} weir_outlier_detection_t;

/* The blocks of a TrafficPolicy. A subset's policy is merged with the top level's at load,
 * block by block as Istio's MergeTrafficPolicy: a block the subset sets replaces the top
 * level's whole, one it does not set is inherited. */
typedef struct {
    bool has_lb;
    weir_lb_policy_t lb;
    bool has_tls; /* false: no `tls`, i.e. auto mTLS (istio-semantics.md 3.5) */
    weir_client_tls_t tls;
    bool has_connection_pool; /* false: Istio's defaults (S8) */
    weir_connection_pool_t connection_pool;
    bool has_outlier_detection; /* false: no ejection at all */
    weir_outlier_detection_t outlier_detection;
} weir_traffic_policy_t;

typedef struct {
    char *name;
    weir_labels_t labels;
    weir_traffic_policy_t policy; /* merged per block with the top level at load */
    weir_place_t place;
} weir_subset_t;

typedef struct {
    char *name, *namespace;
    char *host; /* resolved FQDN */
    weir_traffic_policy_t policy;
    weir_subset_t *subsets;
    size_t n_subsets;
    weir_place_t place;
} weir_destination_rule_t;

typedef struct {
    uint32_t number;
    char *name;
    char *protocol;
    uint32_t target_port; /* number when not given */
} weir_service_port_t;

typedef enum { WEIR_LOCATION_MESH_EXTERNAL, WEIR_LOCATION_MESH_INTERNAL } weir_location_t;
typedef enum {
    WEIR_RESOLUTION_NONE,
    WEIR_RESOLUTION_STATIC,
    WEIR_RESOLUTION_DNS,
    WEIR_RESOLUTION_DNS_ROUND_ROBIN
} weir_resolution_t;

/* A named port map entry of a WorkloadEntry: service port name -> endpoint port. */
typedef struct {
    char *name;
    uint32_t number;
} weir_port_map_t;

typedef struct {
    char *name, *namespace; /* inline ServiceEntry endpoints have name NULL */
    char *address;          /* IP literal for STATIC */
    weir_port_map_t *ports;
    size_t n_ports;
    weir_labels_t labels;
    char *service_account;  /* NULL: "default" */
    weir_place_t place;
} weir_workload_entry_t;

typedef struct {
    char *name, *namespace;
    char **hosts; /* resolved FQDNs */
    size_t n_hosts;
    char **addresses;            /* as written: IPs and CIDRs */
    weir_cidr_t *address_ranges; /* addresses[i], parsed; n_addresses of them */
    size_t n_addresses;
    weir_service_port_t *ports;
    size_t n_ports;
    weir_location_t location;     /* default MESH_EXTERNAL, as Istio */
    weir_resolution_t resolution; /* default NONE, as Istio */
    bool has_workload_selector;
    weir_labels_t workload_selector;
    weir_workload_entry_t *endpoints; /* inline endpoints[] */
    size_t n_endpoints;
    char **subject_alt_names; /* extra identities its endpoints may present */
    size_t n_subject_alt_names;
    weir_place_t place;
} weir_service_entry_t;

/* PeerAuthentication mtls.mode, in the proto's order. */
typedef enum {
    WEIR_MTLS_UNSET, /* inherit from the wider level; PERMISSIVE when none sets a mode */
    WEIR_MTLS_DISABLE,
    WEIR_MTLS_PERMISSIVE,
    WEIR_MTLS_STRICT
} weir_mtls_mode_t;

/* One portLevelMtls entry. The key is the workload (container) port, not a service port. */
typedef struct {
    uint32_t port;
    weir_mtls_mode_t mode;
    weir_place_t place;
} weir_port_mtls_t;

typedef struct {
    char *name, *namespace;
    /* selector.matchLabels, non-empty: a workload-level policy. Absent or empty (Istio treats
     * both alike): namespace-wide, or mesh-wide in the root namespace. */
    bool has_selector;
    weir_labels_t selector;
    weir_mtls_mode_t mode;       /* UNSET when mtls or its mode is omitted */
    weir_port_mtls_t *port_mtls; /* only with a selector, as Istio's validation requires */
    size_t n_port_mtls;
    weir_place_t place;
} weir_peer_authentication_t;

typedef struct weir_config {
    weir_gateway_t *gateways;
    size_t n_gateways;
    weir_virtual_service_t *virtual_services;
    size_t n_virtual_services;
    weir_destination_rule_t *destination_rules;
    size_t n_destination_rules;
    weir_service_entry_t *service_entries;
    size_t n_service_entries;
    weir_workload_entry_t *workload_entries;
    size_t n_workload_entries;
    weir_peer_authentication_t *peer_authentications;
    size_t n_peer_authentications;
    char **files; /* every file read, in order; the strings places point to */
    size_t n_files;
} weir_config_t;

/* Loads and validates every path. Returns the config, or NULL when any error was found
 * (then diags holds at least one error). Warnings alone do not fail the load. Resources are
 * kept in the order read (files sorted by name within a directory), which is the order of
 * precedence Istio gives to creation time. */
weir_config_t *weir_config_load(const char *const *paths, size_t n_paths, weir_diags_t *diags);
/* The paths, then YAML text from elsewhere (the Kubernetes API's registry, common/k8s.h) named
 * `extra_name` in diagnostics; extra_text NULL: the same as weir_config_load. The paths come
 * first, so their ServiceEntries win a host both declare. */
weir_config_t *weir_config_load_with(const char *const *paths, size_t n_paths,
                                     const char *extra_name, const char *extra_text,
                                     weir_diags_t *diags);
/* Same, from YAML text in memory (tests); `name` stands for the file name. */
weir_config_t *weir_config_load_string(const char *name, const char *text, weir_diags_t *diags);
void weir_config_free(weir_config_t *cfg);

/* Adds a warning for every field the config holds whose behaviour the proxy does not have yet
 * (tcp routes, tls routes in sidecars),
 * so config never silently does nothing. The proxies and `weir validate` call it after a
 * successful load. */
void weir_config_warn_unapplied(const weir_config_t *cfg, weir_diags_t *diags);

/* Istio's short-name resolution: a host without a dot becomes "<host>.<ns>.svc.cluster.local";
 * anything else (FQDN, "*", "*.x", IP) is returned unchanged. Returns a new string. */
char *weir_config_resolve_host(const char *host, const char *ns);

/* The DestinationRule for an FQDN (exact host match, first in load order), or NULL. */
const weir_destination_rule_t *weir_config_find_destination_rule(const weir_config_t *cfg,
                                                                 const char *host_fqdn);
/* The subset of that name, or NULL. */
const weir_subset_t *weir_destination_rule_subset(const weir_destination_rule_t *dr,
                                                  const char *name);
/* The ServiceEntry that lists an FQDN among its hosts (first in load order), or NULL. */
const weir_service_entry_t *weir_config_find_service(const weir_config_t *cfg,
                                                     const char *host_fqdn);

/* The ServiceEntry that a connection to addr:port (an original destination) is for, or NULL
 * (then the sidecar passes the connection through, ALLOW_ANY). `port` is the service port
 * number; the port inside addr is ignored; addr may be NULL (only the port is then known).
 * Precedence, as Envoy's listeners and filter-chain matches that Istio builds from them:
 *  1. a ServiceEntry with that port number whose `addresses` contain the IP; the longest
 *     prefix wins (an exact IP is a /32 or /128), then the first in load order;
 *  2. else the first ServiceEntry WITHOUT addresses that has that port number: Istio
 *     identifies an address-less service by its port only (the 0.0.0.0:<port> listener).
 *     HTTP on such a port is still routed by Host afterwards, as Envoy does. */
const weir_service_entry_t *weir_config_service_by_address(const weir_config_t *cfg,
                                                           const struct sockaddr *addr,
                                                           uint32_t port);

/* The endpoints of a ServiceEntry, one per call: its inline endpoints, or (workloadSelector)
 * the WorkloadEntries of its namespace whose labels match, in load order. Start with
 * *cursor = 0; returns NULL after the last. */
const weir_workload_entry_t *weir_config_service_endpoint(const weir_config_t *cfg,
                                                          const weir_service_entry_t *se,
                                                          size_t *cursor);

/* A list of strings the caller owns. */
typedef struct {
    char **items;
    size_t count;
} weir_string_list_t;

void weir_string_list_free(weir_string_list_t *list);

/* The identities a client may accept from the endpoints of a service (what ISTIO_MUTUAL
 * verifies the server's URI SAN against, istio-semantics.md 3.5): for every endpoint,
 * `spiffe://<trust_domain>/ns/<endpoint namespace>/sa/<serviceAccount>`, then the
 * ServiceEntry's subjectAltNames as written; duplicates dropped, first occurrence kept.
 * An endpoint without serviceAccount counts as "default": a WorkloadEntry stands for a pod
 * here, and a pod without serviceAccountName runs as "default" (Istio itself adds nothing for
 * a WorkloadEntry without one). An empty list means no identity is known. trust_domain is
 * taken as given ("cluster.local" by default in Istio); the caller validates it. Free the
 * result with weir_string_list_free(). */
weir_string_list_t weir_config_service_accounts(const weir_config_t *cfg,
                                                const weir_service_entry_t *se,
                                                const char *trust_domain);

/* The mTLS mode a workload's inbound port accepts, by Istio's PeerAuthentication precedence
 * (pilot/pkg/security/authn/policy_applier.go ComposePeerAuthentication), narrowest first:
 *   port-level mode of the workload-level PA (portLevelMtls[port])
 *   > workload-level PA: a selector matching workload_labels, in workload_ns
 *   > namespace-wide PA: no selector, in workload_ns
 *   > mesh-wide PA: no selector, in root_namespace (NULL: WEIR_ROOT_NAMESPACE)
 *   > PERMISSIVE.
 * UNSET at a level inherits the next wider one. When several PAs fit one level, the oldest,
 * i.e. the first in load order, is the only one used (its portLevelMtls included). port 0
 * skips the port level. Returns DISABLE, PERMISSIVE or STRICT, never UNSET.
 * A PA WITH a selector in the root namespace is ignored, for every workload: Istio's API doc
 * says such a selector "additionally matches workloads in all namespaces", but Istio's code
 * takes workload-level policies only outside the root namespace ("the one with selector and
 * not in root namespace") and drops the rest, and what the proxies receive is what weir
 * follows (istio-semantics.md 4.1 says the same). The loader warns about such a PA in
 * WEIR_ROOT_NAMESPACE. */
weir_mtls_mode_t weir_config_peer_authentication_mode(const weir_config_t *cfg,
                                                      const char *root_namespace,
                                                      const char *workload_ns,
                                                      const weir_labels_t *workload_labels,
                                                      uint32_t port);

#endif
