#!/usr/bin/python3
"""cascade-replay --nats against a real 3-node NATS JetStream cluster, R=3 (DESIGN §9, issue 19).

usage: /usr/bin/python3 test_nats_replay.py SERVER_DIR TOOLS_DIR

Starts three clustered nats-server processes on free loopback ports (nats_harness), replays a
cascade-gen dump with late parents and duplicates, where some reshares name their `root` and the
rest do not, and reads the stream back with tests/tools/nats-check: every post present, in the
partition of its routing key as the producer should have tracked it (computed here from the dump:
`root` when given, else the parent's key, else the parent, else the post), copies of a post only
as exact repeats. Then --from (only the events from N on are published), the command line,
libcascade-client's cc_nats_* driven by tests/tools/nats-pub (an annotation goes to every
partition), SIGINT mid-replay and the resume from the --from it names, and kill -9 of the stream's
leader while a replay runs: the replay must finish (publishing again across the election) and every
event it was acked for must be in the stream; then the killed server is started again and a
follower is killed during another replay, with the same checks.
Needs Debian's nats-server; prints one line per check and ends with 'N passed, M failed'.
"""
import json
import os
import random
import re
import signal
import subprocess
import time

import nats_harness
from harness import check

SUMMARY = re.compile(r'^sent (\d+) ok (\d+) dup (\d+) rej (\d+) in [\d.]+ s \([\d.]+ events/s\)$')
reports = []  # stderr files of the tools, for sanitizer reports


def tool_paths(run):
    replay = os.path.join(run.tools, 'cascade-replay')
    gen = os.path.join(run.tools, 'cascade-gen')
    checker = os.path.normpath(os.path.join(run.tools, '..', 'tests', 'tools', 'nats-check'))
    return replay, gen, checker


def make_dump(run, gen, name, events, seed, root_share):
    """A cascade-gen dump (late parents, duplicates) in which a share of the reshares carry their
    true cascade root as `root` (and a few original posts a wrong one, which must not matter). Returns (path, expected routing key per post, events written)."""
    raw = os.path.join(run.tmp, f'{name}.raw.ndjson')
    subprocess.run([gen, '--events', str(events), '--seed', str(seed), '--late-parents', '0.08',
                    '--duplicates', '0.02', '--out', raw], check=True, timeout=120)
    evs = [json.loads(line) for line in open(raw)]
    parent = {e['post']: e.get('parent') for e in evs}

    def true_root(p):
        seen = set()
        while parent.get(p) is not None and p not in seen:
            seen.add(p)
            p = parent[p]
        return p

    path = raw
    if root_share > 0:
        rng, hinted = random.Random(seed), {}
        for e in evs:
            original = e.get('parent') is None
            if e['post'] not in hinted:  # decided once per post: a duplicate is an exact repeat
                hinted[e['post']] = rng.random() < (0.05 if original else root_share)
            if hinted[e['post']]:
                # an original post routes by its own id, so a wrong `root` on it must not matter
                e['root'] = 'not-' + e['post'] if original else true_root(e['post'])
        path = os.path.join(run.tmp, f'{name}.ndjson')
        with open(path, 'w') as f:
            for e in evs:
                f.write(json.dumps(e, separators=(',', ':')) + '\n')
    key = {}
    for e in evs:  # the producer's tracking, as DESIGN §9 and cascade-replay --help say
        if str(e['post']) in key:
            continue  # a post seen before goes where its first copy went
        if e.get('parent') is None:
            k = str(e['post'])  # an original post: its own id, whatever `root` says
        elif e.get('root') is not None:
            k = str(e['root'])
        else:
            k = key.get(str(e['parent']), str(e['parent']))
        key[str(e['post'])] = k
    exp_path = os.path.join(run.tmp, f'{name}.expect')
    with open(exp_path, 'w') as f:
        for p, k in key.items():
            f.write(f'{p}\t{k}\n')
    return path, exp_path, evs


def replay(run, replay_bin, args, name, timeout=120):
    err = os.path.join(run.tmp, f'{name}.stderr')
    reports.append(err)
    with open(err, 'wb') as ef:
        p = subprocess.run([replay_bin] + args, stdout=subprocess.PIPE, stderr=ef, timeout=timeout)
    return p.returncode, p.stdout.decode(errors='replace').strip(), open(err, errors='replace').read()


def nats_check(run, checker, urls, stream, expect, name):
    err = os.path.join(run.tmp, f'{name}.check.stderr')
    reports.append(err)
    with open(err, 'wb') as ef:
        p = subprocess.run([checker, '--nats', urls, '--stream', stream, '--expect', expect],
                           stdout=subprocess.PIPE, stderr=ef, timeout=120)
    out = p.stdout.decode(errors='replace').strip()
    counts = dict(zip(out.split()[0::2], map(int, out.split()[1::2]))) if out else {}
    return p.returncode, out + ' ' + open(err, errors='replace').read()[-1500:], counts


def replay_interrupted(run, replay_bin, args, name, in_stream, enough, act, timeout):
    """cascade-replay with args; once in_stream() counts enough messages (30 s at most), act(p),
    then wait up to timeout s for it. (running when act came, return code, stdout, stderr)."""
    err_path = os.path.join(run.tmp, f'{name}.stderr')
    reports.append(err_path)
    with open(err_path, 'wb') as ef:
        p = subprocess.Popen([replay_bin] + args, stdout=subprocess.PIPE, stderr=ef)
    deadline = time.time() + 30
    while p.poll() is None and time.time() < deadline and in_stream() < enough:
        time.sleep(0.01)
    running = p.poll() is None
    act(p)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    return running, p.returncode, out.decode(errors='replace').strip(), open(err_path, errors='replace').read()


def stream_msgs(cluster, i, stream):
    """Messages in the stream as node i's /jsz counts them (0 when it does not answer)."""
    try:
        z = cluster.jsz(i, '?streams=true')
    except (OSError, ValueError):
        return 0
    for acc in z.get('account_details') or []:
        for st in acc.get('stream_detail') or []:
            if st.get('name') == stream:
                return (st.get('state') or {}).get('messages', 0)
    return 0


def body(run):
    replay_bin, gen, checker = tool_paths(run)
    cluster = nats_harness.NatsCluster(run.tmp, 3)
    run.cluster = cluster
    t0 = time.time()
    cluster.start()
    check('three nats-server processes elect a JetStream meta leader', True,
          f'{time.time() - t0:.1f} s')
    urls = cluster.urls()

    # ---- the command line
    rc, out, err = replay(run, replay_bin, ['--help'], 'help')
    check('--help describes --nats, --stream, --partitions, --replicas',
          rc == 0 and all(f in out for f in ('--nats', '--stream', '--partitions', '--replicas')), out[-500:])
    rc, out, err = replay(run, replay_bin, ['--partitions', '4', '/dev/null'], 'usage1')
    check('--partitions without --nats: exit 2', rc == 2, err)
    rc, out, err = replay(run, replay_bin, ['--nats', urls, '--port', '7400', '/dev/null'], 'usage2')
    check('--nats with --port: exit 2', rc == 2, err)
    rc, out, err = replay(run, replay_bin, ['--nats', urls, '--partitions', '0', '/dev/null'], 'usage3')
    check('--partitions 0: exit 2', rc == 2, err)

    # ---- a dump with late parents, duplicates, and roots given for some reshares only
    path, expect, evs = make_dump(run, gen, 'd1', 30000, 11, 0.3)
    rc, out, err = replay(run, replay_bin, ['--nats', urls, '--partitions', '8', path], 'd1')
    m = SUMMARY.match(out.splitlines()[-1] if out else '')
    check('replay --nats exits 0 with the one-line summary', rc == 0 and m, f'{rc} {out} {err[-800:]}')
    check('every event was published and acked', m and int(m[1]) == len(evs) and int(m[2]) + int(m[3]) == len(evs),
          f'{out} (dump: {len(evs)} events)')
    check('it says it created the stream with 8 partitions and 3 replicas',
          'stream SHARES (created): 8 partitions (shares.0..7), 3 replicas' in err, err[-500:])
    rc, out, counts = nats_check(run, checker, urls, 'SHARES', expect, 'd1')
    check('nats-check: every post present, in its root\'s partition, copies exact', rc == 0, out)
    check('nats-check counted every event', counts.get('events') == len(evs), out)
    check('about 1000 events per message', counts.get('messages', 0) <= len(evs) // 1000 + 8 + 1, out)

    # the same dump again: an existing stream keeps its P (and the events are exact repeats)
    rc, out, err = replay(run, replay_bin, ['--nats', urls, '--partitions', '4', path], 'd1again')
    check('a second replay uses the existing stream\'s 8 partitions',
          rc == 0 and 'stream SHARES: 8 partitions' in err, f'{rc} {out} {err[-500:]}')
    rc, out, counts = nats_check(run, checker, urls, 'SHARES', expect, 'd1again')
    check('after it, every post is in one partition, its repeats exact', rc == 0 and
          counts.get('events') == 2 * len(evs), out)

    # ---- --from N: only the events from number N on
    n_from = len(evs) // 3
    rc, out, err = replay(run, replay_bin, ['--nats', urls, '--stream', 'FROM', '--replicas', '1',
                                            '--partitions', '3', '--from', str(n_from), path], 'from')
    m = SUMMARY.match(out.splitlines()[-1] if out else '')
    check('--from N publishes the events from N on', rc == 0 and m and int(m[1]) == len(evs) - n_from,
          f'{rc} {out} {err[-500:]}')
    check('--stream FROM --replicas 1: created with R=1',
          'stream FROM (created): 3 partitions (from.0..2), 1 replicas' in err, err[-300:])

    # ---- the C API directly: events with `root`, an annotation to every partition
    pub = os.path.join(os.path.dirname(checker), 'nats-pub')
    err_path = os.path.join(run.tmp, 'pub.stderr')
    reports.append(err_path)
    with open(err_path, 'wb') as ef:
        p = subprocess.run([pub, urls, 'API', '4', '5000'], stdout=subprocess.PIPE, stderr=ef, timeout=120)
    out = p.stdout.decode(errors='replace').strip()
    check('cc_nats_*: 5000 events and one annotation to 4 partitions, all acked',
          p.returncode == 0 and out == 'added 5004 acked 5004 resume none partitions 4',
          f'{p.returncode} {out} {open(err_path).read()[-500:]}')
    api_expect = os.path.join(run.tmp, 'api.expect')
    with open(api_expect, 'w') as f:
        for i in range(5000):
            f.write(f'p{i}\tr{i % 5}\n')
    rc, out, counts = nats_check(run, checker, urls, 'API', api_expect, 'api')
    check('each event in its root\'s partition, the annotation once in each of the 4',
          rc == 0 and counts.get('events') == 5004 and counts.get('without_post') == 4, out)

    # ---- SIGINT mid-replay, then --from where it says: nothing lost
    big, big_expect, big_evs = make_dump(run, gen, 'd2', 300000, 12, 0)
    running, rc, out, err = replay_interrupted(
        run, replay_bin, ['--nats', urls, '--stream', 'INT', '--replicas', '1', '--quiet', big], 'int',
        lambda: max(stream_msgs(cluster, i, 'INT') for i in range(3)), 50,
        lambda p: p.send_signal(signal.SIGINT), 60)
    m = re.search(r'add --from (\d+) to resume there', err)
    check('SIGINT mid-replay: exit 1 and where to resume', running and rc == 1 and m,
          f'{rc} {out!r} {err[-800:]}')
    if m:
        n_from = int(m[1])
        rc, out, err = replay(run, replay_bin, ['--nats', urls, '--stream', 'INT', '--from', m[1], big], 'int2')
        m2 = SUMMARY.match(out.splitlines()[-1] if out else '')
        check('the resumed replay publishes the rest', rc == 0 and m2 and int(m2[1]) == len(big_evs) - n_from,
              f'{rc} {out} {err[-500:]}')
        rc, out, counts = nats_check(run, checker, urls, 'INT', big_expect, 'int')
        check('interrupted + resumed: every post in the stream, in place, repeats exact',
              rc == 0 and counts.get('events', 0) >= len(big_evs), out)

    # ---- kill -9 of the stream's leader while a replay runs
    small = os.path.join(run.tmp, 'one.ndjson')
    with open(small, 'w') as f:
        f.write('{"post":"kk-first","actor":"a","ts":1700000000000}\n')
    with open(big_expect, 'a') as f:
        f.write('kk-first\tkk-first\n')
    rc, out, err = replay(run, replay_bin, ['--nats', urls, '--stream', 'KILL', '--partitions', '8', small],
                          'kill0')
    check('stream KILL created (R=3)', rc == 0, f'{out} {err}')
    leader = cluster.stream_leader('KILL')
    killed = []

    def kill_leader(p):
        cluster.kill9(leader)
        killed.append(time.time())
    # kill once a few dozen messages are in, of about 300
    running, rc, out, err = replay_interrupted(
        run, replay_bin, ['--nats', urls, '--stream', 'KILL', '--quiet', big], 'kill',
        lambda: stream_msgs(cluster, leader, 'KILL'), 30, kill_leader, 150)
    killed_at = killed[0]
    check('the leader was killed while the replay ran', running, f'leader n{leader + 1}')
    m = SUMMARY.match(out.splitlines()[-1] if out else '')
    check('the replay finishes across the election, every event acked',
          rc == 0 and m and int(m[1]) == len(big_evs) and int(m[2]) + int(m[3]) == len(big_evs),
          f'{rc} {out} {err[-1500:]}')
    print(f'# replay ended {time.time() - killed_at:.1f} s after kill -9 of n{leader + 1}: {out}; {err.strip()[-300:]}')
    new_leader, deadline = leader, time.time() + 30
    while new_leader == leader and time.time() < deadline:
        new_leader = cluster.stream_leader('KILL')
        time.sleep(0.1)
    check('another node leads the stream', new_leader != leader, f'n{new_leader + 1}')
    survivors = cluster.urls([i for i in range(3) if i != leader])
    rc, out, counts = nats_check(run, checker, survivors, 'KILL', big_expect, 'kill')
    check('after kill -9 of the leader: every acked event is in the stream, in its partition',
          rc == 0 and counts.get('events', 0) >= len(big_evs) + 1, out)

    # ---- the killed server back, then kill -9 of a follower while a replay runs
    cluster.start(leader)
    rc, out, err = replay(run, replay_bin, ['--nats', urls, '--stream', 'FOLLOW', '--partitions', '8', small],
                          'follow0')
    check('the killed server rejoins: stream FOLLOW created with R=3', rc == 0, f'{out} {err}')
    follower = next(i for i in range(3) if i != cluster.stream_leader('FOLLOW'))
    running, rc, out, err = replay_interrupted(
        run, replay_bin, ['--nats', urls, '--stream', 'FOLLOW', '--quiet', big], 'follow',
        lambda: max(stream_msgs(cluster, i, 'FOLLOW') for i in range(3)), 30,
        lambda p: cluster.kill9(follower), 150)
    m = SUMMARY.match(out.splitlines()[-1] if out else '')
    check('kill -9 of a follower mid-replay: the replay finishes, every event acked',
          running and rc == 0 and m and int(m[1]) == len(big_evs) and
          int(m[2]) + int(m[3]) == len(big_evs), f'{running} {rc} {out} {err[-800:]}')
    rc, out, counts = nats_check(run, checker, cluster.urls([i for i in range(3) if i != follower]), 'FOLLOW',
                                 big_expect, 'follow')
    check('after it, every acked event is in the stream, in its partition',
          rc == 0 and counts.get('events', 0) >= len(big_evs) + 1, out)


if __name__ == '__main__':
    nats_harness.run_main('cascade-nats-replay-', body, reports)
