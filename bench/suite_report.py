#!/usr/bin/python3
"""Writes the `make bench` report (bench/run-suite.sh): reads the JSON of each cascade-bench run,
the peers' JSON lines and the profile text from DIR, and writes OUT.md and OUT.json.
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


def main():
    src, out, build, settings = sys.argv[1:5]
    ingest, query, mixed = (load(os.path.join(src, f)) for f in ('ingest.json', 'query.json', 'mixed.json'))
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
    for title, doc in (('Point queries, idle (`cascade-bench query`)', query), ('Point queries during full-speed ingest (`cascade-bench mixed`)', mixed)):
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
            targets['query_p99_ms_under_ingest'] = q['latency_ms']['all']['p99']
            mi = doc['results']['ingest']
            md += [f'Ingest meanwhile: {mi["events_per_s"] / 1e6:.2f} M events/s.', '']
    if peers:
        md += ['## Peers on the same dump (same run)', '', '| peer | figures |', '| --- | --- |']
        for p in peers:
            if 'ratios' in p:
                md += ['', f'Ratios (peer time or rate against cascaded): `{json.dumps(p["ratios"])}`']
                continue
            figs = ', '.join(f'{k} {v}' for k, v in p.items() if k != 'peer' and not isinstance(v, (list, dict)))
            md.append(f'| {p.get("peer")} | {figs} |')
        md.append('')
    targets_md = ['## DESIGN §8 targets', '',
                  f'- ingest ≥ 2 M events/s: {targets.get("ingest_events_per_s", 0) / 1e6:.2f} M — {"met" if targets.get("ingest_events_per_s", 0) >= 2e6 else "NOT MET"}',
                  f'- point-query p99 < 1 ms during ingest: {targets.get("query_p99_ms_under_ingest", float("nan")):.2f} ms — {"met" if targets.get("query_p99_ms_under_ingest", 99) < 1 else "NOT MET"}',
                  f'- ≤ 100 B RSS per event at 10 M: {targets.get("rss_bytes_per_event", 0):.1f} — {"met" if targets.get("rss_bytes_per_event", 999) <= 100 else "NOT MET"}', '']
    md += targets_md + ['## Profile of the ingest path (`bench/profile-ingest.sh`)', '', '```', profile.strip(), '```', '']
    with open(out + '.md', 'w') as f:
        f.write('\n'.join(md))
    with open(out + '.json', 'w') as f:
        json.dump({'machine': m, 'settings': settings, 'ingest': ingest, 'query': query, 'mixed': mixed,
                   'peers': peers, 'targets': targets, 'profile': profile}, f, indent=1)
    print('\n'.join(md))


if __name__ == '__main__':
    main()
