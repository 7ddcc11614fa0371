#!/usr/bin/python3
"""A failed WAL fsync: refuse, rescue with a snapshot, resume, lose nothing (issue 18, DESIGN §6).

usage: /usr/bin/python3 test_wal_faults.py BIN_DIR [TOOLS_DIR]

After a failed fsync the kernel may have dropped written pages of the WAL segment: events already
acked (under --fsync everysec) may be gone from the disk though the engine holds them. The
server (CASCADE_TEST_WAL_FAULTS=fsync=2: its second fsync fails, injected in the WAL's I/O path)
must then refuse ingest (a fatal naming the event to resend; stats say so), go on in a new
segment, write a snapshot of everything it holds, and take events again once that is on disk,
with no restart. To stand for the dropped pages, the failed segment is then overwritten with
garbage while the server is down after a kill -9: the restart must not need it (the rescue
snapshot covers it) and must hold exactly what a reference server fed the same events holds.
Before this change the WAL refused every append after a failed fsync until a restart.
"""
import glob
import random

import harness
from harness import *  # noqa: F401,F403

ARGS = ['--snapshot-interval', '0', '--analytics-interval', '0', '--snapshot-on-exit', 'no', '--fsync', 'everysec']


def batches(seed, n_batches, per):
    rng = random.Random(seed)
    out = []
    for k in range(n_batches):
        trees, _ = gen_forest(rng, per, f'b{k}')
        out.append([e for t in trees for e in t])
    return out


def figures(srv):
    st = stats_of(srv)
    return {k: st.get(k) for k in ('posts', 'cascades', 'actors', 'edges', 'accepted', 'duplicate')}


def wait_for(pred, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def body(run):
    tmp = run.tmp
    bs = batches(5, 4, 3000)

    ref = Server(run.bin_dir, os.path.join(tmp, 'ref'), *ARGS).start()
    for b in bs:
        acks, fatal = send_all(ref.ingest, [b])
        check('the reference server takes a batch', fatal is None and ack_total(acks[-1] if acks else {}) == len(b))
    want = figures(ref)
    ref.stop()

    os.environ['CASCADE_TEST_WAL_FAULTS'] = 'fsync=2'
    try:
        srv = Server(run.bin_dir, os.path.join(tmp, 'data'), *ARGS).start()
    finally:
        del os.environ['CASCADE_TEST_WAL_FAULTS']
    check('the server says faults are injected', 'event=test_wal_faults' in srv.stderr())

    # the everysec syncer fsyncs about a second after each batch; one of those fails (which one
    # depends on how many fsyncs start-up made): the batch after it is refused
    refused = None
    for k in range(len(bs)):
        acks, fatal = send_all(srv.ingest, [bs[k]])
        if fatal is not None:
            refused = k
            break
        check(f'batch {k} acked', acks and acks[-1].get('ok') == len(bs[k]), repr(acks[-1:]))
        time.sleep(1.6)
    check('after the failed fsync a later batch is refused with a fatal naming its event 0, none of it acked',
          refused and 'resend from event 0' in str(fatal).lower() and not any(a.get('ok') for a in acks),
          f'{refused} {fatal!r} {acks[-1:]}')
    if not refused:
        return
    st = stats_of(srv)
    check('stats: wal_writable 0 and why', st.get('wal_writable') == 0 and st.get('wal_error'), f'{st.get("wal_error")!r}')
    check('the log says the WAL is rescued by a snapshot', 'event=wal_rescue ' in srv.stderr(), srv.stderr()[-1500:])
    check('the rescue snapshot is written', wait_for(lambda: 'event=snapshot_written' in srv.stderr()), srv.stderr()[-1500:])
    shown = figures(srv)
    check('nothing of the refused batch is shown', shown['posts'] < want['posts'])

    for k in range(refused, len(bs)):
        acks, fatal = send_all(srv.ingest, [bs[k]])
        check(f'the resend of batch {k} is taken, no restart needed',
              fatal is None and acks and acks[-1].get('ok') == len(bs[k]), f'{fatal!r} {acks[-1:]}')
    st = stats_of(srv)
    check('stats: wal_writable 1 again', st.get('wal_writable') == 1 and st.get('wal_error') is None)
    check('the running server holds every event once', figures(srv) == want, f'want {want}, got {figures(srv)}')

    srv.stop(signal.SIGKILL)
    segs = sorted(glob.glob(os.path.join(srv.data, 'wal', '*.wal')))
    check('the WAL went on in a new segment', len(segs) >= 2, repr(segs))
    if len(segs) >= 2:
        # the pages the failed fsync may have dropped: the failed segment's records are garbage now
        with open(segs[-2], 'r+b') as f:
            size = f.seek(0, 2)
            f.seek(16)
            f.write(bytes(random.Random(1).randrange(256) for _ in range(max(0, size - 16))))
    srv.start()
    check('the restart loads the rescue snapshot and needs nothing of the failed segment',
          figures(srv) == want, f'want {want}, got {figures(srv)}\n{srv.stderr()[-1500:]}')


if __name__ == '__main__':
    run_main('cascade-wal-faults-', body, server=False)
