/*
 * keys.c — `nightshift keys create --name NAME [--admin] [--project P]`: API keys for
 * `nightshift serve`.
 *
 * A key is 24 random characters (about 143 bits) after "nsk-", printed once on stdout; the store
 * keeps only its SHA-256 (store.h, struct store_key), so a copy of the database reveals no
 * key. A key acts for its project (default: its name); an admin key acts for all projects
 * and reaches /metrics. Once any key exists the server refuses requests without one.
 * Runs against the same data dir / --db as the server (SQLite allows both at once).
 *
 * Limits (--rpm, --tokens-per-day, --batch-queue-tokens; api/quota.h) are stored with the
 * key; one not given is the server's default (--quota-* of serve), 0 is unlimited. A running
 * server reads them when it next looks the key up (every request), so no restart is needed.
 */
#include "cli.h"

#include "../api/oai.h"
#include "../store/store.h"
#include "../util/num.h"
#include "../util/sha256.h"
#include "../util/status.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void keys_usage(FILE *f)
{
    fputs("usage: nightshift keys create --name NAME [--admin] [--project PROJECT] [--rpm N] [--tokens-per-day N]\n"
          "                              [--batch-queue-tokens N] [--data-dir DIR] [--db URI]\n"
          "  Creates an API key for `nightshift serve` and prints it once (only its SHA-256 is stored).\n"
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

int cli_keys(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "create") != 0) {
        keys_usage(stderr);
        return cli_fail(argc < 2 ? "keys: missing sub-command (create)" : "keys: unknown sub-command '%s'", argv[1]);
    }
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
                return cli_fail("keys create: %s must be an integer from 0 (unlimited) to 10^12, not '%s'", names[i],
                                optarg);
            break;
        }
        case 'h': keys_usage(stdout); return 0;
        default: keys_usage(stderr); return 2;
        }
    }
    if (!name)
        return cli_fail("keys create: --name is required");
    if (!keys_name_ok(name))
        return cli_fail("keys create: invalid name '%s' (1-63 of letters, digits, '-', '_', '.')", name);
    if (project && !keys_name_ok(project))
        return cli_fail("keys create: invalid project '%s' (1-63 of letters, digits, '-', '_', '.')", project);
    const struct store_ops *ops = store_find(db);
    if (!ops)
        return cli_fail("no store for '%s' (this build has: sqlite:PATH, postgres://...)", db);
    if (!db && mkdir(data_dir, 0750) && errno != EEXIST)
        return cli_fail("cannot create data dir '%s': %s", data_dir, strerror(errno));
    char err[512];
    struct store *st = NULL;
    if (ops->open(db, data_dir, &st, err, sizeof(err)))
        return cli_fail("%s", err);
    struct store_key k;
    memset(&k, 0, sizeof(k));
    snprintf(k.name, sizeof(k.name), "%s", name);
    snprintf(k.project, sizeof(k.project), "%s", project ? project : name);
    k.admin = admin;
    k.created_at = time(NULL);
    k.rpm = lim[0];
    k.tokens_per_day = lim[1];
    k.batch_queue_tokens = lim[2];
    char key[64], hash[65];
    oai_make_id(key, sizeof(key), "nsk-");
    sha256_hex(key, strlen(key), hash);
    int rc = ops->key_insert(st, &k, hash);
    ops->close(st);
    if (rc == NS_ERR_CONFLICT)
        return cli_fail("keys create: a key named '%s' exists already", name);
    if (rc)
        return cli_fail("keys create: cannot store the key (%s)", status_name(rc));
    printf("%s\n", key);
    char limits[160] = "";
    static const char *const what[] = {"requests per minute", "tokens per day", "batch queue tokens"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(limits);
        if (lim[i] >= 0)
            snprintf(limits + n, sizeof(limits) - n, "%s%lld %s", n ? ", " : "; limits: ", lim[i], what[i]);
    }
    fprintf(stderr, "nightshift: created %skey '%s' for project '%s'%s%s; it is shown only now\n",
            admin ? "admin " : "", k.name, k.project, limits, limits[0] ? " (0 = unlimited)" : "");
    return 0;
}
