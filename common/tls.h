/* common/tls.h: the TLS engine, mbedTLS 2.28 over memory buffers.
 *
 * No sockets and no libuv here: the connection owns the socket and moves bytes. Ciphertext from
 * the network goes in with weir_tls_feed_cipher(); ciphertext to send comes out with
 * weir_tls_take_cipher(); plaintext goes through weir_tls_read() / weir_tls_write(). Every call
 * may produce ciphertext (handshake flights, alerts, close_notify), so the caller drains it
 * after each one. A typical read callback:
 *
 *     size_t off = 0;
 *     while (off < nread) {
 *         off += weir_tls_feed_cipher(t, buf + off, nread - off);   // may take only a part
 *         while ((st = weir_tls_read(t, plain, sizeof plain, &n)) == WEIR_TLS_DONE)
 *             deliver(plain, n);                                     // or stop when full
 *         if (st == WEIR_TLS_ERROR || st == WEIR_TLS_CLOSED) break;
 *         if (off < nread && weir_tls_inbound_full(t)) { keep the rest; uv_read_stop(); }
 *     }
 *     weir_tls_take_cipher(t, &out); if (out.len) uv_write(out) ...
 *
 * Policy (hardening.md 3, istio-semantics.md 3.5 and 4): TLS 1.2 only (minimum and maximum);
 * ECDHE-ECDSA-AES128-GCM-SHA256 and ECDHE-ECDSA-AES256-GCM-SHA384 only; renegotiation refused
 * (and a peer that asks fails the connection, as HAProxy and BoringSSL do); the peer's chain
 * must lead to the configured root; when a trust domain is configured, a verify callback
 * inside the handshake (so the peer sees an alert, not an HTTP error) requires the leaf to
 * carry exactly one URI SAN, a SPIFFE ID in that trust domain, not to be a CA, and to have an
 * extKeyUsage with clientAuth (a client's cert) or serverAuth (a server's). In that mesh mode
 * the SNI is routing information only (Istio's "outbound_.80_.v1_.host"), never checked
 * against the server's names: identity is the SPIFFE ID. Session resumption: servers issue
 * session tickets; clients save a session after a handshake and offer it to the same peer.
 *
 * Memory: mbedTLS 2.28 as Debian builds it allocates 16 KiB record buffers each way per
 * connection (2 x 16717 bytes). The engine keeps nothing else per idle connection: its inbound
 * and outbound buffers are released when empty and mbedTLS frees the handshake state when the
 * handshake ends. An idle mTLS connection costs about 38 KiB in all (test_idle_memory: 37.3
 * KiB requested, 37.6 KiB with glibc's chunk overhead); beyond the record buffers the largest
 * parts are the peer's parsed certificate (about 2 KiB, kept for the SPIFFE ID, the XFCC hash
 * and client session reuse), the AES-GCM contexts (about 1.2 KiB) and the ssl context itself.
 *
 * Failures in the handshake: the peer gets an alert (a bad chain: unknown_ca,
 * certificate_expired ...; a mesh rule from the verify callback: access_denied, which is how
 * mbedTLS 2.28 answers MBEDTLS_X509_BADCERT_OTHER; no client certificate: handshake_failure).
 * After WEIR_TLS_ERROR send what weir_tls_take_cipher() gives, then close. The handshake
 * timeout is the caller's: a timer that finds weir_tls_state() still HANDSHAKING closes.
 *
 * Ownership: a weir_tls_config_t is refcounted and immutable once built; each weir_tls_t holds
 * a reference, so a new config (certificate rotation) can replace an old one while connections
 * made with the old one carry on. Single-threaded: a config and its connections belong to one
 * loop thread (they share one random generator). */
#ifndef WEIR_TLS_H
#define WEIR_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/mem.h"

typedef enum { WEIR_TLS_SERVER, WEIR_TLS_CLIENT } weir_tls_role_t;

/* Results of the engine's calls. */
typedef enum {
    WEIR_TLS_ERROR = -1,     /* fatal: weir_tls_reason() says why. Send what
                              * weir_tls_take_cipher() gives (often an alert), then close. */
    WEIR_TLS_DONE = 0,       /* the call did its work (handshake complete, bytes moved) */
    WEIR_TLS_WANT_INPUT = 1, /* nothing more until more ciphertext is fed */
    WEIR_TLS_CLOSED = 2,     /* the peer closed: close_notify, or EOF (weir_tls_feed_eof) */
} weir_tls_status_t;

typedef enum {
    WEIR_TLS_HANDSHAKING, /* the handshake has not finished: the caller's timeout applies */
    WEIR_TLS_OPEN,        /* application data flows */
    WEIR_TLS_SHUTDOWN,    /* we sent close_notify, or the peer did: no more plaintext */
    WEIR_TLS_FAILED,      /* a fatal error */
} weir_tls_state_t;

/* Limits. The inbound cap is one maximal TLS record (RFC 5246: 5 + 2^14 + 2048) so a fast
 * peer cannot make us buffer more than that per connection; the outbound high-water mark
 * bounds what weir_tls_write() encrypts ahead of the caller draining it. */
#define WEIR_TLS_INBOUND_MAX (5 + 16384 + 2048)
#define WEIR_TLS_OUTBOUND_HIGH (64 * 1024)
#define WEIR_TLS_EARLY_MAX (16 * 1024) /* plaintext queued before the handshake completes */

/* ---- configuration ----------------------------------------------------------------------- */

typedef struct weir_tls_config weir_tls_config_t;
typedef struct weir_tls weir_tls_t;

/* How to build a config. Zero values are the mesh defaults. Paths are read at build time. */
typedef struct {
    weir_tls_role_t role;
    const char *root_pem_path;  /* trust anchors for the peer's chain; required unless a
                                 * server with no_client_cert */
    const char *chain_pem_path; /* own chain, leaf first; required for a server, optional for
                                 * a client (without one the client presents no cert) */
    const char *key_pem_path;   /* own private key (ECDSA: the ciphersuites are ECDSA only) */
    const char *trust_domain;   /* mesh mode: the peer's leaf must carry exactly one SPIFFE ID
                                 * in this trust domain (see above). NULL: plain TLS, the peer's
                                 * chain is verified and a client checks the SNI as hostname. */
    bool no_client_cert;        /* server: SIMPLE TLS, no client certificate requested */
    const char *const *alpn;    /* NULL-terminated protocol list, or NULL for no ALPN. Copied.
                                 * mbedTLS servers fail a handshake whose client offers ALPN
                                 * with no overlap, so list every protocol clients may offer. */
    uint32_t ticket_lifetime_s; /* server: session ticket lifetime [7200]; the ticket keys
                                 * belong to the config, so a new config starts new tickets */
    bool no_session_tickets;    /* server: issue none; client: offer none */
    unsigned max_verify_depth;  /* deepest peer certificate index allowed (leaf is 0); 0: the
                                 * default, 3 (leaf, two intermediates, root) */
} weir_tls_options_t;

/* ALPN the mesh uses between proxies (istio-semantics.md 3.5). NULL-terminated. */
extern const char *const weir_tls_istio_alpn[];

/* Builds a config. Returns it with one reference, or NULL with a message in err ("cert-chain.pem:
 * the key does not match the certificate"). Never aborts on bad input files. */
weir_tls_config_t *weir_tls_config_new(const weir_tls_options_t *opts, char *err, size_t errlen);

/* The mesh config from Istio's files: mTLS both ways, peers in trust_domain. For a client,
 * ALPN offers istio-peer-exchange and istio. */
weir_tls_config_t *weir_tls_config_from_files(weir_tls_role_t role, const char *root_pem_path,
                                              const char *chain_pem_path, const char *key_pem_path,
                                              const char *trust_domain, char *err, size_t errlen);

weir_tls_config_t *weir_tls_config_ref(weir_tls_config_t *c);
void weir_tls_config_unref(weir_tls_config_t *c); /* NULL is fine */

/* The SPIFFE ID in the config's own leaf (NULL if it has none): what XFCC calls By. */
const char *weir_tls_config_own_id(const weir_tls_config_t *c);

/* ---- connections ------------------------------------------------------------------------- */

/* A connection in its handshake state. sni: the server name a client sends (copied; NULL for
 * none); ignored by servers. Returns NULL with a message in err only if mbedTLS cannot set up
 * (allocation). The connection holds a reference on cfg. */
weir_tls_t *weir_tls_new(weir_tls_config_t *cfg, const char *sni, char *err, size_t errlen);
void weir_tls_free(weir_tls_t *t); /* NULL is fine; sends nothing (call weir_tls_close first) */

/* Client, before the handshake: the peer's SPIFFE ID must be one of ids (Istio's secure naming,
 * DestinationRule subjectAltNames), checked in the handshake. Copied. Returns 0, or -1 when
 * called too late. */
int weir_tls_expect_peer_ids(weir_tls_t *t, const char *const *ids, size_t n);

/* Ciphertext received from the network. Takes as much as fits under WEIR_TLS_INBOUND_MAX and
 * returns how much; the caller keeps the rest and offers it again after reading. */
size_t weir_tls_feed_cipher(weir_tls_t *t, const void *data, size_t len);
/* Whether the inbound buffer is full, so feeding more now would take nothing. */
bool weir_tls_inbound_full(const weir_tls_t *t);
/* The transport reached EOF: after what was fed, there is nothing more. */
void weir_tls_feed_eof(weir_tls_t *t);

/* Advances the handshake. DONE once established (and on every later call); WANT_INPUT; ERROR.
 * A client calls it once after connecting to produce its ClientHello. */
weir_tls_status_t weir_tls_handshake(weir_tls_t *t);

/* Reads decrypted plaintext into buf (drives the handshake first if needed). DONE with
 * *nread > 0; WANT_INPUT when no plaintext is available; CLOSED once the peer closed; ERROR. */
weir_tls_status_t weir_tls_read(weir_tls_t *t, void *buf, size_t cap, size_t *nread);

/* Encrypts plaintext. *consumed (may be less than len) says how much was taken: the engine
 * stops when WEIR_TLS_OUTBOUND_HIGH ciphertext waits to be drained. Before the handshake ends
 * up to WEIR_TLS_EARLY_MAX bytes are queued and sent when it does. DONE or ERROR. */
weir_tls_status_t weir_tls_write(weir_tls_t *t, const void *data, size_t len, size_t *consumed);

/* Moves all pending ciphertext to dst: when dst is empty the buffer itself is handed over
 * (no copy); otherwise it is appended. Returns the number of bytes moved. */
size_t weir_tls_take_cipher(weir_tls_t *t, weir_buf_t *dst);
size_t weir_tls_cipher_pending(const weir_tls_t *t);

/* Sends close_notify (take the ciphertext and send it, then close or shut down the socket).
 * Later writes fail. DONE, or ERROR if the connection had already failed. */
weir_tls_status_t weir_tls_close(weir_tls_t *t);

/* ---- what the connection knows ----------------------------------------------------------- */

weir_tls_state_t weir_tls_state(const weir_tls_t *t);
/* Handshake messages processed so far (mbedTLS handshake steps): the proxy's handshake timer
 * can tell a stalled peer from a slow one. */
unsigned weir_tls_handshake_steps(const weir_tls_t *t);
/* Why the connection failed (or closed), e.g. "certificate verify failed: trust domain
 * evil.example is not cluster.local". "" while all is well. Owned by t. */
const char *weir_tls_reason(const weir_tls_t *t);

/* After the handshake: the peer's verified SPIFFE ID, or NULL (no peer cert, or plain TLS with
 * no URI SAN). Owned by t. */
const char *weir_tls_peer_spiffe_id(const weir_tls_t *t);
/* SHA-256 of the peer's leaf certificate DER (XFCC Hash). Returns 0, or -1 without a peer cert.
 * hex gets 64 lowercase hex digits and a NUL when not NULL. */
int weir_tls_peer_cert_sha256(const weir_tls_t *t, unsigned char out[32], char hex[65]);
bool weir_tls_resumed(const weir_tls_t *t);
const char *weir_tls_alpn(const weir_tls_t *t);        /* negotiated protocol or NULL */
const char *weir_tls_sni(const weir_tls_t *t);         /* server: the name the client sent */
const char *weir_tls_ciphersuite(const weir_tls_t *t); /* e.g. "TLS-ECDHE-ECDSA-WITH-AES-..." */
const char *weir_tls_version(const weir_tls_t *t);     /* "TLSv1.2" */

/* ---- client session reuse ---------------------------------------------------------------- */

/* A saved client session: the session ticket (or id) and what the first handshake verified.
 * Owned by whoever holds it; any number of connections may be offered the same one. */
typedef struct weir_tls_session weir_tls_session_t;

/* Client, after the handshake: a copy of the session to offer the same peer next time, or
 * NULL (server side, no handshake yet, or allocation failure). */
weir_tls_session_t *weir_tls_session_save(const weir_tls_t *t);
/* Client, before the handshake: offer s. If the server accepts, weir_tls_resumed() is true and
 * the identity checks run again on the certificate the session remembers. Returns 0 or -1. */
int weir_tls_session_offer(weir_tls_t *t, const weir_tls_session_t *s);
void weir_tls_session_free(weir_tls_session_t *s); /* NULL is fine */

/* ---- plaintext-or-TLS sniffing (PERMISSIVE ports, Gateway PASSTHROUGH) ------------------- */

/* Whether the first bytes of a connection are a TLS ClientHello record: 1 yes, 0 no, -1 too
 * few bytes to tell (6 are enough). */
int weir_tls_looks_like_client_hello(const void *data, size_t len);

#endif
