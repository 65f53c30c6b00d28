#!/usr/bin/env bash
# 83_pool_limits.sh: DestinationRule connectionPool limits (istio-semantics.md 3.3, S8, T4),
# through the gateway and through a client sidecar; each proxy has its own pools.
#  - maxConnections 1 + http1MaxPendingRequests 1, 20 concurrent requests to a 1 s backend:
#    some get 503 at once with x-envoy-overloaded: true, a body ending "reset reason: overflow"
#    and flag UO, the rest 200, all within a few seconds; the backend never sees the rejected
#    ones (an overflow is never retried); sequential requests all get 200;
#  - http2MaxRequests 1 (max active requests, HTTP/1.1 too): concurrent requests overflow;
#  - maxRequestsPerConnection 1: every request reaches the backend on a new connection, where
#    without it the proxy reuses its upstream connection;
#  - tcp.connectTimeout 500ms to an address nobody answers: 503 UF after about 0.5 s;
#  - http.idleTimeout 1s: a pooled upstream connection idle for 2 s has been closed, so the next
#    request comes on a new one, where without it (Envoy's 1 h) the connection is reused;
#    tcpKeepalive turns SO_KEEPALIVE on (ss shows the keepalive timer).
# Pods: gw, client, mclient (sidecar), e1 (echo_servers p1, p2, p3, e, i); 10.244.0.99 has no pod.
# shellcheck disable=SC2016,SC2119
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
ECHO_SERVER=${WEIR_ECHO_SERVER:-$WEIR_BUILD_DIR/tests/echo_server}
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"
source "$WEIR_SOURCE_DIR/tests/lib/gateway.sh"

require_root
require_cmd ip curl timeout setpriv iptables
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"
[[ -x $ECHO_SERVER ]] || fail "echo_server $ECHO_SERVER not found (build first)"

E1_IP=10.244.0.31
NOWHERE_IP=10.244.0.99

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
CLUSTER_EXTRA_LOGS+=("$D/access.log")
mkdir -p "$D/config"
{
    yaml_gateway
    yaml_service echo "$POL_VIP" "$E1_IP:83"
    yaml_service pool - "$E1_IP:80"
    yaml_service active - "$E1_IP:81"
    yaml_service perconn - "$E1_IP:82"
    yaml_service nowhere - "$NOWHERE_IP:80"
    yaml_service idle - "$E1_IP:84"
    cat <<'YAML'
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pool, namespace: default}
spec:
  host: pool
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: active, namespace: default}
spec:
  host: active
  trafficPolicy:
    connectionPool: {http: {http2MaxRequests: 1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: perconn, namespace: default}
spec:
  host: perconn
  trafficPolicy:
    connectionPool: {http: {maxRequestsPerConnection: 1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: nowhere, namespace: default}
spec:
  host: nowhere
  trafficPolicy:
    connectionPool: {tcp: {connectTimeout: 500ms}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: idle, namespace: default}
spec:
  host: idle
  trafficPolicy:
    connectionPool: {http: {idleTimeout: 1s}, tcp: {tcpKeepalive: {time: 30s, interval: 5s, probes: 3}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo, echo.local]
  gateways: [gw, mesh]
  http:
  - match: [{uri: {prefix: /pool/}}]
    rewrite: {uri: /}
    route: [{destination: {host: pool}}]
  - match: [{uri: {prefix: /active/}}]
    rewrite: {uri: /}
    route: [{destination: {host: active}}]
  - match: [{uri: {prefix: /perconn/}}]
    route: [{destination: {host: perconn}}]
  - match: [{uri: {prefix: /idle/}}]
    route: [{destination: {host: idle}}]
  - match: [{uri: {prefix: /ct/}}]
    route: [{destination: {host: nowhere}}]
    retries: {attempts: 0}
  - route: [{destination: {host: echo}}]
YAML
} | conf_put "$D/config/mesh.yaml"
out=$("$WEIR_BIN" validate -c "$D/config" 2>&1) || fail "weir validate refuses the test's config: $out"

policy_pods || fail "pods"
pod_add e1 "$E1_IP" || fail "pod e1"
echo_start e1 p1 "$E1_IP:80"
echo_start e1 p2 "$E1_IP:81"
echo_start e1 p3 "$E1_IP:82"
echo_start e1 e "$E1_IP:83"
echo_start e1 i "$E1_IP:84"
gateway_start gw "$D/config" "$D/gateway.log" "$D/access.log"
GW=$GW_PID
sidecar_start mclient app=sleep sleep "$D/config"
SC=$SIDECAR_PID

OVERFLOW_BODY="upstream connect error or disconnect/reset before headers. reset reason: overflow"

# burst VIA PATH N TAG: N concurrent GETs of PATH?TAG-i (curl -Z, one connection each); writes
# "STATUS TIME_S OVERLOADED_HEADER" per request to $D/burst-TAG.out and the bodies to
# $D/burst-TAG-i.body; sets BURST_MS to the time the whole burst took.
burst() {
    local via=$1 path=$2 n=$3 tag=$4 i t0
    local -a args=()
    for ((i = 1; i <= n; i++)); do
        args+=(-o "$D/burst-$tag-$i.body" "$(via_url "$via" "$path?$tag-$i")")
    done
    t0=$(date +%s%N)
    via_curl "$via" -s -Z --parallel-immediate --parallel-max "$n" --max-time 20 \
        -w '%{http_code} %{time_total} %header{x-envoy-overloaded}\n' "${args[@]}" >"$D/burst-$tag.out" || true
    BURST_MS=$((($(date +%s%N) - t0) / 1000000))
}

for via in gw mesh; do
    access=$(via_access "$via")
    say "[$via] maxConnections 1 + http1MaxPendingRequests 1: of 20 concurrent requests some get 503 UO at once, the rest 200 (T4)"
    burst "$via" /pool/delay/1000 20 "pool-$via"
    n200=$(awk '$1 == 200' "$D/burst-pool-$via.out" | wc -l)
    n503=$(awk '$1 == 503' "$D/burst-pool-$via.out" | wc -l)
    echo "   200: $n200, 503: $n503, all answered in $BURST_MS ms"
    check "[$via] answers" "$(wc -l <"$D/burst-pool-$via.out")" 20
    ((n200 + n503 == 20)) || flunk "[$via] answers other than 200 and 503: $(awk '$1 != 200 && $1 != 503' "$D/burst-pool-$via.out" | head -n 3)"
    ((n503 >= 1)) || flunk "[$via] no request of 20 overflowed maxConnections 1 + http1MaxPendingRequests 1"
    ((n200 >= 1)) || flunk "[$via] no request of 20 got through"
    ((BURST_MS < 6000)) || flunk "[$via] the burst took $BURST_MS ms: a stall"

    say "[$via] each overflow 503 has x-envoy-overloaded: true, Envoy's overflow body, flag UO, and came at once"
    check "[$via] 503s without x-envoy-overloaded: true" \
        "$(awk '$1 == 503 && $3 != "true"' "$D/burst-pool-$via.out" | wc -l)" 0
    check "[$via] 503s that waited 0.5 s or more" "$(awk '$1 == 503 && $2 >= 0.5' "$D/burst-pool-$via.out" | wc -l)" 0
    bodies=0
    for f in "$D"/burst-pool-"$via"-*.body; do
        [[ $(cat "$f") == "$OVERFLOW_BODY" ]] && bodies=$((bodies + 1))
    done
    check "[$via] bodies that are Envoy's overflow body" "$bodies" "$n503"
    sleep 0.3
    check "[$via] 503 UO access-log lines" "$(grep -c "\"GET /pool/delay/1000?pool-$via-[0-9]* HTTP/1.1\" 503 UO " "$access" || true)" "$n503"

    say "[$via] an overflow is never retried: the backend saw exactly the requests that got 200"
    check "[$via] requests the backend saw" "$(requests_of p1 "^GET /delay/1000\?pool-$via-")" "$n200"

    say "[$via] sequential requests under the same limits all get 200 (T4)"
    for i in 1 2 3 4 5; do
        code=$(via_curl "$via" -s -o /dev/null -w '%{http_code}' --max-time 5 "$(via_url "$via" "/pool/delay/50?seq-$via-$i")" || true)
        check "[$via] sequential request $i" "$code" 200
    done

    say "[$via] http2MaxRequests 1 caps active requests: of 5 concurrent, some get 503 UO, some 200"
    burst "$via" /active/delay/1000 5 "active-$via"
    n200=$(awk '$1 == 200' "$D/burst-active-$via.out" | wc -l)
    n503=$(awk '$1 == 503 && $3 == "true"' "$D/burst-active-$via.out" | wc -l)
    echo "   200: $n200, 503 overloaded: $n503"
    ((n200 >= 1 && n503 >= 1 && n200 + n503 == 5)) ||
        flunk "[$via] 5 concurrent requests with http2MaxRequests 1 gave $n200 x 200 and $n503 x 503 overloaded"

    say "[$via] maxRequestsPerConnection 1: every request comes on a new upstream connection"
    urls=()
    for i in $(seq 1 10); do urls+=("$(via_url "$via" "/perconn/$via/$i")"); done
    via_curl "$via" -s --max-time 20 "${urls[@]}" >/dev/null || true
    check "[$via] requests the backend saw" "$(requests_of p3 "^GET /perconn/$via/")" 10
    check "[$via] requests that were not the first on their connection" \
        "$(grep "^GET /perconn/$via/" "$D/requests-p3.log" | grep -vc ' conn_req=1$' || true)" 0
    urls=()
    for i in $(seq 1 10); do urls+=("$(via_url "$via" "/keep/$via/$i")"); done
    via_curl "$via" -s --max-time 20 "${urls[@]}" >/dev/null || true
    reused=$(grep "^GET /keep/$via/" "$D/requests-e.log" | grep -vc ' conn_req=1$' || true)
    ((reused > 0)) || flunk "[$via] without the limit the proxy never reused an upstream connection (the measurement is void)"

    say "[$via] tcp.connectTimeout 500ms: an address nobody answers gives 503 UF after about 0.5 s"
    t0=$(date +%s%N)
    out=$(via_curl "$via" -s --max-time 15 -w ' %{http_code}' "$(via_url "$via" "/ct/$via")" || true)
    ms=$((($(date +%s%N) - t0) / 1000000))
    echo "   '$out' after $ms ms"
    [[ $out == *" 503" ]] || flunk "[$via] /ct/ gave '$out'"
    ((ms >= 400 && ms < 1500)) || flunk "[$via] the connect timeout took $ms ms, want about 500"
    access_line "\"GET /ct/$via HTTP/1.1\" 503 UF" "$access" 3 >/dev/null || flunk "[$via] no 503 UF access-log line for /ct/$via"

    say "[$via] http.idleTimeout 1s: after 2 s idle the pooled connection is gone; without it, reused"
    via_curl "$via" -s --max-time 5 -o /dev/null "$(via_url "$via" "/idle/$via/1")" || flunk "[$via] /idle/ failed"
    via_curl "$via" -s --max-time 5 -o /dev/null "$(via_url "$via" "/keep/$via/idle-1")" || flunk "[$via] /keep/ failed"
    proxy_pod=gw
    [[ $via == mesh ]] && proxy_pod=mclient
    ka=$(pod_exec "$proxy_pod" ss -tnoH state established dst "$E1_IP:84" || true)
    [[ $ka == *"timer:(keepalive,"* ]] ||
        flunk "[$via] tcpKeepalive: the pooled connection to $E1_IP:84 has no keepalive timer: '$ka'"
    sleep 2
    via_curl "$via" -s --max-time 5 -o /dev/null "$(via_url "$via" "/idle/$via/2")" || flunk "[$via] /idle/ failed"
    via_curl "$via" -s --max-time 5 -o /dev/null "$(via_url "$via" "/keep/$via/idle-2")" || flunk "[$via] /keep/ failed"
    check "[$via] the request after 2 s idle, with idleTimeout 1s" \
        "$(grep "^GET /idle/$via/2 " "$D/requests-i.log" | grep -o ' conn_req=[0-9]*$' || true)" " conn_req=1"
    conn=$(grep "^GET /keep/$via/idle-2 " "$D/requests-e.log" | grep -o ' conn_req=[0-9]*$' || true)
    [[ -n $conn && $conn != " conn_req=1" ]] ||
        flunk "[$via] without idleTimeout the connection was not reused after 2 s idle ('$conn'): the measurement is void"
done

say "the gateway and the sidecar exit 0 on SIGTERM, with no sanitizer report"
proxies_stop_clean "$GW" "$SC"
e2e_pass 83_pool_limits
