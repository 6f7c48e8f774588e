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
 * SPILL-OVER AND FAIL-OVER (sched_set_fallback; sched_spill.c; route.h has the prediction rule)
 * A model may have a fallback: another model's sched. Once a second (route.h: tick_s) the
 * engine thread measures each batch's rate on this backend and, when the batch would miss
 * its deadline, routes lines not yet started to the fallback in the store (store.h:
 * lines.route), enough of them, last ones first; when the rate recovers, lines still
 * pending at the fallback come back. When the backend's circuit is open, every waiting line
 * of its batches goes to the fallback (pending ones in the store, claimed-but-not-started
 * ones released there), and a line that ends with a backend failure (NS_ERR_UPSTREAM,
 * NS_ERR_UNAVAILABLE) is released to the fallback instead of failing. A line's route is in
 * the store, so it runs in one place at a time and gets one result, across restarts.
 * Real-time requests follow on_failure: fail (the backend's 503) or fallback (sent to the
 * fallback model while the circuit is open, or again there when the backend failed before
 * a token was streamed; sched_job.served_by says so).
 * Lock order: a sched's mu, then its fallback's (fallback chains have no cycles: config.c).
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
    /* the clock of deadlines and rates: unix seconds; NULL = clock_wall (tests inject one) */
    double (*clock)(void);
};

/* what a model does with its fallback (sched_set_fallback) */
struct sched_route_params {
    double margin;              /* route.h: the safety share; default 0.2 */
    double turnaround_s;        /* route.h: the fallback's expected turnaround; default 60 */
    double min_observe_s;       /* route.h: work seen before a rate counts; default 10 */
    bool realtime_fallback;     /* on_failure = fallback (true) or fail */
};
struct sched_route_params sched_default_route_params(void);

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
    /* set by the sched when the request ran on the fallback model (on_failure = fallback):
     * its name, valid while the scheds live; NULL when it ran on the model asked */
    _Atomic(const char *) served_by;
    bool streamed_;             /* private: a delta was passed on */
    struct sched *fallback_from_; /* private: the sched it was first sent to */
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

/* Give s a fallback (another model's sched, which outlives s; NULL = none), before
 * sched_start. Batches of s are then watched and spilled as SPILL-OVER says. */
void sched_set_fallback(struct sched *s, struct sched *fallback, struct sched_route_params rp);
struct sched *sched_fallback(const struct sched *s);

/* One backend's lines of a batch as the scheduler sees them: its rate now (lines per
 * second, 0 until known), the deadline it plans for (unix s, 0 none). false when s does not
 * know the batch. */
bool sched_batch_rate(struct sched *s, const char *batch_id, double *rate, double *deadline);

/* is the backend down (an upstream whose circuit is open)? */
bool sched_backend_down(struct sched *s);

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
    uint64_t lines_spilled;          /* batch lines routed to the fallback (spill-over) */
    uint64_t lines_failed_over;      /* ... routed or released there because the backend failed */
    uint64_t lines_taken_back;       /* ... routed back from the fallback */
    uint64_t interactive_fallback;   /* real-time requests sent to the fallback */
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
