#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_ingest_proto (tests/fuzz/corpus/ingest_proto/): small msgpack
streams, valid and not, that reach each path of the ingest decoder. Encodes by hand (no msgpack
module needed), so that invalid and unusual forms can be written too. Run from anywhere:
    python3 tests/fuzz/make_corpus.py
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'ingest_proto')


def pack(v):
    """The shortest msgpack form of v (dict, list, str, bytes, int, float, bool, None)."""
    if v is None:
        return b'\xc0'
    if v is True or v is False:
        return b'\xc3' if v else b'\xc2'
    if isinstance(v, int):
        if 0 <= v <= 0x7f or -32 <= v < 0:
            return struct.pack('b' if v < 0 else 'B', v)
        if v >= 0:
            for code, fmt in ((0xcc, '>B'), (0xcd, '>H'), (0xce, '>I'), (0xcf, '>Q')):
                if v < 1 << (8 * struct.calcsize(fmt)):
                    return bytes([code]) + struct.pack(fmt, v)
        for code, fmt in ((0xd0, '>b'), (0xd1, '>h'), (0xd2, '>i'), (0xd3, '>q')):
            if v >= -(1 << (8 * struct.calcsize(fmt) - 1)):
                return bytes([code]) + struct.pack(fmt, v)
    if isinstance(v, float):
        return b'\xcb' + struct.pack('>d', v)
    if isinstance(v, str):
        b = v.encode()
        return sized(len(b), 0xa0, 31, (0xd9, 0xda, 0xdb)) + b
    if isinstance(v, bytes):
        return sized(len(v), None, -1, (0xc4, 0xc5, 0xc6)) + v
    if isinstance(v, list):
        return sized(len(v), 0x90, 15, (None, 0xdc, 0xdd)) + b''.join(pack(x) for x in v)
    if isinstance(v, dict):
        body = b''.join(pack(k) + pack(x) for k, x in v.items())
        return sized(len(v), 0x80, 15, (None, 0xde, 0xdf)) + body
    raise TypeError(v)


def sized(n, fix, fixmax, codes):
    if n <= fixmax:
        return bytes([fix | n])
    for code, fmt in zip(codes, ('>B', '>H', '>I')):
        if code is not None and n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([code]) + struct.pack(fmt, n)
    raise ValueError(n)


def event(i, **extra):
    e = {'post': 'p%d' % i, 'actor': 'a%d' % (i % 3), 'ts': 1700000000000 + i}
    e.update(extra)
    return e


SEEDS = {
    'single': pack(event(1)),
    'array': pack([event(i) for i in range(4)]),
    'several': b''.join(pack(event(i, parent='p%d' % (i - 1))) for i in range(1, 6)),
    'types': pack({'post': 123, 'actor': 'acct', 'ts': -5, 'parent': None, 'kind': 1.5,
                   'actor_type': True, 'content': b'bin', 'label': [1, {'x': None}]}),
    'ext': b'\x82\xa4post\xa1e\xa5label\xd6\x01abcd' + b'\x81\xa4post\xc7\x02\x05zz',
    'unknown_keys': pack({'zzz': {'a': [1, 2]}, 'post': 'x', 'actor': 'y', 'ts': 7, 9: 'post',
                          'post ': 'no'}),
    'dup_keys': b'\x83\xa4post\xa1a\xa2ts\x01\xa4post\xa1b',
    'non_maps': pack(42) + pack('str') + pack([1, event(2), 'x', [], [{}]]) + pack(None),
    'empty': pack([]) + pack({}) + pack([[]]),
    'long_strings': pack(event(3, content='u' * 300, label='l' * 40)),
    'wide_headers': b'\xdc\x00\x01' + pack(event(4)) + b'\xde\x00\x01\xa4post\xa1q'
                    + b'\xdd\x00\x00\x00\x01' + pack(event(5)),
    'truncated': pack([event(i) for i in range(3)])[:-7],
    'c1_mid': pack(event(1)) + pack([event(2)]) + b'\x82\xa4post\xc1' + pack(event(3)),
    'c1_in_payload': b'\x81\xa4post\xa1\xc1',
    'huge_array': pack(event(1)) + b'\xdd\xff\xff\xff\xff',
    'huge_map': b'\x91\xdf\xff\xff\xff\xff',
    'huge_str': b'\x81\xa4post\xdb\xff\xff\xff\xff',
    'huge_bin': b'\x81\xa4post\xc6\x7f\xff\xff\xff',
    'deep': b'\x91' * 9 + b'\x90',
    'deep_ok': b'\x91' * 7 + b'\x81\xa1k\xc0',
    'map_65': b'\xde\x00\x41' + b''.join(pack('k%d' % i) + b'\xc0' for i in range(65)),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name + '.msgpack'), 'wb') as f:
            f.write(data)
    print('%d seeds in %s' % (len(SEEDS), OUT))


if __name__ == '__main__':
    main()
