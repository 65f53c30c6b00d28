# shellcheck shell=bash disable=SC2015,SC2016,SC2034
# tests/lib/netns.sh: a local "cluster" made of network namespaces, for tests/e2e and deploy/local.
#
# Source it, then:
#   cluster_up PREFIX [STATE_DIR]   node namespace PREFIX-node with bridge br0 = 10.244.0.1/16.
#                                   No link into the root namespace, no route out.
#                                   STATE_DIR (default: a new mktemp -d) records every namespace,
#                                   /etc/netns dir and PID this cluster makes; $CLUSTER_DIR is it.
#   pod_add NAME IP [HOSTS_LINE ...]
#                                   netns PREFIX-NAME on the bridge through a veth pair (eth0 in
#                                   the pod, vpN in the node namespace), lo up, default route via
#                                   10.244.0.1, /etc/netns/PREFIX-NAME/hosts with "IP NAME" plus
#                                   each HOSTS_LINE (e.g. "10.244.0.10 gateway echo.local"), and a
#                                   resolv.conf that points at the pod's own loopback (no DNS
#                                   query ever leaves the pod).
#   pod_ns NAME                     prints the netns name of pod NAME.
#   pod_ip NAME                     prints the address of pod NAME.
#   pod_exec NAME CMD ...           runs CMD in the pod (foreground).
#   pod_spawn NAME LOGFILE CMD ...  starts CMD in the pod in the background (stdin /dev/null,
#                                   stdout+stderr to LOGFILE), records its PID; sets SPAWNED_PID.
#   host_spawn LOGFILE CMD ...      the same in the root namespace (e.g. a socat port-forward).
#   wait_port POD IP PORT [TIMEOUT] waits (default 15 s) until a TCP connect from POD to IP:PORT
#                                   succeeds; returns 1 on timeout.
#   cluster_pid_alive PID           0 if PID is one we recorded and it still runs.
#   cluster_stop PID [TIMEOUT]      SIGTERM to a recorded PID spawned by this shell, waits up to
#                                   TIMEOUT s (default 15), SIGKILL after; sets STOP_RC to its
#                                   exit status (128+N if killed by signal N, 124 if it had to be
#                                   killed). Returns 0 if it exited by itself.
#   cluster_down                    TERM to exactly the recorded PIDs, KILL after a grace period
#                                   (WEIR_KILL_GRACE seconds, default 5), then deletes exactly
#                                   the recorded namespaces and /etc/netns dirs. Idempotent.
#                                   WEIR_TEST_LEAVE=1 keeps STATE_DIR (logs) and says where.
#   cluster_load STATE_DIR          adopts a cluster recorded by another shell (demo.sh down).
#   cluster_trap [SECONDS]          installs cluster_down on EXIT (and exit on INT/TERM/HUP), and
#                                   a watchdog (started by cluster_up): after SECONDS (default
#                                   WEIR_E2E_TIMEOUT or 500, under ctest's 600) it TERMs the
#                                   recorded processes and the script, so that the EXIT trap
#                                   cleans up before ctest kills the script.
#
# Test helpers (for tests/e2e):
#   say MSG                         prints "== MSG" (one sentence per expectation).
#   fail MSG                        prints "FAIL: MSG", the tail of every recorded log, exits 1.
#   expect_eq WHAT GOT WANT         fail unless GOT == WANT.
#   require_root, require_cmd CMD.. fail early with a clear message.
#   sanitizer_report FILE           prints ASan/LSan/UBSan report lines of FILE; 0 if any.
#   CLUSTER_EXTRA_LOGS+=(FILE)      more files for fail to show (access logs, request logs).
#
# Every name this library creates is derived from PREFIX, and every cleanup acts only on what
# was recorded in STATE_DIR: nothing is ever killed or deleted by pattern.

WEIR_BRIDGE_CIDR_ADDR=10.244.0.1
WEIR_BRIDGE_PREFIXLEN=16

CLUSTER_PREFIX=""
CLUSTER_DIR=""
SPAWNED_PID=""

_cl_log() { printf '[netns] %s\n' "$*" >&2; }

# _cl_record FILE LINE: append one line to a state file.
_cl_record() { printf '%s\n' "$2" >>"$CLUSTER_DIR/$1"; }

# _cl_starttime PID: the process start time (field 22 of /proc/PID/stat), so a recorded PID is
# never confused with a later process that reuses the number.
_cl_starttime() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }                       # drop "pid (comm) ", comm may hold spaces
    local -a f
    read -ra f <<<"$stat"
    printf "%s\n" "${f[19]}"                 # field 22 overall = 20th after pid and comm
}

# _cl_sysctl NS KEY VALUE: sets a per-namespace sysctl through /proc/sys (no procps needed);
# /proc/sys/net answers for the network namespace of the process that opens it.
_cl_sysctl() {
    ip netns exec "$1" bash -c 'echo "$2" >"/proc/sys/${1//.//}"' _ "$2" "$3"
}

_cl_valid_name() {
    [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]]
}

_cl_ip_valid() {
    [[ $1 =~ ^10\.244\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || return 1
    local a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
    ((a <= 255 && b <= 255)) || return 1
    [[ $1 != "$WEIR_BRIDGE_CIDR_ADDR" && $1 != 10.244.0.0 && $1 != 10.244.255.255 ]]
}

cluster_up() {
    local prefix=${1:?cluster_up PREFIX [STATE_DIR]} state=${2:-}
    if [[ -n $CLUSTER_PREFIX ]]; then
        _cl_log "cluster $CLUSTER_PREFIX is already up in this shell"
        return 1
    fi
    _cl_valid_name "$prefix" || { _cl_log "bad cluster prefix '$prefix'"; return 1; }
    if [[ $(id -u) != 0 ]]; then
        _cl_log "network namespaces need root"
        return 1
    fi
    local node="$prefix-node"
    if [[ -e /run/netns/$node ]]; then
        _cl_log "namespace $node already exists (another cluster, or a leftover): refusing to touch it"
        return 1
    fi
    if [[ -z $state ]]; then
        state=$(mktemp -d "${TMPDIR:-/tmp}/weir-$prefix.XXXXXX") || return 1
    else
        mkdir -p "$state" || return 1
        if [[ -s $state/namespaces || -s $state/pids ]]; then
            _cl_log "state dir $state still records a cluster: take it down first"
            return 1
        fi
    fi
    CLUSTER_PREFIX=$prefix
    CLUSTER_DIR=$state
    : >"$state/namespaces"; : >"$state/pids"; : >"$state/etcdirs"; : >"$state/pods"; : >"$state/logs"
    printf '%s\n' "$prefix" >"$state/prefix"

    ip netns add "$node" || { _cl_log "ip netns add $node failed"; return 1; }
    _cl_record namespaces "$node"
    ip -n "$node" link set lo up &&
        _cl_sysctl "$node" net.ipv4.ip_forward 0 &&
        _cl_sysctl "$node" net.ipv6.conf.all.disable_ipv6 1 &&
        _cl_sysctl "$node" net.ipv6.conf.default.disable_ipv6 1 &&
        ip -n "$node" link add br0 type bridge &&
        ip -n "$node" addr add "$WEIR_BRIDGE_CIDR_ADDR/$WEIR_BRIDGE_PREFIXLEN" dev br0 &&
        ip -n "$node" link set br0 up || { _cl_log "bridge setup in $node failed"; return 1; }
    echo 0 >"$state/veth_seq"
    _cl_watchdog_start
    _cl_log "cluster $prefix up (node $node, bridge 10.244.0.1/16, state $state)"
}

pod_ns() { printf '%s\n' "$CLUSTER_PREFIX-$1"; }

pod_ip() {
    local name ip
    while read -r name ip; do
        [[ $name == "$1" ]] && { printf '%s\n' "$ip"; return 0; }
    done <"$CLUSTER_DIR/pods"
    return 1
}

pod_add() {
    local name=${1:?pod_add NAME IP [HOSTS_LINE ...]} ip=${2:?pod_add NAME IP}
    shift 2
    [[ -n $CLUSTER_PREFIX ]] || { _cl_log "pod_add: no cluster is up"; return 1; }
    _cl_valid_name "$name" || { _cl_log "bad pod name '$name'"; return 1; }
    _cl_ip_valid "$ip" || { _cl_log "pod address $ip is not a host address in 10.244.0.0/16"; return 1; }
    if pod_ip "$name" >/dev/null; then _cl_log "pod $name exists"; return 1; fi
    local other_ip other_name
    while read -r other_name other_ip; do
        [[ $other_ip == "$ip" ]] && { _cl_log "address $ip is taken by pod $other_name"; return 1; }
    done <"$CLUSTER_DIR/pods"

    local node="$CLUSTER_PREFIX-node" ns="$CLUSTER_PREFIX-$name" seq
    [[ -e /run/netns/$ns ]] && { _cl_log "namespace $ns already exists: refusing to touch it"; return 1; }
    seq=$(($(cat "$CLUSTER_DIR/veth_seq") + 1))
    echo "$seq" >"$CLUSTER_DIR/veth_seq"
    local veth="vp$seq"    # lives in the node namespace only: unique per cluster, <= 15 chars

    ip netns add "$ns" || { _cl_log "ip netns add $ns failed"; return 1; }
    _cl_record namespaces "$ns"
    printf '%s %s\n' "$name" "$ip" >>"$CLUSTER_DIR/pods"

    # The pair is created inside the node namespace with its peer sent straight into the pod,
    # so no interface ever appears in the root namespace.
    ip -n "$node" link add "$veth" type veth peer name eth0 netns "$ns" &&
        ip -n "$node" link set "$veth" master br0 &&
        ip -n "$node" link set "$veth" up &&
        _cl_sysctl "$ns" net.ipv6.conf.all.disable_ipv6 1 &&
        _cl_sysctl "$ns" net.ipv6.conf.default.disable_ipv6 1 &&
        ip -n "$ns" link set lo up &&
        ip -n "$ns" addr add "$ip/$WEIR_BRIDGE_PREFIXLEN" dev eth0 &&
        ip -n "$ns" link set eth0 up &&
        ip -n "$ns" route add default via "$WEIR_BRIDGE_CIDR_ADDR" ||
        { _cl_log "network setup of pod $name ($ns) failed"; return 1; }

    local etc="/etc/netns/$ns"
    if [[ ! -d /etc/netns ]]; then
        _cl_record etcdirs /etc/netns    # made by us: removed at the end if empty
        mkdir -p /etc/netns || return 1
    fi
    _cl_record etcdirs "$etc"
    mkdir -p "$etc" || return 1
    {
        printf '127.0.0.1\tlocalhost\n'
        printf '%s\t%s\n' "$ip" "$name"
        local line
        for line in "$@"; do printf '%s\n' "$line"; done
    } >"$etc/hosts"
    # Only names from hosts resolve; anything else asks the pod's own loopback and fails.
    printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$etc/resolv.conf"
}

pod_exec() {
    local name=${1:?pod_exec NAME CMD ...}
    shift
    ip netns exec "$CLUSTER_PREFIX-$name" "$@"
}

# _cl_spawn LOGFILE LABEL CMD ...: background CMD (already wrapped), record "PID START LABEL".
_cl_spawn() {
    local logfile=$1 label=$2
    shift 2
    mkdir -p "$(dirname "$logfile")"
    # The subshell ignores SIGHUP (so a demo outlives its terminal) and execs the command, so $!
    # is the PID of the command itself (ip netns exec execs too, it does not fork).
    ( trap '' HUP; exec "$@" ) </dev/null >>"$logfile" 2>&1 &
    SPAWNED_PID=$!
    local start
    start=$(_cl_starttime "$SPAWNED_PID") || start=0
    _cl_record pids "$SPAWNED_PID $start $label"
    _cl_record logs "$logfile"
}

pod_spawn() {
    local name=${1:?pod_spawn NAME LOGFILE CMD ...} logfile=${2:?pod_spawn NAME LOGFILE CMD ...}
    shift 2
    [[ -n $CLUSTER_PREFIX ]] || { _cl_log "pod_spawn: no cluster is up"; return 1; }
    pod_ip "$name" >/dev/null || { _cl_log "pod_spawn: no pod $name"; return 1; }
    _cl_spawn "$logfile" "$name:$1" ip netns exec "$CLUSTER_PREFIX-$name" "$@"
}

host_spawn() {
    local logfile=${1:?host_spawn LOGFILE CMD ...}
    shift
    [[ -n $CLUSTER_PREFIX ]] || { _cl_log "host_spawn: no cluster is up"; return 1; }
    _cl_spawn "$logfile" "host:$1" "$@"
}

# cluster_pid_alive PID: the PID is recorded and still the process we started.
cluster_pid_alive() {
    local pid start label now
    while read -r pid start label; do
        [[ $pid == "$1" ]] || continue
        now=$(_cl_starttime "$pid") || return 1
        [[ $start == 0 || $now == "$start" ]] || return 1
        # a zombie (exited, not yet reaped) does not count as running
        [[ $(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null) != Z ]]
        return
    done <"$CLUSTER_DIR/pids"
    return 1
}

STOP_RC=""
cluster_stop() {
    local pid=${1:?cluster_stop PID [TIMEOUT]} timeout=${2:-15}
    STOP_RC=""
    cluster_pid_alive "$pid" || { _cl_log "cluster_stop: $pid is not a running recorded process"; STOP_RC=255; return 1; }
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while cluster_pid_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            _cl_log "PID $pid still runs ${timeout}s after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            STOP_RC=124
            return 1
        fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null && STOP_RC=0 || STOP_RC=$?
    return 0
}

# sanitizer_report FILE: prints the sanitizer report lines in FILE; returns 0 if there are any.
sanitizer_report() {
    grep -aE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer)' "$1" 2>/dev/null
}

wait_port() {
    local pod=${1:?wait_port POD IP PORT [TIMEOUT]} ip=${2:?} port=${3:?} timeout=${4:-15}
    local deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if timeout 2 ip netns exec "$CLUSTER_PREFIX-$pod" \
            bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$ip" "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    _cl_log "timed out after ${timeout}s waiting for $ip:$port (from pod $pod)"
    return 1
}

# cluster_load STATE_DIR: adopt a cluster recorded by another shell (demo.sh down/status).
cluster_load() {
    local state=${1:?cluster_load STATE_DIR}
    [[ -f $state/prefix ]] || return 1
    CLUSTER_DIR=$state
    CLUSTER_PREFIX=$(cat "$state/prefix")
}

cluster_down() {
    [[ -n $CLUSTER_DIR && -d $CLUSTER_DIR ]] || return 0
    local state=$CLUSTER_DIR grace=${WEIR_KILL_GRACE:-5}
    local pid start label now
    local -a live=()
    if [[ -n $_CL_WATCHDOG ]]; then
        kill -TERM "$_CL_WATCHDOG" 2>/dev/null || true
        wait "$_CL_WATCHDOG" 2>/dev/null || true
        _CL_WATCHDOG=""
    fi
    if [[ -f $state/pids ]]; then
        while read -r pid start label; do
            [[ $pid =~ ^[0-9]+$ ]] || continue
            now=$(_cl_starttime "$pid") || continue           # already gone
            if [[ $start != 0 && $now != "$start" ]]; then
                _cl_log "PID $pid ($label) was reused by another process: not touching it"
                continue
            fi
            kill -TERM "$pid" 2>/dev/null && live+=("$pid")
        done <"$state/pids"
        local deadline=$((SECONDS + grace)) p still
        while ((${#live[@]} > 0)); do
            still=()
            for p in "${live[@]}"; do
                # reap our own children so they do not linger as zombies
                if kill -0 "$p" 2>/dev/null &&
                    [[ $(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$p/status" 2>/dev/null) != Z ]]; then
                    still+=("$p")
                else
                    wait "$p" 2>/dev/null || true
                fi
            done
            live=("${still[@]}")
            ((${#live[@]} == 0)) && break
            if ((SECONDS >= deadline)); then
                for p in "${live[@]}"; do
                    _cl_log "PID $p ignored SIGTERM for ${grace}s: SIGKILL"
                    kill -KILL "$p" 2>/dev/null || true
                    wait "$p" 2>/dev/null || true
                done
                break
            fi
            sleep 0.1
        done
        : >"$state/pids"
    fi
    if [[ -f $state/namespaces ]]; then
        local ns
        # pods first, the node (with the bridge) last: reverse order of creation
        while read -r ns; do
            [[ -n $ns && -e /run/netns/$ns ]] || continue
            ip netns delete "$ns" 2>/dev/null || _cl_log "could not delete namespace $ns"
        done < <(tac "$state/namespaces")
        : >"$state/namespaces"
    fi
    if [[ -f $state/etcdirs ]]; then
        local d
        # reverse order: each pod's dir, then /etc/netns itself if this cluster made it
        while read -r d; do
            if [[ $d == /etc/netns ]]; then
                rmdir /etc/netns 2>/dev/null || true   # only if empty (another cluster may use it)
                continue
            fi
            [[ $d == /etc/netns/?* && $d != */..* && -d $d ]] || continue
            rm -f "$d/hosts" "$d/resolv.conf"
            rmdir "$d" 2>/dev/null || _cl_log "left $d (holds files this cluster did not write)"
        done < <(tac "$state/etcdirs")
        : >"$state/etcdirs"
    fi
    : >"$state/pods"
    if [[ ${WEIR_TEST_LEAVE:-0} == 1 ]]; then
        _cl_log "WEIR_TEST_LEAVE=1: kept $state (logs, configs)"
    elif [[ -f $state/prefix ]]; then
        rm -rf -- "$state"    # only a directory cluster_up filled
    fi
    CLUSTER_PREFIX=""
    CLUSTER_DIR=""
}

_CL_WATCHDOG=""

# _cl_watchdog SECONDS MAIN_PID: runs in the background (see cluster_trap).
_cl_watchdog() {
    local secs=$1 main=$2 sp pid start label now
    trap 'kill "$sp" 2>/dev/null; exit 0' TERM
    sleep "$secs" &
    sp=$!
    wait "$sp"
    _cl_log "watchdog: the test ran for more than ${secs}s: stopping it (raise WEIR_E2E_TIMEOUT if this is expected)"
    while read -r pid start label; do
        now=$(_cl_starttime "$pid") || continue
        [[ $start == 0 || $now == "$start" ]] && kill -TERM "$pid" 2>/dev/null
    done <"$CLUSTER_DIR/pids"
    kill -TERM "$main" 2>/dev/null
    exit 0
}

cluster_trap() {
    local secs=${1:-${WEIR_E2E_TIMEOUT:-500}}
    trap 'cluster_down' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    _CL_WATCHDOG_SECS=$secs
    [[ -n $CLUSTER_DIR ]] && _cl_watchdog_start
    return 0
}

_CL_WATCHDOG_SECS=0
_cl_watchdog_start() {
    [[ $_CL_WATCHDOG_SECS != 0 && -z $_CL_WATCHDOG ]] || return 0
    _cl_watchdog "$_CL_WATCHDOG_SECS" "$$" </dev/null >&2 &
    _CL_WATCHDOG=$!
}

# ---------------------------------------------------------------------------------------------
# Test helpers

say() { printf '== %s\n' "$*"; }

# cluster_dump_logs: the tail of every log a spawned process wrote, for a failed expectation.
cluster_dump_logs() {
    [[ -n $CLUSTER_DIR && -f $CLUSTER_DIR/logs ]] || return 0
    local f
    while read -r f; do
        [[ -f $f ]] || continue
        printf -- '---- %s (last 40 lines) ----\n' "$f"
        tail -n 40 -- "$f" | cat -v
    done < <(sort -u "$CLUSTER_DIR/logs")
    local extra
    for extra in "${CLUSTER_EXTRA_LOGS[@]}"; do
        [[ -f $extra ]] || continue
        printf -- '---- %s (last 40 lines) ----\n' "$extra"
        tail -n 40 -- "$extra" | cat -v
    done
}
CLUSTER_EXTRA_LOGS=()

fail() {
    printf 'FAIL: %s\n' "$*" >&2
    [[ -n $CLUSTER_DIR && ${WEIR_TEST_LEAVE:-0} != 1 ]] && printf '(WEIR_TEST_LEAVE=1 keeps the logs and configs in the temp dir)\n' >&2
    cluster_dump_logs >&2
    exit 1
}

expect_eq() {
    [[ $2 == "$3" ]] || fail "$1: got '$2', want '$3'"
}

require_root() {
    [[ $(id -u) == 0 ]] || fail "this test needs root (network namespaces)"
}

require_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || fail "missing command '$c' (tests/run.sh installs the packages)"
    done
}
