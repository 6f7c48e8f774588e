/*
 * gemini_wire.h — the Gemini API's wire shapes for the "gemini-batch" backend: an OpenAI
 * chat body translated into a GenerateContentRequest, a GenerateContentResponse translated
 * back into an OpenAI chat.completion, a google.rpc.Status into an OpenAI error, and the
 * names of a batch's states. Pure functions on cJSON trees: no I/O, no state, any thread.
 *
 * WHY A SEPARATE MODULE: the batch transport (backend_gemini.c) and the translation are
 * tested apart; the translation is the part with many cases (every refusal has a test).
 * proto/gemini.c does the opposite direction (Gemini batch *input files* read as OpenAI
 * lines) and lives a layer apart: backend/ may not include proto/.
 *
 * INVARIANT: nothing the client asked for is silently dropped. A field is translated, or
 * known to be meaningless upstream (model, stream, stream_options, user, metadata, store,
 * service_tier), or the line is refused with an error naming the field.
 *
 * OWNERSHIP: every returned tree is new and the caller's (cJSON_Delete).
 */
#ifndef NS_BACKEND_GEMINI_WIRE_H
#define NS_BACKEND_GEMINI_WIRE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* OpenAI chat body -> GenerateContentRequest (no "model": the batch names it). NULL when
 * it cannot be translated: err says why and *param names the field ("messages[2].content[0]",
 * "n", "logprobs", ...; a static string or NULL). */
cJSON *gemini_wire_request(const cJSON *oai, char *err, size_t errlen, const char **param);

/* GenerateContentResponse -> an OpenAI chat.completion body. model is the name the client
 * used; id_seed makes the answer's and its tool calls' ids ("chatcmpl-<seed>",
 * "call_<seed>_<i>"). */
cJSON *gemini_wire_response(const cJSON *g, const char *model, const char *id_seed);

/* google.rpc.Status {code, message, status} -> the HTTP code it stands for (its own code
 * when that is an HTTP code, else from the gRPC status name/number) and an OpenAI error
 * body {"error": {message, type, param, code}} (new). */
cJSON *gemini_wire_error(const cJSON *status, long *http_code);

enum gemini_wire_state {
    GEMINI_STATE_UNKNOWN = 0,
    GEMINI_STATE_PENDING,
    GEMINI_STATE_RUNNING,
    GEMINI_STATE_SUCCEEDED,
    GEMINI_STATE_FAILED,
    GEMINI_STATE_CANCELLED,
    GEMINI_STATE_EXPIRED,
};
/* "BATCH_STATE_RUNNING" (REST) or "JOB_STATE_RUNNING" (the SDKs' names) -> the state */
enum gemini_wire_state gemini_wire_state_of(const char *s);
/* the job has ended: results (if any) can be collected */
bool gemini_wire_state_ended(enum gemini_wire_state st);

#endif
