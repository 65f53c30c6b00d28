/* common/main.c: `weir <command>` dispatch (ARCHITECTURE.md section 1). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/analyze.h"
#include "common/cli.h"
#include "common/config.h"
#include "common/diag.h"
#include "common/mem.h"
#include "agent/iptables.h"
#include "agent/sidecar.h"
#include "certs/ca.h"
#include "gateway/gateway.h"

static void usage(FILE *out)
{
    fputs("usage:\n"
          "  weir gateway  -c PATH [-c PATH ...] [--labels istio=ingressgateway]\n"
          "                [--namespace istio-system] [--access-log -|PATH|off]\n"
          "                [--log-format text|json] [--log-level debug|info|warning|error]\n"
          "                [--request-headers-timeout S] [--idle-timeout S]\n"
          "                [--stream-idle-timeout S] [--connect-timeout S]\n"
          "                [--certs DIR] [--trust-domain TD] [--credential-dir DIR]\n"
          "                [--no-shadow-host-suffix] [--admin ADDR:PORT|off]\n"
          "                [--health-port 15021|0] [--prometheus-port 15090|0]\n"
          "                [--drain-seconds 5] [--k8s-api auto|off|URL]\n"
          "                [--k8s-namespace NS] [--k8s-token PATH] [--k8s-ca PATH]\n"
          "                [--cluster-domain cluster.local]\n"
          "  weir sidecar  -c PATH [-c PATH ...] --labels app=httpd,version=v1\n"
          "                --namespace default --service-account httpd [--certs DIR]\n"
          "                [--inbound-port 15006] [--outbound-port 15001] (and the options above)\n"
          "  weir iptables [--proxy-uid 1337] [--proxy-gid 1337] [--inbound-port 15006]\n"
          "                [--outbound-port 15001] [--exclude-inbound-ports 15000,15021,15090]\n"
          "                [--exclude-outbound-ports P,...] [--dry-run] [--cleanup]\n"
          "  weir certs ca    --out DIR [--trust-domain cluster.local] [--days 3650] [--force]\n"
          "  weir certs issue --ca DIR --namespace NS --service-account SA --out DIR [--days 1]\n"
          "                   [--force]\n"
          "  weir validate -c PATH [-c PATH ...] [--output text|json]\n"
          "  weir version\n",
          out);
}

/* Loads the config like the proxies do, runs the analyzer (common/analyze.h) on it and reports
 * every problem like a compiler, or as one JSON document with --output json. */
static int validate_main(int argc, char **argv)
{
    /* --output is validate's own option: take it out before the shared parser sees the rest. */
    char **args = weir_mem_calloc((size_t)argc, sizeof(*args));
    int n_args = 0;
    bool json = false;
    for (int i = 0; i < argc; i++) {
        if (i >= 2 && (strcmp(argv[i], "--output") == 0 || strcmp(argv[i], "-o") == 0)) {
            const char *v = i + 1 < argc ? argv[++i] : "";
            if (strcmp(v, "text") != 0 && strcmp(v, "json") != 0) {
                fprintf(stderr, "weir validate: --output: expected text or json, got \"%s\"\n", v);
                free(args);
                return 2;
            }
            json = strcmp(v, "json") == 0;
            continue;
        }
        args[n_args++] = argv[i];
    }
    weir_cli_t cli = {0};
    int rc = weir_cli_parse(&cli, n_args, args, 2) != 0 ? 2 : 0;
    if (rc == 0 && cli.n_paths == 0) {
        fprintf(stderr, "weir validate: at least one -c PATH is required\n");
        rc = 2;
    }
    if (rc != 0) {
        weir_cli_free(&cli);
        free(args);
        return rc;
    }
    weir_diags_t diags = WEIR_DIAGS_INIT;
    weir_config_t *cfg = weir_config_load(cli.paths, cli.n_paths, &diags);
    if (cfg) {
        weir_config_warn_unapplied(cfg, &diags);
        weir_analyze(cfg, &diags);
    }
    size_t errors = diags.errors, warnings = diags.count - diags.errors;
    if (json) {
        char *doc = weir_analyze_to_json(&diags);
        puts(doc);
        free(doc);
    } else {
        weir_diags_print(&diags, stdout);
        printf("%zu error(s), %zu warning(s)\n", errors, warnings);
    }
    weir_diags_clear(&diags);
    weir_config_free(cfg);
    weir_cli_free(&cli);
    free(args);
    return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("weir %s\n", WEIR_VERSION);
        return 0;
    }
    if (strcmp(cmd, "gateway") == 0)
        return weir_gateway_main(argc, argv, 2);
    if (strcmp(cmd, "iptables") == 0)
        return weir_iptables_main(argc, argv, 2);
    if (strcmp(cmd, "certs") == 0)
        return weir_certs_main(argc, argv, 2);
    if (strcmp(cmd, "sidecar") == 0)
        return weir_sidecar_main(argc, argv, 2);
    if (strcmp(cmd, "validate") == 0)
        return validate_main(argc, argv);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "weir: unknown command \"%s\"\n", cmd);
    usage(stderr);
    return 2;
}
