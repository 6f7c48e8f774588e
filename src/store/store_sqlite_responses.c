/*
 * store_sqlite_responses.c — the SQLite store's Responses API objects (store.h: struct
 * store_response, the .response operations): one row each in table `responses`, whose
 * status changes only by compare-and-set (update), and whose request and body texts the
 * store keeps as they are.
 *
 * THREADS: every operation takes the store's mutex, as the others of store_sqlite.c do.
 */
#include "store_sqlite_int.h"

#include "../util/status.h"

#include <stdlib.h>
#include <string.h>

#define SQ_RESPONSE_COLS "id,owner,created_at,status,background,model,previous_id,request,body,seq"

/* a row of SQ_RESPONSE_COLS into r: NS_OK, or NS_ERR_NOMEM (r released) */
static int sq_row_response(sqlite3_stmt *s, struct store_response *r)
{
    memset(r, 0, sizeof(*r));
    store_sqlite_copy(r->id, sizeof(r->id), s, 0);
    store_sqlite_copy(r->owner, sizeof(r->owner), s, 1);
    r->created_at = sqlite3_column_int64(s, 2);
    r->status = (enum store_response_status)sqlite3_column_int(s, 3);
    r->background = sqlite3_column_int(s, 4) != 0;
    r->model = store_sqlite_dup(s, 5);
    r->previous_id = store_sqlite_dup(s, 6);
    r->request = store_sqlite_dup(s, 7);
    r->body = store_sqlite_dup(s, 8);
    r->seq = sqlite3_column_int64(s, 9);
    if (!r->model || !r->request || !r->body ||
        (!r->previous_id && sqlite3_column_type(s, 6) != SQLITE_NULL)) {
        store_response_release(r);
        return NS_ERR_NOMEM;
    }
    return NS_OK;
}

int store_sqlite_response_insert(struct store *st, struct store_response *r)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    if (!r->model || !r->request || !r->body)
        return NS_ERR_INTERNAL; /* store.h: the caller's bug */
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO responses(id,owner,created_at,status,background,model,previous_id,request,body) "
                           "VALUES(?,?,?,?,?,?,?,?,?) RETURNING seq",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, r->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, r->owner, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, r->created_at);
        sqlite3_bind_int(s, 4, (int)r->status);
        sqlite3_bind_int(s, 5, r->background ? 1 : 0);
        sqlite3_bind_text(s, 6, r->model, -1, SQLITE_STATIC);
        if (r->previous_id)
            sqlite3_bind_text(s, 7, r->previous_id, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 7);
        sqlite3_bind_text(s, 8, r->request, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 9, r->body, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW) {
            r->seq = sqlite3_column_int64(s, 0);
            rc = NS_OK;
        } else if (sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_UNIQUE) {
            rc = NS_ERR_CONFLICT; /* the id exists */
        }
    }
    if (rc == NS_ERR_IO)
        rc = store_sqlite_fail(st); /* prepare or step failed: why */
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int store_sqlite_response_get(struct store *st, const char *id, struct store_response *out)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, "SELECT " SQ_RESPONSE_COLS " FROM responses WHERE id=?", -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        int r = sqlite3_step(s);
        if (r == SQLITE_ROW)
            rc = sq_row_response(s, out);
        else if (r == SQLITE_DONE)
            rc = NS_ERR_NOT_FOUND;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int store_sqlite_response_update(struct store *st, const struct store_response *r, enum store_response_status expect)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    if (!r->body)
        return NS_ERR_INTERNAL; /* store.h: the caller's bug */
    pthread_mutex_lock(&st->mu);
    /* one transaction: the update when the status is still `expect`, else whether the row
     * is there (the changes count alone cannot tell a moved-on status from a deleted row) */
    if ((rc = store_sqlite_exec(st, "BEGIN IMMEDIATE")))
        goto out;
    if (sqlite3_prepare_v2(st->db, "UPDATE responses SET status=?1, body=?2 WHERE id=?3 AND status=?4", -1, &s, NULL) !=
        SQLITE_OK)
        goto rollback;
    sqlite3_bind_int(s, 1, (int)r->status);
    sqlite3_bind_text(s, 2, r->body, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, r->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 4, (int)expect);
    if (sqlite3_step(s) != SQLITE_DONE)
        goto rollback;
    rc = NS_OK;
    if (!sqlite3_changes(st->db)) {
        /* not updated: gone, or its status moved on */
        sqlite3_finalize(s);
        if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM responses WHERE id=?", -1, &s, NULL) != SQLITE_OK)
            goto rollback;
        sqlite3_bind_text(s, 1, r->id, -1, SQLITE_STATIC);
        int step = sqlite3_step(s);
        if (step != SQLITE_ROW && step != SQLITE_DONE)
            goto rollback;
        rc = step == SQLITE_ROW ? NS_ERR_CONFLICT : NS_ERR_NOT_FOUND;
    }
    if (store_sqlite_exec(st, "COMMIT") == NS_OK)
        goto out;
rollback:
    rc = store_sqlite_fail(st); /* before ROLLBACK sets its own */
    store_sqlite_exec(st, "ROLLBACK");
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* one DELETE with an id (or, id NULL, a time bound): *changed rows deleted */
static int sq_response_remove(struct store *st, const char *sql, const char *id, int64_t before, int64_t *changed)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    *changed = 0;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) == SQLITE_OK) {
        if (id)
            sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        else
            sqlite3_bind_int64(s, 1, before);
        if (sqlite3_step(s) == SQLITE_DONE) {
            *changed = sqlite3_changes(st->db); /* not changes64: SQLite 3.35 is enough */
            rc = NS_OK;
        }
    }
    if (rc == NS_ERR_IO)
        rc = store_sqlite_fail(st); /* prepare or step failed: why */
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

int store_sqlite_response_delete(struct store *st, const char *id)
{
    int64_t n = 0;
    int rc = sq_response_remove(st, "DELETE FROM responses WHERE id=?", id, 0, &n);
    return rc ? rc : n ? NS_OK : NS_ERR_NOT_FOUND;
}

int store_sqlite_response_expire(struct store *st, int64_t before, int64_t *n_deleted)
{
    return sq_response_remove(st, "DELETE FROM responses WHERE created_at < ?", NULL, before, n_deleted);
}

int store_sqlite_response_ids_by_status(struct store *st, enum store_response_status status, char (**ids)[48], int *n)
{
    return store_sqlite_ids(st, "SELECT id FROM responses WHERE status=? ORDER BY seq", (int)status, ids, n);
}
