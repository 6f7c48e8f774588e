/* Unit tests: engine/prefix (the token trie of the prefix cache). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/engine/prefix.h"

static void test_longest_match(void **state)
{
    (void)state;
    struct prefix_trie *t = prefix_trie_new();
    const int32_t a[] = {1, 2, 3, 4, 5};
    const int32_t b[] = {1, 2, 9, 9};
    const int32_t q1[] = {1, 2, 3, 7};
    const int32_t q2[] = {1, 2, 9, 9, 9, 9};
    const int32_t q3[] = {8, 1};
    int slot;
    assert_int_equal(prefix_trie_set(t, 0, a, 5), 0);
    assert_int_equal(prefix_trie_set(t, 3, b, 4), 0);
    assert_int_equal(prefix_trie_match(t, q1, 4, -1, &slot), 3);
    assert_int_equal(slot, 0);
    assert_int_equal(prefix_trie_match(t, q2, 6, -1, &slot), 4);
    assert_int_equal(slot, 3);
    assert_int_equal(prefix_trie_match(t, q3, 2, -1, &slot), 0);
    assert_int_equal(slot, -1);
    /* shared part: either holder; the preferred one when it holds it */
    assert_int_equal(prefix_trie_match(t, b, 2, 3, &slot), 2);
    assert_int_equal(slot, 3);
    assert_int_equal(prefix_trie_match(t, b, 2, 0, &slot), 2);
    assert_int_equal(slot, 0);
    assert_int_equal(prefix_trie_len(t, 0), 5);
    assert_int_equal(prefix_trie_len(t, 3), 4);
    assert_int_equal(prefix_trie_len(t, 7), 0);
    prefix_trie_free(t);
}

static void test_refcounts_and_removal(void **state)
{
    (void)state;
    struct prefix_trie *t = prefix_trie_new();
    const int32_t a[] = {1, 2, 3, 4};
    const int32_t b[] = {1, 2, 5};
    int slot;
    prefix_trie_set(t, 0, a, 4);
    prefix_trie_set(t, 1, b, 3);
    assert_int_equal(prefix_trie_nodes(t), 5); /* 1,2 shared; 3,4 and 5 */
    prefix_trie_remove(t, 0);
    assert_int_equal(prefix_trie_nodes(t), 3); /* only b's path is left */
    assert_int_equal(prefix_trie_match(t, a, 4, -1, &slot), 2);
    assert_int_equal(slot, 1);
    prefix_trie_remove(t, 0); /* twice is a no-op */
    prefix_trie_remove(t, 1);
    assert_int_equal(prefix_trie_nodes(t), 0);
    assert_int_equal(prefix_trie_match(t, a, 4, -1, &slot), 0);
    prefix_trie_free(t);
}

static void test_replace_entry(void **state)
{
    (void)state;
    struct prefix_trie *t = prefix_trie_new();
    const int32_t a[] = {1, 2, 3};
    const int32_t c[] = {7, 8};
    int slot;
    prefix_trie_set(t, 2, a, 3);
    prefix_trie_set(t, 2, c, 2); /* a slot holds one entry: the old one goes */
    assert_int_equal(prefix_trie_nodes(t), 2);
    assert_int_equal(prefix_trie_match(t, a, 3, -1, &slot), 0);
    assert_int_equal(prefix_trie_match(t, c, 2, -1, &slot), 2);
    assert_int_equal(slot, 2);
    /* two slots with the same tokens */
    prefix_trie_set(t, 5, c, 2);
    prefix_trie_remove(t, 2);
    assert_int_equal(prefix_trie_match(t, c, 2, -1, &slot), 2);
    assert_int_equal(slot, 5);
    /* an empty entry matches nothing */
    prefix_trie_set(t, 9, c, 0);
    assert_int_equal(prefix_trie_len(t, 9), 0);
    prefix_trie_free(t);
}

static void test_many_entries(void **state)
{
    (void)state;
    struct prefix_trie *t = prefix_trie_new();
    int32_t tok[600];
    for (int i = 0; i < 600; i++)
        tok[i] = i % 97;
    for (int s = 0; s < 64; s++) {
        tok[500] = 1000 + s; /* shared 500-token prefix, then one distinct token each */
        assert_int_equal(prefix_trie_set(t, s, tok, 520), 0);
    }
    assert_int_equal(prefix_trie_nodes(t), 500 + 64 * 20);
    int slot;
    tok[500] = 1000 + 17;
    assert_int_equal(prefix_trie_match(t, tok, 600, -1, &slot), 520);
    assert_int_equal(slot, 17);
    tok[500] = 5;
    assert_int_equal(prefix_trie_match(t, tok, 600, -1, &slot), 500);
    for (int s = 0; s < 64; s++)
        prefix_trie_remove(t, s);
    assert_int_equal(prefix_trie_nodes(t), 0);
    prefix_trie_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_longest_match),
        cmocka_unit_test(test_refcounts_and_removal),
        cmocka_unit_test(test_replace_entry),
        cmocka_unit_test(test_many_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
