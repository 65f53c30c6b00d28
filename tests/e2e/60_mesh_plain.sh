#!/usr/bin/env bash
# 60_mesh_plain.sh: the seed scenario with a sidecar in every app pod (iptables capture, weir
# sidecar as uid 1337) but no certificates: the endpoints lose their
# security.istio.io/tlsMode label, so auto mTLS stays off and the plumbing alone must carry the
# traffic (61_mesh_mtls adds the certificates).
#  - the client pod's `curl http://web-service/` (a service address, 10.96.0.10) goes out through
#    its sidecar, which round-robins over v1 and v2 (the seed's first observation);
#  - the gateway's /v1 and /v2 reach each pod through that pod's inbound capture;
#  - the app sees the request come from 127.0.0.6, the inbound passthrough source;
#  - a destination no service declares passes through unchanged: HTTP to a pod address, and
#    plain TCP to a port no service uses.
# shellcheck disable=SC2016,SC2119
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"
source "$WEIR_SOURCE_DIR/deploy/local/seed.sh"

require_root
require_cmd ip curl busybox timeout socat setpriv iptables
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"

cluster_trap
cluster_up "wt$$"
ACCESS_LOG="$CLUSTER_DIR/access.log"
: >"$ACCESS_LOG"
CLUSTER_EXTRA_LOGS+=("$ACCESS_LOG" "$CLUSTER_DIR/sidecar-v1.access.log" "$CLUSTER_DIR/sidecar-client.access.log")

CONFIG="$CLUSTER_DIR/config"
mkdir -p "$CONFIG"
for f in "$WEIR_SOURCE_DIR"/deploy/local/*.yaml; do
    grep -v 'security.istio.io/tlsMode' "$f" >"$CONFIG/$(basename "$f")"
done
chmod -R o+rX "$CONFIG"
seed_pods || fail "seed pods"
seed_sidecars "$WEIR_BIN" "$CONFIG" || fail "sidecars did not start"
seed_gateway "$WEIR_BIN" "$CONFIG" "$ACCESS_LOG" || fail "gateway did not start"
seed_wait 30 || fail "the seed pods did not come up"
# a plain TCP echo on a port no service declares, in the (unmeshed) gateway pod
pod_spawn gw "$CLUSTER_DIR/tcp-echo.log" socat TCP-LISTEN:9000,fork,reuseaddr EXEC:cat
wait_port gw "$SEED_GW_IP" 9000 10 || fail "tcp echo does not listen"

say "the client's curl http://web-service/ goes through its sidecar and reaches both versions"
v1=0 v2=0
for i in $(seq 1 20); do
    page=$(pod_exec client curl -sS --max-time 5 http://web-service/) || fail "request $i to web-service failed"
    case $page in
    *"This is version V1!"*) v1=$((v1 + 1)) ;;
    *"This is version V2!"*) v2=$((v2 + 1)) ;;
    *) fail "unexpected page: $page" ;;
    esac
done
echo "   V1: $v1, V2: $v2"
((v1 > 0 && v2 > 0)) || fail "20 requests did not reach both versions (V1 $v1, V2 $v2)"
grep -q 'outbound|80||web-service.default.svc.cluster.local' "$CLUSTER_DIR/sidecar-client.access.log" ||
    fail "the client sidecar logged no request to outbound|80||web-service.default.svc.cluster.local"

say "the gateway's /v1 and /v2 reach each pod through its inbound capture"
for i in $(seq 1 5); do
    page=$(pod_exec client curl -sS --max-time 5 http://gateway/v1) || fail "gateway /v1 failed"
    [[ $page == *"This is version V1!"* ]] || fail "/v1 gave: $page"
    page=$(pod_exec client curl -sS --max-time 5 http://gateway/v2) || fail "gateway /v2 failed"
    [[ $page == *"This is version V2!"* ]] || fail "/v2 gave: $page"
done
grep -q '"GET / HTTP/1.1" 200 .*inbound|80||' "$CLUSTER_DIR/sidecar-v1.access.log" ||
    fail "the v1 sidecar logged no inbound request"

say "the app sees its requests come from 127.0.0.6"
grep -q '127\.0\.0\.6' "$CLUSTER_DIR/httpd-v1.log" || fail "httpd-v1 saw no connection from 127.0.0.6: $(tail -5 "$CLUSTER_DIR/httpd-v1.log")"

say "HTTP to an address no service declares passes through unchanged (ALLOW_ANY)"
page=$(pod_exec client curl -sS --max-time 5 "http://$SEED_GW_IP/v1") || fail "passthrough HTTP failed"
[[ $page == *"This is version V1!"* ]] || fail "passthrough to the gateway gave: $page"
grep -q 'PassthroughCluster' "$CLUSTER_DIR/sidecar-client.access.log" || fail "no PassthroughCluster log line"

say "plain TCP to a port no service uses is relayed both ways, half-close included"
out=$(pod_exec client timeout 5 socat -t 2 - "TCP:$SEED_GW_IP:9000" <<<"hello through the relay") ||
    fail "TCP passthrough failed"
expect_eq "echo through the TCP relay" "$out" "hello through the relay"

say "the sidecars and the gateway exit 0 on SIGTERM, with no sanitizer report"
for pid in "${SEED_SIDECAR_PIDS[@]}" "$SEED_GW_PID"; do
    cluster_stop "$pid" 20 || fail "PID $pid did not exit within 20s of SIGTERM"
    [[ $STOP_RC == 0 ]] || fail "PID $pid exited with status $STOP_RC"
done
for f in "$CLUSTER_DIR"/sidecar-*.log "$CLUSTER_DIR/gateway.log"; do
    if sanitizer_report "$f"; then fail "sanitizer report in $f"; fi
done
echo "PASS: 60_mesh_plain"
