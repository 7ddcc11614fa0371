#!/usr/bin/python3
"""Engine snapshots through the real server (DESIGN §6, store/snapfile.h).

usage: /usr/bin/python3 test_snapshot.py BIN_DIR

  rpc        ingest, `snapshot` (RPC): {file, events, bytes, ms} and the file in DATA/snapshots;
             ingest more, a second snapshot (POST /v1/snapshot): WAL segments before the older
             snapshot are gone, the two snapshots stay; stats report the last one.
  kill -9    ingest more, kill -9, restart: the newest snapshot is loaded, only the WAL after it
             replayed, and the state equals the model of every acked event.
  fallback   the newest snapshot corrupted (a byte flipped), restart: it is refused with a
             reason on stderr, the older one is loaded with its WAL, the state is still equal;
             a truncated newest snapshot: the same.
  SIGUSR1    more events, SIGUSR1: a new snapshot holding every event; restart from it.
  crash      SIGUSR1 then kill -9 while the child writes: the child dies too, the restart
             holds every acked event and removes the .tmp file.
  unwritable DATA/snapshots replaced by a file: the method answers 500 with the reason, stats
             count the failure, nothing is lost.
  exit       SIGTERM writes a snapshot of everything (the next start replays no WAL); not when
             nothing came since the last one, nor with --snapshot-on-exit no.
Prints one line per check and ends with 'N passed, M failed'; exit status 1 if any failed.
"""
import json

import harness
from harness import *  # noqa: F401,F403 (the shared helpers)

SEG_MB = 1


def graph_problems(model, got):
    exp = {k: v for k, v in model.stats().items() if k in ('posts', 'placeholders', 'cascades', 'actors', 'edges')}
    if not isinstance(got, dict):
        return [f'no stats: {got!r}']
    bad = [f'{k}: got {got.get(k)!r} want {v!r}' for k, v in exp.items() if got.get(k) != v]
    if got.get('accepted') != model.counts['ok']:
        bad.append(f'accepted: got {got.get("accepted")!r} want {model.counts["ok"]}')
    return bad


def sample_problems(model, rpc, rng, n=30):
    d = model.derive()
    roots, names = list(d['cascades']), list(d['actors'])
    bad = []
    for r in sorted(roots, key=lambda r: -len(d['cascades'][r]['_nodes']))[:3] + rng.sample(roots, min(n, len(roots))):
        bad += compare_cascade(model, rpc, r)
    for a in sorted(names, key=lambda a: -d['actors'][a]['reach'])[:3] + rng.sample(names, min(n, len(names))):
        bad += compare_actor(model, rpc, a)
    return bad


def ingest(srv, model, rng, n, prefix):
    trees, _ = gen_forest(rng, n, prefix, n_actors=800)
    events = riffle(rng, trees)
    values = group_values(rng, events)
    acks, fatal = send_all(srv.ingest, values, timeout=60)
    model.apply_values(values)
    return acks


def state_equal(tag, srv, model, rng):
    rpc = Rpc(srv.query)
    try:
        err, st = rpc.call('stats')
        bad = graph_problems(model, st)
        check(f'{tag}: stats = the model of every acked event', not bad, str(bad[:6]))
        bad = sample_problems(model, rpc, rng)
        check(f'{tag}: sampled cascades and actors = the model', not bad, '; '.join(bad[:6]))
        return st
    finally:
        rpc.close()


def snapshots(data):
    return sorted(os.listdir(os.path.join(data, 'snapshots')))


def segments(data):
    return sorted(int(f[:-4]) for f in os.listdir(os.path.join(data, 'wal')) if f.endswith('.wal'))


def processes_of(data):
    """PIDs of processes whose command line names the data dir (the server and a snapshot child)."""
    out = []
    for pid in os.listdir('/proc'):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if data.encode() in f.read():
                    out.append(int(pid))
        except (OSError, ValueError):
            pass
    return out


def log_events(srv, name):
    return [l for l in srv.stderr().splitlines() if f'event={name}' in l]


def field(line, key):
    m = re.search(rf'\b{key}=("[^"]*"|\S+)', line)
    return m.group(1).strip('"') if m else None


def http_get(port, path, timeout=60, method='GET'):
    s = socket.create_connection(('127.0.0.1', port), timeout=timeout)
    # POST (the snapshot method changes state: not served on GET) needs a JSON Content-Type
    extra = 'Content-Type: application/json\r\n' if method == 'POST' else ''
    try:
        s.sendall(f'{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n'.encode())
        buf = b''
        while True:
            b = s.recv(65536)
            if not b:
                break
            buf += b
    finally:
        s.close()
    head, _, body = buf.partition(b'\r\n\r\n')
    return int(head.split()[1]), body


def run(srv, tools):
    seed = int(os.environ.get('CASCADE_TEST_SEED', '1'))
    rng = random.Random(seed)
    print(f'# seed {seed} (CASCADE_TEST_SEED)')
    data = srv.data
    model = Model()

    # -- rpc
    ingest(srv, model, rng, 40000, 'a')
    rpc = Rpc(srv.query)
    err, r1 = rpc.call('snapshot')
    ok = err is None and isinstance(r1, dict) and set(r1) == {'file', 'events', 'bytes', 'ms'}
    check('rpc: snapshot answers {file, events, bytes, ms}', ok, f'{err!r} {r1!r}')
    if not ok:
        return
    check('rpc: it holds every accepted event', r1['events'] == model.counts['ok'], f'{r1["events"]} vs {model.counts["ok"]}')
    path1 = os.path.join(data, 'snapshots', r1['file'])
    check('rpc: the file is there, of the size said', os.path.getsize(path1) == r1['bytes'])
    seq1 = int(r1['file'].split('-')[1])
    err, again = rpc.call('snapshot')
    err, st = rpc.call('stats')
    check('rpc: nothing new since: the same file is the answer, none written',
          again == dict(r1, ms=0) and st.get('snapshots_written') == 1, f'{again!r} {st.get("snapshots_written")}')
    check('rpc: one snapshot, the WAL kept whole (no older snapshot to fall back on)',
          snapshots(data) == [r1['file']] and segments(data)[0] == 1, f'{snapshots(data)} {segments(data)}')

    ingest(srv, model, rng, 40000, 'b')
    status, body = http_get(srv.http, '/v1/snapshot', method='POST')
    r2 = json.loads(body) if status == 200 else None
    check('http: POST /v1/snapshot answers 200 with the file', status == 200 and r2.get('events') == model.counts['ok'],
          f'{status} {body[:300]!r}')
    if status != 200:
        return
    check('retention: both snapshots kept', snapshots(data) == sorted([r1['file'], r2['file']]), str(snapshots(data)))
    segs = segments(data)
    check('retention: WAL segments before the older snapshot are gone', seq1 > 1 and segs[0] == seq1,
          f'older snapshot at segment {seq1}, segments {segs}')
    err, st = rpc.call('stats')
    check('stats: the last snapshot\'s figures', st.get('snapshots_written') == 2 and
          st.get('snapshot_last_events') == r2['events'] and st.get('snapshot_last_bytes') == r2['bytes'] and
          st.get('snapshot_last_file') == r2['file'] and st.get('snapshot_last_time_ms', 0) > 0,
          str({k: v for k, v in st.items() if 'snapshot' in k}))
    status, body = http_get(srv.http, '/metrics')
    check('metrics: cascaded_snapshot_last_bytes', f'cascaded_snapshot_last_bytes {r2["bytes"]}'.encode() in body)
    rpc.close()

    # -- kill -9 after more events
    ingest(srv, model, rng, 20000, 'c')
    after = model.counts['ok'] - r2['events']
    srv.kill()
    srv.start()
    loaded = log_events(srv, 'snapshot_loaded')
    replayed = log_events(srv, 'wal_replayed')
    check('kill -9: the newest snapshot is loaded', loaded and field(loaded[-1], 'file') == r2['file'], str(loaded))
    check('kill -9: only the WAL after it is replayed',
          replayed and int(field(replayed[-1], 'events')) == after, f'{replayed} want events={after}')
    state_equal('kill -9', srv, model, rng)

    # -- fallback: the newest snapshot damaged
    srv.kill()
    path2 = os.path.join(data, 'snapshots', r2['file'])
    with open(path2, 'rb') as f:
        intact = f.read()
    with open(path2, 'r+b') as f:
        f.seek(os.path.getsize(path2) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x40]))
    srv.start()
    refused = log_events(srv, 'snapshot_refused')
    loaded = log_events(srv, 'snapshot_loaded')
    check('fallback: the corrupt snapshot is refused with a reason (LOG_WARN)',
          refused and 'level=warn' in refused[-1] and field(refused[-1], 'reason'), str(refused))
    check('fallback: the older snapshot is loaded', loaded and field(loaded[-1], 'file') == r1['file'], str(loaded))
    state_equal('fallback (flipped byte)', srv, model, rng)
    check('fallback: the refused file is set aside as .corrupt',
          os.path.exists(path2 + '.corrupt') and not os.path.exists(path2), str(snapshots(data)))
    srv.kill()
    os.unlink(path2 + '.corrupt')
    with open(path2, 'wb') as f:
        f.write(intact[:len(intact) * 2 // 3])
    srv.start()
    refused = log_events(srv, 'snapshot_refused')
    check('fallback: a truncated snapshot is refused', refused and 'truncated' in refused[-1], str(refused))
    state_equal('fallback (truncated)', srv, model, rng)

    # -- SIGUSR1
    ingest(srv, model, rng, 10000, 'd')
    srv.p.send_signal(signal.SIGUSR1)
    rpc = Rpc(srv.query)
    deadline, st = time.time() + 30, {}
    while time.time() < deadline:
        err, st = rpc.call('stats')
        if st.get('snapshots_written') == 1 and not st.get('snapshot_running'):
            break
        time.sleep(0.1)
    rpc.close()
    check('SIGUSR1: one snapshot written, holding every event',
          st.get('snapshots_written') == 1 and st.get('snapshot_last_events') == model.counts['ok'],
          str({k: v for k, v in st.items() if 'snapshot' in k}))
    newest = snapshots(data)[-1]
    check('SIGUSR1: it is the newest file, kept with the older intact one; the damaged one set aside',
          snapshots(data) == [r1['file'], r2['file'] + '.corrupt', newest] and newest == st.get('snapshot_last_file'),
          str(snapshots(data)))
    check('retention: the older intact snapshot\'s WAL is still there', segments(data)[0] <= seq1, str(segments(data)))
    srv.kill()
    srv.start()
    loaded = log_events(srv, 'snapshot_loaded')
    replayed = log_events(srv, 'wal_replayed')
    check('SIGUSR1: restart loads it and replays nothing',
          loaded and field(loaded[-1], 'file') == newest and int(field(replayed[-1], 'events')) == 0,
          f'{loaded} {replayed}')
    state_equal('after SIGUSR1 and kill -9', srv, model, rng)

    # -- a crash while a snapshot is being written
    ingest(srv, model, rng, 30000, 'e')
    srv.p.send_signal(signal.SIGUSR1)
    time.sleep(0.25)  # the writer looks at the flag every 200 ms: the child is (most likely) writing
    srv.kill()
    deadline = time.time() + 5
    while time.time() < deadline and processes_of(data):
        time.sleep(0.05)
    check('crash mid-snapshot: the child dies with the server', not processes_of(data), str(processes_of(data)))
    tmp_left = [f for f in snapshots(data) if f.endswith('.tmp')]
    print(f'# crash mid-snapshot: {"a .tmp file was left, the kill came mid-write" if tmp_left else "no .tmp file (the kill came before or after the write)"}')
    srv.start()
    state_equal('crash mid-snapshot', srv, model, rng)
    check('crash mid-snapshot: no .tmp file left after the restart',
          not [f for f in snapshots(data) if f.endswith('.tmp')], str(snapshots(data)))
    # -- a snapshot that cannot be written: an error that says why, and nothing lost
    snapdir = os.path.join(data, 'snapshots')
    os.rename(snapdir, snapdir + '.away')
    with open(snapdir, 'w') as f:
        f.write('not a directory')
    ingest(srv, model, rng, 2000, 'f')
    rpc = Rpc(srv.query)
    err, res = rpc.call('snapshot')
    _, st = rpc.call('stats')
    rpc.close()
    check('unwritable: the snapshot method answers an error that says why',
          isinstance(err, dict) and err.get('code') == 500 and 'Not a directory' in err.get('message', ''),
          f'{err!r} {res!r}')
    check('unwritable: counted in stats', st.get('snapshots_failed') == 1, str(st.get('snapshots_failed')))
    os.unlink(snapdir)
    os.rename(snapdir + '.away', snapdir)
    state_equal('after a failed snapshot', srv, model, rng)

    # -- SIGTERM: a snapshot of everything, so that the next start replays nothing
    ingest(srv, model, rng, 5000, 'g')
    before = snapshots(data)
    check('exit: SIGTERM exits 0', srv.stop() == 0)
    on_exit, written = log_events(srv, 'snapshot_on_exit'), log_events(srv, 'snapshot_written')
    check('exit: SIGTERM writes a snapshot holding every event',
          on_exit and written and int(field(written[-1], 'events')) == model.counts['ok']
          and field(written[-1], 'file') == snapshots(data)[-1] and snapshots(data) != before,
          f'{on_exit} {written} {snapshots(data)}')
    srv.start()
    loaded, replayed = log_events(srv, 'snapshot_loaded'), log_events(srv, 'wal_replayed')
    check('exit: the next start loads it and replays nothing',
          loaded and field(loaded[-1], 'file') == snapshots(data)[-1] and int(field(replayed[-1], 'events')) == 0,
          f'{loaded} {replayed}')
    state_equal('after SIGTERM', srv, model, rng)
    before = snapshots(data)
    check('exit: nothing new, SIGTERM again exits 0', srv.stop() == 0)
    check('exit: nothing new since the last snapshot: none written',
          not log_events(srv, 'snapshot_on_exit') and snapshots(data) == before, f'{snapshots(data)}')
    srv.extra += ['--snapshot-on-exit', 'no']
    srv.start()
    ok_before = model.counts['ok']
    ingest(srv, model, rng, 3000, 'h')
    new_events = model.counts['ok'] - ok_before
    check('exit: --snapshot-on-exit no, SIGTERM exits 0', srv.stop() == 0)
    check('exit: --snapshot-on-exit no: no snapshot written',
          not log_events(srv, 'snapshot_on_exit') and snapshots(data) == before, f'{snapshots(data)}')
    srv.start()
    replayed = log_events(srv, 'wal_replayed')
    check('exit: after --snapshot-on-exit no, the next start replays the WAL after the last one',
          replayed and int(field(replayed[-1], 'events')) == new_events, f'{replayed} want events={new_events}')
    state_equal('after SIGTERM without a snapshot', srv, model, rng)
    earlier = sanitizer_reports([f'{srv.data}.stderr.{i}' for i in range(1, srv.starts)])
    check('no sanitizer report from the earlier starts', not earlier, '; '.join(earlier[:5]))


if __name__ == '__main__':
    harness.run_main('cascaded-test-snapshot-', lambda r: run(r.srv, r.tools), '--wal-segment-mb', str(SEG_MB),
                     '--snapshot-interval', '0')
