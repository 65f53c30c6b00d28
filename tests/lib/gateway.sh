# shellcheck shell=bash disable=SC2034  # GW_PID, SIDECAR_PID, ECHO_PID are for the tests
# tests/lib/gateway.sh: start `weir gateway` in a pod of a tests/lib/netns.sh cluster.
# Source after netns.sh. Uses WEIR_BIN.
# The second half has what the traffic-policy tests (tests/e2e/8x) share: a client sidecar,
# echo_server backends, config edits that wait for the proxies to reload, curl through the
# gateway or through the sidecar, and WEIR_E2E_KEEP_GOING=1 to see every failed expectation.

PROXY_LOGS=() # the log of every proxy started here, for reload_wait

# gateway_start POD CONFIG_DIR LOGFILE ACCESS_LOG [weir gateway options...]
# Starts the gateway in POD (its address from pod_ip) and waits for port 80 (GW_WAIT_PORT) from
# POD itself, then from the client pod when there is one.
# Sets GW_PID. Under ASan the quarantine is capped so RSS checks stay meaningful.
gateway_start() {
    local pod=$1 config=$2 log=$3 access=$4
    shift 4
    local -a env_prefix=()
    local libs
    libs=$(ldd "$WEIR_BIN" 2>/dev/null || true)
    if [[ $libs == *libasan* ]]; then
        env_prefix=(env "ASAN_OPTIONS=quarantine_size_mb=16${ASAN_OPTIONS:+:$ASAN_OPTIONS}")
    fi
    pod_spawn "$pod" "$log" "${env_prefix[@]}" "$WEIR_BIN" gateway -c "$config" \
        --labels istio=ingressgateway --namespace istio-system --access-log "$access" "$@"
    GW_PID=$SPAWNED_PID
    PROXY_LOGS+=("$log")
    local port=${GW_WAIT_PORT:-80}
    wait_port "$pod" 127.0.0.1 "$port" 30 || fail "weir gateway does not listen on port $port"
    # and across the bridge, from the client pod when there is one
    local ip
    if ip=$(pod_ip client 2>/dev/null) && [[ -n $ip ]]; then
        wait_port client "$(pod_ip "$pod")" "$port" 30 || fail "the client pod cannot reach the gateway"
    fi
}

# gateway_stop_clean LOGFILE: SIGTERM, exit status 0, no sanitizer report.
gateway_stop_clean() {
    local log=$1
    cluster_stop "$GW_PID" 20 || fail "weir gateway did not exit within 20s of SIGTERM"
    [[ $STOP_RC == 0 ]] || fail "weir gateway exited with status $STOP_RC on SIGTERM"
    if sanitizer_report "$log"; then fail "sanitizer report in $log"; fi
}

# access_line REGEX LOGFILE [TIMEOUT]: waits until an access-log line matches; prints it.
access_line() {
    local re=$1 file=$2 timeout=${3:-10} deadline line
    deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        line=$(grep -E -m 1 -- "$re" "$file" 2>/dev/null || true)
        if [[ -n $line ]]; then
            printf '%s\n' "$line"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# _asan_env: the env prefix gateway_start uses, for other proxies.
_asan_env() {
    ASAN_ENV=()
    local libs
    libs=$(ldd "$WEIR_BIN" 2>/dev/null || true)
    if [[ $libs == *libasan* ]]; then
        ASAN_ENV=(env "ASAN_OPTIONS=quarantine_size_mb=16${ASAN_OPTIONS:+:$ASAN_OPTIONS}")
    fi
}

# ---------------------------------------------------------------------------------------------
# Traffic-policy tests (tests/e2e/8x): the same VirtualService is exercised through the gateway
# and through a client sidecar.
#
#   pod gw       POL_GW_IP       weir gateway (port 80)
#   pod client   POL_CLIENT_IP   no sidecar: curl http://echo.local/... reaches the gateway
#   pod mclient  POL_MCLIENT_IP  weir iptables + weir sidecar (uid 1337, app=sleep):
#                                curl http://echo/... goes to the service address POL_VIP and
#                                out through the sidecar
#   echo pods    whatever the test adds (echo_start), with no sidecar: plain HTTP endpoints
#
# A VirtualService with `hosts: [echo, echo.local]` and `gateways: [gw, mesh]` serves both paths.

POL_GW_IP=10.244.0.10
POL_CLIENT_IP=10.244.0.20
POL_MCLIENT_IP=10.244.0.21
POL_VIP=10.96.0.20
ECHO_SERVER=${ECHO_SERVER:-${WEIR_ECHO_SERVER:-${WEIR_BUILD_DIR:-}/tests/echo_server}}

# policy_pods: pods gw, client and mclient (no processes yet).
policy_pods() {
    pod_add gw "$POL_GW_IP" || return 1
    pod_add client "$POL_CLIENT_IP" "$POL_GW_IP echo.local gateway" || return 1
    pod_add mclient "$POL_MCLIENT_IP" "$POL_VIP echo echo.default echo.default.svc.cluster.local" || return 1
}

# sidecar_start POD LABELS SERVICE_ACCOUNT CONFIG [weir sidecar options...]
# What Istio's injector adds to a pod: `weir iptables`, then `weir sidecar` as uid 1337 with
# the log in $CLUSTER_DIR/sidecar-POD.log and the access log in
# $CLUSTER_DIR/sidecar-POD.access.log. Waits for the inbound port. Sets SIDECAR_PID.
# CONFIG (and $CLUSTER_DIR) must be readable by uid 1337: conf_put keeps files 0644.
sidecar_start() {
    local pod=$1 labels=$2 sa=$3 config=$4
    shift 4
    pod_exec "$pod" "$WEIR_BIN" iptables >"$CLUSTER_DIR/iptables-$pod.log" 2>&1 ||
        fail "weir iptables failed in pod $pod: $(cat "$CLUSTER_DIR/iptables-$pod.log")"
    local access="$CLUSTER_DIR/sidecar-$pod.access.log"
    : >"$access"
    chown 1337:1337 "$access"
    chmod o+rx "$CLUSTER_DIR"
    chmod -R o+rX "$config"
    _asan_env
    pod_spawn "$pod" "$CLUSTER_DIR/sidecar-$pod.log" \
        setpriv --reuid=1337 --regid=1337 --clear-groups "${ASAN_ENV[@]}" \
        "$WEIR_BIN" sidecar -c "$config" --labels "$labels" --namespace default \
        --service-account "$sa" --access-log "$access" "$@" || fail "cannot start the sidecar of $pod"
    SIDECAR_PID=$SPAWNED_PID
    PROXY_LOGS+=("$CLUSTER_DIR/sidecar-$pod.log")
    CLUSTER_EXTRA_LOGS+=("$access")
    wait_port "$pod" 127.0.0.1 15006 30 || fail "the sidecar of pod $pod does not listen"
}

# echo_start POD NAME IP:PORT [echo_server options...]
# An echo_server named NAME, its requests logged in $CLUSTER_DIR/requests-NAME.log; waits until
# it accepts connections. Sets ECHO_PID.
echo_start() {
    local pod=$1 name=$2 listen=$3
    shift 3
    [[ -x $ECHO_SERVER ]] || fail "echo_server $ECHO_SERVER not found (build first)"
    : >"$CLUSTER_DIR/requests-$name.log"
    pod_spawn "$pod" "$CLUSTER_DIR/echo-$name.log" "$ECHO_SERVER" --listen "$listen" --name "$name" \
        --log "$CLUSTER_DIR/requests-$name.log" "$@" || fail "cannot start echo_server $name"
    ECHO_PID=$SPAWNED_PID
    CLUSTER_EXTRA_LOGS+=("$CLUSTER_DIR/requests-$name.log")
    wait_port "$pod" "${listen%:*}" "${listen##*:}" 20 || fail "echo_server $name does not listen on $listen"
}

# echo_admin IP:PORT COMMAND: /admin/COMMAND (fail?status=500, hang, delay?ms=N, ok, count,
# reset) on an echo_server, straight from pod client; prints the answer.
echo_admin() {
    pod_exec client curl -sS --max-time 5 "http://$1/admin/$2" || fail "echo_server $1: /admin/$2 failed"
}

# requests_of NAME REGEX: how many requests echo_server NAME logged whose line matches REGEX.
requests_of() {
    grep -cE -- "$2" "$CLUSTER_DIR/requests-$1.log" 2>/dev/null || true
}

# yaml_gateway: Gateway default/gw on port 80 for every host.
yaml_gateway() {
    cat <<'YAML'
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
YAML
}

# yaml_service NAME VIP|- ENDPOINT...: a ServiceEntry NAME.default.svc.cluster.local on port 80
# (in the mesh, plain HTTP: no tlsMode label), with the service address VIP ("-": none) and
# inline endpoints, each IP:PORT or IP:PORT:VERSION (the label `version`).
yaml_service() {
    local name=$1 vip=$2 ep ip port version
    shift 2
    printf -- '---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n'
    printf 'metadata: {name: %s, namespace: default}\nspec:\n' "$name"
    printf '  hosts: [%s.default.svc.cluster.local]\n' "$name"
    [[ $vip != - ]] && printf '  addresses: [%s]\n' "$vip"
    printf '  location: MESH_INTERNAL\n  resolution: STATIC\n'
    printf '  ports: [{number: 80, name: http, protocol: HTTP}]\n  endpoints:\n'
    for ep in "$@"; do
        IFS=: read -r ip port version <<<"$ep"
        if [[ -n $version ]]; then
            printf '  - {address: %s, ports: {http: %s}, labels: {version: %s}}\n' "$ip" "$port" "$version"
        else
            printf '  - {address: %s, ports: {http: %s}}\n' "$ip" "$port"
        fi
    done
}

# conf_put FILE: writes stdin to FILE atomically (a temporary name the config loader ignores,
# then a rename), mode 0644 so a sidecar (uid 1337) can read it.
conf_put() {
    local file=$1 tmp="$1.tmp.$$"
    cat >"$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" "$file"
}

# reload_marks: prints, per proxy in PROXY_LOGS, how many reloads it has logged and how many
# it rejected, as "OK/REJECTED".
reload_marks() {
    local log ok bad
    for log in "${PROXY_LOGS[@]}"; do
        ok=$(grep -c 'config reloaded (generation' "$log" 2>/dev/null || true)
        bad=$(grep -c 'config reload rejected' "$log" 2>/dev/null || true)
        printf '%s/%s ' "${ok:-0}" "${bad:-0}"
    done
}

# reload_wait MARKS [TIMEOUT]: waits (default 5 s) until every proxy in PROXY_LOGS has logged
# a reload after MARKS (from reload_marks); returns 1 on timeout or when one rejected it.
reload_wait() {
    local -a marks now
    read -ra marks <<<"$1"
    local timeout=${2:-5} deadline i all
    deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        read -ra now <<<"$(reload_marks)"
        all=1
        for i in "${!PROXY_LOGS[@]}"; do
            if ((${now[$i]#*/} > ${marks[$i]#*/})); then
                printf 'reload rejected by %s:\n%s\n' "${PROXY_LOGS[$i]}" \
                    "$(grep 'config reload' "${PROXY_LOGS[$i]}" | tail -n 5)" >&2
                return 1
            fi
            ((${now[$i]%/*} > ${marks[$i]%/*})) || all=0
        done
        ((all)) && return 0
        sleep 0.05
    done
    printf 'no reload within %ss (marks %s, now %s)\n' "$timeout" "$1" "$(reload_marks)" >&2
    return 1
}

# conf_apply FILE: conf_put FILE from stdin, then waits until every proxy has reloaded.
conf_apply() {
    local marks
    marks=$(reload_marks)
    conf_put "$1" || fail "cannot write $1"
    reload_wait "$marks" 5 || fail "the proxies did not reload $1"
}

# via_url VIA PATH: the URL of PATH on service echo through VIA: gw (the gateway, from pod
# client) or mesh (the sidecar of pod mclient).
via_url() {
    case $1 in
    gw) printf 'http://echo.local%s\n' "$2" ;;
    mesh) printf 'http://echo%s\n' "$2" ;;
    *) fail "via_url: unknown path '$1'" ;;
    esac
}

# via_curl VIA CURL_ARGS...: curl from the client pod of VIA (curl's exit status is kept).
via_curl() {
    local via=$1
    shift
    case $via in
    gw) pod_exec client curl "$@" ;;
    mesh) pod_exec mclient curl "$@" ;;
    *) fail "via_curl: unknown path '$via'" ;;
    esac
}

# via_access VIA: the access log of the proxy that VIA's client talks to.
via_access() {
    case $1 in
    gw) printf '%s\n' "$CLUSTER_DIR/access.log" ;;
    mesh) printf '%s\n' "$CLUSTER_DIR/sidecar-mclient.access.log" ;;
    esac
}

# median: the median of the numbers on stdin (one a line), the lower one for an even count.
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else print v[int((NR + 1) / 2)] }'
}

# flunk MSG: a failed expectation. Fails the test at once, or with WEIR_E2E_KEEP_GOING=1 prints
# it and goes on, so that one run shows every expectation that fails (e2e_pass then fails).
E2E_FLUNKED=()
flunk() {
    if [[ ${WEIR_E2E_KEEP_GOING:-0} == 1 ]]; then
        printf 'FAIL (going on): %s\n' "$*" >&2
        E2E_FLUNKED+=("$*")
        return 0
    fi
    fail "$@"
}

# check WHAT GOT WANT: flunk unless GOT == WANT.
check() {
    [[ $2 == "$3" ]] || flunk "$1: got '$2', want '$3'"
}

# e2e_pass NAME: PASS, unless an expectation flunked under WEIR_E2E_KEEP_GOING=1.
e2e_pass() {
    if ((${#E2E_FLUNKED[@]} > 0)); then
        printf 'FAIL: %s expectation(s) of %s failed:\n' "${#E2E_FLUNKED[@]}" "$1" >&2
        printf '  - %s\n' "${E2E_FLUNKED[@]}" >&2
        cluster_dump_logs >&2
        exit 1
    fi
    echo "PASS: $1"
}

# proxies_stop_clean: SIGTERM to the gateway and every sidecar started here; each must exit 0
# with no sanitizer report.
proxies_stop_clean() {
    local pid
    for pid in "$@"; do
        cluster_stop "$pid" 20 || fail "proxy PID $pid did not exit within 20s of SIGTERM"
        [[ $STOP_RC == 0 ]] || fail "proxy PID $pid exited with status $STOP_RC on SIGTERM"
    done
    local log
    for log in "${PROXY_LOGS[@]}"; do
        if sanitizer_report "$log"; then fail "sanitizer report in $log"; fi
    done
}
