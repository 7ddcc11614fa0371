/* msgpack map lookup (see mpmap.h). A linear walk: the maps read this way (an RPC error, an
 * answer's fields, a node) have a handful of keys. */
#include "core/mpmap.h"

#include <string.h>

static int key_is(const msgpack_object *k, const char *key, size_t len)
{
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == len &&
           memcmp(k->via.str.ptr, key, len) == 0;
}

const msgpack_object *mp_map_find(const msgpack_object_map *m, const char *key)
{
    size_t len = strlen(key);
    for (uint32_t i = 0; i < m->size; i++)
        if (key_is(&m->ptr[i].key, key, len))
            return &m->ptr[i].val;
    return NULL;
}

const msgpack_object *mp_map_get(const msgpack_object *map, const char *key)
{
    return map->type == MSGPACK_OBJECT_MAP ? mp_map_find(&map->via.map, key) : NULL;
}

const msgpack_object *mp_map_get_typed(const msgpack_object *map, const char *key,
                                       msgpack_object_type type)
{
    size_t len = strlen(key);
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (map->via.map.ptr[i].val.type == type && key_is(&map->via.map.ptr[i].key, key, len))
            return &map->via.map.ptr[i].val;
    return NULL;
}

const msgpack_object *mp_map_get_last(const msgpack_object *map, const char *key)
{
    size_t len = strlen(key);
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = map->via.map.size; i-- > 0;)
        if (key_is(&map->via.map.ptr[i].key, key, len))
            return &map->via.map.ptr[i].val;
    return NULL;
}
