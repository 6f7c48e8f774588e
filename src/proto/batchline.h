/*
 * batchline.h — one batch input line to an engine request, and a finished request back to
 * its result line: the one path `nightshift run` and the server's schedulers share (issue
 * 28.4; before, each had its own copy, with different seeds).
 *
 * A line's body is parsed by its url's dialect (chat and completions: OpenAI; embeddings;
 * messages: Anthropic), through the forwarding parser for a backend that forwards bodies
 * upstream; `stream` is refused; a line without a seed gets batchfile_line_seed(). A result
 * line is written by its batch's dialect (dialect.h: OpenAI's batch output line, an
 * Anthropic Message Batch result, or a Gemini batch line).
 *
 * THREADS: pure functions.
 */
#ifndef NS_PROTO_BATCHLINE_H
#define NS_PROTO_BATCHLINE_H

#include "batchfile.h"
#include "dialect.h"
#include "oai.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The request of the line text[0..n) (a whole batch line: its "body" is parsed) into *r,
 * which the caller releases with oai_request_release() on NS_OK. forward: the model's
 * backend forwards bodies upstream; base_seed: as batchfile_line_seed(). Else an NS_ERR_*
 * with err filled (its message and param name the problem) and nothing to release. */
int batchline_request(const char *text, size_t n, enum batchfile_url url, const char *custom_id, bool forward,
                      uint64_t base_seed, struct oai_request *r, struct oai_error *err);

/* The result line of a finished request in d's batch format (dialect.h): a success (the
 * engine's or an upstream's answer), an HTTP-style error, or a request that never ran
 * (cancelled, expired). r is the request it ran as, read for a success only (NULL
 * otherwise); model names the model in a success. The caller cJSON_Delete()s it; NULL when
 * out of memory. */
cJSON *batchline_result(const struct dialect *d, const char *custom_id, const struct oai_request *r,
                        const struct engine_result *res, const char *model);
/* the same for a request that ended with status and message (param: the field OpenAI names,
 * or NULL) without an answer: refused, cancelled, expired */
cJSON *batchline_error(const struct dialect *d, const char *custom_id, int status, const char *param,
                       const char *message);

#endif
