/* Engine persistence (src/engine/persist.c): a saved and loaded engine answers every query as
 * the original does, before and after more events; and a truncated, corrupt or doctored file is
 * refused with a reason, never a crash (run under the ASan build too). */
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
#include "engine/persist.h"
#include "store/crc32c.h"

#define NPOSTS    3000
#define NACTORS   60
#define NCONTENTS 40

/* ---------------------------------------------------------------- random workload */

static uint64_t rng = 88172645463325252ull;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static void str_field(struct event_field *f, const char *s)
{
    f->type = EVF_STR;
    f->str = s;
    f->len = (uint32_t)strlen(s);
}

/* Event number i of a workload: posts in a shuffled-ish order so that parents often arrive
 * late (joins), some duplicates, labels, contents, pages, and ts going back and forth. */
static void apply_random(struct engine *e, uint32_t i, uint32_t span)
{
    char post[32], parent[32], actor[32], label[32], content[32];
    uint32_t p = rnd(span);
    snprintf(post, sizeof(post), "p%u", p);
    snprintf(actor, sizeof(actor), "a%u", rnd(NACTORS));
    struct event_raw raw;
    memset(&raw, 0, sizeof(raw));
    str_field(&raw.post, post);
    str_field(&raw.actor, actor);
    if (rnd(5)) { /* a reshare of a nearby post, earlier or later */
        uint32_t q = p > 40 ? p - 1 - rnd(40) : rnd(span);
        if (rnd(6) == 0)
            q = rnd(span);
        if (q != p) {
            snprintf(parent, sizeof(parent), "p%u", q);
            str_field(&raw.parent, parent);
        }
    }
    raw.ts.type = EVF_UINT;
    raw.ts.u = 1000000000000ull + (uint64_t)i * 700 + rnd(20000);
    if (rnd(8) == 0) {
        snprintf(label, sizeof(label), "L%u", rnd(4));
        str_field(&raw.label, label);
    }
    if (rnd(4) == 0) {
        snprintf(content, sizeof(content), "https://c/%u", rnd(NCONTENTS));
        str_field(&raw.content, content);
    }
    if (rnd(10) == 0)
        str_field(&raw.actor_type, rnd(2) ? "page" : "account");
    engine_apply_raw(e, &raw);
}

static struct engine *random_engine(uint32_t n)
{
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    for (uint32_t i = 0; i < n; i++)
        apply_random(e, i, NPOSTS);
    return e;
}

/* ---------------------------------------------------------------- what queries see */

struct text {
    char *s;
    size_t len, cap;
};

static void tprintf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tprintf(struct text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = t->cap * 2 + (size_t)n + 4096;
        t->s = realloc(t->s, t->cap);
        assert_non_null(t->s);
    }
}

static void put_cascade(struct text *t, const struct engine_cascade *c)
{
    tprintf(t, "c %u %.*s %.*s %.*s %.*s %u %u %u %u %u %.17g %llu %lld %lld %lld %llu\n", c->id,
            (int)c->root_len, c->root, (int)c->root_actor_len, c->root_actor ? c->root_actor : "",
            (int)c->content_len, c->content ? c->content : "", (int)c->label_len,
            c->label ? c->label : "", c->size, c->missing, c->depth, c->max_breadth,
            c->unique_actors, c->structural_virality, (unsigned long long)c->wiener,
            (long long)c->first_ts, (long long)c->last_ts, (long long)c->duration_ms,
            (unsigned long long)c->growth);
}

static void put_actor(struct text *t, const struct engine_actor *a)
{
    tprintf(t, "a %u %.*s %u %u %u %u %u %u %u %lld %lld %u\n", a->id, (int)a->name_len, a->name,
            a->posts, a->roots, a->shares, a->reshares_received, a->amplifiers, a->reach,
            a->cascades, (long long)a->first_ts, (long long)a->last_ts, a->actor_type);
}

static int put_node(void *ctx, const struct engine_node *n)
{
    tprintf(ctx, " %.*s/%.*s/%u", (int)n->post_len, n->post, (int)n->actor_len,
            n->actor ? n->actor : "", n->depth);
    return 0;
}

/* Everything the read API says about e, as text. */
static char *describe(struct engine *e)
{
    struct text t = {0};
    char id[32];
    struct engine_stats st;
    engine_get_stats(e, &st);
    for (int i = 0; i < EVENT_OUTCOME_COUNT; i++)
        tprintf(&t, "o%d %llu\n", i, (unsigned long long)st.outcomes[i]);
    tprintf(&t, "stats %llu %llu %llu %llu %llu %llu %llu %lld\n", (unsigned long long)st.posts,
            (unsigned long long)st.placeholders, (unsigned long long)st.cascades,
            (unsigned long long)st.actors, (unsigned long long)st.edges,
            (unsigned long long)st.contents, (unsigned long long)st.labels,
            (long long)st.newest_ts);
    for (uint32_t i = 0; i < NPOSTS + 10; i++) {
        snprintf(id, sizeof(id), "p%u", i);
        struct engine_cascade c;
        if (engine_cascade(e, id, (uint32_t)strlen(id), &c) == 0)
            put_cascade(&t, &c);
        if (i % 97 == 0) {
            tprintf(&t, "tree %s", id);
            engine_tree(e, id, (uint32_t)strlen(id), 0, put_node, &t);
            tprintf(&t, "\npath");
            engine_path(e, id, (uint32_t)strlen(id), put_node, &t);
            tprintf(&t, "\n");
        }
    }
    for (uint32_t i = 0; i < NACTORS; i++) {
        snprintf(id, sizeof(id), "a%u", i);
        struct engine_actor a;
        if (engine_actor(e, id, (uint32_t)strlen(id), &a) == 0)
            put_actor(&t, &a);
    }
    static struct engine_cascade cs[200];
    static struct engine_actor as[200];
    struct engine_cascade_filter f = {.label = "L1", .label_len = 2, .min_size = 2};
    for (int m = 0; m < ENGINE_CASCADE_METRICS; m++) {
        int n = engine_top_cascades(e, m, NULL, cs, 200);
        tprintf(&t, "top %d: %d\n", m, n);
        for (int i = 0; i < n; i++)
            put_cascade(&t, &cs[i]);
        n = engine_top_cascades(e, m, &f, cs, 20);
        for (int i = 0; i < n; i++)
            put_cascade(&t, &cs[i]);
    }
    for (int m = 0; m < ENGINE_ACTOR_METRICS; m++)
        for (int type = 0; type <= EVENT_ACTOR_PAGE; type++) {
            int n = engine_top_actors(e, m, type, as, 50);
            tprintf(&t, "topa %d %d: %d\n", m, type, n);
            for (int i = 0; i < n; i++)
                put_actor(&t, &as[i]);
        }
    const int64_t windows[] = {1, 1000, 60000, 3600000, ENGINE_GROWTH_HORIZON_MS};
    for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
        int n = engine_top_growth(e, windows[w], NULL, cs, 100);
        tprintf(&t, "growth %lld: %d\n", (long long)windows[w], n);
        for (int i = 0; i < n; i++)
            put_cascade(&t, &cs[i]);
    }
    for (uint32_t i = 0; i < NCONTENTS; i++) {
        snprintf(id, sizeof(id), "https://c/%u", i);
        struct engine_content c;
        int n = engine_content(e, id, (uint32_t)strlen(id), &c, cs, 10);
        tprintf(&t, "content %s %d", id, n);
        if (n >= 0)
            tprintf(&t, " %llu %u %u %lld %lld\n", (unsigned long long)c.posts, c.cascades,
                    c.unique_actors, (long long)c.first_ts, (long long)c.last_ts);
        for (int k = 0; k < n; k++)
            put_cascade(&t, &cs[k]);
    }
    struct engine_label_summary *ls;
    uint32_t nl;
    assert_int_equal(engine_labels(e, &ls, &nl), 0);
    for (uint32_t i = 0; i < nl; i++) {
        tprintf(&t, "label %.*s %u %.17g", (int)ls[i].label_len, ls[i].label ? ls[i].label : "",
                ls[i].cascades, ls[i].duration_median);
        for (int m = 0; m < ENGINE_LABEL_METRICS; m++)
            tprintf(&t, " %.17g %.17g %.17g %.17g", ls[i].dist[m].mean, ls[i].dist[m].median,
                    ls[i].dist[m].p90, ls[i].dist[m].max);
        tprintf(&t, "\n");
    }
    free(ls);
    return t.s;
}

/* ---------------------------------------------------------------- saving and loading */

/* e saved into memory (a memfd); *len gets the size. */
static uint8_t *save_mem(const struct engine *e, size_t *len)
{
    int fd = memfd_create("snap", 0);
    assert_true(fd >= 0);
    uint64_t bytes;
    const char user[] = "position 7 1234";
    assert_int_equal(engine_save(e, fd, user, sizeof(user), &bytes), 0);
    assert_int_equal(lseek(fd, 0, SEEK_END), (off_t)bytes);
    uint8_t *buf = malloc(bytes);
    assert_non_null(buf);
    assert_int_equal(pread(fd, buf, bytes, 0), (ssize_t)bytes);
    close(fd);
    *len = bytes;
    return buf;
}

static struct engine *load_ok(const uint8_t *buf, size_t len)
{
    struct engine *e;
    char err[256] = "", user[ENGINE_PERSIST_USER_MAX];
    uint32_t ulen = 0;
    int rc = engine_load_mem(buf, len, &e, user, &ulen, err, sizeof(err));
    if (rc)
        fail_msg("load failed: %s", err);
    assert_int_equal(ulen, sizeof("position 7 1234"));
    assert_string_equal(user, "position 7 1234");
    return e;
}

static void assert_same(struct engine *a, struct engine *b)
{
    char *x = describe(a), *y = describe(b);
    if (strcmp(x, y) != 0) {
        size_t i = 0;
        while (x[i] == y[i])
            i++;
        size_t from = i > 200 ? i - 200 : 0;
        fail_msg("differ at %zu:\n--- original\n%.400s\n--- loaded\n%.400s", i, x + from, y + from);
    }
    free(x);
    free(y);
}

static void round_trip(uint32_t events)
{
    struct engine *e = random_engine(events);
    size_t len;
    uint8_t *buf = save_mem(e, &len);
    struct engine *l = load_ok(buf, len);
    assert_same(e, l);
    /* the same further events on both: the loaded engine goes on as the original does */
    uint64_t saved = rng;
    for (uint32_t i = events; i < events + events / 2 + 100; i++)
        apply_random(e, i, NPOSTS + 500);
    rng = saved;
    for (uint32_t i = events; i < events + events / 2 + 100; i++)
        apply_random(l, i, NPOSTS + 500);
    assert_same(e, l);
    /* and a second generation */
    size_t len2;
    uint8_t *buf2 = save_mem(l, &len2);
    struct engine *l2 = load_ok(buf2, len2);
    assert_same(e, l2);
    engine_free(l2);
    free(buf2);
    engine_free(l);
    engine_free(e);
    free(buf);
}

static void test_round_trip_empty(void **state)
{
    (void)state;
    round_trip(0);
}

static void test_round_trip_small(void **state)
{
    (void)state;
    round_trip(50);
}

static void test_round_trip(void **state)
{
    (void)state;
    round_trip(6000);
}

/* ---------------------------------------------------------------- damaged files */

static void load_fails(const uint8_t *buf, size_t len, const char *what)
{
    struct engine *e = NULL;
    char err[256] = "", user[ENGINE_PERSIST_USER_MAX];
    uint32_t ulen;
    int rc = engine_load_mem(buf, len, &e, user, &ulen, err, sizeof(err));
    if (rc == 0)
        fail_msg("%s: loaded", what);
    assert_int_equal(rc, -EINVAL);
    assert_null(e);
    assert_true(err[0] != 0);
}

/* Offsets where sections start (and the file ends). */
static size_t section_starts(const uint8_t *buf, size_t len, size_t *at, size_t max)
{
    size_t n = 0, pos = 64;
    while (pos + 16 <= len && n < max) {
        at[n++] = pos;
        uint64_t l;
        memcpy(&l, buf + pos + 8, 8);
        pos += 16 + l + ((8 - (l & 7)) & 7);
    }
    at[n++] = len;
    return n;
}

static void test_truncated(void **state)
{
    (void)state;
    struct engine *e = random_engine(2000);
    size_t len, at[64];
    uint8_t *buf = save_mem(e, &len);
    size_t n = section_starts(buf, len, at, 63);
    assert_int_equal(n, 15); /* 14 sections and the end */
    for (size_t i = 0; i < n; i++) {
        for (size_t d = 0; d < 3; d++) { /* at the boundary, just after, just before */
            size_t cut = at[i] + (d == 1 ? 8 : 0) - (d == 2 ? 1 : 0);
            if (cut >= len)
                continue;
            uint8_t *copy = malloc(cut + 1);
            memcpy(copy, buf, cut);
            load_fails(copy, cut, "truncated at a section boundary");
            free(copy);
        }
    }
    for (int k = 0; k < 200; k++) {
        size_t cut = rnd((uint32_t)len);
        uint8_t *copy = malloc(cut + 1);
        memcpy(copy, buf, cut);
        load_fails(copy, cut, "truncated at random");
        free(copy);
    }
    load_fails(buf, 0, "empty");
    free(buf);
    engine_free(e);
}

static void test_flipped(void **state)
{
    (void)state;
    struct engine *e = random_engine(2000);
    size_t len;
    uint8_t *buf = save_mem(e, &len);
    uint8_t *copy = malloc(len);
    for (int k = 0; k < 300; k++) {
        memcpy(copy, buf, len);
        size_t at = rnd((uint32_t)len);
        copy[at] ^= (uint8_t)(1u << rnd(8));
        struct engine *l = NULL;
        char err[256];
        uint8_t user[ENGINE_PERSIST_USER_MAX];
        uint32_t ulen;
        int rc = engine_load_mem(copy, len, &l, user, &ulen, err, sizeof(err));
        /* a flip in the zero padding after a section changes nothing a load reads */
        if (rc == 0) {
            engine_free(l);
            continue;
        }
        assert_int_equal(rc, -EINVAL);
    }
    free(copy);
    free(buf);
    engine_free(e);
}

/* Hostile files: a section's bytes changed and its CRC made to match, so that only the checks
 * of counts, offsets and trees stand between the file and the engine. Whatever loads must then
 * answer every query without a fault (ASan watches). */
static void test_doctored(void **state)
{
    (void)state;
    struct engine *e = random_engine(1500);
    size_t len, at[64];
    uint8_t *buf = save_mem(e, &len);
    size_t n = section_starts(buf, len, at, 63);
    uint8_t *copy = malloc(len);
    int refused = 0, loaded = 0;
    for (int k = 0; k < 3000; k++) {
        memcpy(copy, buf, len);
        size_t s = 1 + rnd((uint32_t)(n - 2)); /* a section but USER (opaque) and END */
        uint64_t l;
        memcpy(&l, copy + at[s] + 8, 8);
        if (l == 0)
            continue;
        uint8_t *p = copy + at[s] + 16;
        int changes = 1 + (int)rnd(3);
        for (int c = 0; c < changes; c++) {
            /* mostly near the start (counts, sizes), else anywhere */
            size_t off = rnd(3) ? rnd(l < 64 ? (uint32_t)l : 64) : rnd((uint32_t)l);
            switch (rnd(4)) {
            case 0:
                p[off] ^= (uint8_t)(1u << rnd(8));
                break;
            case 1:
                p[off] = 0xff;
                break;
            case 2:
                p[off] = 0;
                break;
            default:
                p[off] += 1;
            }
        }
        uint32_t crc = crc32c(0, p, l);
        memcpy(copy + at[s] + 4, &crc, 4);
        struct engine *x = NULL;
        char err[256];
        uint8_t user[ENGINE_PERSIST_USER_MAX];
        uint32_t ulen;
        int rc = engine_load_mem(copy, len, &x, user, &ulen, err, sizeof(err));
        if (rc) {
            assert_int_equal(rc, -EINVAL);
            refused++;
            continue;
        }
        loaded++;
        if (loaded % 10 == 0) { /* a change the checks cannot see (a metric's value): harmless */
            free(describe(x));
            apply_random(x, 5000, NPOSTS);
        }
        engine_free(x);
    }
    print_message("doctored files: %d refused, %d loaded\n", refused, loaded);
    assert_true(refused > 1000);
    free(copy);
    free(buf);
    engine_free(e);
}

static void test_header(void **state)
{
    (void)state;
    struct engine *e = random_engine(100);
    size_t len;
    uint8_t *buf = save_mem(e, &len);
    uint8_t *copy = malloc(len);
    for (size_t i = 0; i < 64; i++) {
        memcpy(copy, buf, len);
        copy[i] ^= 0x10;
        load_fails(copy, len, "header byte changed");
    }
    memcpy(copy, buf, len);
    copy[8] = ENGINE_PERSIST_VERSION + 1; /* a newer version, CRC fixed: refused by version */
    uint32_t crc = crc32c(0, copy, 60);
    memcpy(copy + 60, &crc, 4);
    struct engine *x;
    char err[256];
    uint8_t user[ENGINE_PERSIST_USER_MAX];
    uint32_t ulen;
    assert_int_equal(engine_load_mem(copy, len, &x, user, &ulen, err, sizeof(err)),
                     -EPROTONOSUPPORT);
    assert_non_null(strstr(err, "version"));
    free(copy);
    free(buf);
    engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_empty), cmocka_unit_test(test_round_trip_small),
        cmocka_unit_test(test_round_trip),       cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_flipped),          cmocka_unit_test(test_doctored),
        cmocka_unit_test(test_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
