#!/usr/bin/env bash
# Redis peer: what a team would use as a plain event buffer. Starts Debian's redis-server on
# 127.0.0.1 and a free port, with an append-only file fsynced every second (like cascaded's
# default --fsync everysec) in a temporary dir, and loads N event-sized stream entries with
# redis-benchmark (pipelined XADD, 64 deep, 2 connections: the same shape as cascade-replay's).
# Redis only stores the events; cascaded also keeps every metric of DESIGN section 3.
# Prints one JSON line:
#   {"peer":"redis","events":N,"events_per_s":...,"wall_s":...,"rss_bytes":...,
#    "rss_base_bytes":...,"bytes_per_event":...,"aof_bytes":...}
# or {"peer":"redis","skipped":"reason"} when redis-server / redis-benchmark are missing.
# Usage: bench/peers/redis.sh [N] (default 1000000). Env: REDIS_PIPELINE (64), REDIS_CLIENTS (2).
set -euo pipefail

n=${1:-1000000}
pipeline=${REDIS_PIPELINE:-64}
clients=${REDIS_CLIENTS:-2}

skip() {
    printf '{"peer":"redis","skipped":"%s"}\n' "$1"
    exit 0
}
command -v redis-server >/dev/null 2>&1 || skip "no redis-server: run scripts/install-bench-deps.sh"
command -v redis-benchmark >/dev/null 2>&1 || skip "no redis-benchmark: run scripts/install-bench-deps.sh"
command -v redis-cli >/dev/null 2>&1 || skip "no redis-cli: run scripts/install-bench-deps.sh"

tmp=$(mktemp -d /tmp/redis-peer.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A free port can be taken between the probe and redis' bind: try a few.
for _ in 1 2 3 4 5; do
    port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$port" --dir "$tmp" --appendonly yes \
        --appendfsync everysec --save '' --daemonize no --logfile "$tmp/redis.log" &
    pid=$!
    for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
done
[ -n "$pid" ] || skip "redis-server did not start (see its log)"

rss() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$pid/status"; }
rss_base=$(rss)

# One XADD per event, fields as in a DESIGN section 2 event (about 110 bytes of payload, close to
# an NDJSON line of the generated dumps). __rand_int__ is a 12-digit number from -r's range.
start=$(date +%s%N)
csv=$(redis-benchmark -p "$port" -n "$n" -P "$pipeline" -c "$clients" -r 100000000 --csv \
    XADD events '*' post p__rand_int__ actor u__rand_int__ ts 1700000000000 \
    parent p__rand_int__ content https://news.example/__rand_int__)
end=$(date +%s%N)

len=$(redis-cli -p "$port" xlen events)
# Let the everysec fsync land before reading the AOF's size.
sleep 1.1
rss_after=$(rss)
aof=$(du -sb "$tmp" | awk '{ print $1 }')
used=$(redis-cli -p "$port" info memory | awk -F: '/^used_memory:/ { print $2+0 }')

# --csv: a header line, then "test","rps",avg,min,p50,p95,p99,max latencies.
rps=$(printf '%s\n' "$csv" | awk -F'","' 'NR == 2 { print $2 }')
wall=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", (e - s) / 1e9 }')
bpe=$(awk -v a="$rss_after" -v b="$rss_base" -v n="$len" 'BEGIN { printf "%.1f", n ? (a - b) / n : 0 }')
printf '{"peer":"redis","events":%s,"events_per_s":%s,"wall_s":%s,"rss_bytes":%s,"rss_base_bytes":%s,"bytes_per_event":%s,"used_memory":%s,"aof_bytes":%s,"pipeline":%s,"clients":%s,"fsync":"everysec"}\n' \
    "$len" "${rps:-0}" "$wall" "$rss_after" "$rss_base" "$bpe" "${used:-0}" "$aof" "$pipeline" "$clients"
