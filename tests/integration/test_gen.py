#!/usr/bin/python3
"""Integration test of cascade-gen, the synthetic workload generator (DESIGN §7, issue 5).

usage: /usr/bin/python3 test_gen.py SERVER_DIR TOOLS_DIR   (TOOLS_DIR holds the built `cascade-gen`)

Checks the command line (--help lists every flag, bad flags exit 2), determinism (same arguments,
same bytes; another seed, other bytes; .gz and plain agree), that NDJSON, msgpack and CSV carry
the same events, that a clean stream is well-formed (time order, parents first, p1..pN, actor_type
on each page's first event), the statistical shape of 200k events (heavy-tailed cascade sizes with
a roughly power-law tail, false cascades larger by about --false-boost, short reshare delays,
heavy-tailed activity, URLs reused across cascades), that DESIGN §3 coordination computed here in
plain Python recovers exactly the planted groups, the fault fractions (late parents, duplicates,
bad events) and that faults leave the valid events unchanged, and that tests/data/sample.ndjson.gz
and sample-groups.json are what the command in tests/data/README.md makes.
Prints one line per check and ends with 'N passed, M failed'; exit status 1 if any failed.
Needs Debian's python3-msgpack.
"""
import collections
import csv
import gzip
import io
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile

import msgpack

import harness
from harness import check

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, '..', 'data')
WINDOW_MS, MIN_REPEATS, MIN_RATIO = 10000, 3, 0.3  # DESIGN §3 defaults
KEYS = ['post', 'actor', 'ts', 'parent', 'kind', 'actor_type', 'content', 'label']
FLAGS = ['--events', '--seed', '--format', '--out', '--groups-out', '--start-ts', '--rate', '--actors',
         '--actor-zipf', '--pages', '--urls', '--url-zipf', '--branching', '--tail', '--max-reshares',
         '--delay-median', '--delay-sigma', '--label-rate', '--false-boost', '--groups', '--group-size',
         '--group-keys', '--group-spread', '--late-parents', '--duplicates', '--bad-events', '--help',
         '--version']


def gen(args, timeout=120):
    """Runs cascade-gen to completion: (status, stdout bytes, stderr text)."""
    p = subprocess.run([GEN] + [str(a) for a in args], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode(errors='replace')


def gen_ok(args, name):
    rc, out, err = gen(args)
    if rc != 0:
        check(name, False, f'cascade-gen {" ".join(map(str, args))}: exit {rc}: {err}')
        raise RuntimeError(f'cascade-gen exited {rc}: the checks after it need its output')
    return out


# ---- parsing the three formats into lists of dicts ----

def parse_ndjson(data):
    return [json.loads(line) for line in data.decode().splitlines()]


def parse_msgpack(data):
    return list(msgpack.Unpacker(io.BytesIO(data), raw=False, strict_map_key=False))


def parse_csv(data):
    """Empty cells are absent keys; ts is an integer when it is one (else the string as sent)."""
    rows = csv.DictReader(io.StringIO(data.decode()))
    out = []
    for row in rows:
        ev = {k: v for k, v in row.items() if v != ''}
        if 'ts' in ev and re.fullmatch(r'-?\d+', ev['ts']):
            ev['ts'] = int(ev['ts'])
        out.append(ev)
    return out, rows.fieldnames


def is_valid(ev):
    """DESIGN §2 validation, as far as cascade-gen's faults go."""
    def is_id(v):
        return (isinstance(v, str) and 0 < len(v.encode()) <= 256) or (isinstance(v, int) and v >= 0)
    if not is_id(ev.get('post')) or not is_id(ev.get('actor')):
        return False
    if not isinstance(ev.get('ts'), int) or isinstance(ev.get('ts'), bool):
        return False
    if 'parent' in ev and (not is_id(ev['parent']) or ev['parent'] == ev['post']):
        return False
    return True


# ---- what the stream means (DESIGN §2, §3) ----

class Stream:
    """The valid, first-seen events of a stream, their cascades and content keys."""

    def __init__(self, events):
        self.lines = events
        self.posts = {}
        self.bad = self.dups = 0
        for ev in events:
            if not is_valid(ev):
                self.bad += 1
            elif ev['post'] in self.posts:
                self.dups += 1
            else:
                self.posts[ev['post']] = ev
        self.root = {}
        for p in self.posts:
            self.find_root(p)
        self.cascades = collections.defaultdict(list)
        for p, r in self.root.items():
            self.cascades[r].append(p)

    def find_root(self, p):
        path = []
        while p not in self.root and p in self.posts and 'parent' in self.posts[p]:
            path.append(p)
            p = self.posts[p]['parent']
        r = self.root.get(p, p)
        for q in path + [p]:
            if q in self.posts:
                self.root[q] = r
        return r

    def depth(self, p):
        d = 0
        while p in self.posts and 'parent' in self.posts[p]:
            p = self.posts[p]['parent']
            d += 1
        return d

    def content(self, p):
        """A post's own content, else its cascade root's (DESIGN §3)."""
        ev = self.posts[p]
        if 'content' in ev:
            return ev['content']
        root = self.posts.get(self.root[p])
        return root.get('content') if root else None


def coordination(stream, window=WINDOW_MS, min_repeats=MIN_REPEATS, min_ratio=MIN_RATIO, ratio_of=min):
    """DESIGN §3 coordinated groups, the obvious way: sorted components of member lists."""
    by_key = collections.defaultdict(list)
    keys_of = collections.defaultdict(set)
    for p, ev in stream.posts.items():
        key = stream.content(p)
        if key is not None:
            by_key[key].append((ev['ts'], ev['actor']))
            keys_of[ev['actor']].add(key)
    weight = collections.Counter()
    for key, posts in by_key.items():
        posts.sort()
        pairs = set()
        for i, (t, a) in enumerate(posts):
            for t2, b in posts[i + 1:]:
                if t2 - t > window:
                    break
                if a != b:
                    pairs.add((a, b) if a < b else (b, a))
        weight.update(pairs)
    adj = collections.defaultdict(set)
    for (a, b), w in weight.items():
        if w >= min_repeats and w / ratio_of(len(keys_of[a]), len(keys_of[b])) >= min_ratio:
            adj[a].add(b)
            adj[b].add(a)
    seen, comps = set(), []
    for v in sorted(adj):
        if v in seen:
            continue
        comp, todo = set(), [v]
        while todo:
            x = todo.pop()
            if x not in comp:
                comp.add(x)
                todo.extend(adj[x] - comp)
        seen |= comp
        comps.append(sorted(comp))
    return comps, keys_of, by_key


# ---- checks ----

def check_cli():
    rc, out, err = gen(['--help'])
    text = out.decode()
    check('--help exits 0 and names every flag', rc == 0 and all(f in text for f in FLAGS),
          [f for f in FLAGS if f not in text])
    check('--help fits in 100 columns', max(len(line) for line in text.splitlines()) <= 100)
    rc, out, err = gen(['--version'])
    check('--version prints cascade-gen VERSION', rc == 0 and re.match(rb'cascade-gen \S+\n$', out), out)
    for bad in (['--nope'], ['--events'], ['--events', 'x'], ['--events', '0'], ['--format', 'xml'],
                ['--branching', '1.5'], ['positional'], ['--groups', '1', '--group-size', '1']):
        rc, out, err = gen(bad)
        check(f'{" ".join(bad)} exits 2 with a message', rc == 2 and 'cascade-gen:' in err and not out,
              f'exit {rc}, stderr {err!r}')
    with tempfile.TemporaryDirectory() as tmp:
        rc, out, err = gen(['--events', '10', '--out', os.path.join(tmp, 'no', 'such', 'dir.ndjson')])
        check('an unwritable --out exits 1 with a message', rc == 1 and 'cannot create' in err, err)


def check_determinism(tmp):
    args = ['--events', 20000, '--groups', 2, '--late-parents', 0.05, '--duplicates', 0.02, '--bad-events', 0.01]
    a = gen_ok(args, 'determinism')
    b = gen_ok(args, 'determinism')
    c = gen_ok(args + ['--seed', 2], 'determinism')
    check('same seed, same bytes (20k events, groups and faults)', a == b and len(a) > 1000000)
    check('another seed, other bytes', a != c)
    gz = os.path.join(tmp, 'd.ndjson.gz')
    gen_ok(args + ['--out', gz], 'determinism')
    with open(gz, 'rb') as f:
        head = f.read(2)
    check('--out x.gz is gzip and holds the same bytes', head == b'\x1f\x8b' and gzip.open(gz).read() == a)
    g1, g2 = os.path.join(tmp, 'g1.json'), os.path.join(tmp, 'g2.json')
    gen_ok(args + ['--out', os.path.join(tmp, 'x'), '--groups-out', g1], 'determinism')
    gen_ok(args + ['--out', os.path.join(tmp, 'y'), '--groups-out', g2], 'determinism')
    check('same seed, same ground truth', open(g1).read() == open(g2).read())


def check_formats(tmp):
    args = ['--events', 20000, '--groups', 2, '--late-parents', 0.05, '--duplicates', 0.02, '--bad-events', 0.02]
    nd = parse_ndjson(gen_ok(args, 'formats'))
    mp = parse_msgpack(gen_ok(args + ['--format', 'msgpack'], 'formats'))
    cv, header = parse_csv(gen_ok(args + ['--format', 'csv'], 'formats'))
    check('ndjson: 20k events plus faults, one JSON object a line', len(nd) > 20000)
    check('msgpack: the same events, in the same order', mp == nd,
          next((f'line {i}: {x} != {y}' for i, (x, y) in enumerate(zip(mp, nd)) if x != y), len(mp)))
    check('csv: header names the DESIGN keys', header == KEYS, header)
    check('csv: the same events, in the same order', cv == nd,
          next((f'line {i}: {x} != {y}' for i, (x, y) in enumerate(zip(cv, nd)) if x != y), len(cv)))
    check('only DESIGN §2 keys, with their types',
          all(set(e) <= set(KEYS) and all(isinstance(v, (str, int)) for v in e.values()) for e in nd))
    for name, fmt in (('x.csv', 'csv'), ('x.msgpack.gz', 'msgpack'), ('x.ndjson', 'ndjson')):
        path = os.path.join(tmp, name)
        gen_ok(['--events', 50, '--out', path], 'formats')
        data = gzip.open(path).read() if name.endswith('.gz') else open(path, 'rb').read()
        want = gen_ok(['--events', 50, '--format', fmt], 'formats')
        check(f'--out {name} picks {fmt} from the name', data == want)


def check_clean_stream(out, n):
    events = parse_ndjson(out)
    s = Stream(events)
    check('clean stream: every line is a valid, new post', len(events) == n and s.bad == 0 and s.dups == 0)
    check('clean stream: posts are p1..pN in order', [e['post'] for e in events] == [f'p{i}' for i in range(1, n + 1)])
    ts = [e['ts'] for e in events]
    check('clean stream: ts never goes back, starts at --start-ts',
          ts[0] == 1700000000000 and all(a <= b for a, b in zip(ts, ts[1:])))
    index = {e['post']: i for i, e in enumerate(events)}
    check('clean stream: every parent came before its reshare',
          all(index[e['parent']] < i for i, e in enumerate(events) if 'parent' in e))
    seen, ok = set(), True
    for e in events:
        page = e['actor'].startswith('page')
        ok &= re.fullmatch(r'(u|page)\d+', e['actor']) is not None
        ok &= (e.get('actor_type') == 'page') == (page and e['actor'] not in seen)
        seen.add(e['actor'])
    check('actors are u<n> / page<n>; actor_type "page" on each page\'s first event only', ok)
    roots = [e for e in events if 'parent' not in e]
    check('roots carry https://news.example/<n> content, reshares none',
          all(re.fullmatch(r'https://news\.example/\d+', e.get('content', '')) for e in roots)
          and not any('content' in e for e in events if 'parent' in e))
    kinds = collections.Counter(e.get('kind', 'share') for e in events if 'parent' in e)
    check('reshares are mostly shares, some quotes and replies',
          kinds['share'] > 0.7 * sum(kinds.values()) and kinds['quote'] and kinds['reply'], kinds)
    return s


def loglog_fit(sizes):
    """Least squares of log CCDF on log size at s = 2, 4, 8, ... while at least 10 cascades remain."""
    xs, ys, s = [], [], 2
    while True:
        c = sum(1 for z in sizes if z >= s)
        if c < 10:
            break
        xs.append(math.log(s))
        ys.append(math.log(c / len(sizes)))
        s *= 2
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    resid = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys))
    r2 = 1 - resid / sum((y - my) ** 2 for y in ys)
    return slope, r2, len(xs)


def check_shape(s, boost, branching, tail, max_reshares):
    sizes = sorted(len(v) for v in s.cascades.values())
    median, biggest = statistics.median(sizes), sizes[-1]
    small = sum(1 for z in sizes if z <= 2) / len(sizes)
    check(f'cascades: most are size 1-2 ({small:.0%})', small >= 0.8)
    check(f'cascades: the largest ({biggest}) is over 100x the median ({median})', biggest > 100 * median)
    slope, r2, points = loglog_fit(sizes)
    check(f'cascade sizes: log-log CCDF is a line (slope {slope:.2f}, r2 {r2:.3f}, {points} points)',
          -2.5 < slope < -0.8 and r2 > 0.95 and points >= 7)

    def label_of(root):
        return s.posts[root].get('label')
    by_label = collections.defaultdict(list)
    for root, posts in s.cascades.items():
        by_label[label_of(root)].append(root)
    mean = {lab: statistics.fmean(len(s.cascades[r]) for r in roots) for lab, roots in by_label.items()}
    labelled = 1 - len(by_label[None]) / len(s.cascades)
    check(f'labels: most roots unlabelled ({labelled:.1%} labelled), all four verdicts present',
          0.02 < labelled < 0.3 and {'false', 'true', 'mixed', 'unverified'} <= set(by_label))
    ratio = mean['false'] / mean['true']
    check(f'false cascades {ratio:.2f}x the size of true ones on average (--false-boost {boost}; '
          f'loose: a mean of heavy-tailed sizes is noisy)', boost / 2 <= ratio <= boost * 2.5, mean)
    # The robust form of the same claim. A cascade's expected size is 1/(1-b), b the branching
    # factor (mean reshares per post) = P(a post is reshared) x E[reshares | any], and E[...] is the
    # same law in every class: sum of k^-tail up to --max-reshares. P(reshared) is a plain
    # proportion, far steadier than a mean of heavy-tailed counts; it is taken on posts at least
    # 12 h before the end, so that their first reshare had time to come.
    end = max(e['ts'] for e in s.posts.values())
    has_child = {e['parent'] for e in s.posts.values() if 'parent' in e}
    posts, reshared = collections.Counter(), collections.Counter()
    for p, e in s.posts.items():
        if e['ts'] <= end - 12 * 3600000:
            lab = label_of(s.root[p])
            posts[lab] += 1
            reshared[lab] += p in has_child
    mean_k = sum(k ** -tail for k in range(1, max_reshares + 1))
    b_true, b_false = (mean_k * reshared[lab] / posts[lab] for lab in ('true', 'false'))
    want = 1 - (1 - branching) / boost
    implied = (1 - b_true) / (1 - b_false)
    check(f'branching factor: true {b_true:.3f} (--branching {branching}), false {b_false:.3f} ({want:.3f}),'
          f' so false cascades {implied:.2f}x as large in expectation',
          abs(b_true / branching - 1) < 0.1 and abs(b_false / want - 1) < 0.1 and abs(implied / boost - 1) < 0.2)
    depth = {lab: statistics.fmean(max(s.depth(p) for p in s.cascades[r]) for r in by_label[lab])
             for lab in ('false', 'true')}
    check(f'false cascades deeper on average ({depth["false"]:.2f} vs {depth["true"]:.2f})',
          depth['false'] > 1.3 * depth['true'])
    delays = sorted(e['ts'] - s.posts[e['parent']]['ts'] for e in s.posts.values() if 'parent' in e)
    hour = sum(1 for d in delays if d <= 3600000) / len(delays)
    med = delays[len(delays) // 2] / 60000
    second = sum(1 for d in delays if d >= 1000) / len(delays)  # faster: planted groups' reshares
    check(f'reshare delays mostly short (median {med:.1f} min, {hour:.0%} within an hour, '
          f'{second:.2%} over a second)', 1 < med < 15 and hour > 0.8 and second > 0.99)
    activity = sorted(collections.Counter(e['actor'] for e in s.posts.values()).values(), reverse=True)
    top = sum(activity[:max(1, len(activity) // 100)]) / sum(activity)
    check(f'activity heavy-tailed: the busiest 1% of actors make {top:.0%} of posts', top > 0.1)
    pages = sum(1 for a in set(e['actor'] for e in s.posts.values()) if a.startswith('page'))
    check(f'a few % of actors are pages ({pages})', 0.005 < pages / len(activity) < 0.06)
    url_cascades = collections.Counter(s.posts[r]['content'] for r in s.cascades)
    reused = sum(c for c in url_cascades.values() if c > 1) / len(s.cascades)
    check(f'URLs reused across cascades: {reused:.0%} of cascades share theirs, top URL in '
          f'{url_cascades.most_common(1)[0][1]}', reused > 0.5 and url_cascades.most_common(1)[0][1] > 100)


def check_groups(s, truth):
    groups = truth['groups']
    comps, keys_of, by_key = coordination(s)
    planted = sorted(sorted(g['members']) for g in groups)
    ok = True
    for g in groups:
        members = set(g['members'])
        for key in g['content']:
            times = sorted(t for t, a in by_key[key] if a in members)
            posters = {a for t, a in by_key[key] if a in members}
            ok &= len(posters) >= 2 and times[-1] - times[0] <= WINDOW_MS
        ok &= len(g['content']) >= MIN_REPEATS
    check(f'ground truth: {len(groups)} groups, each key posted by 2+ members within {WINDOW_MS} ms', ok)
    normal = [len(keys_of[m]) - sum(1 for k in keys_of[m] if k in set(g['content']))
              for g in groups for m in g['members']]
    check(f'members also post ordinary content (min {min(normal)}, max {max(normal)} keys each)',
          min(normal) >= 1)
    found = sorted(c for c in comps if c in planted)
    chance = [c for c in comps if c not in planted]
    check(f'DESIGN §3 coordination recovers the {len(planted)} planted groups exactly', found == planted,
          f'components: {comps}')
    check('no planted member is in any other component', not any(set(c) & set(sum(planted, [])) for c in chance))
    # Chance groups: DESIGN §3 divides by the smaller of the two key counts, so a busy account that
    # shares hundreds of URLs meets a few-post account on 3 of its handful by chance now and then
    # (0-2 such pairs per 200k events, depending on the seed). Dividing by the larger count, they go.
    hubs = all(max(len(keys_of[a]) for a in c) >= 20 * min(len(keys_of[a]) for a in c) for c in chance)
    check(f'other components ({len(chance)}) are chance pairings of a busy account with small ones',
          hubs, [(c, [len(keys_of[a]) for a in c]) for c in chance])
    strict, _, _ = coordination(s, ratio_of=max)
    check('with max() for min() in the ratio, exactly the planted groups', sorted(strict) == planted, strict)


def check_faults(clean):
    n = 100000
    args = ['--events', n, '--groups', 2, '--late-parents', 0.05, '--duplicates', 0.03, '--bad-events', 0.01]
    out = gen_ok(args, 'faults')
    events, lines = parse_ndjson(out), out.decode().splitlines()
    s = Stream(events)
    first = {}
    for i, e in enumerate(events):
        if is_valid(e):
            first.setdefault(e['post'], i)
    late = sum(1 for p, e in s.posts.items() if 'parent' in e and first[e['parent']] > first[p])
    check(f'late parents: {late / n:.2%} of posts before their parent (0.05)', abs(late / n - 0.05) < 0.01)
    check(f'duplicates: {s.dups / n:.2%} resent (0.03)', abs(s.dups / n - 0.03) < 0.005)
    check(f'bad events: {s.bad / n:.2%} invalid (0.01)', abs(s.bad / n - 0.01) < 0.003)
    bad = [e for e in events if not is_valid(e)]
    reasons = collections.Counter(
        'missing_post' if 'post' not in e else 'missing_actor' if 'actor' not in e
        else 'bad_type' if not isinstance(e['ts'], int) else 'self_parent' for e in bad)
    check(f'bad events: all four kinds ({dict(reasons)})', len(reasons) == 4 and min(reasons.values()) > 50)
    check('duplicates repeat an earlier line byte for byte',
          all(line == lines[first[e['post']]] for line, e in zip(lines, events) if is_valid(e)))

    def strip(posts):  # actor_type goes on a page's first event on the wire, which faults move
        return {p: {k: v for k, v in e.items() if k != 'actor_type'} for p, e in posts.items()}
    check('faults change the order, not the events: valid posts == the clean run\'s',
          strip(s.posts) == strip(clean.posts))
    first_typed, ok = set(), True
    for e in events:
        if is_valid(e) and e['actor'].startswith('page') and e['actor'] not in first_typed:
            ok &= e.get('actor_type') == 'page'
            first_typed.add(e['actor'])
    check('with faults too, each page\'s first valid event carries actor_type', ok)


def sample_command():
    """The cascade-gen command line documented in tests/data/README.md."""
    with open(os.path.join(DATA, 'README.md')) as f:
        for line in f:
            if re.match(r'\s*(build/tools/)?cascade-gen ', line) and 'sample.ndjson.gz' in line:
                return shlex.split(line.strip())[1:]
    return None


def check_sample(tmp):
    args = sample_command()
    if not check('tests/data/README.md documents the sample\'s cascade-gen command', args is not None):
        return
    swap = {'tests/data/sample.ndjson.gz': os.path.join(tmp, 's.ndjson.gz'),
            'tests/data/sample-groups.json': os.path.join(tmp, 's-groups.json')}
    gen_ok([swap.get(a, a) for a in args], 'sample')
    try:
        committed = gzip.open(os.path.join(DATA, 'sample.ndjson.gz')).read()
        committed_groups = open(os.path.join(DATA, 'sample-groups.json')).read()
    except OSError as e:
        check('the committed sample is readable', False, e)
        return
    check('tests/data/sample.ndjson.gz is what the documented command makes (after gunzip)',
          gzip.open(swap['tests/data/sample.ndjson.gz']).read() == committed)
    check('tests/data/sample-groups.json is what it makes', open(swap['tests/data/sample-groups.json']).read()
          == committed_groups)
    s = Stream(parse_ndjson(committed))
    sizes = sorted((len(v) for v in s.cascades.values()), reverse=True)
    truth = json.loads(committed_groups)
    comps, _, _ = coordination(s)
    check(f'sample: big cascades ({sizes[:3]}), faults ({s.dups} dups, {s.bad} bad), '
          f'{len(truth["groups"])} groups recovered',
          sizes[0] >= 100 and s.dups and s.bad and sorted(comps) == sorted(sorted(g['members']) for g in truth['groups']))


def body(run):
    global GEN
    GEN = os.path.join(run.tools, 'cascade-gen')
    tmp = run.tmp
    check_cli()
    check_determinism(tmp)
    check_formats(tmp)
    n, boost, branching, tail, max_reshares = 200000, 2.0, 0.4, 1.5, 100000  # the defaults
    truth_path = os.path.join(tmp, 'groups.json')
    out = gen_ok(['--events', n, '--groups', 3, '--groups-out', truth_path], 'shape')
    clean = check_clean_stream(out, n)
    check_shape(clean, boost, branching, tail, max_reshares)
    with open(truth_path) as f:
        check_groups(clean, json.load(f))
    del out, clean
    clean = Stream(parse_ndjson(gen_ok(['--events', 100000, '--groups', 2], 'faults')))
    check_faults(clean)
    check_sample(tmp)


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    harness.run_main('cascade-gen-test-', body, server=False, sanitizers=False)


if __name__ == '__main__':
    sys.exit(main())
