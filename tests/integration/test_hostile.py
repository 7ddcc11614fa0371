"""Hostile and unlucky clients against the real server (issue 16): an RPC client that pipelines
requests and never reads its answers does not grow the server (and is dropped once idle); a
slowloris HTTP client, and ingest/RPC connections that never authenticate or go quiet, are
closed by --handshake-timeout and --idle-timeout (counted in /metrics), while a producer that
has sent events may stay quiet; one port flooded with silent connections leaves the others
serving (per-port budgets), its refusals logged once a second; a low RLIMIT_NOFILE lowers
--max-connections at start-up (or refuses to start), so that more connections than fit are
refused cheaply instead of spinning in accept; a request over --max-rpc-request-bytes gets one
413. argv: the directory of cascaded, the tools dir."""
import http.client
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msgpack  # noqa: E402

import harness  # noqa: E402
from harness import IngestConn, Rpc, check  # noqa: E402

TOKEN = 'hostile-' + 'y' * 24


def rss_mb(pid):
    with open(f'/proc/{pid}/status') as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith('VmRSS:'))


def cpu_s(pid):
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def get(port, path, token=None, timeout=5):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    try:
        c.request('GET', path, headers={'Authorization': f'Bearer {token}'} if token else {})
        r = c.getresponse()
        return r.status, r.read()
    except OSError as e:
        return None, repr(e).encode()
    finally:
        c.close()


def limit_counts(srv, token=None):
    _, body = get(srv.http, '/metrics', token)
    out = {}
    for line in (body or b'').decode(errors='replace').splitlines():
        if line.startswith('cascaded_limit_violations_total{'):
            key, val = line.rsplit(' ', 1)
            out[key.split('"')[1]] = int(val)
    return out


def open_conns(srv, port):
    _, body = get(srv.http, '/metrics', TOKEN)
    for line in (body or b'').decode(errors='replace').splitlines():
        if line.startswith(f'cascaded_connections_open{{port="{port}"}}'):
            return int(line.rsplit(' ', 1)[1])
    return None


def read_to_eof(s, timeout):
    """Everything the peer sends until EOF, a reset or timeout s: (bytes, seconds, how it ended)."""
    t0, data = time.time(), b''
    s.settimeout(0.1)
    while time.time() - t0 < timeout:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except OSError as e:
            return data, time.time() - t0, repr(e)
        if not chunk:
            return data, time.time() - t0, 'eof'
        data += chunk
    return data, time.time() - t0, 'open'


def rpc_ok(port, token=None):
    try:
        r = Rpc(port, timeout=5)
        if token:
            r.call('auth', token=token)
        err, st = r.call('stats')
        r.close()
        return err is None and 'posts' in st
    except (OSError, RuntimeError):
        return False


def ingest_ok(port, post):
    try:
        c = IngestConn(port, timeout=5)
        c.send(msgpack.packb({'post': post, 'actor': 'flood', 'ts': 1000}))
        ack = c.wait_total(1, 5)
        c.close()
        return ack.get('ok', 0) + ack.get('dup', 0) == 1
    except OSError:
        return False


def tree_events(n):
    return [{'post': 'root', 'actor': 'a0', 'ts': 1000}] + [
        {'post': f'n{i}', 'actor': f'a{i % 97}', 'ts': 1000 + i, 'parent': 'root' if i < 40 else f'n{i // 3}'}
        for i in range(1, n)]


# ------------------------------------------------------------------------------------ the checks

def check_pipeliner(srv):
    """20,000 `cascade tree=true` requests on one connection that never reads: the server stops
    reading it once answers pile up, instead of queueing gigabytes of them."""
    harness.send_all(srv.ingest, [tree_events(3000)])
    r = Rpc(srv.query)
    err, res = r.call('cascade', post='root', tree=True)
    r.close()
    check('the 3000-post cascade is there', err is None and res.get('size') == 3000, str(err))
    start = rss_mb(srv.p.pid)
    # AddressSanitizer keeps freed memory in quarantine (256 MB) and pads every allocation
    with open(f'/proc/{srv.p.pid}/maps') as f:
        slack = 400 if 'libasan' in f.read() else 0
    s = socket.create_connection(('127.0.0.1', srv.query))
    s.setblocking(False)
    req = b''.join(msgpack.packb([0, i, 'cascade', [{'post': 'root', 'tree': True}]]) for i in range(20000))
    sent, t0, peak = 0, time.time(), start
    while time.time() - t0 < 6:
        try:
            if sent < len(req):
                sent += s.send(req[sent:sent + 65536])
            else:
                time.sleep(0.05)
        except BlockingIOError:
            time.sleep(0.05)
        peak = max(peak, rss_mb(srv.p.pid))
    check('a non-reading RPC pipeliner: the server grows by less than 100 MB in 6 s',
          peak - start < 100 + slack, f'{start:.0f} MB -> {peak:.0f} MB ({sent // (len(req) // 20000)} requests sent)')
    s.close()
    deadline, now = time.time() + 5, rss_mb(srv.p.pid)
    while time.time() < deadline and now > start + 50 + slack:
        time.sleep(0.2)
        now = rss_mb(srv.p.pid)
    check('after the pipeliner closed: RSS back within 50 MB of the start', now <= start + 50 + slack,
          f'{start:.0f} MB at the start, {now:.0f} MB 5 s after the close')
    # a pipelining client that does read gets every answer, in order
    s = socket.create_connection(('127.0.0.1', srv.query), timeout=20)
    s.sendall(b''.join(msgpack.packb([0, i, 'cascade', [{'post': 'root', 'tree': True}]]) for i in range(300)))
    u, ids = msgpack.Unpacker(raw=False), []
    try:
        while len(ids) < 300:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            u.feed(chunk)
            ids += [m[1] for m in u if m[2] is None]
    except OSError:
        pass
    s.close()
    check('a reading pipeliner: all 300 tree answers, in order', ids == list(range(300)), f'{len(ids)} answers')


def rpc_refusal(port, request):
    """Sends one request (the server may close before it has all of it) and reads to EOF: the
    msgpack values answered, and how the connection ended."""
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    try:
        s.sendall(request)
    except OSError:
        pass
    data, _, how = read_to_eof(s, 10)
    s.close()
    u = msgpack.Unpacker(raw=False)
    u.feed(data)
    return list(u), how


def check_single_413(srv):
    """A request over --max-rpc-request-bytes (1 MiB) gets one error 413, then the close."""
    big = msgpack.packb([0, 1, 'stats', [{f'k{i}': 'a' * 60000 for i in range(20)}]])
    got, how = rpc_refusal(srv.query, big)
    check('an RPC request over 1 MiB: exactly one 413, then EOF',
          len(got) == 1 and got[0][2].get('code') == 413 and how == 'eof', f'{got!r} {how}')


def check_rpc_cost(bin_dir, tmp):
    """A small RPC request that would unpack into far more memory (arrays of nils: 24 bytes of
    msgpack_object per byte) is refused with a 413 naming --max-value-memory, before the writer
    decodes it; an ordinary request on the same server is still answered."""
    srv = harness.Server(bin_dir, os.path.join(tmp, 'rpccost'), '--max-value-memory', '1M')
    srv.start()
    try:
        req = msgpack.packb([0, 7, 'stats', [{'x': [[None] * 38] * 2000}]])  # ~80 KB, ~1.9 MB unpacked
        got, how = rpc_refusal(srv.query, req)
        err = got[0][2] if got and isinstance(got[0], list) and len(got[0]) == 4 else None
        check('an RPC request costing more than --max-value-memory to unpack: 413 naming it',
              isinstance(err, dict) and err.get('code') == 413 and '--max-value-memory' in err.get('message', ''),
              f'{got!r:.300} {how}')
        check('... counted as rpc_value_memory', limit_counts(srv).get('rpc_value_memory') == 1,
              repr(limit_counts(srv)))
        check('... and an ordinary request is still answered', rpc_ok(srv.query))
    finally:
        srv.stop()


def flood(srv, port, name, n):
    """n silent connections on one port, then the other ports must still serve."""
    held = []
    for _ in range(n):
        try:
            held.append(socket.create_connection(('127.0.0.1', port), timeout=5))
        except OSError:
            break
    time.sleep(0.3)
    if name != 'http':
        st, _ = get(srv.http, '/healthz')
        check(f'{n} silent {name} connections: /healthz 200', st == 200, str(st))
    if name != 'ingest':
        check(f'{n} silent {name} connections: an ingest event acked', ingest_ok(srv.ingest, f'flood-{name}'))
    if name != 'query':
        check(f'{n} silent {name} connections: an RPC answered', rpc_ok(srv.query))
    for s in held:
        s.close()


def check_floods(srv):
    # more than --max-connections 60 on each port in turn (its budget: ingest 15, query 15, http 30)
    flood(srv, srv.http, 'http', 65)
    flood(srv, srv.ingest, 'ingest', 65)
    flood(srv, srv.query, 'query', 65)
    lines = srv.stderr().count('event=connection_refused')
    check('105 refusals in 3 floods: logged once a second at most', 1 <= lines <= 8, f'{lines} lines')
    time.sleep(0.5)
    check('after the floods every port serves', get(srv.http, '/healthz')[0] == 200 and rpc_ok(srv.query)
          and ingest_ok(srv.ingest, 'after-floods'))


def check_timeouts(bin_dir, tmp):
    """--handshake-timeout 1 --idle-timeout 2 with a token."""
    tokfile = os.path.join(tmp, 'token')
    with open(tokfile, 'w') as f:
        f.write(TOKEN)
    os.chmod(tokfile, 0o600)
    srv = harness.Server(bin_dir, os.path.join(tmp, 'timeouts'), '--auth-token-file', tokfile,
                         '--handshake-timeout', '1', '--idle-timeout', '2')
    srv.start()
    try:
        before = limit_counts(srv, TOKEN)
        # slowloris: a header byte every 0.25 s
        s = socket.create_connection(('127.0.0.1', srv.http))
        t0, head, data, how = time.time(), b'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ' + b'a' * 100, b'', 'open'
        for i in range(len(head)):
            if time.time() - t0 > 4:
                break
            try:
                s.send(head[i:i + 1])
            except OSError:
                pass
            got, _, how = read_to_eof(s, 0.25)
            data += got
            if how != 'open':
                break
        took = time.time() - t0
        s.close()
        check('slowloris HTTP (a byte every 0.25 s): 408, then closed within 2.5 s',
              data.startswith(b'HTTP/1.1 408 Request Timeout') and how == 'eof' and took < 2.5, f'{data[:40]!r} {how} after {took:.1f} s')
        # ingest and RPC connections that never authenticate
        c = IngestConn(srv.ingest)
        t0 = time.time()
        closed = c.wait_closed(4)
        took = time.time() - t0
        fatal = c.fatal() or ''
        c.close()
        check('ingest without the auth map: fatal naming --handshake-timeout, closed within 2.5 s',
              closed and took < 2.5 and 'handshake-timeout' in fatal, f'{fatal!r} after {took:.1f} s')
        s = socket.create_connection(('127.0.0.1', srv.query))
        data, took, how = read_to_eof(s, 4)
        s.close()
        u = msgpack.Unpacker(raw=False)
        u.feed(data)
        got = next(u, None)
        check('RPC without auth: error 408 naming --handshake-timeout, closed within 2.5 s',
              isinstance(got, list) and got[2] and got[2].get('code') == 408
              and 'handshake-timeout' in got[2].get('message', '') and how == 'eof' and took < 2.5, f'{got!r} {how}')
        # a busy RPC connection outlives the idle timeout; a quiet one does not
        r = Rpc(srv.query)
        r.call('auth', token=TOKEN)
        ok = True
        for _ in range(7):
            time.sleep(0.5)
            ok = ok and r.call('stats')[0] is None
        check('an RPC connection asking every 0.5 s stays open past --idle-timeout 2', ok)
        r.s.settimeout(None)
        data, took, how = read_to_eof(r.s, 5)
        r.close()
        u = msgpack.Unpacker(raw=False)
        u.feed(data)
        got = next(u, None)
        check('a quiet RPC connection: error 408 naming --idle-timeout, closed after ~2 s',
              isinstance(got, list) and got[2] and 'idle-timeout' in got[2].get('message', '') and how == 'eof'
              and 1.5 < took < 3.5, f'{got!r} {how} after {took:.1f} s')
        # an authenticated producer that sends nothing is closed; one that sent events may be quiet
        c = IngestConn(srv.ingest)
        c.send(msgpack.packb({'auth': TOKEN}))
        t0 = time.time()
        closed = c.wait_closed(5)
        took = time.time() - t0
        fatal = c.fatal() or ''
        c.close()
        check('a producer that sends no event: a fatal naming --idle-timeout after ~2 s',
              closed and 'idle-timeout' in fatal and 1.5 < took < 3.5, f'{fatal!r} after {took:.1f} s')
        c = IngestConn(srv.ingest)
        c.send(msgpack.packb({'auth': TOKEN}) + msgpack.packb({'post': 'quiet', 'actor': 'q', 'ts': 5}))
        ack = c.wait_total(1, 5)
        time.sleep(3)
        c.send(msgpack.packb({'post': 'quiet2', 'actor': 'q', 'ts': 6}))
        ack2 = c.wait_total(2, 5)
        c.close()
        check('a producer that sent events, then quiet for 3 s: still connected, its next event acked',
              ack.get('ok') == 1 and ack2.get('ok') == 2 and c.fatal() is None, f'{ack2} {c.fatal()!r}')
        # keep-alive HTTP: answered, then closed once quiet
        s = socket.create_connection(('127.0.0.1', srv.http))
        s.sendall(b'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
        data, took, how = read_to_eof(s, 5)
        s.close()
        check('keep-alive HTTP: answered, then closed after ~2 s quiet',
              data.startswith(b'HTTP/1.1 200') and data.count(b'HTTP/1.1') == 1 and how == 'eof'
              and 1.5 < took < 3.5, f'{data[:30]!r} {how} after {took:.1f} s')
        # a pipeliner that never reads: once its answers stop moving it is idle, gets its 408
        # queued behind them, and is dropped 2 s later since that cannot get out either
        c = IngestConn(srv.ingest)
        c.send(msgpack.packb({'auth': TOKEN}) + msgpack.packb(tree_events(3000)))
        c.wait_total(3000, 10)
        c.close()
        s = socket.create_connection(('127.0.0.1', srv.query))
        s.sendall(msgpack.packb([0, 0, 'auth', [{'token': TOKEN}]]))
        s.setblocking(False)
        req = b''.join(msgpack.packb([0, i, 'cascade', [{'post': 'root', 'tree': True}]]) for i in range(1, 5001))
        sent, t0, left = 0, time.time(), None
        while time.time() - t0 < 10:
            try:
                sent += s.send(req[sent:sent + 65536]) if sent < len(req) else 0
            except BlockingIOError:
                pass
            time.sleep(0.1)
            left = open_conns(srv, 'rpc')
            if time.time() - t0 > 1 and left == 0:
                break
        took = time.time() - t0
        s.close()
        check('a non-reading pipeliner: dropped once its answers stop moving (idle 2 s + 2 s)',
              left == 0 and took < 8, f'{left} rpc connections open after {took:.1f} s')
        after = limit_counts(srv, TOKEN)
        hs = after.get('handshake_timeout', 0) - before.get('handshake_timeout', 0)
        idle = after.get('idle_timeout', 0) - before.get('idle_timeout', 0)
        check('the closures are counted in /metrics', hs == 3 and idle == 4, f'handshake {hs} idle {idle}')
        logs = srv.stderr().count('event=connection_timeout')
        check('the closures are logged, a line per second at most', 1 <= logs <= 7, f'{logs} lines')
        check('the timeouts server stops cleanly', srv.stop() == 0)
        reports = harness.sanitizer_reports([srv.err_path])
        check('the timeouts server: no sanitizer reports', not reports, '\n'.join(reports[:10]))
    finally:
        srv.kill()


def check_fd_exhaustion(bin_dir, tmp):
    """RLIMIT_NOFILE 64 with the default --max-connections 1024: lowered at start with a log
    line, so that more connections than it can hold are refused at little cost instead of
    failing accept (which spun a core and logged each attempt), and it serves once they close.
    (io_uring's accept takes the fd limit when it is armed, so a limit lowered under the
    running server cannot make it fail: the back-off on EMFILE is checked by hand.)"""
    def wrapped(nofile):
        """A directory whose `cascaded` runs the real one under RLIMIT_NOFILE nofile:nofile."""
        wrap_dir = os.path.join(tmp, f'wrap{nofile}')
        os.makedirs(wrap_dir)
        wrapper = os.path.join(wrap_dir, 'cascaded')
        with open(wrapper, 'w') as f:
            f.write('#!/usr/bin/python3\nimport os, resource, sys\n'
                    f'resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}))\n'
                    f'os.execv({os.path.join(bin_dir, "cascaded")!r}, ["cascaded"] + sys.argv[1:])\n')
        os.chmod(wrapper, 0o755)
        return wrap_dir

    p = subprocess.Popen([os.path.join(wrapped(24), 'cascaded'), '--data-dir', os.path.join(tmp, 'fds24'),
                          '--ingest-port', '0', '--query-port', '0', '--http-port', '0'],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        err = 'still running after 15 s: ' + err
    check('RLIMIT_NOFILE 24: refused at start, saying what to raise', p.returncode == 1
          and 'RLIMIT_NOFILE' in err and 'ulimit -n' in err, err[-400:])
    srv = harness.Server(wrapped(64), os.path.join(tmp, 'fds'))
    srv.start()
    try:
        pid = srv.p.pid
        check('RLIMIT_NOFILE 64: --max-connections lowered at start, with a log line',
              'event=max_connections_lowered' in srv.stderr(), srv.stderr()[-600:])
        held, c0 = [], cpu_s(pid)
        for _ in range(120):
            try:
                held.append(socket.create_connection(('127.0.0.1', srv.http), timeout=2))
            except OSError:
                break
        time.sleep(2)
        used = cpu_s(pid) - c0
        for s in held:
            s.close()
        log = srv.stderr()
        lines = log.count('event=accept_failed') + log.count('event=connection_refused')
        check('120 connections at RLIMIT_NOFILE 64: under 0.5 s of CPU in 2 s, at most 6 log lines',
              used < 0.5 and lines <= 6, f'cpu {used:.2f} s, {lines} lines')
        time.sleep(1.5)
        check('after they closed: every port serves', get(srv.http, '/healthz')[0] == 200 and rpc_ok(srv.query)
              and ingest_ok(srv.ingest, 'fds-back'))
        check('the RLIMIT_NOFILE server stops cleanly', srv.stop() == 0)
        reports = harness.sanitizer_reports([srv.err_path])
        check('the RLIMIT_NOFILE server: no sanitizer reports', not reports, '\n'.join(reports[:10]))
    finally:
        srv.kill()


def check_startup(bin_dir, tmp):
    for flag, val in (('--handshake-timeout', '0'), ('--idle-timeout', 'x'), ('--max-http-connections', '0')):
        p = subprocess.run([os.path.join(bin_dir, 'cascaded'), '--data-dir', os.path.join(tmp, 'x'), flag, val],
                           capture_output=True, text=True, timeout=30)
        check(f'{flag} {val} refused at start-up', p.returncode == 2 and flag[2:] in p.stderr, p.stderr)


def main():
    def unharmed(run):
        check('the server is unharmed', run.srv.alive() and get(run.srv.http, '/healthz')[0] == 200)
    harness.run_main('cascade-hostile-', [
        lambda r: check_pipeliner(r.srv), lambda r: check_single_413(r.srv), lambda r: check_rpc_cost(r.bin_dir, r.tmp),
        lambda r: check_floods(r.srv),
        lambda r: check_timeouts(r.bin_dir, r.tmp), lambda r: check_fd_exhaustion(r.bin_dir, r.tmp),
        lambda r: check_startup(r.bin_dir, r.tmp), unharmed], '--max-connections', '60')


if __name__ == '__main__':
    main()
