"""Summary of bench/compare-builds.sh: per figure, each build's median and range over the rounds
and the ratio of the medians (new / base), as a markdown table on stdout."""
import json
import statistics
import sys


def figures(path, kind):
    with open(path) as f:
        res = json.load(f)["results"]
    if kind == "ingest":
        return {
            "ingest events/s": res["ingest"]["events_per_s"],
            "ingest ack p99 ms": res["ingest"]["ack_ms"]["p99"],
            "peak RSS bytes/event": res["server"]["peak_rss_bytes_per_event"],
        }
    q = res["query"]["latency_ms"]["all"]
    return {"query p50 ms": q["p50"], "query p99 ms": q["p99"],
            "query errors": res["query"]["errors"]}


def main():
    out, base, new, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rows = {}
    for which in ("base", "new"):
        for kind in ("ingest", "query"):
            for r in range(1, rounds + 1):
                for name, v in figures(f"{out}/{which}-{kind}-{r}.json", kind).items():
                    rows.setdefault(name, {"base": [], "new": []})[which].append(v)
    print(f"base: {base}\nnew:  {new}\nrounds: {rounds} (alternating order)\n")
    print("| figure | base median (range) | new median (range) | new / base |")
    print("| --- | --- | --- | --- |")
    for name, v in rows.items():
        mb, mn = statistics.median(v["base"]), statistics.median(v["new"])
        ratio = f"{mn / mb:.2f}" if mb else "-"
        fmt = (lambda x: f"{x:,.0f}") if mb >= 1000 else (lambda x: f"{x:.3g}")
        print(f"| {name} | {fmt(mb)} ({fmt(min(v['base']))}–{fmt(max(v['base']))}) "
              f"| {fmt(mn)} ({fmt(min(v['new']))}–{fmt(max(v['new']))}) | {ratio} |")


if __name__ == "__main__":
    main()
