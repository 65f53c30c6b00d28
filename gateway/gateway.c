/* gateway/gateway.c: see gateway.h. */
#include "gateway/gateway.h"

#include <stdio.h>

#include "common/runtime.h"
#include "common/snapshot.h"

int weir_gateway_main(int argc, char **argv, int first)
{
    weir_cli_t cli;
    weir_runtime_cli_defaults(&cli);
    cli.namespace = "istio-system";
    weir_labels_parse("istio=ingressgateway", &cli.labels);
    int status = 2;
    if (weir_cli_parse(&cli, argc, argv, first) != 0)
        goto out;
    status = 1;
    weir_config_t *cfg = weir_runtime_load_config(&cli);
    if (cfg == NULL)
        goto out;
    weir_diags_t diags = WEIR_DIAGS_INIT;
    weir_gateway_identity_t id = {
        .labels = &cli.labels, .namespace = cli.namespace, .trust_domain = cli.trust_domain};
    weir_snapshot_t *snap = weir_snapshot_build_gateway(cfg, &id, &diags);
    weir_diags_print(&diags, stderr);
    weir_diags_clear(&diags);
    weir_snapshot_set_current(snap);

    weir_proxy_options_t opts;
    weir_proxy_options_default(&opts);
    opts.use_remote_address = true; /* the edge appends the client to x-forwarded-for */
    if (weir_runtime_start(&cli, &opts) != 0)
        goto shutdown;
    weir_listener_opts_t lo = {.kind = WEIR_LISTENER_GATEWAY};
    for (size_t i = 0; i < snap->n_listeners; i++) {
        if (weir_runtime_listen(snap->listeners[i].bind, snap->listeners[i].port, &lo) != 0)
            goto shutdown;
    }
    weir_runtime_run();
    status = 0;
shutdown:
    weir_runtime_shutdown();
out:
    weir_cli_free(&cli);
    return status;
}
