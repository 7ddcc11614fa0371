/* Hashing (hash_bytes, hash_u64): declared in the public include/cascade/hash.h, which the tools
 * use too; this header stays for core's own callers. */
#ifndef CORE_HASH_H
#define CORE_HASH_H

#include "cascade/hash.h"

#endif
