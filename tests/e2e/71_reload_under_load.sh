#!/usr/bin/env bash
# 71_reload_under_load.sh: 60 reloads in 60 s under a steady load, with zero failed requests,
# through the gateway and through a client sidecar, with one VirtualService for both.
#  - two load loops (gateway from pod client, sidecar from pod mclient) send about 20 requests a
#    second each, on keep-alive connections (a new curl, hence a new connection, every 40
#    requests), for the whole reload phase; every answer is recorded;
#  - meanwhile the VirtualService is rewritten (atomically) once a second, 60 times, cycling
#    through 100 % v1, a 50/50 split and 100 % v2; every version of it sets a response header
#    x-cfg: N-MODE on the route and x-dest: v1|v2 on each destination;
#  - each proxy logs at least 55 reloads of the 60 (the 250 ms debounce of common/reload.c
#    coalesces nothing at 1 s apart unless a proxy stalls) and rejects none;
#  - every request of both loops answers 200 (curl exit 0); each loop sent at least 800; the
#    backends saw each exactly once, on attempt 1 (no retry hid a failed attempt);
#  - every answer is consistent with the config it names: x-dest is the backend that answered
#    (x-served-by), a 100 % v1 config is only answered by v1, a 100 % v2 one only by v2; both
#    versions answered, the split configs by both; a loop never goes back to an older config
#    once it has seen a newer one, and at least 55 of the 61 configs served it requests;
#  - 2 s after the last change (100 % v2), requests through both paths go only to v2, on it;
#  - the gateway and the sidecar exit 0 on SIGTERM, with no sanitizer report.
# Pods: gw (weir gateway), client (curl, no sidecar), mclient (weir sidecar), e1 and e2
# (echo_server v1 and v2).
# shellcheck disable=SC2016,SC2119
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
ECHO_SERVER=${WEIR_ECHO_SERVER:-$WEIR_BUILD_DIR/tests/echo_server}
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"
source "$WEIR_SOURCE_DIR/tests/lib/gateway.sh"

require_root
require_cmd ip curl timeout setpriv iptables awk
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"
[[ -x $ECHO_SERVER ]] || fail "echo_server $ECHO_SERVER not found (build first)"

E1_IP=10.244.0.31
E2_IP=10.244.0.32
CHANGES=60          # config changes, one a second
MIN_RELOADS=55      # per proxy, of CHANGES
MIN_REQUESTS=800    # per load loop (about 20/s for about 62 s is expected)
MIN_CONFIGS=55      # distinct configs (of CHANGES + 1) that served each loop
LOAD_RATE=20/s
LOAD_CHUNK=40       # requests per curl process (one keep-alive connection)

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
CLUSTER_EXTRA_LOGS+=("$D/access.log")

# The load loops are this shell's own background jobs. finish_load lets each finish its
# current curl; stop_load (on every exit) ends them and their curl by PID before the cluster
# goes.
LOAD_PIDS=()
finish_load() {
    : >"$D/stop-load"
    local p
    for p in "${LOAD_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    LOAD_PIDS=()
}
stop_load() {
    [[ -n $D && -d $D ]] && : >"$D/stop-load"
    local p
    for p in "${LOAD_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${LOAD_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    LOAD_PIDS=()
}
trap 'stop_load; cluster_down' EXIT

mkdir -p "$D/config"
{
    yaml_gateway
    yaml_service echo "$POL_VIP" "$E1_IP:80:v1" "$E2_IP:80:v2"
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

# mode_of N: the routing of change N (0 is the initial config): v1, split, v2, v1, ...; the
# last change (60) is v2.
mode_of() {
    case $(($1 % 3)) in
    1) echo v1 ;;
    2) echo split ;;
    0) echo v2 ;;
    esac
}

# dest_yaml SUBSET [WEIGHT]: one route destination with its own x-dest headers.
dest_yaml() {
    printf '    - destination: {host: echo, subset: %s}\n' "$1"
    [[ -n ${2:-} ]] && printf '      weight: %s\n' "$2"
    printf '      headers: {request: {set: {x-dest: %s}}, response: {set: {x-dest: %s}}}\n' "$1" "$1"
}

# routes_yaml N: the VirtualService of change N.
routes_yaml() {
    local n=$1 mode
    mode=$(mode_of "$n")
    cat <<YAML
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo, echo.local]
  gateways: [gw, mesh]
  http:
  - headers: {response: {set: {x-cfg: "$n-$mode"}}}
    route:
YAML
    case $mode in
    v1) dest_yaml v1 ;;
    v2) dest_yaml v2 ;;
    split) dest_yaml v1 50; dest_yaml v2 50 ;;
    esac
}

# every mode is a valid config (the loop below does not wait to find out)
mkdir -p "$D/check"
cp "$D/config/mesh.yaml" "$D/check/"
for n in 1 2 3; do
    routes_yaml "$n" >"$D/check/routes.yaml"
    out=$("$WEIR_BIN" validate -c "$D/check" 2>&1) || fail "weir validate refuses change $n ($(mode_of "$n")): $out"
done
routes_yaml 0 | conf_put "$D/config/routes.yaml"

policy_pods || fail "pods"
pod_add e1 "$E1_IP" || fail "pod e1"
pod_add e2 "$E2_IP" || fail "pod e2"
echo_start e1 v1 "$E1_IP:80"
echo_start e2 v2 "$E2_IP:80"
gateway_start gw "$D/config" "$D/gateway.log" "$D/access.log"
GW=$GW_PID
sidecar_start mclient app=sleep sleep "$D/config"
SC=$SIDECAR_PID

# One line per request: status|curl exit|x-served-by|x-dest|x-cfg|new connections|URL
FMT='%{http_code}|%{exitcode}|%header{x-served-by}|%header{x-dest}|%header{x-cfg}|%{num_connects}|%{url_effective}\n'

# probe VIA N TAG: N sequential requests on one connection, lines as FMT in $D/probe-TAG.out.
probe() {
    local via=$1 n=$2 tag=$3 i
    local -a args=()
    for ((i = 1; i <= n; i++)); do args+=(-o /dev/null "$(via_url "$via" "/probe/$tag/$i")"); done
    via_curl "$via" -s --max-time 10 -w "$FMT" "${args[@]}" >"$D/probe-$tag.out" 2>&1 || true
}
# answers TAG: how many answers probe TAG got of each kind, as "COUNT x status|exit|by|dest|cfg".
answers() { cut -d'|' -f1-5 "$D/probe-$1.out" | sort | uniq -c | awk '{ printf "%s%s x %s", sep, $1, $2; sep = ", " }'; }

for via in gw mesh; do
    say "[$via] before the reloads, the initial config (100 % v2) answers"
    probe "$via" 5 "init-$via"
    check "[$via] answers of the initial config" "$(answers "init-$via")" "5 x 200|0|v2|v2|0-v2"
done

# load_loop VIA OUT: requests through VIA at LOAD_RATE, LOAD_CHUNK per curl process, until
# $D/stop-load exists (or 120 s, or the state dir is gone); lines as FMT in OUT, curl's
# messages in OUT.err.
load_loop() {
    local via=$1 out=$2 chunk=0 i cpid=""
    local -a args
    trap '[[ -n $cpid ]] && kill -TERM "$cpid" 2>/dev/null; exit 0' TERM
    local deadline=$((SECONDS + 120))
    while [[ -d $D && ! -e $D/stop-load ]] && ((SECONDS < deadline)); do
        chunk=$((chunk + 1))
        args=()
        for ((i = 1; i <= LOAD_CHUNK; i++)); do
            args+=(-o /dev/null "$(via_url "$via" "/load/$via/$chunk/$i")")
        done
        via_curl "$via" -sS --max-time 10 --rate "$LOAD_RATE" -w "$FMT" "${args[@]}" >>"$out" 2>>"$out.err" &
        cpid=$!
        wait "$cpid" || true
        cpid=""
    done
}

say "steady load through the gateway and the sidecar while the VirtualService changes $CHANGES times, once a second"
rm -f "$D/stop-load"
: >"$D/load-gw.out"
: >"$D/load-mesh.out"
load_loop gw "$D/load-gw.out" &
LOAD_PIDS+=($!)
load_loop mesh "$D/load-mesh.out" &
LOAD_PIDS+=($!)
sleep 1
read -ra marks0 <<<"$(reload_marks)"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
t0=$(now_ms)
last=$t0
for ((n = 1; n <= CHANGES; n++)); do
    # on schedule (t0 + n s), but never closer than 0.6 s to the previous write, so that a late
    # write does not land inside the debounce of the one before
    target=$((t0 + n * 1000))
    ((target >= last + 600)) || target=$((last + 600))
    wait_ms=$((target - $(now_ms)))
    ((wait_ms > 0)) && sleep "$(printf '%d.%03d' $((wait_ms / 1000)) $((wait_ms % 1000)))"
    ((n == CHANGES)) && marks_last=$(reload_marks)
    routes_yaml "$n" | conf_put "$D/config/routes.yaml" || fail "cannot write change $n"
    last=$(now_ms)
done
phase_ms=$((last - t0))
echo "   $CHANGES changes written in $phase_ms ms"
((phase_ms <= 65000)) || flunk "the $CHANGES changes took $phase_ms ms to write, more than 65 s"

say "2 s after the last change (100 % v2), both paths answer only from v2, on the last config"
reload_wait "$marks_last" 2 || flunk "the proxies did not reload the last change within 2 s"
wait_ms=$((last + 2000 - $(now_ms)))
((wait_ms > 0)) && sleep "$(printf '%d.%03d' $((wait_ms / 1000)) $((wait_ms % 1000)))"
for via in gw mesh; do
    probe "$via" 20 "final-$via"
    check "[$via] answers 2 s after the last change" "$(answers "final-$via")" "20 x 200|0|v2|v2|$CHANGES-v2"
done
sleep 1 # the loops go on a little on the last config
finish_load

say "every proxy logged at least $MIN_RELOADS reloads of the $CHANGES changes, and rejected none"
read -ra marks1 <<<"$(reload_marks)"
for i in "${!PROXY_LOGS[@]}"; do
    ok=$((${marks1[$i]%/*} - ${marks0[$i]%/*}))
    bad=$((${marks1[$i]#*/} - ${marks0[$i]#*/}))
    echo "   ${PROXY_LOGS[$i]##*/}: $ok reloads, $bad rejected"
    ((ok >= MIN_RELOADS)) || flunk "${PROXY_LOGS[$i]} logged $ok reloads of $CHANGES changes, fewer than $MIN_RELOADS"
    ((bad == 0)) || flunk "${PROXY_LOGS[$i]} rejected $bad reloads: $(grep -a 'error: config reload' "${PROXY_LOGS[$i]}" | head -n 4)"
done

# summary OUT: "TOTAL FAILED INCONSISTENT V1 V2 SPLIT_V1 SPLIT_V2 CONFIGS BACKWARDS CONNECTS"
summary() {
    awk -F'|' '
        {
            total++
            if ($1 != "200" || $2 != "0") { failed++; next }
            cfg = $5; n = cfg; sub(/-.*/, "", n); mode = cfg; sub(/^[0-9]+-/, "", mode)
            if (cfg !~ /^[0-9]+-(v1|v2|split)$/ || $3 != $4 ||
                (mode == "v1" && $3 != "v1") || (mode == "v2" && $3 != "v2") ||
                ($3 != "v1" && $3 != "v2")) bad++
            if ($3 == "v1") v1++
            if ($3 == "v2") v2++
            if (mode == "split" && $3 == "v1") sv1++
            if (mode == "split" && $3 == "v2") sv2++
            if (!(cfg in seen)) { seen[cfg] = 1; configs++ }
            if (n + 0 < max) back++
            if (n + 0 > max) max = n + 0
            conns += $6
        }
        END { printf "%d %d %d %d %d %d %d %d %d %d\n", total, failed, bad, v1, v2, sv1, sv2, configs, back, conns }
    ' "$1"
}

# show_failures VIA OUT: the first failed requests, the proxy's non-200 access-log lines and its
# warnings and errors.
show_failures() {
    local via=$1 out=$2 log=$D/gateway.log
    [[ $via == mesh ]] && log=$D/sidecar-mclient.log
    echo "   first failed requests (status|curl exit|x-served-by|x-dest|x-cfg|connects|url):"
    awk -F'|' '$1 != "200" || $2 != "0"' "$out" | head -n 5 | sed 's/^/     /'
    [[ -s $out.err ]] && { echo "   curl said:"; head -n 5 "$out.err" | sed 's/^/     /'; }
    echo "   access-log lines of $(via_access "$via") other than 200:"
    grep -v '" 200 ' "$(via_access "$via")" | grep '/load/' | head -n 5 | sed 's/^/     /' || true
    echo "   warnings and errors in $log:"
    grep -aiE 'warn|error' "$log" | grep -v 'config reload:' | head -n 10 | sed 's/^/     /' || true
}

for via in gw mesh; do
    out=$D/load-$via.out
    read -r total failed bad v1 v2 sv1 sv2 configs back conns <<<"$(summary "$out")"
    echo "   [$via] $total requests on $conns connections: v1 $v1, v2 $v2 (in split configs v1 $sv1, v2 $sv2), $configs configs seen, $failed failed"

    say "[$via] the load loop sent at least $MIN_REQUESTS requests, and none failed"
    ((total >= MIN_REQUESTS)) || flunk "[$via] the load loop sent only $total requests, fewer than $MIN_REQUESTS"
    if ((failed > 0)); then
        show_failures "$via" "$out"
        flunk "[$via] $failed of $total requests failed during the reloads"
    fi
    # no failure hidden by a retry either: the backends saw each request once, on attempt 1
    seen_once=$(cat "$D/requests-v1.log" "$D/requests-v2.log" | grep -E "^GET /load/$via/" |
        grep -c ' attempt=1 ' || true)
    seen_all=$(cat "$D/requests-v1.log" "$D/requests-v2.log" | grep -cE "^GET /load/$via/" || true)
    check "[$via] load requests the backends saw (all, and on the first attempt)" "$seen_all $seen_once" "$total $total"

    say "[$via] every answer matches the config that routed it, and the routing really changed"
    if ((bad > 0)); then
        echo "   first inconsistent answers (status|curl exit|x-served-by|x-dest|x-cfg|connects|url):"
        awk -F'|' '$1 == "200" && $2 == "0" {
            mode = $5; sub(/^[0-9]+-/, "", mode)
            if ($5 !~ /^[0-9]+-(v1|v2|split)$/ || $3 != $4 || (mode != "split" && $3 != mode)) print
        }' "$out" | head -n 5 | sed 's/^/     /'
        flunk "[$via] $bad answers do not match the config named in their x-cfg"
    fi
    ((v1 > 0 && v2 > 0)) || flunk "[$via] answers from v1 $v1, from v2 $v2: the routing never changed"
    ((sv1 > 0 && sv2 > 0)) || flunk "[$via] the 50/50 configs were answered by v1 $sv1, v2 $sv2 times"
    ((configs >= MIN_CONFIGS)) ||
        flunk "[$via] only $configs of the $((CHANGES + 1)) configs served the loop, fewer than $MIN_CONFIGS"
    check "[$via] requests served by an older config than an earlier request" "$back" 0
done

say "the gateway and the sidecar exit 0 on SIGTERM, with no sanitizer report"
proxies_stop_clean "$GW" "$SC"
e2e_pass 71_reload_under_load
