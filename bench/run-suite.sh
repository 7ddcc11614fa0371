#!/usr/bin/env bash
# `make bench`: the standard suite on fresh servers, with the peers measured in the same run, and
# the result written as bench/results/suite-<date>[-HHMMSS].md and .json (machine, commands,
# figures, ratios). Takes a few minutes on the 2-core development machine.
# usage: bench/run-suite.sh BUILD_DIR      (a Release build: `make bench` makes one in build-bench)
# Env: EVENTS (ingest, default 10000000), MIXED_EVENTS (5000000; the mixed step runs flat out and at
#      80 % of the flat-out rate, DESIGN §8), RATE (query rate, 2000),
#      the pause run (issue 18's: EVENTS with analytics every 10 s, labels polled, 24 h retention),
#      engine-bench and start-up recovery (bench/recovery_bench.py) at EVENTS,
#      PEER_EVENTS (the dump the peers and cascaded share, 1000000), PEERS (see peers/run-peers.sh)
set -euo pipefail
build=${1:?usage: bench/run-suite.sh BUILD_DIR}
build=$(cd "$build" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")
events=${EVENTS:-10000000}
mixed=${MIXED_EVENTS:-5000000}
rate=${RATE:-2000}
pevents=${PEER_EVENTS:-1000000}
stamp=$(date +%Y-%m-%d)
out="$here/results/suite-$stamp"
[ -e "$out.md" ] && out="$out-$(date +%H%M%S)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bench="$build/bench/cascade-bench"
server="$build/cascaded"
step() { printf '\n== %s\n' "$*" >&2; }

step "ingest: $events events, 2 connections, fsync everysec"
"$bench" ingest --server "$server" --events "$events" --connections 2 --json "$tmp/ingest.json" >&2
step "query, idle: $rate queries/s for 10 s after 1000000 events"
"$bench" query --server "$server" --events 1000000 --rate "$rate" --seconds 10 --json "$tmp/query.json" >&2
step "mixed: $rate queries/s while $mixed events ingest flat out"
"$bench" mixed --server "$server" --events "$mixed" --rate "$rate" --json "$tmp/mixed.json" >&2
step "mixed: $rate queries/s while $mixed events ingest at 80 % of a flat-out calibration run"
"$bench" mixed --server "$server" --events "$mixed" --rate "$rate" --ingest-rate 80% \
    --json "$tmp/mixed80.json" >&2
step "pauses: $events events flat out, analytics every 10 s, labels polled every second, 24 h retention"
"$bench" ingest --server "$server" --events "$events" --connections 2 --server-arg --analytics-interval \
    --server-arg 10 --server-arg --retention --server-arg 24h --poll labels --poll-every 1 \
    --json "$tmp/pauses.json" >&2 || true
step "engine apply: engine-bench, $events events in-process, one core"
"$build/bench/engine-bench" --events "$events" --json >"$tmp/engine.json" || true
step "start-up recovery: $events events, the whole WAL, then a snapshot"
/usr/bin/python3 "$here/recovery_bench.py" "$build" "$events" "$tmp/recovery.json" >&2 || true
step "peers on one $pevents-event dump"
"$build/tools/cascade-gen" --events "$pevents" --seed 1 --out "$tmp/dump.ndjson.gz"
BUILD="$build" PEERS="${PEERS:-cascaded redis networkx duckdb}" \
    "$here/peers/run-peers.sh" "$tmp/dump.ndjson.gz" "$pevents" >"$tmp/peers.jsonl" || true
step "profile of the ingest path"
"$here/profile-ingest.sh" "$build" 3000000 >"$tmp/profile.txt" 2>&1 || true

/usr/bin/python3 "$here/suite_report.py" "$tmp" "$out" "$build" \
    "EVENTS=$events MIXED_EVENTS=$mixed RATE=$rate PEER_EVENTS=$pevents"
echo "written: ${out#$top/}.md and .json" >&2
