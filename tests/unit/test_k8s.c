/* tests/unit/test_k8s.c: the Kubernetes API client (common/k8s.c) against
 * tests/tools/fake_kube_api, a scripted API server on 127.0.0.1 speaking the real wire format.
 *
 * test_watch_story walks tests/data/k8s/watch.steps: the initial lists build the registry; an
 * ADDED EndpointSlice adds an endpoint and a DELETED one removes it; changes hidden from the
 * watches followed by a compaction (an ERROR event with 410) and by an HTTP 410 each force a
 * re-list after which the registry is right; a bookmark's resourceVersion is where the next
 * watch starts; dropped connections resume their watches without a re-list; 500s back off and
 * recover; the token is re-read for every request. At every step the rendered YAML must load
 * with weir_config_load_string() without a diagnostic, alone and with the seed's Gateway,
 * VirtualService and DestinationRule, and what the config then finds (a ServiceEntry's
 * endpoints, their labels and service accounts) is compared with what the cluster holds.
 * Other tests: paged lists, TLS (certificate and server name checked), 401, bad options, the
 * protocol rules, and the in-cluster helpers.
 *
 * The client runs on a loop of its own; the fake runs as a child process (its path is next to
 * this test's executable: both are built into the same directory by tests/CMakeLists.txt). */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/k8s.h"
#include "common/mem.h"

#define STEP_MS 8000 /* how long a step may take before the test fails */

/* ---- the fake API server, as a child process -------------------------------------------- */

typedef struct {
    pid_t pid;
    int port;
} fake_t;

static char *tool_path(const char *name)
{
    static char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    assert_non_null(slash);
    weir_buf_t b = WEIR_BUF_INIT;
    weir_buf_appendf(&b, "%.*s/%s", (int)(slash - exe), exe, name);
    return b.base;
}

/* The fake of the running test, killed by its teardown: a failed assertion jumps past the
 * test's own fake_stop(). */
static fake_t *running_fake;

static void fake_start(fake_t *f, const char *script, const char *const *extra)
{
    char *path = tool_path("fake_kube_api");
    if (access(path, X_OK) != 0)
        fail_msg("%s is missing: build the target fake_kube_api (tests/tools)", path);
    char *script_path = NULL;
    weir_buf_t sp = WEIR_BUF_INIT;
    weir_buf_appendf(&sp, "%s/k8s/%s", WEIR_TEST_DATA, script);
    script_path = sp.base;
    const char *argv[16] = {path, "--script", script_path};
    int argc = 3;
    for (size_t i = 0; extra && extra[i]; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    f->pid = fork();
    assert_true(f->pid >= 0);
    if (f->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* and never outlive this test */
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    running_fake = f;
    FILE *out = fdopen(fds[0], "r");
    char line[256] = "";
    char *got = fgets(line, sizeof(line), out);
    fclose(out);
    free(path);
    free(script_path);
    if (got == NULL || sscanf(line, "fake_kube_api: listening on 127.0.0.1:%d", &f->port) != 1)
        fail_msg("fake_kube_api did not start (said \"%s\")", line);
}

static void fake_stop(fake_t *f)
{
    if (f->pid > 0) {
        kill(f->pid, SIGTERM);
        waitpid(f->pid, NULL, 0);
        f->pid = 0;
    }
    running_fake = NULL;
}

static int teardown(void **state)
{
    if (running_fake)
        fake_stop(running_fake);
    return 0;
}

/* A blocking HTTP/1.1 exchange with the fake's control endpoints; returns the body. */
static char *http_call(int port, const char *method, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: fake\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n",
                     method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    weir_buf_t b = WEIR_BUF_INIT;
    char chunk[4096];
    ssize_t r;
    while ((r = read(fd, chunk, sizeof(chunk))) > 0)
        weir_buf_append(&b, chunk, (size_t)r);
    close(fd);
    weir_buf_append(&b, "", 0);
    char *body = strstr(b.base, "\r\n\r\n");
    assert_non_null(body);
    char *out = weir_mem_strdup(body + 4);
    weir_buf_free(&b);
    return out;
}

static size_t count_lines(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
        if (p == text || p[-1] == '\n')
            n++;
    return n;
}

/* ---- the client under test -------------------------------------------------------------- */

typedef struct {
    uv_loop_t loop;
    uv_timer_t tick; /* keeps the loop turning: the client's handles are unref'd */
    weir_k8s_client_t *client;
    unsigned changes;
    char *yaml;
    char *summary;
    bool stopped;
    char token_path[128];
    char dir[64];
} ctx_t;

static char *seed_file(const char *name)
{
    weir_buf_t p = WEIR_BUF_INIT;
    weir_buf_appendf(&p, "%s/../../deploy/local/%s", WEIR_TEST_DATA, name);
    FILE *f = fopen(p.base, "r");
    if (f == NULL)
        fail_msg("%s: %s", p.base, strerror(errno));
    weir_buf_t b = WEIR_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        weir_buf_append(&b, chunk, n);
    fclose(f);
    weir_buf_free(&p);
    weir_buf_append(&b, "", 0);
    return b.base;
}

/* What weir's config sees in the rendered registry, one line per ServiceEntry:
 *   "<host> <addresses> | <endpoint>/<version>/<tlsMode>/<serviceAccount> ..."
 * or "LOAD ERROR: ..." when it does not load cleanly. */
static char *summarize(const char *yaml)
{
    weir_diags_t diags = WEIR_DIAGS_INIT;
    weir_config_t *cfg = weir_config_load_string(WEIR_K8S_SOURCE_NAME, yaml, &diags);
    weir_buf_t b = WEIR_BUF_INIT;
    if (cfg == NULL || diags.count > 0) {
        weir_buf_append_str(&b, "LOAD ERROR:");
        for (size_t i = 0; i < diags.count; i++)
            weir_buf_appendf(&b, " [%u:%u %s]", diags.items[i].line, diags.items[i].col,
                             diags.items[i].msg);
        weir_diags_clear(&diags);
        weir_config_free(cfg);
        return b.base;
    }
    for (size_t i = 0; i < cfg->n_service_entries; i++) {
        const weir_service_entry_t *se = &cfg->service_entries[i];
        weir_buf_appendf(&b, "%s", se->hosts[0]);
        for (size_t j = 0; j < se->n_addresses; j++)
            weir_buf_appendf(&b, "%s%s", j ? "," : " ", se->addresses[j]);
        weir_buf_append_str(&b, " |");
        size_t cursor = 0;
        const weir_workload_entry_t *we;
        while ((we = weir_config_service_endpoint(cfg, se, &cursor)) != NULL) {
            const char *v = weir_labels_get(&we->labels, "version");
            const char *m = weir_labels_get(&we->labels, "security.istio.io/tlsMode");
            weir_buf_appendf(&b, " %s/%s/%s/%s", we->address, v ? v : "-", m ? m : "-",
                             we->service_account ? we->service_account : "-");
        }
        weir_buf_append_str(&b, "\n");
    }
    weir_config_free(cfg);
    return b.base;
}

static void on_change(const weir_k8s_registry_t *reg, void *data)
{
    ctx_t *x = data;
    x->changes++;
    assert_int_equal(reg->generation, x->changes);
    free(x->yaml);
    free(x->summary);
    x->yaml = weir_mem_strdup(reg->yaml);
    x->summary = summarize(reg->yaml);
}

static void on_tick(uv_timer_t *t)
{
}

static void ctx_init(ctx_t *x)
{
    memset(x, 0, sizeof(*x));
    assert_int_equal(uv_loop_init(&x->loop), 0);
    uv_timer_init(&x->loop, &x->tick);
    uv_timer_start(&x->tick, on_tick, 5, 5);
    snprintf(x->dir, sizeof(x->dir), "/tmp/weir-test-k8s.XXXXXX");
    assert_non_null(mkdtemp(x->dir));
    snprintf(x->token_path, sizeof(x->token_path), "%s/token", x->dir);
}

static void write_file(const char *path, const char *text)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0); /* as the kubelet swaps a projected token */
}

static weir_k8s_options_t options(ctx_t *x, const char *url)
{
    return (weir_k8s_options_t){
        .api_url = url,
        .token_path = x->token_path,
        .backoff_initial_ms = 20,
        .backoff_max_ms = 200,
        .watch_timeout_s = 30,
        .on_change = on_change,
        .data = x,
    };
}

static void on_stopped(void *data)
{
    ((ctx_t *)data)->stopped = true;
}

static void ctx_stop_client(ctx_t *x)
{
    if (x->client == NULL)
        return;
    weir_k8s_stop(x->client, on_stopped, x);
    x->client = NULL;
    while (!x->stopped)
        uv_run(&x->loop, UV_RUN_ONCE);
    x->stopped = false;
}

static void ctx_free(ctx_t *x)
{
    ctx_stop_client(x);
    uv_close((uv_handle_t *)&x->tick, NULL);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    /* every handle of the client was closed: the loop closes */
    assert_int_equal(uv_loop_close(&x->loop), 0);
    free(x->yaml);
    free(x->summary);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", x->dir);
    assert_int_equal(system(cmd), 0);
}

/* Turns the loop until pred holds or ms pass. */
static bool wait_for(ctx_t *x, bool (*pred)(ctx_t *, const void *), const void *arg, unsigned ms)
{
    uv_update_time(&x->loop);
    uint64_t deadline = uv_now(&x->loop) + ms;
    while (!pred(x, arg)) {
        if (uv_now(&x->loop) >= deadline)
            return false;
        uv_run(&x->loop, UV_RUN_ONCE);
    }
    return true;
}

static bool summary_is(ctx_t *x, const void *want)
{
    return x->summary && strcmp(x->summary, want) == 0;
}

static void expect_summary(ctx_t *x, const char *want, const char *what)
{
    if (!wait_for(x, summary_is, want, STEP_MS))
        fail_msg("%s: the registry is not what the cluster holds\nwant:\n%s\ngot:\n%s", what, want,
                 x->summary ? x->summary : "(nothing delivered)");
}

typedef struct {
    int port;
    const char *needle;
    size_t at_least;
} log_want_t;

static bool log_has(ctx_t *x, const void *arg)
{
    const log_want_t *w = arg;
    char *log = http_call(w->port, "GET", "/fake/log");
    bool ok = count_lines(log, w->needle) >= w->at_least;
    free(log);
    return ok;
}

static bool synced(ctx_t *x, const void *arg)
{
    return weir_k8s_synced(x->client);
}

static bool errors_at_least(ctx_t *x, const void *arg)
{
    return weir_k8s_stats(x->client).errors >= *(const uint64_t *)arg;
}

/* The fake has reached its n-th pause; *rv gets its resourceVersion then. */
struct pause_at {
    int port;
    unsigned n;
    long rv;
};

static bool paused_at(ctx_t *x, const void *arg)
{
    struct pause_at *p = (struct pause_at *)arg;
    char want[32];
    snprintf(want, sizeof(want), "pauses=%u paused=1", p->n);
    char *text = http_call(p->port, "GET", "/fake/status");
    bool ok = strstr(text, want) != NULL && sscanf(strstr(text, "rv="), "rv=%ld", &p->rv) == 1;
    free(text);
    return ok;
}

static void resume(const fake_t *f)
{
    free(http_call(f->port, "POST", "/fake/resume"));
}

/* The rendered registry loads together with the seed's Istio resources (what a proxy in kind
 * loads: the ConfigMap's files plus this source), and the seed's subsets find their pods. */
static void check_with_seed(const char *yaml, const char *want_v1, const char *want_v2)
{
    char *gw = seed_file("gateway.yaml"), *vs = seed_file("virtualservice.yaml");
    char *dr = seed_file("destinationrule.yaml");
    weir_buf_t all = WEIR_BUF_INIT;
    weir_buf_appendf(&all, "%s\n---\n%s\n---\n%s\n%s", gw, vs, dr, yaml);
    weir_diags_t diags = WEIR_DIAGS_INIT;
    weir_config_t *cfg = weir_config_load_string("seed+kubernetes-api", all.base, &diags);
    for (size_t i = 0; i < diags.count; i++)
        print_message("diag %u:%u: %s\n", diags.items[i].line, diags.items[i].col,
                      diags.items[i].msg);
    assert_non_null(cfg);
    assert_int_equal(diags.errors, 0);
    const weir_service_entry_t *se =
        weir_config_find_service(cfg, "web-service.default.svc.cluster.local");
    assert_non_null(se);
    const weir_destination_rule_t *d =
        weir_config_find_destination_rule(cfg, "web-service.default.svc.cluster.local");
    assert_non_null(d);
    const char *want[2] = {want_v1, want_v2};
    const char *names[2] = {"v1", "v2"};
    for (int s = 0; s < 2; s++) {
        const weir_subset_t *sub = weir_destination_rule_subset(d, names[s]);
        assert_non_null(sub);
        weir_buf_t got = WEIR_BUF_INIT;
        size_t cursor = 0;
        const weir_workload_entry_t *we;
        while ((we = weir_config_service_endpoint(cfg, se, &cursor)) != NULL)
            if (weir_labels_match(&sub->labels, &we->labels))
                weir_buf_appendf(&got, "%s%s", got.len ? " " : "", we->address);
        weir_buf_append(&got, "", 0);
        assert_string_equal(got.base, want[s]);
        weir_buf_free(&got);
    }
    weir_string_list_t ids = weir_config_service_accounts(cfg, se, "cluster.local");
    assert_true(ids.count >= 1);
    assert_string_equal(ids.items[0], "spiffe://cluster.local/ns/default/sa/httpd");
    weir_string_list_free(&ids);
    weir_diags_clear(&diags);
    weir_config_free(cfg);
    weir_buf_free(&all);
    free(gw);
    free(vs);
    free(dr);
}

#define KUBERNETES_LINE "kubernetes.default.svc.cluster.local 10.96.0.1 | 172.18.0.2/-/-/-\n"
#define KUBE_DNS_LINE "kube-dns.kube-system.svc.cluster.local 10.96.0.10 | 10.244.0.2/-/-/coredns\n"
#define SLEEP_LINE "sleep.default.svc.cluster.local 10.96.33.7 | 10.244.0.20/-/istio/sleep\n"
#define WEB "web-service.default.svc.cluster.local 10.96.120.15 |"
#define EP_V1 " 10.244.0.11/v1/istio/httpd"
#define EP_V2 " 10.244.0.12/v2/istio/httpd"
#define EP_V1_PLAIN " 10.244.0.14/v1/-/httpd"

static char *golden(const char *name)
{
    weir_buf_t p = WEIR_BUF_INIT;
    weir_buf_appendf(&p, "%s/k8s/%s", WEIR_TEST_DATA, name);
    FILE *f = fopen(p.base, "r");
    weir_buf_free(&p);
    weir_buf_t b = WEIR_BUF_INIT;
    char chunk[4096];
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        weir_buf_append(&b, chunk, n);
    if (f)
        fclose(f);
    weir_buf_append(&b, "", 0);
    return b.base;
}

static void test_watch_story(void **state)
{
    ctx_t x;
    ctx_init(&x);
    write_file(x.token_path, "tok-1\n");
    fake_t f;
    fake_start(&f, "watch.steps", NULL);
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", f.port);
    weir_k8s_options_t o = options(&x, url);
    x.client = weir_k8s_start(&x.loop, &o, err, sizeof(err));
    assert_non_null(x.client);

    /* 1. the initial lists */
    const char *s1 = KUBERNETES_LINE WEB EP_V1 EP_V2 "\n" KUBE_DNS_LINE;
    expect_summary(&x, s1, "1 initial list");
    assert_int_equal(x.changes, 1); /* one delivery for the three lists, not one per list */
    char *want = golden("registry-initial.yaml");
    if (strcmp(x.yaml, want) != 0) {
        fputs(x.yaml, stdout);
        fflush(stdout);
        fail_msg("the rendered registry (above) differs from tests/data/k8s/registry-initial.yaml");
    }
    free(want);
    char *yaml1 = weir_mem_strdup(x.yaml);
    check_with_seed(x.yaml, "10.244.0.11", "10.244.0.12");
    char *log = http_call(f.port, "GET", "/fake/log");
    assert_int_equal(count_lines(log, "LIST "), 3);
    assert_non_null(strstr(log, "LIST pods ns=* limit=500 continue=- auth=Bearer tok-1\n"));
    assert_non_null(
        strstr(log, "WATCH endpointslices ns=* rv=1011 bookmarks=1 auth=Bearer tok-1\n"));
    free(log);
    resume(&f);

    /* 2. an ADDED EndpointSlice adds its endpoint */
    const char *s2 = KUBERNETES_LINE WEB EP_V1 EP_V1_PLAIN EP_V2 "\n" KUBE_DNS_LINE;
    expect_summary(&x, s2, "2 ADDED EndpointSlice");
    check_with_seed(x.yaml, "10.244.0.11 10.244.0.14", "10.244.0.12");
    resume(&f);

    /* 3. a DELETED one removes it: exactly the first registry again */
    expect_summary(&x, s1, "3 DELETED EndpointSlice");
    assert_string_equal(x.yaml, yaml1);
    free(yaml1);
    weir_k8s_stats_t st = weir_k8s_stats(x.client);
    assert_int_equal(st.relists_gone, 0);
    resume(&f);

    /* 4. missed changes, then 410 Gone in an ERROR event: re-list, right again */
    const char *s4 = KUBERNETES_LINE SLEEP_LINE WEB EP_V1 "\n" KUBE_DNS_LINE;
    expect_summary(&x, s4, "4 ERROR 410 and re-list");
    st = weir_k8s_stats(x.client);
    assert_int_equal(st.relists_gone, 3);
    log = http_call(f.port, "GET", "/fake/log");
    assert_int_equal(count_lines(log, "LIST "), 6);
    free(log);
    check_with_seed(x.yaml, "10.244.0.11", "");
    write_file(x.token_path, "tok-2\n"); /* the kubelet rotates the token */
    resume(&f);

    /* 5. missed again, then a re-watch answered HTTP 410: re-list */
    const char *s5 = KUBERNETES_LINE SLEEP_LINE WEB EP_V1 EP_V2 "\n" KUBE_DNS_LINE;
    expect_summary(&x, s5, "5 HTTP 410 and re-list");
    log_want_t lists9 = {f.port, "LIST ", 9};
    assert_true(wait_for(&x, log_has, &lists9, STEP_MS));
    st = weir_k8s_stats(x.client);
    assert_int_equal(st.relists_gone, 6);
    log_want_t tok2 = {f.port, "LIST endpointslices ns=* limit=500 continue=- auth=Bearer tok-2",
                       1};
    assert_true(wait_for(&x, log_has, &tok2, STEP_MS));
    unsigned changes5 = x.changes;
    resume(&f);

    /* 6. the bookmark's resourceVersion is where the next watches start */
    log_want_t watches_from_bookmark = {f.port, "WATCH ", 0};
    char status[128];
    struct pause_at p6 = {f.port, 6, 0};
    assert_true(wait_for(&x, paused_at, &p6, STEP_MS)); /* right after the bookmark */
    long rv = p6.rv;
    snprintf(status, sizeof(status), "WATCH services ns=* rv=%ld bookmarks=1 auth=Bearer tok-2",
             rv);
    watches_from_bookmark.needle = status;
    watches_from_bookmark.at_least = 1;
    assert_true(wait_for(&x, log_has, &watches_from_bookmark, STEP_MS));
    assert_int_equal(x.changes, changes5); /* a bookmark changes nothing */
    resume(&f);

    /* 7. dropped connections: the watches resume, nothing is listed again; events cut in two
     *    chunks are put back together */
    const char *s7 = KUBERNETES_LINE SLEEP_LINE WEB EP_V1 EP_V1_PLAIN EP_V2 "\n" KUBE_DNS_LINE;
    expect_summary(&x, s7, "7 reconnect and split events");
    log = http_call(f.port, "GET", "/fake/log");
    assert_int_equal(count_lines(log, "LIST "), 9);
    free(log);
    uint64_t errors = weir_k8s_stats(x.client).errors + 2;
    resume(&f);

    /* 8. two 500s on the re-watch: back-off, then the watch works again */
    const char *s8 = KUBERNETES_LINE SLEEP_LINE WEB EP_V1 EP_V1_PLAIN EP_V2 "\n";
    expect_summary(&x, s8, "8 500 and back-off");
    assert_true(wait_for(&x, errors_at_least, &errors, STEP_MS));
    st = weir_k8s_stats(x.client);
    assert_non_null(strstr(st.last_error, "HTTP 500"));
    assert_true(st.events > 0 && st.watches >= 12);

    ctx_free(&x);
    fake_stop(&f);
}

static void test_paged_lists(void **state)
{
    ctx_t x;
    ctx_init(&x);
    write_file(x.token_path, "tok\n");
    fake_t f;
    fake_start(&f, "initial.steps", NULL);
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", f.port);
    weir_k8s_options_t o = options(&x, url);
    o.page_size = 1;
    x.client = weir_k8s_start(&x.loop, &o, err, sizeof(err));
    assert_non_null(x.client);
    expect_summary(&x, KUBERNETES_LINE WEB EP_V1 EP_V2 "\n" KUBE_DNS_LINE, "paged lists");
    char *log = http_call(f.port, "GET", "/fake/log");
    /* three objects of each kind, one per page */
    assert_int_equal(count_lines(log, "LIST services ns=* limit=1 continue=- "), 1);
    assert_int_equal(count_lines(log, "LIST services ns=* limit=1 continue=c1-"), 1);
    assert_int_equal(count_lines(log, "LIST services ns=* limit=1 continue=c2-"), 1);
    assert_int_equal(count_lines(log, "LIST services "), 3);
    free(log);
    ctx_free(&x);
    fake_stop(&f);
}

static void test_namespace_only(void **state)
{
    ctx_t x;
    ctx_init(&x);
    fake_t f;
    fake_start(&f, "initial.steps", NULL);
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", f.port);
    weir_k8s_options_t o = options(&x, url);
    o.token_path = ""; /* kubectl proxy: no token */
    o.namespace = "default";
    x.client = weir_k8s_start(&x.loop, &o, err, sizeof(err));
    assert_non_null(x.client);
    expect_summary(&x, KUBERNETES_LINE WEB EP_V1 EP_V2 "\n", "one namespace");
    char *log = http_call(f.port, "GET", "/fake/log");
    assert_non_null(strstr(log, "LIST pods ns=default limit=500 continue=- auth=-\n"));
    free(log);
    ctx_free(&x);
    fake_stop(&f);
}

static void test_unauthorized(void **state)
{
    ctx_t x;
    ctx_init(&x);
    write_file(x.token_path, "not-the-token\n");
    fake_t f;
    const char *extra[] = {"--token", "the-token", NULL};
    fake_start(&f, "initial.steps", extra);
    char url[64], err[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", f.port);
    weir_k8s_options_t o = options(&x, url);
    x.client = weir_k8s_start(&x.loop, &o, err, sizeof(err));
    assert_non_null(x.client);
    uint64_t n = 6; /* each resource failed and retried at least once */
    assert_true(wait_for(&x, errors_at_least, &n, STEP_MS));
    assert_false(weir_k8s_synced(x.client));
    assert_null(weir_k8s_current(x.client));
    assert_non_null(strstr(weir_k8s_stats(x.client).last_error, "HTTP 401: Unauthorized"));
    /* the right token arrives (a new mount): the next retries work */
    write_file(x.token_path, "the-token");
    expect_summary(&x, KUBERNETES_LINE WEB EP_V1 EP_V2 "\n" KUBE_DNS_LINE, "after 401");
    ctx_free(&x);
    fake_stop(&f);
}

/* An ECDSA CA and an API server certificate for kubernetes.default.svc, as kubeadm issues
 * (with ECDSA keys: the fake's TLS engine is common/tls.h, which is ECDSA only). */
static void make_certs(const char *dir)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "set -e; cd '%s'; command -v openssl >/dev/null || "
             "{ echo 'test_k8s: openssl is needed (Debian package openssl)' >&2; exit 1; }; "
             "for ca in ca other-ca; do "
             "openssl ecparam -name prime256v1 -genkey -noout -out $ca.key; "
             "openssl req -x509 -new -key $ca.key -sha256 -days 2 -subj /CN=$ca -out $ca.crt; "
             "done; "
             "openssl ecparam -name prime256v1 -genkey -noout -out server.key; "
             "openssl req -new -key server.key -subj /CN=kube-apiserver -out server.csr; "
             "printf 'subjectAltName=DNS:kubernetes,DNS:kubernetes.default,"
             "DNS:kubernetes.default.svc,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n"
             "basicConstraints=CA:FALSE\\n' > ext; "
             "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "-days 2 -sha256 -extfile ext -out server.crt 2>/dev/null",
             dir);
    if (system(cmd) != 0)
        fail_msg("making test certificates with openssl failed");
}

static void test_tls(void **state)
{
    ctx_t x;
    ctx_init(&x);
    write_file(x.token_path, "tok\n");
    make_certs(x.dir);
    char cert[128], key[128], ca[128], other_ca[128];
    snprintf(cert, sizeof(cert), "%s/server.crt", x.dir);
    snprintf(key, sizeof(key), "%s/server.key", x.dir);
    snprintf(ca, sizeof(ca), "%s/ca.crt", x.dir);
    snprintf(other_ca, sizeof(other_ca), "%s/other-ca.crt", x.dir);
    fake_t f;
    const char *extra[] = {"--tls-cert", cert, "--tls-key", key, "--token", "tok", NULL};
    fake_start(&f, "initial.steps", extra);
    char url[64], err[256];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d", f.port);

    /* the right CA and kubernetes.default.svc (the default name) */
    weir_k8s_options_t o = options(&x, url);
    o.ca_path = ca;
    x.client = weir_k8s_start(&x.loop, &o, err, sizeof(err));
    assert_non_null(x.client);
    expect_summary(&x, KUBERNETES_LINE WEB EP_V1 EP_V2 "\n" KUBE_DNS_LINE, "TLS");
    ctx_stop_client(&x);

    /* a name the certificate does not carry */
    free(x.summary);
    x.summary = NULL;
    x.changes = 0;
    o.server_name = "kubernetes.evil.example";
    x.client = weir_k8s_start(&x.loop, &o, err, sizeof(err));
    assert_non_null(x.client);
    uint64_t n = 3;
    assert_true(wait_for(&x, errors_at_least, &n, STEP_MS));
    assert_false(weir_k8s_synced(x.client));
    const char *why = weir_k8s_stats(x.client).last_error;
    if (strstr(why, "certificate verify failed") == NULL || strstr(why, "CN") == NULL)
        fail_msg("unexpected error: %s", why);
    ctx_stop_client(&x);

    /* a server the CA did not sign */
    o.server_name = NULL;
    o.ca_path = other_ca;
    x.client = weir_k8s_start(&x.loop, &o, err, sizeof(err));
    assert_non_null(x.client);
    assert_true(wait_for(&x, errors_at_least, &n, STEP_MS));
    assert_false(synced(&x, NULL));
    why = weir_k8s_stats(x.client).last_error;
    if (strstr(why, "certificate verify failed") == NULL || strstr(why, "trusted CA") == NULL)
        fail_msg("unexpected error: %s", why);
    assert_null(x.summary);

    ctx_free(&x);
    fake_stop(&f);
}

static void test_bad_options(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    weir_k8s_options_t o = {.on_change = on_change};
    assert_null(weir_k8s_start(&loop, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "required"));
    const char *bad[] = {
        "ftp://127.0.0.1",           "http://127.0.0.1:0", "http://127.0.0.1:70000",
        "http://127.0.0.1:8080/api", "http://[::1",        "http://"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o.api_url = bad[i];
        err[0] = '\0';
        assert_null(weir_k8s_start(&loop, &o, err, sizeof(err)));
        assert_non_null(strstr(err, bad[i]));
    }
    o.api_url = "https://127.0.0.1:6443";
    o.ca_path = "/nonexistent/ca.crt";
    assert_null(weir_k8s_start(&loop, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/ca.crt"));
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_port_protocol(void **state)
{
    static const struct {
        const char *name, *app, *transport;
        uint32_t port;
        const char *want;
    } cases[] = {
        {"http", NULL, "TCP", 80, "HTTP"},
        {"http-web", NULL, "TCP", 80, "HTTP"},
        {"HTTP2", NULL, NULL, 80, "HTTP2"},
        {"grpc-web", NULL, "TCP", 80, "GRPC-WEB"},
        {"grpc-web-x", NULL, "TCP", 80, "GRPC-WEB"},
        {"grpc", NULL, "TCP", 80, "GRPC"},
        {"https-api", NULL, "TCP", 443, "HTTPS"},
        {"tcp-db", NULL, "TCP", 5432, "TCP"},
        {"tls", NULL, "TCP", 443, "TLS"},
        {"mongo", NULL, "TCP", 27017, "MONGO"},
        {"redis", NULL, "TCP", 6379, "REDIS"},
        {"mysql", NULL, "TCP", 3306, "MYSQL"},
        {"dns", NULL, "UDP", 53, "UDP"},
        {"http", NULL, "UDP", 80, "UDP"},
        {"metrics", NULL, "TCP", 9153, NULL},
        {"", NULL, "TCP", 8080, NULL},
        {"httpx", NULL, "TCP", 80, NULL},
        {"dns-tcp", NULL, "TCP", 53, "TCP"}, /* well-known, server-first ports */
        {"", NULL, "TCP", 3306, "TCP"},
        {"smtp", NULL, "TCP", 25, "TCP"},
        {"db", NULL, "TCP", 27017, "TCP"},
        {"web", "http", "TCP", 80, "HTTP"},
        {"http", "tcp", "TCP", 80, "TCP"},   /* appProtocol wins over the name */
        {"http", "custom", "TCP", 80, NULL}, /* and does not fall back to it */
        {"web", "kubernetes.io/h2c", "TCP", 80, "HTTP2"},
        {"web", "kubernetes.io/ws", "TCP", 80, "HTTP"},
        {"web", "kubernetes.io/wss", "TCP", 443, "HTTPS"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got =
            weir_k8s_port_protocol(cases[i].name, cases[i].app, cases[i].transport, cases[i].port);
        if ((got == NULL) != (cases[i].want == NULL) || (got && strcmp(got, cases[i].want) != 0))
            fail_msg("name %s appProtocol %s %s %u: got %s, want %s", cases[i].name,
                     cases[i].app ? cases[i].app : "-",
                     cases[i].transport ? cases[i].transport : "-", cases[i].port,
                     got ? got : "NULL", cases[i].want ? cases[i].want : "NULL");
    }
}

static void test_in_cluster(void **state)
{
    char url[128];
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    assert_int_equal(weir_k8s_in_cluster_url(url, sizeof(url)), -1);
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    assert_int_equal(weir_k8s_in_cluster_url(url, sizeof(url)), -1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_int_equal(weir_k8s_in_cluster_url(url, sizeof(url)), 0);
    assert_string_equal(url, "https://10.96.0.1:443");
    setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
    assert_int_equal(weir_k8s_in_cluster_url(url, sizeof(url)), 0);
    assert_string_equal(url, "https://[fd00:10:96::1]:443");
    assert_int_equal(weir_k8s_in_cluster_url(url, 10), -1);
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");

    char dir[] = "/tmp/weir-test-k8s-sa.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], ns[64];
    assert_int_equal(weir_k8s_read_namespace(dir, ns, sizeof(ns)), -1);
    snprintf(path, sizeof(path), "%s/namespace", dir);
    write_file(path, "istio-system\n");
    assert_int_equal(weir_k8s_read_namespace(dir, ns, sizeof(ns)), 0);
    assert_string_equal(ns, "istio-system");
    assert_int_equal(weir_k8s_read_namespace(dir, ns, 5), -1);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    /* a fake that dies must not take the test with it through SIGPIPE */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_port_protocol),
        cmocka_unit_test(test_in_cluster),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test_teardown(test_watch_story, teardown),
        cmocka_unit_test_teardown(test_paged_lists, teardown),
        cmocka_unit_test_teardown(test_namespace_only, teardown),
        cmocka_unit_test_teardown(test_unauthorized, teardown),
        cmocka_unit_test_teardown(test_tls, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
