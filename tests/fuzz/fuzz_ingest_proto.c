/* libFuzzer target for the ingest decoder (src/net/ingest_proto.c). The input is a byte stream;
 * it is decoded twice, once fed whole and drained without stops, once fed in random-sized chunks
 * and drained with random stops, and both must give the same events, error and pending count.
 * The chunking, stops and (sometimes tiny) limits, the decoding cost's among them, come from a
 * hash of the input, so that seeds in corpus/ingest_proto/ are plain msgpack streams. (No
 * shared budget: what it refuses depends on when other values are drained, which differs
 * between the two runs by design.) */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_rng.h"
#include "net/ingest_proto.h"

/* What a run saw: a digest of every event, in order, and how it ended. */
struct run {
    uint64_t digest;
    long events;
    long stops;
    int feed_rc;
    char err[200];
    size_t pending;
    struct rng *rng; /* NULL: never stop */
};

static uint64_t mix_field(uint64_t h, const struct event_field *f)
{
    h = mix(h, f->type);
    switch (f->type) {
    case EVF_UINT:
        return mix(h, f->u);
    case EVF_NEGINT:
        return mix(h, (uint64_t)f->i);
    case EVF_STR:
        h = mix(h, f->len);
        /* reading every byte lets ASan check the pointer is still good */
        for (uint32_t i = 0; i < f->len; i++)
            h = mix(h, (uint8_t)f->str[i]);
        return h;
    case EVF_ABSENT:
    case EVF_NIL:
    case EVF_OTHER:
        return h;
    default:
        abort(); /* a type the decoder must never produce */
    }
}

static int on_event(void *ctx, const struct event_raw *raw)
{
    struct run *r = ctx;
    uint64_t h = r->digest;

    r->events++;
    if (!raw) {
        h = mix(h, 0xbad);
    } else {
        h = mix_field(h, &raw->post);
        h = mix_field(h, &raw->actor);
        h = mix_field(h, &raw->ts);
        h = mix_field(h, &raw->parent);
        h = mix_field(h, &raw->kind);
        h = mix_field(h, &raw->actor_type);
        h = mix_field(h, &raw->content);
        h = mix_field(h, &raw->label);
    }
    r->digest = mix(h, 0xe);
    if (r->rng && rng_below(r->rng, 3) == 0) {
        r->stops++;
        return 1;
    }
    return 0;
}

static void drain(struct ingest_decoder *d, struct run *r, bool until_idle)
{
    do {
        long before = r->events, n = ingest_decoder_drain(d, on_event, r);
        if (n < 0 || n != r->events - before)
            abort(); /* -ENOMEM cannot happen here; -EPROTO would be scanner and msgpack-c
                        disagreeing */
    } while (until_idle && !ingest_decoder_idle(d));
    if (until_idle && ingest_decoder_drain(d, on_event, r) != 0)
        abort();
}

static void finish(struct ingest_decoder *d, struct run *r, size_t fed)
{
    drain(d, r, true);
    snprintf(r->err, sizeof(r->err), "%s", ingest_decoder_error(d));
    r->pending = ingest_decoder_pending(d);
    if (r->pending > fed || (r->feed_rc != 0) != (r->err[0] != 0))
        abort();
    ingest_decoder_free(d);
}

static void run_whole(const uint8_t *data, size_t size, const struct ingest_limits *l,
                      struct run *r)
{
    struct ingest_decoder *d;

    memset(r, 0, sizeof(*r));
    if (ingest_decoder_new(l, &d) != 0)
        abort();
    r->feed_rc = ingest_decoder_feed(d, data, size);
    finish(d, r, size);
}

static void run_chunked(const uint8_t *data, size_t size, const struct ingest_limits *l,
                        struct rng *rng, struct run *r)
{
    struct ingest_decoder *d;
    size_t off = 0;

    memset(r, 0, sizeof(*r));
    r->rng = rng;
    if (ingest_decoder_new(l, &d) != 0)
        abort();
    while (off < size && r->feed_rc == 0) {
        /* mostly small pieces, sometimes large ones */
        uint32_t max = rng_below(rng, 4) == 0 ? 4096 : 16;
        size_t k = 1 + rng_below(rng, max);
        if (k > size - off)
            k = size - off;
        r->feed_rc = ingest_decoder_feed(d, data + off, k);
        off += k;
        if (ingest_decoder_pending(d) > off)
            abort();
        if (rng_below(rng, 4) != 0) /* sometimes feed again before draining */
            drain(d, r, false);
    }
    finish(d, r, size);
}

static void pick_limits(struct rng *rng, struct ingest_limits *l)
{
    ingest_limits_default(l);
    if (rng_below(rng, 4) != 0)
        return;
    l->max_value_bytes = 1 + rng_below(rng, 4096);
    l->max_array = rng_below(rng, 20);
    l->max_map = rng_below(rng, 10);
    l->max_depth = rng_below(rng, 40);
    l->max_str = rng_below(rng, 64);
    l->max_value_memory = rng_below(rng, 2) ? 0 : 1 + rng_below(rng, 1u << 16); /* 0: no bound */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rng rng = {0x9e3779b97f4a7c15ull};
    struct ingest_limits l;
    struct run whole, chunked;

    for (size_t i = 0; i < size; i++)
        rng.s = mix(rng.s, data[i]);
    rng.s |= 1;
    pick_limits(&rng, &l);
    run_whole(data, size, &l, &whole);
    run_chunked(data, size, &l, &rng, &chunked);
    if (whole.events != chunked.events || whole.digest != chunked.digest ||
        whole.feed_rc != chunked.feed_rc || strcmp(whole.err, chunked.err) != 0 ||
        whole.pending != chunked.pending) {
        fprintf(stderr, "whole: %ld events, rc %d, \"%s\", pending %zu\n", whole.events,
                whole.feed_rc, whole.err, whole.pending);
        fprintf(stderr, "chunked: %ld events, rc %d, \"%s\", pending %zu\n", chunked.events,
                chunked.feed_rc, chunked.err, chunked.pending);
        abort();
    }
    return 0;
}
