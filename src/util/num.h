/*
 * num.h — strict number parsing for command-line and config values (no atoi: a value
 * that is not entirely a number in range is an error, never 0).
 */
#ifndef NS_UTIL_NUM_H
#define NS_UTIL_NUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* decimal integer in [lo, hi]; 0 ok, NS_ERR_INVALID otherwise */
int num_parse_long(const char *s, long long lo, long long hi, long long *out);
/* byte size with optional suffix k, M, G (powers of 1000) or KiB, MiB, GiB */
int num_parse_size(const char *s, uint64_t *out);

#endif
