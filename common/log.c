/* common/log.c: see log.h. */
#include "common/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "common/loop.h"

static weir_log_level_t min_level = WEIR_LOG_INFO;
static FILE *access_out;
static bool access_owned;
static weir_access_log_format_t access_format;

void weir_log_set_level(weir_log_level_t level)
{
    min_level = level;
}

weir_log_level_t weir_log_get_level(void)
{
    return min_level;
}

void weir_log(weir_log_level_t level, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warning", "error"};
    if (level < min_level)
        return;
    char stamp[32];
    uint64_t us = weir_wall_us();
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03uZ weir %s: ", stamp, (unsigned)(us / 1000 % 1000), names[level]);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int weir_access_log_open(const char *path, weir_access_log_format_t format)
{
    weir_access_log_close();
    access_format = format;
    if (path == NULL || strcmp(path, "off") == 0)
        return 0;
    if (strcmp(path, "-") == 0) {
        access_out = stdout;
        access_owned = false;
    } else {
        access_out = fopen(path, "a");
        if (access_out == NULL)
            return -errno;
        access_owned = true;
    }
    setvbuf(access_out, NULL, _IOLBF, 0); /* a line per request, visible at once to tail -f */
    return 0;
}

bool weir_access_log_enabled(void)
{
    return access_out != NULL;
}

void weir_access_log_close(void)
{
    if (access_out && access_owned)
        fclose(access_out);
    access_out = NULL;
}

static const char *dash(const char *s)
{
    return s && *s ? s : "-";
}

static void format_start_time(uint64_t us, char *buf, size_t len)
{
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03uZ", (unsigned)(us / 1000 % 1000));
}

static void write_json(const weir_access_log_entry_t *e, const char *start)
{
    json_t *o = json_object();
    json_object_set_new(o, "start_time", json_string(start));
    json_object_set_new(o, "method", json_string(dash(e->method)));
    json_object_set_new(o, "path", json_string(dash(e->path)));
    json_object_set_new(o, "protocol", json_string(dash(e->protocol)));
    json_object_set_new(o, "response_code", json_integer(e->response_code));
    json_object_set_new(o, "response_flags", json_string(dash(e->response_flags)));
    json_object_set_new(o, "response_code_details", json_string(dash(e->response_code_details)));
    json_object_set_new(o, "connection_termination_details",
                        json_string(dash(e->termination_details)));
    json_object_set_new(o, "upstream_transport_failure_reason",
                        json_string(dash(e->upstream_failure)));
    json_object_set_new(o, "bytes_received", json_integer((json_int_t)e->bytes_received));
    json_object_set_new(o, "bytes_sent", json_integer((json_int_t)e->bytes_sent));
    json_object_set_new(o, "duration", json_integer((json_int_t)e->duration_ms));
    json_object_set_new(o, "upstream_service_time",
                        e->upstream_service_time_ms >= 0
                            ? json_integer(e->upstream_service_time_ms)
                            : json_string("-"));
    json_object_set_new(o, "x_forwarded_for", json_string(dash(e->x_forwarded_for)));
    json_object_set_new(o, "user_agent", json_string(dash(e->user_agent)));
    json_object_set_new(o, "request_id", json_string(dash(e->request_id)));
    json_object_set_new(o, "authority", json_string(dash(e->authority)));
    json_object_set_new(o, "upstream_host", json_string(dash(e->upstream_host)));
    json_object_set_new(o, "upstream_cluster", json_string(dash(e->upstream_cluster)));
    json_object_set_new(o, "upstream_local_address", json_string(dash(e->upstream_local_address)));
    json_object_set_new(o, "downstream_local_address",
                        json_string(dash(e->downstream_local_address)));
    json_object_set_new(o, "downstream_remote_address",
                        json_string(dash(e->downstream_remote_address)));
    json_object_set_new(o, "requested_server_name", json_string(dash(e->requested_server_name)));
    json_object_set_new(o, "route_name", json_string(dash(e->route_name)));
    json_object_set_new(o, "downstream_peer_uri_san", json_string(dash(e->downstream_peer_uri_san)));
    json_object_set_new(o, "upstream_peer_uri_san", json_string(dash(e->upstream_peer_uri_san)));
    /* header values are peer bytes; jansson refuses invalid UTF-8 rather than emit bad JSON */
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    if (line) {
        fputs(line, access_out);
        fputc('\n', access_out);
        free(line);
    }
    json_decref(o);
}

void weir_access_log_write(const weir_access_log_entry_t *e)
{
    if (access_out == NULL)
        return;
    char start[48];
    format_start_time(e->start_us, start, sizeof(start));
    if (access_format == WEIR_ACCESS_LOG_JSON) {
        write_json(e, start);
        return;
    }
    char ust[24] = "-";
    if (e->upstream_service_time_ms >= 0)
        snprintf(ust, sizeof(ust), "%lld", (long long)e->upstream_service_time_ms);
    fprintf(access_out,
            "[%s] \"%s %s %s\" %d %s %s %s \"%s\" %llu %llu %llu %s \"%s\" \"%s\" \"%s\" \"%s\" "
            "\"%s\" %s %s %s %s %s %s\n",
            start, dash(e->method), dash(e->path), dash(e->protocol), e->response_code,
            dash(e->response_flags), dash(e->response_code_details),
            dash(e->termination_details), dash(e->upstream_failure),
            (unsigned long long)e->bytes_received, (unsigned long long)e->bytes_sent,
            (unsigned long long)e->duration_ms, ust, dash(e->x_forwarded_for),
            dash(e->user_agent), dash(e->request_id), dash(e->authority), dash(e->upstream_host),
            dash(e->upstream_cluster), dash(e->upstream_local_address),
            dash(e->downstream_local_address), dash(e->downstream_remote_address),
            dash(e->requested_server_name), dash(e->route_name));
}
