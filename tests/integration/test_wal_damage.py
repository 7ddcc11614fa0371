#!/usr/bin/python3
"""A damaged WAL never costs an intact record, and nothing about it is silent (issue 16, 1).

usage: /usr/bin/python3 test_wal_damage.py BIN_DIR TOOLS_DIR

100 k events (cascade-gen) in 1 MiB segments; the WAL is parsed here, record by record, so that
each case knows which posts the damage touches. Cases, each on a fresh copy of the data dir, at
random offsets in random segments (seed printed; CASCADE_TEST_SEED repeats a run): bit flips
(in records and in a segment header), truncation mid-record and to 0 bytes, a deleted segment,
and every segment behind a snapshot deleted. For each:
  - start-up either starts (a torn tail: damage with nothing intact after it, in the newest
    segment) with a wal_tail_cut line naming the file and offset and the cut bytes kept in
    DATA/wal-damaged/, or refuses (exit 1) with a message naming the file and the byte offset
    (or the missing segment) and what to do, having changed no file;
  - `cascade-wal check` reports it (exit 1), `cascade-wal repair` sets it aside (exit 0), a
    second check finds nothing;
  - the server then starts with every event except those of the damaged records: stats posts,
    then every surviving event resent comes back `dup` and every lost one `ok` (event by event,
    as sets), and sampled `cascade` queries answer.
The snapshot case also starts once with --allow-history-loss (it must log history_lost).
"""
import harness
from harness import *  # noqa: F401,F403

EVENTS = 100_000
SEG_HDR = 16


def parse_segment(b):
    """[(start, end, [post ids])] of a clean segment's records (store/wal_record.h)."""
    recs, off = [], SEG_HDR
    while off + 8 <= len(b):
        word = int.from_bytes(b[off:off + 4], 'little')
        ln = word & 0xFFFFFF
        if word >> 24 != 0xC5 or off + 8 + ln > len(b):
            raise ValueError(f'not a clean segment at {off}')
        pl = b[off + 8:off + 8 + ln]
        count, p, posts = int.from_bytes(pl[:4], 'little'), 4, []

        def field():
            nonlocal p
            v = pl[p]
            p += 1
            if v & 0x80:
                v = (v & 0x7F) | pl[p] << 7
                p += 1
            s = pl[p:p + v]
            p += v
            return s
        for _ in range(count):
            flags = pl[p]
            p += 9
            post = field()
            field()
            field()
            if flags & 0x10:
                field()
            if flags & 0x20:
                field()
            posts.append(post.decode())
        recs.append((off, off + 8 + ln, posts))
        off += 8 + ln
    return recs


def segments(data):
    return sorted(glob.glob(os.path.join(data, 'wal', '*.wal')))


def sizes(data):
    return {os.path.basename(s): os.path.getsize(s) for s in segments(data)}


def write_events(path, events):
    with open(path, 'wb') as f:
        for e in events:
            f.write(msgpack.packb(e))


def replay(tools, port, path):
    r = subprocess.run([os.path.join(tools, 'cascade-replay'), '--port', str(port), '--quiet', path],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r'ok (\d+) dup (\d+) rej (\d+)', r.stdout)
    return (int(m[1]), int(m[2]), int(m[3])) if m else (None, r.stdout + r.stderr)


class Case:
    def __init__(self, t, tag, kind, seg=None, where=None):
        self.t, self.tag, self.kind, self.seg, self.where = t, tag, kind, seg, where


class T:
    """The shared state: the events, the pristine data dir and its parsed WAL."""

    def __init__(self, bin_dir, tools, tmp, rng):
        self.bin, self.tools, self.tmp, self.rng = bin_dir, tools, tmp, rng
        self.dump = os.path.join(tmp, 'events.msgpack')
        subprocess.run([os.path.join(tools, 'cascade-gen'), '--events', str(EVENTS), '--seed',
                        str(rng.randrange(1, 1 << 30)), '--out', self.dump], check=True, stdout=subprocess.DEVNULL)
        with open(self.dump, 'rb') as f:
            self.events = list(msgpack.Unpacker(f, raw=False))
        self.by_post = {str(e['post']): e for e in self.events}
        self.pristine = os.path.join(tmp, 'pristine')
        srv = Server(bin_dir, self.pristine, '--wal-segment-mb', '1', '--snapshot-on-exit', 'no').start()
        got = replay(tools, srv.ingest, self.dump)
        check(f'{EVENTS} events acked into 1 MiB segments', got[:2] == (EVENTS, 0), str(got))
        r = subprocess.run([os.path.join(tools, 'cascade-wal'), 'check', self.pristine], capture_output=True,
                           text=True, timeout=60)
        check('cascade-wal refuses a running server\'s WAL (exit 3, "in use")',
              r.returncode == 3 and 'in use' in r.stderr, f'{r.returncode} {r.stdout} {r.stderr}')
        check('pristine server: SIGTERM exits 0', srv.stop() == 0)
        self.recs = {}
        for s in segments(self.pristine):
            with open(s, 'rb') as f:
                self.recs[os.path.basename(s)] = parse_segment(f.read())
        n = sum(len(p) for rs in self.recs.values() for _, _, p in rs)
        check(f'the WAL parsed here holds every event ({len(self.recs)} segments, {n} events)', n == EVENTS)
        self.names = sorted(self.recs)


def start(srv, *extra):
    """Starts srv (extra args for this start only): (True, '') or (False, stderr)."""
    keep = srv.extra
    srv.extra = keep + list(extra)
    try:
        srv.start()
        return True, ''
    except RuntimeError:
        return False, srv.stderr()
    finally:
        srv.extra = keep


def verify(t, srv, tag, lost):
    """The server holds every event but the lost posts: stats, then each set resent."""
    rpc = Rpc(srv.query)
    try:
        err, st = rpc.call('stats')
        want = EVENTS - len(lost)
        check(f'{tag}: posts = {want} ({EVENTS} - {len(lost)} in the damaged records)',
              isinstance(st, dict) and st.get('posts') == want, f'{err} {(st or {}).get("posts")}')
        present = [e for e in t.events if str(e['post']) not in lost]
        bad = []
        for e in t.rng.sample(present, 30):
            err, res = rpc.call('cascade', post=e['post'])
            if err is not None:
                bad.append(f'{e["post"]}: {err}')
        check(f'{tag}: sampled cascade queries answer', not bad, '; '.join(bad[:4]))
    finally:
        rpc.close()
    path = os.path.join(t.tmp, 'present.msgpack')
    write_events(path, present)
    got = replay(t.tools, srv.ingest, path)
    check(f'{tag}: every surviving event resent is a duplicate ({got})', got == (0, len(present), 0))
    if lost:
        write_events(path, [t.by_post[p] for p in sorted(lost)])
        got = replay(t.tools, srv.ingest, path)
        check(f'{tag}: every lost event resent is new ({got})', got == (len(lost), 0, 0))


def tool(t, cmd, data):
    r = subprocess.run([os.path.join(t.tools, 'cascade-wal'), cmd, data], capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stdout + r.stderr


def run_case(t, c):
    tag = c.tag
    data = os.path.join(t.tmp, tag.replace(' ', '-'))
    shutil.copytree(t.pristine, data)
    newest = t.names[-1]
    name = c.seg
    path = os.path.join(data, 'wal', name) if name else None
    recs = t.recs.get(name, [])
    lost, torn, offset = set(), False, None
    if c.kind == 'flip':
        o = c.where
        with open(path, 'r+b') as f:
            f.seek(o)
            b = f.read(1)
            f.seek(o)
            f.write(bytes([b[0] ^ (1 << t.rng.randrange(8))]))
        if o >= SEG_HDR:
            i = next(k for k, r in enumerate(recs) if r[0] <= o < r[1])
            lost = set(recs[i][2])
            torn = name == newest and i == len(recs) - 1
            offset = recs[i][0]
        else:
            offset = 0  # the header: every record after it is intact
        what = f'flipped a bit of byte {o} of {name}'
    elif c.kind == 'truncate':
        o = c.where
        os.truncate(path, o)
        lost = {p for s, e, ps in recs if e > o for p in ps}
        torn = name == newest
        offset = max([e for s, e, ps in recs if e <= o], default=SEG_HDR) if o >= SEG_HDR else 0
        what = f'truncated {name} to {o} bytes'
    elif c.kind == 'delete':
        os.unlink(path)
        lost = {p for _, _, ps in recs for p in ps}
        what = f'deleted {name}'
    print(f'# {tag}: {what}; {len(lost)} posts in the damaged records; '
          f'{"a torn tail" if torn else "not a torn tail"}', flush=True)
    before = sizes(data)
    srv = Server(t.bin, data, '--wal-segment-mb', '1', '--snapshot-on-exit', 'no')
    try:
        ok, err = start(srv)
        if torn:
            check(f'{tag}: a torn tail: the server starts', ok, err[-600:])
            if not ok:
                return
            cut = [l for l in srv.stderr().splitlines() if 'wal_tail_cut' in l]
            check(f'{tag}: a wal_tail_cut line names the file and offset',
                  cut and name in cut[0] and f'offset={offset}' in cut[0], str(cut)[:600])
            kept = glob.glob(os.path.join(data, 'wal-damaged', f'{name}.at-{offset}.damaged'))
            check(f'{tag}: the cut bytes are kept in DATA/wal-damaged/', kept or not lost,
                  str(os.listdir(data)))
            verify(t, srv, tag, lost)
            check(f'{tag}: SIGTERM exits 0', srv.stop() == 0)
            return
        check(f'{tag}: start-up refuses (exit 1)', not ok and srv.p.returncode == 1,
              f'started={ok} rc={srv.p.returncode} {srv.stderr()[-600:]}')
        if ok:
            srv.stop()
            return
        msg = [l for l in err.splitlines() if 'cascaded:' in l]
        msg = msg[0] if msg else err[-600:]
        print(f'# {msg[:400]}')
        if c.kind == 'delete':
            check(f'{tag}: the message names the missing file and what to do',
                  name in msg and '--allow-history-loss' in msg, msg)
        else:
            check(f'{tag}: the message names the file, the offset and what to do',
                  name in msg and f'byte offset {offset} ' in msg and 'cascade-wal repair' in msg, msg)
        check(f'{tag}: the refused start changed no WAL file', sizes(data) == before,
              f'{before} -> {sizes(data)}')
        rc, out = tool(t, 'check', data)
        check(f'{tag}: cascade-wal check exits 1 naming {name}', rc == 1 and name in out, f'{rc} {out[-600:]}')
        rc, out = tool(t, 'repair', data)
        check(f'{tag}: cascade-wal repair exits 0', rc == 0, f'{rc} {out[-600:]}')
        print('# ' + out.strip().replace('\n', '\n# ')[:800])
        if c.kind != 'delete':
            kept = glob.glob(os.path.join(data, 'wal-damaged', f'{name}.at-{offset}.damaged'))
            check(f'{tag}: the damaged bytes are kept in DATA/wal-damaged/', kept or c.where == 0,
                  str(os.listdir(os.path.join(data, 'wal-damaged')) if os.path.isdir(os.path.join(data, 'wal-damaged')) else 'no dir'))
        rc, out = tool(t, 'check', data)
        check(f'{tag}: then cascade-wal check finds nothing (exit 0)', rc == 0, f'{rc} {out[-400:]}')
        ok, err = start(srv)
        check(f'{tag}: after the repair the server starts', ok, err[-600:])
        if ok:
            verify(t, srv, tag, lost)
            check(f'{tag}: SIGTERM exits 0', srv.stop() == 0)
    finally:
        srv.kill()
        shutil.rmtree(data, ignore_errors=True)


def snapshot_case(t):
    """Half the events, a snapshot, the other half; then every WAL segment from the snapshot's
    on is deleted: its events after the snapshot exist nowhere else."""
    tag = 'segments behind a snapshot deleted'
    data = os.path.join(t.tmp, 'snap')
    srv = Server(t.bin, data, '--wal-segment-mb', '1', '--snapshot-on-exit', 'no')
    half = EVENTS // 2
    try:
        srv.start()
        first, second = os.path.join(t.tmp, 'first.msgpack'), os.path.join(t.tmp, 'second.msgpack')
        write_events(first, t.events[:half])
        write_events(second, t.events[half:])
        replay(t.tools, srv.ingest, first)
        rpc = Rpc(srv.query)
        err, res = rpc.call('snapshot')
        rpc.close()
        check(f'{tag}: a snapshot of the first half', err is None and isinstance(res, dict), f'{err} {res}')
        replay(t.tools, srv.ingest, second)
        check(f'{tag}: SIGTERM exits 0', srv.stop() == 0)
        snap = [f for f in os.listdir(os.path.join(data, 'snapshots')) if f.endswith('.snap')]
        seq = int(re.match(r'snap-(\d+)-', snap[0])[1])
        gone = [s for s in segments(data) if int(os.path.basename(s)[:20]) >= seq]
        for s in gone:
            os.unlink(s)
        print(f'# {tag}: snapshot {snap[0]}; deleted {len(gone)} segments from {seq} on')
        lost = {str(e['post']) for e in t.events[half:]}
        ok, err = start(srv)
        check(f'{tag}: start-up refuses (exit 1)', not ok and srv.p.returncode == 1, srv.stderr()[-600:])
        if ok:
            srv.stop()
            return
        msg = ([l for l in err.splitlines() if 'cascaded:' in l] or [err[-600:]])[0]
        print(f'# {msg[:400]}')
        check(f'{tag}: the message names the snapshot\'s segment and --allow-history-loss',
              f'{seq:020d}.wal' in msg and '--allow-history-loss' in msg, msg)
        rc, out = tool(t, 'check', data)
        check(f'{tag}: cascade-wal check exits 1 naming the missing segment', rc == 1 and f'{seq:020d}.wal' in out,
              f'{rc} {out[-400:]}')
        saved = data + '.copy'
        shutil.copytree(data, saved)
        ok, err = start(srv, '--allow-history-loss')
        check(f'{tag}: with --allow-history-loss it starts', ok, err[-600:])
        if ok:
            check(f'{tag}: and logs history_lost', 'history_lost' in srv.stderr(), srv.stderr()[-600:])
            verify(t, srv, tag + ' (--allow-history-loss)', lost)
            check(f'{tag}: SIGTERM exits 0', srv.stop() == 0)
        shutil.rmtree(data)
        os.rename(saved, data)
        rc, out = tool(t, 'repair', data)
        check(f'{tag}: cascade-wal repair exits 0', rc == 0, f'{rc} {out[-400:]}')
        ok, err = start(srv)
        check(f'{tag}: after the repair the server starts', ok, err[-600:])
        if ok:
            verify(t, srv, tag + ' (repaired)', lost)
            check(f'{tag}: SIGTERM exits 0 after the repair', srv.stop() == 0)
    finally:
        srv.kill()


def cases(t):
    rng, names = t.rng, t.names
    out = []
    mid = names[1:-1] or names
    for k in range(3):  # bit flips in records: any segment, any record
        name = rng.choice(names if k else mid)
        size = os.path.getsize(os.path.join(t.pristine, 'wal', name))
        out.append(Case(t, f'bit flip {k}', 'flip', name, rng.randrange(SEG_HDR, size)))
    out.append(Case(t, 'bit flip in a header', 'flip', rng.choice(mid), rng.randrange(0, 8)))
    name = rng.choice(mid)
    recs = t.recs[name]
    s, e, _ = rng.choice(recs)
    out.append(Case(t, 'truncated mid-record', 'truncate', name, rng.randrange(s + 1, e)))
    out.append(Case(t, 'truncated to 0 bytes', 'truncate', rng.choice(mid), 0))
    name = names[-1]
    s, e, _ = t.recs[name][-1]
    out.append(Case(t, 'newest segment torn', 'truncate', name, rng.randrange(s + 1, e)))
    out.append(Case(t, 'deleted segment', 'delete', rng.choice(mid)))
    return out


def body(run):
    seed = int(os.environ.get('CASCADE_TEST_SEED', random.randrange(1, 1 << 31)))
    print(f'# seed {seed} (CASCADE_TEST_SEED={seed} repeats this run)', flush=True)
    rng = random.Random(seed)
    t0 = time.time()
    t = T(run.bin_dir, run.tools, run.tmp, rng)
    check('the pristine WAL has at least 4 segments', len(t.names) >= 4, str(t.names))
    for c in cases(t):
        try:
            run_case(t, c)
        except Exception as e:
            import traceback
            traceback.print_exc()
            check(f'{c.tag}: the case ran to its end', False, repr(e))
    snapshot_case(t)
    print(f'# {time.time() - t0:.1f} s (seed {seed})')


def main():
    harness.run_main('cascaded-test-waldamage-', body, server=False)


if __name__ == '__main__':
    main()
