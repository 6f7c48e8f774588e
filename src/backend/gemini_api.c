/*
 * gemini_api.c — the Gemini REST calls of gemini-batch (gemini_api.h), each one
 * batch_http_call() with the key's headers, the backend's retry numbers (no Retry-After:
 * Gemini does not send one) and atomic try counters.
 */
#include "gemini_api.h"
#include "batch_http.h"
#include "upstream.h"

#include "../util/status.h"

#include <curl/curl.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GA_MAX_RESPONSE (1024u << 20)

struct gemini_api {
    char *base;
    struct curl_slist *hdrs;    /* the key lives here only */
    CURL *easy;
    struct gemini_api_limits l;
    atomic_bool stopping;
    _Atomic uint64_t attempts, retries, rate_limited;
};

static const char *ga_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int gemini_api_init(const char *url, const char *key, const struct gemini_api_limits *l, struct gemini_api **out)
{
    upstream_global_init();
    struct gemini_api *a = calloc(1, sizeof(*a));
    *out = NULL;
    if (!a)
        return NS_ERR_NOMEM;
    a->l = *l;
    atomic_init(&a->stopping, false);
    a->base = upstream_url_join(url, "");
    if (a->base) { /* the API version is ours to add */
        size_t n = strlen(a->base);
        if (n >= 7 && !strcmp(a->base + n - 7, "/v1beta"))
            a->base[n - 7] = '\0';
    }
    a->easy = curl_easy_init();
    char auth[1024];
    snprintf(auth, sizeof(auth), "x-goog-api-key: %s", key);
    a->hdrs = curl_slist_append(NULL, "Expect:");
    if (a->hdrs)
        a->hdrs = curl_slist_append(a->hdrs, auth);
    memset(auth, 0, sizeof(auth));
    if (!a->base || !a->easy || !a->hdrs) {
        gemini_api_free(a);
        return NS_ERR_NOMEM;
    }
    *out = a;
    return NS_OK;
}

void gemini_api_free(struct gemini_api *a)
{
    if (!a)
        return;
    for (struct curl_slist *k = a->hdrs; k; k = k->next) /* the key */
        memset(k->data, 0, strlen(k->data));
    curl_slist_free_all(a->hdrs);
    if (a->easy)
        curl_easy_cleanup(a->easy);
    free(a->base);
    free(a);
}

const char *gemini_api_base(const struct gemini_api *a) { return a->base; }
void gemini_api_set_limits(struct gemini_api *a, const struct gemini_api_limits *l) { a->l = *l; }
void gemini_api_stop(struct gemini_api *a) { atomic_store(&a->stopping, true); }

void gemini_api_get_stats(struct gemini_api *a, struct gemini_api_stats *out)
{
    out->attempts = atomic_load(&a->attempts);
    out->retries = atomic_load(&a->retries);
    out->rate_limited = atomic_load(&a->rate_limited);
}

struct ga_hdr {
    char upload_url[2048];
};

static size_t ga_on_header(char *p, size_t sz, size_t n, void *ud)
{
    struct ga_hdr *h = ud;
    size_t len = sz * n;
    static const char name[] = "x-goog-upload-url:";
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) /* a new response (a retry's): its own headers */
        h->upload_url[0] = '\0';
    if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
        const char *v = p + sizeof(name) - 1;
        size_t vl = len - (sizeof(name) - 1);
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        snprintf(h->upload_url, sizeof(h->upload_url), "%.*s", (int)vl, v);
    }
    return len;
}

/* a try's count (the stats are read from any thread) and the stop flag */
static bool ga_tried(void *ud, int attempt, long code)
{
    struct gemini_api *a = ud;
    atomic_fetch_add(&a->attempts, 1);
    atomic_fetch_add(&a->retries, attempt > 1);
    atomic_fetch_add(&a->rate_limited, code == 429);
    return atomic_load(&a->stopping);
}

/* one call (batch_http.h); extra: headers added to the key's (the upload protocol's), or
 * NULL; hdr: where an upload's X-Goog-Upload-URL goes, or NULL */
static struct batch_http_req ga_req(struct gemini_api *a, const char *method, const char *url,
                                    const char *const *extra, const char *body, size_t body_len, struct ga_hdr *hdr)
{
    if (hdr)
        hdr->upload_url[0] = '\0';
    return (struct batch_http_req){.method = method, .url = url, .hdrs = a->hdrs, .extra = extra, .body = body,
                                   .body_len = body_len, .on_header = hdr ? ga_on_header : NULL, .header_ud = hdr,
                                   .tried = ga_tried, .tried_ud = a};
}

static struct batch_http_retry ga_retry(const struct gemini_api *a)
{
    return (struct batch_http_retry){a->l.max_attempts, a->l.timeout_s, a->l.retry_base_s, a->l.retry_max_s, false};
}

/* a call whose 200 answer is a JSON object (*out); else an error naming the call */
static int ga_json(struct gemini_api *a, const char *method, const char *url, const char *const *extra,
                   const char *body, size_t body_len, struct ga_hdr *hdr, cJSON **out, char *err, size_t errlen)
{
    struct batch_http_req q = ga_req(a, method, url, extra, body, body_len, hdr);
    struct batch_http_retry r = ga_retry(a);
    return batch_http_json(a->easy, &r, &q, GA_MAX_RESPONSE, true, out, err, errlen);
}

int gemini_api_upload(struct gemini_api *a, const char *display, const char *data, size_t len, char *file,
                      size_t filen, char *err, size_t errlen)
{
    char url[1200], clen[64], disp[256];
    snprintf(url, sizeof(url), "%s/upload/v1beta/files", a->base);
    snprintf(clen, sizeof(clen), "X-Goog-Upload-Header-Content-Length: %zu", len);
    const char *start[] = {"X-Goog-Upload-Protocol: resumable", "X-Goog-Upload-Command: start", clen,
                           "X-Goog-Upload-Header-Content-Type: application/jsonl", NULL};
    snprintf(disp, sizeof(disp), "%s.jsonl", display);
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(cJSON_AddObjectToObject(meta, "file"), "display_name", disp);
    char *mj = cJSON_PrintUnformatted(meta);
    cJSON_Delete(meta);
    if (!mj) {
        snprintf(err, errlen, "out of memory");
        return NS_ERR_NOMEM;
    }
    struct ga_hdr h;
    cJSON *o = NULL;
    int rc = ga_json(a, "POST", url, start, mj, strlen(mj), &h, &o, err, errlen);
    free(mj);
    cJSON_Delete(o);
    o = NULL;
    if (rc)
        return rc;
    if (!h.upload_url[0]) {
        snprintf(err, errlen, "POST %.300s: the answer has no X-Goog-Upload-URL", url);
        return NS_ERR_UPSTREAM;
    }
    const char *up[] = {"X-Goog-Upload-Command: upload, finalize", "X-Goog-Upload-Offset: 0",
                        "Content-Type: application/jsonl", NULL};
    char upload_url[2048];
    snprintf(upload_url, sizeof(upload_url), "%s", h.upload_url);
    if ((rc = ga_json(a, "POST", upload_url, up, data ? data : "", len, NULL, &o, err, errlen)))
        return rc;
    const char *name = ga_str(cJSON_GetObjectItemCaseSensitive(o, "file"), "name");
    if (!name)
        name = ga_str(o, "name");
    if (!name) {
        snprintf(err, errlen, "the upload to %.300s answered no file name", url);
        rc = NS_ERR_UPSTREAM;
    } else {
        snprintf(file, filen, "%s", name);
    }
    cJSON_Delete(o);
    return rc;
}


int gemini_api_create(struct gemini_api *a, const char *model, const char *body, char *name, size_t namelen,
                      char *err, size_t errlen)
{
    char url[1200];
    cJSON *o = NULL;
    snprintf(url, sizeof(url), "%s/v1beta/models/%s:batchGenerateContent", a->base, model);
    int rc = ga_json(a, "POST", url, NULL, body, strlen(body), NULL, &o, err, errlen);
    if (rc)
        return rc;
    const char *n = ga_str(o, "name");
    if (!n)
        n = ga_str(cJSON_GetObjectItemCaseSensitive(o, "metadata"), "name");
    if (!n) {
        snprintf(err, errlen, "POST %.300s: the answer has no batch name", url);
        rc = NS_ERR_UPSTREAM;
    } else {
        snprintf(name, namelen, "%s", n);
    }
    cJSON_Delete(o);
    return rc;
}

int gemini_api_get(struct gemini_api *a, const char *name, cJSON **op, char *err, size_t errlen)
{
    char url[1200];
    snprintf(url, sizeof(url), "%s/v1beta/%s", a->base, name);
    return ga_json(a, "GET", url, NULL, NULL, 0, NULL, op, err, errlen);
}

int gemini_api_download(struct gemini_api *a, const char *file, struct buf *out, char *err, size_t errlen)
{
    char url[1200];
    long code;
    snprintf(url, sizeof(url), "%s/download/v1beta/%s:download?alt=media", a->base, file);
    struct batch_http_req q = ga_req(a, "GET", url, NULL, NULL, 0, NULL);
    struct batch_http_retry r = ga_retry(a);
    int rc = batch_http_call(a->easy, &r, &q, out, &code, err, errlen);
    if (rc == NS_OK && code != 200) {
        snprintf(err, errlen, "GET %.300s: HTTP %ld", url, code);
        rc = upstream_status_of(code);
    }
    return rc;
}

int gemini_api_cancel(struct gemini_api *a, const char *name, char *err, size_t errlen)
{
    char url[1200];
    cJSON *o = NULL;
    snprintf(url, sizeof(url), "%s/v1beta/%s:cancel", a->base, name);
    int rc = ga_json(a, "POST", url, NULL, "{}", 2, NULL, &o, err, errlen);
    cJSON_Delete(o);
    return rc;
}

int gemini_api_find(struct gemini_api *a, const char *display, char *name, size_t namelen, char *err, size_t errlen)
{
    char url[1400], token[512] = "";
    for (int page = 0; page < 100; page++) {
        cJSON *o = NULL;
        if (token[0])
            snprintf(url, sizeof(url), "%s/v1beta/batches?pageSize=100&pageToken=%s", a->base, token);
        else
            snprintf(url, sizeof(url), "%s/v1beta/batches?pageSize=100", a->base);
        int rc = ga_json(a, "GET", url, NULL, NULL, 0, NULL, &o, err, errlen);
        if (rc)
            return -rc;
        const cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(o, "batches"))
        {
            const cJSON *md = cJSON_GetObjectItemCaseSensitive(x, "metadata");
            const char *d = ga_str(x, "displayName") ? ga_str(x, "displayName") : ga_str(md, "displayName");
            const char *n = ga_str(x, "name") ? ga_str(x, "name") : ga_str(md, "name");
            if (d && n && !strcmp(d, display)) {
                snprintf(name, namelen, "%s", n);
                cJSON_Delete(o);
                return 1;
            }
        }
        snprintf(token, sizeof(token), "%s", ga_str(o, "nextPageToken") ? ga_str(o, "nextPageToken") : "");
        cJSON_Delete(o);
        if (!token[0])
            break;
    }
    return 0;
}
