/*
 * sched.c — see sched.h.
 *
 * INVARIANTS
 * - A batch line is claimed (store: running) before it is handed to the engine. Its result
 *   goes to `fin` when it leaves `inflight`, and `fin` is written to the store in one
 *   transaction (group commit: one fsync for up to SCHED_FIN_MAX lines): at a pull once the
 *   group is SCHED_FIN_MAX/4 lines or its oldest is SCHED_FIN_WAIT s old, when the engine
 *   waits for work, before idle() is reported, and before sched_drop_batch() /
 *   sched_batch_inflight() answer the batch manager. A crash loses at most one group, whose
 *   lines are still running in the store and so run again.
 * - A line dropped from a buffer by sched_drop_batch() stays running in the store for the
 *   batch manager to settle (cancelled/expired), never lost and never run twice.
 * - idle() is called once per batch each time it runs dry (no buffered line, store has no
 *   pending line, nothing in flight).
 * - Once draining, no batch line is handed out again (sched_pull returns 0); the engine
 *   keeps running what it has and interactive jobs, until sched_stop().
 * - A store that refuses writes (a full disk) loses nothing and costs nothing: a failed
 *   commit keeps its results in `fin` (it only grows by the lines already in flight, since
 *   no line is claimed while the store is down), claims and commits are retried with a
 *   backoff doubling to SCHED_STORE_BACKOFF_MAX, and the state change is logged once each
 *   way. When a commit goes through again, the batches are checked for idleness, so a batch
 *   whose last results waited in memory still ends, without a restart (issue 27.5).
 * - Spill-over and fail-over move only lines that are pending in the store (lines.route),
 *   or running lines this sched holds and gives up (lines.release: its claimed-but-not-
 *   handed-out buffer, a line whose backend failed); a line handed to the engine finishes
 *   here or is released, never both, so it has one result.
 */
#include "sched_int.h"
#include "../util/clock.h"

#include "../proto/anthropic.h"
#include "../proto/batchfile.h"
#include "../proto/batchline.h"
#include "../backend/backend.h"
#include "../util/status.h"
#include "../util/utf8.h"
#include "../util/log.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { SCHED_KIND_JOB = 1, SCHED_KIND_LINE = 2 };

const double sched_hist_bounds[SCHED_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                      1,     2.5,  5,     10,   30,  60,  INFINITY};

static void sched_observe(struct sched_hist *h, double v)
{
    int i = 0;
    while (i < SCHED_HIST_BUCKETS - 1 && v > sched_hist_bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->n++;
}


struct sched_batch;

struct sched_line {
    int kind_;                      /* SCHED_KIND_LINE */
    struct sched_batch *b;
    struct store_line line;
    struct oai_request oreq;
    struct sched_line *prev_running, *next_running; /* its batch's lines in the backend */
};

#define SCHED_STORE_BACKOFF_MIN 0.1
#define SCHED_STORE_BACKOFF_MAX 5.0

/* wait before touching the store again? (mu held) */
bool sched_store_paused(const struct sched *s)
{
    return s->store_down && clock_now() < s->store_retry_at;
}

/* a claim or commit failed: back off, and say so once (mu held) */
static void sched_store_failed(struct sched *s, const char *what, const char *batch_id)
{
    double now = clock_now();
    s->store_failures++;
    if (!s->store_down) {
        s->store_down = true;
        s->store_down_since = now;
        s->store_backoff = SCHED_STORE_BACKOFF_MIN;
        char why[256];
        store_last_error(why, sizeof(why));
        log_event(LOG_ERROR, s->model_name, batch_id,
                  "the store cannot %s (%s): batch lines pause, finished results are kept in memory, "
                  "retrying with a backoff up to %.0f s",
                  what, why[0] ? why : "disk full?", SCHED_STORE_BACKOFF_MAX);
    } else {
        s->store_backoff *= 2;
        if (s->store_backoff > SCHED_STORE_BACKOFF_MAX)
            s->store_backoff = SCHED_STORE_BACKOFF_MAX;
    }
    s->store_retry_at = now + s->store_backoff;
}

static void sched_report_idle(struct sched *s, struct sched_batch *b);

/* a claim or commit went through (mu held) */
static void sched_store_ok(struct sched *s)
{
    if (!s->store_down)
        return;
    s->store_down = false;
    log_event(LOG_INFO, s->model_name, NULL, "the store takes writes again after %ld failed attempts over %.0f s; batch lines resume",
              s->store_failures, clock_now() - s->store_down_since);
    s->store_failures = 0;
    /* a batch whose last results waited in memory was not reported idle: it is now */
    for (struct sched_batch *b = s->batches; b; b = b->next)
        sched_report_idle(s, b);
    pthread_cond_broadcast(&s->cv);
}

/* write the finished lines to the store, SCHED_FIN_MAX to a transaction (mu held). On a
 * failure what was not written stays in fin for the next attempt, after the backoff. */
void sched_flush(struct sched *s)
{
    if (!s->n_fin || sched_store_paused(s))
        return;
    int done = 0;
    while (done < s->n_fin) {
        struct store_result rs[SCHED_FIN_MAX];
        int k = s->n_fin - done < SCHED_FIN_MAX ? s->n_fin - done : SCHED_FIN_MAX;
        for (int i = 0; i < k; i++) {
            rs[i] = s->fin[done + i].r;
            rs[i].batch_id = s->fin[done + i].batch_id;
        }
        double t0 = clock_now();
        int rc = store_lines_finish(s->st, rs, k);
        sched_observe(&s->stats.store_write, clock_now() - t0);
        if (rc) {
            sched_store_failed(s, "record finished lines", s->fin[done].batch_id);
            break;
        }
        for (int i = 0; i < k; i++)
            free((char *)s->fin[done + i].r.json);
        done += k;
    }
    if (done) {
        memmove(s->fin, s->fin + done, sizeof(*s->fin) * (size_t)(s->n_fin - done));
        s->n_fin -= done;
        s->fin_first = clock_now();
    }
    if (s->n_fin == 0)
        sched_store_ok(s);
}

/* Group commit on the pull path: write the finished lines once a group is worth a
 * transaction (a quarter of SCHED_FIN_MAX) or its oldest line has waited SCHED_FIN_WAIT s.
 * A backend whose requests end one at a time (an upstream) pulls at every completion: a
 * transaction per line cost the shared store four statements and a WAL flush per line.
 * Idle reports, drops and stops still flush at once (mu held). */
#define SCHED_FIN_WAIT 0.02

static void sched_flush_due(struct sched *s)
{
    if (s->n_fin >= SCHED_FIN_MAX / 4 || (s->n_fin > 0 && clock_now() - s->fin_first >= SCHED_FIN_WAIT))
        sched_flush(s); /* a no-op while the store is paused */
}

struct sched_params sched_default_params(void)
{
    struct sched_params p = {
        .model_name = "default", .claim_chunk = 32, .window_start = -1, .window_end = -1, .off_hours_idle = true};
    return p;
}

int sched_parse_window(const char *s, int *start, int *end)
{
    unsigned h1, m1, h2, m2;
    char tail;
    if (sscanf(s, "%2u:%2u-%2u:%2u%c", &h1, &m1, &h2, &m2, &tail) != 4 || h1 > 23 || h2 > 24 || m1 > 59 || m2 > 59 ||
        (h2 == 24 && m2))
        return NS_ERR_INVALID;
    *start = (int)(h1 * 60 + m1);
    *end = (int)(h2 * 60 + m2);
    return *start == *end ? NS_ERR_INVALID : NS_OK;
}

/* may batch lines be handed out now? (mu held) */
static bool sched_batch_allowed(const struct sched *s)
{
    if (s->p.window_start < 0)
        return true;
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    int m = tm.tm_hour * 60 + tm.tm_min;
    bool inside = s->p.window_start < s->p.window_end ? (m >= s->p.window_start && m < s->p.window_end)
                                                      : (m >= s->p.window_start || m < s->p.window_end);
    if (inside)
        return true;
    return s->p.off_hours_idle && s->jobs_head == NULL && s->interactive_running == 0;
}

int sched_init(struct sched_params p, struct backend *be, struct store *st,
               sched_batch_idle_fn idle, void *idle_ud, struct sched **out)
{
    struct sched *s = calloc(1, sizeof(*s));
    *out = NULL;
    if (!s)
        return NS_ERR_NOMEM;
    s->p = p;
    if (s->p.claim_chunk <= 0)
        s->p.claim_chunk = 32;
    if (!s->p.clock)
        s->p.clock = clock_wall;
    s->model_name = strdup(p.model_name ? p.model_name : "default");
    s->be = be;
    s->st = st;
    s->idle = idle;
    s->idle_ud = idle_ud;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (!s->model_name) {
        free(s);
        return NS_ERR_NOMEM;
    }
    *out = s;
    return NS_OK;
}

const char *sched_model_name(const struct sched *s) { return s->model_name; }
struct sched *sched_fallback(const struct sched *s) { return s->fallback; }

struct backend *sched_backend(struct sched *s) { return s->be; }

static int sched_route_submit(struct sched *s, struct sched_job *job);
static int sched_enqueue(struct sched *s, struct sched_job *job);

static void sched_wake(struct sched *s)
{
    if (s->be->ops->wake)
        s->be->ops->wake(s->be->impl);
}

/* ---- batch lines -------------------------------------------------------------------- */

static void sched_batch_free(struct sched_batch *b)
{
    free(b->path);
    for (int i = b->ibuf; i < b->nbuf; i++)
        store_line_release(&b->buf[i]);
    free(b->buf);
    if (b->fd >= 0)
        close(b->fd);
    free(b);
}

/* unlink b from the list (mu held) */
static void sched_unlink(struct sched *s, struct sched_batch *b)
{
    struct sched_batch **pp = &s->batches;
    while (*pp && *pp != b)
        pp = &(*pp)->next;
    if (*pp)
        *pp = b->next;
    if (s->rr == b)
        s->rr = b->next ? b->next : s->batches;
    s->stats.active_batches--;
}

/* the result line of a batch line: success or HTTP-style error, queued for the next group
 * commit (mu held) */
static void sched_finish_line(struct sched *s, struct sched_line *sl, const struct engine_result *res)
{
    bool ok = res->status == NS_OK;
    /* the request is read only for a success, which it ran as */
    cJSON *line = batchline_result(dialect_of_batch(batchfile_url_path((enum batchfile_url)sl->line.url), false),
                                   sl->line.custom_id,
                                   ok ? &sl->oreq : NULL, res,
                                   sl->oreq.model ? sl->oreq.model : s->model_name);
    char *json = utf8_fix(cJSON_PrintUnformatted(line));
    cJSON_Delete(line);
    if (!json) {
        log_event(LOG_ERROR, s->model_name, sl->b->id, "out of memory recording line %u of batch %s; it will be rerun after a restart",
                sl->line.line_no, sl->b->id);
        return;
    }
    if (s->n_fin >= SCHED_FIN_MAX)
        sched_flush(s);
    if (s->n_fin == s->cap_fin) {
        int cap = s->cap_fin ? s->cap_fin * 2 : SCHED_FIN_MAX;
        struct sched_fin *v = realloc(s->fin, sizeof(*v) * (size_t)cap);
        if (!v) {
            free(json);
            log_event(LOG_ERROR, s->model_name, sl->b->id,
                      "out of memory recording line %u of batch %s; it will be rerun after a restart", sl->line.line_no,
                      sl->b->id);
            return;
        }
        s->fin = v;
        s->cap_fin = cap;
    }
    if (s->n_fin == 0)
        s->fin_first = clock_now();
    struct sched_fin *f = &s->fin[s->n_fin++];
    snprintf(f->batch_id, sizeof(f->batch_id), "%s", sl->b->id);
    f->line_no = sl->line.line_no;
    /* a failed request has no usage (as at OpenAI) */
    int pt = ok ? res->prompt_tokens : 0, ct = ok ? res->completion_tokens : 0, cached = ok ? res->cached_tokens : 0;
    f->r = (struct store_result){.idx = sl->line.idx, .ok = ok, .json = json, .prompt_tokens = pt,
                                 .completion_tokens = ct, .cached_tokens = cached, .prompt_computed = pt - cached,
                                 .backend = s->model_name};
    sl->b->done_here++;
}

/* read, parse and check one claimed line; NULL when it failed (its error is recorded) */
static struct sched_line *sched_make_line(struct sched *s, struct sched_batch *b, struct store_line *l)
{
    struct sched_line *sl = calloc(1, sizeof(*sl));
    char *text = malloc((size_t)l->len + 1);
    struct oai_error err;
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    if (!sl || !text) {
        free(sl);
        free(text);
        return NULL;
    }
    sl->kind_ = SCHED_KIND_LINE;
    sl->b = b;
    sl->line = *l; /* takes custom_id */
    memset(l, 0, sizeof(*l));
    ssize_t got = pread(b->fd, text, (size_t)sl->line.len, (off_t)sl->line.off);
    int rc;
    if (got != (ssize_t)sl->line.len) {
        rc = NS_ERR_IO;
        snprintf(err.message, sizeof(err.message), "cannot read line %u of the input file", sl->line.line_no);
        err.param = NULL;
    } else {
        rc = batchline_request(text, (size_t)sl->line.len, (enum batchfile_url)sl->line.url, sl->line.custom_id,
                               s->be->ops->forward, 0, &sl->oreq, &err);
    }
    free(text);
    if (rc != NS_OK) {
        res.status = rc;
        res.param = err.param;
        snprintf(res.message, sizeof(res.message), "%s", err.message);
        res.text = "";
        sched_finish_line(s, sl, &res);
        store_line_release(&sl->line);
        free(sl);
        return NULL;
    }
    sl->oreq.req.user = sl;
    return sl;
}

/* refill b's buffer from the store (mu held) */
static void sched_claim(struct sched *s, struct sched_batch *b)
{
    for (int i = b->ibuf; i < b->nbuf; i++)
        store_line_release(&b->buf[i]);
    free(b->buf);
    b->buf = NULL;
    b->nbuf = b->ibuf = 0;
    struct store_line *lines = NULL;
    int n = 0;
    if (store_lines_claim(s->st, b->id, s->model_name, s->p.claim_chunk, &lines, &n) != NS_OK) {
        sched_store_failed(s, "claim lines", b->id);
        return;
    }
    sched_store_ok(s);
    b->buf = lines;
    b->nbuf = n;
    if (n == 0) {
        b->exhausted = true;
        b->exhausted_at = clock_now();
    } else if (b->exhausted) {
        /* lines came back (another node's lease ran out): report idle again when done */
        b->exhausted = false;
        b->idle_reported = false;
    }
}

/* An exhausted batch is asked again now and then: where nodes share the store, lines of a
 * node that died become claimable when its lease runs out, with no event to say so. */
#define SCHED_RECLAIM_SECONDS 2.0

static bool sched_batch_has_work(const struct sched *s, const struct sched_batch *b)
{
    /* buffered lines run; new ones wait while the store is paused */
    if (!b->dropped && b->ibuf >= b->nbuf && sched_store_paused(s))
        return false;
    return !b->dropped &&
           (b->ibuf < b->nbuf || !b->exhausted || clock_now() - b->exhausted_at >= SCHED_RECLAIM_SECONDS);
}

static void sched_report_idle(struct sched *s, struct sched_batch *b)
{
    if (!b->dropped && b->exhausted && b->ibuf >= b->nbuf && b->inflight == 0 && !b->idle_reported) {
        sched_flush(s); /* the manager reads the results next */
        for (int i = 0; i < s->n_fin; i++)
            if (strcmp(s->fin[i].batch_id, b->id) == 0)
                return; /* not in the store yet: reported once they are (sched_store_ok) */
        b->idle_reported = true;
        if (s->idle)
            s->idle(s->idle_ud, b->id);
    }
}

/* ---- the engine source -------------------------------------------------------------- */

static int sched_pull_priority(void *ud, struct engine_request **out, int max)
{
    struct sched *s = ud;
    int n = 0;
    pthread_mutex_lock(&s->mu);
    sched_flush_due(s); /* every step, room or not */
    sched_route_tick(s, false); /* an upstream whose circuit is open pulls only here */
    while (n < max && s->jobs_head) {
        struct sched_job *j = s->jobs_head;
        s->jobs_head = j->next_;
        if (!s->jobs_head)
            s->jobs_tail = NULL;
        s->stats.interactive_waiting--;
        s->interactive_running++;
        j->oreq.req.user = j;
        out[n++] = &j->oreq.req;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

static int sched_pull(void *ud, struct engine_request **out, int max)
{
    struct sched *s = ud;
    int n = 0;
    pthread_mutex_lock(&s->mu);
    sched_flush_due(s); /* once per engine step (with room): the group commit */
    sched_route_tick(s, false);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    int idle_rounds = 0;
    if (s->draining || !sched_batch_allowed(s)) {
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    while (n < max && s->batches && idle_rounds < 2) {
        bool any = false;
        struct sched_batch *start = s->rr ? s->rr : s->batches;
        struct sched_batch *b = start;
        do {
            struct sched_batch *next = b->next ? b->next : s->batches;
            if (n < max && sched_batch_has_work(s, b)) {
                if (b->ibuf >= b->nbuf)
                    sched_claim(s, b);
                if (b->ibuf < b->nbuf) {
                    struct sched_line *sl = sched_make_line(s, b, &b->buf[b->ibuf++]);
                    any = true;
                    if (sl) {
                        b->inflight++;
                        sl->next_running = b->running;
                        if (b->running)
                            b->running->prev_running = sl;
                        b->running = sl;
                        out[n++] = &sl->oreq.req;
                    } else {
                        s->stats.batch_lines_done++;
                        s->stats.batch_lines_failed++;
                        sched_report_idle(s, b);
                    }
                } else {
                    sched_report_idle(s, b);
                }
            }
            s->rr = next;
            b = next;
        } while (b != start && n < max);
        idle_rounds = any ? 0 : idle_rounds + 1;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void sched_done(void *ud, struct engine_request *req, const struct engine_result *res)
{
    struct sched *s = ud;
    int kind = *(int *)req->user;
    if (kind == SCHED_KIND_JOB) {
        struct sched_job *j = req->user;
        /* on_failure = fallback: a request the backend failed before anything was streamed
         * runs again on the fallback */
        pthread_mutex_lock(&s->mu);
        bool refallback = (res->status == NS_ERR_UPSTREAM || res->status == NS_ERR_UNAVAILABLE) && !j->streamed_ &&
                          s->fallback && s->rp.realtime_fallback && !s->stopping;
        if (refallback) {
            s->interactive_running--;
            s->stats.interactive_fallback++;
        }
        pthread_mutex_unlock(&s->mu);
        if (refallback) {
            log_event(LOG_WARN, s->model_name, NULL, "a real-time request failed on model '%s' (%s); on_failure = fallback: it runs on '%s'",
                      s->model_name, res->message, sched_model_name(s->fallback));
            j->served_by = sched_model_name(s->fallback);
            if (sched_route_submit(s->fallback, j) == NS_OK)
                return;
            pthread_mutex_lock(&s->mu);
            s->interactive_running++;
            pthread_mutex_unlock(&s->mu);
        }
        pthread_mutex_lock(&s->mu);
        s->stats.interactive_done++;
        s->stats.interactive_failed += res->status != NS_OK;
        s->interactive_running--;
        if (res->status == NS_OK) {
            s->stats.prompt_tokens += (uint64_t)res->prompt_tokens;
            s->stats.completion_tokens += (uint64_t)res->completion_tokens;
            if (res->t_first > 0)
                sched_observe(&s->stats.ttft, res->t_first - j->t_submit_);
            sched_observe(&s->stats.latency, res->t_end - j->t_submit_);
        }
        pthread_mutex_unlock(&s->mu);
        j->on_done(j, res);
        return;
    }
    struct sched_line *sl = req->user;
    struct sched_batch *b = sl->b;
    pthread_mutex_lock(&s->mu);
    *(sl->prev_running ? &sl->prev_running->next_running : &b->running) = sl->next_running;
    if (sl->next_running)
        sl->next_running->prev_running = sl->prev_running;
    /* fail-over: a line whose backend failed (the upstream is down) is given to the fallback
     * unfinished, not recorded as failed; where the store refuses, it fails as before */
    bool failed_over = false;
    if ((res->status == NS_ERR_UPSTREAM || res->status == NS_ERR_UNAVAILABLE) && s->fallback && !s->stopping &&
        !b->dropped) {
        int64_t idx = sl->line.idx;
        if (store_lines_release(s->st, b->id, &idx, 1, sched_model_name(s->fallback)) == NS_OK) {
            failed_over = true;
            s->stats.lines_failed_over++;
            log_event(LOG_WARN, s->model_name, b->id, "line %u of batch %s failed on model '%s' (%s); it goes to '%s'",
                      sl->line.line_no, b->id, s->model_name, res->message, sched_model_name(s->fallback));
            sched_add_batch(s->fallback, b->id, b->path);
        }
    }
    /* a line cancelled by shutdown stays claimed; the next start requeues it */
    if (!failed_over && !(res->status == NS_ERR_CANCELLED && s->stopping))
        sched_finish_line(s, sl, res);
    oai_request_release(&sl->oreq);
    store_line_release(&sl->line);
    free(sl);
    b->inflight--;
    if (!failed_over) {
        s->stats.batch_lines_done++;
        s->stats.batch_lines_failed += res->status != NS_OK;
    }
    if (res->status == NS_OK) {
        sched_observe(&s->stats.line_latency, res->t_end - res->t_admit);
        s->stats.prompt_tokens += (uint64_t)res->prompt_tokens;
        s->stats.completion_tokens += (uint64_t)res->completion_tokens;
        s->stats.batch_prompt_tokens += (uint64_t)res->prompt_tokens;
        s->stats.batch_completion_tokens += (uint64_t)res->completion_tokens;
    }
    if (b->dropped) {
        if (b->inflight == 0) {
            sched_flush(s); /* before the manager settles what is left */
            sched_unlink(s, b);
            sched_batch_free(b);
        }
        pthread_cond_broadcast(&s->cv);
    } else {
        sched_report_idle(s, b);
    }
    pthread_mutex_unlock(&s->mu);
}

static void sched_token(void *ud, struct engine_request *req, const struct engine_delta *d)
{
    if (*(int *)req->user != SCHED_KIND_JOB)
        return;
    struct sched_job *j = req->user;
    j->streamed_ = true;
    if (!j->on_token)
        return;
    /* inter-token latency: between deltas of a stream's choice 0 that carry something */
    if (d->index == 0 && (d->len || d->reasoning_len || d->tool_args)) {
        double now = clock_now();
        if (j->t_delta_ > 0) {
            struct sched *s = ud;
            pthread_mutex_lock(&s->mu);
            sched_observe(&s->stats.itl, now - j->t_delta_);
            pthread_mutex_unlock(&s->mu);
        }
        j->t_delta_ = now;
    }
    j->on_token(j, d);
}

static void sched_wait(void *ud)
{
    struct sched *s = ud;
    pthread_mutex_lock(&s->mu);
    sched_flush(s);
    sched_route_tick(s, false);
    bool work = s->jobs_head != NULL || s->stopping;
    /* batch lines that may not be handed out now are no work: waiting beats spinning */
    bool batch_ok = !s->draining && sched_batch_allowed(s);
    for (struct sched_batch *b = s->batches; b && !work && batch_ok; b = b->next)
        work = sched_batch_has_work(s, b);
    if (!work) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
}

static void *sched_thread(void *arg)
{
    struct sched *s = arg;
    struct engine_source src = {
        .ud = s,
        .pull = sched_pull,
        .pull_priority = sched_pull_priority,
        .done = sched_done,
        .token = sched_token,
        .wait = sched_wait,
    };
    int rc = s->be->ops->run(s->be->impl, &src);
    if (rc)
        log_event(LOG_ERROR, s->model_name, NULL, "the backend of model '%s' stopped with an error", s->model_name);
    return NULL;
}

int sched_start(struct sched *s)
{
    if (pthread_create(&s->thread, NULL, sched_thread, s) != 0)
        return NS_ERR_INTERNAL;
    s->started = true;
    return NS_OK;
}

void sched_drain(struct sched *s)
{
    pthread_mutex_lock(&s->mu);
    s->draining = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

bool sched_store_writable(struct sched *s)
{
    pthread_mutex_lock(&s->mu);
    bool ok = !s->store_down;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

int sched_inflight(struct sched *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->interactive_running + (int)s->stats.interactive_waiting;
    for (struct sched_batch *b = s->batches; b; b = b->next)
        n += b->inflight;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void sched_stop(struct sched *s)
{
    pthread_mutex_lock(&s->mu);
    bool was = s->stopped;
    s->stopping = s->stopped = true;
    pthread_cond_broadcast(&s->cv);
    /* interactive jobs never pulled: fail them (outside the lock) so their callers return */
    struct sched_job *j = s->jobs_head;
    s->jobs_head = s->jobs_tail = NULL;
    s->stats.interactive_waiting = 0;
    pthread_mutex_unlock(&s->mu);
    if (was)
        return;
    if (s->started) {
        s->be->ops->stop(s->be->impl);
        pthread_join(s->thread, NULL);
    }
    pthread_mutex_lock(&s->mu);
    sched_flush(s);
    pthread_mutex_unlock(&s->mu);
    while (j) {
        struct sched_job *next = j->next_;
        struct engine_result res;
        memset(&res, 0, sizeof(res));
        res.status = NS_ERR_UNAVAILABLE;
        res.text = "";
        snprintf(res.message, sizeof(res.message), "the server is shutting down");
        j->on_done(j, &res);
        j = next;
    }
}

void sched_free(struct sched *s)
{
    if (!s)
        return;
    sched_stop(s);
    while (s->batches) {
        struct sched_batch *b = s->batches;
        s->batches = b->next;
        sched_batch_free(b);
    }
    backend_free(s->be);
    for (int i = 0; i < s->n_fin; i++)
        free((char *)s->fin[i].r.json);
    free(s->fin);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->model_name);
    free(s);
}

int sched_submit(struct sched *s, struct sched_job *job)
{
    job->served_by = NULL;
    job->streamed_ = false;
    job->fallback_from_ = NULL;
    return sched_route_submit(s, job);
}

/* on_failure = fallback: while the backend is down, real-time requests go to the fallback */
static int sched_route_submit(struct sched *s, struct sched_job *job)
{
    if (s->fallback && s->rp.realtime_fallback && sched_be_down(s)) {
        pthread_mutex_lock(&s->mu);
        s->stats.interactive_fallback++;
        pthread_mutex_unlock(&s->mu);
        if (!job->fallback_from_)
            job->fallback_from_ = s;
        job->served_by = sched_model_name(s->fallback);
        return sched_route_submit(s->fallback, job);
    }
    return sched_enqueue(s, job);
}

static int sched_enqueue(struct sched *s, struct sched_job *job)
{
    job->kind_ = SCHED_KIND_JOB;
    job->next_ = NULL;
    job->t_submit_ = clock_now();
    job->t_delta_ = 0;
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return NS_ERR_UNAVAILABLE;
    }
    if (s->jobs_tail)
        s->jobs_tail->next_ = job;
    else
        s->jobs_head = job;
    s->jobs_tail = job;
    s->stats.interactive_waiting++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    sched_wake(s);
    return NS_OK;
}

int sched_add_batch(struct sched *s, const char *batch_id, const char *input_path)
{
    struct sched_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return NS_ERR_NOMEM;
    snprintf(b->id, sizeof(b->id), "%s", batch_id);
    b->fd = open(input_path, O_RDONLY | O_CLOEXEC);
    b->path = strdup(input_path);
    if (b->fd < 0 || !b->path) {
        int rc = b->fd < 0 ? NS_ERR_IO : NS_ERR_NOMEM;
        if (b->fd >= 0)
            close(b->fd);
        free(b->path);
        free(b);
        return rc;
    }
    /* the deadline spill-over plans for (route.h); read once: neither changes */
    struct store_batch sb;
    if (store_batch_get(s->st, batch_id, &sb) == NS_OK) {
        b->deadline = route_deadline(sb.metadata, sb.expires_at);
        store_batch_release(&sb);
    }
    pthread_mutex_lock(&s->mu);
    for (struct sched_batch *x = s->batches; x; x = x->next)
        if (!x->dropped && strcmp(x->id, batch_id) == 0) {
            /* already active: wake it (new pending lines, e.g. after requeue) */
            x->exhausted = false;
            x->idle_reported = false;
            pthread_mutex_unlock(&s->mu);
            sched_batch_free(b);
            sched_wake(s);
            return NS_OK;
        }
    /* append: round-robin order is arrival order */
    struct sched_batch **pp = &s->batches;
    while (*pp)
        pp = &(*pp)->next;
    *pp = b;
    s->stats.active_batches++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    sched_wake(s);
    return NS_OK;
}

int sched_drop_batch(struct sched *s, const char *batch_id)
{
    int inflight = 0;
    pthread_mutex_lock(&s->mu);
    sched_flush(s);
    for (struct sched_batch *b = s->batches; b; b = b->next) {
        if (b->dropped || strcmp(b->id, batch_id) != 0)
            continue;
        b->dropped = true;
        inflight = b->inflight;
        /* a provider's batch API may take hours: its lines of a cancelled batch are told to
         * stop (the backend ends them, and cancels its upstream job when nothing else waits
         * for it); the engine's and an HTTP upstream's finish in seconds, as they run */
        if (s->be->ops->offline)
            for (struct sched_line *sl = b->running; sl; sl = sl->next_running)
                atomic_store(&sl->oreq.req.cancelled, true);
        if (inflight == 0) {
            sched_unlink(s, b);
            sched_batch_free(b);
        }
        break;
    }
    pthread_mutex_unlock(&s->mu);
    return inflight;
}

int sched_batch_inflight(struct sched *s, const char *batch_id)
{
    int n = -1;
    pthread_mutex_lock(&s->mu);
    sched_flush(s);
    for (struct sched_batch *b = s->batches; b; b = b->next)
        if (strcmp(b->id, batch_id) == 0)
            n = b->inflight;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int sched_batch_ids(struct sched *s, char (**ids)[48], int *n)
{
    pthread_mutex_lock(&s->mu);
    int cap = 0;
    for (struct sched_batch *b = s->batches; b; b = b->next)
        cap++;
    char(*arr)[48] = malloc(sizeof(*arr) * (size_t)(cap ? cap : 1));
    int got = 0;
    for (struct sched_batch *b = s->batches; arr && b; b = b->next)
        if (!b->dropped)
            snprintf(arr[got++], 48, "%s", b->id);
    pthread_mutex_unlock(&s->mu);
    *ids = arr;
    *n = arr ? got : 0;
    return arr ? NS_OK : NS_ERR_NOMEM;
}

void sched_get_stats(struct sched *s, struct sched_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}
