#!/usr/bin/env bash
# deploy/local/demo.sh: the seed scenario on a local mesh made of network namespaces.
#
#   deploy/local/demo.sh [up]    install missing packages, build weir (Release, into build/),
#                                make a mesh CA and workload certificates (weir certs), start
#                                pods gw (weir gateway), v1 and v2 (busybox httpd) and client,
#                                each app pod with `weir iptables` and a `weir sidecar`, show
#                                /v1 and /v2 answered through the gateway and web-service from
#                                the client, all over mTLS, with the SPIFFE ID each hop saw,
#                                and port-forward 127.0.0.1:8080 on the host to the gateway.
#                                Already up? It is taken down first.
#   deploy/local/demo.sh down    remove every process, namespace and file the demo recorded.
#   deploy/local/demo.sh status  what runs.
#   deploy/local/demo.sh mirror on|off
#                                edit the running demo's VirtualService (/run/weir-demo/config/
#                                virtualservice.yaml) so that every /v1 request is also mirrored
#                                to v2 (examples/mirror.yaml), or not (the seed's file); the
#                                proxies reload it live. A curl loop through the gateway runs
#                                across the change and must see only 200 V1; then a few curls of
#                                /v1 and the shadow requests they caused in v2's sidecar access
#                                log (Host <host>-shadow).
#   deploy/local/demo.sh split N|off
#                                send N % of the mesh's web-service traffic to v2 and the rest to
#                                v1 (examples/split.yaml as /run/weir-demo/config/split.yaml), or
#                                go back to the default route; then 20 curls of
#                                http://web-service/ from the client pod and the V1/V2 counts.
#
# Environment: WEIR_DEMO_PORT (default 8080) for the port-forward; WEIR_BIN=PATH to run that binary
# instead of building build/weir; WEIR_DEMO_SKIP_PACKAGES=1 to skip the package check.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PREFIX=weir-demo
STATE=/run/weir-demo
PORT=${WEIR_DEMO_PORT:-8080}
BUILD="$REPO/build"
WEIR=${WEIR_BIN:-$BUILD/weir}

# shellcheck source=SCRIPTDIR/../../tests/lib/netns.sh
source "$REPO/tests/lib/netns.sh"
# shellcheck source=SCRIPTDIR/packages.sh
source "$HERE/packages.sh"
# shellcheck source=SCRIPTDIR/seed.sh
source "$HERE/seed.sh"

msg() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

need_root() {
    [[ $(id -u) == 0 ]] || die "run as root (it creates network namespaces): sudo $0 ${1:-}"
}

is_up() { [[ -f $STATE/prefix ]]; }

do_down() {
    need_root down
    if ! is_up; then
        if [[ -e /run/netns/$PREFIX-node ]]; then
            die "namespace $PREFIX-node exists but $STATE records nothing: not removing what this demo did not record (ip netns delete it by hand if it is a leftover)"
        fi
        msg "nothing is up"
        return 0
    fi
    cluster_load "$STATE" || die "cannot read $STATE"
    msg "taking down $PREFIX (processes, namespaces, /etc/netns dirs, $STATE)"
    WEIR_TEST_LEAVE=0 cluster_down
    msg "down"
}

do_status() {
    if ! is_up; then
        msg "not up (start it with: $0)"
        return 0
    fi
    cluster_load "$STATE" || die "cannot read $STATE"
    msg "state: $STATE"
    echo "namespaces:"
    local ns
    while read -r ns; do
        [[ -n $ns ]] || continue
        if [[ -e /run/netns/$ns ]]; then echo "  $ns"; else echo "  $ns (missing)"; fi
    done <"$STATE/namespaces"
    echo "pods:"
    local name ip
    while read -r name ip; do echo "  $name $ip"; done <"$STATE/pods"
    echo "processes:"
    local pid label state
    while read -r pid _ label; do
        if cluster_pid_alive "$pid"; then state=running; else state=exited; fi
        printf '  %-8s %-8s %-16s %s\n' "$pid" "$state" "$label" \
            "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    done <"$STATE/pids"
    if [[ -f $STATE/port ]]; then
        echo "port-forward: http://127.0.0.1:$(cat "$STATE/port")/ -> $PREFIX-gw:80"
    fi
    if [[ -f $STATE/access.log ]]; then
        echo "access log: $STATE/access.log ($(wc -l <"$STATE/access.log") lines)"
    fi
}

build() {
    if [[ -n ${WEIR_BIN:-} ]]; then
        [[ -x $WEIR ]] || die "WEIR_BIN=$WEIR is not an executable"
        msg "using $WEIR as it is"
        return 0
    fi
    msg "building weir (Release) in $BUILD"
    if ! { cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release &&
        cmake --build "$BUILD" --target weir -j "$(nproc)"; } >"$STATE.build.log" 2>&1; then
        tail -n 40 "$STATE.build.log" >&2
        die "build failed (full log: $STATE.build.log)"
    fi
    rm -f "$STATE.build.log"
}

# on_up_failure: a failed `up` shows why, then removes what it had made.
on_up_failure() {
    local rc=$?
    ((rc == 0)) && return 0
    trap - EXIT
    printf 'demo: error: bringing the demo up failed\n' >&2
    cluster_dump_logs >&2 || true
    if is_up; then
        msg "removing what was started"
        WEIR_TEST_LEAVE=0 cluster_down || true
    fi
    exit "$rc"
}

port_in_use() {
    [[ -n $(ss -Htln "sport = :$1" 2>/dev/null) ]]
}

do_up() {
    need_root
    if is_up; then
        msg "already up: taking it down first"
        do_down
    fi
    if [[ ${WEIR_DEMO_SKIP_PACKAGES:-0} != 1 ]]; then
        weir_install_packages || die "installing packages failed"
    fi
    mkdir -p "$(dirname "$STATE")"
    build
    [[ -x $WEIR ]] || die "$WEIR was not built"
    port_in_use "$PORT" && die "port 127.0.0.1:$PORT is in use on the host (set WEIR_DEMO_PORT)"

    trap on_up_failure EXIT
    cluster_up "$PREFIX" "$STATE"
    # the sidecars run as uid 1337: give them a copy of the config they can read
    local config="$STATE/config"
    mkdir -p "$config"
    cp "$HERE"/*.yaml "$config/"
    chmod -R o+rX "$config"
    msg "mesh CA and workload certificates in $STATE/certs (weir certs)"
    seed_certs "$WEIR" "$STATE/certs"
    seed_pods
    msg "sidecars: weir iptables + weir sidecar (uid 1337) in pods v1, v2 and client"
    seed_sidecars "$WEIR" "$config" --log-format json
    local access_log="$STATE/access.log"
    : >"$access_log"
    seed_gateway "$WEIR" "$config" "$access_log" --certs "$STATE/certs/gw"
    msg "waiting for httpd-v1, httpd-v2 and the gateway"
    seed_wait 30 || die "not ready"

    # Routes are in place once the gateway answers /v1 with 200.
    local deadline=$((SECONDS + 15)) code=""
    while ((SECONDS < deadline)); do
        code=$(pod_exec client curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://$SEED_GW_IP/v1" || true)
        [[ $code == 200 ]] && break
        sleep 0.3
    done
    [[ $code == 200 ]] || die "the gateway does not answer /v1 with 200 (last: '$code')"

    echo
    msg "from the client pod ($SEED_CLIENT_IP), through the gateway ($SEED_GW_IP):"
    local path body
    for path in /v1 /v2; do
        for _ in 1 2 3; do
            code=$(pod_exec client curl -sS --max-time 5 -o "$STATE/last-body" -w "%{http_code}" "http://gateway$path") ||
                die "curl http://gateway$path failed"
            body=$(cat "$STATE/last-body")
            printf "  curl http://gateway%s -> %s %s\n" "$path" "$code" "$body"
        done
    done

    echo
    msg "from the client pod, through its sidecar, to the Kubernetes-style service web-service:"
    for _ in 1 2 3 4; do
        body=$(pod_exec client curl -sS --max-time 5 http://web-service/) || die "curl http://web-service/ failed"
        printf "  curl http://web-service/ -> %s\n" "$body"
    done

    echo
    msg "mTLS: the SPIFFE IDs each hop saw (sidecar access logs, JSON):"
    sleep 0.3
    spiffe_of() { grep -o "\"$2\":\"[^\"]*\"" "$1" | tail -n 1 | cut -d'"' -f4; }
    local v1log="$STATE/sidecar-v1.access.log" clog="$STATE/sidecar-client.access.log"
    printf "  gateway -> v1:  the v1 sidecar saw client %s\n" \
        "$(grep -o '"downstream_peer_uri_san":"[^"]*/ns/istio-system/[^"]*"' "$v1log" | tail -n 1 | cut -d'"' -f4)"
    printf "  client -> web-service: the client sidecar saw server %s\n" "$(spiffe_of "$clog" upstream_peer_uri_san)"
    printf "  client -> v1:   the v1 sidecar saw client %s\n" \
        "$(grep -o '"downstream_peer_uri_san":"[^"]*sa/sleep"' "$v1log" "$STATE/sidecar-v2.access.log" | tail -n 1 | cut -d'"' -f4)"

    # kubectl port-forward, the namespace way: each connection crosses into the gateway's
    # namespace on its own; the namespaces stay unlinked. The double quotes reach socat, so the
    # colons of TCP:127.0.0.1:80 belong to the inner command, not to EXEC.
    host_spawn "$STATE/port-forward.log" socat \
        "TCP-LISTEN:$PORT,bind=127.0.0.1,fork,reuseaddr" \
        "EXEC:\"ip netns exec $PREFIX-gw socat STDIO TCP:127.0.0.1:80\""
    echo "$PORT" >"$STATE/port"
    deadline=$((SECONDS + 10))
    code=""
    while ((SECONDS < deadline)); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$PORT/v1" || true)
        [[ $code == 200 ]] && break
        sleep 0.2
    done
    [[ $code == 200 ]] || die "the port-forward 127.0.0.1:$PORT does not reach the gateway (last: '$code')"
    trap - EXIT

    cat <<EOF

demo: up. From this host:
  curl http://127.0.0.1:$PORT/v1        # This is version V1!
  curl http://127.0.0.1:$PORT/v2        # This is version V2!
  curl -i http://127.0.0.1:$PORT/       # 404 (no route)
  From the client pod: ip netns exec $PREFIX-client curl http://gateway/v1
  From the client pod: ip netns exec $PREFIX-client curl http://web-service/
  access log:   $access_log    (tail -f it)
  gateway log:  $STATE/gateway.log
  sidecars:     $STATE/sidecar-{v1,v2,client}.access.log (JSON, with the peers' SPIFFE IDs)
  certificates: $STATE/certs (mesh CA in ca/, one workload certificate per pod)
  status:       $0 status
  mirroring:    $0 mirror on    (and: mirror off)    # /v1 copied to v2 as a shadow
  splitting:    $0 split 10     (and: split off)     # 10 % of web-service to v2
  tear down:    deploy/local/demo.sh down
EOF
}

# ---- live traffic-policy changes (mirror, split) ----

need_up() {
    need_root "$1"
    is_up || die "the demo is not up (start it with: $0)"
    cluster_load "$STATE" || die "cannot read $STATE"
}

# config_put FILE: stdin to FILE atomically (a name the proxies ignore, then a rename), readable
# by the sidecars (uid 1337).
config_put() {
    local tmp="$1.tmp.$$"
    cat >"$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" "$1"
}

# reloads LOG: how many reloads a proxy has logged.
reloads() { grep -c 'config reloaded (generation' "$1" 2>/dev/null || true; }

# wait_reload LOG BEFORE: waits up to 5 s for LOG to log a reload after BEFORE; prints the
# time it took.
wait_reload() {
    local log=$1 before=$2 t0
    t0=$(date +%s%N)
    while (($(reloads "$log") <= before)); do
        if grep -q 'config reload rejected' "$log" && [[ $(grep -E 'config reload(ed| rejected)' "$log" | tail -n 1) == *rejected* ]]; then
            grep 'config reload' "$log" | tail -n 5 >&2
            die "$(basename "$log" .log) rejected the change: the previous config keeps serving"
        fi
        (($(date +%s%N) - t0 < 5000000000)) || die "$(basename "$log" .log) did not reload within 5 s (see $log)"
        sleep 0.05
    done
    echo "$((($(date +%s%N) - t0) / 1000000)) ms"
}

# shadow_lines FILE FROM: the requests in a JSON sidecar access log, from line FROM on, whose
# authority ends in -shadow, as "METHOD PATH authority=A -> STATUS".
shadow_lines() {
    tail -n "+$2" "$1" | grep '"authority":"[^"]*-shadow[":]' |
        sed -E 's/.*"method":"([^"]*)".*"path":"([^"]*)".*"response_code":([0-9]+).*"authority":"([^"]*)".*/\1 \2 authority=\4 -> \3/' || true
}

do_mirror() {
    local want=${1:-}
    [[ $want == on || $want == off ]] || die "usage: $0 mirror on|off"
    need_up "mirror $want"
    local vs="$STATE/config/virtualservice.yaml" src
    if [[ $want == on ]]; then src="$HERE/examples/mirror.yaml"; else src="$HERE/virtualservice.yaml"; fi
    [[ -f $src ]] || die "missing $src"

    if cmp -s "$src" "$vs"; then
        msg "mirroring of /v1 to v2 is already $want"
    else
        # The user's story: curl keeps running across the change and never sees an error.
        local -a urls=()
        for _ in $(seq 1 60); do urls+=("http://gateway/v1"); done
        pod_exec client curl -s --max-time 30 --rate 20/s -w '\n%{http_code}\n' "${urls[@]}" \
            >"$STATE/mirror-loop.out" 2>&1 &
        local loop=$!
        sleep 0.5
        local before took
        before=$(reloads "$STATE/gateway.log")
        config_put "$vs" <"$src" || die "cannot write $vs"
        took=$(wait_reload "$STATE/gateway.log" "$before")
        local what="deploy/local/examples/mirror.yaml"
        [[ $want == off ]] && what="the seed's deploy/local/virtualservice.yaml"
        msg "mirroring of /v1 to v2 turned $want: $vs is now $what; the gateway reloaded it after $took"
        wait "$loop" || true
        local n200 nv1
        n200=$(grep -c '^200$' "$STATE/mirror-loop.out" || true)
        nv1=$(grep -c 'This is version V1!' "$STATE/mirror-loop.out" || true)
        msg "a curl loop ran across the change: 60 requests to /v1, $n200 answered 200, $nv1 with V1 (no error: $([[ $n200 == 60 && $nv1 == 60 ]] && echo yes || echo NO))"
    fi

    echo
    local v2log="$STATE/sidecar-v2.access.log" from code body
    from=$(($(wc -l <"$v2log") + 1))
    msg "from the client pod, through the gateway:"
    for _ in 1 2 3 4 5; do
        code=$(pod_exec client curl -sS --max-time 5 -o "$STATE/last-body" -w '%{http_code}' http://gateway/v1) ||
            die "curl http://gateway/v1 failed"
        body=$(cat "$STATE/last-body")
        printf '  curl http://gateway/v1 -> %s %s\n' "$code" "$body"
    done
    sleep 0.5
    local shadows
    shadows=$(shadow_lines "$v2log" "$from")
    echo
    if [[ -n $shadows ]]; then
        msg "what v2's sidecar received meanwhile (its access log, $v2log), shadow copies marked by their Host:"
        local l
        while IFS= read -r l; do printf '  %s\n' "$l"; done <<<"$shadows"
    else
        msg "v2's sidecar received no -shadow request meanwhile ($v2log)"
    fi
    if [[ $want == on && -z $shadows ]]; then
        msg "note: no shadow arrived: does this weir build mirror yet? (weir validate warns about fields it does not apply)"
    fi
}

do_split() {
    local n=${1:-}
    [[ $n == off || ($n =~ ^[0-9]+$ && $n -le 100) ]] || die "usage: $0 split N|off (N: 0..100, the percentage for v2)"
    need_up "split $n"
    local file="$STATE/config/split.yaml" log="$STATE/sidecar-client.log" before took
    before=$(reloads "$log")
    if [[ $n == off ]]; then
        if [[ -f $file ]]; then
            rm -f "$file"
            took=$(wait_reload "$log" "$before")
            msg "split removed ($file); the client's sidecar reloaded after $took: web-service takes Istio's default route (both versions)"
        else
            msg "no split is in place"
        fi
    else
        awk -v v1=$((100 - n)) -v v2="$n" '
            /^ *weight:/ { k++; sub(/weight: *[0-9]+/, "weight: " (k == 1 ? v1 : v2)) } { print }' \
            "$HERE/examples/split.yaml" | config_put "$file" || die "cannot write $file"
        took=$(wait_reload "$log" "$before")
        msg "web-service split v1 $((100 - n)) / v2 $n ($file); the client's sidecar reloaded after $took"
    fi

    echo
    msg "from the client pod, through its sidecar: 20 x curl http://web-service/"
    local v1=0 v2=0 other=0 page
    for _ in $(seq 1 20); do
        page=$(pod_exec client curl -sS --max-time 5 http://web-service/ 2>&1) || { other=$((other + 1)); continue; }
        case $page in
        *"This is version V1!"*) v1=$((v1 + 1)) ;;
        *"This is version V2!"*) v2=$((v2 + 1)) ;;
        *) other=$((other + 1)) ;;
        esac
    done
    printf '  V1: %d  V2: %d%s\n' "$v1" "$v2" "$( ((other > 0)) && printf '  other/errors: %d' "$other")"
}

case ${1:-up} in
up) do_up ;;
down) do_down ;;
status) do_status ;;
mirror) do_mirror "${2:-}" ;;
split) do_split "${2:-}" ;;
-h | --help | help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
*) die "unknown command '$1' (up, down, status, mirror on|off, split N|off)" ;;
esac
