/* tests/unit/test_spiffe.c: SPIFFE ID parsing, the URI SAN encoder, and reading URI SANs from
 * certificates that mbedTLS parsed: ours and ones OpenSSL made. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <unistd.h>

#include <cmocka.h>

#include <mbedtls/x509_crt.h>

#include "certs/ca.h"
#include "common/spiffe.h"

/* ---- parsing ----------------------------------------------------------------------------- */

static void test_parse_valid(void **state)
{
    const char *s = "spiffe://cluster.local/ns/default/sa/httpbin";
    weir_spiffe_id_t id;
    assert_int_equal(weir_spiffe_parse(s, strlen(s), &id), 0);
    assert_int_equal(id.td_len, strlen("cluster.local"));
    assert_memory_equal(id.td, "cluster.local", id.td_len);
    assert_int_equal(id.ns_len, 7);
    assert_memory_equal(id.ns, "default", 7);
    assert_int_equal(id.sa_len, 7);
    assert_memory_equal(id.sa, "httpbin", 7);
    assert_true(weir_spiffe_in_trust_domain(&id, "cluster.local"));
    assert_false(weir_spiffe_in_trust_domain(&id, "cluster.local.evil"));
    assert_false(weir_spiffe_in_trust_domain(&id, "cluster.loca"));
    assert_false(weir_spiffe_in_trust_domain(&id, ""));
    assert_false(weir_spiffe_in_trust_domain(&id, NULL));

    /* Segments allow upper case, dots, dashes and underscores; trust domains lower case. */
    s = "spiffe://td_x-1.example/ns/My.NS-1/sa/a_b-c.D";
    assert_int_equal(weir_spiffe_parse(s, strlen(s), &id), 0);
    assert_memory_equal(id.sa, "a_b-c.D", id.sa_len);

    /* The length bounds the parse: a prefix of a longer buffer. */
    const char *longer = "spiffe://cluster.local/ns/a/sa/bXYZ";
    assert_int_equal(weir_spiffe_parse(longer, strlen(longer) - 3, &id), 0);
    assert_int_equal(id.sa_len, 1);
    assert_int_equal(weir_spiffe_parse(longer, strlen(longer) - 3, NULL), 0);
}

static void test_parse_rejects(void **state)
{
    static const struct {
        const char *s;
        int err;
    } cases[] = {
        {"", WEIR_SPIFFE_ERR_EMPTY},
        {"http://cluster.local/ns/a/sa/b", WEIR_SPIFFE_ERR_SCHEME},
        {"SPIFFE://cluster.local/ns/a/sa/b", WEIR_SPIFFE_ERR_SCHEME},
        {"spiffe:/cluster.local/ns/a/sa/b", WEIR_SPIFFE_ERR_SCHEME},
        {"spiffe:", WEIR_SPIFFE_ERR_SCHEME},
        {"spiffe://", WEIR_SPIFFE_ERR_TRUST_DOMAIN},
        {"spiffe:///ns/a/sa/b", WEIR_SPIFFE_ERR_TRUST_DOMAIN},
        {"spiffe://Cluster.local/ns/a/sa/b", WEIR_SPIFFE_ERR_TRUST_DOMAIN},
        {"spiffe://cluster.local:8080/ns/a/sa/b", WEIR_SPIFFE_ERR_TRUST_DOMAIN},
        {"spiffe://user@cluster.local/ns/a/sa/b", WEIR_SPIFFE_ERR_TRUST_DOMAIN},
        {"spiffe://clu ster/ns/a/sa/b", WEIR_SPIFFE_ERR_TRUST_DOMAIN},
        {"spiffe://cluster.local", WEIR_SPIFFE_ERR_PATH},
        {"spiffe://cluster.local/", WEIR_SPIFFE_ERR_PATH},
        {"spiffe://cluster.local/ns/a", WEIR_SPIFFE_ERR_PATH},
        {"spiffe://cluster.local/ns/a/sa", WEIR_SPIFFE_ERR_PATH},
        {"spiffe://cluster.local/ns/a/sa/b/", WEIR_SPIFFE_ERR_PATH},
        {"spiffe://cluster.local/ns/a/sa/b/c", WEIR_SPIFFE_ERR_PATH},
        {"spiffe://cluster.local/namespace/a/sa/b", WEIR_SPIFFE_ERR_PATH},
        {"spiffe://cluster.local/sa/b/ns/a", WEIR_SPIFFE_ERR_PATH},
        {"spiffe://cluster.local/NS/a/sa/b", WEIR_SPIFFE_ERR_PATH},
        {"spiffe://cluster.local//ns/a/sa/b", WEIR_SPIFFE_ERR_PATH},
        {"spiffe://cluster.local/ns/a/sa/", WEIR_SPIFFE_ERR_SEGMENT},
        {"spiffe://cluster.local/ns//sa/b", WEIR_SPIFFE_ERR_SEGMENT},
        {"spiffe://cluster.local/ns/./sa/b", WEIR_SPIFFE_ERR_SEGMENT},
        {"spiffe://cluster.local/ns/a/sa/..", WEIR_SPIFFE_ERR_SEGMENT},
        {"spiffe://cluster.local/ns/a%20b/sa/b", WEIR_SPIFFE_ERR_SEGMENT},
        {"spiffe://cluster.local/ns/a b/sa/b", WEIR_SPIFFE_ERR_SEGMENT},
        {"spiffe://cluster.local/ns/a/sa/b?x=1", WEIR_SPIFFE_ERR_QUERY},
        {"spiffe://cluster.local/ns/a/sa/b#frag", WEIR_SPIFFE_ERR_QUERY},
        {"spiffe://cluster.local?/ns/a/sa/b", WEIR_SPIFFE_ERR_QUERY},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = weir_spiffe_parse(cases[i].s, strlen(cases[i].s), NULL);
        if (rc != cases[i].err)
            fail_msg("%s: got %d (%s), want %d", cases[i].s, rc, weir_spiffe_strerror(rc),
                     cases[i].err);
        assert_true(strlen(weir_spiffe_strerror(rc)) > 0);
    }
    assert_int_equal(weir_spiffe_parse(NULL, 0, NULL), WEIR_SPIFFE_ERR_EMPTY);

    /* An embedded NUL is a bad character, not the end of the string. */
    static const char nul[] = "spiffe://cluster.local/ns/a\0b/sa/c";
    assert_int_equal(weir_spiffe_parse(nul, sizeof(nul) - 1, NULL), WEIR_SPIFFE_ERR_SEGMENT);

    /* Trust domain of 255 characters is fine, 256 is not; a whole ID over 2048 is too long. */
    char buf[3000];
    memcpy(buf, "spiffe://", 9);
    memset(buf + 9, 'a', 255);
    memcpy(buf + 9 + 255, "/ns/a/sa/b", 11);
    assert_int_equal(weir_spiffe_parse(buf, strlen(buf), NULL), 0);
    memset(buf + 9, 'a', 256);
    memcpy(buf + 9 + 256, "/ns/a/sa/b", 11);
    assert_int_equal(weir_spiffe_parse(buf, strlen(buf), NULL), WEIR_SPIFFE_ERR_TRUST_DOMAIN);
    snprintf(buf, sizeof(buf), "spiffe://cluster.local/ns/a/sa/");
    size_t n = strlen(buf);
    memset(buf + n, 'x', 2100);
    buf[n + 2100] = '\0';
    assert_int_equal(weir_spiffe_parse(buf, strlen(buf), NULL), WEIR_SPIFFE_ERR_TOO_LONG);
}

static void test_trust_domain_valid(void **state)
{
    assert_true(weir_spiffe_trust_domain_valid("cluster.local"));
    assert_true(weir_spiffe_trust_domain_valid("foo"));
    assert_true(weir_spiffe_trust_domain_valid("a-b_c.d9"));
    assert_false(weir_spiffe_trust_domain_valid(""));
    assert_false(weir_spiffe_trust_domain_valid(NULL));
    assert_false(weir_spiffe_trust_domain_valid("Cluster.local"));
    assert_false(weir_spiffe_trust_domain_valid("cluster.local/x"));
    assert_false(weir_spiffe_trust_domain_valid("cluster.local:80"));
}

static void test_format(void **state)
{
    char buf[128];
    int n = weir_spiffe_format(buf, sizeof(buf), "cluster.local", "default", "sleep");
    assert_int_equal(n, (int)strlen("spiffe://cluster.local/ns/default/sa/sleep"));
    assert_string_equal(buf, "spiffe://cluster.local/ns/default/sa/sleep");
    weir_spiffe_id_t id;
    assert_int_equal(weir_spiffe_parse(buf, (size_t)n, &id), 0);

    assert_int_equal(weir_spiffe_format(buf, sizeof(buf), "Bad", "a", "b"),
                     WEIR_SPIFFE_ERR_TRUST_DOMAIN);
    assert_int_equal(weir_spiffe_format(buf, sizeof(buf), "td", "a/b", "c"),
                     WEIR_SPIFFE_ERR_SEGMENT);
    assert_int_equal(weir_spiffe_format(buf, sizeof(buf), "td", "a", ""), WEIR_SPIFFE_ERR_SEGMENT);
    assert_int_equal(weir_spiffe_format(buf, sizeof(buf), "td", "..", "b"),
                     WEIR_SPIFFE_ERR_SEGMENT);
    assert_int_equal(weir_spiffe_format(buf, 10, "td", "a", "b"), WEIR_SPIFFE_ERR_SPACE);
    /* Exactly enough room, then one byte short. */
    n = (int)strlen("spiffe://td/ns/a/sa/b");
    assert_int_equal(weir_spiffe_format(buf, (size_t)n + 1, "td", "a", "b"), n);
    assert_int_equal(weir_spiffe_format(buf, (size_t)n, "td", "a", "b"), WEIR_SPIFFE_ERR_SPACE);
    assert_int_equal(weir_spiffe_format(buf, sizeof(buf), NULL, "a", "b"), WEIR_SPIFFE_ERR_EMPTY);
}

/* ---- the SAN encoder --------------------------------------------------------------------- */

static void test_san_der_bytes(void **state)
{
    const char *uri = "spiffe://cluster.local/ns/a/sa/b";
    size_t ul = strlen(uri);
    unsigned char der[512];
    int n = weir_spiffe_san_der(&uri, 1, der, sizeof(der));
    assert_int_equal(n, (int)(4 + ul));
    assert_int_equal(der[0], 0x30); /* SEQUENCE */
    assert_int_equal(der[1], 2 + ul);
    assert_int_equal(der[2], 0x86); /* [6] IMPLICIT IA5String */
    assert_int_equal(der[3], ul);
    assert_memory_equal(der + 4, uri, ul);

    /* Long URIs need long-form lengths: 0x81 for < 256, 0x82 beyond. */
    char big[400];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    const char *two[] = {big, uri};
    n = weir_spiffe_san_der(two, 2, der, sizeof(der));
    size_t body = (1 + 3 + 399) + (1 + 1 + ul);
    assert_int_equal(n, (int)(1 + 3 + body));
    assert_int_equal(der[1], 0x82);
    assert_int_equal((der[2] << 8) | der[3], body);
    assert_int_equal(der[4], 0x86);
    assert_int_equal(der[5], 0x82);
    assert_int_equal((der[6] << 8) | der[7], 399);
    assert_int_equal(der[8 + 399], 0x86);
    assert_int_equal(der[9 + 399], ul);

    const char *len200 = big + 199; /* 200 characters: one length octet after 0x81 */
    n = weir_spiffe_san_der(&len200, 1, der, sizeof(der));
    assert_int_equal(der[1], 0x81);
    assert_int_equal(der[2], 203);
    assert_int_equal(der[3], 0x86);
    assert_int_equal(der[4], 0x81);
    assert_int_equal(der[5], 200);
    assert_int_equal(n, 206);

    assert_int_equal(weir_spiffe_san_der(&uri, 1, der, 10), WEIR_SPIFFE_ERR_SPACE);
    assert_int_equal(weir_spiffe_san_der(NULL, 0, der, sizeof(der)), WEIR_SPIFFE_ERR_EMPTY);
    const char *empty = "";
    assert_int_equal(weir_spiffe_san_der(&empty, 1, der, sizeof(der)), WEIR_SPIFFE_ERR_EMPTY);
}

/* ---- certificates ------------------------------------------------------------------------ */

static char tmpdir[64];

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup_tmp(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/weir-test-spiffe-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    return nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void parse_pem(mbedtls_x509_crt *crt, const char *pem)
{
    mbedtls_x509_crt_init(crt);
    int rc = mbedtls_x509_crt_parse(crt, (const unsigned char *)pem, strlen(pem) + 1);
    if (rc != 0)
        fail_msg("mbedtls_x509_crt_parse: -0x%04x", -rc);
}

/* Encode with our SAN writer, sign with certs/, parse with mbedTLS, read it back. */
static void test_san_round_trip_through_mbedtls(void **state)
{
    char err[256];
    weir_certs_pem_t ca, leaf;
    assert_int_equal(weir_certs_make_ca("cluster.local", 0, &ca, err, sizeof(err)), 0);

    const char *one[] = {"spiffe://cluster.local/ns/default/sa/httpbin"};
    weir_certs_leaf_spec_t spec = {.uris = one, .n_uris = 1, .eku = WEIR_CERTS_EKU_CLIENT};
    assert_int_equal(weir_certs_make_leaf(ca.cert_pem, ca.key_pem, &spec, &leaf, err, sizeof(err)),
                     0);
    mbedtls_x509_crt crt;
    parse_pem(&crt, leaf.cert_pem);
    const char *uri;
    size_t len;
    assert_int_equal(weir_spiffe_uri_san(&crt, &uri, &len), 0);
    assert_int_equal(len, strlen(one[0]));
    assert_memory_equal(uri, one[0], len);
    weir_spiffe_id_t id;
    assert_int_equal(weir_spiffe_from_crt(&crt, &id), 0);
    assert_memory_equal(id.sa, "httpbin", id.sa_len);
    assert_int_equal(crt.subject_raw.len, 0 + 2); /* the empty SEQUENCE: 30 00 */
    mbedtls_x509_crt_free(&crt);
    weir_certs_pem_free(&leaf);

    /* Two URIs: the certificate is fine, the identity is not. */
    const char *two[] = {"spiffe://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/c/sa/d"};
    spec.uris = two;
    spec.n_uris = 2;
    assert_int_equal(weir_certs_make_leaf(ca.cert_pem, ca.key_pem, &spec, &leaf, err, sizeof(err)),
                     0);
    parse_pem(&crt, leaf.cert_pem);
    assert_int_equal(weir_spiffe_uri_san(&crt, &uri, &len), WEIR_SPIFFE_ERR_MULTIPLE_URI_SAN);
    assert_int_equal(weir_spiffe_from_crt(&crt, &id), WEIR_SPIFFE_ERR_MULTIPLE_URI_SAN);
    mbedtls_x509_crt_free(&crt);
    weir_certs_pem_free(&leaf);

    /* No SAN at all (the CA itself has none). */
    parse_pem(&crt, ca.cert_pem);
    assert_int_equal(weir_spiffe_from_crt(&crt, &id), WEIR_SPIFFE_ERR_NO_URI_SAN);
    mbedtls_x509_crt_free(&crt);

    /* A URI that is not a SPIFFE ID is a URI SAN, but no identity. */
    const char *web[] = {"https://example.com/"};
    spec.uris = web;
    spec.n_uris = 1;
    assert_int_equal(weir_certs_make_leaf(ca.cert_pem, ca.key_pem, &spec, &leaf, err, sizeof(err)),
                     0);
    parse_pem(&crt, leaf.cert_pem);
    assert_int_equal(weir_spiffe_uri_san(&crt, &uri, &len), 0);
    assert_int_equal(weir_spiffe_from_crt(&crt, &id), WEIR_SPIFFE_ERR_SCHEME);
    mbedtls_x509_crt_free(&crt);
    weir_certs_pem_free(&leaf);

    assert_int_equal(weir_spiffe_uri_san(NULL, &uri, &len), WEIR_SPIFFE_ERR_NO_URI_SAN);
    weir_certs_pem_free(&ca);
}

/* Runs `openssl req -x509` with the given -addext (or none) and parses its certificate. */
static int openssl_cert(mbedtls_x509_crt *crt, const char *addext)
{
    char cmd[1024], cert[128], key[128];
    snprintf(cert, sizeof(cert), "%s/ossl-cert.pem", tmpdir);
    snprintf(key, sizeof(key), "%s/ossl-key.pem", tmpdir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout %s -out %s -subj /O=test -days 1 %s%s%s >/dev/null 2>&1",
             key, cert, addext ? "-addext '" : "", addext ? addext : "", addext ? "'" : "");
    if (system(cmd) != 0)
        return -1;
    mbedtls_x509_crt_init(crt);
    return mbedtls_x509_crt_parse_file(crt, cert);
}

static void test_openssl_made_certs(void **state)
{
    mbedtls_x509_crt crt;
    weir_spiffe_id_t id;
    const char *uri;
    size_t len;

    assert_int_equal(openssl_cert(&crt, "subjectAltName=URI:spiffe://cluster.local/ns/a/sa/b"), 0);
    assert_int_equal(weir_spiffe_from_crt(&crt, &id), 0);
    assert_memory_equal(id.td, "cluster.local", id.td_len);
    assert_memory_equal(id.ns, "a", id.ns_len);
    assert_memory_equal(id.sa, "b", id.sa_len);
    assert_int_equal(weir_spiffe_uri_san(&crt, &uri, &len), 0);
    assert_int_equal(len, strlen("spiffe://cluster.local/ns/a/sa/b"));
    assert_memory_equal(uri, "spiffe://cluster.local/ns/a/sa/b", len);
    mbedtls_x509_crt_free(&crt);

    /* DNS names and an email beside one URI: the URI is still the only identity. */
    assert_int_equal(openssl_cert(&crt, "subjectAltName=DNS:web.default.svc,"
                                        "URI:spiffe://example.org/ns/x/sa/y,email:a@b.c"),
                     0);
    assert_int_equal(weir_spiffe_from_crt(&crt, &id), 0);
    assert_memory_equal(id.td, "example.org", id.td_len);
    mbedtls_x509_crt_free(&crt);

    assert_int_equal(openssl_cert(&crt, "subjectAltName=URI:spiffe://cluster.local/ns/a/sa/b,"
                                        "URI:spiffe://cluster.local/ns/a/sa/c"),
                     0);
    assert_int_equal(weir_spiffe_from_crt(&crt, &id), WEIR_SPIFFE_ERR_MULTIPLE_URI_SAN);
    mbedtls_x509_crt_free(&crt);

    assert_int_equal(openssl_cert(&crt, "subjectAltName=DNS:only.dns"), 0);
    assert_int_equal(weir_spiffe_from_crt(&crt, &id), WEIR_SPIFFE_ERR_NO_URI_SAN);
    mbedtls_x509_crt_free(&crt);

    assert_int_equal(openssl_cert(&crt, NULL), 0);
    assert_int_equal(weir_spiffe_from_crt(&crt, &id), WEIR_SPIFFE_ERR_NO_URI_SAN);
    mbedtls_x509_crt_free(&crt);

    assert_int_equal(openssl_cert(&crt, "subjectAltName=URI:spiffe://cluster.local/ns/a/sa/b?x"),
                     0);
    assert_int_equal(weir_spiffe_from_crt(&crt, &id), WEIR_SPIFFE_ERR_QUERY);
    mbedtls_x509_crt_free(&crt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_trust_domain_valid),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_san_der_bytes),
        cmocka_unit_test(test_san_round_trip_through_mbedtls),
        cmocka_unit_test(test_openssl_made_certs),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
