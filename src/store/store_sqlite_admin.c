/*
 * store_sqlite_admin.c — the SQLite store as a whole: probe (is a database there, of which
 * version), backup, restore, and pointing the files' paths at a moved data dir.
 *
 * Backup and restore use SQLite's online backup API with one step over every page: one read
 * transaction on the source, so the copy is a single consistent snapshot, and in WAL mode
 * the server keeps writing meanwhile (a chunked copy would restart at every write of
 * another process and might never finish under load).
 *
 * THREADS: probe, backup and restore open their own connections (no server runs them);
 * files_relocate takes the store's mutex like every operation.
 */
#include "store_sqlite_int.h"

#include "../util/status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the store as a whole: probe, backup, restore ----------------------------------- */

int store_sqlite_probe(const char *uri, const char *data_dir, int *have, int *known, char *err, size_t errlen)
{
    char path[4096];
    sqlite3 *db = NULL;
    int rc = NS_OK;
    store_sqlite_path(uri, data_dir, path, sizeof(path));
    *have = 0;
    *known = STORE_SQLITE_VERSION;
    if (access(path, F_OK) && (errno == ENOENT || errno == ENOTDIR))
        return NS_OK;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open database '%s': %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        rc = NS_ERR_IO;
        goto out;
    }
    sqlite3_busy_timeout(db, 10000);
    *have = store_sqlite_user_version(db);
    if (*have < 0) {
        snprintf(err, errlen, "cannot read database '%s': %s", path, sqlite3_errmsg(db));
        *have = 0;
        rc = NS_ERR_IO;
    }
out:
    sqlite3_close(db);
    return rc;
}

/* copy every page of the database src_path into dst_path (created when absent) in one
 * step: one read transaction on src, one write transaction on dst. dst is left in rollback
 * journal mode: one self-contained file (no -wal beside it), readable read-only; the
 * server's open switches it back to WAL. */
static int sq_copy_db(const char *src_path, const char *dst_path, char *err, size_t errlen)
{
    sqlite3 *src = NULL, *dst = NULL;
    int rc = NS_ERR_IO;
    if (sqlite3_open_v2(src_path, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open database '%s': %s", src_path, src ? sqlite3_errmsg(src) : "out of memory");
        goto out;
    }
    if (sqlite3_open_v2(dst_path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot create database '%s': %s", dst_path, dst ? sqlite3_errmsg(dst) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(src, 10000);
    sqlite3_busy_timeout(dst, 10000);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b) {
        snprintf(err, errlen, "cannot copy '%s' to '%s': %s", src_path, dst_path, sqlite3_errmsg(dst));
        goto out;
    }
    int r, tries = 0;
    /* busy: a writer is checkpointing or another process holds dst; the busy timeout does
     * not apply to backup_step, so wait here (up to about 30 s) */
    while ((r = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || r == SQLITE_LOCKED) {
        if (++tries > 600)
            break;
        sqlite3_sleep(50);
    }
    sqlite3_backup_finish(b);
    if (r != SQLITE_DONE) {
        snprintf(err, errlen, "cannot copy '%s' to '%s': %s", src_path, dst_path, sqlite3_errstr(r));
        goto out;
    }
    if (sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot finish '%s': %s", dst_path, sqlite3_errmsg(dst));
        goto out;
    }
    rc = NS_OK;
out:
    sqlite3_close(src);
    sqlite3_close(dst);
    return rc;
}

int store_sqlite_backup(const char *uri, const char *data_dir, const char *dest, char (**file_ids)[48], int *n_files,
                        char *err, size_t errlen)
{
    char path[4096];
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    char(*ids)[48] = NULL;
    int n = 0, cap = 0, rc;
    *file_ids = NULL;
    *n_files = 0;
    store_sqlite_path(uri, data_dir, path, sizeof(path));
    if (access(path, F_OK)) {
        snprintf(err, errlen, "no database at '%s': %s", path, strerror(errno));
        return NS_ERR_NOT_FOUND;
    }
    if (access(dest, F_OK) == 0) {
        snprintf(err, errlen, "'%s' exists already; a backup never overwrites one", dest);
        return NS_ERR_CONFLICT;
    }
    if ((rc = sq_copy_db(path, dest, err, errlen)) != NS_OK)
        return rc;
    /* the files of the snapshot, read from the copy: what a restore must bring back */
    rc = NS_ERR_IO;
    if (sqlite3_open_v2(dest, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT id FROM files ORDER BY seq", -1, &s, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read the backup '%s': %s", dest, db ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char(*more)[48] = realloc(ids, (size_t)cap * sizeof(*ids));
            if (!more) {
                snprintf(err, errlen, "out of memory");
                rc = NS_ERR_NOMEM;
                goto out;
            }
            ids = more;
        }
        store_sqlite_copy(ids[n++], sizeof(ids[0]), s, 0);
    }
    if (r != SQLITE_DONE) {
        snprintf(err, errlen, "cannot read the backup '%s': %s", dest, sqlite3_errmsg(db));
        goto out;
    }
    rc = NS_OK;
out:
    sqlite3_finalize(s);
    sqlite3_close(db);
    if (rc) {
        free(ids);
        unlink(dest);
        return rc;
    }
    *file_ids = ids;
    *n_files = n;
    return NS_OK;
}

int store_sqlite_restore(const char *uri, const char *data_dir, const char *src, char *err, size_t errlen)
{
    char path[4096];
    int have, known;
    if (store_sqlite_probe(src, NULL, &have, &known, err, errlen))
        return NS_ERR_IO;
    if (have > known) {
        snprintf(err, errlen, "the backup '%s' has schema version %d, newer than this nightshift understands (%d); "
                 "restore it with a newer nightshift", src, have, known);
        return NS_ERR_CONFLICT;
    }
    store_sqlite_path(uri, data_dir, path, sizeof(path));
    /* into the existing database when there is one: the copy is one transaction of it, so
     * a restore that dies half-way leaves the old content, WAL and all, intact */
    return sq_copy_db(src, path, err, errlen);
}

int store_sqlite_files_relocate(struct store *st, const char *files_dir)
{
    sqlite3_stmt *s = NULL;
    int rc = NS_ERR_IO;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, "UPDATE files SET path = ?1 || '/' || id", -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, files_dir, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_DONE)
            rc = NS_OK;
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

