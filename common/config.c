/* common/config.c: see config.h.
 *
 * Reading is table driven: each Istio message has a table of its fields (name, how to read
 * the value, where to store it), and one walker applies a table to a YAML map, warns about
 * keys no table knows and keeps the field path ("http[0].route[1].weight") that every message
 * starts with. Checks that need a whole message run after its walk; checks that need other
 * resources (gateways, subsets, hosts) are recorded as references and run once every file has
 * been read.
 *
 * Memory: everything reachable from the config lives in one arena, except the six resource
 * arrays and the file list (grown with realloc while reading) and the compiled regexes. */
#include "common/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <mbedtls/base64.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/mem.h"
#include "common/yaml.h"

#define ARENA_BLOCK_SIZE 16384
#define REGEX_MAX_LEN 1024 /* Istio's limit (validation.go) */

#define VEC_GROW(arr, n, cap)                                                                      \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            (cap) = (cap) ? (cap)*2 : 8;                                                           \
            (arr) = weir_mem_realloc((arr), (cap) * sizeof(*(arr)));                               \
        }                                                                                          \
    } while (0)

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[];
} arena_block_t;

/* A reference to another resource, checked once every file has been read. */
typedef enum { REF_GATEWAY, REF_SUBSET, REF_HOST } ref_kind_t;

typedef struct {
    ref_kind_t kind;
    const char *path; /* field path for the message */
    weir_place_t place;
    const char *name; /* gateway qualified name, or subset name */
    const char *host; /* REF_SUBSET, REF_HOST */
} ref_t;

/* kind + namespace + name of every resource read, to find duplicates. */
typedef struct {
    const char *kind, *ns, *name;
    weir_place_t place;
} seen_t;

typedef struct {
    weir_config_t pub; /* first, so that weir_config_free can cast back */
    arena_block_t *arena;
    pcre2_code **regexes;
    size_t n_regexes, cap_regexes;
    size_t cap_gw, cap_vs, cap_dr, cap_se, cap_we, cap_pa, cap_files;
    ref_t *refs;
    size_t n_refs, cap_refs;
    seen_t *seen;
    size_t n_seen, cap_seen;
} cfg_t;

/* Loader state for one file. */
typedef struct {
    cfg_t *c;
    weir_diags_t *diags;
    const char *file; /* in c->pub.files */
    const char *ns;   /* namespace of the resource being read */
    weir_buf_t path;  /* field path of the value being read, relative to spec */
} ld_t;

/* ---- arena ---------------------------------------------------------------------------------- */

static void *arena_alloc(cfg_t *c, size_t size)
{
    size_t unit = sizeof(max_align_t);
    size = size ? (size + unit - 1) / unit * unit : unit;
    arena_block_t *b = c->arena;
    if (b == NULL || b->cap - b->used < size) {
        size_t cap = size > ARENA_BLOCK_SIZE ? size : ARENA_BLOCK_SIZE;
        b = weir_mem_calloc(1, sizeof(*b) + cap);
        b->cap = cap;
        b->next = c->arena;
        c->arena = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += size;
    return p; /* zeroed: calloc'd and never reused */
}

static void *arena_array(cfg_t *c, size_t n, size_t size)
{
    return arena_alloc(c, n * size);
}

static char *arena_strndup(cfg_t *c, const char *s, size_t n)
{
    char *d = arena_alloc(c, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *arena_strdup(cfg_t *c, const char *s)
{
    return s ? arena_strndup(c, s, strlen(s)) : NULL;
}

static char *arena_printf(cfg_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static char *arena_printf(cfg_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = arena_alloc(c, n > 0 ? (size_t)n + 1 : 1);
    va_start(ap, fmt);
    vsnprintf(s, n > 0 ? (size_t)n + 1 : 1, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- diagnostics and field paths ------------------------------------------------------------ */

static weir_place_t place_of(const ld_t *ld, const weir_yaml_node_t *n)
{
    return (weir_place_t){ld->file, n ? n->line : 0, n ? n->col : 0};
}

static void report(ld_t *ld, weir_diag_level_t level, const weir_yaml_node_t *at, const char *fmt,
                   va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *msg = weir_mem_alloc(n > 0 ? (size_t)n + 1 : 1);
    vsnprintf(msg, n > 0 ? (size_t)n + 1 : 1, fmt, ap2);
    va_end(ap2);
    const char *path = ld->path.len ? ld->path.base : "";
    weir_diags_add(ld->diags, level, ld->file, at ? at->line : 0, at ? at->col : 0, "%s%s%s", path,
                   *path ? ": " : "", msg);
    free(msg);
}

static void err(ld_t *ld, const weir_yaml_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warn(ld_t *ld, const weir_yaml_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void err(ld_t *ld, const weir_yaml_node_t *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(ld, WEIR_DIAG_ERROR, at, fmt, ap);
    va_end(ap);
}

static void warn(ld_t *ld, const weir_yaml_node_t *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(ld, WEIR_DIAG_WARNING, at, fmt, ap);
    va_end(ap);
}

/* Each push returns a mark for path_pop. */
static size_t path_key(ld_t *ld, const char *key)
{
    size_t mark = ld->path.len;
    if (mark)
        weir_buf_append(&ld->path, ".", 1);
    weir_buf_append_str(&ld->path, key);
    return mark;
}

static size_t path_index(ld_t *ld, size_t i)
{
    size_t mark = ld->path.len;
    weir_buf_appendf(&ld->path, "[%zu]", i);
    return mark;
}

static size_t path_mapkey(ld_t *ld, const char *key)
{
    size_t mark = ld->path.len;
    weir_buf_appendf(&ld->path, "[%s]", key);
    return mark;
}

static void path_pop(ld_t *ld, size_t mark)
{
    ld->path.len = mark;
    if (ld->path.base)
        ld->path.base[mark] = '\0';
}

/* A present, non-null value under key. */
static const weir_yaml_node_t *field(const weir_yaml_node_t *map, const char *key)
{
    const weir_yaml_node_t *v = weir_yaml_map_get(map, key);
    return v && !weir_yaml_is_null(v) ? v : NULL;
}

/* An error about map.key, placed at its value or, when absent, at the map. */
static void err_field(ld_t *ld, const weir_yaml_node_t *map, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void err_field(ld_t *ld, const weir_yaml_node_t *map, const char *key, const char *fmt, ...)
{
    const weir_yaml_node_t *at = weir_yaml_map_get(map, key);
    size_t mark = path_key(ld, key);
    va_list ap;
    va_start(ap, fmt);
    report(ld, WEIR_DIAG_ERROR, at ? at : map, fmt, ap);
    va_end(ap);
    path_pop(ld, mark);
}

static void require(ld_t *ld, const weir_yaml_node_t *map, const char *key)
{
    if (field(map, key) == NULL)
        err_field(ld, map, key, "required");
}

static void add_ref(ld_t *ld, ref_kind_t kind, const weir_yaml_node_t *at, const char *name,
                    const char *host)
{
    cfg_t *c = ld->c;
    VEC_GROW(c->refs, c->n_refs, c->cap_refs);
    c->refs[c->n_refs++] = (ref_t){kind, arena_strdup(c, ld->path.len ? ld->path.base : ""),
                                   place_of(ld, at), name, host};
}

/* ---- scalar readers ------------------------------------------------------------------------- */

/* "\"abc\"", "a map" or "a list", for messages about a value of the wrong type. */
static const char *describe(ld_t *ld, const weir_yaml_node_t *v)
{
    if (v->type == WEIR_YAML_MAP)
        return "a map";
    if (v->type == WEIR_YAML_SEQ)
        return "a list";
    return arena_printf(ld->c, "%s\"%.64s\"", v->plain ? "" : "quoted ", v->scalar);
}

static char *str_of(ld_t *ld, const weir_yaml_node_t *v)
{
    if (v->type != WEIR_YAML_SCALAR) {
        err(ld, v, "must be a string, got %s", describe(ld, v));
        return NULL;
    }
    return arena_strndup(ld->c, v->scalar, v->scalar_len);
}

/* YAML integers as Kubernetes reads them: plain decimal, so "80" in quotes is a string. */
static bool int_of(ld_t *ld, const weir_yaml_node_t *v, int64_t min, int64_t max, int64_t *out)
{
    const char *s = v->type == WEIR_YAML_SCALAR && v->plain ? v->scalar : NULL;
    bool neg = false, ok = s != NULL;
    int64_t val = 0;
    if (ok) {
        if (*s == '-' || *s == '+')
            neg = *s++ == '-';
        ok = isdigit((unsigned char)*s);
        for (; ok && *s; s++) {
            if (!isdigit((unsigned char)*s))
                ok = false;
            else if (val < INT64_MAX / 100) /* saturate: the message quotes the text anyway */
                val = val * 10 + (*s - '0');
        }
    }
    if (!ok) {
        err(ld, v, "must be an integer, got %s", describe(ld, v));
        return false;
    }
    val = neg ? -val : val;
    if (val < min || val > max) {
        if (max == INT32_MAX && val > max)
            err(ld, v, "must be <= %" PRId64 ", got %s", max, v->scalar);
        else if (max == INT32_MAX)
            err(ld, v, "must be >= %" PRId64 ", got %s", min, v->scalar);
        else
            err(ld, v, "must be %" PRId64 "..%" PRId64 ", got %s", min, max, v->scalar);
        return false;
    }
    *out = val;
    return true;
}

static bool bool_of(ld_t *ld, const weir_yaml_node_t *v, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE"}, *const no[] = {"false", "False",
                                                                              "FALSE"};
    for (size_t i = 0; v->type == WEIR_YAML_SCALAR && v->plain && i < 3; i++) {
        if (strcmp(v->scalar, yes[i]) == 0 || strcmp(v->scalar, no[i]) == 0) {
            *out = v->scalar[0] == 't' || v->scalar[0] == 'T';
            return true;
        }
    }
    err(ld, v, "must be true or false, got %s", describe(ld, v));
    return false;
}

/* The index of v in a NULL-terminated list of enum names (case-sensitive, as protobuf), or -1. */
static int enum_of(ld_t *ld, const weir_yaml_node_t *v, const char *const names[])
{
    if (v->type == WEIR_YAML_SCALAR)
        for (int i = 0; names[i]; i++)
            if (strcmp(v->scalar, names[i]) == 0)
                return i;
    weir_buf_t all = WEIR_BUF_INIT;
    for (int i = 0; names[i]; i++)
        weir_buf_appendf(&all, "%s%s", i ? ", " : "", names[i]);
    err(ld, v, "must be one of %s; got %s", all.base, describe(ld, v));
    weir_buf_free(&all);
    return -1;
}

static bool is_map(ld_t *ld, const weir_yaml_node_t *v)
{
    if (v->type == WEIR_YAML_MAP)
        return true;
    err(ld, v, "must be a map, got %s", describe(ld, v));
    return false;
}

static bool is_seq(ld_t *ld, const weir_yaml_node_t *v)
{
    if (v->type == WEIR_YAML_SEQ)
        return true;
    err(ld, v, "must be a list, got %s", describe(ld, v));
    return false;
}

static bool is_ip(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static void labels_of(ld_t *ld, const weir_yaml_node_t *v, weir_labels_t *out)
{
    if (!is_map(ld, v))
        return;
    out->items = arena_array(ld->c, v->count, sizeof(*out->items));
    for (size_t i = 0; i < v->count; i++) {
        size_t mark = path_mapkey(ld, v->keys[i]->scalar);
        char *value = str_of(ld, v->items[i]);
        if (value)
            out->items[out->count++] =
                (weir_label_t){arena_strdup(ld->c, v->keys[i]->scalar), value};
        path_pop(ld, mark);
    }
}

/* ---- names and hosts ------------------------------------------------------------------------ */

/* NULL when s is a DNS name (RFC 1123 labels; a trailing dot allowed), else the reason. */
static const char *dns_problem(const char *s)
{
    size_t len = strlen(s);
    if (len && s[len - 1] == '.')
        len--;
    if (len == 0)
        return "empty name";
    if (len > 253)
        return "longer than 253 characters";
    for (size_t start = 0; start <= len;) {
        size_t end = start;
        while (end < len && s[end] != '.')
            end++;
        if (end == start)
            return "empty label";
        if (end - start > 63)
            return "label longer than 63 characters";
        if (s[start] == '-' || s[end - 1] == '-')
            return "label starts or ends with '-'";
        for (size_t i = start; i < end; i++)
            if (!isalnum((unsigned char)s[i]) && s[i] != '-')
                return "only letters, digits, '-' and '.' are allowed";
        start = end + 1;
    }
    return NULL;
}

/* `*`, `*.suffix`, a DNS name or an IP. */
static const char *host_problem(const char *h)
{
    if (strcmp(h, "*") == 0)
        return NULL;
    if (strncmp(h, "*.", 2) == 0)
        return dns_problem(h + 2);
    return is_ip(h) ? NULL : dns_problem(h);
}

/* Kubernetes object names: lower-case RFC 1123 subdomain (dots allowed) or label (no dots). */
static bool k8s_name_ok(const char *s, bool allow_dots)
{
    size_t len = strlen(s);
    if (len == 0 || len > (allow_dots ? 253 : 63) || dns_problem(s) || s[len - 1] == '.')
        return false;
    for (const char *p = s; *p; p++)
        if (isupper((unsigned char)*p) || (*p == '.' && !allow_dots))
            return false;
    return true;
}

char *weir_config_resolve_host(const char *host, const char *ns)
{
    if (strchr(host, '.') || strchr(host, ':') || strcmp(host, "*") == 0)
        return weir_mem_strdup(host);
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_appendf(&b, "%s.%s.svc.cluster.local", host, ns ? ns : "default");
    return b.base;
}

/* A host as Istio writes it, short names resolved in the resource's namespace; NULL after an
 * error. Only a ServiceEntry may not say "*". */
static char *host_of(ld_t *ld, const weir_yaml_node_t *v, bool allow_star)
{
    char *s = str_of(ld, v);
    if (s == NULL)
        return NULL;
    if (!allow_star && strcmp(s, "*") == 0) {
        err(ld, v, "\"*\" is not allowed; a ServiceEntry names its hosts");
        return NULL;
    }
    const char *why = host_problem(s);
    if (why) {
        err(ld, v, "invalid host \"%s\": %s", s, why);
        return NULL;
    }
    char *r = weir_config_resolve_host(s, ld->ns);
    char *a = arena_strdup(ld->c, r);
    free(r);
    return a;
}

/* ---- the field walker ----------------------------------------------------------------------- */

typedef void (*field_fn)(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *val,
                         void *dst);

typedef enum {
    FT_FN,     /* fn(ld, key, val, obj + off) */
    FT_NODE,   /* const weir_yaml_node_t *: kept for a check after the walk */
    FT_STR,    /* char * */
    FT_HOST,   /* char *, short names resolved in the resource's namespace */
    FT_BOOL,   /* bool */
    FT_PORT,   /* uint32_t, 1..65535 */
    FT_LABELS, /* weir_labels_t */
    FT_LATER,  /* an Istio field weir reads but does not act on yet: warn, never silence */
    FT_QUIET,  /* accepted, meaningless to a data plane (Kubernetes bookkeeping) */
} field_type_t;

typedef struct {
    const char *name;
    field_type_t type;
    size_t off;
    field_fn fn;
} field_t;

/* clang-format off */
#define F_FN(n, T, m, f) {n, FT_FN, offsetof(T, m), f}
#define F_FN0(n, f) {n, FT_FN, 0, f}
#define F_NODE(n, T, m) {n, FT_NODE, offsetof(T, m), NULL}
#define F_STR(n, T, m) {n, FT_STR, offsetof(T, m), NULL}
#define F_HOST(n, T, m) {n, FT_HOST, offsetof(T, m), NULL}
#define F_BOOL(n, T, m) {n, FT_BOOL, offsetof(T, m), NULL}
#define F_PORT(n, T, m) {n, FT_PORT, offsetof(T, m), NULL}
#define F_LABELS(n, T, m) {n, FT_LABELS, offsetof(T, m), NULL}
#define F_LATER(n) {n, FT_LATER, 0, NULL}
#define F_QUIET(n) {n, FT_QUIET, 0, NULL}
#define F_END {NULL, FT_QUIET, 0, NULL}
/* clang-format on */

static size_t edit_distance(const char *a, const char *b)
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

static const field_t *find_field(const field_t *table, const char *name)
{
    for (const field_t *f = table; f->name; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    /* protobuf's JSON mapping also accepts the proto names: mirror_percent is mirrorPercent. */
    if (strchr(name, '_') == NULL || strlen(name) > 63)
        return NULL;
    char camel[64];
    size_t n = 0;
    for (const char *p = name; *p; p++)
        camel[n++] = (*p == '_' && p[1]) ? (char)toupper((unsigned char)*++p) : *p;
    camel[n] = '\0';
    for (const field_t *f = table; f->name; f++)
        if (strcmp(f->name, camel) == 0)
            return f;
    return NULL;
}

static void unknown_field(ld_t *ld, const weir_yaml_node_t *key, const field_t *table)
{
    const field_t *best = NULL;
    size_t best_d = SIZE_MAX;
    for (const field_t *f = table; f->name; f++) {
        size_t d = edit_distance(key->scalar, f->name);
        if (d < best_d && d <= (strlen(f->name) > 4 ? 2u : 1u)) {
            best = f;
            best_d = d;
        }
    }
    if (best)
        warn(ld, key, "unknown field \"%s\" (did you mean \"%s\"?)", key->scalar, best->name);
    else
        warn(ld, key, "unknown field \"%s\"", key->scalar);
}

static void later(ld_t *ld, const weir_yaml_node_t *key)
{
    warn(ld, key, "not applied by weir yet; ignored");
}

/* Applies a field table to a map. A null value is the same as an absent field (as protobuf's
 * JSON mapping has it). Returns false, with an error, when v is not a map. */
static bool walk(ld_t *ld, const weir_yaml_node_t *v, const field_t *table, void *obj)
{
    if (!is_map(ld, v))
        return false;
    for (size_t i = 0; i < v->count; i++) {
        const weir_yaml_node_t *key = v->keys[i], *val = v->items[i];
        const field_t *f = find_field(table, key->scalar);
        if (f == NULL) {
            unknown_field(ld, key, table);
            continue;
        }
        if (weir_yaml_is_null(val))
            continue;
        size_t mark = path_key(ld, key->scalar);
        char *dst = (char *)obj + f->off;
        int64_t n;
        switch (f->type) {
        case FT_FN:
            f->fn(ld, key, val, dst);
            break;
        case FT_NODE:
            *(const weir_yaml_node_t **)dst = val;
            break;
        case FT_STR: {
            char *s = str_of(ld, val);
            if (s)
                *(char **)dst = s;
            break;
        }
        case FT_HOST: {
            char *s = host_of(ld, val, true);
            if (s)
                *(char **)dst = s;
            break;
        }
        case FT_BOOL:
            bool_of(ld, val, (bool *)dst);
            break;
        case FT_PORT:
            if (int_of(ld, val, 1, 65535, &n))
                *(uint32_t *)dst = (uint32_t)n;
            break;
        case FT_LABELS:
            labels_of(ld, val, (weir_labels_t *)dst);
            break;
        case FT_LATER:
            later(ld, key);
            break;
        case FT_QUIET:
            break;
        }
        path_pop(ld, mark);
    }
    return true;
}

/* Calls item(ld, node, i, dst) for every element of a list, with the path at "[i]". */
typedef void (*item_fn)(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst);

static bool each(ld_t *ld, const weir_yaml_node_t *v, item_fn fn, void *dst)
{
    if (!is_seq(ld, v))
        return false;
    for (size_t i = 0; i < v->count; i++) {
        size_t mark = path_index(ld, i);
        fn(ld, v->items[i], i, dst);
        path_pop(ld, mark);
    }
    return true;
}

/* ---- shared Istio types --------------------------------------------------------------------- */

typedef struct {
    char **items;
    size_t n;
    bool allow_star;
    bool resolve;
} strlist_t;

static void strlist_item(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    strlist_t *l = dst;
    char *s = l->resolve ? host_of(ld, item, l->allow_star) : str_of(ld, item);
    if (s)
        l->items[l->n++] = s;
}

static strlist_t strlist_of(ld_t *ld, const weir_yaml_node_t *v, bool hosts, bool allow_star)
{
    strlist_t l = {NULL, 0, allow_star, hosts};
    if (v->type == WEIR_YAML_SEQ)
        l.items = arena_array(ld->c, v->count, sizeof(char *));
    each(ld, v, strlist_item, &l);
    return l;
}

/* A list of plain strings (subjectAltNames) into a message's items / count pair. */
static void strings_of(ld_t *ld, const weir_yaml_node_t *v, char ***items, size_t *n)
{
    strlist_t l = strlist_of(ld, v, false, false);
    *items = l.items;
    *n = l.n;
}

/* VirtualService.gateways and match gateways: "mesh", "<ns>/<name>", or <name> in the VS's
 * namespace. Each becomes a reference checked against the Gateways read. */
static void gateway_ref_item(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    strlist_t *l = dst;
    char *s = str_of(ld, item);
    if (s == NULL)
        return;
    if (strcmp(s, "mesh") != 0) {
        if (strchr(s, '/') == NULL)
            s = arena_printf(ld->c, "%s/%s", ld->ns, s);
        add_ref(ld, REF_GATEWAY, item, s, NULL);
    }
    l->items[l->n++] = s;
}

static void gateways_of(ld_t *ld, const weir_yaml_node_t *v, char ***out, size_t *n)
{
    strlist_t l = {0};
    if (v->type == WEIR_YAML_SEQ)
        l.items = arena_array(ld->c, v->count, sizeof(char *));
    each(ld, v, gateway_ref_item, &l);
    *out = l.n ? l.items : NULL;
    *n = l.n;
}

/* StringMatch. Flags: which of Istio's special cases apply where. */
enum {
    SM_EMPTY_PREFIX = 1, /* uri: prefix "" is allowed */
    SM_PRESENCE = 2,     /* headers, withoutHeaders, queryParams: {} means "present" */
    SM_STAR_REGEX = 4,   /* headers: regex "*" means "present" as well */
};

typedef struct {
    const weir_yaml_node_t *exact, *prefix, *regex;
} sm_nodes_t;

static const field_t string_match_fields[] = {
    F_NODE("exact", sm_nodes_t, exact),
    F_NODE("prefix", sm_nodes_t, prefix),
    F_NODE("regex", sm_nodes_t, regex),
    F_END,
};

static void string_match_of(ld_t *ld, const weir_yaml_node_t *v, weir_string_match_t *out,
                            int flags)
{
    sm_nodes_t n = {0};
    if (!walk(ld, v, string_match_fields, &n))
        return;
    int given = !!n.exact + !!n.prefix + !!n.regex;
    if (given == 0) {
        if ((flags & SM_PRESENCE) && v->count == 0)
            out->kind = WEIR_MATCH_NONE;
        else
            err(ld, v, "one of exact, prefix, regex is required");
        return;
    }
    if (given > 1) {
        err(ld, v, "only one of exact, prefix, regex may be given");
        return;
    }
    const weir_yaml_node_t *val = n.exact ? n.exact : n.prefix ? n.prefix : n.regex;
    size_t mark = path_key(ld, n.exact ? "exact" : n.prefix ? "prefix" : "regex");
    char *s = str_of(ld, val);
    if (s == NULL) {
        path_pop(ld, mark);
        return;
    }
    out->value = s;
    out->value_len = val->scalar_len;
    out->kind = n.exact ? WEIR_MATCH_EXACT : n.prefix ? WEIR_MATCH_PREFIX : WEIR_MATCH_REGEX;
    if (out->kind == WEIR_MATCH_PREFIX && *s == '\0' && !(flags & SM_EMPTY_PREFIX))
        err(ld, val, "must not be empty");
    if (out->kind == WEIR_MATCH_REGEX && (flags & SM_STAR_REGEX) && strcmp(s, "*") == 0) {
        out->kind = WEIR_MATCH_NONE; /* Istio reads regex "*" on a header as presence */
    } else if (out->kind == WEIR_MATCH_REGEX && out->value_len > REGEX_MAX_LEN) {
        err(ld, val, "must be at most %d characters, got %zu", REGEX_MAX_LEN, out->value_len);
    } else if (out->kind == WEIR_MATCH_REGEX) {
        int code;
        PCRE2_SIZE offset;
        /* RE2 full match, as Envoy's safe_regex: anchored at both ends. */
        out->re =
            pcre2_compile((PCRE2_SPTR)s, out->value_len,
                          PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF, &code, &offset, NULL);
        if (out->re == NULL) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(code, msg, sizeof(msg));
            err(ld, val, "invalid regex: %s (at offset %zu)", (const char *)msg, (size_t)offset);
        } else {
            cfg_t *c = ld->c;
            VEC_GROW(c->regexes, c->n_regexes, c->cap_regexes);
            c->regexes[c->n_regexes++] = out->re;
        }
    }
    path_pop(ld, mark);
}

static void kv_matches_of(ld_t *ld, const weir_yaml_node_t *v, bool header, weir_kv_match_t **out,
                          size_t *n)
{
    if (!is_map(ld, v))
        return;
    weir_kv_match_t *kv = arena_array(ld->c, v->count, sizeof(*kv));
    for (size_t i = 0; i < v->count; i++) {
        const weir_yaml_node_t *key = v->keys[i], *val = v->items[i];
        size_t mark = path_mapkey(ld, key->scalar);
        kv[i].name = arena_strdup(ld->c, key->scalar);
        for (const char *p = key->scalar; header && *p; p++) {
            if (isupper((unsigned char)*p)) {
                err(ld, key, "header name must be lower case");
                break;
            }
        }
        if (!weir_yaml_is_null(val))
            string_match_of(ld, val, &kv[i].match, SM_PRESENCE | (header ? SM_STAR_REGEX : 0));
        path_pop(ld, mark);
    }
    *out = kv;
    *n = v->count;
}

/* ---- Gateway -------------------------------------------------------------------------------- */

static const char *const gateway_protocols[] = {"HTTP",  "HTTPS", "GRPC", "GRPC-WEB", "HTTP2",
                                                "MONGO", "TCP",   "TLS",  NULL};
/* ServiceEntry ports also name the protocols Istio sniffs or proxies as TCP. */
static const char *const service_protocols[] = {"HTTP",  "HTTPS", "GRPC",  "GRPC-WEB",
                                                "HTTP2", "MONGO", "TCP",   "TLS",
                                                "UDP",   "REDIS", "MYSQL", NULL};

/* Protocols are case-insensitive in Istio (protocol.Parse); kept upper-cased. */
static char *protocol_of(ld_t *ld, const weir_yaml_node_t *v, const char *const names[])
{
    char *s = str_of(ld, v);
    if (s == NULL)
        return NULL;
    for (char *p = s; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    for (size_t i = 0; names[i]; i++)
        if (strcmp(s, names[i]) == 0)
            return s;
    weir_buf_t all = WEIR_BUF_INIT;
    for (size_t i = 0; names[i]; i++)
        weir_buf_appendf(&all, "%s%s", i ? ", " : "", names[i]);
    err(ld, v, "must be one of %s; got \"%s\"", all.base, v->scalar);
    weir_buf_free(&all);
    return NULL;
}

typedef struct {
    weir_gateway_server_t s;
    bool tls_certs; /* serverCertificate, privateKey or caCertificates given */
} server_w;

static void server_protocol(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                            void *dst)
{
    char *p = protocol_of(ld, v, gateway_protocols);
    if (p)
        *(char **)dst = p;
}

static void server_target_port(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                               void *dst)
{
    err(ld, key, "not allowed on a Gateway");
}

static const field_t server_port_fields[] = {
    F_PORT("number", server_w, s.port),
    F_FN("protocol", server_w, s.protocol, server_protocol),
    F_STR("name", server_w, s.port_name),
    F_FN0("targetPort", server_target_port),
    F_END,
};

static void server_port(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    if (!walk(ld, v, server_port_fields, dst))
        return;
    require(ld, v, "number");
    require(ld, v, "protocol");
    require(ld, v, "name");
}

static void server_host(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    weir_gateway_server_t *s = dst;
    char *h = str_of(ld, item);
    if (h == NULL)
        return;
    /* [namespace/]dnsName: the namespace part limits which VirtualServices may bind. weir
     * reads every namespace alike, so it is checked and dropped. */
    char *dns = h, *slash = strchr(h, '/');
    if (slash) {
        *slash = '\0';
        dns = slash + 1;
        if (strcmp(h, "*") != 0 && strcmp(h, ".") != 0 && !k8s_name_ok(h, false)) {
            err(ld, item, "invalid namespace \"%s\" in host \"%s\"", h, item->scalar);
            return;
        }
    }
    const char *why = host_problem(dns);
    if (why) {
        err(ld, item, "invalid host \"%s\": %s", item->scalar, why);
        return;
    }
    s->hosts[s->n_hosts++] = dns;
}

static void server_hosts(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                         void *dst)
{
    weir_gateway_server_t *s = dst;
    if (v->type == WEIR_YAML_SEQ)
        s->hosts = arena_array(ld->c, v->count, sizeof(char *));
    each(ld, v, server_host, s);
}

static const char *const tls_modes[] = {
    "PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL", NULL};

static void tls_mode(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    int m = enum_of(ld, v, tls_modes); /* same order as weir_server_tls_mode_t */
    if (m >= 0) {
        ((server_w *)dst)->s.tls_mode = (weir_server_tls_mode_t)m;
        later(ld, key);
    }
}

static void tls_credential(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                           void *dst)
{
    char *s = str_of(ld, v);
    if (s) {
        ((server_w *)dst)->s.credential_name = s;
        later(ld, key);
    }
}

static void tls_cert(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    ((server_w *)dst)->tls_certs = true;
    later(ld, key);
}

static const field_t server_tls_fields[] = {
    F_BOOL("httpsRedirect", server_w, s.https_redirect),
    F_FN0("mode", tls_mode),
    F_FN0("credentialName", tls_credential),
    F_FN0("serverCertificate", tls_cert),
    F_FN0("privateKey", tls_cert),
    F_FN0("caCertificates", tls_cert),
    F_LATER("credentialNames"),
    F_LATER("tlsCertificates"),
    F_LATER("caCrl"),
    F_LATER("subjectAltNames"),
    F_LATER("verifyCertificateSpki"),
    F_LATER("verifyCertificateHash"),
    F_LATER("minProtocolVersion"),
    F_LATER("maxProtocolVersion"),
    F_LATER("cipherSuites"),
    F_END,
};

static void server_tls(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    server_w *w = dst;
    w->s.has_tls = walk(ld, v, server_tls_fields, w);
}

static const field_t server_fields[] = {
    F_FN0("port", server_port),
    F_FN("hosts", server_w, s, server_hosts),
    F_STR("bind", server_w, s.bind),
    F_STR("name", server_w, s.name),
    F_FN0("tls", server_tls),
    F_LATER("defaultEndpoint"),
    F_END,
};

static bool proto_is(const char *p, const char *a, const char *b)
{
    return p && (strcmp(p, a) == 0 || (b && strcmp(p, b) == 0));
}

static void gateway_server(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    weir_gateway_server_t *out = &((weir_gateway_t *)dst)->servers[i];
    server_w w = {.s.place = place_of(ld, item)};
    if (walk(ld, item, server_fields, &w)) {
        require(ld, item, "port");
        const weir_yaml_node_t *hosts = field(item, "hosts");
        if (hosts == NULL)
            err_field(ld, item, "hosts", "required");
        else if (hosts->type == WEIR_YAML_SEQ && hosts->count == 0)
            err_field(ld, item, "hosts", "must have at least one host");
        /* validation.go validateServer: HTTPS and TLS need tls; a plain-text HTTP port may only
         * carry httpsRedirect; other ports no tls at all. */
        const char *p = w.s.protocol;
        bool is_tls = proto_is(p, "HTTPS", "TLS");
        bool is_http = proto_is(p, "HTTP", "HTTP2") || proto_is(p, "GRPC", "GRPC-WEB");
        if (is_tls && field(item, "tls") == NULL)
            err_field(ld, item, "tls", "required when port.protocol is %s", p);
        else if (w.s.has_tls && is_http &&
                 (w.s.tls_mode != WEIR_TLS_MODE_PASSTHROUGH || w.tls_certs))
            err_field(ld, item, "tls", "a plain-text %s port may only set httpsRedirect", p);
        else if (w.s.has_tls && p && !is_tls && !is_http)
            err_field(ld, item, "tls", "not allowed when port.protocol is %s", p);
    }
    *out = w.s;
}

static void gateway_servers(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                            void *dst)
{
    weir_gateway_t *g = dst;
    if (v->type == WEIR_YAML_SEQ) {
        g->servers = arena_array(ld->c, v->count, sizeof(*g->servers));
        g->n_servers = v->count;
    }
    each(ld, v, gateway_server, g);
}

static void gateway_selector(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                             void *dst)
{
    weir_gateway_t *g = dst;
    g->has_selector = true;
    labels_of(ld, v, &g->selector);
}

static const field_t gateway_fields[] = {
    F_FN0("selector", gateway_selector),
    F_FN0("servers", gateway_servers),
    F_END,
};

/* ---- VirtualService ------------------------------------------------------------------------- */

/* One http[] rule while it is read. */
typedef struct {
    weir_http_route_t r;
    const char *action; /* the first of route, redirect, directResponse, delegate written */
    bool delegate;
} rule_w;

/* route, redirect, directResponse and delegate exclude each other (virtualservice.go). */
static bool take_action(ld_t *ld, const weir_yaml_node_t *key, rule_w *w, const char *name)
{
    if (w->action) {
        err(ld, key, "cannot be combined with %s; give one of route, redirect, directResponse",
            w->action);
        return false;
    }
    w->action = name;
    return true;
}

static void match_uri(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    string_match_of(ld, v, dst, SM_EMPTY_PREFIX);
}

static void match_other(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    string_match_of(ld, v, dst, 0);
}

static void match_headers(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                          void *dst)
{
    weir_http_match_t *m = dst;
    kv_matches_of(ld, v, true, &m->headers, &m->n_headers);
}

static void match_without_headers(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                                  void *dst)
{
    weir_http_match_t *m = dst;
    kv_matches_of(ld, v, true, &m->without_headers, &m->n_without_headers);
}

static void match_query(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_http_match_t *m = dst;
    kv_matches_of(ld, v, false, &m->query_params, &m->n_query_params);
}

static void match_gateways(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                           void *dst)
{
    weir_http_match_t *m = dst;
    gateways_of(ld, v, &m->gateways, &m->n_gateways);
}

static const field_t match_fields[] = {
    F_STR("name", weir_http_match_t, name),
    F_FN("uri", weir_http_match_t, uri, match_uri),
    F_FN("scheme", weir_http_match_t, scheme, match_other),
    F_FN("method", weir_http_match_t, method, match_other),
    F_FN("authority", weir_http_match_t, authority, match_other),
    F_BOOL("ignoreUriCase", weir_http_match_t, ignore_uri_case),
    F_FN0("headers", match_headers),
    F_FN0("withoutHeaders", match_without_headers),
    F_FN0("queryParams", match_query),
    F_PORT("port", weir_http_match_t, port),
    F_FN0("gateways", match_gateways),
    F_LATER("sourceLabels"),
    F_LATER("sourceNamespace"),
    F_LATER("statPrefix"),
    F_END,
};

static void rule_match(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    weir_http_match_t *m = &((rule_w *)dst)->r.matches[i];
    m->place = place_of(ld, item);
    walk(ld, item, match_fields, m);
}

static void rule_matches(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                         void *dst)
{
    rule_w *w = dst;
    if (v->type == WEIR_YAML_SEQ) {
        w->r.matches = arena_array(ld->c, v->count, sizeof(*w->r.matches));
        w->r.n_matches = v->count;
    }
    each(ld, v, rule_match, w);
}

static const field_t port_selector_fields[] = {
    F_PORT("number", weir_destination_t, port),
    F_END,
};

static void destination_port(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                             void *dst)
{
    walk(ld, v, port_selector_fields, dst);
}

static const field_t destination_fields[] = {
    F_HOST("host", weir_destination_t, host),
    F_STR("subset", weir_destination_t, subset),
    F_FN0("port", destination_port),
    F_END,
};

static void route_destination(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                              void *dst)
{
    weir_destination_t *d = dst;
    if (!walk(ld, v, destination_fields, d))
        return;
    if (d->host == NULL) {
        require(ld, v, "host");
        return;
    }
    size_t mark = path_key(ld, "host");
    add_ref(ld, REF_HOST, weir_yaml_map_get(v, "host"), d->host, d->host);
    path_pop(ld, mark);
    if (d->subset) {
        mark = path_key(ld, "subset");
        add_ref(ld, REF_SUBSET, weir_yaml_map_get(v, "subset"), d->subset, d->host);
        path_pop(ld, mark);
    }
}

static void route_weight(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                         void *dst)
{
    weir_route_destination_t *rd = dst;
    int64_t n;
    if (int_of(ld, v, 0, INT32_MAX, &n)) {
        rd->weight = (int32_t)n;
        rd->weight_set = true;
    }
}

static const field_t route_destination_fields[] = {
    F_FN("destination", weir_route_destination_t, destination, route_destination),
    F_FN0("weight", route_weight),
    F_LATER("headers"),
    F_END,
};

static void rule_route_item(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    weir_route_destination_t *rd = &((rule_w *)dst)->r.route[i];
    rd->place = place_of(ld, item);
    if (walk(ld, item, route_destination_fields, rd))
        require(ld, item, "destination");
}

static void rule_route(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    rule_w *w = dst;
    if (!take_action(ld, key, w, "route"))
        return;
    w->r.action = WEIR_ACTION_ROUTE;
    if (v->type == WEIR_YAML_SEQ) {
        w->r.route = arena_array(ld->c, v->count, sizeof(*w->r.route));
        w->r.n_route = v->count;
    }
    if (!each(ld, v, rule_route_item, w))
        return;
    if (v->count == 0)
        err(ld, v, "must have at least one destination");
    int64_t total = 0;
    for (size_t i = 0; i < w->r.n_route; i++)
        total += w->r.route[i].weight;
    if (w->r.n_route > 1 && total == 0) /* S14: a single destination ignores its weight */
        err(ld, v, "total destination weight = 0");
}

static const char *const derive_ports[] = {"FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT", NULL};

static void redirect_derive_port(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                                 void *dst)
{
    int i = enum_of(ld, v, derive_ports);
    if (i >= 0)
        ((weir_redirect_t *)dst)->derive_port = (weir_derive_port_t)(i + 1);
}

static void redirect_code(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                          void *dst)
{
    int64_t n;
    if (!int_of(ld, v, 0, INT32_MAX, &n))
        return;
    if (n == 0)
        n = 301; /* proto default: unset */
    if (n != 301 && n != 302 && n != 303 && n != 307 && n != 308) {
        err(ld, v, "must be one of 301, 302, 303, 307, 308, got %s", v->scalar);
        return;
    }
    ((weir_redirect_t *)dst)->redirect_code = (int)n;
}

static const field_t redirect_fields[] = {
    F_STR("uri", weir_redirect_t, uri),
    F_STR("authority", weir_redirect_t, authority),
    F_STR("scheme", weir_redirect_t, scheme),
    F_PORT("port", weir_redirect_t, port),
    F_FN0("derivePort", redirect_derive_port),
    F_FN0("redirectCode", redirect_code),
    F_END,
};

static void rule_redirect(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                          void *dst)
{
    rule_w *w = dst;
    if (!take_action(ld, key, w, "redirect"))
        return;
    w->r.action = WEIR_ACTION_REDIRECT;
    w->r.redirect.redirect_code = 301;
    if (walk(ld, v, redirect_fields, &w->r.redirect) && w->r.redirect.port &&
        w->r.redirect.derive_port != WEIR_DERIVE_PORT_NONE)
        err_field(ld, v, "derivePort", "cannot be combined with port");
}

static void body_string(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_direct_response_t *d = dst;
    char *s = str_of(ld, v);
    if (s && d->body) {
        err(ld, key, "only one of string, bytes may be given");
    } else if (s) {
        d->body = s;
        d->body_len = v->scalar_len;
    }
}

static void body_bytes(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_direct_response_t *d = dst;
    char *s = str_of(ld, v);
    if (s == NULL)
        return;
    if (d->body) {
        err(ld, key, "only one of string, bytes may be given");
        return;
    }
    size_t len = 0;
    const unsigned char *src = (const unsigned char *)s;
    int rc = mbedtls_base64_decode(NULL, 0, &len, src, v->scalar_len);
    if (rc == MBEDTLS_ERR_BASE64_INVALID_CHARACTER) {
        err(ld, v, "must be base64");
        return;
    }
    unsigned char *out = arena_alloc(ld->c, len + 1);
    if (mbedtls_base64_decode(out, len + 1, &len, src, v->scalar_len) != 0) {
        err(ld, v, "must be base64");
        return;
    }
    d->body = (char *)out;
    d->body_len = len;
}

static const field_t body_fields[] = {
    F_FN0("string", body_string),
    F_FN0("bytes", body_bytes),
    F_END,
};

static void direct_status(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                          void *dst)
{
    int64_t n;
    if (int_of(ld, v, 200, 599, &n))
        ((weir_direct_response_t *)dst)->status = (int)n;
}

static void direct_body(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    walk(ld, v, body_fields, dst);
}

static const field_t direct_fields[] = {
    F_FN0("status", direct_status),
    F_FN0("body", direct_body),
    F_END,
};

static void rule_direct(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    rule_w *w = dst;
    if (!take_action(ld, key, w, "directResponse"))
        return;
    w->r.action = WEIR_ACTION_DIRECT_RESPONSE;
    if (walk(ld, v, direct_fields, &w->r.direct))
        require(ld, v, "status");
}

static void rule_delegate(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                          void *dst)
{
    rule_w *w = dst;
    if (take_action(ld, key, w, "delegate")) {
        w->delegate = true;
        later(ld, key);
    }
}

static const field_t rewrite_fields[] = {
    F_STR("uri", weir_rewrite_t, uri),
    F_STR("authority", weir_rewrite_t, authority),
    F_LATER("uriRegexRewrite"),
    F_END,
};

static void rule_rewrite(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                         void *dst)
{
    rule_w *w = dst;
    w->r.has_rewrite = walk(ld, v, rewrite_fields, &w->r.rewrite);
}

static const field_t rule_fields[] = {
    F_STR("name", rule_w, r.name),
    F_FN0("match", rule_matches),
    F_FN0("route", rule_route),
    F_FN0("redirect", rule_redirect),
    F_FN0("directResponse", rule_direct),
    F_FN0("delegate", rule_delegate),
    F_FN0("rewrite", rule_rewrite),
    F_LATER("timeout"),
    F_LATER("retries"),
    F_LATER("fault"),
    F_LATER("mirror"),
    F_LATER("mirrors"),
    F_LATER("mirrorPercentage"),
    F_LATER("mirrorPercent"),
    F_LATER("headers"),
    F_LATER("corsPolicy"),
    F_END,
};

static void vs_rule(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    weir_virtual_service_t *vs = dst;
    rule_w w = {.r.place = place_of(ld, item)};
    if (!walk(ld, item, rule_fields, &w))
        return;
    if (w.action == NULL)
        err(ld, item, "one of route, redirect, directResponse is required");
    else if (w.r.has_rewrite && w.r.action != WEIR_ACTION_ROUTE && !w.delegate)
        err_field(ld, item, "rewrite", "cannot be used with %s", w.action);
    if (!w.delegate) /* a delegated rule is warned about and left out */
        vs->http[vs->n_http++] = w.r;
}

static void vs_http(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_virtual_service_t *vs = dst;
    if (v->type == WEIR_YAML_SEQ)
        vs->http = arena_array(ld->c, v->count, sizeof(*vs->http));
    each(ld, v, vs_rule, vs);
}

static void vs_hosts(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_virtual_service_t *vs = dst;
    strlist_t l = strlist_of(ld, v, true, true);
    vs->hosts = l.items;
    vs->n_hosts = l.n;
}

static void vs_gateways(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_virtual_service_t *vs = dst;
    gateways_of(ld, v, &vs->gateways, &vs->n_gateways);
}

static const field_t virtual_service_fields[] = {
    F_FN0("hosts", vs_hosts),
    F_FN0("gateways", vs_gateways),
    F_FN0("http", vs_http),
    F_LATER("tls"),
    F_LATER("tcp"),
    F_LATER("exportTo"),
    F_END,
};

/* ---- DestinationRule ------------------------------------------------------------------------ */

static void lb_simple(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    static const char *const names[] = {"UNSPECIFIED", "LEAST_REQUEST", "LEAST_CONN", "ROUND_ROBIN",
                                        "RANDOM",      "PASSTHROUGH",   NULL};
    static const weir_lb_policy_t values[] = {WEIR_LB_LEAST_REQUEST, WEIR_LB_LEAST_REQUEST,
                                              WEIR_LB_LEAST_REQUEST, WEIR_LB_ROUND_ROBIN,
                                              WEIR_LB_RANDOM,        WEIR_LB_PASSTHROUGH};
    int i = enum_of(ld, v, names);
    if (i >= 0)
        ((weir_traffic_policy_t *)dst)->lb = values[i];
}

/* clang-format off */
static const field_t load_balancer_fields[] = {
    F_FN0("simple", lb_simple),
    F_LATER("consistentHash"),
    F_LATER("localityLbSetting"),
    F_LATER("warmupDurationSecs"),
    F_LATER("warmup"),
    F_END,
};
/* clang-format on */

static void policy_lb(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_traffic_policy_t *p = dst;
    /* The block counts as set even without `simple`: a subset's loadBalancer replaces the top
     * level's whole (MergeTrafficPolicy), and its default is LEAST_REQUEST. */
    p->lb = WEIR_LB_LEAST_REQUEST;
    p->has_lb = walk(ld, v, load_balancer_fields, p);
}

static const char *const client_tls_modes[] = {"DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL", NULL};

static void client_tls_mode(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                            void *dst)
{
    int m = enum_of(ld, v, client_tls_modes); /* same order as weir_client_tls_mode_t */
    if (m >= 0)
        *(weir_client_tls_mode_t *)dst = (weir_client_tls_mode_t)m;
}

static void client_tls_sans(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                            void *dst)
{
    weir_client_tls_t *t = dst;
    strings_of(ld, v, &t->subject_alt_names, &t->n_subject_alt_names);
}

static const field_t client_tls_fields[] = {
    F_FN("mode", weir_client_tls_t, mode, client_tls_mode),
    F_STR("clientCertificate", weir_client_tls_t, client_certificate),
    F_STR("privateKey", weir_client_tls_t, private_key),
    F_STR("caCertificates", weir_client_tls_t, ca_certificates),
    F_STR("credentialName", weir_client_tls_t, credential_name),
    F_FN0("subjectAltNames", client_tls_sans),
    F_STR("sni", weir_client_tls_t, sni),
    F_BOOL("insecureSkipVerify", weir_client_tls_t, insecure_skip_verify),
    F_LATER("caCrl"),
    F_END,
};

/* ClientTLSSettings fields as bits, in the order of tls_field_names. */
enum {
    TLS_CERT = 1 << 0,
    TLS_KEY = 1 << 1,
    TLS_CA = 1 << 2,
    TLS_CREDENTIAL = 1 << 3,
    TLS_SANS = 1 << 4,
};
static const char *const tls_field_names[] = {"clientCertificate", "privateKey", "caCertificates",
                                              "credentialName", "subjectAltNames"};

#define TLS_MODE(m) (1u << WEIR_CLIENT_TLS_##m)

/* Istio's validateTLS (pkg/config/validation/agent), row by row, plus the proto's rule that
 * ISTIO_MUTUAL takes no certificate of its own. A row applies to its modes when every field
 * of `when` is given, none of `unless` is, and insecureSkipVerify is true if `skip_verify`;
 * then each field of `refused` that is given, and each of `required` that is not, is an
 * error. */
static const struct {
    unsigned modes, when, unless;
    bool skip_verify;
    unsigned refused, required;
    const char *why;
} tls_rules[] = {
    {TLS_MODE(ISTIO_MUTUAL), 0, 0, false, TLS_CERT | TLS_KEY | TLS_CA | TLS_CREDENTIAL, 0,
     "not allowed with mode ISTIO_MUTUAL, which uses the mesh certificates"},
    {TLS_MODE(SIMPLE) | TLS_MODE(MUTUAL), TLS_CREDENTIAL, 0, false, TLS_CERT | TLS_KEY | TLS_CA, 0,
     "cannot be combined with credentialName, which names the certificates"},
    {TLS_MODE(SIMPLE), 0, 0, true, TLS_CA | TLS_CREDENTIAL | TLS_SANS, 0,
     "cannot be combined with insecureSkipVerify"},
    {TLS_MODE(MUTUAL), 0, 0, true, TLS_CA | TLS_SANS, 0,
     "cannot be combined with insecureSkipVerify"},
    {TLS_MODE(MUTUAL), 0, TLS_CREDENTIAL, false, 0, TLS_CERT | TLS_KEY,
     "required with mode MUTUAL unless credentialName is given"},
};

static bool nonempty(const char *s)
{
    return s && *s; /* proto3: "" is the same as not given */
}

static void client_tls_check(ld_t *ld, const weir_yaml_node_t *v, const weir_client_tls_t *t)
{
    unsigned given = (nonempty(t->client_certificate) ? TLS_CERT : 0) |
                     (nonempty(t->private_key) ? TLS_KEY : 0) |
                     (nonempty(t->ca_certificates) ? TLS_CA : 0) |
                     (nonempty(t->credential_name) ? TLS_CREDENTIAL : 0) |
                     (t->n_subject_alt_names ? TLS_SANS : 0);
    for (size_t r = 0; r < sizeof(tls_rules) / sizeof(tls_rules[0]); r++) {
        if (!(tls_rules[r].modes & (1u << t->mode)) ||
            (given & tls_rules[r].when) != tls_rules[r].when || (given & tls_rules[r].unless) ||
            (tls_rules[r].skip_verify && !t->insecure_skip_verify))
            continue;
        for (size_t f = 0; f < sizeof(tls_field_names) / sizeof(tls_field_names[0]); f++) {
            unsigned bit = 1u << f;
            if ((tls_rules[r].refused & bit & given) || (tls_rules[r].required & bit & ~given))
                err_field(ld, v, tls_field_names[f], "%s", tls_rules[r].why);
        }
    }
}

static void policy_tls(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_traffic_policy_t *p = dst;
    if (!walk(ld, v, client_tls_fields, &p->tls))
        return;
    p->has_tls = true; /* even `tls: {}`: an explicit DISABLE, which turns auto mTLS off */
    client_tls_check(ld, v, &p->tls);
}

static const field_t traffic_policy_fields[] = {
    F_FN0("loadBalancer", policy_lb),
    F_LATER("connectionPool"),
    F_LATER("outlierDetection"),
    F_FN0("tls", policy_tls),
    F_LATER("portLevelSettings"),
    F_LATER("tunnel"),
    F_LATER("proxyProtocol"),
    F_LATER("retryBudget"),
    F_END,
};

static void traffic_policy(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                           void *dst)
{
    walk(ld, v, traffic_policy_fields, dst);
}

static const field_t subset_fields[] = {
    F_STR("name", weir_subset_t, name),
    F_LABELS("labels", weir_subset_t, labels),
    F_FN("trafficPolicy", weir_subset_t, policy, traffic_policy),
    F_END,
};

static void dr_subset(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    weir_destination_rule_t *dr = dst;
    weir_subset_t s = {.place = place_of(ld, item)};
    if (!walk(ld, item, subset_fields, &s))
        return;
    if (s.name == NULL) {
        require(ld, item, "name");
        return;
    }
    for (size_t j = 0; j < dr->n_subsets; j++) {
        if (strcmp(dr->subsets[j].name, s.name) == 0) {
            err_field(ld, item, "name", "\"%s\" is defined twice (first at %u:%u)", s.name,
                      dr->subsets[j].place.line, dr->subsets[j].place.col);
            return;
        }
    }
    dr->subsets[dr->n_subsets++] = s;
}

static void dr_subsets(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_destination_rule_t *dr = dst;
    if (v->type == WEIR_YAML_SEQ)
        dr->subsets = arena_array(ld->c, v->count, sizeof(*dr->subsets));
    each(ld, v, dr_subset, dr);
}

static const field_t destination_rule_fields[] = {
    F_HOST("host", weir_destination_rule_t, host),
    F_FN("trafficPolicy", weir_destination_rule_t, policy, traffic_policy),
    F_FN0("subsets", dr_subsets),
    F_LATER("exportTo"),
    F_LATER("workloadSelector"),
    F_END,
};

/* ---- ServiceEntry and WorkloadEntry --------------------------------------------------------- */

static void we_ports(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_workload_entry_t *we = dst;
    if (!is_map(ld, v))
        return;
    we->ports = arena_array(ld->c, v->count, sizeof(*we->ports));
    for (size_t i = 0; i < v->count; i++) {
        size_t mark = path_mapkey(ld, v->keys[i]->scalar);
        int64_t n;
        if (int_of(ld, v->items[i], 1, 65535, &n))
            we->ports[we->n_ports++] =
                (weir_port_map_t){arena_strdup(ld->c, v->keys[i]->scalar), (uint32_t)n};
        path_pop(ld, mark);
    }
}

static const field_t workload_entry_fields[] = {
    F_STR("address", weir_workload_entry_t, address),
    F_FN0("ports", we_ports),
    F_LABELS("labels", weir_workload_entry_t, labels),
    F_STR("serviceAccount", weir_workload_entry_t, service_account),
    F_LATER("network"),
    F_LATER("locality"),
    F_LATER("weight"),
    F_END,
};

static void se_hosts(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_service_entry_t *se = dst;
    strlist_t l = strlist_of(ld, v, true, false);
    se->hosts = l.items;
    se->n_hosts = l.n;
}

/* validation.go ValidateIPSubnet: an IP or a CIDR, parsed here once for the address lookups. */
static void se_address(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    weir_service_entry_t *se = dst;
    char *s = str_of(ld, item);
    if (s == NULL)
        return;
    if (!weir_cidr_parse(s, &se->address_ranges[se->n_addresses])) {
        err(ld, item, "must be an IP address or a CIDR block, got \"%s\"", s);
        return;
    }
    se->addresses[se->n_addresses++] = s;
}

static void se_addresses(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                         void *dst)
{
    weir_service_entry_t *se = dst;
    if (v->type == WEIR_YAML_SEQ) {
        se->addresses = arena_array(ld->c, v->count, sizeof(*se->addresses));
        se->address_ranges = arena_array(ld->c, v->count, sizeof(*se->address_ranges));
    }
    each(ld, v, se_address, se);
}

static void se_subject_alt_names(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                                 void *dst)
{
    weir_service_entry_t *se = dst;
    strings_of(ld, v, &se->subject_alt_names, &se->n_subject_alt_names);
}

static void se_port_protocol(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                             void *dst)
{
    char *p = protocol_of(ld, v, service_protocols);
    if (p)
        *(char **)dst = p;
}

static const field_t service_port_fields[] = {
    F_PORT("number", weir_service_port_t, number),
    F_FN("protocol", weir_service_port_t, protocol, se_port_protocol),
    F_STR("name", weir_service_port_t, name),
    F_PORT("targetPort", weir_service_port_t, target_port),
    F_END,
};

static void se_port(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    weir_service_entry_t *se = dst;
    weir_service_port_t p = {0};
    if (!walk(ld, item, service_port_fields, &p))
        return;
    require(ld, item, "number");
    require(ld, item, "name");
    if (p.target_port == 0)
        p.target_port = p.number;
    for (size_t j = 0; p.number && j < se->n_ports; j++) {
        if (se->ports[j].number == p.number) {
            err_field(ld, item, "number", "port %u is declared twice", p.number);
            return;
        }
    }
    se->ports[se->n_ports++] = p;
}

static void se_ports(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_service_entry_t *se = dst;
    if (v->type == WEIR_YAML_SEQ)
        se->ports = arena_array(ld->c, v->count, sizeof(*se->ports));
    each(ld, v, se_port, se);
}

static void se_location(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    static const char *const names[] = {"MESH_EXTERNAL", "MESH_INTERNAL", NULL};
    int i = enum_of(ld, v, names);
    if (i >= 0)
        ((weir_service_entry_t *)dst)->location = (weir_location_t)i;
}

static void se_resolution(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                          void *dst)
{
    static const char *const names[] = {"NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", NULL};
    int i = enum_of(ld, v, names);
    if (i >= 0)
        ((weir_service_entry_t *)dst)->resolution = (weir_resolution_t)i;
}

static void se_endpoint(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    weir_service_entry_t *se = dst;
    weir_workload_entry_t *we = &se->endpoints[se->n_endpoints];
    we->namespace = (char *)ld->ns;
    we->place = place_of(ld, item);
    if (!walk(ld, item, workload_entry_fields, we))
        return;
    require(ld, item, "address");
    se->n_endpoints++;
}

static void se_endpoints(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                         void *dst)
{
    weir_service_entry_t *se = dst;
    if (v->type == WEIR_YAML_SEQ)
        se->endpoints = arena_array(ld->c, v->count, sizeof(*se->endpoints));
    each(ld, v, se_endpoint, se);
}

static const field_t workload_selector_fields[] = {
    F_LABELS("labels", weir_service_entry_t, workload_selector),
    F_END,
};

static void se_workload_selector(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                                 void *dst)
{
    weir_service_entry_t *se = dst;
    se->has_workload_selector = walk(ld, v, workload_selector_fields, se);
}

static const field_t service_entry_fields[] = {
    F_FN0("hosts", se_hosts),
    F_FN0("addresses", se_addresses),
    F_FN0("ports", se_ports),
    F_FN0("location", se_location),
    F_FN0("resolution", se_resolution),
    F_FN0("endpoints", se_endpoints),
    F_FN0("workloadSelector", se_workload_selector),
    F_FN0("subjectAltNames", se_subject_alt_names),
    F_LATER("exportTo"),
    F_END,
};

/* ---- PeerAuthentication --------------------------------------------------------------------- */

static const char *const mtls_modes[] = {"UNSET", "DISABLE", "PERMISSIVE", "STRICT", NULL};

static void mtls_mode(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    int m = enum_of(ld, v, mtls_modes); /* same order as weir_mtls_mode_t */
    if (m >= 0)
        *(weir_mtls_mode_t *)dst = (weir_mtls_mode_t)m;
}

/* MutualTLS, read into a weir_mtls_mode_t: the top-level `mtls` and each portLevelMtls value. */
static const field_t mtls_fields[] = {
    F_FN0("mode", mtls_mode),
    F_END,
};

static void pa_mtls(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    walk(ld, v, mtls_fields, &((weir_peer_authentication_t *)dst)->mode);
}

/* validation.go validateWorkloadSelector: no empty keys, no wildcards. */
static void selector_labels(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                            void *dst)
{
    labels_of(ld, v, dst);
    for (size_t i = 0; v->type == WEIR_YAML_MAP && i < v->count; i++) {
        const weir_yaml_node_t *k = v->keys[i], *val = v->items[i];
        bool star =
            strchr(k->scalar, '*') || (val->type == WEIR_YAML_SCALAR && strchr(val->scalar, '*'));
        if (*k->scalar && !star)
            continue;
        size_t mark = path_mapkey(ld, k->scalar);
        err(ld, k, "%s",
            star ? "wildcards are not supported in a selector"
                 : "an empty key is not supported in a selector");
        path_pop(ld, mark);
    }
}

static const field_t pa_selector_fields[] = {
    F_FN("matchLabels", weir_peer_authentication_t, selector, selector_labels),
    F_END,
};

static void pa_selector(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_peer_authentication_t *pa = dst;
    if (walk(ld, v, pa_selector_fields, pa) && pa->selector.count == 0)
        warn(ld, v, "selects no labels, so the PeerAuthentication applies namespace-wide");
}

/* A portLevelMtls key. Protobuf's JSON mapping writes map<uint32, ...> keys as strings, so
 * "8080" is as good as 8080. */
static bool port_key_of(ld_t *ld, const weir_yaml_node_t *k, uint32_t *out)
{
    size_t digits = strspn(k->scalar, "0123456789");
    if (digits == 0 || k->scalar[digits] != '\0') {
        err(ld, k, "must be a port number, got \"%.64s\"", k->scalar);
        return false;
    }
    unsigned long n = digits > 5 ? 0 : strtoul(k->scalar, NULL, 10);
    if (n < 1 || n > 65535) {
        err(ld, k, "must be 1..65535, got %.64s", k->scalar);
        return false;
    }
    *out = (uint32_t)n;
    return true;
}

static void pa_port_level(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                          void *dst)
{
    weir_peer_authentication_t *pa = dst;
    if (!is_map(ld, v))
        return;
    if (v->count == 0) {
        err(ld, v, "must have at least one port");
        return;
    }
    pa->port_mtls = arena_array(ld->c, v->count, sizeof(*pa->port_mtls));
    for (size_t i = 0; i < v->count; i++) {
        const weir_yaml_node_t *k = v->keys[i], *val = v->items[i];
        size_t mark = path_mapkey(ld, k->scalar);
        weir_port_mtls_t pm = {.place = place_of(ld, k)};
        bool ok = port_key_of(ld, k, &pm.port);
        for (size_t j = 0; ok && j < pa->n_port_mtls; j++) {
            if (pa->port_mtls[j].port == pm.port) {
                err(ld, k, "port %u is given twice", pm.port);
                ok = false;
            }
        }
        /* A null value is a MutualTLS with every field unset: UNSET, inherit. */
        if (ok && (weir_yaml_is_null(val) || walk(ld, val, mtls_fields, &pm.mode)))
            pa->port_mtls[pa->n_port_mtls++] = pm;
        path_pop(ld, mark);
    }
}

static const field_t peer_authentication_fields[] = {
    F_FN0("selector", pa_selector),
    F_FN0("mtls", pa_mtls),
    F_FN0("portLevelMtls", pa_port_level),
    F_END,
};

/* ---- resources ------------------------------------------------------------------------------ */

typedef struct {
    const weir_yaml_node_t *name, *ns;
    weir_labels_t labels, annotations;
} meta_nodes_t;

static const field_t metadata_fields[] = {
    F_NODE("name", meta_nodes_t, name),
    F_NODE("namespace", meta_nodes_t, ns),
    F_LABELS("labels", meta_nodes_t, labels),
    F_LABELS("annotations", meta_nodes_t, annotations),
    /* What `kubectl get -o yaml` adds; it means nothing to a data plane. */
    F_QUIET("uid"),
    F_QUIET("resourceVersion"),
    F_QUIET("generation"),
    F_QUIET("creationTimestamp"),
    F_QUIET("deletionTimestamp"),
    F_QUIET("deletionGracePeriodSeconds"),
    F_QUIET("generateName"),
    F_QUIET("selfLink"),
    F_QUIET("managedFields"),
    F_QUIET("ownerReferences"),
    F_QUIET("finalizers"),
    F_END,
};

typedef struct {
    const weir_yaml_node_t *api, *kind, *metadata, *spec;
} doc_nodes_t;

static const field_t document_fields[] = {
    F_NODE("apiVersion", doc_nodes_t, api),
    F_NODE("kind", doc_nodes_t, kind),
    F_NODE("metadata", doc_nodes_t, metadata),
    F_NODE("spec", doc_nodes_t, spec),
    F_QUIET("status"),
    F_END,
};

typedef struct {
    const char *kind;
    char *name, *ns;
    const weir_yaml_node_t *root, *spec;
    weir_place_t place;
} resource_t;

static void load_gateway(ld_t *ld, const resource_t *r)
{
    weir_gateway_t g = {.name = r->name, .namespace = r->ns, .place = r->place};
    g.qualified_name = arena_printf(ld->c, "%s/%s", r->ns, r->name);
    if (walk(ld, r->spec, gateway_fields, &g)) {
        const weir_yaml_node_t *servers = field(r->spec, "servers");
        if (servers == NULL)
            err_field(ld, r->spec, "servers", "required");
        else if (servers->type == WEIR_YAML_SEQ && servers->count == 0)
            err_field(ld, r->spec, "servers", "must have at least one server");
    }
    cfg_t *c = ld->c;
    VEC_GROW(c->pub.gateways, c->pub.n_gateways, c->cap_gw);
    c->pub.gateways[c->pub.n_gateways++] = g;
}

static void load_virtual_service(ld_t *ld, const resource_t *r)
{
    weir_virtual_service_t vs = {.name = r->name, .namespace = r->ns, .place = r->place};
    if (!walk(ld, r->spec, virtual_service_fields, &vs))
        return;
    if (vs.n_gateways == 0) { /* omitted or empty: sidecars only */
        vs.gateways = arena_array(ld->c, 1, sizeof(char *));
        vs.gateways[0] = "mesh";
        vs.n_gateways = 1;
    }
    const weir_yaml_node_t *hosts = field(r->spec, "hosts");
    if (hosts == NULL)
        err_field(ld, r->spec, "hosts", "required");
    else if (hosts->type == WEIR_YAML_SEQ && hosts->count == 0)
        err_field(ld, r->spec, "hosts", "must have at least one host");
    bool mesh = false;
    for (size_t i = 0; i < vs.n_gateways; i++)
        mesh |= strcmp(vs.gateways[i], "mesh") == 0;
    for (size_t i = 0; mesh && hosts && hosts->type == WEIR_YAML_SEQ && i < hosts->count; i++) {
        const weir_yaml_node_t *h = hosts->items[i];
        if (h->type == WEIR_YAML_SCALAR && strcmp(h->scalar, "*") == 0) {
            size_t mark = path_key(ld, "hosts");
            size_t mark2 = path_index(ld, i);
            err(ld, h, "\"*\" is not allowed for a VirtualService bound to the mesh gateway");
            path_pop(ld, mark2);
            path_pop(ld, mark);
        }
    }
    if (!field(r->spec, "http") && !field(r->spec, "tcp") && !field(r->spec, "tls"))
        err(ld, r->spec, "one of http, tcp, tls is required");
    if (vs.http == NULL)
        vs.http = arena_array(ld->c, 0, sizeof(*vs.http));
    cfg_t *c = ld->c;
    VEC_GROW(c->pub.virtual_services, c->pub.n_virtual_services, c->cap_vs);
    c->pub.virtual_services[c->pub.n_virtual_services++] = vs;
}

/* The blocks Istio's MergeTrafficPolicy replaces whole: each one's "set" flag and body. */
#define POLICY_BLOCK(flag, body)                                                                   \
    {offsetof(weir_traffic_policy_t, flag), offsetof(weir_traffic_policy_t, body),                 \
     sizeof(((weir_traffic_policy_t *)0)->body)}
static const struct {
    size_t set, body, size;
} policy_blocks[] = {
    POLICY_BLOCK(has_lb, lb),
    POLICY_BLOCK(has_tls, tls),
};

/* A subset inherits every block it does not set from the top level. */
static void merge_policy(weir_traffic_policy_t *subset, const weir_traffic_policy_t *top)
{
    for (size_t i = 0; i < sizeof(policy_blocks) / sizeof(policy_blocks[0]); i++) {
        bool *set = (bool *)((char *)subset + policy_blocks[i].set);
        if (*set)
            continue;
        *set = *(const bool *)((const char *)top + policy_blocks[i].set);
        memcpy((char *)subset + policy_blocks[i].body, (const char *)top + policy_blocks[i].body,
               policy_blocks[i].size);
    }
}

static void load_destination_rule(ld_t *ld, const resource_t *r)
{
    cfg_t *c = ld->c;
    weir_destination_rule_t dr = {.name = r->name, .namespace = r->ns, .place = r->place};
    if (!walk(ld, r->spec, destination_rule_fields, &dr))
        return;
    if (dr.host == NULL)
        require(ld, r->spec, "host");
    for (size_t i = 0; i < dr.n_subsets; i++)
        merge_policy(&dr.subsets[i].policy, &dr.policy);
    const weir_config_t *cfg = &c->pub;
    const weir_destination_rule_t *first =
        dr.host ? weir_config_find_destination_rule(cfg, dr.host) : NULL;
    if (first) {
        size_t mark = path_key(ld, "host");
        warn(ld, weir_yaml_map_get(r->spec, "host"),
             "DestinationRule %s/%s at %s:%u:%u already applies to \"%s\"; only the first is used",
             first->namespace, first->name, first->place.file, first->place.line, first->place.col,
             dr.host);
        path_pop(ld, mark);
    }
    VEC_GROW(c->pub.destination_rules, c->pub.n_destination_rules, c->cap_dr);
    c->pub.destination_rules[c->pub.n_destination_rules++] = dr;
}

static void load_service_entry(ld_t *ld, const resource_t *r)
{
    cfg_t *c = ld->c;
    weir_service_entry_t se = {.name = r->name, .namespace = r->ns, .place = r->place};
    const weir_yaml_node_t *spec = r->spec;
    if (!walk(ld, spec, service_entry_fields, &se))
        return;
    const weir_yaml_node_t *hosts = field(spec, "hosts");
    if (hosts == NULL)
        err_field(ld, spec, "hosts", "required");
    else if (hosts->type == WEIR_YAML_SEQ && hosts->count == 0)
        err_field(ld, spec, "hosts", "must have at least one host");
    const weir_yaml_node_t *eps = field(spec, "endpoints");
    if (se.has_workload_selector && eps)
        err_field(ld, spec, "workloadSelector", "cannot be combined with endpoints");
    if (se.resolution == WEIR_RESOLUTION_NONE && se.n_endpoints > 0)
        err_field(ld, spec, "endpoints", "not allowed with resolution NONE (the default)");
    if (se.resolution == WEIR_RESOLUTION_DNS_ROUND_ROBIN && se.n_endpoints > 1)
        err_field(ld, spec, "endpoints", "resolution DNS_ROUND_ROBIN allows at most one");
    for (size_t i = 0; se.resolution == WEIR_RESOLUTION_STATIC && eps && i < eps->count; i++) {
        const weir_yaml_node_t *a = field(eps->items[i], "address");
        if (a && a->type == WEIR_YAML_SCALAR && !is_ip(a->scalar)) {
            size_t mark = path_key(ld, "endpoints");
            size_t mark2 = path_index(ld, i);
            err_field(ld, eps->items[i], "address",
                      "must be an IP address with resolution STATIC, got \"%s\"", a->scalar);
            path_pop(ld, mark2);
            path_pop(ld, mark);
        }
    }
    VEC_GROW(c->pub.service_entries, c->pub.n_service_entries, c->cap_se);
    c->pub.service_entries[c->pub.n_service_entries++] = se;
}

static void load_workload_entry(ld_t *ld, const resource_t *r)
{
    cfg_t *c = ld->c;
    weir_workload_entry_t we = {.name = r->name, .namespace = r->ns, .place = r->place};
    if (!walk(ld, r->spec, workload_entry_fields, &we))
        return;
    if (we.address == NULL) {
        require(ld, r->spec, "address");
    } else if (!is_ip(we.address)) {
        size_t mark = path_key(ld, "address");
        warn(ld, weir_yaml_map_get(r->spec, "address"),
             "\"%s\" is not an IP address; weir does not resolve names here", we.address);
        path_pop(ld, mark);
    }
    VEC_GROW(c->pub.workload_entries, c->pub.n_workload_entries, c->cap_we);
    c->pub.workload_entries[c->pub.n_workload_entries++] = we;
}

static bool same_labels(const weir_labels_t *a, const weir_labels_t *b)
{
    return a->count == b->count && weir_labels_match(a, b); /* keys are unique in a map */
}

static void load_peer_authentication(ld_t *ld, const resource_t *r)
{
    cfg_t *c = ld->c;
    weir_peer_authentication_t pa = {.name = r->name, .namespace = r->ns, .place = r->place};
    if (!walk(ld, r->spec, peer_authentication_fields, &pa))
        return;
    pa.has_selector = pa.selector.count > 0;
    if (pa.n_port_mtls && !pa.has_selector)
        err_field(ld, r->spec, "portLevelMtls",
                  "requires selector.matchLabels: a namespace- or mesh-wide PeerAuthentication "
                  "cannot set port-level mTLS");
    /* Only the oldest PeerAuthentication of a level is used: a later one competing with it for
     * the same workloads does nothing, and config must not silently do nothing. */
    const weir_peer_authentication_t *first = NULL;
    bool ignored = pa.has_selector && strcmp(pa.namespace, WEIR_ROOT_NAMESPACE) == 0;
    for (size_t i = 0; !ignored && first == NULL && i < c->pub.n_peer_authentications; i++) {
        const weir_peer_authentication_t *o = &c->pub.peer_authentications[i];
        if (strcmp(o->namespace, pa.namespace) == 0 && o->has_selector == pa.has_selector &&
            (!pa.has_selector || same_labels(&o->selector, &pa.selector)))
            first = o;
    }
    const weir_yaml_node_t *sel = weir_yaml_map_get(r->spec, "selector");
    if (ignored) {
        size_t mark = path_key(ld, "selector");
        /* See weir_config_peer_authentication_mode: Istio drops these. */
        warn(ld, sel,
             "ignored in the root namespace \"%s\", as Istio ignores it; without a selector the "
             "PeerAuthentication applies mesh-wide",
             WEIR_ROOT_NAMESPACE);
        path_pop(ld, mark);
    } else if (first && pa.has_selector) {
        size_t mark = path_key(ld, "selector.matchLabels");
        warn(ld, weir_yaml_map_get(sel, "matchLabels"),
             "PeerAuthentication %s/%s at %s:%u:%u selects the same labels; only the first is used",
             first->namespace, first->name, first->place.file, first->place.line, first->place.col);
        path_pop(ld, mark);
    } else if (first) {
        warn(ld, r->spec,
             "PeerAuthentication %s/%s at %s:%u:%u already applies to namespace \"%s\"; only the "
             "first is used",
             first->namespace, first->name, first->place.file, first->place.line, first->place.col,
             pa.namespace);
    }
    VEC_GROW(c->pub.peer_authentications, c->pub.n_peer_authentications, c->cap_pa);
    c->pub.peer_authentications[c->pub.n_peer_authentications++] = pa;
}

typedef void (*kind_fn)(ld_t *ld, const resource_t *r);

#define ISTIO_NETWORKING "networking.istio.io"
#define ISTIO_SECURITY "security.istio.io"

/* The versions each group serves, the one to recommend first. */
static const char *const networking_versions[] = {"v1", "v1beta1", "v1alpha3", NULL};
static const char *const security_versions[] = {"v1", "v1beta1", NULL};

static const struct {
    const char *group, *kind;
    const char *const *versions;
    kind_fn load;
} kinds[] = {
    {ISTIO_NETWORKING, "Gateway", networking_versions, load_gateway},
    {ISTIO_NETWORKING, "VirtualService", networking_versions, load_virtual_service},
    {ISTIO_NETWORKING, "DestinationRule", networking_versions, load_destination_rule},
    {ISTIO_NETWORKING, "ServiceEntry", networking_versions, load_service_entry},
    {ISTIO_NETWORKING, "WorkloadEntry", networking_versions, load_workload_entry},
    {ISTIO_SECURITY, "PeerAuthentication", security_versions, load_peer_authentication},
};

/* Reads metadata; false when the resource cannot be kept (no name, or a duplicate). */
static bool load_metadata(ld_t *ld, const doc_nodes_t *d, resource_t *r)
{
    meta_nodes_t m = {0};
    const weir_yaml_node_t *md =
        d->metadata && !weir_yaml_is_null(d->metadata) ? d->metadata : NULL;
    size_t mark = path_key(ld, "metadata");
    bool ok = md == NULL || walk(ld, md, metadata_fields, &m);
    if (ok && m.name == NULL) {
        size_t mk = path_key(ld, "name");
        err(ld, md ? md : r->root, "required");
        path_pop(ld, mk);
        ok = false;
    }
    if (ok) {
        size_t mk = path_key(ld, "name");
        r->name = str_of(ld, m.name);
        if (r->name && !k8s_name_ok(r->name, true)) {
            err(ld, m.name, "\"%s\" is not a valid name (lower-case RFC 1123)", r->name);
            r->name = NULL;
        }
        path_pop(ld, mk);
        ok = r->name != NULL;
    }
    r->ns = "default";
    if (ok && m.ns) {
        size_t mk = path_key(ld, "namespace");
        r->ns = str_of(ld, m.ns);
        if (r->ns && !k8s_name_ok(r->ns, false)) {
            err(ld, m.ns, "\"%s\" is not a valid namespace (lower-case RFC 1123 label)", r->ns);
            r->ns = NULL;
        }
        path_pop(ld, mk);
        ok = r->ns != NULL;
    }
    if (ok) {
        cfg_t *c = ld->c;
        for (size_t i = 0; i < c->n_seen; i++) {
            const seen_t *s = &c->seen[i];
            if (strcmp(s->kind, r->kind) == 0 && strcmp(s->ns, r->ns) == 0 &&
                strcmp(s->name, r->name) == 0) {
                size_t mk = path_key(ld, "name");
                err(ld, m.name, "%s \"%s/%s\" is defined twice (first at %s:%u:%u)", r->kind, r->ns,
                    r->name, s->place.file, s->place.line, s->place.col);
                path_pop(ld, mk);
                ok = false;
                break;
            }
        }
        if (ok) {
            VEC_GROW(c->seen, c->n_seen, c->cap_seen);
            c->seen[c->n_seen++] = (seen_t){r->kind, r->ns, r->name, r->place};
        }
    }
    path_pop(ld, mark);
    return ok;
}

static void load_document(ld_t *ld, const weir_yaml_node_t *root)
{
    if (root->type != WEIR_YAML_MAP) {
        err(ld, root, "a document must be a Kubernetes resource (a map with apiVersion and kind)");
        return;
    }
    const weir_yaml_node_t *api = field(root, "apiVersion"), *kind = field(root, "kind");
    if (api == NULL || kind == NULL) {
        err_field(ld, root, api ? "kind" : "apiVersion", "required");
        return;
    }
    if (api->type != WEIR_YAML_SCALAR || kind->type != WEIR_YAML_SCALAR) {
        const char *which = api->type != WEIR_YAML_SCALAR ? "apiVersion" : "kind";
        err_field(ld, root, which, "must be a string");
        return;
    }
    /* `kubectl get -o yaml` wraps several objects in a List. */
    if (strcmp(api->scalar, "v1") == 0 && strcmp(kind->scalar, "List") == 0) {
        const weir_yaml_node_t *items = field(root, "items");
        for (size_t i = 0; items && items->type == WEIR_YAML_SEQ && i < items->count; i++)
            load_document(ld, items->items[i]);
        return;
    }
    const char *slash = strchr(api->scalar, '/');
    size_t group_len = slash ? (size_t)(slash - api->scalar) : 0;
    const char *version = slash ? slash + 1 : api->scalar;
    bool istio = group_len >= strlen(".istio.io") &&
                 strncmp(slash - strlen(".istio.io"), ".istio.io", strlen(".istio.io")) == 0;
    if (!istio)
        return; /* Pod, Service, Deployment, ConfigMap ... belong to Kubernetes */
    size_t k = 0, n_kinds = sizeof(kinds) / sizeof(kinds[0]);
    while (k < n_kinds && (strlen(kinds[k].group) != group_len ||
                           strncmp(api->scalar, kinds[k].group, group_len) != 0 ||
                           strcmp(kinds[k].kind, kind->scalar) != 0))
        k++;
    if (k == n_kinds) {
        warn(ld, kind, "%s is not applied by weir yet; ignored", kind->scalar);
        return;
    }
    const char *const *versions = kinds[k].versions;
    size_t v = 0;
    while (versions[v] && strcmp(versions[v], version) != 0)
        v++;
    if (versions[v] == NULL) {
        weir_buf_t use = WEIR_BUF_INIT;
        weir_buf_appendf(&use, "%s/%s", kinds[k].group, versions[0]);
        for (size_t i = 1; versions[i]; i++)
            weir_buf_appendf(&use, "%s%s", versions[i + 1] ? ", " : " or ", versions[i]);
        err_field(ld, root, "apiVersion", "%s has no version \"%s\"; use %s", kind->scalar, version,
                  use.base);
        weir_buf_free(&use);
        return;
    }

    doc_nodes_t d = {0};
    walk(ld, root, document_fields, &d);
    resource_t r = {.kind = kinds[k].kind, .root = root, .place = place_of(ld, root)};
    if (!load_metadata(ld, &d, &r))
        return;
    /* A missing spec reads as an empty one, so its required fields are named, at the root. */
    weir_yaml_node_t empty = {
        .type = WEIR_YAML_MAP, .file = root->file, .line = root->line, .col = root->col};
    r.spec = d.spec ? d.spec : &empty;
    ld->ns = r.ns;
    kinds[k].load(ld, &r);
    ld->ns = NULL;
}

/* ---- files ---------------------------------------------------------------------------------- */

static const char *add_file(cfg_t *c, const char *path)
{
    VEC_GROW(c->pub.files, c->pub.n_files, c->cap_files);
    return c->pub.files[c->pub.n_files++] = arena_strdup(c, path);
}

/* A file's diagnostics in the order of their places, as a compiler prints them: checks that
 * run after a walk (a missing field, say) would otherwise come after those inside it. Stable,
 * so a warning and an error at one place keep their order. */
static void sort_diags(weir_diags_t *d, size_t from)
{
    for (size_t i = from + 1; i < d->count; i++) {
        weir_diag_t it = d->items[i];
        size_t j = i;
        for (; j > from && (d->items[j - 1].line > it.line ||
                            (d->items[j - 1].line == it.line && d->items[j - 1].col > it.col));
             j--)
            d->items[j] = d->items[j - 1];
        d->items[j] = it;
    }
}

static void load_yaml(cfg_t *c, weir_yaml_file_t *y, const char *path, weir_diags_t *diags)
{
    ld_t ld = {.c = c, .diags = diags, .file = add_file(c, path)};
    size_t first = diags->count;
    if (y == NULL)
        return;
    for (size_t i = 0; i < weir_yaml_doc_count(y); i++)
        load_document(&ld, weir_yaml_doc_root(y, i));
    sort_diags(diags, first);
    weir_buf_free(&ld.path);
    weir_yaml_free(y);
}

static bool yaml_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && ((n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
                              (n > 4 && strcmp(name + n - 4, ".yml") == 0));
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every *.yaml / *.yml in dir, by name, not recursive. Names starting with '.' are skipped:
 * that also skips a ConfigMap mount's ..data and ..<timestamp> directories, while the plain
 * symlinks at its top level (gateway.yaml -> ..data/gateway.yaml) are followed by stat(). */
static void load_dir(cfg_t *c, const char *dir, weir_diags_t *diags)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        weir_diags_add(diags, WEIR_DIAG_ERROR, dir, 0, 0, "cannot read: %s", strerror(errno));
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    const char *sep = dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/";
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!yaml_name(e->d_name))
            continue;
        weir_buf_t p = WEIR_BUF_INIT;
        weir_buf_appendf(&p, "%s%s%s", dir, sep, e->d_name);
        struct stat st;
        if (stat(p.base, &st) == 0 && !S_ISREG(st.st_mode)) {
            weir_buf_free(&p); /* a directory that happens to be called x.yaml */
            continue;
        }
        VEC_GROW(names, n, cap);
        names[n++] = p.base; /* a dangling link is kept, to be reported when it is opened */
    }
    closedir(d);
    if (n == 0)
        weir_diags_add(diags, WEIR_DIAG_WARNING, dir, 0, 0, "no *.yaml or *.yml files here");
    if (n > 1)
        qsort(names, n, sizeof(*names), by_name);
    for (size_t i = 0; i < n; i++) {
        load_yaml(c, weir_yaml_load_file(names[i], diags), names[i], diags);
        free(names[i]);
    }
    free(names);
}

static void load_path(cfg_t *c, const char *path, weir_diags_t *diags)
{
    struct stat st;
    if (stat(path, &st) != 0)
        weir_diags_add(diags, WEIR_DIAG_ERROR, path, 0, 0, "cannot read: %s", strerror(errno));
    else if (S_ISDIR(st.st_mode))
        load_dir(c, path, diags);
    else
        load_yaml(c, weir_yaml_load_file(path, diags), path, diags);
}

/* ---- references ----------------------------------------------------------------------------- */

static void check_refs(cfg_t *c, weir_diags_t *diags)
{
    const weir_config_t *cfg = &c->pub;
    for (size_t i = 0; i < c->n_refs; i++) {
        const ref_t *r = &c->refs[i];
        const weir_place_t *p = &r->place;
        if (r->kind == REF_GATEWAY) {
            size_t g = 0;
            while (g < cfg->n_gateways && strcmp(cfg->gateways[g].qualified_name, r->name) != 0)
                g++;
            if (g == cfg->n_gateways)
                weir_diags_add(diags, WEIR_DIAG_ERROR, p->file, p->line, p->col,
                               "%s: gateway \"%s\" is not defined by any Gateway", r->path,
                               r->name);
        } else if (r->kind == REF_SUBSET) {
            const weir_destination_rule_t *dr = weir_config_find_destination_rule(cfg, r->host);
            if (dr == NULL || weir_destination_rule_subset(dr, r->name) == NULL)
                weir_diags_add(diags, WEIR_DIAG_ERROR, p->file, p->line, p->col,
                               "%s: subset \"%s\" is not defined by any DestinationRule for "
                               "host \"%s\"",
                               r->path, r->name, r->host);
        } else if (weir_config_find_service(cfg, r->host) == NULL) {
            /* Kubernetes Services are not read: in kind the host may well exist. */
            weir_diags_add(diags, WEIR_DIAG_WARNING, p->file, p->line, p->col,
                           "%s: host \"%s\" is not declared by any ServiceEntry", r->path, r->host);
        }
    }
}

/* ---- public --------------------------------------------------------------------------------- */

static weir_config_t *finish(cfg_t *c, weir_diags_t *diags, size_t errors_before)
{
    check_refs(c, diags);
    free(c->refs);
    free(c->seen);
    c->refs = NULL;
    c->seen = NULL;
    c->n_refs = c->n_seen = 0;
    if (diags->errors > errors_before) {
        weir_config_free(&c->pub);
        return NULL;
    }
    return &c->pub;
}

weir_config_t *weir_config_load(const char *const *paths, size_t n_paths, weir_diags_t *diags)
{
    size_t errors_before = diags->errors;
    cfg_t *c = weir_mem_calloc(1, sizeof(*c));
    for (size_t i = 0; i < n_paths; i++)
        load_path(c, paths[i], diags);
    return finish(c, diags, errors_before);
}

weir_config_t *weir_config_load_string(const char *name, const char *text, weir_diags_t *diags)
{
    size_t errors_before = diags->errors;
    cfg_t *c = weir_mem_calloc(1, sizeof(*c));
    load_yaml(c, weir_yaml_load_string(name, text, strlen(text), diags), name, diags);
    return finish(c, diags, errors_before);
}

void weir_config_free(weir_config_t *cfg)
{
    if (cfg == NULL)
        return;
    cfg_t *c = (cfg_t *)cfg;
    for (size_t i = 0; i < c->n_regexes; i++)
        pcre2_code_free(c->regexes[i]);
    free(c->regexes);
    free(c->refs);
    free(c->seen);
    free(cfg->gateways);
    free(cfg->virtual_services);
    free(cfg->destination_rules);
    free(cfg->service_entries);
    free(cfg->workload_entries);
    free(cfg->peer_authentications);
    free(cfg->files);
    for (arena_block_t *b = c->arena, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(c);
}

bool weir_labels_match(const weir_labels_t *selector, const weir_labels_t *labels)
{
    for (size_t i = 0; selector && i < selector->count; i++) {
        const char *v = weir_labels_get(labels, selector->items[i].key);
        if (v == NULL || strcmp(v, selector->items[i].value) != 0)
            return false;
    }
    return true;
}

const char *weir_labels_get(const weir_labels_t *labels, const char *key)
{
    for (size_t i = 0; labels && i < labels->count; i++)
        if (strcmp(labels->items[i].key, key) == 0)
            return labels->items[i].value;
    return NULL;
}

const weir_destination_rule_t *weir_config_find_destination_rule(const weir_config_t *cfg,
                                                                 const char *host_fqdn)
{
    for (size_t i = 0; cfg && i < cfg->n_destination_rules; i++)
        if (cfg->destination_rules[i].host &&
            strcmp(cfg->destination_rules[i].host, host_fqdn) == 0)
            return &cfg->destination_rules[i];
    return NULL;
}

const weir_subset_t *weir_destination_rule_subset(const weir_destination_rule_t *dr,
                                                  const char *name)
{
    for (size_t i = 0; dr && i < dr->n_subsets; i++)
        if (strcmp(dr->subsets[i].name, name) == 0)
            return &dr->subsets[i];
    return NULL;
}

const weir_service_entry_t *weir_config_find_service(const weir_config_t *cfg,
                                                     const char *host_fqdn)
{
    for (size_t i = 0; cfg && i < cfg->n_service_entries; i++)
        for (size_t j = 0; j < cfg->service_entries[i].n_hosts; j++)
            if (strcmp(cfg->service_entries[i].hosts[j], host_fqdn) == 0)
                return &cfg->service_entries[i];
    return NULL;
}

/* ---- mesh registry lookups ------------------------------------------------------------------ */

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is IPv4 for every comparison here. */
static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool addr_bytes(const struct sockaddr *sa, int *family, uint8_t out[16])
{
    if (sa != NULL && sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        *family = AF_INET;
        return true;
    }
    if (sa != NULL && sa->sa_family == AF_INET6) {
        const uint8_t *b = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
        bool mapped = memcmp(b, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0;
        memcpy(out, mapped ? b + 12 : b, mapped ? 4 : 16);
        *family = mapped ? AF_INET : AF_INET6;
        return true;
    }
    return false;
}

/* The mask of byte i of a prefix of `bits` bits: 0xff before it, 0 after, partial inside. */
static uint8_t prefix_mask(unsigned bits, unsigned i)
{
    unsigned keep = bits > i * 8 ? bits - i * 8 : 0;
    return keep >= 8 ? 0xff : (uint8_t)(0xff00u >> keep);
}

bool weir_cidr_parse(const char *text, weir_cidr_t *out)
{
    char ip[INET6_ADDRSTRLEN];
    const char *slash = strchr(text, '/');
    size_t len = slash ? (size_t)(slash - text) : strlen(text);
    if (len == 0 || len >= sizeof(ip))
        return false;
    memcpy(ip, text, len);
    ip[len] = '\0';
    weir_cidr_t c = {.family = AF_INET, .prefix_len = 32};
    if (inet_pton(AF_INET, ip, c.addr) != 1) {
        c = (weir_cidr_t){.family = AF_INET6, .prefix_len = 128};
        if (inet_pton(AF_INET6, ip, c.addr) != 1)
            return false;
    }
    if (slash) {
        const char *p = slash + 1;
        size_t digits = strspn(p, "0123456789");
        if (digits == 0 || digits > 3 || p[digits] != '\0' || (p[0] == '0' && digits > 1))
            return false;
        unsigned n = (unsigned)strtoul(p, NULL, 10);
        if (n > c.prefix_len)
            return false;
        c.prefix_len = n;
    }
    /* ::ffff:a.b.c.d/96+n is a.b.c.d/n, so that it meets the addresses it covers as IPv4. */
    if (c.family == AF_INET6 && c.prefix_len >= 96 &&
        memcmp(c.addr, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0) {
        memmove(c.addr, c.addr + 12, 4);
        memset(c.addr + 4, 0, 12);
        c.family = AF_INET;
        c.prefix_len -= 96;
    }
    for (unsigned i = 0; i < sizeof(c.addr); i++)
        c.addr[i] &= prefix_mask(c.prefix_len, i);
    *out = c;
    return true;
}

bool weir_cidr_contains(const weir_cidr_t *cidr, const struct sockaddr *addr)
{
    uint8_t a[16];
    int family;
    if (!addr_bytes(addr, &family, a) || family != cidr->family)
        return false;
    for (unsigned i = 0; i * 8 < cidr->prefix_len; i++)
        if ((a[i] & prefix_mask(cidr->prefix_len, i)) != cidr->addr[i])
            return false;
    return true;
}

static bool has_port(const weir_service_entry_t *se, uint32_t port)
{
    for (size_t i = 0; i < se->n_ports; i++)
        if (se->ports[i].number == port)
            return true;
    return false;
}

const weir_service_entry_t *weir_config_service_by_address(const weir_config_t *cfg,
                                                           const struct sockaddr *addr,
                                                           uint32_t port)
{
    const weir_service_entry_t *best = NULL, *by_port = NULL;
    unsigned best_len = 0;
    for (size_t i = 0; cfg && i < cfg->n_service_entries; i++) {
        const weir_service_entry_t *se = &cfg->service_entries[i];
        if (!has_port(se, port))
            continue;
        if (se->n_addresses == 0 && by_port == NULL)
            by_port = se;
        for (size_t j = 0; se->address_ranges && j < se->n_addresses; j++) {
            const weir_cidr_t *r = &se->address_ranges[j];
            if ((best == NULL || r->prefix_len > best_len) && weir_cidr_contains(r, addr)) {
                best = se;
                best_len = r->prefix_len;
            }
        }
    }
    return best ? best : by_port;
}

static bool same_str(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

const weir_workload_entry_t *weir_config_service_endpoint(const weir_config_t *cfg,
                                                          const weir_service_entry_t *se,
                                                          size_t *cursor)
{
    if (se == NULL)
        return NULL;
    if (!se->has_workload_selector)
        return *cursor < se->n_endpoints ? &se->endpoints[(*cursor)++] : NULL;
    while (cfg && *cursor < cfg->n_workload_entries) {
        const weir_workload_entry_t *we = &cfg->workload_entries[(*cursor)++];
        if (same_str(we->namespace, se->namespace) &&
            weir_labels_match(&se->workload_selector, &we->labels))
            return we;
    }
    return NULL;
}

void weir_string_list_free(weir_string_list_t *list)
{
    for (size_t i = 0; list && i < list->count; i++)
        free(list->items[i]);
    if (list) {
        free(list->items);
        *list = (weir_string_list_t){NULL, 0};
    }
}

/* Appends s (taking it) unless the list already holds it. */
static void string_list_add_unique(weir_string_list_t *l, size_t *cap, char *s)
{
    for (size_t i = 0; i < l->count; i++) {
        if (strcmp(l->items[i], s) == 0) {
            free(s);
            return;
        }
    }
    VEC_GROW(l->items, l->count, *cap);
    l->items[l->count++] = s;
}

weir_string_list_t weir_config_service_accounts(const weir_config_t *cfg,
                                                const weir_service_entry_t *se,
                                                const char *trust_domain)
{
    weir_string_list_t l = {NULL, 0};
    size_t cap = 0, cursor = 0;
    for (const weir_workload_entry_t *we; (we = weir_config_service_endpoint(cfg, se, &cursor));) {
        weir_buf_t id = WEIR_BUF_INIT;
        weir_buf_appendf(&id, "spiffe://%s/ns/%s/sa/%s", trust_domain,
                         we->namespace ? we->namespace : se->namespace,
                         we->service_account ? we->service_account : "default");
        string_list_add_unique(&l, &cap, id.base);
    }
    for (size_t i = 0; se && i < se->n_subject_alt_names; i++)
        string_list_add_unique(&l, &cap, weir_mem_strdup(se->subject_alt_names[i]));
    return l;
}

/* ---- PeerAuthentication precedence ---------------------------------------------------------- */

/* PeerAuthentication levels, widest first. */
enum { PA_MESH, PA_NAMESPACE, PA_WORKLOAD, PA_LEVELS, PA_NONE = -1 };

/* The level at which pa applies to a workload, or PA_NONE: another namespace, labels that do
 * not match, or a selector in the root namespace (see config.h). */
static int pa_level(const weir_peer_authentication_t *pa, const char *root, const char *ns,
                    const weir_labels_t *labels)
{
    bool in_root = same_str(pa->namespace, root);
    if (!pa->has_selector && in_root)
        return PA_MESH;
    if (in_root || !same_str(pa->namespace, ns))
        return PA_NONE;
    if (!pa->has_selector)
        return PA_NAMESPACE;
    return weir_labels_match(&pa->selector, labels) ? PA_WORKLOAD : PA_NONE;
}

weir_mtls_mode_t weir_config_peer_authentication_mode(const weir_config_t *cfg,
                                                      const char *root_namespace,
                                                      const char *workload_ns,
                                                      const weir_labels_t *workload_labels,
                                                      uint32_t port)
{
    const char *root = root_namespace ? root_namespace : WEIR_ROOT_NAMESPACE;
    const weir_peer_authentication_t *level[PA_LEVELS] = {NULL, NULL, NULL};
    for (size_t i = 0; cfg && i < cfg->n_peer_authentications; i++) {
        const weir_peer_authentication_t *pa = &cfg->peer_authentications[i];
        int at = pa_level(pa, root, workload_ns, workload_labels);
        if (at != PA_NONE && level[at] == NULL)
            level[at] = pa; /* the oldest of its level */
    }
    weir_mtls_mode_t mode = WEIR_MTLS_PERMISSIVE;
    for (int i = 0; i < PA_LEVELS; i++)
        if (level[i] && level[i]->mode != WEIR_MTLS_UNSET)
            mode = level[i]->mode;
    const weir_peer_authentication_t *w = level[PA_WORKLOAD];
    for (size_t i = 0; port && w && i < w->n_port_mtls; i++)
        if (w->port_mtls[i].port == port && w->port_mtls[i].mode != WEIR_MTLS_UNSET)
            mode = w->port_mtls[i].mode;
    return mode;
}
