/*
 * progress.h — progress of a long job on stderr: a bar redrawn in place on a terminal
 * (lines done/total, generated tokens/s, ETA), plain periodic lines otherwise (logs,
 * CI), nothing when quiet. Throttled: updating it costs a clock read.
 */
#ifndef NS_CLI_PROGRESS_H
#define NS_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct progress {
    uint64_t total;
    double t0, last;
    double interval;       /* seconds between plain lines */
    bool tty, quiet, drawn;
    uint64_t done, tokens;
};

void progress_init(struct progress *p, uint64_t total, bool quiet, double interval);
void progress_update(struct progress *p, uint64_t done, uint64_t tokens);
void progress_finish(struct progress *p);

#endif
