/*
 * webhook.h — batch events POSTed to endpoints, the way OpenAI ships its webhooks and
 * signed the Standard Webhooks way.
 *
 * When a batch ends, one event per interested endpoint (and one for the batch's own
 * metadata.webhook_url) is written to the store; a delivery thread POSTs each due one:
 *   body     {"id":"evt_...","object":"event","created_at":T,"type":"batch.completed",
 *             "data":{"id":"batch_..."}}
 *   headers  webhook-id: evt_..., webhook-timestamp: T,
 *            webhook-signature: v1,base64(HMAC-SHA256(key, "evt_....T.body"))
 *            where key is the base64 after "whsec_" in the endpoint's secret.
 * A 2xx answer delivers it; anything else (or no answer in 10 s) is tried again after
 * retry_base * 2^(tries-1) seconds (jittered, at most an hour) until max_attempts, then it
 * is marked failed. Deliveries are durable (store), so a restart resumes them: at least
 * once, never silently dropped; state, tries and the last error are visible.
 *
 * THREADS: webhook_batch_ended() from the batch manager's thread; one delivery thread.
 * OWNERSHIP: webhook_init() copies the endpoints (secrets included; wiped on free).
 */
#ifndef NS_SCHED_WEBHOOK_H
#define NS_SCHED_WEBHOOK_H

#include "../store/store.h"

#include <stdbool.h>

enum {
    WEBHOOK_EV_COMPLETED = 1,
    WEBHOOK_EV_FAILED = 2,
    WEBHOOK_EV_CANCELLED = 4,
    WEBHOOK_EV_EXPIRED = 8,
    WEBHOOK_EV_ALL = 15,
};

struct webhook_endpoint {
    const char *name;       /* [webhook NAME] */
    const char *url;
    const char *secret;     /* "whsec_<base64>" */
    unsigned events;        /* WEBHOOK_EV_* mask */
    int max_attempts;       /* default 10 */
    double retry_base_s;    /* default 5 */
};

struct webhook;

/* the event type's bit ("batch.completed" -> WEBHOOK_EV_COMPLETED), 0 when unknown */
unsigned webhook_event_bit(const char *type);
/* is s a usable secret ("whsec_" + base64 of at least 16 bytes)? */
bool webhook_secret_ok(const char *s);

int webhook_init(struct store *st, const struct webhook_endpoint *eps, int n,
                 struct webhook **out);
int webhook_start(struct webhook *w);
void webhook_free(struct webhook *w);
/* can a batch name its own webhook_url (signed with the first endpoint's secret)? */
bool webhook_enabled(const struct webhook *w);
/* a batch reached a terminal status: queue its events */
void webhook_batch_ended(struct webhook *w, const struct store_batch *b);

/* Is url one a batch's metadata.webhook_url may name? An absolute http:// or https:// URL
 * with a host, as libcurl parses it (curl_url: the same parser that will send to it);
 * false with why filled otherwise. */
bool webhook_url_ok(const char *url, char *why, size_t n);

#endif
