"""The cluster endpoint (`cascaded --cluster`, DESIGN §9, docs/cluster.md): three plain nodes,
each fed the whole cascades whose root hashes to it, a fourth node fed every event, and the
endpoint over the three; every method it serves answers over RPC and HTTP exactly what the single
node answers (stats counters, every cascade and path, every actor, top lists at several limits,
filters and windows, content keys, labels), the methods it cannot merge answer 501, and a killed
node turns answers into 503 naming it. Then the same on the Twitter15 sample, where equal
timestamps leave ties in the order the nodes saw things (compared up to ties).

Usage: test_cluster_endpoint.py BIN_DIR [TOOLS_DIR]"""
import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BASE_TS, Rpc, Server, check, run_main, same, send_all  # noqa: E402

NODES = 3
LABELS = ['false', 'true', 'mixed', 'unverified']


def gen(rng, n_events=4000):
    """Events in time order, every ts distinct, parents before children (so that a node's
    internal order of cascades and actors is the order of their first_ts, the endpoint's tie
    rule): multi-level trees, labels on roots and on later posts, content keys shared by many
    cascades (so a key spans nodes), pages, integer ids, a few placeholders (parents that never
    come), duplicates and rejected events. Returns (events, root of each post id)."""
    actors = [f'a{i}' for i in range(200)]
    pages = set(actors[:12])
    weights = [1 / (i + 1) ** 0.9 for i in range(len(actors))]
    keys = [f'https://example.org/k{i}' for i in range(40)]
    events, root_of, posts = [], {}, []
    ts = BASE_TS
    n_int = 0
    for i in range(n_events):
        ts += rng.randrange(1, 400)
        actor = rng.choices(actors, weights)[0]
        if rng.random() < 0.2 and n_int < 300:
            n_int += 1
            post = 10_000_000 + i
        else:
            post = f'p{i}'
        e = {'post': post, 'actor': actor, 'ts': ts}
        if actor in pages and rng.random() < 0.6:
            e['actor_type'] = 'page'
        r = rng.random()
        if not posts or r < 0.12:  # a root
            if rng.random() < 0.7:
                e['content'] = rng.choice(keys)
            if rng.random() < 0.5:
                e['label'] = rng.choice(LABELS)
            root_of[str(post)] = str(post)
        elif r < 0.14:  # under a post that never arrives: a placeholder root
            ghost = f'ghost{rng.randrange(30)}'
            e['parent'] = ghost
            root_of[str(post)] = ghost
        else:  # a reshare of a recent post, deep chains included
            par = posts[-1 - min(len(posts) - 1, int(rng.expovariate(1 / 40)))]
            e['parent'] = str(par) if isinstance(par, int) and rng.random() < 0.5 else par
            root_of[str(post)] = root_of[str(par)]
            if rng.random() < 0.03:
                e['label'] = rng.choice(LABELS)
            if rng.random() < 0.05:
                e['content'] = rng.choice(keys)
            if rng.random() < 0.2:
                e['kind'] = rng.choice(['share', 'quote', 'reply'])
        posts.append(post)
        events.append(e)
        if rng.random() < 0.02:  # a resend: a duplicate
            events.append(dict(events[rng.randrange(len(events))]))
    for j in range(5):  # rejected: no actor, self parent
        events.append({'post': f'bad{j}', 'ts': ts + j + 1})
        events.append({'post': f'self{j}', 'actor': 'a1', 'ts': ts + j + 1, 'parent': f'self{j}'})
        root_of[f'bad{j}'] = root_of[f'self{j}'] = f'bad{j}'
    return events, root_of


def part(root):
    return zlib.crc32(str(root).encode()) % NODES


def feed(srv, events):
    batches = [events[i:i + 250] for i in range(0, len(events), 250)]
    acks, fatal = send_all(srv.ingest, batches, timeout=60)
    return fatal is None and sum(acks[-1].get(k, 0) for k in ('ok', 'dup', 'rej')) == len(events)


def http_get(srv, path):
    """(status, parsed JSON or text)."""
    try:
        with urllib.request.urlopen(f'http://127.0.0.1:{srv.http}{path}', timeout=60) as r:
            body = r.read().decode()
            status = r.status
            ctype = r.headers.get('Content-Type', '')
    except urllib.error.HTTPError as e:
        body, status, ctype = e.read().decode(), e.code, e.headers.get('Content-Type', '')
    return status, json.loads(body) if 'json' in ctype else body


def start_all(run, name, events, root_of):
    nodes = [Server(run.bin_dir, os.path.join(run.tmp, f'{name}-n{i}'), '--analytics-interval', '0').start()
             for i in range(NODES)]
    single = Server(run.bin_dir, os.path.join(run.tmp, f'{name}-single'), '--analytics-interval', '0').start()
    shares = [[] for _ in range(NODES)]
    for e in events:
        shares[part(root_of.get(str(e['post']), str(e['post'])))].append(e)
    check(f'{name}: every node got a share', all(shares), str([len(s) for s in shares]))
    for srv, evs in zip(nodes, shares):
        check(f'{name}: a node acked its {len(evs)} events', feed(srv, evs))
    check(f'{name}: the single node acked all {len(events)} events', feed(single, events))
    cl = Server(run.bin_dir, os.path.join(run.tmp, f'{name}-cluster'),
                '--cluster', ','.join(f'127.0.0.1:{n.query}' for n in nodes)).start()
    return nodes, single, cl


def close(a, b):
    """Equal, floats to 1e-9 relative, records key by key."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(b, float) or isinstance(a, float):
        return same(a, float(b)) if isinstance(b, (int, float)) else False
    return a == b


def no_rank(rec):
    """An actor record without PageRank (computed per node; the endpoint has none: nil)."""
    return {k: v for k, v in rec.items() if k not in ('pagerank', 'pagerank_age_ms')}


class Pair:
    """The same call to the single node and the endpoint, over RPC."""

    def __init__(self, single, cl):
        self.s, self.c = Rpc(single.query, timeout=60), Rpc(cl.query, timeout=60)
        self.bad = []

    def both(self, method, **p):
        return self.s.call(method, **p), self.c.call(method, **p)

    def same(self, what, method, fix=lambda x: x, **p):
        (es, rs), (ec, rc) = self.both(method, **p)
        if es:
            ok = ec is not None and ec.get('code') == es.get('code')
        else:
            ok = ec is None and close(fix(rs), fix(rc))
        if not ok:
            self.bad.append(f'{what} {method} {p}: single {es or rs!r:.300} cluster {ec or rc!r:.300}')
        return ok


def tie_groups(lst, key):
    """[(value, set of ids)] of a ranked list, runs of equal value."""
    out = []
    for rec in lst:
        v = rec[key]
        if out and out[-1][0] == v:
            out[-1][1].add(rec.get('root', rec.get('id')))
        else:
            out.append((v, {rec.get('root', rec.get('id'))}))
    return out


def same_up_to_ties(a, b, key):
    """Same values in the same order, the same ids in every run of equal values but the last
    (which the limit may cut anywhere)."""
    if a is None or b is None or len(a) != len(b):
        return False
    ga, gb = tie_groups(a, key), tie_groups(b, key)
    if [v for v, _ in ga] != [v for v, _ in gb]:
        return False
    return all(x[1] == y[1] for x, y in zip(ga[:-1], gb[:-1]))


def compare_everything(name, nodes, single, cl, events, root_of, strict=True):
    pr = Pair(single, cl)
    # stats: the counters over nodes
    (_, ss), (ec, cs) = pr.both('stats')
    keys = ['posts', 'placeholders', 'cascades', 'accepted', 'duplicate', 'rejected', 'errors', 'newest_ts',
            'rejected_missing_actor', 'rejected_self_parent']
    check(f'{name}: stats answers', ec is None, str(ec))
    cs = cs or {}
    check(f'{name}: stats counters equal the single node\'s', all(cs.get(k) == ss.get(k) for k in keys),
          str({k: (ss.get(k), cs.get(k)) for k in keys}))
    check(f'{name}: stats lists every node, reachable',
          [n.get('node') for n in cs.get('nodes', [])] == [f'127.0.0.1:{n.query}' for n in nodes]
          and all(n.get('reachable') for n in cs.get('nodes', [])), str(cs.get('nodes')))
    check(f'{name}: stats leaves set sizes it cannot merge as nil', cs.get('actors') is None, str(cs.get('actors')))

    # every cascade (by its root, and by a post inside), trees and paths for some
    posts = [str(e['post']) for e in events if 'actor' in e and e.get('parent') != e['post']]
    roots = sorted({root_of[p] for p in posts})
    n = sum(pr.same(name, 'cascade', post=r) for r in roots)
    check(f'{name}: every cascade ({len(roots)}) equals the single node\'s', n == len(roots), '\n'.join(pr.bad[:3]))
    rng = random.Random(7)
    sample = rng.sample(posts, min(300, len(posts)))
    ok = all([pr.same(name, 'cascade', post=p) for p in sample[:150]] +
             [pr.same(name, 'cascade', post=p, tree=True) for p in sample[:40]] +
             [pr.same(name, 'cascade', post=p, tree=True, limit=5) for p in sample[:10]] +
             [pr.same(name, 'path', post=p) for p in sample])
    check(f'{name}: cascades by inner posts, trees and paths equal', ok, '\n'.join(pr.bad[-3:]))
    check(f'{name}: an unknown post is 404 on both', pr.same(name, 'cascade', post='no-such-post')
          and pr.c.call('cascade', post='no-such-post')[0]['code'] == 404)

    # every actor (a sample on big data), amplifier ids as a set
    actors = sorted({e['actor'] for e in events if 'actor' in e})
    if len(actors) > 400:  # the real data: a sample, so that the ASan run stays short
        actors = rng.sample(actors, 150)
    ok = all([pr.same(name, 'actor', fix=no_rank, id=a) for a in actors])
    check(f'{name}: every actor ({len(actors)}) equals the single node\'s', ok, '\n'.join(pr.bad[-3:]))
    ok = True
    for a in actors[:60]:
        (_, s), (_, c) = pr.both('actor', id=a, amplifier_ids=True)
        ok &= sorted(s['amplifier_ids']) == c['amplifier_ids'] and s['amplifiers'] == c['amplifiers']
    check(f'{name}: amplifier_ids are the union of the nodes\' sets', ok)
    ok = all(pr.same(name, 'actor_cascades', id=a, limit=lim) for a in actors[:40] for lim in (1, 3, 20))
    check(f'{name}: actor_cascades equal', ok, '\n'.join(pr.bad[-3:]))
    busiest = [r['id'] for r in pr.s.call('top_actors', by='reshares_received', limit=6)[1]]
    ok = all(pr.same(name, 'actor_links', id=a, limit=lim, direction=d) for a in busiest + actors[:12]
             for lim, d in ((1, 'in'), (5, 'out'), (200, 'both')))
    check(f'{name}: actor_links equal (weights summed, neighbours\' reach and type merged)', ok,
          '\n'.join(pr.bad[-3:]))

    # top lists
    def top_same(method, key, **p):
        if strict:
            return pr.same(name, method, fix=lambda l: [no_rank(x) for x in l] if isinstance(l, list) else l, **p)
        (es, s), (ec, c) = pr.both(method, **p)
        ok = es is None and ec is None and same_up_to_ties(s, c, key)
        if not ok:
            pr.bad.append(f'{method} {p}: {str(es or s)[:200]} / {str(ec or c)[:200]}')
        return ok

    newest = ss.get('newest_ts', 0)
    first = min(e['ts'] for e in events if 'actor' in e)
    mid = (first + newest) // 2
    combos = []
    for by in ['size', 'depth', 'max_breadth', 'structural_virality', 'unique_actors', 'last_ts']:
        for lim in (1, 7, 50, 300):
            combos.append(dict(by=by, limit=lim))
        combos += [dict(by=by, label='false', limit=20), dict(by=by, min_size=3, limit=30),
                   dict(by=by, since=mid, limit=25), dict(by=by, until=mid, limit=25),
                   dict(by=by, since=mid - 100000, until=mid + 100000, label='true', limit=40)]
    content_keys = sorted({e['content'] for e in events if 'content' in e})
    for k in content_keys[:5]:
        combos.append(dict(by='size', content=k, limit=20))
    for w in (1, 1000, 60000, 3_600_000, 604_800_000):
        for lim in (1, 10, 100):
            combos.append(dict(by='growth', window_ms=w, limit=lim))
    combos.append(dict(by='growth', window_ms=3_600_000, label='false', limit=10))
    bad = [p for p in combos if not top_same('top_cascades', p.get('by', 'size') if p.get('by') != 'growth'
                                             else 'growth', **p)]
    check(f'{name}: top_cascades equal in {len(combos)} combinations (every by, filters, windows)',
          not bad, '\n'.join(pr.bad[-3:]))
    combos = [dict(by=by, limit=lim, **t) for by in ('reach', 'reshares_received', 'amplifiers', 'posts')
              for lim in ((1, 5, 20, 100) if strict else (5, 100))
              for t in (({}, {'actor_type': 'page'}, {'actor_type': 'account'}) if strict else ({}, {'actor_type': 'page'}))]
    bad = [p for p in combos if not top_same('top_actors', p['by'], **p)]
    check(f'{name}: top_actors equal in {len(combos)} combinations (exact sums, two rounds)',
          not bad, '\n'.join(pr.bad[-3:]))

    # content keys: sums, min/max, merged top cascades; unique_actors only where one node has it
    ok = True
    for k in content_keys:
        (es, s), (ec, c) = pr.both('content', key=k, limit=10)
        holders = 0
        for nd in nodes:
            r = Rpc(nd.query)
            holders += r.call('content', key=k)[0] is None
            r.close()
        if strict:
            want = dict(s, unique_actors=s['unique_actors'] if holders == 1 else None)
            ok &= ec is None and close(want, c)
        else:
            ok &= ec is None and all(c[f] == s[f] for f in ('posts', 'cascades', 'first_ts', 'last_ts')) \
                and same_up_to_ties(s['top_cascades'], c['top_cascades'], 'size')
        if not ok:
            pr.bad.append(f'content {k}: {s} / {ec or c}')
            break
    check(f'{name}: every content key ({len(content_keys)}) equals the single node\'s', ok, '\n'.join(pr.bad[-1:]))
    check(f'{name}: labels equal the single node\'s (medians, p90 from merged values)',
          pr.same(name, 'labels'), '\n'.join(pr.bad[-1:]))
    if pr.s.call('labels_matched')[0] is None:  # where the nodes have it
        pairs = [{}, {'a': 'false', 'b': 'mixed'}, {'a': 'true', 'b': 'true'}, {'a': 'none-such', 'b': 'true'}]
        ok = all([pr.same(name, 'labels_matched', **p) for p in pairs])
        check(f'{name}: labels_matched equals the single node\'s', ok, '\n'.join(pr.bad[-1:]))

    # HTTP: the same JSON as the single node's HTTP, CSV too
    paths = ['/v1/top_cascades?by=size&limit=20', '/v1/top_cascades?by=growth&window_ms=600000&limit=5',
             f'/v1/cascade?post={roots[0]}', f'/v1/path?post={sample[0]}', '/v1/labels',
             '/v1/top_actors?by=reach&limit=10', f'/v1/actor?id={actors[0]}']
    if strict:
        for p in paths:
            (s1, b1), (s2, b2) = http_get(single, p), http_get(cl, p)
            fix = (lambda x: [no_rank(r) for r in x] if isinstance(x, list) and x and 'pagerank' in x[0]
                   else no_rank(x) if isinstance(x, dict) and 'pagerank' in x else x)
            check(f'{name}: HTTP {p} equals the single node\'s', s1 == s2 == 200 and close(fix(b1), fix(b2)),
                  f'{s1} {str(b1)[:200]} / {s2} {str(b2)[:200]}')
        p = '/v1/top_cascades?by=depth&limit=15&format=csv'
        check(f'{name}: HTTP CSV equals the single node\'s', http_get(single, p) == http_get(cl, p))
    st, m = http_get(cl, '/metrics')
    check(f'{name}: /metrics counts every accepted event', st == 200 and
          f'cascaded_events_total{{outcome="accepted"}} {ss.get("accepted")}' in m, str(m)[:300])
    st, body = http_get(cl, '/')
    check(f'{name}: the web view is served', st == 200)
    for method in ('communities', 'coordination'):
        e, _ = pr.c.call(method)
        check(f'{name}: {method} answers 501 saying why', e and e.get('code') == 501 and 'cluster' in e['message'],
              str(e))
    pr.s.close()
    pr.c.close()


def synthetic(run):
    p = subprocess.run([os.path.join(run.bin_dir, 'cascaded'), '--cluster', '127.0.0.1:7401,nohost'],
                       capture_output=True, text=True, timeout=30)
    check('a bad --cluster list exits 2 naming it', p.returncode == 2 and 'nohost' in p.stderr, p.stderr)
    rng = random.Random(19)
    events, root_of = gen(rng)
    nodes, single, cl = start_all(run, 'gen', events, root_of)
    compare_everything('gen', nodes, single, cl, events, root_of)
    # the ingest port refuses events
    acks, fatal = send_all(cl.ingest, [[{'post': 'x', 'actor': 'y', 'ts': BASE_TS}]], timeout=10)
    check('the endpoint\'s ingest port applies nothing, saying where events go',
          fatal is not None and 'cluster' in fatal and 'nodes' in fatal, str(fatal or acks))
    # a node down: 503 naming it, over RPC and HTTP; never a partial merge
    victim = nodes[1]
    victim.stop(signal.SIGKILL)
    name = f'127.0.0.1:{victim.query}'
    c = Rpc(cl.query)
    for method, p in [('stats', {}), ('top_cascades', {'limit': 5}), ('top_actors', {}),
                      ('actor', {'id': 'a0'}), ('cascade', {'post': 'p0'}), ('labels', {}),
                      ('content', {'key': 'https://example.org/k1'})]:
        e, r = c.call(method, **p)
        check(f'with a node killed, {method} is 503 naming it', e is not None and e.get('code') == 503
              and name in e.get('message', ''), str(e or r)[:200])
    st, body = http_get(cl, '/v1/top_cascades?limit=3')
    check('with a node killed, HTTP answers 503 naming it', st == 503 and name in json.dumps(body), f'{st} {body}')
    victim.extra += ['--query-port', str(victim.query)]  # the port the endpoint knows
    victim.start()  # same data dir: it comes back with its events (WAL), and the answers too
    e, r = c.call('stats')
    check('the node back: answers again', e is None and r['accepted'] == Rpc(single.query).call('stats')[1]['accepted'],
          str(e))
    c.close()
    for s in nodes + [single, cl]:
        check('SIGTERM exits 0', s.stop() == 0)


def many_cascades(run):
    """Past 1000 cascades of a label on a node (and past 1000 unlabelled): labels still merge
    every cascade's values (top_cascades candidates=N on the nodes)."""
    rng = random.Random(5)
    events, root_of, ts = [], {}, BASE_TS
    for i in range(9000):
        ts += rng.randrange(1, 50)
        e = {'post': f'm{i}', 'actor': f'b{rng.randrange(300)}', 'ts': ts}
        if i < 200 or rng.random() < 0.85:
            if rng.random() < 0.85:
                e['label'] = 'false' if rng.random() < 0.8 else 'true'
            root_of[e['post']] = e['post']
        else:
            par = f'm{rng.randrange(i - 150, i)}'
            while par not in root_of:
                par = f'm{rng.randrange(i - 150, i)}'
            e['parent'] = par
            root_of[e['post']] = root_of[par]
        events.append(e)
    nodes, single, cl = start_all(run, 'many', events, root_of)
    pr = Pair(single, cl)
    counts = [Rpc(n.query).call('labels')[1] for n in nodes]
    check('many: a node holds over 1000 cascades of a label',
          any(r['cascades'] > 1000 for l in counts for r in l), str(counts)[:300])
    check('many: labels equal the single node\'s', pr.same('many', 'labels'), '\n'.join(pr.bad[-1:]))
    if pr.s.call('labels_matched')[0] is None:
        check('many: labels_matched equals the single node\'s', pr.same('many', 'labels_matched'),
              '\n'.join(pr.bad[-1:]))
    check('many: top_cascades limit=1000 equal', pr.same('many', 'top_cascades', limit=1000, by='depth'),
          '\n'.join(pr.bad[-1:]))
    check('many: top_actors limit=1000 equal', pr.same('many', 'top_actors', fix=lambda l: [no_rank(x) for x in l],
                                                       limit=1000, by='posts'), '\n'.join(pr.bad[-1:]))
    for s in nodes + [single, cl]:
        check('SIGTERM exits 0', s.stop() == 0)


def twitter15(run):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data', 'twitter15-sample.ndjson.gz')
    if not os.path.exists(path):
        check('twitter15 sample present (skipped)', True)
        return
    with gzip.open(path, 'rt') as f:
        events = [json.loads(l) for l in f if l.strip()]
    events.sort(key=lambda e: e['ts'])  # stable: the file's order among equal ts
    root_of = {}
    # a post id is "<source tweet>/<user>/<tweet>/<delay>": its cascade is the source tweet's
    by_source = {}
    for e in events:
        if 'parent' not in e:
            by_source[e['post'].split('/')[0]] = e['post']
    for e in events:
        root_of[e['post']] = by_source.get(e['post'].split('/')[0], e['post'].split('/')[0])
    nodes, single, cl = start_all(run, 'tw15', events, root_of)
    compare_everything('tw15', nodes, single, cl, events, root_of, strict=False)
    for s in nodes + [single, cl]:
        check('SIGTERM exits 0', s.stop() == 0)


def timed(step):
    def run(r):
        t0 = time.time()
        step(r)
        print(f'# {step.__name__}: {time.time() - t0:.1f} s', flush=True)
    return run


if __name__ == '__main__':
    run_main('cascade-cluster-endpoint-', [timed(s) for s in (synthetic, many_cascades, twitter15)],
             server=False)
