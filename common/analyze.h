/* common/analyze.h: `weir validate` as an analyzer, the checks `istioctl analyze` makes.
 *
 * The loader (common/config.h) already refuses what Istio's validation refuses (Istio's
 * IST0106 SchemaValidationError), dangling gateway and subset references and all-zero
 * weights. weir_analyze() runs on a config that loaded and looks across resources for config
 * that loads but silently does nothing or conflicts. Every finding has a stable code, Istio's
 * where Istio has one, the place of the offending node and a one-line hint:
 *
 *   IST0101 warning ReferencedResourceNotFound: a route, mirror or DestinationRule host no
 *           ServiceEntry declares. Istio says error; weir does not read Kubernetes Services,
 *           so in a cluster the host may well exist.
 *   IST0109 error   ConflictingMeshGatewayVirtualServiceHosts: two VirtualServices claim one
 *           host for the mesh (Istio merges VirtualServices only at gateways).
 *   IST0113 error   MTLSPolicyConflict: a DestinationRule tls.mode DISABLE toward a mesh
 *           workload whose PeerAuthentication is STRICT, or ISTIO_MUTUAL toward DISABLE.
 *   IST0127 warning NoMatchingWorkloadsFound: a ServiceEntry workloadSelector or a
 *           PeerAuthentication selector that selects no WorkloadEntry.
 *   IST0130 warning VirtualServiceUnreachableRule: an http rule no request can reach, because
 *           earlier rules (a catch-all, or matches covering every one of its own) take its
 *           requests first, in its VirtualService or in one merged before it at a gateway.
 *   IST0131 warning VirtualServiceIneffectiveMatch (Istio: info): one match of a rule that an
 *           earlier match covers, or whose own gateways the VirtualService is not bound to.
 *   IST0132 warning VirtualServiceHostNotFoundInGateway: no server of a bound Gateway accepts
 *           the VirtualService's hosts; when that leaves it bound to no proxy at all, the hint
 *           says to add `mesh`.
 *   IST0145 error   ConflictingGateways: two Gateways for the same workloads serve
 *           overlapping hosts on the same port.
 *   WEIR0001 warning SubsetSelectsNoEndpoint: a DestinationRule subset whose labels select
 *           none of the service's endpoints (503 no healthy upstream).
 *   WEIR0002 warning HttpRoutesOnNonHttpPort: http routes for a host whose every port (of the
 *           ServiceEntry, for the mesh; of the accepting Gateway servers, at a gateway) is
 *           TCP, TLS passthrough or another non-HTTP protocol.
 *
 * Checks against the registry stay quiet when the config has none of it: with no ServiceEntry
 * at all there is no IST0101, with no WorkloadEntry at all no IST0127. Such a config takes its
 * services and pods from Kubernetes (the seed, deploy/kind), which weir does not read offline.
 *
 * A "mesh workload" is a WorkloadEntry labelled security.istio.io/tlsMode=istio, the label
 * Istio's injector puts on pods with a sidecar. Hosts are compared as Istio's host.Name does
 * (exact, or under a `*.suffix`). Everything here is pure: no I/O, the config is read only. */
#ifndef WEIR_ANALYZE_H
#define WEIR_ANALYZE_H

#include "common/config.h"
#include "common/diag.h"

/* Appends every finding to `out`, sorted by place (files in load order). */
void weir_analyze(const weir_config_t *cfg, weir_diags_t *out);

/* One JSON document for every diagnostic in `d`, the loader's and the analyzer's:
 *   {"findings": [{"level": "warning", "code": "IST0130", "file": "vs.yaml", "line": 20,
 *                  "column": 5, "message": "...", "hint": "..."}, ...],
 *    "counts": {"errors": 0, "warnings": 1}}
 * code and hint are null when the diagnostic has none; file, line and column are null when it
 * has no place. Returns a string to free(). */
char *weir_analyze_to_json(const weir_diags_t *d);

#endif
