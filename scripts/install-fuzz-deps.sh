#!/usr/bin/env bash
# Installs what the fuzz targets (tests/fuzz/, run by tests/fuzz/run-fuzz.sh) need on Debian 12:
# clang, and libclang-rt-14-dev, which holds libFuzzer and the sanitizer runtimes that
# `clang -fsanitize=fuzzer,address,undefined` links (Debian's clang-14 does not depend on it).
# Idempotent: it asks dpkg what is already installed and only calls apt-get for the rest; then it
# checks that clang links a libFuzzer target.
set -euo pipefail

packages=(clang libclang-rt-14-dev)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-fuzz-deps: all ${#packages[@]} packages already installed"
else
    # sudo drops the environment, so DEBIAN_FRONTEND goes through env on both paths.
    if [ "$(id -u)" -eq 0 ]; then
        as_root=(env)
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo env)
    else
        echo "install-fuzz-deps: missing ${missing[*]}; run as root or install sudo" >&2
        exit 1
    fi
    "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    echo "install-fuzz-deps: installed ${missing[*]}"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/t.c" <<'C'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return 0; }
C
if ! clang -fsanitize=fuzzer,address,undefined "$tmp/t.c" -o "$tmp/t" 2>"$tmp/err"; then
    echo "install-fuzz-deps: clang cannot link a libFuzzer target:" >&2
    cat "$tmp/err" >&2
    exit 1
fi
echo "install-fuzz-deps: clang links libFuzzer targets"
