/*
 * fuzz_anthropic.c — libFuzzer target: Anthropic Messages bodies (proto/anthropic), as
 * POST /v1/messages and each request of a Message Batch receive them, and the same bytes as
 * a POST /v1/messages/count_tokens body.
 *
 * On success the Message object is built from a made-up result and every string the
 * engine would read is walked; on failure the error object is built.
 */
#include "../../src/proto/anthropic.h"
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t mode;
    size_t n;
    char *copy = fuzz_input(data, size, 0, &mode, &n);
    if (!copy)
        return 0;
    struct oai_request r;
    struct oai_error err;
    if (anthropic_request_parse(copy, n, &r, &err) == 0) {
        size_t walked = 0;
        for (int i = 0; i < r.req.n_messages; i++)
            walked += strlen(r.req.messages[i].role) + strlen(r.req.messages[i].content);
        for (int i = 0; i < r.req.n_stop; i++)
            walked += strlen(r.req.stop[i]);
        if (walked == SIZE_MAX) /* keeps the reads */
            abort();
        struct engine_result res;
        memset(&res, 0, sizeof(res));
        res.text = "answer";
        res.text_len = 6;
        res.stop_index = r.req.n_stop ? 0 : -1;
        cJSON_Delete(anthropic_message(&r, &res, "msg_fuzz", r.model ? r.model : "m"));
        oai_request_release(&r);
    } else {
        cJSON_Delete(anthropic_error(err.status, err.message));
    }
    if (anthropic_count_request_parse(copy, n, &r, &err) == 0) {
        size_t walked = 0;
        for (int i = 0; i < r.req.n_messages; i++)
            walked += strlen(r.req.messages[i].content);
        if (walked == SIZE_MAX)
            abort();
        oai_request_release(&r);
    }
    free(copy);
    return 0;
}
