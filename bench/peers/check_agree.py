#!/usr/bin/python3
"""Checks that a peer's top cascades agree with cascaded's on the same dump.

Usage: check_agree.py PEER_JSON --http http://127.0.0.1:PORT [--by size,...]
       check_agree.py PEER_JSON --cascaded BY=FILE [--cascaded BY=FILE ...]

PEER_JSON is the one JSON line a peer printed (a file, or - for stdin), with its "top" lists
(networkx_metrics.py, duckdb/metrics.mjs). cascaded's lists come from its HTTP port
(/v1/top_cascades?by=BY&limit=K) or from files holding that answer. For each metric BY:
  - the K values of BY, in order, are the same;
  - every cascade whose BY is strictly above the K-th value is in both lists (at the K-th value
    ties may be cut differently);
  - every cascade in both lists has the same size, missing, depth, max_breadth, wiener,
    unique_actors, first_ts, last_ts, and structural_virality to 1e-9 relative.
Peers that ran with --limit-events must be compared with a cascaded fed the same prefix.
Prints what differs and ends with `N passed, M failed`; exit 1 on any failure.
"""
import argparse
import json
import math
import sys
import urllib.request

INT_FIELDS = ("size", "missing", "depth", "max_breadth", "wiener", "unique_actors",
              "first_ts", "last_ts")
SV_RTOL = 1e-9


def same(field, a, b):
    if field == "structural_virality":
        return math.isclose(a, b, rel_tol=SV_RTOL, abs_tol=1e-12)
    return a == b


def compare(by, peer, ref):
    """Returns a list of problems (empty when they agree)."""
    problems = []
    if len(peer) != len(ref):
        problems.append(f"{by}: peer lists {len(peer)} cascades, cascaded {len(ref)}")
    pv, rv = [r[by] for r in peer], [r[by] for r in ref]
    if len(pv) != len(rv) or not all(same(by, a, b) for a, b in zip(pv, rv)):
        problems.append(f"{by}: values differ: peer {pv} cascaded {rv}")
    if pv and rv:
        cut = min(pv[-1], rv[-1])
        above_p = {r["root"] for r in peer if r[by] > cut and not same(by, r[by], cut)}
        above_r = {r["root"] for r in ref if r[by] > cut and not same(by, r[by], cut)}
        if above_p != above_r:
            problems.append(f"{by}: cascades above the cut differ: only peer {sorted(above_p - above_r)}"
                            f", only cascaded {sorted(above_r - above_p)}")
    by_root = {r["root"]: r for r in ref}
    for r in peer:
        c = by_root.get(r["root"])
        if c is None:
            continue
        for field in INT_FIELDS + ("structural_virality",):
            if field in r and field in c and not same(field, r[field], c[field]):
                problems.append(f"{by}: cascade {r['root']}: {field} peer {r[field]} "
                                f"cascaded {c[field]}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("peer_json")
    ap.add_argument("--http", help="cascaded's HTTP base URL, e.g. http://127.0.0.1:7402")
    ap.add_argument("--cascaded", action="append", default=[], metavar="BY=FILE")
    ap.add_argument("--by", default=None, help="metrics to compare (default: every list the peer has)")
    args = ap.parse_args()

    text = sys.stdin.read() if args.peer_json == "-" else open(args.peer_json).read()
    lines = [ln for ln in text.splitlines() if ln.strip().startswith("{")]
    if not lines:
        print("check_agree: no JSON line from the peer")
        print("0 passed, 1 failed")
        return 1
    peer = json.loads(lines[-1])
    name = peer.get("peer", "peer")
    if "skipped" in peer:
        print(f"check_agree: {name} skipped ({peer['skipped']}); nothing to compare")
        print("0 passed, 0 failed, 1 skipped")
        return 0
    tops = peer.get("top") or {}
    wanted = args.by.split(",") if args.by else list(tops)
    files = dict(spec.split("=", 1) for spec in args.cascaded)

    passed = failed = 0
    for by in wanted:
        if by not in tops:
            print(f"FAIL {name} {by}: the peer printed no top list for it")
            failed += 1
            continue
        k = len(tops[by])
        if by in files:
            ref = json.load(open(files[by]))
        elif args.http:
            url = f"{args.http.rstrip('/')}/v1/top_cascades?by={by}&limit={k}"
            with urllib.request.urlopen(url, timeout=30) as resp:
                ref = json.load(resp)
        else:
            print(f"FAIL {name} {by}: no cascaded answer (--http or --cascaded {by}=FILE)")
            failed += 1
            continue
        problems = compare(by, tops[by], ref)
        if problems:
            failed += 1
            for p in problems:
                print(f"FAIL {name} {p}")
        else:
            passed += 1
            print(f"ok   {name} {by}: top {k} agree with cascaded")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
