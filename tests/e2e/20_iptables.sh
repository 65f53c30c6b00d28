#!/usr/bin/env bash
# 20_iptables.sh: `weir iptables` against the real kernel. In pod "app" the rules are installed
# and, in place of the sidecar, origdst_probe (tests/tools/origdst_probe.c, built on
# agent/original_dst.h) runs as uid/gid 1337 on 15001 (outbound capture), 15006 (inbound
# capture) and two plain ports; it answers every connection with "ORIG <ip>:<port>" and logs
# which listener took it. Pod "client" has no rules and a probe on 8080, to see what reaches it
# untouched. Checked: the dry run prints the golden rules and changes nothing; outbound traffic
# of the app goes to 15001 with the service address as its original destination; inbound goes
# to 15006 with <pod ip>:<port>; 15021 and 15008 are not captured; uid 1337, gid 1337, source
# 127.0.0.6 and 127.0.0.1 are not captured; the proxy reaching its own pod goes through 15006;
# a second install is refused; --cleanup restores the table.
# Traffic goes only between this test's namespaces: pods 10.244.20.0/24, and the service
# address 10.96.0.10, which exists only inside the redirecting pod (anything not captured is
# dropped by the node namespace, which does not forward).
# Run by ctest (WEIR_BIN, WEIR_BUILD_DIR, WEIR_SOURCE_DIR) or by hand as root.
# shellcheck disable=SC2016,SC2119  # inner `bash -c` scripts; cluster_trap takes no script args
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
PROBE=${WEIR_ORIGDST_PROBE:-$WEIR_BUILD_DIR/tests/origdst_probe}
GOLDEN="$WEIR_SOURCE_DIR/tests/data/iptables/default.golden"

# shellcheck source=SCRIPTDIR/../lib/netns.sh
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"

require_root
require_cmd ip iptables iptables-save iptables-restore setpriv socat timeout
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"
[[ -x $PROBE ]] || fail "origdst_probe $PROBE not found (build first)"
[[ -f $GOLDEN ]] || fail "golden rules $GOLDEN not found"
"$WEIR_BIN" iptables --help >/dev/null 2>&1 ||
    fail "$WEIR_BIN has no working 'iptables' command (weir_iptables_main not in common/main.c?)"

APP_IP=10.244.20.2
CLIENT_IP=10.244.20.3
SVC_IP=10.96.0.10
AS_PROXY=(setpriv --reuid=1337 --regid=1337 --clear-groups)

cluster_trap
cluster_up "wi$$"
pod_add app "$APP_IP"
pod_add client "$CLIENT_IP"
APP_LOG="$CLUSTER_DIR/probe-app.log"
CLIENT_LOG="$CLUSTER_DIR/probe-client.log"
WEIR_LOG="$CLUSTER_DIR/weir-iptables.log"
CLUSTER_EXTRA_LOGS+=("$WEIR_LOG")
: >"$WEIR_LOG"

# saved POD [ARGS]: the pod's tables as iptables-save ARGS prints them, without the dated
# comments and the chains' packet counters (the legacy backend counts every packet).
saved() {
    local pod=$1
    shift
    pod_exec "$pod" iptables-save "$@" | { grep -v '^#' || true; } |
        sed -E 's/^(:[^ ]+ [^ ]+) \[[0-9]+:[0-9]+\]$/\1/'
}
nat_table() { saved "$1" -t nat; }

# weir_ipt POD ARGS...: runs `weir iptables ARGS` in POD; stdout in $OUT, stderr in $ERR (also
# appended to WEIR_LOG), exit status in $RC.
OUT="" ERR="" RC=0
weir_ipt() {
    local pod=$1
    shift
    local errf="$CLUSTER_DIR/weir-iptables.err"
    RC=0
    OUT=$(pod_exec "$pod" "$WEIR_BIN" iptables "$@" 2>"$errf") || RC=$?
    ERR=$(cat "$errf")
    printf '$ weir iptables %s (exit %s)\n%s\n' "$*" "$RC" "$ERR" >>"$WEIR_LOG"
}

# ask POD IP PORT [RUNNER...]: connects from POD (through RUNNER, e.g. setpriv, if given) to
# IP:PORT and reads one line. Sets REPLY_LINE to the line, or to REFUSED / TIMEOUT / ERROR.
REPLY_LINE=""
ask() {
    local pod=$1 ip=$2 port=$3 out rc=0
    shift 3
    out=$(pod_exec "$pod" timeout 3 "$@" bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 7
        IFS= read -r line <&3 || true
        printf "%s\n" "$line"' _ "$ip" "$port" 2>&1) || rc=$?
    if ((rc == 0)); then
        REPLY_LINE=$out
    elif [[ $out == *"Connection refused"* ]]; then
        REPLY_LINE=REFUSED
    elif ((rc == 124)); then
        REPLY_LINE=TIMEOUT
    else
        REPLY_LINE="ERROR($rc): $out"
    fi
}

conn_count() { grep -c '^conn ' "$1" || true; }

# expect_conns LOG BEFORE WANT_LINE...: the lines LOG gained since it had BEFORE connection
# lines are exactly WANT_LINE... (each a "listener=P orig=IP:PORT" pair; peer= is ignored).
expect_conns() {
    local log=$1 before=$2 got want
    shift 2
    got=$({ grep '^conn ' "$log" || true; } | tail -n +"$((before + 1))" |
        sed -E 's/^conn listener=([0-9]+) peer=[^ ]+ /listener=\1 /' | tr '\n' ';')
    want=$(printf '%s;' "$@")
    [[ $want == ";" ]] && want=""
    [[ $got == "$want" ]] || fail "$(basename "$log"): new connections '$got', want '$want'"
}

say "weir iptables --dry-run prints the default rules (tests/data/iptables/default.golden)"
before_all=$(saved app)
weir_ipt app --dry-run
((RC == 0)) || fail "weir iptables --dry-run exited $RC: $ERR"
expect_eq "dry-run output" "$OUT" "$(cat "$GOLDEN")"

say "... and changes nothing (iptables-save before and after are identical)"
after_all=$(saved app)
expect_eq "iptables-save after --dry-run" "$after_all" "$before_all"
nat_before=$(nat_table app)

say "weir iptables installs the rules (exit 0): the four ISTIO_ chains and both jumps exist"
weir_ipt app
((RC == 0)) || fail "weir iptables exited $RC: $ERR"
nat_installed=$(nat_table app)
for want in ':ISTIO_INBOUND ' ':ISTIO_REDIRECT ' ':ISTIO_IN_REDIRECT ' ':ISTIO_OUTPUT ' \
    '-A PREROUTING -p tcp -j ISTIO_INBOUND' '-A OUTPUT -j ISTIO_OUTPUT' \
    '-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001' \
    '-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006'; do
    grep -qF -- "$want" <<<"$nat_installed" || fail "no '$want' in the nat table: $nat_installed"
done
# The rules the kernel holds are the golden ones, rule for rule (iptables-save spells them
# in its own canonical form, so count the -A lines of each chain).
for chain in PREROUTING OUTPUT ISTIO_INBOUND ISTIO_REDIRECT ISTIO_IN_REDIRECT ISTIO_OUTPUT; do
    n_want=$(grep -c -- "^-A $chain " "$GOLDEN" || true)
    n_got=$(grep -c -- "^-A $chain " <<<"$nat_installed" || true)
    expect_eq "rules in chain $chain" "$n_got" "$n_want"
done

say "a second weir iptables is refused (exit 1, says the chains exist) and changes nothing"
weir_ipt app
expect_eq "exit status of the second install" "$RC" 1
[[ $ERR == *"already has chain ISTIO_"* ]] || fail "unclear message for the second install: $ERR"
expect_eq "nat table after the refused install" "$(nat_table app)" "$nat_installed"

say "the dry run still works with the rules in place and touches nothing"
weir_ipt app --dry-run
((RC == 0)) || fail "weir iptables --dry-run exited $RC: $ERR"
expect_eq "nat table after a dry run" "$(nat_table app)" "$nat_installed"

say "the probes start: app (uid/gid 1337) on 15001, 15006, 127.0.0.1:8081, *:8082; client on 8080"
pod_spawn app "$APP_LOG" "${AS_PROXY[@]}" "$PROBE" --listen 0.0.0.0:15001 \
    --listen 0.0.0.0:15006 --listen 127.0.0.1:8081 --listen 0.0.0.0:8082
APP_PID=$SPAWNED_PID
pod_spawn client "$CLIENT_LOG" "$PROBE" --listen 0.0.0.0:8080
CLIENT_PID=$SPAWNED_PID
deadline=$((SECONDS + 15))
while (($(grep -c '^listening ' "$APP_LOG" || true) < 4 ||
    $(grep -c '^listening ' "$CLIENT_LOG" || true) < 1)); do
    ((SECONDS < deadline)) || fail "the probes did not start listening"
    cluster_pid_alive "$APP_PID" || fail "the app probe exited"
    cluster_pid_alive "$CLIENT_PID" || fail "the client probe exited"
    sleep 0.1
done
[[ $(stat -c %u "/proc/$APP_PID") == 1337 ]] || fail "the app probe does not run as uid 1337"

say "outbound: the app (uid 0) connecting to $SVC_IP:80 lands on 15001, original dst $SVC_IP:80"
n=$(conn_count "$APP_LOG")
ask app "$SVC_IP" 80
expect_eq "reply to the app's $SVC_IP:80" "$REPLY_LINE" "ORIG $SVC_IP:80"
expect_conns "$APP_LOG" "$n" "listener=15001 orig=$SVC_IP:80"

say "outbound: the app connecting to another pod ($CLIENT_IP:8080) is captured, never reaches it"
n=$(conn_count "$APP_LOG")
nc=$(conn_count "$CLIENT_LOG")
ask app "$CLIENT_IP" 8080
expect_eq "reply to the app's $CLIENT_IP:8080" "$REPLY_LINE" "ORIG $CLIENT_IP:8080"
expect_conns "$APP_LOG" "$n" "listener=15001 orig=$CLIENT_IP:8080"
expect_conns "$CLIENT_LOG" "$nc"

say "inbound: the client pod connecting to $APP_IP:80 lands on 15006, original dst $APP_IP:80"
n=$(conn_count "$APP_LOG")
ask client "$APP_IP" 80
expect_eq "reply to the client's $APP_IP:80" "$REPLY_LINE" "ORIG $APP_IP:80"
expect_conns "$APP_LOG" "$n" "listener=15006 orig=$APP_IP:80"

say "inbound to a port that is not excluded ($APP_IP:15020) is captured as well"
n=$(conn_count "$APP_LOG")
ask client "$APP_IP" 15020
expect_eq "reply to the client's $APP_IP:15020" "$REPLY_LINE" "ORIG $APP_IP:15020"
expect_conns "$APP_LOG" "$n" "listener=15006 orig=$APP_IP:15020"

say "inbound to the excluded 15021 and the tunnel port 15008 is not captured: refused, none listens"
n=$(conn_count "$APP_LOG")
ask client "$APP_IP" 15021
expect_eq "client to $APP_IP:15021" "$REPLY_LINE" REFUSED
ask client "$APP_IP" 15008
expect_eq "client to $APP_IP:15008" "$REPLY_LINE" REFUSED
expect_conns "$APP_LOG" "$n"

say "inbound straight to $APP_IP:15006 reports $APP_IP:15006 itself (the sidecar refuses: a loop)"
n=$(conn_count "$APP_LOG")
ask client "$APP_IP" 15006
expect_eq "reply to the client's $APP_IP:15006" "$REPLY_LINE" "ORIG $APP_IP:15006"
expect_conns "$APP_LOG" "$n" "listener=15006 orig=$APP_IP:15006"

say "inbound straight to $APP_IP:15001 lands on 15006 with original port 15001 (the other loop)"
n=$(conn_count "$APP_LOG")
ask client "$APP_IP" 15001
expect_eq "reply to the client's $APP_IP:15001" "$REPLY_LINE" "ORIG $APP_IP:15001"
expect_conns "$APP_LOG" "$n" "listener=15006 orig=$APP_IP:15001"

say "uid 1337 is not captured: the proxy's connection to $CLIENT_IP:8080 reaches the client pod"
n=$(conn_count "$APP_LOG")
nc=$(conn_count "$CLIENT_LOG")
ask app "$CLIENT_IP" 8080 "${AS_PROXY[@]}"
expect_eq "reply to the proxy's $CLIENT_IP:8080" "$REPLY_LINE" "ORIG $CLIENT_IP:8080"
expect_conns "$CLIENT_LOG" "$nc" "listener=8080 orig=$CLIENT_IP:8080"
expect_conns "$APP_LOG" "$n"

say "gid 1337 alone (uid 1000) is not captured either"
nc=$(conn_count "$CLIENT_LOG")
ask app "$CLIENT_IP" 8080 setpriv --reuid=1000 --regid=1337 --clear-groups
expect_eq "reply to uid 1000/gid 1337's $CLIENT_IP:8080" "$REPLY_LINE" "ORIG $CLIENT_IP:8080"
expect_conns "$CLIENT_LOG" "$nc" "listener=8080 orig=$CLIENT_IP:8080"
expect_conns "$APP_LOG" "$n"

say "uid 1337 to the service address $SVC_IP:80 is not captured: it leaves the pod and goes nowhere"
ask app "$SVC_IP" 80 "${AS_PROXY[@]}"
expect_eq "the proxy's $SVC_IP:80" "$REPLY_LINE" TIMEOUT
expect_conns "$APP_LOG" "$n"

say "127.0.0.1 is not captured, from the app or from the proxy"
ask app 127.0.0.1 8081
expect_eq "reply to the app's 127.0.0.1:8081" "$REPLY_LINE" "ORIG 127.0.0.1:8081"
ask app 127.0.0.1 8081 "${AS_PROXY[@]}"
expect_eq "reply to the proxy's 127.0.0.1:8081" "$REPLY_LINE" "ORIG 127.0.0.1:8081"
expect_conns "$APP_LOG" "$n" "listener=8081 orig=127.0.0.1:8081" "listener=8081 orig=127.0.0.1:8081"

say "the app reaching its own pod address ($APP_IP:8082) over lo is not captured"
n=$(conn_count "$APP_LOG")
ask app "$APP_IP" 8082
expect_eq "reply to the app's $APP_IP:8082" "$REPLY_LINE" "ORIG $APP_IP:8082"
expect_conns "$APP_LOG" "$n" "listener=8082 orig=$APP_IP:8082"

# An app calling itself through its service: its sidecar connects to the pod's own address.
say "the proxy (uid 1337) reaching its own pod address $APP_IP:8082 goes through 15006"
n=$(conn_count "$APP_LOG")
ask app "$APP_IP" 8082 "${AS_PROXY[@]}"
expect_eq "reply to the proxy's $APP_IP:8082" "$REPLY_LINE" "ORIG $APP_IP:8082"
expect_conns "$APP_LOG" "$n" "listener=15006 orig=$APP_IP:8082"

say "the proxy's connection from 127.0.0.6 (inbound passthrough) to $APP_IP:8082 is not captured"
n=$(conn_count "$APP_LOG")
got=$(pod_exec app timeout 5 "${AS_PROXY[@]}" socat -t 3 - "TCP:$APP_IP:8082,bind=127.0.0.6" \
    </dev/null 2>&1) || fail "socat from 127.0.0.6 to $APP_IP:8082 failed: $got"
expect_eq "reply to the proxy's $APP_IP:8082 from 127.0.0.6" "$got" "ORIG $APP_IP:8082"
expect_conns "$APP_LOG" "$n" "listener=8082 orig=$APP_IP:8082"

say "weir iptables --cleanup --dry-run prints the removal and changes nothing"
weir_ipt app --cleanup --dry-run
((RC == 0)) || fail "weir iptables --cleanup --dry-run exited $RC: $ERR"
[[ $OUT == *"-X ISTIO_OUTPUT"* && $OUT == *"-D OUTPUT -j ISTIO_OUTPUT"* ]] ||
    fail "the cleanup dry run does not remove ISTIO_OUTPUT and its jump: $OUT"
expect_eq "nat table after the cleanup dry run" "$(nat_table app)" "$nat_installed"

say "weir iptables --cleanup restores the nat table as it was, and nothing is captured any more"
weir_ipt app --cleanup
((RC == 0)) || fail "weir iptables --cleanup exited $RC: $ERR"
expect_eq "nat table after --cleanup" "$(nat_table app)" "$nat_before"
n=$(conn_count "$APP_LOG")
nc=$(conn_count "$CLIENT_LOG")
ask app "$CLIENT_IP" 8080
expect_eq "reply to the app's $CLIENT_IP:8080 after cleanup" "$REPLY_LINE" "ORIG $CLIENT_IP:8080"
expect_conns "$CLIENT_LOG" "$nc" "listener=8080 orig=$CLIENT_IP:8080"
expect_conns "$APP_LOG" "$n"
weir_ipt app --cleanup
((RC == 0)) || fail "a second --cleanup exited $RC: $ERR"

say "weir iptables with a bad option exits 2 and names it"
weir_ipt app --exclude-inbound-ports 80,http
expect_eq "exit status for a bad port list" "$RC" 2
[[ $ERR == *'"http"'* ]] || fail "the message does not name the bad port: $ERR"

say "the probes stop on SIGTERM with status 0 and no sanitizer report"
cluster_stop "$APP_PID" || fail "the app probe did not stop"
expect_eq "app probe exit status" "$STOP_RC" 0
cluster_stop "$CLIENT_PID" || fail "the client probe did not stop"
expect_eq "client probe exit status" "$STOP_RC" 0
for f in "$APP_LOG" "$CLIENT_LOG" "$WEIR_LOG"; do
    if sanitizer_report "$f"; then fail "sanitizer report in $f"; fi
done

say "PASS"
