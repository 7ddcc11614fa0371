/* The retention model: engine_set_retention's schedule (include/cascade/engine.h) simulated
 * over the delivery model's set of held posts, written from the header's words and not from
 * retention.c. After each accepted event the newest ts may have reached sweep_at; a sweep then
 * moves the cut to the second at or below newest - ms and drops every tree whose newest held
 * post is older than the cut, placeholders and all; the next sweep is due once the cut can move
 * a step further. Trees are recomputed from scratch at each sweep (a held post hangs below its
 * parent when the parent is held, else below a placeholder for it, or is a root), so the model
 * knows nothing of the engine's heap, its lazy refiling or its joined cascade ids. */
#include <stdlib.h>
#include <string.h>

#include "prop.h"

#define SECOND 1000

int64_t floor_second(int64_t ms)
{
    if (ms >= 0)
        return ms - ms % SECOND;
    return -((-ms + SECOND - 1) / SECOND) * SECOND; /* towards minus infinity, not zero */
}

void retain_init(struct retain *m, int64_t ms, uint32_t n)
{
    memset(m, 0, sizeof(*m));
    m->ms = ms;
    m->step = floor_second(ms / 64);
    if (m->step < SECOND)
        m->step = SECOND;
    m->top = calloc(n + 1, sizeof(*m->top));
    m->last = calloc(n + 1, sizeof(*m->last));
}

void retain_free(struct retain *m)
{
    free(m->top);
    free(m->last);
    memset(m, 0, sizeof(*m));
}

int retain_accepted(struct retain *m, int64_t ts)
{
    if (!m->any || ts > m->newest)
        m->newest = ts;
    m->any = 1;
    /* before the first sweep, sweep_at is "at once": the first accepted event sweeps */
    if (m->swept && m->newest < m->sweep_at)
        return 0;
    int64_t cut = floor_second(m->newest - m->ms);
    int due = !m->swept || cut > m->cut;
    if (due) {
        m->cut = cut;
        m->swept = 1;
        m->sweeps++;
    }
    m->sweep_at = m->cut + m->ms + m->step;
    return due;
}

uint32_t retain_sweep(struct retain *m, const struct forest *f, uint8_t *held, uint32_t *out)
{
    uint32_t n_out = 0;

    /* parents have lower indices: one forward pass finds each held post's top */
    for (uint32_t k = 0; k < f->n; k++) {
        int32_t p = f->nodes[k].parent;
        m->last[k] = INT64_MIN;
        if (!held[k])
            continue;
        m->top[k] = p < 0 ? (int32_t)k : held[p] ? m->top[p] : p;
    }
    for (uint32_t k = 0; k < f->n; k++)
        if (held[k] && f->nodes[k].ts > m->last[m->top[k]])
            m->last[m->top[k]] = f->nodes[k].ts;
    for (uint32_t t = 0; t < f->n; t++) /* a tree once, at its top (held root or placeholder) */
        m->evicted_cascades += m->last[t] != INT64_MIN && m->last[t] < m->cut;
    for (uint32_t k = 0; k < f->n; k++)
        if (held[k] && m->last[m->top[k]] < m->cut)
            out[n_out++] = k;
    for (uint32_t i = 0; i < n_out; i++)
        held[out[i]] = 0;
    m->evicted_posts += n_out;
    return n_out;
}
