/* tests/unit/test_analyze.c: the analyzer behind `weir validate` (common/analyze.h), its
 * diagnostics (codes and hints in common/diag.h) and its JSON rendering.
 *
 * Golden cases: tests/data/analyze/<case>.yaml is loaded from tests/data/analyze as the working
 * directory (the load must succeed) and the analyzer's findings, as weir_diags_print prints
 * them, must equal <case>.out byte for byte; json_shape.json is `weir validate --output json`
 * for json_shape.yaml. WEIR_UPDATE_GOLDEN=1 rewrites them from the current output (review the
 * diff). Besides the goldens, each code is asserted at its place, so a golden rewritten
 * without review still cannot drop a finding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/analyze.h"
#include "common/config.h"
#include "common/mem.h"
#include "support.h"

#define ANALYZE_DATA WEIR_TEST_DATA "/analyze"
#define SOURCE_DIR WEIR_TEST_DATA "/../.."

/* The output must equal the golden file, or becomes it under WEIR_UPDATE_GOLDEN. */
static void check_golden(const char *golden, const char *got)
{
    if (getenv("WEIR_UPDATE_GOLDEN"))
        write_file(golden, got);
    char *want = read_file(golden);
    if (want == NULL)
        fail_msg("missing golden file %s/%s", ANALYZE_DATA, golden);
    if (strcmp(got, want) != 0)
        fail_msg("%s differs\n--- want\n%s--- got\n%s", golden, want, got);
    free(want);
}

/* Loads paths (failing the test on a load error) and analyzes them: *loader gets the loader's
 * diagnostics, *found the analyzer's alone. */
static weir_config_t *analyze_paths(const char *const *paths, size_t n, weir_diags_t *loader,
                                    weir_diags_t *found)
{
    weir_config_t *cfg = weir_config_load(paths, n, loader);
    if (cfg == NULL) {
        char *p = printed(loader);
        fail_msg("%s does not load:\n%s", paths[0], p);
    }
    weir_analyze(cfg, found);
    return cfg;
}

static weir_config_t *analyze_case(const char *name, weir_diags_t *found)
{
    assert_int_equal(chdir(ANALYZE_DATA), 0);
    char path[256];
    FMT(path, "%s.yaml", name);
    const char *paths[] = {path};
    weir_diags_t loader = WEIR_DIAGS_INIT;
    weir_config_t *cfg = analyze_paths(paths, 1, &loader, found);
    weir_diags_clear(&loader);
    return cfg;
}

static weir_config_t *analyze_text(const char *text, weir_diags_t *found)
{
    weir_diags_t loader = WEIR_DIAGS_INIT;
    weir_config_t *cfg = weir_config_load_string("t.yaml", text, &loader);
    if (cfg == NULL) {
        char *p = printed(&loader);
        fail_msg("does not load:\n%s", p);
    }
    weir_diags_clear(&loader);
    weir_analyze(cfg, found);
    return cfg;
}

static size_t count_code(const weir_diags_t *d, const char *code)
{
    size_t n = 0;
    for (size_t i = 0; i < d->count; i++)
        n += d->items[i].code != NULL && strcmp(d->items[i].code, code) == 0;
    return n;
}

/* ---- golden cases ---------------------------------------------------------------------------- */

static void test_golden(void **state)
{
    const char *name = *state;
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = analyze_case(name, &d);
    char golden[256];
    FMT(golden, "%s.out", name);
    char *got = printed(&d);
    check_golden(golden, got);
    for (size_t i = 0; i < d.count; i++) { /* every finding is coded, hinted and placed */
        assert_non_null(d.items[i].code);
        assert_non_null(d.items[i].hint);
        assert_true(d.items[i].line > 0);
    }
    free(got);
    weir_diags_clear(&d);
    weir_config_free(cfg);
}

/* ---- each code at its place ---------------------------------------------------------------- */

typedef struct {
    const char *file, *code;
    weir_diag_level_t level;
    unsigned line, col;
    const char *in_msg, *in_hint; /* substrings the message and the hint must hold */
} expect_t;

static const expect_t expected[] = {
    {"ist0101_hosts", "IST0101", WEIR_DIAG_WARNING, 28, 7, "\"reviews.default.svc.cluster.local\"",
     "declare it with a ServiceEntry"},
    {"ist0101_hosts", "IST0101", WEIR_DIAG_WARNING, 31, 7, "http[0] mirror",
     "did you mean \"web-service.default.svc.cluster.local\"?"},
    {"ist0101_hosts", "IST0101", WEIR_DIAG_WARNING, 33, 1, "DestinationRule default/ratings", ""},
    {"ist0109_mesh_conflict", "IST0109", WEIR_DIAG_ERROR, 33, 1, "default/web-v1", "merge the two"},
    {"ist0113_mtls", "IST0113", WEIR_DIAG_ERROR, 60, 1,
     "DISABLE sends plain text to httpd-v1 port 80", "ISTIO_MUTUAL"},
    {"ist0113_mtls", "IST0113", WEIR_DIAG_ERROR, 73, 5, "ISTIO_MUTUAL sends mTLS to httpd-v2",
     "PERMISSIVE"},
    {"ist0127_selectors", "IST0127", WEIR_DIAG_WARNING, 2, 1, "workloadSelector app=htpd",
     "did you mean app: httpd?"},
    {"ist0127_selectors", "IST0127", WEIR_DIAG_WARNING, 29, 1, "selector app=reviews",
     "carry app=httpd"},
    {"ist0130_unreachable", "IST0130", WEIR_DIAG_WARNING, 54, 5, "http[1]: never used: http[0]",
     "move it above http[0]"},
    {"ist0130_unreachable", "IST0131", WEIR_DIAG_WARNING, 72, 7, "http[3].match[0]", ""},
    {"ist0130_unreachable", "IST0130", WEIR_DIAG_WARNING, 89, 5, "matches every request first",
     "give http[5] a match"},
    {"ist0130_unreachable", "IST0130", WEIR_DIAG_WARNING, 106, 5,
     "VirtualService default/shop http[5]", "move it into VirtualService default/shop"},
    {"ist0131_ineffective", "IST0131", WEIR_DIAG_WARNING, 66, 7, "http[1].match[1]", ""},
    {"ist0131_ineffective", "IST0131", WEIR_DIAG_WARNING, 70, 7, "http[1].match[0]",
     "adds nothing"},
    {"ist0131_ineffective", "IST0131", WEIR_DIAG_WARNING, 72, 7, "\"default/other\"", ""},
    {"ist0132_gateway_hosts", "IST0132", WEIR_DIAG_WARNING, 33, 1, "default/nowhere",
     "add `mesh` to gateways"},
    {"ist0132_gateway_hosts", "IST0132", WEIR_DIAG_WARNING, 48, 1, "default/web-both",
     "drop default/gw"},
    {"ist0132_gateway_hosts", "IST0132", WEIR_DIAG_WARNING, 64, 1, "\"shop.example.org\"", ""},
    {"ist0145_gateways", "IST0145", WEIR_DIAG_ERROR, 32, 5, "Gateway default/public",
     "merge the two servers"},
    {"weir0001_subsets", "WEIR0001", WEIR_DIAG_WARNING, 50, 5, "\"v2\"",
     "did you mean version: v2?"},
    {"weir0001_subsets", "WEIR0001", WEIR_DIAG_WARNING, 53, 5, "503",
     "carry version=v1, version=v2"},
    {"weir0001_subsets", "WEIR0001", WEIR_DIAG_WARNING, 56, 5, "verison=v1",
     "did you mean label \"version\"?"},
    {"weir0002_protocol", "WEIR0002", WEIR_DIAG_WARNING, 42, 5, "port 80 \"http-web\" is TCP",
     "did you mean protocol: HTTP?"},
    {"weir0002_protocol", "WEIR0002", WEIR_DIAG_WARNING, 56, 5, "Gateway default/tls-gw", "tls[]"},
};

static void test_codes(void **state)
{
    const char *name = *state;
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = analyze_case(name, &d);
    size_t n_expected = 0;
    for (size_t e = 0; e < sizeof(expected) / sizeof(expected[0]); e++) {
        const expect_t *x = &expected[e];
        if (strcmp(x->file, name) != 0)
            continue;
        n_expected++;
        size_t i = 0;
        while (i < d.count && !(d.items[i].line == x->line && d.items[i].col == x->col &&
                                strcmp(d.items[i].code, x->code) == 0 &&
                                strstr(d.items[i].msg, x->in_msg) != NULL))
            i++;
        if (i == d.count)
            fail_msg("%s: no %s at %u:%u with \"%s\"", name, x->code, x->line, x->col, x->in_msg);
        assert_int_equal(d.items[i].level, x->level);
        char file[256];
        FMT(file, "%s.yaml", name);
        assert_string_equal(d.items[i].file, file);
        if (strstr(d.items[i].hint, x->in_hint) == NULL)
            fail_msg("%s: hint \"%s\" lacks \"%s\"", name, d.items[i].hint, x->in_hint);
    }
    assert_int_equal(d.count, n_expected); /* and nothing else */
    weir_diags_clear(&d);
    weir_config_free(cfg);
}

/* ---- configs that must be clean -------------------------------------------------------------- */

static void assert_clean(const char *const *paths, size_t n)
{
    weir_diags_t loader = WEIR_DIAGS_INIT, d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = analyze_paths(paths, n, &loader, &d);
    if (d.count != 0) {
        char *p = printed(&d);
        fail_msg("%s: findings on a clean config:\n%s", paths[0], p);
    }
    weir_diags_clear(&loader);
    weir_config_free(cfg);
}

static void test_clean_deploy_local(void **state)
{
    assert_int_equal(chdir(SOURCE_DIR), 0);
    const char *dir[] = {"deploy/local"};
    assert_clean(dir, 1);
    const char *split[] = {"deploy/local", "deploy/local/examples/split.yaml"};
    assert_clean(split, 2);
    const char *mirror[] = {"deploy/local/gateway.yaml", "deploy/local/destinationrule.yaml",
                            "deploy/local/registry.yaml", "deploy/local/examples/mirror.yaml"};
    assert_clean(mirror, 4);
}

static void test_clean_seed(void **state)
{
    const char *local[] = {WEIR_TEST_DATA "/config/seed-local"};
    assert_clean(local, 1);
    /* The seed as written for Kubernetes: its Service and Pods are not read, and with no
     * ServiceEntry or WorkloadEntry at all the registry checks stay quiet. */
    if (access(SHARED_SEED, R_OK) != 0)
        skip();
    const char *seed[] = {SHARED_SEED};
    assert_clean(seed, 1);
}

/* ---- rule coverage, case by case ------------------------------------------------------------ */

/* A mesh VirtualService for a declared service with `rules` as its http[]. */
static weir_config_t *analyze_rules(const char *rules, weir_diags_t *d)
{
    weir_buf_t y = WEIR_BUF_INIT;
    weir_buf_appendf(&y,
                     "apiVersion: networking.istio.io/v1\n"
                     "kind: ServiceEntry\n"
                     "metadata: {name: web}\n"
                     "spec:\n"
                     "  hosts: [web.default.svc.cluster.local]\n"
                     "  location: MESH_INTERNAL\n"
                     "  resolution: STATIC\n"
                     "  ports: [{number: 80, name: http, protocol: HTTP}]\n"
                     "  endpoints: [{address: 10.0.0.1}]\n"
                     "---\n"
                     "apiVersion: networking.istio.io/v1\n"
                     "kind: VirtualService\n"
                     "metadata: {name: web}\n"
                     "spec:\n"
                     "  hosts: [web]\n"
                     "  http:\n%s",
                     rules);
    weir_config_t *cfg = analyze_text(y.base, d);
    weir_buf_free(&y);
    return cfg;
}

static void expect_rules(const char *rules, size_t unreachable, size_t ineffective)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = analyze_rules(rules, &d);
    if (count_code(&d, "IST0130") != unreachable || count_code(&d, "IST0131") != ineffective ||
        d.count != unreachable + ineffective) {
        char *p = printed(&d);
        fail_msg("want %zu IST0130 and %zu IST0131 for\n%sgot\n%s", unreachable, ineffective, rules,
                 p);
    }
    weir_diags_clear(&d);
    weir_config_free(cfg);
}

#define TO_WEB "    route: [{destination: {host: web}}]\n"

static void test_rules_not_covered(void **state)
{
    /* Each later match asks for something the earlier one does not. */
    expect_rules("  - match: [{uri: {prefix: /a}, method: {exact: GET}}]\n" TO_WEB
                 "  - match: [{uri: {prefix: /a}}]\n" TO_WEB,
                 0, 0);
    expect_rules("  - match: [{uri: {prefix: /a/b}}]\n" TO_WEB
                 "  - match: [{uri: {prefix: /a}}]\n" TO_WEB,
                 0, 0);
    expect_rules("  - match: [{headers: {x-a: {exact: '1'}}}]\n" TO_WEB
                 "  - match: [{headers: {x-a: {exact: '2'}}}]\n" TO_WEB
                 "  - match: [{headers: {x-b: {exact: '1'}}}]\n" TO_WEB,
                 0, 0);
    expect_rules("  - match: [{uri: {prefix: /a}, withoutHeaders: {x-a: {}}}]\n" TO_WEB
                 "  - match: [{uri: {prefix: /a/b}}]\n" TO_WEB,
                 0, 0);
    expect_rules("  - match: [{uri: {exact: /a}}]\n" TO_WEB
                 "  - match: [{uri: {exact: /a}, ignoreUriCase: true}]\n" TO_WEB,
                 0, 0);
    expect_rules("  - match: [{uri: {regex: '/a.*'}}]\n" TO_WEB
                 "  - match: [{uri: {regex: '/a.+'}}]\n" TO_WEB
                 "  - match: [{uri: {exact: /b}}]\n" TO_WEB,
                 0, 0);
    expect_rules("  - match: [{port: 8080}]\n" TO_WEB "  - match: [{uri: {prefix: /}}]\n" TO_WEB, 0,
                 0);
    expect_rules("  - match: [{queryParams: {v: {exact: '1'}}}]\n" TO_WEB
                 "  - match: [{queryParams: {v: {exact: '2'}}}]\n" TO_WEB,
                 0, 0);
}

static void test_rules_covered(void **state)
{
    /* Exact duplicates, and conditions an earlier match implies. */
    expect_rules("  - match: [{uri: {prefix: /a}}]\n" TO_WEB
                 "  - match: [{uri: {prefix: /a}}]\n" TO_WEB,
                 1, 0);
    expect_rules("  - match: [{uri: {prefix: /A}, ignoreUriCase: true}]\n" TO_WEB
                 "  - match: [{uri: {exact: /a/b}}]\n" TO_WEB,
                 1, 0);
    expect_rules("  - match: [{uri: {prefix: /}}]\n" TO_WEB
                 "  - match: [{method: {exact: GET}}]\n" TO_WEB,
                 1, 0);
    expect_rules("  - match: [{headers: {x-a: {}}}]\n" TO_WEB
                 "  - match: [{headers: {x-a: {prefix: v}, x-b: {exact: '1'}}}]\n" TO_WEB,
                 1, 0);
    expect_rules("  - match: [{queryParams: {v: {regex: '[0-9]+'}}}]\n" TO_WEB
                 "  - match: [{queryParams: {v: {regex: '[0-9]+'}}, uri: {prefix: /x}}]\n" TO_WEB,
                 1, 0);
    expect_rules("  - match: [{withoutHeaders: {x-a: {}}}]\n" TO_WEB
                 "  - match: [{withoutHeaders: {x-a: {}}, port: 80}]\n" TO_WEB,
                 1, 0);
    /* A rule without match is a catch-all: everything after it is dead, one finding each. */
    expect_rules("  - route: [{destination: {host: web}}]\n"
                 "  - match: [{uri: {prefix: /a}}]\n" TO_WEB
                 "  - route: [{destination: {host: web}}]\n",
                 2, 0);
    /* Every match of a rule covered: the rule is reported, not each match. */
    expect_rules("  - match: [{uri: {prefix: /a}}, {uri: {prefix: /b}}]\n" TO_WEB
                 "  - match: [{uri: {prefix: /b/c}}, {uri: {prefix: /a}}]\n" TO_WEB,
                 1, 0);
    /* One match of two covered: the rule stays, the match is reported. */
    expect_rules("  - match: [{uri: {prefix: /a}}]\n" TO_WEB
                 "  - match: [{uri: {prefix: /a/b}}, {uri: {prefix: /c}}]\n" TO_WEB,
                 0, 1);
}

/* ---- the other checks, what they leave alone ------------------------------------------------- */

static void test_no_conflict_across_scopes(void **state)
{
    /* One host in two VirtualServices on a gateway is a merge, not IST0109; mesh plus gateway
     * hosts in one VirtualService is fine; a Gateway on another port does not conflict. */
    const char *yaml = "apiVersion: networking.istio.io/v1\n"
                       "kind: Gateway\n"
                       "metadata: {name: gw}\n"
                       "spec:\n"
                       "  servers: [{port: {number: 80, name: http, protocol: HTTP}, "
                       "hosts: [\"*\"]}]\n"
                       "---\n"
                       "apiVersion: networking.istio.io/v1\n"
                       "kind: Gateway\n"
                       "metadata: {name: gw-alt}\n"
                       "spec:\n"
                       "  servers: [{port: {number: 8080, name: http, protocol: HTTP}, "
                       "hosts: [\"*\"]}]\n"
                       "---\n"
                       "apiVersion: networking.istio.io/v1\n"
                       "kind: VirtualService\n"
                       "metadata: {name: a}\n"
                       "spec:\n"
                       "  hosts: [example.com]\n"
                       "  gateways: [gw]\n"
                       "  http: [{match: [{uri: {prefix: /a}}], "
                       "directResponse: {status: 200}}]\n"
                       "---\n"
                       "apiVersion: networking.istio.io/v1\n"
                       "kind: VirtualService\n"
                       "metadata: {name: b}\n"
                       "spec:\n"
                       "  hosts: [example.com]\n"
                       "  gateways: [gw, gw-alt]\n"
                       "  http: [{match: [{uri: {prefix: /b}}], "
                       "directResponse: {status: 200}}]\n";
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = analyze_text(yaml, &d);
    if (d.count != 0) {
        char *p = printed(&d);
        fail_msg("want no findings, got\n%s", p);
    }
    weir_diags_clear(&d);
    weir_config_free(cfg);
}

static void test_catch_all_merged_only_where_shared(void **state)
{
    /* a's catch-all on gw shadows b on gw, but b is also bound to gw-alt: still used there. */
    const char *yaml = "apiVersion: networking.istio.io/v1\n"
                       "kind: Gateway\n"
                       "metadata: {name: gw}\n"
                       "spec:\n"
                       "  servers: [{port: {number: 80, name: http, protocol: HTTP}, "
                       "hosts: [\"*\"]}]\n"
                       "---\n"
                       "apiVersion: networking.istio.io/v1\n"
                       "kind: Gateway\n"
                       "metadata: {name: gw-alt}\n"
                       "spec:\n"
                       "  servers: [{port: {number: 8080, name: http, protocol: HTTP}, "
                       "hosts: [\"*\"]}]\n"
                       "---\n"
                       "apiVersion: networking.istio.io/v1\n"
                       "kind: VirtualService\n"
                       "metadata: {name: a}\n"
                       "spec:\n"
                       "  hosts: [example.com]\n"
                       "  gateways: [gw]\n"
                       "  http: [{directResponse: {status: 200}}]\n"
                       "---\n"
                       "apiVersion: networking.istio.io/v1\n"
                       "kind: VirtualService\n"
                       "metadata: {name: b}\n"
                       "spec:\n"
                       "  hosts: [example.com]\n"
                       "  gateways: [gw, gw-alt]\n"
                       "  http: [{match: [{uri: {prefix: /b}}], "
                       "directResponse: {status: 200}}]\n";
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = analyze_text(yaml, &d);
    assert_int_equal(d.count, 0);
    weir_diags_clear(&d);
    weir_config_free(cfg);
}

static void test_mtls_needs_mesh_workload(void **state)
{
    /* DISABLE toward a STRICT namespace is fine for an endpoint with no sidecar (no tlsMode
     * label), and toward a sidecar in a namespace without PeerAuthentication (PERMISSIVE). */
    const char *yaml = "apiVersion: networking.istio.io/v1\n"
                       "kind: ServiceEntry\n"
                       "metadata: {name: legacy}\n"
                       "spec:\n"
                       "  hosts: [legacy.default.svc.cluster.local]\n"
                       "  location: MESH_INTERNAL\n"
                       "  resolution: STATIC\n"
                       "  ports: [{number: 80, name: http, protocol: HTTP}]\n"
                       "  endpoints: [{address: 10.0.0.1}]\n"
                       "---\n"
                       "apiVersion: networking.istio.io/v1\n"
                       "kind: ServiceEntry\n"
                       "metadata: {name: web, namespace: other}\n"
                       "spec:\n"
                       "  hosts: [web]\n"
                       "  location: MESH_INTERNAL\n"
                       "  resolution: STATIC\n"
                       "  ports: [{number: 80, name: http, protocol: HTTP}]\n"
                       "  endpoints: [{address: 10.0.0.2, labels: "
                       "{security.istio.io/tlsMode: istio}}]\n"
                       "---\n"
                       "apiVersion: security.istio.io/v1\n"
                       "kind: PeerAuthentication\n"
                       "metadata: {name: default}\n"
                       "spec: {mtls: {mode: STRICT}}\n"
                       "---\n"
                       "apiVersion: networking.istio.io/v1\n"
                       "kind: DestinationRule\n"
                       "metadata: {name: legacy}\n"
                       "spec: {host: legacy, trafficPolicy: {tls: {mode: DISABLE}}}\n"
                       "---\n"
                       "apiVersion: networking.istio.io/v1\n"
                       "kind: DestinationRule\n"
                       "metadata: {name: web}\n"
                       "spec: {host: web.other.svc.cluster.local, "
                       "trafficPolicy: {tls: {mode: DISABLE}}}\n";
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = analyze_text(yaml, &d);
    if (d.count != 0) {
        char *p = printed(&d);
        fail_msg("want no findings, got\n%s", p);
    }
    weir_diags_clear(&d);
    weir_config_free(cfg);
}

/* ---- diagnostics and JSON ------------------------------------------------------------------- */

static void test_diag_print_codes_and_hints(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_diags_add(&d, WEIR_DIAG_ERROR, "a.yaml", 3, 4, "plain %d", 1);
    weir_diags_add_coded(&d, WEIR_DIAG_WARNING, "IST0130", "a.yaml", 1, 2, "do %s", "x%sy", "z");
    weir_diags_add_coded(&d, WEIR_DIAG_ERROR, "WEIR0001", "b.yaml", 0, 0, NULL, "no place");
    weir_diags_add_coded(&d, WEIR_DIAG_WARNING, NULL, NULL, 0, 0, "h", "nowhere");
    char *p = printed(&d);
    assert_string_equal(p, "a.yaml:3:4: error: plain 1\n"
                           "a.yaml:1:2: warning: IST0130: xzy (hint: do %s)\n"
                           "b.yaml: error: WEIR0001: no place\n"
                           "weir: warning: nowhere (hint: h)\n");
    free(p);
    assert_int_equal(d.errors, 2);
    /* Sorted by file order, then place; stable. */
    const char *files[] = {"b.yaml", "a.yaml"};
    weir_diags_sort(&d, 0, files, 2);
    assert_string_equal(d.items[0].file, "b.yaml");
    assert_string_equal(d.items[1].msg, "xzy");
    assert_string_equal(d.items[2].msg, "plain 1");
    assert_string_equal(d.items[3].file, "");
    weir_diags_clear(&d);
    assert_int_equal(d.count, 0);
    assert_int_equal(d.errors, 0);
}

static void test_edit_distance(void **state)
{
    assert_int_equal(weir_diag_edit_distance("subset", "subset"), 0);
    assert_int_equal(weir_diag_edit_distance("V1", "v1"), 0);
    assert_int_equal(weir_diag_edit_distance("verison", "version"), 2);
    assert_true(weir_diag_is_near("htpd", "httpd"));
    assert_false(weir_diag_is_near("canary", "v1"));
    assert_false(weir_diag_is_near("ab", "cd"));
}

static void test_json_golden(void **state)
{
    assert_int_equal(chdir(ANALYZE_DATA), 0);
    const char *paths[] = {"json_shape.yaml"};
    weir_diags_t d = WEIR_DIAGS_INIT;
    /* What `weir validate --output json` renders: the loader's diagnostics, then the
     * analyzer's, in one list. */
    weir_config_t *cfg = analyze_paths(paths, 1, &d, &d);
    char *json = weir_analyze_to_json(&d);
    weir_buf_t got = WEIR_BUF_INIT;
    weir_buf_appendf(&got, "%s\n", json);
    check_golden("json_shape.json", got.base);

    json_error_t err;
    json_t *doc = json_loads(json, 0, &err);
    assert_non_null(doc);
    json_t *findings = json_object_get(doc, "findings");
    assert_true(json_is_array(findings));
    assert_int_equal(json_array_size(findings), d.count);
    static const char *const keys[] = {"level",  "code",    "file", "line",
                                       "column", "message", "hint"};
    for (size_t i = 0; i < json_array_size(findings); i++) {
        json_t *f = json_array_get(findings, i);
        assert_int_equal(json_object_size(f), 7);
        for (size_t k = 0; k < 7; k++)
            assert_non_null(json_object_get(f, keys[k]));
        assert_string_equal(json_string_value(json_object_get(f, "message")), d.items[i].msg);
    }
    json_t *loader = json_array_get(findings, 0), *finding = json_array_get(findings, 1);
    assert_true(json_is_null(json_object_get(loader, "code")));
    assert_true(json_is_null(json_object_get(loader, "hint")));
    assert_string_equal(json_string_value(json_object_get(finding, "code")), "IST0130");
    assert_int_equal(json_integer_value(json_object_get(finding, "line")), 30);
    assert_int_equal(json_integer_value(json_object_get(finding, "column")), 5);
    json_t *counts = json_object_get(doc, "counts");
    assert_int_equal(json_integer_value(json_object_get(counts, "errors")), 0);
    assert_int_equal(json_integer_value(json_object_get(counts, "warnings")), 2);
    json_decref(doc);
    weir_buf_free(&got);
    free(json);
    weir_diags_clear(&d);
    weir_config_free(cfg);
}

static void test_json_no_place_and_errors(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_diags_add(&d, WEIR_DIAG_ERROR, "missing.yaml", 0, 0, "cannot read: %s", "gone");
    weir_diags_add(&d, WEIR_DIAG_WARNING, "bad\xff.yaml", 1, 1, "odd name");
    char *json = weir_analyze_to_json(&d);
    json_t *doc = json_loads(json, 0, NULL);
    assert_non_null(doc);
    json_t *f = json_array_get(json_object_get(doc, "findings"), 0);
    assert_string_equal(json_string_value(json_object_get(f, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(f, "file")), "missing.yaml");
    assert_true(json_is_null(json_object_get(f, "line")));
    assert_true(json_is_null(json_object_get(f, "column")));
    f = json_array_get(json_object_get(doc, "findings"), 1);
    assert_string_equal(json_string_value(json_object_get(f, "file")), "bad?.yaml");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "counts"), "errors")),
                     1);
    json_decref(doc);
    free(json);
    weir_diags_clear(&d);
}

/* ---- main ----------------------------------------------------------------------------------- */

static const char *const cases[] = {
    "ist0101_hosts",
    "ist0109_mesh_conflict",
    "ist0113_mtls",
    "ist0127_selectors",
    "ist0130_unreachable",
    "ist0131_ineffective",
    "ist0132_gateway_hosts",
    "ist0145_gateways",
    "weir0001_subsets",
    "weir0002_protocol",
    "json_shape",
};

int main(void)
{
    enum { N_CASES = sizeof(cases) / sizeof(cases[0]) };
    static char names[2 * N_CASES][64];
    struct CMUnitTest tests[2 * N_CASES + 16];
    size_t n = 0;
    for (size_t i = 0; i < N_CASES; i++) {
        snprintf(names[n], sizeof(names[n]), "golden %s", cases[i]);
        tests[n] = (struct CMUnitTest){names[n], test_golden, NULL, NULL, (void *)cases[i]};
        n++;
    }
    for (size_t i = 0; i + 1 < N_CASES; i++) { /* json_shape has its own test */
        snprintf(names[n], sizeof(names[n]), "codes %s", cases[i]);
        tests[n] = (struct CMUnitTest){names[n], test_codes, NULL, NULL, (void *)cases[i]};
        n++;
    }
    const struct CMUnitTest rest[] = {
        cmocka_unit_test(test_clean_deploy_local),
        cmocka_unit_test(test_clean_seed),
        cmocka_unit_test(test_rules_not_covered),
        cmocka_unit_test(test_rules_covered),
        cmocka_unit_test(test_no_conflict_across_scopes),
        cmocka_unit_test(test_catch_all_merged_only_where_shared),
        cmocka_unit_test(test_mtls_needs_mesh_workload),
        cmocka_unit_test(test_diag_print_codes_and_hints),
        cmocka_unit_test(test_edit_distance),
        cmocka_unit_test(test_json_golden),
        cmocka_unit_test(test_json_no_place_and_errors),
    };
    for (size_t i = 0; i < sizeof(rest) / sizeof(rest[0]); i++)
        tests[n++] = rest[i];
    return _cmocka_run_group_tests("analyze", tests, n, NULL, NULL);
}
