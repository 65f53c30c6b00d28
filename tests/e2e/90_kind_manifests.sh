#!/usr/bin/env bash
# 90_kind_manifests.sh: deploy/kind, checked offline. No cluster and no container engine can
# run here (shared/reference/platform-facts.md), so everything that can be checked without
# one is:
#  1. `kubectl kustomize` renders deploy/kind (mirroring off) and deploy/kind/mirror (on), with
#     the objects the used-by story needs; the two differ only in the VirtualService;
#  2. the mesh config is the seed's, unchanged (deploy/local's copies), and the mirror variant
#     is deploy/local/examples/mirror.yaml;
#  3. gen-certs.sh makes the Secrets with `weir certs` (one SPIFFE identity each, the CA kept
#     across runs);
#  4. every rendered object, the Istio resources inside the ConfigMaps and the Secrets validate
#     against the Kubernetes and Istio schemas (npm kubernetes-models and
#     @kubernetes-models/istio, via tests/kind/validate.mjs, which also checks references,
#     RBAC, the hand injection and the kind config's port mappings), and the validator does
#     catch a mistake of each sort;
#  5. `weir validate` accepts the Istio YAML of each ConfigMap, and with the registry the
#     Kubernetes API would give (tests/data/k8s/registry-initial.yaml) has nothing to warn of;
#  6. the Dockerfile builds from the packages deploy/local/packages.sh lists and its runtime
#     stage installs every shared library weir needs, and iptables.
# Needs kubectl, node and npm. The npm packages (pinned in tests/kind/package.json) are
# installed once into $WEIR_BUILD_DIR/kind-validate (the npm registry must be reachable then;
# they warn EBADENGINE on Node 20 and work). Not root, no network namespaces.
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
KIND=$WEIR_SOURCE_DIR/deploy/kind
CACHE=$WEIR_BUILD_DIR/kind-validate
NAME=90_kind_manifests
CHECKS=0

fail() {
    printf '%s: FAIL: %s\n' "$NAME" "$*" >&2
    exit 1
}
ok() {
    CHECKS=$((CHECKS + 1))
    printf '%s: ok: %s\n' "$NAME" "$*"
}

# ---- tools ----
command -v kubectl >/dev/null ||
    fail "kubectl not found. It is not a Debian bookworm package that works here: Debian's kubernetes-client is kubectl 1.20, whose kustomize (v2) cannot render deploy/kind; install kubectl 1.27 or later (kustomize v5 built in), e.g. the 'kubectl' package of the Kubernetes apt repository"
kubectl kustomize --help >/dev/null 2>&1 || fail "this kubectl has no 'kustomize' command (kubectl 1.14 or later needed)"
command -v node >/dev/null || fail "node not found (Debian packages nodejs and npm)"
command -v npm >/dev/null || fail "npm not found (Debian package npm)"
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- 1. render ----
kubectl kustomize "$KIND" >"$tmp/base.yaml" 2>"$tmp/kustomize.err" ||
    fail "kubectl kustomize deploy/kind: $(cat "$tmp/kustomize.err")"
kubectl kustomize "$KIND/mirror" >"$tmp/mirror.yaml" 2>"$tmp/kustomize.err" ||
    fail "kubectl kustomize deploy/kind/mirror: $(cat "$tmp/kustomize.err")"
objects() { grep -E '^kind: ' "$1" | awk '{ print $2 }' | sort | uniq -c | awk '{ printf "%s %s, ", $1, $2 }'; }
want="1 ClusterRole, 1 ClusterRoleBinding, 2 ConfigMap, 4 Deployment, 1 Namespace, 3 Service, 3 ServiceAccount, "
got=$(objects "$tmp/base.yaml")
[[ $got == "$want" ]] || fail "deploy/kind renders $got; want $want"
for d in istio-system/istio-ingressgateway default/httpd-v1 default/httpd-v2 default/sleep; do
    awk -v ns="${d%/*}" -v n="${d#*/}" '
        /^---/ { k = ""; name = ""; nsp = "" }
        /^kind: / { k = $2 } /^  name: / { name = $2 } /^  namespace: / { nsp = $2 }
        k == "Deployment" && name == n && nsp == ns { found = 1 } END { exit !found }' \
        "$tmp/base.yaml" || fail "deploy/kind renders no Deployment $d"
done
grep -q 'nodePort: 30080' "$tmp/base.yaml" || fail "the gateway Service has no nodePort 30080"
ok "kubectl kustomize renders deploy/kind ($got) and deploy/kind/mirror"

# Mirroring on differs from off in the VirtualService of each ConfigMap only.
diff "$tmp/base.yaml" "$tmp/mirror.yaml" | grep -E '^[<>]' | grep -vE '^> +(#|mirror:|host: web-service|subset: v2|mirrorPercentage:|value: 100)' |
    grep -q . && fail "deploy/kind/mirror differs from deploy/kind by more than the mirror: $(diff "$tmp/base.yaml" "$tmp/mirror.yaml" | head -20)"
[[ $(grep -c 'mirrorPercentage:' "$tmp/mirror.yaml") == 2 ]] ||
    fail "deploy/kind/mirror must mirror in both ConfigMaps (istio-system and default)"
ok "deploy/kind/mirror only adds the mirror to both ConfigMaps"

# ---- 2. the seed's config, unchanged ----
for f in gateway virtualservice destinationrule; do
    cmp -s "$KIND/base/mesh/$f.yaml" "$WEIR_SOURCE_DIR/deploy/local/$f.yaml" ||
        fail "deploy/kind/base/mesh/$f.yaml is not deploy/local/$f.yaml (the seed's, unchanged)"
done
diff <(grep -v '^#' "$WEIR_SOURCE_DIR/deploy/local/examples/mirror.yaml") \
    <(grep -v '^#' "$KIND/mirror/virtualservice.yaml") >/dev/null ||
    fail "deploy/kind/mirror/virtualservice.yaml is not deploy/local/examples/mirror.yaml"
seed=$WEIR_SOURCE_DIR/../shared/scenarios/seed
if [[ -f $seed/service.yaml ]]; then
    cmp -s "$seed/service.yaml" "$KIND/base/apps/web-service.yaml" ||
        fail "deploy/kind/base/apps/web-service.yaml is not the seed's service.yaml"
    ok "the mesh config, the mirror variant and web-service are the seed's"
else
    ok "the mesh config and the mirror variant are the seed's (no $seed to compare web-service with)"
fi

# ---- 3. certificates ----
export WEIR_KIND_CERTS=$tmp/certs
WEIR_BIN=$WEIR_BIN "$KIND/gen-certs.sh" --out "$tmp/secrets.yaml" 2>"$tmp/gen-certs.err" ||
    fail "gen-certs.sh: $(cat "$tmp/gen-certs.err")"
ca_before=$(sha256sum <"$tmp/certs/ca/ca-cert.pem")
for id in istio-system/istio-ingressgateway-service-account default/httpd default/sleep; do
    san=$(openssl x509 -in "$tmp/certs/$id/cert-chain.pem" -noout -text | grep -o 'URI:[^ ,]*' || true)
    [[ $san == "URI:spiffe://cluster.local/ns/${id%/*}/sa/${id#*/}" ]] ||
        fail "the certificate for $id carries '$san'"
    grep -q "name: weir-certs-${id#*/}\$" "$tmp/secrets.yaml" || fail "no Secret weir-certs-${id#*/}"
done
WEIR_BIN=$WEIR_BIN "$KIND/gen-certs.sh" --out "$tmp/secrets2.yaml" 2>/dev/null || fail "gen-certs.sh, again"
[[ $(sha256sum <"$tmp/certs/ca/ca-cert.pem") == "$ca_before" ]] || fail "gen-certs.sh replaced the CA on a second run"
[[ $(stat -c %a "$tmp/secrets.yaml") == 600 ]] || fail "gen-certs.sh --out wrote the keys world-readable"
ok "gen-certs.sh: a Secret per ServiceAccount with its SPIFFE identity; the CA is kept across runs"

# ---- 4. schemas ----
# The validator imports its packages by name, so it runs from the directory that has them.
install_models() {
    mkdir -p "$CACHE"
    cp "$WEIR_SOURCE_DIR/tests/kind/package.json" "$CACHE/package.json"
    (cd "$CACHE" && npm install --no-save --no-audit --no-fund --no-package-lock --loglevel=error \
        >"$CACHE/npm.log" 2>&1)
}
stamp=$(sha256sum <"$WEIR_SOURCE_DIR/tests/kind/package.json" | cut -d' ' -f1)
if [[ ! -d $CACHE/node_modules/kubernetes-models || $(cat "$CACHE/.stamp" 2>/dev/null) != "$stamp" ]]; then
    echo "$NAME: installing kubernetes-models and @kubernetes-models/istio into $CACHE (npm)"
    if ! install_models; then
        echo "$NAME: npm install failed, retrying once in 5 s:" >&2
        tail -n 5 "$CACHE/npm.log" >&2 || true
        sleep 5
        install_models || fail "npm install of tests/kind/package.json failed twice (is the npm registry reachable?): $(tail -n 20 "$CACHE/npm.log")"
    fi
    echo "$stamp" >"$CACHE/.stamp"
fi
cp "$WEIR_SOURCE_DIR/tests/kind/validate.mjs" "$CACHE/validate.mjs"
validate() { node "$CACHE/validate.mjs" --kind-config "$KIND/cluster.yaml" --secrets "$tmp/secrets.yaml" "$@"; }
for v in base mirror; do
    validate --extract "$tmp/cm-$v" "$tmp/$v.yaml" >"$tmp/validate-$v.out" 2>&1 ||
        fail "deploy/kind ($v) does not validate: $(cat "$tmp/validate-$v.out")"
    ok "$v: $(tail -n 1 "$tmp/validate-$v.out")"
done

# The validator is not vacuous: each of these mistakes must be caught, with its reason.
mutate() {
    local script=$1 what=$2 expect=$3
    sed "$script" "$tmp/base.yaml" >"$tmp/bad.yaml"
    cmp -s "$tmp/base.yaml" "$tmp/bad.yaml" && fail "mutation '$script' changed nothing"
    if validate "$tmp/bad.yaml" >"$tmp/bad.out" 2>&1; then
        fail "validate.mjs accepted $what"
    fi
    grep -q -- "$expect" "$tmp/bad.out" || fail "validate.mjs rejected $what without saying '$expect': $(cat "$tmp/bad.out")"
}
mutate 's/replicas: 1$/replicas: "1"/' 'a string replicas' 'replicas must be integer'
mutate 's|prefix: /v1$|prefix: 1|' 'a number as a VirtualService prefix (in a ConfigMap)' 'prefix must be string'
mutate 's/restartPolicy: Always/restartPolicy: OnFailure/' 'a proxy that is not a native sidecar' 'native sidecar'
mutate 's/nodePort: 30080/nodePort: 30081/' 'a NodePort kind does not publish' 'no extraPortMapping for nodePort 30081'
mutate 's/secretName: weir-certs-sleep/secretName: weir-certs-slepe/' 'a Secret gen-certs.sh does not make' 'not made by gen-certs.sh'
mutate 's/- NET_RAW/- SYS_TIME/' 'an init container without NET_RAW' 'NET_ADMIN and NET_RAW'
mutate 's/name: sleep$/name: sleeper/' 'a missing ServiceAccount' 'is not defined'
ok "validate.mjs catches a string replicas, a bad Istio field, a non-native sidecar, an unpublished NodePort, a missing Secret, a missing capability and a missing ServiceAccount"

# ---- 5. weir validate ----
for v in base mirror; do
    for ns in istio-system default; do
        dir=$tmp/cm-$v/$ns/weir-mesh-config
        [[ -f $dir/virtualservice.yaml ]] || fail "no ConfigMap $ns/weir-mesh-config in the $v render"
        "$WEIR_BIN" validate -c "$dir" >"$tmp/weir-validate.out" 2>&1 ||
            fail "weir validate rejects the ConfigMap $ns/weir-mesh-config ($v): $(cat "$tmp/weir-validate.out")"
        # with the ServiceEntry and WorkloadEntries the Kubernetes API gives: nothing to say
        "$WEIR_BIN" validate -c "$dir" -c "$WEIR_SOURCE_DIR/tests/data/k8s/registry-initial.yaml" \
            >"$tmp/weir-validate.out" 2>&1 ||
            fail "weir validate rejects $ns/weir-mesh-config ($v) with the API's registry: $(cat "$tmp/weir-validate.out")"
        tail -n 1 "$tmp/weir-validate.out" | grep -q '^0 error(s), 0 warning(s)$' ||
            fail "weir validate warns about $ns/weir-mesh-config ($v) with the API's registry: $(cat "$tmp/weir-validate.out")"
    done
    diff -r "$tmp/cm-$v/istio-system/weir-mesh-config" "$tmp/cm-$v/default/weir-mesh-config" >/dev/null ||
        fail "the two weir-mesh-config ConfigMaps ($v) differ"
done
grep -q 'mirrorPercentage' "$tmp/cm-mirror/istio-system/weir-mesh-config/virtualservice.yaml" ||
    fail "the mirror ConfigMap has no mirror"
ok "weir validate accepts every ConfigMap, base and mirror, and warns of nothing with the API's registry"

# ---- 6. the Dockerfile ----
df=$KIND/Dockerfile
stage_packages() { # the packages an `apt-get install` of stage $1 (1 or 2) names
    awk -v want="$1" '
        /^FROM / { stage++ }
        stage == want && /apt-get install/ { on = 1 }
        on { line = line " " $0; if ($0 !~ /\\$/) on = 0 }
        END { print line }' "$df" |
        tr -s '\134 ' '\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' |
        grep -vxE 'apt-get|install|rm|DEBIAN_FRONTEND=noninteractive' | sort -u
}
grep -q '^FROM debian:bookworm AS build' "$df" || fail "the Dockerfile's build stage is not debian:bookworm"
grep -q '^FROM debian:bookworm-slim' "$df" || fail "the Dockerfile's runtime stage is not debian:bookworm-slim"
# shellcheck source=/dev/null
source "$WEIR_SOURCE_DIR/deploy/local/packages.sh"
build_pkgs=$(stage_packages 1)
[[ -n $build_pkgs ]] || fail "no apt-get install in the Dockerfile's build stage"
for p in $build_pkgs; do
    printf '%s\n' "${WEIR_PACKAGES[@]}" | grep -qx "$p" ||
        fail "the Dockerfile's build stage installs $p, which deploy/local/packages.sh does not list"
done
for p in cmake gcc libc6-dev pkg-config libuv1-dev node-llhttp libmbedtls-dev libyaml-dev libpcre2-dev libjansson-dev; do
    grep -qx "$p" <<<"$build_pkgs" || fail "the Dockerfile's build stage does not install $p"
done
run_pkgs=$(stage_packages 2)
grep -qx iptables <<<"$run_pkgs" || fail "the Dockerfile's runtime stage does not install iptables"
# Every library weir is linked against comes from a package the runtime installs; libc and
# libgcc are in the base image; the sanitizer runtimes belong to this test build only.
multiarch=$(gcc -print-multiarch)
for lib in $(readelf -d "$WEIR_BIN" | awk '/NEEDED/ { gsub(/[][]/, "", $5); print $5 }'); do
    pkg=$(dpkg -S "*/$multiarch/$lib" 2>/dev/null | head -n 1 | cut -d: -f1)
    [[ -n $pkg ]] || fail "no Debian package owns $lib (needed by weir)"
    case $pkg in libc6 | libgcc-s1 | libasan* | libubsan* | liblsan* | libtsan* | libstdc++6) continue ;; esac
    grep -qx "$pkg" <<<"$run_pkgs" || fail "weir needs $lib (package $pkg), which the Dockerfile's runtime stage does not install"
done
{ grep -qx '\.git' "$KIND/Dockerfile.dockerignore" && grep -qx 'build\*' "$KIND/Dockerfile.dockerignore"; } ||
    fail "Dockerfile.dockerignore must keep .git and the build trees out of the context"
ok "the Dockerfile builds from packages.sh's packages; its runtime installs iptables and every library weir needs"

if command -v shellcheck >/dev/null; then
    shellcheck "$KIND/gen-certs.sh" || fail "shellcheck deploy/kind/gen-certs.sh"
    ok "shellcheck gen-certs.sh"
fi

echo "$NAME: $CHECKS passed, 0 failed"
