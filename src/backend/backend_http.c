/*
 * backend_http.c — "openai-http": requests forwarded to an OpenAI-compatible server
 * (vLLM, Ollama, llama.cpp's llama-server, OpenAI, Groq, kluster.ai, ...).
 *
 * DESIGN
 * One thread (the scheduler's) runs one libcurl multi handle: every request in flight is
 * an easy handle on it, so hundreds of upstream requests cost no thread each, and
 * connections are kept alive and reused (HTTP/2 multiplexing where TLS offers it). The
 * thread sleeps in epoll on the sockets curl names (curl_multi_socket_action), so each
 * wake-up costs what moved, not a pass over every transfer in flight (curl_multi_perform
 * and curl_multi_poll walk all of them: at 256 in flight they were a third of a forwarded
 * request's CPU); new work wakes it through an eventfd, written once per sleep. The
 * loop pulls work from the scheduler only while it has room: room is an adaptive
 * concurrency limit (AIMD: halved on every 429, grown by 1/limit per success up to the
 * configured `concurrency`), no rate-limit pause in force (Retry-After, or
 * x-ratelimit-remaining-* at 0 until x-ratelimit-reset-*), and a closed circuit.
 *
 * Retries: 408, 409, 425, 429, 500, 502, 503, 504, 529, timeouts and connection
 * failures are tried again up to max_attempts in all, after Retry-After when the upstream
 * gave one, else after a full-jitter exponential backoff (uniform in [0, min(max,
 * base * 2^(try-1))]), which keeps many clients from retrying in lockstep. Any other
 * answer is final: a success, or a 4xx that becomes the request's error exactly as the
 * upstream gave it (status and body).
 *
 * Circuit breaker: after circuit_failures consecutive failed tries (5xx, timeouts,
 * connection errors; a 429 is the upstream working as designed and does not count) the
 * backend stops sending for a cooldown; then one probe request goes through (half-open):
 * success closes the circuit, failure opens it again for twice as long (at most 300 s).
 * While it is open, batch lines wait in place (they are durable and patient); real-time
 * requests fail at once with a 503 that says when to retry, rather than hanging.
 *
 * The API key lives only in one Authorization header list; it is never logged, stored,
 * or put in an error message (curl is never verbose here).
 *
 * THREADS: everything runs on the run() thread but stop(), wake() and reconfigure() (any
 * thread; they write evfd, at most once per sleep) and get_stats() (any thread; mu guards
 * the counters).
 */
#include "backend.h"
#include "../util/clock.h"

#include "../util/buf.h"
#include "../util/status.h"
#include "circuit.h"
#include "upstream.h"
#include "../util/log.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define HTTP_MAX_RESPONSE (64u << 20)
#define HTTP_MAX_PULL 64

struct http_req {
    struct engine_request *req;
    struct http_backend *hb;
    CURL *easy;
    char *body;                 /* JSON sent */
    size_t body_len;
    struct buf resp;
    double retry_after;         /* seconds from a Retry-After header; < 0 none */
    double rl_pause;            /* seconds until the upstream's rate-limit window resets; < 0 none */
    int attempts;
    bool chat;
    bool priority;
    double t_admit;
    double due;                 /* waiting: when it may be sent again */
    char errbuf[CURL_ERROR_SIZE];
    char last_error[300];       /* why the last try failed, for the final message */
    struct http_req *next;      /* in the waiting list, or the sending list (with prev) */
    struct http_req *prev;
};

struct http_backend {
    char *url_chat, *url_completions;
    char *name, *upstream_model;
    struct backend_conf c;      /* numbers only; its strings are not kept */
    CURLM *multi;
    int epfd;                   /* the sockets curl watches, and evfd */
    int evfd;                   /* wake(), stop(), reconfigure(): there is news */
    atomic_bool wake_pending;   /* evfd written since the loop last drained it */
    double timer_due;           /* curl's timer (CURLMOPT_TIMERFUNCTION); < 0 none */
    struct curl_slist *hdrs;    /* Content-Type, Authorization (the key), no Expect */
    atomic_bool stopping;
    bool running;

    /* the run() thread's */
    double limit;               /* adaptive concurrency limit */
    int inflight;
    double paused_until;        /* no new sends before this (rate limit) */
    struct circuit cb;          /* the circuit breaker (circuit.h) */
    struct http_req *waiting;   /* pulled, waiting for their retry time (or the circuit) */
    int n_waiting;
    struct http_req *sending;   /* on the multi handle */
    CURL **pool;                /* idle easy handles, reused: creating one per request cost
                                   more than the request (and its connection cache lookup) */
    int n_pool;

    pthread_mutex_t mu;         /* guards stats and next_c */
    struct backend_stats stats;
    struct backend_conf next_c; /* a reload's numbers, taken by run() when has_next */
    bool has_next;
};

static void http_free(void *impl);

/* curl's socket callback: watch fd for what curl waits for. A socket is marked (socketp)
 * once added; a closed descriptor leaves epoll by itself, so ADD and MOD fall back on each
 * other when a number was reused. */
static int http_on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)e;
    struct http_backend *hb = userp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(hb->epfd, EPOLL_CTL_DEL, fd, NULL);
        return 0;
    }
    struct epoll_event ev = {.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u),
                             .data.fd = fd};
    int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(hb->epfd, op, fd, &ev) && (errno == ENOENT || errno == EEXIST))
        epoll_ctl(hb->epfd, errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
    if (!socketp)
        curl_multi_assign(hb->multi, fd, hb);
    return 0;
}

/* curl's timer callback: when curl_multi_socket_action(CURL_SOCKET_TIMEOUT) is due */
static int http_on_timer(CURLM *m, long ms, void *userp)
{
    (void)m;
    struct http_backend *hb = userp;
    hb->timer_due = ms < 0 ? -1 : clock_now() + (double)ms / 1000.0;
    return 0;
}

/* any thread: the loop has news (work, a reload, stop); one write per sleep */
static void http_wake_loop(struct http_backend *hb)
{
    if (!atomic_exchange(&hb->wake_pending, true)) {
        uint64_t one = 1;
        ssize_t w = write(hb->evfd, &one, sizeof(one));
        (void)w; /* full (never, at 2^64 - 1) or closed: nothing to wake */
    }
}

static int http_init(const struct backend_conf *c, void **out, char *err, size_t errlen)
{
    int rc = NS_ERR_NOMEM;
    *out = NULL;
    if (!c->url || strncmp(c->url, "http://", 7) != 0) {
        if (!c->url || strncmp(c->url, "https://", 8) != 0) {
            snprintf(err, errlen, "model '%s': backend openai-http needs url = http(s)://HOST[:PORT]/v1", c->name);
            return NS_ERR_INVALID;
        }
    }
    upstream_global_init();
    struct http_backend *hb = calloc(1, sizeof(*hb));
    if (!hb)
        goto fail;
    pthread_mutex_init(&hb->mu, NULL);
    hb->c = *c;
    hb->c.name = hb->c.kind = hb->c.url = hb->c.api_key = hb->c.upstream_model = NULL;
    if (hb->c.concurrency < 1)
        hb->c.concurrency = 1;
    if (hb->c.max_attempts < 1)
        hb->c.max_attempts = 1;
    hb->limit = hb->c.concurrency;
    circuit_init(&hb->cb, hb->c.circuit_cooldown_s);
    hb->stats.limit = hb->c.concurrency;
    hb->url_chat = upstream_url_join(c->url, "/chat/completions");
    hb->url_completions = upstream_url_join(c->url, "/completions");
    hb->name = strdup(c->name ? c->name : "default");
    hb->upstream_model = c->upstream_model ? strdup(c->upstream_model) : NULL;
    if (!hb->url_chat || !hb->url_completions || !hb->name || (c->upstream_model && !hb->upstream_model))
        goto fail;
    hb->epfd = hb->evfd = -1;
    hb->timer_due = -1;
    hb->multi = curl_multi_init();
    hb->pool = calloc((size_t)hb->c.concurrency, sizeof(*hb->pool));
    if (!hb->multi || !hb->pool)
        goto fail;
    hb->epfd = epoll_create1(EPOLL_CLOEXEC);
    hb->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = hb->evfd};
    if (hb->epfd < 0 || hb->evfd < 0 || epoll_ctl(hb->epfd, EPOLL_CTL_ADD, hb->evfd, &ev)) {
        snprintf(err, errlen, "model '%s': cannot make an event loop: %s", c->name, strerror(errno));
        http_free(hb);
        return NS_ERR_IO;
    }
    curl_multi_setopt(hb->multi, CURLMOPT_SOCKETFUNCTION, http_on_socket);
    curl_multi_setopt(hb->multi, CURLMOPT_SOCKETDATA, hb);
    curl_multi_setopt(hb->multi, CURLMOPT_TIMERFUNCTION, http_on_timer);
    curl_multi_setopt(hb->multi, CURLMOPT_TIMERDATA, hb);
    curl_multi_setopt(hb->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)hb->c.concurrency);
    curl_multi_setopt(hb->multi, CURLMOPT_MAXCONNECTS, (long)hb->c.concurrency);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (h)
        h = curl_slist_append(h, "Expect:");
    if (h && c->api_key && *c->api_key) {
        char auth[1024];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->api_key);
        h = curl_slist_append(h, auth);
        memset(auth, 0, sizeof(auth));
    }
    if (!h)
        goto fail;
    hb->hdrs = h;
    *out = hb;
    return NS_OK;
fail:
    snprintf(err, errlen, "out of memory");
    http_free(hb);
    return rc;
}

static void http_free(void *impl)
{
    struct http_backend *hb = impl;
    if (!hb)
        return;
    for (int i = 0; i < hb->n_pool; i++)
        curl_easy_cleanup(hb->pool[i]);
    free(hb->pool);
    if (hb->multi)
        curl_multi_cleanup(hb->multi);
    if (hb->epfd >= 0)
        close(hb->epfd);
    if (hb->evfd >= 0)
        close(hb->evfd);
    curl_slist_free_all(hb->hdrs);
    free(hb->url_chat);
    free(hb->url_completions);
    free(hb->name);
    free(hb->upstream_model);
    pthread_mutex_destroy(&hb->mu);
    free(hb);
}

/* ---- one try ------------------------------------------------------------------------ */

static size_t http_on_data(char *p, size_t sz, size_t n, void *ud)
{
    struct http_req *hr = ud;
    return buf_append(&hr->resp, p, sz * n) == NS_OK ? sz * n : 0;
}

static size_t http_on_header(char *p, size_t sz, size_t n, void *ud)
{
    struct http_req *hr = ud;
    size_t len = sz * n;
    char line[256];
    if (len >= sizeof(line))
        return len;
    memcpy(line, p, len);
    line[len] = '\0';
    char *colon = strchr(line, ':');
    if (!colon)
        return len;
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (strcasecmp(line, "retry-after") == 0) {
        /* seconds, fractions kept; an HTTP date is left to libcurl (http_on_done) */
        hr->retry_after = upstream_parse_duration(v);
    } else if (strcasecmp(line, "x-ratelimit-remaining-requests") == 0 ||
               strcasecmp(line, "x-ratelimit-remaining-tokens") == 0) {
        if (strtod(v, NULL) <= 0 && *v >= '0' && *v <= '9' && hr->rl_pause < 0)
            hr->rl_pause = 0; /* exhausted: the reset header says how long */
    } else if (strcasecmp(line, "x-ratelimit-reset-requests") == 0 ||
               strcasecmp(line, "x-ratelimit-reset-tokens") == 0) {
        double d = upstream_parse_duration(v);
        if (d >= 0 && hr->rl_pause >= 0 && d > hr->rl_pause)
            hr->rl_pause = d;
    }
    return len;
}

/* a new easy handle with the options every try shares (a pooled handle keeps them: a
 * curl_easy_reset and a dozen setopts per request were a tenth of curl's share) */
static CURL *http_easy_new(struct http_backend *hb)
{
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hb->hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_on_data);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_on_header);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    return e;
}

static int http_send(struct http_backend *hb, struct http_req *hr)
{
    CURL *e = hr->easy;
    if (!e && hb->n_pool)
        e = hr->easy = hb->pool[--hb->n_pool];
    if (!e && !(e = hr->easy = http_easy_new(hb)))
        return NS_ERR_NOMEM;
    buf_reset(&hr->resp);
    hr->retry_after = -1;
    hr->rl_pause = -1;
    hr->errbuf[0] = '\0';
    /* what differs between tries: the request, where its answer goes, the timeout (a
     * reload may change it) */
    curl_easy_setopt(e, CURLOPT_URL, hr->chat ? hb->url_chat : hb->url_completions);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, hr->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)hr->body_len);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, hr);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, hr);
    curl_easy_setopt(e, CURLOPT_PRIVATE, hr);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, hr->errbuf);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(hb->c.timeout_s * 1000));
    if (curl_multi_add_handle(hb->multi, e) != CURLM_OK)
        return NS_ERR_INTERNAL;
    hr->attempts++;
    hb->inflight++;
    hr->prev = NULL;
    hr->next = hb->sending;
    if (hb->sending)
        hb->sending->prev = hr;
    hb->sending = hr;
    pthread_mutex_lock(&hb->mu);
    hb->stats.attempts++;
    hb->stats.retries += hr->attempts > 1;
    hb->stats.inflight = hb->inflight;
    pthread_mutex_unlock(&hb->mu);
    return NS_OK;
}

/* off the multi handle and the sending list */
static void http_unsend(struct http_backend *hb, struct http_req *hr)
{
    curl_multi_remove_handle(hb->multi, hr->easy);
    if (hr->prev)
        hr->prev->next = hr->next;
    else
        hb->sending = hr->next;
    if (hr->next)
        hr->next->prev = hr->prev;
    hr->next = hr->prev = NULL;
    hb->inflight--;
}

static void http_req_free(struct http_backend *hb, struct http_req *hr)
{
    if (hr->easy && hb->n_pool < hb->c.concurrency)
        hb->pool[hb->n_pool++] = hr->easy;
    else if (hr->easy)
        curl_easy_cleanup(hr->easy);
    free(hr->body);
    buf_release(&hr->resp);
    free(hr);
}

/* the end of a request: exactly one done() */
static void http_finish(struct http_backend *hb, const struct engine_source *src, struct http_req *hr,
                        struct engine_result *res)
{
    res->t_admit = hr->t_admit;
    res->t_end = clock_now();
    if (res->t_first == 0)
        res->t_first = res->t_end;
    res->attempts = hr->attempts;
    res->stop_index = -1;
    if (!res->text)
        res->text = "";
    if (res->status != NS_OK) {
        pthread_mutex_lock(&hb->mu);
        hb->stats.failed++;
        pthread_mutex_unlock(&hb->mu);
    }
    src->done(src->ud, hr->req, res);
    http_req_free(hb, hr);
}

static void http_fail(struct http_backend *hb, const struct engine_source *src, struct http_req *hr, int status,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void http_fail(struct http_backend *hb, const struct engine_source *src, struct http_req *hr, int status,
                      const char *fmt, ...)
{
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    res.status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res.message, sizeof(res.message), fmt, ap);
    va_end(ap);
    http_finish(hb, src, hr, &res);
}

static bool http_retryable_curl(CURLcode cc)
{
    return cc != CURLE_URL_MALFORMAT && cc != CURLE_UNSUPPORTED_PROTOCOL && cc != CURLE_OUT_OF_MEMORY &&
           cc != CURLE_BAD_FUNCTION_ARGUMENT && cc != CURLE_WRITE_ERROR;
}

/* a success: the text, finish reason and usage the scheduler accounts with, and the
 * whole answer for the client */
static void http_succeed(struct http_backend *hb, const struct engine_source *src, struct http_req *hr, cJSON *o)
{
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    upstream_parse_success(o, hr->chat, &res);
    char *renamed = NULL;
    if (hb->upstream_model) {
        /* the client asked for our name of the model, and gets it back */
        const cJSON *cm = hr->req->body ? cJSON_GetObjectItemCaseSensitive(hr->req->body, "model") : NULL;
        cJSON_ReplaceItemInObjectCaseSensitive(o, "model",
                                               cJSON_CreateString(cJSON_IsString(cm) ? cm->valuestring : hb->name));
        renamed = cJSON_PrintUnformatted(o);
    }
    res.raw_body = renamed ? renamed : hr->resp.p;
    res.raw_len = renamed ? strlen(renamed) : hr->resp.len;
    res.t_first = clock_now();
    if (src->token && res.text_len) {
        struct engine_delta d = {.text = res.text, .len = res.text_len, .cached_tokens = -1};
        src->token(src->ud, hr->req, &d);
    }
    http_finish(hb, src, hr, &res);
    free(renamed);
}

/* a final answer other than success, passed on as the upstream gave it */
static void http_reject(struct http_backend *hb, const struct engine_source *src, struct http_req *hr, long code,
                        cJSON *o)
{
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    res.status = upstream_status_of(code);
    res.http_status = (int)code;
    upstream_error_text(o, hr->resp.p, hr->resp.len, res.message, sizeof(res.message));
    if (o) {
        res.raw_body = hr->resp.p;
        res.raw_len = hr->resp.len;
    }
    http_finish(hb, src, hr, &res);
}

static void http_set_stats_circuit(struct http_backend *hb)
{
    pthread_mutex_lock(&hb->mu);
    hb->stats.circuit = hb->cb.state;
    hb->stats.limit = (int)hb->limit;
    pthread_mutex_unlock(&hb->mu);
}

static void http_circuit_failure(struct http_backend *hb, double now)
{
    if (circuit_failure(&hb->cb, now, hb->c.circuit_failures)) {
        log_event(LOG_WARN, hb->name, NULL, "upstream of model '%s': circuit open for %.0f s after %d failed tries",
                  hb->name, hb->cb.cooldown, hb->cb.consec_fail);
        http_set_stats_circuit(hb);
    }
}

static void http_circuit_success(struct http_backend *hb)
{
    if (circuit_success(&hb->cb, hb->c.circuit_cooldown_s)) {
        log_event(LOG_INFO, hb->name, NULL, "upstream of model '%s': circuit closed", hb->name);
        http_set_stats_circuit(hb);
    }
}

/* park hr until its next try, or end it when its tries are spent */
static void http_retry_later(struct http_backend *hb, const struct engine_source *src, struct http_req *hr,
                             double now, int final_status)
{
    if (hb->c.shed_when_open && hb->cb.state == BACKEND_CIRCUIT_OPEN) {
        /* the model has a fallback (sched.h: fail-over): what waits here for the circuit
         * ends now, as unavailable, and the scheduler gives it to the fallback */
        hr->next = hb->waiting;
        hb->waiting = NULL;
        hb->n_waiting = 0;
        while (hr) {
            struct http_req *next = hr->next;
            http_fail(hb, src, hr, NS_ERR_UNAVAILABLE, "the upstream of model '%s' is down (circuit open; last: %s)",
                      hb->name, hr->last_error[0] ? hr->last_error : "no answer");
            hr = next;
        }
        return;
    }
    if (hr->attempts >= hb->c.max_attempts) {
        http_fail(hb, src, hr, final_status, "the upstream of model '%s' failed %d time%s; last: %s", hb->name,
                  hr->attempts, hr->attempts == 1 ? "" : "s", hr->last_error);
        return;
    }
    double wait;
    if (hr->retry_after >= 0) {
        wait = fmin(hr->retry_after, 3600);
    } else {
        wait = backoff_full_jitter(hr->attempts, hb->c.retry_base_s, hb->c.retry_max_s, upstream_rand01());
    }
    hr->due = now + wait;
    hr->next = hb->waiting;
    hb->waiting = hr;
    hb->n_waiting++;
}

static void http_on_done(struct http_backend *hb, const struct engine_source *src, CURL *e, CURLcode cc)
{
    struct http_req *hr = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&hr);
    http_unsend(hb, hr);
    double now = clock_now();
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_off_t ra = -1;
    /* Retry-After as an HTTP date (or seconds the header callback could not read):
     * libcurl parses it (CURLINFO_RETRY_AFTER: seconds from now, 0 when absent) */
    if (hr->retry_after < 0 && curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
        hr->retry_after = (double)ra;
    pthread_mutex_lock(&hb->mu);
    hb->stats.inflight = hb->inflight;
    hb->stats.rate_limited += code == 429;
    pthread_mutex_unlock(&hb->mu);
    if (cc != CURLE_OK) {
        snprintf(hr->last_error, sizeof(hr->last_error), "%s", hr->errbuf[0] ? hr->errbuf : curl_easy_strerror(cc));
        if (!http_retryable_curl(cc)) {
            http_fail(hb, src, hr, NS_ERR_UPSTREAM, "cannot reach the upstream of model '%s': %s", hb->name,
                      hr->last_error);
            return;
        }
        http_circuit_failure(hb, now);
        http_retry_later(hb, src, hr, now, NS_ERR_UPSTREAM);
        return;
    }
    cJSON *o = cJSON_ParseWithLength(hr->resp.p ? hr->resp.p : "", hr->resp.len);
    if (hr->rl_pause > 0)
        hb->paused_until = fmax(hb->paused_until, now + fmin(hr->rl_pause, 3600));
    if (code == 200 && cJSON_IsObject(o)) {
        http_circuit_success(hb);
        if (hb->limit < hb->c.concurrency) {
            hb->limit = fmin(hb->c.concurrency, hb->limit + 1.0 / hb->limit);
            http_set_stats_circuit(hb);
        }
        http_succeed(hb, src, hr, o);
    } else if (code == 200 || upstream_retryable_code(code)) {
        if (code == 200)
            snprintf(hr->last_error, sizeof(hr->last_error), "HTTP 200 with a body that is not a JSON object");
        else {
            char m[256];
            upstream_error_text(o, hr->resp.p, hr->resp.len, m, sizeof(m));
            snprintf(hr->last_error, sizeof(hr->last_error), "HTTP %ld: %s", code, m);
        }
        if (code == 429) {
            hb->limit = fmax(1, hb->limit / 2);
            if (hr->retry_after > 0)
                hb->paused_until = fmax(hb->paused_until, now + fmin(hr->retry_after, 3600));
            http_set_stats_circuit(hb);
        } else {
            http_circuit_failure(hb, now);
        }
        http_retry_later(hb, src, hr, now, code == 429 ? NS_ERR_RATE_LIMIT : NS_ERR_UPSTREAM);
    } else {
        http_circuit_success(hb); /* it answered: it is up */
        http_reject(hb, src, hr, code, o);
    }
    cJSON_Delete(o);
}

/* a pulled request: its body, then its first try (or a wait for the circuit) */
static void http_admit(struct http_backend *hb, const struct engine_source *src, struct engine_request *r,
                       bool priority, double now)
{
    struct http_req *hr = calloc(1, sizeof(*hr));
    struct engine_result res;
    if (!hr) {
        memset(&res, 0, sizeof(res));
        res.status = NS_ERR_NOMEM;
        res.text = "";
        snprintf(res.message, sizeof(res.message), "out of memory");
        src->done(src->ud, r, &res);
        return;
    }
    hr->req = r;
    hr->hb = hb;
    hr->priority = priority;
    hr->t_admit = now;
    buf_init(&hr->resp, HTTP_MAX_RESPONSE);
    cJSON *body = r->body ? upstream_body_forward(r->body, hb->upstream_model, &hr->chat)
                          : upstream_body_build(r, hb->upstream_model ? hb->upstream_model : hb->name, &hr->chat);
    hr->body = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    if (!hr->body) {
        http_fail(hb, src, hr, NS_ERR_NOMEM, "out of memory");
        return;
    }
    hr->body_len = strlen(hr->body);
    if (priority && hb->cb.state == BACKEND_CIRCUIT_OPEN) {
        http_fail(hb, src, hr, NS_ERR_UNAVAILABLE,
                  "the upstream of model '%s' is failing; nightshift paused it (circuit open) for %.0f more seconds",
                  hb->name, fmax(1, hb->cb.open_until - now));
        return;
    }
    if (http_send(hb, hr) != NS_OK)
        http_fail(hb, src, hr, NS_ERR_INTERNAL, "cannot start an upstream request");
}

/* may another try start now? */
static bool http_may_send(struct http_backend *hb, double now)
{
    if (hb->cb.state == BACKEND_CIRCUIT_OPEN) {
        if (!circuit_tick(&hb->cb, now))
            return false;
        http_set_stats_circuit(hb);
    }
    if (hb->cb.state == BACKEND_CIRCUIT_HALF_OPEN)
        return hb->inflight == 0; /* one probe */
    return now >= hb->paused_until && hb->inflight < (int)hb->limit;
}

static void http_cancel_all(struct http_backend *hb, const struct engine_source *src)
{
    while (hb->sending) {
        struct http_req *hr = hb->sending;
        http_unsend(hb, hr);
        http_fail(hb, src, hr, NS_ERR_CANCELLED, "the server is shutting down");
    }
    while (hb->waiting) {
        struct http_req *hr = hb->waiting;
        hb->waiting = hr->next;
        http_fail(hb, src, hr, NS_ERR_CANCELLED, "the server is shutting down");
    }
    hb->n_waiting = 0;
}

/* a reloaded config's limits (run thread): the pool of easy handles follows concurrency */
static void http_take_reload(struct http_backend *hb)
{
    pthread_mutex_lock(&hb->mu);
    bool has = hb->has_next;
    struct backend_conf c = hb->next_c;
    hb->has_next = false;
    pthread_mutex_unlock(&hb->mu);
    if (!has)
        return;
    if (c.concurrency != hb->c.concurrency) {
        while (hb->n_pool > c.concurrency)
            curl_easy_cleanup(hb->pool[--hb->n_pool]);
        CURL **pool = realloc(hb->pool, (size_t)c.concurrency * sizeof(*pool));
        if (!pool)
            return; /* keep the old limits */
        hb->pool = pool;
        curl_multi_setopt(hb->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c.concurrency);
        curl_multi_setopt(hb->multi, CURLMOPT_MAXCONNECTS, (long)c.concurrency);
        hb->limit = c.concurrency; /* a new ceiling resets the adaptive limit */
    }
    hb->c.concurrency = c.concurrency;
    hb->c.max_attempts = c.max_attempts;
    hb->c.timeout_s = c.timeout_s;
    hb->c.retry_base_s = c.retry_base_s;
    hb->c.retry_max_s = c.retry_max_s;
    hb->c.circuit_failures = c.circuit_failures;
    hb->c.circuit_cooldown_s = c.circuit_cooldown_s;
    http_set_stats_circuit(hb);
}

static void http_reconfigure(void *impl, const struct backend_conf *c)
{
    struct http_backend *hb = impl;
    pthread_mutex_lock(&hb->mu);
    hb->next_c = *c;
    hb->next_c.name = hb->next_c.kind = hb->next_c.url = hb->next_c.api_key = hb->next_c.upstream_model = NULL;
    hb->has_next = true;
    pthread_mutex_unlock(&hb->mu);
    http_wake_loop(hb);
}

static int http_run(void *impl, const struct engine_source *src)
{
    struct http_backend *hb = impl;
    bool exhausted = false;
    struct engine_request *got[HTTP_MAX_PULL];
    hb->running = true;
    while (!atomic_load(&hb->stopping)) {
        http_take_reload(hb);
        double now = clock_now();
        if (circuit_tick(&hb->cb, now)) /* the next try is the probe */
            http_set_stats_circuit(hb);
        /* 1. retries that are due go first: they are the oldest work */
        struct http_req **pp = &hb->waiting;
        while (*pp && http_may_send(hb, now)) {
            struct http_req *hr = *pp;
            if (hr->due > now) {
                pp = &hr->next;
                continue;
            }
            *pp = hr->next;
            hb->n_waiting--;
            if (http_send(hb, hr) != NS_OK)
                http_fail(hb, src, hr, NS_ERR_INTERNAL, "cannot start an upstream request");
        }
        /* 2. real-time requests: sent, or failed at once while the circuit is open */
        if (src->pull_priority) {
            int room = hb->cb.state == BACKEND_CIRCUIT_OPEN ? HTTP_MAX_PULL
                       : http_may_send(hb, now)            ? (int)hb->limit - hb->inflight
                                                           : 0;
            if (hb->cb.state == BACKEND_CIRCUIT_HALF_OPEN)
                room = hb->inflight == 0;
            if (room > HTTP_MAX_PULL)
                room = HTTP_MAX_PULL;
            int n = room > 0 ? src->pull_priority(src->ud, got, room) : 0;
            for (int i = 0; i < n; i++)
                http_admit(hb, src, got[i], true, now);
        }
        /* 3. batch lines */
        if (!exhausted && http_may_send(hb, now)) {
            int room = (int)hb->limit - hb->inflight;
            if (hb->cb.state == BACKEND_CIRCUIT_HALF_OPEN)
                room = 1;
            if (room > HTTP_MAX_PULL)
                room = HTTP_MAX_PULL;
            int n = room > 0 ? src->pull(src->ud, got, room) : 0;
            if (n < 0)
                exhausted = true;
            for (int i = 0; i < n; i++)
                http_admit(hb, src, got[i], false, now);
        }
        if (exhausted && hb->inflight == 0 && !hb->waiting)
            break;
        /* 4. transfers: curl's timer, when due (a new handle starts this way), then what
         * finished */
        int running = 0;
        if (hb->timer_due >= 0 && clock_now() >= hb->timer_due) {
            hb->timer_due = -1;
            curl_multi_socket_action(hb->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        CURLMsg *msg;
        int left;
        bool finished = false;
        while ((msg = curl_multi_info_read(hb->multi, &left)))
            if (msg->msg == CURLMSG_DONE) {
                http_on_done(hb, src, msg->easy_handle, msg->data.result);
                finished = true;
            }
        /* a finished transfer freed a slot: refill it now, not at the next transfer event
         * (which left a fixed-latency upstream at ~60% of the concurrency) */
        if (finished)
            continue;
        /* 5. sleep until a socket moves, work arrives (wake), or a timer is due */
        now = clock_now();
        double gate = now; /* the earliest a try may start */
        if (hb->cb.state == BACKEND_CIRCUIT_OPEN)
            gate = hb->cb.open_until;
        if (hb->paused_until > gate)
            gate = hb->paused_until;
        bool slot = hb->cb.state == BACKEND_CIRCUIT_HALF_OPEN ? hb->inflight == 0 : hb->inflight < (int)hb->limit;
        double until = now + 1.0;
        if (slot)
            for (struct http_req *hr = hb->waiting; hr; hr = hr->next)
                until = fmin(until, fmax(hr->due, gate));
        if (hb->timer_due >= 0)
            until = fmin(until, hb->timer_due);
        int ms = until > now ? (int)ceil((until - now) * 1000) : 0;
        if (atomic_load(&hb->stopping))
            break;
        struct epoll_event evs[64];
        int n = epoll_wait(hb->epfd, evs, 64, ms);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.fd == hb->evfd) {
                uint64_t v;
                ssize_t r = read(hb->evfd, &v, sizeof(v));
                (void)r;
                atomic_store(&hb->wake_pending, false); /* before the next pull: no news lost */
                continue;
            }
            int flags = ((evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
                        ((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                        ((evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(hb->multi, evs[i].data.fd, flags, &running);
        }
    }
    http_cancel_all(hb, src);
    hb->running = false;
    return NS_OK;
}

static void http_stop(void *impl)
{
    struct http_backend *hb = impl;
    atomic_store(&hb->stopping, true);
    http_wake_loop(hb);
}

static void http_wake(void *impl)
{
    struct http_backend *hb = impl;
    http_wake_loop(hb);
}

static void http_get_info(void *impl, struct backend_info *out)
{
    struct http_backend *hb = impl;
    memset(out, 0, sizeof(*out));
    snprintf(out->kind, sizeof(out->kind), "openai-http");
    snprintf(out->desc, sizeof(out->desc), "%s", hb->url_chat);
}

static void http_get_stats(void *impl, struct backend_stats *out)
{
    struct http_backend *hb = impl;
    pthread_mutex_lock(&hb->mu);
    *out = hb->stats;
    pthread_mutex_unlock(&hb->mu);
}

const struct backend_ops backend_http_ops = {
    .kind = "openai-http",
    .forward = true,
    .auth_header = "Authorization: Bearer %s",
    .init = http_init,
    .free = http_free,
    .run = http_run,
    .stop = http_stop,
    .wake = http_wake,
    .count_tokens = NULL,
    .get_info = http_get_info,
    .get_stats = http_get_stats,
    .engine = NULL,
    .reconfigure = http_reconfigure,
};
