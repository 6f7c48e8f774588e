/*
 * batches.c — the Batch API: create (validated, quota-admitted), get, list, cancel,
 * partial output, retry; and deferred requests (server_int.h).
 */
#include "server_int.h"
#include "../sched/route.h"

/* ---- batches ------------------------------------------------------------------------ */

/* The batch queue budget (quota.h): the estimate of a new batch's input (the file at path,
 * or jsonl in memory) against the key's enqueued batch tokens. NS_OK, NS_ERR_QUOTA_TOKENS
 * (*why says why), or NS_ERR_IO (the file cannot be read). */
int batches_quota_admit(struct route_ctx *x, const char *batch_id, const char *path, const struct buf *jsonl,
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

enum MHD_Result batches_create(struct route_ctx *x)
{
    cJSON *body = cJSON_ParseWithLength(x->r->body.p ? x->r->body.p : "", x->r->body.len);
    struct store_batch b;
    memset(&b, 0, sizeof(b));
    enum MHD_Result ret;
    if (!cJSON_IsObject(body)) {
        ret = respond_oai_error(x->c, NS_ERR_INVALID, NULL, NULL, "The body must be a JSON object.");
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
            ret = respond_oai_error(x->c, NS_ERR_INVALID, f->string, NULL, "Unrecognized request argument supplied: %.64s",
                             f->string);
            goto out;
        }
    }
    if (!cJSON_IsString(fid)) {
        ret = respond_oai_error(x->c, NS_ERR_INVALID, "input_file_id", NULL, "Missing required parameter: 'input_file_id'.");
        goto out;
    }
    if (!cJSON_IsString(ep)) {
        ret = respond_oai_error(x->c, NS_ERR_INVALID, "endpoint", NULL, "Missing required parameter: 'endpoint'.");
        goto out;
    }
    /* an OpenAI batch takes the batch endpoints whose lines speak OpenAI (proto/dialect.h) */
    const struct dialect *epd = batchfile_url_of(ep->valuestring) ? dialect_of_batch(ep->valuestring, false) : NULL;
    if (epd != &dialect_openai && epd != &dialect_responses) {
        ret = respond_oai_error(x->c, NS_ERR_INVALID, "endpoint", "unsupported_endpoint",
                         "Invalid value for 'endpoint': '%.64s'. This server supports '/v1/chat/completions', "
                         "'/v1/completions', '/v1/embeddings' and '/v1/responses'.",
                         ep->valuestring);
        goto out;
    }
    if (!cJSON_IsString(win)) {
        ret = respond_oai_error(x->c, NS_ERR_INVALID, "completion_window", NULL,
                         "Missing required parameter: 'completion_window'.");
        goto out;
    }
    int64_t window;
    if (batchmgr_parse_window(win->valuestring, &window) || strlen(win->valuestring) >= sizeof(b.completion_window)) {
        ret = respond_oai_error(x->c, NS_ERR_INVALID, "completion_window", NULL,
                         "Invalid value for 'completion_window': '%.20s'. Supported values are: '24h' (and, as a "
                         "nightshift extension, durations like '90m' or '600s').",
                         win->valuestring);
        goto out;
    }
    if (md && !cJSON_IsNull(md)) {
        if (!cJSON_IsObject(md) || cJSON_GetArraySize(md) > 16) {
            ret = respond_oai_error(x->c, NS_ERR_INVALID, "metadata", NULL,
                             "Invalid 'metadata': expected an object of at most 16 string pairs.");
            goto out;
        }
        const cJSON *kv;
        cJSON_ArrayForEach(kv, md)
        {
            if (strlen(kv->string) > 64 || !cJSON_IsString(kv) || strlen(kv->valuestring) > 512) {
                ret = respond_oai_error(x->c, NS_ERR_INVALID, "metadata", NULL,
                                 "Invalid 'metadata': keys are at most 64 characters and values strings of at most "
                                 "512 characters.");
                goto out;
            }
        }
        const cJSON *wu = cJSON_GetObjectItemCaseSensitive(md, "webhook_url");
        char why[200];
        if (wu && !webhook_url_ok(wu->valuestring, why, sizeof(why))) {
            ret = respond_oai_error(x->c, NS_ERR_INVALID, "metadata", NULL, "Invalid 'metadata.webhook_url': %s.", why);
            goto out;
        }
        if (wu && !x->srv->p.webhooks) {
            ret = respond_oai_error(x->c, NS_ERR_INVALID, "metadata", NULL,
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
                ret = respond_oai_error(x->c, NS_ERR_INVALID, "metadata", NULL,
                                 "Invalid 'metadata.not_before': expected Unix seconds as a string.");
                goto out;
            }
            b.not_before = v;
        }
        /* the deadline spill-over plans for (sched/route.h) */
        const cJSON *dl = cJSON_GetObjectItemCaseSensitive(md, "deadline");
        double dlt = 0;
        if (dl && route_parse_time(dl->valuestring, &dlt) != NS_OK) {
            ret = respond_oai_error(x->c, NS_ERR_INVALID, "metadata", NULL,
                                    "Invalid 'metadata.deadline': expected an RFC 3339 date-time with an offset "
                                    "(\"2026-12-07T10:00:00Z\") or Unix seconds as a string.");
            goto out;
        }
        b.metadata = cJSON_PrintUnformatted(md);
    }
    if (oea && !cJSON_IsNull(oea)) {
        const cJSON *anchor = cJSON_GetObjectItemCaseSensitive(oea, "anchor");
        const cJSON *secs = cJSON_GetObjectItemCaseSensitive(oea, "seconds");
        if (!cJSON_IsString(anchor) || strcmp(anchor->valuestring, "created_at") || !cJSON_IsNumber(secs) ||
            secs->valuedouble < 3600 || secs->valuedouble > 2592000) {
            ret = respond_oai_error(x->c, NS_ERR_INVALID, "output_expires_after", NULL,
                             "Invalid 'output_expires_after': expected {\"anchor\": \"created_at\", \"seconds\": "
                             "3600 to 2592000}.");
            goto out;
        }
        b.output_expires_after = (int64_t)secs->valuedouble;
    }
    struct store_file file;
    int rc = store_file_get(x->srv->st, fid->valuestring, &file);
    if (rc == NS_OK && (!files_owner_ok(x, file.owner) || files_expired(&file))) {
        store_file_release(&file); /* an expired input is gone, as the Files API shows it */
        rc = NS_ERR_NOT_FOUND;
    }
    if (rc) {
        ret = respond_oai_error(x->c, NS_ERR_NOT_FOUND, "input_file_id", NULL, "No such File object: %.100s", fid->valuestring);
        goto out;
    }
    char purpose[32];
    snprintf(purpose, sizeof(purpose), "%s", file.purpose);
    oai_make_id(b.id, sizeof(b.id), "batch_");
    struct quota_refusal why;
    int qrc = strcmp(purpose, "batch") == 0 ? batches_quota_admit(x, b.id, file.path, NULL, &why) : NS_OK;
    store_file_release(&file);
    if (strcmp(purpose, "batch") != 0) {
        ret = respond_oai_error(x->c, NS_ERR_INVALID, "input_file_id", NULL,
                         "The file %.100s was uploaded with purpose '%s'; a batch needs purpose 'batch'.",
                         fid->valuestring, purpose);
        goto out;
    }
    if (qrc == NS_ERR_QUOTA_TOKENS) {
        ret = respond_quota_refusal(x->c, &dialect_openai, &why);
        goto out;
    }
    if (qrc) {
        ret = respond_oai_error(x->c, qrc, "input_file_id", NULL, "cannot read the input file %.100s", fid->valuestring);
        goto out;
    }
    snprintf(b.owner, sizeof(b.owner), "%s", x->owner);
    snprintf(b.endpoint, sizeof(b.endpoint), "%s", ep->valuestring);
    snprintf(b.input_file_id, sizeof(b.input_file_id), "%s", fid->valuestring);
    snprintf(b.completion_window, sizeof(b.completion_window), "%s", win->valuestring);
    b.status = SB_VALIDATING;
    b.created_at = time(NULL);
    b.expires_at = b.created_at + window;
    if ((x->store_rc = store_batch_insert(x->srv->st, &b))) {
        ret = respond_oai_error(x->c, respond_store_status(x->store_rc), NULL, NULL, "cannot record the batch");
        goto out;
    }
    batchmgr_kick(x->srv->bm);
    ret = respond_json(x->c, 200, respond_batch_json(x->srv, &b));
out:
    store_batch_release(&b);
    cJSON_Delete(body);
    return ret;
}

/* the batch x->ids[0] if the caller may see it (NS_ERR_NOT_FOUND otherwise) */
static int owned_batch_get(struct route_ctx *x, struct store_batch *b)
{
    int rc = store_batch_get(x->srv->st, x->ids[0], b);
    if (rc == NS_OK && !files_owner_ok(x, b->owner)) {
        store_batch_release(b);
        rc = NS_ERR_NOT_FOUND;
    }
    return rc;
}

static int batch_lookup(struct route_ctx *x, struct store_batch *b) { return owned_batch_get(x, b); }

static enum MHD_Result batch_not_found(struct route_ctx *x, int rc)
{
    if (rc == NS_ERR_NOT_FOUND)
        return respond_oai_error(x->c, NS_ERR_NOT_FOUND, "batch_id", NULL, "No such Batch object: %.100s", x->ids[0]);
    return respond_oai_error(x->c, rc, NULL, NULL, "cannot read the batch");
}

enum MHD_Result batches_get(struct route_ctx *x)
{
    struct store_batch b;
    int rc = batch_lookup(x, &b);
    if (rc)
        return batch_not_found(x, rc);
    cJSON *o = respond_batch_json(x->srv, &b);
    store_batch_release(&b);
    return respond_json(x->c, 200, o);
}

enum MHD_Result batches_list(struct route_ctx *x)
{
    struct store_list_page pg = {.after = server_query(x, "after"), .desc = true, .endpoint = dialect_anthropic.batch_endpoint,
                                 .endpoint_not = true, .owner = files_owner_filter(x)};
    if (server_query_limit(x, 1, 100, 20, &pg.limit))
        return respond_oai_error(x->c, NS_ERR_INVALID, "limit", NULL, "Invalid 'limit': expected an integer from 1 to 100.");
    struct store_batch *bs = NULL;
    int n = 0;
    bool more = false;
    if ((x->store_rc = store_batch_list(x->srv->st, &pg, &bs, &n, &more)))
        return respond_oai_error(x->c, respond_store_status(x->store_rc), NULL, NULL, "cannot list batches");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(d, respond_batch_json(x->srv, &bs[i]));
    respond_add_str_or_null(o, "first_id", n ? bs[0].id : NULL);
    respond_add_str_or_null(o, "last_id", n ? bs[n - 1].id : NULL);
    cJSON_AddBoolToObject(o, "has_more", more);
    for (int i = 0; i < n; i++)
        store_batch_release(&bs[i]);
    free(bs);
    return respond_json(x->c, 200, o);
}

/* Move a validating or in-progress batch to cancelling: a compare-and-set against the batch
 * manager moving it on at the same time, retried on a fresh read. On return b holds the
 * batch as it now is (any status: ended ones are left alone). NS_ERR_UNAVAILABLE when it
 * kept changing under us. */
/* ask for a batch's cancellation (b: as read, updated to what was stored): NS_OK also when
 * it had ended already (b->status says), NS_ERR_UNAVAILABLE while it keeps changing */
int batches_request_cancel(struct server *srv, struct store_batch *b)
{
    char id[48];
    snprintf(id, sizeof(id), "%s", b->id);
    for (int tries = 0; tries < 20; tries++) {
        if (b->status != SB_VALIDATING && b->status != SB_IN_PROGRESS)
            return NS_OK;
        enum store_batch_status was = b->status;
        b->status = SB_CANCELLING;
        b->cancelling_at = time(NULL);
        int rc = store_batch_update(srv->st, b, was);
        if (rc == NS_OK) {
            batchmgr_kick(srv->bm);
            return NS_OK;
        }
        store_batch_release(b);
        if (rc != NS_ERR_CONFLICT || store_batch_get(srv->st, id, b) != NS_OK) {
            memset(b, 0, sizeof(*b));
            return NS_ERR_IO;
        }
    }
    return NS_ERR_UNAVAILABLE;
}

enum MHD_Result batches_cancel(struct route_ctx *x)
{
    struct store_batch b;
    int rc = batch_lookup(x, &b);
    if (rc)
        return batch_not_found(x, rc);
    rc = batches_request_cancel(x->srv, &b);
    if (rc) {
        store_batch_release(&b);
        return rc == NS_ERR_UNAVAILABLE ? respond_oai_error(x->c, rc, NULL, NULL, "the batch is changing state; try again")
                                        : respond_oai_error(x->c, NS_ERR_IO, NULL, NULL, "cannot record the cancellation");
    }
    if (b.status != SB_CANCELLING) {
        enum MHD_Result ret = respond_oai_error(x->c, NS_ERR_CONFLICT, NULL, "batch_not_cancellable",
                                         "Cannot cancel a batch with status '%s'.", store_batch_status_name(b.status));
        store_batch_release(&b);
        return ret;
    }
    cJSON *o = respond_batch_json(x->srv, &b);
    store_batch_release(&b);
    return respond_json(x->c, 200, o);
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
        return respond_oai_error(x->c, NS_ERR_NOMEM, NULL, NULL, "out of memory");
    rc = store_lines_export(x->srv->st, x->ids[0], ok ? m : NULL, ok ? NULL : m);
    fclose(m);
    if (rc) {
        free(data);
        return respond_oai_error(x->c, rc, NULL, NULL, "cannot read the batch's results");
    }
    return respond_text(x->c, 200, "application/jsonl", data);
}

enum MHD_Result batches_output(struct route_ctx *x) { return batch_partial(x, true); }
enum MHD_Result batches_errors(struct route_ctx *x) { return batch_partial(x, false); }

/* extension: a new batch from the failed and expired lines of an ended batch */
enum MHD_Result batches_retry(struct route_ctx *x)
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
        ret = respond_oai_error(x->c, NS_ERR_CONFLICT, NULL, "batch_not_retryable",
                         "Only a completed, expired or cancelled batch can be retried; this one is '%s'.",
                         store_batch_status_name(b.status));
        store_batch_release(&b);
        return ret;
    }
    if (store_file_get(x->srv->st, b.input_file_id, &in)) {
        store_batch_release(&b);
        return respond_oai_error(x->c, NS_ERR_CONFLICT, "input_file_id", NULL,
                          "The input file of this batch was deleted; it cannot be retried.");
    }
    if ((x->store_rc = store_lines_failed(x->srv->st, b.id, &lines, &n))) {
        ret = respond_oai_error(x->c, respond_store_status(x->store_rc), NULL, NULL, "cannot read the batch's lines");
        goto out;
    }
    if (n == 0) {
        ret = respond_oai_error(x->c, NS_ERR_CONFLICT, NULL, "nothing_to_retry", "The batch has no failed or expired lines.");
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
        ret = respond_oai_error(x->c, rc, NULL, NULL, "cannot write the retry's input file");
        goto out;
    }
    oai_make_id(nb.id, sizeof(nb.id), "batch_");
    struct quota_refusal why;
    if ((rc = batches_quota_admit(x, nb.id, path, NULL, &why))) {
        unlink(path);
        ret = rc == NS_ERR_QUOTA_TOKENS ? respond_quota_refusal(x->c, &dialect_openai, &why)
                                        : respond_oai_error(x->c, rc, NULL, NULL, "cannot read the retry's input file");
        goto out;
    }
    snprintf(nf.owner, sizeof(nf.owner), "%s", b.owner);
    snprintf(nf.purpose, sizeof(nf.purpose), "batch");
    snprintf(name, sizeof(name), "%s_retry.jsonl", b.id);
    nf.filename = name;
    nf.bytes = size;
    nf.created_at = time(NULL);
    nf.path = path;
    if ((x->store_rc = store_file_insert(x->srv->st, &nf))) {
        unlink(path);
        ret = respond_oai_error(x->c, respond_store_status(x->store_rc), NULL, NULL, "cannot record the retry's input file");
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
    if ((x->store_rc = store_batch_insert(x->srv->st, &nb))) {
        ret = respond_oai_error(x->c, respond_store_status(x->store_rc), NULL, NULL, "cannot record the retry batch");
        goto out;
    }
    batchmgr_kick(x->srv->bm);
    ret = respond_json(x->c, 200, respond_batch_json(x->srv, &nb));
out:
    for (int i = 0; i < n; i++)
        store_line_release(&lines[i]);
    free(lines);
    store_file_release(&in);
    store_batch_release(&b);
    store_batch_release(&nb);
    return ret;
}

/* ---- deferred requests (nightshift extension) ---------------------------------------------
 * POST /v1/deferred/chat/completions (or /v1/deferred/completions) takes a request that may
 * wait and answers 202 with an id at once; GET /v1/deferred/{id} gives its status and, once
 * done, its response. Each is a one-line batch: durable, accounted, visible in /v1/batches,
 * cancellable there; on a provider-batch backend many of them are accumulated into one
 * upstream batch (the flush thresholds of that backend). */

#define DEFERRED_METADATA "{\"nightshift_deferred\":\"true\"}"

/* the one result line of a finished one-line batch (a deferred request, a background
 * response: its output or error file); NULL if none */
cJSON *batches_one_result(struct server *srv, const struct store_batch *b)
{
    const char *fid = b->output_file_id[0] ? b->output_file_id : b->error_file_id;
    struct store_file f;
    if (!fid[0] || store_file_get(srv->st, fid, &f) != NS_OK)
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
    respond_add_str_or_null(o, "model", b->model);
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
    cJSON *line = b->status == SB_COMPLETED ? batches_one_result(srv, b) : NULL;
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
        ret = respond_oai_error(x->c, NS_ERR_INVALID, NULL, NULL, "The request body must be a JSON object.");
    else if (!cJSON_IsString(model))
        ret = respond_oai_error(x->c, NS_ERR_INVALID, "model", NULL, "Missing required parameter: 'model'.");
    else if (!server_sched_by_model(x->srv, model->valuestring))
        ret = respond_oai_error(x->c, NS_ERR_MODEL_NOT_FOUND, "model", NULL,
                         "The model '%.100s' does not exist or you do not have access to it.", model->valuestring);
    else if (cJSON_IsTrue(stream))
        ret = respond_oai_error(x->c, NS_ERR_INVALID, "stream", NULL, "A deferred request cannot be streamed.");
    else if (msgbatches_inline_line(&jsonl, "deferred", chat ? "/v1/chat/completions" : "/v1/completions", body))
        ret = respond_oai_error(x->c, NS_ERR_NOMEM, NULL, NULL, "out of memory");
    else if ((rc = msgbatches_inline_create(x, &jsonl, 1, chat ? "/v1/chat/completions" : "/v1/completions", "batch_",
                                       "deferred_request.jsonl", DEFERRED_METADATA, &b, &why, err, sizeof(err))))
        ret = rc == NS_ERR_QUOTA_TOKENS ? respond_quota_refusal(x->c, &dialect_openai, &why)
                                        : respond_oai_error(x->c, NS_ERR_IO, NULL, NULL, "%s", err);
    else
        ret = respond_json(x->c, 202, deferred_json(x->srv, &b));
    buf_release(&jsonl);
    store_batch_release(&b);
    cJSON_Delete(body);
    return ret;
}

enum MHD_Result batches_deferred_chat(struct route_ctx *x) { return deferred_create(x, true); }
enum MHD_Result batches_deferred_completions(struct route_ctx *x) { return deferred_create(x, false); }

enum MHD_Result batches_deferred_get(struct route_ctx *x)
{
    struct store_batch b;
    if (owned_batch_get(x, &b) != NS_OK)
        return respond_oai_error(x->c, NS_ERR_NOT_FOUND, "id", NULL, "No such deferred request: %.100s", x->ids[0]);
    enum MHD_Result ret;
    if (!b.metadata || !strstr(b.metadata, "nightshift_deferred"))
        ret = respond_oai_error(x->c, NS_ERR_NOT_FOUND, "id", NULL, "No such deferred request: %.100s", x->ids[0]);
    else
        ret = respond_json(x->c, 200, deferred_json(x->srv, &b));
    store_batch_release(&b);
    return ret;
}

/* the batch, if it is a Message Batch; else a 404 in Anthropic's shape was sent */
static int ant_batch_lookup(struct route_ctx *x, struct store_batch *b, enum MHD_Result *ret)
{
    int rc = owned_batch_get(x, b);
    if (rc == NS_OK && dialect_of_batch(b->endpoint, false) != &dialect_anthropic) {
        store_batch_release(b);
        rc = NS_ERR_NOT_FOUND;
    }
    if (rc == NS_OK && store_batch_status_terminal(b->status) && b->created_at + x->srv->p.message_batch_retention < time(NULL)) {
        store_batch_release(b);
        rc = NS_ERR_NOT_FOUND; /* results are kept 29 days */
    }
    if (rc)
        *ret = rc == NS_ERR_NOT_FOUND ? respond_ant_error(x->c, NS_ERR_NOT_FOUND, "message batch %.100s not found", x->ids[0])
                                      : respond_ant_error(x->c, rc, "cannot read the batch");
    return rc;
}

enum MHD_Result batches_ant_get(struct route_ctx *x)
{
    struct store_batch b;
    enum MHD_Result ret;
    if (ant_batch_lookup(x, &b, &ret))
        return ret;
    cJSON *o = msgbatches_json(x, &b);
    store_batch_release(&b);
    return respond_json(x->c, 200, o);
}

enum MHD_Result batches_ant_list(struct route_ctx *x)
{
    struct store_list_page pg = {.after = server_query(x, "after_id"), .before = server_query(x, "before_id"), .desc = true,
                                 .endpoint = dialect_anthropic.batch_endpoint, .owner = files_owner_filter(x)};
    if (server_query_limit(x, 1, 1000, 20, &pg.limit))
        return respond_ant_error(x->c, NS_ERR_INVALID, "limit: Input should be an integer from 1 to 1000");
    if (pg.after && pg.before)
        return respond_ant_error(x->c, NS_ERR_INVALID, "give at most one of before_id and after_id");
    struct store_batch *bs = NULL;
    int n = 0;
    bool more = false;
    if ((x->store_rc = store_batch_list(x->srv->st, &pg, &bs, &n, &more)))
        return respond_ant_error(x->c, respond_store_status(x->store_rc), "cannot list batches");
    cJSON *o = cJSON_CreateObject();
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    int64_t now = time(NULL);
    for (int i = 0; i < n; i++)
        if (!(store_batch_status_terminal(bs[i].status) && bs[i].created_at + x->srv->p.message_batch_retention < now))
            cJSON_AddItemToArray(d, msgbatches_json(x, &bs[i]));
    cJSON_AddBoolToObject(o, "has_more", more);
    respond_add_str_or_null(o, "first_id", n ? bs[0].id : NULL);
    respond_add_str_or_null(o, "last_id", n ? bs[n - 1].id : NULL);
    for (int i = 0; i < n; i++)
        store_batch_release(&bs[i]);
    free(bs);
    return respond_json(x->c, 200, o);
}

enum MHD_Result batches_ant_cancel(struct route_ctx *x)
{
    struct store_batch b;
    enum MHD_Result ret;
    if (ant_batch_lookup(x, &b, &ret))
        return ret;
    int rc = batches_request_cancel(x->srv, &b);
    if (rc) {
        store_batch_release(&b);
        return respond_ant_error(x->c, rc == NS_ERR_UNAVAILABLE ? rc : NS_ERR_IO, "cannot record the cancellation");
    }
    /* canceling an ended or canceling batch returns it as it is, like Anthropic */
    cJSON *o = msgbatches_json(x, &b);
    store_batch_release(&b);
    return respond_json(x->c, 200, o);
}

enum MHD_Result batches_ant_results(struct route_ctx *x)
{
    struct store_batch b;
    enum MHD_Result ret;
    if (ant_batch_lookup(x, &b, &ret))
        return ret;
    bool ended = store_batch_status_terminal(b.status);
    store_batch_release(&b);
    if (!ended)
        return respond_ant_error(x->c, NS_ERR_INVALID, "message batch %.100s is still processing; results are "
                                                    "available once processing_status is 'ended'", x->ids[0]);
    char *data = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&data, &len);
    if (!m)
        return respond_ant_error(x->c, NS_ERR_NOMEM, "out of memory");
    int rc = store_lines_export(x->srv->st, x->ids[0], m, m);
    fclose(m);
    if (rc) {
        free(data);
        return respond_ant_error(x->c, rc, "cannot read the batch's results");
    }
    return respond_text(x->c, 200, "application/x-jsonl", data);
}

enum MHD_Result batches_ant_delete(struct route_ctx *x)
{
    struct store_batch b;
    enum MHD_Result ret;
    if (ant_batch_lookup(x, &b, &ret))
        return ret;
    if (!store_batch_status_terminal(b.status)) {
        store_batch_release(&b);
        return respond_ant_error(x->c, NS_ERR_INVALID,
                              "message batch %.100s has not ended; cancel it and wait until it ends to delete it",
                              x->ids[0]);
    }
    const char *files[3] = {b.input_file_id, b.output_file_id, b.error_file_id};
    for (int i = 0; i < 3; i++) {
        struct store_file f;
        if (files[i][0] && store_file_get(x->srv->st, files[i], &f) == NS_OK) {
            if (store_file_delete(x->srv->st, f.id) == NS_OK)
                unlink(f.path);
            store_file_release(&f);
        }
    }
    int rc = store_batch_delete(x->srv->st, b.id);
    store_batch_release(&b);
    if (rc)
        return respond_ant_error(x->c, rc, "cannot delete the batch");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", x->ids[0]);
    cJSON_AddStringToObject(o, "type", "message_batch_deleted");
    return respond_json(x->c, 200, o);
}

