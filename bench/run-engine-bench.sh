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

. "$(dirname "${BASH_SOURCE[0]}")/record.sh"
bench_record engine "$build" "$bin" --events 10000000 "$@"
