/*
 * store_sqlite_int.h — what the files of the SQLite store share (store_sqlite.c: open,
 * files, batches, lines, webhooks, keys, the ops table; store_sqlite_responses.c: Responses
 * API objects; store_sqlite_admin.c: probe, backup, restore, relocation): the connection
 * state and a few helpers. Nobody outside src/store/ sees it.
 */
#ifndef NS_STORE_SQLITE_INT_H
#define NS_STORE_SQLITE_INT_H

#include "store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>

#define STORE_SQLITE_VERSION 8

struct store {
    struct store_base base;      /* first: store.h */
    sqlite3 *db;
    pthread_mutex_t mu;
};

/* the database file of a URI: sqlite:PATH, PATH, or (none) DATA_DIR/nightshift.db */
void store_sqlite_path(const char *uri, const char *data_dir, char *path, size_t n);
/* user_version of an open database; -1 when it cannot be read (not a database) */
int store_sqlite_user_version(sqlite3 *db);
/* a text column into dst ("" for NULL) */
void store_sqlite_copy(char *dst, size_t n, sqlite3_stmt *s, int col);
/* a text column, malloc'd; NULL for NULL (or when out of memory) */
char *store_sqlite_dup(sqlite3_stmt *s, int col);
/* the status of the statement that just failed on st's connection (noted for
 * store_last_error) */
int store_sqlite_fail(struct store *st);
/* sql without parameters (BEGIN, COMMIT, ...) on st's connection; mu held */
int store_sqlite_exec(struct store *st, const char *sql);
/* the ids a query with one integer parameter selects (`SELECT id ... WHERE status=?`), in
 * its order, into *ids (malloc'd, never NULL on NS_OK); takes the mutex */
int store_sqlite_ids(struct store *st, const char *sql, int param, char (**ids)[48], int *n);

/* the Responses API objects (store_sqlite_responses.c), as store_ops names them */
int store_sqlite_response_insert(struct store *st, struct store_response *r);
int store_sqlite_response_get(struct store *st, const char *id, struct store_response *out);
int store_sqlite_response_update(struct store *st, const struct store_response *r, enum store_response_status expect);
int store_sqlite_response_delete(struct store *st, const char *id);
int store_sqlite_response_ids_by_status(struct store *st, enum store_response_status s, char (**ids)[48], int *n);
int store_sqlite_response_expire(struct store *st, int64_t before, int64_t *n_deleted);

/* routing lines between backends (store_sqlite_routes.c), as store_ops names them */
int store_sqlite_lines_route(struct store *st, const char *batch_id, const char *model, const char *from,
                             const char *to, int64_t max, int64_t *moved);
int store_sqlite_lines_release(struct store *st, const char *batch_id, const int64_t *idx, int n, const char *to);
int store_sqlite_lines_routes(struct store *st, const char *batch_id, struct store_route **out, int *n);
/* add finished lines to a backend's share of a batch (completed, failed, input, output,
 * cached tokens); mu held, inside the caller's transaction */
int store_sqlite_backend_add(struct store *st, const char *batch_id, const char *backend, const int64_t sum[5]);

/* the whole-store operations (store_sqlite_admin.c), as store_ops names them */
int store_sqlite_probe(const char *uri, const char *data_dir, int *have, int *known, char *err, size_t errlen);
int store_sqlite_backup(const char *uri, const char *data_dir, const char *dest, char (**file_ids)[48], int *n_files,
                        char *err, size_t errlen);
int store_sqlite_restore(const char *uri, const char *data_dir, const char *src, char *err, size_t errlen);
int store_sqlite_files_relocate(struct store *st, const char *files_dir);

#endif
