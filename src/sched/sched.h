/*
 * sched.h — the scheduler in front of one backend: the queue between the real-time surface
 * and the batch workers.
 *
 * DESIGN
 * Each model has one sched, which owns the model's backend (backend.h: the local engine or
 * an upstream server) and runs it on its own thread. Two lanes feed it (engine.h's pull
 * model, which every backend speaks):
 *   - interactive: chat/completion requests of HTTP clients (sched_submit), pulled through
 *     the engine's priority lane, so they are admitted at the next step even when batch
 *     work fills every sequence;
 *   - batch: lines of in-progress batches, claimed from the store in chunks and handed out
 *     round-robin across batches, so a 100-line batch submitted after a 50,000-line one
 *     runs at once instead of waiting for it.
 * Batch lines' results are written to the store in groups (lines_finish: one transaction
 * per engine step or per 64 lines), so progress counts move step by step and a crash
 * recomputes at most one group.
 *
 * SHUTDOWN
 * Graceful: sched_drain() stops handing out batch lines (interactive requests still run),
 * the caller polls sched_inflight() until it is 0 or its grace period ends, then
 * sched_stop() stops the engine: whatever still runs ends as cancelled, and its batch lines
 * stay claimed (running in the store) for the next start to requeue. Lines claimed but not
 * yet handed out are in the same state. sched_free() stops first when nobody did.
 *
 * THREADS
 * The engine thread runs the backend's run() and every callback. sched_submit(),
 * sched_add_batch(), sched_drop_batch(), sched_drain(), sched_inflight() and sched_stop()
 * may be called from any thread (one mutex guards the queues). Interactive jobs' callbacks
 * run on the engine thread: keep them short.
 */
#ifndef NS_SCHED_SCHED_H
#define NS_SCHED_SCHED_H

#include "../proto/oai.h"
#include "../engine/request.h"
#include "../store/store.h"

#include <stdbool.h>
#include <stdint.h>

struct sched;
struct backend;

struct sched_params {
    const char *model_name;     /* the name clients use ("model" in responses) */
    int claim_chunk;            /* batch lines claimed from the store at once; default 32 */
    /* processing window (the nightly-batch pattern): minutes after local midnight; batch
     * work gets full capacity inside [start, end) (which may wrap midnight); -1 = always */
    int window_start, window_end;
    bool off_hours_idle;        /* outside the window: batch work only while no interactive
                                   request is waiting or running (true), or none (false) */
};

/* parse "22:00-06:00" into minutes; 0 ok */
int sched_parse_window(const char *s, int *start, int *end);
struct sched_params sched_default_params(void);

/* an interactive request; the caller owns it and keeps it alive until on_done */
struct sched_job {
    int kind_;                  /* private: must stay first */
    struct oai_request oreq;    /* parsed body; the caller releases it after on_done */
    void *ud;
    /* optional: streamed text and logprobs of one choice (engine thread) */
    void (*on_token)(struct sched_job *job, const struct engine_delta *d);
    /* the end (engine thread); res and its text are valid during the call only */
    void (*on_done)(struct sched_job *job, const struct engine_result *res);
    struct sched_job *next_;    /* private */
    double t_submit_;           /* private */
    double t_delta_;            /* private: its last delta (ITL) */
};

/* called when a batch has no line left to hand out and none in flight (engine thread) */
typedef void (*sched_batch_idle_fn)(void *ud, const char *batch_id);

/* Takes ownership of be. The store outlives the sched. */
int sched_init(struct sched_params p, struct backend *be, struct store *st,
               sched_batch_idle_fn idle, void *idle_ud, struct sched **out);
int sched_start(struct sched *s);
/* graceful shutdown, step 1: hand out no more batch lines; interactive requests (queued
 * and new) still run. Not undone. */
void sched_drain(struct sched *s);
/* false while this scheduler's last claim or commit was refused by the store (a full
 * disk) and not yet retried with success: /ready answers 503 then */
bool sched_store_writable(struct sched *s);
/* requests in the engine or waiting for it: batch lines handed out plus interactive jobs
 * queued or running (0 = drained) */
int sched_inflight(struct sched *s);
/* stop the engine thread: running requests end as cancelled (batch lines stay claimed and
 * are requeued at the next start), interactive jobs still queued fail with
 * NS_ERR_UNAVAILABLE, later sched_submit() calls too. Idempotent. */
void sched_stop(struct sched *s);
/* sched_stop() if needed, then free everything, the engine included */
void sched_free(struct sched *s);

int sched_submit(struct sched *s, struct sched_job *job);
/* start handing out lines of an in-progress batch (input: the batch's input file path) */
int sched_add_batch(struct sched *s, const char *batch_id, const char *input_path);
/* stop handing out its lines; returns how many are still in the engine */
int sched_drop_batch(struct sched *s, const char *batch_id);
/* lines of the batch in the engine now (-1 when the sched does not know the batch) */
int sched_batch_inflight(struct sched *s, const char *batch_id);
/* the ids of the batches s works (not dropped), into *ids (free(3) it); 0 ok */
int sched_batch_ids(struct sched *s, char (**ids)[48], int *n);

const char *sched_model_name(const struct sched *s);
struct backend *sched_backend(struct sched *s);

#define SCHED_HIST_BUCKETS 14
/* upper bounds in seconds of the histogram buckets (the last is +Inf) */
extern const double sched_hist_bounds[SCHED_HIST_BUCKETS];

struct sched_hist {
    uint64_t counts[SCHED_HIST_BUCKETS]; /* per bucket, not cumulative */
    double sum;
    uint64_t n;
};

struct sched_stats {
    uint64_t interactive_waiting, interactive_done;
    uint64_t batch_lines_done;
    uint64_t batch_lines_failed;     /* of batch_lines_done: with an error result */
    uint64_t interactive_failed;     /* of interactive_done */
    uint64_t prompt_tokens, completion_tokens; /* of successful requests, both lanes */
    uint64_t batch_prompt_tokens, batch_completion_tokens; /* of those, batch lines' */
    int active_batches;
    struct sched_hist ttft;          /* interactive: submit -> first token */
    struct sched_hist itl;           /* interactive streams: one delta -> the next */
    struct sched_hist latency;       /* interactive: submit -> done */
    struct sched_hist line_latency;  /* batch lines: admitted -> done */
    struct sched_hist store_write;   /* group commits of batch results */
};
void sched_get_stats(struct sched *s, struct sched_stats *out);

#endif
