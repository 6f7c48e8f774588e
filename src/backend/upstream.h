/*
 * upstream.h — what every backend that talks to another server shares: OpenAI request
 * bodies for the upstream (the client's own, or one built from a parsed request), reading
 * an OpenAI answer into an engine_result, which answers are worth another try, and the
 * small clock/random/duration helpers their retry logic needs.
 *
 * Ownership: bodies are cJSON trees the caller deletes; a forwarded body references the
 * client's items (cJSON references), so it must be deleted before the client's body.
 */
#ifndef NS_BACKEND_UPSTREAM_H
#define NS_BACKEND_UPSTREAM_H

#include "../engine/request.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* curl_global_init once per process (thread-safe) */
void upstream_global_init(void);

double upstream_rand01(void);  /* uniform in [0, 1) */
/* base without trailing slashes + path; NULL when out of memory */
char *upstream_url_join(const char *base, const char *path);
/* "1s", "6m0s", "20ms", "0.5", "2h" -> seconds; < 0 when unreadable */
double upstream_parse_duration(const char *s);

/* The client's OpenAI body with `model` replaced (when model is not NULL) and `stream`,
 * `stream_options` removed; *chat tells /chat/completions from /completions. */
cJSON *upstream_body_forward(const cJSON *body, const char *model, bool *chat);
/* An OpenAI body from a parsed request (an Anthropic or Gemini one): messages or prompt,
 * max_tokens, temperature, top_p, stop, seed. */
cJSON *upstream_body_build(const struct engine_request *r, const char *model, bool *chat);

/* text, finish and usage of an OpenAI chat.completion / text_completion into res (text
 * points into o) */
void upstream_parse_success(const cJSON *o, bool chat, struct engine_result *res);
/* the upstream's own error message: error.message, a string error, or the raw body's start */
void upstream_error_text(const cJSON *o, const char *raw, size_t raw_len, char *out, size_t n);
/* ns_status for a final HTTP answer */
int upstream_status_of(long code);
/* 408, 409, 425, 429, 500, 502, 503, 504, 529 */
bool upstream_retryable_code(long code);

#endif
