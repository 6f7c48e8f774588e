/*
 * batch_loop.c — the provider-batch backends' run loop (batch_loop.h).
 */
#include "batch_loop.h"

#include "../util/clock.h"
#include "../util/status.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define BL_PULL 256

static void bl_numbers_only(struct backend_conf *c)
{
    c->name = c->kind = c->url = c->api_key = c->upstream_model = NULL;
    c->provider = NULL;
    c->state_dir = NULL;
    c->engine = NULL;
}

void batch_loop_init(struct batch_loop *l, const struct batch_loop_ops *ops, void *impl, const char *name,
                     const char *via, const struct backend_conf *c)
{
    l->ops = ops;
    l->impl = impl;
    l->name = name;
    snprintf(l->via, sizeof(l->via), "%s", via);
    l->c = *c;
    bl_numbers_only(&l->c);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
}

void batch_loop_free(struct batch_loop *l)
{
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
}

void batch_loop_pended(struct batch_loop *l, bool was_empty, size_t bytes)
{
    if (was_empty)
        l->oldest = clock_now();
    l->n_pending++;
    l->pending_bytes += bytes;
}

void batch_loop_done(struct batch_loop *l, struct engine_request *req, struct engine_result *res, double t_admit,
                     int attempts)
{
    res->t_admit = t_admit;
    res->t_end = clock_now();
    res->t_first = res->t_end;
    res->attempts = attempts;
    res->stop_index = -1;
    if (!res->text)
        res->text = "";
    if (res->status != NS_OK) {
        pthread_mutex_lock(&l->mu);
        l->stats.failed++;
        pthread_mutex_unlock(&l->mu);
    }
    l->src->done(l->src->ud, req, res);
}

void batch_loop_reject(struct batch_loop *l, struct engine_request *r, int status, const char *param, const char *fmt,
                       ...)
{
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    res.status = status;
    res.text = "";
    res.param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res.message, sizeof(res.message), fmt, ap);
    va_end(ap);
    l->src->done(l->src->ud, r, &res);
}

bool batch_loop_may_retry(struct batch_loop *l, int attempts)
{
    if (attempts >= l->c.max_attempts)
        return false;
    pthread_mutex_lock(&l->mu);
    l->stats.retries++;
    pthread_mutex_unlock(&l->mu);
    return true;
}

bool batch_loop_submit_failed(struct batch_loop *l, int rc, double now)
{
    l->submit_failures++;
    l->submit_after = now + fmin(l->c.retry_max_s, l->c.retry_base_s * pow(2, l->submit_failures));
    return rc == NS_ERR_INVALID || rc == NS_ERR_AUTH || rc == NS_ERR_NOT_FOUND || rc == NS_ERR_TOO_LARGE;
}

/* real-time requests cannot wait for a batch API, unless they said they may
 * ("service_tier": "flex"): those wait with the batch lines */
static void bl_pull_priority(struct batch_loop *l, const struct engine_source *src, double now)
{
    struct engine_request *got[BL_PULL];
    int n;
    while (src->pull_priority && (n = src->pull_priority(src->ud, got, BL_PULL)) > 0)
        for (int i = 0; i < n; i++) {
            const cJSON *tier = got[i]->body ? cJSON_GetObjectItemCaseSensitive(got[i]->body, "service_tier") : NULL;
            if (cJSON_IsString(tier) && strcmp(tier->valuestring, "flex") == 0) {
                l->ops->admit(l->impl, got[i], now);
                continue;
            }
            batch_loop_reject(l, got[i], NS_ERR_UNSUPPORTED, "model",
                              "model '%s' is served through %s: send it in a batch (/v1/batches), as a deferred "
                              "request (/v1/deferred/chat/completions), or with \"service_tier\": \"flex\" to wait "
                              "for it here",
                              l->name, l->via);
        }
}

static bool bl_bytes_full(const struct batch_loop *l)
{
    return l->cap_bytes && (int64_t)l->pending_bytes >= l->c.max_bytes;
}

int batch_loop_run(struct batch_loop *l, const struct engine_source *src)
{
    struct engine_request *got[BL_PULL];
    l->src = src;
    bool exhausted = false;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        bool stopping = l->stopping;
        l->woken = false;
        if (l->has_next) {
            l->c = l->next_c;
            if (l->ops->reconf)
                l->ops->reconf(l->impl);
            l->stats.limit = l->c.max_lines;
            l->has_next = false;
        }
        pthread_mutex_unlock(&l->mu);
        if (stopping)
            break;
        double now = clock_now();
        bl_pull_priority(l, src, now);
        /* batch lines: as many as the upstream batches may hold */
        bool dry = false;
        while (!exhausted && l->n_pending < l->c.max_lines && !bl_bytes_full(l)) {
            int room = l->c.max_lines - l->n_pending;
            int n = src->pull(src->ud, got, room < BL_PULL ? room : BL_PULL);
            if (n < 0)
                exhausted = true;
            if (n <= 0) {
                dry = true;
                break;
            }
            for (int i = 0; i < n; i++)
                l->ops->admit(l->impl, got[i], now);
        }
        while (l->n_pending > 0 && now >= l->submit_after &&
               (l->n_pending >= l->c.max_lines || bl_bytes_full(l) || (dry && l->n_pending >= l->c.flush_lines) ||
                now - l->oldest >= l->c.flush_after_s || exhausted))
            l->ops->flush(l->impl, now);
        l->ops->poll_all(l->impl, clock_now());
        bool live = false;
        double until = now + 1.0;
        int up = l->ops->upstream(l->impl, &live, &until);
        pthread_mutex_lock(&l->mu);
        l->stats.inflight = up;
        pthread_mutex_unlock(&l->mu);
        if (exhausted && l->n_pending == 0 && !live)
            break;
        /* sleep until the next poll or flush is due, or wake() */
        if (l->n_pending > 0)
            until = fmin(until, fmax(l->oldest + l->c.flush_after_s, l->submit_after));
        double wait = until - clock_now();
        if (wait > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            double t = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + wait;
            ts.tv_sec = (time_t)t;
            ts.tv_nsec = (long)((t - floor(t)) * 1e9);
            pthread_mutex_lock(&l->mu);
            if (!l->woken && !l->stopping)
                pthread_cond_timedwait(&l->cv, &l->mu, &ts);
            pthread_mutex_unlock(&l->mu);
        }
    }
    l->ops->cancel_all(l->impl);
    return NS_OK;
}

void batch_loop_stop(struct batch_loop *l)
{
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void batch_loop_wake(struct batch_loop *l)
{
    pthread_mutex_lock(&l->mu);
    l->woken = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void batch_loop_reconfigure(struct batch_loop *l, const struct backend_conf *c)
{
    pthread_mutex_lock(&l->mu);
    l->next_c = *c;
    bl_numbers_only(&l->next_c);
    l->has_next = true;
    l->woken = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void batch_loop_get_stats(struct batch_loop *l, struct backend_stats *out)
{
    pthread_mutex_lock(&l->mu);
    *out = l->stats;
    pthread_mutex_unlock(&l->mu);
}
