/*
 * backend_gemini.c — "gemini-batch": lines offloaded to Google's Gemini Batch Mode API
 * (models/{model}:batchGenerateContent, batches/{name}), for its batch discount.
 *
 * DESIGN
 * The same pull loop as openai-batch / anthropic-batch (batch_loop.c, this file's jobs and
 * batches as its ops): pulled lines wait in `pending` until a flush (the source is dry and flush_lines wait; the oldest waited
 * flush_after; max_lines are waiting), then go upstream as one Gemini batch job. Each line
 * is translated by gemini_wire.c (a line that cannot be translated fails at once, its
 * error naming the field) and keyed "ns-<n>". A job whose inline request stays under
 * inline_max bytes (default 10 MB; Gemini takes 20 MB inline; env
 * NIGHTSHIFT_GEMINI_INLINE_MAX for tests) is sent inline; a larger one is uploaded as JSONL
 * ({"key", "request"}) with the Files API's resumable upload (start, then upload+finalize)
 * and the job names the file. Jobs are polled with a growing interval (poll_interval x1.5,
 * at most poll_max); an ended job's responses (inline, or its responses file downloaded)
 * are mapped back by key and translated into OpenAI chat.completion bodies.
 *
 * What a job did not finish — the job FAILED, EXPIRED or was CANCELLED upstream, a line's
 * status is retryable (429/5xx, RESOURCE_EXHAUSTED, UNAVAILABLE), or a line is missing
 * from the responses — goes back to `pending` for the next job, up to max_attempts tries
 * (a job's failure is most often Google's and an expired job's lines are simply late: a
 * new job gives them a new 24 h window). A line's non-retryable status is its error.
 *
 * Cancel, both ways: a request whose `cancelled` flag is set (its client went away, or its
 * batch was cancelled) ends at once with NS_ERR_CANCELLED; a job left with no live line is
 * cancelled upstream (POST batches/{name}:cancel). A job cancelled upstream: see above.
 *
 * DURABILITY (kill -9): while a line is upstream it stays claimed (running) in our store;
 * at the next start the store requeues it and it is pulled again. To poll the same job
 * instead of submitting it twice, every job is recorded in a state file in the data
 * directory (state_dir/gemini-batch-<model>.json, written with util/durable): first its
 * displayName and its lines' keys and request hashes (sha256 of the translated request),
 * before the create call; then its name, once Gemini gave it. At start the file's jobs
 * are restored with placeholder lines; a pulled request whose hash matches a placeholder
 * takes its place (identical requests are interchangeable) instead of going to `pending`.
 * A job recorded without a name (killed during the create call) is looked for by its
 * displayName in GET batches; not found, it was never created and its lines go again.
 * Results that arrive for a placeholder whose request has not been pulled again wait for it
 * for RESTORED_GRACE seconds (its batch may have been cancelled meanwhile).
 *
 * The REST calls themselves (the key header, the paths) are gemini_api.c's, their retries
 * batch_http.c's.
 *
 * THREADS: run() on the scheduler's thread, blocking HTTP calls (gemini_api) on it;
 * stop(), wake(), reconfigure() from any thread (mu + cv).
 */
#include "backend.h"
#include "backend_gemini_int.h"
#include "gemini_api.h"
#include "gemini_wire.h"
#include "upstream.h"

#include "../util/buf.h"
#include "../util/clock.h"
#include "../util/log.h"
#include "../util/sha256.h"
#include "../util/status.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#define GB_MAX_RESPONSE (1024u << 20)
#define GB_INLINE_MAX (10u << 20) /* Gemini's inline limit is 20 MB for the whole request */
#define GB_RESTORED_GRACE 600.0

static const char *gb_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- settling one job ---------------------------------------------------------------------- */

static void gb_job_free(struct gb_job *j)
{
    cJSON_Delete(j->greq);
    cJSON_Delete(j->result);
    free(j);
}

/* a batch and what is left in it (placeholders: their requests were settled elsewhere) */
static void gb_batch_free(struct gb_batch *b)
{
    while (b->jobs) {
        struct gb_job *j = b->jobs;
        b->jobs = j->next;
        gb_job_free(j);
    }
    free(b->keys);
    free(b);
}

static void gb_done(struct gemini_backend *gb, struct gb_job *j, struct engine_result *res)
{
    batch_loop_done(&gb->l, j->req, res, j->t_admit, j->attempts);
    gb_job_free(j);
}

static void gb_fail(struct gemini_backend *gb, struct gb_job *j, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void gb_fail(struct gemini_backend *gb, struct gb_job *j, int status, const char *param, const char *fmt, ...)
{
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    res.status = status;
    res.param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res.message, sizeof(res.message), fmt, ap);
    va_end(ap);
    gb_done(gb, j, &res);
}

static void gb_pend(struct gemini_backend *gb, struct gb_job *j)
{
    j->next = NULL;
    bool was_empty = !gb->pending;
    *gb->pending_tail = j;
    gb->pending_tail = &j->next;
    batch_loop_pended(&gb->l, was_empty, 0);
}

static void gb_retry(struct gemini_backend *gb, struct gb_job *j, const char *why)
{
    if (!batch_loop_may_retry(&gb->l, j->attempts)) {
        gb_fail(gb, j, NS_ERR_UPSTREAM, NULL,
                "the Gemini batch API behind model '%s' did not finish this request in %d tries; last: %s", gb->name,
                j->attempts, why);
        return;
    }
    gb_pend(gb, j);
}

/* a GenerateContentResponse: the OpenAI chat.completion the client gets */
static void gb_succeed(struct gemini_backend *gb, struct gb_job *j, const cJSON *gresp, const char *seed)
{
    const cJSON *cm = j->req->body ? cJSON_GetObjectItemCaseSensitive(j->req->body, "model") : NULL;
    cJSON *body = gemini_wire_response(gresp, cJSON_IsString(cm) ? cm->valuestring : gb->name, seed);
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    upstream_parse_success(body, true, &res);
    /* the dialects that rebuild the answer (Anthropic, Gemini, ...) read these */
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(body, "choices"), 0), "message");
    const cJSON *rc = cJSON_GetObjectItemCaseSensitive(msg, "reasoning_content");
    if (cJSON_IsString(rc)) {
        res.reasoning = rc->valuestring;
        res.reasoning_len = strlen(rc->valuestring);
    }
    res.reasoning_tokens = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(body, "usage"), "completion_tokens_details"),
        "reasoning_tokens"));
    if (res.reasoning_tokens < 0)
        res.reasoning_tokens = 0;
    const cJSON *tcs = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
    int ntc = cJSON_GetArraySize(tcs);
    struct engine_tool_call *calls = ntc ? calloc((size_t)ntc, sizeof(*calls)) : NULL;
    for (int i = 0; calls && i < ntc; i++) {
        const cJSON *tc = cJSON_GetArrayItem(tcs, i), *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
        calls[i].id = gb_str(tc, "id");
        calls[i].name = gb_str(fn, "name");
        calls[i].arguments = gb_str(fn, "arguments");
    }
    res.tool_calls = calls;
    res.n_tool_calls = calls ? ntc : 0;
    char *raw = cJSON_PrintUnformatted(body);
    res.raw_body = raw;
    res.raw_len = raw ? strlen(raw) : 0;
    if (!raw)
        res.http_status = 0;
    if (gb->l.src->token && res.text_len) {
        struct engine_delta d = {.text = res.text, .len = res.text_len, .cached_tokens = -1, .tool_index = -1};
        gb->l.src->token(gb->l.src->ud, j->req, &d);
    }
    gb_done(gb, j, &res);
    free(raw);
    free(calls);
    cJSON_Delete(body);
}

/* a line's google.rpc.Status: retried when retryable, else the line's error as given */
static void gb_line_error(struct gemini_backend *gb, struct gb_job *j, const cJSON *status)
{
    long code;
    cJSON *body = gemini_wire_error(status, &code);
    char why[300];
    upstream_error_text(body, NULL, 0, why, sizeof(why));
    if (upstream_retryable_code(code)) {
        char w[340];
        snprintf(w, sizeof(w), "HTTP %ld: %s", code, why);
        gb_retry(gb, j, w);
        cJSON_Delete(body);
        return;
    }
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    res.status = upstream_status_of(code);
    res.http_status = (int)code;
    snprintf(res.message, sizeof(res.message), "%s", why);
    char *raw = cJSON_PrintUnformatted(body);
    res.raw_body = raw;
    res.raw_len = raw ? strlen(raw) : 0;
    gb_done(gb, j, &res);
    free(raw);
    cJSON_Delete(body);
}

/* settle a job from one result line {"key", "response"} or {"key", "error"|"status"} */
static void gb_settle(struct gemini_backend *gb, struct gb_batch *b, struct gb_job *j, const cJSON *line)
{
    const cJSON *resp = cJSON_GetObjectItemCaseSensitive(line, "response");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(line, "error");
    if (!st)
        st = cJSON_GetObjectItemCaseSensitive(line, "status");
    if (cJSON_IsObject(st)) {
        gb_line_error(gb, j, st);
    } else if (cJSON_IsObject(resp)) {
        const char *tail = strrchr(b->name, '/');
        char seed[160];
        snprintf(seed, sizeof(seed), "%s-%s", tail ? tail + 1 : b->display, j->key);
        gb_succeed(gb, j, resp, seed);
    } else {
        gb_retry(gb, j, "the Gemini batch answered this request with neither a response nor an error");
    }
}

static struct gb_job *gb_take(struct gb_batch *b, const char *key)
{
    for (struct gb_job **pp = &b->jobs; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->key, key) == 0) {
            struct gb_job *j = *pp;
            *pp = j->next;
            b->n--;
            return j;
        }
    return NULL;
}

/* one result line of a job: settled, or kept for a placeholder's request */
static void gb_result(struct gemini_backend *gb, struct gb_batch *b, const char *key, const cJSON *line)
{
    for (struct gb_job *j = b->jobs; j; j = j->next)
        if (!strcmp(j->key, key) && !j->req) {
            if (!j->result)
                j->result = cJSON_Duplicate(line, 1);
            return;
        }
    struct gb_job *j = gb_take(b, key);
    if (j)
        gb_settle(gb, b, j, line);
}

/* ---- submit ------------------------------------------------------------------------------ */

static int gb_submit(struct gemini_backend *gb, struct gb_batch *b, char *err, size_t errlen)
{
    int rc = NS_ERR_NOMEM;
    cJSON *req = cJSON_CreateObject(), *o = NULL;
    cJSON *batch = cJSON_AddObjectToObject(req, "batch");
    cJSON_AddStringToObject(batch, "displayName", b->display);
    cJSON *ic = cJSON_AddObjectToObject(batch, "inputConfig");
    cJSON *arr = cJSON_AddArrayToObject(cJSON_AddObjectToObject(ic, "requests"), "requests");
    for (struct gb_job *j = b->jobs; j; j = j->next) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddItemReferenceToObject(r, "request", j->greq);
        cJSON_AddStringToObject(cJSON_AddObjectToObject(r, "metadata"), "key", j->key);
        cJSON_AddItemToArray(arr, r);
    }
    char *body = cJSON_PrintUnformatted(req);
    struct buf jl;
    buf_init(&jl, GB_MAX_RESPONSE);
    if (!body)
        goto out;
    if (strlen(body) > gb->inline_max) {
        /* too big to go inline: the same requests as a JSONL file */
        for (struct gb_job *j = b->jobs; j; j = j->next) {
            cJSON *l = cJSON_CreateObject();
            cJSON_AddStringToObject(l, "key", j->key);
            cJSON_AddItemReferenceToObject(l, "request", j->greq);
            char *s = cJSON_PrintUnformatted(l);
            cJSON_Delete(l);
            if (!s || buf_appends(&jl, s) || buf_append(&jl, "\n", 1)) {
                free(s);
                goto out;
            }
            free(s);
        }
        char file[256];
        if ((rc = gemini_api_upload(gb->api, b->display, jl.p, jl.len, file, sizeof(file), err, errlen)))
            goto out;
        cJSON_DeleteItemFromObjectCaseSensitive(ic, "requests");
        cJSON_AddStringToObject(ic, "fileName", file);
        free(body);
        if (!(body = cJSON_PrintUnformatted(req))) {
            rc = NS_ERR_NOMEM;
            goto out;
        }
    }
    rc = gemini_api_create(gb->api, gb->upstream_model, body, b->name, sizeof(b->name), err, errlen);
out:
    if (rc == NS_ERR_NOMEM && !err[0])
        snprintf(err, errlen, "out of memory");
    cJSON_Delete(o);
    cJSON_Delete(req);
    free(body);
    buf_release(&jl);
    return rc;
}

/* a job recorded without a name: find it by displayName (it may have been created before
 * the kill). 1: found (b->name set), 0: not there, -1: the list could not be read */
static int gb_find(struct gemini_backend *gb, struct gb_batch *b)
{
    char err[600];
    int rc = gemini_api_find(gb->api, b->display, b->name, sizeof(b->name), err, sizeof(err));
    if (rc < 0)
        log_event(LOG_WARN, gb->name, NULL, "model '%s': cannot list Gemini batches to find %s: %s (will try again)",
                  gb->name, b->display, err);
    return rc < 0 ? -1 : rc;
}

/* ---- poll and collect ------------------------------------------------------------------------ */

static int gb_download(struct gemini_backend *gb, struct gb_batch *b, const char *file, char *err, size_t errlen)
{
    struct buf body;
    buf_init(&body, GB_MAX_RESPONSE);
    int rc = gemini_api_download(gb->api, file, &body, err, errlen);
    const char *p = body.p, *end = body.p + body.len;
    while (rc == NS_OK && p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        cJSON *o = cJSON_ParseWithLength(p, n);
        if (gb_str(o, "key"))
            gb_result(gb, b, gb_str(o, "key"), o);
        cJSON_Delete(o);
        p = nl ? nl + 1 : end;
    }
    buf_release(&body);
    return rc;
}

/* poll one job; when it has ended, collect its results. *ended: collected */
static int gb_poll(struct gemini_backend *gb, struct gb_batch *b, bool *ended, char *why, size_t whylen, char *err,
                   size_t errlen)
{
    cJSON *o = NULL;
    *ended = false;
    int rc = gemini_api_get(gb->api, b->name, &o, err, errlen);
    if (rc)
        return rc;
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(o, "metadata");
    const char *sts = gb_str(md, "state") ? gb_str(md, "state") : gb_str(o, "state");
    enum gemini_wire_state st = gemini_wire_state_of(sts);
    if (!gemini_wire_state_ended(st)) {
        cJSON_Delete(o);
        return NS_OK;
    }
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(o, "response");
    if (!out)
        out = cJSON_GetObjectItemCaseSensitive(md, "output");
    if (!out)
        out = cJSON_GetObjectItemCaseSensitive(o, "output");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    snprintf(why, whylen, "the Gemini batch %s ended %s%s%s", b->name, sts, gb_str(e, "message") ? ": " : "",
             gb_str(e, "message") ? gb_str(e, "message") : "");
    const char *file = gb_str(out, "responsesFile");
    const cJSON *inl = cJSON_GetObjectItemCaseSensitive(out, "inlinedResponses");
    if (cJSON_IsObject(inl))
        inl = cJSON_GetObjectItemCaseSensitive(inl, "inlinedResponses");
    if (file) {
        rc = gb_download(gb, b, file, err, errlen);
    } else if (cJSON_IsArray(inl)) {
        /* inline responses carry their request's metadata; the docs also promise input
         * order, which keys a response without metadata */
        int i = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, inl)
        {
            const char *key = gb_str(cJSON_GetObjectItemCaseSensitive(x, "metadata"), "key");
            if (!key && i < b->n_keys)
                key = b->keys[i];
            if (key)
                gb_result(gb, b, key, x);
            i++;
        }
    }
    cJSON_Delete(o);
    if (rc == NS_OK)
        *ended = true;
    return rc;
}

/* ---- the loop ----------------------------------------------------------------------------- */

static void gb_free(void *impl);
static const struct batch_loop_ops gb_loop_ops;

static int gb_init(const struct backend_conf *c, void **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *url = c->url ? c->url : backend_gemini_batch_ops.default_url;
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) {
        snprintf(err, errlen, "model '%s': backend gemini-batch needs url = http(s)://HOST[:PORT]", c->name);
        return NS_ERR_INVALID;
    }
    const char *key = c->api_key;
    if (!key || !*key)
        key = getenv(backend_gemini_batch_ops.default_key_env);
    if (!key || !*key) {
        snprintf(err, errlen, "model '%s': backend gemini-batch needs an API key: set %s, or name another variable "
                              "with api_key_env",
                 c->name, backend_gemini_batch_ops.default_key_env);
        return NS_ERR_INVALID;
    }
    struct gemini_backend *gb = calloc(1, sizeof(*gb));
    if (!gb)
        goto nomem;
    gb->name = strdup(c->name ? c->name : "default");
    batch_loop_init(&gb->l, &gb_loop_ops, gb, gb->name, "Gemini's batch API (gemini-batch)", c);
    gb->pending_tail = &gb->pending;
    const char *um = c->upstream_model ? c->upstream_model : gb->name;
    if (!strncmp(um, "models/", 7))
        um += 7;
    gb->upstream_model = strdup(um);
    const char *im = getenv("NIGHTSHIFT_GEMINI_INLINE_MAX");
    gb->inline_max = im && *im ? strtoull(im, NULL, 10) : GB_INLINE_MAX;
    if (c->state_dir) {
        char path[4096];
        int n = snprintf(path, sizeof(path), "%s/gemini-batch-", c->state_dir);
        for (const char *p = gb->name ? gb->name : ""; *p && n < (int)sizeof(path) - 8; p++)
            path[n++] = (char)((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                                       *p == '-' || *p == '.' || *p == '_'
                                   ? *p
                                   : '_');
        snprintf(path + n, sizeof(path) - (size_t)n, ".json");
        gb->state_path = strdup(path);
    }
    struct gemini_api_limits lim = {c->max_attempts, c->timeout_s, c->retry_base_s, c->retry_max_s};
    if (gemini_api_init(url, key, &lim, &gb->api))
        goto nomem;
    gb->l.stats.limit = gb->l.c.max_lines;
    if (!gb->name || !gb->upstream_model ||
        (c->state_dir && !gb->state_path))
        goto nomem;
    backend_gemini_state_load(gb);
    backend_gemini_index_build(gb);
    *out = gb;
    return NS_OK;
nomem:
    snprintf(err, errlen, "out of memory");
    gb_free(gb);
    return NS_ERR_NOMEM;
}

static void gb_free(void *impl)
{
    struct gemini_backend *gb = impl;
    if (!gb)
        return;
    while (gb->batches) { /* placeholders only: run() settled every request */
        struct gb_batch *b = gb->batches;
        gb->batches = b->next;
        gb_batch_free(b);
    }
    gemini_api_free(gb->api);
    batch_loop_free(&gb->l);
    free(gb->name);
    free(gb->upstream_model);
    free(gb->state_path);
    free(gb->hidx);
    free(gb);
}

static void gb_admit(struct gemini_backend *gb, struct engine_request *r, double now)
{
    struct gb_job *j = calloc(1, sizeof(*j));
    if (!j) {
        batch_loop_reject(&gb->l, r, NS_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    j->req = r;
    j->t_admit = now;
    char err[400];
    const char *param = NULL;
    /* another dialect's request (Anthropic, Gemini, ...) was parsed, not kept: its OpenAI body */
    bool chat = true;
    cJSON *built = r->body ? NULL : upstream_body_build(r, NULL, &chat);
    if (!r->body && (!built || !chat)) {
        cJSON_Delete(built);
        gb_fail(gb, j, NS_ERR_UNSUPPORTED, "prompt", "model '%s' (gemini-batch) takes chat requests only", gb->name);
        return;
    }
    j->greq = gemini_wire_request(r->body ? r->body : built, err, sizeof(err), &param);
    cJSON_Delete(built);
    if (!j->greq) {
        gb_fail(gb, j, NS_ERR_INVALID, param, "model '%s' (gemini-batch): %s", gb->name, err);
        return;
    }
    char *s = cJSON_PrintUnformatted(j->greq);
    if (!s) {
        gb_fail(gb, j, NS_ERR_NOMEM, NULL, "out of memory");
        return;
    }
    sha256_hex(s, strlen(s), j->hash);
    free(s);
    struct gb_batch *b = NULL;
    struct gb_job *ph = backend_gemini_index_take(gb, j->hash, &b);
    if (ph) { /* sent before the restart: wait for that job's answer */
        ph->req = r;
        ph->t_admit = now;
        ph->greq = j->greq;
        j->greq = NULL;
        gb_job_free(j);
        if (ph->result) {
            cJSON *line = ph->result;
            ph->result = NULL;
            gb_settle(gb, b, gb_take(b, ph->key), line);
            cJSON_Delete(line);
        }
        return;
    }
    gb_pend(gb, j);
}

static void gb_flush(struct gemini_backend *gb, double now)
{
    struct gb_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return;
    snprintf(b->display, sizeof(b->display), "nightshift-%.40s-%ld-%ld-%llu", gb->name, (long)getpid(),
             (long)time(NULL), (unsigned long long)gb->seq + 1);
    struct gb_job **tail = &b->jobs;
    while (gb->pending && b->n < gb->l.c.max_lines) {
        struct gb_job *j = gb->pending;
        gb->pending = j->next;
        j->next = NULL;
        j->attempts++;
        snprintf(j->key, sizeof(j->key), "ns-%llu", (unsigned long long)++gb->seq);
        *tail = j;
        tail = &j->next;
        b->n++;
        gb->l.n_pending--;
    }
    gb->pending_tail = &gb->pending;
    while (*gb->pending_tail)
        gb->pending_tail = &(*gb->pending_tail)->next;
    gb->l.oldest = now;
    if (!(b->keys = calloc((size_t)(b->n ? b->n : 1), sizeof(*b->keys)))) {
        while (b->jobs) { /* back where they were, for the next flush */
            struct gb_job *j = b->jobs;
            b->jobs = j->next;
            j->attempts--;
            gb_pend(gb, j);
        }
        gb_batch_free(b);
        return;
    }
    for (struct gb_job *j = b->jobs; j; j = j->next)
        snprintf(b->keys[b->n_keys++], sizeof(b->keys[0]), "%s", j->key);
    /* recorded before the create call: a kill during it leaves its displayName to look for */
    b->next = gb->batches;
    gb->batches = b;
    backend_gemini_state_save(gb);
    char err[600] = "";
    int rc = gb_submit(gb, b, err, sizeof(err));
    gb->batches = b->next;
    if (rc) {
        backend_gemini_state_save(gb);
        log_event(LOG_WARN, gb->name, NULL, "model '%s': cannot create a Gemini batch of %d requests: %s", gb->name,
                  b->n, err);
        bool refused = batch_loop_submit_failed(&gb->l, rc, now);
        while (b->jobs) {
            struct gb_job *j = b->jobs;
            b->jobs = j->next;
            if (refused)
                gb_fail(gb, j, rc, NULL, "the Gemini batch API behind model '%s' refused the batch: %s", gb->name, err);
            else
                gb_retry(gb, j, err);
        }
        gb_batch_free(b);
        return;
    }
    gb->l.submit_failures = 0;
    b->interval = gb->l.c.poll_interval_s;
    b->next_poll = now + b->interval;
    b->next = gb->batches;
    gb->batches = b;
    backend_gemini_state_save(gb);
    log_event(LOG_INFO, gb->name, NULL, "model '%s': %d requests sent to Gemini as %s", gb->name, b->n, b->name);
}

/* requests whose client or batch gave up: end them now; a job left without a live line
 * is cancelled upstream */
static void gb_cancel_dead(struct gemini_backend *gb, struct gb_batch *b)
{
    bool had = false;
    for (struct gb_job **pp = &b->jobs; *pp;) {
        struct gb_job *j = *pp;
        if (j->req && atomic_load(&j->req->cancelled)) {
            *pp = j->next;
            b->n--;
            had = true;
            gb_fail(gb, j, NS_ERR_CANCELLED, NULL, "the request was cancelled (its batch was cancelled, or its client went away) before Gemini answered it");
            continue;
        }
        pp = &j->next;
    }
    if (!had || b->jobs || !b->name[0])
        return;
    char err[600];
    if (gemini_api_cancel(gb->api, b->name, err, sizeof(err)))
        log_event(LOG_WARN, gb->name, NULL, "model '%s': cancelling %s: %s", gb->name, b->name, err);
    else
        log_event(LOG_INFO, gb->name, NULL, "model '%s': Gemini batch %s cancelled (no request waits for it)",
                  gb->name, b->name);
}

static void gb_poll_all(struct gemini_backend *gb, double now)
{
    bool changed = false;
    for (struct gb_batch **pp = &gb->batches; *pp;) {
        struct gb_batch *b = *pp;
        int before = b->n;
        gb_cancel_dead(gb, b);
        int found = 1;
        if (b->restored && !b->name[0] && !b->ended && b->next_poll <= now && (found = gb_find(gb, b)) == 0) {
            log_event(LOG_INFO, gb->name, NULL, "model '%s': %s was never created upstream: its lines go again",
                      gb->name, b->display);
            b->ended = true; /* placeholders: their requests take the ordinary path */
            b->ended_at = now - GB_RESTORED_GRACE;
        }
        if (found < 0) { /* the list failed: look again later */
            b->interval = fmin(fmax(b->interval, gb->l.c.poll_interval_s) * 1.5, gb->l.c.poll_max_s);
            b->next_poll = now + b->interval;
            pp = &b->next;
            continue;
        }
        if (!b->jobs || (b->ended && now - b->ended_at >= GB_RESTORED_GRACE)) {
            *pp = b->next;
            /* what is left are placeholders nobody asked for again; a request that took the
             * place of one (none should be left: gb_admit settles them at once) goes again */
            for (struct gb_job **jp = &b->jobs; *jp;) {
                struct gb_job *j = *jp;
                if (j->req) {
                    *jp = j->next;
                    gb_retry(gb, j, "its Gemini batch ended without an answer for it");
                } else {
                    jp = &j->next;
                }
            }
            bool restored = b->restored;
            gb_batch_free(b);
            if (restored)
                backend_gemini_index_build(gb);
            changed = true;
            continue;
        }
        changed |= b->n != before;
        if (b->ended || b->next_poll > now) {
            pp = &b->next;
            continue;
        }
        bool ended = false;
        char err[600], why[400] = "";
        if (gb_poll(gb, b, &ended, why, sizeof(why), err, sizeof(err)) != NS_OK)
            log_event(LOG_WARN, gb->name, NULL, "model '%s': polling Gemini batch %s: %s (will poll again)", gb->name,
                      b->name, err);
        if (!ended) {
            b->interval = fmin(fmax(b->interval, gb->l.c.poll_interval_s) * 1.5, gb->l.c.poll_max_s);
            b->next_poll = clock_now() + b->interval;
            pp = &b->next;
            continue;
        }
        /* what the results did not mention runs again; placeholders wait for their requests */
        for (struct gb_job **jp = &b->jobs; *jp;) {
            struct gb_job *j = *jp;
            if (!j->req) {
                jp = &j->next;
                continue;
            }
            *jp = j->next;
            b->n--;
            gb_retry(gb, j, why);
        }
        b->ended = true;
        b->ended_at = now;
        changed = true;
    }
    if (changed)
        backend_gemini_state_save(gb);
}

static void gb_cancel_all(struct gemini_backend *gb)
{
    while (gb->pending) {
        struct gb_job *j = gb->pending;
        gb->pending = j->next;
        gb_fail(gb, j, NS_ERR_CANCELLED, NULL, "the server is shutting down");
    }
    gb->pending_tail = &gb->pending;
    gb->l.n_pending = 0;
    /* jobs stay upstream and in the state file, and their requests stay claimed in the
     * store: the next start polls the same jobs for them */
    for (struct gb_batch *b = gb->batches; b; b = b->next)
        for (struct gb_job *j = b->jobs; j; j = j->next) {
            if (!j->req)
                continue;
            struct engine_result res;
            memset(&res, 0, sizeof(res));
            res.status = NS_ERR_CANCELLED;
            res.text = "";
            res.stop_index = -1;
            snprintf(res.message, sizeof(res.message), "the server is shutting down");
            gb->l.src->done(gb->l.src->ud, j->req, &res);
            j->req = NULL;
        }
}

static void gb_loop_admit(void *impl, struct engine_request *r, double now) { gb_admit(impl, r, now); }
static void gb_loop_flush(void *impl, double now) { gb_flush(impl, now); }
static void gb_loop_poll_all(void *impl, double now) { gb_poll_all(impl, now); }
static void gb_loop_cancel_all(void *impl) { gb_cancel_all(impl); }

static void gb_loop_reconf(void *impl)
{
    struct gemini_backend *gb = impl;
    struct gemini_api_limits lim = {gb->l.c.max_attempts, gb->l.c.timeout_s, gb->l.c.retry_base_s, gb->l.c.retry_max_s};
    gemini_api_set_limits(gb->api, &lim);
}

/* restored placeholders are upstream too, but only a line with its request keeps the run
 * going; an ended job is not polled again */
static int gb_loop_upstream(void *impl, bool *live, double *until)
{
    struct gemini_backend *gb = impl;
    int up = 0;
    for (struct gb_batch *b = gb->batches; b; b = b->next) {
        up += b->n;
        for (struct gb_job *j = b->jobs; j && !*live; j = j->next)
            *live = j->req != NULL;
        if (!b->ended)
            *until = fmin(*until, b->next_poll);
    }
    return up;
}

static const struct batch_loop_ops gb_loop_ops = {
    .admit = gb_loop_admit,
    .flush = gb_loop_flush,
    .poll_all = gb_loop_poll_all,
    .upstream = gb_loop_upstream,
    .reconf = gb_loop_reconf,
    .cancel_all = gb_loop_cancel_all,
};

static int gb_run(void *impl, const struct engine_source *src) { return batch_loop_run(&((struct gemini_backend *)impl)->l, src); }
static void gb_wake(void *impl) { batch_loop_wake(&((struct gemini_backend *)impl)->l); }
static void gb_reconfigure(void *impl, const struct backend_conf *c) { batch_loop_reconfigure(&((struct gemini_backend *)impl)->l, c); }

static void gb_stop(void *impl)
{
    struct gemini_backend *gb = impl;
    batch_loop_stop(&gb->l);
    gemini_api_stop(gb->api); /* a call in progress returns after its current try */
}

static void gb_get_info(void *impl, struct backend_info *out)
{
    struct gemini_backend *gb = impl;
    memset(out, 0, sizeof(*out));
    snprintf(out->kind, sizeof(out->kind), "gemini-batch");
    snprintf(out->desc, sizeof(out->desc), "%s (%s)", gemini_api_base(gb->api), gb->upstream_model);
}

static void gb_get_stats(void *impl, struct backend_stats *out)
{
    struct gemini_backend *gb = impl;
    struct gemini_api_stats as;
    gemini_api_get_stats(gb->api, &as);
    batch_loop_get_stats(&gb->l, out); /* lines' retries and failures; the calls' below */
    out->attempts += as.attempts;
    out->retries += as.retries;
    out->rate_limited += as.rate_limited;
}

const struct backend_ops backend_gemini_batch_ops = {
    .kind = "gemini-batch",
    .forward = true,
    .offline = true,
    .auth_header = "x-goog-api-key: %s",
    .default_url = "https://generativelanguage.googleapis.com",
    .default_key_env = "GEMINI_API_KEY",
    .init = gb_init,
    .free = gb_free,
    .run = gb_run,
    .stop = gb_stop,
    .wake = gb_wake,
    .get_info = gb_get_info,
    .get_stats = gb_get_stats,
    .reconfigure = gb_reconfigure,
};
