#!/usr/bin/python3
"""Integration test of cascade-replay (DESIGN §7, issue 5) against the real cascaded.

usage: /usr/bin/python3 test_replay.py BIN_DIR TOOLS_DIR   (BIN_DIR holds `cascaded`, TOOLS_DIR
                                                           the cascade-replay binary)

One generated dump (random forests delivered in hostile orders, so parents often come after their
children; duplicates; every rejection reason; values that are not events) is written as NDJSON,
CSV and msgpack, plain, gzip and zstd, and replayed into fresh servers; every run's final line
and the server's `stats` must equal what harness.Model computes from the same events. Parts:
  formats    each format and compression, by name and sniffed from the content; several files in
             one run; stdin (a file, and a pipe that pauses);
  routing    --connections 4 on the same dump: every cascade and actor equals the model (and so
             a single-connection replay);
  resume     a server that goes away after acking 1000 events: exit 1 and a --from hint; --from
             into a real server then completes the dump exactly;
  bad lines  invalid JSON, non-objects, an 80 MiB line, CSV field counts and quotes, msgpack
             non-maps, an over-long event, malformed bytes: each reported as FILE:LINE, counted,
             skipped, the rest sent; memory stays bounded;
  dry run    every rejection named with its line and reason; the JSON fast path and jansson agree;
  speed      --speed 10x against a stand-in server that timestamps arrivals: order, proportional
             gaps (ratios only, no absolute thresholds), ts going backwards sent at once;
  errors     connection refused, a fatal reply, usage errors (exit 2), progress on a terminal only;
  real data  tests/data/twitter15-sample.ndjson.gz always; Twitter15 and Twitter16 in full when
             ../shared/data is beside the repository (skipped with a note otherwise).
Prints one line per check and ends with 'N passed, M failed'; exit status 1 if any failed.
Needs Debian's python3-msgpack; the zstd variants use the `zstd` program when present.
"""
import csv
import gzip
import io
import json
import os
import pty
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import msgpack

import harness
from harness import Model, Rpc, Server, check, compare_actor, compare_cascade, compare_stats, \
    gen_forest, group_values, riffle, validate

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SAMPLE = os.path.join(REPO, 'tests', 'data', 'twitter15-sample.ndjson.gz')
SHARED_DATA = os.path.join(REPO, '..', 'shared', 'data')
FINAL = re.compile(r'sent (\d+) ok (\d+) dup (\d+) rej (\d+) in (\d+\.\d\d) s \((\d+) events/s\)')
KEYS = ['post', 'actor', 'ts', 'parent', 'kind', 'actor_type', 'content', 'label']
ZSTD = shutil.which('zstd')
BIN_DIR = REPLAY = TMP = None
SANITIZER = []  # AddressSanitizer/UBSan lines seen in any replay's stderr (an ASan build exits 1 too)


# ------------------------------------------------------------------------------------ running

class Run:
    """One finished cascade-replay: status, stdout, stderr, peak memory (KiB), wall seconds."""

    def __init__(self, status, out, err, maxrss, secs):
        self.status, self.out, self.err, self.maxrss, self.secs = status, out, err, maxrss, secs
        lines = out.strip().splitlines()
        self.final = FINAL.fullmatch(lines[-1]) if lines else None

    def counts(self):
        return tuple(int(x) for x in self.final.groups()[:4]) if self.final else None

    def __repr__(self):
        return f'status {self.status}, stdout {self.out[-300:]!r}, stderr {self.err[-700:]!r}'


# Runs argv[1:] as a child and prints its peak RSS on stderr. A child forked from this test would
# count the test's own memory (the pages it shares until exec) in its peak; one forked from this
# small interpreter counts only the interpreter's few MiB.
PEAK_WRAPPER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, st, ru = os.wait4(pid, 0)
sys.stderr.write('\\npeak-rss-kib %d\\n' % ru.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(st))
"""


def replay(args, stdin=None, timeout=90, env=None, stderr_fd=None, peak=False):
    """Runs cascade-replay to completion (killed after timeout). stdin: bytes, or a function given
    the pipe to write. With peak, Run.maxrss is its peak memory in KiB."""
    e = dict(os.environ, **(env or {}))
    t0 = time.time()
    cmd = [REPLAY] + [str(a) for a in args]
    if peak:
        cmd = [sys.executable, '-c', PEAK_WRAPPER] + cmd
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                         stderr=stderr_fd if stderr_fd is not None else subprocess.PIPE,
                         stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL, env=e)
    got = {}

    def drain(name, f):
        got[name] = f.read().decode(errors='replace')

    def feed():
        try:
            if callable(stdin):
                stdin(p.stdin)
            else:
                p.stdin.write(stdin)
        except BrokenPipeError:
            pass
        finally:
            try:
                p.stdin.close()
            except BrokenPipeError:
                pass

    threads = [threading.Thread(target=drain, args=('out', p.stdout), daemon=True)]
    if stderr_fd is None:
        threads.append(threading.Thread(target=drain, args=('err', p.stderr), daemon=True))
    if stdin is not None:
        threads.append(threading.Thread(target=feed, daemon=True))
    for t in threads:
        t.start()
    try:
        status = p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        status = None
    for t in threads:
        t.join(10)
    err, maxrss = got.get('err', ''), None
    m = re.search(r'\npeak-rss-kib (\d+)\n$', err) if peak else None
    if m:
        err, maxrss = err[:m.start()], int(m[1])
    SANITIZER.extend(f'{args}: {l}' for l in err.splitlines() if 'runtime error:' in l or 'Sanitizer' in l)
    return Run(status, got.get('out', ''), err, maxrss, time.time() - t0)


def fresh_server(name):
    return Server(BIN_DIR, os.path.join(TMP, name)).start()


def stats_of(srv):
    rpc = Rpc(srv.query)
    try:
        return rpc.call('stats')[1] or {}
    finally:
        rpc.close()


def check_replay(name, run, model, srv, bad_lines=0, status=0):
    """The run's final line and the server's stats against the model."""
    want = model.ack()
    sent = want['ok'] + want['dup'] + want['rej']
    ok = check(f'{name}: exit {status}, final line "sent {sent} ok {want["ok"]} dup {want["dup"]} '
               f'rej {want["rej"]} ..." ({run.secs:.2f} s)',
               run.status == status and run.counts() == (sent, want['ok'], want['dup'], want['rej']), repr(run))
    if bad_lines:
        ok &= check(f'{name}: stderr counts {bad_lines} bad lines skipped',
                    f'{bad_lines} bad lines skipped' in run.err, repr(run))
    bad = compare_stats(model, stats_of(srv))
    return check(f'{name}: the server\'s stats equal the model', not bad, '; '.join(bad[:5])) and ok


# ------------------------------------------------------------------------------------ the dump

def tricky_events():
    """Values a CSV writer must quote, unicode, and int ids that parents name as strings."""
    return [
        {'post': 'q1', 'actor': 'quoter', 'ts': harness.BASE_TS, 'label': 'false',
         'content': 'https://example.org/a,b "quoted", and\na newline, café ☕'},
        {'post': 'q2', 'actor': 'quoter2', 'ts': harness.BASE_TS + 5, 'parent': 'q1', 'kind': 'quote'},
        {'post': 9_000_001, 'actor': 77, 'ts': harness.BASE_TS + 9, 'content': 'tweet:9000001'},
        {'post': 'q3', 'actor': 'quoter', 'ts': harness.BASE_TS + 10, 'parent': '9000001'},
    ]


def make_dump(rng):
    """The events of the generated dump, in dump order (maps, plus some values that are not)."""
    trees, _ = gen_forest(rng, 3000, 'r', n_actors=500, intid_base=5_000_000)
    events = riffle(rng, trees)
    events = tricky_events() + events
    dicts = [e for e in events if isinstance(e, dict)]
    for _ in range(60):  # exact resends, later in the dump
        e = dict(rng.choice(dicts))
        events.insert(rng.randrange(events.index(e) + 1, len(events) + 1), e)
    bad = [{'actor': 'a', 'ts': 1}, {'post': 'bad-a', 'ts': 1}, {'post': 'bad-t', 'actor': 'a'},
           {'post': 'bad-x', 'actor': 'a', 'ts': 'soon'}, {'post': 'bad-k', 'actor': 'a', 'ts': 1, 'kind': 'nope'},
           {'post': 'bad-l', 'actor': 'a', 'ts': 1, 'label': 'l' * 80},
           {'post': 'bad-s', 'actor': 'a', 'ts': 1, 'parent': 'bad-s'}, {'post': 'L' * 300, 'actor': 'a', 'ts': 1},
           'not a map', 7, None]
    for b in bad * 3:
        events.insert(rng.randrange(len(events) + 1), b)
    return events


def model_of(events):
    m = Model()
    for e in events:
        if isinstance(e, dict):
            m.apply(e)
    return m


def ndjson_bytes(events):
    return b''.join(json.dumps(e, ensure_ascii=False).encode() + b'\n' for e in events)


def csv_bytes(events, crlf=False):
    """RFC 4180 with a header; an unknown column; a value that is not an event becomes a row with
    the wrong number of fields (a bad line, as a non-object line is in NDJSON)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator='\r\n' if crlf else '\n')
    w.writerow(KEYS + ['note'])
    for e in events:
        if isinstance(e, dict):
            w.writerow(['' if e.get(k) is None else e[k] for k in KEYS] + ['x'])
        else:
            w.writerow([str(e)])
    return buf.getvalue().encode()


def msgpack_bytes(rng, events):
    return b''.join(msgpack.packb(v) for v in group_values(rng, events))


def write(name, data):
    path = os.path.join(TMP, name)
    with open(path, 'wb') as f:
        f.write(data)
    return path


def zstd_file(src, dst):
    subprocess.run([ZSTD, '-q', '-f', '-o', dst, src], check=True, timeout=60)
    return dst


# ------------------------------------------------------------------------------------ parts

def part_formats(rng, events, model):
    n_bad = sum(1 for e in events if not isinstance(e, dict))
    files = {
        'dump.ndjson': ndjson_bytes(events),
        'dump.csv': csv_bytes(events, crlf=True),
        'dump.msgpack': msgpack_bytes(rng, events),
    }
    paths = {k: write(k, v) for k, v in files.items()}
    for k, v in files.items():
        paths[k + '.gz'] = write(k + '.gz', gzip.compress(v, 6))
    variants = list(paths)
    if ZSTD:
        for k in files:
            variants.append(os.path.basename(zstd_file(paths[k], paths[k] + '.zst')))
    else:
        print('# note: no zstd program on this machine: the .zst variants are skipped')
    # no extension: the format and the compression come from the content
    for k in ('dump.csv.gz', 'dump.msgpack', 'dump.ndjson.gz'):
        alias = k.replace('.', '-') + '.dat'
        shutil.copy(paths[k], os.path.join(TMP, alias))
        variants.append(alias)
    for v in variants:
        srv = fresh_server('fmt-' + v)
        run = replay(['--port', srv.ingest, os.path.join(TMP, v)])
        check_replay(v, run, model, srv, bad_lines=n_bad)
        srv.stop()
    return paths


def part_several(rng, events, paths):
    """Three files of three formats in one run: events in order across them."""
    a, b = len(events) // 3, 2 * len(events) // 3
    p1 = write('part1.ndjson', ndjson_bytes(events[:a]))
    p2 = write('part2.csv.gz', gzip.compress(csv_bytes(events[a:b])))
    p3 = write('part3.mpk', msgpack_bytes(rng, events[b:]))
    srv = fresh_server('several')
    run = replay(['--port', srv.ingest, p1, p2, p3])
    check_replay('three files (ndjson, csv.gz, mpk) in one run', run, model_of(events), srv,
                 bad_lines=sum(1 for e in events if not isinstance(e, dict)))
    srv.stop()
    # stdin: a gzip file piped in, format and compression sniffed
    srv = fresh_server('stdin')
    with open(paths['dump.ndjson.gz'], 'rb') as f:
        data = f.read()
    run = replay(['--port', srv.ingest, '-'], stdin=data)
    check_replay('stdin (gzip NDJSON piped to "-")', run, model_of(events), srv,
                 bad_lines=sum(1 for e in events if not isinstance(e, dict)))
    # a pipe that pauses: what came before the pause is acked before the rest is written
    rpc = Rpc(srv.query)
    seen = {}

    def slow(pipe):
        pipe.write(b'{"post":"pause-1","actor":"p","ts":1}\n')
        pipe.flush()
        deadline = time.time() + 20
        while time.time() < deadline and rpc.call('cascade', post='pause-1')[0] is not None:
            time.sleep(0.05)
        seen['first'] = rpc.call('cascade', post='pause-1')[0] is None
        pipe.write(b'{"post":"pause-2","actor":"p","ts":2,"parent":"pause-1"}\n')

    run = replay(['--port', srv.ingest, '-'], stdin=slow)
    check('stdin that pauses: the first event reaches the server before the second is written',
          seen.get('first') and run.status == 0 and run.counts() == (2, 2, 0, 0), repr(run))
    rpc.close()
    srv.stop()


def part_routing(events, model, paths):
    """--connections 4: cascades are routed by their root as it is read; parents that come late
    still give every metric of a single-connection replay."""
    single = fresh_server('conn1')
    run1 = replay(['--port', single.ingest, paths['dump.ndjson']])
    srv = fresh_server('conn4')
    run = replay(['--port', srv.ingest, '--connections', '4', paths['dump.msgpack.gz']])
    check_replay('--connections 4', run, model, srv, bad_lines=sum(1 for e in events if not isinstance(e, dict)))
    d = model.derive()
    rpc, rpc1 = Rpc(srv.query), Rpc(single.query)
    try:
        bad = []
        for root in d['cascades']:
            bad += compare_cascade(model, rpc, root)
        for name in d['actors']:
            bad += compare_actor(model, rpc, name)
        check(f'--connections 4: all {len(d["cascades"])} cascades and {len(d["actors"])} actors equal the model',
              not bad, '; '.join(bad[:5]))
        diff = []
        for root in d['cascades']:
            a, b = rpc.call('cascade', post=root)[1], rpc1.call('cascade', post=root)[1]
            if {k: v for k, v in a.items() if k != 'id'} != {k: v for k, v in b.items() if k != 'id'}:
                diff.append(f'{root}: {a} vs {b}')
        s4, s1 = stats_of(srv), stats_of(single)
        keys = ('posts', 'placeholders', 'cascades', 'actors', 'edges', 'accepted', 'duplicate', 'rejected')
        diff += [f'stats {k}: {s4.get(k)} vs {s1.get(k)}' for k in keys if s4.get(k) != s1.get(k)]
        check('--connections 4: every cascade and the stats equal a single-connection replay\'s',
              run1.status == 0 and not diff, '; '.join(diff[:4]) + repr(run1))
    finally:
        rpc.close()
        rpc1.close()
    single.stop()
    srv.stop()


class FakeIngest:
    """Stands in for cascaded's ingest port on one connection: notes when each event arrives, and
    acks every chunk (mode 'ack'), or sends a fatal message ('fatal'), or acks `limit` events and
    closes ('close')."""

    def __init__(self, mode='ack', limit=0):
        self.ls = socket.socket()
        self.ls.bind(('127.0.0.1', 0))
        self.ls.listen(8)
        self.ls.settimeout(30)
        self.port = self.ls.getsockname()[1]
        self.mode, self.limit, self.events = mode, limit, []
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        try:
            c, _ = self.ls.accept()
        except OSError:
            return
        c.settimeout(30)
        u, n = msgpack.Unpacker(raw=False, strict_map_key=False), 0
        with c:
            while True:
                try:
                    data = c.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                t = time.monotonic()
                u.feed(data)
                for v in u:
                    for e in (v if isinstance(v, list) else [v]):
                        self.events.append((t, e))
                        n += 1
                if self.mode == 'fatal':
                    c.sendall(msgpack.packb({'fatal': 'malformed msgpack at byte 0'}))
                    return
                if self.mode == 'close' and n >= self.limit:
                    c.sendall(msgpack.packb({'ok': self.limit, 'dup': 0, 'rej': 0, 'err': []}))
                    return
                c.sendall(msgpack.packb({'ok': n, 'dup': 0, 'rej': 0, 'err': []}))

    def close(self):
        self.ls.close()
        self.t.join(10)


def part_resume(events, model, paths):
    fake = FakeIngest('close', limit=1000)
    run = replay(['--port', fake.port, paths['dump.ndjson']])
    fake.close()
    m = re.search(r'--from (\d+)', run.err)
    check('a server that closes after acking 1000 events: exit 1, the connection named, a --from hint',
          run.status == 1 and 'closed' in run.err and m is not None, repr(run))
    if not m:
        return
    k = int(m[1])
    dicts = [i for i, e in enumerate(events) if isinstance(e, dict)]
    check(f'the hint is --from 1000 (the events acked), got {k}', k == 1000)
    # what a real server would hold after that: the first k events; then --from k sends the rest
    srv = fresh_server('resume')
    head = events[:dicts[k]]
    replay(['--port', srv.ingest, write('head.ndjson', ndjson_bytes(head))])
    run = replay(['--port', srv.ingest, '--from', k, paths['dump.ndjson']])
    sent = sum(1 for e in events[dicts[k]:] if isinstance(e, dict))
    check(f'--from {k}: sends the {sent} events after the first {k}', run.status == 0 and run.counts() is not None
          and run.counts()[0] == sent, repr(run))
    bad = compare_stats(model, stats_of(srv))
    check(f'--from {k}: the server then holds exactly the whole dump', not bad, '; '.join(bad[:5]))
    run = replay(['--port', srv.ingest, '--from', 10 ** 9, paths['dump.ndjson']])
    check('--from past the end: nothing sent, said so, exit 0',
          run.status == 0 and run.counts() == (0, 0, 0, 0) and 'past the end' in run.err, repr(run))
    srv.stop()


def part_bad_lines():
    srv = fresh_server('bad')
    big = b'{"post":"huge","actor":"a","ts":1,"pad":"' + b'x' * (80 << 20) + b'"}'
    lines = [b'{"post":"g1","actor":"a","ts":1}', b'{"post": "g2", "actor": ', b'[{"post":"g3"}]',
             b'{"post":"g4","actor":"a","ts":2,"parent":"g1"}', big, b'{"post":"g6","actor":"b","ts":3,"parent":"g4"}',
             b'', b'{"post":"g8","actor":"a","ts":1.5}', b'"just a string"',
             b'{"post":"g10","actor":"c","ts":4,"parent":"g6"}']
    path = write('bad.ndjson', b'\n'.join(lines))  # no newline after the last line
    del big, lines
    run = replay(['--port', srv.ingest, path], peak=True)
    want = [f'bad.ndjson:{n}: bad line' for n in (2, 3, 5, 9)]
    missing = [w for w in want if w not in run.err]
    check('bad NDJSON lines (invalid JSON, not objects, 80 MiB): each reported as file:line',
          not missing and run.err.count(': bad line:') == 4, f'missing {missing}; {run!r}')
    check('bad NDJSON lines: the rest is sent (5 events, 1 rejected by the server), exit 0, counted',
          run.status == 0 and run.counts() == (5, 4, 0, 1) and '4 bad lines skipped' in run.err, repr(run))
    check('bad NDJSON lines: the server\'s rejection is named by file:line (bad.ndjson:8: ... bad_type)',
          'bad.ndjson:8: rejected by the server: bad_type' in run.err, repr(run))
    check(f'bad NDJSON lines: peak memory {(run.maxrss or 0) / 1024:.0f} MiB with an 80 MiB line (bound 32 MiB)',
          run.maxrss is not None and 0 < run.maxrss < 32 * 1024, repr(run))
    err, c = Rpc(srv.query).call('cascade', post='g10')
    check('bad NDJSON lines: the good lines around them form their cascade (size 4)',
          err is None and c.get('size') == 4, f'{err} {c}')
    # CSV: a record spanning lines, a wrong field count, a stray quote, an unterminated quote
    text = ('post,actor,ts,parent,content\n'
            'k1,a,10,,"one, ""two""\nthree"\n'      # lines 2-3
            'k2,a\n'                                # 4: two fields
            'k3,a,11,k1,"x"y\n'                     # 5: text after a closing quote
            'k4,a,12,k1,plain\n'                    # 6
            'k5,a,13,k4,"never closed\n'            # 7 to the end
            'k6,a,14,k4,\n')
    path = write('bad.csv', text.encode())
    run = replay(['--port', srv.ingest, path])
    want = ['bad.csv:4: bad line', 'bad.csv:5: bad line', 'bad.csv:7: bad line']
    missing = [w for w in want if w not in run.err]
    check('bad CSV records (field count, stray quote, unterminated quote): reported as file:line',
          not missing and run.status == 0 and run.counts() == (2, 2, 0, 0), f'missing {missing}; {run!r}')
    err, c = Rpc(srv.query).call('cascade', post='k4')
    check('CSV: a quoted field with commas, doubled quotes and a newline arrives intact',
          err is None and c.get('content') == 'one, "two"\nthree' and c.get('size') == 2, f'{err} {c}')
    # msgpack: non-maps in and out of arrays, an event over the limit, then bytes that are not msgpack
    ok1 = {'post': 'm1', 'actor': 'a', 'ts': 1}
    ok2 = {'post': 'm2', 'actor': 'a', 'ts': 2, 'parent': 'm1'}
    head = msgpack.packb([ok1, 7, [1, 2]]) + msgpack.packb('str') + \
        msgpack.packb({'post': 'm3', 'actor': 'a', 'ts': 3, 'junk': b'\0' * (2 << 20)}) + msgpack.packb(ok2)
    path = write('bad.msgpack', head + b'\xc1' + msgpack.packb({'post': 'm9', 'actor': 'a', 'ts': 9}))
    run = replay(['--port', srv.ingest, path])
    want = ['bad.msgpack: event 2: bad event', 'bad.msgpack: event 3: bad event', 'bad.msgpack: event 4: bad event',
            'bad.msgpack: event 5: bad event', f'malformed msgpack at byte {len(head)}']
    missing = [w for w in want if w not in run.err]
    check('bad msgpack (non-maps, a 2 MiB event, malformed bytes): each reported with its event number and '
          'the byte offset; the events before are sent; exit 1 (the file could not be read to its end)',
          not missing and run.status == 1 and run.counts() == (2, 2, 0, 0), f'missing {missing}; {run!r}')
    # a corrupt and a truncated compressed file
    good = gzip.compress(b'{"post":"z1","actor":"a","ts":1}\n' * 1000)
    path = write('trunc.ndjson.gz', good[:len(good) // 2])
    run = replay(['--port', srv.ingest, path])
    check('a truncated gzip file: reported, what could be read is sent, exit 1',
          run.status == 1 and 'truncated gzip' in run.err and run.counts() is not None, repr(run))
    check('no crash on any of it: the server is alive', srv.alive())
    srv.stop()


def part_dry_run(events, paths):
    dicts = [e for e in events if isinstance(e, dict)]
    want = {}
    for line, e in enumerate(events, 1):
        if isinstance(e, dict):
            r, _ = validate(e)
            if r is not None:
                want[line] = r
    run = replay(['--dry-run', '--port', 1, paths['dump.ndjson']])  # nothing listens on port 1
    got = {int(m[1]): m[2] for m in re.finditer(r'dump\.ndjson:(\d+): would be rejected: (\w+)$', run.err, re.M)}
    check(f'--dry-run: each of the {len(want)} events the server would reject is named with its line and reason',
          got == want, f'missing {sorted(set(want.items()) - set(got.items()))[:5]} '
                       f'extra {sorted(set(got.items()) - set(want.items()))[:5]}')
    n_bad = len(events) - len(dicts)
    summary = f'checked {len(dicts)} events: {len(dicts) - len(want)} valid, {len(want)} would be rejected'
    check(f'--dry-run: summary "{summary} (...); {n_bad} bad lines", exit 1, no network',
          run.status == 1 and run.out.startswith(summary) and run.out.strip().endswith(f'; {n_bad} bad lines'),
          repr(run))
    run = replay(['--dry-run', SAMPLE])
    check('--dry-run of the Twitter15 sample: 40952 valid, exit 0',
          run.status == 0 and 'checked 40952 events: 40952 valid, 0 would be rejected; 0 bad lines' in run.out,
          repr(run))
    # the fast path for flat objects and jansson must read every line alike
    lines = [
        '{"post":"f1","actor":"a","ts":1}', ' { "post" : "f2" , "actor":"a" ,"ts" : 2 , "parent" : "f1" } ',
        '{"post":"f3","actor":"a","ts":-0}', '{"post":"f4","actor":"a","ts":01}', '{"post":"f5","actor":"a","ts":1e3}',
        '{"post":"f6","actor":"a","ts":123456789012345678}', '{"post":"f7","actor":"a","ts":1234567890123456789}',
        '{"post":"f8","actor":"a","ts":99999999999999999999}', '{"post":"f\\u00e9","actor":"a","ts":1}',
        '{"post":"f9","actor":"a","ts":1,"content":"caf\u00e9"}', '{"post":"f10","actor":"a","ts":1,"x":{"y":[1]}}',
        '{"post":"f11","actor":"a","ts":1,"post":"f11b"}', '{"post":"f12","actor":"a","ts":1}x',
        '{"post":"f13","actor":"a","ts":1,}', '{"post":"f14","actor":"a","ts":1,"label":true}',
        '{"post":"f15","actor":"a","ts":1,"label":null}', '{"post":"f16","actor":"a","ts":1,"kind":nul}',
        '{"post":"f17","actor":"a","ts":1,"content":"tab\there"}', '{"post":"f18","actor":"a","ts":- 1}',
        '{"post":"f19","actor":"a","ts":1', '{"post":"f20","actor":"a","ts":1}}', '{}', '{"post":"f21"\t,"actor":"a","ts":1}',
        '{"post":"f22","actor":"a","ts":18446744073709551615}', '{"post":7,"actor":8,"ts":9,"parent":"f1"}',
        '{"post":"f23","actor":"a","ts":1,"content":"\x7f"}', '{"post":"f24","actor":"a","ts":-9223372036854775808}',
    ]
    data = '\n'.join(lines).encode() + b'\n{"post":"f25","actor":"a","ts":1,"content":"\xff\xfe"}\n'
    path = write('agree.ndjson', data)
    fast = replay(['--dry-run', path])
    slow = replay(['--dry-run', path], env={'CASCADE_REPLAY_JSON': 'jansson'})
    check('--dry-run: the JSON fast path and jansson report the same for 28 tricky lines',
          (fast.status, fast.out, fast.err) == (slow.status, slow.out, slow.err) and 'bad line' in fast.err,
          f'fast {fast!r}\nslow {slow!r}')
    a, b = fresh_server('agree-fast'), fresh_server('agree-slow')
    fast = replay(['--port', a.ingest, path])
    slow = replay(['--port', b.ingest, path], env={'CASCADE_REPLAY_JSON': 'jansson'})
    ra, rb = Rpc(a.query), Rpc(b.query)
    posts = ['f1', 'f2', 'f3', 'f4', 'f6', 'f7', 'fé', 'f9', 'f10', 'f11', 'f11b', 'f14', 'f15', 'f17', 'f21', '7',
             'f23', 'f24']
    diff = [p for p in posts if {k: v for k, v in (ra.call('cascade', post=p)[1] or {}).items() if k != 'id'}
            != {k: v for k, v in (rb.call('cascade', post=p)[1] or {}).items() if k != 'id'}]
    sa, sb = stats_of(a), stats_of(b)
    diff += [k for k in ('posts', 'accepted', 'rejected', 'actors', 'edges') if sa.get(k) != sb.get(k)]
    check('the fast path and jansson send the same events (same answers from two servers)',
          fast.counts() == slow.counts() and not diff, f'{diff} {fast!r} {slow!r}')
    ra.close()
    rb.close()
    a.stop()
    b.stop()


def part_speed():
    t = harness.BASE_TS
    # gaps of 0, 2 and 4 s of dump time: 0, 200 and 400 ms at 10x, wide enough for a busy machine
    evs = [('s1', t), ('s2', t), ('s3', t + 2000), ('s4', t + 6000), ('s5', t + 4000)]
    path = write('speed.ndjson', ndjson_bytes([{'post': p, 'actor': 'a', 'ts': ts} for p, ts in evs]))
    fake = FakeIngest('ack')
    run = replay(['--port', fake.port, '--speed', '10x', path])
    fake.close()
    got = [e.get('post') for _, e in fake.events]
    check('--speed 10x: every event arrives, in dump order, exit 0',
          got == [p for p, _ in evs] and run.status == 0 and run.counts() == (5, 5, 0, 0), f'{got} {run!r}')
    if len(fake.events) == 5:
        at = {e['post']: t for t, e in fake.events}
        a, b = at['s3'] - at['s1'], at['s4'] - at['s3']  # 2000 and 4000 ms of dump time
        same_ts, backwards = at['s2'] - at['s1'], at['s5'] - at['s4']
        check(f'--speed 10x: gaps follow the dump (s1→s3 {a * 1000:.0f} ms, s3→s4 {b * 1000:.0f} ms: ratio '
              f'{b / a if a else 0:.2f}, want about 2)', a > 0 and 1.4 <= b / a <= 3.0)
        check(f'--speed 10x: equal ts and a ts going backwards are not waited for ({same_ts * 1000:.0f} and '
              f'{backwards * 1000:.0f} ms, under half of s1→s3)', same_ts < a / 2 and backwards < a / 2)


def part_errors():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    path = write('one.ndjson', b'{"post":"e1","actor":"a","ts":1}\n')
    run = replay(['--port', port, path])
    check('connection refused: exit 1, host:port named, "is cascaded running" suggested',
          run.status == 1 and f'127.0.0.1:{port}' in run.err and 'running' in run.err, repr(run))
    fake = FakeIngest('fatal')
    run = replay(['--port', fake.port, path])
    fake.close()
    check('a fatal reply: exit 1 and the server\'s message shown',
          run.status == 1 and 'malformed msgpack at byte 0' in run.err, repr(run))
    for args, what in ((['--speed', '10'], 'a speed without x'), (['--connections', '0'], '0 connections'),
                       (['--connections', '65'], '65 connections'), (['--port', 'http'], 'a port name'),
                       (['--format', 'xml'], 'an unknown format'), (['--bogus'], 'an unknown option'),
                       ([], 'no FILE'), (['--from', '-1'], 'a negative --from')):
        run = replay(args + ([path] if args else []))
        check(f'usage error ({what}): exit 2 with a message and no final line',
              run.status == 2 and 'cascade-replay' in run.err and not run.final, repr(run))
    run = replay([os.path.join(TMP, 'no-such-file.ndjson')])
    check('a missing file: exit 1 before anything is sent', run.status == 1 and 'no-such-file' in run.err, repr(run))
    run = replay(['--help'])
    flags = ['--host', '--port', '--speed', '--connections', '--format', '--from', '--dry-run', '--quiet', '--version']
    check('--help: exit 0, every flag named', run.status == 0 and all(f in run.out for f in flags), repr(run))
    run = replay(['--version'])
    check('--version: exit 0, "cascade-replay <version>"', run.status == 0 and run.out.startswith('cascade-replay '))


def part_progress():
    """Progress on a terminal (a pty as stderr), nothing of it when stderr is a pipe."""
    srv = fresh_server('progress')
    body = b''.join(b'{"post":"pr%d","actor":"a","ts":%d}\n' % (i, i) for i in range(2000))

    def paused(pipe):
        pipe.write(body[:len(body) // 2])
        pipe.flush()
        time.sleep(0.8)  # the replay waits for input meanwhile: its progress line is refreshed
        pipe.write(body[len(body) // 2:])

    master, slave = pty.openpty()
    chunks = []

    def read_tty():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    t = threading.Thread(target=read_tty, daemon=True)
    t.start()
    run = replay(['--port', srv.ingest, '-'], stdin=paused, stderr_fd=slave)
    os.close(slave)
    t.join(5)
    os.close(master)
    tty = b''.join(chunks).decode(errors='replace')
    check('progress on a terminal: events sent, events/s and bytes read on one refreshed line',
          run.status == 0 and '\r' in tty and 'events sent' in tty and 'events/s' in tty and 'read' in tty,
          f'{tty[-300:]!r} {run!r}')
    run = replay(['--port', srv.ingest, '-'], stdin=paused)
    check('no progress when stderr is not a terminal', run.status == 0 and '\r' not in run.err and run.err == '',
          repr(run))
    srv.stop()


def part_real_data():
    srv = fresh_server('sample')
    run = replay(['--port', srv.ingest, '--connections', '3', SAMPLE])
    st = stats_of(srv)
    check(f'tests/data/twitter15-sample.ndjson.gz over 3 connections: 40952 events, 150 cascades ({run.secs:.2f} s)',
          run.status == 0 and run.counts() == (40952, 40952, 0, 0) and st.get('posts') == 40952
          and st.get('cascades') == 150 and st.get('placeholders') == 0, f'{st} {run!r}')
    srv.stop()
    if not os.path.isdir(os.path.join(REPO, '..', 'shared')):
        print('# note: ../shared is not beside the repository: the full Twitter15/16 replays are skipped')
        return
    for name, n, cascades in (('twitter15', 599196, 1490), ('twitter16', 347828, 818)):
        srv = fresh_server(name)
        run = replay(['--port', srv.ingest, os.path.join(SHARED_DATA, f'{name}.ndjson.gz')], timeout=120)
        st = stats_of(srv)
        check(f'{name}.ndjson.gz: {n} events acked, {n} posts, {cascades} cascades ({run.secs:.2f} s)',
              run.status == 0 and run.counts() == (n, n, 0, 0) and st.get('posts') == n
              and st.get('cascades') == cascades and st.get('placeholders') == 0, f'{st} {run!r}')
        srv.stop()


def body(run):
    global BIN_DIR, REPLAY, TMP
    BIN_DIR, REPLAY, TMP = run.bin_dir, os.path.abspath(os.path.join(run.tools, 'cascade-replay')), run.tmp
    seed = int(os.environ.get('CASCADE_TEST_SEED', '1'))
    rng = random.Random(seed)
    print(f'# seed {seed} (CASCADE_TEST_SEED)')
    t0 = time.time()
    events = make_dump(rng)
    model = model_of(events)
    print(f'# dump: {len(events)} values, model {model.ack()} {model.stats()}')
    paths = part_formats(rng, events, model)
    part_several(rng, events, paths)
    part_routing(events, model, paths)
    part_resume(events, model, paths)
    part_bad_lines()
    part_dry_run(events, paths)
    part_speed()
    part_errors()
    part_progress()
    part_real_data()
    print(f'# {time.time() - t0:.1f} s')


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    harness.run_main('cascaded-test-replay-', body, server=False, more_reports=lambda run: list(SANITIZER))


if __name__ == '__main__':
    main()
