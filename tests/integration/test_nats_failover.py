#!/usr/bin/python3
"""Losing a cluster node for good (DESIGN §9, docs/cluster.md "Losing a node for good", issue 19),
on a real 3-node NATS JetStream cluster, R=3.

usage: /usr/bin/python3 test_nats_failover.py SERVER_DIR TOOLS_DIR

Node A holds partitions 0-3 and node B 4-7 of an 8-partition stream; a plain node is fed the same
cascade-gen dump (every reshare with its cascade's `root`, as in test_nats_node.py) through its
ingest port. After the first part, A is killed with SIGKILL and its data dir deleted: it is gone
for good, and its durables stay on the servers holding every later message of 0-3 for nobody. A
second part is published with no node on 0-3; then node C starts with a fresh data dir (a new node
id) and `--partitions 0-3`: it must make its durables from sequence 1 and rebuild 0-3 from the
stream, while two more parts are published (they go out only once C has printed its ready line).
Once B and C are at lag 0, their counts add up to the plain node's (nothing applied twice: the
duplicate counts would show it) and every cascade is answered by exactly one of them as the plain
node answers it. Then `cascaded --nats URLS --delete-durables A_ID` deletes A's four durables
(listed with nats-check --consumers before and after); deleting a running node's (B's) durables
costs it nothing (it makes them again from its WAL's position): a fifth part reaches B and C and
the comparison holds again. Prints one line per check and ends with 'N passed, M failed'.
"""
import json
import os
import re
import shutil
import subprocess
import threading
import time

import harness
import nats_harness
from harness import check
from test_nats_node import caught_up, compare, make_dumps, replay, reports, stats


def consumers(run, urls):
    """{name: (pending, ack_pending)} of the stream's consumers (nats-check --consumers)."""
    err = os.path.join(run.tmp, f'consumers.{time.monotonic_ns()}.stderr')
    reports.append(err)
    with open(err, 'wb') as ef:
        p = subprocess.run([os.path.join(run.tools, '..', 'tests', 'tools', 'nats-check'),
                            '--nats', urls, '--consumers'], stdout=subprocess.PIPE, stderr=ef,
                           timeout=60)
    if p.returncode:
        raise RuntimeError(f'nats-check --consumers exited {p.returncode}: {open(err).read()[-500:]}')
    out = {}
    for line in p.stdout.decode().splitlines():
        m = re.fullmatch(r'consumer (\S+) pending (\d+) ack_pending (\d+)', line)
        if m:
            out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


def node_id(srv):
    with open(os.path.join(srv.data, 'node-id')) as f:
        return f.read().strip()


def delete_durables(run, cascaded, urls, nid, name):
    err = os.path.join(run.tmp, f'{name}.stderr')
    reports.append(err)
    with open(err, 'wb') as ef:
        p = subprocess.run([cascaded, '--nats', urls, '--delete-durables', nid,
                            '--data-dir', os.path.join(run.tmp, 'operator')],
                           stdout=subprocess.PIPE, stderr=ef, timeout=60)
    return p.returncode, p.stdout.decode(errors='replace'), open(err, errors='replace').read()


def body(run):
    replay_bin = os.path.join(run.tools, 'cascade-replay')
    cascaded = os.path.join(run.bin_dir, 'cascaded')
    cluster = nats_harness.NatsCluster(run.tmp, 3)
    run.cluster = cluster
    cluster.start()
    urls = cluster.urls()
    node_args = ['--nats', urls, '--stream-partitions', '8', '--stream-replicas', '3']
    a = harness.Server(run.bin_dir, os.path.join(run.tmp, 'a'), *node_args, '--partitions', '0-3').start(60)
    b = harness.Server(run.bin_dir, os.path.join(run.tmp, 'b'), *node_args, '--partitions', '4-7').start(60)
    single = harness.Server(run.bin_dir, os.path.join(run.tmp, 'single')).start()
    paths, roots, total = make_dumps(run, os.path.join(run.tools, 'cascade-gen'), 25000, 5, 11)

    def publish(k):
        rc, out, err = replay(run, replay_bin, ['--nats', urls, '--quiet', paths[k]], f'p{k}', timeout=180)
        return rc == 0, f'{out} {err[-500:]}'

    def feed_single(k):
        rc, out, err = replay(run, replay_bin, ['--port', str(single.ingest), paths[k]], f's{k}')
        return rc == 0, f'{out} {err[-300:]}'

    # ---- part 1: A and B consume it
    check('part 1 published', *publish(0))
    check('the plain node takes part 1', *feed_single(0))
    ok, parts = caught_up([a, b])
    check('A and B reach lag 0', ok, parts)
    a_id = node_id(a)
    a_durables = {f'cascaded-{a_id}-p{p}' for p in range(4)}

    # ---- A is lost for good; part 2 arrives with nobody on partitions 0-3
    a.kill()
    shutil.rmtree(a.data)
    check('part 2 published with A gone', *publish(1))
    check('the plain node takes part 2', *feed_single(1))
    cons = consumers(run, urls)
    check('A\'s four durables are still on the servers, holding part 2 as pending work for nobody',
          a_durables <= set(cons) and sum(cons[d][0] for d in a_durables) > 0,
          {k: v for k, v in cons.items() if a_id in k})

    z = cluster.jsz(0, '?streams=true&config=true')
    st = [d for acc in z.get('account_details') or [] for d in acc.get('stream_detail') or []
          if d.get('name') == 'SHARES']
    cfg, state = (st[0].get('config') or {}, st[0].get('state') or {}) if st else ({}, {})
    check('the stream keeps everything: limits retention, no max age, messages or bytes; first '
          'sequence 1', (cfg.get('retention'), cfg.get('max_age'), cfg.get('max_msgs'),
                         cfg.get('max_bytes'), state.get('first_seq')) == ('limits', 0, -1, -1, 1),
          (cfg, state))

    # ---- C (a fresh data dir: a new node id) takes 0-3; parts 3 and 4 are published once C is up
    c = harness.Server(run.bin_dir, os.path.join(run.tmp, 'c'), *node_args, '--partitions', '0-3').start(60)
    th = threading.Thread(target=lambda: setattr(run, 'late', [publish(2), publish(3)]))
    th.start()
    first = stats(c).get('partitions') or []
    c_id = node_id(c)
    check('C has a node id of its own', c_id != a_id, c_id)
    th.join()
    for k, (ok, why) in enumerate(run.late):
        check(f'part {k + 3} published while C rebuilds', ok, why)
    check('the plain node takes parts 3 and 4', feed_single(2)[0] and feed_single(3)[0])
    ok, parts = caught_up([b, c], 90)
    check('B and C reach lag 0', ok, parts)
    check('C\'s first stats (just after its ready line) showed it not yet caught up',
          first and any(p['lag'] > 0 for p in first), first)
    starts = {int(m.group(1)): int(m.group(2)) for m in re.finditer(
        r'event=nats_consumer partition=(\d+) durable=cascaded-' + c_id + r'-p\d+ from_seq=(\d+)',
        c.stderr())}
    check('C made its durables for 0-3 from sequence 1 of the stream',
          starts == {0: 1, 1: 1, 2: 1, 3: 1}, starts)
    c_parts = {p['partition']: p for p in (parts[1] if parts else [])}
    check('C\'s partitions are 0-3, each applied up to the stream\'s last sequence',
          sorted(c_parts) == [0, 1, 2, 3] and all(p['applied_seq'] == p['stream_seq'] > 0
                                                   for p in c_parts.values()), c_parts)
    compare('B and C after C rebuilt A\'s partitions', [b, c], single, roots[3])
    got = sum(stats(n).get('accepted', 0) + stats(n).get('duplicate', 0) for n in (b, c))
    want = sum(1 for k in range(4) for _ in open(paths[k]))
    check('every event of parts 1-4 is on B or C once (accepted + duplicate)', got == want,
          f'{got} of {want}')

    # ---- the operator deletes A's durables (their names, A's id among them, from /jsz)
    z = json.dumps(cluster.jsz(0, '?consumers=true'))
    check('the monitoring port\'s /jsz?consumers=true names A\'s durables (how an operator finds '
          'a lost node\'s id)', all(d in z for d in a_durables), z[:600])
    rc, out, err = delete_durables(run, cascaded, urls, a_id, 'delete-a')
    said = set(re.findall(r'^deleted (cascaded-\S+)$', out, re.M))
    check('--delete-durables A_ID exits 0 and names the four durables it deleted',
          rc == 0 and said == a_durables, f'rc {rc} out {out!r} err {err[-500:]}')
    cons = consumers(run, urls)
    b_id = node_id(b)
    check('the stream\'s consumers are B\'s and C\'s four each, none of A\'s',
          set(cons) == {f'cascaded-{i}-p{p}' for i, ps in ((b_id, range(4, 8)), (c_id, range(4)))
                        for p in ps}, sorted(cons))
    rc, out, err = delete_durables(run, cascaded, urls, a_id, 'delete-a-again')
    check('run again, it deletes nothing and says so, exit 0',
          rc == 0 and 'deleted 0 durables' in out and 'deleted cascaded' not in out, f'{rc} {out!r} {err}')
    rc, out, err = delete_durables(run, cascaded, urls, 'not-hex', 'delete-bad')
    check('a node id that is not hex digits: exit 2', rc == 2, f'{rc} {out!r} {err}')
    p = subprocess.run([cascaded, '--delete-durables', a_id], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    check('--delete-durables without --nats: exit 2, says so',
          p.returncode == 2 and b'--nats' in p.stderr, p.stderr.decode(errors='replace'))

    # ---- deleting a running node's durables: it makes them again from its WAL's position
    rc, out, err = delete_durables(run, cascaded, urls, b_id, 'delete-b')
    check('--delete-durables of the running node B deletes its four', rc == 0 and out.count('deleted cascaded') == 4,
          f'{rc} {out!r} {err[-300:]}')
    check('part 5 published', *publish(4))
    check('the plain node takes part 5', *feed_single(4))
    ok, parts = caught_up([b, c], 60)
    check('B (its durables made again) and C reach lag 0', ok, parts)
    compare('B and C after part 5', [b, c], single, roots[4])
    got = sum(stats(n).get('accepted', 0) + stats(n).get('duplicate', 0) for n in (b, c))
    check('every event of the dump is on B or C once', got == total, f'{got} of {total}')
    check('B has its four durables again', {f'cascaded-{b_id}-p{p}' for p in range(4, 8)} <= set(consumers(run, urls)))
    made = [len(re.findall(rf'event=nats_consumer partition={p} ', b.stderr())) for p in range(4, 8)]
    check('B made each of them again (twice in its log)', all(k >= 2 for k in made), made)
    for name, srv in (('B', b), ('C', c)):
        check(f'node {name} exits 0 on SIGTERM', srv.stop() == 0, srv.stderr()[-500:])
    check('the plain node exits 0 on SIGTERM', single.stop() == 0)


if __name__ == '__main__':
    nats_harness.run_main('cascade-nats-failover-', body, reports)
