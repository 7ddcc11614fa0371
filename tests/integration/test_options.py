#!/usr/bin/env python3
"""README's configuration table against cascaded's option table (src/server/options.c):
`cascaded --help-markdown` prints the table the option table makes, and README.md's
"## Configuration" table must be that table row for row, so that a flag added, removed or given
another default in one place and not the other fails here. Also: every flag of the table is in
--help and the other way round, and each default the README states is a value the parser takes,
on the command line and as a config-file key.

Usage: test_options.py BIN_DIR [TOOLS_DIR [README]] (README: another copy, to see it fail).
Exit status 1 if any check failed."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check  # noqa: E402
import harness  # noqa: E402

HEADER = '| flag | default | meaning |'
UNKNOWN = 'cascaded: unknown option no-such-option (see cascaded --help)'


def readme_table(path):
    """The rows of the table under "## Configuration" (header included), or []."""
    rows, in_section, in_table = [], False, False
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.rstrip('\n')
            if line.startswith('## '):
                if in_table:
                    break
                in_section = line.strip() == '## Configuration'
                continue
            if in_section and line.startswith(HEADER):
                in_table = True
            if in_table:
                if not line.startswith('|'):
                    break
                rows.append(line)
    return rows


def by_flag(rows):
    """{'--name': (the row's cells)} for the data rows (after the header and the rule)."""
    out = {}
    for row in rows[2:]:
        cells = [c.strip() for c in re.split(r'(?<!\\)\|', row)[1:-1]]
        m = re.match(r'`(--[a-z0-9-]+)', cells[0]) if cells else None
        if m:
            out[m.group(1)] = cells
    return out


def run(cascaded, args):
    p = subprocess.run([cascaded] + args, capture_output=True, text=True, timeout=20)
    return p.returncode, p.stdout, p.stderr


def body(t):
    bin_dir = t.bin_dir
    here = os.path.dirname(os.path.abspath(__file__))
    readme = sys.argv[3] if len(sys.argv) > 3 else os.path.join(here, '..', '..', 'README.md')
    cascaded = os.path.join(bin_dir, 'cascaded')

    st, md, err = run(cascaded, ['--help-markdown'])
    check('--help-markdown exits 0 and prints the table', st == 0 and md.startswith(HEADER), f'{st} {err[-300:]!r}')
    want = md.rstrip('\n').split('\n')
    got = readme_table(readme)
    check(f'{readme} has a configuration table', len(got) > 2, f'{len(got)} rows')

    w, g = by_flag(want), by_flag(got)
    missing = [f for f in w if f not in g]
    extra = [f for f in g if f not in w]
    check('every option of the option table is in the README', not missing, f'missing from the README: {missing}')
    check('every flag in the README is in the option table', not extra, f'not options: {extra}')
    bad_default = [f'{f}: README {g[f][1]!r}, option table {w[f][1]!r}' for f in w if f in g and g[f][1] != w[f][1]]
    check('the README states each option\'s default as the option table has it', not bad_default,
          '; '.join(bad_default))
    differ = [f'README {a!r} / table {b!r}' for a, b in zip(got, want) if a != b]
    check('the README table is `cascaded --help-markdown` row for row (edit options.c, then paste it)',
          got == want, (differ[:1] or [f'{len(got)} rows, {len(want)} from the table'])[0])

    # --help documents the same options (and --help, --version besides)
    st, usage, err = run(cascaded, ['--help'])
    in_help = set(re.findall(r'(?<![\w-])(--[a-z][a-z0-9-]*)', usage))
    listed = set(re.findall(r'^  (--[a-z][a-z0-9-]*)', usage, re.M))
    listed |= set(re.findall(r', (--[a-z][a-z0-9-]*) ', usage))
    check('--help lists every option of the table', st == 0 and all(f in in_help for f in w),
          f'not in --help: {[f for f in w if f not in in_help]}')
    check('--help lists only options of the table (and --help, --version)', listed - set(w) == {'--help', '--version'},
          f'{sorted(listed - set(w))}')

    # the defaults the README states are values the parser takes: on the command line and as
    # config-file keys (a trailing unknown flag stops cascaded after the others parsed)
    plain = {f: c[1] for f, c in w.items() if c[1] and ' ' not in c[1] and f != '--allow-history-loss'}
    refused = []
    for f, v in plain.items():
        st, out, err = run(cascaded, [f, v, '--no-such-option=1'])
        if err.strip() != UNKNOWN:
            refused.append(f'{f} {v}: {err.strip()}')
    check(f'each of {len(plain)} stated defaults is taken on the command line', not refused and len(plain) > 20,
          '; '.join(refused[:3]))
    with tempfile.NamedTemporaryFile('w', suffix='.conf', delete=False) as conf:
        for f, v in plain.items():
            if f != '--config':
                conf.write(f'{f[2:]} = {v}\n')
        conf.write('allow-history-loss = true\n')
    st, out, err = run(cascaded, ['--config', conf.name, '--no-such-option=1'])
    os.unlink(conf.name)
    check('the same as config-file keys (and allow-history-loss = true)',
          st == 2 and err.strip() == UNKNOWN, err.strip())

    # --config=FILE is read as --config FILE is (it used to be skipped without a word), and an
    # option's value that happens to be "--config" is a value, not a config file
    with tempfile.NamedTemporaryFile('w', suffix='.conf', delete=False) as conf:
        conf.write('max-connections = 0\n')
    for args in (['--config=' + conf.name], ['--config', conf.name]):
        try:
            st, out, err = run(cascaded, args + ['--data-dir', conf.name + '.data', '--ingest-port', '0',
                                                 '--query-port', '0', '--http-port', '0'])
        except subprocess.TimeoutExpired:
            st, err = None, 'it started, the file unread'
        check(f'{args[0]}: the file is read (its bad value refused, exit 2)',
              st == 2 and conf.name in err and 'max-connections' in err, f'{st} {err.strip()[-300:]!r}')
    st, out, err = run(cascaded, ['--bind', '--config', conf.name])
    check('--bind --config FILE: "--config" is --bind\'s value, FILE a stray argument',
          st == 2 and 'unexpected argument' in err and 'max-connections' not in err, f'{st} {err.strip()!r}')
    os.unlink(conf.name)
    shutil.rmtree(conf.name + '.data', ignore_errors=True)

    # delete-durables is an action: in a config file every start would delete and exit
    with tempfile.NamedTemporaryFile('w', suffix='.conf', delete=False) as conf:
        conf.write('nats = nats://127.0.0.1:1\ndelete-durables = 1a2b\n')
    st, out, err = run(cascaded, ['--config', conf.name])
    os.unlink(conf.name)
    check('delete-durables in a config file: refused (exit 2), the command line only',
          st == 2 and 'command line only' in err and 'delete-durables' in err, f'{st} {err.strip()[-300:]!r}')


def main():
    harness.run_main('cascade-options-', body, server=False, sanitizers=False)


if __name__ == '__main__':
    main()
