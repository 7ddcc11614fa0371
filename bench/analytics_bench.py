#!/usr/bin/python3
"""Analytics timings on a generated workload: snapshot copy (the engine thread's pause), PageRank,
Leiden and coordination (defaults), as the server's `analytics` method reports them, plus point
query latency while the worker computes.

usage: /usr/bin/python3 bench/analytics_bench.py BUILD_DIR [--events N]

Generates N events with cascade-gen (msgpack, 20 planted groups), starts `cascaded` with
--analytics-interval 0 on a temporary data dir, replays them, asks for a snapshot
(`analytics refresh=true`), waits for it, and prints the timings and sizes.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import msgpack


def rpc(port, method, **params):
    with socket.create_connection(('127.0.0.1', port), timeout=600) as s:
        s.sendall(msgpack.packb([0, 1, method, [params]]))
        u = msgpack.Unpacker(raw=False)
        while True:
            data = s.recv(1 << 20)
            if not data:
                raise RuntimeError('connection closed')
            u.feed(data)
            for m in u:
                return m[2], m[3]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    build = sys.argv[1]
    args = sys.argv[2:]
    n = int(args[args.index('--events') + 1]) if '--events' in args else 10_000_000
    tmp = tempfile.mkdtemp(prefix='cascade-abench-')
    srv = None
    try:
        data = os.path.join(tmp, 'events.msgpack')
        t = time.time()
        subprocess.run([os.path.join(build, 'tools', 'cascade-gen'), '--events', str(n), '--seed', '3',
                        '--groups', '20', '--out', data], check=True)
        print(f'generated {n} events in {time.time() - t:.1f} s')
        srv = subprocess.Popen([os.path.join(build, 'cascaded'), '--ingest-port', '0', '--query-port', '0',
                                '--http-port', '0', '--data-dir', os.path.join(tmp, 'data'),
                                '--analytics-interval', '0'],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ports = dict(kv.split('=') for kv in srv.stdout.readline().split()[1:])
        r = subprocess.run([os.path.join(build, 'tools', 'cascade-replay'), '--port', ports['ingest'],
                            '--connections', '2', data], capture_output=True, text=True)
        print('replay:', (r.stdout.strip().splitlines() or [''])[-1])
        q = int(ports['query'])
        t = time.time()
        rpc(q, 'analytics', refresh=True)
        lat = []
        while True:
            t0 = time.perf_counter()
            err, st = rpc(q, 'cascade', post='p1')
            lat.append(time.perf_counter() - t0)
            err, st = rpc(q, 'analytics')
            if st['snapshot_age_ms'] is not None and not st['computing']:
                break
            time.sleep(0.05)
        print(f'snapshot computed {time.time() - t:.1f} s after the request')
        for k in ('accepted', 'actors', 'edges', 'communities', 'groups', 'snapshot_ms', 'pagerank_ms',
                  'leiden_ms', 'coordination_ms', 'error'):
            print(f'  {k:16} {st[k]}')
        lat.sort()
        print(f'point queries while the worker computed: {len(lat)}, '
              f'p50 {lat[len(lat) // 2] * 1e3:.2f} ms, max {lat[-1] * 1e3:.2f} ms')
        t0 = time.perf_counter()
        err, groups = rpc(q, 'coordination', limit=100)
        print(f'coordination query (cached): {(time.perf_counter() - t0) * 1e3:.2f} ms, '
              f'{len(groups or [])} groups; sizes {[g["size"] for g in groups or []][:25]}')
        t0 = time.perf_counter()
        err, labels = rpc(q, 'labels')
        print(f'labels query (a pass over every cascade on the engine thread): '
              f'{(time.perf_counter() - t0) * 1e3:.2f} ms, {len(labels or [])} labels')
        t0 = time.perf_counter()
        err, comms = rpc(q, 'communities', limit=10)
        print(f'communities query: {(time.perf_counter() - t0) * 1e3:.2f} ms; '
              f'largest sizes {[c["size"] for c in comms or []]}')
    finally:
        if srv:
            srv.terminate()
            srv.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
