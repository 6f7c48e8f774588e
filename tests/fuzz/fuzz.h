/*
 * fuzz.h — shared by the libFuzzer targets of tests/fuzz: the input split into a mode byte
 * (which parameters or route a target uses) and the bytes to parse, copied to a buffer of
 * exactly their size so AddressSanitizer reports any read past the end.
 */
#ifndef NS_TESTS_FUZZ_H
#define NS_TESTS_FUZZ_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The bytes after the mode byte (all of them when with_mode is 0), in a malloc'd buffer of
 * exactly *n bytes (1 when empty, never read); *mode is the first byte or 0. NULL when out
 * of memory. The caller frees. */
static inline char *fuzz_input(const uint8_t *data, size_t size, int with_mode, uint8_t *mode, size_t *n)
{
    size_t skip = with_mode && size ? 1 : 0;
    *mode = with_mode && size ? data[0] : 0;
    *n = size - skip;
    char *copy = malloc(*n ? *n : 1);
    if (copy && *n)
        memcpy(copy, data + skip, *n);
    return copy;
}

#endif
