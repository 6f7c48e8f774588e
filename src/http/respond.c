/*
 * respond.c — answers (server_int.h): JSON printed valid UTF-8, errors in the shape of
 * each API, the objects (files, batches) as OpenAI shows them.
 */
#include "server_int.h"

/* ---- responses ---------------------------------------------------------------------- */

/* text (freed here) as the answer */
enum MHD_Result respond_text(struct MHD_Connection *c, unsigned code, const char *type, char *text)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = httpguard_queue(c, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* len bytes (copied) as the answer */
enum MHD_Result respond_bytes(struct MHD_Connection *c, unsigned code, const char *type, const char *p, size_t len)
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
char *respond_json_print(cJSON *o)
{
    char *text = utf8_fix(cJSON_PrintUnformatted(o));
    cJSON_Delete(o);
    return text;
}

enum MHD_Result respond_json(struct MHD_Connection *c, unsigned code, cJSON *o)
{
    char *text = respond_json_print(o);
    if (!text)
        return MHD_NO;
    return respond_text(c, code, "application/json", text);
}


/* The one way an error leaves the server: body (printed and deleted here) with status's
 * HTTP code from the status table (util/status.h); x-should-retry: false where sending the
 * same request again cannot help (a 4xx but 429: the SDKs would otherwise retry a 409
 * three times, issue 31.6); Retry-After when retry_after > 0; Allow when allow. A server
 * error (5xx) is logged with the request's id, which its answer carries as x-request-id. */
static enum MHD_Result error_send(struct MHD_Connection *c, int status, cJSON *body, const char *msg,
                                  int64_t retry_after, const char *allow)
{
    int http = status_http(status);
    if (!http)
        http = 500;
    char *text = respond_json_print(body);
    if (!text)
        return MHD_NO;
    if (http >= 500) {
        const struct httpguard_request *hr = httpguard_request(c);
        log_request(http == 503 ? LOG_WARN : LOG_ERROR, hr ? hr->id : NULL, "%s: %d %s", hr ? hr->line : "", http, msg);
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (!status_retryable(status))
        MHD_add_response_header(resp, "x-should-retry", "false");
    if (retry_after > 0) {
        char v[24];
        snprintf(v, sizeof(v), "%lld", (long long)retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ret = httpguard_queue(c, (unsigned)http, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result respond_error(struct MHD_Connection *c, const struct dialect *d, int status, const char *param,
                                         const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* an error body in the shape of the API a route belongs to, with the status's HTTP code:
 * an OpenAI error object, Anthropic's (the /v1/messages routes), or Ollama's {"error"}
 * (the /api/ routes); param and code are OpenAI's only */
enum MHD_Result respond_error(struct MHD_Connection *c, const struct dialect *d, int status, const char *param,
                                         const char *code, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* the store was busy past its own retries: worth a new try in a second */
    return error_send(c, status, d->error(status, msg, param, code), msg, status == NS_ERR_BUSY ? 1 : 0, NULL);
}

enum MHD_Result respond_method_not_allowed(struct MHD_Connection *c, const struct dialect *d, const char *msg,
                                           const char *allow)
{
    return error_send(c, NS_ERR_METHOD, d->error(NS_ERR_METHOD, msg, NULL, "method_not_allowed"), msg, 0, allow);
}

/* a quota refusal (quota.h): 429 with Retry-After, in the shape of the route's API */
enum MHD_Result respond_quota_refusal(struct MHD_Connection *c, const struct dialect *d, const struct quota_refusal *why)
{
    return error_send(c, why->status, d->error(why->status, why->message, NULL, NULL), why->message, why->retry_after,
                      NULL);
}


/* ---- JSON builders ------------------------------------------------------------------ */

void respond_add_ts(cJSON *o, const char *k, int64_t v)
{
    if (v)
        cJSON_AddNumberToObject(o, k, (double)v);
    else
        cJSON_AddNullToObject(o, k);
}

void respond_add_str_or_null(cJSON *o, const char *k, const char *v)
{
    if (v && *v)
        cJSON_AddStringToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

cJSON *respond_file_json(const struct store_file *f)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", f->id);
    cJSON_AddStringToObject(o, "object", "file");
    cJSON_AddNumberToObject(o, "bytes", (double)f->bytes);
    cJSON_AddNumberToObject(o, "created_at", (double)f->created_at);
    respond_add_ts(o, "expires_at", f->expires_at);
    cJSON_AddStringToObject(o, "filename", f->filename ? f->filename : "");
    cJSON_AddStringToObject(o, "purpose", f->purpose);
    cJSON_AddStringToObject(o, "status", "processed");
    cJSON_AddNullToObject(o, "status_details");
    return o;
}


cJSON *respond_batch_json(struct server *srv, const struct store_batch *b)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", b->id);
    cJSON_AddStringToObject(o, "object", "batch");
    cJSON_AddStringToObject(o, "endpoint", b->endpoint);
    respond_add_str_or_null(o, "model", b->model);
    cJSON *errs = b->errors ? cJSON_Parse(b->errors) : NULL;
    if (errs)
        cJSON_AddItemToObject(o, "errors", errs);
    else
        cJSON_AddNullToObject(o, "errors");
    cJSON_AddStringToObject(o, "input_file_id", b->input_file_id);
    cJSON_AddStringToObject(o, "completion_window", b->completion_window);
    cJSON_AddStringToObject(o, "status", store_batch_status_name(b->status));
    respond_add_str_or_null(o, "output_file_id", b->output_file_id);
    respond_add_str_or_null(o, "error_file_id", b->error_file_id);
    respond_add_ts(o, "created_at", b->created_at);
    respond_add_ts(o, "in_progress_at", b->in_progress_at);
    respond_add_ts(o, "expires_at", b->expires_at);
    respond_add_ts(o, "finalizing_at", b->finalizing_at);
    respond_add_ts(o, "completed_at", b->completed_at);
    respond_add_ts(o, "failed_at", b->failed_at);
    respond_add_ts(o, "expired_at", b->expired_at);
    respond_add_ts(o, "cancelling_at", b->cancelling_at);
    respond_add_ts(o, "cancelled_at", b->cancelled_at);
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
    /* cost at the configured prices (--config price_input/price_output) of the backend
     * that ran each line (spill-over and fail-over: nightshift.backends), null when one that
     * ran lines has none; tokens no backend share holds (lines finished before schema 8)
     * at the batch model's */
    struct store_route *rt_rows = NULL;
    int n_rows = 0;
    if (srv->st && store_lines_routes(srv->st, b->id, &rt_rows, &n_rows) != NS_OK)
        n_rows = 0;
    double batch = 0, rt = 0;
    int64_t in_left = b->input_tokens, out_left = b->output_tokens;
    bool priced = true;
    cJSON *bk = n_rows ? cJSON_AddObjectToObject(ns, "backends") : NULL;
    for (int i = 0; i < n_rows; i++) {
        const struct store_route *r = &rt_rows[i];
        struct sched *rs = server_sched_by_model(srv, r->backend);
        struct backend *rbe = rs ? sched_backend(rs) : NULL;
        double c = rbe ? backend_cost(rbe, r->input_tokens, r->output_tokens, true) : -1;
        double crt = rbe ? backend_cost(rbe, r->input_tokens, r->output_tokens, false) : -1;
        cJSON *row = cJSON_AddObjectToObject(bk, r->backend);
        cJSON_AddNumberToObject(row, "lines", (double)(r->completed + r->failed));
        cJSON_AddNumberToObject(row, "completed", (double)r->completed);
        cJSON_AddNumberToObject(row, "failed", (double)r->failed);
        cJSON_AddNumberToObject(row, "pending", (double)r->pending);
        cJSON_AddNumberToObject(row, "running", (double)r->running);
        cJSON_AddNumberToObject(row, "input_tokens", (double)r->input_tokens);
        cJSON_AddNumberToObject(row, "output_tokens", (double)r->output_tokens);
        if (c >= 0)
            cJSON_AddNumberToObject(row, "cost_usd", c);
        else
            cJSON_AddNullToObject(row, "cost_usd");
        in_left -= r->input_tokens;
        out_left -= r->output_tokens;
        if (c >= 0) {
            batch += c;
            rt += crt;
        } else if (r->input_tokens || r->output_tokens) {
            priced = false;
        }
    }
    free(rt_rows);
    struct sched *s = b->model ? server_sched_by_model(srv, b->model) : NULL;
    struct backend *be = s ? sched_backend(s) : NULL;
    if (in_left > 0 || out_left > 0 || n_rows == 0) {
        double c = be ? backend_cost(be, in_left > 0 ? in_left : 0, out_left > 0 ? out_left : 0, true) : -1;
        double crt = be ? backend_cost(be, in_left > 0 ? in_left : 0, out_left > 0 ? out_left : 0, false) : -1;
        if (c >= 0) {
            batch += c;
            rt += crt;
        } else {
            priced = false;
        }
    }
    if (!priced)
        batch = -1;
    if (batch >= 0) {
        cJSON_AddNumberToObject(ns, "cost_usd", batch);
        cJSON_AddNumberToObject(ns, "realtime_cost_usd", rt);
        cJSON_AddNumberToObject(ns, "savings_usd", rt - batch);
    } else {
        cJSON_AddNullToObject(ns, "cost_usd");
    }
    return o;
}

