/*
 * gemini.h — Gemini batch files for `nightshift run --input-format gemini`.
 *
 * Input lines are {"key": ..., "request": GenerateContentRequest}. Each is converted into
 * an OpenAI Batch line ({"custom_id": key, "method": "POST", "url": "/v1/chat/completions",
 * "body": ...}) so the same validator, checkpoint and engine run it; results are written
 * back as {"key", "response": GenerateContentResponse} or {"key", "status": {code, message}}
 * (google.rpc.Status codes).
 *
 * Mapping: contents[].role user|model (model -> assistant), parts[].text joined;
 * systemInstruction/system_instruction -> a system message; generationConfig /
 * generation_config: temperature, topP, topK, maxOutputTokens, stopSequences, seed,
 * candidateCount (must be 1). Non-text parts (inlineData, fileData, functionCall, ...) and
 * tools are rejected with a line error naming the field. Both camelCase and snake_case
 * field names are accepted, as the Gemini API does.
 */
#ifndef NS_API_GEMINI_H
#define NS_API_GEMINI_H

#include "../engine/request.h"
#include "../util/buf.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

struct gemini_error {
    uint32_t line;
    const char *code;     /* static */
    const char *param;    /* static */
    char *message;        /* owned */
    char *key;            /* owned; the line's key when it had one */
};

struct gemini_errors {
    struct gemini_error *v;
    size_t n, cap;
};

/* Convert a whole Gemini batch file to OpenAI batch lines in out, one output line per
 * input line (an invalid line becomes a blank line, and its error is added to errs), so line
 * numbers stay the same. model is written as every line's body.model. 0 ok. */
int gemini_convert(const char *data, size_t size, const char *model, struct buf *out, struct gemini_errors *errs);
void gemini_errors_release(struct gemini_errors *e);

/* {"key", "response": {candidates, usageMetadata, modelVersion}} */
cJSON *gemini_response_line(const char *key, const struct engine_result *res, const char *model);
/* message with the OpenAI parameter names the validators use (custom_id, 'n', 'stop',
 * max_tokens, ...) replaced by the Gemini names of the fields they came from (key,
 * candidateCount, stopSequences, maxOutputTokens, ...); cut to fit n */
void gemini_rename_params(const char *in, char *out, size_t n);
/* {"key", "status": {"code", "message"}} for a failed line (its message renamed, above) */
cJSON *gemini_error_line(const char *key, int status, const char *message);

#endif
