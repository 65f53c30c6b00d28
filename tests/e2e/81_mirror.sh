#!/usr/bin/env bash
# 81_mirror.sh: request mirroring (istio-semantics.md 2.8, S1, S7, T2), through the gateway and
# through a client sidecar, with one VirtualService for both.
#  - the v2 shadow receives a copy of each v1 request: same method, path, body and x-request-id,
#    Host `<authority>-shadow` (before any port); the client sees only v1;
#  - the `mirrors` list and the legacy `mirrorPercent` mirror too, mirrorPercentage 0 does not;
#  - mirrorPercentage 50 mirrors about half (within 10 points over 200 requests);
#  - a 3 MiB POST arrives intact at the primary and at the shadow (a shadow may fall up to
#    4 MiB behind, common/proxy.c SHADOW_BURST_BACKLOG; past that it is abandoned, as Envoy
#    abandons a shadow past its buffer limit, so a bigger body may not arrive);
#  - a shadow nobody answers (an address with no pod; a backend that never responds) leaves the
#    primary's latency as it is without a mirror;
#  - a shadow that stops reading does not hold the primary back: a 128 MiB POST still reaches
#    the primary whole and promptly, and the proxy's memory stays bounded (the copy is dropped,
#    and counted in the admin /stats);
#  - turning mirroring on and off by editing the YAML while curl loops run through both paths:
#    the shadow starts and stops receiving, the loops see only v1 and no error;
#  - `weir gateway --no-shadow-host-suffix` keeps the Host as it is (Istio 1.28+).
# Pods: gw (weir gateway), client (curl), mclient (weir sidecar), e1 (echo_server v1),
# e2 (echo_server v2, the shadow), e3 (echo_server that never answers), e4 (echo_server that
# never reads); 10.244.0.99 has no pod.
# shellcheck disable=SC2016,SC2119
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
ECHO_SERVER=${WEIR_ECHO_SERVER:-$WEIR_BUILD_DIR/tests/echo_server}
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"
source "$WEIR_SOURCE_DIR/tests/lib/gateway.sh"

require_root
require_cmd ip curl timeout setpriv iptables sha256sum
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"
[[ -x $ECHO_SERVER ]] || fail "echo_server $ECHO_SERVER not found (build first)"

E1_IP=10.244.0.31
E2_IP=10.244.0.32
E3_IP=10.244.0.33
E4_IP=10.244.0.34
NOWHERE_IP=10.244.0.99

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
CLUSTER_EXTRA_LOGS+=("$D/access.log")
mkdir -p "$D/config"
{
    yaml_gateway
    yaml_service echo "$POL_VIP" "$E1_IP:80:v1" "$E2_IP:80:v2"
    yaml_service hang - "$E3_IP:80"
    yaml_service hole - "$NOWHERE_IP:80"
    yaml_service stall - "$E4_IP:80"
    cat <<'YAML'
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
YAML
} | conf_put "$D/config/mesh.yaml"

# routes_yaml on|off: the VirtualService; the last argument toggles the mirror of /t/.
routes_yaml() {
    cat <<'YAML'
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo, echo.local]
  gateways: [gw, mesh]
  http:
  - match: [{uri: {prefix: /m/}}]
    route: [{destination: {host: echo, subset: v1}}]
    mirror: {host: echo, subset: v2}
  - match: [{uri: {prefix: /mlist/}}]
    route: [{destination: {host: echo, subset: v1}}]
    mirrors: [{destination: {host: echo, subset: v2}, percentage: {value: 100}}]
  - match: [{uri: {prefix: /mlegacy/}}]
    route: [{destination: {host: echo, subset: v1}}]
    mirror: {host: echo, subset: v2}
    mirrorPercent: 100
  - match: [{uri: {prefix: /m0/}}]
    route: [{destination: {host: echo, subset: v1}}]
    mirror: {host: echo, subset: v2}
    mirrorPercentage: {value: 0}
  - match: [{uri: {prefix: /m50/}}]
    route: [{destination: {host: echo, subset: v1}}]
    mirror: {host: echo, subset: v2}
    mirrorPercentage: {value: 50}
  - match: [{uri: {prefix: /hole/}}]
    route: [{destination: {host: echo, subset: v1}}]
    mirror: {host: hole}
  - match: [{uri: {prefix: /hang/}}]
    route: [{destination: {host: echo, subset: v1}}]
    mirror: {host: hang}
  - match: [{uri: {prefix: /stall/}}]
    route: [{destination: {host: echo, subset: v1}}]
    mirror: {host: stall}
  - match: [{uri: {prefix: /t/}}]
    route: [{destination: {host: echo, subset: v1}}]
YAML
    if [[ $1 == on ]]; then
        echo "    mirror: {host: echo, subset: v2}"
    fi
    echo "  - route: [{destination: {host: echo, subset: v1}}]"
}
routes_yaml off | conf_put "$D/config/routes.yaml"
out=$("$WEIR_BIN" validate -c "$D/config" 2>&1) || fail "weir validate refuses the test's config: $out"
routes_yaml on | conf_put "$D/on.yaml"
out=$("$WEIR_BIN" validate -c "$D/config/mesh.yaml" -c "$D/on.yaml" 2>&1) ||
    fail "weir validate refuses the mirror-on config: $out"

policy_pods || fail "pods"
pod_add e1 "$E1_IP" || fail "pod e1"
pod_add e2 "$E2_IP" || fail "pod e2"
pod_add e3 "$E3_IP" || fail "pod e3"
pod_add e4 "$E4_IP" || fail "pod e4"
echo_start e1 v1 "$E1_IP:80"
echo_start e2 v2 "$E2_IP:80"
echo_start e3 hang "$E3_IP:80" --hang-all
echo_start e4 stall "$E4_IP:80" --stall-all
gateway_start gw "$D/config" "$D/gateway.log" "$D/access.log"
GW=$GW_PID
sidecar_start mclient app=sleep sleep "$D/config"
SC=$SIDECAR_PID

authority_of() { case $1 in gw) echo echo.local ;; mesh) echo echo ;; esac; }

# shadow_line RID [TIMEOUT]: waits (default 3 s) for the shadow's log line of that request id.
shadow_line() {
    local rid=$1 timeout=${2:-3} deadline line
    deadline=$(($(date +%s%N) / 1000000 + timeout * 1000))
    while (($(date +%s%N) / 1000000 < deadline)); do
        line=$(grep -m 1 -- " x-request-id=$rid " "$D/requests-v2.log" || true)
        [[ -n $line ]] && { printf '%s\n' "$line"; return 0; }
        sleep 0.05
    done
    return 1
}
# field NAME LINE: the value of NAME=... in a request-log line or a body.
field() { grep -o -- "\(^\| \)$1=[^ ]*" <<<"$2" | head -n 1 | sed "s/^ *$1=//"; }

# settled_count NAME REGEX: the number of matching requests echo_server NAME logged, once it has
# not changed for 0.5 s (at most 5 s): shadows arrive after their primaries.
settled_count() {
    local last=-1 n i
    for i in $(seq 1 50); do
        n=$(requests_of "$1" "$2")
        [[ $n == "$last" && $i -gt 5 ]] && break
        last=$n
        sleep 0.1
    done
    printf '%s\n' "$n"
}

abc_sha=$(printf abc | sha256sum | cut -d' ' -f1)
for via in gw mesh; do
    auth=$(authority_of "$via")
    say "[$via] the v2 shadow gets the same method, path, body and x-request-id, with Host $auth-shadow; the client sees v1 (T2)"
    resp=$(via_curl "$via" -sS --max-time 10 -H "x-request-id: rid-$via-post" --data-binary abc \
        "$(via_url "$via" /m/anything?q=1)") || flunk "[$via] POST /m/anything failed"
    check "[$via] answered by" "$(field name "$resp")" v1
    check "[$via] body bytes at the primary" "$(field body_bytes "$resp")" 3
    if line=$(shadow_line "rid-$via-post"); then
        check "[$via] shadow request line" "${line%% host=*}" "POST /m/anything?q=1"
        check "[$via] shadow Host" "$(field host "$line")" "$auth-shadow"
        check "[$via] shadow body bytes" "$(field body_bytes "$line")" 3
        check "[$via] shadow body SHA-256" "$(field body_sha256 "$line")" "$abc_sha"
    else
        flunk "[$via] the v2 shadow never received request rid-$via-post"
    fi
    check "[$via] requests of rid-$via-post at the primary" "$(requests_of v1 " x-request-id=rid-$via-post ")" 1

    say "[$via] the mirrors list and the legacy mirrorPercent mirror too; mirrorPercentage 0 does not (S7)"
    for path in /mlist/ /mlegacy/ /m0/; do
        rid="rid-$via-${path//\//}"
        resp=$(via_curl "$via" -sS --max-time 10 -H "x-request-id: $rid" "$(via_url "$via" "${path}x")") ||
            flunk "[$via] GET ${path}x failed"
        check "[$via] ${path}x answered by" "$(field name "$resp")" v1
    done
    shadow_line "rid-$via-mlist" >/dev/null || flunk "[$via] the mirrors list form did not mirror"
    shadow_line "rid-$via-mlegacy" >/dev/null || flunk "[$via] mirror with mirrorPercent 100 did not mirror"
    if shadow_line "rid-$via-m0" 1 >/dev/null; then flunk "[$via] mirrorPercentage 0 mirrored"; fi

    say "[$via] a 3 MiB POST arrives intact at the primary and at the shadow"
    [[ -f $D/big.bin ]] || head -c $((3 * 1024 * 1024)) /dev/urandom >"$D/big.bin"
    big_sha=$(sha256sum <"$D/big.bin" | cut -d' ' -f1)
    resp=$(via_curl "$via" -sS --max-time 20 -H "x-request-id: rid-$via-big" --data-binary @"$D/big.bin" \
        "$(via_url "$via" /m/big)") || flunk "[$via] the 3 MiB POST failed"
    check "[$via] 3 MiB POST answered by" "$(field name "$resp")" v1
    check "[$via] primary body bytes" "$(field body_bytes "$resp")" 3145728
    check "[$via] primary body SHA-256" "$(field body_sha256 "$resp")" "$big_sha"
    if line=$(shadow_line "rid-$via-big" 5); then
        check "[$via] shadow body bytes of the 3 MiB POST" "$(field body_bytes "$line")" 3145728
        check "[$via] shadow body SHA-256 of the 3 MiB POST" "$(field body_sha256 "$line")" "$big_sha"
    elif shadow_line "rid-$via-big" 10 >/dev/null; then
        flunk "[$via] the shadow received the 3 MiB POST only 5 to 15 s after the primary answered"
    else
        flunk "[$via] the shadow never received the 3 MiB POST (15 s)"
    fi

    say "[$via] mirrorPercentage 50 mirrors about half: within 10 points over 200 requests"
    # 10 points is 2.8 sigma: a fair coin misses once in about 200 samples, so a miss draws a
    # second sample of 200, which decides.
    for try in 1 2; do
        urls=()
        for i in $(seq 1 200); do urls+=("$(via_url "$via" "/m50/$via-$try/$i")"); done
        via_curl "$via" -s --max-time 60 "${urls[@]}" >"$D/m50.out" || true
        check "[$via] /m50/ answers from v1" "$(grep -c '^name=v1$' "$D/m50.out" || true)" 200
        n=$(settled_count v2 "^GET /m50/$via-$try/")
        echo "   $n of 200 mirrored"
        ((n >= 80 && n <= 120)) && break
        if ((try == 2)); then
            flunk "[$via] mirrorPercentage 50 mirrored $n of 200, twice outside 80..120"
        else
            echo "   outside 80..120: a second sample of 200 decides"
        fi
    done
done

say "[gw] a Host with a port gets -shadow before the port"
resp=$(via_curl gw -sS --max-time 10 -H 'Host: echo.local:80' -H 'x-request-id: rid-gw-port' "$(via_url gw /m/port)") ||
    flunk "GET /m/port with Host echo.local:80 failed"
if line=$(shadow_line rid-gw-port); then
    check "shadow Host for Host echo.local:80" "$(field host "$line")" "echo.local-shadow:80"
else
    flunk "the shadow never received rid-gw-port"
fi

# latencies VIA PATH N: N GETs on one connection; prints each time_total (s) and the name.
latencies() {
    local via=$1 path=$2 n=$3 i
    local -a args=()
    for ((i = 0; i < n; i++)); do args+=(-o /dev/null "$(via_url "$via" "$path$i")"); done
    via_curl "$via" -s --max-time 60 -w '%{time_total} %{http_code} %header{x-served-by}\n' "${args[@]}" || true
}

for via in gw mesh; do
    say "[$via] a shadow nobody answers leaves the primary's median latency as it is without a mirror"
    latencies "$via" /plain/ 50 >"$D/lat-plain.out"
    base=$(cut -d' ' -f1 <"$D/lat-plain.out" | median)
    for kind in hole hang; do
        latencies "$via" "/$kind/" 50 >"$D/lat-$kind.out"
        check "[$via] /$kind/ answers that are not '200 v1'" \
            "$(awk '$2 != 200 || $3 != "v1"' "$D/lat-$kind.out" | wc -l)" 0
        check "[$via] /$kind/ answers" "$(wc -l <"$D/lat-$kind.out")" 50
        med=$(cut -d' ' -f1 <"$D/lat-$kind.out" | median)
        echo "   median without a mirror ${base}s, with a mirror to $kind ${med}s"
        awk -v m="$med" -v b="$base" 'BEGIN { exit !(m <= b + 0.05) }' ||
            flunk "[$via] mirroring to $kind raised the median latency from ${base}s to ${med}s"
    done
    n=$(requests_of hang "^GET /hang/")
    ((n > 0)) || flunk "[$via] the never-answering shadow received no /hang/ request: nothing was mirrored"
done

# rss_kb PID: a process's VmRSS in kB.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
head -c $((128 * 1024 * 1024)) /dev/urandom >"$D/128m.bin"
sha128=$(sha256sum <"$D/128m.bin" | cut -d' ' -f1)
for via in gw mesh; do
    say "[$via] a shadow that stops reading does not hold back a 128 MiB POST, and the proxy's memory stays bounded"
    if [[ $via == gw ]]; then pid=$GW; else pid=$SC; fi
    base=$(rss_kb "$pid")
    t0=$(date +%s%N)
    via_curl "$via" -sS --max-time 15 --data-binary @"$D/128m.bin" "$(via_url "$via" /stall/big)" >"$D/stall.out" 2>&1 &
    up=$!
    max=0
    while kill -0 "$up" 2>/dev/null; do
        r=$(rss_kb "$pid")
        ((r > max)) && max=$r
        sleep 0.1
    done
    wait "$up" || true
    ms=$((($(date +%s%N) - t0) / 1000000))
    resp=$(cat "$D/stall.out")
    echo "   answered after $ms ms; proxy VmRSS before ${base} kB, max ${max} kB"
    check "[$via] 128 MiB POST answered by" "$(field name "$resp")" v1
    check "[$via] primary body bytes of the 128 MiB POST" "$(field body_bytes "$resp")" 134217728
    check "[$via] primary body SHA-256 of the 128 MiB POST" "$(field body_sha256 "$resp")" "$sha128"
    ((ms < 10000)) || flunk "[$via] the 128 MiB POST took $ms ms: the stalled shadow held it back"
    ((max < base + 64 * 1024)) ||
        flunk "[$via] the proxy's VmRSS grew from ${base} kB to ${max} kB during the POST (limit: 64 MiB more)"
    admin_pod=gw
    [[ $via == mesh ]] && admin_pod=mclient
    stat="cluster.outbound|80||stall.default.svc.cluster.local.mirror.abandoned_total"
    n=$(pod_exec "$admin_pod" curl -s --max-time 3 http://127.0.0.1:15000/stats | grep -F "$stat: " | sed 's/.*: //' || true)
    ((${n:-0} >= 1)) || flunk "[$via] the abandoned shadow is not counted: /stats $stat is '${n}'"
done
rm -f "$D/128m.bin"

say "turning the mirror on and off in the YAML while curl loops run: the shadow follows, the loops see only v1"
loop_args() {
    local via=$1 i
    LOOP=()
    for i in $(seq 1 200); do LOOP+=(-o /dev/null "$(via_url "$via" "/t/$via/$i")"); done
}
loop_args gw
via_curl gw -s --max-time 60 --rate 25/s -w '%{http_code} %header{x-served-by}\n' "${LOOP[@]}" >"$D/loop-gw.out" 2>&1 &
loop_gw=$!
loop_args mesh
via_curl mesh -s --max-time 60 --rate 25/s -w '%{http_code} %header{x-served-by}\n' "${LOOP[@]}" >"$D/loop-mesh.out" 2>&1 &
loop_mesh=$!
sleep 1
check "shadow requests of /t/ before the mirror is on" "$(requests_of v2 '^GET /t/')" 0
t0=$(date +%s%N)
routes_yaml on | conf_apply "$D/config/routes.yaml"
ok=0
while (($(date +%s%N) - t0 < 3000000000)); do
    if (($(requests_of v2 '^GET /t/gw/') > 0 && $(requests_of v2 '^GET /t/mesh/') > 0)); then ok=1; break; fi
    sleep 0.05
done
if ((ok)); then
    echo "   mirroring live on both paths $((($(date +%s%N) - t0) / 1000000)) ms after the edit"
else
    flunk "the shadow got no /t/ request from both paths within 3 s of turning the mirror on (gw $(requests_of v2 '^GET /t/gw/'), mesh $(requests_of v2 '^GET /t/mesh/'))"
fi
sleep 1
routes_yaml off | conf_apply "$D/config/routes.yaml"
sleep 0.3 # shadows already in flight may still land
before=$(requests_of v2 '^GET /t/')
sleep 1
check "shadow requests of /t/ in the second after the mirror was turned off" "$(($(requests_of v2 '^GET /t/') - before))" 0
wait "$loop_gw" || true
wait "$loop_mesh" || true
for via in gw mesh; do
    check "[$via] loop answers" "$(wc -l <"$D/loop-$via.out")" 200
    check "[$via] loop answers other than '200 v1'" "$(grep -vc '^200 v1$' "$D/loop-$via.out" || true)" 0
done

say "weir gateway --no-shadow-host-suffix mirrors with the Host unchanged (Istio 1.28+, S1)"
cluster_stop "$GW" 20 || fail "weir gateway did not exit within 20s of SIGTERM"
[[ $STOP_RC == 0 ]] || fail "weir gateway exited with status $STOP_RC on SIGTERM"
_asan_env
pod_spawn gw "$D/gateway-nosuffix.log" "${ASAN_ENV[@]}" "$WEIR_BIN" gateway -c "$D/config" \
    --labels istio=ingressgateway --namespace istio-system --access-log "$D/access.log" \
    --no-shadow-host-suffix
GW=$SPAWNED_PID
PROXY_LOGS+=("$D/gateway-nosuffix.log")
started=0
for _ in $(seq 1 100); do
    cluster_pid_alive "$GW" || break
    if timeout 1 ip netns exec "$(pod_ns gw)" bash -c 'exec 3<>/dev/tcp/127.0.0.1/80' 2>/dev/null; then
        started=1
        break
    fi
    sleep 0.1
done
if ((started)); then
    resp=$(via_curl gw -sS --max-time 10 -H 'x-request-id: rid-gw-nosuffix' "$(via_url gw /m/nosuffix)") ||
        flunk "GET /m/nosuffix failed"
    check "answered by, with --no-shadow-host-suffix" "$(field name "$resp")" v1
    if line=$(shadow_line rid-gw-nosuffix); then
        check "shadow Host with --no-shadow-host-suffix" "$(field host "$line")" echo.local
    else
        flunk "the shadow never received rid-gw-nosuffix"
    fi
else
    flunk "weir gateway --no-shadow-host-suffix does not start: $(tail -n 3 "$D/gateway-nosuffix.log")"
    GW=""
fi

say "the gateway and the sidecar exit 0 on SIGTERM, with no sanitizer report"
if [[ -n $GW ]]; then proxies_stop_clean "$GW" "$SC"; else proxies_stop_clean "$SC"; fi
e2e_pass 81_mirror
