#!/usr/bin/env bash
# Runs `cascade-bench ingest` against a cascaded it starts itself (10 M events, 2 connections,
# fsync everysec) and records the result with the machine it ran on, as
# bench/results/ingest-<date>.md.
# Usage: bench/run-ingest-bench.sh BUILD_DIR [cascade-bench ingest args] (extra arguments go
# after the defaults, so they override them).
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    echo "usage: $0 BUILD_DIR [cascade-bench ingest args...]" >&2
    exit 2
fi
build=$1
shift
bin="$build/bench/cascade-bench"
server="$build/cascaded"
for f in "$bin" "$server"; do
    [ -x "$f" ] || { echo "no $f: build first (make)" >&2; exit 1; }
done

. "$(dirname "${BASH_SOURCE[0]}")/record.sh"
bench_record ingest "$build" "$bin" ingest --server "$server" --events 10000000 --connections 2 \
    --fsync everysec "$@"
