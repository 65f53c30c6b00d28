#!/usr/bin/env bash
# 53_http_semantics.sh: HTTP/1.1 through the gateway behaves as through Envoy: HEAD, 204 and 304
# keep the connection usable; Expect: 100-continue is answered by the proxy; hop-by-hop headers
# and those named in Connection never reach the backend; pipelined requests are answered in
# order; HTTP/1.0 works; routing by header, rewrites (x-envoy-original-path), redirects and
# direct responses follow the VirtualService; the JSON access log carries the fields.
# Pods: gw (weir gateway, --log-format json), echo (two echo_servers, v1 on :80 and v2 on :8080),
# client (curl).
# shellcheck disable=SC2016
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
ECHO_SERVER=${WEIR_ECHO_SERVER:-$WEIR_BUILD_DIR/tests/echo_server}
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"
source "$WEIR_SOURCE_DIR/tests/lib/gateway.sh"

require_root
require_cmd ip curl timeout
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"
[[ -x $ECHO_SERVER ]] || fail "echo_server $ECHO_SERVER not found (build first)"

GW_IP=10.244.0.10
CLIENT_IP=10.244.0.20
ECHO_IP=10.244.0.30

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
CLUSTER_EXTRA_LOGS+=("$D/access.log")
mkdir -p "$D/config"
cat >"$D/config/mesh.yaml" <<YAML
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - {port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}
  - {port: {number: 81, name: http-redirect, protocol: HTTP}, hosts: ["*"], tls: {httpsRedirect: true}}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.local]
  gateways: [gw]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: echo, subset: v2}}]
  - match: [{uri: {prefix: /v1/}}]
    rewrite: {uri: /}
    route: [{destination: {host: echo, subset: v1}}]
  - match: [{uri: {exact: /renamed}}]
    rewrite: {uri: /new/path, authority: new.example}
    route: [{destination: {host: echo, subset: v1}}]
  - match: [{uri: {regex: "/old/[0-9]+"}}]
    redirect: {uri: /moved, authority: new.example}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - match: [{uri: {prefix: /q}, queryParams: {mode: {exact: v2}}}]
    route: [{destination: {host: echo, subset: v2}}]
  - route: [{destination: {host: echo, subset: v1}}]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: default}
spec: {address: $ECHO_IP, labels: {app: echo, version: v1}}
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata: {name: echo-v2, namespace: default}
spec: {address: $ECHO_IP, ports: {http: 8080}, labels: {app: echo, version: v2}}
YAML

pod_add gw "$GW_IP" || fail "pod gw"
pod_add echo "$ECHO_IP" || fail "pod echo"
pod_add client "$CLIENT_IP" "$GW_IP echo.local" || fail "pod client"
pod_spawn echo "$D/echo-v1.log" "$ECHO_SERVER" --listen "$ECHO_IP:80" --name v1 --log "$D/requests-v1.log"
pod_spawn echo "$D/echo-v2.log" "$ECHO_SERVER" --listen "$ECHO_IP:8080" --name v2 --log "$D/requests-v2.log"
wait_port client "$ECHO_IP" 80 20 || fail "echo v1 does not listen"
wait_port client "$ECHO_IP" 8080 20 || fail "echo v2 does not listen"
gateway_start gw "$D/config" "$D/gateway.log" "$D/access.log" --log-format json

c() { pod_exec client curl -sS --max-time 10 "$@"; }
field() { grep -m 1 "^$1=" <<<"$2" | sed "s/^$1=//"; }

say "HEAD, 204 and 304 have no body and leave the connection usable for the next request"
out=$(c -I -w '%{http_code} %{size_download} %{num_connects}\n' -o /dev/null http://echo.local/bytes/100 \
    -o /dev/null http://echo.local/status/204 -o /dev/null http://echo.local/bytes/7) ||
    fail "HEAD run failed: $out"
expect_eq "HEAD results" "$(tr '\n' ' ' <<<"$out")" "200 0 1 204 0 0 200 0 0 "
hdrs=$(c -I http://echo.local/bytes/100)
grep -qi '^content-length: 100' <<<"$hdrs" || fail "HEAD lost the backend's Content-Length: $hdrs"
out=$(c -w '%{http_code} %{size_download} %{num_connects}\n' -o /dev/null http://echo.local/status/204 \
    -o /dev/null http://echo.local/status/304 -o /dev/null http://echo.local/after) ||
    fail "204/304 run failed"
expect_eq "204/304 results" "$(tr '\n' ' ' <<<"$out")" "204 0 1 304 0 0 200 $(c http://echo.local/after | wc -c) 0 "

say "Expect: 100-continue is answered by the proxy at once, and the backend never sees Expect"
head -c 4096 /dev/urandom >"$D/4k.bin"
start=$(date +%s%N)
resp=$(c -H 'Expect: 100-continue' --data-binary @"$D/4k.bin" http://echo.local/expect)
ms=$((($(date +%s%N) - start) / 1000000))
expect_eq "body_bytes with Expect" "$(field body_bytes "$resp")" 4096
((ms < 900)) || fail "the upload waited ${ms} ms: no 100 Continue came (curl waits 1 s)"
grep -qi '^header=expect:' <<<"$resp" && fail "the backend saw the Expect header"

say "hop-by-hop headers, and those named in Connection, are removed before the backend"
resp=$(c -H 'Connection: keep-alive, X-Drop-Me' -H 'X-Drop-Me: 1' -H 'Keep-Alive: timeout=5' \
    -H 'Proxy-Connection: keep-alive' -H 'TE: trailers' -H 'Upgrade: foo' -H 'X-Keep: 1' http://echo.local/hop)
for h in connection x-drop-me keep-alive proxy-connection te upgrade; do
    grep -qi "^header=$h:" <<<"$resp" && fail "the backend saw hop-by-hop header $h"
done
grep -qi '^header=x-keep: 1' <<<"$resp" || fail "an end-to-end header was dropped"

say "two pipelined requests in one write are answered in order on one connection"
resp=$(pod_exec client timeout 5 bash -c '
    exec 3<>/dev/tcp/echo.local/80
    printf "GET /first HTTP/1.1\r\nHost: echo.local\r\n\r\nGET /second HTTP/1.1\r\nHost: echo.local\r\nConnection: close\r\n\r\n" >&3
    cat <&3' || true)
expect_eq "responses to the pipelined pair" "$(grep -c '^HTTP/1.1 200' <<<"$resp")" 2
first=$(grep -n '^path=/first' <<<"$resp" | cut -d: -f1)
second=$(grep -n '^path=/second' <<<"$resp" | cut -d: -f1)
[[ -n $first && -n $second ]] && ((first < second)) || fail "pipelined answers out of order: $resp"

say "HTTP/1.0 requests are answered completely"
resp=$(c -0 http://echo.local/ten) || fail "HTTP/1.0 GET failed"
expect_eq "path seen for the HTTP/1.0 GET" "$(field path "$resp")" /ten

say "a header match routes to v2 (case-sensitive), everything else to v1"
expect_eq "end-user: jason" "$(field name "$(c -H 'end-user: jason' http://echo.local/x)")" v2
expect_eq "end-user: Jason" "$(field name "$(c -H 'end-user: Jason' http://echo.local/x)")" v1
expect_eq "no end-user" "$(field name "$(c http://echo.local/x)")" v1
expect_eq "?mode=v2" "$(field name "$(c 'http://echo.local/q?a=1&mode=v2')")" v2
expect_eq "?mode=v3" "$(field name "$(c 'http://echo.local/q?mode=v3')")" v1

say "a Host with a port and in upper case still finds the virtual host"
expect_eq "Host: ECHO.LOCAL:80" "$(field name "$(c -H 'Host: ECHO.LOCAL:80' http://echo.local/x)")" v1

say "rewrite.uri replaces exactly the matched prefix and keeps the query; x-envoy-original-path carries the original"
resp=$(c 'http://echo.local/v1/get?x=1')
expect_eq "upstream path" "$(field path "$resp")" '/get?x=1'
grep -qi '^header=x-envoy-original-path: /v1/get?x=1$' <<<"$resp" || fail "no x-envoy-original-path: $resp"

say "an exact-match rewrite replaces the whole path; rewrite.authority sets Host"
resp=$(c 'http://echo.local/renamed?key=value')
expect_eq "upstream path" "$(field path "$resp")" '/new/path?key=value'
expect_eq "upstream host" "$(field host "$resp")" new.example

say "a redirect answers 301 with the new location; a direct response answers its status and body"
out=$(c -o /dev/null -w '%{http_code} %{redirect_url}' http://echo.local/old/42)
expect_eq "redirect" "$out" "301 http://new.example/moved"
out=$(c -w ' %{http_code}' http://echo.local/teapot)
expect_eq "direct response" "$out" "short and stout 418"

say "a server with tls.httpsRedirect answers every request 301 to https, without the port"
out=$(c -o /dev/null -w '%{http_code} %{redirect_url}' 'http://echo.local:81/any/path?q=1')
expect_eq "httpsRedirect" "$out" "301 https://echo.local/any/path?q=1"

say "CONNECT is refused with 403 and never forwarded"
resp=$(pod_exec client timeout 5 bash -c '
    exec 3<>/dev/tcp/echo.local/80
    printf "CONNECT echo.local:443 HTTP/1.1\r\nHost: echo.local:443\r\n\r\n" >&3
    cat <&3' || true)
[[ $resp == "HTTP/1.1 403"* ]] || fail "CONNECT got: $resp"
grep -q '^CONNECT' "$D/requests-v1.log" "$D/requests-v2.log" && fail "a backend saw the CONNECT"

say "a client x-request-id is kept; the JSON access log records the request"
resp=$(c -H 'x-request-id: test-rid-53' -H 'User-Agent: weir-e2e' http://echo.local/rid)
grep -qi '^header=x-request-id: test-rid-53$' <<<"$resp" || fail "x-request-id not kept: $resp"
line=$(access_line '"request_id":"test-rid-53"' "$D/access.log") || fail "no JSON access-log line for test-rid-53"
for kv in '"method":"GET"' '"path":"/rid"' '"response_code":200' '"response_flags":"-"' \
    '"user_agent":"weir-e2e"' '"authority":"echo.local"' \
    '"upstream_cluster":"outbound|80|v1|echo.default.svc.cluster.local"' "\"upstream_host\":\"$ECHO_IP:80\""; do
    [[ $line == *"$kv"* ]] || fail "JSON access-log line lacks $kv: $line"
done
line=$(access_line '"path":"/teapot"' "$D/access.log") || fail "no log line for /teapot"
[[ $line == *'"response_code":418'* ]] || fail "teapot logged as: $line"

say "weir gateway exits 0 on SIGTERM, with no sanitizer report"
gateway_stop_clean "$D/gateway.log"
echo "PASS: 53_http_semantics"
