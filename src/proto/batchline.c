/*
 * batchline.c — see batchline.h.
 */
#include "batchline.h"

#include "anthropic.h"
#include "responses.h"

#include "../util/status.h"

#include <stdio.h>
#include <string.h>

int batchline_request(const char *text, size_t n, enum batchfile_url url, const char *custom_id, bool forward,
                      uint64_t base_seed, struct oai_request *r, struct oai_error *err)
{
    cJSON *root = cJSON_ParseWithLength(text, n);
    cJSON *body = root ? cJSON_DetachItemFromObjectCaseSensitive(root, "body") : NULL;
    cJSON_Delete(root);
    /* each parser takes body over, and releases it on failure too */
    int rc = url == BATCHFILE_URL_MESSAGES     ? anthropic_request_from_json(body, r, err)
             : url == BATCHFILE_URL_RESPONSES  ? responses_request_from_json(body, NULL, forward, true, r, err)
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

cJSON *batchline_result(const struct dialect *d, const char *custom_id, const struct oai_request *r,
                        const struct engine_result *res, const char *model)
{
    return d->batch_result ? d->batch_result(custom_id, r, res, model) : NULL;
}

cJSON *batchline_error(const struct dialect *d, const char *custom_id, int status, const char *param,
                       const char *message)
{
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    res.status = status;
    res.param = param;
    res.text = "";
    snprintf(res.message, sizeof(res.message), "%s", message ? message : "");
    return batchline_result(d, custom_id, NULL, &res, NULL);
}
