/* common/metrics.h: Istio's standard request metrics, as Istio's Envoy reports them
 * (istio-semantics.md 6.6), and their Prometheus text.
 *
 * Every request is counted once by the proxy that saw it, with reporter "source" at the
 * gateway and at the client's sidecar, "destination" at the server's sidecar; requests weir
 * answers itself (404 NR, 503 UO ...) count too. A series is one combination of labels; the
 * peers' labels are interned once (weir_metrics_peer), so recording a request compares
 * pointers and small integers, and formats nothing.
 *
 * Loop thread only. Series and peers live for the process. */
#ifndef WEIR_METRICS_H
#define WEIR_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/mem.h"

/* One side of a request as Istio labels it; "unknown" where nothing is known. */
typedef struct weir_metrics_peer weir_metrics_peer_t;

/* The interned peer for these labels (NULL or "" become "unknown"; canonical revision
 * "latest"). Cheap enough for once per connection or per endpoint, not per request. */
const weir_metrics_peer_t *weir_metrics_peer(const char *workload, const char *namespace,
                                             const char *principal, const char *app,
                                             const char *version);

/* The peer nobody knows. */
const weir_metrics_peer_t *weir_metrics_unknown_peer(void);

typedef struct {
    bool reporter_destination; /* false: reporter="source" */
    const weir_metrics_peer_t *source, *destination;
    const char *destination_service; /* FQDN; NULL: "unknown" */
    int response_code;               /* 0 when none was sent */
    const char *response_flags;      /* NULL or "": "-" */
    bool mutual_tls;                 /* destination reporter: mutual_tls or none */
    uint64_t duration_ms, request_bytes, response_bytes;
} weir_request_metric_t;

void weir_metrics_record(const weir_request_metric_t *m);

/* Appends istio_requests_total, istio_request_duration_milliseconds, istio_request_bytes and
 * istio_response_bytes, each with HELP and TYPE, in Prometheus text format. */
void weir_metrics_render(weir_buf_t *out);

/* Escapes a label value for Prometheus (backslash, double quote, newline). */
void weir_metrics_escape(weir_buf_t *out, const char *value);

#endif
