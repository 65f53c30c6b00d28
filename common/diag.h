/* common/diag.h: compiler-style diagnostics for configuration.
 *
 * Every problem found while loading YAML is recorded with the place it came from and printed
 * the way GCC prints, so editors and CI logs link straight to it:
 *
 *     virtualservice.yaml:14:9: error: http[0].route[0].weight: must be >= 0, got -3
 *
 * A weir_diags_t owns copies of every string it holds; callers may free theirs at once.
 * Single-threaded, like the rest of weir. */
#ifndef WEIR_DIAG_H
#define WEIR_DIAG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

typedef enum { WEIR_DIAG_WARNING, WEIR_DIAG_ERROR } weir_diag_level_t;

typedef struct {
    weir_diag_level_t level;
    char *file;         /* as given on the command line, or "" */
    unsigned line, col; /* 1-based; 0 when the problem has no place (a missing file) */
    char *msg;          /* without the "error: " prefix */
} weir_diag_t;

typedef struct {
    weir_diag_t *items;
    size_t count, cap;
    size_t errors; /* how many items are WEIR_DIAG_ERROR */
} weir_diags_t;

#define WEIR_DIAGS_INIT {NULL, 0, 0, 0}

/* Records one diagnostic. file may be NULL. Never fails: an allocation failure aborts. */
void weir_diags_add(weir_diags_t *d, weir_diag_level_t level, const char *file, unsigned line,
                    unsigned col, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void weir_diags_vadd(weir_diags_t *d, weir_diag_level_t level, const char *file, unsigned line,
                     unsigned col, const char *fmt, va_list ap);

/* Prints every diagnostic, one per line, in the order recorded:
 * "file:line:col: error: msg" (or "file: error: msg" when line is 0). */
void weir_diags_print(const weir_diags_t *d, FILE *out);

/* Frees every item; *d is left empty and reusable. */
void weir_diags_clear(weir_diags_t *d);

#endif
