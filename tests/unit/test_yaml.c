/* tests/unit/test_yaml.c: the YAML node tree, its places and its diagnostics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/mem.h"
#include "common/yaml.h"

static weir_yaml_file_t *load(const char *text, weir_diags_t *d)
{
    return weir_yaml_load_string("t.yaml", text, strlen(text), d);
}

/* Every diagnostic as weir_diags_print writes it. */
static char *printed(const weir_diags_t *d)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    weir_diags_print(d, f);
    fclose(f);
    return buf;
}

static void assert_diags(const weir_diags_t *d, const char *want)
{
    char *got = printed(d);
    assert_string_equal(got, want);
    free(got);
}

static void test_places_and_types(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_yaml_file_t *f = load("a: 1\n"
                               "b:\n"
                               "  - x\n"
                               "  - \"80\"\n"
                               "c: {d: 'e', f: [g]}\n"
                               "h: |\n"
                               "  two\n"
                               "  lines\n",
                               &d);
    assert_non_null(f);
    assert_int_equal(d.count, 0);
    assert_int_equal(weir_yaml_doc_count(f), 1);
    const weir_yaml_node_t *root = weir_yaml_doc_root(f, 0);
    assert_int_equal(root->type, WEIR_YAML_MAP);
    assert_int_equal(root->count, 4);
    assert_string_equal(root->file, "t.yaml");
    assert_int_equal(root->line, 1);
    assert_int_equal(root->col, 1);

    const weir_yaml_node_t *a = weir_yaml_map_get(root, "a");
    assert_int_equal(a->type, WEIR_YAML_SCALAR);
    assert_string_equal(a->scalar, "1");
    assert_true(a->plain);
    assert_int_equal(a->line, 1);
    assert_int_equal(a->col, 4);
    assert_int_equal(root->keys[0]->col, 1);

    const weir_yaml_node_t *b = weir_yaml_map_get(root, "b");
    assert_int_equal(b->type, WEIR_YAML_SEQ);
    assert_int_equal(b->count, 2);
    assert_int_equal(b->line, 3);
    assert_int_equal(b->col, 3);
    assert_string_equal(b->items[1]->scalar, "80");
    assert_false(b->items[1]->plain); /* quoted: a string, not the number 80 */
    assert_int_equal(b->items[1]->line, 4);
    assert_int_equal(b->items[1]->col, 5);

    const weir_yaml_node_t *c = weir_yaml_map_get(root, "c");
    assert_int_equal(c->type, WEIR_YAML_MAP);
    assert_int_equal(c->col, 4); /* the '{' */
    assert_string_equal(weir_yaml_map_get(c, "d")->scalar, "e");
    assert_false(weir_yaml_map_get(c, "d")->plain);
    assert_int_equal(weir_yaml_map_get(c, "f")->items[0]->col, 17);

    const weir_yaml_node_t *h = weir_yaml_map_get(root, "h");
    assert_string_equal(h->scalar, "two\nlines\n");
    assert_int_equal(h->scalar_len, 10);

    assert_null(weir_yaml_map_get(root, "zz"));
    assert_null(weir_yaml_map_get(b, "a"));
    assert_null(weir_yaml_map_get(NULL, "a"));
    assert_null(weir_yaml_doc_root(f, 1));
    weir_yaml_free(f);
    weir_diags_clear(&d);
}

static void test_multi_document(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_yaml_file_t *f = load("# only a comment\n"
                               "---\n"
                               "kind: A\n"
                               "---\n"
                               "---\n"
                               "# nothing\n"
                               "---\n"
                               "kind: B\n"
                               "...\n"
                               "---\n"
                               "- 1\n",
                               &d);
    assert_non_null(f);
    assert_int_equal(d.count, 0);
    assert_int_equal(weir_yaml_doc_count(f), 3);
    assert_string_equal(weir_yaml_map_get(weir_yaml_doc_root(f, 0), "kind")->scalar, "A");
    assert_string_equal(weir_yaml_map_get(weir_yaml_doc_root(f, 1), "kind")->scalar, "B");
    assert_int_equal(weir_yaml_doc_root(f, 1)->line, 8);
    assert_int_equal(weir_yaml_doc_root(f, 2)->type, WEIR_YAML_SEQ);
    weir_yaml_free(f);

    f = load("# comments only\n", &d);
    assert_non_null(f);
    assert_int_equal(weir_yaml_doc_count(f), 0);
    weir_yaml_free(f);
    f = load("", &d);
    assert_non_null(f);
    assert_int_equal(weir_yaml_doc_count(f), 0);
    weir_yaml_free(f);
    assert_int_equal(d.count, 0);
    weir_diags_clear(&d);
}

static void test_duplicate_keys(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_yaml_file_t *f = load("a: 1\n"
                               "b:\n"
                               "  x: 1\n"
                               "  y: 2\n"
                               "  x: 3\n"
                               "a: 2\n"
                               "c: [{k: 1, k: 2}]\n",
                               &d);
    assert_null(f);
    assert_diags(&d, "t.yaml:5:3: error: duplicate key \"x\" (first at 3:3)\n"
                     "t.yaml:6:1: error: duplicate key \"a\" (first at 1:1)\n"
                     "t.yaml:7:12: error: duplicate key \"k\" (first at 7:6)\n");
    weir_diags_clear(&d);

    /* The same key in two maps, or in two documents, is fine. */
    f = load("a: {k: 1}\nb: {k: 1}\n---\na: 1\n", &d);
    assert_non_null(f);
    assert_int_equal(d.count, 0);
    weir_yaml_free(f);
}

static void test_syntax_errors(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    assert_null(load("a:\n  b: 1\n c: 2\n", &d));
    assert_diags(&d, "t.yaml:3:2: error: did not find expected key (while parsing a block "
                     "mapping at 1:1)\n");
    weir_diags_clear(&d);

    assert_null(load("a: [1, 2\n", &d));
    assert_int_equal(d.errors, 1);
    assert_int_equal(d.items[0].line, 2);
    assert_non_null(strstr(d.items[0].msg, "did not find expected ',' or ']'"));
    weir_diags_clear(&d);

    assert_null(load("a: \"unterminated\n", &d));
    assert_int_equal(d.errors, 1);
    assert_non_null(strstr(d.items[0].msg, "found unexpected end of stream"));
    weir_diags_clear(&d);

    /* A later document's error still fails the file. */
    assert_null(load("a: 1\n---\nb: c: d\n", &d));
    assert_diags(&d, "t.yaml:3:5: error: mapping values are not allowed in this context\n");
    weir_diags_clear(&d);
}

static void test_non_scalar_keys(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    assert_null(load("? [a, b]\n: 1\n{x: 1}: 2\n", &d));
    assert_diags(&d, "t.yaml:1:3: error: mapping keys must be scalars\n"
                     "t.yaml:3:1: error: mapping keys must be scalars\n");
    weir_diags_clear(&d);
}

static void test_aliases(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_yaml_file_t *f = load("base: &labels\n"
                               "  app: web\n"
                               "  version: v1\n"
                               "name: &n web\n"
                               "copy: *labels\n"
                               "again: [*labels, *n]\n"
                               "key:\n"
                               "  *n : 1\n",
                               &d);
    assert_non_null(f);
    assert_int_equal(d.count, 0);
    const weir_yaml_node_t *root = weir_yaml_doc_root(f, 0);
    const weir_yaml_node_t *base = weir_yaml_map_get(root, "base");
    assert_ptr_equal(weir_yaml_map_get(root, "copy"), base); /* shared, freed once */
    assert_ptr_equal(weir_yaml_map_get(root, "again")->items[0], base);
    assert_ptr_equal(weir_yaml_map_get(root, "again")->items[1], weir_yaml_map_get(root, "name"));
    assert_string_equal(weir_yaml_map_get(base, "version")->scalar, "v1");
    /* An alias keeps the anchored node's place: libyaml starts an anchored node at its anchor. */
    assert_int_equal(weir_yaml_map_get(root, "copy")->line, 1);
    assert_int_equal(weir_yaml_map_get(root, "copy")->col, 7);
    assert_int_equal(weir_yaml_map_get(weir_yaml_map_get(root, "key"), "web")->line, 8);
    weir_yaml_free(f);

    assert_null(load("a: *nowhere\n", &d));
    assert_diags(&d, "t.yaml:1:4: error: undefined alias \"nowhere\"\n");
    weir_diags_clear(&d);

    /* Anchors belong to their document; a collection cannot contain itself. */
    assert_null(load("a: &x 1\n---\nb: *x\n", &d));
    assert_int_equal(d.errors, 1);
    weir_diags_clear(&d);
    assert_null(load("a: &x [1, *x]\n", &d));
    assert_int_equal(d.errors, 1);
    weir_diags_clear(&d);
    assert_null(load("&k a: 1\n*k : 2\n", &d));
    assert_diags(&d, "t.yaml:2:1: error: duplicate key \"a\" (first at 1:1)\n");
    weir_diags_clear(&d);
}

static void test_alias_bomb(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_append_str(&b, "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 12; i++) {
        weir_buf_appendf(&b, "l%d: &l%d [", i, i);
        for (int j = 0; j < 10; j++)
            weir_buf_appendf(&b, "%s*l%d", j ? ", " : "", i - 1);
        weir_buf_append_str(&b, "]\n");
    }
    assert_null(weir_yaml_load_string("bomb.yaml", b.base, b.len, &d));
    assert_diags(&d, "bomb.yaml:1:1: error: document expands to more than 1000000 nodes "
                     "through aliases\n");
    weir_buf_free(&b);
    weir_diags_clear(&d);
}

static void test_is_null(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_yaml_file_t *f = load("- ~\n- null\n- Null\n- NULL\n-\n- \"null\"\n- ''\n- nil\n- NUll\n"
                               "- 0\n- {}\n",
                               &d);
    assert_non_null(f);
    const weir_yaml_node_t *s = weir_yaml_doc_root(f, 0);
    assert_int_equal(s->count, 11);
    for (size_t i = 0; i < s->count; i++)
        assert_int_equal(weir_yaml_is_null(s->items[i]), i < 5);
    assert_false(weir_yaml_is_null(NULL));
    weir_yaml_free(f);

    /* A key with no value is null too. */
    f = load("a:\nb: 1\n", &d);
    assert_true(weir_yaml_is_null(weir_yaml_map_get(weir_yaml_doc_root(f, 0), "a")));
    weir_yaml_free(f);
    weir_diags_clear(&d);
}

static void test_files(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    const char *path = WEIR_TEST_DATA "/config/seed-local/gateway.yaml";
    weir_yaml_file_t *f = weir_yaml_load_file(path, &d);
    assert_non_null(f);
    const weir_yaml_node_t *root = weir_yaml_doc_root(f, 0);
    assert_string_equal(root->file, path);
    const weir_yaml_node_t *servers = weir_yaml_map_get(weir_yaml_map_get(root, "spec"), "servers");
    assert_int_equal(servers->line, 10);
    assert_int_equal(servers->items[0]->line, 10);
    assert_int_equal(servers->items[0]->col, 5);
    weir_yaml_free(f);

    assert_null(weir_yaml_load_file("/nonexistent/x.yaml", &d));
    assert_diags(&d, "/nonexistent/x.yaml: error: cannot open: No such file or directory\n");
    weir_diags_clear(&d);

    /* A directory opens but cannot be read. */
    assert_null(weir_yaml_load_file(WEIR_TEST_DATA, &d));
    assert_int_equal(d.errors, 1);
    assert_int_equal(d.items[0].line, 0);
    weir_diags_clear(&d);

    weir_yaml_free(NULL);
    assert_int_equal(weir_yaml_doc_count(NULL), 0);
}

static void test_invalid_utf8(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    assert_null(load("a: \xff\xfe\n", &d));
    assert_int_equal(d.errors, 1);
    assert_non_null(strstr(d.items[0].msg, "invalid"));
    weir_diags_clear(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_places_and_types),
        cmocka_unit_test(test_multi_document),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_non_scalar_keys),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_alias_bomb),
        cmocka_unit_test(test_is_null),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_invalid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
