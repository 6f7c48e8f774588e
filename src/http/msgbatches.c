/*
 * msgbatches.c — Anthropic Message Batches (server_int.h): inline requests written as a
 * batch input file, results in Anthropic's shape.
 */
#include "server_int.h"

/* ---- Anthropic Message Batches -------------------------------------------------------
 * The same batch machinery as OpenAI's: the requests become an input file of
 * {"custom_id","method":"POST","url":"/v1/messages","body":params} lines and a batch with
 * endpoint /v1/messages; its lines run on the schedulers of the models they name and their
 * results are Anthropic result lines. */


cJSON *msgbatches_json(const struct route_ctx *x, const struct store_batch *b)
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
        /* where the client reaches the server (issue 31.1: the listen address is wrong under
         * TLS, 0.0.0.0, a proxy or a port mapping), which the SDKs fetch results() from */
        char base[600], url[800];
        server_public_base(x, base, sizeof(base));
        snprintf(url, sizeof(url), "%s/v1/messages/batches/%s/results", base, b->id);
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
int msgbatches_inline_create(struct route_ctx *x, const struct buf *jsonl, int n, const char *endpoint,
                               const char *id_prefix, const char *filename, const char *metadata, struct store_batch *b,
                               struct quota_refusal *why, char *err, size_t errlen)
{
    struct server *srv = x->srv;
    const char *owner = x->owner;
    struct store_file f;
    memset(&f, 0, sizeof(f));
    char path[4096] = "";
    oai_make_id(b->id, sizeof(b->id), id_prefix);
    int rc = batches_quota_admit(x, b->id, NULL, jsonl, why);
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
    if (store_file_insert(srv->st, &f)) {
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
    if (store_batch_insert(srv->st, b)) {
        snprintf(err, errlen, "cannot record the batch");
        goto out;
    }
    batchmgr_kick(srv->bm);
    rc = NS_OK;
out:
    return rc;
}

/* one request line of an inline batch, appended to jsonl */
int msgbatches_inline_line(struct buf *jsonl, const char *custom_id, const char *url, const cJSON *body)
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

enum MHD_Result msgbatches_create(struct route_ctx *x)
{
    cJSON *body = cJSON_ParseWithLength(x->r->body.p ? x->r->body.p : "", x->r->body.len);
    struct store_batch b;
    struct buf jsonl;
    memset(&b, 0, sizeof(b));
    buf_init(&jsonl, 1u << 30);
    enum MHD_Result ret;
    const cJSON *reqs = cJSON_GetObjectItemCaseSensitive(body, "requests");
    if (!cJSON_IsObject(body)) {
        ret = respond_ant_error(x->c, NS_ERR_INVALID, "the request body must be a JSON object");
        goto out;
    }
    /* cJSON cuts strings at a NUL: "b\u0000x" would be stored as "b" (issue 27.13) */
    long nul_at = jsonscan_nul(x->r->body.p, x->r->body.len, NULL, NULL);
    if (nul_at >= 0) {
        ret = respond_ant_error(x->c, NS_ERR_INVALID,
                             "requests: a string contains a NUL character (\\u0000, byte %ld of the body), which "
                             "cannot be stored in a custom_id or passed to the model",
                             nul_at + 1);
        goto out;
    }
    if (!cJSON_IsArray(reqs) || cJSON_GetArraySize(reqs) == 0) {
        ret = respond_ant_error(x->c, NS_ERR_INVALID, "requests: a non-empty list of {custom_id, params} is required");
        goto out;
    }
    if (cJSON_GetArraySize(reqs) > ANT_MAX_REQUESTS) {
        ret = respond_ant_error(x->c, NS_ERR_TOO_LARGE, "requests: at most %d requests per batch", ANT_MAX_REQUESTS);
        goto out;
    }
    int i = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, reqs)
    {
        const cJSON *cid = cJSON_GetObjectItemCaseSensitive(r, "custom_id");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(r, "params");
        if (!cJSON_IsObject(r) || !cJSON_IsString(cid) || !cJSON_IsObject(params)) {
            ret = respond_ant_error(x->c, NS_ERR_INVALID, "requests.%d: custom_id (a string) and params (an object) are required", i);
            goto out;
        }
        size_t cl = strlen(cid->valuestring);
        if (cl < 1 || cl > 64) {
            ret = respond_ant_error(x->c, NS_ERR_INVALID, "requests.%d.custom_id: 1 to 64 characters", i);
            goto out;
        }
        if (msgbatches_inline_line(&jsonl, cid->valuestring, dialect_anthropic.batch_endpoint, params)) {
            ret = respond_ant_error(x->c, NS_ERR_NOMEM, "out of memory");
            goto out;
        }
        i++;
    }
    char err[256];
    struct quota_refusal why;
    int rc = msgbatches_inline_create(x, &jsonl, i, dialect_anthropic.batch_endpoint, "msgbatch_", "message_batch_requests.jsonl", NULL, &b,
                                 &why, err, sizeof(err));
    if (rc == NS_ERR_QUOTA_TOKENS)
        ret = respond_quota_refusal(x->c, &dialect_anthropic, &why);
    else if (rc)
        ret = respond_ant_error(x->c, NS_ERR_IO, "%s", err);
    else
        ret = respond_json(x->c, 200, msgbatches_json(x, &b));
out:
    buf_release(&jsonl);
    store_batch_release(&b);
    cJSON_Delete(body);
    return ret;
}

