/* The dispatch table (see method.h): which handler answers each method of the schema
 * (proto/schema.c). The schema states the server's limits as its own constants so that clients
 * need no server header; the checks below keep them equal to the constants they stand for. */
#include "query/method.h"

#include <string.h>

#include "analytics/coord.h"
#include "cascade/engine.h"
#include "cascade/event.h"
#include "query/handlers.h"

_Static_assert(QSCHEMA_ID_MAX == EVENT_ID_MAX, "schema: id bound");
_Static_assert(QSCHEMA_CONTENT_MAX == EVENT_CONTENT_MAX, "schema: content bound");
_Static_assert(QSCHEMA_LABEL_MAX == EVENT_LABEL_MAX, "schema: label bound");
_Static_assert(QSCHEMA_WINDOW_MAX_MS == ENGINE_GROWTH_HORIZON_MS, "schema: window bound");
_Static_assert(QSCHEMA_COORD_WINDOW_MS == COORD_DEFAULT_WINDOW_MS, "schema: coordination window");
_Static_assert(QSCHEMA_COORD_MIN_REPEATS == COORD_DEFAULT_MIN_REPEATS, "schema: min_repeats");
/* min_ratio is a double: not an integer constant expression for clang's _Static_assert, so
 * unit_test_method (test_schema_defaults) holds it equal to COORD_DEFAULT_MIN_RATIO. */

static const struct {
    const char *name;
    qhandler_fn run;
} handlers[] = {
    {"stats", handle_stats},
    {"cascade", handle_cascade},
    {"top_cascades", handle_top_cascades},
    {"actor", handle_actor},
    {"top_actors", handle_top_actors},
    {"actor_links", handle_actor_links},
    {"actor_cascades", handle_actor_cascades},
    {"content", handle_content},
    {"labels", handle_labels},
    {"labels_matched", handle_labels_matched},
    {"coordination", handle_coordination},
    {"path", handle_path},
    {"communities", handle_communities},
    {"analytics", handle_analytics},
    {"snapshot", handle_snapshot},
};

qhandler_fn qmethod_handler(const struct qmethod *m)
{
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
        if (strcmp(handlers[i].name, m->name) == 0)
            return handlers[i].run;
    return NULL;
}
