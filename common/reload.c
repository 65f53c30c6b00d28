/* common/reload.c: see reload.h. */
#include "common/reload.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "common/analyze.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/mem.h"

#define QUIET_MS 250 /* long enough for an editor's write, short enough to be live in 2 s */
#define POLL_MS 1000

static struct {
    const weir_cli_t *cli;
    weir_reload_build_fn build;
    weir_reload_applied_fn applied;
    void *ctx;
    uv_fs_event_t watches[WEIR_CLI_MAX_PATHS];
    size_t n_watches;
    uv_timer_t quiet, poll;
    uv_signal_t hup;
    bool running;
    uint64_t hash; /* of the content in force */
    uint64_t successes, failures;
    weir_buf_t rejection;
    char *source_name, *source_yaml; /* weir_reload_set_source; NULL: none */
} rl;

/* FNV-1a over everything that decides the config: each YAML file's path and bytes, in the
 * order the loader reads them. */
static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t hash_file(uint64_t h, const char *path)
{
    h = fnv(h, path, strlen(path) + 1);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return fnv(h, "?", 1);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        h = fnv(h, buf, n);
    fclose(f);
    return h;
}

static bool is_yaml(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && ((n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
                              (n > 4 && strcmp(name + n - 4, ".yml") == 0));
}

static int cmp_names(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static uint64_t content_hash(void)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < rl.cli->n_paths; i++) {
        const char *p = rl.cli->paths[i];
        struct stat st;
        if (stat(p, &st) != 0) {
            h = fnv(h, p, strlen(p) + 1);
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            h = hash_file(h, p);
            continue;
        }
        struct dirent **names;
        int n = scandir(p, &names, NULL, cmp_names);
        for (int k = 0; k < n; k++) {
            if (is_yaml(names[k]->d_name)) {
                char full[4096];
                snprintf(full, sizeof(full), "%s/%s", p, names[k]->d_name);
                h = hash_file(h, full);
            }
            free(names[k]);
        }
        if (n >= 0)
            free(names);
    }
    if (rl.source_yaml) {
        h = fnv(h, rl.source_name, strlen(rl.source_name) + 1);
        h = fnv(h, rl.source_yaml, strlen(rl.source_yaml));
    }
    return h;
}

int weir_reload_now(void)
{
    uint64_t h = content_hash();
    if (h == rl.hash)
        return 0;
    weir_diags_t diags = WEIR_DIAGS_INIT;
    weir_config_t *cfg = weir_config_load_with(rl.cli->paths, rl.cli->n_paths, rl.source_name,
                                               rl.source_yaml, &diags);
    if (cfg == NULL) {
        rl.failures++;
        rl.hash = h; /* report a broken version once, not every second */
        weir_buf_reset(&rl.rejection);
        for (size_t i = 0; i < diags.count; i++) {
            const weir_diag_t *d = &diags.items[i];
            weir_log(d->level == WEIR_DIAG_ERROR ? WEIR_LOG_ERROR : WEIR_LOG_WARN,
                     "config reload: %s:%u:%u: %s", d->file, d->line, d->col, d->msg);
            weir_buf_appendf(&rl.rejection, "%s:%u:%u: %s: %s\n", d->file, d->line, d->col,
                             d->level == WEIR_DIAG_ERROR ? "error" : "warning", d->msg);
        }
        weir_log_error("config reload rejected (%zu error(s)): the previous config keeps serving",
                       diags.errors);
        weir_diags_clear(&diags);
        return -1;
    }
    weir_config_warn_unapplied(cfg, &diags);
    weir_analyze(cfg, &diags);
    weir_snapshot_t *snap = rl.build(cfg, rl.ctx, &diags);
    for (size_t i = 0; i < diags.count; i++) {
        const weir_diag_t *d = &diags.items[i];
        weir_log_warn("config reload: %s:%u:%u: %s", d->file, d->line, d->col, d->msg);
    }
    weir_diags_clear(&diags);
    weir_snapshot_set_current(snap);
    weir_buf_reset(&rl.rejection);
    rl.hash = h;
    rl.successes++;
    weir_log_info("config reloaded (generation %llu)", (unsigned long long)snap->generation);
    if (rl.applied)
        rl.applied(snap, rl.ctx);
    return 1;
}

static void on_quiet(uv_timer_t *t)
{
    weir_reload_now();
}

static void soon(void)
{
    uv_timer_start(&rl.quiet, on_quiet, QUIET_MS, 0);
}

static void on_event(uv_fs_event_t *h, const char *name, int events, int status)
{
    soon();
}

static void on_poll(uv_timer_t *t)
{
    if (content_hash() != rl.hash)
        soon();
}

static void on_hup(uv_signal_t *h, int signum)
{
    weir_log_info("SIGHUP: reloading the config");
    weir_reload_now();
}

/* A file is watched through its directory: editors and ConfigMap updates replace files, and
 * a watch on the old inode would go quiet. */
static void watch_path(const char *path)
{
    struct stat st;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode)) {
        char *slash = strrchr(dir, '/');
        if (slash == NULL)
            snprintf(dir, sizeof(dir), ".");
        else if (slash == dir)
            dir[1] = '\0';
        else
            *slash = '\0';
    }
    uv_fs_event_t *w = &rl.watches[rl.n_watches];
    uv_fs_event_init(weir_loop(), w);
    if (uv_fs_event_start(w, on_event, dir, 0) != 0) {
        weir_log_warn("cannot watch %s: changes are found by polling every %d ms", dir, POLL_MS);
        uv_close((uv_handle_t *)w, NULL);
        return;
    }
    uv_unref((uv_handle_t *)w);
    rl.n_watches++;
}

void weir_reload_start(const weir_cli_t *cli, weir_reload_build_fn build,
                       weir_reload_applied_fn applied, void *ctx)
{
    rl.cli = cli;
    rl.build = build;
    rl.applied = applied;
    rl.ctx = ctx;
    rl.hash = content_hash();
    for (size_t i = 0; i < cli->n_paths; i++)
        watch_path(cli->paths[i]);
    uv_timer_init(weir_loop(), &rl.quiet);
    uv_timer_init(weir_loop(), &rl.poll);
    uv_timer_start(&rl.poll, on_poll, POLL_MS, POLL_MS);
    uv_signal_init(weir_loop(), &rl.hup);
    uv_signal_start(&rl.hup, on_hup, SIGHUP);
    /* none of these keeps the loop alive once the listeners are gone */
    uv_unref((uv_handle_t *)&rl.quiet);
    uv_unref((uv_handle_t *)&rl.poll);
    uv_unref((uv_handle_t *)&rl.hup);
    rl.running = true;
}

void weir_reload_stop(void)
{
    if (!rl.running)
        return;
    rl.running = false;
    for (size_t i = 0; i < rl.n_watches; i++)
        uv_close((uv_handle_t *)&rl.watches[i], NULL);
    weir_buf_free(&rl.rejection);
    free(rl.source_name);
    free(rl.source_yaml);
    rl.source_name = rl.source_yaml = NULL;
    uv_close((uv_handle_t *)&rl.quiet, NULL);
    uv_close((uv_handle_t *)&rl.poll, NULL);
    uv_close((uv_handle_t *)&rl.hup, NULL);
}

uint64_t weir_reload_successes(void)
{
    return rl.successes;
}

uint64_t weir_reload_failures(void)
{
    return rl.failures;
}

uint64_t weir_reload_config_hash(void)
{
    return rl.hash;
}

const char *weir_reload_last_rejection(void)
{
    return rl.rejection.len ? rl.rejection.base : "";
}

int weir_reload_set_source(const char *name, const char *yaml)
{
    free(rl.source_name);
    free(rl.source_yaml);
    rl.source_name = yaml ? weir_mem_strdup(name) : NULL;
    rl.source_yaml = yaml ? weir_mem_strdup(yaml) : NULL;
    return weir_reload_now();
}
