/*
 * batchline.c — see batchline.h.
 */
#include "batchline.h"

#include "anthropic.h"
#include "gemini.h"

#include "../util/status.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

enum batchline_shape batchline_shape_of(enum batchfile_url url, bool gemini)
{
    return url == BATCHFILE_URL_MESSAGES ? BATCHLINE_ANTHROPIC : gemini ? BATCHLINE_GEMINI : BATCHLINE_OPENAI;
}

int batchline_request(const char *text, size_t n, enum batchfile_url url, const char *custom_id, bool forward,
                      uint64_t base_seed, struct oai_request *r, struct oai_error *err)
{
    cJSON *root = cJSON_ParseWithLength(text, n);
    cJSON *body = root ? cJSON_DetachItemFromObjectCaseSensitive(root, "body") : NULL;
    cJSON_Delete(root);
    /* each parser takes body over, and releases it on failure too */
    int rc = url == BATCHFILE_URL_MESSAGES     ? anthropic_request_from_json(body, r, err)
             : url == BATCHFILE_URL_EMBEDDINGS ? oai_request_embeddings_line(body, forward, r, err)
             : forward                         ? oai_request_forward_from_json(body, url == BATCHFILE_URL_CHAT, r, err)
                                               : oai_request_from_json(body, url == BATCHFILE_URL_CHAT, r, err);
    if (rc == NS_OK && r->stream) {
        oai_request_release(r);
        rc = NS_ERR_INVALID;
        err->status = rc;
        err->param = "stream";
        snprintf(err->message, sizeof(err->message), "'stream' is not allowed in a batch request.");
    }
    if (rc != NS_OK)
        return rc;
    /* reproducible sampling per line without a seed: one formula for run and serve */
    if (!r->has_seed)
        r->req.seed = batchfile_line_seed(custom_id, base_seed);
    return NS_OK;
}

cJSON *batchline_result(enum batchline_shape shape, const char *custom_id, const struct oai_request *r,
                        const struct engine_result *res, const char *model)
{
    bool ok = res->status == NS_OK;
    char id[48];
    if (shape == BATCHLINE_ANTHROPIC) {
        if (ok && r) {
            oai_make_id(id, sizeof(id), "msg_");
            return anthropic_result_succeeded(custom_id, anthropic_message(r, res, id, model));
        }
        if (status_http(res->status) || ok)
            return anthropic_result_errored(custom_id, ok ? NS_ERR_INTERNAL : res->status, res->message);
        return anthropic_result_bare(custom_id, res->status == NS_ERR_EXPIRED ? "expired" : "canceled");
    }
    if (shape == BATCHLINE_GEMINI) {
        if (ok && r)
            return gemini_response_line(custom_id, res, model);
        return gemini_error_line(custom_id, ok ? NS_ERR_INTERNAL : res->status, res->message);
    }
    if (res->raw_body && res->http_status) {
        /* an upstream's answer, success or error, passed on as it gave it */
        cJSON *body = cJSON_ParseWithLength(res->raw_body, res->raw_len);
        return body ? oai_batch_line(custom_id, res->http_status, body)
                    : oai_batch_line(custom_id, status_http(res->status) ? status_http(res->status) : 502,
                                     oai_error_body(res->status, res->message, res->param, NULL));
    }
    if (ok && r) {
        oai_make_id(id, sizeof(id), r->chat ? "chatcmpl-" : "cmpl-");
        return oai_batch_line(custom_id, 200, oai_completion_body(r, res, id, model, time(NULL)));
    }
    if (status_http(res->status) || ok)
        return oai_batch_line(custom_id, ok ? 500 : status_http(res->status),
                              oai_error_body(ok ? NS_ERR_INTERNAL : res->status, res->message, res->param, NULL));
    return oai_batch_line_noresponse(custom_id, res->status, res->message);
}
