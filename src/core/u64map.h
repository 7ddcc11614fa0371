/* The uint64 hash map (u64map_*): declared in the public include/cascade/u64map.h, which the tools
 * use too; this header stays for core's own callers. */
#ifndef CORE_U64MAP_H
#define CORE_U64MAP_H

#include "cascade/u64map.h"

#endif
