/* common/tls.c: see tls.h. */
#include "common/tls.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_internal.h> /* handshake->resume: 2.28 has no public "was it resumed" */
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#include "common/diag.h"
#include "common/spiffe.h"

#define DEFAULT_TICKET_LIFETIME_S 7200
#define DEFAULT_MAX_VERIFY_DEPTH 3
#define TLS_RECORD_HANDSHAKE 22

const char *const weir_tls_istio_alpn[] = {"istio-peer-exchange", "istio", NULL};

/* Only what a P-256 mesh needs; ECDSA certificates, so ECDSA suites (Istio's server list has
 * the RSA ones too, which our certificates could never use). */
static const int ciphersuites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    0,
};

static const mbedtls_ecp_group_id curves[] = {
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_NONE,
};

static const int sig_hashes[] = {MBEDTLS_MD_SHA256, MBEDTLS_MD_SHA384, MBEDTLS_MD_NONE};

/* What a peer's chain may use: SHA-2 signatures, P-256/P-384 keys, RSA >= 2048 (a gateway's
 * external clients or roots may be RSA even though our own certificates are not). */
static const mbedtls_x509_crt_profile cert_profile = {
    MBEDTLS_X509_ID_FLAG(MBEDTLS_MD_SHA256) | MBEDTLS_X509_ID_FLAG(MBEDTLS_MD_SHA384) |
        MBEDTLS_X509_ID_FLAG(MBEDTLS_MD_SHA512),
    MBEDTLS_X509_ID_FLAG(MBEDTLS_PK_ECKEY) | MBEDTLS_X509_ID_FLAG(MBEDTLS_PK_ECDSA) |
        MBEDTLS_X509_ID_FLAG(MBEDTLS_PK_RSA),
    MBEDTLS_X509_ID_FLAG(MBEDTLS_ECP_DP_SECP256R1) | MBEDTLS_X509_ID_FLAG(MBEDTLS_ECP_DP_SECP384R1),
    2048,
};

struct weir_tls_config {
    unsigned refs;
    weir_tls_role_t role;
    mbedtls_ssl_config conf;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt root, chain;
    mbedtls_pk_context key;
    mbedtls_ssl_ticket_context ticket; /* set up only for servers with tickets; free is safe */
    char *trust_domain; /* NULL: plain TLS */
    char **alpn;        /* NULL-terminated copies, or NULL */
    char *own_id;
    unsigned max_depth;
};

struct weir_tls_session {
    mbedtls_ssl_session s;
};

struct weir_tls {
    mbedtls_ssl_context ssl; /* first: the SNI callback gets only the ssl context */
    weir_tls_config_t *cfg;
    weir_tls_state_t state;

    /* Ciphertext fed but not yet read by mbedTLS: in[off..len), capacity cap. Released when
     * empty so an idle connection holds none. */
    unsigned char *in;
    size_t in_off, in_len, in_cap;
    bool eof;
    weir_buf_t out;   /* ciphertext for the caller; released when taken */
    weir_buf_t early; /* plaintext written before the handshake completed */

    /* Record boundaries in what mbedTLS consumed, to see a handshake record (a renegotiation
     * request) after the handshake: mbedTLS would refuse it with a warning and carry on. */
    unsigned char rec_hdr[5];
    unsigned rec_hdr_len;
    size_t rec_left;
    bool renegotiation_seen;

    unsigned steps;
    bool resumed, we_closed, peer_closed;
    char *reason;  /* why it failed or closed; NULL: "" */
    char *vreason; /* the verify callback's finding, for the reason */
    char *peer_id;
    char *sni; /* server: what the client asked for */
    char **expect_ids;
    size_t n_expect;
};

/* ---- helpers ----------------------------------------------------------------------------- */

static char *vfmt(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    char *s = weir_mem_alloc((size_t)(n < 0 ? 0 : n) + 1);
    vsnprintf(s, (size_t)(n < 0 ? 0 : n) + 1, fmt, ap);
    return s;
}

static void set_str(char **slot, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_str(char **slot, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vfmt(fmt, ap);
    va_end(ap);
    free(*slot);
    *slot = s;
}

static const char *mbed_err(int rc, char *buf, size_t len)
{
    mbedtls_strerror(rc, buf, len);
    return buf;
}

/* Reads a PEM file the way mbedTLS would, but says which file and why in words. */
static int load_certs(mbedtls_x509_crt *crt, const char *path, const char *what, char *err,
                      size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        weir_errorf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    fclose(f);
    int rc = mbedtls_x509_crt_parse_file(crt, path);
    if (rc != 0) {
        char eb[120];
        if (rc > 0)
            weir_errorf(err, errlen, "%s %s: %d certificate(s) could not be parsed", what, path, rc);
        else
            weir_errorf(err, errlen, "%s %s: not a PEM certificate: %s", what, path,
                    mbed_err(rc, eb, sizeof eb));
        return -1;
    }
    return 0;
}

/* ---- configuration ----------------------------------------------------------------------- */

static int sni_cb(void *arg, mbedtls_ssl_context *ssl, const unsigned char *name, size_t len)
{
    weir_tls_t *t = (weir_tls_t *)ssl; /* ssl is the first member */
    free(t->sni);
    t->sni = weir_mem_strndup((const char *)name, len > 255 ? 255 : len);
    return 0;
}

static void config_free(weir_tls_config_t *c)
{
    mbedtls_ssl_config_free(&c->conf);
    mbedtls_ssl_ticket_free(&c->ticket);
    mbedtls_x509_crt_free(&c->root);
    mbedtls_x509_crt_free(&c->chain);
    mbedtls_pk_free(&c->key);
    mbedtls_ctr_drbg_free(&c->drbg);
    mbedtls_entropy_free(&c->entropy);
    if (c->alpn != NULL) {
        for (char **p = c->alpn; *p != NULL; p++)
            free(*p);
        free(c->alpn);
    }
    free(c->trust_domain);
    free(c->own_id);
    free(c);
}

weir_tls_config_t *weir_tls_config_new(const weir_tls_options_t *o, char *err, size_t errlen)
{
    char eb[120];
    int rc;
    bool server = o->role == WEIR_TLS_SERVER;
    if (o->role != WEIR_TLS_SERVER && o->role != WEIR_TLS_CLIENT) {
        weir_errorf(err, errlen, "invalid TLS role");
        return NULL;
    }
    if (o->trust_domain != NULL && !weir_spiffe_trust_domain_valid(o->trust_domain)) {
        weir_errorf(err, errlen, "invalid trust domain \"%s\"", o->trust_domain);
        return NULL;
    }
    bool verify_peer = !(server && o->no_client_cert);
    if (verify_peer && o->root_pem_path == NULL) {
        weir_errorf(err, errlen, "a root certificate file is needed to verify the peer");
        return NULL;
    }
    if ((o->chain_pem_path == NULL) != (o->key_pem_path == NULL)) {
        weir_errorf(err, errlen, "a certificate chain needs its key, and a key its chain");
        return NULL;
    }
    if (server && o->chain_pem_path == NULL) {
        weir_errorf(err, errlen, "a TLS server needs a certificate chain and key");
        return NULL;
    }

    weir_tls_config_t *c = weir_mem_calloc(1, sizeof(*c));
    c->refs = 1;
    c->role = o->role;
    c->max_depth = o->max_verify_depth ? o->max_verify_depth : DEFAULT_MAX_VERIFY_DEPTH;
    mbedtls_ssl_config_init(&c->conf);
    mbedtls_entropy_init(&c->entropy);
    mbedtls_ctr_drbg_init(&c->drbg);
    mbedtls_x509_crt_init(&c->root);
    mbedtls_x509_crt_init(&c->chain);
    mbedtls_pk_init(&c->key);
    mbedtls_ssl_ticket_init(&c->ticket);
    c->trust_domain = weir_mem_strdup(o->trust_domain);

    static const char pers[] = "weir tls";
    if ((rc = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy,
                                    (const unsigned char *)pers, sizeof(pers) - 1)) != 0) {
        weir_errorf(err, errlen, "cannot seed the random generator: %s", mbed_err(rc, eb, sizeof eb));
        goto fail;
    }
    if ((rc = mbedtls_ssl_config_defaults(
             &c->conf, server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
             MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
        weir_errorf(err, errlen, "mbedTLS config: %s", mbed_err(rc, eb, sizeof eb));
        goto fail;
    }
    mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
    /* Debian's mbedTLS still compiles in TLS 1.0/1.1 and renegotiation: pin both ends. */
    mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&c->conf, ciphersuites);
    mbedtls_ssl_conf_curves(&c->conf, curves);
    mbedtls_ssl_conf_sig_hashes(&c->conf, sig_hashes);
    mbedtls_ssl_conf_renegotiation(&c->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    mbedtls_ssl_conf_legacy_renegotiation(&c->conf, MBEDTLS_SSL_LEGACY_NO_RENEGOTIATION);
    mbedtls_ssl_conf_cert_profile(&c->conf, &cert_profile);

    if (o->root_pem_path != NULL) {
        if (load_certs(&c->root, o->root_pem_path, "root", err, errlen) != 0)
            goto fail;
        mbedtls_ssl_conf_ca_chain(&c->conf, &c->root, NULL);
    }
    mbedtls_ssl_conf_authmode(&c->conf,
                              verify_peer ? MBEDTLS_SSL_VERIFY_REQUIRED : MBEDTLS_SSL_VERIFY_NONE);

    if (o->chain_pem_path != NULL) {
        if (load_certs(&c->chain, o->chain_pem_path, "certificate chain", err, errlen) != 0)
            goto fail;
        FILE *f = fopen(o->key_pem_path, "rb");
        if (f == NULL) {
            weir_errorf(err, errlen, "key %s: %s", o->key_pem_path, strerror(errno));
            goto fail;
        }
        fclose(f);
        if ((rc = mbedtls_pk_parse_keyfile(&c->key, o->key_pem_path, NULL)) != 0) {
            weir_errorf(err, errlen, "key %s: not a PEM private key: %s", o->key_pem_path,
                    mbed_err(rc, eb, sizeof eb));
            goto fail;
        }
        if (!mbedtls_pk_can_do(&c->key, MBEDTLS_PK_ECDSA)) {
            weir_errorf(err, errlen, "key %s: not an EC key (weir's TLS uses ECDHE-ECDSA only)",
                    o->key_pem_path);
            goto fail;
        }
        if (mbedtls_pk_check_pair(&c->chain.pk, &c->key) != 0) {
            weir_errorf(err, errlen, "key %s does not match the certificate in %s", o->key_pem_path,
                    o->chain_pem_path);
            goto fail;
        }
        /* mbedTLS would refuse to use such a certificate at handshake time with "none of the
         * common ciphersuites is usable"; say it now, and which file. */
        const char *eku = server ? MBEDTLS_OID_SERVER_AUTH : MBEDTLS_OID_CLIENT_AUTH;
        size_t eku_len = server ? MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)
                                : MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH);
        if (mbedtls_x509_crt_check_extended_key_usage(&c->chain, eku, eku_len) != 0) {
            weir_errorf(err, errlen, "certificate chain %s: its extKeyUsage lacks %s",
                    o->chain_pem_path, server ? "serverAuth" : "clientAuth");
            goto fail;
        }
        if ((rc = mbedtls_ssl_conf_own_cert(&c->conf, &c->chain, &c->key)) != 0) {
            weir_errorf(err, errlen, "own certificate: %s", mbed_err(rc, eb, sizeof eb));
            goto fail;
        }
        weir_spiffe_id_t id;
        const char *uri;
        size_t len;
        if (weir_spiffe_from_crt(&c->chain, &id) == 0 &&
            weir_spiffe_uri_san(&c->chain, &uri, &len) == 0)
            c->own_id = weir_mem_strndup(uri, len);
    }

    if (server) {
        if (!o->no_session_tickets) {
            uint32_t life = o->ticket_lifetime_s ? o->ticket_lifetime_s : DEFAULT_TICKET_LIFETIME_S;
            if ((rc = mbedtls_ssl_ticket_setup(&c->ticket, mbedtls_ctr_drbg_random, &c->drbg,
                                               MBEDTLS_CIPHER_AES_256_GCM, life)) != 0) {
                weir_errorf(err, errlen, "session tickets: %s", mbed_err(rc, eb, sizeof eb));
                goto fail;
            }
            mbedtls_ssl_conf_session_tickets_cb(&c->conf, mbedtls_ssl_ticket_write,
                                                mbedtls_ssl_ticket_parse, &c->ticket);
        }
        mbedtls_ssl_conf_sni(&c->conf, sni_cb, NULL);
    } else {
        mbedtls_ssl_conf_session_tickets(&c->conf, o->no_session_tickets
                                                       ? MBEDTLS_SSL_SESSION_TICKETS_DISABLED
                                                       : MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
    }

    if (o->alpn != NULL && o->alpn[0] != NULL) {
        size_t n = 0;
        while (o->alpn[n] != NULL)
            n++;
        c->alpn = weir_mem_calloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(o->alpn[i]);
            if (l == 0 || l > 255) {
                weir_errorf(err, errlen, "ALPN protocol names are 1-255 bytes");
                goto fail;
            }
            c->alpn[i] = weir_mem_strdup(o->alpn[i]);
        }
        if ((rc = mbedtls_ssl_conf_alpn_protocols(&c->conf, (const char **)c->alpn)) != 0) {
            weir_errorf(err, errlen, "ALPN: %s", mbed_err(rc, eb, sizeof eb));
            goto fail;
        }
    }
    return c;
fail:
    config_free(c);
    return NULL;
}

weir_tls_config_t *weir_tls_config_from_files(weir_tls_role_t role, const char *root_pem_path,
                                              const char *chain_pem_path, const char *key_pem_path,
                                              const char *trust_domain, char *err, size_t errlen)
{
    weir_tls_options_t o = {
        .role = role,
        .root_pem_path = root_pem_path,
        .chain_pem_path = chain_pem_path,
        .key_pem_path = key_pem_path,
        .trust_domain = trust_domain,
        .alpn = role == WEIR_TLS_CLIENT ? weir_tls_istio_alpn : NULL,
    };
    return weir_tls_config_new(&o, err, errlen);
}

weir_tls_config_t *weir_tls_config_ref(weir_tls_config_t *c)
{
    c->refs++;
    return c;
}

void weir_tls_config_unref(weir_tls_config_t *c)
{
    if (c != NULL && --c->refs == 0)
        config_free(c);
}

const char *weir_tls_config_own_id(const weir_tls_config_t *c)
{
    return c->own_id;
}

/* ---- BIO: mbedTLS reads and writes our buffers -------------------------------------------- */

/* Follows record boundaries in the bytes mbedTLS consumes (it reads exactly one record at a
 * time, header then body), to notice a handshake record once the connection is open. */
static void track_records(weir_tls_t *t, const unsigned char *p, size_t n)
{
    while (n > 0) {
        if (t->rec_left > 0) {
            size_t k = n < t->rec_left ? n : t->rec_left;
            p += k;
            n -= k;
            t->rec_left -= k;
            continue;
        }
        t->rec_hdr[t->rec_hdr_len++] = *p++;
        n--;
        if (t->rec_hdr_len == sizeof(t->rec_hdr)) {
            t->rec_hdr_len = 0;
            t->rec_left = ((size_t)t->rec_hdr[3] << 8) | t->rec_hdr[4];
            if (t->rec_hdr[0] == TLS_RECORD_HANDSHAKE && t->state != WEIR_TLS_HANDSHAKING)
                t->renegotiation_seen = true;
        }
    }
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    weir_tls_t *t = ctx;
    size_t avail = t->in_len - t->in_off;
    if (avail == 0)
        return t->eof ? 0 : MBEDTLS_ERR_SSL_WANT_READ;
    size_t n = len < avail ? len : avail;
    if (n > INT32_MAX)
        n = INT32_MAX;
    memcpy(buf, t->in + t->in_off, n);
    track_records(t, t->in + t->in_off, n);
    t->in_off += n;
    if (t->in_off == t->in_len) {
        free(t->in);
        t->in = NULL;
        t->in_off = t->in_len = t->in_cap = 0;
    }
    return (int)n;
}

/* Always takes everything: weir_tls_write() stops encrypting at the high-water mark instead,
 * so mbedTLS never sees WANT_WRITE and never needs the same buffer offered twice. */
static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    weir_tls_t *t = ctx;
    if (len > INT32_MAX)
        len = INT32_MAX;
    if (t->out.cap - t->out.len < len + 1 && weir_buf_try_reserve(&t->out, len + 1) != 0)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    weir_buf_append(&t->out, buf, len);
    return (int)len;
}

size_t weir_tls_feed_cipher(weir_tls_t *t, const void *data, size_t len)
{
    if (len == 0 || t->eof || t->state == WEIR_TLS_FAILED)
        return 0;
    size_t held = t->in_len - t->in_off;
    if (held >= WEIR_TLS_INBOUND_MAX)
        return 0;
    size_t n = WEIR_TLS_INBOUND_MAX - held;
    if (n > len)
        n = len;
    if (t->in_off > 0) {
        memmove(t->in, t->in + t->in_off, held);
        t->in_off = 0;
        t->in_len = held;
    }
    if (held + n > t->in_cap) {
        size_t cap = held + n < 4096 ? 4096 : held + n;
        if (cap > WEIR_TLS_INBOUND_MAX)
            cap = WEIR_TLS_INBOUND_MAX;
        t->in = weir_mem_realloc(t->in, cap);
        t->in_cap = cap;
    }
    memcpy(t->in + t->in_len, data, n);
    t->in_len += n;
    return n;
}

bool weir_tls_inbound_full(const weir_tls_t *t)
{
    return t->in_len - t->in_off >= WEIR_TLS_INBOUND_MAX;
}

void weir_tls_feed_eof(weir_tls_t *t)
{
    t->eof = true;
}

/* ---- verification ------------------------------------------------------------------------ */

/* The mesh's rules for a peer leaf (tls.h). Returns 0, or -1 with why. */
static int check_leaf(const weir_tls_t *t, const mbedtls_x509_crt *crt, char *why, size_t cap)
{
    const weir_tls_config_t *c = t->cfg;
    bool mesh = c->trust_domain != NULL;
    if (mesh && (crt->ext_types & MBEDTLS_X509_EXT_BASIC_CONSTRAINTS) && crt->ca_istrue) {
        snprintf(why, cap, "peer presented a CA certificate as its leaf");
        return -1;
    }
    if (mesh) {
        weir_spiffe_id_t id;
        const char *uri;
        size_t len;
        int rc = weir_spiffe_uri_san(crt, &uri, &len);
        if (rc == 0)
            rc = weir_spiffe_parse(uri, len, &id);
        if (rc == WEIR_SPIFFE_ERR_NO_URI_SAN || rc == WEIR_SPIFFE_ERR_MULTIPLE_URI_SAN) {
            snprintf(why, cap, "peer %s, so it has no identity",
                     rc == WEIR_SPIFFE_ERR_NO_URI_SAN ? "certificate has no URI SAN"
                                                      : "certificate has more than one URI SAN");
            return -1;
        }
        if (rc != 0) {
            snprintf(why, cap, "peer URI SAN %.*s is not a SPIFFE ID (%s)",
                     (int)(len > 200 ? 200 : len), uri, weir_spiffe_strerror(rc));
            return -1;
        }
        if (!weir_spiffe_in_trust_domain(&id, c->trust_domain)) {
            snprintf(why, cap, "trust domain %.*s is not %s", (int)id.td_len, id.td,
                     c->trust_domain);
            return -1;
        }
        if (t->n_expect > 0) {
            bool ok = false;
            for (size_t i = 0; i < t->n_expect && !ok; i++)
                ok = strlen(t->expect_ids[i]) == len && memcmp(t->expect_ids[i], uri, len) == 0;
            if (!ok) {
                snprintf(why, cap, "peer identity %.*s is not %s%s", (int)(len > 300 ? 300 : len),
                         uri, t->expect_ids[0], t->n_expect > 1 ? " or the others expected" : "");
                return -1;
            }
        }
        bool want_client = c->role == WEIR_TLS_SERVER;
        const char *oid = want_client ? MBEDTLS_OID_CLIENT_AUTH : MBEDTLS_OID_SERVER_AUTH;
        size_t oid_len = want_client ? MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)
                                     : MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH);
        if (!(crt->ext_types & MBEDTLS_X509_EXT_EXTENDED_KEY_USAGE) ||
            mbedtls_x509_crt_check_extended_key_usage(crt, oid, oid_len) != 0) {
            snprintf(why, cap, "peer certificate's extKeyUsage lacks %s",
                     want_client ? "clientAuth" : "serverAuth");
            return -1;
        }
    }
    return 0;
}

/* Called by mbedTLS for each certificate of the peer's chain, root first, leaf (depth 0)
 * last. Setting a flag fails the handshake with an alert, which is where Istio rejects a
 * foreign trust domain ("tls: unknown certificate"), rather than after it. */
static int verify_cb(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    weir_tls_t *t = arg;
    if (depth < 0 || (unsigned)depth > t->cfg->max_depth) {
        *flags |= MBEDTLS_X509_BADCERT_OTHER;
        set_str(&t->vreason, "certificate chain deeper than %u", t->cfg->max_depth);
        return 0;
    }
    if (depth != 0)
        return 0;
    /* In the mesh the SNI names a cluster ("outbound_.80_.v1_.host"), not the server: identity
     * is the SPIFFE ID, checked here, so the hostname mismatch mbedTLS found is not one. */
    if (t->cfg->trust_domain != NULL)
        *flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
    char why[512];
    if (check_leaf(t, crt, why, sizeof(why)) != 0) {
        *flags |= MBEDTLS_X509_BADCERT_OTHER;
        set_str(&t->vreason, "%s", why);
    }
    return 0;
}

/* ---- failure reasons ----------------------------------------------------------------------- */

static const char *alert_name(unsigned char a)
{
    static const struct {
        unsigned char code;
        const char *name;
    } names[] = {
        {0, "close_notify"},
        {10, "unexpected_message"},
        {20, "bad_record_mac"},
        {22, "record_overflow"},
        {40, "handshake_failure"},
        {42, "bad_certificate"},
        {43, "unsupported_certificate"},
        {44, "certificate_revoked"},
        {45, "certificate_expired"},
        {46, "certificate_unknown"},
        {47, "illegal_parameter"},
        {48, "unknown_ca"},
        {49, "access_denied"},
        {50, "decode_error"},
        {51, "decrypt_error"},
        {70, "protocol_version"},
        {71, "insufficient_security"},
        {80, "internal_error"},
        {90, "user_canceled"},
        {100, "no_renegotiation"},
        {110, "unsupported_extension"},
        {112, "unrecognized_name"},
        {120, "no_application_protocol"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].code == a)
            return names[i].name;
    return "unknown alert";
}

static weir_tls_status_t fail_msg(weir_tls_t *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static weir_tls_status_t fail_msg(weir_tls_t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vfmt(fmt, ap);
    va_end(ap);
    free(t->reason);
    t->reason = s;
    t->state = WEIR_TLS_FAILED;
    return WEIR_TLS_ERROR;
}

static weir_tls_status_t fail(weir_tls_t *t, int rc)
{
    char eb[160];
    switch (rc) {
    case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED: {
        uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
        uint32_t std = flags == UINT32_MAX ? 0 : flags & ~(uint32_t)MBEDTLS_X509_BADCERT_OTHER;
        /* mbedTLS's own words for a broken chain (untrusted, expired ...); ours for the mesh
         * rules, which are more precise than its key-usage flags for the same certificate. */
        uint32_t usage = MBEDTLS_X509_BADCERT_KEY_USAGE | MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
                         MBEDTLS_X509_BADCERT_NS_CERT_TYPE;
        if (t->vreason != NULL && (std & ~usage) == 0)
            return fail_msg(t, "certificate verify failed: %s", t->vreason);
        char info[512] = "";
        if (std != 0)
            mbedtls_x509_crt_verify_info(info, sizeof(info), "", std);
        char *nl = strchr(info, '\n');
        if (nl != NULL)
            *nl = '\0';
        if (info[0] >= 'A' && info[0] <= 'Z' && info[1] >= 'a' && info[1] <= 'z')
            info[0] = (char)(info[0] - 'A' + 'a');
        return fail_msg(t, "certificate verify failed: %s", info[0] ? info : "rejected");
    }
    case MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE:
        /* mbedTLS fails here without telling the client; BoringSSL sends handshake_failure
         * in TLS 1.2, and so do we, so the client fails now rather than at our close. */
        mbedtls_ssl_send_alert_message(&t->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                       MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE);
        return fail_msg(t, "peer sent no client certificate (mutual TLS is required)");
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE: {
        unsigned char a = t->ssl.in_msg != NULL ? t->ssl.in_msg[1] : 255;
        return fail_msg(t, "peer sent fatal alert %s (%u)", alert_name(a), a);
    }
    case MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION:
        return fail_msg(t, "peer's TLS version is not TLS 1.2 (weir speaks TLS 1.2 only)");
    case MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN:
        return fail_msg(t, "no shared cipher suite (weir offers ECDHE-ECDSA with AES-GCM only)");
    case MBEDTLS_ERR_SSL_CONN_EOF:
        return fail_msg(t, "peer closed the connection during the handshake");
    case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
        return fail_msg(t, "peer sent close_notify during the handshake");
    default:
        mbedtls_strerror(rc, eb, sizeof(eb));
        return fail_msg(t, "TLS error -0x%04x: %s", (unsigned)-rc, eb);
    }
}

/* ---- connections ------------------------------------------------------------------------- */

weir_tls_t *weir_tls_new(weir_tls_config_t *cfg, const char *sni, char *err, size_t errlen)
{
    weir_tls_t *t = weir_mem_calloc(1, sizeof(*t));
    char eb[120];
    mbedtls_ssl_init(&t->ssl);
    t->cfg = weir_tls_config_ref(cfg);
    t->state = WEIR_TLS_HANDSHAKING;
    int rc = mbedtls_ssl_setup(&t->ssl, &cfg->conf);
    if (rc != 0) {
        weir_errorf(err, errlen, "TLS setup: %s", mbed_err(rc, eb, sizeof eb));
        weir_tls_free(t);
        return NULL;
    }
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    mbedtls_ssl_set_verify(&t->ssl, verify_cb, t);
    if (cfg->role == WEIR_TLS_CLIENT && sni != NULL && *sni != '\0') {
        if ((rc = mbedtls_ssl_set_hostname(&t->ssl, sni)) != 0) {
            weir_errorf(err, errlen, "SNI \"%s\": %s", sni, mbed_err(rc, eb, sizeof eb));
            weir_tls_free(t);
            return NULL;
        }
    }
    return t;
}

static void free_expect(weir_tls_t *t)
{
    for (size_t i = 0; i < t->n_expect; i++)
        free(t->expect_ids[i]);
    free(t->expect_ids);
    t->expect_ids = NULL;
    t->n_expect = 0;
}

void weir_tls_free(weir_tls_t *t)
{
    if (t == NULL)
        return;
    mbedtls_ssl_free(&t->ssl);
    weir_tls_config_unref(t->cfg);
    free(t->in);
    weir_buf_free(&t->out);
    weir_buf_free(&t->early);
    free(t->reason);
    free(t->vreason);
    free(t->peer_id);
    free(t->sni);
    free_expect(t);
    free(t);
}

int weir_tls_expect_peer_ids(weir_tls_t *t, const char *const *ids, size_t n)
{
    if (t->state != WEIR_TLS_HANDSHAKING || t->steps > 0)
        return -1;
    free_expect(t);
    if (n == 0)
        return 0;
    t->expect_ids = weir_mem_calloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        t->expect_ids[i] = weir_mem_strdup(ids[i] ? ids[i] : "");
    t->n_expect = n;
    return 0;
}

/* Encrypts from data until done or the outbound buffer reaches the high-water mark
 * (unless `all`). Returns 0 or an mbedTLS error. */
static int encrypt(weir_tls_t *t, const unsigned char *data, size_t len, size_t *consumed, bool all)
{
    *consumed = 0;
    while (*consumed < len && (all || t->out.len < WEIR_TLS_OUTBOUND_HIGH)) {
        int rc = mbedtls_ssl_write(&t->ssl, data + *consumed, len - *consumed);
        if (rc > 0)
            *consumed += (size_t)rc;
        else if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            break;
        else
            return rc;
    }
    return 0;
}

static weir_tls_status_t established(weir_tls_t *t)
{
    t->state = WEIR_TLS_OPEN;
    free(t->vreason);
    t->vreason = NULL;
    const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&t->ssl);
    if (peer != NULL) {
        const char *uri;
        size_t len;
        if (weir_spiffe_uri_san(peer, &uri, &len) == 0 && weir_spiffe_parse(uri, len, NULL) == 0)
            t->peer_id = weir_mem_strndup(uri, len);
        /* A resumed session skipped verification: the certificate it remembers must still
         * satisfy this connection's rules (another expected identity, say). */
        char why[512];
        if (t->resumed && check_leaf(t, peer, why, sizeof(why)) != 0) {
            mbedtls_ssl_send_alert_message(&t->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                           MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED);
            return fail_msg(t, "certificate verify failed (resumed session): %s", why);
        }
    } else if (t->cfg->trust_domain != NULL &&
               t->cfg->conf.authmode == MBEDTLS_SSL_VERIFY_REQUIRED) {
        /* Cannot happen with VERIFY_REQUIRED, but a mesh peer without an identity must never
         * pass for one. */
        return fail_msg(t, "peer presented no certificate");
    }
    free_expect(t);
    if (t->early.len > 0) {
        size_t done;
        int rc = encrypt(t, (const unsigned char *)t->early.base, t->early.len, &done, true);
        weir_buf_free(&t->early);
        if (rc != 0)
            return fail(t, rc);
    }
    return WEIR_TLS_DONE;
}

weir_tls_status_t weir_tls_handshake(weir_tls_t *t)
{
    switch (t->state) {
    case WEIR_TLS_OPEN:
    case WEIR_TLS_SHUTDOWN:
        return WEIR_TLS_DONE;
    case WEIR_TLS_FAILED:
        return WEIR_TLS_ERROR;
    case WEIR_TLS_HANDSHAKING:
        break;
    }
    while (t->ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER) {
        /* The last step frees the handshake state, so read "resumed" before each step. */
        if (t->ssl.handshake != NULL)
            t->resumed = t->ssl.handshake->resume != 0;
        int rc = mbedtls_ssl_handshake_step(&t->ssl);
        if (t->ssl.handshake != NULL)
            t->resumed = t->ssl.handshake->resume != 0;
        if (rc == MBEDTLS_ERR_SSL_WANT_READ)
            return t->eof ? fail(t, MBEDTLS_ERR_SSL_CONN_EOF) : WEIR_TLS_WANT_INPUT;
        if (rc != 0)
            return fail(t, rc);
        t->steps++;
    }
    return established(t);
}

weir_tls_status_t weir_tls_read(weir_tls_t *t, void *buf, size_t cap, size_t *nread)
{
    *nread = 0;
    if (t->state == WEIR_TLS_FAILED)
        return WEIR_TLS_ERROR;
    if (t->peer_closed)
        return WEIR_TLS_CLOSED;
    if (t->state == WEIR_TLS_HANDSHAKING) {
        weir_tls_status_t st = weir_tls_handshake(t);
        if (st != WEIR_TLS_DONE)
            return st;
    }
    if (cap == 0)
        return WEIR_TLS_WANT_INPUT;
    for (;;) {
        size_t before = t->in_len - t->in_off;
        int rc = mbedtls_ssl_read(&t->ssl, buf, cap);
        if (t->renegotiation_seen) {
            /* mbedTLS has answered no_renegotiation; we also end the connection, as HAProxy
             * does, so a client cannot make us do handshake work for free. */
            return fail_msg(t, "peer asked to renegotiate (refused)");
        }
        if (rc > 0) {
            *nread = (size_t)rc;
            return WEIR_TLS_DONE;
        }
        if (rc == 0 || rc == MBEDTLS_ERR_SSL_CONN_EOF) {
            t->peer_closed = true;
            t->state = WEIR_TLS_SHUTDOWN;
            set_str(&t->reason, "peer closed the connection without close_notify");
            return WEIR_TLS_CLOSED;
        }
        if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
            t->peer_closed = true;
            t->state = WEIR_TLS_SHUTDOWN;
            set_str(&t->reason, "peer sent close_notify");
            return WEIR_TLS_CLOSED;
        }
        if (rc == MBEDTLS_ERR_SSL_WANT_READ) {
            /* mbedTLS returns WANT_READ after a warning alert even when more records are
             * buffered: go on while it is consuming. */
            size_t now = t->in_len - t->in_off;
            if (now > 0 && now != before)
                continue;
            if (t->eof && now == 0) {
                t->peer_closed = true;
                t->state = WEIR_TLS_SHUTDOWN;
                set_str(&t->reason, "peer closed the connection without close_notify");
                return WEIR_TLS_CLOSED;
            }
            return WEIR_TLS_WANT_INPUT;
        }
        return fail(t, rc);
    }
}

weir_tls_status_t weir_tls_write(weir_tls_t *t, const void *data, size_t len, size_t *consumed)
{
    *consumed = 0;
    if (t->state == WEIR_TLS_FAILED)
        return WEIR_TLS_ERROR;
    if (t->we_closed) {
        set_str(&t->reason, "write after close_notify");
        return WEIR_TLS_ERROR;
    }
    if (t->state == WEIR_TLS_HANDSHAKING) {
        weir_tls_status_t st = weir_tls_handshake(t);
        if (st == WEIR_TLS_ERROR)
            return st;
        if (t->state == WEIR_TLS_HANDSHAKING) {
            size_t room = WEIR_TLS_EARLY_MAX - t->early.len;
            size_t n = len < room ? len : room;
            if (n > 0)
                weir_buf_append(&t->early, data, n);
            *consumed = n;
            return WEIR_TLS_DONE;
        }
    }
    int rc = encrypt(t, data, len, consumed, false);
    return rc == 0 ? WEIR_TLS_DONE : fail(t, rc);
}

size_t weir_tls_take_cipher(weir_tls_t *t, weir_buf_t *dst)
{
    size_t n = t->out.len;
    if (n == 0) {
        weir_buf_free(&t->out);
        return 0;
    }
    if (dst->len == 0) {
        weir_buf_free(dst);
        *dst = t->out;
        t->out = (weir_buf_t)WEIR_BUF_INIT;
    } else {
        weir_buf_append(dst, t->out.base, n);
        weir_buf_free(&t->out);
    }
    return n;
}

size_t weir_tls_cipher_pending(const weir_tls_t *t)
{
    return t->out.len;
}

weir_tls_status_t weir_tls_close(weir_tls_t *t)
{
    if (t->state == WEIR_TLS_FAILED)
        return WEIR_TLS_ERROR;
    if (t->we_closed)
        return WEIR_TLS_DONE;
    t->we_closed = true;
    weir_buf_free(&t->early);
    int rc = mbedtls_ssl_close_notify(&t->ssl); /* sends nothing before the handshake ends */
    if (rc != 0)
        return fail(t, rc);
    t->state = WEIR_TLS_SHUTDOWN;
    return WEIR_TLS_DONE;
}

/* ---- queries ----------------------------------------------------------------------------- */

weir_tls_state_t weir_tls_state(const weir_tls_t *t)
{
    return t->state;
}

unsigned weir_tls_handshake_steps(const weir_tls_t *t)
{
    return t->steps;
}

const char *weir_tls_reason(const weir_tls_t *t)
{
    return t->reason ? t->reason : "";
}

const char *weir_tls_peer_spiffe_id(const weir_tls_t *t)
{
    return t->peer_id;
}

int weir_tls_peer_cert_sha256(const weir_tls_t *t, unsigned char out[32], char hex[65])
{
    const mbedtls_x509_crt *peer =
        t->state == WEIR_TLS_HANDSHAKING ? NULL : mbedtls_ssl_get_peer_cert(&t->ssl);
    if (peer == NULL || peer->raw.p == NULL)
        return -1;
    unsigned char h[32];
    if (mbedtls_sha256_ret(peer->raw.p, peer->raw.len, h, 0) != 0)
        return -1;
    if (out != NULL)
        memcpy(out, h, sizeof(h));
    if (hex != NULL) {
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < sizeof(h); i++) {
            hex[2 * i] = digits[h[i] >> 4];
            hex[2 * i + 1] = digits[h[i] & 15];
        }
        hex[64] = '\0';
    }
    return 0;
}

bool weir_tls_resumed(const weir_tls_t *t)
{
    return t->state != WEIR_TLS_HANDSHAKING && t->resumed;
}

const char *weir_tls_alpn(const weir_tls_t *t)
{
    return mbedtls_ssl_get_alpn_protocol(&t->ssl);
}

const char *weir_tls_sni(const weir_tls_t *t)
{
    return t->sni;
}

const char *weir_tls_ciphersuite(const weir_tls_t *t)
{
    return mbedtls_ssl_get_ciphersuite(&t->ssl);
}

const char *weir_tls_version(const weir_tls_t *t)
{
    return mbedtls_ssl_get_version(&t->ssl);
}

/* ---- sessions ---------------------------------------------------------------------------- */

weir_tls_session_t *weir_tls_session_save(const weir_tls_t *t)
{
    if (t->cfg->role != WEIR_TLS_CLIENT ||
        (t->state != WEIR_TLS_OPEN && t->state != WEIR_TLS_SHUTDOWN))
        return NULL;
    weir_tls_session_t *s = weir_mem_calloc(1, sizeof(*s));
    mbedtls_ssl_session_init(&s->s);
    if (mbedtls_ssl_get_session(&t->ssl, &s->s) != 0) {
        weir_tls_session_free(s);
        return NULL;
    }
    return s;
}

int weir_tls_session_offer(weir_tls_t *t, const weir_tls_session_t *s)
{
    if (s == NULL || t->cfg->role != WEIR_TLS_CLIENT || t->state != WEIR_TLS_HANDSHAKING ||
        t->steps > 0)
        return -1;
    return mbedtls_ssl_set_session(&t->ssl, &s->s) == 0 ? 0 : -1;
}

void weir_tls_session_free(weir_tls_session_t *s)
{
    if (s == NULL)
        return;
    mbedtls_ssl_session_free(&s->s);
    free(s);
}

/* ---- sniffing ---------------------------------------------------------------------------- */

int weir_tls_looks_like_client_hello(const void *data, size_t len)
{
    const unsigned char *p = data;
    /* record: type 22, version 3.x (x <= 4), length; then handshake type 1 (ClientHello). */
    static const size_t need = 6;
    if (len > 0 && p[0] != TLS_RECORD_HANDSHAKE)
        return 0;
    if (len > 1 && p[1] != 3)
        return 0;
    if (len > 2 && p[2] > 4)
        return 0;
    if (len > 5 && p[5] != 1)
        return 0;
    return len >= need ? 1 : -1;
}
