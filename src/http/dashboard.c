/*
 * dashboard.c — see dashboard.h.
 */
#include "dashboard.h"

#include <string.h>

const struct dashboard_asset *dashboard_find(const char *path)
{
    for (const struct dashboard_asset *a = dashboard_assets; a->path; a++)
        if (strcmp(a->path, path) == 0)
            return a;
    return NULL;
}
