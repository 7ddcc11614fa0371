#!/usr/bin/python3
"""A data dir whose early events live only in snapshots (the WAL's first segments were removed
after two snapshots), and no snapshot can be loaded: cascaded refuses to start, naming the way
out, rather than start without those events; --allow-history-loss starts it from the WAL alone,
with an error in the log. argv: the directory of cascaded, the tools dir."""
import glob
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Rpc, check, gen_forest, group_values, riffle, send_all  # noqa: E402


def ingest(srv, rng, n, prefix):
    trees, _ = gen_forest(rng, n, prefix, n_actors=800)
    acks, fatal = send_all(srv.ingest, group_values(rng, riffle(rng, trees)), timeout=60)
    return fatal is None


def body(run):
    srv, data, rng = run.srv, run.srv.data, random.Random(3)
    rpc = Rpc(srv.query)
    ok = ingest(srv, rng, 40000, 'a') and rpc.call('snapshot')[0] is None
    ok = ok and ingest(srv, rng, 40000, 'b') and rpc.call('snapshot')[0] is None
    err, st = rpc.call('stats')
    rpc.close()
    posts = st.get('posts')
    check('two snapshots written', ok and st.get('snapshots_written') == 2, str(st))
    check('SIGTERM exits 0', srv.stop() == 0)
    segs = sorted(glob.glob(os.path.join(data, 'wal', '*')))
    check('the WAL\'s first segments are gone', segs and not segs[0].endswith('1.wal')
          and len(segs) < 8, str([os.path.basename(s) for s in segs]))
    snaps = glob.glob(os.path.join(data, 'snapshots', '*.snap'))
    for path in snaps:  # damage every snapshot in the middle
        with open(path, 'r+b') as f:
            f.seek(os.path.getsize(path) // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0xff]))
    p = subprocess.run([srv.bin, '--ingest-port', '0', '--query-port', '0', '--http-port', '0',
                        '--data-dir', data], capture_output=True, text=True, timeout=120)
    check('with no loadable snapshot and the WAL cut, it refuses to start', p.returncode == 1
          and '--allow-history-loss' in p.stderr and 'ready' not in p.stdout, p.stderr[-1500:])
    check('the refusal names the snapshots it could not load', 'snapshot_refused' in p.stderr, p.stderr[-800:])
    srv.extra = ['--allow-history-loss']
    srv.start()
    rpc = Rpc(srv.query)
    err, st = rpc.call('stats')
    rpc.close()
    check('--allow-history-loss starts it with what the WAL holds', err is None and 0 < st.get('posts', 0) < posts,
          f'{st.get("posts")} of {posts}')
    check('and says in the log what was lost', 'history_lost' in srv.stderr())


def main():
    harness.run_main('cascade-history-', body, '--wal-segment-mb', '1', '--snapshot-interval', '0')


if __name__ == '__main__':
    main()
