"""Shared harness of the integration tests: checks and their tally, a server started on free
loopback ports and stopped by PID, ingest and RPC clients, and a reference model of the engine
(DESIGN §2-§3) that the tests compute expected answers with."""
import collections
import glob
import math
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import msgpack

passed, failed = 0, 0


def check(name, ok, detail=''):
    global passed, failed
    if ok:
        passed += 1
        print(f'ok   {name}', flush=True)
    else:
        failed += 1
        print(f'FAIL {name} {detail}'[:2000], flush=True)
    return ok


def same(a, b):
    if isinstance(b, float):
        return isinstance(a, (int, float)) and not isinstance(a, bool) and abs(a - b) <= 1e-9 * max(1.0, abs(b))
    return a == b


# ------------------------------------------------------------------------------------ server

class Server:
    """One cascaded process on free loopback ports; stderr goes to a file in the data dir's parent."""
    all = []

    def __init__(self, bin_dir, data_dir, *extra):
        self.bin, self.data, self.extra = os.path.join(bin_dir, 'cascaded'), data_dir, list(extra)
        self.p, self.starts = None, 0
        Server.all.append(self)

    def start(self, timeout=30):
        self.starts += 1
        self.err_path = f'{self.data}.stderr.{self.starts}'
        with open(self.err_path, 'wb') as err:
            self.p = subprocess.Popen([self.bin, '--bind', '127.0.0.1', '--ingest-port', '0', '--query-port', '0',
                                       '--http-port', '0', '--data-dir', self.data] + self.extra,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        buf, deadline = b'', time.time() + timeout
        while b'\n' not in buf and time.time() < deadline:
            r, _, _ = select.select([self.p.stdout], [], [], 0.2)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
        line = buf.split(b'\n')[0].decode(errors='replace')
        m = re.fullmatch(r'ready ingest=(\d+) query=(\d+) http=(\d+)', line.strip())
        if not m:
            self.kill()
            raise RuntimeError(f'no "ready ingest=.. query=.. http=.." line on stdout (got {buf!r}); '
                               f'stderr: {self.stderr()[-2000:]}')
        self.ingest, self.query, self.http = map(int, m.groups())
        return self

    def stderr(self):
        try:
            with open(self.err_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Signals the process and waits; None when it had to be killed after timeout."""
        if self.p is None:
            return None
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.p.returncode

    def kill(self):
        if self.p is not None and self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def free_port():
    """A loopback port free a moment ago, for a test that must name one before a server binds it."""
    return free_ports(1)[0]


def free_ports(n):
    """n distinct loopback ports free a moment ago: all bound at once before any is let go, so that
    the kernel cannot hand the same port out twice (two calls of free_port can: a nats-server was
    given one port for its monitor and its routes, and failed to start)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind(('127.0.0.1', 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# ------------------------------------------------------------------------------------ clients

def ack_total(m):
    return sum(m.get(k, 0) for k in ('ok', 'dup', 'rej')) if isinstance(m, dict) else 0


class IngestConn:
    """A producer connection; a thread collects every message the server writes back."""

    def __init__(self, port, timeout=30):
        self.s = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.msgs, self.closed, self.error = [], False, None
        self.cv = threading.Condition()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        u = msgpack.Unpacker(raw=False, strict_map_key=False)
        try:
            while True:
                data = self.s.recv(65536)
                if not data:
                    break
                u.feed(data)
                new = list(u)
                if new:
                    with self.cv:
                        self.msgs.extend(new)
                        self.cv.notify_all()
        except Exception as e:  # reset, timeout, closed by us
            self.error = e
        finally:
            with self.cv:
                self.closed = True
                self.cv.notify_all()

    def send(self, data):
        self.s.sendall(data)

    def acks(self):
        with self.cv:
            return [m for m in self.msgs if isinstance(m, dict) and 'ok' in m]

    def last(self):
        a = self.acks()
        return a[-1] if a else {}

    def fatal(self):
        with self.cv:
            return next((m['fatal'] for m in self.msgs if isinstance(m, dict) and 'fatal' in m), None)

    def wait(self, pred, timeout=20):
        """Waits until pred(last ack) holds, a fatal message came, or the connection closed."""
        with self.cv:
            self.cv.wait_for(lambda: self.closed or self.fatal() is not None or pred(self.last()), timeout)
        return self.last()

    def wait_total(self, n, timeout=20):
        return self.wait(lambda m: ack_total(m) >= n, timeout)

    def wait_closed(self, timeout=10):
        with self.cv:
            return self.cv.wait_for(lambda: self.closed, timeout)

    def close(self):
        try:
            self.s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.s.close()
        self.t.join(5)


class Rpc:
    """msgpack-RPC on the query port, one connection for many calls."""

    def __init__(self, port, timeout=30):
        self.s = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        self.u = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.msgid = 0

    def call(self, method, **params):
        self.msgid += 1
        self.s.sendall(msgpack.packb([0, self.msgid, method, [params]]))
        while True:
            for m in self.u:
                if isinstance(m, list) and len(m) == 4 and m[0] == 1 and m[1] == self.msgid:
                    return m[2], m[3]
            data = self.s.recv(65536)
            if not data:
                raise RuntimeError('query port closed the connection')
            self.u.feed(data)

    def close(self):
        self.s.close()


def stats_of(srv):
    """The server's `stats` answer over a fresh RPC connection, {} on an error."""
    r = Rpc(srv.query)
    try:
        err, st = r.call('stats')
        return st if err is None else {}
    finally:
        r.close()


def metric(srv, name):
    """One series of the server's /metrics (its name with labels, as printed) as a float, None when absent."""
    body = urllib.request.urlopen(f'http://127.0.0.1:{srv.http}/metrics', timeout=30).read().decode()
    for line in body.splitlines():
        if line.startswith(name + ' '):
            return float(line.split()[-1])
    return None


def ack_problems(acks, n_events=None):
    """Invariants of any ack sequence: cumulative counts never decrease, err has at most 8
    well-formed entries naming events already processed."""
    out, prev = [], (0, 0, 0)
    for a in acks:
        cur = (a.get('ok'), a.get('dup'), a.get('rej'))
        if not all(isinstance(x, int) for x in cur):
            out.append(f'ack without integer ok/dup/rej: {a}')
            continue
        if any(c < p for c, p in zip(cur, prev)):
            out.append(f'counts went down: {prev} -> {cur}')
        prev = cur
        err = a.get('err', [])
        if not isinstance(err, list) or len(err) > 8:
            out.append(f'err is not a list of at most 8: {err!r}')
            continue
        for e in err:
            m = re.fullmatch(r'event (\d+): (\w+)', e) if isinstance(e, str) else None
            if not m or int(m[1]) >= sum(cur):
                out.append(f'bad err entry {e!r} in {a}')
    if n_events is not None and acks and sum(prev) > n_events:
        out.append(f'more events acked ({sum(prev)}) than sent ({n_events})')
    return out


def err_entries(acks):
    out = set()
    for a in acks:
        for e in a.get('err', []) or []:
            m = re.fullmatch(r'event (\d+): (\w+)', e) if isinstance(e, str) else None
            if m:
                out.add((int(m[1]), m[2]))
    return out


# ------------------------------------------------------------------------------------ the model

ABSENT = object()
INT64_MAX = 2 ** 63 - 1
KINDS = ('post', 'share', 'quote', 'reply')
REASONS = ('missing_post', 'missing_actor', 'missing_ts', 'bad_type', 'too_long', 'self_parent', 'cycle',
           'bad_ts')
MAX_FUTURE_MS = 86_400_000  # the server's default --max-future-ms


def _id(v, missing):
    if v is ABSENT or v is None:
        return missing, None
    if isinstance(v, bool):
        return 'bad_type', None
    if isinstance(v, int):
        return (None, str(v)) if v >= 0 else ('bad_type', None)
    if isinstance(v, str):
        n = len(v.encode())
        if n == 0:
            return missing, None
        return ('too_long', None) if n > 256 else (None, v)
    return 'bad_type', None


def validate(ev):
    """DESIGN §2 for one value in an event's place: (reason, None) or (None, fields)."""
    if not isinstance(ev, dict):
        return 'bad_type', None
    g = lambda k: ev.get(k, ABSENT)
    r, post = _id(g('post'), 'missing_post')
    if r:
        return r, None
    r, actor = _id(g('actor'), 'missing_actor')
    if r:
        return r, None
    ts = g('ts')
    if ts is ABSENT or ts is None:
        return 'missing_ts', None
    if isinstance(ts, bool) or not isinstance(ts, int) or ts > INT64_MAX:
        return 'bad_type', None
    if ts < 0 or ts > time.time() * 1000 + MAX_FUTURE_MS:
        return 'bad_ts', None
    parent = g('parent')
    if parent is ABSENT or parent is None:
        parent = None
    else:
        r, parent = _id(parent, 'bad_type')
        if r:
            return r, None
    for key, allowed in (('kind', KINDS), ('actor_type', ('account', 'page'))):
        v = g(key)
        if v is not ABSENT and v is not None and (not isinstance(v, str) or v not in allowed):
            return 'bad_type', None
    for key, limit in (('content', 2048), ('label', 64)):
        v = g(key)
        if v is ABSENT or v is None:
            continue
        if not isinstance(v, str):
            return 'bad_type', None
        if len(v.encode()) > limit:
            return 'too_long', None
    if parent is not None and parent == post:
        return 'self_parent', None
    opt = lambda k: None if g(k) is ABSENT else g(k)
    return None, dict(post=post, actor=actor, ts=ts, parent=parent, actor_type=opt('actor_type'),
                      content=opt('content'), label=opt('label'))


class Model:
    """The server's state after a sequence of events, per DESIGN §2/§3."""

    def __init__(self):
        self.posts = {}            # observed post -> fields
        self.placeholders = set()  # referenced as parent, not observed
        self.atype = {}            # actor -> first explicit actor_type
        self.counts = collections.Counter()
        self._cache = None

    def apply(self, ev):
        self._cache = None
        r, f = validate(ev)
        if r is None:
            p, q = f['post'], f['parent']
            if p in self.posts:
                r = 'dup'
            elif q is not None and p in self.placeholders and (q in self.posts or q in self.placeholders):
                x = q
                while x in self.posts and self.posts[x]['parent'] is not None:
                    x = self.posts[x]['parent']
                if x == p:
                    r = 'cycle'
        if r is not None:
            self.counts[r] += 1
            return r
        self.counts['ok'] += 1
        self.posts[p] = f
        self.placeholders.discard(p)
        if q is not None and q not in self.posts:
            self.placeholders.add(q)
        if f['actor_type'] is not None and f['actor'] not in self.atype:
            self.atype[f['actor']] = f['actor_type']
        return 'ok'

    def apply_values(self, values):
        """Applies the events of top-level msgpack values (maps, arrays of maps, anything else)."""
        return [self.apply(e) for v in values for e in (v if isinstance(v, list) else [v])]

    def ack(self):
        c = self.counts
        return dict(ok=c['ok'], dup=c['dup'], rej=sum(c[r] for r in REASONS))

    # -- derived state
    def derive(self):
        if self._cache:
            return self._cache
        posts = self.posts
        children = collections.defaultdict(list)
        for p, f in posts.items():
            if f['parent'] is not None:
                children[f['parent']].append(p)
        roots = [x for x in list(posts) + list(self.placeholders) if x not in posts or posts[x]['parent'] is None]
        root_of, cascades = {}, {}
        for r in roots:
            level, depth_of, nodes, d = [r], {r: 0}, [r], 0
            while level:
                nxt = [c for x in level for c in children.get(x, ())]
                d += 1
                for c in nxt:
                    depth_of[c] = d
                nodes.extend(nxt)
                level = nxt
            for x in nodes:
                root_of[x] = r
            obs = [posts[x] for x in nodes if x in posts]
            labelled = [f for f in obs if f['label'] is not None]
            rf = posts.get(r)
            if rf is not None and rf['label'] is not None:
                label = rf['label']
            elif len(labelled) == 1:
                label = labelled[0]['label']
            else:
                label = ABSENT  # not determined by DESIGN's wording: not checked
            breadth = collections.Counter(depth_of.values())
            cascades[r] = dict(root=r, size=len(obs), missing=len(nodes) - len(obs), depth=max(depth_of.values()),
                               max_breadth=max(breadth.values()), unique_actors=len({f['actor'] for f in obs}),
                               first_ts=min(f['ts'] for f in obs), last_ts=max(f['ts'] for f in obs),
                               root_actor=rf['actor'] if rf else ABSENT,
                               content=rf['content'] if rf and rf['content'] is not None else ABSENT,
                               label=label, _nodes=nodes)
        actors = {}
        for p, f in posts.items():
            a = actors.setdefault(f['actor'], dict(posts=0, roots=0, shares=0, reshares_received=0, _amp=set(),
                                                   reach=0, _casc=set(), first_ts=f['ts'], last_ts=f['ts']))
            a['posts'] += 1
            a['roots' if f['parent'] is None else 'shares'] += 1
            a['_casc'].add(root_of[p])
            a['first_ts'], a['last_ts'] = min(a['first_ts'], f['ts']), max(a['last_ts'], f['ts'])
        edges = set()
        for p, f in posts.items():
            q = f['parent']
            if q is not None and q in posts:
                qa = posts[q]['actor']
                actors[qa]['reshares_received'] += 1
                if qa != f['actor']:
                    actors[qa]['_amp'].add(f['actor'])
                    edges.add((f['actor'], qa))
            seen, x = set(), q
            while x is not None and x in posts:
                seen.add(posts[x]['actor'])
                x = posts[x]['parent']
            for a in seen:
                actors[a]['reach'] += 1
        for name, a in actors.items():
            a['amplifiers'] = len(a.pop('_amp'))
            a['cascades'] = len(a.pop('_casc'))
            a['actor_type'] = self.atype.get(name, 'account')
        self._cache = dict(children=children, root_of=root_of, cascades=cascades, actors=actors, edges=edges)
        return self._cache

    def stats(self):
        d = self.derive()
        return dict(posts=len(self.posts), placeholders=len(self.placeholders), cascades=len(d['cascades']),
                    actors=len(d['actors']), edges=len(d['edges']), accepted=self.counts['ok'],
                    duplicate=self.counts['dup'])

    def virality(self, root):
        """Structural virality by brute force: BFS from every node of the tree, mean distance. Trees
        too big for O(n^2) get the Wiener index as the sum over edges of s(n - s) instead."""
        d = self.derive()
        nodes = d['cascades'][root]['_nodes']
        n = len(nodes)
        if n < 2:
            return 0.0
        if n > 1500:
            sub = {}
            for x in reversed(nodes):  # nodes are in BFS order: children after parents
                sub[x] = 1 + sum(sub[c] for c in d['children'].get(x, ()))
            w = sum(sub[x] * (n - sub[x]) for x in nodes if x != root)
            return w / (n * (n - 1) / 2)
        adj = collections.defaultdict(list)
        for x in nodes:
            if x in self.posts and self.posts[x]['parent'] is not None:
                q = self.posts[x]['parent']
                adj[x].append(q)
                adj[q].append(x)
        total = 0
        for s in nodes:
            dist, level, k = {s: 0}, [s], 0
            while level:
                k += 1
                nxt = []
                for x in level:
                    for y in adj[x]:
                        if y not in dist:
                            dist[y] = k
                            nxt.append(y)
                level = nxt
            total += sum(dist.values())
        return (total / 2) / (n * (n - 1) / 2)


def compare_stats(model, got):
    exp = model.stats()
    bad = [f'{k}: got {got.get(k)!r} want {v!r}' for k, v in exp.items() if got.get(k) != v]
    for r in REASONS:
        if got.get('rejected_' + r) != model.counts[r]:
            bad.append(f'rejected_{r}: got {got.get("rejected_" + r)!r} want {model.counts[r]}')
    if got.get('rejected') != sum(model.counts[r] for r in REASONS):
        bad.append(f'rejected: got {got.get("rejected")!r} want the sum over reasons')
    return bad


def compare_cascade(model, rpc, root, ask=None):
    """Mismatches between the server's `cascade` answer for ask (a post of root's cascade) and the model."""
    exp = model.derive()['cascades'][root]
    err, res = rpc.call('cascade', post=root if ask is None else ask)
    if err is not None or not isinstance(res, dict):
        return [f'cascade {ask or root}: error {err!r} result {res!r}']
    want = {k: v for k, v in exp.items() if not k.startswith('_') and v is not ABSENT}
    want['structural_virality'] = model.virality(root)
    return [f'cascade {ask or root} {k}: got {res.get(k)!r} want {v!r}'
            for k, v in want.items() if not same(res.get(k), v)]


def compare_actor(model, rpc, name):
    exp = model.derive()['actors'][name]
    err, res = rpc.call('actor', id=name)
    if err is not None or not isinstance(res, dict):
        return [f'actor {name}: error {err!r} result {res!r}']
    return [f'actor {name} {k}: got {res.get(k)!r} want {v!r}' for k, v in exp.items() if not same(res.get(k), v)]


def event_ends(values):
    """Byte offset just past each event of a stream of top-level values, and past each value."""
    ev_ends, val_ends, pos = [], [], 0
    for v in values:
        b = msgpack.packb(v)
        if isinstance(v, list):
            p = pos + len(b) - sum(len(msgpack.packb(e)) for e in v)
            for e in v:
                p += len(msgpack.packb(e))
                ev_ends.append(p)
        else:
            ev_ends.append(pos + len(b))
        pos += len(b)
        val_ends.append((pos, len(v) if isinstance(v, list) else 1))
    return ev_ends, val_ends


def pack(values):
    return b''.join(msgpack.packb(v) for v in values)


def send_all(port, values, timeout=30):
    """One connection: sends the values, waits for the ack of every event, returns (acks, fatal)."""
    n = sum(len(v) if isinstance(v, list) else 1 for v in values)
    c = IngestConn(port)
    try:
        c.send(pack(values))
        c.wait_total(n, timeout)
        return c.acks(), c.fatal()
    finally:
        c.close()


# ------------------------------------------------------------------------------------ the known set


BASE_TS = 1_700_000_000_000


def gen_forest(rng, n_events, prefix, n_actors=3000, intid_base=None, max_size=150):
    """Random trees as event lists (each in a delivery order of its own). Returns (trees, actor types)."""
    actors = [f'{prefix}u{i}' for i in range(n_actors)]
    pages = set(rng.sample(actors, n_actors // 30))
    weights = [1 / (i + 1) ** 0.8 for i in range(n_actors)]
    trees, total, t, intid = [], 0, 0, intid_base
    while total < n_events:
        size = min(max_size, int(rng.paretovariate(1.1)))
        shape = rng.random()
        ids, evs = [], []
        ts0 = BASE_TS + rng.randrange(10 ** 8)
        picked = rng.choices(actors, weights, k=size)
        for j in range(size):
            if intid is not None and rng.random() < 0.2:
                intid += 1
                ids.append(intid)
            else:
                ids.append(f'{prefix}t{t}.{j}')
            e = {'post': ids[j], 'actor': picked[j], 'ts': ts0 + j * rng.randrange(1, 5000)}
            if picked[j] in pages and rng.random() < 0.5:
                e['actor_type'] = 'page'
            if j == 0:
                if rng.random() < 0.6:
                    e['content'] = f'https://example.org/{prefix}{t}'
                if rng.random() < 0.4:
                    e['label'] = rng.choice(['false', 'true', 'mixed', 'unverified'])
            else:
                k = j - 1 if shape < 0.1 else (rng.randrange(min(j, 3)) if shape < 0.2 else rng.randrange(j))
                par = ids[k]
                e['parent'] = str(par) if isinstance(par, int) and rng.random() < 0.5 else par
                if rng.random() < 0.2:
                    e['kind'] = rng.choice(['share', 'quote', 'reply'])
            if rng.random() < 0.05:
                e['client'] = {'app': 'x', 'v': [1, 2]}  # unknown key
            evs.append(e)
        # delivery order: in order, shuffled, reversed (children first); some posts never arrive
        r = rng.random()
        order = list(range(size))
        if r < 0.3:
            rng.shuffle(order)
        elif r < 0.45:
            order.reverse()
        order = [j for j in order if j == 0 or rng.random() > 0.02]
        trees.append([evs[j] for j in order])
        total += len(order)
        t += 1
    return trees, pages


def riffle(rng, lists):
    """Interleaves lists at random, keeping each one's order."""
    keyed = []
    for lst in lists:
        keys = sorted(rng.random() for _ in lst)
        keyed += zip(keys, range(len(lst)), [id(lst)] * len(lst), lst)
    keyed.sort(key=lambda x: (x[0], x[2], x[1]))
    return [x[3] for x in keyed]


def bad_event(rng, i):
    return rng.choice([
        {'actor': 'a', 'ts': 1},
        {'post': f'bad{i}', 'ts': 1},
        {'post': f'bad{i}', 'actor': 'a'},
        {'post': f'bad{i}', 'actor': 'a', 'ts': 'x'},
        {'post': f'bad{i}', 'actor': 'a', 'ts': 1, 'kind': 'nope'},
        {'post': f'bad{i}', 'actor': 'a', 'ts': 1, 'label': 'l' * 80},
        {'post': f'bad{i}', 'actor': 'a', 'ts': 1, 'parent': f'bad{i}'},
        {'post': f'bad{i}', 'actor': 'a', 'ts': -1},
        'not a map', 7, None,
    ])


def group_values(rng, events):
    """Packs a list of events into top-level values: single maps (or scalars), arrays of them, and
    now and then an empty array."""
    out, i = [], 0
    while i < len(events):
        r = rng.random()
        if r < 0.4:
            out.append(events[i])
            i += 1
        elif r < 0.41:
            out.append([])
        else:
            n = rng.randrange(1, 400)
            out.append(events[i:i + n])
            i += n
    return out


def sanitizer_reports(paths):
    """Lines of AddressSanitizer/UBSan/LeakSanitizer reports in the servers' stderr files."""
    out = []
    for path in paths:
        try:
            with open(path, errors='replace') as f:
                out += [f'{os.path.basename(path)}: {l.strip()}' for l in f
                        if 'runtime error:' in l or 'Sanitizer' in l]
        except OSError:
            pass
    return out


class Run:
    """What a test's steps get from run_main: the directory of cascaded, the tools' directory, a
    temporary directory removed at the end, and the default server (None when the test has none)."""

    def __init__(self, bin_dir, tools, tmp, srv):
        self.bin_dir, self.tools, self.tmp, self.srv = bin_dir, tools, tmp, srv


def run_main(prefix, body, *server_args, server=True, after=None, sanitizers=True, more_reports=None,
             cleanup=None, bin_dir=None, keep=False):
    """The one main of the tests: argv is BIN_DIR [TOOLS_DIR] (or bin_dir is given, for a test that
    parses its own options); makes a temporary directory and, when server is true, starts one
    server in it with server_args; runs body(run), or each function of a list body (an exception
    in one is a failed check, and the next one runs); then checks that the server exits 0 on
    SIGTERM and runs after(run) if given (steps that need it stopped). An exception is one failed
    check. Then, even after an exception, kills every server by PID, calls cleanup(run) for
    processes the test started itself, and checks the stderr of every start for sanitizer
    reports: the default server's, or every Server's when the test has none (sanitizers=False:
    the test has none to check); more_reports(run) adds report lines the test collected itself.
    Removes the directory, or keeps it and says where when a check failed or keep is true;
    prints 'N passed, M failed' (CI reads it) and exits 1 if any check failed."""
    if bin_dir is None:
        bin_dir = sys.argv[1]
        tools = sys.argv[2] if len(sys.argv) > 2 else bin_dir
    else:
        tools = bin_dir
    tmp = tempfile.mkdtemp(prefix=prefix)
    srv = Server(bin_dir, os.path.join(tmp, 'data'), *server_args) if server else None
    run = Run(bin_dir, tools, tmp, srv)
    try:
        if srv:
            srv.start()
        for step in body if isinstance(body, (list, tuple)) else [body]:
            try:
                step(run)
            except Exception as e:
                if not isinstance(body, (list, tuple)):
                    raise
                import traceback
                traceback.print_exc()
                check('the step ran to its end', False, repr(e))
        if srv:
            check('SIGTERM exits 0', srv.stop() == 0)
        if after:
            after(run)
    except Exception as e:
        import traceback
        traceback.print_exc()
        check('the test ran to its end', False, repr(e))
    finally:
        for s in Server.all:
            s.kill()
        if cleanup:
            cleanup(run)
        if sanitizers:
            reports = sanitizer_reports([f'{s.data}.stderr.{i}' for s in ([srv] if srv else Server.all)
                                         for i in range(1, s.starts + 1)])
            reports += more_reports(run) if more_reports else []
            check('no sanitizer reports', not reports, '\n'.join(reports[:10]))
        if failed == 0 and not keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f'# data dirs and server stderr kept in {tmp}')
    print(f'{passed} passed, {failed} failed', flush=True)
    sys.exit(1 if failed else 0)
