/* Batches and the queue between the network loop and the writer thread (see batch.h). */
#include "net/batch.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define BLOCK_SIZE (256u * 1024) /* > the longest event's strings (3 ids + content + label) */

int batch_new(int kind, uint32_t cap, struct batch **out)
{
    struct batch *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->kind = kind;
    if (kind == BATCH_INGEST) {
        b->cap = cap;
        b->outcome = malloc(cap);
        b->vidx = malloc(cap * sizeof(uint32_t));
        b->evs = malloc(cap * sizeof(struct event));
        if (!b->outcome || !b->vidx || !b->evs) {
            batch_free(b);
            return -ENOMEM;
        }
    }
    *out = b;
    return 0;
}

void batch_free(struct batch *b)
{
    if (!b)
        return;
    for (uint32_t i = 0; i < b->nblocks; i++)
        free(b->blocks[i]);
    free(b->blocks);
    free(b->outcome);
    free(b->vidx);
    free(b->evs);
    free(b->segs);
    free(b->req);
    free(b->resp);
    free(b);
}

void batch_reset(struct batch *b)
{
    b->n = b->nvalid = b->nsegs = 0;
    /* keep the first block, drop the rest: a burst must not pin memory forever */
    for (uint32_t i = 1; i < b->nblocks; i++)
        free(b->blocks[i]);
    b->nblocks = b->nblocks ? 1 : 0;
    b->block_used = 0;
    b->next = NULL;
}

/* Room for len bytes of strings; NULL when out of memory. */
static char *arena_alloc(struct batch *b, size_t len)
{
    if (b->nblocks == 0 || b->block_used + len > BLOCK_SIZE) {
        if (b->nblocks == b->cap_blocks) {
            uint32_t cap = b->cap_blocks ? b->cap_blocks * 2 : 8;
            char **blocks = realloc(b->blocks, cap * sizeof(char *));
            if (!blocks)
                return NULL;
            b->blocks = blocks;
            b->cap_blocks = cap;
        }
        char *blk = malloc(BLOCK_SIZE);
        if (!blk)
            return NULL;
        b->blocks[b->nblocks++] = blk;
        b->block_used = 0;
    }
    char *p = b->blocks[b->nblocks - 1] + b->block_used;
    b->block_used += (uint32_t)len;
    return p;
}

static int copy_str(struct batch *b, const char **s, size_t len)
{
    if (!*s || len == 0)
        return 0;
    char *p = arena_alloc(b, len);
    if (!p)
        return -ENOMEM;
    memcpy(p, *s, len);
    *s = p;
    return 0;
}

static int copy_strings(struct batch *b, struct event *ev)
{
    int rc = 0;
    if (ev->post.str)
        rc = copy_str(b, &ev->post.str, ev->post.len);
    if (!rc && ev->actor.str)
        rc = copy_str(b, &ev->actor.str, ev->actor.len);
    if (!rc && ev->parent.str)
        rc = copy_str(b, &ev->parent.str, ev->parent.len);
    if (!rc)
        rc = copy_str(b, &ev->content, ev->content_len);
    if (!rc)
        rc = copy_str(b, &ev->label, ev->label_len);
    return rc;
}

static int add_seg(struct batch *b, uint32_t conn, uint32_t gen, uint64_t no)
{
    if (b->nsegs) {
        struct batch_seg *s = &b->segs[b->nsegs - 1];
        if (s->conn == conn && s->gen == gen && s->base + s->n == no) {
            s->n++;
            return 0;
        }
    }
    if (b->nsegs == b->cap_segs) {
        uint32_t cap = b->cap_segs ? b->cap_segs * 2 : 64;
        struct batch_seg *segs = realloc(b->segs, cap * sizeof(*segs));
        if (!segs)
            return -ENOMEM;
        b->segs = segs;
        b->cap_segs = cap;
    }
    b->segs[b->nsegs++] = (struct batch_seg){conn, gen, b->n, 1, no};
    return 0;
}

int batch_add(struct batch *b, uint32_t conn, uint32_t gen, uint64_t no,
              const struct event_raw *raw)
{
    if (batch_full(b))
        return -ENOSPC;
    struct event *ev = &b->evs[b->nvalid];
    int rc = raw ? event_validate(raw, ev) : EVENT_REJ_BAD_TYPE;
    if (rc == EVENT_OK && copy_strings(b, ev))
        return -ENOMEM;
    if (add_seg(b, conn, gen, no))
        return -ENOMEM;
    b->outcome[b->n] = (uint8_t)rc;
    b->vidx[b->n] = rc == EVENT_OK ? b->nvalid++ : UINT32_MAX;
    b->n++;
    return 0;
}

/* ---------------------------------------------------------------- queue */

int bqueue_init(struct bqueue *q, int with_eventfd)
{
    memset(q, 0, sizeof(*q));
    q->efd = -1;
    if (with_eventfd && (q->efd = eventfd(0, EFD_CLOEXEC)) < 0)
        return -errno;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    return 0;
}

void bqueue_destroy(struct bqueue *q)
{
    struct batch *b = q->head;
    while (b) {
        struct batch *next = b->next;
        batch_free(b);
        b = next;
    }
    if (q->efd >= 0)
        close(q->efd);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}

/* Queries go after the queries already waiting but before any ingest batch: a query is answered
 * between two chunks of ingest, not after everything queued before it. */
static void push_query(struct bqueue *q, struct batch *b)
{
    struct batch **at = q->qlast ? &q->qlast->next : &q->head;
    b->next = *at;
    *at = b;
    if (!b->next)
        q->tail = b;
    q->qlast = b;
    atomic_fetch_add_explicit(&q->nq, 1, memory_order_release);
}

void bqueue_push(struct bqueue *q, struct batch *b)
{
    b->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (b->kind == BATCH_QUERY) {
        push_query(q, b);
    } else {
        if (q->tail)
            q->tail->next = b;
        else
            q->head = b;
        q->tail = b;
    }
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    if (q->efd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(q->efd, &one, sizeof(one));
        (void)w; /* an eventfd write fails only on counter overflow: the reader is awake anyway */
    }
}

static void unlink_head(struct bqueue *q)
{
    struct batch *b = q->head;
    q->head = b->next;
    if (!q->head)
        q->tail = NULL;
    if (q->qlast == b)
        q->qlast = NULL;
    if (b->kind == BATCH_QUERY)
        atomic_fetch_sub_explicit(&q->nq, 1, memory_order_relaxed);
    b->next = NULL;
}

struct batch *bqueue_pop_wait(struct bqueue *q, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&q->mu);
    while (!q->head && pthread_cond_timedwait(&q->cv, &q->mu, &until) == 0)
        ;
    struct batch *b = q->head;
    if (b)
        unlink_head(q);
    pthread_mutex_unlock(&q->mu);
    return b;
}

struct batch *bqueue_pop_query(struct bqueue *q)
{
    if (atomic_load_explicit(&q->nq, memory_order_acquire) == 0)
        return NULL;
    pthread_mutex_lock(&q->mu);
    struct batch *b = q->head;
    if (b && b->kind == BATCH_QUERY)
        unlink_head(q);
    else
        b = NULL;
    pthread_mutex_unlock(&q->mu);
    return b;
}

struct batch *bqueue_take_all(struct bqueue *q)
{
    pthread_mutex_lock(&q->mu);
    struct batch *b = q->head;
    q->head = q->tail = q->qlast = NULL;
    atomic_store_explicit(&q->nq, 0, memory_order_relaxed);
    pthread_mutex_unlock(&q->mu);
    return b;
}
