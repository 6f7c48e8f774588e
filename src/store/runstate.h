/*
 * runstate.h — the checkpoint of a `nightshift run`: one SQLite database (WAL) beside the
 * output, holding each finished line's result. Re-running the same command after a crash
 * reads it back, skips every line already in it, and the final output files are written
 * from it, so every custom_id appears exactly once whatever happened in between.
 *
 * Writes are grouped: runstate_put() appends to an open transaction that is committed
 * every `commit_every` results or `commit_ms` milliseconds, whichever comes first, so
 * checkpointing costs little throughput; a crash loses at most that window, which is
 * recomputed on resume (never duplicated: custom_id is the primary key).
 *
 * The database records which input it belongs to (size and content hash); opening it
 * for another input fails with NS_ERR_CONFLICT rather than mixing two runs.
 *
 * Single-threaded: every call from the thread that opened it.
 */
#ifndef NS_STORE_RUNSTATE_H
#define NS_STORE_RUNSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct runstate;

struct runstate_params {
    int commit_every;        /* default 256 results */
    int commit_ms;           /* default 500 ms */
};
struct runstate_params runstate_default_params(void);

struct runstate_totals {
    uint64_t ok, failed;
    uint64_t prompt_tokens, completion_tokens, cached_tokens;
};

/* Open or create the checkpoint at path for the input identified by (size, hash).
 * On failure *out is NULL and err says why. */
int runstate_open(const char *path, struct runstate_params p, uint64_t input_size, uint64_t input_hash,
                  struct runstate **out, char *err, size_t errlen);
/* Commit pending writes and close. NULL is fine. */
void runstate_close(struct runstate *rs);

/* Call fn for each custom_id already finished (ok or failed). */
int runstate_each_done(struct runstate *rs, void (*fn)(void *ud, const char *custom_id), void *ud);

/* Record one finished line; `json` is the complete output/error line. */
int runstate_put(struct runstate *rs, const char *custom_id, uint32_t line, bool ok, const char *json,
                 int prompt_tokens, int completion_tokens, int cached_tokens);
/* Commit what is pending now. */
int runstate_flush(struct runstate *rs);

/* Write every result, in input line order, successes to ok_out and failures to err_out
 * (err_out may be NULL: failures are then only counted), and add them up. */
int runstate_export(struct runstate *rs, FILE *ok_out, FILE *err_out, struct runstate_totals *tot);

/* totals so far */
int runstate_totals(struct runstate *rs, struct runstate_totals *tot);

#endif
