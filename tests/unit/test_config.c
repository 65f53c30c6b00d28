/* tests/unit/test_config.c: Istio resources from YAML, their validation and diagnostics.
 *
 * Golden cases: tests/data/config/<case>.yaml (or the directory <case>/) is loaded from
 * tests/data/config as the working directory, and weir_diags_print's output must equal
 * <case>.err byte for byte. The load must fail exactly when the golden file holds an error.
 * WEIR_UPDATE_GOLDEN=1 rewrites the .err files from the current output (review the diff). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/mem.h"

#define CONFIG_DATA WEIR_TEST_DATA "/config"
#define SHARED_SEED "/work/shared/scenarios/seed"

/* snprintf into an array, failing the test on truncation (and telling GCC it was checked). */
#define FMT(buf, ...) assert_true((size_t)snprintf((buf), sizeof(buf), __VA_ARGS__) < sizeof(buf))

static char *printed(const weir_diags_t *d)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    weir_diags_print(d, f);
    fclose(f);
    return buf;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    weir_buf_t b = WEIR_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        weir_buf_append(&b, chunk, n);
    fclose(f);
    if (b.base == NULL)
        weir_buf_append(&b, "", 0);
    return b.base;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

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
    /* Kubernetes Services are not read: the destination host is only a warning. */
    assert_int_equal(d.count, 2);
    assert_non_null(strstr(out, "virtualservice.yaml:19:15: warning: "
                                "http[0].route[0].destination.host: host "
                                "\"web-service.default.svc.cluster.local\" is not declared by "
                                "any ServiceEntry\n"));
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
                             "seed-local/virtualservice.yaml:19:15: warning: "
                             "http[0].route[0].destination.host: host "
                             "\"web-service.default.svc.cluster.local\" is not declared by any "
                             "ServiceEntry\n"
                             "seed-local/virtualservice.yaml:20:17: error: "
                             "http[0].route[0].destination.subset: subset \"v1\" is not defined "
                             "by any DestinationRule for host "
                             "\"web-service.default.svc.cluster.local\"\n"
                             "seed-local/virtualservice.yaml:28:15: warning: "
                             "http[1].route[0].destination.host: host "
                             "\"web-service.default.svc.cluster.local\" is not declared by any "
                             "ServiceEntry\n"
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
    assert_string_equal(out, "mem.yaml:10:11: warning: servers[0].tls.mode: not applied by "
                             "weir yet; ignored\n"
                             "mem.yaml:10:25: warning: servers[0].tls.credentialName: not "
                             "applied by weir yet; ignored\n");
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
        "  - {name: other-block, trafficPolicy: {connectionPool: {}}}\n"
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
    assert_int_equal(d.count, 2); /* consistentHash and connectionPool: not applied yet */
    assert_int_equal(count_level(&d, WEIR_DIAG_WARNING), 2);
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
                                 "  - address: \"2001:db8::1\"\n",
                                 &d);
    assert_int_equal(d.count, 0);
    const weir_service_entry_t *se = &cfg->service_entries[0];
    assert_int_equal(se->location, WEIR_LOCATION_MESH_EXTERNAL); /* Istio's default (S6) */
    assert_int_equal(se->resolution, WEIR_RESOLUTION_STATIC);
    assert_string_equal(se->hosts[1], "inventory.shop.svc.cluster.local");
    assert_int_equal(se->n_addresses, 2);
    assert_string_equal(se->addresses[1], "10.96.1.0/24");
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

static const char *const golden_cases[] = {
    "bad_weight",      "missing_gateway", "undefined_subset",   "duplicate_subset",
    "bad_regex",       "duplicate_key",   "bad_syntax",         "missing_host",
    "bad_port",        "two_actions",     "uppercase_header",   "redirect_code",
    "zero_weights",    "missing_name",    "duplicate_resource", "bad_api_version",
    "wrong_type",      "string_match",    "gateway_tls",        "service_entry",
    "direct_response", "unknown_fields",  "not_applied",        "does_not_exist",
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
        cmocka_unit_test(test_service_entry),
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
