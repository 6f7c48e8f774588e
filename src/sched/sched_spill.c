/*
 * sched_spill.c — spill-over and fail-over of a scheduler to its model's fallback (sched.h:
 * SPILL-OVER AND FAIL-OVER; the prediction rule is route.h's). Runs on the engine thread,
 * under the sched's mutex, once a tick; the fallback's mutex is taken inside it (lock order:
 * a sched, then its fallback).
 */
#include "sched_int.h"

#include "../backend/backend.h"
#include "../util/log.h"
#include "../util/status.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sched_route_params sched_default_route_params(void)
{
    struct route_conf c = route_default_conf();
    struct sched_route_params p = {.margin = c.margin, .turnaround_s = c.turnaround_s, .min_observe_s = c.min_observe_s};
    return p;
}

void sched_set_fallback(struct sched *s, struct sched *fallback, struct sched_route_params rp)
{
    pthread_mutex_lock(&s->mu);
    s->fallback = fallback;
    s->rp = rp;
    s->rc = route_default_conf();
    s->rc.margin = rp.margin;
    s->rc.turnaround_s = rp.turnaround_s;
    s->rc.min_observe_s = rp.min_observe_s;
    pthread_mutex_unlock(&s->mu);
}

/* the backend's circuit is open: an upstream that keeps failing (a local engine has none) */
bool sched_be_down(struct sched *s)
{
    if (!s->be->ops->get_stats)
        return false;
    struct backend_stats bs;
    memset(&bs, 0, sizeof(bs));
    s->be->ops->get_stats(s->be->impl, &bs);
    return bs.circuit == BACKEND_CIRCUIT_OPEN;
}

bool sched_backend_down(struct sched *s) { return sched_be_down(s); }

bool sched_batch_rate(struct sched *s, const char *batch_id, double *rate, double *deadline)
{
    bool found = false;
    pthread_mutex_lock(&s->mu);
    for (struct sched_batch *b = s->batches; b; b = b->next)
        if (!b->dropped && strcmp(b->id, batch_id) == 0) {
            found = true;
            *rate = b->rate.known ? b->rate.rate : 0;
            *deadline = b->deadline;
        }
    pthread_mutex_unlock(&s->mu);
    return found;
}

/* ---- spill-over and fail-over (see sched.h) ------------------------------------------- */

/* one backend's row of a batch's routes (zeroed when absent) */
static struct store_route sched_route_of(const struct store_route *rt, int n, const char *name)
{
    struct store_route r;
    memset(&r, 0, sizeof(r));
    for (int i = 0; i < n; i++)
        if (strcmp(rt[i].backend, name) == 0)
            r = rt[i];
    return r;
}

/* the backend is down: every line of b waiting here goes to the fallback (mu held) */
static void sched_fail_over(struct sched *s, struct sched_batch *b)
{
    const char *fb = sched_model_name(s->fallback);
    int64_t moved = 0, released = 0;
    if (b->ibuf < b->nbuf) {
        int64_t *idx = malloc(sizeof(*idx) * (size_t)(b->nbuf - b->ibuf));
        int k = 0;
        for (int i = b->ibuf; idx && i < b->nbuf; i++)
            idx[k++] = b->buf[i].idx;
        if (idx && store_lines_release(s->st, b->id, idx, k, fb) == NS_OK) {
            for (int i = b->ibuf; i < b->nbuf; i++)
                store_line_release(&b->buf[i]);
            b->ibuf = b->nbuf;
            released = k;
        }
        free(idx);
    }
    if (store_lines_route(s->st, b->id, NULL, s->model_name, fb, INT64_MAX, &moved) != NS_OK)
        moved = 0;
    if (moved + released == 0)
        return;
    s->stats.lines_failed_over += (uint64_t)(moved + released);
    log_event(LOG_WARN, s->model_name, b->id, "the backend of model '%s' is down (circuit open): %lld waiting lines of batch %s go to '%s'",
              s->model_name, (long long)(moved + released), b->id, fb);
    sched_add_batch(s->fallback, b->id, b->path);
}

/* once a tick: measure, predict, move (mu held; a no-op without a fallback) */
void sched_route_tick(struct sched *s, bool force)
{
    if (!s->fallback || s->draining || s->stopping || sched_store_paused(s))
        return;
    double now = s->p.clock();
    if (!force && now < s->next_tick)
        return;
    s->next_tick = now + s->rc.tick_s;
    sched_flush(s); /* the store's counts include what finished here */
    bool down = sched_be_down(s);
    if (down != s->backend_down)
        log_event(down ? LOG_WARN : LOG_INFO, s->model_name, NULL, "the backend of model '%s' is %s", s->model_name,
                  down ? "down (circuit open): batch lines go to its fallback" : "up again");
    s->backend_down = down;
    const char *fb = sched_model_name(s->fallback);
    for (struct sched_batch *b = s->batches; b; b = b->next) {
        if (b->dropped)
            continue;
        if (down) {
            route_rate_sample(&b->rate, &s->rc, now, b->done_here, false); /* an outage is no rate */
            sched_fail_over(s, b);
            continue;
        }
        struct store_route *rt = NULL;
        int n = 0;
        if (store_lines_routes(s->st, b->id, &rt, &n) != NS_OK)
            continue;
        struct store_route here = sched_route_of(rt, n, s->model_name), there = sched_route_of(rt, n, fb);
        free(rt);
        int64_t left = here.pending + here.running;
        route_rate_sample(&b->rate, &s->rc, now, b->done_here, left > 0);
        int64_t plan = route_plan(&s->rc, &b->rate, now, b->deadline, left, here.pending, there.pending);
        int64_t moved = 0;
        if (plan > 0 && store_lines_route(s->st, b->id, NULL, s->model_name, fb, plan, &moved) == NS_OK && moved > 0) {
            s->stats.lines_spilled += (uint64_t)moved;
            log_event(LOG_INFO, s->model_name, b->id,
                      "batch %s would miss its deadline on '%s' (%.2f lines/s, %lld left, %.0f s to go): %lld lines go to '%s'",
                      b->id, s->model_name, b->rate.rate, (long long)left, b->deadline - now, (long long)moved, fb);
            sched_add_batch(s->fallback, b->id, b->path);
        } else if (plan < 0 &&
                   store_lines_route(s->st, b->id, s->model_name, fb, s->model_name, -plan, &moved) == NS_OK && moved > 0) {
            s->stats.lines_taken_back += (uint64_t)moved;
            log_event(LOG_INFO, s->model_name, b->id, "'%s' keeps up with batch %s again (%.2f lines/s): %lld lines come back from '%s'",
                      s->model_name, b->id, b->rate.rate, (long long)moved, fb);
            b->exhausted = false;
            b->idle_reported = false;
        }
    }
}

