"""Decoder amplification (issue 16) against the real server: 4.1 MB of msgpack (100,000 arrays of
38 nils in one value) unpacks to ~130 MB of msgpack-c objects. Eight connections each sending it
must each get a fatal message naming the memory limit, counted in /metrics, while the server's
peak resident memory (VmHWM) stays far below what unpacking them would take; a legitimate 4 MiB
array of ordinary events is still accepted whole. With --max-memory, decoding shares a quarter
of it: a value costing more is refused at once, and many connections sending values that fit
one at a time are each either taken or refused with a resend-later message, the peak staying
under the limit. argv: the directory of cascaded, the tools dir."""
import json
import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msgpack  # noqa: E402

import harness  # noqa: E402
from harness import IngestConn, Rpc, Server, check, metric  # noqa: E402

HOSTILE = msgpack.packb([[None] * 38 for _ in range(100_000)])  # 4.1 MB, ~130 MB unpacked
MIB = 1 << 20


def vm(pid, key):
    with open(f'/proc/{pid}/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ':'))


def legit_batch(tools, tmp):
    """One msgpack array of cascade-gen's events, as close to 4 MiB as they come."""
    dump = os.path.join(tmp, 'gen.ndjson')
    subprocess.run([os.path.join(tools, 'cascade-gen'), '--events', '70000', '--seed', '3', '--out', dump],
                   check=True, capture_output=True, timeout=60)
    out, size = [], 5
    with open(dump) as f:
        for line in f:
            e = json.loads(line)
            n = len(msgpack.packb(e))
            if size + n > 4 * MIB:
                break
            out.append(e)
            size += n
    return out


def fatal_map(c):
    with c.cv:
        return next((m for m in c.msgs if isinstance(m, dict) and 'fatal' in m), None)


def check_resend_from(port):
    """DESIGN §4: a fatal that asks for a resend names the first event to send again."""
    c = IngestConn(port)
    c.send(msgpack.packb([{'post': 'r0', 'actor': 'a', 'ts': 1000}, {'post': 'r1', 'actor': 'a', 'ts': 1001}]))
    c.wait_total(2)
    c.send(HOSTILE)
    c.wait_closed(30)
    m = fatal_map(c)
    c.close()
    check('the fatal for a value past the memory limit carries resend_from (2: the events before it)',
          m is not None and m.get('resend_from') == 2, str(m))


def send_all(port, values, n_events, timeout=60):
    """Each value on its own connection, all at once; each connection's fatal message (or None)
    and last ack, once it got a fatal, was closed, or had n_events acked."""
    conns = [IngestConn(port) for _ in values]
    threads = [threading.Thread(target=c.send, args=(v,)) for c, v in zip(conns, values)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.wait_total(n_events, timeout)
    out = [(c.fatal(), c.last()) for c in conns]
    for c, (f, _) in zip(conns, out):
        m = fatal_map(c)
        if f is not None and 'memory' in f and (m or {}).get('resend_from') != c.last().get('ok', 0):
            out.append(('resend_from missing or wrong', m))
    for c in conns:
        c.close()
    return out


def check_default(srv, tools, tmp):
    idle = vm(srv.p.pid, 'VmRSS')
    res = send_all(srv.ingest, [HOSTILE] * 8, 100_000)
    peak = vm(srv.p.pid, 'VmHWM')
    print(f'# idle VmRSS {idle / MIB:.0f} MiB, peak after 8 hostile values {peak / MIB:.0f} MiB')
    check('8 hostile values: each connection gets a fatal naming the memory limit',
          all(f and 'memory to decode exceeds the limit' in f for f, _ in res), str(res[:2]))
    check('8 hostile values: the peak resident memory stays bounded (< 120 MiB; unpacking them '
          'takes ~1 GiB)', peak < 120 * MIB, f'{peak / MIB:.0f} MiB')
    check('8 hostile values: none of their events reached the engine',
          all(a.get('ok', 0) + a.get('rej', 0) == 0 for _, a in res), str([a for _, a in res][:3]))
    check('/metrics counts them (ingest_value_memory)',
          metric(srv, 'cascaded_limit_violations_total{limit="ingest_value_memory"}') == 8)
    check_resend_from(srv.ingest)

    evs = legit_batch(tools, tmp)
    value = msgpack.packb(evs)
    print(f'# legitimate batch: {len(evs)} events, {len(value)} bytes')
    [(fatal, ack)] = send_all(srv.ingest, [value], len(evs))
    check('a 4 MiB array of ordinary events is accepted whole',
          fatal is None and ack.get('ok') == len(evs), f'{fatal} {ack}')
    r = Rpc(srv.query)
    err, st = r.call('stats')
    r.close()
    check('the engine holds exactly those events (and the 2 before the resend check)',
          err is None and st.get('posts') == len(evs) + 2, str(st)[:300])
    print(f'# peak after the legitimate batch {vm(srv.p.pid, "VmHWM") / MIB:.0f} MiB')


def check_max_memory(bin_dir, tmp):
    # 100,000 arrays of 10 nils: 1.1 MB that cost ~36 MiB to unpack (under the default 64 MiB)
    mid = msgpack.packb([[None] * 10 for _ in range(100_000)])
    srv = Server(bin_dir, os.path.join(tmp, 'small'), '--max-memory', '100M')  # decoding: 25 MiB
    try:
        srv.start()
        [(fatal, _)] = send_all(srv.ingest, [mid], 100_000)
        check('--max-memory 100M: a value costing 36 MiB is over the quarter of it, refused',
              fatal and 'exceeds the limit of 26214400' in fatal, str(fatal))
        [(fatal, _)] = send_all(srv.ingest, [HOSTILE], 100_000)
        check('--max-memory 100M: the hostile value is refused', fatal and 'memory' in fatal, str(fatal))
        check('--max-memory 100M: SIGTERM exits 0', srv.stop() == 0)
    finally:
        srv.kill()
    # 16 connections at once, each a value of ~36 MiB, decoding room for two: each is taken (all
    # its 100,000 entries rejected as bad_type) or refused for now; the peak stays under the limit
    srv = Server(bin_dir, os.path.join(tmp, 'busy'), '--max-memory', '400M')
    try:
        srv.start()
        res = send_all(srv.ingest, [mid] * 16, 100_000)
        taken = sum(1 for f, a in res if f is None and a.get('rej') == 100_000)
        later = sum(1 for f, a in res if f and 'resend it later' in f)
        peak = vm(srv.p.pid, 'VmHWM')
        print(f'# 16 values of 36 MiB with --max-memory 400M: {taken} taken, {later} refused for now, '
              f'peak {peak / MIB:.0f} MiB')
        check('--max-memory 400M, 16 values at once: each taken or refused to resend later',
              len(res) == 16 and taken + later == 16 and taken >= 1, str(res[16:] or res[:3]))
        check('--max-memory 400M: the peak resident memory stays under it', peak < 400 * MIB, f'{peak / MIB:.0f}')
        check('--max-memory 400M: SIGTERM exits 0', srv.stop() == 0)
    finally:
        srv.kill()


def main():
    harness.run_main('cascade-decmem-', lambda run: check_default(run.srv, run.tools, run.tmp),
                     after=lambda run: check_max_memory(run.bin_dir, run.tmp))


if __name__ == '__main__':
    main()
