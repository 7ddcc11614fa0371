/* Looking a key up in a decoded msgpack map: the one walk every reader of a request, an answer
 * or an error map uses, so that they agree on which keys count (str only) and which of two equal
 * keys wins. */
#ifndef CORE_MPMAP_H
#define CORE_MPMAP_H

#include <msgpack.h>

/* The value of the first str key equal to key (bytes, case counts) in map, or NULL when map is
 * not a map or has no such key. Keys of other types (bin included) never match. */
const msgpack_object *mp_map_get(const msgpack_object *map, const char *key);

/* As mp_map_get, but only pairs whose value is of type count: the first "token" that is a str,
 * not the first "token". */
const msgpack_object *mp_map_get_typed(const msgpack_object *map, const char *key,
                                       msgpack_object_type type);

/* As mp_map_get, for a caller that holds the map's pairs already (map->via.map). */
const msgpack_object *mp_map_find(const msgpack_object_map *m, const char *key);

/* As mp_map_get, but the last of equal keys: for readers where a later duplicate overwrites an
 * earlier one, as the ingest port's events do. */
const msgpack_object *mp_map_get_last(const msgpack_object *map, const char *key);

#endif
