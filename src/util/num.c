/*
 * num.c — see num.h.
 */
#include "num.h"
#include "status.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int num_parse_long(const char *s, long long lo, long long hi, long long *out)
{
    if (!s || !*s)
        return NS_ERR_INVALID;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return NS_ERR_INVALID;
    *out = v;
    return NS_OK;
}

int num_parse_size(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-')
        return NS_ERR_INVALID;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return NS_ERR_INVALID;
    static const struct {
        const char *sfx;
        unsigned long long mul;
    } units[] = {{"", 1},           {"k", 1000ULL},        {"K", 1000ULL},   {"KB", 1000ULL},
                 {"M", 1000000ULL}, {"MB", 1000000ULL},    {"G", 1000000000ULL}, {"GB", 1000000000ULL},
                 {"KiB", 1ULL << 10}, {"MiB", 1ULL << 20}, {"GiB", 1ULL << 30}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].sfx) == 0) {
            if (v > UINT64_MAX / units[i].mul)
                return NS_ERR_INVALID;
            *out = v * units[i].mul;
            return NS_OK;
        }
    }
    return NS_ERR_INVALID;
}
