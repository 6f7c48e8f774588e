/*
 * keys.c — `nightshift keys create|list|revoke|rotate`: API keys for `nightshift serve`.
 *
 * A key is 24 random characters (about 143 bits) after "nsk-", printed once on stdout; the store
 * keeps only its SHA-256 (store.h, struct store_key), so a copy of the database reveals no
 * key. A key acts for its project (default: its name); an admin key acts for all projects
 * and reaches /metrics. Once any key exists the server refuses requests without one, and
 * stays closed for good: a revoked key is kept as a row, and the store keeps a mark that
 * keys existed (issue 27.9). Runs against the same data dir / --db as the server (SQLite
 * allows both at once); a running server sees a revocation or rotation within its key
 * cache's lifetime (http/keycache.h: 2 s).
 *
 * Every sub-command says which store it used, and warns when that is not the one the
 * installed service uses (the data-dir / db of NIGHTSHIFT_CONFIG, default
 * /etc/nightshift/nightshift.ini): a key created in ./nightshift-data is no key for the
 * service.
 *
 * Limits (--rpm, --tokens-per-day, --batch-queue-tokens; http/quota.h) are stored with the
 * key; one not given is the server's default (--quota-* of serve), 0 is unlimited. A running
 * server reads them when it next looks the key up (every request), so no restart is needed.
 */
#include "cli.h"

#include "config.h"

#include "../proto/oai.h"
#include "../store/store.h"
#include "../util/num.h"
#include "../util/sha256.h"
#include "../util/status.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void keys_usage(FILE *f)
{
    fputs("usage: nightshift keys create --name NAME [--admin] [--project PROJECT] [--rpm N] [--tokens-per-day N]\n"
          "                              [--batch-queue-tokens N] [--data-dir DIR] [--db URI]\n"
          "       nightshift keys list   [--data-dir DIR] [--db URI]\n"
          "       nightshift keys revoke --name NAME [--data-dir DIR] [--db URI]\n"
          "       nightshift keys rotate --name NAME [--data-dir DIR] [--db URI]\n"
          "  create: a new API key for `nightshift serve`, printed once (only its SHA-256 is stored).\n"
          "  list:   every key (name, project, admin, limits, created, revoked); never a secret.\n"
          "  revoke: the key stops working (a running server: within 2 s); it stays listed.\n"
          "  rotate: the key gets a new secret, printed once; the old one stops working.\n"
          "      --name NAME        unique name of the key (letters, digits, '-', '_', '.'; at most 63)\n"
          "      --admin            the key sees every project's files and batches, and /metrics\n"
          "      --project PROJECT  the project whose files and batches the key owns (default: NAME)\n"
          "      --rpm N            real-time requests per minute (0: unlimited; default: serve's --quota-rpm)\n"
          "      --tokens-per-day N real-time prompt + completion tokens per UTC day (0: unlimited;\n"
          "                         default: serve's --quota-tokens-per-day)\n"
          "      --batch-queue-tokens N  estimated tokens of unfinished batches (0: unlimited; default:\n"
          "                         serve's --quota-batch-queue-tokens)\n"
          "      --data-dir DIR     the server's data dir (default nightshift-data)\n"
          "      --db URI           store: sqlite:PATH (default DATA_DIR/nightshift.db)\n",
          f);
}

/* names end up in logs and error messages: keep them plain */
static bool keys_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return false;
    }
    return true;
}

/* "which store": the SQLite file by its absolute path, a URI as given without its password */
static void keys_store_name(const char *db, const char *data_dir, char *out, size_t n)
{
    if (!db || strncmp(db, "sqlite:", 7) == 0) {
        char path[PATH_MAX + 32], real[PATH_MAX];
        if (db)
            snprintf(path, sizeof(path), "%s", db + 7);
        else
            snprintf(path, sizeof(path), "%s/nightshift.db", data_dir);
        snprintf(out, n, "%s", realpath(path, real) ? real : path);
        return;
    }
    /* postgres://user:secret@host/db: the secret is nobody's business in a terminal */
    const char *at = strchr(db, '@'), *scheme = strstr(db, "://");
    const char *colon = scheme && at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
    if (colon)
        snprintf(out, n, "%.*s:***%s", (int)(colon - db), db, at);
    else
        snprintf(out, n, "%s", db);
}

/* Warn when the store used is not the installed service's ([server] data-dir / db of the
 * installed config, NIGHTSHIFT_CONFIG or /etc/nightshift/nightshift.ini, when it exists). */
static void keys_check_installed(const char *used)
{
    const char *path = getenv("NIGHTSHIFT_CONFIG");
    if (!path || !*path)
        path = "/etc/nightshift/nightshift.ini";
    if (access(path, R_OK) != 0)
        return;
    struct config *cfg = NULL;
    char err[600];
    if (config_load(path, NULL, &cfg, err, sizeof(err)))
        return;
    const char *sdir = NULL, *sdb = NULL;
    for (int i = 0; i < cfg->n_server; i++) {
        if (strcmp(cfg->server[i].key, "data-dir") == 0)
            sdir = cfg->server[i].value;
        else if (strcmp(cfg->server[i].key, "db") == 0)
            sdb = cfg->server[i].value;
    }
    char theirs[PATH_MAX + 64];
    keys_store_name(sdb, sdir ? sdir : "nightshift-data", theirs, sizeof(theirs));
    if (strcmp(theirs, used) != 0)
        fprintf(stderr,
                "nightshift: warning: the installed service (%s) uses the store %s, not this one: pass %s%s to manage "
                "its keys\n",
                path, theirs, sdb ? "--db " : "--data-dir ", sdb ? sdb : sdir ? sdir : "nightshift-data");
    config_free(cfg);
}

static int keys_list(const struct store_ops *ops, struct store *st)
{
    struct store_key *k = NULL;
    int n = 0;
    int rc = store_key_list(st, &k, &n);
    if (rc)
        return cli_fail("keys list: cannot read the keys (%s)", status_name(rc));
    printf("%-24s %-24s %-5s %-20s %-20s %s\n", "NAME", "PROJECT", "ADMIN", "CREATED", "REVOKED", "LIMITS (rpm/tokens-day/batch-queue)");
    for (int i = 0; i < n; i++) {
        char created[32] = "-", revoked[32] = "-", lim[96];
        struct tm tm;
        time_t t = (time_t)k[i].created_at;
        if (k[i].created_at && gmtime_r(&t, &tm))
            strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
        t = (time_t)k[i].revoked_at;
        if (k[i].revoked_at && gmtime_r(&t, &tm))
            strftime(revoked, sizeof(revoked), "%Y-%m-%dT%H:%M:%SZ", &tm);
        char v[3][24];
        const int64_t l[3] = {k[i].rpm, k[i].tokens_per_day, k[i].batch_queue_tokens};
        for (int j = 0; j < 3; j++)
            snprintf(v[j], sizeof(v[j]), l[j] < 0 ? "default" : "%lld", (long long)l[j]);
        snprintf(lim, sizeof(lim), "%s/%s/%s", v[0], v[1], v[2]);
        printf("%-24s %-24s %-5s %-20s %-20s %s\n", k[i].name, k[i].project, k[i].admin ? "yes" : "no", created, revoked,
               lim);
    }
    free(k);
    return 0;
}

int cli_keys(int argc, char **argv)
{
    static const char *const subs[] = {"create", "list", "revoke", "rotate"};
    int sub = -1;
    for (int i = 0; argc >= 2 && i < 4; i++)
        if (strcmp(argv[1], subs[i]) == 0)
            sub = i;
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        keys_usage(stdout);
        return 0;
    }
    if (sub < 0) {
        keys_usage(stderr);
        return cli_fail(argc < 2 ? "keys: missing sub-command (create, list, revoke, rotate)"
                                 : "keys: unknown sub-command '%s' (create, list, revoke, rotate)",
                        argv[1]);
    }
    const char *what = subs[sub];
    enum { O_ADMIN = 256, O_PROJECT, O_DB, O_RPM, O_TPD, O_BQT };
    static const struct option opts[] = {
        {"name", required_argument, 0, 'n'},    {"admin", no_argument, 0, O_ADMIN},
        {"project", required_argument, 0, O_PROJECT}, {"data-dir", required_argument, 0, 'd'},
        {"db", required_argument, 0, O_DB},     {"help", no_argument, 0, 'h'},
        {"rpm", required_argument, 0, O_RPM},   {"tokens-per-day", required_argument, 0, O_TPD},
        {"batch-queue-tokens", required_argument, 0, O_BQT},
        {0, 0, 0, 0},
    };
    const char *name = NULL, *project = NULL, *data_dir = "nightshift-data", *db = NULL;
    bool admin = false;
    long long lim[3] = {-1, -1, -1}; /* rpm, tokens per day, batch queue tokens; -1: the server's default */
    int c;
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "n:d:h", opts, NULL)) != -1) {
        switch (c) {
        case 'n': name = optarg; break;
        case O_ADMIN: admin = true; break;
        case O_PROJECT: project = optarg; break;
        case 'd': data_dir = optarg; break;
        case O_DB: db = optarg; break;
        case O_RPM:
        case O_TPD:
        case O_BQT: {
            static const char *const names[] = {"--rpm", "--tokens-per-day", "--batch-queue-tokens"};
            int i = c - O_RPM;
            if (num_parse_long(optarg, 0, 1000000000000LL, &lim[i]))
                return cli_fail("keys %s: %s must be an integer from 0 (unlimited) to 10^12, not '%s'", what, names[i],
                                optarg);
            break;
        }
        case 'h': keys_usage(stdout); return 0;
        default: keys_usage(stderr); return 2;
        }
    }
    if (optind + 1 < argc)
        return cli_fail("keys %s: unexpected argument '%s'", what, argv[optind + 1]);
    if (sub != 0 && (admin || project || lim[0] >= 0 || lim[1] >= 0 || lim[2] >= 0))
        return cli_fail("keys %s: --admin, --project and the limits belong to keys create", what);
    if (sub != 1 && !name)
        return cli_fail("keys %s: --name is required", what);
    if (sub == 1 && name)
        return cli_fail("keys list: --name does not apply (it lists every key)");
    if (name && !keys_name_ok(name))
        return cli_fail("keys %s: invalid name '%s' (1-63 of letters, digits, '-', '_', '.')", what, name);
    if (project && !keys_name_ok(project))
        return cli_fail("keys create: invalid project '%s' (1-63 of letters, digits, '-', '_', '.')", project);
    const struct store_ops *ops = store_find(db);
    if (!ops)
        return cli_fail("no store for '%s' (this build has: sqlite:PATH, postgres://...)", db);
    if (!db && sub == 0 && mkdir(data_dir, 0700) && errno != EEXIST)
        return cli_fail("cannot create data dir '%s': %s", data_dir, strerror(errno));
    if (!db && sub != 0 && access(data_dir, F_OK) != 0)
        return cli_fail("keys %s: no data dir '%s' (give the server's with --data-dir, or --db)", what, data_dir);
    char err[512];
    struct store *st = NULL;
    if (ops->open(db, data_dir, &st, err, sizeof(err)))
        return cli_fail("%s", err);
    char used[PATH_MAX + 64]; /* after the open: the database file exists, its real path too */
    keys_store_name(db, data_dir, used, sizeof(used));
    keys_check_installed(used);
    int rc;
    if (sub == 1) {
        rc = keys_list(ops, st);
        store_close(st);
        fprintf(stderr, "nightshift: the keys of %s\n", used);
        return rc;
    }
    char key[64], hash[65];
    if (sub == 2) {
        rc = store_key_revoke(st, name, (int64_t)time(NULL));
        store_close(st);
        if (rc == NS_ERR_NOT_FOUND)
            return cli_fail("keys revoke: no active key named '%s' in %s", name, used);
        if (rc)
            return cli_fail("keys revoke: cannot revoke the key (%s)", status_name(rc));
        fprintf(stderr, "nightshift: revoked key '%s' in %s; a running server refuses it within 2 s\n", name, used);
        return 0;
    }
    oai_make_id(key, sizeof(key), "nsk-");
    sha256_hex(key, strlen(key), hash);
    if (sub == 3) {
        rc = store_key_rotate(st, name, hash);
        store_close(st);
        if (rc == NS_ERR_NOT_FOUND)
            return cli_fail("keys rotate: no active key named '%s' in %s", name, used);
        if (rc)
            return cli_fail("keys rotate: cannot store the new secret (%s)", status_name(rc));
        printf("%s\n", key);
        fprintf(stderr,
                "nightshift: key '%s' in %s has a new secret, shown only now; the old one stops working within 2 s\n",
                name, used);
        return 0;
    }
    struct store_key k;
    memset(&k, 0, sizeof(k));
    snprintf(k.name, sizeof(k.name), "%s", name);
    snprintf(k.project, sizeof(k.project), "%s", project ? project : name);
    k.admin = admin;
    k.created_at = time(NULL);
    k.rpm = lim[0];
    k.tokens_per_day = lim[1];
    k.batch_queue_tokens = lim[2];
    rc = store_key_insert(st, &k, hash);
    store_close(st);
    if (rc == NS_ERR_CONFLICT)
        return cli_fail("keys create: a key named '%s' exists already (revoked keys keep their names)", name);
    if (rc)
        return cli_fail("keys create: cannot store the key (%s)", status_name(rc));
    printf("%s\n", key);
    char limits[160] = "";
    static const char *const lim_names[] = {"requests per minute", "tokens per day", "batch queue tokens"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(limits);
        if (lim[i] >= 0)
            snprintf(limits + n, sizeof(limits) - n, "%s%lld %s", n ? ", " : "; limits: ", lim[i], lim_names[i]);
    }
    fprintf(stderr, "nightshift: created %skey '%s' for project '%s'%s%s in %s; it is shown only now\n",
            admin ? "admin " : "", k.name, k.project, limits, limits[0] ? " (0 = unlimited)" : "", used);
    return 0;
}
