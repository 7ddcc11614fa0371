/* libFuzzer target for WAL replay, check and repair (src/store/wal.c, wal_record.c). The input
 * is the body of a segment file: it is written after a valid segment header, followed by a
 * second segment with one good record, and replayed. Replay must never crash or read out of
 * bounds; damage in the first segment (an older one) must refuse, with a message and no file
 * changed; wal_repair must then leave a log that replays cleanly with every record the check
 * counted intact, and an append after it replays cleanly after the same events.
 * Most mutations break a CRC, so each input is also replayed with its records' CRCs recomputed:
 * that lets the fuzzer reach the event decoder behind them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "store/wal.h"
#include "store/wal_int.h"
#include "store/wal_record.h"

#define SEG_HDR 16

static char dir[64];
static char seg1[96], seg2[96];
static uint8_t header[2][SEG_HDR];
static uint8_t tail_rec[256]; /* the one good record of segment 2 */
static size_t tail_len;

/* What a replay saw: a digest of every event, in order. */
struct seen {
    uint64_t digest, events;
    uint64_t digest_at; /* the digest after `at` events */
    uint64_t pdigest;   /* of every stream position (a cluster node's records), in order */
    uint64_t at;
    struct event last;
    char last_post[EVENT_ID_MAX];
};

static uint64_t mix(uint64_t h, uint64_t v)
{
    return (h ^ v) * 0x100000001b3ull;
}

/* Reading every byte lets ASan check that each pointer stays inside the read buffer. */
static uint64_t mix_bytes(uint64_t h, const char *s, uint32_t len)
{
    h = mix(h, len);
    for (uint32_t i = 0; i < len; i++)
        h = mix(h, (uint8_t)s[i]);
    return h;
}

static void check_event(const struct event *ev)
{
    if (!ev->post.str || !ev->actor.str || !ev->parent.str || ev->post.len == 0 ||
        ev->actor.len == 0 || ev->post.len > EVENT_ID_MAX || ev->actor.len > EVENT_ID_MAX ||
        ev->parent.len > EVENT_ID_MAX || ev->content_len > EVENT_CONTENT_MAX ||
        ev->label_len > EVENT_LABEL_MAX || ev->kind > EVENT_KIND_REPLY ||
        ev->actor_type > EVENT_ACTOR_PAGE)
        abort();
}

static int on_record(void *ctx, const struct event *evs, size_t n)
{
    struct seen *s = ctx; /* n == 0: a cluster node's record of stream positions only */
    for (size_t i = 0; i < n; i++) {
        const struct event *ev = &evs[i];
        check_event(ev);
        uint64_t h = mix_bytes(s->digest, ev->post.str, ev->post.len);
        h = mix_bytes(h, ev->actor.str, ev->actor.len);
        h = mix_bytes(h, ev->parent.str, ev->parent.len);
        h = mix(h, (uint64_t)ev->ts ^ (uint64_t)ev->kind << 8 ^ (uint64_t)ev->actor_type << 16);
        h = ev->content ? mix_bytes(h, ev->content, ev->content_len) : mix(h, 1);
        s->digest = ev->label ? mix_bytes(h, ev->label, ev->label_len) : mix(h, 2);
        if (++s->events == s->at)
            s->digest_at = s->digest;
        s->last = *ev;
        memcpy(s->last_post, ev->post.str, ev->post.len);
    }
    return 0;
}

/* A cluster node's stream positions (DESIGN §9): never more than a record may hold, and part
 * of what both replays must agree on. */
static int on_positions(void *ctx, const struct walrec_pos *pos, size_t n)
{
    struct seen *s = ctx;
    if (n == 0 || n > WALREC_POS_MAX)
        abort();
    for (size_t i = 0; i < n; i++)
        s->pdigest = mix(mix(s->pdigest, pos[i].partition), pos[i].seq);
    return 0;
}

static void make_tail_record(void)
{
    struct event ev = {.post = {.str = "tail", .len = 4}, .actor = {.str = "a", .len = 1}};
    ev.ts = -1;
    size_t n = walrec_event_size(&ev);
    walrec_put_event(tail_rec + WALREC_HDR + WALREC_COUNT, &ev);
    walrec_seal(tail_rec, (uint32_t)(WALREC_COUNT + n), 1);
    tail_len = WALREC_HDR + WALREC_COUNT + n;
}

static void clear(const char *sub);

static void cleanup(void)
{
    char wal[80];
    snprintf(wal, sizeof(wal), "%s/wal", dir);
    clear("wal");
    clear("wal-damaged");
    rmdir(wal);
    snprintf(wal, sizeof(wal), "%s/wal-damaged", dir);
    rmdir(wal);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* tmpfs when there is one: the cut's fsyncs are then nearly free, and execs 10x faster. */
    struct stat st;
    int shm = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0;
    snprintf(dir, sizeof(dir), "%s/fuzz_wal.XXXXXX", shm ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir))
        abort();
    char wal[80];
    snprintf(wal, sizeof(wal), "%s/wal", dir);
    if (mkdir(wal, 0755) < 0)
        abort();
    snprintf(seg1, sizeof(seg1), "%s/wal/%020d.wal", dir, 1);
    snprintf(seg2, sizeof(seg2), "%s/wal/%020d.wal", dir, 2);
    for (int k = 0; k < 2; k++) { /* "CWAL", version 1, header size 16, sequence */
        memcpy(header[k], "CWAL\x01\x00\x10\x00", 8);
        header[k][8] = (uint8_t)(k + 1);
    }
    make_tail_record();
    atexit(cleanup);
    wal_faults.no_uring = 1; /* a ring per input costs more than the replay; same code above */
    return 0;
}

static void write_file(const char *path, const void *a, size_t alen, const void *b, size_t blen)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen))
        abort();
    fclose(f);
}

static struct wal *open_wal(void)
{
    struct wal_options o = {.dir = dir, .fsync = WAL_FSYNC_NO};
    struct wal *w;
    char err[256];
    if (wal_open(&o, &w, err, sizeof(err)) != 0) {
        fprintf(stderr, "wal_open: %s\n", err);
        abort();
    }
    return w;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Replays the log as written: clean, every byte accounted for; or refused (damage in segment
 * 1, an older segment: never cut), then repaired and replayed clean. */
static void first_replay(size_t size, struct seen *s, struct wal_replay_stats *st)
{
    struct wal *w = open_wal();
    wal_set_pos_fn(w, on_positions, s);
    int rc = wal_replay(w, on_record, s, st);
    if (rc == -EBADMSG) {
        if (!wal_error(w)[0] || file_size(seg1) != (long)(SEG_HDR + size) ||
            file_size(seg2) != (long)(SEG_HDR + tail_len))
            abort(); /* a refusal says why and changes nothing */
        wal_close(w);
        w = open_wal();
        struct wal_check_stats cs;
        if (wal_repair(w, 0, NULL, NULL, &cs) <= 0 || cs.damaged == 0)
            abort();
        wal_close(w);
        memset(s, 0, sizeof(*s));
        w = open_wal();
        wal_set_pos_fn(w, on_positions, s);
        if (wal_replay(w, on_record, s, st) != 0 || st->cut_bytes || st->records != cs.records)
            abort();
    } else if (rc != 0 || st->cut_bytes || st->bytes != 2 * SEG_HDR + size + tail_len ||
               st->bytes != wal_bytes(w)) {
        abort(); /* segment 2 is the newest and intact: nothing to cut */
    }
    struct event ev = {.post = {.str = "new", .len = 3}, .actor = {.str = "b", .len = 1}};
    if (wal_append(w, &ev, NULL, 1) != 0)
        abort();
    wal_close(w);
}

/* Replays again: what was kept, then the appended event, and nothing cut. */
static void second_replay(const struct seen *first, const struct wal_replay_stats *st1)
{
    struct seen s = {.at = first->events};
    struct wal_replay_stats st;
    struct wal *w = open_wal();
    wal_set_pos_fn(w, on_positions, &s);
    if (wal_replay(w, on_record, &s, &st) != 0)
        abort();
    wal_close(w);
    if (st.cut_bytes != 0 || st.records != st1->records + 1 || s.events != first->events + 1)
        abort();
    if ((first->events && s.digest_at != first->digest) || s.pdigest != first->pdigest ||
        s.last.post.len != 3 ||
        memcmp(s.last_post, "new", 3) != 0)
        abort();
}

/* Removes every file in dir/sub (segments a repair added, the damaged bytes it kept). */
static void clear(const char *sub)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, sub);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            unlinkat(dirfd(d), de->d_name, 0);
    closedir(d);
}

static void run(const uint8_t *data, size_t size)
{
    write_file(seg1, header[0], SEG_HDR, data, size);
    write_file(seg2, header[1], SEG_HDR, tail_rec, tail_len);
    struct seen s = {0};
    struct wal_replay_stats st;
    first_replay(size, &s, &st);
    second_replay(&s, &st);
    clear("wal");
    clear("wal-damaged");
}

/* Recomputes the CRC of every record whose length word is plausible; 1 if any changed. */
static int reseal(uint8_t *b, size_t size)
{
    int changed = 0;
    uint32_t len;
    for (size_t off = 0; size - off >= WALREC_HDR; off += WALREC_HDR + len) {
        if (walrec_header(b + off, &len) < 0 || size - off - WALREC_HDR < len)
            break;
        uint32_t crc = crc32c(0, b + off + WALREC_HDR, len);
        changed |= walrec_get32(b + off + 4) != crc;
        walrec_put32(b + off + 4, crc);
    }
    return changed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size);
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        abort();
    memcpy(copy, data, size);
    if (reseal(copy, size))
        run(copy, size);
    free(copy);
    return 0;
}
