/*
 * anthropic.h — Anthropic Messages API bodies in, Messages and batch result lines out,
 * on the same parsed-request type as the OpenAI routes (struct oai_request, with
 * anthropic = true), so one scheduler and one engine serve both.
 *
 * Mapping (what cannot be mapped is rejected with a 400 naming the field):
 *   system (string or text blocks) -> a system message first; messages[].content string or
 *   text blocks; max_tokens (required); stop_sequences; temperature (0-1); top_p; top_k;
 *   stream; metadata (accepted, unused). tools, tool_choice, thinking, image/document
 *   blocks: rejected (the local engine does not do them yet).
 *
 * Ownership as in oai.h: builders return cJSON trees the caller deletes.
 */
#ifndef NS_API_ANTHROPIC_H
#define NS_API_ANTHROPIC_H

#include "oai.h"

#include <cjson/cJSON.h>
#include <stdint.h>

/* Parse params (a JSON object, taken over by r). On failure r is released. */
int anthropic_request_from_json(cJSON *params, struct oai_request *r, struct oai_error *err);
int anthropic_request_parse(const char *json, size_t len, struct oai_request *r, struct oai_error *err);

/* POST /v1/messages/count_tokens: a Messages body without max_tokens and sampling (model,
 * messages, system, tools, tool_choice, thinking; anything else is an extra input), parsed
 * as a Messages body is so that the prompt it renders is the one a Messages call would run.
 * On failure r is released. */
int anthropic_count_request_parse(const char *json, size_t len, struct oai_request *r, struct oai_error *err);
/* its answer, {"input_tokens": N}; NULL when out of memory */
cJSON *anthropic_count_answer(int input_tokens);

/* the Message object of a finished request */
cJSON *anthropic_message(const struct oai_request *r, const struct engine_result *res, const char *id,
                         const char *model);
/* "end_turn", "max_tokens" or "stop_sequence" */
const char *anthropic_stop_reason(const struct engine_result *res);

/* {"type":"error","error":{"type","message"}} */
cJSON *anthropic_error(int status, const char *message);
/* the Anthropic error type for a status: invalid_request_error, not_found_error, ... */
const char *anthropic_error_type(int status);

/* batch result lines: {"custom_id","result":{"type":"succeeded","message":...}} (message
 * taken over), errored with an error, canceled, expired */
cJSON *anthropic_result_succeeded(const char *custom_id, cJSON *message);
cJSON *anthropic_result_errored(const char *custom_id, int status, const char *message);
cJSON *anthropic_result_bare(const char *custom_id, const char *type);

/* RFC 3339 UTC, "2026-11-23T16:00:00Z" */
void anthropic_time(int64_t unix_s, char *out, size_t n);

#endif
