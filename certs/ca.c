/* certs/ca.c: see ca.h. */
#include "certs/ca.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/asn1.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "common/diag.h"
#include "common/mem.h"
#include "common/spiffe.h"

#define CLOCK_SKEW_S (5 * 60)
#define DAY_S (24 * 60 * 60)
#define PEM_MAX 16384 /* a P-256 cert with a 2048-byte URI is well under this */

/* ---- small helpers ---------------------------------------------------------------------- */

static const char *mbed_strerror(int rc, char *buf, size_t len)
{
    mbedtls_strerror(rc, buf, len);
    return buf;
}

/* One DRBG for the process, seeded from the OS on first use. Certificates are made rarely and
 * on the loop thread (or a CLI run), so sharing it is fine. */
static mbedtls_ctr_drbg_context *drbg(char *err, size_t errlen)
{
    static mbedtls_entropy_context entropy;
    static mbedtls_ctr_drbg_context ctx;
    static bool ready;
    if (ready)
        return &ctx;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&ctx);
    static const char pers[] = "weir certs";
    int rc = mbedtls_ctr_drbg_seed(&ctx, mbedtls_entropy_func, &entropy,
                                   (const unsigned char *)pers, sizeof(pers) - 1);
    if (rc != 0) {
        char eb[100];
        weir_errorf(err, errlen, "cannot seed the random generator: %s",
                mbed_strerror(rc, eb, sizeof(eb)));
        mbedtls_ctr_drbg_free(&ctx);
        mbedtls_entropy_free(&entropy);
        return NULL;
    }
    ready = true;
    return &ctx;
}

static int gen_key(mbedtls_pk_context *pk, mbedtls_ctr_drbg_context *rng, char *err, size_t errlen)
{
    char eb[100];
    int rc = mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (rc == 0)
        rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*pk),
                                 mbedtls_ctr_drbg_random, rng);
    if (rc != 0) {
        weir_errorf(err, errlen, "cannot generate a P-256 key: %s", mbed_strerror(rc, eb, sizeof eb));
        return -1;
    }
    return 0;
}

static char *key_pem(mbedtls_pk_context *pk, char *err, size_t errlen)
{
    unsigned char buf[2048];
    int rc = mbedtls_pk_write_key_pem(pk, buf, sizeof(buf));
    if (rc != 0) {
        char eb[100];
        weir_errorf(err, errlen, "cannot encode the key: %s", mbed_strerror(rc, eb, sizeof eb));
        return NULL;
    }
    char *s = weir_mem_strdup((const char *)buf);
    mbedtls_platform_zeroize(buf, sizeof(buf));
    return s;
}

/* 128 random bits, first octet in 0x40..0x7f so the INTEGER is positive and 16 bytes long. */
static int random_serial(mbedtls_x509write_cert *crt, mbedtls_ctr_drbg_context *rng)
{
    unsigned char b[16];
    mbedtls_mpi serial;
    mbedtls_mpi_init(&serial);
    int rc = mbedtls_ctr_drbg_random(rng, b, sizeof(b));
    if (rc == 0) {
        b[0] = (unsigned char)((b[0] & 0x3f) | 0x40);
        rc = mbedtls_mpi_read_binary(&serial, b, sizeof(b));
    }
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_serial(crt, &serial);
    mbedtls_mpi_free(&serial);
    return rc;
}

static void fmt_time(time_t t, char out[16])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 16, "%Y%m%d%H%M%S", &tm);
}

static time_t x509_time_to_time(const mbedtls_x509_time *xt)
{
    struct tm tm = {0};
    tm.tm_year = xt->year - 1900;
    tm.tm_mon = xt->mon - 1;
    tm.tm_mday = xt->day;
    tm.tm_hour = xt->hour;
    tm.tm_min = xt->min;
    tm.tm_sec = xt->sec;
    return timegm(&tm);
}

static int set_validity(mbedtls_x509write_cert *crt, time_t nb, time_t na)
{
    char a[16], b[16];
    fmt_time(nb, a);
    fmt_time(na, b);
    return mbedtls_x509write_crt_set_validity(crt, a, b);
}

/* extKeyUsage: mbedTLS 2.28's writer has no helper for it, so the SEQUENCE OF OID is ours. */
static int set_eku(mbedtls_x509write_cert *crt, unsigned eku)
{
    static const char server[] = MBEDTLS_OID_SERVER_AUTH, client[] = MBEDTLS_OID_CLIENT_AUTH;
    unsigned char der[64], *p = der + 2;
    const char *oids[2];
    size_t n = 0, lens[2];
    if (eku & WEIR_CERTS_EKU_SERVER) {
        oids[n] = server;
        lens[n++] = sizeof(server) - 1;
    }
    if (eku & WEIR_CERTS_EKU_CLIENT) {
        oids[n] = client;
        lens[n++] = sizeof(client) - 1;
    }
    for (size_t i = 0; i < n; i++) {
        *p++ = MBEDTLS_ASN1_OID;
        *p++ = (unsigned char)lens[i];
        memcpy(p, oids[i], lens[i]);
        p += lens[i];
    }
    der[0] = MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE;
    der[1] = (unsigned char)(p - der - 2);
    return mbedtls_x509write_crt_set_extension(crt, MBEDTLS_OID_EXTENDED_KEY_USAGE,
                                               MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), 0,
                                               der, (size_t)(p - der));
}

static char *sign_pem(mbedtls_x509write_cert *crt, mbedtls_ctr_drbg_context *rng, char *err,
                      size_t errlen)
{
    unsigned char *buf = weir_mem_alloc(PEM_MAX);
    int rc = mbedtls_x509write_crt_pem(crt, buf, PEM_MAX, mbedtls_ctr_drbg_random, rng);
    if (rc != 0) {
        char eb[100];
        weir_errorf(err, errlen, "cannot sign the certificate: %s", mbed_strerror(rc, eb, sizeof eb));
        free(buf);
        return NULL;
    }
    char *s = weir_mem_strdup((const char *)buf);
    free(buf);
    return s;
}

void weir_certs_pem_free(weir_certs_pem_t *p)
{
    if (p == NULL)
        return;
    free(p->cert_pem);
    if (p->key_pem != NULL) {
        mbedtls_platform_zeroize(p->key_pem, strlen(p->key_pem));
        free(p->key_pem);
    }
    p->cert_pem = p->key_pem = NULL;
}

/* ---- the CA ------------------------------------------------------------------------------ */

int weir_certs_make_ca(const char *trust_domain, time_t not_after, weir_certs_pem_t *out, char *err,
                       size_t errlen)
{
    out->cert_pem = out->key_pem = NULL;
    if (!weir_spiffe_trust_domain_valid(trust_domain)) {
        weir_errorf(err, errlen, "invalid trust domain \"%s\": %s", trust_domain ? trust_domain : "",
                weir_spiffe_strerror(WEIR_SPIFFE_ERR_TRUST_DOMAIN));
        return -1;
    }
    mbedtls_ctr_drbg_context *rng = drbg(err, errlen);
    if (rng == NULL)
        return -1;
    time_t now = time(NULL);
    if (not_after == 0)
        not_after = now + (time_t)3650 * DAY_S;

    mbedtls_pk_context key;
    mbedtls_x509write_cert crt;
    mbedtls_pk_init(&key);
    mbedtls_x509write_crt_init(&crt);
    int ret = -1;
    if (gen_key(&key, rng, err, errlen) != 0)
        goto out;

    char subject[WEIR_SPIFFE_MAX_TD_LEN + 8];
    snprintf(subject, sizeof(subject), "O=%s", trust_domain);
    mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&crt, &key);
    mbedtls_x509write_crt_set_issuer_key(&crt, &key);
    int rc;
    if ((rc = mbedtls_x509write_crt_set_subject_name(&crt, subject)) != 0 ||
        (rc = mbedtls_x509write_crt_set_issuer_name(&crt, subject)) != 0 ||
        (rc = random_serial(&crt, rng)) != 0 ||
        (rc = set_validity(&crt, now - CLOCK_SKEW_S, not_after)) != 0 ||
        (rc = mbedtls_x509write_crt_set_basic_constraints(&crt, 1, -1)) != 0 ||
        (rc = mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_KEY_CERT_SIGN |
                                                            MBEDTLS_X509_KU_CRL_SIGN)) != 0 ||
        (rc = mbedtls_x509write_crt_set_subject_key_identifier(&crt)) != 0) {
        char eb[100];
        weir_errorf(err, errlen, "cannot build the CA certificate: %s",
                mbed_strerror(rc, eb, sizeof eb));
        goto out;
    }
    if ((out->cert_pem = sign_pem(&crt, rng, err, errlen)) == NULL)
        goto out;
    if ((out->key_pem = key_pem(&key, err, errlen)) == NULL)
        goto out;
    ret = 0;
out:
    if (ret != 0)
        weir_certs_pem_free(out);
    mbedtls_x509write_crt_free(&crt);
    mbedtls_pk_free(&key);
    return ret;
}

static int parse_cert(mbedtls_x509_crt *crt, const char *pem, const char *what, char *err,
                      size_t errlen)
{
    int rc = mbedtls_x509_crt_parse(crt, (const unsigned char *)pem, strlen(pem) + 1);
    if (rc != 0) {
        char eb[100];
        weir_errorf(err, errlen, "%s: not a PEM certificate: %s", what,
                mbed_strerror(rc, eb, sizeof eb));
        return -1;
    }
    return 0;
}

int weir_certs_ca_trust_domain(const char *ca_cert_pem, char *td, size_t tdlen, char *err,
                               size_t errlen)
{
    mbedtls_x509_crt ca;
    mbedtls_x509_crt_init(&ca);
    int ret = -1;
    if (parse_cert(&ca, ca_cert_pem, "CA certificate", err, errlen) != 0)
        goto out;
    static const char o_oid[] = MBEDTLS_OID_AT_ORGANIZATION;
    for (const mbedtls_x509_name *n = &ca.subject; n != NULL; n = n->next) {
        if (n->oid.p == NULL || n->oid.len != sizeof(o_oid) - 1 ||
            memcmp(n->oid.p, o_oid, n->oid.len) != 0)
            continue;
        if (n->val.len + 1 > tdlen || n->val.len > WEIR_SPIFFE_MAX_TD_LEN)
            break;
        memcpy(td, n->val.p, n->val.len);
        td[n->val.len] = '\0';
        if (!weir_spiffe_trust_domain_valid(td)) {
            weir_errorf(err, errlen, "CA certificate: subject O=\"%s\" is not a valid trust domain",
                    td);
            goto out;
        }
        ret = 0;
        goto out;
    }
    weir_errorf(err, errlen, "CA certificate: no trust domain in its subject (want O=<trust-domain>)");
out:
    mbedtls_x509_crt_free(&ca);
    return ret;
}

/* ---- workload certificates --------------------------------------------------------------- */

int weir_certs_make_leaf(const char *ca_cert_pem, const char *ca_key_pem,
                         const weir_certs_leaf_spec_t *spec, weir_certs_pem_t *out, char *err,
                         size_t errlen)
{
    out->cert_pem = out->key_pem = NULL;
    mbedtls_ctr_drbg_context *rng = drbg(err, errlen);
    if (rng == NULL)
        return -1;

    mbedtls_x509_crt ca;
    mbedtls_pk_context ca_key, key;
    mbedtls_x509write_cert crt;
    mbedtls_x509_crt_init(&ca);
    mbedtls_pk_init(&ca_key);
    mbedtls_pk_init(&key);
    mbedtls_x509write_crt_init(&crt);
    unsigned char *san = NULL;
    int ret = -1, rc;
    char eb[100];

    if (parse_cert(&ca, ca_cert_pem, "CA certificate", err, errlen) != 0)
        goto out;
    if ((rc = mbedtls_pk_parse_key(&ca_key, (const unsigned char *)ca_key_pem,
                                   strlen(ca_key_pem) + 1, NULL, 0)) != 0) {
        weir_errorf(err, errlen, "CA key: not a PEM private key: %s", mbed_strerror(rc, eb, sizeof eb));
        goto out;
    }
    if (mbedtls_pk_check_pair(&ca.pk, &ca_key) != 0) {
        weir_errorf(err, errlen, "CA key does not match the CA certificate");
        goto out;
    }
    if (!ca.ca_istrue) {
        weir_errorf(err, errlen, "CA certificate is not a CA (basicConstraints CA:FALSE)");
        goto out;
    }
    if (gen_key(&key, rng, err, errlen) != 0)
        goto out;

    time_t now = time(NULL);
    time_t nb = spec->not_before ? spec->not_before : now - CLOCK_SKEW_S;
    time_t na = spec->not_after ? spec->not_after : nb + DAY_S;
    time_t ca_na = x509_time_to_time(&ca.valid_to);
    if (na > ca_na)
        na = ca_na;

    char issuer[1024];
    if ((rc = mbedtls_x509_dn_gets(issuer, sizeof(issuer), &ca.subject)) < 0) {
        weir_errorf(err, errlen, "CA certificate: subject too long");
        goto out;
    }
    mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&crt, &key);
    mbedtls_x509write_crt_set_issuer_key(&crt, &ca_key);
    unsigned ku = MBEDTLS_X509_KU_DIGITAL_SIGNATURE | MBEDTLS_X509_KU_KEY_ENCIPHERMENT;
    if (spec->is_ca)
        ku |= MBEDTLS_X509_KU_KEY_CERT_SIGN;
    /* An empty subject, as Istio issues: the identity lives only in the SAN. */
    if ((rc = mbedtls_x509write_crt_set_subject_name(&crt, "")) != 0 ||
        (rc = mbedtls_x509write_crt_set_issuer_name(&crt, issuer)) != 0 ||
        (rc = random_serial(&crt, rng)) != 0 || (rc = set_validity(&crt, nb, na)) != 0 ||
        (rc = mbedtls_x509write_crt_set_basic_constraints(&crt, spec->is_ca ? 1 : 0, -1)) != 0 ||
        (rc = mbedtls_x509write_crt_set_key_usage(&crt, ku)) != 0 ||
        (rc = mbedtls_x509write_crt_set_authority_key_identifier(&crt)) != 0 ||
        (spec->eku && (rc = set_eku(&crt, spec->eku)) != 0)) {
        weir_errorf(err, errlen, "cannot build the certificate: %s", mbed_strerror(rc, eb, sizeof eb));
        goto out;
    }
    if (spec->n_uris > 0) {
        size_t cap = 16;
        for (size_t i = 0; i < spec->n_uris; i++)
            cap += (spec->uris[i] ? strlen(spec->uris[i]) : 0) + 8;
        san = weir_mem_alloc(cap);
        int n = weir_spiffe_san_der(spec->uris, spec->n_uris, san, cap);
        if (n < 0) {
            weir_errorf(err, errlen, "cannot encode the SAN: %s", weir_spiffe_strerror(n));
            goto out;
        }
        /* Critical, because the subject is empty (RFC 5280 4.2.1.6), as Istio marks it. */
        if ((rc = mbedtls_x509write_crt_set_extension(
                 &crt, MBEDTLS_OID_SUBJECT_ALT_NAME, MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME),
                 1, san, (size_t)n)) != 0) {
            weir_errorf(err, errlen, "cannot add the SAN: %s", mbed_strerror(rc, eb, sizeof eb));
            goto out;
        }
    }
    if ((out->cert_pem = sign_pem(&crt, rng, err, errlen)) == NULL)
        goto out;
    if ((out->key_pem = key_pem(&key, err, errlen)) == NULL)
        goto out;
    ret = 0;
out:
    if (ret != 0)
        weir_certs_pem_free(out);
    free(san);
    mbedtls_x509write_crt_free(&crt);
    mbedtls_pk_free(&key);
    mbedtls_pk_free(&ca_key);
    mbedtls_x509_crt_free(&ca);
    return ret;
}

/* ---- files ------------------------------------------------------------------------------- */

static int mkdir_p(const char *path, char *err, size_t errlen)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(buf)) {
        weir_errorf(err, errlen, "%s: invalid directory name", path);
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            weir_errorf(err, errlen, "cannot create directory %s: %s", buf, strerror(errno));
            return -1;
        }
        buf[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        weir_errorf(err, errlen, "%s: not a directory", path);
        return -1;
    }
    return 0;
}

static int read_text_file(const char *path, char **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        weir_errorf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    weir_buf_t b = WEIR_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b.len + n > 1024 * 1024) {
            fclose(f);
            weir_buf_free(&b);
            weir_errorf(err, errlen, "%s: larger than 1 MiB", path);
            return -1;
        }
        weir_buf_append(&b, chunk, n);
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        weir_buf_free(&b);
        weir_errorf(err, errlen, "cannot read %s", path);
        return -1;
    }
    weir_buf_append(&b, "", 0); /* NUL-terminates an empty file too */
    *out = b.base;
    return 0;
}

typedef struct {
    const char *name;
    const char *data;
    mode_t mode;
} out_file_t;

static void join(char *buf, size_t cap, const char *dir, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

/* Writes one file through a temporary name (O_EXCL, fchmod to its mode) so that it appears
 * whole; without force, link() refuses to replace a file that appeared meanwhile. */
static int write_file(const char *dir, const out_file_t *f, bool force, char *err, size_t errlen)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    join(path, sizeof(path), dir, f->name);
    snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, f->name);
    int fd = mkostemp(tmp, O_CLOEXEC); /* O_CREAT|O_EXCL, mode 0600 */
    if (fd < 0) {
        weir_errorf(err, errlen, "cannot create a file in %s: %s", dir, strerror(errno));
        return -1;
    }
    size_t len = strlen(f->data), off = 0;
    int rc = fchmod(fd, f->mode);
    while (rc == 0 && off < len) {
        ssize_t n = write(fd, f->data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = -1;
        else
            off += (size_t)n;
    }
    if (rc == 0)
        rc = fsync(fd);
    int saved = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc != 0) {
        weir_errorf(err, errlen, "cannot write %s: %s", path, strerror(saved));
        unlink(tmp);
        return -1;
    }
    if (force) {
        rc = rename(tmp, path);
    } else {
        rc = link(tmp, path);
        saved = errno;
        unlink(tmp);
        errno = saved;
    }
    if (rc != 0) {
        if (errno == EEXIST)
            weir_errorf(err, errlen, "%s already exists (use --force to replace it)", path);
        else
            weir_errorf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        if (force)
            unlink(tmp);
        return -1;
    }
    return 0;
}

static int write_files(const char *dir, const out_file_t *files, size_t n, bool force, char *err,
                       size_t errlen)
{
    if (mkdir_p(dir, err, errlen) != 0)
        return -1;
    if (!force) {
        /* Refuse before writing anything, so a refused run leaves the directory as it was. */
        for (size_t i = 0; i < n; i++) {
            char path[PATH_MAX];
            struct stat st;
            join(path, sizeof(path), dir, files[i].name);
            if (lstat(path, &st) == 0) {
                weir_errorf(err, errlen, "%s already exists (use --force to replace it)", path);
                return -1;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        if (write_file(dir, &files[i], force, err, errlen) != 0)
            return -1;
    return 0;
}

/* ---- the command line -------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fputs("usage:\n"
          "  weir certs ca    --out DIR [--trust-domain cluster.local] [--days 3650] [--force]\n"
          "  weir certs issue --ca DIR --namespace NS --service-account SA --out DIR\n"
          "                   [--days 1] [--force]\n"
          "ca writes ca-cert.pem, ca-key.pem (0600) and root-cert.pem; the trust domain is the\n"
          "root's subject O. issue writes cert-chain.pem, key.pem (0600) and root-cert.pem.\n",
          out);
}

typedef struct {
    const char *out, *trust_domain, *ca, *ns, *sa;
    long days;
    bool force;
} certs_args_t;

static int parse_days(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 36500)
        return -1;
    *out = v;
    return 0;
}

/* Accepts "--opt value" and "--opt=value". Returns 0, or 2 after printing the problem. */
static int parse_args(int argc, char **argv, int first, bool is_ca, certs_args_t *a)
{
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--force") == 0) {
            a->force = true;
            continue;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        static const char *const names[] = {"--out", "--trust-domain", "--days",
                                            "--ca",  "--namespace",    "--service-account"};
        const char *val = NULL;
        size_t which = sizeof(names) / sizeof(names[0]);
        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
            size_t nl = strlen(names[k]);
            if (strncmp(arg, names[k], nl) != 0)
                continue;
            if (arg[nl] == '=') {
                val = arg + nl + 1;
            } else if (arg[nl] == '\0') {
                if (i + 1 >= argc) {
                    fprintf(stderr, "weir certs: %s needs a value\n", names[k]);
                    return 2;
                }
                val = argv[++i];
            } else {
                continue;
            }
            which = k;
            break;
        }
        bool ca_only = which == 1, issue_only = which >= 3;
        if (which == sizeof(names) / sizeof(names[0]) || (is_ca && issue_only) ||
            (!is_ca && ca_only)) {
            fprintf(stderr, "weir certs %s: unknown option \"%s\"\n", is_ca ? "ca" : "issue", arg);
            return 2;
        }
        switch (which) {
        case 0:
            a->out = val;
            break;
        case 1:
            a->trust_domain = val;
            break;
        case 2:
            if (parse_days(val, &a->days) != 0) {
                fprintf(stderr,
                        "weir certs: --days must be a whole number from 1 to 36500, "
                        "got \"%s\"\n",
                        val);
                return 2;
            }
            break;
        case 3:
            a->ca = val;
            break;
        case 4:
            a->ns = val;
            break;
        default:
            a->sa = val;
            break;
        }
    }
    if (a->out == NULL || *a->out == '\0') {
        fprintf(stderr, "weir certs: --out DIR is required\n");
        return 2;
    }
    return 0;
}

static int certs_ca(const certs_args_t *a)
{
    char err[512];
    const char *td = a->trust_domain ? a->trust_domain : "cluster.local";
    if (!weir_spiffe_trust_domain_valid(td)) {
        fprintf(stderr, "weir certs ca: invalid --trust-domain \"%s\": %s\n", td,
                weir_spiffe_strerror(WEIR_SPIFFE_ERR_TRUST_DOMAIN));
        return 2;
    }
    long days = a->days ? a->days : 3650;
    weir_certs_pem_t ca;
    if (weir_certs_make_ca(td, time(NULL) + (time_t)days * DAY_S, &ca, err, sizeof(err)) != 0) {
        fprintf(stderr, "weir certs ca: %s\n", err);
        return 1;
    }
    out_file_t files[] = {
        {"ca-key.pem", ca.key_pem, 0600},
        {"ca-cert.pem", ca.cert_pem, 0644},
        {"root-cert.pem", ca.cert_pem, 0644},
    };
    int rc =
        write_files(a->out, files, sizeof(files) / sizeof(files[0]), a->force, err, sizeof(err));
    weir_certs_pem_free(&ca);
    if (rc != 0) {
        fprintf(stderr, "weir certs ca: %s\n", err);
        return 1;
    }
    printf("weir certs ca: wrote %s/{ca-cert.pem,ca-key.pem,root-cert.pem} for trust domain %s, "
           "valid %ld days\n",
           a->out, td, days);
    return 0;
}

static int certs_issue(const certs_args_t *a)
{
    if (a->ca == NULL || a->ns == NULL || a->sa == NULL) {
        fprintf(stderr, "weir certs issue: --ca DIR, --namespace NS and --service-account SA are "
                        "required\n");
        return 2;
    }
    char err[512], path[PATH_MAX], td[WEIR_SPIFFE_MAX_TD_LEN + 1], id[WEIR_SPIFFE_MAX_LEN + 1];
    char *ca_cert = NULL, *ca_key = NULL, *root = NULL, *chain = NULL;
    weir_certs_pem_t leaf = {0};
    int ret = 1;

    join(path, sizeof(path), a->ca, "ca-cert.pem");
    if (read_text_file(path, &ca_cert, err, sizeof(err)) != 0)
        goto fail;
    join(path, sizeof(path), a->ca, "ca-key.pem");
    if (read_text_file(path, &ca_key, err, sizeof(err)) != 0)
        goto fail;
    /* An Istio plug-in CA directory may hold an intermediate (ca-cert.pem) under a different
     * root (root-cert.pem): then the workload chain carries the intermediate too. */
    join(path, sizeof(path), a->ca, "root-cert.pem");
    if (access(path, F_OK) != 0 || read_text_file(path, &root, err, sizeof(err)) != 0)
        root = weir_mem_strdup(ca_cert);
    if (weir_certs_ca_trust_domain(ca_cert, td, sizeof(td), err, sizeof(err)) != 0)
        goto fail;
    int n = weir_spiffe_format(id, sizeof(id), td, a->ns, a->sa);
    if (n < 0) {
        fprintf(stderr,
                "weir certs issue: cannot make an identity from namespace \"%s\" and "
                "service account \"%s\": %s\n",
                a->ns, a->sa, weir_spiffe_strerror(n));
        ret = 2;
        goto out;
    }
    long days = a->days ? a->days : 1;
    time_t now = time(NULL);
    const char *uris[] = {id};
    weir_certs_leaf_spec_t spec = {
        .uris = uris,
        .n_uris = 1,
        .not_before = now - CLOCK_SKEW_S,
        .not_after = now + (time_t)days * DAY_S,
        .eku = WEIR_CERTS_EKU_SERVER | WEIR_CERTS_EKU_CLIENT,
    };
    if (weir_certs_make_leaf(ca_cert, ca_key, &spec, &leaf, err, sizeof(err)) != 0)
        goto fail;
    if (strcmp(root, ca_cert) != 0) {
        size_t a_len = strlen(leaf.cert_pem), b_len = strlen(ca_cert);
        chain = weir_mem_alloc(a_len + b_len + 1);
        memcpy(chain, leaf.cert_pem, a_len);
        memcpy(chain + a_len, ca_cert, b_len + 1);
    }
    out_file_t files[] = {
        {"key.pem", leaf.key_pem, 0600},
        {"cert-chain.pem", chain ? chain : leaf.cert_pem, 0644},
        {"root-cert.pem", root, 0644},
    };
    if (write_files(a->out, files, sizeof(files) / sizeof(files[0]), a->force, err, sizeof(err)) !=
        0)
        goto fail;
    printf("weir certs issue: wrote %s/{cert-chain.pem,key.pem,root-cert.pem} for %s\n", a->out,
           id);
    ret = 0;
    goto out;
fail:
    fprintf(stderr, "weir certs issue: %s\n", err);
out:
    weir_certs_pem_free(&leaf);
    free(chain);
    free(root);
    if (ca_key != NULL) {
        mbedtls_platform_zeroize(ca_key, strlen(ca_key));
        free(ca_key);
    }
    free(ca_cert);
    return ret;
}

int weir_certs_main(int argc, char **argv, int first)
{
    if (first >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[first];
    bool is_ca = strcmp(cmd, "ca") == 0;
    if (!is_ca && strcmp(cmd, "issue") != 0) {
        if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
            usage(stdout);
            return 0;
        }
        fprintf(stderr, "weir certs: unknown command \"%s\" (want ca or issue)\n", cmd);
        usage(stderr);
        return 2;
    }
    certs_args_t a = {0};
    int rc = parse_args(argc, argv, first + 1, is_ca, &a);
    if (rc == 1)
        return 0; /* --help */
    if (rc != 0)
        return rc;
    return is_ca ? certs_ca(&a) : certs_issue(&a);
}
