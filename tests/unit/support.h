/* tests/unit/support.h: what the config and analyzer tests share: diagnostics printed as the
 * CLI prints them, golden files read and written, and a checked snprintf. Include after
 * <cmocka.h>. */
#ifndef WEIR_TESTS_UNIT_SUPPORT_H
#define WEIR_TESTS_UNIT_SUPPORT_H

#include <stdio.h>

#include "common/diag.h"
#include "common/mem.h"

/* The seed scenario's YAML, unchanged (tests skip when it is absent). */
#define SHARED_SEED "/work/shared/scenarios/seed"

/* snprintf into an array, failing the test on truncation (and telling GCC it was checked). */
#define FMT(buf, ...) assert_true((size_t)snprintf((buf), sizeof(buf), __VA_ARGS__) < sizeof(buf))

static inline char *printed(const weir_diags_t *d)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    weir_diags_print(d, f);
    fclose(f);
    return buf;
}

static inline char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    weir_buf_t b = WEIR_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        weir_buf_append(&b, chunk, n);
    fclose(f);
    if (b.base == NULL)
        weir_buf_append(&b, "", 0);
    return b.base;
}

static inline void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

#endif
