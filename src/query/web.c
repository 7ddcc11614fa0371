/* Maps the web view's request paths to its embedded files (see web.h). The page does its own
 * routing between the overview, cascade and actor views, so every /ui path gets index.html. */
#include "query/web.h"

#include <string.h>

static const struct web_asset *by_name(const char *name, size_t len)
{
    for (size_t i = 0; i < web_nassets; i++)
        if (strlen(web_assets[i].name) == len && memcmp(web_assets[i].name, name, len) == 0)
            return &web_assets[i];
    return NULL;
}

static int is_page(const char *path, size_t len)
{
    if (len == 1 && path[0] == '/')
        return 1;
    if (len < 3 || memcmp(path, "/ui", 3) != 0)
        return 0;
    return len == 3 || path[3] == '/';
}

const struct web_asset *web_find(const char *path, size_t len)
{
    static const char assets[] = "/assets/";
    const size_t alen = sizeof(assets) - 1;
    if (is_page(path, len))
        return by_name("index.html", 10);
    if (len > alen && memcmp(path, assets, alen) == 0 && !memchr(path + alen, '/', len - alen))
        return by_name(path + alen, len - alen);
    return NULL;
}
