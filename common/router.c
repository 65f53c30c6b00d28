/* common/router.c: see router.h.
 *
 * Everything that can be decided from the config alone is decided in weir_router_build():
 * which VirtualServices and match entries bind to the listener, the vhost domains, the order of
 * vhosts for lookup, the clusters and cumulative weights. Matching a request then only compares
 * bytes: no allocation, no copies, regexes run against the request's own buffers with one
 * match-data block owned by the table. */
#include "common/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The table as allocated: the public part first, so a weir_route_table_t pointer is also a
 * pointer to this. The match data is what pcre2_match() writes into; one per table is enough
 * because matching is single-threaded and never re-entered. */
typedef struct {
    weir_route_table_t pub;
    pcre2_match_data *md;
    size_t *domain_len; /* strlen of each vhost's domain, so lookup does not measure them */
    /* Istio's default routes (a sidecar's services with no VirtualService) are rules no YAML
     * wrote; the table owns them. */
    weir_http_route_t *default_rules;
    size_t n_default_rules;
} table_impl_t;

/* ---- small string helpers ---- */

static bool bytes_eq(const char *a, const char *b, size_t n, bool icase)
{
    return icase ? strncasecmp(a, b, n) == 0 : memcmp(a, b, n) == 0;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static char *lower_dup(const char *s)
{
    char *d = weir_mem_strdup(s);
    for (char *p = d; *p; p++) {
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    }
    return d;
}

static bool is_all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

/* The length of an authority without its ":port". "[v6]:port" keeps the brackets; a bare IPv6
 * literal (several colons, no brackets: not valid in Host, but seen) is left whole. */
static size_t host_len(const char *a, size_t len)
{
    if (len == 0)
        return 0;
    if (a[0] == '[') {
        const char *close = memchr(a, ']', len);
        return close ? (size_t)(close - a) + 1 : len;
    }
    const char *colon = memchr(a, ':', len);
    if (colon == NULL)
        return len;
    size_t h = (size_t)(colon - a);
    if (memchr(colon + 1, ':', len - h - 1) != NULL)
        return len;
    return is_all_digits(colon + 1, len - h - 1) || h + 1 == len ? h : len;
}

/* ---- Istio host algebra (pilot/pkg/model host.Name Matches / SubsetOf) ---- */

static bool is_wild(const char *h)
{
    return h[0] == '*';
}

/* True when the two host patterns have some host in common. */
static bool hosts_match(const char *a, const char *b)
{
    if (is_wild(a)) {
        if (is_wild(b))
            return ends_with(b, a + 1) || ends_with(a, b + 1);
        return ends_with(b, a + 1);
    }
    if (is_wild(b))
        return ends_with(a, b + 1);
    return strcmp(a, b) == 0;
}

/* True when every host `n` names is also named by `o`. */
static bool host_subset_of(const char *n, const char *o)
{
    if (is_wild(n)) {
        if (!is_wild(o))
            return false;
        return ends_with(n + 1, o + 1);
    }
    if (is_wild(o))
        return ends_with(n, o + 1);
    return strcmp(n, o) == 0;
}

/* ---- build ---- */

typedef struct {
    bool closed; /* a catch-all was emitted: later routes could never match */
    size_t cap;  /* of routes */
} vhost_state_t;

typedef struct {
    const weir_config_t *cfg;
    const weir_router_scope_t *scope;
    weir_vhost_t *vhosts;
    vhost_state_t *state;
    size_t n, cap;
} builder_t;

static bool scope_has_gateway(const weir_router_scope_t *scope, char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < scope->n_gateway_names; j++) {
            if (names[i] != NULL && strcmp(names[i], scope->gateway_names[j]) == 0)
                return true;
        }
    }
    return false;
}

/* Config-time filters of one match entry (Istio translateRoute / sourceMatchHTTP): a port
 * other than the listener's drops it, and its own gateways replace the VirtualService's. */
static bool entry_applies(const weir_http_match_t *m, const weir_router_scope_t *scope)
{
    if (m->port != 0 && m->port != scope->listener_port)
        return false;
    if (m->gateways != NULL && m->n_gateways > 0)
        return scope_has_gateway(scope, m->gateways, m->n_gateways);
    return true;
}

/* An entry Envoy would see as prefix "/" with no header or query conditions (Istio
 * isCatchAllRoute): every route after it is dead. */
static bool entry_is_catch_all(const weir_http_match_t *m)
{
    bool uri_all =
        m->uri.kind == WEIR_MATCH_NONE ||
        (m->uri.kind == WEIR_MATCH_PREFIX && m->uri.value_len == 1 && m->uri.value[0] == '/');
    return uri_all && m->scheme.kind == WEIR_MATCH_NONE && m->method.kind == WEIR_MATCH_NONE &&
           m->authority.kind == WEIR_MATCH_NONE && m->n_headers == 0 && m->n_without_headers == 0 &&
           m->n_query_params == 0;
}

static weir_vhost_t *vhost_get(builder_t *b, const char *domain, vhost_state_t **state)
{
    for (size_t i = 0; i < b->n; i++) {
        if (strcmp(b->vhosts[i].domain, domain) == 0) {
            *state = &b->state[i];
            return &b->vhosts[i];
        }
    }
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 4;
        b->vhosts = weir_mem_realloc(b->vhosts, b->cap * sizeof(*b->vhosts));
        b->state = weir_mem_realloc(b->state, b->cap * sizeof(*b->state));
    }
    weir_vhost_t *vh = &b->vhosts[b->n];
    memset(vh, 0, sizeof(*vh));
    vh->domain = weir_mem_strdup(domain);
    b->state[b->n] = (vhost_state_t){false, 0};
    *state = &b->state[b->n];
    b->n++;
    return vh;
}

/* Istio GetDestinationCluster: the destination's port, else the service's only port, else the
 * listener's port. */
static uint32_t destination_port(const builder_t *b, const weir_destination_t *d)
{
    if (d->port != 0)
        return d->port;
    const weir_service_entry_t *se = weir_config_find_service(b->cfg, d->host);
    if (se != NULL && se->n_ports == 1)
        return se->ports[0].number;
    return b->scope->listener_port;
}

static char *route_name(const weir_http_route_t *rule, const weir_http_match_t *m)
{
    /* Istio names the Envoy route `<rule name>[.<match name>]`; weir logs "default" when
     * neither is given, as Istio's default routes are named. */
    weir_buf_t n = WEIR_BUF_INIT;
    if (rule->name != NULL)
        weir_buf_append_str(&n, rule->name);
    if (m != NULL && m->name != NULL && m->name[0] != '\0')
        weir_buf_appendf(&n, ".%s", m->name);
    if (n.len == 0)
        weir_buf_append_str(&n, "default");
    return n.base;
}

/* Istio's retry.ConvertPolicy into Envoy's terms, once per route. */
static void compile_retry_policy(const weir_http_retry_t *in, weir_retry_policy_t *out)
{
    if (!in->set) {
        weir_retry_policy_istio_default(out);
        return;
    }
    weir_retry_policy_init(out);
    out->num_retries = in->attempts > 0 ? (uint32_t)in->attempts : 0;
    out->retry_on = in->retry_on;
    for (size_t i = 0; i < in->n_retriable_status_codes; i++)
        weir_retry_policy_add_status_code(out, in->retriable_status_codes[i]);
    out->per_try_timeout_ms = in->per_try_timeout_ms > 0 ? (uint64_t)in->per_try_timeout_ms : 0;
    if (in->backoff_ms > 0)
        out->base_interval_ms = (uint64_t)in->backoff_ms;
    out->retry_other_host = in->ignore_previous_hosts;
    out->host_selection_max_attempts = 5;
}

static void emit_route(builder_t *b, weir_vhost_t *vh, vhost_state_t *st,
                       const weir_virtual_service_t *vs, const weir_http_route_t *rule,
                       const weir_http_match_t *m)
{
    if (vh->n_routes == st->cap) {
        st->cap = st->cap ? st->cap * 2 : 4;
        vh->routes = weir_mem_realloc(vh->routes, st->cap * sizeof(*vh->routes));
    }
    weir_route_t *r = &vh->routes[vh->n_routes++];
    memset(r, 0, sizeof(*r));
    r->vs = vs;
    r->rule = rule;
    r->match = m;
    r->name = route_name(rule, m);
    compile_retry_policy(&rule->retries, &r->retry_policy);
    if (rule->action != WEIR_ACTION_ROUTE || rule->n_route == 0)
        return;

    const weir_router_scope_t *scope = b->scope;
    if (rule->n_mirrors && scope->lookup != NULL) {
        r->n_mirrors = rule->n_mirrors;
        r->mirror_clusters = weir_mem_calloc(rule->n_mirrors, sizeof(*r->mirror_clusters));
        for (size_t i = 0; i < rule->n_mirrors; i++) {
            const weir_destination_t *md = &rule->mirrors[i].destination;
            r->mirror_clusters[i] =
                scope->lookup(scope->lookup_ctx, md->host, md->subset, destination_port(b, md));
        }
    }
    r->n_clusters = rule->n_route;
    r->clusters = weir_mem_calloc(rule->n_route, sizeof(*r->clusters));
    r->cumulative_weight = weir_mem_calloc(rule->n_route, sizeof(*r->cumulative_weight));
    uint64_t sum = 0;
    for (size_t i = 0; i < rule->n_route; i++) {
        const weir_route_destination_t *rd = &rule->route[i];
        if (scope->lookup != NULL)
            r->clusters[i] =
                scope->lookup(scope->lookup_ctx, rd->destination.host, rd->destination.subset,
                              destination_port(b, &rd->destination));
        /* A single destination ignores its weight; with several, an omitted (0) weight never
         * receives traffic (istio-semantics S14). */
        if (rule->n_route == 1)
            sum = 1;
        else if (rd->weight > 0)
            sum += (uint64_t)rd->weight;
        r->cumulative_weight[i] = sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
    }
}

/* Appends the routes of one VirtualService to a vhost. */
static void add_vs_routes(builder_t *b, weir_vhost_t *vh, vhost_state_t *st,
                          const weir_virtual_service_t *vs)
{
    for (size_t i = 0; i < vs->n_http && !st->closed; i++) {
        const weir_http_route_t *rule = &vs->http[i];
        if (rule->n_matches == 0) {
            emit_route(b, vh, st, vs, rule, NULL);
            st->closed = true;
            break;
        }
        for (size_t j = 0; j < rule->n_matches; j++) {
            const weir_http_match_t *m = &rule->matches[j];
            if (!entry_applies(m, b->scope))
                continue;
            emit_route(b, vh, st, vs, rule, m);
            if (entry_is_catch_all(m)) {
                st->closed = true;
                break;
            }
        }
    }
}

static void add_domain(char ***list, size_t *n, const char *domain)
{
    char *d = lower_dup(domain);
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*list)[i], d) == 0) {
            free(d);
            return;
        }
    }
    *list = weir_mem_realloc(*list, (*n + 1) * sizeof(**list));
    (*list)[(*n)++] = d;
}

/* The vhost domains one VirtualService contributes (lower case, no duplicates). On a gateway a
 * VS host binds to a server host when the two overlap, and the more specific of the two is the
 * domain (Istio gateway.go pickMatchingGatewayHosts): VS `*` under server `*.example.com`
 * serves `*.example.com`. Unlike Istio, which keeps one server host per VS host (a map, so an
 * arbitrary one), every overlapping server host gets its domain. */
static size_t vs_domains(const weir_router_scope_t *scope, const weir_virtual_service_t *vs,
                         char ***out)
{
    char **list = NULL;
    size_t n = 0;
    for (size_t i = 0; i < vs->n_hosts; i++) {
        if (vs->hosts[i] == NULL)
            continue;
        char *h = lower_dup(vs->hosts[i]);
        if (scope->n_server_hosts == 0) {
            add_domain(&list, &n, h);
        } else {
            for (size_t j = 0; j < scope->n_server_hosts; j++) {
                char *s = lower_dup(scope->server_hosts[j]);
                if (hosts_match(h, s))
                    add_domain(&list, &n, host_subset_of(h, s) ? h : s);
                free(s);
            }
        }
        free(h);
    }
    *out = list;
    return n;
}

/* Lookup order: exact domains, then suffix wildcards longest first, then "*"; stable within
 * each class so config order breaks ties. */
static int vhost_rank(const weir_vhost_t *v)
{
    if (strcmp(v->domain, "*") == 0)
        return 2;
    return is_wild(v->domain) ? 1 : 0;
}

static void sort_vhosts(weir_vhost_t *v, size_t n)
{
    /* Insertion sort: stable, and tables have a handful of vhosts. */
    for (size_t i = 1; i < n; i++) {
        weir_vhost_t x = v[i];
        int rx = vhost_rank(&x);
        size_t lx = strlen(x.domain);
        size_t j = i;
        while (j > 0) {
            const weir_vhost_t *p = &v[j - 1];
            int rp = vhost_rank(p);
            bool before = rx < rp || (rx == 1 && rp == 1 && lx > strlen(p->domain));
            if (!before)
                break;
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

static bool service_has_port(const weir_service_entry_t *se, uint32_t port)
{
    for (size_t i = 0; i < se->n_ports; i++) {
        if (se->ports[i].number == port)
            return true;
    }
    return false;
}

/* A vhost routing every request to the service, for each service host on the listener's port
 * that no VirtualService claimed (Istio BuildSidecarOutboundVirtualHosts). */
static void add_default_routes(builder_t *b, table_impl_t *impl)
{
    const weir_config_t *cfg = b->cfg;
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_service_entries; i++) {
        if (service_has_port(&cfg->service_entries[i], b->scope->listener_port))
            n += cfg->service_entries[i].n_hosts;
    }
    impl->default_rules = weir_mem_calloc(n, sizeof(*impl->default_rules));
    for (size_t i = 0; i < cfg->n_service_entries; i++) {
        const weir_service_entry_t *se = &cfg->service_entries[i];
        if (!service_has_port(se, b->scope->listener_port))
            continue;
        for (size_t h = 0; h < se->n_hosts; h++) {
            if (is_wild(se->hosts[h]))
                continue;
            char *domain = lower_dup(se->hosts[h]);
            vhost_state_t *st;
            weir_vhost_t *vh = vhost_get(b, domain, &st);
            free(domain);
            if (vh->n_routes > 0)
                continue;
            weir_http_route_t *rule = &impl->default_rules[impl->n_default_rules++];
            rule->action = WEIR_ACTION_ROUTE;
            rule->n_route = 1;
            rule->route = weir_mem_calloc(1, sizeof(*rule->route));
            rule->route[0].destination.host = se->hosts[h];
            rule->route[0].destination.port = b->scope->listener_port;
            emit_route(b, vh, st, NULL, rule, NULL);
            st->closed = true;
        }
    }
}

static bool has_domain(const builder_t *b, const char *domain)
{
    for (size_t i = 0; i < b->n; i++) {
        if (strcmp(b->vhosts[i].domain, domain) == 0)
            return true;
    }
    return false;
}

static void add_alias(builder_t *b, const weir_vhost_t *target, const char *domain)
{
    if (has_domain(b, domain))
        return;
    size_t idx = (size_t)(target - b->vhosts);
    vhost_state_t *st;
    weir_vhost_t *alias = vhost_get(b, domain, &st);
    const weir_vhost_t *t = &b->vhosts[idx]; /* vhost_get may have moved the array */
    alias->routes = t->routes;
    alias->n_routes = t->n_routes;
    alias->shared_routes = true;
}

/* The other names a pod resolves to the same service: Kubernetes search domains give
 * `name.ns.svc`, `name.ns` and, in the pod's own namespace, `name`; clients may also use the
 * service's addresses as Host. Added last, once every vhost's routes are final. */
static void add_aliases(builder_t *b)
{
    static const char suffix[] = ".svc.cluster.local";
    const char *ns = b->scope->proxy_namespace;
    size_t n = b->n;
    for (size_t i = 0; i < n; i++) {
        const char *d = b->vhosts[i].domain;
        if (b->vhosts[i].shared_routes || is_wild(d))
            continue;
        const weir_service_entry_t *se = weir_config_find_service(b->cfg, d);
        for (size_t a = 0; se != NULL && a < se->n_addresses; a++) {
            if (strchr(se->addresses[a], '/') == NULL)
                add_alias(b, &b->vhosts[i], se->addresses[a]);
        }
        if (!ends_with(d, suffix))
            continue;
        size_t base = strlen(d) - (sizeof(suffix) - 1); /* "name.ns" */
        const char *dot = memchr(d, '.', base);
        if (dot == NULL)
            continue;
        char *name_ns = weir_mem_strndup(d, base);
        char *name_ns_svc = weir_mem_strndup(d, base + 4);
        add_alias(b, &b->vhosts[i], name_ns_svc);
        add_alias(b, &b->vhosts[i], name_ns);
        size_t name_len = (size_t)(dot - d);
        if (ns != NULL && strlen(ns) == base - name_len - 1 && memcmp(dot + 1, ns, strlen(ns)) == 0) {
            char *name = weir_mem_strndup(d, name_len);
            add_alias(b, &b->vhosts[i], name);
            free(name);
        }
        free(name_ns);
        free(name_ns_svc);
    }
}

weir_route_table_t *weir_router_build(const weir_config_t *cfg, const weir_router_scope_t *scope)
{
    table_impl_t *impl = weir_mem_calloc(1, sizeof(*impl));
    builder_t b = {.cfg = cfg, .scope = scope};

    for (size_t i = 0; cfg != NULL && i < cfg->n_virtual_services; i++) {
        const weir_virtual_service_t *vs = &cfg->virtual_services[i];
        /* Istio indexes VirtualServices by their top-level gateways only; a match entry's own
         * gateways then narrow (or redirect) that entry, never select the VS by themselves. */
        if (!scope_has_gateway(scope, vs->gateways, vs->n_gateways))
            continue;
        char **domains;
        size_t n_domains = vs_domains(scope, vs, &domains);
        for (size_t d = 0; d < n_domains; d++) {
            vhost_state_t *st;
            weir_vhost_t *vh = vhost_get(&b, domains[d], &st);
            if (!st->closed)
                add_vs_routes(&b, vh, st, vs);
            free(domains[d]);
        }
        free(domains);
    }
    if (scope->proxy_namespace != NULL && cfg != NULL) {
        add_default_routes(&b, impl);
        add_aliases(&b);
    }
    free(b.state);

    sort_vhosts(b.vhosts, b.n);
    impl->pub.vhosts = b.vhosts;
    impl->pub.n_vhosts = b.n;
    impl->domain_len = weir_mem_calloc(b.n, sizeof(*impl->domain_len));
    for (size_t i = 0; i < b.n; i++)
        impl->domain_len[i] = strlen(b.vhosts[i].domain);
    /* One ovector pair is enough: routing asks only whether the whole subject matched
     * (pcre2_match returns 0, still a match, when a pattern has more groups than fit). */
    impl->md = pcre2_match_data_create(1, NULL);
    if (impl->md == NULL) {
        fprintf(stderr, "weir: out of memory creating regex match data\n");
        abort();
    }
    return &impl->pub;
}

void weir_router_free(weir_route_table_t *t)
{
    if (t == NULL)
        return;
    table_impl_t *impl = (table_impl_t *)t;
    for (size_t i = 0; i < t->n_vhosts; i++) {
        weir_vhost_t *vh = &t->vhosts[i];
        free(vh->domain);
        if (vh->shared_routes)
            continue;
        for (size_t j = 0; j < vh->n_routes; j++) {
            free(vh->routes[j].clusters);
            free(vh->routes[j].mirror_clusters);
            free(vh->routes[j].cumulative_weight);
            free(vh->routes[j].name);
        }
        free(vh->routes);
    }
    free(t->vhosts);
    for (size_t i = 0; i < impl->n_default_rules; i++)
        free(impl->default_rules[i].route);
    free(impl->default_rules);
    pcre2_match_data_free(impl->md);
    free(impl->domain_len);
    free(impl);
}

/* ---- match ---- */

const weir_vhost_t *weir_router_find_vhost(const weir_route_table_t *t, const char *authority,
                                           size_t len)
{
    if (authority == NULL)
        len = 0;
    const size_t *domain_len = ((const table_impl_t *)t)->domain_len;
    size_t hl = host_len(authority, len);
    for (size_t i = 0; i < t->n_vhosts; i++) {
        const weir_vhost_t *vh = &t->vhosts[i];
        const char *d = vh->domain;
        size_t dl = domain_len[i];
        if (!is_wild(d)) {
            if (dl == hl && bytes_eq(authority, d, hl, true))
                return vh;
        } else if (dl == 1) {
            return vh; /* "*" sorts last */
        } else {
            /* "*.example.com" needs at least one character for its star. */
            size_t sl = dl - 1;
            if (hl > sl && bytes_eq(authority + hl - sl, d + 1, sl, true))
                return vh;
        }
    }
    return NULL;
}

typedef struct {
    const weir_route_request_t *req;
    size_t path_only_len; /* path without "?query" */
    const char *query;    /* after '?', NULL when the target has none */
    size_t query_len;
    pcre2_match_data *md;
} req_view_t;

static bool string_match(const weir_string_match_t *sm, const char *s, size_t len, bool icase,
                         pcre2_match_data *md)
{
    switch (sm->kind) {
    case WEIR_MATCH_NONE:
        return true;
    case WEIR_MATCH_EXACT:
        return len == sm->value_len && bytes_eq(s, sm->value, len, icase);
    case WEIR_MATCH_PREFIX:
        return len >= sm->value_len && bytes_eq(s, sm->value, sm->value_len, icase);
    case WEIR_MATCH_REGEX:
        if (sm->re == NULL)
            return false;
        /* Anchored at both ends again at match time, so the match is RE2's full match even
         * if a pattern was compiled without the flags. Errors (bad UTF-8 in the subject,
         * match limits) count as no match. */
        return pcre2_match(sm->re, (PCRE2_SPTR)(s ? s : ""), len, 0,
                           PCRE2_ANCHORED | PCRE2_ENDANCHORED, md, NULL) >= 0;
    }
    return false;
}

/* The first header of that name (case-insensitive), or NULL. */
static const weir_http_header_t *find_header(const weir_route_request_t *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->n_headers; i++) {
        const weir_http_header_t *h = &req->headers[i];
        if (h->name_len == n && strncasecmp(h->name, name, n) == 0)
            return h;
    }
    return NULL;
}

/* The value of the first `name` parameter in the query, without decoding. `?key` and `?key=`
 * both give an empty value; false when the key is absent. */
static bool find_query_param(const req_view_t *v, const char *name, const char **value,
                             size_t *value_len)
{
    size_t n = strlen(name);
    const char *p = v->query, *end = v->query + v->query_len;
    while (p != NULL && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *seg_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(seg_end - p));
        const char *key_end = eq ? eq : seg_end;
        if ((size_t)(key_end - p) == n && memcmp(p, name, n) == 0) {
            *value = eq ? eq + 1 : seg_end;
            *value_len = eq ? (size_t)(seg_end - eq - 1) : 0;
            return true;
        }
        p = seg_end + 1;
    }
    return false;
}

static bool entry_matches(const weir_http_match_t *m, const req_view_t *v)
{
    const weir_route_request_t *req = v->req;
    if (!string_match(&m->uri, req->path, v->path_only_len,
                      m->ignore_uri_case && m->uri.kind != WEIR_MATCH_REGEX, v->md))
        return false;
    if (m->scheme.kind != WEIR_MATCH_NONE &&
        !string_match(&m->scheme, req->scheme, req->scheme ? strlen(req->scheme) : 0, false, v->md))
        return false;
    if (!string_match(&m->method, req->method, req->method_len, false, v->md))
        return false;
    if (!string_match(&m->authority, req->authority, req->authority_len, false, v->md))
        return false;

    for (size_t i = 0; i < m->n_headers; i++) {
        const weir_kv_match_t *km = &m->headers[i];
        const weir_http_header_t *h = find_header(req, km->name);
        if (h == NULL || !string_match(&km->match, h->value, h->value_len, false, v->md))
            return false;
    }
    for (size_t i = 0; i < m->n_without_headers; i++) {
        const weir_kv_match_t *km = &m->without_headers[i];
        const weir_http_header_t *h = find_header(req, km->name);
        /* Inverted; a missing header is "" (so a missing header does not match `exact: x`
         * and the inverted condition holds), and `{}` (presence) holds when absent. */
        bool hit =
            h ? string_match(&km->match, h->value, h->value_len, false, v->md)
              : km->match.kind != WEIR_MATCH_NONE && string_match(&km->match, "", 0, false, v->md);
        if (hit)
            return false;
    }
    for (size_t i = 0; i < m->n_query_params; i++) {
        const weir_kv_match_t *km = &m->query_params[i];
        const char *val;
        size_t val_len;
        if (!find_query_param(v, km->name, &val, &val_len) ||
            !string_match(&km->match, val, val_len, false, v->md))
            return false;
    }
    return true;
}

const weir_route_t *weir_router_match(const weir_route_table_t *t, const weir_route_request_t *req)
{
    const weir_vhost_t *vh = weir_router_find_vhost(t, req->authority, req->authority_len);
    if (vh == NULL)
        return NULL;

    req_view_t v = {.req = req, .md = ((const table_impl_t *)t)->md};
    const char *q = req->path ? memchr(req->path, '?', req->path_len) : NULL;
    v.path_only_len = q ? (size_t)(q - req->path) : req->path_len;
    if (q != NULL) {
        v.query = q + 1;
        v.query_len = req->path_len - v.path_only_len - 1;
    }

    for (size_t i = 0; i < vh->n_routes; i++) {
        const weir_route_t *r = &vh->routes[i];
        if (r->match == NULL || entry_matches(r->match, &v))
            return r;
    }
    return NULL;
}

size_t weir_route_pick(const weir_route_t *r, uint32_t random_value)
{
    if (r->n_clusters <= 1)
        return 0;
    uint32_t total = r->cumulative_weight[r->n_clusters - 1];
    if (total == 0)
        return 0; /* all-zero weights are a validation error; never divide by zero */
    uint32_t x = random_value % total;
    for (size_t i = 0; i < r->n_clusters; i++) {
        if (x < r->cumulative_weight[i])
            return i;
    }
    return r->n_clusters - 1;
}

bool weir_route_rewrite_path(const weir_route_t *r, const char *path, size_t path_len,
                             weir_buf_t *out)
{
    if (!r->rule->has_rewrite || r->rule->rewrite.uri == NULL)
        return false;
    const char *q = memchr(path, '?', path_len);
    size_t path_only = q ? (size_t)(q - path) : path_len;

    /* Envoy prefix_rewrite swaps the part the route matched: the prefix for a prefix match,
     * the whole path for exact and regex matches, and "/" for a route without a uri match
     * (Istio gives it prefix "/"), so `rewrite: /api` on a catch-all makes /x into /apix. */
    size_t matched;
    const weir_string_match_t *uri = r->match ? &r->match->uri : NULL;
    if (uri == NULL || uri->kind == WEIR_MATCH_NONE)
        matched = path_only > 0 && path[0] == '/' ? 1 : 0;
    else if (uri->kind == WEIR_MATCH_PREFIX)
        matched = uri->value_len < path_only ? uri->value_len : path_only;
    else
        matched = path_only;

    weir_buf_append_str(out, r->rule->rewrite.uri);
    weir_buf_append(out, path + matched, path_len - matched);
    return true;
}

static uint32_t scheme_default_port(const char *scheme)
{
    if (strcasecmp(scheme, "http") == 0)
        return 80;
    if (strcasecmp(scheme, "https") == 0)
        return 443;
    return 0;
}

void weir_route_redirect_location(const weir_route_t *r, const weir_route_request_t *req,
                                  uint32_t listener_port, bool tls, weir_buf_t *out)
{
    const weir_redirect_t *rd = &r->rule->redirect;
    const char *scheme = rd->scheme ? rd->scheme : tls ? "https" : "http";

    uint32_t port = rd->port;
    if (port == 0 && rd->derive_port == WEIR_DERIVE_PORT_FROM_REQUEST_PORT)
        port = listener_port;
    if (port == scheme_default_port(scheme))
        port = 0;

    const char *host;
    size_t hl;
    if (rd->authority != NULL) {
        host = rd->authority;
        hl = strlen(host);
        if (port != 0)
            hl = host_len(host, hl); /* the port written below replaces any in the config */
    } else {
        host = req->authority ? req->authority : "";
        hl = host_len(host, req->authority ? req->authority_len : 0);
    }

    weir_buf_append_str(out, scheme);
    weir_buf_append(out, "://", 3);
    weir_buf_append(out, host, hl);
    if (port != 0)
        weir_buf_appendf(out, ":%u", (unsigned)port);

    /* Envoy newUri: path_redirect replaces the path; the request's query stays unless the new
     * path carries its own. */
    const char *path = req->path ? req->path : "";
    size_t path_len = req->path ? req->path_len : 0;
    const char *q = memchr(path, '?', path_len);
    size_t start = out->len;
    if (rd->uri != NULL) {
        weir_buf_append_str(out, rd->uri);
        if (q != NULL && strchr(rd->uri, '?') == NULL)
            weir_buf_append(out, q, path_len - (size_t)(q - path));
    } else {
        weir_buf_append(out, path, path_len);
    }
    if (out->len == start || out->base[start] != '/') {
        /* Envoy makes the path absolute; insert the slash in place. */
        weir_buf_append(out, "/", 1);
        memmove(out->base + start + 1, out->base + start, out->len - start - 1);
        out->base[start] = '/';
    }
}
