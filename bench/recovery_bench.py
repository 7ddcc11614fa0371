#!/usr/bin/python3
"""Start-up recovery rate (issue 18, DESIGN §8: >= 5 M events/s), for `make bench`.

Fills one data dir with EVENTS generated events (cascade-bench ingest against a server started
here with no periodic snapshot), stops it without a snapshot, then starts it twice on that dir:
once replaying the whole WAL, and, after a SIGUSR1 snapshot and a clean stop, once loading that
snapshot. Each start's own log line (`wal_replayed ... ms=`, `snapshot_loaded ... ms=`) gives the
time; the rate is events over it. Writes one JSON object to OUT.

usage: recovery_bench.py BUILD_DIR EVENTS OUT.json
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def start(cascaded, data, extra, log):
    """Starts cascaded on free ports; returns (process, ports dict, seconds until `ready`)."""
    t0 = time.monotonic()
    p = subprocess.Popen([cascaded, '--bind', '127.0.0.1', '--ingest-port', '0', '--query-port', '0',
                          '--http-port', '0', '--data-dir', data, '--snapshot-interval', '0',
                          '--analytics-interval', '0'] + extra,
                         stdout=subprocess.PIPE, stderr=log, text=True)
    line = p.stdout.readline()
    took = time.monotonic() - t0
    m = re.match(r'ready ingest=(\d+) query=(\d+) http=(\d+)', line)
    if not m:
        p.kill()
        sys.exit(f'recovery_bench: cascaded did not start (see {log.name}): {line!r}')
    return p, dict(zip(('ingest', 'query', 'http'), map(int, m.groups()))), took


def stop(p, sig=signal.SIGTERM):
    p.send_signal(sig)
    if p.wait(600) != 0:
        sys.exit(f'recovery_bench: cascaded exited {p.returncode}')


def last_ms(logpath, what):
    """events and ms of the last `what` line (wal_replayed, snapshot_loaded) in the log."""
    found = None
    for line in open(logpath):
        if what in line:
            ev = re.search(r'\bevents=(\d+)', line)
            ms = re.search(r'\bms=(\d+)', line)
            if ev and ms:
                found = (int(ev.group(1)), int(ms.group(1)))
    return found


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip().splitlines()[-1])
    build, events, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    cascaded = os.path.join(build, 'cascaded')
    bench = os.path.join(build, 'bench', 'cascade-bench')
    tmp = tempfile.mkdtemp(prefix='cascaded-recovery-')
    data = os.path.join(tmp, 'data')
    logpath = os.path.join(tmp, 'server.log')
    result = {'events': events}
    try:
        with open(logpath, 'a') as log:
            p, ports, _ = start(cascaded, data, ['--snapshot-on-exit', 'no'], log)
            rc = subprocess.run([bench, 'ingest', '--events', str(events), '--connections', '2',
                                 '--port', str(ports['ingest']), '--query-port', str(ports['query']),
                                 '--http-port', str(ports['http']), '--server-pid', str(p.pid)],
                                stdout=subprocess.DEVNULL, stderr=sys.stderr).returncode
            stop(p)
            if rc != 0:
                sys.exit('recovery_bench: cascade-bench ingest failed')
            result['wal_bytes'] = sum(os.path.getsize(os.path.join(data, 'wal', f))
                                      for f in os.listdir(os.path.join(data, 'wal')))
            # 1: the whole WAL, no snapshot
            p, _, ready_s = start(cascaded, data, ['--snapshot-on-exit', 'no'], log)
            got = last_ms(logpath, 'wal_replayed')
            result['wal_replay'] = {'events': got[0], 'ms': got[1], 'ready_s': round(ready_s, 3),
                                    'events_per_s': round(got[0] / max(got[1], 1) * 1000)}
            # 2: a snapshot of it (written on exit), then a start that loads it
            stop(p)
            p, _, _ = start(cascaded, data, ['--snapshot-on-exit', 'yes'], log)
            stop(p)
            p, _, ready_s = start(cascaded, data, ['--snapshot-on-exit', 'no'], log)
            got = last_ms(logpath, 'snapshot_loaded')
            stop(p)
            if got is None:
                sys.exit('recovery_bench: no snapshot_loaded line in the log')
            sdir = os.path.join(data, 'snapshots')
            snaps = [os.path.join(sdir, f) for f in os.listdir(sdir) if f.endswith('.snap')]
            result['snapshot_load'] = {'events': got[0], 'ms': got[1], 'ready_s': round(ready_s, 3),
                                       'events_per_s': round(got[0] / max(got[1], 1) * 1000),
                                       'bytes': max(map(os.path.getsize, snaps), default=0)}
        with open(out, 'w') as f:
            json.dump(result, f)
        print(json.dumps(result))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
