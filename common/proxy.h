/* common/proxy.h: the HTTP/1.1 proxy path shared by both roles.
 *
 * A listener accepts downstream connections; each request on them is routed with the
 * listener's route table in the current snapshot, sent to an endpoint over a pooled upstream
 * connection, and its response relayed back. Bodies stream both ways and never wait in
 * memory beyond a few buffers: reading from one side stops while the other side's write queue
 * is above WEIR_PROXY_HIGH_WATERMARK and resumes below the low watermark.
 *
 * Locally answered requests follow Envoy: 404 (NR) when no route matches, 503 (UH) when the
 * cluster has no endpoint, 503 (UF) when the connect fails, 503 (UC) when the upstream closes
 * before answering, 502 (UPE) for a malformed response, 400/413/414/431/501 for malformed
 * requests (with Connection: close, never forwarded). Each request gets one access-log line.
 *
 * Ownership: connections and requests are owned by this module and freed in their libuv close
 * callbacks. Loop thread only. */
#ifndef WEIR_PROXY_H
#define WEIR_PROXY_H

#include <stdbool.h>
#include <stdint.h>

#define WEIR_PROXY_HIGH_WATERMARK (256 * 1024)
#define WEIR_PROXY_LOW_WATERMARK (64 * 1024)

typedef struct {
    /* Edge proxies (the gateway) append the client address to x-forwarded-for, as Envoy does
     * with use_remote_address. */
    bool use_remote_address;
    /* Whole request head must arrive within this (408 otherwise); 0 disables. */
    uint64_t request_headers_timeout_ms;
    /* A keep-alive connection with no request in flight closes after this; 0 disables. */
    uint64_t idle_timeout_ms;
    /* A request with no activity either way for this long ends (408, or a reset once the
     * response has started); 0 disables. */
    uint64_t stream_idle_timeout_ms;
    /* Upstream connect attempts fail (503 UF) after this. */
    uint64_t connect_timeout_ms;
    /* The `server` header put on responses ("istio-envoy" as Istio's gateway does). */
    const char *server_name;
} weir_proxy_options_t;

/* Defaults as Envoy under Istio: idle 1 h, stream idle 5 min, connect 10 s; headers 60 s. */
void weir_proxy_options_default(weir_proxy_options_t *o);

/* Sets the options every listener uses. Call before the first listen. */
void weir_proxy_init(const weir_proxy_options_t *o);

/* Starts accepting on bind:port. Returns 0 or a negative UV error. */
int weir_proxy_listen(const char *bind, uint32_t port);

/* Stops accepting on every listener (their handles close asynchronously). */
void weir_proxy_close_listeners(void);

/* Closes every downstream connection with no request in flight, and marks the others to
 * close once their exchange is done (for a clean shutdown). */
void weir_proxy_close_idle(void);

#endif
