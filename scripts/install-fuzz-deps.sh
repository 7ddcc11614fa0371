#!/usr/bin/env bash
# Installs what the fuzz targets (tests/fuzz/, run by tests/fuzz/run-fuzz.sh) need on Debian 12:
# clang, and libclang-rt-14-dev, which holds libFuzzer and the sanitizer runtimes that
# `clang -fsanitize=fuzzer,address,undefined` links (Debian's clang-14 does not depend on it).
# Idempotent: it asks dpkg what is already installed and only calls apt-get for the rest; then it
# checks that clang links a libFuzzer target.
set -euo pipefail

packages=(clang libclang-rt-14-dev)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/apt-lib.sh
. "$root/scripts/apt-lib.sh"
apt_install_missing install-fuzz-deps "${packages[@]}"

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
