/*
 * durable.c — see durable.h.
 */
#include "durable.h"

#include "status.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- fault injection ------------------------------------------------------------------ */

enum { DF_OPEN, DF_WRITE, DF_FSYNC, DF_RENAME, DF_DIRSYNC, DF_N_ };
static const char *const df_names[DF_N_] = {"open", "write", "fsync", "rename", "dirsync"};
static long df_fail_at[DF_N_];       /* 0: never */
static atomic_long df_calls[DF_N_];
static pthread_once_t df_once = PTHREAD_ONCE_INIT;

static void df_load(void)
{
    const char *spec = getenv("NIGHTSHIFT_FAULT_DURABLE");
    while (spec && *spec) {
        for (int i = 0; i < DF_N_; i++) {
            size_t l = strlen(df_names[i]);
            if (strncmp(spec, df_names[i], l) == 0 && spec[l] == ':')
                df_fail_at[i] = strtol(spec + l + 1, NULL, 10);
        }
        spec = strchr(spec, ',');
        if (spec)
            spec++;
    }
}

/* true when this call of op is the one to fail (errno set) */
static bool df_fail(int op)
{
    long n = atomic_fetch_add(&df_calls[op], 1) + 1;
    if (df_fail_at[op] && n == df_fail_at[op]) {
        errno = op == DF_WRITE ? ENOSPC : EIO;
        return true;
    }
    return false;
}

/* ---- files ----------------------------------------------------------------------------- */

void durable_init(struct durable *d)
{
    d->fd = -1;
    d->f = NULL;
    d->path[0] = '\0';
    d->tmp[0] = '\0';
}

int durable_open(struct durable *d, const char *path)
{
    pthread_once(&df_once, df_load);
    durable_init(d);
    size_t n = strlen(path);
    if (n >= sizeof(d->path) || n + 12 > sizeof(d->tmp)) {
        errno = ENAMETOOLONG;
        return NS_ERR_IO;
    }
    memcpy(d->path, path, n + 1);
    snprintf(d->tmp, sizeof(d->tmp), "%s.tmp-XXXXXX", path);
    if (df_fail(DF_OPEN)) {
        d->tmp[0] = '\0';
        return NS_ERR_IO;
    }
    d->fd = mkostemp(d->tmp, O_CLOEXEC); /* 0600, O_EXCL */
    if (d->fd < 0) {
        d->tmp[0] = '\0';
        return NS_ERR_IO;
    }
    return NS_OK;
}

int durable_open_mode(struct durable *d, const char *path, unsigned mode)
{
    if (durable_open(d, path))
        return NS_ERR_IO;
    if (mode == DURABLE_MODE_UMASK) {
        mode_t um = umask(0); /* read it: umask has no getter */
        umask(um);
        mode = 0666 & ~(unsigned)um;
    }
    if (fchmod(d->fd, (mode_t)mode)) {
        durable_rollback(d);
        return NS_ERR_IO;
    }
    return NS_OK;
}

int durable_write(struct durable *d, const void *p, size_t n)
{
    if (n == 0)
        return NS_OK;
    if (df_fail(DF_WRITE))
        return NS_ERR_IO;
    if (d->f)
        return fwrite(p, 1, n, d->f) == n ? NS_OK : NS_ERR_IO;
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(d->fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return NS_ERR_IO;
        c += w;
        n -= (size_t)w;
    }
    return NS_OK;
}

FILE *durable_stream(struct durable *d)
{
    if (!d->f && d->fd >= 0)
        d->f = fdopen(d->fd, "w");
    return d->f;
}

int durable_sync_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    if (df_fail(DF_DIRSYNC))
        return NS_ERR_IO;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return NS_ERR_IO;
    int rc = fsync(fd) == 0 || errno == EINVAL ? NS_OK : NS_ERR_IO; /* EINVAL: a filesystem without dir sync */
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int durable_commit(struct durable *d)
{
    int rc = NS_OK, e = 0;
    if (d->fd < 0)
        return errno = EBADF, NS_ERR_IO;
    if (d->f && fflush(d->f))
        rc = NS_ERR_IO, e = errno;
    if (rc == NS_OK && (df_fail(DF_FSYNC) || fsync(d->fd)))
        rc = NS_ERR_IO, e = errno;
    int closed = d->f ? fclose(d->f) : close(d->fd);
    if (closed && rc == NS_OK)
        rc = NS_ERR_IO, e = errno;
    d->f = NULL;
    d->fd = -1;
    if (rc == NS_OK && (df_fail(DF_RENAME) || rename(d->tmp, d->path)))
        rc = NS_ERR_IO, e = errno;
    if (rc) {
        unlink(d->tmp);
        d->tmp[0] = '\0';
        errno = e;
        return rc;
    }
    d->tmp[0] = '\0';
    return durable_sync_dir(d->path);
}

void durable_rollback(struct durable *d)
{
    int e = errno;
    if (d->f)
        fclose(d->f);
    else if (d->fd >= 0)
        close(d->fd);
    d->f = NULL;
    d->fd = -1;
    if (d->tmp[0])
        unlink(d->tmp);
    d->tmp[0] = '\0';
    errno = e;
}

int durable_write_file(const char *path, const void *data, size_t n)
{
    struct durable d;
    if (durable_open(&d, path))
        return NS_ERR_IO;
    if (durable_write(&d, data, n)) {
        durable_rollback(&d);
        return NS_ERR_IO;
    }
    return durable_commit(&d);
}
