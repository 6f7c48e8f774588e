/*
 * sched_int.h — what the files of the scheduler share (sched.c: the lanes, the engine
 * source, group commits; sched_spill.c: spill-over and fail-over to a model's fallback): its
 * state and a few helpers. Nobody outside src/sched/ sees it.
 */
#ifndef NS_SCHED_SCHED_INT_H
#define NS_SCHED_SCHED_INT_H

#include "sched.h"
#include "route.h"

#include <pthread.h>

struct sched_batch {
    char id[48];
    int fd;                         /* the input file */
    struct store_line *buf;         /* claimed, not yet handed out */
    int nbuf, ibuf;
    int inflight;
    struct sched_line *running;     /* the inflight lines (an offline backend's are cancelled
                                       with their batch: sched_drop_batch) */
    bool exhausted;                 /* the store had no pending line at the last claim */
    double exhausted_at;            /* when (sched_now) */
    bool dropped;
    bool idle_reported;
    char *path;                     /* the input file (a fallback opens it too) */
    double deadline;                /* unix s (route.h: route_deadline); 0 = none */
    struct route_rate rate;         /* its lines' rate on this backend */
    int64_t done_here;              /* its lines finished on this backend */
    struct sched_batch *next;
};

#define SCHED_FIN_MAX 64

/* a finished batch line waiting for the next group commit */
struct sched_fin {
    char batch_id[48];
    uint32_t line_no;
    struct store_result r;      /* r.json owned; r.batch_id set at flush */
};

struct sched {
    struct sched_params p;
    char *model_name;
    struct backend *be;
    struct store *st;
    sched_batch_idle_fn idle;
    void *idle_ud;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    bool draining;                  /* sched_drain(): no new batch line */
    bool stopped;                   /* sched_stop() done */
    struct sched_job *jobs_head, *jobs_tail;
    struct sched_batch *batches;    /* active, in round-robin order */
    struct sched_batch *rr;         /* next to serve */
    struct sched_stats stats;
    int interactive_running;        /* pulled, not done */
    struct sched_fin *fin;          /* results not yet in the store (mu) */
    int n_fin, cap_fin;
    double fin_first;               /* when the oldest of them finished (sched_now) */
    /* the store refusing writes (mu): see INVARIANTS */
    bool store_down;
    double store_down_since, store_retry_at, store_backoff; /* clock_now() times, seconds */
    long store_failures;            /* failed attempts while down */
    /* spill-over and fail-over (sched_set_fallback) */
    struct sched *fallback;
    struct sched_route_params rp;
    struct route_conf rc;
    double next_tick;               /* p.clock time of the next route tick */
    bool backend_down;              /* at the last tick */
};

/* wait before touching the store again? (mu held) */
bool sched_store_paused(const struct sched *s);
/* write the finished lines to the store now (mu held) */
void sched_flush(struct sched *s);
/* spill-over and fail-over, once a tick (sched_spill.c; mu held; a no-op without a fallback) */
void sched_route_tick(struct sched *s, bool force);
/* the backend's circuit is open (any thread) */
bool sched_be_down(struct sched *s);

#endif
