/* common/cli.c: see cli.h. */
#include "common/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

int weir_labels_parse(const char *text, weir_labels_t *out)
{
    out->items = NULL;
    out->count = 0;
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (eq == NULL || eq == p) {
            weir_labels_free(out);
            return -1;
        }
        out->items = weir_mem_realloc(out->items, (out->count + 1) * sizeof(*out->items));
        out->items[out->count].key = weir_mem_strndup(p, (size_t)(eq - p));
        out->items[out->count].value = weir_mem_strndup(eq + 1, len - (size_t)(eq - p) - 1);
        out->count++;
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

static int parse_seconds(const char *opt, const char *v, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (*end != '\0' || d < 0) {
        fprintf(stderr, "weir: %s: expected seconds, got \"%s\"\n", opt, v);
        return -1;
    }
    *out = d;
    return 0;
}

int weir_cli_parse(weir_cli_t *cli, int argc, char **argv, int first)
{
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-shadow-host-suffix") == 0) { /* the one flag without a value */
            cli->no_shadow_host_suffix = true;
            continue;
        }
        bool takes_value = strcmp(a, "-c") == 0 || strncmp(a, "--", 2) == 0;
        if (takes_value && v == NULL) {
            fprintf(stderr, "weir: %s needs a value\n", a);
            return -1;
        }
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (cli->n_paths == WEIR_CLI_MAX_PATHS) {
                fprintf(stderr, "weir: too many -c paths\n");
                return -1;
            }
            cli->paths[cli->n_paths++] = v;
        } else if (strcmp(a, "--labels") == 0) {
            weir_labels_free(&cli->labels);
            if (weir_labels_parse(v, &cli->labels) != 0) {
                fprintf(stderr, "weir: --labels: expected k=v[,k=v...], got \"%s\"\n", v);
                return -1;
            }
        } else if (strcmp(a, "--namespace") == 0) {
            cli->namespace = v;
        } else if (strcmp(a, "--access-log") == 0) {
            cli->access_log = v;
        } else if (strcmp(a, "--log-format") == 0) {
            if (strcmp(v, "text") == 0)
                cli->log_format = WEIR_ACCESS_LOG_TEXT;
            else if (strcmp(v, "json") == 0)
                cli->log_format = WEIR_ACCESS_LOG_JSON;
            else {
                fprintf(stderr, "weir: --log-format: expected text or json, got \"%s\"\n", v);
                return -1;
            }
        } else if (strcmp(a, "--log-level") == 0) {
            static const char *const names[] = {"debug", "info", "warning", "error"};
            size_t k = 0;
            while (k < 4 && strcmp(v, names[k]) != 0)
                k++;
            if (k == 4) {
                fprintf(stderr, "weir: --log-level: expected debug, info, warning or error\n");
                return -1;
            }
            cli->log_level = (weir_log_level_t)k;
        } else if (strcmp(a, "--request-headers-timeout") == 0) {
            if (parse_seconds(a, v, &cli->request_headers_timeout_s) < 0)
                return -1;
        } else if (strcmp(a, "--idle-timeout") == 0) {
            if (parse_seconds(a, v, &cli->idle_timeout_s) < 0)
                return -1;
        } else if (strcmp(a, "--stream-idle-timeout") == 0) {
            if (parse_seconds(a, v, &cli->stream_idle_timeout_s) < 0)
                return -1;
        } else if (strcmp(a, "--service-account") == 0) {
            cli->service_account = v;
        } else if (strcmp(a, "--certs") == 0) {
            cli->certs_dir = v;
        } else if (strcmp(a, "--trust-domain") == 0) {
            cli->trust_domain = v;
        } else if (strcmp(a, "--credential-dir") == 0) {
            cli->credential_dir = v;
        } else if (strcmp(a, "--k8s-api") == 0) {
            cli->k8s_api = v;
        } else if (strcmp(a, "--k8s-namespace") == 0) {
            cli->k8s_namespace = v;
        } else if (strcmp(a, "--k8s-token") == 0) {
            cli->k8s_token = v;
        } else if (strcmp(a, "--k8s-ca") == 0) {
            cli->k8s_ca = v;
        } else if (strcmp(a, "--cluster-domain") == 0) {
            cli->cluster_domain = v;
        } else if (strcmp(a, "--admin") == 0) {
            cli->admin = v;
        } else if (strcmp(a, "--drain-seconds") == 0) {
            if (parse_seconds(a, v, &cli->drain_seconds) < 0)
                return -1;
        } else if (strcmp(a, "--health-port") == 0 || strcmp(a, "--prometheus-port") == 0) {
            char *end;
            unsigned long port = strtoul(v, &end, 10);
            if (end == v || *end != '\0' || port > 65535) {
                fprintf(stderr, "weir: %s: expected a port 0..65535, got \"%s\"\n", a, v);
                return -1;
            }
            if (a[2] == 'h')
                cli->health_port = (unsigned)port;
            else
                cli->prometheus_port = (unsigned)port;
        } else if (strcmp(a, "--inbound-port") == 0 || strcmp(a, "--outbound-port") == 0) {
            char *end;
            unsigned long port = strtoul(v, &end, 10);
            if (*end != '\0' || port == 0 || port > 65535) {
                fprintf(stderr, "weir: %s: expected a port 1..65535, got \"%s\"\n", a, v);
                return -1;
            }
            if (a[2] == 'i')
                cli->inbound_port = (unsigned)port;
            else
                cli->outbound_port = (unsigned)port;
        } else if (strcmp(a, "--connect-timeout") == 0) {
            if (parse_seconds(a, v, &cli->connect_timeout_s) < 0)
                return -1;
        } else {
            fprintf(stderr, "weir: unknown option \"%s\"\n", a);
            return -1;
        }
        i++;
    }
    return 0;
}

void weir_cli_free(weir_cli_t *cli)
{
    weir_labels_free(&cli->labels);
}
