/*
 * gemini.c — see gemini.h.
 */
#include "gemini.h"

#include "dialect.h"

#include "../util/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void gem_error(struct gemini_errors *e, uint32_t line, const char *code, const char *param, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));

static void gem_error(struct gemini_errors *e, uint32_t line, const char *code, const char *param, const char *fmt,
                      ...)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        struct gemini_error *v = realloc(e->v, sizeof(*v) * cap);
        if (!v)
            return;
        e->v = v;
        e->cap = cap;
    }
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct gemini_error *g = &e->v[e->n];
    g->line = line;
    g->code = code;
    g->param = param;
    g->message = strdup(msg);
    g->key = NULL;
    if (g->message)
        e->n++;
}

void gemini_errors_release(struct gemini_errors *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->v[i].message);
        free(e->v[i].key);
    }
    free(e->v);
    memset(e, 0, sizeof(*e));
}

/* a field by its camelCase or snake_case name */
static const cJSON *gem_get(const cJSON *o, const char *camel, const char *snake)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, camel);
    return v ? v : cJSON_GetObjectItemCaseSensitive(o, snake);
}

/* parts[].text joined by newlines; NULL (and an error) for a non-text part */
static char *gem_parts_text(const cJSON *content, uint32_t line, const char *where, struct gemini_errors *errs)
{
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(content, "parts");
    if (!cJSON_IsArray(parts)) {
        gem_error(errs, line, "invalid_request", "request", "line %u: %s.parts must be a list of parts", line, where);
        return NULL;
    }
    struct buf b;
    buf_init(&b, 64u << 20);
    int k = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, parts)
    {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsString(text)) {
            const char *kind = cJSON_IsObject(p) && p->child ? p->child->string : "?";
            gem_error(errs, line, "unsupported_part", "request",
                      "line %u: %s.parts[%d] is a '%.40s' part; only text parts are supported by the local engine",
                      line, where, k, kind);
            buf_release(&b);
            return NULL;
        }
        if ((k && buf_append(&b, "\n", 1)) || buf_appends(&b, text->valuestring)) {
            buf_release(&b);
            return NULL;
        }
        k++;
    }
    return buf_detach(&b);
}

/* one Gemini line -> an OpenAI line object; NULL with an error added */
static cJSON *gem_line(const char *s, size_t len, uint32_t line, const char *model, struct gemini_errors *errs)
{
    cJSON *root = cJSON_ParseWithLength(s, len);
    cJSON *out = NULL, *body = NULL, *msgs = NULL;
    const cJSON *key = NULL;
    if (!cJSON_IsObject(root)) {
        gem_error(errs, line, "invalid_json_line", NULL, "line %u is not a JSON object", line);
        goto fail;
    }
    key = cJSON_GetObjectItemCaseSensitive(root, "key");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(root, "request");
    if (!cJSON_IsString(key) || !key->valuestring[0]) {
        gem_error(errs, line, "missing_required_parameter", "key", "line %u: key is missing (a non-empty string)", line);
        goto fail;
    }
    if (!cJSON_IsObject(req)) {
        gem_error(errs, line, "missing_required_parameter", "request",
                  "line %u: request is missing (a GenerateContentRequest object)", line);
        goto fail;
    }
    if (cJSON_GetObjectItemCaseSensitive(req, "tools")) {
        gem_error(errs, line, "unsupported_value", "request", "line %u: request.tools is not supported by the local engine",
                  line);
        goto fail;
    }
    body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "model", model);
    msgs = cJSON_AddArrayToObject(body, "messages");
    const cJSON *sys = gem_get(req, "systemInstruction", "system_instruction");
    if (sys) {
        char *t = gem_parts_text(sys, line, "request.systemInstruction", errs);
        if (!t)
            goto fail;
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", t);
        free(t);
        cJSON_AddItemToArray(msgs, m);
    }
    const cJSON *contents = cJSON_GetObjectItemCaseSensitive(req, "contents");
    if (!cJSON_IsArray(contents) || cJSON_GetArraySize(contents) == 0) {
        gem_error(errs, line, "missing_required_parameter", "request",
                  "line %u: request.contents is missing (a non-empty list)", line);
        goto fail;
    }
    int i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, contents)
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(c, "role");
        const char *r = cJSON_IsString(role) ? role->valuestring : "user";
        if (strcmp(r, "user") && strcmp(r, "model")) {
            gem_error(errs, line, "invalid_request", "request",
                      "line %u: request.contents[%d].role must be 'user' or 'model'", line, i);
            goto fail;
        }
        char where[48];
        snprintf(where, sizeof(where), "request.contents[%d]", i);
        char *t = gem_parts_text(c, line, where, errs);
        if (!t)
            goto fail;
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", strcmp(r, "model") == 0 ? "assistant" : "user");
        cJSON_AddStringToObject(m, "content", t);
        free(t);
        cJSON_AddItemToArray(msgs, m);
        i++;
    }
    const cJSON *gc = gem_get(req, "generationConfig", "generation_config");
    if (gc) {
        static const struct {
            const char *camel, *snake, *openai;
        } map[] = {{"temperature", "temperature", "temperature"}, {"topP", "top_p", "top_p"},
                   {"topK", "top_k", "top_k"},                    {"maxOutputTokens", "max_output_tokens", "max_tokens"},
                   {"stopSequences", "stop_sequences", "stop"},   {"seed", "seed", "seed"},
                   {"candidateCount", "candidate_count", "n"}};
        for (size_t k = 0; k < sizeof(map) / sizeof(map[0]); k++) {
            const cJSON *v = gem_get(gc, map[k].camel, map[k].snake);
            if (v)
                cJSON_AddItemToObject(body, map[k].openai, cJSON_Duplicate(v, 1));
        }
        /* the engine's answer is text: responseMimeType text/plain only */
        const cJSON *mime = gem_get(gc, "responseMimeType", "response_mime_type");
        if (cJSON_IsString(mime) && strcmp(mime->valuestring, "text/plain")) {
            gem_error(errs, line, "unsupported_value", "request",
                      "line %u: generationConfig.responseMimeType '%.40s' is not supported by the local engine yet",
                      line, mime->valuestring);
            goto fail;
        }
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "custom_id", key->valuestring);
    key = NULL; /* converted: no error to label */
    cJSON_AddStringToObject(out, "method", "POST");
    cJSON_AddStringToObject(out, "url", "/v1/chat/completions");
    cJSON_AddItemToObject(out, "body", body);
    cJSON_Delete(root);
    return out;
fail:
    /* label the error just added with the line's key, so its result line names it */
    if (cJSON_IsString(key) && errs->n && errs->v[errs->n - 1].line == line && !errs->v[errs->n - 1].key)
        errs->v[errs->n - 1].key = strdup(key->valuestring);
    cJSON_Delete(body);
    cJSON_Delete(root);
    return NULL;
}

int gemini_convert(const char *data, size_t size, const char *model, struct buf *out, struct gemini_errors *errs)
{
    uint32_t line = 0;
    for (size_t off = 0; off < size;) {
        const char *nl = memchr(data + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (data + off)) : size - off;
        line++;
        bool blank = true;
        for (size_t i = 0; i < len && blank; i++)
            blank = data[off + i] == ' ' || data[off + i] == '\t' || data[off + i] == '\r';
        if (!blank) {
            cJSON *o = gem_line(data + off, len, line, model, errs);
            if (o) {
                char *t = cJSON_PrintUnformatted(o);
                cJSON_Delete(o);
                if (!t || buf_appends(out, t)) {
                    free(t);
                    return NS_ERR_NOMEM;
                }
                free(t);
            }
        }
        if (buf_append(out, "\n", 1))
            return NS_ERR_TOO_LARGE;
        off += len + 1;
    }
    return NS_OK;
}

cJSON *gemini_response_line(const char *key, const struct engine_result *res, const char *model)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "key", key);
    cJSON *r = cJSON_AddObjectToObject(o, "response");
    cJSON *cands = cJSON_AddArrayToObject(r, "candidates");
    /* candidateCount > 1 ran as n choices: one candidate each */
    int nc = res->n_choices > 1 && res->choices ? res->n_choices : 1;
    for (int i = 0; i < nc; i++) {
        const char *text = nc > 1 ? res->choices[i].text : res->text;
        enum engine_finish fin = nc > 1 ? res->choices[i].finish : res->finish;
        cJSON *cand = cJSON_CreateObject();
        cJSON *content = cJSON_AddObjectToObject(cand, "content");
        cJSON *parts = cJSON_AddArrayToObject(content, "parts");
        cJSON *part = cJSON_CreateObject();
        cJSON_AddStringToObject(part, "text", text ? text : "");
        cJSON_AddItemToArray(parts, part);
        cJSON_AddStringToObject(content, "role", "model");
        cJSON_AddStringToObject(cand, "finishReason", fin == ENGINE_FINISH_LENGTH ? "MAX_TOKENS" : "STOP");
        cJSON_AddNumberToObject(cand, "index", i);
        cJSON_AddItemToArray(cands, cand);
    }
    cJSON *u = cJSON_AddObjectToObject(r, "usageMetadata");
    cJSON_AddNumberToObject(u, "promptTokenCount", res->prompt_tokens);
    cJSON_AddNumberToObject(u, "candidatesTokenCount", res->completion_tokens);
    cJSON_AddNumberToObject(u, "totalTokenCount", res->prompt_tokens + res->completion_tokens);
    if (res->cached_tokens)
        cJSON_AddNumberToObject(u, "cachedContentTokenCount", res->cached_tokens);
    cJSON_AddStringToObject(r, "modelVersion", model);
    return o;
}

/* OpenAI's names in a message, and the Gemini names the user wrote (issue 27.16): long
 * identifiers as whole words, short ones ("n", "stop") only where quoted, as the
 * validators quote them ('n', "stop"), so an English word is never renamed */
static const struct {
    const char *openai, *gemini;
    bool quoted_only;
} gem_names[] = {
    {"max_completion_tokens", "maxOutputTokens", false}, {"max_tokens", "maxOutputTokens", false},
    {"custom_id", "key", false},  {"top_p", "topP", false}, {"top_k", "topK", false},
    {"messages", "contents", true}, {"stop", "stopSequences", true}, {"n", "candidateCount", true},
};

static bool gem_ident(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }
static bool gem_quote(char c) { return c == '\'' || c == '"' || c == '`'; }

void gemini_rename_params(const char *in, char *out, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; in[i] && o + 1 < n;) {
        bool done = false;
        for (size_t k = 0; k < sizeof(gem_names) / sizeof(gem_names[0]) && !done; k++) {
            size_t l = strlen(gem_names[k].openai);
            if (strncmp(in + i, gem_names[k].openai, l) != 0)
                continue;
            char before = i ? in[i - 1] : ' ', after = in[i + l];
            bool word = !gem_ident(before) && !gem_ident(after);
            if (!word || (gem_names[k].quoted_only && !(gem_quote(before) && gem_quote(after))))
                continue;
            int w = snprintf(out + o, n - o, "%s", gem_names[k].gemini);
            o = w < 0 || (size_t)w >= n - o ? n - 1 : o + (size_t)w;
            i += l;
            done = true;
        }
        if (!done)
            out[o++] = in[i++];
    }
    out[o < n ? o : n - 1] = '\0';
}

cJSON *gemini_error_line(const char *key, int status, const char *message)
{
    /* google.rpc.Code for the HTTP status */
    int http = status_http(status), code;
    switch (http) {
    case 400: code = 3; break;  /* INVALID_ARGUMENT */
    case 401: code = 16; break; /* UNAUTHENTICATED */
    case 404: code = 5; break;  /* NOT_FOUND */
    case 413: code = 3; break;
    case 429: code = 8; break;  /* RESOURCE_EXHAUSTED */
    case 503: code = 14; break; /* UNAVAILABLE */
    case 0: code = status == NS_ERR_EXPIRED ? 4 : 1; break; /* DEADLINE_EXCEEDED / CANCELLED */
    default: code = 13; break;  /* INTERNAL */
    }
    cJSON *o = cJSON_CreateObject();
    if (key)
        cJSON_AddStringToObject(o, "key", key);
    else
        cJSON_AddNullToObject(o, "key");
    cJSON *s = cJSON_AddObjectToObject(o, "status");
    cJSON_AddNumberToObject(s, "code", code);
    char msg[1024];
    gemini_rename_params(message, msg, sizeof(msg));
    cJSON_AddStringToObject(s, "message", msg);
    return o;
}

/* ---- the Gemini dialect (dialect.h): batch files of `run --input-format gemini` ----------- */

/* Google's error shape {"error": {code, message, status}}, for completeness: no HTTP route
 * speaks Gemini yet */
static cJSON *gem_dialect_error(int status, const char *message, const char *param, const char *code)
{
    (void)param;
    (void)code;
    cJSON *line = gemini_error_line(NULL, status, message);
    cJSON *st = cJSON_DetachItemFromObjectCaseSensitive(line, "status");
    cJSON_Delete(line);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "error", st ? st : cJSON_CreateObject());
    return o;
}

/* {key, response} or {key, status} */
static cJSON *gem_dialect_batch_result(const char *custom_id, const struct oai_request *r,
                                       const struct engine_result *res, const char *model)
{
    if (res->status == NS_OK && r)
        return gemini_response_line(custom_id, res, model);
    return gemini_error_line(custom_id, res->status == NS_OK ? NS_ERR_INTERNAL : res->status, res->message);
}

const struct dialect dialect_gemini = {
    .name = "gemini",
    .error = gem_dialect_error,
    .auth_message = "API key not valid. Pass it as 'x-goog-api-key: KEY' or 'Authorization: Bearer KEY'.",
    .batch_result = gem_dialect_batch_result,
};
