/*
 * keycache.h — the API keys `nightshift serve` has looked up in the store, remembered for a
 * moment so that authenticating a request costs a hash and a table probe, not a store query.
 *
 * Every authenticated request used to run two store reads (the key by its SHA-256, or the
 * key count to know whether the server is open): a prepared SQLite statement each, or a
 * network round trip each on PostgreSQL, and 12% of the CPU of a forwarded request
 * (bench/forward.mjs). Keys are created (and, later, revoked) by other processes (`nightshift
 * keys`, other nodes), so the cache cannot be told of changes: entries live `ttl_s` seconds
 * (default 2). A new key works at once (a miss asks the store); a first key created while
 * the server is open closes it within ttl_s. Unknown keys are not remembered: a caller
 * guessing keys costs a store read each, as before.
 *
 * The table is a fixed open-addressed array (slot = hash bits; a collision replaces the
 * older entry), so memory is bounded whatever callers send.
 *
 * THREADS: every function may be called from any thread (one mutex, held for a probe).
 */
#ifndef NS_API_KEYCACHE_H
#define NS_API_KEYCACHE_H

#include "../store/store.h"

#include <stdbool.h>

struct keycache;

struct keycache_params {
    double ttl_s;                   /* default 2 */
    double (*now)(void *ud);        /* monotonic seconds; NULL: clock_now() (tests inject) */
    void *now_ud;
};

struct keycache_params keycache_default_params(void);

/* the cache over st's keys; st is borrowed and must outlive it. NULL on no memory */
struct keycache *keycache_init(struct keycache_params p, struct store *st);
void keycache_free(struct keycache *kc);

/* the key whose SHA-256 (64 hex digits) is hash_hex: NS_OK and *out, NS_ERR_NOT_FOUND, or the
 * store's error */
int keycache_key_get(struct keycache *kc, const char *hash_hex, struct store_key *out);

/* whether the store holds no key and never held one (the server is then open); a store
 * error counts as "has keys" (closed), and once keys were seen the answer is false for the
 * life of the cache, whatever the store says later */
bool keycache_keys_none(struct keycache *kc);

#endif
