#!/usr/bin/python3
"""Integration test of cascaded's ingest port (DESIGN §2, §4) through the real server.

usage: /usr/bin/python3 test_ingest.py BIN_DIR      (BIN_DIR holds the built `cascaded`)

Starts cascaded on free loopback ports with temporary data dirs, feeds it event streams and holds
every ack and every query answer against a model computed here from the same events (DESIGN §2:
validation, duplicates, late parents under placeholders, cycles; §3: the metrics, structural
virality by all-pairs BFS). Parts:
  known     a hand-built set (several cascades, late parents, duplicates, int ids, every rejection
            reason, unknown keys, pages), as single maps and arrays mixed; acks, err, stats,
            every cascade and actor;
  err       the err list names the right events and reasons, never more than 8;
  split     a small stream sent in two pieces, split at every byte boundary;
  malformed bytes that are not msgpack mid-stream, and hostile headers (array32/map32/str32/bin32
            claiming gigabytes): fatal with the byte offset, close, nothing else disturbed;
  big       50k generated events in random chunk sizes;
  parallel  16 connections at once, disjoint streams with cross-connection parents/duplicates;
  slow      a producer sending one byte every few ms does not hold up a fast one;
  abrupt    EOF mid-value, a producer that never reads its acks, hundreds of connections ended
            with RST, half values or fatal errors (no descriptor leak).
Prints one line per check and ends with 'N passed, M failed'; exit status 1 if any failed.
Needs Debian's python3-msgpack and nothing else; servers are stopped by PID at the end.
"""
import harness
from harness import *  # noqa: F401,F403 (the shared helpers)

def known_events():
    """(value, expected outcome) in stream order; a list value is sent as one msgpack array."""
    big_ok = dict(post='B' * 256, actor='Z' * 256, ts=1, content='c' * 2048, label='l' * 64, parent=None)
    singles1 = [
        ({'post': 'r1', 'actor': 'alice', 'ts': 1000, 'content': 'http://x/1', 'label': 'false'}, 'ok'),
        ({'post': 'r1c1', 'actor': 'bob', 'ts': 1100, 'parent': 'r1'}, 'ok'),
        ({'post': 'r1c3', 'actor': 'dan', 'ts': 1300, 'parent': 'r1c2'}, 'ok'),  # parent arrives late
        ({'post': 'r1c2', 'actor': 'carol', 'ts': 1200, 'parent': 'r1c1', 'kind': 'quote'}, 'ok'),
        ({'post': 'r1c1', 'actor': 'bob', 'ts': 1100, 'parent': 'r1'}, 'dup'),
        ({'post': 'r1c1', 'actor': 'mallory', 'ts': 1, 'parent': 'elsewhere'}, 'dup'),  # altered resend: ignored
        ({'post': 101, 'actor': 'erin', 'ts': 1400, 'parent': 'r1'}, 'ok'),  # integer id
        ({'post': '101', 'actor': 'erin', 'ts': 1400, 'parent': 'r1'}, 'dup'),  # 101 ≡ "101"
    ]
    array1 = [
        ({'post': 'r1c4', 'actor': 102, 'ts': 1500, 'parent': 101, 'kind': 'reply'}, 'ok'),  # int actor and parent
        ({'post': 'r1c5', 'actor': 'alice', 'ts': 1600, 'parent': 'r1c4',
          'future_key': [1, 2, {'x': 1}], 'another': None, 'meta': {'lang': 'en'}}, 'ok'),  # unknown keys
        ({'post': 'p1', 'actor': 'news_page', 'actor_type': 'page', 'ts': 2000, 'content': 'claim-7',
          'label': 'true'}, 'ok'),
        ({'post': 'p1s1', 'actor': 'alice', 'ts': 2100, 'parent': 'p1', 'actor_type': 'account'}, 'ok'),
        ('a string inside an array', 'bad_type'),
        ({'post': 'p1s2', 'actor': 'bob', 'ts': 2200, 'parent': 'p1'}, 'ok'),
        ({'post': 'p1s3', 'actor': 'news_page', 'ts': 2300, 'parent': 'p1s1', 'actor_type': 'account'}, 'ok'),
        ({'post': 'p1s4', 'actor': 'page2', 'ts': 2400, 'parent': 'p1s3', 'actor_type': 'page'}, 'ok'),
    ]
    singles2 = [
        ({'post': 'o1', 'actor': 'frank', 'ts': 3000, 'parent': 'ghost'}, 'ok'),  # parent never arrives
        ({'post': 'o2', 'actor': 'grace', 'ts': 3100, 'parent': 'ghost'}, 'ok'),
        ({'post': 'o3', 'actor': 'frank', 'ts': 3200, 'parent': 'o1', 'label': 'mixed'}, 'ok'),
        # a late parent that has a parent of its own: its subtree joins r1's cascade
        ({'post': 'j2', 'actor': 'heidi', 'ts': 4200, 'parent': 'j1'}, 'ok'),
        ({'post': 'j3', 'actor': 'ivan', 'ts': 4300, 'parent': 'j2'}, 'ok'),
        ({'post': 'j4', 'actor': 'heidi', 'ts': 4400, 'parent': 'j2'}, 'ok'),
        ({'post': 'j1', 'actor': 'grace', 'ts': 4100, 'parent': 'r1c5'}, 'ok'),
        # cycles: x1 is a placeholder with x2 -> x3 below it
        ({'post': 'x2', 'actor': 'judy', 'ts': 5000, 'parent': 'x1'}, 'ok'),
        ({'post': 'x3', 'actor': 'judy', 'ts': 5100, 'parent': 'x2'}, 'ok'),
        ({'post': 'x1', 'actor': 'judy', 'ts': 4900, 'parent': 'x3'}, 'cycle'),
        ({'post': 'x1', 'actor': 'judy', 'ts': 4900, 'parent': 'x2'}, 'cycle'),
        ({'post': 'x1', 'actor': 'judy', 'ts': 4900}, 'ok'),
        # every rejection reason
        ({'actor': 'a', 'ts': 1}, 'missing_post'),
        ({'post': '', 'actor': 'a', 'ts': 1}, 'missing_post'),
        ({'post': None, 'actor': 'a', 'ts': 1}, 'missing_post'),
        ({'post': 'm1', 'ts': 1}, 'missing_actor'),
        ({'post': 'm2', 'actor': '', 'ts': 1}, 'missing_actor'),
        ({'post': 'm3', 'actor': 'a'}, 'missing_ts'),
        ({'post': 'm4', 'actor': 'a', 'ts': None}, 'missing_ts'),
        ({'post': 'm5', 'actor': 'a', 'ts': 'yesterday'}, 'bad_type'),
        ({'post': 'm6', 'actor': 'a', 'ts': 1.5}, 'bad_type'),
        ({'post': -5, 'actor': 'a', 'ts': 1}, 'bad_type'),
        ({'post': 'm7', 'actor': 'a', 'ts': 1, 'kind': 'retweet'}, 'bad_type'),
        ({'post': 'm8', 'actor': 'a', 'ts': 1, 'actor_type': 'bot'}, 'bad_type'),
        ({'post': 'm9', 'actor': 'a', 'ts': 1, 'parent': True}, 'bad_type'),
        ({'post': 'm10', 'actor': 'a', 'ts': 1, 'content': 123}, 'bad_type'),
        ({'post': 'm11', 'actor': ['a'], 'ts': 1}, 'bad_type'),
        ({'post': b'm12', 'actor': 'a', 'ts': 1}, 'bad_type'),  # bin is not a string
        (42, 'bad_type'),  # a bare integer in an event's place
        ({'post': 'x' * 257, 'actor': 'a', 'ts': 1}, 'too_long'),
        ({'post': 'm13', 'actor': 'y' * 257, 'ts': 1}, 'too_long'),
        ({'post': 'm14', 'actor': 'a', 'ts': 1, 'parent': 'p' * 257}, 'too_long'),
        ({'post': 'm15', 'actor': 'a', 'ts': 1, 'content': 'c' * 2049}, 'too_long'),
        ({'post': 'm16', 'actor': 'a', 'ts': 1, 'label': 'l' * 65}, 'too_long'),
        ({'post': 'm17', 'actor': 'a', 'ts': 1, 'parent': 'm17'}, 'self_parent'),
        ({'post': 77, 'actor': 'a', 'ts': 1, 'parent': '77'}, 'self_parent'),
        ({'post': 'm18', 'actor': 'a', 'ts': -1}, 'bad_ts'),
        ({'post': 'm19', 'actor': 'a', 'ts': 2 ** 63 - 1}, 'bad_ts'),  # past the clock + a day
        # the limits themselves are fine
        (big_ok, 'ok'),
        ({'post': 2 ** 64 - 1, 'actor': 0, 'ts': 0, 'parent': 'r1'}, 'ok'),
        ({'post': 'nil-parent', 'actor': 'kim', 'ts': 6000, 'parent': None, 'content': None, 'label': None,
          'kind': None, 'actor_type': None}, 'ok'),
    ]
    # stream: single maps, an array, an empty array, single maps, an array of the rejections
    rej_start = next(i for i, (v, _) in enumerate(singles2) if v == {'actor': 'a', 'ts': 1})
    values = [v for v, _ in singles1] + [[v for v, _ in array1]] + [[]] + \
             [v for v, _ in singles2[:rej_start]] + [[v for v, _ in singles2[rej_start:rej_start + 10]]] + \
             [v for v, _ in singles2[rej_start + 10:]]
    outcomes = [o for _, o in singles1 + array1 + singles2]
    return values, outcomes


def part_known(srv, model, rpc):
    values, expected = known_events()
    got_model = model.apply_values(values)
    check('known set: the test\'s model agrees with the hand-written outcomes', got_model == expected,
          f'{[(i, a, b) for i, (a, b) in enumerate(zip(got_model, expected)) if a != b]}')
    acks, fatal = send_all(srv.ingest, values)
    last = acks[-1] if acks else {}
    want = dict(ok=expected.count('ok'), dup=expected.count('dup'),
                rej=len(expected) - expected.count('ok') - expected.count('dup'))
    check(f'known set: final ack {want}', fatal is None and all(last.get(k) == v for k, v in want.items()),
          f'got {last} fatal={fatal!r}')
    check('known set: acks are cumulative and well-formed', not ack_problems(acks, len(expected)),
          str(ack_problems(acks, len(expected))[:5]))
    rejected = {(i, o) for i, o in enumerate(expected) if o not in ('ok', 'dup')}
    seen = err_entries(acks)
    check('known set: every err entry names a rejected event and its reason', seen and seen <= rejected,
          f'wrong: {sorted(seen - rejected)[:8]} (seen {len(seen)})')
    lastrej = max(rejected)
    check(f'known set: the last rejection {lastrej} is reported', lastrej in seen, f'seen {sorted(seen)}')
    # every cascade and every actor of the model
    d = model.derive()
    bad = []
    for root in d['cascades']:
        bad += compare_cascade(model, rpc, root)
    check(f'known set: all {len(d["cascades"])} cascades match the model (virality by all-pairs BFS)', not bad,
          '; '.join(bad[:10]))
    bad = []
    for name in d['actors']:
        bad += compare_actor(model, rpc, name)
    check(f'known set: all {len(d["actors"])} actors match the model', not bad, '; '.join(bad[:10]))
    # spot checks that do not depend on the model
    err, res = rpc.call('cascade', post='j3')
    check('cascade of j3 (its late parent j1 joined it to r1) has root r1',
          err is None and isinstance(res, dict) and res.get('root') == 'r1', f'{err} {res}')
    err, res = rpc.call('cascade', post=101)
    check('integer id 101 is the post "101"', err is None and isinstance(res, dict) and res.get('root') == 'r1',
          f'{err} {res}')
    err, res = rpc.call('cascade', post='ghost')
    check('a placeholder resolves to its cascade (missing = 1)',
          err is None and isinstance(res, dict) and res.get('root') == 'ghost' and res.get('missing') == 1,
          f'{err} {res}')
    err, res = rpc.call('actor', id='news_page')
    check('first explicit actor_type is kept (page)', err is None and isinstance(res, dict)
          and res.get('actor_type') == 'page', f'{err} {res}')
    err, res = rpc.call('actor', id='102')
    check('integer actor id 102 is the actor "102"', err is None and isinstance(res, dict) and res.get('posts') == 1,
          f'{err} {res}')
    for post in ('m1', 'x' * 257, 'r1c1-never-sent'):
        err, res = rpc.call('cascade', post=post)
        check(f'rejected/unknown post {post[:12]!r} is unknown to cascade', err is not None, f'got {res}')
    err, res = rpc.call('actor', id='mallory')
    check('an actor seen only in a duplicate is unknown', err is not None, f'got {res}')


def part_err(srv, model):
    # few rejections: every one of them must be named
    values = [{'post': 'e-0', 'actor': 'ea', 'ts': 1},
              {'post': 'e-1', 'ts': 1},
              [{'post': 'e-2', 'actor': 'eb', 'ts': 2, 'parent': 'e-0'}, 'junk', {'post': 'e-4', 'actor': 'ec'}],
              {'post': 'e-5', 'actor': 'ed', 'ts': 5, 'label': 'x' * 100},
              {'post': 'e-0', 'actor': 'ea', 'ts': 1}]
    outcomes = model.apply_values(values)
    want = {(i, o) for i, o in enumerate(outcomes) if o not in ('ok', 'dup')}
    acks, fatal = send_all(srv.ingest, values)
    got = err_entries(acks)
    check('err: names every rejection by index and reason when there are few',
          got == want == {(1, 'missing_actor'), (3, 'bad_type'), (4, 'missing_ts'), (5, 'too_long')},
          f'got {sorted(got)} want {sorted(want)}')
    last = acks[-1] if acks else {}
    check('err: counts (2 ok, 1 dup, 4 rej)', (last.get('ok'), last.get('dup'), last.get('rej')) == (2, 1, 4),
          f'got {last}')
    # many rejections in one value and across values: never more than 8, always right
    values = [[{'post': f'e2-{i}', 'ts': i} for i in range(30)]] + \
             [{'post': f'e2-x{i}', 'actor': 'a', 'ts': 'bad'} for i in range(30)] + \
             [{'post': 'e2-ok', 'actor': 'a', 'ts': 1}]
    outcomes = model.apply_values(values)
    acks, fatal = send_all(srv.ingest, values)
    probs = ack_problems(acks, len(outcomes))
    got = err_entries(acks)
    want = {(i, o) for i, o in enumerate(outcomes) if o not in ('ok', 'dup')}
    check('err: at most 8 entries per ack, well-formed, with 60 rejections', not probs, str(probs[:5]))
    check('err: every entry right, the most recent rejection (59) among them',
          got <= want and (59, 'bad_type') in got, f'wrong {sorted(got - want)[:5]}, got {len(got)}')
    last = acks[-1] if acks else {}
    check('err: counts (1 ok, 60 rej)', (last.get('ok'), last.get('dup'), last.get('rej')) == (1, 0, 60),
          f'got {last}')


def split_values(i):
    P = f's{i:05d}-'
    return [{'post': P + 'a', 'actor': 'sa', 'ts': 1, 'content': 'split'},
            [{'post': P + 'c', 'actor': 'sc', 'ts': 3, 'parent': P + 'b'},
             {'post': 10_000_000 + i, 'actor': 'sd', 'ts': 4, 'parent': P + 'a', 'kind': 'quote'}],
            {'post': P + 'b', 'actor': 'sb', 'ts': 2, 'parent': P + 'a', 'unknown': [1, 2]},
            {'actor': 'sx', 'ts': 5},
            {'post': P + 'a', 'actor': 'sa', 'ts': 1}]


def part_split(srv, model, rpc):
    stream = pack(split_values(0))
    L = len(stream)
    ev_ends, val_ends = event_ends(split_values(0))
    over, late, wrong, errs = [], [], [], []
    for i in range(1, L):
        values = split_values(i)
        b = pack(values)
        assert len(b) == L
        outcomes = model.apply_values(values)
        want = (outcomes.count('ok'), outcomes.count('dup'), len(outcomes) - outcomes.count('ok') - outcomes.count('dup'))
        complete_events = sum(1 for e in ev_ends if e <= i)
        complete_values = sum(n for e, n in val_ends if e <= i)
        c = IngestConn(srv.ingest, timeout=10)
        try:
            c.send(b[:i])
            if complete_values:
                a = c.wait_total(complete_values, 5)
                if ack_total(a) < complete_values:
                    late.append(i)
            else:
                time.sleep(0.002)
            if any(ack_total(a) > complete_events for a in c.acks()):
                over.append((i, c.acks()))
            c.send(b[i:])
            a = c.wait_total(len(outcomes), 10)
            if (a.get('ok'), a.get('dup'), a.get('rej')) != want or c.fatal():
                wrong.append((i, a, c.fatal()))
            if (4, 'missing_post') not in err_entries(c.acks()):
                errs.append((i, c.acks()))
        finally:
            c.close()
    check(f'split at each of {L - 1} byte boundaries: final ack right every time', not wrong, str(wrong[:3]))
    check('split: no ack ever counts an event not yet fully received', not over, str(over[:3]))
    check('split: the events complete in the first piece are acked before the rest is sent', not late,
          f'no ack at split points {late[:20]}')
    check('split: err names event 4 (missing_post) every time', not errs, str(errs[:2]))
    bad = []
    for i in (1, L // 2, L - 1):
        root = f's{i:05d}-a'
        bad += compare_cascade(model, rpc, root, ask=str(10_000_000 + i))
    check('split: cascades built from split streams are right', not bad, '; '.join(bad[:5]))


def part_malformed(srv, model, rpc):
    good = [{'post': 'mal-1', 'actor': 'ma', 'ts': 1}, [{'post': 'mal-2', 'actor': 'mb', 'ts': 2, 'parent': 'mal-1'},
                                                        {'post': 'mal-3', 'actor': 'mc', 'ts': 3}]]
    after = [{'post': 'mal-4', 'actor': 'md', 'ts': 4}]
    bystander = IngestConn(srv.ingest)  # opened before, used after
    try:
        _, st0 = rpc.call('stats')
        prefix = pack(good)
        c = IngestConn(srv.ingest)
        c.send(prefix + b'\xc1' + pack(after))
        closed = c.wait_closed(10)
        fatal = c.fatal()
        check('malformed: 0xc1 mid-stream gets {"fatal": "malformed msgpack at byte N"} with N its offset',
              fatal == f'malformed msgpack at byte {len(prefix)}', f'got {fatal!r} (offset {len(prefix)})')
        check('malformed: the connection is closed after the fatal message', closed)
        check('malformed: acks before the fatal one never count more than the 3 events before it',
              all(ack_total(a) <= 3 for a in c.acks()), str(c.acks()))
        with c.cv:
            msgs = list(c.msgs)
        fi = next((i for i, m in enumerate(msgs) if isinstance(m, dict) and 'fatal' in m), len(msgs))
        check('malformed: an ack for the 3 events before the bad byte comes before the fatal message (README)',
              any(isinstance(m, dict) and ack_total(m) == 3 for m in msgs[:fi]), str(msgs))
        c.close()
        model.apply_values(good)
        _, st1 = rpc.call('stats')
        check('malformed: the 3 valid events before the bad byte are counted, nothing after it',
              st1.get('accepted', 0) - st0.get('accepted', 0) == 3 and st1.get('posts', 0) - st0.get('posts', 0) == 3,
              f'accepted {st0.get("accepted")} -> {st1.get("accepted")}')
        err, res = rpc.call('cascade', post='mal-4')
        check('malformed: the event after the bad byte is not there', err is not None, str(res))
        # the offset counts from the start of the connection's stream, across chunks
        c = IngestConn(srv.ingest)
        first = pack([{'post': 'mal-5', 'actor': 'ma', 'ts': 5}])
        c.send(first)
        c.wait_total(1, 10)
        second = pack([{'post': 'mal-6', 'actor': 'ma', 'ts': 6}])
        c.send(second + b'\x82\xa4post\xc1\xa5actor\xa1a')  # bad byte inside an event map
        c.wait_closed(10)
        off = len(first) + len(second) + 6
        check('malformed: offset counted from the connection\'s first byte, inside a map, across chunks',
              c.fatal() == f'malformed msgpack at byte {off}', f'got {c.fatal()!r} want byte {off}')
        c.close()
        model.apply_values([{'post': 'mal-5', 'actor': 'ma', 'ts': 5}, {'post': 'mal-6', 'actor': 'ma', 'ts': 6}])
        # the bystander and new connections go on
        bystander.send(pack(after))
        a = bystander.wait_total(1, 10)
        check('malformed: another connection keeps working', (a.get('ok'), bystander.fatal()) == (1, None), str(a))
        model.apply_values(after)
        # hostile headers: counts and lengths that no one should allocate for
        hostile = [('array32 of 4G elements', b'\xdd\xff\xff\xff\xff'),
                   ('map32 of 4G keys', b'\xdf\xff\xff\xff\xff'),
                   ('str32 of 4 GB as an event key', b'\x81\xdb\xff\xff\xff\xff'),
                   ('str32 of 4 GB as content', b'\x84\xa4post\xa2hx\xa5actor\xa1a\xa2ts\x01\xa7content\xdb\xff\xff\xff\xf0'),
                   ('bin32 of 4 GB as post', b'\x81\xa4post\xc6\xff\xff\xff\xff'),
                   ('array32 of 4G inside an array', b'\x91\xdd\xff\xff\xff\xff'),
                   ('ext32 of 4 GB', b'\xc9\xff\xff\xff\xff\x01')]
        for i, (name, raw) in enumerate(hostile):
            pre = pack([{'post': f'host-{i}', 'actor': 'h', 'ts': i}])
            c = IngestConn(srv.ingest)
            t0 = time.time()
            c.send(pre + raw + b'\x00' * 64)
            closed = c.wait_closed(10)
            f = c.fatal()
            ok = isinstance(f, str) and 'at byte' in f and closed
            if name.startswith('array32 of 4G e'):
                ok = ok and f.endswith(f'at byte {len(pre)}')
            check(f'hostile {name}: fatal, closed, without waiting for the data ({time.time() - t0:.2f} s)', ok,
                  f'fatal={f!r} closed={closed} acks={c.acks()}')
            c.close()
            model.apply_values([{'post': f'host-{i}', 'actor': 'h', 'ts': i}])
        check('hostile: server still running', srv.alive())
        err, st = rpc.call('stats')
        check('hostile: query port still answers', err is None and isinstance(st, dict), str(err))
        acks, fatal = send_all(srv.ingest, [{'post': 'after-hostile', 'actor': 'h', 'ts': 99}])
        model.apply_values([{'post': 'after-hostile', 'actor': 'h', 'ts': 99}])
        check('hostile: a new producer is served', acks and acks[-1].get('ok') == 1 and fatal is None, str(acks))
    finally:
        bystander.close()


def part_eof(srv, model, rpc):
    """A producer that hangs up in the middle of a value: what came before counts."""
    good = [{'post': 'eof-1', 'actor': 'ea', 'ts': 1}, {'post': 'eof-2', 'actor': 'eb', 'ts': 2, 'parent': 'eof-1'}]
    cut = msgpack.packb({'post': 'eof-3', 'actor': 'ec', 'ts': 3})[:-3]
    c = IngestConn(srv.ingest)
    c.send(pack(good) + cut)
    a = c.wait_total(2, 10)
    c.s.shutdown(socket.SHUT_WR)
    closed = c.wait_closed(10)
    check('EOF mid-value: the complete events before it are acked, the connection closes',
          (a.get('ok'), closed) == (2, True), f'ack {a} closed {closed} fatal {c.fatal()!r}')
    c.close()
    model.apply_values(good)
    err, res = rpc.call('cascade', post='eof-3')
    check('EOF mid-value: the incomplete event is not there', err is not None, str(res))
    err, res = rpc.call('cascade', post='eof-2')
    check('EOF mid-value: the complete ones are', err is None and isinstance(res, dict) and res.get('size') == 2,
          f'{err} {res}')
    # `cat events.msgpack | nc host 7400`: everything, then a half-close; the final ack still comes
    evs = [{'post': f'pipe-{i}', 'actor': f'piper{i % 5}', 'ts': i, 'parent': f'pipe-{i // 2}' if i else None}
           for i in range(3000)]
    c = IngestConn(srv.ingest)
    c.send(pack(evs))
    c.s.shutdown(socket.SHUT_WR)
    closed = c.wait_closed(20)
    last = c.last()
    check('send everything then half-close: the final ack (3000 ok) arrives before the server closes',
          closed and last.get('ok') == 3000, f'closed {closed} last ack {last}')
    c.close()
    model.apply_values(evs)
    # fire and forget: send, close at once without reading; what was received is applied
    evs = [{'post': f'ff-{i}', 'actor': 'forgetful', 'ts': i} for i in range(500)]
    f = socket.create_connection(('127.0.0.1', srv.ingest), timeout=10)
    f.sendall(pack([evs]))
    f.close()
    model.apply_values([evs])
    deadline, got = time.time() + 10, None
    while time.time() < deadline:
        err, res = rpc.call('actor', id='forgetful')
        got = (res or {}).get('posts') if err is None else None
        if got == 500:
            break
        time.sleep(0.05)
    check('send and close at once without reading acks: the 500 events are applied', got == 500, f'posts {got}')
    check('... and the server is alive', srv.alive())


def part_nonreader(srv, model, rpc):
    """A producer that never reads its acks must not hold up anyone else, nor lose its own acks."""
    n = 20000
    values = [{'post': f'nr-{i}', 'actor': 'nr', 'ts': i} if i % 2 else {'post': f'nr-{i}', 'ts': i}
              for i in range(n)]  # every other one rejected: acks carry err lists
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(60)
    raw.connect(('127.0.0.1', srv.ingest))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    progress = {'sent': 0}

    def pump():
        try:
            for i, v in enumerate(values):
                raw.sendall(msgpack.packb(v))
                progress['sent'] = i + 1
        except OSError as e:
            progress['error'] = repr(e)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    last, stalled_at = -1, None
    for _ in range(100):  # until the pump stalls (server stopped reading) or is done
        time.sleep(0.05)
        if not t.is_alive():
            break
        if progress['sent'] == last:
            stalled_at = last
            break
        last = progress['sent']
    print(f'# non-reader: {"stalled after " + str(stalled_at) if stalled_at is not None else "not stalled"}, '
          f'sent {progress["sent"]} of {n}')
    other = [[{'post': f'nr-other-{i}', 'actor': 'other', 'ts': i} for i in range(1000)]]
    acks, fatal = send_all(srv.ingest, other, timeout=15)
    check('a producer that never reads its acks does not hold up another one',
          acks and acks[-1].get('ok') == 1000 and fatal is None, str(acks[-1:]))
    err, st = rpc.call('stats')
    check('... nor the query port', err is None and isinstance(st, dict), str(err))
    # now read: everything flows again, and the cumulative counts come out right
    u, acks, deadline = msgpack.Unpacker(raw=False, strict_map_key=False), [], time.time() + 60
    try:
        while time.time() < deadline and ack_total(acks[-1] if acks else {}) < n:
            data = raw.recv(65536)
            if not data:
                break
            u.feed(data)
            acks.extend(m for m in u if isinstance(m, dict) and 'ok' in m)
    except OSError as e:
        acks.append({'exception': repr(e)})
    t.join(30)
    raw.close()
    model.apply_values(values + other)
    last = acks[-1] if acks else {}
    check(f'the non-reader\'s acks, once read, add up ({n // 2} ok, {n // 2} rej)',
          (last.get('ok'), last.get('rej')) == (n // 2, n // 2), str(last))
    probs = ack_problems([a for a in acks if 'ok' in a], n)
    check(f'the non-reader\'s {len(acks)} acks are cumulative and well-formed', not probs, str(probs[:3]))


def fd_count(pid):
    try:
        return len(os.listdir(f'/proc/{pid}/fd'))
    except OSError:
        return -1


def part_fds(srv, model, rpc):
    """Hundreds of short connections, many ended abruptly: the server keeps no descriptor for them."""
    before = fd_count(srv.p.pid)
    for i in range(400):
        port = srv.query if i % 5 == 4 else srv.ingest
        c = socket.create_connection(('127.0.0.1', port), timeout=10)
        kind = i % 5
        if kind == 1:
            c.sendall(msgpack.packb({'post': f'fd-{i}', 'actor': 'fd', 'ts': i})[:-2])  # half a value
        elif kind == 2:
            c.sendall(msgpack.packb({'post': f'fd-{i}', 'actor': 'fd', 'ts': i}))
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))  # close with RST
        elif kind == 3:
            c.sendall(b'\xc1')  # fatal
        elif kind == 4:
            c.sendall(msgpack.packb([0, 1, 'stats', [{}]])[:-1])  # half a query
        c.close()
    deadline, after = time.time() + 10, None
    while time.time() < deadline:
        after = fd_count(srv.p.pid)
        if after <= before + 2:
            break
        time.sleep(0.1)
    check(f'400 short connections (RST, half values, fatal, half queries): no descriptor leak ({before} -> {after})',
          before > 0 and after <= before + 2)
    check('the server is alive after them', srv.alive())
    # the events that were complete before an RST may or may not have been processed: ask the server
    for i in range(2, 400, 5):
        if rpc.call('cascade', post=f'fd-{i}')[0] is None:
            model.apply({'post': f'fd-{i}', 'actor': 'fd', 'ts': i})


# ------------------------------------------------------------------------------------ generated streams



def part_big(bin_dir, tmp, rng):
    data = os.path.join(tmp, 'big')
    srv = Server(bin_dir, data).start()
    rpc = None
    try:
        trees, _ = gen_forest(rng, 47_000, 'g', intid_base=3_000_000)
        events = riffle(rng, trees)
        # duplicates (some altered), cycle attempts, rejections
        extra = []
        for i in range(1500):
            e = dict(rng.choice(events))
            if rng.random() < 0.3:
                e['ts'] = 1
                e['actor'] = 'resender'
            extra.append(e)
        for i in range(150):
            tr = rng.choice([t for t in trees if len(t) > 3])
            a, b = rng.sample(range(len(tr)), 2)
            extra.append({'post': tr[a]['post'], 'actor': 'cyc', 'ts': 5, 'parent': tr[b]['post']})
        for i in range(600):
            extra.append(bad_event(rng, i))
        for e in extra:
            events.insert(rng.randrange(len(events) + 1), e)
        values = group_values(rng, events)
        model = Model()
        outcomes = model.apply_values(values)
        n = len(outcomes)
        stream = pack(values)
        c = IngestConn(srv.ingest, timeout=60)
        t0 = time.time()
        pos, chunks = 0, 0
        while pos < len(stream):
            k = int(math.exp(rng.uniform(0, math.log(65536))))
            c.send(stream[pos:pos + k])
            pos += k
            chunks += 1
            if chunks % 64 == 0:
                time.sleep(0.001)
        last = c.wait_total(n, 60)
        elapsed = time.time() - t0
        acks = c.acks()
        c.close()
        want = model.ack()
        check(f'big: {n} events in {chunks} random chunks ({len(stream)} bytes, {elapsed:.1f} s): final ack {want}',
              all(last.get(k) == v for k, v in want.items()), f'got {last}')
        probs = ack_problems(acks, n)
        check(f'big: {len(acks)} acks cumulative and well-formed', not probs, str(probs[:5]))
        got = err_entries(acks)
        wrong = [(i, r) for i, r in got if i >= n or outcomes[i] != r]
        lastrej = max(i for i, o in enumerate(outcomes) if o not in ('ok', 'dup'))
        check('big: err entries name the right event indices and reasons', got and not wrong, str(wrong[:5]))
        check('big: the last rejection is reported', (lastrej, outcomes[lastrej]) in got)
        # one value as large as the README allows (4 MiB per value, 100,000 elements per array)
        arr = [[{'post': f'arr-{i}', 'actor': f'arr{i % 97}', 'ts': BASE_TS + i,
                 'parent': f'arr-{(i - 1) // 3}' if i else None} for i in range(50000)]]
        size = len(pack(arr))
        acks, fatal = send_all(srv.ingest, arr, timeout=60)
        model.apply_values(arr)
        check(f'big: one array of 50000 events in one msgpack value ({size / 2 ** 20:.1f} MiB): all acked',
              acks and acks[-1].get('ok') == 50000 and fatal is None, f'{acks[-1:]} fatal={fatal!r}')
        rpc = Rpc(srv.query)
        err, st = rpc.call('stats')
        bad = compare_stats(model, st or {})
        check(f'big: stats match the model {model.stats()}', err is None and not bad, f'{err} {bad}')
        check('big: stats wal_bytes > 0', isinstance(st, dict) and isinstance(st.get('wal_bytes'), int)
              and st['wal_bytes'] > 0, str(st.get('wal_bytes') if isinstance(st, dict) else st))
        d = model.derive()
        roots = list(d['cascades'])
        by_n = sorted(roots, key=lambda r: -len(d['cascades'][r]['_nodes']))
        sample = by_n[:3] + rng.sample(roots, min(150, len(roots)))
        sample += [r for r in roots if r in model.placeholders][:20] + ['arr-0']
        bad = []
        for r in sample:
            ask = rng.choice(d['cascades'][r]['_nodes'])  # any post of the cascade, placeholders too
            bad += compare_cascade(model, rpc, r, ask=ask)
        check(f'big: {len(sample)} cascades (largest n={len(d["cascades"][by_n[0]]["_nodes"])}) match the model',
              not bad, '; '.join(bad[:8]))
        names = list(d['actors'])
        top = sorted(names, key=lambda a: -d['actors'][a]['reach'])[:5]
        bad = []
        for a in top + rng.sample(names, min(200, len(names))):
            bad += compare_actor(model, rpc, a)
        check('big: 205 actors (reach, amplifiers, ...) match the model', not bad, '; '.join(bad[:8]))
    finally:
        if rpc:
            rpc.close()
        check('big: SIGTERM exits 0', srv.stop() == 0)


def part_parallel(bin_dir, tmp, rng):
    data = os.path.join(tmp, 'parallel')
    srv = Server(bin_dir, data).start()
    rpc = None
    try:
        N = 16
        trees, pages = gen_forest(rng, 24_000, 'P', n_actors=800, intid_base=9_000_000)
        # actor_type consistent per actor (so the result cannot depend on the interleaving)
        for tr in trees:
            for e in tr:
                if 'actor_type' in e:
                    e['actor_type'] = 'page'
        conns = [[] for _ in range(N)]
        for tr in trees:  # a tree's events are spread over several connections: parents in others
            for e in tr:
                conns[rng.randrange(N)].append(e)
        for k in range(N):  # identical resends on other connections, and rejections
            for e in rng.sample(conns[k], len(conns[k]) // 40):
                other = conns[(k + 1 + rng.randrange(N - 1)) % N]
                other.insert(rng.randrange(len(other) + 1), e)
            for i in range(20):
                conns[k].insert(rng.randrange(len(conns[k]) + 1), bad_event(rng, k * 100 + i))
        streams = [group_values(rng, c) for c in conns]
        per_conn = []
        for s in streams:
            m = Model()
            per_conn.append(m.apply_values(s))
        model = Model()
        for s in streams:
            model.apply_values(s)
        results = [None] * N
        go = threading.Barrier(N)

        def producer(k):
            c = IngestConn(srv.ingest, timeout=60)
            try:
                b = pack(streams[k])
                go.wait(10)
                for j in range(0, len(b), 8192):
                    c.send(b[j:j + 8192])
                results[k] = c.wait_total(len(per_conn[k]), 60)
            except Exception as e:
                results[k] = {'exception': repr(e)}
            finally:
                c.close()

        threads = [threading.Thread(target=producer, args=(k,)) for k in range(N)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        elapsed = time.time() - t0
        bad = []
        for k in range(N):
            o, r = per_conn[k], results[k] or {}
            valid = sum(1 for x in o if x in ('ok', 'dup'))
            rej = len(o) - valid
            if r.get('ok', -1) + r.get('dup', -1) != valid or r.get('rej') != rej:
                bad.append(f'conn {k}: got {r} want ok+dup={valid} rej={rej}')
        check(f'parallel: {N} connections, {sum(map(len, per_conn))} events in {elapsed:.1f} s: each ack right',
              not bad, '; '.join(bad[:4]))
        tot = {k: sum((r or {}).get(k, 0) for r in results) for k in ('ok', 'dup', 'rej')}
        check(f'parallel: totals {model.ack()}', tot == model.ack(), f'got {tot}')
        rpc = Rpc(srv.query)
        err, st = rpc.call('stats')
        bad = compare_stats(model, st or {})
        check('parallel: stats match the model (cross-connection parents and resends)', err is None and not bad,
              f'{err} {bad}')
        d = model.derive()
        roots = list(d['cascades'])
        bad = []
        for r in sorted(roots, key=lambda r: -len(d['cascades'][r]['_nodes']))[:3] + rng.sample(roots, 60):
            bad += compare_cascade(model, rpc, r)
        for a in rng.sample(list(d['actors']), 60):
            bad += compare_actor(model, rpc, a)
        check('parallel: sampled cascades and actors match the model', not bad, '; '.join(bad[:8]))
        part_slow(srv, model, rpc)
    finally:
        if rpc:
            rpc.close()
        check('parallel: SIGTERM exits 0', srv.stop() == 0)


def part_slow(srv, model, rpc):
    slow_values = [{'post': f'slow-{i}', 'actor': 'slowpoke', 'ts': i, 'parent': f'slow-{i - 1}' if i else None,
                    'content': 'drip'} for i in range(40)]
    slow_bytes = pack(slow_values)
    progress = {'sent': 0, 'first_ack_at': None}
    slow = IngestConn(srv.ingest, timeout=60)

    def drip():
        try:
            for i in range(len(slow_bytes)):
                slow.send(slow_bytes[i:i + 1])
                progress['sent'] = i + 1
                if progress['first_ack_at'] is None and slow.acks() and ack_total(slow.last()) > 0:
                    progress['first_ack_at'] = i + 1
                time.sleep(0.003)
        except Exception as e:
            progress['error'] = repr(e)

    t = threading.Thread(target=drip)
    t.start()
    fast = IngestConn(srv.ingest, timeout=60)
    rounds, sent_at_end = 40, None
    try:
        while progress['sent'] < 20 and t.is_alive():
            time.sleep(0.005)
        start_sent = progress['sent']
        done = 0
        for r in range(rounds):
            vals = [[{'post': f'fast-{r}-{j}', 'actor': f'fast{j % 7}', 'ts': r * 1000 + j,
                      'parent': f'fast-{r}-{j // 2}' if j else None} for j in range(250)]]
            fast.send(pack(vals))
            a = fast.wait_total((r + 1) * 250, 20)
            if ack_total(a) < (r + 1) * 250:
                break
            done += 1
            model.apply_values(vals)
        sent_at_end = progress['sent']
        check(f'slow: fast producer finished {done}/{rounds} acked rounds while the slow one sent '
              f'{sent_at_end - start_sent} bytes (of {len(slow_bytes)})',
              done == rounds and sent_at_end - start_sent < len(slow_bytes) // 2,
              'the fast producer was held up by the slow one')
        t.join(60)
        a = slow.wait_total(len(slow_values), 20)
        model.apply_values(slow_values)
        check('slow: the slow producer\'s events are all acked at the end', a.get('ok') == len(slow_values), str(a))
        fa = progress['first_ack_at']
        check('slow: the slow producer got acks while still sending (events processed as they complete)',
              fa is not None and fa < len(slow_bytes), f'first ack after {fa} of {len(slow_bytes)} bytes')
        err, st = rpc.call('stats')
        bad = compare_stats(model, st or {})
        check('slow: stats match the model', err is None and not bad, f'{err} {bad}')
        bad = compare_cascade(model, rpc, 'slow-0', ask='slow-39')
        check('slow: the dripped chain is one cascade of depth 39', not bad, '; '.join(bad[:4]))
    finally:
        t.join(60)
        slow.close()
        fast.close()


def part_query_halfclose(srv):
    """100 pipelined requests (past the server's 64 in flight), then a half-close: every one is
    answered, in order, before the server closes; a malformed request gets an error, not silence."""
    s = socket.create_connection(('127.0.0.1', srv.query), timeout=20)
    s.sendall(b''.join(msgpack.packb([0, i, 'stats', [{}]]) for i in range(100)))
    s.shutdown(socket.SHUT_WR)
    u, ids = msgpack.Unpacker(raw=False), []
    while True:
        data = s.recv(65536)
        if not data:
            break
        u.feed(data)
        ids += [m[1] for m in u]
    s.close()
    check('query: 100 pipelined requests then a half-close: 100 answers in order', ids == list(range(100)),
          f'got {len(ids)}')
    s = socket.create_connection(('127.0.0.1', srv.query), timeout=20)
    s.sendall(b'\xc1')
    u = msgpack.Unpacker(raw=False)
    u.feed(s.recv(65536))
    m = next(u, None)
    s.close()
    check('query: a malformed request gets an error response', isinstance(m, list) and m[2] is not None, repr(m))


def body(run):
    bin_dir, tmp = run.bin_dir, run.tmp
    seed = int(os.environ.get('CASCADE_TEST_SEED', '1'))
    rng = random.Random(seed)
    print(f'# seed {seed} (CASCADE_TEST_SEED)')
    srv = Server(bin_dir, os.path.join(tmp, 'a')).start()
    rpc = Rpc(srv.query)
    model = Model()
    try:
        part_known(srv, model, rpc)
        part_err(srv, model)
        part_split(srv, model, rpc)
        part_malformed(srv, model, rpc)
        part_eof(srv, model, rpc)
        part_nonreader(srv, model, rpc)
        part_fds(srv, model, rpc)
        part_query_halfclose(srv)
        err, st = rpc.call('stats')
        bad = compare_stats(model, st or {})
        check('all of the above: stats match the model', err is None and not bad, f'{err} {bad}')
        # nesting deeper than anyone needs: a fatal answer, or one bad_type event; never a crash
        c = IngestConn(srv.ingest)
        c.send(b'\x91' * 1000 + b'\x80')
        c.wait(lambda m: ack_total(m) >= 1, 10)
        f, a = c.fatal(), c.last()
        check('deep nesting (1000 arrays): fatal or one bad_type, server alive',
              (f is not None or (a.get('rej') == 1 and a.get('ok') == 0)) and srv.alive(), f'fatal={f!r} ack={a}')
        c.close()
    finally:
        rpc.close()
        check('SIGTERM exits 0', srv.stop() == 0, f'stderr: {srv.stderr()[-500:]}')
    part_big(bin_dir, tmp, rng)
    part_parallel(bin_dir, tmp, rng)


def main():
    harness.run_main('cascaded-test-ingest-', body, server=False)


if __name__ == '__main__':
    main()
