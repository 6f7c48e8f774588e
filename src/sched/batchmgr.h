/*
 * batchmgr.h — the life of a batch, from `validating` to a terminal status.
 *
 * DESIGN
 * One thread walks the batches that need something, each time it is woken (a new batch,
 * a cancel, a batch running dry) and at least every half second:
 *   validating  -> validate the input file (batchfile.h: every line, all errors), pick the
 *                  model's scheduler, insert the lines, -> in_progress; or -> failed
 *   in_progress -> when every line is done -> finalizing -> completed;
 *                  past expires_at -> stop handing out lines, let running ones finish,
 *                  fail the rest as batch_expired -> expired
 *   cancelling  -> the same with batch_cancelled -> cancelled
 *   finalizing  -> write the output and error files from the store -> completed
 * Every step is idempotent and recorded in the store before the next, so a restart after
 * kill -9 picks each batch up where it was (running lines are requeued first).
 *
 * THREADS: the manager thread, plus batchmgr_kick() from any thread.
 */
#ifndef NS_SCHED_BATCHMGR_H
#define NS_SCHED_BATCHMGR_H

#include "../store/store.h"
#include "sched.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct batchmgr;

struct batchmgr_params {
    const char *data_dir;        /* files live in data_dir/files/ */
    size_t max_lines;            /* per batch; default 50,000 */
    size_t max_bytes;            /* per input file; default 200 MB */
    bool group_by_prefix;        /* run a batch's lines grouped by shared prompt prefix */
    int64_t message_batch_retention; /* seconds an ended Anthropic Message Batch is kept; 29 days */
    int64_t response_retention;  /* seconds a stored Responses API object is kept; 30 days (OpenAI's) */
    struct webhook *webhooks;    /* borrowed; told when a batch ends (NULL: none) */
};
struct batchmgr_params batchmgr_default_params(void);

/* scheds: one per model, borrowed (they outlive the manager) */
int batchmgr_init(struct batchmgr_params p, struct store *st,
                  struct sched **scheds, int n_scheds, struct batchmgr **out);
/* requeue lines that were running when the process died, resume in-progress batches,
 * then start the thread */
int batchmgr_start(struct batchmgr *m);
void batchmgr_free(struct batchmgr *m);
void batchmgr_kick(struct batchmgr *m);

/* the sched serving `model`, or NULL */
struct sched *batchmgr_sched_for(struct batchmgr *m, const char *model);

/* sched_batch_idle_fn to pass to sched_init: kicks the manager */
void batchmgr_on_idle(void *ud, const char *batch_id);

/* parse "24h", "90m", "3600s" (the last two are extensions) into seconds; 0 ok */
int batchmgr_parse_window(const char *s, int64_t *seconds);

/* data_dir/files/<id> */
void batchmgr_file_path(const char *data_dir, const char *file_id, char *out, size_t n);

#endif
