/* common/yaml.c: see yaml.h.
 *
 * Built on libyaml's event parser rather than its document loader: the loader keeps marks but
 * neither reports duplicate keys nor lets us stop an alias bomb, and walking its node table is
 * no simpler than building our own tree from events. */
#include "common/yaml.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/mem.h"

/* Aliases share nodes, so memory stays linear, but whoever walks the tree visits a shared
 * subtree once per reference: a "billion laughs" document would make the config walker run for
 * ever. Cap what one document may expand to; real Istio YAML is far below this. */
#define YAML_MAX_EXPANDED_NODES 1000000

struct weir_yaml_file {
    char *path;
    weir_yaml_node_t **docs;
    size_t n_docs, cap_docs;
    weir_yaml_node_t **nodes; /* every node allocated, each exactly once, for weir_yaml_free */
    size_t n_nodes, cap_nodes;
};

/* A collection under construction. */
typedef struct {
    weir_yaml_node_t *node;
    size_t cap;
    weir_yaml_node_t *key; /* MAP: the key waiting for its value */
    char *anchor;          /* registered when the collection ends, so it cannot contain itself */
    size_t expanded;       /* nodes this subtree stands for, aliases counted in full */
} frame_t;

typedef struct {
    char *name;
    weir_yaml_node_t *node;
    size_t expanded;
} anchor_t;

typedef struct {
    weir_yaml_file_t *f;
    weir_diags_t *diags;
    size_t errors_at_start;
    frame_t *stack;
    size_t depth, cap_stack;
    anchor_t *anchors;
    size_t n_anchors, cap_anchors;
    weir_yaml_node_t *root;
    size_t root_expanded;
} builder_t;

static void err_at(builder_t *b, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void err_at(builder_t *b, unsigned line, unsigned col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    weir_diags_vadd(b->diags, WEIR_DIAG_ERROR, b->f->path, line, col, fmt, ap);
    va_end(ap);
}

static weir_yaml_node_t *new_node(builder_t *b, weir_yaml_type_t type, yaml_mark_t mark)
{
    weir_yaml_file_t *f = b->f;
    if (f->n_nodes == f->cap_nodes) {
        f->cap_nodes = f->cap_nodes ? f->cap_nodes * 2 : 64;
        f->nodes = weir_mem_realloc(f->nodes, f->cap_nodes * sizeof(*f->nodes));
    }
    weir_yaml_node_t *n = weir_mem_calloc(1, sizeof(*n));
    n->type = type;
    n->file = f->path;
    n->line = (unsigned)mark.line + 1;
    n->col = (unsigned)mark.column + 1;
    f->nodes[f->n_nodes++] = n;
    return n;
}

static void push_item(weir_yaml_node_t **items[], size_t count, size_t *cap, weir_yaml_node_t *item)
{
    if (count == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        *items = weir_mem_realloc(*items, *cap * sizeof(**items));
    }
    (*items)[count] = item;
}

static void add_anchor(builder_t *b, const char *name, weir_yaml_node_t *n, size_t expanded)
{
    if (b->n_anchors == b->cap_anchors) {
        b->cap_anchors = b->cap_anchors ? b->cap_anchors * 2 : 8;
        b->anchors = weir_mem_realloc(b->anchors, b->cap_anchors * sizeof(*b->anchors));
    }
    b->anchors[b->n_anchors++] = (anchor_t){weir_mem_strdup(name), n, expanded};
}

static void clear_anchors(builder_t *b)
{
    for (size_t i = 0; i < b->n_anchors; i++)
        free(b->anchors[i].name);
    b->n_anchors = 0;
}

/* The latest definition wins: YAML lets an anchor be redefined further down. */
static const anchor_t *find_anchor(const builder_t *b, const char *name)
{
    for (size_t i = b->n_anchors; i-- > 0;)
        if (strcmp(b->anchors[i].name, name) == 0)
            return &b->anchors[i];
    return NULL;
}

/* Nested aliases multiply: 2^100 must not wrap round to a small number. */
static size_t saturating_add(size_t a, size_t b)
{
    return a > YAML_MAX_EXPANDED_NODES || b > YAML_MAX_EXPANDED_NODES ? YAML_MAX_EXPANDED_NODES + 1
                                                                      : a + b;
}

/* Hands a finished node to its parent collection, or makes it the document root. `line` and
 * `col` are where it was written: for an alias, not the anchored node's place. */
static void attach(builder_t *b, weir_yaml_node_t *n, size_t expanded, unsigned line, unsigned col)
{
    if (b->depth == 0) {
        b->root = n;
        b->root_expanded = expanded;
        return;
    }
    frame_t *fr = &b->stack[b->depth - 1];
    weir_yaml_node_t *parent = fr->node;
    fr->expanded = saturating_add(fr->expanded, expanded);
    if (parent->type == WEIR_YAML_SEQ) {
        push_item(&parent->items, parent->count, &fr->cap, n);
        parent->count++;
        return;
    }
    if (fr->key == NULL) {
        if (n->type != WEIR_YAML_SCALAR) {
            err_at(b, line, col, "mapping keys must be scalars");
        } else {
            for (size_t i = 0; i < parent->count; i++) {
                const weir_yaml_node_t *k = parent->keys[i];
                if (k->type == WEIR_YAML_SCALAR && k->scalar_len == n->scalar_len &&
                    memcmp(k->scalar, n->scalar, n->scalar_len) == 0) {
                    err_at(b, line, col, "duplicate key \"%s\" (first at %u:%u)", n->scalar,
                           k->line, k->col);
                    break;
                }
            }
        }
        fr->key = n;
        return;
    }
    size_t cap = fr->cap; /* keys and items grow together */
    push_item(&parent->keys, parent->count, &cap, fr->key);
    push_item(&parent->items, parent->count, &fr->cap, n);
    parent->count++;
    fr->key = NULL;
}

static void start_collection(builder_t *b, weir_yaml_type_t type, yaml_mark_t mark,
                             const yaml_char_t *anchor)
{
    if (b->depth == b->cap_stack) {
        b->cap_stack = b->cap_stack ? b->cap_stack * 2 : 16;
        b->stack = weir_mem_realloc(b->stack, b->cap_stack * sizeof(*b->stack));
    }
    b->stack[b->depth++] =
        (frame_t){new_node(b, type, mark), 0, NULL, weir_mem_strdup((const char *)anchor), 1};
}

static void end_collection(builder_t *b)
{
    frame_t fr = b->stack[--b->depth];
    if (fr.anchor) {
        add_anchor(b, fr.anchor, fr.node, fr.expanded);
        free(fr.anchor);
    }
    attach(b, fr.node, fr.expanded, fr.node->line, fr.node->col);
}

static void end_document(builder_t *b)
{
    weir_yaml_file_t *f = b->f;
    clear_anchors(b);
    weir_yaml_node_t *root = b->root;
    b->root = NULL;
    if (root == NULL || weir_yaml_is_null(root))
        return; /* only comments, or "---" alone */
    if (b->root_expanded > YAML_MAX_EXPANDED_NODES) {
        err_at(b, root->line, root->col, "document expands to more than %d nodes through aliases",
               YAML_MAX_EXPANDED_NODES);
        return;
    }
    if (f->n_docs == f->cap_docs) {
        f->cap_docs = f->cap_docs ? f->cap_docs * 2 : 4;
        f->docs = weir_mem_realloc(f->docs, f->cap_docs * sizeof(*f->docs));
    }
    f->docs[f->n_docs++] = root;
}

static void syntax_error(builder_t *b, const yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "cannot parse YAML";
    if (p->error == YAML_MEMORY_ERROR)
        problem = "out of memory";
    unsigned line = (unsigned)p->problem_mark.line + 1;
    unsigned col = (unsigned)p->problem_mark.column + 1;
    if (p->context)
        err_at(b, line, col, "%s (%s at %u:%u)", problem, p->context,
               (unsigned)p->context_mark.line + 1, (unsigned)p->context_mark.column + 1);
    else
        err_at(b, line, col, "%s", problem);
}

/* Returns false when the event stream must stop (syntax error or end of stream). */
static bool handle_event(builder_t *b, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
        return false;
    case YAML_DOCUMENT_START_EVENT:
        b->root = NULL;
        break;
    case YAML_DOCUMENT_END_EVENT:
        end_document(b);
        break;
    case YAML_SCALAR_EVENT: {
        weir_yaml_node_t *n = new_node(b, WEIR_YAML_SCALAR, ev->start_mark);
        n->scalar = weir_mem_strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        n->scalar_len = ev->data.scalar.length;
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (ev->data.scalar.anchor)
            add_anchor(b, (const char *)ev->data.scalar.anchor, n, 1);
        attach(b, n, 1, n->line, n->col);
        break;
    }
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        const anchor_t *a = find_anchor(b, name);
        if (a == NULL) {
            err_at(b, (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1,
                   "undefined alias \"%s\"", name);
            /* Keep the tree's shape so that later keys pair with the right values. */
            weir_yaml_node_t *n = new_node(b, WEIR_YAML_SCALAR, ev->start_mark);
            n->scalar = weir_mem_strdup("");
            n->plain = true;
            attach(b, n, 1, n->line, n->col);
        } else {
            attach(b, a->node, a->expanded, (unsigned)ev->start_mark.line + 1,
                   (unsigned)ev->start_mark.column + 1);
        }
        break;
    }
    case YAML_SEQUENCE_START_EVENT:
        start_collection(b, WEIR_YAML_SEQ, ev->start_mark, ev->data.sequence_start.anchor);
        break;
    case YAML_MAPPING_START_EVENT:
        start_collection(b, WEIR_YAML_MAP, ev->start_mark, ev->data.mapping_start.anchor);
        break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        end_collection(b);
        break;
    default:
        break;
    }
    return true;
}

static weir_yaml_file_t *load(const char *name, const char *text, size_t len, weir_diags_t *diags)
{
    weir_yaml_file_t *f = weir_mem_calloc(1, sizeof(*f));
    f->path = weir_mem_strdup(name);
    builder_t b = {.f = f, .diags = diags, .errors_at_start = diags->errors};

    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        err_at(&b, 0, 0, "cannot initialise the YAML parser");
        weir_yaml_free(f);
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            syntax_error(&b, &p);
            break;
        }
        bool more = handle_event(&b, &ev);
        yaml_event_delete(&ev);
        if (!more)
            break;
    }
    yaml_parser_delete(&p);

    /* After a syntax error the stack may still hold open collections; their nodes are already
     * owned by f->nodes, only the frames' anchors need freeing. */
    for (size_t i = 0; i < b.depth; i++)
        free(b.stack[i].anchor);
    free(b.stack);
    clear_anchors(&b);
    free(b.anchors);
    if (diags->errors > b.errors_at_start) {
        weir_yaml_free(f);
        return NULL;
    }
    return f;
}

weir_yaml_file_t *weir_yaml_load_string(const char *name, const char *text, size_t len,
                                        weir_diags_t *diags)
{
    return load(name, text, len, diags);
}

weir_yaml_file_t *weir_yaml_load_file(const char *path, weir_diags_t *diags)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        weir_diags_add(diags, WEIR_DIAG_ERROR, path, 0, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    weir_buf_t buf = WEIR_BUF_INIT;
    char chunk[16384];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        weir_buf_append(&buf, chunk, n);
    int read_error = ferror(fp) ? errno : 0;
    fclose(fp);
    if (read_error) {
        weir_diags_add(diags, WEIR_DIAG_ERROR, path, 0, 0, "cannot read: %s", strerror(read_error));
        weir_buf_free(&buf);
        return NULL;
    }
    weir_yaml_file_t *f = load(path, buf.base ? buf.base : "", buf.len, diags);
    weir_buf_free(&buf);
    return f;
}

void weir_yaml_free(weir_yaml_file_t *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n_nodes; i++) {
        weir_yaml_node_t *n = f->nodes[i];
        free(n->scalar);
        free(n->keys);
        free(n->items);
        free(n);
    }
    free(f->nodes);
    free(f->docs);
    free(f->path);
    free(f);
}

size_t weir_yaml_doc_count(const weir_yaml_file_t *f)
{
    return f ? f->n_docs : 0;
}

const weir_yaml_node_t *weir_yaml_doc_root(const weir_yaml_file_t *f, size_t i)
{
    return f && i < f->n_docs ? f->docs[i] : NULL;
}

const weir_yaml_node_t *weir_yaml_map_get(const weir_yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != WEIR_YAML_MAP)
        return NULL;
    size_t len = strlen(key);
    for (size_t i = 0; i < map->count; i++) {
        const weir_yaml_node_t *k = map->keys[i];
        if (k->scalar_len == len && memcmp(k->scalar, key, len) == 0)
            return map->items[i];
    }
    return NULL;
}

bool weir_yaml_is_null(const weir_yaml_node_t *n)
{
    if (n == NULL || n->type != WEIR_YAML_SCALAR || !n->plain)
        return false;
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
        if (strcmp(n->scalar, nulls[i]) == 0)
            return true;
    return false;
}
