/*
 * oai_out.c — see oai.h: OpenAI answers out: completion and chat bodies, stream deltas,
 * logprobs, tool calls parsed from a model's text, embeddings, error bodies, batch lines,
 * and the OpenAI dialect row (dialect.h).
 */
#include "oai.h"

#include "dialect.h"
#include "stream.h"
#include "../util/base64.h"
#include "../util/buf.h"
#include "../util/status.h"
#include "../util/utf8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static cJSON *oai_usage(const struct engine_result *res)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", res->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", res->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", res->prompt_tokens + res->completion_tokens);
    cJSON *pd = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(pd, "cached_tokens", res->cached_tokens);
    cJSON *cd = cJSON_AddObjectToObject(u, "completion_tokens_details");
    cJSON_AddNumberToObject(cd, "reasoning_tokens", res->reasoning_tokens);
    return u;
}

/* a token piece as a JSON string (pieces can split a UTF-8 character: made valid) */
static cJSON *oai_piece(const char *p, size_t n)
{
    char *t = malloc(n * 3 + 1);
    if (!t)
        return cJSON_CreateString("");
    memcpy(t, p, n);
    n = utf8_sanitize(t, n, n * 3);
    t[n] = '\0';
    cJSON *s = cJSON_CreateString(t);
    free(t);
    return s;
}

static cJSON *oai_piece_bytes(const char *p, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)p[i]));
    return a;
}

/* chat: {"content":[{token, logprob, bytes, top_logprobs}], "refusal": null} */
static cJSON *oai_chat_logprobs(const struct engine_token_logprob *lps, int n_lp, const char *txt)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *content = cJSON_AddArrayToObject(o, "content");
    txt = txt ? txt : "";
    for (int i = 0; i < n_lp; i++) {
        const struct engine_token_logprob *lp = &lps[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToObject(e, "token", oai_piece(txt + lp->piece_off, lp->piece_len));
        cJSON_AddNumberToObject(e, "logprob", lp->logprob);
        cJSON_AddItemToObject(e, "bytes", oai_piece_bytes(txt + lp->piece_off, lp->piece_len));
        cJSON *top = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int j = 0; j < lp->n_top; j++) {
            cJSON *t = cJSON_CreateObject();
            cJSON_AddItemToObject(t, "token", oai_piece(txt + lp->top[j].piece_off, lp->top[j].piece_len));
            cJSON_AddNumberToObject(t, "logprob", lp->top[j].logprob);
            cJSON_AddItemToObject(t, "bytes", oai_piece_bytes(txt + lp->top[j].piece_off, lp->top[j].piece_len));
            cJSON_AddItemToArray(top, t);
        }
        cJSON_AddItemToArray(content, e);
    }
    cJSON_AddNullToObject(o, "refusal");
    return o;
}

/* completions (legacy): {"tokens", "token_logprobs", "top_logprobs": [{piece: logprob}],
 * "text_offset"} */
static cJSON *oai_text_logprobs(const struct engine_token_logprob *all, int n_lp, const char *txt, size_t at)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *tokens = cJSON_AddArrayToObject(o, "tokens");
    cJSON *lps = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs");
    cJSON *offs = cJSON_AddArrayToObject(o, "text_offset");
    txt = txt ? txt : "";
    for (int i = 0; i < n_lp; i++) {
        const struct engine_token_logprob *lp = &all[i];
        cJSON_AddItemToArray(tokens, oai_piece(txt + lp->piece_off, lp->piece_len));
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(lp->logprob));
        cJSON *t = cJSON_CreateObject();
        for (int j = 0; j < lp->n_top; j++) {
            cJSON *k = oai_piece(txt + lp->top[j].piece_off, lp->top[j].piece_len);
            if (k && cJSON_IsString(k) && !cJSON_GetObjectItemCaseSensitive(t, k->valuestring))
                cJSON_AddNumberToObject(t, k->valuestring, lp->top[j].logprob);
            cJSON_Delete(k);
        }
        cJSON_AddItemToArray(tops, t);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)at));
        at += lp->piece_len;
    }
    return o;
}

cJSON *oai_logprobs_json(const struct oai_request *r, const struct engine_token_logprob *lp, int n, const char *text,
                         size_t text_offset)
{
    return r->chat ? oai_chat_logprobs(lp, n, text) : oai_text_logprobs(lp, n, text, text_offset);
}

const char *oai_finish_reason_of(const struct oai_request *r, enum engine_finish finish)
{
    (void)r;
    return finish == ENGINE_FINISH_LENGTH ? "length" : "stop";
}

/* a choice's finish_reason: its calls make it "tool_calls" (as OpenAI says even when the
 * call came with text) */
static const char *oai_choice_finish(const struct oai_request *r, const struct engine_choice *ch)
{
    if (ch->n_tool_calls > 0 && ch->finish != ENGINE_FINISH_LENGTH)
        return "tool_calls";
    return oai_finish_reason_of(r, ch->finish);
}

const char *oai_finish_reason(const struct oai_request *r, const struct engine_result *res)
{
    struct engine_choice ch = oai_result_choice(res, 0);
    return oai_choice_finish(r, &ch);
}

int oai_result_n_choices(const struct engine_result *res)
{
    return res->n_choices > 1 && res->choices ? res->n_choices : 1;
}

struct engine_choice oai_result_choice(const struct engine_result *res, int i)
{
    if (res->n_choices > 0 && res->choices && i < res->n_choices)
        return res->choices[i];
    return (struct engine_choice){.text = res->text ? res->text : "", .text_len = res->text_len, .finish = res->finish,
                                  .stop_index = res->stop_index, .completion_tokens = res->completion_tokens,
                                  .logprobs = res->logprobs, .n_logprobs = res->n_logprobs,
                                  .logprob_text = res->logprob_text, .logprob_text_len = res->logprob_text_len,
                                  .reasoning = res->reasoning, .reasoning_len = res->reasoning_len,
                                  .tool_calls = res->tool_calls, .n_tool_calls = res->n_tool_calls};
}

/* message.tool_calls: the calls the model made, as its format's parser read them */
static cJSON *oai_tool_calls(const struct engine_choice *ch)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < ch->n_tool_calls; i++) {
        const struct engine_tool_call *t = &ch->tool_calls[i];
        cJSON *call = cJSON_CreateObject();
        cJSON_AddStringToObject(call, "id", t->id);
        cJSON_AddStringToObject(call, "type", "function");
        cJSON *f = cJSON_AddObjectToObject(call, "function");
        cJSON_AddStringToObject(f, "name", t->name);
        cJSON_AddStringToObject(f, "arguments", t->arguments);
        cJSON_AddItemToArray(a, call);
    }
    return a;
}

static void oai_add_text(cJSON *o, const char *key, const char *text, size_t n)
{
    char *t = strndup(text ? text : "", n);
    cJSON_AddStringToObject(o, key, t ? t : "");
    free(t);
}

/* a streamed chat chunk's delta: the role first, then new content, reasoning, or a tool
 * call's start (index, id, type, name) or argument text (index and arguments only) */
static void oai_chunk_delta(cJSON *d, const struct engine_delta *e, const char *text, size_t n, bool first)
{
    if (first)
        cJSON_AddStringToObject(d, "role", "assistant");
    if (text && (n || first))
        oai_add_text(d, "content", text, n);
    if (!e)
        return;
    if (e->reasoning && e->reasoning_len)
        oai_add_text(d, "reasoning_content", e->reasoning, e->reasoning_len);
    if (e->tool_index >= 0 && (e->tool_name || e->tool_args)) {
        cJSON *call = cJSON_CreateObject();
        cJSON_AddNumberToObject(call, "index", e->tool_index);
        if (e->tool_name) {
            cJSON_AddStringToObject(call, "id", e->tool_id ? e->tool_id : "");
            cJSON_AddStringToObject(call, "type", "function");
        }
        cJSON *f = cJSON_AddObjectToObject(call, "function");
        if (e->tool_name)
            cJSON_AddStringToObject(f, "name", e->tool_name);
        cJSON_AddStringToObject(f, "arguments", e->tool_args ? e->tool_args : "");
        cJSON_AddItemToArray(cJSON_AddArrayToObject(d, "tool_calls"), call);
    }
}

static cJSON *oai_embeddings_body(const struct oai_request *r, const struct engine_result *res, const char *model)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    size_t bytes = sizeof(float) * (size_t)res->n_embd;
    char *b64 = r->embed_base64 ? malloc((bytes + 2) / 3 * 4 + 1) : NULL;
    unsigned char *le = r->embed_base64 ? malloc(bytes ? bytes : 1) : NULL;
    for (int i = 0; i < res->n_embed && res->embedding; i++) {
        const float *v = res->embedding + (size_t)i * (size_t)res->n_embd;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "object", "embedding");
        cJSON_AddNumberToObject(e, "index", i);
        if (r->embed_base64 && b64 && le) {
            /* little-endian float32, whatever this machine's order */
            for (int k = 0; k < res->n_embd; k++) {
                uint32_t u;
                memcpy(&u, &v[k], 4);
                for (int byte = 0; byte < 4; byte++)
                    le[(size_t)k * 4 + (size_t)byte] = (unsigned char)(u >> (8 * byte));
            }
            size_t n = base64_encode(le, bytes, b64);
            b64[n] = '\0';
            cJSON_AddStringToObject(e, "embedding", b64);
        } else {
            cJSON *a = cJSON_AddArrayToObject(e, "embedding");
            for (int k = 0; k < res->n_embd; k++)
                cJSON_AddItemToArray(a, cJSON_CreateNumber(v[k]));
        }
        cJSON_AddItemToArray(data, e);
    }
    free(b64);
    free(le);
    cJSON_AddStringToObject(o, "model", model);
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", res->prompt_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", res->prompt_tokens);
    return o;
}

cJSON *oai_completion_body(const struct oai_request *r, const struct engine_result *res, const char *id,
                           const char *model, time_t created)
{
    if (r->embeddings)
        return oai_embeddings_body(r, res, model);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", r->chat ? "chat.completion" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", model);
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    int nc = oai_result_n_choices(res);
    for (int i = 0; i < nc; i++) {
        struct engine_choice ch = oai_result_choice(res, i);
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", i);
        if (r->chat) {
            cJSON *m = cJSON_AddObjectToObject(c, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            if (ch.n_tool_calls > 0 && ch.text_len == 0)
                cJSON_AddNullToObject(m, "content"); /* as OpenAI answers a call */
            else
                oai_add_text(m, "content", ch.text, ch.text_len);
            if (ch.reasoning)
                oai_add_text(m, "reasoning_content", ch.reasoning, ch.reasoning_len);
            if (ch.n_tool_calls > 0)
                cJSON_AddItemToObject(m, "tool_calls", oai_tool_calls(&ch));
            cJSON_AddNullToObject(m, "refusal");
        } else {
            cJSON_AddStringToObject(c, "text", ch.text);
        }
        if (r->req.logprobs)
            cJSON_AddItemToObject(c, "logprobs", oai_logprobs_json(r, ch.logprobs, ch.n_logprobs, ch.logprob_text, 0));
        else
            cJSON_AddNullToObject(c, "logprobs");
        cJSON_AddStringToObject(c, "finish_reason", oai_choice_finish(r, &ch));
        cJSON_AddItemToArray(choices, c);
    }
    cJSON_AddItemToObject(o, "usage", oai_usage(res));
    cJSON_AddStringToObject(o, "system_fingerprint", "nightshift");
    return o;
}

cJSON *oai_error_body(int status, const char *message, const char *param, const char *code)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", message);
    const char *type = status_type(status);
    cJSON_AddStringToObject(e, "type", type ? type : "invalid_request_error");
    if (param)
        cJSON_AddStringToObject(e, "param", param);
    else
        cJSON_AddNullToObject(e, "param");
    if (!code)
        code = status_code(status);
    if (code)
        cJSON_AddStringToObject(e, "code", code);
    else
        cJSON_AddNullToObject(e, "code");
    return o;
}

cJSON *oai_batch_line(const char *custom_id, int status_code, cJSON *body)
{
    char id[48], rid[48];
    oai_make_id(id, sizeof(id), "batch_req_");
    oai_make_id(rid, sizeof(rid), "req_");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    if (custom_id)
        cJSON_AddStringToObject(o, "custom_id", custom_id);
    else
        cJSON_AddNullToObject(o, "custom_id");
    cJSON *resp = cJSON_AddObjectToObject(o, "response");
    cJSON_AddNumberToObject(resp, "status_code", status_code);
    cJSON_AddStringToObject(resp, "request_id", rid);
    cJSON_AddItemToObject(resp, "body", body);
    cJSON_AddNullToObject(o, "error");
    return o;
}

cJSON *oai_batch_line_noresponse(const char *custom_id, int status, const char *message)
{
    char id[48];
    oai_make_id(id, sizeof(id), "batch_req_");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "custom_id", custom_id);
    cJSON_AddNullToObject(o, "response");
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    const char *code = status_code(status);
    cJSON_AddStringToObject(e, "code", code ? code : "server_error");
    cJSON_AddStringToObject(e, "message", message);
    return o;
}

/* ---- streaming (dialect.h, stream.h): chat.completion.chunk / text_completion events ---- */

static cJSON *oai_chunk_base(const struct stream *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", s->id);
    cJSON_AddStringToObject(o, "object", s->chat ? "chat.completion.chunk" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)s->created);
    cJSON_AddStringToObject(o, "model", s->model);
    cJSON_AddStringToObject(o, "system_fingerprint", "nightshift");
    return o;
}

/* a chunk of choice `index`: new text (chat: the delta), its tokens' logprobs (d, when
 * the request asked for them), or the finish_reason */
static cJSON *oai_chunk_choice(struct stream *s, int index, const char *text, size_t n, const char *finish, bool role,
                               const struct engine_delta *d)
{
    cJSON *o = oai_chunk_base(s);
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", index);
    if (s->chat) {
        oai_chunk_delta(cJSON_AddObjectToObject(c, "delta"), d, text, n, role);
    } else {
        char *t = strndup(text ? text : "", n);
        cJSON_AddStringToObject(c, "text", t ? t : "");
        free(t);
    }
    if (d && s->r->req.logprobs && index >= 0 && index < ENGINE_MAX_CHOICES) {
        cJSON_AddItemToObject(c, "logprobs",
                              oai_logprobs_json(s->r, d->logprobs, d->n_logprobs, d->logprob_text, s->lp_offset[index]));
        for (int i = 0; i < d->n_logprobs; i++)
            s->lp_offset[index] += d->logprobs[i].piece_len;
    } else {
        cJSON_AddNullToObject(c, "logprobs");
    }
    if (finish)
        cJSON_AddStringToObject(c, "finish_reason", finish);
    else
        cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToArray(choices, c);
    if (s->include_usage)
        cJSON_AddNullToObject(o, "usage");
    return o;
}

/* the engine thread: one chunk per delta, made now (each with its choice and logprobs):
 * new content, reasoning, or a tool call's start or arguments */
static void oai_stream_delta(struct stream *s, const struct engine_delta *d)
{
    bool call = d->tool_index >= 0 && (d->tool_name || d->tool_args);
    if (d->len || d->n_logprobs || d->reasoning_len || call)
        stream_sse(&s->pending, NULL, oai_chunk_choice(s, d->index, d->len ? d->text : NULL, d->len, NULL, false, d));
}

/* phases: 0 the role chunks (chat), 1 content, 2 the final chunks, 3 usage, 4 [DONE], 5 end */
static cJSON *oai_dialect_answer(const struct stream *s, const struct engine_result *res)
{
    return oai_completion_body(s->r, res, s->id, s->model, s->created);
}

static int oai_stream_next(struct stream *s, struct buf *out)
{
    for (;;) {
        size_t before = out->len;
        if (s->phase == 0) {
            if (s->chat) {
                int nc = s->r->req.n > 1 ? s->r->req.n : 1;
                for (int i = 0; i < nc; i++)
                    stream_sse(out, NULL, oai_chunk_choice(s, i, "", 0, NULL, true, NULL));
            }
            s->phase = 1;
        } else if (s->phase == 1) {
            /* whole events made by oai_stream_delta */
            int step = stream_pass_pending(s, out);
            if (step == STREAM_WAIT)
                return STREAM_WAIT;
            if (step == STREAM_END)
                s->phase = 2;
        } else if (s->phase == 2) {
            const struct engine_result *res = s->res;
            if (res->status != NS_OK) {
                /* the request failed after the stream started: an error event, then [DONE] */
                stream_sse(out, NULL, oai_error_body(res->status, res->message, res->param, NULL));
            } else {
                for (int i = 0; i < oai_result_n_choices(res); i++) {
                    struct engine_choice ch = oai_result_choice(res, i);
                    stream_sse(out, NULL, oai_chunk_choice(s, i, s->chat ? NULL : "", 0, oai_choice_finish(s->r, &ch), false, NULL));
                }
            }
            s->phase = 3;
        } else if (s->phase == 3) {
            if (s->include_usage && s->res->status == NS_OK) {
                cJSON *o = oai_chunk_base(s);
                cJSON_AddArrayToObject(o, "choices");
                /* the same usage object as the non-streamed answer's (issue 31.7) */
                cJSON_AddItemToObject(o, "usage", oai_usage(s->res));
                stream_sse(out, NULL, o);
            }
            s->phase = 4;
        } else if (s->phase == 4) {
            buf_appends(out, "data: [DONE]\n\n");
            s->phase = 5;
        } else {
            return STREAM_END;
        }
        if (out->len > before)
            return STREAM_MORE;
    }
}

/* ---- the OpenAI dialect (dialect.h) ------------------------------------------------------ */

static cJSON *oai_dialect_error(int status, const char *message, const char *param, const char *code)
{
    return oai_error_body(status, message, param, code);
}

/* {id, custom_id, response: {status_code, request_id, body}, error}; an upstream's answer
 * is passed on as it gave it */
static cJSON *oai_dialect_batch_result(const char *custom_id, const struct oai_request *r,
                                       const struct engine_result *res, const char *model)
{
    bool ok = res->status == NS_OK;
    if (res->raw_body && res->http_status) {
        cJSON *body = cJSON_ParseWithLength(res->raw_body, res->raw_len);
        return body ? oai_batch_line(custom_id, res->http_status, body)
                    : oai_batch_line(custom_id, status_http(res->status) ? status_http(res->status) : 502,
                                     oai_error_body(res->status, res->message, res->param, NULL));
    }
    if (ok && r) {
        char id[48];
        oai_make_id(id, sizeof(id), r->chat ? "chatcmpl-" : "cmpl-");
        return oai_batch_line(custom_id, 200, oai_completion_body(r, res, id, model, time(NULL)));
    }
    if (status_http(res->status) || ok)
        return oai_batch_line(custom_id, ok ? 500 : status_http(res->status),
                              oai_error_body(ok ? NS_ERR_INTERNAL : res->status, res->message, res->param, NULL));
    return oai_batch_line_noresponse(custom_id, res->status, res->message);
}

/* the light check for a model that forwards its body upstream, else every field */
static int oai_dialect_parse(const char *body, size_t len, const struct dialect_parse *p, struct oai_request *r,
                             struct oai_error *err)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root) {
        memset(r, 0, sizeof(*r));
        return oai_error_set(err, NS_ERR_INVALID, NULL,
                             "We could not parse the JSON body of your request. The body must be valid JSON.");
    }
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (p->forwards && cJSON_IsString(m) && p->forwards(p->ud, m->valuestring))
        return oai_request_forward_from_json(root, p->chat, r, err);
    return oai_request_from_json(root, p->chat, r, err);
}

const struct dialect dialect_openai = {
    .name = "openai",
    .error = oai_dialect_error,
    .parse = oai_dialect_parse,
    .model_missing = dialect_model_missing,
    .id_prefix = {"cmpl-", "chatcmpl-"},
    .auth_message = "Incorrect API key provided. Pass it as 'Authorization: Bearer KEY'.",
    .batch_result = oai_dialect_batch_result,
    .answer = oai_dialect_answer,
    .answer_passes_raw = true,
    .stream_type = "text/event-stream",
    .stream_delta = oai_stream_delta,
    .stream_next = oai_stream_next,
};

