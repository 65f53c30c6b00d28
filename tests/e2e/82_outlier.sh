#!/usr/bin/env bash
# 82_outlier.sh: outlier detection (istio-semantics.md 3.4, S2, S9, S11, T3), through the gateway
# and through a client sidecar. Each proxy has its own detector; the backends are shared.
#  - two endpoints, A answering 500 to everything, B healthy, consecutive5xxErrors 5, interval
#    1s, baseEjectionTime 3s, maxEjectionPercent 100: A is ejected after its 5th consecutive 5xx
#    (at most 2 more requests of slack), gets no request for baseEjectionTime, and gets requests
#    again within base + interval + 1 s; made healthy, it serves its share again;
#  - the same without maxEjectionPercent (default 10 %): with 2 hosts A is never ejected (S2);
#  - a single endpoint answering 500 with maxEjectionPercent 100: once ejected, requests get
#    503 "no healthy upstream", flag UH (minHealthPercent 0: no panic mode, S9); the proxy's
#    admin /clusters shows the ejection as it happens (health_flags::/failed_outlier_check, and
#    in ?format=json), and shows the host healthy again once baseEjectionTime is over.
# Istio's default retry policy does not retry a 500, so the client sees A's 500s until the
# ejection. ROUND_ROBIN keeps the spread of sequential requests exact.
# Pods: gw, client, mclient (sidecar), ea (echo_servers a1, told to fail at run time and to
# recover at the end, a2 and s: --fail-all 500), eb (echo_servers b1, b2: healthy).
# shellcheck disable=SC2016,SC2119
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
ECHO_SERVER=${WEIR_ECHO_SERVER:-$WEIR_BUILD_DIR/tests/echo_server}
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"
source "$WEIR_SOURCE_DIR/tests/lib/gateway.sh"

require_root
require_cmd ip curl timeout setpriv iptables jq
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"
[[ -x $ECHO_SERVER ]] || fail "echo_server $ECHO_SERVER not found (build first)"

EA_IP=10.244.0.31
EB_IP=10.244.0.32
BASE_MS=3000
INTERVAL_MS=1000

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
CLUSTER_EXTRA_LOGS+=("$D/access.log")
mkdir -p "$D/config"
{
    yaml_gateway
    yaml_service echo "$POL_VIP" "$EB_IP:80"
    yaml_service od - "$EA_IP:80" "$EB_IP:80"
    yaml_service od10 - "$EA_IP:81" "$EB_IP:81"
    yaml_service single - "$EA_IP:82"
    cat <<'YAML'
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: od, namespace: default}
spec:
  host: od
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 3s, maxEjectionPercent: 100}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: od10, namespace: default}
spec:
  host: od10
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 3s}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: single, namespace: default}
spec:
  host: single
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 3s, maxEjectionPercent: 100}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo, echo.local]
  gateways: [gw, mesh]
  http:
  - match: [{uri: {prefix: /od/}}]
    route: [{destination: {host: od}}]
  - match: [{uri: {prefix: /od10/}}]
    route: [{destination: {host: od10}}]
  - match: [{uri: {prefix: /single/}}]
    route: [{destination: {host: single}}]
  - route: [{destination: {host: echo}}]
YAML
} | conf_put "$D/config/mesh.yaml"
out=$("$WEIR_BIN" validate -c "$D/config" 2>&1) || fail "weir validate refuses the test's config: $out"

policy_pods || fail "pods"
pod_add ea "$EA_IP" || fail "pod ea"
pod_add eb "$EB_IP" || fail "pod eb"
echo_start ea a1 "$EA_IP:80"
echo_start ea a2 "$EA_IP:81" --fail-all 500
echo_start ea s "$EA_IP:82" --fail-all 500
echo_start eb b1 "$EB_IP:80"
echo_start eb b2 "$EB_IP:81"
gateway_start gw "$D/config" "$D/gateway.log" "$D/access.log"
GW=$GW_PID
sidecar_start mclient app=sleep sleep "$D/config"
SC=$SIDECAR_PID

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# one VIA PATH: one GET; prints "T_MS STATUS SERVED_BY" (T_MS when the answer came; "-" when
# no x-served-by, i.e. a local answer of the proxy).
one() {
    local out
    out=$(via_curl "$1" -s -o "$D/one.body" --max-time 5 -w '%{http_code} %header{x-served-by}' "$(via_url "$1" "$2")" || true)
    read -r code by <<<"$out"
    printf '%s %s %s\n' "$(now_ms)" "${code:-000}" "${by:--}"
}

for via in gw mesh; do
    say "[$via] A is told to answer 500 to everything (echo_server /admin/fail), B stays healthy"
    out=$(echo_admin "$EA_IP:80" 'fail?status=500')
    [[ $out == "mode=fail status=500 "* ]] || fail "echo_server a1 did not switch to failing: $out"

    say "[$via] A (500 to everything) is ejected after its 5th consecutive 5xx, with at most 2 requests of slack (T3)"
    # Sequential requests until A has answered again after a gap of 2 s or more, or 15 s.
    rec="$D/od-$via.rec"
    : >"$rec"
    t_start=$(now_ms) na=0 last_a=0 i=0
    while (($(now_ms) - t_start < 15000)); do
        i=$((i + 1))
        line=$(one "$via" "/od/$i")
        echo "$line" >>"$rec"
        read -r t code by <<<"$line"
        if [[ $by == a1 ]]; then
            na=$((na + 1))
            ((na > 5 && t - last_a >= 2000)) && break
            last_a=$t
        fi
        sleep 0.02
    done
    # The A answers: their times, and where the first gap of 2 s or more lies.
    mapfile -t ta < <(awk '$3 == "a1" { print $1 }' "$rec")
    bad=$(awk '($3 == "a1" && $2 != 500) || ($3 == "b1" && $2 != 200) || ($3 != "a1" && $3 != "b1")' "$rec" | head -n 3)
    [[ -z $bad ]] || flunk "[$via] answers other than 500 from A and 200 from B: $bad"
    gap_at=-1
    for ((k = 1; k < ${#ta[@]}; k++)); do
        if ((ta[k] - ta[k - 1] >= 2000)); then gap_at=$k; break; fi
    done
    echo "   $(wc -l <"$rec") requests, A answered ${#ta[@]}; the first gap after A's answer number $gap_at"
    if ((gap_at < 0)); then
        flunk "[$via] A was never ejected: it answered ${#ta[@]} of $(wc -l <"$rec") requests in 15 s with no pause"
    else
        ((gap_at >= 5 && gap_at <= 7)) ||
            flunk "[$via] A was ejected after $gap_at 5xx answers, want 5 (at most 7 with the slack)"

        say "[$via] the ejected A gets no request for baseEjectionTime (3 s), then gets requests again within base + interval + 1 s"
        gap=$((ta[gap_at] - ta[gap_at - 1]))
        echo "   A got no request for $gap ms"
        ((gap >= BASE_MS - 100)) || flunk "[$via] A came back after $gap ms, before baseEjectionTime ($BASE_MS ms)"
        ((gap <= BASE_MS + INTERVAL_MS + 1000)) ||
            flunk "[$via] A came back after $gap ms, later than base + interval + 1 s"
        during=$(awk -v a="${ta[gap_at - 1]}" -v b="${ta[gap_at]}" '$1 > a && $1 < b && !($2 == 200 && $3 == "b1")' "$rec" | wc -l)
        check "[$via] answers other than 200 from B while A was ejected" "$during" 0

        say "[$via] A, healthy again (/admin/ok) now that it is back, answers its share with 200"
        echo_admin "$EA_IP:80" ok >/dev/null
        rec="$D/od-$via-ok.rec"
        : >"$rec"
        for i in $(seq 1 10); do one "$via" "/od/ok-$i" >>"$rec"; done
        check "[$via] answers other than 200 after A recovered" "$(awk '$2 != 200' "$rec" | wc -l)" 0
        n=$(awk '$3 == "a1"' "$rec" | wc -l)
        ((n >= 3)) || flunk "[$via] the recovered A answered $n of 10 requests (round robin over 2 hosts)"
    fi

    say "[$via] without maxEjectionPercent (10 %), A of 2 hosts is never ejected (S2)"
    rec="$D/od10-$via.rec"
    : >"$rec"
    for i in $(seq 1 40); do one "$via" "/od10/$i" >>"$rec"; done
    na=$(awk '$3 == "a2"' "$rec" | wc -l)
    late=$(tail -n 20 "$rec" | awk '$3 == "a2"' | wc -l)
    echo "   A answered $na of 40, $late of the last 20"
    ((na >= 15 && late >= 5)) || flunk "[$via] A was ejected without maxEjectionPercent: $na of 40 answers, $late of the last 20"
    check "[$via] answers of A that were not 500" "$(awk '$3 == "a2" && $2 != 500' "$rec" | wc -l)" 0

    say "[$via] a single endpoint answering 500 is ejected, then requests get 503 UH 'no healthy upstream' (S9)"
    rec="$D/single-$via.rec"
    : >"$rec"
    for i in $(seq 1 12); do
        one "$via" "/single/$via/$i" >>"$rec"
        echo "   body: $(head -c 80 "$D/one.body")" >>"$rec.bodies"
    done
    n500=$(awk '$2 == 500 && $3 == "s"' "$rec" | wc -l)
    n503=$(awk '$2 == 503 && $3 == "-"' "$rec" | wc -l)
    echo "   500 from the endpoint: $n500, local 503: $n503"
    ((n500 >= 5 && n500 <= 7 && n500 + n503 == 12)) ||
        flunk "[$via] 12 requests to a single failing endpoint gave $n500 x 500 and $n503 x local 503; want 5 (to 7) then 503s"
    check "[$via] the last answer's body" "$(cat "$D/one.body")" "no healthy upstream"
    access_line "\"GET /single/$via/12 HTTP/1.1\" 503 UH " "$(via_access "$via")" 3 >/dev/null ||
        flunk "[$via] no '503 UH' access-log line for /single/$via/12"

    say "[$via] the proxy's admin /clusters shows the ejection, then the host healthy again"
    admin_pod=gw
    [[ $via == mesh ]] && admin_pod=mclient
    cluster="outbound|80||single.default.svc.cluster.local"
    flags=$(pod_exec "$admin_pod" curl -sS --max-time 3 http://127.0.0.1:15000/clusters |
        grep -F "$cluster::$EA_IP:82::health_flags::" || true)
    check "[$via] /clusters health_flags of the ejected host" "$flags" \
        "$cluster::$EA_IP:82::health_flags::/failed_outlier_check"
    json=$(pod_exec "$admin_pod" curl -sS --max-time 3 'http://127.0.0.1:15000/clusters?format=json')
    check "[$via] /clusters?format=json: ejected, failed_outlier_check, ejections" "$(jq -r --arg c "$cluster" \
        '.cluster_statuses[] | select(.name == $c) | .host_statuses[0] |
         "\(.outlier.ejected) \(.health_status.failed_outlier_check) \(.outlier.num_ejections)"' <<<"$json")" \
        "true true 1"
    healthy=""
    for _ in $(seq 1 50); do
        healthy=$(pod_exec "$admin_pod" curl -sS --max-time 3 http://127.0.0.1:15000/clusters |
            grep -F "$cluster::$EA_IP:82::health_flags::healthy" || true)
        [[ -n $healthy ]] && break
        sleep 0.1
    done
    [[ -n $healthy ]] || flunk "[$via] /clusters still shows the host ejected 5 s after baseEjectionTime began"
done

say "the gateway and the sidecar exit 0 on SIGTERM, with no sanitizer report"
proxies_stop_clean "$GW" "$SC"
e2e_pass 82_outlier
