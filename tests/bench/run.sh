#!/usr/bin/env bash
# tests/bench/run.sh: the gateway's plain hop and its mTLS hop (DestinationRule tls MUTUAL to
# the backend) measured beside nginx and HAProxy in one run,
# with ../shared/bench/peers.sh as the driver (loopback only); then (routes.sh) what a 50/50
# weighted route and 100% mirroring cost the gateway against its plain route, on the same
# backends in the same run. Not part of ctest: benchmarks report ratios, they do not pass or fail.
#   tests/bench/run.sh [--quick] [peers.sh options...]
# --quick and --rounds N apply to both phases. BENCH_PHASES="peers routes" (the default) picks
# the phases, BENCH_SCENARIOS the peers.sh scenarios, ROUTE_SCENARIOS those of routes.sh
# ("plain weighted mirror"). peers.sh's time budget is MAX_SECONDS (default here 290 s a round,
# room for all seven scenarios on a shared 2-core machine), routes.sh's ROUTES_MAX_SECONDS.
# Builds a Release weir into build-bench/ first. Results: the tables both phases print, and
# build-bench/bench.tsv and build-bench/bench-routes.tsv with the raw runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
peers=${PEERS_SH:-$root/../shared/bench/peers.sh}
phases=${BENCH_PHASES:-peers routes}
[ -x "$peers" ] || [ -f "$peers" ] || { echo "bench: $peers not found (set PEERS_SH)" >&2; exit 2; }
cmake -S "$root" -B "$root/build-bench" -DCMAKE_BUILD_TYPE=Release -DWEIR_TESTS=OFF >/dev/null
cmake --build "$root/build-bench" -j"$(nproc)" --target weir >/dev/null
routes_args=()
args=("$@")
rounds=1
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --quick) routes_args+=(--quick) ;;
    --rounds) rounds=${args[i + 1]:-1}; routes_args+=(--rounds "$rounds") ;;
    --keep) routes_args+=(--keep) ;;
  esac
done
rc=0
if [[ " $phases " == *" peers "* ]]; then
  MAX_SECONDS=${MAX_SECONDS:-$((290 * rounds))} bash "$peers" \
    --ours "$root/build-bench/weir gateway -c {CONFIG} --access-log off --log-level warning" \
    --ours-config "$here/gateway.yaml.in" --ours-tls-config "$here/gateway-mtls.yaml.in" \
    --ours-name weir \
    --scenarios "${BENCH_SCENARIOS:-direct nginx haproxy ours nginx-mtls haproxy-mtls ours-mtls}" \
    --out "$root/build-bench/bench.tsv" "$@" || rc=$?
fi
if [[ " $phases " == *" routes "* ]]; then
  PEERS_SH=$peers bash "$here/routes.sh" --weir "$root/build-bench/weir" \
    --out "$root/build-bench/bench-routes.tsv" ${routes_args[@]+"${routes_args[@]}"} || { r=$?; ((rc)) || rc=$r; }
fi
exit "$rc"
