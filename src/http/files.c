/*
 * files.c — uploads and the Files API (server_int.h).
 */
#include "server_int.h"

#include "../util/num.h"

/* ---- files -------------------------------------------------------------------------- */

/* may the caller see a file or batch of this owner? Another project's ids are 404, never
 * 403, so their existence does not leak */
bool files_owner_ok(const struct route_ctx *x, const char *owner) { return x->admin || strcmp(owner, x->owner) == 0; }
/* what a list shows: the caller's project, or everything for an admin */
const char *files_owner_filter(const struct route_ctx *x) { return x->admin ? NULL : x->owner; }

enum MHD_Result files_upload(struct route_ctx *x)
{
    struct upload *u = x->r->up;
    if (!u)
        return respond_oai_error(x->c, NS_ERR_MEDIA_TYPE, NULL, NULL,
                          "Uploads must be multipart/form-data with the fields 'file' and 'purpose'.");
    if (u->too_large)
        return respond_oai_error(x->c, NS_ERR_TOO_LARGE, "file", NULL, "The file is larger than the limit of %zu bytes.",
                          x->srv->p.max_file);
    /* the post processor hands over each part's bytes as they come, so a body cut short
     * (no closing boundary) would look like a whole file: only a clean end state counts */
    enum MHD_Result clean = MHD_destroy_post_processor(u->pp);
    u->pp = NULL;
    if (clean != MHD_YES)
        return respond_oai_error(x->c, NS_ERR_INVALID, "file", NULL,
                          "the upload is incomplete: the multipart body has no closing boundary");
    if (u->unknown[0])
        return respond_oai_error(x->c, NS_ERR_INVALID, u->unknown, NULL, "Unrecognized request argument supplied: %s",
                                 u->unknown);
    if (!u->have_file)
        return respond_oai_error(x->c, NS_ERR_INVALID, "file", NULL, "Missing required parameter: 'file'.");
    const char *purpose = u->purpose.p ? u->purpose.p : "";
    if (!*purpose)
        return respond_oai_error(x->c, NS_ERR_INVALID, "purpose", NULL, "Missing required parameter: 'purpose'.");
    static const char *const purposes[] = {"batch", "user_data", "assistants", "fine-tune", "vision", "evals", NULL};
    bool known = false;
    for (int i = 0; purposes[i]; i++)
        known |= strcmp(purposes[i], purpose) == 0;
    if (!known)
        return respond_oai_error(x->c, NS_ERR_INVALID, "purpose", NULL,
                          "Invalid value for 'purpose': '%.40s'. Supported values are: 'batch', 'user_data', "
                          "'assistants', 'fine-tune', 'vision' and 'evals'.",
                          purpose);
    /* expires_after (OpenAI's: anchor created_at, 3600 to 2592000 seconds): the file's
     * expires_at, after which it is gone as batch outputs past output_expires_after are */
    long long expires_after = 0;
    if (u->have_anchor || u->have_seconds) {
        if (strcmp(u->expires_anchor, "created_at") != 0 || !u->have_seconds ||
            num_parse_long(u->expires_seconds, 3600, 2592000, &expires_after))
            return respond_oai_error(x->c, NS_ERR_INVALID, "expires_after", NULL,
                                     "Invalid 'expires_after': expected expires_after[anchor]=created_at and "
                                     "expires_after[seconds] from 3600 to 2592000, not anchor '%s', seconds '%s'.",
                                     u->expires_anchor, u->expires_seconds);
    }
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
        return respond_oai_error(x->c, NS_ERR_IO, NULL, NULL, "cannot store the file: %s", strerror(e));
    }
    f.filename = u->filename ? u->filename : (char *)"upload";
    f.bytes = u->bytes;
    f.created_at = time(NULL);
    f.expires_at = expires_after ? f.created_at + expires_after : 0;
    f.path = path;
    if ((x->store_rc = store_file_insert(x->srv->st, &f))) {
        unlink(path);
        return respond_oai_error(x->c, respond_store_status(x->store_rc), NULL, NULL, "cannot record the file in the store");
    }
    return respond_json(x->c, 200, respond_file_json(&f));
}

enum MHD_Result files_list(struct route_ctx *x)
{
    struct store_list_page pg = {.after = server_query(x, "after"), .desc = true, .purpose = server_query(x, "purpose"),
                                 .owner = files_owner_filter(x)};
    if (server_query_limit(x, 1, 10000, 10000, &pg.limit))
        return respond_oai_error(x->c, NS_ERR_INVALID, "limit", NULL, "Invalid 'limit': expected an integer from 1 to 10000.");
    const char *order = server_query(x, "order");
    if (order && strcmp(order, "asc") && strcmp(order, "desc"))
        return respond_oai_error(x->c, NS_ERR_INVALID, "order", NULL, "Invalid 'order': expected 'asc' or 'desc'.");
    if (order && strcmp(order, "asc") == 0)
        pg.desc = false;
    struct store_file *fs = NULL;
    int n = 0;
    bool more = false;
    if ((x->store_rc = store_file_list(x->srv->st, &pg, &fs, &n, &more)))
        return respond_oai_error(x->c, respond_store_status(x->store_rc), NULL, NULL, "cannot list files");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    int64_t now = time(NULL);
    for (int i = 0; i < n; i++) {
        if (fs[i].expires_at && now >= fs[i].expires_at)
            continue; /* past its expiry: gone (deleted when next touched) */
        cJSON_AddItemToArray(d, respond_file_json(&fs[i]));
    }
    respond_add_str_or_null(o, "first_id", n ? fs[0].id : NULL);
    respond_add_str_or_null(o, "last_id", n ? fs[n - 1].id : NULL);
    cJSON_AddBoolToObject(o, "has_more", more);
    for (int i = 0; i < n; i++)
        store_file_release(&fs[i]);
    free(fs);
    return respond_json(x->c, 200, o);
}

bool files_expired(const struct store_file *f) { return f->expires_at && time(NULL) >= f->expires_at; }

static int file_busy_batch(struct server *srv, const char *file_id, char *busy, size_t n);

static int file_lookup(struct route_ctx *x, struct store_file *f)
{
    int rc = store_file_get(x->srv->st, x->ids[0], f);
    if (rc == NS_OK && !files_owner_ok(x, f->owner)) {
        store_file_release(f);
        rc = NS_ERR_NOT_FOUND;
    }
    if (rc == NS_OK && files_expired(f)) {
        /* output_expires_after and an upload's expires_after honoured: an expired file is
         * deleted when next touched, unless a batch still reads it as its input (deleted
         * under it, the batch would be stranded: issue 27.4); it is gone to clients anyway */
        char busy[48];
        if (file_busy_batch(x->srv, f->id, busy, sizeof(busy)) == NS_ERR_NOT_FOUND &&
            store_file_delete(x->srv->st, f->id) == NS_OK)
            unlink(f->path);
        store_file_release(f);
        rc = NS_ERR_NOT_FOUND;
    }
    return rc;
}

static enum MHD_Result file_not_found(struct route_ctx *x, int rc)
{
    if (rc == NS_ERR_NOT_FOUND)
        return respond_oai_error(x->c, NS_ERR_NOT_FOUND, "file_id", NULL, "No such File object: %.100s", x->ids[0]);
    return respond_oai_error(x->c, rc, NULL, NULL, "cannot read the file record");
}

enum MHD_Result files_get(struct route_ctx *x)
{
    struct store_file f;
    int rc = file_lookup(x, &f);
    if (rc)
        return file_not_found(x, rc);
    cJSON *o = respond_file_json(&f);
    store_file_release(&f);
    return respond_json(x->c, 200, o);
}

enum MHD_Result files_content(struct route_ctx *x)
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
        return respond_oai_error(x->c, NS_ERR_IO, NULL, NULL, "the file's content is missing from the data dir");
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
        int lrc = store_batch_ids_by_status(srv->st, live[k], &ids, &nid);
        if (lrc) {
            rc = lrc;
            break;
        }
        for (int i = 0; i < nid && rc == NS_ERR_NOT_FOUND; i++) {
            struct store_batch b;
            if (store_batch_get(srv->st, ids[i], &b) != NS_OK)
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

enum MHD_Result files_delete(struct route_ctx *x)
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
            return respond_oai_error(x->c, rc, NULL, NULL, "cannot check whether a batch uses the file; retry");
        return respond_oai_error(x->c, NS_ERR_CONFLICT, "file_id", "file_in_use",
                          "File %s is the input of batch %s, which has not ended; cancel it or wait for it to end, "
                          "then delete the file.",
                          x->ids[0], busy);
    }
    rc = store_file_delete(x->srv->st, f.id);
    if (rc == NS_OK)
        unlink(f.path);
    store_file_release(&f);
    if (rc)
        return file_not_found(x, rc);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", x->ids[0]);
    cJSON_AddStringToObject(o, "object", "file");
    cJSON_AddBoolToObject(o, "deleted", true);
    return respond_json(x->c, 200, o);
}

