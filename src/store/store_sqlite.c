/*
 * store_sqlite.c — the embedded store: one SQLite database in WAL mode under the data dir.
 *
 * One connection, one mutex: SQLite serialises writers anyway, and batch work writes in
 * small transactions (a line and its batch's counters). Statements are prepared per call;
 * the hot path (lines_finish, lines_claim) costs a few tens of microseconds.
 *
 * Schema versioned in user_version; a newer database is refused, not guessed at.
 *
 * Contention: the busy timeout (10 s) waits for another connection's lock; a failure that is
 * still SQLITE_BUSY or SQLITE_LOCKED (the timeout ran out, a stale snapshot) rolls back and
 * is NS_ERR_BUSY, which the store.h wrappers try again where that is safe.
 *
 * Backup, restore and the other whole-store operations live in store_sqlite_admin.c.
 */
#include "store_sqlite_int.h"

#include "../util/status.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static const char sq_schema[] =
    "CREATE TABLE IF NOT EXISTS files("
    "  id TEXT PRIMARY KEY, owner TEXT NOT NULL, purpose TEXT NOT NULL, filename TEXT NOT NULL,"
    "  bytes INTEGER NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL DEFAULT 0,"
    "  path TEXT NOT NULL, seq INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS batches("
    "  id TEXT PRIMARY KEY, owner TEXT NOT NULL, endpoint TEXT NOT NULL, model TEXT,"
    "  input_file_id TEXT NOT NULL, completion_window TEXT NOT NULL, status INTEGER NOT NULL,"
    "  output_file_id TEXT NOT NULL DEFAULT '', error_file_id TEXT NOT NULL DEFAULT '',"
    "  created_at INTEGER NOT NULL, in_progress_at INTEGER NOT NULL DEFAULT 0, expires_at INTEGER NOT NULL DEFAULT 0,"
    "  finalizing_at INTEGER NOT NULL DEFAULT 0, completed_at INTEGER NOT NULL DEFAULT 0,"
    "  failed_at INTEGER NOT NULL DEFAULT 0, expired_at INTEGER NOT NULL DEFAULT 0,"
    "  cancelling_at INTEGER NOT NULL DEFAULT 0, cancelled_at INTEGER NOT NULL DEFAULT 0,"
    "  total INTEGER NOT NULL DEFAULT 0, completed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,"
    "  input_tokens INTEGER NOT NULL DEFAULT 0, cached_tokens INTEGER NOT NULL DEFAULT 0,"
    "  output_tokens INTEGER NOT NULL DEFAULT 0, prompt_computed INTEGER NOT NULL DEFAULT 0,"
    "  metadata TEXT, errors TEXT, output_expires_after INTEGER NOT NULL DEFAULT 0,"
    "  not_before INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS batches_status ON batches(status);"
    "CREATE TABLE IF NOT EXISTS lines("
    "  batch_id TEXT NOT NULL, idx INTEGER NOT NULL, line_no INTEGER NOT NULL, custom_id TEXT NOT NULL,"
    "  off INTEGER NOT NULL, len INTEGER NOT NULL, url INTEGER NOT NULL, state INTEGER NOT NULL DEFAULT 0,"
    "  result TEXT, PRIMARY KEY(batch_id, idx)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS lines_state ON lines(batch_id, state, idx);";

/* SQLite's error log (SQLITE_CONFIG_LOG): every failure of every statement, on the thread
 * that met it, noted for store_last_error() with SQLite's own words for the code (no SQL) */
static void sq_log(void *ud, int code, const char *msg)
{
    (void)ud;
    (void)msg;
    int primary = code & 0xff;
    if (primary != SQLITE_NOTICE && primary != SQLITE_WARNING && primary != SQLITE_SCHEMA && primary != SQLITE_OK)
        store_note_error(sqlite3_errstr(code));
}

static void sq_log_once(void)
{
    /* only before SQLite initialises (a no-op, refused, when something opened one first) */
    sqlite3_config(SQLITE_CONFIG_LOG, sq_log, NULL);
}

int store_status_of_sqlite(int code)
{
    int primary = code & 0xff;
    return primary == SQLITE_BUSY || primary == SQLITE_LOCKED ? NS_ERR_BUSY : NS_ERR_IO;
}

/* the status of a failure with SQLite's code: NS_ERR_BUSY when the database was contended
 * (store.h), else NS_ERR_IO; noted for store_last_error() here too, as SQLite's error log
 * leaves out a busy timeout that ran out */
static int sq_status(int code)
{
    int primary = code & 0xff;
    if (primary != SQLITE_OK && primary != SQLITE_ROW && primary != SQLITE_DONE)
        store_note_error(sqlite3_errstr(code)); /* else: not SQLite's failure (a make() that failed) */
    return store_status_of_sqlite(code);
}

/* the status of the statement that just failed on st's connection */
int store_sqlite_fail(struct store *st)
{
    return sq_status(sqlite3_extended_errcode(st->db));
}

int store_sqlite_exec(struct store *st, const char *sql)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? NS_OK : sq_status(rc);
}

/* the database file of a URI: sqlite:PATH, PATH, or (none) DATA_DIR/nightshift.db */
void store_sqlite_path(const char *uri, const char *data_dir, char *path, size_t n)
{
    const char *p = uri;
    if (p && strncmp(p, "sqlite:", 7) == 0)
        p += 7;
    if (!p || !*p)
        snprintf(path, n, "%s/nightshift.db", data_dir);
    else
        snprintf(path, n, "%s", p);
}

/* user_version of an open database; -1 when it cannot be read (not a database) */
int store_sqlite_user_version(sqlite3 *db)
{
    sqlite3_stmt *s = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return version;
}

static int sq_open(const char *uri, const char *data_dir, struct store **out, char *err, size_t errlen)
{
    char path[4096];
    struct store *st = NULL;
    int rc = NS_OK;
    *out = NULL;
    store_sqlite_path(uri, data_dir, path, sizeof(path));
    static pthread_once_t log_once = PTHREAD_ONCE_INIT;
    pthread_once(&log_once, sq_log_once);
    st = calloc(1, sizeof(*st));
    if (!st)
        return NS_ERR_NOMEM;
    st->base.ops = &store_sqlite_ops;
    pthread_mutex_init(&st->mu, NULL);
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(err, errlen, "cannot open database '%s': %s", path, st->db ? sqlite3_errmsg(st->db) : "out of memory");
        rc = NS_ERR_IO;
        goto out;
    }
    sqlite3_busy_timeout(st->db, 10000);
    /* a 64 MB page cache and memory-mapped reads: a big batch's lines and results are read
     * back on every claim and at finalization, and pread copies dominated the profile */
    if (store_sqlite_exec(st, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; "
                    "PRAGMA cache_size=-65536; PRAGMA mmap_size=268435456;")) {
        snprintf(err, errlen, "cannot use database '%s': %s", path, sqlite3_errmsg(st->db));
        rc = NS_ERR_IO;
        goto out;
    }
    int version = store_sqlite_user_version(st->db);
    if (version < 0)
        version = 0; /* the PRAGMA above would have failed on a file that is no database */
    if (version > STORE_SQLITE_VERSION) {
        snprintf(err, errlen,
                 "database '%s' has schema version %d, newer than this nightshift understands (%d); "
                 "use a newer nightshift",
                 path, version, STORE_SQLITE_VERSION);
        rc = NS_ERR_CONFLICT;
        goto out;
    }
    /* version 1 creates the tables; each later version migrates the one before */
    static const char *const migrations[] = {
        [2] = "ALTER TABLE lines ADD COLUMN model TEXT;"
              "ALTER TABLE batches ADD COLUMN canceled INTEGER NOT NULL DEFAULT 0;"
              "ALTER TABLE batches ADD COLUMN expired INTEGER NOT NULL DEFAULT 0;",
        [3] = "CREATE TABLE IF NOT EXISTS webhooks("
              "  id TEXT PRIMARY KEY, batch_id TEXT NOT NULL, type TEXT NOT NULL, endpoint TEXT NOT NULL,"
              "  url TEXT NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL, next_at INTEGER NOT NULL,"
              "  delivered_at INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,"
              "  last_status INTEGER NOT NULL DEFAULT 0, state INTEGER NOT NULL DEFAULT 0,"
              "  last_error TEXT NOT NULL DEFAULT '');"
              "CREATE INDEX IF NOT EXISTS webhooks_due ON webhooks(state, next_at);"
              "CREATE INDEX IF NOT EXISTS webhooks_batch ON webhooks(batch_id);",
        [4] = "CREATE TABLE keys(hash TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, project TEXT NOT NULL,"
              "  admin INTEGER NOT NULL, created_at INTEGER NOT NULL);",
        /* a key's own limits (http/quota.h); NULL: the server's default */
        [5] = "ALTER TABLE keys ADD COLUMN rpm INTEGER;"
              "ALTER TABLE keys ADD COLUMN tokens_per_day INTEGER;"
              "ALTER TABLE keys ADD COLUMN batch_queue_tokens INTEGER;",
        /* revocation, and the mark that keys existed (store.h: key_count) */
        [6] = "ALTER TABLE keys ADD COLUMN revoked_at INTEGER NOT NULL DEFAULT 0;"
              "CREATE TABLE IF NOT EXISTS keys_ever(one INTEGER PRIMARY KEY CHECK(one = 1));"
              "INSERT OR IGNORE INTO keys_ever SELECT 1 FROM keys LIMIT 1;",
        /* stored Responses API objects (store.h: struct store_response); seq is the rowid,
         * AUTOINCREMENT so that it is never reused (PostgreSQL's bigserial is not either) */
        [7] = "CREATE TABLE responses(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
              "  owner TEXT NOT NULL, created_at INTEGER NOT NULL, status INTEGER NOT NULL,"
              "  background INTEGER NOT NULL, model TEXT NOT NULL, previous_id TEXT, request TEXT NOT NULL,"
              "  body TEXT NOT NULL);"
              "CREATE INDEX responses_status ON responses(status, seq);"
              "CREATE INDEX responses_created ON responses(created_at);",
        /* spill-over and fail-over (store.h: struct store_route): a line's route, and each
         * backend's share of a batch */
        [8] = "ALTER TABLE lines ADD COLUMN backend TEXT;"
              "CREATE TABLE batch_backends(batch_id TEXT NOT NULL, backend TEXT NOT NULL,"
              "  completed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,"
              "  input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,"
              "  cached_tokens INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(batch_id, backend)) WITHOUT ROWID;",
    };
    bool ok = store_sqlite_exec(st, "BEGIN") == NS_OK && (version >= 1 || store_sqlite_exec(st, sq_schema) == NS_OK);
    for (int v = version < 1 ? 2 : version + 1; ok && v <= STORE_SQLITE_VERSION; v++)
        ok = store_sqlite_exec(st, migrations[v]) == NS_OK;
    char setv[40];
    snprintf(setv, sizeof(setv), "PRAGMA user_version=%d", STORE_SQLITE_VERSION);
    if (!ok || store_sqlite_exec(st, setv) || store_sqlite_exec(st, "COMMIT")) {
        snprintf(err, errlen, "cannot create the schema in '%s': %s", path, sqlite3_errmsg(st->db));
        store_sqlite_exec(st, "ROLLBACK");
        rc = NS_ERR_IO;
        goto out;
    }
out:
    if (rc) {
        if (st->db)
            sqlite3_close(st->db);
        pthread_mutex_destroy(&st->mu);
        free(st);
        return rc;
    }
    *out = st;
    return NS_OK;
}

static void sq_close(struct store *st)
{
    if (!st)
        return;
    sqlite3_close(st->db);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

static int sq_check(struct store *st)
{
    pthread_mutex_lock(&st->mu);
    int rc = store_sqlite_exec(st, "BEGIN IMMEDIATE; COMMIT;");
    pthread_mutex_unlock(&st->mu);
    return rc;
}

char *store_sqlite_dup(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    return t ? strdup((const char *)t) : NULL;
}

void store_sqlite_copy(char *dst, size_t n, sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(dst, n, "%s", t ? (const char *)t : "");
}

/* ---- files -------------------------------------------------------------------------- */

static int sq_file_insert(struct store *st, const struct store_file *f)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO files(id,owner,purpose,filename,bytes,created_at,expires_at,path,seq) "
                           "VALUES(?,?,?,?,?,?,?,?,(SELECT coalesce(max(seq),0)+1 FROM files))",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, f->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, f->owner, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, f->purpose, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, f->filename ? f->filename : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, f->bytes);
        sqlite3_bind_int64(s, 6, f->created_at);
        sqlite3_bind_int64(s, 7, f->expires_at);
        sqlite3_bind_text(s, 8, f->path ? f->path : "", -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_DONE)
            rc = NS_OK;
    }
    if (rc == NS_ERR_IO)
        rc = store_sqlite_fail(st); /* prepare or step failed: why */
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

#define SQ_FILE_COLS "id,owner,purpose,filename,bytes,created_at,expires_at,path"

static void sq_row_file(sqlite3_stmt *s, struct store_file *f)
{
    memset(f, 0, sizeof(*f));
    store_sqlite_copy(f->id, sizeof(f->id), s, 0);
    store_sqlite_copy(f->owner, sizeof(f->owner), s, 1);
    store_sqlite_copy(f->purpose, sizeof(f->purpose), s, 2);
    f->filename = store_sqlite_dup(s, 3);
    f->bytes = sqlite3_column_int64(s, 4);
    f->created_at = sqlite3_column_int64(s, 5);
    f->expires_at = sqlite3_column_int64(s, 6);
    f->path = store_sqlite_dup(s, 7);
}

static int sq_file_get(struct store *st, const char *id, struct store_file *out)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, "SELECT " SQ_FILE_COLS " FROM files WHERE id=?", -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        int r = sqlite3_step(s);
        if (r == SQLITE_ROW) {
            sq_row_file(s, out);
            rc = NS_OK;
        } else if (r == SQLITE_DONE) {
            rc = NS_ERR_NOT_FOUND;
        }
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* seq of an id in a table, for keyset pagination; -1 when unknown */
/* seq of an id for keyset pagination, among the rows owner may see (NULL: all); -1 when
 * unknown: another project's id is a cursor like one that does not exist, so a list
 * cannot tell which ids exist elsewhere (issue 27.14) */
static int64_t sq_seq_of(struct store *st, const char *table, const char *id, const char *owner)
{
    char sql[128];
    sqlite3_stmt *s = NULL;
    int64_t seq = -1;
    snprintf(sql, sizeof(sql), "SELECT seq FROM %s WHERE id=?1 AND (?2 IS NULL OR owner=?2)", table);
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        if (owner)
            sqlite3_bind_text(s, 2, owner, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW)
            seq = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    return seq;
}

static int sq_file_list(struct store *st, const struct store_list_page *pg, struct store_file **out, int *n,
                        bool *has_more)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO, cap = pg->limit + 1, got = 0;
    struct store_file *arr = calloc((size_t)cap, sizeof(*arr));
    *out = NULL;
    *n = 0;
    *has_more = false;
    if (!arr)
        return NS_ERR_NOMEM;
    pthread_mutex_lock(&st->mu);
    int64_t after = pg->after ? sq_seq_of(st, "files", pg->after, pg->owner) : -1;
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT " SQ_FILE_COLS " FROM files WHERE (?1 IS NULL OR owner=?1) AND (?2 IS NULL OR purpose=?2) "
             "AND (?3 < 0 OR seq %s ?3) ORDER BY seq %s LIMIT ?4",
             pg->desc ? "<" : ">", pg->desc ? "DESC" : "ASC");
    if (pg->after && after < 0) {
        rc = NS_OK; /* unknown cursor: empty page */
        goto out;
    }
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        goto out;
    if (pg->owner)
        sqlite3_bind_text(s, 1, pg->owner, -1, SQLITE_STATIC);
    if (pg->purpose)
        sqlite3_bind_text(s, 2, pg->purpose, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, after);
    sqlite3_bind_int(s, 4, cap);
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW)
        sq_row_file(s, &arr[got++]);
    if (r != SQLITE_DONE)
        goto out;
    rc = NS_OK;
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    if (rc) {
        for (int i = 0; i < got; i++)
            store_file_release(&arr[i]);
        free(arr);
        return rc;
    }
    if (got > pg->limit) {
        *has_more = true;
        store_file_release(&arr[--got]);
    }
    *out = arr;
    *n = got;
    return NS_OK;
}

static int sq_file_delete(struct store *st, const char *id)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, "DELETE FROM files WHERE id=?", -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_DONE)
            rc = sqlite3_changes(st->db) ? NS_OK : NS_ERR_NOT_FOUND;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* ---- batches ------------------------------------------------------------------------ */

#define SQ_BATCH_COLS                                                                                              \
    "id,owner,endpoint,model,input_file_id,completion_window,status,output_file_id,error_file_id,created_at,"     \
    "in_progress_at,expires_at,finalizing_at,completed_at,failed_at,expired_at,cancelling_at,cancelled_at,total," \
    "completed,failed,input_tokens,cached_tokens,output_tokens,prompt_computed,metadata,errors,"                  \
    "output_expires_after,not_before,seq,canceled,expired"

static void sq_row_batch(sqlite3_stmt *s, struct store_batch *b)
{
    memset(b, 0, sizeof(*b));
    store_sqlite_copy(b->id, sizeof(b->id), s, 0);
    store_sqlite_copy(b->owner, sizeof(b->owner), s, 1);
    store_sqlite_copy(b->endpoint, sizeof(b->endpoint), s, 2);
    b->model = store_sqlite_dup(s, 3);
    store_sqlite_copy(b->input_file_id, sizeof(b->input_file_id), s, 4);
    store_sqlite_copy(b->completion_window, sizeof(b->completion_window), s, 5);
    b->status = (enum store_batch_status)sqlite3_column_int(s, 6);
    store_sqlite_copy(b->output_file_id, sizeof(b->output_file_id), s, 7);
    store_sqlite_copy(b->error_file_id, sizeof(b->error_file_id), s, 8);
    int64_t *ts[] = {&b->created_at, &b->in_progress_at, &b->expires_at, &b->finalizing_at, &b->completed_at,
                     &b->failed_at, &b->expired_at, &b->cancelling_at, &b->cancelled_at, &b->total, &b->completed,
                     &b->failed, &b->input_tokens, &b->cached_tokens, &b->output_tokens, &b->prompt_computed};
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
        *ts[i] = sqlite3_column_int64(s, 9 + (int)i);
    b->metadata = store_sqlite_dup(s, 25);
    b->errors = store_sqlite_dup(s, 26);
    b->output_expires_after = sqlite3_column_int64(s, 27);
    b->not_before = sqlite3_column_int64(s, 28);
    b->seq = sqlite3_column_int64(s, 29);
    b->canceled = sqlite3_column_int64(s, 30);
    b->expired = sqlite3_column_int64(s, 31);
}

static int sq_batch_insert(struct store *st, struct store_batch *b)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO batches(id,owner,endpoint,model,input_file_id,completion_window,status,"
                           "created_at,expires_at,metadata,output_expires_after,not_before,total,seq) "
                           "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,(SELECT coalesce(max(seq),0)+1 FROM batches)) "
                           "RETURNING seq",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, b->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, b->owner, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, b->endpoint, -1, SQLITE_STATIC);
        if (b->model)
            sqlite3_bind_text(s, 4, b->model, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 5, b->input_file_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 6, b->completion_window, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 7, (int)b->status);
        sqlite3_bind_int64(s, 8, b->created_at);
        sqlite3_bind_int64(s, 9, b->expires_at);
        if (b->metadata)
            sqlite3_bind_text(s, 10, b->metadata, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 11, b->output_expires_after);
        sqlite3_bind_int64(s, 12, b->not_before);
        sqlite3_bind_int64(s, 13, b->total);
        if (sqlite3_step(s) == SQLITE_ROW) {
            b->seq = sqlite3_column_int64(s, 0);
            rc = NS_OK;
        }
    }
    if (rc == NS_ERR_IO)
        rc = store_sqlite_fail(st); /* prepare or step failed: why */
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int sq_batch_get(struct store *st, const char *id, struct store_batch *out)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, "SELECT " SQ_BATCH_COLS " FROM batches WHERE id=?", -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        int r = sqlite3_step(s);
        if (r == SQLITE_ROW) {
            sq_row_batch(s, out);
            rc = NS_OK;
        } else if (r == SQLITE_DONE) {
            rc = NS_ERR_NOT_FOUND;
        }
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int sq_batch_list(struct store *st, const struct store_list_page *pg, struct store_batch **out, int *n,
                         bool *has_more)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO, cap = pg->limit + 1, got = 0;
    struct store_batch *arr = calloc((size_t)cap, sizeof(*arr));
    *out = NULL;
    *n = 0;
    *has_more = false;
    if (!arr)
        return NS_ERR_NOMEM;
    pthread_mutex_lock(&st->mu);
    int64_t after = pg->after ? sq_seq_of(st, "batches", pg->after, pg->owner) : -1;
    int64_t before = pg->before ? sq_seq_of(st, "batches", pg->before, pg->owner) : -1;
    char sql[1024];
    /* newest first; `after` continues towards older ones, `before` towards newer ones
     * (then read oldest first from the cursor and reversed below) */
    bool desc = pg->desc && !pg->before;
    snprintf(sql, sizeof(sql),
             "SELECT " SQ_BATCH_COLS " FROM batches WHERE (?1 IS NULL OR owner=?1) AND (?2 < 0 OR seq %s ?2) "
             "AND (?4 < 0 OR seq > ?4) AND (?5 IS NULL OR (endpoint = ?5) = ?6) ORDER BY seq %s LIMIT ?3",
             pg->desc ? "<" : ">", desc ? "DESC" : "ASC");
    if ((pg->after && after < 0) || (pg->before && before < 0)) {
        rc = NS_OK;
        goto out;
    }
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        goto out;
    if (pg->owner)
        sqlite3_bind_text(s, 1, pg->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, after);
    sqlite3_bind_int(s, 3, cap);
    sqlite3_bind_int64(s, 4, before);
    if (pg->endpoint)
        sqlite3_bind_text(s, 5, pg->endpoint, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 6, pg->endpoint_not ? 0 : 1);
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW)
        sq_row_batch(s, &arr[got++]);
    if (r != SQLITE_DONE)
        goto out;
    rc = NS_OK;
    if (pg->before && pg->desc) {
        /* read upwards from the cursor; hand them back newest first */
        int keep = got > pg->limit ? pg->limit : got;
        for (int i = 0; i < keep / 2; i++) {
            struct store_batch t = arr[i];
            arr[i] = arr[keep - 1 - i];
            arr[keep - 1 - i] = t;
        }
    }
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    if (rc) {
        for (int i = 0; i < got; i++)
            store_batch_release(&arr[i]);
        free(arr);
        return rc;
    }
    if (got > pg->limit) {
        *has_more = true;
        store_batch_release(&arr[--got]);
    }
    *out = arr;
    *n = got;
    return NS_OK;
}

static int sq_batch_update(struct store *st, const struct store_batch *b, enum store_batch_status expect)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db,
                           "UPDATE batches SET model=?, status=?, output_file_id=?, error_file_id=?, in_progress_at=?,"
                           " expires_at=?, finalizing_at=?, completed_at=?, failed_at=?, expired_at=?, cancelling_at=?,"
                           " cancelled_at=?, errors=? WHERE id=? AND status=?",
                           -1, &s, NULL) == SQLITE_OK) {
        if (b->model)
            sqlite3_bind_text(s, 1, b->model, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 2, (int)b->status);
        sqlite3_bind_text(s, 3, b->output_file_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, b->error_file_id, -1, SQLITE_STATIC);
        int64_t ts[] = {b->in_progress_at, b->expires_at,   b->finalizing_at, b->completed_at,
                        b->failed_at,      b->expired_at,   b->cancelling_at, b->cancelled_at};
        for (int i = 0; i < 8; i++)
            sqlite3_bind_int64(s, 5 + i, ts[i]);
        if (b->errors)
            sqlite3_bind_text(s, 13, b->errors, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 14, b->id, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 15, (int)expect);
        if (sqlite3_step(s) == SQLITE_DONE)
            rc = sqlite3_changes(st->db) ? NS_OK : NS_ERR_CONFLICT;
    }
    if (rc == NS_ERR_IO)
        rc = store_sqlite_fail(st); /* prepare or step failed: why */
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int sq_batch_ids_by_status(struct store *st, enum store_batch_status status, char (**ids)[48], int *n)
{
    return store_sqlite_ids(st, "SELECT id FROM batches WHERE status=? ORDER BY seq", (int)status, ids, n);
}

int store_sqlite_ids(struct store *st, const char *sql, int param, char (**ids)[48], int *n)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO, cap = 16, got = 0;
    char(*arr)[48] = malloc(sizeof(*arr) * (size_t)cap);
    *ids = NULL;
    *n = 0;
    if (!arr)
        return NS_ERR_NOMEM;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int(s, 1, param);
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (got == cap) {
            char(*p)[48] = realloc(arr, sizeof(*arr) * (size_t)cap * 2);
            if (!p) {
                rc = NS_ERR_NOMEM;
                goto out;
            }
            arr = p;
            cap *= 2;
        }
        store_sqlite_copy(arr[got++], sizeof(arr[0]), s, 0);
    }
    if (r == SQLITE_DONE)
        rc = NS_OK;
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    if (rc) {
        free(arr);
        return rc;
    }
    *ids = arr;
    *n = got;
    return NS_OK;
}

/* ---- lines -------------------------------------------------------------------------- */

static int sq_lines_insert(struct store *st, const char *batch_id, const struct store_line *lines, int n)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if ((rc = store_sqlite_exec(st, "BEGIN")))
        goto out;
    if (sqlite3_prepare_v2(st->db,
                           "INSERT OR IGNORE INTO lines(batch_id,idx,line_no,custom_id,off,len,url,model,state,result) "
                           "VALUES(?,?,?,?,?,?,?,?,?,?)",
                           -1, &s, NULL) != SQLITE_OK)
        goto rollback;
    for (int i = 0; i < n; i++) {
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, batch_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, lines[i].idx);
        sqlite3_bind_int64(s, 3, lines[i].line_no);
        sqlite3_bind_text(s, 4, lines[i].custom_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, lines[i].off);
        sqlite3_bind_int64(s, 6, lines[i].len);
        sqlite3_bind_int(s, 7, lines[i].url);
        if (lines[i].model)
            sqlite3_bind_text(s, 8, lines[i].model, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 8);
        sqlite3_bind_int(s, 9, lines[i].result ? SL_FAILED : SL_PENDING);
        if (lines[i].result)
            sqlite3_bind_text(s, 10, lines[i].result, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 10);
        if (sqlite3_step(s) != SQLITE_DONE)
            goto rollback;
    }
    sqlite3_finalize(s);
    s = NULL;
    /* the batch's total (and lines failed on arrival) are the store's, set with its lines
     * in one transaction */
    if (sqlite3_prepare_v2(st->db,
                           "UPDATE batches SET total=(SELECT count(*) FROM lines WHERE batch_id=?1),"
                           " failed=(SELECT count(*) FROM lines WHERE batch_id=?1 AND state=3) WHERE id=?1",
                           -1, &s, NULL) != SQLITE_OK)
        goto rollback;
    sqlite3_bind_text(s, 1, batch_id, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE)
        goto rollback;
    if (store_sqlite_exec(st, "COMMIT") == NS_OK) {
        rc = NS_OK;
        goto out;
    }
rollback:
    rc = store_sqlite_fail(st); /* before ROLLBACK sets its own */
    store_sqlite_exec(st, "ROLLBACK");
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int sq_lines_claim(struct store *st, const char *batch_id, const char *model, int max, struct store_line **out,
                          int *n)
{
    sqlite3_stmt *s = NULL, *u = NULL;
    int rc = NS_ERR_IO, got = 0;
    struct store_line *arr = calloc((size_t)(max > 0 ? max : 1), sizeof(*arr));
    *out = NULL;
    *n = 0;
    if (!arr)
        return NS_ERR_NOMEM;
    pthread_mutex_lock(&st->mu);
    if ((rc = store_sqlite_exec(st, "BEGIN IMMEDIATE")))
        goto out;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT idx,line_no,custom_id,off,len,url,model FROM lines WHERE batch_id=?1 AND state=0 "
                           "AND (?3 IS NULL OR coalesce(backend, model)=?3) ORDER BY idx LIMIT ?2",
                           -1, &s, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "UPDATE lines SET state=1 WHERE batch_id=? AND idx=?", -1, &u, NULL) != SQLITE_OK)
        goto rollback;
    sqlite3_bind_text(s, 1, batch_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, max);
    if (model)
        sqlite3_bind_text(s, 3, model, -1, SQLITE_STATIC);
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_line *l = &arr[got++];
        l->idx = sqlite3_column_int64(s, 0);
        l->line_no = (uint32_t)sqlite3_column_int64(s, 1);
        l->custom_id = store_sqlite_dup(s, 2);
        l->off = sqlite3_column_int64(s, 3);
        l->len = sqlite3_column_int64(s, 4);
        l->url = sqlite3_column_int(s, 5);
        l->model = store_sqlite_dup(s, 6);
    }
    if (r != SQLITE_DONE)
        goto rollback;
    for (int i = 0; i < got; i++) {
        sqlite3_reset(u);
        sqlite3_bind_text(u, 1, batch_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(u, 2, arr[i].idx);
        if (sqlite3_step(u) != SQLITE_DONE)
            goto rollback;
    }
    if (store_sqlite_exec(st, "COMMIT") == NS_OK) {
        rc = NS_OK;
        goto out;
    }
rollback:
    rc = store_sqlite_fail(st); /* before ROLLBACK sets its own */
    store_sqlite_exec(st, "ROLLBACK");
out:
    sqlite3_finalize(s);
    sqlite3_finalize(u);
    pthread_mutex_unlock(&st->mu);
    if (rc) {
        for (int i = 0; i < got; i++)
            store_line_release(&arr[i]);
        free(arr);
        return rc;
    }
    *out = arr;
    *n = got;
    return NS_OK;
}

static int sq_lines_finish(struct store *st, const struct store_result *rs, int n)
{
    sqlite3_stmt *s = NULL, *b = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if ((rc = store_sqlite_exec(st, "BEGIN IMMEDIATE")))
        goto out;
    /* only an unfinished line counts: a result is written once */
    if (sqlite3_prepare_v2(st->db, "UPDATE lines SET state=?, result=? WHERE batch_id=? AND idx=? AND state<2", -1, &s,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db,
                           "UPDATE batches SET completed=completed+?, failed=failed+?, input_tokens=input_tokens+?,"
                           " output_tokens=output_tokens+?, cached_tokens=cached_tokens+?,"
                           " prompt_computed=prompt_computed+? WHERE id=?",
                           -1, &b, NULL) != SQLITE_OK)
        goto rollback;
    /* the batch counters move once per run of lines of the same batch, not once per line;
     * a backend's share once per run of the same batch and backend */
    int64_t sum[6] = {0}, bsum[5] = {0};
    for (int i = 0; i < n; i++) {
        const struct store_result *r = &rs[i];
        sqlite3_reset(s);
        sqlite3_bind_int(s, 1, r->ok ? SL_OK : SL_FAILED);
        sqlite3_bind_text(s, 2, r->json, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, r->batch_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, r->idx);
        if (sqlite3_step(s) != SQLITE_DONE)
            goto rollback;
        if (sqlite3_changes(st->db) == 1) {
            sum[0] += r->ok;
            sum[1] += !r->ok;
            sum[2] += r->prompt_tokens;
            sum[3] += r->completion_tokens;
            sum[4] += r->cached_tokens;
            sum[5] += r->prompt_computed;
            bsum[0] += r->ok;
            bsum[1] += !r->ok;
            bsum[2] += r->prompt_tokens;
            bsum[3] += r->completion_tokens;
            bsum[4] += r->cached_tokens;
        }
        bool same_batch = i + 1 < n && strcmp(rs[i + 1].batch_id, r->batch_id) == 0;
        bool same_backend = same_batch && (rs[i + 1].backend == r->backend ||
                                           (rs[i + 1].backend && r->backend && strcmp(rs[i + 1].backend, r->backend) == 0));
        if (!same_backend) {
            if (r->backend && (bsum[0] || bsum[1]) && store_sqlite_backend_add(st, r->batch_id, r->backend, bsum))
                goto rollback;
            memset(bsum, 0, sizeof(bsum));
        }
        if (same_batch)
            continue;
        sqlite3_reset(b);
        for (int k = 0; k < 6; k++)
            sqlite3_bind_int64(b, k + 1, sum[k]);
        sqlite3_bind_text(b, 7, r->batch_id, -1, SQLITE_STATIC);
        if (sqlite3_step(b) != SQLITE_DONE)
            goto rollback;
        memset(sum, 0, sizeof(sum));
    }
    if (store_sqlite_exec(st, "COMMIT") == NS_OK) {
        rc = NS_OK;
        goto out;
    }
rollback:
    rc = store_sqlite_fail(st); /* before ROLLBACK sets its own */
    store_sqlite_exec(st, "ROLLBACK");
out:
    sqlite3_finalize(s);
    sqlite3_finalize(b);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* ---- webhooks ------------------------------------------------------------------------- */

#define SQ_WEBHOOK_COLS "id,batch_id,type,endpoint,url,body,created_at,next_at,delivered_at,attempts,last_status,state,last_error"

static void sq_webhook_row(sqlite3_stmt *s, struct store_webhook *w)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->id, sizeof(w->id), "%s", (const char *)sqlite3_column_text(s, 0));
    snprintf(w->batch_id, sizeof(w->batch_id), "%s", (const char *)sqlite3_column_text(s, 1));
    snprintf(w->type, sizeof(w->type), "%s", (const char *)sqlite3_column_text(s, 2));
    snprintf(w->endpoint, sizeof(w->endpoint), "%s", (const char *)sqlite3_column_text(s, 3));
    w->url = store_sqlite_dup(s, 4);
    w->body = store_sqlite_dup(s, 5);
    w->created_at = sqlite3_column_int64(s, 6);
    w->next_at = sqlite3_column_int64(s, 7);
    w->delivered_at = sqlite3_column_int64(s, 8);
    w->attempts = sqlite3_column_int(s, 9);
    w->last_status = sqlite3_column_int(s, 10);
    w->state = sqlite3_column_int(s, 11);
    snprintf(w->last_error, sizeof(w->last_error), "%s", (const char *)sqlite3_column_text(s, 12));
}

static int sq_webhook_insert(struct store *st, const struct store_webhook *w)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, "INSERT INTO webhooks(" SQ_WEBHOOK_COLS ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)", -1, &s,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, w->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, w->batch_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, w->type, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, w->endpoint, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 5, w->url, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 6, w->body, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 7, w->created_at);
        sqlite3_bind_int64(s, 8, w->next_at);
        sqlite3_bind_int64(s, 9, w->delivered_at);
        sqlite3_bind_int(s, 10, w->attempts);
        sqlite3_bind_int(s, 11, w->last_status);
        sqlite3_bind_int(s, 12, w->state);
        sqlite3_bind_text(s, 13, w->last_error, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_DONE)
            rc = NS_OK;
    }
    if (rc == NS_ERR_IO)
        rc = store_sqlite_fail(st); /* prepare or step failed: why */
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* rows of a query with up to two bound values (text, then int64) */
static int sq_webhooks_query(struct store *st, const char *sql, const char *text, int64_t num, int max,
                             struct store_webhook **out, int *n)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO, got = 0;
    struct store_webhook *arr = calloc((size_t)(max > 0 ? max : 1), sizeof(*arr));
    *out = NULL;
    *n = 0;
    if (!arr)
        return NS_ERR_NOMEM;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) == SQLITE_OK) {
        if (text)
            sqlite3_bind_text(s, 1, text, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 1);
        sqlite3_bind_int64(s, 2, num);
        sqlite3_bind_int(s, 3, max);
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW && got < max)
            sq_webhook_row(s, &arr[got++]);
        rc = r == SQLITE_DONE || r == SQLITE_ROW ? NS_OK : NS_ERR_IO;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    if (rc) {
        for (int i = 0; i < got; i++)
            store_webhook_release(&arr[i]);
        free(arr);
        return rc;
    }
    *out = arr;
    *n = got;
    return NS_OK;
}

static int sq_webhooks_due(struct store *st, int64_t now, int max, struct store_webhook **out, int *n)
{
    return sq_webhooks_query(st, "SELECT " SQ_WEBHOOK_COLS " FROM webhooks WHERE ?1 IS NULL AND state=0 AND next_at<=?2 "
                                 "ORDER BY next_at LIMIT ?3", NULL, now, max, out, n);
}

static int sq_webhooks_list(struct store *st, const char *batch_id, int limit, struct store_webhook **out, int *n)
{
    return sq_webhooks_query(st, "SELECT " SQ_WEBHOOK_COLS " FROM webhooks WHERE (?1 IS NULL OR batch_id=?1) AND ?2=?2 "
                                 "ORDER BY created_at DESC, id LIMIT ?3", batch_id, 0, limit, out, n);
}

static int sq_webhook_update(struct store *st, const struct store_webhook *w)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, "UPDATE webhooks SET next_at=?, delivered_at=?, attempts=?, last_status=?, state=?, "
                                   "last_error=? WHERE id=?", -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, w->next_at);
        sqlite3_bind_int64(s, 2, w->delivered_at);
        sqlite3_bind_int(s, 3, w->attempts);
        sqlite3_bind_int(s, 4, w->last_status);
        sqlite3_bind_int(s, 5, w->state);
        sqlite3_bind_text(s, 6, w->last_error, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 7, w->id, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_DONE)
            rc = NS_OK;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int sq_lines_requeue(struct store *st)
{
    pthread_mutex_lock(&st->mu);
    int rc = store_sqlite_exec(st, "UPDATE lines SET state=0 WHERE state=1");
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int sq_lines_fail_unfinished(struct store *st, const char *batch_id, bool running_too, enum store_fail_kind kind,
                                    char *(*make)(void *ud, const char *custom_id), void *ud)
{
    sqlite3_stmt *s = NULL, *u = NULL;
    int rc = NS_ERR_IO;
    int64_t nfail = 0;
    pthread_mutex_lock(&st->mu);
    if ((rc = store_sqlite_exec(st, "BEGIN IMMEDIATE")))
        goto out;
    if (sqlite3_prepare_v2(st->db, "SELECT idx, custom_id FROM lines WHERE batch_id=? AND state<=?", -1, &s, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "UPDATE lines SET state=3, result=? WHERE batch_id=? AND idx=?", -1, &u, NULL) !=
            SQLITE_OK)
        goto rollback;
    sqlite3_bind_text(s, 1, batch_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, running_too ? SL_RUNNING : SL_PENDING);
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        char *json = make(ud, (const char *)sqlite3_column_text(s, 1));
        if (!json)
            goto rollback;
        sqlite3_reset(u);
        sqlite3_bind_text(u, 1, json, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(u, 2, batch_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(u, 3, sqlite3_column_int64(s, 0));
        free(json);
        if (sqlite3_step(u) != SQLITE_DONE)
            goto rollback;
        nfail++;
    }
    if (r != SQLITE_DONE)
        goto rollback;
    sqlite3_finalize(u);
    u = NULL;
    if (sqlite3_prepare_v2(st->db,
                           kind == SF_EXPIRED ? "UPDATE batches SET failed=failed+?1, expired=expired+?1 WHERE id=?2"
                                              : "UPDATE batches SET failed=failed+?1, canceled=canceled+?1 WHERE id=?2",
                           -1, &u, NULL) != SQLITE_OK)
        goto rollback;
    sqlite3_bind_int64(u, 1, nfail);
    sqlite3_bind_text(u, 2, batch_id, -1, SQLITE_STATIC);
    if (sqlite3_step(u) != SQLITE_DONE)
        goto rollback;
    if (store_sqlite_exec(st, "COMMIT") == NS_OK) {
        rc = NS_OK;
        goto out;
    }
rollback:
    rc = store_sqlite_fail(st); /* before ROLLBACK sets its own */
    store_sqlite_exec(st, "ROLLBACK");
out:
    sqlite3_finalize(s);
    sqlite3_finalize(u);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int sq_lines_count_unfinished(struct store *st, const char *batch_id, int64_t *pending, int64_t *running)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    *pending = *running = 0;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, "SELECT state, count(*) FROM lines WHERE batch_id=? AND state<2 GROUP BY state", -1,
                           &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, batch_id, -1, SQLITE_STATIC);
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            if (sqlite3_column_int(s, 0) == SL_PENDING)
                *pending = sqlite3_column_int64(s, 1);
            else
                *running = sqlite3_column_int64(s, 1);
        }
        if (r == SQLITE_DONE)
            rc = NS_OK;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int sq_batch_delete(struct store *st, const char *id)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if ((rc = store_sqlite_exec(st, "BEGIN IMMEDIATE")))
        goto out;
    for (int q = 0; q < 2; q++) {
        if (sqlite3_prepare_v2(st->db, q ? "DELETE FROM batch_backends WHERE batch_id=?" : "DELETE FROM lines WHERE batch_id=?",
                               -1, &s, NULL) != SQLITE_OK)
            goto rollback;
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE)
            goto rollback;
        sqlite3_finalize(s);
        s = NULL;
    }
    if (sqlite3_prepare_v2(st->db, "DELETE FROM batches WHERE id=?", -1, &s, NULL) != SQLITE_OK)
        goto rollback;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE)
        goto rollback;
    rc = sqlite3_changes(st->db) ? NS_OK : NS_ERR_NOT_FOUND;
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

static int sq_lines_failed(struct store *st, const char *batch_id, struct store_line **out, int *n)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO, cap = 64, got = 0;
    struct store_line *arr = malloc(sizeof(*arr) * (size_t)cap);
    *out = NULL;
    *n = 0;
    if (!arr)
        return NS_ERR_NOMEM;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db,
                           "SELECT idx,line_no,custom_id,off,len,url,model FROM lines WHERE batch_id=? AND state=3 "
                           "ORDER BY line_no",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, batch_id, -1, SQLITE_STATIC);
        int r;
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
            if (got == cap) {
                struct store_line *p = realloc(arr, sizeof(*arr) * (size_t)(cap * 2));
                if (!p)
                    break;
                arr = p;
                cap *= 2;
            }
            struct store_line *l = &arr[got++];
            l->idx = sqlite3_column_int64(s, 0);
            l->line_no = (uint32_t)sqlite3_column_int64(s, 1);
            l->custom_id = store_sqlite_dup(s, 2);
            l->off = sqlite3_column_int64(s, 3);
            l->len = sqlite3_column_int64(s, 4);
            l->url = sqlite3_column_int(s, 5);
            l->model = store_sqlite_dup(s, 6);
            l->result = NULL;
        }
        if (r == SQLITE_DONE)
            rc = NS_OK;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    if (rc) {
        for (int i = 0; i < got; i++)
            store_line_release(&arr[i]);
        free(arr);
        return rc;
    }
    *out = arr;
    *n = got;
    return NS_OK;
}

static int sq_lines_export(struct store *st, const char *batch_id, FILE *ok_out, FILE *err_out)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    /* a read transaction: a consistent snapshot even while lines keep finishing */
    if ((rc = store_sqlite_exec(st, "BEGIN")))
        goto out;
    if (sqlite3_prepare_v2(st->db, "SELECT state, result FROM lines WHERE batch_id=? AND state>=2 ORDER BY line_no", -1, &s,
                           NULL) != SQLITE_OK)
        goto end;
    sqlite3_bind_text(s, 1, batch_id, -1, SQLITE_STATIC);
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        FILE *f = sqlite3_column_int(s, 0) == SL_OK ? ok_out : err_out;
        if (!f)
            continue;
        const void *j = sqlite3_column_text(s, 1);
        size_t n = (size_t)sqlite3_column_bytes(s, 1);
        if ((n && fwrite(j, 1, n, f) != n) || fputc('\n', f) == EOF)
            goto end;
    }
    if (r == SQLITE_DONE)
        rc = NS_OK;
end:
    store_sqlite_exec(st, "COMMIT");
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* ---- API keys ----------------------------------------------------------------------- */

static int sq_key_insert(struct store *st, const struct store_key *k, const char *hash_hex)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO keys(hash,name,project,admin,created_at,rpm,tokens_per_day,batch_queue_tokens) "
                           "VALUES(?,?,?,?,?,?,?,?)",
                           -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, hash_hex, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, k->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, k->project, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 4, k->admin ? 1 : 0);
        sqlite3_bind_int64(s, 5, k->created_at);
        const int64_t lims[3] = {k->rpm, k->tokens_per_day, k->batch_queue_tokens};
        for (int i = 0; i < 3; i++) {
            if (lims[i] < 0)
                sqlite3_bind_null(s, 6 + i);
            else
                sqlite3_bind_int64(s, 6 + i, lims[i]);
        }
        int step = sqlite3_step(s);
        rc = step == SQLITE_DONE ? NS_OK : (sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_UNIQUE ||
                                            sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
                                               ? NS_ERR_CONFLICT
                                               : NS_ERR_IO;
    }
    sqlite3_finalize(s);
    if (rc == NS_OK && store_sqlite_exec(st, "INSERT OR IGNORE INTO keys_ever VALUES(1)"))
        rc = NS_ERR_IO;
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int sq_key_get(struct store *st, const char *hash_hex, struct store_key *out)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, "SELECT name,project,admin,created_at,rpm,tokens_per_day,batch_queue_tokens FROM keys "
                           "WHERE hash=? AND revoked_at=0", -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, hash_hex, -1, SQLITE_STATIC);
        int step = sqlite3_step(s);
        if (step == SQLITE_ROW) {
            store_sqlite_copy(out->name, sizeof(out->name), s, 0);
            store_sqlite_copy(out->project, sizeof(out->project), s, 1);
            out->admin = sqlite3_column_int(s, 2) != 0;
            out->created_at = sqlite3_column_int64(s, 3);
            int64_t *lims[3] = {&out->rpm, &out->tokens_per_day, &out->batch_queue_tokens};
            for (int i = 0; i < 3; i++)
                *lims[i] = sqlite3_column_type(s, 4 + i) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 4 + i);
            rc = NS_OK;
        } else if (step == SQLITE_DONE) {
            rc = NS_ERR_NOT_FOUND;
        }
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int sq_key_count(struct store *st, int64_t *n)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    *n = 0;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, "SELECT (SELECT count(*) FROM keys) + (SELECT count(*) FROM keys_ever)", -1, &s,
                           NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        *n = sqlite3_column_int64(s, 0);
        rc = NS_OK;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int sq_key_list(struct store *st, struct store_key **out, int *n)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO, cap = 0, got = 0;
    struct store_key *arr = NULL;
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, "SELECT name,project,admin,created_at,rpm,tokens_per_day,batch_queue_tokens,revoked_at "
                                   "FROM keys ORDER BY created_at, name", -1, &s, NULL) != SQLITE_OK)
        goto out;
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (got == cap) {
            cap = cap ? cap * 2 : 16;
            struct store_key *v = realloc(arr, sizeof(*v) * (size_t)cap);
            if (!v) {
                rc = NS_ERR_NOMEM;
                goto out;
            }
            arr = v;
        }
        struct store_key *k = &arr[got++];
        memset(k, 0, sizeof(*k));
        store_sqlite_copy(k->name, sizeof(k->name), s, 0);
        store_sqlite_copy(k->project, sizeof(k->project), s, 1);
        k->admin = sqlite3_column_int(s, 2) != 0;
        k->created_at = sqlite3_column_int64(s, 3);
        int64_t *lims[3] = {&k->rpm, &k->tokens_per_day, &k->batch_queue_tokens};
        for (int i = 0; i < 3; i++)
            *lims[i] = sqlite3_column_type(s, 4 + i) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 4 + i);
        k->revoked_at = sqlite3_column_int64(s, 7);
    }
    if (step == SQLITE_DONE) {
        rc = NS_OK;
        *out = arr;
        *n = got;
        arr = NULL;
    }
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    free(arr);
    return rc;
}

/* one UPDATE of the active key named name: NS_ERR_NOT_FOUND when it changed no row */
static int sq_key_update(struct store *st, const char *sql, const char *name, const char *text, int64_t num)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) == SQLITE_OK) {
        if (text)
            sqlite3_bind_text(s, 1, text, -1, SQLITE_STATIC);
        else
            sqlite3_bind_int64(s, 1, num);
        sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_DONE)
            rc = sqlite3_changes(st->db) ? NS_OK : NS_ERR_NOT_FOUND;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int sq_key_revoke(struct store *st, const char *name, int64_t at)
{
    return sq_key_update(st, "UPDATE keys SET revoked_at=?1 WHERE name=?2 AND revoked_at=0", name, NULL, at > 0 ? at : 1);
}

static int sq_key_rotate(struct store *st, const char *name, const char *hash_hex)
{
    return sq_key_update(st, "UPDATE keys SET hash=?1 WHERE name=?2 AND revoked_at=0", name, hash_hex, 0);
}

const struct store_ops store_sqlite_ops = {
    .scheme = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .check = sq_check,
    .file = {
        .insert = sq_file_insert,
        .get = sq_file_get,
        .list = sq_file_list,
        .delete = sq_file_delete,
    },
    .batch = {
        .insert = sq_batch_insert,
        .get = sq_batch_get,
        .list = sq_batch_list,
        .update = sq_batch_update,
        .ids_by_status = sq_batch_ids_by_status,
        .delete = sq_batch_delete,
    },
    .lines = {
        .insert = sq_lines_insert,
        .claim = sq_lines_claim,
        .finish = sq_lines_finish,
        .requeue = sq_lines_requeue,
        .fail_unfinished = sq_lines_fail_unfinished,
        .count_unfinished = sq_lines_count_unfinished,
        .route = store_sqlite_lines_route,
        .release = store_sqlite_lines_release,
        .routes = store_sqlite_lines_routes,
        .failed = sq_lines_failed,
        .export = sq_lines_export,
    },
    .webhook = {
        .insert = sq_webhook_insert,
        .due = sq_webhooks_due,
        .update = sq_webhook_update,
        .list = sq_webhooks_list,
    },
    .key = {
        .insert = sq_key_insert,
        .get = sq_key_get,
        .count = sq_key_count,
        .list = sq_key_list,
        .revoke = sq_key_revoke,
        .rotate = sq_key_rotate,
    },
    .response = {
        .insert = store_sqlite_response_insert,
        .get = store_sqlite_response_get,
        .update = store_sqlite_response_update,
        .delete = store_sqlite_response_delete,
        .ids_by_status = store_sqlite_response_ids_by_status,
        .expire = store_sqlite_response_expire,
    },
    .admin = {
        .probe = store_sqlite_probe,
        .backup = store_sqlite_backup,
        .restore = store_sqlite_restore,
        .files_relocate = store_sqlite_files_relocate,
    },
};
