/*
 * oai.h — OpenAI request bodies in, OpenAI response bodies out.
 *
 * oai_request_parse() turns a /v1/chat/completions or /v1/completions body into an
 * engine_request, checking every field the way OpenAI does: a value the endpoint rejects
 * gives NS_ERR_INVALID with the parameter's name and why. Parameters we accept but do
 * not act on are listed in docs/API.md; none is ignored silently.
 *
 * Extensions accepted as vLLM accepts them: top_k, min_p, repetition_penalty,
 * min_tokens, ignore_eos.
 *
 * Ownership: struct oai_request owns the parsed JSON and every string the engine request
 * points to; oai_request_release() frees them. Builders return cJSON trees the caller
 * deletes (cJSON_Delete).
 */
#ifndef NS_API_OAI_H
#define NS_API_OAI_H

#include "../engine/request.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct oai_request {
    struct engine_request req;
    bool chat;                 /* chat.completions (messages) or completions (prompt) */
    bool has_seed;
    bool stream;
    bool include_usage;        /* stream_options.include_usage */
    /* what a dialect asks beyond the request (dialect.h's admit reads them): the context
     * the client wants (Ollama's options.num_ctx; 0 = any), and a body with no input that
     * only asks for the model to be loaded */
    int ctx_wanted;
    bool load_only;
    char *model;
    /* structured output (response_format json_object / json_schema): req.grammar is set
     * (owned here) */
    /* tools shown to the model (tool_choice other than "none"): req.chat carries them; the
     * model's template and its family's format decide how calls look, and the engine reads
     * them back into engine_result.tool_calls */
    bool tools;
    /* a /v1/embeddings body: req.embed holds the inputs (owned here) */
    bool embeddings;
    bool embed_base64;         /* encoding_format "base64" */
    struct engine_embed_input *embed_;
    /* what a dialect that translates into this request keeps beside it (responses.h: the
     * Responses body as sent, its input items, the conversation before it); deleted on
     * release */
    cJSON *extra_;
    /* private */
    struct engine_logit_bias *bias_;
    cJSON *root_;
    struct engine_msg *msgs_;
    char **owned_;
    int n_owned_;
};

struct oai_error {
    int status;                /* ns_status */
    const char *param;         /* static */
    char message[400];
};

/* A tool's parameters schema, checked now (a 400 naming param, err's message starting with
 * what — "Invalid 'tools[0].function.parameters'" — and the converter's words), so a schema
 * the grammar cannot hold never reaches the engine. NS_OK for NULL or null (*held NULL).
 * *held: the schema to put in the chat JSON in its place (jsonschema_convert's), yours to
 * cJSON_Delete; the one sent would let the call's grammar drop formats and number bounds. */
int oai_tool_schema_check(const cJSON *schema, cJSON **held, const char *param, const char *what, struct oai_error *err);
/* The chat JSON built for the model's template (engine/chat.h) into r->req.chat (owned by
 * r); chat is deleted. rc: the status so far (nonzero: nothing is set, rc returned). */
int oai_request_set_chat(struct oai_request *r, cJSON *chat, int rc, struct oai_error *err);

/* Fill err (status, static param, formatted message) and return the status. */
int oai_error_set(struct oai_error *err, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Parse body (a JSON object) for the endpoint. On failure returns the status and fills
 * *err; r is then released. `body_json` need not be NUL-terminated. */
int oai_request_parse(const char *body_json, size_t len, bool chat, struct oai_request *r, struct oai_error *err);
/* Same from an already parsed object, which r takes over (deleted on release). */
int oai_request_from_json(cJSON *body, bool chat, struct oai_request *r, struct oai_error *err);
/* For a model an upstream backend serves (backend.h): the body goes upstream as it is,
 * so only what nightshift itself needs is checked (model, messages/prompt present, stream,
 * stream_options, seed); the upstream judges the rest and its answer, error included, is
 * passed on. r->req has no messages: the backend sends r->req.body. */
int oai_request_forward_from_json(cJSON *body, bool chat, struct oai_request *r, struct oai_error *err);
void oai_request_release(struct oai_request *r);
/* r takes ownership of s (freed on release); returns s, or NULL (s freed) when out of memory */
char *oai_request_own(struct oai_request *r, char *s);

/* finish_reason for a result (its choice 0) or one choice: "tool_calls" for a forced call
 * that ended, else "length" or "stop" */
const char *oai_finish_reason(const struct oai_request *r, const struct engine_result *res);
const char *oai_finish_reason_of(const struct oai_request *r, enum engine_finish finish);
/* choice i of a result (a result without choices, e.g. an upstream's, has its one choice
 * in its top-level fields) */
struct engine_choice oai_result_choice(const struct engine_result *res, int i);
/* how many choices a result has (at least 1) */
int oai_result_n_choices(const struct engine_result *res);
/* the "logprobs" object of a choice or of a stream chunk's tokens: chat's {"content":
 * [...], "refusal": null} or completions' legacy {"tokens", "token_logprobs",
 * "top_logprobs", "text_offset"} (offsets counted from text_offset) */
cJSON *oai_logprobs_json(const struct oai_request *r, const struct engine_token_logprob *lp, int n, const char *text,
                         size_t text_offset);
#define OAI_MAX_EMBED_INPUTS 2048

/* Parse a /v1/embeddings body: model, input (a string, an array of strings, an array of
 * token ids or an array of token-id arrays; at most OAI_MAX_EMBED_INPUTS, none empty),
 * encoding_format ("float" or "base64"), dimensions (kept in req.embed_dimensions: only
 * the model's own size is served), user. r takes body over, as oai_request_from_json. */
int oai_embeddings_from_json(cJSON *body, struct oai_request *r, struct oai_error *err);

/* A batch line's /v1/embeddings body: as oai_embeddings_from_json, but refused (naming
 * "url") on a backend that forwards upstream (forward), which nightshift sends chat and
 * completions only */
int oai_request_embeddings_line(cJSON *body, bool forward, struct oai_request *r, struct oai_error *err);

/* The response body: chat.completion or text_completion, or for an embeddings request
 * {"object":"list","data":[{"object":"embedding","index","embedding"}],"model","usage"}
 * (vectors as float arrays, or base64 of little-endian float32). */
cJSON *oai_completion_body(const struct oai_request *r, const struct engine_result *res, const char *id,
                           const char *model, time_t created);
/* {"error":{"message","type","param","code"}} for a status; code NULL = the status's own */
cJSON *oai_error_body(int status, const char *message, const char *param, const char *code);

/* A line of the batch output or error file for an HTTP-style answer (status_code
 * 200 with body, or 4xx/5xx with an error body; body is taken over). */
cJSON *oai_batch_line(const char *custom_id, int status_code, cJSON *body);
/* A line for a request that got no HTTP answer: batch_cancelled, batch_expired, ... */
cJSON *oai_batch_line_noresponse(const char *custom_id, int status, const char *message);

/* random id with a prefix: "chatcmpl-" + 24 url-safe chars */
void oai_make_id(char *out, size_t n, const char *prefix);

#endif
