/* common/runtime.h: what every role does around the proxy: load the config like a compiler,
 * open the access log, apply the command-line timeouts, run the loop until SIGTERM/SIGINT,
 * and release everything on the way out. The roles (gateway/, agent/) only decide which
 * snapshot to build and which listeners to open. */
#ifndef WEIR_RUNTIME_H
#define WEIR_RUNTIME_H

#include "common/cli.h"
#include "common/config.h"
#include "common/proxy.h"

/* Options every role starts from, before parsing argv. */
void weir_runtime_cli_defaults(weir_cli_t *cli);

/* Loads every -c path. Prints diagnostics to stderr; returns NULL when there was an error. */
weir_config_t *weir_runtime_load_config(const weir_cli_t *cli);

/* Loads the mesh identity (--certs), opens the access log, initialises the proxy with `opts`
 * adjusted by the command line's timeouts, opens the admin (--admin), health (15021) and
 * Prometheus (15090) ports, and names this proxy in Istio's metrics (workload from the app
 * label, else `role`). Returns 0, or prints the problem and returns -1. */
int weir_runtime_start(const weir_cli_t *cli, weir_proxy_options_t *opts, const char *role);

/* Opens one listener, logging where it listens; returns 0 or -1 (logged). */
int weir_runtime_listen(const char *bind, unsigned port, const weir_listener_opts_t *opts);

/* Starts the Kubernetes API client when --k8s-api asks for it, declares the proxy ready
 * (/healthz/ready; with the API, only once its first registry is in force, so a pod never
 * goes ready with no endpoints) and runs the loop. SIGTERM or SIGINT (or POST /quitquitquit)
 * drains: readiness fails, listeners close, keep-alive responses carry Connection: close, and
 * the loop ends once no request is in flight or at --drain-seconds. Returns 0, or -1 when the
 * API client cannot start (a malformed URL, an unreadable CA file). */
int weir_runtime_run(void);

/* The Kubernetes API client, or NULL when there is none (for /stats). */
const struct weir_k8s_client *weir_runtime_k8s(void);

/* Closes the access log and drops the current snapshot. */
void weir_runtime_shutdown(void);

#endif
