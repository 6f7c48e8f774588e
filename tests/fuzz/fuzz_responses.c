/*
 * fuzz_responses.c — libFuzzer target: OpenAI Responses bodies (proto/responses), as POST
 * /v1/responses and each /v1/responses batch line receive them.
 *
 * The mode byte picks: bit 0 a batch line (no stream, background, previous_response_id),
 * bit 1 a continued conversation (a fixed history of every item kind), bit 2 a model that
 * forwards upstream. On success the object is built from a made-up result with reasoning,
 * text and a call; the stream runs through its deltas and end; what the store keeps is
 * read back as the next turn's conversation; truncation is applied until it stops. On
 * failure the error body is built.
 */
#include "../../src/proto/dialect.h"
#include "../../src/proto/responses.h"
#include "../../src/proto/stream.h"
#include "../../src/util/status.h"
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char HISTORY[] =
    "[{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"a\"}]},"
    "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[]},"
    "{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\",\"arguments\":\"{}\"},"
    "{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":\"o\"},"
    "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"b\"}]}]";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t mode;
    size_t n;
    char *copy = fuzz_input(data, size, 1, &mode, &n);
    if (!copy)
        return 0;
    struct oai_request r;
    struct oai_error err;
    cJSON *body = cJSON_ParseWithLength(copy, n);
    cJSON *history = mode & 2 ? cJSON_Parse(HISTORY) : NULL;
    if (responses_request_from_json(body, history, mode & 4, mode & 1, &r, &err) == 0) {
        static const struct engine_tool_call call = {.id = "call_1", .name = "f", .arguments = "{\"a\":1}"};
        struct engine_result res;
        memset(&res, 0, sizeof(res));
        res.text = "answer";
        res.text_len = 6;
        res.reasoning = "hm";
        res.reasoning_len = 2;
        res.tool_calls = &call;
        res.n_tool_calls = 1;
        res.stop_index = -1;
        cJSON *o = responses_object(&r, &res, "resp_fuzz", r.model ? r.model : "m", 1, NULL);
        char *obj = cJSON_PrintUnformatted(o);
        char *rec = responses_record(&r, NULL);
        cJSON *items = NULL;
        if (obj && rec && responses_conversation(rec, obj, &items) != 0)
            abort(); /* what it made, it must read back */
        cJSON_Delete(items);
        cJSON_Delete(responses_record_input(rec));
        free(obj);
        free(rec);
        cJSON_Delete(o);
        struct stream s;
        stream_init(&s, 1u << 20);
        s.r = &r;
        struct engine_delta d1 = {.text = "", .reasoning = "h", .reasoning_len = 1, .tool_index = -1};
        struct engine_delta d2 = {.text = "an", .len = 2, .tool_index = -1};
        struct engine_delta d3 = {.text = "", .tool_index = 0, .tool_id = "call_1", .tool_name = "f", .tool_args = "{"};
        dialect_responses.stream_delta(&s, &d1);
        dialect_responses.stream_delta(&s, &d2);
        dialect_responses.stream_delta(&s, &d3);
        s.res = &res;
        struct buf out;
        buf_init(&out, 1u << 20);
        while (dialect_responses.stream_next(&s, &out) != STREAM_END)
            ;
        buf_release(&out);
        stream_release(&s);
        /* truncation until nothing can go (each round rebuilds the request) */
        int rc = 0;
        for (int i = 0; i < 64 && rc == 0; i++)
            rc = responses_request_truncate(&r, mode & 4, &err);
        if (rc == 0 || rc == NS_ERR_CONTEXT) /* else the failed rebuild released it */
            oai_request_release(&r);
    } else {
        cJSON_Delete(dialect_responses.error(err.status, err.message, err.param, NULL));
    }
    free(copy);
    return 0;
}
