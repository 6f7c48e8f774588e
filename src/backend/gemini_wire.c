/*
 * gemini_wire.c — OpenAI chat <-> Gemini GenerateContent translation (gemini_wire.h).
 *
 * Request mapping (each refusal names its field):
 *   messages: system/developer -> systemInstruction.parts; user -> role "user";
 *     assistant -> role "model" (its tool_calls -> functionCall parts, arguments parsed);
 *     tool -> a "user" turn of functionResponse parts (consecutive tool messages share
 *     one turn, as Gemini wants the answers to parallel calls together; the function name
 *     is the one of the assistant tool call its tool_call_id answers; a content that is a
 *     JSON object is the response itself, anything else is {"content": text}).
 *   content parts: text; image_url and input_audio given as data (a data: URL, base64
 *     audio) -> inlineData. A remote image URL, files and other types are refused.
 *   generationConfig: temperature, top_p, top_k, max_completion_tokens / max_tokens,
 *     stop, seed, presence_penalty, frequency_penalty; n must be 1.
 *   response_format: json_schema -> responseMimeType application/json + responseJsonSchema
 *     (Gemini's JSON Schema field: the schema goes as the client wrote it); json_object ->
 *     responseMimeType; text -> nothing.
 *   tools (type function) -> functionDeclarations with parametersJsonSchema; tool_choice
 *     auto/none/required/{function} -> toolConfig.functionCallingConfig AUTO/NONE/ANY/ANY
 *     with allowedFunctionNames. parallel_tool_calls true is Gemini's own behaviour; false
 *     is refused.
 *   refused: logprobs (true), top_logprobs, logit_bias, n > 1, audio, modalities other
 *     than text, prediction, functions/function_call, reasoning_effort, web_search_options,
 *     and any field not listed here.
 */
#include "gemini_wire.h"

#include "../util/buf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *gw_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* fields that mean nothing upstream (the batch carries the model; batch answers are not
 * streamed; the rest are the client's bookkeeping) */
static const char *const gw_ignored[] = {"model", "stream", "stream_options", "user", "metadata", "store",
                                         "service_tier", NULL};
/* fields translated below */
static const char *const gw_known[] = {"messages", "temperature", "top_p", "top_k", "max_tokens",
                                       "max_completion_tokens", "stop", "seed", "n", "presence_penalty",
                                       "frequency_penalty", "response_format", "tools", "tool_choice",
                                       "parallel_tool_calls", "logprobs", NULL};

static bool gw_in(const char *const *list, const char *k)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], k) == 0)
            return true;
    return false;
}

/* OpenAI fields with no Gemini batch equivalent, as static strings for *param (any other
 * unknown field is refused too, named in the message only) */
static const char *const gw_refused[] = {"logit_bias", "top_logprobs", "audio", "modalities", "prediction",
                                         "functions", "function_call", "reasoning_effort", "web_search_options",
                                         "verbosity", "prompt_cache_key", "safety_identifier", NULL};

static const char *gw_refused_name(const char *k)
{
    for (int i = 0; gw_refused[i]; i++)
        if (strcmp(gw_refused[i], k) == 0)
            return gw_refused[i];
    return NULL;
}

#define GW_FAIL(p, ...)                                                                                               \
    do {                                                                                                              \
        snprintf(err, errlen, __VA_ARGS__);                                                                           \
        *param = (p);                                                                                                 \
        goto fail;                                                                                                    \
    } while (0)

/* "data:image/png;base64,AAAA" -> inlineData; false when it is not a base64 data URL */
static bool gw_data_url(const char *url, cJSON *part)
{
    if (strncmp(url, "data:", 5) != 0)
        return false;
    const char *semi = strstr(url, ";base64,");
    if (!semi || semi == url + 5)
        return false;
    char mime[128];
    snprintf(mime, sizeof(mime), "%.*s", (int)(semi - url - 5), url + 5);
    cJSON *d = cJSON_AddObjectToObject(part, "inlineData");
    cJSON_AddStringToObject(d, "mimeType", mime);
    cJSON_AddStringToObject(d, "data", semi + 8);
    return true;
}

/* one message's content -> parts appended to `parts`; 0 ok, else err/param set */
static int gw_content(const cJSON *content, int mi, cJSON *parts, char *err, size_t errlen, const char **param)
{
    if (cJSON_IsNull(content) || !content)
        return 0;
    if (cJSON_IsString(content)) {
        if (content->valuestring[0]) {
            cJSON *part = cJSON_CreateObject();
            cJSON_AddStringToObject(part, "text", content->valuestring);
            cJSON_AddItemToArray(parts, part);
        }
        return 0;
    }
    if (!cJSON_IsArray(content)) {
        snprintf(err, errlen, "messages[%d].content must be a string or an array of parts", mi);
        *param = "messages";
        return -1;
    }
    int pi = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, content)
    {
        const char *type = gw_str(p, "type");
        cJSON *part = cJSON_CreateObject();
        cJSON_AddItemToArray(parts, part);
        if (type && !strcmp(type, "text") && gw_str(p, "text")) {
            cJSON_AddStringToObject(part, "text", gw_str(p, "text"));
        } else if (type && !strcmp(type, "image_url")) {
            const cJSON *iu = cJSON_GetObjectItemCaseSensitive(p, "image_url");
            const char *url = cJSON_IsString(iu) ? iu->valuestring : gw_str(iu, "url");
            if (!url || !gw_data_url(url, part)) {
                snprintf(err, errlen,
                         "messages[%d].content[%d].image_url: only base64 data: URLs can be sent to a Gemini batch "
                         "(a remote image must be uploaded to Gemini's Files API first)",
                         mi, pi);
                *param = "messages";
                return -1;
            }
        } else if (type && !strcmp(type, "input_audio")) {
            const cJSON *ia = cJSON_GetObjectItemCaseSensitive(p, "input_audio");
            const char *data = gw_str(ia, "data"), *fmt = gw_str(ia, "format");
            if (!data || !fmt || (strcmp(fmt, "wav") && strcmp(fmt, "mp3"))) {
                snprintf(err, errlen, "messages[%d].content[%d].input_audio needs data and format wav or mp3", mi, pi);
                *param = "messages";
                return -1;
            }
            cJSON *d = cJSON_AddObjectToObject(part, "inlineData");
            cJSON_AddStringToObject(d, "mimeType", !strcmp(fmt, "wav") ? "audio/wav" : "audio/mp3");
            cJSON_AddStringToObject(d, "data", data);
        } else {
            snprintf(err, errlen, "messages[%d].content[%d]: content parts of type '%s' cannot be sent to Gemini", mi,
                     pi, type ? type : "(none)");
            *param = "messages";
            return -1;
        }
        pi++;
    }
    return 0;
}

/* the function name of the assistant tool call with this id, searched backwards */
static const char *gw_call_name(const cJSON *messages, int before, const char *id)
{
    for (int i = before - 1; i >= 0; i--) {
        const cJSON *m = cJSON_GetArrayItem(messages, i);
        const cJSON *tc;
        cJSON_ArrayForEach(tc, cJSON_GetObjectItemCaseSensitive(m, "tool_calls"))
            if (gw_str(tc, "id") && id && !strcmp(gw_str(tc, "id"), id))
                return gw_str(cJSON_GetObjectItemCaseSensitive(tc, "function"), "name");
    }
    return NULL;
}

static cJSON *gw_turn(cJSON *contents, const char *role)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "role", role);
    cJSON_AddArrayToObject(t, "parts");
    cJSON_AddItemToArray(contents, t);
    return cJSON_GetObjectItemCaseSensitive(t, "parts");
}

cJSON *gemini_wire_request(const cJSON *oai, char *err, size_t errlen, const char **param)
{
    *param = NULL;
    err[0] = '\0';
    cJSON *g = cJSON_CreateObject();
    cJSON *sys = NULL;
    const cJSON *f;
    if (!cJSON_IsObject(oai))
        GW_FAIL(NULL, "the request body must be a JSON object");
    /* what is neither translated nor ignorable is refused by name */
    cJSON_ArrayForEach(f, oai)
    {
        if (gw_in(gw_ignored, f->string) || gw_in(gw_known, f->string))
            continue;
        if (cJSON_IsNull(f))
            continue;
        if (!strcmp(f->string, "prompt"))
            GW_FAIL("prompt", "'prompt': a gemini-batch model takes chat requests (/v1/chat/completions) only");
        GW_FAIL(gw_refused_name(f->string), "'%s' cannot be translated to Gemini's GenerateContent API", f->string);
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(oai, "logprobs");
    if (v && !cJSON_IsFalse(v) && !cJSON_IsNull(v))
        GW_FAIL("logprobs", "'logprobs' cannot be translated to Gemini's batch API");
    v = cJSON_GetObjectItemCaseSensitive(oai, "n");
    if (v && !cJSON_IsNull(v) && (!cJSON_IsNumber(v) || v->valuedouble != 1))
        GW_FAIL("n", "'n' other than 1 cannot be translated to a Gemini batch");
    v = cJSON_GetObjectItemCaseSensitive(oai, "parallel_tool_calls");
    if (cJSON_IsFalse(v))
        GW_FAIL("parallel_tool_calls", "'parallel_tool_calls': false cannot be translated to Gemini, which may always "
                                       "call several functions at once");

    /* messages -> systemInstruction + contents */
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(oai, "messages");
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0)
        GW_FAIL("messages", "'messages' must be a non-empty array");
    cJSON *contents = cJSON_AddArrayToObject(g, "contents");
    cJSON *tool_turn = NULL; /* the open functionResponse turn */
    int mi = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, messages)
    {
        const char *role = gw_str(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!role)
            GW_FAIL("messages", "messages[%d].role is missing", mi);
        if (strcmp(role, "tool") != 0)
            tool_turn = NULL;
        if (!strcmp(role, "system") || !strcmp(role, "developer")) {
            if (!sys)
                sys = cJSON_AddArrayToObject(cJSON_AddObjectToObject(g, "systemInstruction"), "parts");
            if (gw_content(content, mi, sys, err, errlen, param))
                goto fail;
        } else if (!strcmp(role, "user")) {
            if (gw_content(content, mi, gw_turn(contents, "user"), err, errlen, param))
                goto fail;
        } else if (!strcmp(role, "assistant")) {
            cJSON *parts = gw_turn(contents, "model");
            if (gw_content(content, mi, parts, err, errlen, param))
                goto fail;
            const cJSON *tc;
            int ti = 0;
            cJSON_ArrayForEach(tc, cJSON_GetObjectItemCaseSensitive(m, "tool_calls"))
            {
                const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
                const char *name = gw_str(fn, "name"), *args = gw_str(fn, "arguments");
                if (!name)
                    GW_FAIL("messages", "messages[%d].tool_calls[%d].function.name is missing", mi, ti);
                cJSON *a = cJSON_Parse(args && *args ? args : "{}");
                if (!cJSON_IsObject(a)) {
                    cJSON_Delete(a);
                    GW_FAIL("messages", "messages[%d].tool_calls[%d].function.arguments must be a JSON object in a "
                                        "string to be sent to Gemini",
                            mi, ti);
                }
                cJSON *part = cJSON_CreateObject();
                cJSON *fc = cJSON_AddObjectToObject(part, "functionCall");
                cJSON_AddStringToObject(fc, "name", name);
                cJSON_AddItemToObject(fc, "args", a);
                cJSON_AddItemToArray(parts, part);
                ti++;
            }
        } else if (!strcmp(role, "tool")) {
            const char *name = gw_call_name(messages, mi, gw_str(m, "tool_call_id"));
            if (!name)
                GW_FAIL("messages", "messages[%d]: tool_call_id '%s' answers no earlier assistant tool call, so its "
                                    "function name (which Gemini needs) is unknown",
                        mi, gw_str(m, "tool_call_id") ? gw_str(m, "tool_call_id") : "");
            struct buf t;
            buf_init(&t, 64u << 20);
            if (cJSON_IsString(content)) {
                buf_appends(&t, content->valuestring);
            } else {
                const cJSON *p;
                cJSON_ArrayForEach(p, content)
                {
                    if (!gw_str(p, "text")) {
                        buf_release(&t);
                        GW_FAIL("messages", "messages[%d]: a tool result can be sent to Gemini as text only", mi);
                    }
                    buf_appends(&t, gw_str(p, "text"));
                }
            }
            cJSON *resp = cJSON_ParseWithLength(t.p ? t.p : "", t.len);
            if (!cJSON_IsObject(resp)) {
                cJSON_Delete(resp);
                resp = cJSON_CreateObject();
                cJSON_AddStringToObject(resp, "content", t.p ? t.p : "");
            }
            buf_release(&t);
            if (!tool_turn)
                tool_turn = gw_turn(contents, "user");
            cJSON *part = cJSON_CreateObject();
            cJSON *fr = cJSON_AddObjectToObject(part, "functionResponse");
            cJSON_AddStringToObject(fr, "name", name);
            cJSON_AddItemToObject(fr, "response", resp);
            cJSON_AddItemToArray(tool_turn, part);
        } else {
            GW_FAIL("messages", "messages[%d]: role '%s' cannot be translated to Gemini", mi, role);
        }
        mi++;
    }
    if (cJSON_GetArraySize(contents) == 0)
        GW_FAIL("messages", "'messages' has no user or assistant message: Gemini needs at least one");

    /* generationConfig */
    cJSON *gc = cJSON_CreateObject();
    cJSON_AddItemToObject(g, "generationConfig", gc);
    static const struct {
        const char *from, *to;
    } nums[] = {{"temperature", "temperature"}, {"top_p", "topP"}, {"top_k", "topK"}, {"seed", "seed"},
                {"presence_penalty", "presencePenalty"}, {"frequency_penalty", "frequencyPenalty"}};
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        v = cJSON_GetObjectItemCaseSensitive(oai, nums[i].from);
        if (v && !cJSON_IsNull(v) && !cJSON_IsNumber(v))
            GW_FAIL(nums[i].from, "'%s' must be a number", nums[i].from);
        if (cJSON_IsNumber(v))
            cJSON_AddNumberToObject(gc, nums[i].to, v->valuedouble);
    }
    v = cJSON_GetObjectItemCaseSensitive(oai, "max_completion_tokens");
    if (!cJSON_IsNumber(v))
        v = cJSON_GetObjectItemCaseSensitive(oai, "max_tokens");
    if (cJSON_IsNumber(v))
        cJSON_AddNumberToObject(gc, "maxOutputTokens", v->valuedouble);
    v = cJSON_GetObjectItemCaseSensitive(oai, "stop");
    if (cJSON_IsString(v)) {
        cJSON_AddItemToArray(cJSON_AddArrayToObject(gc, "stopSequences"), cJSON_CreateString(v->valuestring));
    } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v)) {
        cJSON_AddItemToObject(gc, "stopSequences", cJSON_Duplicate(v, 1));
    } else if (v && !cJSON_IsNull(v) && !cJSON_IsArray(v)) {
        GW_FAIL("stop", "'stop' must be a string or an array of strings");
    }
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(oai, "response_format");
    if (rf && !cJSON_IsNull(rf)) {
        const char *t = gw_str(rf, "type");
        if (t && !strcmp(t, "json_schema")) {
            const cJSON *schema = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rf, "json_schema"),
                                                                   "schema");
            if (!cJSON_IsObject(schema))
                GW_FAIL("response_format", "'response_format.json_schema.schema' must be an object");
            cJSON_AddStringToObject(gc, "responseMimeType", "application/json");
            cJSON_AddItemToObject(gc, "responseJsonSchema", cJSON_Duplicate(schema, 1));
        } else if (t && !strcmp(t, "json_object")) {
            cJSON_AddStringToObject(gc, "responseMimeType", "application/json");
        } else if (!t || strcmp(t, "text") != 0) {
            GW_FAIL("response_format", "'response_format' of type '%s' cannot be translated to Gemini", t ? t : "(none)");
        }
    }
    if (cJSON_GetArraySize(gc) == 0)
        cJSON_DeleteItemFromObjectCaseSensitive(g, "generationConfig");

    /* tools and tool_choice */
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(oai, "tools");
    if (tools && !cJSON_IsNull(tools)) {
        if (!cJSON_IsArray(tools))
            GW_FAIL("tools", "'tools' must be an array");
        cJSON *decls = cJSON_CreateArray();
        cJSON *t0 = cJSON_CreateObject();
        cJSON_AddItemToObject(t0, "functionDeclarations", decls);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(g, "tools"), t0);
        int ti = 0;
        const cJSON *t;
        cJSON_ArrayForEach(t, tools)
        {
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
            if (!gw_str(t, "type") || strcmp(gw_str(t, "type"), "function") || !gw_str(fn, "name"))
                GW_FAIL("tools", "tools[%d]: only tools of type 'function' with a name can be translated to Gemini", ti);
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "name", gw_str(fn, "name"));
            if (gw_str(fn, "description"))
                cJSON_AddStringToObject(d, "description", gw_str(fn, "description"));
            const cJSON *ps = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
            if (cJSON_IsObject(ps))
                cJSON_AddItemToObject(d, "parametersJsonSchema", cJSON_Duplicate(ps, 1));
            cJSON_AddItemToArray(decls, d);
            ti++;
        }
    }
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(oai, "tool_choice");
    if (tc && !cJSON_IsNull(tc)) {
        const char *mode = NULL, *only = NULL;
        if (cJSON_IsString(tc))
            mode = !strcmp(tc->valuestring, "auto") ? "AUTO" : !strcmp(tc->valuestring, "none") ? "NONE"
                 : !strcmp(tc->valuestring, "required")                                        ? "ANY"
                                                                                               : NULL;
        else if (gw_str(tc, "type") && !strcmp(gw_str(tc, "type"), "function") &&
                 (only = gw_str(cJSON_GetObjectItemCaseSensitive(tc, "function"), "name")))
            mode = "ANY";
        if (!mode)
            GW_FAIL("tool_choice", "'tool_choice' must be auto, none, required or {\"type\": \"function\", "
                                   "\"function\": {\"name\": ...}} to be translated to Gemini");
        cJSON *fcc = cJSON_AddObjectToObject(cJSON_AddObjectToObject(g, "toolConfig"), "functionCallingConfig");
        cJSON_AddStringToObject(fcc, "mode", mode);
        if (only)
            cJSON_AddItemToArray(cJSON_AddArrayToObject(fcc, "allowedFunctionNames"), cJSON_CreateString(only));
    }
    return g;
fail:
    if (!err[0])
        snprintf(err, errlen, "out of memory");
    cJSON_Delete(g);
    return NULL;
}

static double gw_num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

cJSON *gemini_wire_response(const cJSON *gr, const char *model, const char *id_seed)
{
    const cJSON *cand = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(gr, "candidates"), 0);
    struct buf text, thought;
    buf_init(&text, 256u << 20);
    buf_init(&thought, 256u << 20);
    cJSON *calls = cJSON_CreateArray();
    const cJSON *p;
    int ci = 0;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cand, "content"), "parts"))
    {
        const cJSON *fc = cJSON_GetObjectItemCaseSensitive(p, "functionCall");
        const char *t = gw_str(p, "text");
        if (cJSON_IsObject(fc)) {
            cJSON *call = cJSON_CreateObject();
            char id[160];
            snprintf(id, sizeof(id), "call_%s_%d", id_seed, ci++);
            cJSON_AddStringToObject(call, "id", id);
            cJSON_AddStringToObject(call, "type", "function");
            cJSON *fn = cJSON_AddObjectToObject(call, "function");
            cJSON_AddStringToObject(fn, "name", gw_str(fc, "name") ? gw_str(fc, "name") : "");
            const cJSON *args = cJSON_GetObjectItemCaseSensitive(fc, "args");
            char *a = args ? cJSON_PrintUnformatted(args) : NULL;
            cJSON_AddStringToObject(fn, "arguments", a ? a : "{}");
            free(a);
            cJSON_AddItemToArray(calls, call);
        } else if (t) {
            buf_appends(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "thought")) ? &thought : &text, t);
        }
    }
    const char *fr = gw_str(cand, "finishReason");
    const char *finish = !fr || !strcmp(fr, "STOP")  ? "stop"
                       : !strcmp(fr, "MAX_TOKENS") ? "length"
                       : (!strcmp(fr, "SAFETY") || !strcmp(fr, "RECITATION") || !strcmp(fr, "BLOCKLIST") ||
                          !strcmp(fr, "PROHIBITED_CONTENT") || !strcmp(fr, "SPII") || !strcmp(fr, "IMAGE_SAFETY"))
                           ? "content_filter"
                           : "stop";
    if (!cand && cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(gr, "promptFeedback"), "blockReason"))
        finish = "content_filter";
    if (cJSON_GetArraySize(calls) && !strcmp(finish, "stop"))
        finish = "tool_calls";

    cJSON *o = cJSON_CreateObject();
    char id[200];
    snprintf(id, sizeof(id), "chatcmpl-%s", id_seed);
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "chat.completion");
    cJSON_AddNumberToObject(o, "created", (double)time(NULL));
    cJSON_AddStringToObject(o, "model", model ? model : "");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", 0);
    cJSON *msg = cJSON_AddObjectToObject(ch, "message");
    cJSON_AddStringToObject(msg, "role", "assistant");
    if (text.len || !cJSON_GetArraySize(calls))
        cJSON_AddStringToObject(msg, "content", text.p ? text.p : "");
    else
        cJSON_AddNullToObject(msg, "content");
    if (thought.len)
        cJSON_AddStringToObject(msg, "reasoning_content", thought.p);
    if (cJSON_GetArraySize(calls))
        cJSON_AddItemToObject(msg, "tool_calls", calls);
    else
        cJSON_Delete(calls);
    cJSON_AddNullToObject(ch, "logprobs");
    cJSON_AddStringToObject(ch, "finish_reason", finish);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), ch);
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(gr, "usageMetadata");
    double pt = gw_num(u, "promptTokenCount"), ct = gw_num(u, "candidatesTokenCount");
    double th = gw_num(u, "thoughtsTokenCount"), cc = gw_num(u, "cachedContentTokenCount");
    cJSON *uu = cJSON_AddObjectToObject(o, "usage");
    /* OpenAI counts reasoning within completion_tokens; Gemini counts thoughts apart */
    cJSON_AddNumberToObject(uu, "prompt_tokens", pt);
    cJSON_AddNumberToObject(uu, "completion_tokens", ct + th);
    cJSON_AddNumberToObject(uu, "total_tokens", pt + ct + th);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(uu, "prompt_tokens_details"), "cached_tokens", cc);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(uu, "completion_tokens_details"), "reasoning_tokens", th);
    buf_release(&text);
    buf_release(&thought);
    return o;
}

/* google.rpc.Code numbers and names -> HTTP */
static long gw_http_of(const cJSON *st)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(st, "code");
    const char *s = gw_str(st, "status");
    static const struct {
        int grpc;
        const char *name;
        long http;
    } map[] = {{1, "CANCELLED", 499},      {2, "UNKNOWN", 500},          {3, "INVALID_ARGUMENT", 400},
               {4, "DEADLINE_EXCEEDED", 504}, {5, "NOT_FOUND", 404},   {6, "ALREADY_EXISTS", 409},
               {7, "PERMISSION_DENIED", 403}, {8, "RESOURCE_EXHAUSTED", 429}, {9, "FAILED_PRECONDITION", 400},
               {10, "ABORTED", 409},       {11, "OUT_OF_RANGE", 400},    {12, "UNIMPLEMENTED", 501},
               {13, "INTERNAL", 500},      {14, "UNAVAILABLE", 503},     {15, "DATA_LOSS", 500},
               {16, "UNAUTHENTICATED", 401}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (s && !strcmp(s, map[i].name))
            return map[i].http;
    if (cJSON_IsNumber(c) && c->valuedouble >= 100)
        return (long)c->valuedouble; /* the REST API's HTTP-style code */
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (cJSON_IsNumber(c) && (int)c->valuedouble == map[i].grpc)
            return map[i].http;
    return 500;
}

cJSON *gemini_wire_error(const cJSON *st, long *http_code)
{
    *http_code = gw_http_of(st);
    const char *msg = gw_str(st, "message");
    cJSON *body = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(body, "error");
    cJSON_AddStringToObject(e, "message", msg ? msg : "the Gemini batch API returned an error for this request");
    cJSON_AddStringToObject(e, "type", *http_code == 400 ? "invalid_request_error"
                                       : *http_code == 429 ? "rate_limit_error"
                                       : *http_code >= 500 ? "server_error"
                                                           : "api_error");
    cJSON_AddNullToObject(e, "param");
    if (gw_str(st, "status"))
        cJSON_AddStringToObject(e, "code", gw_str(st, "status"));
    else
        cJSON_AddNullToObject(e, "code");
    return body;
}

enum gemini_wire_state gemini_wire_state_of(const char *s)
{
    if (!s)
        return GEMINI_STATE_UNKNOWN;
    if (!strncmp(s, "BATCH_STATE_", 12))
        s += 12;
    else if (!strncmp(s, "JOB_STATE_", 10))
        s += 10;
    static const struct {
        const char *n;
        enum gemini_wire_state st;
    } map[] = {{"PENDING", GEMINI_STATE_PENDING},     {"QUEUED", GEMINI_STATE_PENDING},
               {"RUNNING", GEMINI_STATE_RUNNING},     {"SUCCEEDED", GEMINI_STATE_SUCCEEDED},
               {"FAILED", GEMINI_STATE_FAILED},       {"CANCELLED", GEMINI_STATE_CANCELLED},
               {"CANCELLING", GEMINI_STATE_RUNNING},  {"EXPIRED", GEMINI_STATE_EXPIRED},
               {"PARTIALLY_SUCCEEDED", GEMINI_STATE_SUCCEEDED}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (!strcmp(s, map[i].n))
            return map[i].st;
    return GEMINI_STATE_UNKNOWN;
}

bool gemini_wire_state_ended(enum gemini_wire_state st)
{
    return st == GEMINI_STATE_SUCCEEDED || st == GEMINI_STATE_FAILED || st == GEMINI_STATE_CANCELLED ||
           st == GEMINI_STATE_EXPIRED;
}
