/* tests/unit/test_certs.c: `weir certs ca|issue` end to end in a temporary directory, checked
 * with OpenSSL (what Envoy-era tooling reads) and mbedTLS (what weir reads). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <mbedtls/x509_crt.h>

#include "certs/ca.h"
#include "common/spiffe.h"

static char tmpdir[64];

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/weir-test-certs-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    return nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Runs weir_certs_main on a NULL-terminated argument list, with "weir certs" in front. */
static int run(const char *first, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "weir";
    argv[argc++] = "certs";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    fflush(stdout);
    return weir_certs_main(argc, argv, 2);
}

static char *path_in(const char *dir, const char *name)
{
    static char buf[8][512];
    static int next;
    char *p = buf[next++ % 8], tmp[512];
    snprintf(tmp, sizeof(tmp), "%s/%s", dir, name); /* dir may be an earlier slot */
    memcpy(p, tmp, sizeof(tmp));
    return p;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Output of a shell command, NUL-terminated (callers free). */
static char *capture(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, p);
    buf[n] = '\0';
    pclose(p);
    return buf;
}

static mode_t file_mode(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return (mode_t)-1;
    return st.st_mode & 07777;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (hay == NULL || strstr(hay, needle) == NULL)
        fail_msg("expected \"%s\" in:\n%s", needle, hay ? hay : "(null)");
}

static void test_ca_writes_istio_files(void **state)
{
    /* A nested directory that does not exist yet (mkdir -p), and a permissive umask: the key
     * must be 0600 because we set it, not because of the umask. */
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/%s", tmpdir, "a/b/ca");
    mode_t old = umask(0);
    assert_int_equal(run("ca", "--out", dir, NULL), 0);
    umask(old);
    assert_int_equal(file_mode(path_in(dir, "ca-key.pem")), 0600);
    assert_int_equal(file_mode(path_in(dir, "ca-cert.pem")), 0644);
    assert_int_equal(file_mode(path_in(dir, "root-cert.pem")), 0644);
    char *cert = slurp(path_in(dir, "ca-cert.pem"));
    char *root = slurp(path_in(dir, "root-cert.pem"));
    char *key = slurp(path_in(dir, "ca-key.pem"));
    assert_non_null(cert);
    assert_string_equal(cert, root);
    assert_contains(key, "PRIVATE KEY-----");
    char td[256], err[256];
    assert_int_equal(weir_certs_ca_trust_domain(cert, td, sizeof(td), err, sizeof(err)), 0);
    assert_string_equal(td, "cluster.local");

    char cmd[512];
    snprintf(cmd, sizeof(cmd), "openssl x509 -in %s -text -noout 2>&1",
             path_in(dir, "ca-cert.pem"));
    char *text = capture(cmd);
    assert_contains(text, "Subject: O = cluster.local");
    assert_contains(text, "Issuer: O = cluster.local");
    assert_contains(text, "X509v3 Basic Constraints: critical");
    assert_contains(text, "CA:TRUE");
    assert_contains(text, "X509v3 Key Usage: critical");
    assert_contains(text, "Certificate Sign, CRL Sign");
    assert_contains(text, "X509v3 Subject Key Identifier");
    assert_contains(text, "ASN1 OID: prime256v1");
    assert_contains(text, "ecdsa-with-SHA256");
    free(text);
    free(cert);
    free(root);
    free(key);

    /* A second run refuses to overwrite (exit 1) and leaves the files as they were. */
    char *before = slurp(path_in(dir, "ca-key.pem"));
    assert_int_equal(run("ca", "--out", dir, NULL), 1);
    char *after = slurp(path_in(dir, "ca-key.pem"));
    assert_string_equal(before, after);
    free(after);
    /* --force replaces them, with the same modes. */
    assert_int_equal(run("ca", "--out", dir, "--force", NULL), 0);
    after = slurp(path_in(dir, "ca-key.pem"));
    assert_string_not_equal(before, after);
    assert_int_equal(file_mode(path_in(dir, "ca-key.pem")), 0600);
    free(before);
    free(after);

    /* No temporary files are left behind. */
    snprintf(cmd, sizeof(cmd), "ls -A %s | wc -l", dir);
    text = capture(cmd);
    assert_int_equal(atoi(text), 3);
    free(text);
}

static void test_issue_workload_cert(void **state)
{
    char ca[256];
    snprintf(ca, sizeof(ca), "%s/%s", tmpdir, "ca2");
    char wl[256];
    snprintf(wl, sizeof(wl), "%s/%s", tmpdir, "workload/httpbin");
    mode_t old = umask(077); /* certificates still come out world-readable (0644) */
    assert_int_equal(run("ca", "--out", ca, "--trust-domain", "example.org", "--days", "30", NULL),
                     0);
    assert_int_equal(run("issue", "--ca", ca, "--namespace", "default", "--service-account",
                         "httpbin", "--out", wl, NULL),
                     0);
    umask(old);
    assert_int_equal(file_mode(path_in(wl, "key.pem")), 0600);
    assert_int_equal(file_mode(path_in(wl, "cert-chain.pem")), 0644);
    assert_int_equal(file_mode(path_in(wl, "root-cert.pem")), 0644);
    char *root = slurp(path_in(wl, "root-cert.pem"));
    char *ca_root = slurp(path_in(ca, "root-cert.pem"));
    assert_string_equal(root, ca_root);
    free(root);
    free(ca_root);

    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "openssl x509 -in %s -text -noout 2>&1",
             path_in(wl, "cert-chain.pem"));
    char *text = capture(cmd);
    assert_contains(text, "X509v3 Subject Alternative Name: critical");
    assert_contains(text, "URI:spiffe://example.org/ns/default/sa/httpbin");
    assert_contains(text, "TLS Web Server Authentication, TLS Web Client Authentication");
    assert_contains(text, "X509v3 Key Usage: critical");
    assert_contains(text, "Digital Signature, Key Encipherment");
    assert_contains(text, "CA:FALSE");
    assert_contains(text, "X509v3 Authority Key Identifier");
    assert_contains(text, "Issuer: O = example.org");
    assert_contains(text, "Subject: \n"); /* empty, as Istio issues them */
    free(text);

    /* OpenSSL verifies the chain to the root, with the URI SAN and EKU it finds. */
    snprintf(cmd, sizeof(cmd), "openssl verify -CAfile %s -purpose sslclient %s 2>&1",
             path_in(wl, "root-cert.pem"), path_in(wl, "cert-chain.pem"));
    text = capture(cmd);
    assert_contains(text, ": OK");
    free(text);
    snprintf(cmd, sizeof(cmd), "openssl verify -CAfile %s -purpose sslserver %s 2>&1",
             path_in(wl, "root-cert.pem"), path_in(wl, "cert-chain.pem"));
    text = capture(cmd);
    assert_contains(text, ": OK");
    free(text);
    /* The key is the certificate's. */
    snprintf(cmd, sizeof(cmd),
             "a=$(openssl x509 -in %s -noout -pubkey | openssl sha256); "
             "b=$(openssl pkey -in %s -pubout | openssl sha256); [ \"$a\" = \"$b\" ] && echo same",
             path_in(wl, "cert-chain.pem"), path_in(wl, "key.pem"));
    text = capture(cmd);
    assert_contains(text, "same");
    free(text);

    /* mbedTLS reads it back: identity, validity of --days 1 by default. */
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    assert_int_equal(mbedtls_x509_crt_parse_file(&crt, path_in(wl, "cert-chain.pem")), 0);
    weir_spiffe_id_t id;
    assert_int_equal(weir_spiffe_from_crt(&crt, &id), 0);
    assert_memory_equal(id.td, "example.org", id.td_len);
    assert_memory_equal(id.ns, "default", id.ns_len);
    assert_memory_equal(id.sa, "httpbin", id.sa_len);
    assert_null(crt.next); /* a root-signed leaf: the chain is the leaf alone */
    struct tm tm = {.tm_year = crt.valid_to.year - 1900,
                    .tm_mon = crt.valid_to.mon - 1,
                    .tm_mday = crt.valid_to.day,
                    .tm_hour = crt.valid_to.hour,
                    .tm_min = crt.valid_to.min,
                    .tm_sec = crt.valid_to.sec};
    double left = difftime(timegm(&tm), time(NULL));
    assert_true(left > 86400 - 120 && left <= 86400);
    unsigned char serial1[32];
    size_t serial1_len = crt.serial.len;
    assert_int_equal(serial1_len, 16);
    memcpy(serial1, crt.serial.p, serial1_len);
    mbedtls_x509_crt_free(&crt);

    /* Issuing again refuses, then --force with --days 7 replaces it with a new serial. */
    assert_int_equal(run("issue", "--ca", ca, "--namespace", "default", "--service-account",
                         "httpbin", "--out", wl, NULL),
                     1);
    assert_int_equal(run("issue", "--ca=" /* the = form too */, "--namespace=default", NULL), 2);
    char ca_opt[300];
    snprintf(ca_opt, sizeof(ca_opt), "--ca=%s", ca);
    assert_int_equal(run("issue", ca_opt, "--namespace=default", "--service-account=httpbin",
                         "--out", wl, "--days", "7", "--force", NULL),
                     0);
    mbedtls_x509_crt_init(&crt);
    assert_int_equal(mbedtls_x509_crt_parse_file(&crt, path_in(wl, "cert-chain.pem")), 0);
    assert_false(crt.serial.len == serial1_len && memcmp(crt.serial.p, serial1, serial1_len) == 0);
    tm = (struct tm){.tm_year = crt.valid_to.year - 1900,
                     .tm_mon = crt.valid_to.mon - 1,
                     .tm_mday = crt.valid_to.day,
                     .tm_hour = crt.valid_to.hour,
                     .tm_min = crt.valid_to.min,
                     .tm_sec = crt.valid_to.sec};
    left = difftime(timegm(&tm), time(NULL));
    assert_true(left > 7 * 86400 - 120 && left <= 7 * 86400);
    mbedtls_x509_crt_free(&crt);

    /* A leaf never outlives its CA (30 days here). */
    assert_int_equal(run("issue", "--ca", ca, "--namespace", "default", "--service-account",
                         "httpbin", "--out", wl, "--days", "365", "--force", NULL),
                     0);
    mbedtls_x509_crt_init(&crt);
    assert_int_equal(mbedtls_x509_crt_parse_file(&crt, path_in(wl, "cert-chain.pem")), 0);
    tm = (struct tm){.tm_year = crt.valid_to.year - 1900,
                     .tm_mon = crt.valid_to.mon - 1,
                     .tm_mday = crt.valid_to.day,
                     .tm_hour = crt.valid_to.hour,
                     .tm_min = crt.valid_to.min,
                     .tm_sec = crt.valid_to.sec};
    left = difftime(timegm(&tm), time(NULL));
    assert_true(left <= 30 * 86400);
    mbedtls_x509_crt_free(&crt);
}

static void test_usage_errors(void **state)
{
    char ca[256];
    snprintf(ca, sizeof(ca), "%s/%s", tmpdir, "ca3");
    assert_int_equal(run(NULL), 2);
    assert_int_equal(run("nonsense", NULL), 2);
    assert_int_equal(run("ca", NULL), 2);          /* no --out */
    assert_int_equal(run("ca", "--out", NULL), 2); /* no value */
    assert_int_equal(run("ca", "--out", ca, "--days", "0", NULL), 2);
    assert_int_equal(run("ca", "--out", ca, "--days", "ten", NULL), 2);
    assert_int_equal(run("ca", "--out", ca, "--trust-domain", "Bad_Upper", NULL), 2);
    assert_int_equal(run("ca", "--out", ca, "--namespace", "x", NULL), 2); /* issue's option */
    assert_int_equal(run("ca", "--out", ca, "--bogus", NULL), 2);
    assert_int_equal(run("issue", "--out", ca, "--trust-domain", "x", NULL), 2);
    assert_int_equal(access(ca, F_OK), -1); /* nothing was created by a usage error */

    assert_int_equal(run("ca", "--out", ca, NULL), 0);
    char wl[256];
    snprintf(wl, sizeof(wl), "%s/%s", tmpdir, "wl3");
    assert_int_equal(run("issue", "--ca", ca, "--namespace", "default", "--out", wl, NULL), 2);
    assert_int_equal(run("issue", "--ca", ca, "--namespace", "bad/ns", "--service-account", "a",
                         "--out", wl, NULL),
                     2);
    assert_int_equal(
        run("issue", "--ca", ca, "--namespace", "..", "--service-account", "a", "--out", wl, NULL),
        2);
    /* A CA directory that does not exist is a failure, not a usage error. */
    assert_int_equal(run("issue", "--ca", path_in(tmpdir, "nope"), "--namespace", "a",
                         "--service-account", "b", "--out", wl, NULL),
                     1);
    /* --out naming a file, not a directory. */
    assert_int_equal(run("issue", "--ca", ca, "--namespace", "a", "--service-account", "b", "--out",
                         path_in(ca, "ca-cert.pem"), NULL),
                     1);
    assert_int_equal(run("--help", NULL), 0);
}

/* Only one of the three files exists: a refused run writes none of the others. */
static void test_partial_existing_refused_whole(void **state)
{
    char ca[256];
    snprintf(ca, sizeof(ca), "%s/%s", tmpdir, "ca4");
    assert_int_equal(run("ca", "--out", ca, NULL), 0);
    char wl[256];
    snprintf(wl, sizeof(wl), "%s/%s", tmpdir, "wl4");
    assert_int_equal(mkdir(wl, 0755), 0);
    FILE *f = fopen(path_in(wl, "root-cert.pem"), "w");
    fputs("mine\n", f);
    fclose(f);
    assert_int_equal(
        run("issue", "--ca", ca, "--namespace", "a", "--service-account", "b", "--out", wl, NULL),
        1);
    assert_int_equal(access(path_in(wl, "key.pem"), F_OK), -1);
    assert_int_equal(access(path_in(wl, "cert-chain.pem"), F_OK), -1);
    char *mine = slurp(path_in(wl, "root-cert.pem"));
    assert_string_equal(mine, "mine\n");
    free(mine);
}

static void test_library_errors(void **state)
{
    char err[256];
    weir_certs_pem_t ca, other, leaf, none;
    assert_int_equal(weir_certs_make_ca("Not Valid", 0, &ca, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "invalid trust domain"));
    assert_int_equal(weir_certs_make_ca("cluster.local", 0, &ca, err, sizeof(err)), 0);
    assert_int_equal(weir_certs_make_ca("cluster.local", 0, &other, err, sizeof(err)), 0);
    const char *uri[] = {"spiffe://cluster.local/ns/a/sa/b"};
    weir_certs_leaf_spec_t spec = {.uris = uri, .n_uris = 1};
    /* The key of another CA. */
    assert_int_equal(
        weir_certs_make_leaf(ca.cert_pem, other.key_pem, &spec, &leaf, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(weir_certs_make_leaf("garbage", ca.key_pem, &spec, &leaf, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "CA certificate"));
    assert_int_equal(weir_certs_make_leaf(ca.cert_pem, "garbage", &spec, &leaf, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "CA key"));
    /* A leaf is not a CA. */
    assert_int_equal(weir_certs_make_leaf(ca.cert_pem, ca.key_pem, &spec, &leaf, err, sizeof(err)),
                     0);
    assert_int_equal(
        weir_certs_make_leaf(leaf.cert_pem, leaf.key_pem, &spec, &none, err, sizeof(err)), -1);
    assert_null(none.cert_pem);
    assert_non_null(strstr(err, "not a CA"));
    char td[8];
    assert_int_equal(weir_certs_ca_trust_domain(leaf.cert_pem, td, sizeof(td), err, sizeof(err)),
                     -1);
    assert_int_equal(weir_certs_ca_trust_domain(ca.cert_pem, td, 4, err, sizeof(err)), -1);
    weir_certs_pem_free(&leaf);
    weir_certs_pem_free(&ca);
    weir_certs_pem_free(&other);
    weir_certs_pem_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ca_writes_istio_files),
        cmocka_unit_test(test_issue_workload_cert),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_partial_existing_refused_whole),
        cmocka_unit_test(test_library_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
