/*
 * quota.h — per-key usage limits of `nightshift serve` (the token-budget pattern), kept in
 * memory.
 *
 * Three budgets per API key (0 = unlimited):
 *   rpm                 real-time calls (chat, completions, messages, Ollama chat/generate)
 *                       admitted in the last 60 s. A SLIDING WINDOW of 60 one-second buckets:
 *                       a call is refused while the window holds rpm calls; Retry-After is
 *                       the seconds until enough of the oldest buckets leave it.
 *   tokens_per_day      prompt + completion tokens of real-time calls, counted when a call
 *                       finishes (no reservation at admission: a call is refused once the
 *                       day's count has reached the limit, so the call that crosses it runs
 *                       whole). A FIXED WINDOW, the UTC calendar day; Retry-After is the
 *                       seconds until the next UTC midnight.
 *   batch_queue_tokens  estimated tokens of the key's batches that have not finished yet.
 *                       Each batch's estimate (quota_estimate_jsonl: bytes/4 + max_tokens per
 *                       line) is recorded at creation; what is still pending is asked of the
 *                       caller (params.batch_left: the estimate scaled by the share of lines
 *                       not finished, 0 once the batch ended or is gone), so the budget frees
 *                       line by line. A batch that would take the total over the limit is
 *                       refused whole; Retry-After is params.batch_retry_after (how fast a
 *                       queue drains is not known here).
 *
 * The state is lost at restart (the windows start empty; batches queued before it no longer
 * count). Keys are found by name in a hash table; an entry lives as long as the quota.
 *
 * THREADS: every function may be called from any thread. Real-time admission and token
 * counting take one mutex (a few hundred nanoseconds); batch admission takes another, held
 * while params.batch_left runs (a store read per queued batch), so real-time admission never
 * waits behind the store. Lock order: bmu before mu (a batch refusal counts itself under mu).
 */
#ifndef NS_API_QUOTA_H
#define NS_API_QUOTA_H

#include <stddef.h>
#include <stdint.h>

struct quota;

struct quota_limits {
    int64_t rpm, tokens_per_day, batch_queue_tokens; /* 0 = unlimited */
};

/* why a call was refused: an HTTP 429 with a Retry-After header */
struct quota_refusal {
    int status;             /* NS_ERR_QUOTA_REQUESTS or NS_ERR_QUOTA_TOKENS (util/status.h) */
    int64_t retry_after;    /* seconds, >= 1 */
    char message[320];      /* "rate limit exceeded for key 'ci': 60 requests per minute; retry after 12 s" */
};

struct quota_params {
    int64_t (*now)(void *ud);   /* unix seconds; NULL: time(NULL) (tests inject a clock) */
    void *now_ud;
    /* the tokens of a queued batch still pending, given its estimate at creation: 0 once it
     * ended (it is then forgotten), < 0 when no such batch exists (yet: one admitted a moment
     * ago may not be stored yet, so it counts whole for a minute, then is forgotten);
     * NULL: a batch counts whole for ever */
    int64_t (*batch_left)(void *ud, const char *batch_id, int64_t estimate);
    void *batch_ud;
    int64_t batch_retry_after;  /* seconds; default 60 */
};
struct quota_params quota_default_params(void);

int quota_create(struct quota_params p, struct quota **out);
void quota_free(struct quota *q);

/* a real-time call of `key` wants to start: NS_OK (it is counted in the minute), or a
 * refusal status (NS_ERR_QUOTA_REQUESTS, NS_ERR_QUOTA_TOKENS) with *why filled */
int quota_request_admit(struct quota *q, const char *key, struct quota_limits lim, struct quota_refusal *why);
/* a real-time call of `key` finished having used `tokens` (prompt + completion) */
void quota_tokens_add(struct quota *q, const char *key, int64_t tokens);
/* tokens counted today for key (tests, diagnostics) */
int64_t quota_tokens_today(struct quota *q, const char *key);

/* a batch of about `tokens` wants to be queued for `key`: NS_OK (recorded under batch_id),
 * or NS_ERR_QUOTA_TOKENS with *why filled */
int quota_batch_admit(struct quota *q, const char *key, struct quota_limits lim, const char *batch_id, int64_t tokens,
                      struct quota_refusal *why);

/* calls refused so far, per key and limit (for /metrics) */
enum quota_limit { QUOTA_RPM = 0, QUOTA_TOKENS_PER_DAY, QUOTA_BATCH_QUEUE, QUOTA_LIMITS_ };
extern const char *const quota_limit_names[QUOTA_LIMITS_]; /* "requests_per_minute", ... */
/* fn(ud, key, refused) for every key seen, under the quota's mutex: fn must not call quota_* */
void quota_foreach(struct quota *q, void (*fn)(void *ud, const char *key, const uint64_t refused[QUOTA_LIMITS_]),
                   void *ud);

/* what a batch line without max_tokens is taken to generate, for the estimate below */
#define QUOTA_ABSENT_MAX_TOKENS 1024

/* the token estimate of a batch input (JSONL: OpenAI batch lines, or lines whose body has
 * max_tokens): per non-blank line, its bytes / 4 + (body.max_completion_tokens, else
 * body.max_tokens, else absent_max_tokens) x body.n */
int64_t quota_estimate_jsonl(const char *p, size_t n, int64_t absent_max_tokens);
/* the same for a file; NS_ERR_IO when it cannot be read */
int quota_estimate_file(const char *path, int64_t absent_max_tokens, int64_t *out);

#endif
