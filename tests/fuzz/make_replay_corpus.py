#!/usr/bin/env python3
"""Writes the seed corpora of fuzz_replay_ndjson, fuzz_replay_csv and fuzz_replay_msgpack
(tests/fuzz/corpus/replay_<format>/): small dump files, valid and not, that reach each path of
cascade-replay's readers, some gzip- or zstd-compressed; plus the regression seeds of bugs the
fuzzers found (see the names; the fuzzers' own crash inputs are kept beside them as
regress_*, which this script leaves alone). msgpack is encoded by make_corpus.py's hand encoder, so that
unusual forms can be written too. Run from anywhere:
    python3 tests/fuzz/make_replay_corpus.py
"""
import gzip
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
from make_corpus import pack  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# RP_RECORD_MAX as tests/fuzz/CMakeLists.txt builds the readers (RP_CHUNK is 1024 there)
RECORD_MAX = 8192


def gz(data, members=1):
    """gzip, in `members` members of about equal size (as `cat a.gz b.gz` makes)."""
    step = -(-len(data) // members) or 1
    return b''.join(gzip.compress(data[i:i + step], 9, mtime=0) for i in range(0, len(data), step))


def zst(data):
    if not shutil.which('zstd'):
        return None
    return subprocess.run(['zstd', '-19', '-q', '-c'], input=data, stdout=subprocess.PIPE,
                          check=True).stdout


def bad_crc(data):
    """gzip whose CRC is wrong: inflate reports it with the last bytes it inflated."""
    z = bytearray(gz(data))
    z[-8] ^= 0xff
    return bytes(z)


NDJSON = {
    'events': b'{"post": "p1", "actor": "alice", "ts": 1700000000000, "content": "https://e/x",'
              b' "label": "false", "actor_type": "account"}\n'
              b'{"post":"p2","actor":"bob","ts":1700000060000,"parent":"p1","kind":"share"}\n'
              b'{"post": 3, "actor": 4, "ts": -5, "parent": 2, "kind": "quote"}\n',
    'types': b'{"post": 1.5, "actor": true, "ts": "1", "parent": null, "kind": [1],'
             b' "actor_type": {"a": 1}, "content": false, "label": -0}\n',
    'escapes': '{"post": "p\\u00e9\\n", "actor": "\u00e9\u4e2d", "ts": 1, "label": "\\u0000x"}\n'
               .encode(),
    'numbers': b'{"post":"a","actor":"b","ts":123456789012345678}\n'
               b'{"post":"a","actor":"b","ts":1234567890123456789}\n'
               b'{"post":"a","actor":"b","ts":18446744073709551616}\n'
               b'{"post":"a","actor":"b","ts":1e3}\n{"post":"a","actor":"b","ts":-0}\n'
               b'{"post":"a","actor":"b","ts":01}\n',
    'dup_keys': b'{"post": "a", "post": "b", "actor": "c", "ts": 1, "zzz": [1, {"q": 2}]}\n',
    'bad_lines': b'{"post": "a", "actor": "b", "ts": 1\n[1, 2]\n"str"\n42\n{}\n'
                 b'{"post": "a",}\n{"post" "a"}\n{"post": tru}\n\xff\xfe\n',
    'blank_crlf': b'\r\n   \n\t\n{"post":"a","actor":"b","ts":1}\r\n\n{"post":"c","actor":"d",'
                  b'"ts":2}',
    'bom': b'\xef\xbb\xbf{"post":"a","actor":"b","ts":1}\n',
    'long_string': b'{"post": "' + b'p' * 5000 + b'", "actor": "a", "content": "' + b'c' * 3000
                   + b'", "ts": 1}\n',
    'gzip': gz(b'{"post":"a","actor":"b","ts":1}\n' * 3, members=2),
    'gzip_bad_crc': bad_crc(b'{"post":"a","actor":"b","ts":1}\n' * 5),
    'gzip_truncated': gz(b'{"post":"a","actor":"b","ts":1}\n' * 20)[:-9],
    # a line over RP_RECORD_MAX whose end arrived in the same fill as the bytes that took it
    # past the limit was parsed (whole file) or refused (piecewise), depending on read sizes
    'regress_long_line': b'{"post": "' + b'p' * (RECORD_MAX + 300) + b'", "actor": "a", "ts": 1}\n'
                         b'{"post":"b","actor":"c","ts":2}\n',
}

CSV = {
    'events': b'post,actor,ts,parent,kind,actor_type,content,label\n'
              b'p1,alice,1700000000000,,,account,https://e/x,false\n'
              b'p2,bob,1700000060000,p1,share,,,\n'
              b'3,4,-5,2,quote,page,,\n',
    'quoted': b'post,actor,ts,content\n"p,1","a ""b""",1,"line1\nline2\r\nline3"\n'
              b'"p2",a,2,""\n',
    'header_case': b'\xef\xbb\xbf POST ,Actor,TS,extra\r\np1,a,1,zzz\r\n\r\np2,b, 2 ,\r\n',
    # -0 was a negative integer 0 (NDJSON's -0 is the integer 0)
    'regress_ts_minus_zero': b'post,actor,ts\na,b,-0\n',
    'ts_forms': b'post,actor,ts\na,b,18446744073709551615\na,b,18446744073709551616\n'
                b'a,b,-9223372036854775808\na,b,-9223372036854775809\na,b,-\na,b,1.5\na,b, \n',
    'bad_rows': b'post,actor,ts\na,b\na,b,1,2\n"a,b,1\na"x,b,1\n',
    'bad_header': b'"post,actor\n',
    'no_known_header': b'x,y,z\n1,2,3\n',
    'many_columns': b','.join([b'post'] + [b'c%d' % i for i in range(1100)]) + b'\na\n',
    'no_newline_at_end': b'post,actor,ts\np,a,1',
    'gzip': gz(b'post,actor,ts\n' + b'p,a,1\n' * 5, members=3),
    'gzip_bad_crc': bad_crc(b'post,actor,ts\n' + b'p,a,1\n' * 5),
    # a record over RP_RECORD_MAX whose end arrived in the same fill as the bytes that took it
    # past the limit was split into the 1 MiB cell buffer: a heap overflow
    'regress_long_record': b'post,actor,ts\n"' + b'x' * (RECORD_MAX + 300) + b'",a,1\np,a,2\n',
}

MSGPACK = {
    'events': pack({'post': 'p1', 'actor': 'alice', 'ts': 1700000000000, 'label': 'false'})
              + pack([{'post': 'p%d' % i, 'actor': 'a', 'ts': i, 'parent': 'p1'}
                      for i in range(2, 5)]),
    'types': pack({'post': 1.5, 'actor': True, 'ts': 'x', 'parent': None, 'kind': [1],
                   'actor_type': {'a': 1}, 'content': b'bin', 'label': -3, 7: 'post'})
             + b'\x81\xa4post\xd6\x05abcd' + b'\x81\xa5label\xc7\x02\x01zz',
    'not_maps': pack(1) + pack('x') + pack([1, 'y', {'post': 'a'}]) + pack(None),
    'nested': pack({'post': 'a', 'z': [[[[[[[[[[]]]]]]]]]]}) + b'\x81\xa1z' + b'\x91' * 40 + b'\x90',
    'empty_arrays': pack([]) + pack([[]]) + pack({}) + b'\xdc\x00\x00\xdd\x00\x00\x00\x01'
                    + pack({'post': 'a'}),
    'truncated_array': pack([{'post': 'a'}, {'post': 'b'}])[:-3],
    'truncated_header': pack({'post': 'a'}) + b'\xdd\x00\x00',
    'c1': pack({'post': 'a'}) + b'\xc1' + pack({'post': 'b'}),
    'huge_claims': pack({'post': 'a'}) + b'\x81\xa4post\xdb\x7f\xff\xff\xff',
    'huge_array_claim': b'\xdd\xff\xff\xff\xff' + pack({'post': 'a'}),
    # over RP_STR_KEEP: the tool cuts it before sending
    'long_string': pack({'post': 'p' * 5000, 'actor': 'a', 'ts': 1}),
    'gzip': gz(pack([{'post': 'p%d' % i, 'actor': 'a', 'ts': i} for i in range(20)]), members=2),
    # an event over RP_RECORD_MAX, skipped a header at a time
    'big_event': pack({'post': 'a', 'content': 'c' * (RECORD_MAX + 10)})
                 + pack({'post': 'b', 'actor': 'c', 'ts': 1}),
}


def write(name, seeds):
    out = os.path.join(HERE, 'corpus', 'replay_' + name)
    os.makedirs(out, exist_ok=True)
    if 'gzip' in seeds:
        z = zst(seeds['gzip'] and gzip.decompress(seeds['gzip']))
        if z:
            seeds['zstd'] = z
    for seed, data in seeds.items():
        with open(os.path.join(out, seed), 'wb') as f:
            f.write(data)
    print('%d seeds in %s' % (len(seeds), out))


def main():
    write('ndjson', NDJSON)
    write('csv', CSV)
    write('msgpack', MSGPACK)


if __name__ == '__main__':
    main()
