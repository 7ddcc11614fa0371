#!/usr/bin/env bash
# Installs what cascaded needs to build and test, from Debian 12 packages: the toolchain, the C
# libraries CMakeLists.txt asks pkg-config for, the Python modules the conformance and oracle
# scripts import (Debian's, so they load in /usr/bin/python3), and clang-format.
# Idempotent: it asks dpkg what is already installed and only calls apt-get for the rest.
set -euo pipefail

packages=(
    gcc libc6-dev make cmake pkg-config
    liburing-dev libjemalloc-dev libmsgpack-dev libigraph-dev libxxhash-dev libcmocka-dev
    libjansson-dev libhttp-parser-dev zlib1g-dev libzstd-dev zstd
    python3 python3-msgpack python3-networkx python3-igraph python3-pandas
    clang-format
)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages already installed"
    exit 0
fi

# sudo drops the environment, so DEBIAN_FRONTEND goes through env on both paths.
if [ "$(id -u)" -eq 0 ]; then
    as_root=(env)
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo env)
else
    echo "install-deps: missing ${missing[*]}; run as root or install sudo" >&2
    exit 1
fi

"${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
"${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
echo "install-deps: installed ${missing[*]}"
