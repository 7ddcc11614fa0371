"""Configured limits against the real server: each violation (a value, string, array, map or depth
past its --max-* flag on the ingest port; a connection past its port's --max-*-connections budget; an RPC request
over 1 MiB; HTTP heads and targets over their bounds; bytes that are not the port's protocol)
gets a clear error naming the limit, is counted in /metrics, and leaves the server and what was
acked before it unharmed; a client still sending when refused reads the error, then a clean
EOF (no reset). RPC requests are held to the same limits, their headers' claims
checked before anything is allocated for them. Also: bad limit values are refused at start-up.
argv: the directory of cascaded, the tools dir."""
import http.client
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msgpack  # noqa: E402

import harness  # noqa: E402
from harness import IngestConn, Rpc, check  # noqa: E402

LIMITS = ['--max-value-bytes', '4096', '--max-string-bytes', '512', '--max-array', '20',
          '--max-map-keys', '10', '--max-depth', '3', '--max-connections', '6', '--max-ingest-connections', '2',
          '--max-query-connections', '2', '--max-http-connections', '2',
          '--max-http-head-bytes', '4096', '--max-http-target-bytes', '2048', '--max-rpc-request-bytes', '65536']


def get(port, path, headers=None):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    try:
        c.request('GET', path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def open_connections(srv):
    _, body = get(srv.http, '/metrics')
    return sum(int(line.rsplit(' ', 1)[1]) for line in body.decode().splitlines()
               if line.startswith('cascaded_connections_open{'))


def metrics(srv):
    _, body = get(srv.http, '/metrics')
    out = {}
    for line in body.decode().splitlines():
        if line.startswith(('cascaded_limit_violations_total{', 'cascaded_malformed_total{')):
            key, val = line.rsplit(' ', 1)
            out[key] = int(val)
    return out


def ev(i):
    return {'post': f'p{i}', 'actor': f'a{i % 3}', 'ts': 1000 + i}


def violate(srv, name, good, bad, words, counter):
    """Sends good events then a bad value on one connection: the good ones are acked, the bad
    value ends the connection with a fatal message holding `words`, the counter goes up by one."""
    before = metrics(srv).get(counter, 0)
    c = IngestConn(srv.ingest)
    c.send(msgpack.packb(good))
    ack = c.wait_total(len(good))
    c.send(bad)
    c.wait_closed()
    fatal = c.fatal() or ''
    c.close()
    check(f'{name}: events before it acked', ack.get('ok', 0) + ack.get('dup', 0) == len(good), str(ack))
    check(f'{name}: fatal message names the limit', all(w in fatal for w in words), fatal)
    after = metrics(srv).get(counter, 0)
    check(f'{name}: counted in /metrics ({counter})', after == before + 1, f'{before} -> {after}')


def check_ingest(srv):
    lim = 'cascaded_limit_violations_total{limit="%s"}'
    big_value = msgpack.packb([dict(ev(900 + i), content='x' * 300) for i in range(15)])
    violate(srv, 'value over --max-value-bytes', [ev(1)], big_value, ['value', '4096'], lim % 'ingest_value_bytes')
    violate(srv, 'string over --max-string-bytes', [ev(2)], msgpack.packb(dict(ev(901), content='y' * 600)),
            ['str', '512'], lim % 'ingest_string_bytes')
    violate(srv, 'array over --max-array', [ev(3)], msgpack.packb([ev(910 + i) for i in range(21)]),
            ['array', '20'], lim % 'ingest_array')
    wide = dict(ev(902), **{f'k{i}': i for i in range(8)})
    violate(srv, 'map over --max-map-keys', [ev(4)], msgpack.packb(wide), ['map', '10'], lim % 'ingest_map_keys')
    violate(srv, 'nesting over --max-depth', [ev(5)], msgpack.packb([dict(ev(903), extra=[[1]])]),
            ['depth', '3'], lim % 'ingest_depth')
    violate(srv, 'bytes that are not msgpack', [ev(6)], b'\xc1garbage', ['malformed'],
            'cascaded_malformed_total{port="ingest"}')
    # a value at the limits passes: unknown keys up to the map limit, a long content
    ok = dict(ev(7), content='z' * 500, **{f'u{i}': 1 for i in range(5)})
    c = IngestConn(srv.ingest)
    c.send(msgpack.packb([ok]))
    ack = c.wait_total(1)
    c.close()
    check('a value just inside every limit is accepted', ack.get('ok') == 1, str(ack))
    r = Rpc(srv.query)
    err, st = r.call('stats')
    r.close()
    check('only the good events were applied', err is None and st['posts'] == 7 and st['rejected'] == 0, str(st))


def refused_message(port, parse):
    """What a connection past the limit reads before the server closes it."""
    s = socket.create_connection(('127.0.0.1', port), timeout=5)
    data = b''
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    s.close()
    return parse(data)


def check_connections(srv):
    key = 'cascaded_limit_violations_total{limit="connections"}'
    before = metrics(srv).get(key, 0)
    # the earlier checks' connections must be gone first (the server closes them when it sees
    # the peer's FIN), or one of those held here would be the one refused
    deadline = time.time() + 10
    while time.time() < deadline and open_connections(srv) > 1:  # 1: the /metrics request itself
        time.sleep(0.05)
    time.sleep(1.0)  # and the last /metrics request's own connection closed on the server's side
    # each port's budget (2) filled: the next connection on it is refused, naming its flag
    held = [socket.create_connection(('127.0.0.1', port)) for port in (srv.ingest, srv.query, srv.http)
            for _ in range(2)]
    time.sleep(0.3)
    fatal = refused_message(srv.ingest, lambda d: msgpack.unpackb(d, raw=False) if d else None)
    check('ingest past --max-ingest-connections: a fatal message, then closed',
          isinstance(fatal, dict) and '--max-ingest-connections' in fatal.get('fatal', ''), str(fatal))
    rpc = refused_message(srv.query, lambda d: msgpack.unpackb(d, raw=False) if d else None)
    check('RPC past --max-query-connections: error 503, then closed', isinstance(rpc, list) and rpc[2]
          and rpc[2].get('code') == 503 and '--max-query-connections' in rpc[2]['message'], str(rpc))
    page = refused_message(srv.http, lambda d: d)
    body = b'too many connections (--max-http-connections); retry later\n'
    check('HTTP past --max-http-connections: 503, then closed', page.startswith(b'HTTP/1.1 503')
          and page.endswith(body) and b'Content-Length: %d' % len(body) in page, repr(page))
    for s in held:
        s.close()
    time.sleep(0.3)
    check('the refusals are counted', metrics(srv).get(key, 0) == before + 3, str(metrics(srv)))


def check_rpc_and_http(srv):
    s = socket.create_connection(('127.0.0.1', srv.query), timeout=10)
    s.sendall(b'\x94\x00\x01\xa5stats\x91\xdb' + (1 << 20).to_bytes(4, 'big') + b'x' * (70 * 1024))
    u = msgpack.Unpacker(raw=False)
    got = None
    try:
        while got is None:
            data = s.recv(65536)
            if not data:
                break
            u.feed(data)
            got = next(u, None)
    except OSError:
        pass
    s.close()
    # the str32 claims more than --max-rpc-request-bytes (65536) and --max-string-bytes (here
    # 1024, a token's length): the scanner names the string limit (check_rpc_floors_and_bytes
    # has the byte limit alone)
    check('an RPC request claiming a 1 MiB string: error 413 naming the limit', isinstance(got, list) and got[2]
          and got[2].get('code') == 413 and '--max-string-bytes' in got[2].get('message', ''), str(got))
    st, body = get(srv.http, '/v1/stats?' + 'a' * 2100)
    check('HTTP target over --max-http-target-bytes: 414 naming it', st == 414 and b'2048' in body,
          f'{st} {body[:100]!r}')
    st, body = get(srv.http, '/v1/stats', {'X-Big': 'b' * 4200})
    check('HTTP head over --max-http-head-bytes: 431 naming it', st == 431 and b'4096' in body,
          f'{st} {body[:100]!r}')
    st, body = get(srv.http, '/ui/cascade/' + 'x' * 2000)
    check('a target just inside the limit is served', st == 200 and b'<html' in body.lower(), f'{st} {body[:100]!r}')
    m = metrics(srv)
    check('RPC and HTTP limits counted', m.get('cascaded_limit_violations_total{limit="rpc_string_bytes"}') == 1
          and m.get('cascaded_limit_violations_total{limit="http_target_bytes"}') == 1
          and m.get('cascaded_limit_violations_total{limit="http_head_bytes"}') == 1, json.dumps(m))


def send_more_then_read(port, first, more):
    """Sends first, then `more` without reading (a producer that has not noticed the refusal),
    then reads to the end: (what was read, the error that ended it or None)."""
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    data, err = b'', None
    try:
        s.sendall(first)
        s.sendall(more)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        err = e
    s.close()
    return data, err


def check_lingering_close(srv):
    """A connection the server ends while the peer is still sending: the answer arrives, then a
    clean EOF. Closing on unread input would reset the connection instead (the kernel answers
    a close with unread bytes with RST), and a reset can destroy the answer before it is read."""
    more = b'\x00' * (1 << 20)
    data, err = send_more_then_read(srv.ingest, msgpack.packb(dict(ev(950), content='q' * 600)), more)
    u = msgpack.Unpacker(raw=False)
    u.feed(data)
    fatal = next((m['fatal'] for m in u if isinstance(m, dict) and 'fatal' in m), None)
    check('ingest refused mid-stream, 1 MiB more sent: the fatal message, then EOF, no reset',
          err is None and fatal is not None and '512' in fatal, f'{fatal!r} {err!r}')
    data, err = send_more_then_read(srv.query, b'\xc1', more)
    u = msgpack.Unpacker(raw=False)
    u.feed(data)
    got = next(u, None)
    check('RPC refused mid-stream, 1 MiB more sent: an error, then EOF, no reset',
          err is None and isinstance(got, list) and got[2] and got[2].get('code') in (400, 413), f'{got!r} {err!r}')
    head = b'GET /v1/stats HTTP/1.1\r\nHost: x\r\nX-Big: ' + b'b' * 4200 + b'\r\n\r\n'
    # a peer that reads the answer and EOF but never closes is not waited for for long
    base = open_connections(srv)
    s = socket.create_connection(('127.0.0.1', srv.ingest), timeout=10)
    s.sendall(b'\xc1')
    while s.recv(65536):
        pass
    deadline = time.time() + 10
    while time.time() < deadline and open_connections(srv) > base:
        time.sleep(0.1)
    left = open_connections(srv)
    s.close()
    check('a refused peer that never closes: the server closes it within 10 s', left <= base, f'{left} > {base}')
    data, err = send_more_then_read(srv.http, head, more)
    check('HTTP refused (431), 1 MiB more sent: the answer, then EOF, no reset',
          err is None and data.startswith(b'HTTP/1.1 431'), f'{data[:60]!r} {err!r}')


def vm_size(pid):
    with open(f'/proc/{pid}/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmSize:'))


def rpc_answer(port, data):
    """What the query port answers the bytes `data` with: the error map of its first answer ({}
    when there is none within 5 s, or it is not an error), that answer, and whether the
    connection was closed after it."""
    s = socket.create_connection(('127.0.0.1', port), timeout=5)
    s.sendall(data)
    u = msgpack.Unpacker(raw=False)
    got, closed = None, False
    try:
        while not closed:
            chunk = s.recv(65536)
            closed = not chunk
            u.feed(chunk)
            got = got if got is not None else next(u, None)
    except OSError:  # no answer in time (or reset)
        pass
    s.close()
    ok = isinstance(got, list) and len(got) == 4 and isinstance(got[2], dict)
    return got[2] if ok else {}, got, closed


def refused(srv, name, data, words, counter):
    """data claims more than a limit allows: error 413 naming it at once, closed, counted."""
    lim = 'cascaded_limit_violations_total{limit="%s"}' % counter
    before = metrics(srv).get(lim, 0)
    err, got, closed = rpc_answer(srv.query, data)
    msg = str(err.get('message', ''))
    check(f'RPC {name}: error 413 naming the limit, then closed',
          err.get('code') == 413 and closed and all(w in msg for w in words), f'{got!r} closed={closed}')
    after = metrics(srv).get(lim, 0)
    check(f'RPC {name}: counted in /metrics ({lim})', after == before + 1, f'{before} -> {after}')


def check_rpc_claims(srv):
    """Requests of a few bytes claiming huge containers and strings, checked before msgpack-c
    sees them: each refused at once, and the server's address space does not grow (msgpack-c
    used to reserve what the headers claimed: 264 GB of VmSize after three such requests)."""
    start = vm_size(srv.p.pid)
    request = b'\x94\x00\x01\xa5stats'  # [0, 1, "stats", ...
    refused(srv, 'array32 of 268 M elements', b'\xdd\x10\x00\x00\x00', ['268435456', '20', '--max-array'], 'rpc_array')
    refused(srv, 'array32 of 4 G elements as params', request + b'\xdd\xff\xff\xff\xff', ['--max-array'], 'rpc_array')
    refused(srv, 'map32 of 268 M keys', b'\xdf\x10\x00\x00\x00', ['268435456', '10', '--max-map-keys'], 'rpc_map_keys')
    refused(srv, 'map32 of 4 G keys in an array', b'\x91\xdf\xff\xff\xff\xff', ['--max-map-keys'], 'rpc_map_keys')
    refused(srv, 'str32 of 4 GB as a parameter', request + b'\x91\x81\xa1k\xdb\xff\xff\xff\xff',
            ['4294967295', '--max-string-bytes'], 'rpc_string_bytes')
    refused(srv, 'nested deeper than --max-depth', msgpack.packb([0, 1, 'stats', [{'a': [1]}]]),
            ['depth of 4', '--max-depth'], 'rpc_depth')
    grown = vm_size(srv.p.pid) - start
    check('RPC hostile claims: VmSize grew by less than 2 GiB', grown < 2 << 30, f'{grown} bytes')
    err, got, closed = rpc_answer(srv.query, b'\xc1')
    check('RPC bytes that are not msgpack: error 400, then closed', err.get('code') == 400 and closed,
          f'{got!r} closed={closed}')
    r = Rpc(srv.query)
    err, st = r.call('stats')
    r.close()
    check('RPC after the hostile claims: stats answered', err is None and st.get('posts') == 7, f'{err} {st}')


def check_rpc_floors_and_bytes(bin_dir, tmp):
    """Ingest limits below what a request needs (--max-array 1, --max-depth 2) leave the query
    port usable; with the other limits wide open, --max-rpc-request-bytes still bounds what the
    headers of a request may claim, before its bytes come."""
    srv = harness.Server(bin_dir, os.path.join(tmp, 'floors'), '--max-array', '1', '--max-depth', '2',
                         '--max-map-keys', '65536', '--max-string-bytes', '16777216',
                         '--max-rpc-request-bytes', '65536')
    try:
        srv.start()
        r = Rpc(srv.query)
        err, st = r.call('stats')
        r.close()
        check('--max-array 1 --max-depth 2: an RPC request is still answered', err is None and 'posts' in st,
              f'{err} {st}')
        request = b'\x94\x00\x01\xa5stats\x91'
        refused(srv, 'params map of 60000 keys in 65536 bytes', request + b'\xde\xea\x60',
                ['at least 120', '65536', '--max-rpc-request-bytes'], 'rpc_request_bytes')
        refused(srv, 'str32 of 1 MB in 65536 bytes', request + b'\x81\xa1k\xdb\x00\x10\x00\x00',
                ['at least 1048', '--max-rpc-request-bytes'], 'rpc_request_bytes')
        check('the server with wide limits stops cleanly', srv.stop() == 0)
        reports = harness.sanitizer_reports([srv.err_path])
        check('the server with wide limits: no sanitizer reports', not reports, '\n'.join(reports[:10]))
    finally:
        srv.kill()


def check_startup(bin_dir, tmp):
    for flag, val in (('--max-depth', '1'), ('--max-array', '0'), ('--max-value-bytes', '99999999999'),
                      ('--max-map-keys', 'lots'), ('--max-rpc-request-bytes', '100'),
                      ('--max-http-head-bytes', '10')):
        p = subprocess.run([os.path.join(bin_dir, 'cascaded'), '--data-dir', os.path.join(tmp, 'x'), flag, val],
                           capture_output=True, text=True, timeout=30)
        check(f'{flag} {val} refused at start-up', p.returncode == 2 and flag[2:] in p.stderr, p.stderr)


def check_target_over_head(bin_dir, tmp):
    p = subprocess.run([os.path.join(bin_dir, 'cascaded'), '--data-dir', os.path.join(tmp, 'y'),
                        '--max-http-head-bytes', '2048', '--max-http-target-bytes', '4096'],
                       capture_output=True, text=True, timeout=30)
    check('a target limit above the head limit is refused at start-up', p.returncode == 2
          and 'max-http-target-bytes' in p.stderr, p.stderr)


def run(srv, tools):
    check_ingest(srv)
    check_connections(srv)
    check_rpc_and_http(srv)
    check_lingering_close(srv)
    check_rpc_claims(srv)
    check_rpc_floors_and_bytes(sys.argv[1], os.path.dirname(srv.data))
    check_startup(sys.argv[1], os.path.dirname(srv.data))
    check_target_over_head(sys.argv[1], os.path.dirname(srv.data))
    check('the server is unharmed', srv.alive() and get(srv.http, '/healthz')[0] == 200)


def main():
    harness.run_main('cascade-limits-', lambda r: run(r.srv, r.tools), *LIMITS)


if __name__ == '__main__':
    main()
