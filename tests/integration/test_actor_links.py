#!/usr/bin/python3
"""Integration test of the actor page's methods, actor_links and actor_cascades, against the real
server: a generated data set (Zipf-popular actors, so self-reshares and heavy links occur; trees
delivered in shuffled and reversed orders, so placeholders fill in and cascades join; some posts
never arrive, so placeholders stay; integer actor ids) is sent to a fresh server, and the answers
for many actors (the busiest, the most amplified, pages, a random sample, an integer id, one with
only self-reshares) are checked over msgpack-RPC against a computation made here from the events:
  actor_links     per direction the `limit` heaviest neighbours (ties by actor id), in then out,
                  each with weight, actor_type and reach; direction in/out/both; limits;
  actor_cascades  the actor's cascades by size then root id, every top_cascades field plus
                  actor_posts; limits;
then over HTTP: JSON equal to the RPC answers, CSV with the same rows, cascade-cli's table; and
the errors: unknown actor 404 (RPC and HTTP), bad limit / direction / missing id 400.
usage: /usr/bin/python3 test_actor_links.py BIN_DIR [TOOLS_DIR]"""
import collections
import csv
import io
import os
import random
import subprocess
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ABSENT, Rpc, check, same, send_all  # noqa: E402
from test_http import deep_same, get, get_json  # noqa: E402

CASCADE_KEYS = ('root', 'root_actor', 'content', 'label', 'size', 'missing', 'depth', 'max_breadth',
                'structural_virality', 'wiener', 'unique_actors', 'first_ts', 'last_ts', 'duration_ms')
LINK_KEYS = {'direction', 'actor', 'actor_type', 'weight', 'reach'}


def build(rng):
    trees, _ = harness.gen_forest(rng, 6000, 'al', n_actors=250, max_size=200)
    events = harness.riffle(rng, trees)
    # integer actor ids (777 is "777"), and an actor whose only reshares are of itself
    events += [{'post': 'int1', 'actor': 777, 'ts': 5}, {'post': 'int2', 'actor': 'alu0', 'ts': 6, 'parent': 'int1'},
               {'post': 'int3', 'actor': 777, 'ts': 7, 'parent': 'int2'},
               {'post': 'self1', 'actor': 'loner', 'ts': 8}, {'post': 'self2', 'actor': 'loner', 'ts': 9, 'parent': 'self1'}]
    return events


def expected_links(model, actor, limit, direction):
    posts, d = model.posts, model.derive()
    inn, out = collections.Counter(), collections.Counter()
    for f in posts.values():
        q = f['parent']
        if q is None or q not in posts or posts[q]['actor'] == f['actor']:
            continue
        if posts[q]['actor'] == actor:
            inn[f['actor']] += 1
        if f['actor'] == actor:
            out[posts[q]['actor']] += 1
    res = []
    for name, cnt in (('in', inn), ('out', out)):
        if direction not in (name, 'both'):
            continue
        for v, w in sorted(cnt.items(), key=lambda x: (-x[1], x[0].encode()))[:limit]:
            res.append(dict(direction=name, actor=v, actor_type=model.atype.get(v, 'account'), weight=w,
                            reach=d['actors'][v]['reach']))
    return res


def expected_cascades(model, actor, limit):
    d = model.derive()
    cnt = collections.Counter(d['root_of'][p] for p, f in model.posts.items() if f['actor'] == actor)
    roots = sorted(cnt, key=lambda r: (-d['cascades'][r]['size'], r.encode()))[:limit]
    res = []
    for r in roots:
        c = {k: v for k, v in d['cascades'][r].items() if not k.startswith('_')}
        c['structural_virality'] = model.virality(r)
        c['actor_posts'] = cnt[r]
        res.append(c)
    return res


def cascade_problems(what, got, want):
    if not isinstance(got, list) or len(got) != len(want):
        return [f'{what}: {len(got) if isinstance(got, list) else got!r} records, want {len(want)}']
    bad = []
    for i, (g, w) in enumerate(zip(got, want)):
        if set(g) != set(CASCADE_KEYS) | {'actor_posts'}:
            bad.append(f'{what}[{i}] keys {sorted(g)}')
        for k, v in w.items():
            if v is not ABSENT and not same(g.get(k), v):
                bad.append(f'{what}[{i}] {k}: got {g.get(k)!r} want {v!r}')
    return bad


def pick_actors(model, rng):
    d = model.derive()
    acts = d['actors']
    by = lambda k: sorted(acts, key=lambda a: (-acts[a][k], a))[:3]
    pages = sorted(a for a in acts if model.atype.get(a) == 'page')[:3]
    picked = by('posts') + by('amplifiers') + by('reshares_received') + by('reach') + pages
    picked += rng.sample(sorted(acts), 15) + ['777', 'loner']
    return list(dict.fromkeys(picked))


def check_rpc(srv, model, actors):
    rpc = Rpc(srv.query)
    busiest = actors[0]
    for a in actors:
        cases = [dict(), dict(limit=3), dict(direction='in'), dict(direction='out', limit=2)]
        if a == busiest:
            cases += [dict(limit=1000), dict(limit=1), dict(direction='both', limit=7)]
        for params in cases:
            err, got = rpc.call('actor_links', id=a, **params)
            want = expected_links(model, a, params.get('limit', 50), params.get('direction', 'both'))
            ok = err is None and isinstance(got, list) and len(got) == len(want) and all(
                set(g) == LINK_KEYS and g == w for g, w in zip(got, want))
            check(f'actor_links {a} {params}', ok, f'{err} got {str(got)[:400]} want {str(want)[:400]}')
        for params in [dict(), dict(limit=2)] + ([dict(limit=1000)] if a == busiest else []):
            err, got = rpc.call('actor_cascades', id=a, **params)
            want = expected_cascades(model, a, params.get('limit', 20))
            bad = [f'error {err}'] if err else cascade_problems(f'actor_cascades {a}', got, want)
            check(f'actor_cascades {a} {params}', not bad, '; '.join(bad[:5]))
    # an integer id is its decimal string
    check('actor_links id=777 (an integer) is "777"',
          rpc.call('actor_links', id=777) == rpc.call('actor_links', id='777') and
          rpc.call('actor_links', id=777)[1] != [])
    check('actor_links of an actor with only self-reshares is empty', rpc.call('actor_links', id='loner') == (None, []))
    err, got = rpc.call('actor_cascades', id='loner')
    check('actor_cascades of that actor: one cascade, both posts', err is None and len(got) == 1 and
          got[0]['actor_posts'] == 2 and got[0]['size'] == 2, f'{err} {got}')
    # every post of the busiest actor lies in exactly one of its cascades
    err, got = rpc.call('actor_cascades', id=busiest, limit=1000)
    acts = model.derive()['actors']
    check('actor_cascades: actor_posts add up to the actor\'s posts, one record per cascade',
          err is None and sum(c['actor_posts'] for c in got) == acts[busiest]['posts'] and
          len(got) == min(1000, acts[busiest]['cascades']), f'{err} {len(got or [])}')
    rpc.close()


def check_http(srv, actors, tools):
    rpc = Rpc(srv.query)
    for a in actors[:4]:
        for method, params in (('actor_links', dict(id=a, limit=10)), ('actor_links', dict(id=a, direction='out')),
                               ('actor_cascades', dict(id=a, limit=5))):
            err, want = rpc.call(method, **params)
            q = urllib.parse.urlencode(params)
            st, got = get_json(srv.http, f'/v1/{method}?{q}')
            check(f'HTTP {method} {q} equals RPC', err is None and st == 200 and deep_same(got, want),
                  f'{st} {str(got)[:300]} vs {err} {str(want)[:300]}')
            st, h, body = get(srv.http, f'/v1/{method}?{q}&format=csv')
            rows = list(csv.DictReader(io.StringIO(body.decode())))
            ok = st == 200 and h.get('Content-Type', '').startswith('text/csv') and len(rows) == len(want)
            for r, w in zip(rows, want):
                for k, v in w.items():
                    if v is None:
                        ok &= r.get(k) in ('', None)
                    elif isinstance(v, float):
                        ok &= same(float(r.get(k)), v)
                    else:
                        ok &= r.get(k) == str(v)
            check(f'CSV {method} {q} has the JSON rows', ok, f'{st} {body[:300]!r} vs {str(want)[:300]}')
    # cascade-cli prints the list as a table, one row per record, from the same method table
    cli = os.path.join(tools, 'cascade-cli')
    err, want = rpc.call('actor_links', id=actors[0], limit=4)
    p = subprocess.run([cli, '--port', str(srv.query), 'actor_links', f'id={actors[0]}', 'limit=4'],
                       capture_output=True, timeout=30)
    out = p.stdout.decode(errors='replace')
    check('cascade-cli actor_links prints a table of the records',
          p.returncode == 0 and 'weight' in out and all(w['actor'] in out for w in want), f'{p.returncode} {out[:400]}')
    p = subprocess.run([cli, 'help', 'actor_links'], capture_output=True, timeout=30)
    out = p.stdout.decode(errors='replace') + p.stderr.decode(errors='replace')
    check('cascade-cli help actor_links shows the parameters', 'direction={in, out, both}' in out and
          'default: 50' in out, out[:400])
    rpc.close()


def check_errors(srv):
    rpc = Rpc(srv.query)
    for method in ('actor_links', 'actor_cascades'):
        err, res = rpc.call(method, id='no-such-actor')
        check(f'{method} unknown actor: 404 naming it', isinstance(err, dict) and err.get('code') == 404 and
              'no-such-actor' in err.get('message', '') and res is None, f'{err} {res}')
        st, body = get_json(srv.http, f'/v1/{method}?id=no-such-actor')
        check(f'HTTP {method} unknown actor: 404', st == 404 and body['error']['code'] == 404, f'{st} {body}')
        for params, name in ((dict(), 'id'), (dict(id=''), 'id'), (dict(id='alu0', limit=0), 'limit'),
                             (dict(id='alu0', limit=1001), 'limit'), (dict(id='alu0', limit='5'), 'limit'),
                             (dict(id='alu0', bogus=1), 'bogus')):
            err, res = rpc.call(method, **params)
            check(f'{method} {params}: 400 naming {name}', isinstance(err, dict) and err.get('code') == 400 and
                  name in err.get('message', ''), f'{err} {res}')
    for params in (dict(id='alu0', direction='sideways'), dict(id='alu0', direction=1)):
        err, res = rpc.call('actor_links', **params)
        check(f'actor_links {params}: 400', isinstance(err, dict) and err.get('code') == 400 and
              'direction' in err.get('message', ''), f'{err} {res}')
    st, body = get_json(srv.http, '/v1/actor_links?id=alu0&direction=up')
    check('HTTP actor_links direction=up: 400', st == 400, f'{st} {body}')
    st, body = get_json(srv.http, '/v1/actor_cascades?id=alu0&limit=0')
    check('HTTP actor_cascades limit=0: 400', st == 400, f'{st} {body}')
    check('the server still answers', rpc.call('actor_links', id='alu0', limit=1)[0] is None)
    rpc.close()


def body(srv, tools):
    rng = random.Random(int(os.environ.get('CASCADE_TEST_SEED', '11')))
    events = build(rng)
    acks, fatal = send_all(srv.ingest, harness.group_values(rng, events))
    check('data set ingested', fatal is None and harness.ack_total(acks[-1] if acks else {}) == len(events),
          f'{fatal} {acks[-1:] if acks else None}')
    model = harness.Model()
    model.apply_values(events)
    check('placeholders and self-reshares occur in the data set', model.placeholders and any(
        f['parent'] in model.posts and model.posts[f['parent']]['actor'] == f['actor']
        for f in model.posts.values()))
    actors = pick_actors(model, rng)
    check_rpc(srv, model, actors)
    check_http(srv, actors, tools)
    check_errors(srv)


if __name__ == '__main__':
    harness.run_main('cascade-actor-links-', lambda r: body(r.srv, r.tools))
