"""--retention against the real server: a stream with trees, late parents, duplicates, resends of
evicted posts and late stragglers goes in; a Python model applies the same events and evicts on
the same schedule (DESIGN's metrics recomputed from scratch over what is retained); stats, every
cascade, every actor, content and growth answers must equal it, evicted posts and actors must be
unknown, and that must survive kill -9 (WAL replay evicts where the live run did) and a snapshot
+ kill -9. A long stream under a short retention must hold its memory flat.
argv: the directory of cascaded, the tools dir."""
import os
import random
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Model, Rpc, Server, check, send_all, same, validate  # noqa: E402

RET_MS = 20_000
T0 = 1_700_000_000_000


def floor_sec(ms):
    return ms // 1000 * 1000


class RetModel(Model):
    """The harness model plus the engine's sweep schedule (include/cascade/engine.h)."""

    def __init__(self, ms):
        super().__init__()
        self.ms, self.step = ms, max(1000, floor_sec(ms // 64))
        self.cut = self.sweep_at = self.newest = None
        self.evicted_cascades = self.evicted_posts = 0

    def apply(self, ev):
        r = super().apply(ev)
        if r == 'ok':
            ts = validate(ev)[1]['ts']
            self.newest = ts if self.newest is None else max(self.newest, ts)
            if self.sweep_at is None or self.newest >= self.sweep_at:
                cut = floor_sec(self.newest - self.ms)
                if self.cut is None or cut > self.cut:
                    self.sweep(cut)
                self.sweep_at = self.cut + self.ms + self.step
        return r

    def sweep(self, cut):
        self.cut = cut
        d = self.derive()
        gone = [c for c in d['cascades'].values() if c['last_ts'] < cut]
        for c in gone:
            for x in c['_nodes']:
                self.posts.pop(x, None)
                self.placeholders.discard(x)
            self.evicted_cascades += 1
            self.evicted_posts += c['size']
        if gone:
            self._cache = None
            left = {f['actor'] for f in self.posts.values()}
            self.atype = {a: t for a, t in self.atype.items() if a in left}


def gen_events(rng, n, prefix):
    """Events in delivery order over ~n/50 s of event time: trees grow while they are recent;
    some children arrive before their parents, some posts are sent twice, some long after
    their cascade was evicted, a few carry old timestamps."""
    evs, live, sent, pending = [], [], [], []
    t = T0
    actors = [f'{prefix}a{i}' for i in range(120)]
    for i in range(n):
        t += rng.randrange(0, 40)
        r = rng.random()
        if r < 0.03 and sent:  # a resend: a duplicate, or new again if evicted since
            evs.append(dict(rng.choice(sent)))
            continue
        if r < 0.05 and pending:  # a late parent finally arrives
            evs.append(pending.pop(rng.randrange(len(pending))))
            continue
        e = {'post': f'{prefix}p{i}', 'actor': rng.choice(actors), 'ts': t}
        if rng.random() < 0.01:
            e['ts'] = t - rng.randrange(RET_MS, 4 * RET_MS)  # a straggler
        if rng.random() < 0.05:
            e['actor_type'] = 'page'
        live = [x for x in live if x[1] > t - RET_MS // 2]
        if live and rng.random() < 0.7:
            e['parent'] = rng.choice(live)[0]
            if rng.random() < 0.05:  # its child goes first: the parent is a placeholder for a while
                child = {'post': f'{prefix}c{i}', 'actor': rng.choice(actors), 'ts': t, 'parent': e['post']}
                evs.append(child)
                pending.append(e)
                live.append((e['post'], t))
                continue
        else:
            e['content'] = f'https://example.org/{prefix}{rng.randrange(400)}'
            if rng.random() < 0.5:
                e['label'] = rng.choice(['false', 'true', 'mixed'])
        evs.append(e)
        sent.append(e)
        live.append((e['post'], t))
    return evs + pending


def compare_all(model, rpc, what):
    err, st = rpc.call('stats')
    exp = model.stats()
    if 'kill' in what:  # duplicates are not in the WAL: a restart counts them from 0
        exp.pop('duplicate')
    exp.update(evicted_cascades=model.evicted_cascades, evicted_posts=model.evicted_posts,
               retention_ms=RET_MS, retained_from_ts=model.cut or 0)
    bad = [f'{k}: got {st.get(k)!r} want {v!r}' for k, v in exp.items() if st.get(k) != v]
    check(f'{what}: stats equal the model ({exp["posts"]} posts, {exp["evicted_cascades"]} cascades evicted)',
          not bad, '; '.join(bad[:8]))
    d = model.derive()
    bad = []
    for root in d['cascades']:
        bad += harness.compare_cascade(model, rpc, root)
        if len(bad) > 8:
            break
    check(f'{what}: every retained cascade equals the model ({len(d["cascades"])})', not bad, '; '.join(bad[:8]))
    bad = []
    for name, a in d['actors'].items():
        err, res = rpc.call('actor', id=name)
        if err is not None:
            bad.append(f'actor {name}: {err}')
            continue
        bad += [f'actor {name} {k}: got {res.get(k)!r} want {v!r}' for k, v in a.items()
                if k not in ('first_ts', 'last_ts') and not same(res.get(k), v)]
    check(f'{what}: every retained actor\'s counters equal the model ({len(d["actors"])})', not bad,
          '; '.join(bad[:8]))
    return d


def check_gone(model, rpc, evs, what):
    d = model.derive()
    posts = {validate(e)[1]['post'] for e in evs if validate(e)[0] is None}
    gone = [p for p in posts if p not in model.posts and p not in model.placeholders][:300]
    bad = [p for p in gone if rpc.call('cascade', post=p)[0] is None]
    check(f'{what}: evicted posts are unknown ({len(gone)} asked)', gone and not bad, repr(bad[:5]))
    actors = {validate(e)[1]['actor'] for e in evs if validate(e)[0] is None}
    left = [a for a in actors if a not in d['actors']]
    bad = [a for a in left if (rpc.call('actor', id=a)[1] or {}).get('posts')]
    check(f'{what}: actors without retained posts are unknown ({len(left)})', not bad, repr(bad[:5]))


def check_queries(model, rpc, srv):
    d = model.derive()
    err, top = rpc.call('top_actors', by='reach', limit=1000)
    want = sorted((a['reach'] for a in d['actors'].values()), reverse=True)[:1000]
    check('top_actors lists retained actors only, reach as the model',
          err is None and [r['reach'] for r in top] == want, f'{err} {len(top or [])} vs {len(want)}')
    err, top = rpc.call('top_cascades', by='size', limit=1000)
    want = sorted((c['size'] for c in d['cascades'].values()), reverse=True)[:1000]
    check('top_cascades by size lists retained cascades only',
          err is None and [c['size'] for c in top] == want, f'{err}')
    lo = model.newest - RET_MS
    growth = {}
    for p, f in model.posts.items():
        if f['ts'] >= lo:
            r = d['root_of'][p]
            growth[r] = growth.get(r, 0) + 1
    err, top = rpc.call('top_cascades', by='growth', window_ms=RET_MS, limit=50)
    want = sorted(growth.values(), reverse=True)[:50]
    check('growth over the whole retention equals the model',
          err is None and [c['growth'] for c in top] == want, f'{err} {[c["growth"] for c in top or []][:10]} '
                                                                f'vs {want[:10]}')
    err, _ = rpc.call('top_cascades', by='growth', window_ms=RET_MS + 1000, limit=5)
    check('a growth window longer than --retention is refused, saying why',
          err is not None and 'retention' in str(err.get('message', '')), repr(err))
    contents = {}
    for p, f in model.posts.items():
        c = f['content']
        if c is None:
            r = d['root_of'][p]
            c = model.posts[r]['content'] if r in model.posts else None
        if c is not None:
            contents[c] = contents.get(c, 0) + 1
    bad = []
    for k in [f'https://example.org/r{i}' for i in range(0, 400, 7)]:
        err, res = rpc.call('content', key=k)
        if k in contents:
            if err is not None or res.get('posts') != contents[k]:
                bad.append(f'{k}: {err} {res and res.get("posts")} want {contents[k]}')
        elif err is None:
            bad.append(f'{k}: no retained post carries it, the server says {res}')
    check('content figures count retained posts; a content with none is unknown', not bad, '; '.join(bad[:5]))
    body = urllib.request.urlopen(f'http://127.0.0.1:{srv.http}/metrics', timeout=30).read().decode()
    check('/metrics counts evictions',
          f'cascaded_evicted_cascades_total {model.evicted_cascades}' in body and
          'cascaded_retention_seconds 20' in body)


def scenario(bin_dir, tmp):
    rng = random.Random(7)
    data = os.path.join(tmp, 'data')
    srv = Server(bin_dir, data, '--retention', '20s', '--snapshot-interval', '0')
    srv.start()
    model = RetModel(RET_MS)
    evs = gen_events(rng, 14000, 'r')
    half = len(evs) // 2
    try:
        for part, what in ((evs[:half], 'first half'), (evs[half:], 'whole stream')):
            acks, fatal = send_all(srv.ingest, part)
            res = [model.apply(e) for e in part]
            check(f'{what}: acks count as the model', acks and acks[-1]['ok'] >= res.count('ok') and not fatal,
                  f'{acks[-1] if acks else None} {fatal}')
        rpc = Rpc(srv.query)
        compare_all(model, rpc, 'live')
        check_gone(model, rpc, evs, 'live')
        check_queries(model, rpc, srv)
        rpc.close()

        srv.kill()  # kill -9: the WAL replay must evict where the live run did
        srv.start()
        rpc = Rpc(srv.query)
        compare_all(model, rpc, 'after kill -9 (WAL replay)')
        err, res = rpc.call('snapshot')
        check('a snapshot is written', err is None, repr(err))
        more = gen_events(rng, 4000, 's')
        for e in more:
            e['ts'] += 400_000
            if 'parent' in e and rng.random() < 0.05:
                e['parent'] = rng.choice(evs)['post']  # a child of a long-evicted post
        acks, fatal = send_all(srv.ingest, more)
        for e in more:
            model.apply(e)
        rpc.close()
        srv.kill()
        srv.start()
        rpc = Rpc(srv.query)
        compare_all(model, rpc, 'after snapshot, more events, kill -9')
        rpc.close()
        check('SIGTERM exits 0', srv.stop() == 0)
    finally:
        srv.kill()
    reports = harness.sanitizer_reports([os.path.join(tmp, f) for f in os.listdir(tmp) if '.stderr.' in f])
    check('no sanitizer reports', not reports, '\n'.join(reports[:10]))


def bounded(bin_dir, tmp):
    """A long stream (100 events/s of event time for ~50 min) under a 60 s retention: what the
    engine holds must stop growing once the first minute has passed. Most actors and every
    content key are new as the stream goes: their names are deleted two analytics copies after
    their last post went (the worker copies every second here)."""
    srv = Server(bin_dir, os.path.join(tmp, 'long'), '--retention', '60s', '--snapshot-interval', '0',
                 '--analytics-interval', '1')
    srv.start()
    try:
        rng = random.Random(11)
        figures = []
        for chunk in range(6):
            evs = []
            for i in range(50_000):
                k = chunk * 50_000 + i
                e = {'post': f'L{k}', 'actor': f'u{k // 4 + rng.randrange(200)}', 'ts': T0 + k * 10,
                     'content': f'https://example.net/{k // 7}'}
                if k % 5 and rng.random() < 0.8:
                    e['parent'] = f'L{k - 1 - rng.randrange(min(k, 300))}'
                evs.append(e)
            send_all(srv.ingest, [evs[j:j + 1000] for j in range(0, len(evs), 1000)], timeout=120)
            time.sleep(2.5)  # two analytics copies
            rpc = Rpc(srv.query)
            err, st = rpc.call('stats')
            rpc.close()
            figures.append((st['posts'], st['engine_bytes'], st['memory_resident'], st['actors'], st['contents']))
        print('posts, engine bytes, resident, actors, contents after each 50k events:', figures)
        check('actors and contents without retained posts are forgotten',
              all(f[3] < 3000 and f[4] < 1500 for f in figures[1:]), repr(figures))
        posts = [f[0] for f in figures]
        check('the retained posts stay about one retention\'s worth (6000)',
              all(5000 <= p <= 7000 for p in posts[1:]), repr(posts))
        eb = [f[1] for f in figures]
        check('engine bytes stop growing: from the second figure on, within 50% of it (without retention '
              'the last would be 5x the first; tables grow in steps)', all(b <= eb[1] * 1.5 for b in eb[1:]),
              repr(eb))
        check('SIGTERM exits 0', srv.stop() == 0)
    finally:
        srv.kill()


def bad_flags(bin_dir):
    import subprocess
    for v in ('-5s', '10x', '', '99999999999d'):
        p = subprocess.run([os.path.join(bin_dir, 'cascaded'), '--retention', v, '--data-dir', '/nonexistent/x'],
                           capture_output=True, text=True, timeout=30)
        check(f'--retention {v!r} is refused with a message', p.returncode != 0 and 'retention' in p.stderr,
              p.stderr[-300:])


def body(run):
    scenario(run.bin_dir, run.tmp)
    bounded(run.bin_dir, run.tmp)
    bad_flags(run.bin_dir)


def main():
    harness.run_main('cascaded-retention-', body, server=False, sanitizers=False)


if __name__ == '__main__':
    main()
