/* tests/fuzz/fuzz_http_codec.c: libFuzzer driver for common/http_codec.c. Not built by CMake.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DLLHTTP_STRICT_MODE=1 -D_GNU_SOURCE \
 *     -I. -I/usr/share/include/llhttp tests/fuzz/fuzz_http_codec.c common/http_codec.c \
 *     common/mem.c /usr/share/llhttp/{llhttp,api,http}.c -o /tmp/fuzz_http_codec
 *   /tmp/fuzz_http_codec -max_len=4096 tests/fuzz/corpus/http_codec
 *
 * Input: byte 0 picks request or response parser, a HEAD response, and whether finish() runs;
 * byte 1 seeds the piece sizes; the rest is the stream. The stream is parsed twice, whole and
 * in pieces; besides memory errors, the driver aborts when the two runs disagree on whether
 * the stream is valid, on how many messages completed, or (for a valid stream) on any head,
 * body or trailer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/http_codec.h"
#include "common/mem.h"

typedef struct {
    weir_buf_t out;
    weir_buf_t body; /* pieces differ with the split: written out whole at completion */
    const weir_http_head_t *head;
    int completes;
} fz_rec_t;

static int fz_head(weir_http_parser_t *p, weir_http_head_t *h)
{
    fz_rec_t *r = weir_http_parser_data(p);
    r->head = h;
    if (h->method)
        weir_buf_appendf(&r->out, "Q %.*s %.*s", (int)h->method_len, h->method, (int)h->target_len,
                         h->target);
    else
        weir_buf_appendf(&r->out, "S %d %.*s", h->status, (int)h->reason_len, h->reason);
    weir_buf_appendf(&r->out, " %d.%d %lld %d %d %d %d %d\n", h->version_major, h->version_minor,
                     (long long)h->content_length, h->chunked, h->keep_alive, h->expect_continue,
                     h->has_body, h->host_index);
    for (size_t i = 0; i < h->n_headers; i++) {
        const weir_http_header_t *f = &h->headers[i];
        weir_buf_appendf(&r->out, "H %.*s=%.*s\n", (int)f->name_len, f->name, (int)f->value_len,
                         f->value);
        /* every hop-by-hop lookup walks the Connection lists */
        (void)weir_http_is_hop_by_hop(h, f->name, f->name_len);
    }
    return 0;
}

static int fz_body(weir_http_parser_t *p, const char *data, size_t len)
{
    fz_rec_t *r = weir_http_parser_data(p);
    if (len == 0)
        abort();
    weir_buf_append(&r->body, data, len);
    return 0;
}

static int fz_trailers(weir_http_parser_t *p, const weir_http_header_t *t, size_t n)
{
    fz_rec_t *r = weir_http_parser_data(p);
    for (size_t i = 0; i < n; i++)
        weir_buf_appendf(&r->out, "T %.*s=%.*s\n", (int)t[i].name_len, t[i].name,
                         (int)t[i].value_len, t[i].value);
    return 0;
}

static int fz_complete(weir_http_parser_t *p)
{
    fz_rec_t *r = weir_http_parser_data(p);
    r->completes++;
    /* The head must still be readable: ASan checks it. */
    size_t sum = 0;
    for (size_t i = 0; i < r->head->n_headers; i++)
        sum += (unsigned char)r->head->headers[i].name[0];
    weir_buf_appendf(&r->out, "B %zu ", r->body.len);
    weir_buf_append(&r->out, r->body.base, r->body.len);
    weir_buf_appendf(&r->out, "\nC %zu\n", sum & 1);
    weir_buf_reset(&r->body);
    return 0;
}

static const weir_http_parser_cbs_t fz_cbs = {fz_head, fz_body, fz_trailers, fz_complete};

static int run(const uint8_t *data, size_t len, uint8_t mode, uint8_t seed, bool split, fz_rec_t *r)
{
    weir_http_parser_t *p =
        weir_http_parser_new(mode & 1 ? WEIR_HTTP_RESPONSE : WEIR_HTTP_REQUEST, &fz_cbs, r);
    weir_http_parser_expect_head_response(p, (mode & 2) != 0);
    unsigned rnd = seed * 2654435761u + 1;
    size_t off = 0;
    int err = 0;
    while (off < len && !err) {
        size_t n = len - off;
        if (split) {
            rnd = rnd * 1103515245u + 12345u;
            n = 1 + (rnd >> 16) % 7;
            if (n > len - off)
                n = len - off;
        }
        /* An exact-size copy: reading past it is an ASan error. */
        char *piece = malloc(n);
        memcpy(piece, data + off, n);
        size_t at = 0;
        while (at < n) {
            size_t used = 0;
            weir_http_result_t res = weir_http_parser_execute(p, piece + at, n - at, &used);
            if (used > n - at)
                abort();
            at += used;
            if (res == WEIR_HTTP_PAUSED) {
                weir_http_parser_resume(p);
                if (mode & 2)
                    weir_http_parser_expect_head_response(p, true);
                continue;
            }
            if (res != WEIR_HTTP_NEED_MORE) {
                int st = weir_http_parser_error_status(p);
                if (st != 400 && st != 414 && st != 431 && st != 501 && st != 502)
                    abort();
                if ((mode & 1) && st != 502)
                    abort();
                err = 1;
            }
            break;
        }
        free(piece);
        off += n;
    }
    if (!err && (mode & 4) && weir_http_parser_finish(p) == WEIR_HTTP_ERROR)
        err = 1;
    weir_http_parser_free(p);
    return err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t mode = data[0], seed = data[1];
    data += 2;
    size -= 2;
    fz_rec_t a = {WEIR_BUF_INIT, WEIR_BUF_INIT, NULL, 0};
    fz_rec_t b = {WEIR_BUF_INIT, WEIR_BUF_INIT, NULL, 0};
    int ea = run(data, size, mode, seed, false, &a);
    int eb = run(data, size, mode, seed, true, &b);
    weir_buf_append_str(&a.out, "");
    weir_buf_append_str(&b.out, "");
    if (ea != eb || a.completes != b.completes ||
        (!ea && (a.out.len != b.out.len || memcmp(a.out.base, b.out.base, a.out.len) != 0))) {
        fprintf(stderr, "whole (err %d):\n%.*s\nsplit (err %d):\n%.*s\n", ea, (int)a.out.len,
                a.out.base, eb, (int)b.out.len, b.out.base);
        abort();
    }
    weir_buf_free(&a.out);
    weir_buf_free(&b.out);
    weir_buf_free(&a.body);
    weir_buf_free(&b.body);
    return 0;
}
