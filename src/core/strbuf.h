/* The byte buffer (struct strbuf, sb_*): declared in the public include/cascade/strbuf.h, which
 * the format layer and cascade-cli use too; this header stays for core's own callers. */
#ifndef CORE_STRBUF_H
#define CORE_STRBUF_H

#include "cascade/strbuf.h"

#endif
