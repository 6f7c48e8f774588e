/*
 * strset.h — an open-addressing hash set of strings (custom_id uniqueness, the set of
 * lines already finished on resume). Keys are borrowed: the caller keeps them alive.
 */
#ifndef NS_UTIL_STRSET_H
#define NS_UTIL_STRSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct strset {
    const char **keys;
    uint64_t *hashes;
    size_t cap, n;
};

void strset_init(struct strset *s);
void strset_release(struct strset *s);
/* 0 added, 1 already present, NS_ERR_NOMEM */
int strset_add(struct strset *s, const char *key);
bool strset_has(const struct strset *s, const char *key);
uint64_t strset_hash(const void *data, size_t n, uint64_t seed);

#endif
