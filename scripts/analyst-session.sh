#!/usr/bin/env bash
# An analyst's session on real cascades (README "Analytics"): starts cascaded on spare ports with a
# fresh data dir, replays a Twitter15/16 dump (default: the full Twitter15 in ../shared/data when it
# is there, else the 150-cascade sample in tests/data), computes the analytics, runs
# scripts/analyst_session.py, then the coordination view on generated data with planted groups.
# usage: scripts/analyst-session.sh [BUILD_DIR] [DUMP]
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$top/build}
dump=${2:-}
if [ -z "$dump" ]; then
    dump=$top/tests/data/twitter15-sample.ndjson.gz
    [ -r "$top/../shared/data/twitter15.ndjson.gz" ] && dump=$top/../shared/data/twitter15.ndjson.gz
fi
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

serve() { # starts cascaded on ports 17400-17402; sets pid
    "$build/cascaded" --ingest-port 17400 --query-port 17401 --http-port 17402 \
        --data-dir "$tmp/data-$1" --analytics-interval 0 >"$tmp/ready-$1" 2>"$tmp/log-$1" &
    pid=$!
    for _ in $(seq 100); do grep -q ready "$tmp/ready-$1" 2>/dev/null && return; sleep 0.1; done
    echo "cascaded did not start: $(cat "$tmp/log-$1")" >&2
    exit 1
}
analyse() { # asks for a snapshot and waits for it
    "$build/tools/cascade-cli" --port 17401 analytics refresh=true >/dev/null
    until "$build/tools/cascade-cli" --port 17401 --json analytics |
        /usr/bin/python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(not (s["snapshot_age_ms"] is not None and not s["computing"]))'; do
        sleep 0.5
    done
}

echo "== replaying $dump"
serve real
"$build/tools/cascade-replay" --port 17400 "$dump"
analyse
/usr/bin/python3 "$top/scripts/analyst_session.py" --http 17402
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=

echo
echo "== Which groups share links in lockstep? (generated: 200,000 events, 10 planted groups)"
serve gen
"$build/tools/cascade-gen" --events 200000 --seed 5 --groups 10 --out "$tmp/gen.msgpack" \
    --groups-out "$tmp/groups.json"
"$build/tools/cascade-replay" --port 17400 "$tmp/gen.msgpack"
analyse
"$build/tools/cascade-cli" --port 17401 coordination limit=5
echo "planted: $(/usr/bin/python3 -c 'import json,sys; print([sorted(g["members"]) for g in json.load(open(sys.argv[1]))["groups"]][:5])' "$tmp/groups.json")"
