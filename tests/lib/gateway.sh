# tests/lib/gateway.sh: start `weir gateway` in a pod of a tests/lib/netns.sh cluster.
# Source after netns.sh. Uses WEIR_BIN.

# gateway_start POD CONFIG_DIR LOGFILE ACCESS_LOG [weir gateway options...]
# Starts the gateway in POD (its address from pod_ip) and waits for port 80 from POD itself.
# Sets GW_PID. Under ASan the quarantine is capped so RSS checks stay meaningful.
gateway_start() {
    local pod=$1 config=$2 log=$3 access=$4
    shift 4
    local -a env_prefix=()
    local libs
    libs=$(ldd "$WEIR_BIN" 2>/dev/null || true)
    if [[ $libs == *libasan* ]]; then
        env_prefix=(env "ASAN_OPTIONS=quarantine_size_mb=16${ASAN_OPTIONS:+:$ASAN_OPTIONS}")
    fi
    pod_spawn "$pod" "$log" "${env_prefix[@]}" "$WEIR_BIN" gateway -c "$config" \
        --labels istio=ingressgateway --namespace istio-system --access-log "$access" "$@"
    GW_PID=$SPAWNED_PID
    wait_port "$pod" 127.0.0.1 80 30 || fail "weir gateway does not listen on port 80"
}

# gateway_stop_clean LOGFILE: SIGTERM, exit status 0, no sanitizer report.
gateway_stop_clean() {
    local log=$1
    cluster_stop "$GW_PID" 20 || fail "weir gateway did not exit within 20s of SIGTERM"
    [[ $STOP_RC == 0 ]] || fail "weir gateway exited with status $STOP_RC on SIGTERM"
    if sanitizer_report "$log"; then fail "sanitizer report in $log"; fi
}

# access_line REGEX LOGFILE [TIMEOUT]: waits until an access-log line matches; prints it.
access_line() {
    local re=$1 file=$2 timeout=${3:-10} deadline line
    deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        line=$(grep -E -m 1 -- "$re" "$file" 2>/dev/null || true)
        if [[ -n $line ]]; then
            printf '%s\n' "$line"
            return 0
        fi
        sleep 0.1
    done
    return 1
}
