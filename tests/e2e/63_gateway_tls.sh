#!/usr/bin/env bash
# 63_gateway_tls.sh: the gateway's TLS servers for clients outside the mesh.
#  - HTTPS SIMPLE with credentialName (looked up in --credential-dir as <name>/tls.crt and
#    tls.key): curl verifies the gateway's certificate for web.example.com and gets the echo
#    backend, which sees x-forwarded-proto https; the access log records the SNI;
#  - HTTPS MUTUAL with the certificate files in the Gateway: no client certificate is refused
#    in the handshake, a client certificate from the right CA is served;
#  - TLS PASSTHROUGH routed by SNI with a VirtualService tls[] route: the TLS reaches the
#    backend untouched (curl sees the backend's own certificate);
#  - plain text on a TLS port is closed without an answer.
# shellcheck disable=SC2016,SC2119
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
ECHO_SERVER=${WEIR_ECHO_SERVER:-$WEIR_BUILD_DIR/tests/echo_server}
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"
source "$WEIR_SOURCE_DIR/tests/lib/gateway.sh"

require_root
require_cmd ip curl openssl timeout
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"
[[ -x $ECHO_SERVER ]] || fail "echo_server $ECHO_SERVER not found (build first)"

GW_IP=10.244.0.10
ECHO_IP=10.244.0.30
TLSB_IP=10.244.0.31

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
CLUSTER_EXTRA_LOGS+=("$D/access.log")

# certificates (ECDSA P-256, what the gateway's TLS 1.2 suites need): a CA for the
# gateway's servers and clients, another for the passthrough backend
mkcert() { # mkcert NAME CA_DIR SUBJECT_CN SAN [clientAuth]
    local name=$1 ca=$2 cn=$3 san=$4 eku=${5:-serverAuth}
    openssl ecparam -name prime256v1 -genkey -noout -out "$D/$name.key" 2>/dev/null
    openssl req -new -key "$D/$name.key" -subj "/CN=$cn" -out "$D/$name.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$san" "$eku" >"$D/$name.ext"
    openssl x509 -req -in "$D/$name.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial \
        -days 1 -extfile "$D/$name.ext" -out "$D/$name.crt" 2>/dev/null
}
mkca() { # mkca DIR
    mkdir -p "$1"
    openssl ecparam -name prime256v1 -genkey -noout -out "$1/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$1/ca.key" -subj "/O=weir test CA" -days 1 -out "$1/ca.crt" 2>/dev/null
}
mkca "$D/ca"
mkca "$D/backend-ca"
mkcert web "$D/ca" web.example.com DNS:web.example.com
mkcert mtls "$D/ca" mtls.example.com DNS:mtls.example.com
mkcert client "$D/ca" client DNS:client clientAuth
mkcert backend "$D/backend-ca" passthrough.example.com DNS:passthrough.example.com
mkdir -p "$D/credentials/web-cert"
cp "$D/web.crt" "$D/credentials/web-cert/tls.crt"
cp "$D/web.key" "$D/credentials/web-cert/tls.key"

mkdir -p "$D/config"
cat >"$D/config/gw.yaml" <<YAML
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [web.example.com]
    tls: {mode: SIMPLE, credentialName: web-cert}
  - port: {number: 8443, name: https-mtls, protocol: HTTPS}
    hosts: [mtls.example.com]
    tls: {mode: MUTUAL, serverCertificate: $D/mtls.crt, privateKey: $D/mtls.key, caCertificates: $D/ca/ca.crt}
  - port: {number: 9443, name: tls-pass, protocol: TLS}
    hosts: [passthrough.example.com]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web.example.com, mtls.example.com]
  gateways: [gw]
  http: [{route: [{destination: {host: echo.default.svc.cluster.local}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pass, namespace: default}
spec:
  hosts: [passthrough.example.com]
  gateways: [gw]
  tls:
  - match: [{sniHosts: [passthrough.example.com], port: 9443}]
    route: [{destination: {host: tlsb.default.svc.cluster.local, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: $ECHO_IP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tlsb, namespace: default}
spec:
  hosts: [tlsb.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 443, name: tls, protocol: TLS}]
  endpoints: [{address: $TLSB_IP}]
YAML

pod_add gw "$GW_IP" || fail "pod gw"
pod_add echo "$ECHO_IP" || fail "pod echo"
pod_add tlsb "$TLSB_IP" || fail "pod tlsb"
pod_add client 10.244.0.20 "$GW_IP web.example.com mtls.example.com passthrough.example.com" || fail "pod client"
pod_spawn echo "$D/echo.log" "$ECHO_SERVER" --listen "$ECHO_IP:80" --name echo
pod_spawn tlsb "$D/s_server.log" openssl s_server -accept 443 -cert "$D/backend.crt" \
    -key "$D/backend.key" -www -quiet
wait_port client "$ECHO_IP" 80 20 || fail "echo"
wait_port client "$TLSB_IP" 443 20 || fail "s_server"

GW_WAIT_PORT=443 gateway_start gw "$D/config" "$D/gateway.log" "$D/access.log" \
    --credential-dir "$D/credentials"

c() { pod_exec client curl -sS --max-time 5 "$@"; }

say "HTTPS SIMPLE with credentialName: the gateway's certificate verifies for web.example.com"
resp=$(c --cacert "$D/ca/ca.crt" https://web.example.com/hello) || fail "curl https://web.example.com failed"
[[ $resp == *"name=echo"* ]] || fail "HTTPS answer: $resp"
grep -qi '^header=x-forwarded-proto: https$' <<<"$resp" || fail "the backend saw no x-forwarded-proto https: $resp"
line=$(access_line '"GET /hello HTTP/1.1" 200' "$D/access.log") || fail "no access-log line for /hello"
[[ $line == *" web.example.com "* ]] || fail "the access log does not record the SNI: $line"

say "HTTPS MUTUAL: no client certificate is refused in the handshake; one from the CA is served"
if out=$(c --cacert "$D/ca/ca.crt" https://mtls.example.com:8443/m 2>&1); then
    fail "MUTUAL served a client without a certificate: $out"
fi
resp=$(c --cacert "$D/ca/ca.crt" --cert "$D/client.crt" --key "$D/client.key" https://mtls.example.com:8443/m) ||
    fail "MUTUAL refused a client certificate from its CA"
[[ $resp == *"name=echo"* ]] || fail "MUTUAL answer: $resp"

say "TLS PASSTHROUGH by SNI: the backend's own certificate reaches the client"
resp=$(c --cacert "$D/backend-ca/ca.crt" https://passthrough.example.com:9443/) ||
    fail "passthrough to the TLS backend failed"
[[ $resp == *"s_server"* ]] || fail "passthrough answer: ${resp:0:200}"

say "plain text on a TLS port is closed without an answer"
if out=$(c http://web.example.com:443/ 2>&1); then fail "plain text on 443 got an answer: $out"; fi
[[ $out != *"HTTP/1.1"* ]] || fail "plain text on 443 got: $out"

say "weir gateway exits 0 on SIGTERM, with no sanitizer report"
gateway_stop_clean "$D/gateway.log"
echo "PASS: 63_gateway_tls"
