"""cascade-bench end to end: each subcommand run briefly against a cascaded it starts itself, its
JSON checked for the figures' consistency (every event acked, percentiles ordered, the query rate
near its target, an open-loop ingest near its --ingest-rate, no errors, the server's clean exit,
its engine-thread pauses read from `stats`), and its command line's exit statuses. The figures'
sizes are never asserted (a rate the schedule sets is, within a generous bound): this machine's
speed is not the test's business."""
import json
import os
import subprocess

import harness
from harness import check

server = bench = tmp = None

def run(*args, timeout=120):
    out = os.path.join(tmp, f'{args[0]}.json')
    p = subprocess.run([bench, *args, '--server', server, '--json', out], capture_output=True,
                       text=True, timeout=timeout)
    try:
        with open(out) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        doc = {'error': str(e)}
    return p, doc


def ordered(lat):
    return lat['p50'] <= lat['p99'] <= lat['p999'] <= lat['max']


def check_ingest(name, ing, events):
    check(f'{name}: every event acked ok', ing.get('ok') == events and ing.get('dup') == 0 and
          ing.get('rej') == 0 and ing.get('all_ok') is True, ing)
    check(f'{name}: events/s and MB/s reported', ing['events_per_s'] > 0 and ing['mb_per_s'] > 0, ing)
    check(f'{name}: ack percentiles ordered', ordered(ing['ack_ms']), ing['ack_ms'])
    check(f'{name}: no errors', ing['errors'] == [], ing['errors'])


def check_pauses(name, doc):
    """The server's engine-thread pauses, read from its stats at the end of every mode."""
    p = doc['results'].get('pauses') or {}
    jobs = p.get('pause_max_ms_by_job', {})
    check(f'{name}: pause figures in the JSON', p.get('pause_max_ms', -1) > 0 and
          isinstance(p.get('pauses_over_10ms'), int) and
          0 <= p.get('pauses_over_10ms_in_timed_phase', -1) <= p['pauses_over_10ms'] and
          isinstance(p.get('pause_max_in_timed_phase'), bool), p)
    check(f'{name}: the longest pause is put down to a job that has a duration',
          p.get('pause_max_job') in jobs and {'apply', 'wal_append', 'query'} <= set(jobs) and
          all(v >= 0 for v in jobs.values()), p)


def check_server(name, doc, events):
    sv = doc['results'].get('server', {})
    check(f'{name}: server exited 0', sv.get('exit_status') == 0, sv)
    check(f'{name}: server RSS read', sv.get('peak_rss_bytes', 0) > 0 and
          sv.get('rss_end_bytes', 0) > 0 and sv['peak_rss_bytes_per_event'] > 0, sv)
    check(f'{name}: client CPU reported', doc['results'].get('client_cpu_seconds', -1) >= 0, doc['results'])
    check(f'{name}: result ok', doc['results'].get('result') == 'ok', doc['results'].get('result'))


def check_query(name, q, rate, mix):
    check(f'{name}: no errors, none lost', q['errors'] == 0 and q['lost'] == 0 and
          q['answered'] == q['sent'] > 0, q)
    # open-loop: the schedule alone sets the rate, so only a server that stalls for seconds
    # could pull it far off
    check(f'{name}: achieved QPS near the target', abs(q['achieved_qps'] - rate) <= 0.2 * rate,
          (q['achieved_qps'], rate))
    lat = q['latency_ms']
    check(f'{name}: a row per method and overall', set(lat) == set(mix) | {'all'}, sorted(lat))
    check(f'{name}: percentiles ordered', all(
        l['p50'] <= l['p90'] <= l['p99'] <= l['p999'] <= l['max'] for l in lat.values() if l['count']), lat)
    check(f'{name}: counts add up', sum(lat[m]['count'] for m in mix) == lat['all']['count'] == q['answered'], lat)
    sl = q.get('server_latency_ms', {})
    check(f'{name}: server histogram delta read', sl.get('count', 0) >= q['answered'] and
          sl['p50'] <= sl['p99'] <= sl['max'], sl)


def body(t):
    global server, bench, tmp
    server, tmp = os.path.join(t.bin_dir, 'cascaded'), t.tmp
    # cascade-bench is built in the bench dir of the build root that holds cascaded (argv[1]; a
    # trailing slash would make that root's dirname the root itself)
    candidates = [os.path.join(d, 'bench', 'cascade-bench')
                  for d in (t.bin_dir, os.path.dirname(t.bin_dir))]
    bench = next((c for c in candidates if os.path.exists(c)), candidates[0])
    check('cascade-bench exists', os.path.exists(bench), bench)

    # ingest
    p, doc = run('ingest', '--events', '20000', '--batch', '500')
    check('ingest: exit 0', p.returncode == 0, p.stdout + p.stderr)
    check('ingest: table on stdout', 'events/s' in p.stdout and 'result     ok' in p.stdout, p.stdout)
    if check('ingest: JSON', doc.get('command') == 'ingest', doc):
        check('ingest: params', doc['params']['events'] == 20000 and doc['params']['batch'] == 500, doc['params'])
        check_ingest('ingest', doc['results']['ingest'], 20000)
        check_server('ingest', doc, 20000)
        check_pauses('ingest', doc)
    check('ingest: pauses on stdout', 'pauses     ' in p.stdout and 'longest job by kind' in p.stdout, p.stdout)

    # ingest with --server-arg and --poll: the options reach the server; the polled method is called
    p, doc = run('ingest', '--events', '60000', '--batch', '500', '--server-arg', '--retention',
                 '--server-arg', '24h', '--poll', 'stats', '--poll-every', '0.05')
    check('ingest --poll: exit 0', p.returncode == 0, p.stdout + p.stderr)
    if check('ingest --poll: JSON', doc.get('command') == 'ingest', doc):
        check('ingest --poll: server args in params', doc['params'].get('server_args') == ['--retention', '24h'],
              doc['params'])
        pl = doc['results'].get('poll', {})
        check('ingest --poll: calls answered without error', pl.get('method') == 'stats' and
              pl.get('calls', 0) >= 1 and pl.get('errors') == 0 and 0 < pl['p50_ms'] <= pl['max_ms'], pl)
    check('ingest --poll: a poll line on stdout', 'poll       stats every 0.05 s' in p.stdout, p.stdout)
    p = subprocess.run([bench, 'ingest', '--events', '1000', '--server', server, '--server-arg', '--retention',
                        '--server-arg', 'forever'], capture_output=True, text=True, timeout=60)
    check('--server-arg with a bad value: the server refuses, cascade-bench says so (exit 2)',
          p.returncode == 2 and 'retention' in p.stderr, (p.returncode, p.stderr[-500:]))

    # query
    mix = ['cascade', 'actor', 'path', 'top_cascades']
    p, doc = run('query', '--events', '20000', '--rate', '200', '--seconds', '2')
    check('query: exit 0', p.returncode == 0, p.stdout + p.stderr)
    if check('query: JSON', doc.get('command') == 'query', doc):
        check_ingest('query preload', doc['results']['preload'], 20000)
        check_query('query', doc['results']['query'], 200, mix)
        check_server('query', doc, 20000)
        check_pauses('query', doc)

    p, doc = run('query', '--events', '5000', '--rate', '100', '--seconds', '1', '--mix', 'actor=1,path=1',
                 '--connections', '1')
    check('query --mix: exit 0', p.returncode == 0, p.stdout + p.stderr)
    if check('query --mix: JSON', doc.get('command') == 'query', doc):
        check_query('query --mix', doc['results']['query'], 100, ['actor', 'path'])

    # mixed: the queries last as long as the ingest, so the rate is checked only when it ran long
    p, doc = run('mixed', '--events', '100000', '--preload', '10000', '--rate', '200')
    check('mixed: exit 0', p.returncode == 0, p.stdout + p.stderr)
    if check('mixed: JSON', doc.get('command') == 'mixed', doc):
        res = doc['results']
        check_ingest('mixed ingest', res['ingest'], 100000)
        check_ingest('mixed preload', res['preload'], 10000)
        q = res['query']
        check('mixed: queries answered without error', q['errors'] == 0 and q['lost'] == 0 and
              q['answered'] == q['sent'], q)
        check('mixed: percentiles ordered', ordered(q['latency_ms']['all']) if q['answered'] else True, q)
        check_server('mixed', doc, 110000)
        check_pauses('mixed', doc)
        check('mixed flat out: no target rate', doc['params'].get('ingest_rate') == 0 and
              res['ingest'].get('target_events_per_s') is None and 'calibration' not in res, doc['params'])

    # mixed --ingest-rate N: open loop, so the schedule sets the rate; the bound is generous because
    # the 2-core machine is shared (a late batch is sent late, it is not dropped, and the run's
    # clock ends at the last ack)
    p, doc = run('mixed', '--events', '60000', '--preload', '5000', '--rate', '100', '--ingest-rate', '20000')
    check('mixed --ingest-rate 20000: exit 0', p.returncode == 0, p.stdout + p.stderr)
    if check('mixed --ingest-rate: JSON', doc.get('command') == 'mixed', doc):
        res = doc['results']
        ing = res['ingest']
        check_ingest('mixed --ingest-rate', ing, 60000)
        check('mixed --ingest-rate: target reported', doc['params'].get('ingest_rate') == 20000 and
              ing.get('target_events_per_s') == 20000 and ing.get('max_send_lag_ms', -1) >= 0, ing)
        check('mixed --ingest-rate: achieved near the target', 0.6 * 20000 <= ing['events_per_s'] <= 1.1 * 20000,
              ing['events_per_s'])
        # 60000 events at 20000/s take 3 s whatever the server's speed: not sent early
        check('mixed --ingest-rate: the schedule is kept (not sent early)', ing['seconds'] >= 2.9, ing['seconds'])
        q = res['query']
        check('mixed --ingest-rate: queries answered without error', q['errors'] == 0 and q['lost'] == 0 and
              q['answered'] == q['sent'] > 0, q)
        check('mixed --ingest-rate: query latency per method', {'cascade', 'actor', 'path', 'top_cascades', 'all'} <=
              set(q['latency_ms']) and ordered(q['latency_ms']['all']), q['latency_ms'])
        check_pauses('mixed --ingest-rate', doc)
    check('mixed --ingest-rate: target and achieved on stdout', 'open loop: target 20000 events/s' in p.stdout,
          p.stdout)

    # mixed --ingest-rate 50%: a flat-out calibration first, then half its rate
    p, doc = run('mixed', '--events', '40000', '--preload', '5000', '--rate', '100', '--ingest-rate', '50%',
                 '--calibration-events', '20000')
    check('mixed --ingest-rate 50%: exit 0', p.returncode == 0, p.stdout + p.stderr)
    if check('mixed --ingest-rate 50%: JSON', doc.get('command') == 'mixed', doc):
        res, prm = doc['results'], doc['params']
        cal, ing = res.get('calibration', {}), res['ingest']
        check('mixed 50%: params', prm.get('ingest_rate_percent') == 50 and prm.get('ingest_rate') is None and
              prm.get('calibration_events') == 20000, prm)
        check('mixed 50%: calibration measured', cal.get('events') == 20000 and cal.get('all_ok') is True and
              cal.get('events_per_s', 0) > 0 and cal.get('percent') == 50, cal)
        check('mixed 50%: the target is half the calibration rate',
              abs(ing.get('target_events_per_s', 0) - cal.get('events_per_s', 0) / 2) <= 1e-3 * cal.get('events_per_s', 1),
              (ing.get('target_events_per_s'), cal))
        check_ingest('mixed 50%', ing, 40000)
        check('mixed 50%: achieved no faster than the target allows',
              ing['events_per_s'] <= 1.1 * ing['target_events_per_s'], (ing['events_per_s'], ing['target_events_per_s']))
        check_server('mixed 50%', doc, 65000)

    # a server with --auth-token-file: every connection (ingest, RPC, /metrics) presents the token
    token = os.path.join(tmp, 'token')
    with open(token, 'w') as f:
        f.write('bench-test-token-0123456789\n')
    os.chmod(token, 0o600)
    p, doc = run('mixed', '--events', '20000', '--preload', '2000', '--rate', '100', '--auth-token-file', token)
    check('mixed with --auth-token-file: exit 0', p.returncode == 0, p.stdout + p.stderr)
    if check('mixed with --auth-token-file: JSON', doc.get('command') == 'mixed', doc):
        check_ingest('mixed with a token', doc['results']['ingest'], 20000)
        q = doc['results']['query']
        check('mixed with a token: queries and the server histogram answered', q['errors'] == 0 and
              q['answered'] == q['sent'] and q.get('server_latency_ms', {}).get('count', 0) >= q['answered'], q)

    # the command line
    p = subprocess.run([bench, '--help'], capture_output=True, text=True, timeout=10)
    check('--help: exit 0', p.returncode == 0 and 'ingest' in p.stdout and '--rate' in p.stdout, p.stdout)
    check('--help: --ingest-rate N and P% explained', '--ingest-rate N' in p.stdout and '--ingest-rate P%' in p.stdout and
          'calibration' in p.stdout and 'pause_max_ms' in p.stdout, p.stdout)
    for bad in (['ingest', '--events', '0'], ['frobnicate'], [], ['query', '--rate', 'fast'],
                ['ingest', '--rate', '10'], ['query', '--mix', 'cascade=1,nosuch=2'],
                ['ingest', '--server', server, '--port', '7400'], ['mixed', '--seconds', '3'],
                ['mixed', '--ingest-rate', '0%'], ['mixed', '--ingest-rate', '101%'], ['mixed', '--ingest-rate', 'x'],
                ['ingest', '--ingest-rate', '1000'], ['query', '--ingest-rate', '80%'],
                ['mixed', '--calibration-events', '10'], ['ingest', '--server-arg', '--retention'],
                ['query', '--poll', 'stats', '--server', server]):
        p = subprocess.run([bench, *bad], capture_output=True, text=True, timeout=10)
        check(f'bad args {bad[:3]}: exit 2', p.returncode == 2 and p.stderr, (p.returncode, p.stderr))


def main():
    harness.run_main('test-cascade-bench.', body, server=False, sanitizers=False)


if __name__ == '__main__':
    main()
