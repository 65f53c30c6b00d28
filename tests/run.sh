#!/usr/bin/env bash
# tests/run.sh: what CI runs (.ci/run). Installs the Debian packages that are missing, builds
# with AddressSanitizer and UBSan (Debug) into build-test/, and runs every test through ctest:
# unit tests (cmocka) and the end-to-end tests (tests/e2e, network namespaces, as root, one at a
# time). Exits with ctest's status. Works unattended (no stdin, CI=true) on a fresh Debian 12.
# Extra arguments go to ctest, e.g. tests/run.sh -R e2e/50 or -L unit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build-test"

# shellcheck source=SCRIPTDIR/../deploy/local/packages.sh
source "$ROOT/deploy/local/packages.sh"

echo "== packages"
weir_install_packages </dev/null

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

echo "== build ($BUILD: Debug, WEIR_SANITIZE=ON)"
cmake -S "$ROOT" -B "$BUILD" -DWEIR_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug </dev/null
cmake --build "$BUILD" -j "$(nproc)" </dev/null

if [[ $(id -u) != 0 ]]; then
    echo "warning: not root: the end-to-end tests (network namespaces) will fail" >&2
fi

netns_before=$(ip netns list 2>/dev/null | awk '{print $1}' | sort)

echo "== ctest"
rc=0
ctest --test-dir "$BUILD" --output-on-failure -j1 "$@" </dev/null || rc=$?

# Tests remove what they made; say so loudly if one did not (nothing is removed here).
netns_after=$(ip netns list 2>/dev/null | awk '{print $1}' | sort)
left=$(comm -13 <(printf '%s\n' "$netns_before") <(printf '%s\n' "$netns_after") | grep . || true)
if [[ -n $left ]]; then
    echo "warning: network namespaces left behind by the tests: $(tr '\n' ' ' <<<"$left")" >&2
fi

exit "$rc"
