/*
 * responses.c — see responses.h: a Responses body translated into chat completions', the
 * response object, its stream of typed events, and its batch lines.
 */
#include "responses.h"

#include "dialect.h"
#include "stream.h"

#include "../util/buf.h"
#include "../util/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* OpenAI's bounds (max_output_tokens has a floor of 16 there; metadata 16 pairs) */
#define RS_MIN_OUTPUT_TOKENS 16
#define RS_MAX_METADATA 16

/* ---- the request ------------------------------------------------------------------------- */

static const char *const rs_fields[] = {
    "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools", "tool_choice", "text",
    "reasoning", "metadata", "store", "previous_response_id", "truncation", "user", "safety_identifier",
    "parallel_tool_calls", "stream", "stream_options", "background", "include", "top_logprobs", "prompt_cache_key",
    "service_tier", "max_tool_calls", "conversation", "prompt", NULL};

/* what `include` may name: the ones this server acts on or that change nothing here */
static const char *const rs_includes[] = {"message.output_text.logprobs", "reasoning.encrypted_content", NULL};

static bool rs_in(const char *const *list, const char *s)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

static const cJSON *rs_get(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNull(v) ? NULL : v;
}

/* a new item id: prefix + 24 random url-safe characters */
static void rs_item_id(cJSON *item, const char *prefix)
{
    if (cJSON_GetObjectItemCaseSensitive(item, "id"))
        return;
    char id[48];
    oai_make_id(id, sizeof(id), prefix);
    cJSON_AddStringToObject(item, "id", id);
}

/* one content part of a message item, normalized ({type, text}); input_text for what the
 * user, system and developer said, output_text (and refusal) for the assistant */
static int rs_part(const cJSON *p, int i, int j, bool assistant, cJSON *parts, struct oai_error *err)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
    if (!cJSON_IsObject(p) || !cJSON_IsString(type))
        return oai_error_set(err, NS_ERR_INVALID, "input",
                             "Invalid 'input[%d].content[%d]': expected an object with a 'type'.", i, j);
    const char *t = type->valuestring;
    if (strcmp(t, "input_image") == 0 || strcmp(t, "input_file") == 0 || strcmp(t, "input_audio") == 0)
        return oai_error_set(err, NS_ERR_UNSUPPORTED, "input",
                             "Invalid 'input[%d].content[%d]': '%s' content is not supported: nightshift serves "
                             "text models; send text parts ('input_text').",
                             i, j, t);
    bool ok = assistant ? strcmp(t, "output_text") == 0 || strcmp(t, "refusal") == 0 || strcmp(t, "input_text") == 0
                        : strcmp(t, "input_text") == 0;
    if (!ok)
        return oai_error_set(err, NS_ERR_INVALID, "input",
                             "Invalid value: '%.40s'. Supported values are: %s (input[%d].content[%d].type).", t,
                             assistant ? "'output_text' and 'refusal'" : "'input_text', 'input_image' and 'input_file'",
                             i, j);
    const char *key = strcmp(t, "refusal") == 0 ? "refusal" : "text";
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, key);
    if (!cJSON_IsString(text))
        return oai_error_set(err, NS_ERR_INVALID, "input", "Missing required parameter: 'input[%d].content[%d].%s'.",
                             i, j, key);
    cJSON *n = cJSON_CreateObject();
    cJSON_AddStringToObject(n, "type", assistant && strcmp(t, "input_text") == 0 ? "output_text" : t);
    cJSON_AddStringToObject(n, key, text->valuestring);
    if (assistant && strcmp(t, "refusal"))
        cJSON_AddArrayToObject(n, "annotations");
    cJSON_AddItemToArray(parts, n);
    return NS_OK;
}

/* one input item, checked and normalized into out (with an id) */
static int rs_item(const cJSON *it, int i, cJSON *out, struct oai_error *err)
{
    if (!cJSON_IsObject(it))
        return oai_error_set(err, NS_ERR_INVALID, "input", "Invalid type for 'input[%d]': expected an object.", i);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(it, "type");
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
    const char *t = cJSON_IsString(type) ? type->valuestring : role ? "message" : NULL;
    if (!t)
        return oai_error_set(err, NS_ERR_INVALID, "input", "Missing required parameter: 'input[%d].type'.", i);
    cJSON *n = cJSON_CreateObject();
    int rc = NS_OK;
    if (strcmp(t, "message") == 0) {
        static const char *const roles[] = {"user", "assistant", "system", "developer", NULL};
        if (!cJSON_IsString(role) || !rs_in(roles, role->valuestring)) {
            rc = oai_error_set(err, NS_ERR_INVALID, "input",
                               "Invalid value for 'input[%d].role': supported values are 'user', 'assistant', "
                               "'system' and 'developer'.",
                               i);
            goto out;
        }
        bool assistant = strcmp(role->valuestring, "assistant") == 0;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (cJSON_IsString(id))
            cJSON_AddStringToObject(n, "id", id->valuestring);
        cJSON_AddStringToObject(n, "type", "message");
        cJSON_AddStringToObject(n, "role", role->valuestring);
        cJSON *parts = cJSON_AddArrayToObject(n, "content");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (cJSON_IsString(content)) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "type", assistant ? "output_text" : "input_text");
            cJSON_AddStringToObject(p, "text", content->valuestring);
            if (assistant)
                cJSON_AddArrayToObject(p, "annotations");
            cJSON_AddItemToArray(parts, p);
        } else if (cJSON_IsArray(content)) {
            const cJSON *p;
            int j = 0;
            cJSON_ArrayForEach(p, content)
            {
                if ((rc = rs_part(p, i, j++, assistant, parts, err)))
                    goto out;
            }
        } else {
            rc = oai_error_set(err, NS_ERR_INVALID, "input",
                               content ? "Invalid type for 'input[%d].content': expected a string or an array."
                                       : "Missing required parameter: 'input[%d].content'.",
                               i);
            goto out;
        }
        if (assistant)
            cJSON_AddStringToObject(n, "status", "completed");
        rs_item_id(n, "msg_");
    } else if (strcmp(t, "function_call") == 0) {
        static const char *const need[] = {"call_id", "name", "arguments", NULL};
        for (int k = 0; need[k]; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, need[k]);
            if (!cJSON_IsString(v)) {
                rc = oai_error_set(err, NS_ERR_INVALID, "input", "%s parameter: 'input[%d].%s'%s",
                                   v ? "Invalid type for" : "Missing required", i, need[k],
                                   v ? ": expected a string." : ".");
                goto out;
            }
        }
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (cJSON_IsString(id))
            cJSON_AddStringToObject(n, "id", id->valuestring);
        cJSON_AddStringToObject(n, "type", "function_call");
        for (int k = 0; need[k]; k++)
            cJSON_AddStringToObject(n, need[k], cJSON_GetObjectItemCaseSensitive(it, need[k])->valuestring);
        cJSON_AddStringToObject(n, "status", "completed");
        rs_item_id(n, "fc_");
    } else if (strcmp(t, "function_call_output") == 0) {
        const cJSON *cid = cJSON_GetObjectItemCaseSensitive(it, "call_id");
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(it, "output");
        if (!cJSON_IsString(cid)) {
            rc = oai_error_set(err, NS_ERR_INVALID, "input", "Missing required parameter: 'input[%d].call_id'.", i);
            goto out;
        }
        /* the output as text: a string, or text parts joined */
        char *text = NULL;
        if (cJSON_IsString(o)) {
            text = strdup(o->valuestring);
        } else if (cJSON_IsArray(o)) {
            struct buf b;
            buf_init(&b, (size_t)1 << 30);
            const cJSON *p;
            cJSON_ArrayForEach(p, o)
            {
                const cJSON *pt = cJSON_GetObjectItemCaseSensitive(p, "text");
                if (!cJSON_IsString(pt)) {
                    buf_release(&b);
                    rc = oai_error_set(err, NS_ERR_UNSUPPORTED, "input",
                                       "Invalid 'input[%d].output': only text parts ('input_text') are supported.", i);
                    goto out;
                }
                buf_appends(&b, pt->valuestring);
            }
            text = buf_detach(&b);
        } else {
            rc = oai_error_set(err, NS_ERR_INVALID, "input", "Missing required parameter: 'input[%d].output'.", i);
            goto out;
        }
        if (!text) {
            rc = oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
            goto out;
        }
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (cJSON_IsString(id))
            cJSON_AddStringToObject(n, "id", id->valuestring);
        cJSON_AddStringToObject(n, "type", "function_call_output");
        cJSON_AddStringToObject(n, "call_id", cid->valuestring);
        cJSON_AddStringToObject(n, "output", text);
        cJSON_AddStringToObject(n, "status", "completed");
        free(text);
        rs_item_id(n, "fco_");
    } else if (strcmp(t, "reasoning") == 0) {
        /* kept as the client sent it; the template shows no earlier turn's reasoning */
        cJSON_Delete(n);
        n = cJSON_Duplicate(it, 1);
        rs_item_id(n, "rs_");
    } else if (strcmp(t, "item_reference") == 0) {
        rc = oai_error_set(err, NS_ERR_UNSUPPORTED, "input",
                           "Invalid 'input[%d]': item references are not supported; send the item itself, or "
                           "continue a stored response with 'previous_response_id'.",
                           i);
        goto out;
    } else {
        rc = oai_error_set(err, NS_ERR_UNSUPPORTED, "input",
                           "Invalid 'input[%d].type': '%.40s' items are not supported. Supported values are: "
                           "'message', 'function_call', 'function_call_output' and 'reasoning'.",
                           i, t);
        goto out;
    }
out:
    if (rc)
        cJSON_Delete(n);
    else
        cJSON_AddItemToArray(out, n);
    return rc;
}

/* the input, as items (a string is one user message) */
static int rs_input(const cJSON *input, cJSON *items, struct oai_error *err)
{
    if (!input)
        return oai_error_set(err, NS_ERR_INVALID, "input", "Missing required parameter: 'input'.");
    if (cJSON_IsString(input)) {
        cJSON *n = cJSON_CreateObject();
        cJSON_AddStringToObject(n, "type", "message");
        cJSON_AddStringToObject(n, "role", "user");
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "type", "input_text");
        cJSON_AddStringToObject(p, "text", input->valuestring);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(n, "content"), p);
        rs_item_id(n, "msg_");
        cJSON_AddItemToArray(items, n);
        return NS_OK;
    }
    if (!cJSON_IsArray(input))
        return oai_error_set(err, NS_ERR_INVALID, "input", "Invalid type for 'input': expected a string or an array.");
    const cJSON *it;
    int i = 0, rc;
    cJSON_ArrayForEach(it, input)
    {
        if ((rc = rs_item(it, i++, items, err)))
            return rc;
    }
    return NS_OK;
}

/* a message item's text parts as chat content: one string, or text parts */
static cJSON *rs_chat_content(const cJSON *parts)
{
    if (cJSON_IsString(parts)) /* an item kept as a client wrote it */
        return cJSON_CreateString(parts->valuestring);
    if (cJSON_GetArraySize(parts) == 1) {
        const cJSON *p = parts->child;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!t)
            t = cJSON_GetObjectItemCaseSensitive(p, "refusal");
        return cJSON_CreateString(cJSON_IsString(t) ? t->valuestring : "");
    }
    cJSON *a = cJSON_CreateArray();
    const cJSON *p;
    cJSON_ArrayForEach(p, parts)
    {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!t)
            t = cJSON_GetObjectItemCaseSensitive(p, "refusal");
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "type", "text");
        cJSON_AddStringToObject(c, "text", cJSON_IsString(t) ? t->valuestring : "");
        cJSON_AddItemToArray(a, c);
    }
    return a;
}

/* items (normalized) as chat messages: a function call joins the assistant message just
 * before it (or opens one), its output is a tool message, reasoning is left out */
static void rs_chat_messages(const cJSON *items, cJSON *msgs)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *t = cJSON_GetObjectItemCaseSensitive(it, "type")->valuestring;
        cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
        if (strcmp(t, "message") == 0) {
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", cJSON_GetObjectItemCaseSensitive(it, "role")->valuestring);
            cJSON_AddItemToObject(m, "content", rs_chat_content(cJSON_GetObjectItemCaseSensitive(it, "content")));
            cJSON_AddItemToArray(msgs, m);
        } else if (strcmp(t, "function_call") == 0) {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(last, "role");
            cJSON *m = last;
            if (!cJSON_IsString(role) || strcmp(role->valuestring, "assistant")) {
                m = cJSON_CreateObject();
                cJSON_AddStringToObject(m, "role", "assistant");
                cJSON_AddItemToArray(msgs, m);
            }
            cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
            if (!calls)
                calls = cJSON_AddArrayToObject(m, "tool_calls");
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "id", cJSON_GetObjectItemCaseSensitive(it, "call_id")->valuestring);
            cJSON_AddStringToObject(c, "type", "function");
            cJSON *f = cJSON_AddObjectToObject(c, "function");
            cJSON_AddStringToObject(f, "name", cJSON_GetObjectItemCaseSensitive(it, "name")->valuestring);
            cJSON_AddStringToObject(f, "arguments", cJSON_GetObjectItemCaseSensitive(it, "arguments")->valuestring);
            cJSON_AddItemToArray(calls, c);
        } else if (strcmp(t, "function_call_output") == 0) {
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", "tool");
            cJSON_AddStringToObject(m, "tool_call_id", cJSON_GetObjectItemCaseSensitive(it, "call_id")->valuestring);
            cJSON_AddStringToObject(m, "content", cJSON_GetObjectItemCaseSensitive(it, "output")->valuestring);
            cJSON_AddItemToArray(msgs, m);
        }
    }
}

/* tools: function tools, {type, name, description, parameters, strict} -> chat's shape */
static int rs_tools(const cJSON *body, cJSON *chat, struct oai_error *err)
{
    const cJSON *tools = rs_get(body, "tools");
    if (tools) {
        if (!cJSON_IsArray(tools))
            return oai_error_set(err, NS_ERR_INVALID, "tools", "Invalid type for 'tools': expected an array.");
        cJSON *out = cJSON_AddArrayToObject(chat, "tools");
        const cJSON *t;
        int i = 0;
        cJSON_ArrayForEach(t, tools)
        {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
            if (!cJSON_IsString(type))
                return oai_error_set(err, NS_ERR_INVALID, "tools", "Missing required parameter: 'tools[%d].type'.", i);
            if (strcmp(type->valuestring, "function"))
                return oai_error_set(err, NS_ERR_UNSUPPORTED, "tools",
                                     "Invalid 'tools[%d].type': '%.40s' tools are not supported; nightshift runs "
                                     "function tools (type 'function'), which your code executes.",
                                     i, type->valuestring);
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
            if (!cJSON_IsString(name))
                return oai_error_set(err, NS_ERR_INVALID, "tools", "Missing required parameter: 'tools[%d].name'.", i);
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "type", "function");
            cJSON *f = cJSON_AddObjectToObject(c, "function");
            static const char *const keys[] = {"name", "description", "parameters", "strict", NULL};
            for (int k = 0; keys[k]; k++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, keys[k]);
                if (v && !cJSON_IsNull(v))
                    cJSON_AddItemToObject(f, keys[k], cJSON_Duplicate(v, 1));
            }
            cJSON_AddItemToArray(out, c);
            i++;
        }
    }
    const cJSON *tc = rs_get(body, "tool_choice");
    if (!tc)
        return NS_OK;
    if (cJSON_IsString(tc)) {
        cJSON_AddStringToObject(chat, "tool_choice", tc->valuestring); /* oai.c checks the word */
        return NS_OK;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(tc, "type");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(tc, "name");
    if (!cJSON_IsObject(tc) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") || !cJSON_IsString(name))
        return oai_error_set(err, NS_ERR_INVALID, "tool_choice",
                             "Invalid 'tool_choice': expected 'none', 'auto', 'required' or {\"type\": \"function\", "
                             "\"name\": ...}.");
    cJSON *c = cJSON_AddObjectToObject(chat, "tool_choice");
    cJSON_AddStringToObject(c, "type", "function");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(c, "function"), "name", name->valuestring);
    return NS_OK;
}

/* text.format -> response_format (json_schema's name, schema, strict, description move in) */
static int rs_text(const cJSON *body, cJSON *chat, struct oai_error *err)
{
    const cJSON *text = rs_get(body, "text");
    if (!text)
        return NS_OK;
    if (!cJSON_IsObject(text))
        return oai_error_set(err, NS_ERR_INVALID, "text", "Invalid type for 'text': expected an object.");
    const cJSON *f;
    cJSON_ArrayForEach(f, text)
    {
        if (strcmp(f->string, "format") && strcmp(f->string, "verbosity"))
            return oai_error_set(err, NS_ERR_INVALID, "text", "Unknown parameter: 'text.%.40s'.", f->string);
    }
    const cJSON *fmt = rs_get(text, "format");
    if (!fmt)
        return NS_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(fmt, "type");
    if (!cJSON_IsObject(fmt) || !cJSON_IsString(type))
        return oai_error_set(err, NS_ERR_INVALID, "text.format", "Missing required parameter: 'text.format.type'.");
    cJSON *rf = cJSON_CreateObject();
    cJSON_AddStringToObject(rf, "type", type->valuestring); /* oai.c checks the word */
    if (strcmp(type->valuestring, "json_schema") == 0) {
        cJSON *js = cJSON_AddObjectToObject(rf, "json_schema");
        const cJSON *v;
        cJSON_ArrayForEach(v, fmt)
        {
            if (strcmp(v->string, "type"))
                cJSON_AddItemToObject(js, v->string, cJSON_Duplicate(v, 1));
        }
    }
    cJSON_AddItemToObject(chat, "response_format", rf);
    return NS_OK;
}

/* the fields of the body that chat completions takes as they are, or under another name */
static int rs_options(const cJSON *body, cJSON *chat, struct oai_error *err)
{
    static const struct {
        const char *from, *to;
    } same[] = {{"temperature", "temperature"}, {"top_p", "top_p"}, {"parallel_tool_calls", "parallel_tool_calls"},
                {"service_tier", "service_tier"}, {"top_logprobs", "top_logprobs"}, {"user", "user"},
                {"safety_identifier", "safety_identifier"}, {"prompt_cache_key", "prompt_cache_key"}};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        const cJSON *v = rs_get(body, same[i].from);
        if (v)
            cJSON_AddItemToObject(chat, same[i].to, cJSON_Duplicate(v, 1));
    }
    const cJSON *v = rs_get(body, "max_output_tokens");
    if (v) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
            return oai_error_set(err, NS_ERR_INVALID, "max_output_tokens",
                                 "Invalid type for 'max_output_tokens': expected an integer.");
        if (v->valuedouble < RS_MIN_OUTPUT_TOKENS)
            return oai_error_set(err, NS_ERR_INVALID, "max_output_tokens",
                                 "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= %d, "
                                 "but got %.0f instead.",
                                 RS_MIN_OUTPUT_TOKENS, v->valuedouble);
        cJSON_AddItemToObject(chat, "max_completion_tokens", cJSON_Duplicate(v, 0));
    }
    const cJSON *tl = rs_get(body, "top_logprobs");
    const cJSON *inc = rs_get(body, "include");
    bool lp = tl && cJSON_IsNumber(tl) && tl->valuedouble > 0;
    if (inc) {
        if (!cJSON_IsArray(inc))
            return oai_error_set(err, NS_ERR_INVALID, "include", "Invalid type for 'include': expected an array.");
        const cJSON *s;
        cJSON_ArrayForEach(s, inc)
        {
            if (!cJSON_IsString(s) || !rs_in(rs_includes, s->valuestring))
                return oai_error_set(err, NS_ERR_INVALID, "include",
                                     "Invalid value for 'include': '%.60s' is not supported here. Supported values "
                                     "are: 'message.output_text.logprobs' and 'reasoning.encrypted_content'.",
                                     cJSON_IsString(s) ? s->valuestring : "(not a string)");
            lp |= strcmp(s->valuestring, "message.output_text.logprobs") == 0;
        }
    }
    if (lp)
        cJSON_AddBoolToObject(chat, "logprobs", true);
    const cJSON *rsn = rs_get(body, "reasoning");
    if (rsn) {
        if (!cJSON_IsObject(rsn))
            return oai_error_set(err, NS_ERR_INVALID, "reasoning", "Invalid type for 'reasoning': expected an object.");
        const cJSON *f;
        cJSON_ArrayForEach(f, rsn)
        {
            if (strcmp(f->string, "effort") && strcmp(f->string, "summary") && strcmp(f->string, "generate_summary"))
                return oai_error_set(err, NS_ERR_INVALID, "reasoning", "Unknown parameter: 'reasoning.%.40s'.",
                                     f->string);
        }
        const cJSON *effort = rs_get(rsn, "effort");
        static const char *const efforts[] = {"none", "minimal", "low", "medium", "high", "xhigh", NULL};
        if (effort && (!cJSON_IsString(effort) || !rs_in(efforts, effort->valuestring)))
            return oai_error_set(err, NS_ERR_INVALID, "reasoning.effort",
                                 "Invalid value for 'reasoning.effort': supported values are 'none', 'minimal', "
                                 "'low', 'medium', 'high' and 'xhigh'.");
        if (effort) {
            cJSON_AddStringToObject(chat, "reasoning_effort", effort->valuestring);
            /* no effort at all: templates that can think are told not to */
            if (strcmp(effort->valuestring, "none") == 0)
                cJSON_AddBoolToObject(cJSON_AddObjectToObject(chat, "chat_template_kwargs"), "enable_thinking", false);
        }
    }
    const cJSON *md = rs_get(body, "metadata");
    if (md) {
        if (!cJSON_IsObject(md))
            return oai_error_set(err, NS_ERR_INVALID, "metadata", "Invalid type for 'metadata': expected an object.");
        int n = 0;
        const cJSON *f;
        cJSON_ArrayForEach(f, md)
        {
            if (!cJSON_IsString(f) || strlen(f->string) > 64 || strlen(f->valuestring) > 512)
                return oai_error_set(err, NS_ERR_INVALID, "metadata",
                                     "Invalid 'metadata': values must be strings of at most 512 characters, keys of at "
                                     "most 64.");
            n++;
        }
        if (n > RS_MAX_METADATA)
            return oai_error_set(err, NS_ERR_INVALID, "metadata",
                                 "Invalid 'metadata': at most %d key-value pairs, but got %d.", RS_MAX_METADATA, n);
    }
    static const char *const bools[] = {"store", "background", "stream", NULL};
    for (int i = 0; bools[i]; i++) {
        const cJSON *b = rs_get(body, bools[i]);
        if (b && !cJSON_IsBool(b))
            return oai_error_set(err, NS_ERR_INVALID, bools[i], "Invalid type for '%s': expected a boolean.", bools[i]);
    }
    const cJSON *tr = rs_get(body, "truncation");
    if (tr && (!cJSON_IsString(tr) || (strcmp(tr->valuestring, "auto") && strcmp(tr->valuestring, "disabled"))))
        return oai_error_set(err, NS_ERR_INVALID, "truncation",
                             "Invalid value for 'truncation': supported values are 'auto' and 'disabled'.");
    const cJSON *mtc = rs_get(body, "max_tool_calls");
    if (mtc && (!cJSON_IsNumber(mtc) || mtc->valuedouble < 1))
        return oai_error_set(err, NS_ERR_INVALID, "max_tool_calls",
                             "Invalid 'max_tool_calls': expected an integer >= 1.");
    const cJSON *ins = rs_get(body, "instructions");
    if (ins && !cJSON_IsString(ins))
        return oai_error_set(err, NS_ERR_INVALID, "instructions", "Invalid type for 'instructions': expected a string.");
    const cJSON *prev = rs_get(body, "previous_response_id");
    if (prev && !cJSON_IsString(prev))
        return oai_error_set(err, NS_ERR_INVALID, "previous_response_id",
                             "Invalid type for 'previous_response_id': expected a string.");
    const cJSON *so = rs_get(body, "stream_options");
    if (so && !cJSON_IsObject(so))
        return oai_error_set(err, NS_ERR_INVALID, "stream_options",
                             "Invalid type for 'stream_options': expected an object.");
    return NS_OK;
}

/* chat completions' names of a field, as Responses names it */
static void rs_rename_param(struct oai_error *err)
{
    static const struct {
        const char *chat, *resp;
    } names[] = {{"messages", "input"}, {"max_completion_tokens", "max_output_tokens"},
                 {"max_tokens", "max_output_tokens"}, {"response_format", "text.format"},
                 {"reasoning_effort", "reasoning.effort"}};
    for (size_t i = 0; err->param && i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(err->param, names[i].chat) == 0)
            err->param = names[i].resp;
}

int responses_request_from_json(cJSON *body, cJSON *history, bool forward, bool in_batch, struct oai_request *r,
                                struct oai_error *err)
{
    memset(r, 0, sizeof(*r));
    int rc = NS_OK;
    cJSON *chat = NULL, *extra = cJSON_CreateObject();
    cJSON *items = cJSON_CreateArray();
    if (!extra || !items) {
        rc = oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
        goto fail;
    }
    if (!cJSON_IsObject(body)) {
        rc = oai_error_set(err, NS_ERR_INVALID, NULL,
                           body ? "The request body must be a JSON object."
                                : "We could not parse the JSON body of your request. The body must be valid JSON.");
        goto fail;
    }
    const cJSON *f;
    cJSON_ArrayForEach(f, body)
    {
        if (!rs_in(rs_fields, f->string)) {
            rc = oai_error_set(err, NS_ERR_INVALID, NULL, "Unknown parameter: '%.64s'.", f->string);
            goto fail;
        }
    }
    if (rs_get(body, "conversation") || rs_get(body, "prompt")) {
        const char *which = rs_get(body, "conversation") ? "conversation" : "prompt";
        rc = oai_error_set(err, NS_ERR_UNSUPPORTED, which,
                           "'%s' is not supported: nightshift keeps no %s objects; send the input items, or "
                           "continue a stored response with 'previous_response_id'.",
                           which, which[0] == 'c' ? "Conversations" : "prompt");
        goto fail;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (!cJSON_IsString(model)) {
        rc = oai_error_set(err, NS_ERR_INVALID, "model",
                           model ? "Invalid type for 'model': expected a string." : "Missing required parameter: 'model'.");
        goto fail;
    }
    if ((rc = rs_input(cJSON_GetObjectItemCaseSensitive(body, "input"), items, err)))
        goto fail;
    chat = cJSON_CreateObject();
    cJSON_AddStringToObject(chat, "model", model->valuestring);
    if ((rc = rs_options(body, chat, err)) || (rc = rs_tools(body, chat, err)) || (rc = rs_text(body, chat, err)))
        goto fail;
    bool stream = cJSON_IsTrue(rs_get(body, "stream")), background = cJSON_IsTrue(rs_get(body, "background"));
    const cJSON *store = rs_get(body, "store");
    if (in_batch && (stream || background || rs_get(body, "previous_response_id"))) {
        const char *what = stream ? "stream" : background ? "background" : "previous_response_id";
        rc = oai_error_set(err, NS_ERR_INVALID, what, "'%s' is not allowed in a batch request.", what);
        goto fail;
    }
    if (background && store && cJSON_IsFalse(store)) {
        rc = oai_error_set(err, NS_ERR_INVALID, "background",
                           "Invalid 'background': a background response must be stored ('store' true).");
        goto fail;
    }
    if (background && stream) {
        rc = oai_error_set(err, NS_ERR_UNSUPPORTED, "stream",
                           "A background response cannot be streamed here: create it, then poll GET "
                           "/v1/responses/{id}.");
        goto fail;
    }
    cJSON *msgs = cJSON_AddArrayToObject(chat, "messages");
    const cJSON *ins = rs_get(body, "instructions");
    if (ins) {
        /* instructions lead; a continued conversation does not carry the earlier ones */
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", ins->valuestring);
        cJSON_AddItemToArray(msgs, m);
    }
    if (history)
        rs_chat_messages(history, msgs);
    rs_chat_messages(items, msgs);
    /* what Responses keeps beside the request: the body as sent (its input is the items) */
    cJSON_AddItemToObject(extra, "history", history ? history : cJSON_CreateArray());
    history = NULL;
    cJSON_AddItemToObject(extra, "input", items);
    items = NULL;
    cJSON_DeleteItemFromObjectCaseSensitive(body, "input");
    cJSON_AddItemToObject(extra, "body", body);
    body = NULL;
    rc = forward ? oai_request_forward_from_json(chat, true, r, err) : oai_request_from_json(chat, true, r, err);
    chat = NULL; /* taken over (and released on failure) */
    if (rc) {
        rs_rename_param(err);
        goto fail;
    }
    r->stream = stream;
    r->include_usage = true;
    r->extra_ = extra;
    return NS_OK;
fail:
    cJSON_Delete(chat);
    cJSON_Delete(extra);
    cJSON_Delete(items);
    cJSON_Delete(history);
    cJSON_Delete(body);
    memset(r, 0, sizeof(*r));
    return rc;
}

static const cJSON *rs_body(const struct oai_request *r)
{
    return cJSON_GetObjectItemCaseSensitive(r->extra_, "body");
}

bool responses_request_store(const struct oai_request *r)
{
    return !cJSON_IsFalse(rs_get(rs_body(r), "store"));
}

bool responses_request_background(const struct oai_request *r)
{
    return cJSON_IsTrue(rs_get(rs_body(r), "background"));
}

const char *responses_request_previous(const struct oai_request *r)
{
    const cJSON *p = rs_get(rs_body(r), "previous_response_id");
    return cJSON_IsString(p) ? p->valuestring : NULL;
}

/* drop a's first item and the non-message items after it */
static void rs_drop_head(cJSON *a)
{
    cJSON_DeleteItemFromArray(a, 0);
    while (a->child) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(a->child, "type");
        if (cJSON_IsString(t) && strcmp(t->valuestring, "message") == 0)
            break;
        cJSON_DeleteItemFromArray(a, 0);
    }
}

int responses_request_truncate(struct oai_request *r, bool forward, struct oai_error *err)
{
    const cJSON *tr = rs_get(rs_body(r), "truncation");
    const cJSON *history = cJSON_GetObjectItemCaseSensitive(r->extra_, "history");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(r->extra_, "input");
    if (!cJSON_IsString(tr) || strcmp(tr->valuestring, "auto") || !cJSON_IsArray(input))
        return NS_ERR_CONTEXT;
    /* what is left once the oldest item goes: it must still hold a message */
    bool from_history = cJSON_GetArraySize(history) > 0;
    cJSON *left = cJSON_Duplicate(from_history ? history : input, 1);
    rs_drop_head(left);
    bool ok = from_history || left->child;
    cJSON_Delete(left);
    if (!ok)
        return NS_ERR_CONTEXT;
    cJSON *body = cJSON_DetachItemFromObjectCaseSensitive(r->extra_, "body");
    cJSON *h = cJSON_DetachItemFromObjectCaseSensitive(r->extra_, "history");
    cJSON *in = cJSON_DetachItemFromObjectCaseSensitive(r->extra_, "input");
    rs_drop_head(from_history ? h : in);
    cJSON_AddItemToObject(body, "input", in);
    oai_request_release(r);
    return responses_request_from_json(body, h, forward, false, r, err);
}

/* ---- the response object ------------------------------------------------------------------ */

/* an output item's id from the response's: resp_X -> <prefix>X[_k] */
static void rs_out_id(char *out, size_t n, const char *prefix, const char *resp_id, int k)
{
    const char *base = strncmp(resp_id, "resp_", 5) == 0 ? resp_id + 5 : resp_id;
    if (k >= 0)
        snprintf(out, n, "%s%s_%d", prefix, base, k);
    else
        snprintf(out, n, "%s%s", prefix, base);
}

static cJSON *rs_strn(const char *s, size_t n)
{
    char *t = strndup(s ? s : "", s ? n : 0);
    cJSON *o = cJSON_CreateString(t ? t : "");
    free(t);
    return o;
}

/* did the request ask for a summary of the reasoning (reasoning.summary)? The model's
 * whole reasoning is then also its summary: nothing here writes a shorter one */
static bool rs_summary(const struct oai_request *r)
{
    const cJSON *v = rs_get(rs_get(rs_body(r), "reasoning"), "summary");
    return cJSON_IsString(v) && strcmp(v->valuestring, "none");
}

static cJSON *rs_reasoning_item(const char *id, const char *text, size_t len, bool done, bool summary)
{
    cJSON *it = cJSON_CreateObject();
    cJSON_AddStringToObject(it, "id", id);
    cJSON_AddStringToObject(it, "type", "reasoning");
    cJSON *sum = cJSON_AddArrayToObject(it, "summary");
    if (done && summary) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "type", "summary_text");
        cJSON_AddItemToObject(p, "text", rs_strn(text, len));
        cJSON_AddItemToArray(sum, p);
    }
    cJSON *content = cJSON_AddArrayToObject(it, "content");
    if (done) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "type", "reasoning_text");
        cJSON_AddItemToObject(p, "text", rs_strn(text, len));
        cJSON_AddItemToArray(content, p);
    }
    cJSON_AddStringToObject(it, "status", done ? "completed" : "in_progress");
    return it;
}

static cJSON *rs_text_part(const char *text, size_t len, cJSON *logprobs)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", "output_text");
    cJSON_AddItemToObject(p, "text", rs_strn(text, len));
    cJSON_AddArrayToObject(p, "annotations");
    cJSON_AddItemToObject(p, "logprobs", logprobs ? logprobs : cJSON_CreateArray());
    return p;
}

static cJSON *rs_message_item(const char *id, cJSON *part, const char *status)
{
    cJSON *it = cJSON_CreateObject();
    cJSON_AddStringToObject(it, "id", id);
    cJSON_AddStringToObject(it, "type", "message");
    cJSON_AddStringToObject(it, "status", status);
    cJSON_AddStringToObject(it, "role", "assistant");
    cJSON *content = cJSON_AddArrayToObject(it, "content");
    if (part)
        cJSON_AddItemToArray(content, part);
    return it;
}

static cJSON *rs_call_item(const char *id, const char *call_id, const char *name, const char *args, const char *status)
{
    cJSON *it = cJSON_CreateObject();
    cJSON_AddStringToObject(it, "id", id);
    cJSON_AddStringToObject(it, "type", "function_call");
    cJSON_AddStringToObject(it, "status", status);
    cJSON_AddStringToObject(it, "arguments", args ? args : "");
    cJSON_AddStringToObject(it, "call_id", call_id ? call_id : "");
    cJSON_AddStringToObject(it, "name", name ? name : "");
    return it;
}

/* the logprobs of a text part: chat's content entries ({token, logprob, bytes, top_logprobs}) */
static cJSON *rs_logprobs(const struct oai_request *r, const struct engine_result *res)
{
    if (!r->req.logprobs || !res->n_logprobs)
        return NULL;
    cJSON *lp = oai_logprobs_json(r, res->logprobs, res->n_logprobs, res->logprob_text, 0);
    cJSON *content = cJSON_DetachItemFromObjectCaseSensitive(lp, "content");
    cJSON_Delete(lp);
    return content;
}

/* the output items of a finished result: reasoning, the message, the calls */
static cJSON *rs_output(const struct oai_request *r, const struct engine_result *res, const char *id)
{
    cJSON *out = cJSON_CreateArray();
    char iid[96];
    if (res->reasoning && res->reasoning_len) {
        rs_out_id(iid, sizeof(iid), "rs_", id, -1);
        cJSON_AddItemToArray(out, rs_reasoning_item(iid, res->reasoning, res->reasoning_len, true, rs_summary(r)));
    }
    if (res->text_len || res->n_tool_calls == 0) {
        rs_out_id(iid, sizeof(iid), "msg_", id, -1);
        cJSON_AddItemToArray(out, rs_message_item(iid, rs_text_part(res->text, res->text_len, rs_logprobs(r, res)),
                                                  res->finish == ENGINE_FINISH_LENGTH ? "incomplete" : "completed"));
    }
    for (int k = 0; k < res->n_tool_calls; k++) {
        rs_out_id(iid, sizeof(iid), "fc_", id, k);
        const struct engine_tool_call *c = &res->tool_calls[k];
        cJSON_AddItemToArray(out, rs_call_item(iid, c->id, c->name, c->arguments, "completed"));
    }
    return out;
}

static void rs_echo(cJSON *o, const cJSON *body, const char *k, cJSON *dflt)
{
    const cJSON *v = rs_get(body, k);
    if (v) {
        cJSON_AddItemToObject(o, k, cJSON_Duplicate(v, 1));
        cJSON_Delete(dflt);
    } else {
        cJSON_AddItemToObject(o, k, dflt);
    }
}

cJSON *responses_object(const struct oai_request *r, const struct engine_result *res, const char *id,
                        const char *model, int64_t created, const char *status)
{
    const cJSON *body = rs_body(r);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    bool failed = res && res->status != NS_OK;
    bool incomplete = res && !failed && res->finish == ENGINE_FINISH_LENGTH;
    if (res)
        status = failed ? (res->status == NS_ERR_CANCELLED ? "cancelled" : "failed")
                        : incomplete ? "incomplete" : "completed";
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "response");
    cJSON_AddNumberToObject(o, "created_at", (double)created);
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddBoolToObject(o, "background", cJSON_IsTrue(rs_get(body, "background")));
    if (failed && res->status != NS_ERR_CANCELLED) {
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        const char *code = status_code(res->status);
        cJSON_AddStringToObject(e, "code", code ? code : "server_error");
        cJSON_AddStringToObject(e, "message", res->message);
    } else {
        cJSON_AddNullToObject(o, "error");
    }
    if (incomplete)
        cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "incomplete_details"), "reason", "max_output_tokens");
    else
        cJSON_AddNullToObject(o, "incomplete_details");
    rs_echo(o, body, "instructions", cJSON_CreateNull());
    rs_echo(o, body, "max_output_tokens", cJSON_CreateNull());
    rs_echo(o, body, "max_tool_calls", cJSON_CreateNull());
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddItemToObject(o, "output", res && !failed ? rs_output(r, res, id) : cJSON_CreateArray());
    rs_echo(o, body, "parallel_tool_calls", cJSON_CreateTrue());
    rs_echo(o, body, "previous_response_id", cJSON_CreateNull());
    rs_echo(o, body, "prompt_cache_key", cJSON_CreateNull());
    cJSON *reasoning = cJSON_AddObjectToObject(o, "reasoning");
    const cJSON *rsn = rs_get(body, "reasoning");
    rs_echo(reasoning, rsn, "effort", cJSON_CreateNull());
    rs_echo(reasoning, rsn, "summary", cJSON_CreateNull());
    rs_echo(o, body, "safety_identifier", cJSON_CreateNull());
    rs_echo(o, body, "service_tier", cJSON_CreateString("default"));
    cJSON_AddBoolToObject(o, "store", !cJSON_IsFalse(rs_get(body, "store")));
    rs_echo(o, body, "temperature", cJSON_CreateNumber(1));
    cJSON *text = cJSON_AddObjectToObject(o, "text");
    const cJSON *tx = rs_get(body, "text");
    cJSON *fmt = cJSON_CreateObject();
    cJSON_AddStringToObject(fmt, "type", "text");
    rs_echo(text, tx, "format", fmt);
    rs_echo(text, tx, "verbosity", cJSON_CreateString("medium"));
    rs_echo(o, body, "tool_choice", cJSON_CreateString("auto"));
    rs_echo(o, body, "tools", cJSON_CreateArray());
    rs_echo(o, body, "top_logprobs", cJSON_CreateNumber(0));
    rs_echo(o, body, "top_p", cJSON_CreateNumber(1));
    rs_echo(o, body, "truncation", cJSON_CreateString("disabled"));
    if (res && !failed) {
        cJSON *u = cJSON_AddObjectToObject(o, "usage");
        cJSON_AddNumberToObject(u, "input_tokens", res->prompt_tokens);
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "input_tokens_details"), "cached_tokens", res->cached_tokens);
        cJSON_AddNumberToObject(u, "output_tokens", res->completion_tokens);
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "output_tokens_details"), "reasoning_tokens",
                                res->reasoning_tokens);
        cJSON_AddNumberToObject(u, "total_tokens", res->prompt_tokens + res->completion_tokens);
    } else {
        cJSON_AddNullToObject(o, "usage");
    }
    rs_echo(o, body, "user", cJSON_CreateNull());
    rs_echo(o, body, "metadata", cJSON_CreateObject());
    return o;
}

/* ---- what the store keeps ------------------------------------------------------------------- */

char *responses_record(const struct oai_request *r, const char *batch_id)
{
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddItemToObject(rec, "history", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(r->extra_, "history"), 1));
    cJSON_AddItemToObject(rec, "input", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(r->extra_, "input"), 1));
    if (batch_id)
        cJSON_AddStringToObject(rec, "batch_id", batch_id);
    char *t = cJSON_PrintUnformatted(rec);
    cJSON_Delete(rec);
    return t;
}

cJSON *responses_record_input(const char *record)
{
    cJSON *rec = cJSON_Parse(record ? record : "");
    cJSON *in = cJSON_DetachItemFromObjectCaseSensitive(rec, "input");
    cJSON_Delete(rec);
    if (!cJSON_IsArray(in)) {
        cJSON_Delete(in);
        return NULL;
    }
    return in;
}

int responses_conversation(const char *record, const char *object, cJSON **items)
{
    *items = NULL;
    cJSON *rec = cJSON_Parse(record ? record : "");
    cJSON *obj = cJSON_Parse(object ? object : "");
    cJSON *hist = cJSON_DetachItemFromObjectCaseSensitive(rec, "history");
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(rec, "input");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(obj, "output");
    int rc = NS_ERR_INVALID;
    if (cJSON_IsArray(hist) && cJSON_IsArray(in) && cJSON_IsArray(out)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, in)
            cJSON_AddItemToArray(hist, cJSON_Duplicate(it, 1));
        cJSON_ArrayForEach(it, out)
        {
            /* an output item as the input item it becomes: the message's parts as they were,
             * the call as made; reasoning stays (the template drops it) */
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(it, "type");
            if (!cJSON_IsString(type))
                continue;
            cJSON *c = cJSON_Duplicate(it, 1);
            if (strcmp(type->valuestring, "message") == 0) {
                cJSON *p;
                cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(c, "content"))
                    cJSON_DeleteItemFromObjectCaseSensitive(p, "logprobs");
            }
            cJSON_AddItemToArray(hist, c);
        }
        *items = hist;
        hist = NULL;
        rc = NS_OK;
    }
    cJSON_Delete(hist);
    cJSON_Delete(rec);
    cJSON_Delete(obj);
    return rc;
}

/* ---- streaming (stream.h) ------------------------------------------------------------------
 * Events, each with its sequence_number: response.created and response.in_progress, then
 * per output item output_item.added, its parts' deltas and dones, output_item.done, and at
 * the end response.completed (or .incomplete / .failed). One item is open at a time
 * (stream.block: its output_index; block_kind: its kind); acc holds its text so far. */

enum { RS_ITEM_REASONING = 0, RS_ITEM_MESSAGE = 1, RS_ITEM_CALL = 2 };

static void rs_event(struct stream *s, struct buf *out, const char *type, cJSON *o)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNumberToObject(e, "sequence_number", s->seq++);
    cJSON *f = o ? o->child : NULL;
    while (f) {
        cJSON *next = f->next;
        cJSON_AddItemToObject(e, f->string, cJSON_DetachItemViaPointer(o, f));
        f = next;
    }
    cJSON_Delete(o);
    stream_sse(out, type, e);
}

/* {item_id, output_index[, content_index]} of the open item */
static cJSON *rs_where(const struct stream *s, bool content)
{
    char iid[96];
    cJSON *o = cJSON_CreateObject();
    if (s->block_kind == RS_ITEM_REASONING)
        rs_out_id(iid, sizeof(iid), "rs_", s->id, -1);
    else if (s->block_kind == RS_ITEM_MESSAGE)
        rs_out_id(iid, sizeof(iid), "msg_", s->id, -1);
    else
        rs_out_id(iid, sizeof(iid), "fc_", s->id, s->call_index);
    cJSON_AddStringToObject(o, "item_id", iid);
    cJSON_AddNumberToObject(o, "output_index", s->block);
    if (content)
        cJSON_AddNumberToObject(o, "content_index", 0);
    return o;
}

/* {item_id, output_index, summary_index} of the open reasoning item's one summary part */
static cJSON *rs_summary_where(const struct stream *s)
{
    cJSON *o = rs_where(s, false);
    cJSON_AddNumberToObject(o, "summary_index", 0);
    return o;
}

static cJSON *rs_summary_part(const char *text, size_t len)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", "summary_text");
    cJSON_AddItemToObject(p, "text", rs_strn(text, len));
    return p;
}

/* response.created and response.in_progress, once, before anything else */
static void rs_open(struct stream *s, struct buf *out)
{
    if (s->phase)
        return;
    s->phase = 1;
    static const char *const types[] = {"response.created", "response.in_progress"};
    for (int i = 0; i < 2; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "response", responses_object(s->r, NULL, s->id, s->model, s->created, "in_progress"));
        rs_event(s, out, types[i], o);
    }
}

static cJSON *rs_at(const struct stream *s, cJSON *item)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "output_index", s->block);
    cJSON_AddItemToObject(o, "item", item);
    return o;
}

/* the open item's closing events, its whole text from acc */
static void rs_item_close(struct stream *s, struct buf *out)
{
    if (s->block < 0)
        return;
    const char *text = s->acc.p ? s->acc.p : "";
    size_t len = s->acc.len;
    char iid[96];
    cJSON *o;
    switch (s->block_kind) {
    case RS_ITEM_REASONING:
        o = rs_where(s, true);
        cJSON_AddItemToObject(o, "text", rs_strn(text, len));
        rs_event(s, out, "response.reasoning_text.done", o);
        if (rs_summary(s->r)) {
            o = rs_summary_where(s);
            cJSON_AddItemToObject(o, "text", rs_strn(text, len));
            rs_event(s, out, "response.reasoning_summary_text.done", o);
            o = rs_summary_where(s);
            cJSON_AddItemToObject(o, "part", rs_summary_part(text, len));
            rs_event(s, out, "response.reasoning_summary_part.done", o);
        }
        rs_out_id(iid, sizeof(iid), "rs_", s->id, -1);
        rs_event(s, out, "response.output_item.done",
                 rs_at(s, rs_reasoning_item(iid, text, len, true, rs_summary(s->r))));
        break;
    case RS_ITEM_MESSAGE:
        o = rs_where(s, true);
        cJSON_AddItemToObject(o, "text", rs_strn(text, len));
        cJSON_AddArrayToObject(o, "logprobs");
        rs_event(s, out, "response.output_text.done", o);
        o = rs_where(s, true);
        cJSON_AddItemToObject(o, "part", rs_text_part(text, len, NULL));
        rs_event(s, out, "response.content_part.done", o);
        rs_out_id(iid, sizeof(iid), "msg_", s->id, -1);
        rs_event(s, out, "response.output_item.done",
                 rs_at(s, rs_message_item(iid, rs_text_part(text, len, NULL), "completed")));
        break;
    default:
        o = rs_where(s, false);
        cJSON_AddStringToObject(o, "name", s->call_name);
        cJSON_AddItemToObject(o, "arguments", rs_strn(text, len));
        rs_event(s, out, "response.function_call_arguments.done", o);
        rs_out_id(iid, sizeof(iid), "fc_", s->id, s->call_index);
        char *args = strndup(text, len);
        rs_event(s, out, "response.output_item.done",
                 rs_at(s, rs_call_item(iid, s->call_id, s->call_name, args, "completed")));
        free(args);
        break;
    }
    s->block = -1;
    buf_reset(&s->acc);
}

/* close the open item, open one of kind (d: the delta that starts a call) */
static void rs_item_open(struct stream *s, struct buf *out, int kind, const struct engine_delta *d)
{
    rs_item_close(s, out);
    s->block = s->n_blocks++;
    s->block_kind = kind;
    char iid[96];
    if (kind == RS_ITEM_REASONING) {
        rs_out_id(iid, sizeof(iid), "rs_", s->id, -1);
        rs_event(s, out, "response.output_item.added", rs_at(s, rs_reasoning_item(iid, NULL, 0, false, false)));
        if (rs_summary(s->r)) {
            cJSON *o = rs_summary_where(s);
            cJSON_AddItemToObject(o, "part", rs_summary_part("", 0));
            rs_event(s, out, "response.reasoning_summary_part.added", o);
        }
    } else if (kind == RS_ITEM_MESSAGE) {
        rs_out_id(iid, sizeof(iid), "msg_", s->id, -1);
        rs_event(s, out, "response.output_item.added", rs_at(s, rs_message_item(iid, NULL, "in_progress")));
        cJSON *o = rs_where(s, true);
        cJSON_AddItemToObject(o, "part", rs_text_part("", 0, NULL));
        rs_event(s, out, "response.content_part.added", o);
    } else {
        s->call_index = d->tool_index;
        snprintf(s->call_id, sizeof(s->call_id), "%s", d->tool_id ? d->tool_id : "");
        snprintf(s->call_name, sizeof(s->call_name), "%s", d->tool_name ? d->tool_name : "");
        rs_out_id(iid, sizeof(iid), "fc_", s->id, s->call_index);
        rs_event(s, out, "response.output_item.added",
                 rs_at(s, rs_call_item(iid, s->call_id, s->call_name, "", "in_progress")));
    }
}

/* a delta's piece as the open item's delta event */
static void rs_delta(struct stream *s, const char *type, const char *p, size_t n, bool content)
{
    buf_append(&s->acc, p, n);
    cJSON *o = rs_where(s, content);
    cJSON_AddItemToObject(o, "delta", rs_strn(p, n));
    if (s->block_kind == RS_ITEM_MESSAGE)
        cJSON_AddArrayToObject(o, "logprobs");
    rs_event(s, &s->pending, type, o);
}

/* the engine thread: choice 0's deltas (a response has one) as whole events */
static void rs_stream_delta(struct stream *s, const struct engine_delta *d)
{
    if (d->index != 0)
        return;
    rs_open(s, &s->pending);
    if (d->reasoning_len) {
        if (s->block < 0 || s->block_kind != RS_ITEM_REASONING)
            rs_item_open(s, &s->pending, RS_ITEM_REASONING, d);
        rs_delta(s, "response.reasoning_text.delta", d->reasoning, d->reasoning_len, true);
        if (rs_summary(s->r)) {
            cJSON *o = rs_summary_where(s);
            cJSON_AddItemToObject(o, "delta", rs_strn(d->reasoning, d->reasoning_len));
            rs_event(s, &s->pending, "response.reasoning_summary_text.delta", o);
        }
    }
    if (d->len) {
        if (s->block < 0 || s->block_kind != RS_ITEM_MESSAGE)
            rs_item_open(s, &s->pending, RS_ITEM_MESSAGE, d);
        rs_delta(s, "response.output_text.delta", d->text, d->len, true);
    }
    if (d->tool_index >= 0 && d->tool_name)
        rs_item_open(s, &s->pending, RS_ITEM_CALL, d);
    if (d->tool_index >= 0 && d->tool_args && d->tool_args[0] && s->block >= 0 && s->block_kind == RS_ITEM_CALL)
        rs_delta(s, "response.function_call_arguments.delta", d->tool_args, strlen(d->tool_args), false);
}

/* phases: 0 nothing sent, 1 the items' events as they come, 2 the end, 5 done */
static int rs_stream_next(struct stream *s, struct buf *out)
{
    if (s->phase == 0) {
        rs_open(s, out);
        return STREAM_MORE;
    }
    if (s->phase == 1) {
        int step = stream_pass_pending(s, out);
        if (step != STREAM_END)
            return step;
        s->phase = 2;
    }
    if (s->phase == 2) {
        const struct engine_result *res = s->res;
        bool ok = res->status == NS_OK;
        if (ok && s->n_blocks == 0) /* an empty answer is one empty message */
            rs_item_open(s, out, RS_ITEM_MESSAGE, NULL);
        rs_item_close(s, out);
        cJSON *o;
        if (!ok) {
            /* what went wrong, as an error event, then the failed response */
            o = cJSON_CreateObject();
            const char *code = status_code(res->status);
            cJSON_AddStringToObject(o, "code", code ? code : "server_error");
            cJSON_AddStringToObject(o, "message", res->message);
            if (res->param)
                cJSON_AddStringToObject(o, "param", res->param);
            else
                cJSON_AddNullToObject(o, "param");
            rs_event(s, out, "error", o);
        }
        o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "response", responses_object(s->r, res, s->id, s->model, s->created, NULL));
        rs_event(s, out,
                 !ok ? "response.failed" : res->finish == ENGINE_FINISH_LENGTH ? "response.incomplete" : "response.completed",
                 o);
        s->phase = 5;
        return STREAM_MORE;
    }
    return STREAM_END;
}

/* ---- the dialect (dialect.h) ---------------------------------------------------------------- */

static cJSON *rs_dialect_answer(const struct stream *s, const struct engine_result *res)
{
    return responses_object(s->r, res, s->id, s->model, s->created, NULL);
}

/* a batch line of /v1/responses: OpenAI's batch output line whose body is the response */
static cJSON *rs_dialect_batch_result(const char *custom_id, const struct oai_request *r,
                                      const struct engine_result *res, const char *model)
{
    if (res->status == NS_OK && r && r->extra_) {
        char id[48];
        oai_make_id(id, sizeof(id), "resp_");
        return oai_batch_line(custom_id, 200, responses_object(r, res, id, model, (int64_t)time(NULL), NULL));
    }
    return dialect_openai.batch_result(custom_id, NULL, res, model);
}

/* previous_response_id is resolved by the caller's history (the store is not proto's) */
static int rs_dialect_parse(const char *body, size_t len, const struct dialect_parse *p, struct oai_request *r,
                            struct oai_error *err)
{
    memset(r, 0, sizeof(*r));
    cJSON *root = cJSON_ParseWithLength(body, len);
    cJSON *history = NULL;
    const cJSON *prev = rs_get(root, "previous_response_id");
    if (cJSON_IsObject(root) && cJSON_IsString(prev)) {
        int rc = p->history ? p->history(p->ud, prev->valuestring, &history, err)
                            : oai_error_set(err, NS_ERR_INVALID, "previous_response_id",
                                            "'previous_response_id' is not supported here.");
        if (rc) {
            cJSON_Delete(root);
            return rc;
        }
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    bool fwd = p->forwards && cJSON_IsString(model) && p->forwards(p->ud, model->valuestring);
    return responses_request_from_json(root, history, fwd, false, r, err);
}

/* OpenAI's Batch API rules (its batches are /v1/batches ones, endpoint /v1/responses) */
const struct dialect dialect_responses = {
    .name = "responses",
    .error = oai_error_body,
    .auth_message = "Incorrect API key provided. Pass it as 'Authorization: Bearer KEY'.",
    .parse = rs_dialect_parse,
    .model_missing = dialect_model_missing,
    .id_prefix = {"resp_", "resp_"},
    .answer = rs_dialect_answer,
    .stream_type = "text/event-stream",
    .stream_delta = rs_stream_delta,
    .stream_next = rs_stream_next,
    .batch_result = rs_dialect_batch_result,
};
