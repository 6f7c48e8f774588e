/*
 * datadir.h — the data dir of `nightshift serve` as the commands around it see it:
 * creating it, and the lock that says a server is using it.
 *
 * DESIGN
 * A data dir holds the store (DATA_DIR/nightshift.db with the SQLite store), the files
 * (DATA_DIR/files/<id>, each written to a temporary name and renamed, so a file never
 * changes once it has its name) and DATA_DIR/nightshift.lock. A server holds an exclusive
 * flock(2) on the lock file for as long as it runs and writes its pid into it; the kernel
 * drops the lock when the process ends, however it ends (kill -9 included), so a stale
 * lock file never blocks a start. `restore` takes the same lock, so a server cannot start
 * on a data dir being restored, and a restore is refused while a server runs.
 *
 * Errors are written into err as a sentence naming the path ("cannot create ...").
 */
#ifndef NS_CLI_DATADIR_H
#define NS_CLI_DATADIR_H

#include <stddef.h>
#include <sys/types.h>

/* the lock file's name inside a data dir */
#define DATADIR_LOCK_NAME "nightshift.lock"

/* create dir (its parent must exist) and dir/files when missing, and check both are
 * writable; 0 ok */
int datadir_create(const char *dir, char *err, size_t errlen);

/* Take the data dir's lock without waiting and write our pid into it. 0 ok: *fd holds the
 * lock until datadir_unlock() or the process ends. NS_ERR_CONFLICT when another process
 * holds it (err names its pid), NS_ERR_IO when the lock file cannot be opened. */
int datadir_lock(const char *dir, int *fd, char *err, size_t errlen);
void datadir_unlock(int fd);
/* the same lock on any file (`run` locks its checkpoint with it); `what` names the thing
 * locked in the message ("the checkpoint 'x.state.db'") */
int datadir_lock_file(const char *path, const char *what, int *fd, char *err, size_t errlen);

/* the pid of the process holding dir's lock: 0 when none does (or there is no lock file),
 * -1 when held by a process whose pid the file does not say */
pid_t datadir_holder(const char *dir);

#endif
