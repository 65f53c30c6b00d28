/* agent/sidecar.c: see sidecar.h. */
#include "agent/sidecar.h"

#include <stdio.h>

#include "agent/original_dst.h"
#include "common/reload.h"
#include "common/runtime.h"
#include "common/snapshot.h"

typedef struct {
    weir_cli_t cli;
} sidecar_t;

static weir_snapshot_t *build(weir_config_t *cfg, void *ctx, weir_diags_t *diags)
{
    sidecar_t *sc = ctx;
    weir_sidecar_identity_t id = {
        .labels = &sc->cli.labels,
        .namespace = sc->cli.namespace,
        .service_account = sc->cli.service_account,
        .trust_domain = sc->cli.trust_domain,
    };
    return weir_snapshot_build_sidecar(cfg, &id, diags);
}

int weir_sidecar_main(int argc, char **argv, int first)
{
    sidecar_t sc;
    weir_runtime_cli_defaults(&sc.cli);
    sc.cli.namespace = "default";
    sc.cli.service_account = "default";
    sc.cli.inbound_port = 15006;
    sc.cli.outbound_port = 15001;
    int status = 2;
    if (weir_cli_parse(&sc.cli, argc, argv, first) != 0)
        goto out;
    status = 1;
    weir_config_t *cfg = weir_runtime_load_config(&sc.cli);
    if (cfg == NULL)
        goto out;
    weir_diags_t diags = WEIR_DIAGS_INIT;
    weir_snapshot_t *snap = build(cfg, &sc, &diags);
    weir_diags_print(&diags, stderr);
    weir_diags_clear(&diags);
    weir_snapshot_set_current(snap);

    weir_proxy_options_t opts;
    weir_proxy_options_default(&opts);
    opts.use_remote_address = false; /* sidecars leave x-forwarded-for as it came */
    opts.server_name = "envoy";
    if (weir_runtime_start(&sc.cli, &opts, "sidecar") != 0)
        goto shutdown;
    weir_listener_opts_t out_opts = {.kind = WEIR_LISTENER_OUTBOUND,
                                     .original_dst = weir_original_dst,
                                     .other_capture_port = sc.cli.inbound_port};
    weir_listener_opts_t in_opts = {.kind = WEIR_LISTENER_INBOUND,
                                    .original_dst = weir_original_dst,
                                    .other_capture_port = sc.cli.outbound_port};
    if (weir_runtime_listen("0.0.0.0", sc.cli.outbound_port, &out_opts) != 0 ||
        weir_runtime_listen("0.0.0.0", sc.cli.inbound_port, &in_opts) != 0)
        goto shutdown;
    weir_reload_start(&sc.cli, build, NULL, &sc);
    if (weir_runtime_run() == 0)
        status = 0;
shutdown:
    weir_runtime_shutdown();
out:
    weir_cli_free(&sc.cli);
    return status;
}
