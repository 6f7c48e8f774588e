/*
 * store_pg.c — the shared store: PostgreSQL through libpq, for many nightshift nodes on one
 * queue (`--db postgres://...`). Same operations and semantics as store_sqlite.c; what
 * differs is what N processes on N machines need.
 *
 * DESIGN
 * - Files live in the database (file_chunks: 1 MiB bytea rows), written from the local file
 *   at file_insert and read back chunk by chunk, never whole in memory. Every node keeps a
 *   local copy under DATA_DIR/files/<id>, made on first use by file_get (streamed to a
 *   temporary upload-* name, size-checked, fsynced, renamed): the rest of the program
 *   reads files by path, as with SQLite. A file never changes once inserted, so a copy is
 *   never stale; a copy of a file another node deleted stays until this node's start-up
 *   sweep of files without a row.
 * - Work distribution: lines_claim takes pending lines with SELECT ... FOR UPDATE SKIP
 *   LOCKED (nodes never wait on each other's claims) and marks them running under a lease
 *   (node id, lease_until). A heartbeat thread renews this node's leases every
 *   lease/3 seconds. A line whose lease ran out (its node died or hung) counts as pending
 *   again and is claimed by whoever comes next. lines_finish writes a result only over an
 *   unfinished line, so a line that ran twice (a lease lost to a long pause) still has
 *   exactly one result.
 * - Batch steps that must run once (validation, settling a cancel, finalization) are
 *   guarded by a batch lease (batch_lease) and, as on SQLite, by the compare-and-set of
 *   batch_update: two nodes may both try, one wins, the other's work is undone.
 * - Webhook deliveries are claimed the same way (webhooks_due pushes next_at forward in the
 *   claiming transaction), so one node delivers each try.
 * - Time for leases is the database's clock (one clock for every node).
 * - A serialization failure or deadlock (SQLSTATE 40001, 40P01: two nodes' transactions
 *   crossed) rolls back and is NS_ERR_BUSY, which the store.h wrappers try again.
 * - Schema versioned in table ns_schema, migrated at open under a transaction-scoped
 *   advisory lock (nodes starting together migrate once); a newer schema is refused.
 *
 * URI: postgres://[user[:password]@][host][:port]/dbname[?param=value...] as libpq takes
 * it, plus nightshift's own parameters, removed before libpq sees the URI:
 *   node=ID             this node's id (default: hostname:realpath(data dir), stable
 *                       across restarts, so a restarted node takes its own lines back at once)
 *   lease_seconds=N     how long a claimed line or batch step stays this node's (default 30)
 *
 * THREADS: one connection, one mutex (as SQLite's store); the heartbeat thread takes the
 * same mutex. Out-params are the caller's (free with the matching _release).
 */
#include "store_pg_int.h"

/* ---- query helpers -------------------------------------------------------------------- */


void store_pg_arg_text(struct store_pg_args *a, const char *s)
{
    a->v[a->n] = s; /* NULL = SQL NULL */
    a->len[a->n] = 0;
    a->fmt[a->n] = 0;
    a->n++;
}

void store_pg_arg_i64(struct store_pg_args *a, int64_t x)
{
    snprintf(a->num[a->n], sizeof(a->num[0]), "%lld", (long long)x);
    store_pg_arg_text(a, a->num[a->n]);
}

static void pg_arg_bin(struct store_pg_args *a, const void *p, int n)
{
    a->v[a->n] = p;
    a->len[a->n] = n;
    a->fmt[a->n] = 1;
    a->n++;
}

/* a connection that dropped (server restart) is re-opened before the next query */
void store_pg_alive(struct store *st)
{
    if (PQstatus(st->conn) != CONNECTION_OK)
        PQreset(st->conn);
}

/* run sql with args; the result when its status is ok (tuples or command), else NULL */
PGresult *store_pg_q(struct store *st, const char *sql, const struct store_pg_args *a)
{
    store_pg_alive(st);
    PGresult *r = PQexecParams(st->conn, sql, a ? a->n : 0, NULL, a ? a->v : NULL, a ? a->len : NULL,
                               a ? a->fmt : NULL, 0);
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK) {
        st->fail = NS_OK;
        return r;
    }
    store_pg_failed(st, r);
    PQclear(r);
    return NULL;
}

int store_pg_failed(struct store *st, const PGresult *r)
{
    store_note_error(r ? PQresultErrorMessage(r) : PQerrorMessage(st->conn));
    st->fail = store_status_of_sqlstate(r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL);
    return st->fail;
}

int store_pg_rollback(struct store *st, int rc)
{
    if (st->fail == NS_ERR_BUSY)
        rc = NS_ERR_BUSY; /* read before ROLLBACK's own status replaces it */
    store_pg_exec(st, "ROLLBACK");
    return rc;
}

/* sql without parameters; may hold several statements (the schema) */
int store_pg_exec(struct store *st, const char *sql)
{
    store_pg_alive(st);
    PGresult *r = PQexec(st->conn, sql);
    ExecStatusType s = PQresultStatus(r);
    st->fail = s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK ? NS_OK : store_pg_failed(st, r);
    PQclear(r);
    return st->fail;
}

int64_t store_pg_i64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

char *store_pg_dup(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

void store_pg_copy(char *dst, size_t n, const PGresult *r, int row, int col)
{
    snprintf(dst, n, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

int store_pg_rows(PGresult *r, int max, size_t elem_size, store_pg_row_fn row, void *ud, void **out, int *n)
{
    *out = NULL;
    *n = 0;
    if (!r)
        return NS_ERR_IO;
    int got = PQntuples(r);
    if (max >= 0 && got > max)
        got = max;
    char *arr = calloc((size_t)(got ? got : 1), elem_size);
    if (!arr) {
        PQclear(r);
        return NS_ERR_NOMEM;
    }
    for (int i = 0; i < got; i++)
        row(r, i, arr + (size_t)i * elem_size, ud);
    PQclear(r);
    *out = arr;
    *n = got;
    return NS_OK;
}

/* rows changed by an UPDATE/DELETE/INSERT result */
long store_pg_changes(const PGresult *r)
{
    return strtol(PQcmdTuples((PGresult *)r), NULL, 10);
}


/* ---- open, schema, heartbeat ---------------------------------------------------------- */

static const char pg_schema_v1[] =
    "CREATE TABLE files("
    "  id text PRIMARY KEY, owner text NOT NULL, purpose text NOT NULL, filename text NOT NULL,"
    "  bytes bigint NOT NULL, created_at bigint NOT NULL, expires_at bigint NOT NULL DEFAULT 0,"
    "  seq bigserial NOT NULL);"
    "CREATE TABLE file_chunks(file_id text NOT NULL REFERENCES files(id) ON DELETE CASCADE,"
    "  n integer NOT NULL, data bytea NOT NULL, PRIMARY KEY(file_id, n));"
    "CREATE TABLE batches("
    "  id text PRIMARY KEY, owner text NOT NULL, endpoint text NOT NULL, model text,"
    "  input_file_id text NOT NULL, completion_window text NOT NULL, status integer NOT NULL,"
    "  output_file_id text NOT NULL DEFAULT '', error_file_id text NOT NULL DEFAULT '',"
    "  created_at bigint NOT NULL, in_progress_at bigint NOT NULL DEFAULT 0, expires_at bigint NOT NULL DEFAULT 0,"
    "  finalizing_at bigint NOT NULL DEFAULT 0, completed_at bigint NOT NULL DEFAULT 0,"
    "  failed_at bigint NOT NULL DEFAULT 0, expired_at bigint NOT NULL DEFAULT 0,"
    "  cancelling_at bigint NOT NULL DEFAULT 0, cancelled_at bigint NOT NULL DEFAULT 0,"
    "  total bigint NOT NULL DEFAULT 0, completed bigint NOT NULL DEFAULT 0, failed bigint NOT NULL DEFAULT 0,"
    "  input_tokens bigint NOT NULL DEFAULT 0, cached_tokens bigint NOT NULL DEFAULT 0,"
    "  output_tokens bigint NOT NULL DEFAULT 0, prompt_computed bigint NOT NULL DEFAULT 0,"
    "  metadata text, errors text, output_expires_after bigint NOT NULL DEFAULT 0,"
    "  not_before bigint NOT NULL DEFAULT 0, seq bigserial NOT NULL,"
    "  canceled bigint NOT NULL DEFAULT 0, expired bigint NOT NULL DEFAULT 0,"
    "  lease_node text, lease_until bigint NOT NULL DEFAULT 0);"
    "CREATE INDEX batches_status ON batches(status);"
    "CREATE TABLE lines("
    "  batch_id text NOT NULL, idx bigint NOT NULL, line_no bigint NOT NULL, custom_id text NOT NULL,"
    "  byte_off bigint NOT NULL, byte_len bigint NOT NULL, url integer NOT NULL, model text,"
    "  state integer NOT NULL DEFAULT 0, result text, node text, lease_until bigint NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(batch_id, idx));"
    "CREATE INDEX lines_state ON lines(batch_id, state, idx);"
    "CREATE INDEX lines_running ON lines(node) WHERE state = 1;"
    "CREATE TABLE webhooks("
    "  id text PRIMARY KEY, batch_id text NOT NULL, type text NOT NULL, endpoint text NOT NULL,"
    "  url text NOT NULL, body text NOT NULL, created_at bigint NOT NULL, next_at bigint NOT NULL,"
    "  delivered_at bigint NOT NULL DEFAULT 0, attempts integer NOT NULL DEFAULT 0,"
    "  last_status integer NOT NULL DEFAULT 0, state integer NOT NULL DEFAULT 0, last_error text NOT NULL DEFAULT '');"
    "CREATE INDEX webhooks_due ON webhooks(state, next_at);"
    "CREATE INDEX webhooks_batch ON webhooks(batch_id);"
    "CREATE TABLE keys(hash text PRIMARY KEY, name text NOT NULL UNIQUE, project text NOT NULL,"
    "  admin boolean NOT NULL, created_at bigint NOT NULL);";

/* migrations[v] turns schema v-1 into v; v1 creates everything */
static const char *const pg_migrations[STORE_PG_VERSION + 1] = {
    [1] = pg_schema_v1,
    /* a key's own limits (http/quota.h); NULL: the server's default */
    [2] = "ALTER TABLE keys ADD COLUMN rpm bigint, ADD COLUMN tokens_per_day bigint,"
          "  ADD COLUMN batch_queue_tokens bigint;",
    /* revocation, and the mark that keys existed (store.h: key_count) */
    [3] = "ALTER TABLE keys ADD COLUMN revoked_at bigint NOT NULL DEFAULT 0;"
          "CREATE TABLE IF NOT EXISTS keys_ever(one integer PRIMARY KEY CHECK(one = 1));"
          "INSERT INTO keys_ever SELECT 1 FROM keys LIMIT 1 ON CONFLICT DO NOTHING;",
    /* stored Responses API objects (store.h: struct store_response) */
    [4] = "CREATE TABLE responses(id text PRIMARY KEY, owner text NOT NULL, created_at bigint NOT NULL,"
          "  status integer NOT NULL, background boolean NOT NULL, model text NOT NULL, previous_id text,"
          "  request text NOT NULL, body text NOT NULL, seq bigserial NOT NULL);"
          "CREATE INDEX responses_status ON responses(status, seq);"
          "CREATE INDEX responses_created ON responses(created_at);",
    /* spill-over and fail-over (store.h: struct store_route): a line's route, and each
     * backend's share of a batch */
    [5] = "ALTER TABLE lines ADD COLUMN backend text;"
          "CREATE TABLE batch_backends(batch_id text NOT NULL, backend text NOT NULL,"
          "  completed bigint NOT NULL DEFAULT 0, failed bigint NOT NULL DEFAULT 0,"
          "  input_tokens bigint NOT NULL DEFAULT 0, output_tokens bigint NOT NULL DEFAULT 0,"
          "  cached_tokens bigint NOT NULL DEFAULT 0, PRIMARY KEY(batch_id, backend));",
};

/* Split nightshift's own parameters (node, lease_seconds) off a URI: libpq refuses unknown
 * ones. *conninfo is malloc'd. */
static int pg_parse_uri(const char *uri, char **conninfo, char *node, size_t nodelen, int *lease, char *err,
                        size_t errlen)
{
    size_t n = strlen(uri);
    char *out = malloc(n + 1);
    if (!out)
        return NS_ERR_NOMEM;
    const char *q = strchr(uri, '?');
    size_t base = q ? (size_t)(q - uri) : n;
    memcpy(out, uri, base);
    size_t o = base;
    bool first = true;
    const char *p = q ? q + 1 : NULL;
    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > 5 && strncmp(p, "node=", 5) == 0) {
            if (len - 5 >= nodelen) {
                snprintf(err, errlen, "the node id in --db is longer than %zu bytes", nodelen - 1);
                free(out);
                return NS_ERR_INVALID;
            }
            memcpy(node, p + 5, len - 5);
            node[len - 5] = '\0';
        } else if (len > 14 && strncmp(p, "lease_seconds=", 14) == 0) {
            char num[16];
            char *end = NULL;
            snprintf(num, sizeof(num), "%.*s", (int)(len - 14), p + 14);
            errno = 0;
            long v = strtol(num, &end, 10);
            if (errno || *end || v < 1 || v > 3600) {
                snprintf(err, errlen, "--db: lease_seconds must be a whole number of seconds from 1 to 3600 (got '%s')",
                         num);
                free(out);
                return NS_ERR_INVALID;
            }
            *lease = (int)v;
        } else if (len) {
            out[o++] = first ? '?' : '&';
            memcpy(out + o, p, len);
            o += len;
            first = false;
        }
        p = amp ? amp + 1 : NULL;
    }
    out[o] = '\0';
    *conninfo = out;
    return NS_OK;
}

/* the URI with any password replaced, for messages */
static void pg_redact(const char *uri, char *out, size_t n)
{
    const char *scheme = strstr(uri, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *colon = at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
    if (colon)
        snprintf(out, n, "%.*s:***%s", (int)(colon - uri), uri, at);
    else
        snprintf(out, n, "%s", uri);
    char *qm = strchr(out, '?');
    if (qm)
        *qm = '\0';
}

static void pg_quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* connect to uri (nightshift's own parameters go into node and lease): 0 and *out, or a
 * status (NS_ERR_INVALID for a bad parameter, NS_ERR_IO when the server cannot be reached)
 * with err naming the URI without its password */
static int pg_connect(const char *uri, char *node, size_t nodelen, int *lease, PGconn **out, char *err, size_t errlen)
{
    char *conninfo = NULL;
    char shown[512];
    int rc;
    *out = NULL;
    pg_redact(uri, shown, sizeof(shown));
    if ((rc = pg_parse_uri(uri, &conninfo, node, nodelen, lease, err, errlen)))
        return rc;
    PGconn *c = PQconnectdb(conninfo);
    free(conninfo);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        const char *m = c ? PQerrorMessage(c) : "out of memory";
        size_t ml = strlen(m);
        while (ml && (m[ml - 1] == '\n' || m[ml - 1] == ' '))
            ml--;
        snprintf(err, errlen, "cannot connect to PostgreSQL at '%s': %.*s", shown, (int)ml, m);
        PQfinish(c);
        return NS_ERR_IO;
    }
    /* notices (CREATE ... IF NOT EXISTS and the like) are not ours to print */
    PQsetNoticeProcessor(c, pg_quiet, NULL);
    *out = c;
    return NS_OK;
}

/* the schema version in the database; 0 when there is none yet, -1 on error */
static int pg_version(PGconn *c)
{
    PGresult *r = PQexec(c, "SELECT to_regclass('ns_schema') IS NOT NULL");
    int v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        bool has = PQgetvalue(r, 0, 0)[0] == 't';
        PQclear(r);
        if (!has)
            return 0;
        r = PQexec(c, "SELECT max(version) FROM ns_schema");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            v = PQgetisnull(r, 0, 0) ? 0 : (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
    }
    PQclear(r);
    return v;
}

static void *pg_heartbeat(void *arg);

static int pg_open(const char *uri, const char *data_dir, struct store **out, char *err, size_t errlen)
{
    struct store *st = calloc(1, sizeof(*st));
    int rc = NS_OK;
    char files[PATH_MAX + 8], real[PATH_MAX], host[128] = "localhost";
    *out = NULL;
    if (!st)
        return NS_ERR_NOMEM;
    st->base.ops = &store_pg_ops;
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_init(&st->hb_mu, NULL);
    pthread_cond_init(&st->hb_cv, NULL);
    st->lease = 30;
    snprintf(files, sizeof(files), "%s/files", data_dir ? data_dir : ".");
    st->files_dir = strdup(files);
    gethostname(host, sizeof(host) - 1);
    const char *where = realpath(data_dir ? data_dir : ".", real) ? real : files;
    size_t wl = strlen(where);
    /* the end of a long path says more than its start */
    snprintf(st->node, sizeof(st->node), "%.60s:%.180s", host, wl > 180 ? where + wl - 180 : where);
    if (!st->files_dir) {
        rc = NS_ERR_NOMEM;
        goto out;
    }
    if ((rc = pg_connect(uri, st->node, sizeof(st->node), &st->lease, &st->conn, err, errlen)))
        goto out;
    /* nodes starting together: one migrates, the others wait for it and see the result */
    if (store_pg_exec(st, "BEGIN") || store_pg_exec(st, "SELECT pg_advisory_xact_lock(7460218934512)")) {
        snprintf(err, errlen, "cannot lock the schema: %s", PQerrorMessage(st->conn));
        rc = NS_ERR_IO;
        goto out;
    }
    int version = pg_version(st->conn);
    if (version < 0) {
        snprintf(err, errlen, "cannot read the schema version: %s", PQerrorMessage(st->conn));
        rc = NS_ERR_IO;
    } else if (version > STORE_PG_VERSION) {
        snprintf(err, errlen,
                 "the PostgreSQL database has schema version %d, newer than this nightshift understands (%d); "
                 "use a newer nightshift",
                 version, STORE_PG_VERSION);
        rc = NS_ERR_CONFLICT;
    } else if (version < STORE_PG_VERSION) {
        bool ok = version > 0 || store_pg_exec(st, "CREATE TABLE ns_schema(version integer NOT NULL)") == NS_OK;
        for (int v = version + 1; ok && v <= STORE_PG_VERSION; v++)
            ok = store_pg_exec(st, pg_migrations[v]) == NS_OK;
        struct store_pg_args a = {0};
        store_pg_arg_i64(&a, STORE_PG_VERSION);
        PGresult *r = ok ? store_pg_q(st, "INSERT INTO ns_schema(version) VALUES($1)", &a) : NULL;
        if (!r) {
            snprintf(err, errlen, "cannot create the schema: %s", PQerrorMessage(st->conn));
            rc = NS_ERR_IO;
        }
        PQclear(r);
    }
    if (rc || store_pg_exec(st, "COMMIT")) {
        if (!rc) {
            snprintf(err, errlen, "cannot create the schema: %s", PQerrorMessage(st->conn));
            rc = NS_ERR_IO;
        }
        store_pg_exec(st, "ROLLBACK");
        goto out;
    }
    if (pthread_create(&st->hb, NULL, pg_heartbeat, st) != 0) {
        snprintf(err, errlen, "cannot start the lease heartbeat thread");
        rc = NS_ERR_INTERNAL;
        goto out;
    }
    st->hb_started = true;
out:
    if (rc) {
        PQfinish(st->conn);
        free(st->files_dir);
        pthread_mutex_destroy(&st->mu);
        pthread_mutex_destroy(&st->hb_mu);
        pthread_cond_destroy(&st->hb_cv);
        free(st);
        return rc;
    }
    *out = st;
    return NS_OK;
}

/* renew the leases of this node's running lines every lease/3 s; a node that stops
 * renewing (dead, hung, cut off) loses them after `lease` s */
static void *pg_heartbeat(void *arg)
{
    struct store *st = arg;
    pthread_mutex_lock(&st->hb_mu);
    while (!st->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ms = (int64_t)st->lease * 1000 / 3;
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&st->hb_cv, &st->hb_mu, &ts);
        if (st->stopping)
            break;
        pthread_mutex_unlock(&st->hb_mu);
        struct store_pg_args a = {0};
        store_pg_arg_text(&a, st->node);
        store_pg_arg_i64(&a, (int64_t)st->lease * 1000);
        pthread_mutex_lock(&st->mu);
        PQclear(store_pg_q(st, "UPDATE lines SET lease_until = " PG_NOW_MS " + $2 WHERE node = $1 AND state = 1", &a));
        pthread_mutex_unlock(&st->mu);
        pthread_mutex_lock(&st->hb_mu);
    }
    pthread_mutex_unlock(&st->hb_mu);
    return NULL;
}

static void pg_close(struct store *st)
{
    if (!st)
        return;
    if (st->hb_started) {
        pthread_mutex_lock(&st->hb_mu);
        st->stopping = true;
        pthread_cond_broadcast(&st->hb_cv);
        pthread_mutex_unlock(&st->hb_mu);
        pthread_join(st->hb, NULL);
    }
    PQfinish(st->conn);
    free(st->files_dir);
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->hb_mu);
    pthread_cond_destroy(&st->hb_cv);
    free(st);
}

static int pg_check(struct store *st)
{
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st, "SELECT pg_is_in_recovery()", NULL);
    int rc = r && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 'f' ? NS_OK : NS_ERR_IO;
    PQclear(r);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* ---- files ------------------------------------------------------------------------------ */

static int pg_file_insert(struct store *st, const struct store_file *f)
{
    int rc = NS_ERR_IO;
    unsigned char *buf = NULL;
    int fd = f->path ? open(f->path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return NS_ERR_IO;
    buf = malloc(PG_CHUNK);
    if (!buf) {
        close(fd);
        return NS_ERR_NOMEM;
    }
    pthread_mutex_lock(&st->mu);
    if (store_pg_exec(st, "BEGIN"))
        goto out;
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, f->id);
    store_pg_arg_text(&a, f->owner);
    store_pg_arg_text(&a, f->purpose);
    store_pg_arg_text(&a, f->filename ? f->filename : "");
    store_pg_arg_i64(&a, f->bytes);
    store_pg_arg_i64(&a, f->created_at);
    store_pg_arg_i64(&a, f->expires_at);
    PGresult *r = store_pg_q(st, "INSERT INTO files(id,owner,purpose,filename,bytes,created_at,expires_at) "
                           "VALUES($1,$2,$3,$4,$5,$6,$7)", &a);
    if (!r)
        goto rollback;
    PQclear(r);
    /* the content, a chunk at a time: never whole in memory */
    int64_t total = 0;
    for (int n = 0;; n++) {
        size_t got = 0;
        while (got < PG_CHUNK) {
            ssize_t k = read(fd, buf + got, PG_CHUNK - got);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                goto rollback;
            if (k == 0)
                break;
            got += (size_t)k;
        }
        if (got == 0 && n > 0)
            break;
        struct store_pg_args c = {0};
        store_pg_arg_text(&c, f->id);
        store_pg_arg_i64(&c, n);
        pg_arg_bin(&c, buf, (int)got);
        r = store_pg_q(st, "INSERT INTO file_chunks(file_id,n,data) VALUES($1,$2::integer,$3::bytea)", &c);
        if (!r)
            goto rollback;
        PQclear(r);
        total += (int64_t)got;
        if (got < PG_CHUNK)
            break;
    }
    if (total != f->bytes)
        goto rollback; /* the file changed under us: refuse rather than store a torn copy */
    if (store_pg_exec(st, "COMMIT") == NS_OK) {
        rc = NS_OK;
        goto out;
    }
rollback:
    rc = store_pg_rollback(st, rc);
out:
    pthread_mutex_unlock(&st->mu);
    free(buf);
    close(fd);
    return rc;
}

/* copy the content of file id from the database to path (absent), durably (util/durable.h:
 * a *.tmp-* name in the same dir, swept at start-up if we die, renamed when whole) */
static int pg_file_fetch(struct store *st, const char *id, int64_t bytes, const char *path)
{
    struct durable d;
    if (durable_open(&d, path))
        return NS_ERR_IO;
    int rc = NS_ERR_IO;
    int64_t total = 0;
    for (int n = 0;; n++) {
        struct store_pg_args a = {0};
        store_pg_arg_text(&a, id);
        store_pg_arg_i64(&a, n);
        /* one chunk per query, the store unlocked between them: a big file does not
         * hold up the other threads */
        pthread_mutex_lock(&st->mu);
        store_pg_alive(st);
        PGresult *r = PQexecParams(st->conn, "SELECT data FROM file_chunks WHERE file_id=$1 AND n=$2::integer", a.n,
                                   NULL, a.v, NULL, NULL, 1);
        pthread_mutex_unlock(&st->mu);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            PQclear(r);
            goto out;
        }
        if (PQntuples(r) == 0) {
            PQclear(r);
            break;
        }
        const char *data = PQgetvalue(r, 0, 0);
        size_t len = (size_t)PQgetlength(r, 0, 0);
        if (durable_write(&d, data, len)) {
            PQclear(r);
            goto out;
        }
        total += (int64_t)len;
        PQclear(r);
    }
    if (total != bytes)
        goto out;
    /* a local copy of a row that exists: kept even when only the directory sync failed */
    return durable_commit(&d) == NS_OK || access(path, F_OK) == 0 ? NS_OK : NS_ERR_IO;
out:
    durable_rollback(&d);
    return rc;
}

#define PG_FILE_COLS "id,owner,purpose,filename,bytes,created_at,expires_at"

/* a store_pg_row_fn: ud is the store (the files dir) */
static void pg_row_file(const PGresult *r, int i, void *elem, void *ud)
{
    const struct store *st = ud;
    struct store_file *f = elem;
    memset(f, 0, sizeof(*f));
    store_pg_copy(f->id, sizeof(f->id), r, i, 0);
    store_pg_copy(f->owner, sizeof(f->owner), r, i, 1);
    store_pg_copy(f->purpose, sizeof(f->purpose), r, i, 2);
    f->filename = store_pg_dup(r, i, 3);
    f->bytes = store_pg_i64(r, i, 4);
    f->created_at = store_pg_i64(r, i, 5);
    f->expires_at = store_pg_i64(r, i, 6);
    size_t n = strlen(st->files_dir) + strlen(f->id) + 2;
    f->path = malloc(n);
    if (f->path)
        snprintf(f->path, n, "%s/%s", st->files_dir, f->id);
}

static int pg_file_get(struct store *st, const char *id, struct store_file *out)
{
    int rc = NS_ERR_IO;
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, id);
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st, "SELECT " PG_FILE_COLS " FROM files WHERE id=$1", &a);
    if (r && PQntuples(r) == 1) {
        pg_row_file(r, 0, out, st);
        rc = out->path && out->filename ? NS_OK : NS_ERR_NOMEM;
    } else if (r) {
        rc = NS_ERR_NOT_FOUND;
    }
    PQclear(r);
    pthread_mutex_unlock(&st->mu);
    /* this node's copy, made on first use */
    if (rc == NS_OK && access(out->path, F_OK) != 0)
        rc = pg_file_fetch(st, id, out->bytes, out->path);
    if (rc)
        store_file_release(out);
    return rc;
}

/* seq of an id for keyset pagination, among the rows owner may see (NULL: all); -1 when
 * unknown, as for another project's id (no existence oracle) (mu held) */
static int64_t pg_seq_of(struct store *st, const char *table, const char *id, const char *owner)
{
    char sql[128];
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, id);
    store_pg_arg_text(&a, owner);
    snprintf(sql, sizeof(sql), "SELECT seq FROM %s WHERE id=$1 AND ($2::text IS NULL OR owner=$2)", table);
    PGresult *r = store_pg_q(st, sql, &a);
    int64_t seq = r && PQntuples(r) == 1 ? store_pg_i64(r, 0, 0) : -1;
    PQclear(r);
    return seq;
}

static int pg_file_list(struct store *st, const struct store_list_page *pg, struct store_file **out, int *n,
                        bool *has_more)
{
    int rc = NS_OK, got = 0;
    PGresult *r = NULL;
    void *arr = NULL;
    *out = NULL;
    *n = 0;
    *has_more = false;
    pthread_mutex_lock(&st->mu);
    int64_t after = pg->after ? pg_seq_of(st, "files", pg->after, pg->owner) : -1;
    if (pg->after && after < 0) {
        pthread_mutex_unlock(&st->mu);
        return NS_OK; /* an unknown cursor: nothing after it */
    }
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT " PG_FILE_COLS " FROM files WHERE ($1::text IS NULL OR owner=$1) AND ($2::text IS NULL OR purpose=$2) "
             "AND ($3::bigint < 0 OR seq %s $3::bigint) ORDER BY seq %s LIMIT $4::bigint",
             pg->desc ? "<" : ">", pg->desc ? "DESC" : "ASC");
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, pg->owner);
    store_pg_arg_text(&a, pg->purpose);
    store_pg_arg_i64(&a, after);
    store_pg_arg_i64(&a, pg->limit + 1);
    r = store_pg_q(st, sql, &a);
    pthread_mutex_unlock(&st->mu);
    /* one row more than the page: whether there are more */
    if ((rc = store_pg_rows(r, pg->limit + 1, sizeof(struct store_file), pg_row_file, st, &arr, &got)))
        return rc;
    struct store_file *fs = arr;
    if ((*has_more = got > pg->limit))
        store_file_release(&fs[--got]);
    *out = fs;
    *n = got;
    return NS_OK;
}

static int pg_file_delete(struct store *st, const char *id)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, id);
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st, "DELETE FROM files WHERE id=$1", &a);
    int rc = !r ? NS_ERR_IO : store_pg_changes(r) ? NS_OK : NS_ERR_NOT_FOUND;
    PQclear(r);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* ---- batches -------------------------------------------------------------------------- */

#define PG_BATCH_COLS                                                                                              \
    "id,owner,endpoint,model,input_file_id,completion_window,status,output_file_id,error_file_id,created_at,"     \
    "in_progress_at,expires_at,finalizing_at,completed_at,failed_at,expired_at,cancelling_at,cancelled_at,total," \
    "completed,failed,input_tokens,cached_tokens,output_tokens,prompt_computed,metadata,errors,"                  \
    "output_expires_after,not_before,seq,canceled,expired"

/* a store_pg_row_fn */
static void pg_row_batch(const PGresult *r, int i, void *elem, void *ud)
{
    (void)ud;
    struct store_batch *b = elem;
    memset(b, 0, sizeof(*b));
    store_pg_copy(b->id, sizeof(b->id), r, i, 0);
    store_pg_copy(b->owner, sizeof(b->owner), r, i, 1);
    store_pg_copy(b->endpoint, sizeof(b->endpoint), r, i, 2);
    b->model = store_pg_dup(r, i, 3);
    store_pg_copy(b->input_file_id, sizeof(b->input_file_id), r, i, 4);
    store_pg_copy(b->completion_window, sizeof(b->completion_window), r, i, 5);
    b->status = (enum store_batch_status)store_pg_i64(r, i, 6);
    store_pg_copy(b->output_file_id, sizeof(b->output_file_id), r, i, 7);
    store_pg_copy(b->error_file_id, sizeof(b->error_file_id), r, i, 8);
    int64_t *ts[] = {&b->created_at, &b->in_progress_at, &b->expires_at, &b->finalizing_at, &b->completed_at,
                     &b->failed_at, &b->expired_at, &b->cancelling_at, &b->cancelled_at, &b->total, &b->completed,
                     &b->failed, &b->input_tokens, &b->cached_tokens, &b->output_tokens, &b->prompt_computed};
    for (size_t k = 0; k < sizeof(ts) / sizeof(ts[0]); k++)
        *ts[k] = store_pg_i64(r, i, 9 + (int)k);
    b->metadata = store_pg_dup(r, i, 25);
    b->errors = store_pg_dup(r, i, 26);
    b->output_expires_after = store_pg_i64(r, i, 27);
    b->not_before = store_pg_i64(r, i, 28);
    b->seq = store_pg_i64(r, i, 29);
    b->canceled = store_pg_i64(r, i, 30);
    b->expired = store_pg_i64(r, i, 31);
}

static int pg_batch_insert(struct store *st, struct store_batch *b)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, b->id);
    store_pg_arg_text(&a, b->owner);
    store_pg_arg_text(&a, b->endpoint);
    store_pg_arg_text(&a, b->model);
    store_pg_arg_text(&a, b->input_file_id);
    store_pg_arg_text(&a, b->completion_window);
    store_pg_arg_i64(&a, b->status);
    store_pg_arg_i64(&a, b->created_at);
    store_pg_arg_i64(&a, b->expires_at);
    store_pg_arg_text(&a, b->metadata);
    store_pg_arg_i64(&a, b->output_expires_after);
    store_pg_arg_i64(&a, b->not_before);
    store_pg_arg_i64(&a, b->total);
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st,
                             "INSERT INTO batches(id,owner,endpoint,model,input_file_id,completion_window,status,created_at,"
                             "expires_at,metadata,output_expires_after,not_before,total) "
                             "VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) RETURNING seq",
                             &a);
    int rc = !r ? st->fail : PQntuples(r) == 1 ? NS_OK : NS_ERR_IO;
    if (!rc)
        b->seq = store_pg_i64(r, 0, 0);
    PQclear(r);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int pg_batch_get(struct store *st, const char *id, struct store_batch *out)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, id);
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st, "SELECT " PG_BATCH_COLS " FROM batches WHERE id=$1", &a);
    int rc = !r ? NS_ERR_IO : PQntuples(r) == 1 ? NS_OK : NS_ERR_NOT_FOUND;
    if (!rc)
        pg_row_batch(r, 0, out, NULL);
    PQclear(r);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int pg_batch_list(struct store *st, const struct store_list_page *pg, struct store_batch **out, int *n,
                         bool *has_more)
{
    int rc = NS_OK, got = 0;
    PGresult *r = NULL;
    void *arr = NULL;
    *out = NULL;
    *n = 0;
    *has_more = false;
    pthread_mutex_lock(&st->mu);
    int64_t after = pg->after ? pg_seq_of(st, "batches", pg->after, pg->owner) : -1;
    int64_t before = pg->before ? pg_seq_of(st, "batches", pg->before, pg->owner) : -1;
    if ((pg->after && after < 0) || (pg->before && before < 0)) {
        pthread_mutex_unlock(&st->mu);
        return NS_OK; /* an unknown cursor: nothing beyond it */
    }
    /* as store_sqlite.c: newest first; `before` reads upwards from the cursor, reversed below */
    bool desc = pg->desc && !pg->before;
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "SELECT " PG_BATCH_COLS " FROM batches WHERE ($1::text IS NULL OR owner=$1) AND ($2::bigint < 0 OR seq %s "
             "$2::bigint) AND ($4::bigint < 0 OR seq > $4::bigint) AND ($5::text IS NULL OR (endpoint = $5) = $6::boolean) "
             "ORDER BY seq %s LIMIT $3::bigint",
             pg->desc ? "<" : ">", desc ? "DESC" : "ASC");
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, pg->owner);
    store_pg_arg_i64(&a, after);
    store_pg_arg_i64(&a, pg->limit + 1);
    store_pg_arg_i64(&a, before);
    store_pg_arg_text(&a, pg->endpoint);
    store_pg_arg_text(&a, pg->endpoint_not ? "false" : "true");
    r = store_pg_q(st, sql, &a);
    pthread_mutex_unlock(&st->mu);
    /* one row more than the page: whether there are more */
    if ((rc = store_pg_rows(r, pg->limit + 1, sizeof(struct store_batch), pg_row_batch, NULL, &arr, &got)))
        return rc;
    struct store_batch *bs = arr;
    if ((*has_more = got > pg->limit))
        store_batch_release(&bs[--got]);
    for (int i = 0; pg->before && pg->desc && i < got / 2; i++) {
        struct store_batch t = bs[i];
        bs[i] = bs[got - 1 - i];
        bs[got - 1 - i] = t;
    }
    *out = bs;
    *n = got;
    return NS_OK;
}

static int pg_batch_update(struct store *st, const struct store_batch *b, enum store_batch_status expect)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, b->model);
    store_pg_arg_i64(&a, b->status);
    store_pg_arg_text(&a, b->output_file_id);
    store_pg_arg_text(&a, b->error_file_id);
    int64_t ts[] = {b->in_progress_at, b->expires_at, b->finalizing_at, b->completed_at,
                    b->failed_at,      b->expired_at, b->cancelling_at, b->cancelled_at};
    for (int i = 0; i < 8; i++)
        store_pg_arg_i64(&a, ts[i]);
    store_pg_arg_text(&a, b->errors);
    store_pg_arg_text(&a, b->id);
    store_pg_arg_i64(&a, expect);
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st,
                             "UPDATE batches SET model=$1, status=$2, output_file_id=$3, error_file_id=$4, in_progress_at=$5,"
                             " expires_at=$6, finalizing_at=$7, completed_at=$8, failed_at=$9, expired_at=$10,"
                             " cancelling_at=$11, cancelled_at=$12, errors=$13 WHERE id=$14 AND status=$15",
                             &a);
    int rc = !r ? st->fail : store_pg_changes(r) ? NS_OK : NS_ERR_CONFLICT;
    PQclear(r);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* a store_pg_row_fn: an id (char[48]: a batch's, a response's) */
static void pg_row_id(const PGresult *r, int i, void *elem, void *ud)
{
    (void)ud;
    store_pg_copy(elem, 48, r, i, 0);
}

/* the ids a query with one integer parameter selects, in its order */
static int pg_ids(struct store *st, const char *sql, int64_t param, char (**ids)[48], int *n)
{
    struct store_pg_args a = {0};
    store_pg_arg_i64(&a, param);
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st, sql, &a);
    pthread_mutex_unlock(&st->mu);
    void *arr = NULL;
    int rc = store_pg_rows(r, -1, sizeof(**ids), pg_row_id, NULL, &arr, n);
    *ids = arr;
    return rc;
}

static int pg_batch_ids_by_status(struct store *st, enum store_batch_status status, char (**ids)[48], int *n)
{
    return pg_ids(st, "SELECT id FROM batches WHERE status=$1 ORDER BY seq", status, ids, n);
}

static int pg_batch_lease(struct store *st, const char *id)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, id);
    store_pg_arg_text(&a, st->node);
    store_pg_arg_i64(&a, (int64_t)st->lease * 1000);
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st,
                             "UPDATE batches SET lease_node=$2, lease_until=" PG_NOW_MS " + $3 WHERE id=$1 AND "
                             "(lease_node IS NULL OR lease_node=$2 OR lease_until < " PG_NOW_MS ")",
                             &a);
    int rc = !r ? NS_ERR_IO : store_pg_changes(r) ? NS_OK : NS_ERR_CONFLICT;
    PQclear(r);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* ---- Responses API objects ---------------------------------------------------------------- */

#define PG_RESPONSE_COLS "id,owner,created_at,status,background,model,previous_id,request,body,seq"

/* row i of PG_RESPONSE_COLS into r: NS_OK, or NS_ERR_NOMEM (r released) */
static int pg_row_response(const PGresult *res, int i, struct store_response *r)
{
    memset(r, 0, sizeof(*r));
    store_pg_copy(r->id, sizeof(r->id), res, i, 0);
    store_pg_copy(r->owner, sizeof(r->owner), res, i, 1);
    r->created_at = store_pg_i64(res, i, 2);
    r->status = (enum store_response_status)store_pg_i64(res, i, 3);
    r->background = PQgetvalue(res, i, 4)[0] == 't';
    r->model = store_pg_dup(res, i, 5);
    r->previous_id = store_pg_dup(res, i, 6);
    r->request = store_pg_dup(res, i, 7);
    r->body = store_pg_dup(res, i, 8);
    r->seq = store_pg_i64(res, i, 9);
    if (!r->model || !r->request || !r->body || (!r->previous_id && !PQgetisnull(res, i, 6))) {
        store_response_release(r);
        return NS_ERR_NOMEM;
    }
    return NS_OK;
}

static int pg_response_insert(struct store *st, struct store_response *r)
{
    if (!r->model || !r->request || !r->body)
        return NS_ERR_INTERNAL; /* store.h: the caller's bug */
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, r->id);
    store_pg_arg_text(&a, r->owner);
    store_pg_arg_i64(&a, r->created_at);
    store_pg_arg_i64(&a, r->status);
    store_pg_arg_text(&a, r->background ? "true" : "false");
    store_pg_arg_text(&a, r->model);
    store_pg_arg_text(&a, r->previous_id);
    store_pg_arg_text(&a, r->request);
    store_pg_arg_text(&a, r->body);
    pthread_mutex_lock(&st->mu);
    /* an id that exists inserts nothing and returns no row: the conflict, without an error
     * that would need telling apart from the others */
    PGresult *res = store_pg_q(st,
                               "INSERT INTO responses(id,owner,created_at,status,background,model,previous_id,request,body) "
                               "VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (id) DO NOTHING RETURNING seq",
                               &a);
    int rc = !res ? st->fail : PQntuples(res) == 1 ? NS_OK : NS_ERR_CONFLICT;
    if (!rc)
        r->seq = store_pg_i64(res, 0, 0);
    PQclear(res);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int pg_response_get(struct store *st, const char *id, struct store_response *out)
{
    struct store_pg_args a = {0};
    store_pg_arg_text(&a, id);
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st, "SELECT " PG_RESPONSE_COLS " FROM responses WHERE id=$1", &a);
    int rc = !r ? NS_ERR_IO : PQntuples(r) == 1 ? NS_OK : NS_ERR_NOT_FOUND;
    if (!rc)
        rc = pg_row_response(r, 0, out);
    PQclear(r);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int pg_response_update(struct store *st, const struct store_response *r, enum store_response_status expect)
{
    if (!r->body)
        return NS_ERR_INTERNAL; /* store.h: the caller's bug */
    struct store_pg_args a = {0};
    store_pg_arg_i64(&a, r->status);
    store_pg_arg_text(&a, r->body);
    store_pg_arg_text(&a, r->id);
    store_pg_arg_i64(&a, expect);
    pthread_mutex_lock(&st->mu);
    /* one statement: the compare-and-set, and whether the row is there (the update alone
     * cannot tell a moved-on status from a deleted row). A row another node deletes
     * meanwhile may read as a conflict; the caller's re-read then finds it gone. */
    PGresult *res = store_pg_q(st,
                               "WITH u AS (UPDATE responses SET status=$1, body=$2 WHERE id=$3 AND status=$4 RETURNING 1) "
                               "SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM responses WHERE id=$3)",
                               &a);
    int rc = !res ? st->fail : PQntuples(res) != 1 ? NS_ERR_IO : NS_OK;
    if (!rc && store_pg_i64(res, 0, 0) == 0)
        rc = store_pg_i64(res, 0, 1) ? NS_ERR_CONFLICT : NS_ERR_NOT_FOUND;
    PQclear(res);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* one DELETE with one argument: *changed rows deleted */
static int pg_response_remove(struct store *st, const char *sql, struct store_pg_args *a, int64_t *changed)
{
    *changed = 0;
    pthread_mutex_lock(&st->mu);
    PGresult *r = store_pg_q(st, sql, a);
    int rc = r ? NS_OK : st->fail;
    if (r)
        *changed = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static int pg_response_delete(struct store *st, const char *id)
{
    struct store_pg_args a = {0};
    int64_t n = 0;
    store_pg_arg_text(&a, id);
    int rc = pg_response_remove(st, "DELETE FROM responses WHERE id=$1", &a, &n);
    return rc ? rc : n ? NS_OK : NS_ERR_NOT_FOUND;
}

static int pg_response_expire(struct store *st, int64_t before, int64_t *n_deleted)
{
    struct store_pg_args a = {0};
    store_pg_arg_i64(&a, before);
    return pg_response_remove(st, "DELETE FROM responses WHERE created_at < $1", &a, n_deleted);
}

static int pg_response_ids_by_status(struct store *st, enum store_response_status status, char (**ids)[48], int *n)
{
    return pg_ids(st, "SELECT id FROM responses WHERE status=$1 ORDER BY seq", status, ids, n);
}

/* ---- the store as a whole ------------------------------------------------------------------ */

static int pg_probe(const char *uri, const char *data_dir, int *have, int *known, char *err, size_t errlen)
{
    (void)data_dir;
    char node[256];
    int lease = 30;
    *have = 0;
    *known = STORE_PG_VERSION;
    PGconn *c = NULL;
    int rc = pg_connect(uri, node, sizeof(node), &lease, &c, err, errlen);
    if (rc)
        return rc;
    int v = pg_version(c);
    if (v < 0) {
        snprintf(err, errlen, "cannot read the schema version: %s", PQerrorMessage(c));
        rc = NS_ERR_IO;
        v = 0;
    }
    *have = v;
    PQfinish(c);
    return rc;
}

const struct store_ops store_pg_ops = {
    .scheme = "postgres",
    .alias = "postgresql", /* libpq takes both spellings */
    .open = pg_open,
    .close = pg_close,
    .check = pg_check,
    .node_id = store_pg_node_id,
    .file = {
        .insert = pg_file_insert,
        .get = pg_file_get,
        .list = pg_file_list,
        .delete = pg_file_delete,
    },
    .batch = {
        .insert = pg_batch_insert,
        .get = pg_batch_get,
        .list = pg_batch_list,
        .update = pg_batch_update,
        .ids_by_status = pg_batch_ids_by_status,
        .lease = pg_batch_lease,
        .delete = store_pg_batch_delete,
    },
    .lines = {
        .insert = store_pg_lines_insert,
        .claim = store_pg_lines_claim,
        .finish = store_pg_lines_finish,
        .requeue = store_pg_lines_requeue,
        .fail_unfinished = store_pg_lines_fail_unfinished,
        .count_unfinished = store_pg_lines_count_unfinished,
        .route = store_pg_lines_route,
        .release = store_pg_lines_release,
        .routes = store_pg_lines_routes,
        .failed = store_pg_lines_failed,
        .export = store_pg_lines_export,
    },
    .webhook = {
        .insert = store_pg_webhook_insert,
        .due = store_pg_webhooks_due,
        .update = store_pg_webhook_update,
        .list = store_pg_webhooks_list,
    },
    .key = {
        .insert = store_pg_key_insert,
        .get = store_pg_key_get,
        .count = store_pg_key_count,
        .list = store_pg_key_list,
        .revoke = store_pg_key_revoke,
        .rotate = store_pg_key_rotate,
    },
    .response = {
        .insert = pg_response_insert,
        .get = pg_response_get,
        .update = pg_response_update,
        .delete = pg_response_delete,
        .ids_by_status = pg_response_ids_by_status,
        .expire = pg_response_expire,
    },
    .admin = {
        .probe = pg_probe,
        .backup = NULL,   /* pg_dump does it, consistently and while nodes run */
        .restore = NULL,
        .files_relocate = NULL,
    },
};

