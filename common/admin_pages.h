/* common/admin_pages.h: what the admin, health and Prometheus ports show, as Envoy's and
 * Istio's do: /ready, /stats, /stats/prometheus, /clusters (text and ?format=json),
 * /config_dump, /certs, /logging, POST /quitquitquit and /drain_listeners on the admin port
 * (loopback only); /healthz/ready on 15021 and /stats/prometheus on 15090 (all addresses).
 * Loop thread only. */
#ifndef WEIR_ADMIN_PAGES_H
#define WEIR_ADMIN_PAGES_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *admin_bind;  /* NULL: no admin port */
    uint32_t admin_port;
    uint32_t health_port;     /* 0: none */
    uint32_t prometheus_port; /* 0: none */
    const char *role;         /* "gateway" or "sidecar", for /config_dump */
    /* Asked to stop (POST /quitquitquit): the runtime drains and exits. */
    void (*quit)(void);
} weir_admin_options_t;

/* Opens the ports. Returns 0, or -1 after logging which port could not be opened. */
int weir_admin_pages_start(const weir_admin_options_t *o);

/* Readiness (/ready, /healthz/ready): true once config, certificates and listeners are all
 * up; false again while draining. */
void weir_admin_set_ready(bool ready);
bool weir_admin_ready(void);

#endif
