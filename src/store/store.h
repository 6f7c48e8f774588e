/*
 * store.h — the durable state of `nightshift serve`: files, batches and the per-line
 * results of each batch, and stored Responses API objects. Pluggable: a store is a const
 * table of operations registered by name (like SQLite's VFS), found by the scheme of the
 * --db URI. SQLite (store_sqlite.c) is the default; PostgreSQL (store_pg.c) is the same
 * table for many nodes on one queue.
 *
 * The table (struct store_ops) is grouped by concern: the store's life at the top (open,
 * close, check, node_id), then one sub-table each for files (.file), batches (.batch),
 * batch lines (.lines), webhook deliveries (.webhook), API keys (.key), Responses API
 * objects (.response) and the store as a whole (.admin: probe, backup, restore). Callers
 * use store_<object>_<op>(st, ...) on an open store, which also retries the self-contained
 * transactions on contention (below); only opening and the whole-store commands go
 * through store_find()'s table.
 *
 * INVARIANTS
 * - A batch line moves pending -> running -> done (ok or failed), and only forward, except
 *   that store_ops.lines.requeue() puts running lines back to pending at start-up (they
 *   were in flight when the process died): a finished line is never recomputed, and its
 *   result is written once (the line's primary key).
 * - Batch counters (completed, failed, tokens) change in the same transaction as the line
 *   they count, so request_counts are exact after any crash.
 * - File contents are read from a path under the data dir (store_file.path); a file never
 *   changes once inserted. SQLite keeps only metadata (the content is that file);
 *   PostgreSQL keeps the content too and file_get makes the local copy on first use.
 * - A stored response's status changes only by response_update's compare-and-set, so two
 *   writers (a background run and a cancel, two nodes) never overwrite each other; its id,
 *   owner, created_at, model, previous_id and request never change once inserted. The
 *   store reads none of its JSON (request, body): they are the proto layer's.
 *
 * THREADS: every operation may be called from any thread; implementations serialise
 * internally. Out-params are owned by the caller (free with the matching _release).
 */
#ifndef NS_STORE_STORE_H
#define NS_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../util/status.h"

struct store;

struct store_file {
    char id[48];
    char owner[64];
    char purpose[32];
    char *filename;          /* owned */
    int64_t bytes;
    int64_t created_at;
    int64_t expires_at;      /* 0 = never */
    char *path;              /* owned: where the content is on disk */
};

enum store_batch_status {
    SB_VALIDATING = 0, SB_FAILED, SB_IN_PROGRESS, SB_FINALIZING, SB_COMPLETED,
    SB_EXPIRED, SB_CANCELLING, SB_CANCELLED, SB_STATUS_COUNT_
};

struct store_batch {
    char id[48];
    char owner[64];
    char endpoint[32];
    char *model;             /* owned; NULL until validated */
    char input_file_id[48];
    char completion_window[16];
    enum store_batch_status status;
    char output_file_id[48]; /* "" until set */
    char error_file_id[48];
    int64_t created_at, in_progress_at, expires_at, finalizing_at, completed_at, failed_at, expired_at,
        cancelling_at, cancelled_at;  /* 0 = null */
    int64_t total, completed, failed;
    int64_t input_tokens, cached_tokens, output_tokens;
    int64_t prompt_computed;          /* extension: prompt tokens actually computed */
    int64_t canceled, expired;        /* of `failed`: lines settled by a cancel / the window */
    char *metadata;          /* owned JSON object text, or NULL */
    char *errors;            /* owned JSON {"object":"list","data":[...]} text, or NULL */
    int64_t output_expires_after;     /* seconds, 0 = none */
    int64_t not_before;      /* extension: do not start before (unix s), 0 = now */
    int64_t seq;             /* insertion order (list pagination) */
};

enum store_line_state { SL_PENDING = 0, SL_RUNNING = 1, SL_OK = 2, SL_FAILED = 3 };

enum store_webhook_state { SW_PENDING = 0, SW_DELIVERED = 1, SW_FAILED = 2 };

/* one webhook delivery (an event to one endpoint), durable until delivered or given up */
struct store_webhook {
    char id[48];             /* evt_...: the event id and the webhook-id header */
    char batch_id[48];
    char type[32];           /* batch.completed, batch.failed, batch.cancelled, batch.expired */
    char endpoint[64];       /* the config's [webhook NAME] whose secret signs it */
    char *url;               /* owned */
    char *body;              /* owned: the event JSON, signed as it is */
    int64_t created_at, next_at, delivered_at;
    int attempts, last_status;
    int state;               /* enum store_webhook_state */
    char last_error[200];
};
void store_webhook_release(struct store_webhook *w);

/* a finished batch line, for lines_finish (the caller owns the strings) */
struct store_result {
    const char *batch_id;
    int64_t idx;
    bool ok;
    const char *json;        /* the output or error file line */
    int prompt_tokens, completion_tokens, cached_tokens, prompt_computed;
    const char *backend;     /* the model whose backend ran it: counted in that backend's
                                share of the batch (lines.routes); NULL = not counted there */
};

/* One backend's share of a batch (lines.routes, schema v8 in SQLite, v5 in PostgreSQL):
 * the lines routed to it and not finished, and those it finished. A line's route is the
 * model whose scheduler claims it: its own model until spill-over or fail-over moves it
 * (lines.route, lines.release); it is durable, so a restart neither runs a line twice nor
 * loses one. */
struct store_route {
    char backend[128];        /* the model name */
    int64_t pending, running; /* routed there, unfinished */
    int64_t completed, failed;/* finished there */
    int64_t input_tokens, output_tokens, cached_tokens; /* of its successful lines */
};

/* The row of backend `name` in the array *arr of *n rows (capacity *cap), appended zeroed
 * when new (the array grown with realloc); NULL when out of memory. For the stores' routes
 * ops, which sum a batch's lines by backend. */
struct store_route *store_route_row(struct store_route **arr, int *n, int *cap, const char *name);

struct store_line {
    int64_t idx;             /* 0-based position in the batch */
    uint32_t line_no;        /* 1-based line in the input file */
    char *custom_id;         /* owned */
    int64_t off, len;        /* the line's bytes in the input file */
    int url;                 /* enum batchfile_url */
    char *model;             /* owned; body.model (a batch's lines may name several models) */
    const char *result;      /* lines_insert only: already failed with this result line */
};

enum store_fail_kind { SF_CANCELLED = 1, SF_EXPIRED = 2 };

struct store_list_page {
    const char *after;       /* id to start after, or NULL */
    int limit;
    bool desc;
    const char *owner;       /* NULL = all owners */
    const char *purpose;     /* files: NULL = any */
    const char *endpoint;    /* batches: only this endpoint (NULL = any) ... */
    bool endpoint_not;       /* ... or every endpoint but this one */
    const char *before;      /* batches: id to list newer ones than (Anthropic before_id) */
};

/* An API key (nightshift keys create): only its SHA-256 is stored. Every file and batch is
 * owned by a project; a key acts for its project, an admin key for all of them.
 * Limits (schema v5 in SQLite, v2 in PostgreSQL; http/quota.h says what they mean): stored
 * with the key by key_insert, read back by key_get; -1 = not set (the server's default
 * applies; a store keeps it as NULL), 0 = unlimited, N = the limit. */
struct store_key {
    char name[64];
    char project[64];
    bool admin;
    int64_t created_at;
    int64_t rpm;                 /* real-time requests per minute */
    int64_t tokens_per_day;      /* real-time prompt + completion tokens per UTC day */
    int64_t batch_queue_tokens;  /* estimated tokens of unfinished batches */
    int64_t revoked_at;          /* 0: active; else when `keys revoke` ended it (key_list only) */
};

enum store_response_status {
    SR_QUEUED = 0, SR_IN_PROGRESS, SR_COMPLETED, SR_INCOMPLETE, SR_FAILED, SR_CANCELLED, SR_STATUS_COUNT_
};

/* A stored Responses API object (POST /v1/responses with store, or background), schema v7
 * in SQLite, v4 in PostgreSQL. The store keeps the JSON texts as they are given and never
 * parses them. Release with store_response_release(). */
struct store_response {
    char id[48];             /* resp_... */
    char owner[64];          /* the project of the key that made it ("" in open mode), like store_batch.owner */
    int64_t created_at;      /* unix seconds */
    enum store_response_status status;
    bool background;
    char *model;             /* owned */
    char *previous_id;       /* owned or NULL: previous_response_id */
    char *request;           /* owned JSON text: what the proto layer needs to run it again and its input items (opaque to the store) */
    char *body;              /* owned JSON text: the response object as last written (opaque to the store) */
    int64_t seq;             /* insertion order, set by insert */
};

/* The operations, one sub-table per concern (files, batches, lines, webhooks, keys,
 * responses, the store as a whole), the store's life (open, close, check) at the top. A
 * store's table is one const value (store_sqlite_ops, store_pg_ops); callers reach the
 * operations on an open store through the store_<object>_<op>() wrappers below, and open
 * and the whole-store operations through store_find()'s table. */

/* files: metadata rows, content on disk (store_file.path) */
struct store_file_ops {
    int (*insert)(struct store *st, const struct store_file *f);
    int (*get)(struct store *st, const char *id, struct store_file *out);   /* NS_ERR_NOT_FOUND */
    int (*list)(struct store *st, const struct store_list_page *pg, struct store_file **out, int *n, bool *has_more);
    int (*delete)(struct store *st, const char *id);
};

/* batches: the rows and their status; the counters are the lines' (struct store_line_ops) */
struct store_batch_ops {
    int (*insert)(struct store *st, struct store_batch *b);              /* sets b->seq */
    int (*get)(struct store *st, const char *id, struct store_batch *out);
    int (*list)(struct store *st, const struct store_list_page *pg, struct store_batch **out, int *n,
                bool *has_more);
    /* Write the status, timestamps, file ids, model, errors of b (counters and total are
     * the store's: lines.finish and lines.insert keep them) if the stored status is still
     * `expect`: a compare-and-set, so a cancel and the batch manager never overwrite each
     * other's change. NS_ERR_CONFLICT when the status moved on (re-read and decide again). */
    int (*update)(struct store *st, const struct store_batch *b, enum store_batch_status expect);
    /* ids of batches in a status (start-up recovery, the scheduler's work list) */
    int (*ids_by_status)(struct store *st, enum store_batch_status s, char (**ids)[48], int *n);
    /* Optional (NULL: one process per store, every step is ours). Take or renew this
     * node's lease on a batch for the steps that must run on one node at a time
     * (validation, settling, finalization): NS_OK when ours now, NS_ERR_CONFLICT while
     * another node's lease runs. update's compare-and-set stays the guard of record. */
    int (*lease)(struct store *st, const char *id);
    /* delete a batch and its lines (the caller removes its files) */
    int (*delete)(struct store *st, const char *id);
};

/* the lines of batches: pending -> running -> done, and the batch counters with them */
struct store_line_ops {
    int (*insert)(struct store *st, const char *batch_id, const struct store_line *lines, int n);
    /* move up to max pending lines of the batch routed to that model (NULL = any; a line's
     * route is its own model until route/release move it) to running; returns them in order */
    int (*claim)(struct store *st, const char *batch_id, const char *model, int max, struct store_line **out,
                 int *n);
    /* record finished lines and update their batches' counters, all in one transaction
     * (group commit: one fsync for many lines); a line already finished is left alone */
    int (*finish)(struct store *st, const struct store_result *rs, int n);
    /* running -> pending (start-up): every running line of the store, or, where many
     * nodes share it, this node's (another node's lines are claimable once its lease on
     * them runs out: claim takes them and count_unfinished counts them pending) */
    int (*requeue)(struct store *st);
    /* every pending (and, when running too, running) line fails with this result line
     * maker: json = make(ud, custom_id) — expiry and cancellation. Where nodes share the
     * store, "running" is this node's running lines and those whose lease ran out: another
     * live node settles its own (count_unfinished says when none is left) */
    int (*fail_unfinished)(struct store *st, const char *batch_id, bool running_too, enum store_fail_kind kind,
                           char *(*make)(void *ud, const char *custom_id), void *ud);
    int (*count_unfinished)(struct store *st, const char *batch_id, int64_t *pending, int64_t *running);
    /* the failed lines of a batch (their input positions), in line order — for a retry */
    int (*failed)(struct store *st, const char *batch_id, struct store_line **out, int *n);
    /* write finished lines in input line order (whatever order they ran in): ok ones to
     * ok_out, failed ones to err_out (either may be NULL) */
    int (*export)(struct store *st, const char *batch_id, FILE *ok_out, FILE *err_out);
    /* spill-over: route up to max pending lines of the batch now routed to `from` (and whose
     * own model is `model`; NULL = any) to `to`, the last ones (highest idx) first, since the
     * scheduler of `from` claims from the front; *moved says how many. Running lines never
     * move: a line is never in two places. */
    int (*route)(struct store *st, const char *batch_id, const char *model, const char *from, const char *to,
                 int64_t max, int64_t *moved);
    /* fail-over: these running lines of the batch go back to pending, routed to `to` (a
     * backend that failed gives them up unfinished); a line already finished is left alone */
    int (*release)(struct store *st, const char *batch_id, const int64_t *idx, int n, const char *to);
    /* the batch's lines by backend (struct store_route), *out malloc'd (free(3) it) */
    int (*routes)(struct store *st, const char *batch_id, struct store_route **out, int *n);
};

/* webhook deliveries: queued with the event, taken when due, updated per try */
struct store_webhook_ops {
    int (*insert)(struct store *st, const struct store_webhook *w);
    int (*due)(struct store *st, int64_t now, int max, struct store_webhook **out, int *n);
    int (*update)(struct store *st, const struct store_webhook *w);
    /* newest first; batch_id NULL = all */
    int (*list)(struct store *st, const char *batch_id, int limit, struct store_webhook **out, int *n);
};

/* API keys by the hex SHA-256 of the key: insert (NS_ERR_CONFLICT when the name is taken,
 * by a revoked key too), look up an active one (NS_ERR_NOT_FOUND, also when revoked),
 * count. A revoked key stays as a row, and insert leaves a mark that outlives even rows
 * deleted by hand, so count is > 0 for good once any key was created: a server never falls
 * back to open mode (issue 27.9). */
struct store_key_ops {
    int (*insert)(struct store *st, const struct store_key *k, const char *hash_hex);
    int (*get)(struct store *st, const char *hash_hex, struct store_key *out);
    int (*count)(struct store *st, int64_t *n);
    /* every key, revoked ones too, oldest first (*out malloc'd, the caller frees it) */
    int (*list)(struct store *st, struct store_key **out, int *n);
    /* end the active key named name at `at` (NS_ERR_NOT_FOUND: no such active key) */
    int (*revoke)(struct store *st, const char *name, int64_t at);
    /* give the active key named name a new secret (its SHA-256); the old one stops working */
    int (*rotate)(struct store *st, const char *name, const char *hash_hex);
};

/* Responses API objects by id. insert, update, delete and expire are each one
 * self-contained transaction (the wrappers retry them on contention). model, request and
 * body must not be NULL (insert; body: update too): NS_ERR_INTERNAL, nothing written. */
struct store_response_ops {
    int (*insert)(struct store *st, struct store_response *r);   /* sets r->seq; NS_ERR_CONFLICT when the id exists */
    int (*get)(struct store *st, const char *id, struct store_response *out); /* NS_ERR_NOT_FOUND */
    /* compare-and-set: write status and body (and nothing else) if the stored status is still `expect`;
       NS_ERR_CONFLICT when it moved on, NS_ERR_NOT_FOUND when gone */
    int (*update)(struct store *st, const struct store_response *r, enum store_response_status expect);
    int (*delete)(struct store *st, const char *id);             /* NS_ERR_NOT_FOUND */
    /* ids of responses in a status, oldest first (start-up: background ones to run again);
     * *ids malloc'd (free(3) it), never NULL on NS_OK */
    int (*ids_by_status)(struct store *st, enum store_response_status s, char (**ids)[48], int *n);
    /* delete responses created before `before` (retention), whatever their status; *n_deleted set */
    int (*expire)(struct store *st, int64_t before, int64_t *n_deleted);
};

/* Operations on a store as a whole (nightshift doctor, backup, restore). Optional: NULL
 * where a store cannot (the commands then say so). All but files_relocate take the URI
 * and data dir as open() does and work without a struct store, so they never migrate. */
struct store_admin_ops {
    /* the schema version of the store at uri, read without changing anything: *have = 0
     * when there is no store there yet; *known = the newest version this binary knows */
    int (*probe)(const char *uri, const char *data_dir, int *have, int *known, char *err, size_t errlen);
    /* a consistent snapshot of the store at uri, taken while a server may be writing to it,
     * into the new file `dest` (which must not exist); *file_ids (free(3) it) and *n_files
     * are the ids of the files the snapshot holds */
    int (*backup)(const char *uri, const char *data_dir, const char *dest, char (**file_ids)[48], int *n_files,
                  char *err, size_t errlen);
    /* replace the store at uri (created when absent) by the snapshot `src` that backup()
     * wrote; no server may be using it (the caller holds the data dir's lock) */
    int (*restore)(const char *uri, const char *data_dir, const char *src, char *err, size_t errlen);
    /* point every file's path at files_dir/<id> (its data dir moved: after a restore) */
    int (*files_relocate)(struct store *st, const char *files_dir);
};

struct store_ops {
    /* the store's life */
    const char *scheme;      /* "sqlite", "postgres" */
    const char *alias;       /* another URI scheme for the same store ("postgresql"), or NULL */
    int (*open)(const char *uri, const char *data_dir, struct store **out, char *err, size_t errlen);
    void (*close)(struct store *st);
    int (*check)(struct store *st);   /* writable? (for /ready) */
    /* Optional: this process's id among the nodes sharing the store (logs, doctor) */
    int (*node_id)(struct store *st, char *out, size_t n);

    struct store_file_ops file;
    struct store_batch_ops batch;
    struct store_line_ops lines;
    struct store_webhook_ops webhook;
    struct store_key_ops key;
    struct store_response_ops response;
    struct store_admin_ops admin;
};


/* Every store's struct begins with this (SQLite's sqlite3_file pattern): a store carries its
 * own operations, so callers hold one pointer, and call through the wrappers below. */
struct store_base {
    const struct store_ops *ops;
};

static inline const struct store_ops *store_ops_of(struct store *st)
{
    return ((struct store_base *)st)->ops;
}

/* ---- for the stores: contention ----
 * A store that finds the database contended (SQLite: SQLITE_BUSY or SQLITE_LOCKED;
 * PostgreSQL: a serialization failure, SQLSTATE 40001, or a deadlock, 40P01) rolls back
 * and returns NS_ERR_BUSY. The wrappers below of the operations that are one
 * self-contained transaction (inserts, batch_update, lines_claim, lines_finish,
 * lines_fail_unfinished, batch_delete, response_update, response_delete, response_expire)
 * try it again: at most STORE_BUSY_TRIES times in all, pausing a little longer each time,
 * and not once STORE_BUSY_BUDGET_MS have passed since the first try. SQLite's busy timeout
 * already waits for a lock; this is for what it does not cover (a snapshot that went
 * stale, SQLITE_LOCKED, PostgreSQL's conflicts), and a try that waited the busy timeout
 * out is past the budget, so it is not waited out again. A caller sees NS_ERR_BUSY only
 * when the tries are spent. */
#define STORE_BUSY_TRIES 4
#define STORE_BUSY_BUDGET_MS 1000
struct store_retry {
    int tries;              /* tries made */
    double start;           /* clock_now() at the first */
};
struct store_retry store_retry_begin(void);
/* after a try that returned rc: true (having paused) when it should be tried again */
bool store_retry_again(struct store_retry *r, int rc);
/* NS_ERR_BUSY for SQLSTATE 40001 and 40P01, else NS_ERR_IO (NULL: no SQLSTATE) */
int store_status_of_sqlstate(const char *sqlstate);
/* NS_ERR_BUSY for SQLITE_BUSY and SQLITE_LOCKED (and their extended codes), else NS_ERR_IO */
int store_status_of_sqlite(int code);
/* the wrappers' side: `return` the status of call (an operation that is one self-contained
 * transaction), tried again as above while it says NS_ERR_BUSY */
#define STORE_RETURN_RETRIED(call)                                                                                 \
    do {                                                                                                           \
        struct store_retry again_ = store_retry_begin();                                                           \
        int rc_;                                                                                                   \
        while (store_retry_again(&again_, rc_ = (call))) {                                                         \
        }                                                                                                          \
        return rc_;                                                                                                \
    } while (0)

/* one wrapper per operation that works on an open store: the only way callers reach them
 * (an optional one answers for a store without it, as it says) */
static inline void store_close(struct store *st)
{
    store_ops_of(st)->close(st);
}

static inline int store_check(struct store *st)
{
    return store_ops_of(st)->check(st);
}

static inline int store_file_insert(struct store *st, const struct store_file *f)
{
    STORE_RETURN_RETRIED(store_ops_of(st)->file.insert(st, f));
}

static inline int store_file_get(struct store *st, const char *id, struct store_file *out)
{
    return store_ops_of(st)->file.get(st, id, out);
}

static inline int store_file_list(struct store *st, const struct store_list_page *pg, struct store_file **out, int *n, bool *has_more)
{
    return store_ops_of(st)->file.list(st, pg, out, n, has_more);
}

static inline int store_file_delete(struct store *st, const char *id)
{
    return store_ops_of(st)->file.delete(st, id);
}

static inline int store_batch_insert(struct store *st, struct store_batch *b)
{
    STORE_RETURN_RETRIED(store_ops_of(st)->batch.insert(st, b));
}

static inline int store_batch_get(struct store *st, const char *id, struct store_batch *out)
{
    return store_ops_of(st)->batch.get(st, id, out);
}

static inline int store_batch_list(struct store *st, const struct store_list_page *pg, struct store_batch **out, int *n, bool *has_more)
{
    return store_ops_of(st)->batch.list(st, pg, out, n, has_more);
}

static inline int store_batch_update(struct store *st, const struct store_batch *b, enum store_batch_status expect)
{
    STORE_RETURN_RETRIED(store_ops_of(st)->batch.update(st, b, expect));
}

static inline int store_batch_ids_by_status(struct store *st, enum store_batch_status s, char (**ids)[48], int *n)
{
    return store_ops_of(st)->batch.ids_by_status(st, s, ids, n);
}

/* NS_OK where the store has no leases (one process per store: every step is ours) */
static inline int store_batch_lease(struct store *st, const char *id)
{
    return store_ops_of(st)->batch.lease ? store_ops_of(st)->batch.lease(st, id) : NS_OK;
}

static inline int store_lines_insert(struct store *st, const char *batch_id, const struct store_line *lines, int n)
{
    STORE_RETURN_RETRIED(store_ops_of(st)->lines.insert(st, batch_id, lines, n));
}

static inline int store_lines_claim(struct store *st, const char *batch_id, const char *model, int max, struct store_line **out, int *n)
{
    STORE_RETURN_RETRIED(store_ops_of(st)->lines.claim(st, batch_id, model, max, out, n));
}

static inline int store_lines_finish(struct store *st, const struct store_result *rs, int n)
{
    STORE_RETURN_RETRIED(store_ops_of(st)->lines.finish(st, rs, n));
}

static inline int store_lines_requeue(struct store *st)
{
    return store_ops_of(st)->lines.requeue(st);
}

static inline int store_lines_fail_unfinished(struct store *st, const char *batch_id, bool running_too, enum store_fail_kind kind, char *(*make)(void *ud, const char *custom_id), void *ud)
{
    STORE_RETURN_RETRIED(store_ops_of(st)->lines.fail_unfinished(st, batch_id, running_too, kind, make, ud));
}

static inline int store_lines_count_unfinished(struct store *st, const char *batch_id, int64_t *pending, int64_t *running)
{
    return store_ops_of(st)->lines.count_unfinished(st, batch_id, pending, running);
}

static inline int store_batch_delete(struct store *st, const char *id)
{
    STORE_RETURN_RETRIED(store_ops_of(st)->batch.delete(st, id));
}

static inline int store_lines_failed(struct store *st, const char *batch_id, struct store_line **out, int *n)
{
    return store_ops_of(st)->lines.failed(st, batch_id, out, n);
}

static inline int store_lines_export(struct store *st, const char *batch_id, FILE *ok_out, FILE *err_out)
{
    return store_ops_of(st)->lines.export(st, batch_id, ok_out, err_out);
}

static inline int store_lines_route(struct store *st, const char *batch_id, const char *model, const char *from,
                                    const char *to, int64_t max, int64_t *moved)
{
    STORE_RETURN_RETRIED(store_ops_of(st)->lines.route(st, batch_id, model, from, to, max, moved));
}

static inline int store_lines_release(struct store *st, const char *batch_id, const int64_t *idx, int n, const char *to)
{
    STORE_RETURN_RETRIED(store_ops_of(st)->lines.release(st, batch_id, idx, n, to));
}

static inline int store_lines_routes(struct store *st, const char *batch_id, struct store_route **out, int *n)
{
    return store_ops_of(st)->lines.routes(st, batch_id, out, n);
}

static inline int store_webhook_insert(struct store *st, const struct store_webhook *w)
{
    STORE_RETURN_RETRIED(store_ops_of(st)->webhook.insert(st, w));
}

static inline int store_webhooks_due(struct store *st, int64_t now, int max, struct store_webhook **out, int *n)
{
    return store_ops_of(st)->webhook.due(st, now, max, out, n);
}

static inline int store_webhook_update(struct store *st, const struct store_webhook *w)
{
    return store_ops_of(st)->webhook.update(st, w);
}

static inline int store_webhooks_list(struct store *st, const char *batch_id, int limit, struct store_webhook **out, int *n)
{
    return store_ops_of(st)->webhook.list(st, batch_id, limit, out, n);
}

/* NS_ERR_UNSUPPORTED where the store cannot */
static inline int store_files_relocate(struct store *st, const char *files_dir)
{
    return store_ops_of(st)->admin.files_relocate ? store_ops_of(st)->admin.files_relocate(st, files_dir)
                                                  : NS_ERR_UNSUPPORTED;
}

static inline int store_key_insert(struct store *st, const struct store_key *k, const char *hash_hex)
{
    return store_ops_of(st)->key.insert(st, k, hash_hex);
}

static inline int store_key_get(struct store *st, const char *hash_hex, struct store_key *out)
{
    return store_ops_of(st)->key.get(st, hash_hex, out);
}

static inline int store_key_count(struct store *st, int64_t *n)
{
    return store_ops_of(st)->key.count(st, n);
}

static inline int store_key_list(struct store *st, struct store_key **out, int *n)
{
    return store_ops_of(st)->key.list(st, out, n);
}

static inline int store_key_revoke(struct store *st, const char *name, int64_t at)
{
    return store_ops_of(st)->key.revoke(st, name, at);
}

static inline int store_key_rotate(struct store *st, const char *name, const char *hash_hex)
{
    return store_ops_of(st)->key.rotate(st, name, hash_hex);
}

static inline int store_response_insert(struct store *st, struct store_response *r)
{
    STORE_RETURN_RETRIED(store_ops_of(st)->response.insert(st, r));
}

static inline int store_response_get(struct store *st, const char *id, struct store_response *out)
{
    return store_ops_of(st)->response.get(st, id, out);
}

static inline int store_response_update(struct store *st, const struct store_response *r, enum store_response_status expect)
{
    STORE_RETURN_RETRIED(store_ops_of(st)->response.update(st, r, expect));
}

static inline int store_response_delete(struct store *st, const char *id)
{
    STORE_RETURN_RETRIED(store_ops_of(st)->response.delete(st, id));
}

static inline int store_response_ids_by_status(struct store *st, enum store_response_status s, char (**ids)[48], int *n)
{
    return store_ops_of(st)->response.ids_by_status(st, s, ids, n);
}

static inline int store_response_expire(struct store *st, int64_t before, int64_t *n_deleted)
{
    STORE_RETURN_RETRIED(store_ops_of(st)->response.expire(st, before, n_deleted));
}

/* NS_ERR_UNSUPPORTED where the store is not shared (no node ids) */
static inline int store_node_id(struct store *st, char *out, size_t n)
{
    return store_ops_of(st)->node_id ? store_ops_of(st)->node_id(st, out, n) : NS_ERR_UNSUPPORTED;
}

/* the store whose scheme matches the URI ("sqlite:path", "postgres://...",
 * "postgresql://..."), or NULL */
const struct store_ops *store_find(const char *uri);

/* Why this thread's last failed store operation failed, as the database said it
 * ("database or disk is full", PostgreSQL's message), into buf; "" when nothing was noted.
 * Operations return a status only; a caller that logs a failure adds this (issue 28: store
 * errors were "(store error)" and nothing more). store_note_error() is the stores' side. */
void store_last_error(char *buf, size_t n);
void store_note_error(const char *msg);

void store_file_release(struct store_file *f);
void store_batch_release(struct store_batch *b);
void store_line_release(struct store_line *l);

const char *store_batch_status_name(enum store_batch_status s);
bool store_batch_status_terminal(enum store_batch_status s);

/* free r's strings and set them NULL (r itself is the caller's); NULL is a no-op */
void store_response_release(struct store_response *r);
/* the OpenAI word for s ("queued", "in_progress", "completed", "incomplete", "failed",
 * "cancelled"); "unknown" out of range */
const char *store_response_status_name(enum store_response_status s);
/* the status an OpenAI word names, or -1 when none (NULL too) */
int store_response_status_of(const char *name);

extern const struct store_ops store_sqlite_ops;
extern const struct store_ops store_pg_ops;

#endif
