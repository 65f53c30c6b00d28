#!/usr/bin/env bash
# 52_upstream_failures.sh: when the upstream cannot answer properly, the gateway answers as Envoy
# does, with the right status, body and response flag, and keeps serving everyone else.
# Pods: gw (weir gateway), echo (echo_server on :80, plus socat stand-ins on :82/:83 that send a
# malformed response and a truncated one), client (curl). Routes, all on host echo.local:
#   /refused  -> an endpoint port nothing listens on            503 UF,URX (Istio's default
#                                                               policy retried the connect twice)
#   /nowhere  -> an address no pod has (connect timeout 1 s,    503 UF, within ~1 s
#                retries: {attempts: 0})
#   /empty    -> a subset whose labels match no endpoint        503 UH "no healthy upstream"
#   /bad      -> a response with Content-Length and chunked     502 UPE
#   /short    -> a response cut short after its head            client sees a truncated body, UC
#   /reset    -> echo_server resets the connection unanswered   503 UC
#   /delay    -> answers after 5 s; stream idle timeout is 2 s  408 SI
#   anything else -> echo_server                                200
# Then header and idle timeouts: a partial request head gets 408 and a close at the 1 s header
# deadline; an idle keep-alive connection is closed at the 2 s idle timeout.
# shellcheck disable=SC2016
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
ECHO_SERVER=${WEIR_ECHO_SERVER:-$WEIR_BUILD_DIR/tests/echo_server}
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"
source "$WEIR_SOURCE_DIR/tests/lib/gateway.sh"

require_root
require_cmd ip curl socat timeout
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"
[[ -x $ECHO_SERVER ]] || fail "echo_server $ECHO_SERVER not found (build first)"

GW_IP=10.244.0.10
CLIENT_IP=10.244.0.20
ECHO_IP=10.244.0.30
NOWHERE_IP=10.244.0.99

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
CLUSTER_EXTRA_LOGS+=("$D/access.log")
mkdir -p "$D/config"

# se NAME PORT ADDRESS TARGET_PORT [LABELS]: a ServiceEntry with one inline endpoint.
se() {
    cat <<YAML
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: $1, namespace: default}
spec:
  hosts: [$1.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: $2, name: http, protocol: HTTP}]
  endpoints: [{address: $3, ports: {http: $4}, labels: {version: v1}}]
YAML
}
{
    cat <<'YAML'
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.local]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /refused}}]
    route: [{destination: {host: refused}}]
  - match: [{uri: {prefix: /nowhere}}]
    route: [{destination: {host: nowhere}}]
    retries: {attempts: 0}
  - match: [{uri: {prefix: /empty}}]
    route: [{destination: {host: echo, subset: v9}}]
  - match: [{uri: {prefix: /bad}}]
    route: [{destination: {host: bad}}]
  - match: [{uri: {prefix: /short}}]
    route: [{destination: {host: short}}]
  - route: [{destination: {host: echo}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  subsets: [{name: v9, labels: {version: v9}}]
YAML
    se refused 80 "$ECHO_IP" 81
    se nowhere 80 "$NOWHERE_IP" 80
    se echo 80 "$ECHO_IP" 80
    se bad 80 "$ECHO_IP" 82
    se short 80 "$ECHO_IP" 83
} >"$D/config/mesh.yaml"

pod_add gw "$GW_IP" || fail "pod gw"
pod_add echo "$ECHO_IP" || fail "pod echo"
pod_add client "$CLIENT_IP" "$GW_IP echo.local" || fail "pod client"

pod_spawn echo "$D/echo_server.log" "$ECHO_SERVER" --listen "$ECHO_IP:80" --name echo
printf 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' >"$D/bad.http"
printf 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b' >"$D/short.http"
pod_spawn echo "$D/bad.log" socat TCP-LISTEN:82,fork,reuseaddr SYSTEM:"cat $D/bad.http; sleep 1"
pod_spawn echo "$D/short.log" socat TCP-LISTEN:83,fork,reuseaddr SYSTEM:"cat $D/short.http; sleep 0.2"
wait_port client "$ECHO_IP" 80 20 || fail "echo_server does not listen"
wait_port client "$ECHO_IP" 82 20 || fail "socat :82 does not listen"
wait_port client "$ECHO_IP" 83 20 || fail "socat :83 does not listen"

gateway_start gw "$D/config" "$D/gateway.log" "$D/access.log" \
    --connect-timeout 1 --stream-idle-timeout 2 --request-headers-timeout 1 --idle-timeout 2

# get PATH: prints "STATUS BODY" for GET http://echo.local/PATH
get() {
    pod_exec client curl -s --max-time 10 -w ' %{http_code}' "http://echo.local$1" || true
}

say "a port nothing listens on: Istio's default policy retries the connect twice, then 503 with Envoy's connect-failure body, flags UF,URX"
out=$(get /refused)
[[ $out == "upstream connect error or disconnect/reset before headers. reset reason: connection failure 503" ]] ||
    fail "GET /refused gave '$out'"
access_line '"GET /refused HTTP/1.1" 503 UF,URX ' "$D/access.log" >/dev/null || fail "no 503 UF,URX log line for /refused"

say "a route to an address nobody has fails at the 1 s connect timeout with 503 UF"
start=$(date +%s%N)
out=$(get /nowhere)
ms=$((($(date +%s%N) - start) / 1000000))
[[ $out == *"reset reason: connection timeout 503" ]] || fail "GET /nowhere gave '$out'"
((ms >= 900 && ms < 2500)) || fail "GET /nowhere took ${ms} ms, want about 1000"
access_line '"GET /nowhere HTTP/1.1" 503 UF ' "$D/access.log" >/dev/null || fail "no 503 UF log line for /nowhere"

say "a subset whose labels match no endpoint answers 503 'no healthy upstream', flag UH"
out=$(get /empty)
[[ $out == "no healthy upstream 503" ]] || fail "GET /empty gave '$out'"
access_line '"GET /empty HTTP/1.1" 503 UH ' "$D/access.log" >/dev/null || fail "no 503 UH log line"

say "a malformed upstream response (Content-Length and chunked) answers 502, flag UPE"
out=$(get /bad)
[[ $out == *"reset reason: protocol error 502" ]] || fail "GET /bad gave '$out'"
access_line '"GET /bad HTTP/1.1" 502 UPE ' "$D/access.log" >/dev/null || fail "no 502 UPE log line"

say "a response cut short after its head reaches the client truncated, never padded; flag UC"
rc=0
body=$(pod_exec client curl -s --max-time 10 http://echo.local/short) || rc=$?
((rc == 18)) || fail "curl exit status for the truncated response is $rc, want 18 (partial file)"
[[ $body == "only ten b" ]] || fail "truncated body is '$body'"
access_line '"GET /short HTTP/1.1" 200 UC ' "$D/access.log" >/dev/null || fail "no 200 UC log line for /short"

say "an upstream that resets the connection before answering gives 503 UC"
out=$(get /reset)
[[ $out == *"reset reason: connection termination 503" ]] || fail "GET /reset gave '$out'"
access_line '"GET /reset HTTP/1.1" 503 UC ' "$D/access.log" >/dev/null || fail "no 503 UC log line"

say "an upstream silent for longer than the 2 s stream idle timeout gives 408, flag SI"
start=$(date +%s%N)
out=$(get /delay/5000)
ms=$((($(date +%s%N) - start) / 1000000))
[[ $out == "stream timeout 408" ]] || fail "GET /delay/5000 gave '$out'"
((ms >= 1900 && ms < 4000)) || fail "the stream timeout took ${ms} ms, want about 2000"

say "after all of that the gateway still serves: 20 GETs answer 200"
for i in $(seq 1 20); do
    code=$(pod_exec client curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://echo.local/ok/$i")
    [[ $code == 200 ]] || fail "GET /ok/$i gave $code"
done

say "a request head still incomplete at the 1 s header deadline gets 408 with Connection: close"
resp=$(pod_exec client timeout 5 bash -c '
    exec 3<>/dev/tcp/echo.local/80
    printf "GET / HTTP/1.1\r\nHost: echo.local\r\nX-Slow: " >&3
    start=$(date +%s%N)
    cat <&3
    echo "ELAPSED $((($(date +%s%N) - start) / 1000000))"' || true)
[[ $resp == "HTTP/1.1 408"* ]] || fail "slow head got: $resp"
grep -qi '^connection: close' <<<"$resp" || fail "the 408 has no Connection: close: $resp"
ms=$(sed -n 's/^ELAPSED //p' <<<"$resp")
((ms >= 900 && ms < 3000)) || fail "the 408 came after ${ms} ms, want about 1000"

say "an idle keep-alive connection is closed at the 2 s idle timeout"
resp=$(pod_exec client timeout 8 bash -c '
    exec 3<>/dev/tcp/echo.local/80
    printf "GET /first HTTP/1.1\r\nHost: echo.local\r\n\r\n" >&3
    start=$(date +%s%N)
    cat <&3 >/dev/null
    echo "ELAPSED $((($(date +%s%N) - start) / 1000000))"' || true)
ms=$(sed -n 's/^ELAPSED //p' <<<"$resp")
[[ -n $ms ]] || fail "the idle connection was not closed within 8 s"
((ms >= 1900 && ms < 4000)) || fail "the idle connection closed after ${ms} ms, want about 2000"

say "weir gateway exits 0 on SIGTERM, with no sanitizer report"
gateway_stop_clean "$D/gateway.log"
echo "PASS: 52_upstream_failures"
