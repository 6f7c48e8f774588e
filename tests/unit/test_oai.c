/* Unit tests: proto/oai (request bodies in, response bodies and batch lines out). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/proto/dialect.h"
#include "../../src/proto/oai.h"
#include "../../src/proto/stream.h"
#include "../../src/util/status.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *json, bool chat, struct oai_request *r, struct oai_error *e)
{
    return oai_request_parse(json, strlen(json), chat, r, e);
}

static void test_chat_ok(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}],"
                       "\"max_completion_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,\"stop\":[\"x\",\"yy\"],\"seed\":3,"
                       "\"top_k\":5,\"min_p\":0.1,\"repetition_penalty\":1.1,\"min_tokens\":2,\"ignore_eos\":true,"
                       "\"user\":\"u\",\"n\":1,\"logprobs\":false}";
    assert_int_equal(parse(body, true, &r, &e), NS_OK);
    assert_string_equal(r.model, "m");
    assert_int_equal(r.req.n_messages, 2);
    assert_string_equal(r.req.messages[0].role, "system"); /* developer -> system */
    assert_string_equal(r.req.messages[1].content, "a\nb");
    assert_int_equal(r.req.max_tokens, 7);
    assert_true(r.req.temperature > 0.49f && r.req.temperature < 0.51f);
    assert_int_equal(r.req.n_stop, 2);
    assert_string_equal(r.req.stop[1], "yy");
    assert_true(r.has_seed);
    assert_int_equal(r.req.top_k, 5);
    assert_int_equal(r.req.min_tokens, 2);
    assert_true(r.req.ignore_eos);
    oai_request_release(&r);
}

struct bad {
    const char *body;
    bool chat;
    int status;
    const char *param;
    const char *needle;
};

static void test_rejections(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"{\"model\":\"m\"}", true, NS_ERR_INVALID, "messages", "Missing required parameter: 'messages'"},
        {"{\"model\":\"m\",\"messages\":[]}", true, NS_ERR_INVALID, "messages", "empty array"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", true, NS_ERR_INVALID, "model", "'model'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", true, NS_ERR_INVALID, "messages", "wizard"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", true, NS_ERR_INVALID, "messages", "content"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", true,
         NS_ERR_UNSUPPORTED, "messages", "image_url"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":5}", true,
         NS_ERR_INVALID, "temperature", "maximum"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}", true,
         NS_ERR_INVALID, "temperature", "number"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", true,
         NS_ERR_INVALID, "max_tokens", "minimum"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1.5}", true,
         NS_ERR_INVALID, "max_tokens", "integer"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":17}", true, NS_ERR_UNSUPPORTED, "n", "at most 16"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":0}", true, NS_ERR_INVALID, "n", "minimum"},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"n\":200}", false, NS_ERR_INVALID, "n", "maximum"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}",
         true, NS_ERR_INVALID, "stop", "maximum length 4"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":-1}", true, NS_ERR_INVALID, "top_p", "minimum"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"frobnicate\":1}", true,
         NS_ERR_INVALID, NULL, "Unrecognized request argument supplied: frobnicate"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":1}", true, NS_ERR_INVALID, "logprobs", "boolean"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,\"top_logprobs\":21}", true, NS_ERR_INVALID, "top_logprobs", "maximum"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", true, NS_ERR_INVALID, "top_logprobs", "'logprobs' must be set to true"},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":6}", false, NS_ERR_INVALID, "logprobs", "maximum"},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":true}", false, NS_ERR_INVALID, "logprobs", "integer"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":[]}", true, NS_ERR_INVALID, "logit_bias", "expected an object"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":{\"abc\":1}}", true, NS_ERR_INVALID, "logit_bias", "'abc' is not a token id"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":{\"-3\":1}}", true, NS_ERR_INVALID, "logit_bias", "not a token id"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":{\"\":1}}", true, NS_ERR_INVALID, "logit_bias", "not a token id"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":{\"5\":101}}", true, NS_ERR_INVALID, "logit_bias", "token 5: expected a number from -100 to 100"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":{\"5\":\"x\"}}", true, NS_ERR_INVALID, "logit_bias", "token 5"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":3}", true, NS_ERR_INVALID, "response_format", "expected an object with a 'type'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"yaml\"}}", true, NS_ERR_INVALID, "response_format", "'yaml'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\"}}", true, NS_ERR_INVALID, "response_format", "'response_format.json_schema'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":[]}}", true, NS_ERR_INVALID, "response_format", "expected an object"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{}}}", true, NS_ERR_INVALID, "response_format", "'response_format.json_schema.name'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"a b\"}}}", true, NS_ERR_INVALID, "response_format", "1 to 64 characters"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"a\",\"strict\":1}}}", true, NS_ERR_INVALID, "response_format", "'response_format.json_schema.strict'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"a\",\"schema\":{\"type\":\"string\",\"format\":\"binary\"}}}}", true, NS_ERR_UNSUPPORTED, "response_format", "Invalid 'response_format.json_schema.schema': 'format' at '#' is not supported: llama.cpp does not enforce format 'binary'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"a\",\"schema\":{\"$ref\":\"#/x\"}}}}", true, NS_ERR_INVALID, "response_format", "cannot resolve $ref #/x"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_object\"},\"min_tokens\":2}", true, NS_ERR_UNSUPPORTED, "min_tokens", "cannot be combined with 'response_format'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_object\"},\"ignore_eos\":true}", true, NS_ERR_UNSUPPORTED, "ignore_eos", "cannot be combined"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", true, NS_ERR_INVALID, "tools", "expected an array"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]}", true, NS_ERR_INVALID, "messages", "only assistant messages"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"response_format\":{\"type\":\"json_object\"}}", true, NS_ERR_UNSUPPORTED, "response_format", "cannot be combined with 'tools'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":{}}]}", true, NS_ERR_INVALID, "messages", "'messages[0].tool_calls': expected an array"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\"}}]}]}", true, NS_ERR_INVALID, "messages", "'messages[0].tool_calls[0]'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"1\",\"tool_call_id\":5}]}", true, NS_ERR_INVALID, "messages", "tool_call_id"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"string\",\"pattern\":\"^(?=a)$\"}}}]}", true, NS_ERR_UNSUPPORTED, "tools", "'pattern' at '#'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}", true, NS_ERR_INVALID, "tools", "Invalid 'tools[0]'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{}}]}", true, NS_ERR_INVALID, "tools", "'tools[0].function.name'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"g\"}}}", true, NS_ERR_INVALID, "tool_choice", "no function named 'g'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":{\"type\":\"tool\"}}", true, NS_ERR_INVALID, "tool_choice", "Invalid 'tool_choice'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"sometimes\"}", true, NS_ERR_INVALID, "tool_choice", "expected 'none'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\",\"not\":{}}}}],\"tool_choice\":\"required\"}", true, NS_ERR_UNSUPPORTED, "tools", "Invalid 'tools[0].function.parameters'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"required\",\"response_format\":{\"type\":\"json_object\"}}", true, NS_ERR_UNSUPPORTED, "response_format", "cannot be combined with 'tools'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"chat_template_kwargs\":[]}", true, NS_ERR_INVALID, "chat_template_kwargs", "expected an object"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"chat_template_kwargs\":{\"enable_thinking\":\"no\"}}", true, NS_ERR_INVALID, "chat_template_kwargs", "expected a boolean"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"reasoning_format\":\"loud\"}", true, NS_ERR_INVALID, "reasoning_format", "expected 'none'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"reasoning_effort\":3}", true, NS_ERR_INVALID, "reasoning_effort", "expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"parallel_tool_calls\":1}", true, NS_ERR_INVALID, "parallel_tool_calls", "expected a boolean"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"type\":\"web\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}]}", true, NS_ERR_INVALID, "messages", "'messages[0].tool_calls[0]'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\",\"allOf\":[]}}}],\"tool_choice\":\"required\"}", true, NS_ERR_INVALID, "tools", "Invalid 'tools[0].function.parameters': 'allOf' at '#' must be a non-empty array"},

        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":3,\"min_tokens\":4}",
         true, NS_ERR_INVALID, "min_tokens", "max_tokens"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":\"yes\"}", true,
         NS_ERR_INVALID, "stream", "boolean"},
        {"{\"model\":\"m\"}", false, NS_ERR_INVALID, "prompt", "'prompt'"},
        {"{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", false, NS_ERR_UNSUPPORTED, "prompt", "single string"},
        {"{\"model\":\"m\",\"prompt\":\"a\",\"echo\":true}", false, NS_ERR_UNSUPPORTED, "echo", "echo"},
        {"{\"model\":\"m\",\"prompt\":\"a\",\"messages\":[]}", false, NS_ERR_INVALID, NULL, "messages"},
        {"[1]", true, NS_ERR_INVALID, NULL, "JSON object"},
        {"{", true, NS_ERR_INVALID, NULL, "parse"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct oai_request r;
        struct oai_error e;
        memset(&e, 0, sizeof(e));
        int rc = parse(cases[i].body, cases[i].chat, &r, &e);
        if (rc != cases[i].status)
            fail_msg("case %zu (%s): status %d, want %d (%s)", i, cases[i].body, rc, cases[i].status, e.message);
        if (cases[i].param)
            assert_string_equal(e.param, cases[i].param);
        else
            assert_null(e.param);
        if (!strstr(e.message, cases[i].needle))
            fail_msg("case %zu: message '%s' lacks '%s'", i, e.message, cases[i].needle);
    }
}

static void test_response_shapes(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    assert_int_equal(parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", true, &r, &e), NS_OK);
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    res.text = "hello \"world\"";
    res.text_len = strlen(res.text);
    res.finish = ENGINE_FINISH_LENGTH;
    res.prompt_tokens = 10;
    res.completion_tokens = 4;
    res.cached_tokens = 2;
    cJSON *body = oai_completion_body(&r, &res, "chatcmpl-1", "m", 1700000000);
    cJSON *line = oai_batch_line("cid-1", 200, body);
    char *s = cJSON_PrintUnformatted(line);
    cJSON_Delete(line);
    cJSON *back = cJSON_Parse(s);
    free(s);
    assert_non_null(back);
    assert_string_equal(cJSON_GetObjectItem(back, "custom_id")->valuestring, "cid-1");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(back, "error")));
    assert_int_equal(strncmp(cJSON_GetObjectItem(back, "id")->valuestring, "batch_req_", 10), 0);
    cJSON *resp = cJSON_GetObjectItem(back, "response");
    assert_int_equal(cJSON_GetObjectItem(resp, "status_code")->valueint, 200);
    assert_non_null(cJSON_GetObjectItem(resp, "request_id"));
    cJSON *b = cJSON_GetObjectItem(resp, "body");
    assert_string_equal(cJSON_GetObjectItem(b, "object")->valuestring, "chat.completion");
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(b, "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(c0, "finish_reason")->valuestring, "length");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "message"), "content")->valuestring, "hello \"world\"");
    cJSON *u = cJSON_GetObjectItem(b, "usage");
    assert_int_equal(cJSON_GetObjectItem(u, "total_tokens")->valueint, 14);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(u, "prompt_tokens_details"), "cached_tokens")->valueint, 2);
    cJSON_Delete(back);
    oai_request_release(&r);

    /* HTTP-style error line and no-response line */
    line = oai_batch_line("c2", 400, oai_error_body(NS_ERR_CONTEXT, "too long", "messages", NULL));
    cJSON *eb = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(line, "response"), "body"), "error");
    assert_string_equal(cJSON_GetObjectItem(eb, "type")->valuestring, "invalid_request_error");
    assert_string_equal(cJSON_GetObjectItem(eb, "code")->valuestring, "context_length_exceeded");
    assert_string_equal(cJSON_GetObjectItem(eb, "param")->valuestring, "messages");
    cJSON_Delete(line);
    line = oai_batch_line_noresponse("c3", NS_ERR_EXPIRED, "expired");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(line, "response")));
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(line, "error"), "code")->valuestring, "batch_expired");
    cJSON_Delete(line);
}

static void test_structured(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    /* json_schema: a grammar; strict accepted */
    assert_int_equal(parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                           "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"r-1\","
                           "\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
                           "\"required\":[\"a\"],\"additionalProperties\":false}}}}",
                           true, &r, &e),
                     NS_OK);
    assert_non_null(r.req.grammar);
    assert_non_null(strstr(r.req.grammar, "root ::= \"{\" space a-kv"));
    assert_false(r.tools);
    oai_request_release(&r);
    /* json_object, json_schema without a schema, text, tool_choice none: */
    const char *ok[] = {
        "\"response_format\":{\"type\":\"json_object\"}",
        "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\"}}",
        "\"response_format\":{\"type\":\"text\"}",
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"none\"",
        "\"tools\":[],\"tool_choice\":\"none\"",
        "\"tool_choice\":\"required\"",
    };
    for (int i = 0; i < 6; i++) {
        char body[512];
        snprintf(body, sizeof(body), "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s}", ok[i]);
        if (parse(body, true, &r, &e))
            fail_msg("%s: %s", body, e.message);
        assert_true((r.req.grammar != NULL) == (i < 2));
        assert_false(r.tools);
        assert_null(strstr(r.req.chat, "\"tools\""));
        oai_request_release(&r);
    }

    /* a named tool_choice: "required" among that one tool, in the chat JSON for the model's
     * template; the messages go as they came (developer too: llama.cpp maps it) */
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"be kind\"},{\"role\":\"user\","
             "\"content\":[{\"type\":\"text\",\"text\":\"x\"}]},{\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":\"c\"}],"
             "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_w\",\"description\":\"the weather\","
             "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}},"
             "{\"type\":\"function\",\"function\":{\"name\":\"other\"}}],"
             "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_w\"}},\"parallel_tool_calls\":false,"
             "\"chat_template_kwargs\":{\"enable_thinking\":false},\"reasoning_format\":\"none\"}");
    if (parse(body, true, &r, &e))
        fail_msg("%s", e.message);
    assert_true(r.tools);
    assert_null(r.req.grammar); /* the format's, made by the engine */
    cJSON *chat = cJSON_Parse(r.req.chat);
    assert_non_null(chat);
    cJSON *msgs = cJSON_GetObjectItem(chat, "messages");
    assert_int_equal(cJSON_GetArraySize(msgs), 3);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 0), "role")->valuestring, "developer");
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 1), "content")));
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 2), "tool_call_id")->valuestring, "c");
    cJSON *tl = cJSON_GetObjectItem(chat, "tools");
    assert_int_equal(cJSON_GetArraySize(tl), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(tl, 0), "function"), "name")->valuestring,
                        "get_w");
    assert_string_equal(cJSON_GetObjectItem(chat, "tool_choice")->valuestring, "required");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(chat, "parallel_tool_calls")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(chat, "chat_template_kwargs"), "enable_thinking")));
    assert_string_equal(cJSON_GetObjectItem(chat, "reasoning_format")->valuestring, "none");
    cJSON_Delete(chat);
    /* the answer: the calls the engine read back, content null, reasoning_content */
    struct engine_tool_call calls[2] = {{"call_a", "get_w", "{\"city\":\"Oslo\"}"}, {"call_b", "get_w", "{\"city\":\"Rome\"}"}};
    struct engine_result res = {.text = "", .finish = ENGINE_FINISH_STOP, .tool_calls = calls, .n_tool_calls = 2,
                                .reasoning = "hmm", .reasoning_len = 3};
    cJSON *b = oai_completion_body(&r, &res, "id", "m", 1);
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(b, "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(c0, "finish_reason")->valuestring, "tool_calls");
    cJSON *m = cJSON_GetObjectItem(c0, "message");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(m, "content")));
    assert_string_equal(cJSON_GetObjectItem(m, "reasoning_content")->valuestring, "hmm");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(m, "tool_calls")), 2);
    cJSON *call = cJSON_GetArrayItem(cJSON_GetObjectItem(m, "tool_calls"), 1);
    assert_string_equal(cJSON_GetObjectItem(call, "id")->valuestring, "call_b");
    assert_string_equal(cJSON_GetObjectItem(call, "type")->valuestring, "function");
    assert_null(cJSON_GetObjectItem(call, "index"));
    cJSON *f = cJSON_GetObjectItem(call, "function");
    assert_string_equal(cJSON_GetObjectItem(f, "name")->valuestring, "get_w");
    assert_string_equal(cJSON_GetObjectItem(f, "arguments")->valuestring, "{\"city\":\"Rome\"}");
    cJSON_Delete(b);
    /* a call cut by max_tokens: length; text with a call: content kept */
    res.finish = ENGINE_FINISH_LENGTH;
    assert_string_equal(oai_finish_reason(&r, &res), "length");
    res.finish = ENGINE_FINISH_STOP;
    res.text = "let me see";
    res.text_len = 10;
    b = oai_completion_body(&r, &res, "id", "m", 1);
    m = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(b, "choices"), 0), "message");
    assert_string_equal(cJSON_GetObjectItem(m, "content")->valuestring, "let me see");
    cJSON_Delete(b);
    oai_request_release(&r);
}

/* n choices: each in the body with its index, text and finish_reason; usage sums them */
/* tool_choice auto / required among several tools: every tool to the template; tool
 * calls in input messages go as they came */
static void test_tool_modes(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    static const char tools[] = "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_w\",\"parameters\":"
                                "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}},"
                                "{\"type\":\"function\",\"function\":{\"name\":\"ping\"}}]";
    char body[2048];
    for (int required = 0; required < 2; required++) {
        snprintf(body, sizeof(body),
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":null,"
                 "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get_w\",\"arguments\":"
                 "\"{\\\"city\\\":\\\"Oslo\\\"}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"sunny\"}],%s%s}",
                 tools, required ? ",\"tool_choice\":\"required\"" : "");
        if (parse(body, true, &r, &e))
            fail_msg("%s", e.message);
        assert_true(r.tools);
        assert_null(r.req.grammar);
        cJSON *chat = cJSON_Parse(r.req.chat);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(chat, "tools")), 2);
        assert_string_equal(cJSON_GetObjectItem(chat, "tool_choice")->valuestring, required ? "required" : "auto");
        cJSON *asst = cJSON_GetArrayItem(cJSON_GetObjectItem(chat, "messages"), 1);
        cJSON *tc = cJSON_GetArrayItem(cJSON_GetObjectItem(asst, "tool_calls"), 0);
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(tc, "function"), "arguments")->valuestring,
                            "{\"city\":\"Oslo\"}");
        cJSON_Delete(chat);
        /* the plain messages (upstream batch APIs) keep text only */
        assert_string_equal(r.req.messages[1].content, "");
        assert_string_equal(r.req.messages[2].content, "sunny");
        oai_request_release(&r);
    }
}

/* a tool's parameters reach the template (and the call's grammar, made from them) as the
 * guard rewrote them: a format as its bounded pattern, a bounded number as integers. As
 * sent, llama.cpp's grammar would hold neither (bounded numbers came back out of range). */
static void test_tool_parameters_held(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
                       "\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\",\"properties\":{"
                       "\"e\":{\"type\":\"string\",\"format\":\"email\"},\"u\":{\"type\":\"number\",\"minimum\":0,"
                       "\"maximum\":1}}}}}],\"tool_choice\":\"required\"}";
    if (parse(body, true, &r, &e))
        fail_msg("%s", e.message);
    cJSON *chat = cJSON_Parse(r.req.chat);
    cJSON *fn = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(chat, "tools"), 0), "function");
    /* held_parameters: what the grammar holds the calls to (the guard's rewrite) */
    cJSON *props = cJSON_GetObjectItem(cJSON_GetObjectItem(fn, "held_parameters"), "properties");
    cJSON *em = cJSON_GetObjectItem(props, "e"), *u = cJSON_GetObjectItem(props, "u");
    assert_null(cJSON_GetObjectItem(em, "format"));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(em, "pattern")));
    assert_string_equal(cJSON_GetObjectItem(u, "type")->valuestring, "integer");
    /* parameters: as sent, what the template shows (as llama-server shows it) */
    props = cJSON_GetObjectItem(cJSON_GetObjectItem(fn, "parameters"), "properties");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(props, "e"), "format")->valuestring, "email");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(props, "u"), "type")->valuestring, "number");
    cJSON_Delete(chat);
    oai_request_release(&r);
}

/* streamed: reasoning_content deltas, a tool call's head (index, id, type, name) then its
 * arguments, and finish_reason tool_calls */
static void test_stream_deltas(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    assert_int_equal(parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true}", true,
                           &r, &e),
                     NS_OK);
    struct stream s;
    stream_init(&s, 1u << 20);
    s.r = &r;
    s.chat = true;
    struct engine_delta d1 = {.text = "", .reasoning = "hm", .reasoning_len = 2, .tool_index = -1};
    struct engine_delta d2 = {.text = "", .tool_index = 0, .tool_id = "call_1", .tool_name = "get_w", .tool_args = ""};
    struct engine_delta d3 = {.text = "", .tool_index = 0, .tool_args = "{\"a\":1}"};
    struct engine_delta d4 = {.text = "", .tool_index = -1}; /* nothing new: no chunk */
    dialect_openai.stream_delta(&s, &d1);
    dialect_openai.stream_delta(&s, &d2);
    dialect_openai.stream_delta(&s, &d3);
    dialect_openai.stream_delta(&s, &d4);
    struct engine_tool_call calls[1] = {{"call_1", "get_w", "{\"a\":1}"}};
    struct engine_result res = {.text = "", .finish = ENGINE_FINISH_STOP, .tool_calls = calls, .n_tool_calls = 1};
    s.res = &res;
    struct buf out;
    buf_init(&out, 1u << 20);
    while (dialect_openai.stream_next(&s, &out) != STREAM_END)
        ;
    buf_append(&out, "", 1);
    const char *ev = out.p;
    const char *want[] = {"\"role\":\"assistant\"", "\"reasoning_content\":\"hm\"", "\"index\":0,\"id\":\"call_1\",\"type\":\"function\"",
                          "\"name\":\"get_w\",\"arguments\":\"\"", "\"arguments\":\"{\\\"a\\\":1}\"", "\"finish_reason\":\"tool_calls\"",
                          "[DONE]"};
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

/* issue 31.7: the streamed usage chunk (stream_options.include_usage) has the same usage
 * object as the non-streamed answer, completion_tokens_details included */
static void test_stream_usage(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    assert_int_equal(parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true,"
                           "\"stream_options\":{\"include_usage\":true}}",
                           true, &r, &e),
                     NS_OK);
    struct engine_result res = {.text = "ok", .text_len = 2, .finish = ENGINE_FINISH_STOP, .prompt_tokens = 12,
                                .cached_tokens = 8, .completion_tokens = 5, .reasoning_tokens = 3, .stop_index = -1};
    cJSON *body = oai_completion_body(&r, &res, "chatcmpl-1", "m", 0);
    cJSON *want = cJSON_DetachItemFromObject(body, "usage");
    cJSON_Delete(body);
    struct stream s;
    stream_init(&s, 1u << 20);
    s.r = &r;
    s.chat = true;
    s.include_usage = r.include_usage;
    s.res = &res;
    struct buf out;
    buf_init(&out, 1u << 20);
    while (dialect_openai.stream_next(&s, &out) != STREAM_END)
        ;
    buf_append(&out, "", 1);
    const char *at = strstr(out.p, "\"usage\":{");
    assert_non_null(at);
    const char *line = at;
    while (line > out.p && line[-1] != '\n')
        line--;
    line += strlen("data: ");
    cJSON *chunk = cJSON_ParseWithLength(line, (size_t)(strchr(line, '\n') - line));
    assert_non_null(chunk);
    assert_true(cJSON_Compare(cJSON_GetObjectItem(chunk, "usage"), want, true));
    cJSON_Delete(chunk);
    cJSON_Delete(want);
    buf_release(&out);
    stream_release(&s);
    oai_request_release(&r);
}

/* /v1/embeddings bodies: the four input shapes, encoding_format, dimensions; errors name
 * the parameter; a forwarding backend refuses the line */
static void test_embeddings_body(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    static const char *ok[] = {
        "{\"model\":\"m\",\"input\":\"hi\"}",
        "{\"model\":\"m\",\"input\":[\"a\",\"b\"],\"encoding_format\":\"base64\",\"dimensions\":8,\"user\":\"u\"}",
        "{\"model\":\"m\",\"input\":[1,2,3]}",
        "{\"model\":\"m\",\"input\":[[1,2],[3]]}",
    };
    static const int n_in[] = {1, 2, 1, 2};
    for (int i = 0; i < 4; i++) {
        cJSON *b = cJSON_Parse(ok[i]);
        if (oai_embeddings_from_json(b, &r, &e))
            fail_msg("%s: %s", ok[i], e.message);
        assert_true(r.embeddings);
        assert_int_equal(r.req.n_embed, n_in[i]);
        if (i == 1) {
            assert_true(r.embed_base64);
            assert_int_equal(r.req.embed_dimensions, 8);
        }
        if (i == 3) {
            assert_int_equal(r.req.embed[1].n_tokens, 1);
            assert_int_equal(r.req.embed[1].tokens[0], 3);
        }
        oai_request_release(&r);
    }
    static const struct {
        const char *body, *param, *msg;
    } bad[] = {
        {"{\"input\":\"x\"}", "model", "'model'"},
        {"{\"model\":\"m\"}", "input", "'input'"},
        {"{\"model\":\"m\",\"input\":[]}", "input", "empty array"},
        {"{\"model\":\"m\",\"input\":[\"\"]}", "input", "empty string"},
        {"{\"model\":\"m\",\"input\":[[]]}", "input", "empty array of tokens"},
        {"{\"model\":\"m\",\"input\":{}}", "input", "Invalid type"},
        {"{\"model\":\"m\",\"input\":[1.5]}", "input", "non-negative integers"},
        {"{\"model\":\"m\",\"input\":[\"a\",[1]]}", "input", "mixes"},
        {"{\"model\":\"m\",\"input\":\"x\",\"encoding_format\":\"int8\"}", "encoding_format", "'float' or 'base64'"},
        {"{\"model\":\"m\",\"input\":\"x\",\"dimensions\":0}", "dimensions", "minimum"},
        {"{\"model\":\"m\",\"input\":\"x\",\"user\":5}", "user", "string"},
        {"{\"model\":\"m\",\"input\":\"x\",\"n\":2}", NULL, "Unrecognized request argument supplied: n"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cJSON *b = cJSON_Parse(bad[i].body);
        int rc = oai_embeddings_from_json(b, &r, &e);
        if (rc == NS_OK || !strstr(e.message, bad[i].msg) ||
            (bad[i].param ? !e.param || strcmp(e.param, bad[i].param) : e.param != NULL))
            fail_msg("%s: rc %d param %s message %s", bad[i].body, rc, e.param ? e.param : "-", e.message);
    }
    /* 2049 inputs */
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "model", "m");
    cJSON *in = cJSON_AddArrayToObject(b, "input");
    for (int i = 0; i <= OAI_MAX_EMBED_INPUTS; i++)
        cJSON_AddItemToArray(in, cJSON_CreateString("x"));
    assert_int_equal(oai_embeddings_from_json(b, &r, &e), NS_ERR_INVALID);
    assert_non_null(strstr(e.message, "maximum length 2048"));
    assert_int_equal(oai_request_embeddings_line(cJSON_Parse(ok[0]), true, &r, &e), NS_ERR_UNSUPPORTED);
    assert_string_equal(e.param, "url");
    /* the answer: floats, or base64 of little-endian float32 */
    static const float vec[2] = {0.5f, -1.0f};
    struct engine_result res = {.embedding = vec, .n_embed = 1, .n_embd = 2, .prompt_tokens = 3};
    for (int base64 = 0; base64 < 2; base64++) {
        assert_int_equal(oai_embeddings_from_json(cJSON_Parse(base64 ? "{\"model\":\"m\",\"input\":\"x\",\"encoding_format\":\"base64\"}"
                                                                      : "{\"model\":\"m\",\"input\":\"x\"}"),
                                                  &r, &e),
                         NS_OK);
        cJSON *o = oai_completion_body(&r, &res, "", "m", 0);
        cJSON *d0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "data"), 0);
        assert_string_equal(cJSON_GetObjectItem(o, "object")->valuestring, "list");
        assert_string_equal(cJSON_GetObjectItem(d0, "object")->valuestring, "embedding");
        if (base64)
            assert_string_equal(cJSON_GetObjectItem(d0, "embedding")->valuestring, "AAAAPwAAgL8="); /* 0.5, -1 LE */
        else
            assert_true(cJSON_GetArrayItem(cJSON_GetObjectItem(d0, "embedding"), 1)->valuedouble == -1.0);
        assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "total_tokens")->valueint, 3);
        cJSON_Delete(o);
        oai_request_release(&r);
    }
}

static void test_choices(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    assert_int_equal(parse("{\"model\":\"m\",\"prompt\":\"x\",\"n\":3}", false, &r, &e), NS_OK);
    assert_int_equal(r.req.n, 3);
    struct engine_choice ch[3] = {
        {.text = "a", .text_len = 1, .finish = ENGINE_FINISH_STOP, .completion_tokens = 1},
        {.text = "bb", .text_len = 2, .finish = ENGINE_FINISH_LENGTH, .completion_tokens = 2},
        {.text = "c", .text_len = 1, .finish = ENGINE_FINISH_STOP, .completion_tokens = 4},
    };
    struct engine_result res = {.text = "a", .text_len = 1, .prompt_tokens = 5, .completion_tokens = 7,
                                .n_choices = 3, .choices = ch};
    cJSON *b = oai_completion_body(&r, &res, "id", "m", 1);
    cJSON *choices = cJSON_GetObjectItem(b, "choices");
    assert_int_equal(cJSON_GetArraySize(choices), 3);
    for (int i = 0; i < 3; i++) {
        cJSON *c = cJSON_GetArrayItem(choices, i);
        assert_int_equal(cJSON_GetObjectItem(c, "index")->valueint, i);
        assert_string_equal(cJSON_GetObjectItem(c, "text")->valuestring, ch[i].text);
        assert_string_equal(cJSON_GetObjectItem(c, "finish_reason")->valuestring, i == 1 ? "length" : "stop");
    }
    cJSON *u = cJSON_GetObjectItem(b, "usage");
    assert_int_equal(cJSON_GetObjectItem(u, "prompt_tokens")->valueint, 5);
    assert_int_equal(cJSON_GetObjectItem(u, "completion_tokens")->valueint, 7);
    assert_int_equal(cJSON_GetObjectItem(u, "total_tokens")->valueint, 12);
    cJSON_Delete(b);
    /* a deep copy outlives the original */
    struct engine_result copy;
    assert_int_equal(engine_result_copy(&copy, &res), NS_OK);
    assert_int_equal(copy.n_choices, 3);
    assert_string_equal(copy.choices[1].text, "bb");
    assert_ptr_not_equal(copy.choices[1].text, ch[1].text);
    engine_result_release(&copy);
    oai_request_release(&r);
}

static void test_logprobs(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    assert_int_equal(parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,"
                           "\"top_logprobs\":2,\"logit_bias\":{\"7\":-100,\"12\":3.5}}",
                           true, &r, &e),
                     NS_OK);
    assert_true(r.req.logprobs);
    assert_int_equal(r.req.top_logprobs, 2);
    assert_int_equal(r.req.n_logit_bias, 2);
    assert_int_equal(r.req.logit_bias[1].token, 12);
    assert_true(r.req.logit_bias[0].bias == -100.0f);
    /* two tokens "He" "\xC3" (half a character: shown as U+FFFD, bytes kept) */
    static const char text[] = "He\xC3lo";
    struct engine_token_logprob lp[2];
    memset(lp, 0, sizeof(lp));
    lp[0] = (struct engine_token_logprob){.token = 1, .logprob = -0.5f, .piece_off = 0, .piece_len = 2, .n_top = 2};
    lp[0].top[0].token = 1, lp[0].top[0].logprob = -0.5f, lp[0].top[0].piece_off = 0, lp[0].top[0].piece_len = 2;
    lp[0].top[1].token = 2, lp[0].top[1].logprob = -1.5f, lp[0].top[1].piece_off = 3, lp[0].top[1].piece_len = 2;
    lp[1] = (struct engine_token_logprob){.token = 3, .logprob = -2, .piece_off = 2, .piece_len = 1};
    struct engine_result res = {.text = "He", .text_len = 2, .logprobs = lp, .n_logprobs = 2, .logprob_text = text};
    cJSON *b = oai_completion_body(&r, &res, "id", "m", 1);
    cJSON *l = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(b, "choices"), 0), "logprobs");
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(l, "content"), 0);
    assert_string_equal(cJSON_GetObjectItem(c0, "token")->valuestring, "He");
    assert_true(cJSON_GetObjectItem(c0, "logprob")->valuedouble == -0.5);
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(c0, "bytes"), 1)->valueint, 'e');
    cJSON *t1 = cJSON_GetArrayItem(cJSON_GetObjectItem(c0, "top_logprobs"), 1);
    assert_string_equal(cJSON_GetObjectItem(t1, "token")->valuestring, "lo");
    cJSON *c1 = cJSON_GetArrayItem(cJSON_GetObjectItem(l, "content"), 1);
    assert_string_equal(cJSON_GetObjectItem(c1, "token")->valuestring, "\xEF\xBF\xBD");
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(c1, "bytes"), 0)->valueint, 0xC3);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(c1, "top_logprobs")), 0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(l, "refusal")));
    cJSON_Delete(b);
    oai_request_release(&r);

    /* completions: the legacy shape */
    assert_int_equal(parse("{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":2}", false, &r, &e), NS_OK);
    assert_true(r.req.logprobs);
    assert_int_equal(r.req.top_logprobs, 2);
    b = oai_completion_body(&r, &res, "id", "m", 1);
    l = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(b, "choices"), 0), "logprobs");
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(l, "tokens"), 0)->valuestring, "He");
    assert_true(cJSON_GetArrayItem(cJSON_GetObjectItem(l, "token_logprobs"), 1)->valuedouble == -2.0);
    cJSON *top0 = cJSON_GetArrayItem(cJSON_GetObjectItem(l, "top_logprobs"), 0);
    assert_true(cJSON_GetObjectItem(top0, "lo")->valuedouble == -1.5);
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(l, "text_offset"), 1)->valueint, 2);
    cJSON_Delete(b);
    oai_request_release(&r);
    /* logprobs 0: the chosen tokens only; absent: off */
    assert_int_equal(parse("{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":0}", false, &r, &e), NS_OK);
    assert_true(r.req.logprobs);
    assert_int_equal(r.req.top_logprobs, 0);
    oai_request_release(&r);
    assert_int_equal(parse("{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":null,\"logit_bias\":{}}", false, &r, &e), NS_OK);
    assert_false(r.req.logprobs);
    assert_int_equal(r.req.n_logit_bias, 0);
    oai_request_release(&r);
}

/* ids: 4 threads x 3,000 ids (each thread's 4 KB random pool refilled ~17 times): the
 * right shape, every one distinct; a buffer too small for the random part gets the prefix */
#define IDS_PER_THREAD 3000
#define ID_LEN 40
static void *ids_thread(void *arg)
{
    char *out = arg;
    for (int i = 0; i < IDS_PER_THREAD; i++)
        oai_make_id(out + (size_t)i * ID_LEN, ID_LEN, "req_");
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, ID_LEN);
}

static void test_ids(void **state)
{
    (void)state;
    enum { T = 4 };
    char *ids = calloc((size_t)T * IDS_PER_THREAD, ID_LEN);
    assert_non_null(ids);
    pthread_t th[T];
    for (int t = 0; t < T; t++)
        assert_int_equal(pthread_create(&th[t], NULL, ids_thread, ids + (size_t)t * IDS_PER_THREAD * ID_LEN), 0);
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    for (size_t i = 0; i < (size_t)T * IDS_PER_THREAD; i++) {
        const char *id = ids + i * ID_LEN;
        assert_int_equal(strlen(id), 4 + 24);
        assert_memory_equal(id, "req_", 4);
        for (const char *c = id + 4; *c; c++)
            assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", *c));
    }
    qsort(ids, (size_t)T * IDS_PER_THREAD, ID_LEN, cmp_id);
    for (size_t i = 1; i < (size_t)T * IDS_PER_THREAD; i++)
        assert_true(memcmp(ids + (i - 1) * ID_LEN, ids + i * ID_LEN, ID_LEN) != 0);
    free(ids);
    char small[5];
    oai_make_id(small, sizeof(small), "req_");
    assert_string_equal(small, "req_");
    char tiny[8];
    oai_make_id(tiny, sizeof(tiny), "req_");
    assert_int_equal(strlen(tiny), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_ok),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_response_shapes),
        cmocka_unit_test(test_structured),
        cmocka_unit_test(test_tool_modes),
        cmocka_unit_test(test_tool_parameters_held),
        cmocka_unit_test(test_stream_deltas),
        cmocka_unit_test(test_stream_usage),
        cmocka_unit_test(test_embeddings_body),
        cmocka_unit_test(test_choices),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
