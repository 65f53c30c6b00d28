/* common/main.c: `weir <command>` dispatch (ARCHITECTURE.md section 1). */
#include <stdio.h>
#include <string.h>

#include "common/cli.h"
#include "common/config.h"
#include "common/diag.h"
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
          "                [--no-shadow-host-suffix]\n"
          "  weir sidecar  -c PATH [-c PATH ...] --labels app=httpd,version=v1\n"
          "                --namespace default --service-account httpd [--certs DIR]\n"
          "                [--inbound-port 15006] [--outbound-port 15001] (and the options above)\n"
          "  weir iptables [--proxy-uid 1337] [--proxy-gid 1337] [--inbound-port 15006]\n"
          "                [--outbound-port 15001] [--exclude-inbound-ports 15000,15021,15090]\n"
          "                [--exclude-outbound-ports P,...] [--dry-run] [--cleanup]\n"
          "  weir certs ca    --out DIR [--trust-domain cluster.local] [--days 3650] [--force]\n"
          "  weir certs issue --ca DIR --namespace NS --service-account SA --out DIR [--days 1]\n"
          "                   [--force]\n"
          "  weir validate -c PATH [-c PATH ...]\n"
          "  weir version\n",
          out);
}

/* Loads the config like the proxies do and reports every problem like a compiler. */
static int validate_main(int argc, char **argv)
{
    weir_cli_t cli = {0};
    if (weir_cli_parse(&cli, argc, argv, 2) != 0)
        return 2;
    if (cli.n_paths == 0) {
        fprintf(stderr, "weir validate: at least one -c PATH is required\n");
        return 2;
    }
    weir_diags_t diags = WEIR_DIAGS_INIT;
    weir_config_t *cfg = weir_config_load(cli.paths, cli.n_paths, &diags);
    if (cfg)
        weir_config_warn_unapplied(cfg, &diags);
    weir_diags_print(&diags, stdout);
    size_t errors = diags.errors, warnings = diags.count - diags.errors;
    weir_diags_clear(&diags);
    weir_config_free(cfg);
    weir_cli_free(&cli);
    printf("%zu error(s), %zu warning(s)\n", errors, warnings);
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
