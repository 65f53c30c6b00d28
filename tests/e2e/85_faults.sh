#!/usr/bin/env bash
# 85_faults.sh: fault injection (istio-semantics.md 2.7, S7, T7), through the gateway and through
# a client sidecar.
#  - abort 418 with percentage 100: 418, body "fault filter abort", flag FI, the upstream never
#    contacted; an abort without percentage injects nothing (200);
#  - delay 1s with percentage 100 adds at least 1 s, flag DI; a delay without percentage adds
#    nothing;
#  - delay and abort together: the abort comes after the delay, flags DI and FI;
#  - abort with percentage 50 over 200 requests aborts 50 % within 10 points, and only the others
#    reach the upstream.
# Pods: gw, client, mclient (sidecar), e1 (echo_server v1).
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

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
CLUSTER_EXTRA_LOGS+=("$D/access.log")
mkdir -p "$D/config"
{
    yaml_gateway
    yaml_service echo "$POL_VIP" "$E1_IP:80"
    cat <<'YAML'
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo, echo.local]
  gateways: [gw, mesh]
  http:
  - match: [{uri: {prefix: /abort/}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: echo}}]
  - match: [{uri: {prefix: /abortnp/}}]
    fault: {abort: {httpStatus: 418}}
    route: [{destination: {host: echo}}]
  - match: [{uri: {prefix: /fdelay/}}]
    fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}
    route: [{destination: {host: echo}}]
  - match: [{uri: {prefix: /delaynp/}}]
    fault: {delay: {fixedDelay: 1s}}
    route: [{destination: {host: echo}}]
  - match: [{uri: {prefix: /both/}}]
    fault:
      delay: {fixedDelay: 1s, percentage: {value: 100}}
      abort: {httpStatus: 418, percentage: {value: 100}}
    route: [{destination: {host: echo}}]
  - match: [{uri: {prefix: /abort50/}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 50}}}
    route: [{destination: {host: echo}}]
  - route: [{destination: {host: echo}}]
YAML
} | conf_put "$D/config/mesh.yaml"
out=$("$WEIR_BIN" validate -c "$D/config" 2>&1) || fail "weir validate refuses the test's config: $out"

policy_pods || fail "pods"
pod_add e1 "$E1_IP" || fail "pod e1"
echo_start e1 v1 "$E1_IP:80"
gateway_start gw "$D/config" "$D/gateway.log" "$D/access.log"
GW=$GW_PID
sidecar_start mclient app=sleep sleep "$D/config"
SC=$SIDECAR_PID

# timed VIA PATH: one GET; body in $D/b; sets CODE and MS.
timed() {
    local t0
    : >"$D/b"
    t0=$(date +%s%N)
    CODE=$(via_curl "$1" -s -o "$D/b" --max-time 8 -w '%{http_code}' "$(via_url "$1" "$2")" || true)
    MS=$((($(date +%s%N) - t0) / 1000000))
}

for via in gw mesh; do
    access=$(via_access "$via")
    say "[$via] abort 418 at 100 %: 418 'fault filter abort', flag FI, and the upstream is never contacted (T7)"
    timed "$via" "/abort/$via"
    check "[$via] status" "$CODE" 418
    check "[$via] body" "$(cat "$D/b")" "fault filter abort"
    access_line "\"GET /abort/$via HTTP/1.1\" 418 FI " "$access" 3 >/dev/null ||
        flunk "[$via] no '418 FI' access-log line: $(grep "/abort/$via " "$access" | head -n 1)"
    check "[$via] requests the upstream saw" "$(requests_of v1 "^GET /abort/$via ")" 0

    say "[$via] an abort without percentage injects nothing: 200 from the upstream (S7)"
    timed "$via" "/abortnp/$via"
    check "[$via] status" "$CODE" 200
    grep -q '^name=v1$' "$D/b" || flunk "[$via] the answer did not come from the upstream: $(head -c 100 "$D/b")"

    say "[$via] a 1 s delay at 100 % adds at least 1 s, flag DI"
    timed "$via" "/fdelay/$via"
    echo "   $CODE after $MS ms"
    check "[$via] status" "$CODE" 200
    ((MS >= 1000 && MS < 2500)) || flunk "[$via] the delayed request took $MS ms"
    access_line "\"GET /fdelay/$via HTTP/1.1\" 200 DI " "$access" 3 >/dev/null ||
        flunk "[$via] no '200 DI' access-log line: $(grep "/fdelay/$via " "$access" | head -n 1)"

    say "[$via] a delay without percentage adds nothing (S7)"
    timed "$via" "/delaynp/$via"
    check "[$via] status" "$CODE" 200
    ((MS < 500)) || flunk "[$via] a delay without percentage took $MS ms"

    say "[$via] delay and abort together: 418 after the delay, flags DI and FI"
    timed "$via" "/both/$via"
    echo "   $CODE after $MS ms"
    check "[$via] status" "$CODE" 418
    ((MS >= 1000 && MS < 2500)) || flunk "[$via] delay + abort took $MS ms"
    line=$(access_line "\"GET /both/$via HTTP/1.1\" 418 " "$access" 3 || true)
    [[ $line == *" 418 DI,FI "* || $line == *" 418 FI,DI "* ]] ||
        flunk "[$via] the access log does not flag DI and FI: $line"
    check "[$via] requests the upstream saw" "$(requests_of v1 "^GET /both/$via ")" 0

    say "[$via] abort at 50 % over 200 requests aborts 100 within 20, and only the rest reach the upstream"
    # 20 is 2.8 sigma: a fair coin misses once in about 200 samples, so a miss draws a second
    # sample of 200, which decides.
    for try in 1 2; do
        args=()
        for i in $(seq 1 200); do args+=(-o /dev/null "$(via_url "$via" "/abort50/$via-$try/$i")"); done
        via_curl "$via" -s --max-time 60 -w '%{http_code}\n' "${args[@]}" >"$D/abort50.out" || true
        n418=$(grep -c '^418$' "$D/abort50.out" || true)
        n200=$(grep -c '^200$' "$D/abort50.out" || true)
        echo "   418: $n418, 200: $n200"
        check "[$via] answers" "$((n418 + n200))" 200
        check "[$via] requests the upstream saw" "$(requests_of v1 "^GET /abort50/$via-$try/")" "$n200"
        ((n418 >= 80 && n418 <= 120)) && break
        if ((try == 2)); then
            flunk "[$via] abort at 50 % aborted $n418 of 200, twice outside 80..120"
        else
            echo "   outside 80..120: a second sample of 200 decides"
        fi
    done
done

say "the gateway and the sidecar exit 0 on SIGTERM, with no sanitizer report"
proxies_stop_clean "$GW" "$SC"
e2e_pass 85_faults
