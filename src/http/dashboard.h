/*
 * dashboard.h — the web dashboard of `nightshift serve`: static files compiled into the
 * binary at build time (cmake/embed.cmake; uPlot comes from the npm registry through
 * scripts/bootstrap.sh, pinned and integrity-checked), and the JSON it polls.
 *
 * The page (index.html + app.js) holds no data: it reads the API with the user's key, so
 * the files are served without auth while every data route keeps the API's auth.
 */
#ifndef NS_API_DASHBOARD_H
#define NS_API_DASHBOARD_H

#include <stddef.h>

struct dashboard_asset {
    const char *path;            /* "/", "/dashboard/app.js", ... */
    const char *type;            /* Content-Type */
    const unsigned char *data;
    size_t len;
};

/* the generated table, ending with a NULL path */
extern const struct dashboard_asset dashboard_assets[];

/* the asset at a URL path, NULL when none */
const struct dashboard_asset *dashboard_find(const char *path);

#endif
