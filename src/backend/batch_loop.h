/*
 * batch_loop.h — the frame every provider-batch backend runs in (openai-batch and
 * anthropic-batch in backend_batch.c, gemini-batch in backend_gemini.c): the run loop that
 * pulls requests from the scheduler (engine.h's contract) and holds them in `pending`,
 * refuses real-time requests that did not say "service_tier": "flex", flushes pending lines
 * into an upstream batch (the source is dry and flush_lines wait; the oldest waited
 * flush_after; an upstream batch is full at max_lines, or max_bytes when cap_bytes), polls
 * the upstream batches, sleeps until the next flush or poll is due (or wake()), and takes a
 * reload's numbers between rounds; plus stop / wake / reconfigure / get_stats and the
 * settling of one request. What a kind does with its jobs and batches (admit, flush, poll,
 * cancel) are its ops: the pending list and the batches are the kind's, the counters the
 * loop decides on (n_pending, pending_bytes, oldest, submit_after) are here.
 *
 * THREADS: batch_loop_run() and everything the ops do on the scheduler's run thread; stop,
 * wake, reconfigure and get_stats from any thread. mu guards stopping, woken, has_next,
 * next_c and stats; the rest belongs to the run thread.
 * OWNERSHIP: embedded in the kind's backend struct (impl); name is borrowed from it.
 */
#ifndef NS_BACKEND_BATCH_LOOP_H
#define NS_BACKEND_BATCH_LOOP_H

#include "backend.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct batch_loop_ops {
    /* a pulled request: into pending (batch_loop counts it), or settled at once */
    void (*admit)(void *impl, struct engine_request *r, double now);
    /* pending lines -> one upstream batch */
    void (*flush)(void *impl, double now);
    /* poll the upstream batches that are due; settle what ended */
    void (*poll_all)(void *impl, double now);
    /* lines upstream (the stats' inflight); *live: one of them still waits for its answer
     * (the run may not end before); *until lowered to the earliest poll due */
    int (*upstream)(void *impl, bool *live, double *until);
    /* a reload's numbers were just taken into c (under mu): the kind's caps, its clients */
    void (*reconf)(void *impl);
    /* the run ends: every request held is settled (or handed back) */
    void (*cancel_all)(void *impl);
};

struct batch_loop {
    const struct batch_loop_ops *ops;
    void *impl;
    const char *name;          /* the model's (the kind's string) */
    char via[96];              /* "Gemini's batch API (gemini-batch)": the flex refusal's words */
    bool cap_bytes;            /* pending_bytes count against c.max_bytes */
    struct backend_conf c;     /* numbers only */
    const struct engine_source *src;
    int n_pending;             /* lines in the kind's pending list */
    size_t pending_bytes;
    double oldest;             /* admit time of the oldest pending line */
    double submit_after;       /* after a failed submit: not before this */
    int submit_failures;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping, woken, has_next;
    struct backend_conf next_c; /* a reload's numbers (mu), taken by the run loop */
    struct backend_stats stats;
};

/* c's numbers (its strings dropped), mu and cv */
void batch_loop_init(struct batch_loop *l, const struct batch_loop_ops *ops, void *impl, const char *name,
                     const char *via, const struct backend_conf *c);
void batch_loop_free(struct batch_loop *l);

int batch_loop_run(struct batch_loop *l, const struct engine_source *src);
void batch_loop_stop(struct batch_loop *l);
void batch_loop_wake(struct batch_loop *l);
void batch_loop_reconfigure(struct batch_loop *l, const struct backend_conf *c);
void batch_loop_get_stats(struct batch_loop *l, struct backend_stats *out);

/* a line joins pending (the kind appended it): the counters */
void batch_loop_pended(struct batch_loop *l, bool was_empty, size_t bytes);
/* a request ends: its times, tries, a failure counted; src->done */
void batch_loop_done(struct batch_loop *l, struct engine_request *req, struct engine_result *res, double t_admit,
                     int attempts);
/* a request ends before it was admitted (out of memory, refused): status, param (or NULL)
 * and the message; src->done */
void batch_loop_reject(struct batch_loop *l, struct engine_request *r, int status, const char *param, const char *fmt,
                       ...) __attribute__((format(printf, 5, 6)));
/* a line the provider did not finish: true (a retry counted) when it may go again */
bool batch_loop_may_retry(struct batch_loop *l, int attempts);
/* a submit failed with rc: the next waits a growing backoff; true when rc is a refusal no
 * retry changes (the batch's lines fail with it) */
bool batch_loop_submit_failed(struct batch_loop *l, int rc, double now);

#endif
