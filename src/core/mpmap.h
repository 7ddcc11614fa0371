/* The msgpack map lookup (mp_map_*): declared in the public include/cascade/mp.h, which the
 * clients use too; this header stays for core's own callers. */
#ifndef CORE_MPMAP_H
#define CORE_MPMAP_H

#include "cascade/mp.h"

#endif
