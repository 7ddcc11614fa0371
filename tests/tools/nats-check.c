/* nats-check: reads every message of a cascaded cluster's JetStream stream back (by sequence)
 * and checks what producers published (DESIGN §9): each message a msgpack array of event maps
 * on <prefix>.<p>; with --expect, every post listed there is present, in the partition of the
 * routing key listed beside it (xxh64(key) mod P), every copy of a post is the same bytes (a
 * resend, never another event), and no post is there that the list does not name.
 * usage: nats-check --nats URLS [--stream NAME] [--expect FILE] [--dump FILE]
 * Prints one line of counts; exit 0 when every check holds, 1 when one does not, 2 on errors.
 * nats-check --nats URLS [--stream NAME] --consumers: lists the stream's consumers instead, one
 * "consumer NAME pending N ack_pending M" line each (a lost node's durables: docs/cluster.md). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <msgpack.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct post {
    uint64_t id;  /* xxh64 of the post id; 0: empty slot */
    uint64_t fp;  /* xxh64 of the first copy's bytes */
    int32_t part; /* partition of its first copy, -1 before one is seen */
    int32_t want; /* partition --expect says, -1 when not listed */
    uint32_t copies;
};

struct table {
    struct post *s;
    size_t mask, used;
};

static struct post *find(struct table *t, uint64_t id)
{
    if ((t->used + 1) * 2 > t->mask + 1) {
        struct table n = {calloc((t->mask + 1) * 2, sizeof(struct post)), (t->mask + 1) * 2 - 1, 0};
        if (!n.s) {
            fprintf(stderr, "nats-check: out of memory\n");
            exit(2);
        }
        for (size_t i = 0; i <= t->mask; i++) {
            if (t->s[i].id) {
                size_t j = t->s[i].id & n.mask;
                while (n.s[j].id)
                    j = (j + 1) & n.mask;
                n.s[j] = t->s[i];
                n.used++;
            }
        }
        free(t->s);
        *t = n;
    }
    size_t i = id & t->mask;
    while (t->s[i].id && t->s[i].id != id)
        i = (i + 1) & t->mask;
    if (!t->s[i].id) {
        t->s[i] = (struct post){.id = id, .part = -1, .want = -1};
        t->used++;
    }
    return &t->s[i];
}

static uint64_t id_hash(const char *s, size_t len)
{
    uint64_t h = XXH64(s, len, 7);
    return h ? h : 1;
}

/* The post id of an event map as bytes (a string, or an unsigned int's digits). */
static int post_of(const msgpack_object *m, char num[24], const char **s, size_t *len)
{
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR || kv->key.via.str.size != 4 ||
            memcmp(kv->key.via.str.ptr, "post", 4))
            continue;
        if (kv->val.type == MSGPACK_OBJECT_STR) {
            *s = kv->val.via.str.ptr;
            *len = kv->val.via.str.size;
            return 1;
        }
        if (kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            *len = (size_t)snprintf(num, 24, "%" PRIu64, kv->val.via.u64);
            *s = num;
            return 1;
        }
    }
    return 0;
}

struct counts {
    uint64_t messages, events, bad, conflicting, misplaced, missing, unexpected, noid;
};

static void take_message(natsMsg *msg, uint32_t parts, struct table *t, struct counts *c,
                         FILE *dump)
{
    const char *subj = natsMsg_GetSubject(msg), *dot = strrchr(subj, '.');
    long part = dot ? strtol(dot + 1, NULL, 10) : -1;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    c->messages++;
    if (part < 0 || (uint32_t)part >= parts ||
        msgpack_unpack_next(&u, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &off) !=
            MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_ARRAY) {
        fprintf(stderr, "nats-check: message on %s is not a msgpack array of events\n", subj);
        c->bad++;
        msgpack_unpacked_destroy(&u);
        return;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (uint32_t i = 0; i < u.data.via.array.size; i++) {
        const msgpack_object *ev = &u.data.via.array.ptr[i];
        char num[24];
        const char *s;
        size_t len;
        c->events++;
        if (ev->type != MSGPACK_OBJECT_MAP || !post_of(ev, num, &s, &len)) {
            c->noid++; /* an event without a post: the nodes reject it; nothing to place */
            continue;
        }
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        sb.size = 0;
        msgpack_pack_object(&pk, *ev);
        uint64_t fp = XXH64(sb.data, sb.size, 0);
        struct post *p = find(t, id_hash(s, len));
        if (dump)
            fprintf(dump, "%ld\t%.*s\n", part, (int)len, s);
        if (p->copies++ == 0) {
            p->fp = fp;
            p->part = (int32_t)part;
        } else if (p->fp != fp || p->part != part) {
            if (c->conflicting++ < 10)
                fprintf(stderr, "nats-check: post %.*s: copies that differ (partitions %d, %ld)\n",
                        (int)len, s, p->part, part);
        }
    }
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&u);
}

/* FILE: "post<TAB>routing key" lines. */
static int load_expect(const char *path, uint32_t parts, struct table *t)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "nats-check: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] == '\n')
            line[--n] = 0;
        char *tab = strchr(line, '\t');
        if (!tab)
            continue;
        struct post *p = find(t, id_hash(line, (size_t)(tab - line)));
        p->want = (int32_t)(XXH64(tab + 1, strlen(tab + 1), 0) % parts);
    }
    free(line);
    fclose(f);
    return 0;
}

/* --consumers: every consumer of the stream with what it has not delivered and not had acked. */
static int list_consumers(jsCtx *js, const char *stream)
{
    jsConsumerInfoList *list = NULL;
    jsErrCode jerr = 0;
    natsStatus st = NATS_TIMEOUT;
    for (int tries = 0; tries < 50 && st != NATS_OK && st != NATS_NOT_FOUND; tries++) {
        if (tries)
            nats_Sleep(200); /* an election may be under way */
        st = js_Consumers(&list, js, stream, NULL, &jerr);
    }
    if (st == NATS_NOT_FOUND)
        return 0; /* no consumers at all */
    if (st != NATS_OK) {
        fprintf(stderr, "nats-check: consumers of %s: %s (%d)\n", stream, natsStatus_GetText(st),
                (int)jerr);
        return 2;
    }
    for (int i = 0; i < list->Count; i++) {
        const jsConsumerInfo *ci = list->List[i];
        printf("consumer %s pending %" PRIu64 " ack_pending %" PRId64 "\n", ci->Name,
               ci->NumPending, (int64_t)ci->NumAckPending);
    }
    jsConsumerInfoList_Destroy(list);
    return 0;
}

int main(int argc, char **argv)
{
    const char *urls = NULL, *stream = "SHARES", *expect = NULL, *dump_path = NULL;
    static const struct option lo[] = {{"nats", required_argument, 0, 'n'},
                                       {"stream", required_argument, 0, 's'},
                                       {"expect", required_argument, 0, 'e'},
                                       {"dump", required_argument, 0, 'd'},
                                       {"consumers", no_argument, 0, 'c'},
                                       {0, 0, 0, 0}};
    int c, consumers = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 'n')
            urls = optarg;
        else if (c == 's')
            stream = optarg;
        else if (c == 'e')
            expect = optarg;
        else if (c == 'd')
            dump_path = optarg;
        else if (c == 'c')
            consumers = 1;
        else
            return 2;
    }
    if (!urls) {
        fprintf(stderr,
                "usage: nats-check --nats URLS [--stream NAME] [--expect FILE] [--dump FILE]\n"
                "       nats-check --nats URLS [--stream NAME] --consumers\n");
        return 2;
    }
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus st = natsConnection_ConnectTo(&nc, urls);
    if (st == NATS_OK)
        st = natsConnection_JetStream(&js, nc, NULL);
    for (int tries = 0; st == NATS_OK && tries < 50; tries++) { /* an election may be under way */
        if ((st = js_GetStreamInfo(&si, js, stream, NULL, &jerr)) == NATS_OK ||
            jerr == JSStreamNotFoundErr)
            break;
        st = NATS_OK;
        nats_Sleep(200);
    }
    if (st != NATS_OK || !si) {
        fprintf(stderr, "nats-check: stream %s: %s (%d)\n", stream, natsStatus_GetText(st),
                (int)jerr);
        return 2;
    }
    if (consumers) {
        int rc = list_consumers(js, stream);
        jsStreamInfo_Destroy(si);
        jsCtx_Destroy(js);
        natsConnection_Destroy(nc);
        nats_Close();
        return rc;
    }
    uint32_t parts = (uint32_t)si->Config->SubjectsLen;
    uint64_t first = si->State.FirstSeq, last = si->State.LastSeq;
    struct table t = {calloc(1024, sizeof(struct post)), 1023, 0};
    struct counts k = {0};
    FILE *dump = dump_path ? fopen(dump_path, "w") : NULL;
    if (!t.s || (expect && load_expect(expect, parts, &t)) || (dump_path && !dump))
        return 2;
    for (uint64_t seq = first; seq && seq <= last; seq++) {
        natsMsg *msg = NULL;
        st = NATS_TIMEOUT;
        for (int tries = 0; tries < 50 && st != NATS_OK && st != NATS_NOT_FOUND; tries++) {
            if (tries)
                nats_Sleep(200);
            st = js_GetMsg(&msg, js, stream, seq, NULL, &jerr);
        }
        if (st == NATS_NOT_FOUND)
            continue;
        if (st != NATS_OK) {
            fprintf(stderr, "nats-check: message %" PRIu64 ": %s\n", seq, natsStatus_GetText(st));
            return 2;
        }
        take_message(msg, parts, &t, &k, dump);
        natsMsg_Destroy(msg);
    }
    for (size_t i = 0; i <= t.mask; i++) {
        struct post *p = &t.s[i];
        if (!p->id)
            continue;
        if (expect && p->want < 0)
            k.unexpected++;
        else if (p->copies == 0)
            k.missing++;
        else if (expect && p->part != p->want)
            k.misplaced++;
    }
    printf("partitions %" PRIu32 " messages %" PRIu64 " events %" PRIu64
           " posts %zu missing %" PRIu64 " misplaced %" PRIu64 " conflicting %" PRIu64
           " unexpected %" PRIu64 " bad %" PRIu64 " without_post %" PRIu64 "\n",
           parts, k.messages, k.events, t.used, k.missing, k.misplaced, k.conflicting, k.unexpected,
           k.bad, k.noid);
    if (dump)
        fclose(dump);
    free(t.s);
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return k.missing || k.misplaced || k.conflicting || k.unexpected || k.bad ? 1 : 0;
}
