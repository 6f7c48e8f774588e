/*
 * prefix.h — a trie over token ids that says which engine sequence holds the longest
 * prefix of a prompt in its KV cache, so that prefix is copied instead of recomputed.
 *
 * Each entry is one sequence slot's token run (what its KV holds). Nodes count how many
 * entries pass through them (refcounts); removing an entry drops its path's counts and
 * frees the nodes no entry uses any more. Lookup walks the prompt down the trie and
 * returns the deepest node's owner and depth.
 *
 * Eviction policy lives with the caller (the engine): an entry belongs to a slot, a
 * running slot's entry is never replaced, and a free slot's entry (a finished sequence
 * whose KV is kept) is overwritten least-recently-used first.
 *
 * Single-threaded (the engine thread). Does not include llama.h: tokens are int32_t.
 */
#ifndef NS_ENGINE_PREFIX_H
#define NS_ENGINE_PREFIX_H

#include <stddef.h>
#include <stdint.h>

struct prefix_trie;

struct prefix_trie *prefix_trie_new(void);
void prefix_trie_free(struct prefix_trie *t);

/* Make slot's entry tokens[0..n): replaces any previous entry of that slot. 0 ok. */
int prefix_trie_set(struct prefix_trie *t, int slot, const int32_t *tokens, int n);
/* Forget slot's entry (no-op when it has none). */
void prefix_trie_remove(struct prefix_trie *t, int slot);
/* The longest prefix of tokens[0..n) held by some entry: returns its length (0 = none)
 * and, in *slot, an entry that holds it (the one that `prefer` names when several do and
 * it is one of them; -1 = no preference). */
int prefix_trie_match(const struct prefix_trie *t, const int32_t *tokens, int n, int prefer, int *slot);
/* Length of slot's entry, or 0. */
int prefix_trie_len(const struct prefix_trie *t, int slot);
/* Nodes in use (tests, stats). */
size_t prefix_trie_nodes(const struct prefix_trie *t);

#endif
