/* tests/unit/test_config.c: Istio resources from YAML, their validation and diagnostics.
 *
 * Golden cases: tests/data/config/<case>.yaml (or the directory <case>/) is loaded from
 * tests/data/config as the working directory, and weir_diags_print's output must equal
 * <case>.err byte for byte. The load must fail exactly when the golden file holds an error.
 * WEIR_UPDATE_GOLDEN=1 rewrites the .err files from the current output (review the diff). */
#include <setjmp.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/mem.h"
#include "support.h"

#define CONFIG_DATA WEIR_TEST_DATA "/config"

static size_t count_level(const weir_diags_t *d, weir_diag_level_t level)
{
    size_t n = 0;
    for (size_t i = 0; i < d->count; i++)
        n += d->items[i].level == level;
    return n;
}

/* ---- golden cases --------------------------------------------------------------------------- */

static void test_golden(void **state)
{
    const char *name = *state;
    assert_int_equal(chdir(CONFIG_DATA), 0);
    char path[256], golden[256];
    struct stat st;
    FMT(path, "%s", name);
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        FMT(path, "%s.yaml", name);
    FMT(golden, "%s.err", name);

    weir_diags_t d = WEIR_DIAGS_INIT;
    const char *paths[] = {path};
    weir_config_t *cfg = weir_config_load(paths, 1, &d);
    if (cfg != NULL) /* what `weir validate` adds: fields the proxy does not act on yet */
        weir_config_warn_unapplied(cfg, &d);
    char *got = printed(&d);
    if (getenv("WEIR_UPDATE_GOLDEN"))
        write_file(golden, got);
    char *want = read_file(golden);
    if (want == NULL)
        fail_msg("missing golden file %s/%s", CONFIG_DATA, golden);
    if (strcmp(got, want) != 0)
        fail_msg("%s: diagnostics differ\n--- want\n%s--- got\n%s", name, want, got);
    bool expect_errors = strstr(want, ": error: ") != NULL;
    assert_int_equal(d.errors > 0, expect_errors);
    assert_int_equal(cfg == NULL, expect_errors);
    weir_config_free(cfg);
    free(got);
    free(want);
    weir_diags_clear(&d);
}

/* ---- the seed -------------------------------------------------------------------------------- */

static void check_seed_resources(const weir_config_t *cfg)
{
    assert_int_equal(cfg->n_gateways, 1);
    const weir_gateway_t *g = &cfg->gateways[0];
    assert_string_equal(g->name, "httpd-gateway");
    assert_string_equal(g->namespace, "default");
    assert_string_equal(g->qualified_name, "default/httpd-gateway");
    assert_true(g->has_selector);
    assert_int_equal(g->selector.count, 1);
    assert_string_equal(weir_labels_get(&g->selector, "istio"), "ingressgateway");
    assert_int_equal(g->n_servers, 1);
    const weir_gateway_server_t *s = &g->servers[0];
    assert_int_equal(s->port, 80);
    assert_string_equal(s->port_name, "http");
    assert_string_equal(s->protocol, "HTTP");
    assert_int_equal(s->n_hosts, 1);
    assert_string_equal(s->hosts[0], "*");
    assert_false(s->has_tls);
    assert_null(s->bind);
    assert_int_equal(s->place.line, 10);
    assert_int_equal(s->place.col, 5);

    assert_int_equal(cfg->n_virtual_services, 1);
    const weir_virtual_service_t *vs = &cfg->virtual_services[0];
    assert_string_equal(vs->name, "httpd-virtualservice");
    assert_int_equal(vs->n_hosts, 1);
    assert_string_equal(vs->hosts[0], "*");
    assert_int_equal(vs->n_gateways, 1);
    assert_string_equal(vs->gateways[0], "default/httpd-gateway");
    assert_int_equal(vs->n_http, 2);
    for (size_t i = 0; i < 2; i++) {
        const weir_http_route_t *r = &vs->http[i];
        assert_null(r->name);
        assert_int_equal(r->n_matches, 1);
        assert_int_equal(r->matches[0].uri.kind, WEIR_MATCH_PREFIX);
        assert_string_equal(r->matches[0].uri.value, i == 0 ? "/v1" : "/v2");
        assert_int_equal(r->matches[0].uri.value_len, 3);
        assert_int_equal(r->matches[0].method.kind, WEIR_MATCH_NONE);
        assert_null(r->matches[0].gateways);
        assert_true(r->has_rewrite);
        assert_string_equal(r->rewrite.uri, "/");
        assert_null(r->rewrite.authority);
        assert_int_equal(r->action, WEIR_ACTION_ROUTE);
        assert_int_equal(r->n_route, 1);
        const weir_route_destination_t *rd = &r->route[0];
        assert_string_equal(rd->destination.host, "web-service.default.svc.cluster.local");
        assert_string_equal(rd->destination.subset, i == 0 ? "v1" : "v2");
        assert_int_equal(rd->destination.port, 0);
        assert_false(rd->weight_set);
        assert_int_equal(rd->weight, 0);
    }
    assert_int_equal(vs->http[0].place.line, 12);
    assert_int_equal(vs->http[0].place.col, 5);
    assert_int_equal(vs->http[1].matches[0].place.line, 22);
    assert_int_equal(vs->http[1].matches[0].place.col, 7);
    assert_int_equal(vs->http[1].route[0].place.line, 27);

    assert_int_equal(cfg->n_destination_rules, 1);
    const weir_destination_rule_t *dr = &cfg->destination_rules[0];
    assert_string_equal(dr->host, "web-service.default.svc.cluster.local");
    assert_false(dr->policy.has_lb);
    assert_int_equal(dr->n_subsets, 2);
    assert_string_equal(dr->subsets[1].name, "v2");
    assert_string_equal(weir_labels_get(&dr->subsets[1].labels, "version"), "v2");
    assert_false(dr->subsets[1].policy.has_lb);
    assert_ptr_equal(weir_config_find_destination_rule(cfg, dr->host), dr);
    assert_ptr_equal(weir_destination_rule_subset(dr, "v1"), &dr->subsets[0]);
    assert_null(weir_destination_rule_subset(dr, "v3"));
    assert_null(weir_config_find_destination_rule(cfg, "web-service"));
}

static void test_seed_shared(void **state)
{
    struct stat st;
    if (stat(SHARED_SEED, &st) != 0)
        skip();
    weir_diags_t d = WEIR_DIAGS_INIT;
    const char *paths[] = {SHARED_SEED};
    weir_config_t *cfg = weir_config_load(paths, 1, &d);
    char *out = printed(&d);
    assert_non_null(cfg);
    assert_int_equal(d.errors, 0);
    /* Kubernetes Services are not read, so an undeclared host is no loader finding: the
     * analyzer's IST0101 reports it only when the config declares ServiceEntries. */
    assert_int_equal(d.count, 0);
    assert_string_equal(out, "");
    check_seed_resources(cfg);
    assert_int_equal(cfg->n_service_entries, 0);
    assert_int_equal(cfg->n_files, 6); /* Pods and the Service are read, then skipped */
    free(out);
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

static void test_seed_local(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    const char *paths[] = {CONFIG_DATA "/seed-local"};
    weir_config_t *cfg = weir_config_load(paths, 1, &d);
    char *out = printed(&d);
    assert_string_equal(out, "");
    assert_non_null(cfg);
    check_seed_resources(cfg);

    assert_int_equal(cfg->n_files, 4);
    const char *order[] = {"destinationrule.yaml", "gateway.yaml", "registry.yaml",
                           "virtualservice.yaml"};
    for (size_t i = 0; i < 4; i++) {
        assert_non_null(strstr(cfg->files[i], order[i]));
        assert_non_null(strstr(cfg->files[i], "/config/seed-local/"));
    }
    /* Places point into cfg->files, not at copies. */
    assert_ptr_equal(cfg->destination_rules[0].place.file, cfg->files[0]);
    assert_ptr_equal(cfg->gateways[0].place.file, cfg->files[1]);
    assert_ptr_equal(cfg->virtual_services[0].http[1].route[0].place.file, cfg->files[3]);
    assert_int_equal(cfg->gateways[0].place.line, 1);

    assert_int_equal(cfg->n_service_entries, 1);
    const weir_service_entry_t *se = &cfg->service_entries[0];
    assert_string_equal(se->name, "web-service");
    assert_int_equal(se->n_hosts, 1);
    assert_string_equal(se->hosts[0], "web-service.default.svc.cluster.local");
    assert_int_equal(se->location, WEIR_LOCATION_MESH_INTERNAL);
    assert_int_equal(se->resolution, WEIR_RESOLUTION_STATIC);
    assert_int_equal(se->n_ports, 1);
    assert_int_equal(se->ports[0].number, 80);
    assert_int_equal(se->ports[0].target_port, 80);
    assert_string_equal(se->ports[0].name, "http");
    assert_string_equal(se->ports[0].protocol, "HTTP");
    assert_true(se->has_workload_selector);
    assert_int_equal(se->n_endpoints, 0);
    assert_ptr_equal(weir_config_find_service(cfg, "web-service.default.svc.cluster.local"), se);
    assert_null(weir_config_find_service(cfg, "web-service"));

    assert_int_equal(cfg->n_workload_entries, 2);
    const weir_destination_rule_t *dr = &cfg->destination_rules[0];
    for (size_t i = 0; i < 2; i++) {
        const weir_workload_entry_t *we = &cfg->workload_entries[i];
        assert_string_equal(we->name, i == 0 ? "httpd-v1" : "httpd-v2");
        assert_string_equal(we->namespace, "default");
        assert_string_equal(we->address, i == 0 ? "10.244.0.11" : "10.244.0.12");
        assert_null(we->service_account);
        assert_true(weir_labels_match(&se->workload_selector, &we->labels));
        assert_int_equal(weir_labels_match(&dr->subsets[0].labels, &we->labels), i == 0);
        assert_int_equal(weir_labels_match(&dr->subsets[1].labels, &we->labels), i == 1);
    }
    free(out);
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

/* ---- files and directories ------------------------------------------------------------------ */

static void path_join(char *out, size_t size, const char *dir, const char *name)
{
    assert_true((size_t)snprintf(out, size, "%s/%s", dir, name) < size);
}

static void copy_into(const char *dir, const char *name)
{
    char from[512], to[512];
    path_join(from, sizeof(from), CONFIG_DATA "/seed-local", name);
    path_join(to, sizeof(to), dir, name);
    char *text = read_file(from);
    assert_non_null(text);
    write_file(to, text);
    free(text);
}

static char tmp_root[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Removes the test's scratch directory even when an assertion ended the test early. */
static int remove_tmp_root(void **state)
{
    if (tmp_root[0])
        nftw(tmp_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    tmp_root[0] = '\0';
    return 0;
}

/* A Kubernetes ConfigMap volume: the files live in a timestamped directory, `..data` links to
 * it, and each key is a symlink through `..data` at the top level. */
static void test_configmap_mount(void **state)
{
    FMT(tmp_root, "/tmp/weir-test-config-XXXXXX");
    assert_non_null(mkdtemp(tmp_root));
    const char *root = tmp_root;
    const char *ts = "..2024_05_01_10_00_00.123456789";
    const char *keys[] = {"destinationrule.yaml", "gateway.yaml", "registry.yaml",
                          "virtualservice.yaml"};
    char p[512], q[512];
    path_join(p, sizeof(p), root, ts);
    assert_int_equal(mkdir(p, 0700), 0);
    for (size_t i = 0; i < 4; i++)
        copy_into(p, keys[i]);
    path_join(p, sizeof(p), root, "..data");
    assert_int_equal(symlink(ts, p), 0);
    for (size_t i = 0; i < 4; i++) {
        FMT(q, "..data/%s", keys[i]);
        path_join(p, sizeof(p), root, keys[i]);
        assert_int_equal(symlink(q, p), 0);
    }
    /* Not read: hidden, not YAML, a directory named like YAML, a subdirectory. */
    path_join(p, sizeof(p), root, ".hidden.yaml");
    write_file(p, "not: [valid\n");
    path_join(p, sizeof(p), root, "README.txt");
    write_file(p, "not: [valid\n");
    path_join(p, sizeof(p), root, "dir.yaml");
    assert_int_equal(mkdir(p, 0700), 0);
    path_join(p, sizeof(p), root, "dir.yaml/x.yaml");
    write_file(p, "not: [valid\n");

    weir_diags_t d = WEIR_DIAGS_INIT;
    char with_slash[512];
    FMT(with_slash, "%s/", root);
    const char *paths[] = {with_slash};
    weir_config_t *cfg = weir_config_load(paths, 1, &d);
    char *out = printed(&d);
    assert_string_equal(out, "");
    assert_non_null(cfg);
    check_seed_resources(cfg);
    assert_int_equal(cfg->n_files, 4);
    FMT(p, "%s/gateway.yaml", root);
    assert_string_equal(cfg->files[1], p); /* the path given, through the symlink */
    free(out);
    weir_config_free(cfg);
    weir_diags_clear(&d);

    /* A directory with nothing to read is a warning. */
    path_join(p, sizeof(p), root, "dir.yaml/x.yaml");
    assert_int_equal(unlink(p), 0);
    path_join(p, sizeof(p), root, "dir.yaml");
    paths[0] = p;
    cfg = weir_config_load(paths, 1, &d);
    assert_non_null(cfg);
    assert_int_equal(d.count, 1);
    assert_int_equal(d.items[0].level, WEIR_DIAG_WARNING);
    assert_int_equal(d.items[0].line, 0);
    assert_string_equal(d.items[0].msg, "no *.yaml or *.yml files here");
    weir_config_free(cfg);
    weir_diags_clear(&d);

    /* A dangling key is an error without a line. */
    path_join(q, sizeof(q), p, "gone.yml");
    assert_int_equal(symlink("../..data/gone.yml", q), 0);
    assert_null(weir_config_load(paths, 1, &d));
    assert_int_equal(d.count, 1);
    assert_int_equal(d.errors, 1);
    assert_int_equal(d.items[0].line, 0);
    assert_string_equal(d.items[0].file, q);
    weir_diags_clear(&d);
}

static void test_paths_and_duplicates_across_files(void **state)
{
    assert_int_equal(chdir(CONFIG_DATA), 0);
    weir_diags_t d = WEIR_DIAGS_INIT;
    const char *paths[] = {"seed-local/gateway.yaml", "seed-local/virtualservice.yaml",
                           "seed-local/gateway.yaml"};
    assert_null(weir_config_load(paths, 3, &d));
    char *out = printed(&d);
    assert_string_equal(out, "seed-local/gateway.yaml:4:9: error: metadata.name: Gateway "
                             "\"default/httpd-gateway\" is defined twice (first at "
                             "seed-local/gateway.yaml:1:1)\n"
                             "seed-local/virtualservice.yaml:20:17: error: "
                             "http[0].route[0].destination.subset: subset \"v1\" is not defined "
                             "by any DestinationRule for host "
                             "\"web-service.default.svc.cluster.local\"\n"
                             "seed-local/virtualservice.yaml:29:17: error: "
                             "http[1].route[0].destination.subset: subset \"v2\" is not defined "
                             "by any DestinationRule for host "
                             "\"web-service.default.svc.cluster.local\"\n");
    free(out);
    weir_diags_clear(&d);

    /* Errors already in diags do not fail a good load: only new ones count. */
    weir_diags_add(&d, WEIR_DIAG_ERROR, NULL, 0, 0, "earlier");
    const char *good[] = {"seed-local"};
    weir_config_t *cfg = weir_config_load(good, 1, &d);
    assert_non_null(cfg);
    assert_int_equal(d.count, 1);
    weir_config_free(cfg);
    weir_diags_clear(&d);

    /* No paths at all: an empty config. */
    cfg = weir_config_load(NULL, 0, &d);
    assert_non_null(cfg);
    assert_int_equal(cfg->n_files, 0);
    weir_config_free(cfg);
    weir_config_free(NULL);
}

/* ---- resources in detail -------------------------------------------------------------------- */

static weir_config_t *load_ok(const char *text, weir_diags_t *d)
{
    weir_config_t *cfg = weir_config_load_string("mem.yaml", text, d);
    if (cfg == NULL) {
        char *out = printed(d);
        fail_msg("load failed:\n%s", out);
    }
    return cfg;
}

static void test_kinds_and_versions(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg =
        load_ok("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: []}\n"
                "---\n"
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n"
                "---\n"
                "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\n"
                "---\n"
                "apiVersion: networking.istio.io/v1alpha3\nkind: WorkloadEntry\n"
                "metadata: {name: a}\nspec: {address: 10.0.0.1}\n"
                "---\n"
                "apiVersion: networking.istio.io/v1beta1\nkind: WorkloadEntry\n"
                "metadata: {name: b, namespace: prod}\nspec: {address: \"fd00::1\"}\n"
                "---\n"
                "apiVersion: v1\nkind: List\nitems:\n"
                "- apiVersion: networking.istio.io/v1\n  kind: WorkloadEntry\n"
                "  metadata: {name: c}\n  spec: {address: 10.0.0.3, serviceAccount: sa,\n"
                "          ports: {http: 8080, grpc: 9090}}\n"
                "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: cm}\n"
                "---\n"
                "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t}\n",
                &d);
    char *out = printed(&d);
    assert_string_equal(out, "mem.yaml:38:7: warning: Telemetry is not applied by weir yet; "
                             "ignored\n");
    assert_int_equal(cfg->n_gateways, 0);
    assert_int_equal(cfg->n_workload_entries, 3);
    assert_string_equal(cfg->workload_entries[0].namespace, "default");
    assert_string_equal(cfg->workload_entries[1].namespace, "prod");
    assert_string_equal(cfg->workload_entries[1].address, "fd00::1");
    const weir_workload_entry_t *c = &cfg->workload_entries[2];
    assert_string_equal(c->name, "c");
    assert_string_equal(c->service_account, "sa");
    assert_int_equal(c->n_ports, 2);
    assert_string_equal(c->ports[1].name, "grpc");
    assert_int_equal(c->ports[1].number, 9090);
    free(out);
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

static const char *const vs_yaml =
    "apiVersion: networking.istio.io/v1\n"
    "kind: Gateway\n"
    "metadata: {name: public, namespace: edge}\n"
    "spec:\n"
    "  servers: [{port: {number: 80, name: http, protocol: http}, hosts: [\"*\"]}]\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: Gateway\n"
    "metadata: {name: local, namespace: shop}\n"
    "spec:\n"
    "  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"shop/*\"]}]\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: VirtualService\n"
    "metadata: {name: web, namespace: shop}\n"
    "spec:\n"
    "  hosts: [web, web.example.com, \"*.example.org\"]\n"
    "  gateways: [mesh, local, edge/public]\n"
    "  http:\n"
    "  - name: api\n"
    "    match:\n"
    "    - name: m0\n"
    "      uri: {regex: \"/api/v[0-9]+\"}\n"
    "      method: {exact: GET}\n"
    "      authority: {prefix: web}\n"
    "      scheme: {exact: https}\n"
    "      headers: {x-user: {exact: jason}, x-ok: {}, x-any: {regex: \"*\"}, x-n: }\n"
    "      withoutHeaders: {x-debug: {prefix: \"1\"}}\n"
    "      queryParams: {v: {exact: \"\"}, w: {regex: \"[a-z]+\"}}\n"
    "      port: 8080\n"
    "      gateways: [local]\n"
    "    - uri: {prefix: /API}\n"
    "      ignoreUriCase: true\n"
    "    rewrite: {uri: /v2, authority: api.internal}\n"
    "    route:\n"
    "    - destination: {host: api, subset: v1, port: {number: 8080}}\n"
    "      weight: 80\n"
    "    - destination: {host: api.other.svc.cluster.local}\n"
    "      weight: 20\n"
    "  - redirect: {uri: /new, authority: new.example.com}\n"
    "  - redirect: {scheme: https, derivePort: FROM_PROTOCOL_DEFAULT, redirectCode: 0}\n"
    "  - redirect: {port: 8443, redirectCode: 308}\n"
    "  - directResponse: {status: 503, body: {string: \"down\"}}\n"
    "  - directResponse: {status: 200, body: {bytes: \"aGVs\\nbG8A\"}}\n"
    "  - directResponse: {status: 204}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: VirtualService\n"
    "metadata: {name: plain}\n"
    "spec:\n"
    "  hosts: [plain]\n"
    "  gateways: []\n"
    "  http: [{route: [{destination: {host: plain}, weight: 0}]}]\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: DestinationRule\n"
    "metadata: {name: api, namespace: shop}\n"
    "spec: {host: api, subsets: [{name: v1}]}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: ServiceEntry\n"
    "metadata: {name: all}\n"
    "spec:\n"
    "  hosts: [api.shop.svc.cluster.local, api.other.svc.cluster.local, plain]\n"
    "  ports: [{number: 80, name: http}]\n";

static void test_virtual_service(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_ok(vs_yaml, &d);
    assert_int_equal(d.count, 0);
    assert_int_equal(cfg->n_virtual_services, 2);
    const weir_virtual_service_t *vs = &cfg->virtual_services[0];
    assert_int_equal(vs->n_hosts, 3);
    assert_string_equal(vs->hosts[0], "web.shop.svc.cluster.local");
    assert_string_equal(vs->hosts[1], "web.example.com");
    assert_string_equal(vs->hosts[2], "*.example.org");
    assert_int_equal(vs->n_gateways, 3);
    assert_string_equal(vs->gateways[0], "mesh");
    assert_string_equal(vs->gateways[1], "shop/local");
    assert_string_equal(vs->gateways[2], "edge/public");
    assert_int_equal(vs->n_http, 7);

    const weir_http_route_t *r = &vs->http[0];
    assert_string_equal(r->name, "api");
    assert_int_equal(r->n_matches, 2);
    const weir_http_match_t *m = &r->matches[0];
    assert_string_equal(m->name, "m0");
    assert_int_equal(m->uri.kind, WEIR_MATCH_REGEX);
    assert_non_null(m->uri.re);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(m->uri.re, NULL);
    assert_true(pcre2_match(m->uri.re, (PCRE2_SPTR) "/api/v12", 8, 0, 0, md, NULL) >= 0);
    /* Full match, as RE2 in Envoy: neither a longer path nor a later start matches. */
    assert_true(pcre2_match(m->uri.re, (PCRE2_SPTR) "/api/v1/x", 9, 0, 0, md, NULL) < 0);
    assert_true(pcre2_match(m->uri.re, (PCRE2_SPTR) "/x/api/v1", 9, 0, 0, md, NULL) < 0);
    pcre2_match_data_free(md);
    assert_int_equal(m->method.kind, WEIR_MATCH_EXACT);
    assert_string_equal(m->method.value, "GET");
    assert_null(m->method.re);
    assert_int_equal(m->authority.kind, WEIR_MATCH_PREFIX);
    assert_int_equal(m->scheme.kind, WEIR_MATCH_EXACT);
    assert_int_equal(m->n_headers, 4);
    assert_string_equal(m->headers[0].name, "x-user");
    assert_int_equal(m->headers[0].match.kind, WEIR_MATCH_EXACT);
    assert_string_equal(m->headers[0].match.value, "jason");
    assert_int_equal(m->headers[1].match.kind, WEIR_MATCH_NONE); /* {}: present */
    assert_int_equal(m->headers[2].match.kind, WEIR_MATCH_NONE); /* regex "*": present */
    assert_int_equal(m->headers[3].match.kind, WEIR_MATCH_NONE); /* null: present */
    assert_int_equal(m->n_without_headers, 1);
    assert_int_equal(m->without_headers[0].match.kind, WEIR_MATCH_PREFIX);
    assert_int_equal(m->n_query_params, 2);
    assert_int_equal(m->query_params[0].match.kind, WEIR_MATCH_EXACT);
    assert_string_equal(m->query_params[0].match.value, "");
    assert_non_null(m->query_params[1].match.re);
    assert_int_equal(m->port, 8080);
    assert_int_equal(m->n_gateways, 1);
    assert_string_equal(m->gateways[0], "shop/local");
    assert_false(m->ignore_uri_case);
    assert_true(r->matches[1].ignore_uri_case);
    assert_null(r->matches[1].gateways);
    assert_int_equal(r->matches[1].n_headers, 0);
    assert_true(r->has_rewrite);
    assert_string_equal(r->rewrite.uri, "/v2");
    assert_string_equal(r->rewrite.authority, "api.internal");
    assert_int_equal(r->action, WEIR_ACTION_ROUTE);
    assert_int_equal(r->n_route, 2);
    assert_string_equal(r->route[0].destination.host, "api.shop.svc.cluster.local");
    assert_string_equal(r->route[0].destination.subset, "v1");
    assert_int_equal(r->route[0].destination.port, 8080);
    assert_int_equal(r->route[0].weight, 80);
    assert_true(r->route[0].weight_set);
    assert_string_equal(r->route[1].destination.host, "api.other.svc.cluster.local");
    assert_null(r->route[1].destination.subset);
    assert_int_equal(r->route[1].weight, 20);

    r = &vs->http[1];
    assert_int_equal(r->action, WEIR_ACTION_REDIRECT);
    assert_int_equal(r->n_matches, 0);
    assert_false(r->has_rewrite);
    assert_string_equal(r->redirect.uri, "/new");
    assert_string_equal(r->redirect.authority, "new.example.com");
    assert_null(r->redirect.scheme);
    assert_int_equal(r->redirect.redirect_code, 301);
    assert_int_equal(r->redirect.derive_port, WEIR_DERIVE_PORT_NONE);
    r = &vs->http[2];
    assert_string_equal(r->redirect.scheme, "https");
    assert_int_equal(r->redirect.derive_port, WEIR_DERIVE_PORT_FROM_PROTOCOL_DEFAULT);
    assert_int_equal(r->redirect.redirect_code, 301);
    r = &vs->http[3];
    assert_int_equal(r->redirect.port, 8443);
    assert_int_equal(r->redirect.redirect_code, 308);

    r = &vs->http[4];
    assert_int_equal(r->action, WEIR_ACTION_DIRECT_RESPONSE);
    assert_int_equal(r->direct.status, 503);
    assert_int_equal(r->direct.body_len, 4);
    assert_memory_equal(r->direct.body, "down", 4);
    r = &vs->http[5];
    assert_int_equal(r->direct.body_len, 6);
    assert_memory_equal(r->direct.body, "hello\0", 6);
    r = &vs->http[6];
    assert_int_equal(r->direct.status, 204);
    assert_null(r->direct.body);

    /* gateways omitted or empty: the mesh only. One destination may have weight 0. */
    vs = &cfg->virtual_services[1];
    assert_string_equal(vs->namespace, "default");
    assert_int_equal(vs->n_gateways, 1);
    assert_string_equal(vs->gateways[0], "mesh");
    assert_int_equal(vs->http[0].route[0].weight, 0);
    assert_true(vs->http[0].route[0].weight_set);

    assert_int_equal(cfg->gateways[0].servers[0].n_hosts, 1);
    assert_string_equal(cfg->gateways[0].servers[0].protocol, "HTTP");
    assert_string_equal(cfg->gateways[1].servers[0].hosts[0], "*");
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

static void test_gateway(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_ok(
        "apiVersion: networking.istio.io/v1\n"
        "kind: Gateway\n"
        "metadata: {name: gw}\n"
        "spec:\n"
        "  servers:\n"
        "  - port: {number: 443, name: https, protocol: https}\n"
        "    hosts: [\"./web.example.com\", \"*/*.example.org\", \"prod/api.example.net\"]\n"
        "    bind: 10.0.0.1\n"
        "    name: secure\n"
        "    tls: {mode: SIMPLE, credentialName: web-cert}\n"
        "  - port: {number: 80, name: http, protocol: HTTP}\n"
        "    hosts: [\"*\"]\n"
        "    tls: {httpsRedirect: true}\n"
        "  - port: {number: 15443, name: tls, protocol: TLS}\n"
        "    hosts: [\"*.local\"]\n"
        "    tls: {}\n",
        &d);
    char *out = printed(&d);
    assert_string_equal(out, "");
    const weir_gateway_t *g = &cfg->gateways[0];
    assert_false(g->has_selector);
    assert_int_equal(g->n_servers, 3);
    const weir_gateway_server_t *s = &g->servers[0];
    assert_string_equal(s->protocol, "HTTPS");
    assert_int_equal(s->n_hosts, 3);
    assert_string_equal(s->hosts[0], "web.example.com");
    assert_string_equal(s->hosts[1], "*.example.org");
    assert_string_equal(s->hosts[2], "api.example.net");
    assert_string_equal(s->bind, "10.0.0.1");
    assert_string_equal(s->name, "secure");
    assert_true(s->has_tls);
    assert_int_equal(s->tls_mode, WEIR_TLS_MODE_SIMPLE);
    assert_string_equal(s->credential_name, "web-cert");
    assert_false(s->https_redirect);
    s = &g->servers[1];
    assert_true(s->has_tls);
    assert_true(s->https_redirect);
    assert_int_equal(s->tls_mode, WEIR_TLS_MODE_PASSTHROUGH);
    s = &g->servers[2];
    assert_true(s->has_tls);
    assert_int_equal(s->tls_mode, WEIR_TLS_MODE_PASSTHROUGH); /* Istio's default (S5) */
    assert_null(s->credential_name);
    free(out);
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

static void test_subset_policy_merge(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_ok(
        "apiVersion: networking.istio.io/v1\n"
        "kind: DestinationRule\n"
        "metadata: {name: a}\n"
        "spec:\n"
        "  host: a\n"
        "  subsets:\n"
        "  - {name: inherit, labels: {version: v1}}\n"
        "  - {name: random, trafficPolicy: {loadBalancer: {simple: RANDOM}}}\n"
        "  - {name: hashed, trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}}\n"
        "  - {name: other-block, trafficPolicy: {connectionPool: {tcp: {maxConnections: 1}}}}\n"
        "  trafficPolicy:\n"
        "    loadBalancer: {simple: ROUND_ROBIN}\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\n"
        "kind: DestinationRule\n"
        "metadata: {name: b}\n"
        "spec:\n"
        "  host: b.example.com\n"
        "  subsets:\n"
        "  - {name: none}\n"
        "  - {name: conn, trafficPolicy: {loadBalancer: {simple: LEAST_CONN}}}\n"
        "  - {name: pass, trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}}\n"
        "  - {name: unspecified, trafficPolicy: {loadBalancer: {simple: UNSPECIFIED}}}\n",
        &d);
    assert_int_equal(d.count, 1); /* consistentHash: not applied yet */
    assert_int_equal(count_level(&d, WEIR_DIAG_WARNING), 1);
    const weir_destination_rule_t *a =
        weir_config_find_destination_rule(cfg, "a.default.svc.cluster.local");
    assert_non_null(a);
    assert_true(a->policy.has_lb);
    assert_int_equal(a->policy.lb, WEIR_LB_ROUND_ROBIN);
    const weir_subset_t *s = weir_destination_rule_subset(a, "inherit");
    assert_true(s->policy.has_lb);
    assert_int_equal(s->policy.lb, WEIR_LB_ROUND_ROBIN);
    assert_int_equal(weir_destination_rule_subset(a, "random")->policy.lb, WEIR_LB_RANDOM);
    /* A subset's loadBalancer block replaces the top level's whole: its default applies. */
    s = weir_destination_rule_subset(a, "hashed");
    assert_true(s->policy.has_lb);
    assert_int_equal(s->policy.lb, WEIR_LB_LEAST_REQUEST);
    /* Another block in the subset policy leaves the load balancer inherited. */
    assert_int_equal(weir_destination_rule_subset(a, "other-block")->policy.lb,
                     WEIR_LB_ROUND_ROBIN);

    const weir_destination_rule_t *b = weir_config_find_destination_rule(cfg, "b.example.com");
    assert_false(b->policy.has_lb);
    assert_false(weir_destination_rule_subset(b, "none")->policy.has_lb);
    assert_int_equal(weir_destination_rule_subset(b, "conn")->policy.lb, WEIR_LB_LEAST_REQUEST);
    assert_int_equal(weir_destination_rule_subset(b, "pass")->policy.lb, WEIR_LB_PASSTHROUGH);
    s = weir_destination_rule_subset(b, "unspecified");
    assert_true(s->policy.has_lb);
    assert_int_equal(s->policy.lb, WEIR_LB_LEAST_REQUEST);
    weir_config_free(cfg);
    weir_diags_clear(&d);

    assert_null(weir_config_load_string(
        "lb.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: c}\n"
        "spec: {host: c, trafficPolicy: {loadBalancer: {simple: WEIGHTED}}}\n",
        &d));
    char *out = printed(&d);
    assert_string_equal(out, "lb.yaml:4:56: error: trafficPolicy.loadBalancer.simple: must be one "
                             "of UNSPECIFIED, LEAST_REQUEST, LEAST_CONN, ROUND_ROBIN, RANDOM, "
                             "PASSTHROUGH; got \"WEIGHTED\"\n");
    free(out);
    weir_diags_clear(&d);
}

static void test_service_entry(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_ok("apiVersion: networking.istio.io/v1\n"
                                 "kind: ServiceEntry\n"
                                 "metadata: {name: ext, namespace: shop}\n"
                                 "spec:\n"
                                 "  hosts: [api.example.com, inventory]\n"
                                 "  addresses: [10.96.0.10, 10.96.1.0/24]\n"
                                 "  ports:\n"
                                 "  - {number: 443, name: https, protocol: tls, targetPort: 8443}\n"
                                 "  - {number: 80, name: http}\n"
                                 "  resolution: STATIC\n"
                                 "  endpoints:\n"
                                 "  - address: 192.0.2.10\n"
                                 "    ports: {https: 9443}\n"
                                 "    labels: {zone: a}\n"
                                 "    serviceAccount: api\n"
                                 "  - address: \"2001:db8::1\"\n"
                                 "  subjectAltNames: [spiffe://cluster.local/ns/shop/sa/legacy]\n",
                                 &d);
    assert_int_equal(d.count, 0);
    const weir_service_entry_t *se = &cfg->service_entries[0];
    assert_int_equal(se->location, WEIR_LOCATION_MESH_EXTERNAL); /* Istio's default (S6) */
    assert_int_equal(se->resolution, WEIR_RESOLUTION_STATIC);
    assert_string_equal(se->hosts[1], "inventory.shop.svc.cluster.local");
    assert_int_equal(se->n_addresses, 2);
    assert_string_equal(se->addresses[1], "10.96.1.0/24");
    assert_int_equal(se->address_ranges[0].family, AF_INET);
    assert_int_equal(se->address_ranges[0].prefix_len, 32);
    assert_int_equal(se->address_ranges[1].prefix_len, 24);
    assert_memory_equal(se->address_ranges[1].addr, "\x0a\x60\x01\x00", 4);
    assert_int_equal(se->n_subject_alt_names, 1);
    assert_string_equal(se->subject_alt_names[0], "spiffe://cluster.local/ns/shop/sa/legacy");
    assert_int_equal(se->n_ports, 2);
    assert_string_equal(se->ports[0].protocol, "TLS");
    assert_int_equal(se->ports[0].target_port, 8443);
    assert_null(se->ports[1].protocol);
    assert_int_equal(se->ports[1].target_port, 80);
    assert_false(se->has_workload_selector);
    assert_int_equal(se->n_endpoints, 2);
    const weir_workload_entry_t *ep = &se->endpoints[0];
    assert_null(ep->name);
    assert_string_equal(ep->namespace, "shop");
    assert_string_equal(ep->address, "192.0.2.10");
    assert_int_equal(ep->n_ports, 1);
    assert_string_equal(ep->ports[0].name, "https");
    assert_int_equal(ep->ports[0].number, 9443);
    assert_string_equal(weir_labels_get(&ep->labels, "zone"), "a");
    assert_string_equal(ep->service_account, "api");
    assert_int_equal(ep->place.line, 12);
    assert_string_equal(se->endpoints[1].address, "2001:db8::1");
    assert_ptr_equal(weir_config_find_service(cfg, "inventory.shop.svc.cluster.local"), se);
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

/* ---- DestinationRule client TLS ------------------------------------------------------------- */

static void test_client_tls(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_ok(
        "apiVersion: networking.istio.io/v1\n"
        "kind: DestinationRule\n"
        "metadata: {name: a}\n"
        "spec:\n"
        "  host: a.example.com\n"
        "  trafficPolicy:\n"
        "    loadBalancer: {simple: RANDOM}\n"
        "    tls:\n"
        "      mode: SIMPLE\n"
        "      caCertificates: /etc/ca.pem\n"
        "      subjectAltNames: [a.example.com, a.example.net]\n"
        "      sni: a.example.com\n"
        "  subsets:\n"
        "  - {name: inherit}\n"
        "  - {name: lb-only, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}\n"
        "  - {name: mesh, trafficPolicy: {tls: {mode: ISTIO_MUTUAL, sni: x.example.com}}}\n"
        "  - name: mutual\n"
        "    trafficPolicy:\n"
        "      tls: {mode: MUTUAL, client_certificate: /c.pem, privateKey: /k.pem,\n"
        "            insecureSkipVerify: true}\n"
        "  - {name: off, trafficPolicy: {tls: {}}}\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\n"
        "kind: DestinationRule\n"
        "metadata: {name: b}\n"
        "spec:\n"
        "  host: b.example.com\n"
        "  subsets:\n"
        "  - {name: none}\n"
        "  - {name: cred, trafficPolicy: {tls: {mode: MUTUAL, credentialName: b-cert}}}\n",
        &d);
    assert_int_equal(d.count, 0);
    const weir_destination_rule_t *a = weir_config_find_destination_rule(cfg, "a.example.com");
    const weir_client_tls_t *t = &a->policy.tls;
    assert_true(a->policy.has_tls);
    assert_int_equal(t->mode, WEIR_CLIENT_TLS_SIMPLE);
    assert_string_equal(t->ca_certificates, "/etc/ca.pem");
    assert_null(t->client_certificate);
    assert_null(t->private_key);
    assert_null(t->credential_name);
    assert_int_equal(t->n_subject_alt_names, 2);
    assert_string_equal(t->subject_alt_names[1], "a.example.net");
    assert_string_equal(t->sni, "a.example.com");
    assert_false(t->insecure_skip_verify);

    /* MergeTrafficPolicy block by block: each block the subset does not set is inherited. */
    const weir_subset_t *s = weir_destination_rule_subset(a, "inherit");
    assert_true(s->policy.has_tls);
    assert_int_equal(s->policy.tls.mode, WEIR_CLIENT_TLS_SIMPLE);
    assert_string_equal(s->policy.tls.sni, "a.example.com");
    assert_int_equal(s->policy.lb, WEIR_LB_RANDOM);
    s = weir_destination_rule_subset(a, "lb-only");
    assert_int_equal(s->policy.lb, WEIR_LB_ROUND_ROBIN);
    assert_true(s->policy.has_tls);
    assert_int_equal(s->policy.tls.mode, WEIR_CLIENT_TLS_SIMPLE);
    /* A subset's tls replaces the top level's whole: nothing of SIMPLE's leaks into it. */
    s = weir_destination_rule_subset(a, "mesh");
    assert_int_equal(s->policy.lb, WEIR_LB_RANDOM);
    assert_int_equal(s->policy.tls.mode, WEIR_CLIENT_TLS_ISTIO_MUTUAL);
    assert_string_equal(s->policy.tls.sni, "x.example.com");
    assert_null(s->policy.tls.ca_certificates);
    assert_int_equal(s->policy.tls.n_subject_alt_names, 0);
    s = weir_destination_rule_subset(a, "mutual");
    assert_int_equal(s->policy.tls.mode, WEIR_CLIENT_TLS_MUTUAL);
    assert_string_equal(s->policy.tls.client_certificate, "/c.pem");
    assert_string_equal(s->policy.tls.private_key, "/k.pem");
    assert_true(s->policy.tls.insecure_skip_verify);
    /* `tls: {}` is an explicit DISABLE, not "no tls" (which would be auto mTLS). */
    s = weir_destination_rule_subset(a, "off");
    assert_true(s->policy.has_tls);
    assert_int_equal(s->policy.tls.mode, WEIR_CLIENT_TLS_DISABLE);

    const weir_destination_rule_t *b = weir_config_find_destination_rule(cfg, "b.example.com");
    assert_false(b->policy.has_tls);
    assert_false(weir_destination_rule_subset(b, "none")->policy.has_tls);
    s = weir_destination_rule_subset(b, "cred");
    assert_true(s->policy.has_tls);
    assert_string_equal(s->policy.tls.credential_name, "b-cert");
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

/* ---- PeerAuthentication --------------------------------------------------------------------- */

/* "k=v,k=v" as labels, into the caller's items and buf (which the labels point into). */
static weir_labels_t labels_of_spec(const char *spec, weir_label_t *items, size_t cap,
                                    char *buf, size_t buf_size)
{
    weir_labels_t l = {items, 0};
    assert_true(strlen(spec) < buf_size);
    strcpy(buf, spec);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        assert_non_null(eq);
        assert_true(l.count < cap);
        *eq = '\0';
        items[l.count++] = (weir_label_t){tok, eq + 1};
    }
    return l;
}

static const char *const pa_yaml =
    /* mesh-wide STRICT; a selector in the root namespace and a later mesh-wide are ignored */
    "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
    "metadata: {name: default, namespace: istio-system}\n"
    "spec: {mtls: {mode: STRICT}}\n"
    "---\n"
    "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
    "metadata: {name: root-selector, namespace: istio-system}\n"
    "spec: {selector: {matchLabels: {app: web}}, mtls: {mode: DISABLE}}\n"
    "---\n"
    "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\n"
    "metadata: {name: mesh-later, namespace: istio-system}\n"
    "spec: {mtls: {mode: DISABLE}}\n"
    "---\n"
    /* shop: namespace-wide UNSET (inherits the mesh) */
    "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
    "metadata: {name: ns, namespace: shop}\n"
    "spec: {mtls: {}}\n"
    "---\n"
    "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
    "metadata: {name: web, namespace: shop}\n"
    "spec:\n"
    "  selector: {matchLabels: {app: web}}\n"
    "  mtls: {mode: PERMISSIVE}\n"
    "  portLevelMtls:\n"
    "    8080: {mode: DISABLE}\n"
    "    \"9090\": {mode: UNSET}\n"
    "    9443: {mode: STRICT}\n"
    "    9000:\n"
    "---\n"
    "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
    "metadata: {name: db, namespace: shop}\n"
    "spec:\n"
    "  selector: {matchLabels: {app: db}}\n"
    "  portLevelMtls: {5432: {mode: DISABLE}}\n"
    "---\n"
    /* matches app=web,version=v2 too, but shop/web is older: it is not used at all */
    "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
    "metadata: {name: web-later, namespace: shop}\n"
    "spec:\n"
    "  selector: {matchLabels: {app: web, version: v2}}\n"
    "  mtls: {mode: STRICT}\n"
    "  portLevelMtls: {8080: {mode: STRICT}, 7070: {mode: DISABLE}}\n"
    "---\n"
    /* other: namespace-wide DISABLE; api's workload PA inherits it */
    "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
    "metadata: {name: ns, namespace: other}\n"
    "spec: {mtls: {mode: DISABLE}}\n"
    "---\n"
    "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
    "metadata: {name: api, namespace: other}\n"
    "spec:\n"
    "  selector: {matchLabels: {app: api}}\n"
    "  portLevelMtls: {8080: {mode: PERMISSIVE}}\n";

static void test_peer_authentication_parse(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_ok(pa_yaml, &d);
    char *out = printed(&d);
    assert_string_equal(out, "mem.yaml:9:18: warning: selector: ignored in the root namespace "
                             "\"istio-system\", as Istio ignores it; without a selector the "
                             "PeerAuthentication applies mesh-wide\n"
                             "mem.yaml:14:7: warning: PeerAuthentication istio-system/default at "
                             "mem.yaml:1:1 already applies to namespace \"istio-system\"; only "
                             "the first is used\n");
    assert_int_equal(cfg->n_peer_authentications, 9);
    const weir_peer_authentication_t *pa = &cfg->peer_authentications[0];
    assert_string_equal(pa->name, "default");
    assert_string_equal(pa->namespace, "istio-system");
    assert_false(pa->has_selector);
    assert_int_equal(pa->mode, WEIR_MTLS_STRICT);
    assert_int_equal(pa->n_port_mtls, 0);
    assert_int_equal(pa->place.line, 1);
    assert_int_equal(cfg->peer_authentications[3].mode, WEIR_MTLS_UNSET);

    pa = &cfg->peer_authentications[4];
    assert_string_equal(pa->name, "web");
    assert_true(pa->has_selector);
    assert_string_equal(weir_labels_get(&pa->selector, "app"), "web");
    assert_int_equal(pa->mode, WEIR_MTLS_PERMISSIVE);
    assert_int_equal(pa->n_port_mtls, 4);
    static const struct {
        uint32_t port;
        weir_mtls_mode_t mode;
    } ports[] = {{8080, WEIR_MTLS_DISABLE},
                 {9090, WEIR_MTLS_UNSET},
                 {9443, WEIR_MTLS_STRICT},
                 {9000, WEIR_MTLS_UNSET}}; /* a null entry inherits */
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(pa->port_mtls[i].port, ports[i].port);
        assert_int_equal(pa->port_mtls[i].mode, ports[i].mode);
    }
    assert_int_equal(pa->port_mtls[0].place.line, 28);
    assert_int_equal(pa->port_mtls[0].place.col, 5);
    assert_int_equal(cfg->peer_authentications[5].mode, WEIR_MTLS_UNSET); /* mtls omitted */
    free(out);
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

static void test_peer_authentication_precedence(void **state)
{
    static const struct {
        const char *root, *ns, *labels;
        uint32_t port;
        weir_mtls_mode_t want;
        const char *why;
    } cases[] = {
        {"istio-system", "plain", "", 80, WEIR_MTLS_STRICT, "mesh-wide only"},
        {NULL, "plain", "app=web", 80, WEIR_MTLS_STRICT, "NULL root is istio-system"},
        {NULL, "plain", "app=web", 8080, WEIR_MTLS_STRICT, "no workload PA: no port level"},
        {NULL, "shop", "app=cart", 80, WEIR_MTLS_STRICT, "namespace UNSET inherits the mesh"},
        {NULL, "shop", "app=web", 80, WEIR_MTLS_PERMISSIVE, "workload beats namespace, mesh"},
        {NULL, "shop", "app=web,zone=a", 80, WEIR_MTLS_PERMISSIVE, "selector is a subset"},
        {NULL, "shop", "app=web", 8080, WEIR_MTLS_DISABLE, "port level beats workload"},
        {NULL, "shop", "app=web", 9090, WEIR_MTLS_PERMISSIVE, "port UNSET inherits workload"},
        {NULL, "shop", "app=web", 9000, WEIR_MTLS_PERMISSIVE, "port null inherits workload"},
        {NULL, "shop", "app=web", 9443, WEIR_MTLS_STRICT, "port level STRICT"},
        {NULL, "shop", "app=web", 0, WEIR_MTLS_PERMISSIVE, "port 0 skips the port level"},
        {NULL, "shop", "app=web,version=v2", 80, WEIR_MTLS_PERMISSIVE, "oldest workload PA"},
        {NULL, "shop", "app=web,version=v2", 8080, WEIR_MTLS_DISABLE, "oldest's port level"},
        {NULL, "shop", "app=web,version=v2", 7070, WEIR_MTLS_PERMISSIVE,
         "a newer workload PA's port level is not used"},
        {NULL, "shop", "app=db", 80, WEIR_MTLS_STRICT, "workload UNSET, namespace UNSET: mesh"},
        {NULL, "shop", "app=db", 5432, WEIR_MTLS_DISABLE, "port level over UNSET levels"},
        {NULL, "other", "app=api", 80, WEIR_MTLS_DISABLE, "workload UNSET inherits namespace"},
        {NULL, "other", "app=api", 8080, WEIR_MTLS_PERMISSIVE, "port level in other"},
        {NULL, "other", "app=web", 8080, WEIR_MTLS_DISABLE, "shop's selector stays in shop"},
        {NULL, "other", "", 80, WEIR_MTLS_DISABLE, "namespace beats mesh"},
        {NULL, "istio-system", "app=web", 80, WEIR_MTLS_STRICT, "root selector is ignored"},
        {NULL, "istio-system", "", 80, WEIR_MTLS_STRICT, "oldest mesh-wide PA"},
        /* Another root: istio-system is then an ordinary namespace, and no PA is mesh-wide. */
        {"mesh-root", "plain", "", 80, WEIR_MTLS_PERMISSIVE, "no PA at all"},
        {"mesh-root", "istio-system", "", 80, WEIR_MTLS_STRICT, "now namespace-wide"},
        {"mesh-root", "istio-system", "app=web", 80, WEIR_MTLS_DISABLE, "now workload level"},
        {"mesh-root", "shop", "app=cart", 80, WEIR_MTLS_PERMISSIVE, "UNSET all the way"},
        {"mesh-root", "shop", "app=web", 8080, WEIR_MTLS_DISABLE, "port level still applies"},
        {"shop", "shop", "app=web", 8080, WEIR_MTLS_PERMISSIVE,
         "shop as root: its selectors are ignored, its UNSET namespace PA is mesh-wide"},
        {"shop", "other", "app=api", 8080, WEIR_MTLS_PERMISSIVE, "other's PAs still apply"},
    };
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_ok(pa_yaml, &d);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        weir_label_t items[8];
        char buf[128];
        weir_labels_t l = labels_of_spec(cases[i].labels, items, 8, buf, sizeof(buf));
        weir_mtls_mode_t got = weir_config_peer_authentication_mode(
            cfg, cases[i].root, cases[i].ns, &l, cases[i].port);
        if (got != cases[i].want)
            fail_msg("case %zu (%s): ns %s labels {%s} port %u: got %d, want %d", i, cases[i].why,
                     cases[i].ns, cases[i].labels, cases[i].port, got, cases[i].want);
    }
    weir_config_free(cfg);
    weir_diags_clear(&d);

    /* No PA, or only UNSET ones: PERMISSIVE. A DISABLE mesh survives UNSET at every level. */
    weir_labels_t web = labels_of_spec("app=web", (weir_label_t[2]){0}, 2, (char[16]){0}, 16);
    assert_int_equal(weir_config_peer_authentication_mode(NULL, NULL, "shop", &web, 80),
                     WEIR_MTLS_PERMISSIVE);
    assert_int_equal(weir_config_peer_authentication_mode(NULL, NULL, "shop", NULL, 80),
                     WEIR_MTLS_PERMISSIVE);
    static const char *const unset_yaml =
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        "metadata: {name: default, namespace: istio-system}\n"
        "spec: {mtls: {mode: %s}}\n"
        "---\n"
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        "metadata: {name: ns, namespace: shop}\n"
        "---\n"
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        "metadata: {name: web, namespace: shop}\n"
        "spec: {selector: {matchLabels: {app: web}}, mtls: {mode: UNSET},\n"
        "       portLevelMtls: {8080: {mode: UNSET}}}\n";
    static const struct {
        const char *mesh;
        weir_mtls_mode_t want;
    } chain[] = {{"UNSET", WEIR_MTLS_PERMISSIVE},
                 {"DISABLE", WEIR_MTLS_DISABLE},
                 {"STRICT", WEIR_MTLS_STRICT}};
    for (size_t i = 0; i < 3; i++) {
        char text[1024];
        FMT(text, unset_yaml, chain[i].mesh);
        cfg = load_ok(text, &d);
        for (uint32_t port = 0; port <= 8080; port += 8080)
            assert_int_equal(weir_config_peer_authentication_mode(cfg, NULL, "shop", &web, port),
                             chain[i].want);
        weir_config_free(cfg);
    }
    assert_int_equal(d.count, 0);
    weir_diags_clear(&d);
}

/* ---- the mesh registry ---------------------------------------------------------------------- */

/* A sockaddr for an IP literal, v4 or v6. */
static const struct sockaddr *sockaddr_of(const char *ip, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
        sin6->sin6_family = AF_INET6;
    }
    return (const struct sockaddr *)ss;
}

static void test_cidr(void **state)
{
    static const struct {
        const char *cidr, *ip;
        bool want;
    } cases[] = {
        {"10.96.0.10", "10.96.0.10", true},
        {"10.96.0.10", "10.96.0.11", false},
        {"10.96.0.10/32", "10.96.0.10", true},
        {"10.96.0.10/32", "10.96.0.11", false},
        {"10.96.0.0/16", "10.96.255.255", true},
        {"10.96.0.0/16", "10.97.0.0", false},
        {"10.96.7.7/16", "10.96.1.1", true}, /* host bits cleared */
        {"10.96.0.0/12", "10.111.1.1", true},
        {"10.96.0.0/12", "10.112.0.0", false},
        {"10.0.0.0/31", "10.0.0.1", true},
        {"10.0.0.0/31", "10.0.0.2", false},
        {"0.0.0.0/0", "203.0.113.9", true},
        {"0.0.0.0/0", "2001:db8::1", false}, /* another family */
        {"0.0.0.0/0", "::ffff:203.0.113.9", true},
        {"10.96.0.10", "::ffff:10.96.0.10", true}, /* a dual-stack socket's IPv4 peer */
        {"::ffff:10.96.0.0/112", "10.96.3.4", true},
        {"::ffff:10.96.0.0/112", "10.97.3.4", false},
        {"fd00::/8", "fd12:3456::1", true},
        {"fd00::/8", "fe80::1", false},
        {"fd00::/8", "10.0.0.1", false},
        {"2001:db8::1", "2001:db8::1", true},
        {"2001:db8::1/128", "2001:db8::2", false},
        {"2001:db8::/127", "2001:db8::1", true},
        {"2001:db8::/127", "2001:db8::2", false},
        {"2001:db8:0:0:8000::/65", "2001:db8::8000:0:0:1", true},
        {"2001:db8:0:0:8000::/65", "2001:db8::1", false},
        {"::/0", "2001:db8::1", true},
        {"::/0", "10.0.0.1", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        weir_cidr_t c;
        struct sockaddr_storage ss;
        if (!weir_cidr_parse(cases[i].cidr, &c))
            fail_msg("case %zu: \"%s\" does not parse", i, cases[i].cidr);
        if (weir_cidr_contains(&c, sockaddr_of(cases[i].ip, &ss)) != cases[i].want)
            fail_msg("case %zu: %s in %s should be %d", i, cases[i].ip, cases[i].cidr,
                     cases[i].want);
    }
    static const char *const bad[] = {
        "",           "/8",          "10.0.0.0/",   "10.0.0.0/33", "10.0.0.0/08", "10.0.0.0/-1",
        "10.0.0.0/+8", "10.0.0.0/8/8", "10.0.0.0/ 8", "10.0.0",      "10.0.0.256", "010.0.0.1",
        "fd00::/129", "fd00::/1000",  "fe80::1%eth0", "web",         " 10.0.0.1",  "10.0.0.1 ",
        "fd00::1/64x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        weir_cidr_t c;
        if (weir_cidr_parse(bad[i], &c))
            fail_msg("\"%s\" should not parse", bad[i]);
    }
    weir_cidr_t c;
    assert_true(weir_cidr_parse("::ffff:10.1.2.3", &c));
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix_len, 32);
    assert_true(weir_cidr_parse("fd00::ff/120", &c));
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.addr[15], 0);
    assert_false(weir_cidr_contains(&c, NULL));
}

static const char *const registry_yaml =
    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: net}\n"
    "spec: {hosts: [net.example.com], addresses: [10.96.0.0/16],\n"
    "       ports: [{number: 5432, name: pg}, {number: 80, name: http}]}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db}\n"
    "spec: {hosts: [db.example.com], addresses: [192.0.2.1, 10.96.0.10],\n"
    "       ports: [{number: 5432, name: pg}]}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: net-twin}\n"
    "spec: {hosts: [twin.example.com], addresses: [10.96.0.0/16], ports: [{number: 80, name: h}]}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: v6}\n"
    "spec: {hosts: [v6.example.com], addresses: [\"fd00::/8\"], ports: [{number: 80, name: h}]}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: all}\n"
    "spec: {hosts: [all.example.com], addresses: [0.0.0.0/0], ports: [{number: 443, name: t}]}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: by-port}\n"
    "spec: {hosts: [by-port.example.com], ports: [{number: 9000, name: tcp, protocol: TCP}]}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: by-port-2}\n"
    "spec: {hosts: [by-port-2.example.com], ports: [{number: 9000, name: tcp},\n"
    "                                               {number: 80, name: http}]}\n";

static void test_service_by_address(void **state)
{
    static const struct {
        const char *ip; /* NULL: no address */
        uint32_t port;
        const char *want; /* ServiceEntry name, NULL: none */
    } cases[] = {
        {"10.96.0.10", 5432, "db"},         /* an exact IP beats the /16 listed before it */
        {"::ffff:10.96.0.10", 5432, "db"},  /* the same, from a dual-stack socket */
        {"192.0.2.1", 5432, "db"},
        {"10.96.3.3", 5432, "net"},
        {"10.96.0.10", 80, "net"},          /* db has no port 80: the range that has */
        {"10.96.3.3", 80, "net"},           /* equal prefixes: the first in load order */
        {"10.97.0.1", 80, "by-port-2"},     /* no address matches: address-less by port */
        {"fd00::1", 80, "v6"},
        {"fe80::1", 80, "by-port-2"},
        {"203.0.113.5", 443, "all"},        /* /0 */
        {"2001:db8::5", 443, NULL},         /* not IPv4, and no address-less port 443 */
        {"203.0.113.5", 9000, "by-port"},   /* the first address-less one with the port */
        {NULL, 9000, "by-port"},
        {NULL, 5432, NULL},                 /* only services with addresses have 5432 */
        {"10.96.0.10", 1234, NULL},         /* no service has the port */
    };
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_ok(registry_yaml, &d);
    assert_int_equal(d.count, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss;
        const struct sockaddr *sa = cases[i].ip ? sockaddr_of(cases[i].ip, &ss) : NULL;
        const weir_service_entry_t *se = weir_config_service_by_address(cfg, sa, cases[i].port);
        const char *got = se ? se->name : NULL;
        if ((got == NULL) != (cases[i].want == NULL) ||
            (got && strcmp(got, cases[i].want) != 0))
            fail_msg("case %zu: %s:%u gave %s, want %s", i, cases[i].ip ? cases[i].ip : "-",
                     cases[i].port, got ? got : "none", cases[i].want ? cases[i].want : "none");
    }
    assert_null(weir_config_service_by_address(NULL, NULL, 80));
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

static void test_service_accounts(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_ok(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        "metadata: {name: web, namespace: shop}\n"
        "spec:\n"
        "  hosts: [web]\n"
        "  location: MESH_INTERNAL\n"
        "  resolution: STATIC\n"
        "  ports: [{number: 80, name: http}]\n"
        "  workloadSelector: {labels: {app: web}}\n"
        "  subjectAltNames: [spiffe://cluster.local/ns/shop/sa/web, spiffe://legacy/ns/x/sa/y]\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        "metadata: {name: web-1, namespace: shop}\n"
        "spec: {address: 10.0.0.1, labels: {app: web}, serviceAccount: web}\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        "metadata: {name: web-2, namespace: shop}\n"
        "spec: {address: 10.0.0.2, labels: {app: web, version: v2}}\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        "metadata: {name: web-3, namespace: shop}\n"
        "spec: {address: 10.0.0.3, labels: {app: web}, serviceAccount: web}\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        "metadata: {name: web-other-ns, namespace: other}\n"
        "spec: {address: 10.0.0.4, labels: {app: web}, serviceAccount: intruder}\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        "metadata: {name: api-1, namespace: shop}\n"
        "spec: {address: 10.0.0.5, labels: {app: api}, serviceAccount: api}\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        "metadata: {name: ext, namespace: edge}\n"
        "spec:\n"
        "  hosts: [ext.example.com]\n"
        "  resolution: STATIC\n"
        "  ports: [{number: 443, name: tls, protocol: TLS}]\n"
        "  endpoints: [{address: 192.0.2.1, serviceAccount: gw}, {address: 192.0.2.2}]\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        "metadata: {name: empty, namespace: edge}\n"
        "spec: {hosts: [empty.example.com], ports: [{number: 80, name: http}]}\n",
        &d);
    assert_int_equal(d.count, 0);
    const weir_service_entry_t *web = weir_config_find_service(cfg, "web.shop.svc.cluster.local");
    const weir_service_entry_t *ext = weir_config_find_service(cfg, "ext.example.com");
    const weir_service_entry_t *empty = weir_config_find_service(cfg, "empty.example.com");

    /* The endpoints: the same namespace's matching WorkloadEntries, in load order. */
    size_t cursor = 0;
    static const char *const web_eps[] = {"web-1", "web-2", "web-3"};
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(weir_config_service_endpoint(cfg, web, &cursor)->name, web_eps[i]);
    assert_null(weir_config_service_endpoint(cfg, web, &cursor));
    assert_null(weir_config_service_endpoint(cfg, web, &cursor));
    cursor = 0;
    assert_string_equal(weir_config_service_endpoint(cfg, ext, &cursor)->address, "192.0.2.1");
    assert_string_equal(weir_config_service_endpoint(cfg, ext, &cursor)->address, "192.0.2.2");
    assert_null(weir_config_service_endpoint(cfg, ext, &cursor));
    cursor = 0;
    assert_null(weir_config_service_endpoint(cfg, NULL, &cursor));

    static const struct {
        const char *host, *td;
        const char *want[4];
    } cases[] = {
        {"web.shop.svc.cluster.local", "cluster.local",
         {"spiffe://cluster.local/ns/shop/sa/web", "spiffe://cluster.local/ns/shop/sa/default",
          "spiffe://legacy/ns/x/sa/y"}},
        {"web.shop.svc.cluster.local", "example.org",
         {"spiffe://example.org/ns/shop/sa/web", "spiffe://example.org/ns/shop/sa/default",
          "spiffe://cluster.local/ns/shop/sa/web", "spiffe://legacy/ns/x/sa/y"}},
        {"ext.example.com", "cluster.local",
         {"spiffe://cluster.local/ns/edge/sa/gw", "spiffe://cluster.local/ns/edge/sa/default"}},
        {"empty.example.com", "cluster.local", {NULL}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const weir_service_entry_t *se = weir_config_find_service(cfg, cases[i].host);
        weir_string_list_t l = weir_config_service_accounts(cfg, se, cases[i].td);
        size_t n = 0;
        while (n < 4 && cases[i].want[n])
            n++;
        assert_int_equal(l.count, n);
        for (size_t j = 0; j < n; j++)
            assert_string_equal(l.items[j], cases[i].want[j]);
        weir_string_list_free(&l);
        assert_null(l.items);
        assert_int_equal(l.count, 0);
    }
    assert_ptr_equal(empty, weir_config_find_service(cfg, "empty.example.com"));
    weir_string_list_t none = weir_config_service_accounts(cfg, NULL, "cluster.local");
    assert_int_equal(none.count, 0);
    weir_string_list_free(&none);
    weir_string_list_free(NULL);
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

static void test_resolve_host(void **state)
{
    static const char *const cases[][3] = {
        {"web", "default", "web.default.svc.cluster.local"},
        {"reviews", "foo", "reviews.foo.svc.cluster.local"},
        {"web", NULL, "web.default.svc.cluster.local"},
        {"web.other", "default", "web.other"},
        {"web.default.svc.cluster.local", "x", "web.default.svc.cluster.local"},
        {"*", "default", "*"},
        {"*.example.com", "default", "*.example.com"},
        {"10.0.0.1", "default", "10.0.0.1"},
        {"::1", "default", "::1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *h = weir_config_resolve_host(cases[i][0], cases[i][1]);
        assert_string_equal(h, cases[i][2]);
        free(h);
    }
}

static void test_labels(void **state)
{
    weir_label_t sel_items[] = {{"app", "web"}, {"version", "v1"}};
    weir_label_t pod_items[] = {{"version", "v1"}, {"app", "web"}, {"zone", "a"}};
    weir_label_t other_items[] = {{"app", "web"}, {"version", "v2"}};
    weir_labels_t sel = {sel_items, 2}, pod = {pod_items, 3}, other = {other_items, 2};
    weir_labels_t empty = {NULL, 0};
    assert_true(weir_labels_match(&sel, &pod));
    assert_false(weir_labels_match(&sel, &other));
    assert_false(weir_labels_match(&pod, &sel)); /* zone missing */
    assert_true(weir_labels_match(&empty, &pod));
    assert_true(weir_labels_match(&empty, &empty));
    assert_true(weir_labels_match(NULL, &pod));
    assert_false(weir_labels_match(&sel, &empty));
    assert_string_equal(weir_labels_get(&pod, "zone"), "a");
    assert_null(weir_labels_get(&pod, "Zone"));
    assert_null(weir_labels_get(NULL, "zone"));
}

/* ---- traffic fields: durations, retries, faults, mirrors, headers -------------------------- */

static void test_duration(void **state)
{
    static const struct {
        const char *text;
        int64_t ms;
    } good[] = {
        {"0", 0},
        {"+0", 0},
        {"-0s", 0},
        {"0s", 0},
        {"1s", 1000},
        {"500ms", 500},
        {"1.5s", 1500},
        {"2m", 120000},
        {"1h30m", 5400000},
        {"1h0m0.001s", 3600001},
        {"+5s", 5000},
        {".5s", 500},
        {"1.s", 1000},
        {"0.001s", 1},
        {"1000000ns", 1},
        {"1000us", 1},
        {"1000\xc2\xb5s", 1},  /* micro sign */
        {"1000\xce\xbcs", 1},  /* Greek mu */
        {"1.0000000001s", 1000}, /* Go cuts what is finer than a nanosecond */
        {"1s500ms", 1500},
        {"3m3m", 360000},
        {"0.25h", 900000},
        {"2562047h", INT64_C(2562047) * 3600000}, /* Go's largest whole hour */
        {"2562047h47m16.854s", INT64_C(9223372036854)},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t ms = -1;
        const char *why = NULL;
        if (weir_config_duration_ms(good[i].text, &ms, &why) != 0)
            fail_msg("\"%s\" should parse, got: %s", good[i].text, why);
        if (ms != good[i].ms)
            fail_msg("\"%s\": got %" PRId64 " ms, want %" PRId64, good[i].text, ms, good[i].ms);
    }
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"", "expected a number"},
        {"-", "expected a number"},
        {"s", "expected a number"},
        {".s", "expected a number"},
        {"--1s", "expected a number"},
        {" 1s", "expected a number"},
        {"1", "missing unit"},
        {"1.5", "missing unit"},
        {"1m1", "missing unit"},
        {"1d", "unknown unit"},
        {"1e3s", "unknown unit"},
        {"1S", "unknown unit"},
        {"1s ", "unknown unit"},
        {"1 s", "unknown unit"},
        {"-1s", "negative"},
        {"-0.001s", "negative"},
        {"1ns", "finer than a millisecond"},
        {"1.0005s", "finer than a millisecond"},
        {"1500us", "finer than a millisecond"},
        {"2562048h", "too large"},
        {"9223372036854775808ns", "too large"},
        {"99999999999999999999s", "too large"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = 42;
        const char *why = NULL;
        if (weir_config_duration_ms(bad[i].text, &ms, &why) == 0)
            fail_msg("\"%s\" should not parse", bad[i].text);
        assert_int_equal(ms, 42); /* untouched */
        if (why == NULL || strstr(why, bad[i].why) == NULL)
            fail_msg("\"%s\": reason \"%s\", want \"%s\"", bad[i].text, why ? why : "(null)",
                     bad[i].why);
    }
    int64_t ms;
    assert_int_equal(weir_config_duration_ms("1x", &ms, NULL), -1); /* why may be NULL */
}

/* One VirtualService "web" in "shop" with the given http rules, its hosts declared, and a
 * DestinationRule for "shadow" with subset v2. NULL when the load fails. */
static weir_config_t *load_http_or_null(const char *rules, weir_diags_t *d)
{
    char text[4096];
    FMT(text,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: web, namespace: shop}\n"
        "spec:\n  hosts: [web]\n  http:\n%s"
        "---\n"
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: shadow, namespace: shop}\n"
        "spec: {host: shadow, subsets: [{name: v2, labels: {version: v2}}]}\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        "metadata: {name: all, namespace: shop}\n"
        "spec: {hosts: [web, shadow, a, b, c], ports: [{number: 80, name: http}]}\n",
        rules);
    return weir_config_load_string("mem.yaml", text, d);
}

static weir_config_t *load_http(const char *rules, weir_diags_t *d)
{
    weir_config_t *cfg = load_http_or_null(rules, d);
    if (cfg == NULL) {
        char *out = printed(d);
        fail_msg("load failed:\n%s", out);
    }
    return cfg;
}

static void test_retries(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_http(
        "  - route: [{destination: {host: web}}]\n"
        "  - route: [{destination: {host: web}}]\n"
        "    timeout: 1.5s\n"
        "    retries:\n"
        "      attempts: 3\n"
        "      perTryTimeout: 250ms\n"
        "      retryOn: 5xx,gateway-error,503,retriable-4xx,404\n"
        "      retryRemoteLocalities: true\n"
        "      retryIgnorePreviousHosts: false\n"
        "      backoff: 100ms\n"
        "  - route: [{destination: {host: web}}]\n"
        "    retries: {attempts: 4}\n"
        "  - route: [{destination: {host: web}}]\n"
        "    retries: {attempts: 0}\n"
        "  - route: [{destination: {host: web}}]\n"
        "    retries:\n"
        "      attempts: 1\n"
        "      retry_on: \"5xx,gateway-error,reset,reset-before-request,connect-failure,"
        "retriable-4xx,refused-stream,retriable-status-codes,retriable-headers,"
        "envoy-ratelimited,http3-post-connect-failure,cancelled,deadline-exceeded,internal,"
        "resource-exhausted,unavailable\"\n"
        "  - route: [{destination: {host: web}}]\n"
        "    retries: {attempts: 2, retryOn: \"\"}\n"
        "  - route: [{destination: {host: web}}]\n"
        "    retries: {attempts: 2, retryOn: \"503,retriable-status-codes,503,502,reset,reset\"}\n",
        &d);
    assert_int_equal(d.count, 0);
    const weir_virtual_service_t *vs = &cfg->virtual_services[0];
    assert_int_equal(vs->n_http, 7);

    /* No retries: Istio's default policy (S4), no timeout (S3). */
    const weir_http_retry_t *p = &vs->http[0].retries;
    assert_false(p->set);
    assert_int_equal(p->attempts, 2);
    assert_int_equal(p->retry_on, WEIR_RETRY_ON_CONNECT_FAILURE | WEIR_RETRY_ON_REFUSED_STREAM |
                                      WEIR_RETRY_ON_UNAVAILABLE | WEIR_RETRY_ON_CANCELLED |
                                      WEIR_RETRY_ON_RETRIABLE_STATUS_CODES);
    assert_int_equal(p->n_retriable_status_codes, 0); /* so a 503 response is not retried */
    assert_true(p->ignore_previous_hosts);
    assert_false(p->retry_remote_localities);
    assert_int_equal(p->per_try_timeout_ms, 0);
    assert_int_equal(p->backoff_ms, 0);
    assert_int_equal(vs->http[0].timeout_ms, 0);

    assert_int_equal(vs->http[1].timeout_ms, 1500);
    p = &vs->http[1].retries;
    assert_true(p->set);
    assert_int_equal(p->attempts, 3);
    assert_int_equal(p->per_try_timeout_ms, 250);
    /* The integers move to the status codes and bring retriable-status-codes with them. */
    assert_int_equal(p->retry_on, WEIR_RETRY_ON_5XX | WEIR_RETRY_ON_GATEWAY_ERROR |
                                      WEIR_RETRY_ON_RETRIABLE_4XX |
                                      WEIR_RETRY_ON_RETRIABLE_STATUS_CODES);
    assert_int_equal(p->n_retriable_status_codes, 2);
    assert_int_equal(p->retriable_status_codes[0], 503);
    assert_int_equal(p->retriable_status_codes[1], 404);
    assert_true(p->retry_remote_localities);
    assert_false(p->ignore_previous_hosts);
    assert_int_equal(p->backoff_ms, 100);

    /* retries without retryOn: the default conditions, the attempts given. */
    p = &vs->http[2].retries;
    assert_true(p->set);
    assert_int_equal(p->attempts, 4);
    assert_int_equal(p->retry_on, WEIR_RETRY_ON_ISTIO_DEFAULT);
    assert_true(p->ignore_previous_hosts);
    /* attempts 0: no retries at all. */
    assert_true(vs->http[3].retries.set);
    assert_int_equal(vs->http[3].retries.attempts, 0);
    /* Every condition, by its proto name (retry_on): every bit, in table order. */
    assert_int_equal(vs->http[4].retries.retry_on, 0xffff);
    assert_int_equal(vs->http[4].retries.n_retriable_status_codes, 0);
    assert_int_equal(vs->http[5].retries.retry_on, WEIR_RETRY_ON_ISTIO_DEFAULT);
    /* A repeated status code or condition changes nothing. */
    p = &vs->http[6].retries;
    assert_int_equal(p->retry_on, WEIR_RETRY_ON_RETRIABLE_STATUS_CODES | WEIR_RETRY_ON_RESET);
    assert_int_equal(p->n_retriable_status_codes, 2);
    assert_int_equal(p->retriable_status_codes[0], 503);
    assert_int_equal(p->retriable_status_codes[1], 502);

    weir_config_free(cfg);
    weir_diags_clear(&d);
}

static void test_fault(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_http(
        "  - route: [{destination: {host: web}}]\n"
        "    fault: {delay: {fixedDelay: 5s}}\n"
        "  - route: [{destination: {host: web}}]\n"
        "    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}\n"
        "  - route: [{destination: {host: web}}]\n"
        "    fault:\n"
        "      delay: {fixed_delay: 2ms, percent: 30}\n"
        "      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 0.5}}\n"
        "  - route: [{destination: {host: web}}]\n"
        "    fault:\n"
        "      delay: {percent: 30, fixedDelay: 1s, percentage: {value: 12.5}}\n"
        "      abort: {grpcStatus: OK, percentage: {}}\n"
        "  - route: [{destination: {host: web}}]\n",
        &d);
    char *out = printed(&d);
    assert_string_equal(out, "mem.yaml:17:15: warning: http[3].fault.delay.percent: ignored: "
                             "percentage is given and takes precedence\n");
    const weir_http_route_t *r = cfg->virtual_services[0].http;
    /* No percentage: the fault is there but hits 0% of requests (S7), told from an explicit 0. */
    const weir_fault_t *f = &r[0].fault;
    assert_true(f->has_delay);
    assert_int_equal(f->delay_ms, 5000);
    assert_false(f->delay_percent.set);
    assert_true(f->delay_percent.value == 0);
    assert_false(f->has_abort);

    f = &r[1].fault;
    assert_false(f->has_delay);
    assert_true(f->has_abort);
    assert_int_equal(f->abort_http_status, 503);
    assert_int_equal(f->abort_grpc_status, -1);
    assert_true(f->abort_percent.set);
    assert_true(f->abort_percent.value == 100);

    /* The deprecated integer percent, and a gRPC status by its code. */
    f = &r[2].fault;
    assert_int_equal(f->delay_ms, 2);
    assert_true(f->delay_percent.set);
    assert_true(f->delay_percent.value == 30);
    assert_int_equal(f->abort_http_status, 0);
    assert_int_equal(f->abort_grpc_status, 14);
    assert_true(f->abort_percent.value == 0.5);

    /* percentage wins over percent whatever the order; `percentage: {}` is an explicit 0. */
    f = &r[3].fault;
    assert_true(f->delay_percent.value == 12.5);
    assert_int_equal(f->abort_grpc_status, 0);
    assert_true(f->abort_percent.set);
    assert_true(f->abort_percent.value == 0);

    assert_false(r[4].fault.has_delay);
    assert_false(r[4].fault.has_abort);
    free(out);
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

static void test_mirrors(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_http(
        "  - route: [{destination: {host: web}}]\n"
        "    mirror: {host: shadow, subset: v2, port: {number: 8080}}\n"
        "  - route: [{destination: {host: web}}]\n"
        "    mirror: {host: shadow}\n"
        "    mirrorPercentage: {value: 12.5}\n"
        "  - route: [{destination: {host: web}}]\n"
        "    mirror: {host: shadow}\n"
        "    mirror_percent: 30\n"
        "  - route: [{destination: {host: web}}]\n"
        "    mirror: {host: shadow}\n"
        "    mirrorPercentage: {value: 0}\n"
        "  - route: [{destination: {host: web}}]\n"
        "    mirrors:\n"
        "    - destination: {host: a}\n"
        "    - {destination: {host: b}, percentage: {value: 0}}\n"
        "    - {destination: {host: c}, percentage: {value: 0.5}}\n"
        "  - route: [{destination: {host: web}}]\n"
        "    mirrorPercent: 90\n"
        "    mirror: {host: shadow}\n"
        "    mirrorPercentage: {value: 40}\n"
        "  - route: [{destination: {host: web}}]\n"
        "    mirror: {host: shadow}\n"
        "    mirrorPercent: 0\n"
        "  - route: [{destination: {host: web}}]\n"
        "    mirrors: []\n",
        &d);
    assert_int_equal(d.errors, 0);
    assert_int_equal(count_level(&d, WEIR_DIAG_WARNING), 3); /* mirrorPercent: deprecated x2,
                                                              * ignored x1 */
    const weir_http_route_t *r = cfg->virtual_services[0].http;
    /* No percentage: 100%. */
    assert_int_equal(r[0].n_mirrors, 1);
    const weir_mirror_policy_t *m = &r[0].mirrors[0];
    assert_string_equal(m->destination.host, "shadow.shop.svc.cluster.local");
    assert_string_equal(m->destination.subset, "v2");
    assert_int_equal(m->destination.port, 8080);
    assert_true(m->percent == 100);
    assert_int_equal(m->place.line, 8);
    assert_int_equal(r[1].n_mirrors, 1);
    assert_true(r[1].mirrors[0].percent == 12.5);
    assert_true(r[2].mirrors[0].percent == 30); /* the deprecated integer form */
    assert_int_equal(r[3].n_mirrors, 0);        /* an explicit 0 drops the mirror */
    /* mirrors[]: one policy each, absent percentage 100, explicit 0 left out. */
    assert_int_equal(r[4].n_mirrors, 2);
    assert_string_equal(r[4].mirrors[0].destination.host, "a.shop.svc.cluster.local");
    assert_true(r[4].mirrors[0].percent == 100);
    assert_string_equal(r[4].mirrors[1].destination.host, "c.shop.svc.cluster.local");
    assert_true(r[4].mirrors[1].percent == 0.5);
    assert_true(r[5].mirrors[0].percent == 40); /* mirrorPercentage over mirrorPercent */
    assert_int_equal(r[6].n_mirrors, 0);
    assert_int_equal(r[7].n_mirrors, 0);
    weir_config_free(cfg);
    weir_diags_clear(&d);

    /* A mirror subset is a reference like a route's. */
    assert_null(load_http_or_null("  - route: [{destination: {host: web}}]\n"
                                  "    mirrors: [{destination: {host: shadow, subset: v9}}]\n",
                                  &d));
    char *out = printed(&d);
    assert_non_null(strstr(out, "error: http[0].mirrors[0].destination.subset: subset \"v9\" is "
                                "not defined by any DestinationRule"));
    free(out);
    weir_diags_clear(&d);
}

static void test_headers(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_http(
        "  - route:\n"
        "    - destination: {host: a}\n"
        "      weight: 90\n"
        "      headers:\n"
        "        request: {add: {\":Authority\": a.internal, X-Dest: a}}\n"
        "        response: {remove: [Server]}\n"
        "    - destination: {host: b}\n"
        "      weight: 10\n"
        "    headers:\n"
        "      request:\n"
        "        set: {X-Upper: A, x-pct: \"100%%\", HOST: web.internal}\n"
        "        add: {X-Add: \"1\", x-add: \"2\"}\n"
        "        remove: [X-Remove, x-other]\n"
        "      response:\n"
        "        set: {Cache-Control: no-store}\n"
        "        add: {X-Served-By: weir}\n"
        "        remove: [X-Powered-By]\n"
        "  - route: [{destination: {host: web}}]\n"
        "    rewrite: {uri: /v2}\n"
        "    headers: {request: {add: {host: add.internal}}}\n"
        "  - redirect: {uri: /x}\n"
        "    headers: {request: {set: {host: ignored.internal}}}\n",
        &d);
    assert_int_equal(d.count, 0);
    const weir_http_route_t *r = cfg->virtual_services[0].http;
    const weir_headers_t *h = &r[0].headers;
    /* Names lower-cased as Envoy keeps them; written order kept; the host header is a rewrite. */
    assert_int_equal(h->request.n_set, 2);
    assert_string_equal(h->request.set[0].name, "x-upper");
    assert_string_equal(h->request.set[0].value, "A");
    assert_string_equal(h->request.set[1].name, "x-pct");
    assert_string_equal(h->request.set[1].value, "100%"); /* Envoy's escape */
    assert_int_equal(h->request.n_add, 2);
    assert_string_equal(h->request.add[0].name, "x-add");
    assert_string_equal(h->request.add[1].value, "2");
    assert_int_equal(h->request.n_remove, 2);
    assert_string_equal(h->request.remove[0], "x-remove");
    assert_string_equal(h->authority, "web.internal");
    assert_int_equal(h->response.n_set, 1);
    assert_string_equal(h->response.set[0].name, "cache-control");
    assert_string_equal(h->response.add[0].name, "x-served-by");
    assert_string_equal(h->response.remove[0], "x-powered-by");
    /* On a route the host header is recorded as the route's host rewrite too. */
    assert_true(r[0].has_rewrite);
    assert_string_equal(r[0].rewrite.authority, "web.internal");
    assert_null(r[0].rewrite.uri);
    /* Per destination: the same shape; its host rewrite stays with the destination. */
    const weir_headers_t *dh = &r[0].route[0].headers;
    assert_string_equal(dh->authority, "a.internal");
    assert_int_equal(dh->request.n_add, 1);
    assert_string_equal(dh->request.add[0].name, "x-dest");
    assert_int_equal(dh->request.n_set, 0);
    assert_int_equal(dh->response.n_remove, 1);
    assert_string_equal(dh->response.remove[0], "server");
    assert_null(r[0].route[1].headers.authority);
    assert_int_equal(r[0].route[1].headers.request.n_add, 0);
    /* add rewrites the authority as set does, beside a uri rewrite. */
    assert_true(r[1].has_rewrite);
    assert_string_equal(r[1].rewrite.uri, "/v2");
    assert_string_equal(r[1].rewrite.authority, "add.internal");
    /* A redirect sends nothing upstream: nothing to rewrite. */
    assert_string_equal(r[2].headers.authority, "ignored.internal");
    assert_false(r[2].has_rewrite);
    assert_null(r[2].rewrite.authority);
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

/* ---- DestinationRule connectionPool and outlierDetection ----------------------------------- */

static const char *const traffic_dr_yaml =
    "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\n"
    "spec:\n"
    "  host: a.example.com\n"
    "  trafficPolicy:\n"
    "    connectionPool:\n"
    "      tcp:\n"
    "        maxConnections: 100\n"
    "        connectTimeout: 250ms\n"
    "        tcpKeepalive: {probes: 3, time: 2h, interval: 75s}\n"
    "        maxConnectionDuration: 1h\n"
    "        idleTimeout: 30s\n"
    "      http:\n"
    "        http1MaxPendingRequests: 1\n"
    "        http2MaxRequests: 1000\n"
    "        maxRequestsPerConnection: 1\n"
    "        maxRetries: 3\n"
    "        idleTimeout: 5m\n"
    "        h2UpgradePolicy: DO_NOT_UPGRADE\n"
    "        useClientProtocol: true\n"
    "    outlierDetection: {}\n"
    "  subsets:\n"
    "  - {name: inherit}\n"
    "  - name: own-pool\n"
    "    trafficPolicy: {connectionPool: {tcp: {maxConnections: 1}}}\n"
    "  - name: own-outlier\n"
    "    trafficPolicy:\n"
    "      outlierDetection:\n"
    "        consecutive5xxErrors: 0\n"
    "        consecutiveGatewayErrors: 3\n"
    "        splitExternalLocalOriginErrors: true\n"
    "        interval: 1s\n"
    "        baseEjectionTime: 15s\n"
    "        maxEjectionPercent: 100\n"
    "        minHealthPercent: 50\n"
    "  - name: split-default\n"
    "    trafficPolicy:\n"
    "      outlierDetection:\n"
    "        splitExternalLocalOriginErrors: true\n"
    "        consecutiveLocalOriginFailures: 0\n"
    "        consecutiveGatewayErrors: 0\n"
    "        maxEjectionPercent: 0\n"
    "  - name: split-set\n"
    "    trafficPolicy:\n"
    "      outlierDetection: {split_external_local_origin_errors: true,\n"
    "                         consecutive_local_origin_failures: 7, consecutive_5xx_errors: 9}\n"
    "  - name: tcp-idle-off\n"
    "    trafficPolicy: {connectionPool: {tcp: {idleTimeout: 0s}}}\n"
    "  - name: http-idle-wins\n"
    "    trafficPolicy: {connectionPool: {http: {idleTimeout: 2s}, tcp: {idleTimeout: 9s}}}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: b}\n"
    "spec:\n"
    "  host: b.example.com\n"
    "  subsets:\n"
    "  - {name: none}\n"
    "  - {name: http-only, trafficPolicy: {connectionPool: {http: {maxRetries: 0}}}}\n";

static void test_connection_pool(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_ok(traffic_dr_yaml, &d);
    /* read and kept, but the proxy does not act on them yet: each is warned at its place */
    assert_int_equal(d.errors, 0);
    for (size_t i = 0; i < d.count; i++)
        assert_non_null(strstr(d.items[i].msg, "maxConnectionDuration: not applied"));
    assert_int_equal(d.count, 1);
    const weir_destination_rule_t *a = weir_config_find_destination_rule(cfg, "a.example.com");
    assert_true(a->policy.has_connection_pool);
    const weir_connection_pool_t *p = &a->policy.connection_pool;
    assert_int_equal(p->max_connections, 100);
    assert_int_equal(p->connect_timeout_ms, 250);
    assert_true(p->has_tcp_keepalive);
    assert_int_equal(p->tcp_keepalive.probes, 3);
    assert_int_equal(p->tcp_keepalive.time_ms, 7200000);
    assert_int_equal(p->tcp_keepalive.interval_ms, 75000);
    assert_int_equal(p->max_connection_duration_ms, 3600000);
    assert_true(p->has_idle_timeout);
    assert_int_equal(p->idle_timeout_ms, 300000); /* http's wins over tcp's */
    assert_int_equal(p->http1_max_pending_requests, 1);
    assert_int_equal(p->http2_max_requests, 1000);
    assert_int_equal(p->max_requests_per_connection, 1);
    assert_int_equal(p->max_retries, 3);
    assert_int_equal(p->h2_upgrade_policy, WEIR_H2_DO_NOT_UPGRADE);
    assert_true(p->use_client_protocol);

    /* The subset's block replaces the top level's whole: what it leaves out is "not set". */
    p = &weir_destination_rule_subset(a, "own-pool")->policy.connection_pool;
    assert_int_equal(p->max_connections, 1);
    assert_int_equal(p->connect_timeout_ms, 0);
    assert_int_equal(p->http1_max_pending_requests, 0);
    assert_false(p->has_idle_timeout);
    assert_false(p->has_tcp_keepalive);
    assert_int_equal(p->h2_upgrade_policy, WEIR_H2_UPGRADE_DEFAULT);
    /* tcp.idleTimeout "0s" is an explicit "none", told from "not set". */
    p = &weir_destination_rule_subset(a, "tcp-idle-off")->policy.connection_pool;
    assert_true(p->has_idle_timeout);
    assert_int_equal(p->idle_timeout_ms, 0);
    p = &weir_destination_rule_subset(a, "http-idle-wins")->policy.connection_pool;
    assert_int_equal(p->idle_timeout_ms, 2000);

    /* No connectionPool anywhere: not set, Istio's defaults (S8). An http-only block with a
     * 0 is set, with nothing in it > 0. */
    const weir_destination_rule_t *b = weir_config_find_destination_rule(cfg, "b.example.com");
    assert_false(b->policy.has_connection_pool);
    assert_false(weir_destination_rule_subset(b, "none")->policy.has_connection_pool);
    const weir_subset_t *s = weir_destination_rule_subset(b, "http-only");
    assert_true(s->policy.has_connection_pool);
    assert_int_equal(s->policy.connection_pool.max_retries, 0);
    assert_int_equal(s->policy.connection_pool.max_connections, 0);
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

static void test_outlier_detection(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_ok(traffic_dr_yaml, &d);
    const weir_destination_rule_t *a = weir_config_find_destination_rule(cfg, "a.example.com");
    /* `outlierDetection: {}` turns the detector on with Istio's defaults (3.4, S2, S9, S10). */
    assert_true(a->policy.has_outlier_detection);
    const weir_outlier_detection_t *o = &a->policy.outlier_detection;
    assert_int_equal(o->consecutive_5xx, 5);
    assert_true(o->enforcing_consecutive_5xx);
    assert_int_equal(o->consecutive_gateway_errors, 5);
    assert_false(o->enforcing_consecutive_gateway_errors);
    assert_false(o->split_external_local_origin_errors);
    assert_int_equal(o->consecutive_local_origin_failures, 5);
    assert_int_equal(o->interval_ms, 10000);
    assert_int_equal(o->base_ejection_time_ms, 30000);
    assert_int_equal(o->max_ejection_percent, 10);
    assert_int_equal(o->min_health_percent, 0);

    /* A subset inherits the whole block, and replaces it whole with its own. */
    assert_true(weir_destination_rule_subset(a, "inherit")->policy.has_outlier_detection);
    assert_int_equal(
        weir_destination_rule_subset(a, "own-pool")->policy.outlier_detection.max_ejection_percent,
        10);
    o = &weir_destination_rule_subset(a, "own-outlier")->policy.outlier_detection;
    assert_int_equal(o->consecutive_5xx, 0); /* explicit 0: 5xx detection off */
    assert_false(o->enforcing_consecutive_5xx);
    assert_int_equal(o->consecutive_gateway_errors, 3);
    assert_true(o->enforcing_consecutive_gateway_errors);
    assert_true(o->split_external_local_origin_errors);
    assert_int_equal(o->consecutive_local_origin_failures, 5);
    assert_int_equal(o->interval_ms, 1000);
    assert_int_equal(o->base_ejection_time_ms, 15000);
    assert_int_equal(o->max_ejection_percent, 100);
    assert_int_equal(o->min_health_percent, 50);
    /* Explicit zeros Istio does not pass on: Envoy's (or Istio's) defaults stay. */
    o = &weir_destination_rule_subset(a, "split-default")->policy.outlier_detection;
    assert_int_equal(o->consecutive_local_origin_failures, 5);
    assert_int_equal(o->max_ejection_percent, 10);
    assert_int_equal(o->consecutive_gateway_errors, 0); /* written 0: never detects */
    assert_false(o->enforcing_consecutive_gateway_errors);
    assert_true(o->enforcing_consecutive_5xx);
    o = &weir_destination_rule_subset(a, "split-set")->policy.outlier_detection;
    assert_int_equal(o->consecutive_local_origin_failures, 7);
    assert_int_equal(o->consecutive_5xx, 9);

    const weir_destination_rule_t *b = weir_config_find_destination_rule(cfg, "b.example.com");
    assert_false(b->policy.has_outlier_detection);
    assert_false(weir_destination_rule_subset(b, "http-only")->policy.has_outlier_detection);
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

/* ---- Gateway server TLS, tls[] and tcp[] routes --------------------------------------------- */

static void test_gateway_server_tls(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_ok(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
        "spec:\n"
        "  servers:\n"
        "  - port: {number: 443, name: https, protocol: HTTPS}\n"
        "    hosts: [\"*\"]\n"
        "    tls:\n"
        "      mode: MUTUAL\n"
        "      serverCertificate: /etc/certs/cert.pem\n"
        "      private_key: /etc/certs/key.pem\n"
        "      caCertificates: /etc/certs/ca.pem\n"
        "      subjectAltNames: [client.example.com, spiffe://cluster.local/ns/a/sa/b]\n"
        "      minProtocolVersion: TLSV1_2\n"
        "      maxProtocolVersion: TLSV1_3\n"
        "  - port: {number: 8443, name: https-cred, protocol: HTTPS}\n"
        "    hosts: [\"*\"]\n"
        "    tls: {mode: SIMPLE, credentialName: web-cert}\n"
        "  - port: {number: 9443, name: tls, protocol: TLS}\n"
        "    hosts: [\"*\"]\n"
        "    tls: {mode: PASSTHROUGH}\n",
        &d);
    assert_int_equal(d.count, 0);
    const weir_gateway_server_t *s = &cfg->gateways[0].servers[0];
    assert_int_equal(s->tls_mode, WEIR_TLS_MODE_MUTUAL);
    assert_string_equal(s->server_certificate, "/etc/certs/cert.pem");
    assert_string_equal(s->private_key, "/etc/certs/key.pem");
    assert_string_equal(s->ca_certificates, "/etc/certs/ca.pem");
    assert_int_equal(s->n_subject_alt_names, 2);
    assert_string_equal(s->subject_alt_names[1], "spiffe://cluster.local/ns/a/sa/b");
    assert_int_equal(s->min_protocol_version, WEIR_TLS_V1_2);
    assert_int_equal(s->max_protocol_version, WEIR_TLS_V1_3);
    assert_null(s->credential_name);
    assert_int_equal(s->n_cipher_suites, 0);
    s = &cfg->gateways[0].servers[1];
    assert_int_equal(s->tls_mode, WEIR_TLS_MODE_SIMPLE);
    assert_string_equal(s->credential_name, "web-cert");
    assert_null(s->server_certificate);
    assert_int_equal(s->min_protocol_version, WEIR_TLS_AUTO);
    s = &cfg->gateways[0].servers[2];
    assert_int_equal(s->tls_mode, WEIR_TLS_MODE_PASSTHROUGH);
    assert_true(s->has_tls);
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

static void test_l4_routes(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = load_ok(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: edge, namespace: shop}\n"
        "spec:\n"
        "  hosts: [\"*.example.com\", db]\n"
        "  gateways: [mesh, edge/public]\n"
        "  tls:\n"
        "  - match:\n"
        "    - sniHosts: [a.example.com, \"*.b.example.com\"]\n"
        "      port: 443\n"
        "      destinationSubnets: [10.96.0.0/16, \"fd00::1\"]\n"
        "      sourceLabels: {app: client}\n"
        "      gateways: [edge/public]\n"
        "    - sniHosts: [db, db.shop.svc.cluster.local]\n"
        "    route:\n"
        "    - {destination: {host: a, port: {number: 8443}}, weight: 75}\n"
        "    - {destination: {host: b, subset: v1}, weight: 25}\n"
        "  tcp:\n"
        "  - match: [{port: 5432}]\n"
        "    route: [{destination: {host: db}}]\n"
        "  - route: [{destination: {host: db}, weight: 0}]\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\nkind: Gateway\n"
        "metadata: {name: public, namespace: edge}\n"
        "spec: {servers: [{port: {number: 443, name: tls, protocol: TLS}, hosts: [\"*\"],\n"
        "                  tls: {}}]}\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: b, namespace: shop}\n"
        "spec: {host: b, subsets: [{name: v1}]}\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        "metadata: {name: all, namespace: shop}\n"
        "spec: {hosts: [a, b, db], ports: [{number: 443, name: tls, protocol: TLS}]}\n",
        &d);
    char *out = printed(&d);
    assert_string_equal(out, "");
    const weir_virtual_service_t *vs = &cfg->virtual_services[0];
    assert_int_equal(vs->n_http, 0);
    assert_int_equal(vs->n_tls, 1);
    const weir_l4_route_t *t = &vs->tls[0];
    assert_int_equal(t->n_matches, 2);
    const weir_l4_match_t *m = &t->matches[0];
    assert_int_equal(m->n_sni_hosts, 2);
    assert_string_equal(m->sni_hosts[0], "a.example.com");
    assert_string_equal(m->sni_hosts[1], "*.b.example.com");
    assert_int_equal(m->port, 443);
    assert_int_equal(m->n_destination_subnets, 2);
    assert_string_equal(m->destination_subnets[0], "10.96.0.0/16");
    assert_int_equal(m->destination_ranges[0].prefix_len, 16);
    assert_int_equal(m->destination_ranges[1].family, AF_INET6);
    assert_string_equal(weir_labels_get(&m->source_labels, "app"), "client");
    assert_int_equal(m->n_gateways, 1);
    assert_string_equal(m->gateways[0], "edge/public");
    assert_int_equal(m->place.line, 9);
    /* SNI hosts stay as written (they are compared with the ClientHello), short ones too. */
    assert_string_equal(t->matches[1].sni_hosts[0], "db");
    assert_null(t->matches[1].gateways);
    assert_int_equal(t->n_route, 2);
    assert_string_equal(t->route[0].destination.host, "a.shop.svc.cluster.local");
    assert_int_equal(t->route[0].destination.port, 8443);
    assert_int_equal(t->route[0].weight, 75);
    assert_string_equal(t->route[1].destination.subset, "v1");

    assert_int_equal(vs->n_tcp, 2);
    assert_int_equal(vs->tcp[0].n_matches, 1);
    assert_int_equal(vs->tcp[0].matches[0].port, 5432);
    assert_int_equal(vs->tcp[0].matches[0].n_sni_hosts, 0);
    assert_int_equal(vs->tcp[1].n_matches, 0); /* catch-all */
    assert_true(vs->tcp[1].route[0].weight_set); /* one destination: its weight 0 is ignored */
    assert_int_equal(vs->tcp[1].place.line, 21);
    free(out);
    weir_config_free(cfg);
    weir_diags_clear(&d);
}

static const char *const golden_cases[] = {
    "bad_weight",      "missing_gateway", "undefined_subset",   "duplicate_subset",
    "bad_regex",       "duplicate_key",   "bad_syntax",         "missing_host",
    "bad_port",        "two_actions",     "uppercase_header",   "redirect_code",
    "zero_weights",    "missing_name",    "duplicate_resource", "bad_api_version",
    "wrong_type",      "string_match",    "gateway_tls",        "service_entry",
    "direct_response", "unknown_fields",  "not_applied",        "does_not_exist",
    "peer_authentication", "peer_authentication_shadowed", "client_tls",
    "service_entry_addresses", "bad_duration", "retry_on", "mirror_and_mirrors",
    "bad_percentage", "fault_abort", "outlier_detection", "gateway_server_tls", "tls_min_version",
    "tls_route", "host_header_rewrite", "connection_pool",
};

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_seed_shared),
        cmocka_unit_test(test_seed_local),
        cmocka_unit_test_teardown(test_configmap_mount, remove_tmp_root),
        cmocka_unit_test(test_paths_and_duplicates_across_files),
        cmocka_unit_test(test_kinds_and_versions),
        cmocka_unit_test(test_virtual_service),
        cmocka_unit_test(test_gateway),
        cmocka_unit_test(test_subset_policy_merge),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_retries),
        cmocka_unit_test(test_fault),
        cmocka_unit_test(test_mirrors),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_connection_pool),
        cmocka_unit_test(test_outlier_detection),
        cmocka_unit_test(test_gateway_server_tls),
        cmocka_unit_test(test_l4_routes),
        cmocka_unit_test(test_service_entry),
        cmocka_unit_test(test_client_tls),
        cmocka_unit_test(test_peer_authentication_parse),
        cmocka_unit_test(test_peer_authentication_precedence),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_service_by_address),
        cmocka_unit_test(test_service_accounts),
        cmocka_unit_test(test_resolve_host),
        cmocka_unit_test(test_labels),
    };
    enum {
        N_FIXED = sizeof(fixed) / sizeof(fixed[0]),
        N_GOLDEN = sizeof(golden_cases) / sizeof(golden_cases[0])
    };
    /* One test per golden case, named after it. */
    struct CMUnitTest tests[N_FIXED + N_GOLDEN];
    memcpy(tests, fixed, sizeof(fixed));
    for (size_t i = 0; i < N_GOLDEN; i++)
        tests[N_FIXED + i] =
            (struct CMUnitTest){golden_cases[i], test_golden, NULL, NULL, (void *)golden_cases[i]};
    return _cmocka_run_group_tests("test_config", tests, N_FIXED + N_GOLDEN, NULL, NULL);
}
