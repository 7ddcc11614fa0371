#!/usr/bin/env bash
# Runs cascaded and its peer baselines on the same dump, one after the other (never two at once:
# the machine has 2 cores), and prints one JSON line each, so results read as ratios:
#   cascaded  replay of DUMP into a fresh server (fsync everysec) + the four top_cascades queries
#   redis     N pipelined XADDs into redis-server with appendonly/everysec (bench/peers/redis.sh)
#   networkx  per-cascade metrics of DESIGN §3 from DUMP with python3-networkx
#   igraph    the same with python3-igraph
#   duckdb    the same in SQL with @duckdb/node-api (scripts/install-bench-deps.sh installs it)
# then one {"ratios":...} line: each peer's total time over cascaded's replay-plus-query time.
# A peer that cannot run prints {"peer":...,"skipped":"reason"}. With cascaded running, each
# metrics peer's top 10 are checked against cascaded's (check_agree.py; its report goes to
# stderr, and a disagreement makes the exit status 1).
#
# Usage: bench/peers/run-peers.sh DUMP [N]   (N: events for the Redis peer, default 1000000)
# Env:   BUILD=build (where cascaded and tools/cascade-replay are; missing: cascaded is skipped)
#        PEERS="cascaded redis networkx igraph duckdb" (which to run)
#        NX_LIMIT=N (networkx and igraph read only the first N lines; no agreement check then)
#        PEER_TIMEOUT=1800 (seconds any one peer may take)
set -uo pipefail

if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    echo "usage: $0 DUMP [N]" >&2
    exit 2
fi
dump=$1
n=${2:-1000000}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
peers=${PEERS:-cascaded redis networkx igraph duckdb}
timeout_s=${PEER_TIMEOUT:-1800}
[ -r "$dump" ] || { echo "run-peers: cannot read $dump" >&2; exit 2; }

tmp=$(mktemp -d /tmp/run-peers.XXXXXX)
server=
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill "$server" 2>/dev/null
        wait "$server" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
skipped() { printf '{"peer":"%s","skipped":"%s"}\n' "$1" "$2"; }
wants() { case " $peers " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
http=

# cascaded: replay the dump, then ask the analyst's questions; the server stays up for the checks.
run_cascaded() {
    local bin=$build/cascaded replay=$build/tools/cascade-replay
    if [ ! -x "$bin" ] || [ ! -x "$replay" ]; then
        skipped cascaded "no $bin or $replay: build first (make)"
        return
    fi
    mkdir -p "$tmp/data"
    "$bin" --ingest-port 0 --query-port 0 --http-port 0 --fsync everysec --data-dir "$tmp/data" \
        > "$tmp/cascaded.out" 2> "$tmp/cascaded.err" &
    server=$!
    local line=
    for _ in $(seq 200); do
        line=$(head -1 "$tmp/cascaded.out" 2>/dev/null)
        [ -n "$line" ] && break
        kill -0 "$server" 2>/dev/null || break
        sleep 0.05
    done
    case $line in ready*) ;; *) skipped cascaded "did not start: $(tail -1 "$tmp/cascaded.err")"; return ;; esac
    local ingest=${line#*ingest=}
    ingest=${ingest%% *}
    http=${line#*http=}
    http=${http%% *}

    local t0 t1 t2 by
    t0=$(now)
    if ! "$replay" --port "$ingest" "$dump" > "$tmp/replay.out" 2> "$tmp/replay.err"; then
        skipped cascaded "cascade-replay failed: $(tail -1 "$tmp/replay.err")"
        http=
        return
    fi
    t1=$(now)
    for by in size depth max_breadth structural_virality; do
        curl -sf "http://127.0.0.1:$http/v1/top_cascades?by=$by&limit=10" > "$tmp/top-$by.json" || {
            skipped cascaded "query top_cascades by=$by failed"
            http=
            return
        }
    done
    t2=$(now)
    local rss sent stats
    rss=$(awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$server/status")
    sent=$(awk '/^sent / { print $2 }' "$tmp/replay.out")
    stats=$(curl -sf "http://127.0.0.1:$http/v1/stats")
    /usr/bin/python3 - "$sent" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" "$(secs "$t0" "$t2")" \
        "$rss" "$stats" "$tmp/top-structural_virality.json" <<'EOF'
import json, sys
sent, replay_s, query_s, total_s, rss, stats, sv = sys.argv[1:]
stats = json.loads(stats)
print(json.dumps({
    "peer": "cascaded", "events": int(sent or 0), "accepted": stats.get("accepted"),
    "cascades": stats.get("cascades"), "replay_s": float(replay_s), "query_s": float(query_s),
    "total_s": float(total_s), "events_per_s": round(int(sent or 0) / float(replay_s)),
    "rss_bytes": int(rss), "fsync": "everysec",
    "top10_structural_virality": [r["root"] for r in json.load(open(sv))],
}, separators=(",", ":")))
EOF
}

# One metrics peer: its JSON line, or a skip line; then the agreement check when possible.
# Usage: run_metrics_peer NAME CHECK CMD... (CHECK 1: compare with cascaded when it ran).
run_metrics_peer() {
    local name=$1 check=$2
    shift 2
    if ! timeout "$timeout_s" "$@" > "$tmp/$name.json" 2> "$tmp/$name.err"; then
        skipped "$name" "failed or timed out after ${timeout_s}s: $(tail -1 "$tmp/$name.err" | tr '"\\' "'/")"
        return
    fi
    tail -1 "$tmp/$name.json" | /usr/bin/python3 -c '
import json, sys
d = json.loads(sys.stdin.read()); d.pop("top", None); print(json.dumps(d, separators=(",", ":")))'
    if [ -n "$http" ] && [ "$check" = 1 ]; then
        /usr/bin/python3 "$here/check_agree.py" "$tmp/$name.json" \
            $(for by in size depth max_breadth structural_virality; do
                  printf -- '--cascaded %s=%s ' "$by" "$tmp/top-$by.json"; done) >&2 || echo 1 > "$tmp/disagree"
    fi
}

# Every peer runs in this shell (the server's pid stays known to cleanup), its line into
# $tmp/line, then emit shows it and keeps it for the ratios.
emit() { tee -a "$tmp/lines.jsonl" < "$tmp/line"; }
: > "$tmp/lines.jsonl"
if wants cascaded; then run_cascaded > "$tmp/line"; emit; fi
if wants redis; then
    "$here/redis.sh" "$n" > "$tmp/line" || skipped redis "redis.sh failed" > "$tmp/line"
    emit
fi
limit=()
nx_check=1
if [ -n "${NX_LIMIT:-}" ]; then
    limit=(--limit-events "$NX_LIMIT")
    nx_check=0  # cascaded was fed the whole dump
fi
if wants networkx; then
    if /usr/bin/python3 -c 'import networkx' 2>/dev/null; then
        run_metrics_peer networkx $nx_check /usr/bin/python3 "$here/networkx_metrics.py" "${limit[@]}" "$dump" > "$tmp/line"; emit
    else
        skipped networkx "python3-networkx missing: run scripts/install-deps.sh" > "$tmp/line"; emit
    fi
fi
if wants igraph; then
    if /usr/bin/python3 -c 'import igraph' 2>/dev/null; then
        run_metrics_peer igraph $nx_check /usr/bin/python3 "$here/networkx_metrics.py" --igraph "${limit[@]}" "$dump" > "$tmp/line"; emit
    else
        skipped igraph "python3-igraph missing: run scripts/install-deps.sh" > "$tmp/line"; emit
    fi
fi
if wants duckdb; then
    if ! command -v node >/dev/null 2>&1; then
        skipped duckdb "no node" > "$tmp/line"; emit
    elif [ ! -d "$here/duckdb/node_modules/@duckdb/node-api" ]; then
        skipped duckdb "@duckdb/node-api not installed (scripts/install-bench-deps.sh; needs the npm registry)" > "$tmp/line"; emit
    else
        run_metrics_peer duckdb 1 node "$here/duckdb/metrics.mjs" "$dump" > "$tmp/line"; emit
    fi
fi

# Ratios: each metrics peer's total time over cascaded's replay-plus-query time; for Redis, its
# events/s over cascaded's replay events/s.
/usr/bin/python3 - "$tmp/lines.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ours = next((r for r in rows if r.get("peer") == "cascaded" and "total_s" in r), None)
if ours is None:
    sys.exit(0)
ratios = {}
for r in rows:
    if r.get("peer") in (None, "cascaded") or "skipped" in r:
        continue
    if r["peer"] == "redis":
        ratios["redis_events_per_s_over_cascaded"] = round(r["events_per_s"] / ours["events_per_s"], 3)
    else:
        ratios[r["peer"] + "_total_over_cascaded"] = round(r["total_s"] / ours["total_s"], 2)
print(json.dumps({"ratios": ratios, "cascaded_total_s": ours["total_s"]}, separators=(",", ":")))
EOF
[ ! -e "$tmp/disagree" ]
