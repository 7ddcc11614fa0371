# Sourced by the bench/run-*.sh scripts: runs one benchmark command and records it, with the
# machine, the source it was built from, and what else was busy, as
# bench/results/NAME-<date>[-HHMMSS].md. The shared machines drift, so the load goes in too.

# bench_record NAME BUILD_DIR CMD...: prints the command's output; returns its exit status.
bench_record() {
    local name=$1 build=$2
    shift 2
    local top out cpu mem build_type src commit dirty load busy output rc
    top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    mkdir -p "$top/bench/results"
    out="$top/bench/results/$name-$(date +%Y-%m-%d).md"
    # a second run on the same day keeps the first
    [ -e "$out" ] && out="$top/bench/results/$name-$(date +%Y-%m-%d-%H%M%S).md"

    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    build_type=unknown
    src=$top
    if [ -f "$build/CMakeCache.txt" ]; then
        build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
        # an empty cache entry means CMakeLists.txt picked its default
        build_type=${build_type:-RelWithDebInfo}
        # the tree the build came from (a build of a clean checkout elsewhere says so)
        src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
        src=${src:-$top}
    fi
    commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
    # what was measured may differ from the commit: say so, and where
    dirty=$(git -C "$src" status --porcelain -- src include bench tools ':!bench/results' 2>/dev/null |
        awk '{ print $2 }' | paste -sd ' ' -)
    [ -n "$dirty" ] && commit="$commit + uncommitted changes ($dirty)"
    load=$(cut -d ' ' -f 1-3 /proc/loadavg)
    # (top's second sample is the last second's use; its first is since each process started)
    busy=$(top -b -n 2 -d 1 -w 200 2>/dev/null | awk '/^top -/ { n++ }
        n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 10 { printf "%s%s %s%%", sep, $12, $9; sep = ", " }' ||
        true)

    echo "running: $*" >&2
    set +e
    output=$("$@" 2>&1)
    rc=$?
    set -e

    {
        echo "# $name-bench, $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo
        echo "- machine: $(nproc) cores, ${cpu:-unknown CPU}, $mem"
        echo "- kernel: $(uname -sr)"
        echo "- source: $src, commit $commit, build type $build_type"
        echo "- load before the run: $load (1/5/15 min); processes over 10% CPU in the second before: ${busy:-none}"
        echo "- command: \`$*\`"
        echo "- exit status: $rc"
        echo
        echo '```'
        echo "$output"
        echo '```'
    } >"$out"

    echo "$output"
    echo "written: ${out#"$top"/}" >&2
    return $rc
}
