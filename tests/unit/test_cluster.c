/* tests/unit/test_cluster.c: clusters built from hand-made configs (no YAML), endpoint
 * selection by labels, ports, policy, and picks with exclusions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>

#include "common/cluster.h"

/* ---- hand-built config: every allocation is tracked and freed after each test ---- */

static void **allocs;
static size_t n_allocs;

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

static int teardown(void **state)
{
    for (size_t i = 0; i < n_allocs; i++)
        free(allocs[i]);
    free(allocs);
    allocs = NULL;
    n_allocs = 0;
    return 0;
}

/* "k=v,k2=v2" */
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

#define CAP 128

static weir_config_t *config_new(void)
{
    weir_config_t *cfg = tcalloc(1, sizeof(*cfg));
    cfg->service_entries = tcalloc(CAP, sizeof(weir_service_entry_t));
    cfg->workload_entries = tcalloc(CAP, sizeof(weir_workload_entry_t));
    cfg->destination_rules = tcalloc(CAP, sizeof(weir_destination_rule_t));
    return cfg;
}

static weir_service_entry_t *se_add(weir_config_t *cfg, const char *ns, const char *host)
{
    weir_service_entry_t *se = &cfg->service_entries[cfg->n_service_entries++];
    se->name = tstr(host);
    se->namespace = tstr(ns);
    se->hosts = tcalloc(1, sizeof(char *));
    se->hosts[0] = tstr(host);
    se->n_hosts = 1;
    se->ports = tcalloc(8, sizeof(weir_service_port_t));
    se->endpoints = tcalloc(CAP, sizeof(weir_workload_entry_t));
    se->location = WEIR_LOCATION_MESH_INTERNAL;
    se->resolution = WEIR_RESOLUTION_STATIC;
    return se;
}

static void se_port(weir_service_entry_t *se, uint32_t number, const char *name, uint32_t target)
{
    weir_service_port_t *p = &se->ports[se->n_ports++];
    p->number = number;
    p->name = tstr(name);
    p->protocol = tstr("HTTP");
    p->target_port = target ? target : number; /* config.c fills number when not given */
}

static void we_init(weir_workload_entry_t *we, const char *ns, const char *name,
                    const char *address, const char *label_spec, const char *sa)
{
    we->name = tstr(name);
    we->namespace = tstr(ns);
    we->address = tstr(address);
    we->labels = labels(label_spec);
    we->service_account = tstr(sa);
    we->ports = tcalloc(4, sizeof(weir_port_map_t));
}

static weir_workload_entry_t *we_add(weir_config_t *cfg, const char *ns, const char *name,
                                     const char *address, const char *label_spec, const char *sa)
{
    weir_workload_entry_t *we = &cfg->workload_entries[cfg->n_workload_entries++];
    we_init(we, ns, name, address, label_spec, sa);
    return we;
}

static weir_workload_entry_t *se_endpoint(weir_service_entry_t *se, const char *address,
                                          const char *label_spec)
{
    weir_workload_entry_t *we = &se->endpoints[se->n_endpoints++];
    we_init(we, NULL, NULL, address, label_spec, NULL);
    return we;
}

static void we_port(weir_workload_entry_t *we, const char *name, uint32_t number)
{
    we->ports[we->n_ports].name = tstr(name);
    we->ports[we->n_ports].number = number;
    we->n_ports++;
}

static weir_destination_rule_t *dr_add(weir_config_t *cfg, const char *host)
{
    weir_destination_rule_t *dr = &cfg->destination_rules[cfg->n_destination_rules++];
    dr->name = tstr(host);
    dr->namespace = tstr("default");
    dr->host = tstr(host);
    dr->subsets = tcalloc(8, sizeof(weir_subset_t));
    return dr;
}

static weir_subset_t *dr_subset(weir_destination_rule_t *dr, const char *name,
                                const char *label_spec)
{
    weir_subset_t *s = &dr->subsets[dr->n_subsets++];
    s->name = tstr(name);
    s->labels = labels(label_spec);
    s->policy = dr->policy; /* config.c merges the top level in at load */
    return s;
}

static void policy_lb(weir_traffic_policy_t *p, weir_lb_policy_t lb)
{
    p->has_lb = true;
    p->lb = lb;
}

#define HTTPBIN "httpbin.default.svc.cluster.local"
#define EXT "ext.example.com"

/* httpbin: workloadSelector app=httpbin, port 8000 -> target 80; DR with subsets v1
 * (ROUND_ROBIN) and v2 (inherits RANDOM from the top level).
 * ext: inline endpoints, ports 80 and 443 (-> 8443), no DestinationRule. */
static weir_config_t *fixture(void)
{
    weir_config_t *cfg = config_new();

    weir_service_entry_t *se = se_add(cfg, "default", HTTPBIN);
    se_port(se, 8000, "http", 80);
    se->has_workload_selector = true;
    se->workload_selector = labels("app=httpbin");

    we_add(cfg, "default", "v1-a", "10.244.0.11", "app=httpbin,version=v1", "httpbin");
    weir_workload_entry_t *b =
        we_add(cfg, "default", "v2-a", "10.244.0.12", "app=httpbin,version=v2", NULL);
    we_port(b, "grpc", 9090);
    we_port(b, "http", 8080);
    we_add(cfg, "other", "v1-other-ns", "10.244.0.13", "app=httpbin,version=v1", NULL);
    we_add(cfg, "default", "not-httpbin", "10.244.0.14", "app=web,version=v1", NULL);
    we_add(cfg, "default", "v1-v6", "fd00::5", "app=httpbin,version=v1", "httpbin");
    we_add(cfg, "default", "v1-dns", "pod.example.internal", "app=httpbin,version=v1", NULL);
    we_add(cfg, "default", "v1-unix", "unix:///var/run/app.sock", "app=httpbin,version=v1", NULL);

    weir_destination_rule_t *dr = dr_add(cfg, HTTPBIN);
    policy_lb(&dr->policy, WEIR_LB_RANDOM);
    weir_subset_t *v1 = dr_subset(dr, "v1", "version=v1");
    policy_lb(&v1->policy, WEIR_LB_ROUND_ROBIN);
    dr_subset(dr, "v2", "version=v2");

    weir_service_entry_t *ext = se_add(cfg, "default", EXT);
    se_port(ext, 80, "http", 0);
    se_port(ext, 443, "https", 8443);
    se_endpoint(ext, "192.0.2.1", "zone=a");
    se_endpoint(ext, "192.0.2.2", "zone=b");
    return cfg;
}

/* ---- tests ---- */

static void test_name(void **state)
{
    char *n = weir_cluster_name(HTTPBIN, "v1", 80);
    assert_string_equal(n, "outbound|80|v1|" HTTPBIN);
    free(n);
    n = weir_cluster_name(HTTPBIN, NULL, 8000);
    assert_string_equal(n, "outbound|8000||" HTTPBIN);
    free(n);
}

static void test_workload_selector_whole_service(void **state)
{
    weir_config_t *cfg = fixture();
    weir_cluster_t *c = weir_cluster_build(cfg, HTTPBIN, NULL, 0);
    /* port 0: the service's only port */
    assert_int_equal(c->port, 8000);
    assert_string_equal(c->name, "outbound|8000||" HTTPBIN);
    assert_string_equal(c->host, HTTPBIN);
    assert_null(c->subset);
    assert_ptr_equal(c->service, &cfg->service_entries[0]);
    assert_ptr_equal(c->service_port, &cfg->service_entries[0].ports[0]);
    /* Same namespace and app=httpbin; the DNS name and the unix socket are skipped. */
    assert_int_equal(c->n_endpoints, 3);
    assert_string_equal(c->endpoints[0].host_port, "10.244.0.11:80");
    assert_string_equal(c->endpoints[1].host_port, "10.244.0.12:8080");
    assert_string_equal(c->endpoints[2].host_port, "[fd00::5]:80");
    /* No subset: the DestinationRule's top-level policy. */
    assert_int_equal(c->lb.policy, WEIR_LB_RANDOM);
    weir_cluster_free(c);
}

static void test_subset_narrows_by_labels(void **state)
{
    weir_config_t *cfg = fixture();
    weir_cluster_t *c = weir_cluster_build(cfg, HTTPBIN, "v1", 8000);
    assert_string_equal(c->name, "outbound|8000|v1|" HTTPBIN);
    assert_string_equal(c->subset, "v1");
    assert_int_equal(c->lb.policy, WEIR_LB_ROUND_ROBIN);
    assert_int_equal(c->n_endpoints, 2);

    weir_endpoint_t *a = &c->endpoints[0];
    assert_string_equal(a->address, "10.244.0.11");
    assert_int_equal(a->port, 80); /* targetPort */
    assert_ptr_equal(a->labels, &cfg->workload_entries[0].labels);
    assert_string_equal(a->service_account, "httpbin");
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->addr;
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), 80);
    assert_int_equal(a->addr_len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x0af4000b);

    weir_endpoint_t *v6 = &c->endpoints[1];
    assert_string_equal(v6->host_port, "[fd00::5]:80");
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&v6->addr;
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(sin6->sin6_port), 80);
    assert_int_equal(v6->addr_len, sizeof(struct sockaddr_in6));
    assert_int_equal(sin6->sin6_addr.s6_addr[0], 0xfd);
    assert_int_equal(sin6->sin6_addr.s6_addr[15], 0x05);
    weir_cluster_free(c);

    c = weir_cluster_build(cfg, HTTPBIN, "v2", 0);
    assert_int_equal(c->n_endpoints, 1);
    /* WorkloadEntry ports[service port name] wins over targetPort. */
    assert_int_equal(c->endpoints[0].port, 8080);
    assert_string_equal(c->endpoints[0].host_port, "10.244.0.12:8080");
    assert_string_equal(c->endpoints[0].service_account, "default");
    /* v2 sets no loadBalancer: the merged (top-level) one. */
    assert_int_equal(c->lb.policy, WEIR_LB_RANDOM);
    weir_cluster_free(c);
}

static void test_unknown_subset_and_host(void **state)
{
    weir_config_t *cfg = fixture();
    weir_cluster_t *c = weir_cluster_build(cfg, HTTPBIN, "v3", 0);
    assert_string_equal(c->name, "outbound|8000|v3|" HTTPBIN);
    assert_non_null(c->service);
    assert_int_equal(c->n_endpoints, 0);
    assert_null(weir_cluster_pick(c, NULL, 0, 0, 0));
    weir_cluster_free(c);

    c = weir_cluster_build(cfg, "nope.default.svc.cluster.local", NULL, 80);
    assert_string_equal(c->name, "outbound|80||nope.default.svc.cluster.local");
    assert_null(c->service);
    assert_null(c->service_port);
    assert_int_equal(c->n_endpoints, 0);
    assert_int_equal(c->lb.policy, WEIR_LB_LEAST_REQUEST);
    assert_null(weir_cluster_pick(c, NULL, 0, 1, 2));
    weir_cluster_free(c);

    /* A port the service does not declare: no such cluster in Envoy, so no endpoints. */
    c = weir_cluster_build(cfg, HTTPBIN, NULL, 9999);
    assert_string_equal(c->name, "outbound|9999||" HTTPBIN);
    assert_null(c->service_port);
    assert_int_equal(c->n_endpoints, 0);
    weir_cluster_free(c);
}

static void test_inline_endpoints_and_ports(void **state)
{
    weir_config_t *cfg = fixture();
    weir_cluster_t *c = weir_cluster_build(cfg, EXT, NULL, 0);
    /* port 0 with several ports: the first */
    assert_int_equal(c->port, 80);
    assert_int_equal(c->n_endpoints, 2);
    assert_string_equal(c->endpoints[0].host_port, "192.0.2.1:80");
    assert_string_equal(c->endpoints[1].host_port, "192.0.2.2:80");
    assert_string_equal(c->endpoints[1].service_account, "default");
    assert_string_equal(weir_labels_get(c->endpoints[1].labels, "zone"), "b");
    /* No DestinationRule: Istio's default. */
    assert_int_equal(c->lb.policy, WEIR_LB_LEAST_REQUEST);
    weir_cluster_free(c);

    c = weir_cluster_build(cfg, EXT, NULL, 443);
    assert_string_equal(c->name, "outbound|443||" EXT);
    assert_int_equal(c->n_endpoints, 2);
    assert_int_equal(c->endpoints[0].port, 8443);
    weir_cluster_free(c);
}

static void test_inline_ignores_workload_entries(void **state)
{
    /* Without a workloadSelector only inline endpoints count, even if WorkloadEntries of
     * the namespace would match the subset. */
    weir_config_t *cfg = fixture();
    weir_service_entry_t *se = se_add(cfg, "default", "inl.default.svc.cluster.local");
    se_port(se, 80, "http", 0);
    weir_workload_entry_t *e = se_endpoint(se, "10.0.0.1", "version=v1");
    we_port(e, "http", 8081);
    se_endpoint(se, "10.0.0.2", "version=v2");
    weir_destination_rule_t *dr = dr_add(cfg, "inl.default.svc.cluster.local");
    dr_subset(dr, "v1", "version=v1");

    weir_cluster_t *c = weir_cluster_build(cfg, "inl.default.svc.cluster.local", "v1", 80);
    assert_int_equal(c->n_endpoints, 1);
    assert_string_equal(c->endpoints[0].host_port, "10.0.0.1:8081");
    assert_int_equal(c->lb.policy, WEIR_LB_LEAST_REQUEST);
    weir_cluster_free(c);
}

static void test_names_do_not_borrow_caller_strings(void **state)
{
    weir_config_t *cfg = fixture();
    char *host = strdup(HTTPBIN), *subset = strdup("v1");
    weir_cluster_t *c = weir_cluster_build(cfg, host, subset, 0);
    memset(host, 'x', strlen(host));
    memset(subset, 'x', strlen(subset));
    free(host);
    free(subset);
    assert_string_equal(c->host, HTTPBIN);
    assert_string_equal(c->subset, "v1");
    assert_string_equal(c->name, "outbound|8000|v1|" HTTPBIN);
    weir_cluster_free(c);
}

static void test_pick_round_robin_with_exclusion(void **state)
{
    weir_config_t *cfg = fixture();
    weir_cluster_t *c = weir_cluster_build(cfg, HTTPBIN, NULL, 0);
    weir_lb_init(&c->lb, WEIR_LB_ROUND_ROBIN);
    weir_endpoint_t *e = c->endpoints;
    assert_ptr_equal(weir_cluster_pick(c, NULL, 0, 0, 0), &e[0]);
    assert_ptr_equal(weir_cluster_pick(c, NULL, 0, 0, 0), &e[1]);
    assert_ptr_equal(weir_cluster_pick(c, NULL, 0, 0, 0), &e[2]);

    const weir_endpoint_t *tried[] = {&e[0]};
    assert_ptr_equal(weir_cluster_pick(c, tried, 1, 0, 0), &e[1]);
    assert_ptr_equal(weir_cluster_pick(c, tried, 1, 0, 0), &e[2]);
    assert_ptr_equal(weir_cluster_pick(c, tried, 1, 0, 0), &e[1]);

    /* An endpoint of another cluster in the list is ignored. */
    weir_cluster_t *other = weir_cluster_build(cfg, EXT, NULL, 0);
    const weir_endpoint_t *foreign[] = {&other->endpoints[0], &e[1], &e[2]};
    assert_ptr_equal(weir_cluster_pick(c, foreign, 3, 0, 0), &e[0]);

    const weir_endpoint_t *all[] = {&e[0], &e[1], &e[2]};
    assert_null(weir_cluster_pick(c, all, 3, 0, 0));
    weir_cluster_free(other);
    weir_cluster_free(c);
}

static void test_pick_least_request_reads_active(void **state)
{
    weir_config_t *cfg = fixture();
    weir_cluster_t *c = weir_cluster_build(cfg, EXT, NULL, 0);
    assert_int_equal(c->lb.policy, WEIR_LB_LEAST_REQUEST);
    c->endpoints[0].active_requests = 3;
    c->endpoints[1].active_requests = 1;
    assert_ptr_equal(weir_cluster_pick(c, NULL, 0, 0, 1), &c->endpoints[1]);
    assert_ptr_equal(weir_cluster_pick(c, NULL, 0, 1, 0), &c->endpoints[1]);
    /* With the idle one excluded (a retry), the busy one is the only choice. */
    const weir_endpoint_t *tried[] = {&c->endpoints[1]};
    assert_ptr_equal(weir_cluster_pick(c, tried, 1, 0, 1), &c->endpoints[0]);
    weir_cluster_free(c);
}

static void test_pick_large_cluster(void **state)
{
    /* More endpoints than the stack arrays hold: the allocating path. */
    weir_config_t *cfg = fixture();
    weir_service_entry_t *se = se_add(cfg, "default", "big.default.svc.cluster.local");
    se_port(se, 80, "http", 0);
    char addr[32];
    for (int i = 0; i < 100; i++) {
        snprintf(addr, sizeof(addr), "10.1.%d.%d", i / 250, i % 250 + 1);
        se_endpoint(se, addr, "app=big");
    }
    weir_cluster_t *c = weir_cluster_build(cfg, "big.default.svc.cluster.local", NULL, 0);
    assert_int_equal(c->n_endpoints, 100);
    weir_lb_init(&c->lb, WEIR_LB_RANDOM);
    assert_ptr_equal(weir_cluster_pick(c, NULL, 0, 99, 0), &c->endpoints[99]);
    const weir_endpoint_t *tried[] = {&c->endpoints[0], &c->endpoints[70]};
    /* The 70th eligible is endpoint 71 once 0 and 70 are out. */
    assert_ptr_equal(weir_cluster_pick(c, tried, 2, 69, 0), &c->endpoints[71]);
    assert_ptr_equal(weir_cluster_pick(c, tried, 2, 0, 0), &c->endpoints[1]);
    weir_cluster_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_name, teardown),
        cmocka_unit_test_teardown(test_workload_selector_whole_service, teardown),
        cmocka_unit_test_teardown(test_subset_narrows_by_labels, teardown),
        cmocka_unit_test_teardown(test_unknown_subset_and_host, teardown),
        cmocka_unit_test_teardown(test_inline_endpoints_and_ports, teardown),
        cmocka_unit_test_teardown(test_inline_ignores_workload_entries, teardown),
        cmocka_unit_test_teardown(test_names_do_not_borrow_caller_strings, teardown),
        cmocka_unit_test_teardown(test_pick_round_robin_with_exclusion, teardown),
        cmocka_unit_test_teardown(test_pick_least_request_reads_active, teardown),
        cmocka_unit_test_teardown(test_pick_large_cluster, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
