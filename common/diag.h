/* common/diag.h: compiler-style diagnostics for configuration.
 *
 * Every problem found while loading YAML is recorded with the place it came from and printed
 * the way GCC prints, so editors and CI logs link straight to it:
 *
 *     virtualservice.yaml:14:9: error: http[0].route[0].weight: must be >= 0, got -3
 *
 * The analyzer's findings (common/analyze.h) also carry a stable code, Istio's where one
 * exists, and a one-line hint saying what to do:
 *
 *     virtualservice.yaml:20:5: warning: IST0130: http[2]: never used, ... (hint: move it ...)
 *
 * A weir_diags_t owns copies of every string it holds; callers may free theirs at once.
 * Single-threaded, like the rest of weir. */
#ifndef WEIR_DIAG_H
#define WEIR_DIAG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum { WEIR_DIAG_WARNING, WEIR_DIAG_ERROR } weir_diag_level_t;

typedef struct {
    weir_diag_level_t level;
    char *file;         /* as given on the command line, or "" */
    unsigned line, col; /* 1-based; 0 when the problem has no place (a missing file) */
    char *msg;          /* without the "error: " prefix */
    char *code;         /* "IST0130", "WEIR0001" ...; NULL for the loader's own diagnostics */
    char *hint;         /* what to do about it, one line; NULL when there is none */
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
/* Same, with a code and a hint (either may be NULL). The hint is taken as is, not a format. */
void weir_diags_add_coded(weir_diags_t *d, weir_diag_level_t level, const char *code,
                          const char *file, unsigned line, unsigned col, const char *hint,
                          const char *fmt, ...) __attribute__((format(printf, 8, 9)));
void weir_diags_vadd_coded(weir_diags_t *d, weir_diag_level_t level, const char *code,
                           const char *file, unsigned line, unsigned col, const char *hint,
                           const char *fmt, va_list ap);

/* Prints every diagnostic, one per line, in the order recorded:
 * "file:line:col: error: msg" (or "file: error: msg" when line is 0), with "CODE: " before the
 * message and " (hint: ...)" after it when the diagnostic has them. */
void weir_diags_print(const weir_diags_t *d, FILE *out);

/* Sorts items[from..] by place, stably (a warning and an error at one place keep their order):
 * by the file's position in files[] (files not listed last, by name; files NULL: by name),
 * then line, then column. Compilers print in that order. */
void weir_diags_sort(weir_diags_t *d, size_t from, const char *const *files, size_t n_files);

/* Formats a one-line error into err[errlen] for functions that report through a caller's
 * buffer (TLS setup, certificates, the Kubernetes client); err NULL or errlen 0: nothing. */
void weir_errorf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Levenshtein distance, ASCII case ignored, for "did you mean" hints; SIZE_MAX when either
 * string is longer than 64 bytes. */
size_t weir_diag_edit_distance(const char *a, const char *b);
/* Whether `candidate` is close enough to `word` to be suggested for it: at most 2 edits
 * (1 for names of 4 bytes or less), as the loader suggests field names. */
bool weir_diag_is_near(const char *word, const char *candidate);

/* Frees every item; *d is left empty and reusable. */
void weir_diags_clear(weir_diags_t *d);

#endif
