"""--max-memory against the real server: once the process's resident memory reaches the limit,
ingest is refused with a fatal message that says which event to resend from (cascade-replay
reports it with the --from that resumes), nothing refused changes the state, queries go on, the
refusals are counted in stats and /metrics; restarted with room, a resend of the whole dump
brings every event in exactly once. argv: the directory of cascaded, the tools dir."""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Rpc, Server, check, metric, stats_of  # noqa: E402

EVENTS = 300_000


def replay(tools, srv, dump, *extra):
    return subprocess.run([os.path.join(tools, 'cascade-replay'), '--quiet', '--port', str(srv.ingest), *extra,
                           dump], capture_output=True, text=True, timeout=300)


def body(run):
    bin_dir, tools, tmp = run.bin_dir, run.tools, run.tmp
    dump = os.path.join(tmp, 'dump.ndjson')
    subprocess.run([os.path.join(tools, 'cascade-gen'), '--events', str(EVENTS), '--seed', '7', '--out', dump],
                   check=True, capture_output=True, timeout=120)
    probe = Server(bin_dir, os.path.join(tmp, 'probe'))
    idle = stats_of(probe.start()).get('memory_rss', 0)  # what --max-memory judges
    probe.stop()
    limit = idle + (24 << 20)
    srv = Server(bin_dir, os.path.join(tmp, 'data'), '--max-memory', f'{limit >> 20}M')
    srv.start()
    p = replay(tools, srv, dump)
    m = re.search(r'event (\d+) was not accepted', p.stderr)
    check('the replay fails at the limit, with the server\'s message', p.returncode == 1 and m
          and '--max-memory' in p.stderr, f'{p.returncode} {p.stdout} {p.stderr[-600:]}')
    check('cascade-replay says which --from resumes', '--from' in p.stderr, p.stderr[-400:])
    st = stats_of(srv)
    first_refused = int(m.group(1)) if m else -1
    check('memory_limit in stats is the flag', st.get('memory_limit') == (limit >> 20) << 20, str(st))
    # batches already on their way may get in if memory fell back under 90 % meanwhile: the
    # producer resends them as duplicates; refused ones never changed anything
    check('events were refused, and only accepted ones changed the state',
          st.get('refused_memory', 0) > 0 and st.get('accepted', 0) >= first_refused > 0
          and st.get('posts') == st.get('accepted')
          and st.get('accepted') + st.get('refused_memory') <= EVENTS, json.dumps({k: st.get(k) for k in (
              'accepted', 'posts', 'refused_memory', 'memory_rss', 'memory_limit')}))
    check('/metrics counts the refused events',
          (metric(srv, 'cascaded_events_refused_memory_total') or 0) == st.get('refused_memory'))
    r = Rpc(srv.query)
    err, top = r.call('top_cascades', by='size', limit=3)
    r.close()
    check('queries are answered at the limit', err is None and len(top) == 3, f'{err} {top}')
    log = srv.stderr()
    check('the log says when memory ran full', 'state=full' in log,
          log[-800:])
    check('SIGTERM exits 0 at the limit', srv.stop() == 0)
    # restarted without the limit, the same dump again: all of it, each event once
    srv.extra = []
    srv.start()
    p = replay(tools, srv, dump)
    st = stats_of(srv)
    out = re.search(r'sent (\d+) ok (\d+) dup (\d+) rej (\d+)', p.stdout)
    check('with room again, the whole dump is acked', p.returncode == 0 and out, p.stdout + p.stderr[-300:])
    if out:
        sent, ok, dup, rej = map(int, out.groups())
        check('the events accepted before come back as duplicates, the rest as new',
              dup >= first_refused and ok + dup + rej == sent and st.get('refused_memory') == 0,
              f'{out.group(0)} first refused {first_refused}')
        check('posts = every distinct valid event of the dump, once', st.get('posts') == sent - rej == ok + dup,
              f'{st.get("posts")} vs {out.group(0)}')
    check('SIGTERM exits 0', srv.stop() == 0)


def main():
    harness.run_main('cascade-memory-', body, server=False)


if __name__ == '__main__':
    main()
