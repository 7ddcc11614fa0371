/* The msgpack header scanner (mpscan_*): declared in the public include/cascade/mp.h, which the
 * clients use too; this header stays for core's own callers. */
#ifndef CORE_MPSCAN_H
#define CORE_MPSCAN_H

#include "cascade/mp.h"

#endif
