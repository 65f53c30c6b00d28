/* common/reload.h: hot reload of the -c paths.
 *
 * The paths are watched (inotify on each file's directory, and on each directory itself, so a
 * Kubernetes ConfigMap mount's `..data` symlink swap is seen) and also re-read every second in
 * case an event is missed; SIGHUP asks for a reload at once. A change is acted on after a
 * quiet period (an editor's truncate-then-write never loads a half-written file), and only if
 * the YAML content actually changed. The new config is validated whole: with any error, every
 * diagnostic is logged with its place and the old snapshot keeps serving; otherwise the role's
 * builder makes a snapshot, it becomes current, and the role may adjust its listeners.
 * Requests in flight finish on the snapshot they started with (each holds a reference).
 *
 * Loop thread only. */
#ifndef WEIR_RELOAD_H
#define WEIR_RELOAD_H

#include <stdint.h>

#include "common/cli.h"
#include "common/config.h"
#include "common/diag.h"
#include "common/snapshot.h"

/* Makes the role's snapshot from a valid config (takes ownership of cfg). */
typedef weir_snapshot_t *(*weir_reload_build_fn)(weir_config_t *cfg, void *ctx,
                                                 weir_diags_t *diags);
/* Called after a new snapshot became current (the gateway opens and closes listeners). */
typedef void (*weir_reload_applied_fn)(weir_snapshot_t *now, void *ctx);

/* Starts watching cli's -c paths. The current snapshot is the one built from their present
 * content. cli must outlive the watch. */
void weir_reload_start(const weir_cli_t *cli, weir_reload_build_fn build,
                       weir_reload_applied_fn applied, void *ctx);

/* Stops watching (handles close asynchronously). */
void weir_reload_stop(void);

/* Reloads now if the content changed (what SIGHUP and the watchers call after the quiet
 * period). Returns 1 when a new snapshot was applied, 0 when nothing changed, -1 when the new
 * config was invalid and the old one kept. */
int weir_reload_now(void);

/* Config from elsewhere than the -c paths (the Kubernetes API's registry as YAML), loaded
 * after them on every reload from now on; `yaml` NULL drops it. Copies both, then reloads at
 * once (the caller debounces). Returns what weir_reload_now() returns. */
int weir_reload_set_source(const char *name, const char *yaml);

/* Counters for /stats: successful reloads, rejected reloads, and the content hash in force. */
uint64_t weir_reload_successes(void);
uint64_t weir_reload_failures(void);
uint64_t weir_reload_config_hash(void);
/* The diagnostics of the last rejected reload, one per line (for /config_dump); "" when the
 * last reload was accepted. */
const char *weir_reload_last_rejection(void);

#endif
