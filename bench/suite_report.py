#!/usr/bin/python3
"""Writes the `make bench` report (bench/run-suite.sh): reads the JSON of each cascade-bench run,
the peers' JSON lines and the profile text from DIR, and writes OUT.md and OUT.json, with the
figures set against DESIGN §8's goals (point-query p99 at 80 % of the flat-out ingest rate and
flat out, the server's longest engine-thread pause, ingest rate, bytes per event, the apply rate,
start-up recovery, and the ratios to Redis and DuckDB).
usage: suite_report.py DIR OUT BUILD_DIR SETTINGS"""
import datetime
import json
import os
import platform
import subprocess
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def machine():
    model = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
    mem = next((int(l.split()[1]) for l in open('/proc/meminfo') if l.startswith('MemTotal')), 0)
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    return {'cores': os.cpu_count(), 'cpu': model, 'memory_gib': round(mem / 2 ** 20, 1),
            'kernel': platform.release(), 'commit': commit, 'load': open('/proc/loadavg').read().split()[:3],
            'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}


def lat_row(name, d):
    if not d:
        return f'| {name} | – | – | – | – |'
    return f'| {name} | {d["p50"]:.2f} | {d["p99"]:.2f} | {d["p999"]:.2f} | {d["max"]:.2f} |'


def fmt(v, spec):
    return '–' if v is None else format(v, spec)


def verdict(v, ok):
    return 'not measured' if v is None else 'met' if ok(v) else 'NOT MET'


def pauses_md(runs):
    """A row per cascade-bench run: the server's own engine-thread pauses (its stats, maxima since
    that server started, so a preload counts; how many over 10 ms fell in the timed phase)."""
    md = ['## Engine-thread pauses (the server\'s own `stats`, per run)', '',
          'Maxima since that run\'s server started (a preload or calibration counts); "in timed" says whether the '
          'longest fell in the timed phase.', '',
          '| run | longest ms | put down to | in timed | over 10 ms (in timed) | longest by job, ms |',
          '| --- | --- | --- | --- | --- | --- |']
    for name, doc in runs:
        p = (doc or {}).get('results', {}).get('pauses')
        if not p:
            md.append(f'| {name} | – | – | – | – | not read |')
            continue
        th = p.get('pause_thread_by_job') or {}
        jobs = ', '.join(f'{k} {v:.2f}' + (f' ({th[k]} thread)' if th.get(k) not in (None, 'engine') else '')
                         for k, v in p['pause_max_ms_by_job'].items())
        md.append(f'| {name} | {p["pause_max_ms"]:.2f} | {p["pause_max_job"]} | {"yes" if p["pause_max_in_timed_phase"] else "no"} | '
                  f'{p["pauses_over_10ms"]} ({p["pauses_over_10ms_in_timed_phase"]}) | {jobs} |')
    return md + ['']


def longest_pause(runs):
    """(ms, job, run) of the longest pause any run's server reported, or None."""
    best = None
    for name, doc in runs:
        p = (doc or {}).get('results', {}).get('pauses')
        if p and (best is None or p['pause_max_ms'] > best[0]):
            best = (p['pause_max_ms'], p['pause_max_job'], name)
    return best


def main():
    src, out, build, settings = sys.argv[1:5]
    ingest, query, mixed, mixed80, pauses, engine, recovery = (
        load(os.path.join(src, f)) for f in ('ingest.json', 'query.json', 'mixed.json', 'mixed80.json',
                                             'pauses.json', 'engine.json', 'recovery.json'))
    peers = []
    for line in open(os.path.join(src, 'peers.jsonl')) if os.path.exists(os.path.join(src, 'peers.jsonl')) else []:
        try:
            peers.append(json.loads(line))
        except ValueError:
            pass
    profile = open(os.path.join(src, 'profile.txt')).read() if os.path.exists(os.path.join(src, 'profile.txt')) else ''
    m = machine()
    md = [f'# make bench, {m["date"]}', '',
          f'- machine: {m["cores"]} cores, {m["cpu"]}, {m["memory_gib"]} GiB, kernel {m["kernel"]}; load before: {" ".join(m["load"])}',
          f'- source: commit {m["commit"]}, build {build} (Release)',
          f'- command: `bench/run-suite.sh` with {settings}', '']
    targets = {}
    if ingest:
        r, s = ingest['results']['ingest'], ingest['results']['server']
        targets['ingest_events_per_s'] = r['events_per_s']
        targets['rss_bytes_per_event'] = s['rss_end_bytes_per_event']
        md += ['## Ingest (`cascade-bench ingest`, 2 connections, fsync everysec)', '',
               f'- {r["events"]:,} events in {r["seconds"]:.2f} s: **{r["events_per_s"] / 1e6:.2f} M events/s**, {r["mb_per_s"]:.1f} MB/s; all acked ok: {r["all_ok"]}',
               f'- ack latency ms: p50 {r["ack_ms"]["p50"]:.0f}, p99 {r["ack_ms"]["p99"]:.0f}, p999 {r["ack_ms"]["p999"]:.0f}',
               f'- server RSS: peak {s["peak_rss_bytes"] / 2 ** 20:.0f} MiB ({s["peak_rss_bytes_per_event"]:.1f} B/event), at the end {s["rss_end_bytes_per_event"]:.1f} B/event; server CPU {s["cpu_seconds"]:.1f} s; client CPU {ingest["results"]["client_cpu_seconds"]:.2f} s', '']
    for title, doc in (('Point queries, idle (`cascade-bench query`)', query),
                       ('Point queries during full-speed ingest (`cascade-bench mixed`)', mixed),
                       ('Point queries while ingest runs at 80 % of its flat-out rate (`cascade-bench mixed --ingest-rate 80%`)', mixed80)):
        if not doc:
            continue
        q = doc['results']['query']
        md += [f'## {title}', '', f'{q["achieved_qps"]:.0f} queries/s achieved of {q["target_qps"]}, {q["errors"]} errors; latency from the scheduled send, ms:', '',
               '| method | p50 | p99 | p999 | max |', '| --- | --- | --- | --- | --- |']
        md += [lat_row(k, v) for k, v in q['latency_ms'].items()]
        sl = q.get('server_latency_ms')
        if sl:
            md += [lat_row('server side (bucket bounds)', sl)]
        md.append('')
        if doc is mixed:
            targets['query_p99_ms_flat_out'] = q['latency_ms']['all']['p99']
            mi = doc['results']['ingest']
            md += [f'Ingest meanwhile: {mi["events_per_s"] / 1e6:.2f} M events/s.', '']
        if doc is mixed80:
            targets['query_p99_ms_at_80pct'] = q['latency_ms']['all']['p99']
            mi, cal = doc['results']['ingest'], doc['results'].get('calibration', {})
            md += [f'Ingest meanwhile: target {fmt(mi.get("target_events_per_s"), ",.0f")} events/s '
                   f'({cal.get("percent", 80):g} % of a {fmt(cal.get("events"), ",")}-event flat-out calibration that ran at '
                   f'{fmt(cal.get("events_per_s"), ",.0f")} events/s, its query p99 {fmt(cal.get("query_p99_ms"), ".2f")} ms), '
                   f'achieved {mi["events_per_s"]:,.0f} events/s; a batch went out at most {fmt(mi.get("max_send_lag_ms"), ".1f")} ms '
                   f'after its due time; ack latency from the due time p50 {mi["ack_ms"]["p50"]:.1f} ms, p99 {mi["ack_ms"]["p99"]:.1f} ms.', '']
    if pauses:
        r, pl = pauses['results']['ingest'], pauses['results'].get('poll', {})
        md += ['## Pauses with analytics every 10 s, `labels` polled each second and 24 h retention (`cascade-bench ingest --poll labels`)', '',
               f'- {r["events"]:,} events at {r["events_per_s"] / 1e6:.2f} M events/s; `labels` called {pl.get("calls")} times, '
               f'latency p50 {fmt(pl.get("p50_ms"), ".1f")} ms, max {fmt(pl.get("max_ms"), ".1f")} ms', '']
    if engine:
        targets['apply_events_per_s'] = engine['events_per_s']
        md += ['## Engine apply (`engine-bench`, in-process, one core, no network or WAL)', '',
               f'- {engine["events"]:,} events: **{engine["events_per_s"] / 1e6:.2f} M events/s**; longest '
               f'{engine["batch"]}-event batch {engine["max_batch_ms"]:.1f} ms; {engine["rss_bytes_per_event"]:.1f} B RSS '
               f'per event ({engine["allocated_bytes_per_event"]:.1f} B allocated); checks: {engine.get("check")}', '']
    if recovery:
        w, sn = recovery.get('wal_replay', {}), recovery.get('snapshot_load', {})
        targets['recovery_snapshot_events_per_s'] = sn.get('events_per_s')
        targets['recovery_wal_events_per_s'] = w.get('events_per_s')
        md += ['## Start-up recovery (`bench/recovery_bench.py`: the server\'s own `wal_replayed` / `snapshot_loaded` ms)', '',
               f'- the whole WAL ({recovery.get("wal_bytes", 0) / 2 ** 20:.0f} MiB, {fmt(w.get("events"), ",")} events): '
               f'{fmt(w.get("ms"), ",")} ms, **{fmt(w.get("events_per_s") and w["events_per_s"] / 1e6, ".2f")} M events/s**',
               f'- a snapshot ({fmt(sn.get("bytes") and sn["bytes"] / 2 ** 20, ".0f")} MiB, {fmt(sn.get("events"), ",")} events): '
               f'{fmt(sn.get("ms"), ",")} ms, **{fmt(sn.get("events_per_s") and sn["events_per_s"] / 1e6, ".2f")} M events/s**', '']
    ratios = next((p['ratios'] for p in peers if 'ratios' in p), {})
    redis = next((p for p in peers if p.get('peer') == 'redis' and 'events_per_s' in p), None)
    if redis and ingest:
        targets['ingest_over_redis'] = round(ingest['results']['ingest']['events_per_s'] / redis['events_per_s'], 2)
    if ratios.get('duckdb_total_over_cascaded'):
        targets['duckdb_total_over_cascaded'] = ratios['duckdb_total_over_cascaded']
    if peers:
        md += ['## Peers on the same dump (same run)', '', '| peer | figures |', '| --- | --- |']
        for p in peers:
            if 'ratios' in p:
                md += ['', f'Ratios (peer time or rate against cascaded): `{json.dumps(p["ratios"])}`']
                continue
            figs = ', '.join(f'{k} {v}' for k, v in p.items() if k != 'peer' and not isinstance(v, (list, dict)))
            md.append(f'| {p.get("peer")} | {figs} |')
        md.append('')
    runs = [('ingest', ingest), ('query', query), ('mixed flat out', mixed), ('mixed 80 %', mixed80),
            ('pauses (analytics, labels, retention)', pauses)]
    lp = longest_pause(runs)
    targets['longest_pause_ms'] = lp[0] if lp else None
    ie, p80, pflat, rss = (targets.get(k) for k in ('ingest_events_per_s', 'query_p99_ms_at_80pct',
                                                    'query_p99_ms_flat_out', 'rss_bytes_per_event'))
    targets_md = ['## DESIGN §8 targets', '',
                  f'- ingest ≥ 3 M events/s: {fmt(ie and ie / 1e6, ".2f")} M — {verdict(ie, lambda v: v >= 3e6)}',
                  f'- point-query p99 ≤ 1 ms while ingest runs at 80 % of its flat-out rate: {fmt(p80, ".2f")} ms — {verdict(p80, lambda v: v <= 1)}',
                  f'- point-query p99 ≤ 5 ms while ingest runs flat out: {fmt(pflat, ".2f")} ms — {verdict(pflat, lambda v: v <= 5)}',
                  f'- no engine-thread pause over 10 ms: longest {fmt(lp and lp[0], ".2f")} ms'
                  + (f' ({lp[1]}, in the {lp[2]} run)' if lp else '') + f' — {verdict(lp and lp[0], lambda v: v <= 10)}'
                  ' (the servers\' own figure over these runs, the pause run with analytics every 10 s, `labels` polled and 24 h retention among them)',
                  f'- ≤ 64 B RSS per event at 10 M: {fmt(rss, ".1f")} — {verdict(rss, lambda v: v <= 64)}',
                  f'- ingest ≥ 8× Redis XADD -P64 with AOF everysec (cascade-bench ingest over the Redis peer\'s rate): '
                  f'{fmt(targets.get("ingest_over_redis"), ".2f")}× — {verdict(targets.get("ingest_over_redis"), lambda v: v >= 8)}',
                  f'- engine apply ≥ 5 M events/s (engine-bench): {fmt(targets.get("apply_events_per_s") and targets["apply_events_per_s"] / 1e6, ".2f")} M — '
                  f'{verdict(targets.get("apply_events_per_s"), lambda v: v >= 5e6)}',
                  f'- start-up recovery ≥ 5 M events/s: snapshot {fmt(targets.get("recovery_snapshot_events_per_s") and targets["recovery_snapshot_events_per_s"] / 1e6, ".2f")} M — '
                  f'{verdict(targets.get("recovery_snapshot_events_per_s"), lambda v: v >= 5e6)}; whole WAL '
                  f'{fmt(targets.get("recovery_wal_events_per_s") and targets["recovery_wal_events_per_s"] / 1e6, ".2f")} M — '
                  f'{verdict(targets.get("recovery_wal_events_per_s"), lambda v: v >= 5e6)}',
                  f'- the 1 M-event dump replayed and answered ≥ 10× faster than DuckDB: {fmt(targets.get("duckdb_total_over_cascaded"), ".2f")}× — '
                  f'{verdict(targets.get("duckdb_total_over_cascaded"), lambda v: v >= 10)}', '']
    targets_md += pauses_md(runs)
    md += targets_md + ['## Profile of the ingest path (`bench/profile-ingest.sh`)', '', '```', profile.strip(), '```', '']
    with open(out + '.md', 'w') as f:
        f.write('\n'.join(md))
    with open(out + '.json', 'w') as f:
        json.dump({'machine': m, 'settings': settings, 'ingest': ingest, 'query': query, 'mixed': mixed, 'mixed80': mixed80,
                   'pauses': pauses, 'engine': engine, 'recovery': recovery, 'peers': peers, 'targets': targets, 'profile': profile}, f, indent=1)
    print('\n'.join(md))


if __name__ == '__main__':
    main()
