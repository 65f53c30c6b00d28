#!/usr/bin/env bash
# 40_malformed.sh: malformed HTTP/1.1 requests to `weir gateway` get their status with
# `Connection: close`, the connection is closed, the backend never sees them, and a normal
# request on a new connection still works after each one.
# Requests are sent raw from the client pod with bash's /dev/tcp (no curl, no python), from
# files written with printf. Pods: gw (weir gateway), echo (echo_server --log), client.
# shellcheck disable=SC2016,SC2119  # inner `bash -c` scripts; cluster_trap takes no script args
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
ECHO_SERVER=${WEIR_ECHO_SERVER:-$WEIR_BUILD_DIR/tests/echo_server}

# shellcheck source=SCRIPTDIR/../lib/netns.sh
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"

require_root
require_cmd ip curl timeout
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"
[[ -x $ECHO_SERVER ]] || fail "echo_server $ECHO_SERVER not found (build first)"

GW_IP=10.244.0.10
CLIENT_IP=10.244.0.20
ECHO_IP=10.244.0.30
READ_TIMEOUT=${WEIR_MALFORMED_READ_TIMEOUT:-5}
# WEIR_E2E_KEEP_GOING=1 runs every case and lists all failures at the end (for debugging).
KEEP_GOING=${WEIR_E2E_KEEP_GOING:-0}
FAILURES=()
# case_fail MSG: fail now, or note it and go on to the next case under WEIR_E2E_KEEP_GOING=1.
case_fail() {
    if [[ $KEEP_GOING == 1 ]]; then
        printf 'FAIL (continuing): %s\n' "$*" >&2
        FAILURES+=("$*")
        return 0
    fi
    fail "$@"
}

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
ECHO_LOG="$D/echo-requests.log"
CLUSTER_EXTRA_LOGS+=("$D/access.log" "$ECHO_LOG")

mkdir -p "$D/config" "$D/req" "$D/resp"
cp "$WEIR_SOURCE_DIR/tests/data/e2e/echo-gateway.yaml" "$D/config/echo.yaml"

pod_add gw "$GW_IP" || fail "pod gw"
pod_add echo "$ECHO_IP" || fail "pod echo"
pod_add client "$CLIENT_IP" "$GW_IP gateway echo.local" || fail "pod client"
pod_spawn echo "$D/echo_server.log" "$ECHO_SERVER" --listen "$ECHO_IP:80" --name echo --log "$ECHO_LOG"
pod_spawn gw "$D/gateway.log" "$WEIR_BIN" gateway -c "$D/config" \
    --labels istio=ingressgateway --namespace istio-system --access-log "$D/access.log"
GW_PID=$SPAWNED_PID

say "the echo server and the gateway accept connections, and echo.local routes to the echo pod"
wait_port client "$ECHO_IP" 80 20 || fail "echo_server does not listen on $ECHO_IP:80"
wait_port client "$GW_IP" 80 30 || fail "weir gateway does not listen on $GW_IP:80"
deadline=$((SECONDS + 15))
code=""
while ((SECONDS < deadline)); do
    code=$(pod_exec client curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://echo.local/ready || true)
    [[ $code == 200 ]] && break
    sleep 0.3
done
[[ $code == 200 ]] || fail "GET http://echo.local/ready through the gateway never answered 200 (last: '$code')"

# The malformed requests, byte for byte. Every path starts with /malformed/ so that one reaching
# the backend shows in its log.
H='Host: echo.local\r\n'
# shellcheck disable=SC2059  # the format holds the escapes
req() { printf "$2" >"$D/req/$1"; }   # req NAME PRINTF_FORMAT
req cl_te "POST /malformed/cl_te HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
req two_cl "POST /malformed/two_cl HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
req two_cl_same "POST /malformed/two_cl_same HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
req bad_chunk "POST /malformed/bad_chunk HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
req obs_fold "GET /malformed/obs_fold HTTP/1.1\r\n${H}X-Folded: a\r\n b\r\n\r\n"
req nul_value "GET /malformed/nul_value HTTP/1.1\r\n${H}X-Nul: a\0b\r\n\r\n"
req space_name "GET /malformed/space_name HTTP/1.1\r\n${H}X Bad: 1\r\n\r\n"
req space_colon "GET /malformed/space_colon HTTP/1.1\r\n${H}X-Bad : 1\r\n\r\n"
req te_http10 "POST /malformed/te_http10 HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
req no_host "GET /malformed/no_host HTTP/1.1\r\n\r\n"
req two_host "GET /malformed/two_host HTTP/1.1\r\n${H}${H}\r\n"
{ # 101 header fields: Host and 100 more
    printf 'GET /malformed/many_headers HTTP/1.1\r\nHost: echo.local\r\n'
    for i in $(seq 1 100); do printf 'X-H-%d: v\r\n' "$i"; done
    printf '\r\n'
} >"$D/req/many_headers"
{ # 61 KiB of header bytes in 62 fields: 61 fields of a 1 KiB value, and Host
    printf 'GET /malformed/big_headers HTTP/1.1\r\nHost: echo.local\r\n'
    v=$(head -c 1024 /dev/zero | tr '\0' a)
    for i in $(seq 1 61); do printf 'X-Big-%02d: %s\r\n' "$i" "$v"; done
    printf '\r\n'
} >"$D/req/big_headers"
{ # a 17 KiB request line
    printf 'GET /malformed/long_line?q=%s HTTP/1.1\r\nHost: echo.local\r\n\r\n' \
        "$(head -c $((17 * 1024)) /dev/zero | tr '\0' a)"
} >"$D/req/long_line"
req te_gzip "POST /malformed/te_gzip HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
req garbage '\x00\x01\x02\x03\xff\xfe\xfd GARBAGE /malformed/garbage \x16\x03\x01\r\n\r\n'

CASES=(
    "cl_te 400 Content-Length and Transfer-Encoding together"
    "two_cl 400 two Content-Length headers (5 and 6)"
    "two_cl_same 400 two Content-Length headers (5 and 5)"
    "bad_chunk 400 a chunk size that is not hex"
    "obs_fold 400 an obs-fold header line"
    "nul_value 400 a NUL byte in a header value"
    "space_name 400 a space inside a header name"
    "space_colon 400 a space between a header name and its colon"
    "te_http10 400 Transfer-Encoding in an HTTP/1.0 request"
    "no_host 400 an HTTP/1.1 request without Host"
    "two_host 400 two Host headers"
    "many_headers 431 101 header fields"
    "big_headers 431 61 KiB of header bytes"
    "long_line 414 a 17 KiB request line"
    "te_gzip 501 Transfer-Encoding: gzip, chunked"
    "garbage 400 garbage bytes instead of a request"
)

# raw_send NAME: sends req/NAME on a new connection from the client pod and reads until the
# gateway closes it or READ_TIMEOUT passes. The response goes to resp/NAME; sets RAW_RC:
# 0 closed by the peer (EOF), 1 reset by the peer, 124 still open at the timeout.
raw_send() {
    local name=$1
    RAW_RC=0
    # shellcheck disable=SC2016  # expanded by the inner bash
    pod_exec client timeout $((READ_TIMEOUT + 5)) bash -c '
        exec 3<>"/dev/tcp/$1/80" || exit 2
        cat "$2" >&3 2>/dev/null &      # write and read at once: the answer may come early
        timeout "$4" cat <&3 >"$3" 2>/dev/null
        rc=$?
        kill $! 2>/dev/null; wait $! 2>/dev/null
        exit $rc' _ "$GW_IP" "$D/req/$name" "$D/resp/$name" "$READ_TIMEOUT" || RAW_RC=$?
}

# check_case NAME STATUS: one malformed request and what must come back.
check_case() {
    local name=$1 want=$2 rhead status got
    raw_send "$name"
    got=$(head -c 300 "$D/resp/$name" 2>/dev/null | cat -v)
    case $RAW_RC in
    0 | 1) ;;
    124) case_fail "$name: the connection was still open ${READ_TIMEOUT}s after the request; got: $got"; return ;;
    2) fail "$name: could not connect to $GW_IP:80" ;;
    *) case_fail "$name: the raw sender failed ($RAW_RC)"; return ;;
    esac
    rhead=$(tr -d '\r' <"$D/resp/$name" | sed '/^$/q')
    status=$(head -n 1 <<<"$rhead")
    if ! [[ $status =~ ^HTTP/1\.[01]\ ([0-9]{3}) ]]; then
        case_fail "$name: no HTTP status line in the answer: $got"
        return
    fi
    [[ ${BASH_REMATCH[1]} == "$want" ]] || case_fail "$name: status ${BASH_REMATCH[1]}, want $want ($status)"
    grep -qiE '^connection:[[:space:]]*close[[:space:]]*$' <<<"$rhead" ||
        case_fail "$name: no 'Connection: close' in the answer head: $(tr '\n' '|' <<<"$rhead")"
}

ok_count=0
for c in "${CASES[@]}"; do
    read -r name want what <<<"$c"
    say "$what: answered $want with Connection: close, and the connection is closed"
    check_case "$name" "$want"
    cluster_pid_alive "$GW_PID" || fail "$name: weir gateway exited"

    say "after $name, a normal request on a new connection still works"
    code=$(pod_exec client curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://echo.local/ok/$name") || true
    [[ $code == 200 ]] || case_fail "status of GET /ok/$name after $name: got '$code', want 200"
    ok_count=$((ok_count + 1))
done

say "the backend never saw a malformed request (echo_server log), and saw every normal one"
sleep 0.3
leaked=$(grep -a -e '/malformed' -e 'GARBAGE' "$ECHO_LOG" || true)
[[ -z $leaked ]] || case_fail "malformed requests reached the backend: $leaked"
seen=$(grep -c '^GET /ok/' "$ECHO_LOG" || true)
[[ $seen == "$ok_count" ]] || case_fail "the backend saw $seen of the $ok_count normal requests"
if ((${#FAILURES[@]} > 0)); then
    printf 'FAIL: %s\n' "${FAILURES[@]}" >&2
    fail "${#FAILURES[@]} expectations failed"
fi

say "weir gateway exits 0 on SIGTERM, with no sanitizer report in its log"
cluster_stop "$GW_PID" 20 || fail "weir gateway did not exit within 20s of SIGTERM"
[[ $STOP_RC == 0 ]] || fail "weir gateway exited with status $STOP_RC on SIGTERM"
if sanitizer_report "$D/gateway.log"; then fail "sanitizer report in $D/gateway.log"; fi

echo "PASS: 40_malformed"
