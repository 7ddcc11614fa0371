/* The state fuzz_rpc answers requests against, shared with make_rpc_corpus so that the seeds name
 * posts, actors, labels and content keys that exist. */
#ifndef FUZZ_RPC_H
#define FUZZ_RPC_H

#include "cascade/engine.h"

struct analytics;

/* Ids the engine holds (the corpus uses them). */
#define FUZZ_RPC_POST    "p2"
#define FUZZ_RPC_ACTOR   "alice"
#define FUZZ_RPC_LABEL   "false"
#define FUZZ_RPC_CONTENT "https://example.org/claim"

/* A small engine: a few cascades (one under a placeholder, one with integer ids), labels,
 * content keys, both actor types, every kind, and a group of actors sharing the same keys within
 * seconds (for coordination). Aborts on failure. */
struct engine *fuzz_rpc_engine(void);

/* An analytics worker holding its first result for e (waits for it). Aborts on failure. */
struct analytics *fuzz_rpc_analytics(struct engine *e);

#endif
