/* common/mem.h: allocation helpers and a growable byte buffer.
 *
 * Fixed-size allocations (our own structures) abort on failure, as h2o does: there is no
 * sensible recovery and checking every one hides the real error paths. Sizes a peer controls
 * go through weir_buf_try_reserve(), whose failure the caller turns into a 4xx/5xx. */
#ifndef WEIR_MEM_H
#define WEIR_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

void *weir_mem_alloc(size_t size);             /* malloc or abort */
void *weir_mem_calloc(size_t n, size_t size);  /* calloc or abort */
void *weir_mem_realloc(void *p, size_t size);  /* realloc or abort */
char *weir_mem_strdup(const char *s);          /* NULL stays NULL */
char *weir_mem_strndup(const char *s, size_t n);

/* A growable byte buffer. Owns `base`. Zero-initialise (WEIR_BUF_INIT) before use. */
typedef struct {
    char *base;
    size_t len, cap;
} weir_buf_t;

#define WEIR_BUF_INIT {NULL, 0, 0}

/* Makes room for `extra` more bytes; returns 0 or -1 when the allocation fails. */
int weir_buf_try_reserve(weir_buf_t *b, size_t extra);
/* Appends; abort on allocation failure (for sizes bounded by our own limits). */
void weir_buf_append(weir_buf_t *b, const void *data, size_t len);
void weir_buf_append_str(weir_buf_t *b, const char *s);
void weir_buf_appendf(weir_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes, keeping the rest. */
void weir_buf_consume(weir_buf_t *b, size_t n);
void weir_buf_reset(weir_buf_t *b); /* len = 0, keeps the memory */
void weir_buf_free(weir_buf_t *b);  /* releases the memory */

#endif
