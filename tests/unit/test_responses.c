/* Unit tests: proto/responses (OpenAI's Responses API): input items, instructions, tools,
 * text.format and a continued conversation translated to the chat JSON the model's
 * template reads; the response object; the typed events of a stream and their sequence
 * numbers; what is stored to continue a conversation; the errors, each naming its field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/proto/dialect.h"
#include "../../src/proto/responses.h"
#include "../../src/proto/stream.h"
#include "../../src/util/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_h(const char *json, const char *history, bool in_batch, struct oai_request *r, struct oai_error *e)
{
    return responses_request_from_json(cJSON_Parse(json), history ? cJSON_Parse(history) : NULL, false, in_batch, r, e);
}

static int parse(const char *json, struct oai_request *r, struct oai_error *e)
{
    return parse_h(json, NULL, false, r, e);
}

static cJSON *chat_of(const struct oai_request *r)
{
    cJSON *c = cJSON_Parse(r->req.chat);
    assert_non_null(c);
    return c;
}

static void test_string_input(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    assert_int_equal(parse("{\"model\":\"m\",\"input\":\"hi\",\"instructions\":\"be brief\",\"max_output_tokens\":32,"
                           "\"temperature\":0}",
                           &r, &e),
                     NS_OK);
    assert_string_equal(r.model, "m");
    assert_int_equal(r.req.max_tokens, 32);
    assert_true(r.req.temperature == 0);
    assert_true(responses_request_store(&r));      /* OpenAI's default */
    assert_false(responses_request_background(&r));
    assert_null(responses_request_previous(&r));
    cJSON *c = chat_of(&r);
    cJSON *m = cJSON_GetObjectItem(c, "messages");
    assert_int_equal(cJSON_GetArraySize(m), 2);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 0), "role")->valuestring, "system");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 0), "content")->valuestring, "be brief");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 1), "content")->valuestring, "hi");
    cJSON_Delete(c);
    /* the stored input: one user message item with an id and an input_text part */
    char *rec = responses_record(&r, NULL);
    cJSON *in = responses_record_input(rec);
    free(rec);
    assert_int_equal(cJSON_GetArraySize(in), 1);
    cJSON *it = cJSON_GetArrayItem(in, 0);
    assert_string_equal(cJSON_GetObjectItem(it, "type")->valuestring, "message");
    assert_int_equal(strncmp(cJSON_GetObjectItem(it, "id")->valuestring, "msg_", 4), 0);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(it, "content"), 0), "type")->valuestring,
        "input_text");
    cJSON_Delete(in);
    /* a background response's record names its batch */
    rec = responses_record(&r, "batch_x");
    assert_non_null(strstr(rec, "\"batch_id\":\"batch_x\""));
    free(rec);
    oai_request_release(&r);
}

/* a tool's call and its output, fed back: one assistant message with the call, then a tool message */
static void test_items_and_tools(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    const char *body =
        "{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"name\":\"get_w\",\"description\":\"weather\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}],"
        "\"tool_choice\":{\"type\":\"function\",\"name\":\"get_w\"},"
        "\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"weather?\"}]},"
        "{\"type\":\"function_call\",\"call_id\":\"call_1\",\"name\":\"get_w\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"},"
        "{\"type\":\"function_call_output\",\"call_id\":\"call_1\",\"output\":\"sunny\"},"
        "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[]}]}";
    assert_int_equal(parse(body, &r, &e), NS_OK);
    assert_true(r.tools);
    cJSON *c = chat_of(&r);
    cJSON *m = cJSON_GetObjectItem(c, "messages");
    assert_int_equal(cJSON_GetArraySize(m), 3); /* reasoning is left out */
    cJSON *a = cJSON_GetArrayItem(m, 1);
    assert_string_equal(cJSON_GetObjectItem(a, "role")->valuestring, "assistant");
    cJSON *call = cJSON_GetArrayItem(cJSON_GetObjectItem(a, "tool_calls"), 0);
    assert_string_equal(cJSON_GetObjectItem(call, "id")->valuestring, "call_1");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(call, "function"), "name")->valuestring, "get_w");
    cJSON *t = cJSON_GetArrayItem(m, 2);
    assert_string_equal(cJSON_GetObjectItem(t, "role")->valuestring, "tool");
    assert_string_equal(cJSON_GetObjectItem(t, "tool_call_id")->valuestring, "call_1");
    assert_string_equal(cJSON_GetObjectItem(t, "content")->valuestring, "sunny");
    cJSON *tools = cJSON_GetObjectItem(c, "tools");
    assert_int_equal(cJSON_GetArraySize(tools), 1);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(tools, 0), "function"), "name")->valuestring,
        "get_w");
    cJSON_Delete(c);
    oai_request_release(&r);
}

/* text.format json_schema: the grammar chat completions would make */
static void test_text_format(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    assert_int_equal(parse("{\"model\":\"m\",\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":"
                           "\"p\",\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":"
                           "\"integer\"}},\"required\":[\"a\"],\"additionalProperties\":false}}}}",
                           &r, &e),
                     NS_OK);
    assert_non_null(r.req.grammar);
    oai_request_release(&r);
    assert_int_equal(parse("{\"model\":\"m\",\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_object\"}}}", &r, &e),
                     NS_OK);
    assert_non_null(r.req.grammar);
    oai_request_release(&r);
    assert_int_equal(parse("{\"model\":\"m\",\"input\":\"x\",\"text\":{\"format\":{\"type\":\"yaml\"}}}", &r, &e),
                     NS_ERR_INVALID);
    assert_string_equal(e.param, "text.format");
}

/* each refusal names its field */
static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        int rc;
        const char *param; /* NULL: none */
        const char *words;
    } cases[] = {
        {"{\"model\":\"m\",\"input\":\"x\",\"foo\":1}", NS_ERR_INVALID, NULL, "Unknown parameter: 'foo'"},
        {"{\"input\":\"x\"}", NS_ERR_INVALID, "model", "Missing required parameter: 'model'"},
        {"{\"model\":\"m\"}", NS_ERR_INVALID, "input", "Missing required parameter: 'input'"},
        {"{\"model\":\"m\",\"input\":5}", NS_ERR_INVALID, "input", "expected a string or an array"},
        {"{\"model\":\"m\",\"input\":\"x\",\"max_output_tokens\":5}", NS_ERR_INVALID, "max_output_tokens", ">= 16"},
        {"{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"image_url\":\"x\"}]}]}",
         NS_ERR_UNSUPPORTED, "input", "'input_image' content is not supported"},
        {"{\"model\":\"m\",\"input\":[{\"role\":\"robot\",\"content\":\"x\"}]}", NS_ERR_INVALID, "input", "role"},
        {"{\"model\":\"m\",\"input\":[{\"type\":\"item_reference\",\"id\":\"msg_1\"}]}", NS_ERR_UNSUPPORTED, "input",
         "item references"},
        {"{\"model\":\"m\",\"input\":[{\"type\":\"function_call\",\"name\":\"f\",\"arguments\":\"{}\"}]}",
         NS_ERR_INVALID, "input", "call_id"},
        {"{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"web_search\"}]}", NS_ERR_UNSUPPORTED, "tools",
         "'web_search' tools are not supported"},
        {"{\"model\":\"m\",\"input\":\"x\",\"background\":true,\"store\":false}", NS_ERR_INVALID, "background",
         "must be stored"},
        {"{\"model\":\"m\",\"input\":\"x\",\"background\":true,\"stream\":true}", NS_ERR_UNSUPPORTED, "stream",
         "poll"},
        {"{\"model\":\"m\",\"input\":\"x\",\"conversation\":\"conv_1\"}", NS_ERR_UNSUPPORTED, "conversation",
         "not supported"},
        {"{\"model\":\"m\",\"input\":\"x\",\"include\":[\"file_search_call.results\"]}", NS_ERR_INVALID, "include",
         "not supported here"},
        {"{\"model\":\"m\",\"input\":\"x\",\"reasoning\":{\"effort\":\"huge\"}}", NS_ERR_INVALID, "reasoning.effort",
         "supported values"},
        {"{\"model\":\"m\",\"input\":\"x\",\"truncation\":\"sometimes\"}", NS_ERR_INVALID, "truncation", "'auto'"},
        {"{\"model\":\"m\",\"input\":\"x\",\"temperature\":3}", NS_ERR_INVALID, "temperature", "maximum"},
        {"{\"model\":\"m\",\"input\":\"x\",\"metadata\":{\"a\":1}}", NS_ERR_INVALID, "metadata", "strings"},
        {"[1]", NS_ERR_INVALID, NULL, "JSON object"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct oai_request r;
        struct oai_error e;
        memset(&e, 0, sizeof(e));
        int rc = parse(cases[i].body, &r, &e);
        if (rc != cases[i].rc || !strstr(e.message, cases[i].words) ||
            (cases[i].param ? !e.param || strcmp(e.param, cases[i].param) : e.param != NULL))
            fail_msg("case %zu: rc %d param %s message %s", i, rc, e.param ? e.param : "(none)", e.message);
    }
    /* a batch line: no stream, background or previous_response_id */
    struct oai_request r;
    struct oai_error e;
    assert_int_equal(parse_h("{\"model\":\"m\",\"input\":\"x\",\"stream\":true}", NULL, true, &r, &e), NS_ERR_INVALID);
    assert_string_equal(e.param, "stream");
    assert_int_equal(parse_h("{\"model\":\"m\",\"input\":\"x\",\"previous_response_id\":\"resp_1\"}", NULL, true, &r, &e),
                     NS_ERR_INVALID);
    assert_string_equal(e.param, "previous_response_id");
    assert_int_equal(parse("not json", &r, &e), NS_ERR_INVALID);
}

static const struct engine_tool_call calls[] = {{.id = "call_abc", .name = "get_w", .arguments = "{\"city\":\"Oslo\"}"}};

/* the object: reasoning, message and call items whose ids come from the response's, usage */
static void test_object(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    assert_int_equal(parse("{\"model\":\"m\",\"input\":\"x\",\"metadata\":{\"k\":\"v\"},\"max_output_tokens\":64}", &r,
                           &e),
                     NS_OK);
    struct engine_result res = {.status = NS_OK, .text = "hello", .text_len = 5, .reasoning = "hmm",
                                .reasoning_len = 3, .reasoning_tokens = 2, .tool_calls = calls, .n_tool_calls = 1,
                                .prompt_tokens = 10, .completion_tokens = 7, .cached_tokens = 4, .stop_index = -1};
    cJSON *o = responses_object(&r, &res, "resp_abc", "m", 1700000000, NULL);
    assert_string_equal(cJSON_GetObjectItem(o, "object")->valuestring, "response");
    assert_string_equal(cJSON_GetObjectItem(o, "status")->valuestring, "completed");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "incomplete_details")));
    assert_int_equal(cJSON_GetObjectItem(o, "max_output_tokens")->valueint, 64);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "metadata"), "k")->valuestring, "v");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "store")));
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "text"), "format"), "type")->valuestring, "text");
    cJSON *out = cJSON_GetObjectItem(o, "output");
    assert_int_equal(cJSON_GetArraySize(out), 3);
    cJSON *rs = cJSON_GetArrayItem(out, 0), *msg = cJSON_GetArrayItem(out, 1), *fc = cJSON_GetArrayItem(out, 2);
    assert_string_equal(cJSON_GetObjectItem(rs, "id")->valuestring, "rs_abc");
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(rs, "content"), 0), "text")->valuestring, "hmm");
    assert_string_equal(cJSON_GetObjectItem(msg, "id")->valuestring, "msg_abc");
    cJSON *part = cJSON_GetArrayItem(cJSON_GetObjectItem(msg, "content"), 0);
    assert_string_equal(cJSON_GetObjectItem(part, "type")->valuestring, "output_text");
    assert_string_equal(cJSON_GetObjectItem(part, "text")->valuestring, "hello");
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(part, "annotations")));
    assert_string_equal(cJSON_GetObjectItem(fc, "id")->valuestring, "fc_abc_0");
    assert_string_equal(cJSON_GetObjectItem(fc, "call_id")->valuestring, "call_abc");
    assert_string_equal(cJSON_GetObjectItem(fc, "arguments")->valuestring, "{\"city\":\"Oslo\"}");
    cJSON *u = cJSON_GetObjectItem(o, "usage");
    assert_int_equal(cJSON_GetObjectItem(u, "input_tokens")->valueint, 10);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(u, "input_tokens_details"), "cached_tokens")->valueint, 4);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(u, "output_tokens_details"), "reasoning_tokens")->valueint,
                     2);
    assert_int_equal(cJSON_GetObjectItem(u, "total_tokens")->valueint, 17);

    /* what the next turn continues from: the input, then the output items */
    char *rec = responses_record(&r, NULL);
    char *obj = cJSON_PrintUnformatted(o);
    cJSON *items;
    assert_int_equal(responses_conversation(rec, obj, &items), NS_OK);
    assert_int_equal(cJSON_GetArraySize(items), 4);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(items, 3), "type")->valuestring, "function_call");
    cJSON_Delete(items);
    assert_int_equal(responses_conversation("{}", obj, &items), NS_ERR_INVALID);
    assert_int_equal(responses_conversation(rec, "nope", &items), NS_ERR_INVALID);
    free(rec);
    free(obj);
    cJSON_Delete(o);

    /* cut at max_output_tokens: incomplete, and why */
    res.finish = ENGINE_FINISH_LENGTH;
    res.n_tool_calls = 0;
    o = responses_object(&r, &res, "resp_abc", "m", 1700000000, NULL);
    assert_string_equal(cJSON_GetObjectItem(o, "status")->valuestring, "incomplete");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "incomplete_details"), "reason")->valuestring,
                        "max_output_tokens");
    cJSON_Delete(o);
    /* failed: the error, no output */
    struct engine_result bad = {.status = NS_ERR_CONTEXT, .message = "too long", .text = ""};
    o = responses_object(&r, &bad, "resp_abc", "m", 1700000000, NULL);
    assert_string_equal(cJSON_GetObjectItem(o, "status")->valuestring, "failed");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "error"), "message")->valuestring, "too long");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "output")), 0);
    cJSON_Delete(o);
    /* not finished yet */
    o = responses_object(&r, NULL, "resp_abc", "m", 1700000000, "queued");
    assert_string_equal(cJSON_GetObjectItem(o, "status")->valuestring, "queued");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "usage")));
    cJSON_Delete(o);
    oai_request_release(&r);
}

/* a continued conversation: the history's items come before the new input */
static void test_history(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    const char *hist = "[{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"a\"}]},"
                       "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":"
                       "\"b\"}]}]";
    assert_int_equal(parse_h("{\"model\":\"m\",\"input\":\"c\",\"previous_response_id\":\"resp_1\"}", hist, false, &r, &e),
                     NS_OK);
    assert_string_equal(responses_request_previous(&r), "resp_1");
    cJSON *c = chat_of(&r);
    cJSON *m = cJSON_GetObjectItem(c, "messages");
    assert_int_equal(cJSON_GetArraySize(m), 3);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 1), "content")->valuestring, "b");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 2), "content")->valuestring, "c");
    cJSON_Delete(c);
    /* the record keeps history and input apart: input_items lists this turn's only */
    char *rec = responses_record(&r, NULL);
    cJSON *in = responses_record_input(rec);
    assert_int_equal(cJSON_GetArraySize(in), 1);
    cJSON_Delete(in);
    free(rec);
    oai_request_release(&r);
    /* the dialect's parser asks its caller for the history; without one it refuses */
    struct dialect_parse how = {.chat = true};
    const char *body = "{\"model\":\"m\",\"input\":\"c\",\"previous_response_id\":\"resp_1\"}";
    assert_int_equal(dialect_responses.parse(body, strlen(body), &how, &r, &e), NS_ERR_INVALID);
    assert_string_equal(e.param, "previous_response_id");
}

/* truncation "auto": the oldest items go first, the earlier turns before the new input,
 * and never the last message */
static void test_truncate(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    const char *hist = "[{\"type\":\"message\",\"role\":\"user\",\"content\":\"h1\"},"
                       "{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\",\"arguments\":\"{}\"},"
                       "{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":\"o\"},"
                       "{\"type\":\"message\",\"role\":\"assistant\",\"content\":\"h2\"}]";
    assert_int_equal(parse_h("{\"model\":\"m\",\"truncation\":\"auto\",\"instructions\":\"sys\",\"input\":["
                             "{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"}]}",
                             hist, false, &r, &e),
                     NS_OK);
    const char *want[][4] = {
        {"sys", "h2", "a", "b"}, /* h1 and the call it led to went together */
        {"sys", "a", "b", NULL},
        {"sys", "b", NULL, NULL},
    };
    for (int k = 0; k < 3; k++) {
        assert_int_equal(responses_request_truncate(&r, false, &e), NS_OK);
        cJSON *c = chat_of(&r);
        cJSON *m = cJSON_GetObjectItem(c, "messages");
        int n = 0;
        while (n < 4 && want[k][n])
            n++;
        if (cJSON_GetArraySize(m) != n)
            fail_msg("round %d: %s", k, r.req.chat);
        for (int i = 0; i < n; i++)
            assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(m, i), "content")->valuestring, want[k][i]);
        cJSON_Delete(c);
    }
    assert_int_equal(responses_request_truncate(&r, false, &e), NS_ERR_CONTEXT); /* the last message stays */
    assert_string_equal(responses_request_previous(&r) ? "?" : "none", "none");
    oai_request_release(&r);
    /* not asked for */
    assert_int_equal(parse("{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":\"a\"},"
                           "{\"role\":\"user\",\"content\":\"b\"}]}",
                           &r, &e),
                     NS_OK);
    assert_int_equal(responses_request_truncate(&r, false, &e), NS_ERR_CONTEXT);
    oai_request_release(&r);
}

/* the stream: numbered events, items opened and closed in order, the whole text at each done */
static void test_stream(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    assert_int_equal(parse("{\"model\":\"m\",\"input\":\"x\",\"stream\":true}", &r, &e), NS_OK);
    assert_true(r.stream);
    struct stream s;
    stream_init(&s, 1u << 20);
    s.r = &r;
    snprintf(s.id, sizeof(s.id), "resp_abc");
    snprintf(s.model, sizeof(s.model), "m");
    struct engine_delta d1 = {.text = "", .reasoning = "hm", .reasoning_len = 2, .tool_index = -1};
    struct engine_delta d2 = {.text = "ok", .len = 2, .tool_index = -1};
    struct engine_delta d3 = {.text = "", .tool_index = 0, .tool_id = "call_abc", .tool_name = "get_w",
                              .tool_args = "{\"city\""};
    struct engine_delta d4 = {.text = "", .tool_index = 0, .tool_args = ":\"Oslo\"}"};
    dialect_responses.stream_delta(&s, &d1);
    dialect_responses.stream_delta(&s, &d2);
    dialect_responses.stream_delta(&s, &d3);
    dialect_responses.stream_delta(&s, &d4);
    struct engine_result res = {.status = NS_OK, .text = "ok", .text_len = 2, .reasoning = "hm", .reasoning_len = 2,
                                .tool_calls = calls, .n_tool_calls = 1, .prompt_tokens = 3, .completion_tokens = 5,
                                .stop_index = -1};
    s.res = &res;
    struct buf out;
    buf_init(&out, 1u << 20);
    while (dialect_responses.stream_next(&s, &out) != STREAM_END)
        ;
    buf_append(&out, "", 1);
    const char *want[] = {"event: response.created", "event: response.in_progress",
                          "event: response.output_item.added", "\"type\":\"reasoning\"",
                          "event: response.reasoning_text.delta", "event: response.reasoning_text.done",
                          "event: response.output_item.done", "event: response.output_item.added",
                          "\"id\":\"msg_abc\"", "event: response.content_part.added",
                          "event: response.output_text.delta", "\"delta\":\"ok\"", "event: response.output_text.done",
                          "event: response.content_part.done", "event: response.output_item.done",
                          "event: response.output_item.added", "\"id\":\"fc_abc_0\"",
                          "event: response.function_call_arguments.delta",
                          "event: response.function_call_arguments.done",
                          "\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"", "event: response.output_item.done",
                          "event: response.completed", "\"status\":\"completed\""};
    const char *ev = out.p;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const char *at = strstr(ev, want[i]);
        if (!at)
            fail_msg("missing or out of order: %s in %s", want[i], out.p);
        ev = at + 1;
    }
    /* sequence numbers: 0, 1, 2, ... in the order sent */
    int next = 0;
    for (const char *p = strstr(out.p, "\"sequence_number\":"); p; p = strstr(p + 1, "\"sequence_number\":")) {
        int n = (int)strtol(p + 18, NULL, 10);
        if (n != next)
            fail_msg("sequence_number %d where %d was due", n, next);
        next++;
    }
    assert_true(next > 15);
    buf_release(&out);
    stream_release(&s);
    oai_request_release(&r);
}

/* reasoning.summary: the reasoning is its summary too, streamed as summary events; a
 * failure ends with an error event, then response.failed */
static void test_stream_summary_and_failure(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    assert_int_equal(parse("{\"model\":\"m\",\"input\":\"x\",\"stream\":true,\"reasoning\":{\"summary\":\"auto\"}}",
                           &r, &e),
                     NS_OK);
    struct stream s;
    stream_init(&s, 1u << 20);
    s.r = &r;
    snprintf(s.id, sizeof(s.id), "resp_abc");
    struct engine_delta d1 = {.text = "", .reasoning = "hm", .reasoning_len = 2, .tool_index = -1};
    struct engine_delta d2 = {.text = "ok", .len = 2, .tool_index = -1};
    dialect_responses.stream_delta(&s, &d1);
    dialect_responses.stream_delta(&s, &d2);
    struct engine_result res = {.status = NS_OK, .text = "ok", .text_len = 2, .reasoning = "hm", .reasoning_len = 2,
                                .stop_index = -1};
    s.res = &res;
    struct buf out;
    buf_init(&out, 1u << 20);
    while (dialect_responses.stream_next(&s, &out) != STREAM_END)
        ;
    buf_append(&out, "", 1);
    const char *want[] = {"event: response.reasoning_summary_part.added", "event: response.reasoning_text.delta",
                          "event: response.reasoning_summary_text.delta", "\"summary_index\":0",
                          "event: response.reasoning_summary_text.done", "event: response.reasoning_summary_part.done",
                          "\"summary\":[{\"type\":\"summary_text\",\"text\":\"hm\"}]", "event: response.completed"};
    const char *ev = out.p;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const char *at = strstr(ev, want[i]);
        if (!at)
            fail_msg("missing or out of order: %s in %s", want[i], out.p);
        ev = at + 1;
    }
    buf_release(&out);
    stream_release(&s);
    cJSON *o = responses_object(&r, &res, "resp_abc", "m", 1, NULL);
    cJSON *sum = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "output"), 0), "summary");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(sum, 0), "text")->valuestring, "hm");
    cJSON_Delete(o);

    stream_init(&s, 1u << 20);
    s.r = &r;
    snprintf(s.id, sizeof(s.id), "resp_abc");
    struct engine_result bad = {.status = NS_ERR_INVALID, .message = "bad grammar", .param = "text.format", .text = ""};
    s.res = &bad;
    buf_init(&out, 1u << 20);
    while (dialect_responses.stream_next(&s, &out) != STREAM_END)
        ;
    buf_append(&out, "", 1);
    const char *err = strstr(out.p, "event: error");
    assert_non_null(err);
    assert_non_null(strstr(err, "\"param\":\"text.format\""));
    assert_non_null(strstr(err, "event: response.failed"));
    assert_null(strstr(out.p, "response.output_item.added")); /* nothing was said: nothing to close */
    buf_release(&out);
    stream_release(&s);
    oai_request_release(&r);
}

/* a batch line's result: OpenAI's line, the response object its body */
static void test_batch_line(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    assert_int_equal(parse_h("{\"model\":\"m\",\"input\":\"x\"}", NULL, true, &r, &e), NS_OK);
    struct engine_result res = {.status = NS_OK, .text = "y", .text_len = 1, .stop_index = -1};
    cJSON *line = dialect_responses.batch_result("c1", &r, &res, "m");
    assert_string_equal(cJSON_GetObjectItem(line, "custom_id")->valuestring, "c1");
    cJSON *body = cJSON_GetObjectItem(cJSON_GetObjectItem(line, "response"), "body");
    assert_string_equal(cJSON_GetObjectItem(body, "object")->valuestring, "response");
    assert_int_equal(strncmp(cJSON_GetObjectItem(body, "id")->valuestring, "resp_", 5), 0);
    cJSON_Delete(line);
    struct engine_result bad = {.status = NS_ERR_CONTEXT, .message = "too long", .text = ""};
    line = dialect_responses.batch_result("c1", NULL, &bad, NULL);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(line, "response"), "status_code")->valueint, 400);
    cJSON_Delete(line);
    oai_request_release(&r);
    assert_ptr_equal(dialect_of_batch("/v1/responses", false), &dialect_responses);
    assert_ptr_equal(dialect_of_path("/v1/responses/resp_1/cancel"), &dialect_responses);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_string_input), cmocka_unit_test(test_items_and_tools), cmocka_unit_test(test_text_format),
        cmocka_unit_test(test_errors),       cmocka_unit_test(test_object),          cmocka_unit_test(test_history),
        cmocka_unit_test(test_stream),       cmocka_unit_test(test_batch_line),      cmocka_unit_test(test_truncate),
        cmocka_unit_test(test_stream_summary_and_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
