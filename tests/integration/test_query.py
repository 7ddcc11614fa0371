#!/usr/bin/python3
"""Integration test of cascaded's query port (DESIGN §3, §5): every method's results against a
computation made here from the events themselves, its error paths, and consistency under load.

usage: /usr/bin/python3 test_query.py BIN_DIR [TOOLS_DIR]   (BIN_DIR holds the built `cascaded`; TOOLS_DIR,
       which ctest passes, is not needed: the load comes from a producer thread here)

Builds a known data set (a few thousand generated cascades: labels, content keys on roots and on
some non-root posts, int and string ids, pages, late parents so that placeholders, re-rootings and
joins occur, duplicates, every rejection reason, cycles, and hand-made events that pin the growth
window's edges and the label rule), sends it to a fresh server and checks over msgpack-RPC:
  stats         every counter, rejected_<reason>, newest_ts, and the types of uptime/rate/memory;
  cascade       every cascade asked by its root, by another post, by an integer id: all metrics;
                tree=true: exactly the nodes (post, parent, actor, ts, depth, kind, placeholder),
                root first, breadth-first; limit truncates a breadth-first prefix and says so;
  top_cascades  every `by` at several limits (ties: the cascade created first), the filters
                label, content, since, until, min_size alone and combined; by=growth at several
                windows, the window's edge exactly (newest - window_ms counts, 1 ms more does not);
  actor         every actor, actor_type included, pagerank nil; top_actors by each metric, by
                actor_type, limits; by=pagerank answers 503;
  content       posts (own content, else the cascade root's), cascades, unique actors, first/last
                ts, largest cascades; an unknown key answers 404;
  labels        per label (unlabelled last): count, mean/median/p90/max (linear interpolation);
  path          the chain from many posts (placeholders too) up to the root;
  coordination, communities: 503 with a message;
  errors        unknown method 404, missing/ill-typed/unknown params 400, unknown ids 404,
                envelopes that are not [0, msgid, method, params], bytes that are not msgpack:
                an error each, the msgid echoed, the server still serving and stats unchanged;
  load          while a producer streams 100k more events, another connection queries without
                pause: every answer is internally consistent and counters never go backwards;
                then everything equals the model again.
Every response must echo its request's msgid. Prints one line per check and ends with
'N passed, M failed'; exit status 1 if any failed. CASCADE_TEST_SEED picks the data set.
"""
import datetime
import statistics
import urllib.error
import urllib.request

import harness
from harness import *  # noqa: F401,F403 (the shared helpers)

ENGINE_SECONDS_BELOW_MS = 94_694_400_000  # 1973-01-01 in ms (include/cascade/engine.h)

W = 60_000                               # the growth window whose edges are pinned
W2 = 45_678                              # another, whose edge falls inside a second
T_NEWEST = BASE_TS + 300_000_000         # the newest ts of the data set (generated ts stay below)
HORIZON = 7 * 24 * 3600 * 1000           # ENGINE_GROWTH_HORIZON_MS
CASCADE_BY = ('size', 'depth', 'max_breadth', 'structural_virality', 'unique_actors', 'last_ts')
ACTOR_BY = ('reach', 'reshares_received', 'amplifiers', 'posts')
LABEL_METRICS = ('size', 'depth', 'max_breadth', 'structural_virality', 'unique_actors')
CASCADE_KEYS = ('root', 'root_actor', 'content', 'label', 'size', 'missing', 'depth', 'max_breadth',
                'structural_virality', 'wiener', 'unique_actors', 'first_ts', 'last_ts', 'duration_ms')
ACTOR_KEYS = ('id', 'actor_type', 'posts', 'roots', 'shares', 'reshares_received', 'amplifiers', 'reach',
              'cascades', 'first_ts', 'last_ts', 'pagerank')
SHARED_KEYS = [f'claim:{k}' for k in range(6)]
NONROOT_KEY = 'https://other.example/only-on-reshares'
# Figures that move with time or scheduling rather than with the data: the clock, rates, memory
# and every pause measure (a background job's slice can set a new maximum at any moment).
VOLATILE = ('uptime_ms', 'ingest_rate', 'memory_allocated', 'memory_resident', 'memory_rss')
VOLATILE_PREFIXES = ('pause_', 'log_pause', 'pauses_over', 'log_pauses_over')


def steady(st):
    """stats without the figures that may change while nothing is ingested (see VOLATILE)."""
    return {k: v for k, v in st.items() if k not in VOLATILE and not k.startswith(VOLATILE_PREFIXES)}


# ------------------------------------------------------------------------------------ client

class Client:
    """msgpack-RPC on one connection; every response must echo its msgid (mismatches are kept)."""

    def __init__(self, port, timeout=30):
        self.s = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        self.u = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.next_id = 1000
        self.echo_bad, self.calls = [], 0

    def read(self):
        """The next value the server writes; None when it closed the connection."""
        while True:
            for m in self.u:
                return m
            data = self.s.recv(1 << 20)
            if not data:
                return None
            self.u.feed(data)

    def raw(self, data):
        self.s.sendall(data)
        return self.read()

    def request(self, method, params, msgid=None):
        """Sends [0, msgid, method, [params]]; returns the whole response."""
        if msgid is None:
            self.next_id += 1
            msgid = self.next_id
        resp = self.raw(msgpack.packb([0, msgid, method, [params]]))
        self.calls += 1
        if not (isinstance(resp, list) and len(resp) == 4 and resp[0] == 1 and resp[1] == msgid):
            self.echo_bad.append(f'{method} msgid {msgid!r}: {resp!r}'[:300])
        return resp

    def call(self, method, **params):
        """(error, result) of one call."""
        resp = self.request(method, params)
        if not isinstance(resp, list) or len(resp) != 4:
            raise RuntimeError(f'{method}: not a response: {resp!r}')
        return resp[2], resp[3]

    def close(self):
        self.s.close()


def err_code(err):
    return err.get('code') if isinstance(err, dict) else None


def good_error(err, res, code):
    """An error map with this code and a non-empty message, and a nil result."""
    return (isinstance(err, dict) and err.get('code') == code and isinstance(err.get('message'), str)
            and len(err['message']) > 0 and res is None)


# ------------------------------------------------------------------------------------ the model

def quantile(xs, q):
    """numpy/pandas' default: linear interpolation at position q * (n - 1) of the sorted values."""
    s = sorted(xs)
    pos = q * (len(s) - 1)
    i = int(pos)
    return float(s[i]) if i + 1 >= len(s) else s[i] + (s[i + 1] - s[i]) * (pos - i)


class QModel(Model):
    """harness.Model plus what queries need: kinds, the order cascades and actors were created in
    (the engine's tie-break), tree nodes, content keys, growth, labels."""

    def __init__(self):
        super().__init__()
        self.kind, self.cseq, self.aseq, self.int_ids = {}, {}, {}, set()
        self.nseq, self._x = 0, None

    def apply(self, ev):
        r, f = validate(ev)
        if r is None:
            p, q = f['post'], f['parent']
            was_ph = p in self.placeholders
            q_known = q is not None and (q in self.posts or q in self.placeholders)
        out = super().apply(ev)
        self._x = None
        if out != 'ok':
            return out
        self.kind[p] = ev.get('kind') or ('share' if q is not None else 'post')
        self.aseq.setdefault(f['actor'], len(self.aseq))
        if isinstance(ev['post'], int):
            self.int_ids.add(p)
        # cascade identity: a new root or a new placeholder root makes a cascade; a filled
        # placeholder with an unknown parent keeps its cascade under the new placeholder; one with a
        # known parent joins the parent's cascade and its own goes away
        if not was_ph:
            if q is None or not q_known:
                self.cseq[p if q is None else q] = self.nseq
                self.nseq += 1
        elif q is not None:
            s = self.cseq.pop(p)
            if not q_known:
                self.cseq[q] = s
        return out

    def x(self):
        if self._x:
            return self._x
        d = self.derive()
        posts, children = self.posts, d['children']
        casc, depth, nodes_of = {}, {}, {}
        for r, c in d['cascades'].items():
            nodes = c['_nodes']  # breadth-first, root first
            depth[r] = 0
            for v in nodes[1:]:
                depth[v] = depth[posts[v]['parent']] + 1
            n = len(nodes)
            sub = {}
            for v in reversed(nodes):
                sub[v] = 1 + sum(sub[ch] for ch in children.get(v, ()))
            w = sum(sub[v] * (n - sub[v]) for v in nodes[1:])
            rf = posts.get(r)
            labelled = [(posts[v]['ts'], posts[v]['label']) for v in nodes
                        if v in posts and posts[v]['label'] is not None]
            if rf is not None and rf['label'] is not None:
                label = rf['label']
            elif labelled:
                first = min(t for t, _ in labelled)
                ls = {l for t, l in labelled if t == first}
                label = ls.pop() if len(ls) == 1 else ABSENT
            else:
                label = None
            casc[r] = dict(root=r, root_actor=rf['actor'] if rf else None, content=rf['content'] if rf else None,
                           label=label, size=c['size'], missing=c['missing'], depth=c['depth'],
                           max_breadth=c['max_breadth'], structural_virality=w / (n * (n - 1) / 2) if n > 1 else 0.0,
                           wiener=w, unique_actors=c['unique_actors'], first_ts=c['first_ts'],
                           last_ts=c['last_ts'], duration_ms=c['last_ts'] - c['first_ts'])
            nodes_of[r] = nodes
        actors = {}
        for name, a in d['actors'].items():
            actors[name] = dict(a, id=name, pagerank=None)
        # content: a post's own key, else its cascade root's
        content = {}
        for p, f in posts.items():
            r = d['root_of'][p]
            key = f['content'] if f['content'] is not None else casc[r]['content']
            if key is None:
                continue
            k = content.setdefault(key, dict(key=key, posts=0, _c=set(), _a=set(), first_ts=f['ts'], last_ts=f['ts']))
            k['posts'] += 1
            k['_c'].add(r)
            k['_a'].add(f['actor'])
            k['first_ts'], k['last_ts'] = min(k['first_ts'], f['ts']), max(k['last_ts'], f['ts'])
        for k in content.values():
            k['cascades'], k['unique_actors'] = len(k['_c']), len(k['_a'])
        newest = max((f['ts'] for f in posts.values()), default=0)
        self._x = dict(d=d, casc=casc, depth=depth, nodes=nodes_of, actors=actors, content=content, newest=newest)
        return self._x

    def node(self, v):
        """A tree node as the server shows it."""
        x, f = self.x(), self.posts.get(v)
        if f is None:
            return (v, None, None, 0, x['depth'][v], None, True)
        return (v, f['parent'], f['actor'], f['ts'], x['depth'][v], self.kind[v], False)

    def ranked(self, by, pred=lambda c: True):
        x = self.x()
        return sorted((c for c in x['casc'].values() if pred(c)), key=lambda c: (-c[by], self.cseq[c['root']]))

    def growth(self, window):
        x = self.x()
        lo, g = x['newest'] - window, collections.Counter()
        for p, f in self.posts.items():
            if lo <= f['ts'] <= x['newest']:
                g[x['d']['root_of'][p]] += 1
        return g

    def labels(self):
        groups = collections.defaultdict(list)
        for c in self.x()['casc'].values():
            groups[c['label']].append(c)
        out = []
        for lab in sorted((l for l in groups if l is not None), key=lambda s: s.encode()) + \
                ([None] if None in groups else []):
            cs = groups[lab]
            rec = dict(label=lab, cascades=len(cs))
            for m in LABEL_METRICS:
                vals = [c[m] for c in cs]
                rec[f'{m}_mean'] = sum(vals) / len(vals)
                # the sample standard deviation (n - 1), nil for one cascade (statistics: exact fractions)
                rec[f'{m}_sd'] = statistics.stdev(vals) if len(vals) > 1 else None
                rec[f'{m}_median'] = quantile(vals, 0.5)
                rec[f'{m}_p90'] = quantile(vals, 0.9)
                rec[f'{m}_max'] = float(max(vals))
            rec['duration_ms_median'] = quantile([c['duration_ms'] for c in cs], 0.5)
            out.append(rec)
        return out


def rec_problems(what, got, want, keys=None):
    if not isinstance(got, dict):
        return [f'{what}: not a map: {got!r}'[:300]]
    return [f'{what} {k}: got {got.get(k, "<absent>")!r} want {want[k]!r}'
            for k in (keys or want) if k in want and not k.startswith('_') and want[k] is not ABSENT
            and (k not in got or not same(got[k], want[k]) or isinstance(got[k], bool) != isinstance(want[k], bool))]


# ------------------------------------------------------------------------------------ the data set

def build_dataset(rng):
    """Event values in send order: a riffle of generated trees with duplicates and rejections
    mixed in, then hand-made events whose outcome the checks name."""
    trees, _ = gen_forest(rng, 7000, 'q', n_actors=600, intid_base=5_000_000, max_size=120)
    for tr in trees:
        for e in tr:
            if 'parent' not in e:
                if 'content' in e and rng.random() < 0.3:
                    e['content'] = rng.choice(SHARED_KEYS)
            elif rng.random() < 0.06:
                e['content'] = rng.choice(SHARED_KEYS + [NONROOT_KEY])
        nonroots = [e for e in tr if 'parent' in e]
        if nonroots and rng.random() < 0.1:  # at most one non-root label per tree: never ambiguous
            rng.choice(nonroots)['label'] = rng.choice(['false', 'true', 'unverified'])
    events = riffle(rng, trees)
    out = []
    for i, e in enumerate(events):
        out.append(e)
        if rng.random() < 0.03:
            out.append(rng.choice(events[max(0, i - 50):i + 1]))  # a resend: a duplicate
        if rng.random() < 0.02:
            out.append(bad_event(rng, i))
    old_root = trees[0][0]['post'] if 'parent' not in trees[0][0] else next(
        e['post'] for e in trees[0] if 'parent' not in e)
    T = T_NEWEST
    hand = [
        # growth: the newest event, a post exactly W before it, one 1 ms earlier still
        {'post': 'edge_newest', 'actor': 'edge_a', 'ts': T},
        {'post': 'edge_in', 'actor': 'edge_b', 'ts': T - W},
        {'post': 'edge_out', 'actor': 'edge_c', 'ts': T - W - 1},
        {'post': 'edge2_in', 'actor': 'edge_b', 'ts': T - W2},
        {'post': 'edge2_out', 'actor': 'edge_c', 'ts': T - W2 - 1},
        # a burst inside the window, joined by a late subtree (growth follows the join)
        {'post': 'burst0', 'actor': 'edge_a', 'ts': T - 5000, 'label': 'false', 'content': SHARED_KEYS[0]},
        {'post': 'burst1', 'actor': 'edge_b', 'ts': T - 4000, 'parent': 'burst0'},
        {'post': 'burst2', 'actor': 'edge_c', 'ts': T - 3000, 'parent': 'burst1'},
        {'post': 'burst3', 'actor': 'edge_d', 'ts': T - 1000, 'parent': 'burst0', 'kind': 'reply'},
        {'post': 'gj_child', 'actor': 'edge_e', 'ts': T - 100, 'parent': 'gj_mid'},
        # an old cascade grows now
        {'post': 'late_child', 'actor': 'edge_g', 'ts': T - 10, 'parent': old_root},
        # neither a rejected event nor a duplicate moves newest_ts
        {'post': 'rej_future', 'ts': T + 10 ** 9},
        {'post': 'edge_newest', 'actor': 'x', 'ts': T + 10 ** 9},
        # label: the root has none, the earliest labelled post's wins, whatever the arrival order
        {'post': 'lab0', 'actor': 'lab_a', 'ts': BASE_TS + 1000, 'content': 'https://lab.example/0'},
        {'post': 'lab1', 'actor': 'lab_b', 'ts': BASE_TS + 3000, 'parent': 'lab0', 'label': 'orphan-label'},
        {'post': 'lab2', 'actor': 'lab_c', 'ts': BASE_TS + 2000, 'parent': 'lab1', 'label': 'true'},
        # labels that sort by bytes, not by locale
        {'post': 'lz', 'actor': 'lab_a', 'ts': BASE_TS + 50, 'label': 'Zeta'},
        {'post': 'le', 'actor': 'lab_a', 'ts': BASE_TS + 60, 'label': '\u00e9clair'},
        # cycles, direct and over three posts
        {'post': 'cyA', 'actor': 'cy', 'ts': BASE_TS, 'parent': 'cyB'},
        {'post': 'cyB', 'actor': 'cy', 'ts': BASE_TS, 'parent': 'cyA'},
        {'post': 'cyC', 'actor': 'cy', 'ts': BASE_TS, 'parent': 'cyD'},
        {'post': 'cyD', 'actor': 'cy', 'ts': BASE_TS, 'parent': 'cyE'},
        {'post': 'cyE', 'actor': 'cy', 'ts': BASE_TS, 'parent': 'cyC'},
        # the first explicit actor_type is kept; an integer actor id; a root with an explicit kind
        {'post': 'at0', 'actor': 'atx', 'ts': BASE_TS + 10},
        {'post': 'at1', 'actor': 'atx', 'ts': BASE_TS + 11, 'actor_type': 'account', 'parent': 'at0'},
        {'post': 'at2', 'actor': 'atx', 'ts': BASE_TS + 12, 'actor_type': 'page', 'parent': 'at0'},
        {'post': 'at3', 'actor': 4242, 'ts': BASE_TS + 13, 'actor_type': 'page', 'parent': 'at2', 'kind': 'quote'},
        {'post': 77000001, 'actor': '4242', 'ts': BASE_TS + 14, 'kind': 'quote', 'content': NONROOT_KEY},
        {'post': 'at4', 'actor': 'atx', 'ts': BASE_TS + 15, 'parent': '77000001'},
        # a root that arrives after its reshares, with its own content and label (the reshares follow it)
        {'post': 'rr1', 'actor': 'rr_b', 'ts': BASE_TS + 30, 'parent': 'rr0'},
        {'post': 'rr2', 'actor': 'rr_c', 'ts': BASE_TS + 40, 'parent': 'rr1', 'content': 'https://rr.example/own'},
        {'post': 'rr0', 'actor': 'rr_a', 'ts': BASE_TS + 20, 'content': 'https://rr.example/root',
         'label': 'unverified'},
    ]
    # sent after a first growth query: the join must carry the counts already made
    late = [{'post': 'gj_mid', 'actor': 'edge_f', 'ts': T - 200, 'parent': 'burst2', 'kind': 'quote'}]
    return out + hand, late


# ------------------------------------------------------------------------------------ checks

def stats_problems(model, st):
    if not isinstance(st, dict):
        return [f'not a map: {st!r}']
    bad = compare_stats(model, st)
    if st.get('newest_ts') != model.x()['newest']:
        bad.append(f'newest_ts: got {st.get("newest_ts")!r} want {model.x()["newest"]}')
    return bad


def part_stats(model, cl):
    err, st = cl.call('stats')
    check('stats: no error', err is None, repr(err))
    st = st if isinstance(st, dict) else {}
    bad = stats_problems(model, st)
    check('stats: posts, placeholders, cascades, actors, edges, accepted, duplicate, rejected, '
          'rejected_<reason>, newest_ts equal the model', not bad, '; '.join(bad))
    check('stats: every rejection reason occurs in the data set', all(model.counts[r] > 0 for r in REASONS),
          repr(model.counts))
    check('stats: newest_ts is the pinned newest event (a rejected event and a duplicate with a later ts '
          'did not move it)', st.get('newest_ts') == T_NEWEST, repr(st.get('newest_ts')))
    types = dict(uptime_ms=int, memory_allocated=int, memory_resident=int, wal_bytes=int, engine_bytes=int)
    bad = [f'{k}={st.get(k)!r}' for k, t in types.items() if not isinstance(st.get(k), t) or st.get(k) < 0]
    bad += [f'ingest_rate={st.get("ingest_rate")!r}'] if not isinstance(st.get('ingest_rate'), (int, float)) or \
        isinstance(st.get('ingest_rate'), bool) or not st['ingest_rate'] >= 0 else []
    bad += [f'memory_resident={st.get("memory_resident")!r}'] if not st.get('memory_resident') else []
    bad += [f'errors={st.get("errors")!r}'] if st.get('errors') != 0 else []
    check('stats: uptime_ms, ingest_rate, memory_*, wal_bytes present with sane types and values', not bad,
          '; '.join(bad))
    return st


def tree_problems(what, res, want_nodes, n, limit=None):
    """The nodes of a tree=true answer: exactly want_nodes (or a breadth-first prefix of them of
    length limit), root first, breadth-first, nodes_truncated set right."""
    bad = []
    nodes = res.get('nodes') if isinstance(res, dict) else None
    if not isinstance(nodes, list):
        return [f'{what}: no nodes list: {res!r}'[:300]]
    keys = ('post', 'parent', 'actor', 'ts', 'depth', 'kind', 'placeholder')
    got = []
    for nd in nodes:
        if not isinstance(nd, dict) or set(nd) != set(keys):
            return [f'{what}: node with other keys: {nd!r}'[:300]]
        got.append(tuple(nd[k] for k in keys))
    want = min(n, limit) if limit else n
    if len(got) != want:
        bad.append(f'{what}: {len(got)} nodes, want {want}')
    if res.get('nodes_truncated') is not (want < n):
        bad.append(f'{what}: nodes_truncated {res.get("nodes_truncated")!r} with {len(got)} of {n} nodes')
    if got and (got[0][0] != want_nodes[0][0] or got[0][4] != 0):
        bad.append(f'{what}: first node {got[0]!r} is not the root {want_nodes[0]!r}')
    index, prev_depth, prev_parent_idx = {}, 0, -1
    for i, g in enumerate(got):
        if g[4] < prev_depth:
            bad.append(f'{what}: depth goes down at node {i}: {g!r}')
            break
        if i > 0:
            pi = index.get(g[1])
            if pi is None or got[pi][4] != g[4] - 1:
                bad.append(f'{what}: node {g!r} before its parent (or parent not one level up)')
                break
            if g[4] == prev_depth and pi < prev_parent_idx:
                bad.append(f'{what}: not breadth-first at node {i}: {g!r}')
                break
            prev_parent_idx = pi if g[4] == prev_depth else pi
        prev_depth = g[4]
        index[g[0]] = i
    wset = set(want_nodes)
    if not limit or limit >= n:
        if set(got) != wset:
            extra, missing = set(got) - wset, wset - set(got)
            bad.append(f'{what}: nodes differ: extra {sorted(extra, key=repr)[:3]} '
                       f'missing {sorted(missing, key=repr)[:3]}')
    else:
        if not set(got) <= wset:
            bad.append(f'{what}: nodes not of the tree: {sorted(set(got) - wset, key=repr)[:3]}')
        if got:
            last = got[-1][4]
            shallower = {w for w in wset if w[4] < last}
            if not shallower <= set(got):
                bad.append(f'{what}: truncated list is not a breadth-first prefix')
    return bad


def part_cascades(model, cl, rng):
    x = model.x()
    bad_root, bad_tree, bad_other, bad_int, bad_plain = [], [], [], [], []
    asked_other = asked_int = 0
    for r, want in x['casc'].items():
        nodes = x['nodes'][r]
        err, res = cl.call('cascade', post=r, tree=True)
        if err is not None:
            bad_root.append(f'{r}: {err!r}')
            continue
        bad_root += rec_problems(f'cascade {r}', res, want)
        bad_tree += tree_problems(f'tree {r}', res, [model.node(v) for v in nodes], len(nodes))
        if len(nodes) > 1:
            v = rng.choice(nodes[1:])
            asked_other += 1
            err, res = cl.call('cascade', post=v)
            bad_other += [f'{v}: {err!r}'] if err is not None else rec_problems(f'cascade {v}', res, want)
            if isinstance(res, dict) and ('nodes' in res or 'nodes_truncated' in res):
                bad_plain.append(f'{v}: nodes without tree=true')
        ints = [v for v in nodes if v in model.int_ids]
        if ints:
            v = rng.choice(ints)
            asked_int += 1
            err, res = cl.call('cascade', post=int(v), tree=False)
            bad_int += [f'{v}: {err!r}'] if err is not None else rec_problems(f'cascade {v} (int)', res, want)
            if isinstance(res, dict) and 'nodes' in res:
                bad_plain.append(f'{v}: nodes with tree=false')
    n = len(x['casc'])
    check(f'cascade: every metric of all {n} cascades, asked by root (placeholder roots too)', not bad_root,
          '; '.join(bad_root[:8]))
    check(f'cascade tree=true: exactly the nodes of all {n} cascades, root first, breadth-first', not bad_tree,
          '; '.join(bad_tree[:8]))
    check(f'cascade: asked by another post of it ({asked_other} cascades), the same metrics', not bad_other,
          '; '.join(bad_other[:8]))
    check(f'cascade: asked by an integer id ({asked_int} cascades), the same metrics', asked_int > 50 and not bad_int,
          '; '.join(bad_int[:8]))
    check('cascade: no nodes without tree=true', not bad_plain, '; '.join(bad_plain[:8]))
    check('data set: placeholders, joins and multi-level trees occur',
          sum(1 for c in x['casc'].values() if c['missing']) > 20 and max(c['depth'] for c in x['casc'].values()) > 5,
          '')
    # limit: a breadth-first prefix, nodes_truncated when cut
    bad = []
    for r in sorted(x['casc'], key=lambda r: (-len(x['nodes'][r]), model.cseq[r]))[:15]:
        nodes = x['nodes'][r]
        n_r = len(nodes)
        for lim in sorted({1, 2, n_r // 2 or 1, n_r - 1 or 1, n_r, n_r + 5}):
            err, res = cl.call('cascade', post=r, tree=True, limit=lim)
            if err is not None:
                bad.append(f'{r} limit {lim}: {err!r}')
                continue
            bad += tree_problems(f'tree {r} limit {lim}', res, [model.node(v) for v in nodes], n_r, lim)
            bad += rec_problems(f'cascade {r} limit {lim}', res, x['casc'][r])
    check('cascade tree=true limit=L: min(L, n) nodes, a breadth-first prefix, nodes_truncated iff L < n',
          not bad, '; '.join(bad[:8]))
    # hand-made cascades
    c = x['casc']
    err, res = cl.call('cascade', post='lab2')
    check('cascade: label is the earliest (by ts) labelled post\'s when the root has none',
          err is None and res.get('label') == 'true' and c['lab0']['label'] == 'true', f'{err} {res}')
    err, res = cl.call('cascade', post='rr2')
    check('cascade: a root arriving after its reshares gives the cascade its content and label',
          err is None and res.get('root') == 'rr0' and res.get('content') == 'https://rr.example/root'
          and res.get('label') == 'unverified' and res.get('missing') == 0 and res.get('size') == 3, f'{err} {res}')
    err, res = cl.call('cascade', post='gj_child', tree=True)
    check('cascade: a late subtree joined the burst cascade (root burst0, size 6, depth 4)',
          err is None and res.get('root') == 'burst0' and res.get('size') == 6 and res.get('depth') == 4,
          f'{err} {res}')
    err, res = cl.call('cascade', post='cyA')
    check('cascade: cycle attempts left the placeholder cascades as they were',
          err is None and res.get('root') == 'cyB' and res.get('size') == 1 and res.get('missing') == 1, f'{err} {res}')


def part_top_cascades(model, cl):
    x = model.x()
    n_live = len(x['casc'])

    def compare(what, res, want, growth=None):
        """Same cascades in the same order (ties: created first), same records."""
        if not isinstance(res, list):
            return [f'{what}: not a list: {res!r}'[:300]]
        bad = []
        got_roots = [c.get('root') if isinstance(c, dict) else c for c in res]
        want_roots = [c['root'] for c in want]
        if got_roots != want_roots:
            i = next((i for i, (a, b) in enumerate(zip(got_roots, want_roots)) if a != b),
                     min(len(got_roots), len(want_roots)))
            bad.append(f'{what}: {len(got_roots)} cascades, want {len(want_roots)}; first difference at {i}: '
                       f'got {got_roots[i:i + 3]} want {want_roots[i:i + 3]}')
        for g, w in zip(res, want):
            if isinstance(g, dict) and g.get('root') == w['root']:
                bad += rec_problems(what, g, w, CASCADE_KEYS)
                if growth is not None:
                    if g.get('growth') != growth[w['root']]:
                        bad.append(f'{what} {w["root"]} growth: got {g.get("growth", "<absent>")!r} '
                                   f'want {growth[w["root"]]}')
                elif 'growth' in g:
                    bad.append(f'{what}: growth without by=growth')
        return bad

    for by in CASCADE_BY:
        ranking = model.ranked(by)
        bad = []
        for lim in (1, None, 37, 1000):
            params = dict(by=by) if lim is None else dict(by=by, limit=lim)
            err, res = cl.call('top_cascades', **params)
            if err is not None:
                bad.append(f'limit {lim}: {err!r}')
                continue
            bad += compare(f'by={by} limit={lim}', res, ranking[:lim or 10])
            vals = [c.get(by) for c in res]
            if any(not (a >= b) for a, b in zip(vals, vals[1:])):
                bad.append(f'by={by} limit={lim}: not non-increasing')
        check(f'top_cascades by={by}: limits 1, default 10, 37, 1000 give the expected ranking '
              f'(ties: the cascade created first) and records', not bad, '; '.join(bad[:6]))
    err, res = cl.call('top_cascades')
    check('top_cascades: no parameters means by=size limit=10',
          err is None and not compare('default', res, model.ranked('size')[:10]), f'{err}')
    check('data set: more cascades than the largest limit', n_live > 1000, str(n_live))

    # filters
    lasts = sorted(c['last_ts'] for c in x['casc'].values())
    firsts = sorted(c['first_ts'] for c in x['casc'].values())
    since, until = lasts[len(lasts) // 3], firsts[2 * len(firsts) // 3]
    F = {
        'label=false': (dict(label='false'), lambda c: c['label'] == 'false'),
        'label=true': (dict(label='true'), lambda c: c['label'] == 'true'),
        'label=unverified': (dict(label='unverified'), lambda c: c['label'] == 'unverified'),
        'label=nope (unknown)': (dict(label='nope'), lambda c: False),
        'label=orphan-label (on a post, no cascade\'s label)': (dict(label='orphan-label'), lambda c: False),
        f'content={SHARED_KEYS[0]}': (dict(content=SHARED_KEYS[0]), lambda c: c['content'] == SHARED_KEYS[0]),
        f'content={NONROOT_KEY} (on reshares only, and one root)':
            (dict(content=NONROOT_KEY), lambda c: c['content'] == NONROOT_KEY),
        'content=unknown': (dict(content='https://nowhere.example/'), lambda c: False),
        f'since={since}': (dict(since=since), lambda c: c['last_ts'] >= since),
        f'until={until}': (dict(until=until), lambda c: c['first_ts'] <= until),
        'since=-5 (negative)': (dict(since=-5), lambda c: c['last_ts'] >= -5),
        'until=-5 (negative)': (dict(until=-5), lambda c: c['first_ts'] <= -5),
        'min_size=3': (dict(min_size=3), lambda c: c['size'] >= 3),
        'min_size=20': (dict(min_size=20), lambda c: c['size'] >= 20),
        'min_size=100000 (none)': (dict(min_size=100000), lambda c: False),
        'label=false min_size=2': (dict(label='false', min_size=2), lambda c: c['label'] == 'false' and c['size'] >= 2),
        'since until': (dict(since=since, until=until), lambda c: c['last_ts'] >= since and c['first_ts'] <= until),
        'content since min_size': (dict(content=SHARED_KEYS[1], since=lasts[len(lasts) // 4], min_size=2),
                                   lambda c: c['content'] == SHARED_KEYS[1] and c['last_ts'] >= lasts[len(lasts) // 4]
                                   and c['size'] >= 2),
        'all five': (dict(label='false', content=SHARED_KEYS[0], since=lasts[len(lasts) // 5], until=T_NEWEST,
                          min_size=1),
                     lambda c: c['label'] == 'false' and c['content'] == SHARED_KEYS[0]
                     and c['last_ts'] >= lasts[len(lasts) // 5] and c['first_ts'] <= T_NEWEST),
    }
    for name, (params, pred) in F.items():
        bad, sizes = [], []
        for by, lim in (('size', 1000), ('structural_virality', 1000), ('last_ts', 5), ('depth', None)):
            p = dict(params, by=by)
            if lim:
                p['limit'] = lim
            err, res = cl.call('top_cascades', **p)
            want = model.ranked(by, pred)
            sizes.append(len(want))
            if err is not None:
                bad.append(f'by={by}: {err!r}')
                continue
            bad += compare(f'{name} by={by}', res, want[:lim or 10])
        check(f'top_cascades filter {name} ({sizes[0]} match): by size, virality, last_ts, depth', not bad,
              '; '.join(bad[:5]))

    # growth
    cl_growth_ok = True
    for window in (1, W, W + 1, W2, W2 + 1, 5000, 1_000_000, 201_234_567, 250_000_037, HORIZON):
        g = model.growth(window)
        want = sorted((x['casc'][r] for r in g), key=lambda c: (-g[c['root']], model.cseq[c['root']]))
        err, res = cl.call('top_cascades', by='growth', window_ms=window, limit=1000)
        bad = [f'{err!r}'] if err is not None else compare(f'growth window {window}', res, want[:1000], g)
        cl_growth_ok &= check(f'top_cascades by=growth window_ms={window}: {len(want)} cascades with growth, '
                              f'ranked, growth = posts with ts in [newest - window, newest]', not bad,
                              '; '.join(bad[:5]))
    for w, pin, edge_in, edge_out in ((W, 'on a second', 'edge_in', 'edge_out'),
                                      (W2, 'inside a second', 'edge2_in', 'edge2_out')):
        err, res = cl.call('top_cascades', by='growth', window_ms=w, limit=1000)
        roots = {c.get('root'): c.get('growth') for c in res} if err is None and isinstance(res, list) else {}
        check(f'top_cascades by=growth window_ms={w} (edge {pin}): a post exactly window_ms before the newest '
              f'counts', roots.get(edge_in) == 1, f'{err} {edge_in}: {roots.get(edge_in)!r}')
        check(f'top_cascades by=growth window_ms={w} (edge {pin}): a post window_ms + 1 ms before the newest '
              f'does not', err is None and edge_out not in roots, f'{err} {edge_out}: {roots.get(edge_out)!r}')
        err, res = cl.call('top_cascades', by='growth', window_ms=w + 1, limit=1000)
        roots = {c.get('root'): c.get('growth') for c in res} if err is None and isinstance(res, list) else {}
        check(f'top_cascades by=growth window_ms={w + 1}: that post counts then', roots.get(edge_out) == 1,
              f'{err} {edge_out}: {roots.get(edge_out)!r}')
    err, res = cl.call('top_cascades', by='growth', window_ms=W)
    check('top_cascades by=growth: the joined burst cascade leads with growth 6 (default limit 10)',
          err is None and isinstance(res, list) and res and res[0].get('root') == 'burst0'
          and res[0].get('growth') == 6 and len(res) <= 10, f'{err} {res and res[:1]}')
    err, res = cl.call('top_cascades', by='growth')
    g = model.growth(60000)
    want = sorted((x['casc'][r] for r in g), key=lambda c: (-g[c['root']], model.cseq[c['root']]))
    check('top_cascades by=growth without window_ms: window 60000', err is None and
          not compare('growth default', res, want[:10], g), f'{err}')
    for name, (params, pred) in (('label=false min_size=2', F['label=false min_size=2']),
                                 (f'content={SHARED_KEYS[0]}', F[f'content={SHARED_KEYS[0]}']),
                                 ('since until', F['since until'])):
        g = model.growth(HORIZON)
        want = sorted((x['casc'][r] for r in g if pred(x['casc'][r])),
                      key=lambda c: (-g[c['root']], model.cseq[c['root']]))
        err, res = cl.call('top_cascades', by='growth', window_ms=HORIZON, limit=1000, **params)
        bad = [f'{err!r}'] if err is not None else compare(f'growth {name}', res, want, g)
        check(f'top_cascades by=growth with filter {name}', not bad, '; '.join(bad[:5]))
    for p in (dict(window_ms=W), dict(by='size', window_ms=W), dict(by='last_ts', window_ms=1)):
        err, res = cl.call('top_cascades', **p)
        check(f'top_cascades {p}: window_ms without by=growth is a 400', good_error(err, res, 400), f'{err} {res}')
    for wv in (0, HORIZON + 1, -1, 'x'):
        err, res = cl.call('top_cascades', by='growth', window_ms=wv)
        check(f'top_cascades by=growth window_ms={wv!r}: 400', good_error(err, res, 400), f'{err} {res}')


def part_actors(model, cl):
    x = model.x()
    bad = []
    for name, want in x['actors'].items():
        err, res = cl.call('actor', id=name)
        bad += [f'{name}: {err!r}'] if err is not None else rec_problems(f'actor {name}', res, want, ACTOR_KEYS)
        if isinstance(res, dict) and ('pagerank' not in res or res['pagerank'] is not None):
            bad.append(f'{name}: pagerank {res.get("pagerank", "<absent>")!r}, want nil')
    check(f'actor: every metric of all {len(x["actors"])} actors, actor_type included, pagerank nil', not bad,
          '; '.join(bad[:8]))
    check('data set: pages, and actors with reach, amplifiers and self-reshares',
          sum(1 for a in x['actors'].values() if a['actor_type'] == 'page') > 5
          and max(a['amplifiers'] for a in x['actors'].values()) > 5, '')
    err, res = cl.call('actor', id=4242)
    err2, res2 = cl.call('actor', id='4242')
    check('actor: an integer id and its decimal string are the same actor (page, 2 posts)',
          err is None and res == res2 and res.get('id') == '4242' and res.get('posts') == 2
          and res.get('actor_type') == 'page', f'{err} {res} {err2} {res2}')
    for name in ('a', 'x'):
        err, res = cl.call('actor', id=name)
        check(f'actor {name}: seen only in rejected or duplicate events, so unknown (404)',
              name not in x['actors'] and good_error(err, res, 404), f'{err} {res}')
    err, res = cl.call('actor', id='atx')
    check('actor: the first explicit actor_type is kept (account, then page)',
          err is None and res.get('actor_type') == 'account', f'{err} {res}')
    for by in ACTOR_BY:
        bad = []
        for atype in (None, 'page', 'account'):
            for lim in (1, None, 1000):
                p = dict(by=by)
                if atype:
                    p['actor_type'] = atype
                if lim:
                    p['limit'] = lim
                err, res = cl.call('top_actors', **p)
                want = sorted((a for a in x['actors'].values() if atype is None or a['actor_type'] == atype),
                              key=lambda a: (-a[by], model.aseq[a['id']]))[:lim or 10]
                if err is not None or not isinstance(res, list):
                    bad.append(f'{p}: {err!r}')
                    continue
                got_ids = [a.get('id') if isinstance(a, dict) else a for a in res]
                want_ids = [a['id'] for a in want]
                if got_ids != want_ids:
                    i = next((i for i, (a, b) in enumerate(zip(got_ids, want_ids)) if a != b),
                             min(len(got_ids), len(want_ids)))
                    bad.append(f'{p}: {len(got_ids)} actors, want {len(want_ids)}; first difference at {i}: '
                               f'got {got_ids[i:i + 3]} want {want_ids[i:i + 3]}')
                for g, w in zip(res, want):
                    if isinstance(g, dict) and g.get('id') == w['id']:
                        bad += rec_problems(f'{p}', g, w, ACTOR_KEYS)
        check(f'top_actors by={by}: any type, pages, accounts; limits 1, default 10, 1000 (ties: the actor '
              f'seen first)', not bad, '; '.join(bad[:5]))
    err, res = cl.call('top_actors')
    want = [a['id'] for a in sorted(x['actors'].values(), key=lambda a: (-a['reach'], model.aseq[a['id']]))[:10]]
    check('top_actors: no parameters means by=reach limit=10',
          err is None and [a.get('id') for a in res] == want, f'{err} {res and [a.get("id") for a in res]}')
    err, res = cl.call('top_actors', by='pagerank')
    check('top_actors by=pagerank: 503 with a message (no analytics yet)', good_error(err, res, 503), f'{err} {res}')
    err, res = cl.call('top_actors', actor_type='robot')
    check('top_actors actor_type=robot: 400', good_error(err, res, 400), f'{err} {res}')


def part_content(model, cl, rng):
    x = model.x()
    keys = list(SHARED_KEYS) + [NONROOT_KEY, 'https://rr.example/own', 'https://rr.example/root',
                                'https://lab.example/0']
    uniq = [k for k, v in x['content'].items() if v['cascades'] == 1]
    keys += rng.sample(uniq, min(10, len(uniq)))
    bad = []
    for key in keys:
        want = x['content'].get(key)
        if want is None:
            bad.append(f'{key}: not in the data set')
            continue
        tops = sorted((x['casc'][r] for r in want['_c']), key=lambda c: (-c['size'], model.cseq[c['root']]))
        for lim in (None, 3):
            p = dict(key=key) if lim is None else dict(key=key, limit=lim)
            err, res = cl.call('content', **p)
            if err is not None or not isinstance(res, dict):
                bad.append(f'{key}: {err!r}')
                break
            bad += rec_problems(f'content {key}', res,
                                {k: v for k, v in want.items() if not k.startswith('_')})
            top = res.get('top_cascades')
            exp = tops[:lim or 10]
            if not isinstance(top, list) or [c.get('root') for c in top] != [c['root'] for c in exp]:
                bad.append(f'content {key} limit {lim} top_cascades: got {top and [c.get("root") for c in top]} '
                           f'want {[c["root"] for c in exp]}')
            else:
                for g, w in zip(top, exp):
                    bad += rec_problems(f'content {key} top {w["root"]}', g, w, CASCADE_KEYS)
    check(f'content: {len(keys)} keys (shared by many cascades, only on reshares, own vs the root\'s): posts, '
          f'cascades, unique_actors, first_ts, last_ts, top_cascades', not bad, '; '.join(bad[:6]))
    w = x['content'].get(NONROOT_KEY, {})
    check('data set: a key carried by reshares in cascades whose root has another key',
          w.get('cascades', 0) > 3, repr({k: v for k, v in w.items() if not k.startswith('_')}))
    for key in ('https://nowhere.example/', 'claim'):
        err, res = cl.call('content', key=key)
        check(f'content key={key}: unknown key is a 404', good_error(err, res, 404), f'{err} {res}')


def part_labels(model, cl):
    err, res = cl.call('labels')
    want = model.labels()
    bad = [f'{err!r}'] if err is not None else []
    if err is None:
        if not isinstance(res, list) or [r.get('label') for r in res] != [w['label'] for w in want]:
            bad.append(f'labels: got {[r.get("label") for r in res] if isinstance(res, list) else res!r} '
                       f'want {[w["label"] for w in want]}')
        else:
            for g, w in zip(res, want):
                bad += rec_problems(f'label {w["label"]}', g, w)
    check('labels: per label then the unlabelled (nil, last): cascades, mean/sd/median/p90/max of size, depth, '
          'max_breadth, structural_virality, unique_actors, duration_ms_median', not bad, '; '.join(bad[:8]))
    check('data set: every cascade label determined by DESIGN §2', all(c['label'] is not ABSENT for c in
                                                                       model.x()['casc'].values()), '')


def part_path(model, cl, rng):
    x = model.x()
    posts = list(model.posts)
    sample = rng.sample(posts, min(600, len(posts))) + rng.sample(sorted(model.placeholders), 30) + \
        rng.sample(sorted(model.int_ids), 30)
    bad = []
    for v in sample:
        want, y = [], v
        while True:
            f = model.posts.get(y)
            want.append(dict(post=y, actor=f['actor'] if f else None, ts=f['ts'] if f else 0, depth=x['depth'][y]))
            if f is None or f['parent'] is None:
                break
            y = f['parent']
        err, res = cl.call('path', post=int(v) if v in model.int_ids else v)
        if err is not None or not isinstance(res, list):
            bad.append(f'{v}: {err!r} {res!r}'[:300])
        elif res != want:
            bad.append(f'path {v}: got {res!r} want {want!r}'[:400])
    check(f'path: {len(sample)} posts (placeholders and int ids too): post, actor, ts, depth up to the root',
          not bad, '; '.join(bad[:5]))


def part_analytics(cl):
    for method, p in (('coordination', {}), ('coordination', dict(window_ms=5000, min_repeats=2, min_ratio=0.5)),
                      ('communities', {}), ('communities', dict(limit=5, min_size=3))):
        err, res = cl.call(method, **p)
        check(f'{method} {p}: 503 with a message (no analytics worker yet)', good_error(err, res, 503), f'{err} {res}')
    for method, p in (('coordination', dict(min_ratio=1.5)), ('coordination', dict(min_repeats=0)),
                      ('communities', dict(limit=0))):
        err, res = cl.call(method, **p)
        check(f'{method} {p}: a bad parameter is a 400 before the 503', good_error(err, res, 400), f'{err} {res}')


def part_errors(srv, model, cl):
    before = steady(cl.call('stats')[1])
    err, res = cl.call('no_such_method')
    check('unknown method: 404, the message lists the methods', good_error(err, res, 404)
          and 'top_cascades' in err['message'] and 'labels' in err['message'], f'{err} {res}')
    for method, p in (('cascade', {}), ('cascade', dict(tree=True)), ('actor', {}), ('path', {}), ('content', {}),
                      ('cascade', dict(post=None))):
        err, res = cl.call(method, **p)
        check(f'{method} {p}: a missing required parameter is a 400 naming it', good_error(err, res, 400)
              and ('post' in err['message'] or 'id' in err['message'] or 'key' in err['message']), f'{err} {res}')
    ill = [  # (method, params, the parameter the message must name)
        ('top_cascades', dict(limit='x'), 'limit'), ('top_cascades', dict(limit=0), 'limit'),
        ('top_cascades', dict(limit=5000), 'limit'), ('top_cascades', dict(limit=-1), 'limit'),
        ('top_cascades', dict(limit=2.5), 'limit'), ('top_cascades', dict(by='nope'), 'by'),
        ('top_cascades', dict(by=1), 'by'), ('top_cascades', dict(since='yesterday'), 'since'),
        ('top_cascades', dict(min_size=-2), 'min_size'), ('top_cascades', dict(label=''), 'label'),
        ('top_cascades', dict(label='l' * 65), 'label'), ('top_cascades', dict(label=5), 'label'),
        ('top_actors', dict(limit=1001), 'limit'), ('top_actors', dict(by='size'), 'by'),
        ('top_actors', dict(limit=True), 'limit'),
        ('cascade', dict(post='edge_in', tree='yes'), 'tree'), ('cascade', dict(post='edge_in', tree=2), 'tree'),
        ('cascade', dict(post='edge_in', tree=True, limit=0), 'limit'), ('cascade', dict(post=[1]), 'post'),
        ('cascade', dict(post=''), 'post'), ('cascade', dict(post=-3), 'post'), ('cascade', dict(post=1.5), 'post'),
        ('cascade', dict(post='p' * 257), 'post'), ('cascade', dict(post={'a': 1}), 'post'),
        ('cascade', dict(post=True), 'post'), ('actor', dict(id=''), 'id'), ('actor', dict(id=[]), 'id'),
        ('actor', dict(id=-1), 'id'), ('path', dict(post=b'bytes'), 'post'), ('content', dict(key=''), 'key'),
        ('content', dict(key=7), 'key'), ('content', dict(key='k' * 2049), 'key'),
        ('content', dict(key='k', limit=0), 'limit'), ('top_cascades', dict(content='k' * 2049), 'content'),
        ('coordination', dict(window_ms='x'), 'window_ms'),
    ]
    for method, p, name in ill:
        err, res = cl.call(method, **p)
        check(f'{method} {p!r:.60}: ill-typed or out of range is a 400 naming {name}',
              good_error(err, res, 400) and name in err['message'], f'{err} {res}')
    for method, p in (('cascade', dict(post='no-such-post')), ('cascade', dict(post=123456789123)),
                      ('cascade', dict(post='no-such-post', tree=True)), ('path', dict(post='no-such-post')),
                      ('actor', dict(id='no-such-actor')), ('actor', dict(id=999999999))):
        err, res = cl.call(method, **p)
        check(f'{method} {p}: an unknown id is a 404', good_error(err, res, 404), f'{err} {res}')
    for method, p, name in (('stats', dict(verbose=True), 'verbose'),
                            ('cascade', dict(post='edge_in', depth=1), 'depth'),
                            ('top_cascades', dict(sort='size'), 'sort'), ('labels', dict(label='false'), 'label')):
        err, res = cl.call(method, **p)
        check(f'{method} {p}: an unknown parameter is a 400 naming it', good_error(err, res, 400)
              and name in err['message'], f'{err} {res}')
    # nil is absent; params as a bare map and as an empty list are accepted too
    err, res = cl.call('top_cascades', label=None, limit=None, by=None)
    err2, res2 = cl.call('top_cascades')
    check('top_cascades with nil parameters: the same as without them', err is None and res == res2, f'{err}')
    for params in ({}, [], [{}]):
        resp = cl.raw(msgpack.packb([0, 4711, 'stats', params]))
        check(f'stats with params {params!r}: answered',
              isinstance(resp, list) and resp[:3] == [1, 4711, None] and isinstance(resp[3], dict), f'{resp!r:.200}')
    # envelopes that are not [0, msgid, method, params]
    bad_env = [
        ('[1, id, stats, []] (a response)', [1, 5, 'stats', []], None),
        ('[0, id, stats] (3 elements)', [0, 6, 'stats'], None),
        ('[0, id, stats, [], x] (5 elements)', [0, 7, 'stats', [], 'x'], None),
        ('[0, id, 42, []] (method not a string)', [0, 8, 42, []], 8),
        ('[0, id, cascade, [7]] (params not a map)', [0, 9, 'cascade', [7]], 9),
        ('{"method": stats} (a map)', {'method': 'stats'}, None),
        ('"stats" (a string)', 'stats', None),
        ('nil', None, None),
        ('[] (empty)', [], None),
    ]
    for name, value, echoed in bad_env:
        resp = cl.raw(msgpack.packb(value))
        ok = (isinstance(resp, list) and len(resp) == 4 and resp[0] == 1 and isinstance(resp[2], dict)
              and resp[2].get('code') == 400 and resp[3] is None and (echoed is None or resp[1] == echoed))
        check(f'request {name}: a 400 error response' + (', msgid echoed' if echoed else ''), ok, f'{resp!r:.300}')
    # msgids of any size come back as sent
    for mid in (0, 1, 2 ** 32 - 1, 2 ** 40):
        resp = cl.request('stats', {}, msgid=mid)
        check(f'msgid {mid}: echoed', isinstance(resp, list) and resp[1] == mid and resp[2] is None, f'{resp!r:.100}')
    # pipelined: many requests in one write, answered in order
    reqs = [msgpack.packb([0, 50000 + i, 'cascade', [dict(post='edge_in' if i % 2 else 'nope')]]) for i in range(200)]
    cl.s.sendall(b''.join(reqs))
    got = [cl.read() for _ in reqs]
    check('200 pipelined requests: answered in order, each with its msgid and its own answer',
          all(isinstance(r, list) and r[1] == 50000 + i and ((r[2] is None) if i % 2 else err_code(r[2]) == 404)
              for i, r in enumerate(got)), f'{[r[1] if isinstance(r, list) else r for r in got][:10]}')
    # bytes that are not msgpack: an error, this connection closed, the server serving others
    bad = Client(srv.query)
    resp = bad.raw(b'\xc1\xc1\xc1')
    closed = bad.read() is None
    check('bytes that are not msgpack: an error response (400), then the connection is closed',
          isinstance(resp, list) and isinstance(resp[2], dict) and resp[2].get('code') == 400 and closed, f'{resp!r}')
    bad.close()
    err, st = cl.call('stats')
    after = steady(st) if isinstance(st, dict) else st
    check('after every bad request: the server answers and stats are unchanged', srv.alive() and err is None
          and after == before,
          f'{err} {[(k, before.get(k), after.get(k)) for k in before if before.get(k) != after.get(k)]}')


# ------------------------------------------------------------------------------------ times

def iso(ms):
    """ms since the epoch as ISO 8601 in UTC with its milliseconds (2023-11-14T22:13:20.123Z)."""
    d = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    return d.strftime('%Y-%m-%dT%H:%M:%S') + f'.{ms % 1000:03d}Z'


def http_status(srv, path):
    """(status, body) of GET path on the HTTP port."""
    try:
        with urllib.request.urlopen(f'http://127.0.0.1:{srv.http}{path}', timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as ex:
        return ex.code, ex.read().decode()


def part_times(srv, cl, tmp):
    """DESIGN §5: times as ms or ISO 8601; a time that can only be seconds is refused while the data
    holds no time before 1973, and accepted once it does (kept across a restart)."""
    for name, ms in (('since', T_NEWEST - 250_000_037), ('until', BASE_TS + 68_021_163), ('since', T_NEWEST - W)):
        err, by_ms = cl.call('top_cascades', by='last_ts', limit=1000, **{name: ms})
        err2, by_iso = cl.call('top_cascades', by='last_ts', limit=1000, **{name: iso(ms)})
        check(f'top_cascades {name}={iso(ms)} (ISO 8601 over RPC): the same as {name}={ms}',
              err is None and err2 is None and by_ms == by_iso and len(by_ms) > 0, f'{err} {err2}')
        st, body = http_status(srv, f'/v1/top_cascades?by=last_ts&limit=1000&{name}={iso(ms)}')
        st2, body2 = http_status(srv, f'/v1/top_cascades?by=last_ts&limit=1000&{name}={ms}')
        check(f'HTTP top_cascades {name}={iso(ms)}: the same as {name}={ms}', st == st2 == 200 and body == body2,
              f'{st} {st2} {body[:200]}')
    off = '2023-11-15T00:13:20+02:00'  # 2023-11-14T22:13:20Z
    err, a = cl.call('top_cascades', since=off)
    err2, b = cl.call('top_cascades', since=1_700_000_000_000)
    check('top_cascades since with a +02:00 offset: the same instant as its UTC ms', err is None and a == b, f'{err} {err2}')
    for v in ('2015-02-29', '2015-01-05T25:00:00Z', 'yesterday', '1420070400s'):
        err, res = cl.call('top_cascades', since=v)
        check(f'top_cascades since={v!r}: a 400 naming since and ISO 8601', good_error(err, res, 400)
              and 'since' in err['message'] and 'ISO 8601' in err['message'], f'{err} {res}')
    for name, v in (('since', 1420070400), ('until', 1)):
        err, res = cl.call('top_cascades', **{name: v})
        check(f'top_cascades {name}={v} (seconds, the data is from 2023): a 400 that suggests {v}000 and ISO 8601',
              good_error(err, res, 400) and f'{name}={v}000' in err['message'] and 'ISO 8601' in err['message'],
              f'{err} {res}')
    st, body = http_status(srv, '/v1/top_cascades?since=1420070400')
    check('HTTP top_cascades since=1420070400: 400, the same hint', st == 400 and '1420070400000' in body, f'{st} {body[:300]}')
    for v in (0, -5, ENGINE_SECONDS_BELOW_MS):
        err, res = cl.call('top_cascades', since=v)
        check(f'top_cascades since={v}: accepted (not a time that can only be seconds)', err is None, f'{err}')

    # data from 1970 (times in ms from 0): small integers are ms then, before and after a restart
    old = Server(srv.bin.rsplit('/', 1)[0], os.path.join(tmp, 'data-1970'), '--analytics-interval', '0').start()
    try:
        events = [dict(post='o1', actor='a', ts=1000), dict(post='o2', actor='b', ts=2000, parent='o1'),
                  dict(post='o3', actor='c', ts=90_000_000_000)]
        acks, fatal = send_all(old.ingest, [events], timeout=30)
        check('1970 data: acked', fatal is None and acks and acks[-1].get('ok') == 3, f'{fatal} {acks}')
        for restart in (False, True):
            if restart:
                check('1970 data: SIGTERM exits 0', old.stop() == 0)
                old.start()
            c2 = Client(old.query)
            err, res = c2.call('top_cascades', by='last_ts', since=1500)
            err2, res2 = c2.call('top_cascades', by='last_ts', until=1500)
            c2.close()
            check(f'1970 data{" after a restart" if restart else ""}: since=1500 and until=1500 are ms '
                  '(o1\'s cascade, last_ts 2000, and o3 from since; o1 alone from until)',
                  err is None and err2 is None and [c['root'] for c in res] == ['o3', 'o1']
                  and [c['root'] for c in res2] == ['o1'], f'{err} {res} {err2} {res2}')
    finally:
        check('1970 data: SIGTERM exits 0', old.stop() == 0)


# ------------------------------------------------------------------------------------ under load

def answer_problems(method, params, res, prev):
    """Internal consistency of one answer taken while events stream in; prev holds the last stats."""
    bad = []
    if method == 'stats':
        if res.get('accepted') != res.get('posts'):
            bad.append(f'stats accepted {res.get("accepted")} != posts {res.get("posts")}')
        if res.get('rejected') != sum(res.get('rejected_' + r, 0) for r in REASONS):
            bad.append('stats rejected != sum of rejected_<reason>')
        for k in ('accepted', 'duplicate', 'rejected', 'posts', 'actors', 'edges', 'newest_ts', 'uptime_ms'):
            if k in prev and not (res.get(k) >= prev[k]):
                bad.append(f'stats {k} went back: {prev[k]} -> {res.get(k)}')
        prev.clear()
        prev.update(res)
    elif method == 'cascade':
        nodes = res.get('nodes', [])
        n = res.get('size', 0) + res.get('missing', 0)
        obs = [nd for nd in nodes if not nd.get('placeholder')]
        by_depth = collections.Counter(nd['depth'] for nd in nodes)
        ids = {nd['post'] for nd in nodes}
        if len(nodes) != n or res.get('nodes_truncated'):
            bad.append(f'cascade {params}: size + missing = {n}, {len(nodes)} nodes')
        elif nodes:
            sub, children = collections.Counter(), collections.defaultdict(list)
            for nd in nodes[1:]:
                children[nd['parent']].append(nd['post'])
            for nd in reversed(nodes):
                sub[nd['post']] = 1 + sum(sub[c] for c in children[nd['post']])
            wiener = sum(sub[nd['post']] * (n - sub[nd['post']]) for nd in nodes[1:])
            want = dict(size=len(obs), missing=n - len(obs), depth=max(by_depth), max_breadth=max(by_depth.values()),
                        unique_actors=len({nd['actor'] for nd in obs}), first_ts=min(nd['ts'] for nd in obs),
                        last_ts=max(nd['ts'] for nd in obs), root=nodes[0]['post'], wiener=wiener,
                        structural_virality=wiener / (n * (n - 1) / 2) if n > 1 else 0.0)
            bad += rec_problems(f'cascade {params} vs its own nodes', res, want)
            if any(nd['parent'] not in ids for nd in nodes[1:]) or res.get('duration_ms') != \
                    res.get('last_ts', 0) - res.get('first_ts', 0):
                bad.append(f'cascade {params}: parent outside the tree, or duration_ms != last_ts - first_ts')
    elif method == 'top_cascades':
        by = params['by']
        vals = [c.get(by) for c in res]
        if any(not (a >= b) for a, b in zip(vals, vals[1:])) or len(res) > params['limit']:
            bad.append(f'top_cascades {params}: not non-increasing: {vals[:20]}')
        if by == 'growth' and any(not 1 <= c['growth'] <= c['size'] for c in res):
            bad.append(f'top_cascades {params}: growth outside [1, size]')
    elif method == 'content':
        sizes = [c.get('size') for c in res.get('top_cascades', [])]
        if not (res['cascades'] <= res['posts'] and res['unique_actors'] <= res['posts']
                and res['first_ts'] <= res['last_ts'] and len(sizes) <= min(10, res['cascades'])
                and all(a >= b for a, b in zip(sizes, sizes[1:]))):
            bad.append(f'content {params}: inconsistent: {res!r:.300}')
    elif method == 'path':
        depths = [nd.get('depth') for nd in res]
        if depths != list(range(len(res) - 1, -1, -1)) or res[0].get('post') != str(params['post']):
            bad.append(f'path {params}: depths {depths}')
    elif method == 'actor':
        if res.get('posts') != res.get('roots', 0) + res.get('shares', 0) or res.get('first_ts') > res.get('last_ts'):
            bad.append(f'actor {params}: posts != roots + shares or first_ts > last_ts: {res}')
    elif method == 'labels':
        for g in res:
            for m in LABEL_METRICS:
                if not (g[f'{m}_median'] <= g[f'{m}_p90'] <= g[f'{m}_max'] and g[f'{m}_mean'] <= g[f'{m}_max']):
                    bad.append(f'labels {g.get("label")} {m}: median <= p90 <= max, mean <= max fails')
    return bad


def part_load(srv, model, cl, rng):
    trees, _ = gen_forest(rng, 100_000, 'L', n_actors=5000, intid_base=9_000_000, max_size=400)
    for tr in trees:
        for e in tr:
            if 'parent' not in e and rng.random() < 0.2:
                e['content'] = rng.choice(SHARED_KEYS)
    events = riffle(rng, trees)
    stream = []
    for i, e in enumerate(events):
        stream.append(e)
        if rng.random() < 0.02:
            stream.append(rng.choice(events[max(0, i - 2000):i + 1]))
        if rng.random() < 0.01:
            stream.append(bad_event(rng, 10 ** 6 + i))
    ask_posts = [e['post'] for e in rng.sample(events, 3000)]
    chunks = [stream[i:i + 1000] for i in range(0, len(stream), 1000)]
    done, prod_err = threading.Event(), []

    def produce():
        try:
            c = IngestConn(srv.ingest)
            for ch in chunks:
                c.send(msgpack.packb(ch))
                time.sleep(0.03)
            c.wait_total(len(stream), 60)
            prod_err.append(c.last())
            c.close()
        except Exception as ex:  # reported below
            prod_err.append(ex)
        finally:
            done.set()

    qc = Client(srv.query)
    prev, bad, n, kinds = {}, [], 0, collections.Counter()
    t = threading.Thread(target=produce, daemon=True)
    t0 = time.time()
    t.start()
    while not done.is_set() or n < 200:
        i = n % 9
        if i == 0:
            method, params = 'stats', {}
        elif i in (1, 4):
            method, params = 'cascade', dict(post=rng.choice(ask_posts), tree=True)
        elif i == 2:
            method, params = 'top_cascades', dict(by=rng.choice(CASCADE_BY), limit=50)
        elif i == 3:
            method, params = 'path', dict(post=rng.choice(ask_posts))
        elif i == 5:
            method, params = 'actor', dict(id=f'Lu{rng.randrange(200)}')
        elif i == 6:
            method, params = 'labels', {}
        elif i == 7:
            method, params = 'top_cascades', dict(by='growth', window_ms=rng.choice((W, 10 ** 6, HORIZON)), limit=50)
        else:
            method, params = 'content', dict(key=rng.choice(SHARED_KEYS))
        err, res = qc.call(method, **params)
        n += 1
        if err is not None:
            if err_code(err) != 404 or method not in ('cascade', 'path', 'actor'):
                bad.append(f'{method} {params}: {err!r}')
            continue
        kinds[method] += 1
        try:
            bad += answer_problems(method, params, res, prev)
        except Exception as ex:  # a malformed answer
            bad.append(f'{method} {params}: {ex!r} on {res!r:.200}')
    t.join(60)
    qc.close()
    for e in stream:
        model.apply(e)
    check(f'load: the producer\'s {len(stream)} events all acked', len(prod_err) == 1 and isinstance(prod_err[0], dict)
          and ack_total(prod_err[0]) == len(stream), repr(prod_err)[:300])
    check(f'load: {n} queries answered in {time.time() - t0:.1f} s while events streamed in ({dict(kinds)}): every '
          f'answer internally consistent, counters never went back', not bad and n >= 200, '; '.join(bad[:6]))
    check('load: msgids echoed on the query connection', not qc.echo_bad, '; '.join(qc.echo_bad[:3]))


def part_final(model, cl, rng):
    """After the load: stats, every top list, growth, labels, content and a sample against the model."""
    x = model.x()
    err, st = cl.call('stats')
    bad = stats_problems(model, st)
    check('after load: stats equal the model', err is None and not bad, f'{err} {bad}')
    bad = []
    for by in CASCADE_BY:
        err, res = cl.call('top_cascades', by=by, limit=1000)
        want = [c['root'] for c in model.ranked(by)[:1000]]
        if err is not None or [c.get('root') for c in res] != want:
            bad.append(f'by={by}: {err!r}')
    for by in ACTOR_BY:
        err, res = cl.call('top_actors', by=by, limit=1000)
        want = [a['id'] for a in sorted(x['actors'].values(), key=lambda a: (-a[by], model.aseq[a['id']]))[:1000]]
        if err is not None or [a.get('id') for a in res] != want:
            bad.append(f'top_actors by={by}: {err!r}')
    check('after load: top_cascades and top_actors (limit 1000) by every metric equal the model', not bad,
          '; '.join(bad))
    bad = []
    for window in (W, 250_000_037, HORIZON):
        g = model.growth(window)
        want = sorted(g, key=lambda r: (-g[r], model.cseq[r]))[:1000]
        err, res = cl.call('top_cascades', by='growth', window_ms=window, limit=1000)
        if err is not None or [(c.get('root'), c.get('growth')) for c in res] != [(r, g[r]) for r in want]:
            bad.append(f'window {window}: {err!r}')
    check('after load: top_cascades by=growth equals the model', not bad, '; '.join(bad))
    err, res = cl.call('labels')
    want = model.labels()
    bad = [f'{err!r}'] if err is not None or len(res) != len(want) else \
        [p for g, w in zip(res, want) for p in rec_problems(f'label {w["label"]}', g, w)]
    check('after load: labels equal the model', not bad, '; '.join(bad[:5]))
    bad = []
    for key in SHARED_KEYS:
        err, res = cl.call('content', key=key)
        want = {k: v for k, v in x['content'][key].items() if not k.startswith('_')}
        bad += [f'{key}: {err!r}'] if err is not None else rec_problems(f'content {key}', res, want)
    check('after load: content of the shared keys equals the model', not bad, '; '.join(bad[:5]))
    bad = []
    roots = list(x['casc'])
    for r in sorted(roots, key=lambda r: -x['casc'][r]['size'])[:20] + rng.sample(roots, 400):
        err, res = cl.call('cascade', post=r)
        bad += [f'{r}: {err!r}'] if err is not None else rec_problems(f'cascade {r}', res, x['casc'][r])
    names = list(x['actors'])
    for a in rng.sample(names, 400):
        err, res = cl.call('actor', id=a)
        bad += [f'{a}: {err!r}'] if err is not None else rec_problems(f'actor {a}', res, x['actors'][a], ACTOR_KEYS)
    check('after load: 420 cascades and 400 actors equal the model', not bad, '; '.join(bad[:6]))


# ------------------------------------------------------------------------------------ main

def body(run):
    bin_dir, tmp = run.bin_dir, run.tmp
    seed = int(os.environ.get('CASCADE_TEST_SEED', '1'))
    rng = random.Random(seed)
    print(f'# seed {seed} (CASCADE_TEST_SEED)')
    t0 = time.time()
    # no periodic analytics: past 60 s (an ASan build on a busy machine) they would run and pagerank
    # would no longer be nil, which part_actor and part_analytics check
    srv = Server(bin_dir, os.path.join(tmp, 'data'), '--analytics-interval', '0').start()
    model = QModel()
    values, late = build_dataset(rng)
    for v in values:
        model.apply(v)
    acks, fatal = send_all(srv.ingest, group_values(rng, values), timeout=60)
    last = acks[-1] if acks else {}
    check(f'data set: {len(values)} events sent and acked as the model says', fatal is None and
          (last.get('ok'), last.get('dup'), last.get('rej')) == tuple(model.ack().values()),
          f'fatal={fatal} ack={last} model={model.ack()}')
    cl = Client(srv.query)
    try:
        err, res = cl.call('top_cascades', by='growth', window_ms=W)
        got = {c.get('root'): c.get('growth') for c in res} if err is None and isinstance(res, list) else {}
        check('top_cascades by=growth before the join: burst0 4, gj_mid (placeholder root) 1',
              got.get('burst0') == 4 and got.get('gj_mid') == 1, f'{err} {got}')
        for v in late:
            model.apply(v)
        acks, fatal = send_all(srv.ingest, late)
        check('data set: the joining event acked', fatal is None and acks and acks[-1].get('ok') == 1,
              f'{fatal} {acks}')
        part_stats(model, cl)
        part_cascades(model, cl, rng)
        part_top_cascades(model, cl)
        part_actors(model, cl)
        part_content(model, cl, rng)
        part_labels(model, cl)
        part_path(model, cl, rng)
        part_analytics(cl)
        part_errors(srv, model, cl)
        part_times(srv, cl, tmp)
        part_load(srv, model, cl, rng)
        part_final(model, cl, rng)
        check(f'every one of {cl.calls} responses echoed its msgid', not cl.echo_bad, '; '.join(cl.echo_bad[:3]))
    finally:
        cl.close()
    check('SIGTERM exits 0', srv.stop() == 0, f'stderr: {srv.stderr()[-500:]}')
    print(f'# {time.time() - t0:.1f} s')


def main():
    harness.run_main('cascaded-test-query-', body, server=False)


if __name__ == '__main__':
    main()
