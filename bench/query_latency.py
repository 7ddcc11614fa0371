#!/usr/bin/python3
"""Point-query latency on the query port, idle and while cascade-replay ingests flat out.

usage: /usr/bin/python3 bench/query_latency.py BUILD_DIR [--events N] [--seconds S]

Generates N + N/4 events with cascade-gen (NDJSON), starts `cascaded` on free loopback ports with a
temporary data dir (fsync everysec), measures `cascade`, `actor` and `path` queries one at a time
from one client for S seconds with the server idle (a first load of N/4 events behind it), then
again while cascade-replay sends the N events over 2 connections, and prints the percentiles of
each phase plus the ingest rate. The client is Python: its own overhead (~30-60 µs a call) is in
every figure, so they are upper bounds; the ratio loaded/idle is what says how much ingest delays
a query. Until cascade-bench exists (issue 7), this is the measurement of DESIGN §8's point-query
target.
"""
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import msgpack

METHODS = ('cascade', 'actor', 'path')


def start_server(build, data):
    p = subprocess.Popen([os.path.join(build, 'cascaded'), '--ingest-port', '0', '--query-port', '0',
                          '--http-port', '0', '--data-dir', data, '--fsync', 'everysec'],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().split()
    ports = dict(kv.split('=') for kv in line[1:])
    return p, int(ports['ingest']), int(ports['query']), int(ports['http'])


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(('127.0.0.1', port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.u = msgpack.Unpacker(raw=False)
        self.id = 0

    def call(self, method, params):
        self.id += 1
        self.s.sendall(msgpack.packb([0, self.id, method, [params]]))
        while True:
            for m in self.u:
                return m
            self.u.feed(self.s.recv(1 << 20))


def measure(port, seconds, n_posts, n_actors, stop=None):
    c = Client(port)
    rng = random.Random(1)
    lat = {m: [] for m in METHODS}
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (stop and stop.is_set()):
        m = METHODS[rng.randrange(3)]
        params = {'id': f'u{rng.randrange(1, n_actors)}'} if m == 'actor' else \
                 {'post': f'p{rng.randrange(1, n_posts)}'}
        t = time.perf_counter()
        c.call(m, params)
        lat[m].append(time.perf_counter() - t)
    return lat


def server_hist(http_port):
    """The server's own rpc latency histogram (cumulative bucket counts by upper bound)."""
    import urllib.request
    text = urllib.request.urlopen(f'http://127.0.0.1:{http_port}/metrics', timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith('cascaded_query_duration_seconds_bucket') and 'port="rpc"' in line:
            le = line.split('le="')[1].split('"')[0]
            out[le] = int(float(line.rsplit(' ', 1)[1]))
    return out


def report_server(name, before, after):
    total = after.get('+Inf', 0) - before.get('+Inf', 0)
    if not total:
        return
    cells = []
    for le in after:
        share = (after[le] - before.get(le, 0)) / total
        if le != '+Inf':
            cells.append(f'<={float(le) * 1e6:.0f}µs {share * 100:.2f}%')
    print(f'  server side ({name}, request complete to answer queued, {total} queries): ' +
          ', '.join(cells))


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e6 if xs else float('nan')


def report(name, lat):
    print(f'{name}:')
    print(f'  {"method":8} {"n":>7} {"p50 µs":>8} {"p99 µs":>8} {"p99.9 µs":>9} {"max µs":>8}')
    for m, xs in lat.items():
        print(f'  {m:8} {len(xs):7d} {pct(xs, .5):8.0f} {pct(xs, .99):8.0f} {pct(xs, .999):9.0f} '
              f'{max(xs) * 1e6 if xs else 0:8.0f}')


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    build = sys.argv[1]
    args = sys.argv[2:]
    n = int(args[args.index('--events') + 1]) if '--events' in args else 4_000_000
    secs = float(args[args.index('--seconds') + 1]) if '--seconds' in args else 5.0
    tmp = tempfile.mkdtemp(prefix='cascade-qlat-')
    srv = None
    try:
        gen = os.path.join(build, 'tools', 'cascade-gen')
        replay = os.path.join(build, 'tools', 'cascade-replay')
        # one stream split in two: the first fifth loads before the idle phase, the rest during
        # the loaded one (its parents are already there)
        warm, load = os.path.join(tmp, 'warm.ndjson'), os.path.join(tmp, 'load.ndjson')
        allf = os.path.join(tmp, 'all.ndjson')
        subprocess.run([gen, '--events', str(n + n // 4), '--seed', '7', '--out', allf], check=True)
        with open(allf) as f, open(warm, 'w') as w, open(load, 'w') as ld:
            for i, line in enumerate(f):
                (w if i < n // 4 else ld).write(line)
        srv, ingest, query, http = start_server(build, os.path.join(tmp, 'data'))
        subprocess.run([replay, '--port', str(ingest), '--connections', '2', warm], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        h0 = server_hist(http)
        report('idle', measure(query, secs, n // 4, n // 20))
        h1 = server_hist(http)
        report_server('idle', h0, h1)
        out = {}
        done = threading.Event()

        def run_replay():
            r = subprocess.run([replay, '--port', str(ingest), '--connections', '2', load],
                               capture_output=True, text=True)
            out['line'] = (r.stdout.strip().splitlines() or [''])[-1]
            done.set()

        th = threading.Thread(target=run_replay)
        th.start()
        time.sleep(0.5)  # let ingest reach full speed
        lat = measure(query, 3600, n // 4, n // 20, stop=done)
        th.join()
        report('during ingest', lat)
        report_server('during ingest', h1, server_hist(http))
        print('replay:', out.get('line'))
    finally:
        if srv:
            srv.terminate()
            srv.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
