/* keycache: store reads remembered for ttl_s, misses and errors not remembered, a new key
 * found at once, the open server closed within ttl_s of its first key */
#include "../../src/http/keycache.h"
#include "../../src/util/status.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

/* a store of at most 4 keys that counts how often it is asked */
static struct {
    char hash[4][65];
    struct store_key key[4];
    int n;
    int gets, counts;
    bool fail;
} fake;

static int fake_key_get(struct store *st, const char *hash_hex, struct store_key *out)
{
    (void)st;
    fake.gets++;
    if (fake.fail)
        return NS_ERR_IO;
    for (int i = 0; i < fake.n; i++)
        if (strcmp(fake.hash[i], hash_hex) == 0) {
            *out = fake.key[i];
            return NS_OK;
        }
    return NS_ERR_NOT_FOUND;
}

static int fake_key_count(struct store *st, int64_t *n)
{
    (void)st;
    fake.counts++;
    if (fake.fail)
        return NS_ERR_IO;
    *n = fake.n;
    return NS_OK;
}

static const struct store_ops fake_ops = {.scheme = "fake", .key = {.get = fake_key_get, .count = fake_key_count}};
/* a store is a struct that begins with its ops (store.h: struct store_base) */
static struct store_base fake_store = {.ops = &fake_ops};

static double clock_s;
static double test_now(void *ud)
{
    (void)ud;
    return clock_s;
}

static void add_key(const char *name, char c)
{
    memset(fake.hash[fake.n], c, 64);
    fake.hash[fake.n][64] = '\0';
    memset(&fake.key[fake.n], 0, sizeof(fake.key[0]));
    snprintf(fake.key[fake.n].name, sizeof(fake.key[0].name), "%s", name);
    fake.n++;
}

static struct keycache *make(void)
{
    memset(&fake, 0, sizeof(fake));
    clock_s = 100;
    struct keycache_params p = keycache_default_params();
    assert_true(p.ttl_s == 2.0);
    p.now = test_now;
    struct keycache *kc = keycache_init(p, (struct store *)&fake_store);
    assert_non_null(kc);
    return kc;
}

static void test_hits_within_ttl(void **state)
{
    (void)state;
    struct keycache *kc = make();
    add_key("ci", 'a');
    struct store_key k;
    assert_int_equal(keycache_key_get(kc, fake.hash[0], &k), NS_OK);
    assert_string_equal(k.name, "ci");
    for (int i = 0; i < 100; i++)
        assert_int_equal(keycache_key_get(kc, fake.hash[0], &k), NS_OK);
    assert_int_equal(fake.gets, 1);
    clock_s += 2.5; /* expired: asked again (a revoked key stops working within ttl_s) */
    fake.n = 0;
    assert_int_equal(keycache_key_get(kc, fake.hash[0], &k), NS_ERR_NOT_FOUND);
    assert_int_equal(fake.gets, 2);
    keycache_free(kc);
}

static void test_misses_not_remembered(void **state)
{
    (void)state;
    struct keycache *kc = make();
    char h[65];
    memset(h, 'b', 64);
    h[64] = '\0';
    struct store_key k;
    assert_int_equal(keycache_key_get(kc, h, &k), NS_ERR_NOT_FOUND);
    assert_int_equal(keycache_key_get(kc, h, &k), NS_ERR_NOT_FOUND);
    assert_int_equal(fake.gets, 2);
    add_key("new", 'b'); /* created by `nightshift keys create`: works at once */
    assert_int_equal(keycache_key_get(kc, h, &k), NS_OK);
    assert_string_equal(k.name, "new");
    /* not a hash at all */
    assert_int_equal(keycache_key_get(kc, "short", &k), NS_ERR_NOT_FOUND);
    /* a store error is passed on and not remembered */
    fake.fail = true;
    memset(h, 'c', 64);
    assert_int_equal(keycache_key_get(kc, h, &k), NS_ERR_IO);
    keycache_free(kc);
}

static void test_collision_replaces(void **state)
{
    (void)state;
    struct keycache *kc = make();
    /* same first 8 digits, so the same slot */
    add_key("one", 'd');
    add_key("two", 'd');
    fake.hash[1][63] = 'e';
    struct store_key k;
    assert_int_equal(keycache_key_get(kc, fake.hash[0], &k), NS_OK);
    assert_int_equal(keycache_key_get(kc, fake.hash[1], &k), NS_OK);
    assert_string_equal(k.name, "two");
    assert_int_equal(keycache_key_get(kc, fake.hash[0], &k), NS_OK);
    assert_string_equal(k.name, "one");
    assert_int_equal(fake.gets, 3);
    keycache_free(kc);
}

static void test_keys_none(void **state)
{
    (void)state;
    struct keycache *kc = make();
    assert_true(keycache_keys_none(kc));
    assert_int_equal(fake.counts, 1);
    /* a store error closes the server and is not remembered */
    clock_s += 2.1;
    fake.fail = true;
    assert_false(keycache_keys_none(kc));
    fake.fail = false;
    assert_true(keycache_keys_none(kc));
    assert_int_equal(fake.counts, 3);
    add_key("first", 'f');
    assert_true(keycache_keys_none(kc)); /* remembered: still open for up to ttl_s */
    assert_int_equal(fake.counts, 3);
    clock_s += 2.1;
    assert_false(keycache_keys_none(kc));
    assert_int_equal(fake.counts, 4);
    /* issue 27.9: once keys were seen, never open again, whatever the store says later
     * (rows deleted by hand): the store is not even asked */
    clock_s += 2.1;
    fake.n = 0;
    assert_false(keycache_keys_none(kc));
    assert_int_equal(fake.counts, 4);
    keycache_free(kc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hits_within_ttl),
        cmocka_unit_test(test_misses_not_remembered),
        cmocka_unit_test(test_collision_replaces),
        cmocka_unit_test(test_keys_none),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
