/*
 * backup.c — `nightshift backup DIR` and `nightshift restore DIR`: a data dir (the store
 * and its files) copied out while a server may be running on it, and copied back.
 *
 * A backup directory holds nightshift.db (the store's snapshot, store_ops.admin.backup) and
 * files/<id> (the contents of the files that snapshot names). nightshift.db is renamed into
 * place last, so a directory with one is a complete backup and an interrupted backup is
 * recognisably not one.
 *
 * CONSISTENCY WHILE A SERVER RUNS
 * A file under DATA_DIR/files never changes once it has its name: uploads and results are
 * written to a temporary name (upload-XXXXXX, <id>.tmp) and renamed, and a file's row is
 * inserted after its rename. So copying a named file can never tear, and temporary names
 * are skipped. The order closes the remaining windows:
 *   1. copy every named file;
 *   2. snapshot the store (one read transaction: the files and batches of one instant);
 *   3. copy the files the snapshot names that step 1 did not see (created in between);
 *   4. drop copies the snapshot does not name (deleted in between, or never stored).
 * A file both created and deleted while the backup runs is the only one that can be
 * missing; it is reported, and its row stays (as after a crash between the two).
 *
 * Restore copies the files, then replaces the store in one transaction (store_ops.admin.restore),
 * then points the files' paths at the new data dir (store_ops.admin.files_relocate). It holds the
 * data dir's lock (datadir.h) throughout, so no server runs on a half-restored data dir.
 */
#include "cli.h"
#include "datadir.h"

#include "../store/store.h"
#include "../util/durable.h"
#include "../util/status.h"
#include "../util/strset.h"

#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BACKUP_DB_NAME "nightshift.db"

struct backup_count {
    int files;
    uint64_t bytes;
};

static void backup_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void backup_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* out = dir/name; NS_ERR_INVALID (err set) when it does not fit */
static int backup_join(char *out, size_t n, const char *dir, const char *name, char *err, size_t errlen)
{
    int len = snprintf(out, n, "%s/%s", dir, name);
    if (len < 0 || (size_t)len >= n) {
        backup_err(err, errlen, "path too long: '%s/%s'", dir, name);
        return NS_ERR_INVALID;
    }
    return NS_OK;
}

/* names under files/ that are not (yet) a file: uploads and results being written, and
 * our own partial copies */
static bool backup_is_temp(const char *name)
{
    size_t n = strlen(name);
    return name[0] == '.' || strncmp(name, "upload-", 7) == 0 || strstr(name, ".tmp-") ||
           (n > 4 && strcmp(name + n - 4, ".tmp") == 0);
}

/* copy src to dst_dir/name durably (util/durable.h), so it is whole or absent.
 * NS_ERR_NOT_FOUND when src does not exist (err not set). */
static int backup_copy_file(const char *src, const char *dst_dir, const char *name, struct backup_count *cnt,
                            char *err, size_t errlen)
{
    char dst[4096], buf[1 << 16];
    int in = -1, rc = NS_ERR_IO;
    struct durable d;
    durable_init(&d);
    if (backup_join(dst, sizeof(dst), dst_dir, name, err, errlen))
        return NS_ERR_INVALID;
    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        if (errno == ENOENT)
            return NS_ERR_NOT_FOUND;
        backup_err(err, errlen, "cannot read '%s': %s", src, strerror(errno));
        return NS_ERR_IO;
    }
    if (durable_open(&d, dst)) {
        backup_err(err, errlen, "cannot create a file beside '%s': %s", dst, strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t got = read(in, buf, sizeof(buf));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            backup_err(err, errlen, "cannot read '%s': %s", src, strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        if (durable_write(&d, buf, (size_t)got)) {
            backup_err(err, errlen, "cannot write '%s': %s", dst, strerror(errno));
            goto out;
        }
        cnt->bytes += (uint64_t)got;
    }
    if (durable_commit(&d)) {
        backup_err(err, errlen, "cannot write '%s': %s", dst, strerror(errno));
        goto out;
    }
    cnt->files++;
    rc = NS_OK;
out:
    close(in);
    durable_rollback(&d);
    return rc;
}

/* copy every named file of src_dir into dst_dir */
static int backup_copy_dir(const char *src_dir, const char *dst_dir, struct backup_count *cnt, char *err,
                           size_t errlen)
{
    char src[4096];
    DIR *d = opendir(src_dir);
    int rc = NS_OK;
    if (!d) {
        backup_err(err, errlen, "cannot read directory '%s': %s", src_dir, strerror(errno));
        return NS_ERR_IO;
    }
    for (struct dirent *e; rc == NS_OK && (e = readdir(d));) {
        if (backup_is_temp(e->d_name))
            continue;
        rc = backup_join(src, sizeof(src), src_dir, e->d_name, err, errlen);
        if (rc == NS_OK)
            rc = backup_copy_file(src, dst_dir, e->d_name, cnt, err, errlen);
        if (rc == NS_ERR_NOT_FOUND)
            rc = NS_OK; /* deleted since readdir: step 4 would drop it anyway */
    }
    closedir(d);
    return rc;
}

/* unlink every named file of dir that is not in keep; *n = how many */
static int backup_prune(const char *dir, const struct strset *keep, int *n, char *err, size_t errlen)
{
    char path[4096];
    DIR *d = opendir(dir);
    *n = 0;
    if (!d) {
        backup_err(err, errlen, "cannot read directory '%s': %s", dir, strerror(errno));
        return NS_ERR_IO;
    }
    for (struct dirent *e; (e = readdir(d));) {
        if (backup_is_temp(e->d_name) || strset_has(keep, e->d_name))
            continue;
        if (backup_join(path, sizeof(path), dir, e->d_name, err, errlen) == NS_OK && unlink(path) == 0)
            (*n)++;
    }
    closedir(d);
    return NS_OK;
}

/* the named files of dir, into set (their names are strdup'ed: free with backup_names_free) */
static int backup_names(const char *dir, struct strset *set, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    int rc = NS_OK;
    if (!d) {
        backup_err(err, errlen, "cannot read directory '%s': %s", dir, strerror(errno));
        return NS_ERR_IO;
    }
    for (struct dirent *e; rc == NS_OK && (e = readdir(d));) {
        if (backup_is_temp(e->d_name))
            continue;
        char *name = strdup(e->d_name);
        if (!name || strset_add(set, name) == NS_ERR_NOMEM) {
            free(name);
            rc = NS_ERR_NOMEM;
        }
    }
    closedir(d);
    if (rc)
        backup_err(err, errlen, "out of memory");
    return rc;
}

static void backup_names_free(struct strset *set)
{
    for (size_t i = 0; i < set->cap; i++)
        free((char *)set->keys[i]);
    strset_release(set);
}

/* is dir absent or an empty directory? (creates it when absent) */
static int backup_make_empty_dir(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0750) == 0)
        return NS_OK;
    if (errno != EEXIST) {
        backup_err(err, errlen, "cannot create '%s': %s", dir, strerror(errno));
        return NS_ERR_IO;
    }
    DIR *d = opendir(dir);
    if (!d) {
        backup_err(err, errlen, "cannot read '%s': %s", dir, strerror(errno));
        return NS_ERR_IO;
    }
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    if (n) {
        backup_err(err, errlen, "'%s' is not empty: back up into a new or empty directory", dir);
        return NS_ERR_CONFLICT;
    }
    return NS_OK;
}

/* ---- the command line ---------------------------------------------------------------- */

static void backup_usage(FILE *f);
static void restore_usage(FILE *f);

struct backup_cmd {
    bool restore;                   /* in: which command */
    const char *dir, *data_dir, *db;
    bool force;                     /* restore --force */
    const struct store_ops *ops;    /* the store of db, able to do this command */
};

/* the command line of backup or restore; < 0: go on, else the exit status */
static int backup_parse(int argc, char **argv, struct backup_cmd *c)
{
    static const struct option lo[] = {{"data-dir", required_argument, 0, 'd'},
                                       {"db", required_argument, 0, 1000},
                                       {"force", no_argument, 0, 1001},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    void (*usage)(FILE *) = c->restore ? restore_usage : backup_usage;
    int ch;
    /* restore has no default: restoring over ./nightshift-data by accident would hurt */
    c->data_dir = c->restore ? NULL : "nightshift-data";
    optind = 1;
    while ((ch = getopt_long(argc, argv, "d:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'd': c->data_dir = optarg; break;
        case 1000: c->db = optarg; break;
        case 1001:
            if (!c->restore) {
                usage(stderr);
                return cli_fail("unrecognized option '--force' (only restore has it)");
            }
            c->force = true;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc || !c->data_dir) {
        usage(stderr);
        if (optind + 1 < argc)
            return cli_fail("unexpected argument '%s'", argv[optind + 1]);
        if (optind == argc)
            return cli_fail("no backup directory given");
        return cli_fail("no data dir given (--data-dir D)");
    }
    c->dir = argv[optind];
    c->ops = store_find(c->db);
    if (!c->ops)
        return cli_fail("no store for '%s' (this build has: sqlite:PATH, postgres://...)", c->db);
    if (c->restore ? !c->ops->admin.restore || !c->ops->admin.probe || !c->ops->admin.files_relocate
                   : !c->ops->admin.backup)
        return cli_fail("the %s store cannot be %s by nightshift; use its own tools%s", c->ops->scheme,
                        c->restore ? "restored" : "backed up",
                        strcmp(c->ops->scheme, "postgres") == 0 ? " (pg_dump / pg_restore: the files are in the database too)" : "");
    return -1;
}

/* ---- backup -------------------------------------------------------------------------- */

static void backup_usage(FILE *f)
{
    fputs("usage: nightshift backup DIR [--data-dir D] [--db URI]\n"
          "\n"
          "Copies a data dir, the store and its files, into DIR (created; or empty). Safe while\n"
          "a server runs on it: the copy is the state of one instant (SQLite's online backup).\n"
          "Run it as the user the server runs as (e.g. sudo -u nightshift).\n"
          "\n"
          "  -d, --data-dir D   the data dir (default ./nightshift-data)\n"
          "      --db URI       its store (default: sqlite:D/nightshift.db)\n"
          "  -h, --help         this text\n"
          "\n"
          "Exit status: 0 backed up, 1 the backup failed (DIR then holds no nightshift.db),\n"
          "2 bad usage.\n",
          f);
}

int cli_backup(int argc, char **argv)
{
    struct backup_cmd c = {.restore = false};
    int parsed = backup_parse(argc, argv, &c);
    if (parsed >= 0)
        return parsed;
    const char *dir = c.dir, *data_dir = c.data_dir, *db = c.db;
    const struct store_ops *ops = c.ops;
    char err[1024], src_files[4096], dst_files[4096], part[4096], final[4096];
    struct stat sb;
    if (stat(data_dir, &sb))
        return cli_fail("no data dir '%s': %s", data_dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return cli_fail("data dir '%s' is not a directory", data_dir);
    int rc;
    if (backup_join(src_files, sizeof(src_files), data_dir, "files", err, sizeof(err)) ||
        backup_join(dst_files, sizeof(dst_files), dir, "files", err, sizeof(err)) ||
        backup_join(part, sizeof(part), dir, BACKUP_DB_NAME ".part", err, sizeof(err)) ||
        backup_join(final, sizeof(final), dir, BACKUP_DB_NAME, err, sizeof(err)) ||
        backup_make_empty_dir(dir, err, sizeof(err)))
        return cli_fail("%s", err);
    if (mkdir(dst_files, 0750))
        return cli_fail("cannot create '%s': %s", dst_files, strerror(errno));

    struct backup_count cnt = {0};
    struct strset keep;
    char(*ids)[48] = NULL;
    int n_ids = 0, missing = 0, dropped = 0;
    strset_init(&keep);
    /* 1. every named file; 2. the snapshot; 3. files it names that 1 missed; 4. the rest out */
    if (access(src_files, F_OK) == 0 && (rc = backup_copy_dir(src_files, dst_files, &cnt, err, sizeof(err))))
        goto out;
    if ((rc = ops->admin.backup(db, data_dir, part, &ids, &n_ids, err, sizeof(err))))
        goto out;
    for (int i = 0; i < n_ids; i++) {
        char src[4096], have[4096];
        if (strset_add(&keep, ids[i]) == NS_ERR_NOMEM) {
            rc = NS_ERR_NOMEM;
            goto out;
        }
        if ((rc = backup_join(have, sizeof(have), dst_files, ids[i], err, sizeof(err))) ||
            (rc = backup_join(src, sizeof(src), src_files, ids[i], err, sizeof(err))))
            goto out;
        if (access(have, F_OK) == 0)
            continue;
        rc = backup_copy_file(src, dst_files, ids[i], &cnt, err, sizeof(err));
        if (rc == NS_ERR_NOT_FOUND) {
            fprintf(stderr, "nightshift: warning: file %s was deleted while the backup ran; its content is not in it\n",
                    ids[i]);
            missing++;
            rc = NS_OK;
        } else if (rc) {
            goto out;
        }
    }
    rc = NS_OK;
    if ((rc = backup_prune(dst_files, &keep, &dropped, err, sizeof(err))))
        goto out;
    if (rename(part, final) || durable_sync_dir(final)) {
        backup_err(err, sizeof(err), "cannot rename '%s' to '%s': %s", part, final, strerror(errno));
        rc = NS_ERR_IO;
        goto out;
    }
    printf("backed up '%s' into '%s': the store and %d files (%.1f MB)%s\n", data_dir, dir, n_ids - missing,
           (double)cnt.bytes / 1e6, missing ? "; some files were deleted while it ran" : "");
out:
    strset_release(&keep);
    free(ids);
    if (rc) {
        unlink(part);
        if (rc == NS_ERR_NOMEM)
            backup_err(err, sizeof(err), "out of memory");
        cli_fail("backup failed: %s", err);
        return 1;
    }
    return 0;
}

/* ---- restore ------------------------------------------------------------------------- */

static void restore_usage(FILE *f)
{
    fputs("usage: nightshift restore DIR --data-dir D [--db URI] [--force]\n"
          "\n"
          "Restores a backup made by 'nightshift backup' into the data dir D (created when\n"
          "absent). Refused while a server uses D, and when D already holds a database\n"
          "unless --force (which replaces it and removes files the backup does not have).\n"
          "\n"
          "  -d, --data-dir D   the data dir to restore into (required)\n"
          "      --db URI       its store (default: sqlite:D/nightshift.db)\n"
          "      --force        replace the database D holds\n"
          "  -h, --help         this text\n"
          "\n"
          "Exit status: 0 restored, 1 the restore failed, 2 bad usage, not a backup, or refused.\n",
          f);
}

int cli_restore(int argc, char **argv)
{
    struct backup_cmd c = {.restore = true};
    int parsed = backup_parse(argc, argv, &c);
    if (parsed >= 0)
        return parsed;
    const char *dir = c.dir, *data_dir = c.data_dir, *db = c.db;
    const struct store_ops *ops = c.ops;
    bool force = c.force;
    char err[1024], src_db[4096], src_files[4096], dst_files[4096], real[PATH_MAX];
    if (backup_join(src_db, sizeof(src_db), dir, BACKUP_DB_NAME, err, sizeof(err)) ||
        backup_join(src_files, sizeof(src_files), dir, "files", err, sizeof(err)))
        return cli_fail("%s", err);
    if (access(src_db, R_OK))
        return cli_fail("'%s' is not a nightshift backup: no readable %s (an interrupted backup leaves none)", dir,
                        BACKUP_DB_NAME);
    int lock_fd = -1, have = 0, known = 0, pruned = 0, rc;
    if (datadir_create(data_dir, err, sizeof(err)))
        return cli_fail("%s", err);
    if ((rc = datadir_lock(data_dir, &lock_fd, err, sizeof(err))))
        return cli_fail("%s%s", err, rc == NS_ERR_CONFLICT ? ": stop that server before restoring" : "");
    struct backup_count cnt = {0};
    struct strset names;
    struct store *st = NULL;
    strset_init(&names);
    rc = 2;
    if (ops->admin.probe(db, data_dir, &have, &known, err, sizeof(err))) {
        cli_fail("%s: restore into another data dir, or move this database away", err);
        goto out;
    }
    if (have > 0 && !force) {
        cli_fail("data dir '%s' already holds a database (schema version %d): restore into an empty data dir, "
                 "or add --force to replace it",
                 data_dir, have);
        goto out;
    }
    rc = 1;
    if (!realpath(data_dir, real)) {
        cli_fail("cannot resolve '%s': %s", data_dir, strerror(errno));
        goto out;
    }
    if (backup_join(dst_files, sizeof(dst_files), real, "files", err, sizeof(err))) {
        cli_fail("%s", err);
        goto out;
    }
    if ((access(src_files, F_OK) == 0 && backup_copy_dir(src_files, dst_files, &cnt, err, sizeof(err))) ||
        ops->admin.restore(db, data_dir, src_db, err, sizeof(err))) {
        cli_fail("restore failed: %s", err);
        goto out;
    }
    /* the store's file paths named the old data dir; opening it also migrates an older backup */
    if (ops->open(db, data_dir, &st, err, sizeof(err)) || store_files_relocate(st, dst_files)) {
        cli_fail("restore failed: %s", st ? "cannot update the files' paths in the store" : err);
        goto out;
    }
    /* --force: files of the replaced store are nobody's now */
    if (force && ((access(src_files, F_OK) == 0 && backup_names(src_files, &names, err, sizeof(err))) ||
                  backup_prune(dst_files, &names, &pruned, err, sizeof(err))))
        fprintf(stderr, "nightshift: warning: files of the replaced store left in place: %s\n", err);
    printf("restored '%s' into '%s': the store and %d files (%.1f MB)", dir, data_dir, cnt.files,
           (double)cnt.bytes / 1e6);
    if (pruned)
        printf("; removed %d files the backup does not have", pruned);
    printf("\n");
    rc = 0;
out:
    if (st)
        store_close(st);
    backup_names_free(&names);
    datadir_unlock(lock_fd);
    return rc;
}
