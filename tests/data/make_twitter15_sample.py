#!/usr/bin/python3
"""Cuts tests/data/twitter15-sample.ndjson.gz out of the full Twitter15 event dump.

Usage: make_twitter15_sample.py TWITTER15_NDJSON_GZ OUT_NDJSON_GZ

Deterministic (no randomness), so the sample can be rebuilt and reviewed. It keeps whole cascades,
every event of each, in the source's order, chosen to cover what the oracle test needs:
the largest cascade (most nodes per Wiener index), the deepest one, the extremes of depth, and for
each label cascades spread evenly over the size range, within an event budget that keeps the file
under about 1 MB.
"""
import collections
import gzip
import json
import sys

TOTAL = 150            # cascades in the sample
EVENT_BUDGET = 46000   # events, roughly 1 MB gzipped
SMALL_LIMIT = 800      # stratified picks come from cascades up to this size (budget)


def main(src, dst):
    lines = gzip.open(src, "rt", encoding="utf-8").read().splitlines()
    by_cascade = collections.OrderedDict()
    depth, size, label, order = {}, collections.Counter(), {}, []
    cdepth = collections.Counter()
    for line in lines:
        ev = json.loads(line)
        root_key = ev["post"].split("/", 1)[0]
        if root_key not in by_cascade:
            by_cascade[root_key] = []
            order.append(root_key)
        by_cascade[root_key].append(line)
        parent = ev.get("parent")
        depth[ev["post"]] = 0 if parent is None else depth[parent] + 1
        size[root_key] += 1
        cdepth[root_key] = max(cdepth[root_key], depth[ev["post"]])
        if parent is None:
            label[root_key] = ev.get("label", "")

    chosen = []

    def take(c):
        if c not in chosen:
            chosen.append(c)

    take(max(order, key=lambda c: (size[c], c)))    # largest
    take(max(order, key=lambda c: (cdepth[c], c)))  # deepest
    for c in sorted(order, key=lambda c: (cdepth[c], c))[:2]:  # shallowest
        take(c)
    # a few more deep ones among the affordable: depth is where incremental bookkeeping breaks
    deep = [c for c in order if size[c] <= SMALL_LIMIT]
    for c in sorted(deep, key=lambda c: (-cdepth[c], c))[:6]:
        take(c)

    labels = sorted(set(label.values()))
    per_label = (TOTAL - len(chosen)) // len(labels)
    spent = sum(size[c] for c in chosen)
    budget_each = (EVENT_BUDGET - spent) // len(labels)
    for lab in labels:
        pool = sorted((c for c in order if label[c] == lab and c not in chosen
                       and size[c] <= SMALL_LIMIT), key=lambda c: (size[c], c))
        # evenly spaced over the size-sorted pool; over budget, drop the largest quarter and retry
        while True:
            picks = [pool[(i * (len(pool) - 1)) // (per_label - 1)] for i in range(per_label)]
            if sum(size[c] for c in picks) <= budget_each or len(pool) <= per_label:
                break
            pool = pool[: (len(pool) * 3) // 4]
        for c in picks:
            take(c)
    while len(chosen) < TOTAL:  # rounding leftovers: smallest remaining cascades
        take(min((c for c in order if c not in chosen), key=lambda c: (size[c], c)))

    keep = set(chosen)
    with gzip.GzipFile(dst, "wb", compresslevel=9, mtime=0) as out:
        for c in order:
            if c in keep:
                out.write(("\n".join(by_cascade[c]) + "\n").encode("utf-8"))
    n_events = sum(size[c] for c in keep)
    print(f"{len(keep)} cascades, {n_events} events, labels "
          f"{dict(collections.Counter(label[c] for c in keep))}, max size "
          f"{max(size[c] for c in keep)}, max depth {max(cdepth[c] for c in keep)}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
