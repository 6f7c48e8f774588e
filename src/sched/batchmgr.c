/*
 * batchmgr.c — see batchmgr.h.
 */
#include "batchmgr.h"
#include "webhook.h"

#include "../proto/batchline.h"
#include "../proto/dialect.h"
#include "../proto/batchfile.h"
#include "../proto/oai.h"
#include "../util/durable.h"
#include "../util/status.h"
#include "../util/utf8.h"
#include "../util/log.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct batchmgr {
    struct batchmgr_params p;
    char *data_dir;
    struct store *st;
    struct sched **scheds;
    int n_scheds;
    pthread_t thread;
    bool started, stopping, kicked;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

struct batchmgr_params batchmgr_default_params(void)
{
    struct batchmgr_params p = {
        .data_dir = ".", .max_lines = 50000, .max_bytes = 200u * 1000u * 1000u, .group_by_prefix = true,
        .message_batch_retention = 29 * 86400, .response_retention = 30 * 86400};
    return p;
}

void batchmgr_file_path(const char *data_dir, const char *file_id, char *out, size_t n)
{
    snprintf(out, n, "%s/files/%s", data_dir, file_id);
}

int batchmgr_parse_window(const char *s, int64_t *seconds)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v <= 0 || v > 1000000)
        return NS_ERR_INVALID;
    if (strcmp(end, "h") == 0)
        *seconds = v * 3600;
    else if (strcmp(end, "m") == 0)
        *seconds = v * 60;
    else if (strcmp(end, "s") == 0)
        *seconds = v;
    else
        return NS_ERR_INVALID;
    return NS_OK;
}

int batchmgr_init(struct batchmgr_params p, struct store *st, struct sched **scheds,
                  int n_scheds, struct batchmgr **out)
{
    struct batchmgr *m = calloc(1, sizeof(*m));
    *out = NULL;
    if (!m)
        return NS_ERR_NOMEM;
    m->p = p;
    m->data_dir = strdup(p.data_dir);
    m->st = st;
    m->scheds = scheds;
    m->n_scheds = n_scheds;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    *out = m;
    return NS_OK;
}

struct sched *batchmgr_sched_for(struct batchmgr *m, const char *model)
{
    if (!model)
        return NULL;
    for (int i = 0; i < m->n_scheds; i++)
        if (strcmp(sched_model_name(m->scheds[i]), model) == 0)
            return m->scheds[i];
    return NULL;
}

void batchmgr_kick(struct batchmgr *m)
{
    pthread_mutex_lock(&m->mu);
    m->kicked = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

void batchmgr_on_idle(void *ud, const char *batch_id)
{
    (void)batch_id;
    batchmgr_kick(ud);
}

/* this node may run a once-only step of the batch now (see store_ops.batch.lease) */
static bool bm_lease(struct batchmgr *m, const char *batch_id)
{
    return store_batch_lease(m->st, batch_id) == NS_OK;
}

/* does sched s work lines of a batch of `model`? Its model's sched, and the scheds its
 * lines may be routed to (the fallback chain: spill-over and fail-over, sched.h); every
 * sched for a batch that mixes models */
static bool bm_works(struct batchmgr *m, struct sched *s, const char *model, bool mixed)
{
    if (mixed)
        return true;
    int hops = 0;
    for (struct sched *x = batchmgr_sched_for(m, model); x && hops <= m->n_scheds; x = sched_fallback(x), hops++)
        if (x == s)
            return true;
    return false;
}

static bool bm_model_ok(void *ud, const char *model)
{
    return batchmgr_sched_for(ud, model) != NULL;
}

/* true at most once a minute for the same batch id (the manager's thread alone calls it):
 * a condition seen at every tick is logged, not logged 60 times a minute */
static bool bm_log_once(struct batchmgr *m, const char *batch_id)
{
    (void)m;
    static char last_id[48];
    static time_t last_t;
    time_t now = time(NULL);
    if (strcmp(last_id, batch_id) == 0 && now - last_t < 60)
        return false;
    snprintf(last_id, sizeof(last_id), "%s", batch_id);
    last_t = now;
    return true;
}

/* fail a batch at validation: errors is a JSON list object text */
static void bm_fail(struct batchmgr *m, struct store_batch *b, cJSON *errors)
{
    char *text = utf8_fix(cJSON_PrintUnformatted(errors));
    cJSON_Delete(errors);
    free(b->errors);
    b->errors = text;
    enum store_batch_status was = b->status;
    b->status = SB_FAILED;
    b->failed_at = time(NULL);
    if (store_batch_update(m->st, b, was) == NS_OK) /* a cancel that came first wins */
        webhook_batch_ended(m->p.webhooks, b);
}

static cJSON *bm_errors_one(const char *code, const char *message, const char *param)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddNullToObject(e, "line");
    cJSON_AddStringToObject(e, "message", message);
    if (param)
        cJSON_AddStringToObject(e, "param", param);
    else
        cJSON_AddNullToObject(e, "param");
    cJSON_AddItemToArray(d, e);
    return o;
}

/* Read the batch's input file into lines and start it. lines_only: only insert the lines
 * (a batch cancelled before it started: its lines are then settled as cancelled). */
static void bm_validate(struct batchmgr *m, struct store_batch *b, bool lines_only)
{
    struct store_file f;
    char err[512], served[1024] = "";
    struct batchfile *bf = NULL;
    if (!bm_lease(m, b->id))
        return; /* another node validates it */
    if (store_file_get(m->st, b->input_file_id, &f) != NS_OK) {
        if (!lines_only)
            bm_fail(m, b, bm_errors_one("invalid_file", "the input file no longer exists", "input_file_id"));
        return;
    }
    for (int i = 0; i < m->n_scheds; i++) {
        size_t l = strlen(served);
        snprintf(served + l, sizeof(served) - l, "%s'%s'", i ? ", " : "", sched_model_name(m->scheds[i]));
    }
    struct batchfile_params bp = batchfile_default_params();
    bp.max_lines = m->p.max_lines;
    bp.max_bytes = m->p.max_bytes;
    bp.model_ok = bm_model_ok;
    bp.model_ud = m;
    bp.served_models = served;
    /* the batch's dialect says: an OpenAI batch names one model and fails whole on a bad
     * line; an Anthropic Message Batch may mix models and answers a bad request with an
     * errored result */
    const struct dialect *d = dialect_of_batch(b->endpoint, false);
    bp.one_model = !d->batch_mixed_models;
    bp.endpoint = b->endpoint;
    bp.name = b->input_file_id;
    int rc = batchfile_open(f.path, &bp, &bf, err, sizeof(err));
    if (rc) {
        if (!lines_only)
            bm_fail(m, b, bm_errors_one(rc == NS_ERR_TOO_LARGE ? "too_large" : "invalid_file", err, NULL));
        goto out;
    }
    if (bf->n_invalid && !d->batch_errors_per_line) {
        if (lines_only)
            goto out;
        cJSON *o = batchfile_errors_json(bf, bp.max_errors);
        bm_fail(m, b, o);
        goto out;
    }
    size_t n_bad = d->batch_errors_per_line ? bf->n_errors : 0;
    struct store_line *lines = calloc(bf->n_lines + n_bad + 1, sizeof(*lines));
    char **bad_json = calloc(n_bad + 1, sizeof(*bad_json));
    /* lines are claimed in idx order: grouped by shared prompt prefix, they run while
     * their instruction is hot in the engine's prefix cache */
    size_t *order = batchfile_prefix_order(bf, m->p.group_by_prefix);
    if (!lines || !order || !bad_json) {
        free(lines);
        free(order);
        free(bad_json);
        goto out; /* retried next round */
    }
    for (size_t i = 0; i < bf->n_lines; i++) {
        const struct batchfile_line *l = &bf->lines[order[i]];
        lines[i].idx = (int64_t)i;
        lines[i].line_no = l->line_no;
        lines[i].custom_id = l->custom_id;
        lines[i].off = (int64_t)l->off;
        lines[i].len = (int64_t)l->len;
        lines[i].url = (int)l->url;
        lines[i].model = l->model;
    }
    free(order);
    /* errors per line (Message Batches): each invalid request is an errored result of its own */
    for (size_t k = 0; k < n_bad; k++) {
        const struct batchfile_error *e = &bf->errors[k];
        struct store_line *l = &lines[bf->n_lines + k];
        char cid[64];
        if (!e->custom_id)
            snprintf(cid, sizeof(cid), "line-%u", e->line);
        cJSON *res = batchline_error(d, e->custom_id ? e->custom_id : cid,
                                     strcmp(e->code, "model_not_found") == 0 ? NS_ERR_NOT_FOUND : NS_ERR_INVALID, NULL,
                                     e->message);
        bad_json[k] = utf8_fix(cJSON_PrintUnformatted(res));
        cJSON_Delete(res);
        l->idx = (int64_t)(bf->n_lines + k);
        l->line_no = e->line;
        l->custom_id = e->custom_id ? e->custom_id : cid;
        l->url = (int)batchfile_url_of(b->endpoint);
        l->result = bad_json[k] ? bad_json[k] : "{}";
        if (!e->custom_id)
            l->custom_id = strdup(cid); /* freed below */
    }
    rc = store_lines_insert(m->st, b->id, lines, (int)(bf->n_lines + n_bad));
    for (size_t k = 0; k < n_bad; k++) {
        free(bad_json[k]);
        if (!bf->errors[k].custom_id)
            free(lines[bf->n_lines + k].custom_id);
    }
    free(bad_json);
    free(lines);
    if (rc || lines_only)
        goto out;
    free(b->model);
    b->model = bf->model ? strdup(bf->model) : NULL;
    b->total = (int64_t)bf->n_lines;
    b->status = SB_IN_PROGRESS;
    b->in_progress_at = time(NULL);
    /* a cancel that arrived while validating wins: the lines just inserted are then
     * settled as batch_cancelled by the cancelling step */
    if (store_batch_update(m->st, b, SB_VALIDATING) != NS_OK)
        goto out;
    if (b->not_before == 0 || time(NULL) >= b->not_before) {
        for (int i = 0; i < m->n_scheds; i++)
            if (bm_works(m, m->scheds[i], b->model, d->batch_mixed_models))
                sched_add_batch(m->scheds[i], b->id, f.path);
    }
out:
    batchfile_free(bf);
    store_file_release(&f);
}

/* write the finished lines to a new file of purpose batch_output; "" when none */
static int bm_write_file(struct batchmgr *m, struct store_batch *b, bool ok_lines, char *id_out, size_t idn)
{
    char id[48], path[4096];
    id_out[0] = '\0';
    if ((ok_lines && b->completed == 0) || (!ok_lines && b->failed == 0))
        return NS_OK;
    oai_make_id(id, sizeof(id), "file-");
    batchmgr_file_path(m->data_dir, id, path, sizeof(path));
    struct durable d;
    FILE *f = durable_open(&d, path) == NS_OK ? durable_stream(&d) : NULL;
    if (!f) {
        durable_rollback(&d);
        return NS_ERR_IO;
    }
    int rc = store_lines_export(m->st, b->id, ok_lines ? f : NULL, ok_lines ? NULL : f);
    long size = ftell(f);
    if (rc) {
        durable_rollback(&d);
        return rc;
    }
    /* committed (durable) before the row that names it; not kept when only the
     * directory sync failed */
    if (durable_commit(&d)) {
        unlink(path);
        return NS_ERR_IO;
    }
    struct store_file sf;
    memset(&sf, 0, sizeof(sf));
    snprintf(sf.id, sizeof(sf.id), "%s", id);
    snprintf(sf.owner, sizeof(sf.owner), "%s", b->owner);
    snprintf(sf.purpose, sizeof(sf.purpose), "batch_output");
    char name[96];
    snprintf(name, sizeof(name), "%s_%s.jsonl", b->id, ok_lines ? "output" : "error");
    sf.filename = name;
    sf.bytes = size;
    sf.created_at = time(NULL);
    sf.expires_at = b->output_expires_after ? b->created_at + b->output_expires_after : 0;
    sf.path = path;
    rc = store_file_insert(m->st, &sf);
    if (rc) {
        unlink(path);
        return rc;
    }
    snprintf(id_out, idn, "%s", id);
    return NS_OK;
}

static void bm_finalize(struct batchmgr *m, struct store_batch *b, enum store_batch_status final)
{
    int64_t now = time(NULL);
    if (!bm_lease(m, b->id))
        return; /* another node finalizes it */
    if (b->status != SB_FINALIZING && final == SB_COMPLETED) {
        enum store_batch_status was = b->status;
        b->status = SB_FINALIZING;
        b->finalizing_at = now;
        if (store_batch_update(m->st, b, was))
            return; /* cancelled meanwhile: the next round settles it */
    }
    /* re-read: the counters are the store's */
    struct store_batch fresh;
    if (store_batch_get(m->st, b->id, &fresh))
        return;
    char out_id[48], err_id[48];
    if (bm_write_file(m, &fresh, true, out_id, sizeof(out_id)) || bm_write_file(m, &fresh, false, err_id, sizeof(err_id))) {
        if (bm_log_once(m, b->id))
            log_event(LOG_ERROR, b->model, b->id, "cannot write the output files of batch %s (disk full?); will retry", b->id);
        store_batch_release(&fresh);
        return;
    }
    snprintf(fresh.output_file_id, sizeof(fresh.output_file_id), "%s", out_id);
    snprintf(fresh.error_file_id, sizeof(fresh.error_file_id), "%s", err_id);
    enum store_batch_status was = fresh.status;
    fresh.status = final;
    if (final == SB_COMPLETED)
        fresh.completed_at = now;
    else if (final == SB_EXPIRED)
        fresh.expired_at = now;
    else if (final == SB_CANCELLED)
        fresh.cancelled_at = now;
    if (store_batch_update(m->st, &fresh, was) == NS_OK) {
        webhook_batch_ended(m->p.webhooks, &fresh);
    } else {
        /* the status moved on (a cancel during finalizing): drop these files, redo later */
        char path[4096];
        for (int i = 0; i < 2; i++) {
            const char *fid = i ? err_id : out_id;
            if (!fid[0])
                continue;
            store_file_delete(m->st, fid);
            batchmgr_file_path(m->data_dir, fid, path, sizeof(path));
            unlink(path);
        }
    }
    store_batch_release(&fresh);
}

struct bm_noresp {
    int status;
    const char *message;
    const struct dialect *d;
};

static char *bm_make_noresponse(void *ud, const char *custom_id)
{
    struct bm_noresp *nr = ud;
    cJSON *line = batchline_error(nr->d, custom_id, nr->status, NULL, nr->message);
    char *s = utf8_fix(cJSON_PrintUnformatted(line));
    cJSON_Delete(line);
    return s;
}

/* stop a batch (cancel or expiry): once nothing of it is in an engine, fail what is left */
static void bm_settle(struct batchmgr *m, struct store_batch *b, enum store_batch_status final)
{
    /* An Anthropic Message Batch cancelled before its requests were read: read them now, so
     * each ends as a canceled result, counted in request_counts as Anthropic counts them
     * (an OpenAI batch cancelled while validating has no request_counts yet, as OpenAI's) */
    const struct dialect *d = dialect_of_batch(b->endpoint, false);
    if (d->batch_results_on_cancel && b->in_progress_at == 0 && b->total == 0)
        bm_validate(m, b, true);
    int inflight = 0;
    for (int i = 0; i < m->n_scheds; i++) {
        inflight += sched_drop_batch(m->scheds[i], b->id);
        int left = sched_batch_inflight(m->scheds[i], b->id);
        inflight += left > 0 ? left : 0;
    }
    if (inflight > 0)
        return; /* running lines finish first; the idle kick brings us back */
    /* no batch lease here: each node settles its own lines (and a dead node's), in one
     * transaction; finalization below takes the lease */
    struct bm_noresp nr = {
        .status = final == SB_EXPIRED ? NS_ERR_EXPIRED : NS_ERR_CANCELLED,
        .message = final == SB_EXPIRED ? "This request could not be executed before the completion window expired."
                                       : "This request was not executed because the batch was cancelled.",
        .d = d,
    };
    if (store_lines_fail_unfinished(m->st, b->id, true, final == SB_EXPIRED ? SF_EXPIRED : SF_CANCELLED,
                                      bm_make_noresponse, &nr))
        return;
    int64_t pending, running;
    if (store_lines_count_unfinished(m->st, b->id, &pending, &running) || pending + running > 0)
        return; /* other nodes still hold lines of it: the last to settle finalizes */
    bm_finalize(m, b, final);
}

static void bm_check_progress(struct batchmgr *m, struct store_batch *b)
{
    int64_t now = time(NULL);
    bool mixed = dialect_of_batch(b->endpoint, false)->batch_mixed_models;
    if (b->expires_at && now >= b->expires_at) {
        bm_settle(m, b, SB_EXPIRED);
        return;
    }
    if (b->not_before && now < b->not_before)
        return;
    int64_t pending, running;
    if (store_lines_count_unfinished(m->st, b->id, &pending, &running))
        return;
    if (pending == 0 && running == 0) {
        for (int i = 0; i < m->n_scheds; i++)
            sched_drop_batch(m->scheds[i], b->id);
        bm_finalize(m, b, SB_COMPLETED);
        return;
    }
    if (pending > 0) {
        /* a sched that does not know the batch (a restart, not_before passed) takes it up;
         * one that knows it is left alone (it reports when it runs dry) */
        struct store_file f;
        int rc = store_file_get(m->st, b->input_file_id, &f);
        if (rc == NS_OK) {
            for (int i = 0; i < m->n_scheds && rc == NS_OK; i++)
                if (bm_works(m, m->scheds[i], b->model, mixed) && sched_batch_inflight(m->scheds[i], b->id) < 0)
                    rc = sched_add_batch(m->scheds[i], b->id, f.path);
            store_file_release(&f);
        }
        /* the API refuses to delete a running batch's input (409), so this is a file removed
         * behind the server's back: said, not silently stuck (issue 27.4) */
        if (rc != NS_OK && rc != NS_ERR_NOMEM && bm_log_once(m, b->id))
            log_event(LOG_ERROR, b->model, b->id,
                      "batch %s cannot run its %lld pending lines: its input file %s %s; cancel the batch", b->id,
                      (long long)pending, b->input_file_id,
                      rc == NS_ERR_NOT_FOUND ? "is no longer in the store" : "cannot be opened (removed from disk?)");
    }
}

/* ended Anthropic Message Batches past their retention: files and rows deleted */
static void bm_purge(struct batchmgr *m, struct store_batch *b)
{
    if (!dialect_of_batch(b->endpoint, false)->batch_retention ||
        b->created_at + m->p.message_batch_retention > time(NULL))
        return;
    const char *files[3] = {b->input_file_id, b->output_file_id, b->error_file_id};
    for (int i = 0; i < 3; i++) {
        struct store_file f;
        if (files[i][0] && store_file_get(m->st, files[i], &f) == NS_OK) {
            if (store_file_delete(m->st, f.id) == NS_OK)
                unlink(f.path);
            store_file_release(&f);
        }
    }
    store_batch_delete(m->st, b->id);
}

typedef void (*bm_step_fn)(struct batchmgr *m, struct store_batch *b);

static void bm_step_validating(struct batchmgr *m, struct store_batch *b) { bm_validate(m, b, false); }
static void bm_step_cancelling(struct batchmgr *m, struct store_batch *b) { bm_settle(m, b, SB_CANCELLED); }
static void bm_step_finalizing(struct batchmgr *m, struct store_batch *b) { bm_finalize(m, b, SB_COMPLETED); }

static void bm_for_status(struct batchmgr *m, enum store_batch_status st, bm_step_fn fn)
{
    char(*ids)[48] = NULL;
    int n = 0;
    if (store_batch_ids_by_status(m->st, st, &ids, &n))
        return;
    for (int i = 0; i < n && !m->stopping; i++) {
        struct store_batch b;
        if (store_batch_get(m->st, ids[i], &b) == NS_OK) {
            if (b.status == st)
                fn(m, &b);
            store_batch_release(&b);
        }
    }
    free(ids);
}

/* Batches another node ended (finalized, settled, deleted) while this node's engines still
 * held them: dropped here, or they would be asked for lines forever. */
static void bm_forget_ended(struct batchmgr *m)
{
    for (int i = 0; i < m->n_scheds && !m->stopping; i++) {
        char(*ids)[48] = NULL;
        int n = 0;
        if (sched_batch_ids(m->scheds[i], &ids, &n))
            continue;
        for (int k = 0; k < n; k++) {
            struct store_batch b;
            int rc = store_batch_get(m->st, ids[k], &b);
            if (rc == NS_ERR_NOT_FOUND || (rc == NS_OK && store_batch_status_terminal(b.status)))
                sched_drop_batch(m->scheds[i], ids[k]);
            if (rc == NS_OK)
                store_batch_release(&b);
        }
        free(ids);
    }
}

static void *bm_thread(void *arg)
{
    struct batchmgr *m = arg;
    time_t last_purge = 0;
    for (;;) {
        pthread_mutex_lock(&m->mu);
        if (!m->kicked && !m->stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 500 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&m->cv, &m->mu, &ts);
        }
        m->kicked = false;
        bool stop = m->stopping;
        pthread_mutex_unlock(&m->mu);
        if (stop)
            break;
        bm_for_status(m, SB_VALIDATING, bm_step_validating);
        bm_for_status(m, SB_CANCELLING, bm_step_cancelling);
        bm_for_status(m, SB_IN_PROGRESS, bm_check_progress);
        bm_for_status(m, SB_FINALIZING, bm_step_finalizing);
        bm_forget_ended(m);
        time_t now = time(NULL);
        if (now - last_purge >= 60) {
            last_purge = now;
            static const enum store_batch_status ended[] = {SB_COMPLETED, SB_CANCELLED, SB_EXPIRED, SB_FAILED};
            for (size_t i = 0; i < sizeof(ended) / sizeof(ended[0]); i++)
                bm_for_status(m, ended[i], bm_purge);
            /* stored responses past their retention (a background one's batch stays, as a
             * deferred request's does) */
            int64_t gone = 0;
            if (m->p.response_retention > 0 && store_response_expire(m->st, now - m->p.response_retention, &gone) == NS_OK &&
                gone)
                log_event(LOG_INFO, NULL, NULL, "deleted %lld stored responses past their retention", (long long)gone);
        }
    }
    return NULL;
}

int batchmgr_start(struct batchmgr *m)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/files", m->data_dir);
    if (store_lines_requeue(m->st))
        return NS_ERR_IO;
    /* in-progress batches resume in the manager's first round (bm_check_progress) */
    if (pthread_create(&m->thread, NULL, bm_thread, m) != 0)
        return NS_ERR_INTERNAL;
    m->started = true;
    batchmgr_kick(m);
    return NS_OK;
}

void batchmgr_free(struct batchmgr *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->stopping = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    if (m->started)
        pthread_join(m->thread, NULL);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    free(m->data_dir);
    free(m);
}
