/* common/admin.h: the small HTTP servers an operator talks to: Envoy's admin interface
 * (127.0.0.1:15000), the health port (15021, /healthz/ready) and the Prometheus port (15090).
 *
 * One request per connection (answered with Connection: close), parsed with the same codec
 * as the proxy; a handler fills a response. Handlers are looked up by method and path; a path
 * served for POST only answers GET with 405, so nothing changes state by accident.
 * Loop thread only; servers and connections are owned here. */
#ifndef WEIR_ADMIN_H
#define WEIR_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/mem.h"

typedef struct {
    const char *method; /* "GET", "POST" ... */
    const char *path;   /* without the query */
    const char *query;  /* after '?', "" when none */
} weir_admin_request_t;

typedef struct {
    int status;               /* 200 unless the handler says otherwise */
    const char *content_type; /* "text/plain; charset=utf-8" unless set */
    weir_buf_t body;
} weir_admin_response_t;

typedef void (*weir_admin_handler_fn)(const weir_admin_request_t *req, weir_admin_response_t *resp);

typedef struct {
    const char *method; /* NULL: GET */
    const char *path;
    weir_admin_handler_fn handler;
} weir_admin_route_t;

/* Serves routes (the array must outlive the server) on bind:port. 0 or a negative UV error. */
int weir_admin_listen(const char *bind, uint32_t port, const weir_admin_route_t *routes,
                      size_t n_routes);

/* Closes every admin server and connection. */
void weir_admin_close_all(void);

/* The value of `name` in a query string ("level=debug&x=1"), copied into out; false when
 * absent. */
bool weir_admin_query_get(const char *query, const char *name, char *out, size_t outlen);

#endif
