#!/usr/bin/env bash
# Builds every libFuzzer target with clang in build-fuzz/ and fuzzes each for a bounded time:
#   tests/fuzz/run-fuzz.sh [SECONDS_PER_TARGET]      (default 30)
# The targets are found in the build (every fuzz_* target; fuzz_snapshot_load too once it is
# there), each with the seed corpus its fuzz_<name>_corpus test names in tests/fuzz/CMakeLists.txt.
# The seeds are read-only: each run fuzzes a copy in a temporary directory. Crash inputs are kept
# in build-fuzz/artifacts/ and printed. One summary line per target, then "N passed, M failed";
# the exit status is 1 when a target crashed, leaked, timed out or failed to build.
set -uo pipefail

secs=${1:-30}
case "$secs" in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
    ;;
esac
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$root/build-fuzz
artifacts=$build/artifacts
jobs=$(nproc)
cd "$root"
mkdir -p "$artifacts"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The web view is not fuzzed: without it the build needs no Node.js.
if ! CC=clang cmake -S . -B "$build" -DCASCADE_FUZZ=ON -DCASCADE_WEB=OFF >"$tmp/configure.log" 2>&1; then
    cat "$tmp/configure.log" >&2
    echo "run-fuzz: cmake could not configure build-fuzz/" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

targets=$(cmake --build "$build" --target help | sed -n 's/^\.\.\. \(fuzz_[A-Za-z0-9_]*\).*/\1/p' | sort)
if [ -z "$targets" ]; then
    echo "run-fuzz: no fuzz_* targets (is the C compiler clang, CASCADE_FUZZ on?)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

# The corpus of a target: the last argument of its <target>_corpus test (asked once the target is
# built: ctest shows no command for an executable that does not exist yet).
corpus_of() {
    ctest --test-dir "$build" -N -V -R "^$1_corpus\$" 2>/dev/null |
        sed -n 's/^[0-9]*: Test command: //p' | tr -d '"' | sed -n 's/.* -runs=0 //p' | head -n 1
}

passed=0
failed=0
for t in $targets; do
    if ! cmake --build "$build" --target "$t" -j "$jobs" >"$tmp/$t.build" 2>&1; then
        grep -E 'error|Error' "$tmp/$t.build" | head -n 20
        echo "$t: FAILED to build"
        failed=$((failed + 1))
        continue
    fi
    exe=$(find "$build/tests" -type f -name "$t" -perm -u+x | head -n 1)
    seeds=$(corpus_of "$t")
    work=$tmp/$t.corpus
    mkdir -p "$work"
    if [ -n "$seeds" ] && [ -d "$seeds" ]; then
        cp -r "$seeds/." "$work/"
    else
        echo "$t: no seed corpus registered (a fuzz_${t#fuzz_}_corpus test); starting empty"
    fi
    start=$SECONDS
    "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$t-" "$work" >"$tmp/$t.log" 2>&1
    rc=$?
    took=$((SECONDS - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/$t.log" | tail -n 1)
    size=$(find "$work" -type f | wc -l)
    if [ $rc -eq 0 ]; then
        echo "$t: ok, ${execs:-?} execs, corpus $size inputs, ${took} s"
        passed=$((passed + 1))
    else
        grep -E '^==[0-9]+==ERROR|^SUMMARY|^    #[0-9] |whole:|bad response|Test unit written' \
            "$tmp/$t.log" | head -n 30
        echo "$t: FAILED (exit $rc), ${execs:-?} execs, corpus $size inputs, ${took} s"
        sed -n 's/.*Test unit written to \(.*\)$/  crash input: \1/p' "$tmp/$t.log"
        failed=$((failed + 1))
    fi
done

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
