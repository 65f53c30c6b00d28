/* common/runtime.c: see runtime.h. */
#include "common/runtime.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "common/identity.h"
#include "common/log.h"
#include "common/reload.h"
#include "common/loop.h"
#include "common/snapshot.h"

static uv_signal_t sigterm, sigint;

void weir_runtime_cli_defaults(weir_cli_t *cli)
{
    memset(cli, 0, sizeof(*cli));
    cli->access_log = "-";
    cli->log_level = WEIR_LOG_INFO;
    cli->request_headers_timeout_s = -1;
    cli->idle_timeout_s = -1;
    cli->stream_idle_timeout_s = -1;
    cli->connect_timeout_s = -1;
    cli->trust_domain = "cluster.local";
}

weir_config_t *weir_runtime_load_config(const weir_cli_t *cli)
{
    if (cli->n_paths == 0) {
        fprintf(stderr, "weir: at least one -c PATH is required\n");
        return NULL;
    }
    weir_diags_t diags = WEIR_DIAGS_INIT;
    weir_config_t *cfg = weir_config_load(cli->paths, cli->n_paths, &diags);
    if (cfg)
        weir_config_warn_unapplied(cfg, &diags);
    weir_diags_print(&diags, stderr);
    weir_diags_clear(&diags);
    return cfg;
}

static uint64_t seconds_to_ms(double s, uint64_t fallback)
{
    return s < 0 ? fallback : (uint64_t)(s * 1000.0);
}

int weir_runtime_start(const weir_cli_t *cli, weir_proxy_options_t *opts)
{
    weir_log_set_level(cli->log_level);
    if (cli->certs_dir && weir_identity_load(cli->certs_dir, cli->trust_domain) != 0)
        return -1;
    int rc = weir_access_log_open(cli->access_log, cli->log_format);
    if (rc < 0) {
        fprintf(stderr, "weir: --access-log %s: %s\n", cli->access_log, strerror(-rc));
        return -1;
    }
    opts->request_headers_timeout_ms =
        seconds_to_ms(cli->request_headers_timeout_s, opts->request_headers_timeout_ms);
    opts->idle_timeout_ms = seconds_to_ms(cli->idle_timeout_s, opts->idle_timeout_ms);
    opts->stream_idle_timeout_ms =
        seconds_to_ms(cli->stream_idle_timeout_s, opts->stream_idle_timeout_ms);
    opts->connect_timeout_ms = seconds_to_ms(cli->connect_timeout_s, opts->connect_timeout_ms);
    opts->shadow_host_suffix = !cli->no_shadow_host_suffix;
    weir_proxy_init(opts);
    signal(SIGPIPE, SIG_IGN); /* a peer that goes away is an error code, not a death */
    return 0;
}

int weir_runtime_listen(const char *bind, unsigned port, const weir_listener_opts_t *opts)
{
    int rc = weir_proxy_listen(bind, port, opts);
    if (rc < 0) {
        weir_log_error("cannot listen on %s:%u: %s", bind, port, uv_strerror(rc));
        return -1;
    }
    weir_log_info("listening on %s:%u", bind, port);
    return 0;
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    weir_log_info("signal %d: stopping", signum);
    weir_proxy_close_listeners();
    weir_proxy_close_idle();
    uv_signal_stop(&sigterm);
    uv_signal_stop(&sigint);
    uv_stop(weir_loop());
}

void weir_runtime_run(void)
{
    uv_signal_init(weir_loop(), &sigterm);
    uv_signal_init(weir_loop(), &sigint);
    uv_signal_start(&sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&sigint, on_stop_signal, SIGINT);
    uv_run(weir_loop(), UV_RUN_DEFAULT);
}

void weir_runtime_shutdown(void)
{
    weir_access_log_close();
    weir_reload_stop();
    weir_identity_unload();
    weir_snapshot_set_current(NULL);
    uv_run(weir_loop(), UV_RUN_NOWAIT); /* let closing handles finish */
}
