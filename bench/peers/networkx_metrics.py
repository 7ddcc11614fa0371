#!/usr/bin/python3
"""Analyst's batch peer: the per-cascade metrics of DESIGN §3 from an NDJSON dump, with networkx
(or, with --igraph, python-igraph), the way a data team would write it in a notebook.

Usage: networkx_metrics.py DUMP.ndjson[.gz] [--igraph] [--limit-events N] [--top K] [--no-top]

Load: every line is parsed with json, validated roughly like the server (post, actor and ts
present and of the right type, ids of 1..256 bytes, integer ids taken as their decimal strings,
no self-parent, no cycle), duplicate posts dropped (first wins). Parents never seen become
placeholder nodes: they count in `missing` and take part in depth, breadth and virality.

Compute (networkx): one DiGraph parent -> child; each weakly connected component is a cascade,
its root the node without a parent; depths from single_source_shortest_path_length; the Wiener
index from networkx.wiener_index on the undirected tree (all pairs, O(n^2) per tree in Python);
structural virality = W / (n(n-1)/2).
Compute (--igraph): one Graph of the same edges; components(mode="weak"); depths from a BFS of
the root; the Wiener index as the sum of the tree's distances() matrix, taken in blocks of rows
(the same O(n^2) all-pairs work, in C).

Prints one JSON line:
  {"peer":"networkx","events":lines read,"accepted":...,"cascades":...,"load_s":...,
   "compute_s":...,"total_s":...,"wiener":"networkx.wiener_index (all pairs)", "top":{...}}
where top holds, for size, depth, max_breadth and structural_virality, the K largest cascades
(ties broken by root id) with all their metrics, for check_agree.py to compare with cascaded's.
"""
import argparse
import collections
import gzip
import json
import sys
import time

ID_MAX = 256
BY = ("size", "depth", "max_breadth", "structural_virality")


def take_id(v):
    """A post/actor/parent id as the server sees it, or None when it is invalid."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return str(v) if v >= 0 else None
    if isinstance(v, str) and 0 < len(v.encode()) <= ID_MAX:
        return v
    return None


def load(path, limit):
    """Returns (lines read, rejected, duplicates, {post: (parent, actor, ts)}) in arrival order."""
    opener = gzip.open if path.endswith(".gz") else open
    posts = {}
    children = set()  # ids that some accepted post names as its parent
    lines = rejected = dups = 0
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if limit is not None and lines >= limit:
                break
            lines += 1
            try:
                e = json.loads(line)
            except ValueError:
                rejected += 1
                continue
            post, actor, ts = take_id(e.get("post")), take_id(e.get("actor")), e.get("ts")
            parent = e.get("parent")
            if parent is not None:
                parent = take_id(parent)
            if (post is None or actor is None or not isinstance(ts, int) or isinstance(ts, bool)
                    or (e.get("parent") is not None and parent is None) or parent == post):
                rejected += 1
                continue
            if post in posts:
                dups += 1
                continue
            if post in children:  # something already hangs below post: would it close a loop?
                p, loop = parent, False
                while p is not None:
                    if p == post:
                        loop = True
                        break
                    p = posts[p][0] if p in posts else None
                if loop:
                    rejected += 1
                    continue
            posts[post] = (parent, actor, ts)
            if parent is not None:
                children.add(parent)
    return lines, rejected, dups, posts


def record(root, nodes, posts, depth_of, wiener):
    """The metrics of one cascade: nodes are its post ids (placeholders included)."""
    n = len(nodes)
    observed = [posts[v] for v in nodes if v in posts]
    by_depth = collections.Counter(depth_of.values())
    ts = [o[2] for o in observed]
    return {
        "root": root,
        "size": len(observed),
        "missing": n - len(observed),
        "depth": max(by_depth),
        "max_breadth": max(by_depth.values()),
        "wiener": wiener,
        "structural_virality": wiener / (n * (n - 1) / 2) if n > 1 else 0.0,
        "unique_actors": len({o[1] for o in observed}),
        "first_ts": min(ts),
        "last_ts": max(ts),
    }


def compute_networkx(posts):
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(posts)
    g.add_edges_from((parent, post) for post, (parent, _, _) in posts.items() if parent is not None)
    out = []
    for comp in nx.weakly_connected_components(g):
        tree = g.subgraph(comp)
        root = next(v for v in comp if tree.in_degree(v) == 0)
        depth_of = nx.single_source_shortest_path_length(tree, root)
        wiener = int(nx.wiener_index(tree.to_undirected())) if len(comp) > 1 else 0
        out.append(record(root, comp, posts, depth_of, wiener))
    return out


def compute_igraph(posts):
    import igraph

    names = list(posts)
    index = {v: i for i, v in enumerate(names)}
    edges = []
    for post, (parent, _, _) in posts.items():
        if parent is None:
            continue
        if parent not in index:  # placeholder
            index[parent] = len(names)
            names.append(parent)
        edges.append((index[parent], index[post]))
    g = igraph.Graph(n=len(names), edges=edges, directed=True)
    out = []
    indeg = g.indegree()
    for comp in g.connected_components(mode="weak"):
        root = next(v for v in comp if indeg[v] == 0)
        tree = g.induced_subgraph(comp)
        local_root = comp.index(root)
        order, layers, _ = tree.bfs(local_root, mode="out")
        depth_of = {}
        for d in range(len(layers) - 1):
            for v in order[layers[d]:layers[d + 1]]:
                depth_of[v] = d
        n = tree.vcount()
        wiener = 0
        for start in range(0, n, 2048):  # rows of the distance matrix in blocks: bounded memory
            rows = tree.distances(source=range(start, min(n, start + 2048)), mode="all")
            wiener += sum(sum(r) for r in rows)
        record_nodes = [names[v] for v in comp]
        out.append(record(names[root], record_nodes, posts,
                          {names[comp[v]]: d for v, d in depth_of.items()}, wiener // 2))
    return out


def top(records, by, k):
    return sorted(records, key=lambda r: (-r[by], r["root"]))[:k]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dump")
    ap.add_argument("--igraph", action="store_true", help="python-igraph instead of networkx")
    ap.add_argument("--limit-events", type=int, default=None, metavar="N",
                    help="read only the first N lines of the dump")
    ap.add_argument("--top", type=int, default=10, metavar="K")
    ap.add_argument("--no-top", action="store_true", help="leave the top lists out of the JSON")
    args = ap.parse_args()

    t0 = time.perf_counter()
    lines, rejected, dups, posts = load(args.dump, args.limit_events)
    t1 = time.perf_counter()
    records = (compute_igraph if args.igraph else compute_networkx)(posts)
    tops = {by: top(records, by, args.top) for by in BY}  # the analyst's question, answered
    t2 = time.perf_counter()

    result = {
        "peer": "igraph" if args.igraph else "networkx",
        "events": lines,
        "limited": args.limit_events is not None,
        "accepted": len(posts),
        "duplicate": dups,
        "rejected": rejected,
        "cascades": len(records),
        "placeholders": sum(r["missing"] for r in records),
        "load_s": round(t1 - t0, 3),
        "compute_s": round(t2 - t1, 3),
        "total_s": round(t2 - t0, 3),
        "wiener": ("igraph Graph.distances() summed per tree (all pairs, in C)" if args.igraph
                   else "networkx.wiener_index on the undirected tree (all pairs, Python)"),
        "top10_structural_virality": [r["root"] for r in tops["structural_virality"]],
    }
    if not args.no_top:
        result["top"] = tops
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    sys.exit(main())
