/*
 * prefix.c — see prefix.h. One node per token; children in a small array (most nodes
 * have one child: prompts share a prefix, then diverge once).
 */
#include "prefix.h"

#include "../util/status.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct node {
    int32_t token;
    int depth;                 /* tokens from the root to here */
    int refs;                  /* entries whose path passes through (or ends at) this node */
    struct node *parent;
    struct node **kids;
    int n_kids, cap_kids;
    int *ends;                 /* slots whose entry ends here */
    int n_ends, cap_ends;
};

struct entry {
    struct node *end;          /* NULL: no entry */
};

struct prefix_trie {
    struct node root;
    struct entry *entries;
    int n_entries;
    size_t n_nodes;
};

struct prefix_trie *prefix_trie_new(void)
{
    struct prefix_trie *t = calloc(1, sizeof(*t));
    return t;
}

static void node_free_rec(struct node *n)
{
    for (int i = 0; i < n->n_kids; i++) {
        node_free_rec(n->kids[i]);
        free(n->kids[i]);
    }
    free(n->kids);
    free(n->ends);
}

void prefix_trie_free(struct prefix_trie *t)
{
    if (!t)
        return;
    node_free_rec(&t->root);
    free(t->entries);
    free(t);
}

static struct node *node_child(const struct node *n, int32_t tok)
{
    for (int i = 0; i < n->n_kids; i++)
        if (n->kids[i]->token == tok)
            return n->kids[i];
    return NULL;
}

static struct node *node_add_child(struct prefix_trie *t, struct node *n, int32_t tok)
{
    if (n->n_kids == n->cap_kids) {
        int cap = n->cap_kids ? n->cap_kids * 2 : 1;
        struct node **k = realloc(n->kids, sizeof(*k) * (size_t)cap);
        if (!k)
            return NULL;
        n->kids = k;
        n->cap_kids = cap;
    }
    struct node *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->token = tok;
    c->depth = n->depth + 1;
    c->parent = n;
    n->kids[n->n_kids++] = c;
    t->n_nodes++;
    return c;
}

static void node_unlink(struct prefix_trie *t, struct node *c)
{
    struct node *p = c->parent;
    for (int i = 0; i < p->n_kids; i++)
        if (p->kids[i] == c) {
            p->kids[i] = p->kids[--p->n_kids];
            break;
        }
    free(c->kids);
    free(c->ends);
    free(c);
    t->n_nodes--;
}

void prefix_trie_remove(struct prefix_trie *t, int slot)
{
    if (slot < 0 || slot >= t->n_entries || !t->entries[slot].end)
        return;
    struct node *n = t->entries[slot].end;
    t->entries[slot].end = NULL;
    for (int i = 0; i < n->n_ends; i++)
        if (n->ends[i] == slot) {
            n->ends[i] = n->ends[--n->n_ends];
            break;
        }
    while (n != &t->root) {
        struct node *p = n->parent;
        if (--n->refs == 0)
            node_unlink(t, n); /* no entry passes here: its children are gone too */
        n = p;
    }
    t->root.refs--;
}

int prefix_trie_set(struct prefix_trie *t, int slot, const int32_t *tokens, int n)
{
    if (slot < 0)
        return NS_ERR_INVALID;
    if (slot >= t->n_entries) {
        int cap = slot + 1;
        struct entry *e = realloc(t->entries, sizeof(*e) * (size_t)cap);
        if (!e)
            return NS_ERR_NOMEM;
        memset(e + t->n_entries, 0, sizeof(*e) * (size_t)(cap - t->n_entries));
        t->entries = e;
        t->n_entries = cap;
    }
    prefix_trie_remove(t, slot);
    struct node *cur = &t->root;
    cur->refs++;
    for (int i = 0; i < n; i++) {
        struct node *c = node_child(cur, tokens[i]);
        if (!c && !(c = node_add_child(t, cur, tokens[i]))) {
            /* out of memory: keep the shorter entry we have */
            break;
        }
        c->refs++;
        cur = c;
    }
    if (cur->n_ends == cur->cap_ends) {
        int cap = cur->cap_ends ? cur->cap_ends * 2 : 2;
        int *e = realloc(cur->ends, sizeof(*e) * (size_t)cap);
        if (!e) {
            t->entries[slot].end = cur;
            prefix_trie_remove(t, slot); /* undo the counts: cannot record the end */
            return NS_ERR_NOMEM;
        }
        cur->ends = e;
        cur->cap_ends = cap;
    }
    cur->ends[cur->n_ends++] = slot;
    t->entries[slot].end = cur;
    return NS_OK;
}

/* does slot's entry pass through node n? */
static bool entry_through(const struct prefix_trie *t, int slot, const struct node *n)
{
    if (slot < 0 || slot >= t->n_entries || !t->entries[slot].end)
        return false;
    const struct node *e = t->entries[slot].end;
    while (e && e->depth > n->depth)
        e = e->parent;
    return e == n;
}

int prefix_trie_match(const struct prefix_trie *t, const int32_t *tokens, int n, int prefer, int *slot)
{
    const struct node *cur = &t->root;
    *slot = -1;
    for (int i = 0; i < n; i++) {
        const struct node *c = node_child(cur, tokens[i]);
        if (!c)
            break;
        cur = c;
    }
    if (cur == &t->root)
        return 0;
    if (entry_through(t, prefer, cur)) {
        *slot = prefer;
        return cur->depth;
    }
    /* any entry below: every node has refs > 0, so a descent always ends at an end */
    const struct node *d = cur;
    while (d->n_ends == 0 && d->n_kids > 0)
        d = d->kids[0];
    if (d->n_ends == 0)
        return 0;
    *slot = d->ends[0];
    return cur->depth;
}

int prefix_trie_len(const struct prefix_trie *t, int slot)
{
    if (slot < 0 || slot >= t->n_entries || !t->entries[slot].end)
        return 0;
    return t->entries[slot].end->depth;
}

size_t prefix_trie_nodes(const struct prefix_trie *t)
{
    return t->n_nodes;
}
