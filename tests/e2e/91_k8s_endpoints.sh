#!/usr/bin/env bash
# 91_k8s_endpoints.sh: a running `weir gateway` takes its services and endpoints from the
# Kubernetes API (--k8s-api), as it does in kind, here from tests/tools/fake_kube_api in the
# gateway's pod serving list and watch in the API server's wire format. The -c config is only
# the seed's Gateway, VirtualService and DestinationRule: no ServiceEntry, no WorkloadEntry.
#  - before the API answers, /healthz/ready is 503 and /v1 gets 503 NC (Envoy's answer when
#    the route's cluster does not exist: no ServiceEntry declares the host yet);
#  - once Service web-service, the Pods and an EndpointSlice with only httpd-v1 ready are
#    listed: ready, /v1 answers V1 and /v2 503 (its subset selects no endpoint);
#  - the slice gains httpd-v2 (a watch event): /v2 answers V2 within a second;
#  - the slice loses httpd-v1: /v1 is 503 within a second, /v2 still V2;
#  - events missed while the watch was silent, then compaction (410 Gone): the client lists
#    again and /v1 answers V1 once more; /stats counts the re-list;
#  - SIGTERM: exit 0, no sanitizer report.
# shellcheck disable=SC2016,SC2119
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
FAKE=${WEIR_FAKE_KUBE_API:-$WEIR_BUILD_DIR/tests/fake_kube_api}
DATA="$WEIR_SOURCE_DIR/tests/data/k8s"
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"
source "$WEIR_SOURCE_DIR/tests/lib/gateway.sh"
source "$WEIR_SOURCE_DIR/deploy/local/seed.sh"

require_root
require_cmd ip curl busybox timeout jq
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"
[[ -x $FAKE ]] || fail "fake_kube_api $FAKE not found (build first)"

API_PORT=18001 # in the gateway pod's own network namespace
V1_PAGE='<html> <body> <h1>This is version V1!</h1> </body></html>'
V2_PAGE='<html> <body> <h1>This is version V2!</h1> </body></html>'

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
ACCESS_LOG="$D/access.log"
CLUSTER_EXTRA_LOGS+=("$ACCESS_LOG" "$D/fake.log")

# The seed's routing only: services and endpoints must come from the API.
mkdir -p "$D/config" "$D/k8s"
for f in gateway virtualservice destinationrule; do cp "$WEIR_SOURCE_DIR/deploy/local/$f.yaml" "$D/config/"; done

# The pods as the API shows them, unmeshed here (no sidecar in this test): without the proxy
# container and the tlsMode label the gateway speaks plain HTTP to them.
unmesh='del(.metadata.labels["security.istio.io/tlsMode"]) | .spec.initContainers = []'
jq "$unmesh" "$DATA/pods/httpd-v1.json" >"$D/k8s/httpd-v1.json"
jq "$unmesh" "$DATA/pods/httpd-v2.json" >"$D/k8s/httpd-v2.json"
cp "$DATA/services/web-service.json" "$D/k8s/web-service.json"
slice="$DATA/slices/web-service-8kq2d.json"
jq '.endpoints |= map(select(.addresses[0] == "10.244.0.11"))' "$slice" >"$D/k8s/slice-v1.json"
jq '.endpoints |= map(select(.addresses[0] == "10.244.0.12"))' "$slice" >"$D/k8s/slice-v2.json"
cp "$slice" "$D/k8s/slice-both.json"
[[ $(jq '.endpoints | length' "$D/k8s/slice-v1.json") == 1 ]] || fail "test setup: slice-v1"
cat >"$D/k8s/e2e.steps" <<'STEPS'
add services web-service.json
add pods httpd-v1.json
add pods httpd-v2.json
add endpointslices slice-v1.json
pause
modify endpointslices slice-both.json
pause
modify endpointslices slice-v2.json
pause
hold
modify endpointslices slice-both.json
expire
pause
STEPS

say "the pods come up: httpd-v1, httpd-v2 (busybox httpd), then the gateway, with the API not up yet"
seed_pods || fail "creating the seed pods failed"
seed_gateway "$WEIR_BIN" "$D/config" "$ACCESS_LOG" --k8s-api "http://127.0.0.1:$API_PORT" ||
    fail "starting weir gateway failed"
GW=$SEED_GW_PID
seed_wait 30 || fail "the seed pods or the gateway did not become ready"

# get PATH: "STATUS BODY" of a GET through the gateway from pod client.
get() {
    local body
    body=$(pod_exec client curl -s --max-time 3 -o "$D/body" -w '%{http_code}' "http://$SEED_GW_IP$1" || true)
    printf '%s %s\n' "$body" "$(cat "$D/body" 2>/dev/null)"
}
ready() { pod_exec gw curl -s -o /dev/null --max-time 2 -w '%{http_code}' http://127.0.0.1:15021/healthz/ready || true; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# until_get PATH WANT LIMIT_MS: polls PATH until its "STATUS BODY" is WANT; prints the ms taken,
# or returns 1 after LIMIT_MS (plus a last try).
until_get() {
    local t0 got
    t0=$(now_ms)
    while :; do
        got=$(get "$1")
        [[ $got == "$2" ]] && { echo $(($(now_ms) - t0)); return 0; }
        (($(now_ms) - t0 > $3)) && { echo "last: $got" >&2; return 1; }
        sleep 0.05
    done
}
resume() { pod_exec gw curl -s --max-time 2 -X POST "http://127.0.0.1:$API_PORT/fake/resume" >/dev/null; }
fake_status() { pod_exec gw curl -s --max-time 2 "http://127.0.0.1:$API_PORT/fake/status"; }

say "before the API answers: not ready, and /v1 has no cluster (503 NC)"
check "/healthz/ready before the registry" "$(ready)" 503
check "/v1 before the registry" "$(get /v1)" "503 "
access_line '"GET /v1 HTTP/1.1" 503 NC ' "$ACCESS_LOG" 3 >/dev/null || flunk "no 503 NC access-log line for /v1"

say "the API comes up: Service web-service, Pods httpd-v1 and httpd-v2, a slice with only v1 ready"
pod_spawn gw "$D/fake.log" "$FAKE" --script "$D/k8s/e2e.steps" --bind 127.0.0.1 --port "$API_PORT" ||
    fail "starting fake_kube_api failed"
wait_port gw 127.0.0.1 "$API_PORT" 10 || fail "fake_kube_api does not listen"
# the client backs off while the API is unreachable (250 ms doubling): allow for that
ms=$(until_get /v1 "200 $V1_PAGE" 20000) || flunk "/v1 never answered V1 from the API's endpoints"
echo "   /v1 answered V1 $ms ms after the API came up"
check "/healthz/ready with the registry in force" "$(ready)" 200
check "/v2 with only v1 ready" "$(get /v2)" "503 no healthy upstream"
stats=$(pod_exec gw curl -s --max-time 2 http://127.0.0.1:15000/stats)
grep -qx 'weir.k8s.synced: 1' <<<"$stats" || flunk "/stats does not say weir.k8s.synced: 1: $(grep weir.k8s <<<"$stats")"
[[ $(fake_status) == *"paused=1"* ]] || flunk "the fake API is not at its first pause: $(fake_status)"

say "the slice gains httpd-v2 (a watch event): /v2 answers V2 within a second"
resume
ms=$(until_get /v2 "200 $V2_PAGE" 1000) || flunk "/v2 did not answer V2 within 1 s of the event"
echo "   /v2 answered V2 after $ms ms"
check "/v1 still" "$(get /v1)" "200 $V1_PAGE"

say "the slice loses httpd-v1: /v1 is 503 within a second, /v2 still V2"
resume
ms=$(until_get /v1 "503 no healthy upstream" 1000) || flunk "/v1 still answered 1 s after httpd-v1 left the slice"
echo "   /v1 was 503 after $ms ms"
check "/v2 still" "$(get /v2)" "200 $V2_PAGE"

say "a silent watch misses an event, then compaction (410 Gone): the client lists again, /v1 is back"
resume
ms=$(until_get /v1 "200 $V1_PAGE" 5000) || flunk "/v1 did not come back after the 410 re-list"
echo "   /v1 answered V1 again after $ms ms"
stats=$(pod_exec gw curl -s --max-time 2 http://127.0.0.1:15000/stats)
relists=$(sed -n 's/^weir\.k8s\.relists_gone: //p' <<<"$stats")
((${relists:-0} >= 1)) || flunk "/stats weir.k8s.relists_gone is '${relists}', want >= 1"
pod_exec gw curl -s --max-time 2 "http://127.0.0.1:$API_PORT/fake/log" >"$D/fake-requests.log" || true
grep -q '^LIST endpointslices' "$D/fake-requests.log" || flunk "the fake saw no LIST endpointslices"
n_lists=$(grep -c '^LIST endpointslices' "$D/fake-requests.log" || true)
((n_lists >= 2)) || flunk "endpointslices were listed $n_lists time(s), want a re-list after 410"

say "the gateway exits 0 on SIGTERM, with no sanitizer report"
proxies_stop_clean "$GW"
e2e_pass 91_k8s_endpoints
