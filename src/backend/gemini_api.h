/*
 * gemini_api.h — the Gemini REST calls the "gemini-batch" backend makes, over one libcurl
 * easy handle: the Files API's resumable upload, batchGenerateContent, batches get / list /
 * cancel, and the responses file download. Every call is retried on network errors and
 * 408/409/425/429/5xx with full-jitter exponential backoff (the backend's retry settings),
 * and sends the key as x-goog-api-key (kept in the handle's header list only: never logged
 * nor put in an error message).
 *
 * Paths are the API's own: base + "/v1beta/...", "/upload/v1beta/files",
 * "/download/v1beta/{file}:download?alt=media"; the base is the configured URL without a
 * trailing "/v1beta".
 *
 * THREADS: one thread makes the calls (the backend's run thread); gemini_api_stop() and
 * gemini_api_get_stats() may be called from any thread.
 * ERRORS: NS_OK, or an ns_status (from the final HTTP code, NS_ERR_UPSTREAM for a network
 * error or an answer without what it must hold) with err naming the call.
 */
#ifndef NS_BACKEND_GEMINI_API_H
#define NS_BACKEND_GEMINI_API_H

#include "../util/buf.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

struct gemini_api;

struct gemini_api_limits {
    int max_attempts;          /* tries per call, the first included */
    double timeout_s;          /* per try */
    double retry_base_s, retry_max_s;
};

struct gemini_api_stats {
    uint64_t attempts, retries, rate_limited;
};

/* url: http(s)://HOST[:PORT][/v1beta]; key: the API key (copied). NS_ERR_NOMEM. */
int gemini_api_init(const char *url, const char *key, const struct gemini_api_limits *l, struct gemini_api **out);
void gemini_api_free(struct gemini_api *a);
const char *gemini_api_base(const struct gemini_api *a);
void gemini_api_set_limits(struct gemini_api *a, const struct gemini_api_limits *l);
/* no more retries: a call in progress returns after its current try */
void gemini_api_stop(struct gemini_api *a);
void gemini_api_get_stats(struct gemini_api *a, struct gemini_api_stats *out);

/* data as a new file (display_name display.jsonl); its name ("files/...") into file */
int gemini_api_upload(struct gemini_api *a, const char *display, const char *data, size_t len, char *file,
                      size_t filen, char *err, size_t errlen);
/* POST models/{model}:batchGenerateContent with body; the batch's name ("batches/...") */
int gemini_api_create(struct gemini_api *a, const char *model, const char *body, char *name, size_t namelen,
                      char *err, size_t errlen);
/* GET the batch (its operation object, *op new) */
int gemini_api_get(struct gemini_api *a, const char *name, cJSON **op, char *err, size_t errlen);
/* the whole of a file's content into out */
int gemini_api_download(struct gemini_api *a, const char *file, struct buf *out, char *err, size_t errlen);
int gemini_api_cancel(struct gemini_api *a, const char *name, char *err, size_t errlen);
/* the name of the batch with this displayName: 1 found (name set), 0 none, < 0 the list
 * could not be read (err set) */
int gemini_api_find(struct gemini_api *a, const char *display, char *name, size_t namelen, char *err, size_t errlen);

#endif
