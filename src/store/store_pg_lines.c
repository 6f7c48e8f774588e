/*
 * store_pg_lines.c — the PostgreSQL store's lines (claims under leases, results written
 * once, requeue and settling), webhook deliveries and API keys; see store_pg.c for the
 * design and store_pg_int.h for what the files share.
 */
#include "store_pg_int.h"

/* ---- lines ------------------------------------------------------------------------------ */

/* append a field in COPY text format: backslash, tab, newline and carriage return escaped;
 * NULL is \N; then the column (tab) or row (newline) separator */
static int pg_copy_field(struct buf *b, const char *s, bool last)
{
    int rc = NS_OK;
    if (!s)
        rc = buf_append(b, "\\N", 2);
    for (; s && *s && !rc; s++) {
        const char *run = s;
        while (*s && *s != '\\' && *s != '\t' && *s != '\n' && *s != '\r')
            s++;
        if (s > run)
            rc = buf_append(b, run, (size_t)(s - run));
        if (!*s)
            break;
        if (!rc)
            rc = buf_appendf(b, "\\%c", *s == '\t' ? 't' : *s == '\n' ? 'n' : *s == '\r' ? 'r' : '\\');
    }
    return rc ? rc : buf_append(b, last ? "\n" : "\t", 1);
}

/* the COPY data is sent in pieces of about this size */
#define PG_COPY_CHUNK (64 * 1024)

int store_pg_lines_insert(struct store *st, const char *batch_id, const struct store_line *lines, int n)
{
    int rc = NS_ERR_IO;
    struct buf buf;
    buf_init(&buf, PG_BUF_MAX);
    pthread_mutex_lock(&st->mu);
    if (store_pg_exec(st, "BEGIN"))
        goto out;
    /* Only while the batch is validating, or cancelling before it started (the row lock
     * orders us with batch_update): a validation that lost its lease to another node must
     * not touch lines already running. Re-inserting the same lines after a crash
     * mid-validation replaces them, as INSERT OR IGNORE keeps them in the SQLite store:
     * they are the same lines. */
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, batch_id);
    PGresult *r = store_pg_q(st, "SELECT status, in_progress_at FROM batches WHERE id=$1 FOR UPDATE", &a);
    if (!r || PQntuples(r) != 1 ||
        !(store_pg_i64(r, 0, 0) == SB_VALIDATING ||
          (store_pg_i64(r, 0, 0) == SB_CANCELLING && store_pg_i64(r, 0, 1) == 0))) {
        PQclear(r);
        goto rollback;
    }
    PQclear(r);
    if (!(r = store_pg_q(st, "DELETE FROM lines WHERE batch_id=$1", &a)))
        goto rollback;
    PQclear(r);
    r = PQexec(st->conn, "COPY lines(batch_id,idx,line_no,custom_id,byte_off,byte_len,url,model,state,result) FROM STDIN");
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        store_pg_failed(st, r);
        PQclear(r);
        goto rollback;
    }
    PQclear(r);
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        const struct store_line *l = &lines[i];
        ok = pg_copy_field(&buf, batch_id, false) == NS_OK &&
             buf_appendf(&buf, "%lld\t%u\t", (long long)l->idx, l->line_no) == NS_OK &&
             pg_copy_field(&buf, l->custom_id, false) == NS_OK &&
             buf_appendf(&buf, "%lld\t%lld\t%d\t", (long long)l->off, (long long)l->len, l->url) == NS_OK &&
             pg_copy_field(&buf, l->model, false) == NS_OK &&
             buf_appendf(&buf, "%d\t", l->result ? SL_FAILED : SL_PENDING) == NS_OK &&
             pg_copy_field(&buf, l->result, true) == NS_OK;
        if (ok && (buf.len >= PG_COPY_CHUNK || i + 1 == n)) {
            ok = PQputCopyData(st->conn, buf.p, (int)buf.len) == 1;
            buf_reset(&buf);
        }
    }
    if (PQputCopyEnd(st->conn, ok ? NULL : "nightshift: out of memory") != 1)
        ok = false;
    while ((r = PQgetResult(st->conn)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && ok) {
            store_pg_failed(st, r);
            ok = false;
        }
        PQclear(r);
    }
    if (!ok)
        goto rollback;
    if (!(r = store_pg_q(st,
                         "UPDATE batches SET total=(SELECT count(*) FROM lines WHERE batch_id=$1),"
                         " failed=(SELECT count(*) FROM lines WHERE batch_id=$1 AND state=3) WHERE id=$1",
                         &a)))
        goto rollback;
    PQclear(r);
    if (store_pg_exec(st, "COMMIT") == NS_OK) {
        rc = NS_OK;
        goto out;
    }
rollback:
    rc = store_pg_rollback(st, rc);
out:
    pthread_mutex_unlock(&st->mu);
    buf_release(&buf);
    return rc;
}

/* a store_pg_row_fn */
static void pg_row_line(const PGresult *r, int i, void *elem, void *ud)
{
    (void)ud;
    struct store_line *l = elem;
    memset(l, 0, sizeof(*l));
    l->idx = store_pg_i64(r, i, 0);
    l->line_no = (uint32_t)store_pg_i64(r, i, 1);
    l->custom_id = store_pg_dup(r, i, 2);
    l->off = store_pg_i64(r, i, 3);
    l->len = store_pg_i64(r, i, 4);
    l->url = (int)store_pg_i64(r, i, 5);
    l->model = store_pg_dup(r, i, 6);
}

static int pg_line_cmp(const void *x, const void *y)
{
    const struct store_line *a = x, *b = y;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

int store_pg_lines_claim(struct store *st, const char *batch_id, const char *model, int max,
                         struct store_line **out, int *n)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, batch_id);
    store_pg_arg_i64(&a, max);
    store_pg_arg_text(&a, model);
    store_pg_arg_text(&a, st->node);
    store_pg_arg_i64(&a, (int64_t)st->lease * 1000);
    /* pending lines, and running ones whose node stopped renewing its lease; rows another
     * node is claiming right now are skipped, not waited for */
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st,
                             "WITH c AS (SELECT idx FROM lines WHERE batch_id=$1 AND (state=0 OR (state=1 AND lease_until < "
                             PG_NOW_MS ")) AND ($3::text IS NULL OR coalesce(backend, model)=$3) ORDER BY idx LIMIT $2::bigint "
                             "FOR UPDATE SKIP LOCKED) "
                             "UPDATE lines l SET state=1, node=$4, lease_until=" PG_NOW_MS " + $5 FROM c "
                             "WHERE l.batch_id=$1 AND l.idx=c.idx "
                             "RETURNING l.idx,l.line_no,l.custom_id,l.byte_off,l.byte_len,l.url,l.model",
                             &a);
    int rc = r ? NS_OK : st->fail;
    pthread_mutex_unlock(&st->mu);
    *out = NULL;
    *n = 0;
    if (rc)
        return rc;
    /* NS_ERR_NOMEM: the lines stay claimed; their lease runs out */
    void *arr = NULL;
    rc = store_pg_rows(r, -1, sizeof(**out), pg_row_line, NULL, &arr, n);
    if (rc == NS_OK)
        qsort(arr, (size_t)*n, sizeof(**out), pg_line_cmp);
    *out = arr;
    return rc;
}

/* append a PostgreSQL array literal of text elements: {"a","b\\"c"} ('"' and '\\' escaped) */
static int pg_text_array(struct buf *b, const char *const *v, int n)
{
    int rc = buf_append(b, "{", 1);
    for (int i = 0; i < n && !rc; i++) {
        rc = buf_append(b, i ? ",\"" : "\"", i ? 2 : 1);
        for (const char *c = v[i]; *c && !rc; c++) {
            const char *run = c;
            while (*c && *c != '"' && *c != '\\')
                c++;
            if (c > run)
                rc = buf_append(b, run, (size_t)(c - run));
            if (!*c)
                break;
            if (!rc)
                rc = buf_appendf(b, "\\%c", *c);
        }
        if (!rc)
            rc = buf_append(b, "\"", 1);
    }
    return rc ? rc : buf_append(b, "}", 1);
}

/* Results of a run of lines of one batch: one UPDATE for the run (the arrays unnested), so
 * the database parses and plans once per group commit, not once per line. sum: what the
 * lines that counted add to the batch's counters. */
static int pg_lines_finish_run(struct store *st, const struct store_result *rs, int n, int64_t sum[6],
                               int64_t bsum[5])
{
    const char *texts[PG_MAX_RUN];
    struct buf idx, state, res;
    buf_init(&idx, PG_BUF_MAX);
    buf_init(&state, PG_BUF_MAX);
    buf_init(&res, PG_BUF_MAX);
    int rc = buf_append(&idx, "{", 1);
    if (!rc)
        rc = buf_append(&state, "{", 1);
    for (int i = 0; i < n && !rc; i++) {
        rc = buf_appendf(&idx, "%s%lld", i ? "," : "", (long long)rs[i].idx);
        if (!rc)
            rc = buf_appendf(&state, "%s%d", i ? "," : "", rs[i].ok ? SL_OK : SL_FAILED);
        texts[i] = rs[i].json;
    }
    if (!rc)
        rc = buf_append(&idx, "}", 1);
    if (!rc)
        rc = buf_append(&state, "}", 1);
    if (!rc)
        rc = pg_text_array(&res, texts, n);
    if (rc)
        goto out;
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, rs[0].batch_id);
    store_pg_arg_text(&a, idx.p);
    store_pg_arg_text(&a, state.p);
    store_pg_arg_text(&a, res.p);
    /* only an unfinished line counts: a result is written once, even when the line ran on
     * two nodes (a lease lost to a long pause); RETURNING says which ones counted */
    PGresult *r = store_pg_q(st,
                             "UPDATE lines l SET state=v.state, result=v.result "
                             "FROM unnest($2::bigint[], $3::integer[], $4::text[]) AS v(idx, state, result) "
                             "WHERE l.batch_id=$1 AND l.idx=v.idx AND l.state<2 RETURNING l.idx",
                             &a);
    if (!r) {
        rc = NS_ERR_IO;
        goto out;
    }
    memset(sum, 0, 6 * sizeof(int64_t));
    memset(bsum, 0, 5 * sizeof(int64_t));
    for (int row = 0; row < PQntuples(r); row++) {
        int64_t x = store_pg_i64(r, row, 0);
        for (int i = 0; i < n; i++) {
            if (rs[i].idx != x)
                continue;
            bsum[0] += rs[i].ok;
            bsum[1] += !rs[i].ok;
            bsum[2] += rs[i].prompt_tokens;
            bsum[3] += rs[i].completion_tokens;
            bsum[4] += rs[i].cached_tokens;
            sum[0] += rs[i].ok;
            sum[1] += !rs[i].ok;
            sum[2] += rs[i].prompt_tokens;
            sum[3] += rs[i].completion_tokens;
            sum[4] += rs[i].cached_tokens;
            sum[5] += rs[i].prompt_computed;
            break;
        }
    }
    PQclear(r);
out:
    buf_release(&idx);
    buf_release(&state);
    buf_release(&res);
    return rc;
}

int store_pg_lines_finish(struct store *st, const struct store_result *rs, int n)
{
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if (store_pg_exec(st, "BEGIN"))
        goto out;
    for (int i = 0; i < n;) {
        int j = i + 1;
        /* a run: one batch, one backend (whose share it adds to) */
        while (j < n && j - i < PG_MAX_RUN && strcmp(rs[j].batch_id, rs[i].batch_id) == 0 &&
               (rs[j].backend == rs[i].backend ||
                (rs[j].backend && rs[i].backend && strcmp(rs[j].backend, rs[i].backend) == 0)))
            j++;
        int64_t sum[6], bsum[5];
        if ((rc = pg_lines_finish_run(st, rs + i, j - i, sum, bsum)))
            goto rollback;
        if (rs[i].backend && (bsum[0] || bsum[1])) {
            struct store_pg_args c = {0};
            store_pg_arg_text(&c, rs[i].batch_id);
            store_pg_arg_text(&c, rs[i].backend);
            for (int k = 0; k < 5; k++)
                store_pg_arg_i64(&c, bsum[k]);
            PGresult *u = store_pg_q(st,
                                     "INSERT INTO batch_backends(batch_id,backend,completed,failed,input_tokens,output_tokens,"
                                     "cached_tokens) VALUES($1,$2,$3,$4,$5,$6,$7) ON CONFLICT(batch_id,backend) DO UPDATE SET "
                                     "completed=batch_backends.completed+$3, failed=batch_backends.failed+$4,"
                                     " input_tokens=batch_backends.input_tokens+$5,"
                                     " output_tokens=batch_backends.output_tokens+$6,"
                                     " cached_tokens=batch_backends.cached_tokens+$7",
                                     &c);
            if (!u) {
                rc = NS_ERR_IO;
                goto rollback;
            }
            PQclear(u);
        }
        struct store_pg_args b = {0};
        for (int k = 0; k < 6; k++)
            store_pg_arg_i64(&b, sum[k]);
        store_pg_arg_text(&b, rs[i].batch_id);
        PGresult *r = store_pg_q(st,
                                 "UPDATE batches SET completed=completed+$1, failed=failed+$2, input_tokens=input_tokens+$3,"
                                 " output_tokens=output_tokens+$4, cached_tokens=cached_tokens+$5,"
                                 " prompt_computed=prompt_computed+$6 WHERE id=$7",
                                 &b);
        if (!r) {
            rc = NS_ERR_IO;
            goto rollback;
        }
        PQclear(r);
        i = j;
    }
    rc = store_pg_exec(st, "COMMIT");
    if (rc == NS_OK)
        goto out;
rollback:
    rc = store_pg_rollback(st, rc);
out:
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* start-up: this node's own running lines go back to pending now (another node's are
 * theirs until their lease runs out) */
int store_pg_lines_requeue(struct store *st)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, st->node);
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st, "UPDATE lines SET state=0, lease_until=0 WHERE node=$1 AND state=1", &a);
    pthread_mutex_unlock(&st->mu);
    PQclear(r);
    return r ? NS_OK : NS_ERR_IO;
}

int store_pg_lines_fail_unfinished(struct store *st, const char *batch_id, bool running_too,
                                   enum store_fail_kind kind, char *(*make)(void *ud, const char *custom_id),
                                   void *ud)
{
    int rc = NS_ERR_IO;
    int64_t nfail = 0;
    PGresult *r = NULL;
    pthread_mutex_lock(&st->mu);
    if (store_pg_exec(st, "BEGIN"))
        goto out;
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, batch_id);
    store_pg_arg_text(&a, running_too ? "true" : "false");
    store_pg_arg_text(&a, st->node);
    /* running lines: this node's, and those whose node stopped renewing; a line another
     * live node runs is its to finish or to settle when it sees the batch stop */
    if (!(r = store_pg_q(st,
                         "SELECT idx, custom_id FROM lines WHERE batch_id=$1 AND (state=0 OR (state=1 AND $2::boolean AND "
                         "(node=$3 OR lease_until < " PG_NOW_MS "))) FOR UPDATE",
                         &a)))
        goto rollback;
    for (int i = 0; i < PQntuples(r); i++) {
        char *json = make(ud, PQgetvalue(r, i, 1));
        if (!json)
            goto rollback;
        struct store_pg_args u = {0};
        store_pg_arg_text(&u, json);
        store_pg_arg_text(&u, batch_id);
        store_pg_arg_text(&u, PQgetvalue(r, i, 0));
        PGresult *w = store_pg_q(st, "UPDATE lines SET state=3, result=$1 WHERE batch_id=$2 AND idx=$3::bigint", &u);
        free(json);
        if (!w)
            goto rollback;
        PQclear(w);
        nfail++;
    }
    PQclear(r);
    struct store_pg_args b = {0};
    store_pg_arg_i64(&b, nfail);
    store_pg_arg_text(&b, batch_id);
    r = store_pg_q(st,
                   kind == SF_EXPIRED ? "UPDATE batches SET failed=failed+$1, expired=expired+$1 WHERE id=$2"
                                      : "UPDATE batches SET failed=failed+$1, canceled=canceled+$1 WHERE id=$2",
                   &b);
    if (!r)
        goto rollback;
    PQclear(r);
    r = NULL;
    if (store_pg_exec(st, "COMMIT") == NS_OK) {
        rc = NS_OK;
        goto out;
    }
rollback:
    PQclear(r);
    r = NULL;
    rc = store_pg_rollback(st, rc);
out:
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int store_pg_lines_count_unfinished(struct store *st, const char *batch_id, int64_t *pending, int64_t *running)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, batch_id);
    *pending = *running = 0;
    /* a running line whose lease ran out is pending again: someone must claim it */
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st,
                             "SELECT count(*) FILTER (WHERE state=0 OR lease_until < " PG_NOW_MS "),"
                             " count(*) FILTER (WHERE state=1 AND lease_until >= " PG_NOW_MS ")"
                             " FROM lines WHERE batch_id=$1 AND state<2",
                             &a);
    pthread_mutex_unlock(&st->mu);
    if (!r || PQntuples(r) != 1) {
        PQclear(r);
        return NS_ERR_IO;
    }
    *pending = store_pg_i64(r, 0, 0);
    *running = store_pg_i64(r, 0, 1);
    PQclear(r);
    return NS_OK;
}

int store_pg_batch_delete(struct store *st, const char *id)
{
    int rc = NS_ERR_IO;
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, id);
    pthread_mutex_lock(&st->mu);
    if (store_pg_exec(st, "BEGIN"))
        goto out;
    PGresult *r = store_pg_q(st, "DELETE FROM lines WHERE batch_id=$1", &a);
    if (!r)
        goto rollback;
    PQclear(r);
    if (!(r = store_pg_q(st, "DELETE FROM batch_backends WHERE batch_id=$1", &a)))
        goto rollback;
    PQclear(r);
    if (!(r = store_pg_q(st, "DELETE FROM batches WHERE id=$1", &a)))
        goto rollback;
    long changed = store_pg_changes(r);
    PQclear(r);
    if (store_pg_exec(st, "COMMIT") == NS_OK) {
        rc = changed ? NS_OK : NS_ERR_NOT_FOUND;
        goto out;
    }
rollback:
    rc = store_pg_rollback(st, rc);
out:
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int store_pg_lines_failed(struct store *st, const char *batch_id, struct store_line **out, int *n)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, batch_id);
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st,
                             "SELECT idx,line_no,custom_id,byte_off,byte_len,url,model FROM lines WHERE batch_id=$1 AND "
                             "state=3 ORDER BY line_no",
                             &a);
    pthread_mutex_unlock(&st->mu);
    void *arr = NULL;
    int rc = store_pg_rows(r, -1, sizeof(**out), pg_row_line, NULL, &arr, n);
    *out = arr;
    return rc;
}

int store_pg_lines_export(struct store *st, const char *batch_id, FILE *ok_out, FILE *err_out)
{
    int rc = NS_ERR_IO;
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, batch_id);
    pthread_mutex_lock(&st->mu);
    store_pg_alive(st);
    /* row by row (single-row mode): a 50,000-line batch's results are never all in memory */
    if (!PQsendQueryParams(st->conn, "SELECT state, result FROM lines WHERE batch_id=$1 AND state>=2 ORDER BY line_no",
                           a.n, NULL, a.v, NULL, NULL, 0) ||
        !PQsetSingleRowMode(st->conn))
        goto drain;
    bool ok = true;
    PGresult *r;
    while ((r = PQgetResult(st->conn)) != NULL) {
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_SINGLE_TUPLE && ok) {
            FILE *f = store_pg_i64(r, 0, 0) == SL_OK ? ok_out : err_out;
            if (f) {
                size_t len = (size_t)PQgetlength(r, 0, 1);
                if ((len && fwrite(PQgetvalue(r, 0, 1), 1, len, f) != len) || fputc('\n', f) == EOF)
                    ok = false;
            }
        } else if (s == PGRES_TUPLES_OK) {
            if (ok)
                rc = NS_OK;
        } else if (s != PGRES_SINGLE_TUPLE) {
            ok = false;
        }
        PQclear(r);
    }
    goto out;
drain:
    while ((r = PQgetResult(st->conn)) != NULL)
        PQclear(r);
out:
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* ---- webhooks ------------------------------------------------------------------------ */

#define PG_WEBHOOK_COLS                                                                                            \
    "id,batch_id,type,endpoint,url,body,created_at,next_at,delivered_at,attempts,last_status,state,last_error"

/* a store_pg_row_fn */
static void pg_row_webhook(const PGresult *r, int i, void *elem, void *ud)
{
    (void)ud;
    struct store_webhook *w = elem;
    memset(w, 0, sizeof(*w));
    store_pg_copy(w->id, sizeof(w->id), r, i, 0);
    store_pg_copy(w->batch_id, sizeof(w->batch_id), r, i, 1);
    store_pg_copy(w->type, sizeof(w->type), r, i, 2);
    store_pg_copy(w->endpoint, sizeof(w->endpoint), r, i, 3);
    w->url = store_pg_dup(r, i, 4);
    w->body = store_pg_dup(r, i, 5);
    w->created_at = store_pg_i64(r, i, 6);
    w->next_at = store_pg_i64(r, i, 7);
    w->delivered_at = store_pg_i64(r, i, 8);
    w->attempts = (int)store_pg_i64(r, i, 9);
    w->last_status = (int)store_pg_i64(r, i, 10);
    w->state = (int)store_pg_i64(r, i, 11);
    store_pg_copy(w->last_error, sizeof(w->last_error), r, i, 12);
}

int store_pg_webhook_insert(struct store *st, const struct store_webhook *w)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, w->id);
    store_pg_arg_text(&a, w->batch_id);
    store_pg_arg_text(&a, w->type);
    store_pg_arg_text(&a, w->endpoint);
    store_pg_arg_text(&a, w->url);
    store_pg_arg_text(&a, w->body);
    store_pg_arg_i64(&a, w->created_at);
    store_pg_arg_i64(&a, w->next_at);
    store_pg_arg_i64(&a, w->delivered_at);
    store_pg_arg_i64(&a, w->attempts);
    store_pg_arg_i64(&a, w->last_status);
    store_pg_arg_i64(&a, w->state);
    store_pg_arg_text(&a, w->last_error);
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st,
                             "INSERT INTO webhooks(" PG_WEBHOOK_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
                             &a);
    int rc = r ? NS_OK : st->fail;
    pthread_mutex_unlock(&st->mu);
    PQclear(r);
    return rc;
}

static int pg_webhooks_rows(PGresult *r, int max, struct store_webhook **out, int *n)
{
    void *arr = NULL;
    int rc = store_pg_rows(r, max, sizeof(**out), pg_row_webhook, NULL, &arr, n);
    *out = arr;
    return rc;
}

/* due deliveries, claimed: their next_at moves a minute on in the same statement, so no
 * other node takes them while this one tries (webhook_update sets the real next try) */
int store_pg_webhooks_due(struct store *st, int64_t now, int max, struct store_webhook **out, int *n)
{
    struct store_pg_args a = {0};
    store_pg_arg_i64(&a, now);
    store_pg_arg_i64(&a, max);
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st,
                             "WITH c AS (SELECT id FROM webhooks WHERE state=0 AND next_at<=$1 ORDER BY next_at LIMIT $2 "
                             "FOR UPDATE SKIP LOCKED) "
                             "UPDATE webhooks w SET next_at=$1 + 60 FROM c WHERE w.id=c.id RETURNING w.id,w.batch_id,w.type,"
                             "w.endpoint,w.url,w.body,w.created_at,$1::bigint,w.delivered_at,w.attempts,w.last_status,"
                             "w.state,w.last_error",
                             &a);
    pthread_mutex_unlock(&st->mu);
    return pg_webhooks_rows(r, max, out, n);
}

int store_pg_webhooks_list(struct store *st, const char *batch_id, int limit, struct store_webhook **out, int *n)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, batch_id);
    store_pg_arg_i64(&a, limit);
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st,
                             "SELECT " PG_WEBHOOK_COLS " FROM webhooks WHERE ($1::text IS NULL OR batch_id=$1) "
                             "ORDER BY created_at DESC, id LIMIT $2",
                             &a);
    pthread_mutex_unlock(&st->mu);
    return pg_webhooks_rows(r, limit, out, n);
}

int store_pg_webhook_update(struct store *st, const struct store_webhook *w)
{
    struct store_pg_args a = {0};
    store_pg_arg_i64(&a, w->next_at);
    store_pg_arg_i64(&a, w->delivered_at);
    store_pg_arg_i64(&a, w->attempts);
    store_pg_arg_i64(&a, w->last_status);
    store_pg_arg_i64(&a, w->state);
    store_pg_arg_text(&a, w->last_error);
    store_pg_arg_text(&a, w->id);
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st,
                             "UPDATE webhooks SET next_at=$1, delivered_at=$2, attempts=$3, last_status=$4, state=$5, "
                             "last_error=$6 WHERE id=$7",
                             &a);
    pthread_mutex_unlock(&st->mu);
    PQclear(r);
    return r ? NS_OK : NS_ERR_IO;
}

/* ---- API keys ----------------------------------------------------------------------------- */

int store_pg_key_insert(struct store *st, const struct store_key *k, const char *hash_hex)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, hash_hex);
    store_pg_arg_text(&a, k->name);
    store_pg_arg_text(&a, k->project);
    store_pg_arg_text(&a, k->admin ? "true" : "false");
    store_pg_arg_i64(&a, k->created_at);
    const int64_t lims[3] = {k->rpm, k->tokens_per_day, k->batch_queue_tokens};
    for (int i = 0; i < 3; i++) {
        if (lims[i] < 0)
            store_pg_arg_text(&a, NULL); /* not set: the server's default */
        else
            store_pg_arg_i64(&a, lims[i]);
    }
    pthread_mutex_lock(&st->mu);
    store_pg_alive(st);
    PGresult *r = PQexecParams(st->conn,
                               "INSERT INTO keys(hash,name,project,admin,created_at,rpm,tokens_per_day,"
                               "batch_queue_tokens) VALUES($1,$2,$3,$4,$5,$6,$7,$8)",
                               a.n, NULL, a.v, NULL, NULL, 0);
    int rc = NS_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        store_note_error(PQresultErrorMessage(r));
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        rc = state && strcmp(state, "23505") == 0 ? NS_ERR_CONFLICT : NS_ERR_IO; /* unique_violation */
    }
    PQclear(r);
    if (rc == NS_OK && store_pg_exec(st, "INSERT INTO keys_ever VALUES(1) ON CONFLICT DO NOTHING"))
        rc = NS_ERR_IO;
    pthread_mutex_unlock(&st->mu);
    return rc;
}

#define PG_KEY_COLS "name,project,admin,created_at,rpm,tokens_per_day,batch_queue_tokens,revoked_at"

/* a store_pg_row_fn: a key's limits that are NULL are -1 (not set) */
static void pg_row_key(const PGresult *r, int i, void *elem, void *ud)
{
    (void)ud;
    struct store_key *k = elem;
    memset(k, 0, sizeof(*k));
    store_pg_copy(k->name, sizeof(k->name), r, i, 0);
    store_pg_copy(k->project, sizeof(k->project), r, i, 1);
    k->admin = PQgetvalue(r, i, 2)[0] == 't';
    k->created_at = store_pg_i64(r, i, 3);
    int64_t *lims[3] = {&k->rpm, &k->tokens_per_day, &k->batch_queue_tokens};
    for (int j = 0; j < 3; j++)
        *lims[j] = PQgetisnull(r, i, 4 + j) ? -1 : store_pg_i64(r, i, 4 + j);
    k->revoked_at = store_pg_i64(r, i, 7);
}

int store_pg_key_get(struct store *st, const char *hash_hex, struct store_key *out)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, hash_hex);
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st, "SELECT " PG_KEY_COLS " FROM keys WHERE hash=$1 AND revoked_at=0", &a);
    int rc = !r ? NS_ERR_IO : PQntuples(r) == 1 ? NS_OK : NS_ERR_NOT_FOUND;
    if (!rc)
        pg_row_key(r, 0, out, NULL);
    PQclear(r);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int store_pg_key_count(struct store *st, int64_t *n)
{
    *n = 0;
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st, "SELECT (SELECT count(*) FROM keys) + (SELECT count(*) FROM keys_ever)", NULL);
    int rc = r && PQntuples(r) == 1 ? NS_OK : NS_ERR_IO;
    if (!rc)
        *n = store_pg_i64(r, 0, 0);
    PQclear(r);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int store_pg_key_list(struct store *st, struct store_key **out, int *n)
{
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st, "SELECT " PG_KEY_COLS " FROM keys ORDER BY created_at, name", NULL);
    pthread_mutex_unlock(&st->mu);
    void *arr = NULL;
    int rc = store_pg_rows(r, -1, sizeof(**out), pg_row_key, NULL, &arr, n);
    *out = arr;
    return rc;
}

/* one UPDATE of the active key named $2: NS_ERR_NOT_FOUND when it changed no row */
static int pg_key_update(struct store *st, const char *sql, const char *name, const char *value)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, value);
    store_pg_arg_text(&a, name);
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st, sql, &a);
    pthread_mutex_unlock(&st->mu);
    if (!r)
        return NS_ERR_IO;
    int rc = strcmp(PQcmdTuples(r), "0") == 0 ? NS_ERR_NOT_FOUND : NS_OK;
    PQclear(r);
    return rc;
}

int store_pg_key_revoke(struct store *st, const char *name, int64_t at)
{
    char v[24];
    snprintf(v, sizeof(v), "%lld", (long long)(at > 0 ? at : 1));
    return pg_key_update(st, "UPDATE keys SET revoked_at=$1::bigint WHERE name=$2 AND revoked_at=0", name, v);
}

int store_pg_key_rotate(struct store *st, const char *name, const char *hash_hex)
{
    return pg_key_update(st, "UPDATE keys SET hash=$1 WHERE name=$2 AND revoked_at=0", name, hash_hex);
}

int store_pg_node_id(struct store *st, char *out, size_t n)
{
    snprintf(out, n, "%s", st->node);
    return NS_OK;
}


/* ---- routing lines between backends (store.h: lines.route, release, routes) ------------ */

int store_pg_lines_route(struct store *st, const char *batch_id, const char *model, const char *from, const char *to,
                         int64_t max, int64_t *moved)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, batch_id);
    store_pg_arg_text(&a, model);
    store_pg_arg_text(&a, from);
    store_pg_arg_text(&a, to);
    store_pg_arg_i64(&a, max);
    *moved = 0;
    /* rows another node is claiming right now are skipped (they are no longer pending) */
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st,
                             "WITH c AS (SELECT idx FROM lines WHERE batch_id=$1 AND state=0 AND "
                             "coalesce(backend, model)=$3 AND ($2::text IS NULL OR model=$2) ORDER BY idx DESC "
                             "LIMIT $5::bigint FOR UPDATE SKIP LOCKED) "
                             "UPDATE lines l SET backend=$4 FROM c WHERE l.batch_id=$1 AND l.idx=c.idx AND l.state=0",
                             &a);
    int rc = r ? NS_OK : st->fail;
    if (r)
        *moved = store_pg_changes(r);
    pthread_mutex_unlock(&st->mu);
    PQclear(r);
    return rc;
}

int store_pg_lines_release(struct store *st, const char *batch_id, const int64_t *idx, int n, const char *to)
{
    struct buf arr;
    buf_init(&arr, PG_BUF_MAX);
    int rc = buf_append(&arr, "{", 1);
    for (int i = 0; i < n && !rc; i++)
        rc = buf_appendf(&arr, "%s%lld", i ? "," : "", (long long)idx[i]);
    if (!rc)
        rc = buf_append(&arr, "}", 1);
    if (rc) {
        buf_release(&arr);
        return rc;
    }
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, batch_id);
    store_pg_arg_text(&a, arr.p);
    store_pg_arg_text(&a, to);
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st,
                             "UPDATE lines SET state=0, lease_until=0, backend=coalesce($3::text, backend) "
                             "WHERE batch_id=$1 AND idx=ANY($2::bigint[]) AND state=1",
                             &a);
    rc = r ? NS_OK : st->fail;
    pthread_mutex_unlock(&st->mu);
    PQclear(r);
    buf_release(&arr);
    return rc;
}

int store_pg_lines_routes(struct store *st, const char *batch_id, struct store_route **out, int *n)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, batch_id);
    int rc = NS_OK, cap = 0;
    struct store_route *arr = NULL;
    *out = NULL;
    *n = 0;
    static const char *const sql[2] = {
        "SELECT coalesce(backend, model, ''), state, count(*) FROM lines WHERE batch_id=$1 AND state<2 GROUP BY 1, 2",
        "SELECT backend, completed, failed, input_tokens, output_tokens, cached_tokens FROM batch_backends "
        "WHERE batch_id=$1 ORDER BY backend"};
    for (int q = 0; q < 2 && rc == NS_OK; q++) {
        pthread_mutex_lock(&st->mu);
        PGresult *r = store_pg_q(st, sql[q], &a);
        pthread_mutex_unlock(&st->mu);
        if (!r) {
            rc = NS_ERR_IO;
            break;
        }
        for (int row = 0; row < PQntuples(r) && rc == NS_OK; row++) {
            struct store_route *x = store_route_row(&arr, n, &cap, PQgetvalue(r, row, 0));
            if (!x) {
                rc = NS_ERR_NOMEM;
                break;
            }
            if (q == 0) {
                if (store_pg_i64(r, row, 1) == SL_PENDING)
                    x->pending = store_pg_i64(r, row, 2);
                else
                    x->running = store_pg_i64(r, row, 2);
            } else {
                x->completed = store_pg_i64(r, row, 1);
                x->failed = store_pg_i64(r, row, 2);
                x->input_tokens = store_pg_i64(r, row, 3);
                x->output_tokens = store_pg_i64(r, row, 4);
                x->cached_tokens = store_pg_i64(r, row, 5);
            }
        }
        PQclear(r);
    }
    if (rc) {
        free(arr);
        *n = 0;
        return rc;
    }
    *out = arr;
    return NS_OK;
}
