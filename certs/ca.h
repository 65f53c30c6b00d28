/* certs/ca.h: the mesh CA and workload certificates (`weir certs ca|issue`).
 *
 *   weir certs ca    --out DIR [--trust-domain cluster.local] [--days 3650] [--force]
 *   weir certs issue --ca DIR --namespace NS --service-account SA --out DIR [--days 1] [--force]
 *
 * `ca` makes a self-signed root: ECDSA P-256, subject "O=<trust-domain>", basicConstraints
 * CA:TRUE (critical), keyUsage keyCertSign|cRLSign (critical), a subject key identifier. It
 * writes Istio's CA file names: ca-cert.pem, ca-key.pem (0600) and root-cert.pem (a copy of
 * ca-cert.pem). The trust domain is recorded only in the root's subject O: `issue` reads it back
 * from there, so a CA directory has no other state.
 *
 * `issue` makes a workload certificate as Istio's CA does: ECDSA P-256, an EMPTY subject, a
 * critical subjectAltName holding exactly one URI, spiffe://<td>/ns/<ns>/sa/<sa>, extKeyUsage
 * serverAuth+clientAuth, keyUsage digitalSignature|keyEncipherment (critical), basicConstraints
 * CA:FALSE, an authority key identifier. It writes Istio's workload file names: cert-chain.pem
 * (the leaf; the root signs it directly), key.pem (0600) and root-cert.pem. The leaf never
 * outlives its CA: its notAfter is clipped to the root's.
 *
 * Both: serial numbers are 128 random bits; notBefore is backdated 5 minutes for clock skew
 * between nodes; --out is created (mkdir -p) when missing; an existing file is never replaced
 * without --force (all targets are checked before anything is written, so a refused run
 * writes nothing). Every file is written to a temporary name created with O_EXCL, given its mode
 * with fchmod (keys 0600, certificates 0644, whatever the umask) and moved into place, so a
 * reader (a certificate watcher) never sees a half-written file.
 *
 * The library calls below are what the CLI uses; tests call them with odd specs (expired,
 * two URIs, no EKU, CA:TRUE) to make the certificates the TLS engine must refuse. */
#ifndef WEIR_CERTS_CA_H
#define WEIR_CERTS_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* `weir certs ...`: argv[first] is "ca" or "issue". Returns the process exit code: 0, 1 on a
 * failure (existing file, unreadable CA, I/O), 2 on a usage error. Messages go to stderr. */
int weir_certs_main(int argc, char **argv, int first);

/* A certificate and its private key, both PEM, NUL-terminated, owned (free with
 * weir_certs_pem_free). */
typedef struct {
    char *cert_pem;
    char *key_pem;
} weir_certs_pem_t;

void weir_certs_pem_free(weir_certs_pem_t *p);

#define WEIR_CERTS_EKU_SERVER 1u
#define WEIR_CERTS_EKU_CLIENT 2u

/* What a leaf certificate says. Zero values mean the defaults in brackets. */
typedef struct {
    const char *const *uris; /* URI SANs, in order; the CLI passes exactly one SPIFFE ID */
    size_t n_uris;           /* 0: no SAN extension at all */
    time_t not_before;       /* [now - 5 min] */
    time_t not_after;        /* [not_before + 1 day]; clipped to the CA's notAfter */
    unsigned eku;            /* WEIR_CERTS_EKU_*; 0: no extKeyUsage extension */
    bool is_ca;              /* basicConstraints CA:TRUE (only to test CA-as-leaf refusal) */
} weir_certs_leaf_spec_t;

/* Makes a root CA for trust_domain valid from now - 5 min to not_after (0: now + 3650 days).
 * Returns 0, or -1 with a message in err. */
int weir_certs_make_ca(const char *trust_domain, time_t not_after, weir_certs_pem_t *out, char *err,
                       size_t errlen);

/* Makes a leaf signed by the CA (ca_cert_pem + ca_key_pem). Returns 0, or -1 with a message. */
int weir_certs_make_leaf(const char *ca_cert_pem, const char *ca_key_pem,
                         const weir_certs_leaf_spec_t *spec, weir_certs_pem_t *out, char *err,
                         size_t errlen);

/* The trust domain recorded in a CA certificate (its subject O), copied into td.
 * Returns 0, or -1 with a message. */
int weir_certs_ca_trust_domain(const char *ca_cert_pem, char *td, size_t tdlen, char *err,
                               size_t errlen);

#endif
