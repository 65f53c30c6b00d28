/* tests/unit/test_http_codec.c: the HTTP/1.1 codec (common/http_codec.c).
 *
 * Every input goes through one driver that copies each piece into a heap block of exactly its
 * size and frees it after execute(), so ASan catches a read past `len` or a pointer kept into
 * the caller's input. Valid messages are fed whole, cut in two at every offset, and byte by
 * byte; the transcripts (heads, bodies, trailers, completions) must be identical. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/http_codec.h"
#include "common/mem.h"

/* ---- recorder ---- */

typedef struct {
    weir_buf_t out;       /* transcript */
    weir_buf_t body;      /* body of the current message */
    weir_buf_t head_text; /* the current head as serialised at on_head */
    const weir_http_head_t *head;
    int heads, completes, trailer_calls;
    int abort_in; /* 1: on_head, 2: on_body, 3: on_trailers, 4: on_complete */
    bool in_message_at_body;
} rec_t;

static void serialise_head(weir_buf_t *b, const weir_http_head_t *h)
{
    if (h->method) {
        weir_buf_appendf(b, "REQ %.*s %.*s", (int)h->method_len, h->method, (int)h->target_len,
                         h->target);
    } else {
        weir_buf_appendf(b, "RESP %d [%.*s]", h->status, (int)h->reason_len, h->reason);
    }
    weir_buf_appendf(b, " HTTP/%d.%d cl=%lld chunked=%d ka=%d body=%d expect=%d host=%d\n",
                     h->version_major, h->version_minor, (long long)h->content_length, h->chunked,
                     h->keep_alive, h->has_body, h->expect_continue, h->host_index);
    for (size_t i = 0; i < h->n_headers; i++) {
        const weir_http_header_t *f = &h->headers[i];
        weir_buf_appendf(b, "  [%.*s]=[%.*s]\n", (int)f->name_len, f->name, (int)f->value_len,
                         f->value);
    }
}

static int rec_head(weir_http_parser_t *p, weir_http_head_t *h)
{
    rec_t *r = weir_http_parser_data(p);
    r->heads++;
    /* Strings are NUL-terminated where the head says they end. */
    for (size_t i = 0; i < h->n_headers; i++) {
        assert_int_equal(h->headers[i].name[h->headers[i].name_len], '\0');
        assert_int_equal(h->headers[i].value[h->headers[i].value_len], '\0');
    }
    if (h->method) {
        assert_int_equal(h->method[h->method_len], '\0');
        assert_int_equal(h->target[h->target_len], '\0');
    }
    weir_buf_reset(&r->head_text);
    serialise_head(&r->head_text, h);
    r->head = h;
    weir_buf_append(&r->out, r->head_text.base, r->head_text.len);
    weir_buf_reset(&r->body);
    assert_true(weir_http_parser_in_message(p));
    return r->abort_in == 1 ? -1 : 0;
}

static int rec_body(weir_http_parser_t *p, const char *data, size_t len)
{
    rec_t *r = weir_http_parser_data(p);
    assert_true(len > 0);
    weir_buf_append(&r->body, data, len);
    r->in_message_at_body = weir_http_parser_in_message(p);
    return r->abort_in == 2 ? -1 : 0;
}

static int rec_trailers(weir_http_parser_t *p, const weir_http_header_t *t, size_t n)
{
    rec_t *r = weir_http_parser_data(p);
    r->trailer_calls++;
    for (size_t i = 0; i < n; i++) {
        weir_buf_appendf(&r->out, "  TRAILER [%.*s]=[%.*s]\n", (int)t[i].name_len, t[i].name,
                         (int)t[i].value_len, t[i].value);
    }
    return r->abort_in == 3 ? -1 : 0;
}

static int rec_complete(weir_http_parser_t *p)
{
    rec_t *r = weir_http_parser_data(p);
    r->completes++;
    /* The head is untouched by the body and trailers that followed it. */
    weir_buf_t again = WEIR_BUF_INIT;
    serialise_head(&again, r->head);
    assert_string_equal(again.base, r->head_text.base);
    weir_buf_free(&again);
    weir_buf_appendf(&r->out, "  BODY %zu [%.*s]\nCOMPLETE\n", r->body.len, (int)r->body.len,
                     r->body.base ? r->body.base : "");
    weir_buf_reset(&r->body);
    return r->abort_in == 4 ? -1 : 0;
}

static const weir_http_parser_cbs_t rec_cbs = {
    .on_head = rec_head,
    .on_body = rec_body,
    .on_trailers = rec_trailers,
    .on_complete = rec_complete,
};

static void rec_free(rec_t *r)
{
    weir_buf_free(&r->out);
    weir_buf_free(&r->body);
    weir_buf_free(&r->head_text);
}

/* ---- driver ---- */

typedef struct {
    weir_http_kind_t kind;
    bool head_response; /* expect_head_response(true) before the first response */
    bool finish;        /* call finish() after the last piece */
} feed_opts_t;

/* Feeds the pieces [cuts[i], cuts[i+1]) of data; resumes after each PAUSED. Returns the last
 * status code (0 unless an error) and leaves the transcript in *r. */
static const char *g_last_reason; /* reason of the last error, for WEIR_TEST_VERBOSE */

static int feed_cuts(const feed_opts_t *o, const char *data, size_t len, const size_t *cuts,
                     size_t ncuts, rec_t *r)
{
    memset(r, 0, sizeof(*r));
    weir_http_parser_t *p = weir_http_parser_new(o->kind, &rec_cbs, r);
    if (o->head_response)
        weir_http_parser_expect_head_response(p, true);
    int status = 0;
    size_t start = 0;
    for (size_t c = 0; c <= ncuts && status == 0; c++) {
        size_t end = c < ncuts ? cuts[c] : len;
        size_t n = end - start;
        char *piece = malloc(n ? n : 1);
        memcpy(piece, data + start, n);
        size_t off = 0;
        while (off < n || (n == 0 && off == 0)) {
            size_t used = 0;
            weir_http_result_t res = weir_http_parser_execute(p, piece + off, n - off, &used);
            assert_true(used <= n - off);
            if (res == WEIR_HTTP_PAUSED) {
                weir_buf_append_str(&r->out, "PAUSED\n");
                /* The head stays valid until resume(): compare it with what on_head saw. */
                off += used;
                weir_http_parser_resume(p);
                continue;
            }
            if (res == WEIR_HTTP_ERROR) {
                status = weir_http_parser_error_status(p);
                assert_true(status >= 400);
                g_last_reason = weir_http_parser_error_reason(p);
                assert_true(strlen(g_last_reason) > 0);
                weir_buf_appendf(&r->out, "ERROR %d\n", status);
                /* errors are sticky */
                assert_int_equal(weir_http_parser_execute(p, "x", 1, &used), WEIR_HTTP_ERROR);
                break;
            }
            if (res == WEIR_HTTP_ABORTED) {
                weir_buf_append_str(&r->out, "ABORTED\n");
                status = -1;
                break;
            }
            assert_int_equal(res, WEIR_HTTP_NEED_MORE);
            assert_int_equal(used, n - off);
            off = n;
            if (n == 0)
                break;
        }
        free(piece);
        start = end;
    }
    if (status == 0 && o->finish) {
        weir_http_result_t res = weir_http_parser_finish(p);
        if (res == WEIR_HTTP_ERROR) {
            status = weir_http_parser_error_status(p);
            weir_buf_appendf(&r->out, "FINISH-ERROR %d\n", status);
        } else {
            assert_int_equal(res, WEIR_HTTP_NEED_MORE);
            weir_buf_append_str(&r->out, "FINISH\n");
        }
    }
    weir_http_parser_free(p);
    if (r->out.base == NULL)
        weir_buf_append_str(&r->out, "");
    return status;
}

static int feed_whole(const feed_opts_t *o, const char *data, size_t len, rec_t *r)
{
    return feed_cuts(o, data, len, NULL, 0, r);
}

/* Whole, every two-piece cut, and byte by byte must give the same transcript. Returns the
 * whole-input transcript (caller frees). */
static char *feed_all_splits(const feed_opts_t *o, const char *data, size_t len)
{
    rec_t whole;
    feed_whole(o, data, len, &whole);
    char *expect = weir_mem_strdup(whole.out.base);
    rec_free(&whole);

    for (size_t cut = 0; cut <= len; cut++) {
        rec_t r;
        feed_cuts(o, data, len, &cut, 1, &r);
        if (strcmp(expect, r.out.base) != 0) {
            fprintf(stderr, "cut at %zu differs:\n--- whole\n%s--- split\n%s", cut, expect,
                    r.out.base);
            fail();
        }
        rec_free(&r);
    }
    size_t *cuts = malloc((len ? len : 1) * sizeof(size_t));
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    rec_t r;
    feed_cuts(o, data, len, cuts, len ? len - 1 : 0, &r);
    if (strcmp(expect, r.out.base) != 0) {
        fprintf(stderr, "byte by byte differs:\n--- whole\n%s--- bytes\n%s", expect, r.out.base);
        fail();
    }
    rec_free(&r);
    free(cuts);
    return expect;
}

static const feed_opts_t REQ = {WEIR_HTTP_REQUEST, false, false};
static const feed_opts_t RESP = {WEIR_HTTP_RESPONSE, false, false};
static const feed_opts_t RESP_EOF = {WEIR_HTTP_RESPONSE, false, true};

#define S(lit) lit, sizeof(lit) - 1

static void expect_transcript(const feed_opts_t *o, const char *data, size_t len, const char *want)
{
    char *got = feed_all_splits(o, data, len);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "--- want\n%s--- got\n%s", want, got);
    assert_string_equal(got, want);
    free(got);
}

/* ---- malformed requests ---- */

typedef struct {
    const char *name;
    const char *data;
    size_t len;
    int status;
    bool head_seen; /* the error is after the head (body or trailers) */
} bad_case_t;

#define BAD(n, lit, st)                                                                            \
    {                                                                                              \
        n, lit, sizeof(lit) - 1, st, false                                                         \
    }
#define BAD_AFTER_HEAD(n, lit, st)                                                                 \
    {                                                                                              \
        n, lit, sizeof(lit) - 1, st, true                                                          \
    }

static const bad_case_t bad_requests[] = {
    /* framing: request smuggling */
    BAD("CL then TE",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400),
    BAD("TE then CL",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        "Content-Length: 3\r\n\r\n0\r\n\r\n",
        400),
    BAD("CL 0 with TE",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400),
    BAD("two equal CL",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
        "Content-Length: 1\r\n\r\nx",
        400),
    BAD("two different CL",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
        "Content-Length: 2\r\n\r\nxx",
        400),
    BAD("CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx", 400),
    BAD("CL letters", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400),
    BAD("CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    BAD("CL plus sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    BAD("CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400),
    BAD("CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400),
    BAD("CL inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", 400),
    BAD("CL over uint64",
        "POST / HTTP/1.1\r\nHost: a\r\n"
        "Content-Length: 99999999999999999999\r\n\r\n",
        400),
    BAD("CL over int64",
        "POST / HTTP/1.1\r\nHost: a\r\n"
        "Content-Length: 9223372036854775808\r\n\r\n",
        400),
    BAD("TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    BAD("TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501),
    BAD("TE gzip, chunked",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n"
        "\r\n0\r\n\r\n",
        501),
    BAD("TE chunked, gzip",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n"
        "\r\n0\r\n\r\n",
        501),
    BAD("TE chunked twice",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        501),
    BAD("TE chunkedx", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedx\r\n\r\n", 501),
    BAD("TE in HTTP/1.0",
        "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\n",
        400),
    /* field syntax */
    BAD("obs-fold SP", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    BAD("obs-fold HTAB", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 400),
    BAD("obs-fold after empty value", "GET / HTTP/1.1\r\nHost: a\r\nX:\r\n b\r\n\r\n", 400),
    BAD("obs-fold blank line", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n   \r\n\r\n", 400),
    BAD("obs-fold of Host", "GET / HTTP/1.1\r\nHost: a\r\n .evil\r\n\r\n", 400),
    BAD("space before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    BAD("NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400),
    BAD("CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
    BAD("LF in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\nb: c\r\n\r\n", 400),
    BAD("CTL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n", 400),
    BAD("DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fz\r\n\r\n", 400),
    BAD("ESC in value", "GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[1m\r\n\r\n", 400),
    BAD("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    BAD("space in name", "GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n", 400),
    BAD("brace in name", "GET / HTTP/1.1\r\nHost: a\r\nX{}: z\r\n\r\n", 400),
    BAD("CTL in name", "GET / HTTP/1.1\r\nHost: a\r\nX\x01: z\r\n\r\n", 400),
    BAD("empty name", "GET / HTTP/1.1\r\n: x\r\nHost: a\r\n\r\n", 400),
    BAD("no colon", "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
    BAD("LF-only lines", "GET / HTTP/1.1\nHost: a\n\n", 400),
    BAD("CR without LF", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400),
    /* Host */
    BAD("no Host in 1.1", "GET / HTTP/1.1\r\nX: a\r\n\r\n", 400),
    BAD("two Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    BAD("two Host differing case", "GET / HTTP/1.1\r\nhost: a\r\nHOST: a\r\n\r\n", 400),
    BAD("Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    BAD("Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    BAD("Host with quote", "GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", 400),
    /* request line */
    BAD("HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400),
    BAD("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400),
    BAD("HTTP/0.9 version", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 400),
    BAD("HTTP/0.9 line", "GET /\r\n\r\n", 400),
    BAD("lower-case method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    BAD("unknown method", "FOO / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    BAD("two spaces after method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    BAD("two spaces before version", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    BAD("tab in target", "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    BAD("space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    BAD("8-bit in target", "GET /a\x80 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    BAD("CTL in target", "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    BAD("no version", "GET / \r\nHost: a\r\n\r\n", 400),
    BAD("lower-case http", "GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    BAD("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    /* chunked body */
    BAD_AFTER_HEAD("chunk size not hex",
                   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                   "chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                   400),
    BAD_AFTER_HEAD("chunk size 0x",
                   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                   "\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
                   400),
    BAD_AFTER_HEAD("chunk size negative",
                   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                   "chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
                   400),
    BAD_AFTER_HEAD("chunk size space",
                   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                   "chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
                   400),
    BAD_AFTER_HEAD("chunk size overflow",
                   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                   "chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n",
                   400),
    BAD_AFTER_HEAD("chunk data without CRLF",
                   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding"
                   ": chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
                   400),
    BAD_AFTER_HEAD("chunk LF only",
                   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                   "\r\n\r\n5\nhello\n0\n\n",
                   400),
    BAD_AFTER_HEAD("chunk ext bad char",
                   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                   "chunked\r\n\r\n5;a\x01\r\nhello\r\n0\r\n\r\n",
                   400),
    /* trailers */
    BAD_AFTER_HEAD("CL in trailers",
                   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                   "\r\n\r\n0\r\nContent-Length: 5\r\n\r\n",
                   400),
    BAD_AFTER_HEAD("TE in trailers",
                   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                   "\r\n\r\n0\r\nX: 1\r\ntransfer-encoding: chunked\r\n\r\n",
                   400),
    BAD_AFTER_HEAD("Host in trailers",
                   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                   "chunked\r\n\r\n0\r\nHost: evil\r\n\r\n",
                   400),
    BAD_AFTER_HEAD("obs-fold in trailers",
                   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                   "chunked\r\n\r\n0\r\nX: 1\r\n 2\r\n\r\n",
                   400),
    BAD_AFTER_HEAD("space before trailer",
                   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                   "chunked\r\n\r\n0\r\n X: 1\r\n\r\n",
                   400),
    BAD_AFTER_HEAD("empty trailer name",
                   "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                   "chunked\r\n\r\n0\r\n: 1\r\n\r\n",
                   400),
};

static void test_malformed_requests(void **state)
{
    size_t n = sizeof(bad_requests) / sizeof(bad_requests[0]);
    assert_true(n >= 25);
    for (size_t i = 0; i < n; i++) {
        const bad_case_t *c = &bad_requests[i];
        rec_t r;
        int st = feed_whole(&REQ, c->data, c->len, &r);
        if (st != c->status || (r.heads > 0) != c->head_seen) {
            fprintf(stderr, "case '%s': status %d (want %d), heads %d\n%s", c->name, st, c->status,
                    r.heads, r.out.base);
            fail();
        }
        assert_int_equal(r.completes, 0);
        /* WEIR_TEST_VERBOSE=1 lists who refused each case (llhttp's reasons are capitalised). */
        if (getenv("WEIR_TEST_VERBOSE"))
            fprintf(stderr, "%-32s %d  %s\n", c->name, st, g_last_reason);
        rec_free(&r);
        /* Same verdict however the bytes arrive. */
        for (size_t cut = 0; cut <= c->len; cut++) {
            feed_cuts(&REQ, c->data, c->len, &cut, 1, &r);
            if ((r.heads > 0) != c->head_seen || strstr(r.out.base, "ERROR") == NULL) {
                fprintf(stderr, "case '%s' cut %zu:\n%s", c->name, cut, r.out.base);
                fail();
            }
            char want[32];
            snprintf(want, sizeof(want), "ERROR %d\n", c->status);
            if (strstr(r.out.base, want) == NULL) {
                fprintf(stderr, "case '%s' cut %zu:\n%s", c->name, cut, r.out.base);
                fail();
            }
            rec_free(&r);
        }
    }
}

/* Each case that a response parser must refuse: always 502. */
static const bad_case_t bad_responses[] = {
    BAD("CL and TE",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n"
        "\r\n0\r\n\r\n",
        502),
    BAD("two CL", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 502),
    BAD("TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc", 502),
    BAD("TE chunked, gzip, chunked",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip, "
        "chunked\r\n\r\n0\r\n\r\n",
        502),
    BAD("TE in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 502),
    BAD("obs-fold", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: a\r\n b\r\n\r\n", 502),
    BAD("NUL in value", "HTTP/1.1 200 OK\r\nX: a\0\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("bad CL", "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", 502),
    BAD("status 099", "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("status 600", "HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("status 4 digits", "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("HTTP/2.0", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("not HTTP", "SSH-2.0-OpenSSH_9.2\r\n", 502),
    BAD("space in name", "HTTP/1.1 200 OK\r\nContent Length: 0\r\n\r\n", 502),
    BAD_AFTER_HEAD("bad chunk size",
                   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "zz\r\n",
                   502),
    BAD_AFTER_HEAD("chunk without CRLF",
                   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                   "\r\n2\r\nabXX",
                   502),
    BAD_AFTER_HEAD("CL in trailers",
                   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "0\r\nContent-Length: 1\r\n\r\n",
                   502),
};

static void test_malformed_responses(void **state)
{
    for (size_t i = 0; i < sizeof(bad_responses) / sizeof(bad_responses[0]); i++) {
        const bad_case_t *c = &bad_responses[i];
        for (size_t cut = 0; cut <= c->len; cut++) {
            rec_t r;
            int st = feed_cuts(&RESP, c->data, c->len, &cut, 1, &r);
            if (st != 502 || (r.heads > 0) != c->head_seen) {
                fprintf(stderr, "case '%s' cut %zu: %d\n%s", c->name, cut, st, r.out.base);
                fail();
            }
            rec_free(&r);
        }
    }
}

/* ---- limits ---- */

/* A request with Host plus `extra` headers "X-H<i>: v". */
static char *many_headers(size_t extra, size_t *len)
{
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_append_str(&b, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (size_t i = 0; i < extra; i++)
        weir_buf_appendf(&b, "X-H%zu: v\r\n", i);
    weir_buf_append_str(&b, "\r\n");
    *len = b.len;
    return b.base;
}

static void test_limit_header_count(void **state)
{
    size_t len;
    rec_t r;
    char *ok = many_headers(WEIR_HTTP_MAX_HEADERS - 1, &len);
    assert_int_equal(feed_whole(&REQ, ok, len, &r), 0);
    assert_int_equal(r.completes, 1);
    assert_non_null(strstr(r.out.base, "[X-H98]=[v]"));
    rec_free(&r);
    free(ok);

    char *bad = many_headers(WEIR_HTTP_MAX_HEADERS, &len);
    assert_int_equal(feed_whole(&REQ, bad, len, &r), 431);
    assert_int_equal(r.heads, 0);
    rec_free(&r);
    /* byte by byte as well */
    size_t *cuts = malloc(len * sizeof(size_t));
    for (size_t i = 0; i < len - 1; i++)
        cuts[i] = i + 1;
    assert_int_equal(feed_cuts(&REQ, bad, len, cuts, len - 1, &r), 431);
    rec_free(&r);
    free(cuts);
    free(bad);

    /* 1000 headers: refused without waiting for the end of the head */
    bad = many_headers(1000, &len);
    assert_int_equal(feed_whole(&REQ, bad, len, &r), 431);
    rec_free(&r);
    free(bad);
}

/* Host: a (5 header bytes) plus one header "X-Big" whose value makes `total` bytes of names
 * and values in all. */
static char *big_header(size_t total, size_t *len)
{
    size_t vlen = total - 5 - 5;
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_append_str(&b, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    char *v = malloc(vlen);
    memset(v, 'v', vlen);
    weir_buf_append(&b, v, vlen);
    free(v);
    weir_buf_append_str(&b, "\r\n\r\n");
    *len = b.len;
    return b.base;
}

static void test_limit_header_bytes(void **state)
{
    size_t len;
    rec_t r;
    char *ok = big_header(WEIR_HTTP_MAX_HEADER_BYTES, &len);
    assert_int_equal(feed_whole(&REQ, ok, len, &r), 0);
    assert_int_equal(r.completes, 1);
    rec_free(&r);
    /* split in the middle of the value, and right at the limit */
    size_t cut = len / 2;
    assert_int_equal(feed_cuts(&REQ, ok, len, &cut, 1, &r), 0);
    rec_free(&r);
    free(ok);

    char *bad = big_header(WEIR_HTTP_MAX_HEADER_BYTES + 1, &len);
    assert_int_equal(feed_whole(&REQ, bad, len, &r), 431);
    rec_free(&r);
    for (size_t c = 0; c < len; c += 4093) {
        assert_int_equal(feed_cuts(&REQ, bad, len, &c, 1, &r), 431);
        rec_free(&r);
    }
    free(bad);

    /* 60 KiB spread over many headers, as Envoy's LargeRequestHeadersSplitRejected */
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_append_str(&b, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 60; i++) {
        weir_buf_appendf(&b, "X-%02d: ", i);
        for (int k = 0; k < 1100; k++)
            weir_buf_append(&b, "q", 1);
        weir_buf_append_str(&b, "\r\n");
    }
    weir_buf_append_str(&b, "\r\n");
    assert_int_equal(feed_whole(&REQ, b.base, b.len, &r), 431);
    rec_free(&r);
    weir_buf_free(&b);

    /* A 1 MiB header name never ends: refused once the limit is crossed. */
    weir_buf_append_str(&b, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 1024 * 1024; i++)
        weir_buf_append(&b, "n", 1);
    assert_int_equal(feed_whole(&REQ, b.base, b.len, &r), 431);
    rec_free(&r);
    weir_buf_free(&b);
}

/* A request line of exactly `total` bytes (without CRLF). */
static char *long_line(size_t total, size_t *len)
{
    size_t tlen = total - strlen("GET ") - strlen(" HTTP/1.1");
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_append_str(&b, "GET /");
    for (size_t i = 1; i < tlen; i++)
        weir_buf_append(&b, "t", 1);
    weir_buf_append_str(&b, " HTTP/1.1\r\nHost: a\r\n\r\n");
    *len = b.len;
    return b.base;
}

static void test_limit_request_line(void **state)
{
    size_t len;
    rec_t r;
    char *ok = long_line(WEIR_HTTP_MAX_REQUEST_LINE, &len);
    assert_int_equal(feed_whole(&REQ, ok, len, &r), 0);
    assert_int_equal(r.completes, 1);
    rec_free(&r);
    for (size_t c = 1; c < len; c += 1021) {
        assert_int_equal(feed_cuts(&REQ, ok, len, &c, 1, &r), 0);
        rec_free(&r);
    }
    free(ok);

    char *bad = long_line(WEIR_HTTP_MAX_REQUEST_LINE + 1, &len);
    assert_int_equal(feed_whole(&REQ, bad, len, &r), 414);
    assert_int_equal(r.heads, 0);
    rec_free(&r);
    for (size_t c = 1; c < len; c += 1021) {
        assert_int_equal(feed_cuts(&REQ, bad, len, &c, 1, &r), 414);
        rec_free(&r);
    }
    free(bad);

    /* a 70 KiB URI */
    bad = long_line(70 * 1024, &len);
    assert_int_equal(feed_whole(&REQ, bad, len, &r), 414);
    rec_free(&r);
    free(bad);
}

static void test_limit_trailers(void **state)
{
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_append_str(&b, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "1\r\nx\r\n0\r\n");
    for (int i = 0; i < WEIR_HTTP_MAX_HEADERS; i++)
        weir_buf_appendf(&b, "T-%d: v\r\n", i);
    size_t ok_len = b.len;
    weir_buf_append_str(&b, "\r\n");
    rec_t r;
    assert_int_equal(feed_whole(&REQ, b.base, b.len, &r), 0);
    assert_int_equal(r.trailer_calls, 1);
    assert_non_null(strstr(r.out.base, "TRAILER [T-99]=[v]"));
    rec_free(&r);
    b.len = ok_len;
    weir_buf_append_str(&b, "T-100: v\r\n\r\n");
    assert_int_equal(feed_whole(&REQ, b.base, b.len, &r), 431);
    assert_int_equal(r.heads, 1);
    assert_int_equal(r.completes, 0);
    rec_free(&r);
    weir_buf_free(&b);

    /* Trailer bytes over 60 KiB */
    weir_buf_append_str(&b, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "0\r\nT: ");
    for (int i = 0; i < WEIR_HTTP_MAX_HEADER_BYTES; i++)
        weir_buf_append(&b, "z", 1);
    weir_buf_append_str(&b, "\r\n\r\n");
    assert_int_equal(feed_whole(&REQ, b.base, b.len, &r), 431);
    rec_free(&r);
    weir_buf_free(&b);
}

/* ---- valid requests, split everywhere ---- */

static void test_get(void **state)
{
    expect_transcript(&REQ,
                      S("GET /the/path?q=1 HTTP/1.1\r\nHost: example.com\r\n"
                        "User-Agent: curl/7.88\r\nAccept: */*\r\n\r\n"),
                      "REQ GET /the/path?q=1 HTTP/1.1 cl=-1 chunked=0 ka=1 body=0 expect=0 "
                      "host=0\n"
                      "  [Host]=[example.com]\n"
                      "  [User-Agent]=[curl/7.88]\n"
                      "  [Accept]=[*/*]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n");
}

static void test_value_trim_and_name_case(void **state)
{
    expect_transcript(&REQ,
                      S("GET / HTTP/1.1\r\nhOsT:   a.b:8080 \t \r\nX-Empty:\r\n"
                        "X-Spaces:    \r\nX-Inner:  a  b\tc  \r\nx-obs: caf\xc3\xa9\r\n"
                        "Connection: close\r\n\r\n"),
                      "REQ GET / HTTP/1.1 cl=-1 chunked=0 ka=0 body=0 expect=0 host=0\n"
                      "  [hOsT]=[a.b:8080]\n"
                      "  [X-Empty]=[]\n"
                      "  [X-Spaces]=[]\n"
                      "  [X-Inner]=[a  b\tc]\n"
                      "  [x-obs]=[caf\xc3\xa9]\n"
                      "  [Connection]=[close]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n");
}

static void test_post_content_length(void **state)
{
    expect_transcript(&REQ,
                      S("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n"
                        "Expect: 100-continue\r\n\r\nhello world"),
                      "REQ POST /upload HTTP/1.1 cl=11 chunked=0 ka=1 body=1 expect=1 host=0\n"
                      "  [Host]=[a]\n"
                      "  [Content-Length]=[11]\n"
                      "  [Expect]=[100-continue]\n"
                      "  BODY 11 [hello world]\nCOMPLETE\nPAUSED\n");
    expect_transcript(&REQ, S("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
                      "REQ POST / HTTP/1.1 cl=0 chunked=0 ka=1 body=0 expect=0 host=0\n"
                      "  [Host]=[a]\n"
                      "  [Content-Length]=[0]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n");
}

static void test_chunked_extensions_trailers(void **state)
{
    /* llhttp 8.1 refuses a second extension after one with a value (";a=b;c=d"), so the
     * extensions here are one per chunk or valueless. */
    expect_transcript(&REQ,
                      S("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked \r\n"
                        "Trailer: X-Sum\r\n\r\n"
                        "5;name=value\r\nhello\r\n"
                        "6;quoted=\"a b;c\"\r\n world\r\n"
                        "A;x;y\r\n0123456789\r\n"
                        "0;last\r\nX-Sum:  abc \r\nX-Other: 1\r\n\r\n"),
                      "REQ POST /c HTTP/1.1 cl=-1 chunked=1 ka=1 body=1 expect=0 host=0\n"
                      "  [Host]=[a]\n"
                      "  [Transfer-Encoding]=[Chunked]\n"
                      "  [Trailer]=[X-Sum]\n"
                      "  TRAILER [X-Sum]=[abc]\n"
                      "  TRAILER [X-Other]=[1]\n"
                      "  BODY 21 [hello world0123456789]\nCOMPLETE\nPAUSED\n");
    /* chunked without trailers: on_trailers is not called */
    rec_t r;
    assert_int_equal(feed_whole(&REQ,
                                S("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                                  "chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
                                &r),
                     0);
    assert_int_equal(r.trailer_calls, 0);
    assert_int_equal(r.completes, 1);
    rec_free(&r);
}

static void test_pipelined(void **state)
{
    expect_transcript(&REQ,
                      S("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                        "POST /2 HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nabc"
                        "PUT /3 HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "2\r\nxy\r\n0\r\nT: 1\r\n\r\n"),
                      "REQ GET /1 HTTP/1.1 cl=-1 chunked=0 ka=1 body=0 expect=0 host=0\n"
                      "  [Host]=[a]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n"
                      "REQ POST /2 HTTP/1.1 cl=3 chunked=0 ka=1 body=1 expect=0 host=0\n"
                      "  [Host]=[b]\n"
                      "  [Content-Length]=[3]\n"
                      "  BODY 3 [abc]\nCOMPLETE\nPAUSED\n"
                      "REQ PUT /3 HTTP/1.1 cl=-1 chunked=1 ka=1 body=1 expect=0 host=0\n"
                      "  [Host]=[c]\n"
                      "  [Transfer-Encoding]=[chunked]\n"
                      "  TRAILER [T]=[1]\n"
                      "  BODY 2 [xy]\nCOMPLETE\nPAUSED\n");
}

static void test_http10(void **state)
{
    expect_transcript(&REQ,
                      S("GET /k HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
                        "POST /k2 HTTP/1.0\r\nConnection: keep-alive\r\n"
                        "Content-Length: 2\r\n\r\nok"
                        "GET /last HTTP/1.0\r\n\r\n"),
                      "REQ GET /k HTTP/1.0 cl=-1 chunked=0 ka=1 body=0 expect=0 host=-1\n"
                      "  [Connection]=[Keep-Alive]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n"
                      "REQ POST /k2 HTTP/1.0 cl=2 chunked=0 ka=1 body=1 expect=0 host=-1\n"
                      "  [Connection]=[keep-alive]\n"
                      "  [Content-Length]=[2]\n"
                      "  BODY 2 [ok]\nCOMPLETE\nPAUSED\n"
                      "REQ GET /last HTTP/1.0 cl=-1 chunked=0 ka=0 body=0 expect=0 host=-1\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n");
}

static void test_leading_crlf_and_forms(void **state)
{
    /* One empty line before a request is tolerated (RFC 9112 2.2). */
    expect_transcript(&REQ,
                      S("\r\nOPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"
                        "GET http://x.example/a?b HTTP/1.1\r\nHost: x.example\r\n\r\n"
                        "DELETE /r HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"),
                      "REQ OPTIONS * HTTP/1.1 cl=-1 chunked=0 ka=1 body=0 expect=0 host=0\n"
                      "  [Host]=[a]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n"
                      "REQ GET http://x.example/a?b HTTP/1.1 cl=-1 chunked=0 ka=1 body=0 "
                      "expect=0 host=0\n"
                      "  [Host]=[x.example]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n"
                      "REQ DELETE /r HTTP/1.1 cl=-1 chunked=0 ka=1 body=0 expect=0 host=0\n"
                      "  [Host]=[[::1]:80]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n");
}

static void test_upgrade_and_connect(void **state)
{
    /* Upgrade is delivered as an ordinary request; llhttp does not switch protocols, so the
     * next request on the connection is still parsed. */
    expect_transcript(&REQ,
                      S("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n"),
                      "REQ GET /ws HTTP/1.1 cl=-1 chunked=0 ka=1 body=0 expect=0 host=0\n"
                      "  [Host]=[a]\n"
                      "  [Upgrade]=[websocket]\n"
                      "  [Connection]=[Upgrade]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n"
                      "REQ GET /next HTTP/1.1 cl=-1 chunked=0 ka=1 body=0 expect=0 host=0\n"
                      "  [Host]=[a]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n");
    /* CONNECT: its connection is not HTTP afterwards, so keep_alive is false. */
    expect_transcript(&REQ, S("CONNECT x.example:443 HTTP/1.1\r\nHost: x.example:443\r\n\r\n"),
                      "REQ CONNECT x.example:443 HTTP/1.1 cl=-1 chunked=0 ka=0 body=0 expect=0 "
                      "host=0\n"
                      "  [Host]=[x.example:443]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n");
}

static void test_data_after_close(void **state)
{
    rec_t r;
    int st = feed_whole(&REQ,
                        S("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                          "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"),
                        &r);
    assert_int_equal(st, 400);
    assert_int_equal(r.heads, 1);
    assert_int_equal(r.completes, 1);
    assert_null(strstr(r.out.base, "smuggled"));
    rec_free(&r);
}

/* ---- responses ---- */

static void test_response_content_length(void **state)
{
    expect_transcript(&RESP,
                      S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello"
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                      "RESP 200 [OK] HTTP/1.1 cl=5 chunked=0 ka=1 body=1 expect=0 host=-1\n"
                      "  [Content-Length]=[5]\n"
                      "  [Server]=[x]\n"
                      "  BODY 5 [hello]\nCOMPLETE\nPAUSED\n"
                      "RESP 404 [Not Found] HTTP/1.1 cl=0 chunked=0 ka=1 body=0 expect=0 "
                      "host=-1\n"
                      "  [Content-Length]=[0]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n");
}

static void test_response_chunked(void **state)
{
    expect_transcript(&RESP,
                      S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nGrpc-Status: 0\r\n\r\n"),
                      "RESP 200 [OK] HTTP/1.1 cl=-1 chunked=1 ka=1 body=1 expect=0 host=-1\n"
                      "  [Transfer-Encoding]=[chunked]\n"
                      "  TRAILER [Grpc-Status]=[0]\n"
                      "  BODY 19 [abc0123456789abcdef]\nCOMPLETE\nPAUSED\n");
}

static void test_response_eof(void **state)
{
    expect_transcript(&RESP_EOF, S("HTTP/1.1 200 OK\r\nServer: old\r\n\r\nuntil the end"),
                      "RESP 200 [OK] HTTP/1.1 cl=-1 chunked=0 ka=0 body=1 expect=0 host=-1\n"
                      "  [Server]=[old]\n"
                      "  BODY 13 [until the end]\nCOMPLETE\nFINISH\n");
    expect_transcript(&RESP_EOF, S("HTTP/1.0 200 OK\r\n\r\n"),
                      "RESP 200 [OK] HTTP/1.0 cl=-1 chunked=0 ka=0 body=1 expect=0 host=-1\n"
                      "  BODY 0 []\nCOMPLETE\nFINISH\n");
    /* cut short: a Content-Length body, a chunked body, a head */
    rec_t r;
    assert_int_equal(
        feed_cuts(&RESP_EOF, S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"), NULL, 0, &r),
        502);
    assert_int_equal(r.completes, 0);
    rec_free(&r);
    assert_int_equal(feed_cuts(&RESP_EOF,
                               S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                 "\r\n5\r\nab"),
                               NULL, 0, &r),
                     502);
    rec_free(&r);
    assert_int_equal(feed_cuts(&RESP_EOF, S("HTTP/1.1 200 OK\r\nContent-Le"), NULL, 0, &r), 502);
    assert_int_equal(r.heads, 0);
    rec_free(&r);
    /* nothing at all, or a complete message: a clean EOF */
    assert_int_equal(feed_cuts(&RESP_EOF, S(""), NULL, 0, &r), 0);
    rec_free(&r);
}

static void test_response_head(void **state)
{
    const feed_opts_t head = {WEIR_HTTP_RESPONSE, true, false};
    /* The Content-Length describes the GET; no body follows, and the flag lasts one response
     * only, so the second response (to a GET) has its body. */
    expect_transcript(&head,
                      S("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
                        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
                      "RESP 200 [OK] HTTP/1.1 cl=10 chunked=0 ka=1 body=0 expect=0 host=-1\n"
                      "  [Content-Length]=[10]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n"
                      "RESP 200 [OK] HTTP/1.1 cl=2 chunked=0 ka=1 body=1 expect=0 host=-1\n"
                      "  [Content-Length]=[2]\n"
                      "  BODY 2 [ok]\nCOMPLETE\nPAUSED\n");
    /* A HEAD response without Content-Length is not read to EOF: it stays keep-alive. */
    expect_transcript(&head, S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                      "RESP 200 [OK] HTTP/1.1 cl=-1 chunked=1 ka=1 body=0 expect=0 host=-1\n"
                      "  [Transfer-Encoding]=[chunked]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n");
    expect_transcript(&head, S("HTTP/1.1 200 OK\r\nServer: s\r\n\r\n"),
                      "RESP 200 [OK] HTTP/1.1 cl=-1 chunked=0 ka=1 body=0 expect=0 host=-1\n"
                      "  [Server]=[s]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n");
}

static void test_response_204_304(void **state)
{
    expect_transcript(&RESP,
                      S("HTTP/1.1 204 No Content\r\n\r\n"
                        "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n"
                        "\r\nHTTP/1.1 200\r\nContent-Length: 1\r\n\r\nz"),
                      "RESP 204 [No Content] HTTP/1.1 cl=-1 chunked=0 ka=1 body=0 expect=0 "
                      "host=-1\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n"
                      "RESP 304 [Not Modified] HTTP/1.1 cl=10 chunked=0 ka=1 body=0 expect=0 "
                      "host=-1\n"
                      "  [Content-Length]=[10]\n"
                      "  [ETag]=[\"x\"]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n"
                      "RESP 200 [] HTTP/1.1 cl=1 chunked=0 ka=1 body=1 expect=0 host=-1\n"
                      "  [Content-Length]=[1]\n"
                      "  BODY 1 [z]\nCOMPLETE\nPAUSED\n");
}

static void test_response_interim(void **state)
{
    expect_transcript(&RESP,
                      S("HTTP/1.1 100 Continue\r\n\r\n"
                        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"),
                      "RESP 200 [OK] HTTP/1.1 cl=2 chunked=0 ka=1 body=1 expect=0 host=-1\n"
                      "  [Content-Length]=[2]\n"
                      "  BODY 2 [hi]\nCOMPLETE\nPAUSED\n");
    /* EOF after the 100 alone: the response was cut short */
    rec_t r;
    assert_int_equal(feed_cuts(&RESP_EOF, S("HTTP/1.1 100 Continue\r\n\r\n"), NULL, 0, &r), 502);
    assert_int_equal(r.heads, 0);
    rec_free(&r);
    /* 101 is final; the connection is not HTTP any more */
    expect_transcript(&RESP,
                      S("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\n\r\n"),
                      "RESP 101 [Switching Protocols] HTTP/1.1 cl=-1 chunked=0 ka=0 body=0 "
                      "expect=0 host=-1\n"
                      "  [Upgrade]=[websocket]\n"
                      "  [Connection]=[Upgrade]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n");
}

static void test_response_keep_alive(void **state)
{
    expect_transcript(&RESP, S("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
                      "RESP 200 [OK] HTTP/1.1 cl=0 chunked=0 ka=0 body=0 expect=0 host=-1\n"
                      "  [Connection]=[close]\n"
                      "  [Content-Length]=[0]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n");
    expect_transcript(&RESP,
                      S("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                        "Content-Length: 0\r\n\r\n"),
                      "RESP 200 [OK] HTTP/1.0 cl=0 chunked=0 ka=1 body=0 expect=0 host=-1\n"
                      "  [Connection]=[keep-alive]\n"
                      "  [Content-Length]=[0]\n"
                      "  BODY 0 []\nCOMPLETE\nPAUSED\n");
}

/* ---- API behaviour ---- */

static void test_pause_consumed(void **state)
{
    static const char in[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    rec_t r;
    memset(&r, 0, sizeof(r));
    weir_http_parser_t *p = weir_http_parser_new(WEIR_HTTP_REQUEST, &rec_cbs, &r);
    assert_ptr_equal(weir_http_parser_data(p), &r);
    assert_false(weir_http_parser_started(p));
    size_t used = 99;
    assert_int_equal(weir_http_parser_execute(p, in, sizeof(in) - 1, &used), WEIR_HTTP_PAUSED);
    assert_int_equal(used, 28);
    assert_int_equal(r.completes, 1);
    assert_false(weir_http_parser_in_message(p));
    assert_false(weir_http_parser_started(p));
    /* Until resume(), execute() goes nowhere. */
    assert_int_equal(weir_http_parser_execute(p, in + used, sizeof(in) - 1 - used, &used),
                     WEIR_HTTP_PAUSED);
    assert_int_equal(used, 0);
    /* finish() between messages is clean, paused or not. */
    assert_int_equal(weir_http_parser_finish(p), WEIR_HTTP_NEED_MORE);
    weir_http_parser_resume(p);
    assert_int_equal(weir_http_parser_execute(p, in + 28, 10, &used), WEIR_HTTP_NEED_MORE);
    assert_int_equal(used, 10);
    assert_true(weir_http_parser_started(p));
    assert_false(weir_http_parser_in_message(p));
    assert_int_equal(weir_http_parser_execute(p, in + 38, sizeof(in) - 1 - 38, &used),
                     WEIR_HTTP_PAUSED);
    assert_int_equal(used, sizeof(in) - 1 - 38);
    weir_http_parser_resume(p);
    assert_int_equal(weir_http_parser_finish(p), WEIR_HTTP_NEED_MORE);
    weir_http_parser_free(p);
    rec_free(&r);

    /* A request cut in its head or body is an error at EOF. */
    p = weir_http_parser_new(WEIR_HTTP_REQUEST, &rec_cbs, &r);
    assert_int_equal(weir_http_parser_execute(p,
                                              S("POST / HTTP/1.1\r\nHost: a\r\n"
                                                "Content-Length: 4\r\n\r\nab"),
                                              &used),
                     WEIR_HTTP_NEED_MORE);
    assert_true(weir_http_parser_in_message(p));
    assert_true(r.in_message_at_body);
    assert_int_equal(weir_http_parser_finish(p), WEIR_HTTP_ERROR);
    assert_int_equal(weir_http_parser_error_status(p), 400);
    weir_http_parser_free(p);
    rec_free(&r);
}

static void test_abort(void **state)
{
    static const char in[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "3\r\nabc\r\n0\r\nT: 1\r\n\r\n";
    for (int where = 1; where <= 4; where++) {
        rec_t r;
        memset(&r, 0, sizeof(r));
        r.abort_in = where;
        weir_http_parser_t *p = weir_http_parser_new(WEIR_HTTP_REQUEST, &rec_cbs, &r);
        size_t used;
        assert_int_equal(weir_http_parser_execute(p, in, sizeof(in) - 1, &used), WEIR_HTTP_ABORTED);
        assert_true(used <= sizeof(in) - 1);
        assert_int_equal(weir_http_parser_execute(p, "x", 1, &used), WEIR_HTTP_ABORTED);
        weir_http_parser_free(p);
        rec_free(&r);
    }
}

static void test_no_callbacks(void **state)
{
    /* A parser without callbacks still frames messages. */
    weir_http_parser_t *p = weir_http_parser_new(WEIR_HTTP_REQUEST, NULL, NULL);
    size_t used;
    assert_int_equal(weir_http_parser_execute(p,
                                              S("POST / HTTP/1.1\r\nHost: a\r\n"
                                                "Content-Length: 1\r\n\r\nxGET"),
                                              &used),
                     WEIR_HTTP_PAUSED);
    assert_int_equal(used, 48);
    weir_http_parser_free(p);
}

/* Header state of a response parser is per message: a long first head does not count
 * against the second. */
static void test_limits_per_message(void **state)
{
    weir_buf_t b = WEIR_BUF_INIT;
    for (int m = 0; m < 3; m++) {
        weir_buf_append_str(&b, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
        for (int i = 0; i < 40000; i++)
            weir_buf_append(&b, "v", 1);
        weir_buf_append_str(&b, "\r\n");
        for (int i = 0; i < 90; i++)
            weir_buf_appendf(&b, "Y-%d: 1\r\n", i);
        weir_buf_append_str(&b, "\r\n");
    }
    rec_t r;
    assert_int_equal(feed_whole(&REQ, b.base, b.len, &r), 0);
    assert_int_equal(r.completes, 3);
    rec_free(&r);
    weir_buf_free(&b);
}

/* ---- helpers ---- */

static const weir_http_head_t *g_head;

static int keep_head(weir_http_parser_t *p, weir_http_head_t *h)
{
    g_head = h;
    return 0;
}

static void test_helpers(void **state)
{
    assert_true(weir_http_name_is("Content-Length", 14, "content-length"));
    assert_true(weir_http_name_is("HOST", 4, "host"));
    assert_false(weir_http_name_is("Hos", 3, "host"));
    assert_false(weir_http_name_is("Hostx", 5, "host"));

    /* On a parsed head, which stays valid (and unchanged) after PAUSED until resume(). */
    static const weir_http_parser_cbs_t cbs = {.on_head = keep_head};
    weir_http_parser_t *p = weir_http_parser_new(WEIR_HTTP_REQUEST, &cbs, NULL);
    static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Foo ,\r\n"
                             "connection: x-bar,,Upgrade\r\nX-Foo: 1\r\nX-Keep: 2\r\n\r\n";
    char *copy = malloc(sizeof(in));
    memcpy(copy, in, sizeof(in));
    size_t used;
    assert_int_equal(weir_http_parser_execute(p, copy, sizeof(in) - 1, &used), WEIR_HTTP_PAUSED);
    memset(copy, '#', sizeof(in)); /* the head must not point into the input */
    free(copy);
    const weir_http_head_t *h = g_head;
    assert_non_null(h);
    assert_int_equal(h->n_headers, 5);
    assert_int_equal(h->host_index, 0);
    assert_ptr_equal(weir_http_head_find(h, "connection"), &h->headers[1]);
    assert_string_equal(weir_http_head_find(h, "x-keep")->value, "2");
    assert_null(weir_http_head_find(h, "x-none"));
    assert_true(weir_http_is_hop_by_hop(h, "X-Foo", 5));
    assert_true(weir_http_is_hop_by_hop(h, "x-bar", 5));
    assert_true(weir_http_is_hop_by_hop(h, "upgrade", 7));
    assert_false(weir_http_is_hop_by_hop(h, "X-Keep", 6));
    assert_false(weir_http_is_hop_by_hop(h, "Host", 4));
    weir_http_parser_free(p);
}

/* weir_http_is_hop_by_hop and head_find need a head; build one by hand. */
static void test_hop_by_hop(void **state)
{
    weir_http_head_t h;
    memset(&h, 0, sizeof(h));
    h.host_index = -1;
    h.content_length = -1;
    const char *pairs[][2] = {{"Host", "a"},
                              {"Connection", "keep-alive, X-Foo ,"},
                              {"connection", "x-bar,,Upgrade"},
                              {"X-Foo", "1"},
                              {"X-Keep", "2"}};
    for (size_t i = 0; i < 5; i++) {
        h.headers[i].name = pairs[i][0];
        h.headers[i].name_len = strlen(pairs[i][0]);
        h.headers[i].value = pairs[i][1];
        h.headers[i].value_len = strlen(pairs[i][1]);
    }
    h.n_headers = 5;

    assert_ptr_equal(weir_http_head_find(&h, "connection"), &h.headers[1]);
    assert_ptr_equal(weir_http_head_find(&h, "x-keep"), &h.headers[4]);
    assert_null(weir_http_head_find(&h, "x-none"));

    static const char *hop[] = {"Connection", "keep-alive", "Proxy-Connection", "Transfer-Encoding",
                                "UPGRADE",    "te",         "Trailer",          "X-Foo",
                                "x-foo",      "X-BAR"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        assert_true(weir_http_is_hop_by_hop(&h, hop[i], strlen(hop[i])));
    static const char *end[] = {"Host", "X-Keep", "Content-Length", "Trailers",
                                "tee",  "X-Fo",   "x-foo2",         ""};
    for (size_t i = 0; i < sizeof(end) / sizeof(end[0]); i++)
        assert_false(weir_http_is_hop_by_hop(&h, end[i], strlen(end[i])));
    assert_true(weir_http_is_hop_by_hop(NULL, "te", 2));
    assert_false(weir_http_is_hop_by_hop(NULL, "x-foo", 5));
}

static void test_reason_and_chunk_header(void **state)
{
    assert_string_equal(weir_http_reason_phrase(200), "OK");
    assert_string_equal(weir_http_reason_phrase(404), "Not Found");
    assert_string_equal(weir_http_reason_phrase(431), "Request Header Fields Too Large");
    assert_string_equal(weir_http_reason_phrase(503), "Service Unavailable");
    assert_string_equal(weir_http_reason_phrase(504), "Gateway Timeout");
    assert_string_equal(weir_http_reason_phrase(799), "Unknown");

    char buf[18];
    struct {
        size_t len;
        const char *want;
    } cases[] = {{0, "0\r\n"},
                 {1, "1\r\n"},
                 {10, "a\r\n"},
                 {255, "ff\r\n"},
                 {4096, "1000\r\n"},
                 {0xdeadbeef, "deadbeef\r\n"},
                 {SIZE_MAX, "ffffffffffffffff\r\n"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = weir_http_chunk_header(buf, cases[i].len);
        assert_int_equal(n, strlen(cases[i].want));
        assert_memory_equal(buf, cases[i].want, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed_requests),
        cmocka_unit_test(test_malformed_responses),
        cmocka_unit_test(test_limit_header_count),
        cmocka_unit_test(test_limit_header_bytes),
        cmocka_unit_test(test_limit_request_line),
        cmocka_unit_test(test_limit_trailers),
        cmocka_unit_test(test_limits_per_message),
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_value_trim_and_name_case),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_chunked_extensions_trailers),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_http10),
        cmocka_unit_test(test_leading_crlf_and_forms),
        cmocka_unit_test(test_upgrade_and_connect),
        cmocka_unit_test(test_data_after_close),
        cmocka_unit_test(test_response_content_length),
        cmocka_unit_test(test_response_chunked),
        cmocka_unit_test(test_response_eof),
        cmocka_unit_test(test_response_head),
        cmocka_unit_test(test_response_204_304),
        cmocka_unit_test(test_response_interim),
        cmocka_unit_test(test_response_keep_alive),
        cmocka_unit_test(test_pause_consumed),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_no_callbacks),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_reason_and_chunk_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
