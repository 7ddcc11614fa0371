#!/usr/bin/python3
"""A query that arrives while a batch is applied waits for one slice of it, not for the chunk
(issue 18: point-query p99 <= 1 ms under ingest).

usage: /usr/bin/python3 test_query_slices.py BIN_DIR [TOOLS_DIR]

With CASCADE_TEST_WAL_FAULTS=applyus=10000 every event the engine applies takes 10 ms longer (a
slow engine). The writer applies a batch in chunks (drains of its queue between them, at least
16 events each: 160 ms here) and, inside a chunk, in slices bounded by time (down to one event)
with the waiting queries answered between two slices. A first batch lets the slice shrink to
one event; then, while a 300-event batch is applied (3 s), point queries are asked one after
another: each waits for the slice in progress (~10 ms), so their median must stay far below the
shortest chunk. Before the slices, a query waited for the chunk in progress: 80 ms on average
at the shortest chunk, a second or more at the first ones. The queries see the batch applied in
part, a whole event at a time (accepted grows between them), and the batch is acked whole.
"""
import random
import statistics

import harness
from harness import *  # noqa: F401,F403

APPLY_US = 10000
CHUNK_MIN = 16  # writer.c APPLY_CHUNK_MIN
ARGS = ['--snapshot-interval', '0', '--analytics-interval', '0', '--snapshot-on-exit', 'no']


def body(run):
    srv = run.srv
    check('the server says applying is slowed', f'apply_us={APPLY_US}' in srv.stderr())
    rng = random.Random(18)
    warm = [e for t in gen_forest(rng, 150, 'warm')[0] for e in t]
    acks, fatal = send_all(srv.ingest, [warm], timeout=60)
    check('the first batch is acked (the slice has shrunk to one event by its end)',
          fatal is None and acks and acks[-1].get('ok') == len(warm), repr(acks[-1:]))
    rpc = Rpc(srv.query)
    root = warm[0]['post']
    before = stats_of(srv).get('accepted')
    evs = [e for t in gen_forest(rng, 300, 'slow')[0] for e in t]
    c = IngestConn(srv.ingest, timeout=60)
    t0 = time.monotonic()
    c.send(pack([evs]))
    time.sleep(0.25)  # logged, and being applied for ~3 s more
    times, seen = [], []
    for _ in range(20):
        time.sleep(0.02)  # spread over a few batches of the loop's (not all in a gap between two)
        asked = time.monotonic()
        err, res = rpc.call('cascade', post=root)
        times.append((time.monotonic() - asked) * 1000)
        check('a query during the apply is answered', err is None and res, repr(err))
        err, res = rpc.call('stats')
        seen.append(res.get('accepted') if res else None)
    during = (time.monotonic() - t0) * 1000
    check(f'the queries came while the batch was applied ({during:.0f} ms of {len(evs) * APPLY_US / 1000:.0f})',
          during < len(evs) * APPLY_US / 1000 * 0.8)
    med = statistics.median(times)
    bound = CHUNK_MIN * APPLY_US / 1000 / 4
    check(f'queries wait for a slice, not a chunk: median {med:.1f} ms < {bound:.0f} ms '
          f'(a quarter of the shortest chunk)', med < bound, repr([round(x, 1) for x in times]))
    chunk = CHUNK_MIN * APPLY_US / 1000
    check(f'no query waited as long as the shortest chunk: longest {max(times):.1f} ms < {chunk:.0f} ms',
          max(times) < chunk, repr([round(x, 1) for x in times]))
    check('the queries saw the batch applied in part, more of it each time (whole events)',
          all(s is not None for s in seen) and before < seen[0] and seen[-1] < before + len(evs)
          and seen == sorted(seen) and len(set(seen)) > len(seen) // 2, repr((before, seen)))
    last = c.wait_total(len(evs), 60)
    c.close()
    check('the batch is acked whole', last.get('ok') == len(evs), repr(last))
    st = stats_of(srv)
    check('every event applied once', st.get('accepted') == before + len(evs), repr(st.get('accepted')))
    check('stats still shows the memory figures', st.get('memory_rss', 0) > 0 and st.get('memory_allocated', 0) > 0,
          f'{st.get("memory_rss")} {st.get("memory_allocated")}')
    print(f'# queries during the apply: {", ".join(f"{x:.1f}" for x in times)} ms; accepted seen {seen}')
    rpc.close()


if __name__ == '__main__':
    os.environ['CASCADE_TEST_WAL_FAULTS'] = f'applyus={APPLY_US}'
    harness.run_main('cascade-query-slices-', body, *ARGS)
