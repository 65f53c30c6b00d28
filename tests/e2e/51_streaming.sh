#!/usr/bin/env bash
# 51_streaming.sh: bodies stream through `weir gateway` intact and in bounded memory.
# Pods: gw (weir gateway), echo (tests/tools/echo_server), client (curl). The Istio YAML is
# written below: a Gateway on port 80 selecting istio=ingressgateway, a VirtualService for host
# echo.local bound to it, and a ServiceEntry echo.default.svc.cluster.local whose one
# WorkloadEntry is the echo pod.
#
# Memory bound: the gateway's VmRSS (/proc/PID/status, sampled every 100 ms during a 1 GiB
# download and a 256 MiB upload) must stay below 64 MiB. Under AddressSanitizer (libasan mapped
# into the gateway) RSS carries ASan's own shadow and allocator overhead, so there the bound is
# 64 MiB above the RSS measured just before each transfer, and the gateway runs with
# quarantine_size_mb=16 (ASan's default quarantine of 256 MiB would otherwise hold freed
# buffers and count them as resident). Override with WEIR_RSS_LIMIT_KB (absolute, any build).
# shellcheck disable=SC2016,SC2119  # inner `bash -c` scripts; cluster_trap takes no script args
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
ECHO_SERVER=${WEIR_ECHO_SERVER:-$WEIR_BUILD_DIR/tests/echo_server}

# shellcheck source=SCRIPTDIR/../lib/netns.sh
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"

require_root
require_cmd ip curl sha256sum timeout head awk
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"
[[ -x $ECHO_SERVER ]] || fail "echo_server $ECHO_SERVER not found (build first)"

GW_IP=10.244.0.10
CLIENT_IP=10.244.0.20
ECHO_IP=10.244.0.30
LIMIT_KB=$((64 * 1024))

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
ECHO_LOG="$D/echo-requests.log"
CLUSTER_EXTRA_LOGS+=("$D/access.log" "$ECHO_LOG")

mkdir -p "$D/config"
cp "$WEIR_SOURCE_DIR/tests/data/e2e/echo-gateway.yaml" "$D/config/echo.yaml"

pod_add gw "$GW_IP" || fail "pod gw"
pod_add echo "$ECHO_IP" "$ECHO_IP echo.default.svc.cluster.local" || fail "pod echo"
pod_add client "$CLIENT_IP" "$GW_IP gateway echo.local" || fail "pod client"

pod_spawn echo "$D/echo_server.log" "$ECHO_SERVER" --listen "$ECHO_IP:80" --name echo --log "$ECHO_LOG"
ECHO_PID=$SPAWNED_PID

asan=0
gw_env=()
# (no `ldd | grep -q` here: with pipefail, grep -q's early exit can fail the pipeline)
libs=$(ldd "$WEIR_BIN" 2>/dev/null || true)
if [[ $libs == *libasan* ]] || grep -qa __asan_init "$WEIR_BIN"; then
    asan=1
    # first, so that a quarantine_size_mb in the caller's ASAN_OPTIONS wins
    gw_env=(env "ASAN_OPTIONS=quarantine_size_mb=16${ASAN_OPTIONS:+:$ASAN_OPTIONS}")
fi
pod_spawn gw "$D/gateway.log" "${gw_env[@]}" "$WEIR_BIN" gateway -c "$D/config" \
    --labels istio=ingressgateway --namespace istio-system --access-log "$D/access.log"
GW_PID=$SPAWNED_PID

say "the echo server and the gateway accept connections"
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

# field NAME TEXT: the value of line "NAME=value" in TEXT.
field() { grep -m 1 "^$1=" <<<"$2" | sed "s/^$1=//"; }

# check_rss LABEL MAX_KB BASE_KB: the bound for this build (see the header).
check_rss() {
    local label=$1 max=$2 base=$3 limit
    if [[ -n ${WEIR_RSS_LIMIT_KB:-} ]]; then
        limit=$WEIR_RSS_LIMIT_KB
    elif ((asan)); then
        limit=$((base + LIMIT_KB))
    else
        limit=$LIMIT_KB
    fi
    echo "   gateway VmRSS during $label: before ${base} kB, max ${max} kB, limit ${limit} kB$( ((asan)) && echo ' (ASan: 64 MiB above before)')"
    ((max < limit)) || fail "gateway VmRSS reached ${max} kB during $label, limit ${limit} kB"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$GW_PID/status" 2>/dev/null || echo 0; }

# sample_while PID: samples the gateway's VmRSS every 100 ms until PID exits; sets RSS_MAX and
# RSS_SAMPLES.
sample_while() {
    local pid=$1 r
    RSS_MAX=0
    RSS_SAMPLES=0
    while kill -0 "$pid" 2>/dev/null; do
        r=$(rss_kb)
        ((r > RSS_MAX)) && RSS_MAX=$r
        RSS_SAMPLES=$((RSS_SAMPLES + 1))
        sleep 0.1
    done
}

say "a 10 MiB random POST to the default path arrives whole: body_sha256 equals sha256sum of the file"
head -c $((10 * 1024 * 1024)) /dev/urandom >"$D/10m.bin"
want_sha=$(sha256sum "$D/10m.bin" | cut -d' ' -f1)
resp=$(pod_exec client curl -sS --max-time 60 -H 'Content-Type: application/octet-stream' \
    --data-binary @"$D/10m.bin" http://echo.local/upload) || fail "curl POST 10 MiB failed"
expect_eq "body_bytes of the 10 MiB POST" "$(field body_bytes "$resp")" $((10 * 1024 * 1024))
expect_eq "body_sha256 of the 10 MiB POST" "$(field body_sha256 "$resp")" "$want_sha"

say "a 10 MiB POST to /echo comes back identical (sha256)"
code=$(pod_exec client curl -sS --max-time 60 --data-binary @"$D/10m.bin" -o "$D/10m.echo" \
    -w '%{http_code}' http://echo.local/echo) || fail "curl POST /echo failed"
expect_eq "status of POST /echo" "$code" 200
expect_eq "size of the echoed body" "$(wc -c <"$D/10m.echo")" $((10 * 1024 * 1024))
expect_eq "sha256 of the echoed body" "$(sha256sum "$D/10m.echo" | cut -d' ' -f1)" "$want_sha"
rm -f "$D/10m.echo"

say "a chunked 10 MiB upload (Transfer-Encoding: chunked) arrives intact"
resp=$(pod_exec client curl -sS --max-time 60 -H 'Transfer-Encoding: chunked' \
    --data-binary @"$D/10m.bin" http://echo.local/chunked) || fail "curl chunked POST failed"
expect_eq "body_bytes of the chunked upload" "$(field body_bytes "$resp")" $((10 * 1024 * 1024))
expect_eq "body_sha256 of the chunked upload" "$(field body_sha256 "$resp")" "$want_sha"
rm -f "$D/10m.bin"

say "keep-alive: 50 requests in one curl invocation all answer 200 over a single connection"
args=()
for i in $(seq 1 50); do args+=(-o /dev/null "http://echo.local/keepalive/$i"); done
out=$(pod_exec client curl -sS --max-time 60 -w 'RESULT %{http_code} %{num_connects}\n' "${args[@]}") ||
    fail "curl keep-alive run failed: $out"
expect_eq "answers to the keep-alive run" "$(grep -c '^RESULT ' <<<"$out")" 50
expect_eq "answers other than 200" "$(grep '^RESULT ' <<<"$out" | grep -vc '^RESULT 200 ' || true)" 0
expect_eq "connections opened for 50 requests" \
    "$(awk '/^RESULT / {n += $3} END {print n}' <<<"$out")" 1

say "x-request-id is generated and reaches the backend; x-forwarded-for carries the client IP"
resp=$(pod_exec client curl -sS --max-time 10 http://echo.local/headers) || fail "curl /headers failed"
rid=$(grep -m 1 -i '^header=x-request-id:' <<<"$resp" | sed 's/^[^:]*:[[:space:]]*//') || true
[[ -n $rid ]] || fail "the backend saw no x-request-id header; it saw: $resp"
xff=$(grep -m 1 -i '^header=x-forwarded-for:' <<<"$resp" | sed 's/^[^:]*:[[:space:]]*//') || true
[[ ",${xff// /}," == *",$CLIENT_IP,"* ]] || fail "x-forwarded-for '$xff' does not carry the client IP $CLIENT_IP"
sleep 0.2
grep -q "^GET /headers .*x-request-id=$rid\( \|$\)" "$ECHO_LOG" ||
    fail "the echo_server log has no 'GET /headers ... x-request-id=$rid' line"

say "a 1 GiB download from /bytes/1073741824 arrives complete while the gateway's VmRSS stays bounded"
size=$((1024 * 1024 * 1024))
base=$(rss_kb)
(
    pod_exec client bash -c 'set -o pipefail; curl -sS -f --max-time 300 "$1" | wc -c' _ \
        "http://echo.local/bytes/$size" >"$D/download.out" 2>"$D/download.err"
) &
dl=$!
sample_while "$dl"
wait "$dl" || fail "the 1 GiB download failed: $(cat "$D/download.err")"
expect_eq "bytes received (wc -c)" "$(tr -d '[:space:]' <"$D/download.out")" "$size"
((RSS_SAMPLES >= 3)) || echo "   (only $RSS_SAMPLES RSS samples: the transfer was very fast)"
check_rss "the 1 GiB download" "$RSS_MAX" "$base"
cluster_pid_alive "$GW_PID" || fail "weir gateway exited during the download"

say "a 256 MiB upload arrives whole (sha256) while the gateway's VmRSS stays bounded"
size=$((256 * 1024 * 1024))
head -c "$size" /dev/urandom >"$D/256m.bin"
want_sha=$(sha256sum "$D/256m.bin" | cut -d' ' -f1)
base=$(rss_kb)
(
    pod_exec client curl -sS -f --max-time 300 -X POST -T "$D/256m.bin" \
        http://echo.local/upload-256m >"$D/upload.out" 2>"$D/upload.err"
) &
ul=$!
sample_while "$ul"
wait "$ul" || fail "the 256 MiB upload failed: $(cat "$D/upload.err")"
rm -f "$D/256m.bin"
resp=$(cat "$D/upload.out")
expect_eq "body_bytes of the 256 MiB upload" "$(field body_bytes "$resp")" "$size"
expect_eq "body_sha256 of the 256 MiB upload" "$(field body_sha256 "$resp")" "$want_sha"
check_rss "the 256 MiB upload" "$RSS_MAX" "$base"

say "the gateway and the echo server are still running"
cluster_pid_alive "$GW_PID" || fail "weir gateway exited"
cluster_pid_alive "$ECHO_PID" || fail "echo_server exited"

say "weir gateway exits 0 on SIGTERM, with no sanitizer report in its log"
cluster_stop "$GW_PID" 20 || fail "weir gateway did not exit within 20s of SIGTERM"
[[ $STOP_RC == 0 ]] || fail "weir gateway exited with status $STOP_RC on SIGTERM"
if sanitizer_report "$D/gateway.log"; then fail "sanitizer report in $D/gateway.log"; fi

echo "PASS: 51_streaming"
