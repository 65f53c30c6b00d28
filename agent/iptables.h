/* agent/iptables.h: `weir iptables`, what Istio's istio-iptables init container does.
 *
 * It installs the nat-table rules that send a pod's TCP traffic through its sidecar
 * (istio-semantics.md 6.2): inbound connections to 15006, outbound ones to 15001, except the
 * proxy's own traffic (uid/gid 1337), its inbound passthrough from 127.0.0.6, loopback, the
 * HBONE port 15008 and the excluded ports. The rule set is built as data, an iptables-restore
 * input (`*nat` ... `COMMIT`), by pure functions, so the unit tests compare it with golden files
 * and `--dry-run` prints exactly what would be applied. Applying is one `iptables-restore
 * --noflush` run (fork/exec, the rules on its stdin, no shell): the kernel gets all of it or
 * none of it.
 *
 *   weir iptables [--proxy-uid 1337] [--proxy-gid 1337] [--inbound-port 15006]
 *                 [--outbound-port 15001] [--exclude-inbound-ports 15000,15021,15090]
 *                 [--exclude-outbound-ports P,...] [--dry-run] [--cleanup]
 *
 * The chains are Istio's (ISTIO_INBOUND, ISTIO_REDIRECT, ISTIO_IN_REDIRECT, ISTIO_OUTPUT), so
 * tooling that knows Istio's rules reads ours. Installing refuses to touch a nat table that
 * already holds any of them; `--cleanup` removes them and the jumps into them.
 *
 * Ownership: the options hold no heap memory; the rule text goes into the caller's weir_buf_t. */
#ifndef WEIR_IPTABLES_H
#define WEIR_IPTABLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/mem.h"

#define WEIR_IPTABLES_MAX_PORTS 64
#define WEIR_IPTABLES_TUNNEL_PORT 15008           /* HBONE: never captured, as in Istio */
#define WEIR_IPTABLES_PASSTHROUGH_SRC "127.0.0.6" /* the sidecar's source towards its app */

/* weir_iptables_parse() returns this after printing the usage for --help. */
#define WEIR_IPTABLES_HELP 1

typedef struct {
    uint32_t proxy_uid, proxy_gid; /* the sidecar's identity: its traffic is never captured */
    uint16_t inbound_port;         /* where inbound connections are redirected (15006) */
    uint16_t outbound_port;        /* where outbound connections are redirected (15001) */
    uint16_t exclude_inbound[WEIR_IPTABLES_MAX_PORTS]; /* dports that reach the pod as is */
    size_t n_exclude_inbound;
    uint16_t exclude_outbound[WEIR_IPTABLES_MAX_PORTS]; /* dports that leave the pod as is */
    size_t n_exclude_outbound;
    bool dry_run; /* print the rules, change nothing */
    bool cleanup; /* remove weir's chains and the jumps into them instead of installing */
} weir_iptables_opts_t;

/* Istio's defaults: uid/gid 1337, 15006 in, 15001 out, inbound 15000,15021,15090 excluded. */
void weir_iptables_opts_default(weir_iptables_opts_t *o);

/* Parses argv[first..argc) over the defaults already in *o. Both `--opt VALUE` and
 * `--opt=VALUE`. Port lists are comma-separated (empty items are skipped, duplicates dropped,
 * "" means none). Returns 0; WEIR_IPTABLES_HELP after printing the usage to `out` for --help;
 * or -1 after printing the problem to `err`. */
int weir_iptables_parse(weir_iptables_opts_t *o, int argc, char **argv, int first, FILE *out,
                        FILE *err);

/* Appends the iptables-restore input that installs the rules (for `iptables-restore
 * --noflush`: it creates the chains with -N, so it fails as a whole if one already exists). */
void weir_iptables_rules(const weir_iptables_opts_t *o, weir_buf_t *out);

/* Given `iptables-save -t nat` output, returns the name of the first of weir's chains that
 * exists, or NULL when none does. */
const char *weir_iptables_find_chain(const char *saved, size_t len);

/* Given `iptables-save -t nat` output, appends the iptables-restore input that removes weir's
 * chains and every rule of another chain that jumps (or goes) into one of them. Returns how
 * many chains and jumps it removes; 0 (and nothing appended) when there is nothing to do. */
size_t weir_iptables_cleanup_rules(const char *saved, size_t len, weir_buf_t *out);

/* `weir iptables ...`: argv[first] is the first option. Exit status: 0 done, 1 the rules could
 * not be read or applied (the reason, and iptables-restore's own stderr, are printed),
 * 2 a bad command line. */
int weir_iptables_main(int argc, char **argv, int first);

#endif
