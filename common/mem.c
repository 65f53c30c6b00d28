/* common/mem.c: see mem.h. */
#include "common/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

static void out_of_memory(size_t size)
{
    fprintf(stderr, "weir: out of memory allocating %zu bytes\n", size);
    abort();
}

void *weir_mem_alloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        out_of_memory(size);
    return p;
}

void *weir_mem_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        out_of_memory(n * size);
    return p;
}

void *weir_mem_realloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (q == NULL)
        out_of_memory(size);
    return q;
}

char *weir_mem_strdup(const char *s)
{
    return s == NULL ? NULL : weir_mem_strndup(s, strlen(s));
}

char *weir_mem_strndup(const char *s, size_t n)
{
    char *d = weir_mem_alloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

int weir_buf_try_reserve(weir_buf_t *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t want = b->cap ? b->cap : 256;
    while (want - b->len < extra) {
        if (want > SIZE_MAX / 2)
            return -1;
        want *= 2;
    }
    char *p = realloc(b->base, want);
    if (p == NULL)
        return -1;
    b->base = p;
    b->cap = want;
    return 0;
}

void weir_buf_append(weir_buf_t *b, const void *data, size_t len)
{
    if (weir_buf_try_reserve(b, len + 1) != 0)
        out_of_memory(len);
    if (len)
        memcpy(b->base + b->len, data, len);
    b->len += len;
    b->base[b->len] = '\0'; /* keeps text buffers printable; not counted in len */
}

void weir_buf_append_str(weir_buf_t *b, const char *s)
{
    weir_buf_append(b, s, strlen(s));
}

void weir_buf_appendf(weir_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (weir_buf_try_reserve(b, (size_t)n + 1) != 0)
        out_of_memory((size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->base + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void weir_buf_consume(weir_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->base, b->base + n, b->len - n);
    b->len -= n;
}

void weir_buf_reset(weir_buf_t *b)
{
    b->len = 0;
}

void weir_buf_free(weir_buf_t *b)
{
    free(b->base);
    b->base = NULL;
    b->len = b->cap = 0;
}
