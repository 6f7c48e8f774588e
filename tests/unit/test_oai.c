/* Unit tests: api/oai (request bodies in, response bodies and batch lines out). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/api/oai.h"
#include "../../src/util/status.h"

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
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":3}", true, NS_ERR_UNSUPPORTED, "n", "n = 1"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}",
         true, NS_ERR_INVALID, "stop", "maximum length 4"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":-1}", true, NS_ERR_INVALID, "top_p", "minimum"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"frobnicate\":1}", true,
         NS_ERR_INVALID, NULL, "Unrecognized request argument supplied: frobnicate"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true}", true,
         NS_ERR_UNSUPPORTED, "logprobs", "logprobs"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_object\"}}",
         true, NS_ERR_UNSUPPORTED, "response_format", "json_object"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}",
         true, NS_ERR_UNSUPPORTED, "tools", "tools"},
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_ok),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_response_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
