/*
 * batch_http.c — the provider-batch backends' HTTP call with retries (batch_http.h).
 */
#include "batch_http.h"
#include "upstream.h"

#include "../util/status.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static size_t bh_on_data(char *p, size_t sz, size_t n, void *ud)
{
    return buf_append(ud, p, sz * n) == NS_OK ? sz * n : 0;
}

int batch_http_call(CURL *e, const struct batch_http_retry *r, const struct batch_http_req *q, struct buf *out,
                    long *code, char *err, size_t errlen)
{
    char eb[CURL_ERROR_SIZE];
    for (int attempt = 1;; attempt++) {
        buf_reset(out);
        curl_easy_reset(e);
        eb[0] = '\0';
        curl_mime *mime = NULL;
        if (q->form && !(mime = q->form(e, q->form_ud))) {
            snprintf(err, errlen, "%s %s: out of memory", q->method, q->url);
            return NS_ERR_NOMEM;
        }
        struct curl_slist *own = NULL; /* hdrs + extra, for this try */
        if (q->extra) {
            for (struct curl_slist *k = q->hdrs; k; k = k->next)
                own = curl_slist_append(own, k->data);
            for (int i = 0; q->extra[i]; i++)
                own = curl_slist_append(own, q->extra[i]);
        }
        curl_easy_setopt(e, CURLOPT_URL, q->url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->extra ? own : q->hdrs);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, q->method);
        if (q->body) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body);
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
        } else if (mime) {
            curl_easy_setopt(e, CURLOPT_MIMEPOST, mime);
        }
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, bh_on_data);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
        if (q->on_header) {
            curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, q->on_header);
            curl_easy_setopt(e, CURLOPT_HEADERDATA, q->header_ud);
        }
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, eb);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(r->timeout_s * 1000));
        curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        CURLcode cc = curl_easy_perform(e);
        curl_slist_free_all(own);
        *code = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, code);
        curl_off_t retry_after = 0; /* Retry-After in seconds (or its HTTP date), 0 when none */
        if (r->retry_after && cc == CURLE_OK && (*code == 429 || *code == 503))
            curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &retry_after);
        curl_easy_setopt(e, CURLOPT_MIMEPOST, NULL);
        curl_mime_free(mime);
        bool stopping = q->tried ? q->tried(q->tried_ud, attempt, *code) : false;
        bool retry = cc != CURLE_OK ? cc != CURLE_URL_MALFORMAT && cc != CURLE_UNSUPPORTED_PROTOCOL
                                    : upstream_retryable_code(*code);
        if (!retry) {
            if (cc == CURLE_OK)
                return NS_OK;
            snprintf(err, errlen, "%s %s: %s", q->method, q->url, eb[0] ? eb : curl_easy_strerror(cc));
            return NS_ERR_UPSTREAM;
        }
        if (cc != CURLE_OK)
            snprintf(err, errlen, "%s %s: %s", q->method, q->url, eb[0] ? eb : curl_easy_strerror(cc));
        else
            snprintf(err, errlen, "%s %s: HTTP %ld: %.200s", q->method, q->url, *code, out->p ? out->p : "");
        if (attempt >= r->max_attempts || stopping)
            return NS_ERR_UPSTREAM;
        double wait = fmin(r->retry_max_s, r->retry_base_s * pow(2, attempt - 1)) * upstream_rand01();
        if (retry_after > 0) /* the provider said when (Groq: retry-after on every 429); at most 10 minutes */
            wait = fmin((double)retry_after, 600);
        struct timespec ts = {(time_t)wait, (long)((wait - floor(wait)) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

int batch_http_json(CURL *e, const struct batch_http_retry *r, const struct batch_http_req *q, size_t max,
                    bool empty_ok, cJSON **out, char *err, size_t errlen)
{
    struct buf b;
    long code;
    buf_init(&b, max);
    *out = NULL;
    int rc = batch_http_call(e, r, q, &b, &code, err, errlen);
    if (rc == NS_OK && code != 200) {
        char m[300];
        cJSON *o = cJSON_ParseWithLength(b.p ? b.p : "", b.len);
        upstream_error_text(o, b.p, b.len, m, sizeof(m));
        cJSON_Delete(o);
        snprintf(err, errlen, "%s %s: HTTP %ld: %s", q->method, q->url, code, m);
        rc = upstream_status_of(code);
    } else if (rc == NS_OK) {
        const char *s = b.p ? b.p : empty_ok ? "{}" : "";
        size_t n = b.p ? b.len : strlen(s);
        if (!cJSON_IsObject(*out = cJSON_ParseWithLength(s, n))) {
            cJSON_Delete(*out);
            *out = NULL;
            snprintf(err, errlen, "%s %s: the answer is not a JSON object", q->method, q->url);
            rc = NS_ERR_UPSTREAM;
        }
    }
    buf_release(&b);
    return rc;
}
