#!/usr/bin/python3
"""Integration test of cascade-cli (DESIGN §5, §7) against the real server.

usage: /usr/bin/python3 test_cli_query.py BIN_DIR TOOLS_DIR
       (BIN_DIR holds `cascaded`, TOOLS_DIR `cascade-cli` and `cascade-replay`)

Loads tests/data/sample.ndjson.gz and a few hand-made events whose strings need escaping in every
format (commas, quotes, newlines, <&"), then checks each output of cascade-cli against the same
query over msgpack-RPC: --json equals the RPC result, the table holds its values, CSV parses to
them, GraphML parses with xml.etree into size + missing nodes, DOT has its nodes, edges and dashed
placeholders. Then the exit codes: --help lists every method the server knows, unknown method and
bad parameter exit 2, unknown post exits 1 with the 404, no server exits 3, a silent server times
out with 3. Prints one line per check, ends with 'N passed, M failed'; exit 1 if any failed.
"""
import csv
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import BASE_TS, Rpc, check, free_port, send_all  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(HERE, '..', 'data', 'sample.ndjson.gz')
GML = '{http://graphml.graphdrawing.org/xmlns}'

# Two small cascades: r1 (observed root, awkward strings) and one under the placeholder `ghost`.
EVENTS = [
    {'post': 'r1', 'actor': 'alice, "the" one', 'ts': BASE_TS, 'content': 'https://x.example/a?b=1,2',
     'label': 'false'},
    {'post': 'c1', 'parent': 'r1', 'actor': 'b<&"ob', 'ts': BASE_TS + 1000, 'kind': 'share'},
    {'post': 'c2', 'parent': 'r1', 'actor': 'carol\nnewline', 'ts': BASE_TS + 2000},
    {'post': 'c3', 'parent': 'c1', 'actor': 'dave', 'ts': BASE_TS + 3000, 'kind': 'quote'},
    {'post': 'x1', 'parent': 'ghost', 'actor': 'erin', 'ts': BASE_TS + 5000},
    {'post': 'x2', 'parent': 'x1', 'actor': 'frank', 'ts': BASE_TS + 6000},
    {'post': 'x3', 'parent': 'ghost', 'actor': 'gina', 'ts': BASE_TS + 7000},
]


class Cli:
    def __init__(self, tools_dir, port):
        self.path, self.port = os.path.join(tools_dir, 'cascade-cli'), port

    def run(self, *args, port=True, timeout=60):
        """(exit status, stdout, stderr, seconds) of one cascade-cli run."""
        argv = [self.path] + (['--port', str(self.port)] if port else []) + list(args)
        t0 = time.time()
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        return (p.returncode, p.stdout.decode('utf-8', 'replace'), p.stderr.decode('utf-8', 'replace'),
                time.time() - t0)


def cell(v):
    """What a CSV or table cell holds for a scalar result value."""
    if v is None:
        return ''
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, float) and v == int(v):
        return f'{v:.1f}'
    return str(v)


def tcell(v):
    """What a table cell holds: floats with 6 significant digits (%.6g), the rest as in CSV."""
    return f'{v:.6g}' if isinstance(v, float) else cell(v)


def load(srv, tools_dir):
    acks, fatal = send_all(srv.ingest, EVENTS)
    check('hand-made events acked', fatal is None and acks and acks[-1].get('ok') == len(EVENTS), f'{acks[-1:]}')
    p = subprocess.run([os.path.join(tools_dir, 'cascade-replay'), '--port', str(srv.ingest), SAMPLE],
                       capture_output=True, timeout=120)
    check('sample replayed', p.returncode == 0 or b' ok ' in p.stdout, p.stdout[-300:] + p.stderr[-300:])


def check_json(cli, rpc):
    for args, params in ((['cascade', 'post=c3'], {'post': 'c3'}),
                         (['cascade', 'post=r1', 'tree=true'], {'post': 'r1', 'tree': True}),
                         (['top_cascades', 'limit=5', 'by=depth'], {'limit': 5, 'by': 'depth'}),
                         (['actor', 'id=b<&"ob'], {'id': 'b<&"ob'}),
                         (['stats'], {})):
        rc, out, err, _ = cli.run('--json', *args)
        want = rpc.call(args[0], **params)
        try:
            got = json.loads(out)
        except ValueError as e:
            got = f'not JSON: {e}: {out[:200]!r}'
        if args[0] == 'stats':  # moving figures: same keys
            check('--json stats has the RPC keys', rc == 0 and isinstance(got, dict) and set(got) == set(want[1]),
                  f'{rc} {err}')
        else:
            check(f'--json {" ".join(args)} equals the RPC result', rc == 0 and want[0] is None and got == want[1],
                  f'rc={rc} err={err!r} got={got!r} want={want!r}'[:1500])


def check_table(cli, rpc):
    _, res = rpc.call('cascade', post='r1')
    rc, out, err, _ = cli.run('cascade', 'post=r1')
    lines = {l.split()[0]: l.split(None, 1)[1] if len(l.split()) > 1 else '' for l in out.splitlines() if l.strip()}
    bad = [k for k, v in res.items() if v is not None and lines.get(k, '').strip() != tcell(v).replace('\n', '\\n')]
    check('table: cascade record lines hold every value', rc == 0 and not bad, f'{bad} {out!r}')
    _, top = rpc.call('top_cascades', limit=5)
    rc, out, err, _ = cli.run('top_cascades', 'limit=5')
    rows = out.splitlines()
    ok = rc == 0 and len(rows) == 2 + len(top) and rows[0].split()[0] == 'root'
    for r, line in zip(top, rows[2:]):
        ok = ok and line.split()[0] == r['root'] and str(r['size']) in line.split() and tcell(
            r['structural_virality']) in line
    check('table: top_cascades has a header, a rule and one row per cascade', ok, out)
    rc, out, err, _ = cli.run('cascade', 'post=r1', 'tree=true')
    check('table: cascade with tree lists the nodes', rc == 0 and '\nnodes:\n' in out and
          all(p in out for p in ('r1', 'c1', 'c2', 'c3')) and 'carol\\nnewline' in out, out)
    rc, out, err, _ = cli.run('top_cascades', 'label=nosuchlabel')
    check('table: an empty list prints (no rows)', rc == 0 and out == '(no rows)\n', f'{rc} {out!r} {err}')


def check_csv(cli, rpc):
    _, top = rpc.call('top_cascades', limit=7, by='structural_virality')
    rc, out, err, _ = cli.run('--format', 'csv', 'top_cascades', 'limit=7', 'by=structural_virality')
    rows = list(csv.DictReader(io.StringIO(out, newline='')))
    bad = [(r, g) for r, g in zip(top, rows) if any(g.get(k) != cell(v) for k, v in r.items())]
    check('csv: top_cascades rows match the RPC result', rc == 0 and len(rows) == len(top) and not bad
          and '\r\n' in out, f'{bad[:2]} {out[:500]!r}')
    _, res = rpc.call('cascade', post='r1', tree=True)
    rc, out, err, _ = cli.run('--format', 'csv', 'cascade', 'post=r1', 'tree=true')
    rows = list(csv.DictReader(io.StringIO(out, newline='')))
    want = [{k: cell(v) for k, v in n.items()} for n in res['nodes']]
    check('csv: cascade tree rows are its nodes (quoted commas, quotes, newlines)',
          rc == 0 and [dict(r) for r in rows] == want, f'{rows} {want}')


def check_graphml(cli, rpc, post):
    _, res = rpc.call('cascade', post=post)
    rc, out, err, _ = cli.run('--format', 'graphml', 'cascade', f'post={post}')
    try:
        root = ET.fromstring(out.encode())
    except ET.ParseError as e:
        check(f'graphml {post}: parses', False, f'{e} {out[:300]!r} {err}')
        return
    keys = {k.get('id'): k.get('attr.name') for k in root.iter(GML + 'key')}
    nodes = list(root.iter(GML + 'node'))
    edges = list(root.iter(GML + 'edge'))
    n = res['size'] + res['missing']

    def data(node):
        return {keys[d.get('key')]: d.text or '' for d in node.iter(GML + 'data')}

    attrs = [data(x) for x in nodes]
    ph = sum(a.get('placeholder') == 'true' for a in attrs)
    check(f'graphml {post}: size + missing nodes, n - 1 edges, placeholders marked',
          rc == 0 and len(nodes) == n and len(edges) == n - 1 and ph == res['missing'],
          f'rc={rc} nodes={len(nodes)} edges={len(edges)} ph={ph} res={res}')
    g = data(root.find(GML + 'graph'))
    check(f'graphml {post}: graph attributes are the metrics',
          g.get('root') == str(res['root']) and g.get('size') == str(res['size']), f'{g}')
    return attrs


def check_exports(cli, rpc):
    attrs = check_graphml(cli, rpc, 'r1') or []
    check('graphml: <&" and commas survive escaping', {'b<&"ob', 'alice, "the" one', 'carol\nnewline'} <=
          {a.get('actor') for a in attrs}, f'{attrs}')
    check_graphml(cli, rpc, 'x2')
    _, top = rpc.call('top_cascades', limit=1)
    check_graphml(cli, rpc, top[0]['root'])
    _, res = rpc.call('cascade', post='x2')
    rc, out, err, _ = cli.run('--format', 'dot', 'cascade', 'post=x2')
    n = res['size'] + res['missing']
    check('dot: a digraph with size + missing nodes, n - 1 edges, placeholders dashed',
          rc == 0 and out.startswith('digraph cascade {') and out.rstrip().endswith('}') and
          len(re.findall(r'\[label=', out)) == n and out.count(' -> ') == n - 1 and
          out.count('style=dashed') == res['missing'] == 1 and '"ghost" -> "x1"' in out, out)
    rc, out, err, _ = cli.run('--format', 'dot', 'cascade', 'post=r1', 'tree=false')
    check('dot: ids and labels escaped', rc == 0 and '"r1" -> "c1"' in out and 'b<&\\"ob' in out and
          'alice, \\"the\\" one' in out, out)
    rc, out, err, _ = cli.run('--format', 'graphml', 'stats')
    check('graphml of a method that is not cascade: exit 2', rc == 2 and 'cascade' in err, f'{rc} {err}')


def check_help(cli, rpc):
    err, _ = rpc.call('no_such_method')
    names = re.findall(r'[a-z_]+', (err or {}).get('message', '').split('(', 1)[-1])
    names = [n for n in names if n != 'methods']
    rc, out, e, _ = cli.run('--help', port=False)
    missing = [n for n in names if not re.search(rf'^{n}\b', out, re.M)]
    check('--help lists every method the server knows, with parameters',
          rc == 0 and len(names) >= 5 and not missing and 'post=' in out and '--timeout' in out,
          f'{names} missing={missing} {out[:300]!r}')
    rc1, out1, _, _ = cli.run('help', 'top_cascades', port=False)
    rc2, out2, _, _ = cli.run('top_cascades', '--help', port=False)
    check('help METHOD and METHOD --help show its parameters', rc1 == rc2 == 0 and out1 == out2 and
          'by=' in out1 and 'limit=' in out1 and 'window_ms=' in out1, out1)


def check_exit_codes(cli):
    rc, out, err, _ = cli.run('nosuch')
    check('unknown method: exit 2 with a message', rc == 2 and 'unknown method' in err and 'cascade' in err,
          f'{rc} {err!r}')
    rc, out, err, _ = cli.run('top_cascades', 'limit=abc')
    check('bad parameter: exit 2 naming it', rc == 2 and 'limit' in err and not out, f'{rc} {err!r}')
    rc, out, err, _ = cli.run('cascade', 'post=r1', 'color=red')
    check('unknown parameter: exit 2', rc == 2 and 'color' in err, f'{rc} {err!r}')
    rc, out, err, _ = cli.run('cascade', 'post=no_such_post')
    check('unknown post: exit 1 with error 404', rc == 1 and re.search(r'^error 404: .*no_such_post', err, re.M)
          and not out, f'{rc} {err!r}')
    port = free_port()
    rc, out, err, _ = cli.run('--port', str(port), 'stats', port=False)
    check('no server: exit 3 naming host:port and cascaded', rc == 3 and f'127.0.0.1:{port}' in err and
          'cascaded' in err, f'{rc} {err!r}')
    silent = socket.socket()
    silent.bind(('127.0.0.1', 0))
    silent.listen(4)
    rc, out, err, secs = cli.run('--port', str(silent.getsockname()[1]), '--timeout', '1', 'stats', port=False)
    silent.close()
    check('a server that never answers: exit 3 after --timeout', rc == 3 and 'timed out' in err and secs < 10,
          f'{rc} {err!r} {secs:.1f}s')


def body(run):
    srv, tools_dir = run.srv, run.tools
    load(srv, tools_dir)
    rpc = Rpc(srv.query)
    cli = Cli(tools_dir, srv.query)
    for part in (check_json, check_table, check_csv, check_exports, check_help):
        part(cli, rpc)
    check_exit_codes(cli)
    rpc.close()
    check('server still serving after every query', srv.alive())


def main():
    harness.run_main('cascade-cli-test-', body)


if __name__ == '__main__':
    main()
