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
"""
import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import harness  # noqa: E402
from harness import Model, Rpc, Server, ack_total, check, sanitizer_reports, validate  # noqa: E402
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


def one_round(srv, rng, r, model, streams_so_far, how):
    tag = f'round {r} ({how})'
    streams = make_streams(rng, 3, rng.randrange(4000, 12000), f'R{r}x')
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
    acked = set()
    for s, t in zip(streams, prefixes):
        acked |= {validate(e)[1]['post'] for e in s[:t] if validate(e)[0] is None}
    srv.start(timeout=120)
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
    a = ap.parse_args()
    rng = random.Random(a.seed)
    print(f'# seed {a.seed}, {a.duration:.0f} s')
    tmp = tempfile.mkdtemp(prefix='cascaded-soak-')
    srv = Server(a.bin_dir, os.path.join(tmp, 'data'))
    model, sent, snaps, r = Model(), [], 0, 0
    deadline = time.time() + a.duration
    try:
        srv.start()
        while time.time() < deadline:
            how = ENDINGS[r % len(ENDINGS)] if r < len(ENDINGS) else rng.choice(ENDINGS)
            snaps += bool(one_round(srv, rng, r, model, sent, how))
            r += 1
        check(f'{r} rounds ran ({snaps} with a snapshot)', r >= 1)
        check('final SIGTERM exits 0', srv.stop() == 0)
    except Exception as e:
        import traceback
        traceback.print_exc()
        check('the soak ran to its end', False, repr(e))
    finally:
        srv.kill()
        reports = sanitizer_reports([f'{srv.data}.stderr.{i}' for i in range(1, srv.starts + 1)])
        check('no sanitizer report in any server\'s stderr', not reports, '; '.join(reports[:5]))
        if harness.failed == 0 and not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f'# data dir and server stderr kept in {tmp}')
    print(f'{harness.passed} passed, {harness.failed} failed')
    sys.exit(1 if harness.failed else 0)


if __name__ == '__main__':
    main()
