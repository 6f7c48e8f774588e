/*
 * backend_batch_int.h — what backend_batch.c (the openai-batch row, the shared job and
 * batch handling) and backend_batch_anthropic.c (the anthropic-batch row) share: the
 * backend's structures and the helpers a provider row calls. Not for other modules:
 * backend.h's ops table is the interface.
 *
 * THREADS: everything here belongs to the backend's run thread (batch_loop.h: the loop's
 * mu guards its own fields).
 */
#ifndef NS_BACKEND_BATCH_INT_H
#define NS_BACKEND_BATCH_INT_H

#include "backend.h"
#include "batch_loop.h"
#include "batch_preset.h"

#include "../util/buf.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BB_MAX_RESPONSE (512u << 20) /* an answer or a results file, at most */

struct bb_job {
    struct engine_request *req;
    cJSON *body;                /* what goes upstream: an OpenAI body, or Anthropic params */
    bool chat;
    int attempts;
    double t_admit;
    size_t bytes;               /* its line in the input file, at most */
    char custom_id[32];
    char last_error[300];
    struct bb_job *next;
};

struct bb_batch {               /* one upstream batch */
    char id[128];
    bool chat;
    struct bb_job *jobs;
    int n;
    size_t bytes;
    double next_poll, interval;
    char output_file[128], error_file[128]; /* openai */
    char results_url[1024];     /* anthropic */
    char failure[300];          /* why the provider failed the whole batch, if it did */
    struct bb_batch *next;
};

struct batch_backend;

struct bb_provider {
    const char *kind;
    /* send jobs (their bodies built by admit) as one upstream batch; sets b->id */
    int (*submit)(struct batch_backend *bb, struct bb_batch *b, char *err, size_t errlen);
    /* one poll; *ended when results can be collected */
    int (*poll)(struct batch_backend *bb, struct bb_batch *b, bool *ended, char *err, size_t errlen);
    /* fetch the results; settle() each one found */
    int (*collect)(struct batch_backend *bb, struct bb_batch *b, char *err, size_t errlen);
    /* the upstream body of a request; NULL with err set when it cannot be mapped */
    cJSON *(*body)(struct batch_backend *bb, const struct engine_request *r, bool *chat, char *err, size_t errlen);
};

struct batch_backend {
    struct batch_loop l;        /* the frame: numbers (max_lines and max_bytes capped by the
                                   preset), pending counters, mu, stats */
    const struct bb_provider *prov;
    const struct batch_preset *preset; /* openai-batch: the provider's limits; NULL for anthropic */
    const char *window;         /* the completion_window sent (preset's text) */
    char *name, *url, *upstream_model;
    struct curl_slist *hdrs;    /* the key lives here and in hdrs_form only */
    struct curl_slist *hdrs_form; /* the same without Content-Type (multipart uploads) */
    CURL *easy;
    struct bb_job *pending, **pending_tail;
    struct bb_batch *batches;
    int n_upstream;             /* jobs in upstream batches */
    uint64_t seq;
};

/* a results file's reader state (backend_batch_each_line's ud) */
struct bb_collect {
    struct batch_backend *bb;
    struct bb_batch *b;
};

/* the anthropic-batch row (backend_batch_anthropic.c) */
extern const struct bb_provider backend_batch_anthropic;

/* openai-batch's body of a request: the client's OpenAI body forwarded, or one built from
 * a parsed request (Anthropic's row starts from it too) */
cJSON *backend_batch_openai_body(struct batch_backend *bb, const struct engine_request *r, bool *chat, char *err,
                                 size_t errlen);
/* one call with the backend's headers and retries (batch_http.h); upload: a JSONL file sent
 * as a multipart form */
int backend_batch_http(struct batch_backend *bb, const char *method, const char *url, const char *json,
                       const struct buf *upload, struct buf *out, long *code, char *err, size_t errlen);
/* GET/POST url and parse a JSON object answer; 0 ok */
int backend_batch_json_call(struct batch_backend *bb, const char *method, const char *url, const char *json,
                            const struct buf *upload, cJSON **out, char *err, size_t errlen);
/* GET {url}{path}{id}: an upstream batch object */
int backend_batch_get_batch(struct batch_backend *bb, const char *path, const char *id, cJSON **o, char *err,
                            size_t errlen);
/* not finished upstream: again in the next upstream batch, or failed when its tries are spent */
void backend_batch_retry(struct batch_backend *bb, struct bb_job *j, const char *why);
/* a success: body is an OpenAI chat.completion / text_completion the job's client gets */
void backend_batch_succeed(struct batch_backend *bb, struct bb_job *j, cJSON *body);
/* a final error as the provider gave it (code and an OpenAI-shaped error body) */
void backend_batch_reject(struct batch_backend *bb, struct bb_job *j, long code, cJSON *body);
/* find and unlink the job of a custom_id; NULL when none */
struct bb_job *backend_batch_take(struct bb_batch *b, const char *custom_id);
/* parse JSONL text, calling fn for each object line */
void backend_batch_each_line(const char *p, size_t len, void (*fn)(void *ud, cJSON *o), void *ud);

#endif
