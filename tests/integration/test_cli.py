#!/usr/bin/python3
"""Integration test of cascaded's command line (DESIGN §7) and start-up behaviour.

usage: /usr/bin/python3 test_cli.py BIN_DIR      (BIN_DIR holds the built `cascaded`)

Checks --help (exit 0, every flag named), --version, bad flags and values (exit 2, a message on
stderr, no ready line), --config files (ports, data dir, fsync, comments; flags override the file),
the ready line (exactly one stdout line, printed only once the ports accept), the default data dir,
structured stderr logs, SIGTERM/SIGINT (exit 0), a port already in use, an unusable data dir and a
data dir already in use by another server.
Every server gets free loopback ports (port 0 or a port the test just found free) and a temporary
data dir, and is stopped by PID. Prints one line per check and ends with 'N passed, M failed';
exit status 1 if any failed. Needs Debian's python3-msgpack.
"""
import glob
import os
import re
import select
import signal
import socket
import subprocess
import time

import msgpack
import harness
from harness import check, free_ports, sanitizer_reports

FLAGS = ['--bind', '--ingest-port', '--query-port', '--http-port', '--data-dir', '--fsync', '--config', '--help',
         '--version', '--http-allowed-hosts']
procs = []


def run(bin_path, args, cwd=None, timeout=20):
    """Runs cascaded to completion (for flags that must exit): (status, stdout, stderr)."""
    p = subprocess.Popen([bin_path] + args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    procs.append(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return None, out, err + '\n[killed: still running after %d s]' % timeout
    return p.returncode, out, err


class Proc:
    """A server process: stdout read without blocking, stderr to a file."""

    def __init__(self, bin_path, args, cwd, err_path):
        self.err_path = err_path
        with open(err_path, 'wb') as err:
            self.p = subprocess.Popen([bin_path] + args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=err)
        procs.append(self.p)
        self.out = b''

    def read_stdout(self, timeout):
        """Reads what stdout has until timeout, or until EOF; returns everything read so far."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            r, _, _ = select.select([self.p.stdout], [], [], max(0.0, min(0.1, deadline - time.time())))
            if r:
                chunk = os.read(self.p.stdout.fileno(), 4096)
                if not chunk:
                    break
                self.out += chunk
        return self.out

    def wait_ready(self, timeout=30):
        """The parsed ready line, or None (process exited or timeout)."""
        deadline = time.time() + timeout
        while b'\n' not in self.out and time.time() < deadline:
            r, _, _ = select.select([self.p.stdout], [], [], 0.1)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 4096)
                if not chunk:
                    break
                self.out += chunk
        line = self.out.split(b'\n')[0].decode(errors='replace')
        m = re.fullmatch(r'ready ingest=(\d+) query=(\d+) http=(\d+)', line.strip())
        return tuple(map(int, m.groups())) if m else None

    def stderr(self):
        with open(self.err_path, errors='replace') as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                return None
        return self.p.returncode


def rpc_stats(port):
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    try:
        s.sendall(msgpack.packb([0, 7, 'stats', [{}]]))
        u = msgpack.Unpacker(raw=False, strict_map_key=False)
        while True:
            data = s.recv(65536)
            if not data:
                return None
            u.feed(data)
            for m in u:
                return m
    finally:
        s.close()


def ingest_one(port, post):
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    try:
        s.sendall(msgpack.packb({'post': post, 'actor': 'cli', 'ts': 1}))
        u = msgpack.Unpacker(raw=False, strict_map_key=False)
        while True:
            data = s.recv(65536)
            if not data:
                return None
            u.feed(data)
            for m in u:
                if isinstance(m, dict) and sum(m.get(k, 0) for k in ('ok', 'dup', 'rej')) >= 1:
                    return m
    finally:
        s.close()


def refused(port):
    """Opens a connection: the bytes the server sent at once (a refusal) and the socket."""
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    r, _, _ = select.select([s], [], [], 0.5)
    return (s.recv(65536) if r else b''), s


def check_cli_refused(server, zero_ports, tmp, tools):
    """cascade-cli against a query port at its connection limit prints the server's reason and
    exits 5 (not 'not a msgpack-RPC response'); pointed at the HTTP port it says so."""
    cli = os.path.join(tools, 'cascade-cli')
    s = server(zero_ports(os.path.join(tmp, 'full')) + ['--max-connections', '2'])
    held = []
    try:
        ports = s.wait_ready()
        check('--max-connections 2: ready', ports is not None, s.stderr()[-300:])
        if not ports:
            return
        _, query, http = ports
        why = b''
        while not why and len(held) < 40:  # fill the query port, however its budget is shared
            why, sock = refused(query)
            held.append(sock)
        check('the query port refuses a connection past the limit', why != b'', f'{len(held)} held')
        p = subprocess.run([cli, '--port', str(query), '--timeout', '10', 'stats'], capture_output=True,
                           text=True, timeout=30)
        check('cascade-cli at the connection limit: exit 5, the server\'s reason on stderr',
              p.returncode == 5 and 'too many connections' in p.stderr and 'not a msgpack-RPC' not in p.stderr,
              f'status {p.returncode}, stderr {p.stderr!r}')
        p = subprocess.run([cli, '--help'], capture_output=True, text=True, timeout=30)
        check('cascade-cli --help documents exit 5', re.search(r'\b5 the server refused', p.stdout) is not None,
              p.stdout[-600:])
        for sock in held:
            sock.close()
        held = []
        p = subprocess.run([cli, '--port', str(http), '--timeout', '10', 'stats'], capture_output=True,
                           text=True, timeout=30)
        check('cascade-cli pointed at the HTTP port: says it answered in HTTP', p.returncode == 3
              and 'HTTP' in p.stderr and 'query port' in p.stderr, f'status {p.returncode}, stderr {p.stderr!r}')
        check('SIGTERM exits 0', s.stop() == 0)
    finally:
        for sock in held:
            sock.close()
        s.stop(signal.SIGKILL)


def body(t):
    bin_dir, tools, tmp = t.bin_dir, t.tools, t.tmp
    cascaded = os.path.join(bin_dir, 'cascaded')
    n = [0]

    def server(args, cwd=None):
        n[0] += 1
        return Proc(cascaded, args, cwd or tmp, os.path.join(tmp, f'stderr.{n[0]}'))

    def zero_ports(data):
        return ['--bind', '127.0.0.1', '--ingest-port', '0', '--query-port', '0', '--http-port', '0', '--data-dir', data]

    # --help and --version
    st, out, err = run(cascaded, ['--help'], cwd=tmp)
    check('--help exits 0', st == 0, f'status {st}, stderr {err[-300:]!r}')
    missing = [f for f in FLAGS if f not in out]
    check('--help prints usage to stdout naming every flag', out.strip() and not missing, f'missing {missing}')
    check('--help mentions the fsync policies', all(re.search(rf'\b{w}\b', out) for w in ('always', 'everysec', 'no')),
          out[-500:])
    st, out, err = run(cascaded, ['--version'], cwd=tmp)
    check('--version exits 0 and prints "cascaded <version>"',
          st == 0 and re.fullmatch(r'cascaded \d+\.\d+\.\d+\S*\n?', out) is not None, f'{st} {out!r} {err!r}')
    check('--help and --version create no data dir', not os.path.exists(os.path.join(tmp, 'cascaded-data')))

    # bad flags and values: status 2, a message on stderr, never a running server
    data = os.path.join(tmp, 'bad')
    bad_cases = [
        ('an unknown flag', ['--no-such-flag']),
        ('a stray argument', ['extra-argument']),
        ('--fsync sometimes', ['--fsync', 'sometimes']),
        ('--fsync without a value', ['--fsync']),
        ('--ingest-port abc', ['--ingest-port', 'abc']),
        ('--query-port 70000', ['--query-port', '70000']),
        ('--http-port -1', ['--http-port', '-1']),
        ('--ingest-port 12x', ['--ingest-port', '12x']),
        ('--ingest-port empty', ['--ingest-port', '']),
        ('--http-allowed-hosts with a port', ['--http-allowed-hosts', 'a.example:80']),
        ('--http-allowed-hosts empty', ['--http-allowed-hosts', '']),
    ]
    for name, args in bad_cases:
        st, out, err = run(cascaded, zero_ports(data) + args, cwd=tmp, timeout=5)
        check(f'{name}: exit 2 with a message on stderr', st == 2 and err.strip() != '' and 'ready' not in out,
              f'status {st}, stdout {out[-200:]!r}, stderr {err[-200:]!r}')
    conf = os.path.join(tmp, 'bad.conf')
    with open(conf, 'w') as f:
        f.write('fsync = sometimes\n')
    st, out, err = run(cascaded, zero_ports(data) + ['--config', conf], cwd=tmp)
    check('--config with "fsync = sometimes": exit 2 with a message', st == 2 and err.strip() != '',
          f'status {st}, stderr {err[-200:]!r}')
    st, out, err = run(cascaded, zero_ports(data) + ['--config', os.path.join(tmp, 'no-such.conf')], cwd=tmp)
    check('--config of a missing file: fails with a message, no ready line',
          st not in (None, 0) and err.strip() != '' and 'ready' not in out, f'status {st}, stderr {err[-200:]!r}')

    # --config sets ports, data dir and fsync; comments and blank lines; flags override it
    p_ing, p_q, p_h, p_other = free_ports(4)
    cdata = os.path.join(tmp, 'from-config')
    conf = os.path.join(tmp, 'good.conf')
    with open(conf, 'w') as f:
        f.write(f'# cascaded test configuration\n\nbind = 127.0.0.1\ningest-port = {p_ing}\n'
                f'query-port =  {p_q}\n# http-port = 1\nhttp-port = {p_h}   \n'
                f'data-dir = {cdata}\nfsync = always\n')
    s = server(['--config', conf])
    try:
        ports = s.wait_ready()
        check('--config: ports from the file', ports == (p_ing, p_q, p_h), f'ready {ports}, stderr {s.stderr()[-300:]}')
        check('--config: data dir from the file is created', os.path.isdir(cdata))
        if ports:
            a = ingest_one(ports[0], 'conf-1')
            check('--config: the server ingests (fsync = always)', a is not None and a.get('ok') == 1, str(a))
        check('--config: SIGTERM exits 0', s.stop() == 0)
    finally:
        s.stop(signal.SIGKILL)
    s = server(['--config', conf, '--ingest-port', str(p_other), '--query-port', '0', '--fsync', 'no'])
    try:
        ports = s.wait_ready()
        check('command-line flags override the config file (ingest port, query port)',
              ports is not None and ports[0] == p_other and ports[1] not in (p_q, 0) and ports[2] == p_h,
              f'ready {ports}, stderr {s.stderr()[-300:]}')
        check('flags override it: SIGTERM exits 0', s.stop() == 0)
    finally:
        s.stop(signal.SIGKILL)
    s = server(['--fsync', 'bogus', '--config', conf], cwd=tmp)
    check('a bad flag value is an error even with a good --config after it', s.wait_ready(10) is None
          and s.stop(timeout=10) == 2, f'status {s.p.returncode}')
    conf2 = os.path.join(tmp, 'override.conf')
    with open(conf2, 'w') as f:
        f.write('fsync = bogus\n')
    s = server(zero_ports(data) + ['--fsync', 'always', '--config', conf2])
    try:
        ports = s.wait_ready(10)
        st = s.stop(timeout=10)
        check('a bad value in the config file is reported (exit 2) or overridden by --fsync (runs, exits 0)',
              (ports is None and st == 2) or (ports is not None and st == 0), f'ready {ports} status {st}')
    finally:
        s.stop(signal.SIGKILL)

    # the ready line: exactly one stdout line, ports that accept at once, a queryable server
    data = os.path.join(tmp, 'ready')
    s = server(zero_ports(data))
    try:
        ports = s.wait_ready()
        check('ready line "ready ingest=P query=P http=P" with three distinct non-zero ports',
              ports is not None and 0 not in ports and len(set(ports)) == 3, f'stdout {s.out!r}')
        if ports:
            conns = []
            try:
                for p in ports:
                    conns.append(socket.create_connection(('127.0.0.1', p), timeout=5))
                check('right after the ready line all three ports accept connections', True)
            except OSError as e:
                check('right after the ready line all three ports accept connections', False, repr(e))
            for c in conns:
                c.close()
            r = rpc_stats(ports[1])
            check('right after the ready line the query port answers stats',
                  isinstance(r, list) and len(r) == 4 and r[2] is None and isinstance(r[3], dict), str(r))
            a = ingest_one(ports[0], 'ready-1')
            check('right after the ready line the ingest port acks', a is not None and a.get('ok') == 1, str(a))
        check('the data dir given by --data-dir is created', os.path.isdir(data))
        check('the data dir holds the WAL in wal/', os.path.isdir(os.path.join(data, 'wal')))
        s.read_stdout(0.5)
        st = s.stop()
        check('SIGTERM exits 0', st == 0, f'status {st}')
        out = s.read_stdout(2).decode(errors='replace')
        check('stdout holds exactly the one ready line', len(out.splitlines()) == 1 and out.endswith('\n'),
              repr(out[:300]))
        lines = [l for l in s.stderr().splitlines() if l.strip()]
        unstructured = [l for l in lines if not re.match(r'level=\w+ ts=\S+ event=\S+', l)]
        check('stderr logs are structured lines "level=... ts=... event=..."', lines and not unstructured,
              f'{len(lines)} lines, unstructured: {unstructured[:3]}')
    finally:
        s.stop(signal.SIGKILL)

    # SIGINT exits 0 as SIGTERM does; the data written is there on the next start; a second
    # server on the same data dir is refused (two writers would interleave one WAL)
    s = server(zero_ports(data))
    try:
        ports = s.wait_ready()
        r = rpc_stats(ports[1]) if ports else None
        posts = r[3].get('posts') if isinstance(r, list) and isinstance(r[3], dict) else None
        check('restart on the same data dir keeps the acked post', posts == 1, str(r))
        s2 = server(zero_ports(data))
        try:
            ports2 = s2.wait_ready(10)
            st2 = s2.stop(timeout=10)
            check('a second server on a data dir in use: refused with a message, no ready line',
                  ports2 is None and st2 not in (None, 0) and s2.stderr().strip() != '',
                  f'ready {ports2} status {st2} stderr {s2.stderr()[-300:]!r}')
        finally:
            s2.stop(signal.SIGKILL)
        a = ingest_one(ports[0], 'ready-2') if ports else None
        check('the first server is unaffected by the refused one', a is not None and a.get('ok') == 1, str(a))
        check('SIGINT exits 0', s.stop(signal.SIGINT) == 0, f'status {s.p.returncode}')
    finally:
        s.stop(signal.SIGKILL)

    # default data dir: ./cascaded-data, relative to the working directory
    cwd = os.path.join(tmp, 'cwd')
    os.mkdir(cwd)
    s = server(['--ingest-port', '0', '--query-port', '0', '--http-port', '0'], cwd=cwd)
    try:
        ports = s.wait_ready()
        check('without --data-dir the server starts', ports is not None, s.stderr()[-300:])
        check('default data dir ./cascaded-data is created', os.path.isdir(os.path.join(cwd, 'cascaded-data')),
              str(os.listdir(cwd)))
        check('without --data-dir: SIGTERM exits 0', s.stop() == 0)
    finally:
        s.stop(signal.SIGKILL)

    check_cli_refused(server, zero_ports, tmp, tools)

    # a port already in use, a data dir that cannot be one, an address that is not one
    data = os.path.join(tmp, 'busy')
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(('127.0.0.1', 0))
    holder.listen(1)
    busy = holder.getsockname()[1]
    try:
        st, out, err = run(cascaded, zero_ports(data) + ['--ingest-port', str(busy)], cwd=tmp)
        check('an ingest port already in use: exits non-zero with a message, no ready line',
              st not in (None, 0) and err.strip() != '' and 'ready' not in out,
              f'status {st}, stderr {err[-200:]!r}')
    finally:
        holder.close()
    afile = os.path.join(tmp, 'a-file')
    open(afile, 'w').close()
    st, out, err = run(cascaded, zero_ports(afile), cwd=tmp)
    check('a data dir that is a regular file: exits non-zero with a message, no ready line',
          st not in (None, 0) and err.strip() != '' and 'ready' not in out, f'status {st}, stderr {err[-200:]!r}')
    st, out, err = run(cascaded, zero_ports(os.path.join(tmp, 'addr')) + ['--bind', '999.1.1.1'], cwd=tmp)
    check('--bind 999.1.1.1: exits non-zero with a message, no ready line',
          st not in (None, 0) and err.strip() != '' and 'ready' not in out, f'status {st}, stderr {err[-200:]!r}')


def kill_procs(t):
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def main():
    harness.run_main('cascaded-test-cli-', body, server=False, cleanup=kill_procs,
                     more_reports=lambda t: sanitizer_reports(glob.glob(os.path.join(t.tmp, 'stderr.*'))))


if __name__ == '__main__':
    main()
