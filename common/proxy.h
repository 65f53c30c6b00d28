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
#include <sys/socket.h>
#include <uv.h>

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
    /* Where inbound connections to the app come from, so iptables does not capture them
     * again (Istio's 127.0.0.6). */
    const char *inbound_source_address;
    /* Mirrored requests carry "<authority>-shadow" as their Host, as Envoy (and Istio up to
     * 1.27) do, so a shadow's requests can be told apart; false keeps the Host (Istio 1.28+). */
    bool shadow_host_suffix;
} weir_proxy_options_t;

/* Defaults as Envoy under Istio: idle 1 h, stream idle 5 min, connect 10 s; headers 60 s;
 * the -shadow suffix on. */
void weir_proxy_options_default(weir_proxy_options_t *o);

/* Sets the options every listener uses. Call before the first listen. */
void weir_proxy_init(const weir_proxy_options_t *o);

typedef enum {
    /* Routes by the snapshot's listener for this port (Gateway servers). */
    WEIR_LISTENER_GATEWAY,
    /* A sidecar's outbound capture (15001): the original destination's port selects the
     * outbound routes; a port no service uses, or a Host no route knows, goes to the original
     * destination unchanged (Istio's ALLOW_ANY passthrough), as plain TCP or HTTP. */
    WEIR_LISTENER_OUTBOUND,
    /* A sidecar's inbound capture (15006): every request goes to the app on
     * 127.0.0.1:<original port>, connecting from inbound_source_address. */
    WEIR_LISTENER_INBOUND
} weir_listener_kind_t;

/* Recovers where a redirected connection was going (SO_ORIGINAL_DST). 0 or a negative errno. */
typedef int (*weir_original_dst_fn)(uv_tcp_t *accepted, struct sockaddr_storage *out);

typedef struct {
    weir_listener_kind_t kind;
    weir_original_dst_fn original_dst; /* required for OUTBOUND and INBOUND */
    /* The sidecar's other capture port: a connection whose original port is this listener's
     * or this one was aimed at the proxy itself, and relaying it would loop. */
    uint32_t other_capture_port;
} weir_listener_opts_t;

/* Starts accepting on bind:port. Returns 0 or a negative UV error. */
int weir_proxy_listen(const char *bind, uint32_t port, const weir_listener_opts_t *opts);

/* The ports weir listens on now (at most max of them); returns how many. */
size_t weir_proxy_listener_ports(uint32_t *out, size_t max);
/* Stops accepting on one port (a Gateway server that a reload removed). */
void weir_proxy_close_listener(uint32_t port);

/* Stops accepting on every listener (their handles close asynchronously). */
void weir_proxy_close_listeners(void);

/* Closes every downstream connection with no request in flight, and marks the others to
 * close once their exchange is done (for a clean shutdown). */
void weir_proxy_close_idle(void);

/* Draining (SIGTERM, /drain_listeners): listeners close, idle connections close, every later
 * response carries Connection: close. In-flight requests finish. */
void weir_proxy_drain(void);
bool weir_proxy_draining(void);
/* Requests in flight now. */
size_t weir_proxy_active_requests(void);

struct weir_metrics_peer;
/* This proxy's own labels for Istio's metrics (source at a gateway or client sidecar,
 * destination at a server sidecar). Until set, no metrics are recorded. */
void weir_proxy_set_metrics_identity(const struct weir_metrics_peer *self);

#endif
