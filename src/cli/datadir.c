/*
 * datadir.c — see datadir.h.
 */
#include "datadir.h"

#include "../util/num.h"
#include "../util/status.h"
#include "../util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int datadir_create(const char *dir, char *err, size_t errlen)
{
    char sub[4096];
    /* Owner-only, whatever the umask (issue 27.14): the data dir holds every prompt and
     * answer, and the key hashes. An existing dir made by an older version (0750, 0755) is
     * tightened; the files inside are then out of reach of other users whatever their own
     * modes, and the process creates new ones 0600 (serve sets umask 077). */
    if (mkdir(dir, 0700) && errno != EEXIST) {
        snprintf(err, errlen, "cannot create data dir '%s': %s", dir, strerror(errno));
        return NS_ERR_IO;
    }
    snprintf(sub, sizeof(sub), "%s/files", dir);
    if (mkdir(sub, 0700) && errno != EEXIST) {
        snprintf(err, errlen, "cannot create '%s': %s", sub, strerror(errno));
        return NS_ERR_IO;
    }
    const char *both[] = {dir, sub};
    for (int i = 0; i < 2; i++) {
        struct stat st;
        /* a read-only data dir fails just below, with the reason that matters */
        if (stat(both[i], &st) == 0 && (st.st_mode & 077) && chmod(both[i], 0700) && errno != EROFS) {
            snprintf(err, errlen, "cannot make '%s' owner-only: %s", both[i], strerror(errno));
            return NS_ERR_IO;
        }
    }
    if (access(dir, W_OK) || access(sub, W_OK)) {
        snprintf(err, errlen, "data dir '%s' is not writable: %s", dir, strerror(errno));
        return NS_ERR_IO;
    }
    return NS_OK;
}

/* the pid written in an open lock file, or -1 */
static pid_t datadir_read_pid(int fd)
{
    char text[32];
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    text[strcspn(text, "\n")] = '\0';
    long long pid;
    return num_parse_long(text, 1, 1 << 30, &pid) ? -1 : (pid_t)pid;
}

int datadir_lock_file(const char *path, const char *what, int *fd, char *err, size_t errlen)
{
    *fd = -1;
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (f < 0) {
        snprintf(err, errlen, "cannot open the lock file '%s': %s", path, strerror(errno));
        return NS_ERR_IO;
    }
    if (flock(f, LOCK_EX | LOCK_NB)) {
        int e = errno;
        pid_t pid = e == EWOULDBLOCK ? datadir_read_pid(f) : -1;
        close(f);
        if (e != EWOULDBLOCK) {
            snprintf(err, errlen, "cannot lock '%s': %s", path, strerror(e));
            return NS_ERR_IO;
        }
        if (pid > 0)
            snprintf(err, errlen, "%s is in use by another nightshift (pid %d)", what, (int)pid);
        else
            snprintf(err, errlen, "%s is in use by another nightshift (it holds '%s')", what, path);
        return NS_ERR_CONFLICT;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    /* best effort: the lock is what counts, the pid only makes the message helpful */
    if (ftruncate(f, 0) == 0 && pwrite(f, pid, (size_t)n, 0) != n)
        log_event(LOG_WARN, NULL, NULL, "cannot write the pid into '%s'", path);
    *fd = f;
    return NS_OK;
}

int datadir_lock(const char *dir, int *fd, char *err, size_t errlen)
{
    char path[4096], what[4200];
    snprintf(path, sizeof(path), "%s/" DATADIR_LOCK_NAME, dir);
    snprintf(what, sizeof(what), "data dir '%s'", dir);
    return datadir_lock_file(path, what, fd, err, errlen);
}

void datadir_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* closing the last descriptor releases the flock */
}

pid_t datadir_holder(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/" DATADIR_LOCK_NAME, dir);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return 0;
    pid_t pid = 0;
    if (flock(f, LOCK_SH | LOCK_NB) == 0)
        flock(f, LOCK_UN);
    else if (errno == EWOULDBLOCK)
        pid = datadir_read_pid(f);
    close(f);
    return pid;
}
