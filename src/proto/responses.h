/*
 * responses.h — OpenAI's Responses API (/v1/responses) as one more dialect (dialect.h):
 * a request body in, a response object (or its typed server-sent events) out.
 *
 * DESIGN
 * A Responses body is translated into the chat-completions body it means and parsed by
 * oai.c, so every check, the tools, text.format's grammar and the model's chat template
 * are the ones chat completions use; the Responses fields (input items, instructions,
 * max_output_tokens, text.format, reasoning, ...) map onto theirs. What only Responses has
 * is kept beside the parsed request (oai_request's extra_): the body as sent (the answer
 * repeats its settings), the input items (normalized, each with an id: GET
 * /v1/responses/{id}/input_items lists them) and the items of the conversation before it
 * (previous_response_id, resolved by the caller: proto/ reads no store).
 *
 * The answer's output items take their ids from the response's own (resp_X: rs_X, msg_X,
 * fc_X_K), so a stream's items and the final object agree without shared state.
 *
 * THREADS: pure functions; the stream functions follow stream.h.
 */
#ifndef NS_PROTO_RESPONSES_H
#define NS_PROTO_RESPONSES_H

#include "oai.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

/* Parse a Responses body (taken over by r, deleted on release; on failure too). history:
 * the items of the conversation it continues (previous_response_id's, from
 * responses_conversation()), taken over, or NULL. forward: the model's backend forwards
 * bodies upstream (the translated chat body is then checked lightly). in_batch: a batch
 * line (no stream, no background, no previous_response_id). On failure a status and err
 * (param named as OpenAI names it: "input", "max_output_tokens", "text.format", ...). */
int responses_request_from_json(cJSON *body, cJSON *history, bool forward, bool in_batch, struct oai_request *r,
                                struct oai_error *err);

/* what the request asks of the server around the engine: keep the answer (store, default
 * true), run it as a background job (background), continue a stored one (its id or NULL) */
bool responses_request_store(const struct oai_request *r);
bool responses_request_background(const struct oai_request *r);
const char *responses_request_previous(const struct oai_request *r);

/* truncation "auto": rebuild r without the oldest item of its conversation (the earlier
 * turns first, then its own input; items up to the next message go with it, so the
 * conversation still starts with one), for a prompt over the context. NS_ERR_CONTEXT when
 * the request did not ask for it or one input item is all that is left (r unchanged);
 * another status when the rebuilt request fails to parse (r then released). */
int responses_request_truncate(struct oai_request *r, bool forward, struct oai_error *err);

/* The response object for r: from a finished result (res: status completed, incomplete or
 * failed from it), or, res NULL, the object of a response not finished yet with `status`
 * ("queued", "in_progress", "cancelled"). The caller deletes it. */
cJSON *responses_object(const struct oai_request *r, const struct engine_result *res, const char *id,
                        const char *model, int64_t created, const char *status);

/* What the store keeps of r to list its input items and to continue its conversation:
 * {"history": [...], "input": [...]}, and "batch_id" when batch_id is not NULL (the one-line
 * batch a background response runs as) (JSON text, malloc'd; NULL when out of memory). */
char *responses_record(const struct oai_request *r, const char *batch_id);
/* The items a stored response leaves to the next turn: its record's history and input,
 * then its output items (from the stored object's "output"), into *items (a new array).
 * NS_ERR_INVALID when either text is not what responses_record/responses_object made. */
int responses_conversation(const char *record, const char *object, cJSON **items);
/* the input items of a record (a new array), NULL when it is not one */
cJSON *responses_record_input(const char *record);

#endif
