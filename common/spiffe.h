/* common/spiffe.h: SPIFFE IDs as Istio uses them, and the URI SAN that carries them.
 *
 * A workload's identity is one URI SAN, `spiffe://<trust-domain>/ns/<namespace>/sa/<account>`
 * (istio-semantics.md 4.3). This module parses and checks those IDs, reads them from a parsed
 * certificate and encodes the SubjectAltName extension that holds one. mbedTLS 2.28 can do
 * neither for URIs (platform-facts.md): it keeps URI entries in crt->subject_alt_names with the
 * context-specific tag [6] and their raw bytes, and its writer has no SAN support at all.
 *
 * Rules (go-spiffe's, with Istio's path form on top):
 * - scheme exactly "spiffe://" (lower case, as go-spiffe and Istio compare it);
 * - trust domain 1..255 characters of [a-z0-9._-] (no upper case, port, user info);
 * - path exactly /ns/<ns>/sa/<sa>, each segment non-empty, of [A-Za-z0-9._-], not "." or "..";
 * - no query, fragment or percent-encoding; at most 2048 bytes in all.
 *
 * Pure functions, no allocation, no globals. Parsed IDs point into the caller's string. */
#ifndef WEIR_SPIFFE_H
#define WEIR_SPIFFE_H

#include <stdbool.h>
#include <stddef.h>

struct mbedtls_x509_crt;

#define WEIR_SPIFFE_MAX_LEN 2048   /* the SPIFFE spec's limit on a whole ID */
#define WEIR_SPIFFE_MAX_TD_LEN 255 /* a trust domain is a DNS-ish name */
#define WEIR_SPIFFE_SCHEME "spiffe://"

/* Errors: negative, stable, and named by weir_spiffe_strerror(). */
enum {
    WEIR_SPIFFE_OK = 0,
    WEIR_SPIFFE_ERR_EMPTY = -1,
    WEIR_SPIFFE_ERR_TOO_LONG = -2,
    WEIR_SPIFFE_ERR_SCHEME = -3,
    WEIR_SPIFFE_ERR_TRUST_DOMAIN = -4, /* empty, too long or a bad character */
    WEIR_SPIFFE_ERR_QUERY = -5,        /* '?' or '#' */
    WEIR_SPIFFE_ERR_PATH = -6,         /* not /ns/<ns>/sa/<sa> */
    WEIR_SPIFFE_ERR_SEGMENT = -7,      /* empty, "." or "..", or a bad character */
    WEIR_SPIFFE_ERR_NO_URI_SAN = -8,   /* a certificate without a URI SAN */
    WEIR_SPIFFE_ERR_MULTIPLE_URI_SAN = -9,
    WEIR_SPIFFE_ERR_SPACE = -10, /* the output buffer is too small */
};

/* A parsed ID: slices of the string that was parsed (not NUL-terminated). */
typedef struct {
    const char *td;
    size_t td_len;
    const char *ns;
    size_t ns_len;
    const char *sa;
    size_t sa_len;
} weir_spiffe_id_t;

/* Parses `uri` (len bytes; the bytes need not be NUL-terminated). Returns 0 and fills *out
 * (which may be NULL to only validate), or a WEIR_SPIFFE_ERR_*. */
int weir_spiffe_parse(const char *uri, size_t len, weir_spiffe_id_t *out);

/* A short English description of a WEIR_SPIFFE_ERR_* code, e.g. "trust domain: invalid". */
const char *weir_spiffe_strerror(int err);

/* Whether `td` (NUL-terminated) is a valid trust domain. */
bool weir_spiffe_trust_domain_valid(const char *td);

/* Whether the parsed ID belongs to trust domain `td` (exact, case-sensitive: valid trust
 * domains are lower case). */
bool weir_spiffe_in_trust_domain(const weir_spiffe_id_t *id, const char *td);

/* Writes "spiffe://td/ns/ns/sa/sa" and a NUL into buf. Returns its length, or a
 * WEIR_SPIFFE_ERR_* when a part is invalid or buf is too small. */
int weir_spiffe_format(char *buf, size_t cap, const char *td, const char *ns, const char *sa);

/* The single URI SAN of a certificate: *uri points into crt's own memory (valid while crt
 * lives), *len its length. Returns 0, WEIR_SPIFFE_ERR_NO_URI_SAN or
 * WEIR_SPIFFE_ERR_MULTIPLE_URI_SAN. It does not check that the URI is a SPIFFE ID. */
int weir_spiffe_uri_san(const struct mbedtls_x509_crt *crt, const char **uri, size_t *len);

/* The certificate's SPIFFE identity: exactly one URI SAN, which must parse. Returns 0 with
 * *id pointing into crt, or a WEIR_SPIFFE_ERR_*. */
int weir_spiffe_from_crt(const struct mbedtls_x509_crt *crt, weir_spiffe_id_t *id);

/* DER of a SubjectAltName extension value holding the given URIs, in order:
 * GeneralNames ::= SEQUENCE OF GeneralName, each uniformResourceIdentifier [6] IA5String
 * (implicit tag 0x86). Returns the length written into buf, or WEIR_SPIFFE_ERR_SPACE /
 * WEIR_SPIFFE_ERR_EMPTY (no URIs, or an empty one). Any URI is accepted here: certs/ checks
 * its SPIFFE IDs before, and tests need odd ones. */
int weir_spiffe_san_der(const char *const *uris, size_t n, unsigned char *buf, size_t cap);

#endif
