/* common/diag.c: see diag.h. */
#include "common/diag.h"

#include <stdlib.h>

#include "common/mem.h"

void weir_diags_vadd(weir_diags_t *d, weir_diag_level_t level, const char *file, unsigned line,
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
    it->level = level;
    it->file = weir_mem_strdup(file ? file : "");
    it->line = line;
    it->col = col;
    it->msg = msg.base;
    if (level == WEIR_DIAG_ERROR)
        d->errors++;
}

void weir_diags_add(weir_diags_t *d, weir_diag_level_t level, const char *file, unsigned line,
                    unsigned col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    weir_diags_vadd(d, level, file, line, col, fmt, ap);
    va_end(ap);
}

void weir_diags_print(const weir_diags_t *d, FILE *out)
{
    for (size_t i = 0; i < d->count; i++) {
        const weir_diag_t *it = &d->items[i];
        const char *lvl = it->level == WEIR_DIAG_ERROR ? "error" : "warning";
        if (it->line)
            fprintf(out, "%s:%u:%u: %s: %s\n", it->file, it->line, it->col, lvl, it->msg);
        else if (it->file[0])
            fprintf(out, "%s: %s: %s\n", it->file, lvl, it->msg);
        else
            fprintf(out, "weir: %s: %s\n", lvl, it->msg);
    }
}

void weir_diags_clear(weir_diags_t *d)
{
    for (size_t i = 0; i < d->count; i++) {
        free(d->items[i].file);
        free(d->items[i].msg);
    }
    free(d->items);
    d->items = NULL;
    d->count = d->cap = d->errors = 0;
}
