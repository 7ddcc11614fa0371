#!/usr/bin/python3
"""Integration test of `labels_matched` (DESIGN §3 "Size-matched comparison", §5; issue 21) and of
`labels`' standard deviations, against references computed here with scipy and numpy from the
cascades the server lists.

usage: /usr/bin/python3 test_labels_matched.py BIN_DIR TOOLS_DIR

Data: the Twitter15 sample in tests/data (real cascades, labels false/true/unverified/non-rumor),
replayed with cascade-replay; then a generated forest (harness.gen_forest: labels on some roots,
heavy ties in the integer metrics). For each pair of labels asked, every cascade of both labels is
listed (top_cascades label=X), and per metric (depth, max_breadth, structural_virality,
unique_actors, duration_ms):
  unmatched  z and p equal scipy.stats.mannwhitneyu(method="asymptotic", use_continuity=False)
             (p to 1e-9 relative; z's sign is that of U1 - n_a n_b / 2, its size from the p);
  matched    van Elteren over the strata floor(log2 size) that hold both labels, written here
             from DESIGN's formula with scipy.stats.rankdata's mid-ranks: z and p to 1e-9;
  strata     per stratum the counts and numpy medians (type 7);
  nil        an unknown label gives 0 cascades and nil z and p; a == b gives nil for matched.
HTTP's JSON equals the RPC answer. Prints one line per check, 'N passed, M failed' at the end.
"""
import json
import math
import os
import random
import subprocess
import sys
import urllib.request

import numpy
import scipy.stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Rpc, check, gen_forest, send_all  # noqa: E402

METRICS = ['depth', 'max_breadth', 'structural_virality', 'unique_actors', 'duration_ms']
HERE = os.path.dirname(os.path.abspath(__file__))


def close(a, b, rel=1e-9):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= rel * max(1.0, abs(b))


def cascades_of(cl, label):
    err, res = cl.call('top_cascades', label=label, limit=1000)
    assert err is None, err
    assert len(res) < 1000, 'the test data must hold fewer than 1000 cascades per label'
    return res


def van_elteren(a, b):
    """DESIGN §3 over the strata holding both: (z, p, strata list) with None where undefined."""
    strata = sorted({s for s, _ in a} & {s for s, _ in b})
    t = e = var = 0.0
    rows = []
    for s in strata:
        xa = [v for k, v in a if k == s]
        xb = [v for k, v in b if k == s]
        ranks = scipy.stats.rankdata(xa + xb)  # mid-ranks
        n = len(xa) + len(xb)
        r = sum(ranks[:len(xa)])
        _, counts = numpy.unique(xa + xb, return_counts=True)
        ties = float(sum(c ** 3 - c for c in counts))
        t += r / (n + 1)
        e += len(xa) / 2
        var += len(xa) * len(xb) / (12 * (n + 1) ** 2) * (n + 1 - ties / (n * (n - 1)))
        rows.append(dict(stratum=s, size_from=2 ** s, size_to=2 ** (s + 1) - 1, a_cascades=len(xa),
                         b_cascades=len(xb), median_a=float(numpy.median(xa)), median_b=float(numpy.median(xb))))
    if not var > 0:
        return None, None, rows
    z = (t - e) / math.sqrt(var)
    return z, math.erfc(abs(z) / math.sqrt(2)), rows


def compare(name, cl, srv, la, lb):
    err, res = cl.call('labels_matched', a=la, b=lb)
    check(f'{name}: labels_matched a={la} b={lb} answers one row per metric', err is None and isinstance(res, list)
          and [r.get('metric') for r in res] == METRICS, f'{err} {res!r:.300}')
    if err is not None:
        return
    ca, cb = cascades_of(cl, la), cascades_of(cl, lb)
    bad = []
    for row, m in zip(res, METRICS):
        xa, xb = [c[m] for c in ca], [c[m] for c in cb]
        if (row['a_cascades'], row['b_cascades']) != (len(xa), len(xb)):
            bad.append(f'{m}: counts {row["a_cascades"]}/{row["b_cascades"]}, listed {len(xa)}/{len(xb)}')
            continue
        if xa and xb:
            u = scipy.stats.mannwhitneyu(xa, xb, alternative='two-sided', method='asymptotic', use_continuity=False)
            side = u.statistic - len(xa) * len(xb) / 2
            want_z = None if math.isnan(u.pvalue) else math.copysign(
                scipy.stats.norm.isf(u.pvalue / 2), side) if side else 0.0
            if not close(row['p_unmatched'], None if math.isnan(u.pvalue) else float(u.pvalue)):
                bad.append(f'{m}: p_unmatched {row["p_unmatched"]} scipy {u.pvalue}')
            if want_z is not None and (row['z_unmatched'] is None or abs(row['z_unmatched'] - want_z) > 1e-6 * max(1, abs(want_z))):
                bad.append(f'{m}: z_unmatched {row["z_unmatched"]} from scipy {want_z}')
            if not (close(row['median_a'], float(numpy.median(xa))) and close(row['median_b'], float(numpy.median(xb)))):
                bad.append(f'{m}: medians {row["median_a"]} {row["median_b"]}')
        elif row['z_unmatched'] is not None or row['p_unmatched'] is not None:
            bad.append(f'{m}: a label without cascades, yet z_unmatched {row["z_unmatched"]}')
        sa = [(int(c['size']).bit_length() - 1, c[m]) for c in ca]
        sb = [(int(c['size']).bit_length() - 1, c[m]) for c in cb]
        z, p, rows = van_elteren(sa, sb)
        if not (close(row['z_matched'], z) and close(row['p_matched'], p)):
            bad.append(f'{m}: matched z {row["z_matched"]} p {row["p_matched"]}, reference {z} {p}')
        if row['strata'] != len(rows) or row['cascades'] != sum(r['a_cascades'] + r['b_cascades'] for r in rows):
            bad.append(f'{m}: strata {row["strata"]} cascades {row["cascades"]}, reference {len(rows)}')
        got = row.get('by_stratum', [])
        if len(got) != len(rows) or any(g.keys() != w.keys() or any(not close(g[k], w[k]) for k in w)
                                        for g, w in zip(got, rows)):
            bad.append(f'{m}: by_stratum {got!r:.200} reference {rows!r:.200}')
    check(f'{name}: labels_matched a={la} b={lb}: counts, unmatched z/p (scipy), matched z/p (van Elteren), '
          f'per-stratum counts and medians ({len(ca)} and {len(cb)} cascades)', not bad, '; '.join(bad[:5]))
    with urllib.request.urlopen(f'http://127.0.0.1:{srv.http}/v1/labels_matched?a={la}&b={lb}', timeout=30) as r:
        body = json.loads(r.read())
    check(f'{name}: HTTP labels_matched a={la} b={lb} equals the RPC answer', body == res, f'{body!r:.200}')
    return res


def labels_sd(name, cl):
    err, res = cl.call('labels')
    bad = [] if err is None else [repr(err)]
    for g in res or []:
        cs = cascades_of(cl, g['label']) if g['label'] is not None else None
        if cs is None:
            continue
        for m in ('size', 'depth', 'max_breadth', 'structural_virality', 'unique_actors'):
            vals = [c[m] for c in cs]
            want = float(numpy.std(vals, ddof=1)) if len(vals) > 1 else None
            if not close(g.get(f'{m}_sd'), want):
                bad.append(f'{g["label"]} {m}_sd {g.get(f"{m}_sd")} numpy {want}')
    check(f'{name}: labels\' <metric>_sd equal numpy.std(ddof=1) over the listed cascades', not bad and res,
          '; '.join(bad[:5]))


def body(run):
    srv, tools = run.srv, run.tools
    sample = os.path.join(HERE, '..', 'data', 'twitter15-sample.ndjson.gz')
    p = subprocess.run([os.path.join(tools, 'cascade-replay'), '--quiet', '--port', str(srv.ingest), sample],
                       capture_output=True, text=True, timeout=120)
    check('Twitter15 sample replayed', p.returncode == 0, p.stdout + p.stderr[-300:])
    cl = Rpc(srv.query)
    res = compare('Twitter15', cl, srv, 'false', 'true')
    err, dflt = cl.call('labels_matched')
    check('labels_matched without parameters: a=false b=true', err is None and dflt == res, f'{err}')
    compare('Twitter15', cl, srv, 'unverified', 'non-rumor')
    labels_sd('Twitter15', cl)
    for row in res or []:
        print(f'# Twitter15 false vs true, {row["metric"]}: matched z {row["z_matched"]:.2f} p {row["p_matched"]:.3g} '
              f'({row["strata"]} strata), unmatched z {row["z_unmatched"]:.2f} p {row["p_unmatched"]:.3g}')
    err, res = cl.call('labels_matched', a='false', b='no-such-label')
    check('a label no cascade has: 0 cascades, z and p nil', err is None and all(
        r['b_cascades'] == 0 and r['strata'] == 0 and r['z_matched'] is None and r['p_unmatched'] is None
        and r['by_stratum'] == [] for r in res), f'{err} {res!r:.300}')
    err, res = cl.call('labels_matched', a='false', b='false')
    check('a == b: every cascade on side a, z and p nil', err is None and all(
        r['b_cascades'] == 0 and r['z_matched'] is None for r in res), f'{err} {res!r:.300}')
    for bad in (dict(a=''), dict(b=5), dict(a='l' * 65), dict(c='x')):
        err, _ = cl.call('labels_matched', **bad)
        check(f'labels_matched {bad!r:.40}: a 400', isinstance(err, dict) and err.get('code') == 400, f'{err}')
    cl.close()

    # generated: many ties in the integer metrics, four labels
    gen = harness.Server(run.bin_dir, os.path.join(run.tmp, 'gen'), '--analytics-interval', '0').start()
    try:
        trees, _ = gen_forest(random.Random(5), 12_000, 'g', max_size=60)
        acks, fatal = send_all(gen.ingest, [[e for tr in trees for e in tr]], timeout=60)
        check('generated forest acked', fatal is None, f'{fatal}')
        cl = Rpc(gen.query)
        for la, lb in (('false', 'true'), ('mixed', 'unverified'), ('true', 'false')):
            compare('generated', cl, gen, la, lb)
        labels_sd('generated', cl)
        cl.close()
    finally:
        check('generated: SIGTERM exits 0', gen.stop() == 0)


def main():
    harness.run_main('cascaded-test-matched-', body, '--analytics-interval', '0')


if __name__ == '__main__':
    main()
