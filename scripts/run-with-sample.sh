#!/usr/bin/env bash
# `make run`: starts cascaded in the foreground with its defaults and, once it serves, loads the
# sample dump (tests/data/sample.ndjson.gz, made by cascade-gen) with cascade-replay, so that the
# first queries (and the web view at http://127.0.0.1:7402/) have answers. Ctrl-C (or SIGTERM) stops the server cleanly. Extra arguments go
# to cascaded. Usage: scripts/run-with-sample.sh BUILD_DIR [cascaded options]
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR [cascaded options]}
shift
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sample="$top/tests/data/sample.ndjson.gz"

ready=$(mktemp)
trap 'rm -f "$ready"' EXIT
"$build/cascaded" "$@" > >(tee "$ready") &
server=$!
# the server stops on these; forward them instead of dying first
trap 'kill -TERM "$server" 2>/dev/null || true' INT TERM

for _ in $(seq 1 100); do
    grep -q '^ready ' "$ready" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { wait "$server"; exit $?; }
    sleep 0.1
done
line=$(grep '^ready ' "$ready" || true)
if [ -z "$line" ]; then
    echo "run: cascaded did not become ready" >&2
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" || true
    exit 1
fi
port=$(sed -n 's/.*ingest=\([0-9]*\).*/\1/p' <<<"$line")
if [ -x "$build/tools/cascade-replay" ] && [ -f "$sample" ]; then
    echo "run: loading the sample ($sample) into port $port; its duplicates and invalid events are there on purpose" >&2
    "$build/tools/cascade-replay" --port "$port" "$sample" >&2 ||
        echo "run: the sample did not load completely (see above); the server keeps running" >&2
fi
qport=$(sed -n 's/.*query=\([0-9]*\).*/\1/p' <<<"$line")
hport=$(sed -n 's/.*http=\([0-9]*\).*/\1/p' <<<"$line")
# PageRank, communities and coordination at once rather than after --analytics-interval.
"$build/tools/cascade-cli" --port "$qport" analytics refresh=true >/dev/null 2>&1 || true
echo "run: serving; open http://127.0.0.1:$hport/ for the web view; Ctrl-C stops the server" >&2
status=0
while :; do
    wait "$server" && status=0 || status=$?
    kill -0 "$server" 2>/dev/null || break # a trapped signal ended wait, not the server
done
exit "$status"
