#!/usr/bin/python3
"""Oracle test: graph_pagerank and graph_leiden (src/analytics/graph.c) against python-igraph.

Usage: oracle_igraph_analytics.py GRAPH_ORACLE [--seed N] [--keep DIR]

Random amplification graphs (1 to ~20k vertices; skewed degrees from a few hubs, planted
communities, repeated u->v edges, both directions of a pair, isolated vertices; no self loops)
go to GRAPH_ORACLE (tests/oracle/graph_oracle.c) as `nv` then `u v w` lines. Checked:
  - PageRank: python-igraph's Graph(n=nv, edges=..., directed=True).pagerank(weights=...,
    damping=0.85) (PRPACK) on the raw edge list, repeated edges and all: equal within 1e-6
    absolute per vertex; sums to 1.
  - Leiden: the graph made undirected with u-v and v-u merged, weights summed; the modularity
    (Graph.modularity(membership, weights=...)) of our partition is within 1e-3 of, or above,
    what python-igraph's own community_leiden(objective_function="modularity", weights=...,
    n_iterations=-1) reaches in some run (8 to 64 seeds of Python's `random`, which
    python-igraph draws from, 42 first), and not below their mean on average over all graphs
    (by more than 1e-3); isolated vertices alone; membership numbered 0..K-1 by decreasing size,
    ties by smallest vertex; two runs (two processes, and two calls in one process) give the
    same membership and the same ranks to the last digit.
Leiden is randomised and the two sides cannot share a random stream: hence the comparison of
modularity, not of partitions. With seed 42 igraph's C RNG can land in the low tail of its own
distribution (it does on one graph of --seed 9: 1 run in 200 of igraph's reaches that low); the
default --seed passes, and the average over all graphs is the check of the set-up itself.
Exit status 0 when every check passed; the last line is `N passed, M failed`.
"""
import argparse
import os
import random
import subprocess
import sys

import igraph

PR_TOL = 1e-6
Q_TOL = 1e-3
PY_RUNS = 8
PY_RUNS_MAX = 64


def make_graph(rng, nv, ne, communities, hub_skew):
    """Edges (u, v, w): mostly inside planted communities, endpoints drawn with a skew towards
    hub vertices; a tenth of the vertices never appear (isolated); some edges repeat."""
    active = [v for v in range(nv) if nv < 3 or rng.random() > 0.1]
    if len(active) < 2:
        return []
    rng.shuffle(active)
    groups = [active[i::communities] for i in range(communities)]
    groups = [g for g in groups if len(g) >= 2] or [active]

    def pick(group):
        # random() ** skew concentrates picks on the group's first members: the hubs.
        return group[int(len(group) * rng.random() ** hub_skew)]

    edges = []
    while len(edges) < ne:
        if rng.random() < 0.85:
            g = rng.choice(groups)
            u, v = pick(g), pick(g)
        else:
            u, v = pick(active), pick(active)
        if u == v:
            continue
        w = 1 if rng.random() < 0.7 else rng.randint(1, 20)
        edges.append((u, v, w))
        r = rng.random()
        if r < 0.1:
            edges.append((u, v, rng.randint(1, 5)))  # repeated edge
        elif r < 0.2:
            edges.append((v, u, 1))  # the other direction
    rng.shuffle(edges)
    return edges


def run_driver(driver, nv, edges, twice):
    text = "%d\n" % nv + "".join("%d %d %d\n" % e for e in edges)
    args = [driver] + (["--twice"] if twice else [])
    p = subprocess.run(args, input=text, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("driver exit %d: %s" % (p.returncode, p.stderr.strip()))
    lines = p.stdout.splitlines()
    ncomm = int(lines[0].split()[1])
    ranks, memb = [], []
    for line in lines[1:]:
        r, m = line.split()
        ranks.append(float(r))
        memb.append(int(m))
    return ncomm, ranks, memb, p.stdout


def undirected_collapsed(nv, edges):
    g = igraph.Graph(n=nv, edges=[(min(u, v), max(u, v)) for u, v, _ in edges], directed=False)
    g.es["weight"] = [float(w) for _, _, w in edges]
    g.simplify(multiple=True, loops=True, combine_edges="sum")
    return g


def check_case(driver, name, nv, edges, fails, deltas):
    problems = []
    ncomm, ranks, memb, out1 = run_driver(driver, nv, edges, twice=True)
    if len(ranks) != nv:
        problems.append("driver printed %d vertices, want %d" % (len(ranks), nv))
        fails.append((name, problems))
        return

    pr_info = ""
    # PageRank on the raw, directed, repeated-edge list, as python-igraph users would build it.
    if nv:
        d = igraph.Graph(n=nv, edges=[(u, v) for u, v, _ in edges], directed=True)
        want = d.pagerank(weights=[float(w) for _, _, w in edges] if edges else None,
                          damping=0.85)
        worst = max(abs(a - b) for a, b in zip(ranks, want))
        pr_info = "PR diff %.1e, " % worst
        if worst > PR_TOL:
            v = max(range(nv), key=lambda i: abs(ranks[i] - want[i]))
            problems.append("pagerank off by %.3g at vertex %d (%r vs igraph %r)"
                            % (worst, v, ranks[v], want[v]))
        if abs(sum(ranks) - 1) > 1e-9:
            problems.append("pagerank sums to %r" % sum(ranks))

    # Membership shape: 0..K-1, sizes non-increasing, ties by smallest member.
    sizes = [0] * ncomm
    first = [None] * ncomm
    for v, c in enumerate(memb):
        if not 0 <= c < ncomm:
            problems.append("vertex %d in community %d of %d" % (v, c, ncomm))
            break
        sizes[c] += 1
        if first[c] is None:
            first[c] = v
    else:
        if 0 in sizes:
            problems.append("empty community numbers")
        for c in range(1, ncomm):
            if (sizes[c], -first[c]) > (sizes[c - 1], -first[c - 1]):
                problems.append("community %d (size %d, first %s) before %d (size %d, first %s)"
                                % (c - 1, sizes[c - 1], first[c - 1], c, sizes[c], first[c]))
                break

    # Leiden quality against python-igraph's own runs. Leiden is randomised and python-igraph
    # draws from Python's `random`, not igraph's RNG, so no seed gives both the same partition.
    # Ours must be no worse (within Q_TOL) than some run of python-igraph's: at least PY_RUNS
    # seeds (42 first), more, up to PY_RUNS_MAX, while ours is below all of them (small graphs
    # have few local optima, and a run in ten may land on the lowest). main() checks that across
    # all graphs ours is not worse on average (a wrong resolution or node weight shows there).
    if nv:
        u = undirected_collapsed(nv, edges)
        if u.ecount():
            q_ours = u.modularity(memb, weights="weight")
            q_theirs = []
            for seed in [42] + list(range(1, PY_RUNS_MAX)):
                if len(q_theirs) >= PY_RUNS and min(q_theirs) <= q_ours + Q_TOL:
                    break
                random.seed(seed)
                theirs = u.community_leiden(objective_function="modularity", weights="weight",
                                            n_iterations=-1)
                q_theirs.append(u.modularity(theirs.membership, weights="weight"))
            mean = sum(q_theirs) / len(q_theirs)
            if q_ours < min(q_theirs) - Q_TOL:
                problems.append("modularity %.6f below python-igraph's %.6f..%.6f"
                                % (q_ours, min(q_theirs), max(q_theirs)))
            deltas.append(q_ours - mean)
            for v in range(nv):
                if u.degree(v) == 0 and sizes[memb[v]] != 1:
                    problems.append("isolated vertex %d in a community of %d"
                                    % (v, sizes[memb[v]]))
                    break
            info = "Q %.4f (igraph %.4f..%.4f in %d runs), %d communities" % (
                q_ours, min(q_theirs), max(q_theirs), len(q_theirs), ncomm)
        else:
            info = "no edges"
            if memb != list(range(nv)):
                problems.append("edgeless graph: not one community a vertex")
    else:
        info = "empty"

    # Repeatable across processes too.
    _, _, _, out2 = run_driver(driver, nv, edges, twice=False)
    if out2 != out1:
        problems.append("a second run printed different results")

    print("%-36s nv %6d ne %7d  %s%s  %s" % (name, nv, len(edges), pr_info, info,
                                          "FAIL" if problems else "ok"))
    if problems:
        fails.append((name, problems))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("driver")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--keep", help="write each failing case's input here")
    a = ap.parse_args()
    rng = random.Random(a.seed)

    cases = [
        ("empty", 0, []),
        ("one vertex", 1, []),
        ("no edges", 7, []),
        ("one edge", 3, [(2, 0, 4)]),
        ("pair both ways", 2, [(0, 1, 1), (1, 0, 3), (0, 1, 2)]),
    ]
    for nv, ne, comm, skew in [(10, 15, 2, 1.0), (50, 120, 3, 2.0), (300, 900, 8, 2.0),
                               (2000, 8000, 20, 2.5), (2000, 3000, 200, 1.0),
                               (8000, 40000, 40, 3.0), (20000, 80000, 60, 3.0),
                               (20000, 30000, 500, 1.5)]:
        cases.append(("random nv=%d comm=%d skew=%.1f" % (nv, comm, skew), nv,
                      make_graph(rng, nv, ne, comm, skew)))
    for i in range(12):
        nv = rng.randint(2, 400)
        cases.append(("small random #%d" % i, nv,
                      make_graph(rng, nv, rng.randint(1, 4 * nv), rng.randint(1, 6),
                                 rng.choice([1.0, 2.0, 4.0]))))

    fails, deltas = [], []
    for name, nv, edges in cases:
        try:
            check_case(a.driver, name, nv, edges, fails, deltas)
        except Exception as e:  # a crash of the driver is a failure, not the end of the run
            fails.append((name, ["%s: %s" % (type(e).__name__, e)]))
            print("%-36s FAIL %s" % (name, e))
        if fails and fails[-1][0] == name and a.keep:
            os.makedirs(a.keep, exist_ok=True)
            path = os.path.join(a.keep, name.replace(" ", "_").replace("=", "") + ".txt")
            with open(path, "w") as f:
                f.write("%d\n" % nv + "".join("%d %d %d\n" % e for e in edges))
    bias = sum(deltas) / len(deltas)
    print("modularity, ours minus python-igraph's mean, averaged over %d graphs: %+.5f"
          % (len(deltas), bias))
    if bias < -Q_TOL:
        fails.append(("all graphs", ["ours is worse on average by %.5f" % -bias]))
    for name, problems in fails:
        for p in problems:
            print("FAIL %s: %s" % (name, p))
    print("%d passed, %d failed" % (len(cases) - len(fails), len(fails)))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
