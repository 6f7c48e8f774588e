/*
 * durable.h — files that are complete or absent, and that survive a power loss once
 * committed (the shape of git's lockfile API, with SQLite's directory sync).
 *
 * DESIGN
 * A file is written under a temporary name beside its final one (PATH.tmp-XXXXXX, created
 * 0600 with O_EXCL by mkstemp), then committed: fsync the data, close, rename onto PATH,
 * fsync the directory. Without the last step the rename itself may not survive a power
 * loss, and a store row recorded after it would name a file that is gone. Until the commit
 * nothing is visible under PATH; a crash leaves only a *.tmp-* file, which the server sweeps
 * at start (cli/serve.c). The one rule for callers that record a file in the store: commit
 * first, record second, and remove the file if the record fails, so no row ever points at
 * a missing file.
 *
 * Fault injection, for the tests that prove that rule: NIGHTSHIFT_FAULT_DURABLE="OP:N[,OP:N]"
 * (OP one of open, write, fsync, rename, dirsync) makes the Nth call of OP in this process
 * fail with EIO (ENOSPC for write), once. Read at the first durable_open().
 *
 * Lifecycle: durable_init() (no allocation) → durable_open() → durable_write()/durable_stream()
 * → durable_commit() or durable_rollback(). After either, the struct may be opened again.
 * Errors: NS_OK, or NS_ERR_IO with errno set to the cause.
 *
 * THREADS: a struct durable belongs to one thread; different ones may be used at once.
 */
#ifndef NS_UTIL_DURABLE_H
#define NS_UTIL_DURABLE_H

#include <stddef.h>
#include <stdio.h>

struct durable {
    int fd;               /* the temporary file; -1 when none is open */
    FILE *f;              /* durable_stream()'s view of fd, or NULL */
    char path[4096];      /* the final name */
    char tmp[4200];       /* the temporary name, "" when none exists */
};

void durable_init(struct durable *d);
/* create the temporary file for path (mode 0600); NS_ERR_IO when it cannot be created or
 * the name is too long */
int durable_open(struct durable *d, const char *path);
/* the same with the final file's mode: DURABLE_MODE_UMASK for what open(2) with 0666 gives
 * under the process's umask (a user's own output file, as `cp` would make it) */
#define DURABLE_MODE_UMASK ((unsigned)-1)
int durable_open_mode(struct durable *d, const char *path, unsigned mode);
/* append n bytes (all of them, or NS_ERR_IO) */
int durable_write(struct durable *d, const void *p, size_t n);
/* a stdio stream on the temporary file, for writers that take a FILE * (NULL on failure);
 * owned by d: closed by commit or rollback, never by the caller */
FILE *durable_stream(struct durable *d);
/* fsync, close, rename onto path, fsync the directory. On a failure before the rename the
 * temporary file is removed and path is untouched; when only the directory sync failed the
 * file is at path but may not survive a power loss: NS_ERR_IO all the same, and a caller
 * about to record it removes it instead. */
int durable_commit(struct durable *d);
/* close and remove the temporary file (no-op when none) */
void durable_rollback(struct durable *d);
/* fsync the directory holding path (after a rename or unlink the caller made itself) */
int durable_sync_dir(const char *path);
/* the whole of data[0..n) as path, committed; NS_ERR_IO with errno */
int durable_write_file(const char *path, const void *data, size_t n);

#endif
