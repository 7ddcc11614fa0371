"""The HTTP port against the real server: JSON equal to the RPC port's answers on a known data
set, CSV with the same rows, GraphML and DOT trees, /metrics as strict Prometheus text agreeing
with stats, /healthz, status codes for bad input, HEAD, keep-alive, pipelining, oversized heads,
URL-encoded ids, and queries while ingest runs. argv: the directory of cascaded, the tools dir."""
import csv
import http.client
import io
import json
import os
import random
import re
import shutil
import socket
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Rpc, Server, check, same, send_all  # noqa: E402

ODD_ID = 'odd post & id=1/é?#+'


def get(port, path, method='GET', headers=None):
    """(status, headers, body bytes) of one request on a fresh connection."""
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def get_json(port, path):
    st, _, body = get(port, path)
    return st, json.loads(body) if body else None


def deep_same(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(deep_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(deep_same(x, y) for x, y in zip(a, b))
    if isinstance(b, float) or isinstance(a, float):
        return same(a, float(b)) if isinstance(b, (int, float)) else False
    return a == b


def load(srv):
    rng = random.Random(7)
    trees, _ = harness.gen_forest(rng, 4000, 'h', n_actors=300)
    events = harness.riffle(rng, trees)
    events += [{'post': ODD_ID, 'actor': 'odd actor', 'ts': 5},
               {'post': 'odd child', 'actor': 'b&c', 'ts': 6, 'parent': ODD_ID}]
    acks, fatal = send_all(srv.ingest, harness.group_values(rng, events))
    check('data set ingested', fatal is None and harness.ack_total(acks[-1] if acks else {}) == len(events),
          f'{fatal} {acks[-1:] if acks else None}')
    model = harness.Model()
    model.apply_values(events)
    return model


# ------------------------------------------------------------------------------------ checks

def check_json_equals_rpc(srv, model):
    rpc = Rpc(srv.query)
    d = model.derive()
    roots = sorted(d['cascades'], key=lambda r: -d['cascades'][r]['size'])[:5]
    actors = sorted(d['actors'])[:5]
    queries = [('cascade', {'post': r}) for r in roots] + [('actor', {'id': a}) for a in actors]
    queries += [('top_cascades', {'by': 'size', 'limit': 20}), ('top_actors', {'by': 'reach', 'limit': 15}),
                ('path', {'post': roots[0]}), ('cascade', {'post': roots[0], 'tree': True}),
                ('labels', {}), ('cascade', {'post': ODD_ID})]
    for method, params in queries:
        err, want = rpc.call(method, **params)
        q = urllib.parse.urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()})
        st, got = get_json(srv.http, f'/v1/{method}?{q}')
        check(f'HTTP {method} {q[:60]} equals RPC', err is None and st == 200 and deep_same(got, want),
              f'{st} {str(got)[:300]} vs {err} {str(want)[:300]}')
    err, want = rpc.call('stats')
    st, got = get_json(srv.http, '/v1/stats')
    stable = ('posts', 'placeholders', 'cascades', 'actors', 'edges', 'accepted', 'duplicate', 'rejected')
    check('HTTP stats equals RPC', st == 200 and all(got.get(k) == want.get(k) for k in stable),
          f'{got} vs {want}')
    rpc.close()
    return roots


def check_csv(srv, roots):
    for method, q, rows_of in (('top_cascades', 'by=size&limit=20', lambda j: j),
                               ('cascade', f'post={urllib.parse.quote(roots[0])}&tree=true',
                                lambda j: j['nodes'])):
        _, j = get_json(srv.http, f'/v1/{method}?{q}')
        st, h, body = get(srv.http, f'/v1/{method}?{q}&format=csv')
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        want = rows_of(j)
        ok = st == 200 and h.get('Content-Type', '').startswith('text/csv') and len(rows) == len(want)
        for r, w in zip(rows, want):
            for k, v in w.items():
                if isinstance(v, (dict, list)):
                    continue
                cell = r.get(k)
                if v is None:
                    ok &= cell in ('', None)
                elif isinstance(v, bool):
                    ok &= cell in (str(v).lower(), str(v))
                elif isinstance(v, float):
                    ok &= cell is not None and same(float(cell), v)
                else:
                    ok &= cell == str(v)
        check(f'CSV {method} has the JSON rows', ok, f'{st} {body[:300]!r} vs {str(want)[:300]}')


def check_pandas(srv, roots):
    """What the README promises analysts: pandas.read_json(url) gives one row per record, with the
    RPC port's values, and read_csv of ?format=csv the same frame."""
    import pandas as pd
    rpc = Rpc(srv.query)
    base = f'http://127.0.0.1:{srv.http}/v1'
    for method, params in (('top_cascades', {'by': 'structural_virality', 'limit': 25}),
                           ('top_actors', {'by': 'amplifiers', 'limit': 25}),
                           ('path', {'post': roots[0]}), ('labels', {})):
        err, want = rpc.call(method, **params)
        url = f'{base}/{method}?{urllib.parse.urlencode(params)}'
        for how, df in (('read_json', pd.read_json(url, dtype=False)),
                        ('read_csv', pd.read_csv(url + '&format=csv', dtype={'root': str, 'id': str,
                                                                            'post': str, 'actor': str}))):
            ok = err is None and len(df) == len(want)
            for i, w in enumerate(want if ok else []):
                for k, v in w.items():
                    got = df[k].iloc[i]
                    if v is None:
                        ok &= bool(pd.isna(got))
                    elif isinstance(v, float):
                        ok &= same(float(got), v)
                    else:
                        ok &= str(got) == str(v)
            check(f'pandas.{how} {method} has the RPC rows', ok, f'{df.head()} vs {str(want)[:300]}')
    err, want = rpc.call('cascade', post=roots[0])
    ser = pd.read_json(f'{base}/cascade?post={urllib.parse.quote(roots[0])}', typ='series')
    check('pandas.read_json(typ=series) of a record', err is None and int(ser['size']) == want['size'],
          f'{ser} vs {want}')
    rpc.close()


def check_exports(srv, model, roots):
    for r in roots[:3]:
        exp = model.derive()['cascades'][r]
        n = exp['size'] + exp['missing']
        q = urllib.parse.quote(r)
        st, h, body = get(srv.http, f'/v1/cascade?post={q}&format=graphml')
        try:
            nodes = [e for e in ET.fromstring(body).iter() if e.tag.endswith('}node') or e.tag == 'node']
        except ET.ParseError as e:
            nodes = repr(e)
        check(f'graphml of {r} has {n} nodes', st == 200 and 'graphml' in h.get('Content-Type', '')
              and isinstance(nodes, list) and len(nodes) == n, f'{st} {nodes if isinstance(nodes, str) else len(nodes)}')
        st, h, body = get(srv.http, f'/v1/cascade?post={q}&format=dot&tree=false')
        text = body.decode()
        decl = re.findall(r'^\s*("(?:[^"\\]|\\.)*"|\w+)\s*\[', text, re.M)
        decl = [x for x in decl if x not in ('node', 'edge', 'graph')]
        check(f'dot of {r} has {n} nodes', st == 200 and text.lstrip().startswith(('digraph', 'strict'))
              and len(decl) == n, f'{st} {len(decl)} {text[:200]!r}')
    st, _, _ = get(srv.http, '/v1/stats?format=graphml')
    check('graphml of a non-cascade is 400', st == 400, f'got {st}')


def parse_prom(text):
    """{(name, labels tuple): value}, and problems found."""
    types, samples, bad = {}, {}, []
    for line in text.split('\n'):
        if not line:
            continue
        if line.startswith('# TYPE '):
            _, _, name, typ = line.split(' ', 3)
            types[name] = typ
            continue
        if line.startswith('#'):
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)', line)
        if not m:
            bad.append(f'bad line {line!r}')
            continue
        name, labels = m[1], tuple(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m[3] or ''))
        try:
            value = float(m[4])
        except ValueError:
            bad.append(f'bad value {line!r}')
            continue
        base = re.sub(r'_(bucket|sum|count)$', '', name)
        typ = types.get(name) or types.get(base)
        if typ is None:
            bad.append(f'no TYPE for {name}')
        elif typ == 'counter' and not name.endswith('_total'):
            bad.append(f'counter {name} does not end in _total')
        samples[(name, labels)] = value
    # histograms: cumulative buckets ending with +Inf == _count
    for name, typ in types.items():
        if typ != 'histogram':
            continue
        series = {}
        for (n, labels), v in samples.items():
            if n == name + '_bucket':
                rest = tuple(l for l in labels if l[0] != 'le')
                le = dict(labels)['le']
                series.setdefault(rest, []).append((float('inf') if le == '+Inf' else float(le), v))
        for rest, bs in series.items():
            bs.sort()
            if any(nxt[1] < prev[1] for prev, nxt in zip(bs, bs[1:])):
                bad.append(f'{name}{rest} buckets not cumulative')
            if bs[-1][0] != float('inf') or bs[-1][1] != samples.get((name + '_count', rest)):
                bad.append(f'{name}{rest} +Inf bucket is not _count')
    return samples, bad


def check_metrics(srv):
    rpc = Rpc(srv.query)
    rpc.call('stats')  # an RPC query for the rpc histogram
    err, stats = rpc.call('stats')
    rpc.close()
    st, h, body = get(srv.http, '/metrics')
    samples, bad = parse_prom(body.decode())
    check('/metrics is strict Prometheus text', st == 200 and h.get('Content-Type', '').startswith('text/plain')
          and not bad, f'{st} {bad[:5]}')
    ev = lambda o, r=None: samples.get(('cascaded_events_total', (('outcome', o),) + ((('reason', r),) if r else ())))
    want = [(ev('accepted'), stats.get('accepted')), (ev('duplicate'), stats.get('duplicate')),
            (samples.get(('cascaded_posts', ())), stats.get('posts')),
            (samples.get(('cascaded_cascades', ())), stats.get('cascades')),
            (samples.get(('cascaded_actors', ())), stats.get('actors')),
            (samples.get(('cascaded_edges', ())), stats.get('edges'))]
    rej = stats.get('rejected')
    for r in harness.REASONS:
        n = rej.get(r) if isinstance(rej, dict) else stats.get(f'rejected_{r}')
        if n is not None:
            want.append((ev('rejected', r), n))
    check('/metrics counters equal stats', all(a == b and a is not None for a, b in want), str(want))
    for port in ('rpc', 'http'):
        n = samples.get(('cascaded_query_duration_seconds_count', (('port', port),)))
        check(f'/metrics latency histogram counts {port} queries', n is not None and n >= 1, str(n))
    opened = samples.get(('cascaded_connections_open', (('port', 'http'),)))
    check('/metrics counts the open http connection', opened is not None and opened >= 1, str(opened))


def check_web(srv):
    """The web view: the same page for / and every /ui path, its bundle under /assets/."""
    pages = {}
    for path in ('/', '/ui', '/ui/cascade/p%201', '/ui/actor/u1?x=1'):
        st, h, body = get(srv.http, path)
        pages[path] = body
        check(f'{path} is the web page', st == 200 and h.get('Content-Type', '').startswith('text/html')
              and int(h.get('Content-Length', -1)) == len(body) and b'<html' in body.lower()
              and "default-src 'self'" in h.get('Content-Security-Policy', ''), f'{st} {h} {body[:100]!r}')
    check('every page path serves the same document', len(set(pages.values())) == 1, '')
    page = pages['/']
    for asset, ctype in (('/assets/app.js', 'text/javascript'), ('/assets/app.css', 'text/css')):
        if asset.encode() not in page:
            continue  # the build had no Node.js: the page says so and loads no bundle
        st, h, body = get(srv.http, asset)
        check(f'{asset} is served as {ctype}', st == 200 and h.get('Content-Type', '').startswith(ctype)
              and len(body) > 0 and int(h.get('Content-Length', -1)) == len(body), f'{st} {h}')


def check_statuses(srv):
    st, h, body = get(srv.http, '/healthz')
    check('/healthz is 200 ok', st == 200 and body.strip() == b'ok', f'{st} {body!r}')
    cases = [('/v1/top_cascades?limit=abc', 400), ('/v1/top_cascades?limit=0', 400),
             ('/v1/top_cascades?nope=1', 400), ('/v1/cascade', 400), ('/v1/cascade?post=%zz', 400),
             ('/v1/stats?format=yaml', 400), ('/v1/no_such_method', 404), ('/v1/cascade?post=unknown-post', 404),
             ('/v1/actor?id=nobody-at-all', 404), ('/nowhere', 404), ('/assets/no-such.js', 404),
             ('/assets/', 404), ('/uix', 404), ('/v1/', 404)]
    for path, want in cases:
        st, h, body = get(srv.http, path)
        try:
            j = json.loads(body) if h.get('Content-Type', '').startswith('application/json') else None
        except ValueError:
            j = 'unparsable'
        ok = st == want and int(h.get('Content-Length', -1)) == len(body)
        if j is not None:
            ok &= isinstance(j, dict) and j.get('error', {}).get('code') == want and bool(j['error'].get('message'))
        check(f'{path} is {want}', ok, f'{st} {body[:200]!r}')
    check_web(srv)
    st, h, _ = get(srv.http, '/metrics', method='POST', headers=JSON_TYPE)
    check('POST outside /v1 is 405 with Allow: GET, HEAD', st == 405 and 'GET' in h.get('Allow', ''), f'{st} {h}')
    st, h, _ = get(srv.http, '/v1/stats', method='PUT')
    check('PUT is 405 with Allow', st == 405 and 'GET' in h.get('Allow', ''), f'{st} {h}')
    st, h, body = get(srv.http, '/v1/stats', method='HEAD')
    st2, h2, body2 = get(srv.http, '/v1/labels')
    st3, h3, body3 = get(srv.http, '/v1/labels', method='HEAD')
    check('HEAD: the GET headers, no body', st == 200 and body == b'' and st3 == 200 and body3 == b''
          and h3.get('Content-Length') == h2.get('Content-Length'), f'{st} {h3} {h2}')
    st, _, body = get(srv.http, '/v1/cascade?post=' + urllib.parse.quote(ODD_ID, safe=''))
    j = json.loads(body) if st == 200 else {}
    check('a URL-encoded id with spaces and &', st == 200 and j.get('root') == ODD_ID and j.get('size') == 2,
          f'{st} {body[:200]!r}')
    st, _, body = get(srv.http, '/v1/actor?id=b%26c')
    check('an actor id with & (percent-encoded)', st == 200 and json.loads(body).get('id') == 'b&c', f'{st} {body!r}')
    st, _, body = get(srv.http, '/v1/actor?id=odd+actor')
    check('+ as a space in a query string', st == 200 and json.loads(body).get('id') == 'odd actor', f'{st}')


JSON_TYPE = {'Content-Type': 'application/json'}


def snapshot_files(srv):
    d = os.path.join(srv.data, 'snapshots')
    return sorted(f for f in os.listdir(d) if f.endswith('.snap')) if os.path.isdir(d) else []


def check_state_changes(srv):
    """DESIGN §5: methods that change state are not served on GET (nor HEAD): a page the browser
    visits could call them. POST with Content-Type: application/json (which no HTML form and no
    no-cors fetch can send) or RPC."""
    before = snapshot_files(srv)
    for method in ('GET', 'HEAD'):
        st, h, body = get(srv.http, '/v1/snapshot', method=method)
        j = json.loads(body) if body else {}
        check(f'{method} /v1/snapshot is 405 with Allow: POST, writes nothing',
              st == 405 and h.get('Allow') == 'POST' and snapshot_files(srv) == before
              and (method == 'HEAD' or 'POST' in j.get('error', {}).get('message', '')),
              f'{st} {h} {body[:300]!r} {snapshot_files(srv)}')
    st, h, body = get(srv.http, '/v1/analytics?refresh=true')
    check('GET /v1/analytics?refresh=true is 405 with Allow: POST', st == 405 and h.get('Allow') == 'POST'
          and b'refresh' in body, f'{st} {h} {body[:300]!r}')
    st, _, _ = get(srv.http, '/v1/analytics?refresh=1')
    check('GET /v1/analytics?refresh=1 is 405 too', st == 405, str(st))
    st, _, body = get(srv.http, '/v1/analytics?refresh=false')
    check('GET /v1/analytics?refresh=false reads: served', st in (200, 503), f'{st} {body[:200]!r}')
    for headers in ({}, {'Content-Type': 'application/x-www-form-urlencoded'}, {'Content-Type': 'text/plain'},
                    {'Content-Type': 'multipart/form-data; boundary=x'}):
        st, _, body = get(srv.http, '/v1/snapshot', method='POST', headers=headers)
        check(f'POST /v1/snapshot with {headers or "no Content-Type"}: 415, writes nothing',
              st == 415 and b'application/json' in body and snapshot_files(srv) == before, f'{st} {body[:300]!r}')
    st, _, body = get(srv.http, '/v1/snapshot', method='POST',
                      headers={'Content-Type': 'application/json; charset=utf-8'})
    j = json.loads(body) if st == 200 else {}
    check('POST /v1/snapshot with Content-Type: application/json writes the snapshot',
          st == 200 and j.get('file') in snapshot_files(srv) and j.get('file') not in before, f'{st} {body[:300]!r}')
    st, _, body = get(srv.http, '/v1/analytics?refresh=true', method='POST', headers=JSON_TYPE)
    check('POST /v1/analytics?refresh=true is served', st in (200, 503), f'{st} {body[:300]!r}')
    st, _, body = get(srv.http, '/v1/stats', method='POST', headers=JSON_TYPE)
    check('POST of a read method is served like GET', st == 200 and 'posts' in json.loads(body), f'{st} {body[:200]!r}')
    r, _ = raw(srv.http, b'POST /v1/snapshot HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n'
                         b'Content-Length: 2\r\n\r\n{}')
    check('POST with a body is 413 (parameters go in the query string)', r and r[0] == 413, str(r))
    rpc = Rpc(srv.query)
    err, res = rpc.call('snapshot')
    rpc.close()
    check('RPC snapshot still served', err is None and res.get('file'), f'{err} {res}')


def host_status(port, host):
    """The status of GET /healthz with this Host header (None: no Host header at all)."""
    head = b'GET /v1/stats HTTP/1.1\r\n' + (b'Host: ' + host.encode() + b'\r\n' if host is not None else b'')
    r, _ = raw(port, head + b'Connection: close\r\n\r\n')
    return r[0], r[2] if len(r) > 2 else b''


def check_hosts(srv, bin_dir):
    """DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 reaches the server
    with Host: evil.example; only addresses, localhost and --http-allowed-hosts are answered."""
    p = srv.http
    for host in ('127.0.0.1', f'127.0.0.1:{p}', 'localhost', f'LocalHost:{p}', f'[::1]:{p}', '[::1]',
                 '10.1.2.3:80', ''):
        st, body = host_status(p, host)
        check(f'Host: {host} is served', st == 200, f'{st} {body[:200]!r}')
    for host in ('evil.example', f'evil.example:{p}', '127.0.0.1.evil.example', 'localhost.evil.example',
                 '1.2.3', 'x' * 300):
        st, body = host_status(p, host)
        check(f'Host: {host[:40]} is refused (421) naming --http-allowed-hosts', st == 421
              and b'--http-allowed-hosts' in body, f'{st} {body[:300]!r}')
    r, _ = raw(p, b'GET /healthz HTTP/1.0\r\n\r\n')
    check('HTTP/1.0 without a Host header is served', r and r[0] == 200, str(r))
    r, _ = raw(p, b'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n')
    check('two Host headers: 400', r and r[0] == 400, str(r))
    r, _ = raw(p, b'GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n')
    check('the page too is refused to a foreign Host', r and r[0] == 421, str(r))
    for allowed, host, want in (('*', 'evil.example', 200), ('evil.example,other.example', 'other.example:80', 200),
                                ('evil.example', 'EVIL.example', 200), ('evil.example', 'other.example', 421),
                                ('evil.example', '127.0.0.1', 200)):
        tmp = tempfile.mkdtemp(prefix='cascade-http-hosts-')
        s2 = Server(bin_dir, os.path.join(tmp, 'data'), '--http-allowed-hosts', allowed)
        try:
            s2.start()
            st, body = host_status(s2.http, host)
            check(f'--http-allowed-hosts {allowed}: Host {host} is {want}', st == want, f'{st} {body[:200]!r}')
            check('SIGTERM exits 0', s2.stop() == 0)
        finally:
            s2.kill()
            shutil.rmtree(tmp, ignore_errors=True)


def read_response(f):
    """(status, headers, body) of one response from a socket file."""
    line = f.readline()
    if not line:
        return None
    status = int(line.split()[1])
    headers = {}
    while True:
        l = f.readline()
        if l in (b'\r\n', b''):
            break
        k, v = l.decode().split(':', 1)
        headers[k.strip().lower()] = v.strip()
    body = f.read(int(headers.get('content-length', 0)))
    return status, headers, body


def raw(port, data):
    """Sends bytes on a fresh connection: (first response or an error tuple, what follows it until
    the server closes)."""
    s = socket.create_connection(('127.0.0.1', port), timeout=30)
    f = s.makefile('rb')
    try:
        s.sendall(data)
        r = read_response(f)
        return r, f.read()
    except OSError as e:
        return (repr(e),), b''
    finally:
        s.close()


def check_connections(srv):
    s = socket.create_connection(('127.0.0.1', srv.http), timeout=30)
    f = s.makefile('rb')
    s.sendall(b'GET /v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
              b'GET /v1/cascade?post=unknown-post HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    rs = [read_response(f) for _ in range(3)]
    check('pipelined requests answered in order', [r[0] for r in rs] == [200, 200, 404]
          and b'posts' in rs[0][2] and rs[1][2].strip() == b'ok', str([r[:2] for r in rs]))
    s.sendall(b'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
    r = read_response(f)
    check('Connection: close is honoured', r[0] == 200 and r[1].get('connection') == 'close'
          and f.read() == b'', str(r))
    s.close()

    c = http.client.HTTPConnection('127.0.0.1', srv.http, timeout=30)
    socks, ok = set(), True
    for i in range(20):
        c.request('GET', '/v1/stats' if i % 2 else '/healthz')
        r = c.getresponse()
        r.read()
        ok &= r.status == 200
        socks.add(id(c.sock))
    check('keep-alive: 20 requests on one connection', ok and len(socks) == 1, f'{len(socks)} sockets')
    c.close()

    r, rest = raw(srv.http, b'GET /healthz HTTP/1.0\r\n\r\n')
    check('HTTP/1.0 closes after the answer', r and r[0] == 200 and rest == b'', str(r))
    r, _ = raw(srv.http, b'GET /healthz HTTP/1.1\r\nX-Big: ' + b'a' * 20480 + b'\r\n\r\n')
    check('an oversized header is 431', r and r[0] == 431, str(r and r[:2]))
    r, _ = raw(srv.http, b'GET /v1/stats?x=' + b'a' * 10240 + b' HTTP/1.1\r\n\r\n')
    check('an oversized target is 414', r and r[0] == 414, str(r and r[:2]))
    st, _, _ = get(srv.http, '/healthz')
    check('the server keeps serving after oversized requests', st == 200)
    r, rest = raw(srv.http, b'\x00\x01garbage\r\n\r\n')
    check('a malformed request is 400 and closes', r and r[0] == 400 and rest == b'', str(r))
    r, _ = raw(srv.http, b'GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello')
    check('a request body is 413', r and r[0] == 413, str(r))
    # a client that leaves with a query in flight: the answer is dropped, the server goes on
    for _ in range(20):
        s = socket.create_connection(('127.0.0.1', srv.http), timeout=30)
        s.sendall(b'GET /v1/top_cascades?limit=1000 HTTP/1.1\r\n\r\n')
        s.close()
    st, _, _ = get(srv.http, '/healthz')
    check('clients gone mid-query leave the server serving', st == 200)


def check_under_ingest(srv, tools):
    """HTTP queries answered while a replay streams events at full speed."""
    tmp = tempfile.mkdtemp(prefix='cascade-http-gen-')
    try:
        path = os.path.join(tmp, 'gen.ndjson')
        import subprocess
        subprocess.run([os.path.join(tools, 'cascade-gen'), '--events', '300000', '--seed', '3', '--out', path],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rep = subprocess.Popen([os.path.join(tools, 'cascade-replay'), '--port', str(srv.ingest), path],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        c = http.client.HTTPConnection('127.0.0.1', srv.http, timeout=30)
        n, bad = 0, []
        while rep.poll() is None and n < 5000:
            c.request('GET', '/v1/top_cascades?by=size&limit=5' if n % 2 else '/v1/stats')
            r = c.getresponse()
            body = r.read()
            n += 1
            if r.status != 200:
                bad.append((r.status, body[:100]))
        out, _ = rep.communicate(timeout=120)
        c.close()
        check('HTTP queries answered while ingest runs', n > 0 and not bad and rep.returncode == 0,
              f'{n} queries, {bad[:3]}, replay {rep.returncode} {out[-200:]!r}')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def body(run):
    srv, bin_dir, tools = run.srv, run.bin_dir, run.tools
    model = load(srv)
    roots = check_json_equals_rpc(srv, model)
    check_csv(srv, roots)
    check_pandas(srv, roots)
    check_exports(srv, model, roots)
    check_statuses(srv)
    check_connections(srv)
    check_state_changes(srv)
    check_hosts(srv, bin_dir)
    check_metrics(srv)
    check_under_ingest(srv, tools)


def main():
    harness.run_main('cascade-http-', body)


if __name__ == '__main__':
    main()
