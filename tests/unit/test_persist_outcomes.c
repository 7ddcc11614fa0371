/* Snapshots written before a rejection reason was added (bad_ts) still load: their SEC_ENGINE
 * section holds 10 outcome counts (ok, dup, seven reasons, nomem) where this build writes
 * EVENT_OUTCOME_COUNT. A file saved by this build is rewritten into that older layout here (the
 * section shortened by the one count, its CRC redone) and must load with every count in place
 * and nomem where it belongs; a count this build cannot map is refused with a reason. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "cascade/engine.h"
#include "core/crc32c.h"
#include "engine/persist.h"

#define HDR_SIZE 64 /* persist.c's layout: a 64-byte header, then {tag, crc, len u64} sections */
#define SEC_HDR  16
#define OLD_COUNT 10 /* outcomes before bad_ts: EVENT_REJ_CYCLE + 2 (its nomem) */

static uint64_t load_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* A saved engine with a known count for every outcome. */
static uint8_t *saved(size_t *len)
{
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    for (int o = 0; o < EVENT_OUTCOME_COUNT; o++)
        for (int k = 0; k < o + 1; k++)
            if (o != EVENT_OK && o != EVENT_DUP)
                engine_note_outcome(e, o);
    int fd = memfd_create("snap", 0);
    assert_true(fd >= 0);
    uint64_t bytes;
    assert_int_equal(engine_save(e, fd, "u", 1, &bytes), 0);
    uint8_t *buf = malloc(bytes);
    assert_non_null(buf);
    assert_int_equal(pread(fd, buf, bytes, 0), (ssize_t)bytes);
    close(fd);
    engine_free(e);
    *len = bytes;
    return buf;
}

/* Rewrites the outcome counts of buf's engine section (the second) as a build that knew `count`
 * outcomes would have saved them: the first count - 1, then nomem. Returns the new length. */
static size_t as_older(uint8_t *buf, size_t len, uint32_t count)
{
    uint8_t *user = buf + HDR_SIZE;
    uint8_t *sec = user + SEC_HDR + ((load_u64(user + 8) + 7) & ~7ull);
    uint8_t *p = sec + SEC_HDR;
    uint64_t slen = load_u64(sec + 8);
    uint32_t n;
    memcpy(&n, p, 4);
    assert_int_equal(n, EVENT_OUTCOME_COUNT);
    uint64_t nomem = load_u64(p + 8 + 8 * EVENT_ERR_NOMEM);
    size_t drop = 8 * (size_t)(EVENT_OUTCOME_COUNT - count);
    memcpy(p, &count, 4);
    memcpy(p + 8 + 8 * (count - 1), &nomem, 8);
    /* the rest of the file moves up by drop bytes, a multiple of 8: the padding stays right */
    uint8_t *rest = p + 8 + 8 * EVENT_OUTCOME_COUNT;
    memmove(rest - drop, rest, (size_t)(buf + len - rest));
    slen -= drop;
    memcpy(sec + 8, &slen, 8);
    uint32_t crc = crc32c(0, p, slen);
    memcpy(sec + 4, &crc, 4);
    return len - drop;
}

static void test_older_outcome_set_loads(void **state)
{
    size_t len;
    uint8_t *buf = saved(&len);
    len = as_older(buf, len, OLD_COUNT);
    struct engine *e = NULL;
    char user[ENGINE_PERSIST_USER_MAX], err[256] = "";
    uint32_t ulen;
    int rc = engine_load_mem(buf, len, &e, user, &ulen, err, sizeof(err));
    if (rc)
        fail_msg("an older snapshot was refused: %s", err);
    struct engine_stats st;
    engine_get_stats(e, &st);
    for (int o = EVENT_REJ_FIRST; o <= EVENT_REJ_CYCLE; o++)
        assert_int_equal(st.outcomes[o], o + 1);
    assert_int_equal(st.outcomes[EVENT_REJ_BAD_TS], 0); /* unknown then */
    assert_int_equal(st.outcomes[EVENT_ERR_NOMEM], EVENT_ERR_NOMEM + 1);
    engine_free(e);
    free(buf);
}

static void test_current_outcome_set_loads(void **state)
{
    size_t len;
    uint8_t *buf = saved(&len);
    struct engine *e = NULL;
    char user[ENGINE_PERSIST_USER_MAX], err[256] = "";
    uint32_t ulen;
    int rc = engine_load_mem(buf, len, &e, user, &ulen, err, sizeof(err));
    if (rc)
        fail_msg("load failed: %s", err);
    struct engine_stats st;
    engine_get_stats(e, &st);
    for (int o = EVENT_REJ_FIRST; o < EVENT_OUTCOME_COUNT; o++)
        assert_int_equal(st.outcomes[o], o + 1);
    engine_free(e);
    free(buf);
}

/* Fewer than the oldest set this build maps: refused, saying so. */
static void test_unknown_outcome_set_refused(void **state)
{
    size_t len;
    uint8_t *buf = saved(&len);
    len = as_older(buf, len, OLD_COUNT - 1);
    struct engine *e = NULL;
    char user[ENGINE_PERSIST_USER_MAX], err[256] = "";
    uint32_t ulen;
    assert_int_equal(engine_load_mem(buf, len, &e, user, &ulen, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "event outcomes"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_older_outcome_set_loads),
        cmocka_unit_test(test_current_outcome_set_loads),
        cmocka_unit_test(test_unknown_outcome_set_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
