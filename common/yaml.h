/* common/yaml.h: libyaml -> a node tree that remembers where each node came from.
 *
 * Config errors must point at file:line:col, so unlike a plain parse every node keeps its
 * place (1-based, from libyaml's 0-based marks). A file may hold several documents ("---").
 * Duplicate keys in one mapping (which libyaml does not report) are errors. Aliases are
 * resolved to the anchored node; anchors are rare in Istio YAML and never cyclic here.
 *
 * Ownership: a weir_yaml_file_t owns every node and string of all its documents.
 * The tree is read-only once loaded. */
#ifndef WEIR_YAML_H
#define WEIR_YAML_H

#include <stdbool.h>
#include <stddef.h>

#include "common/diag.h"

typedef enum { WEIR_YAML_SCALAR, WEIR_YAML_MAP, WEIR_YAML_SEQ } weir_yaml_type_t;

typedef struct weir_yaml_node weir_yaml_node_t;
struct weir_yaml_node {
    weir_yaml_type_t type;
    const char *file;   /* the path given to weir_yaml_load_file; owned by the file object */
    unsigned line, col; /* 1-based */
    /* SCALAR: NUL-terminated text (len excludes the NUL); plain is true for an unquoted
     * scalar, so `true`, `80` or `null` can be told from "true", "80" or "null". */
    char *scalar;
    size_t scalar_len;
    bool plain;
    /* MAP: keys[i] (always scalars) -> items[i]; SEQ: items[i]. count entries each. */
    size_t count;
    weir_yaml_node_t **keys;
    weir_yaml_node_t **items;
};

typedef struct weir_yaml_file weir_yaml_file_t;

/* Loads every document of one file. Returns NULL when the file cannot be read or is not
 * well-formed YAML; the reason, with its place, is added to diags. An empty document
 * (only comments, or "---" alone) is skipped. */
weir_yaml_file_t *weir_yaml_load_file(const char *path, weir_diags_t *diags);
/* Same, from memory; `name` is used as the file name in places and messages. */
weir_yaml_file_t *weir_yaml_load_string(const char *name, const char *text, size_t len,
                                        weir_diags_t *diags);
void weir_yaml_free(weir_yaml_file_t *f);

size_t weir_yaml_doc_count(const weir_yaml_file_t *f);
const weir_yaml_node_t *weir_yaml_doc_root(const weir_yaml_file_t *f, size_t i);

/* The value under `key` in a MAP node, or NULL (also when map is NULL or not a MAP). */
const weir_yaml_node_t *weir_yaml_map_get(const weir_yaml_node_t *map, const char *key);

/* True for a plain scalar that YAML reads as null: `~`, `null`, `Null`, `NULL` or empty. */
bool weir_yaml_is_null(const weir_yaml_node_t *n);

#endif
