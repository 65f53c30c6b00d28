/* common/cli.h: the options both roles share (ARCHITECTURE.md section 1), parsed once.
 * Strings point into argv or are owned by the weir_cli_t (labels). */
#ifndef WEIR_CLI_H
#define WEIR_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "common/config.h"
#include "common/log.h"

#define WEIR_CLI_MAX_PATHS 64

typedef struct {
    const char *paths[WEIR_CLI_MAX_PATHS]; /* -c, in order */
    size_t n_paths;
    weir_labels_t labels;  /* --labels k=v,k2=v2 */
    const char *namespace; /* --namespace */
    const char *access_log; /* --access-log -|PATH|off */
    weir_access_log_format_t log_format;
    weir_log_level_t log_level;
    double request_headers_timeout_s, idle_timeout_s, stream_idle_timeout_s, connect_timeout_s;
    const char *service_account; /* --service-account (sidecar) */
    const char *certs_dir;       /* --certs: root-cert.pem, cert-chain.pem, key.pem */
    const char *trust_domain;    /* --trust-domain (cluster.local) */
    const char *credential_dir;  /* --credential-dir: Gateway credentialName lookups */
    unsigned inbound_port, outbound_port; /* --inbound-port, --outbound-port (sidecar) */
    bool no_shadow_host_suffix;           /* --no-shadow-host-suffix */
    const char *admin;                    /* --admin ADDR:PORT | off (127.0.0.1:15000) */
    unsigned health_port;                 /* --health-port (15021; 0: none) */
    unsigned prometheus_port;             /* --prometheus-port (15090; 0: none) */
    double drain_seconds;                 /* --drain-seconds (5) */
    /* The Kubernetes API as the service registry (common/k8s.h): --k8s-api auto|off|URL
     * (auto: in a pod, from KUBERNETES_SERVICE_HOST/PORT), --k8s-namespace (all), --k8s-token
     * and --k8s-ca (the service account's), --cluster-domain (cluster.local). */
    const char *k8s_api, *k8s_namespace, *k8s_token, *k8s_ca, *cluster_domain;
} weir_cli_t;

/* Parses argv[first..argc). `defaults` fill what is not given. Prints the problem and returns
 * -1 on a bad option; 0 otherwise. */
int weir_cli_parse(weir_cli_t *cli, int argc, char **argv, int first);
void weir_cli_free(weir_cli_t *cli);

/* "k=v,k2=v2" -> labels (owned by out). Returns 0 or -1 on a malformed list. */
int weir_labels_parse(const char *text, weir_labels_t *out);

#endif
