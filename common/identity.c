/* common/identity.c: see identity.h. */
#include "common/identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <mbedtls/x509_crt.h>
#include <time.h>
#include <uv.h>

#include "common/log.h"
#include "common/loop.h"
#include "common/mem.h"

#define QUIET_MS 300     /* writers replace three files: wait until they are done */
#define POLL_MS 5000     /* inotify misses some swaps (a remounted Secret): look anyway */

static struct {
    char *dir;
    char *trust_domain;
    weir_tls_config_t *server, *client;
    uint64_t generation;
    uv_fs_event_t watch;
    uv_timer_t quiet, poll;
    bool watching;
    struct timespec stamp[3]; /* mtimes of the three files at the last load */
    int64_t expiry;
} id;

static const char *const files[3] = {"root-cert.pem", "cert-chain.pem", "key.pem"};

static void path_of(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", id.dir, name);
}

static bool read_stamps(struct timespec out[3])
{
    for (int i = 0; i < 3; i++) {
        char p[4096];
        path_of(p, sizeof(p), files[i]);
        struct stat st;
        if (stat(p, &st) != 0)
            return false;
        out[i] = st.st_mtim;
    }
    return true;
}

/* The leaf's notAfter, for /certs and the expiry gauge. */
static int64_t cert_expiry(const char *chain_path)
{
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    int64_t t = 0;
    if (mbedtls_x509_crt_parse_file(&crt, chain_path) == 0) {
        struct tm tm = {.tm_year = crt.valid_to.year - 1900,
                        .tm_mon = crt.valid_to.mon - 1,
                        .tm_mday = crt.valid_to.day,
                        .tm_hour = crt.valid_to.hour,
                        .tm_min = crt.valid_to.min,
                        .tm_sec = crt.valid_to.sec};
        t = (int64_t)timegm(&tm);
    }
    mbedtls_x509_crt_free(&crt);
    return t;
}

/* Builds both configurations from the files; replaces the current ones only if both build. */
static int load_files(void)
{
    char root[4096], chain[4096], key[4096], err[256];
    path_of(root, sizeof(root), files[0]);
    path_of(chain, sizeof(chain), files[1]);
    path_of(key, sizeof(key), files[2]);
    struct timespec stamp[3];
    bool stamped = read_stamps(stamp);
    weir_tls_config_t *server =
        weir_tls_config_from_files(WEIR_TLS_SERVER, root, chain, key, id.trust_domain, err, sizeof(err));
    if (server == NULL) {
        weir_log_error("certificates in %s: %s", id.dir, err);
        return -1;
    }
    weir_tls_config_t *client =
        weir_tls_config_from_files(WEIR_TLS_CLIENT, root, chain, key, id.trust_domain, err, sizeof(err));
    if (client == NULL) {
        weir_log_error("certificates in %s: %s", id.dir, err);
        weir_tls_config_unref(server);
        return -1;
    }
    weir_tls_config_unref(id.server);
    weir_tls_config_unref(id.client);
    id.server = server;
    id.client = client;
    id.generation++;
    id.expiry = cert_expiry(chain);
    if (stamped)
        memcpy(id.stamp, stamp, sizeof(stamp));
    const char *own = weir_tls_config_own_id(server);
    weir_log_info("certificates loaded from %s (identity %s, generation %llu)", id.dir,
                  own ? own : "none", (unsigned long long)id.generation);
    return 0;
}

static void on_quiet(uv_timer_t *t)
{
    if (load_files() != 0)
        weir_log_warn("keeping the previous certificates");
}

static void schedule_reload(void)
{
    uv_timer_start(&id.quiet, on_quiet, QUIET_MS, 0);
}

static void on_change(uv_fs_event_t *h, const char *name, int events, int status)
{
    schedule_reload();
}

static void on_poll(uv_timer_t *t)
{
    struct timespec now[3];
    if (read_stamps(now) && memcmp(now, id.stamp, sizeof(now)) != 0)
        schedule_reload();
}

int weir_identity_load(const char *certs_dir, const char *trust_domain)
{
    id.dir = weir_mem_strdup(certs_dir);
    id.trust_domain = weir_mem_strdup(trust_domain);
    if (load_files() != 0)
        return -1;
    uv_timer_init(weir_loop(), &id.quiet);
    uv_timer_init(weir_loop(), &id.poll);
    uv_fs_event_init(weir_loop(), &id.watch);
    if (uv_fs_event_start(&id.watch, on_change, certs_dir, 0) != 0)
        weir_log_warn("cannot watch %s; polling it every %d s", certs_dir, POLL_MS / 1000);
    uv_timer_start(&id.poll, on_poll, POLL_MS, POLL_MS);
    /* housekeeping must not keep the loop alive once the listeners are gone */
    uv_unref((uv_handle_t *)&id.quiet);
    uv_unref((uv_handle_t *)&id.poll);
    uv_unref((uv_handle_t *)&id.watch);
    id.watching = true;
    return 0;
}

weir_tls_config_t *weir_identity_server(void)
{
    return id.server;
}

weir_tls_config_t *weir_identity_client(void)
{
    return id.client;
}

const char *weir_identity_id(void)
{
    return id.server ? weir_tls_config_own_id(id.server) : NULL;
}

const char *weir_identity_trust_domain(void)
{
    return id.trust_domain ? id.trust_domain : "cluster.local";
}

int64_t weir_identity_expiry(void)
{
    return id.expiry;
}

uint64_t weir_identity_generation(void)
{
    return id.generation;
}

void weir_identity_unload(void)
{
    if (id.watching) {
        uv_close((uv_handle_t *)&id.watch, NULL);
        uv_close((uv_handle_t *)&id.quiet, NULL);
        uv_close((uv_handle_t *)&id.poll, NULL);
        id.watching = false;
    }
    weir_tls_config_unref(id.server);
    weir_tls_config_unref(id.client);
    id.server = id.client = NULL;
    free(id.dir);
    free(id.trust_domain);
    id.dir = id.trust_domain = NULL;
}
