#!/usr/bin/env bash
# 62_mtls_refusals.sh: what the mesh's mTLS refuses, and certificate rotation.
# The seed mesh with certificates and PeerAuthentication STRICT; clients outside the mesh
# (curl and openssl in the unmeshed gateway pod) talk TLS straight to pod v1's address:
#  - a certificate the mesh CA issued is served (the positive control);
#  - a certificate from another CA, an expired one, one from another trust domain, and a
#    TLS 1.1 ClientHello are each refused in the handshake, with no HTTP answer;
#  - a server presenting the wrong service account makes the calling sidecar answer 503 UF;
#  - v1's certificate is rotated while a keep-alive loop runs through the mesh: no request is
#    lost, and new handshakes show the new certificate; an invalid new key is logged and the
#    old certificate keeps serving.
# shellcheck disable=SC2016,SC2119
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"
source "$WEIR_SOURCE_DIR/deploy/local/seed.sh"

require_root
require_cmd ip curl busybox timeout setpriv iptables openssl
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"

IMP_IP=10.244.0.13
IMP_VIP=10.96.0.30

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
CLUSTER_EXTRA_LOGS+=("$D/sidecar-v1.access.log" "$D/sidecar-client.access.log")
mkdir -p "$D/config"
cp "$WEIR_SOURCE_DIR"/deploy/local/*.yaml "$D/config/"
cat >"$D/config/mtls.yaml" <<YAML
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
# A service whose only pod presents a certificate for another service account than the
# one this registry promises: secure naming must catch it.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: impostor, namespace: default}
spec:
  hosts: [impostor.default.svc.cluster.local]
  addresses: [$IMP_VIP]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: impostor}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: impostor, namespace: default}
spec:
  address: $IMP_IP
  labels: {app: impostor, security.istio.io/tlsMode: istio}
  serviceAccount: httpd
YAML
chmod -R o+rX "$D/config"

seed_certs "$WEIR_BIN" "$D/certs" || fail "weir certs failed"
seed_issue "$WEIR_BIN" imp default not-httpd || fail "issue impostor"
seed_pods || fail "seed pods"
pod_add imp "$IMP_IP" || fail "pod imp"
echo "$IMP_VIP impostor impostor.default" >>"/etc/netns/$(pod_ns client)/hosts"
seed_page IMPOSTOR "$D/htdocs-imp"
pod_spawn imp "$D/httpd-imp.log" busybox httpd -f -p 80 -h "$D/htdocs-imp"
seed_sidecars "$WEIR_BIN" "$D/config" || fail "sidecars did not start"
seed_sidecar imp app=impostor not-httpd "$WEIR_BIN" "$D/config" || fail "impostor sidecar"
wait_port imp 127.0.0.1 15006 20 || fail "impostor sidecar does not listen"
seed_gateway "$WEIR_BIN" "$D/config" "$D/access.log" --certs "$D/certs/gw" || fail "gateway"
seed_wait 30 || fail "the seed pods did not come up"

C=$D/certs
# tls_get CERT_DIR [curl options]: an HTTPS GET straight to pod v1 from outside the mesh,
# presenting the certificate in CERT_DIR. Prints the body; fails when the TLS is refused.
tls_get() {
    local dir=$1
    shift
    pod_exec gw curl -sS --max-time 5 -k --cert "$dir/cert-chain.pem" --key "$dir/key.pem" "$@" \
        "https://$SEED_V1_IP:80/"
}

say "a certificate the mesh CA issued is served (the positive control)"
body=$(tls_get "$C/gw") || fail "mTLS with a mesh certificate failed"
[[ $body == *"This is version V1!"* ]] || fail "mesh certificate got: $body"

say "a client certificate from another CA is refused in the handshake"
"$WEIR_BIN" certs ca --out "$D/other-ca" >/dev/null
"$WEIR_BIN" certs issue --ca "$D/other-ca" --namespace default --service-account sleep --out "$D/other" >/dev/null
if out=$(tls_get "$D/other" 2>&1); then fail "a foreign CA's certificate was served: $out"; fi
[[ $out != *"This is version"* ]] || fail "a foreign CA's certificate got the page"

# sign_with_mesh_ca NAME URI [openssl ca dates...]: a leaf the mesh CA signs with openssl.
sign_with_mesh_ca() {
    local name=$1 uri=$2
    shift 2
    local w="$D/oca-$name"
    mkdir -p "$w/db" "$D/$name"
    : >"$w/db/index.txt"
    echo 01 >"$w/db/serial"
    printf '[ca]\ndefault_ca = d\n[d]\ndatabase = %s/db/index.txt\nnew_certs_dir = %s/db\nserial = %s/db/serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\nemail_in_dn = no\ndefault_days = 1\n[p]\norganizationName = optional\n' \
        "$w" "$w" "$w" >"$w/ca.cnf"
    printf 'subjectAltName = critical, %s\nextendedKeyUsage = clientAuth, serverAuth\nkeyUsage = digitalSignature, keyEncipherment\n' \
        "$uri" >"$w/ext.cnf"
    openssl ecparam -name prime256v1 -genkey -noout -out "$D/$name/key.pem" 2>/dev/null
    openssl req -new -key "$D/$name/key.pem" -subj "/O=test" -out "$w/req.csr" 2>/dev/null
    openssl ca -batch -config "$w/ca.cnf" -cert "$C/ca/ca-cert.pem" -keyfile "$C/ca/ca-key.pem" \
        -in "$w/req.csr" -out "$D/$name/cert-chain.pem" -extfile "$w/ext.cnf" "$@" >/dev/null 2>&1 ||
        fail "openssl ca could not sign $name"
}

say "an expired client certificate is refused in the handshake"
sign_with_mesh_ca expired URI:spiffe://cluster.local/ns/default/sa/sleep \
    -startdate 20200101000000Z -enddate 20200102000000Z
if out=$(tls_get "$D/expired" 2>&1); then fail "an expired certificate was served: $out"; fi

say "a client certificate from another trust domain (signed by the mesh CA) is refused"
sign_with_mesh_ca evil URI:spiffe://evil.example/ns/default/sa/sleep
if out=$(tls_get "$D/evil" 2>&1); then fail "a spiffe://evil.example certificate was served: $out"; fi
# the control: the same path with a good trust domain works, so the refusal is the domain's
sign_with_mesh_ca good URI:spiffe://cluster.local/ns/default/sa/sleep
body=$(tls_get "$D/good") || fail "an openssl-signed cluster.local certificate was refused"
[[ $body == *"This is version V1!"* ]] || fail "openssl-signed control got: $body"

say "a TLS 1.1 ClientHello is refused in the handshake"
out=$(pod_exec gw timeout 5 openssl s_client -connect "$SEED_V1_IP:80" -tls1_1 \
    -cipher 'DEFAULT@SECLEVEL=0' -cert "$C/gw/cert-chain.pem" -key "$C/gw/key.pem" </dev/null 2>&1 || true)
if grep -q 'Cipher is ECDHE' <<<"$out"; then fail "a TLS 1.1 handshake succeeded: $out"; fi
grep -qiE 'alert|handshake failure|wrong version|unsupported protocol|no protocols available' <<<"$out" ||
    fail "no sign of a refused TLS 1.1 handshake: $out"

say "a server presenting the wrong service account gets the calling sidecar's 503 UF"
out=$(pod_exec client curl -s --max-time 5 -w ' %{http_code}' http://impostor/)
[[ $out == *" 503" ]] || fail "the impostor answered: $out"
[[ $out != *IMPOSTOR* ]] || fail "the impostor's page reached the client"
grep -qE '"GET / HTTP/1.1" 503 UF(,URX)? .*TLS_error' "$D/sidecar-client.access.log" ||
    fail "no 503 UF with a TLS error in the client sidecar's log"

serial_of_v1() {
    pod_exec gw timeout 5 openssl s_client -connect "$SEED_V1_IP:80" -cert "$C/gw/cert-chain.pem" \
        -key "$C/gw/key.pem" </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null
}

say "rotating v1's certificate under a keep-alive loop loses no request; new handshakes use it"
before=$(serial_of_v1)
[[ -n $before ]] || fail "cannot read v1's certificate serial"
args=()
for i in $(seq 1 120); do args+=(-o /dev/null "http://web-service/?loop=$i"); done
pod_exec client curl -s --max-time 60 --rate 40/s -w '%{http_code}\n' "${args[@]}" >"$D/loop.out" 2>&1 &
loop=$!
sleep 1
"$WEIR_BIN" certs issue --ca "$C/ca" --namespace default --service-account httpd --out "$D/v1-new" >/dev/null
chown -R 1337:1337 "$D/v1-new"
for f in key.pem cert-chain.pem root-cert.pem; do mv -f "$D/v1-new/$f" "$C/v1/$f"; done
wait "$loop" || true
expect_eq "answers in the loop" "$(wc -l <"$D/loop.out")" 120
expect_eq "answers other than 200" "$(grep -vc '^200$' "$D/loop.out" || true)" 0
after=""
for _ in $(seq 1 40); do
    after=$(serial_of_v1)
    [[ -n $after && $after != "$before" ]] && break
    sleep 0.25
done
[[ -n $after && $after != "$before" ]] || fail "v1 still presents $before after the rotation"
echo "   $before -> $after"

say "an invalid new key is logged and the previous certificate keeps serving"
echo "not a key" >"$D/bad-key.pem"
chown 1337:1337 "$D/bad-key.pem"
mv -f "$D/bad-key.pem" "$C/v1/key.pem"
deadline=$((SECONDS + 10))
until grep -q 'keeping the previous certificates' "$D/sidecar-v1.log"; do
    ((SECONDS < deadline)) || fail "the v1 sidecar did not report the invalid key"
    sleep 0.2
done
expect_eq "serial after the invalid key" "$(serial_of_v1)" "$after"
body=$(pod_exec client curl -sS --max-time 5 http://gateway/v1) || fail "the gateway's /v1 failed"
[[ $body == *"This is version V1!"* ]] || fail "/v1 after the invalid key: $body"

say "every proxy exits 0 on SIGTERM, with no sanitizer report"
for pid in "${SEED_SIDECAR_PIDS[@]}" "$SEED_GW_PID"; do
    cluster_stop "$pid" 20 || fail "PID $pid did not exit within 20s of SIGTERM"
    [[ $STOP_RC == 0 ]] || fail "PID $pid exited with status $STOP_RC"
done
for f in "$D"/sidecar-*.log "$D/gateway.log"; do
    if sanitizer_report "$f"; then fail "sanitizer report in $f"; fi
done
echo "PASS: 62_mtls_refusals"
