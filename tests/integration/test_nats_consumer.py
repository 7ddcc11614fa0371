#!/usr/bin/python3
"""What a cascaded node will rely on when it consumes its partitions (DESIGN §9, docs/cluster.md),
pinned down on the installed libnats 3.4 and nats-server 2.9 before the node is built on it.

usage: /usr/bin/python3 test_nats_consumer.py SERVER_DIR TOOLS_DIR

A 3-node R=3 cluster (nats_harness); tests/tools/nats-pub publishes 4000 events and an annotation
to a 2-partition stream; tests/tools/nats-drain reads partitions through durable pull consumers
(FilterSubject one partition, explicit acks, AckWait 1 s given in nanoseconds, MaxAckPending set):
messages fetched and not acked come back after AckWait with the same stream sequences and a
delivery count above 1; acked ones never come back; the durable survives natsSubscription_Destroy
and keeps its place (natsSubscription_Unsubscribe deletes it: the trap); the two partitions
together hold every event once.
Prints one line per check and ends with 'N passed, M failed'.
"""
import os
import re
import subprocess
import time

import nats_harness
from harness import check

reports = []


def drain(run, tool, urls, subject, durable, max_msgs, ack, name, unsubscribe=False):
    err = os.path.join(run.tmp, f'{name}.stderr')
    reports.append(err)
    with open(err, 'wb') as ef:
        p = subprocess.run([tool, urls, 'CONS', subject, durable, '1000', str(max_msgs), 'ack' if ack else 'noack']
                           + (['unsubscribe'] if unsubscribe else []), stdout=subprocess.PIPE, stderr=ef, timeout=60)
    out = p.stdout.decode(errors='replace').strip()
    m = re.fullmatch(r'msgs (\d+) events (\d+) first (\d+) last (\d+) redelivered (\d+)', out)
    if p.returncode != 0 or not m:
        raise RuntimeError(f'nats-drain exited {p.returncode}: {out} {open(err).read()[-500:]}')
    return dict(zip(('msgs', 'events', 'first', 'last', 'redelivered'), map(int, m.groups())))


def consumers(cluster, stream):
    """Durable names of the stream's consumers, from any node's /jsz."""
    names = set()
    for i in range(cluster.n):
        if not cluster.alive(i):
            continue
        z = cluster.jsz(i, '?consumers=true')
        for acc in z.get('account_details') or []:
            for st in acc.get('stream_detail') or []:
                if st.get('name') == stream:
                    names |= {c.get('name') for c in st.get('consumer_detail') or []}
    return names


def body(run):
    tools = os.path.normpath(os.path.join(run.tools, '..', 'tests', 'tools'))
    pub, drain_bin = os.path.join(tools, 'nats-pub'), os.path.join(tools, 'nats-drain')
    cluster = nats_harness.NatsCluster(run.tmp, 3)
    run.cluster = cluster
    cluster.start()
    urls = cluster.urls()
    err = os.path.join(run.tmp, 'pub.stderr')
    reports.append(err)
    with open(err, 'wb') as ef:
        p = subprocess.run([pub, urls, 'CONS', '2', '4000'], stdout=subprocess.PIPE, stderr=ef, timeout=60)
    check('4000 events and an annotation published to CONS (2 partitions)', p.returncode == 0,
          p.stdout.decode() + open(err).read())

    a = drain(run, drain_bin, urls, 'cons.0', 'node-a-p0', 2, False, 'a1')
    check('a durable pull consumer on cons.0 fetches 2 messages (not acked)', a['msgs'] == 2 and a['redelivered'] == 0, a)
    check('the durable survives natsSubscription_Destroy', 'node-a-p0' in consumers(cluster, 'CONS'),
          consumers(cluster, 'CONS'))
    time.sleep(1.5)  # past AckWait (1 s)
    b = drain(run, drain_bin, urls, 'cons.0', 'node-a-p0', 100000, True, 'a2')
    check('after AckWait the 2 unacked messages come again, same stream sequences, delivered twice',
          b['redelivered'] == 2 and b['first'] == a['first'] and b['msgs'] >= 2, (a, b))
    c = drain(run, drain_bin, urls, 'cons.0', 'node-a-p0', 100000, True, 'a3')
    check('acked messages never come back: the durable keeps its place', c['msgs'] == 0, c)
    d = drain(run, drain_bin, urls, 'cons.1', 'node-a-p1', 100000, True, 'b1')
    check('cons.0 and cons.1 together hold every event once (the annotation once in each)',
          b['events'] + d['events'] == 4002 and d['redelivered'] == 0, (b, d))
    check('both durables are there', {'node-a-p0', 'node-a-p1'} <= consumers(cluster, 'CONS'),
          consumers(cluster, 'CONS'))
    e = drain(run, drain_bin, urls, 'cons.1', 'doomed', 1, True, 'c1', unsubscribe=True)
    deadline = time.time() + 5
    while 'doomed' in consumers(cluster, 'CONS') and time.time() < deadline:
        time.sleep(0.1)
    check('the trap: natsSubscription_Unsubscribe deletes the durable', e['msgs'] == 1 and
          'doomed' not in consumers(cluster, 'CONS') and 'node-a-p1' in consumers(cluster, 'CONS'),
          consumers(cluster, 'CONS'))


if __name__ == '__main__':
    nats_harness.run_main('cascade-nats-consumer-', body, reports)
