/*
 * fuzz_oai.c — libFuzzer target: OpenAI request bodies (proto/oai), as POST
 * /v1/chat/completions and /v1/completions receive them from any client.
 *
 * The first byte picks the endpoint (chat or completions) and the parser: the full one
 * (local engine) or the forwarding one (upstream backends check only what nightshift
 * needs). On success every string the engine would read is walked, and a response body
 * is built from a made-up result, so the builders see whatever the parser let through.
 */
#include "../../src/proto/oai.h"
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* read every byte the engine would read, so ASan reports a dangling pointer here */
static size_t fuzz_walk(const struct engine_request *q)
{
    size_t n = 0;
    for (int i = 0; q->messages && i < q->n_messages; i++)
        n += strlen(q->messages[i].role) + strlen(q->messages[i].content);
    if (q->prompt)
        n += strlen(q->prompt);
    for (int i = 0; i < q->n_stop; i++)
        n += strlen(q->stop[i]);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t mode;
    size_t n;
    char *copy = fuzz_input(data, size, 1, &mode, &n);
    if (!copy)
        return 0;
    bool chat = mode & 1;
    struct oai_request r;
    struct oai_error err;
    int rc;
    if (mode & 2) {
        cJSON *body = cJSON_ParseWithLength(copy, n);
        rc = body ? oai_request_forward_from_json(body, chat, &r, &err) : -1;
    } else {
        rc = oai_request_parse(copy, n, chat, &r, &err);
    }
    if (rc == 0) {
        if (fuzz_walk(&r.req) == SIZE_MAX) /* keeps the reads */
            abort();
        struct engine_result res;
        memset(&res, 0, sizeof(res));
        res.text = "answer";
        res.text_len = 6;
        cJSON *o = oai_completion_body(&r, &res, "chatcmpl-fuzz", r.model ? r.model : "m", 0);
        cJSON_Delete(o);
        oai_request_release(&r);
    } else if (rc > 0) {
        cJSON_Delete(oai_error_body(err.status, err.message, err.param, NULL));
    }
    free(copy);
    return 0;
}
