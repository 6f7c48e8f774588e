/*
 * store_pg_int.h — what the files of the PostgreSQL store share (store_pg.c: open, schema,
 * heartbeat, files, batches, responses, the ops table; store_pg_lines.c: lines, webhooks,
 * API keys): the connection state, the query helpers, and the operations the ops table
 * names. Nobody outside src/store/ sees it.
 */
#ifndef NS_STORE_PG_INT_H
#define NS_STORE_PG_INT_H

#include "store.h"

#include "../util/buf.h"
#include "../util/durable.h"
#include "../util/status.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STORE_PG_VERSION 5
#define PG_CHUNK (1024 * 1024)
#define PG_MAX_ARGS 24

struct store {
    struct store_base base;      /* first: store.h */
    PGconn *conn;
    pthread_mutex_t mu;
    char *files_dir;
    char node[256];
    int lease;                   /* seconds */
    pthread_t hb;
    bool hb_started, stopping;
    pthread_mutex_t hb_mu;
    pthread_cond_t hb_cv;
    int fail;                    /* the last query's status (mu held): NS_OK, NS_ERR_IO or NS_ERR_BUSY */
};


/* the most bytes of one statement's array literals or COPY piece (a run's results, a line) */
#define PG_BUF_MAX ((size_t)1 << 30)

/* the most lines of one batch written by one statement */
#define PG_MAX_RUN 256

/* the database's clock, in milliseconds (leases) */
#define PG_NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"

struct store_pg_args {
    int n;
    const char *v[PG_MAX_ARGS];
    int len[PG_MAX_ARGS];
    int fmt[PG_MAX_ARGS];
    char num[PG_MAX_ARGS][24];
};

/* store_pg.c */
void store_pg_arg_i64(struct store_pg_args *a, int64_t x);
void store_pg_arg_text(struct store_pg_args *a, const char *s);
void store_pg_alive(struct store *st);
long store_pg_changes(const PGresult *r);
void store_pg_copy(char *dst, size_t n, const PGresult *r, int row, int col);
char *store_pg_dup(const PGresult *r, int row, int col);
int store_pg_exec(struct store *st, const char *sql);
int64_t store_pg_i64(const PGresult *r, int row, int col);
PGresult *store_pg_q(struct store *st, const char *sql, const struct store_pg_args *a);
/* note a result that is not ok (NULL: the connection's error) as the last query's failure */
int store_pg_failed(struct store *st, const PGresult *r);
/* end a failed transaction: NS_ERR_BUSY when the statement that failed met contention
 * (store.h: worth another try), else rc */
int store_pg_rollback(struct store *st, int rc);

/* fills elem (zeroed) from row `row` of r; ud is the caller's (store_pg_rows) */
typedef void (*store_pg_row_fn)(const PGresult *r, int row, void *elem, void *ud);
/* The rows of a query's result as an array: every listing operation is "query, an array of
 * the rows, each row read into its element", and this is that once. Takes r (NULL: the
 * query failed, NS_ERR_IO) and clears it; reads at most max rows (max < 0: all) of
 * elem_size bytes each. *out is calloc'd for the caller (one element at least, so an empty
 * answer is not NULL); NS_ERR_NOMEM leaves *out NULL and *n 0. */
int store_pg_rows(PGresult *r, int max, size_t elem_size, store_pg_row_fn row, void *ud, void **out, int *n);

/* store_pg_lines.c */
int store_pg_batch_delete(struct store *st, const char *id);
int store_pg_key_count(struct store *st, int64_t *n);
int store_pg_key_get(struct store *st, const char *hash_hex, struct store_key *out);
int store_pg_key_insert(struct store *st, const struct store_key *k, const char *hash_hex);
int store_pg_key_list(struct store *st, struct store_key **out, int *n);
int store_pg_key_revoke(struct store *st, const char *name, int64_t at);
int store_pg_key_rotate(struct store *st, const char *name, const char *hash_hex);
int store_pg_lines_claim(struct store *st, const char *batch_id, const char *model, int max,
                         struct store_line **out, int *n);
int store_pg_lines_count_unfinished(struct store *st, const char *batch_id, int64_t *pending, int64_t *running);
int store_pg_lines_export(struct store *st, const char *batch_id, FILE *ok_out, FILE *err_out);
int store_pg_lines_fail_unfinished(struct store *st, const char *batch_id, bool running_too,
                                   enum store_fail_kind kind, char *(*make)(void *ud, const char *custom_id),
                                   void *ud);
int store_pg_lines_failed(struct store *st, const char *batch_id, struct store_line **out, int *n);
int store_pg_lines_finish(struct store *st, const struct store_result *rs, int n);
int store_pg_lines_insert(struct store *st, const char *batch_id, const struct store_line *lines, int n);
int store_pg_lines_requeue(struct store *st);
int store_pg_lines_route(struct store *st, const char *batch_id, const char *model, const char *from, const char *to,
                         int64_t max, int64_t *moved);
int store_pg_lines_release(struct store *st, const char *batch_id, const int64_t *idx, int n, const char *to);
int store_pg_lines_routes(struct store *st, const char *batch_id, struct store_route **out, int *n);
int store_pg_node_id(struct store *st, char *out, size_t n);
int store_pg_webhook_insert(struct store *st, const struct store_webhook *w);
int store_pg_webhook_update(struct store *st, const struct store_webhook *w);
int store_pg_webhooks_due(struct store *st, int64_t now, int max, struct store_webhook **out, int *n);
int store_pg_webhooks_list(struct store *st, const char *batch_id, int limit, struct store_webhook **out, int *n);

#endif
