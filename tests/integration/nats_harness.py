"""A real NATS JetStream cluster for the cluster tests (DESIGN §9): N nats-server processes
(Debian's nats-server) on loopback ports the test picks, their configs written into a temporary
directory like deploy/nats/*.conf, started, waited for until JetStream has a meta leader, and
stopped by PID (kill -9 of a chosen one for the fault tests)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import harness


def nats_server_path():
    """nats-server on PATH, else Debian's /usr/sbin one; None when it is not installed."""
    return shutil.which('nats-server') or next(
        (p for p in ('/usr/sbin/nats-server', '/usr/bin/nats-server') if os.access(p, os.X_OK)), None)


def run_main(prefix, body, reports):
    """A cluster test's main: fails at once (one FAIL line) without nats-server, else
    harness.run_main with the cluster (run.cluster, when the body set it) killed at the end and
    the sanitizer reports of the tools' stderr files listed in reports."""
    if not nats_server_path():
        print('FAIL nats-server is not installed (scripts/install-deps.sh installs Debian\'s)')
        print('0 passed, 1 failed')
        sys.exit(1)

    def cleanup(run):
        cluster = getattr(run, 'cluster', None)
        if cluster:
            cluster.kill_all()
    harness.run_main(prefix, body, server=False, cleanup=cleanup,
                     more_reports=lambda run: harness.sanitizer_reports(reports))


class NatsCluster:
    """n clustered nats-server processes with JetStream. Ports: client, route and monitoring per
    node, free a moment before the servers bind them (a clash makes start() fail loudly)."""

    def __init__(self, tmp, n=3, name='cascade'):
        self.bin = nats_server_path()
        if not self.bin:
            raise RuntimeError('nats-server is not installed (Debian package nats-server; '
                               'scripts/install-deps.sh installs it)')
        self.dir, self.n, self.name = os.path.join(tmp, 'nats'), n, name
        os.makedirs(self.dir, exist_ok=True)
        ports = harness.free_ports(3 * n)  # distinct: two free_port calls may return one port
        self.client, self.route, self.mon = ports[:n], ports[n:2 * n], ports[2 * n:]
        self.procs = [None] * n
        for i in range(n):
            with open(self.conf(i), 'w') as f:
                f.write(self.config(i))

    def conf(self, i):
        return os.path.join(self.dir, f'n{i + 1}.conf')

    def log(self, i):
        return os.path.join(self.dir, f'n{i + 1}.log')

    def config(self, i):
        routes = '\n'.join(f'    nats-route://127.0.0.1:{self.route[j]}' for j in range(self.n) if j != i)
        return (f'server_name: n{i + 1}\nlisten: 127.0.0.1:{self.client[i]}\n'
                f'http: 127.0.0.1:{self.mon[i]}\n'
                f'jetstream {{\n  store_dir: "{os.path.join(self.dir, f"store{i + 1}")}"\n}}\n'
                f'cluster {{\n  name: {self.name}\n  listen: 127.0.0.1:{self.route[i]}\n'
                f'  routes: [\n{routes}\n  ]\n}}\n')

    def url(self, i):
        return f'nats://127.0.0.1:{self.client[i]}'

    def urls(self, which=None):
        return ','.join(self.url(i) for i in (range(self.n) if which is None else which))

    def start(self, i=None, timeout=30):
        """Starts node i (every node when None) and waits until JetStream has a leader."""
        for j in range(self.n) if i is None else [i]:
            with open(self.log(j), 'ab') as log:
                self.procs[j] = subprocess.Popen([self.bin, '-c', self.conf(j)], stdin=subprocess.DEVNULL,
                                                 stdout=log, stderr=subprocess.STDOUT)
        self.wait_meta_leader(timeout)
        return self

    def alive(self, i):
        return self.procs[i] is not None and self.procs[i].poll() is None

    def jsz(self, i, query=''):
        with urllib.request.urlopen(f'http://127.0.0.1:{self.mon[i]}/jsz{query}', timeout=2) as r:
            return json.loads(r.read())

    def wait_meta_leader(self, timeout=30):
        """Until every running node's /jsz names the same JetStream meta leader."""
        deadline, last = time.time() + timeout, None
        while time.time() < deadline:
            leaders = set()
            try:
                for i in range(self.n):
                    if self.alive(i):
                        leaders.add((self.jsz(i).get('meta_cluster') or {}).get('leader') or None)
                if len(leaders) == 1 and None not in leaders:
                    return leaders.pop()
                last = leaders
            except (OSError, ValueError) as e:
                last = e
            for i in range(self.n):
                if self.procs[i] is not None and self.procs[i].poll() not in (None, -9, -15):
                    raise RuntimeError(f'nats-server n{i + 1} exited {self.procs[i].returncode}: '
                                       f'{self.tail(i)}')
            time.sleep(0.1)
        raise RuntimeError(f'no JetStream meta leader in {timeout} s (last: {last}); n1: {self.tail(0)}')

    def stream_leader(self, stream, timeout=30):
        """The index of the node leading the stream's replicas (its Raft group)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for i in range(self.n):
                if not self.alive(i):
                    continue
                try:
                    z = self.jsz(i, '?streams=true')
                except (OSError, ValueError):
                    continue
                for acc in z.get('account_details') or []:
                    for st in acc.get('stream_detail') or []:
                        leader = (st.get('cluster') or {}).get('leader')
                        if st.get('name') == stream and leader:
                            return int(leader.lstrip('n')) - 1
            time.sleep(0.1)
        raise RuntimeError(f'stream {stream} has no leader after {timeout} s')

    def kill9(self, i):
        if self.alive(i):
            self.procs[i].send_signal(signal.SIGKILL)
            self.procs[i].wait()

    def stop(self, i=None):
        """SIGTERM (a clean shutdown), then SIGKILL after 10 s; every node when i is None."""
        for j in range(self.n) if i is None else [i]:
            p = self.procs[j]
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def kill_all(self):
        for i in range(self.n):
            self.kill9(i)

    def tail(self, i, n=1500):
        try:
            with open(self.log(i), errors='replace') as f:
                return f.read()[-n:]
        except OSError:
            return ''
