#!/usr/bin/env bash
# Installs what the peer baselines of bench/peers/ need on top of scripts/install-deps.sh:
# Debian's redis-server and redis-tools (redis-benchmark) for the Redis peer, and
# @duckdb/node-api from npm (pinned by bench/peers/duckdb/package-lock.json) for the DuckDB peer.
# The networkx / igraph peer uses python3-networkx and python3-igraph (also in install-deps.sh);
# run-peers.sh asks cascaded its top cascades with curl.
# Idempotent: dpkg is asked what is already installed, npm ci runs only when node_modules is missing
# or older than the lock file. The Debian package starts a system redis-server; it is stopped and
# disabled again, since the bench starts its own on a free loopback port with a temporary dir.
# A failed npm install (no registry) is not an error: the DuckDB peer then reports itself skipped.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
packages=(redis-server redis-tools curl nodejs npm python3-networkx python3-igraph)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done

if [ "$(id -u)" -eq 0 ]; then
    as_root=(env)
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo env)
else
    as_root=()
fi

if [ ${#missing[@]} -gt 0 ]; then
    # nodejs/npm may come from elsewhere than Debian (a node on PATH is enough).
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        filtered=()
        for pkg in "${missing[@]}"; do
            case $pkg in nodejs|npm) ;; *) filtered+=("$pkg") ;; esac
        done
        missing=(${filtered[@]+"${filtered[@]}"})
    fi
fi

if [ ${#missing[@]} -gt 0 ]; then
    if [ ${#as_root[@]} -eq 0 ]; then
        echo "install-bench-deps: missing ${missing[*]}; run as root or install sudo" >&2
        exit 1
    fi
    # policy-rc.d 101 keeps the package's postinst from starting a system redis-server.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ] && [ "$(id -u)" -eq 0 ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    rc=0
    "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || rc=$?
    [ $own_policy -eq 1 ] && rm -f "$policy"
    [ $rc -eq 0 ] || exit $rc
    echo "install-bench-deps: installed ${missing[*]}"
else
    echo "install-bench-deps: all Debian packages already installed"
fi

# Never leave a system redis running: the bench starts its own.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    "${as_root[@]}" systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
if [ -x /etc/init.d/redis-server ] && [ -f /run/redis/redis-server.pid ]; then
    "${as_root[@]}" /etc/init.d/redis-server stop >/dev/null 2>&1 || true
fi

duck="$root/bench/peers/duckdb"
if ! command -v npm >/dev/null 2>&1; then
    echo "install-bench-deps: no npm; the DuckDB peer will be skipped"
elif [ -d "$duck/node_modules/@duckdb/node-api" ] && \
     [ "$duck/node_modules/.package-lock.json" -nt "$duck/package-lock.json" ]; then
    echo "install-bench-deps: @duckdb/node-api already installed"
else
    start=$(date +%s%N)
    if (cd "$duck" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>"$duck/.npm-ci.log"); then
        ms=$(( ($(date +%s%N) - start) / 1000000 ))
        printf 'install-bench-deps: npm ci in bench/peers/duckdb took %d.%03d s\n' \
            $((ms / 1000)) $((ms % 1000))
        rm -f "$duck/.npm-ci.log"
    else
        echo "install-bench-deps: npm ci failed in bench/peers/duckdb (see $duck/.npm-ci.log);" \
            "the DuckDB peer will be skipped"
    fi
fi
