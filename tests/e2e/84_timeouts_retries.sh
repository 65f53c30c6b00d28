#!/usr/bin/env bash
# 84_timeouts_retries.sh: route timeouts and retries (istio-semantics.md 2.6, S3, S4, T8, T9),
# through the gateway and through a client sidecar.
#  - timeout 1s on a 3 s backend: 504 UT "upstream request timeout" after about 1 s, not retried;
#    without a timeout the proxy waits and answers 200 (Istio turns Envoy's 15 s default off);
#  - retries {attempts: 3, retryOn: "503"} recover an endpoint that answers 503 twice; the
#    backend sees x-envoy-attempt-count 1, 2, 3; when the tries run out the last 503 is
#    returned, flag URX;
#  - Istio's default policy (no `retries`): a 503 response is not retried, a connect failure is,
#    on another endpoint (one endpoint refusing connections, one up: every request 200);
#    attempts 0 returns the first failure;
#  - perTryTimeout: a slow first try is abandoned and the retry answers; when every try is slow
#    the answer is 504 UT; the route timeout bounds all the tries together.
# Pods: gw, client, mclient (sidecar), e1 (echo_server v1), e2 (echo_server u on :80, nothing
# on :81).
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
E2_IP=10.244.0.32

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
CLUSTER_EXTRA_LOGS+=("$D/access.log")
mkdir -p "$D/config"
{
    yaml_gateway
    yaml_service echo "$POL_VIP" "$E1_IP:80"
    yaml_service pair - "$E2_IP:81" "$E2_IP:80"
    cat <<'YAML'
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo, echo.local]
  gateways: [gw, mesh]
  http:
  - match: [{uri: {prefix: /t1/}}]
    rewrite: {uri: /}
    timeout: 1s
    route: [{destination: {host: echo}}]
  - match: [{uri: {prefix: /nt/}}]
    rewrite: {uri: /}
    route: [{destination: {host: echo}}]
  - match: [{uri: {prefix: /rt/}}]
    rewrite: {uri: /}
    retries: {attempts: 3, retryOn: "503"}
    route: [{destination: {host: echo}}]
  - match: [{uri: {prefix: /rx/}}]
    rewrite: {uri: /}
    retries: {attempts: 2, retryOn: "503"}
    route: [{destination: {host: echo}}]
  - match: [{uri: {prefix: /def/}}]
    rewrite: {uri: /}
    route: [{destination: {host: echo}}]
  - match: [{uri: {prefix: /pair/}}]
    route: [{destination: {host: pair}}]
  - match: [{uri: {prefix: /pair0/}}]
    retries: {attempts: 0}
    route: [{destination: {host: pair}}]
  - match: [{uri: {prefix: /pt/}}]
    rewrite: {uri: /}
    retries: {attempts: 2, perTryTimeout: 500ms, retryOn: 5xx}
    route: [{destination: {host: echo}}]
  - match: [{uri: {prefix: /ptall/}}]
    rewrite: {uri: /}
    retries: {attempts: 1, perTryTimeout: 500ms, retryOn: 5xx}
    route: [{destination: {host: echo}}]
  - match: [{uri: {prefix: /tcover/}}]
    rewrite: {uri: /}
    timeout: 1s
    retries: {attempts: 10, perTryTimeout: 400ms, retryOn: 5xx}
    route: [{destination: {host: echo}}]
  - route: [{destination: {host: echo}}]
YAML
} | conf_put "$D/config/mesh.yaml"
out=$("$WEIR_BIN" validate -c "$D/config" 2>&1) || fail "weir validate refuses the test's config: $out"

policy_pods || fail "pods"
pod_add e1 "$E1_IP" || fail "pod e1"
pod_add e2 "$E2_IP" || fail "pod e2"
echo_start e1 v1 "$E1_IP:80"
echo_start e2 u "$E2_IP:80"
gateway_start gw "$D/config" "$D/gateway.log" "$D/access.log"
GW=$GW_PID
sidecar_start mclient app=sleep sleep "$D/config"
SC=$SIDECAR_PID

# timed VIA PATH: one GET; body in $D/b; sets CODE and MS (wall time of the request).
timed() {
    local t0
    : >"$D/b"
    t0=$(date +%s%N)
    CODE=$(via_curl "$1" -s -o "$D/b" --max-time 8 -w '%{http_code}' "$(via_url "$1" "$2")" || true)
    MS=$((($(date +%s%N) - t0) / 1000000))
}
# attempts NAME REGEX: the x-envoy-attempt-count values of the matching requests, in order.
attempts() {
    grep -E -- "$2" "$CLUSTER_DIR/requests-$1.log" | sed -n 's/.* attempt=\([^ ]*\) .*/\1/p' | paste -sd' ' -
}

for via in gw mesh; do
    access=$(via_access "$via")
    say "[$via] timeout 1s on a 3 s backend: 504 'upstream request timeout' after about 1 s, flag UT (T8)"
    timed "$via" "/t1/delay/3000?t1-$via"
    echo "   $CODE after $MS ms"
    check "[$via] status" "$CODE" 504
    check "[$via] body" "$(cat "$D/b")" "upstream request timeout"
    ((MS >= 900 && MS < 1800)) || flunk "[$via] the timeout answered after $MS ms, want about 1000"
    access_line "\"GET /t1/delay/3000\?t1-$via HTTP/1.1\" 504 UT" "$access" 3 >/dev/null ||
        flunk "[$via] no 504 UT access-log line"
    sleep 0.3
    check "[$via] tries of the timed-out request (the default policy does not retry a timeout)" \
        "$(requests_of v1 "^GET /delay/3000\?t1-$via ")" 1

    say "[$via] without a timeout the proxy waits for the 3 s backend and answers 200 (S3)"
    timed "$via" "/nt/delay/3000?nt-$via"
    echo "   $CODE after $MS ms"
    check "[$via] status" "$CODE" 200
    ((MS >= 2900)) || flunk "[$via] a 3 s answer came after $MS ms"

    say "[$via] retries {attempts: 3, retryOn: 503} recover an endpoint that answers 503 twice; attempts 1, 2, 3 (T9)"
    timed "$via" "/rt/flaky/rt-$via/2"
    check "[$via] status" "$CODE" 200
    check "[$via] x-envoy-attempt-count of the tries" "$(attempts v1 "^GET /flaky/rt-$via/2 ")" "1 2 3"

    say "[$via] when the tries run out the last 503 is returned, flag URX"
    timed "$via" "/rx/flaky/rx-$via/10"
    check "[$via] status" "$CODE" 503
    check "[$via] body (the backend's last answer)" "$(sed 's/ attempt=.*//' "$D/b")" "status=503 name=v1 flaky=rx-$via served=3"
    check "[$via] x-envoy-attempt-count of the tries" "$(attempts v1 "^GET /flaky/rx-$via/10 ")" "1 2 3"
    access_line "\"GET /rx/flaky/rx-$via/10 HTTP/1.1\" 503 URX" "$access" 3 >/dev/null ||
        flunk "[$via] no '503 URX' access-log line: $(grep "/rx/flaky/rx-$via/" "$access" | head -n 1)"

    say "[$via] the default policy (no retries field) does not retry a 503 response (S4)"
    timed "$via" "/def/flaky/def-$via/1"
    check "[$via] status" "$CODE" 503
    check "[$via] tries the backend saw" "$(requests_of v1 "^GET /flaky/def-$via/1 ")" 1
    check "[$via] x-envoy-attempt-count of the only try" "$(attempts v1 "^GET /flaky/def-$via/1 ")" 1

    say "[$via] the default policy retries a connect failure on the other endpoint: 20 of 20 requests 200 (S4, T9)"
    bad=0
    for i in $(seq 1 20); do
        timed "$via" "/pair/$via/$i"
        [[ $CODE == 200 ]] || bad=$((bad + 1))
    done
    check "[$via] requests to the pair (one endpoint refusing) that failed" "$bad" 0
    check "[$via] requests the live endpoint saw" "$(requests_of u "^GET /pair/$via/")" 20

    say "[$via] attempts: 0 returns the first failure: some of 20 requests to the pair get 503 UF"
    n503=0
    for i in $(seq 1 20); do
        timed "$via" "/pair0/$via/$i"
        [[ $CODE == 503 ]] && n503=$((n503 + 1))
    done
    echo "   $n503 of 20 got 503"
    ((n503 >= 1 && n503 <= 19)) || flunk "[$via] attempts 0 gave $n503 x 503 of 20 (want the refused endpoint's share)"
    if ((n503 >= 1)); then
        access_line "\"GET /pair0/$via/[0-9]+ HTTP/1.1\" 503 UF" "$access" 3 >/dev/null ||
            flunk "[$via] no 503 UF access-log line for /pair0/"
    fi

    say "[$via] perTryTimeout 500ms: a slow first try is abandoned and the retry answers 200"
    timed "$via" "/pt/flaky/pt-$via/1?code=200&delay=3000"
    echo "   $CODE after $MS ms"
    check "[$via] status" "$CODE" 200
    grep -q '^name=v1$' "$D/b" || flunk "[$via] the answer is not the fast second try's: $(head -c 120 "$D/b")"
    ((MS >= 450 && MS < 1500)) || flunk "[$via] the answer came after $MS ms, want about 500"
    check "[$via] x-envoy-attempt-count of the tries" "$(attempts v1 "^GET /flaky/pt-$via/1")" "1 2"

    say "[$via] when every try outlives perTryTimeout the answer is 504 UT, after the tries"
    timed "$via" "/ptall/delay/3000?ptall-$via"
    echo "   $CODE after $MS ms"
    check "[$via] status" "$CODE" 504
    ((MS >= 900 && MS < 2000)) || flunk "[$via] two 500 ms tries answered after $MS ms"
    check "[$via] tries the backend saw" "$(requests_of v1 "^GET /delay/3000\?ptall-$via ")" 2

    say "[$via] the route timeout bounds all the tries together: 504 after about 1 s, not 11 x 400 ms"
    timed "$via" "/tcover/delay/3000?tcover-$via"
    echo "   $CODE after $MS ms"
    check "[$via] status" "$CODE" 504
    ((MS >= 900 && MS < 1700)) || flunk "[$via] timeout 1s with 10 retries answered after $MS ms"
done

say "the gateway and the sidecar exit 0 on SIGTERM, with no sanitizer report"
proxies_stop_clean "$GW" "$SC"
e2e_pass 84_timeouts_retries
