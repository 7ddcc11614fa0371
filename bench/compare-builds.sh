#!/usr/bin/env bash
# Same-run comparison of two builds (a change against its parent): alternating rounds of
# `cascade-bench ingest` and `cascade-bench query` against each build's server, so that the
# machine's drift (±40 % here) hits both alike. One bench client drives both servers (the new
# build's, unless CLIENT=own: each build its own), so that both get the same event stream: the
# workload model changed in 66f643c..6548a8f, and a client of either side alone would compare
# different workloads. Prints a markdown table of medians, ranges and new/base ratios; the raw
# JSON stays in OUT_DIR when given.
# usage: bench/compare-builds.sh BASE_BUILD NEW_BUILD [ROUNDS]
# Env: EVENTS (ingest, default 1000000), QEVENTS (query preload, 1000000), RATE (2000),
#      QSECONDS (10), OUT_DIR (keep the JSON there), CLIENT (new: the new build's cascade-bench
#      for both; own: each build its own)
set -euo pipefail
base=$(cd "${1:?usage: compare-builds.sh BASE_BUILD NEW_BUILD [ROUNDS]}" && pwd)
new=$(cd "${2:?usage: compare-builds.sh BASE_BUILD NEW_BUILD [ROUNDS]}" && pwd)
rounds=${3:-3}
events=${EVENTS:-1000000}
qevents=${QEVENTS:-1000000}
rate=${RATE:-2000}
qsecs=${QSECONDS:-10}
client=${CLIENT:-new}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${OUT_DIR:-$(mktemp -d)}
mkdir -p "$out"
for b in "$base" "$new"; do
    for f in cascaded bench/cascade-bench; do
        [ -x "$b/$f" ] || { echo "compare-builds: $b/$f is missing (build it first)" >&2; exit 2; }
    done
done

for r in $(seq 1 "$rounds"); do
    # alternate which build goes first, so neither always runs on a cooler machine
    if [ $((r % 2)) -eq 1 ]; then order="base new"; else order="new base"; fi
    for which in $order; do
        b=$base; [ "$which" = new ] && b=$new
        bench="$new/bench/cascade-bench"; [ "$client" = own ] && bench="$b/bench/cascade-bench"
        echo "== round $r/$rounds: $which ingest $events events" >&2
        "$bench" ingest --server "$b/cascaded" --events "$events" \
            --connections 2 --json "$out/$which-ingest-$r.json" >/dev/null
        echo "== round $r/$rounds: $which query $rate/s for $qsecs s" >&2
        "$bench" query --server "$b/cascaded" --events "$qevents" \
            --rate "$rate" --seconds "$qsecs" --json "$out/$which-query-$r.json" >/dev/null
    done
done
echo "client: $client ($([ "$client" = own ] && echo "each build's own cascade-bench" || echo "$new/bench/cascade-bench for both"))"
/usr/bin/python3 "$here/compare_report.py" "$out" "$base" "$new" "$rounds"
