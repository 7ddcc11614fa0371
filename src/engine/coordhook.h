/* The engine's feed of live coordination (engine/coordlive, DESIGN §3): from each applied post,
 * its key of each kind, one call on the apply path (coordhook_post). Off unless enabled
 * (coordhook_enable): the live state costs ~80-250 B per event on generated workloads
 * (bench/results/coordlive-2026-12-08.md), more than the rest of the engine.
 *
 * Keys (§3): reshare = the parent post (its id, a placeholder's until its event comes: the same
 * id) of a share or quote; reply = the parent of a reply; link = the post's own content, else its
 * cascade root's. Only the link key can come late: a post without content under a placeholder
 * has none until the placeholder is filled by a root with content, or joins such a cascade. Then
 * the placeholder's subtree is walked, a budget of nodes and meetings per applied post (so that
 * a big subtree never holds the engine thread: issue 18), and while a walk is under way the
 * instances say that nothing is exact. A bit per post id says whether its link key was fed (ids are
 * reused after retention: the bit is reset when a post is applied). */
#ifndef ENGINE_COORDHOOK_H
#define ENGINE_COORDHOOK_H

#include <stdint.h>

#include "engine/coordlive.h"

struct engine;
struct coordhook;

/* Attaches live coordination to e (one coordlive instance per kind; p NULL: the defaults), for
 * the posts applied from now on. 0, -EEXIST, -EINVAL or -ENOMEM. Freed by coordhook_disable,
 * which the owner of e calls before engine_free. */
int coordhook_enable(struct engine *e, const struct coordlive_params *p);
void coordhook_disable(struct engine *e);

/* The apply path's call: post p was just applied (filled: it was a placeholder). Never fails:
 * an allocation failure leaves the instances saying nothing is exact. */
void coordhook_post(struct engine *e, uint32_t p, int filled);

/* Finishes the subtree walks under way (tests; an idle writer). */
void coordhook_drain(struct engine *e);

/* The walks' budget per applied post (nodes, meetings; defaults 256, 4096), for tests and
 * tuning; and whether a walk is under way. */
void coordhook_budget(struct engine *e, uint32_t nodes, uint64_t meetings);
int coordhook_walking(const struct engine *e);

/* The instance of a kind (enum coordlive_kind), NULL when off. Owned by the engine. */
struct coordlive *coordhook_instance(const struct engine *e, int kind);

#endif
