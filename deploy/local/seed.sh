# shellcheck shell=bash disable=SC2016
# deploy/local/seed.sh: the seed scenario's pods on a local cluster (tests/lib/netns.sh).
# Sourced by deploy/local/demo.sh and tests/e2e/50_seed.sh, after tests/lib/netns.sh and
# cluster_up. The addresses match deploy/local/registry.yaml.
#
#   seed_pods                  pods gw, v1, v2, client; busybox httpd in v1 and v2 serving the
#                              seed's page, written as the seed pods' init containers write it.
#   seed_gateway WEIR_BIN CONFIG ACCESS_LOG [ARG ...]
#                              `weir gateway` in pod gw; sets SEED_GW_PID.
#   seed_wait [TIMEOUT]        both httpd pods and the gateway accept connections.
#   seed_certs WEIR_BIN DIR    a mesh CA in DIR/ca and a workload certificate per pod in DIR/<pod>
#                              (gw: istio-system/istio-ingressgateway-service-account, v1 and
#                              v2: default/httpd, client: default/sleep); sidecars then get
#                              --certs DIR/<pod>. Sets SEED_CERTS.
#   seed_sidecars WEIR_BIN CONFIG [ARG ...]
#                              what Istio's injector adds to pods v1, v2 and client: `weir
#                              iptables` (the init container) and `weir sidecar` as uid 1337,
#                              with each pod's labels and service account; access logs in
#                              $CLUSTER_DIR/sidecar-<pod>.access.log. Sets SEED_SIDECAR_PIDS.

SEED_GW_IP=10.244.0.10
SEED_V1_IP=10.244.0.11
SEED_V2_IP=10.244.0.12
SEED_CLIENT_IP=10.244.0.20
SEED_WEB_VIP=10.96.0.10
SEED_GW_PID=""
SEED_SIDECAR_PIDS=()
SEED_CERTS=""

# The names a client uses for the ingress gateway, as in a cluster.
SEED_GW_NAMES="gateway istio-ingressgateway istio-ingressgateway.istio-system.svc.cluster.local"

# seed_page VERSION DIR: what the seed pod's init container does, with DIR for htdocs.
seed_page() {
    local version=$1 dir=$2
    sh -c "mkdir -p '$dir'; echo '<html> <body> <h1>This is version $version!</h1> </body></html>' > '$dir/index.html'"
}

seed_pods() {
    local web="web-service web-service.default web-service.default.svc.cluster.local"
    pod_add gw "$SEED_GW_IP" \
        "$SEED_V1_IP httpd-v1" "$SEED_V2_IP httpd-v2" || return 1
    pod_add v1 "$SEED_V1_IP" "$SEED_V1_IP httpd-v1 $web" || return 1
    pod_add v2 "$SEED_V2_IP" "$SEED_V2_IP httpd-v2 $web" || return 1
    pod_add client "$SEED_CLIENT_IP" "$SEED_GW_IP $SEED_GW_NAMES web.example.com" \
        "$SEED_WEB_VIP $web" || return 1

    seed_page V1 "$CLUSTER_DIR/htdocs-v1" || return 1
    seed_page V2 "$CLUSTER_DIR/htdocs-v2" || return 1
    pod_spawn v1 "$CLUSTER_DIR/httpd-v1.log" busybox httpd -f -vv -p 80 -h "$CLUSTER_DIR/htdocs-v1" || return 1
    pod_spawn v2 "$CLUSTER_DIR/httpd-v2.log" busybox httpd -f -vv -p 80 -h "$CLUSTER_DIR/htdocs-v2" || return 1
}

seed_gateway() {
    local bin=${1:?seed_gateway WEIR_BIN CONFIG ACCESS_LOG} config=${2:?} access_log=${3:?}
    shift 3
    pod_spawn gw "$CLUSTER_DIR/gateway.log" "$bin" gateway -c "$config" \
        --labels istio=ingressgateway --namespace istio-system --access-log "$access_log" "$@" ||
        return 1
    # shellcheck disable=SC2034  # read by the scripts that source this file
    SEED_GW_PID=$SPAWNED_PID
}

# seed_issue WEIR_BIN POD NAMESPACE SERVICE_ACCOUNT: a workload certificate for POD.
seed_issue() {
    local bin=$1 pod=$2 ns=$3 sa=$4
    "$bin" certs issue --ca "$SEED_CERTS/ca" --namespace "$ns" --service-account "$sa" \
        --out "$SEED_CERTS/$pod" --days 1 >/dev/null || return 1
    chown -R 1337:1337 "$SEED_CERTS/$pod" # the sidecar (uid 1337) reads its own key
}

seed_certs() {
    local bin=${1:?seed_certs WEIR_BIN DIR} dir=${2:?}
    SEED_CERTS=$dir
    mkdir -p "$dir"
    chmod o+rx "$dir"
    "$bin" certs ca --out "$dir/ca" >/dev/null || return 1
    seed_issue "$bin" gw istio-system istio-ingressgateway-service-account || return 1
    seed_issue "$bin" v1 default httpd || return 1
    seed_issue "$bin" v2 default httpd || return 1
    seed_issue "$bin" client default sleep || return 1
}

# seed_sidecar POD LABELS SERVICE_ACCOUNT WEIR_BIN CONFIG [ARG ...]
seed_sidecar() {
    local pod=$1 labels=$2 sa=$3 bin=$4 config=$5
    shift 5
    pod_exec "$pod" "$bin" iptables >"$CLUSTER_DIR/iptables-$pod.log" 2>&1 || {
        echo "weir iptables failed in pod $pod:" >&2
        cat "$CLUSTER_DIR/iptables-$pod.log" >&2
        return 1
    }
    # The proxy runs as uid 1337, so the rules let its own connections through; it only needs
    # to read the config and write its access log.
    local access="$CLUSTER_DIR/sidecar-$pod.access.log"
    : >"$access"
    chown 1337:1337 "$access"
    chmod o+rx "$CLUSTER_DIR"
    local -a certs=()
    [[ -n $SEED_CERTS ]] && certs=(--certs "$SEED_CERTS/$pod")
    pod_spawn "$pod" "$CLUSTER_DIR/sidecar-$pod.log" \
        setpriv --reuid=1337 --regid=1337 --clear-groups \
        "$bin" sidecar -c "$config" --labels "$labels" --namespace default \
        --service-account "$sa" --access-log "$access" "${certs[@]}" "$@" || return 1
    SEED_SIDECAR_PIDS+=("$SPAWNED_PID")
}

seed_sidecars() {
    local bin=${1:?seed_sidecars WEIR_BIN CONFIG [ARG ...]} config=${2:?}
    shift 2
    seed_sidecar v1 app=httpd,version=v1 httpd "$bin" "$config" "$@" || return 1
    seed_sidecar v2 app=httpd,version=v2 httpd "$bin" "$config" "$@" || return 1
    seed_sidecar client app=sleep sleep "$bin" "$config" "$@" || return 1
    local pod
    for pod in v1 v2 client; do
        wait_port "$pod" 127.0.0.1 15006 20 || { echo "sidecar of pod $pod does not listen" >&2; return 1; }
    done
}

seed_wait() {
    local timeout=${1:-20}
    wait_port client "$SEED_V1_IP" 80 "$timeout" || { echo "httpd-v1 does not accept connections" >&2; return 1; }
    wait_port client "$SEED_V2_IP" 80 "$timeout" || { echo "httpd-v2 does not accept connections" >&2; return 1; }
    if [[ -n $SEED_GW_PID ]]; then
        local deadline=$((SECONDS + timeout))
        while ((SECONDS < deadline)); do
            cluster_pid_alive "$SEED_GW_PID" || { echo "weir gateway exited (log: $CLUSTER_DIR/gateway.log)" >&2; return 1; }
            if timeout 2 ip netns exec "$(pod_ns client)" \
                bash -c 'exec 3<>"/dev/tcp/$1/80"' _ "$SEED_GW_IP" 2>/dev/null; then
                return 0
            fi
            sleep 0.2
        done
        echo "weir gateway does not accept connections on $SEED_GW_IP:80 after ${timeout}s" >&2
        return 1
    fi
}
