"""The client tools link libcascade-client, not the server (issue 17, DESIGN §7): ldd shows no
igraph or liburing in cascade-cli, cascade-replay or cascade-bench, and nm shows none of the
server's symbols (engine_*, wal_*, netloop_*, handle_*, igraph_*, io_uring_*) in them. Since the
linker keeps only the archive members a tool uses, their link lines are checked too: none names
the server's library (libcascade.a)."""
import os
import re
import subprocess

import harness
from harness import check

LIBS = re.compile(r'lib(igraph|uring)\b')
SYMS = re.compile(r'^(engine_|wal_|netloop_|handle_|igraph_|io_uring_)')


def tool_paths(run):
    tools = [os.path.join(run.tools, 'cascade-cli'), os.path.join(run.tools, 'cascade-replay')]
    # cascade-bench is built under bench/ beside tools/
    bench = os.path.join(os.path.dirname(os.path.abspath(run.tools)), 'bench', 'cascade-bench')
    if os.path.exists(bench):
        tools.append(bench)
    return tools


def body(run):
    for path in tool_paths(run):
        name = os.path.basename(path)
        if not check(f'{name} is built', os.path.exists(path), path):
            continue
        ldd = subprocess.run(['ldd', path], capture_output=True, text=True)
        libs = sorted({m.group(0) for m in LIBS.finditer(ldd.stdout)})
        check(f'{name}: ldd shows no igraph or liburing', ldd.returncode == 0 and not libs,
              ' '.join(libs) or ldd.stderr)
        # global symbols only, defined or not: a tool's own static helper may be named handle_*
        nm = subprocess.run(['nm', '-P', '-g', path], capture_output=True, text=True)
        syms = sorted({line.split()[0] for line in nm.stdout.splitlines()
                       if line and SYMS.match(line.split()[0])})
        check(f'{name}: nm shows no server symbols', nm.returncode == 0 and not syms,
              f'{len(syms)}: ' + ' '.join(syms[:12]) if syms else nm.stderr)
        link = os.path.join(os.path.dirname(path), 'CMakeFiles', f'{name}.dir', 'link.txt')
        if os.path.exists(link):
            with open(link) as f:
                line = f.read()
            check(f'{name}: not linked with libcascade.a', not re.search(r'\blibcascade\.a\b', line),
                  line.strip()[-300:])


if __name__ == '__main__':
    harness.run_main('cascade-tool-deps-', body, server=False, sanitizers=False)
