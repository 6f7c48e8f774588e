/*
 * runstate.c — see runstate.h.
 */
#include "runstate.h"
#include "../util/clock.h"

#include "../util/status.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct runstate {
    sqlite3 *db;
    sqlite3_stmt *put;
    struct runstate_params p;
    bool in_tx;
    int pending;
    double tx_started;
};


struct runstate_params runstate_default_params(void)
{
    struct runstate_params p = {.commit_every = 256, .commit_ms = 500};
    return p;
}

static const char rs_schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS results("
    "  custom_id TEXT PRIMARY KEY,"
    "  line INTEGER NOT NULL,"
    "  ok INTEGER NOT NULL,"
    "  prompt_tokens INTEGER NOT NULL DEFAULT 0,"
    "  completion_tokens INTEGER NOT NULL DEFAULT 0,"
    "  cached_tokens INTEGER NOT NULL DEFAULT 0,"
    "  json TEXT NOT NULL);";

static int rs_meta_get(sqlite3 *db, const char *key, char *out, size_t n)
{
    sqlite3_stmt *st = NULL;
    int found = 0;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key=?", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(st, 0);
        snprintf(out, n, "%s", v ? (const char *)v : "");
        found = 1;
    }
    sqlite3_finalize(st);
    return found;
}

static int rs_meta_set(sqlite3 *db, const char *key, const char *value)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta(key,value) VALUES(?,?)", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    sqlite3_finalize(st);
    return rc;
}

int runstate_open(const char *path, struct runstate_params p, uint64_t input_size, uint64_t input_hash,
                  struct runstate **out, char *err, size_t errlen)
{
    struct runstate *rs = NULL;
    char ident[64], have[64];
    int rc = NS_OK;
    *out = NULL;
    rs = calloc(1, sizeof(*rs));
    if (!rs)
        return NS_ERR_NOMEM;
    rs->p = p;
    if (rs->p.commit_every <= 0)
        rs->p.commit_every = 256;
    if (rs->p.commit_ms <= 0)
        rs->p.commit_ms = 500;
    if (sqlite3_open_v2(path, &rs->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open state database '%s': %s", path,
                 rs->db ? sqlite3_errmsg(rs->db) : "out of memory");
        rc = NS_ERR_IO;
        goto out;
    }
    sqlite3_busy_timeout(rs->db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(rs->db, rs_schema, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "cannot initialise state database '%s': %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        rc = NS_ERR_IO;
        goto out;
    }
    snprintf(ident, sizeof(ident), "%llu:%016llx", (unsigned long long)input_size, (unsigned long long)input_hash);
    int found = rs_meta_get(rs->db, "input", have, sizeof(have));
    if (found < 0) {
        snprintf(err, errlen, "cannot read state database '%s': %s", path, sqlite3_errmsg(rs->db));
        rc = NS_ERR_IO;
        goto out;
    }
    if (found && strcmp(have, ident) != 0) {
        snprintf(err, errlen,
                 "state database '%s' belongs to a different input file (the input changed since that run); "
                 "delete it to start over, or pass another --state",
                 path);
        rc = NS_ERR_CONFLICT;
        goto out;
    }
    if (!found && rs_meta_set(rs->db, "input", ident) != SQLITE_OK) {
        snprintf(err, errlen, "cannot write state database '%s': %s", path, sqlite3_errmsg(rs->db));
        rc = NS_ERR_IO;
        goto out;
    }
    if (sqlite3_prepare_v2(rs->db,
                           "INSERT OR IGNORE INTO results(custom_id,line,ok,prompt_tokens,completion_tokens,"
                           "cached_tokens,json) VALUES(?,?,?,?,?,?,?)",
                           -1, &rs->put, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot prepare state database '%s': %s", path, sqlite3_errmsg(rs->db));
        rc = NS_ERR_IO;
        goto out;
    }
out:
    if (rc != NS_OK) {
        runstate_close(rs);
        return rc;
    }
    *out = rs;
    return NS_OK;
}

int runstate_flush(struct runstate *rs)
{
    if (!rs->in_tx)
        return NS_OK;
    rs->in_tx = false;
    rs->pending = 0;
    return sqlite3_exec(rs->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? NS_OK : NS_ERR_IO;
}

void runstate_close(struct runstate *rs)
{
    if (!rs)
        return;
    if (rs->db)
        runstate_flush(rs);
    sqlite3_finalize(rs->put);
    sqlite3_close(rs->db);
    free(rs);
}

int runstate_each_done(struct runstate *rs, void (*fn)(void *ud, const char *custom_id), void *ud)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(rs->db, "SELECT custom_id FROM results", -1, &st, NULL) != SQLITE_OK)
        return NS_ERR_IO;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW)
        fn(ud, (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? NS_OK : NS_ERR_IO;
}

int runstate_put(struct runstate *rs, const char *custom_id, uint32_t line, bool ok, const char *json,
                 int prompt_tokens, int completion_tokens, int cached_tokens)
{
    if (!rs->in_tx) {
        if (sqlite3_exec(rs->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
            return NS_ERR_IO;
        rs->in_tx = true;
        rs->tx_started = (clock_now() * 1e3);
    }
    sqlite3_stmt *st = rs->put;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, custom_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, line);
    sqlite3_bind_int(st, 3, ok ? 1 : 0);
    sqlite3_bind_int(st, 4, prompt_tokens);
    sqlite3_bind_int(st, 5, completion_tokens);
    sqlite3_bind_int(st, 6, cached_tokens);
    sqlite3_bind_text(st, 7, json, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    sqlite3_reset(st);
    if (r != SQLITE_DONE)
        return NS_ERR_IO;
    if (++rs->pending >= rs->p.commit_every || (clock_now() * 1e3) - rs->tx_started >= rs->p.commit_ms)
        return runstate_flush(rs);
    return NS_OK;
}

static int rs_sum(struct runstate *rs, struct runstate_totals *tot)
{
    sqlite3_stmt *st = NULL;
    memset(tot, 0, sizeof(*tot));
    if (sqlite3_prepare_v2(rs->db,
                           "SELECT ok, count(*), sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens) "
                           "FROM results GROUP BY ok",
                           -1, &st, NULL) != SQLITE_OK)
        return NS_ERR_IO;
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint64_t n = (uint64_t)sqlite3_column_int64(st, 1);
        if (sqlite3_column_int(st, 0))
            tot->ok = n;
        else
            tot->failed = n;
        tot->prompt_tokens += (uint64_t)sqlite3_column_int64(st, 2);
        tot->completion_tokens += (uint64_t)sqlite3_column_int64(st, 3);
        tot->cached_tokens += (uint64_t)sqlite3_column_int64(st, 4);
    }
    sqlite3_finalize(st);
    return NS_OK;
}

int runstate_totals(struct runstate *rs, struct runstate_totals *tot)
{
    return rs_sum(rs, tot);
}

int runstate_export(struct runstate *rs, FILE *ok_out, FILE *err_out, struct runstate_totals *tot)
{
    sqlite3_stmt *st = NULL;
    int rc = runstate_flush(rs);
    if (rc)
        return rc;
    if (sqlite3_prepare_v2(rs->db, "SELECT ok, json FROM results ORDER BY line", -1, &st, NULL) != SQLITE_OK)
        return NS_ERR_IO;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        FILE *f = sqlite3_column_int(st, 0) ? ok_out : err_out;
        if (!f)
            continue;
        const void *j = sqlite3_column_text(st, 1);
        size_t n = (size_t)sqlite3_column_bytes(st, 1);
        if (fwrite(j, 1, n, f) != n || fputc('\n', f) == EOF) {
            sqlite3_finalize(st);
            return NS_ERR_IO;
        }
    }
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        return NS_ERR_IO;
    return tot ? rs_sum(rs, tot) : NS_OK;
}
