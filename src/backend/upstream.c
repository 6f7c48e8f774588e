/*
 * upstream.c — see upstream.h.
 */
#include "upstream.h"

#include "../util/status.h"

#include <curl/curl.h>

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static void upstream_global_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

void upstream_global_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, upstream_global_init_once);
}


double upstream_rand01(void)
{
    uint32_t r;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint32_t)rand();
    return (double)r / 4294967296.0;
}

char *upstream_url_join(const char *base, const char *path)
{
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    size_t n = bl + strlen(path) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%.*s%s", (int)bl, base, path);
    return s;
}

double upstream_parse_duration(const char *s)
{
    double total = 0;
    bool any = false;
    while (*s && !isspace((unsigned char)*s)) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || v < 0)
            return -1;
        s = end;
        double unit = 1;
        if (strncmp(s, "ms", 2) == 0)
            unit = 1e-3, s += 2;
        else if (*s == 'h')
            unit = 3600, s++;
        else if (*s == 'm')
            unit = 60, s++;
        else if (*s == 's')
            s++;
        total += v * unit;
        any = true;
    }
    return any ? total : -1;
}

cJSON *upstream_body_forward(const cJSON *body, const char *model, bool *chat)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    *chat = cJSON_GetObjectItemCaseSensitive(body, "messages") != NULL;
    const cJSON *f;
    cJSON_ArrayForEach(f, body)
    {
        if (strcmp(f->string, "stream") == 0 || strcmp(f->string, "stream_options") == 0)
            continue;
        if (strcmp(f->string, "model") == 0 && model)
            cJSON_AddStringToObject(o, "model", model);
        else
            cJSON_AddItemReferenceToObject(o, f->string, (cJSON *)f);
    }
    return o;
}

cJSON *upstream_body_build(const struct engine_request *r, const char *model, bool *chat)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "model", model);
    *chat = r->prompt == NULL;
    if (r->prompt) {
        cJSON_AddStringToObject(o, "prompt", r->prompt);
    } else {
        cJSON *ms = cJSON_AddArrayToObject(o, "messages");
        for (int i = 0; i < r->n_messages; i++) {
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", r->messages[i].role);
            cJSON_AddStringToObject(m, "content", r->messages[i].content ? r->messages[i].content : "");
            cJSON_AddItemToArray(ms, m);
        }
    }
    if (r->max_tokens > 0)
        cJSON_AddNumberToObject(o, "max_tokens", r->max_tokens);
    cJSON_AddNumberToObject(o, "temperature", r->temperature);
    if (r->top_p < 1)
        cJSON_AddNumberToObject(o, "top_p", r->top_p);
    if (r->n_stop) {
        cJSON *st = cJSON_AddArrayToObject(o, "stop");
        for (int i = 0; i < r->n_stop; i++)
            cJSON_AddItemToArray(st, cJSON_CreateString(r->stop[i]));
    }
    cJSON_AddNumberToObject(o, "seed", r->seed);
    return o;
}

static int upstream_int(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valueint : 0;
}

void upstream_parse_success(const cJSON *o, bool chat, struct engine_result *res)
{
    res->http_status = 200;
    const cJSON *ch0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(ch0, "message");
    const cJSON *text = chat ? cJSON_GetObjectItemCaseSensitive(msg, "content") : cJSON_GetObjectItemCaseSensitive(ch0, "text");
    if (cJSON_IsString(text)) {
        res->text = text->valuestring;
        res->text_len = strlen(text->valuestring);
    }
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(ch0, "finish_reason");
    res->finish = cJSON_IsString(fr) && strcmp(fr->valuestring, "length") == 0 ? ENGINE_FINISH_LENGTH : ENGINE_FINISH_STOP;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "usage");
    res->prompt_tokens = upstream_int(u, "prompt_tokens");
    res->completion_tokens = upstream_int(u, "completion_tokens");
    res->cached_tokens = upstream_int(cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens_details"), "cached_tokens");
}

void upstream_error_text(const cJSON *o, const char *raw, size_t raw_len, char *out, size_t n)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    const cJSON *m = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "message") : NULL;
    if (cJSON_IsString(m))
        snprintf(out, n, "%s", m->valuestring);
    else if (cJSON_IsString(e))
        snprintf(out, n, "%s", e->valuestring);
    else
        snprintf(out, n, "%.*s", (int)(raw_len < 200 ? raw_len : 200), raw ? raw : "");
}

int upstream_status_of(long code)
{
    switch (code) {
    case 400: case 422: return NS_ERR_INVALID;
    case 401: case 403: return NS_ERR_AUTH;
    case 404: return NS_ERR_NOT_FOUND;
    case 409: return NS_ERR_CONFLICT;
    case 413: return NS_ERR_TOO_LARGE;
    case 415: return NS_ERR_MEDIA_TYPE;
    case 429: return NS_ERR_RATE_LIMIT;
    default: return code >= 500 ? NS_ERR_UPSTREAM : NS_ERR_INVALID;
    }
}

bool upstream_retryable_code(long code)
{
    return code == 408 || code == 409 || code == 425 || code == 429 || code == 500 || code == 502 || code == 503 ||
           code == 504 || code == 529;
}
