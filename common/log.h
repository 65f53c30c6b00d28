/* common/log.h: the process log (stderr) and the access log.
 *
 * The access log writes one line per request in Istio's default Envoy text format
 * (shared/reference/istio-semantics.md 6.7) or as one JSON object per line with the same
 * fields in snake_case. Missing values print "-". Writes are line-buffered to a file or
 * stdout; "off" disables it. Loop thread only. */
#ifndef WEIR_LOG_H
#define WEIR_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { WEIR_LOG_DEBUG, WEIR_LOG_INFO, WEIR_LOG_WARN, WEIR_LOG_ERROR } weir_log_level_t;

void weir_log_set_level(weir_log_level_t level);
weir_log_level_t weir_log_get_level(void);
void weir_log(weir_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define weir_log_info(...) weir_log(WEIR_LOG_INFO, __VA_ARGS__)
#define weir_log_warn(...) weir_log(WEIR_LOG_WARN, __VA_ARGS__)
#define weir_log_error(...) weir_log(WEIR_LOG_ERROR, __VA_ARGS__)
#define weir_log_debug(...) weir_log(WEIR_LOG_DEBUG, __VA_ARGS__)

typedef enum { WEIR_ACCESS_LOG_TEXT, WEIR_ACCESS_LOG_JSON } weir_access_log_format_t;

/* Opens the access log: "-" is stdout, "off" (or NULL) disables it, anything else is a file
 * opened for appending. Returns 0 or a negative errno. */
int weir_access_log_open(const char *path, weir_access_log_format_t format);
bool weir_access_log_enabled(void);
void weir_access_log_close(void);

/* One request's fields. Strings may be NULL (printed "-"); lengths of -1 mean strlen. */
typedef struct {
    uint64_t start_us;       /* wall clock */
    const char *method;
    const char *path;        /* x-envoy-original-path if rewritten, else the path */
    const char *protocol;    /* "HTTP/1.1" */
    int response_code;       /* 0 when no response was sent */
    const char *response_flags; /* "-" or "NR", "UF,URX" ... */
    const char *response_code_details; /* "via_upstream", "route_not_found" ... */
    const char *termination_details;
    const char *upstream_failure;
    uint64_t bytes_received, bytes_sent;
    uint64_t duration_ms;
    int64_t upstream_service_time_ms; /* -1: none */
    const char *x_forwarded_for;
    const char *user_agent;
    const char *request_id;
    const char *authority;
    const char *upstream_host;
    const char *upstream_cluster;
    const char *upstream_local_address;
    const char *downstream_local_address;
    const char *downstream_remote_address;
    const char *requested_server_name;
    const char *route_name;
    /* The SPIFFE IDs the two TLS peers presented (Envoy's %DOWNSTREAM_PEER_URI_SAN% and
     * %UPSTREAM_PEER_URI_SAN%): JSON only, since Istio's text format has no place for them. */
    const char *downstream_peer_uri_san;
    const char *upstream_peer_uri_san;
} weir_access_log_entry_t;

void weir_access_log_write(const weir_access_log_entry_t *e);

#endif
