/* agent/iptables.c: see iptables.h. */
#include "agent/iptables.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* The chains weir creates, in the order they are created. Only these are ever removed. */
static const char *const chains[] = {"ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT",
                                     "ISTIO_OUTPUT"};
#define N_CHAINS (sizeof(chains) / sizeof(chains[0]))

/* A nat table's iptables-save is KiB in a pod, MiB on a busy node; the bound only keeps a
 * runaway tool from eating our memory. */
#define SAVE_MAX (64u * 1024 * 1024)

static const char usage_text[] =
    "usage: weir iptables [--proxy-uid 1337] [--proxy-gid 1337] [--inbound-port 15006]\n"
    "                     [--outbound-port 15001] [--exclude-inbound-ports 15000,15021,15090]\n"
    "                     [--exclude-outbound-ports P,...] [--dry-run] [--cleanup]\n"
    "Installs the nat rules that send the pod's TCP traffic through its sidecar, as Istio's\n"
    "istio-iptables does (one atomic iptables-restore --noflush). --dry-run prints them and\n"
    "changes nothing; --cleanup removes weir's chains and the jumps into them.\n";

void weir_iptables_opts_default(weir_iptables_opts_t *o)
{
    static const uint16_t inbound_defaults[] = {15000, 15021, 15090};
    memset(o, 0, sizeof(*o));
    o->proxy_uid = 1337;
    o->proxy_gid = 1337;
    o->inbound_port = 15006;
    o->outbound_port = 15001;
    memcpy(o->exclude_inbound, inbound_defaults, sizeof(inbound_defaults));
    o->n_exclude_inbound = sizeof(inbound_defaults) / sizeof(inbound_defaults[0]);
}

/* ---- command line ---------------------------------------------------------------------- */

/* Digits only: strtoul alone would take signs, blanks and hex prefixes. At most 10 digits,
 * so the 64-bit accumulator cannot overflow. */
static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (*s == '\0' || strlen(s) > 10)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_port(const char *opt, const char *s, uint16_t *out, FILE *err)
{
    uint64_t v;
    if (parse_uint(s, 65535, &v) != 0 || v == 0) {
        fprintf(err, "weir iptables: %s: expected a port 1-65535, got \"%s\"\n", opt, s);
        return -1;
    }
    *out = (uint16_t)v;
    return 0;
}

static int parse_id(const char *opt, const char *s, uint32_t *out, FILE *err)
{
    uint64_t v;
    /* (uid_t)-1 means "no change" to the kernel: it cannot be anyone's identity. */
    if (parse_uint(s, 4294967294u, &v) != 0) {
        fprintf(err, "weir iptables: %s: expected a numeric id 0-4294967294, got \"%s\"\n", opt, s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_ports(const char *opt, const char *s, uint16_t *ports, size_t *n, FILE *err)
{
    *n = 0;
    const char *p = s;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0) {
            char item[16];
            if (len >= sizeof(item)) {
                fprintf(err, "weir iptables: %s: expected a port 1-65535, got \"%.*s\"\n", opt,
                        (int)len, p);
                return -1;
            }
            memcpy(item, p, len);
            item[len] = '\0';
            uint16_t port;
            if (parse_port(opt, item, &port, err) != 0)
                return -1;
            bool dup = false;
            for (size_t i = 0; i < *n; i++)
                dup = dup || ports[i] == port;
            if (!dup) {
                if (*n == WEIR_IPTABLES_MAX_PORTS) {
                    fprintf(err, "weir iptables: %s: more than %d ports\n", opt,
                            WEIR_IPTABLES_MAX_PORTS);
                    return -1;
                }
                ports[(*n)++] = port;
            }
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

int weir_iptables_parse(weir_iptables_opts_t *o, int argc, char **argv, int first, FILE *out,
                        FILE *err)
{
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, out);
            return WEIR_IPTABLES_HELP;
        }
        if (strcmp(a, "--dry-run") == 0) {
            o->dry_run = true;
            continue;
        }
        if (strcmp(a, "--cleanup") == 0) {
            o->cleanup = true;
            continue;
        }
        /* Every other option takes a value, as `--opt VALUE` or `--opt=VALUE`. */
        char name[64];
        const char *v;
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        if (eq != NULL) {
            size_t len = (size_t)(eq - a);
            if (len >= sizeof(name))
                len = sizeof(name) - 1;
            memcpy(name, a, len);
            name[len] = '\0';
            v = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", a);
            v = NULL;
        }
        static const char *const valued[] = {"--proxy-uid",
                                             "--proxy-gid",
                                             "--inbound-port",
                                             "--outbound-port",
                                             "--exclude-inbound-ports",
                                             "--exclude-outbound-ports"};
        bool known = false;
        for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++)
            known = known || strcmp(name, valued[k]) == 0;
        if (!known) {
            if (strcmp(name, "--dry-run") == 0 || strcmp(name, "--cleanup") == 0)
                fprintf(err, "weir iptables: %s takes no value\n", name);
            else
                fprintf(err, "weir iptables: unknown option \"%s\" (see weir iptables --help)\n",
                        a);
            return -1;
        }
        if (v == NULL) {
            if (i + 1 >= argc) {
                fprintf(err, "weir iptables: %s needs a value\n", name);
                return -1;
            }
            v = argv[++i];
        }
        int r;
        if (strcmp(name, "--proxy-uid") == 0)
            r = parse_id(name, v, &o->proxy_uid, err);
        else if (strcmp(name, "--proxy-gid") == 0)
            r = parse_id(name, v, &o->proxy_gid, err);
        else if (strcmp(name, "--inbound-port") == 0)
            r = parse_port(name, v, &o->inbound_port, err);
        else if (strcmp(name, "--outbound-port") == 0)
            r = parse_port(name, v, &o->outbound_port, err);
        else if (strcmp(name, "--exclude-inbound-ports") == 0)
            r = parse_ports(name, v, o->exclude_inbound, &o->n_exclude_inbound, err);
        else
            r = parse_ports(name, v, o->exclude_outbound, &o->n_exclude_outbound, err);
        if (r != 0)
            return -1;
    }
    /* The sidecar tells inbound from outbound by the port a connection was redirected to. */
    if (o->inbound_port == o->outbound_port) {
        fprintf(err, "weir iptables: --inbound-port and --outbound-port must differ (both %u)\n",
                (unsigned)o->inbound_port);
        return -1;
    }
    return 0;
}

/* ---- the rules, as data ------------------------------------------------------------------ */

/* The three owner rules Istio writes for each of the proxy's uid and gid ("uid" or "gid"). */
static void owner_rules(weir_buf_t *out, const char *kind, uint32_t id)
{
    /* The proxy calling its own pod's address over lo (an app reaching itself through its
     * service) must still go through the inbound listener, like any inbound request. */
    weir_buf_appendf(out,
                     "-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport %d -m owner "
                     "--%s-owner %u -j ISTIO_IN_REDIRECT\n",
                     WEIR_IPTABLES_TUNNEL_PORT, kind, (unsigned)id);
    /* Anyone else on lo (the app talking to itself or to the proxy) is left alone. */
    weir_buf_appendf(out, "-A ISTIO_OUTPUT -o lo -m owner ! --%s-owner %u -j RETURN\n", kind,
                     (unsigned)id);
    /* The proxy's own outbound connections are the ones it makes on the app's behalf. */
    weir_buf_appendf(out, "-A ISTIO_OUTPUT -m owner --%s-owner %u -j RETURN\n", kind, (unsigned)id);
}

void weir_iptables_rules(const weir_iptables_opts_t *o, weir_buf_t *out)
{
    /* The order is Istio's (tools/istio-iptables/pkg/capture/run.go), so its golden files and
     * our own read the same. */
    weir_buf_append_str(out, "*nat\n");
    for (size_t i = 0; i < N_CHAINS; i++)
        weir_buf_appendf(out, "-N %s\n", chains[i]);
    weir_buf_appendf(out, "-A ISTIO_INBOUND -p tcp --dport %d -j RETURN\n",
                     WEIR_IPTABLES_TUNNEL_PORT);
    weir_buf_appendf(out, "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports %u\n",
                     (unsigned)o->outbound_port);
    weir_buf_appendf(out, "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports %u\n",
                     (unsigned)o->inbound_port);

    /* Inbound: every TCP port but the excluded ones (includeInboundPorts "*"). One rule per
     * port rather than -m multiport: plain --dport is native to every iptables backend. */
    weir_buf_append_str(out, "-A PREROUTING -p tcp -j ISTIO_INBOUND\n");
    for (size_t i = 0; i < o->n_exclude_inbound; i++)
        weir_buf_appendf(out, "-A ISTIO_INBOUND -p tcp --dport %u -j RETURN\n",
                         (unsigned)o->exclude_inbound[i]);
    weir_buf_append_str(out, "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT\n");

    /* Outbound. Excluded ports go first, before any owner rule, as in Istio. Only TCP: the
     * redirect itself matches only TCP, so other protocols are never captured anyway. */
    weir_buf_append_str(out, "-A OUTPUT -j ISTIO_OUTPUT\n");
    for (size_t i = 0; i < o->n_exclude_outbound; i++)
        weir_buf_appendf(out, "-A ISTIO_OUTPUT -p tcp --dport %u -j RETURN\n",
                         (unsigned)o->exclude_outbound[i]);
    /* The sidecar's connections to its app come from 127.0.0.6: not to be captured again. */
    weir_buf_append_str(out, "-A ISTIO_OUTPUT -o lo -s " WEIR_IPTABLES_PASSTHROUGH_SRC
                             "/32 -j RETURN\n");
    owner_rules(out, "uid", o->proxy_uid);
    owner_rules(out, "gid", o->proxy_gid);
    weir_buf_append_str(out, "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN\n");
    /* includeOutboundIPRanges "*": everything else goes to the outbound listener. */
    weir_buf_append_str(out, "-A ISTIO_OUTPUT -j ISTIO_REDIRECT\n");
    weir_buf_append_str(out, "COMMIT\n");
}

/* ---- reading iptables-save --------------------------------------------------------------- */

static bool is_ours(const char *name, size_t len)
{
    for (size_t i = 0; i < N_CHAINS; i++)
        if (strlen(chains[i]) == len && memcmp(chains[i], name, len) == 0)
            return true;
    return false;
}

typedef struct {
    const char *p;
    size_t len;
} span_t;

/* Splits a saved rule into words; a "quoted comment" is one word (iptables-save quotes them).
 * Returns how many words were found, at most max. */
static size_t split_words(const char *line, size_t len, span_t *w, size_t max)
{
    size_t n = 0, i = 0;
    while (i < len && n < max) {
        while (i < len && line[i] == ' ')
            i++;
        if (i == len)
            break;
        size_t start = i;
        bool quoted = false;
        while (i < len && (quoted || line[i] != ' ')) {
            if (line[i] == '\\' && i + 1 < len)
                i++;
            else if (line[i] == '"')
                quoted = !quoted;
            i++;
        }
        w[n].p = line + start;
        w[n].len = i - start;
        n++;
    }
    return n;
}

static bool word_is(span_t w, const char *s)
{
    return w.len == strlen(s) && memcmp(w.p, s, w.len) == 0;
}

/* Calls fn for each line of the nat table's section of an iptables-save output. */
static void each_nat_line(const char *saved, size_t len,
                          void (*fn)(const char *line, size_t len, void *arg), void *arg)
{
    bool in_nat = false;
    const char *p = saved, *end = saved + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        if (n > 0 && p[0] == '*')
            in_nat = n == 4 && memcmp(p, "*nat", 4) == 0;
        else if (n == 6 && memcmp(p, "COMMIT", 6) == 0)
            in_nat = false;
        else if (in_nat && n > 0 && p[0] != '#')
            fn(p, n, arg);
        p = nl ? nl + 1 : end;
    }
}

typedef struct {
    bool present[N_CHAINS];
    weir_buf_t *jumps; /* "-D ..." lines, or NULL when only chains are looked for */
    size_t n_jumps;
} scan_t;

static void scan_line(const char *line, size_t len, void *arg)
{
    scan_t *s = arg;
    if (line[0] == ':') {
        /* ":NAME POLICY [packets:bytes]" */
        const char *sp = memchr(line, ' ', len);
        size_t n = sp ? (size_t)(sp - line) - 1 : len - 1;
        for (size_t i = 0; i < N_CHAINS; i++)
            if (strlen(chains[i]) == n && memcmp(chains[i], line + 1, n) == 0)
                s->present[i] = true;
        return;
    }
    if (s->jumps == NULL || len < 3 || memcmp(line, "-A ", 3) != 0)
        return;
    span_t w[256];
    size_t n = split_words(line, len, w, sizeof(w) / sizeof(w[0]));
    /* Rules inside our own chains go with the chains (-F); only jumps from elsewhere need a
     * -D, which must name the rule exactly as iptables-save printed it. */
    if (n < 2 || is_ours(w[1].p, w[1].len))
        return;
    for (size_t i = 2; i + 1 < n; i++) {
        bool jump = word_is(w[i], "-j") || word_is(w[i], "-g") || word_is(w[i], "--jump") ||
                    word_is(w[i], "--goto");
        if (jump && is_ours(w[i + 1].p, w[i + 1].len)) {
            weir_buf_append_str(s->jumps, "-D");
            weir_buf_append(s->jumps, line + 2, len - 2);
            weir_buf_append_str(s->jumps, "\n");
            s->n_jumps++;
            return;
        }
    }
}

const char *weir_iptables_find_chain(const char *saved, size_t len)
{
    scan_t s = {{false}, NULL, 0};
    each_nat_line(saved, len, scan_line, &s);
    for (size_t i = 0; i < N_CHAINS; i++)
        if (s.present[i])
            return chains[i];
    return NULL;
}

size_t weir_iptables_cleanup_rules(const char *saved, size_t len, weir_buf_t *out)
{
    weir_buf_t jumps = WEIR_BUF_INIT;
    scan_t s = {{false}, &jumps, 0};
    each_nat_line(saved, len, scan_line, &s);
    size_t n_chains = 0;
    for (size_t i = 0; i < N_CHAINS; i++)
        n_chains += s.present[i];
    if (n_chains + s.n_jumps == 0) {
        weir_buf_free(&jumps);
        return 0;
    }
    weir_buf_append_str(out, "*nat\n");
    if (jumps.len > 0)
        weir_buf_append(out, jumps.base, jumps.len);
    /* All flushed before any is deleted: our chains jump into each other. */
    for (size_t i = 0; i < N_CHAINS; i++)
        if (s.present[i])
            weir_buf_appendf(out, "-F %s\n", chains[i]);
    for (size_t i = 0; i < N_CHAINS; i++)
        if (s.present[i])
            weir_buf_appendf(out, "-X %s\n", chains[i]);
    weir_buf_append_str(out, "COMMIT\n");
    weir_buf_free(&jumps);
    return n_chains + s.n_jumps;
}

/* ---- running iptables-save and iptables-restore ------------------------------------------ */

/* Runs the tool argv[0] (found on PATH, then in /usr/sbin and /sbin, where Debian installs it
 * and where a non-login root PATH may not look), without a shell. `in` (if not NULL) is written
 * to its stdin; its stdout is collected into `out` (if not NULL), else inherited. Its stderr is
 * always inherited, so its own messages reach the user. Only one of in/out may be given: with
 * both, a tool that wrote a lot before reading would deadlock us.
 * Returns 0 when it exits 0; otherwise prints why and returns -1. */
static int run_tool(char *const argv[], const weir_buf_t *in, weir_buf_t *out)
{
    int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1};
    if ((in && pipe2(in_pipe, O_CLOEXEC) != 0) || (out && pipe2(out_pipe, O_CLOEXEC) != 0)) {
        fprintf(stderr, "weir iptables: pipe: %s\n", strerror(errno));
        if (in_pipe[0] >= 0) {
            close(in_pipe[0]);
            close(in_pipe[1]);
        }
        return -1;
    }
    fflush(NULL); /* the child must not write our buffered output a second time */
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "weir iptables: fork: %s\n", strerror(errno));
        for (int i = 0; i < 2; i++) {
            if (in_pipe[i] >= 0)
                close(in_pipe[i]);
            if (out_pipe[i] >= 0)
                close(out_pipe[i]);
        }
        return -1;
    }
    if (pid == 0) {
        /* An ignored SIGPIPE would survive exec; the tool expects the default. */
        signal(SIGPIPE, SIG_DFL);
        if ((in && dup2(in_pipe[0], STDIN_FILENO) < 0) ||
            (out && dup2(out_pipe[1], STDOUT_FILENO) < 0))
            _exit(127);
        execvp(argv[0], argv);
        int saved = errno;
        static const char *const dirs[] = {"/usr/sbin/", "/sbin/"};
        for (size_t i = 0; saved == ENOENT && i < sizeof(dirs) / sizeof(dirs[0]); i++) {
            char path[256];
            snprintf(path, sizeof(path), "%s%s", dirs[i], argv[0]);
            execv(path, argv);
        }
        dprintf(STDERR_FILENO,
                "weir iptables: cannot run %s: %s (it comes with the Debian package iptables)\n",
                argv[0], strerror(saved));
        _exit(127);
    }

    int rc = 0;
    if (in) {
        close(in_pipe[0]);
        /* If the tool dies before reading everything, we want EPIPE, not to be killed by
         * SIGPIPE: its exit status says what went wrong. */
        struct sigaction ign = {.sa_handler = SIG_IGN}, old;
        sigemptyset(&ign.sa_mask);
        sigaction(SIGPIPE, &ign, &old);
        for (size_t off = 0; off < in->len;) {
            ssize_t n = write(in_pipe[1], in->base + off, in->len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                if (errno != EPIPE)
                    fprintf(stderr, "weir iptables: writing to %s: %s\n", argv[0], strerror(errno));
                rc = -1;
                break;
            }
            off += (size_t)n;
        }
        close(in_pipe[1]);
        sigaction(SIGPIPE, &old, NULL);
    }
    if (out) {
        close(out_pipe[1]);
        char chunk[16384];
        for (;;) {
            ssize_t n = read(out_pipe[0], chunk, sizeof(chunk));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                if (n < 0) {
                    fprintf(stderr, "weir iptables: reading from %s: %s\n", argv[0],
                            strerror(errno));
                    rc = -1;
                }
                break;
            }
            if (out->len + (size_t)n > SAVE_MAX) {
                fprintf(stderr, "weir iptables: %s wrote more than %u bytes\n", argv[0], SAVE_MAX);
                rc = -1;
                break; /* closing our end makes it exit on EPIPE; we still reap it below */
            }
            weir_buf_append(out, chunk, (size_t)n);
        }
        close(out_pipe[0]);
    }

    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "weir iptables: waitpid: %s\n", strerror(errno));
            return -1;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return rc;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        return -1; /* the child said why */
    if (WIFEXITED(status))
        fprintf(stderr, "weir iptables: %s failed (exit status %d)\n", argv[0],
                WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        fprintf(stderr, "weir iptables: %s was killed by signal %d\n", argv[0], WTERMSIG(status));
    return -1;
}

static int read_nat(weir_buf_t *saved)
{
    char *argv[] = {"iptables-save", "-t", "nat", NULL};
    if (run_tool(argv, NULL, saved) != 0) {
        fprintf(stderr, "weir iptables: could not read the nat table\n");
        return -1;
    }
    return 0;
}

static int apply(const weir_buf_t *rules)
{
    /* --noflush: add to the table, keep everyone else's rules. --wait: the legacy backend
     * holds one lock for the whole host; another netns's iptables must not make us fail. */
    char *argv[] = {"iptables-restore", "--noflush", "--wait=10", NULL};
    return run_tool(argv, rules, NULL);
}

int weir_iptables_main(int argc, char **argv, int first)
{
    weir_iptables_opts_t o;
    weir_iptables_opts_default(&o);
    int r = weir_iptables_parse(&o, argc, argv, first, stdout, stderr);
    if (r == WEIR_IPTABLES_HELP)
        return 0;
    if (r != 0)
        return 2;

    weir_buf_t rules = WEIR_BUF_INIT, saved = WEIR_BUF_INIT;
    int rc = 1;
    if (o.cleanup) {
        /* What to remove depends on what is there, so even a dry run reads the table. */
        if (read_nat(&saved) != 0)
            goto out;
        if (weir_iptables_cleanup_rules(saved.base ? saved.base : "", saved.len, &rules) == 0) {
            fprintf(stderr, "weir iptables: no weir chains in the nat table: nothing to remove\n");
            rc = 0;
            goto out;
        }
        if (o.dry_run) {
            fwrite(rules.base, 1, rules.len, stdout);
            rc = 0;
            goto out;
        }
        if (apply(&rules) != 0) {
            fprintf(stderr, "weir iptables: removing the rules failed; the nat table is as it "
                            "was\n");
            goto out;
        }
        fprintf(stderr, "weir iptables: removed weir's chains from the nat table\n");
        rc = 0;
        goto out;
    }

    weir_iptables_rules(&o, &rules);
    if (o.dry_run) {
        fwrite(rules.base, 1, rules.len, stdout);
        rc = fflush(stdout) == 0 ? 0 : 1;
        goto out;
    }
    if (read_nat(&saved) != 0)
        goto out;
    const char *existing = weir_iptables_find_chain(saved.base ? saved.base : "", saved.len);
    if (existing != NULL) {
        fprintf(stderr,
                "weir iptables: the nat table already has chain %s: the rules are installed "
                "already (by weir or istio-iptables?); `weir iptables --cleanup` removes them\n",
                existing);
        goto out;
    }
    if (apply(&rules) != 0) {
        fprintf(stderr, "weir iptables: installing the rules failed; the nat table is as it "
                        "was\n");
        goto out;
    }
    fprintf(stderr,
            "weir iptables: installed: inbound TCP to port %u, outbound TCP to port %u, "
            "uid %u / gid %u not captured\n",
            (unsigned)o.inbound_port, (unsigned)o.outbound_port, (unsigned)o.proxy_uid,
            (unsigned)o.proxy_gid);
    rc = 0;
out:
    weir_buf_free(&rules);
    weir_buf_free(&saved);
    return rc;
}
