/* common/analyze.c: see analyze.h.
 *
 * Each check walks the typed config and reports through finding(); the findings are sorted
 * by place at the end, so the order of the checks does not show. The rule checks (IST0130,
 * IST0131) follow the router (common/router.h): a rule without match is a catch-all, one
 * VirtualService's rules for a host on a gateway come after those of the VirtualServices
 * loaded before it, and a match's own gateways decide where it applies. */
#include "common/analyze.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/mem.h"

#define MESH "mesh"
#define TLS_MODE_LABEL "security.istio.io/tlsMode" /* "istio" on workloads with a sidecar */

typedef struct {
    const weir_config_t *cfg;
    weir_diags_t *out;
    char *hint; /* the last hintf() result */
} an_t;

/* Whether the config declares services and workloads itself. One with no ServiceEntry (or no
 * WorkloadEntry) at all takes them from a registry weir cannot see offline, Kubernetes', and
 * checking against an empty registry would only report every host (or selector). */
static bool has_services(const an_t *a)
{
    return a->cfg->n_service_entries > 0;
}

static bool has_workloads(const an_t *a)
{
    return a->cfg->n_workload_entries > 0;
}

static char *vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    size_t size = n > 0 ? (size_t)n + 1 : 1;
    char *s = weir_mem_alloc(size);
    vsnprintf(s, size, fmt, ap2);
    va_end(ap2);
    return s;
}

/* A formatted hint, valid until the next call. */
static const char *hintf(an_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *hintf(an_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    free(a->hint);
    a->hint = vformat(fmt, ap);
    va_end(ap);
    return a->hint;
}

static void finding(an_t *a, weir_diag_level_t level, const char *code, const weir_place_t *at,
                    const char *hint, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void finding(an_t *a, weir_diag_level_t level, const char *code, const weir_place_t *at,
                    const char *hint, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    weir_diags_vadd_coded(a->out, level, code, at->file, at->line, at->col, hint, fmt, ap);
    va_end(ap);
}

/* ---- small helpers ------------------------------------------------------------------------ */

static bool contains(char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (list[i] != NULL && strcmp(list[i], s) == 0)
            return true;
    }
    return false;
}

static bool bound_to(const weir_virtual_service_t *vs, const char *gateway)
{
    return contains(vs->gateways, vs->n_gateways, gateway);
}

static const weir_gateway_t *find_gateway(const weir_config_t *cfg, const char *qualified_name)
{
    for (size_t i = 0; i < cfg->n_gateways; i++) {
        if (strcmp(cfg->gateways[i].qualified_name, qualified_name) == 0)
            return &cfg->gateways[i];
    }
    return NULL;
}

/* "a=1,b=2" */
static void append_labels(weir_buf_t *b, const weir_labels_t *l)
{
    for (size_t i = 0; i < l->count; i++)
        weir_buf_appendf(b, "%s%s=%s", i ? "," : "", l->items[i].key, l->items[i].value);
}

/* "\"a\", \"b\"" */
static void append_quoted(weir_buf_t *b, char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        weir_buf_appendf(b, "%s\"%s\"", i ? ", " : "", list[i]);
}

static bool same_labels(const weir_labels_t *x, const weir_labels_t *y)
{
    return x->count == y->count && weir_labels_match(x, y); /* keys are unique in a map */
}

static bool in_mesh(const weir_workload_entry_t *ep)
{
    const char *mode = weir_labels_get(&ep->labels, TLS_MODE_LABEL);
    return mode != NULL && strcmp(mode, "istio") == 0;
}

/* The candidate nearest to a word, for "did you mean" hints: offer each, read best. */
typedef struct {
    const char *word, *best;
    size_t distance;
} nearest_t;

static void nearest_offer(nearest_t *n, const char *candidate)
{
    size_t d = weir_diag_edit_distance(n->word, candidate);
    if ((n->best == NULL || d < n->distance) && weir_diag_is_near(n->word, candidate)) {
        n->best = candidate;
        n->distance = d;
    }
}

/* ---- hosts, as Istio's host.Name (the router has the same rules) -------------------------- */

static bool is_wild(const char *h)
{
    return h[0] == '*';
}

static bool ends_with_icase(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* True when the two host patterns have some host in common (host.Name.Matches). */
static bool hosts_overlap(const char *x, const char *y)
{
    if (is_wild(x) && is_wild(y))
        return ends_with_icase(x + 1, y + 1) || ends_with_icase(y + 1, x + 1);
    if (is_wild(x))
        return ends_with_icase(y, x + 1);
    if (is_wild(y))
        return ends_with_icase(x, y + 1);
    return strcasecmp(x, y) == 0;
}

static bool host_declared(const weir_config_t *cfg, const char *host)
{
    for (size_t i = 0; i < cfg->n_service_entries; i++) {
        const weir_service_entry_t *se = &cfg->service_entries[i];
        for (size_t h = 0; h < se->n_hosts; h++) {
            if (hosts_overlap(host, se->hosts[h]))
                return true;
        }
    }
    return false;
}

/* ---- IST0101: hosts no ServiceEntry declares ---------------------------------------------- */

static const char *undeclared_host_hint(an_t *a, const char *host)
{
    nearest_t near = {host, NULL, 0};
    for (size_t i = 0; i < a->cfg->n_service_entries; i++) {
        const weir_service_entry_t *se = &a->cfg->service_entries[i];
        for (size_t h = 0; h < se->n_hosts; h++)
            nearest_offer(&near, se->hosts[h]);
    }
    if (near.best != NULL)
        return hintf(a, "did you mean \"%s\"?", near.best);
    return "declare it with a ServiceEntry; weir does not read Kubernetes Services";
}

/* `what` names the field: "http[0].route[1]", "http[0] mirror". */
static void check_destination(an_t *a, const weir_destination_t *d, const weir_place_t *at,
                              const char *what)
{
    if (d->host == NULL || !has_services(a) || host_declared(a->cfg, d->host))
        return;
    finding(a, WEIR_DIAG_WARNING, "IST0101", at, undeclared_host_hint(a, d->host),
            "%s: destination host \"%s\" is not declared by any ServiceEntry", what, d->host);
}

static void check_routes(an_t *a, const weir_route_destination_t *route, size_t n, const char *list,
                         size_t i)
{
    weir_buf_t what = WEIR_BUF_INIT;
    for (size_t j = 0; j < n; j++) {
        weir_buf_reset(&what);
        weir_buf_appendf(&what, "%s[%zu].route[%zu]", list, i, j);
        check_destination(a, &route[j].destination, &route[j].place, what.base);
    }
    weir_buf_free(&what);
}

static void check_hosts(an_t *a)
{
    const weir_config_t *cfg = a->cfg;
    weir_buf_t what = WEIR_BUF_INIT;
    for (size_t v = 0; v < cfg->n_virtual_services; v++) {
        const weir_virtual_service_t *vs = &cfg->virtual_services[v];
        for (size_t i = 0; i < vs->n_http; i++) {
            const weir_http_route_t *rule = &vs->http[i];
            check_routes(a, rule->route, rule->n_route, "http", i);
            for (size_t j = 0; j < rule->n_mirrors; j++) {
                weir_buf_reset(&what);
                weir_buf_appendf(&what, "http[%zu] mirror", i);
                check_destination(a, &rule->mirrors[j].destination, &rule->mirrors[j].place,
                                  what.base);
            }
        }
        for (size_t i = 0; i < vs->n_tls; i++)
            check_routes(a, vs->tls[i].route, vs->tls[i].n_route, "tls", i);
        for (size_t i = 0; i < vs->n_tcp; i++)
            check_routes(a, vs->tcp[i].route, vs->tcp[i].n_route, "tcp", i);
    }
    weir_buf_free(&what);
    for (size_t i = 0; i < cfg->n_destination_rules; i++) {
        const weir_destination_rule_t *dr = &cfg->destination_rules[i];
        if (dr->host == NULL || !has_services(a) || host_declared(cfg, dr->host))
            continue;
        finding(a, WEIR_DIAG_WARNING, "IST0101", &dr->place, undeclared_host_hint(a, dr->host),
                "DestinationRule %s/%s: host \"%s\" is not declared by any ServiceEntry, so its "
                "policy and subsets apply to nothing",
                dr->namespace, dr->name, dr->host);
    }
}

/* ---- IST0130, IST0131: rules and matches no request reaches -------------------------------- */

/* A rule without match stands for one entry that matches everything. */
static const weir_http_match_t match_all;

static const weir_http_match_t *entry_match(const weir_http_route_t *rule, size_t k)
{
    return rule->n_matches ? &rule->matches[k] : &match_all;
}

static size_t entry_count(const weir_http_route_t *rule)
{
    return rule->n_matches ? rule->n_matches : 1;
}

/* Where a match applies: its own gateways replace the VirtualService's. */
static bool entry_applies(const weir_http_match_t *m, const char *gateway)
{
    return m->n_gateways == 0 || contains(m->gateways, m->n_gateways, gateway);
}

/* ignoreUriCase acts on exact and prefix only. */
static bool uri_icase(const weir_http_match_t *m)
{
    return m->ignore_uri_case &&
           (m->uri.kind == WEIR_MATCH_EXACT || m->uri.kind == WEIR_MATCH_PREFIX);
}

static bool text_eq(const weir_string_match_t *x, const weir_string_match_t *y, size_t n,
                    bool icase)
{
    return icase ? strncasecmp(x->value, y->value, n) == 0 : memcmp(x->value, y->value, n) == 0;
}

/* Whether every value `y` accepts, `x` accepts too. Envoy treats uri prefix "/" as no
 * condition; the callers pass the uri through uri_of() for that. */
static bool string_covers(const weir_string_match_t *x, bool x_icase, const weir_string_match_t *y,
                          bool y_icase)
{
    if (x->kind == WEIR_MATCH_NONE)
        return true;
    if (y->kind == WEIR_MATCH_NONE || (y_icase && !x_icase))
        return false;
    switch (x->kind) {
    case WEIR_MATCH_EXACT:
        return y->kind == WEIR_MATCH_EXACT && y->value_len == x->value_len &&
               text_eq(x, y, x->value_len, x_icase);
    case WEIR_MATCH_PREFIX:
        return y->kind != WEIR_MATCH_REGEX && y->value_len >= x->value_len &&
               text_eq(x, y, x->value_len, x_icase);
    case WEIR_MATCH_REGEX:
        if (y->kind == WEIR_MATCH_REGEX)
            return y->value_len == x->value_len && text_eq(x, y, x->value_len, false);
        if (y->kind == WEIR_MATCH_EXACT && x->re != NULL) {
            pcre2_match_data *md = pcre2_match_data_create_from_pattern(x->re, NULL);
            int rc =
                md ? pcre2_match(x->re, (PCRE2_SPTR)y->value, y->value_len, 0, 0, md, NULL) : -1;
            pcre2_match_data_free(md);
            return rc >= 0;
        }
        return false;
    case WEIR_MATCH_NONE:
        break;
    }
    return true;
}

static const weir_string_match_t no_condition;

static const weir_string_match_t *uri_of(const weir_http_match_t *m)
{
    bool slash =
        m->uri.kind == WEIR_MATCH_PREFIX && m->uri.value_len == 1 && m->uri.value[0] == '/';
    return slash ? &no_condition : &m->uri;
}

/* Every condition of x is met by whatever meets y's, for headers and query parameters. */
static bool kv_covers(const weir_kv_match_t *x, size_t nx, const weir_kv_match_t *y, size_t ny,
                      bool same_only)
{
    for (size_t i = 0; i < nx; i++) {
        bool found = false;
        for (size_t j = 0; j < ny && !found; j++) {
            if (strcasecmp(x[i].name, y[j].name) != 0)
                continue;
            /* A withoutHeaders entry is met only by the same entry. */
            found = same_only ? x[i].match.kind == y[j].match.kind &&
                                    string_covers(&x[i].match, false, &y[j].match, false)
                              : string_covers(&x[i].match, false, &y[j].match, false);
        }
        if (!found)
            return false;
    }
    return true;
}

/* True when every request y matches, x matches too (x "covers" y). Not complete: regexes are
 * compared as text, except against an exact value, which is run through the regex. */
static bool covers(const weir_http_match_t *x, const weir_http_match_t *y)
{
    return (x->port == 0 || x->port == y->port) &&
           string_covers(uri_of(x), uri_icase(x), uri_of(y), uri_icase(y)) &&
           string_covers(&x->scheme, false, &y->scheme, false) &&
           string_covers(&x->method, false, &y->method, false) &&
           string_covers(&x->authority, false, &y->authority, false) &&
           kv_covers(x->headers, x->n_headers, y->headers, y->n_headers, false) &&
           kv_covers(x->query_params, x->n_query_params, y->query_params, y->n_query_params,
                     false) &&
           kv_covers(x->without_headers, x->n_without_headers, y->without_headers,
                     y->n_without_headers, true);
}

/* One entry of a route table: match k of rule r of a VirtualService. */
typedef struct {
    const weir_virtual_service_t *vs;
    size_t rule, match;
} entry_t;

/* The first entry of `vs` before (j, k) that applies on `gateway` and covers m. */
static bool cover_in(const weir_virtual_service_t *vs, size_t j, size_t k, const char *gateway,
                     const weir_http_match_t *m, entry_t *cover)
{
    for (size_t r = 0; r <= j && r < vs->n_http; r++) {
        const weir_http_route_t *rule = &vs->http[r];
        for (size_t q = 0; q < entry_count(rule) && (r < j || q < k); q++) {
            const weir_http_match_t *c = entry_match(rule, q);
            if (entry_applies(c, gateway) && covers(c, m)) {
                *cover = (entry_t){vs, r, q};
                return true;
            }
        }
    }
    return false;
}

typedef enum { FATE_USED, FATE_COVERED, FATE_NO_GATEWAY } fate_kind_t;

typedef struct {
    fate_kind_t kind;
    entry_t cover;       /* COVERED */
    const char *gateway; /* COVERED by another VirtualService: where they merge */
    const char *host;
} fate_t;

/* Whether match k of rule j of v is reached by some request on some proxy it is bound to.
 * At a gateway the rules of earlier VirtualServices for the same host come first; for the
 * mesh IST0109 reports two VirtualServices on one host instead. */
static fate_t entry_fate(const weir_config_t *cfg, const weir_virtual_service_t *v, size_t j,
                         size_t k)
{
    const weir_http_match_t *m = entry_match(&v->http[j], k);
    fate_t f = {.kind = FATE_NO_GATEWAY};
    for (size_t g = 0; g < v->n_gateways; g++) {
        const char *gw = v->gateways[g];
        if (!entry_applies(m, gw))
            continue;
        for (size_t h = 0; h < v->n_hosts; h++) {
            fate_t here = {.kind = FATE_USED};
            for (const weir_virtual_service_t *o = cfg->virtual_services;
                 o < v && strcmp(gw, MESH) != 0 && here.kind == FATE_USED; o++) {
                if (bound_to(o, gw) && contains(o->hosts, o->n_hosts, v->hosts[h]) &&
                    cover_in(o, o->n_http, 0, gw, m, &here.cover))
                    here = (fate_t){FATE_COVERED, here.cover, gw, v->hosts[h]};
            }
            if (here.kind == FATE_USED && cover_in(v, j, k, gw, m, &here.cover))
                here.kind = FATE_COVERED;
            if (here.kind == FATE_USED)
                return here;
            if (f.kind != FATE_COVERED)
                f = here;
        }
    }
    return f;
}

static bool is_catch_all(const entry_t *e)
{
    return covers(entry_match(&e->vs->http[e->rule], e->match), &match_all);
}

/* "http[1]" or "http[1].match[0]", "VirtualService ns/a http[1]" when in another one, then
 * " at file:line:col". */
static void append_entry(weir_buf_t *b, const weir_virtual_service_t *self, const entry_t *e)
{
    const weir_http_route_t *rule = &e->vs->http[e->rule];
    if (e->vs != self)
        weir_buf_appendf(b, "VirtualService %s/%s ", e->vs->namespace, e->vs->name);
    weir_buf_appendf(b, "http[%zu]", e->rule);
    const weir_place_t *p = &rule->place;
    if (rule->n_matches > 1) {
        weir_buf_appendf(b, ".match[%zu]", e->match);
        p = &rule->matches[e->match].place;
    }
    weir_buf_appendf(b, " at %s:%u:%u", p->file, p->line, p->col);
}

/* Why entry (j, k) of v, or its whole rule, is never used, into why; returns a hint. */
static const char *explain(an_t *a, weir_buf_t *why, const weir_virtual_service_t *v, size_t j,
                           size_t k, bool whole_rule, const fate_t *f)
{
    if (f->kind == FATE_NO_GATEWAY) {
        const weir_http_match_t *m = entry_match(&v->http[j], k);
        weir_buf_append_str(why, "its gateways (");
        append_quoted(why, m->gateways, m->n_gateways);
        weir_buf_append_str(why, ") are not among the VirtualService's, which alone decide where "
                                 "it is used");
        return "add them to the VirtualService's gateways";
    }
    append_entry(why, v, &f->cover);
    bool all = is_catch_all(&f->cover);
    weir_buf_append_str(why, all ? " matches every request first"
                                 : " matches all of its requests first");
    size_t r = f->cover.rule;
    if (f->cover.vs != v) {
        weir_buf_appendf(why,
                         ", as rules for host \"%s\" on gateway %s are merged in load "
                         "order",
                         f->host, f->gateway);
        return hintf(a,
                     "move it into VirtualService %s/%s above its http[%zu], or narrow that "
                     "match",
                     f->cover.vs->namespace, f->cover.vs->name, r);
    }
    if (!whole_rule && r == j) /* an earlier match of the same rule */
        return "remove it: it adds nothing";
    if (!whole_rule)
        return hintf(a, "remove it, or move it to a rule above http[%zu]", r);
    if (all)
        return hintf(a, "move it above http[%zu], or give http[%zu] a match", r, r);
    return hintf(a, "remove it, or move it above http[%zu]", r);
}

static void check_rules(an_t *a, const weir_virtual_service_t *v)
{
    for (size_t j = 0; j < v->n_http; j++) {
        const weir_http_route_t *rule = &v->http[j];
        size_t n = entry_count(rule), unused = 0;
        fate_t *fates = weir_mem_calloc(n, sizeof(*fates));
        for (size_t k = 0; k < n; k++) {
            fates[k] = entry_fate(a->cfg, v, j, k);
            unused += fates[k].kind != FATE_USED;
        }
        weir_buf_t why = WEIR_BUF_INIT;
        if (unused == n) { /* the whole rule: explained by its first entry */
            const char *hint = explain(a, &why, v, j, 0, true, &fates[0]);
            if (n == 1)
                finding(a, WEIR_DIAG_WARNING, "IST0130", &rule->place, hint,
                        "http[%zu]: never used: %s", j, why.base);
            else
                finding(a, WEIR_DIAG_WARNING, "IST0130", &rule->place, hint,
                        "http[%zu]: never used: none of its %zu matches is reached (match[0]: %s)",
                        j, n, why.base);
        }
        for (size_t k = 0; unused < n && k < n; k++) {
            if (fates[k].kind == FATE_USED)
                continue;
            weir_buf_reset(&why);
            const char *hint = explain(a, &why, v, j, k, false, &fates[k]);
            finding(a, WEIR_DIAG_WARNING, "IST0131", &rule->matches[k].place, hint,
                    "http[%zu].match[%zu]: never used: %s", j, k, why.base);
        }
        weir_buf_free(&why);
        free(fates);
    }
}

/* ---- IST0109: one host, two VirtualServices, for the mesh ---------------------------------- */

static void check_mesh_hosts(an_t *a, const weir_virtual_service_t *v)
{
    if (!bound_to(v, MESH))
        return;
    for (size_t h = 0; h < v->n_hosts; h++) {
        for (const weir_virtual_service_t *o = a->cfg->virtual_services; o < v; o++) {
            if (!bound_to(o, MESH) || !contains(o->hosts, o->n_hosts, v->hosts[h]))
                continue;
            finding(a, WEIR_DIAG_ERROR, "IST0109", &v->place,
                    "merge the two into one VirtualService",
                    "VirtualService %s/%s: host \"%s\" is also claimed for the mesh by "
                    "VirtualService %s/%s at %s:%u:%u; Istio merges VirtualServices only at "
                    "gateways, so sidecars would use just one of them",
                    v->namespace, v->name, v->hosts[h], o->namespace, o->name, o->place.file,
                    o->place.line, o->place.col);
            break;
        }
    }
}

/* ---- IST0132, WEIR0002: what a bound Gateway accepts --------------------------------------- */

static bool http_protocol(const char *p)
{
    return p == NULL || strcmp(p, "HTTP") == 0 || strcmp(p, "HTTP2") == 0 ||
           strcmp(p, "GRPC") == 0 || strcmp(p, "GRPC-WEB") == 0;
}

/* HTTP, or HTTPS terminated here: what http[] routes serve (a TLS server that terminates
 * carries tcp[] routes, a passthrough one tls[] routes). */
static bool server_takes_http(const weir_gateway_server_t *s)
{
    if (http_protocol(s->protocol))
        return true;
    return strcmp(s->protocol, "HTTPS") == 0 && s->tls_mode != WEIR_TLS_MODE_PASSTHROUGH &&
           s->tls_mode != WEIR_TLS_MODE_AUTO_PASSTHROUGH;
}

static bool server_accepts(const weir_gateway_server_t *s, const char *host)
{
    for (size_t i = 0; i < s->n_hosts; i++) {
        if (hosts_overlap(host, s->hosts[i]))
            return true;
    }
    return false;
}

static bool server_accepts_any(const weir_gateway_server_t *s, const weir_virtual_service_t *v)
{
    for (size_t h = 0; h < v->n_hosts; h++) {
        if (server_accepts(s, v->hosts[h]))
            return true;
    }
    return false;
}

static bool gateway_accepts(const weir_gateway_t *gw, const char *host)
{
    for (size_t s = 0; s < gw->n_servers; s++) {
        if (server_accepts(&gw->servers[s], host))
            return true;
    }
    return false;
}

/* http[] routes on a gateway whose servers for these hosts all speak something else. */
static void check_gateway_protocol(an_t *a, const weir_virtual_service_t *v,
                                   const weir_gateway_t *gw)
{
    const weir_gateway_server_t *other = NULL;
    for (size_t s = 0; s < gw->n_servers; s++) {
        const weir_gateway_server_t *srv = &gw->servers[s];
        if (!server_accepts_any(srv, v))
            continue;
        if (server_takes_http(srv))
            return;
        other = other ? other : srv;
    }
    if (other == NULL || v->n_http == 0)
        return;
    bool tls = strcmp(other->protocol, "HTTPS") == 0 || strcmp(other->protocol, "TLS") == 0;
    bool passthrough = other->tls_mode == WEIR_TLS_MODE_PASSTHROUGH ||
                       other->tls_mode == WEIR_TLS_MODE_AUTO_PASSTHROUGH;
    finding(a, WEIR_DIAG_WARNING, "WEIR0002", &v->http[0].place,
            tls && passthrough ? "route it by SNI with tls[], or terminate TLS with tls.mode SIMPLE"
                               : "route it with tcp[], or make the server's protocol HTTP",
            "http: never used on Gateway %s: its server for these hosts (port %u) is %s%s, which "
            "takes no http routes",
            gw->qualified_name, other->port, other->protocol,
            tls ? (passthrough ? ", passed through" : ", terminated to plain TCP") : "");
}

static bool gateway_accepts_any(const weir_gateway_t *gw, const weir_virtual_service_t *v)
{
    for (size_t h = 0; h < v->n_hosts; h++) {
        if (gateway_accepts(gw, v->hosts[h]))
            return true;
    }
    return false;
}

static void check_gateways(an_t *a, const weir_virtual_service_t *v)
{
    bool mesh = bound_to(v, MESH);
    size_t n_accepting = 0;
    for (size_t g = 0; g < v->n_gateways; g++) {
        const weir_gateway_t *gw = find_gateway(a->cfg, v->gateways[g]);
        n_accepting += gw != NULL && gateway_accepts_any(gw, v);
    }
    for (size_t g = 0; g < v->n_gateways; g++) {
        const weir_gateway_t *gw = find_gateway(a->cfg, v->gateways[g]);
        if (gw == NULL) /* "mesh", or missing: the loader's error */
            continue;
        if (gateway_accepts_any(gw, v)) {
            check_gateway_protocol(a, v, gw);
            continue;
        }
        weir_buf_t hosts = WEIR_BUF_INIT, served = WEIR_BUF_INIT;
        weir_buf_append_str(&served, ""); /* printable even with no host */
        append_quoted(&hosts, v->hosts, v->n_hosts);
        for (size_t s = 0; s < gw->n_servers; s++) {
            if (served.len)
                weir_buf_append_str(&served, ", ");
            append_quoted(&served, gw->servers[s].hosts, gw->servers[s].n_hosts);
        }
        const char *hint =
            !mesh && n_accepting == 0
                ? "it applies to no proxy at all: add one of its hosts to the Gateway's servers, "
                  "or add `mesh` to gateways to apply it to sidecars"
                : hintf(a, "add one of its hosts to a server of %s, or drop %s from gateways",
                        gw->qualified_name, gw->qualified_name);
        finding(a, WEIR_DIAG_WARNING, "IST0132", &v->place, hint,
                "VirtualService %s/%s: no server of Gateway %s accepts its hosts (%s); the "
                "Gateway's servers accept %s",
                v->namespace, v->name, gw->qualified_name, hosts.base, served.base);
        weir_buf_free(&hosts);
        weir_buf_free(&served);
    }
    /* Some gateway serves the VirtualService; a host none of them accepts, with no mesh to
     * use it either, is dead. */
    for (size_t h = 0; !mesh && n_accepting > 0 && h < v->n_hosts; h++) {
        bool accepted = false;
        for (size_t g = 0; g < v->n_gateways && !accepted; g++) {
            const weir_gateway_t *gw = find_gateway(a->cfg, v->gateways[g]);
            accepted = gw != NULL && gateway_accepts(gw, v->hosts[h]);
        }
        if (!accepted)
            finding(a, WEIR_DIAG_WARNING, "IST0132", &v->place,
                    "add it to a server of one of its Gateways, or remove it from hosts",
                    "VirtualService %s/%s: host \"%s\" is accepted by no server of its gateways",
                    v->namespace, v->name, v->hosts[h]);
    }
}

/* ---- WEIR0002 for the mesh: http routes toward a service with no HTTP port ----------------- */

/* Istio's port naming convention, <protocol>[-<suffix>], for an HTTP protocol. */
static bool named_for_http(const char *name)
{
    static const char *const prefixes[] = {"http", "http2", "grpc"};
    size_t n = name ? strcspn(name, "-") : 0;
    for (size_t i = 0; n && i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        if (strlen(prefixes[i]) == n && strncasecmp(name, prefixes[i], n) == 0)
            return true;
    }
    return false;
}

static void check_mesh_protocol(an_t *a, const weir_virtual_service_t *v)
{
    if (v->n_http == 0 || !bound_to(v, MESH))
        return;
    for (size_t h = 0; h < v->n_hosts; h++) {
        const weir_service_entry_t *se = weir_config_find_service(a->cfg, v->hosts[h]);
        if (se == NULL || se->n_ports == 0)
            continue;
        const weir_service_port_t *named = NULL;
        bool http = false;
        for (size_t i = 0; i < se->n_ports && !http; i++) {
            http = http_protocol(se->ports[i].protocol);
            if (named == NULL && named_for_http(se->ports[i].name))
                named = &se->ports[i];
        }
        if (http)
            continue;
        const weir_service_port_t *p = named ? named : &se->ports[0];
        finding(a, WEIR_DIAG_WARNING, "WEIR0002", &v->http[0].place,
                named ? hintf(a, "port \"%s\" is named for HTTP: did you mean protocol: HTTP?",
                              named->name)
                      : "declare the port's protocol HTTP, or route it with tcp[]",
                "http: never used by sidecars for host \"%s\": no port of ServiceEntry %s/%s is "
                "HTTP (port %u \"%s\" is %s), and sidecars proxy such ports as plain TCP",
                v->hosts[h], se->namespace, se->name, p->number, p->name ? p->name : "",
                p->protocol);
    }
}

/* ---- IST0145: two Gateways, one port, overlapping hosts ------------------------------------ */

static bool same_bind(const weir_gateway_server_t *x, const weir_gateway_server_t *y)
{
    return x->bind == NULL ? y->bind == NULL : y->bind != NULL && strcmp(x->bind, y->bind) == 0;
}

/* The first host of x that overlaps one of y's (*other set to that one), or NULL. */
static const char *overlapping_host(const weir_gateway_server_t *x, const weir_gateway_server_t *y,
                                    const char **other)
{
    for (size_t i = 0; i < x->n_hosts; i++) {
        for (size_t j = 0; j < y->n_hosts; j++) {
            if (hosts_overlap(x->hosts[i], y->hosts[j])) {
                *other = y->hosts[j];
                return x->hosts[i];
            }
        }
    }
    return NULL;
}

/* The server of gw that serves a host of s on s's port and address, or NULL. */
static const weir_gateway_server_t *conflicting_server(const weir_gateway_t *gw,
                                                       const weir_gateway_server_t *s,
                                                       const char **host, const char **other)
{
    for (size_t i = 0; i < gw->n_servers; i++) {
        const weir_gateway_server_t *o = &gw->servers[i];
        if (o->port == s->port && same_bind(o, s) && (*host = overlapping_host(s, o, other)))
            return o;
    }
    return NULL;
}

static void check_gateway_conflicts(an_t *a)
{
    const weir_config_t *cfg = a->cfg;
    for (size_t j = 0; j < cfg->n_gateways; j++) {
        const weir_gateway_t *gj = &cfg->gateways[j];
        for (size_t i = 0; i < j; i++) {
            const weir_gateway_t *gi = &cfg->gateways[i];
            if (gi->has_selector != gj->has_selector || !same_labels(&gi->selector, &gj->selector))
                continue;
            for (size_t k = 0; k < gj->n_servers; k++) {
                const char *host, *other;
                const weir_gateway_server_t *o =
                    conflicting_server(gi, &gj->servers[k], &host, &other);
                if (o == NULL)
                    continue;
                weir_buf_t sel = WEIR_BUF_INIT;
                if (gj->has_selector)
                    append_labels(&sel, &gj->selector);
                else
                    weir_buf_append_str(&sel, "none: every gateway workload");
                finding(
                    a, WEIR_DIAG_ERROR, "IST0145", &gj->servers[k].place,
                    "merge the two servers into one Gateway, or give them hosts that do not "
                    "overlap",
                    "servers[%zu]: port %u host \"%s\" is also served, as \"%s\", by Gateway %s "
                    "at %s:%u:%u for the same workloads (selector %s)",
                    k, o->port, host, other, gi->qualified_name, o->place.file, o->place.line,
                    o->place.col, sel.base);
                weir_buf_free(&sel);
            }
        }
    }
}

/* ---- endpoints and selectors: IST0113, IST0127, WEIR0001 ----------------------------------- */

typedef struct {
    const weir_workload_entry_t **items;
    size_t count;
} endpoints_t;

static void endpoints_add(endpoints_t *e, const weir_workload_entry_t *we)
{
    e->items = weir_mem_realloc(e->items, (e->count + 1) * sizeof(*e->items));
    e->items[e->count++] = we;
}

static endpoints_t service_endpoints(const weir_config_t *cfg, const weir_service_entry_t *se)
{
    endpoints_t e = {NULL, 0};
    size_t cursor = 0;
    for (const weir_workload_entry_t *we; (we = weir_config_service_endpoint(cfg, se, &cursor));)
        endpoints_add(&e, we);
    return e;
}

/* The WorkloadEntries of a namespace that `selector` selects (all of them when NULL). */
static endpoints_t namespace_workloads(const weir_config_t *cfg, const char *ns,
                                       const weir_labels_t *selector)
{
    endpoints_t e = {NULL, 0};
    for (size_t i = 0; i < cfg->n_workload_entries; i++) {
        const weir_workload_entry_t *we = &cfg->workload_entries[i];
        if (strcmp(we->namespace, ns) == 0 && weir_labels_match(selector, &we->labels))
            endpoints_add(&e, we);
    }
    return e;
}

/* The label key of some endpoint nearest to `key`, or NULL. */
static const char *nearest_key(const endpoints_t *eps, const char *key)
{
    nearest_t near = {key, NULL, 0};
    for (size_t e = 0; e < eps->count; e++) {
        const weir_labels_t *l = &eps->items[e]->labels;
        for (size_t i = 0; i < l->count; i++)
            nearest_offer(&near, l->items[i].key);
    }
    return near.best;
}

/* A hint for a selector that selects none of `eps` ("its endpoints", say): the nearest value
 * they carry for the first label none of them has, else the values they carry. */
static const char *selector_hint(an_t *a, const weir_labels_t *sel, const endpoints_t *eps,
                                 const char *what)
{
    for (size_t i = 0; i < sel->count; i++) {
        const char *key = sel->items[i].key, *want = sel->items[i].value;
        weir_buf_t values = WEIR_BUF_INIT;
        nearest_t near = {want, NULL, 0};
        bool found = false;
        for (size_t e = 0; e < eps->count && !found; e++) {
            const char *v = weir_labels_get(&eps->items[e]->labels, key);
            found = v != NULL && strcmp(v, want) == 0;
            bool seen = false;
            for (size_t o = 0; v != NULL && o < e && !seen; o++) {
                const char *w = weir_labels_get(&eps->items[o]->labels, key);
                seen = w != NULL && strcmp(v, w) == 0;
            }
            if (v == NULL || seen)
                continue;
            weir_buf_appendf(&values, "%s%s=%s", values.len ? ", " : "", key, v);
            nearest_offer(&near, v);
        }
        const char *hint = NULL, *near_key;
        if (found)
            ; /* this label is fine; look at the next */
        else if (near.best != NULL)
            hint = hintf(a, "did you mean %s: %s?", key, near.best);
        else if (values.len)
            hint = hintf(a, "%s carry %s", what, values.base);
        else if ((near_key = nearest_key(eps, key)) != NULL)
            hint = hintf(a, "did you mean label \"%s\"?", near_key);
        else
            hint = hintf(a, "none of %s has a label \"%s\"", what, key);
        weir_buf_free(&values);
        if (hint != NULL)
            return hint;
    }
    return hintf(a, "each label is on some of %s, but none carries them all", what);
}

/* The inbound mode an endpoint's sidecar takes for a service port (NULL: no port known). */
static weir_mtls_mode_t endpoint_mode(const weir_config_t *cfg, const weir_service_entry_t *se,
                                      const weir_workload_entry_t *ep, const weir_service_port_t *p,
                                      uint32_t *port)
{
    *port = p ? p->target_port : 0;
    for (size_t i = 0; p != NULL && p->name != NULL && i < ep->n_ports; i++) {
        if (strcmp(ep->ports[i].name, p->name) == 0)
            *port = ep->ports[i].number;
    }
    const char *ns = ep->namespace ? ep->namespace : se->namespace;
    return weir_config_peer_authentication_mode(cfg, NULL, ns, &ep->labels, *port);
}

/* IST0113 for one traffic policy: its tls.mode against the PeerAuthentication of the mesh
 * endpoints it reaches (those `subset` selects; all when NULL). */
static void check_mtls(an_t *a, const weir_service_entry_t *se, const endpoints_t *eps,
                       const weir_traffic_policy_t *pol, const weir_labels_t *subset,
                       const weir_place_t *at, const char *what)
{
    weir_mtls_mode_t refusing;
    if (!pol->has_tls)
        return;
    if (pol->tls.mode == WEIR_CLIENT_TLS_DISABLE)
        refusing = WEIR_MTLS_STRICT;
    else if (pol->tls.mode == WEIR_CLIENT_TLS_ISTIO_MUTUAL)
        refusing = WEIR_MTLS_DISABLE;
    else
        return;
    const weir_workload_entry_t *first = NULL;
    uint32_t first_port = 0;
    size_t count = 0, n_ports = se->n_ports ? se->n_ports : 1;
    for (size_t e = 0; e < eps->count; e++) {
        const weir_workload_entry_t *ep = eps->items[e];
        if (!in_mesh(ep) || !weir_labels_match(subset, &ep->labels))
            continue;
        for (size_t p = 0; p < n_ports; p++) {
            uint32_t port;
            if (endpoint_mode(a->cfg, se, ep, se->n_ports ? &se->ports[p] : NULL, &port) !=
                refusing)
                continue;
            count++;
            if (first == NULL) {
                first = ep;
                first_port = port;
            }
            break;
        }
    }
    if (count == 0)
        return;
    bool plain = refusing == WEIR_MTLS_STRICT;
    weir_buf_t more = WEIR_BUF_INIT;
    weir_buf_append_str(&more, "");
    if (count > 1)
        weir_buf_appendf(&more, " (and %zu more)", count - 1);
    finding(a, WEIR_DIAG_ERROR, "IST0113", at,
            plain ? "use tls.mode ISTIO_MUTUAL, or remove tls so that auto mTLS decides"
                  : "remove tls so that auto mTLS sends plain text, or make the workload's "
                    "PeerAuthentication PERMISSIVE",
            "%s: tls.mode %s sends %s to %s port %u%s, a mesh endpoint of %s whose "
            "PeerAuthentication is %s: its sidecar refuses every connection",
            what, plain ? "DISABLE" : "ISTIO_MUTUAL", plain ? "plain text" : "mTLS",
            first->name ? first->name : first->address, first_port, more.base, se->hosts[0],
            plain ? "STRICT" : "DISABLE");
    weir_buf_free(&more);
}

static void check_destination_rule(an_t *a, const weir_destination_rule_t *dr)
{
    const weir_service_entry_t *se = dr->host ? weir_config_find_service(a->cfg, dr->host) : NULL;
    if (se == NULL) /* IST0101, or a wildcard */
        return;
    endpoints_t eps = service_endpoints(a->cfg, se);
    weir_buf_t what = WEIR_BUF_INIT, labels = WEIR_BUF_INIT;
    weir_buf_appendf(&what, "DestinationRule %s/%s", dr->namespace, dr->name);
    check_mtls(a, se, &eps, &dr->policy, NULL, &dr->place, what.base);
    for (size_t i = 0; i < dr->n_subsets; i++) {
        const weir_subset_t *s = &dr->subsets[i];
        weir_buf_reset(&what);
        weir_buf_appendf(&what, "subsets[%zu] \"%s\"", i, s->name);
        /* A subset inherits the top level's tls at load: that one is reported already. */
        bool own_tls =
            s->policy.has_tls && (!dr->policy.has_tls || s->policy.tls.mode != dr->policy.tls.mode);
        if (own_tls)
            check_mtls(a, se, &eps, &s->policy, &s->labels, &s->place, what.base);
        bool selects = s->labels.count == 0 || eps.count == 0; /* none at all: IST0127 */
        for (size_t e = 0; e < eps.count && !selects; e++)
            selects = weir_labels_match(&s->labels, &eps.items[e]->labels);
        if (selects)
            continue;
        weir_buf_reset(&labels);
        append_labels(&labels, &s->labels);
        weir_buf_reset(&what);
        weir_buf_appendf(&what, "the endpoints of %s", dr->host);
        finding(a, WEIR_DIAG_WARNING, "WEIR0001", &s->place,
                selector_hint(a, &s->labels, &eps, what.base),
                "subsets[%zu] \"%s\": labels %s select none of the %zu endpoint(s) of %s: requests "
                "routed to it get 503 no healthy upstream",
                i, s->name, labels.base, eps.count, dr->host);
    }
    weir_buf_free(&what);
    weir_buf_free(&labels);
    free(eps.items);
}

/* IST0127 for a selector that must select WorkloadEntries of its namespace. */
static void check_selector(an_t *a, const weir_labels_t *sel, const char *ns,
                           const weir_place_t *at, const char *kind, const char *name,
                           const char *field, const char *consequence)
{
    endpoints_t selected = namespace_workloads(a->cfg, ns, sel);
    free(selected.items);
    if (selected.count > 0)
        return;
    endpoints_t all = namespace_workloads(a->cfg, ns, NULL);
    weir_buf_t what = WEIR_BUF_INIT, labels = WEIR_BUF_INIT;
    weir_buf_appendf(&what, "the WorkloadEntries of namespace %s", ns);
    weir_buf_append_str(&labels, ""); /* printable for an empty selector */
    append_labels(&labels, sel);
    finding(a, WEIR_DIAG_WARNING, "IST0127", at,
            all.count
                ? selector_hint(a, sel, &all, what.base)
                : hintf(a, "add a WorkloadEntry labelled %s to namespace %s", labels.base, ns),
            "%s %s/%s: %s %s selects no WorkloadEntry in namespace %s, so %s", kind, ns, name,
            field, labels.base, ns, consequence);
    weir_buf_free(&what);
    weir_buf_free(&labels);
    free(all.items);
}

static void check_selectors(an_t *a)
{
    const weir_config_t *cfg = a->cfg;
    if (!has_workloads(a))
        return;
    for (size_t i = 0; i < cfg->n_service_entries; i++) {
        const weir_service_entry_t *se = &cfg->service_entries[i];
        if (se->has_workload_selector)
            check_selector(a, &se->workload_selector, se->namespace, &se->place, "ServiceEntry",
                           se->name, "workloadSelector", "the service has no endpoints");
    }
    for (size_t i = 0; i < cfg->n_peer_authentications; i++) {
        const weir_peer_authentication_t *pa = &cfg->peer_authentications[i];
        /* One with a selector in the root namespace is ignored (the loader warns). */
        if (pa->has_selector && strcmp(pa->namespace, WEIR_ROOT_NAMESPACE) != 0)
            check_selector(a, &pa->selector, pa->namespace, &pa->place, "PeerAuthentication",
                           pa->name, "selector", "it applies to no workload");
    }
}

/* ---- public --------------------------------------------------------------------------------- */

void weir_analyze(const weir_config_t *cfg, weir_diags_t *out)
{
    an_t a = {cfg, out, NULL};
    size_t first = out->count;
    check_hosts(&a);
    for (size_t v = 0; v < cfg->n_virtual_services; v++) {
        const weir_virtual_service_t *vs = &cfg->virtual_services[v];
        check_rules(&a, vs);
        check_mesh_hosts(&a, vs);
        check_gateways(&a, vs);
        check_mesh_protocol(&a, vs);
    }
    check_gateway_conflicts(&a);
    for (size_t i = 0; i < cfg->n_destination_rules; i++)
        check_destination_rule(&a, &cfg->destination_rules[i]);
    check_selectors(&a);
    free(a.hint);
    weir_diags_sort(out, first, (const char *const *)cfg->files, cfg->n_files);
}

/* A JSON string; bytes that are not UTF-8 (a file name, say) become '?', as jansson takes
 * only UTF-8. NULL and "" become null when empty_is_null. */
static json_t *json_text(const char *s, bool empty_is_null)
{
    if (s == NULL || (empty_is_null && s[0] == '\0'))
        return json_null();
    json_t *j = json_string(s);
    if (j != NULL)
        return j;
    char *copy = weir_mem_strdup(s);
    for (char *p = copy; *p; p++) {
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    }
    j = json_string(copy);
    free(copy);
    return j;
}

char *weir_analyze_to_json(const weir_diags_t *d)
{
    json_t *doc = json_object(), *list = json_array();
    for (size_t i = 0; i < d->count; i++) {
        const weir_diag_t *it = &d->items[i];
        json_t *f = json_object();
        json_object_set_new(f, "level",
                            json_string(it->level == WEIR_DIAG_ERROR ? "error" : "warning"));
        json_object_set_new(f, "code", json_text(it->code, true));
        json_object_set_new(f, "file", json_text(it->file, true));
        json_object_set_new(f, "line", it->line ? json_integer(it->line) : json_null());
        json_object_set_new(f, "column", it->line ? json_integer(it->col) : json_null());
        json_object_set_new(f, "message", json_text(it->msg, false));
        json_object_set_new(f, "hint", json_text(it->hint, true));
        json_array_append_new(list, f);
    }
    json_object_set_new(doc, "findings", list);
    json_t *counts = json_object();
    json_object_set_new(counts, "errors", json_integer((json_int_t)d->errors));
    json_object_set_new(counts, "warnings", json_integer((json_int_t)(d->count - d->errors)));
    json_object_set_new(doc, "counts", counts);
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (text == NULL) {
        fprintf(stderr, "weir: out of memory rendering JSON\n");
        abort();
    }
    return text;
}
