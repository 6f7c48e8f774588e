/*
 * dialect.h — the API dialects nightshift speaks, each one const table (in the spirit of
 * curl's struct Curl_handler): how it shapes an error, how it writes a batch's result lines,
 * what its batches allow. One row lives in each dialect's file (oai.c, anthropic.c,
 * ollama.c, gemini.c); code outside proto/ picks a row, by route or by a batch's endpoint,
 * through the two lookups below, and calls through it: it never compares endpoint strings
 * or branches on a dialect's name. A new dialect is a new row.
 *
 * THREADS: rows are constant; every function is pure.
 */
#ifndef NS_PROTO_DIALECT_H
#define NS_PROTO_DIALECT_H

#include "oai.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

struct stream;
struct buf;
struct engine_delta;

/* what parsing a generation request needs from the caller */
struct dialect_parse {
    bool chat;                   /* the route: chat (messages) or completion (prompt) */
    /* does the served model of that name forward the client's body upstream (backend.h's
     * forward)? Its body is then checked lightly: the upstream judges it. NULL: none does */
    bool (*forwards)(void *ud, const char *model);
    /* the items of the stored conversation a request continues (Responses'
     * previous_response_id): a new JSON array into *items, or a status and err (404 when
     * there is no such response). NULL: continuing is not possible here */
    int (*history)(void *ud, const char *response_id, cJSON **items, struct oai_error *err);
    void *ud;
};

struct dialect {
    const char *name;            /* "openai", "anthropic", "ollama", "gemini": logs only */
    /* an error body for status and message; param and code where the dialect has them */
    cJSON *(*error)(int status, const char *message, const char *param, const char *code);
    const char *auth_message;    /* a request without a valid key is told this (401) */
    /* a generation request's body into r (NULL: the dialect has no generation routes); a
     * status and err on failure, r then released. body need not be NUL-terminated */
    int (*parse)(const char *body, size_t len, const struct dialect_parse *p, struct oai_request *r,
                 struct oai_error *err);
    /* does the client's name `requested` name the served model `served`? NULL: equal names */
    bool (*model_matches)(const char *served, const char *requested);
    /* the message when no served model matches `model` */
    void (*model_missing)(char *out, size_t n, const char *model);
    /* once the model is known, before any work: an error (a status, err set), an answer at
     * once (*answer set: Ollama's load-only call), or NS_OK to run. n_ctx_seq: the tokens
     * one request may hold, 0 when an upstream decides. NULL: always run */
    int (*admit)(const struct oai_request *r, int n_ctx_seq, cJSON **answer, struct oai_error *err);
    const char *id_prefix[2];    /* the answer's id: [completion, chat] ("cmpl-", "chatcmpl-") */
    /* streaming (stream.h): the Content-Type of a stream; a delta from the engine thread;
     * the next bytes to send (STREAM_MORE: appended to out; STREAM_WAIT: nothing yet;
     * STREAM_END). NULL: the dialect does not stream */
    /* a finished request's answer (not streamed): the stream's state holds its id, model,
     * times and request; NULL where a route of the dialect never answers so (Gemini) */
    cJSON *(*answer)(const struct stream *s, const struct engine_result *res);
    bool answer_passes_raw;      /* an upstream's answer is passed on byte for byte */
    const char *stream_type;
    void (*stream_delta)(struct stream *s, const struct engine_delta *d);
    int (*stream_next)(struct stream *s, struct buf *out);
    bool body_any_type;          /* reads a body as JSON whatever its Content-Type (Ollama: its
                                    documented calls are `curl -d`, form-encoded) */
    /* the result line of one batch request: a success (r: the request it ran as; model
     * named in it), an HTTP-style error, or one that never ran (cancelled, expired). NULL:
     * the dialect has no batches */
    cJSON *(*batch_result)(const char *custom_id, const struct oai_request *r, const struct engine_result *res,
                           const char *model);
    /* its batches: lines may name different models (each runs on its model's scheduler);
     * an invalid line is an errored result and the others run (else it fails the whole
     * batch, as OpenAI's); ended batches are deleted after the retention period; a batch
     * cancelled before it started still gets a result per request */
    const char *batch_endpoint;  /* the one endpoint of its batches ("/v1/messages"); NULL: any
                                    the batch names (OpenAI's) */
    bool batch_mixed_models;
    bool batch_errors_per_line;
    bool batch_retention;
    bool batch_results_on_cancel;
};

extern const struct dialect dialect_openai;     /* oai.c */
extern const struct dialect dialect_anthropic;  /* anthropic.c */
extern const struct dialect dialect_ollama;     /* ollama.c */
extern const struct dialect dialect_gemini;     /* gemini.c */
extern const struct dialect dialect_responses;  /* responses.c: OpenAI's Responses API */

/* OpenAI's words for a model nobody serves (the rows that have no words of their own) */
void dialect_model_missing(char *out, size_t n, const char *model);
/* does `name` name a served model of dialect d (its model_matches, else equal names)? */
bool dialect_model_matches(const struct dialect *d, const char *served, const char *name);

/* the dialect of an HTTP route, by its path: /v1/messages... Anthropic, /api/... and / Ollama,
 * /v1/responses... Responses, else OpenAI (errors of unknown routes included) */
const struct dialect *dialect_of_path(const char *path);

/* the dialect a batch's results are written in, by its endpoint ("/v1/messages": a Message
 * Batch; "/v1/responses": response objects in OpenAI's batch lines) and whether its input
 * is a Gemini file */
const struct dialect *dialect_of_batch(const char *endpoint, bool gemini);

#endif
