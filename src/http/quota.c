/*
 * quota.c — see quota.h. A hash table of per-key entries (open addressing on the key name,
 * entries allocated one by one so a pointer to one stays valid while the table grows; none
 * is freed before the quota). Each entry holds a ring of 60 one-second buckets (bucket
 * s % 60 counts the calls admitted in second s, valid while its stamp is s), the UTC day and
 * its token count, and the list of the key's queued batches with their estimates.
 */
#include "quota.h"

#include "../util/status.h"
#include "../util/strset.h"

#include <cjson/cJSON.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define QUOTA_WINDOW 60
#define QUOTA_DAY 86400

struct quota_batch {
    char id[48];
    int64_t estimate;
    int64_t since;                /* when it was admitted */
};

struct quota_key {
    char name[64];
    /* under quota.mu */
    int64_t stamp[QUOTA_WINDOW];  /* the second bucket i counts (i == stamp % 60) */
    uint32_t count[QUOTA_WINDOW];
    int64_t day;                  /* unix day of day_tokens */
    int64_t day_tokens;
    uint64_t refused[QUOTA_LIMITS_]; /* batch queue refusals too (they take mu for it) */
    /* under quota.bmu */
    struct quota_batch *batches;
    int n_batches, cap_batches;
};

struct quota {
    struct quota_params p;
    pthread_mutex_t mu;           /* the table and the real-time budgets */
    pthread_mutex_t bmu;          /* the batch lists */
    struct quota_key **slots;
    size_t cap, n;
};

const char *const quota_limit_names[QUOTA_LIMITS_] = {"requests_per_minute", "tokens_per_day",
                                                      "batch_queue_tokens"};

struct quota_params quota_default_params(void)
{
    struct quota_params p = {.now = NULL, .batch_left = NULL, .batch_retry_after = 60};
    return p;
}

int quota_create(struct quota_params p, struct quota **out)
{
    *out = NULL;
    struct quota *q = calloc(1, sizeof(*q));
    if (!q)
        return NS_ERR_NOMEM;
    q->p = p;
    if (q->p.batch_retry_after < 1)
        q->p.batch_retry_after = 60;
    q->cap = 16;
    q->slots = calloc(q->cap, sizeof(*q->slots));
    if (!q->slots) {
        free(q);
        return NS_ERR_NOMEM;
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_mutex_init(&q->bmu, NULL);
    *out = q;
    return NS_OK;
}

void quota_free(struct quota *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->cap; i++) {
        if (q->slots[i]) {
            free(q->slots[i]->batches);
            free(q->slots[i]);
        }
    }
    free(q->slots);
    pthread_mutex_destroy(&q->mu);
    pthread_mutex_destroy(&q->bmu);
    free(q);
}

static int64_t quota_now(const struct quota *q)
{
    return q->p.now ? q->p.now(q->p.now_ud) : (int64_t)time(NULL);
}

static size_t quota_slot(struct quota_key **slots, size_t cap, const char *name)
{
    size_t i = (size_t)strset_hash(name, strlen(name), 0x71u) & (cap - 1);
    while (slots[i] && strcmp(slots[i]->name, name) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

/* the entry of `name`, created when absent; NULL when out of memory. Under q->mu. */
static struct quota_key *quota_key_get(struct quota *q, const char *name)
{
    size_t i = quota_slot(q->slots, q->cap, name);
    if (q->slots[i])
        return q->slots[i];
    if ((q->n + 1) * 10 > q->cap * 7) { /* keep the load under 70% */
        size_t cap = q->cap * 2;
        struct quota_key **slots = calloc(cap, sizeof(*slots));
        if (!slots)
            return NULL;
        for (size_t k = 0; k < q->cap; k++)
            if (q->slots[k])
                slots[quota_slot(slots, cap, q->slots[k]->name)] = q->slots[k];
        free(q->slots);
        q->slots = slots;
        q->cap = cap;
        i = quota_slot(q->slots, q->cap, name);
    }
    struct quota_key *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    snprintf(k->name, sizeof(k->name), "%s", name);
    for (int b = 0; b < QUOTA_WINDOW; b++)
        k->stamp[b] = -1;
    q->slots[i] = k;
    q->n++;
    return k;
}

static int64_t quota_floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* calls of k still in the window at time t (seconds in (t-60, t]) among those counted by now */
static int64_t quota_window_count(const struct quota_key *k, int64_t t)
{
    int64_t n = 0;
    for (int b = 0; b < QUOTA_WINDOW; b++)
        if (k->stamp[b] > t - QUOTA_WINDOW && k->stamp[b] <= t)
            n += k->count[b];
    return n;
}

/* under q->mu: roll k's day over when `now` is in a later one */
static void quota_day_roll(struct quota_key *k, int64_t now)
{
    int64_t day = quota_floor_div(now, QUOTA_DAY);
    if (k->day != day) {
        k->day = day;
        k->day_tokens = 0;
    }
}

static void quota_refuse(struct quota_refusal *why, int status, int64_t retry_after, const char *key, const char *what)
{
    why->status = status;
    why->retry_after = retry_after < 1 ? 1 : retry_after;
    snprintf(why->message, sizeof(why->message), "rate limit exceeded for key '%s': %s; retry after %lld s", key, what,
             (long long)why->retry_after);
}

int quota_request_admit(struct quota *q, const char *key, struct quota_limits lim, struct quota_refusal *why)
{
    if (lim.rpm <= 0 && lim.tokens_per_day <= 0)
        return NS_OK;
    int rc = NS_OK;
    char what[160];
    int64_t now = quota_now(q);
    pthread_mutex_lock(&q->mu);
    struct quota_key *k = quota_key_get(q, key);
    if (!k) {
        rc = NS_ERR_NOMEM;
        goto out;
    }
    quota_day_roll(k, now);
    if (lim.tokens_per_day > 0 && k->day_tokens >= lim.tokens_per_day) {
        snprintf(what, sizeof(what), "%lld tokens per day (%lld used today, UTC)", (long long)lim.tokens_per_day,
                 (long long)k->day_tokens);
        quota_refuse(why, NS_ERR_QUOTA_TOKENS, (k->day + 1) * QUOTA_DAY - now, key, what);
        k->refused[QUOTA_TOKENS_PER_DAY]++;
        rc = NS_ERR_QUOTA_TOKENS;
        goto out;
    }
    if (lim.rpm > 0 && quota_window_count(k, now) >= lim.rpm) {
        /* the first second from which the window holds fewer than rpm calls; every call
         * counted by now has left it 60 s later */
        int64_t wait = QUOTA_WINDOW;
        for (int64_t s = 1; s < QUOTA_WINDOW; s++) {
            if (quota_window_count(k, now + s) < lim.rpm) {
                wait = s;
                break;
            }
        }
        snprintf(what, sizeof(what), "%lld requests per minute", (long long)lim.rpm);
        quota_refuse(why, NS_ERR_QUOTA_REQUESTS, wait, key, what);
        k->refused[QUOTA_RPM]++;
        rc = NS_ERR_QUOTA_REQUESTS;
        goto out;
    }
    int b = (int)(((now % QUOTA_WINDOW) + QUOTA_WINDOW) % QUOTA_WINDOW);
    if (k->stamp[b] != now) {
        k->stamp[b] = now;
        k->count[b] = 0;
    }
    k->count[b]++;
out:
    pthread_mutex_unlock(&q->mu);
    return rc;
}

void quota_tokens_add(struct quota *q, const char *key, int64_t tokens)
{
    if (tokens <= 0)
        return;
    int64_t now = quota_now(q);
    pthread_mutex_lock(&q->mu);
    struct quota_key *k = quota_key_get(q, key);
    if (k) {
        quota_day_roll(k, now);
        k->day_tokens += tokens;
    }
    pthread_mutex_unlock(&q->mu);
}

int64_t quota_tokens_today(struct quota *q, const char *key)
{
    int64_t now = quota_now(q), n = 0;
    pthread_mutex_lock(&q->mu);
    struct quota_key *k = quota_key_get(q, key);
    if (k) {
        quota_day_roll(k, now);
        n = k->day_tokens;
    }
    pthread_mutex_unlock(&q->mu);
    return n;
}

int quota_batch_admit(struct quota *q, const char *key, struct quota_limits lim, const char *batch_id, int64_t tokens,
                      struct quota_refusal *why)
{
    if (lim.batch_queue_tokens <= 0)
        return NS_OK;
    pthread_mutex_lock(&q->mu);
    struct quota_key *k = quota_key_get(q, key);
    pthread_mutex_unlock(&q->mu);
    if (!k)
        return NS_ERR_NOMEM;
    int rc = NS_OK;
    int64_t now = quota_now(q);
    pthread_mutex_lock(&q->bmu);
    /* what the queued batches still hold; the ended ones are forgotten */
    int64_t queued = 0;
    int kept = 0;
    for (int i = 0; i < k->n_batches; i++) {
        struct quota_batch *qb = &k->batches[i];
        int64_t left = q->p.batch_left ? q->p.batch_left(q->p.batch_ud, qb->id, qb->estimate) : qb->estimate;
        if (left < 0 && now - qb->since < QUOTA_WINDOW)
            left = qb->estimate; /* admitted, not stored yet */
        if (left <= 0)
            continue;
        queued += left;
        k->batches[kept++] = *qb;
    }
    k->n_batches = kept;
    if (queued + tokens > lim.batch_queue_tokens) {
        char what[200];
        if (tokens > lim.batch_queue_tokens)
            snprintf(what, sizeof(what), "%lld enqueued batch tokens (this batch alone is about %lld: split it)",
                     (long long)lim.batch_queue_tokens, (long long)tokens);
        else
            snprintf(what, sizeof(what), "%lld enqueued batch tokens (%lld queued, this batch about %lld)",
                     (long long)lim.batch_queue_tokens, (long long)queued, (long long)tokens);
        quota_refuse(why, NS_ERR_QUOTA_TOKENS, q->p.batch_retry_after, key, what);
        pthread_mutex_lock(&q->mu); /* order: bmu, then mu (never the other way) */
        k->refused[QUOTA_BATCH_QUEUE]++;
        pthread_mutex_unlock(&q->mu);
        rc = NS_ERR_QUOTA_TOKENS;
        goto out;
    }
    if (k->n_batches == k->cap_batches) {
        int cap = k->cap_batches ? k->cap_batches * 2 : 8;
        struct quota_batch *nb = realloc(k->batches, sizeof(*nb) * (size_t)cap);
        if (!nb) {
            rc = NS_ERR_NOMEM;
            goto out;
        }
        k->batches = nb;
        k->cap_batches = cap;
    }
    struct quota_batch *qb = &k->batches[k->n_batches++];
    snprintf(qb->id, sizeof(qb->id), "%s", batch_id);
    qb->estimate = tokens;
    qb->since = now;
out:
    pthread_mutex_unlock(&q->bmu);
    return rc;
}

void quota_foreach(struct quota *q, void (*fn)(void *ud, const char *key, const uint64_t refused[QUOTA_LIMITS_]),
                   void *ud)
{
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < q->cap; i++)
        if (q->slots[i])
            fn(ud, q->slots[i]->name, q->slots[i]->refused);
    pthread_mutex_unlock(&q->mu);
}

/* ---- estimates ---------------------------------------------------------------------- */

/* The most a line may generate, from the fields the engine obeys (issue 27.11): for a chat
 * request max_completion_tokens wins over max_tokens (oai.c reads it last), and every one of
 * its n choices generates up to that much. A value the parser would refuse fails the line
 * before it runs, so it costs nothing; it is counted as the absent default all the same. */
static int64_t quota_line_max_tokens(const char *line, size_t n, int64_t absent)
{
    cJSON *o = cJSON_ParseWithLength(line, n);
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(o, "body");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(body, "max_completion_tokens");
    if (!cJSON_IsNumber(mt))
        mt = cJSON_GetObjectItemCaseSensitive(body, "max_tokens");
    int64_t v = absent;
    if (cJSON_IsNumber(mt) && mt->valuedouble >= 0 && mt->valuedouble <= 1e9)
        v = (int64_t)mt->valuedouble;
    const cJSON *nc = cJSON_GetObjectItemCaseSensitive(body, "n");
    if (cJSON_IsNumber(nc) && nc->valuedouble >= 1 && nc->valuedouble <= 128)
        v *= (int64_t)nc->valuedouble;
    cJSON_Delete(o);
    return v;
}

int64_t quota_estimate_jsonl(const char *p, size_t n, int64_t absent_max_tokens)
{
    int64_t total = 0;
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t len = nl ? (size_t)(nl - (p + i)) : n - i;
        bool blank = true;
        for (size_t k = 0; k < len && blank; k++)
            blank = p[i + k] == ' ' || p[i + k] == '\t' || p[i + k] == '\r';
        if (!blank)
            total += (int64_t)(len / 4) + quota_line_max_tokens(p + i, len, absent_max_tokens);
        i += len + 1;
    }
    return total;
}

int quota_estimate_file(const char *path, int64_t absent_max_tokens, int64_t *out)
{
    int rc = NS_ERR_IO;
    void *map = MAP_FAILED;
    struct stat sb;
    *out = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb))
        goto out;
    if (sb.st_size == 0) {
        rc = NS_OK;
        goto out;
    }
    map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        goto out;
    *out = quota_estimate_jsonl(map, (size_t)sb.st_size, absent_max_tokens);
    rc = NS_OK;
out:
    if (map != MAP_FAILED)
        munmap(map, (size_t)sb.st_size);
    if (fd >= 0)
        close(fd);
    return rc;
}
