/*
 * store_sqlite_routes.c — the SQLite store's routing of batch lines between backends
 * (store.h: lines.route, lines.release, lines.routes): spill-over and fail-over move a
 * line's route (lines.backend; NULL = its own model), and lines_finish counts each
 * finished line in the share of the backend that ran it (table batch_backends), in the
 * same transaction as the line.
 *
 * THREADS: as store_sqlite.c (one connection, its mutex).
 */
#include "store_sqlite_int.h"

#include "../util/status.h"

#include <stdlib.h>
#include <string.h>

int store_sqlite_backend_add(struct store *st, const char *batch_id, const char *backend, const int64_t sum[5])
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO batch_backends(batch_id,backend,completed,failed,input_tokens,output_tokens,"
                           "cached_tokens) VALUES(?1,?2,?3,?4,?5,?6,?7) ON CONFLICT(batch_id,backend) DO UPDATE SET "
                           "completed=completed+?3, failed=failed+?4, input_tokens=input_tokens+?5,"
                           " output_tokens=output_tokens+?6, cached_tokens=cached_tokens+?7",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, batch_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, backend, -1, SQLITE_STATIC);
        for (int k = 0; k < 5; k++)
            sqlite3_bind_int64(s, 3 + k, sum[k]);
        if (sqlite3_step(s) == SQLITE_DONE)
            rc = NS_OK;
    }
    sqlite3_finalize(s);
    return rc;
}

int store_sqlite_lines_route(struct store *st, const char *batch_id, const char *model, const char *from,
                             const char *to, int64_t max, int64_t *moved)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    *moved = 0;
    pthread_mutex_lock(&st->mu);
    /* one statement: atomic against claim (which takes the same lock) */
    if (sqlite3_prepare_v2(st->db,
                           "UPDATE lines SET backend=?4 WHERE batch_id=?1 AND idx IN (SELECT idx FROM lines "
                           "WHERE batch_id=?1 AND state=0 AND coalesce(backend, model)=?3 AND (?2 IS NULL OR model=?2) "
                           "ORDER BY idx DESC LIMIT ?5)",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, batch_id, -1, SQLITE_STATIC);
        if (model)
            sqlite3_bind_text(s, 2, model, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, from, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, to, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, max);
        if (sqlite3_step(s) == SQLITE_DONE) {
            rc = NS_OK;
            *moved = sqlite3_changes(st->db);
        }
    }
    if (rc)
        rc = store_sqlite_fail(st);
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int store_sqlite_lines_release(struct store *st, const char *batch_id, const int64_t *idx, int n, const char *to)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if ((rc = store_sqlite_exec(st, "BEGIN IMMEDIATE")))
        goto out;
    if (sqlite3_prepare_v2(st->db,
                           "UPDATE lines SET state=0, backend=coalesce(?3, backend) WHERE batch_id=?1 AND idx=?2 AND state=1",
                           -1, &s, NULL) != SQLITE_OK)
        goto rollback;
    for (int i = 0; i < n; i++) {
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, batch_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, idx[i]);
        if (to)
            sqlite3_bind_text(s, 3, to, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 3);
        if (sqlite3_step(s) != SQLITE_DONE)
            goto rollback;
    }
    if (store_sqlite_exec(st, "COMMIT") == NS_OK) {
        rc = NS_OK;
        goto out;
    }
rollback:
    rc = store_sqlite_fail(st);
    store_sqlite_exec(st, "ROLLBACK");
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int store_sqlite_lines_routes(struct store *st, const char *batch_id, struct store_route **out, int *n)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_OK, cap = 0;
    struct store_route *arr = NULL;
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&st->mu);
    /* unfinished lines by route, then the finished shares */
    static const char *const sql[2] = {
        "SELECT coalesce(backend, model, ''), state, count(*) FROM lines WHERE batch_id=?1 AND state<2 GROUP BY 1, 2",
        "SELECT backend, completed, failed, input_tokens, output_tokens, cached_tokens FROM batch_backends "
        "WHERE batch_id=?1 ORDER BY backend"};
    for (int q = 0; q < 2 && rc == NS_OK; q++) {
        if (sqlite3_prepare_v2(st->db, sql[q], -1, &s, NULL) != SQLITE_OK) {
            rc = store_sqlite_fail(st);
            break;
        }
        sqlite3_bind_text(s, 1, batch_id, -1, SQLITE_STATIC);
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            struct store_route *row = store_route_row(&arr, n, &cap, (const char *)sqlite3_column_text(s, 0));
            if (!row) {
                rc = NS_ERR_NOMEM;
                break;
            }
            if (q == 0) {
                if (sqlite3_column_int(s, 1) == SL_PENDING)
                    row->pending = sqlite3_column_int64(s, 2);
                else
                    row->running = sqlite3_column_int64(s, 2);
            } else {
                row->completed = sqlite3_column_int64(s, 1);
                row->failed = sqlite3_column_int64(s, 2);
                row->input_tokens = sqlite3_column_int64(s, 3);
                row->output_tokens = sqlite3_column_int64(s, 4);
                row->cached_tokens = sqlite3_column_int64(s, 5);
            }
        }
        if (rc == NS_OK && r != SQLITE_DONE)
            rc = store_sqlite_fail(st);
        sqlite3_finalize(s);
        s = NULL;
    }
    pthread_mutex_unlock(&st->mu);
    if (rc) {
        free(arr);
        *n = 0;
        return rc;
    }
    *out = arr;
    return NS_OK;
}
