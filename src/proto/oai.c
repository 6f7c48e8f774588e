/*
 * oai.c — see oai.h: OpenAI request bodies in (chat, completions, embeddings; tools,
 * response formats, logprobs); oai_out.c writes the answers. Error messages follow
 * OpenAI's wording where one exists
 * ("Invalid 'temperature': decimal above maximum value. ..."), so clients that match on
 * them keep working.
 */
#include "oai.h"

#include "jsonschema.h"
#include "../util/base64.h"
#include "../util/buf.h"
#include "../util/status.h"
#include "../util/utf8.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>

#define OAI_TEXT_MAX (64u << 20)

int oai_error_set(struct oai_error *err, int status, const char *param, const char *fmt, ...)
{
    err->status = status;
    err->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return status;
}

/* Fill b with the kernel's random bytes. getrandom may return fewer bytes than asked for
 * over 256 (or fail with EINTR) when a signal arrives, so it is called until b is full;
 * rand() fills only what the kernel could not give at all (no getrandom). */
static void oai_random_fill(unsigned char *b, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(b + got, n - got, 0);
        if (r > 0)
            got += (size_t)r;
        else if (r < 0 && errno == EINTR)
            continue;
        else
            break;
    }
    for (; got < n; got++)
        b[got] = (unsigned char)rand();
}

/* Random bytes for ids come from a per-thread pool refilled from getrandom 4 KB at a time:
 * one syscall per ~170 ids instead of one per id (every forwarded request makes one, and
 * every batch line two). The bytes are the kernel's CSPRNG output, each handed out once,
 * so ids stay unpredictable (API keys are made here too). nightshift never forks, so no
 * two processes share a pool. */
static void oai_random_bytes(unsigned char *out, size_t n)
{
    static _Thread_local unsigned char pool[4096];
    static _Thread_local size_t left;
    if (n > sizeof(pool)) {
        oai_random_fill(out, n);
        return;
    }
    if (left < n) {
        oai_random_fill(pool, sizeof(pool));
        left = sizeof(pool);
    }
    memcpy(out, pool + left - n, n);
    memset(pool + left - n, 0, n);
    left -= n;
}

void oai_make_id(char *out, size_t n, const char *prefix)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rnd[24];
    oai_random_bytes(rnd, sizeof(rnd));
    size_t pl = strlen(prefix);
    if (pl + 1 >= n) {
        snprintf(out, n, "%s", prefix);
        return;
    }
    memcpy(out, prefix, pl);
    size_t j = pl;
    for (size_t i = 0; i < sizeof(rnd) && j + 1 < n; i++)
        out[j++] = al[rnd[i] % (sizeof(al) - 1)];
    out[j] = '\0';
}

char *oai_request_own(struct oai_request *r, char *s)
{
    if (!s)
        return NULL;
    char **o = realloc(r->owned_, sizeof(*o) * (size_t)(r->n_owned_ + 1));
    if (!o) {
        free(s);
        return NULL;
    }
    r->owned_ = o;
    o[r->n_owned_++] = s;
    return s;
}

void oai_request_release(struct oai_request *r)
{
    free(r->embed_);
    cJSON_Delete(r->root_);
    cJSON_Delete(r->extra_);
    free(r->msgs_);
    free(r->bias_);
    for (int i = 0; i < r->n_owned_; i++)
        free(r->owned_[i]);
    free(r->owned_);
    memset(r, 0, sizeof(*r));
}

/* numeric field in [lo, hi]; absent or null leaves *out alone */
static int oai_number(const cJSON *body, const char *name, double lo, double hi, double *out, bool *present,
                      struct oai_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    if (present)
        *present = false;
    if (!v || cJSON_IsNull(v))
        return NS_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return oai_error_set(err, NS_ERR_INVALID, name, "Invalid type for '%s': expected a number.", name);
    if (v->valuedouble < lo)
        return oai_error_set(err, NS_ERR_INVALID, name,
                        "Invalid '%s': value below minimum. Expected a value >= %g, but got %g instead.", name, lo,
                        v->valuedouble);
    if (v->valuedouble > hi)
        return oai_error_set(err, NS_ERR_INVALID, name,
                        "Invalid '%s': value above maximum. Expected a value <= %g, but got %g instead.", name, hi,
                        v->valuedouble);
    *out = v->valuedouble;
    if (present)
        *present = true;
    return NS_OK;
}

static int oai_integer(const cJSON *body, const char *name, double lo, double hi, long long *out, bool *present,
                       struct oai_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    if (present)
        *present = false;
    if (!v || cJSON_IsNull(v))
        return NS_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || !isfinite(v->valuedouble))
        return oai_error_set(err, NS_ERR_INVALID, name, "Invalid type for '%s': expected an integer.", name);
    if (v->valuedouble < lo)
        return oai_error_set(err, NS_ERR_INVALID, name,
                        "Invalid '%s': integer below minimum value. Expected a value >= %.0f, but got %.0f instead.",
                        name, lo, v->valuedouble);
    if (v->valuedouble > hi)
        return oai_error_set(err, NS_ERR_INVALID, name,
                        "Invalid '%s': integer above maximum value. Expected a value <= %.0f, but got %.0f instead.",
                        name, hi, v->valuedouble);
    *out = (long long)v->valuedouble;
    if (present)
        *present = true;
    return NS_OK;
}

static int oai_boolean(const cJSON *body, const char *name, bool *out, struct oai_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    if (!v || cJSON_IsNull(v))
        return NS_OK;
    if (!cJSON_IsBool(v))
        return oai_error_set(err, NS_ERR_INVALID, name, "Invalid type for '%s': expected a boolean.", name);
    *out = cJSON_IsTrue(v);
    return NS_OK;
}

/* message content: a string, or an array of text parts joined by newlines */
static int oai_content(struct oai_request *r, const cJSON *c, int i, const char **out, struct oai_error *err)
{
    if (!c || cJSON_IsNull(c)) {
        *out = "";
        return NS_OK;
    }
    if (cJSON_IsString(c)) {
        *out = c->valuestring;
        return NS_OK;
    }
    if (!cJSON_IsArray(c))
        return oai_error_set(err, NS_ERR_INVALID, "messages",
                        "Invalid type for 'messages[%d].content': expected a string or an array of content parts.", i);
    struct buf b;
    buf_init(&b, OAI_TEXT_MAX);
    int k = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, c)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type)) {
            buf_release(&b);
            return oai_error_set(err, NS_ERR_INVALID, "messages",
                            "Invalid 'messages[%d].content[%d]': expected an object with a 'type'.", i, k);
        }
        if (strcmp(type->valuestring, "text") != 0) {
            buf_release(&b);
            return oai_error_set(err, NS_ERR_UNSUPPORTED, "messages",
                            "Invalid 'messages[%d].content[%d]': content parts of type '%.40s' are not supported "
                            "by this model; only 'text' parts are.",
                            i, k, type->valuestring);
        }
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(text)) {
            buf_release(&b);
            return oai_error_set(err, NS_ERR_INVALID, "messages",
                            "Missing required parameter: 'messages[%d].content[%d].text'.", i, k);
        }
        if ((k && buf_append(&b, "\n", 1)) || buf_appends(&b, text->valuestring)) {
            buf_release(&b);
            return oai_error_set(err, NS_ERR_TOO_LARGE, "messages", "'messages[%d].content' is too long.", i);
        }
        k++;
    }
    char *s = buf_detach(&b);
    if (!s || !oai_request_own(r, s))
        return oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
    *out = s;
    return NS_OK;
}

/* An assistant message's tool_calls, checked: they reach the model's template as they came
 * (the chat JSON), which shows them the way the model was trained to read them */
static int oai_message_calls(const cJSON *msg, const char *role, int i, struct oai_error *err)
{
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls"), *c;
    if (!calls || cJSON_IsNull(calls))
        return NS_OK;
    if (strcmp(role, "assistant") != 0)
        return oai_error_set(err, NS_ERR_INVALID, "messages",
                             "Invalid 'messages[%d].tool_calls': only assistant messages carry tool calls.", i);
    if (!cJSON_IsArray(calls))
        return oai_error_set(err, NS_ERR_INVALID, "messages", "Invalid type for 'messages[%d].tool_calls': expected an array.", i);
    int k = 0;
    cJSON_ArrayForEach(c, calls)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(c, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (!cJSON_IsObject(c) || !cJSON_IsString(name) || !cJSON_IsString(args) ||
            (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "function") == 0)))
            return oai_error_set(err, NS_ERR_INVALID, "messages",
                                 "Invalid 'messages[%d].tool_calls[%d]': expected {\"id\", \"type\": \"function\", "
                                 "\"function\": {\"name\": string, \"arguments\": string}}.",
                                 i, k);
        k++;
    }
    return NS_OK;
}

static int oai_messages(struct oai_request *r, const cJSON *body, struct oai_error *err)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!m)
        return oai_error_set(err, NS_ERR_INVALID, "messages", "Missing required parameter: 'messages'.");
    if (!cJSON_IsArray(m))
        return oai_error_set(err, NS_ERR_INVALID, "messages", "Invalid type for 'messages': expected an array.");
    int n = cJSON_GetArraySize(m);
    if (n == 0)
        return oai_error_set(err, NS_ERR_INVALID, "messages",
                        "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
                        "empty array instead.");
    r->msgs_ = calloc((size_t)n, sizeof(*r->msgs_));
    if (!r->msgs_)
        return oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
    int i = 0;
    const cJSON *msg;
    cJSON_ArrayForEach(msg, m)
    {
        if (!cJSON_IsObject(msg))
            return oai_error_set(err, NS_ERR_INVALID, "messages", "Invalid type for 'messages[%d]': expected an object.", i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        if (!role)
            return oai_error_set(err, NS_ERR_INVALID, "messages", "Missing required parameter: 'messages[%d].role'.", i);
        if (!cJSON_IsString(role))
            return oai_error_set(err, NS_ERR_INVALID, "messages", "Invalid type for 'messages[%d].role': expected a string.", i);
        const char *rs = role->valuestring;
        if (strcmp(rs, "developer") == 0)
            rs = "system"; /* chat templates know system, not developer */
        else if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") && strcmp(rs, "tool"))
            return oai_error_set(err, NS_ERR_INVALID, "messages",
                            "Invalid value: '%.40s'. Supported values are: 'system', 'assistant', 'user', 'tool', "
                            "and 'developer'.",
                            role->valuestring);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
        if (!content && strcmp(rs, "assistant") != 0)
            return oai_error_set(err, NS_ERR_INVALID, "messages", "Missing required parameter: 'messages[%d].content'.", i);
        const cJSON *tcid = cJSON_GetObjectItemCaseSensitive(msg, "tool_call_id");
        if (tcid && !cJSON_IsNull(tcid) && !cJSON_IsString(tcid))
            return oai_error_set(err, NS_ERR_INVALID, "messages",
                                 "Invalid type for 'messages[%d].tool_call_id': expected a string.", i);
        int rc = oai_content(r, content, i, &r->msgs_[i].content, err);
        if (rc)
            return rc;
        if ((rc = oai_message_calls(msg, rs, i, err)))
            return rc;
        r->msgs_[i].role = rs;
        i++;
    }
    r->req.messages = r->msgs_;
    r->req.n_messages = n;
    return NS_OK;
}

static int oai_prompt(struct oai_request *r, const cJSON *body, struct oai_error *err)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    if (!p)
        return oai_error_set(err, NS_ERR_INVALID, "prompt", "Missing required parameter: 'prompt'.");
    if (cJSON_IsString(p)) {
        r->req.prompt = p->valuestring;
        return NS_OK;
    }
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(cJSON_GetArrayItem(p, 0))) {
        r->req.prompt = cJSON_GetArrayItem(p, 0)->valuestring;
        return NS_OK;
    }
    if (cJSON_IsArray(p))
        return oai_error_set(err, NS_ERR_UNSUPPORTED, "prompt",
                        "Invalid 'prompt': only a single string prompt is supported; send one request per prompt.");
    return oai_error_set(err, NS_ERR_INVALID, "prompt", "Invalid type for 'prompt': expected a string.");
}

static int oai_stop(struct oai_request *r, const cJSON *body, struct oai_error *err)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(body, "stop");
    if (!s || cJSON_IsNull(s))
        return NS_OK;
    if (cJSON_IsString(s)) {
        if (s->valuestring[0])
            r->req.stop[r->req.n_stop++] = s->valuestring;
        return NS_OK;
    }
    if (!cJSON_IsArray(s))
        return oai_error_set(err, NS_ERR_INVALID, "stop", "Invalid type for 'stop': expected a string or an array of strings.");
    if (cJSON_GetArraySize(s) > ENGINE_MAX_STOP)
        return oai_error_set(err, NS_ERR_INVALID, "stop",
                        "Invalid 'stop': array too long. Expected an array with maximum length %d, but got an array "
                        "with length %d instead.",
                        ENGINE_MAX_STOP, cJSON_GetArraySize(s));
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, s)
    {
        if (!cJSON_IsString(it))
            return oai_error_set(err, NS_ERR_INVALID, "stop", "Invalid type for 'stop[%d]': expected a string.", i);
        if (it->valuestring[0])
            r->req.stop[r->req.n_stop++] = it->valuestring;
        i++;
    }
    return NS_OK;
}

/* fields known to each endpoint; anything else is rejected like OpenAI does */
static const char *const oai_chat_fields[] = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop", "seed",
    "presence_penalty", "frequency_penalty", "stream", "stream_options", "logprobs", "top_logprobs", "logit_bias",
    "response_format", "tools", "tool_choice", "parallel_tool_calls", "user", "metadata", "store", "service_tier",
    "reasoning_effort", "modalities", "prediction", "audio", "functions", "function_call", "web_search_options",
    "safety_identifier", "prompt_cache_key", "verbosity",
    /* extensions, as vLLM and llama-server accept them */
    "top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos", "chat_template_kwargs", "reasoning_format",
    NULL};
static const char *const oai_completion_fields[] = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "presence_penalty",
    "frequency_penalty", "stream", "stream_options", "logprobs", "echo", "best_of", "logit_bias", "suffix", "user",
    "top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos", NULL};

static int oai_check_fields(const cJSON *body, bool chat, struct oai_error *err)
{
    const char *const *known = chat ? oai_chat_fields : oai_completion_fields;
    const cJSON *f;
    cJSON_ArrayForEach(f, body)
    {
        bool ok = false;
        for (int i = 0; known[i] && !ok; i++)
            ok = strcmp(known[i], f->string) == 0;
        if (!ok)
            return oai_error_set(err, NS_ERR_INVALID, NULL, "Unrecognized request argument supplied: %.64s", f->string);
    }
    return NS_OK;
}

/* parameters that are valid OpenAI but need work the local engine does not do yet */
static int oai_check_unsupported(const cJSON *body, bool chat, struct oai_error *err)
{
    const cJSON *v;
    if (chat) {
        if ((v = cJSON_GetObjectItemCaseSensitive(body, "functions")) && !cJSON_IsNull(v))
            return oai_error_set(err, NS_ERR_UNSUPPORTED, "functions", "'functions' is not supported by the local engine yet.");
        if ((v = cJSON_GetObjectItemCaseSensitive(body, "audio")) && !cJSON_IsNull(v))
            return oai_error_set(err, NS_ERR_UNSUPPORTED, "audio", "'audio' output is not supported by this model.");
        if ((v = cJSON_GetObjectItemCaseSensitive(body, "modalities")) && cJSON_IsArray(v)) {
            const cJSON *it;
            cJSON_ArrayForEach(it, v) if (!cJSON_IsString(it) || strcmp(it->valuestring, "text") != 0) return oai_error_set(
                err, NS_ERR_UNSUPPORTED, "modalities", "only the 'text' modality is supported by this model.");
        }
    } else {
        if ((v = cJSON_GetObjectItemCaseSensitive(body, "echo")) && cJSON_IsTrue(v))
            return oai_error_set(err, NS_ERR_UNSUPPORTED, "echo", "'echo' is not supported by the local engine yet.");
        if ((v = cJSON_GetObjectItemCaseSensitive(body, "suffix")) && !cJSON_IsNull(v))
            return oai_error_set(err, NS_ERR_UNSUPPORTED, "suffix", "'suffix' is not supported by this model.");
        if ((v = cJSON_GetObjectItemCaseSensitive(body, "best_of")) && !cJSON_IsNull(v) &&
            !(cJSON_IsNumber(v) && v->valuedouble == 1))
            return oai_error_set(err, NS_ERR_UNSUPPORTED, "best_of", "'best_of' other than 1 is not supported yet.");
    }
    return NS_OK;
}

/* r->req.grammar from a JSON Schema; `what` names it in errors */
static int oai_grammar(struct oai_request *r, const cJSON *schema, const char *param, const char *what,
                       struct oai_error *err)
{
    char msg[300], *g = NULL;
    int rc = jsonschema_to_gbnf(schema, &g, msg, sizeof(msg));
    if (rc == NS_ERR_NOMEM)
        return oai_error_set(err, rc, NULL, "out of memory");
    if (rc)
        return oai_error_set(err, rc == NS_ERR_TOO_LARGE ? NS_ERR_INVALID : rc, param, "Invalid '%s': %s.", what, msg);
    if (!oai_request_own(r, g))
        return oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
    r->req.grammar = g;
    return NS_OK;
}

/* response_format: text, json_object (any JSON object) or json_schema */
static int oai_response_format(struct oai_request *r, const cJSON *body, struct oai_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "response_format");
    if (!v || cJSON_IsNull(v))
        return NS_OK;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "type");
    if (!cJSON_IsObject(v) || !cJSON_IsString(t))
        return oai_error_set(err, NS_ERR_INVALID, "response_format", "Invalid 'response_format': expected an object with a 'type'.");
    if (strcmp(t->valuestring, "text") == 0)
        return NS_OK;
    if (strcmp(t->valuestring, "json_object") == 0) {
        static const char any_object[] = "{\"type\":\"object\"}";
        cJSON *o = cJSON_Parse(any_object);
        if (!o)
            return oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
        int rc = oai_grammar(r, o, "response_format", "response_format", err);
        cJSON_Delete(o);
        return rc;
    }
    if (strcmp(t->valuestring, "json_schema") != 0)
        return oai_error_set(err, NS_ERR_INVALID, "response_format",
                             "Invalid 'response_format.type': '%.40s'. Supported values are: 'text', 'json_object' and "
                             "'json_schema'.",
                             t->valuestring);
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(v, "json_schema");
    if (!js)
        return oai_error_set(err, NS_ERR_INVALID, "response_format", "Missing required parameter: 'response_format.json_schema'.");
    if (!cJSON_IsObject(js))
        return oai_error_set(err, NS_ERR_INVALID, "response_format",
                             "Invalid type for 'response_format.json_schema': expected an object.");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(js, "name");
    if (!name)
        return oai_error_set(err, NS_ERR_INVALID, "response_format",
                             "Missing required parameter: 'response_format.json_schema.name'.");
    if (!cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) > 64 ||
        strspn(name->valuestring, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
            strlen(name->valuestring))
        return oai_error_set(err, NS_ERR_INVALID, "response_format",
                             "Invalid 'response_format.json_schema.name': expected 1 to 64 characters of a-z, A-Z, "
                             "0-9, '_' and '-'.");
    const cJSON *strict = cJSON_GetObjectItemCaseSensitive(js, "strict");
    if (strict && !cJSON_IsNull(strict) && !cJSON_IsBool(strict))
        return oai_error_set(err, NS_ERR_INVALID, "response_format",
                             "Invalid type for 'response_format.json_schema.strict': expected a boolean.");
    /* strict or not, the output is held to the schema: the grammar cannot do less */
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
    cJSON *any = NULL;
    if (!schema || cJSON_IsNull(schema))
        schema = any = cJSON_CreateTrue();
    if (!schema)
        return oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
    int rc = oai_grammar(r, schema, "response_format", "response_format.json_schema.schema", err);
    cJSON_Delete(any);
    return rc;
}

int oai_tool_schema_check(const cJSON *schema, cJSON **held, const char *param, const char *what, struct oai_error *err)
{
    *held = NULL;
    if (!schema || cJSON_IsNull(schema))
        return NS_OK;
    char msg[300], *g = NULL;
    int rc = jsonschema_convert(schema, &g, held, msg, sizeof(msg));
    free(g);
    if (rc == NS_ERR_NOMEM)
        return oai_error_set(err, rc, NULL, "out of memory");
    if (rc)
        return oai_error_set(err, rc == NS_ERR_TOO_LARGE ? NS_ERR_INVALID : rc, param, "%s: %s", what, msg);
    return NS_OK;
}

int oai_request_set_chat(struct oai_request *r, cJSON *chat, int rc, struct oai_error *err)
{
    char *text = rc || !chat ? NULL : cJSON_PrintUnformatted(chat);
    cJSON_Delete(chat);
    if (rc)
        return rc;
    if (!text || !oai_request_own(r, text))
        return oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
    r->req.chat = text;
    return NS_OK;
}

/* tools and tool_choice, checked, into the chat JSON (chat): the model's template shows
 * the tools in its own format, and its family's grammar and parser hold and read the calls
 * (engine/chat.h). That grammar is made from the parameters in the chat JSON, so they go
 * there as the guard rewrote them (oai_tool_schema_check). A named tool_choice is
 * "required" among that one tool. */
static int oai_tools(struct oai_request *r, const cJSON *body, cJSON *chat, struct oai_error *err)
{
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(body, "tools");
    const cJSON *choice = cJSON_GetObjectItemCaseSensitive(body, "tool_choice");
    if (choice && cJSON_IsNull(choice))
        choice = NULL;
    if (!tools || cJSON_IsNull(tools) || (cJSON_IsArray(tools) && !tools->child))
        return NS_OK; /* tool_choice without tools: no call can be made (documented) */
    if (!cJSON_IsArray(tools))
        return oai_error_set(err, NS_ERR_INVALID, "tools", "Invalid type for 'tools': expected an array.");
    /* each tool as the chat JSON gets it: as sent (what the template shows), and its
     * parameters as the guard rewrote them in held_parameters (what the grammar holds the
     * calls to; engine/chat.cpp) */
    cJSON *held_tools = cJSON_CreateArray();
    if (!held_tools)
        return oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
    int i = 0, rc = NS_OK;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        if (!cJSON_IsObject(t) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0 ||
            !cJSON_IsObject(fn)) {
            rc = oai_error_set(err, NS_ERR_INVALID, "tools",
                               "Invalid 'tools[%d]': expected {\"type\": \"function\", \"function\": {...}}.", i);
            goto done;
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (!cJSON_IsString(name) || !name->valuestring[0]) {
            rc = oai_error_set(err, NS_ERR_INVALID, "tools", "Missing required parameter: 'tools[%d].function.name'.", i);
            goto done;
        }
        /* the schema must be one the grammar can hold: a 400 now, not a broken answer later */
        char what[64];
        cJSON *held = NULL;
        snprintf(what, sizeof(what), "Invalid 'tools[%d].function.parameters'", i);
        if ((rc = oai_tool_schema_check(cJSON_GetObjectItemCaseSensitive(fn, "parameters"), &held, "tools", what, err)))
            goto done;
        cJSON *copy = cJSON_Duplicate(t, 1);
        cJSON_AddItemToArray(held_tools, copy);
        if (!copy || (held && !cJSON_AddItemToObject(cJSON_GetObjectItemCaseSensitive(copy, "function"),
                                                     "held_parameters", held))) {
            cJSON_Delete(held);
            rc = oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
            goto done;
        }
        i++;
    }
    const char *mode = "auto", *want = NULL;
    if (!choice || (cJSON_IsString(choice) && strcmp(choice->valuestring, "auto") == 0)) {
        mode = "auto";
    } else if (cJSON_IsString(choice) && strcmp(choice->valuestring, "none") == 0) {
        goto done; /* an ordinary answer; the tools are not shown to the model */
    } else if (cJSON_IsString(choice) && strcmp(choice->valuestring, "required") == 0) {
        mode = "required";
    } else if (cJSON_IsObject(choice)) {
        const cJSON *ctype = cJSON_GetObjectItemCaseSensitive(choice, "type");
        const cJSON *cname = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(choice, "function"), "name");
        if (!cJSON_IsString(ctype) || strcmp(ctype->valuestring, "function") != 0 || !cJSON_IsString(cname)) {
            rc = oai_error_set(err, NS_ERR_INVALID, "tool_choice",
                               "Invalid 'tool_choice': expected {\"type\": \"function\", \"function\": {\"name\": ...}}.");
            goto done;
        }
        want = cname->valuestring;
        mode = "required";
    } else {
        rc = oai_error_set(err, NS_ERR_INVALID, "tool_choice",
                           "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or an object naming a "
                           "function.");
        goto done;
    }
    cJSON *out = cJSON_AddArrayToObject(chat, "tools");
    if (!out) {
        rc = oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
        goto done;
    }
    while (held_tools->child) {
        cJSON *h = cJSON_DetachItemViaPointer(held_tools, held_tools->child);
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(h, "function");
        if (!want || strcmp(cJSON_GetObjectItemCaseSensitive(f, "name")->valuestring, want) == 0)
            cJSON_AddItemToArray(out, h);
        else
            cJSON_Delete(h);
    }
    if (want && !out->child) {
        rc = oai_error_set(err, NS_ERR_INVALID, "tool_choice",
                           "Invalid 'tool_choice': no function named '%.64s' in 'tools'.", want);
        goto done;
    }
    cJSON_AddStringToObject(chat, "tool_choice", mode);
    r->tools = true;
done:
    cJSON_Delete(held_tools);
    return rc;
}

/* What shapes the prompt besides the messages: parallel_tool_calls, and the extensions
 * llama-server and vLLM take (chat_template_kwargs, e.g. {"enable_thinking": false};
 * reasoning_format), plus OpenAI's reasoning_effort, which templates that know it read. */
static int oai_chat_options(const cJSON *body, cJSON *chat, struct oai_error *err)
{
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "parallel_tool_calls")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v))
            return oai_error_set(err, NS_ERR_INVALID, "parallel_tool_calls",
                                 "Invalid type for 'parallel_tool_calls': expected a boolean.");
        cJSON_AddItemToObject(chat, "parallel_tool_calls", cJSON_Duplicate(v, 0));
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "chat_template_kwargs")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsObject(v))
            return oai_error_set(err, NS_ERR_INVALID, "chat_template_kwargs",
                                 "Invalid type for 'chat_template_kwargs': expected an object.");
        const cJSON *et = cJSON_GetObjectItemCaseSensitive(v, "enable_thinking");
        if (et && !cJSON_IsBool(et))
            return oai_error_set(err, NS_ERR_INVALID, "chat_template_kwargs",
                                 "Invalid type for 'chat_template_kwargs.enable_thinking': expected a boolean.");
        cJSON_AddItemToObject(chat, "chat_template_kwargs", cJSON_Duplicate(v, 1));
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "reasoning_format")) && !cJSON_IsNull(v)) {
        static const char *const known[] = {"none", "auto", "deepseek", "deepseek-legacy"};
        bool ok = false;
        for (size_t i = 0; cJSON_IsString(v) && i < sizeof(known) / sizeof(known[0]); i++)
            ok |= strcmp(v->valuestring, known[i]) == 0;
        if (!ok)
            return oai_error_set(err, NS_ERR_INVALID, "reasoning_format",
                                 "Invalid value for 'reasoning_format': expected 'none', 'auto', 'deepseek' or "
                                 "'deepseek-legacy'.");
        cJSON_AddItemToObject(chat, "reasoning_format", cJSON_Duplicate(v, 0));
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "reasoning_effort")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v))
            return oai_error_set(err, NS_ERR_INVALID, "reasoning_effort",
                                 "Invalid type for 'reasoning_effort': expected a string.");
        cJSON_AddItemToObject(chat, "reasoning_effort", cJSON_Duplicate(v, 0));
    }
    return NS_OK;
}

/* The conversation for the model's template (engine_request.chat): the messages as they
 * came, then tools and options. */
static int oai_chat_json(struct oai_request *r, const cJSON *body, struct oai_error *err)
{
    cJSON *chat = cJSON_CreateObject();
    cJSON *msgs = cJSON_AddArrayToObject(chat, "messages");
    const cJSON *m;
    int rc = chat && msgs ? NS_OK : NS_ERR_NOMEM;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(body, "messages"))
    {
        /* developer stays developer: llama.cpp renders it as system, except for the templates
         * that know it (gpt-oss), as llama-server does */
        cJSON *c = cJSON_Duplicate(m, 1);
        if (!c || !cJSON_AddItemToArray(msgs, c))
            rc = NS_ERR_NOMEM;
    }
    if (rc)
        rc = oai_error_set(err, rc, NULL, "out of memory");
    if (!rc)
        rc = oai_tools(r, body, chat, err);
    if (!rc)
        rc = oai_chat_options(body, chat, err);
    return oai_request_set_chat(r, chat, rc, err);
}

#define OAI_MAX_LOGIT_BIAS 1024

/* logit_bias: {"token id": bias in -100..100}; ids are checked against the vocabulary by
 * the engine, which knows it */
static int oai_logit_bias(struct oai_request *r, const cJSON *body, struct oai_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "logit_bias");
    if (!v || cJSON_IsNull(v))
        return NS_OK;
    if (!cJSON_IsObject(v))
        return oai_error_set(err, NS_ERR_INVALID, "logit_bias", "Invalid type for 'logit_bias': expected an object.");
    int n = cJSON_GetArraySize(v);
    if (n == 0)
        return NS_OK;
    if (n > OAI_MAX_LOGIT_BIAS)
        return oai_error_set(err, NS_ERR_INVALID, "logit_bias", "Invalid 'logit_bias': at most %d tokens, but got %d.",
                             OAI_MAX_LOGIT_BIAS, n);
    r->bias_ = calloc((size_t)n, sizeof(*r->bias_));
    if (!r->bias_)
        return oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, v)
    {
        char *end = NULL;
        long id = strtol(it->string, &end, 10);
        if (!it->string[0] || *end || id < 0 || id > INT32_MAX)
            return oai_error_set(err, NS_ERR_INVALID, "logit_bias",
                                 "Invalid key in 'logit_bias': '%.40s' is not a token id (a non-negative integer).",
                                 it->string);
        if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < -100 || it->valuedouble > 100)
            return oai_error_set(err, NS_ERR_INVALID, "logit_bias",
                                 "Invalid value in 'logit_bias' for token %ld: expected a number from -100 to 100.", id);
        r->bias_[i++] = (struct engine_logit_bias){.token = (int32_t)id, .bias = (float)it->valuedouble};
    }
    r->req.logit_bias = r->bias_;
    r->req.n_logit_bias = n;
    return NS_OK;
}

/* chat: logprobs (bool) + top_logprobs (0..20); completions: logprobs (0..5 alternatives) */
static int oai_logprobs(struct oai_request *r, const cJSON *body, bool chat, struct oai_error *err)
{
    int rc;
    long long ll = 0;
    bool present = false;
    if (chat) {
        if ((rc = oai_boolean(body, "logprobs", &r->req.logprobs, err)) ||
            (rc = oai_integer(body, "top_logprobs", 0, ENGINE_MAX_TOP_LOGPROBS, &ll, &present, err)))
            return rc;
        if (present && !r->req.logprobs)
            return oai_error_set(err, NS_ERR_INVALID, "top_logprobs",
                                 "Invalid 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.");
    } else {
        if ((rc = oai_integer(body, "logprobs", 0, 5, &ll, &present, err)))
            return rc;
        r->req.logprobs = present;
    }
    r->req.top_logprobs = (int)ll;
    return NS_OK;
}

/* a grammar decides where the output ends; parameters that would overrule it are refused */
static int oai_check_grammar_conflicts(const struct oai_request *r, struct oai_error *err)
{
    if (!r->req.grammar)
        return NS_OK;
    const char *why = "'response_format'";
    if (r->req.min_tokens > 0)
        return oai_error_set(err, NS_ERR_UNSUPPORTED, "min_tokens",
                             "'min_tokens' cannot be combined with %s: the output ends where its grammar says.", why);
    if (r->req.ignore_eos)
        return oai_error_set(err, NS_ERR_UNSUPPORTED, "ignore_eos",
                             "'ignore_eos' cannot be combined with %s: the output ends where its grammar says.", why);
    return NS_OK;
}

/* what both parses start with: r takes over body (released with r), which must be an object */
/* body.model, a string (the body keeps owning it) */
static int oai_model_get(const cJSON *body, char **model_out, struct oai_error *err)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (!cJSON_IsString(model))
        return oai_error_set(err, NS_ERR_INVALID, "model",
                             model ? "Invalid type for 'model': expected a string." : "Missing required parameter: 'model'.");
    *model_out = model->valuestring;
    return NS_OK;
}

static int oai_request_begin(cJSON *body, bool chat, struct oai_request *r, struct oai_error *err)
{
    memset(r, 0, sizeof(*r));
    r->root_ = body;
    r->chat = chat;
    engine_request_init(&r->req);
    r->req.body = body;
    if (!cJSON_IsObject(body))
        return oai_error_set(err, NS_ERR_INVALID, NULL, "The request body must be a JSON object.");
    return NS_OK;
}

int oai_request_from_json(cJSON *body, bool chat, struct oai_request *r, struct oai_error *err)
{
    int rc;
    if ((rc = oai_request_begin(body, chat, r, err)))
        goto out;
    if ((rc = oai_check_fields(body, chat, err)))
        goto out;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (!model) {
        rc = oai_error_set(err, NS_ERR_INVALID, "model", "Missing required parameter: 'model'.");
        goto out;
    }
    if (!cJSON_IsString(model)) {
        rc = oai_error_set(err, NS_ERR_INVALID, "model", "Invalid type for 'model': expected a string.");
        goto out;
    }
    r->model = model->valuestring;
    if ((rc = chat ? oai_messages(r, body, err) : oai_prompt(r, body, err)))
        goto out;
    if ((rc = oai_check_unsupported(body, chat, err)))
        goto out;
    if (chat && (rc = oai_chat_json(r, body, err)))
        goto out;
    const cJSON *rfmt = cJSON_GetObjectItemCaseSensitive(body, "response_format");
    const cJSON *rtype = cJSON_GetObjectItemCaseSensitive(rfmt, "type");
    bool plain = !rfmt || cJSON_IsNull(rfmt) || (cJSON_IsString(rtype) && strcmp(rtype->valuestring, "text") == 0);
    if (r->tools && !plain) {
        /* one grammar per request: the tool-call format's, or the schema's */
        rc = oai_error_set(err, NS_ERR_UNSUPPORTED, "response_format",
                           "'response_format' cannot be combined with 'tools' on the local engine; use tool_choice "
                           "'none' for structured output.");
        goto out;
    }
    if (chat && !r->tools && (rc = oai_response_format(r, body, err)))
        goto out;

    long long ll;
    double d;
    bool present;
    if ((rc = oai_integer(body, "max_tokens", 1, 1e9, &ll, &present, err)))
        goto out;
    if (present)
        r->req.max_tokens = (int)ll;
    if (chat) {
        if ((rc = oai_integer(body, "max_completion_tokens", 1, 1e9, &ll, &present, err)))
            goto out;
        if (present)
            r->req.max_tokens = (int)ll;
    }
    ll = 1;
    if ((rc = oai_integer(body, "n", 1, 128, &ll, NULL, err)))
        goto out;
    if (ll > ENGINE_MAX_CHOICES) {
        rc = oai_error_set(err, NS_ERR_UNSUPPORTED, "n",
                           "Invalid 'n': at most %d choices are supported by the local engine, but got %lld.",
                           ENGINE_MAX_CHOICES, ll);
        goto out;
    }
    r->req.n = (int)ll;
    d = 1.0;
    if ((rc = oai_number(body, "temperature", 0, 2, &d, NULL, err)))
        goto out;
    r->req.temperature = (float)d;
    d = 1.0;
    if ((rc = oai_number(body, "top_p", 0, 1, &d, NULL, err)))
        goto out;
    r->req.top_p = (float)d;
    d = 0;
    if ((rc = oai_number(body, "presence_penalty", -2, 2, &d, NULL, err)))
        goto out;
    r->req.presence_penalty = (float)d;
    d = 0;
    if ((rc = oai_number(body, "frequency_penalty", -2, 2, &d, NULL, err)))
        goto out;
    r->req.frequency_penalty = (float)d;
    if ((rc = oai_integer(body, "seed", -9.3e18, 9.3e18, &ll, &present, err)))
        goto out;
    if (present) {
        r->has_seed = true;
        r->req.seed = (uint32_t)((unsigned long long)ll ^ ((unsigned long long)ll >> 32));
    }
    if ((rc = oai_stop(r, body, err)))
        goto out;
    if ((rc = oai_boolean(body, "stream", &r->stream, err)))
        goto out;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) {
            rc = oai_error_set(err, NS_ERR_INVALID, "stream_options", "Invalid type for 'stream_options': expected an object.");
            goto out;
        }
        if ((rc = oai_boolean(so, "include_usage", &r->include_usage, err)))
            goto out;
    }
    /* extensions */
    ll = 0;
    if ((rc = oai_integer(body, "top_k", -1, 1e9, &ll, NULL, err)))
        goto out;
    r->req.top_k = ll < 0 ? 0 : (int)ll;
    d = 0;
    if ((rc = oai_number(body, "min_p", 0, 1, &d, NULL, err)))
        goto out;
    r->req.min_p = (float)d;
    d = 1.0;
    if ((rc = oai_number(body, "repetition_penalty", 0.01, 10, &d, NULL, err)))
        goto out;
    r->req.repetition_penalty = (float)d;
    ll = 0;
    if ((rc = oai_integer(body, "min_tokens", 0, 1e9, &ll, NULL, err)))
        goto out;
    r->req.min_tokens = (int)ll;
    if (r->req.max_tokens >= 0 && r->req.min_tokens > r->req.max_tokens) {
        rc = oai_error_set(err, NS_ERR_INVALID, "min_tokens", "Invalid 'min_tokens': it must not exceed max_tokens (%d).",
                      r->req.max_tokens);
        goto out;
    }
    if ((rc = oai_boolean(body, "ignore_eos", &r->req.ignore_eos, err)))
        goto out;
    if ((rc = oai_check_grammar_conflicts(r, err)))
        goto out;
    if ((rc = oai_logit_bias(r, body, err)) || (rc = oai_logprobs(r, body, chat, err)))
        goto out;
out:
    if (rc != NS_OK)
        oai_request_release(r);
    return rc;
}

int oai_request_forward_from_json(cJSON *body, bool chat, struct oai_request *r, struct oai_error *err)
{
    int rc;
    long long ll;
    bool present;
    if ((rc = oai_request_begin(body, chat, r, err)))
        goto out;
    if ((rc = oai_model_get(body, &r->model, err)))
        goto out;
    const char *what = chat ? "messages" : "prompt";
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(body, what);
    if (!in) {
        rc = oai_error_set(err, NS_ERR_INVALID, chat ? "messages" : "prompt", "Missing required parameter: '%s'.", what);
        goto out;
    }
    if (chat && !cJSON_IsArray(in)) {
        rc = oai_error_set(err, NS_ERR_INVALID, "messages", "Invalid type for 'messages': expected an array of objects.");
        goto out;
    }
    if ((rc = oai_integer(body, "seed", -9.3e18, 9.3e18, &ll, &present, err)))
        goto out;
    r->has_seed = present;
    if ((rc = oai_boolean(body, "stream", &r->stream, err)))
        goto out;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
    if (cJSON_IsObject(so) && (rc = oai_boolean(so, "include_usage", &r->include_usage, err)))
        goto out;
out:
    if (rc != NS_OK)
        oai_request_release(r);
    return rc;
}

int oai_request_parse(const char *body_json, size_t len, bool chat, struct oai_request *r, struct oai_error *err)
{
    memset(r, 0, sizeof(*r));
    cJSON *body = cJSON_ParseWithLength(body_json, len);
    if (!body)
        return oai_error_set(err, NS_ERR_INVALID, NULL,
                        "We could not parse the JSON body of your request. The body must be valid JSON.");
    return oai_request_from_json(body, chat, r, err);
}

static const char *const oai_embedding_fields[] = {"model", "input", "encoding_format", "dimensions", "user", NULL};

/* one input: token ids from a JSON array of integers */
static int oai_embed_tokens(struct oai_request *r, const cJSON *a, int i, struct engine_embed_input *in,
                            struct oai_error *err)
{
    int n = cJSON_GetArraySize(a), k = 0;
    if (n == 0)
        return oai_error_set(err, NS_ERR_INVALID, "input", "Invalid 'input[%d]': an empty array of tokens.", i);
    int32_t *t = malloc(sizeof(*t) * (size_t)n);
    if (!t || !oai_request_own(r, (char *)t))
        return oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
    const cJSON *v;
    cJSON_ArrayForEach(v, a)
    {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 || v->valuedouble > INT32_MAX)
            return oai_error_set(err, NS_ERR_INVALID, "input",
                                 "Invalid 'input': token arrays must hold non-negative integers (input[%d][%d]).", i, k);
        t[k++] = (int32_t)v->valuedouble;
    }
    *in = (struct engine_embed_input){.tokens = t, .n_tokens = n};
    return NS_OK;
}

int oai_embeddings_from_json(cJSON *body, struct oai_request *r, struct oai_error *err)
{
    int rc;
    if ((rc = oai_request_begin(body, false, r, err)))
        goto out;
    r->embeddings = true;
    const cJSON *f;
    cJSON_ArrayForEach(f, body)
    {
        bool ok = false;
        for (int i = 0; oai_embedding_fields[i] && !ok; i++)
            ok = strcmp(oai_embedding_fields[i], f->string) == 0;
        if (!ok) {
            rc = oai_error_set(err, NS_ERR_INVALID, NULL, "Unrecognized request argument supplied: %.64s", f->string);
            goto out;
        }
    }
    if ((rc = oai_model_get(body, &r->model, err)))
        goto out;
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(body, "input");
    if (!in) {
        rc = oai_error_set(err, NS_ERR_INVALID, "input", "Missing required parameter: 'input'.");
        goto out;
    }
    /* the four shapes: "text", ["text", ...], [1, 2, ...], [[1, 2], ...] */
    bool one = cJSON_IsString(in) || (cJSON_IsArray(in) && cJSON_IsNumber(in->child));
    int n = one ? 1 : cJSON_IsArray(in) ? cJSON_GetArraySize(in) : -1;
    if (n < 0) {
        rc = oai_error_set(err, NS_ERR_INVALID, "input",
                           "Invalid type for 'input': expected a string, an array of strings, an array of integers or "
                           "an array of arrays of integers.");
        goto out;
    }
    if (n == 0) {
        rc = oai_error_set(err, NS_ERR_INVALID, "input", "Invalid 'input': empty array. Expected at least one input.");
        goto out;
    }
    if (n > OAI_MAX_EMBED_INPUTS) {
        rc = oai_error_set(err, NS_ERR_INVALID, "input",
                           "Invalid 'input': array too long. Expected an array with maximum length %d, but got an array "
                           "with length %d instead.",
                           OAI_MAX_EMBED_INPUTS, n);
        goto out;
    }
    r->embed_ = calloc((size_t)n, sizeof(*r->embed_));
    if (!r->embed_) {
        rc = oai_error_set(err, NS_ERR_NOMEM, NULL, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *v = one ? in : cJSON_GetArrayItem(in, i);
        if (cJSON_IsString(v)) {
            if (!v->valuestring[0]) {
                rc = oai_error_set(err, NS_ERR_INVALID, "input", "Invalid 'input[%d]': an empty string.", i);
                goto out;
            }
            r->embed_[i] = (struct engine_embed_input){.text = v->valuestring, .text_len = strlen(v->valuestring)};
        } else if (cJSON_IsArray(v) && (one || cJSON_IsNumber(v->child) || !v->child)) {
            if ((rc = oai_embed_tokens(r, v, i, &r->embed_[i], err)))
                goto out;
        } else {
            rc = oai_error_set(err, NS_ERR_INVALID, "input",
                               "Invalid type for 'input[%d]': expected a string or an array of integers (all inputs "
                               "of one kind).",
                               i);
            goto out;
        }
        if (!one && i > 0 && cJSON_IsString(v) != (r->embed_[0].text != NULL)) {
            rc = oai_error_set(err, NS_ERR_INVALID, "input",
                               "Invalid 'input': mixes strings and token arrays (input[%d]); send one kind.", i);
            goto out;
        }
    }
    r->req.embed = r->embed_;
    r->req.n_embed = n;
    const cJSON *ef = cJSON_GetObjectItemCaseSensitive(body, "encoding_format");
    if (ef && !cJSON_IsNull(ef)) {
        if (!cJSON_IsString(ef) || (strcmp(ef->valuestring, "float") && strcmp(ef->valuestring, "base64"))) {
            rc = oai_error_set(err, NS_ERR_INVALID, "encoding_format",
                               "Invalid 'encoding_format': expected 'float' or 'base64'.");
            goto out;
        }
        r->embed_base64 = strcmp(ef->valuestring, "base64") == 0;
    }
    long long dims = 0;
    if ((rc = oai_integer(body, "dimensions", 1, 1e6, &dims, NULL, err)))
        goto out;
    r->req.embed_dimensions = (int)dims;
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(body, "user");
    if (user && !cJSON_IsNull(user) && !cJSON_IsString(user))
        rc = oai_error_set(err, NS_ERR_INVALID, "user", "Invalid type for 'user': expected a string.");
out:
    if (rc != NS_OK)
        oai_request_release(r);
    return rc;
}

int oai_request_embeddings_line(cJSON *body, bool forward, struct oai_request *r, struct oai_error *err)
{
    if (forward) {
        memset(r, 0, sizeof(*r));
        cJSON_Delete(body);
        return oai_error_set(err, NS_ERR_UNSUPPORTED, "url",
                             "/v1/embeddings lines run on local models loaded with --embedding, not on upstream "
                             "backends.");
    }
    return oai_embeddings_from_json(body, r, err);
}

