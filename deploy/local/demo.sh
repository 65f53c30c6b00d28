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
  tear down:    deploy/local/demo.sh down
EOF
}

case ${1:-up} in
up) do_up ;;
down) do_down ;;
status) do_status ;;
-h | --help | help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
*) die "unknown command '$1' (up, down, status)" ;;
esac
