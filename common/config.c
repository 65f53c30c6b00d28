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

/* A tls[].match[].sniHosts entry, checked against the VirtualService's hosts once they are
 * all read (they may come after tls in the YAML). */
typedef struct {
    const char *path;
    const weir_yaml_node_t *at;
    const char *host;
} sni_t;

/* Loader state for one file. */
typedef struct {
    cfg_t *c;
    weir_diags_t *diags;
    const char *file; /* in c->pub.files */
    const char *ns;   /* namespace of the resource being read */
    weir_buf_t path;  /* field path of the value being read, relative to spec */
    sni_t *sni;       /* of the VirtualService being read */
    size_t n_sni, cap_sni;
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

/* A diagnostic about map.key, placed at its value or, when absent, at the map. */
static void report_field(ld_t *ld, weir_diag_level_t level, const weir_yaml_node_t *map,
                         const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void report_field(ld_t *ld, weir_diag_level_t level, const weir_yaml_node_t *map,
                         const char *key, const char *fmt, ...)
{
    const weir_yaml_node_t *at = weir_yaml_map_get(map, key);
    size_t mark = path_key(ld, key);
    va_list ap;
    va_start(ap, fmt);
    report(ld, level, at ? at : map, fmt, ap);
    va_end(ap);
    path_pop(ld, mark);
}

#define err_field(ld, map, key, ...) report_field((ld), WEIR_DIAG_ERROR, (map), (key), __VA_ARGS__)

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

/* A google.protobuf.Duration (weir_config_duration_ms). Istio's ValidateDuration wants at least
 * 1 ms; allow_zero is for the one field where "0s" means "none" (tcp.idleTimeout). */
static bool duration_of(ld_t *ld, const weir_yaml_node_t *v, bool allow_zero, int64_t *out)
{
    const char *why = NULL;
    int64_t ms;
    if (v->type != WEIR_YAML_SCALAR) {
        err(ld, v, "must be a duration such as \"1s\" or \"500ms\", got %s", describe(ld, v));
        return false;
    }
    if (weir_config_duration_ms(v->scalar, &ms, &why) != 0) {
        err(ld, v, "invalid duration \"%.64s\": %s", v->scalar, why);
        return false;
    }
    if (ms == 0 && !allow_zero) {
        err(ld, v, "must be at least 1ms, got \"%.64s\"", v->scalar);
        return false;
    }
    *out = ms;
    return true;
}

/* A YAML number as protobuf's JSON mapping reads a double: decimal, with an optional fraction
 * and exponent (no hex, no .inf or .nan, which are no percentage anyway). */
static bool double_of(ld_t *ld, const weir_yaml_node_t *v, double *out)
{
    const char *s = v->type == WEIR_YAML_SCALAR && v->plain ? v->scalar : "";
    size_t i = (*s == '-' || *s == '+') ? 1 : 0, int_digits = strspn(s + i, "0123456789");
    i += int_digits;
    size_t frac_digits = s[i] == '.' ? strspn(s + i + 1, "0123456789") : 0;
    i += s[i] == '.' ? 1 + frac_digits : 0;
    bool ok = int_digits + frac_digits > 0;
    if (ok && (s[i] == 'e' || s[i] == 'E')) {
        i += (s[i + 1] == '-' || s[i + 1] == '+') ? 2 : 1;
        size_t exp_digits = strspn(s + i, "0123456789");
        ok = exp_digits > 0;
        i += exp_digits;
    }
    if (!ok || s[i] != '\0') {
        err(ld, v, "must be a number, got %s", describe(ld, v));
        return false;
    }
    *out = strtod(s, NULL);
    return true;
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
    FT_FN,       /* fn(ld, key, val, obj + off) */
    FT_NODE,     /* const weir_yaml_node_t *: kept for a check after the walk */
    FT_STR,      /* char * */
    FT_HOST,     /* char *, short names resolved in the resource's namespace */
    FT_BOOL,     /* bool */
    FT_PORT,     /* uint32_t, 1..65535 */
    FT_LABELS,   /* weir_labels_t */
    FT_DURATION, /* int64_t milliseconds, at least 1 (Istio's ValidateDuration) */
    FT_COUNT,    /* uint32_t from an int32 that Istio wants non-negative: 0..2^31-1 */
    FT_UINT32,   /* uint32_t, the whole range (google.protobuf.UInt32Value, uint32) */
    FT_LATER,    /* an Istio field weir reads but does not act on yet: warn, never silence */
    FT_QUIET,    /* accepted, meaningless to a data plane (Kubernetes bookkeeping) */
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
#define F_DURATION(n, T, m) {n, FT_DURATION, offsetof(T, m), NULL}
#define F_COUNT(n, T, m) {n, FT_COUNT, offsetof(T, m), NULL}
#define F_UINT32(n, T, m) {n, FT_UINT32, offsetof(T, m), NULL}
#define F_LATER(n) {n, FT_LATER, 0, NULL}
#define F_QUIET(n) {n, FT_QUIET, 0, NULL}
#define F_END {NULL, FT_QUIET, 0, NULL}
/* clang-format on */

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
        size_t d = weir_diag_edit_distance(key->scalar, f->name);
        if (d < best_d && weir_diag_is_near(key->scalar, f->name)) {
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
        case FT_DURATION:
            duration_of(ld, val, false, (int64_t *)dst);
            break;
        case FT_COUNT:
        case FT_UINT32:
            if (int_of(ld, val, 0, f->type == FT_COUNT ? INT32_MAX : UINT32_MAX, &n))
                *(uint32_t *)dst = (uint32_t)n;
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

/* Percentages: PCT_INT reads one of the deprecated integer percents (mirrorPercent,
 * fault.delay.percent) or an int32 percent (maxEjectionPercent), else a Percent message
 * ({value: double}, whose value may be omitted: 0). PCT_MILLIONTHS adds Istio's
 * validatePercentage rule for faults, whose Envoy FractionalPercent counts in millionths: a
 * value between 0 and 0.0001 would be 0. */
enum { PCT_INT = 1, PCT_MILLIONTHS = 2 };

typedef struct {
    const weir_yaml_node_t *value;
} percent_nodes_t;

static const field_t percent_fields[] = {
    F_NODE("value", percent_nodes_t, value),
    F_END,
};

static bool percent_of(ld_t *ld, const weir_yaml_node_t *v, int flags, weir_percent_t *out)
{
    double d = 0;
    const weir_yaml_node_t *at = v;
    if (flags & PCT_INT) {
        int64_t n;
        if (!int_of(ld, v, INT32_MIN, INT32_MAX, &n))
            return false;
        d = (double)n;
    } else {
        percent_nodes_t n = {0};
        if (!walk(ld, v, percent_fields, &n))
            return false;
        size_t mark = path_key(ld, "value");
        bool ok = n.value == NULL || double_of(ld, n.value, &d);
        path_pop(ld, mark);
        if (!ok)
            return false;
        at = n.value ? n.value : v;
    }
    const char *problem = d < 0 || d > 100 ? "must be 0..100"
                          : (flags & PCT_MILLIONTHS) && d > 0 && d < 0.0001
                              ? "must be 0, or 0.0001..100 (Envoy counts in millionths)"
                              : NULL;
    if (problem) {
        size_t mark = at == v ? ld->path.len : path_key(ld, "value");
        err(ld, at, "%s, got %s", problem, at->scalar);
        path_pop(ld, mark);
        return false;
    }
    *out = (weir_percent_t){true, d};
    return true;
}

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

/* TLS settings (a Gateway server's, a DestinationRule's) are checked against tables of rows:
 * a row applies to its modes (bits of the mode enum) when every field of `when` is given and
 * none of `unless` is; then each field of `refused` that is given, and each of `required` that
 * is not, gets the row's diagnostic. Fields are bits, in the order of a NULL-terminated list
 * of their names. */
struct tls_rule {
    unsigned modes, when, unless, refused, required;
    weir_diag_level_t level;
    const char *why;
};

static bool nonempty(const char *s)
{
    return s && *s; /* proto3: "" is the same as not given */
}

static void tls_rules_check(ld_t *ld, const weir_yaml_node_t *v, const struct tls_rule *rules,
                            size_t n_rules, const char *const names[], unsigned mode_bit,
                            unsigned given)
{
    for (const struct tls_rule *r = rules; r < rules + n_rules; r++) {
        if (!(r->modes & mode_bit) || (given & r->when) != r->when || (given & r->unless))
            continue;
        for (unsigned f = 0; names[f]; f++) {
            unsigned bit = 1u << f;
            if ((r->refused & bit & given) || (r->required & bit & ~given))
                report_field(ld, r->level, v, names[f], "%s", r->why);
        }
    }
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
    if (m < 0)
        return;
    ((server_w *)dst)->s.tls_mode = (weir_server_tls_mode_t)m;
    /* The gateway terminates SIMPLE and MUTUAL and routes PASSTHROUGH by SNI; the others (the
     * multi-network SNI scheme, mesh certificates for outside clients, an optional client
     * certificate) are not there yet. */
    if (m == WEIR_TLS_MODE_AUTO_PASSTHROUGH || m == WEIR_TLS_MODE_ISTIO_MUTUAL ||
        m == WEIR_TLS_MODE_OPTIONAL_MUTUAL)
        later(ld, key);
}

static void server_tls_sans(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                            void *dst)
{
    weir_gateway_server_t *s = dst;
    strings_of(ld, v, &s->subject_alt_names, &s->n_subject_alt_names);
}

static const char *const tls_versions[] = {"TLS_AUTO", "TLSV1_0", "TLSV1_1",
                                           "TLSV1_2",  "TLSV1_3", NULL};

/* minProtocolVersion. weir's TLS engine is mbedTLS 2.28, which speaks TLS 1.2 and nothing
 * newer, and weir refuses anything older (hardening): 1.2 is the only version there is. */
static void tls_min_version(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                            void *dst)
{
    int i = enum_of(ld, v, tls_versions); /* same order as weir_tls_version_t */
    if (i < 0)
        return;
    *(weir_tls_version_t *)dst = (weir_tls_version_t)i;
    if (i == WEIR_TLS_V1_3)
        err(ld, v,
            "TLSV1_3 cannot be required: weir's TLS engine (mbedTLS 2.28) has no TLS 1.3; "
            "use TLSV1_2");
    else if (i == WEIR_TLS_V1_0 || i == WEIR_TLS_V1_1)
        warn(ld, v, "weir accepts TLS 1.2 only: %s clients are refused", v->scalar);
}

static void tls_max_version(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                            void *dst)
{
    int i = enum_of(ld, v, tls_versions);
    if (i < 0)
        return;
    *(weir_tls_version_t *)dst = (weir_tls_version_t)i;
    if (i == WEIR_TLS_V1_0 || i == WEIR_TLS_V1_1)
        err(ld, v, "weir speaks TLS 1.2 only and cannot serve %s", v->scalar);
}

static void tls_cipher_suites(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                              void *dst)
{
    weir_gateway_server_t *s = dst;
    strings_of(ld, v, &s->cipher_suites, &s->n_cipher_suites);
    warn(ld, key,
         "not applied: weir offers its own TLS 1.2 suites (ECDHE-ECDSA with AES-GCM); "
         "ignored");
}

static const field_t server_tls_fields[] = {
    F_BOOL("httpsRedirect", server_w, s.https_redirect),
    F_FN0("mode", tls_mode),
    F_STR("credentialName", server_w, s.credential_name),
    F_STR("serverCertificate", server_w, s.server_certificate),
    F_STR("privateKey", server_w, s.private_key),
    F_STR("caCertificates", server_w, s.ca_certificates),
    F_FN("subjectAltNames", server_w, s, server_tls_sans),
    F_FN("minProtocolVersion", server_w, s.min_protocol_version, tls_min_version),
    F_FN("maxProtocolVersion", server_w, s.max_protocol_version, tls_max_version),
    F_FN("cipherSuites", server_w, s, tls_cipher_suites),
    F_LATER("credentialNames"),
    F_LATER("tlsCertificates"),
    F_LATER("caCrl"),
    F_LATER("caCertCredentialName"),
    F_LATER("verifyCertificateSpki"),
    F_LATER("verifyCertificateHash"),
    F_LATER("insecureSkipVerify"),
    F_END,
};

/* ServerTLSSettings fields as bits, in the order of server_tls_field_names. */
enum {
    STLS_CERT = 1 << 0,
    STLS_KEY = 1 << 1,
    STLS_CA = 1 << 2,
    STLS_CREDENTIAL = 1 << 3,
};
static const char *const server_tls_field_names[] = {"serverCertificate", "privateKey",
                                                     "caCertificates", "credentialName", NULL};

#define STLS_MODE(m) (1u << WEIR_TLS_MODE_##m)
#define STLS_TERMINATING (STLS_MODE(SIMPLE) | STLS_MODE(MUTUAL) | STLS_MODE(OPTIONAL_MUTUAL))

/* Istio's validateTLSOptions, as rows of a tls_rule table (see tls_rules_check). Stricter in two
 * places: credentialName with certificate files is refused whatever files (Istio refuses only
 * a full serverCertificate + privateKey pair, and ignores the rest), and so is a MUTUAL
 * caCertificates beside credentialName, which Istio ignores for the credential's own. */
static const struct tls_rule server_tls_rules[] = {
    {STLS_MODE(ISTIO_MUTUAL), 0, 0, STLS_CERT | STLS_KEY | STLS_CA | STLS_CREDENTIAL, 0,
     WEIR_DIAG_ERROR, "not allowed with mode ISTIO_MUTUAL, which uses the mesh certificates"},
    {STLS_MODE(PASSTHROUGH) | STLS_MODE(AUTO_PASSTHROUGH), 0, 0,
     STLS_CERT | STLS_KEY | STLS_CA | STLS_CREDENTIAL, 0, WEIR_DIAG_WARNING,
     "ignored: a PASSTHROUGH mode does not terminate TLS (the default mode is PASSTHROUGH)"},
    {STLS_TERMINATING, STLS_CREDENTIAL, 0, STLS_CERT | STLS_KEY | STLS_CA, 0, WEIR_DIAG_ERROR,
     "cannot be combined with credentialName, which names the certificates"},
    {STLS_TERMINATING, 0, STLS_CREDENTIAL, 0, STLS_CERT | STLS_KEY, WEIR_DIAG_ERROR,
     "required to terminate TLS unless credentialName is given"},
    {STLS_MODE(MUTUAL) | STLS_MODE(OPTIONAL_MUTUAL), 0, STLS_CREDENTIAL, 0, STLS_CA,
     WEIR_DIAG_ERROR, "required to verify client certificates unless credentialName is given"},
};

static void server_tls(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    server_w *w = dst;
    weir_gateway_server_t *s = &w->s;
    s->has_tls = walk(ld, v, server_tls_fields, w);
    if (!s->has_tls)
        return;
    unsigned given = (nonempty(s->server_certificate) ? STLS_CERT : 0) |
                     (nonempty(s->private_key) ? STLS_KEY : 0) |
                     (nonempty(s->ca_certificates) ? STLS_CA : 0) |
                     (nonempty(s->credential_name) ? STLS_CREDENTIAL : 0);
    tls_rules_check(ld, v, server_tls_rules, sizeof(server_tls_rules) / sizeof(server_tls_rules[0]),
                    server_tls_field_names, 1u << s->tls_mode, given);
    if (s->min_protocol_version && s->max_protocol_version &&
        s->max_protocol_version < s->min_protocol_version)
        err_field(ld, v, "maxProtocolVersion", "is below minProtocolVersion");
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
                 (w.s.tls_mode != WEIR_TLS_MODE_PASSTHROUGH || w.s.server_certificate ||
                  w.s.private_key || w.s.ca_certificates))
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
    /* Mirroring is normalised after the walk (rule_mirror_finish), from these. */
    weir_mirror_policy_t mirror;
    weir_percent_t mirror_percentage, mirror_percent;
    const weir_yaml_node_t *mirror_key, *mirrors_key, *mirror_percentage_key, *mirror_percent_key;
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

/* ---- Headers -------------------------------------------------------------------------------- */

/* RFC 9110 token characters: what a header name may be made of. */
static bool is_token(const char *s)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && strchr(extra, *s) == NULL)
            return false;
    return true;
}

/* One Headers.HeaderOperations while it is read. Istio checks names per side: request.set and
 * request.add may name the authority (a host rewrite), nothing else may name `host`, and
 * nothing may name a pseudo header. */
typedef struct {
    weir_header_ops_t *ops;
    weir_headers_t *headers;
    bool request;
} header_ops_w;

/* The name of a header operation, lower-cased; NULL after an error. *authority is set when the
 * name is the authority in request.set / request.add. */
static char *header_name_of(ld_t *ld, const weir_yaml_node_t *at, const char *name,
                            const header_ops_w *w, bool set_or_add, bool *authority)
{
    char *lower = arena_strdup(ld->c, name);
    for (char *p = lower; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    *authority =
        w->request && set_or_add && (!strcmp(lower, "host") || !strcmp(lower, ":authority"));
    const char *problem = *lower == '\0'               ? "header name cannot be empty"
                          : *authority                 ? NULL
                          : strcmp(lower, "host") == 0 ? "cannot change the host header here; "
                                                         "request.set or request.add rewrites "
                                                         "the authority"
                          : *lower == ':'              ? "cannot change a pseudo header"
                          : !is_token(lower)           ? "not a valid header name"
                                                       : NULL;
    if (problem) {
        err(ld, at, "%s", problem);
        return NULL;
    }
    return lower;
}

/* A value for set / add as it will be sent. Envoy reads these values as format strings: "%%"
 * is a literal "%", "%NAME%" or "%NAME(args)%" a substitution that weir does not do, so such
 * an operation is dropped with a warning; a lone "%" is an error, as in Istio's
 * validateHeaderValue. NULL when the operation is not kept. */
static char *header_value_of(ld_t *ld, const weir_yaml_node_t *v, bool literal)
{
    char *s = str_of(ld, v);
    if (s == NULL)
        return NULL;
    for (const char *p = s; *p; p++) {
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f) {
            err(ld, v, "must not contain control characters");
            return NULL;
        }
    }
    if (literal) /* a host rewrite is a literal, not a format string */
        return s;
    char *w = s;
    for (const char *p = s; *p; p++) {
        if (*p != '%') {
            *w++ = *p;
        } else if (p[1] == '%') {
            *w++ = *p++;
        } else if (strchr(p + 1, '%') == NULL) {
            err(ld, v, "a lone %% must be written %%%% (Envoy reads %%NAME%% as a variable)");
            return NULL;
        } else {
            warn(ld, v,
                 "Envoy's %%VARIABLE%% substitutions are not applied by weir yet; this "
                 "header is left alone");
            return NULL;
        }
    }
    *w = '\0';
    return s;
}

/* set or add: a map of header names to values. */
static void header_map(ld_t *ld, const weir_yaml_node_t *v, header_ops_w *w, bool add)
{
    if (!is_map(ld, v))
        return;
    weir_header_op_t *ops = arena_array(ld->c, v->count, sizeof(*ops));
    size_t n = 0;
    for (size_t i = 0; i < v->count; i++) {
        const weir_yaml_node_t *k = v->keys[i], *val = v->items[i];
        size_t mark = path_mapkey(ld, k->scalar);
        bool authority;
        char *name = header_name_of(ld, k, k->scalar, w, true, &authority);
        char *value = name ? header_value_of(ld, val, authority) : NULL;
        if (value && authority && w->headers->authority) {
            /* Istio picks one arbitrarily within a map, set over add otherwise, and refuses two
             * at the route level (validateAuthorityRewrite): weir refuses two anywhere. */
            err(ld, k, "the authority is already rewritten to \"%s\" in this headers block",
                w->headers->authority);
        } else if (value && authority) {
            w->headers->authority = value;
        } else if (value) {
            ops[n++] = (weir_header_op_t){name, value};
        }
        path_pop(ld, mark);
    }
    if (add) {
        w->ops->add = ops;
        w->ops->n_add = n;
    } else {
        w->ops->set = ops;
        w->ops->n_set = n;
    }
}

static void header_set(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    header_map(ld, v, dst, false);
}

static void header_add(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    header_map(ld, v, dst, true);
}

static void header_remove_item(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    header_ops_w *w = dst;
    char *s = str_of(ld, item);
    bool authority;
    char *name = s ? header_name_of(ld, item, s, w, false, &authority) : NULL;
    if (name)
        w->ops->remove[w->ops->n_remove++] = name;
}

static void header_remove(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                          void *dst)
{
    header_ops_w *w = dst;
    if (v->type == WEIR_YAML_SEQ)
        w->ops->remove = arena_array(ld->c, v->count, sizeof(char *));
    each(ld, v, header_remove_item, w);
}

static const field_t header_ops_fields[] = {
    F_FN0("set", header_set),
    F_FN0("add", header_add),
    F_FN0("remove", header_remove),
    F_END,
};

static void headers_request(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                            void *dst)
{
    weir_headers_t *h = dst;
    walk(ld, v, header_ops_fields, &(header_ops_w){&h->request, h, true});
}

static void headers_response(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                             void *dst)
{
    weir_headers_t *h = dst;
    walk(ld, v, header_ops_fields, &(header_ops_w){&h->response, h, false});
}

static const field_t headers_fields[] = {
    F_FN0("request", headers_request),
    F_FN0("response", headers_response),
    F_END,
};

/* Headers, route level or per destination, into a weir_headers_t. */
static void headers_field(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                          void *dst)
{
    walk(ld, v, headers_fields, dst);
}

/* ---- destination lists ---------------------------------------------------------------------- */

static const field_t http_route_destination_fields[] = {
    F_FN("destination", weir_route_destination_t, destination, route_destination),
    F_FN0("weight", route_weight),
    F_FN("headers", weir_route_destination_t, headers, headers_field),
    F_END,
};

/* RouteDestination of tls[] and tcp[]: no headers. */
static const field_t l4_route_destination_fields[] = {
    F_FN("destination", weir_route_destination_t, destination, route_destination),
    F_FN0("weight", route_weight),
    F_END,
};

typedef struct {
    weir_route_destination_t *items;
    const field_t *fields;
} destinations_w;

static void destination_item(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    destinations_w *w = dst;
    weir_route_destination_t *rd = &w->items[i];
    rd->place = place_of(ld, item);
    if (walk(ld, item, w->fields, rd))
        require(ld, item, "destination");
}

/* route[] of http[], tls[] and tcp[], with Istio's weight rules (validateRouteDestinations). */
static void destinations_of(ld_t *ld, const weir_yaml_node_t *v, const field_t *fields,
                            weir_route_destination_t **out, size_t *n)
{
    destinations_w w = {NULL, fields};
    if (v->type == WEIR_YAML_SEQ) {
        w.items = arena_array(ld->c, v->count, sizeof(*w.items));
        *out = w.items;
        *n = v->count;
    }
    if (!each(ld, v, destination_item, &w))
        return;
    if (v->count == 0)
        err(ld, v, "must have at least one destination");
    int64_t total = 0;
    for (size_t i = 0; i < *n; i++)
        total += w.items[i].weight;
    if (*n > 1 && total == 0) /* S14: a single destination ignores its weight */
        err(ld, v, "total destination weight = 0");
}

static void rule_route(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    rule_w *w = dst;
    if (!take_action(ld, key, w, "route"))
        return;
    w->r.action = WEIR_ACTION_ROUTE;
    destinations_of(ld, v, http_route_destination_fields, &w->r.route, &w->r.n_route);
}

/* ---- timeout, retries, fault, mirrors ------------------------------------------------------- */

static void rule_timeout(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                         void *dst)
{
    duration_of(ld, v, false, &((rule_w *)dst)->r.timeout_ms);
}

/* The statuses Go's http.StatusText knows: Istio takes a retryOn integer as a status code only
 * if it is one of them (ValidateHTTPRetry, parseRetryOn). */
static bool known_http_status(unsigned long code)
{
    static const unsigned short ranges[][2] = {
        {100, 103}, {200, 208}, {226, 226}, {300, 305}, {307, 308}, {400, 418},
        {421, 426}, {428, 429}, {431, 431}, {451, 451}, {500, 508}, {510, 511},
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
        if (code >= ranges[i][0] && code <= ranges[i][1])
            return true;
    return false;
}

typedef struct {
    weir_http_retry_t p;
    bool retry_on_given, remote_localities_given;
} retry_w;

/* "5xx,connect-failure,503": comma-separated conditions and status codes, without spaces (as
 * Istio's validation splits it). Integers become retriable_status_codes and add
 * retriable-status-codes (retry.go ConvertPolicy). */
static void retry_on(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    retry_w *w = dst;
    char *s = str_of(ld, v);
    if (s == NULL || *s == '\0') /* "" is proto3's "not given": the default conditions */
        return;
    size_t n_parts = 1;
    for (const char *p = s; *p; p++)
        n_parts += *p == ',';
    uint32_t bits = 0, *codes = arena_array(ld->c, n_parts, sizeof(*codes));
    size_t n_codes = 0;
    bool ok = true;
    for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t digits = strspn(tok, "0123456789"), known = 0;
        unsigned long code = digits && !tok[digits] && digits < 4 ? strtoul(tok, NULL, 10) : 0;
        uint32_t bit = weir_retry_condition_from_name(tok); /* the names live in retry.c */
        while (known < n_codes && codes[known] != code)
            known++;
        if (known_http_status(code) && known < n_codes) {
            continue; /* a repeat changes nothing */
        } else if (known_http_status(code) && n_codes == WEIR_RETRY_MAX_STATUS_CODES) {
            err(ld, v, "lists more than %d status codes", WEIR_RETRY_MAX_STATUS_CODES);
            ok = false;
            break;
        } else if (known_http_status(code)) {
            codes[n_codes++] = (uint32_t)code;
        } else if (bit) {
            bits |= bit;
        } else {
            err(ld, v, "\"%s\" is not a retryOn condition%s", tok,
                strpbrk(tok, " \t")     ? " (no spaces around the commas)"
                : digits == strlen(tok) ? " nor an HTTP status"
                                        : "");
            ok = false;
        }
    }
    if (strstr(v->scalar, ",,") || v->scalar[0] == ',' || v->scalar[v->scalar_len - 1] == ',') {
        err(ld, v, "has an empty condition (a stray comma)");
        ok = false;
    }
    if (!ok)
        return;
    if (n_codes)
        bits |= WEIR_RETRY_ON_RETRIABLE_STATUS_CODES;
    w->p.retry_on = bits;
    w->p.retriable_status_codes = codes;
    w->p.n_retriable_status_codes = n_codes;
    w->retry_on_given = true;
}

static void retry_remote_localities(ld_t *ld, const weir_yaml_node_t *key,
                                    const weir_yaml_node_t *v, void *dst)
{
    retry_w *w = dst;
    w->remote_localities_given = bool_of(ld, v, &w->p.retry_remote_localities);
}

static void retry_attempts(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                           void *dst)
{
    int64_t n;
    if (int_of(ld, v, 0, INT32_MAX, &n))
        *(int32_t *)dst = (int32_t)n;
}

static const field_t retry_fields[] = {
    F_FN("attempts", retry_w, p.attempts, retry_attempts),
    F_DURATION("perTryTimeout", retry_w, p.per_try_timeout_ms),
    F_FN0("retryOn", retry_on),
    F_FN0("retryRemoteLocalities", retry_remote_localities),
    F_BOOL("retryIgnorePreviousHosts", retry_w, p.ignore_previous_hosts),
    F_DURATION("backoff", retry_w, p.backoff_ms),
    F_END,
};

/* Istio's policy for a route without `retries` (S4). */
static const weir_http_retry_t default_retry_policy = {
    .attempts = WEIR_RETRY_ISTIO_DEFAULT_ATTEMPTS,
    .retry_on = WEIR_RETRY_ON_ISTIO_DEFAULT,
    .ignore_previous_hosts = true,
};

static void rule_retries(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                         void *dst)
{
    retry_w w = {.p = default_retry_policy};
    w.p.attempts = 0; /* proto3: attempts not written is 0, which turns retries off */
    w.p.set = true;
    if (!walk(ld, v, retry_fields, &w))
        return;
    if (w.p.attempts == 0 &&
        (w.p.per_try_timeout_ms || w.retry_on_given || w.remote_localities_given))
        err_field(ld, v, "attempts",
                  "is 0, which turns retries off, yet perTryTimeout, retryOn or "
                  "retryRemoteLocalities is given; set attempts");
    ((rule_w *)dst)->r.retries = w.p;
}

/* HTTPFaultInjection while it is read: the deprecated delay.percent is kept apart, because
 * percentage wins over it whatever their order (route.go TranslateFault). */
typedef struct {
    weir_fault_t f;
    weir_percent_t delay_legacy_percent;
    const weir_yaml_node_t *delay_legacy_key, *http_status, *grpc_status;
} fault_w;

/* Percent message fields (fault percentages). */
static void percent_field(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                          void *dst)
{
    percent_of(ld, v, PCT_MILLIONTHS, dst);
}

static void delay_legacy_percent(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                                 void *dst)
{
    fault_w *w = dst;
    if (percent_of(ld, v, PCT_INT, &w->delay_legacy_percent))
        w->delay_legacy_key = key;
}

static void not_supported(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                          void *dst)
{
    err(ld, key, "not supported (Istio refuses it too)");
}

static const field_t delay_fields[] = {
    F_DURATION("fixedDelay", fault_w, f.delay_ms),
    F_FN("percentage", fault_w, f.delay_percent, percent_field),
    F_FN0("percent", delay_legacy_percent),
    F_FN0("exponentialDelay", not_supported),
    F_END,
};

static void fault_delay(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    fault_w *w = dst;
    if (!walk(ld, v, delay_fields, w))
        return;
    w->f.has_delay = true;
    if (w->f.delay_ms == 0 && !field(v, "exponentialDelay"))
        require(ld, v, "fixedDelay");
    if (w->delay_legacy_key && w->f.delay_percent.set) {
        size_t mark = path_key(ld, w->delay_legacy_key->scalar);
        warn(ld, w->delay_legacy_key, "ignored: percentage is given and takes precedence");
        path_pop(ld, mark);
    } else if (w->delay_legacy_key) {
        w->f.delay_percent = w->delay_legacy_percent;
    }
}

static void abort_http_status(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                              void *dst)
{
    fault_w *w = dst;
    int64_t n;
    w->http_status = key;
    /* Envoy's FaultAbort.http_status is 200..599 (Istio's validation lets 600 through). */
    if (int_of(ld, v, 200, 599, &n))
        w->f.abort_http_status = (int)n;
}

/* gRPC status names (Istio's SupportedGRPCStatus), in the order of their codes. */
static const char *const grpc_statuses[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
    NULL,
};

static void abort_grpc_status(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                              void *dst)
{
    fault_w *w = dst;
    int code = enum_of(ld, v, grpc_statuses);
    w->grpc_status = key;
    if (code >= 0)
        w->f.abort_grpc_status = code;
}

static const field_t abort_fields[] = {
    F_FN0("httpStatus", abort_http_status),
    F_FN0("grpcStatus", abort_grpc_status),
    F_FN0("http2Error", not_supported),
    F_FN("percentage", fault_w, f.abort_percent, percent_field),
    F_END,
};

static void fault_abort(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    fault_w *w = dst;
    if (!walk(ld, v, abort_fields, w))
        return;
    w->f.has_abort = true;
    /* Istio only warns about an abort without a status, then drops it: weir will not silently
     * do nothing. */
    if (w->http_status && w->grpc_status) {
        size_t mark = path_key(ld, w->grpc_status->scalar);
        err(ld, w->grpc_status, "cannot be combined with httpStatus");
        path_pop(ld, mark);
    } else if (w->http_status == NULL && w->grpc_status == NULL && !field(v, "http2Error")) {
        err(ld, v, "one of httpStatus, grpcStatus is required");
    }
    if (w->http_status)
        w->f.abort_grpc_status = -1;
}

static const field_t fault_fields[] = {
    F_FN0("delay", fault_delay),
    F_FN0("abort", fault_abort),
    F_END,
};

static void rule_fault(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    fault_w w = {0};
    if (!walk(ld, v, fault_fields, &w))
        return;
    if (!w.f.has_delay && !w.f.has_abort && !field(v, "delay") && !field(v, "abort"))
        err(ld, v, "one of delay, abort is required");
    ((rule_w *)dst)->r.fault = w.f;
}

static void rule_mirror(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    rule_w *w = dst;
    w->mirror_key = key;
    w->mirror.place = place_of(ld, v);
    route_destination(ld, key, v, &w->mirror.destination);
}

static void rule_mirror_percentage(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                                   void *dst)
{
    rule_w *w = dst;
    if (percent_of(ld, v, 0, &w->mirror_percentage))
        w->mirror_percentage_key = key;
}

static void rule_mirror_percent(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                                void *dst)
{
    rule_w *w = dst;
    if (percent_of(ld, v, PCT_INT, &w->mirror_percent))
        w->mirror_percent_key = key;
}

/* HTTPMirrorPolicy while it is read. */
typedef struct {
    weir_mirror_policy_t m;
    weir_percent_t percentage;
} mirror_w;

static void mirror_percentage(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                              void *dst)
{
    percent_of(ld, v, 0, dst);
}

static const field_t mirror_policy_fields[] = {
    F_FN("destination", mirror_w, m.destination, route_destination),
    F_FN("percentage", mirror_w, percentage, mirror_percentage),
    F_END,
};

/* Adds a mirror unless its percentage is an explicit 0; no percentage means 100%. */
static void add_mirror(rule_w *w, weir_mirror_policy_t m, const weir_percent_t *percentage)
{
    m.percent = percentage->set ? percentage->value : 100;
    if (m.percent > 0 && m.destination.host)
        w->r.mirrors[w->r.n_mirrors++] = m;
}

static void rule_mirrors_item(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    mirror_w m = {.m.place = place_of(ld, item)};
    if (!walk(ld, item, mirror_policy_fields, &m))
        return;
    require(ld, item, "destination");
    add_mirror(dst, m.m, &m.percentage);
}

static void rule_mirrors(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                         void *dst)
{
    rule_w *w = dst;
    w->mirrors_key = key;
    if (v->type == WEIR_YAML_SEQ)
        w->r.mirrors = arena_array(ld->c, v->count, sizeof(*w->r.mirrors));
    each(ld, v, rule_mirrors_item, w);
}

/* `mirror` with its percentage, after the walk: mirrorPercentage wins over the deprecated
 * mirrorPercent (route.go MirrorPercent), and both mean nothing without `mirror`. */
static void rule_mirror_finish(ld_t *ld, const weir_yaml_node_t *item, rule_w *w)
{
    const weir_yaml_node_t *legacy = w->mirror_percent_key, *pct = w->mirror_percentage_key;
    if (w->mirror_key && w->mirrors_key) {
        size_t mark = path_key(ld, w->mirrors_key->scalar);
        err(ld, w->mirrors_key, "cannot be combined with mirror");
        path_pop(ld, mark);
        return;
    }
    for (int i = 0; i < 2; i++) {
        const weir_yaml_node_t *k = i ? legacy : pct;
        if (k == NULL || (w->mirror_key && i == 0))
            continue;
        size_t mark = path_key(ld, k->scalar);
        if (w->mirror_key == NULL)
            warn(ld, k, "ignored without mirror%s",
                 w->mirrors_key ? "; each entry of mirrors has its own percentage" : "");
        else if (pct)
            warn(ld, k, "ignored: mirrorPercentage is given and takes precedence");
        else
            warn(ld, k, "deprecated; write mirrorPercentage: {value: %g}", w->mirror_percent.value);
        path_pop(ld, mark);
    }
    if (w->mirror_key == NULL)
        return;
    w->r.mirrors = arena_array(ld->c, 1, sizeof(*w->r.mirrors));
    add_mirror(w, w->mirror, pct ? &w->mirror_percentage : &w->mirror_percent);
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

static void rule_headers(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                         void *dst)
{
    headers_field(ld, key, v, &((rule_w *)dst)->r.headers);
}

static const field_t rule_fields[] = {
    F_STR("name", rule_w, r.name),
    F_FN0("match", rule_matches),
    F_FN0("route", rule_route),
    F_FN0("redirect", rule_redirect),
    F_FN0("directResponse", rule_direct),
    F_FN0("delegate", rule_delegate),
    F_FN0("rewrite", rule_rewrite),
    F_FN0("timeout", rule_timeout),
    F_FN0("retries", rule_retries),
    F_FN0("fault", rule_fault),
    F_FN0("mirror", rule_mirror),
    F_FN0("mirrors", rule_mirrors),
    F_FN0("mirrorPercentage", rule_mirror_percentage),
    F_FN0("mirrorPercent", rule_mirror_percent),
    F_FN0("headers", rule_headers),
    F_LATER("corsPolicy"),
    F_END,
};

/* What a rule with a redirect or a direct response may not carry: Istio refuses rewrite and
 * fault there (validateHTTPRouteConflict) and ignores the rest, which only a route uses. */
static const struct {
    const char *name;
    weir_diag_level_t level;
} route_only_fields[] = {
    {"rewrite", WEIR_DIAG_ERROR},   {"fault", WEIR_DIAG_ERROR},    {"timeout", WEIR_DIAG_WARNING},
    {"retries", WEIR_DIAG_WARNING}, {"mirror", WEIR_DIAG_WARNING}, {"mirrors", WEIR_DIAG_WARNING},
};

static void rule_check_action(ld_t *ld, const weir_yaml_node_t *item, const rule_w *w)
{
    for (size_t i = 0; i < sizeof(route_only_fields) / sizeof(route_only_fields[0]); i++) {
        const char *name = route_only_fields[i].name;
        if (field(item, name) == NULL)
            continue;
        if (route_only_fields[i].level == WEIR_DIAG_ERROR) {
            err_field(ld, item, name, "cannot be used with %s", w->action);
            continue;
        }
        size_t mark = path_key(ld, name);
        warn(ld, weir_yaml_map_get(item, name), "ignored with %s, which sends nothing upstream",
             w->action);
        path_pop(ld, mark);
    }
}

/* A host or :authority header in headers.request rewrites the authority as rewrite.authority
 * does, and the two exclude each other (validateAuthorityRewrite). */
static void rule_header_authority(ld_t *ld, const weir_yaml_node_t *item, rule_w *w)
{
    if (w->r.headers.authority == NULL)
        return;
    if (w->r.rewrite.authority) {
        const weir_yaml_node_t *rw = weir_yaml_map_get(item, "rewrite");
        size_t mark = path_key(ld, "rewrite");
        err_field(ld, rw, "authority",
                  "cannot be combined with a host or :authority header in headers.request, "
                  "which rewrites the authority too");
        path_pop(ld, mark);
    } else if (w->r.action == WEIR_ACTION_ROUTE) {
        w->r.has_rewrite = true;
        w->r.rewrite.authority = w->r.headers.authority;
    }
}

static void vs_rule(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    weir_virtual_service_t *vs = dst;
    rule_w w = {.r.place = place_of(ld, item), .r.retries = default_retry_policy};
    if (!walk(ld, item, rule_fields, &w))
        return;
    if (w.action == NULL)
        err(ld, item, "one of route, redirect, directResponse is required");
    else if (w.r.action != WEIR_ACTION_ROUTE && !w.delegate)
        rule_check_action(ld, item, &w);
    rule_mirror_finish(ld, item, &w);
    rule_header_authority(ld, item, &w);
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

/* ---- tls[] and tcp[] ------------------------------------------------------------------------ */

static void l4_sni_host(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    weir_l4_match_t *m = dst;
    char *h = str_of(ld, item);
    if (h == NULL)
        return;
    const char *why = host_problem(h);
    if (why) {
        err(ld, item, "invalid host \"%s\": %s", h, why);
        return;
    }
    if (is_ip(h))
        warn(ld, item,
             "an IP address goes against the SNI specification; most clients never "
             "send one");
    m->sni_hosts[m->n_sni_hosts++] = h;
    VEC_GROW(ld->sni, ld->n_sni, ld->cap_sni);
    ld->sni[ld->n_sni++] = (sni_t){arena_strdup(ld->c, ld->path.base), item, h};
}

static void l4_sni_hosts(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                         void *dst)
{
    weir_l4_match_t *m = dst;
    if (v->type == WEIR_YAML_SEQ)
        m->sni_hosts = arena_array(ld->c, v->count, sizeof(char *));
    each(ld, v, l4_sni_host, m);
}

/* validation.go ValidateIPSubnet, parsed here once as ServiceEntry addresses are. */
static void l4_subnet(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    weir_l4_match_t *m = dst;
    char *s = str_of(ld, item);
    if (s == NULL)
        return;
    if (!weir_cidr_parse(s, &m->destination_ranges[m->n_destination_subnets])) {
        err(ld, item, "must be an IP address or a CIDR block, got \"%s\"", s);
        return;
    }
    m->destination_subnets[m->n_destination_subnets++] = s;
}

static void l4_subnets(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_l4_match_t *m = dst;
    if (v->type == WEIR_YAML_SEQ) {
        m->destination_subnets = arena_array(ld->c, v->count, sizeof(char *));
        m->destination_ranges = arena_array(ld->c, v->count, sizeof(weir_cidr_t));
    }
    each(ld, v, l4_subnet, m);
}

static void l4_gateways(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_l4_match_t *m = dst;
    gateways_of(ld, v, &m->gateways, &m->n_gateways);
}

static const field_t tls_match_fields[] = {
    F_FN0("sniHosts", l4_sni_hosts),
    F_FN0("destinationSubnets", l4_subnets),
    F_PORT("port", weir_l4_match_t, port),
    F_LABELS("sourceLabels", weir_l4_match_t, source_labels),
    F_FN0("gateways", l4_gateways),
    F_LATER("sourceNamespace"),
    F_END,
};

static const field_t tcp_match_fields[] = {
    F_FN0("destinationSubnets", l4_subnets),
    F_PORT("port", weir_l4_match_t, port),
    F_LABELS("sourceLabels", weir_l4_match_t, source_labels),
    F_FN0("gateways", l4_gateways),
    F_LATER("sourceNamespace"),
    F_LATER("sourceSubnet"),
    F_END,
};

/* One tls[] or tcp[] element while it is read. */
typedef struct {
    weir_l4_route_t r;
    bool tls;
} l4_route_w;

static void l4_match_item(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    l4_route_w *w = dst;
    weir_l4_match_t *m = &w->r.matches[i];
    m->place = place_of(ld, item);
    if (!walk(ld, item, w->tls ? tls_match_fields : tcp_match_fields, m) || !w->tls)
        return;
    const weir_yaml_node_t *sni = field(item, "sniHosts");
    if (sni == NULL)
        err_field(ld, item, "sniHosts", "required");
    else if (sni->type == WEIR_YAML_SEQ && sni->count == 0)
        err_field(ld, item, "sniHosts", "must have at least one host");
}

static void l4_matches(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    l4_route_w *w = dst;
    if (v->type == WEIR_YAML_SEQ) {
        w->r.matches = arena_array(ld->c, v->count, sizeof(*w->r.matches));
        w->r.n_matches = v->count;
    }
    each(ld, v, l4_match_item, w);
}

static void l4_destinations(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                            void *dst)
{
    l4_route_w *w = dst;
    destinations_of(ld, v, l4_route_destination_fields, &w->r.route, &w->r.n_route);
}

static const field_t l4_route_fields[] = {
    F_FN0("match", l4_matches),
    F_FN0("route", l4_destinations),
    F_END,
};

typedef struct {
    weir_l4_route_t *items;
    size_t n;
    bool tls;
} l4_routes_w;

static void l4_route_item(ld_t *ld, const weir_yaml_node_t *item, size_t i, void *dst)
{
    l4_routes_w *l = dst;
    l4_route_w w = {.r.place = place_of(ld, item), .tls = l->tls};
    if (!walk(ld, item, l4_route_fields, &w))
        return;
    const weir_yaml_node_t *match = field(item, "match");
    if (l->tls && match == NULL)
        err_field(ld, item, "match", "required");
    else if (l->tls && match->type == WEIR_YAML_SEQ && match->count == 0)
        err_field(ld, item, "match", "must have at least one entry");
    require(ld, item, "route");
    l->items[l->n++] = w.r;
}

static void l4_routes_of(ld_t *ld, const weir_yaml_node_t *v, bool tls, weir_l4_route_t **out,
                         size_t *n)
{
    l4_routes_w l = {NULL, 0, tls};
    if (v->type == WEIR_YAML_SEQ)
        l.items = arena_array(ld->c, v->count, sizeof(*l.items));
    each(ld, v, l4_route_item, &l);
    *out = l.items;
    *n = l.n;
}

static void vs_tls(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_virtual_service_t *vs = dst;
    l4_routes_of(ld, v, true, &vs->tls, &vs->n_tls);
}

static void vs_tcp(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_virtual_service_t *vs = dst;
    l4_routes_of(ld, v, false, &vs->tcp, &vs->n_tcp);
}

/* Istio's host.Name.SubsetOf: whether every name n matches is matched by o. */
static bool host_within(const char *n, const char *o)
{
    size_t ln = strlen(n), lo = strlen(o);
    if (o[0] == '*' && n[0] == '*')
        return ln >= lo && strcmp(n + ln - (lo - 1), o + 1) == 0;
    if (o[0] == '*')
        return ln >= lo - 1 && strcmp(n + ln - (lo - 1), o + 1) == 0;
    return n[0] != '*' && strcmp(n, o) == 0;
}

/* validateSniHost: an SNI host must be within one of the VirtualService's hosts. A short name
 * matches as its FQDN too, since weir keeps the hosts resolved. */
static void check_sni_hosts(ld_t *ld, const weir_virtual_service_t *vs)
{
    for (size_t i = 0; i < ld->n_sni; i++) {
        const sni_t *s = &ld->sni[i];
        char *fqdn = weir_config_resolve_host(s->host, ld->ns);
        bool ok = false;
        for (size_t j = 0; !ok && j < vs->n_hosts; j++)
            ok = host_within(s->host, vs->hosts[j]) || host_within(fqdn, vs->hosts[j]);
        free(fqdn);
        if (ok)
            continue;
        weir_buf_t all = WEIR_BUF_INIT;
        for (size_t j = 0; j < vs->n_hosts; j++)
            weir_buf_appendf(&all, "%s%s", j ? ", " : "", vs->hosts[j]);
        size_t mark = path_key(ld, s->path);
        err(ld, s->at, "SNI host \"%s\" is not within any host of the VirtualService (%s)", s->host,
            all.base ? all.base : "none");
        path_pop(ld, mark);
        weir_buf_free(&all);
    }
    ld->n_sni = 0;
}

static const field_t virtual_service_fields[] = {
    F_FN0("hosts", vs_hosts),
    F_FN0("gateways", vs_gateways),
    F_FN0("http", vs_http),
    F_FN0("tls", vs_tls),
    F_FN0("tcp", vs_tcp),
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

/* ClientTLSSettings fields as bits, in the order of tls_field_names; TLS_SKIP_VERIFY stands for
 * insecureSkipVerify: true, which rows may depend on but never refuse or require. */
enum {
    TLS_CERT = 1 << 0,
    TLS_KEY = 1 << 1,
    TLS_CA = 1 << 2,
    TLS_CREDENTIAL = 1 << 3,
    TLS_SANS = 1 << 4,
    TLS_SKIP_VERIFY = 1 << 5,
};
static const char *const tls_field_names[] = {
    "clientCertificate",  "privateKey", "caCertificates", "credentialName", "subjectAltNames",
    "insecureSkipVerify", NULL};

#define TLS_MODE(m) (1u << WEIR_CLIENT_TLS_##m)

/* Istio's validateTLS (pkg/config/validation/agent), row by row, plus the proto's rule that
 * ISTIO_MUTUAL takes no certificate of its own. */
static const struct tls_rule client_tls_rules[] = {
    {TLS_MODE(ISTIO_MUTUAL), 0, 0, TLS_CERT | TLS_KEY | TLS_CA | TLS_CREDENTIAL, 0, WEIR_DIAG_ERROR,
     "not allowed with mode ISTIO_MUTUAL, which uses the mesh certificates"},
    {TLS_MODE(SIMPLE) | TLS_MODE(MUTUAL), TLS_CREDENTIAL, 0, TLS_CERT | TLS_KEY | TLS_CA, 0,
     WEIR_DIAG_ERROR, "cannot be combined with credentialName, which names the certificates"},
    {TLS_MODE(SIMPLE), TLS_SKIP_VERIFY, 0, TLS_CA | TLS_CREDENTIAL | TLS_SANS, 0, WEIR_DIAG_ERROR,
     "cannot be combined with insecureSkipVerify"},
    {TLS_MODE(MUTUAL), TLS_SKIP_VERIFY, 0, TLS_CA | TLS_SANS, 0, WEIR_DIAG_ERROR,
     "cannot be combined with insecureSkipVerify"},
    {TLS_MODE(MUTUAL), 0, TLS_CREDENTIAL, 0, TLS_CERT | TLS_KEY, WEIR_DIAG_ERROR,
     "required with mode MUTUAL unless credentialName is given"},
};

static void client_tls_check(ld_t *ld, const weir_yaml_node_t *v, const weir_client_tls_t *t)
{
    unsigned given =
        (nonempty(t->client_certificate) ? TLS_CERT : 0) |
        (nonempty(t->private_key) ? TLS_KEY : 0) | (nonempty(t->ca_certificates) ? TLS_CA : 0) |
        (nonempty(t->credential_name) ? TLS_CREDENTIAL : 0) |
        (t->n_subject_alt_names ? TLS_SANS : 0) | (t->insecure_skip_verify ? TLS_SKIP_VERIFY : 0);
    tls_rules_check(ld, v, client_tls_rules, sizeof(client_tls_rules) / sizeof(client_tls_rules[0]),
                    tls_field_names, 1u << t->mode, given);
}

static void policy_tls(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_traffic_policy_t *p = dst;
    if (!walk(ld, v, client_tls_fields, &p->tls))
        return;
    p->has_tls = true; /* even `tls: {}`: an explicit DISABLE, which turns auto mTLS off */
    client_tls_check(ld, v, &p->tls);
}

/* ConnectionPoolSettings while it is read: the two idle timeouts are kept apart, because http's
 * wins whatever the order (applyConnectionPool), and tcp's may be "0s" (none). */
typedef struct {
    weir_connection_pool_t p;
    bool tcp_idle_set, http_idle_set;
    int64_t tcp_idle_ms, http_idle_ms;
    const weir_yaml_node_t *use_client_protocol;
} pool_w;

static void pool_tcp_idle(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                          void *dst)
{
    pool_w *w = dst;
    w->tcp_idle_set = duration_of(ld, v, true, &w->tcp_idle_ms);
}

static void pool_http_idle(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                           void *dst)
{
    pool_w *w = dst;
    w->http_idle_set = duration_of(ld, v, false, &w->http_idle_ms);
}

static const field_t tcp_keepalive_fields[] = {
    F_UINT32("probes", weir_tcp_keepalive_t, probes),
    F_DURATION("time", weir_tcp_keepalive_t, time_ms),
    F_DURATION("interval", weir_tcp_keepalive_t, interval_ms),
    F_END,
};

static void pool_tcp_keepalive(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                               void *dst)
{
    pool_w *w = dst;
    w->p.has_tcp_keepalive = walk(ld, v, tcp_keepalive_fields, &w->p.tcp_keepalive);
}

static void pool_max_duration(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                              void *dst)
{
    pool_w *w = dst;
    if (duration_of(ld, v, false, &w->p.max_connection_duration_ms))
        later(ld, key);
}

static const field_t pool_tcp_fields[] = {
    F_COUNT("maxConnections", pool_w, p.max_connections),
    F_DURATION("connectTimeout", pool_w, p.connect_timeout_ms),
    F_FN0("tcpKeepalive", pool_tcp_keepalive),
    F_FN0("maxConnectionDuration", pool_max_duration),
    F_FN0("idleTimeout", pool_tcp_idle),
    F_END,
};

static void pool_h2_upgrade(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                            void *dst)
{
    static const char *const names[] = {"DEFAULT", "DO_NOT_UPGRADE", "UPGRADE", NULL};
    int i = enum_of(ld, v, names); /* same order as weir_h2_upgrade_policy_t */
    if (i >= 0)
        *(weir_h2_upgrade_policy_t *)dst = (weir_h2_upgrade_policy_t)i;
}

static void pool_use_client_protocol(ld_t *ld, const weir_yaml_node_t *key,
                                     const weir_yaml_node_t *v, void *dst)
{
    pool_w *w = dst;
    if (bool_of(ld, v, &w->p.use_client_protocol))
        w->use_client_protocol = key;
}

static const field_t pool_http_fields[] = {
    F_COUNT("http1MaxPendingRequests", pool_w, p.http1_max_pending_requests),
    F_COUNT("http2MaxRequests", pool_w, p.http2_max_requests),
    F_COUNT("maxRequestsPerConnection", pool_w, p.max_requests_per_connection),
    F_COUNT("maxRetries", pool_w, p.max_retries),
    F_FN0("idleTimeout", pool_http_idle),
    F_FN("h2UpgradePolicy", pool_w, p.h2_upgrade_policy, pool_h2_upgrade),
    F_FN0("useClientProtocol", pool_use_client_protocol),
    F_LATER("maxConcurrentStreams"),
    F_LATER("http2KeepAlive"),
    F_END,
};

static void pool_tcp(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    walk(ld, v, pool_tcp_fields, dst);
}

static void pool_http(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    pool_w *w = dst;
    if (walk(ld, v, pool_http_fields, w) && w->use_client_protocol && w->p.use_client_protocol &&
        w->p.h2_upgrade_policy == WEIR_H2_UPGRADE) {
        size_t mark = path_key(ld, w->use_client_protocol->scalar);
        err(ld, w->use_client_protocol, "cannot be true with h2UpgradePolicy UPGRADE");
        path_pop(ld, mark);
    }
}

static const field_t connection_pool_fields[] = {
    F_FN0("tcp", pool_tcp),
    F_FN0("http", pool_http),
    F_END,
};

static void policy_connection_pool(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                                   void *dst)
{
    weir_traffic_policy_t *p = dst;
    pool_w w = {0};
    if (!walk(ld, v, connection_pool_fields, &w))
        return;
    if (!field(v, "tcp") && !field(v, "http")) {
        err(ld, v, "must have at least one of tcp, http");
        return;
    }
    w.p.has_idle_timeout = w.http_idle_set || w.tcp_idle_set;
    w.p.idle_timeout_ms = w.http_idle_set ? w.http_idle_ms : w.tcp_idle_ms;
    p->has_connection_pool = true;
    p->connection_pool = w.p;
}

/* OutlierDetection while it is read. */
typedef struct {
    weir_outlier_detection_t o;
    bool gateway_set;
    uint32_t local_origin; /* consecutiveLocalOriginFailures as written */
    const weir_yaml_node_t *local_origin_key;
} outlier_w;

static void outlier_gateway(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                            void *dst)
{
    outlier_w *w = dst;
    int64_t n;
    if (int_of(ld, v, 0, UINT32_MAX, &n)) {
        w->o.consecutive_gateway_errors = (uint32_t)n;
        w->gateway_set = true;
    }
}

static void outlier_local_origin(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v,
                                 void *dst)
{
    outlier_w *w = dst;
    int64_t n;
    if (int_of(ld, v, 0, UINT32_MAX, &n)) {
        w->local_origin = (uint32_t)n;
        w->local_origin_key = key;
    }
}

/* maxEjectionPercent and minHealthPercent: int32 percents (ValidatePercent). */
static void int_percent(ld_t *ld, const weir_yaml_node_t *key, const weir_yaml_node_t *v, void *dst)
{
    weir_percent_t p;
    if (percent_of(ld, v, PCT_INT, &p))
        *(uint32_t *)dst = (uint32_t)p.value;
}

static void outlier_consecutive_errors(ld_t *ld, const weir_yaml_node_t *key,
                                       const weir_yaml_node_t *v, void *dst)
{
    warn(ld, key,
         "deprecated and ignored, as Istio ignores it; use consecutive5xxErrors or "
         "consecutiveGatewayErrors");
}

static const field_t outlier_fields[] = {
    F_FN0("consecutiveErrors", outlier_consecutive_errors),
    F_BOOL("splitExternalLocalOriginErrors", outlier_w, o.split_external_local_origin_errors),
    F_FN0("consecutiveLocalOriginFailures", outlier_local_origin),
    F_FN0("consecutiveGatewayErrors", outlier_gateway),
    F_UINT32("consecutive5xxErrors", outlier_w, o.consecutive_5xx),
    F_DURATION("interval", outlier_w, o.interval_ms),
    F_DURATION("baseEjectionTime", outlier_w, o.base_ejection_time_ms),
    F_FN("maxEjectionPercent", outlier_w, o.max_ejection_percent, int_percent),
    F_FN("minHealthPercent", outlier_w, o.min_health_percent, int_percent),
    F_LATER("outlierDetectionHttpErrorCodes"),
    F_END,
};

/* What Istio's applyOutlierDetection leaves to Envoy's defaults, and its own. */
static const weir_outlier_detection_t outlier_defaults = {
    .consecutive_5xx = 5,
    .enforcing_consecutive_5xx = true,
    .consecutive_gateway_errors = 5,
    .enforcing_consecutive_gateway_errors = false,
    .consecutive_local_origin_failures = 5,
    .interval_ms = 10000,
    .base_ejection_time_ms = 30000,
    .max_ejection_percent = 10,
    .min_health_percent = 0,
};

static void policy_outlier_detection(ld_t *ld, const weir_yaml_node_t *key,
                                     const weir_yaml_node_t *v, void *dst)
{
    weir_traffic_policy_t *p = dst;
    outlier_w w = {.o = outlier_defaults};
    w.o.max_ejection_percent = 0;
    if (!walk(ld, v, outlier_fields, &w))
        return;
    if (w.o.max_ejection_percent == 0) /* Istio applies it only when > 0 */
        w.o.max_ejection_percent = outlier_defaults.max_ejection_percent;
    /* A threshold written turns its enforcement on when > 0 and off when 0; the gateway one,
     * not written, keeps Envoy's 5 without enforcement (S10). */
    w.o.enforcing_consecutive_5xx = w.o.consecutive_5xx > 0;
    w.o.enforcing_consecutive_gateway_errors = w.gateway_set && w.o.consecutive_gateway_errors > 0;
    if (w.local_origin > 0 && !w.o.split_external_local_origin_errors) {
        size_t mark = path_key(ld, w.local_origin_key->scalar);
        err(ld, w.local_origin_key, "requires splitExternalLocalOriginErrors: true");
        path_pop(ld, mark);
    } else if (w.local_origin > 0) {
        w.o.consecutive_local_origin_failures = w.local_origin;
    }
    p->has_outlier_detection = true;
    p->outlier_detection = w.o;
}

static const field_t traffic_policy_fields[] = {
    F_FN0("loadBalancer", policy_lb),
    F_FN0("connectionPool", policy_connection_pool),
    F_FN0("outlierDetection", policy_outlier_detection),
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
    ld->n_sni = 0;
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
    check_sni_hosts(ld, &vs);
    static const char *const rule_lists[] = {"http", "tcp", "tls"};
    size_t rules = 0;
    for (size_t i = 0; i < 3; i++) { /* Istio: empty lists count as absent */
        const weir_yaml_node_t *l = field(r->spec, rule_lists[i]);
        rules += l ? (l->type == WEIR_YAML_SEQ ? l->count : 1) : 0;
    }
    if (rules == 0)
        err(ld, r->spec, "one of http, tcp, tls is required");
    if (vs.http == NULL)
        vs.http = arena_array(ld->c, 0, sizeof(*vs.http));
    cfg_t *c = ld->c;
    VEC_GROW(c->pub.virtual_services, c->pub.n_virtual_services, c->cap_vs);
    c->pub.virtual_services[c->pub.n_virtual_services++] = vs;
}

/* The blocks Istio's MergeTrafficPolicy replaces whole: each one's "set" flag and body. */
#define POLICY_BLOCK(flag, body)                                                                   \
    {                                                                                              \
        offsetof(weir_traffic_policy_t, flag), offsetof(weir_traffic_policy_t, body),              \
            sizeof(((weir_traffic_policy_t *)0)->body)                                             \
    }
static const struct {
    size_t set, body, size;
} policy_blocks[] = {
    POLICY_BLOCK(has_lb, lb),
    POLICY_BLOCK(has_tls, tls),
    POLICY_BLOCK(has_connection_pool, connection_pool),
    POLICY_BLOCK(has_outlier_detection, outlier_detection),
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
    free(ld.sni);
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
        }
        /* REF_HOST: a host no ServiceEntry declares is the analyzer's IST0101, which knows
         * when the config takes its services from Kubernetes instead. */
    }
}

/* ---- public --------------------------------------------------------------------------------- */

static void warn_at(weir_diags_t *d, const weir_place_t *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warn_at(weir_diags_t *d, const weir_place_t *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    weir_diags_vadd(d, WEIR_DIAG_WARNING, p->file, p->line, p->col, fmt, ap);
    va_end(ap);
}

/* Fields weir reads and validates but whose behaviour the proxy does not have yet: each gets a
 * warning at its rule, so config never silently does nothing. The list shrinks as the proxy
 * learns them. */
void weir_config_warn_unapplied(const weir_config_t *cfg, weir_diags_t *d)
{
    static const char tail[] = "not applied by weir yet; ignored";
    for (size_t v = 0; v < cfg->n_virtual_services; v++) {
        const weir_virtual_service_t *vs = &cfg->virtual_services[v];
        bool mesh = false;
        for (size_t g = 0; g < vs->n_gateways; g++)
            mesh |= strcmp(vs->gateways[g], "mesh") == 0;
        if (vs->n_tls && mesh)
            warn_at(d, &vs->tls[0].place, "tls: routing TLS by SNI in sidecars is %s", tail);
        if (vs->n_tcp)
            warn_at(d, &vs->tcp[0].place, "tcp: %s", tail);
    }
}

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

weir_config_t *weir_config_load_with(const char *const *paths, size_t n_paths,
                                     const char *extra_name, const char *extra_text,
                                     weir_diags_t *diags)
{
    size_t errors_before = diags->errors;
    cfg_t *c = weir_mem_calloc(1, sizeof(*c));
    for (size_t i = 0; i < n_paths; i++)
        load_path(c, paths[i], diags);
    if (extra_text)
        load_yaml(c, weir_yaml_load_string(extra_name, extra_text, strlen(extra_text), diags),
                  extra_name, diags);
    return finish(c, diags, errors_before);
}

weir_config_t *weir_config_load(const char *const *paths, size_t n_paths, weir_diags_t *diags)
{
    return weir_config_load_with(paths, n_paths, NULL, NULL, diags);
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

void weir_labels_free(weir_labels_t *l)
{
    for (size_t i = 0; i < l->count; i++) {
        free(l->items[i].key);
        free(l->items[i].value);
    }
    free(l->items);
    l->items = NULL;
    l->count = 0;
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

/* ---- durations ------------------------------------------------------------------------------ */

#define DURATION_MAX_NS (UINT64_C(1) << 63) /* Go's limit, checked as time.ParseDuration does */

/* Go's duration units; "µs" in both of its Unicode spellings (micro sign, Greek mu). */
static const struct {
    const char *name;
    uint64_t ns;
} duration_units[] = {
    {"ns", 1},
    {"us", 1000},
    {"\xc2\xb5s", 1000},
    {"\xce\xbcs", 1000},
    {"ms", 1000000},
    {"s", UINT64_C(1000000000)},
    {"m", UINT64_C(60000000000)},
    {"h", UINT64_C(3600000000000)},
};

/* One "<number>[.<fraction>]<unit>" of a duration, added to *total in nanoseconds, exactly as
 * Go's time.ParseDuration does it (a fraction beyond 63 bits is cut, not rounded). Returns
 * the rest of the text, or NULL with *why set. */
static const char *duration_part(const char *s, uint64_t *total, const char **why)
{
    uint64_t v = 0, f = 0;
    double scale = 1;
    const char *start = s;
    for (; isdigit((unsigned char)*s); s++) {
        if (v > DURATION_MAX_NS / 10 || (v = v * 10 + (uint64_t)(*s - '0')) > DURATION_MAX_NS) {
            *why = "too large";
            return NULL;
        }
    }
    bool digits = s != start;
    if (*s == '.') {
        const char *frac = ++s;
        bool cut = false;
        for (; isdigit((unsigned char)*s); s++) {
            uint64_t y = f * 10 + (uint64_t)(*s - '0');
            if (cut || f > (DURATION_MAX_NS - 1) / 10 || y > DURATION_MAX_NS) {
                cut = true;
                continue;
            }
            f = y;
            scale *= 10;
        }
        digits |= s != frac;
    }
    size_t unit_len = 0;
    while (s[unit_len] && s[unit_len] != '.' && !isdigit((unsigned char)s[unit_len]))
        unit_len++;
    if (!digits) {
        *why = "expected a number and a unit, as in \"1s\", \"500ms\" or \"1h30m\"";
        return NULL;
    }
    if (unit_len == 0) {
        *why = "missing unit (ns, us, ms, s, m or h)";
        return NULL;
    }
    size_t u = 0, n_units = sizeof(duration_units) / sizeof(duration_units[0]);
    while (u < n_units && (strlen(duration_units[u].name) != unit_len ||
                           strncmp(duration_units[u].name, s, unit_len) != 0))
        u++;
    if (u == n_units) {
        *why = "unknown unit (use ns, us, ms, s, m or h)";
        return NULL;
    }
    uint64_t unit = duration_units[u].ns;
    if (v > DURATION_MAX_NS / unit) {
        *why = "too large";
        return NULL;
    }
    v *= unit;
    if (f > 0)
        v += (uint64_t)((double)f * ((double)unit / scale));
    if (v > DURATION_MAX_NS || (*total += v) > DURATION_MAX_NS) {
        *why = "too large";
        return NULL;
    }
    return s + unit_len;
}

int weir_config_duration_ms(const char *text, int64_t *ms, const char **why)
{
    const char *s = text, *problem = NULL;
    bool neg = *s == '-';
    uint64_t ns = 0;
    s += *s == '-' || *s == '+';
    if (strcmp(s, "0") != 0) {
        if (*s == '\0')
            problem = "expected a number and a unit, as in \"1s\", \"500ms\" or \"1h30m\"";
        while (problem == NULL && *s)
            s = duration_part(s, &ns, &problem);
    }
    if (problem == NULL && neg && ns > 0)
        problem = "must not be negative";
    else if (problem == NULL && ns > (uint64_t)INT64_MAX)
        problem = "too large";
    else if (problem == NULL && ns % 1000000 != 0)
        problem = "finer than a millisecond, which Istio does not allow";
    if (problem) {
        if (why)
            *why = problem;
        return -1;
    }
    *ms = (int64_t)(ns / 1000000);
    return 0;
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

const weir_service_entry_t *
weir_config_service_by_address(const weir_config_t *cfg, const struct sockaddr *addr, uint32_t port)
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
