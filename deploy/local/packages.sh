# shellcheck shell=bash
# deploy/local/packages.sh: the Debian packages weir builds, tests and demos with, installed when
# missing. Sourced by deploy/local/demo.sh and tests/run.sh. (make and libc6-dev are listed
# because --no-install-recommends would otherwise leave a fresh machine without them.)

WEIR_PACKAGES=(
    cmake make gcc libc6-dev pkg-config libuv1-dev node-llhttp libmbedtls-dev libyaml-dev libpcre2-dev
    libjansson-dev libcmocka-dev busybox curl socat iproute2 iptables tcpdump nginx-light
    haproxy wrk openssl prometheus jq
)

# weir_missing_packages: prints the packages of WEIR_PACKAGES that are not installed.
weir_missing_packages() {
    local p status
    for p in "${WEIR_PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
        [[ $status == ii* ]] || printf '%s\n' "$p"
    done
}

# weir_install_packages: installs what is missing (apt-get update only then). Needs root.
weir_install_packages() {
    local -a missing
    mapfile -t missing < <(weir_missing_packages)
    if ((${#missing[@]} == 0)); then
        echo "packages: all ${#WEIR_PACKAGES[@]} present"
        return 0
    fi
    echo "packages: installing ${missing[*]}"
    if [[ $(id -u) != 0 ]]; then
        echo "packages: need root to install ${missing[*]}" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q </dev/null || { echo "packages: apt-get update failed" >&2; return 1; }
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null ||
        { echo "packages: apt-get install ${missing[*]} failed" >&2; return 1; }
    mapfile -t missing < <(weir_missing_packages)
    if ((${#missing[@]} > 0)); then
        echo "packages: still missing after install: ${missing[*]}" >&2
        return 1
    fi
}
