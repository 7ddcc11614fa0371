#!/usr/bin/env bash
# Installs what cascaded needs to build and test, from Debian 12 packages: the toolchain, the C
# libraries CMakeLists.txt asks pkg-config for, the Python modules the conformance and oracle
# scripts import (Debian's, so they load in /usr/bin/python3), and clang-format; then the web
# view's front-end packages from the npm registry (`npm ci` in web/, pinned by its lock file;
# they are bundled at build time, the server never needs Node.js at run time).
# --browser also installs Debian's Chromium, which the browser tests drive, and makes a failed
# npm ci an error (`make test` asks for both; `make run` can do without the web view).
# Idempotent: it asks dpkg what is already installed and only calls apt-get for the rest, and
# runs npm ci only when web/package-lock.json changed since the last install.
set -euo pipefail

packages=(
    gcc libc6-dev make cmake pkg-config
    liburing-dev libjemalloc-dev libmsgpack-dev libigraph-dev libxxhash-dev libcmocka-dev
    libjansson-dev libhttp-parser-dev zlib1g-dev libzstd-dev zstd
    python3 python3-msgpack python3-networkx python3-igraph python3-pandas
    clang-format
    # the cluster (DESIGN §9): the NATS C client libcascade-client links, the JetStream server
    # the cluster tests start (three of it, on loopback)
    libnats-dev nats-server
    # for the cluster endpoint and its tests (issue 19): libcurl, scipy, pytest
    libcurl4-openssl-dev python3-scipy python3-pytest
)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
strict_web=0 # the tests need the web view; `make run` can do without it
case "${1:-}" in
--browser) packages+=(chromium) strict_web=1 ;;
"") ;;
*)
    echo "usage: $0 [--browser]" >&2
    exit 2
    ;;
esac
# Node.js and npm bundle the web view; any node on PATH will do, else Debian's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    packages+=(nodejs npm)
fi

# The web view's npm packages, reinstalled when the lock file changes (a stamp in node_modules
# holds the lock file's hash).
web_packages() {
    local lock="$root/web/package-lock.json" stamp="$root/web/node_modules/.cascade-lock-sha"
    [ -f "$lock" ] || return 0
    local want
    want=$(sha256sum "$lock" | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "install-deps: web/node_modules matches web/package-lock.json"
        return 0
    fi
    echo "install-deps: npm ci in web/ (the web view's front-end packages)"
    if ! (cd "$root/web" && npm ci --no-audit --no-fund --loglevel=error); then
        echo "install-deps: npm ci failed in web/: the build will embed a page without the web view" >&2
        return $((strict_web))
    fi
    echo "$want" >"$stamp"
}

# shellcheck source=scripts/apt-lib.sh
. "$root/scripts/apt-lib.sh"
apt_install_missing install-deps "${packages[@]}"
web_packages
