/* common/sni.h: the server name in a TLS ClientHello, read without terminating TLS.
 *
 * A gateway picks the server (and its certificate) for a terminated port, and the destination
 * for a PASSTHROUGH port, by the name the client asked for, before any TLS library sees the
 * connection (Envoy's tls_inspector). Pure: bytes in, answer out, nothing kept. */
#ifndef WEIR_SNI_H
#define WEIR_SNI_H

#include <stddef.h>

typedef enum {
    WEIR_SNI_FOUND = 1,    /* the name is in out (NUL-terminated, lower case) */
    WEIR_SNI_NONE = 0,     /* a complete ClientHello without server_name */
    WEIR_SNI_NEED_MORE = -1, /* a ClientHello so far, but cut short: feed more bytes */
    WEIR_SNI_NOT_TLS = -2  /* not a TLS handshake record, or a malformed ClientHello */
} weir_sni_result_t;

/* The largest ClientHello weir waits for: one full TLS record. */
#define WEIR_SNI_MAX_HELLO (5 + 16384)

/* Reads the host_name entry of the server_name extension from the first bytes of a
 * connection. out gets at most outlen-1 bytes; a longer name is NOT_TLS (DNS names are at
 * most 253 bytes). Only the first record is read: a ClientHello split over several records
 * is reported as NONE (clients do not do that with names small enough to route by). */
weir_sni_result_t weir_sni_parse(const unsigned char *data, size_t len, char *out, size_t outlen);

#endif
