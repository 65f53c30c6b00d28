#!/usr/bin/env bash
# 92_admin_metrics.sh: what an operator sees. A gateway, a client sidecar (pod mclient) and a
# server sidecar (pod e1, in front of echo_server) carry a known sequence of requests:
#  - Istio's istio_requests_total counts them exactly, with reporter source at the gateway and
#    the client sidecar, destination at the server sidecar, and the 404 NR weir answered itself;
#  - /stats/prometheus on 15090 (pod address) passes promtool (apart from its lint on the unit
#    in Istio's own istio_request_duration_milliseconds name);
#  - the admin port 15000 answers on loopback only; GET never mutates (405); /clusters,
#    /config_dump (each route naming its VirtualService and file) and /certs answer;
#  - a locally answered error carries x-weir-flag;
#  - /healthz/ready on 15021 is 200, then 503 while draining after SIGTERM; requests in flight
#    at SIGTERM all finish with 200, and the proxy exits 0.
# shellcheck disable=SC2016,SC2119
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"
source "$WEIR_SOURCE_DIR/tests/lib/gateway.sh"

require_root
require_cmd ip curl timeout setpriv iptables promtool
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"

E1_IP=10.244.0.31

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
mkdir -p "$D/config"
{
    yaml_gateway
    cat <<'YAML'
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.local, echo]
  gateways: [gw, mesh]
  http:
  - name: ok
    match: [{uri: {prefix: /ok}}, {uri: {prefix: /delay}}]
    route: [{destination: {host: echo}}]
YAML
    yaml_service echo "$POL_VIP" "$E1_IP:80"
} | conf_put "$D/config/mesh.yaml"

policy_pods || fail "pods"
pod_add e1 "$E1_IP" || fail "pod e1"
echo_start e1 v1 "0.0.0.0:80" # all addresses: the sidecar reaches it on 127.0.0.1
gateway_start gw "$D/config" "$D/gateway.log" "$D/access.log"
GW=$GW_PID
sidecar_start mclient app=sleep sleep "$D/config"
SC=$SIDECAR_PID
sidecar_start e1 app=echo,version=v1 echo "$D/config"
SE=$SIDECAR_PID

code() { pod_exec "$1" curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$2" || true; }

say "a known sequence: 3 x 200 and 2 x 404 through the gateway, 4 x 200 through the client sidecar"
for i in 1 2 3; do check "gw /ok/$i" "$(code client "http://echo.local/ok/$i")" 200; done
for i in 1 2; do check "gw /nope/$i" "$(code client "http://echo.local/nope/$i")" 404; done
for i in 1 2 3 4; do check "mesh /ok/$i" "$(code mclient "http://echo/ok/$i")" 200; done

# series POD IP REGEX...: the value of the istio_requests_total series matching every REGEX
series() {
    local pod=$1 ip=$2 text
    shift 2
    text=$(pod_exec "$pod" curl -s --max-time 5 "http://$ip:15090/stats/prometheus") ||
        fail "no /stats/prometheus from $ip"
    text=$(grep '^istio_requests_total{' <<<"$text")
    local re
    for re in "$@"; do text=$(grep -E -- "$re" <<<"$text" || true); done
    awk '{ n += $NF } END { print n + 0 }' <<<"$text"
}

say "istio_requests_total counts exactly, with Istio's labels, on each proxy"
sleep 0.3
check "gateway: reporter=source 200 to echo" \
    "$(series client "$POL_GW_IP" 'reporter="source"' 'response_code="200"' \
        'destination_service="echo.default.svc.cluster.local"' 'source_workload="istio-ingressgateway"')" 3
check "gateway: 404 NR answered locally" \
    "$(series client "$POL_GW_IP" 'reporter="source"' 'response_code="404"' 'response_flags="NR"')" 2
check "client sidecar: reporter=source 200" \
    "$(series mclient 127.0.0.1 'reporter="source"' 'response_code="200"' 'source_app="sleep"')" 4
check "server sidecar: reporter=destination 200, plain text" \
    "$(series client "$E1_IP" 'reporter="destination"' 'response_code="200"' \
        'destination_app="echo"' 'destination_version="v1"' 'connection_security_policy="none"')" 7

say "/stats/prometheus passes promtool, apart from the unit lint on Istio's own metric name"
pod_exec client curl -s --max-time 5 "http://$POL_GW_IP:15090/stats/prometheus" >"$D/metrics.txt"
rc=0
promtool check metrics <"$D/metrics.txt" >"$D/promtool.out" 2>&1 || rc=$?
if [[ $rc != 0 ]] && grep -v 'istio_request_duration_milliseconds use base unit "seconds"' "$D/promtool.out" | grep -q .; then
    fail "promtool check metrics: $(cat "$D/promtool.out")"
fi

say "the admin port answers on loopback only, and GET never mutates"
check "admin from another pod" "$(code client "http://$POL_GW_IP:15000/ready")" 000
check "admin on loopback" "$(code gw http://127.0.0.1:15000/ready)" 200
check "GET /quitquitquit" "$(code gw http://127.0.0.1:15000/quitquitquit)" 405
check "GET /drain_listeners" "$(code gw http://127.0.0.1:15000/drain_listeners)" 405
clusters=$(pod_exec gw curl -s http://127.0.0.1:15000/clusters)
grep -q "^outbound|80||echo.default.svc.cluster.local::$E1_IP:80::health_flags::healthy$" <<<"$clusters" ||
    fail "/clusters lacks the endpoint's health line: $clusters"
dump=$(pod_exec gw curl -s http://127.0.0.1:15000/config_dump)
grep -q '"name": "echo"' <<<"$dump" || fail "/config_dump names no VirtualService: ${dump:0:400}"
grep -q "\"file\": \"$D/config/mesh.yaml\"" <<<"$dump" || fail "/config_dump names no source file"
json=$(pod_exec gw curl -s 'http://127.0.0.1:15000/clusters?format=json')
grep -q '"failed_outlier_check": false' <<<"$json" || fail "/clusters?format=json: ${json:0:300}"
pod_exec gw curl -s http://127.0.0.1:15000/certs | grep -q '"trust_domain"' || fail "/certs"

say "a locally answered error says why in x-weir-flag"
hdrs=$(pod_exec client curl -s -D - -o /dev/null --max-time 5 http://echo.local/nope/3)
grep -qi '^x-weir-flag: NR' <<<"$hdrs" || fail "the 404 lacks x-weir-flag: $hdrs"

say "readiness: 200 while serving; after SIGTERM 503, in-flight requests finish, exit 0"
check "/healthz/ready on the pod address" "$(code client "http://$POL_GW_IP:15021/healthz/ready")" 200
inflight=()
for i in 1 2 3 4 5; do
    (code client "http://echo.local/delay/1500?inflight=$i" >"$D/inflight.$i") &
    inflight+=($!)
done
sleep 0.5
kill -TERM "$GW"
sleep 0.2
check "/healthz/ready while draining" "$(code gw http://127.0.0.1:15021/healthz/ready)" 503
wait "${inflight[@]}"
for i in 1 2 3 4 5; do check "in-flight request $i" "$(cat "$D/inflight.$i")" 200; done
cluster_stop "$GW" 20 || true
[[ $STOP_RC == 0 ]] || fail "the gateway exited $STOP_RC after draining"
if sanitizer_report "$D/gateway.log"; then fail "sanitizer report in the gateway log"; fi

say "the sidecars exit 0 on SIGTERM, with no sanitizer report"
proxies_stop_clean "$SC" "$SE"
e2e_pass 92_admin_metrics
