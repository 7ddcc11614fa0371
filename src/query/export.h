/* Cascade tree exports for Gephi and Graphviz: GraphML and DOT, from a `cascade` result taken
 * with tree=true (its metrics plus `nodes`: post, parent, actor, ts, depth, kind, placeholder). */
#ifndef QUERY_EXPORT_H
#define QUERY_EXPORT_H

#include <msgpack.h>

#include "core/strbuf.h"

/* 0, or -EINVAL when result is not a cascade result with nodes (-ENOMEM: out->oom is set). */
int export_graphml(const msgpack_object *result, struct strbuf *out);
int export_dot(const msgpack_object *result, struct strbuf *out);

#endif
