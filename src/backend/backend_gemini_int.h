/*
 * backend_gemini_int.h — what backend_gemini.c (the loop) and backend_gemini_state.c (the
 * state file and the restored lines' index) share: the backend's structures. Not for other
 * modules: backend.h's ops table is the interface.
 *
 * THREADS: everything here belongs to the backend's run thread, except what the loop's mu
 * guards (batch_loop.h).
 */
#ifndef NS_BACKEND_GEMINI_INT_H
#define NS_BACKEND_GEMINI_INT_H

#include "backend.h"
#include "batch_loop.h"
#include "gemini_api.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gb_job {
    struct engine_request *req; /* NULL: a restored line not pulled again yet */
    cJSON *greq;                /* the GenerateContentRequest; NULL for a placeholder */
    char hash[65];              /* sha256 of greq as sent */
    char key[32];
    int attempts;
    double t_admit;
    cJSON *result;              /* a placeholder's result line, waiting for its request */
    struct gb_job *next;
    struct gb_job *hnext;       /* a restored placeholder: its chain in gb->hidx */
    struct gb_batch *hbatch;    /* ... and its batch */
};

struct gb_batch {                /* one Gemini batch job */
    char name[192];              /* "batches/..."; "" until created (or found) */
    char display[96];            /* our unique displayName */
    struct gb_job *jobs;
    int n;
    char (*keys)[32];            /* every line's key in the order sent (inline responses
                                    without metadata are in that order) */
    int n_keys;
    double next_poll, interval;
    bool restored;
    bool ended;                  /* results collected; only waiting placeholders remain */
    double ended_at;
    struct gb_batch *next;
};

struct gemini_backend {
    struct batch_loop l;         /* the frame: numbers, pending counters, mu, stats */
    char *name, *upstream_model, *state_path;
    struct gemini_api *api;
    size_t inline_max;
    struct gb_job *pending, **pending_tail;
    struct gb_batch *batches;
    uint64_t seq;
    /* restored placeholders not yet taken, by request hash (gb_index_build): a restart may
     * restore tens of thousands, and every pulled line looks there */
    struct gb_job **hidx;
    size_t hcap;
};

/* the state file: every job not yet ended, its displayName, name, keys and lines (key and
 * request hash), written durably after each change; a failure is logged (a crash would
 * then send those lines again) */
void backend_gemini_state_save(struct gemini_backend *gb);
/* the state file's jobs as restored batches of placeholder lines (before run()) */
void backend_gemini_state_load(struct gemini_backend *gb);
/* (re)build the index of untaken placeholders: after the load, and whenever a restored
 * batch is freed (so it never points at freed jobs) */
void backend_gemini_index_build(struct gemini_backend *gb);
/* take out of the index a placeholder with this request hash whose answer may still come
 * (its job has not ended, or its answer is kept); NULL when none */
struct gb_job *backend_gemini_index_take(struct gemini_backend *gb, const char *hash, struct gb_batch **bo);

#endif
