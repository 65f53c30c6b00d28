#!/usr/bin/env bash
# tests/bench/run.sh: the gateway's plain hop and its mTLS hop (DestinationRule tls MUTUAL to
# the backend) measured beside nginx and HAProxy in one run,
# with ../shared/bench/peers.sh as the driver (loopback only). Not part of ctest: benchmarks
# report ratios, they do not pass or fail.
#   tests/bench/run.sh [--quick] [peers.sh options...]
# Builds a Release weir into build-bench/ first. Results: the table peers.sh prints, and
# build-bench/bench.tsv with the raw runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
peers=${PEERS_SH:-$root/../shared/bench/peers.sh}
[ -x "$peers" ] || [ -f "$peers" ] || { echo "bench: $peers not found (set PEERS_SH)" >&2; exit 2; }
cmake -S "$root" -B "$root/build-bench" -DCMAKE_BUILD_TYPE=Release -DWEIR_TESTS=OFF >/dev/null
cmake --build "$root/build-bench" -j"$(nproc)" --target weir >/dev/null
exec bash "$peers" \
  --ours "$root/build-bench/weir gateway -c {CONFIG} --access-log off --log-level warning" \
  --ours-config "$here/gateway.yaml.in" --ours-tls-config "$here/gateway-mtls.yaml.in" \
  --ours-name weir \
  --scenarios "${BENCH_SCENARIOS:-direct nginx haproxy ours nginx-mtls haproxy-mtls ours-mtls}" \
  --out "$root/build-bench/bench.tsv" "$@"
