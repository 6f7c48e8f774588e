/*
 * ollama.c — see ollama.h. Error messages name the field the way Ollama's own do
 * ("model is required", `model "x" not found`), in lower case.
 */
#include "ollama.h"

#include "dialect.h"
#include "stream.h"

#include "jsonschema.h"
#include "../util/sha256.h"
#include "../util/status.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- requests ----------------------------------------------------------------------- */

static const char *const ol_chat_fields[] = {"model", "messages", "stream", "format", "options", "keep_alive",
                                             "tools", "think", "logprobs", "top_logprobs", "truncate", "shift",
                                             NULL};
static const char *const ol_generate_fields[] = {"model", "prompt", "suffix", "system", "template", "context",
                                                 "stream", "raw", "format", "images", "options", "keep_alive",
                                                 "think", "logprobs", "top_logprobs", "truncate", "shift", NULL};
static const char *const ol_message_fields[] = {"role", "content", "images", "tool_calls", "thinking", "tool_name",
                                                NULL};

/* fields of Ollama's API that need work the engine does not do yet: refused when set */
static const struct {
    const char *field;
    const char *why;
} ol_unsupported[] = {
    {"images", "images are not supported by nightshift yet"},
    {"suffix", "fill-in-the-middle is not supported by nightshift yet"},
    {"template", "a per-request prompt template is not supported; the model's chat template applies"},
    {"context", "the deprecated context field is not supported; send the conversation to /api/chat"},
    {"logprobs", "logprobs are not supported by nightshift yet"},
    {"top_logprobs", "logprobs are not supported by nightshift yet"},
};

static bool ol_known(const char *const *known, const char *name)
{
    for (int i = 0; known[i]; i++)
        if (strcmp(known[i], name) == 0)
            return true;
    return false;
}

/* set to something other than its zero value (Go's zero values mean "not set" to Ollama) */
static bool ol_set(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v))
        return false;
    if (cJSON_IsString(v))
        return v->valuestring[0] != '\0';
    if (cJSON_IsNumber(v))
        return v->valuedouble != 0;
    if (cJSON_IsArray(v) || cJSON_IsObject(v))
        return v->child != NULL;
    return true;
}

/* unknown fields of obj, then the unsupported ones that are set; `where` prefixes the
 * field in messages ("messages[2]") or is NULL at the top level */
static int ol_check_fields(const cJSON *obj, const char *const *known, const char *where, struct oai_error *err)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, obj)
    {
        if (!ol_known(known, f->string))
            return oai_error_set(err, NS_ERR_INVALID, NULL, "%s%sunknown field \"%.64s\"", where ? where : "",
                                 where ? ": " : "", f->string);
    }
    for (size_t i = 0; i < sizeof(ol_unsupported) / sizeof(ol_unsupported[0]); i++) {
        if (ol_set(cJSON_GetObjectItemCaseSensitive(obj, ol_unsupported[i].field)))
            return oai_error_set(err, NS_ERR_UNSUPPORTED, ol_unsupported[i].field, "%s%s%s: %s", where ? where : "",
                                 where ? "." : "", ol_unsupported[i].field, ol_unsupported[i].why);
    }
    return NS_OK;
}

/* a string field: absent or null gives NULL */
static int ol_string(const cJSON *obj, const char *name, const char *where, const char **out, struct oai_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return NS_OK;
    if (!cJSON_IsString(v))
        return oai_error_set(err, NS_ERR_INVALID, name, "%s%s%s: expected a string", where ? where : "",
                             where ? "." : "", name);
    *out = v->valuestring;
    return NS_OK;
}

/* a boolean field: absent or null leaves *out alone */
static int ol_bool(const cJSON *obj, const char *name, bool *out, struct oai_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v))
        return NS_OK;
    if (!cJSON_IsBool(v))
        return oai_error_set(err, NS_ERR_INVALID, name, "%s: expected true or false", name);
    *out = cJSON_IsTrue(v);
    return NS_OK;
}

enum ol_kind { OL_NUMBER, OL_INTEGER, OL_BOOL, OL_STRINGS };

/* Every option of Ollama's Options struct. Those not mapped in ol_option_apply() are
 * load-time or runner settings, or sampling knobs Ollama itself no longer uses
 * (tfs_z, penalize_newline): accepted, without effect. */
static const struct {
    const char *name;
    enum ol_kind kind;
} ol_options[] = {
    {"num_predict", OL_INTEGER},    {"temperature", OL_NUMBER},       {"top_k", OL_INTEGER},
    {"top_p", OL_NUMBER},           {"min_p", OL_NUMBER},             {"seed", OL_INTEGER},
    {"stop", OL_STRINGS},           {"repeat_penalty", OL_NUMBER},    {"presence_penalty", OL_NUMBER},
    {"frequency_penalty", OL_NUMBER}, {"num_ctx", OL_INTEGER},        {"typical_p", OL_NUMBER},
    {"mirostat", OL_INTEGER},       {"mirostat_tau", OL_NUMBER},      {"mirostat_eta", OL_NUMBER},
    {"tfs_z", OL_NUMBER},           {"penalize_newline", OL_BOOL},    {"repeat_last_n", OL_INTEGER},
    {"num_keep", OL_INTEGER},       {"numa", OL_BOOL},                {"num_batch", OL_INTEGER},
    {"num_gpu", OL_INTEGER},        {"main_gpu", OL_INTEGER},         {"low_vram", OL_BOOL},
    {"f16_kv", OL_BOOL},            {"logits_all", OL_BOOL},          {"vocab_only", OL_BOOL},
    {"use_mmap", OL_BOOL},          {"use_mlock", OL_BOOL},           {"embedding_only", OL_BOOL},
    {"num_thread", OL_INTEGER},
};

static int ol_option_type(const cJSON *v, enum ol_kind kind, struct oai_error *err)
{
    switch (kind) {
    case OL_NUMBER:
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return oai_error_set(err, NS_ERR_INVALID, "options", "options.%s: expected a number", v->string);
        return NS_OK;
    case OL_INTEGER:
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e15)
            return oai_error_set(err, NS_ERR_INVALID, "options", "options.%s: expected an integer", v->string);
        return NS_OK;
    case OL_BOOL:
        if (!cJSON_IsBool(v))
            return oai_error_set(err, NS_ERR_INVALID, "options", "options.%s: expected true or false", v->string);
        return NS_OK;
    case OL_STRINGS: {
        if (!cJSON_IsArray(v))
            return oai_error_set(err, NS_ERR_INVALID, "options", "options.%s: expected an array of strings", v->string);
        const cJSON *it;
        cJSON_ArrayForEach(it, v) if (!cJSON_IsString(it)) return oai_error_set(
            err, NS_ERR_INVALID, "options", "options.%s: expected an array of strings", v->string);
        return NS_OK;
    }
    }
    return NS_OK;
}

static int ol_range(const cJSON *v, double lo, double hi, struct oai_error *err)
{
    if (v->valuedouble < lo || v->valuedouble > hi)
        return oai_error_set(err, NS_ERR_INVALID, "options", "options.%s: %g is out of range (expected %g to %g)",
                             v->string, v->valuedouble, lo, hi);
    return NS_OK;
}

/* v has the right type; map it onto the request */
static int ol_option_apply(struct oai_request *r, struct ollama_extra *ox, const cJSON *v, struct oai_error *err)
{
    const char *k = v->string;
    double d = cJSON_IsNumber(v) ? v->valuedouble : 0;
    int rc = NS_OK;
    if (strcmp(k, "num_predict") == 0) {
        /* -1 (no limit), -2 (fill the context) and 0 all run to the context's end in Ollama */
        r->req.max_tokens = d > 0 ? (d > 1e9 ? 1000000000 : (int)d) : -1;
    } else if (strcmp(k, "temperature") == 0) {
        if (!(rc = ol_range(v, 0, 100, err)))
            r->req.temperature = (float)d;
    } else if (strcmp(k, "top_k") == 0) {
        r->req.top_k = d > 0 ? (d > 1e9 ? 1000000000 : (int)d) : 0; /* <= 0: off, as in llama.cpp */
    } else if (strcmp(k, "top_p") == 0) {
        if (!(rc = ol_range(v, 0, 1, err)))
            r->req.top_p = (float)d;
    } else if (strcmp(k, "min_p") == 0) {
        if (!(rc = ol_range(v, 0, 1, err)))
            r->req.min_p = (float)d;
    } else if (strcmp(k, "seed") == 0) {
        /* negative: a random seed, as Ollama's default -1 */
        if (d > 4294967295.0)
            return oai_error_set(err, NS_ERR_INVALID, "options", "options.seed: expected an integer up to 4294967295");
        if (d >= 0) {
            r->req.seed = (uint32_t)d;
            r->has_seed = true;
        }
    } else if (strcmp(k, "stop") == 0) {
        r->req.n_stop = 0;
        if (cJSON_GetArraySize(v) > ENGINE_MAX_STOP)
            return oai_error_set(err, NS_ERR_INVALID, "options", "options.stop: at most %d stop sequences are supported",
                                 ENGINE_MAX_STOP);
        const cJSON *it;
        cJSON_ArrayForEach(it, v) if (it->valuestring[0]) r->req.stop[r->req.n_stop++] = it->valuestring;
    } else if (strcmp(k, "repeat_penalty") == 0) {
        if (!(rc = ol_range(v, 0.01, 10, err)))
            r->req.repetition_penalty = (float)d;
    } else if (strcmp(k, "presence_penalty") == 0) {
        if (!(rc = ol_range(v, -2, 2, err)))
            r->req.presence_penalty = (float)d;
    } else if (strcmp(k, "frequency_penalty") == 0) {
        if (!(rc = ol_range(v, -2, 2, err)))
            r->req.frequency_penalty = (float)d;
    } else if (strcmp(k, "num_ctx") == 0) {
        if (d < 1)
            return oai_error_set(err, NS_ERR_INVALID, "options", "options.num_ctx: expected a positive integer");
        ox->num_ctx = d > 1e9 ? 1000000000 : (int)d;
    } else if (strcmp(k, "typical_p") == 0) {
        if (d < 1)
            rc = oai_error_set(err, NS_ERR_UNSUPPORTED, "options",
                               "options.typical_p: locally typical sampling is not supported by nightshift yet "
                               "(1.0 turns it off)");
    } else if (strcmp(k, "mirostat") == 0) {
        if (d != 0)
            rc = oai_error_set(err, NS_ERR_UNSUPPORTED, "options",
                               "options.mirostat: Mirostat sampling is not supported by nightshift yet (0 turns it off)");
    }
    return rc;
}

static int ol_parse_options(struct oai_request *r, struct ollama_extra *ox, const cJSON *opts, struct oai_error *err)
{
    if (!opts || cJSON_IsNull(opts))
        return NS_OK;
    if (!cJSON_IsObject(opts))
        return oai_error_set(err, NS_ERR_INVALID, "options", "options: expected an object");
    const cJSON *v;
    cJSON_ArrayForEach(v, opts)
    {
        size_t i = 0, n = sizeof(ol_options) / sizeof(ol_options[0]);
        while (i < n && strcmp(ol_options[i].name, v->string) != 0)
            i++;
        if (i == n)
            return oai_error_set(err, NS_ERR_INVALID, "options", "options: unknown option \"%.64s\"", v->string);
        if (cJSON_IsNull(v))
            continue; /* Ollama skips null options */
        int rc = ol_option_type(v, ol_options[i].kind, err);
        if (rc || (rc = ol_option_apply(r, ox, v, err)))
            return rc;
    }
    return NS_OK;
}

static int ol_messages(struct oai_request *r, struct ollama_extra *ox, const cJSON *msgs, struct oai_error *err)
{
    if (!msgs || cJSON_IsNull(msgs) || (cJSON_IsArray(msgs) && !msgs->child)) {
        ox->load_only = true;
        return NS_OK;
    }
    if (!cJSON_IsArray(msgs))
        return oai_error_set(err, NS_ERR_INVALID, "messages", "messages: expected an array");
    r->msgs_ = calloc((size_t)cJSON_GetArraySize(msgs), sizeof(*r->msgs_));
    if (!r->msgs_)
        return oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs)
    {
        char where[32];
        snprintf(where, sizeof(where), "messages[%d]", i);
        if (!cJSON_IsObject(m))
            return oai_error_set(err, NS_ERR_INVALID, "messages", "%s: expected an object", where);
        int rc = ol_check_fields(m, ol_message_fields, where, err);
        const char *role, *content;
        if (rc || (rc = ol_string(m, "role", where, &role, err)) || (rc = ol_string(m, "content", where, &content, err)))
            return rc;
        if (!role || (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "tool")))
            return oai_error_set(err, NS_ERR_INVALID, "messages",
                                 "%s.role: expected \"system\", \"user\", \"assistant\" or \"tool\"", where);
        r->msgs_[i].role = role;
        r->msgs_[i].content = content ? content : ""; /* Ollama lets content out (tool calls) */
        i++;
    }
    r->req.messages = r->msgs_;
    r->req.n_messages = i;
    return NS_OK;
}

/* generate: [system, user: prompt] through the chat template, or with raw the bare prompt */
static int ol_prompt(struct oai_request *r, struct ollama_extra *ox, const cJSON *body, struct oai_error *err)
{
    const char *prompt, *system;
    bool raw = false;
    int rc;
    if ((rc = ol_string(body, "prompt", NULL, &prompt, err)) || (rc = ol_string(body, "system", NULL, &system, err)) ||
        (rc = ol_bool(body, "raw", &raw, err)))
        return rc;
    if (!prompt || !prompt[0]) {
        ox->load_only = true;
        return NS_OK;
    }
    if (raw) {
        if (system && system[0])
            return oai_error_set(err, NS_ERR_INVALID, "raw", "raw mode does not support template, system, or context");
        r->req.prompt = prompt;
        return NS_OK;
    }
    r->msgs_ = calloc(2, sizeof(*r->msgs_));
    if (!r->msgs_)
        return oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
    int n = 0;
    if (system && system[0])
        r->msgs_[n++] = (struct engine_msg){.role = "system", .content = system};
    r->msgs_[n++] = (struct engine_msg){.role = "user", .content = prompt};
    r->req.messages = r->msgs_;
    r->req.n_messages = n;
    return NS_OK;
}

/* format: "json" (any JSON object) or a JSON Schema: a grammar, as OpenAI's
 * response_format json_object / json_schema (jsonschema.h) */
static int ol_format(struct oai_request *r, const cJSON *body, struct oai_error *err)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(body, "format");
    if (!ol_set(f) && !cJSON_IsObject(f))
        return NS_OK; /* absent, null or "" */
    cJSON *any = NULL;
    const cJSON *schema = f;
    if (cJSON_IsString(f)) {
        if (strcmp(f->valuestring, "json") != 0)
            return oai_error_set(err, NS_ERR_INVALID, "format",
                                 "format: expected \"json\" or a JSON schema object, not \"%.40s\"", f->valuestring);
        schema = any = cJSON_Parse("{\"type\":\"object\"}");
        if (!any)
            return oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
    } else if (!cJSON_IsObject(f)) {
        return oai_error_set(err, NS_ERR_INVALID, "format", "format: expected \"json\" or a JSON schema object");
    }
    char msg[300], *g = NULL;
    int rc = jsonschema_to_gbnf(schema, &g, msg, sizeof(msg));
    cJSON_Delete(any);
    if (rc == NS_ERR_NOMEM)
        return oai_error_set(err, rc, NULL, "out of memory");
    if (rc)
        return oai_error_set(err, rc == NS_ERR_TOO_LARGE ? NS_ERR_INVALID : rc, "format", "format: %s", msg);
    if (!oai_request_own(r, g))
        return oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
    r->req.grammar = g;
    return NS_OK;
}

/* an Ollama message's tool_calls ({function: {name, arguments: object}}) in OpenAI's shape */
static int ol_chat_calls(const cJSON *calls, int i, cJSON *msg, struct oai_error *err)
{
    cJSON *out = cJSON_AddArrayToObject(msg, "tool_calls");
    int k = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, calls)
    {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (!cJSON_IsString(name))
            return oai_error_set(err, NS_ERR_INVALID, "messages", "messages[%d].tool_calls[%d].function.name: required", i,
                                 k);
        char *a = cJSON_IsString(args) ? strdup(args->valuestring) : args ? cJSON_PrintUnformatted(args) : strdup("{}");
        cJSON *o = cJSON_CreateObject();
        char id[40];
        snprintf(id, sizeof(id), "call_%d_%d", i, k);
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "type", "function");
        cJSON *f = cJSON_AddObjectToObject(o, "function");
        cJSON_AddStringToObject(f, "name", name->valuestring);
        cJSON_AddStringToObject(f, "arguments", a ? a : "{}");
        free(a);
        cJSON_AddItemToArray(out, o);
        k++;
    }
    return NS_OK;
}

/* The conversation for the model's template (engine_request.chat, engine/chat.h's OpenAI
 * shape): /api/chat's messages with their tool calls, tool results (tool_name) and thinking,
 * or /api/generate's system and prompt; tools (already OpenAI's shape); think as the
 * template's enable_thinking (a level also as reasoning_effort) */
static int ol_chat_json(struct oai_request *r, const cJSON *body, bool chat, struct oai_error *err)
{
    cJSON *c = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(c, "messages");
    int rc = NS_OK, i = 0;
    if (chat) {
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(body, "messages"))
        {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "role", r->msgs_[i].role);
            cJSON_AddStringToObject(o, "content", r->msgs_[i].content);
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "thinking");
            if (cJSON_IsString(v) && v->valuestring[0])
                cJSON_AddStringToObject(o, "reasoning_content", v->valuestring);
            if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(m, "tool_name")))
                cJSON_AddStringToObject(o, "name", v->valuestring);
            cJSON_AddItemToArray(msgs, o);
            v = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
            if (cJSON_IsArray(v) && v->child && (rc = ol_chat_calls(v, i, o, err)))
                break;
            i++;
        }
    } else {
        for (; i < r->req.n_messages; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "role", r->msgs_[i].role);
            cJSON_AddStringToObject(o, "content", r->msgs_[i].content);
            cJSON_AddItemToArray(msgs, o);
        }
    }
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(body, "tools"), *t;
    if (!rc && cJSON_IsArray(tools) && tools->child) {
        int k = 0;
        /* the tools as the chat JSON gets them: as sent (what the template shows), each
         * one's parameters as the guard rewrote them in held_parameters (what the call's
         * grammar is made from: engine/chat.cpp) */
        cJSON *held_tools = cJSON_Duplicate(tools, 1);
        cJSON *ht = held_tools ? held_tools->child : NULL;
        cJSON_ArrayForEach(t, tools)
        {
            if (!ht) { /* the copy runs beside tools: missing only when it could not be made */
                rc = oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
                break;
            }
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
            const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
            if (!cJSON_IsString(name) || !name->valuestring[0]) {
                rc = oai_error_set(err, NS_ERR_INVALID, "tools", "tools[%d].function.name: required", k);
                break;
            }
            char what[48];
            snprintf(what, sizeof(what), "tools[%d].function.parameters", k);
            cJSON *held = NULL;
            if ((rc = oai_tool_schema_check(params, &held, "tools", what, err)))
                break;
            if (held && !cJSON_AddItemToObject(cJSON_GetObjectItemCaseSensitive(ht, "function"), "held_parameters",
                                               held)) {
                cJSON_Delete(held);
                rc = oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
                break;
            }
            ht = ht->next;
            k++;
        }
        if (!rc) {
            cJSON_AddItemToObject(c, "tools", held_tools);
            r->tools = true;
        } else {
            cJSON_Delete(held_tools);
        }
    } else if (!rc && tools && !cJSON_IsNull(tools) && !cJSON_IsArray(tools)) {
        rc = oai_error_set(err, NS_ERR_INVALID, "tools", "tools: expected an array");
    }
    const cJSON *think = cJSON_GetObjectItemCaseSensitive(body, "think");
    if (!rc && think && !cJSON_IsNull(think)) {
        if (cJSON_IsBool(think)) {
            cJSON_AddBoolToObject(cJSON_AddObjectToObject(c, "chat_template_kwargs"), "enable_thinking", cJSON_IsTrue(think));
        } else if (cJSON_IsString(think) &&
                   (!strcmp(think->valuestring, "high") || !strcmp(think->valuestring, "medium") ||
                    !strcmp(think->valuestring, "low"))) {
            cJSON_AddBoolToObject(cJSON_AddObjectToObject(c, "chat_template_kwargs"), "enable_thinking", true);
            cJSON_AddStringToObject(c, "reasoning_effort", think->valuestring);
        } else {
            rc = oai_error_set(err, NS_ERR_INVALID, "think", "think: expected true, false, \"high\", \"medium\" or \"low\"");
        }
    }
    return oai_request_set_chat(r, c, rc, err);
}

static int ol_request(cJSON *body, bool chat, struct oai_request *r, struct ollama_extra *ox, struct oai_error *err)
{
    int rc;
    if (!cJSON_IsObject(body))
        return oai_error_set(err, NS_ERR_INVALID, NULL, "the request body must be a JSON object");
    if ((rc = ol_check_fields(body, chat ? ol_chat_fields : ol_generate_fields, NULL, err)))
        return rc;
    const char *model;
    if ((rc = ol_string(body, "model", NULL, &model, err)))
        return rc;
    if (!model || !model[0])
        return oai_error_set(err, NS_ERR_INVALID, "model", "model is required");
    r->model = (char *)model;
    if ((rc = chat ? ol_messages(r, ox, cJSON_GetObjectItemCaseSensitive(body, "messages"), err)
                   : ol_prompt(r, ox, body, err)))
        return rc;
    r->stream = true; /* Ollama streams unless told not to */
    bool ignored = false;
    if ((rc = ol_bool(body, "stream", &r->stream, err)) || (rc = ol_bool(body, "truncate", &ignored, err)) ||
        (rc = ol_bool(body, "shift", &ignored, err)))
        return rc;
    const cJSON *ka = cJSON_GetObjectItemCaseSensitive(body, "keep_alive");
    if (ka && !cJSON_IsNull(ka) && !cJSON_IsString(ka) && !cJSON_IsNumber(ka))
        return oai_error_set(err, NS_ERR_INVALID, "keep_alive",
                             "keep_alive: expected a duration (\"5m\") or a number of seconds");
    /* Ollama's defaults, not OpenAI's */
    r->req.temperature = 0.8f;
    r->req.top_k = 40;
    r->req.top_p = 0.9f;
    r->req.repetition_penalty = 1.1f;
    if ((rc = ol_format(r, body, err)))
        return rc;
    if (r->req.messages && (rc = ol_chat_json(r, body, chat, err)))
        return rc;
    if (r->tools && r->req.grammar)
        return oai_error_set(err, NS_ERR_UNSUPPORTED, "format",
                             "format cannot be combined with tools: the calls follow their own grammar");
    return ol_parse_options(r, ox, cJSON_GetObjectItemCaseSensitive(body, "options"), err);
}

int ollama_request_parse(const char *json, size_t len, bool chat, struct oai_request *r, struct ollama_extra *ox,
                         struct oai_error *err)
{
    memset(r, 0, sizeof(*r));
    memset(ox, 0, sizeof(*ox));
    engine_request_init(&r->req);
    r->chat = chat;
    if (len == 0)
        return oai_error_set(err, NS_ERR_INVALID, NULL, "missing request body");
    r->root_ = cJSON_ParseWithLength(json, len);
    if (!r->root_)
        return oai_error_set(err, NS_ERR_INVALID, NULL, "the request body is not valid JSON");
    int rc = ol_request(r->root_, chat, r, ox, err);
    if (rc != NS_OK)
        oai_request_release(r);
    return rc;
}

/* ---- embeddings (/api/embed, legacy /api/embeddings) ----------------------------------- */

static void ol_ns(cJSON *o, const char *key, double seconds);

static const char *const ol_embed_fields[] = {"model", "input", "truncate", "dimensions", "options", "keep_alive", NULL};
static const char *const ol_embeddings_fields[] = {"model", "prompt", "options", "keep_alive", NULL};

static int ol_embed(cJSON *body, bool legacy, struct oai_request *r, struct oai_error *err)
{
    int rc;
    if (!cJSON_IsObject(body))
        return oai_error_set(err, NS_ERR_INVALID, NULL, "the request body must be a JSON object");
    if ((rc = ol_check_fields(body, legacy ? ol_embeddings_fields : ol_embed_fields, NULL, err)))
        return rc;
    const char *model;
    if ((rc = ol_string(body, "model", NULL, &model, err)))
        return rc;
    if (!model || !model[0])
        return oai_error_set(err, NS_ERR_INVALID, "model", "model is required");
    r->model = (char *)model;
    r->embeddings = true;
    r->req.embed_truncate = true; /* Ollama's default */
    if ((rc = ol_bool(body, "truncate", &r->req.embed_truncate, err)))
        return rc;
    const cJSON *ka = cJSON_GetObjectItemCaseSensitive(body, "keep_alive");
    if (ka && !cJSON_IsNull(ka) && !cJSON_IsString(ka) && !cJSON_IsNumber(ka))
        return oai_error_set(err, NS_ERR_INVALID, "keep_alive",
                             "keep_alive: expected a duration (\"5m\") or a number of seconds");
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(body, "dimensions");
    if (dims && !cJSON_IsNull(dims)) {
        if (!cJSON_IsNumber(dims) || dims->valuedouble != floor(dims->valuedouble) || dims->valuedouble < 0 ||
            dims->valuedouble > 1e6)
            return oai_error_set(err, NS_ERR_INVALID, "dimensions", "dimensions: expected a positive integer");
        r->req.embed_dimensions = (int)dims->valuedouble; /* only the model's own size is served */
    }
    /* options are checked as /api/chat's; none changes an embedding */
    struct ollama_extra ox;
    memset(&ox, 0, sizeof(ox));
    struct oai_request scratch;
    memset(&scratch, 0, sizeof(scratch));
    if ((rc = ol_parse_options(&scratch, &ox, cJSON_GetObjectItemCaseSensitive(body, "options"), err)))
        return rc;
    /* the inputs: a string or a list of strings (legacy: prompt, one string); "" or [] is
     * nothing to embed, which Ollama answers with no vectors */
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(body, legacy ? "prompt" : "input");
    int n = 0;
    if (!in || cJSON_IsNull(in) || (cJSON_IsString(in) && !in->valuestring[0])) {
        n = 0;
    } else if (cJSON_IsString(in)) {
        n = 1;
    } else if (!legacy && cJSON_IsArray(in)) {
        n = cJSON_GetArraySize(in);
        if (n > OAI_MAX_EMBED_INPUTS)
            return oai_error_set(err, NS_ERR_INVALID, "input", "input: at most %d inputs, not %d", OAI_MAX_EMBED_INPUTS,
                                 n);
    } else {
        return oai_error_set(err, NS_ERR_INVALID, legacy ? "prompt" : "input",
                             legacy ? "prompt: expected a string" : "input: expected a string or an array of strings");
    }
    if (n == 0)
        return NS_OK;
    r->embed_ = calloc((size_t)n, sizeof(*r->embed_));
    if (!r->embed_)
        return oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_IsString(in) ? in : cJSON_GetArrayItem(in, i);
        if (!cJSON_IsString(v))
            return oai_error_set(err, NS_ERR_INVALID, "input", "input[%d]: expected a string", i);
        r->embed_[i] = (struct engine_embed_input){.text = v->valuestring, .text_len = strlen(v->valuestring)};
    }
    r->req.embed = r->embed_;
    r->req.n_embed = n;
    return NS_OK;
}

int ollama_embed_parse(const char *json, size_t len, bool legacy, struct oai_request *r, struct oai_error *err)
{
    memset(r, 0, sizeof(*r));
    engine_request_init(&r->req);
    if (len == 0)
        return oai_error_set(err, NS_ERR_INVALID, NULL, "missing request body");
    r->root_ = cJSON_ParseWithLength(json, len);
    if (!r->root_)
        return oai_error_set(err, NS_ERR_INVALID, NULL, "the request body is not valid JSON");
    int rc = ol_embed(r->root_, legacy, r, err);
    if (rc != NS_OK)
        oai_request_release(r);
    return rc;
}

static cJSON *ol_vector(const float *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; a && k < n; k++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[k]));
    return a;
}

cJSON *ollama_embed_answer(bool legacy, const char *model, const struct engine_result *res, double t_start)
{
    cJSON *o = cJSON_CreateObject();
    int n = res && res->embedding ? res->n_embed : 0, dim = res ? res->n_embd : 0;
    if (legacy) {
        cJSON_AddItemToObject(o, "embedding", n ? ol_vector(res->embedding, dim) : cJSON_CreateArray());
        return o;
    }
    cJSON_AddStringToObject(o, "model", model);
    cJSON *all = cJSON_AddArrayToObject(o, "embeddings");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(all, ol_vector(res->embedding + (size_t)i * (size_t)dim, dim));
    /* as ollama_final: load_duration is the time queued before the engine took the inputs */
    ol_ns(o, "total_duration", res ? res->t_end - t_start : 0);
    ol_ns(o, "load_duration", res ? res->t_admit - t_start : 0);
    cJSON_AddNumberToObject(o, "prompt_eval_count", res ? res->prompt_tokens : 0);
    return o;
}

int ollama_check_num_ctx(const struct ollama_extra *ox, int n_ctx_seq, struct oai_error *err)
{
    if (ox->num_ctx > n_ctx_seq)
        return oai_error_set(err, NS_ERR_INVALID, "options",
                             "options.num_ctx: %d is more than the %d tokens of context each request has on this "
                             "server (set at start with --ctx and --parallel)",
                             ox->num_ctx, n_ctx_seq);
    return NS_OK;
}

int ollama_model_field(const char *json, size_t len, char *out, size_t n, struct oai_error *err)
{
    if (len == 0)
        return oai_error_set(err, NS_ERR_INVALID, NULL, "missing request body");
    cJSON *body = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        return oai_error_set(err, NS_ERR_INVALID, NULL, "the request body must be a JSON object");
    }
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (!ol_set(m))
        m = cJSON_GetObjectItemCaseSensitive(body, "name");
    int rc = NS_OK;
    if (!cJSON_IsString(m) || !m->valuestring[0])
        rc = oai_error_set(err, NS_ERR_INVALID, "model", "model is required");
    else if ((size_t)snprintf(out, n, "%s", m->valuestring) >= n)
        rc = oai_error_set(err, NS_ERR_INVALID, "model", "model: the name is too long");
    cJSON_Delete(body);
    return rc;
}

bool ollama_name_matches(const char *served, const char *requested)
{
    size_t n = strlen(served);
    return strncmp(served, requested, n) == 0 && (requested[n] == '\0' || strcmp(requested + n, ":latest") == 0);
}

/* ---- answers ------------------------------------------------------------------------ */


/* RFC 3339 in UTC with microseconds, as Ollama writes times: "2024-12-06T00:48:09.983619Z" */
static void ol_time(cJSON *o, const char *key, time_t sec, long nsec)
{
    struct tm tm;
    char day[32], out[64];
    gmtime_r(&sec, &tm);
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, sizeof(out), "%s.%06dZ", day, (int)((unsigned long)nsec % 1000000000ul / 1000));
    cJSON_AddStringToObject(o, key, out);
}

static cJSON *ol_base(const char *model)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model);
    ol_time(o, "created_at", now.tv_sec, now.tv_nsec);
    return o;
}

static void ol_text(cJSON *o, bool chat, const char *text, size_t n)
{
    char *t = strndup(text ? text : "", n);
    if (chat) {
        cJSON *m = cJSON_AddObjectToObject(o, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", t ? t : "");
    } else {
        cJSON_AddStringToObject(o, "response", t ? t : "");
    }
    free(t);
}

cJSON *ollama_chunk(bool chat, const char *model, const char *text, size_t n)
{
    cJSON *o = ol_base(model);
    ol_text(o, chat, text, n);
    cJSON_AddFalseToObject(o, "done");
    return o;
}

static void ol_ns(cJSON *o, const char *key, double seconds)
{
    cJSON_AddNumberToObject(o, key, seconds > 0 ? floor(seconds * 1e9) : 0);
}

/* a chunk's or an answer's thinking, and (chat) its tool calls */
static void ol_extras(cJSON *o, bool chat, const char *thinking, size_t n, const struct engine_tool_call *calls,
                      int n_calls)
{
    cJSON *m = chat ? cJSON_GetObjectItemCaseSensitive(o, "message") : o;
    if (thinking && n) {
        char *t = strndup(thinking, n);
        cJSON_AddStringToObject(m, "thinking", t ? t : "");
        free(t);
    }
    if (!chat || n_calls <= 0)
        return;
    cJSON *a = cJSON_AddArrayToObject(m, "tool_calls");
    for (int i = 0; i < n_calls; i++) {
        cJSON *c = cJSON_CreateObject(), *f = cJSON_AddObjectToObject(c, "function");
        cJSON_AddNumberToObject(f, "index", i);
        cJSON_AddStringToObject(f, "name", calls[i].name);
        cJSON *args = cJSON_Parse(calls[i].arguments);
        cJSON_AddItemToObject(f, "arguments", cJSON_IsObject(args) ? args : (cJSON_Delete(args), cJSON_CreateObject()));
        cJSON_AddItemToArray(a, c);
    }
}

cJSON *ollama_final(bool chat, const char *model, const struct engine_result *res, const char *text, double t_start)
{
    cJSON *o = ol_base(model);
    ol_text(o, chat, text, text ? strlen(text) : 0);
    /* the whole answer's thinking when it is not streamed (text given); calls always here */
    ol_extras(o, chat, text && text[0] ? res->reasoning : NULL, res->reasoning_len, res->tool_calls, res->n_tool_calls);
    cJSON_AddTrueToObject(o, "done");
    cJSON_AddStringToObject(o, "done_reason", res->finish == ENGINE_FINISH_LENGTH ? "length" : "stop");
    /* models are loaded at start: load_duration is the time queued before the engine took
     * the request, which is what a client waits for in its place */
    double t_first = res->t_first >= res->t_admit ? res->t_first : res->t_end;
    ol_ns(o, "total_duration", res->t_end - t_start);
    ol_ns(o, "load_duration", res->t_admit - t_start);
    cJSON_AddNumberToObject(o, "prompt_eval_count", res->prompt_tokens);
    ol_ns(o, "prompt_eval_duration", t_first - res->t_admit);
    cJSON_AddNumberToObject(o, "eval_count", res->completion_tokens);
    ol_ns(o, "eval_duration", res->t_end - t_first);
    return o;
}

cJSON *ollama_load_answer(bool chat, const char *model)
{
    cJSON *o = ol_base(model);
    if (chat)
        ol_text(o, true, "", 0);
    else
        cJSON_AddStringToObject(o, "response", "");
    cJSON_AddTrueToObject(o, "done");
    cJSON_AddStringToObject(o, "done_reason", "load");
    return o;
}

cJSON *ollama_error(const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", message);
    return o;
}

/* ---- models ------------------------------------------------------------------------- */

void ollama_parameter_size(uint64_t n_params, char *out, size_t n)
{
    double v = (double)n_params;
    if (v >= 1e9)
        snprintf(out, n, v / 1e9 == floor(v / 1e9) ? "%.0fB" : "%.1fB", v / 1e9);
    else if (v >= 1e6)
        snprintf(out, n, v / 1e6 == floor(v / 1e6) ? "%.0fM" : "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(out, n, "%.0fK", v / 1e3);
    else
        snprintf(out, n, "%llu", (unsigned long long)n_params);
}

const char *ollama_quantization(int file_type)
{
    /* indexed by llama_ftype; Ollama's file types use the same numbers and these names */
    static const char *const names[] = {
        "F32",     "F16",    "Q4_0",   "Q4_1",   NULL,     NULL,    NULL,    "Q8_0",   "Q5_0",   "Q5_1",  "Q2_K",
        "Q3_K_S",  "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ2_XXS", "IQ2_XS", "Q2_K_S",
        "IQ3_XS",  "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",  "IQ3_M", "IQ2_S",  "IQ2_M",  "IQ4_XS", "IQ1_M", "BF16",
        NULL,      NULL,     NULL,     "TQ1_0",  "TQ2_0",  "MXFP4", "NVFP4",  "Q1_0",   "Q2_0",
    };
    if (file_type < 0 || (size_t)file_type >= sizeof(names) / sizeof(names[0]) || !names[file_type])
        return "unknown";
    return names[file_type];
}

static cJSON *ol_details(const struct engine_info *in)
{
    char psize[32];
    ollama_parameter_size(in->n_params, psize, sizeof(psize));
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "parent_model", "");
    cJSON_AddStringToObject(d, "format", "gguf");
    cJSON_AddStringToObject(d, "family", in->arch);
    cJSON *fams = cJSON_AddArrayToObject(d, "families");
    cJSON_AddItemToArray(fams, cJSON_CreateString(in->arch));
    cJSON_AddStringToObject(d, "parameter_size", psize);
    cJSON_AddStringToObject(d, "quantization_level", ollama_quantization(in->file_type));
    return d;
}

/* the file's absolute path (the model's identity whatever the server's working directory)
 * and its stat; a file gone since loading is still served, with size 0 */
static void ol_stat(const char *path, char abs[PATH_MAX], struct stat *sb)
{
    if (!realpath(path, abs))
        snprintf(abs, PATH_MAX, "%s", path);
    if (stat(abs, sb) != 0)
        memset(sb, 0, sizeof(*sb));
}

/* name, model, size, digest, details: what tags and ps have in common */
static cJSON *ol_model_entry(const struct ollama_model *m, const char *abs, const struct stat *sb)
{
    char id[PATH_MAX + 64], digest[65];
    int n = snprintf(id, sizeof(id), "%s\n%lld\n%lld.%09ld", abs, (long long)sb->st_size,
                     (long long)sb->st_mtim.tv_sec, (long)sb->st_mtim.tv_nsec);
    sha256_hex(id, n > 0 && (size_t)n < sizeof(id) ? (size_t)n : strlen(id), digest);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", m->name);
    cJSON_AddStringToObject(o, "model", m->name);
    cJSON_AddNumberToObject(o, "size", (double)sb->st_size);
    cJSON_AddStringToObject(o, "digest", digest);
    cJSON_AddItemToObject(o, "details", ol_details(&m->info));
    return o;
}

cJSON *ollama_list(const struct ollama_model *models, int n, bool running)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "models");
    for (int i = 0; i < n; i++) {
        char abs[PATH_MAX];
        struct stat sb;
        ol_stat(models[i].path, abs, &sb);
        cJSON *e = ol_model_entry(&models[i], abs, &sb);
        if (running) {
            /* loaded for as long as the server runs */
            cJSON_AddStringToObject(e, "expires_at", "9999-12-31T23:59:59Z");
            cJSON_AddNumberToObject(e, "size_vram", 0); /* the engine runs on the CPU */
            cJSON_AddNumberToObject(e, "context_length", models[i].info.n_ctx_seq);
        } else {
            ol_time(e, "modified_at", sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec);
        }
        cJSON_AddItemToArray(arr, e);
    }
    return o;
}

cJSON *ollama_show(const struct ollama_model *m)
{
    const struct engine_info *in = &m->info;
    char abs[PATH_MAX], text[PATH_MAX + 400];
    struct stat sb;
    ol_stat(m->path, abs, &sb);
    cJSON *o = cJSON_CreateObject();
    snprintf(text, sizeof(text), "# Modelfile generated by nightshift for \"%.200s\"\nFROM %s\nPARAMETER num_ctx %d\n",
             m->name, abs, in->n_ctx_seq);
    cJSON_AddStringToObject(o, "modelfile", text);
    snprintf(text, sizeof(text), "%-30s %d", "num_ctx", in->n_ctx_seq);
    cJSON_AddStringToObject(o, "parameters", text);
    cJSON_AddStringToObject(o, "template", m->chat_template ? m->chat_template : "");
    cJSON_AddItemToObject(o, "details", ol_details(in));
    cJSON *mi = cJSON_AddObjectToObject(o, "model_info");
    cJSON_AddStringToObject(mi, "general.architecture", in->arch);
    cJSON_AddNumberToObject(mi, "general.file_type", in->file_type);
    cJSON_AddNumberToObject(mi, "general.parameter_count", (double)in->n_params);
    char key[64];
    snprintf(key, sizeof(key), "%s.context_length", in->arch);
    cJSON_AddNumberToObject(mi, key, in->n_ctx_train);
    snprintf(key, sizeof(key), "%s.vocab_size", in->arch);
    cJSON_AddNumberToObject(mi, key, in->n_vocab);
    cJSON *caps = cJSON_AddArrayToObject(o, "capabilities");
    cJSON_AddItemToArray(caps, cJSON_CreateString("completion"));
    ol_time(o, "modified_at", sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec);
    return o;
}

cJSON *ollama_version(void)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", OLLAMA_API_VERSION);
    return o;
}

/* ---- streaming (dialect.h, stream.h) ------------------------------------------------------ */

/* the engine thread: choice 0's text and thinking as whole NDJSON lines (tool calls come
 * whole in the last line, as Ollama sends them) */
static void ollama_stream_delta(struct stream *s, const struct engine_delta *d)
{
    if (d->index != 0 || (!d->len && !d->reasoning_len))
        return;
    cJSON *o = ollama_chunk(s->chat, s->model, d->text, d->len);
    ol_extras(o, s->chat, d->reasoning, d->reasoning_len, NULL, 0);
    stream_ndjson(&s->pending, o);
}

/* Ollama's stream: one JSON object a line, the last with done: true (or an error) */
static cJSON *ollama_dialect_answer(const struct stream *s, const struct engine_result *res)
{
    return ollama_final(s->chat, s->model, res, res->text, s->t_start);
}

static int ollama_stream_next(struct stream *s, struct buf *out)
{
    if (s->phase == 5)
        return STREAM_END;
    int step = stream_pass_pending(s, out);
    if (step != STREAM_END)
        return step;
    stream_ndjson(out, s->res->status != NS_OK ? ollama_error(s->res->message)
                                               : ollama_final(s->chat, s->model, s->res, "", s->t_start));
    s->phase = 5;
    return STREAM_MORE;
}

/* ---- the Ollama dialect (dialect.h): its routes only, no batches ------------------------- */

static cJSON *ollama_dialect_error(int status, const char *message, const char *param, const char *code)
{
    (void)status;
    (void)param;
    (void)code;
    return ollama_error(message);
}

static int ollama_dialect_parse(const char *body, size_t len, const struct dialect_parse *p, struct oai_request *r,
                                struct oai_error *err)
{
    struct ollama_extra ox;
    int rc = ollama_request_parse(body, len, p->chat, r, &ox, err);
    if (rc == NS_OK) {
        r->ctx_wanted = ox.num_ctx;
        r->load_only = ox.load_only;
    }
    return rc;
}

static void ollama_dialect_model_missing(char *out, size_t n, const char *model)
{
    snprintf(out, n, "model \"%.100s\" not found", model ? model : "");
}

/* num_ctx over the loaded context is an error; a body without prompt or messages only asks
 * for the model to be loaded (it is) */
static int ollama_dialect_admit(const struct oai_request *r, int n_ctx_seq, cJSON **answer, struct oai_error *err)
{
    struct ollama_extra ox = {.num_ctx = r->ctx_wanted, .load_only = r->load_only};
    int rc = n_ctx_seq > 0 ? ollama_check_num_ctx(&ox, n_ctx_seq, err) : NS_OK;
    if (rc == NS_OK && r->load_only && !(*answer = ollama_load_answer(r->chat, r->model)))
        rc = oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
    return rc;
}

const struct dialect dialect_ollama = {
    .name = "ollama",
    .error = ollama_dialect_error,
    .parse = ollama_dialect_parse,
    .model_matches = ollama_name_matches,
    .model_missing = ollama_dialect_model_missing,
    .admit = ollama_dialect_admit,
    .id_prefix = {"cmpl-", "chatcmpl-"},
    .auth_message = "unauthorized: pass the API key as 'Authorization: Bearer KEY'",
    .batch_result = NULL,
    .body_any_type = true,
    .answer = ollama_dialect_answer,
    .answer_passes_raw = true,
    .stream_type = "application/x-ndjson",
    .stream_delta = ollama_stream_delta,
    .stream_next = ollama_stream_next,
};
