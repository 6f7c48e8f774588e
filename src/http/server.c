/*
 * server.c — see server.h. Routing is a flat table of (method, path pattern, handler);
 * a pattern segment "*" matches one id.
 */
#include "server.h"
#include "../util/clock.h"

#include "../backend/backend.h"
#include "../engine/engine.h"
#include "../util/buf.h"
#include "../util/durable.h"
#include "../util/sha256.h"
#include "../util/status.h"
#include "../util/utf8.h"
#include "../util/jsonscan.h"
#include "../proto/anthropic.h"
#include "dashboard.h"
#include "httpguard.h"
#include "keycache.h"
#include "../proto/oai.h"
#include "../proto/ollama.h"
#include "quota.h"
#include "../util/log.h"

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include <arpa/inet.h>
#include <stdarg.h>
#include <strings.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct server {
    struct server_params p;
    char *data_dir;
    char *api_key;
    char api_key_hash[65];       /* its SHA-256, compared in constant time */
    bool no_auth;
    struct store *st;
    const struct store_ops *ops;
    struct sched **scheds;
    int n_scheds;
    struct batchmgr *bm;
    struct quota *quota;         /* per-key limits (quota.h) */
    struct keycache *keys;       /* API keys read from the store, for a moment (keycache.h) */
    struct httpguard *guard;     /* Host, Origin, slow heads (httpguard.h) */
    struct MHD_Daemon *mhd;
    int port;
    atomic_bool draining;        /* server_drain(): new requests get 503 */
    atomic_int inflight;         /* requests started, not completed (server_inflight) */
    /* the dashboard's last hour: a sample every SAMPLE_EVERY s (sampler thread) */
    pthread_t sampler;
    bool sampler_started, sampler_stop;
    pthread_mutex_t smu;
    pthread_cond_t scv;
    struct sample *ring;
    int n_samples, head;
    uint64_t last_tokens, last_lines;
    double last_t;
};

#define SAMPLES 720
#define SAMPLE_EVERY 5

struct sample {
    double t;                   /* unix seconds */
    double tokens_per_s, lines_per_s;
    double batch_pending, interactive_waiting;
};

struct server_params server_default_params(void)
{
    struct server_params p = {
        .host = "127.0.0.1",
        .port = 8080,
        .data_dir = ".",
        .api_key = NULL,
        .max_connections = 4096,
        .max_body = 16u << 20,
        .max_file = 200u * 1000u * 1000u,
        .message_batch_retention = 29 * 86400,
        .header_timeout = 10,
        .idle_timeout = 60,
        .min_body_rate = 1024,
    };
    return p;
}

int server_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 4 ? (int)(n > 64 ? 64 : n) : 4;
}

/* ---- per-request state -------------------------------------------------------------- */

struct upload {
    struct MHD_PostProcessor *pp;
    struct durable file;        /* files/<id>, written under a temporary name (durable.h) */
    char id[48];                /* the file's id, chosen when the upload starts */
    char *filename;
    struct buf purpose;
    int64_t bytes;
    bool have_file;
    bool too_large;
};

struct job;

struct req {
    struct server *srv;
    double t_start;             /* when its head came in (monotonic s): the body's rate */
    uint64_t body_bytes;
    bool counted;               /* in srv->inflight */
    bool started;
    int early_status;           /* set while reading the body: answer with this */
    char early_msg[200];
    struct buf body;
    struct upload *up;
    /* a handler that waits for a job (h_generate, h_embeddings) suspends the connection;
     * once resumed, MHD calls on_request again and answer(c, job, flavor) replies with the
     * job's result (and drops the reference) */
    enum MHD_Result (*answer)(struct MHD_Connection *c, struct job *j, int flavor);
    struct job *job;            /* the HTTP side's reference, while it waits */
    int flavor;                 /* h_generate's enum gen_flavor */
};

static void upload_free(struct upload *u)
{
    if (!u)
        return;
    if (u->pp)
        MHD_destroy_post_processor(u->pp);
    durable_rollback(&u->file);
    free(u->filename);
    buf_release(&u->purpose);
    free(u);
}

static void job_unref(struct job *j);

static void req_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct req *r = *con_cls;
    if (!r)
        return;
    if (r->counted)
        atomic_fetch_sub(&r->srv->inflight, 1);
    if (r->job)
        job_unref(r->job); /* ended before its answer (the server stopping) */
    buf_release(&r->body);
    upload_free(r->up);
    free(r);
    *con_cls = NULL;
}

/* ---- responses ---------------------------------------------------------------------- */

/* text (freed here) as the answer; retry_after > 0 adds a Retry-After header (429s) */
static enum MHD_Result send_text_retry(struct MHD_Connection *c, unsigned code, const char *type, char *text,
                                       int64_t retry_after)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (retry_after > 0) {
        char v[24];
        snprintf(v, sizeof(v), "%lld", (long long)retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    enum MHD_Result ret = httpguard_queue(c, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned code, const char *type, char *text)
{
    return send_text_retry(c, code, type, text, 0);
}

/* len bytes (copied) as the answer */
static enum MHD_Result send_bytes(struct MHD_Connection *c, unsigned code, const char *type, const char *p, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)p, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = httpguard_queue(c, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* o printed and deleted; every byte nightshift sends as JSON goes through here, so it is
 * valid UTF-8 whatever bytes a client or a model put in its strings (issue 27.12). NULL
 * when out of memory */
static char *json_print(cJSON *o)
{
    char *text = utf8_fix(cJSON_PrintUnformatted(o));
    cJSON_Delete(o);
    return text;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned code, cJSON *o)
{
    char *text = json_print(o);
    if (!text)
        return MHD_NO;
    return send_text(c, code, "application/json", text);
}

enum err_shape { ERR_OPENAI, ERR_ANTHROPIC, ERR_OLLAMA };

static enum MHD_Result send_shaped_error(struct MHD_Connection *c, enum err_shape shape, int status, const char *param,
                                         const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* an error body in the shape of the API a route belongs to, with the status's HTTP code:
 * an OpenAI error object, Anthropic's (the /v1/messages routes), or Ollama's {"error"}
 * (the /api/ routes); param and code are OpenAI's only */
static enum MHD_Result send_shaped_error(struct MHD_Connection *c, enum err_shape shape, int status, const char *param,
                                         const char *code, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int http = status_http(status);
    cJSON *body = shape == ERR_ANTHROPIC ? anthropic_error(status, msg)
                  : shape == ERR_OLLAMA  ? ollama_error(msg)
                                         : oai_error_body(status, msg, param, code);
    return send_json(c, (unsigned)(http ? http : 500), body);
}

/* a quota refusal (quota.h): 429 with Retry-After, in the shape of the route's API */
static enum MHD_Result send_quota_refusal(struct MHD_Connection *c, enum err_shape shape, const struct quota_refusal *why)
{
    cJSON *body = shape == ERR_ANTHROPIC ? anthropic_error(why->status, why->message)
                  : shape == ERR_OLLAMA  ? ollama_error(why->message)
                                         : oai_error_body(why->status, why->message, NULL, NULL);
    char *text = json_print(body);
    if (!text)
        return MHD_NO;
    return send_text_retry(c, (unsigned)status_http(why->status), "application/json", text, why->retry_after);
}

#define send_error(c, status, param, code, ...) send_shaped_error((c), ERR_OPENAI, (status), (param), (code), __VA_ARGS__)
#define send_ant_error(c, status, ...) send_shaped_error((c), ERR_ANTHROPIC, (status), NULL, NULL, __VA_ARGS__)
#define send_ollama_error(c, status, ...) send_shaped_error((c), ERR_OLLAMA, (status), NULL, NULL, __VA_ARGS__)

/* ---- JSON builders ------------------------------------------------------------------ */

static void add_ts(cJSON *o, const char *k, int64_t v)
{
    if (v)
        cJSON_AddNumberToObject(o, k, (double)v);
    else
        cJSON_AddNullToObject(o, k);
}

static void add_str_or_null(cJSON *o, const char *k, const char *v)
{
    if (v && *v)
        cJSON_AddStringToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static cJSON *file_json(const struct store_file *f)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", f->id);
    cJSON_AddStringToObject(o, "object", "file");
    cJSON_AddNumberToObject(o, "bytes", (double)f->bytes);
    cJSON_AddNumberToObject(o, "created_at", (double)f->created_at);
    add_ts(o, "expires_at", f->expires_at);
    cJSON_AddStringToObject(o, "filename", f->filename ? f->filename : "");
    cJSON_AddStringToObject(o, "purpose", f->purpose);
    cJSON_AddStringToObject(o, "status", "processed");
    cJSON_AddNullToObject(o, "status_details");
    return o;
}

static struct sched *sched_by_model(struct server *s, const char *model);

static cJSON *batch_json(struct server *srv, const struct store_batch *b)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", b->id);
    cJSON_AddStringToObject(o, "object", "batch");
    cJSON_AddStringToObject(o, "endpoint", b->endpoint);
    add_str_or_null(o, "model", b->model);
    cJSON *errs = b->errors ? cJSON_Parse(b->errors) : NULL;
    if (errs)
        cJSON_AddItemToObject(o, "errors", errs);
    else
        cJSON_AddNullToObject(o, "errors");
    cJSON_AddStringToObject(o, "input_file_id", b->input_file_id);
    cJSON_AddStringToObject(o, "completion_window", b->completion_window);
    cJSON_AddStringToObject(o, "status", store_batch_status_name(b->status));
    add_str_or_null(o, "output_file_id", b->output_file_id);
    add_str_or_null(o, "error_file_id", b->error_file_id);
    add_ts(o, "created_at", b->created_at);
    add_ts(o, "in_progress_at", b->in_progress_at);
    add_ts(o, "expires_at", b->expires_at);
    add_ts(o, "finalizing_at", b->finalizing_at);
    add_ts(o, "completed_at", b->completed_at);
    add_ts(o, "failed_at", b->failed_at);
    add_ts(o, "expired_at", b->expired_at);
    add_ts(o, "cancelling_at", b->cancelling_at);
    add_ts(o, "cancelled_at", b->cancelled_at);
    cJSON *rc = cJSON_AddObjectToObject(o, "request_counts");
    cJSON_AddNumberToObject(rc, "total", (double)b->total);
    cJSON_AddNumberToObject(rc, "completed", (double)b->completed);
    cJSON_AddNumberToObject(rc, "failed", (double)b->failed);
    cJSON *md = b->metadata ? cJSON_Parse(b->metadata) : NULL;
    if (md)
        cJSON_AddItemToObject(o, "metadata", md);
    else
        cJSON_AddNullToObject(o, "metadata");
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "input_tokens", (double)b->input_tokens);
    cJSON *itd = cJSON_AddObjectToObject(u, "input_tokens_details");
    cJSON_AddNumberToObject(itd, "cached_tokens", (double)b->cached_tokens);
    cJSON_AddNumberToObject(u, "output_tokens", (double)b->output_tokens);
    cJSON *otd = cJSON_AddObjectToObject(u, "output_tokens_details");
    cJSON_AddNumberToObject(otd, "reasoning_tokens", 0);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(b->input_tokens + b->output_tokens));
    /* extension: what the prefix cache saved on this batch */
    cJSON *ns = cJSON_AddObjectToObject(o, "nightshift");
    cJSON_AddNumberToObject(ns, "prompt_tokens_computed", (double)b->prompt_computed);
    cJSON_AddNumberToObject(ns, "prefix_cache_hit_ratio",
                            b->input_tokens ? (double)b->cached_tokens / (double)b->input_tokens : 0.0);
    /* cost at the model's configured prices (--config price_input/price_output), null when
     * it has none */
    struct sched *s = b->model ? sched_by_model(srv, b->model) : NULL;
    struct backend *be = s ? sched_backend(s) : NULL;
    double batch = be ? backend_cost(be, b->input_tokens, b->output_tokens, true) : -1;
    double rt = be ? backend_cost(be, b->input_tokens, b->output_tokens, false) : -1;
    if (batch >= 0) {
        cJSON_AddNumberToObject(ns, "cost_usd", batch);
        cJSON_AddNumberToObject(ns, "realtime_cost_usd", rt);
        cJSON_AddNumberToObject(ns, "savings_usd", rt - batch);
    } else {
        cJSON_AddNullToObject(ns, "cost_usd");
    }
    return o;
}

/* ---- routing ------------------------------------------------------------------------ */

#define MAX_IDS 2

struct route_ctx {
    struct server *srv;
    struct MHD_Connection *c;
    struct req *r;
    const char *ids[MAX_IDS];
    char idbuf[MAX_IDS][128];
    /* who asks (server_auth): the project that owns what it creates, and whether it may
     * see every project's files and batches */
    char owner[64];
    bool admin;
    /* the key's name ("" for --api-key, --no-auth and the open mode: no quota) and its
     * limits, the server's defaults filled in */
    char key[64];
    struct quota_limits lim;
};

typedef enum MHD_Result (*handler_fn)(struct route_ctx *x);

static const char *query(struct route_ctx *x, const char *k)
{
    return MHD_lookup_connection_value(x->c, MHD_GET_ARGUMENT_KIND, k);
}

static int parse_limit(struct route_ctx *x, int lo, int hi, int def, int *out)
{
    const char *v = query(x, "limit");
    if (!v) {
        *out = def;
        return NS_OK;
    }
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || n < lo || n > hi)
        return NS_ERR_INVALID;
    *out = (int)n;
    return NS_OK;
}

static struct sched *sched_by_model(struct server *s, const char *model)
{
    for (int i = 0; i < s->n_scheds; i++)
        if (strcmp(sched_model_name(s->scheds[i]), model) == 0)
            return s->scheds[i];
    return NULL;
}

/* GET /health */
static enum MHD_Result h_health(struct route_ctx *x)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    return send_json(x->c, 200, o);
}

/* GET /ready: a model is loaded and the store takes writes */
static enum MHD_Result h_ready(struct route_ctx *x)
{
    bool ok = x->srv->n_scheds > 0 && x->srv->ops->check(x->srv->st) == NS_OK;
    /* an empty transaction commits on a full disk: the schedulers know whether real writes
     * go through (issue 27.5) */
    bool writable = true;
    for (int i = 0; i < x->srv->n_scheds; i++)
        writable &= sched_store_writable(x->srv->scheds[i]);
    ok &= writable;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", ok ? "ready" : "not_ready");
    if (!writable)
        cJSON_AddStringToObject(o, "reason", "the store refuses writes (disk full?)");
    cJSON_AddNumberToObject(o, "models", x->srv->n_scheds);
    return send_json(x->c, ok ? 200 : 503, o);
}

static cJSON *model_json(struct sched *s)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", sched_model_name(s));
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", "nightshift");
    return m;
}

static enum MHD_Result h_models(struct route_ctx *x)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < x->srv->n_scheds; i++)
        cJSON_AddItemToArray(d, model_json(x->srv->scheds[i]));
    return send_json(x->c, 200, o);
}

static enum MHD_Result h_model_get(struct route_ctx *x)
{
    struct sched *s = sched_by_model(x->srv, x->ids[0]);
    if (!s)
        return send_error(x->c, NS_ERR_MODEL_NOT_FOUND, "model", NULL,
                          "The model '%.100s' does not exist or you do not have access to it.", x->ids[0]);
    return send_json(x->c, 200, model_json(s));
}

/* ---- chat / completions ------------------------------------------------------------- */

struct job {
    struct sched_job sj;
    pthread_mutex_t mu;
    /* the connection waiting for this job: MHD suspends it (job_suspend) while there is
     * nothing to send, and the engine side resumes it (job_wake) */
    struct MHD_Connection *conn;
    bool suspended;
    bool starved;               /* job_next_events found nothing to send yet */
    int refs;                   /* the engine's and the HTTP side's */
    bool done;
    bool stream, chat, include_usage, anthropic;
    bool ollama;                /* an /api/chat or /api/generate request */
    struct ollama_extra ox;
    double t_start;             /* clock_now() when it came in */
    /* streamed and not yet sent: text of choice 0 (Anthropic, Ollama), or whole SSE events
     * (OpenAI: one chunk per delta, made on the engine thread, each with its choice index
     * and logprobs) */
    struct buf pending;
    size_t lp_offset[ENGINE_MAX_CHOICES]; /* completions' streamed text_offset, per choice */
    /* tool_choice auto / required among several: a choice's text is held while it may be
     * a call (oai_tool_call_prefix); once it cannot, it streams as content (passed) */
    struct buf held[ENGINE_MAX_CHOICES];
    bool passed[ENGINE_MAX_CHOICES];
    struct engine_result res;   /* deep copy of the final result (engine_result_copy) */
    char id[48];
    char model[128];
    time_t created;
    bool sent_role, sent_final;
    int phase;                  /* streaming: 0 role, 1 content, 2 final, 3 usage, 4 done, 5 end */
    int n_prompt;
    struct quota *quota;        /* count the call's tokens for key (quota.h) when it ends */
    char key[64];
    struct buf out;             /* SSE bytes ready for the reader */
    size_t out_pos;
};

static void job_unref(struct job *j)
{
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left)
        return;
    oai_request_release(&j->sj.oreq);
    buf_release(&j->pending);
    buf_release(&j->out);
    for (int i = 0; i < ENGINE_MAX_CHOICES; i++)
        buf_release(&j->held[i]);
    engine_result_release(&j->res);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static cJSON *chunk_choice(struct job *j, int index, const char *text, size_t n, const char *finish, bool role,
                          const struct engine_delta *d);
static void sse_push_to(struct buf *b, cJSON *o);

/* Waiting without a thread: the connection's handler or content reader suspends it until
 * the job has something for it. Both sides hold mu, so a resume always follows its
 * suspend; MHD is called for the resume after mu is released (MHD's own locks are never
 * taken inside mu by one thread and around it by another). */
static void job_suspend(struct job *j)
{
    j->suspended = true;
    MHD_suspend_connection(j->conn);
}

/* mu held: news for the connection; true when the caller must resume it (after unlock) */
static bool job_wake(struct job *j)
{
    bool resume = j->suspended;
    j->suspended = false;
    return resume;
}

static void job_on_token(struct sched_job *sj, const struct engine_delta *d)
{
    struct job *j = (struct job *)sj;
    pthread_mutex_lock(&j->mu);
    if (j->anthropic || j->ollama) {
        if (d->index == 0)
            buf_append(&j->pending, d->text, d->len);
    } else if (j->sj.oreq.tool_mode != OAI_TOOLS_NONE && d->index >= 0 && d->index < ENGINE_MAX_CHOICES &&
               !j->passed[d->index]) {
        struct buf *h = &j->held[d->index];
        buf_append(h, d->text, d->len);
        if (!oai_tool_call_prefix(h->p ? h->p : "", h->len)) {
            j->passed[d->index] = true;
            sse_push_to(&j->pending, chunk_choice(j, d->index, h->p, h->len, NULL, false, d));
            buf_reset(h);
        }
    } else if (d->len || d->n_logprobs) {
        sse_push_to(&j->pending, chunk_choice(j, d->index, d->text, d->len, NULL, false, d));
    }
    bool resume = job_wake(j);
    pthread_mutex_unlock(&j->mu);
    if (resume)
        MHD_resume_connection(j->conn); /* the engine's reference keeps j alive */
}

static void job_on_done(struct sched_job *sj, const struct engine_result *res)
{
    struct job *j = (struct job *)sj;
    pthread_mutex_lock(&j->mu);
    /* text, logprobs and choices are valid during done() only */
    if (engine_result_copy(&j->res, res) != NS_OK) {
        memset(&j->res, 0, sizeof(j->res));
        j->res.status = NS_ERR_NOMEM;
        j->res.text = "";
        snprintf(j->res.message, sizeof(j->res.message), "out of memory");
    }
    if (j->key[0])
        quota_tokens_add(j->quota, j->key, (int64_t)res->prompt_tokens + res->completion_tokens);
    j->done = true;
    bool resume = job_wake(j);
    pthread_mutex_unlock(&j->mu);
    if (resume)
        MHD_resume_connection(j->conn);
    job_unref(j);
}

static cJSON *chunk_base(struct job *j)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", j->chat ? "chat.completion.chunk" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)j->created);
    cJSON_AddStringToObject(o, "model", j->model);
    cJSON_AddStringToObject(o, "system_fingerprint", "nightshift");
    return o;
}

static void sse_push_to(struct buf *b, cJSON *o)
{
    char *t = json_print(o);
    if (!t)
        return;
    buf_appends(b, "data: ");
    buf_appends(b, t);
    buf_appends(b, "\n\n");
    free(t);
}

static void sse_push(struct job *j, cJSON *o) { sse_push_to(&j->out, o); }

/* a chunk of choice `index`: new text (chat: the delta), its tokens' logprobs (d, when
 * the request asked for them), or the finish_reason */
static cJSON *chunk_choice(struct job *j, int index, const char *text, size_t n, const char *finish, bool role,
                          const struct engine_delta *d)
{
    cJSON *o = chunk_base(j);
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", index);
    if (j->chat) {
        oai_chunk_delta(&j->sj.oreq, cJSON_AddObjectToObject(c, "delta"), text, n, role);
    } else {
        char *t = strndup(text ? text : "", n);
        cJSON_AddStringToObject(c, "text", t ? t : "");
        free(t);
    }
    if (d && j->sj.oreq.req.logprobs && index >= 0 && index < ENGINE_MAX_CHOICES) {
        cJSON_AddItemToObject(c, "logprobs", oai_logprobs_json(&j->sj.oreq, d->logprobs, d->n_logprobs, d->logprob_text,
                                                               j->lp_offset[index]));
        for (int i = 0; i < d->n_logprobs; i++)
            j->lp_offset[index] += d->logprobs[i].piece_len;
    } else {
        cJSON_AddNullToObject(c, "logprobs");
    }
    if (finish)
        cJSON_AddStringToObject(c, "finish_reason", finish);
    else
        cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToArray(choices, c);
    if (j->include_usage)
        cJSON_AddNullToObject(o, "usage");
    return o;
}

static void sse_event(struct job *j, const char *name, cJSON *o)
{
    char *t = json_print(o);
    if (!t)
        return;
    buf_appendf(&j->out, "event: %s\ndata: %s\n\n", name, t);
    free(t);
}

/* Anthropic's event sequence: message_start, content_block_start, ping, content_block_delta*,
 * content_block_stop, message_delta, message_stop (or an error event) */
static void job_next_events_anthropic(struct job *j)
{
    while (j->out_pos >= j->out.len) {
        buf_reset(&j->out);
        j->out_pos = 0;
        if (j->phase == 0) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "message_start");
            cJSON *m = cJSON_AddObjectToObject(o, "message");
            cJSON_AddStringToObject(m, "id", j->id);
            cJSON_AddStringToObject(m, "type", "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            cJSON_AddArrayToObject(m, "content");
            cJSON_AddStringToObject(m, "model", j->model);
            cJSON_AddNullToObject(m, "stop_reason");
            cJSON_AddNullToObject(m, "stop_sequence");
            cJSON *u = cJSON_AddObjectToObject(m, "usage");
            cJSON_AddNumberToObject(u, "input_tokens", j->n_prompt);
            cJSON_AddNumberToObject(u, "output_tokens", 0);
            sse_event(j, "message_start", o);
            o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "content_block_start");
            cJSON_AddNumberToObject(o, "index", 0);
            cJSON *cb = cJSON_AddObjectToObject(o, "content_block");
            cJSON_AddStringToObject(cb, "type", "text");
            cJSON_AddStringToObject(cb, "text", "");
            sse_event(j, "content_block_start", o);
            o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "ping");
            sse_event(j, "ping", o);
            j->phase = 1;
            continue;
        }
        if (j->phase == 1) {
            if (j->pending.len) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "type", "content_block_delta");
                cJSON_AddNumberToObject(o, "index", 0);
                cJSON *d = cJSON_AddObjectToObject(o, "delta");
                cJSON_AddStringToObject(d, "type", "text_delta");
                char *t = strndup(j->pending.p, j->pending.len);
                cJSON_AddStringToObject(d, "text", t ? t : "");
                free(t);
                sse_event(j, "content_block_delta", o);
                buf_reset(&j->pending);
                continue;
            }
            if (!j->done) {
                j->starved = true;
                return;
            }
            j->phase = 2;
        }
        if (j->phase == 2) {
            if (j->res.status != NS_OK) {
                sse_event(j, "error", anthropic_error(j->res.status, j->res.message));
            } else {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "type", "content_block_stop");
                cJSON_AddNumberToObject(o, "index", 0);
                sse_event(j, "content_block_stop", o);
                o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "type", "message_delta");
                cJSON *d = cJSON_AddObjectToObject(o, "delta");
                cJSON_AddStringToObject(d, "stop_reason", anthropic_stop_reason(&j->res));
                if (j->res.stop_index >= 0 && j->res.stop_index < j->sj.oreq.req.n_stop)
                    cJSON_AddStringToObject(d, "stop_sequence", j->sj.oreq.req.stop[j->res.stop_index]);
                else
                    cJSON_AddNullToObject(d, "stop_sequence");
                cJSON *u = cJSON_AddObjectToObject(o, "usage");
                cJSON_AddNumberToObject(u, "output_tokens", j->res.completion_tokens);
                sse_event(j, "message_delta", o);
                o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "type", "message_stop");
                sse_event(j, "message_stop", o);
            }
            j->phase = 5;
            continue;
        }
        return;
    }
}

/* Ollama's stream: one JSON object a line, the last with done: true (or an error) */
static void job_next_events_ollama(struct job *j)
{
    while (j->out_pos >= j->out.len && j->phase != 5) {
        buf_reset(&j->out);
        j->out_pos = 0;
        cJSON *o = NULL;
        if (j->pending.len) {
            o = ollama_chunk(j->chat, j->model, j->pending.p, j->pending.len);
            buf_reset(&j->pending);
        } else if (!j->done) {
            j->starved = true;
            return;
        } else {
            o = j->res.status != NS_OK ? ollama_error(j->res.message)
                                       : ollama_final(j->chat, j->model, &j->res, "", j->t_start);
            j->phase = 5;
        }
        char *t = json_print(o);
        if (t)
            buf_appendf(&j->out, "%s\n", t);
        free(t);
    }
}

/* fill j->out with the next SSE events (mu held); j->starved when there is nothing yet */
static void job_next_events(struct job *j)
{
    j->starved = false;
    if (j->anthropic) {
        job_next_events_anthropic(j);
        return;
    }
    if (j->ollama) {
        job_next_events_ollama(j);
        return;
    }
    while (j->out_pos >= j->out.len) {
        buf_reset(&j->out);
        j->out_pos = 0;
        if (j->phase == 0 && j->chat) {
            int nc = j->sj.oreq.req.n > 1 ? j->sj.oreq.req.n : 1;
            for (int i = 0; i < nc; i++)
                sse_push(j, chunk_choice(j, i, "", 0, NULL, true, NULL));
            j->phase = 1;
            continue;
        }
        if (j->phase <= 1) {
            j->phase = 1;
            if (j->pending.len) {
                /* whole events made by job_on_token */
                struct buf t = j->out;
                j->out = j->pending;
                j->pending = t;
                continue;
            }
            if (!j->done) {
                j->starved = true;
                return;
            }
            j->phase = 2;
        }
        if (j->phase == 2) {
            if (j->res.status != NS_OK) {
                /* the request failed after the stream started: an error event, then [DONE] */
                cJSON *e = oai_error_body(j->res.status, j->res.message, j->res.param, NULL);
                sse_push(j, e);
            } else {
                for (int i = 0; i < oai_result_n_choices(&j->res); i++) {
                    struct engine_choice ch = oai_result_choice(&j->res, i);
                    const char *finish = oai_finish_reason_of(&j->sj.oreq, ch.finish);
                    if (j->sj.oreq.tool_mode != OAI_TOOLS_NONE && i < ENGINE_MAX_CHOICES && !j->passed[i]) {
                        /* held to the end: one call, or the text after all */
                        cJSON *call = ch.finish == ENGINE_FINISH_STOP
                                          ? oai_parse_tool_call(&j->sj.oreq, ch.text, ch.text_len, true)
                                          : NULL;
                        cJSON *o = chunk_choice(j, i, call ? NULL : ch.text, call ? 0 : ch.text_len, NULL, false, NULL);
                        if (call) {
                            cJSON *delta = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0), "delta");
                            cJSON_AddNullToObject(delta, "content");
                            cJSON_AddItemToArray(cJSON_AddArrayToObject(delta, "tool_calls"), call);
                            finish = "tool_calls";
                        }
                        sse_push(j, o);
                    }
                    sse_push(j, chunk_choice(j, i, j->chat ? NULL : "", 0, finish, false, NULL));
                }
            }
            j->phase = 3;
            continue;
        }
        if (j->phase == 3) {
            if (j->include_usage && j->res.status == NS_OK) {
                cJSON *o = chunk_base(j);
                cJSON_AddArrayToObject(o, "choices");
                cJSON *u = cJSON_AddObjectToObject(o, "usage");
                cJSON_AddNumberToObject(u, "prompt_tokens", j->res.prompt_tokens);
                cJSON_AddNumberToObject(u, "completion_tokens", j->res.completion_tokens);
                cJSON_AddNumberToObject(u, "total_tokens", j->res.prompt_tokens + j->res.completion_tokens);
                cJSON *pd = cJSON_AddObjectToObject(u, "prompt_tokens_details");
                cJSON_AddNumberToObject(pd, "cached_tokens", j->res.cached_tokens);
                sse_push(j, o);
            }
            j->phase = 4;
            continue;
        }
        if (j->phase == 4) {
            buf_appends(&j->out, "data: [DONE]\n\n");
            j->phase = 5;
            continue;
        }
        return; /* phase 5: end */
    }
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    struct job *j = cls;
    pthread_mutex_lock(&j->mu);
    job_next_events(j);
    if (j->out_pos >= j->out.len) {
        if (j->starved) {
            /* called again once resumed, with something to send */
            job_suspend(j);
            pthread_mutex_unlock(&j->mu);
            return 0;
        }
        pthread_mutex_unlock(&j->mu);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    size_t n = j->out.len - j->out_pos;
    if (n > max)
        n = max;
    memcpy(out, j->out.p + j->out_pos, n);
    j->out_pos += n;
    pthread_mutex_unlock(&j->mu);
    return (ssize_t)n;
}

/* the stream's response is gone: finished, or its client went away (a write failed); in
 * the second case the engine stops generating for nobody */
static void stream_free(void *cls)
{
    struct job *j = cls;
    pthread_mutex_lock(&j->mu);
    if (!j->done)
        atomic_store(&j->sj.oreq.req.cancelled, true);
    pthread_mutex_unlock(&j->mu);
    job_unref(j);
}

enum gen_flavor { GEN_CHAT, GEN_COMPLETION, GEN_MESSAGES, GEN_OLLAMA_CHAT, GEN_OLLAMA_GENERATE };

/* an error in the shape of the route's API */
#define GEN_ERROR(x, flavor, status, param, ...)                                                                   \
    ((flavor) == GEN_MESSAGES  ? send_ant_error((x)->c, (status), __VA_ARGS__)                                    \
     : (flavor) >= GEN_OLLAMA_CHAT ? send_ollama_error((x)->c, (status), __VA_ARGS__)                             \
                                   : send_error((x)->c, (status), (param), NULL, __VA_ARGS__))

static struct sched *sched_by_ollama_name(struct server *s, const char *model);
static bool ollama_answered(struct route_ctx *x, struct job *j, struct sched *s, enum MHD_Result *ret);
static enum MHD_Result gen_answer(struct MHD_Connection *c, struct job *j, int flavor);

/* Not done yet: the connection is suspended and r keeps j for answer (true). Done already:
 * false, the caller answers now. */
static bool job_wait(struct job *j, struct req *r, enum MHD_Result (*answer)(struct MHD_Connection *, struct job *, int),
                     int flavor)
{
    pthread_mutex_lock(&j->mu);
    bool wait = !j->done;
    if (wait) {
        r->answer = answer;
        r->job = j;
        r->flavor = flavor;
        job_suspend(j);
    }
    pthread_mutex_unlock(&j->mu);
    return wait;
}

static enum MHD_Result h_generate(struct route_ctx *x, enum gen_flavor flavor)
{
    bool chat = flavor != GEN_COMPLETION && flavor != GEN_OLLAMA_GENERATE;
    bool ollama = flavor >= GEN_OLLAMA_CHAT;
    struct oai_error err;
    /* the key's budget first: a refused call costs no parsing (and counts for nothing) */
    if (x->key[0]) {
        struct quota_refusal why;
        int qrc = quota_request_admit(x->srv->quota, x->key, x->lim, &why);
        if (qrc == NS_ERR_QUOTA_REQUESTS || qrc == NS_ERR_QUOTA_TOKENS)
            return send_quota_refusal(x->c, flavor == GEN_MESSAGES ? ERR_ANTHROPIC : ollama ? ERR_OLLAMA : ERR_OPENAI,
                                      &why);
        if (qrc)
            return GEN_ERROR(x, flavor, qrc, NULL, "out of memory");
    }
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return GEN_ERROR(x, flavor, NS_ERR_NOMEM, NULL, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    j->conn = x->c;
    buf_init(&j->pending, 64u << 20);
    buf_init(&j->out, 64u << 20);
    j->refs = 1;
    const char *body = x->r->body.p ? x->r->body.p : "";
    int rc;
    struct sched *s = NULL;
    if (flavor == GEN_MESSAGES) {
        rc = anthropic_request_parse(body, x->r->body.len, &j->sj.oreq, &err);
    } else if (ollama) {
        rc = ollama_request_parse(body, x->r->body.len, chat, &j->sj.oreq, &j->ox, &err);
    } else {
        /* the model decides how much we check: an upstream judges its own bodies */
        cJSON *root = cJSON_ParseWithLength(body, x->r->body.len);
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
        s = cJSON_IsString(m) ? sched_by_model(x->srv, m->valuestring) : NULL;
        if (!root)
            rc = oai_error_set(&err, NS_ERR_INVALID, NULL,
                               "We could not parse the JSON body of your request. The body must be valid JSON.");
        else if (s && sched_backend(s)->ops->forward)
            rc = oai_request_forward_from_json(root, chat, &j->sj.oreq, &err);
        else
            rc = oai_request_from_json(root, chat, &j->sj.oreq, &err);
    }
    if (rc) {
        job_unref(j);
        return GEN_ERROR(x, flavor, rc, err.param, "%s", err.message);
    }
    if (!s)
        s = ollama ? sched_by_ollama_name(x->srv, j->sj.oreq.model) : sched_by_model(x->srv, j->sj.oreq.model);
    if (!s) {
        enum MHD_Result ret =
            ollama ? send_ollama_error(x->c, NS_ERR_MODEL_NOT_FOUND, "model \"%.100s\" not found", j->sj.oreq.model)
                   : GEN_ERROR(x, flavor, NS_ERR_MODEL_NOT_FOUND, "model",
                               "The model '%.100s' does not exist or you do not have access to it.", j->sj.oreq.model);
        job_unref(j);
        return ret;
    }
    if (ollama) {
        j->ollama = true;
        j->t_start = clock_now();
        enum MHD_Result ret;
        if (ollama_answered(x, j, s, &ret)) {
            job_unref(j);
            return ret;
        }
    }
    /* check the context now, so an oversized prompt is a 400, not a broken stream (an
     * upstream checks its own) */
    struct backend *be = sched_backend(s);
    struct backend_info info;
    be->ops->get_info(be->impl, &info);
    char terr[256];
    int n_prompt = backend_count_tokens(be, &j->sj.oreq.req, terr, sizeof(terr));
    if (n_prompt < 0) {
        job_unref(j);
        return GEN_ERROR(x, flavor, -n_prompt, chat ? "messages" : "prompt", "%s", terr);
    }
    int want = j->sj.oreq.req.max_tokens > 0 ? j->sj.oreq.req.max_tokens : 0;
    if (info.n_ctx_seq > 0 && (n_prompt + want > info.n_ctx_seq || n_prompt >= info.n_ctx_seq)) {
        job_unref(j);
        return GEN_ERROR(x, flavor, NS_ERR_CONTEXT, chat ? "messages" : "prompt",
                          "This model's maximum context length is %d tokens. However, you requested %d tokens "
                          "(%d in the %s, %d in the completion). Please reduce the length of the %s or completion.",
                          info.n_ctx_seq, n_prompt + want, n_prompt, chat ? "messages" : "prompt", want,
                          chat ? "messages" : "prompt");
    }
    if (be->ops->engine) {
        struct engine_info ei;
        engine_get_info(be->ops->engine(be->impl), &ei);
        if (ei.embedding) {
            snprintf(ei.name, sizeof(ei.name), "%s", j->sj.oreq.model ? j->sj.oreq.model : "");
            job_unref(j);
            return GEN_ERROR(x, flavor, NS_ERR_INVALID, "model",
                             "The model '%.100s' is loaded for embeddings only (--embedding): use /v1/embeddings.",
                             ei.name);
        }
    }
    if (j->sj.oreq.req.n > 1 && be->ops->engine) {
        /* the choices run side by side, one sequence each: say so now, not in the stream */
        struct engine_info ei;
        engine_get_info(be->ops->engine(be->impl), &ei);
        if (j->sj.oreq.req.n > ei.n_parallel) {
            int n = j->sj.oreq.req.n;
            job_unref(j);
            return GEN_ERROR(x, flavor, NS_ERR_UNSUPPORTED, "n",
                             "Invalid 'n': this model runs at most %d sequences at once (--parallel), so at most %d "
                             "choices, but got %d.",
                             ei.n_parallel, ei.n_parallel, n);
        }
    }
    for (int i = 0; i < ENGINE_MAX_CHOICES; i++)
        buf_init(&j->held[i], 64u << 20);
    j->stream = j->sj.oreq.stream;
    j->chat = chat;
    j->include_usage = j->sj.oreq.include_usage;
    snprintf(j->model, sizeof(j->model), "%s", j->sj.oreq.model);
    oai_make_id(j->id, sizeof(j->id), flavor == GEN_MESSAGES ? "msg_" : chat ? "chatcmpl-" : "cmpl-");
    j->anthropic = flavor == GEN_MESSAGES;
    j->n_prompt = n_prompt;
    j->created = time(NULL);
    j->quota = x->srv->quota;
    snprintf(j->key, sizeof(j->key), "%s", x->key);
    j->sj.on_done = job_on_done;
    j->sj.on_token = j->stream ? job_on_token : NULL;
    j->refs = 2; /* the engine's reference is dropped in job_on_done */
    if (!j->sj.oreq.has_seed)
        j->sj.oreq.req.seed = (uint32_t)rand();
    if (sched_submit(s, &j->sj) != NS_OK) {
        j->refs = 1;
        job_unref(j);
        return GEN_ERROR(x, flavor, NS_ERR_UNAVAILABLE, NULL, "the server is shutting down");
    }
    if (j->stream) {
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, j,
                                                                      stream_free);
        if (!resp) {
            job_unref(j);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ollama ? "application/x-ndjson" : "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result ret = httpguard_queue(x->c, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    if (job_wait(j, x->r, gen_answer, flavor))
        return MHD_YES;
    return gen_answer(x->c, j, flavor);
}

/* the answer of a finished non-streamed job (flavor: its enum gen_flavor); drops the HTTP
 * side's reference */
static enum MHD_Result gen_answer(struct MHD_Connection *c, struct job *j, int flavor)
{
    struct route_ctx xx = {.c = c};
    struct route_ctx *x = &xx;
    bool chat = flavor != GEN_COMPLETION && flavor != GEN_OLLAMA_GENERATE;
    bool ollama = flavor >= GEN_OLLAMA_CHAT;
    enum MHD_Result ret;
    if (flavor != GEN_MESSAGES && j->res.raw_body && j->res.http_status)
        /* an upstream's answer, byte for byte as it gave it (the backend parsed it already:
         * it is JSON) */
        ret = send_bytes(x->c, (unsigned)j->res.http_status, "application/json", j->res.raw_body, j->res.raw_len);
    else if (j->res.status != NS_OK)
        ret = GEN_ERROR(x, flavor, j->res.status, j->res.param, "%s", j->res.message);
    else if (flavor == GEN_MESSAGES)
        ret = send_json(x->c, 200, anthropic_message(&j->sj.oreq, &j->res, j->id, j->model));
    else if (ollama)
        ret = send_json(x->c, 200, ollama_final(chat, j->model, &j->res, j->res.text, j->t_start));
    else
        ret = send_json(x->c, 200, oai_completion_body(&j->sj.oreq, &j->res, j->id, j->model, j->created));
    job_unref(j);
    return ret;
}

static enum MHD_Result emb_answer(struct MHD_Connection *c, struct job *j, int flavor)
{
    (void)flavor;
    enum MHD_Result ret = j->res.status != NS_OK
                              ? send_error(c, j->res.status, j->res.param, NULL, "%s", j->res.message)
                              : send_json(c, 200, oai_completion_body(&j->sj.oreq, &j->res, "", j->model, time(NULL)));
    job_unref(j);
    return ret;
}

/* POST /v1/embeddings: on a local model loaded with --embedding; inputs of concurrent
 * requests are decoded together by its engine */
static enum MHD_Result h_embeddings(struct route_ctx *x)
{
    struct oai_error err;
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return send_error(x->c, NS_ERR_NOMEM, NULL, NULL, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    j->conn = x->c;
    j->refs = 1;
    cJSON *root = cJSON_ParseWithLength(x->r->body.p ? x->r->body.p : "", x->r->body.len);
    int rc = root ? oai_embeddings_from_json(root, &j->sj.oreq, &err)
                  : oai_error_set(&err, NS_ERR_INVALID, NULL,
                                  "We could not parse the JSON body of your request. The body must be valid JSON.");
    if (rc) {
        job_unref(j);
        return send_error(x->c, rc, err.param, NULL, "%s", err.message);
    }
    struct sched *s = sched_by_model(x->srv, j->sj.oreq.model);
    if (!s) {
        enum MHD_Result ret = send_error(x->c, NS_ERR_MODEL_NOT_FOUND, "model", NULL,
                                         "The model '%.100s' does not exist or you do not have access to it.",
                                         j->sj.oreq.model);
        job_unref(j);
        return ret;
    }
    struct backend *be = sched_backend(s);
    struct engine_info ei;
    memset(&ei, 0, sizeof(ei));
    if (be->ops->engine)
        engine_get_info(be->ops->engine(be->impl), &ei);
    if (!ei.embedding) {
        enum MHD_Result ret = send_error(x->c, NS_ERR_INVALID, "model", NULL,
                                         "The model '%.100s' is not loaded for embeddings: serve an embedding model "
                                         "with --embedding.",
                                         j->sj.oreq.model);
        job_unref(j);
        return ret;
    }
    snprintf(j->model, sizeof(j->model), "%s", j->sj.oreq.model);
    j->sj.on_done = job_on_done;
    j->refs = 2; /* the engine's reference is dropped in job_on_done */
    if (sched_submit(s, &j->sj) != NS_OK) {
        j->refs = 1;
        job_unref(j);
        return send_error(x->c, NS_ERR_UNAVAILABLE, NULL, NULL, "the server is shutting down");
    }
    if (job_wait(j, x->r, emb_answer, 0))
        return MHD_YES;
    return emb_answer(x->c, j, 0);
}

static enum MHD_Result h_chat(struct route_ctx *x) { return h_generate(x, GEN_CHAT); }
static enum MHD_Result h_completions(struct route_ctx *x) { return h_generate(x, GEN_COMPLETION); }
static enum MHD_Result h_messages(struct route_ctx *x) { return h_generate(x, GEN_MESSAGES); }

/* ---- Ollama API (ollama.h) ---------------------------------------------------------- */

/* the engine of a model on the local backend, NULL for an upstream one */
static struct engine *sched_local_engine(struct sched *s)
{
    struct backend *be = sched_backend(s);
    return be->ops->engine ? be->ops->engine(be->impl) : NULL;
}

static struct sched *sched_by_ollama_name(struct server *s, const char *model)
{
    for (int i = 0; i < s->n_scheds; i++)
        if (ollama_name_matches(sched_model_name(s->scheds[i]), model))
            return s->scheds[i];
    return NULL;
}

/* What Ollama answers once the model is known and before any work: num_ctx over the loaded
 * context is an error, and a body without prompt or messages only asks for the model to be
 * loaded (it is). True when *ret is the answer. */
static bool ollama_answered(struct route_ctx *x, struct job *j, struct sched *s, enum MHD_Result *ret)
{
    struct engine_info info;
    struct oai_error err;
    struct engine *eng = sched_local_engine(s);
    if (eng)
        engine_get_info(eng, &info);
    if (eng && ollama_check_num_ctx(&j->ox, info.n_ctx_seq, &err)) {
        *ret = send_ollama_error(x->c, err.status, "%s", err.message);
        return true;
    }
    if (j->ox.load_only) {
        *ret = send_json(x->c, 200, ollama_load_answer(j->sj.oreq.chat, j->sj.oreq.model));
        return true;
    }
    return false;
}

static enum MHD_Result h_ollama_chat(struct route_ctx *x) { return h_generate(x, GEN_OLLAMA_CHAT); }
static enum MHD_Result h_ollama_generate(struct route_ctx *x) { return h_generate(x, GEN_OLLAMA_GENERATE); }

/* a model on an upstream backend has no file: its URL stands for the path (digest, size 0) */
static void ollama_model_of(struct sched *s, struct ollama_model *m, struct backend_info *bi)
{
    struct engine *eng = sched_local_engine(s);
    memset(m, 0, sizeof(*m));
    m->name = sched_model_name(s);
    if (eng) {
        m->path = engine_model_path(eng);
        m->chat_template = engine_chat_template(eng);
        engine_get_info(eng, &m->info);
        return;
    }
    struct backend *be = sched_backend(s);
    be->ops->get_info(be->impl, bi);
    m->path = bi->desc;
    snprintf(m->info.name, sizeof(m->info.name), "%s", m->name);
}

/* GET /api/tags, GET /api/ps: every served model is loaded and running */
static enum MHD_Result ollama_models(struct route_ctx *x, bool running)
{
    struct ollama_model *ms = calloc((size_t)x->srv->n_scheds + 1, sizeof(*ms));
    if (!ms)
        return send_ollama_error(x->c, NS_ERR_NOMEM, "out of memory");
    struct backend_info *bis = calloc((size_t)x->srv->n_scheds + 1, sizeof(*bis));
    if (!bis) {
        free(ms);
        return send_ollama_error(x->c, NS_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < x->srv->n_scheds; i++)
        ollama_model_of(x->srv->scheds[i], &ms[i], &bis[i]);
    cJSON *o = ollama_list(ms, x->srv->n_scheds, running);
    free(ms);
    free(bis);
    return send_json(x->c, 200, o);
}

static enum MHD_Result h_ollama_tags(struct route_ctx *x) { return ollama_models(x, false); }
static enum MHD_Result h_ollama_ps(struct route_ctx *x) { return ollama_models(x, true); }

/* the served model a /api/show or /api/embed body names; NULL when *ret is the error */
static struct sched *ollama_body_model(struct route_ctx *x, enum MHD_Result *ret)
{
    char name[256];
    struct oai_error err;
    if (ollama_model_field(x->r->body.p ? x->r->body.p : "", x->r->body.len, name, sizeof(name), &err)) {
        *ret = send_ollama_error(x->c, err.status, "%s", err.message);
        return NULL;
    }
    struct sched *s = sched_by_ollama_name(x->srv, name);
    if (!s)
        *ret = send_ollama_error(x->c, NS_ERR_MODEL_NOT_FOUND, "model \"%.100s\" not found", name);
    return s;
}

static enum MHD_Result h_ollama_show(struct route_ctx *x)
{
    enum MHD_Result ret;
    struct sched *s = ollama_body_model(x, &ret);
    if (!s)
        return ret;
    struct ollama_model m;
    struct backend_info bi;
    ollama_model_of(s, &m, &bi);
    return send_json(x->c, 200, ollama_show(&m));
}

/* POST /api/embed, /api/embeddings: the model is checked, then the feature is refused */
static enum MHD_Result h_ollama_embed(struct route_ctx *x)
{
    enum MHD_Result ret;
    if (!ollama_body_model(x, &ret))
        return ret;
    return send_ollama_error(x->c, NS_ERR_UNSUPPORTED,
                             "embeddings are not supported by nightshift yet: it serves text generation only");
}

/* pull, push, create, copy, delete: the served models are the ones given at start */
static enum MHD_Result h_ollama_manage(struct route_ctx *x)
{
    return send_ollama_error(x->c, NS_ERR_UNSUPPORTED,
                             "model management is not supported: nightshift serves the models given to "
                             "'nightshift serve --model' (see GET /api/tags)");
}

static enum MHD_Result h_ollama_version(struct route_ctx *x) { return send_json(x->c, 200, ollama_version()); }

/* GET /: tools probe it to find an Ollama server, and compare the text */
static enum MHD_Result h_ollama_root(struct route_ctx *x)
{
    char *t = strdup("Ollama is running");
    if (!t)
        return MHD_NO;
    return send_text(x->c, 200, "text/plain; charset=utf-8", t);
}

/* ---- files -------------------------------------------------------------------------- */

/* may the caller see a file or batch of this owner? Another project's ids are 404, never
 * 403, so their existence does not leak */
static bool owner_ok(const struct route_ctx *x, const char *owner) { return x->admin || strcmp(owner, x->owner) == 0; }
/* what a list shows: the caller's project, or everything for an admin */
static const char *owner_filter(const struct route_ctx *x) { return x->admin ? NULL : x->owner; }

static enum MHD_Result h_file_upload(struct route_ctx *x)
{
    struct upload *u = x->r->up;
    if (!u)
        return send_error(x->c, NS_ERR_MEDIA_TYPE, NULL, NULL,
                          "Uploads must be multipart/form-data with the fields 'file' and 'purpose'.");
    if (u->too_large)
        return send_error(x->c, NS_ERR_TOO_LARGE, "file", NULL, "The file is larger than the limit of %zu bytes.",
                          x->srv->p.max_file);
    /* the post processor hands over each part's bytes as they come, so a body cut short
     * (no closing boundary) would look like a whole file: only a clean end state counts */
    enum MHD_Result clean = MHD_destroy_post_processor(u->pp);
    u->pp = NULL;
    if (clean != MHD_YES)
        return send_error(x->c, NS_ERR_INVALID, "file", NULL,
                          "the upload is incomplete: the multipart body has no closing boundary");
    if (!u->have_file)
        return send_error(x->c, NS_ERR_INVALID, "file", NULL, "Missing required parameter: 'file'.");
    const char *purpose = u->purpose.p ? u->purpose.p : "";
    if (!*purpose)
        return send_error(x->c, NS_ERR_INVALID, "purpose", NULL, "Missing required parameter: 'purpose'.");
    static const char *const purposes[] = {"batch", "user_data", "assistants", "fine-tune", "vision", "evals", NULL};
    bool known = false;
    for (int i = 0; purposes[i]; i++)
        known |= strcmp(purposes[i], purpose) == 0;
    if (!known)
        return send_error(x->c, NS_ERR_INVALID, "purpose", NULL,
                          "Invalid value for 'purpose': '%.40s'. Supported values are: 'batch', 'user_data', "
                          "'assistants', 'fine-tune', 'vision' and 'evals'.",
                          purpose);
    struct store_file f;
    memset(&f, 0, sizeof(f));
    snprintf(f.id, sizeof(f.id), "%s", u->id);
    snprintf(f.owner, sizeof(f.owner), "%s", x->owner);
    snprintf(f.purpose, sizeof(f.purpose), "%s", purpose);
    char path[4096];
    snprintf(path, sizeof(path), "%s", u->file.path);
    /* committed (data and directory entry durable) before the row that names it */
    if (durable_commit(&u->file)) {
        int e = errno;
        unlink(path); /* only the directory sync failed: not recorded, so not kept */
        return send_error(x->c, NS_ERR_IO, NULL, NULL, "cannot store the file: %s", strerror(e));
    }
    f.filename = u->filename ? u->filename : (char *)"upload";
    f.bytes = u->bytes;
    f.created_at = time(NULL);
    f.path = path;
    if (x->srv->ops->file_insert(x->srv->st, &f)) {
        unlink(path);
        return send_error(x->c, NS_ERR_IO, NULL, NULL, "cannot record the file in the store");
    }
    return send_json(x->c, 200, file_json(&f));
}

static enum MHD_Result h_file_list(struct route_ctx *x)
{
    struct store_list_page pg = {.after = query(x, "after"), .desc = true, .purpose = query(x, "purpose"),
                                 .owner = owner_filter(x)};
    if (parse_limit(x, 1, 10000, 10000, &pg.limit))
        return send_error(x->c, NS_ERR_INVALID, "limit", NULL, "Invalid 'limit': expected an integer from 1 to 10000.");
    const char *order = query(x, "order");
    if (order && strcmp(order, "asc") && strcmp(order, "desc"))
        return send_error(x->c, NS_ERR_INVALID, "order", NULL, "Invalid 'order': expected 'asc' or 'desc'.");
    if (order && strcmp(order, "asc") == 0)
        pg.desc = false;
    struct store_file *fs = NULL;
    int n = 0;
    bool more = false;
    if (x->srv->ops->file_list(x->srv->st, &pg, &fs, &n, &more))
        return send_error(x->c, NS_ERR_IO, NULL, NULL, "cannot list files");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    int64_t now = time(NULL);
    for (int i = 0; i < n; i++) {
        if (fs[i].expires_at && now >= fs[i].expires_at)
            continue; /* past output_expires_after: gone (deleted when next touched) */
        cJSON_AddItemToArray(d, file_json(&fs[i]));
    }
    add_str_or_null(o, "first_id", n ? fs[0].id : NULL);
    add_str_or_null(o, "last_id", n ? fs[n - 1].id : NULL);
    cJSON_AddBoolToObject(o, "has_more", more);
    for (int i = 0; i < n; i++)
        store_file_release(&fs[i]);
    free(fs);
    return send_json(x->c, 200, o);
}

static int file_lookup(struct route_ctx *x, struct store_file *f)
{
    int rc = x->srv->ops->file_get(x->srv->st, x->ids[0], f);
    if (rc == NS_OK && !owner_ok(x, f->owner)) {
        store_file_release(f);
        rc = NS_ERR_NOT_FOUND;
    }
    if (rc == NS_OK && f->expires_at && time(NULL) >= f->expires_at) {
        /* output_expires_after honoured: an expired file is deleted when next touched */
        if (x->srv->ops->file_delete(x->srv->st, f->id) == NS_OK)
            unlink(f->path);
        store_file_release(f);
        rc = NS_ERR_NOT_FOUND;
    }
    return rc;
}

static enum MHD_Result file_not_found(struct route_ctx *x, int rc)
{
    if (rc == NS_ERR_NOT_FOUND)
        return send_error(x->c, NS_ERR_NOT_FOUND, "file_id", NULL, "No such File object: %.100s", x->ids[0]);
    return send_error(x->c, rc, NULL, NULL, "cannot read the file record");
}

static enum MHD_Result h_file_get(struct route_ctx *x)
{
    struct store_file f;
    int rc = file_lookup(x, &f);
    if (rc)
        return file_not_found(x, rc);
    cJSON *o = file_json(&f);
    store_file_release(&f);
    return send_json(x->c, 200, o);
}

static enum MHD_Result h_file_content(struct route_ctx *x)
{
    struct store_file f;
    int rc = file_lookup(x, &f);
    if (rc)
        return file_not_found(x, rc);
    int fd = open(f.path, O_RDONLY | O_CLOEXEC);
    store_file_release(&f);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb)) {
        if (fd >= 0)
            close(fd);
        return send_error(x->c, NS_ERR_IO, NULL, NULL, "the file's content is missing from the data dir");
    }
    struct MHD_Response *resp = MHD_create_response_from_fd((size_t)sb.st_size, fd);
    if (!resp) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
    enum MHD_Result ret = httpguard_queue(x->c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* the id of a batch that still reads file_id (validating, running, or cancelling with
 * lines in flight) into busy; NS_OK when one does, NS_ERR_NOT_FOUND when none, or the
 * store's error */
static int file_busy_batch(struct server *srv, const char *file_id, char *busy, size_t n)
{
    static const enum store_batch_status live[] = {SB_VALIDATING, SB_IN_PROGRESS, SB_CANCELLING};
    int rc = NS_ERR_NOT_FOUND;
    for (size_t k = 0; k < sizeof(live) / sizeof(live[0]) && rc == NS_ERR_NOT_FOUND; k++) {
        char(*ids)[48] = NULL;
        int nid = 0;
        int lrc = srv->ops->batch_ids_by_status(srv->st, live[k], &ids, &nid);
        if (lrc) {
            rc = lrc;
            break;
        }
        for (int i = 0; i < nid && rc == NS_ERR_NOT_FOUND; i++) {
            struct store_batch b;
            if (srv->ops->batch_get(srv->st, ids[i], &b) != NS_OK)
                continue;
            if (strcmp(b.input_file_id, file_id) == 0) {
                snprintf(busy, n, "%s", b.id);
                rc = NS_OK;
            }
            store_batch_release(&b);
        }
        free(ids);
    }
    return rc;
}

static enum MHD_Result h_file_delete(struct route_ctx *x)
{
    struct store_file f;
    int rc = file_lookup(x, &f);
    if (rc)
        return file_not_found(x, rc);
    /* A running batch reads its lines from the input file as they run: deleting it would
     * strand the batch (issue 27.4). Refused until the batch ends, as OpenAI keeps it. */
    char busy[48];
    rc = file_busy_batch(x->srv, f.id, busy, sizeof(busy));
    if (rc != NS_ERR_NOT_FOUND) {
        store_file_release(&f);
        if (rc)
            return send_error(x->c, rc, NULL, NULL, "cannot check whether a batch uses the file; retry");
        return send_error(x->c, NS_ERR_CONFLICT, "file_id", "file_in_use",
                          "File %s is the input of batch %s, which has not ended; cancel it or wait for it to end, "
                          "then delete the file.",
                          x->ids[0], busy);
    }
    rc = x->srv->ops->file_delete(x->srv->st, f.id);
    if (rc == NS_OK)
        unlink(f.path);
    store_file_release(&f);
    if (rc)
        return file_not_found(x, rc);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", x->ids[0]);
    cJSON_AddStringToObject(o, "object", "file");
    cJSON_AddBoolToObject(o, "deleted", true);
    return send_json(x->c, 200, o);
}

/* ---- batches ------------------------------------------------------------------------ */

/* The batch queue budget (quota.h): the estimate of a new batch's input (the file at path,
 * or jsonl in memory) against the key's enqueued batch tokens. NS_OK, NS_ERR_QUOTA_TOKENS
 * (*why says why), or NS_ERR_IO (the file cannot be read). */
static int batch_quota_admit(struct route_ctx *x, const char *batch_id, const char *path, const struct buf *jsonl,
                             struct quota_refusal *why)
{
    if (!x->key[0] || x->lim.batch_queue_tokens <= 0)
        return NS_OK; /* no estimate to make: a big file is not read for nothing */
    int64_t est = 0;
    if (path) {
        int rc = quota_estimate_file(path, QUOTA_ABSENT_MAX_TOKENS, &est);
        if (rc)
            return rc;
    } else {
        est = quota_estimate_jsonl(jsonl->p ? jsonl->p : "", jsonl->len, QUOTA_ABSENT_MAX_TOKENS);
    }
    return quota_batch_admit(x->srv->quota, x->key, x->lim, batch_id, est, why);
}

static enum MHD_Result h_batch_create(struct route_ctx *x)
{
    cJSON *body = cJSON_ParseWithLength(x->r->body.p ? x->r->body.p : "", x->r->body.len);
    struct store_batch b;
    memset(&b, 0, sizeof(b));
    enum MHD_Result ret;
    if (!cJSON_IsObject(body)) {
        ret = send_error(x->c, NS_ERR_INVALID, NULL, NULL, "The body must be a JSON object.");
        goto out;
    }
    const cJSON *fid = cJSON_GetObjectItemCaseSensitive(body, "input_file_id");
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(body, "endpoint");
    const cJSON *win = cJSON_GetObjectItemCaseSensitive(body, "completion_window");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(body, "metadata");
    const cJSON *oea = cJSON_GetObjectItemCaseSensitive(body, "output_expires_after");
    const cJSON *f;
    cJSON_ArrayForEach(f, body)
    {
        if (strcmp(f->string, "input_file_id") && strcmp(f->string, "endpoint") && strcmp(f->string, "completion_window") &&
            strcmp(f->string, "metadata") && strcmp(f->string, "output_expires_after")) {
            ret = send_error(x->c, NS_ERR_INVALID, f->string, NULL, "Unrecognized request argument supplied: %.64s",
                             f->string);
            goto out;
        }
    }
    if (!cJSON_IsString(fid)) {
        ret = send_error(x->c, NS_ERR_INVALID, "input_file_id", NULL, "Missing required parameter: 'input_file_id'.");
        goto out;
    }
    if (!cJSON_IsString(ep)) {
        ret = send_error(x->c, NS_ERR_INVALID, "endpoint", NULL, "Missing required parameter: 'endpoint'.");
        goto out;
    }
    if (strcmp(ep->valuestring, "/v1/chat/completions") && strcmp(ep->valuestring, "/v1/completions") &&
        strcmp(ep->valuestring, "/v1/embeddings")) {
        ret = send_error(x->c, NS_ERR_INVALID, "endpoint", "unsupported_endpoint",
                         "Invalid value for 'endpoint': '%.64s'. This server supports '/v1/chat/completions', "
                         "'/v1/completions' and '/v1/embeddings'.",
                         ep->valuestring);
        goto out;
    }
    if (!cJSON_IsString(win)) {
        ret = send_error(x->c, NS_ERR_INVALID, "completion_window", NULL,
                         "Missing required parameter: 'completion_window'.");
        goto out;
    }
    int64_t window;
    if (batchmgr_parse_window(win->valuestring, &window) || strlen(win->valuestring) >= sizeof(b.completion_window)) {
        ret = send_error(x->c, NS_ERR_INVALID, "completion_window", NULL,
                         "Invalid value for 'completion_window': '%.20s'. Supported values are: '24h' (and, as a "
                         "nightshift extension, durations like '90m' or '600s').",
                         win->valuestring);
        goto out;
    }
    if (md && !cJSON_IsNull(md)) {
        if (!cJSON_IsObject(md) || cJSON_GetArraySize(md) > 16) {
            ret = send_error(x->c, NS_ERR_INVALID, "metadata", NULL,
                             "Invalid 'metadata': expected an object of at most 16 string pairs.");
            goto out;
        }
        const cJSON *kv;
        cJSON_ArrayForEach(kv, md)
        {
            if (strlen(kv->string) > 64 || !cJSON_IsString(kv) || strlen(kv->valuestring) > 512) {
                ret = send_error(x->c, NS_ERR_INVALID, "metadata", NULL,
                                 "Invalid 'metadata': keys are at most 64 characters and values strings of at most "
                                 "512 characters.");
                goto out;
            }
        }
        const cJSON *wu = cJSON_GetObjectItemCaseSensitive(md, "webhook_url");
        if (wu && (strncmp(wu->valuestring, "http://", 7) && strncmp(wu->valuestring, "https://", 8))) {
            ret = send_error(x->c, NS_ERR_INVALID, "metadata", NULL,
                             "Invalid 'metadata.webhook_url': expected an http:// or https:// URL.");
            goto out;
        }
        if (wu && !x->srv->p.webhooks) {
            ret = send_error(x->c, NS_ERR_INVALID, "metadata", NULL,
                             "'metadata.webhook_url' needs a signing secret: configure a [webhook NAME] section "
                             "in the server's --config.");
            goto out;
        }
        const cJSON *nb = cJSON_GetObjectItemCaseSensitive(md, "not_before");
        if (nb) {
            char *end = NULL;
            errno = 0;
            long long v = strtoll(nb->valuestring, &end, 10);
            if (errno || *end || v < 0) {
                ret = send_error(x->c, NS_ERR_INVALID, "metadata", NULL,
                                 "Invalid 'metadata.not_before': expected Unix seconds as a string.");
                goto out;
            }
            b.not_before = v;
        }
        b.metadata = cJSON_PrintUnformatted(md);
    }
    if (oea && !cJSON_IsNull(oea)) {
        const cJSON *anchor = cJSON_GetObjectItemCaseSensitive(oea, "anchor");
        const cJSON *secs = cJSON_GetObjectItemCaseSensitive(oea, "seconds");
        if (!cJSON_IsString(anchor) || strcmp(anchor->valuestring, "created_at") || !cJSON_IsNumber(secs) ||
            secs->valuedouble < 3600 || secs->valuedouble > 2592000) {
            ret = send_error(x->c, NS_ERR_INVALID, "output_expires_after", NULL,
                             "Invalid 'output_expires_after': expected {\"anchor\": \"created_at\", \"seconds\": "
                             "3600 to 2592000}.");
            goto out;
        }
        b.output_expires_after = (int64_t)secs->valuedouble;
    }
    struct store_file file;
    int rc = x->srv->ops->file_get(x->srv->st, fid->valuestring, &file);
    if (rc == NS_OK && !owner_ok(x, file.owner)) {
        store_file_release(&file);
        rc = NS_ERR_NOT_FOUND;
    }
    if (rc) {
        ret = send_error(x->c, NS_ERR_NOT_FOUND, "input_file_id", NULL, "No such File object: %.100s", fid->valuestring);
        goto out;
    }
    char purpose[32];
    snprintf(purpose, sizeof(purpose), "%s", file.purpose);
    oai_make_id(b.id, sizeof(b.id), "batch_");
    struct quota_refusal why;
    int qrc = strcmp(purpose, "batch") == 0 ? batch_quota_admit(x, b.id, file.path, NULL, &why) : NS_OK;
    store_file_release(&file);
    if (strcmp(purpose, "batch") != 0) {
        ret = send_error(x->c, NS_ERR_INVALID, "input_file_id", NULL,
                         "The file %.100s was uploaded with purpose '%s'; a batch needs purpose 'batch'.",
                         fid->valuestring, purpose);
        goto out;
    }
    if (qrc == NS_ERR_QUOTA_TOKENS) {
        ret = send_quota_refusal(x->c, ERR_OPENAI, &why);
        goto out;
    }
    if (qrc) {
        ret = send_error(x->c, qrc, "input_file_id", NULL, "cannot read the input file %.100s", fid->valuestring);
        goto out;
    }
    snprintf(b.owner, sizeof(b.owner), "%s", x->owner);
    snprintf(b.endpoint, sizeof(b.endpoint), "%s", ep->valuestring);
    snprintf(b.input_file_id, sizeof(b.input_file_id), "%s", fid->valuestring);
    snprintf(b.completion_window, sizeof(b.completion_window), "%s", win->valuestring);
    b.status = SB_VALIDATING;
    b.created_at = time(NULL);
    b.expires_at = b.created_at + window;
    if (x->srv->ops->batch_insert(x->srv->st, &b)) {
        ret = send_error(x->c, NS_ERR_IO, NULL, NULL, "cannot record the batch");
        goto out;
    }
    batchmgr_kick(x->srv->bm);
    ret = send_json(x->c, 200, batch_json(x->srv, &b));
out:
    store_batch_release(&b);
    cJSON_Delete(body);
    return ret;
}

/* the batch x->ids[0] if the caller may see it (NS_ERR_NOT_FOUND otherwise) */
static int owned_batch_get(struct route_ctx *x, struct store_batch *b)
{
    int rc = x->srv->ops->batch_get(x->srv->st, x->ids[0], b);
    if (rc == NS_OK && !owner_ok(x, b->owner)) {
        store_batch_release(b);
        rc = NS_ERR_NOT_FOUND;
    }
    return rc;
}

static int batch_lookup(struct route_ctx *x, struct store_batch *b) { return owned_batch_get(x, b); }

static enum MHD_Result batch_not_found(struct route_ctx *x, int rc)
{
    if (rc == NS_ERR_NOT_FOUND)
        return send_error(x->c, NS_ERR_NOT_FOUND, "batch_id", NULL, "No such Batch object: %.100s", x->ids[0]);
    return send_error(x->c, rc, NULL, NULL, "cannot read the batch");
}

static enum MHD_Result h_batch_get(struct route_ctx *x)
{
    struct store_batch b;
    int rc = batch_lookup(x, &b);
    if (rc)
        return batch_not_found(x, rc);
    cJSON *o = batch_json(x->srv, &b);
    store_batch_release(&b);
    return send_json(x->c, 200, o);
}

static enum MHD_Result h_batch_list(struct route_ctx *x)
{
    struct store_list_page pg = {.after = query(x, "after"), .desc = true, .endpoint = "/v1/messages",
                                 .endpoint_not = true, .owner = owner_filter(x)};
    if (parse_limit(x, 1, 100, 20, &pg.limit))
        return send_error(x->c, NS_ERR_INVALID, "limit", NULL, "Invalid 'limit': expected an integer from 1 to 100.");
    struct store_batch *bs = NULL;
    int n = 0;
    bool more = false;
    if (x->srv->ops->batch_list(x->srv->st, &pg, &bs, &n, &more))
        return send_error(x->c, NS_ERR_IO, NULL, NULL, "cannot list batches");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(d, batch_json(x->srv, &bs[i]));
    add_str_or_null(o, "first_id", n ? bs[0].id : NULL);
    add_str_or_null(o, "last_id", n ? bs[n - 1].id : NULL);
    cJSON_AddBoolToObject(o, "has_more", more);
    for (int i = 0; i < n; i++)
        store_batch_release(&bs[i]);
    free(bs);
    return send_json(x->c, 200, o);
}

/* Move a validating or in-progress batch to cancelling: a compare-and-set against the batch
 * manager moving it on at the same time, retried on a fresh read. On return b holds the
 * batch as it now is (any status: ended ones are left alone). NS_ERR_UNAVAILABLE when it
 * kept changing under us. */
static int batch_request_cancel(struct server *srv, struct store_batch *b)
{
    char id[48];
    snprintf(id, sizeof(id), "%s", b->id);
    for (int tries = 0; tries < 20; tries++) {
        if (b->status != SB_VALIDATING && b->status != SB_IN_PROGRESS)
            return NS_OK;
        enum store_batch_status was = b->status;
        b->status = SB_CANCELLING;
        b->cancelling_at = time(NULL);
        int rc = srv->ops->batch_update(srv->st, b, was);
        if (rc == NS_OK) {
            batchmgr_kick(srv->bm);
            return NS_OK;
        }
        store_batch_release(b);
        if (rc != NS_ERR_CONFLICT || srv->ops->batch_get(srv->st, id, b) != NS_OK) {
            memset(b, 0, sizeof(*b));
            return NS_ERR_IO;
        }
    }
    return NS_ERR_UNAVAILABLE;
}

static enum MHD_Result h_batch_cancel(struct route_ctx *x)
{
    struct store_batch b;
    int rc = batch_lookup(x, &b);
    if (rc)
        return batch_not_found(x, rc);
    rc = batch_request_cancel(x->srv, &b);
    if (rc) {
        store_batch_release(&b);
        return rc == NS_ERR_UNAVAILABLE ? send_error(x->c, rc, NULL, NULL, "the batch is changing state; try again")
                                        : send_error(x->c, NS_ERR_IO, NULL, NULL, "cannot record the cancellation");
    }
    if (b.status != SB_CANCELLING) {
        enum MHD_Result ret = send_error(x->c, NS_ERR_CONFLICT, NULL, "batch_not_cancellable",
                                         "Cannot cancel a batch with status '%s'.", store_batch_status_name(b.status));
        store_batch_release(&b);
        return ret;
    }
    cJSON *o = batch_json(x->srv, &b);
    store_batch_release(&b);
    return send_json(x->c, 200, o);
}

/* extension: the results finished so far, while the batch runs or after */
static enum MHD_Result batch_partial(struct route_ctx *x, bool ok)
{
    struct store_batch b;
    int rc = batch_lookup(x, &b);
    if (rc)
        return batch_not_found(x, rc);
    store_batch_release(&b);
    char *data = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&data, &len);
    if (!m)
        return send_error(x->c, NS_ERR_NOMEM, NULL, NULL, "out of memory");
    rc = x->srv->ops->lines_export(x->srv->st, x->ids[0], ok ? m : NULL, ok ? NULL : m);
    fclose(m);
    if (rc) {
        free(data);
        return send_error(x->c, rc, NULL, NULL, "cannot read the batch's results");
    }
    return send_text(x->c, 200, "application/jsonl", data);
}

static enum MHD_Result h_batch_output(struct route_ctx *x) { return batch_partial(x, true); }
static enum MHD_Result h_batch_errors(struct route_ctx *x) { return batch_partial(x, false); }

/* extension: a new batch from the failed and expired lines of an ended batch */
static enum MHD_Result h_batch_retry(struct route_ctx *x)
{
    struct store_batch b, nb;
    struct store_file in;
    struct store_line *lines = NULL;
    int n = 0;
    enum MHD_Result ret;
    memset(&nb, 0, sizeof(nb));
    int rc = batch_lookup(x, &b);
    if (rc)
        return batch_not_found(x, rc);
    if (!store_batch_status_terminal(b.status) || b.status == SB_FAILED) {
        ret = send_error(x->c, NS_ERR_CONFLICT, NULL, "batch_not_retryable",
                         "Only a completed, expired or cancelled batch can be retried; this one is '%s'.",
                         store_batch_status_name(b.status));
        store_batch_release(&b);
        return ret;
    }
    if (x->srv->ops->file_get(x->srv->st, b.input_file_id, &in)) {
        store_batch_release(&b);
        return send_error(x->c, NS_ERR_CONFLICT, "input_file_id", NULL,
                          "The input file of this batch was deleted; it cannot be retried.");
    }
    if (x->srv->ops->lines_failed(x->srv->st, b.id, &lines, &n)) {
        ret = send_error(x->c, NS_ERR_IO, NULL, NULL, "cannot read the batch's lines");
        goto out;
    }
    if (n == 0) {
        ret = send_error(x->c, NS_ERR_CONFLICT, NULL, "nothing_to_retry", "The batch has no failed or expired lines.");
        goto out;
    }
    struct store_file nf;
    memset(&nf, 0, sizeof(nf));
    oai_make_id(nf.id, sizeof(nf.id), "file-");
    char path[4096], name[96];
    batchmgr_file_path(x->srv->data_dir, nf.id, path, sizeof(path));
    struct durable df;
    durable_init(&df);
    int ifd = open(in.path, O_RDONLY | O_CLOEXEC);
    FILE *f = ifd >= 0 && durable_open(&df, path) == NS_OK ? durable_stream(&df) : NULL;
    rc = f ? NS_OK : NS_ERR_IO;
    char *line = NULL;
    for (int i = 0; i < n && rc == NS_OK; i++) {
        char *p = realloc(line, (size_t)lines[i].len + 1);
        if (!p) {
            rc = NS_ERR_NOMEM;
            break;
        }
        line = p;
        if (pread(ifd, line, (size_t)lines[i].len, (off_t)lines[i].off) != (ssize_t)lines[i].len ||
            fwrite(line, 1, (size_t)lines[i].len, f) != (size_t)lines[i].len || fputc('\n', f) == EOF)
            rc = NS_ERR_IO;
    }
    free(line);
    if (ifd >= 0)
        close(ifd);
    long size = f ? ftell(f) : 0;
    if (rc == NS_OK && durable_commit(&df)) {
        rc = NS_ERR_IO;
        unlink(path);
    }
    if (rc) {
        durable_rollback(&df);
        ret = send_error(x->c, rc, NULL, NULL, "cannot write the retry's input file");
        goto out;
    }
    oai_make_id(nb.id, sizeof(nb.id), "batch_");
    struct quota_refusal why;
    if ((rc = batch_quota_admit(x, nb.id, path, NULL, &why))) {
        unlink(path);
        ret = rc == NS_ERR_QUOTA_TOKENS ? send_quota_refusal(x->c, ERR_OPENAI, &why)
                                        : send_error(x->c, rc, NULL, NULL, "cannot read the retry's input file");
        goto out;
    }
    snprintf(nf.owner, sizeof(nf.owner), "%s", b.owner);
    snprintf(nf.purpose, sizeof(nf.purpose), "batch");
    snprintf(name, sizeof(name), "%s_retry.jsonl", b.id);
    nf.filename = name;
    nf.bytes = size;
    nf.created_at = time(NULL);
    nf.path = path;
    if (x->srv->ops->file_insert(x->srv->st, &nf)) {
        unlink(path);
        ret = send_error(x->c, NS_ERR_IO, NULL, NULL, "cannot record the retry's input file");
        goto out;
    }
    int64_t window = 86400;
    batchmgr_parse_window(b.completion_window, &window);
    snprintf(nb.owner, sizeof(nb.owner), "%s", b.owner);
    snprintf(nb.endpoint, sizeof(nb.endpoint), "%s", b.endpoint);
    snprintf(nb.input_file_id, sizeof(nb.input_file_id), "%s", nf.id);
    snprintf(nb.completion_window, sizeof(nb.completion_window), "%s", b.completion_window);
    nb.status = SB_VALIDATING;
    nb.created_at = time(NULL);
    nb.expires_at = nb.created_at + window;
    nb.output_expires_after = b.output_expires_after;
    cJSON *md = cJSON_CreateObject();
    cJSON_AddStringToObject(md, "retry_of", b.id);
    nb.metadata = cJSON_PrintUnformatted(md);
    cJSON_Delete(md);
    if (x->srv->ops->batch_insert(x->srv->st, &nb)) {
        ret = send_error(x->c, NS_ERR_IO, NULL, NULL, "cannot record the retry batch");
        goto out;
    }
    batchmgr_kick(x->srv->bm);
    ret = send_json(x->c, 200, batch_json(x->srv, &nb));
out:
    for (int i = 0; i < n; i++)
        store_line_release(&lines[i]);
    free(lines);
    store_file_release(&in);
    store_batch_release(&b);
    store_batch_release(&nb);
    return ret;
}

/* ---- Anthropic Message Batches -------------------------------------------------------
 * The same batch machinery as OpenAI's: the requests become an input file of
 * {"custom_id","method":"POST","url":"/v1/messages","body":params} lines and a batch with
 * endpoint /v1/messages; its lines run on the schedulers of the models they name and their
 * results are Anthropic result lines. */

#define ANT_MAX_REQUESTS 100000
#define ANT_MAX_BYTES (256u * 1000u * 1000u)

static cJSON *ant_batch_json(struct server *srv, const struct store_batch *b)
{
    char ts[40];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", b->id);
    cJSON_AddStringToObject(o, "type", "message_batch");
    bool ended = store_batch_status_terminal(b->status);
    cJSON_AddStringToObject(o, "processing_status",
                            ended ? "ended" : b->status == SB_CANCELLING ? "canceling" : "in_progress");
    cJSON *rc = cJSON_AddObjectToObject(o, "request_counts");
    int64_t processing = b->total - b->completed - b->failed;
    cJSON_AddNumberToObject(rc, "processing", (double)(processing > 0 && !ended ? processing : 0));
    cJSON_AddNumberToObject(rc, "succeeded", (double)b->completed);
    cJSON_AddNumberToObject(rc, "errored", (double)(b->failed - b->canceled - b->expired));
    cJSON_AddNumberToObject(rc, "canceled", (double)b->canceled);
    cJSON_AddNumberToObject(rc, "expired", (double)b->expired);
    int64_t ended_at = b->completed_at ? b->completed_at : b->cancelled_at ? b->cancelled_at
                       : b->expired_at ? b->expired_at : b->failed_at;
    if (ended && ended_at) {
        anthropic_time(ended_at, ts, sizeof(ts));
        cJSON_AddStringToObject(o, "ended_at", ts);
    } else {
        cJSON_AddNullToObject(o, "ended_at");
    }
    anthropic_time(b->created_at, ts, sizeof(ts));
    cJSON_AddStringToObject(o, "created_at", ts);
    anthropic_time(b->expires_at, ts, sizeof(ts));
    cJSON_AddStringToObject(o, "expires_at", ts);
    cJSON_AddNullToObject(o, "archived_at");
    if (b->cancelling_at) {
        anthropic_time(b->cancelling_at, ts, sizeof(ts));
        cJSON_AddStringToObject(o, "cancel_initiated_at", ts);
    } else {
        cJSON_AddNullToObject(o, "cancel_initiated_at");
    }
    if (ended) {
        char url[256];
        snprintf(url, sizeof(url), "http://%s:%d/v1/messages/batches/%s/results", srv->p.host, srv->port, b->id);
        cJSON_AddStringToObject(o, "results_url", url);
    } else {
        cJSON_AddNullToObject(o, "results_url");
    }
    return o;
}

/* A batch whose requests came inline (Message Batches, deferred requests): its JSONL is
 * written as an input file (temp file, fsync, rename), then the file and the batch are
 * recorded and the manager is kicked. The key's batch queue is checked first. 0 ok;
 * NS_ERR_QUOTA_TOKENS: the queue is full (*why says how, for a 429); else err says why
 * (for the caller's shape). */
static int inline_batch_create(struct route_ctx *x, const struct buf *jsonl, int n, const char *endpoint,
                               const char *id_prefix, const char *filename, const char *metadata, struct store_batch *b,
                               struct quota_refusal *why, char *err, size_t errlen)
{
    struct server *srv = x->srv;
    const char *owner = x->owner;
    struct store_file f;
    memset(&f, 0, sizeof(f));
    char path[4096] = "";
    oai_make_id(b->id, sizeof(b->id), id_prefix);
    int rc = batch_quota_admit(x, b->id, NULL, jsonl, why);
    if (rc) {
        snprintf(err, errlen, "%s", rc == NS_ERR_QUOTA_TOKENS ? "the key's batch queue is full" : "out of memory");
        return rc;
    }
    rc = NS_ERR_IO;
    oai_make_id(f.id, sizeof(f.id), "file-");
    batchmgr_file_path(srv->data_dir, f.id, path, sizeof(path));
    /* committed (durable) before the rows that name it */
    if (durable_write_file(path, jsonl->p ? jsonl->p : "", jsonl->len)) {
        snprintf(err, errlen, "cannot store the batch: %s", strerror(errno));
        unlink(path); /* only the directory sync failed: not recorded, so not kept */
        goto out;
    }
    f.bytes = (int64_t)jsonl->len;
    snprintf(f.owner, sizeof(f.owner), "%s", owner);
    snprintf(f.purpose, sizeof(f.purpose), "batch");
    f.filename = (char *)filename;
    f.created_at = time(NULL);
    f.path = path;
    if (srv->ops->file_insert(srv->st, &f)) {
        unlink(path);
        snprintf(err, errlen, "cannot record the batch");
        goto out;
    }
    snprintf(b->owner, sizeof(b->owner), "%s", owner);
    snprintf(b->endpoint, sizeof(b->endpoint), "%s", endpoint);
    snprintf(b->input_file_id, sizeof(b->input_file_id), "%s", f.id);
    snprintf(b->completion_window, sizeof(b->completion_window), "24h");
    b->status = SB_VALIDATING;
    b->created_at = time(NULL);
    b->expires_at = b->created_at + 86400;
    b->total = n;
    if (metadata && !(b->metadata = strdup(metadata))) {
        snprintf(err, errlen, "out of memory");
        rc = NS_ERR_NOMEM;
        goto out;
    }
    if (srv->ops->batch_insert(srv->st, b)) {
        snprintf(err, errlen, "cannot record the batch");
        goto out;
    }
    batchmgr_kick(srv->bm);
    rc = NS_OK;
out:
    return rc;
}

/* one request line of an inline batch, appended to jsonl */
static int inline_line(struct buf *jsonl, const char *custom_id, const char *url, const cJSON *body)
{
    cJSON *line = cJSON_CreateObject();
    cJSON_AddStringToObject(line, "custom_id", custom_id);
    cJSON_AddStringToObject(line, "method", "POST");
    cJSON_AddStringToObject(line, "url", url);
    cJSON_AddItemReferenceToObject(line, "body", (cJSON *)body);
    char *t = cJSON_PrintUnformatted(line);
    cJSON_Delete(line);
    int rc = t && buf_appends(jsonl, t) == NS_OK && buf_append(jsonl, "\n", 1) == NS_OK ? NS_OK : NS_ERR_NOMEM;
    free(t);
    return rc;
}

static enum MHD_Result h_ant_batch_create(struct route_ctx *x)
{
    cJSON *body = cJSON_ParseWithLength(x->r->body.p ? x->r->body.p : "", x->r->body.len);
    struct store_batch b;
    struct buf jsonl;
    memset(&b, 0, sizeof(b));
    buf_init(&jsonl, 1u << 30);
    enum MHD_Result ret;
    const cJSON *reqs = cJSON_GetObjectItemCaseSensitive(body, "requests");
    if (!cJSON_IsObject(body)) {
        ret = send_ant_error(x->c, NS_ERR_INVALID, "the request body must be a JSON object");
        goto out;
    }
    /* cJSON cuts strings at a NUL: "b\u0000x" would be stored as "b" (issue 27.13) */
    long nul_at = jsonscan_nul(x->r->body.p, x->r->body.len, NULL, NULL);
    if (nul_at >= 0) {
        ret = send_ant_error(x->c, NS_ERR_INVALID,
                             "requests: a string contains a NUL character (\\u0000, byte %ld of the body), which "
                             "cannot be stored in a custom_id or passed to the model",
                             nul_at + 1);
        goto out;
    }
    if (!cJSON_IsArray(reqs) || cJSON_GetArraySize(reqs) == 0) {
        ret = send_ant_error(x->c, NS_ERR_INVALID, "requests: a non-empty list of {custom_id, params} is required");
        goto out;
    }
    if (cJSON_GetArraySize(reqs) > ANT_MAX_REQUESTS) {
        ret = send_ant_error(x->c, NS_ERR_TOO_LARGE, "requests: at most %d requests per batch", ANT_MAX_REQUESTS);
        goto out;
    }
    int i = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, reqs)
    {
        const cJSON *cid = cJSON_GetObjectItemCaseSensitive(r, "custom_id");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(r, "params");
        if (!cJSON_IsObject(r) || !cJSON_IsString(cid) || !cJSON_IsObject(params)) {
            ret = send_ant_error(x->c, NS_ERR_INVALID, "requests.%d: custom_id (a string) and params (an object) are required", i);
            goto out;
        }
        size_t cl = strlen(cid->valuestring);
        if (cl < 1 || cl > 64) {
            ret = send_ant_error(x->c, NS_ERR_INVALID, "requests.%d.custom_id: 1 to 64 characters", i);
            goto out;
        }
        if (inline_line(&jsonl, cid->valuestring, "/v1/messages", params)) {
            ret = send_ant_error(x->c, NS_ERR_NOMEM, "out of memory");
            goto out;
        }
        i++;
    }
    char err[256];
    struct quota_refusal why;
    int rc = inline_batch_create(x, &jsonl, i, "/v1/messages", "msgbatch_", "message_batch_requests.jsonl", NULL, &b,
                                 &why, err, sizeof(err));
    if (rc == NS_ERR_QUOTA_TOKENS)
        ret = send_quota_refusal(x->c, ERR_ANTHROPIC, &why);
    else if (rc)
        ret = send_ant_error(x->c, NS_ERR_IO, "%s", err);
    else
        ret = send_json(x->c, 200, ant_batch_json(x->srv, &b));
out:
    buf_release(&jsonl);
    store_batch_release(&b);
    cJSON_Delete(body);
    return ret;
}

/* ---- deferred requests (nightshift extension) ---------------------------------------------
 * POST /v1/deferred/chat/completions (or /v1/deferred/completions) takes a request that may
 * wait and answers 202 with an id at once; GET /v1/deferred/{id} gives its status and, once
 * done, its response. Each is a one-line batch: durable, accounted, visible in /v1/batches,
 * cancellable there; on a provider-batch backend many of them are accumulated into one
 * upstream batch (the flush thresholds of that backend). */

#define DEFERRED_METADATA "{\"nightshift_deferred\":\"true\"}"

/* the one result line of a finished deferred request (its output or error file); NULL if none */
static cJSON *deferred_result(struct server *srv, const struct store_batch *b)
{
    const char *fid = b->output_file_id[0] ? b->output_file_id : b->error_file_id;
    struct store_file f;
    if (!fid[0] || srv->ops->file_get(srv->st, fid, &f) != NS_OK)
        return NULL;
    struct buf text;
    buf_init(&text, 64u << 20);
    char chunk[65536];
    FILE *in = fopen(f.path, "r");
    size_t n;
    while (in && (n = fread(chunk, 1, sizeof(chunk), in)) > 0 && buf_append(&text, chunk, n) == NS_OK)
        ;
    if (in)
        fclose(in);
    store_file_release(&f);
    cJSON *line = cJSON_ParseWithLength(text.p ? text.p : "", text.len);
    buf_release(&text);
    return line;
}

static cJSON *deferred_json(struct server *srv, const struct store_batch *b)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", b->id);
    cJSON_AddStringToObject(o, "object", "deferred.request");
    cJSON_AddNumberToObject(o, "created_at", (double)b->created_at);
    add_str_or_null(o, "model", b->model);
    const char *st = "in_progress";
    switch (b->status) {
    case SB_VALIDATING: st = "queued"; break;
    case SB_COMPLETED: st = "completed"; break;
    case SB_FAILED: st = "failed"; break;
    case SB_EXPIRED: st = "expired"; break;
    case SB_CANCELLING: case SB_CANCELLED: st = "cancelled"; break;
    default: break;
    }
    cJSON_AddStringToObject(o, "status", st);
    cJSON *line = b->status == SB_COMPLETED ? deferred_result(srv, b) : NULL;
    cJSON *resp = cJSON_DetachItemFromObjectCaseSensitive(line, "response");
    if (resp)
        cJSON_AddItemToObject(o, "response", resp);
    cJSON *err = cJSON_DetachItemFromObjectCaseSensitive(line, "error");
    if (err && !cJSON_IsNull(err))
        cJSON_AddItemToObject(o, "error", err);
    else
        cJSON_Delete(err);
    if (b->status == SB_FAILED && b->errors) {
        cJSON *e = cJSON_Parse(b->errors);
        if (e)
            cJSON_AddItemToObject(o, "errors", e);
    }
    cJSON_Delete(line);
    return o;
}

static enum MHD_Result deferred_create(struct route_ctx *x, bool chat)
{
    cJSON *body = cJSON_ParseWithLength(x->r->body.p ? x->r->body.p : "", x->r->body.len);
    struct store_batch b;
    struct buf jsonl;
    memset(&b, 0, sizeof(b));
    buf_init(&jsonl, 1u << 30);
    enum MHD_Result ret;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(body, "stream");
    char err[256];
    struct quota_refusal why;
    int rc = NS_OK;
    if (!cJSON_IsObject(body))
        ret = send_error(x->c, NS_ERR_INVALID, NULL, NULL, "The request body must be a JSON object.");
    else if (!cJSON_IsString(model))
        ret = send_error(x->c, NS_ERR_INVALID, "model", NULL, "Missing required parameter: 'model'.");
    else if (!sched_by_model(x->srv, model->valuestring))
        ret = send_error(x->c, NS_ERR_MODEL_NOT_FOUND, "model", NULL,
                         "The model '%.100s' does not exist or you do not have access to it.", model->valuestring);
    else if (cJSON_IsTrue(stream))
        ret = send_error(x->c, NS_ERR_INVALID, "stream", NULL, "A deferred request cannot be streamed.");
    else if (inline_line(&jsonl, "deferred", chat ? "/v1/chat/completions" : "/v1/completions", body))
        ret = send_error(x->c, NS_ERR_NOMEM, NULL, NULL, "out of memory");
    else if ((rc = inline_batch_create(x, &jsonl, 1, chat ? "/v1/chat/completions" : "/v1/completions", "batch_",
                                       "deferred_request.jsonl", DEFERRED_METADATA, &b, &why, err, sizeof(err))))
        ret = rc == NS_ERR_QUOTA_TOKENS ? send_quota_refusal(x->c, ERR_OPENAI, &why)
                                        : send_error(x->c, NS_ERR_IO, NULL, NULL, "%s", err);
    else
        ret = send_json(x->c, 202, deferred_json(x->srv, &b));
    buf_release(&jsonl);
    store_batch_release(&b);
    cJSON_Delete(body);
    return ret;
}

static enum MHD_Result h_deferred_chat(struct route_ctx *x) { return deferred_create(x, true); }
static enum MHD_Result h_deferred_completions(struct route_ctx *x) { return deferred_create(x, false); }

static enum MHD_Result h_deferred_get(struct route_ctx *x)
{
    struct store_batch b;
    if (owned_batch_get(x, &b) != NS_OK)
        return send_error(x->c, NS_ERR_NOT_FOUND, "id", NULL, "No such deferred request: %.100s", x->ids[0]);
    enum MHD_Result ret;
    if (!b.metadata || !strstr(b.metadata, "nightshift_deferred"))
        ret = send_error(x->c, NS_ERR_NOT_FOUND, "id", NULL, "No such deferred request: %.100s", x->ids[0]);
    else
        ret = send_json(x->c, 200, deferred_json(x->srv, &b));
    store_batch_release(&b);
    return ret;
}

/* the batch, if it is a Message Batch; else a 404 in Anthropic's shape was sent */
static int ant_batch_lookup(struct route_ctx *x, struct store_batch *b, enum MHD_Result *ret)
{
    int rc = owned_batch_get(x, b);
    if (rc == NS_OK && strcmp(b->endpoint, "/v1/messages") != 0) {
        store_batch_release(b);
        rc = NS_ERR_NOT_FOUND;
    }
    if (rc == NS_OK && store_batch_status_terminal(b->status) && b->created_at + x->srv->p.message_batch_retention < time(NULL)) {
        store_batch_release(b);
        rc = NS_ERR_NOT_FOUND; /* results are kept 29 days */
    }
    if (rc)
        *ret = rc == NS_ERR_NOT_FOUND ? send_ant_error(x->c, NS_ERR_NOT_FOUND, "message batch %.100s not found", x->ids[0])
                                      : send_ant_error(x->c, rc, "cannot read the batch");
    return rc;
}

static enum MHD_Result h_ant_batch_get(struct route_ctx *x)
{
    struct store_batch b;
    enum MHD_Result ret;
    if (ant_batch_lookup(x, &b, &ret))
        return ret;
    cJSON *o = ant_batch_json(x->srv, &b);
    store_batch_release(&b);
    return send_json(x->c, 200, o);
}

static enum MHD_Result h_ant_batch_list(struct route_ctx *x)
{
    struct store_list_page pg = {.after = query(x, "after_id"), .before = query(x, "before_id"), .desc = true,
                                 .endpoint = "/v1/messages", .owner = owner_filter(x)};
    if (parse_limit(x, 1, 1000, 20, &pg.limit))
        return send_ant_error(x->c, NS_ERR_INVALID, "limit: Input should be an integer from 1 to 1000");
    if (pg.after && pg.before)
        return send_ant_error(x->c, NS_ERR_INVALID, "give at most one of before_id and after_id");
    struct store_batch *bs = NULL;
    int n = 0;
    bool more = false;
    if (x->srv->ops->batch_list(x->srv->st, &pg, &bs, &n, &more))
        return send_ant_error(x->c, NS_ERR_IO, "cannot list batches");
    cJSON *o = cJSON_CreateObject();
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    int64_t now = time(NULL);
    for (int i = 0; i < n; i++)
        if (!(store_batch_status_terminal(bs[i].status) && bs[i].created_at + x->srv->p.message_batch_retention < now))
            cJSON_AddItemToArray(d, ant_batch_json(x->srv, &bs[i]));
    cJSON_AddBoolToObject(o, "has_more", more);
    add_str_or_null(o, "first_id", n ? bs[0].id : NULL);
    add_str_or_null(o, "last_id", n ? bs[n - 1].id : NULL);
    for (int i = 0; i < n; i++)
        store_batch_release(&bs[i]);
    free(bs);
    return send_json(x->c, 200, o);
}

static enum MHD_Result h_ant_batch_cancel(struct route_ctx *x)
{
    struct store_batch b;
    enum MHD_Result ret;
    if (ant_batch_lookup(x, &b, &ret))
        return ret;
    int rc = batch_request_cancel(x->srv, &b);
    if (rc) {
        store_batch_release(&b);
        return send_ant_error(x->c, rc == NS_ERR_UNAVAILABLE ? rc : NS_ERR_IO, "cannot record the cancellation");
    }
    /* canceling an ended or canceling batch returns it as it is, like Anthropic */
    cJSON *o = ant_batch_json(x->srv, &b);
    store_batch_release(&b);
    return send_json(x->c, 200, o);
}

static enum MHD_Result h_ant_batch_results(struct route_ctx *x)
{
    struct store_batch b;
    enum MHD_Result ret;
    if (ant_batch_lookup(x, &b, &ret))
        return ret;
    bool ended = store_batch_status_terminal(b.status);
    store_batch_release(&b);
    if (!ended)
        return send_ant_error(x->c, NS_ERR_INVALID, "message batch %.100s is still processing; results are "
                                                    "available once processing_status is 'ended'", x->ids[0]);
    char *data = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&data, &len);
    if (!m)
        return send_ant_error(x->c, NS_ERR_NOMEM, "out of memory");
    int rc = x->srv->ops->lines_export(x->srv->st, x->ids[0], m, m);
    fclose(m);
    if (rc) {
        free(data);
        return send_ant_error(x->c, rc, "cannot read the batch's results");
    }
    return send_text(x->c, 200, "application/x-jsonl", data);
}

static enum MHD_Result h_ant_batch_delete(struct route_ctx *x)
{
    struct store_batch b;
    enum MHD_Result ret;
    if (ant_batch_lookup(x, &b, &ret))
        return ret;
    if (!store_batch_status_terminal(b.status)) {
        store_batch_release(&b);
        return send_ant_error(x->c, NS_ERR_INVALID,
                              "message batch %.100s has not ended; cancel it and wait until it ends to delete it",
                              x->ids[0]);
    }
    const char *files[3] = {b.input_file_id, b.output_file_id, b.error_file_id};
    for (int i = 0; i < 3; i++) {
        struct store_file f;
        if (files[i][0] && x->srv->ops->file_get(x->srv->st, files[i], &f) == NS_OK) {
            if (x->srv->ops->file_delete(x->srv->st, f.id) == NS_OK)
                unlink(f.path);
            store_file_release(&f);
        }
    }
    int rc = x->srv->ops->batch_delete(x->srv->st, b.id);
    store_batch_release(&b);
    if (rc)
        return send_ant_error(x->c, rc, "cannot delete the batch");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", x->ids[0]);
    cJSON_AddStringToObject(o, "type", "message_batch_deleted");
    return send_json(x->c, 200, o);
}

/* ---- metrics ------------------------------------------------------------------------ */

static void metric_hist(struct buf *b, const char *name, const char *model, const struct sched_hist *h)
{
    uint64_t cum = 0;
    for (int i = 0; i < SCHED_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        if (i == SCHED_HIST_BUCKETS - 1)
            buf_appendf(b, "%s_bucket{model=\"%s\",le=\"+Inf\"} %llu\n", name, model, (unsigned long long)cum);
        else
            buf_appendf(b, "%s_bucket{model=\"%s\",le=\"%g\"} %llu\n", name, model, sched_hist_bounds[i],
                        (unsigned long long)cum);
    }
    buf_appendf(b, "%s_sum{model=\"%s\"} %.6f\n%s_count{model=\"%s\"} %llu\n", name, model, h->sum, name, model,
                (unsigned long long)h->n);
}

/* GET /metrics: Prometheus text format (0.0.4) */
static bool sched_cost(struct sched *s, double *cost, double *savings);

struct metric_family {
    const char *name, *type, *help;
};

static void metric_header(struct buf *b, const struct metric_family *f)
{
    buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
}

/* the upstream backends' counters: tries, retries, failures, 429s, circuit, concurrency */
static void metric_backends(struct buf *b, struct server *srv)
{
    static const struct metric_family fam[] = {
        {"nightshift_backend_attempts_total", "counter", "Requests sent to an upstream, retries included."},
        {"nightshift_backend_retries_total", "counter", "Requests sent again after a retryable failure."},
        {"nightshift_backend_failures_total", "counter", "Requests that ended in an error at an upstream."},
        {"nightshift_backend_rate_limited_total", "counter", "429 answers from an upstream."},
        {"nightshift_backend_circuit_state", "gauge", "Circuit breaker: 0 closed, 1 open, 2 half-open."},
        {"nightshift_backend_inflight", "gauge", "Requests in flight to an upstream."},
        {"nightshift_backend_concurrency_limit", "gauge", "The adaptive concurrency limit now."},
    };
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        metric_header(b, &fam[f]);
        for (int i = 0; i < srv->n_scheds; i++) {
            struct backend *be = sched_backend(srv->scheds[i]);
            if (!be->ops->get_stats)
                continue;
            struct backend_stats bs;
            be->ops->get_stats(be->impl, &bs);
            const uint64_t v[] = {bs.attempts, bs.retries, bs.failed, bs.rate_limited, (uint64_t)bs.circuit,
                                  (uint64_t)bs.inflight, (uint64_t)bs.limit};
            buf_appendf(b, "%s{model=\"%s\",backend=\"%s\"} %llu\n", fam[f].name, sched_model_name(srv->scheds[i]),
                        be->ops->kind, (unsigned long long)v[f]);
        }
    }
}

static void metric_quota_key(void *ud, const char *key, const uint64_t refused[QUOTA_LIMITS_])
{
    for (int l = 0; l < QUOTA_LIMITS_; l++)
        buf_appendf(ud, "nightshift_quota_refused_total{key=\"%s\",limit=\"%s\"} %llu\n", key, quota_limit_names[l],
                    (unsigned long long)refused[l]);
}

static enum MHD_Result h_metrics(struct route_ctx *x)
{
    if (!x->admin)
        return send_error(x->c, NS_ERR_AUTH, NULL, "admin_key_required", "GET /metrics needs an admin key.");
    struct buf b;
    buf_init(&b, 4u << 20);
    struct server *srv = x->srv;
    static const struct metric_family fam[] = {
        {"nightshift_queue_depth", "gauge", "Requests waiting to enter the engine, by lane."},
        {"nightshift_active_batches", "gauge", "Batches handing out lines to the engine."},
        {"nightshift_requests_total", "counter", "Requests finished, by lane and outcome."},
        {"nightshift_engine_steps_total", "counter", "llama_decode calls."},
        {"nightshift_engine_sequences_per_step", "gauge", "Average sequences per engine step since start."},
        {"nightshift_prompt_tokens_submitted_total", "counter", "Prompt tokens of admitted requests."},
        {"nightshift_prompt_tokens_computed_total", "counter", "Prompt tokens actually computed."},
        {"nightshift_prompt_tokens_cached_total", "counter", "Prompt tokens served by the prefix cache."},
        {"nightshift_generated_tokens_total", "counter", "Tokens generated."},
        {"nightshift_preemptions_total", "counter", "Sequences parked for lack of KV memory."},
        {"nightshift_engine_sequence_runs_total", "counter",
         "Runs of consecutive sequence ids summed over steps: with a KV stream per sequence, a pass over the weights each."},
        {"nightshift_engine_sequence_moves_total", "counter", "Sequences moved to a lower slot to close a gap in the ids."},
        {"nightshift_engine_decode_seconds_total", "counter", "Wall time inside llama.cpp's decode (the model's compute)."},
    };
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        metric_header(&b, &fam[f]);
        for (int i = 0; i < srv->n_scheds; i++) {
            const char *m = sched_model_name(srv->scheds[i]);
            struct sched_stats ss;
            struct engine_stats es;
            sched_get_stats(srv->scheds[i], &ss);
            struct backend *be = sched_backend(srv->scheds[i]);
            memset(&es, 0, sizeof(es));
            if (be->ops->engine) /* read unlocked: counters may lag a step */
                engine_get_stats(be->ops->engine(be->impl), &es);
            switch (f) {
            case 0: buf_appendf(&b, "%s{model=\"%s\",lane=\"interactive\"} %llu\n", fam[f].name, m,
                                (unsigned long long)ss.interactive_waiting); break;
            case 1: buf_appendf(&b, "%s{model=\"%s\"} %d\n", fam[f].name, m, ss.active_batches); break;
            case 2:
                buf_appendf(&b, "%s{model=\"%s\",lane=\"interactive\",outcome=\"ok\"} %llu\n", fam[f].name, m,
                            (unsigned long long)(ss.interactive_done - ss.interactive_failed));
                buf_appendf(&b, "%s{model=\"%s\",lane=\"interactive\",outcome=\"failed\"} %llu\n", fam[f].name, m,
                            (unsigned long long)ss.interactive_failed);
                buf_appendf(&b, "%s{model=\"%s\",lane=\"batch\",outcome=\"ok\"} %llu\n", fam[f].name, m,
                            (unsigned long long)(ss.batch_lines_done - ss.batch_lines_failed));
                buf_appendf(&b, "%s{model=\"%s\",lane=\"batch\",outcome=\"failed\"} %llu\n", fam[f].name, m,
                            (unsigned long long)ss.batch_lines_failed);
                break;
            case 3: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.steps); break;
            case 4: buf_appendf(&b, "%s{model=\"%s\"} %.3f\n", fam[f].name, m,
                                es.steps ? (double)es.seqs_in_steps / (double)es.steps : 0.0); break;
            case 5: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.prompt_submitted); break;
            case 6: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.prompt_tokens); break;
            case 7: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.prompt_cached); break;
            case 8: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.gen_tokens); break;
            case 9: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.preemptions); break;
            case 10: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.seq_runs); break;
            case 11: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.moves); break;
            case 12: buf_appendf(&b, "%s{model=\"%s\"} %.6f\n", fam[f].name, m, es.decode_seconds); break;
            }
        }
    }
    static const struct {
        const char *name, *help;
        int which;
    } hists[] = {
        {"nightshift_time_to_first_token_seconds", "Real-time requests: submission to first token.", 0},
        {"nightshift_request_duration_seconds", "Real-time requests: submission to the last token.", 1},
        {"nightshift_batch_line_duration_seconds", "Batch lines: admission to the last token.", 2},
        {"nightshift_store_write_seconds", "Group commits of batch line results to the store.", 3},
    };
    for (size_t h = 0; h < sizeof(hists) / sizeof(hists[0]); h++) {
        buf_appendf(&b, "# HELP %s %s\n# TYPE %s histogram\n", hists[h].name, hists[h].help, hists[h].name);
        for (int i = 0; i < srv->n_scheds; i++) {
            struct sched_stats ss;
            sched_get_stats(srv->scheds[i], &ss);
            const struct sched_hist *sh = hists[h].which == 0   ? &ss.ttft
                                          : hists[h].which == 1 ? &ss.latency
                                          : hists[h].which == 2 ? &ss.line_latency
                                                                : &ss.store_write;
            metric_hist(&b, hists[h].name, sched_model_name(srv->scheds[i]), sh);
        }
    }
    metric_backends(&b, srv);
    buf_appendf(&b, "# HELP nightshift_quota_refused_total Calls and batches refused (429) by a key's limit.\n"
                    "# TYPE nightshift_quota_refused_total counter\n");
    quota_foreach(srv->quota, metric_quota_key, &b);
    buf_appendf(&b, "# HELP nightshift_cost_usd_total Work done at the model's configured prices (batch lines at "
                    "batch prices).\n# TYPE nightshift_cost_usd_total counter\n"
                    "# HELP nightshift_savings_usd_total What batch pricing saved against real-time prices.\n"
                    "# TYPE nightshift_savings_usd_total counter\n");
    for (int i = 0; i < srv->n_scheds; i++) {
        double cost, savings;
        if (sched_cost(srv->scheds[i], &cost, &savings))
            buf_appendf(&b, "nightshift_cost_usd_total{model=\"%s\"} %.6f\nnightshift_savings_usd_total{model=\"%s\"} %.6f\n",
                        sched_model_name(srv->scheds[i]), cost, sched_model_name(srv->scheds[i]), savings);
    }
    buf_appendf(&b, "# HELP nightshift_batches Batches by status.\n# TYPE nightshift_batches gauge\n");
    for (int st = 0; st < SB_STATUS_COUNT_; st++) {
        char(*ids)[48] = NULL;
        int n = 0;
        if (srv->ops->batch_ids_by_status(srv->st, (enum store_batch_status)st, &ids, &n) == NS_OK)
            buf_appendf(&b, "nightshift_batches{status=\"%s\"} %d\n", store_batch_status_name((enum store_batch_status)st), n);
        free(ids);
    }
    char *text = buf_detach(&b);
    if (!text)
        return send_error(x->c, NS_ERR_NOMEM, NULL, NULL, "out of memory");
    return send_text(x->c, 200, "text/plain; version=0.0.4", text);
}

/* ---- dashboard -------------------------------------------------------------------------- */


/* lines of in-progress batches not yet finished (the batch lane's queue) */
static int64_t batch_lines_pending(struct server *srv)
{
    char(*ids)[48] = NULL;
    int n = 0;
    int64_t left = 0;
    if (srv->ops->batch_ids_by_status(srv->st, SB_IN_PROGRESS, &ids, &n) == NS_OK)
        for (int i = 0; i < n; i++) {
            struct store_batch b;
            if (srv->ops->batch_get(srv->st, ids[i], &b) == NS_OK) {
                left += b.total - b.completed - b.failed;
                store_batch_release(&b);
            }
        }
    free(ids);
    return left;
}

static void take_sample(struct server *srv)
{
    uint64_t tokens = 0, lines = 0, waiting = 0;
    for (int i = 0; i < srv->n_scheds; i++) {
        struct sched_stats ss;
        sched_get_stats(srv->scheds[i], &ss);
        tokens += ss.completion_tokens;
        lines += ss.batch_lines_done;
        waiting += ss.interactive_waiting;
    }
    struct sample sm = {.t = clock_wall(), .interactive_waiting = (double)waiting,
                        .batch_pending = (double)batch_lines_pending(srv)};
    pthread_mutex_lock(&srv->smu);
    double dt = sm.t - srv->last_t;
    if (srv->last_t > 0 && dt > 0) {
        sm.tokens_per_s = (double)(tokens - srv->last_tokens) / dt;
        sm.lines_per_s = (double)(lines - srv->last_lines) / dt;
    }
    srv->last_t = sm.t;
    srv->last_tokens = tokens;
    srv->last_lines = lines;
    srv->ring[srv->head] = sm;
    srv->head = (srv->head + 1) % SAMPLES;
    if (srv->n_samples < SAMPLES)
        srv->n_samples++;
    pthread_mutex_unlock(&srv->smu);
}

static void *sampler_thread(void *arg)
{
    struct server *srv = arg;
    pthread_mutex_lock(&srv->smu);
    while (!srv->sampler_stop) {
        pthread_mutex_unlock(&srv->smu);
        take_sample(srv);
        pthread_mutex_lock(&srv->smu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += SAMPLE_EVERY;
        while (!srv->sampler_stop && pthread_cond_timedwait(&srv->scv, &srv->smu, &ts) == 0)
            ;
    }
    pthread_mutex_unlock(&srv->smu);
    return NULL;
}

/* what a model's work cost since start (batch lines at batch prices, real-time requests at
 * real-time prices) and what batch pricing saved; false when the model has no price */
static bool sched_cost(struct sched *s, double *cost, double *savings)
{
    struct sched_stats ss;
    sched_get_stats(s, &ss);
    struct backend *be = sched_backend(s);
    int64_t bp = (int64_t)ss.batch_prompt_tokens, bc = (int64_t)ss.batch_completion_tokens;
    double batch = backend_cost(be, bp, bc, true);
    if (batch < 0)
        return false;
    double rt_batch = backend_cost(be, bp, bc, false);
    *cost = batch + backend_cost(be, (int64_t)ss.prompt_tokens - bp, (int64_t)ss.completion_tokens - bc, false);
    *savings = rt_batch - batch;
    return true;
}

static const char *const circuit_names[] = {"closed", "open", "half-open"};

static cJSON *stats_model(struct sched *s)
{
    struct sched_stats ss;
    sched_get_stats(s, &ss);
    struct backend *be = sched_backend(s);
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "name", sched_model_name(s));
    cJSON_AddStringToObject(m, "backend", be->ops->kind);
    cJSON_AddNumberToObject(m, "interactive_waiting", (double)ss.interactive_waiting);
    cJSON_AddNumberToObject(m, "interactive_done", (double)ss.interactive_done);
    cJSON_AddNumberToObject(m, "interactive_failed", (double)ss.interactive_failed);
    cJSON_AddNumberToObject(m, "active_batches", ss.active_batches);
    cJSON_AddNumberToObject(m, "batch_lines_done", (double)ss.batch_lines_done);
    cJSON_AddNumberToObject(m, "batch_lines_failed", (double)ss.batch_lines_failed);
    cJSON_AddNumberToObject(m, "prompt_tokens", (double)ss.prompt_tokens);
    cJSON_AddNumberToObject(m, "completion_tokens", (double)ss.completion_tokens);
    double cost, savings;
    if (sched_cost(s, &cost, &savings)) {
        cJSON_AddNumberToObject(m, "cost_usd", cost);
        cJSON_AddNumberToObject(m, "savings_usd", savings);
    }
    if (be->ops->engine) {
        struct engine_stats es;
        engine_get_stats(be->ops->engine(be->impl), &es);
        cJSON *e = cJSON_AddObjectToObject(m, "engine");
        cJSON_AddNumberToObject(e, "steps", (double)es.steps);
        cJSON_AddNumberToObject(e, "sequences_per_step", es.steps ? (double)es.seqs_in_steps / (double)es.steps : 0.0);
        cJSON_AddNumberToObject(e, "generated_tokens", (double)es.gen_tokens);
        cJSON_AddNumberToObject(e, "prompt_tokens_computed", (double)es.prompt_tokens);
        cJSON_AddNumberToObject(e, "prompt_tokens_cached", (double)es.prompt_cached);
    }
    if (be->ops->get_stats) {
        struct backend_stats bs;
        be->ops->get_stats(be->impl, &bs);
        cJSON *u = cJSON_AddObjectToObject(m, "upstream");
        cJSON_AddStringToObject(u, "circuit", circuit_names[bs.circuit >= 0 && bs.circuit < 3 ? bs.circuit : 0]);
        cJSON_AddNumberToObject(u, "inflight", bs.inflight);
        cJSON_AddNumberToObject(u, "concurrency_limit", bs.limit);
        cJSON_AddNumberToObject(u, "attempts", (double)bs.attempts);
        cJSON_AddNumberToObject(u, "retries", (double)bs.retries);
        cJSON_AddNumberToObject(u, "failures", (double)bs.failed);
        cJSON_AddNumberToObject(u, "rate_limited", (double)bs.rate_limited);
    }
    return m;
}

/* GET /v1/nightshift/stats: what the dashboard draws (models now, the last hour's series) */
static enum MHD_Result h_stats(struct route_ctx *x)
{
    struct server *srv = x->srv;
    if (!x->admin) /* every project's numbers: the dashboard is for operators */
        return send_error(x->c, NS_ERR_AUTH, NULL, "admin_key_required", "GET /v1/nightshift/stats needs an admin key.");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "time", clock_wall());
    cJSON *ms = cJSON_AddArrayToObject(o, "models");
    for (int i = 0; i < srv->n_scheds; i++)
        cJSON_AddItemToArray(ms, stats_model(srv->scheds[i]));
    cJSON *se = cJSON_AddObjectToObject(o, "series");
    cJSON_AddNumberToObject(se, "interval_seconds", SAMPLE_EVERY);
    cJSON *arr[5];
    static const char *const names[5] = {"t", "tokens_per_s", "lines_per_s", "batch_pending", "interactive_waiting"};
    for (int k = 0; k < 5; k++)
        arr[k] = cJSON_AddArrayToObject(se, names[k]);
    pthread_mutex_lock(&srv->smu);
    for (int i = 0; i < srv->n_samples; i++) {
        const struct sample *sm = &srv->ring[(srv->head - srv->n_samples + i + SAMPLES) % SAMPLES];
        const double v[5] = {sm->t, sm->tokens_per_s, sm->lines_per_s, sm->batch_pending, sm->interactive_waiting};
        for (int k = 0; k < 5; k++)
            cJSON_AddItemToArray(arr[k], cJSON_CreateNumber(v[k]));
    }
    pthread_mutex_unlock(&srv->smu);
    return send_json(x->c, 200, o);
}

static enum MHD_Result send_asset(struct MHD_Connection *c, const struct dashboard_asset *a)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, a->type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = httpguard_queue(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static bool wants_html(struct MHD_Connection *c)
{
    const char *acc = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    return acc && strstr(acc, "text/html");
}

/* GET /: a browser gets the dashboard; Ollama tools probing the root get their text */
static enum MHD_Result h_root(struct route_ctx *x)
{
    const struct dashboard_asset *a = dashboard_find("/");
    if (a && wants_html(x->c))
        return send_asset(x->c, a);
    return h_ollama_root(x);
}

static enum MHD_Result h_dashboard_file(struct route_ctx *x)
{
    char path[160];
    snprintf(path, sizeof(path), "/dashboard/%.100s", x->ids[0]);
    const struct dashboard_asset *a = dashboard_find(path);
    if (!a)
        return send_error(x->c, NS_ERR_NOT_FOUND, NULL, "unknown_url", "Invalid URL (GET %.120s)", path);
    return send_asset(x->c, a);
}

/* GET /v1/nightshift/webhooks[?batch_id=ID&limit=N]: deliveries, newest first */
static enum MHD_Result h_webhooks(struct route_ctx *x)
{
    int limit;
    if (!x->admin)
        return send_error(x->c, NS_ERR_AUTH, NULL, "admin_key_required", "GET /v1/nightshift/webhooks needs an admin key.");
    if (parse_limit(x, 1, 1000, 100, &limit))
        return send_error(x->c, NS_ERR_INVALID, "limit", NULL, "Invalid 'limit': expected an integer from 1 to 1000.");
    struct store_webhook *ws = NULL;
    int n = 0;
    if (x->srv->ops->webhooks_list(x->srv->st, query(x, "batch_id"), limit, &ws, &n))
        return send_error(x->c, NS_ERR_IO, NULL, NULL, "cannot read the webhook deliveries");
    static const char *const states[] = {"pending", "delivered", "failed"};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "id", ws[i].id);
        cJSON_AddStringToObject(e, "object", "webhook.delivery");
        cJSON_AddStringToObject(e, "type", ws[i].type);
        cJSON_AddStringToObject(e, "batch_id", ws[i].batch_id);
        cJSON_AddStringToObject(e, "endpoint", ws[i].endpoint);
        cJSON_AddStringToObject(e, "url", ws[i].url ? ws[i].url : "");
        cJSON_AddStringToObject(e, "state", states[ws[i].state >= 0 && ws[i].state < 3 ? ws[i].state : 0]);
        cJSON_AddNumberToObject(e, "attempts", ws[i].attempts);
        cJSON_AddNumberToObject(e, "created_at", (double)ws[i].created_at);
        add_ts(e, "next_attempt_at", ws[i].state == SW_PENDING ? ws[i].next_at : 0);
        add_ts(e, "delivered_at", ws[i].delivered_at);
        if (ws[i].last_status)
            cJSON_AddNumberToObject(e, "last_status", ws[i].last_status);
        else
            cJSON_AddNullToObject(e, "last_status");
        add_str_or_null(e, "last_error", ws[i].last_error[0] ? ws[i].last_error : NULL);
        cJSON_AddItemToArray(d, e);
        store_webhook_release(&ws[i]);
    }
    free(ws);
    return send_json(x->c, 200, o);
}

/* the dashboard's files hold no data, and a browser cannot send a key when it navigates */
static bool public_route(const char *method, const char *url)
{
    /* liveness and readiness probes (a kubelet, a load balancer) carry no key, and say
     * nothing a caller could use: up or not, ready or not */
    return (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
           (strcmp(url, "/") == 0 || strncmp(url, "/dashboard/", 11) == 0 || strcmp(url, "/health") == 0 ||
            strcmp(url, "/ready") == 0);
}

/* ---- dispatch ----------------------------------------------------------------------- */

enum body_kind { BODY_NONE, BODY_JSON, BODY_MULTIPART };

static const struct route {
    const char *method;
    const char *pattern;
    enum body_kind body;
    handler_fn fn;
} routes[] = {
    {"GET", "/health", BODY_NONE, h_health},
    {"GET", "/ready", BODY_NONE, h_ready},
    {"GET", "/metrics", BODY_NONE, h_metrics},
    {"GET", "/v1/models", BODY_NONE, h_models},
    {"GET", "/v1/models/*", BODY_NONE, h_model_get},
    {"POST", "/v1/chat/completions", BODY_JSON, h_chat},
    {"POST", "/v1/completions", BODY_JSON, h_completions},
    {"POST", "/v1/embeddings", BODY_JSON, h_embeddings},
    {"POST", "/v1/files", BODY_MULTIPART, h_file_upload},
    {"GET", "/v1/files", BODY_NONE, h_file_list},
    {"GET", "/v1/files/*", BODY_NONE, h_file_get},
    {"GET", "/v1/files/*/content", BODY_NONE, h_file_content},
    {"DELETE", "/v1/files/*", BODY_NONE, h_file_delete},
    {"POST", "/v1/batches", BODY_JSON, h_batch_create},
    {"POST", "/v1/deferred/chat/completions", BODY_JSON, h_deferred_chat},
    {"POST", "/v1/deferred/completions", BODY_JSON, h_deferred_completions},
    {"GET", "/v1/deferred/*", BODY_NONE, h_deferred_get},
    {"GET", "/v1/batches", BODY_NONE, h_batch_list},
    {"GET", "/v1/batches/*", BODY_NONE, h_batch_get},
    {"POST", "/v1/batches/*/cancel", BODY_NONE, h_batch_cancel},
    {"POST", "/v1/batches/*/retry", BODY_NONE, h_batch_retry},
    {"GET", "/v1/batches/*/output", BODY_NONE, h_batch_output},
    {"GET", "/v1/batches/*/errors", BODY_NONE, h_batch_errors},
    {"POST", "/v1/messages", BODY_JSON, h_messages},
    {"POST", "/v1/messages/batches", BODY_JSON, h_ant_batch_create},
    {"GET", "/v1/messages/batches", BODY_NONE, h_ant_batch_list},
    {"GET", "/v1/messages/batches/*", BODY_NONE, h_ant_batch_get},
    {"POST", "/v1/messages/batches/*/cancel", BODY_NONE, h_ant_batch_cancel},
    {"GET", "/v1/messages/batches/*/results", BODY_NONE, h_ant_batch_results},
    {"DELETE", "/v1/messages/batches/*", BODY_NONE, h_ant_batch_delete},
    {"GET", "/", BODY_NONE, h_root},
    {"GET", "/dashboard/*", BODY_NONE, h_dashboard_file},
    {"GET", "/v1/nightshift/stats", BODY_NONE, h_stats},
    {"GET", "/v1/nightshift/webhooks", BODY_NONE, h_webhooks},
    {"GET", "/api/version", BODY_NONE, h_ollama_version},
    {"GET", "/api/tags", BODY_NONE, h_ollama_tags},
    {"GET", "/api/ps", BODY_NONE, h_ollama_ps},
    {"POST", "/api/show", BODY_JSON, h_ollama_show},
    {"POST", "/api/chat", BODY_JSON, h_ollama_chat},
    {"POST", "/api/generate", BODY_JSON, h_ollama_generate},
    {"POST", "/api/embed", BODY_JSON, h_ollama_embed},
    {"POST", "/api/embeddings", BODY_JSON, h_ollama_embed},
    {"POST", "/api/pull", BODY_JSON, h_ollama_manage},
    {"POST", "/api/push", BODY_JSON, h_ollama_manage},
    {"POST", "/api/create", BODY_JSON, h_ollama_manage},
    {"POST", "/api/copy", BODY_JSON, h_ollama_manage},
    {"DELETE", "/api/delete", BODY_JSON, h_ollama_manage},
};

/* match url against pattern; ids filled for each "*" */
static bool route_match(const char *pattern, const char *url, struct route_ctx *x)
{
    int nid = 0;
    const char *p = pattern, *u = url;
    while (*p && *u) {
        if (*p == '*') {
            const char *end = strchr(u, '/');
            size_t n = end ? (size_t)(end - u) : strlen(u);
            if (n == 0 || n >= sizeof(x->idbuf[0]) || nid >= MAX_IDS)
                return false;
            memcpy(x->idbuf[nid], u, n);
            x->idbuf[nid][n] = '\0';
            x->ids[nid] = x->idbuf[nid];
            nid++;
            u += n;
            p++;
            continue;
        }
        if (*p != *u)
            return false;
        p++;
        u++;
    }
    /* a trailing slash is accepted */
    if (*u == '/' && u[1] == '\0')
        u++;
    return *p == '\0' && *u == '\0';
}

static const struct route *route_find(const char *method, const char *url, struct route_ctx *x, bool *path_known)
{
    *path_known = false;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (!route_match(routes[i].pattern, url, x))
            continue;
        *path_known = true;
        /* HEAD is GET without the body (MHD drops it); Ollama clients probe with HEAD / */
        if (strcmp(routes[i].method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0))
            return &routes[i];
    }
    return NULL;
}

/* 405 with Allow, the methods the path takes (RFC 9110 15.5.6), in the error shape of the
 * API the path belongs to (issue 27.16: OPTIONS, TRACE and unknown methods were 404s) */
static enum MHD_Result send_method_not_allowed(struct MHD_Connection *c, enum err_shape shape, const char *method,
                                               const char *url)
{
    char allow[160] = "";
    struct route_ctx scratch;
    memset(&scratch, 0, sizeof(scratch));
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (!route_match(routes[i].pattern, url, &scratch))
            continue;
        const char *m[2] = {routes[i].method, strcmp(routes[i].method, "GET") == 0 ? "HEAD" : NULL};
        for (int k = 0; k < 2 && m[k]; k++) {
            char tok[16];
            snprintf(tok, sizeof(tok), "%s,", m[k]);
            char have[168];
            snprintf(have, sizeof(have), ",%s", allow);
            char want[20];
            snprintf(want, sizeof(want), ",%s", tok);
            if (!strstr(have, want) && strlen(allow) + strlen(tok) + 1 < sizeof(allow))
                strcat(allow, tok);
        }
    }
    size_t n = strlen(allow);
    if (n)
        allow[n - 1] = '\0';
    char msg[600];
    snprintf(msg, sizeof(msg), "Method %.20s is not allowed on %.200s; it takes %s.", method, url, allow);
    cJSON *body = shape == ERR_ANTHROPIC ? anthropic_error(NS_ERR_METHOD, msg)
                  : shape == ERR_OLLAMA  ? ollama_error(msg)
                                         : oai_error_body(NS_ERR_METHOD, msg, NULL, "method_not_allowed");
    char *text = json_print(body);
    if (!text)
        return MHD_NO;
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ret = httpguard_queue(c, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
    MHD_destroy_response(resp);
    return ret;
}

static int ns_hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* MHD's unescaper for paths and query values, but "%00" stays as it is: decoded, it would
 * end the C string early, and "/v1/files/%00" would be routed as "/v1/files/", the file list
 * (issue 27.16). Kept literal it is an id like any other that does not exist. */
static size_t url_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    char *w = s;
    for (const char *r = s; *r;) {
        int hi, lo;
        if (r[0] == '%' && (hi = ns_hexval(r[1])) >= 0 && (lo = ns_hexval(r[2])) >= 0 && (hi | lo)) {
            *w++ = (char)(hi * 16 + lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* how many times the request carries header name (repeated Content-Length or
 * Transfer-Encoding: request smuggling behind a proxy that reads another one) */
static enum MHD_Result header_count_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    (void)value;
    struct {
        const char *name;
        int n;
    } *hc = cls;
    if (strcasecmp(key, hc->name) == 0)
        hc->n++;
    return MHD_YES;
}

static int header_count(struct MHD_Connection *c, const char *name)
{
    struct {
        const char *name;
        int n;
    } hc = {name, 0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, header_count_iter, &hc);
    return hc.n;
}

static enum MHD_Result upload_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                   const char *content_type, const char *transfer_encoding, const char *data,
                                   uint64_t off, size_t size)
{
    (void)kind;
    (void)content_type;
    (void)transfer_encoding;
    (void)off;
    struct req *r = cls;
    struct upload *u = r->up;
    if (strcmp(key, "purpose") == 0) {
        if (buf_append(&u->purpose, data, size))
            return MHD_NO;
        return MHD_YES;
    }
    if (strcmp(key, "file") != 0)
        return MHD_YES; /* other fields are ignored */
    if (!u->have_file) {
        u->have_file = true;
        if (filename && !u->filename)
            u->filename = strdup(filename);
    }
    if (u->too_large)
        return MHD_YES;
    if ((uint64_t)u->bytes + size > r->srv->p.max_file) {
        u->too_large = true;
        return MHD_YES;
    }
    if (durable_write(&u->file, data, size)) {
        r->early_status = NS_ERR_IO;
        snprintf(r->early_msg, sizeof(r->early_msg), "cannot store the upload: %s", strerror(errno));
        /* give the space back now (a full disk), not when the connection ends: the
         * answer may reach the client before req_completed() runs */
        durable_rollback(&u->file);
        return MHD_NO;
    }
    u->bytes += (int64_t)size;
    return MHD_YES;
}

static bool content_type_is(struct MHD_Connection *c, const char *want)
{
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    return ct && strncasecmp(ct, want, strlen(want)) == 0;
}

/* Who is asking. Keys come as 'Authorization: Bearer KEY' or 'x-api-key: KEY' (the
 * Anthropic routes). --api-key is an admin key of project "default"; keys from `nightshift
 * keys create` are found by their SHA-256 in the store. With neither configured (no
 * --api-key, no key in the store) or --no-auth, everyone is an admin of "default": the
 * loopback development mode. False: answer 401. */
/* two 64-digit hex SHA-256 strings equal, in time that does not depend on where they differ */
static bool server_hash_equal(const char *a, const char *b)
{
    unsigned char d = 0;
    for (int i = 0; i < 64; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static bool server_auth(struct server *s, struct MHD_Connection *c, struct route_ctx *x)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    /* the scheme is case-insensitive (RFC 7235 2.1): "bearer KEY" is as good as "Bearer KEY" */
    const char *key = h && strncasecmp(h, "Bearer ", 7) == 0 ? h + 7 : MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
    snprintf(x->owner, sizeof(x->owner), "default");
    x->admin = true;
    if (s->no_auth)
        return true;
    char hash[65] = "";
    if (key && *key)
        sha256_hex(key, strlen(key), hash);
    /* --api-key is compared by hash, in constant time: the time taken tells nothing of how
     * many leading characters a guess got right (issue 27.14) */
    if (hash[0] && s->api_key && server_hash_equal(hash, s->api_key_hash))
        return true;
    if (hash[0]) {
        struct store_key k;
        if (keycache_key_get(s->keys, hash, &k) == NS_OK) {
            snprintf(x->owner, sizeof(x->owner), "%s", k.project);
            x->admin = k.admin;
            snprintf(x->key, sizeof(x->key), "%s", k.name);
            /* a key's own limit, else (not for admin keys) the server's default */
            const struct quota_limits *d = &s->p.quota_default;
            x->lim.rpm = k.rpm >= 0 ? k.rpm : k.admin ? 0 : d->rpm;
            x->lim.tokens_per_day = k.tokens_per_day >= 0 ? k.tokens_per_day : k.admin ? 0 : d->tokens_per_day;
            x->lim.batch_queue_tokens =
                k.batch_queue_tokens >= 0 ? k.batch_queue_tokens : k.admin ? 0 : d->batch_queue_tokens;
            return true;
        }
    }
    if (!s->api_key && keycache_keys_none(s->keys))
        return true;
    x->admin = false;
    return false;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    struct server *s = cls;
    struct req *rr = *con_cls;
    if (rr && rr->job) {
        struct job *j = rr->job;
        rr->job = NULL;
        return rr->answer(c, j, rr->flavor);
    }
    struct route_ctx x;
    memset(&x, 0, sizeof(x));
    x.srv = s;
    x.c = c;
    bool path_known;
    const struct route *rt = route_find(method, url, &x, &path_known);
    struct req *r = *con_cls;
    /* errors in the shape of the API the path belongs to */
    bool ant = strncmp(url, "/v1/messages", 12) == 0;
    bool oll = strncmp(url, "/api/", 5) == 0 || strcmp(url, "/") == 0;
#define EARLY_ERROR(status, param, code, ...)                                                                      \
    (ant   ? send_ant_error(c, (status), __VA_ARGS__)                                                              \
     : oll ? send_ollama_error(c, (status), __VA_ARGS__)                                                           \
           : send_error(c, (status), (param), (code), __VA_ARGS__))
#define AUTH_MESSAGE                                                                                               \
    (ant   ? "invalid x-api-key"                                                                                   \
     : oll ? "unauthorized: pass the API key as 'Authorization: Bearer KEY'"                                       \
           : "Incorrect API key provided. Pass it as 'Authorization: Bearer KEY'.")
    if (!r) {
        /* Host, Origin, CORS preflight (httpguard.h): before the key, since a browser's
         * preflight carries none */
        enum MHD_Result pre;
        if (httpguard_preflight(c, method, &pre))
            return pre;
        char gmsg[300];
        int grc = httpguard_check(c, gmsg, sizeof(gmsg));
        if (grc)
            return EARLY_ERROR(grc, NULL, NULL, "%s", gmsg);
        /* Two Content-Lengths (or one beside a Transfer-Encoding) frame the body two ways: a
         * proxy in front may read the other one and smuggle a request through (RFC 9112
         * 6.3). Refused on the headers, before any body (issue 27.16). */
        int ncl = header_count(c, MHD_HTTP_HEADER_CONTENT_LENGTH), nte = header_count(c, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        if (ncl > 1 || (ncl && nte) || nte > 1)
            return EARLY_ERROR(NS_ERR_INVALID, NULL, "invalid_framing", "%s",
                               "The request is framed twice (repeated Content-Length, or Content-Length with "
                               "Transfer-Encoding); send one.");
        /* Decided on the headers (issue 27.7): a request without a valid key is answered 401
         * before one byte of its body is read or stored; MHD then closes the connection
         * instead of reading the body it was not given a chance to consume. */
        if (!public_route(method, url) && !server_auth(s, c, &x))
            return EARLY_ERROR(NS_ERR_AUTH, NULL, NULL, "%s", AUTH_MESSAGE);
        r = calloc(1, sizeof(*r));
        if (!r)
            return MHD_NO;
        r->srv = s;
        r->t_start = clock_wall();
        /* Message Batches carry their requests inline: up to 256 MB, as at Anthropic */
        buf_init(&r->body, rt && rt->fn == h_ant_batch_create ? ANT_MAX_BYTES : s->p.max_body);
        *con_cls = r;
        if (atomic_load(&s->draining)) {
            /* shutting down: read the body (so the answer reaches the client), then refuse */
            r->early_status = NS_ERR_UNAVAILABLE;
            snprintf(r->early_msg, sizeof(r->early_msg), "The server is shutting down; retry shortly.");
            return MHD_YES;
        }
        r->counted = true;
        atomic_fetch_add(&s->inflight, 1);
        if (rt && rt->body == BODY_MULTIPART && content_type_is(c, "multipart/form-data")) {
            r->up = calloc(1, sizeof(*r->up));
            if (!r->up)
                return MHD_NO;
            durable_init(&r->up->file);
            buf_init(&r->up->purpose, 256);
            char path[4096];
            oai_make_id(r->up->id, sizeof(r->up->id), "file-");
            batchmgr_file_path(s->data_dir, r->up->id, path, sizeof(path));
            int orc = durable_open(&r->up->file, path);
            r->up->pp = MHD_create_post_processor(c, 64 * 1024, upload_iter, r);
            if (orc || !r->up->pp) {
                r->early_status = NS_ERR_IO;
                snprintf(r->early_msg, sizeof(r->early_msg), "cannot start the upload (data dir not writable?)");
            }
        }
        return MHD_YES;
    }
    /* body pieces */
    if (*upload_data_size) {
        /* a body trickled in to hold the connection (slowloris): once 10 s old it must
         * average min_body_rate; below that the connection is closed (issue 27.8) */
        r->body_bytes += *upload_data_size;
        double age = clock_wall() - r->t_start;
        if (s->p.min_body_rate && age > 10 && (double)r->body_bytes < age * s->p.min_body_rate) {
            log_event(LOG_WARN, NULL, NULL, "closed a connection whose body came at %.0f bytes/s (below %u)",
                      (double)r->body_bytes / age, s->p.min_body_rate);
            return MHD_NO;
        }
        if (!r->early_status) {
            if (r->up && r->up->pp) {
                if (MHD_post_process(r->up->pp, upload_data, *upload_data_size) != MHD_YES && !r->early_status) {
                    r->early_status = NS_ERR_INVALID;
                    snprintf(r->early_msg, sizeof(r->early_msg), "the multipart body is malformed");
                }
            } else if (buf_append(&r->body, upload_data, *upload_data_size)) {
                r->early_status = NS_ERR_TOO_LARGE;
                snprintf(r->early_msg, sizeof(r->early_msg), "The request body is larger than the limit of %zu bytes.",
                         s->p.max_body);
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    /* the whole request is in: answer (in the error shape of the API the path belongs to);
     * the key is checked again (it may have been revoked while the body came in) */
    if (!public_route(method, url) && !server_auth(s, c, &x))
        return EARLY_ERROR(NS_ERR_AUTH, NULL, NULL, "%s", AUTH_MESSAGE);
    if (!rt) {
        if (path_known)
            return send_method_not_allowed(c, ant ? ERR_ANTHROPIC : oll ? ERR_OLLAMA : ERR_OPENAI, method, url);
        return EARLY_ERROR(NS_ERR_NOT_FOUND, NULL, "unknown_url", "Invalid URL (%s %.200s)", method, url);
    }
    if (r->early_status)
        return EARLY_ERROR(r->early_status, NULL, NULL, "%s", r->early_msg);
    /* JSON routes take application/json only (issue 27.10): without it, or as text/plain, a
     * body is a CORS "simple" request a web page can send without a preflight. Ollama reads
     * any body as JSON (its documented calls are `curl -d`, form-encoded); a page cannot
     * reach it either: browsers send Origin, which httpguard refuses unless listed. */
    if (rt->body == BODY_JSON && r->body.len && !oll && !content_type_is(c, "application/json"))
        return EARLY_ERROR(NS_ERR_MEDIA_TYPE, NULL, NULL, "The request body must be application/json.");
    /* JSON is UTF-8 (RFC 8259); cJSON would pass other bytes through to the engine and
     * the store, so they are refused here, once, for every JSON route */
    if (rt->body == BODY_JSON && r->body.len) {
        size_t ok = utf8_valid_prefix(r->body.p, r->body.len);
        if (ok != r->body.len)
            return EARLY_ERROR(NS_ERR_INVALID, NULL, NULL, "The request body is not valid UTF-8 (byte %zu).", ok + 1);
    }
#undef EARLY_ERROR
#undef AUTH_MESSAGE
    x.r = r;
    return rt->fn(&x);
}

/* quota.h's batch_left: what a queued batch still holds of its estimate, by the share of
 * its lines not finished (all of it while it validates); 0 once it ends or is cancelled */
static int64_t server_batch_left(void *ud, const char *batch_id, int64_t estimate)
{
    struct server *s = ud;
    struct store_batch b;
    int rc = s->ops->batch_get(s->st, batch_id, &b);
    if (rc == NS_ERR_NOT_FOUND)
        return -1;
    if (rc)
        return estimate; /* the store cannot say: keep counting it */
    int64_t left = 0;
    if (!store_batch_status_terminal(b.status) && b.status != SB_CANCELLING)
        left = b.total > 0 ? estimate * (b.total - b.completed - b.failed) / b.total : estimate;
    store_batch_release(&b);
    return left;
}

int server_start(struct server_params p, struct store *st, const struct store_ops *ops, struct sched **scheds,
                 int n_scheds, struct batchmgr *bm, struct server **out, char *err, size_t errlen)
{
    int rc = NS_ERR_NOMEM;
    struct server *s = calloc(1, sizeof(*s));
    *out = NULL;
    if (!s)
        return NS_ERR_NOMEM;
    s->p = p;
    s->data_dir = strdup(p.data_dir);
    s->api_key = p.api_key ? strdup(p.api_key) : NULL;
    if (s->api_key)
        sha256_hex(s->api_key, strlen(s->api_key), s->api_key_hash);
    s->no_auth = p.no_auth;
    s->st = st;
    s->ops = ops;
    s->scheds = scheds;
    s->n_scheds = n_scheds;
    s->bm = bm;
    struct quota_params qp = quota_default_params();
    qp.batch_left = server_batch_left;
    qp.batch_ud = s;
    if (!s->data_dir || (p.api_key && !s->api_key) || quota_create(qp, &s->quota))
        goto out;
    if (!(s->keys = keycache_init(keycache_default_params(), st, ops)))
        goto out;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)p.port);
    if (inet_pton(AF_INET, p.host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "cannot listen on '%s': not an IPv4 address", p.host);
        rc = NS_ERR_INVALID;
        goto out;
    }
    /* MHD_USE_ITC: server_drain() needs it to stop listening while connections go on */
    bool tls = p.tls_cert && p.tls_key;
    if (tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(err, errlen, "this libmicrohttpd was built without TLS: --tls-cert/--tls-key cannot be used");
        rc = NS_ERR_UNSUPPORTED;
        goto out;
    }
    /* Event-driven: a small pool of threads, each with its own epoll set (MHD_USE_AUTO picks
     * epoll on Linux), serves every connection; a request waiting for its model holds a
     * suspended connection, not a thread (job_suspend). A thread per connection cost each
     * forwarded request two thread wake-ups (bench/forward.mjs). MHD_USE_ITC: resumes and
     * server_drain() wake the pool. */
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_AUTO |
                         MHD_USE_ERROR_LOG | (tls ? MHD_USE_TLS : 0);
    unsigned int pool = p.http_threads > 0 ? (unsigned)p.http_threads : (unsigned)server_default_threads();
    /* the TLS options end the list early when there is no certificate */
    struct httpguard_params gp = httpguard_default_params();
    gp.allowed_hosts = p.allowed_hosts;
    gp.cors_origins = p.cors_origins;
    gp.header_timeout = p.header_timeout;
    if (!(s->guard = httpguard_start(gp))) {
        rc = NS_ERR_NOMEM;
        goto out;
    }
    unsigned max_conn = p.max_connections ? p.max_connections : 4096;
    /* one address may hold a quarter of the connections: a slow or hostile client cannot
     * take them all (behind a proxy every client is one address: raise it there) */
    unsigned per_ip = p.max_per_ip ? p.max_per_ip : max_conn / 4 > 16 ? max_conn / 4 : 16;
    s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                              MHD_OPTION_NOTIFY_COMPLETED, req_completed, NULL, MHD_OPTION_THREAD_POOL_SIZE, pool,
                              MHD_OPTION_UNESCAPE_CALLBACK, url_unescape, NULL,
                              MHD_OPTION_NOTIFY_CONNECTION, httpguard_notify, s->guard,
                              MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip,
                              MHD_OPTION_CONNECTION_TIMEOUT,
                              (unsigned int)(p.idle_timeout ? p.idle_timeout : 60), MHD_OPTION_CONNECTION_LIMIT,
                              max_conn,
                              tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, p.tls_key, MHD_OPTION_HTTPS_MEM_CERT,
                              p.tls_cert, MHD_OPTION_END);
    if (!s->mhd) {
        if (tls)
            snprintf(err, errlen, "cannot listen on %s:%d with TLS (port in use, or a certificate and key that "
                                  "GnuTLS cannot load or that do not match)", p.host, p.port);
        else
            snprintf(err, errlen, "cannot listen on %s:%d (port in use?)", p.host, p.port);
        rc = NS_ERR_IO;
        goto out;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : p.port;
    pthread_mutex_init(&s->smu, NULL);
    pthread_cond_init(&s->scv, NULL);
    s->ring = calloc(SAMPLES, sizeof(*s->ring));
    s->sampler_started = s->ring && pthread_create(&s->sampler, NULL, sampler_thread, s) == 0;
    if (!s->sampler_started)
        log_event(LOG_WARN, NULL, NULL, "no dashboard history (cannot start the sampler)");
    *out = s;
    return NS_OK;
out:
    if (rc == NS_ERR_NOMEM)
        snprintf(err, errlen, "out of memory");
    httpguard_stop(s->guard);
    keycache_free(s->keys);
    quota_free(s->quota);
    free(s->data_dir);
    free(s->api_key);
    free(s);
    return rc;
}

int server_port(const struct server *s) { return s->port; }

void server_drain(struct server *s)
{
    if (atomic_exchange(&s->draining, true))
        return;
    MHD_socket fd = MHD_quiesce_daemon(s->mhd);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

int server_inflight(struct server *s) { return atomic_load(&s->inflight); }

void server_stop(struct server *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->mhd);
    httpguard_stop(s->guard);
    if (s->sampler_started) {
        pthread_mutex_lock(&s->smu);
        s->sampler_stop = true;
        pthread_cond_broadcast(&s->scv);
        pthread_mutex_unlock(&s->smu);
        pthread_join(s->sampler, NULL);
    }
    pthread_mutex_destroy(&s->smu);
    pthread_cond_destroy(&s->scv);
    free(s->ring);
    quota_free(s->quota);
    keycache_free(s->keys);
    free(s->data_dir);
    free(s->api_key);
    free(s);
}
