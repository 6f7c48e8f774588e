/*
 * strset.c — linear probing, power-of-two capacity, load factor <= 1/2.
 */
#include "strset.h"
#include "status.h"

#include <stdlib.h>
#include <string.h>

uint64_t strset_hash(const void *data, size_t n, uint64_t seed)
{
    /* FNV-1a over 8-byte words, then a final mix: fast and good enough for ids */
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001b3ULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    while (n--) {
        h = (h ^ *p++) * 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

void strset_init(struct strset *s)
{
    memset(s, 0, sizeof(*s));
}

void strset_release(struct strset *s)
{
    free(s->keys);
    free(s->hashes);
    strset_init(s);
}

static size_t strset_find(const char **keys, const uint64_t *hashes, size_t cap, const char *key, uint64_t h)
{
    size_t i = (size_t)h & (cap - 1);
    while (keys[i] && !(hashes[i] == h && strcmp(keys[i], key) == 0))
        i = (i + 1) & (cap - 1);
    return i;
}

static int strset_grow(struct strset *s)
{
    size_t cap = s->cap ? s->cap * 2 : 64;
    const char **keys = calloc(cap, sizeof(*keys));
    uint64_t *hashes = calloc(cap, sizeof(*hashes));
    if (!keys || !hashes) {
        free(keys);
        free(hashes);
        return NS_ERR_NOMEM;
    }
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->keys[i])
            continue;
        size_t j = strset_find(keys, hashes, cap, s->keys[i], s->hashes[i]);
        keys[j] = s->keys[i];
        hashes[j] = s->hashes[i];
    }
    free(s->keys);
    free(s->hashes);
    s->keys = keys;
    s->hashes = hashes;
    s->cap = cap;
    return NS_OK;
}

int strset_add(struct strset *s, const char *key)
{
    if ((s->n + 1) * 2 > s->cap) {
        int rc = strset_grow(s);
        if (rc)
            return rc;
    }
    uint64_t h = strset_hash(key, strlen(key), 0);
    size_t i = strset_find(s->keys, s->hashes, s->cap, key, h);
    if (s->keys[i])
        return 1;
    s->keys[i] = key;
    s->hashes[i] = h;
    s->n++;
    return 0;
}

bool strset_has(const struct strset *s, const char *key)
{
    if (!s->cap)
        return false;
    uint64_t h = strset_hash(key, strlen(key), 0);
    return s->keys[strset_find(s->keys, s->hashes, s->cap, key, h)] != NULL;
}
