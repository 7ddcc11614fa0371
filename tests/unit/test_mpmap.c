/* core/mpmap: the first or the last of equal str keys, exact bytes (no case folding, no prefix),
 * bin and integer keys never matching, and NULL for a value that is not a map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "core/mpmap.h"

/* {"a": 1, "code": 2, bin "x": 3, 7: 4, "code": 5, "Code": 6, str8 "x": 8} unpacked into *u. */
static const msgpack_object *sample(msgpack_unpacked *u)
{
    static const unsigned char b[] = {0x87, 0xa1, 'a',  0x01, 0xa4, 'c',  'o',  'd',
                                      'e',  0x02, 0xc4, 0x01, 'x',  0x03, 0x07, 0x04,
                                      0xa4, 'c',  'o',  'd',  'e',  0x05, 0xa4, 'C',
                                      'o',  'd',  'e',  0x06, 0xd9, 0x01, 'x',  0x08};
    size_t off = 0;
    msgpack_unpacked_init(u);
    assert_int_equal(msgpack_unpack_next(u, (const char *)b, sizeof(b), &off),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, sizeof(b));
    return &u->data;
}

static void test_first_and_last(void **state)
{
    (void)state;
    msgpack_unpacked u;
    const msgpack_object *m = sample(&u);
    assert_int_equal(mp_map_get(m, "a")->via.u64, 1);
    assert_int_equal(mp_map_get_last(m, "a")->via.u64, 1);
    assert_int_equal(mp_map_get(m, "code")->via.u64, 2);
    assert_int_equal(mp_map_get_last(m, "code")->via.u64, 5);
    assert_int_equal(mp_map_get(m, "Code")->via.u64, 6);
    assert_int_equal(mp_map_find(&m->via.map, "code")->via.u64, 2);
    assert_null(mp_map_find(&m->via.map, "cod"));
    assert_int_equal(mp_map_get_typed(m, "code", MSGPACK_OBJECT_POSITIVE_INTEGER)->via.u64, 2);
    assert_null(mp_map_get_typed(m, "code", MSGPACK_OBJECT_STR));
    msgpack_unpacked_destroy(&u);
}

static void test_no_match(void **state)
{
    (void)state;
    msgpack_unpacked u;
    const msgpack_object *m = sample(&u);
    assert_null(mp_map_get(m, "cod"));
    assert_null(mp_map_get(m, "codes"));
    assert_null(mp_map_get(m, "CODE"));
    assert_null(mp_map_get(m, ""));
    /* the bin key "x" does not count; the str8 one (a long encoding of a short str) does */
    assert_int_equal(mp_map_get(m, "x")->via.u64, 8);
    assert_int_equal(mp_map_get_last(m, "x")->via.u64, 8);
    assert_null(mp_map_get(&m->via.map.ptr[0].val, "a")); /* an integer, not a map */
    msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    assert_null(mp_map_get(&nil, "a"));
    assert_null(mp_map_get_last(&nil, "a"));
    assert_null(mp_map_get_typed(&nil, "a", MSGPACK_OBJECT_NIL));
    msgpack_unpacked_destroy(&u);
}

/* {"token": 1, "token": "t1", "token": "t2"}: the first of the wanted type, past the others. */
static void test_typed_skips(void **state)
{
    (void)state;
    static const unsigned char b[] = {0x83, 0xa5, 't', 'o', 'k', 'e',  'n', 0x01, 0xa5,
                                      't',  'o',  'k', 'e', 'n', 0xa2, 't', '1',  0xa5,
                                      't',  'o',  'k', 'e', 'n', 0xa2, 't', '2'};
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, (const char *)b, sizeof(b), &off),
                     MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *t = mp_map_get_typed(&u.data, "token", MSGPACK_OBJECT_STR);
    assert_non_null(t);
    assert_memory_equal(t->via.str.ptr, "t1", 2);
    assert_int_equal(mp_map_get(&u.data, "token")->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    msgpack_unpacked_destroy(&u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_and_last),
        cmocka_unit_test(test_no_match),
        cmocka_unit_test(test_typed_skips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
