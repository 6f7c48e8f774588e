/*
 * anthropic.c — see anthropic.h. Error messages follow Anthropic's wording
 * ("max_tokens: Field required", "temperature: Input should be less than or equal to 1").
 */
#include "anthropic.h"

#include "dialect.h"
#include "jsonschema.h"
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
        /* the conversation's structure goes to the template through the chat JSON
         * (ant_chat_json); the plain text here is what upstream batch APIs are sent */
        if (strcmp(type->valuestring, "tool_use") == 0 || strcmp(type->valuestring, "tool_result") == 0 ||
            strcmp(type->valuestring, "thinking") == 0 || strcmp(type->valuestring, "redacted_thinking") == 0) {
            k++;
            continue;
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
        if ((b.len && buf_append(&b, "\n", 1)) || buf_appends(&b, text->valuestring)) {
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

/* the text of a tool_result's content: a string, or its text blocks joined */
static char *ant_result_text(const cJSON *c)
{
    if (cJSON_IsString(c))
        return strdup(c->valuestring);
    struct buf b;
    buf_init(&b, ANT_TEXT_MAX);
    const cJSON *blk;
    cJSON_ArrayForEach(blk, c)
    {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(blk, "text");
        if (cJSON_IsString(t) && ((b.len && buf_append(&b, "\n", 1)) || buf_appends(&b, t->valuestring))) {
            buf_release(&b);
            return NULL;
        }
    }
    char *s = b.p ? buf_detach(&b) : strdup("");
    buf_release(&b);
    return s;
}

/* One message's blocks into OpenAI-shaped messages (the template's input, engine/chat.h):
 * a user's tool_result blocks become tool messages (before its text: they answer the calls
 * just made), an assistant's tool_use blocks its tool_calls and its thinking its
 * reasoning_content. */
static int ant_chat_message(const char *role, const cJSON *content, int k, cJSON *out, struct oai_error *err)
{
    if (cJSON_IsString(content)) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", role);
        cJSON_AddStringToObject(m, "content", content->valuestring);
        cJSON_AddItemToArray(out, m);
        return NS_OK;
    }
    cJSON *text = cJSON_CreateArray(), *calls = cJSON_CreateArray();
    struct buf thinking;
    buf_init(&thinking, ANT_TEXT_MAX);
    int rc = NS_OK, j = 0;
    const cJSON *blk;
    cJSON_ArrayForEach(blk, content)
    {
        const char *type = cJSON_GetObjectItemCaseSensitive(blk, "type")->valuestring; /* ant_text checked it */
        if (strcmp(type, "text") == 0) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "type", "text");
            cJSON_AddStringToObject(p, "text", cJSON_GetObjectItemCaseSensitive(blk, "text")->valuestring);
            cJSON_AddItemToArray(text, p);
        } else if (strcmp(type, "tool_use") == 0) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(blk, "id");
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(blk, "name");
            const cJSON *input = cJSON_GetObjectItemCaseSensitive(blk, "input");
            if (strcmp(role, "assistant") != 0 || !cJSON_IsString(id) || !cJSON_IsString(name) || !cJSON_IsObject(input)) {
                rc = oai_error_set(err, NS_ERR_INVALID, "messages",
                                   "messages.%d.content.%d: a tool_use block is an assistant's, with id, name and an "
                                   "input object",
                                   k, j);
                break;
            }
            char *args = cJSON_PrintUnformatted(input);
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "id", id->valuestring);
            cJSON_AddStringToObject(c, "type", "function");
            cJSON *f = cJSON_AddObjectToObject(c, "function");
            cJSON_AddStringToObject(f, "name", name->valuestring);
            cJSON_AddStringToObject(f, "arguments", args ? args : "{}");
            cJSON_free(args);
            cJSON_AddItemToArray(calls, c);
        } else if (strcmp(type, "tool_result") == 0) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(blk, "tool_use_id");
            char *t = ant_result_text(cJSON_GetObjectItemCaseSensitive(blk, "content"));
            if (strcmp(role, "user") != 0 || !cJSON_IsString(id) || !t) {
                free(t);
                rc = oai_error_set(err, t ? NS_ERR_INVALID : NS_ERR_NOMEM, "messages",
                                   "messages.%d.content.%d: a tool_result block is a user's, with a tool_use_id", k, j);
                break;
            }
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", "tool");
            cJSON_AddStringToObject(m, "tool_call_id", id->valuestring);
            cJSON_AddStringToObject(m, "content", t);
            free(t);
            cJSON_AddItemToArray(out, m);
        } else if (strcmp(type, "thinking") == 0) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(blk, "thinking");
            if (cJSON_IsString(t) && buf_appends(&thinking, t->valuestring))
                rc = oai_error_set(err, NS_ERR_TOO_LARGE, "messages", "messages.%d: thinking is too long", k);
        }
        j++;
    }
    if (!rc && (text->child || calls->child || thinking.len)) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", role);
        if (text->child) {
            cJSON_AddItemToObject(m, "content", text);
            text = NULL;
        } else {
            cJSON_AddStringToObject(m, "content", "");
        }
        if (calls->child) {
            cJSON_AddItemToObject(m, "tool_calls", calls);
            calls = NULL;
        }
        if (thinking.len)
            cJSON_AddStringToObject(m, "reasoning_content", thinking.p);
        cJSON_AddItemToArray(out, m);
    }
    cJSON_Delete(text);
    cJSON_Delete(calls);
    buf_release(&thinking);
    return rc;
}

/* tools ({name, description, input_schema}) and tool_choice ({type: auto | any | tool |
 * none, name, disable_parallel_tool_use}) into their OpenAI shapes */
static int ant_chat_tools(struct oai_request *r, const cJSON *body, cJSON *chat, struct oai_error *err)
{
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(body, "tools");
    const cJSON *choice = cJSON_GetObjectItemCaseSensitive(body, "tool_choice");
    if (!tools || cJSON_IsNull(tools) || (cJSON_IsArray(tools) && !tools->child))
        return NS_OK;
    if (!cJSON_IsArray(tools))
        return oai_error_set(err, NS_ERR_INVALID, "tools", "tools: Input should be a valid list");
    const char *mode = "auto", *want = NULL;
    if (choice && !cJSON_IsNull(choice)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(choice, "type");
        const char *t = cJSON_IsString(type) ? type->valuestring : "";
        if (strcmp(t, "none") == 0)
            return NS_OK; /* no call may be made: the tools are not shown */
        if (strcmp(t, "any") == 0) {
            mode = "required";
        } else if (strcmp(t, "tool") == 0) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(choice, "name");
            if (!cJSON_IsString(name))
                return oai_error_set(err, NS_ERR_INVALID, "tool_choice", "tool_choice.name: Field required");
            mode = "required";
            want = name->valuestring;
        } else if (strcmp(t, "auto") != 0) {
            return oai_error_set(err, NS_ERR_INVALID, "tool_choice",
                                 "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'");
        }
        const cJSON *dp = cJSON_GetObjectItemCaseSensitive(choice, "disable_parallel_tool_use");
        if (cJSON_IsBool(dp))
            cJSON_AddBoolToObject(chat, "parallel_tool_calls", !cJSON_IsTrue(dp));
    }
    cJSON *out = cJSON_AddArrayToObject(chat, "tools");
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(t, "input_schema");
        if (cJSON_IsString(type) && strcmp(type->valuestring, "custom") != 0)
            return oai_error_set(err, NS_ERR_UNSUPPORTED, "tools",
                                 "tools.%d: server tools ('%.40s') are not supported by the local engine; only client "
                                 "tools (name, description, input_schema) are",
                                 i, type->valuestring);
        if (!cJSON_IsString(name) || !name->valuestring[0])
            return oai_error_set(err, NS_ERR_INVALID, "tools", "tools.%d.name: Field required", i);
        if (!cJSON_IsObject(schema))
            return oai_error_set(err, NS_ERR_INVALID, "tools", "tools.%d.input_schema: Field required", i);
        char what[48];
        snprintf(what, sizeof(what), "tools.%d.input_schema", i);
        cJSON *held = NULL;
        int rc = oai_tool_schema_check(schema, &held, "tools", what, err);
        if (rc)
            return rc;
        if (!want || strcmp(want, name->valuestring) == 0) {
            cJSON *o = cJSON_CreateObject(), *f;
            cJSON_AddStringToObject(o, "type", "function");
            f = cJSON_AddObjectToObject(o, "function");
            cJSON_AddStringToObject(f, "name", name->valuestring);
            const cJSON *desc = cJSON_GetObjectItemCaseSensitive(t, "description");
            if (cJSON_IsString(desc))
                cJSON_AddStringToObject(f, "description", desc->valuestring);
            /* shown as sent; the call's grammar is made from the guard's rewrite
             * (held_parameters: engine/chat.cpp) */
            cJSON_AddItemToObject(f, "parameters", cJSON_Duplicate(schema, 1));
            if (held)
                cJSON_AddItemToObject(f, "held_parameters", held);
            cJSON_AddItemToArray(out, o);
        } else {
            cJSON_Delete(held);
        }
        i++;
    }
    if (want && !out->child)
        return oai_error_set(err, NS_ERR_INVALID, "tool_choice", "tool_choice: no tool named '%.64s' in tools", want);
    cJSON_AddStringToObject(chat, "tool_choice", mode);
    r->tools = true;
    return NS_OK;
}

/* The conversation for the model's template (engine_request.chat), in the OpenAI shape
 * engine/chat.h reads: system, messages with their tool calls and results, tools, and
 * thinking as the template's enable_thinking */
static int ant_chat_json(struct oai_request *r, const cJSON *body, struct oai_error *err)
{
    cJSON *chat = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(chat, "messages");
    int rc = NS_OK;
    const cJSON *sys = cJSON_GetObjectItemCaseSensitive(body, "system");
    if (sys && !cJSON_IsNull(sys))
        rc = ant_chat_message("system", sys, -1, msgs, err);
    const cJSON *m;
    int k = 0;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(body, "messages"))
    {
        if (rc)
            break;
        rc = ant_chat_message(cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring,
                              cJSON_GetObjectItemCaseSensitive(m, "content"), k++, msgs, err);
    }
    if (!rc)
        rc = ant_chat_tools(r, body, chat, err);
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(body, "thinking");
    if (!rc && th && !cJSON_IsNull(th)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(th, "type");
        if (!cJSON_IsString(type) || (strcmp(type->valuestring, "enabled") && strcmp(type->valuestring, "disabled")))
            rc = oai_error_set(err, NS_ERR_INVALID, "thinking", "thinking.type: Input should be 'enabled' or 'disabled'");
        else
            cJSON_AddBoolToObject(cJSON_AddObjectToObject(chat, "chat_template_kwargs"), "enable_thinking",
                                  strcmp(type->valuestring, "enabled") == 0);
    }
    return oai_request_set_chat(r, chat, rc, err);
}

static const char *const ant_fields[] = {"model", "messages", "max_tokens", "system", "stop_sequences", "temperature",
                                         "top_p", "top_k", "stream", "metadata", "tools", "tool_choice", "thinking",
                                         "service_tier", "container", "mcp_servers", NULL};
/* POST /v1/messages/count_tokens: the prompt's fields, nothing about generating */
static const char *const ant_count_fields[] = {"model", "messages", "system", "tools", "tool_choice", "thinking", NULL};

/* a Messages body (count: a count_tokens body, which has no max_tokens or sampling) */
static int ant_request(cJSON *body, bool count, struct oai_request *r, struct oai_error *err)
{
    int rc = NS_OK;
    const char *const *fields = count ? ant_count_fields : ant_fields;
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
        for (int i = 0; fields[i] && !ok; i++)
            ok = strcmp(fields[i], f->string) == 0;
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
    if (count) {
        /* the field list let no max_tokens through */
    } else if (!mt) {
        rc = oai_error_set(err, NS_ERR_INVALID, "max_tokens", "max_tokens: Field required");
        goto out;
    } else if (!cJSON_IsNumber(mt) || mt->valuedouble != floor(mt->valuedouble) || mt->valuedouble < 1 ||
               mt->valuedouble > 1e9) {
        rc = oai_error_set(err, NS_ERR_INVALID, "max_tokens", "max_tokens: Input should be an integer greater than or equal to 1");
        goto out;
    } else {
        r->req.max_tokens = (int)mt->valuedouble;
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
    if ((rc = ant_chat_json(r, body, err)))
        goto out;

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

int anthropic_request_from_json(cJSON *body, struct oai_request *r, struct oai_error *err)
{
    return ant_request(body, false, r, err);
}

int anthropic_request_parse(const char *json, size_t len, struct oai_request *r, struct oai_error *err)
{
    memset(r, 0, sizeof(*r));
    cJSON *body = cJSON_ParseWithLength(json, len);
    if (!body)
        return oai_error_set(err, NS_ERR_INVALID, NULL, "the request body is not valid JSON");
    return ant_request(body, false, r, err);
}

int anthropic_count_request_parse(const char *json, size_t len, struct oai_request *r, struct oai_error *err)
{
    memset(r, 0, sizeof(*r));
    cJSON *body = cJSON_ParseWithLength(json, len);
    if (!body)
        return oai_error_set(err, NS_ERR_INVALID, NULL, "the request body is not valid JSON");
    return ant_request(body, true, r, err);
}

cJSON *anthropic_count_answer(int input_tokens)
{
    cJSON *o = cJSON_CreateObject();
    if (o && !cJSON_AddNumberToObject(o, "input_tokens", input_tokens)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

const char *anthropic_stop_reason(const struct engine_result *res)
{
    if (res->finish == ENGINE_FINISH_LENGTH)
        return "max_tokens";
    if (res->n_tool_calls > 0)
        return "tool_use";
    return res->stop_index >= 0 ? "stop_sequence" : "end_turn";
}

/* a tool call's id in Anthropic's shape ("toolu_..." for the engine's "call_...") */
static void ant_tool_id(const char *id, char *out, size_t n)
{
    snprintf(out, n, "toolu_%s", id && strncmp(id, "call_", 5) == 0 ? id + 5 : id ? id : "");
}

/* a tool_use block: its input is the call's arguments as an object ({} when the model's
 * were cut short and do not parse) */
static cJSON *ant_tool_block(const struct engine_tool_call *c, bool with_input)
{
    char id[96];
    ant_tool_id(c->id, id, sizeof(id));
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "tool_use");
    cJSON_AddStringToObject(b, "id", id);
    cJSON_AddStringToObject(b, "name", c->name);
    cJSON *in = with_input ? cJSON_Parse(c->arguments) : NULL;
    cJSON_AddItemToObject(b, "input", cJSON_IsObject(in) ? in : (cJSON_Delete(in), cJSON_CreateObject()));
    return b;
}

/* o's "usage" as Anthropic counts: input_tokens are the prompt's tokens not read from the
 * cache (the prefix cache's hits are cache_read_input_tokens; nothing is written to a cache
 * the way Anthropic's cache_control writes, so cache_creation_input_tokens is 0) */
static void ant_usage(cJSON *o, int prompt, int cached, int output)
{
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "input_tokens", prompt - cached);
    cJSON_AddNumberToObject(u, "cache_creation_input_tokens", 0);
    cJSON_AddNumberToObject(u, "cache_read_input_tokens", cached);
    cJSON_AddNumberToObject(u, "output_tokens", output);
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
    if (res->reasoning) {
        cJSON *th = cJSON_CreateObject();
        cJSON_AddStringToObject(th, "type", "thinking");
        cJSON_AddStringToObject(th, "thinking", res->reasoning);
        cJSON_AddStringToObject(th, "signature", ""); /* nothing signs a local model's thinking */
        cJSON_AddItemToArray(content, th);
    }
    if ((res->text && res->text[0]) || res->n_tool_calls == 0) {
        cJSON *blk = cJSON_CreateObject();
        cJSON_AddStringToObject(blk, "type", "text");
        cJSON_AddStringToObject(blk, "text", res->text ? res->text : "");
        cJSON_AddItemToArray(content, blk);
    }
    for (int i = 0; i < res->n_tool_calls; i++)
        cJSON_AddItemToArray(content, ant_tool_block(&res->tool_calls[i], true));
    cJSON_AddStringToObject(o, "stop_reason", anthropic_stop_reason(res));
    if (res->stop_index >= 0 && res->stop_index < r->req.n_stop)
        cJSON_AddStringToObject(o, "stop_sequence", r->req.stop[res->stop_index]);
    else
        cJSON_AddNullToObject(o, "stop_sequence");
    ant_usage(o, res->prompt_tokens, res->cached_tokens, res->completion_tokens);
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

/* the blocks a streamed answer opens, in order (stream.block_kind) */
enum { ANT_BLOCK_TEXT = 0, ANT_BLOCK_THINKING = 1, ANT_BLOCK_TOOL = 2 };

static void ant_block_stop(struct stream *s, struct buf *out)
{
    if (s->block < 0)
        return;
    if (s->block_kind == ANT_BLOCK_THINKING) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "content_block_delta");
        cJSON_AddNumberToObject(o, "index", s->block);
        cJSON *d = cJSON_AddObjectToObject(o, "delta");
        cJSON_AddStringToObject(d, "type", "signature_delta");
        cJSON_AddStringToObject(d, "signature", "");
        stream_sse(out, "content_block_delta", o);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "content_block_stop");
    cJSON_AddNumberToObject(o, "index", s->block);
    stream_sse(out, "content_block_stop", o);
    s->block = -1;
}

/* open a block of kind (closing the one open), its start event carrying cb */
static void ant_block_start(struct stream *s, struct buf *out, int kind, cJSON *cb)
{
    ant_block_stop(s, out);
    s->block = s->n_blocks++;
    s->block_kind = kind;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "content_block_start");
    cJSON_AddNumberToObject(o, "index", s->block);
    cJSON_AddItemToObject(o, "content_block", cb);
    stream_sse(out, "content_block_start", o);
    if (s->n_blocks == 1) {
        /* Anthropic's order: the first block's start, then a ping */
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "ping");
        stream_sse(out, "ping", o);
    }
}

static void ant_block_delta(struct stream *s, struct buf *out, const char *type, const char *key, const char *text,
                            size_t n)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "content_block_delta");
    cJSON_AddNumberToObject(o, "index", s->block);
    cJSON *d = cJSON_AddObjectToObject(o, "delta");
    cJSON_AddStringToObject(d, "type", type);
    char *t = strndup(text, n);
    cJSON_AddStringToObject(d, key, t ? t : "");
    free(t);
    stream_sse(out, "content_block_delta", o);
}

/* the engine thread: choice 0's deltas (Messages have one) as whole events: thinking, text
 * and tool_use blocks, each opened when its first delta comes */
static void ant_stream_delta(struct stream *s, const struct engine_delta *d)
{
    if (d->index != 0)
        return;
    if (d->cached_tokens >= 0)
        s->cached = d->cached_tokens;
    if (d->reasoning_len) {
        if (s->block < 0 || s->block_kind != ANT_BLOCK_THINKING) {
            cJSON *cb = cJSON_CreateObject();
            cJSON_AddStringToObject(cb, "type", "thinking");
            cJSON_AddStringToObject(cb, "thinking", "");
            ant_block_start(s, &s->pending, ANT_BLOCK_THINKING, cb);
        }
        ant_block_delta(s, &s->pending, "thinking_delta", "thinking", d->reasoning, d->reasoning_len);
    }
    if (d->len) {
        if (s->block < 0 || s->block_kind != ANT_BLOCK_TEXT) {
            cJSON *cb = cJSON_CreateObject();
            cJSON_AddStringToObject(cb, "type", "text");
            cJSON_AddStringToObject(cb, "text", "");
            ant_block_start(s, &s->pending, ANT_BLOCK_TEXT, cb);
        }
        ant_block_delta(s, &s->pending, "text_delta", "text", d->text, d->len);
    }
    if (d->tool_index >= 0 && d->tool_name) {
        struct engine_tool_call c = {.id = d->tool_id, .name = d->tool_name};
        ant_block_start(s, &s->pending, ANT_BLOCK_TOOL, ant_tool_block(&c, false));
    }
    if (d->tool_index >= 0 && d->tool_args && d->tool_args[0] && s->block_kind == ANT_BLOCK_TOOL)
        ant_block_delta(s, &s->pending, "input_json_delta", "partial_json", d->tool_args, strlen(d->tool_args));
}

/* Anthropic's event sequence: message_start, content_block_start, ping, content_block_delta*,
 * content_block_stop, message_delta, message_stop (or an error event). Phases: 0 the
 * opening events, 1 text deltas, 2 the closing events, 5 end.
 *
 * Usage (issue 31.3): message_delta carries the final usage whole (input, cache and output
 * tokens: cumulative, as Anthropic's API sends it; the SDKs overwrite what message_start
 * said), the same as the non-streamed message. message_start must not contradict it, so
 * it waits for the prompt's split into computed and cached tokens: the engine knows it
 * once the prompt is in and says so on the first delta (engine_delta.cached_tokens); a
 * source that cannot say before the end (an upstream) holds message_start until the end. */
static cJSON *ant_dialect_answer(const struct stream *s, const struct engine_result *res)
{
    return anthropic_message(s->r, res, s->id, s->model);
}

static int ant_stream_next(struct stream *s, struct buf *out)
{
    if (s->phase == 0) {
        if (s->cached < 0 && !s->res)
            return STREAM_WAIT;
        bool final = s->res && s->res->status == NS_OK;
        int prompt = final ? s->res->prompt_tokens : s->n_prompt;
        int cached = final ? s->res->cached_tokens : s->cached > 0 ? s->cached : 0;
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
        ant_usage(m, prompt, cached, 0);
        stream_sse(out, "message_start", o);
        s->phase = 1;
        return STREAM_MORE;
    }
    if (s->phase == 1) {
        /* whole events made by ant_stream_delta */
        int step = stream_pass_pending(s, out);
        if (step != STREAM_END)
            return step;
        s->phase = 2;
    }
    if (s->phase == 2) {
        const struct engine_result *res = s->res;
        if (res->status != NS_OK) {
            stream_sse(out, "error", anthropic_error(res->status, res->message));
        } else {
            if (s->n_blocks == 0) {
                /* an empty answer is one empty text block */
                cJSON *cb = cJSON_CreateObject();
                cJSON_AddStringToObject(cb, "type", "text");
                cJSON_AddStringToObject(cb, "text", "");
                ant_block_start(s, out, ANT_BLOCK_TEXT, cb);
            }
            ant_block_stop(s, out);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "message_delta");
            cJSON *d = cJSON_AddObjectToObject(o, "delta");
            cJSON_AddStringToObject(d, "stop_reason", anthropic_stop_reason(res));
            if (res->stop_index >= 0 && res->stop_index < s->r->req.n_stop)
                cJSON_AddStringToObject(d, "stop_sequence", s->r->req.stop[res->stop_index]);
            else
                cJSON_AddNullToObject(d, "stop_sequence");
            ant_usage(o, res->prompt_tokens, res->cached_tokens, res->completion_tokens);
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
