"""libcascade-client as another program sees it (DESIGN §7): `cmake --install` into a temporary
prefix, examples/ingest_and_query.c built against that copy with
`cc ... $(pkg-config --cflags --libs cascade-client)`, then run against a real cascaded: its
events are acked (one rejected, with the server's reason), the cascade and stats it asks for
answer, a pipelined pair of calls comes back in order. Also: the installed headers are the
public ones only, and the example links no server library."""
import os
import subprocess

import harness
from harness import check

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, '..', '..'))


def body(run):
    prefix = os.path.join(run.tmp, 'prefix')
    inst = subprocess.run(['cmake', '--install', run.bin_dir, '--prefix', prefix],
                          capture_output=True, text=True)
    if not check('cmake --install into a temporary prefix', inst.returncode == 0, inst.stderr[-500:]):
        return
    headers = sorted(os.listdir(os.path.join(prefix, 'include', 'cascade')))
    check('the public headers are installed', {'client.h', 'proto.h', 'mp.h', 'event.h'} <= set(headers),
          str(headers))
    pcs = [os.path.join(d, f) for d, _, fs in os.walk(prefix) for f in fs if f == 'cascade-client.pc']
    if not check('cascade-client.pc is installed', len(pcs) == 1, str(pcs)):
        return
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]))
    flags = subprocess.run(['pkg-config', '--cflags', '--libs', 'cascade-client'], capture_output=True,
                           text=True, env=env)
    check('pkg-config knows cascade-client', flags.returncode == 0 and '-lcascade-client' in flags.stdout,
          flags.stdout + flags.stderr)
    exe = os.path.join(run.tmp, 'ingest_and_query')
    # a sanitizer build's library calls the sanitizers' runtime: the program must link it too
    with open(os.path.join(run.bin_dir, 'CMakeCache.txt')) as f:
        san = '-fsanitize=address,undefined ' if 'CASCADE_SANITIZE:BOOL=ON' in f.read() else ''
    # the shell expands $(pkg-config ...), as a user's build line does
    cc = subprocess.run(f'cc -std=c11 -Wall -Wextra -Werror {san}-o {exe} '
                        f'{os.path.join(SOURCE, "examples", "ingest_and_query.c")} '
                        f'$(pkg-config --cflags --libs cascade-client)',
                        shell=True, capture_output=True, text=True, env=env, cwd=run.tmp)
    if not check('the example builds against the installed library', cc.returncode == 0, cc.stderr[-1500:]):
        return
    ldd = subprocess.run(['ldd', exe], capture_output=True, text=True).stdout
    check('the example links no igraph, liburing or jemalloc', not any(
        lib in ldd for lib in ('libigraph', 'liburing', 'libjemalloc')), ldd)
    srv = run.srv
    p = subprocess.run([exe, '127.0.0.1', str(srv.ingest), str(srv.query)], capture_output=True,
                       text=True, timeout=60)
    out = p.stdout.splitlines()
    check('the example exits 0', p.returncode == 0, p.stderr)
    check('its events are acked: 4 ok, 1 rejected', 'ingest: sent 5 ok 4 dup 0 rej 1' in out, p.stdout)
    check('the rejection comes with the server\'s reason and the event\'s index',
          'rejected event 4: missing_actor' in out, p.stdout)
    check('cascade answers over RPC', 'cascade p3: root p1 size 4 depth 2' in out, p.stdout)
    check('stats answers (pipelined, first)', 'stats: accepted 4 rejected 1 cascades 1' in out, p.stdout)
    check('an unknown post errors (pipelined, second)', 'cascade nope: error 404' in out, p.stdout)
    st = harness.stats_of(srv)
    check('the server holds what the example sent', st.get('accepted') == 4 and st.get('rejected') == 1,
          str({k: st.get(k) for k in ('accepted', 'rejected')}))


if __name__ == '__main__':
    harness.run_main('cascade-client-install-', body)
