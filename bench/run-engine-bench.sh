#!/usr/bin/env bash
# Runs engine-bench at 10 M events and records the result with the machine it ran on, as
# bench/results/engine-<date>.md. Usage: bench/run-engine-bench.sh BUILD_DIR [engine-bench args]
# (extra arguments go to engine-bench after the default --events 10000000, so they override it).
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    echo "usage: $0 BUILD_DIR [engine-bench args...]" >&2
    exit 2
fi
build=$1
shift
bin="$build/bench/engine-bench"
[ -x "$bin" ] || { echo "no $bin: build first (make)" >&2; exit 1; }

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$top/bench/results"
out="$top/bench/results/engine-$(date +%Y-%m-%d).md"
# a second run on the same day keeps the first
[ -e "$out" ] && out="$top/bench/results/engine-$(date +%Y-%m-%d-%H%M%S).md"

cmd=("$bin" --events 10000000 "$@")
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
build_type=unknown
if [ -f "$build/CMakeCache.txt" ]; then
    build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
    # an empty cache entry means CMakeLists.txt picked its default
    build_type=${build_type:-RelWithDebInfo}
fi
commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
# what was measured may differ from the commit: say so
if [ -n "$(git -C "$top" status --porcelain -- src include bench 2>/dev/null)" ]; then
    commit="$commit + uncommitted changes"
fi

echo "running: ${cmd[*]}" >&2
set +e
output=$("${cmd[@]}" 2>&1)
rc=$?
set -e

{
    echo "# engine-bench, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- machine: $(nproc) cores, ${cpu:-unknown CPU}, $mem"
    echo "- kernel: $(uname -sr)"
    echo "- commit: $commit, build type $build_type"
    echo "- command: \`${cmd[*]}\`"
    echo "- exit status: $rc"
    echo
    echo '```'
    echo "$output"
    echo '```'
} >"$out"

echo "$output"
echo "written: ${out#"$top"/}" >&2
exit $rc
