/* tests/unit/test_snapshot.c: snapshots compiled from YAML for each role: which listeners a
 * gateway opens, and a sidecar's outbound routes (Istio's default routes, the names a pod
 * resolves to a service, VirtualServices bound to the mesh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>

#include "common/cli.h"
#include "common/snapshot.h"

static const char mesh_yaml[] =
    "apiVersion: networking.istio.io/v1\n"
    "kind: ServiceEntry\n"
    "metadata: {name: web-service, namespace: default}\n"
    "spec:\n"
    "  hosts: [web-service.default.svc.cluster.local]\n"
    "  addresses: [10.96.0.10]\n"
    "  location: MESH_INTERNAL\n"
    "  resolution: STATIC\n"
    "  ports: [{number: 80, name: http, protocol: HTTP}]\n"
    "  workloadSelector: {labels: {app: httpd}}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: ServiceEntry\n"
    "metadata: {name: reviews, namespace: default}\n"
    "spec:\n"
    "  hosts: [reviews.default.svc.cluster.local]\n"
    "  location: MESH_INTERNAL\n"
    "  resolution: STATIC\n"
    "  ports: [{number: 9080, name: http, protocol: HTTP}]\n"
    "  workloadSelector: {labels: {app: reviews}}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: WorkloadEntry\n"
    "metadata: {name: httpd-v1, namespace: default}\n"
    "spec: {address: 10.244.0.11, labels: {app: httpd, version: v1}}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: WorkloadEntry\n"
    "metadata: {name: reviews-v1, namespace: default}\n"
    "spec: {address: 10.244.0.21, labels: {app: reviews, version: v1}}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: DestinationRule\n"
    "metadata: {name: reviews, namespace: default}\n"
    "spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: VirtualService\n"
    "metadata: {name: reviews, namespace: default}\n"
    "spec:\n"
    "  hosts: [reviews]\n"
    "  http:\n"
    "  - match: [{uri: {prefix: /only}}]\n"
    "    route: [{destination: {host: reviews, subset: v1}}]\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: Gateway\n"
    "metadata: {name: gw, namespace: istio-system}\n"
    "spec:\n"
    "  selector: {istio: ingressgateway}\n"
    "  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ['*']}]\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: VirtualService\n"
    "metadata: {name: edge, namespace: istio-system}\n"
    "spec:\n"
    "  hosts: ['*']\n"
    "  gateways: [gw]\n"
    "  http: [{route: [{destination: {host: web-service.default.svc.cluster.local}}]}]\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: ServiceEntry\n"
    "metadata: {name: api, namespace: default}\n"
    "spec:\n"
    "  hosts: [kubernetes.default.svc.cluster.local]\n"
    "  addresses: [10.96.0.1]\n"
    "  location: MESH_INTERNAL\n"
    "  resolution: STATIC\n"
    "  ports: [{number: 80, name: https, protocol: HTTPS}, {number: 5432, name: tcp-db, protocol: TCP}]\n"
    "  endpoints: [{address: 172.18.0.2}]\n";

static weir_snapshot_t *sidecar(const char *ns)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_config_t *cfg = weir_config_load_string("mesh.yaml", mesh_yaml, &d);
    if (cfg == NULL)
        weir_diags_print(&d, stderr);
    assert_non_null(cfg);
    weir_labels_t labels;
    weir_labels_parse("app=sleep", &labels);
    weir_sidecar_identity_t id = {.labels = &labels, .namespace = ns, .service_account = "sleep"};
    weir_snapshot_t *s = weir_snapshot_build_sidecar(cfg, &id, &d);
    weir_labels_free(&labels);
    weir_diags_clear(&d);
    return s;
}

static const weir_route_t *route(const weir_snapshot_t *s, uint32_t port, const char *host,
                                 const char *path)
{
    const weir_route_table_t *t = weir_snapshot_outbound_routes(s, port);
    assert_non_null(t);
    weir_route_request_t rr = {.method = "GET", .method_len = 3, .path = path,
                               .path_len = strlen(path), .authority = host,
                               .authority_len = strlen(host), .scheme = "http"};
    return weir_router_match(t, &rr);
}

/* A service no VirtualService claims for the mesh gets Istio's default route to itself, found
 * by every name a pod in its namespace resolves and by its address; the VirtualService bound
 * only to a gateway does not apply to sidecars. */
static void test_default_route_and_aliases(void **state)
{
    weir_snapshot_t *s = sidecar("default");
    const char *names[] = {"web-service", "web-service.default", "web-service.default.svc",
                           "web-service.default.svc.cluster.local:80", "WEB-SERVICE:80",
                           "10.96.0.10"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const weir_route_t *r = route(s, 80, names[i], "/anything");
        assert_non_null(r);
        assert_null(r->vs);
        assert_int_equal(r->n_clusters, 1);
        assert_string_equal(r->clusters[0]->name,
                            "outbound|80||web-service.default.svc.cluster.local");
        assert_int_equal(r->clusters[0]->n_endpoints, 1);
    }
    const weir_route_table_t *t = weir_snapshot_outbound_routes(s, 80);
    assert_null(weir_router_find_vhost(t, "unknown.example", 15));
    assert_null(weir_snapshot_outbound_routes(s, 12345));
    weir_snapshot_unref(s);
}

static bool opaque(const weir_snapshot_t *s, const char *ip, uint32_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    return weir_snapshot_outbound_opaque(s, (const struct sockaddr *)&sa, port);
}

/* Ports whose protocol is not HTTP are relayed as bytes, never parsed: a port only TCP
 * services use has no routes, and on a port shared with HTTP services the TCP service's
 * address tells them apart. */
static void test_opaque_ports_are_relayed(void **state)
{
    weir_snapshot_t *s = sidecar("default");
    assert_null(weir_snapshot_outbound_routes(s, 5432));
    assert_true(opaque(s, "10.96.0.1", 5432));
    assert_non_null(weir_snapshot_outbound_routes(s, 80)); /* web-service's HTTP */
    assert_true(opaque(s, "10.96.0.1", 80));               /* the API's HTTPS on the same port */
    assert_false(opaque(s, "10.96.0.10", 80));             /* web-service */
    assert_false(opaque(s, "10.96.0.1", 9080));
    weir_snapshot_unref(s);
}

/* The short name belongs to the pod's own namespace only. */
static void test_short_name_only_in_own_namespace(void **state)
{
    weir_snapshot_t *s = sidecar("other");
    const weir_route_table_t *t = weir_snapshot_outbound_routes(s, 80);
    assert_null(weir_router_find_vhost(t, "web-service", 11));
    assert_non_null(weir_router_find_vhost(t, "web-service.default", 19));
    weir_snapshot_unref(s);
}

/* A VirtualService for the mesh replaces the default route: its rules decide, and a request
 * none of them matches finds no route (404), not the default. */
static void test_mesh_virtual_service(void **state)
{
    weir_snapshot_t *s = sidecar("default");
    const weir_route_t *r = route(s, 9080, "reviews:9080", "/only/this");
    assert_non_null(r);
    assert_non_null(r->vs);
    assert_string_equal(r->clusters[0]->name,
                        "outbound|9080|v1|reviews.default.svc.cluster.local");
    assert_null(route(s, 9080, "reviews", "/other"));
    weir_snapshot_unref(s);
}

/* A gateway opens the ports of the Gateways that select its labels, and nothing else. */
static void test_gateway_listeners(void **state)
{
    weir_diags_t d = WEIR_DIAGS_INIT;
    weir_labels_t labels;
    weir_labels_parse("istio=ingressgateway,app=edge", &labels);
    weir_gateway_identity_t id = {.labels = &labels, .namespace = "istio-system"};
    weir_snapshot_t *s =
        weir_snapshot_build_gateway(weir_config_load_string("m.yaml", mesh_yaml, &d), &id, &d);
    assert_int_equal(s->n_listeners, 1);
    assert_int_equal(s->listeners[0].port, 8080);
    assert_string_equal(s->listeners[0].bind, "0.0.0.0");
    weir_snapshot_unref(s);
    weir_labels_free(&labels);

    weir_labels_parse("istio=egressgateway", &labels);
    s = weir_snapshot_build_gateway(weir_config_load_string("m.yaml", mesh_yaml, &d), &id, &d);
    assert_int_equal(s->n_listeners, 0);
    weir_snapshot_unref(s);
    weir_labels_free(&labels);
    weir_diags_clear(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_route_and_aliases),
        cmocka_unit_test(test_opaque_ports_are_relayed),
        cmocka_unit_test(test_short_name_only_in_own_namespace),
        cmocka_unit_test(test_mesh_virtual_service),
        cmocka_unit_test(test_gateway_listeners),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
