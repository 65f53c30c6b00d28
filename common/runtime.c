/* common/runtime.c: see runtime.h. */
#include "common/runtime.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "common/admin.h"
#include "common/analyze.h"
#include "common/admin_pages.h"
#include "common/identity.h"
#include "common/k8s.h"
#include "common/metrics.h"
#include "common/log.h"
#include "common/reload.h"
#include "common/loop.h"
#include "common/snapshot.h"

static uv_signal_t sigterm, sigint;
static uv_timer_t drain_timer;
static uint64_t drain_deadline_ms;
static double drain_seconds = 5;
static bool drain_started, drain_timer_ready;
static const weir_cli_t *rt_cli;
static weir_k8s_client_t *k8s;
static bool registry_applied; /* the first registry from the API is in force */

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
    cli->admin = "127.0.0.1:15000";
    cli->health_port = 15021;
    cli->prometheus_port = 15090;
    cli->drain_seconds = 5;
    cli->k8s_api = "auto";
}

weir_config_t *weir_runtime_load_config(const weir_cli_t *cli)
{
    if (cli->n_paths == 0) {
        fprintf(stderr, "weir: at least one -c PATH is required\n");
        return NULL;
    }
    weir_diags_t diags = WEIR_DIAGS_INIT;
    weir_config_t *cfg = weir_config_load(cli->paths, cli->n_paths, &diags);
    if (cfg) {
        weir_config_warn_unapplied(cfg, &diags);
        weir_analyze(cfg, &diags);
    }
    weir_diags_print(&diags, stderr);
    weir_diags_clear(&diags);
    return cfg;
}

static uint64_t seconds_to_ms(double s, uint64_t fallback)
{
    return s < 0 ? fallback : (uint64_t)(s * 1000.0);
}

static void start_drain(void);

/* "127.0.0.1:15000" -> bind and port; false for "off" or a malformed value. */
static bool parse_admin(const char *spec, char *bind, size_t len, uint32_t *port)
{
    const char *colon = spec ? strrchr(spec, ':') : NULL;
    if (colon == NULL || strcmp(spec, "off") == 0)
        return false;
    snprintf(bind, len, "%.*s", (int)(colon - spec), spec);
    *port = (uint32_t)strtoul(colon + 1, NULL, 10);
    return *port > 0;
}

int weir_runtime_start(const weir_cli_t *cli, weir_proxy_options_t *opts, const char *role)
{
    weir_log_set_level(cli->log_level);
    rt_cli = cli;
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
    drain_seconds = cli->drain_seconds;
    const char *app = weir_labels_get(&cli->labels, "app");
    weir_proxy_set_metrics_identity(weir_metrics_peer(app ? app : role, cli->namespace,
                                                      weir_identity_id(), app ? app : role,
                                                      weir_labels_get(&cli->labels, "version")));
    char bind[64];
    uint32_t admin_port = 0;
    bool admin = parse_admin(cli->admin, bind, sizeof(bind), &admin_port);
    if (cli->admin && !admin && strcmp(cli->admin, "off") != 0) {
        fprintf(stderr, "weir: --admin: expected ADDR:PORT or off, got \"%s\"\n", cli->admin);
        return -1;
    }
    weir_admin_options_t ao = {
        .admin_bind = admin ? bind : NULL,
        .admin_port = admin_port,
        .health_port = cli->health_port,
        .prometheus_port = cli->prometheus_port,
        .role = role,
        .quit = start_drain,
    };
    return weir_admin_pages_start(&ao);
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

/* Every 50 ms while draining: done once nothing is in flight, or at the deadline. */
static void on_drain_tick(uv_timer_t *t)
{
    size_t active = weir_proxy_active_requests();
    if (active == 0 || weir_now_ms() >= drain_deadline_ms) {
        if (active)
            weir_log_warn("drain deadline: %zu request(s) still in flight are cut", active);
        uv_timer_stop(t);
        uv_stop(weir_loop());
    }
}

static void start_drain(void)
{
    if (drain_started)
        return;
    drain_started = true;
    weir_admin_set_ready(false);
    if (k8s) {
        weir_k8s_stop(k8s, NULL, NULL);
        k8s = NULL;
    }
    weir_proxy_drain();
    drain_deadline_ms = weir_now_ms() + (uint64_t)(drain_seconds * 1000.0);
    uv_timer_start(&drain_timer, on_drain_tick, 0, 50);
}

/* The handlers stay installed while draining: a second SIGTERM (kubelet, a test) must not
 * fall back to the default action and cut the requests still finishing. */
static void on_stop_signal(uv_signal_t *h, int signum)
{
    if (drain_started) {
        weir_log_info("signal %d: already draining", signum);
        return;
    }
    weir_log_info("signal %d: draining (at most %.1f s)", signum, drain_seconds);
    start_drain();
}

/* The API's registry changed (debounced by the client): it joins the -c config. */
static void on_registry(const weir_k8s_registry_t *reg, void *data)
{
    (void)data;
    int rc = weir_reload_set_source(WEIR_K8S_SOURCE_NAME, reg->yaml);
    if (rc < 0) {
        weir_log_error("Kubernetes registry generation %llu: the config it makes is invalid "
                       "(see above); the previous one keeps serving",
                       (unsigned long long)reg->generation);
        return;
    }
    if (!registry_applied) {
        registry_applied = true;
        weir_log_info("Kubernetes registry: %zu service(s), %zu workload(s) in force",
                      reg->n_services, reg->n_workloads);
        if (!drain_started)
            weir_admin_set_ready(true);
    }
}

/* --k8s-api: off, a URL, or auto (on only inside a pod). Returns -1 when asked for and it
 * cannot start; 0 when off; 1 when started (readiness then waits for the first registry). */
static int start_k8s(void)
{
    const char *api = rt_cli ? rt_cli->k8s_api : NULL;
    char url[300];
    if (api == NULL || strcmp(api, "off") == 0)
        return 0;
    if (strcmp(api, "auto") == 0) {
        if (weir_k8s_in_cluster_url(url, sizeof(url)) != 0)
            return 0;
        api = url;
    }
    weir_k8s_options_t o = {
        .api_url = api,
        .token_path = rt_cli->k8s_token,
        .ca_path = rt_cli->k8s_ca,
        .namespace = rt_cli->k8s_namespace,
        .cluster_domain = rt_cli->cluster_domain,
        .on_change = on_registry,
    };
    char err[256];
    k8s = weir_k8s_start(weir_loop(), &o, err, sizeof(err));
    if (k8s == NULL) {
        weir_log_error("--k8s-api %s: %s", api, err);
        return -1;
    }
    weir_log_info("services and endpoints from the Kubernetes API at %s", api);
    return 1;
}

const weir_k8s_client_t *weir_runtime_k8s(void)
{
    return k8s;
}

int weir_runtime_run(void)
{
    int k = start_k8s();
    if (k < 0)
        return -1;
    weir_admin_set_ready(k == 0);
    uv_timer_init(weir_loop(), &drain_timer);
    drain_timer_ready = true;
    uv_signal_init(weir_loop(), &sigterm);
    uv_signal_init(weir_loop(), &sigint);
    uv_signal_start(&sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&sigint, on_stop_signal, SIGINT);
    uv_run(weir_loop(), UV_RUN_DEFAULT);
    return 0;
}

void weir_runtime_shutdown(void)
{
    if (k8s) {
        weir_k8s_stop(k8s, NULL, NULL);
        k8s = NULL;
    }
    weir_admin_close_all();
    if (drain_timer_ready)
        uv_close((uv_handle_t *)&drain_timer, NULL);
    weir_access_log_close();
    weir_reload_stop();
    weir_identity_unload();
    weir_snapshot_set_current(NULL);
    uv_run(weir_loop(), UV_RUN_NOWAIT); /* let closing handles finish */
}
