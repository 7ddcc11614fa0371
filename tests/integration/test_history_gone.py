#!/usr/bin/python3
"""A data dir whose WAL was pruned behind two snapshots, then every snapshot deleted: cascaded
refuses to start (the events before the WAL's first segment exist nowhere), and its message tells
the truth about why no snapshot could be loaded: the directory holds none, rather than pointing
at snapshot_refused lines that were never logged. argv: the directory of cascaded, the tools dir."""
import glob
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Rpc, check, gen_forest, group_values, riffle, send_all  # noqa: E402


def ingest(srv, rng, n, prefix):
    trees, _ = gen_forest(rng, n, prefix, n_actors=500)
    acks, fatal = send_all(srv.ingest, group_values(rng, riffle(rng, trees)), timeout=60)
    return fatal is None


def body(run):
    srv, rng = run.srv, random.Random(5)
    rpc = Rpc(srv.query)
    ok = ingest(srv, rng, 40000, 'a') and rpc.call('snapshot')[0] is None
    ok = ok and ingest(srv, rng, 40000, 'b') and rpc.call('snapshot')[0] is None
    rpc.close()
    check('two snapshots written', ok)


def after(run):
    srv, data = run.srv, run.srv.data
    segs = sorted(glob.glob(os.path.join(data, 'wal', '*')))
    check('the WAL\'s first segments are gone', segs and not segs[0].endswith('1.wal'),
          str([os.path.basename(s) for s in segs]))
    for path in glob.glob(os.path.join(data, 'snapshots', '*')):
        os.unlink(path)
    p = subprocess.run([srv.bin, '--ingest-port', '0', '--query-port', '0', '--http-port', '0',
                        '--data-dir', data], capture_output=True, text=True, timeout=60)
    msg = next((l for l in p.stderr.splitlines() if l.startswith('cascaded: ')), '')
    check('no snapshot left and the WAL cut: it refuses to start, naming --allow-history-loss',
          p.returncode == 1 and '--allow-history-loss' in msg and 'ready' not in p.stdout, p.stderr[-1500:])
    check('the message points at no log line that was not written',
          'snapshot_refused lines above' not in msg or 'event=snapshot_refused' in p.stderr, p.stderr[-1500:])
    check('the message says the snapshots directory holds none', 'holds none' in msg, msg)


def main():
    harness.run_main('cascade-history-gone-', body, '--wal-segment-mb', '1', '--snapshot-interval', '0',
                     '--snapshot-on-exit', 'no', after=after)


if __name__ == '__main__':
    main()
