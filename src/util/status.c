/*
 * status.c — the table behind status.h. One row per status; keep it in enum order.
 */
#include "status.h"

#include <stdbool.h>
#include <stddef.h>

static const struct {
    int http;
    const char *type;
    const char *code;
    const char *name;
    bool retry;  /* the same request may pass later (status_retryable) */
} status_table[NS_STATUS_COUNT_] = {
    [NS_OK]                  = {200, NULL, NULL, "ok", false},
    [NS_ERR_INVALID]         = {400, "invalid_request_error", NULL, "invalid", false},
    [NS_ERR_CONTEXT]         = {400, "invalid_request_error", "context_length_exceeded", "context", false},
    [NS_ERR_UNSUPPORTED]     = {400, "invalid_request_error", "unsupported_value", "unsupported", false},
    [NS_ERR_AUTH]            = {401, "authentication_error", "invalid_api_key", "auth", false},
    [NS_ERR_NOT_FOUND]       = {404, "invalid_request_error", NULL, "not_found", false}, /* as OpenAI answers */
    [NS_ERR_MODEL_NOT_FOUND] = {404, "invalid_request_error", "model_not_found", "model_not_found", false},
    [NS_ERR_CONFLICT]        = {409, "invalid_request_error", "conflict", "conflict", false},
    [NS_ERR_TOO_LARGE]       = {413, "invalid_request_error", "request_too_large", "too_large", false},
    [NS_ERR_MEDIA_TYPE]      = {415, "invalid_request_error", "unsupported_media_type", "media_type", false},
    [NS_ERR_RATE_LIMIT]      = {429, "rate_limit_error", "rate_limit_exceeded", "rate_limit", true},
    [NS_ERR_NOMEM]           = {500, "server_error", "out_of_memory", "nomem", true},
    [NS_ERR_IO]              = {500, "server_error", "io_error", "io", true},
    [NS_ERR_ENGINE]          = {500, "server_error", "engine_error", "engine", true},
    [NS_ERR_UNAVAILABLE]     = {503, "server_error", "unavailable", "unavailable", true},
    [NS_ERR_CANCELLED]       = {0, NULL, "batch_cancelled", "cancelled", false},
    [NS_ERR_EXPIRED]         = {0, NULL, "batch_expired", "expired", false},
    [NS_ERR_TIMEOUT]         = {0, NULL, "request_timeout", "timeout", false},
    [NS_ERR_INTERNAL]        = {500, "server_error", "internal_error", "internal", true},
    [NS_ERR_UPSTREAM]        = {502, "server_error", "upstream_error", "upstream", true},
    /* nightshift's own per-key limits, in the shape OpenAI answers its rate limits: type
     * "requests" or "tokens" (the kind of limit), code rate_limit_exceeded */
    [NS_ERR_QUOTA_REQUESTS]  = {429, "requests", "rate_limit_exceeded", "quota_requests", true},
    [NS_ERR_QUOTA_TOKENS]    = {429, "tokens", "rate_limit_exceeded", "quota_tokens", true},
    [NS_ERR_METHOD]          = {405, "invalid_request_error", "method_not_allowed", "method", false},
    [NS_ERR_FORBIDDEN]       = {403, "invalid_request_error", "forbidden", "forbidden", false},
    /* transient, unlike io: the same request may well pass in a moment */
    [NS_ERR_BUSY]            = {503, "server_error", "store_busy", "busy", true},
};

static int status_ok_index(int st)
{
    return st >= 0 && st < NS_STATUS_COUNT_ ? st : NS_ERR_INTERNAL;
}

int status_http(int st) { return status_table[status_ok_index(st)].http; }
const char *status_type(int st) { return status_table[status_ok_index(st)].type; }
const char *status_code(int st) { return status_table[status_ok_index(st)].code; }
const char *status_name(int st) { return status_table[status_ok_index(st)].name; }
bool status_retryable(int st) { return status_table[status_ok_index(st)].retry; }
