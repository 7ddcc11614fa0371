"""Timestamps out of range (DESIGN §2 `bad_ts`) against the real server: with --retention 30d and
5,000 events of the last days, one event whose ts is in microseconds (or negative, or at the ends
of int64) is rejected as bad_ts, named in the ack's `err`, counted in stats and /metrics, and
changes nothing: every post stays, also after a restart (replay of the WAL, then of a snapshot),
and `top_cascades by=growth` keeps answering from the real newest event. An event just inside
--max-future-ms passes; with --max-future-ms 0 the future is not checked (negatives still are);
the check is ingest's: what the WAL holds is replayed whatever the bound is now.
argv: the directory of cascaded, the tools dir."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msgpack  # noqa: E402

import harness  # noqa: E402
from harness import IngestConn, Rpc, Server, check, err_entries, metric, stats_of  # noqa: E402

N = 5000
DAY = 86_400_000


def now_ms():
    return int(time.time() * 1000)


def send(srv, events):
    c = IngestConn(srv.ingest)
    c.send(b''.join(msgpack.packb(e) for e in events))
    ack = c.wait_total(len(events))
    acks = c.acks()
    c.close()
    return ack, acks


def state(srv, posts):
    """What must not move: counts, the cut, newest_ts, growth, and a sample of posts' cascades."""
    r = Rpc(srv.query)
    try:
        _, st = r.call('stats')
        _, growth = r.call('top_cascades', by='growth', window_ms=DAY, limit=5)
        found = 0
        for p in posts:
            err, _ = r.call('cascade', post=p)
            found += err is None
        keys = ('posts', 'cascades', 'evicted_posts', 'evicted_cascades', 'newest_ts', 'retained_from_ts')
        return {k: st.get(k) for k in keys}, [(c['root'], c['growth']) for c in growth or []], found
    finally:
        r.close()


def events(t0):
    """N events over the 4 days before t0: 500 cascades of 10 posts."""
    out = []
    for i in range(N):
        root = i - i % 10
        e = {'post': f'p{i}', 'actor': f'a{i % 97}', 'ts': t0 - 4 * DAY + i * (4 * DAY // N)}
        if i != root:
            e['parent'] = f'p{root}'
        out.append(e)
    return out


def check_bad_ts(srv, tmp):
    t0 = now_ms()
    evs = events(t0)
    ack, _ = send(srv, evs)
    check('5,000 events accepted', ack.get('ok') == N, str(ack))
    sample = [f'p{i}' for i in range(0, N, 97)] + ['p0', f'p{N - 1}']
    before = state(srv, sample)
    check('all posts there before', before[0]['posts'] == N and before[2] == len(sample), str(before))

    bad = [
        {'post': 'us', 'actor': 'x', 'ts': t0 * 1000},                # microseconds
        {'post': 'neg', 'actor': 'x', 'ts': -1},
        {'post': 'min', 'actor': 'x', 'ts': -(2 ** 63)},
        {'post': 'max', 'actor': 'x', 'ts': 2 ** 63 - 1},
        {'post': 'late', 'actor': 'x', 'ts': now_ms() + DAY + 60_000},  # past --max-future-ms
        {'post': 'p1', 'actor': 'x', 'ts': t0 * 1000},                # validation comes before dup
    ]
    ack, acks = send(srv, bad)
    errs = err_entries(acks)
    check('each out-of-range ts is rejected as bad_ts, named in err',
          ack.get('rej') == len(bad) and ack.get('ok') == 0 and ack.get('dup') == 0
          and {r for _, r in errs} == {'bad_ts'} and len(errs) == len(bad), f'{ack} {sorted(errs)}')
    st = stats_of(srv)
    check('stats count them under rejected_bad_ts', st.get('rejected_bad_ts') == len(bad)
          and st.get('rejected') == len(bad), str({k: v for k, v in st.items() if k.startswith('rej')}))
    check('/metrics counts them by reason',
          metric(srv, 'cascaded_events_total{outcome="rejected",reason="bad_ts"}') == len(bad))
    after = state(srv, sample)
    check('nothing moved: posts, cut, newest_ts, growth, every sampled cascade', after == before,
          f'{before} -> {after}')

    # the edges: 0 (1970) is a time, so is now + a little; in-range events still work
    ok = [{'post': 'zero', 'actor': 'x', 'ts': 0}, {'post': 'soon', 'actor': 'x', 'ts': now_ms() + DAY - 60_000}]
    ack, _ = send(srv, ok)
    check('ts 0 and now + a day - 1 min are accepted', ack.get('ok') == 2 and ack.get('rej') == 0, str(ack))

    srv.stop(signal.SIGKILL)  # the WAL is replayed, without any snapshot
    srv.start()
    st = stats_of(srv)
    r = Rpc(srv.query)
    found = sum(r.call('cascade', post=p)[0] is None for p in sample)
    err, _ = r.call('cascade', post='us')
    r.close()
    check('after kill -9 and replay: every post is there, the bad one is not',
          st.get('posts') == N + 1 and found == len(sample) and err is not None,
          f'posts={st.get("posts")} found={found} err={err}')
    check('SIGTERM exits 0 (snapshot on exit)', srv.stop() == 0)
    srv.start()
    st = stats_of(srv)
    r = Rpc(srv.query)
    found = sum(r.call('cascade', post=p)[0] is None for p in sample)
    r.close()
    # ts 0 is 30 days older than the newest event: retention evicted it, and only it
    check('after a snapshot restart: every post is there', st.get('posts') == N + 1
          and st.get('evicted_posts') == 1 and found == len(sample), str(st))


def check_no_future_check(bin_dir, tmp):
    srv = Server(bin_dir, os.path.join(tmp, 'nofuture'), '--max-future-ms', '0')
    try:
        srv.start()
        ack, acks = send(srv, [{'post': 'f', 'actor': 'x', 'ts': now_ms() + 365 * DAY},
                               {'post': 'n', 'actor': 'x', 'ts': -5}])
        check('--max-future-ms 0: the future passes, a negative ts is still bad_ts',
              ack.get('ok') == 1 and err_entries(acks) == {(1, 'bad_ts')}, f'{ack} {acks}')
        check('--max-future-ms 0: SIGTERM exits 0', srv.stop() == 0)
    finally:
        srv.kill()
    small = Server(bin_dir, os.path.join(tmp, 'small'), '--max-future-ms', '1000')
    try:
        small.start()
        ack, acks = send(small, [{'post': 'f', 'actor': 'x', 'ts': now_ms() + 60_000},
                                 {'post': 'g', 'actor': 'x', 'ts': now_ms() - 60_000}])
        check('--max-future-ms 1000: a minute ahead is bad_ts, a minute ago is fine',
              ack.get('ok') == 1 and err_entries(acks) == {(0, 'bad_ts')}, f'{ack} {acks}')
        small.stop()
    finally:
        small.kill()


def check_replay_takes_the_future(bin_dir, tmp):
    """The future check is ingest's: an event accepted 20 h ahead is replayed from the WAL by a
    server whose bound would now refuse it (as after the clock went back, or the flag changed)."""
    srv = Server(bin_dir, os.path.join(tmp, 'replay'), '--snapshot-on-exit', 'no')
    try:
        srv.start()
        ack, _ = send(srv, [{'post': 'ahead', 'actor': 'x', 'ts': now_ms() + 20 * 3_600_000}])
        check('an event 20 h ahead is accepted (within a day)', ack.get('ok') == 1, str(ack))
        srv.stop(signal.SIGKILL)
        srv.extra = ['--max-future-ms', '1000', '--snapshot-on-exit', 'no']
        srv.start()
        r = Rpc(srv.query)
        err, c = r.call('cascade', post='ahead')
        r.close()
        check('replayed from the WAL under --max-future-ms 1000: still there', err is None and c.get('size') == 1,
              f'{err} {c}')
        ack, acks = send(srv, [{'post': 'ahead2', 'actor': 'x', 'ts': now_ms() + 20 * 3_600_000}])
        check('while a new one as far ahead is bad_ts', err_entries(acks) == {(0, 'bad_ts')}, str(acks))
        check('SIGTERM exits 0 (replay)', srv.stop() == 0)
    finally:
        srv.kill()


def main():
    def after(run):
        check_no_future_check(run.bin_dir, run.tmp)
        check_replay_takes_the_future(run.bin_dir, run.tmp)
    harness.run_main('cascade-badts-', lambda run: check_bad_ts(run.srv, run.tmp), '--retention', '30d',
                     '--snapshot-interval', '0', after=after)


if __name__ == '__main__':
    main()
