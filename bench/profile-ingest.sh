#!/usr/bin/env bash
# Where ingest time goes. Two views, because this machine's VM exposes no hardware counters and
# valgrind cannot follow the server's io_uring rings:
#  1. perf (cpu-clock sampling) on the real server while cascade-bench ingests N events over
#     loopback: the share of CPU time per function, every thread together;
#  2. callgrind on engine-bench (the engine's apply path in-process, the writer thread's work):
#     instructions per event, in total and for the costliest functions.
# usage: bench/profile-ingest.sh BUILD_DIR [EVENTS]   (default 2000000 for perf, 300000 for
# callgrind; ~2 min)
set -euo pipefail
build=${1:?usage: bench/profile-ingest.sh BUILD_DIR [EVENTS]}
n=${2:-2000000}
ncg=300000
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "## perf: CPU time of the server during \`cascade-bench ingest --events $n --connections 2\`"
if command -v perf >/dev/null; then
    # perf starts the server, so every thread of it is sampled from its first instruction
    perf record -F 499 -e cpu-clock -g -o "$tmp/perf.data" -- "$build/cascaded" --ingest-port 0 \
        --query-port 0 --http-port 0 --data-dir "$tmp/data" --analytics-interval 0 \
        >"$tmp/ready" 2>"$tmp/log" &
    perfpid=$!
    for _ in $(seq 300); do grep -q ready "$tmp/ready" 2>/dev/null && break; sleep 0.1; done
    port=$(sed -n 's/.*ingest=\([0-9]*\).*/\1/p' "$tmp/ready")
    spid=$(pgrep -n -f "$build/cascaded --ingest-port 0" || true)
    "$build/bench/cascade-bench" ingest --port "$port" --events "$n" --connections 2 \
        ${spid:+--server-pid "$spid"} 2>&1 | grep -E "events/s|ack latency" | head -2 || true
    [ -n "$spid" ] && kill -TERM "$spid"
    wait "$perfpid" || true
    perf report -i "$tmp/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -25 || true
else
    echo "(perf is not installed: apt-get install linux-perf)"
fi

echo
echo "## callgrind: instructions per event of engine-bench --events $ncg (apply path only)"
if command -v valgrind >/dev/null; then
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" \
        "$build/bench/engine-bench" --events "$ncg" >/dev/null 2>"$tmp/cg.log"
    total=$(callgrind_annotate "$tmp/cg.out" 2>/dev/null |
        sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
    echo "instructions: $total in all, $((total / ncg)) per event (event generation included)"
    callgrind_annotate --threshold=95 "$tmp/cg.out" 2>/dev/null |
        awk -v n="$ncg" '/^ *[0-9,]+ .*:/ { x = $1; gsub(",", "", x); name = $0;
                         sub(/^ *[0-9,]+ +(\([^)]*\) +)?/, "", name);
                         if (x / n >= 20) printf "  %6.0f  %s\n", x / n, name }' | head -20 || true
else
    echo "(valgrind is not installed)"
fi
