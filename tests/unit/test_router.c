/* tests/unit/test_router.c: route tables built from hand-made configs (no YAML): binding,
 * vhost lookup, Envoy's match semantics, weighted picks, rewrites and redirects. Cases T5, T6
 * and T10 are from shared/reference/istio-semantics.md section 7. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/router.h"

/* ---- hand-built config: every allocation is tracked and freed after each test ---- */

static void **allocs;
static size_t n_allocs;
static pcre2_code *codes[64];
static size_t n_codes;

static void *track(void *p)
{
    allocs = realloc(allocs, (n_allocs + 1) * sizeof(*allocs));
    allocs[n_allocs++] = p;
    return p;
}

static void *tcalloc(size_t n, size_t size)
{
    return track(calloc(n, size));
}

static char *tstr(const char *s)
{
    return s ? track(strdup(s)) : NULL;
}

/* "a,b,c" -> {"a","b","c"} */
static char **list(const char *csv, size_t *n)
{
    char **out = tcalloc(16, sizeof(char *));
    *n = 0;
    char *copy = tstr(csv);
    for (char *tok = strtok(copy, ","); tok != NULL; tok = strtok(NULL, ","))
        out[(*n)++] = tok;
    return out;
}

static weir_labels_t labels(const char *spec)
{
    weir_labels_t l = {tcalloc(8, sizeof(weir_label_t)), 0};
    char *copy = tstr(spec);
    for (char *tok = strtok(copy, ","); tok != NULL; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        *eq = '\0';
        l.items[l.count].key = tok;
        l.items[l.count].value = eq + 1;
        l.count++;
    }
    return l;
}

#define CAP 32

static weir_string_match_t sm(weir_match_kind_t kind, const char *v)
{
    weir_string_match_t m = {kind, tstr(v), strlen(v), NULL};
    return m;
}

static weir_string_match_t exact(const char *v)
{
    return sm(WEIR_MATCH_EXACT, v);
}

static weir_string_match_t prefix(const char *v)
{
    return sm(WEIR_MATCH_PREFIX, v);
}

/* Compiled as config.c does (RE2 full match). */
static weir_string_match_t regex_flags(const char *v, uint32_t flags)
{
    weir_string_match_t m = sm(WEIR_MATCH_REGEX, v);
    int err;
    PCRE2_SIZE off;
    m.re = pcre2_compile((PCRE2_SPTR)v, strlen(v), flags, &err, &off, NULL);
    assert_non_null(m.re);
    codes[n_codes++] = m.re;
    return m;
}

static weir_string_match_t regex(const char *v)
{
    return regex_flags(v, PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF);
}

static const weir_string_match_t present = {WEIR_MATCH_NONE, NULL, 0, NULL};

static weir_config_t *cfg;

static weir_virtual_service_t *vs_add(const char *name, const char *hosts, const char *gateways)
{
    weir_virtual_service_t *vs = &cfg->virtual_services[cfg->n_virtual_services++];
    vs->name = tstr(name);
    vs->namespace = tstr("default");
    vs->hosts = list(hosts, &vs->n_hosts);
    /* config.c turns an omitted gateways list into {"mesh"} */
    vs->gateways = list(gateways ? gateways : "mesh", &vs->n_gateways);
    vs->http = tcalloc(CAP, sizeof(weir_http_route_t));
    return vs;
}

static weir_http_route_t *rule_add(weir_virtual_service_t *vs, const char *name)
{
    weir_http_route_t *r = &vs->http[vs->n_http++];
    r->name = tstr(name);
    r->action = WEIR_ACTION_ROUTE;
    r->matches = tcalloc(CAP, sizeof(weir_http_match_t));
    r->route = tcalloc(CAP, sizeof(weir_route_destination_t));
    r->redirect.redirect_code = 301;
    return r;
}

static weir_http_match_t *match_add(weir_http_route_t *r)
{
    weir_http_match_t *m = &r->matches[r->n_matches++];
    m->headers = tcalloc(CAP, sizeof(weir_kv_match_t));
    m->without_headers = tcalloc(CAP, sizeof(weir_kv_match_t));
    m->query_params = tcalloc(CAP, sizeof(weir_kv_match_t));
    return m;
}

static void dest_add(weir_http_route_t *r, const char *host, const char *subset, uint32_t port,
                     int32_t weight)
{
    weir_route_destination_t *d = &r->route[r->n_route++];
    d->destination.host = tstr(host);
    d->destination.subset = tstr(subset);
    d->destination.port = port;
    d->weight = weight;
    d->weight_set = weight != 0;
}

static void hdr(weir_http_match_t *m, const char *name, weir_string_match_t s)
{
    m->headers[m->n_headers++] = (weir_kv_match_t){tstr(name), s};
}

static void without(weir_http_match_t *m, const char *name, weir_string_match_t s)
{
    m->without_headers[m->n_without_headers++] = (weir_kv_match_t){tstr(name), s};
}

static void query(weir_http_match_t *m, const char *name, weir_string_match_t s)
{
    m->query_params[m->n_query_params++] = (weir_kv_match_t){tstr(name), s};
}

static void rewrite(weir_http_route_t *r, const char *uri)
{
    r->has_rewrite = true;
    r->rewrite.uri = tstr(uri);
}

#define HTTPBIN "httpbin.default.svc.cluster.local"
#define MULTI "multi.default.svc.cluster.local"

/* httpbin:8000 (target 80) with WorkloadEntries v1/v2 and DR subsets v1/v2; multi has two
 * ports, so a destination without a port takes the listener's. */
static int setup(void **state)
{
    cfg = tcalloc(1, sizeof(*cfg));
    cfg->virtual_services = tcalloc(CAP, sizeof(weir_virtual_service_t));
    cfg->service_entries = tcalloc(CAP, sizeof(weir_service_entry_t));
    cfg->workload_entries = tcalloc(CAP, sizeof(weir_workload_entry_t));
    cfg->destination_rules = tcalloc(CAP, sizeof(weir_destination_rule_t));

    weir_service_entry_t *se = &cfg->service_entries[cfg->n_service_entries++];
    se->name = tstr("httpbin");
    se->namespace = tstr("default");
    se->hosts = list(HTTPBIN, &se->n_hosts);
    se->ports = tcalloc(1, sizeof(weir_service_port_t));
    se->ports[0] = (weir_service_port_t){8000, tstr("http"), tstr("HTTP"), 80};
    se->n_ports = 1;
    se->has_workload_selector = true;
    se->workload_selector = labels("app=httpbin");
    se->resolution = WEIR_RESOLUTION_STATIC;

    const char *we[][2] = {{"10.244.0.11", "app=httpbin,version=v1"},
                           {"10.244.0.12", "app=httpbin,version=v2"}};
    for (size_t i = 0; i < 2; i++) {
        weir_workload_entry_t *w = &cfg->workload_entries[cfg->n_workload_entries++];
        w->name = tstr(we[i][0]);
        w->namespace = tstr("default");
        w->address = tstr(we[i][0]);
        w->labels = labels(we[i][1]);
    }

    weir_destination_rule_t *dr = &cfg->destination_rules[cfg->n_destination_rules++];
    dr->name = tstr("httpbin");
    dr->namespace = tstr("default");
    dr->host = tstr(HTTPBIN);
    dr->subsets = tcalloc(2, sizeof(weir_subset_t));
    dr->subsets[0] = (weir_subset_t){.name = tstr("v1"), .labels = labels("version=v1")};
    dr->subsets[1] = (weir_subset_t){.name = tstr("v2"), .labels = labels("version=v2")};
    dr->n_subsets = 2;

    se = &cfg->service_entries[cfg->n_service_entries++];
    se->name = tstr("multi");
    se->namespace = tstr("default");
    se->hosts = list(MULTI, &se->n_hosts);
    se->ports = tcalloc(2, sizeof(weir_service_port_t));
    se->ports[0] = (weir_service_port_t){80, tstr("http"), tstr("HTTP"), 80};
    se->ports[1] = (weir_service_port_t){9000, tstr("http-admin"), tstr("HTTP"), 9000};
    se->n_ports = 2;
    return 0;
}

/* The snapshot's role: build each cluster once and own it. */
static weir_cluster_t *clusters[64];
static size_t n_clusters;
static weir_route_table_t *table;

static weir_cluster_t *lookup(void *ctx, const char *host, const char *subset, uint32_t port)
{
    const weir_config_t *c = ctx;
    weir_cluster_t *cl = weir_cluster_build(c, host, subset, port);
    for (size_t i = 0; i < n_clusters; i++) {
        if (strcmp(clusters[i]->name, cl->name) == 0) {
            weir_cluster_free(cl);
            return clusters[i];
        }
    }
    clusters[n_clusters++] = cl;
    return cl;
}

static int teardown(void **state)
{
    weir_router_free(table);
    table = NULL;
    for (size_t i = 0; i < n_clusters; i++)
        weir_cluster_free(clusters[i]);
    n_clusters = 0;
    for (size_t i = 0; i < n_codes; i++)
        pcre2_code_free(codes[i]);
    n_codes = 0;
    for (size_t i = 0; i < n_allocs; i++)
        free(allocs[i]);
    free(allocs);
    allocs = NULL;
    n_allocs = 0;
    cfg = NULL;
    return 0;
}

/* Builds the table for one listener; server_hosts NULL: a sidecar. */
static weir_route_table_t *build(const char *gateway, const char *server_hosts, uint32_t port)
{
    size_t n_gw, n_sh = 0;
    char **gw = list(gateway, &n_gw);
    char **sh = server_hosts ? list(server_hosts, &n_sh) : NULL;
    weir_router_scope_t scope = {
        .gateway_names = (const char *const *)gw,
        .n_gateway_names = n_gw,
        .server_hosts = (const char *const *)sh,
        .n_server_hosts = n_sh,
        .listener_port = port,
        .lookup = lookup,
        .lookup_ctx = cfg,
    };
    weir_router_free(table);
    table = weir_router_build(cfg, &scope);
    assert_non_null(table);
    return table;
}

#define H(n, v) ((weir_http_header_t){n, sizeof(n) - 1, v, sizeof(v) - 1})

static const weir_route_t *go_full(const char *method, const char *scheme, const char *path,
                                   const char *authority, const weir_http_header_t *h, size_t nh)
{
    weir_route_request_t req = {
        .method = method,
        .method_len = strlen(method),
        .path = path,
        .path_len = strlen(path),
        .authority = authority,
        .authority_len = strlen(authority),
        .scheme = scheme,
        .headers = h,
        .n_headers = nh,
    };
    return weir_router_match(table, &req);
}

static const weir_route_t *go(const char *path, const weir_http_header_t *h, size_t nh)
{
    return go_full("GET", "http", path, HTTPBIN, h, nh);
}

/* The subset the route sends to, "" for the whole service, "-" for no route. */
static const char *subset_of(const weir_route_t *r)
{
    if (r == NULL)
        return "-";
    assert_true(r->n_clusters > 0);
    const char *s = r->clusters[weir_route_pick(r, 0)]->subset;
    return s ? s : "";
}

static const weir_vhost_t *vhost(const char *authority)
{
    return weir_router_find_vhost(table, authority, strlen(authority));
}

static const char *domain_of(const char *authority)
{
    const weir_vhost_t *v = vhost(authority);
    return v ? v->domain : "-";
}

static char *rewritten(const weir_route_t *r, const char *path)
{
    static char out[256];
    weir_buf_t b = WEIR_BUF_INIT;
    if (!weir_route_rewrite_path(r, path, strlen(path), &b))
        snprintf(out, sizeof(out), "(none)");
    else
        snprintf(out, sizeof(out), "%.*s", (int)b.len, b.base);
    weir_buf_free(&b);
    return out;
}

/* ---- vhosts ---- */

static void test_vhost_precedence(void **state)
{
    rule_add(vs_add("star-example", "*.example.com", NULL), "a");
    rule_add(vs_add("exact", "a.example.com", NULL), "b");
    rule_add(vs_add("star-b", "*.b.example.com", NULL), "c");
    rule_add(vs_add("all", "*", NULL), "d");
    build("mesh", NULL, 80);

    /* ordered for lookup: exact, suffixes longest first, "*" */
    assert_int_equal(table->n_vhosts, 4);
    assert_string_equal(table->vhosts[0].domain, "a.example.com");
    assert_string_equal(table->vhosts[1].domain, "*.b.example.com");
    assert_string_equal(table->vhosts[2].domain, "*.example.com");
    assert_string_equal(table->vhosts[3].domain, "*");

    assert_string_equal(domain_of("a.example.com"), "a.example.com");
    assert_string_equal(domain_of("x.b.example.com"), "*.b.example.com");
    assert_string_equal(domain_of("a.b.example.com"), "*.b.example.com");
    assert_string_equal(domain_of("c.example.com"), "*.example.com");
    assert_string_equal(domain_of("x.y.example.com"), "*.example.com");
    /* the suffix wildcard needs a label for its star */
    assert_string_equal(domain_of("example.com"), "*");
    assert_string_equal(domain_of(".example.com"), "*");
    assert_string_equal(domain_of("b.example.com"), "*.example.com");
    assert_string_equal(domain_of("other.org"), "*");
    assert_string_equal(domain_of(""), "*");
}

static void test_vhost_port_case_ipv6(void **state)
{
    rule_add(vs_add("mixed", "API.Example.com", NULL), "a");
    rule_add(vs_add("v6", "[fd00::1]", NULL), "b");
    rule_add(vs_add("bare-v6", "fd00::2", NULL), "c");
    build("mesh", NULL, 80);

    assert_string_equal(table->vhosts[0].domain, "api.example.com");
    assert_string_equal(domain_of("api.example.com"), "api.example.com");
    assert_string_equal(domain_of("api.example.com:8080"), "api.example.com");
    assert_string_equal(domain_of("API.EXAMPLE.COM:80"), "api.example.com");
    assert_string_equal(domain_of("api.example.com:"), "api.example.com");
    assert_string_equal(domain_of("api.example.com.evil"), "-");
    assert_string_equal(domain_of("[fd00::1]"), "[fd00::1]");
    assert_string_equal(domain_of("[FD00::1]:8443"), "[fd00::1]");
    /* a bare IPv6 literal has no port to strip */
    assert_string_equal(domain_of("fd00::2"), "fd00::2");
    assert_string_equal(domain_of("[fd00::3]:80"), "-");

    /* with no vhost, no route */
    assert_null(go_full("GET", "http", "/", "nope", NULL, 0));
}

static void test_empty_table(void **state)
{
    build("mesh", NULL, 80);
    assert_int_equal(table->n_vhosts, 0);
    assert_null(vhost("anything"));
    assert_null(go("/", NULL, 0));
}

/* ---- binding ---- */

static void test_server_host_binding(void **state)
{
    rule_add(vs_add("dev", "dev.example.com", "istio-system/gw"), "dev");
    rule_add(vs_add("apex", "example.com", "istio-system/gw"), "apex");
    rule_add(vs_add("star", "*", "istio-system/gw"), "star");
    rule_add(vs_add("other", "other.org", "istio-system/gw"), "other");
    rule_add(vs_add("mixed-case", "Shop.EXAMPLE.com", "istio-system/gw"), "shop");
    rule_add(vs_add("wider", "*.com", "istio-system/gw"), "wider");

    build("istio-system/gw", "*.Example.com", 80);
    assert_string_equal(domain_of("dev.example.com"), "dev.example.com");
    assert_string_equal(go_full("GET", "http", "/", "dev.example.com", NULL, 0)->name, "dev");
    assert_string_equal(go_full("GET", "http", "/", "shop.example.com", NULL, 0)->name, "shop");
    /* `*` and `*.com` bind as the server's `*.example.com`, so apex and other stay unbound;
     * both land on one vhost, in config order */
    assert_string_equal(domain_of("x.example.com"), "*.example.com");
    assert_string_equal(go_full("GET", "http", "/", "x.example.com", NULL, 0)->name, "star");
    assert_int_equal(vhost("x.example.com")->n_routes, 1);
    assert_string_equal(domain_of("example.com"), "-");
    assert_string_equal(domain_of("other.org"), "-");
    assert_int_equal(table->n_vhosts, 3);

    /* server "*": every VS host binds as written */
    build("istio-system/gw", "*", 80);
    assert_string_equal(domain_of("other.org"), "other.org");
    assert_string_equal(domain_of("example.com"), "example.com");
    assert_string_equal(domain_of("anything.net"), "*");
    assert_string_equal(domain_of("a.b.com"), "*.com");

    /* an exact server host: only that host, and wildcard VS hosts bind as it */
    build("istio-system/gw", "dev.example.com", 80);
    assert_int_equal(table->n_vhosts, 1);
    assert_string_equal(table->vhosts[0].domain, "dev.example.com");
    assert_int_equal(table->vhosts[0].n_routes, 1); /* dev; star and wider are closed out */
    assert_string_equal(table->vhosts[0].routes[0].name, "dev");

    /* several server hosts */
    build("istio-system/gw", "example.com,other.org", 80);
    assert_string_equal(domain_of("example.com"), "example.com");
    assert_string_equal(go_full("GET", "http", "/", "example.com", NULL, 0)->name, "apex");
    /* `*` binds to both server hosts, and comes before `other` in config order */
    assert_string_equal(go_full("GET", "http", "/", "other.org", NULL, 0)->name, "star");
    assert_string_equal(domain_of("dev.example.com"), "-");

    /* VirtualServices of other gateways do not bind at all */
    build("istio-system/other", "*", 80);
    assert_int_equal(table->n_vhosts, 0);
}

static void test_match_gateways_override(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", HTTPBIN, "istio-system/gw,mesh");
    weir_http_route_t *r = rule_add(vs, "mesh-only");
    weir_http_match_t *m = match_add(r);
    hdr(m, "x-canary", present);
    m->gateways = list("mesh", &m->n_gateways);
    dest_add(r, HTTPBIN, "v2", 0, 0);
    r = rule_add(vs, "rest");
    dest_add(r, HTTPBIN, "v1", 0, 0);

    weir_http_header_t canary[] = {H("x-canary", "1")};
    build("mesh", NULL, 80);
    assert_int_equal(table->vhosts[0].n_routes, 2);
    assert_string_equal(subset_of(go("/", canary, 1)), "v2");

    build("istio-system/gw", "*", 80);
    assert_int_equal(table->vhosts[0].n_routes, 1);
    assert_string_equal(subset_of(go("/", canary, 1)), "v1");

    /* A match's gateways narrow a VirtualService; they do not select it (Istio indexes by
     * the top-level list). */
    weir_virtual_service_t *gw_only = vs_add("gw-only", "gw.example.com", "istio-system/gw");
    r = rule_add(gw_only, "x");
    m = match_add(r);
    m->gateways = list("istio-system/other", &m->n_gateways);
    dest_add(r, HTTPBIN, NULL, 0, 0);
    build("istio-system/other", "*", 80);
    assert_int_equal(table->n_vhosts, 0);
    build("istio-system/gw", "*", 80);
    assert_non_null(vhost("gw.example.com"));
    assert_int_equal(vhost("gw.example.com")->n_routes, 0);
    assert_null(go_full("GET", "http", "/", "gw.example.com", NULL, 0));

    build("mesh", NULL, 80);
    assert_null(vhost("gw.example.com"));
}

static void test_match_port_filter(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", HTTPBIN, NULL);
    weir_http_route_t *r = rule_add(vs, "on-8080");
    weir_http_match_t *m = match_add(r);
    m->port = 8080;
    m->uri = prefix("/");
    dest_add(r, HTTPBIN, "v2", 0, 0);
    r = rule_add(vs, "rest");
    dest_add(r, HTTPBIN, "v1", 0, 0);

    build("mesh", NULL, 80);
    assert_int_equal(table->vhosts[0].n_routes, 1);
    assert_string_equal(subset_of(go("/", NULL, 0)), "v1");
    build("mesh", NULL, 8080);
    /* kept, and as prefix "/" with nothing else it is a catch-all: the rest is dead */
    assert_int_equal(table->vhosts[0].n_routes, 1);
    assert_string_equal(subset_of(go("/", NULL, 0)), "v2");
}

static void test_routes_concatenate_per_domain(void **state)
{
    weir_virtual_service_t *a = vs_add("a", HTTPBIN "," HTTPBIN, NULL);
    weir_http_route_t *r = rule_add(a, "a-v2");
    match_add(r)->uri = prefix("/v2");
    dest_add(r, HTTPBIN, "v2", 0, 0);
    weir_virtual_service_t *b = vs_add("b", HTTPBIN ",other.default.svc.cluster.local", NULL);
    r = rule_add(b, "b-all");
    dest_add(r, HTTPBIN, "v1", 0, 0);
    weir_virtual_service_t *c = vs_add("c", HTTPBIN, NULL);
    r = rule_add(c, "c-dead");
    dest_add(r, HTTPBIN, "v2", 0, 0);

    build("mesh", NULL, 80);
    assert_int_equal(table->n_vhosts, 2);
    const weir_vhost_t *v = vhost(HTTPBIN);
    /* a's host twice gives its routes once; b's catch-all closes the vhost to c */
    assert_int_equal(v->n_routes, 2);
    assert_string_equal(v->routes[0].name, "a-v2");
    assert_ptr_equal(v->routes[0].vs, a);
    assert_string_equal(v->routes[1].name, "b-all");
    assert_null(v->routes[1].match);
    assert_int_equal(vhost("other.default.svc.cluster.local")->n_routes, 1);
    assert_string_equal(subset_of(go("/v2/x", NULL, 0)), "v2");
    assert_string_equal(subset_of(go("/v1", NULL, 0)), "v1");
}

static void test_route_names_and_actions(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", HTTPBIN, NULL);
    weir_http_route_t *r = rule_add(vs, "named");
    weir_http_match_t *m = match_add(r);
    m->uri = prefix("/a");
    m->name = tstr("m1");
    match_add(r)->uri = prefix("/b");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, NULL);
    match_add(r)->uri = prefix("/c");
    r->action = WEIR_ACTION_DIRECT_RESPONSE;
    r->direct.status = 418;
    build("mesh", NULL, 80);

    assert_string_equal(go("/a", NULL, 0)->name, "named.m1");
    assert_string_equal(go("/b", NULL, 0)->name, "named");
    const weir_route_t *d = go("/c", NULL, 0);
    assert_string_equal(d->name, "default");
    assert_int_equal(d->n_clusters, 0);
    assert_int_equal(d->rule->direct.status, 418);
    assert_null(go("/d", NULL, 0));
}

/* ---- destinations and weights ---- */

static void test_destination_ports(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", HTTPBIN, NULL);
    weir_http_route_t *r = rule_add(vs, "x");
    dest_add(r, HTTPBIN, "v1", 0, 50);  /* the only port: 8000 */
    dest_add(r, MULTI, NULL, 0, 30);    /* several ports: the listener's */
    dest_add(r, MULTI, NULL, 9000, 20); /* as written */
    build("mesh", NULL, 80);

    const weir_route_t *rt = go("/", NULL, 0);
    assert_int_equal(rt->n_clusters, 3);
    assert_string_equal(rt->clusters[0]->name, "outbound|8000|v1|" HTTPBIN);
    assert_int_equal(rt->clusters[0]->n_endpoints, 1);
    assert_string_equal(rt->clusters[1]->name, "outbound|80||" MULTI);
    assert_string_equal(rt->clusters[2]->name, "outbound|9000||" MULTI);
}

static void test_weighted_pick(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", HTTPBIN, NULL);
    weir_http_route_t *r = rule_add(vs, "split");
    match_add(r)->uri = prefix("/split");
    dest_add(r, HTTPBIN, "v1", 0, 80);
    dest_add(r, HTTPBIN, "v2", 0, 20);
    r = rule_add(vs, "eight-two");
    match_add(r)->uri = prefix("/8-2");
    dest_add(r, HTTPBIN, "v1", 0, 8);
    dest_add(r, HTTPBIN, "v2", 0, 2);
    r = rule_add(vs, "zero");
    match_add(r)->uri = prefix("/zero");
    dest_add(r, HTTPBIN, "v1", 0, 100);
    dest_add(r, HTTPBIN, "v2", 0, 0);
    r = rule_add(vs, "zero-first");
    match_add(r)->uri = prefix("/zfirst");
    dest_add(r, HTTPBIN, "v2", 0, 0);
    dest_add(r, HTTPBIN, "v1", 0, 50);
    dest_add(r, HTTPBIN, NULL, 0, 50);
    r = rule_add(vs, "single");
    dest_add(r, HTTPBIN, "v1", 0, 0);
    build("mesh", NULL, 80);

    const weir_route_t *split = go("/split", NULL, 0);
    assert_int_equal(split->cumulative_weight[0], 80);
    assert_int_equal(split->cumulative_weight[1], 100);
    size_t count[2] = {0, 0};
    for (uint32_t v = 0; v < 1000; v++)
        count[weir_route_pick(split, v)]++;
    assert_int_equal(count[0], 800);
    assert_int_equal(count[1], 200);
    assert_int_equal(weir_route_pick(split, 79), 0);
    assert_int_equal(weir_route_pick(split, 80), 1);
    assert_int_equal(weir_route_pick(split, 99), 1);
    assert_int_equal(weir_route_pick(split, 100), 0);
    assert_int_equal(weir_route_pick(split, UINT32_MAX), UINT32_MAX % 100 < 80 ? 0 : 1);

    const weir_route_t *ratio = go("/8-2", NULL, 0);
    count[0] = count[1] = 0;
    for (uint32_t v = 0; v < 1000; v++)
        count[weir_route_pick(ratio, v)]++;
    assert_int_equal(count[0], 800);
    assert_int_equal(count[1], 200);

    const weir_route_t *zero = go("/zero", NULL, 0);
    for (uint32_t v = 0; v < 1000; v++)
        assert_int_equal(weir_route_pick(zero, v), 0);
    const weir_route_t *zfirst = go("/zfirst", NULL, 0);
    for (uint32_t v = 0; v < 1000; v++)
        assert_int_not_equal(weir_route_pick(zfirst, v), 0);

    const weir_route_t *single = go("/other", NULL, 0);
    assert_int_equal(single->n_clusters, 1);
    assert_int_equal(single->cumulative_weight[0], 1);
    assert_int_equal(weir_route_pick(single, 12345), 0);
    assert_string_equal(subset_of(single), "v1");
}

/* ---- T5: prefix rewrite ---- */

static void test_t5_prefix_rewrite(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", HTTPBIN, NULL);
    weir_http_route_t *r = rule_add(vs, "v1-slash");
    match_add(r)->uri = prefix("/v1/");
    rewrite(r, "/");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "v1-exact");
    match_add(r)->uri = exact("/v1");
    rewrite(r, "/");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "foo");
    match_add(r)->uri = exact("/foo");
    rewrite(r, "/new/path");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "re");
    match_add(r)->uri = regex("/re/[a-z]+");
    rewrite(r, "/regex");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "plain");
    match_add(r)->uri = prefix("/plain");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    build("mesh", NULL, 80);

    const weir_route_t *rt = go("/v1/get?x=1", NULL, 0);
    assert_string_equal(rt->name, "v1-slash");
    assert_string_equal(rewritten(rt, "/v1/get?x=1"), "/get?x=1");
    rt = go("/v1", NULL, 0);
    assert_string_equal(rt->name, "v1-exact");
    assert_string_equal(rewritten(rt, "/v1"), "/");
    rt = go("/v1?x=1", NULL, 0);
    assert_string_equal(rt->name, "v1-exact");
    assert_string_equal(rewritten(rt, "/v1?x=1"), "/?x=1");
    /* exact-match rewrite replaces the whole path and keeps the query */
    rt = go("/foo?key=value", NULL, 0);
    assert_string_equal(rewritten(rt, "/foo?key=value"), "/new/path?key=value");
    rt = go("/re/abc?q", NULL, 0);
    assert_string_equal(rt->name, "re");
    assert_string_equal(rewritten(rt, "/re/abc?q"), "/regex?q");
    /* "/v1x" is neither "/v1/" nor exactly "/v1" */
    assert_null(go("/v1x", NULL, 0));
    assert_string_equal(rewritten(go("/plain/x", NULL, 0), "/plain/x"), "(none)");
}

static void test_t5_negative_double_slash(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", HTTPBIN, NULL);
    weir_http_route_t *r = rule_add(vs, "v1");
    match_add(r)->uri = prefix("/v1");
    rewrite(r, "/");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "catch-all");
    rewrite(r, "/api");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    build("mesh", NULL, 80);

    const weir_route_t *rt = go("/v1/get", NULL, 0);
    assert_string_equal(rewritten(rt, "/v1/get"), "//get");
    assert_string_equal(rewritten(rt, "/v1/get?a=b"), "//get?a=b");
    assert_string_equal(rewritten(rt, "/v1"), "/");
    assert_string_equal(rewritten(rt, "/v1?a"), "/?a");
    /* A rule without a uri match is Envoy prefix "/": only that slash is swapped. */
    rt = go("/x/y?z", NULL, 0);
    assert_string_equal(rt->name, "catch-all");
    assert_string_equal(rewritten(rt, "/x/y?z"), "/apix/y?z");
}

/* ---- T6: headers, first match wins, catch-all ---- */

static void test_t6_header_match_and_catch_all(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", HTTPBIN, NULL);
    weir_http_route_t *r = rule_add(vs, "jason");
    hdr(match_add(r), "end-user", exact("jason"));
    dest_add(r, HTTPBIN, "v2", 0, 0);
    r = rule_add(vs, "all");
    dest_add(r, HTTPBIN, "v1", 0, 0);
    r = rule_add(vs, "never");
    match_add(r)->uri = prefix("/never");
    dest_add(r, HTTPBIN, "v2", 0, 0);
    build("mesh", NULL, 80);

    /* the rule after the catch-all is not even emitted */
    assert_int_equal(table->vhosts[0].n_routes, 2);

    weir_http_header_t jason[] = {H("end-user", "jason")};
    weir_http_header_t upper[] = {H("end-user", "Jason")};
    weir_http_header_t name_case[] = {H("End-User", "jason")};
    weir_http_header_t twice[] = {H("end-user", "bob"), H("end-user", "jason")};
    weir_http_header_t prefix_only[] = {H("end-user", "jasonx")};
    assert_string_equal(subset_of(go("/", jason, 1)), "v2");
    assert_string_equal(subset_of(go("/", upper, 1)), "v1");
    assert_string_equal(subset_of(go("/", name_case, 1)), "v2");
    assert_string_equal(subset_of(go("/", twice, 2)), "v1");
    assert_string_equal(subset_of(go("/", prefix_only, 1)), "v1");
    assert_string_equal(subset_of(go("/never", NULL, 0)), "v1");
    assert_string_equal(subset_of(go("/never", jason, 1)), "v2");
}

static void test_t6_without_headers(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", HTTPBIN, NULL);
    weir_http_route_t *r = rule_add(vs, "not-jason");
    without(match_add(r), "end-user", exact("jason"));
    dest_add(r, HTTPBIN, "v2", 0, 0);
    r = rule_add(vs, "no-debug");
    without(match_add(r), "x-debug", present);
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "rest");
    dest_add(r, HTTPBIN, "v1", 0, 0);
    build("mesh", NULL, 80);

    weir_http_header_t jason[] = {H("end-user", "jason")};
    weir_http_header_t bob[] = {H("end-user", "bob")};
    weir_http_header_t jason_debug[] = {H("end-user", "jason"), H("x-debug", "")};
    assert_string_equal(subset_of(go("/", NULL, 0)), "v2"); /* missing header: "" != jason */
    assert_string_equal(subset_of(go("/", bob, 1)), "v2");
    assert_string_equal(go("/", jason, 1)->name, "no-debug");
    assert_string_equal(go("/", jason_debug, 2)->name, "rest");
}

static void test_header_kinds(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", HTTPBIN, NULL);
    weir_http_route_t *r = rule_add(vs, "presence");
    hdr(match_add(r), "x-present", present);
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "prefix");
    hdr(match_add(r), "x-p", prefix("abc"));
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "regex");
    hdr(match_add(r), "x-r", regex("v[0-9]"));
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "and");
    weir_http_match_t *m = match_add(r);
    hdr(m, "x-a", exact("1"));
    hdr(m, "x-b", exact("2"));
    dest_add(r, HTTPBIN, NULL, 0, 0);
    build("mesh", NULL, 80);

    weir_http_header_t empty[] = {H("X-Present", "")};
    weir_http_header_t p[] = {H("x-p", "abcdef")};
    weir_http_header_t p_no[] = {H("x-p", "xabc")};
    weir_http_header_t r1[] = {H("x-r", "v1")};
    weir_http_header_t r12[] = {H("x-r", "v12")};
    weir_http_header_t ab[] = {H("x-b", "2"), H("x-a", "1")};
    weir_http_header_t a_only[] = {H("x-a", "1")};
    assert_string_equal(go("/", empty, 1)->name, "presence");
    assert_string_equal(go("/", p, 1)->name, "prefix");
    assert_null(go("/", p_no, 1));
    assert_string_equal(go("/", r1, 1)->name, "regex");
    assert_null(go("/", r12, 1));
    assert_string_equal(go("/", ab, 2)->name, "and");
    assert_null(go("/", a_only, 1));
    assert_null(go("/", NULL, 0));
}

/* ---- uri, method, scheme, authority, query ---- */

static void test_uri_regex_full_match(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", HTTPBIN, NULL);
    weir_http_route_t *r = rule_add(vs, "v-digit");
    match_add(r)->uri = regex("/v[0-9]");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    /* compiled without the anchoring flags, the router still asks for a full match */
    r = rule_add(vs, "loose");
    match_add(r)->uri = regex_flags("/w[0-9]", PCRE2_UTF);
    dest_add(r, HTTPBIN, NULL, 0, 0);
    build("mesh", NULL, 80);

    assert_non_null(go("/v1", NULL, 0));
    assert_non_null(go("/v1?page=2", NULL, 0)); /* the query is not part of the path */
    assert_null(go("/v12", NULL, 0));
    assert_null(go("/v1/x", NULL, 0));
    assert_null(go("x/v1", NULL, 0));
    assert_non_null(go("/w3", NULL, 0));
    assert_null(go("/w34", NULL, 0));
    assert_null(go("/a/w3", NULL, 0));
    /* invalid UTF-8 in the path is no match, not a crash */
    assert_null(go("/v\xff", NULL, 0));
}

static void test_uri_exact_prefix_case(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", HTTPBIN, NULL);
    weir_http_route_t *r = rule_add(vs, "exact-icase");
    weir_http_match_t *m = match_add(r);
    m->uri = exact("/Foo");
    m->ignore_uri_case = true;
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "prefix-icase");
    m = match_add(r);
    m->uri = prefix("/API/");
    m->ignore_uri_case = true;
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "exact");
    match_add(r)->uri = exact("/Bar");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    build("mesh", NULL, 80);

    assert_string_equal(go("/foo", NULL, 0)->name, "exact-icase");
    assert_string_equal(go("/FOO?x", NULL, 0)->name, "exact-icase");
    assert_null(go("/foo/", NULL, 0));
    assert_string_equal(go("/api/x", NULL, 0)->name, "prefix-icase");
    assert_string_equal(go("/Api/", NULL, 0)->name, "prefix-icase");
    assert_null(go("/api", NULL, 0));
    assert_string_equal(go("/Bar", NULL, 0)->name, "exact");
    assert_null(go("/bar", NULL, 0));
    assert_string_equal(rewritten(go("/Bar", NULL, 0), "/Bar"), "(none)");
}

static void test_method_scheme_authority(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", HTTPBIN ",*.example.com", NULL);
    weir_http_route_t *r = rule_add(vs, "post");
    match_add(r)->method = exact("POST");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "https");
    match_add(r)->scheme = exact("https");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "authority-port");
    match_add(r)->authority = exact("a.example.com:8080");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "authority-prefix");
    match_add(r)->authority = prefix("b.");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "authority-regex");
    match_add(r)->authority = regex("c\\.example\\.com(:[0-9]+)?");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    build("mesh", NULL, 80);

    assert_string_equal(go_full("POST", "http", "/", HTTPBIN, NULL, 0)->name, "post");
    assert_null(go_full("post", "http", "/", HTTPBIN, NULL, 0)); /* methods are case-sensitive */
    assert_null(go_full("GET", "http", "/", HTTPBIN, NULL, 0));
    assert_string_equal(go_full("GET", "https", "/", HTTPBIN, NULL, 0)->name, "https");
    assert_string_equal(go_full("GET", "http", "/", "a.example.com:8080", NULL, 0)->name,
                        "authority-port");
    /* authority is matched as sent: without the port it is another authority */
    assert_null(go_full("GET", "http", "/", "a.example.com", NULL, 0));
    assert_string_equal(go_full("GET", "http", "/", "b.example.com:1", NULL, 0)->name,
                        "authority-prefix");
    assert_string_equal(go_full("GET", "http", "/", "c.example.com:99", NULL, 0)->name,
                        "authority-regex");
    assert_null(go_full("GET", "http", "/", "c.example.com:x", NULL, 0));
}

static void test_query_params(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", HTTPBIN, NULL);
    weir_http_route_t *r = rule_add(vs, "empty");
    query(match_add(r), "flag", exact(""));
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "one");
    query(match_add(r), "key", exact("1"));
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "digits");
    query(match_add(r), "n", regex("[0-9]+"));
    dest_add(r, HTTPBIN, NULL, 0, 0);
    r = rule_add(vs, "present");
    query(match_add(r), "p", present);
    dest_add(r, HTTPBIN, NULL, 0, 0);
    build("mesh", NULL, 80);

    assert_string_equal(go("/?flag", NULL, 0)->name, "empty");
    assert_string_equal(go("/?flag=", NULL, 0)->name, "empty");
    assert_string_equal(go("/x?a=1&flag", NULL, 0)->name, "empty");
    assert_null(go("/?flag=1", NULL, 0));
    assert_null(go("/?flagx", NULL, 0));
    assert_null(go("/flag", NULL, 0));
    assert_string_equal(go("/?a=2&key=1", NULL, 0)->name, "one");
    assert_string_equal(go("/?&&key=1&", NULL, 0)->name, "one");
    assert_null(go("/?key=2&key=1", NULL, 0)); /* the first occurrence decides */
    assert_null(go("/?key=10", NULL, 0));
    assert_null(go("/?xkey=1", NULL, 0));
    assert_string_equal(go("/?n=12", NULL, 0)->name, "digits");
    assert_null(go("/?n=12a", NULL, 0));
    assert_null(go("/?n=", NULL, 0));
    assert_string_equal(go("/?p", NULL, 0)->name, "present");
    assert_string_equal(go("/?p=anything", NULL, 0)->name, "present");
    assert_null(go("/?", NULL, 0));
    assert_null(go("/", NULL, 0));
}

static void test_catch_all_entry(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", HTTPBIN, NULL);
    weir_http_route_t *r = rule_add(vs, "slash-with-header");
    weir_http_match_t *m = match_add(r);
    m->uri = prefix("/");
    hdr(m, "x-a", present);
    dest_add(r, HTTPBIN, "v2", 0, 0);
    r = rule_add(vs, "slash");
    match_add(r)->uri = prefix("/api");
    match_add(r)->uri = prefix("/");
    match_add(r)->uri = prefix("/after-in-rule");
    dest_add(r, HTTPBIN, "v1", 0, 0);
    r = rule_add(vs, "dead");
    match_add(r)->uri = prefix("/dead");
    dest_add(r, HTTPBIN, NULL, 0, 0);
    build("mesh", NULL, 80);

    /* the header condition keeps the first from being a catch-all; "/" in the second rule
     * is one, so nothing after it is kept, not even the rest of its own match list */
    assert_int_equal(table->vhosts[0].n_routes, 3);
    assert_string_equal(subset_of(go("/dead", NULL, 0)), "v1");
}

/* ---- T10: redirects ---- */

static char *location(const weir_route_t *r, const char *authority, const char *path,
                      uint32_t listener_port, bool tls)
{
    static char out[256];
    weir_route_request_t req = {
        .method = "GET",
        .method_len = 3,
        .path = path,
        .path_len = strlen(path),
        .authority = authority,
        .authority_len = strlen(authority),
        .scheme = tls ? "https" : "http",
    };
    weir_buf_t b = WEIR_BUF_INIT;
    weir_route_redirect_location(r, &req, listener_port, tls, &b);
    snprintf(out, sizeof(out), "%.*s", (int)b.len, b.base);
    weir_buf_free(&b);
    return out;
}

static void test_t10_redirect_location(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", "*", NULL);
    weir_http_route_t *r = rule_add(vs, "ratings");
    match_add(r)->uri = prefix("/ratings");
    r->action = WEIR_ACTION_REDIRECT;
    r->redirect.uri = tstr("/v1/bookRatings");
    r->redirect.authority = tstr("new.example");
    r = rule_add(vs, "found");
    match_add(r)->uri = prefix("/found");
    r->action = WEIR_ACTION_REDIRECT;
    r->redirect.uri = tstr("/elsewhere");
    r->redirect.redirect_code = 302;
    build("mesh", NULL, 80);

    const weir_route_t *rt = go_full("GET", "http", "/ratings", "bookinfo.example:80", NULL, 0);
    assert_int_equal(rt->n_clusters, 0);
    assert_int_equal(rt->rule->redirect.redirect_code, 301);
    assert_string_equal(location(rt, "bookinfo.example", "/ratings", 80, false),
                        "http://new.example/v1/bookRatings");
    assert_string_equal(location(rt, "bookinfo.example", "/ratings", 443, true),
                        "https://new.example/v1/bookRatings");
    /* the request's query stays when the new path has none (Envoy newUri) */
    assert_string_equal(location(rt, "bookinfo.example", "/ratings?id=1", 80, false),
                        "http://new.example/v1/bookRatings?id=1");

    rt = go_full("GET", "http", "/found", "h", NULL, 0);
    assert_int_equal(rt->rule->redirect.redirect_code, 302);
    /* no authority: the request's, without its port */
    assert_string_equal(location(rt, "shop.example:8080", "/found", 8080, false),
                        "http://shop.example/elsewhere");
    assert_string_equal(location(rt, "[fd00::1]:8080", "/found", 8080, false),
                        "http://[fd00::1]/elsewhere");
}

static void test_redirect_ports_and_schemes(void **state)
{
    weir_virtual_service_t *vs = vs_add("vs", "*", NULL);
    weir_http_route_t *r = rule_add(vs, "r");
    r->action = WEIR_ACTION_REDIRECT;
    build("mesh", NULL, 80);
    const weir_route_t *rt = go_full("GET", "http", "/", "h", NULL, 0);
    weir_redirect_t *rd = &r->redirect; /* the route points at it: edit between cases */

    /* nothing set: same place, default port omitted, path and query kept */
    assert_string_equal(location(rt, "h.example:8080", "/a?b=c", 8080, false),
                        "http://h.example/a?b=c");

    rd->scheme = tstr("https");
    assert_string_equal(location(rt, "h.example", "/a", 80, false), "https://h.example/a");
    rd->port = 443;
    assert_string_equal(location(rt, "h.example", "/a", 80, false), "https://h.example/a");
    rd->port = 8443;
    assert_string_equal(location(rt, "h.example", "/a", 80, false), "https://h.example:8443/a");
    /* a port in redirect.authority gives way to the port written */
    rd->authority = tstr("new.example:9999");
    assert_string_equal(location(rt, "h.example", "/a", 80, false), "https://new.example:8443/a");
    rd->port = 0;
    assert_string_equal(location(rt, "h.example", "/a", 80, false), "https://new.example:9999/a");

    rd->authority = NULL;
    rd->scheme = NULL;
    rd->derive_port = WEIR_DERIVE_PORT_FROM_REQUEST_PORT;
    assert_string_equal(location(rt, "h.example:8080", "/a", 8080, false),
                        "http://h.example:8080/a");
    assert_string_equal(location(rt, "h.example", "/a", 80, false), "http://h.example/a");
    assert_string_equal(location(rt, "h.example", "/a", 443, true), "https://h.example/a");
    assert_string_equal(location(rt, "h.example", "/a", 80, true), "https://h.example:80/a");
    rd->derive_port = WEIR_DERIVE_PORT_FROM_PROTOCOL_DEFAULT;
    assert_string_equal(location(rt, "h.example:8080", "/a", 8080, false), "http://h.example/a");

    /* redirect.uri with its own query replaces the request's */
    rd->uri = tstr("/new?x=1");
    assert_string_equal(location(rt, "h.example", "/a?b=c", 80, false), "http://h.example/new?x=1");
    rd->uri = tstr("relative");
    assert_string_equal(location(rt, "h.example", "/a", 80, false), "http://h.example/relative");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_vhost_precedence),
        T(test_vhost_port_case_ipv6),
        T(test_empty_table),
        T(test_server_host_binding),
        T(test_match_gateways_override),
        T(test_match_port_filter),
        T(test_routes_concatenate_per_domain),
        T(test_route_names_and_actions),
        T(test_destination_ports),
        T(test_weighted_pick),
        T(test_t5_prefix_rewrite),
        T(test_t5_negative_double_slash),
        T(test_t6_header_match_and_catch_all),
        T(test_t6_without_headers),
        T(test_header_kinds),
        T(test_uri_regex_full_match),
        T(test_uri_exact_prefix_case),
        T(test_method_scheme_authority),
        T(test_query_params),
        T(test_catch_all_entry),
        T(test_t10_redirect_location),
        T(test_redirect_ports_and_schemes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
