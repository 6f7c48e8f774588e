/*
 * progress.c — see progress.h.
 */
#include "progress.h"
#include "../util/clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


void progress_init(struct progress *p, uint64_t total, bool quiet, double interval)
{
    memset(p, 0, sizeof(*p));
    p->total = total;
    p->quiet = quiet;
    p->interval = interval > 0 ? interval : 10;
    p->tty = isatty(STDERR_FILENO);
    p->t0 = p->last = clock_now();
}

static void progress_eta(double secs, char *out, size_t n)
{
    if (secs < 0 || secs > 1e7) {
        snprintf(out, n, "--");
        return;
    }
    long s = (long)secs;
    if (s >= 3600)
        snprintf(out, n, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
    else if (s >= 60)
        snprintf(out, n, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf(out, n, "%lds", s);
}

static void progress_draw(struct progress *p, double now, bool final)
{
    double el = now - p->t0;
    double tps = el > 0 ? (double)p->tokens / el : 0;
    double lps = el > 0 ? (double)p->done / el : 0;
    char eta[32];
    progress_eta(lps > 0 ? (double)(p->total - (p->done < p->total ? p->done : p->total)) / lps : -1, eta, sizeof(eta));
    double frac = p->total ? (double)p->done / (double)p->total : 1;
    if (frac > 1)
        frac = 1;
    if (p->tty) {
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r[%s] %llu/%llu lines  %.0f tok/s  ETA %s   %s", bar, (unsigned long long)p->done,
                (unsigned long long)p->total, tps, eta, final ? "\n" : "");
    } else {
        fprintf(stderr, "progress: %llu/%llu lines (%.1f%%), %.0f generated tok/s, ETA %s\n",
                (unsigned long long)p->done, (unsigned long long)p->total, frac * 100, tps, eta);
    }
    fflush(stderr);
    p->drawn = true;
}

void progress_update(struct progress *p, uint64_t done, uint64_t tokens)
{
    p->done = done;
    p->tokens = tokens;
    if (p->quiet)
        return;
    double now = clock_now();
    double every = p->tty ? 0.2 : p->interval;
    if (now - p->last < every)
        return;
    p->last = now;
    progress_draw(p, now, false);
}

void progress_finish(struct progress *p)
{
    if (p->quiet)
        return;
    if (p->tty || p->drawn || p->done)
        progress_draw(p, clock_now(), true);
}
