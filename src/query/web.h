/* The web view's files (DESIGN §5: `/`, `/ui/cascade/<id>`, `/ui/actor/<id>`), embedded in the
 * binary at build time from the bundle web/build.mjs writes, so that the server needs no files
 * and no Node.js at run time. The table itself is generated (cmake/web-embed.c). */
#ifndef QUERY_WEB_H
#define QUERY_WEB_H

#include <stddef.h>

struct web_asset {
    const char *name;  /* file name in the bundle: "index.html", "app.js", "app.css" */
    const char *ctype; /* Content-Type */
    const unsigned char *data;
    size_t len;
};

/* Generated: every file of the bundle. web_bundle_built is 0 when the build had no Node.js or
 * no web/node_modules, and the table then holds only a page that says how to build it. */
extern const struct web_asset web_assets[];
extern const size_t web_nassets;
extern const int web_bundle_built;

/* The file that answers a request path (without its query string): index.html for `/`, `/ui`
 * and every `/ui/...` path (the page routes them itself), `/assets/<name>` for the others.
 * NULL: not one of the web view's paths, or no such file. Static data, never freed. */
const struct web_asset *web_find(const char *path, size_t len);

/* Headers every web view answer carries: the page loads nothing from anywhere but this server. */
#define WEB_EXTRA_HEADERS                                                                          \
    "X-Content-Type-Options: nosniff\r\n"                                                          \
    "Content-Security-Policy: default-src 'self'; img-src 'self' data: blob:; "                    \
    "style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'\r\n"

#endif
