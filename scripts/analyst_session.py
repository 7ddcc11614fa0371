#!/usr/bin/python3
"""An analyst's session on real rumour cascades, through the HTTP port and pandas: how false, true,
unverified and non-rumour cascades differ (and whether false and true still differ once cascades
of equal size are compared), and which accounts amplify false rumours most.

usage: /usr/bin/python3 scripts/analyst_session.py [--http PORT]

Expects a running cascaded with a Twitter15/16 dump loaded (scripts/analyst-session.sh does both).
"""
import collections
import sys
import urllib.parse

import pandas as pd

pd.set_option('display.width', 160)
pd.set_option('display.max_columns', 20)


def main():
    port = sys.argv[sys.argv.index('--http') + 1] if '--http' in sys.argv else '7402'
    api = f'http://127.0.0.1:{port}/v1'

    print('== How do false, true, unverified and non-rumour cascades differ? (method: labels)')
    labels = pd.read_json(f'{api}/labels').set_index('label')
    cols = ['cascades', 'size_mean', 'size_median', 'size_p90', 'depth_mean', 'depth_sd', 'depth_max',
            'max_breadth_mean', 'structural_virality_mean', 'structural_virality_p90',
            'unique_actors_mean', 'duration_ms_median']
    table = labels[cols].copy()
    table['duration_h_median'] = table.pop('duration_ms_median') / 3.6e6
    print(table.round(2).to_string())

    # Larger cascades run deeper and broader whatever their label, and the labels' sizes differ:
    # compare cascades of equal size (Juul & Ugander, PNAS 2021) before reading the means.
    print('\n== False against true, cascades of equal size compared (method: labels_matched)')
    m = pd.read_json(f'{api}/labels_matched?a=false&b=true')
    m['significant (matched)'] = m['p_matched'] < 0.05
    hours = m['metric'] == 'duration_ms'
    m.loc[hours, ['median_a', 'median_b']] = m.loc[hours, ['median_a', 'median_b']] / 3.6e6
    m.loc[hours, 'metric'] = 'duration_h'
    print(m[['metric', 'median_a', 'median_b', 'strata', 'z_matched', 'p_matched', 'z_unmatched', 'p_unmatched',
             'significant (matched)']].round(3).to_string(index=False))

    print('\n== The most viral false rumours (top_cascades by=structural_virality label=false)')
    top = pd.read_json(f'{api}/top_cascades?by=structural_virality&label=false&limit=5')
    print(top[['root', 'size', 'depth', 'max_breadth', 'structural_virality', 'unique_actors']]
          .to_string(index=False))

    print('\n== Which accounts amplify false rumours most? (reshares inside false cascades)')
    false = pd.read_json(f'{api}/top_cascades?by=size&label=false&limit=1000')
    reshares, cascades = collections.Counter(), collections.defaultdict(set)
    for root in false['root']:
        tree = pd.read_json(f'{api}/cascade?post={urllib.parse.quote(root)}&tree=true',
                            typ='series')
        for node in tree['nodes']:
            if node['parent'] is not None and node['actor'] is not None:
                reshares[node['actor']] += 1
                cascades[node['actor']].add(root)
    rows = []
    for actor, n in reshares.most_common(10):
        a = pd.read_json(f'{api}/actor?id={urllib.parse.quote(actor)}', typ='series')
        rows.append({'actor': actor, 'false_reshares': n, 'false_cascades': len(cascades[actor]),
                     'posts': a['posts'], 'reach': a['reach'], 'pagerank': a['pagerank']})
    print(pd.DataFrame(rows).to_string(index=False))
    print(f'({len(false)} false cascades, {sum(reshares.values())} reshares by '
          f'{len(reshares)} accounts)')

    print('\n== Who is amplified most across all cascades? (top_actors by=pagerank)')
    pr = pd.read_json(f'{api}/top_actors?by=pagerank&limit=5')
    print(pr[['id', 'pagerank', 'reshares_received', 'amplifiers', 'reach']].to_string(index=False))


if __name__ == '__main__':
    main()
