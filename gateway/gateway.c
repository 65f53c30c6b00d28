/* gateway/gateway.c: see gateway.h. */
#include "gateway/gateway.h"

#include <stdio.h>

#include "common/log.h"
#include "common/reload.h"
#include "common/runtime.h"
#include "common/snapshot.h"

typedef struct {
    weir_cli_t cli;
} gateway_t;

static weir_snapshot_t *build(weir_config_t *cfg, void *ctx, weir_diags_t *diags)
{
    gateway_t *g = ctx;
    weir_gateway_identity_t id = {.labels = &g->cli.labels,
                                  .namespace = g->cli.namespace,
                                  .trust_domain = g->cli.trust_domain,
                                  .credential_dir = g->cli.credential_dir};
    return weir_snapshot_build_gateway(cfg, &id, diags);
}

/* After a reload: listen on the ports Gateways gained, stop on the ports they lost. */
static void reconcile(weir_snapshot_t *snap, void *ctx)
{
    uint32_t open[64];
    size_t n_open = weir_proxy_listener_ports(open, 64);
    weir_listener_opts_t lo = {.kind = WEIR_LISTENER_GATEWAY};
    for (size_t i = 0; i < snap->n_listeners; i++) {
        bool found = false;
        for (size_t k = 0; k < n_open && !found; k++)
            found = open[k] == snap->listeners[i].port;
        if (!found)
            weir_runtime_listen(snap->listeners[i].bind, snap->listeners[i].port, &lo);
    }
    for (size_t k = 0; k < n_open; k++) {
        if (weir_snapshot_listener(snap, open[k]) == NULL) {
            weir_log_info("no Gateway server uses port %u any more: closing it", open[k]);
            weir_proxy_close_listener(open[k]);
        }
    }
}

int weir_gateway_main(int argc, char **argv, int first)
{
    gateway_t g;
    weir_runtime_cli_defaults(&g.cli);
    g.cli.namespace = "istio-system";
    weir_labels_parse("istio=ingressgateway", &g.cli.labels);
    int status = 2;
    if (weir_cli_parse(&g.cli, argc, argv, first) != 0)
        goto out;
    status = 1;
    weir_config_t *cfg = weir_runtime_load_config(&g.cli);
    if (cfg == NULL)
        goto out;
    weir_diags_t diags = WEIR_DIAGS_INIT;
    weir_snapshot_t *snap = build(cfg, &g, &diags);
    weir_diags_print(&diags, stderr);
    weir_diags_clear(&diags);
    weir_snapshot_set_current(snap);

    weir_proxy_options_t opts;
    weir_proxy_options_default(&opts);
    opts.use_remote_address = true; /* the edge appends the client to x-forwarded-for */
    if (weir_runtime_start(&g.cli, &opts, "istio-ingressgateway") != 0)
        goto shutdown;
    weir_listener_opts_t lo = {.kind = WEIR_LISTENER_GATEWAY};
    for (size_t i = 0; i < snap->n_listeners; i++) {
        if (weir_runtime_listen(snap->listeners[i].bind, snap->listeners[i].port, &lo) != 0)
            goto shutdown;
    }
    weir_reload_start(&g.cli, build, reconcile, &g);
    if (weir_runtime_run() == 0)
        status = 0;
shutdown:
    weir_runtime_shutdown();
out:
    weir_cli_free(&g.cli);
    return status;
}
