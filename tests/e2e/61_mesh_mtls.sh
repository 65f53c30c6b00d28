#!/usr/bin/env bash
# 61_mesh_mtls.sh: the seed mesh with mTLS everywhere Istio would use it. A mesh CA made by
# `weir certs`, a workload certificate per pod, PeerAuthentication STRICT for the namespace
# (PERMISSIVE for the echo workload). Expectations:
#  - the gateway's /v1 and /v2 still reach only v1 and v2: auto mTLS to the meshed pods;
#  - the client's curl http://web-service/ reaches both versions through both sidecars;
#  - a capture on the bridge of all traffic to and from the app pods never shows the page text
#    or a request line: it is all TLS;
#  - the app behind an mTLS port gets x-forwarded-client-cert in Istio's form and
#    x-forwarded-proto https;
#  - STRICT refuses a plain-text client straight to the pod address; PERMISSIVE serves it,
#    without XFCC.
# shellcheck disable=SC2016,SC2119
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
ECHO_SERVER=${WEIR_ECHO_SERVER:-$WEIR_BUILD_DIR/tests/echo_server}
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"
source "$WEIR_SOURCE_DIR/deploy/local/seed.sh"

require_root
require_cmd ip curl busybox timeout setpriv iptables tcpdump openssl
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"
[[ -x $ECHO_SERVER ]] || fail "echo_server $ECHO_SERVER not found (build first)"

ECHO_IP=10.244.0.30
ECHO_VIP=10.96.0.20

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
ACCESS_LOG="$D/access.log"
: >"$ACCESS_LOG"
CLUSTER_EXTRA_LOGS+=("$ACCESS_LOG" "$D/sidecar-v1.access.log" "$D/sidecar-client.access.log" "$D/sidecar-echo.access.log")

mkdir -p "$D/config"
cp "$WEIR_SOURCE_DIR"/deploy/local/*.yaml "$D/config/"
cat >"$D/config/mtls.yaml" <<YAML
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: echo, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  mtls: {mode: PERMISSIVE}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  addresses: [$ECHO_VIP]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo, namespace: default}
spec:
  address: $ECHO_IP
  labels: {app: echo, security.istio.io/tlsMode: istio}
  serviceAccount: echo
YAML
chmod -R o+rX "$D/config"

seed_certs "$WEIR_BIN" "$D/certs" || fail "weir certs failed"
seed_issue "$WEIR_BIN" echo default echo || fail "weir certs issue (echo) failed"
seed_pods || fail "seed pods"
pod_add echo "$ECHO_IP" || fail "pod echo"
echo "$ECHO_VIP echo echo.default echo.default.svc.cluster.local" >>"/etc/netns/$(pod_ns client)/hosts"
pod_spawn echo "$D/echo_server.log" "$ECHO_SERVER" --listen 0.0.0.0:80 --name echo
seed_sidecars "$WEIR_BIN" "$D/config" || fail "sidecars did not start"
seed_sidecar echo app=echo echo "$WEIR_BIN" "$D/config" || fail "echo sidecar did not start"
wait_port echo 127.0.0.1 15006 20 || fail "echo sidecar does not listen"
seed_gateway "$WEIR_BIN" "$D/config" "$ACCESS_LOG" --certs "$D/certs/gw" || fail "gateway did not start"
seed_wait 30 || fail "the seed pods did not come up"

# Capture everything to and from the app pods on the bridge, from the node namespace.
host_spawn "$D/tcpdump.log" ip netns exec "$CLUSTER_PREFIX-node" tcpdump -i br0 -U -n -s 0 \
    -w "$D/bridge.pcap" "host $SEED_V1_IP or host $SEED_V2_IP or host $ECHO_IP"
TCPDUMP_PID=$SPAWNED_PID
sleep 1

say "the gateway's /v1 and /v2 reach only v1 and v2 over mTLS (the namespace is STRICT)"
for i in $(seq 1 10); do
    page=$(pod_exec client curl -sS --max-time 5 http://gateway/v1) || fail "gateway /v1 failed"
    [[ $page == *"This is version V1!"* ]] || fail "/v1 gave: $page"
    page=$(pod_exec client curl -sS --max-time 5 http://gateway/v2) || fail "gateway /v2 failed"
    [[ $page == *"This is version V2!"* ]] || fail "/v2 gave: $page"
done

say "the client's curl http://web-service/ reaches both versions through both sidecars"
v1=0 v2=0
for i in $(seq 1 20); do
    page=$(pod_exec client curl -sS --max-time 5 http://web-service/) || fail "request $i failed"
    case $page in
    *"This is version V1!"*) v1=$((v1 + 1)) ;;
    *"This is version V2!"*) v2=$((v2 + 1)) ;;
    *) fail "unexpected page: $page" ;;
    esac
done
echo "   V1: $v1, V2: $v2"
((v1 > 0 && v2 > 0)) || fail "20 requests did not reach both versions"

say "the app behind an mTLS port gets XFCC in Istio's form and x-forwarded-proto https"
resp=$(pod_exec client curl -sS --max-time 5 http://echo/headers) || fail "client -> echo failed"
xfcc=$(grep -i '^header=x-forwarded-client-cert:' <<<"$resp" | sed 's/^[^:]*: *//') || true
re='^By=spiffe://cluster\.local/ns/default/sa/echo;Hash=[0-9a-f]{64};Subject="";URI=spiffe://cluster\.local/ns/default/sa/sleep$'
[[ $xfcc =~ $re ]] || fail "XFCC is '$xfcc'"
grep -qi '^header=x-forwarded-proto: https$' <<<"$resp" || fail "x-forwarded-proto is not https: $resp"

say "the capture on the bridge holds TLS records but never the page text or a request line"
sleep 1
kill -INT "$TCPDUMP_PID" 2>/dev/null || true
for _ in $(seq 1 50); do cluster_pid_alive "$TCPDUMP_PID" || break; sleep 0.1; done
size=$(stat -c %s "$D/bridge.pcap")
((size > 20000)) || fail "the capture is only $size bytes: did it see the traffic?"
if grep -aq 'This is version' "$D/bridge.pcap"; then fail "the page text crossed the bridge in clear"; fi
if grep -aq 'GET / HTTP/1.1' "$D/bridge.pcap"; then fail "a request line crossed the bridge in clear"; fi
echo "   $size bytes captured, no plain text"

say "STRICT refuses a plain-text client straight to the pod address, with no HTTP answer"
rc=0
out=$(pod_exec gw curl -sS --max-time 5 "http://$SEED_V1_IP/" 2>&1) || rc=$?
((rc != 0)) || fail "a plain-text request to the STRICT pod got: $out"
[[ $out != *"This is version"* ]] || fail "the STRICT pod answered in plain text"

say "PERMISSIVE serves a plain-text client, without XFCC"
resp=$(pod_exec gw curl -sS --max-time 5 "http://$ECHO_IP/headers") || fail "plain text to the PERMISSIVE pod failed"
[[ $resp == *"name=echo"* ]] || fail "PERMISSIVE answer: $resp"
if grep -qi '^header=x-forwarded-client-cert' <<<"$resp"; then fail "plain text got XFCC: $resp"; fi

say "every proxy exits 0 on SIGTERM, with no sanitizer report"
for pid in "${SEED_SIDECAR_PIDS[@]}" "$SEED_GW_PID"; do
    cluster_stop "$pid" 20 || fail "PID $pid did not exit within 20s of SIGTERM"
    [[ $STOP_RC == 0 ]] || fail "PID $pid exited with status $STOP_RC"
done
for f in "$D"/sidecar-*.log "$D/gateway.log"; do
    if sanitizer_report "$f"; then fail "sanitizer report in $f"; fi
done
echo "PASS: 61_mesh_mtls"
