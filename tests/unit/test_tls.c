/* tests/unit/test_tls.c: the TLS engine, client and server talking in memory.
 *
 * Certificates are made at start-up by certs/ (two mesh CAs and leaves good and bad) into a
 * temporary directory removed at the end. Each test builds its configs from those files, as
 * the proxy will. Raw mbedTLS peers stand in for clients and servers that misbehave (TLS 1.1,
 * renegotiation), since our engine will not do those things itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <ftw.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#if defined(__SANITIZE_ADDRESS__)
/* From libasan (sanitizer/allocator_interface.h, which Debian's gcc does not install): malloc
 * is ASan's under the sanitizers, so mallinfo2 would see nothing. */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#include "certs/ca.h"
#include "common/mem.h"
#include "common/tls.h"

#define TD "cluster.local"
#define SERVER_ID "spiffe://cluster.local/ns/default/sa/httpbin"
#define CLIENT_ID "spiffe://cluster.local/ns/default/sa/sleep"
#define MESH_SNI "outbound_.80_.v1_.web-service.default.svc.cluster.local"

static char tmpdir[64];

/* ---- fixtures ---------------------------------------------------------------------------- */

static char *fx(const char *name, const char *file)
{
    static char buf[16][300];
    static int next;
    char *p = buf[next++ % 16];
    snprintf(p, 300, "%s/%s/%s", tmpdir, name, file);
    return p;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void save_pair(const char *name, const weir_certs_pem_t *p, const char *root_pem)
{
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/%s", tmpdir, name);
    mkdir(dir, 0700);
    write_text(fx(name, "cert-chain.pem"), p->cert_pem);
    write_text(fx(name, "key.pem"), p->key_pem);
    write_text(fx(name, "root-cert.pem"), root_pem);
}

static void make_leaf(const weir_certs_pem_t *ca, const char *name, const char *uri1,
                      const char *uri2, unsigned eku, time_t nb, time_t na, bool is_ca)
{
    const char *uris[] = {uri1, uri2};
    weir_certs_leaf_spec_t spec = {
        .uris = uris,
        .n_uris = uri2   ? 2
                  : uri1 ? 1
                         : 0,
        .not_before = nb,
        .not_after = na,
        .eku = eku,
        .is_ca = is_ca,
    };
    weir_certs_pem_t leaf;
    char err[256];
    if (weir_certs_make_leaf(ca->cert_pem, ca->key_pem, &spec, &leaf, err, sizeof(err)) != 0)
        fail_msg("make_leaf %s: %s", name, err);
    save_pair(name, &leaf, ca->cert_pem);
    weir_certs_pem_free(&leaf);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/weir-test-tls-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    char err[256];
    weir_certs_pem_t ca1, ca2;
    if (weir_certs_make_ca(TD, 0, &ca1, err, sizeof(err)) != 0 ||
        weir_certs_make_ca(TD, 0, &ca2, err, sizeof(err)) != 0)
        return -1;
    save_pair("ca1", &ca1, ca1.cert_pem);
    save_pair("ca2", &ca2, ca2.cert_pem);
    const unsigned both = WEIR_CERTS_EKU_SERVER | WEIR_CERTS_EKU_CLIENT;
    time_t now = time(NULL), day = 86400;
    make_leaf(&ca1, "server", SERVER_ID, NULL, both, 0, 0, false);
    make_leaf(&ca1, "client", CLIENT_ID, NULL, both, 0, 0, false);
    make_leaf(&ca2, "client-ca2", CLIENT_ID, NULL, both, 0, 0, false);
    make_leaf(&ca2, "server-ca2", SERVER_ID, NULL, both, 0, 0, false);
    make_leaf(&ca1, "client-expired", CLIENT_ID, NULL, both, now - 2 * day, now - day, false);
    make_leaf(&ca1, "client-future", CLIENT_ID, NULL, both, now + day, now + 2 * day, false);
    make_leaf(&ca1, "client-evil", "spiffe://evil.example/ns/default/sa/sleep", NULL, both, 0, 0,
              false);
    make_leaf(&ca1, "client-nouri", NULL, NULL, both, 0, 0, false);
    make_leaf(&ca1, "client-twouri", CLIENT_ID, "spiffe://cluster.local/ns/x/sa/y", both, 0, 0,
              false);
    make_leaf(&ca1, "client-noeku", CLIENT_ID, NULL, 0, 0, 0, false);
    make_leaf(&ca1, "client-serveronly", CLIENT_ID, NULL, WEIR_CERTS_EKU_SERVER, 0, 0, false);
    make_leaf(&ca1, "client-isca", CLIENT_ID, NULL, both, 0, 0, true);
    make_leaf(&ca1, "server-clientonly", SERVER_ID, NULL, WEIR_CERTS_EKU_CLIENT, 0, 0, false);
    make_leaf(&ca1, "server-noeku", SERVER_ID, NULL, 0, 0, 0, false);
    make_leaf(&ca1, "server-other", "spiffe://cluster.local/ns/default/sa/other", NULL, both, 0, 0,
              false);
    weir_certs_pem_free(&ca1);
    weir_certs_pem_free(&ca2);
    return 0;
}

static int teardown(void **state)
{
    return nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Mesh config for a leaf directory, trusting root `root` (a directory name). */
static weir_tls_config_t *mesh_cfg(weir_tls_role_t role, const char *leaf, const char *root)
{
    char err[512];
    weir_tls_config_t *c = weir_tls_config_from_files(
        role, fx(root, "root-cert.pem"), leaf ? fx(leaf, "cert-chain.pem") : NULL,
        leaf ? fx(leaf, "key.pem") : NULL, TD, err, sizeof(err));
    if (c == NULL)
        fail_msg("config %s: %s", leaf ? leaf : "(no cert)", err);
    return c;
}

/* ---- moving bytes ------------------------------------------------------------------------ */

typedef struct {
    weir_tls_t *c, *s;
    weir_buf_t c2s, s2c; /* ciphertext taken from one side, not yet fed to the other */
} pair_t;

/* Moves ciphertext from `from` to `to` as far as `to` takes it; returns bytes fed. */
static size_t flow(weir_tls_t *from, weir_buf_t *wire, weir_tls_t *to)
{
    weir_tls_take_cipher(from, wire);
    if (wire->len == 0)
        return 0;
    size_t n = weir_tls_feed_cipher(to, wire->base, wire->len);
    weir_buf_consume(wire, n);
    return n;
}

static void pair_new(pair_t *p, weir_tls_config_t *ccfg, weir_tls_config_t *scfg, const char *sni)
{
    memset(p, 0, sizeof(*p));
    char err[256];
    p->c = weir_tls_new(ccfg, sni, err, sizeof(err));
    p->s = weir_tls_new(scfg, NULL, err, sizeof(err));
    assert_non_null(p->c);
    assert_non_null(p->s);
}

static void pair_free(pair_t *p)
{
    weir_tls_free(p->c);
    weir_tls_free(p->s);
    weir_buf_free(&p->c2s);
    weir_buf_free(&p->s2c);
}

/* Drives both handshakes until neither can make progress. */
static void handshake(pair_t *p, weir_tls_status_t *cs, weir_tls_status_t *ss)
{
    *cs = weir_tls_handshake(p->c);
    *ss = WEIR_TLS_WANT_INPUT;
    for (int i = 0; i < 64; i++) {
        size_t moved = flow(p->c, &p->c2s, p->s);
        *ss = weir_tls_handshake(p->s);
        moved += flow(p->s, &p->s2c, p->c);
        *cs = weir_tls_handshake(p->c);
        moved += flow(p->c, &p->c2s, p->s);
        if (moved == 0 && *cs != WEIR_TLS_WANT_INPUT && *ss != WEIR_TLS_WANT_INPUT)
            return;
        if (moved == 0 && i > 0)
            return;
    }
    fail_msg("handshake did not settle");
}

static void handshake_ok(pair_t *p)
{
    weir_tls_status_t cs, ss;
    handshake(p, &cs, &ss);
    if (cs != WEIR_TLS_DONE || ss != WEIR_TLS_DONE)
        fail_msg("handshake: client %d \"%s\", server %d \"%s\"", cs, weir_tls_reason(p->c), ss,
                 weir_tls_reason(p->s));
    assert_int_equal(weir_tls_state(p->c), WEIR_TLS_OPEN);
    assert_int_equal(weir_tls_state(p->s), WEIR_TLS_OPEN);
}

/* Expects the handshake to fail on `loser` (the side that refuses) with `why` in its reason;
 * the other side must fail too (it got the alert). */
static void handshake_refused(pair_t *p, bool server_refuses, const char *why)
{
    weir_tls_status_t cs, ss;
    handshake(p, &cs, &ss);
    weir_tls_t *loser = server_refuses ? p->s : p->c, *other = server_refuses ? p->c : p->s;
    if (weir_tls_state(loser) != WEIR_TLS_FAILED || strstr(weir_tls_reason(loser), why) == NULL)
        fail_msg("want %s to refuse with \"%s\"; client %d \"%s\", server %d \"%s\"",
                 server_refuses ? "server" : "client", why, cs, weir_tls_reason(p->c), ss,
                 weir_tls_reason(p->s));
    assert_int_equal(weir_tls_state(other), WEIR_TLS_FAILED);
    assert_null(weir_tls_peer_spiffe_id(loser));
    /* No application data can flow on either side. */
    char buf[16];
    size_t n;
    assert_int_equal(weir_tls_read(p->s, buf, sizeof(buf), &n), WEIR_TLS_ERROR);
    assert_int_equal(weir_tls_write(p->c, "x", 1, &n), WEIR_TLS_ERROR);
}

/* Writes all of data on `from`, reads it all on `to`. */
static void send_recv(weir_tls_t *from, weir_buf_t *wire, weir_tls_t *to, const char *data)
{
    size_t len = strlen(data), n;
    assert_int_equal(weir_tls_write(from, data, len, &n), WEIR_TLS_DONE);
    assert_int_equal(n, len);
    flow(from, wire, to);
    char buf[4096];
    size_t got = 0;
    weir_tls_status_t st;
    while ((st = weir_tls_read(to, buf + got, sizeof(buf) - got, &n)) == WEIR_TLS_DONE)
        got += n;
    assert_int_equal(st, WEIR_TLS_WANT_INPUT);
    assert_int_equal(got, len);
    assert_memory_equal(buf, data, len);
}

/* ---- handshakes that succeed -------------------------------------------------------------- */

static void test_mutual_handshake_and_identities(void **state)
{
    weir_tls_config_t *scfg = mesh_cfg(WEIR_TLS_SERVER, "server", "ca1");
    weir_tls_config_t *ccfg = mesh_cfg(WEIR_TLS_CLIENT, "client", "ca1");
    assert_string_equal(weir_tls_config_own_id(scfg), SERVER_ID);
    assert_string_equal(weir_tls_config_own_id(ccfg), CLIENT_ID);
    pair_t p;
    pair_new(&p, ccfg, scfg, MESH_SNI);
    assert_int_equal(weir_tls_state(p.c), WEIR_TLS_HANDSHAKING);
    assert_null(weir_tls_peer_spiffe_id(p.c));
    handshake_ok(&p);

    assert_string_equal(weir_tls_peer_spiffe_id(p.s), CLIENT_ID);
    assert_string_equal(weir_tls_peer_spiffe_id(p.c), SERVER_ID);
    assert_false(weir_tls_resumed(p.c));
    assert_false(weir_tls_resumed(p.s));
    assert_string_equal(weir_tls_version(p.c), "TLSv1.2");
    assert_non_null(strstr(weir_tls_ciphersuite(p.c), "ECDHE-ECDSA-WITH-AES-"));
    assert_non_null(strstr(weir_tls_ciphersuite(p.c), "GCM"));
    /* The SNI is a cluster name, not a certificate name, and the server sees it. */
    assert_string_equal(weir_tls_sni(p.s), MESH_SNI);
    /* The mesh server has no ALPN list, so the client's istio ALPN is not negotiated. */
    assert_null(weir_tls_alpn(p.c));
    assert_true(weir_tls_handshake_steps(p.c) > 5);
    assert_true(weir_tls_handshake_steps(p.s) > 5);
    assert_string_equal(weir_tls_reason(p.c), "");

    /* XFCC Hash: SHA-256 of the peer's DER, as computed independently from the file. */
    unsigned char h[32], want[32];
    char hex[65];
    assert_int_equal(weir_tls_peer_cert_sha256(p.s, h, hex), 0);
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    assert_int_equal(mbedtls_x509_crt_parse_file(&crt, fx("client", "cert-chain.pem")), 0);
    mbedtls_sha256_ret(crt.raw.p, crt.raw.len, want, 0);
    mbedtls_x509_crt_free(&crt);
    assert_memory_equal(h, want, 32);
    assert_int_equal(strlen(hex), 64);
    char two[3];
    snprintf(two, sizeof(two), "%02x", want[0]);
    assert_memory_equal(hex, two, 2);

    send_recv(p.c, &p.c2s, p.s, "GET / HTTP/1.1\r\nHost: web\r\n\r\n");
    send_recv(p.s, &p.s2c, p.c, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    pair_free(&p);
    weir_tls_config_unref(scfg);
    weir_tls_config_unref(ccfg);
}

static void test_alpn_negotiated(void **state)
{
    static const char *const server_alpn[] = {"istio-peer-exchange", "istio", "h2", "http/1.1",
                                              NULL};
    weir_tls_options_t so = {
        .role = WEIR_TLS_SERVER,
        .root_pem_path = fx("ca1", "root-cert.pem"),
        .chain_pem_path = fx("server", "cert-chain.pem"),
        .key_pem_path = fx("server", "key.pem"),
        .trust_domain = TD,
        .alpn = server_alpn,
    };
    char err[256];
    weir_tls_config_t *scfg = weir_tls_config_new(&so, err, sizeof(err));
    assert_non_null(scfg);
    weir_tls_config_t *ccfg = mesh_cfg(WEIR_TLS_CLIENT, "client", "ca1");
    pair_t p;
    pair_new(&p, ccfg, scfg, NULL);
    handshake_ok(&p);
    assert_string_equal(weir_tls_alpn(p.c), "istio-peer-exchange");
    assert_string_equal(weir_tls_alpn(p.s), "istio-peer-exchange");
    assert_null(weir_tls_sni(p.s)); /* the client sent none */
    pair_free(&p);
    weir_tls_config_unref(scfg);
    weir_tls_config_unref(ccfg);
}

static void test_simple_server_without_client_cert(void **state)
{
    weir_tls_options_t so = {
        .role = WEIR_TLS_SERVER,
        .chain_pem_path = fx("server", "cert-chain.pem"),
        .key_pem_path = fx("server", "key.pem"),
        .no_client_cert = true,
    };
    char err[256];
    weir_tls_config_t *scfg = weir_tls_config_new(&so, err, sizeof(err));
    assert_non_null(scfg);
    weir_tls_config_t *ccfg = mesh_cfg(WEIR_TLS_CLIENT, NULL, "ca1");
    pair_t p;
    pair_new(&p, ccfg, scfg, NULL);
    handshake_ok(&p);
    assert_null(weir_tls_peer_spiffe_id(p.s));
    assert_int_equal(weir_tls_peer_cert_sha256(p.s, NULL, NULL), -1);
    assert_string_equal(weir_tls_peer_spiffe_id(p.c), SERVER_ID);
    send_recv(p.c, &p.c2s, p.s, "hello");
    pair_free(&p);
    weir_tls_config_unref(scfg);
    weir_tls_config_unref(ccfg);
}

/* Outside the mesh (no trust domain) a client checks its SNI as the server's hostname, which
 * our workload certificates (URI SAN only) cannot match; in the mesh it never does. */
static void test_plain_tls_client_checks_hostname(void **state)
{
    weir_tls_options_t co = {
        .role = WEIR_TLS_CLIENT,
        .root_pem_path = fx("ca1", "root-cert.pem"),
        .chain_pem_path = fx("client", "cert-chain.pem"),
        .key_pem_path = fx("client", "key.pem"),
    };
    char err[256];
    weir_tls_config_t *ccfg = weir_tls_config_new(&co, err, sizeof(err));
    assert_non_null(ccfg);
    weir_tls_config_t *scfg = mesh_cfg(WEIR_TLS_SERVER, "server", "ca1");
    pair_t p;
    pair_new(&p, ccfg, scfg, "web.example.com");
    handshake_refused(&p, false, "Common Name");
    pair_free(&p);
    /* Without SNI the same plain client connects, and still sees the server's URI SAN. */
    pair_new(&p, ccfg, scfg, NULL);
    handshake_ok(&p);
    assert_string_equal(weir_tls_peer_spiffe_id(p.c), SERVER_ID);
    pair_free(&p);
    weir_tls_config_unref(scfg);
    weir_tls_config_unref(ccfg);
}

/* ---- resumption -------------------------------------------------------------------------- */

static void test_session_resumption(void **state)
{
    weir_tls_config_t *scfg = mesh_cfg(WEIR_TLS_SERVER, "server", "ca1");
    weir_tls_config_t *ccfg = mesh_cfg(WEIR_TLS_CLIENT, "client", "ca1");
    pair_t p;
    pair_new(&p, ccfg, scfg, MESH_SNI);
    handshake_ok(&p);
    unsigned full_steps = weir_tls_handshake_steps(p.c);
    unsigned char h1[32];
    assert_int_equal(weir_tls_peer_cert_sha256(p.c, h1, NULL), 0);
    assert_null(weir_tls_session_save(p.s)); /* servers resume through tickets */
    weir_tls_session_t *sess = weir_tls_session_save(p.c);
    assert_non_null(sess);
    assert_int_equal(weir_tls_session_offer(p.c, sess), -1); /* too late */
    pair_free(&p);

    /* Second connection to the same peer: resumed on both sides, identities intact. */
    pair_new(&p, ccfg, scfg, MESH_SNI);
    assert_int_equal(weir_tls_session_offer(p.c, sess), 0);
    handshake_ok(&p);
    assert_true(weir_tls_resumed(p.c));
    assert_true(weir_tls_resumed(p.s));
    assert_true(weir_tls_handshake_steps(p.c) < full_steps);
    assert_string_equal(weir_tls_peer_spiffe_id(p.s), CLIENT_ID);
    assert_string_equal(weir_tls_peer_spiffe_id(p.c), SERVER_ID);
    unsigned char h2[32];
    assert_int_equal(weir_tls_peer_cert_sha256(p.c, h2, NULL), 0);
    assert_memory_equal(h1, h2, 32);
    send_recv(p.c, &p.c2s, p.s, "resumed request");
    send_recv(p.s, &p.s2c, p.c, "resumed response");
    pair_free(&p);

    /* Resuming does not skip secure naming: expecting another identity fails. */
    pair_new(&p, ccfg, scfg, MESH_SNI);
    assert_int_equal(weir_tls_session_offer(p.c, sess), 0);
    const char *other[] = {"spiffe://cluster.local/ns/default/sa/other"};
    assert_int_equal(weir_tls_expect_peer_ids(p.c, other, 1), 0);
    weir_tls_status_t cs, ss;
    handshake(&p, &cs, &ss);
    assert_int_equal(cs, WEIR_TLS_ERROR);
    assert_non_null(strstr(weir_tls_reason(p.c), "resumed session"));
    assert_non_null(
        strstr(weir_tls_reason(p.c), "is not spiffe://cluster.local/ns/default/sa/other"));
    pair_free(&p);

    /* A new server config (rotation) has new ticket keys: a full handshake, which works. */
    weir_tls_config_t *scfg2 = mesh_cfg(WEIR_TLS_SERVER, "server", "ca1");
    pair_new(&p, ccfg, scfg2, MESH_SNI);
    assert_int_equal(weir_tls_session_offer(p.c, sess), 0);
    handshake_ok(&p);
    assert_false(weir_tls_resumed(p.c));
    assert_false(weir_tls_resumed(p.s));
    assert_string_equal(weir_tls_peer_spiffe_id(p.s), CLIENT_ID);
    pair_free(&p);

    weir_tls_session_free(sess);
    weir_tls_session_free(NULL);
    weir_tls_config_unref(scfg2);
    weir_tls_config_unref(scfg);
    weir_tls_config_unref(ccfg);
}

/* ---- data -------------------------------------------------------------------------------- */

static uint32_t rng_next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Writes up to `left` bytes of src in a random-sized piece; returns bytes taken. */
static size_t write_piece(weir_tls_t *t, const unsigned char *src, size_t left, uint32_t *rs)
{
    if (left == 0)
        return 0;
    size_t want = 1 + rng_next(rs) % 70000;
    if (want > left)
        want = left;
    size_t n;
    assert_int_equal(weir_tls_write(t, src, want, &n), WEIR_TLS_DONE);
    assert_true(weir_tls_cipher_pending(t) <= WEIR_TLS_OUTBOUND_HIGH + 17 * 1024);
    return n;
}

/* Reads what is available on t into dst+*got, checking the bytes against src. */
static void read_all(weir_tls_t *t, const unsigned char *src, size_t total, size_t *got,
                     uint32_t *rs)
{
    unsigned char buf[8192];
    for (;;) {
        size_t cap = 1 + rng_next(rs) % sizeof(buf), n;
        weir_tls_status_t st = weir_tls_read(t, buf, cap, &n);
        if (st == WEIR_TLS_WANT_INPUT)
            return;
        assert_int_equal(st, WEIR_TLS_DONE);
        assert_true(*got + n <= total);
        assert_memory_equal(buf, src + *got, n);
        *got += n;
    }
}

static void test_one_mib_both_ways(void **state)
{
    weir_tls_config_t *scfg = mesh_cfg(WEIR_TLS_SERVER, "server", "ca1");
    weir_tls_config_t *ccfg = mesh_cfg(WEIR_TLS_CLIENT, "client", "ca1");
    pair_t p;
    pair_new(&p, ccfg, scfg, NULL);
    handshake_ok(&p);

    const size_t total = 1 << 20;
    unsigned char *up = malloc(total), *down = malloc(total);
    uint32_t rs = 0x9e3779b9;
    for (size_t i = 0; i < total; i++) {
        up[i] = (unsigned char)rng_next(&rs);
        down[i] = (unsigned char)(i * 31 + (i >> 11));
    }
    size_t c_sent = 0, s_sent = 0, c_got = 0, s_got = 0;
    for (int rounds = 0; c_got < total || s_got < total; rounds++) {
        assert_true(rounds < 100000);
        /* The "socket" holds at most 256 KiB in flight each way: backpressure. */
        if (p.c2s.len < 256 * 1024)
            c_sent += write_piece(p.c, up + c_sent, total - c_sent, &rs);
        if (p.s2c.len < 256 * 1024)
            s_sent += write_piece(p.s, down + s_sent, total - s_sent, &rs);
        /* Feed in random-sized pieces; the engine takes at most one record's worth. */
        for (int k = 0; k < 4; k++) {
            weir_tls_take_cipher(p.c, &p.c2s);
            weir_tls_take_cipher(p.s, &p.s2c);
            size_t piece = 1 + rng_next(&rs) % 40000;
            size_t n = weir_tls_feed_cipher(p.s, p.c2s.base, p.c2s.len < piece ? p.c2s.len : piece);
            assert_true(n <= WEIR_TLS_INBOUND_MAX);
            weir_buf_consume(&p.c2s, n);
            n = weir_tls_feed_cipher(p.c, p.s2c.base, p.s2c.len < piece ? p.s2c.len : piece);
            weir_buf_consume(&p.s2c, n);
            read_all(p.s, up, total, &s_got, &rs);
            read_all(p.c, down, total, &c_got, &rs);
        }
    }
    assert_int_equal(c_sent, total);
    assert_int_equal(s_sent, total);
    free(up);
    free(down);

    /* close_notify: the server reads CLOSED, later writes on the client fail. */
    assert_int_equal(weir_tls_close(p.c), WEIR_TLS_DONE);
    assert_int_equal(weir_tls_state(p.c), WEIR_TLS_SHUTDOWN);
    flow(p.c, &p.c2s, p.s);
    char buf[64];
    size_t n;
    assert_int_equal(weir_tls_read(p.s, buf, sizeof(buf), &n), WEIR_TLS_CLOSED);
    assert_string_equal(weir_tls_reason(p.s), "peer sent close_notify");
    assert_int_equal(weir_tls_state(p.s), WEIR_TLS_SHUTDOWN);
    assert_int_equal(weir_tls_write(p.c, "late", 4, &n), WEIR_TLS_ERROR);
    /* The server answers with its own close_notify. */
    assert_int_equal(weir_tls_close(p.s), WEIR_TLS_DONE);
    assert_true(weir_tls_cipher_pending(p.s) > 0);
    flow(p.s, &p.s2c, p.c);
    assert_int_equal(weir_tls_read(p.c, buf, sizeof(buf), &n), WEIR_TLS_CLOSED);
    pair_free(&p);
    weir_tls_config_unref(scfg);
    weir_tls_config_unref(ccfg);
}

static void test_early_write_eof_and_limits(void **state)
{
    weir_tls_config_t *scfg = mesh_cfg(WEIR_TLS_SERVER, "server", "ca1");
    weir_tls_config_t *ccfg = mesh_cfg(WEIR_TLS_CLIENT, "client", "ca1");
    pair_t p;
    pair_new(&p, ccfg, scfg, NULL);

    /* Written before the handshake: queued (up to the limit), sent once it completes. */
    static const char req[] = "GET /early HTTP/1.1\r\n\r\n";
    size_t n;
    assert_int_equal(weir_tls_write(p.c, req, sizeof(req) - 1, &n), WEIR_TLS_DONE);
    assert_int_equal(n, sizeof(req) - 1);
    char *big = calloc(1, WEIR_TLS_EARLY_MAX);
    assert_int_equal(weir_tls_write(p.c, big, WEIR_TLS_EARLY_MAX, &n), WEIR_TLS_DONE);
    assert_int_equal(n, WEIR_TLS_EARLY_MAX - (sizeof(req) - 1));
    free(big);
    handshake_ok(&p);
    char buf[WEIR_TLS_EARLY_MAX];
    size_t got = 0;
    while (weir_tls_read(p.s, buf + got, sizeof(buf) - got, &n) == WEIR_TLS_DONE)
        got += n;
    assert_int_equal(got, WEIR_TLS_EARLY_MAX);
    assert_memory_equal(buf, req, sizeof(req) - 1);

    /* The transport's EOF without close_notify: CLOSED, and said so. */
    weir_tls_feed_eof(p.s);
    assert_int_equal(weir_tls_read(p.s, buf, sizeof(buf), &n), WEIR_TLS_CLOSED);
    assert_non_null(strstr(weir_tls_reason(p.s), "without close_notify"));
    assert_int_equal(weir_tls_feed_cipher(p.s, "x", 1), 0);
    pair_free(&p);

    /* Inbound ciphertext is capped at one record: the rest stays with the caller. */
    weir_tls_t *s = weir_tls_new(scfg, NULL, NULL, 0);
    unsigned char *junk = calloc(1, 100000);
    assert_int_equal(weir_tls_feed_cipher(s, junk, 100000), WEIR_TLS_INBOUND_MAX);
    assert_true(weir_tls_inbound_full(s));
    assert_int_equal(weir_tls_feed_cipher(s, junk, 100000), 0);
    free(junk);
    weir_tls_free(s);
    weir_tls_config_unref(scfg);
    weir_tls_config_unref(ccfg);
}

/* A stalled handshake stays HANDSHAKING (the proxy's timer then closes it); plaintext where a
 * ClientHello should be fails at once, without a crash. */
static void test_partial_hello_and_garbage(void **state)
{
    weir_tls_config_t *scfg = mesh_cfg(WEIR_TLS_SERVER, "server", "ca1");
    weir_tls_config_t *ccfg = mesh_cfg(WEIR_TLS_CLIENT, "client", "ca1");
    weir_tls_t *c = weir_tls_new(ccfg, NULL, NULL, 0);
    weir_tls_t *s = weir_tls_new(scfg, NULL, NULL, 0);
    assert_int_equal(weir_tls_handshake(c), WEIR_TLS_WANT_INPUT);
    weir_buf_t hello = WEIR_BUF_INIT;
    weir_tls_take_cipher(c, &hello);
    assert_true(hello.len > 50);
    assert_int_equal(weir_tls_looks_like_client_hello(hello.base, hello.len), 1);
    assert_int_equal(weir_tls_looks_like_client_hello(hello.base, 3), -1);
    assert_int_equal(weir_tls_feed_cipher(s, hello.base, 10), 10);
    assert_int_equal(weir_tls_handshake(s), WEIR_TLS_WANT_INPUT);
    assert_int_equal(weir_tls_state(s), WEIR_TLS_HANDSHAKING);
    unsigned steps = weir_tls_handshake_steps(s);
    assert_int_equal(weir_tls_handshake(s), WEIR_TLS_WANT_INPUT);
    assert_int_equal(weir_tls_handshake_steps(s), steps);
    weir_tls_feed_cipher(s, hello.base + 10, hello.len - 10);
    assert_int_equal(weir_tls_handshake(s), WEIR_TLS_WANT_INPUT);
    assert_true(weir_tls_handshake_steps(s) > steps);
    weir_buf_free(&hello);
    /* EOF in the middle of the handshake fails it. */
    weir_tls_feed_eof(c);
    assert_int_equal(weir_tls_handshake(c), WEIR_TLS_ERROR);
    assert_non_null(strstr(weir_tls_reason(c), "closed the connection during the handshake"));
    weir_tls_free(c);
    weir_tls_free(s);

    s = weir_tls_new(scfg, NULL, NULL, 0);
    static const char plain[] = "GET / HTTP/1.1\r\nHost: web\r\n\r\n";
    assert_int_equal(weir_tls_looks_like_client_hello(plain, sizeof(plain) - 1), 0);
    weir_tls_feed_cipher(s, plain, sizeof(plain) - 1);
    char buf[16];
    size_t n;
    assert_int_equal(weir_tls_read(s, buf, sizeof(buf), &n), WEIR_TLS_ERROR);
    assert_int_equal(weir_tls_state(s), WEIR_TLS_FAILED);
    assert_true(strlen(weir_tls_reason(s)) > 0);
    assert_int_equal(weir_tls_handshake(s), WEIR_TLS_ERROR);
    assert_int_equal(weir_tls_close(s), WEIR_TLS_ERROR);
    weir_tls_free(s);
    weir_tls_free(NULL);
    weir_tls_config_unref(scfg);
    weir_tls_config_unref(ccfg);
}

/* ---- refusals in the handshake ----------------------------------------------------------- */

/* The server (trusting ca1, trust domain cluster.local) refuses client `leaf`. */
static void server_refuses(const char *leaf, const char *why)
{
    weir_tls_config_t *scfg = mesh_cfg(WEIR_TLS_SERVER, "server", "ca1");
    weir_tls_config_t *ccfg = mesh_cfg(WEIR_TLS_CLIENT, leaf, "ca1");
    pair_t p;
    pair_new(&p, ccfg, scfg, NULL);
    handshake_refused(&p, true, why);
    pair_free(&p);
    weir_tls_config_unref(scfg);
    weir_tls_config_unref(ccfg);
}

static void client_refuses(const char *server_leaf, const char *why)
{
    weir_tls_config_t *scfg = mesh_cfg(WEIR_TLS_SERVER, server_leaf, "ca1");
    weir_tls_config_t *ccfg = mesh_cfg(WEIR_TLS_CLIENT, "client", "ca1");
    pair_t p;
    pair_new(&p, ccfg, scfg, NULL);
    handshake_refused(&p, false, why);
    pair_free(&p);
    weir_tls_config_unref(scfg);
    weir_tls_config_unref(ccfg);
}

static void test_refuse_other_ca(void **state)
{
    server_refuses("client-ca2",
                   "certificate verify failed: the certificate is not correctly signed by the "
                   "trusted CA");
    client_refuses("server-ca2", "not correctly signed by the trusted CA");
}

static void test_refuse_expired_and_future(void **state)
{
    server_refuses("client-expired", "certificate verify failed: the certificate validity has "
                                     "expired");
    server_refuses("client-future", "validity starts in the future");
}

static void test_refuse_wrong_trust_domain(void **state)
{
    weir_tls_config_t *scfg = mesh_cfg(WEIR_TLS_SERVER, "server", "ca1");
    weir_tls_config_t *ccfg = mesh_cfg(WEIR_TLS_CLIENT, "client-evil", "ca1");
    pair_t p;
    pair_new(&p, ccfg, scfg, NULL);
    handshake_refused(&p, true, "trust domain");
    assert_string_equal(weir_tls_reason(p.s),
                        "certificate verify failed: trust domain evil.example is not "
                        "cluster.local");
    /* The client learns it in the handshake, from the alert: no HTTP status involved. */
    assert_string_equal(weir_tls_reason(p.c), "peer sent fatal alert access_denied (49)");
    pair_free(&p);
    weir_tls_config_unref(scfg);
    weir_tls_config_unref(ccfg);
}

static void test_refuse_missing_client_cert(void **state)
{
    server_refuses(NULL, "peer sent no client certificate");
}

static void test_refuse_identity_shapes(void **state)
{
    server_refuses("client-nouri", "certificate has no URI SAN, so it has no identity");
    server_refuses("client-twouri", "certificate has more than one URI SAN");
    server_refuses("client-isca", "peer presented a CA certificate as its leaf");
    server_refuses("client-noeku", "extKeyUsage lacks clientAuth");
    /* mbedTLS itself accepts a certificate without extKeyUsage; the mesh does not. (One whose
     * extKeyUsage lacks serverAuth cannot even be configured: test_config_errors.) */
    client_refuses("server-noeku", "extKeyUsage lacks serverAuth");
}

/* Secure naming (DestinationRule subjectAltNames): the client names who it expects. */
static void test_expected_server_identity(void **state)
{
    weir_tls_config_t *scfg = mesh_cfg(WEIR_TLS_SERVER, "server-other", "ca1");
    weir_tls_config_t *ccfg = mesh_cfg(WEIR_TLS_CLIENT, "client", "ca1");
    const char *want[] = {SERVER_ID, "spiffe://cluster.local/ns/prod/sa/httpbin"};
    pair_t p;
    pair_new(&p, ccfg, scfg, MESH_SNI);
    assert_int_equal(weir_tls_expect_peer_ids(p.c, want, 2), 0);
    handshake_refused(&p, false,
                      "peer identity spiffe://cluster.local/ns/default/sa/other is not " SERVER_ID
                      " or the others expected");
    pair_free(&p);

    const char *ok[] = {"spiffe://cluster.local/ns/prod/sa/x",
                        "spiffe://cluster.local/ns/default/sa/other"};
    pair_new(&p, ccfg, scfg, MESH_SNI);
    assert_int_equal(weir_tls_expect_peer_ids(p.c, ok, 2), 0);
    handshake_ok(&p);
    assert_int_equal(weir_tls_expect_peer_ids(p.c, ok, 2), -1); /* too late */
    pair_free(&p);
    weir_tls_config_unref(scfg);
    weir_tls_config_unref(ccfg);
}

/* ---- raw mbedTLS peers that misbehave ---------------------------------------------------- */

typedef struct {
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    mbedtls_entropy_context ent;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt ca, cert;
    mbedtls_pk_context key;
    weir_buf_t in, out;
} raw_t;

static int raw_recv(void *ctx, unsigned char *buf, size_t len)
{
    raw_t *r = ctx;
    if (r->in.len == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    size_t n = len < r->in.len ? len : r->in.len;
    memcpy(buf, r->in.base, n);
    weir_buf_consume(&r->in, n);
    return (int)n;
}

static int raw_send(void *ctx, const unsigned char *buf, size_t len)
{
    raw_t *r = ctx;
    weir_buf_append(&r->out, buf, len);
    return (int)len;
}

/* A raw peer with `leaf`'s cert, trusting ca1, speaking TLS 1.max_minor at most. */
static void raw_init(raw_t *r, int endpoint, int max_minor, bool renegotiation, const char *leaf)
{
    memset(r, 0, sizeof(*r));
    mbedtls_ssl_config_init(&r->conf);
    mbedtls_ssl_init(&r->ssl);
    mbedtls_entropy_init(&r->ent);
    mbedtls_ctr_drbg_init(&r->drbg);
    mbedtls_x509_crt_init(&r->ca);
    mbedtls_x509_crt_init(&r->cert);
    mbedtls_pk_init(&r->key);
    assert_int_equal(mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->ent, NULL, 0), 0);
    assert_int_equal(mbedtls_ssl_config_defaults(&r->conf, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
                                                 MBEDTLS_SSL_PRESET_DEFAULT),
                     0);
    mbedtls_ssl_conf_rng(&r->conf, mbedtls_ctr_drbg_random, &r->drbg);
    mbedtls_ssl_conf_min_version(&r->conf, 3, 1);
    mbedtls_ssl_conf_max_version(&r->conf, 3, max_minor);
    mbedtls_ssl_conf_renegotiation(&r->conf, renegotiation ? MBEDTLS_SSL_RENEGOTIATION_ENABLED
                                                           : MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    assert_int_equal(mbedtls_x509_crt_parse_file(&r->ca, fx("ca1", "root-cert.pem")), 0);
    mbedtls_ssl_conf_ca_chain(&r->conf, &r->ca, NULL);
    mbedtls_ssl_conf_authmode(&r->conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
    assert_int_equal(mbedtls_x509_crt_parse_file(&r->cert, fx(leaf, "cert-chain.pem")), 0);
    assert_int_equal(mbedtls_pk_parse_keyfile(&r->key, fx(leaf, "key.pem"), NULL), 0);
    assert_int_equal(mbedtls_ssl_conf_own_cert(&r->conf, &r->cert, &r->key), 0);
    assert_int_equal(mbedtls_ssl_setup(&r->ssl, &r->conf), 0);
    mbedtls_ssl_set_bio(&r->ssl, r, raw_send, raw_recv, NULL);
}

static void raw_free(raw_t *r)
{
    mbedtls_ssl_free(&r->ssl);
    mbedtls_ssl_config_free(&r->conf);
    mbedtls_x509_crt_free(&r->ca);
    mbedtls_x509_crt_free(&r->cert);
    mbedtls_pk_free(&r->key);
    mbedtls_ctr_drbg_free(&r->drbg);
    mbedtls_entropy_free(&r->ent);
    weir_buf_free(&r->in);
    weir_buf_free(&r->out);
}

/* Moves bytes both ways between a raw peer and an engine; returns bytes moved. */
static size_t raw_flow(raw_t *r, weir_tls_t *t)
{
    size_t moved = 0;
    weir_buf_t w = WEIR_BUF_INIT;
    moved += weir_tls_take_cipher(t, &w);
    if (w.len)
        weir_buf_append(&r->in, w.base, w.len);
    weir_buf_free(&w);
    if (r->out.len) {
        size_t n = weir_tls_feed_cipher(t, r->out.base, r->out.len);
        weir_buf_consume(&r->out, n);
        moved += n;
    }
    return moved;
}

/* Runs both handshakes; returns the raw side's last mbedTLS result. */
static int raw_handshake(raw_t *r, weir_tls_t *t)
{
    int rc = 0;
    for (int i = 0; i < 64; i++) {
        rc = mbedtls_ssl_handshake(&r->ssl);
        weir_tls_handshake(t);
        size_t moved = raw_flow(r, t);
        weir_tls_handshake(t);
        moved += raw_flow(r, t);
        if (moved == 0 && rc != MBEDTLS_ERR_SSL_WANT_READ)
            break;
        if (moved == 0 && weir_tls_state(t) != WEIR_TLS_HANDSHAKING)
            break;
    }
    return rc;
}

/* A client certificate whose extKeyUsage lacks clientAuth: our client engine will not even
 * load it (test_config_errors), so a raw mbedTLS client presents it. */
static void test_refuse_server_only_client_cert(void **state)
{
    weir_tls_config_t *scfg = mesh_cfg(WEIR_TLS_SERVER, "server", "ca1");
    raw_t r;
    raw_init(&r, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_MINOR_VERSION_3, false, "client-serveronly");
    weir_tls_t *s = weir_tls_new(scfg, NULL, NULL, 0);
    int rc = raw_handshake(&r, s);
    assert_int_equal(weir_tls_state(s), WEIR_TLS_FAILED);
    assert_string_equal(weir_tls_reason(s), "certificate verify failed: peer certificate's "
                                            "extKeyUsage lacks clientAuth");
    assert_int_equal(rc, MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE);
    weir_tls_free(s);
    raw_free(&r);
    weir_tls_config_unref(scfg);
}

static void test_refuse_tls_1_1(void **state)
{
    /* A client that speaks at most TLS 1.1, against our server. */
    weir_tls_config_t *scfg = mesh_cfg(WEIR_TLS_SERVER, "server", "ca1");
    raw_t r;
    raw_init(&r, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_MINOR_VERSION_2, false, "client");
    weir_tls_t *s = weir_tls_new(scfg, NULL, NULL, 0);
    int rc = raw_handshake(&r, s);
    assert_int_equal(weir_tls_state(s), WEIR_TLS_FAILED);
    assert_non_null(strstr(weir_tls_reason(s), "not TLS 1.2"));
    assert_int_equal(rc, MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE);
    assert_int_equal(r.ssl.in_msg[1], MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION);
    weir_tls_free(s);
    raw_free(&r);
    weir_tls_config_unref(scfg);

    /* A server that speaks at most TLS 1.1, against our client. */
    weir_tls_config_t *ccfg = mesh_cfg(WEIR_TLS_CLIENT, "client", "ca1");
    raw_init(&r, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_MINOR_VERSION_2, false, "server");
    weir_tls_t *c = weir_tls_new(ccfg, NULL, NULL, 0);
    raw_handshake(&r, c);
    assert_int_equal(weir_tls_state(c), WEIR_TLS_FAILED);
    assert_true(strlen(weir_tls_reason(c)) > 0);
    weir_tls_free(c);
    raw_free(&r);
    weir_tls_config_unref(ccfg);
}

static void test_refuse_renegotiation(void **state)
{
    weir_tls_config_t *scfg = mesh_cfg(WEIR_TLS_SERVER, "server", "ca1");
    raw_t r;
    raw_init(&r, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_MINOR_VERSION_3, true, "client");
    weir_tls_t *s = weir_tls_new(scfg, NULL, NULL, 0);
    assert_int_equal(raw_handshake(&r, s), 0);
    assert_int_equal(weir_tls_state(s), WEIR_TLS_OPEN);
    assert_string_equal(weir_tls_peer_spiffe_id(s), CLIENT_ID);

    /* Application data first, then the client asks to renegotiate. */
    assert_int_equal(mbedtls_ssl_write(&r.ssl, (const unsigned char *)"ping", 4), 4);
    int rc = mbedtls_ssl_renegotiate(&r.ssl);
    assert_true(rc == MBEDTLS_ERR_SSL_WANT_READ || rc == 0);
    raw_flow(&r, s);
    char buf[64];
    size_t n;
    assert_int_equal(weir_tls_read(s, buf, sizeof(buf), &n), WEIR_TLS_DONE);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(weir_tls_read(s, buf, sizeof(buf), &n), WEIR_TLS_ERROR);
    assert_string_equal(weir_tls_reason(s), "peer asked to renegotiate (refused)");
    assert_int_equal(weir_tls_state(s), WEIR_TLS_FAILED);
    /* mbedTLS answered with its no_renegotiation warning before we gave up. */
    assert_true(weir_tls_cipher_pending(s) > 0);
    raw_flow(&r, s);
    rc = mbedtls_ssl_renegotiate(&r.ssl);
    assert_true(rc != 0);
    weir_tls_free(s);
    raw_free(&r);

    /* Other connections on the same config are unaffected. */
    weir_tls_config_t *ccfg = mesh_cfg(WEIR_TLS_CLIENT, "client", "ca1");
    pair_t p;
    pair_new(&p, ccfg, scfg, NULL);
    handshake_ok(&p);
    send_recv(p.c, &p.c2s, p.s, "still fine");
    pair_free(&p);

    /* A server that asks our client to renegotiate (HelloRequest) is refused too. */
    raw_init(&r, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_MINOR_VERSION_3, true, "server");
    weir_tls_t *c = weir_tls_new(ccfg, NULL, NULL, 0);
    assert_int_equal(raw_handshake(&r, c), 0);
    assert_int_equal(weir_tls_state(c), WEIR_TLS_OPEN);
    rc = mbedtls_ssl_renegotiate(&r.ssl);
    assert_true(rc == MBEDTLS_ERR_SSL_WANT_READ || rc == 0);
    raw_flow(&r, c);
    assert_int_equal(weir_tls_read(c, buf, sizeof(buf), &n), WEIR_TLS_ERROR);
    assert_string_equal(weir_tls_reason(c), "peer asked to renegotiate (refused)");
    weir_tls_free(c);
    raw_free(&r);
    weir_tls_config_unref(ccfg);
    weir_tls_config_unref(scfg);
}

/* ---- OpenSSL as the client, over loopback TCP -------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Serves one `openssl s_client` run (extra_args appended) with our server engine: reads what
 * it sends, answers "world\n" to "hello\n", then close_notify. Returns the engine, left for
 * the caller to inspect and free; *out gets s_client's output. */
static weir_tls_t *serve_openssl(weir_tls_config_t *scfg, const char *extra_args, char *out,
                                 size_t outlen)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    socklen_t alen = sizeof(addr);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&addr, &alen), 0);
    assert_int_equal(listen(lfd, 1), 0);

    char outfile[300], cmd[2048];
    snprintf(outfile, sizeof(outfile), "%s/s_client.out", tmpdir);
    snprintf(cmd, sizeof(cmd),
             "exec openssl s_client -connect 127.0.0.1:%d -quiet -verify_return_error "
             "-CAfile %s -cert %s -key %s %s >%s 2>&1",
             ntohs(addr.sin_port), fx("ca1", "root-cert.pem"), fx("client", "cert-chain.pem"),
             fx("client", "key.pem"), extra_args, outfile);
    int in[2];
    assert_int_equal(pipe(in), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        close(in[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    assert_int_equal(write(in[1], "hello\n", 6), 6);

    weir_tls_t *t = weir_tls_new(scfg, NULL, NULL, 0);
    double deadline = now_s() + 10;
    struct pollfd pl = {.fd = lfd, .events = POLLIN};
    int fd = -1;
    if (poll(&pl, 1, 10000) == 1)
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    char got[64] = "";
    size_t got_len = 0;
    bool replied = false, peer_gone = false;
    while (fd >= 0 && now_s() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (!peer_gone && poll(&p, 1, 50) == 1) {
            unsigned char buf[16384];
            ssize_t n = read(fd, buf, sizeof(buf));
            if (n <= 0) {
                weir_tls_feed_eof(t);
                peer_gone = true;
            }
            for (size_t off = 0; n > 0 && off < (size_t)n;) {
                off += weir_tls_feed_cipher(t, buf + off, (size_t)n - off);
                size_t m;
                while (got_len < sizeof(got) - 1 &&
                       weir_tls_read(t, got + got_len, sizeof(got) - 1 - got_len, &m) ==
                           WEIR_TLS_DONE)
                    got_len += m;
                if (weir_tls_state(t) == WEIR_TLS_FAILED)
                    break;
            }
        }
        weir_tls_handshake(t);
        got[got_len] = '\0';
        if (!replied && strstr(got, "hello\n") != NULL) {
            size_t m;
            assert_int_equal(weir_tls_write(t, "world\n", 6, &m), WEIR_TLS_DONE);
            weir_tls_close(t);
            replied = true;
        }
        weir_buf_t w = WEIR_BUF_INIT;
        weir_tls_take_cipher(t, &w);
        for (size_t off = 0; off < w.len;) {
            ssize_t n = write(fd, w.base + off, w.len - off);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        weir_buf_free(&w);
        if (replied || weir_tls_state(t) == WEIR_TLS_FAILED || peer_gone)
            break;
    }
    if (fd >= 0)
        close(fd);
    close(lfd);
    close(in[1]);
    int status;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (now_s() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        usleep(10000);
    }
    FILE *f = fopen(outfile, "r");
    size_t n = f ? fread(out, 1, outlen - 1, f) : 0;
    out[n] = '\0';
    if (f)
        fclose(f);
    return t;
}

static void test_openssl_client_interop(void **state)
{
    weir_tls_config_t *scfg = mesh_cfg(WEIR_TLS_SERVER, "server", "ca1");
    char out[8192];
    /* OpenSSL verifies our chain (empty subject, critical URI SAN) and presents its cert. */
    weir_tls_t *t = serve_openssl(scfg, "-tls1_2", out, sizeof(out));
    if (weir_tls_state(t) != WEIR_TLS_SHUTDOWN || strstr(out, "world") == NULL)
        fail_msg("engine: state %d \"%s\"; s_client said:\n%s", weir_tls_state(t),
                 weir_tls_reason(t), out);
    assert_string_equal(weir_tls_peer_spiffe_id(t), CLIENT_ID);
    weir_tls_free(t);

    /* A TLS 1.1 ClientHello from OpenSSL is refused in the handshake. */
    t = serve_openssl(scfg, "-tls1_1 -cipher DEFAULT@SECLEVEL=0", out, sizeof(out));
    if (weir_tls_state(t) != WEIR_TLS_FAILED || strstr(weir_tls_reason(t), "TLS 1.2") == NULL)
        fail_msg("engine: state %d \"%s\"; s_client said:\n%s", weir_tls_state(t),
                 weir_tls_reason(t), out);
    assert_null(strstr(out, "world"));
    weir_tls_free(t);
    weir_tls_config_unref(scfg);
}

/* ---- configuration errors ---------------------------------------------------------------- */

static void expect_config_error(const weir_tls_options_t *o, const char *why)
{
    char err[512] = "";
    weir_tls_config_t *c = weir_tls_config_new(o, err, sizeof(err));
    if (c != NULL || strstr(err, why) == NULL)
        fail_msg("want a config error with \"%s\", got \"%s\"", why, err);
}

static void test_config_errors(void **state)
{
    char junk[300], rsa[300];
    snprintf(junk, sizeof(junk), "%s/junk.pem", tmpdir);
    write_text(junk, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
    snprintf(rsa, sizeof(rsa), "%s/rsa-key.pem", tmpdir);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out %s 2>/dev/null",
             rsa);
    assert_int_equal(system(cmd), 0);

    weir_tls_options_t o = {
        .role = WEIR_TLS_SERVER,
        .root_pem_path = fx("ca1", "root-cert.pem"),
        .chain_pem_path = fx("server", "cert-chain.pem"),
        .key_pem_path = fx("server", "key.pem"),
        .trust_domain = TD,
    };
    weir_tls_options_t b = o;
    b.root_pem_path = fx("nowhere", "root-cert.pem");
    expect_config_error(&b, "No such file or directory");
    b = o;
    b.root_pem_path = junk;
    expect_config_error(&b, "junk.pem");
    b = o;
    b.key_pem_path = fx("client", "key.pem");
    expect_config_error(&b, "does not match the certificate");
    b = o;
    b.chain_pem_path = fx("server-clientonly", "cert-chain.pem");
    b.key_pem_path = fx("server-clientonly", "key.pem");
    expect_config_error(&b, "extKeyUsage lacks serverAuth");
    b = o;
    b.role = WEIR_TLS_CLIENT;
    b.chain_pem_path = fx("client-serveronly", "cert-chain.pem");
    b.key_pem_path = fx("client-serveronly", "key.pem");
    expect_config_error(&b, "extKeyUsage lacks clientAuth");
    b = o;
    b.key_pem_path = rsa;
    expect_config_error(&b, "not an EC key");
    b = o;
    b.key_pem_path = junk;
    expect_config_error(&b, "not a PEM private key");
    b = o;
    b.chain_pem_path = b.key_pem_path = NULL;
    expect_config_error(&b, "needs a certificate chain");
    b = o;
    b.key_pem_path = NULL;
    expect_config_error(&b, "needs its key");
    b = o;
    b.root_pem_path = NULL;
    expect_config_error(&b, "root certificate");
    b = o;
    b.trust_domain = "Not/Valid";
    expect_config_error(&b, "invalid trust domain");
    b = o;
    static const char *const bad_alpn[] = {"", NULL};
    b.alpn = bad_alpn;
    expect_config_error(&b, "ALPN");
    b = o;
    b.role = (weir_tls_role_t)7;
    expect_config_error(&b, "role");

    /* Refcounting: a connection keeps its config alive after the owner lets go. */
    weir_tls_config_t *c = weir_tls_config_new(&o, NULL, 0);
    assert_non_null(c);
    weir_tls_t *t = weir_tls_new(c, NULL, NULL, 0);
    weir_tls_config_unref(c);
    assert_int_equal(weir_tls_handshake(t), WEIR_TLS_WANT_INPUT);
    weir_tls_free(t);
    weir_tls_config_unref(NULL);
}

/* ---- memory per idle connection ---------------------------------------------------------- */

static size_t heap_in_use(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks;
#endif
}

#define N_IDLE 100

static void test_idle_memory(void **state)
{
    weir_tls_config_t *scfg = mesh_cfg(WEIR_TLS_SERVER, "server", "ca1");
    weir_tls_config_t *ccfg = mesh_cfg(WEIR_TLS_CLIENT, "client", "ca1");
    static pair_t pairs[N_IDLE];
    /* Warm up once so lazily-allocated library state is not counted. */
    pair_new(&pairs[0], ccfg, scfg, MESH_SNI);
    handshake_ok(&pairs[0]);
    pair_free(&pairs[0]);

    size_t before = heap_in_use();
    for (int i = 0; i < N_IDLE; i++) {
        pair_new(&pairs[i], ccfg, scfg, MESH_SNI);
        handshake_ok(&pairs[i]);
        /* The wires are the test's sockets, not the engine's memory. */
        weir_buf_free(&pairs[i].c2s);
        weir_buf_free(&pairs[i].s2c);
    }
    size_t all = heap_in_use();
    for (int i = 0; i < N_IDLE; i++) {
        weir_tls_free(pairs[i].c);
        pairs[i].c = NULL;
    }
    size_t servers_only = heap_in_use();
    for (int i = 0; i < N_IDLE; i++) {
        weir_tls_free(pairs[i].s);
        pairs[i].s = NULL;
    }
    size_t after = heap_in_use();

    size_t client = (all - servers_only) / N_IDLE, server = (servers_only - after) / N_IDLE;
    size_t mean = (all - before) / (2 * N_IDLE);
    printf("idle TLS connection after the handshake (%s): client %zu B, server %zu B, "
           "mean %zu B (%.1f KiB); mbedTLS record buffers alone: 2 x %d B\n",
#if defined(__SANITIZE_ADDRESS__)
           "ASan allocator, requested bytes",
#else
           "glibc mallinfo2, with chunk overhead",
#endif
           client, server, mean, mean / 1024.0, 16717);
#if defined(__SANITIZE_ADDRESS__)
    assert_true(after <= before + 1024); /* everything came back */
#else
    assert_true(after <= before + 64 * 1024); /* glibc's tcache keeps some freed chunks */
#endif
    assert_true(client <= 40 * 1024);
    assert_true(server <= 40 * 1024);
    weir_tls_config_unref(scfg);
    weir_tls_config_unref(ccfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mutual_handshake_and_identities),
        cmocka_unit_test(test_alpn_negotiated),
        cmocka_unit_test(test_simple_server_without_client_cert),
        cmocka_unit_test(test_plain_tls_client_checks_hostname),
        cmocka_unit_test(test_session_resumption),
        cmocka_unit_test(test_one_mib_both_ways),
        cmocka_unit_test(test_early_write_eof_and_limits),
        cmocka_unit_test(test_partial_hello_and_garbage),
        cmocka_unit_test(test_refuse_other_ca),
        cmocka_unit_test(test_refuse_expired_and_future),
        cmocka_unit_test(test_refuse_wrong_trust_domain),
        cmocka_unit_test(test_refuse_missing_client_cert),
        cmocka_unit_test(test_refuse_identity_shapes),
        cmocka_unit_test(test_expected_server_identity),
        cmocka_unit_test(test_refuse_server_only_client_cert),
        cmocka_unit_test(test_refuse_tls_1_1),
        cmocka_unit_test(test_refuse_renegotiation),
        cmocka_unit_test(test_openssl_client_interop),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_idle_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
