#!/usr/bin/python3
"""cascaded --nats: cluster nodes consuming a real 3-node NATS JetStream cluster, R=3 (DESIGN §9,
docs/cluster.md "Nodes", issue 19).

usage: /usr/bin/python3 test_nats_node.py SERVER_DIR TOOLS_DIR

Two cascaded nodes hold partitions 0-3 and 4-7 of an 8-partition stream; cascade-replay --nats
publishes a cascade-gen dump (every reshare carries its cascade's `root`, so that each cascade
lies in one partition: the cross-partition resolution step is not built yet) and a plain node is
fed the same dump through its ingest port. Once every partition reports lag 0, the nodes' posts,
cascades, placeholders, accepted and duplicate counts add up to the plain node's, and every
cascade, asked of both nodes, is answered by exactly one, as the plain node answers it. Faults,
each while a dump is being consumed: kill -9 of a node and its restart (nothing applied twice:
the duplicate counts would show it), kill -9 of the other node after it wrote a snapshot
(--snapshot-interval 1), kill -9 of the stream's leader; after each, the same comparison. Also:
the ingest port of a node refuses events with a fatal naming the stream, and the flags' errors.
Needs Debian's nats-server; prints one line per check and ends with 'N passed, M failed'.
"""
import json
import os
import subprocess
import threading
import time

import harness
import nats_harness
from harness import check

reports = []  # stderr files of the tools, for sanitizer reports
KEYS = ('posts', 'cascades', 'placeholders', 'accepted', 'duplicate', 'rejected')


def make_dumps(run, gen, events, parts, seed):
    """A cascade-gen dump with `root` on every reshare, cut into `parts` files (in order)."""
    raw = os.path.join(run.tmp, 'all.raw.ndjson')
    subprocess.run([gen, '--events', str(events), '--seed', str(seed), '--late-parents', '0.05',
                    '--duplicates', '0.02', '--out', raw], check=True, timeout=120)
    evs = [json.loads(line) for line in open(raw)]
    parent = {}
    for e in evs:
        parent.setdefault(e['post'], e.get('parent'))

    def true_root(p):
        seen = set()
        while parent.get(p) is not None and p not in seen:
            seen.add(p)
            p = parent[p]
        return p
    for e in evs:
        if e.get('parent') is not None:
            e['root'] = true_root(e['post'])
    paths, roots, per = [], [], (len(evs) + parts - 1) // parts
    for k in range(parts):
        path = os.path.join(run.tmp, f'part{k}.ndjson')
        with open(path, 'w') as f:
            for e in evs[k * per:(k + 1) * per]:
                f.write(json.dumps(e, separators=(',', ':')) + '\n')
        paths.append(path)
        roots.append(sorted({true_root(e['post']) for e in evs[:(k + 1) * per]}, key=str))
    return paths, roots, len(evs)


def replay(run, replay_bin, args, name, timeout=120):
    err = os.path.join(run.tmp, f'{name}.stderr')
    reports.append(err)
    with open(err, 'wb') as ef:
        p = subprocess.run([replay_bin] + args, stdout=subprocess.PIPE, stderr=ef, timeout=timeout)
    return p.returncode, p.stdout.decode(errors='replace').strip(), open(err, errors='replace').read()


def stats(srv):
    try:
        return harness.stats_of(srv)
    except (OSError, RuntimeError):
        return {}


def caught_up(nodes, timeout=60):
    """Until every partition of every node shows lag 0 and its applied sequence at the stream's."""
    # the nodes poll the stream's sequences once a second: caught up in two polls in a row,
    # the same sequences in both
    deadline, last, prev = time.time() + timeout, None, None
    while time.time() < deadline:
        time.sleep(1.2)
        last = [stats(n).get('partitions') for n in nodes]
        done = all(ps and all(p['lag'] == 0 and p['applied_seq'] == p['stream_seq'] for p in ps)
                   for ps in last)
        if done and last == prev:
            return True, last
        prev = last if done else None
    return False, last


def compare(label, nodes, single, roots):
    """The nodes' counts add up to the single node's; every cascade is answered by one node as
    the single node answers it."""
    got = [stats(n) for n in nodes]
    want = stats(single)
    sums = {k: sum(g.get(k, 0) for g in got) for k in KEYS}
    check(f'{label}: the nodes\' {", ".join(KEYS)} add up to the single node\'s',
          all(sums[k] == want.get(k) for k in KEYS),
          f'nodes {sums} single { {k: want.get(k) for k in KEYS} }')
    rpcs = [harness.Rpc(n.query) for n in nodes]
    one = harness.Rpc(single.query)
    bad, asked = [], 0
    try:
        for root in roots:
            err, want_c = one.call('cascade', post=root)
            if err:
                continue
            answers = [r.call('cascade', post=root) for r in rpcs]
            ok = [a for e, a in answers if e is None]
            asked += 1
            if len(ok) != 1 or not harness.same(ok[0], want_c):
                bad.append((root, want_c, answers))
    finally:
        for r in rpcs + [one]:
            r.close()
    check(f'{label}: every cascade ({asked}) is answered by one node as by the single node',
          asked > 0 and not bad, f'{len(bad)} differ, first: {bad[:1]}')


def body(run):
    replay_bin = os.path.join(run.tools, 'cascade-replay')
    gen = os.path.join(run.tools, 'cascade-gen')
    cascaded = os.path.join(run.bin_dir, 'cascaded')
    cluster = nats_harness.NatsCluster(run.tmp, 3)
    run.cluster = cluster
    cluster.start()
    urls = cluster.urls()

    # ---- the flags
    def bad_flags(args):
        p = subprocess.run([cascaded, '--data-dir', os.path.join(run.tmp, 'flags')] + args,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        return p.returncode, p.stderr.decode(errors='replace')
    rc, err = bad_flags(['--nats', urls])
    check('--nats without --partitions: exit 2, says so', rc == 2 and '--partitions' in err, err)
    rc, err = bad_flags(['--nats', urls, '--partitions', '3-1'])
    check('--partitions 3-1: exit 2', rc == 2 and '3-1' in err, err)
    rc, err = bad_flags(['--partitions', '0'])
    check('--partitions without --nats: exit 2', rc == 2 and '--nats' in err, err)
    help_text = subprocess.run([cascaded, '--help'], stdout=subprocess.PIPE, timeout=30).stdout.decode()
    check('--help describes --nats, --partitions, --stream, --stream-partitions, --stream-replicas',
          all(f in help_text for f in ('--nats URL', '--partitions LIST', '--stream NAME',
                                       '--stream-partitions P', '--stream-replicas R')), help_text[-800:])

    # ---- two nodes over 8 partitions (node a creates the stream, R=3), a plain node beside
    node_args = ['--nats', urls, '--stream-partitions', '8', '--stream-replicas', '3']
    a = harness.Server(run.bin_dir, os.path.join(run.tmp, 'a'), *node_args, '--partitions', '0-3').start(60)
    b = harness.Server(run.bin_dir, os.path.join(run.tmp, 'b'), *node_args, '--partitions', '4,5-7',
                       '--snapshot-interval', '1').start(60)
    single = harness.Server(run.bin_dir, os.path.join(run.tmp, 'single')).start()
    rc, err = bad_flags(['--nats', urls, '--partitions', '8', '--ingest-port', '0', '--query-port', '0',
                         '--http-port', '0'])
    check('--partitions 8 of an 8-partition stream: refused at start, exit 1',
          rc == 1 and 'partitions 0..7' in err, err[-400:])

    paths, roots, total = make_dumps(run, gen, 40000, 4, 7)

    def feed_single(path, name):
        rc, out, err = replay(run, replay_bin, ['--port', str(single.ingest), path], name)
        return rc == 0, f'{out} {err[-300:]}'

    def publish(path, name):
        return replay(run, replay_bin, ['--nats', urls, '--quiet', path], name, timeout=180)

    # ---- 1: the first part, no fault
    rc, out, err = publish(paths[0], 'p0')
    check('part 1 published', rc == 0, f'{out} {err[-500:]}')
    check('the single node takes part 1', *feed_single(paths[0], 's0'))
    ok, parts = caught_up([a, b])
    check('both nodes reach lag 0 on their 8 partitions',
          ok and sorted(p['partition'] for ps in parts for p in ps) == list(range(8)), parts)
    compare('part 1', [a, b], single, roots[0])
    check('/metrics of a node shows its partitions\' lag',
          harness.metric(a, 'cascaded_partition_lag{partition="0"}') == 0.0)

    # ---- the ingest port of a node refuses events
    conn = harness.IngestConn(a.ingest)
    conn.send(harness.pack([{'post': 'x1', 'actor': 'u1', 'ts': 1700000000000}]))
    conn.wait(lambda last: False, 10)
    fatal = conn.fatal() or ''
    conn.close()
    check('a node\'s ingest port answers an event with a fatal naming the stream',
          'stream SHARES' in fatal and 'cascade-replay --nats' in fatal, fatal)

    # ---- 2: kill -9 of node a while it consumes part 2, then its restart
    before = stats(a).get('accepted', 0)
    th = threading.Thread(target=lambda: setattr(run, 'p1', publish(paths[1], 'p1')))
    th.start()
    deadline = time.time() + 30
    while time.time() < deadline and stats(a).get('accepted', 0) == before:
        time.sleep(0.005)
    mid = stats(a).get('accepted', 0)
    a.kill()
    th.join()
    check('part 2 published while node a was killed', run.p1[0] == 0, str(run.p1)[-500:])
    check('node a had applied part of part 2 when it was killed', mid > before, f'{before} -> {mid}')
    a.start(60)
    check('the single node takes part 2', *feed_single(paths[1], 's1'))
    ok, parts = caught_up([a, b])
    check('after the restart of node a, lag 0 everywhere', ok, parts)
    compare('kill -9 of a node mid-consume', [a, b], single, roots[1])

    # ---- 3: kill -9 of node b after a snapshot, while it consumes part 3
    deadline = time.time() + 20
    while time.time() < deadline and not stats(b).get('snapshot_last_events'):
        time.sleep(0.1)
    snap = stats(b).get('snapshot_last_events', 0)
    check('node b wrote a snapshot (--snapshot-interval 1)', snap > 0, snap)
    before = stats(b).get('accepted', 0)
    th = threading.Thread(target=lambda: setattr(run, 'p2', publish(paths[2], 'p2')))
    th.start()
    deadline = time.time() + 30
    while time.time() < deadline and stats(b).get('accepted', 0) == before:
        time.sleep(0.005)
    b.kill()
    th.join()
    check('part 3 published', run.p2[0] == 0, str(run.p2)[-500:])
    b.start(60)
    check('node b restarts from its snapshot',
          'snapshot_loaded' in b.stderr(), b.stderr()[-600:])
    check('the single node takes part 3', *feed_single(paths[2], 's2'))
    ok, parts = caught_up([a, b])
    check('after the restart of node b, lag 0 everywhere', ok, parts)
    compare('kill -9 of a node after a snapshot', [a, b], single, roots[2])

    # ---- 4: kill -9 of the stream's leader while the nodes consume part 4
    leader = cluster.stream_leader('SHARES')
    before = stats(a).get('accepted', 0) + stats(b).get('accepted', 0)
    th = threading.Thread(target=lambda: setattr(run, 'p3', publish(paths[3], 'p3')))
    th.start()
    deadline = time.time() + 30
    while time.time() < deadline and stats(a).get('accepted', 0) + stats(b).get('accepted', 0) == before:
        time.sleep(0.005)
    cluster.kill9(leader)
    th.join()
    check('part 4 published across the election', run.p3[0] == 0, str(run.p3)[-500:])
    check('the single node takes part 4', *feed_single(paths[3], 's3'))
    ok, parts = caught_up([a, b], 90)
    check(f'after kill -9 of the stream leader n{leader + 1}, the nodes catch up (lag 0)', ok, parts)
    compare('kill -9 of the stream leader', [a, b], single, roots[3])
    got = sum(stats(n).get('accepted', 0) + stats(n).get('duplicate', 0) for n in (a, b))
    check('every event of the dump is there once (accepted + duplicate)', got == total, f'{got} of {total}')
    for name, srv in (('a', a), ('b', b)):
        check(f'node {name} exits 0 on SIGTERM', srv.stop() == 0, srv.stderr()[-500:])
    check('the single node exits 0 on SIGTERM', single.stop() == 0)


if __name__ == '__main__':
    nats_harness.run_main('cascade-nats-node-', body, reports)
