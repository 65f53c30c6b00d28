/* gateway/gateway.c: see gateway.h. */
#include "gateway/gateway.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/cli.h"
#include "common/config.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/proxy.h"
#include "common/snapshot.h"

static uv_signal_t sigterm, sigint;

static void on_stop_signal(uv_signal_t *h, int signum)
{
    weir_log_info("signal %d: stopping", signum);
    weir_proxy_close_listeners();
    weir_proxy_close_idle();
    uv_signal_stop(&sigterm);
    uv_signal_stop(&sigint);
    uv_stop(weir_loop());
}

static uint64_t seconds_to_ms(double s, uint64_t fallback)
{
    return s < 0 ? fallback : (uint64_t)(s * 1000.0);
}

int weir_gateway_main(int argc, char **argv, int first)
{
    weir_cli_t cli = {.namespace = "istio-system",
                      .access_log = "-",
                      .log_level = WEIR_LOG_INFO,
                      .request_headers_timeout_s = -1,
                      .idle_timeout_s = -1,
                      .stream_idle_timeout_s = -1,
                      .connect_timeout_s = -1};
    weir_labels_parse("istio=ingressgateway", &cli.labels);
    if (weir_cli_parse(&cli, argc, argv, first) != 0) {
        weir_cli_free(&cli);
        return 2;
    }
    weir_log_set_level(cli.log_level);
    if (cli.n_paths == 0) {
        fprintf(stderr, "weir gateway: at least one -c PATH is required\n");
        weir_cli_free(&cli);
        return 2;
    }
    weir_diags_t diags = WEIR_DIAGS_INIT;
    weir_config_t *cfg = weir_config_load(cli.paths, cli.n_paths, &diags);
    if (cfg == NULL) {
        weir_diags_print(&diags, stderr);
        weir_diags_clear(&diags);
        weir_cli_free(&cli);
        return 1;
    }
    weir_gateway_identity_t id = {.labels = &cli.labels, .namespace = cli.namespace};
    weir_snapshot_t *snap = weir_snapshot_build_gateway(cfg, &id, &diags);
    weir_diags_print(&diags, stderr);
    weir_diags_clear(&diags);
    weir_snapshot_set_current(snap);

    int rc = weir_access_log_open(cli.access_log, cli.log_format);
    if (rc < 0) {
        fprintf(stderr, "weir gateway: --access-log %s: %s\n", cli.access_log, strerror(-rc));
        weir_snapshot_set_current(NULL);
        weir_cli_free(&cli);
        return 1;
    }
    weir_proxy_options_t opts;
    weir_proxy_options_default(&opts);
    opts.use_remote_address = true;
    opts.request_headers_timeout_ms =
        seconds_to_ms(cli.request_headers_timeout_s, opts.request_headers_timeout_ms);
    opts.idle_timeout_ms = seconds_to_ms(cli.idle_timeout_s, opts.idle_timeout_ms);
    opts.stream_idle_timeout_ms =
        seconds_to_ms(cli.stream_idle_timeout_s, opts.stream_idle_timeout_ms);
    opts.connect_timeout_ms = seconds_to_ms(cli.connect_timeout_s, opts.connect_timeout_ms);
    weir_proxy_init(&opts);

    signal(SIGPIPE, SIG_IGN);
    int status = 0;
    for (size_t i = 0; i < snap->n_listeners; i++) {
        const weir_listener_spec_t *l = &snap->listeners[i];
        rc = weir_proxy_listen(l->bind, l->port);
        if (rc < 0) {
            weir_log_error("cannot listen on %s:%u: %s", l->bind, l->port, uv_strerror(rc));
            status = 1;
            break;
        }
        weir_log_info("listening on %s:%u", l->bind, l->port);
    }
    if (status == 0) {
        uv_signal_init(weir_loop(), &sigterm);
        uv_signal_init(weir_loop(), &sigint);
        uv_signal_start(&sigterm, on_stop_signal, SIGTERM);
        uv_signal_start(&sigint, on_stop_signal, SIGINT);
        uv_run(weir_loop(), UV_RUN_DEFAULT);
    }
    weir_access_log_close();
    weir_snapshot_set_current(NULL);
    weir_cli_free(&cli);
    return status;
}
