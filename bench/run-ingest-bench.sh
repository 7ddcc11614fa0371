#!/usr/bin/env bash
# Runs ingest-bench against a cascaded it starts itself (10 M events, 2 connections, fsync
# everysec) and records the result with the machine it ran on, as bench/results/ingest-<date>.md.
# Usage: bench/run-ingest-bench.sh BUILD_DIR [ingest-bench args] (extra arguments go after the
# defaults, so they override them).
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    echo "usage: $0 BUILD_DIR [ingest-bench args...]" >&2
    exit 2
fi
build=$1
shift
bin="$build/bench/ingest-bench"
server="$build/cascaded"
for f in "$bin" "$server"; do
    [ -x "$f" ] || { echo "no $f: build first (make)" >&2; exit 1; }
done

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$top/bench/results"
out="$top/bench/results/ingest-$(date +%Y-%m-%d).md"
# a second run on the same day keeps the first
[ -e "$out" ] && out="$top/bench/results/ingest-$(date +%Y-%m-%d-%H%M%S).md"

cmd=("$bin" --server "$server" --events 10000000 --connections 2 --fsync everysec "$@")
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
build_type=unknown
if [ -f "$build/CMakeCache.txt" ]; then
    build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
    # an empty cache entry means CMakeLists.txt picked its default
    build_type=${build_type:-RelWithDebInfo}
fi
# the commit of the tree the build came from (a build of a clean checkout elsewhere says so)
src=$top
if [ -f "$build/CMakeCache.txt" ]; then
    src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
    src=${src:-$top}
fi
commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
# what was measured may differ from the commit: say so, and where
dirty=$(git -C "$src" status --porcelain -- src include bench 2>/dev/null | awk '{ print $2 }' |
    paste -sd ' ' -)
if [ -n "$dirty" ]; then
    commit="$commit + uncommitted changes ($dirty)"
fi
# client and server share the machine: whatever else runs takes cores from both, so say what it was
load=$(cut -d ' ' -f 1-3 /proc/loadavg)
# (top's second sample is the last second's use; its first is since each process started)
busy=$(top -b -n 2 -d 1 -w 200 2>/dev/null | awk '/^top -/ { n++ }
    n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 10 { printf "%s%s %s%%", sep, $12, $9; sep = ", " }' ||
    true)

echo "running: ${cmd[*]}" >&2
set +e
output=$("${cmd[@]}" 2>&1)
rc=$?
set -e

{
    echo "# ingest-bench, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- machine: $(nproc) cores, ${cpu:-unknown CPU}, $mem"
    echo "- kernel: $(uname -sr)"
    echo "- source: $src, commit $commit, build type $build_type"
    echo "- load before the run: $load (1/5/15 min); processes over 10% CPU in the second before: ${busy:-none}"
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
