/* common/http_codec.c: see http_codec.h.
 *
 * llhttp (strict mode) does the tokenising. It hands every field over in pieces, split wherever
 * an input buffer ends, so the head is copied into a parser-owned buffer as offsets while it
 * arrives, and the pointers of weir_http_head_t are resolved only once the head is complete
 * (the buffer may move while it grows). Each limit is checked before a piece is copied, so a
 * peer can never make that buffer grow past HEAD_BUF_MAX.
 *
 * What llhttp 8.1 strict mode leaves to us (found by feeding it each case; the unit tests keep
 * both lists honest):
 *  - it accepts obs-fold and hands the folded line to on_header_value as more value bytes,
 *    indistinguishable from a value split across two buffers. A small scanner over the raw
 *    head bytes finds a line that starts with SP or HTAB instead;
 *  - it accepts Transfer-Encoding in HTTP/1.0, `gzip, chunked`, a missing or doubled Host,
 *    an empty field name (": x"), HTTP/0.9 and HTTP/2.0 request lines, several spaces between
 *    the parts of a request line, Content-Length, Transfer-Encoding and Host in trailers,
 *    and response status codes outside 100..599;
 *  - it rejects by itself: CL together with TE, a second Content-Length, TE with anything
 *    after `chunked`, a bad Content-Length, bad chunk sizes, chunk data without its CRLF,
 *    spaces or CTLs in field names, NUL/CTL/DEL/bare CR or LF in values, LF-only lines.
 *    Its reason strings are passed through as ours.
 */
#include "common/http_codec.h"

#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "common/mem.h"

/* Room for the longest head the limits allow: the request line, every name and value, and the
 * NUL written after each string. */
#define HEAD_BUF_MAX                                                                               \
    (WEIR_HTTP_MAX_REQUEST_LINE + WEIR_HTTP_MAX_HEADER_BYTES + 2 * WEIR_HTTP_MAX_HEADERS + 16)
/* A keep-alive connection that once carried a large head gives the memory back afterwards. */
#define HEAD_BUF_KEEP 4096
/* Bytes of a request line that are not method or target: two SP and "HTTP/x.y". */
#define REQUEST_LINE_FIXED 10
/* "HTTP/x.y NNN " before the reason phrase. */
#define STATUS_LINE_FIXED 13

/* Where one field's name and value sit in the accumulating buffer. */
typedef struct {
    uint32_t name_off, name_len;
    uint32_t value_off, value_len;
} field_off_t;

enum field_state { FS_NONE, FS_NAME, FS_VALUE };

/* Raw head scanner: finds obs-fold lines and malformed request lines that llhttp accepts. */
enum scan_state {
    SCAN_IDLE,       /* not inside a head or trailer section */
    SCAN_WAIT_START, /* a message began; its first byte is not located yet */
    SCAN_FIRST_LINE, /* inside the request or status line */
    SCAN_LINE,       /* inside a field line */
    SCAN_LINE_START, /* just after the LF that ended a line */
    SCAN_END_CR      /* saw CR at the start of a line: the empty line that ends the section */
};

struct weir_http_parser {
    llhttp_t ll;
    weir_http_kind_t kind;
    weir_http_parser_cbs_t cbs;
    void *data;

    /* Head accumulation. hbuf holds the start line strings and the header fields; tbuf the
     * trailer fields, so that the head's pointers stay valid while trailers arrive. */
    weir_buf_t hbuf, tbuf;
    uint32_t method_off, method_len, target_off, target_len; /* target: reason for responses */
    field_off_t fields[WEIR_HTTP_MAX_HEADERS];
    size_t n_fields;
    size_t field_bytes; /* name and value bytes of the current section */
    enum field_state fstate;
    bool in_trailers;
    weir_http_head_t head;

    /* Scanner state and the input of the execute() in progress. */
    enum scan_state scan;
    unsigned scan_spaces;
    const char *scan_from, *exec_start, *exec_end;
    const char *scan_error_at;

    bool expect_head; /* the next final response answers a HEAD request */
    bool started;     /* a message began and did not complete */
    bool in_message;  /* between on_head and on_complete */
    bool interim;     /* the response being parsed is a 1xx to skip */
    bool paused;      /* a message completed; waiting for resume() */
    bool finishing;   /* inside llhttp_finish(): completing must not pause */
    bool aborted;     /* a caller's callback asked to stop */
    int err_status;
    const char *err_reason;
};

/* ---- small helpers ---- */

static weir_http_parser_t *parser_of(llhttp_t *ll)
{
    return ll->data;
}

/* Records the first error only: later ones are consequences of it. */
static int fail(weir_http_parser_t *p, int status, const char *reason)
{
    if (p->err_status == 0) {
        p->err_status = p->kind == WEIR_HTTP_RESPONSE ? 502 : status;
        p->err_reason = reason;
    }
    return -1;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* Case-insensitive equality of a counted string and a lower-case literal. */
static bool eq_lower(const char *s, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    if (n != len)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (lower((unsigned char)s[i]) != lit[i])
            return false;
    }
    return true;
}

/* Appends within a limit already checked by the caller; grows geometrically but never past
 * HEAD_BUF_MAX, so a full-size head costs at most that much memory. */
static void hbuf_append(weir_buf_t *b, const char *s, size_t n)
{
    if (b->cap - b->len < n) {
        size_t want = b->cap ? b->cap * 2 : 512;
        while (want - b->len < n)
            want *= 2;
        if (want > HEAD_BUF_MAX)
            want = HEAD_BUF_MAX > b->len + n ? HEAD_BUF_MAX : b->len + n;
        b->base = weir_mem_realloc(b->base, want);
        b->cap = want;
    }
    if (n)
        memcpy(b->base + b->len, s, n);
    b->len += n;
}

static void hbuf_nul(weir_buf_t *b)
{
    hbuf_append(b, "", 1);
}

static void hbuf_release_if_large(weir_buf_t *b)
{
    if (b->cap > HEAD_BUF_KEEP)
        weir_buf_free(b);
    else
        b->len = 0;
}

/* ---- raw head scanner ---- */

/* Runs the scanner over [from, to), bytes llhttp has already accepted as part of a head or
 * trailer section. Stops at the empty line that ends the section. */
static int scan_bytes(weir_http_parser_t *p, const char *from, const char *to)
{
    for (const char *s = from; s < to && p->scan != SCAN_IDLE; s++) {
        char c = *s;
        switch (p->scan) {
        case SCAN_IDLE:
        case SCAN_WAIT_START:
            return 0;
        case SCAN_FIRST_LINE:
            if (c == ' ') {
                p->scan_spaces++;
            } else if (c == '\n') {
                /* A request line is exactly method SP target SP version; llhttp takes runs of
                 * spaces, which other parsers split differently. */
                if (p->kind == WEIR_HTTP_REQUEST && p->scan_spaces != 2) {
                    p->scan_error_at = s;
                    return fail(p, 400, "malformed request line");
                }
                p->scan = SCAN_LINE_START;
            }
            break;
        case SCAN_LINE:
            if (c == '\n')
                p->scan = SCAN_LINE_START;
            break;
        case SCAN_LINE_START:
            if (is_ows(c)) {
                p->scan_error_at = s;
                return fail(p, 400, "obsolete line folding in header");
            }
            p->scan = c == '\r' ? SCAN_END_CR : c == '\n' ? SCAN_IDLE : SCAN_LINE;
            break;
        case SCAN_END_CR:
            p->scan = c == '\n' ? SCAN_IDLE : SCAN_LINE;
            break;
        }
    }
    return 0;
}

/* Scans up to `upto` (a position inside the current input), or to the end of the section when
 * upto is NULL: llhttp has then consumed the section's final empty line in this input. */
static int scan_to(weir_http_parser_t *p, const char *upto)
{
    if (p->scan == SCAN_IDLE || p->scan == SCAN_WAIT_START || p->scan_from == NULL)
        return 0;
    const char *end = upto ? upto : p->exec_end;
    if (end <= p->scan_from)
        return 0;
    int rc = scan_bytes(p, p->scan_from, end);
    p->scan_from = end;
    return rc;
}

/* The first piece of a message's first span locates its first byte. */
static void scan_locate(weir_http_parser_t *p, const char *at)
{
    if (p->scan == SCAN_WAIT_START) {
        p->scan = SCAN_FIRST_LINE;
        p->scan_spaces = 0;
        p->scan_from = at;
    }
}

/* ---- per-message state ---- */

static void reset_message(weir_http_parser_t *p)
{
    hbuf_release_if_large(&p->hbuf);
    hbuf_release_if_large(&p->tbuf);
    p->method_off = p->method_len = p->target_off = p->target_len = 0;
    p->n_fields = 0;
    p->field_bytes = 0;
    p->fstate = FS_NONE;
    p->in_trailers = false;
    p->head.n_headers = 0;
    p->interim = false;
    p->scan = SCAN_IDLE;
}

/* ---- llhttp callbacks: start line ---- */

static int on_message_begin(llhttp_t *ll)
{
    weir_http_parser_t *p = parser_of(ll);
    p->started = true;
    p->scan = SCAN_WAIT_START;
    return 0;
}

static int on_method(llhttp_t *ll, const char *at, size_t len)
{
    weir_http_parser_t *p = parser_of(ll);
    scan_locate(p, at);
    if (p->method_len == 0)
        p->method_off = (uint32_t)p->hbuf.len;
    /* Methods are short tokens llhttp knows; this only guards the buffer. */
    if (p->method_len + len + REQUEST_LINE_FIXED > WEIR_HTTP_MAX_REQUEST_LINE)
        return fail(p, 414, "request line too long");
    hbuf_append(&p->hbuf, at, len);
    p->method_len += (uint32_t)len;
    return 0;
}

static int on_method_complete(llhttp_t *ll)
{
    weir_http_parser_t *p = parser_of(ll);
    hbuf_nul(&p->hbuf);
    p->target_off = (uint32_t)p->hbuf.len;
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
    weir_http_parser_t *p = parser_of(ll);
    if ((size_t)p->method_len + p->target_len + len + REQUEST_LINE_FIXED >
        WEIR_HTTP_MAX_REQUEST_LINE)
        return fail(p, 414, "request line too long");
    hbuf_append(&p->hbuf, at, len);
    p->target_len += (uint32_t)len;
    return 0;
}

static int on_url_complete(llhttp_t *ll)
{
    hbuf_nul(&parser_of(ll)->hbuf);
    return 0;
}

static int on_version(llhttp_t *ll, const char *at, size_t len)
{
    /* For a response the version is the first span: it locates the status line. */
    scan_locate(parser_of(ll), at);
    return 0;
}

static int on_status(llhttp_t *ll, const char *at, size_t len)
{
    weir_http_parser_t *p = parser_of(ll);
    if (p->target_len == 0)
        p->target_off = (uint32_t)p->hbuf.len;
    if ((size_t)p->target_len + len + STATUS_LINE_FIXED > WEIR_HTTP_MAX_REQUEST_LINE)
        return fail(p, 502, "status line too long");
    hbuf_append(&p->hbuf, at, len);
    p->target_len += (uint32_t)len;
    return 0;
}

static int on_status_complete(llhttp_t *ll)
{
    hbuf_nul(&parser_of(ll)->hbuf);
    return 0;
}

/* ---- llhttp callbacks: fields (headers and trailers) ---- */

static weir_buf_t *section_buf(weir_http_parser_t *p)
{
    return p->in_trailers ? &p->tbuf : &p->hbuf;
}

static int begin_field(weir_http_parser_t *p)
{
    if (p->n_fields == WEIR_HTTP_MAX_HEADERS)
        return fail(p, 431, p->in_trailers ? "too many trailer fields" : "too many header fields");
    field_off_t *f = &p->fields[p->n_fields];
    f->name_off = (uint32_t)section_buf(p)->len;
    f->name_len = f->value_off = f->value_len = 0;
    p->fstate = FS_NAME;
    return 0;
}

static int count_field_bytes(weir_http_parser_t *p, size_t len)
{
    if (len > WEIR_HTTP_MAX_HEADER_BYTES - p->field_bytes)
        return fail(p, 431, p->in_trailers ? "trailers too large" : "headers too large");
    p->field_bytes += len;
    return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    weir_http_parser_t *p = parser_of(ll);
    if (p->in_trailers && p->scan == SCAN_IDLE && p->fstate == FS_NONE && p->n_fields == 0) {
        /* The first trailer field: scan the trailer section from here on. */
        p->scan = SCAN_LINE;
        p->scan_from = at;
    }
    if (scan_to(p, at + len) < 0)
        return -1;
    if (p->fstate == FS_NONE && begin_field(p) < 0)
        return -1;
    if (count_field_bytes(p, len) < 0)
        return -1;
    hbuf_append(section_buf(p), at, len);
    p->fields[p->n_fields].name_len += (uint32_t)len;
    return 0;
}

static int on_header_field_complete(llhttp_t *ll)
{
    weir_http_parser_t *p = parser_of(ll);
    if (p->fstate == FS_NONE && begin_field(p) < 0) /* an empty name: no piece arrived */
        return -1;
    weir_buf_t *b = section_buf(p);
    hbuf_nul(b);
    p->fields[p->n_fields].value_off = (uint32_t)b->len;
    p->fstate = FS_VALUE;
    return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    weir_http_parser_t *p = parser_of(ll);
    if (scan_to(p, at + len) < 0)
        return -1;
    if (p->fstate != FS_VALUE)
        return fail(p, 400, "header value without a name");
    if (count_field_bytes(p, len) < 0)
        return -1;
    hbuf_append(section_buf(p), at, len);
    p->fields[p->n_fields].value_len += (uint32_t)len;
    return 0;
}

static int on_header_value_complete(llhttp_t *ll)
{
    weir_http_parser_t *p = parser_of(ll);
    if (p->fstate != FS_VALUE)
        return fail(p, 400, "header value without a name");
    hbuf_nul(section_buf(p));
    p->n_fields++;
    p->fstate = FS_NONE;
    return 0;
}

/* Turns the offsets of the current section into headers: names as sent, values trimmed and
 * NUL-terminated. Checks what applies to every field. */
static int resolve_fields(weir_http_parser_t *p, weir_buf_t *b, weir_http_header_t *out)
{
    for (size_t i = 0; i < p->n_fields; i++) {
        const field_off_t *f = &p->fields[i];
        char *name = b->base + f->name_off;
        char *value = b->base + f->value_off;
        size_t vlen = f->value_len;
        if (f->name_len == 0)
            return fail(p, 400, "empty header name");
        /* llhttp strict already refuses these; kept so a looser llhttp cannot let one in. */
        for (size_t k = 0; k < vlen; k++) {
            unsigned char c = (unsigned char)value[k];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return fail(p, 400, "invalid character in header value");
        }
        while (vlen && is_ows(value[0])) {
            value++;
            vlen--;
        }
        while (vlen && is_ows(value[vlen - 1]))
            vlen--;
        value[vlen] = '\0'; /* inside the value or on its NUL */
        out[i].name = name;
        out[i].name_len = f->name_len;
        out[i].value = value;
        out[i].value_len = vlen;
    }
    return 0;
}

/* Content-Length: 1*DIGIT, within int64_t. */
static bool parse_content_length(const char *s, size_t len, int64_t *out)
{
    if (len == 0)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* The characters nghttp2 (and so Envoy) accepts in an authority. */
static bool host_is_valid(const char *s, size_t len)
{
    static const char extra[] = "!$&'()*+,-.:;=@[]_~%";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && (c == '\0' || strchr(extra, c) == NULL))
            return false;
    }
    return true;
}

static bool is_interim_status(int status)
{
    return status >= 100 && status < 200 && status != 101;
}

/* Everything we check on a complete head, in the order that gives the most useful status. */
static int check_head(weir_http_parser_t *p, weir_http_head_t *h)
{
    bool request = p->kind == WEIR_HTTP_REQUEST;
    if (h->version_major != 1 || h->version_minor > 1)
        return fail(p, 400, "unsupported HTTP version");
    if (!request && (h->status < 100 || h->status > 599))
        return fail(p, 502, "invalid status code");

    int n_cl = 0, n_te = 0, n_host = 0;
    bool te_ok = true;
    h->content_length = -1;
    h->chunked = false;
    h->expect_continue = false;
    h->host_index = -1;
    for (size_t i = 0; i < h->n_headers; i++) {
        const weir_http_header_t *f = &h->headers[i];
        if (weir_http_name_is(f->name, f->name_len, "content-length")) {
            if (++n_cl > 1)
                return fail(p, 400, "multiple content-length headers");
            if (!parse_content_length(f->value, f->value_len, &h->content_length))
                return fail(p, 400, "invalid content-length");
        } else if (weir_http_name_is(f->name, f->name_len, "transfer-encoding")) {
            n_te++;
            if (n_te > 1 || !eq_lower(f->value, f->value_len, "chunked"))
                te_ok = false;
        } else if (weir_http_name_is(f->name, f->name_len, "host")) {
            if (++n_host > 1 && request)
                return fail(p, 400, "multiple host headers");
            if (h->host_index < 0)
                h->host_index = (int)i;
            if (request && !host_is_valid(f->value, f->value_len))
                return fail(p, 400, "invalid host header");
        } else if (request && weir_http_name_is(f->name, f->name_len, "expect")) {
            if (eq_lower(f->value, f->value_len, "100-continue"))
                h->expect_continue = true;
        }
    }
    if (n_cl && n_te)
        return fail(p, 400, "content-length and transfer-encoding both present");
    if (n_te && h->version_minor == 0)
        return fail(p, 400, "transfer-encoding in an HTTP/1.0 message");
    if (!te_ok)
        return fail(p, 501, "unsupported transfer-encoding");
    h->chunked = n_te > 0;
    if (request && h->version_minor == 1 && n_host == 0)
        return fail(p, 400, "missing host header");
    return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
    weir_http_parser_t *p = parser_of(ll);
    weir_http_head_t *h = &p->head;
    bool request = p->kind == WEIR_HTTP_REQUEST;

    if (scan_to(p, NULL) < 0)
        return -1;
    p->scan = SCAN_IDLE; /* whatever follows is body: never scan it */
    if (p->fstate != FS_NONE)
        return fail(p, 400, "incomplete header field");

    /* weir does not tunnel: CONNECT and Upgrade are delivered as ordinary messages (Upgrade is
     * hop-by-hop, so it is not forwarded) and llhttp must not switch protocols under us. The
     * head says keep_alive = false for CONNECT and 101, whose connection is not HTTP after. */
    ll->upgrade = 0;

    hbuf_nul(&p->hbuf); /* keeps every string NUL-terminated even when the buffer is empty */
    const char *base = p->hbuf.base;
    memset(h, 0, offsetof(weir_http_head_t, headers));
    if (request) {
        h->method = base + p->method_off;
        h->method_len = p->method_len;
        h->target = base + p->target_off;
        h->target_len = p->target_len;
    } else {
        h->status = ll->status_code;
        h->reason = p->target_len ? base + p->target_off : "";
        h->reason_len = p->target_len;
    }
    h->version_major = ll->http_major;
    h->version_minor = ll->http_minor;
    h->n_headers = p->n_fields;
    if (resolve_fields(p, &p->hbuf, h->headers) < 0)
        return -1;
    if (check_head(p, h) < 0)
        return -1;

    /* The offsets array now serves the trailers, which go to tbuf. */
    p->n_fields = 0;
    p->field_bytes = 0;
    p->in_trailers = h->chunked;

    bool no_body = false;
    if (!request) {
        p->interim = is_interim_status(h->status);
        no_body = p->expect_head || (h->status >= 100 && h->status < 200) || h->status == 204 ||
                  h->status == 304;
    }
    bool eof_body = !request && !no_body && !h->chunked && h->content_length < 0;
    if (no_body)
        h->has_body = false;
    else
        h->has_body = h->chunked || h->content_length > 0 || eof_body;

    /* llhttp_should_keep_alive() would count a HEAD response without Content-Length as read to
     * EOF (it learns of the skipped body only after this callback), so decide here. */
    bool ka = h->version_minor >= 1 ? !(ll->flags & F_CONNECTION_CLOSE)
                                    : (ll->flags & F_CONNECTION_KEEP_ALIVE) != 0;
    h->keep_alive = ka && !eof_body && !(request && ll->method == HTTP_CONNECT) &&
                    !(!request && h->status == 101);

    if (p->interim)
        return 1;
    p->in_message = true;
    if (p->cbs.on_head && p->cbs.on_head(p, h) < 0) {
        p->aborted = true;
        return -1;
    }
    return no_body ? 1 : 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t len)
{
    weir_http_parser_t *p = parser_of(ll);
    if (len == 0 || p->cbs.on_body == NULL)
        return 0;
    if (p->cbs.on_body(p, at, len) < 0) {
        p->aborted = true;
        return -1;
    }
    return 0;
}

static int check_trailers(weir_http_parser_t *p, const weir_http_header_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (weir_http_name_is(t[i].name, t[i].name_len, "content-length") ||
            weir_http_name_is(t[i].name, t[i].name_len, "transfer-encoding") ||
            weir_http_name_is(t[i].name, t[i].name_len, "host"))
            return fail(p, 400, "forbidden field in trailers");
    }
    return 0;
}

static int on_message_complete(llhttp_t *ll)
{
    weir_http_parser_t *p = parser_of(ll);

    if (p->in_trailers && p->n_fields > 0) {
        if (scan_to(p, NULL) < 0)
            return -1;
        p->scan = SCAN_IDLE;
        weir_http_header_t trailers[WEIR_HTTP_MAX_HEADERS];
        size_t n = p->n_fields;
        if (resolve_fields(p, &p->tbuf, trailers) < 0 || check_trailers(p, trailers, n) < 0)
            return -1;
        if (p->cbs.on_trailers && p->cbs.on_trailers(p, trailers, n) < 0) {
            p->aborted = true;
            return -1;
        }
    }
    p->scan = SCAN_IDLE;

    if (p->interim) {
        /* A 1xx the caller never sees: forget it and parse the final response. started stays
         * set, since the exchange is not over. */
        reset_message(p);
        return 0;
    }

    p->in_message = false;
    p->started = false;
    if (p->kind == WEIR_HTTP_RESPONSE)
        p->expect_head = false; /* it covered this response only */
    if (p->cbs.on_complete && p->cbs.on_complete(p) < 0) {
        p->aborted = true;
        return -1;
    }
    return p->finishing ? 0 : HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_method = on_method,
    .on_method_complete = on_method_complete,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_version = on_version,
    .on_status = on_status,
    .on_status_complete = on_status_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- public API ---- */

weir_http_parser_t *weir_http_parser_new(weir_http_kind_t kind, const weir_http_parser_cbs_t *cbs,
                                         void *data)
{
    weir_http_parser_t *p = weir_mem_calloc(1, sizeof(*p));
    llhttp_init(&p->ll, kind == WEIR_HTTP_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
    p->ll.data = p;
    p->kind = kind;
    if (cbs)
        p->cbs = *cbs;
    p->data = data;
    p->head.content_length = -1;
    p->head.host_index = -1;
    return p;
}

void weir_http_parser_free(weir_http_parser_t *p)
{
    if (p == NULL)
        return;
    weir_buf_free(&p->hbuf);
    weir_buf_free(&p->tbuf);
    free(p);
}

void *weir_http_parser_data(const weir_http_parser_t *p)
{
    return p->data;
}

/* How far llhttp got in this input, clamped to it. */
static size_t error_offset(const weir_http_parser_t *p, const char *data, size_t len)
{
    const char *pos = llhttp_get_error_pos(&p->ll);
    if (pos == NULL || pos < data || pos > data + len)
        return 0;
    return (size_t)(pos - data);
}

static void map_llhttp_error(weir_http_parser_t *p, llhttp_errno_t e)
{
    const char *reason = llhttp_get_error_reason(&p->ll);
    if (reason == NULL)
        reason = llhttp_errno_name(e);
    switch (e) {
    case HPE_INVALID_TRANSFER_ENCODING:
        /* In trailers llhttp still tracks Transfer-Encoding: there it is a forbidden field,
         * not an unsupported coding. */
        fail(p, p->in_trailers ? 400 : 501, reason);
        break;
    case HPE_PAUSED_H2_UPGRADE:
        fail(p, 400, "HTTP/2 connection preface on an HTTP/1 connection");
        break;
    default:
        fail(p, 400, reason);
        break;
    }
}

weir_http_result_t weir_http_parser_execute(weir_http_parser_t *p, const char *data, size_t len,
                                            size_t *consumed)
{
    size_t dummy;
    if (consumed == NULL)
        consumed = &dummy;
    *consumed = 0;
    if (p->err_status)
        return WEIR_HTTP_ERROR;
    if (p->aborted)
        return WEIR_HTTP_ABORTED;
    if (p->paused)
        return WEIR_HTTP_PAUSED;
    if (len == 0)
        return WEIR_HTTP_NEED_MORE;

    p->exec_start = p->scan_from = data;
    p->exec_end = data + len;
    llhttp_errno_t e = llhttp_execute(&p->ll, data, len);
    weir_http_result_t res;

    if (e == HPE_OK) {
        /* Everything was accepted: a head still in progress is scanned to the end of input. */
        if (scan_to(p, NULL) < 0) {
            *consumed = (size_t)(p->scan_error_at - data);
            res = WEIR_HTTP_ERROR;
        } else {
            *consumed = len;
            res = WEIR_HTTP_NEED_MORE;
        }
    } else if (e == HPE_PAUSED && !p->err_status && !p->aborted) {
        p->paused = true;
        *consumed = error_offset(p, data, len);
        res = WEIR_HTTP_PAUSED;
    } else {
        *consumed = error_offset(p, data, len);
        if (p->aborted) {
            res = WEIR_HTTP_ABORTED;
        } else {
            if (!p->err_status)
                map_llhttp_error(p, e);
            res = WEIR_HTTP_ERROR;
        }
    }
    p->exec_start = p->exec_end = p->scan_from = NULL;
    return res;
}

weir_http_result_t weir_http_parser_finish(weir_http_parser_t *p)
{
    if (p->err_status)
        return WEIR_HTTP_ERROR;
    if (p->aborted)
        return WEIR_HTTP_ABORTED;
    if (p->paused)
        return WEIR_HTTP_NEED_MORE; /* the last message is complete */
    p->finishing = true;
    llhttp_errno_t e = llhttp_finish(&p->ll);
    p->finishing = false;
    if (p->aborted)
        return WEIR_HTTP_ABORTED;
    if (p->err_status)
        return WEIR_HTTP_ERROR;
    if (e != HPE_OK) {
        fail(p, 400, "connection closed in the middle of a message");
        return WEIR_HTTP_ERROR;
    }
    if (p->started) {
        /* llhttp is between messages, but a 1xx arrived without its final response. */
        fail(p, 400, "connection closed after an interim response");
        return WEIR_HTTP_ERROR;
    }
    return WEIR_HTTP_NEED_MORE;
}

void weir_http_parser_resume(weir_http_parser_t *p)
{
    if (!p->paused)
        return;
    p->paused = false;
    reset_message(p);
    llhttp_resume(&p->ll);
    /* llhttp finishes the previous message (its keep-alive bookkeeping) only when it next runs;
     * run it on no input so that finish() right after resume() sees a clean state. */
    static const char none[1];
    p->exec_start = p->scan_from = p->exec_end = none;
    llhttp_errno_t e = llhttp_execute(&p->ll, none, 0);
    p->exec_start = p->exec_end = p->scan_from = NULL;
    if (e != HPE_OK && !p->err_status)
        map_llhttp_error(p, e);
}

void weir_http_parser_expect_head_response(weir_http_parser_t *p, bool head)
{
    p->expect_head = head;
}

bool weir_http_parser_in_message(const weir_http_parser_t *p)
{
    return p->in_message;
}

bool weir_http_parser_started(const weir_http_parser_t *p)
{
    return p->started;
}

int weir_http_parser_error_status(const weir_http_parser_t *p)
{
    return p->err_status;
}

const char *weir_http_parser_error_reason(const weir_http_parser_t *p)
{
    return p->err_reason ? p->err_reason : "";
}

/* ---- helpers for heads ---- */

bool weir_http_name_is(const char *name, size_t len, const char *lower_lit)
{
    return eq_lower(name, len, lower_lit);
}

const weir_http_header_t *weir_http_head_find(const weir_http_head_t *h, const char *lower_name)
{
    for (size_t i = 0; i < h->n_headers; i++) {
        if (eq_lower(h->headers[i].name, h->headers[i].name_len, lower_name))
            return &h->headers[i];
    }
    return NULL;
}

/* True when `name` is one of the comma-separated tokens of `list`. */
static bool token_listed(const char *list, size_t len, const char *name, size_t name_len)
{
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && list[i] != ',')
            i++;
        size_t end = i;
        while (start < end && is_ows(list[start]))
            start++;
        while (end > start && is_ows(list[end - 1]))
            end--;
        if (end - start == name_len && name_len > 0) {
            size_t k = 0;
            while (k < name_len &&
                   lower((unsigned char)list[start + k]) == lower((unsigned char)name[k]))
                k++;
            if (k == name_len)
                return true;
        }
        i++; /* past the comma */
    }
    return false;
}

bool weir_http_is_hop_by_hop(const weir_http_head_t *h, const char *name, size_t len)
{
    static const char *const fixed[] = {
        "connection", "keep-alive", "proxy-connection", "transfer-encoding",
        "upgrade",    "te",         "trailer"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (eq_lower(name, len, fixed[i]))
            return true;
    }
    if (h == NULL)
        return false;
    for (size_t i = 0; i < h->n_headers; i++) {
        const weir_http_header_t *f = &h->headers[i];
        if (eq_lower(f->name, f->name_len, "connection") &&
            token_listed(f->value, f->value_len, name, len))
            return true;
    }
    return false;
}

static const struct {
    int status;
    const char *phrase;
} reason_phrases[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Payload Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Entity"},
    {425, "Too Early"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *weir_http_reason_phrase(int status)
{
    for (size_t i = 0; i < sizeof(reason_phrases) / sizeof(reason_phrases[0]); i++) {
        if (reason_phrases[i].status == status)
            return reason_phrases[i].phrase;
    }
    return "Unknown";
}

size_t weir_http_chunk_header(char *buf, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[2 * sizeof(size_t)];
    size_t n = 0;
    do {
        tmp[n++] = hex[len & 0xf];
        len >>= 4;
    } while (len);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\r';
    buf[n + 1] = '\n';
    return n + 2;
}
