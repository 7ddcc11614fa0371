#!/usr/bin/env bash
# Analytics timings on generated events (bench/analytics_bench.py), recorded in
# bench/results/analytics-<date>.md. usage: bench/run-analytics-bench.sh BUILD_DIR [--events N]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/record.sh"
build=${1:?usage: bench/run-analytics-bench.sh BUILD_DIR [--events N]}
shift
bench_record analytics "$build" /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/analytics_bench.py" \
    "$build" "$@"
