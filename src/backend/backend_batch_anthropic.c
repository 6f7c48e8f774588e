/*
 * backend_batch_anthropic.c — the "anthropic-batch" row of backend_batch.c's provider table:
 * Anthropic Message Batches (POST /messages/batches with each line's Messages params, poll
 * until processing_status is "ended", then read results_url's JSONL), each request's OpenAI
 * body mapped to Messages params and each message answered back as an OpenAI
 * chat.completion. The loop, the jobs and the retries are backend_batch.c's and
 * batch_loop.c's.
 *
 * THREADS: the backend's run thread only.
 */
#include "backend_batch_int.h"
#include "upstream.h"

#include "../util/buf.h"
#include "../util/status.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *an_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int an_text(const cJSON *content, struct buf *out)
{
    if (cJSON_IsString(content))
        return buf_appends(out, content->valuestring);
    if (!cJSON_IsArray(content))
        return NS_ERR_INVALID;
    const cJSON *p;
    cJSON_ArrayForEach(p, content)
    {
        if (!an_str(p, "type") || strcmp(an_str(p, "type"), "text") || !an_str(p, "text"))
            return NS_ERR_UNSUPPORTED;
        if (buf_appends(out, an_str(p, "text")))
            return NS_ERR_NOMEM;
    }
    return NS_OK;
}

/* OpenAI chat body -> Message Batches params. What has no Anthropic equivalent is refused
 * (n > 1, logprobs, response_format, tools, tool messages) or dropped as documented
 * (seed, presence/frequency penalties, user). */
static cJSON *an_body(struct batch_backend *bb, const struct engine_request *r, bool *chat, char *err, size_t errlen)
{
    bool ochat;
    cJSON *ob = backend_batch_openai_body(bb, r, &ochat, err, errlen);
    cJSON *p = NULL;
    struct buf sys, t;
    buf_init(&sys, 16u << 20);
    buf_init(&t, 16u << 20);
    *chat = true;
    if (!ob)
        goto fail;
    if (!ochat) {
        snprintf(err, errlen, "model '%s' runs on anthropic-batch, which has no /v1/completions; use chat", bb->name);
        goto fail;
    }
    static const char *const refused[] = {"tools", "tool_choice", "functions", "response_format", "logprobs", "top_logprobs",
                                          "logit_bias", "audio", NULL};
    for (int i = 0; refused[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(ob, refused[i]);
        if (v && !cJSON_IsNull(v) && !cJSON_IsFalse(v)) {
            snprintf(err, errlen, "'%s' cannot be mapped to Anthropic's Message Batches by this version", refused[i]);
            goto fail;
        }
    }
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(ob, "n");
    if (cJSON_IsNumber(n) && n->valuedouble != 1) {
        snprintf(err, errlen, "'n' other than 1 cannot be mapped to Anthropic's Message Batches");
        goto fail;
    }
    p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "model", an_str(ob, "model") ? an_str(ob, "model") : bb->name);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(ob, "max_completion_tokens");
    if (!cJSON_IsNumber(mt))
        mt = cJSON_GetObjectItemCaseSensitive(ob, "max_tokens");
    cJSON_AddNumberToObject(p, "max_tokens", cJSON_IsNumber(mt) ? mt->valuedouble : 4096);
    cJSON *ms = cJSON_AddArrayToObject(p, "messages");
    const cJSON *m;
    int i = 0;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(ob, "messages"))
    {
        const char *role = an_str(m, "role");
        buf_reset(&t);
        int rc = an_text(cJSON_GetObjectItemCaseSensitive(m, "content"), &t);
        if (!role || rc) {
            snprintf(err, errlen, "messages[%d]: only text content can be mapped to Anthropic's Message Batches", i);
            goto fail;
        }
        if (!strcmp(role, "system") || !strcmp(role, "developer")) {
            if ((sys.len && buf_appends(&sys, "\n\n")) || buf_append(&sys, t.p ? t.p : "", t.len))
                goto fail;
        } else if (!strcmp(role, "user") || !strcmp(role, "assistant")) {
            cJSON *am = cJSON_CreateObject();
            cJSON_AddStringToObject(am, "role", role);
            cJSON_AddStringToObject(am, "content", t.p ? t.p : "");
            cJSON_AddItemToArray(ms, am);
        } else {
            snprintf(err, errlen, "messages[%d]: role '%s' cannot be mapped to Anthropic's Message Batches", i, role);
            goto fail;
        }
        i++;
    }
    if (sys.len)
        cJSON_AddStringToObject(p, "system", sys.p);
    const cJSON *v;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(ob, "temperature")))
        cJSON_AddNumberToObject(p, "temperature", fmin(v->valuedouble, 1.0)); /* Anthropic's range is [0, 1] */
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(ob, "top_p")))
        cJSON_AddNumberToObject(p, "top_p", v->valuedouble);
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(ob, "top_k")))
        cJSON_AddNumberToObject(p, "top_k", v->valuedouble);
    v = cJSON_GetObjectItemCaseSensitive(ob, "stop");
    if (cJSON_IsString(v))
        cJSON_AddItemToArray(cJSON_AddArrayToObject(p, "stop_sequences"), cJSON_CreateString(v->valuestring));
    else if (cJSON_IsArray(v) && cJSON_GetArraySize(v))
        cJSON_AddItemToObject(p, "stop_sequences", cJSON_Duplicate(v, 1));
    cJSON_Delete(ob);
    buf_release(&sys);
    buf_release(&t);
    return p;
fail:
    if (!err[0])
        snprintf(err, errlen, "out of memory");
    cJSON_Delete(p);
    cJSON_Delete(ob);
    buf_release(&sys);
    buf_release(&t);
    return NULL;
}

static int an_submit(struct batch_backend *bb, struct bb_batch *b, char *err, size_t errlen)
{
    cJSON *req = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(req, "requests");
    for (struct bb_job *j = b->jobs; j; j = j->next) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "custom_id", j->custom_id);
        cJSON_AddItemReferenceToObject(r, "params", j->body);
        cJSON_AddItemToArray(arr, r);
    }
    char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    char url[1200];
    cJSON *o = NULL;
    snprintf(url, sizeof(url), "%s/messages/batches", bb->url);
    int rc = body ? backend_batch_json_call(bb, "POST", url, body, NULL, &o, err, errlen) : NS_ERR_NOMEM;
    free(body);
    if (rc == NS_OK && !an_str(o, "id")) {
        snprintf(err, errlen, "POST %s: the answer has no batch id", url);
        rc = NS_ERR_UPSTREAM;
    }
    if (rc == NS_OK)
        snprintf(b->id, sizeof(b->id), "%s", an_str(o, "id"));
    cJSON_Delete(o);
    return rc;
}

static int an_poll(struct batch_backend *bb, struct bb_batch *b, bool *ended, char *err, size_t errlen)
{
    cJSON *o = NULL;
    int rc = backend_batch_get_batch(bb, "/messages/batches/", b->id, &o, err, errlen);
    if (rc)
        return rc;
    const char *st = an_str(o, "processing_status");
    *ended = st && strcmp(st, "ended") == 0;
    if (*ended) {
        snprintf(b->results_url, sizeof(b->results_url), "%s", an_str(o, "results_url") ? an_str(o, "results_url") : "");
        snprintf(b->failure, sizeof(b->failure), "the upstream message batch %s ended without this request", b->id);
    }
    cJSON_Delete(o);
    return NS_OK;
}

/* an Anthropic message -> an OpenAI chat.completion body */
static cJSON *an_to_openai(const cJSON *msg)
{
    struct buf t;
    buf_init(&t, 64u << 20);
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(msg, "content"))
        if (an_str(c, "type") && !strcmp(an_str(c, "type"), "text") && an_str(c, "text"))
            buf_appends(&t, an_str(c, "text"));
    const char *sr = an_str(msg, "stop_reason");
    const char *finish = !sr ? "stop" : !strcmp(sr, "max_tokens") ? "length" : !strcmp(sr, "tool_use") ? "tool_calls" : "stop";
    cJSON *o = cJSON_CreateObject();
    char id[160];
    snprintf(id, sizeof(id), "chatcmpl-%s", an_str(msg, "id") ? an_str(msg, "id") : "anthropic");
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "chat.completion");
    cJSON_AddNumberToObject(o, "created", (double)time(NULL));
    cJSON_AddStringToObject(o, "model", an_str(msg, "model") ? an_str(msg, "model") : "");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", 0);
    cJSON *m = cJSON_AddObjectToObject(ch, "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddStringToObject(m, "content", t.p ? t.p : "");
    cJSON_AddNullToObject(ch, "logprobs");
    cJSON_AddStringToObject(ch, "finish_reason", finish);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), ch);
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(msg, "usage");
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(u, "input_tokens");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(u, "output_tokens");
    const cJSON *cr = cJSON_GetObjectItemCaseSensitive(u, "cache_read_input_tokens");
    double pi = cJSON_IsNumber(in) ? in->valuedouble : 0, po = cJSON_IsNumber(out) ? out->valuedouble : 0;
    double pc = cJSON_IsNumber(cr) ? cr->valuedouble : 0;
    cJSON *uu = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(uu, "prompt_tokens", pi + pc);
    cJSON_AddNumberToObject(uu, "completion_tokens", po);
    cJSON_AddNumberToObject(uu, "total_tokens", pi + pc + po);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(uu, "prompt_tokens_details"), "cached_tokens", pc);
    buf_release(&t);
    return o;
}

static void an_line(void *ud, cJSON *o)
{
    struct bb_collect *x = ud;
    const char *cid = an_str(o, "custom_id");
    struct bb_job *j = cid ? backend_batch_take(x->b, cid) : NULL;
    if (!j)
        return;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "result");
    const char *type = an_str(r, "type");
    if (type && !strcmp(type, "succeeded")) {
        cJSON *body = an_to_openai(cJSON_GetObjectItemCaseSensitive(r, "message"));
        backend_batch_succeed(x->bb, j, body);
        cJSON_Delete(body);
        return;
    }
    if (type && !strcmp(type, "errored")) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "error"), "error");
        const char *et = an_str(e, "type") ? an_str(e, "type") : "api_error";
        const char *em = an_str(e, "message") ? an_str(e, "message") : et;
        if (!strcmp(et, "invalid_request_error") || !strcmp(et, "not_found_error") || !strcmp(et, "permission_error") ||
            !strcmp(et, "authentication_error")) {
            long code = !strcmp(et, "invalid_request_error") ? 400 : !strcmp(et, "not_found_error") ? 404
                        : !strcmp(et, "permission_error")    ? 403
                                                             : 401;
            cJSON *body = cJSON_CreateObject();
            cJSON *eo = cJSON_AddObjectToObject(body, "error");
            cJSON_AddStringToObject(eo, "message", em);
            cJSON_AddStringToObject(eo, "type", code == 400 ? "invalid_request_error" : et);
            cJSON_AddNullToObject(eo, "param");
            cJSON_AddNullToObject(eo, "code");
            backend_batch_reject(x->bb, j, code, body);
            cJSON_Delete(body);
            return;
        }
        char why[300];
        snprintf(why, sizeof(why), "%s: %s", et, em);
        backend_batch_retry(x->bb, j, why);
        return;
    }
    backend_batch_retry(x->bb, j, type ? type : "no result"); /* canceled, expired */
}

static int an_collect(struct batch_backend *bb, struct bb_batch *b, char *err, size_t errlen)
{
    if (!b->results_url[0])
        return NS_OK;
    struct buf body;
    long code;
    buf_init(&body, BB_MAX_RESPONSE);
    int rc = backend_batch_http(bb, "GET", b->results_url, NULL, NULL, &body, &code, err, errlen);
    if (rc == NS_OK && code != 200) {
        snprintf(err, errlen, "GET %s: HTTP %ld", b->results_url, code);
        rc = upstream_status_of(code);
    }
    if (rc == NS_OK) {
        struct bb_collect x = {bb, b};
        backend_batch_each_line(body.p, body.len, an_line, &x);
    }
    buf_release(&body);
    return rc;
}

const struct bb_provider backend_batch_anthropic = {"anthropic-batch", an_submit, an_poll, an_collect, an_body};
