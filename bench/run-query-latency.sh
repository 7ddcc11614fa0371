#!/usr/bin/env bash
# Point-query latency idle and during a full-speed replay (bench/query_latency.py), recorded in
# bench/results/query-latency-<date>.md. usage: bench/run-query-latency.sh BUILD_DIR [ARGS...]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/record.sh"
build=${1:?usage: bench/run-query-latency.sh BUILD_DIR [--events N] [--seconds S]}
shift
bench_record query-latency "$build" /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/query_latency.py" \
    "$build" "$@"
