"""--auth-token-file against the real server: every port refuses a client without the token or
with a wrong one (a clear message, a counter in /metrics, nothing ingested, the server unharmed),
and serves one that presents it: ingest streams that begin with {"auth": TOKEN} (also split
across packets), RPC connections that call `auth` first, HTTP requests with a Bearer header; the
page and /healthz stay open; cascade-replay and cascade-cli take --auth-token-file; start-up
refuses a short token. argv: the directory of cascaded, the tools dir."""
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msgpack  # noqa: E402

import harness  # noqa: E402
from harness import IngestConn, Rpc, check  # noqa: E402

TOKEN = 'k3y-' + 'x' * 28 + '-s3cret'


def get(port, path, token=None):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    try:
        c.request('GET', path, headers={'Authorization': f'Bearer {token}'} if token else {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def events(prefix, n):
    return [{'post': f'{prefix}{i}', 'actor': f'a{i % 7}', 'ts': 1000 + i,
             **({'parent': f'{prefix}{i // 2}'} if i else {})} for i in range(n)]


def stats(srv):
    _, _, body = get(srv.http, '/v1/stats', TOKEN)
    return json.loads(body)


def check_ingest(srv):
    c = IngestConn(srv.ingest)
    c.send(msgpack.packb(events('n', 3)))
    c.wait_closed()
    check('ingest without the auth map: fatal, names the map', 'auth' in (c.fatal() or ''), str(c.msgs))
    c.close()
    c = IngestConn(srv.ingest)
    c.send(msgpack.packb({'auth': 'wrong-token-wrong-token'}) + msgpack.packb(events('w', 3)))
    c.wait_closed()
    check('ingest with a wrong token: fatal "wrong token"', 'wrong token' in (c.fatal() or ''), str(c.msgs))
    c.close()
    check('nothing of the refused streams was ingested', stats(srv)['accepted'] == 0, str(stats(srv)))
    # the right token, the map split across two sends, events in the same packet as its end
    c = IngestConn(srv.ingest)
    data = msgpack.packb({'auth': TOKEN}) + msgpack.packb(events('ok', 10))
    c.send(data[:9])
    time.sleep(0.2)
    c.send(data[9:])
    ack = c.wait_total(10)
    check('ingest after {"auth": TOKEN} (split): every event acked', ack.get('ok') == 10 and c.fatal() is None,
          f'{ack} {c.msgs}')
    c.close()


def check_rpc(srv):
    r = Rpc(srv.query)
    err, res = r.call('stats')
    check('RPC without auth: 401 naming the auth request', err and err.get('code') == 401
          and 'auth' in err.get('message', ''), str(err))
    r.close()
    r = Rpc(srv.query)
    err, res = r.call('auth', token='not-the-token-at-all')
    check('RPC auth with a wrong token: 401', err and err.get('code') == 401 and 'wrong' in err['message'], str(err))
    r.close()
    r = Rpc(srv.query)
    err, res = r.call('auth', token=TOKEN)
    check('RPC auth with the token', err is None and res == {'authenticated': True}, f'{err} {res}')
    err, res = r.call('stats')
    check('RPC after auth: answered', err is None and res.get('accepted') == 10, f'{err} {res}')
    r.close()


def check_http(srv):
    st, h, body = get(srv.http, '/v1/stats')
    check('HTTP /v1 without a token: 401 with WWW-Authenticate', st == 401 and 'Bearer' in
          h.get('WWW-Authenticate', '') and b'Authorization' in body, f'{st} {h} {body!r}')
    st, _, _ = get(srv.http, '/metrics', 'wrong-token-wrong-token')
    check('HTTP /metrics with a wrong token: 401', st == 401, str(st))
    st, _, body = get(srv.http, '/v1/cascade?post=ok0', TOKEN)
    check('HTTP with the Bearer token: answered', st == 200 and json.loads(body).get('size') == 10,
          f'{st} {body[:200]!r}')
    for path in ('/healthz', '/', '/ui/cascade/ok0'):
        st, _, _ = get(srv.http, path)
        check(f'{path} needs no token', st == 200, str(st))
    _, _, body = get(srv.http, '/metrics', TOKEN)
    text = body.decode()
    counts = {p: int(line.rsplit(' ', 1)[1]) for line in text.splitlines()
              if line.startswith('cascaded_auth_failures_total{')
              for p in ('ingest', 'rpc', 'http') if f'port="{p}"' in line}
    check('/metrics counts the refusals per port', counts == {'ingest': 2, 'rpc': 2, 'http': 2}, str(counts))


# "auth" (and "token") in each of msgpack's str encodings, and the map in each of its own
STR_ENC = {'fixstr': lambda b: bytes([0xa0 | len(b)]) + b,
           'str8': lambda b: b'\xd9' + bytes([len(b)]) + b,
           'str16': lambda b: b'\xda' + len(b).to_bytes(2, 'big') + b,
           'str32': lambda b: b'\xdb' + len(b).to_bytes(4, 'big') + b}
MAP1 = {'fixmap': b'\x81', 'map16': b'\xde\x00\x01', 'map32': b'\xdf\x00\x00\x00\x01'}


def check_encodings(srv):
    """A client library may encode the key "auth" as str8 (or str16/32) and the map as map16: the
    same map, accepted on ingest and RPC."""
    for i, (enc, f) in enumerate(STR_ENC.items()):
        for mname, mhead in MAP1.items():
            if enc != 'fixstr' and mname != 'fixmap' and enc != 'str8':
                continue
            prefix = f'{enc[:5]}{mname[:5]}'
            c = IngestConn(srv.ingest)
            opening = mhead + f(b'auth') + STR_ENC['str32' if enc == 'str32' else 'str8'](TOKEN.encode())
            data = opening + msgpack.packb(events(prefix, 4))
            c.send(data[:3])  # split inside the key
            time.sleep(0.05)
            c.send(data[3:])
            ack = c.wait_total(4, timeout=10)
            check(f'ingest: {{"auth": TOKEN}} with a {enc} key in a {mname}: accepted',
                  ack.get('ok') == 4 and c.fatal() is None, f'{ack} {c.msgs}')
            c.close()
        r = Rpc(srv.query)
        req = (b'\x94\x00\x07' + f(b'auth') + b'\x91\x81' + f(b'token')
               + STR_ENC['str32' if enc == 'str32' else 'str8'](TOKEN.encode()))
        r.s.sendall(req)
        got = None
        while got is None:
            data = r.s.recv(65536)
            if not data:
                break
            r.u.feed(data)
            got = next(iter(r.u), None)
        ok = got == [1, 7, None, {'authenticated': True}]
        err, res = r.call('stats') if ok else ('not authenticated', None)
        check(f'RPC: auth with a {enc} method name and key: accepted', ok and err is None, f'{got} {err}')
        r.close()


def post(port, path, token=None, ctype='application/json'):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
    try:
        h = {'Content-Type': ctype}
        if token:
            h['Authorization'] = f'Bearer {token}'
        c.request('POST', path, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def check_post(srv):
    st, body = post(srv.http, '/v1/snapshot')
    check('POST /v1/snapshot without the token: 401', st == 401, f'{st} {body[:200]!r}')
    st, body = post(srv.http, '/v1/snapshot', TOKEN)
    check('POST /v1/snapshot with the token: the snapshot is written',
          st == 200 and os.path.exists(os.path.join(srv.data, 'snapshots', json.loads(body)['file'])),
          f'{st} {body[:200]!r}')
    st, body = post(srv.http, '/v1/snapshot', TOKEN, ctype='text/plain')
    check('POST with the token but a form\'s Content-Type: 415', st == 415, f'{st} {body[:200]!r}')


def check_tools(srv, tools, tmp):
    tokfile = os.path.join(tmp, 'token')
    with open(tokfile, 'w') as f:
        f.write(TOKEN + '\n')
    os.chmod(tokfile, 0o600)
    dump = os.path.join(tmp, 'dump.ndjson')
    with open(dump, 'w') as f:
        for e in events('r', 50):
            f.write(json.dumps(e) + '\n')
    replay = os.path.join(tools, 'cascade-replay')
    p = subprocess.run([replay, '--quiet', '--port', str(srv.ingest), '--auth-token-file', tokfile, dump],
                       capture_output=True, text=True, timeout=60)
    check('cascade-replay --auth-token-file: all acked', p.returncode == 0 and 'ok 50' in p.stdout,
          f'{p.returncode} {p.stdout} {p.stderr}')
    p = subprocess.run([replay, '--quiet', '--port', str(srv.ingest), dump], capture_output=True, text=True,
                       timeout=60)
    check('cascade-replay without the token: fails, says why', p.returncode != 0 and 'auth' in p.stderr,
          f'{p.returncode} {p.stdout} {p.stderr}')
    cli = os.path.join(tools, 'cascade-cli')
    p = subprocess.run([cli, '--port', str(srv.query), '--auth-token-file', tokfile, '--json', 'cascade',
                        'post=r0'], capture_output=True, text=True, timeout=60)
    check('cascade-cli --auth-token-file: answered', p.returncode == 0 and json.loads(p.stdout).get('size') == 50,
          f'{p.returncode} {p.stdout[:300]} {p.stderr}')
    p = subprocess.run([cli, '--port', str(srv.query), 'stats'], capture_output=True, text=True, timeout=60)
    check('cascade-cli without the token: exit 1 with the 401 message', p.returncode == 1
          and 'auth' in p.stderr, f'{p.returncode} {p.stderr}')


def check_startup(bin_dir, tmp):
    short = os.path.join(tmp, 'short')
    with open(short, 'w') as f:
        f.write('tooshort\n')
    p = subprocess.run([os.path.join(bin_dir, 'cascaded'), '--ingest-port', '0', '--query-port', '0',
                        '--http-port', '0', '--data-dir', os.path.join(tmp, 'd2'), '--auth-token-file', short],
                       capture_output=True, text=True, timeout=30)
    check('a short token is refused at start-up', p.returncode != 0 and '16 bytes' in p.stderr, p.stderr)
    p = subprocess.run([os.path.join(bin_dir, 'cascaded'), '--ingest-port', '0', '--query-port', '0',
                        '--http-port', '0', '--data-dir', os.path.join(tmp, 'd3'), '--auth-token-file',
                        os.path.join(tmp, 'missing')], capture_output=True, text=True, timeout=30)
    check('a missing token file is refused at start-up', p.returncode != 0 and 'missing' in p.stderr, p.stderr)


def run(srv, tools):
    tmp = os.path.dirname(srv.data)
    check_ingest(srv)
    check_rpc(srv)
    check_http(srv)
    check_encodings(srv)
    check_post(srv)
    check_tools(srv, tools, tmp)
    check_startup(sys.argv[1], tmp)
    check('the server survived every refusal', srv.alive())


def main():
    tokfile = tempfile.mktemp(prefix='cascade-auth-token-')
    with open(tokfile, 'w') as f:
        f.write(f'  {TOKEN}\n')
    os.chmod(tokfile, 0o600)
    try:
        harness.run_main('cascade-auth-', lambda r: run(r.srv, r.tools), '--auth-token-file', tokfile)
    finally:
        os.unlink(tokfile)


if __name__ == '__main__':
    main()
