#!/usr/bin/env bash
# 70_hot_reload.sh: changes to the YAML take effect live, in the way Kubernetes delivers them.
# The gateway reads a directory laid out like a ConfigMap mount (files are symlinks into
# ..data, which points at a timestamped directory; an update swaps ..data). Expectations:
#  - while a keep-alive curl loop runs, swapping the mount to a VirtualService that sends
#    /x to v2 instead of v1 takes effect within 2 seconds and the loop sees no error;
#  - an invalid update is rejected with file:line:col in the log and the old config keeps
#    serving; fixing it applies the fix;
#  - a Gateway server added on a new port is listened on, and closed when removed;
#  - SIGHUP reloads without harm.
# shellcheck disable=SC2016,SC2119
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
ECHO_SERVER=${WEIR_ECHO_SERVER:-$WEIR_BUILD_DIR/tests/echo_server}
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"
source "$WEIR_SOURCE_DIR/tests/lib/gateway.sh"

require_root
require_cmd ip curl timeout
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"
[[ -x $ECHO_SERVER ]] || fail "echo_server $ECHO_SERVER not found (build first)"

GW_IP=10.244.0.10
ECHO_IP=10.244.0.30

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
CLUSTER_EXTRA_LOGS+=("$D/access.log")
M="$D/mount" # what a ConfigMap volume looks like inside a pod

# mesh.yaml: the services (unchanged by updates)
mesh_yaml() {
    cat <<YAML
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: default}
spec: {address: $ECHO_IP, labels: {app: echo, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v2, namespace: default}
spec: {address: $ECHO_IP, ports: {http: 8080}, labels: {app: echo, version: v2}}
YAML
}

# routes_yaml SUBSET [EXTRA_PORT]: the Gateway and VirtualService of one version of the config.
routes_yaml() {
    local subset=$1 extra=${2:-}
    cat <<YAML
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - {port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}
YAML
    [[ -n $extra ]] && echo "  - {port: {number: $extra, name: http-extra, protocol: HTTP}, hosts: [\"*\"]}"
    cat <<YAML
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{destination: {host: echo, subset: $subset}}]
YAML
}

# publish NAME: writes a new version as Kubernetes does: a new timestamped directory, then an
# atomic swap of the ..data symlink. The content comes from the files in $D/next/.
n=0
publish() {
    n=$((n + 1))
    local dir="..v$n"
    mkdir "$M/$dir"
    cp "$D"/next/*.yaml "$M/$dir/"
    ln -sfn "$dir" "$M/..data_tmp"
    mv -T "$M/..data_tmp" "$M/..data"
}

mkdir -p "$M" "$D/next"
mesh_yaml >"$D/next/mesh.yaml"
routes_yaml v1 >"$D/next/routes.yaml"
publish
ln -s ..data/mesh.yaml "$M/mesh.yaml"
ln -s ..data/routes.yaml "$M/routes.yaml"

pod_add gw "$GW_IP" || fail "pod gw"
pod_add echo "$ECHO_IP" || fail "pod echo"
pod_add client 10.244.0.20 "$GW_IP gateway" || fail "pod client"
pod_spawn echo "$D/echo-v1.log" "$ECHO_SERVER" --listen "$ECHO_IP:80" --name v1
pod_spawn echo "$D/echo-v2.log" "$ECHO_SERVER" --listen "$ECHO_IP:8080" --name v2
wait_port client "$ECHO_IP" 80 20 || fail "echo v1"
wait_port client "$ECHO_IP" 8080 20 || fail "echo v2"
gateway_start gw "$M" "$D/gateway.log" "$D/access.log"

name_of() { pod_exec client curl -sS --max-time 5 "http://gateway$1" | sed -n 's/^name=//p'; }
expect_eq "before any update, /x answered by" "$(name_of /x)" v1

say "swapping the mount to route /x to v2 is live within 2 s, and a keep-alive loop sees no error"
args=()
for i in $(seq 1 160); do args+=(-o /dev/null "http://gateway/x?i=$i"); done
pod_exec client curl -s --max-time 60 --rate 40/s -w '%{http_code} %{num_connects}\n' "${args[@]}" >"$D/loop.out" 2>&1 &
loop=$!
sleep 1
routes_yaml v2 >"$D/next/routes.yaml"
publish
t0=$(date +%s%N)
until [[ $(name_of /x) == v2 ]]; do
    (( ($(date +%s%N) - t0) / 1000000 < 2000 )) || fail "the update was not live within 2 s"
    sleep 0.05
done
echo "   live after $((($(date +%s%N) - t0) / 1000000)) ms"
wait "$loop" || true
expect_eq "answers in the loop" "$(wc -l <"$D/loop.out")" 160
expect_eq "answers other than 200" "$(grep -vc '^200 ' "$D/loop.out" || true)" 0
expect_eq "connections the loop opened" "$(awk '{n += $2} END {print n}' "$D/loop.out")" 1

say "an invalid update is rejected with its place, and the previous config keeps serving"
sed -i 's/subset: v2/subset: v7/' "$D/next/routes.yaml"
publish
deadline=$((SECONDS + 5))
until grep -q 'config reload rejected' "$D/gateway.log"; do
    ((SECONDS < deadline)) || fail "the invalid update was not reported"
    sleep 0.1
done
grep -qE 'config reload: .*routes\.yaml:[0-9]+:[0-9]+: .*subset "v7"' "$D/gateway.log" ||
    fail "the rejection does not name file:line:col: $(grep 'config reload' "$D/gateway.log")"
for i in 1 2 3 4 5; do expect_eq "/x while the update is invalid" "$(name_of /x)" v2; done
routes_yaml v1 >"$D/next/routes.yaml"
publish
t0=$SECONDS
until [[ $(name_of /x) == v1 ]]; do
    ((SECONDS - t0 < 3)) || fail "the fixed update was not applied"
    sleep 0.05
done

say "a Gateway server added on port 81 is listened on, and closed once removed"
routes_yaml v1 81 >"$D/next/routes.yaml"
publish
wait_port client "$GW_IP" 81 5 || fail "port 81 not opened after the update"
expect_eq "port 81 answered by" "$(name_of :81/x)" v1
routes_yaml v1 >"$D/next/routes.yaml"
publish
deadline=$((SECONDS + 5))
while pod_exec client timeout 1 bash -c 'exec 3<>/dev/tcp/gateway/81' 2>/dev/null; do
    ((SECONDS < deadline)) || fail "port 81 still accepts after its server was removed"
    sleep 0.2
done

say "SIGHUP reloads without harm"
kill -HUP "$GW_PID"
sleep 0.5
cluster_pid_alive "$GW_PID" || fail "weir gateway died on SIGHUP"
expect_eq "/x after SIGHUP" "$(name_of /x)" v1

say "weir gateway exits 0 on SIGTERM, with no sanitizer report"
gateway_stop_clean "$D/gateway.log"
echo "PASS: 70_hot_reload"
