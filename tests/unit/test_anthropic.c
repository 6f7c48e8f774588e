/* Unit tests: proto/anthropic (Messages bodies in, Messages out): tools, tool_use and
 * tool_result blocks and thinking translated to the chat JSON the model's template reads;
 * thinking, text and tool_use blocks in the answer. Regression inputs found by
 * tests/fuzz/fuzz_anthropic.c live here as named cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/proto/anthropic.h"
#include "../../src/proto/dialect.h"
#include "../../src/proto/stream.h"
#include "../../src/util/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *json, struct oai_request *r, struct oai_error *e)
{
    return anthropic_request_parse(json, strlen(json), r, e);
}

#define MSG "\"model\":\"m\",\"max_tokens\":16,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static void test_top_k(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    assert_int_equal(parse("{" MSG ",\"top_k\":40}", &r, &e), NS_OK);
    assert_int_equal(r.req.top_k, 40);
    oai_request_release(&r);
    /* fuzz_anthropic: 1e3095 parses as inf, and (int)inf is undefined behaviour */
    static const char *const bad[] = {"1e3095", "1e12", "2147483648", "-1", "1.5", "\"5\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body), "{" MSG ",\"top_k\":%s}", bad[i]);
        assert_int_equal(parse(body, &r, &e), NS_ERR_INVALID);
        assert_string_equal(e.param, "top_k");
        assert_non_null(strstr(e.message, "top_k: Input should be a non-negative integer"));
    }
    assert_int_equal(parse("{" MSG ",\"top_k\":2147483647}", &r, &e), NS_OK);
    oai_request_release(&r);
}

static void test_max_tokens(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    static const char *const bad[] = {"0", "-5", "1e3095", "1e10", "2.5", "null"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body), "{\"model\":\"m\",\"max_tokens\":%s,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                 bad[i]);
        assert_int_equal(parse(body, &r, &e), NS_ERR_INVALID);
        assert_non_null(strstr(e.message, "max_tokens"));
    }
}

/* a conversation with tools: the chat JSON is OpenAI's shape (system, tool_calls, tool
 * messages, reasoning_content), tool_choice and thinking mapped */
static void test_tools_in(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    const char *body =
        "{\"model\":\"m\",\"max_tokens\":64,\"system\":\"be brief\",\"thinking\":{\"type\":\"disabled\"},"
        "\"tools\":[{\"name\":\"get_w\",\"description\":\"weather\",\"input_schema\":{\"type\":\"object\","
        "\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}},{\"name\":\"other\",\"input_schema\":{\"type\":\"object\"}}],"
        "\"tool_choice\":{\"type\":\"tool\",\"name\":\"get_w\",\"disable_parallel_tool_use\":true},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"weather in Oslo?\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"hmm\",\"signature\":\"\"},"
        "{\"type\":\"text\",\"text\":\"let me look\"},{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_w\","
        "\"input\":{\"city\":\"Oslo\"}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\",\"content\":"
        "[{\"type\":\"text\",\"text\":\"sunny\"}]},{\"type\":\"text\",\"text\":\"thanks\"}]}]}";
    if (parse(body, &r, &e))
        fail_msg("%s", e.message);
    assert_true(r.tools);
    cJSON *chat = cJSON_Parse(r.req.chat);
    cJSON *m = cJSON_GetObjectItem(chat, "messages");
    assert_int_equal(cJSON_GetArraySize(m), 5); /* system, user, assistant, tool, user */
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 0), "role")->valuestring, "system");
    cJSON *a = cJSON_GetArrayItem(m, 2);
    assert_string_equal(cJSON_GetObjectItem(a, "reasoning_content")->valuestring, "hmm");
    cJSON *call = cJSON_GetArrayItem(cJSON_GetObjectItem(a, "tool_calls"), 0);
    assert_string_equal(cJSON_GetObjectItem(call, "id")->valuestring, "toolu_1");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(call, "function"), "arguments")->valuestring,
                        "{\"city\":\"Oslo\"}");
    cJSON *t = cJSON_GetArrayItem(m, 3);
    assert_string_equal(cJSON_GetObjectItem(t, "role")->valuestring, "tool");
    assert_string_equal(cJSON_GetObjectItem(t, "tool_call_id")->valuestring, "toolu_1");
    assert_string_equal(cJSON_GetObjectItem(t, "content")->valuestring, "sunny");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(chat, "tools")), 1);
    assert_string_equal(cJSON_GetObjectItem(chat, "tool_choice")->valuestring, "required");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(chat, "parallel_tool_calls")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(chat, "chat_template_kwargs"), "enable_thinking")));
    cJSON_Delete(chat);
    /* the plain text for upstream batch APIs keeps the text blocks only */
    assert_string_equal(r.req.messages[2].content, "let me look");
    oai_request_release(&r);

    /* refusals name what is wrong */
    static const struct {
        const char *extra, *param, *needle;
        int status;
    } bad[] = {
        {"\"tools\":{}", "tools", "valid list", NS_ERR_INVALID},
        {"\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"web\"}]", "tools", "server tools", NS_ERR_UNSUPPORTED},
        {"\"tools\":[{\"input_schema\":{}}]", "tools", "tools.0.name", NS_ERR_INVALID},
        {"\"tools\":[{\"name\":\"f\"}]", "tools", "tools.0.input_schema", NS_ERR_INVALID},
        {"\"tools\":[{\"name\":\"f\",\"input_schema\":{\"not\":{}}}]", "tools", "tools.0.input_schema", NS_ERR_UNSUPPORTED},
        {"\"tools\":[{\"name\":\"f\",\"input_schema\":{}}],\"tool_choice\":{\"type\":\"sometimes\"}", "tool_choice", "'auto', 'any'", NS_ERR_INVALID},
        {"\"tools\":[{\"name\":\"f\",\"input_schema\":{}}],\"tool_choice\":{\"type\":\"tool\"}", "tool_choice", "name: Field required", NS_ERR_INVALID},
        {"\"tools\":[{\"name\":\"f\",\"input_schema\":{}}],\"tool_choice\":{\"type\":\"tool\",\"name\":\"g\"}", "tool_choice", "no tool named 'g'", NS_ERR_INVALID},
        {"\"thinking\":{\"type\":\"maybe\"}", "thinking", "'enabled' or 'disabled'", NS_ERR_INVALID},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char b[512];
        snprintf(b, sizeof(b), "{" MSG ",%s}", bad[i].extra);
        int rc = parse(b, &r, &e);
        if (rc != bad[i].status || strcmp(e.param, bad[i].param) || !strstr(e.message, bad[i].needle))
            fail_msg("case %zu: %d %s", i, rc, rc ? e.message : "");
    }
    /* a tool_use block in a user message, a tool_result in an assistant's */
    assert_int_equal(parse("{\"model\":\"m\",\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                           "\"tool_use\",\"id\":\"x\",\"name\":\"f\",\"input\":{}}]}]}", &r, &e),
                     NS_ERR_INVALID);
    assert_non_null(strstr(e.message, "a tool_use block is an assistant's"));
    assert_int_equal(parse("{\"model\":\"m\",\"max_tokens\":8,\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":"
                           "\"tool_result\",\"tool_use_id\":\"x\",\"content\":\"1\"}]}]}", &r, &e),
                     NS_ERR_INVALID);
    assert_non_null(strstr(e.message, "a tool_result block is a user's"));
}

/* the answer: a thinking block, text, tool_use blocks with parsed input; stop_reason
 * tool_use; streamed as typed blocks */
static void test_tools_out(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    assert_int_equal(parse("{" MSG "}", &r, &e), NS_OK);
    struct engine_tool_call calls[1] = {{"call_abc", "get_w", "{\"city\":\"Oslo\"}"}};
    struct engine_result res = {.text = "", .reasoning = "hmm", .reasoning_len = 3, .tool_calls = calls,
                                .n_tool_calls = 1, .stop_index = -1};
    cJSON *m = anthropic_message(&r, &res, "msg_1", "m");
    cJSON *c = cJSON_GetObjectItem(m, "content");
    assert_int_equal(cJSON_GetArraySize(c), 2); /* thinking, tool_use (no empty text) */
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(c, 0), "type")->valuestring, "thinking");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(c, 0), "thinking")->valuestring, "hmm");
    cJSON *tu = cJSON_GetArrayItem(c, 1);
    assert_string_equal(cJSON_GetObjectItem(tu, "type")->valuestring, "tool_use");
    assert_string_equal(cJSON_GetObjectItem(tu, "id")->valuestring, "toolu_abc");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(tu, "input"), "city")->valuestring, "Oslo");
    assert_string_equal(cJSON_GetObjectItem(m, "stop_reason")->valuestring, "tool_use");
    cJSON_Delete(m);

    /* streamed: a thinking block, a text block, a tool_use block with its input_json_delta */
    struct stream s;
    stream_init(&s, 1u << 20);
    s.r = &r;
    struct engine_delta d1 = {.text = "", .reasoning = "hm", .reasoning_len = 2, .tool_index = -1};
    struct engine_delta d2 = {.text = "ok", .len = 2, .tool_index = -1};
    struct engine_delta d3 = {.text = "", .tool_index = 0, .tool_id = "call_abc", .tool_name = "get_w",
                              .tool_args = "{\"city\""};
    struct engine_delta d4 = {.text = "", .tool_index = 0, .tool_args = ":\"Oslo\"}"};
    dialect_anthropic.stream_delta(&s, &d1);
    dialect_anthropic.stream_delta(&s, &d2);
    dialect_anthropic.stream_delta(&s, &d3);
    dialect_anthropic.stream_delta(&s, &d4);
    s.res = &res;
    struct buf out;
    buf_init(&out, 1u << 20);
    while (dialect_anthropic.stream_next(&s, &out) != STREAM_END)
        ;
    buf_append(&out, "", 1);
    const char *ev = out.p;
    const char *want[] = {"message_start", "\"type\":\"thinking\"", "thinking_delta", "signature_delta",
                          "content_block_stop", "\"index\":1", "text_delta", "\"type\":\"tool_use\"",
                          "\"id\":\"toolu_abc\"", "input_json_delta", "\"partial_json\":\":\\\"Oslo\\\"}\"",
                          "\"stop_reason\":\"tool_use\"", "message_stop"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const char *at = strstr(ev, want[i]);
        if (!at)
            fail_msg("missing or out of order: %s in %s", want[i], out.p);
        ev = at;
    }
    buf_release(&out);
    stream_release(&s);
    oai_request_release(&r);
}

/* the "usage" object of the first event named name in an SSE text */
static cJSON *sse_usage(const char *sse, const char *name)
{
    char tag[64];
    snprintf(tag, sizeof(tag), "event: %s\ndata: ", name);
    const char *at = strstr(sse, tag);
    if (!at)
        return NULL;
    at += strlen(tag);
    const char *end = strchr(at, '\n');
    cJSON *o = cJSON_ParseWithLength(at, end ? (size_t)(end - at) : strlen(at));
    cJSON *m = cJSON_GetObjectItem(o, "message");
    cJSON *u = cJSON_DetachItemFromObject(m ? m : o, "usage");
    cJSON_Delete(o);
    return u;
}

static int usage_int(const cJSON *u, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(u, k);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

/* issue 31.3: message_start's usage and message_delta's agree with the non-streamed
 * message's (46 prompt tokens, 45 of them from the prefix cache): message_start waits for
 * the first delta, which says how much of the prompt was cached; message_delta carries the
 * whole final usage. A source that cannot say (an upstream: -1) holds message_start until
 * the end. */
static void test_stream_usage(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    assert_int_equal(parse("{" MSG ",\"stream\":true}", &r, &e), NS_OK);
    struct engine_result res = {.text = "abc", .prompt_tokens = 46, .cached_tokens = 45, .completion_tokens = 3,
                                .stop_index = -1};
    cJSON *m = anthropic_message(&r, &res, "msg_1", "m");
    cJSON *want = cJSON_DetachItemFromObject(m, "usage");
    cJSON_Delete(m);
    assert_int_equal(usage_int(want, "input_tokens"), 1);
    assert_int_equal(usage_int(want, "cache_read_input_tokens"), 45);
    for (int upstream = 0; upstream < 2; upstream++) {
        struct stream s;
        stream_init(&s, 1u << 20);
        s.r = &r;
        s.n_prompt = 46;
        struct buf out;
        buf_init(&out, 1u << 20);
        /* nothing yet: not even message_start, whose usage is not known */
        assert_int_equal(dialect_anthropic.stream_next(&s, &out), STREAM_WAIT);
        assert_int_equal(out.len, 0);
        struct engine_delta d = {.text = "abc", .len = 3, .tool_index = -1, .cached_tokens = upstream ? -1 : 45};
        dialect_anthropic.stream_delta(&s, &d);
        int step = dialect_anthropic.stream_next(&s, &out);
        if (upstream) {
            assert_int_equal(step, STREAM_WAIT);
            assert_int_equal(out.len, 0);
        }
        s.res = &res;
        while (dialect_anthropic.stream_next(&s, &out) != STREAM_END)
            ;
        buf_append(&out, "", 1);
        cJSON *start = sse_usage(out.p, "message_start"), *delta = sse_usage(out.p, "message_delta");
        assert_non_null(start);
        assert_non_null(delta);
        assert_true(cJSON_Compare(delta, want, true));
        static const char *const same[] = {"input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"};
        for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
            assert_int_equal(usage_int(start, same[i]), usage_int(want, same[i]));
        cJSON_Delete(start);
        cJSON_Delete(delta);
        buf_release(&out);
        stream_release(&s);
    }
    cJSON_Delete(want);
    oai_request_release(&r);
}

/* POST /v1/messages/count_tokens bodies: a Messages body without max_tokens; what only a
 * generation takes (max_tokens, sampling, stream) is an extra input; the prompt's fields
 * are parsed as a Messages call parses them */
static void test_count_tokens_body(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    const char *ok = "{\"model\":\"m\",\"system\":\"be brief\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                     "\"tools\":[{\"name\":\"f\",\"input_schema\":{\"type\":\"object\"}}],"
                     "\"tool_choice\":{\"type\":\"auto\"},\"thinking\":{\"type\":\"disabled\"}}";
    assert_int_equal(anthropic_count_request_parse(ok, strlen(ok), &r, &e), NS_OK);
    assert_string_equal(r.model, "m");
    assert_int_equal(r.req.n_messages, 2); /* system, user */
    assert_true(r.tools);
    oai_request_release(&r);
    static const struct {
        const char *body, *msg;
    } bad[] = {
        {"{" MSG "}", "max_tokens: Extra inputs are not permitted"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":1}",
         "temperature: Extra inputs are not permitted"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}",
         "stream: Extra inputs are not permitted"},
        {"{\"model\":\"m\"}", "messages: Field required"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "model: Field required"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"robot\",\"content\":\"hi\"}]}", "messages.0.role"},
        {"{\"model\":", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(anthropic_count_request_parse(bad[i].body, strlen(bad[i].body), &r, &e), NS_ERR_INVALID);
        if (!strstr(e.message, bad[i].msg))
            fail_msg("%s: '%s' lacks '%s'", bad[i].body, e.message, bad[i].msg);
    }
    cJSON *a = anthropic_count_answer(17);
    assert_int_equal(usage_int(a, "input_tokens"), 17);
    assert_int_equal(cJSON_GetArraySize(a), 1);
    cJSON_Delete(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tools_in),
        cmocka_unit_test(test_tools_out),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_max_tokens),
        cmocka_unit_test(test_stream_usage),
        cmocka_unit_test(test_count_tokens_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
