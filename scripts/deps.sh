#!/usr/bin/env bash
# Installs the Debian packages that building, testing and demonstrating mlxd
# need, when any of them is missing. Runs `apt-get update` only then, and
# never asks questions. Uses sudo when not run as root.
set -euo pipefail

packages=(
    # build
    cmake gcc make pkg-config clang libclang-rt-14-dev
    libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
    libopenmpi-dev openmpi-bin libsystemd-dev
    # tests, benchmark and scripts
    libcmocka-dev python3 python3-zmq python3-numpy gnuplot-nox
    procps util-linux iproute2 coreutils
    # service tests: systemd-analyze, systemd-socket-activate, xmllint, groff
    systemd libxml2-utils groff-base
    # the Python module and its tests (Debian's packages are for /usr/bin/python3)
    python3-dev python3-numpy python3-pytest
    # metrics: the HTTP server, and promtool and a real Prometheus for its tests
    libmicrohttpd-dev prometheus curl
    # tests of the terminal views and of JSON output
    tmux jq
)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [[ $status != "install ok installed" ]]; then
        missing+=("$p")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "deps.sh: all ${#packages[@]} packages are installed"
    exit 0
fi

sudo=()
if ((EUID != 0)); then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "deps.sh: missing packages: ${missing[*]}" >&2
        echo "deps.sh: run this script as root (there is no sudo here)" >&2
        exit 1
    fi
    sudo=(sudo)
fi

echo "deps.sh: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
