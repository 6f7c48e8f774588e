/*
 * path.c — see path.h.
 */
#include "path.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* the canonical name of a path whose last component may not exist yet: realpath(dir)/base */
static bool path_canonical(const char *p, char *out, size_t n)
{
    char dir[PATH_MAX], real[PATH_MAX];
    const char *slash = strrchr(p, '/');
    const char *base = slash ? slash + 1 : p;
    if (slash) {
        size_t dl = slash == p ? 1 : (size_t)(slash - p);
        if (dl >= sizeof(dir))
            return false;
        memcpy(dir, p, dl);
        dir[dl] = '\0';
    } else {
        snprintf(dir, sizeof(dir), ".");
    }
    if (!realpath(dir, real))
        return false;
    return snprintf(out, n, "%s/%s", real, base) < (int)n;
}

bool path_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    bool ha = stat(a, &sa) == 0, hb = stat(b, &sb) == 0;
    if (ha && hb)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    if (ha != hb)
        return false; /* one exists and the other does not: different names */
    char ca[PATH_MAX + 256], cb[PATH_MAX + 256];
    if (!path_canonical(a, ca, sizeof(ca)) || !path_canonical(b, cb, sizeof(cb)))
        return strcmp(a, b) == 0;
    return strcmp(ca, cb) == 0;
}
