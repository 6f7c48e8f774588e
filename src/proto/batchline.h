/*
 * batchline.h — one batch input line to an engine request, and a finished request back to
 * its result line: the one path `nightshift run` and the server's schedulers share (issue
 * 28.4; before, each had its own copy, with different seeds).
 *
 * A line's body is parsed by its url's dialect (chat and completions: OpenAI; embeddings;
 * messages: Anthropic), through the forwarding parser for a backend that forwards bodies
 * upstream; `stream` is refused; a line without a seed gets batchfile_line_seed(). A result
 * line is in the shape its batch is read in: OpenAI's batch output line, an Anthropic
 * Message Batch result, or a Gemini batch line.
 *
 * THREADS: pure functions.
 */
#ifndef NS_PROTO_BATCHLINE_H
#define NS_PROTO_BATCHLINE_H

#include "batchfile.h"
#include "oai.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* how a batch's result lines are written */
enum batchline_shape {
    BATCHLINE_OPENAI,    /* {id, custom_id, response: {status_code, request_id, body}, error} */
    BATCHLINE_ANTHROPIC, /* {custom_id, result: {type: succeeded|errored|canceled|expired, ...}} */
    BATCHLINE_GEMINI,    /* {key, response} or {key, status} */
};

/* the shape of a line's result in a batch read as OpenAI or Gemini input */
enum batchline_shape batchline_shape_of(enum batchfile_url url, bool gemini);

/* The request of the line text[0..n) (a whole batch line: its "body" is parsed) into *r,
 * which the caller releases with oai_request_release() on NS_OK. forward: the model's
 * backend forwards bodies upstream; base_seed: as batchfile_line_seed(). Else an NS_ERR_*
 * with err filled (its message and param name the problem) and nothing to release. */
int batchline_request(const char *text, size_t n, enum batchfile_url url, const char *custom_id, bool forward,
                      uint64_t base_seed, struct oai_request *r, struct oai_error *err);

/* The result line of a finished request: a success (the engine's or an upstream's answer,
 * passed on as it gave it), an HTTP-style error, or a request that never ran (cancelled,
 * expired). r is the request it ran as, read for a success only (NULL otherwise); model
 * names the model in a success. The caller cJSON_Delete()s it; NULL when out of memory. */
cJSON *batchline_result(enum batchline_shape shape, const char *custom_id, const struct oai_request *r,
                        const struct engine_result *res, const char *model);

#endif
