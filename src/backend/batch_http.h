/*
 * batch_http.h — one blocking HTTP call of a provider-batch backend (openai-batch,
 * anthropic-batch in backend_batch.c; gemini-batch in gemini_api.c), retried on network
 * errors and retryable codes (upstream_retryable_code) with full-jitter exponential backoff,
 * a 429/503's Retry-After optionally waited out instead (at most 10 minutes), and no more
 * tries once the caller's stop check says so. What differs between the callers is a
 * parameter: headers, the retry numbers, how a try is counted and whether it is stopping.
 *
 * THREADS: on the caller's thread (the backend's run thread), over the caller's easy
 * handle; nothing here is shared. The `tried` hook runs on that thread after every try.
 * OWNERSHIP: every pointer in batch_http_req is borrowed for the call.
 * ERRORS: NS_OK with *code the final HTTP status (whatever it is: the caller reads it), or
 * NS_ERR_UPSTREAM (a network error, or retries spent; err says the last one), NS_ERR_NOMEM.
 */
#ifndef NS_BACKEND_BATCH_HTTP_H
#define NS_BACKEND_BATCH_HTTP_H

#include "../util/buf.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

struct batch_http_retry {
    int max_attempts;          /* tries per call, the first included */
    double timeout_s;          /* per try */
    double retry_base_s, retry_max_s;
    bool retry_after;          /* a 429/503's Retry-After replaces the backoff */
};

struct batch_http_req {
    const char *method, *url;
    struct curl_slist *hdrs;   /* sent as they are (they hold the key: never logged) */
    const char *const *extra;  /* NULL-ended headers sent after hdrs, or NULL */
    const char *body;          /* or NULL */
    size_t body_len;
    /* a multipart form built anew for each try (libcurl does not send a form twice after
     * curl_easy_reset), or NULL; the form's NULL is out of memory */
    curl_mime *(*form)(CURL *e, const void *ud);
    const void *form_ud;
    /* libcurl's header callback and its data, or NULL; every response's status line
     * comes through it first (a retry's too) */
    size_t (*on_header)(char *p, size_t sz, size_t n, void *ud);
    void *header_ud;
    /* after each try: count it (attempt is 1-based; code 0 for a network error); returns
     * whether the backend is stopping (then no more tries) */
    bool (*tried)(void *ud, int attempt, long code);
    void *tried_ud;
};

/* the call; out (reset before each try) holds the final answer's body */
int batch_http_call(CURL *e, const struct batch_http_retry *r, const struct batch_http_req *q, struct buf *out,
                    long *code, char *err, size_t errlen);
/* the call, whose 200 answer must be a JSON object (*out, new); another final code is
 * upstream_status_of(code) with err naming the call and the upstream's message. An empty
 * 200 body is {} when empty_ok, else an error. max: the answer's size limit. */
int batch_http_json(CURL *e, const struct batch_http_retry *r, const struct batch_http_req *q, size_t max,
                    bool empty_ok, cJSON **out, char *err, size_t errlen);

#endif
