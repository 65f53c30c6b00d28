/* common/diag.c: see diag.h. */
#include "common/diag.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

static weir_diag_t *add(weir_diags_t *d, weir_diag_level_t level, const char *file, unsigned line,
                        unsigned col, const char *fmt, va_list ap)
{
    if (d->count == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->items = weir_mem_realloc(d->items, d->cap * sizeof(*d->items));
    }
    weir_buf_t msg = WEIR_BUF_INIT;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    if (n > 0) {
        weir_buf_try_reserve(&msg, (size_t)n + 1);
        vsnprintf(msg.base, (size_t)n + 1, fmt, ap2);
    } else {
        msg.base = weir_mem_strdup("");
    }
    va_end(ap2);
    weir_diag_t *it = &d->items[d->count++];
    *it = (weir_diag_t){.level = level,
                        .file = weir_mem_strdup(file ? file : ""),
                        .line = line,
                        .col = col,
                        .msg = msg.base};
    if (level == WEIR_DIAG_ERROR)
        d->errors++;
    return it;
}

void weir_diags_vadd(weir_diags_t *d, weir_diag_level_t level, const char *file, unsigned line,
                     unsigned col, const char *fmt, va_list ap)
{
    add(d, level, file, line, col, fmt, ap);
}

void weir_diags_add(weir_diags_t *d, weir_diag_level_t level, const char *file, unsigned line,
                    unsigned col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(d, level, file, line, col, fmt, ap);
    va_end(ap);
}

void weir_diags_vadd_coded(weir_diags_t *d, weir_diag_level_t level, const char *code,
                           const char *file, unsigned line, unsigned col, const char *hint,
                           const char *fmt, va_list ap)
{
    weir_diag_t *it = add(d, level, file, line, col, fmt, ap);
    it->code = weir_mem_strdup(code);
    it->hint = weir_mem_strdup(hint);
}

void weir_diags_add_coded(weir_diags_t *d, weir_diag_level_t level, const char *code,
                          const char *file, unsigned line, unsigned col, const char *hint,
                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    weir_diags_vadd_coded(d, level, code, file, line, col, hint, fmt, ap);
    va_end(ap);
}

void weir_diags_print(const weir_diags_t *d, FILE *out)
{
    for (size_t i = 0; i < d->count; i++) {
        const weir_diag_t *it = &d->items[i];
        const char *lvl = it->level == WEIR_DIAG_ERROR ? "error" : "warning";
        if (it->line)
            fprintf(out, "%s:%u:%u: %s: ", it->file, it->line, it->col, lvl);
        else if (it->file[0])
            fprintf(out, "%s: %s: ", it->file, lvl);
        else
            fprintf(out, "weir: %s: ", lvl);
        if (it->code)
            fprintf(out, "%s: ", it->code);
        fputs(it->msg, out);
        if (it->hint)
            fprintf(out, " (hint: %s)", it->hint);
        fputc('\n', out);
    }
}

/* A file's rank: its position in files[], or past them all. */
static size_t file_rank(const char *file, const char *const *files, size_t n_files)
{
    for (size_t i = 0; i < n_files; i++) {
        if (strcmp(files[i], file) == 0)
            return i;
    }
    return n_files;
}

static bool sorts_before(const weir_diag_t *a, const weir_diag_t *b, const char *const *files,
                         size_t n_files)
{
    size_t ra = file_rank(a->file, files, n_files), rb = file_rank(b->file, files, n_files);
    if (ra != rb)
        return ra < rb;
    int byname = ra == n_files ? strcmp(a->file, b->file) : 0;
    if (byname != 0)
        return byname < 0;
    return a->line < b->line || (a->line == b->line && a->col < b->col);
}

void weir_diags_sort(weir_diags_t *d, size_t from, const char *const *files, size_t n_files)
{
    /* Insertion sort: stable, and a config has a handful of diagnostics. */
    for (size_t i = from + 1; i < d->count; i++) {
        weir_diag_t it = d->items[i];
        size_t j = i;
        for (; j > from && sorts_before(&it, &d->items[j - 1], files, n_files); j--)
            d->items[j] = d->items[j - 1];
        d->items[j] = it;
    }
}

void weir_errorf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

size_t weir_diag_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[65];
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t sub =
                diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            size_t best = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
            row[j] = sub < best ? sub : best;
            diag = up;
        }
    }
    return row[lb];
}

bool weir_diag_is_near(const char *word, const char *candidate)
{
    return weir_diag_edit_distance(word, candidate) <= (strlen(candidate) > 4 ? 2u : 1u);
}

void weir_diags_clear(weir_diags_t *d)
{
    for (size_t i = 0; i < d->count; i++) {
        free(d->items[i].file);
        free(d->items[i].msg);
        free(d->items[i].code);
        free(d->items[i].hint);
    }
    free(d->items);
    d->items = NULL;
    d->count = d->cap = d->errors = 0;
}
