#!/usr/bin/python3
"""Soak test of cascaded: rounds of producers, queries, snapshots, restarts and kill -9 on one data
dir, for a bounded time, checking after every round that the server holds exactly what a reference
model computed from the events says.

usage: /usr/bin/python3 tests/soak/soak.py BIN_DIR [--duration SECONDS] [--seed N] [--keep]

Each round: (re)start the server on the same data dir; 3 producers stream fresh events (trees split
across connections, resends, invalid events) while a query thread asks random questions (every
answer must be a result or a 404, never a 500 nor a dropped connection); mid-stream the round ends
with one of: kill -9, kill -9 right after a `snapshot` (when the server has that method), SIGTERM,
or a clean drain then kill -9. After the restart: every event acked before the end must be there
(posts >= acked distinct posts), then every producer resends its whole stream (all dup-safe) and
the server's stats and a sample of cascades and actors must equal the model of all events sent so
far. Ends with 'N passed, M failed'; exit 1 if any check failed. The server's stderr files are
scanned for sanitizer reports. Servers are stopped by PID; only loopback traffic.

With --retention DURATION the server evicts, and what it holds then depends on the order the
producers' events met (a sweep runs as the newest ts moves; an event for an evicted post is new
again), so there is no model to compare with. Each round's events lie a day of event time after
the last round's; after the restart every acked post at or after the cut (retained_from_ts) must
be there; then the round's streams are resent, the state is read (counts, the cut, the evicted
counters, the top cascades and a sample of cascades), and a second kill -9 or SIGTERM and restart
must give back exactly that state: a restart (snapshot + WAL) reproduces the live engine.
"""
import argparse
import os
import random
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import harness  # noqa: E402
from harness import Model, Rpc, ack_total, check, validate  # noqa: E402
from test_durability import (Producer, graph_stats_problems, make_streams, resend_all,  # noqa: E402
                             run_producers_until, sample_problems)

ENDINGS = ('kill', 'snapshot+kill', 'sigterm', 'drain+kill')


class Querier(threading.Thread):
    """Random queries until stopped; counts answers and remembers anything that is not a result
    or a 404 (an unknown id is fine: the producers are still sending)."""

    def __init__(self, port, rng, ids):
        super().__init__(daemon=True)
        self.port, self.rng, self.ids = port, rng, ids
        self.stop_flag, self.answers, self.bad = False, 0, []

    def ask(self, rpc):
        r = self.rng.random()
        post = self.rng.choice(self.ids) if self.ids else 'none'
        if r < 0.4:
            return rpc.call('cascade', post=post)
        if r < 0.6:
            return rpc.call('path', post=post)
        if r < 0.8:
            return rpc.call('top_cascades', by=self.rng.choice(['size', 'depth', 'growth', 'structural_virality']),
                            limit=10)
        if r < 0.9:
            return rpc.call('top_actors', by='reach', limit=10)
        return rpc.call('stats')

    def run(self):
        try:
            rpc = Rpc(self.port, timeout=10)
        except OSError:
            return
        try:
            while not self.stop_flag:
                err, _ = self.ask(rpc)
                self.answers += 1
                if err is not None and err.get('code') != 404:
                    self.bad.append(err)
        except (OSError, RuntimeError):
            pass  # the server was killed under it: expected at the end of a round
        finally:
            rpc.s.close()


def end_round(srv, how):
    """Ends the round the way `how` says; returns whether the snapshot method answered."""
    snap = None
    if how == 'snapshot+kill':
        rpc = Rpc(srv.query, timeout=60)
        err, res = rpc.call('snapshot')
        rpc.close()
        snap = err is None
        if err is not None and err.get('code') != 404:
            check(f'snapshot before kill answered ({err})', False, str(err))
    if how == 'sigterm':
        check('SIGTERM mid-stream exits 0', srv.stop(signal.SIGTERM) == 0)
    else:
        srv.stop(signal.SIGKILL)
    return snap


DAY_MS = 86_400_000
STATE_KEYS = ('posts', 'placeholders', 'cascades', 'edges', 'retained_from_ts', 'evicted_cascades', 'evicted_posts')


def shift_ts(streams, ms):
    seen = set()
    for st in streams:
        for e in st:
            if isinstance(e, dict) and isinstance(e.get('ts'), int) and id(e) not in seen:
                seen.add(id(e))
                e['ts'] += ms


def state_of(rpc, posts):
    """What a restart must reproduce: counts, the cut, the evicted counters, the top cascades by
    size and the given posts' cascades (None for an unknown one)."""
    err, st = rpc.call('stats')
    out = {'stats': {k: st.get(k) for k in STATE_KEYS} if err is None else err}
    out['top'] = rpc.call('top_cascades', by='size', limit=20)
    for p in posts:
        out[p] = rpc.call('cascade', post=p)
    return out


def duration_ms(text):
    """cascaded's --retention syntax: a number with s, m, h or d (seconds when bare)."""
    unit = {'s': 1000, 'm': 60_000, 'h': 3_600_000, 'd': DAY_MS}.get(text[-1:], None)
    return int(text[:-1]) * unit if unit else int(text) * 1000


def retention_round(srv, rng, r, tag, streams, acked, retention_ms):
    """After the restart: acked posts at or after the cut are there; then the round's streams are
    resent and a second restart must give back exactly the state read before it."""
    rpc = Rpc(srv.query, timeout=60)
    try:
        err, st = rpc.call('stats')
        cut = st.get('retained_from_ts') or 0 if err is None else 0
        kept = {p for p, ts in acked.items() if ts >= cut}
        check(f'{tag}: after restart every acked post at or after the cut is there ({len(kept)} of {len(acked)})',
              err is None and all_there(rpc, kept, rng), f'{err}')
        resend_all(srv, rng, streams, [0] * len(streams))
        err, st = rpc.call('stats')
        cut = st.get('retained_from_ts') or 0
        pool = sorted(p for p, ts in acked.items() if ts >= cut)
        sample = rng.sample(pool, min(60, len(pool)))
        before = state_of(rpc, sample)
    finally:
        rpc.close()
    how = rng.choice(['kill', 'sigterm'])
    if how == 'kill':
        srv.stop(signal.SIGKILL)
    else:
        check(f'{tag}: SIGTERM exits 0', srv.stop(signal.SIGTERM) == 0)
    srv.start(timeout=120)
    rpc = Rpc(srv.query, timeout=60)
    try:
        after = state_of(rpc, sample)
    finally:
        rpc.close()
    diff = [k for k in before if before[k] != after[k]]
    found = sum(1 for p in sample if before[p][0] is None)
    check(f'{tag}: the state read holds the sampled cascades ({found} of {len(sample)}) and the top ones',
          found == len(sample) and before['top'][0] is None and before['top'][1], str(before['top'])[:300])
    if (r + 1) * DAY_MS > 2 * retention_ms:  # the newest events are past the first ones' retention
        check(f'{tag}: evictions happened by now ({before["stats"].get("evicted_posts")} posts)',
              (before['stats'].get('evicted_posts') or 0) > 0, str(before['stats']))
    check(f'{tag}: {how} and restart give back the same state ({before["stats"].get("posts")} posts, '
          f'{len(sample)} cascades)', not diff,
          '; '.join(f'{k}: {before[k]!r:.300} -> {after[k]!r:.300}' for k in diff[:4]))


def one_round(srv, rng, r, model, streams_so_far, how, retention=None):
    tag = f'round {r} ({how})'
    # under retention a round's integer ids must be its own: an id already held (from an older
    # round) is a duplicate keeping the older post's ts, which is evicted before this round's
    streams = make_streams(rng, 3, rng.randrange(4000, 12000), f'R{r}x',
                           7_000_000 + (r * 100_000 if retention else 0))
    if retention:
        shift_ts(streams, r * DAY_MS)
    for s in streams:
        model.apply_values(s)
    streams_so_far.append(streams)
    ids = [e['post'] for s in streams for e in s if isinstance(e, dict) and isinstance(e.get('post'), str)]
    producers = [Producer(srv.ingest, random.Random(rng.random()), s, 0.003) for s in streams]
    querier = Querier(srv.query, random.Random(rng.random()), ids[:5000])
    querier.start()
    run_producers_until(srv, producers, 1.0 if how == 'drain+kill' else rng.uniform(0.2, 0.8), timeout=60)
    snap = end_round(srv, how)
    querier.stop_flag = True
    for p in producers:
        p.join(30)
        p.conn.close()
    querier.join(10)
    check(f'{tag}: queries during the round answered ({querier.answers}), none failed', not querier.bad,
          str(querier.bad[:3]))
    prefixes = [ack_total(p.conn.last()) for p in producers]
    acked = {}
    for s, t in zip(streams, prefixes):
        for e in s[:t]:
            err, ev = validate(e)
            if err is None:
                acked[ev['post']] = max(ev['ts'], acked.get(ev['post'], ev['ts']))
    srv.start(timeout=120)
    if retention:
        retention_round(srv, rng, r, tag, streams, acked, duration_ms(retention))
        return snap
    rpc = Rpc(srv.query, timeout=60)
    try:
        err, st = rpc.call('stats')
        check(f'{tag}: after restart every acked post of the round is there ({len(acked)})',
              err is None and all_there(rpc, acked, rng), f'{err}')
        # everything sent so far, again: the state must converge to the model of all of it
        for old in streams_so_far:
            resend_all(srv, rng, old, [0] * len(old))
        err, st = rpc.call('stats')
        bad = graph_stats_problems(model, st)
        check(f'{tag}: stats equal the model of every event sent ({model.stats()["posts"]} posts)', not bad,
              str(bad))
        bad = sample_problems(model, rpc, rng, 25)
        check(f'{tag}: sampled cascades and actors equal the model', not bad, '; '.join(bad[:6]))
    finally:
        rpc.close()
    return snap


def all_there(rpc, posts, rng, n=300):
    """A sample of the acked posts, each asked for by id (every one must be known)."""
    sample = rng.sample(sorted(posts), min(n, len(posts)))
    for p in sample:
        err, _ = rpc.call('path', post=p)
        if err is not None:
            print(f'# acked post {p} missing after restart: {err}')
            return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('bin_dir')
    ap.add_argument('--duration', type=float, default=120, help='seconds of rounds (default 120)')
    ap.add_argument('--seed', type=int, default=int(os.environ.get('CASCADE_TEST_SEED', '1')))
    ap.add_argument('--keep', action='store_true', help='keep the data dir and server logs')
    ap.add_argument('--retention', metavar='DURATION',
                    help="run the server with --retention DURATION (e.g. 6h) and check restarts against "
                         "the server's own state instead of a model (see above)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    print(f'# seed {a.seed}, {a.duration:.0f} s' + (f', --retention {a.retention}' if a.retention else ''))
    extra = ['--retention', a.retention] if a.retention else []

    def body(run):
        model, sent, snaps, r = Model(), [], 0, 0
        deadline = time.time() + a.duration
        while time.time() < deadline:
            how = ENDINGS[r % len(ENDINGS)] if r < len(ENDINGS) else rng.choice(ENDINGS)
            snaps += bool(one_round(run.srv, rng, r, model, sent, how, a.retention))
            r += 1
        check(f'{r} rounds ran ({snaps} with a snapshot)', r >= 1)
    harness.run_main('cascaded-soak-', body, *extra, bin_dir=a.bin_dir, keep=a.keep)


if __name__ == '__main__':
    main()
