/*
 * anthropic.c — see anthropic.h. Error messages follow Anthropic's wording
 * ("max_tokens: Field required", "temperature: Input should be less than or equal to 1").
 */
#include "anthropic.h"

#include "dialect.h"
#include "stream.h"

#include "../util/buf.h"
#include "../util/status.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ANT_TEXT_MAX (64u << 20)

/* text of a string or of an array of text blocks; other block types are rejected */
static int ant_text(struct oai_request *r, const cJSON *c, const char *where, const char **out, struct oai_error *err)
{
    if (cJSON_IsString(c)) {
        *out = c->valuestring;
        return NS_OK;
    }
    if (!cJSON_IsArray(c))
        return oai_error_set(err, NS_ERR_INVALID, where, "%s: Input should be a valid string or a list of content blocks",
                        where);
    struct buf b;
    buf_init(&b, ANT_TEXT_MAX);
    int k = 0;
    const cJSON *blk;
    cJSON_ArrayForEach(blk, c)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(blk, "type");
        if (!cJSON_IsString(type)) {
            buf_release(&b);
            return oai_error_set(err, NS_ERR_INVALID, where, "%s.%d.type: Field required", where, k);
        }
        if (strcmp(type->valuestring, "text") != 0) {
            buf_release(&b);
            return oai_error_set(err, NS_ERR_UNSUPPORTED, where,
                            "%s.%d: content blocks of type '%.40s' are not supported by the local engine; only "
                            "'text' blocks are",
                            where, k, type->valuestring);
        }
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(blk, "text");
        if (!cJSON_IsString(text)) {
            buf_release(&b);
            return oai_error_set(err, NS_ERR_INVALID, where, "%s.%d.text: Field required", where, k);
        }
        if ((k && buf_append(&b, "\n", 1)) || buf_appends(&b, text->valuestring)) {
            buf_release(&b);
            return oai_error_set(err, NS_ERR_TOO_LARGE, where, "%s: text is too long", where);
        }
        k++;
    }
    char *s = buf_detach(&b);
    if (!s || !oai_request_own(r, s))
        return oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
    *out = s;
    return NS_OK;
}

static const char *const ant_fields[] = {"model", "messages", "max_tokens", "system", "stop_sequences", "temperature",
                                         "top_p", "top_k", "stream", "metadata", "tools", "tool_choice", "thinking",
                                         "service_tier", "container", "mcp_servers", NULL};

int anthropic_request_from_json(cJSON *body, struct oai_request *r, struct oai_error *err)
{
    int rc = NS_OK;
    memset(r, 0, sizeof(*r));
    r->root_ = body;
    r->chat = true;
    engine_request_init(&r->req);
    if (!cJSON_IsObject(body)) {
        rc = oai_error_set(err, NS_ERR_INVALID, NULL, "the request body must be a JSON object");
        goto out;
    }
    const cJSON *f;
    cJSON_ArrayForEach(f, body)
    {
        bool ok = false;
        for (int i = 0; ant_fields[i] && !ok; i++)
            ok = strcmp(ant_fields[i], f->string) == 0;
        if (!ok) {
            rc = oai_error_set(err, NS_ERR_INVALID, NULL, "%.64s: Extra inputs are not permitted", f->string);
            goto out;
        }
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (!cJSON_IsString(model)) {
        rc = oai_error_set(err, NS_ERR_INVALID, "model", model ? "model: Input should be a valid string" : "model: Field required");
        goto out;
    }
    r->model = model->valuestring;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(body, "max_tokens");
    if (!mt) {
        rc = oai_error_set(err, NS_ERR_INVALID, "max_tokens", "max_tokens: Field required");
        goto out;
    }
    if (!cJSON_IsNumber(mt) || mt->valuedouble != floor(mt->valuedouble) || mt->valuedouble < 1 || mt->valuedouble > 1e9) {
        rc = oai_error_set(err, NS_ERR_INVALID, "max_tokens", "max_tokens: Input should be an integer greater than or equal to 1");
        goto out;
    }
    r->req.max_tokens = (int)mt->valuedouble;
    for (const char *k = "tools"; k; k = strcmp(k, "tools") == 0 ? "thinking" : NULL) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, k);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0)) {
            rc = oai_error_set(err, NS_ERR_UNSUPPORTED, k, "%s: not supported by the local engine yet", k);
            goto out;
        }
    }
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!msgs) {
        rc = oai_error_set(err, NS_ERR_INVALID, "messages", "messages: Field required");
        goto out;
    }
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        rc = oai_error_set(err, NS_ERR_INVALID, "messages", "messages: at least one message is required");
        goto out;
    }
    const cJSON *sys = cJSON_GetObjectItemCaseSensitive(body, "system");
    int n = cJSON_GetArraySize(msgs) + (sys && !cJSON_IsNull(sys) ? 1 : 0);
    r->msgs_ = calloc((size_t)n, sizeof(*r->msgs_));
    if (!r->msgs_) {
        rc = oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
        goto out;
    }
    int i = 0;
    if (sys && !cJSON_IsNull(sys)) {
        if ((rc = ant_text(r, sys, "system", &r->msgs_[0].content, err)))
            goto out;
        r->msgs_[0].role = "system";
        i = 1;
    }
    const cJSON *m;
    int k = 0;
    cJSON_ArrayForEach(m, msgs)
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role) || (strcmp(role->valuestring, "user") && strcmp(role->valuestring, "assistant"))) {
            rc = oai_error_set(err, NS_ERR_INVALID, "messages", "messages.%d.role: Input should be 'user' or 'assistant'", k);
            goto out;
        }
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!content) {
            rc = oai_error_set(err, NS_ERR_INVALID, "messages", "messages.%d.content: Field required", k);
            goto out;
        }
        if ((rc = ant_text(r, content, "messages", &r->msgs_[i].content, err)))
            goto out;
        r->msgs_[i].role = role->valuestring;
        i++;
        k++;
    }
    r->req.messages = r->msgs_;
    r->req.n_messages = i;

    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "temperature")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1) {
            rc = oai_error_set(err, NS_ERR_INVALID, "temperature",
                          "temperature: Input should be a number between 0 and 1");
            goto out;
        }
        r->req.temperature = (float)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "top_p")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1) {
            rc = oai_error_set(err, NS_ERR_INVALID, "top_p", "top_p: Input should be a number between 0 and 1");
            goto out;
        }
        r->req.top_p = (float)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "top_k")) && !cJSON_IsNull(v)) {
        /* bounded above too: a huge value (1e3095 parses as inf) must not reach the int cast */
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
            v->valuedouble > INT_MAX) {
            rc = oai_error_set(err, NS_ERR_INVALID, "top_k",
                               "top_k: Input should be a non-negative integer of at most %d", INT_MAX);
            goto out;
        }
        r->req.top_k = (int)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "stop_sequences")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > ENGINE_MAX_STOP) {
            rc = oai_error_set(err, NS_ERR_INVALID, "stop_sequences",
                          "stop_sequences: Input should be a list of at most %d strings", ENGINE_MAX_STOP);
            goto out;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, v)
        {
            if (!cJSON_IsString(it)) {
                rc = oai_error_set(err, NS_ERR_INVALID, "stop_sequences", "stop_sequences: Input should be a list of strings");
                goto out;
            }
            if (it->valuestring[0])
                r->req.stop[r->req.n_stop++] = it->valuestring;
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "stream")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v)) {
            rc = oai_error_set(err, NS_ERR_INVALID, "stream", "stream: Input should be a valid boolean");
            goto out;
        }
        r->stream = cJSON_IsTrue(v);
    }
out:
    if (rc != NS_OK)
        oai_request_release(r);
    return rc;
}

int anthropic_request_parse(const char *json, size_t len, struct oai_request *r, struct oai_error *err)
{
    memset(r, 0, sizeof(*r));
    cJSON *body = cJSON_ParseWithLength(json, len);
    if (!body)
        return oai_error_set(err, NS_ERR_INVALID, NULL, "the request body is not valid JSON");
    return anthropic_request_from_json(body, r, err);
}

const char *anthropic_stop_reason(const struct engine_result *res)
{
    if (res->finish == ENGINE_FINISH_LENGTH)
        return "max_tokens";
    return res->stop_index >= 0 ? "stop_sequence" : "end_turn";
}

cJSON *anthropic_message(const struct oai_request *r, const struct engine_result *res, const char *id,
                         const char *model)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "type", "message");
    cJSON_AddStringToObject(o, "role", "assistant");
    cJSON_AddStringToObject(o, "model", model);
    cJSON *content = cJSON_AddArrayToObject(o, "content");
    cJSON *blk = cJSON_CreateObject();
    cJSON_AddStringToObject(blk, "type", "text");
    cJSON_AddStringToObject(blk, "text", res->text ? res->text : "");
    cJSON_AddItemToArray(content, blk);
    cJSON_AddStringToObject(o, "stop_reason", anthropic_stop_reason(res));
    if (res->stop_index >= 0 && res->stop_index < r->req.n_stop)
        cJSON_AddStringToObject(o, "stop_sequence", r->req.stop[res->stop_index]);
    else
        cJSON_AddNullToObject(o, "stop_sequence");
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "input_tokens", res->prompt_tokens - res->cached_tokens);
    cJSON_AddNumberToObject(u, "cache_creation_input_tokens", 0);
    cJSON_AddNumberToObject(u, "cache_read_input_tokens", res->cached_tokens);
    cJSON_AddNumberToObject(u, "output_tokens", res->completion_tokens);
    return o;
}

const char *anthropic_error_type(int status)
{
    switch (status_http(status)) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: return "overloaded_error";
    case 400:
    case 405:
    case 409:
    case 415: return "invalid_request_error";
    default: return "api_error";
    }
}

cJSON *anthropic_error(int status, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "error");
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "type", anthropic_error_type(status));
    cJSON_AddStringToObject(e, "message", message);
    return o;
}

static cJSON *ant_result(const char *custom_id, const char *type, cJSON **res_out)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "custom_id", custom_id);
    cJSON *res = cJSON_AddObjectToObject(o, "result");
    cJSON_AddStringToObject(res, "type", type);
    if (res_out)
        *res_out = res;
    return o;
}

cJSON *anthropic_result_succeeded(const char *custom_id, cJSON *message)
{
    cJSON *res;
    cJSON *o = ant_result(custom_id, "succeeded", &res);
    cJSON_AddItemToObject(res, "message", message);
    return o;
}

cJSON *anthropic_result_errored(const char *custom_id, int status, const char *message)
{
    cJSON *res;
    cJSON *o = ant_result(custom_id, "errored", &res);
    cJSON_AddItemToObject(res, "error", anthropic_error(status, message));
    return o;
}

cJSON *anthropic_result_bare(const char *custom_id, const char *type)
{
    return ant_result(custom_id, type, NULL);
}

void anthropic_time(int64_t unix_s, char *out, size_t n)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- streaming (dialect.h, stream.h) ------------------------------------------------------ */

/* the engine thread: the text of choice 0 (Messages have one) */
static void ant_stream_delta(struct stream *s, const struct engine_delta *d)
{
    if (d->index == 0)
        buf_append(&s->pending, d->text, d->len);
}

/* Anthropic's event sequence: message_start, content_block_start, ping, content_block_delta*,
 * content_block_stop, message_delta, message_stop (or an error event). Phases: 0 the
 * opening events, 1 text deltas, 2 the closing events, 5 end */
static cJSON *ant_dialect_answer(const struct stream *s, const struct engine_result *res)
{
    return anthropic_message(s->r, res, s->id, s->model);
}

static int ant_stream_next(struct stream *s, struct buf *out)
{
    if (s->phase == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "message_start");
        cJSON *m = cJSON_AddObjectToObject(o, "message");
        cJSON_AddStringToObject(m, "id", s->id);
        cJSON_AddStringToObject(m, "type", "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddArrayToObject(m, "content");
        cJSON_AddStringToObject(m, "model", s->model);
        cJSON_AddNullToObject(m, "stop_reason");
        cJSON_AddNullToObject(m, "stop_sequence");
        cJSON *u = cJSON_AddObjectToObject(m, "usage");
        cJSON_AddNumberToObject(u, "input_tokens", s->n_prompt);
        cJSON_AddNumberToObject(u, "output_tokens", 0);
        stream_sse(out, "message_start", o);
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "content_block_start");
        cJSON_AddNumberToObject(o, "index", 0);
        cJSON *cb = cJSON_AddObjectToObject(o, "content_block");
        cJSON_AddStringToObject(cb, "type", "text");
        cJSON_AddStringToObject(cb, "text", "");
        stream_sse(out, "content_block_start", o);
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "ping");
        stream_sse(out, "ping", o);
        s->phase = 1;
        return STREAM_MORE;
    }
    if (s->phase == 1) {
        if (s->pending.len) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "content_block_delta");
            cJSON_AddNumberToObject(o, "index", 0);
            cJSON *d = cJSON_AddObjectToObject(o, "delta");
            cJSON_AddStringToObject(d, "type", "text_delta");
            char *t = strndup(s->pending.p, s->pending.len);
            cJSON_AddStringToObject(d, "text", t ? t : "");
            free(t);
            stream_sse(out, "content_block_delta", o);
            buf_reset(&s->pending);
            return STREAM_MORE;
        }
        if (!s->res)
            return STREAM_WAIT;
        s->phase = 2;
    }
    if (s->phase == 2) {
        const struct engine_result *res = s->res;
        if (res->status != NS_OK) {
            stream_sse(out, "error", anthropic_error(res->status, res->message));
        } else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "content_block_stop");
            cJSON_AddNumberToObject(o, "index", 0);
            stream_sse(out, "content_block_stop", o);
            o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "message_delta");
            cJSON *d = cJSON_AddObjectToObject(o, "delta");
            cJSON_AddStringToObject(d, "stop_reason", anthropic_stop_reason(res));
            if (res->stop_index >= 0 && res->stop_index < s->r->req.n_stop)
                cJSON_AddStringToObject(d, "stop_sequence", s->r->req.stop[res->stop_index]);
            else
                cJSON_AddNullToObject(d, "stop_sequence");
            cJSON *u = cJSON_AddObjectToObject(o, "usage");
            cJSON_AddNumberToObject(u, "output_tokens", res->completion_tokens);
            stream_sse(out, "message_delta", o);
            o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "message_stop");
            stream_sse(out, "message_stop", o);
        }
        s->phase = 5;
        return STREAM_MORE;
    }
    return STREAM_END;
}

/* ---- the Anthropic dialect (dialect.h) --------------------------------------------------- */

static cJSON *ant_dialect_error(int status, const char *message, const char *param, const char *code)
{
    (void)param;
    (void)code;
    return anthropic_error(status, message);
}

/* {custom_id, result: {type: succeeded | errored | canceled | expired, ...}} */
static cJSON *ant_dialect_batch_result(const char *custom_id, const struct oai_request *r,
                                       const struct engine_result *res, const char *model)
{
    bool ok = res->status == NS_OK;
    if (ok && r) {
        char id[48];
        oai_make_id(id, sizeof(id), "msg_");
        return anthropic_result_succeeded(custom_id, anthropic_message(r, res, id, model));
    }
    if (status_http(res->status) || ok)
        return anthropic_result_errored(custom_id, ok ? NS_ERR_INTERNAL : res->status, res->message);
    return anthropic_result_bare(custom_id, res->status == NS_ERR_EXPIRED ? "expired" : "canceled");
}

/* Message Batches: mixed models, a bad request is an errored result of its own, results
 * kept for the retention period, and a cancel still gives every request its result */
static int ant_dialect_parse(const char *body, size_t len, const struct dialect_parse *p, struct oai_request *r,
                             struct oai_error *err)
{
    (void)p; /* one route, chat */
    return anthropic_request_parse(body, len, r, err);
}

const struct dialect dialect_anthropic = {
    .name = "anthropic",
    .error = ant_dialect_error,
    .parse = ant_dialect_parse,
    .model_missing = dialect_model_missing,
    .id_prefix = {"msg_", "msg_"},
    .auth_message = "invalid x-api-key",
    .batch_result = ant_dialect_batch_result,
    .answer = ant_dialect_answer,
    .stream_type = "text/event-stream",
    .stream_delta = ant_stream_delta,
    .stream_next = ant_stream_next,
    .batch_endpoint = "/v1/messages",
    .batch_mixed_models = true,
    .batch_errors_per_line = true,
    .batch_retention = true,
    .batch_results_on_cancel = true,
};
