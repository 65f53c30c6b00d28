/* common/identity.h: the proxy's own mesh identity: the workload certificate in Istio's file
 * layout (--certs DIR: root-cert.pem, cert-chain.pem, key.pem), turned into the two TLS
 * configurations the proxy uses (server side for inbound mTLS, client side for ISTIO_MUTUAL
 * upstreams), and kept fresh.
 *
 * Rotation: the directory is watched (an inotify event, and a poll every few seconds in case
 * an event is missed, as with a Kubernetes Secret mount's symlink swap). After a short quiet
 * period the files are read again; a valid set replaces the configurations for new handshakes
 * while existing connections keep theirs (each holds a reference); an invalid set is logged and
 * the old one kept.
 *
 * Loop thread only. The configurations returned are borrowed: take a reference to keep one. */
#ifndef WEIR_IDENTITY_H
#define WEIR_IDENTITY_H

#include <stdbool.h>
#include <stdint.h>

#include "common/tls.h"

/* Loads DIR once and starts watching it. Returns 0, or prints why and returns -1. */
int weir_identity_load(const char *certs_dir, const char *trust_domain);

/* The current configurations, or NULL when no --certs were given. */
weir_tls_config_t *weir_identity_server(void);
weir_tls_config_t *weir_identity_client(void);
/* This proxy's SPIFFE ID ("spiffe://cluster.local/ns/default/sa/httpd"), or NULL. */
const char *weir_identity_id(void);
const char *weir_identity_trust_domain(void);
/* When the workload certificate in force expires (seconds since the epoch), 0 without one. */
int64_t weir_identity_expiry(void);

/* How many times the files were loaded successfully (1 after weir_identity_load). */
uint64_t weir_identity_generation(void);

/* Stops watching and drops the configurations. */
void weir_identity_unload(void);

#endif
