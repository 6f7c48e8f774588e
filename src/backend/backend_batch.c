/*
 * backend_batch.c — "openai-batch" and "anthropic-batch": lines offloaded to a provider's
 * own batch API (OpenAI Batch: files + batches; Anthropic Message Batches), for the
 * provider's batch discount.
 *
 * DESIGN
 * Like every backend, this one pulls requests from the scheduler (engine.h's contract), but
 * it holds many at once: pulled lines wait in `pending` until a flush (the source has no
 * more right now and at least flush_lines are waiting; or the oldest has waited
 * flush_after seconds; or an upstream batch is full at max_lines), then go upstream as one
 * batch. Each upstream batch is polled with a growing interval (poll_interval, x1.5 per
 * poll, at most poll_max); when it has ended its results are mapped back by custom_id
 * ("ns-<sequence>", ours, unique in this process) and each request ends with done(), its
 * body the provider's answer (Anthropic messages converted into OpenAI chat.completion
 * bodies). A line the provider did not finish — expired, cancelled, a retryable error
 * (429/5xx, overloaded), missing from the results — goes back to `pending` for the next
 * upstream batch, up to max_attempts tries; a non-retryable error is the line's error as
 * the provider gave it.
 *
 * The loop itself (pull, the flex refusal, when to flush, sleeping, reloads, stop/wake) is
 * batch_loop.c's, shared with gemini-batch; the HTTP calls with their retries are
 * batch_http.c's. This file holds the jobs and upstream batches (the loop's ops).
 *
 * Provider differences live in a const table (submit / poll / collect), one row each
 * (the anthropic-batch row in backend_batch_anthropic.c).
 * Providers that speak the OpenAI protocol differ only in data: an openai-batch model's
 * `provider` (batch_preset.h: Groq, kluster.ai, OpenAI's own by default) caps max_lines and
 * max_bytes, says which completion windows to choose from and which endpoints are run. An
 * upstream batch is cut at max_lines lines or max_bytes bytes of input file, whichever
 * comes first (a request larger than max_bytes alone fails at once, and so does one for an
 * endpoint the provider does not run). Their quirks are read tolerantly for all: a batch's
 * `errors` as {data: [...]} or a bare array, "cancelled" or "canceled", a status that is
 * not terminal ("finalising") polled again, a 429's Retry-After waited out.
 *
 * Real-time requests cannot wait hours: they are answered at once with a 400 that says
 * to send them in a batch, unless they carry "service_tier": "flex" — those are accumulated
 * with the batch lines and their HTTP call waits for the upstream batch (OpenAI's flex
 * semantics: cheaper, slower, still one call).
 *
 * Durability: while a line is upstream it stays claimed (running) in our store. After a
 * crash it is requeued and sent again in a new upstream batch (the provider may then run
 * it twice; our output still has it once). A clean stop leaves the upstream batches
 * running and their lines claimed, with the same effect at the next start.
 *
 * THREADS: run() on the scheduler's thread, blocking HTTP calls (libcurl easy) on it;
 * stop() and wake() from any thread (mu + cv).
 */
#include "backend.h"
#include "batch_preset.h"
#include "batch_http.h"
#include "batch_loop.h"
#include "backend_batch_int.h"
#include "../util/clock.h"

#include "../util/buf.h"
#include "../util/status.h"
#include "upstream.h"
#include "../util/log.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* ---- HTTP (blocking, on the run thread) ----------------------------------------------- */

/* the multipart form of a batch input file upload (purpose=batch, file=the JSONL) */
static curl_mime *bb_upload_form(CURL *e, const void *ud)
{
    const struct buf *jsonl = ud;
    curl_mime *mime = curl_mime_init(e);
    curl_mimepart *part = mime ? curl_mime_addpart(mime) : NULL;
    if (!part)
        goto fail;
    curl_mime_name(part, "purpose");
    curl_mime_data(part, "batch", CURL_ZERO_TERMINATED);
    if (!(part = curl_mime_addpart(mime)))
        goto fail;
    curl_mime_name(part, "file");
    curl_mime_filename(part, "nightshift-batch.jsonl");
    curl_mime_type(part, "application/jsonl");
    if (curl_mime_data(part, jsonl->p ? jsonl->p : "", jsonl->len) != CURLE_OK)
        goto fail;
    return mime;
fail:
    curl_mime_free(mime);
    return NULL;
}

/* a try's count and the stop flag (both under mu: get_stats and stop come from any thread) */
static bool bb_tried(void *ud, int attempt, long code)
{
    struct batch_backend *bb = ud;
    pthread_mutex_lock(&bb->l.mu);
    bb->l.stats.attempts++;
    bb->l.stats.retries += attempt > 1;
    bb->l.stats.rate_limited += code == 429;
    bool stopping = bb->l.stopping;
    pthread_mutex_unlock(&bb->l.mu);
    return stopping;
}

/* one call (batch_http.h) with the backend's headers and retry settings; upload: a JSONL
 * file sent as a multipart form (without our Content-Type: libcurl sets the form's) */
static struct batch_http_req bb_req(struct batch_backend *bb, const char *method, const char *url, const char *json,
                                    const struct buf *upload)
{
    return (struct batch_http_req){.method = method, .url = url, .hdrs = upload ? bb->hdrs_form : bb->hdrs,
                                   .body = json, .body_len = json ? strlen(json) : 0,
                                   .form = upload ? bb_upload_form : NULL, .form_ud = upload,
                                   .tried = bb_tried, .tried_ud = bb};
}

static struct batch_http_retry bb_retry_conf(const struct batch_backend *bb)
{
    return (struct batch_http_retry){bb->l.c.max_attempts, bb->l.c.timeout_s, bb->l.c.retry_base_s, bb->l.c.retry_max_s, true};
}

int backend_batch_http(struct batch_backend *bb, const char *method, const char *url, const char *json,
                   const struct buf *upload, struct buf *out, long *code, char *err, size_t errlen)
{
    struct batch_http_req q = bb_req(bb, method, url, json, upload);
    struct batch_http_retry r = bb_retry_conf(bb);
    return batch_http_call(bb->easy, &r, &q, out, code, err, errlen);
}

/* GET/POST url and parse a JSON object answer; 0 ok */
int backend_batch_json_call(struct batch_backend *bb, const char *method, const char *url, const char *json,
                        const struct buf *upload, cJSON **out, char *err, size_t errlen)
{
    struct batch_http_req q = bb_req(bb, method, url, json, upload);
    struct batch_http_retry r = bb_retry_conf(bb);
    return batch_http_json(bb->easy, &r, &q, BB_MAX_RESPONSE, false, out, err, errlen);
}

static const char *bb_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- settling one job ---------------------------------------------------------------- */

static void bb_done(struct batch_backend *bb, struct bb_job *j, struct engine_result *res)
{
    batch_loop_done(&bb->l, j->req, res, j->t_admit, j->attempts);
    cJSON_Delete(j->body);
    free(j);
}

static void bb_fail(struct batch_backend *bb, struct bb_job *j, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void bb_fail(struct batch_backend *bb, struct bb_job *j, int status, const char *fmt, ...)
{
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    res.status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res.message, sizeof(res.message), fmt, ap);
    va_end(ap);
    bb_done(bb, j, &res);
}

static void bb_pend(struct batch_backend *bb, struct bb_job *j)
{
    j->next = NULL;
    bool was_empty = !bb->pending;
    *bb->pending_tail = j;
    bb->pending_tail = &j->next;
    batch_loop_pended(&bb->l, was_empty, j->bytes);
}

/* not finished upstream: again in the next upstream batch, or failed when its tries are spent */
void backend_batch_retry(struct batch_backend *bb, struct bb_job *j, const char *why)
{
    snprintf(j->last_error, sizeof(j->last_error), "%.290s", why);
    if (!batch_loop_may_retry(&bb->l, j->attempts)) {
        bb_fail(bb, j, NS_ERR_UPSTREAM, "the batch API behind model '%s' did not finish this request in %d tries; last: %s",
                bb->name, j->attempts, why);
        return;
    }
    bb_pend(bb, j);
}

/* a success: body is an OpenAI chat.completion / text_completion the job's client gets */
void backend_batch_succeed(struct batch_backend *bb, struct bb_job *j, cJSON *body)
{
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    const cJSON *cm = j->req->body ? cJSON_GetObjectItemCaseSensitive(j->req->body, "model") : NULL;
    cJSON_ReplaceItemInObjectCaseSensitive(body, "model", cJSON_CreateString(cJSON_IsString(cm) ? cm->valuestring : bb->name));
    upstream_parse_success(body, j->chat, &res);
    char *raw = cJSON_PrintUnformatted(body);
    res.raw_body = raw;
    res.raw_len = raw ? strlen(raw) : 0;
    if (!raw)
        res.http_status = 0;
    if (bb->l.src->token && res.text_len) {
        struct engine_delta d = {.text = res.text, .len = res.text_len, .cached_tokens = -1};
        bb->l.src->token(bb->l.src->ud, j->req, &d);
    }
    bb_done(bb, j, &res);
    free(raw);
}

/* a final error as the provider gave it (code and an OpenAI-shaped error body) */
void backend_batch_reject(struct batch_backend *bb, struct bb_job *j, long code, cJSON *body)
{
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    res.status = upstream_status_of(code);
    res.http_status = (int)code;
    upstream_error_text(body, NULL, 0, res.message, sizeof(res.message));
    char *raw = body ? cJSON_PrintUnformatted(body) : NULL;
    res.raw_body = raw;
    res.raw_len = raw ? strlen(raw) : 0;
    bb_done(bb, j, &res);
    free(raw);
}

/* find and unlink the job of a custom_id */
struct bb_job *backend_batch_take(struct bb_batch *b, const char *custom_id)
{
    for (struct bb_job **pp = &b->jobs; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->custom_id, custom_id) == 0) {
            struct bb_job *j = *pp;
            *pp = j->next;
            b->n--;
            return j;
        }
    return NULL;
}

/* parse JSONL text, calling fn for each object line */
void backend_batch_each_line(const char *p, size_t len, void (*fn)(void *ud, cJSON *o), void *ud)
{
    const char *end = p + len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        cJSON *o = cJSON_ParseWithLength(p, n);
        if (cJSON_IsObject(o))
            fn(ud, o);
        cJSON_Delete(o);
        p = nl ? nl + 1 : end;
    }
}

/* ---- OpenAI Batch API --------------------------------------------------------------------- */

cJSON *backend_batch_openai_body(struct batch_backend *bb, const struct engine_request *r, bool *chat, char *err, size_t errlen)
{
    cJSON *o = r->body ? upstream_body_forward(r->body, bb->upstream_model, chat)
                       : upstream_body_build(r, bb->upstream_model ? bb->upstream_model : bb->name, chat);
    if (!o)
        snprintf(err, errlen, "out of memory");
    return o;
}

static int oa_submit(struct batch_backend *bb, struct bb_batch *b, char *err, size_t errlen)
{
    int rc = NS_ERR_NOMEM;
    struct buf jl;
    buf_init(&jl, BB_MAX_RESPONSE); /* bb_flush kept it under max_bytes (at most OpenAI's 200 MB) */
    cJSON *o = NULL;
    const char *endpoint = b->chat ? "/v1/chat/completions" : "/v1/completions";
    for (struct bb_job *j = b->jobs; j; j = j->next) {
        cJSON *line = cJSON_CreateObject();
        cJSON_AddStringToObject(line, "custom_id", j->custom_id);
        cJSON_AddStringToObject(line, "method", "POST");
        cJSON_AddStringToObject(line, "url", endpoint);
        cJSON_AddItemReferenceToObject(line, "body", j->body);
        char *s = cJSON_PrintUnformatted(line);
        cJSON_Delete(line);
        if (!s || buf_appends(&jl, s) || buf_append(&jl, "\n", 1)) {
            free(s);
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        free(s);
    }
    char url[1200];
    snprintf(url, sizeof(url), "%s/files", bb->url);
    if ((rc = backend_batch_json_call(bb, "POST", url, NULL, &jl, &o, err, errlen)))
        goto out;
    const char *file_id = bb_str(o, "id");
    if (!file_id) {
        snprintf(err, errlen, "POST %s: the answer has no file id", url);
        rc = NS_ERR_UPSTREAM;
        goto out;
    }
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "input_file_id", file_id);
    cJSON_AddStringToObject(req, "endpoint", endpoint);
    cJSON_AddStringToObject(req, "completion_window", bb->window);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(req, "metadata"), "source", "nightshift");
    char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    cJSON_Delete(o);
    o = NULL;
    snprintf(url, sizeof(url), "%s/batches", bb->url);
    rc = body ? backend_batch_json_call(bb, "POST", url, body, NULL, &o, err, errlen) : NS_ERR_NOMEM;
    free(body);
    if (rc)
        goto out;
    if (!bb_str(o, "id")) {
        snprintf(err, errlen, "POST %s: the answer has no batch id", url);
        rc = NS_ERR_UPSTREAM;
        goto out;
    }
    snprintf(b->id, sizeof(b->id), "%s", bb_str(o, "id"));
out:
    cJSON_Delete(o);
    buf_release(&jl);
    return rc;
}

/* GET {url}{path}{id}: an upstream batch object */
int backend_batch_get_batch(struct batch_backend *bb, const char *path, const char *id, cJSON **o, char *err, size_t errlen)
{
    char url[1200];
    snprintf(url, sizeof(url), "%s%s%s", bb->url, path, id);
    return backend_batch_json_call(bb, "GET", url, NULL, NULL, o, err, errlen);
}

static int oa_poll(struct batch_backend *bb, struct bb_batch *b, bool *ended, char *err, size_t errlen)
{
    cJSON *o = NULL;
    int rc = backend_batch_get_batch(bb, "/batches/", b->id, &o, err, errlen);
    if (rc)
        return rc;
    const char *st = bb_str(o, "status");
    /* kluster.ai: "finalising" (not terminal: polled again); "canceled" as some spell it */
    *ended = st && (!strcmp(st, "completed") || !strcmp(st, "failed") || !strcmp(st, "expired") || !strcmp(st, "cancelled") ||
                    !strcmp(st, "canceled"));
    if (*ended) {
        snprintf(b->output_file, sizeof(b->output_file), "%s", bb_str(o, "output_file_id") ? bb_str(o, "output_file_id") : "");
        snprintf(b->error_file, sizeof(b->error_file), "%s", bb_str(o, "error_file_id") ? bb_str(o, "error_file_id") : "");
        /* OpenAI: errors = {"object": "list", "data": [...]}; Groq: errors = [...] */
        const cJSON *errs = cJSON_GetObjectItemCaseSensitive(o, "errors");
        const cJSON *e0 = cJSON_GetArrayItem(cJSON_IsArray(errs) ? errs : cJSON_GetObjectItemCaseSensitive(errs, "data"), 0);
        snprintf(b->failure, sizeof(b->failure), "the upstream batch %s ended %s%s%s", b->id, st,
                 bb_str(e0, "message") ? ": " : "", bb_str(e0, "message") ? bb_str(e0, "message") : "");
    }
    cJSON_Delete(o);
    return NS_OK;
}

static void oa_line(void *ud, cJSON *o)
{
    struct bb_collect *x = ud;
    const char *cid = bb_str(o, "custom_id");
    struct bb_job *j = cid ? backend_batch_take(x->b, cid) : NULL;
    if (!j)
        return;
    const cJSON *resp = cJSON_GetObjectItemCaseSensitive(o, "response");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(resp, "status_code");
    cJSON *body = cJSON_GetObjectItemCaseSensitive(resp, "body");
    long code = cJSON_IsNumber(sc) ? (long)sc->valuedouble : 0;
    if (code == 200 && cJSON_IsObject(body)) {
        backend_batch_succeed(x->bb, j, body);
    } else if (code && !upstream_retryable_code(code)) {
        backend_batch_reject(x->bb, j, code, body);
    } else {
        char why[300];
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
        if (code)
            upstream_error_text(body, NULL, 0, why + snprintf(why, sizeof(why), "HTTP %ld: ", code), 200);
        else
            snprintf(why, sizeof(why), "%s", bb_str(e, "message") ? bb_str(e, "message") : bb_str(e, "code") ? bb_str(e, "code") : "no result");
        backend_batch_retry(x->bb, j, why);
    }
}

static int oa_fetch(struct batch_backend *bb, struct bb_batch *b, const char *file_id, char *err, size_t errlen)
{
    if (!file_id[0])
        return NS_OK;
    char url[1200];
    struct buf body;
    long code;
    buf_init(&body, BB_MAX_RESPONSE);
    snprintf(url, sizeof(url), "%s/files/%s/content", bb->url, file_id);
    int rc = backend_batch_http(bb, "GET", url, NULL, NULL, &body, &code, err, errlen);
    if (rc == NS_OK && code != 200) {
        snprintf(err, errlen, "GET %s: HTTP %ld", url, code);
        rc = upstream_status_of(code);
    }
    if (rc == NS_OK) {
        struct bb_collect x = {bb, b};
        backend_batch_each_line(body.p, body.len, oa_line, &x);
    }
    buf_release(&body);
    return rc;
}

static int oa_collect(struct batch_backend *bb, struct bb_batch *b, char *err, size_t errlen)
{
    int rc = oa_fetch(bb, b, b->output_file, err, errlen);
    if (rc == NS_OK)
        rc = oa_fetch(bb, b, b->error_file, err, errlen);
    return rc;
}

static const struct bb_provider bb_openai = {"openai-batch", oa_submit, oa_poll, oa_collect, backend_batch_openai_body};

/* ---- the loop -------------------------------------------------------------------------- */

static void bb_free(void *impl);
static const struct batch_loop_ops bb_loop_ops;

/* the provider's limits cap the configured ones (the config refuses larger; a reload too) */
static void bb_cap(struct batch_backend *bb)
{
    if (bb->preset && bb->l.c.max_lines > bb->preset->max_lines)
        bb->l.c.max_lines = bb->preset->max_lines;
    if (bb->preset && bb->l.c.max_bytes > bb->preset->max_bytes)
        bb->l.c.max_bytes = bb->preset->max_bytes;
    if (bb->l.c.max_bytes <= 0)
        bb->l.c.max_bytes = INT64_MAX;
    bb->window = bb->preset ? batch_preset_window(bb->preset, bb->l.c.completion_window_s)->text : "24h";
}

static int bb_init(const struct bb_provider *prov, const struct backend_conf *c, void **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!c->url || (strncmp(c->url, "http://", 7) && strncmp(c->url, "https://", 8))) {
        snprintf(err, errlen, "model '%s': backend %s needs url = http(s)://HOST[:PORT]/v1", c->name, prov->kind);
        return NS_ERR_INVALID;
    }
    const struct batch_preset *preset = NULL;
    if (prov == &bb_openai && !(preset = c->provider ? batch_preset_find(c->provider) : batch_preset_default())) {
        snprintf(err, errlen, "model '%s': unknown provider '%s' (known: %s)", c->name, c->provider, batch_preset_names());
        return NS_ERR_INVALID;
    }
    if (prov != &bb_openai && c->provider) {
        snprintf(err, errlen, "model '%s': provider %s is for backend openai-batch, not %s", c->name, c->provider, prov->kind);
        return NS_ERR_INVALID;
    }
    upstream_global_init();
    struct batch_backend *bb = calloc(1, sizeof(*bb));
    if (!bb)
        goto nomem;
    bb->prov = prov;
    bb->preset = preset;
    bb->name = strdup(c->name ? c->name : "default");
    char via[96];
    snprintf(via, sizeof(via), "a provider's batch API (%s)", prov->kind);
    batch_loop_init(&bb->l, &bb_loop_ops, bb, bb->name, via, c);
    bb->l.cap_bytes = true;
    bb_cap(bb);
    bb->pending_tail = &bb->pending;
    bb->url = upstream_url_join(c->url, "");
    bb->upstream_model = c->upstream_model ? strdup(c->upstream_model) : NULL;
    bb->easy = curl_easy_init();
    struct curl_slist *h = NULL, *f = NULL;
    for (int k = 0; k < 2; k++) {
        struct curl_slist *l = k ? NULL : curl_slist_append(NULL, "Content-Type: application/json");
        if (!k && !l)
            break;
        l = curl_slist_append(l, "Expect:");
        const struct backend_ops *ops = prov == &backend_batch_anthropic ? &backend_anthropic_batch_ops : &backend_openai_batch_ops;
        if (l && ops->extra_header)
            l = curl_slist_append(l, ops->extra_header);
        if (l && c->api_key && *c->api_key) {
            char auth[1024];
            snprintf(auth, sizeof(auth), ops->auth_header, c->api_key);
            l = curl_slist_append(l, auth);
            memset(auth, 0, sizeof(auth));
        }
        *(k ? &f : &h) = l;
    }
    bb->hdrs = h;
    bb->hdrs_form = f;
    bb->l.stats.limit = bb->l.c.max_lines;
    if (!bb->name || !bb->url || !bb->easy || !h || !f || (c->upstream_model && !bb->upstream_model))
        goto nomem;
    *out = bb;
    return NS_OK;
nomem:
    snprintf(err, errlen, "out of memory");
    bb_free(bb);
    return NS_ERR_NOMEM;
}

static int bb_init_openai(const struct backend_conf *c, void **out, char *err, size_t errlen)
{
    return bb_init(&bb_openai, c, out, err, errlen);
}

static int bb_init_anthropic(const struct backend_conf *c, void **out, char *err, size_t errlen)
{
    return bb_init(&backend_batch_anthropic, c, out, err, errlen);
}

static void bb_free(void *impl)
{
    struct batch_backend *bb = impl;
    if (!bb)
        return;
    curl_slist_free_all(bb->hdrs);
    curl_slist_free_all(bb->hdrs_form);
    if (bb->easy)
        curl_easy_cleanup(bb->easy);
    batch_loop_free(&bb->l);
    free(bb->name);
    free(bb->url);
    free(bb->upstream_model);
    free(bb);
}

static void bb_admit(struct batch_backend *bb, struct engine_request *r, double now)
{
    struct bb_job *j = calloc(1, sizeof(*j));
    if (!j) {
        batch_loop_reject(&bb->l, r, NS_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    j->req = r;
    j->t_admit = now;
    char err[300] = "";
    j->body = bb->prov->body(bb, r, &j->chat, err, sizeof(err));
    if (!j->body) {
        bb_fail(bb, j, NS_ERR_UNSUPPORTED, "%s", err);
        return;
    }
    if (bb->preset && !j->chat && !bb->preset->completions) {
        bb_fail(bb, j, NS_ERR_UNSUPPORTED, "model '%s' runs on %s's batch API, which runs /v1/chat/completions only, "
                "not /v1/completions", bb->name, bb->preset->title);
        return;
    }
    /* its line in the input file: the body, and at most this much around it:
     * {"custom_id":"ns-<20 digits>","method":"POST","url":"/v1/chat/completions","body":}\n */
    char *text = cJSON_PrintUnformatted(j->body);
    j->bytes = text ? strlen(text) + 96 : 0;
    free(text);
    if (!j->bytes) {
        bb_fail(bb, j, NS_ERR_NOMEM, "out of memory");
        return;
    }
    if ((int64_t)j->bytes > bb->l.c.max_bytes) {
        bb_fail(bb, j, NS_ERR_TOO_LARGE, "this request is %zu bytes as a batch line, over the %lld-byte input file "
                "limit of the batch API behind model '%s'", j->bytes, (long long)bb->l.c.max_bytes, bb->name);
        return;
    }
    bb_pend(bb, j);
}

/* pending jobs -> one upstream batch (of one endpoint), up to max_lines lines and max_bytes
 * bytes of input file */
static void bb_flush(struct batch_backend *bb, double now)
{
    struct bb_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return;
    b->chat = bb->pending->chat;
    struct bb_job **pp = &bb->pending, **tail = &b->jobs;
    while (*pp && b->n < bb->l.c.max_lines) {
        struct bb_job *j = *pp;
        if (j->chat != b->chat) {
            pp = &j->next;
            continue;
        }
        if (b->n && (int64_t)(b->bytes + j->bytes) > bb->l.c.max_bytes)
            break; /* full: the rest go in the next upstream batch */
        *pp = j->next;
        j->next = NULL;
        j->attempts++;
        snprintf(j->custom_id, sizeof(j->custom_id), "ns-%llu", (unsigned long long)++bb->seq);
        *tail = j;
        tail = &j->next;
        b->n++;
        b->bytes += j->bytes;
        bb->l.n_pending--;
        bb->l.pending_bytes -= j->bytes;
    }
    bb->pending_tail = &bb->pending;
    while (*bb->pending_tail)
        bb->pending_tail = &(*bb->pending_tail)->next;
    bb->l.oldest = now;
    char err[600];
    int rc = bb->prov->submit(bb, b, err, sizeof(err));
    if (rc) {
        log_event(LOG_WARN, bb->name, NULL, "model '%s': cannot submit an upstream batch of %d requests: %s", bb->name, b->n, err);
        bool refused = batch_loop_submit_failed(&bb->l, rc, now);
        while (b->jobs) {
            struct bb_job *j = b->jobs;
            b->jobs = j->next;
            if (refused)
                bb_fail(bb, j, rc, "the batch API behind model '%s' refused the batch: %s", bb->name, err);
            else
                backend_batch_retry(bb, j, err);
        }
        free(b);
        return;
    }
    bb->l.submit_failures = 0;
    log_event(LOG_INFO, bb->name, NULL, "model '%s': %d requests sent upstream as batch %s", bb->name, b->n, b->id);
    b->interval = bb->l.c.poll_interval_s;
    b->next_poll = now + b->interval;
    b->next = bb->batches;
    bb->batches = b;
    bb->n_upstream += b->n;
}

static void bb_poll_all(struct batch_backend *bb, double now)
{
    for (struct bb_batch **pp = &bb->batches; *pp;) {
        struct bb_batch *b = *pp;
        if (b->next_poll > now) {
            pp = &b->next;
            continue;
        }
        bool ended = false;
        char err[600];
        if (bb->prov->poll(bb, b, &ended, err, sizeof(err)) != NS_OK)
            log_event(LOG_WARN, bb->name, NULL, "model '%s': polling upstream batch %s: %s (will poll again)", bb->name, b->id, err);
        if (ended && bb->prov->collect(bb, b, err, sizeof(err)) != NS_OK) {
            log_event(LOG_WARN, bb->name, NULL, "model '%s': fetching the results of upstream batch %s: %s (will retry)",
                    bb->name, b->id, err);
            ended = false;
        }
        if (!ended) {
            b->interval = fmin(b->interval * 1.5, bb->l.c.poll_max_s);
            b->next_poll = clock_now() + b->interval;
            pp = &b->next;
            continue;
        }
        /* what the results did not mention runs again (the ones they did already left) */
        while (b->jobs) {
            struct bb_job *j = b->jobs;
            b->jobs = j->next;
            backend_batch_retry(bb, j, b->failure);
        }
        *pp = b->next;
        free(b);
    }
    int n = 0;
    for (struct bb_batch *b = bb->batches; b; b = b->next)
        n += b->n;
    bb->n_upstream = n;
}

static void bb_cancel_all(struct batch_backend *bb)
{
    while (bb->pending) {
        struct bb_job *j = bb->pending;
        bb->pending = j->next;
        bb_fail(bb, j, NS_ERR_CANCELLED, "the server is shutting down");
    }
    bb->pending_tail = &bb->pending;
    bb->l.n_pending = 0;
    bb->l.pending_bytes = 0;
    while (bb->batches) {
        struct bb_batch *b = bb->batches;
        bb->batches = b->next;
        while (b->jobs) {
            struct bb_job *j = b->jobs;
            b->jobs = j->next;
            bb_fail(bb, j, NS_ERR_CANCELLED, "the server is shutting down");
        }
        free(b);
    }
    bb->n_upstream = 0;
}

static void bb_loop_admit(void *impl, struct engine_request *r, double now) { bb_admit(impl, r, now); }
static void bb_loop_flush(void *impl, double now) { bb_flush(impl, now); }
static void bb_loop_poll_all(void *impl, double now) { bb_poll_all(impl, now); }
static void bb_loop_cancel_all(void *impl) { bb_cancel_all(impl); }
static void bb_loop_reconf(void *impl) { bb_cap(impl); }

static int bb_loop_upstream(void *impl, bool *live, double *until)
{
    struct batch_backend *bb = impl;
    for (struct bb_batch *b = bb->batches; b; b = b->next)
        *until = fmin(*until, b->next_poll);
    *live = bb->batches != NULL;
    return bb->n_upstream;
}

static const struct batch_loop_ops bb_loop_ops = {
    .admit = bb_loop_admit,
    .flush = bb_loop_flush,
    .poll_all = bb_loop_poll_all,
    .upstream = bb_loop_upstream,
    .reconf = bb_loop_reconf,
    .cancel_all = bb_loop_cancel_all,
};

static int bb_run(void *impl, const struct engine_source *src) { return batch_loop_run(&((struct batch_backend *)impl)->l, src); }
static void bb_stop(void *impl) { batch_loop_stop(&((struct batch_backend *)impl)->l); }
static void bb_wake(void *impl) { batch_loop_wake(&((struct batch_backend *)impl)->l); }
static void bb_reconfigure(void *impl, const struct backend_conf *c) { batch_loop_reconfigure(&((struct batch_backend *)impl)->l, c); }

static void bb_get_info(void *impl, struct backend_info *out)
{
    struct batch_backend *bb = impl;
    memset(out, 0, sizeof(*out));
    snprintf(out->kind, sizeof(out->kind), "%s", bb->prov->kind);
    if (bb->preset)
        snprintf(out->desc, sizeof(out->desc), "%s (%s, completion_window %s)", bb->url, bb->preset->title, bb->window);
    else
        snprintf(out->desc, sizeof(out->desc), "%s", bb->url);
}

static void bb_get_stats(void *impl, struct backend_stats *out) { batch_loop_get_stats(&((struct batch_backend *)impl)->l, out); }

const struct backend_ops backend_openai_batch_ops = {
    .kind = "openai-batch",
    .forward = true,
    .offline = true,
    .auth_header = "Authorization: Bearer %s",
    .init = bb_init_openai,
    .free = bb_free,
    .run = bb_run,
    .stop = bb_stop,
    .wake = bb_wake,
    .get_info = bb_get_info,
    .get_stats = bb_get_stats,
    .reconfigure = bb_reconfigure,
};

const struct backend_ops backend_anthropic_batch_ops = {
    .kind = "anthropic-batch",
    .forward = true,
    .offline = true,
    .auth_header = "x-api-key: %s",
    .extra_header = "anthropic-version: 2023-06-01",
    .init = bb_init_anthropic,
    .free = bb_free,
    .run = bb_run,
    .stop = bb_stop,
    .wake = bb_wake,
    .get_info = bb_get_info,
    .get_stats = bb_get_stats,
    .reconfigure = bb_reconfigure,
};
