#!/usr/bin/python3
"""Crash and durability test of cascaded (DESIGN §6) through the real server.

usage: /usr/bin/python3 test_durability.py BIN_DIR      (BIN_DIR holds the built `cascaded`)

  kill -9    4 producers send (threads, paced) and record every ack; the server is killed with
             SIGKILL mid-stream and restarted on the same data dir; each producer resends its acked
             prefix (all of it must come back as duplicates) and then the rest; the stats and
             metrics must then equal those computed here from the full stream, posts counted once;
             a second kill -9 and restart must give the same state. With --fsync everysec, always, no
             (a process kill loses nothing under any policy: acked events were written to the OS).
  torn tail  SIGTERM, the last WAL segment (DATA/wal/*.wal) loses its last 3 bytes: the server
             starts, logs the cut on stderr, and holds exactly the events of the records before the
             last one; a resend fills the gap, and the next start finds a clean log.
  corrupt    the same with one byte of the last record flipped; then zeros and noise appended
             after the last record, and a torn new segment (5 bytes): nothing lost, both cut.
  conflicts  8 connections race with conflicting events (same post ids, conflicting actor_types):
             every answer after kill -9 and restart is exactly what it was before.
  segments   some 82 MB of WAL (two segments) replayed after kill -9; wal_bytes = the files' size.
  SIGTERM    while 2 producers are sending (and idle connections hold half a value, or nothing):
             exit status 0, every acked event there after restart.
Prints one line per check and ends with 'N passed, M failed'; exit status 1 if any failed.
Needs Debian's python3-msgpack and nothing else; servers are stopped by PID at the end.
"""
import harness
from harness import *  # noqa: F401,F403 (the shared helpers)

# ------------------------------------------------------------------------------------ durability

def graph_stats_problems(model, got):
    """The graph's counts (not the per-run outcome counters) against the model."""
    exp = {k: v for k, v in model.stats().items() if k in ('posts', 'placeholders', 'cascades', 'actors', 'edges')}
    if not isinstance(got, dict):
        return [f'no stats: {got!r}']
    return [f'{k}: got {got.get(k)!r} want {v!r}' for k, v in exp.items() if got.get(k) != v]


def sample_problems(model, rpc, rng, n=40):
    d = model.derive()
    roots = list(d['cascades'])
    bad = []
    for r in sorted(roots, key=lambda r: -len(d['cascades'][r]['_nodes']))[:2] + rng.sample(roots, min(n, len(roots))):
        bad += compare_cascade(model, rpc, r)
    names = list(d['actors'])
    for a in sorted(names, key=lambda a: -d['actors'][a]['reach'])[:2] + rng.sample(names, min(n, len(names))):
        bad += compare_actor(model, rpc, a)
    return bad


def make_streams(rng, n_producers, per, prefix, intid_base=7_000_000):
    """Event lists for n producers: trees spread over producers (parents on other connections),
    identical resends on other producers, a few rejections; no cycle attempts and a consistent
    actor_type, so that the final state does not depend on how the producers interleave."""
    trees, _ = gen_forest(rng, n_producers * per, prefix, n_actors=1500, intid_base=intid_base)
    for tr in trees:
        for e in tr:
            if 'actor_type' in e:
                e['actor_type'] = 'page'
    streams = [[] for _ in range(n_producers)]
    for tr in trees:
        home = rng.randrange(n_producers)
        for e in tr:
            streams[home if rng.random() < 0.7 else rng.randrange(n_producers)].append(e)
    for k in range(n_producers):
        for e in rng.sample(streams[k], len(streams[k]) // 50):
            other = streams[(k + 1 + rng.randrange(n_producers - 1)) % n_producers] if n_producers > 1 else streams[k]
            other.insert(rng.randrange(len(other) + 1), e)
        for i in range(len(streams[k]) // 200):
            streams[k].insert(rng.randrange(len(streams[k]) + 1), bad_event(rng, k * 10000 + i))
    return streams


def chunk_values(rng, events, lo=80, hi=250):
    """The events as a list of chunks, each a list of top-level values (maps and arrays mixed)."""
    out, i = [], 0
    while i < len(events):
        n = rng.randrange(lo, hi)
        out.append(group_values(rng, events[i:i + n]))
        i += n
    return out


def split_counts(events):
    """(valid, rejected) among events: validation alone decides (no cycles in these streams)."""
    rej = sum(1 for e in events if validate(e)[0] is not None)
    return len(events) - rej, rej


class Producer(threading.Thread):
    """Sends its chunks with a pause after each, while its connection's reader records every ack."""

    def __init__(self, port, rng, events, pause):
        super().__init__(daemon=True)
        self.events, self.pause = events, pause
        self.chunks = chunk_values(rng, events)
        self.conn = IngestConn(port, timeout=30)
        self.error = None

    def run(self):
        try:
            for ch in self.chunks:
                self.conn.send(pack(ch))
                time.sleep(self.pause)
            self.conn.wait_total(len(self.events), 30)
        except OSError as e:
            self.error = e

    def acked(self):
        return ack_total(self.conn.last())


def resend(port, rng, events, prefix_len, results, k):
    """Resends events[:prefix_len] and waits for their ack, then the rest; results[k] gets
    (ack after the prefix, final ack)."""
    c = IngestConn(port, timeout=30)
    try:
        first = {}
        if prefix_len:
            c.send(pack(group_values(rng, events[:prefix_len])))
            first = c.wait_total(prefix_len, 30)
        for ch in chunk_values(rng, events[prefix_len:], 500, 2000):
            c.send(pack(ch))
        results[k] = (first, c.wait_total(len(events), 60))
    except OSError as e:
        results[k] = ({'exception': repr(e)}, {'exception': repr(e)})
    finally:
        c.close()


def run_producers_until(srv, producers, fraction, timeout=30):
    total = sum(len(p.events) for p in producers)
    for p in producers:
        p.start()
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sum(p.acked() for p in producers) >= fraction * total or not any(p.is_alive() for p in producers):
            break
        time.sleep(0.005)


def resend_all(srv, rng, streams, prefixes):
    results = [None] * len(streams)
    threads = [threading.Thread(target=resend, args=(srv.ingest, random.Random(rng.random()), s, t, results, k))
               for k, (s, t) in enumerate(zip(streams, prefixes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def part_kill(bin_dir, tmp, rng, fsync):
    tag = f'kill -9 (--fsync {fsync})'
    data = os.path.join(tmp, f'kill-{fsync}')
    srv = Server(bin_dir, data, '--fsync', fsync).start()
    rpc = None
    try:
        streams = make_streams(rng, 4, 20000, f'K{fsync[0]}')
        model = Model()
        for s in streams:
            model.apply_values(s)
        distinct_valid = len(model.posts)
        producers = [Producer(srv.ingest, random.Random(rng.random()), s, 0.005) for s in streams]
        run_producers_until(srv, producers, 0.35)
        srv.stop(signal.SIGKILL)
        for p in producers:
            p.join(30)
            p.conn.close()
        lasts = [p.conn.last() for p in producers]
        prefixes = [ack_total(a) for a in lasts]
        acked_ok = sum(a.get('ok', 0) for a in lasts)
        total = sum(map(len, streams))
        check(f'{tag}: killed while the 4 producers were sending ({sum(prefixes)} of {total} events acked)',
              0 < sum(prefixes) and any(t < len(s) for t, s in zip(prefixes, streams)), str(prefixes))
        probs = [x for p in producers for x in ack_problems(p.conn.acks(), len(p.events))]
        check(f'{tag}: acks before the kill well-formed', not probs, str(probs[:4]))
        srv.start()
        check(f'{tag}: restarts on the same data dir', srv.alive())
        rpc = Rpc(srv.query)
        err, st0 = rpc.call('stats')
        acked_ids = set()
        for s, t in zip(streams, prefixes):
            acked_ids |= {validate(e)[1]['post'] for e in s[:t] if validate(e)[0] is None}
        check(f'{tag}: after restart at least the {len(acked_ids)} distinct acked posts are there',
              isinstance(st0, dict) and st0.get('posts', -1) >= len(acked_ids), f'{err} {st0}')
        results = resend_all(srv, rng, streams, prefixes)
        bad = []
        for k, (s, t) in enumerate(zip(streams, prefixes)):
            first, _ = results[k] or ({}, {})
            valid, rej = split_counts(s[:t])
            if (first.get('ok'), first.get('dup'), first.get('rej')) != (0, valid, rej):
                bad.append(f'producer {k}: resent its {t} acked events, got {first}, want ok 0 dup {valid} rej {rej}')
        check(f'{tag}: every event acked before the kill comes back as a duplicate', not bad, '; '.join(bad))
        finals = [r[1] if r else {} for r in results]
        dup_sum = sum(f.get('dup', 0) for f in finals)
        check(f'{tag}: resend of everything: sum of dup {dup_sum} >= acked ok {acked_ok}', dup_sum >= acked_ok)
        done = all(ack_total(f) == len(s) for f, s in zip(finals, streams))
        check(f'{tag}: resend of everything fully acked', done, str(finals))
        err, st = rpc.call('stats')
        check(f'{tag}: nothing counted twice: posts = {distinct_valid} distinct valid post ids',
              isinstance(st, dict) and st.get('posts') == distinct_valid, f'{err} {st}')
        bad = graph_stats_problems(model, st)
        check(f'{tag}: stats after restart and resend = stats of the full stream {model.stats()}', not bad, str(bad))
        bad = sample_problems(model, rpc, rng)
        check(f'{tag}: sampled cascades and actors = the full stream\'s', not bad, '; '.join(bad[:6]))
        rpc.close()
        rpc = None
        # a second crash with nothing in flight: the replay gives the same state again
        srv.stop(signal.SIGKILL)
        srv.start()
        rpc = Rpc(srv.query)
        err, st = rpc.call('stats')
        bad = graph_stats_problems(model, st)
        check(f'{tag}: a second kill -9 and restart: same stats', not bad, str(bad))
        bad = sample_problems(model, rpc, rng, 15)
        check(f'{tag}: a second kill -9 and restart: same metrics', not bad, '; '.join(bad[:6]))
    finally:
        if rpc:
            rpc.close()
        check(f'{tag}: SIGTERM exits 0', srv.stop() == 0)


CUT_WORDS = re.compile(r'cut|trunc|torn|corrupt', re.I)


def cut_lines(srv):
    """stderr lines that tell of a cut WAL tail (the data dir's own path left out of the search)."""
    return [l for l in srv.stderr().splitlines() if CUT_WORDS.search(l.replace(srv.data, 'DATA_DIR'))]


def segments(data):
    return sorted(glob.glob(os.path.join(data, 'wal', '*.wal')))


def part_tail(bin_dir, tmp, rng, mode):
    tag = f'{mode} WAL tail'
    data = os.path.join(tmp, f'tail-{mode}')
    # the WAL alone must recover: a snapshot at exit would hold the last record too
    srv = Server(bin_dir, data, '--snapshot-on-exit', 'no').start()
    rpc = None
    try:
        trees, _ = gen_forest(rng, 3000, f'T{mode}', n_actors=300, intid_base=None)
        batch1 = group_values(rng, riffle(rng, trees))
        m1 = Model()
        m1.apply_values(batch1)
        roots = [e['post'] for tr in trees for e in tr if 'parent' not in e]
        batch2 = [[{'post': f'tail-{mode}-{i}', 'actor': f'tailer{i % 2}', 'ts': BASE_TS + i,
                    'parent': rng.choice(roots), 'content': f'TAILMARK-{mode}-{i}-' + 'z' * 400} for i in range(5)]]
        m2 = Model()
        m2.apply_values(batch1 + batch2)
        acks, fatal = send_all(srv.ingest, batch1)
        check(f'{tag}: first batch acked', acks and acks[-1].get('ok') == m1.counts['ok'], str(acks[-1:]))
        acks, fatal = send_all(srv.ingest, batch2)
        check(f'{tag}: last batch (5 events, one record) acked', acks and acks[-1].get('ok') == 5, str(acks[-1:]))
        check(f'{tag}: SIGTERM exits 0', srv.stop() == 0)
        segs = [s for s in segments(data) if os.path.getsize(s) > 0]
        if not check(f'{tag}: WAL segments in DATA/wal/*.wal', segs, str(os.listdir(data))):
            return
        last = segs[-1]
        blob = open(last, 'rb').read()
        size = len(blob)
        if mode == 'torn':
            os.truncate(last, size - 3)
            what = f'cut the last 3 of {size} bytes of {os.path.basename(last)}'
        elif mode == 'garbage':
            with open(last, 'ab') as f:
                f.write(b'\0' * 3000 + bytes(rng.randrange(256) for _ in range(1000)))
            what = f'appended 4000 bytes of zeros and noise to {os.path.basename(last)}'
        elif mode == 'new-segment':
            base = os.path.basename(last)
            digits = len(base) - len('.wal')
            nxt = os.path.join(os.path.dirname(last), f'{int(base[:digits]) + 1:0{digits}d}.wal')
            with open(nxt, 'wb') as f:
                f.write(blob[:5])  # a segment whose creation was torn: 5 bytes of a header
            what = f'created {os.path.basename(nxt)} holding 5 bytes'
        else:
            pos = blob.rfind(b'TAILMARK-corrupt-2-')
            where = pos + 25 if pos >= 0 else size - 600
            with open(last, 'r+b') as f:
                f.seek(where)
                f.write(bytes([blob[where] ^ 0x5a]))
            what = f'flipped byte {where} of {size} in {os.path.basename(last)}' + ('' if pos >= 0 else ' (marker not found)')
        print(f'# {tag}: {what}')
        try:
            srv.start()
        except RuntimeError as e:
            check(f'{tag}: the server starts after: {what}', False, str(e)[-600:])
            return
        check(f'{tag}: the server starts after: {what}', True)
        cuts = cut_lines(srv)
        check(f'{tag}: a log line on stderr tells of the cut', cuts, srv.stderr()[-800:])
        if cuts:
            print(f'# {cuts[0][:300]}')
        rpc = Rpc(srv.query)
        err, st = rpc.call('stats')
        v1, r1 = split_counts([e for v in batch1 for e in (v if isinstance(v, list) else [v])])
        if mode in ('torn', 'corrupt'):
            bad = graph_stats_problems(m1, st)
            check(f'{tag}: every event of the records before the last is there, the last record\'s are not', not bad,
                  f'{bad} (with the last batch: {graph_stats_problems(m2, st)})')
            present = [i for i in range(5) if rpc.call('cascade', post=f'tail-{mode}-{i}')[0] is None]
            check(f'{tag}: none of the last record\'s 5 posts is there', not present, str(present))
            bad = sample_problems(m1, rpc, rng, 30)
            check(f'{tag}: the metrics are those of the first batch alone', not bad, '; '.join(bad[:6]))
            want_ok, want_dup = 5, v1
        else:
            bad = graph_stats_problems(m2, st)
            check(f'{tag}: every event is there (the damage was after the last record)', not bad, str(bad))
            bad = sample_problems(m2, rpc, rng, 30)
            check(f'{tag}: the metrics are those of both batches', not bad, '; '.join(bad[:6]))
            want_ok, want_dup = 0, v1 + 5
        acks, fatal = send_all(srv.ingest, batch1 + batch2)
        last_ack = acks[-1] if acks else {}
        check(f'{tag}: resending both batches: {want_ok} new, {want_dup} duplicates',
              (last_ack.get('ok'), last_ack.get('dup')) == (want_ok, want_dup), str(last_ack))
        err, st = rpc.call('stats')
        bad = graph_stats_problems(m2, st)
        check(f'{tag}: then the stats are those of both batches', not bad, str(bad))
        rpc.close()
        rpc = None
        check(f'{tag}: SIGTERM exits 0 after the resend', srv.stop() == 0)
        srv.start()
        cuts = cut_lines(srv)
        check(f'{tag}: the next start finds a clean log (no cut)', not cuts, str(cuts[:2]))
        rpc = Rpc(srv.query)
        err, st = rpc.call('stats')
        bad = graph_stats_problems(m2, st)
        check(f'{tag}: and the same stats', not bad, str(bad))
        bad = sample_problems(m2, rpc, rng, 20)
        check(f'{tag}: and the same metrics', not bad, '; '.join(bad[:6]))
    finally:
        if rpc:
            rpc.close()
        srv.stop()


def snapshot(rpc, posts, actors):
    """Every answer the server gives for these posts and actors, and its graph counts."""
    out = {}
    for p in posts:
        err, res = rpc.call('cascade', post=p)
        out['cascade', p] = (err is None, {k: v for k, v in (res or {}).items() if k != 'id'})
    for a in actors:
        err, res = rpc.call('actor', id=a)
        out['actor', a] = (err is None, {k: v for k, v in (res or {}).items() if k != 'pagerank'})
    err, st = rpc.call('stats')
    out['stats'] = {k: (st or {}).get(k) for k in ('posts', 'placeholders', 'cascades', 'actors', 'edges')}
    return out


def part_conflicts(bin_dir, tmp, rng):
    """8 connections race with conflicting events: the same post ids with different actors,
    parents and contents; actors given conflicting actor_types; labels on posts with equal ts.
    Which one wins is up to the server, but whatever it answered must be what it answers after
    kill -9 and restart (the WAL holds what was applied, in the order it was applied)."""
    tag = 'conflicting concurrent events'
    data = os.path.join(tmp, 'conflicts')
    srv = Server(bin_dir, data).start()
    rpc = None
    try:
        N, roots = 8, [f'croot-{j}' for j in range(20)]
        first = [{'post': r, 'actor': 'rooter', 'ts': BASE_TS} for r in roots]
        acks, fatal = send_all(srv.ingest, [first])
        streams = []
        for k in range(N):
            evs = []
            for j in range(300):
                evs.append({'post': f'contested-{j}', 'actor': f'claimant{k}', 'ts': BASE_TS + j + k,
                            'actor_type': 'page' if k % 2 else 'account',
                            'parent': roots[(j + k) % 20] if k % 3 else None,
                            'content': f'from-{k}', 'label': rng.choice(['false', 'true', 'mixed'])})
                evs.append({'post': f'sh-{k}-{j}', 'actor': f'shared{j % 40}', 'ts': BASE_TS + 1000 + j,
                            'actor_type': 'page' if (k + j) % 2 else 'account', 'parent': f'contested-{(j * 7) % 300}',
                            'label': ['false', 'true'][k % 2]})
            streams.append(evs)
        results = [None] * N
        go = threading.Barrier(N)

        def producer(k):
            c = IngestConn(srv.ingest)
            try:
                go.wait(10)
                for i in range(0, len(streams[k]), 10):
                    c.send(pack([streams[k][i:i + 10]]))
                    time.sleep(0.0005)
                results[k] = c.wait_total(len(streams[k]), 30)
            finally:
                c.close()

        threads = [threading.Thread(target=producer, args=(k,)) for k in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        oks = sum((r or {}).get('ok', 0) for r in results)
        check(f'{tag}: all acked; every contested post accepted once ({oks} ok)',
              all(ack_total(r or {}) == len(s) for r, s in zip(results, streams)) and oks == 300 + N * 300,
              str(results))
        posts = roots + [f'contested-{j}' for j in range(300)] + [f'sh-{k}-{j}' for k in range(N) for j in range(300)]
        actors = ['rooter'] + [f'claimant{k}' for k in range(N)] + [f'shared{j}' for j in range(40)]
        rpc = Rpc(srv.query)
        before = snapshot(rpc, posts, actors)
        rpc.close()
        rpc = None
        srv.stop(signal.SIGKILL)
        srv.start()
        rpc = Rpc(srv.query)
        after = snapshot(rpc, posts, actors)
        diff = [f'{k}: before {before[k]} after {after.get(k)}' for k in before if before[k] != after.get(k)]
        check(f'{tag}: after kill -9 and restart, all {len(before)} answers are exactly what they were',
              not diff, '; '.join(diff[:4]))
        rpc.close()
        rpc = None
        check(f'{tag}: SIGTERM exits 0', srv.stop() == 0)
        srv.start()
        rpc = Rpc(srv.query)
        again = snapshot(rpc, posts, actors)
        diff = [f'{k}: before {before[k]} after {again.get(k)}' for k in before if before[k] != again.get(k)]
        check(f'{tag}: and after SIGTERM and another restart', not diff, '; '.join(diff[:4]))
    finally:
        if rpc:
            rpc.close()
        srv.stop()


def part_segments(bin_dir, tmp, rng):
    """Past 64 MiB the WAL goes on in a new segment: a crash after that replays them all, in order."""
    tag = 'several WAL segments'
    data = os.path.join(tmp, 'segments')
    srv = Server(bin_dir, data).start()
    rpc = None
    try:
        n = 40000  # about 2 KiB each: some 82 MB of WAL
        evs = [{'post': f'seg-{i}', 'actor': f'segger{i % 301}', 'ts': BASE_TS + i,
                'parent': f'seg-{rng.randrange(i)}' if i % 10 else None,
                'content': f'{i:08d}' + 'c' * 2000} for i in range(n)]
        # late parents across the segment boundary: the last 500 events reference the last 500 first
        evs = evs[:-1000] + evs[-500:] + evs[-1000:-500]
        model = Model()
        model.apply_values(evs)
        c = IngestConn(srv.ingest, timeout=60)
        for i in range(0, n, 2000):  # acked 4 MB at a time: many records, in values under 4 MiB
            c.send(pack([evs[i:i + 1000], evs[i + 1000:i + 2000]]))
            c.wait_total(i + 2000, 60)
        last = c.wait_total(n, 60)
        c.close()
        check(f'{tag}: {n} events with 2 KB contents acked', last.get('ok') == n, str(last))
        segs = segments(data)
        sizes = [os.path.getsize(x) for x in segs]
        check(f'{tag}: more than one segment file ({len(segs)}: {sizes})', len(segs) >= 2)
        rpc = Rpc(srv.query)
        err, st = rpc.call('stats')
        check(f'{tag}: stats wal_bytes = the segment files\' total size ({sum(sizes)})',
              isinstance(st, dict) and st.get('wal_bytes') == sum(sizes), f'{err} {(st or {}).get("wal_bytes")}')
        rpc.close()
        rpc = None
        srv.stop(signal.SIGKILL)
        srv.start()
        rpc = Rpc(srv.query)
        err, st = rpc.call('stats')
        bad = graph_stats_problems(model, st)
        check(f'{tag}: after kill -9, every event of every segment is replayed', not bad, str(bad))
        bad = sample_problems(model, rpc, rng, 30)
        check(f'{tag}: and the metrics are right (contents, late parents across segments)', not bad,
              '; '.join(bad[:6]))
        replayed = [l for l in srv.stderr().splitlines() if 'replay' in l]
        print(f'# {replayed[0][:200] if replayed else "no replay log line"}')
        acks, fatal = send_all(srv.ingest, [evs[i:i + 1000] for i in range(0, 5000, 1000)])
        check(f'{tag}: a resend after the restart is all duplicates',
              acks and (acks[-1].get('ok'), acks[-1].get('dup')) == (0, 5000), str(acks[-1:]))
    finally:
        if rpc:
            rpc.close()
        check(f'{tag}: SIGTERM exits 0', srv.stop() == 0)


def part_sigterm(bin_dir, tmp, rng):
    tag = 'SIGTERM while sending'
    data = os.path.join(tmp, 'sigterm')
    srv = Server(bin_dir, data).start()
    rpc = None
    try:
        streams = make_streams(rng, 2, 25000, 'S')
        model = Model()
        for s in streams:
            model.apply_values(s)
        producers = [Producer(srv.ingest, random.Random(rng.random()), s, 0.005) for s in streams]
        idle_half = IngestConn(srv.ingest)
        idle_half.send(msgpack.packb({'post': 'half', 'actor': 'h', 'ts': 1})[:-4])  # half a value, then silence
        idle_query = socket.create_connection(('127.0.0.1', srv.query), timeout=10)
        run_producers_until(srv, producers, 0.3)
        t0 = time.time()
        st = srv.stop(signal.SIGTERM, timeout=30)
        idle_half.close()
        idle_query.close()
        check(f'{tag}: exit status 0 ({time.time() - t0:.2f} s)', st == 0, f'status {st}; stderr {srv.stderr()[-500:]}')
        for p in producers:
            p.join(30)
            p.conn.close()
        prefixes = [p.acked() for p in producers]
        check(f'{tag}: events were acked before the stop ({sum(prefixes)} of {sum(map(len, streams))})',
              sum(prefixes) > 0, str(prefixes))
        if all(t == len(s) for t, s in zip(prefixes, streams)):
            print(f'# {tag}: the server drained every producer to the end before exiting')
        probs = [x for p in producers for x in ack_problems(p.conn.acks(), len(p.events))]
        check(f'{tag}: acks well-formed', not probs, str(probs[:4]))
        srv.start()
        results = resend_all(srv, rng, streams, prefixes)
        bad = []
        for k, (s, t) in enumerate(zip(streams, prefixes)):
            first, _ = results[k] or ({}, {})
            valid, rej = split_counts(s[:t])
            if (first.get('ok'), first.get('dup'), first.get('rej')) != (0, valid, rej):
                bad.append(f'producer {k}: resent its {t} acked events, got {first}, want ok 0 dup {valid} rej {rej}')
        check(f'{tag}: every acked event is there after restart (comes back as a duplicate)', not bad, '; '.join(bad))
        rpc = Rpc(srv.query)
        err, st = rpc.call('stats')
        bad = graph_stats_problems(model, st)
        check(f'{tag}: after the resend, stats = the full stream\'s', not bad, str(bad))
        bad = sample_problems(model, rpc, rng, 20)
        check(f'{tag}: sampled cascades and actors = the full stream\'s', not bad, '; '.join(bad[:6]))
        cuts = cut_lines(srv)
        check(f'{tag}: a clean stop leaves nothing to cut at the next start', not cuts, str(cuts[:2]))
    finally:
        if rpc:
            rpc.close()
        check(f'{tag}: final SIGTERM exits 0', srv.stop() == 0)


def body(run):
    bin_dir, tmp = run.bin_dir, run.tmp
    seed = int(os.environ.get('CASCADE_TEST_SEED', '1'))
    rng = random.Random(seed)
    print(f'# seed {seed} (CASCADE_TEST_SEED)')
    for fsync in ('everysec', 'always', 'no'):
        part_kill(bin_dir, tmp, rng, fsync)
    for mode in ('torn', 'corrupt', 'garbage', 'new-segment'):
        part_tail(bin_dir, tmp, rng, mode)
    part_conflicts(bin_dir, tmp, rng)
    part_segments(bin_dir, tmp, rng)
    part_sigterm(bin_dir, tmp, rng)


def main():
    harness.run_main('cascaded-test-durability-', body, server=False)


if __name__ == '__main__':
    main()
