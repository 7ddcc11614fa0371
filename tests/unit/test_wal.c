/* Unit tests of the write-ahead log (src/store/wal.h): every field survives append + replay,
 * segments roll and replay in order across reopenings, a torn tail of the newest segment is cut
 * wherever it is, with appends working after the cut, and any other damage or gap is refused,
 * found by wal_check and set aside by wal_repair with every intact record kept. Faults (short
 * writes, failed writes and fsyncs, no io_uring) are injected through store/wal_int.h. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/crc32c.h"
#include "store/wal.h"
#include "store/wal_int.h"
#include "store/wal_record.h"

#define SEG_HDR 16

/* ---- generated events: event i is a pure function of i, so replay can be checked ---- */

struct genev {
    struct event ev;
    char post[EVENT_ID_MAX], actor[EVENT_ID_MAX], parent[EVENT_ID_MAX];
    char content[EVENT_CONTENT_MAX], label[EVENT_LABEL_MAX];
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* Arbitrary bytes (NULs and 0xff included) of length len. */
static void fill_bytes(char *s, uint32_t len, uint64_t seed)
{
    for (uint32_t k = 0; k < len; k++)
        s[k] = (char)(mix(seed + k) & 0xff);
}

static void set_num_id(struct event_id *id, uint64_t v)
{
    id->str = NULL;
    id->len = (uint32_t)snprintf(id->num, sizeof(id->num), "%" PRIu64, v);
}

static void set_str_id(struct event_id *id, char *buf, uint32_t len)
{
    id->str = buf;
    id->len = len;
}

static void gen_ids(uint64_t i, struct genev *g)
{
    struct event *ev = &g->ev;
    uint64_t h = mix(i);
    if (i % 5 == 0) {
        set_num_id(&ev->post, i * 1000003u + (i == 10 ? UINT64_MAX - 20000000 : 0));
    } else if (i % 5 == 1) {
        uint32_t len = 1 + (uint32_t)(h % EVENT_ID_MAX); /* 1..256 */
        fill_bytes(g->post, len, h);
        set_str_id(&ev->post, g->post, len);
    } else {
        set_str_id(&ev->post, g->post,
                   (uint32_t)snprintf(g->post, sizeof(g->post), "p%" PRIu64, i));
    }
    if (i % 7 == 0) {
        fill_bytes(g->actor, EVENT_ID_MAX, h + 1);
        set_str_id(&ev->actor, g->actor, EVENT_ID_MAX);
    } else {
        set_str_id(&ev->actor, g->actor,
                   (uint32_t)snprintf(g->actor, sizeof(g->actor), "a%" PRIu64, i % 97));
    }
    if (i % 3 == 0)
        ev->parent.len = 0; /* an original post */
    else if (i % 11 == 1)
        set_num_id(&ev->parent, i - 1);
    else
        set_str_id(&ev->parent, g->parent,
                   (uint32_t)snprintf(g->parent, sizeof(g->parent), "p%" PRIu64, i - 1));
}

static void gen_rest(uint64_t i, struct genev *g)
{
    struct event *ev = &g->ev;
    ev->ts = i == 4 ? INT64_MIN : i == 8 ? INT64_MAX : (int64_t)(i * 1000) - 3000;
    ev->kind = (uint8_t)(i % 4);
    ev->actor_type = (uint8_t)(i % 3);
    if (i % 4 == 1) {
        ev->content = g->content; /* present but empty */
    } else if (i % 50 == 7) {
        fill_bytes(g->content, EVENT_CONTENT_MAX, i);
        ev->content = g->content;
        ev->content_len = EVENT_CONTENT_MAX;
    } else if (i % 4 != 0) {
        ev->content_len = (uint16_t)snprintf(g->content, 64, "https://x.example/%" PRIu64, i % 13);
        ev->content = g->content;
    }
    if (i % 3 == 1) {
        memcpy(g->label, "false", 5);
        ev->label = g->label;
        ev->label_len = 5;
    } else if (i % 3 == 2) {
        fill_bytes(g->label, EVENT_LABEL_MAX, i + 7);
        ev->label = g->label;
        ev->label_len = EVENT_LABEL_MAX;
    }
}

static void gen(uint64_t i, struct genev *g)
{
    memset(&g->ev, 0, sizeof(g->ev));
    gen_ids(i, g);
    gen_rest(i, g);
}

static int same_id(const struct event_id *got, const struct event_id *want)
{
    return got->str != NULL && got->len == want->len &&
           memcmp(got->str, event_id_str(want), want->len) == 0;
}

static int same_opt(const char *a, size_t al, const char *b, size_t bl)
{
    if (!a || !b)
        return !a && !b;
    return al == bl && memcmp(a, b, al) == 0;
}

static int same_event(const struct event *got, const struct event *want)
{
    return same_id(&got->post, &want->post) && same_id(&got->actor, &want->actor) &&
           got->parent.len == want->parent.len &&
           (want->parent.len == 0 || same_id(&got->parent, &want->parent)) && got->ts == want->ts &&
           got->kind == want->kind && got->actor_type == want->actor_type &&
           same_opt(got->content, got->content_len, want->content, want->content_len) &&
           same_opt(got->label, got->label_len, want->label, want->label_len);
}

/* ---- appending and checking ---- */

/* Appends events first..first+n-1 as one record (those with keep[k], keep NULL: all). */
static int append_range(struct wal *w, uint64_t first, size_t n, const uint8_t *keep)
{
    struct genev *g = calloc(n ? n : 1, sizeof(*g));
    struct event *evs = calloc(n ? n : 1, sizeof(*evs));
    assert_non_null(g);
    assert_non_null(evs);
    for (size_t k = 0; k < n; k++) {
        gen(first + k, &g[k]);
        evs[k] = g[k].ev;
    }
    int rc = wal_append(w, evs, keep, n);
    free(evs);
    free(g);
    return rc;
}

/* What a replay should see: event indices in order (NULL: 0, 1, 2, ...). */
struct check {
    const uint64_t *want;
    size_t nwant, pos, bad, records;
    int stop_after; /* stop the replay with 7 after this many records (0: never) */
};

static int check_fn(void *ctx, const struct event *evs, size_t n)
{
    struct check *c = ctx;
    struct genev g;
    for (size_t j = 0; j < n; j++, c->pos++) {
        if (c->pos >= c->nwant) {
            c->bad++;
            continue;
        }
        gen(c->want ? c->want[c->pos] : c->pos, &g);
        c->bad += !same_event(&evs[j], &g.ev);
    }
    c->records++;
    return c->stop_after && c->records == (size_t)c->stop_after ? 7 : 0;
}

static char tmp[64];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    memset(&wal_faults, 0, sizeof(wal_faults));
    snprintf(tmp, sizeof(tmp), "/tmp/test_wal.XXXXXX");
    return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    memset(&wal_faults, 0, sizeof(wal_faults));
    return nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct wal *open_wal(enum wal_fsync policy, uint64_t seg_bytes)
{
    struct wal_options o = {.dir = tmp, .fsync = policy, .segment_bytes = seg_bytes};
    struct wal *w = NULL;
    char err[256] = "";
    int rc = wal_open(&o, &w, err, sizeof(err));
    if (rc != 0)
        fail_msg("wal_open: %d %s", rc, err);
    return w;
}

/* Opens, replays against want[0..nwant) (NULL: identity), returns the open WAL. */
static struct wal *reopen_check(const uint64_t *want, size_t nwant, uint64_t seg_bytes,
                                struct wal_replay_stats *st)
{
    struct wal *w = open_wal(WAL_FSYNC_NO, seg_bytes);
    struct check c = {.want = want, .nwant = nwant};
    assert_int_equal(wal_replay(w, check_fn, &c, st), 0);
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.pos, nwant);
    assert_int_equal(st->events, nwant);
    return w;
}

static void seg_path(char *out, size_t len, uint64_t seq)
{
    snprintf(out, len, "%s/wal/%020" PRIu64 ".wal", tmp, seq);
}

static uint64_t file_size(uint64_t seq)
{
    char p[128];
    struct stat st;
    seg_path(p, sizeof(p), seq);
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
}

static int seg_exists(uint64_t seq)
{
    return file_size(seq) != UINT64_MAX;
}

static uint8_t *read_seg(uint64_t seq, size_t *len)
{
    char p[128];
    seg_path(p, sizeof(p), seq);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void write_seg(uint64_t seq, const uint8_t *b, size_t len)
{
    char p[128];
    seg_path(p, sizeof(p), seq);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
}

static uint64_t *iota(size_t n)
{
    uint64_t *v = malloc((n ? n : 1) * sizeof(*v));
    assert_non_null(v);
    for (size_t k = 0; k < n; k++)
        v[k] = k;
    return v;
}

/* ---- CRC32C ---- */

static void test_crc32c_vectors(void **state)
{
    uint8_t buf[32];
    assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c_sw(0, "123456789", 9), 0xE3069283u);
    memset(buf, 0, sizeof(buf)); /* RFC 3720 B.4 */
    assert_int_equal(crc32c(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, sizeof(buf));
    assert_int_equal(crc32c(0, buf, 32), 0x62A8AB43u);
    for (int k = 0; k < 32; k++)
        buf[k] = (uint8_t)k;
    assert_int_equal(crc32c(0, buf, 32), 0x46DD794Eu);
    assert_int_equal(crc32c_sw(0, buf, 32), 0x46DD794Eu);
}

/* Hardware and tables agree at every length and alignment, and chaining equals one pass. */
static void test_crc32c_hw_matches_sw(void **state)
{
    uint8_t buf[600];
    fill_bytes((char *)buf, sizeof(buf), 42);
    for (size_t off = 0; off < 9; off++) {
        for (size_t len = 0; len + off <= sizeof(buf); len += 1 + len / 8) {
            uint32_t a = crc32c(0, buf + off, len), b = crc32c_sw(0, buf + off, len);
            assert_int_equal(a, b);
            size_t half = len / 3;
            assert_int_equal(crc32c(crc32c(0, buf + off, half), buf + off + half, len - half), a);
        }
    }
    print_message("crc32c: %s\n", crc32c_hw_available() ? "sse4.2" : "tables");
}

/* ---- round trips ---- */

static void test_roundtrip_every_field(void **state)
{
    struct wal *w = open_wal(WAL_FSYNC_EVERYSEC, 0);
    struct wal_replay_stats st;
    assert_int_equal(wal_replay(w, NULL, NULL, &st), 0);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.cut_bytes, 0);
    print_message("io_uring: %s\n", wal_uses_io_uring(w) ? "yes" : "no (pwrite fallback)");
    assert_int_equal(append_range(w, 0, 300, NULL), 0);
    assert_int_equal(append_range(w, 300, 1, NULL), 0);
    assert_int_equal(wal_sync(w), 0);
    assert_int_equal(wal_bytes(w), file_size(1));
    wal_close(w);

    w = reopen_check(NULL, 301, 0, &st);
    assert_int_equal(st.records, 2);
    assert_int_equal(st.segments, 1);
    assert_int_equal(st.cut_bytes, 0);
    assert_int_equal(st.bytes, file_size(1));
    wal_close(w);
}

static void test_keep_and_empty(void **state)
{
    struct wal *w = open_wal(WAL_FSYNC_NO, 0);
    assert_int_equal(wal_replay(w, NULL, NULL, NULL), 0);
    uint64_t empty = wal_bytes(w);
    assert_int_equal(empty, SEG_HDR);
    uint8_t keep[40] = {0};
    assert_int_equal(append_range(w, 0, 40, keep), 0); /* nothing kept: nothing written */
    assert_int_equal(append_range(w, 0, 0, NULL), 0);
    assert_int_equal(wal_bytes(w), empty);
    assert_int_equal(file_size(1), empty);

    uint64_t want[40];
    size_t nwant = 0;
    for (size_t k = 0; k < 40; k++) {
        keep[k] = k % 3 == 1 || k == 39;
        if (keep[k])
            want[nwant++] = k;
    }
    assert_int_equal(append_range(w, 0, 40, keep), 0);
    wal_close(w);

    struct wal_replay_stats st;
    w = reopen_check(want, nwant, 0, &st);
    assert_int_equal(st.records, 1);
    wal_close(w);
}

/* Small segments: many files, in order, across two reopenings with appends in between. */
static void test_segments_and_reopen(void **state)
{
    const uint64_t seg = 4096;
    struct wal *w = open_wal(WAL_FSYNC_NO, seg);
    assert_int_equal(wal_replay(w, NULL, NULL, NULL), 0);
    for (uint64_t r = 0; r < 150; r++)
        assert_int_equal(append_range(w, r * 4, 4, NULL), 0);
    uint64_t bytes = wal_bytes(w);
    wal_close(w);

    uint64_t sum = 0, nseg = 0;
    for (uint64_t s = 1; seg_exists(s); s++, nseg++)
        sum += file_size(s);
    assert_true(nseg > 5);
    assert_int_equal(sum, bytes);
    for (uint64_t s = 1; s < nseg; s++) /* past seg by one record at most */
        assert_true(file_size(s) <= seg + WALREC_HDR + WALREC_COUNT + 4 * WALREC_EVENT_MAX);

    struct wal_replay_stats st;
    uint64_t *want = iota(1000);
    w = reopen_check(want, 600, seg, &st);
    assert_int_equal(st.records, 150);
    assert_int_equal(st.segments, nseg);
    assert_int_equal(wal_bytes(w), bytes);
    for (uint64_t r = 150; r < 250; r++)
        assert_int_equal(append_range(w, r * 4, 4, NULL), 0);
    wal_close(w);

    w = reopen_check(want, 1000, seg, &st);
    assert_int_equal(st.records, 250);
    assert_int_equal(st.cut_bytes, 0);
    wal_close(w);
    free(want);
}

/* Positions: replaying from one skips exactly what lies before it, segments before a snapshot
 * can go, and a log that ends before a snapshot's position goes on in a fresh segment. */
static void test_positions(void **state)
{
    const uint64_t seg = 4096;
    struct wal *w = open_wal(WAL_FSYNC_NO, seg);
    assert_int_equal(wal_replay(w, NULL, NULL, NULL), 0);
    struct wal_pos at[201];
    at[0] = wal_position(w);
    assert_int_equal(at[0].seq, 1);
    for (uint64_t r = 0; r < 200; r++) {
        assert_int_equal(append_range(w, r * 3, 3, NULL), 0);
        at[r + 1] = wal_position(w);
        assert_int_equal(wal_pos_cmp(at[r], at[r + 1]), -1);
    }
    wal_close(w);
    uint64_t *want = iota(600);
    const uint64_t from[] = {0, 1, 77, 150, 199, 200};
    for (size_t i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
        w = open_wal(WAL_FSYNC_NO, seg);
        struct check c = {.want = want + from[i] * 3, .nwant = 600 - from[i] * 3};
        struct wal_replay_stats st;
        assert_int_equal(wal_replay_from(w, at[from[i]], check_fn, &c, &st), 0);
        assert_int_equal(c.bad, 0);
        assert_int_equal(c.pos, c.nwant);
        assert_int_equal(wal_pos_cmp(wal_position(w), at[200]), 0);
        wal_close(w);
    }
    /* drop what lies before record 150 */
    w = open_wal(WAL_FSYNC_NO, seg);
    assert_int_equal(wal_replay_from(w, at[150], NULL, NULL, NULL), 0);
    uint64_t nseg = wal_segments(w);
    assert_true(at[150].seq > 2);
    assert_int_equal(wal_remove_before(w, at[150].seq), (int)(at[150].seq - 1));
    assert_int_equal(wal_segments(w), nseg - (at[150].seq - 1));
    assert_false(seg_exists(1));
    assert_true(seg_exists(at[150].seq));
    nseg = wal_segments(w);
    assert_int_equal(wal_remove_before(w, UINT64_MAX), (int)nseg - 1);
    assert_int_equal(wal_segments(w), 1); /* never the one appended to */
    wal_close(w);
    /* a snapshot newer than the log: appends after it start a new segment */
    w = open_wal(WAL_FSYNC_NO, seg);
    struct wal_pos ahead = {at[200].seq, at[200].off + 100};
    assert_int_equal(wal_replay_from(w, ahead, NULL, NULL, NULL), 0);
    assert_int_equal(wal_position(w).seq, ahead.seq + 1);
    assert_int_equal(append_range(w, 600, 3, NULL), 0);
    wal_close(w);
    w = open_wal(WAL_FSYNC_NO, seg);
    uint64_t tail[3] = {600, 601, 602};
    struct check c = {.want = tail, .nwant = 3};
    assert_int_equal(wal_replay_from(w, ahead, check_fn, &c, NULL), 0);
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.pos, 3);
    wal_close(w);
    free(want);
}

/* A record bigger than a segment still goes in (alone), and appends over 16 MiB split. */
/* ---------------------------------------------------------------- a cluster node's records */

struct posrec {
    size_t records, events, npos;
    struct walrec_pos pos[64];
    size_t after_events[64]; /* events replayed when each position came */
};

static int count_events(void *ctx, const struct event *evs, size_t n)
{
    (void)evs;
    ((struct posrec *)ctx)->events += n;
    return 0;
}

static int keep_positions(void *ctx, const struct walrec_pos *pos, size_t n)
{
    struct posrec *r = ctx;
    r->records++;
    for (size_t i = 0; i < n && r->npos < 64; i++) {
        r->after_events[r->npos] = r->events;
        r->pos[r->npos++] = pos[i];
    }
    return 0;
}

/* Stream positions (DESIGN §9) go into a record beside its events and come back from replay
 * after them, in order; a record may hold positions only; a log mixing node records and plain
 * ones reads back whole. */
static void test_stream_positions(void **state)
{
    struct wal *w = open_wal(WAL_FSYNC_NO, 0);
    assert_int_equal(wal_replay(w, NULL, NULL, NULL), 0);
    struct genev g[3];
    struct event evs[3];
    for (int k = 0; k < 3; k++) {
        gen((uint64_t)k + 1, &g[k]);
        evs[k] = g[k].ev;
    }
    const struct walrec_pos p1[2] = {{3, 41}, {5, UINT64_MAX - 1}}, p2[1] = {{0, 1}};
    assert_int_equal(wal_append_pos(w, evs, NULL, 3, p1, 2), 0);
    assert_int_equal(append_range(w, 10, 2, NULL), 0);           /* a plain record */
    assert_int_equal(wal_append_pos(w, evs, NULL, 0, p2, 1), 0); /* positions only */
    const uint8_t none[3] = {0, 0, 0};
    assert_int_equal(wal_append_pos(w, evs, none, 3, p2, 1), 0); /* every event dropped */
    wal_close(w);

    w = open_wal(WAL_FSYNC_NO, 0);
    struct posrec r = {0};
    wal_set_pos_fn(w, keep_positions, &r);
    struct wal_replay_stats st;
    assert_int_equal(wal_replay(w, count_events, &r, &st), 0);
    assert_int_equal(st.records, 4);
    assert_int_equal(r.events, 5);
    assert_int_equal(r.records, 3);
    assert_int_equal(r.npos, 4);
    assert_int_equal(r.pos[0].partition, 3);
    assert_true(r.pos[0].seq == 41);
    assert_true(r.pos[1].partition == 5 && r.pos[1].seq == UINT64_MAX - 1);
    assert_true(r.pos[2].partition == 0 && r.pos[2].seq == 1 && r.pos[3].seq == 1);
    assert_int_equal(r.after_events[0], 3); /* after the record's own events */
    assert_int_equal(r.after_events[2], 5);
    wal_close(w);
}

/* The decoder refuses every trailer the encoder cannot write: no position, too many, a length
 * that disagrees, the flag without a trailer, a trailer without the flag, more events claimed
 * than the bytes hold; and never reads past the record (ASan). */
static void test_stream_positions_malformed(void **state)
{
    (void)state;
    uint8_t rec[WALREC_HDR + 4096];
    struct genev g;
    gen(2, &g);
    size_t esz = walrec_event_size(&g.ev);
    struct walrec_pos pos[3] = {{1, 2}, {3, 4}, {5, 6}};
    struct event *evs = NULL;
    size_t cap = 0, n = 0, npos = 0;
    struct walrec_pos got[WALREC_POS_MAX];
    /* a good one: 1 event, 3 positions */
    uint8_t *end = walrec_put_event(rec + WALREC_HDR + WALREC_COUNT, &g.ev);
    end = walrec_put_pos(end, pos, 3);
    uint32_t len = (uint32_t)(end - rec - WALREC_HDR);
    walrec_seal(rec, len, 1 | WALREC_POS_FLAG);
    assert_int_equal(walrec_decode_pos(rec, rec + WALREC_HDR, len, &evs, &cap, &n, got, &npos), 0);
    assert_int_equal(n, 1);
    assert_int_equal(npos, 3);
    assert_true(got[2].partition == 5 && got[2].seq == 6);
    /* the plain decoder reads the same record, positions dropped */
    assert_int_equal(walrec_decode(rec, rec + WALREC_HDR, len, &evs, &cap, &n), 0);
    assert_int_equal(n, 1);
    uint8_t *tr = rec + WALREC_HDR + WALREC_COUNT + esz; /* the trailer's u16 count */
    static const uint16_t bad_counts[] = {0, 2, 4, WALREC_POS_MAX + 1, 0xffff};
    for (size_t i = 0; i < sizeof(bad_counts) / sizeof(bad_counts[0]); i++) {
        tr[0] = (uint8_t)bad_counts[i];
        tr[1] = (uint8_t)(bad_counts[i] >> 8);
        walrec_seal(rec, len, 1 | WALREC_POS_FLAG);
        assert_int_equal(walrec_decode_pos(rec, rec + WALREC_HDR, len, &evs, &cap, &n, got, &npos),
                         WALREC_BAD);
    }
    tr[0] = 3;
    tr[1] = 0;
    /* one byte more, one byte less */
    walrec_seal(rec, len + 1, 1 | WALREC_POS_FLAG);
    assert_int_equal(walrec_decode_pos(rec, rec + WALREC_HDR, len + 1, &evs, &cap, &n, got, &npos),
                     WALREC_BAD);
    walrec_seal(rec, len - 1, 1 | WALREC_POS_FLAG);
    assert_int_equal(walrec_decode_pos(rec, rec + WALREC_HDR, len - 1, &evs, &cap, &n, got, &npos),
                     WALREC_BAD);
    /* the flag on a record without a trailer; a trailer without the flag */
    len = (uint32_t)(WALREC_COUNT + esz);
    walrec_seal(rec, len, 1 | WALREC_POS_FLAG);
    assert_int_equal(walrec_decode_pos(rec, rec + WALREC_HDR, len, &evs, &cap, &n, got, &npos),
                     WALREC_BAD);
    len = (uint32_t)(WALREC_COUNT + esz + 2 + 3 * WALREC_POS_SIZE);
    walrec_seal(rec, len, 1);
    assert_int_equal(walrec_decode_pos(rec, rec + WALREC_HDR, len, &evs, &cap, &n, got, &npos),
                     WALREC_BAD);
    /* positions only, and a count word claiming more events than the bytes could hold */
    end = walrec_put_pos(rec + WALREC_HDR + WALREC_COUNT, pos, 1);
    len = (uint32_t)(end - rec - WALREC_HDR);
    walrec_seal(rec, len, WALREC_POS_FLAG);
    assert_int_equal(walrec_decode_pos(rec, rec + WALREC_HDR, len, &evs, &cap, &n, got, &npos), 0);
    assert_int_equal(n, 0);
    assert_int_equal(npos, 1);
    walrec_seal(rec, len, 5 | WALREC_POS_FLAG);
    assert_int_equal(walrec_decode_pos(rec, rec + WALREC_HDR, len, &evs, &cap, &n, got, &npos),
                     WALREC_BAD);
    free(evs);
}

static void test_big_appends(void **state)
{
    const size_t n = 7000;
    static char big_id[EVENT_ID_MAX], big_content[EVENT_CONTENT_MAX];
    memset(big_id, 'i', sizeof(big_id));
    memset(big_content, 'c', sizeof(big_content));
    struct event *evs = calloc(n, sizeof(*evs));
    assert_non_null(evs);
    for (size_t k = 0; k < n; k++) {
        evs[k].post = evs[k].actor = evs[k].parent =
            (struct event_id){.str = big_id, .len = EVENT_ID_MAX};
        evs[k].ts = (int64_t)k;
        evs[k].content = big_content;
        evs[k].content_len = EVENT_CONTENT_MAX;
    }
    struct wal *w = open_wal(WAL_FSYNC_NO, 1 << 20);
    assert_int_equal(wal_append(w, evs, NULL, n), 0); /* replays implicitly first */
    assert_int_equal(wal_append(w, evs, NULL, 1), 0);
    wal_close(w);
    free(evs);
    assert_true(file_size(1) > 16u << 20);
    assert_true(seg_exists(2));

    w = open_wal(WAL_FSYNC_NO, 1 << 20);
    struct wal_replay_stats st;
    assert_int_equal(wal_replay(w, NULL, NULL, &st), 0);
    assert_int_equal(st.records, 3); /* 7000 events: two records; then one */
    assert_int_equal(st.events, n + 1);
    assert_int_equal(st.cut_bytes, 0);
    wal_close(w);
}

/* Events the decoder would refuse are refused on append, and nothing is written. */
static void test_invalid_event_refused(void **state)
{
    struct wal *w = open_wal(WAL_FSYNC_NO, 0);
    struct genev g;
    gen(2, &g);
    struct event bad[4] = {g.ev, g.ev, g.ev, g.ev};
    bad[0].post.len = 0;
    bad[1].actor.len = EVENT_ID_MAX + 1;
    bad[2].kind = 4;
    bad[3].content_len = EVENT_CONTENT_MAX + 1;
    for (int k = 0; k < 4; k++)
        assert_int_equal(wal_append(w, &bad[k], NULL, 1), -EINVAL);
    assert_int_equal(wal_bytes(w), SEG_HDR);
    assert_int_equal(wal_replay(w, NULL, NULL, NULL), -EINVAL); /* already replayed */
    wal_close(w);
}

static void test_callback_stops_replay(void **state)
{
    struct wal *w = open_wal(WAL_FSYNC_NO, 0);
    for (int r = 0; r < 4; r++)
        assert_int_equal(append_range(w, (uint64_t)r, 1, NULL), 0);
    wal_close(w);
    w = open_wal(WAL_FSYNC_NO, 0);
    uint64_t *want = iota(4);
    struct check c = {.want = want, .nwant = 4, .stop_after = 2};
    assert_int_equal(wal_replay(w, check_fn, &c, NULL), 7);
    assert_int_equal(c.records, 2);
    wal_close(w);
    free(want);
}

/* ---- torn and corrupt logs ---- */

/* Writes records 0..k-1 (3 events each) in one segment; returns where the last one starts. */
static uint64_t write_records(int k)
{
    struct wal *w = open_wal(WAL_FSYNC_NO, 0);
    uint64_t last = 0;
    for (int r = 0; r < k; r++) {
        last = wal_bytes(w);
        assert_int_equal(append_range(w, (uint64_t)r * 3, 3, NULL), 0);
    }
    wal_close(w);
    return last ? last : SEG_HDR;
}

/* After a cut: an append lands after the good prefix and everything replays. */
static void append_after_cut(struct wal *w, size_t good_events)
{
    assert_int_equal(append_range(w, good_events, 3, NULL), 0);
    wal_close(w);
    struct wal_replay_stats st;
    uint64_t *want = iota(good_events + 3);
    w = reopen_check(want, good_events + 3, 0, &st);
    assert_int_equal(st.cut_bytes, 0);
    wal_close(w);
    free(want);
}

static void test_torn_tail_every_offset(void **state)
{
    uint64_t last = write_records(4);
    size_t len;
    uint8_t *pristine = read_seg(1, &len);
    uint64_t *want = iota(12);
    for (uint64_t cut = last + 1; cut < len; cut++) {
        write_seg(1, pristine, cut);
        struct wal_replay_stats st;
        struct wal *w = reopen_check(want, 9, 0, &st);
        assert_int_equal(st.records, 3);
        assert_int_equal(st.cut_bytes, cut - last);
        assert_int_equal(file_size(1), last);
        assert_int_equal(wal_bytes(w), last);
        if (cut % 16 == 0 || cut == len - 1)
            append_after_cut(w, 9);
        else
            wal_close(w);
    }
    free(pristine);
    free(want);
}

static void test_flipped_byte_cut(void **state)
{
    uint64_t last = write_records(4);
    size_t len;
    uint8_t *b = read_seg(1, &len);
    /* In the payload (CRC mismatch), in the CRC itself, and in the length word. */
    const uint64_t where[] = {len - 1, last + WALREC_HDR + 5, last + 5, last + 1, last + 3};
    for (size_t k = 0; k < sizeof(where) / sizeof(where[0]); k++) {
        b[where[k]] ^= 0x40;
        write_seg(1, b, len);
        b[where[k]] ^= 0x40;
        struct wal_replay_stats st;
        struct wal *w = reopen_check(NULL, 9, 0, &st);
        assert_int_equal(st.records, 3);
        assert_int_equal(st.cut_bytes, len - last);
        append_after_cut(w, 9);
    }
    free(b);
}

static void test_garbage_after_last_record(void **state)
{
    write_records(3);
    size_t len;
    uint8_t *b = read_seg(1, &len);
    uint8_t *g = malloc(len + 5000);
    assert_non_null(g);
    memcpy(g, b, len);
    const size_t extra[] = {1, 7, 8, 100, 5000};
    for (size_t k = 0; k < sizeof(extra) / sizeof(extra[0]); k++) {
        for (size_t j = 0; j < extra[k]; j++) /* zeros (a crash on ext4), then noise */
            g[len + j] = k % 2 ? 0 : (uint8_t)mix(j);
        write_seg(1, g, len + extra[k]);
        struct wal_replay_stats st;
        struct wal *w = reopen_check(NULL, 9, 0, &st);
        assert_int_equal(st.cut_bytes, extra[k]);
        assert_int_equal(file_size(1), len);
        append_after_cut(w, 9);
        write_seg(1, g, len); /* the segment grew: start again from the original */
    }
    free(g);
    free(b);
}

/* ---- damage that is no torn tail: refused, checked, repaired ---- */

/* Which of events 0..n-1 a replay gave back (in any order: a repair moves records), each
 * compared field by field with what was appended. Event i is found again by its ts. */
struct seen {
    uint8_t *got;
    size_t n;
    int bad;
};

static int seen_fn(void *ctx, const struct event *evs, size_t n)
{
    struct seen *s = ctx;
    for (size_t k = 0; k < n; k++) {
        int64_t ts = evs[k].ts;
        uint64_t i = ts == INT64_MIN ? 4 : ts == INT64_MAX ? 8 : (uint64_t)(ts + 3000) / 1000;
        struct genev g;
        if (i >= s->n) {
            s->bad++;
            continue;
        }
        gen(i, &g);
        s->bad += !same_event(&evs[k], &g.ev);
        s->got[i]++;
    }
    return 0;
}

static struct wal *open_wal_allow(uint64_t seg_bytes, int allow)
{
    struct wal_options o = {.dir = tmp, .fsync = WAL_FSYNC_NO, .segment_bytes = seg_bytes,
                            .allow_history_loss = allow};
    struct wal *w = NULL;
    char err[256] = "";
    int rc = wal_open(&o, &w, err, sizeof(err));
    if (rc != 0)
        fail_msg("wal_open: %d %s", rc, err);
    return w;
}

/* Replays from `from` and checks that events 0..n-1 came back once each, except lost[lo..hi),
 * which must be absent. */
static void replay_all_but(struct wal_pos from, size_t n, size_t lo, size_t hi)
{
    struct wal *w = open_wal_allow(0, 0);
    struct seen s = {.got = calloc(n + 1, 1), .n = n};
    assert_non_null(s.got);
    int rc = wal_replay_from(w, from, seen_fn, &s, NULL);
    if (rc != 0)
        fail_msg("replay: %d %s", rc, wal_error(w));
    assert_int_equal(s.bad, 0);
    for (size_t i = 0; i < n; i++)
        if (s.got[i] != (i >= lo && i < hi ? 0 : 1))
            fail_msg("event %zu came back %u times", i, s.got[i]);
    free(s.got);
    wal_close(w);
}

/* Appends records of 3 events into segments of seg bytes until segment `until` exists. The
 * events in all; first_of[k]: the first event of segment k (k <= until), first_of[until + 1]
 * the end. */
static size_t fill_segments(uint64_t seg, uint64_t until, size_t *first_of)
{
    struct wal *w = open_wal(WAL_FSYNC_NO, seg);
    size_t events = 0;
    first_of[1] = 0;
    for (uint64_t k = 2; k <= until; k++) {
        while (!seg_exists(k)) {
            assert_int_equal(append_range(w, events, 3, NULL), 0);
            events += 3;
        }
        first_of[k] = events - 3; /* the record that rolled is the first of segment k */
    }
    first_of[until + 1] = events;
    wal_close(w); /* segment `until` holds the one record that rolled */
    return events;
}

/* The end of the first n records of a segment's bytes b. */
static uint64_t rec_end(const uint8_t *b, size_t n)
{
    uint64_t at = SEG_HDR;
    for (size_t k = 0; k < n; k++)
        at += WALREC_HDR + (walrec_get32(b + at) & WALREC_MAX);
    return at;
}

struct dmg_list {
    struct wal_damage d[16];
    size_t n;
};

static int dmg_fn(void *ctx, const struct wal_damage *d)
{
    struct dmg_list *l = ctx;
    if (l->n < 16)
        l->d[l->n] = *d;
    l->n++;
    return 0;
}

static void check_damage(uint64_t need_from, size_t want, struct dmg_list *l)
{
    struct wal *w = open_wal(WAL_FSYNC_NO, 0);
    struct wal_check_stats st;
    memset(l, 0, sizeof(*l));
    assert_int_equal(wal_check(w, need_from, dmg_fn, l, &st), (int)want);
    assert_int_equal(l->n, want);
    wal_close(w);
}

static void repair(uint64_t need_from, size_t want)
{
    struct wal *w = open_wal(WAL_FSYNC_NO, 0);
    struct dmg_list l = {0};
    struct wal_check_stats st;
    assert_int_equal(wal_repair(w, need_from, dmg_fn, &l, &st), (int)want);
    wal_close(w);
    check_damage(need_from, 0, &l); /* nothing left to find */
}

/* One flipped bit in the first record of segment 2 of 4: start-up refuses, naming the file and
 * the offset, and changes nothing; check finds the one record; repair keeps every other one. */
static void test_corrupt_middle_refused_then_repaired(void **state)
{
    size_t first_of[6];
    size_t events = fill_segments(4096, 4, first_of);
    uint64_t sizes[5];
    for (uint64_t k = 1; k <= 4; k++)
        sizes[k] = file_size(k);
    size_t len;
    uint8_t *b = read_seg(2, &len);
    uint64_t first_len = rec_end(b, 1) - SEG_HDR;
    b[SEG_HDR + WALREC_HDR + 3] ^= 1;
    write_seg(2, b, len);
    free(b);

    struct wal *w = open_wal(WAL_FSYNC_NO, 4096);
    assert_int_equal(wal_replay(w, NULL, NULL, NULL), -EBADMSG);
    assert_non_null(strstr(wal_error(w), "00000000000000000002.wal"));
    assert_non_null(strstr(wal_error(w), "byte offset 16 "));
    assert_non_null(strstr(wal_error(w), "cascade-wal repair"));
    assert_int_equal(append_range(w, events, 3, NULL), -EBADMSG); /* no append behind it */
    wal_close(w);
    for (uint64_t k = 1; k <= 4; k++)
        assert_int_equal(file_size(k), sizes[k]); /* nothing cut, nothing removed */

    struct dmg_list l;
    check_damage(0, 1, &l);
    assert_int_equal(l.d[0].seq, 2);
    assert_int_equal(l.d[0].off, SEG_HDR);
    assert_int_equal(l.d[0].before, 0);
    assert_int_equal(l.d[0].after, (first_of[3] - first_of[2]) / 3 - 1);
    assert_int_equal(l.d[0].len, first_len);
    assert_true(l.d[0].after > 0); /* the case this is about: intact records after the damage */
    repair(0, 1);
    assert_int_equal(file_size(2), SEG_HDR);
    assert_true(seg_exists(5)); /* the records after the damage, moved */
    char p[256];
    snprintf(p, sizeof(p), "%s/wal-damaged/00000000000000000002.wal.at-16.damaged", tmp);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, l.d[0].len);
    replay_all_but((struct wal_pos){0, 0}, events, first_of[2], first_of[2] + 3);
    /* and appends go on after it */
    w = open_wal(WAL_FSYNC_NO, 4096);
    assert_int_equal(wal_replay(w, NULL, NULL, NULL), 0);
    assert_int_equal(append_range(w, events, 3, NULL), 0);
    wal_close(w);
    replay_all_but((struct wal_pos){0, 0}, events + 3, first_of[2], first_of[2] + 3);
}

/* Garbage in the middle of the newest segment, intact records after it: no torn tail either. The
 * scan finds the next record however the garbage is shifted; nothing is lost after a repair. */
static void test_garbage_inside_newest_segment(void **state)
{
    write_records(10);
    size_t len;
    uint8_t *b = read_seg(1, &len);
    uint64_t after4 = rec_end(b, 3);
    const size_t junk[] = {1, 3, 8, 13, 200};
    for (size_t k = 0; k < sizeof(junk) / sizeof(junk[0]); k++) {
        uint8_t *g = malloc(len + junk[k]);
        assert_non_null(g);
        memcpy(g, b, after4);
        for (size_t j = 0; j < junk[k]; j++)
            g[after4 + j] = j % 3 ? 0xC5 : (uint8_t)mix(j); /* the magic byte, often */
        memcpy(g + after4 + junk[k], b + after4, len - after4);
        write_seg(1, g, len + junk[k]);
        free(g);
        struct wal *w = open_wal(WAL_FSYNC_NO, 0);
        assert_int_equal(wal_replay(w, NULL, NULL, NULL), -EBADMSG);
        assert_non_null(strstr(wal_error(w), "00000000000000000001.wal"));
        wal_close(w);
        struct dmg_list l;
        check_damage(0, 1, &l);
        assert_int_equal(l.d[0].off, after4);
        assert_int_equal(l.d[0].len, junk[k]);
        assert_int_equal(l.d[0].before, 3);
        assert_int_equal(l.d[0].after, 7);
        repair(0, 1);
        replay_all_but((struct wal_pos){0, 0}, 30, 0, 0);
        write_seg(1, b, len);
        char p[256];
        snprintf(p, sizeof(p), "%s/wal/00000000000000000002.wal", tmp);
        unlink(p);
    }
    free(b);
}

/* Two damaged regions in one segment: check reports each with the intact records between
 * them; repair keeps all of those (none of the 10 records was itself damaged). */
static void test_two_regions(void **state)
{
    write_records(10);
    size_t len;
    uint8_t *b = read_seg(1, &len);
    uint64_t a = rec_end(b, 2), c = rec_end(b, 6);
    uint8_t *g = malloc(len + 50);
    assert_non_null(g);
    memcpy(g, b, a);
    memset(g + a, 0, 20); /* zeros, as a crash on ext4 leaves them */
    memcpy(g + a + 20, b + a, c - a);
    memset(g + c + 20, 0xC5, 30);
    memcpy(g + c + 50, b + c, len - c);
    write_seg(1, g, len + 50);
    struct dmg_list l;
    check_damage(0, 2, &l);
    assert_int_equal(l.d[0].off, a);
    assert_int_equal(l.d[0].len, 20);
    assert_int_equal(l.d[0].before, 2);
    assert_int_equal(l.d[0].after, 4);
    assert_int_equal(l.d[1].off, c + 20);
    assert_int_equal(l.d[1].len, 30);
    assert_int_equal(l.d[1].before, 4);
    assert_int_equal(l.d[1].after, 4);
    repair(0, 2);
    replay_all_but((struct wal_pos){0, 0}, 30, 0, 0);
    free(g);
    free(b);
}

/* An older segment cut short (mid-record, or to nothing) is refused too; after a repair every
 * record still on disk is there. */
static void test_truncated_older_segment(void **state)
{
    size_t first_of[5];
    size_t events = fill_segments(1024, 3, first_of);
    size_t len;
    uint8_t *b = read_seg(2, &len);
    const size_t keep[] = {len - 5, 0};
    for (size_t k = 0; k < 2; k++) {
        write_seg(2, b, keep[k]);
        struct wal *w = open_wal(WAL_FSYNC_NO, 1024);
        assert_int_equal(wal_replay(w, NULL, NULL, NULL), -EBADMSG);
        assert_non_null(strstr(wal_error(w), "00000000000000000002.wal"));
        assert_non_null(strstr(wal_error(w), "to its end"));
        wal_close(w);
        struct dmg_list l;
        check_damage(0, 1, &l);
        assert_int_equal(l.d[0].seq, 2);
        repair(0, 1);
        /* mid-record: the last record of segment 2 is lost; to nothing: all of segment 2 */
        size_t lo = keep[k] ? first_of[3] - 3 : first_of[2];
        replay_all_but((struct wal_pos){0, 0}, events, lo, first_of[3]);
        write_seg(2, b, len);
    }
    free(b);
}

/* A segment missing from the numbering: refused (its events exist nowhere else), let through
 * with allow_history_loss (counted), and filled by a repair. */
static void test_missing_segment(void **state)
{
    size_t first_of[6];
    size_t events = fill_segments(1024, 4, first_of);
    char p[256];
    seg_path(p, sizeof(p), 2);
    assert_int_equal(unlink(p), 0);
    struct wal *w = open_wal(WAL_FSYNC_NO, 1024);
    assert_int_equal(wal_replay(w, NULL, NULL, NULL), -ENODATA);
    assert_non_null(strstr(wal_error(w), "00000000000000000002.wal"));
    assert_non_null(strstr(wal_error(w), "--allow-history-loss"));
    wal_close(w);
    w = open_wal_allow(1024, 1);
    struct wal_replay_stats st;
    assert_int_equal(wal_replay(w, NULL, NULL, &st), 0);
    assert_int_equal(st.missing, 1);
    wal_close(w);
    struct dmg_list l;
    check_damage(0, 1, &l);
    assert_int_equal(l.d[0].seq, 2);
    assert_int_equal(l.d[0].missing, 1);
    repair(0, 1);
    assert_int_equal(file_size(2), SEG_HDR);
    replay_all_but((struct wal_pos){0, 0}, events, first_of[2], first_of[3]);
}

/* A flipped bit in an older segment's format version is damage, not a newer format: a newer
 * build only ever appends after what an older one wrote. A repair loses nothing. */
static void test_flipped_version_is_damage(void **state)
{
    size_t first_of[6];
    size_t events = fill_segments(4096, 4, first_of);
    size_t len;
    uint8_t *b = read_seg(2, &len);
    b[4] ^= 2;
    write_seg(2, b, len);
    free(b);
    struct wal *w = open_wal(WAL_FSYNC_NO, 4096);
    assert_int_equal(wal_replay(w, NULL, NULL, NULL), -EBADMSG);
    assert_non_null(strstr(wal_error(w), "00000000000000000002.wal"));
    assert_non_null(strstr(wal_error(w), "segment header"));
    wal_close(w);
    repair(0, 1);
    replay_all_but((struct wal_pos){0, 0}, events, 0, 0);
}

/* Every segment behind a snapshot's position deleted: refused, not started silently. */
static void test_snapshot_without_its_segments(void **state)
{
    size_t first_of[5];
    fill_segments(1024, 3, first_of);
    struct wal_pos from = {3, SEG_HDR + 40};
    for (uint64_t k = 1; k <= 3; k++) {
        char p[256];
        seg_path(p, sizeof(p), k);
        if (k >= 2) /* segment 1 stays: the log before the snapshot */
            assert_int_equal(unlink(p), 0);
    }
    struct wal *w = open_wal(WAL_FSYNC_NO, 1024);
    assert_int_equal(wal_replay_from(w, from, NULL, NULL, NULL), -ENODATA);
    assert_non_null(strstr(wal_error(w), "00000000000000000003.wal"));
    assert_non_null(strstr(wal_error(w), "snapshot"));
    wal_close(w);
    struct dmg_list l;
    check_damage(3, 1, &l); /* the tool is told where the newest snapshot is */
    assert_int_equal(l.d[0].seq, 2);
    assert_int_equal(l.d[0].missing, 2);
    w = open_wal_allow(1024, 1);
    struct wal_replay_stats st;
    assert_int_equal(wal_replay_from(w, from, NULL, NULL, &st), 0);
    assert_true(st.missing >= 1);
    assert_int_equal(append_range(w, 1000, 3, NULL), 0);
    wal_close(w);
    assert_true(seg_exists(3)); /* created empty: the next start finds no gap after it */
    w = open_wal(WAL_FSYNC_NO, 1024);
    assert_int_equal(wal_replay_from(w, from, NULL, NULL, &st), 0);
    assert_int_equal(st.events, 3);
    wal_close(w);
}

/* A segment whose header never made it (crash while rolling) is removed, not refused. */
static void test_torn_segment_header(void **state)
{
    write_records(2);
    static const uint8_t partial[7] = {'C', 'W', 'A', 'L', 1, 0, 16};
    write_seg(2, partial, sizeof(partial));
    struct wal_replay_stats st;
    struct wal *w = reopen_check(NULL, 6, 0, &st);
    assert_int_equal(st.cut_bytes, sizeof(partial));
    assert_false(seg_exists(2));
    append_after_cut(w, 6);

    write_seg(1, partial, 3); /* even the only segment: an empty log */
    w = reopen_check(NULL, 0, 0, &st);
    assert_int_equal(st.cut_bytes, 3);
    assert_int_equal(file_size(1), SEG_HDR);
    append_after_cut(w, 0);
}

/* Appending without a replay validates the log first instead of writing behind a torn tail. */
static void test_append_without_replay_cuts_first(void **state)
{
    uint64_t last = write_records(3);
    size_t len;
    uint8_t *b = read_seg(1, &len);
    write_seg(1, b, len - 2);
    free(b);
    struct wal *w = open_wal(WAL_FSYNC_NO, 0);
    assert_int_equal(append_range(w, 6, 3, NULL), 0);
    wal_close(w);
    struct wal_replay_stats st;
    w = reopen_check(NULL, 9, 0, &st);
    assert_int_equal(st.cut_bytes, 0);
    assert_true(file_size(1) > last);
    wal_close(w);
}

/* ---- fsync policies, io_uring and its fallback, injected faults ---- */

static void policies_round_trip(int no_uring)
{
    const enum wal_fsync pol[] = {WAL_FSYNC_NO, WAL_FSYNC_EVERYSEC, WAL_FSYNC_ALWAYS};
    size_t events = 0;
    for (int k = 0; k < 3; k++) {
        wal_faults.no_uring = no_uring;
        struct wal *w = open_wal(pol[k], 2048);
        if (no_uring)
            assert_int_equal(wal_uses_io_uring(w), 0);
        assert_int_equal(wal_replay(w, NULL, NULL, NULL), 0);
        for (int r = 0; r < 20; r++, events += 3)
            assert_int_equal(append_range(w, events, 3, NULL), 0);
        assert_int_equal(wal_sync(w), 0);
        wal_close(w);
    }
    struct wal_replay_stats st;
    struct wal *w = reopen_check(NULL, events, 2048, &st);
    assert_true(st.segments > 3);
    wal_close(w);
}

static void test_fsync_policies_uring(void **state)
{
    policies_round_trip(0);
}

static void test_fsync_policies_pwrite(void **state)
{
    policies_round_trip(1);
}

/* The kernel may write less than asked: the rest is resubmitted (with its fsync). */
static void short_writes(int no_uring)
{
    wal_faults.no_uring = no_uring;
    wal_faults.max_write = 7;
    struct wal *w = open_wal(WAL_FSYNC_ALWAYS, 4096);
    for (int r = 0; r < 10; r++)
        assert_int_equal(append_range(w, (uint64_t)r * 20, 20, NULL), 0);
    wal_close(w);
    wal_faults.max_write = 0;
    struct wal_replay_stats st;
    w = reopen_check(NULL, 200, 4096, &st);
    wal_close(w);
}

static void test_short_writes_uring(void **state)
{
    short_writes(0);
}

static void test_short_writes_pwrite(void **state)
{
    short_writes(1);
}

/* A write failing halfway leaves part of a record on disk: it is cut off, the WAL goes on. */
static void failed_write(int no_uring)
{
    wal_faults.no_uring = no_uring;
    struct wal *w = open_wal(WAL_FSYNC_EVERYSEC, 0);
    assert_int_equal(append_range(w, 0, 3, NULL), 0);
    uint64_t before = wal_bytes(w);
    wal_faults.max_write = 50;
    wal_faults.fail_write = 3;
    wal_faults.err = ENOSPC;
    assert_int_equal(append_range(w, 100, 10, NULL), -ENOSPC);
    assert_int_equal(wal_bytes(w), before);
    assert_int_equal(file_size(1), before);
    wal_faults.max_write = 0;
    assert_int_equal(append_range(w, 3, 3, NULL), 0);
    wal_close(w);
    struct wal_replay_stats st;
    w = reopen_check(NULL, 6, 0, &st);
    assert_int_equal(st.cut_bytes, 0);
    wal_close(w);
}

static void test_failed_write_uring(void **state)
{
    failed_write(0);
}

static void test_failed_write_pwrite(void **state)
{
    failed_write(1);
}

/* After a failed fsync nothing more is acked: the page cache may have dropped the data. */
static void test_failed_fsync_stops_appends(void **state)
{
    for (int no_uring = 0; no_uring < 2; no_uring++) {
        wal_faults.no_uring = no_uring;
        struct wal *w = open_wal(WAL_FSYNC_ALWAYS, 0);
        assert_int_equal(wal_replay(w, NULL, NULL, NULL), 0);
        wal_faults.fail_fsync = 1;
        assert_int_equal(append_range(w, 0, 3, NULL), -EIO);
        assert_int_equal(append_range(w, 0, 3, NULL), -EIO);
        assert_int_equal(wal_sync(w), -EIO);
        wal_close(w);
        struct wal_replay_stats st;
        w = reopen_check(NULL, 0, 0, &st);
        wal_close(w);
    }
}

/* After a failed fsync the log can go on in a new segment (the server covers the old one with
 * a snapshot): appends work again, and a replay from the new segment's start reads only them. */
static void test_failed_fsync_restart_segment(void **state)
{
    for (int no_uring = 0; no_uring < 2; no_uring++) {
        wal_faults.no_uring = no_uring;
        struct wal *w = open_wal(WAL_FSYNC_ALWAYS, 0);
        assert_int_equal(wal_replay(w, NULL, NULL, NULL), 0);
        assert_int_equal(append_range(w, 0, 3, NULL), 0);
        assert_int_equal(wal_failed(w), 0);
        wal_faults.fail_fsync = 1;
        assert_int_equal(append_range(w, 3, 3, NULL), -EIO);
        assert_int_equal(wal_failed(w), 1);
        struct wal_pos pos;
        assert_int_equal(wal_restart_segment(w, &pos), 0);
        assert_int_equal(wal_failed(w), 0);
        assert_int_equal(pos.seq, 2);
        assert_true(seg_exists(2));
        assert_int_equal(append_range(w, 3, 3, NULL), 0);
        assert_int_equal(wal_sync(w), 0);
        wal_close(w);
        w = open_wal(WAL_FSYNC_NO, 0);
        uint64_t want[] = {3, 4, 5};
        struct check c = {.want = want, .nwant = 3};
        struct wal_replay_stats st;
        assert_int_equal(wal_replay_from(w, pos, check_fn, &c, &st), 0);
        assert_int_equal(c.bad, 0);
        assert_int_equal(c.pos, 3);
        wal_close(w);
        teardown(state);
        setup(state);
    }
}

/* ---- opening ---- */

static void test_open_errors(void **state)
{
    char dir[128], err[256];
    struct wal *w = NULL, *w2 = NULL;
    snprintf(dir, sizeof(dir), "%s/file", tmp);
    FILE *f = fopen(dir, "w");
    assert_non_null(f);
    fclose(f);
    struct wal_options o = {.dir = dir};
    assert_int_equal(wal_open(&o, &w, err, sizeof(err)), -ENOTDIR);
    assert_null(w);
    assert_non_null(strstr(err, dir));
    assert_non_null(strstr(err, strerror(ENOTDIR)));

    snprintf(dir, sizeof(dir), "%s/a/b/c", tmp); /* created, parents included */
    assert_int_equal(wal_open(&o, &w, err, sizeof(err)), 0);
    assert_int_equal(wal_open(&o, &w2, err, sizeof(err)), -EBUSY); /* one process per WAL */
    assert_non_null(strstr(err, "in use"));
    wal_close(w);
    assert_int_equal(wal_open(&o, &w2, err, sizeof(err)), 0);
    wal_close(w2);

    o.dir = tmp; /* a segment of a newer format is refused, not cut */
    static const uint8_t newer[SEG_HDR] = {'C', 'W', 'A', 'L', 2, 0, 16, 0, 1};
    mkdir(strcat(strcpy(dir, tmp), "/wal"), 0755);
    write_seg(1, newer, sizeof(newer));
    assert_int_equal(wal_open(&o, &w, err, sizeof(err)), -EPROTONOSUPPORT);
    assert_non_null(strstr(err, "00000000000000000001.wal"));
    assert_int_equal(file_size(1), SEG_HDR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_vectors),
        cmocka_unit_test(test_crc32c_hw_matches_sw),
        cmocka_unit_test_setup_teardown(test_roundtrip_every_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segments_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_event_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_stops_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_every_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_after_last_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_middle_refused_then_repaired, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_garbage_inside_newest_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_regions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_older_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_version_is_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_without_its_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_segment_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_without_replay_cuts_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fsync_policies_uring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fsync_policies_pwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_writes_uring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_writes_pwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_uring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_pwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_fsync_stops_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_fsync_restart_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_positions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_positions, setup, teardown),
        cmocka_unit_test(test_stream_positions_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
