/* Engine persistence (src/engine/persist.c): a saved and loaded engine answers every query as
 * the original does, before and after more events; and a truncated, corrupt or doctored file is
 * refused with a reason, never a crash (run under the ASan build too). Engines under retention
 * too: their files have holes (freed post ids, free cascade ids, given-back string chunks), a
 * copy loaded with the same retention goes on exactly as the original, one loaded without it is
 * a valid engine, and a file whose live state names a freed post is refused. */
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
#include "engine/engine_int.h" /* record layouts, to doctor files */
#include "engine/persist.h"

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

/* Post ids: "p<k>", padded with '-' to g_pad bytes (long ids fill string chunks quickly). */
static uint32_t g_pad;

static void post_name(char *buf, size_t size, uint32_t k)
{
    int n = snprintf(buf, size, "p%u", k);
    while ((uint32_t)n < g_pad && (size_t)n + 1 < size)
        buf[n++] = '-';
    buf[n] = '\0';
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
    char post[300], parent[300], actor[32], label[32], content[32];
    uint32_t p = rnd(span);
    post_name(post, sizeof(post), p);
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
            post_name(parent, sizeof(parent), q);
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

/* The same events [from, to) of the workload to both engines. */
static void apply_both(struct engine *a, struct engine *b, uint32_t from, uint32_t to,
                       uint32_t span)
{
    uint64_t saved = rng;
    for (uint32_t i = from; i < to; i++)
        apply_random(a, i, span);
    rng = saved;
    for (uint32_t i = from; i < to; i++)
        apply_random(b, i, span);
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
        /* no pointer arithmetic on the NULL of an empty text (UB, clang's UBSan says) */
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->cap - t->len, fmt, ap);
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

/* When set, describe leaves out what two engines may differ in after the same events once one
 * of them reused freed ids in another order: ids, and so the order of ties in ranked lists,
 * which are then asked in full and compared as multisets (their lines sorted). */
static int g_multiset;

static void put_cascade(struct text *t, const struct engine_cascade *c)
{
    tprintf(t, "c %u %.*s %.*s %.*s %.*s %u %u %u %u %u %.17g %llu %lld %lld %lld %llu\n",
            g_multiset ? 0 : c->id, (int)c->root_len, c->root, (int)c->root_actor_len,
            c->root_actor ? c->root_actor : "", (int)c->content_len, c->content ? c->content : "",
            (int)c->label_len, c->label ? c->label : "", c->size, c->missing, c->depth,
            c->max_breadth, c->unique_actors, c->structural_virality, (unsigned long long)c->wiener,
            (long long)c->first_ts, (long long)c->last_ts, (long long)c->duration_ms,
            (unsigned long long)c->growth);
}

static void put_actor(struct text *t, const struct engine_actor *a)
{
    tprintf(t, "a %u %.*s %u %u %u %u %u %u %u %lld %lld %u\n", g_multiset ? 0 : a->id,
            (int)a->name_len, a->name, a->posts, a->roots, a->shares, a->reshares_received,
            a->amplifiers, a->reach, a->cascades, (long long)a->first_ts, (long long)a->last_ts,
            a->actor_type);
}

static int put_node(void *ctx, const struct engine_node *n)
{
    tprintf(ctx, " %.*s/%.*s/%u", (int)n->post_len, n->post, (int)n->actor_len,
            n->actor ? n->actor : "", n->depth);
    return 0;
}

/* What describe leaves out: the retention (for a copy loaded without it) and growth windows
 * longer than growth_max (0: none left out), which an engine under retention refuses. */
static int g_no_retention_stats;
static int64_t g_growth_max;
static uint32_t g_span = NPOSTS + 500; /* post ids describe asks for */

static int cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends block's text to t, its lines sorted when g_multiset; empties block. */
static void put_block(struct text *t, struct text *b)
{
    if (!b->len)
        return;
    if (g_multiset) {
        size_t n = 0;
        for (size_t i = 0; i < b->len; i++)
            n += b->s[i] == '\n';
        char **lines = calloc(n + 1, sizeof(*lines));
        size_t k = 0;
        for (char *x = b->s; k < n; k++) {
            lines[k] = x;
            x = strchr(x, '\n');
            *x++ = '\0';
        }
        qsort(lines, n, sizeof(*lines), cmp_line);
        for (k = 0; k < n; k++)
            tprintf(t, "%s\n", lines[k]);
        free(lines);
    } else {
        tprintf(t, "%s", b->s);
    }
    b->len = 0;
}

/* Everything the read API says about e, as text. */
static char *describe(struct engine *e)
{
    struct text t = {0};
    char id[300];
    struct engine_stats st;
    engine_get_stats(e, &st);
    for (int i = 0; i < EVENT_OUTCOME_COUNT; i++)
        tprintf(&t, "o%d %llu\n", i, (unsigned long long)st.outcomes[i]);
    tprintf(&t, "stats %llu %llu %llu %llu %llu %llu %llu %lld\n", (unsigned long long)st.posts,
            (unsigned long long)st.placeholders, (unsigned long long)st.cascades,
            (unsigned long long)st.actors, (unsigned long long)st.edges,
            (unsigned long long)st.contents, (unsigned long long)st.labels,
            (long long)st.newest_ts);
    tprintf(&t, "evicted %llu %llu\n", (unsigned long long)st.evicted_cascades,
            (unsigned long long)st.evicted_posts);
    if (!g_no_retention_stats)
        tprintf(&t, "retention %lld %lld\n", (long long)st.retention_ms,
                (long long)st.retained_from);
    for (uint32_t i = 0; i < g_span + 10; i++) {
        post_name(id, sizeof(id), i);
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
    /* limits that cut through ties unless ties may order differently */
    uint32_t lc = g_multiset ? (uint32_t)st.cascades + 1 : 200, lf = g_multiset ? lc : 20;
    uint32_t la = g_multiset ? (uint32_t)st.actors + 1 : 50, lg = g_multiset ? lc : 100;
    uint32_t lk = g_multiset ? lc : 10;
    struct engine_cascade *cs = calloc(lc + 200, sizeof(*cs));
    struct engine_actor *as = calloc(la + 50, sizeof(*as));
    struct text b = {0};
    struct engine_cascade_filter f = {.label = "L1", .label_len = 2, .min_size = 2};
    for (int m = 0; m < ENGINE_CASCADE_METRICS; m++) {
        int n = engine_top_cascades(e, m, NULL, cs, lc);
        tprintf(&t, "top %d: %d\n", m, n);
        for (int i = 0; i < n; i++)
            put_cascade(&b, &cs[i]);
        put_block(&t, &b);
        n = engine_top_cascades(e, m, &f, cs, lf);
        for (int i = 0; i < n; i++)
            put_cascade(&b, &cs[i]);
        put_block(&t, &b);
    }
    for (int m = 0; m < ENGINE_ACTOR_METRICS; m++)
        for (int type = 0; type <= EVENT_ACTOR_PAGE; type++) {
            int n = engine_top_actors(e, m, type, as, la);
            tprintf(&t, "topa %d %d: %d\n", m, type, n);
            for (int i = 0; i < n; i++)
                put_actor(&b, &as[i]);
            put_block(&t, &b);
        }
    const int64_t windows[] = {1, 1000, 60000, 3600000, ENGINE_GROWTH_HORIZON_MS, g_growth_max};
    for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
        if (windows[w] < 1 || (g_growth_max && windows[w] > g_growth_max))
            continue;
        int n = engine_top_growth(e, windows[w], NULL, cs, lg);
        tprintf(&t, "growth %lld: %d\n", (long long)windows[w], n);
        for (int i = 0; i < n; i++)
            put_cascade(&b, &cs[i]);
        put_block(&t, &b);
    }
    for (uint32_t i = 0; i < NCONTENTS; i++) {
        snprintf(id, sizeof(id), "https://c/%u", i);
        struct engine_content c;
        int n = engine_content(e, id, (uint32_t)strlen(id), &c, cs, lk);
        tprintf(&t, "content %s %d", id, n);
        if (n >= 0)
            tprintf(&t, " %llu %u %u %lld %lld\n", (unsigned long long)c.posts, c.cascades,
                    c.unique_actors, (long long)c.first_ts, (long long)c.last_ts);
        for (int k = 0; k < n; k++)
            put_cascade(&b, &cs[k]);
        put_block(&t, &b);
    }
    free(cs);
    free(as);
    free(b.s);
    struct engine_label_summary *ls;
    uint32_t nl;
    assert_int_equal(engine_labels(e, &ls, &nl), 0);
    for (uint32_t i = 0; i < nl; i++) {
        tprintf(&t, "label %.*s %u %.17g", (int)ls[i].label_len, ls[i].label ? ls[i].label : "",
                ls[i].cascades, ls[i].duration_median);
        /* a mean is summed in cascade id order: equal to rounding when ids differ */
        for (int m = 0; m < ENGINE_LABEL_METRICS; m++)
            tprintf(&t, g_multiset ? " %.12g %.17g %.17g %.17g" : " %.17g %.17g %.17g %.17g",
                    ls[i].dist[m].mean, ls[i].dist[m].median, ls[i].dist[m].p90, ls[i].dist[m].max);
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
        size_t from = i;
        while (from > 0 && x[from - 1] != '\n' && i - from < 200)
            from--; /* from the start of the line that differs */
        fail_msg("differ at %zu:\n--- original\n%.400s\n--- loaded\n%.400s", i, x + from, y + from);
    }
    free(x);
    free(y);
}

/* e saved and loaded again (with retention ms, unless 0) answers as ref. */
static void reloads_as(struct engine *e, struct engine *ref, int64_t ms)
{
    size_t len;
    uint8_t *buf = save_mem(e, &len);
    struct engine *l = load_ok(buf, len);
    if (ms)
        assert_int_equal(engine_set_retention(l, ms), 0);
    assert_same(ref, l);
    engine_free(l);
    free(buf);
}

static void round_trip(uint32_t events)
{
    struct engine *e = random_engine(events);
    size_t len;
    uint8_t *buf = save_mem(e, &len);
    struct engine *l = load_ok(buf, len);
    assert_same(e, l);
    /* the same further events on both: the loaded engine goes on as the original does */
    apply_both(e, l, events, events + events / 2 + 100, NPOSTS + 500);
    assert_same(e, l);
    reloads_as(l, e, 0); /* and a second generation */
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

/* ---------------------------------------------------------------- retention */

#define RET_MS 30000

/* retention_round_trip after further events: every answer alike (1), or only the multisets of
 * ranked lists and no ids (0) */
static int g_same_ids;

static struct engine *retention_engine(uint32_t n, int64_t ms, uint32_t span)
{
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    assert_int_equal(engine_set_retention(e, ms), 0);
    for (uint32_t i = 0; i < n; i++)
        apply_random(e, i, span);
    return e;
}

static struct engine *load_with(const uint8_t *buf, size_t len, int64_t ms)
{
    struct engine *e = load_ok(buf, len);
    assert_int_equal(engine_set_retention(e, ms), 0);
    return e;
}

static void reset_describe(void)
{
    g_no_retention_stats = 0;
    g_growth_max = 0;
    g_span = NPOSTS + 500;
    g_pad = 0;
    g_multiset = 0;
    g_same_ids = 0;
}

/* An engine under retention (events 700 ms apart, ids drawn from span, so that many posts are
 * evicted and some sent again) saved and loaded with the same retention: the copy answers as
 * the original, goes on as it does under the same further events (sweeps at the same points,
 * the same ids reused), and so does a copy of the copy. */
static void retention_round_trip(uint32_t events, int64_t ms, uint32_t span)
{
    g_growth_max = ms;
    g_span = span + 500;
    struct engine *e = retention_engine(events, ms, span);
    struct engine_stats st;
    engine_get_stats(e, &st);
    /* the file must have what retention leaves: freed post ids not yet reused, free cascades */
    assert_true(st.evicted_posts > events / 4);
    assert_true(e->post_ids.nfree > 0);
    assert_true(e->ret.nfree_c > 0);
    size_t len;
    uint8_t *buf = save_mem(e, &len);
    struct engine *l = load_with(buf, len, ms);
    assert_same(e, l);
    apply_both(e, l, events, events + events / 2 + 100, span + 500);
    struct engine_stats after;
    engine_get_stats(e, &after);
    assert_true(after.evicted_posts > st.evicted_posts); /* the further events did evict */
    g_multiset = !g_same_ids;
    assert_same(e, l);
    g_multiset = 0;
    reloads_as(l, l, ms);
    engine_free(l);
    engine_free(e);
    free(buf);
    reset_describe();
}

static void test_retention_round_trip(void **state)
{
    (void)state;
    reset_describe(); /* a failed test before may have left its settings */
    retention_round_trip(6000, RET_MS, NPOSTS);
    retention_round_trip(3000, 2500, NPOSTS); /* a short one: almost everything goes */
}

/* The same, holding the copy to every answer of the original after the further events: the ids
 * (engine_cascade.id, engine_actor.id) and therefore the order of ties in ranked lists, and so
 * which of the tied cascades a limited top list holds. A server restarted from a snapshot then
 * answers as one that was not restarted. */
static void test_retention_round_trip_same_ids(void **state)
{
    (void)state;
    reset_describe(); /* a failed test before may have left its settings */
    g_same_ids = 1;
    retention_round_trip(6000, RET_MS, NPOSTS);
    g_same_ids = 0;
}

/* Post ids of 240 bytes, mostly new ones: the string arena's early 1 MiB chunks empty as their
 * posts are evicted and are given back, so the file has chunks marked absent. */
static void test_retention_round_trip_freed_chunks(void **state)
{
    (void)state;
    reset_describe(); /* a failed test before may have left its settings */
    g_pad = 240;
    struct engine *e = retention_engine(12000, 20000, 40000);
    assert_true(e->post_ids.nalloc < e->post_ids.nchunks); /* some chunks given back */
    engine_free(e);
    g_pad = 240;
    retention_round_trip(12000, 20000, 40000);
}

/* A snapshot of an engine under retention loaded without it is a valid engine: it answers as
 * the original at once, takes events from there on without evicting anything, and answers as a
 * copy of it loaded with a retention too long to evict (so that both bookkeepings, with and
 * without edge weights, are held to each other), and its own snapshot loads. */
static void test_retention_loaded_without(void **state)
{
    (void)state;
    reset_describe(); /* a failed test before may have left its settings */
    struct engine *e = retention_engine(6000, RET_MS, NPOSTS);
    size_t len;
    uint8_t *buf = save_mem(e, &len);
    struct engine *plain = load_ok(buf, len);
    struct engine *longer = load_with(buf, len, ENGINE_GROWTH_HORIZON_MS);
    struct engine_stats st, st2;
    engine_get_stats(plain, &st);
    assert_int_equal(st.retention_ms, 0);
    assert_int_equal(st.retained_from, 0);
    g_no_retention_stats = 1;
    g_growth_max = RET_MS;
    assert_same(e, plain);
    g_growth_max = 0;
    apply_both(plain, longer, 6000, 9000, NPOSTS + 500);
    engine_get_stats(plain, &st2);
    assert_int_equal(st2.evicted_posts, st.evicted_posts);
    assert_true(st2.posts > st.posts);
    assert_same(plain, longer);
    reloads_as(plain, plain, 0);
    engine_free(longer);
    engine_free(plain);
    engine_free(e);
    free(buf);
    reset_describe();
}

/* Post p<k> by a1, a root, or a reply to p<parent> when parent != NONE. */
static void send_reply(struct engine *e, uint32_t k, uint32_t parent, const char *content,
                       int64_t ts)
{
    char post[16], to[16];
    snprintf(post, sizeof(post), "p%u", k);
    snprintf(to, sizeof(to), "p%u", parent);
    struct event_raw raw;
    memset(&raw, 0, sizeof(raw));
    str_field(&raw.post, post);
    str_field(&raw.actor, "a1");
    if (parent != NONE)
        str_field(&raw.parent, to);
    if (content)
        str_field(&raw.content, content);
    raw.ts.type = EVF_UINT;
    raw.ts.u = (uint64_t)ts;
    assert_int_equal(engine_apply_raw(e, &raw), EVENT_OK);
}

static void send_post(struct engine *e, uint32_t k, const char *content, int64_t ts)
{
    send_reply(e, k, NONE, content, ts);
}

/* A content list that eviction shrank keeps its array: twenty roots carry one key (a list of
 * 20 in an array of 32), the ten older ones are evicted (ms = 10 s: the first post sweeps to
 * cut 90000 and sets the next sweep at 101000; p20 at 111000 sweeps to cut 101000), leaving 10
 * in 32. Such an engine's snapshot must load. */
static void test_retention_pruned_content_list(void **state)
{
    (void)state;
    reset_describe(); /* a failed test before may have left its settings */
    struct engine *e;
    assert_int_equal(engine_new(&e), 0);
    assert_int_equal(engine_set_retention(e, 10000), 0);
    for (uint32_t k = 0; k < 20; k++)
        send_post(e, k, "https://c/1", (k < 10 ? 100000 : 105000) + k);
    send_post(e, 20, NULL, 111000);
    struct engine_content c;
    assert_int_equal(engine_content(e, "https://c/1", 11, &c, NULL, 0), 0);
    assert_int_equal(c.posts, 10);
    size_t len;
    uint8_t *buf = save_mem(e, &len);
    g_growth_max = 10000;
    struct engine *l = load_with(buf, len, 10000);
    assert_same(e, l);
    engine_free(l);
    engine_free(e);
    free(buf);
    reset_describe();
}

/* ---- doctored files of an engine under retention: live state naming a freed post */

/* Section tags, in persist.c's order (test_truncated pins the count). */
enum {
    TAG_ENGINE = 2,
    TAG_POST_IDS = 3,
    TAG_POSTS = 7,
    TAG_ACTORS = 8,
    TAG_CLISTS = 10,
    TAG_GROWTH = 13
};

static uint8_t *section(uint8_t *buf, size_t len, uint32_t tag, uint64_t *plen)
{
    size_t pos = 64;
    while (pos + 16 <= len) {
        uint32_t t;
        uint64_t l;
        memcpy(&t, buf + pos, 4);
        memcpy(&l, buf + pos + 8, 8);
        if (t == tag) {
            *plen = l;
            return buf + pos + 16;
        }
        pos += 16 + l + ((8 - (l & 7)) & 7);
    }
    fail_msg("no section tagged %u", tag);
    return NULL;
}

/* Makes the section's CRC match its (changed) payload, so that only the load's checks of the
 * state itself can refuse it. */
static void fix_crc(uint8_t *payload, uint64_t len)
{
    uint32_t crc = crc32c(0, payload, len);
    memcpy(payload - 12, &crc, 4);
}

static struct post get_post(const uint8_t *posts, uint32_t i)
{
    struct post p;
    memcpy(&p, posts + 8 + (size_t)i * sizeof(p), sizeof(p));
    return p;
}

static void put_post(uint8_t *posts, uint32_t i, const struct post *p)
{
    memcpy(posts + 8 + (size_t)i * sizeof(*p), p, sizeof(*p));
}

struct snap {
    const uint8_t *orig;
    uint8_t *copy;
    size_t len;
    uint32_t nposts, freed; /* a freed post's id */
};

static void snap_reset(struct snap *s)
{
    memcpy(s->copy, s->orig, s->len);
}

/* The copy refused by engine_load (-EINVAL, nothing returned); err gets the reason. */
static void load_refused(struct snap *s, const char *what, char err[256])
{
    struct engine *e = NULL;
    char user[ENGINE_PERSIST_USER_MAX];
    uint32_t ulen;
    err[0] = 0;
    int rc = engine_load_mem(s->copy, s->len, &e, user, &ulen, err, 256);
    if (rc == 0)
        fail_msg("%s: loaded", what);
    assert_int_equal(rc, -EINVAL);
    assert_null(e);
}

/* Refused by engine_load, for a reason that names none of the sections in avoid (NULL: any). */
static void refused_not(struct snap *s, const char *what, const char *const *avoid)
{
    char err[256];
    load_refused(s, what, err);
    if (strstr(err, "CRC")) /* the doctoring must reach the state checks */
        fail_msg("%s: refused for its CRC: %s", what, err);
    for (; avoid && *avoid; avoid++)
        if (strstr(err, *avoid))
            fail_msg("%s: refused for another reason: %s", what, err);
    print_message("%s: refused: %s\n", what, err);
}

static void refused(struct snap *s, const char *what)
{
    refused_not(s, what, NULL);
}

/* Whether a growth bucket names post x (plainly or inside a run). */
static int in_growth(const struct snap *s, uint32_t x)
{
    uint64_t l;
    const uint8_t *p = section((uint8_t *)s->orig, s->len, TAG_GROWTH, &l), *at = p + 24;
    for (;;) {
        uint32_t slot, n, prev = 0;
        memcpy(&slot, at, 4);
        memcpy(&n, at + 4, 4);
        if (slot == UINT32_MAX)
            return 0;
        for (uint32_t j = 0; j < n; j++) {
            uint32_t v;
            memcpy(&v, at + 24 + 4 * j, 4);
            if (v & GROWTH_RUN ? x > prev && x <= prev + (v & ~GROWTH_RUN) : v == x)
                return 1;
            prev = v & GROWTH_RUN ? prev : v;
        }
        at += 24 + 4 * (size_t)n;
    }
}

/* A content list naming the freed post: an inline one and one with an array, if there are. */
static int doctor_clists(struct snap *s)
{
    int done = 0;
    for (int inline_one = 1; inline_one >= 0; inline_one--) {
        snap_reset(s);
        uint64_t l;
        uint8_t *p = section(s->copy, s->len, TAG_CLISTS, &l);
        uint32_t n, found = 0;
        memcpy(&n, p, 4);
        size_t arrays = 8 + (size_t)n * sizeof(struct content_list);
        for (uint32_t i = 0; i < n && !found; i++) {
            struct content_list cl;
            memcpy(&cl, p + 8 + (size_t)i * sizeof(cl), sizeof(cl));
            if (inline_one && cl.cap == 0 && cl.n == 1) {
                cl.u.one = s->freed;
                memcpy(p + 8 + (size_t)i * sizeof(cl), &cl, sizeof(cl));
                found = 1;
            } else if (!inline_one && cl.cap && cl.n) {
                memcpy(p + arrays, &s->freed, 4);
                found = 1;
            }
            arrays += cl.cap ? (size_t)cl.n * 4 : 0;
        }
        if (!found)
            continue;
        fix_crc(p, l);
        refused(s, inline_one ? "content list (inline) naming a freed post"
                              : "content list (array) naming a freed post");
        done++;
    }
    return done;
}

/* A growth bucket's plain entry (not a run, nor followed by one) naming the freed post. */
static void doctor_growth(struct snap *s)
{
    snap_reset(s);
    uint64_t l;
    uint8_t *p = section(s->copy, s->len, TAG_GROWTH, &l), *at = p + 24, *end = p + l;
    while (at + 8 <= end) {
        uint32_t slot, n;
        memcpy(&slot, at, 4);
        memcpy(&n, at + 4, 4);
        assert_int_not_equal(slot, UINT32_MAX); /* a bucket with a plain entry must exist */
        uint8_t *ent = at + 24;
        for (uint32_t j = 0; j < n; j++) {
            uint32_t x, next = 0;
            memcpy(&x, ent + 4 * j, 4);
            if (j + 1 < n)
                memcpy(&next, ent + 4 * (j + 1), 4);
            if ((x & GROWTH_RUN) || (next & GROWTH_RUN))
                continue;
            memcpy(ent + 4 * j, &s->freed, 4);
            fix_crc(p, l);
            refused(s, "growth bucket naming a freed post");
            return;
        }
        at = ent + 4 * (size_t)n;
    }
    fail_msg("no growth bucket to doctor");
}

/* A leaf post X (a reply, no siblings after it) made to look freed while its parent's child
 * link still reaches it: in its record and the post-id table both, or in only one of them. */
static void doctor_reached(struct snap *s)
{
    uint64_t l;
    uint8_t *posts = section(s->copy, s->len, TAG_POSTS, &l);
    uint32_t x = NONE;
    for (uint32_t i = 0; i < s->nposts && x == NONE; i++) {
        struct post p = get_post(posts, i);
        if (p.sub == 1 && p.actor != NONE && !post_is_root(&p) && p.sibling == NONE &&
            !in_growth(s, i)) /* else the growth check finds it first */
            x = i;
    }
    assert_int_not_equal(x, NONE);
    for (int how = 0; how < 3; how++) {
        snap_reset(s);
        uint64_t lp, li;
        posts = section(s->copy, s->len, TAG_POSTS, &lp);
        uint8_t *ids = section(s->copy, s->len, TAG_POST_IDS, &li);
        if (how != 2) { /* the record as a sweep leaves a freed one, but for its parent link */
            struct post p = get_post(posts, x);
            if (how == 0) { /* its actor counts one post fewer, as after a real eviction */
                uint64_t la;
                uint8_t *actors = section(s->copy, s->len, TAG_ACTORS, &la);
                struct actor a;
                memcpy(&a, actors + 8 + (size_t)p.actor * sizeof(a), sizeof(a));
                a.posts--;
                memcpy(actors + 8 + (size_t)p.actor * sizeof(a), &a, sizeof(a));
                fix_crc(actors, la);
            }
            p.sub = 0;
            p.actor = p.child = p.sibling = NONE;
            p.content = CONTENT_NONE;
            p.ts = 0;
            put_post(posts, x, &p);
            fix_crc(posts, lp);
        }
        if (how != 1) { /* no slot of the post-id table holds it, and the free list (its head
                         * after the 6 header words) starts at it: the id reads as deleted */
            uint32_t mask, head;
            memcpy(&mask, ids + 4, 4);
            memcpy(&head, ids + 24, 4);
            int found = 0;
            for (uint64_t i = 0; i <= mask; i++) {
                uint64_t slot;
                memcpy(&slot, ids + 28 + 8 * i, 8);
                if (slot && (uint32_t)slot == x + 1) {
                    memset(ids + 28 + 8 * i, 0, 8);
                    found = 1;
                }
            }
            assert_true(found);
            memcpy(ids + 28 + 8 * ((uint64_t)mask + 1) + 4 * (uint64_t)x, &head, 4);
            memcpy(ids + 24, &x, 4);
            fix_crc(ids, li);
        }
        static const char *const others[] = {"growth", "content", NULL};
        refused_not(s,
                    how == 0   ? "a freed post still in a tree"
                    : how == 1 ? "a post record freed, its id live"
                               : "a post id deleted, its record live",
                    others);
    }
}

/* Refused, for a reason that says want. */
static void refused_for(struct snap *s, const char *what, const char *want)
{
    char err[256];
    load_refused(s, what, err);
    if (!strstr(err, want))
        fail_msg("%s: refused for another reason: %s", what, err);
    print_message("%s: refused: %s\n", what, err);
}

/* The lists a load adopts rather than rebuilds: the free lists (their order is the order ids
 * are reused in), the names waiting to be deleted, and the actor counts that decide when. */
static void doctor_lists(struct snap *s, const struct engine *e)
{
    uint64_t l;
    /* the post-id free list's head (after 6 header words) made a live id */
    snap_reset(s);
    uint8_t *ids = section(s->copy, s->len, TAG_POST_IDS, &l);
    uint32_t live = NONE;
    for (uint32_t i = 0; i < e->post_ids.count && live == NONE; i++)
        if (!post_is_free(post_at(e, i)))
            live = i;
    memcpy(ids + 24, &live, 4);
    fix_crc(ids, l);
    refused_for(s, "a live post id at the free list's head", "free list");
    /* ... made the second free id: the first is left out */
    snap_reset(s);
    ids = section(s->copy, s->len, TAG_POST_IDS, &l);
    uint32_t second = e->post_ids.refs[e->post_ids.free_head];
    memcpy(ids + 24, &second, 4);
    fix_crc(ids, l);
    refused_for(s, "a free post id left off its list", "free list");
    /* the engine section: 2 words, the outcomes, 5 counters, then the free cascade list's head
     * and length, then the four queues of names to delete (length, ids) */
    size_t at = 8 + sizeof(e->outcomes) + 40;
    snap_reset(s);
    uint8_t *eng = section(s->copy, s->len, TAG_ENGINE, &l);
    uint32_t n = e->ret.nfree_c + 1;
    memcpy(eng + at + 4, &n, 4);
    fix_crc(eng, l);
    refused_for(s, "a free cascade list one longer than it is", "free cascade list");
    assert_true(e->ret.gone_actors[0].n > 0); /* emptied actors, no analytics copy yet */
    snap_reset(s);
    eng = section(s->copy, s->len, TAG_ENGINE, &l);
    n = e->actor_ids.count;
    memcpy(eng + at + 12, &n, 4); /* the first id of gone_actors[0] */
    fix_crc(eng, l);
    refused_for(s, "a name to delete that does not exist", "waiting to be deleted");
    /* an actor counting a post more than name it */
    snap_reset(s);
    uint8_t *actors = section(s->copy, s->len, TAG_ACTORS, &l);
    struct actor a;
    memcpy(&a, actors + 8, sizeof(a));
    a.posts++;
    memcpy(actors + 8, &a, sizeof(a));
    fix_crc(actors, l);
    refused_for(s, "an actor counting one post too many", "name it");
}

static void test_retention_doctored(void **state)
{
    (void)state;
    reset_describe(); /* a failed test before may have left its settings */
    struct engine *e = retention_engine(4000, 5000, NPOSTS);
    struct engine_stats st;
    engine_get_stats(e, &st);
    /* a leaf reply older than the cut in a cascade that a later reply keeps (children are
     * listed newest first, so the leaf has no sibling after it), for doctor_reached */
    int64_t t = st.newest_ts + 10;
    send_post(e, 100010, NULL, t);
    send_reply(e, 100011, 100010, NULL, t);
    send_reply(e, 100012, 100010, NULL, t + 4000);
    /* held content lists of both kinds: one post (inline), five (an array); the first sweeps
     * (the cut passes t) */
    send_post(e, 100000, "https://c/100", t + 6000);
    for (uint32_t k = 0; k < 5; k++)
        send_post(e, 100001 + k, "https://c/101", t + 6000);
    struct snap s;
    uint8_t *buf = save_mem(e, &s.len);
    s.orig = buf;
    s.copy = malloc(s.len);
    snap_reset(&s);
    uint64_t l;
    uint8_t *posts = section(s.copy, s.len, TAG_POSTS, &l);
    memcpy(&s.nposts, posts, 4);
    s.freed = NONE;
    for (uint32_t i = 0; i < s.nposts && s.freed == NONE; i++)
        if (get_post(posts, i).sub == 0) /* post_is_free's mark */
            s.freed = i;
    assert_int_not_equal(s.freed, NONE);
    /* the helpers themselves: a payload unchanged but for a rewritten CRC still loads */
    fix_crc(posts, l);
    engine_free(load_ok(s.copy, s.len));
    assert_int_equal(doctor_clists(&s), 2);
    doctor_growth(&s);
    doctor_reached(&s);
    doctor_lists(&s, e);
    free(s.copy);
    free(buf);
    engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_empty),
        cmocka_unit_test(test_round_trip_small),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_flipped),
        cmocka_unit_test(test_doctored),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_retention_round_trip),
        cmocka_unit_test(test_retention_round_trip_same_ids),
        cmocka_unit_test(test_retention_round_trip_freed_chunks),
        cmocka_unit_test(test_retention_loaded_without),
        cmocka_unit_test(test_retention_pruned_content_list),
        cmocka_unit_test(test_retention_doctored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
