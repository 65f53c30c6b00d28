#!/usr/bin/env bash
# 80_split.sh: weighted splitting and header operations (istio-semantics.md 2.3, 2.10, S14, T1,
# T13), through the gateway and through a client sidecar, with one VirtualService for both.
#  - an 80/20 split over 1000 requests gives v1 80 % within 4 points; weights 8/2 do the same;
#  - a destination with weight 0, or with no weight next to a weighted one, gets nothing; a
#    single destination ignores its weight 0;
#  - route-level headers: request set overwrites, add appends, remove removes; response
#    set/add/remove as the client sees them;
#  - per-destination headers (set/add/remove) apply beside the route's, and with a split they go
#    with the destination it picked, on request and response;
#  - `set: {host: foo}` (route or destination level) is a host rewrite.
# Pods: gw (weir gateway), client (curl, no sidecar), mclient (weir sidecar), e1 and e2
# (echo_server v1 and v2).
# shellcheck disable=SC2016,SC2119
set -euo pipefail

WEIR_SOURCE_DIR=${WEIR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEIR_BUILD_DIR=${WEIR_BUILD_DIR:-$WEIR_SOURCE_DIR/build}
WEIR_BIN=${WEIR_BIN:-$WEIR_BUILD_DIR/weir}
ECHO_SERVER=${WEIR_ECHO_SERVER:-$WEIR_BUILD_DIR/tests/echo_server}
source "$WEIR_SOURCE_DIR/tests/lib/netns.sh"
source "$WEIR_SOURCE_DIR/tests/lib/gateway.sh"

require_root
require_cmd ip curl timeout setpriv iptables
[[ -x $WEIR_BIN ]] || fail "weir binary $WEIR_BIN not found (build first)"
[[ -x $ECHO_SERVER ]] || fail "echo_server $ECHO_SERVER not found (build first)"

E1_IP=10.244.0.31
E2_IP=10.244.0.32

cluster_trap
cluster_up "wt$$"
D=$CLUSTER_DIR
CLUSTER_EXTRA_LOGS+=("$D/access.log")
mkdir -p "$D/config"
{
    yaml_gateway
    yaml_service echo "$POL_VIP" "$E1_IP:80:v1" "$E2_IP:80:v2"
    cat <<'YAML'
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
YAML
} | conf_put "$D/config/mesh.yaml"
conf_put "$D/config/routes.yaml" <<'YAML'
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo, echo.local]
  gateways: [gw, mesh]
  http:
  - match: [{uri: {prefix: /w80/}}]
    route:
    - {destination: {host: echo, subset: v1}, weight: 80}
    - {destination: {host: echo, subset: v2}, weight: 20}
  - match: [{uri: {prefix: /w8/}}]
    route:
    - {destination: {host: echo, subset: v1}, weight: 8}
    - {destination: {host: echo, subset: v2}, weight: 2}
  - match: [{uri: {prefix: /w0/}}]
    route:
    - {destination: {host: echo, subset: v1}, weight: 100}
    - {destination: {host: echo, subset: v2}, weight: 0}
  - match: [{uri: {prefix: /wnone/}}]
    route:
    - {destination: {host: echo, subset: v1}, weight: 100}
    - {destination: {host: echo, subset: v2}}
  - match: [{uri: {prefix: /single0/}}]
    route:
    - {destination: {host: echo, subset: v2}, weight: 0}
  - match: [{uri: {prefix: /hdr/}}]
    headers:
      request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
      response: {set: {x-r: z}, add: {x-r-add: "2"}, remove: [x-served-by]}
    route:
    - destination: {host: echo, subset: v1}
      headers:
        request: {set: {x-d: dest}, add: {x-d-add: d}, remove: [x-d-gone]}
        response: {set: {x-rd: dest}, add: {x-rd-add: d}, remove: [content-type]}
  - match: [{uri: {prefix: /hdrw/}}]
    route:
    - destination: {host: echo, subset: v1}
      weight: 50
      headers:
        request: {set: {x-dest: v1}}
        response: {set: {x-dest-resp: v1}}
    - destination: {host: echo, subset: v2}
      weight: 50
      headers:
        request: {set: {x-dest: v2}}
        response: {set: {x-dest-resp: v2}}
  - match: [{uri: {prefix: /host/}}]
    headers: {request: {set: {host: foo}}}
    route: [{destination: {host: echo, subset: v1}}]
  - match: [{uri: {prefix: /dhost/}}]
    route:
    - destination: {host: echo, subset: v1}
      headers: {request: {set: {host: bar}}}
  - route: [{destination: {host: echo, subset: v1}}]
YAML

out=$("$WEIR_BIN" validate -c "$D/config" 2>&1) || fail "weir validate refuses the test's config: $out"

policy_pods || fail "pods"
pod_add e1 "$E1_IP" || fail "pod e1"
pod_add e2 "$E2_IP" || fail "pod e2"
echo_start e1 v1 "$E1_IP:80"
echo_start e2 v2 "$E2_IP:80"
gateway_start gw "$D/config" "$D/gateway.log" "$D/access.log"
GW=$GW_PID
sidecar_start mclient app=sleep sleep "$D/config"
SC=$SIDECAR_PID

# count_split VIA PATH N: N GETs on one keep-alive connection; prints "V1 V2 OTHER".
count_split() {
    local via=$1 path=$2 n=$3 i
    local -a urls=()
    for ((i = 0; i < n; i++)); do urls+=("$(via_url "$via" "$path$i")"); done
    via_curl "$via" -s --max-time 60 "${urls[@]}" >"$D/split.out" || true
    local v1 v2 all
    v1=$(grep -c '^name=v1$' "$D/split.out" || true)
    v2=$(grep -c '^name=v2$' "$D/split.out" || true)
    all=$(grep -c '^name=' "$D/split.out" || true)
    printf '%s %s %s\n' "$v1" "$v2" "$((all - v1 - v2))"
}

# get VIA PATH [curl args]: one GET; response headers in $D/h, body in $D/b; prints the status.
get() {
    local via=$1 path=$2
    shift 2
    via_curl "$via" -sS --max-time 10 -D "$D/h" -o "$D/b" -w '%{http_code}' "$@" "$(via_url "$via" "$path")" || true
}
# seen NAME: the values of request header NAME the backend saw, comma-joined, no spaces.
seen() { sed -n "s/^header=$1: *//Ip" "$D/b" | tr -d '\r ' | paste -sd, -; }
# resp NAME: the values of response header NAME the client got, comma-joined.
resp() { sed -n "s/^$1: *//Ip" "$D/h" | tr -d '\r ' | paste -sd, -; }

# share_80 VIA PATH WHAT: 1000 requests must give v1 760..840 (80 % within 4 points, T1). The
# bound is 3.2 sigma, so a fair split misses it once in about 600 samples: a miss draws a second
# sample of 1000, which decides; a biased split misses both.
share_80() {
    local via=$1 path=$2 what=$3 try v1 v2 other
    for try in 1 2; do
        read -r v1 v2 other <<<"$(count_split "$via" "$path" 1000)"
        echo "   v1 $v1, v2 $v2"
        if ((other != 0 || v1 + v2 != 1000)); then
            flunk "[$via] $what: $((v1 + v2)) of 1000 requests answered by v1 or v2, $other by another"
            return
        fi
        ((v1 >= 760 && v1 <= 840)) && return
        ((try == 1)) && echo "   outside 760..840: a second sample of 1000 decides"
    done
    flunk "[$via] $what gave v1 $v1 of 1000 twice outside 760..840"
}

for via in gw mesh; do
    say "[$via] an 80/20 split over 1000 requests gives v1 a share within 4 points of 80 % (T1)"
    share_80 "$via" /w80/ "80/20"

    say "[$via] weights 8/2 split as 80/20 does"
    share_80 "$via" /w8/ "8/2"

    say "[$via] a destination with weight 0 gets nothing, nor one with no weight beside a weighted one (S14)"
    read -r v1 v2 other <<<"$(count_split "$via" /w0/ 200)"
    check "[$via] v1/v2 answers with weights 100/0" "$v1/$v2" 200/0
    read -r v1 v2 other <<<"$(count_split "$via" /wnone/ 200)"
    check "[$via] v1/v2 answers with weights 100/omitted" "$v1/$v2" 200/0

    say "[$via] a single destination ignores its weight 0 and gets every request"
    read -r v1 v2 other <<<"$(count_split "$via" /single0/ 50)"
    check "[$via] v1/v2 answers with one destination of weight 0" "$v1/$v2" 0/50

    say "[$via] route headers: request set overwrites, add appends, remove removes (T13)"
    code=$(get "$via" /hdr/x -H 'x-a: 0' -H 'x-b: 1' -H 'x-c: gone' -H 'x-keep: yes' -H 'x-d-gone: 1')
    check "[$via] status of /hdr/x" "$code" 200
    check "[$via] x-a upstream (set over the client's 0)" "$(seen x-a)" 1
    check "[$via] x-b upstream (client's 1, then the added 2)" "$(seen x-b)" 1,2
    check "[$via] x-c upstream (removed)" "$(seen x-c)" ""
    check "[$via] x-keep upstream (untouched)" "$(seen x-keep)" yes

    say "[$via] route headers on the response: set, add and remove as the client sees them"
    check "[$via] x-r at the client" "$(resp x-r)" z
    check "[$via] x-r-add at the client" "$(resp x-r-add)" 2
    check "[$via] x-served-by at the client (removed)" "$(resp x-served-by)" ""

    say "[$via] destination headers (set, add, remove) apply with a single destination, beside the route's"
    check "[$via] x-d upstream" "$(seen x-d)" dest
    check "[$via] x-d-add upstream" "$(seen x-d-add)" d
    check "[$via] x-d-gone upstream (removed)" "$(seen x-d-gone)" ""
    check "[$via] x-rd at the client" "$(resp x-rd)" dest
    check "[$via] x-rd-add at the client" "$(resp x-rd-add)" d
    check "[$via] content-type at the client (removed)" "$(resp content-type)" ""

    say "[$via] with a 50/50 split, each destination's own headers go with it, both ways"
    mismatch=0 seen_v1=0 seen_v2=0
    for i in $(seq 1 20); do
        code=$(get "$via" "/hdrw/$i")
        name=$(sed -n 's/^name=//p' "$D/b")
        [[ $code == 200 ]] || { flunk "[$via] /hdrw/$i answered $code"; break; }
        [[ $name == v1 ]] && seen_v1=$((seen_v1 + 1))
        [[ $name == v2 ]] && seen_v2=$((seen_v2 + 1))
        if [[ $(seen x-dest) != "$name" || $(resp x-dest-resp) != "$name" ]]; then
            mismatch=$((mismatch + 1))
            ((mismatch <= 3)) && echo "   request $i answered by '$name': x-dest upstream '$(seen x-dest)', x-dest-resp '$(resp x-dest-resp)'"
        fi
    done
    ((seen_v1 > 0 && seen_v2 > 0)) || flunk "[$via] 20 requests of a 50/50 split reached v1 $seen_v1, v2 $seen_v2 times"
    check "[$via] requests whose destination headers were not their destination's" "$mismatch" 0

    say "[$via] set: {host: foo} rewrites the Host the upstream sees, at the route and the destination"
    get "$via" /host/x >/dev/null
    check "[$via] upstream Host with route set host: foo" "$(sed -n 's/^host=//p' "$D/b")" foo
    get "$via" /dhost/x >/dev/null
    check "[$via] upstream Host with destination set host: bar" "$(sed -n 's/^host=//p' "$D/b")" bar
done

say "the gateway and the sidecar exit 0 on SIGTERM, with no sanitizer report"
proxies_stop_clean "$GW" "$SC"
e2e_pass 80_split
