/* common/http_codec.h: HTTP/1.1 message parsing (llhttp in strict mode) plus the checks
 * llhttp leaves to us, and small helpers for writing heads.
 *
 * One parser per connection direction. It delivers one message at a time: a head, the decoded
 * body in pieces (chunked framing removed), trailers, then completion, after which it pauses
 * so a pipelined next request waits until the caller is ready (weir_http_parser_resume()).
 *
 * Strictness (shared/reference/hardening.md; everything below is an error, never forwarded):
 *  - llhttp strict mode: bad tokens, bad chunk sizes, bad line endings, bad versions ...
 *  - ours: Content-Length together with Transfer-Encoding; two Content-Length fields (even
 *    equal ones); Transfer-Encoding other than exactly `chunked` (501 for requests);
 *    Transfer-Encoding in an HTTP/1.0 request; obs-fold (a header line starting with SP/HT);
 *    NUL, CR, LF or other CTL bytes (except HTAB) in a header value; a request without Host in
 *    HTTP/1.1, or with two Host fields; Content-Length, Transfer-Encoding or Host in trailers.
 *  - limits as Envoy's defaults: more than WEIR_HTTP_MAX_HEADERS fields or more than
 *    WEIR_HTTP_MAX_HEADER_BYTES of header bytes -> 431; a request line longer than
 *    WEIR_HTTP_MAX_REQUEST_LINE -> 414. For responses every error status is 502.
 *  - interim 1xx responses other than 101 are consumed silently: callers see only the final
 *    response (weir answers `Expect: 100-continue` itself, as Envoy does by default).
 *
 * Ownership: the parser owns the head's strings; they stay valid from on_head until
 * weir_http_parser_resume() or weir_http_parser_free(). Body pointers point into the caller's
 * input and are valid only during the callback. Single-threaded. */
#ifndef WEIR_HTTP_CODEC_H
#define WEIR_HTTP_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WEIR_HTTP_MAX_HEADERS 100
#define WEIR_HTTP_MAX_HEADER_BYTES (60 * 1024)
#define WEIR_HTTP_MAX_REQUEST_LINE (16 * 1024)

typedef struct {
    const char *name;
    size_t name_len;
    const char *value; /* leading/trailing whitespace removed */
    size_t value_len;
} weir_http_header_t;

typedef struct {
    /* requests */
    const char *method;
    size_t method_len;
    const char *target; /* request-target as sent (origin-form: path and query) */
    size_t target_len;
    /* responses */
    int status;
    const char *reason;
    size_t reason_len;
    /* both */
    int version_major, version_minor;
    weir_http_header_t headers[WEIR_HTTP_MAX_HEADERS];
    size_t n_headers;
    int64_t content_length; /* -1: no Content-Length */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* the connection may carry another message after this one */
    bool expect_continue;   /* request carried Expect: 100-continue */
    bool has_body;          /* a body follows (CL > 0, chunked, or a response read to EOF) */
    int host_index;         /* index of Host in headers[], -1 when absent */
} weir_http_head_t;

typedef enum { WEIR_HTTP_REQUEST, WEIR_HTTP_RESPONSE } weir_http_kind_t;

typedef struct weir_http_parser weir_http_parser_t;

/* Callbacks return 0 to go on, or a negative value to stop: execute() then returns
 * WEIR_HTTP_ABORTED. */
typedef struct {
    int (*on_head)(weir_http_parser_t *p, weir_http_head_t *head);
    int (*on_body)(weir_http_parser_t *p, const char *data, size_t len);
    /* Only for chunked messages that carry trailer fields; may be NULL. */
    int (*on_trailers)(weir_http_parser_t *p, const weir_http_header_t *trailers, size_t n);
    int (*on_complete)(weir_http_parser_t *p);
} weir_http_parser_cbs_t;

typedef enum {
    WEIR_HTTP_NEED_MORE = 0, /* every byte consumed; feed more */
    WEIR_HTTP_PAUSED,        /* a message completed; *consumed says how far; resume() first */
    WEIR_HTTP_ERROR,         /* malformed or over a limit: see error_status()/error_reason() */
    WEIR_HTTP_ABORTED        /* a callback returned < 0 */
} weir_http_result_t;

/* Allocates a parser; never NULL (aborts on OOM). `data` is the caller's, see parser_data(). */
weir_http_parser_t *weir_http_parser_new(weir_http_kind_t kind, const weir_http_parser_cbs_t *cbs,
                                         void *data);
void weir_http_parser_free(weir_http_parser_t *p);
void *weir_http_parser_data(const weir_http_parser_t *p);

/* Parses input. Never reads past `len`. Returns as described above; *consumed is the number
 * of bytes used (all of them unless PAUSED or ERROR/ABORTED). */
weir_http_result_t weir_http_parser_execute(weir_http_parser_t *p, const char *data, size_t len,
                                            size_t *consumed);
/* The peer closed. Completes a response delimited by EOF (on_complete runs) and returns
 * NEED_MORE; returns ERROR when a message was cut short, NEED_MORE when between messages. */
weir_http_result_t weir_http_parser_finish(weir_http_parser_t *p);
/* After PAUSED: forget the last message and accept the next one. */
void weir_http_parser_resume(weir_http_parser_t *p);
/* For a response parser: the response about to be parsed answers a HEAD request, so it has
 * no body whatever its Content-Length says. Call before feeding that response. */
void weir_http_parser_expect_head_response(weir_http_parser_t *p, bool head);
/* True between on_head and on_complete (a message is partly parsed). */
bool weir_http_parser_in_message(const weir_http_parser_t *p);
/* True when any byte of a message has been seen but on_complete has not run. */
bool weir_http_parser_started(const weir_http_parser_t *p);

/* After ERROR: the status to answer with (400, 414, 431, 501; 502 for a response parser) and
 * a short reason for the log, e.g. "content-length and transfer-encoding both present". */
int weir_http_parser_error_status(const weir_http_parser_t *p);
const char *weir_http_parser_error_reason(const weir_http_parser_t *p);

/* ---- helpers for heads ---- */

/* Case-insensitive comparison of a field name with a NUL-terminated lower-case literal. */
bool weir_http_name_is(const char *name, size_t len, const char *lower);
/* The first field of that name, or NULL. */
const weir_http_header_t *weir_http_head_find(const weir_http_head_t *h, const char *lower_name);
/* True when `name` must not be forwarded: connection, keep-alive, proxy-connection,
 * transfer-encoding, upgrade, te, trailer, and every name listed in this head's Connection. */
bool weir_http_is_hop_by_hop(const weir_http_head_t *h, const char *name, size_t len);
/* The reason phrase weir writes for a status ("Not Found"); "Unknown" when it knows none. */
const char *weir_http_reason_phrase(int status);
/* Writes "<hex len>\r\n" for a chunk of `len` bytes into buf (>= 18 bytes); returns its length. */
size_t weir_http_chunk_header(char *buf, size_t len);

#endif
