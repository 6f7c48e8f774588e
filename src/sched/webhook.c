/*
 * webhook.c — see webhook.h.
 */
#include "webhook.h"

#include "../proto/oai.h"
#include "../backend/upstream.h"
#include "../util/base64.h"
#include "../util/sha256.h"
#include "../util/status.h"
#include "../util/log.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct webhook_ep {
    char *name, *url;
    unsigned char key[256];
    size_t key_len;
    unsigned events;
    int max_attempts;
    double retry_base_s;
};

struct webhook {
    struct store *st;
    struct webhook_ep *eps;
    int n;
    pthread_t thread;
    bool started, stopping, kicked;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static const struct {
    const char *type;
    unsigned bit;
    enum store_batch_status status;
} webhook_types[] = {
    {"batch.completed", WEBHOOK_EV_COMPLETED, SB_COMPLETED},
    {"batch.failed", WEBHOOK_EV_FAILED, SB_FAILED},
    {"batch.cancelled", WEBHOOK_EV_CANCELLED, SB_CANCELLED},
    {"batch.expired", WEBHOOK_EV_EXPIRED, SB_EXPIRED},
};

unsigned webhook_event_bit(const char *type)
{
    for (size_t i = 0; i < sizeof(webhook_types) / sizeof(webhook_types[0]); i++)
        if (strcmp(webhook_types[i].type, type) == 0)
            return webhook_types[i].bit;
    return 0;
}

static size_t webhook_key(const char *secret, unsigned char *out, size_t cap)
{
    if (strncmp(secret, "whsec_", 6) != 0 || strlen(secret + 6) * 3 / 4 > cap)
        return (size_t)-1;
    return base64_decode(secret + 6, out);
}

bool webhook_secret_ok(const char *s)
{
    unsigned char k[256];
    size_t n = webhook_key(s, k, sizeof(k));
    memset(k, 0, sizeof(k));
    return n != (size_t)-1 && n >= 16;
}

int webhook_init(struct store *st, const struct webhook_endpoint *eps, int n,
                 struct webhook **out)
{
    *out = NULL;
    struct webhook *w = calloc(1, sizeof(*w));
    if (!w || !(w->eps = calloc((size_t)(n > 0 ? n : 1), sizeof(*w->eps)))) {
        free(w);
        return NS_ERR_NOMEM;
    }
    w->st = st;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    for (int i = 0; i < n; i++) {
        struct webhook_ep *e = &w->eps[w->n++];
        e->name = strdup(eps[i].name);
        e->url = strdup(eps[i].url);
        e->key_len = webhook_key(eps[i].secret, e->key, sizeof(e->key));
        e->events = eps[i].events ? eps[i].events : WEBHOOK_EV_ALL;
        e->max_attempts = eps[i].max_attempts > 0 ? eps[i].max_attempts : 10;
        e->retry_base_s = eps[i].retry_base_s > 0 ? eps[i].retry_base_s : 5;
        if (!e->name || !e->url || e->key_len == (size_t)-1) {
            webhook_free(w);
            return e->key_len == (size_t)-1 ? NS_ERR_INVALID : NS_ERR_NOMEM;
        }
    }
    upstream_global_init();
    *out = w;
    return NS_OK;
}

bool webhook_enabled(const struct webhook *w) { return w && w->n > 0; }

static void webhook_kick(struct webhook *w)
{
    pthread_mutex_lock(&w->mu);
    w->kicked = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void webhook_queue(struct webhook *w, const struct store_batch *b, const char *type, const char *endpoint,
                          const char *url)
{
    struct store_webhook ev;
    memset(&ev, 0, sizeof(ev));
    oai_make_id(ev.id, sizeof(ev.id), "evt_");
    snprintf(ev.batch_id, sizeof(ev.batch_id), "%s", b->id);
    snprintf(ev.type, sizeof(ev.type), "%s", type);
    snprintf(ev.endpoint, sizeof(ev.endpoint), "%s", endpoint);
    ev.created_at = ev.next_at = time(NULL);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", ev.id);
    cJSON_AddStringToObject(o, "object", "event");
    cJSON_AddNumberToObject(o, "created_at", (double)ev.created_at);
    cJSON_AddStringToObject(o, "type", type);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "data"), "id", b->id);
    ev.body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    ev.url = (char *)url;
    if (!ev.body || store_webhook_insert(w->st, &ev))
        log_event(LOG_ERROR, b->model, b->id, "cannot queue webhook %s of batch %s for %s (store error)", type, b->id, url);
    free(ev.body);
}

void webhook_batch_ended(struct webhook *w, const struct store_batch *b)
{
    if (!webhook_enabled(w))
        return;
    const char *type = NULL;
    unsigned bit = 0;
    for (size_t i = 0; i < sizeof(webhook_types) / sizeof(webhook_types[0]); i++)
        if (webhook_types[i].status == b->status) {
            type = webhook_types[i].type;
            bit = webhook_types[i].bit;
        }
    if (!type)
        return;
    for (int i = 0; i < w->n; i++)
        if (w->eps[i].events & bit)
            webhook_queue(w, b, type, w->eps[i].name, w->eps[i].url);
    /* the batch's own endpoint (metadata.webhook_url), signed with the first secret */
    cJSON *md = b->metadata ? cJSON_Parse(b->metadata) : NULL;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(md, "webhook_url");
    if (cJSON_IsString(u))
        webhook_queue(w, b, type, w->eps[0].name, u->valuestring);
    cJSON_Delete(md);
    webhook_kick(w);
}

static size_t webhook_discard(char *p, size_t sz, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return sz * n;
}

/* one try; 0 when the endpoint answered 2xx */
static int webhook_post(const struct webhook_ep *e, struct store_webhook *ev)
{
    char ts[32], sig[64], hdr[256];
    unsigned char mac[32];
    snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
    size_t len = strlen(ev->id) + strlen(ts) + strlen(ev->body) + 3;
    char *signed_content = malloc(len);
    if (!signed_content)
        return NS_ERR_NOMEM;
    snprintf(signed_content, len, "%s.%s.%s", ev->id, ts, ev->body);
    sha256_hmac(e->key, e->key_len, signed_content, strlen(signed_content), mac);
    free(signed_content);
    base64_encode(mac, sizeof(mac), sig);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    int rc = NS_ERR_NOMEM;
    char eb[CURL_ERROR_SIZE] = "";
    if (!c)
        return rc;
    h = curl_slist_append(h, "Content-Type: application/json");
    snprintf(hdr, sizeof(hdr), "webhook-id: %s", ev->id);
    h = curl_slist_append(h, hdr);
    snprintf(hdr, sizeof(hdr), "webhook-timestamp: %s", ts);
    h = curl_slist_append(h, hdr);
    snprintf(hdr, sizeof(hdr), "webhook-signature: v1,%s", sig);
    h = curl_slist_append(h, hdr);
    h = curl_slist_append(h, "User-Agent: nightshift-webhooks");
    curl_easy_setopt(c, CURLOPT_URL, ev->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, ev->body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, webhook_discard);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, eb);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode cc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    ev->last_status = (int)code;
    if (cc != CURLE_OK) {
        snprintf(ev->last_error, sizeof(ev->last_error), "%.190s", eb[0] ? eb : curl_easy_strerror(cc));
        rc = NS_ERR_UPSTREAM;
    } else if (code < 200 || code > 299) {
        snprintf(ev->last_error, sizeof(ev->last_error), "the endpoint answered HTTP %ld", code);
        rc = NS_ERR_UPSTREAM;
    } else {
        ev->last_error[0] = '\0';
        rc = NS_OK;
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

static void webhook_deliver_due(struct webhook *w)
{
    struct store_webhook *due = NULL;
    int n = 0;
    if (store_webhooks_due(w->st, time(NULL), 16, &due, &n))
        return;
    for (int i = 0; i < n; i++) {
        struct store_webhook *ev = &due[i];
        const struct webhook_ep *e = NULL;
        for (int k = 0; k < w->n && !e; k++)
            if (strcmp(w->eps[k].name, ev->endpoint) == 0)
                e = &w->eps[k];
        ev->attempts++;
        if (!e) {
            ev->state = SW_FAILED;
            snprintf(ev->last_error, sizeof(ev->last_error), "the endpoint [webhook %s] is no longer configured",
                     ev->endpoint);
        } else if (webhook_post(e, ev) == NS_OK) {
            ev->state = SW_DELIVERED;
            ev->delivered_at = time(NULL);
        } else if (ev->attempts >= e->max_attempts) {
            ev->state = SW_FAILED;
            log_event(LOG_WARN, NULL, ev->batch_id, "webhook %s (%s of batch %s) to %s failed %d times; giving up: %s", ev->id,
                    ev->type, ev->batch_id, ev->url, ev->attempts, ev->last_error);
        } else {
            double wait = fmin(3600, e->retry_base_s * pow(2, ev->attempts - 1));
            ev->next_at = time(NULL) + (int64_t)ceil(wait * (0.5 + 0.5 * ((double)rand() / RAND_MAX)));
        }
        if (store_webhook_update(w->st, ev))
            log_event(LOG_ERROR, NULL, ev->batch_id, "cannot record webhook %s (store error)", ev->id);
        store_webhook_release(ev);
    }
    free(due);
}

static void *webhook_thread(void *arg)
{
    struct webhook *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stopping) {
        w->kicked = false;
        pthread_mutex_unlock(&w->mu);
        webhook_deliver_due(w);
        pthread_mutex_lock(&w->mu);
        if (w->kicked || w->stopping)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int webhook_start(struct webhook *w)
{
    if (!webhook_enabled(w))
        return NS_OK;
    if (pthread_create(&w->thread, NULL, webhook_thread, w))
        return NS_ERR_INTERNAL;
    w->started = true;
    return NS_OK;
}

void webhook_free(struct webhook *w)
{
    if (!w)
        return;
    if (w->started) {
        pthread_mutex_lock(&w->mu);
        w->stopping = true;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    for (int i = 0; i < w->n; i++) {
        memset(w->eps[i].key, 0, sizeof(w->eps[i].key));
        free(w->eps[i].name);
        free(w->eps[i].url);
    }
    free(w->eps);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

bool webhook_url_ok(const char *url, char *why, size_t n)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK;
    if (!ok)
        snprintf(why, n, "expected an http:// or https:// URL, not '%.100s'", url);
    else if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        snprintf(why, n, "expected an http:// or https:// URL, not a %.20s:// one", scheme);
        ok = false;
    } else if (!*host) {
        snprintf(why, n, "expected an http:// or https:// URL with a host");
        ok = false;
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}
