/*
 * keycache.c — see keycache.h.
 */
#include "keycache.h"
#include "../util/clock.h"

#include "../util/status.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEYCACHE_SLOTS 256 /* power of two */

struct kc_entry {
    char hash[65];              /* "" = empty */
    double expires;
    struct store_key key;
};

struct keycache {
    struct keycache_params p;
    struct store *st;
    pthread_mutex_t mu;
    double count_expires;       /* the cached key count is valid until then */
    int64_t count;
    bool keys_seen;             /* a key count > 0 was seen once: closed for good */
    struct kc_entry slot[KEYCACHE_SLOTS];
};

struct keycache_params keycache_default_params(void)
{
    struct keycache_params p = {.ttl_s = 2.0};
    return p;
}

static double kc_now(const struct keycache *kc)
{
    return kc->p.now ? kc->p.now(kc->p.now_ud) : clock_now();
}

struct keycache *keycache_init(struct keycache_params p, struct store *st)
{
    struct keycache *kc = calloc(1, sizeof(*kc));
    if (!kc)
        return NULL;
    kc->p = p;
    kc->st = st;
    kc->count_expires = -1;
    pthread_mutex_init(&kc->mu, NULL);
    return kc;
}

void keycache_free(struct keycache *kc)
{
    if (!kc)
        return;
    pthread_mutex_destroy(&kc->mu);
    free(kc);
}

/* the hash is already uniform: its first 8 hex digits pick the slot */
static struct kc_entry *kc_slot(struct keycache *kc, const char *hash_hex)
{
    unsigned v = 0;
    for (int i = 0; i < 8 && hash_hex[i]; i++) {
        char c = hash_hex[i];
        v = v * 16 + (unsigned)(c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0');
    }
    return &kc->slot[v & (KEYCACHE_SLOTS - 1)];
}

int keycache_key_get(struct keycache *kc, const char *hash_hex, struct store_key *out)
{
    if (strlen(hash_hex) != 64)
        return NS_ERR_NOT_FOUND;
    double now = kc_now(kc);
    pthread_mutex_lock(&kc->mu);
    struct kc_entry *e = kc_slot(kc, hash_hex);
    if (e->hash[0] && now < e->expires && memcmp(e->hash, hash_hex, 64) == 0) {
        *out = e->key;
        pthread_mutex_unlock(&kc->mu);
        return NS_OK;
    }
    pthread_mutex_unlock(&kc->mu);
    /* the store read runs unlocked: a slow store (PostgreSQL) holds up no other request */
    struct store_key k;
    int rc = store_key_get(kc->st, hash_hex, &k);
    if (rc != NS_OK)
        return rc;
    pthread_mutex_lock(&kc->mu);
    memcpy(e->hash, hash_hex, 65);
    e->expires = now + kc->p.ttl_s;
    e->key = k;
    pthread_mutex_unlock(&kc->mu);
    *out = k;
    return NS_OK;
}

bool keycache_keys_none(struct keycache *kc)
{
    double now = kc_now(kc);
    pthread_mutex_lock(&kc->mu);
    /* once keys were seen, never open again in this process: rows deleted by hand (or a
     * store that forgot its mark) must not turn authentication off (issue 27.9) */
    if (kc->keys_seen) {
        pthread_mutex_unlock(&kc->mu);
        return false;
    }
    if (now < kc->count_expires) {
        bool none = kc->count == 0;
        pthread_mutex_unlock(&kc->mu);
        return none;
    }
    pthread_mutex_unlock(&kc->mu);
    int64_t n = 1;
    if (store_key_count(kc->st, &n) != NS_OK)
        return false; /* not cached: the next request asks again */
    pthread_mutex_lock(&kc->mu);
    kc->count = n;
    kc->count_expires = now + kc->p.ttl_s;
    kc->keys_seen |= n > 0;
    pthread_mutex_unlock(&kc->mu);
    return n == 0;
}
