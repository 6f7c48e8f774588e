/*
 * responses.c — the Responses API's objects (server_int.h): what is stored of each
 * response (store: true, OpenAI's default), the conversation previous_response_id
 * continues, GET / DELETE / input_items / cancel, and background responses.
 *
 * DESIGN
 * generate.c runs a real-time response like a chat completion (its dialect is
 * proto/responses.h) and hands the finished object here to keep (responses_save). A
 * background response is a one-line batch on the batch lane (the same machinery as a
 * deferred request, batches.c): durable, requeued after a crash, cancellable, accounted.
 * Its stored row says "queued" until someone reads it; a read of a row whose batch has
 * ended takes the batch's result line, puts the response's own identity back into it (id,
 * created_at, background, previous_response_id: the line ran as a self-contained request)
 * and writes the row once (compare-and-set on its status), so the batch's output is read
 * at most a few times and the row is the answer from then on.
 *
 * A row's request text is responses_record()'s {history, input}, with "batch_id" for a
 * background one.
 *
 * THREADS: MHD's threads; the store serialises.
 */
#include "server_int.h"

/* a stored response's JSON, the row with it */
struct rs_row {
    struct store_response row;
    bool have;
};

static void rs_row_release(struct rs_row *r)
{
    if (r->have)
        store_response_release(&r->row);
    r->have = false;
}

/* the batch behind a background row ("" when none) */
static void rs_batch_id(const struct store_response *row, char *out, size_t n)
{
    out[0] = 0;
    cJSON *rec = cJSON_Parse(row->request ? row->request : "");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(rec, "batch_id");
    if (cJSON_IsString(b))
        snprintf(out, n, "%s", b->valuestring);
    cJSON_Delete(rec);
}

/* the object of a background row whose batch has ended: its result line's body with the
 * response's identity put back, or a failed/cancelled object; NULL while it runs
 * (*status then says queued or in_progress) */
static cJSON *rs_from_batch(struct server *srv, const struct store_response *row, enum store_response_status *status)
{
    char bid[48];
    struct store_batch b;
    rs_batch_id(row, bid, sizeof(bid));
    if (!bid[0] || store_batch_get(srv->st, bid, &b) != NS_OK) {
        *status = SR_FAILED;
        return NULL;
    }
    cJSON *obj = NULL;
    switch (b.status) {
    case SB_VALIDATING:
        *status = SR_QUEUED;
        break;
    case SB_IN_PROGRESS:
    case SB_FINALIZING:
        *status = SR_IN_PROGRESS;
        break;
    case SB_COMPLETED: {
        cJSON *line = batches_one_result(srv, &b);
        const cJSON *resp = cJSON_GetObjectItemCaseSensitive(line, "response");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(resp, "status_code");
        cJSON *body = cJSON_DetachItemFromObjectCaseSensitive((cJSON *)resp, "body");
        if (cJSON_IsNumber(code) && code->valueint == 200 && cJSON_IsObject(body)) {
            obj = body;
        } else {
            /* an error line: the body's error, or the line's own */
            cJSON *o = cJSON_Parse(row->body ? row->body : "{}");
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(body, "error");
            if (!e)
                e = cJSON_GetObjectItemCaseSensitive(line, "error");
            const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
            const cJSON *ec = cJSON_GetObjectItemCaseSensitive(e, "code");
            cJSON *err = cJSON_CreateObject();
            cJSON_AddStringToObject(err, "code", cJSON_IsString(ec) ? ec->valuestring : "server_error");
            cJSON_AddStringToObject(err, "message", cJSON_IsString(msg) ? msg->valuestring : "the response failed");
            cJSON_ReplaceItemInObjectCaseSensitive(o, "error", err);
            cJSON_ReplaceItemInObjectCaseSensitive(o, "status", cJSON_CreateString("failed"));
            cJSON_Delete(body);
            obj = o;
        }
        cJSON_Delete(line);
        break;
    }
    default: {
        /* failed, expired, cancelled: the queued object with that status */
        obj = cJSON_Parse(row->body ? row->body : "{}");
        bool cancelled = b.status == SB_CANCELLING || b.status == SB_CANCELLED;
        cJSON_ReplaceItemInObjectCaseSensitive(obj, "status", cJSON_CreateString(cancelled ? "cancelled" : "failed"));
        if (!cancelled) {
            cJSON *err = cJSON_CreateObject();
            cJSON_AddStringToObject(err, "code", b.status == SB_EXPIRED ? "expired" : "server_error");
            cJSON_AddStringToObject(err, "message", b.status == SB_EXPIRED ? "the response expired before it ran"
                                                                           : "the response could not be run");
            cJSON_ReplaceItemInObjectCaseSensitive(obj, "error", err);
        }
        break;
    }
    }
    store_batch_release(&b);
    if (!obj)
        return NULL;
    /* the response's identity, as the client knows it */
    cJSON *was = cJSON_Parse(row->body ? row->body : "{}");
    static const char *const keep[] = {"id", "created_at", "background", "previous_response_id", "store", "metadata"};
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(was, keep[i]);
        if (v)
            cJSON_ReplaceItemInObjectCaseSensitive(obj, keep[i], cJSON_Duplicate(v, 1));
    }
    cJSON_Delete(was);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(obj, "status");
    int s = cJSON_IsString(st) ? store_response_status_of(st->valuestring) : -1;
    *status = s < 0 ? SR_FAILED : (enum store_response_status)s;
    return obj;
}

/* the row of x->ids[0] (or id), the caller's project's (else NS_ERR_NOT_FOUND), brought up
 * to date from its batch when it is a background one still open */
static int rs_lookup(struct route_ctx *x, const char *id, struct rs_row *out)
{
    memset(out, 0, sizeof(*out));
    int rc = store_response_get(x->srv->st, id, &out->row);
    if (rc)
        return rc;
    out->have = true;
    if (!files_owner_ok(x, out->row.owner)) {
        rs_row_release(out);
        return NS_ERR_NOT_FOUND;
    }
    if (!out->row.background || (out->row.status != SR_QUEUED && out->row.status != SR_IN_PROGRESS))
        return NS_OK;
    enum store_response_status now;
    cJSON *obj = rs_from_batch(x->srv, &out->row, &now);
    if (now == out->row.status && !obj)
        return NS_OK;
    if (!obj) {
        /* queued -> in_progress: the stored object says so too */
        obj = cJSON_Parse(out->row.body ? out->row.body : "{}");
        cJSON_ReplaceItemInObjectCaseSensitive(obj, "status", cJSON_CreateString(store_response_status_name(now)));
    }
    char *text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!text)
        return NS_ERR_NOMEM;
    struct store_response upd = out->row;
    enum store_response_status was = out->row.status;
    upd.status = now;
    upd.body = text;
    rc = store_response_update(x->srv->st, &upd, was);
    if (rc == NS_OK) {
        free(out->row.body);
        out->row.body = text;
        out->row.status = now;
        return NS_OK;
    }
    free(text);
    if (rc != NS_ERR_CONFLICT)
        return rc;
    /* someone else wrote it first (a cancel, another reader): theirs stands */
    rs_row_release(out);
    rc = store_response_get(x->srv->st, id, &out->row);
    out->have = rc == NS_OK;
    return rc;
}

static enum MHD_Result rs_not_found(struct route_ctx *x, int rc, const char *id)
{
    if (rc == NS_ERR_NOT_FOUND)
        return respond_oai_error(x->c, NS_ERR_NOT_FOUND, "response_id", NULL, "Response with id '%.100s' not found.", id);
    return respond_oai_error(x->c, respond_store_status(rc), NULL, NULL, "cannot read the stored response");
}

static enum MHD_Result rs_answer_row(struct route_ctx *x, const struct store_response *row)
{
    cJSON *o = cJSON_Parse(row->body ? row->body : "");
    if (!o)
        return respond_oai_error(x->c, NS_ERR_INTERNAL, NULL, NULL, "the stored response cannot be read");
    return respond_json(x->c, 200, o);
}

/* dialect_parse.history: previous_response_id's conversation (ud: the route_ctx) */
int responses_history(void *ud, const char *response_id, cJSON **items, struct oai_error *err)
{
    struct route_ctx *x = ud;
    struct rs_row row;
    int rc = rs_lookup(x, response_id, &row);
    if (rc == NS_ERR_NOT_FOUND)
        return oai_error_set(err, NS_ERR_NOT_FOUND, "previous_response_id",
                             "Previous response with id '%.100s' not found.", response_id);
    if (rc)
        return oai_error_set(err, respond_store_status(rc), NULL, "cannot read the previous response");
    if (row.row.status != SR_COMPLETED && row.row.status != SR_INCOMPLETE) {
        rc = oai_error_set(err, NS_ERR_INVALID, "previous_response_id",
                           "Previous response with id '%.100s' is %s; only a completed or incomplete response can "
                           "be continued.",
                           response_id, store_response_status_name(row.row.status));
    } else if (responses_conversation(row.row.request, row.row.body, items) != NS_OK) {
        rc = oai_error_set(err, NS_ERR_INTERNAL, "previous_response_id",
                           "The stored response '%.100s' cannot be read.", response_id);
    }
    rs_row_release(&row);
    return rc;
}

/* a new row for r's response: its object (status read from it), its record (batch_id: the
 * batch a background one runs as, else NULL) */
static int rs_insert(struct server *srv, const char *owner, const struct oai_request *r, const char *id,
                     int64_t created, const char *model, const cJSON *object, const char *batch_id)
{
    struct store_response row;
    memset(&row, 0, sizeof(row));
    snprintf(row.id, sizeof(row.id), "%s", id);
    snprintf(row.owner, sizeof(row.owner), "%s", owner);
    row.created_at = created;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(object, "status");
    int s = cJSON_IsString(st) ? store_response_status_of(st->valuestring) : -1;
    row.status = s < 0 ? SR_FAILED : (enum store_response_status)s;
    row.background = batch_id != NULL;
    row.model = (char *)model;
    row.previous_id = (char *)responses_request_previous(r);
    row.request = responses_record(r, batch_id);
    row.body = cJSON_PrintUnformatted(object);
    int rc = row.request && row.body ? store_response_insert(srv->st, &row) : NS_ERR_NOMEM;
    free(row.request);
    free(row.body);
    return rc;
}

void responses_save(struct server *srv, const char *owner, const struct oai_request *r, const char *id,
                    int64_t created, const char *model, const cJSON *object)
{
    int rc = rs_insert(srv, owner, r, id, created, model, object, NULL);
    if (rc) {
        char why[200];
        store_last_error(why, sizeof(why));
        log_event(LOG_WARN, model, NULL, "cannot store response %s: %s%s%s", id, status_name(rc), why[0] ? ": " : "",
                  why);
    }
}

/* A background response: a one-line batch of the request as it runs (its conversation
 * spelled out: the line has no previous_response_id) and a row that says queued. */
enum MHD_Result responses_background(struct route_ctx *x, const struct oai_request *r, const char *id,
                                     int64_t created)
{
    cJSON *line = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(r->extra_, "body"), 1);
    cJSON *input = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(r->extra_, "history"), 1);
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(r->extra_, "input"))
        cJSON_AddItemToArray(input, cJSON_Duplicate(it, 1));
    cJSON_AddItemToObject(line, "input", input);
    static const char *const drop[] = {"previous_response_id", "background", "store", "stream", "stream_options"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        cJSON_DeleteItemFromObjectCaseSensitive(line, drop[i]);
    struct buf jsonl;
    buf_init(&jsonl, 1u << 30);
    struct store_batch b;
    memset(&b, 0, sizeof(b));
    char meta[160], err[256];
    snprintf(meta, sizeof(meta), "{\"nightshift_background_response\":\"%s\"}", id);
    struct quota_refusal why;
    int rc = msgbatches_inline_line(&jsonl, "response", "/v1/responses", line) ? NS_ERR_NOMEM : NS_OK;
    cJSON_Delete(line);
    if (!rc)
        rc = msgbatches_inline_create(x, &jsonl, 1, "/v1/responses", "batch_", "background_response.jsonl", meta, &b,
                                      &why, err, sizeof(err));
    buf_release(&jsonl);
    if (rc) {
        store_batch_release(&b);
        return rc == NS_ERR_QUOTA_TOKENS ? respond_quota_refusal(x->c, &dialect_responses, &why)
                                         : respond_oai_error(x->c, rc == NS_ERR_NOMEM ? rc : NS_ERR_IO, NULL, NULL,
                                                             "%s", rc == NS_ERR_NOMEM ? "out of memory" : err);
    }
    cJSON *obj = responses_object(r, NULL, id, r->model, created, "queued");
    rc = obj ? rs_insert(x->srv, x->owner, r, id, created, r->model, obj, b.id) : NS_ERR_NOMEM;
    store_batch_release(&b);
    if (rc) {
        cJSON_Delete(obj);
        return respond_oai_error(x->c, rc == NS_ERR_NOMEM ? rc : respond_store_status(rc), NULL, NULL,
                                 "cannot store the response");
    }
    return respond_json(x->c, 200, obj);
}

/* GET /v1/responses/{id} */
enum MHD_Result responses_get(struct route_ctx *x)
{
    const char *stream = server_query(x, "stream");
    if (stream && strcmp(stream, "true") == 0)
        return respond_oai_error(x->c, NS_ERR_UNSUPPORTED, "stream", NULL,
                                 "Streaming a stored response again is not supported: read it whole.");
    struct rs_row row;
    int rc = rs_lookup(x, x->ids[0], &row);
    if (rc)
        return rs_not_found(x, rc, x->ids[0]);
    enum MHD_Result ret = rs_answer_row(x, &row.row);
    rs_row_release(&row);
    return ret;
}

/* DELETE /v1/responses/{id}: a background one still running is cancelled first */
enum MHD_Result responses_delete(struct route_ctx *x)
{
    struct rs_row row;
    int rc = rs_lookup(x, x->ids[0], &row);
    if (rc)
        return rs_not_found(x, rc, x->ids[0]);
    if (row.row.background && (row.row.status == SR_QUEUED || row.row.status == SR_IN_PROGRESS)) {
        char bid[48];
        struct store_batch b;
        rs_batch_id(&row.row, bid, sizeof(bid));
        if (bid[0] && store_batch_get(x->srv->st, bid, &b) == NS_OK) {
            batches_request_cancel(x->srv, &b);
            store_batch_release(&b);
        }
    }
    rs_row_release(&row);
    rc = store_response_delete(x->srv->st, x->ids[0]);
    if (rc)
        return rs_not_found(x, rc, x->ids[0]);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", x->ids[0]);
    cJSON_AddStringToObject(o, "object", "response.deleted");
    cJSON_AddBoolToObject(o, "deleted", true);
    return respond_json(x->c, 200, o);
}

/* GET /v1/responses/{id}/input_items?limit=&order=&after= */
enum MHD_Result responses_input_items(struct route_ctx *x)
{
    int limit;
    if (server_query_limit(x, 1, 100, 20, &limit))
        return respond_oai_error(x->c, NS_ERR_INVALID, "limit", NULL,
                                 "Invalid 'limit': expected an integer between 1 and 100.");
    const char *order = server_query(x, "order");
    if (order && strcmp(order, "asc") && strcmp(order, "desc"))
        return respond_oai_error(x->c, NS_ERR_INVALID, "order", NULL,
                                 "Invalid value for 'order': expected 'asc' or 'desc'.");
    bool asc = order && strcmp(order, "asc") == 0;
    const char *after = server_query(x, "after");
    struct rs_row row;
    int rc = rs_lookup(x, x->ids[0], &row);
    if (rc)
        return rs_not_found(x, rc, x->ids[0]);
    cJSON *items = responses_record_input(row.row.request);
    rs_row_release(&row);
    if (!items)
        return respond_oai_error(x->c, NS_ERR_INTERNAL, NULL, NULL, "the stored response cannot be read");
    int n = cJSON_GetArraySize(items), start = 0;
    cJSON *data = cJSON_CreateArray();
    /* walk in the asked order; after: start past that item */
    if (after) {
        start = -1;
        for (int i = 0; i < n && start < 0; i++) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(items, asc ? i : n - 1 - i), "id");
            if (cJSON_IsString(id) && strcmp(id->valuestring, after) == 0)
                start = i + 1;
        }
        if (start < 0) {
            cJSON_Delete(items);
            cJSON_Delete(data);
            return respond_oai_error(x->c, NS_ERR_INVALID, "after", NULL, "No input item with id '%.100s'.", after);
        }
    }
    int i = start;
    for (; i < n && cJSON_GetArraySize(data) < limit; i++)
        cJSON_AddItemToArray(data, cJSON_Duplicate(cJSON_GetArrayItem(items, asc ? i : n - 1 - i), 1));
    cJSON_Delete(items);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    const cJSON *first = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, 0), "id");
    const cJSON *last = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, cJSON_GetArraySize(data) - 1), "id");
    cJSON_AddItemToObject(o, "data", data);
    respond_add_str_or_null(o, "first_id", cJSON_IsString(first) ? first->valuestring : NULL);
    respond_add_str_or_null(o, "last_id", cJSON_IsString(last) ? last->valuestring : NULL);
    cJSON_AddBoolToObject(o, "has_more", i < n);
    return respond_json(x->c, 200, o);
}

/* POST /v1/responses/{id}/cancel: a background response's batch is cancelled and the row
 * says cancelled; one that ended already is answered as it is */
enum MHD_Result responses_cancel(struct route_ctx *x)
{
    struct rs_row row;
    int rc = rs_lookup(x, x->ids[0], &row);
    if (rc)
        return rs_not_found(x, rc, x->ids[0]);
    if (!row.row.background) {
        rs_row_release(&row);
        return respond_oai_error(x->c, NS_ERR_INVALID, NULL, NULL,
                                 "Only responses created with background set to true can be cancelled.");
    }
    for (int tries = 0; tries < 5 && (row.row.status == SR_QUEUED || row.row.status == SR_IN_PROGRESS); tries++) {
        char bid[48];
        struct store_batch b;
        rs_batch_id(&row.row, bid, sizeof(bid));
        if (bid[0] && store_batch_get(x->srv->st, bid, &b) == NS_OK) {
            rc = batches_request_cancel(x->srv, &b);
            store_batch_release(&b);
            if (rc) {
                rs_row_release(&row);
                return respond_oai_error(x->c, rc == NS_ERR_UNAVAILABLE ? rc : NS_ERR_IO, NULL, NULL,
                                         "cannot record the cancellation; try again");
            }
        }
        cJSON *obj = cJSON_Parse(row.row.body ? row.row.body : "{}");
        cJSON_ReplaceItemInObjectCaseSensitive(obj, "status", cJSON_CreateString("cancelled"));
        struct store_response upd = row.row;
        upd.status = SR_CANCELLED;
        upd.body = cJSON_PrintUnformatted(obj);
        cJSON_Delete(obj);
        rc = upd.body ? store_response_update(x->srv->st, &upd, row.row.status) : NS_ERR_NOMEM;
        free(upd.body);
        rs_row_release(&row);
        if (rc && rc != NS_ERR_CONFLICT)
            return respond_oai_error(x->c, rc == NS_ERR_NOMEM ? rc : respond_store_status(rc), NULL, NULL,
                                     "cannot record the cancellation");
        /* written, or it moved on meanwhile (finished first): read what stands */
        if ((rc = rs_lookup(x, x->ids[0], &row)))
            return rs_not_found(x, rc, x->ids[0]);
    }
    enum MHD_Result ret = rs_answer_row(x, &row.row);
    rs_row_release(&row);
    return ret;
}
