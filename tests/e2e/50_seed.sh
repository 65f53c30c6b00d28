#!/usr/bin/env bash
# 50_seed.sh: the seed scenario end to end. The YAML of deploy/local (the seed's gateway.yaml,
# virtualservice.yaml and destinationrule.yaml unchanged, plus registry.yaml) drives `weir gateway`
# in pod gw; pods v1 and v2 run busybox httpd serving the seed's pages; requests come from pod
# client. Run by ctest (WEIR_BIN, WEIR_BUILD_DIR, WEIR_SOURCE_DIR) or by hand as root.
# shellcheck disable=SC2016,SC2119  # inner `bash -c` scripts; cluster_trap takes no script args
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
CONFIG="$WEIR_SOURCE_DIR/deploy/local"

# shellcheck source=SCRIPTDIR/../lib/netns.sh
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"
# shellcheck source=SCRIPTDIR/../../deploy/local/seed.sh
source "$WEIR_SOURCE_DIR/deploy/local/seed.sh"

require_root
require_cmd ip curl busybox timeout
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"

V1_PAGE='<html> <body> <h1>This is version V1!</h1> </body></html>'
V2_PAGE='<html> <body> <h1>This is version V2!</h1> </body></html>'
V1_CLUSTER='outbound|80|v1|web-service.default.svc.cluster.local'
V2_CLUSTER='outbound|80|v2|web-service.default.svc.cluster.local'

cluster_trap
cluster_up "wt$$"
ACCESS_LOG="$CLUSTER_DIR/access.log"
CLUSTER_EXTRA_LOGS+=("$ACCESS_LOG")
: >"$ACCESS_LOG"

say "weir version runs and prints a version"
ver=$("$WEIR_BIN" version 2>&1) || fail "weir version exited non-zero: $ver"
[[ -n $ver ]] || fail "weir version printed nothing"

say "weir validate -c deploy/local accepts the seed's YAML plus registry.yaml (exit 0)"
out=$("$WEIR_BIN" validate -c "$CONFIG" 2>&1) && rc=0 || rc=$?
[[ $rc == 0 ]] || fail "weir validate -c $CONFIG exited $rc: $out"

say "weir validate rejects a VirtualService whose subset v1 was renamed v3 (exit 1, file:line:col: error:)"
broken="$CLUSTER_DIR/broken"
mkdir -p "$broken"
cp "$CONFIG"/*.yaml "$broken/"
sed -i 's/subset: v1$/subset: v3/' "$broken/virtualservice.yaml"
grep -q 'subset: v3' "$broken/virtualservice.yaml" || fail "test setup: could not rename the subset"
out=$("$WEIR_BIN" validate -c "$broken" 2>&1) && rc=0 || rc=$?
[[ $rc == 1 ]] || fail "weir validate on the broken copy exited $rc, want 1; output: $out"
diag=$(grep -m 1 -E 'virtualservice\.yaml:[0-9]+:[0-9]+: error:' <<<"$out") ||
    fail "no 'virtualservice.yaml:line:col: error:' line in: $out"
# The place must be inside the route's destination (its "- destination:" line up to "subset: v3").
line=$(sed -E 's/.*virtualservice\.yaml:([0-9]+):.*/\1/' <<<"$diag")
subset_line=$(grep -n 'subset: v3' "$broken/virtualservice.yaml" | cut -d: -f1)
dest_line=$((subset_line - 2))
((line >= dest_line && line <= subset_line)) ||
    fail "the error points at line $line, want the destination at lines $dest_line-$subset_line: $diag"

say "the pods come up: httpd-v1, httpd-v2 (busybox httpd), the gateway on $SEED_GW_IP:80"
seed_pods || fail "creating the seed pods failed"
# No sidecars here (61_mesh_mtls has them): the pods are not meshed, so their endpoints lose
# the security.istio.io/tlsMode label that would turn auto mTLS on.
PLAIN="$CLUSTER_DIR/config-plain"
mkdir -p "$PLAIN"
for f in "$CONFIG"/*.yaml; do grep -v 'security.istio.io/tlsMode' "$f" >"$PLAIN/$(basename "$f")"; done
seed_gateway "$WEIR_BIN" "$PLAIN" "$ACCESS_LOG" || fail "starting weir gateway failed"
seed_wait 30 || fail "the seed pods or the gateway did not become ready"

say "httpd-v1 and httpd-v2 serve exactly the seed's pages (directly, without the gateway)"
got=$(pod_exec client curl -sS --max-time 5 "http://$SEED_V1_IP/") || fail "curl httpd-v1 failed"
expect_eq "httpd-v1 page" "$got" "$V1_PAGE"
got=$(pod_exec client curl -sS --max-time 5 "http://$SEED_V2_IP/") || fail "curl httpd-v2 failed"
expect_eq "httpd-v2 page" "$got" "$V2_PAGE"

# Routes are in place once /v1 answers 200; lines logged before this point are not counted.
deadline=$((SECONDS + 15))
code=""
while ((SECONDS < deadline)); do
    code=$(pod_exec client curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://$SEED_GW_IP/v1" || true)
    [[ $code == 200 ]] && break
    sleep 0.3
done
[[ $code == 200 ]] || fail "the gateway never answered /v1 with 200 (last: '$code')"
sleep 0.5
log_start=$(($(wc -l <"$ACCESS_LOG") + 1))

# get PATH [CURL ARGS...]: sets CODE and BODY.
get() {
    local path=$1 out
    shift
    out=$(pod_exec client curl -sS --max-time 10 -w '\n%{http_code}' "$@" "http://$SEED_GW_IP$path") ||
        fail "curl http://$SEED_GW_IP$path $* failed"
    CODE=${out##*$'\n'}
    BODY=${out%$'\n'*}
    BODY=${BODY%$'\n'}   # the page ends in a newline (echo)
}

say "/v1 twenty times: every answer is 200 with the V1 page, never V2"
for i in $(seq 1 20); do
    get /v1
    [[ $CODE == 200 ]] || fail "/v1 request $i: status $CODE, body: $BODY"
    [[ $BODY == *"This is version V1!"* ]] || fail "/v1 request $i: no 'This is version V1!' in: $BODY"
    [[ $BODY != *"V2"* ]] || fail "/v1 request $i reached V2: $BODY"
    expect_eq "/v1 request $i body" "$BODY" "$V1_PAGE"
done

say "/v2 twenty times: every answer is 200 with the V2 page, never V1"
for i in $(seq 1 20); do
    get /v2
    [[ $CODE == 200 ]] || fail "/v2 request $i: status $CODE, body: $BODY"
    [[ $BODY == *"This is version V2!"* ]] || fail "/v2 request $i: no 'This is version V2!' in: $BODY"
    [[ $BODY != *"V1"* ]] || fail "/v2 request $i reached V1: $BODY"
    expect_eq "/v2 request $i body" "$BODY" "$V2_PAGE"
done

say "/ matches no route: 404"
get /
expect_eq "status of /" "$CODE" 404

say "a Host with a port (web.example.com:8080) still routes /v1 to V1"
get /v1 -H 'Host: web.example.com:8080'
[[ $CODE == 200 && $BODY == "$V1_PAGE" ]] || fail "Host web.example.com:8080 /v1: status $CODE, body: $BODY"

say "the access log has one line per request: 21 x /v1 200 and 20 x /v2 200 with their upstream clusters, 1 x / 404 NR"
want_total=42
deadline=$((SECONDS + 10))
while ((SECONDS < deadline)); do
    (($(tail -n "+$log_start" "$ACCESS_LOG" | wc -l) >= want_total)) && break
    sleep 0.2
done
lines=$(tail -n "+$log_start" "$ACCESS_LOG")
total=$(grep -c . <<<"$lines" || true)
expect_eq "access log lines for the 42 requests" "$total" "$want_total"
v1_lines=$(grep -F '"GET /v1 HTTP/1.1" 200' <<<"$lines" || true)
expect_eq 'access log lines with "GET /v1 HTTP/1.1" 200' "$(grep -c . <<<"$v1_lines" || true)" 21
expect_eq "of those, lines naming $V1_CLUSTER" "$(grep -cF "$V1_CLUSTER" <<<"$v1_lines" || true)" 21
v2_lines=$(grep -F '"GET /v2 HTTP/1.1" 200' <<<"$lines" || true)
expect_eq 'access log lines with "GET /v2 HTTP/1.1" 200' "$(grep -c . <<<"$v2_lines" || true)" 20
expect_eq "of those, lines naming $V2_CLUSTER" "$(grep -cF "$V2_CLUSTER" <<<"$v2_lines" || true)" 20
nr_lines=$(grep -F '"GET / HTTP/1.1" 404' <<<"$lines" || true)
expect_eq 'access log lines with "GET / HTTP/1.1" 404' "$(grep -c . <<<"$nr_lines" || true)" 1
grep -qE '(^|[[:space:]])NR([[:space:]]|$)' <<<"$nr_lines" || fail "the 404 line has no NR flag: $nr_lines"

say "the gateway is still running"
cluster_pid_alive "$SEED_GW_PID" || fail "weir gateway exited"

say "weir gateway exits 0 on SIGTERM, with no sanitizer report in its log"
cluster_stop "$SEED_GW_PID" 20 || fail "weir gateway did not exit within 20s of SIGTERM"
[[ $STOP_RC == 0 ]] || fail "weir gateway exited with status $STOP_RC on SIGTERM"
if sanitizer_report "$CLUSTER_DIR/gateway.log"; then fail "sanitizer report in $CLUSTER_DIR/gateway.log"; fi

echo "PASS: 50_seed"
