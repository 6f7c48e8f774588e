/* Unit tests: backend/gemini_wire (OpenAI chat <-> Gemini GenerateContent). Covered: the
 * request mapping (system instruction, roles, multi-part content with inline images and
 * audio, assistant tool calls -> functionCall, tool results -> one functionResponse turn,
 * generationConfig, response_format json_schema/json_object/text, tools and every
 * tool_choice form), every refusal (each names its field), the response mapping (text,
 * thoughts, function calls -> tool_calls, every finishReason class, usage with thoughts and
 * cached tokens, a blocked prompt), google.rpc.Status -> HTTP code and OpenAI error, and
 * the batch state names (BATCH_STATE_* and JOB_STATE_*). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/backend/gemini_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *req_of(const char *json, char *err, size_t errlen, const char **param)
{
    cJSON *in = cJSON_Parse(json);
    assert_non_null(in);
    cJSON *g = gemini_wire_request(in, err, errlen, param);
    cJSON_Delete(in);
    return g;
}

/* the value at a dotted path ("contents.0.parts.1.text") */
static const cJSON *at(const cJSON *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save = NULL, *t = strtok_r(buf, ".", &save); t && o; t = strtok_r(NULL, ".", &save))
        o = (*t >= '0' && *t <= '9') ? cJSON_GetArrayItem(o, atoi(t)) : cJSON_GetObjectItemCaseSensitive(o, t);
    return o;
}

static const char *at_str(const cJSON *o, const char *path)
{
    const cJSON *v = at(o, path);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double at_num(const cJSON *o, const char *path)
{
    const cJSON *v = at(o, path);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void test_request_chat(void **state)
{
    (void)state;
    char err[400];
    const char *param;
    cJSON *g = req_of("{\"model\":\"m\",\"stream\":false,\"user\":\"u\",\"messages\":["
                      "{\"role\":\"system\",\"content\":\"Be brief.\"},"
                      "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"No lists.\"}]},"
                      "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is this?\"},"
                      "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBO\"}},"
                      "{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"UklG\",\"format\":\"wav\"}}]},"
                      "{\"role\":\"assistant\",\"content\":\"A cat.\"},"
                      "{\"role\":\"user\",\"content\":\"Sure?\"}],"
                      "\"temperature\":0.2,\"top_p\":0.9,\"top_k\":40,\"max_tokens\":100,\"max_completion_tokens\":50,"
                      "\"stop\":\"END\",\"seed\":7,\"n\":1,\"presence_penalty\":0.5,\"frequency_penalty\":0.25,"
                      "\"logprobs\":false,\"parallel_tool_calls\":true,\"response_format\":{\"type\":\"text\"}}",
                      err, sizeof(err), &param);
    assert_non_null(g);
    assert_null(cJSON_GetObjectItem(g, "model"));
    assert_string_equal(at_str(g, "systemInstruction.parts.0.text"), "Be brief.");
    assert_string_equal(at_str(g, "systemInstruction.parts.1.text"), "No lists.");
    assert_int_equal(cJSON_GetArraySize(at(g, "contents")), 3);
    assert_string_equal(at_str(g, "contents.0.role"), "user");
    assert_string_equal(at_str(g, "contents.0.parts.0.text"), "What is this?");
    assert_string_equal(at_str(g, "contents.0.parts.1.inlineData.mimeType"), "image/png");
    assert_string_equal(at_str(g, "contents.0.parts.1.inlineData.data"), "iVBO");
    assert_string_equal(at_str(g, "contents.0.parts.2.inlineData.mimeType"), "audio/wav");
    assert_string_equal(at_str(g, "contents.1.role"), "model");
    assert_string_equal(at_str(g, "contents.1.parts.0.text"), "A cat.");
    assert_string_equal(at_str(g, "contents.2.parts.0.text"), "Sure?");
    assert_true(at_num(g, "generationConfig.temperature") == 0.2);
    assert_true(at_num(g, "generationConfig.topP") == 0.9);
    assert_true(at_num(g, "generationConfig.topK") == 40);
    assert_true(at_num(g, "generationConfig.maxOutputTokens") == 50); /* max_completion_tokens wins */
    assert_string_equal(at_str(g, "generationConfig.stopSequences.0"), "END");
    assert_true(at_num(g, "generationConfig.seed") == 7);
    assert_true(at_num(g, "generationConfig.presencePenalty") == 0.5);
    assert_true(at_num(g, "generationConfig.frequencyPenalty") == 0.25);
    assert_null(at(g, "generationConfig.responseMimeType"));
    cJSON_Delete(g);

    /* no generation parameters: no generationConfig at all; stop as an array */
    g = req_of("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", err, sizeof(err), &param);
    assert_null(cJSON_GetObjectItem(g, "generationConfig"));
    assert_null(cJSON_GetObjectItem(g, "systemInstruction"));
    cJSON_Delete(g);
    g = req_of("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":[\"a\",\"b\"],\"max_tokens\":9}", err,
               sizeof(err), &param);
    assert_string_equal(at_str(g, "generationConfig.stopSequences.1"), "b");
    assert_true(at_num(g, "generationConfig.maxOutputTokens") == 9);
    cJSON_Delete(g);
}

static void test_request_json_and_tools(void **state)
{
    (void)state;
    char err[400];
    const char *param;
    cJSON *g = req_of("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":"
                      "\"json_schema\",\"json_schema\":{\"name\":\"n\",\"strict\":true,\"schema\":{\"type\":\"object\","
                      "\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]}}}}",
                      err, sizeof(err), &param);
    assert_non_null(g);
    assert_string_equal(at_str(g, "generationConfig.responseMimeType"), "application/json");
    assert_string_equal(at_str(g, "generationConfig.responseJsonSchema.properties.a.type"), "integer");
    cJSON_Delete(g);
    g = req_of("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_object\"}}",
               err, sizeof(err), &param);
    assert_string_equal(at_str(g, "generationConfig.responseMimeType"), "application/json");
    assert_null(at(g, "generationConfig.responseJsonSchema"));
    cJSON_Delete(g);

    /* a tool round trip: declarations, the model's calls, the answers in one turn */
    g = req_of("{\"messages\":[{\"role\":\"user\",\"content\":\"weather in Paris and Rome?\"},"
               "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
               "{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"
               "{\"id\":\"c2\",\"type\":\"function\",\"function\":{\"name\":\"weather\",\"arguments\":\"\"}}]},"
               "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"{\\\"temp\\\":21}\"},"
               "{\"role\":\"tool\",\"tool_call_id\":\"c2\",\"content\":[{\"type\":\"text\",\"text\":\"sunny\"}]},"
               "{\"role\":\"user\",\"content\":\"thanks\"}],"
               "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"weather\",\"description\":\"d\","
               "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}],"
               "\"tool_choice\":\"required\"}",
               err, sizeof(err), &param);
    assert_non_null(g);
    assert_int_equal(cJSON_GetArraySize(at(g, "contents")), 4);
    assert_string_equal(at_str(g, "contents.1.role"), "model");
    assert_string_equal(at_str(g, "contents.1.parts.0.functionCall.name"), "weather");
    assert_string_equal(at_str(g, "contents.1.parts.0.functionCall.args.city"), "Paris");
    assert_true(cJSON_IsObject(at(g, "contents.1.parts.1.functionCall.args")));
    assert_string_equal(at_str(g, "contents.2.role"), "user");
    assert_int_equal(cJSON_GetArraySize(at(g, "contents.2.parts")), 2);
    assert_string_equal(at_str(g, "contents.2.parts.0.functionResponse.name"), "weather");
    assert_true(at_num(g, "contents.2.parts.0.functionResponse.response.temp") == 21);
    assert_string_equal(at_str(g, "contents.2.parts.1.functionResponse.response.content"), "sunny");
    assert_string_equal(at_str(g, "contents.3.parts.0.text"), "thanks");
    assert_string_equal(at_str(g, "tools.0.functionDeclarations.0.name"), "weather");
    assert_string_equal(at_str(g, "tools.0.functionDeclarations.0.description"), "d");
    assert_string_equal(at_str(g, "tools.0.functionDeclarations.0.parametersJsonSchema.properties.city.type"), "string");
    assert_string_equal(at_str(g, "toolConfig.functionCallingConfig.mode"), "ANY");
    cJSON_Delete(g);

    static const struct {
        const char *choice, *mode, *only;
    } choices[] = {{"\"auto\"", "AUTO", NULL},
                   {"\"none\"", "NONE", NULL},
                   {"{\"type\":\"function\",\"function\":{\"name\":\"f\"}}", "ANY", "f"}};
    for (size_t i = 0; i < sizeof(choices) / sizeof(choices[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\","
                 "\"function\":{\"name\":\"f\"}}],\"tool_choice\":%s}",
                 choices[i].choice);
        g = req_of(body, err, sizeof(err), &param);
        assert_non_null(g);
        assert_string_equal(at_str(g, "toolConfig.functionCallingConfig.mode"), choices[i].mode);
        if (choices[i].only)
            assert_string_equal(at_str(g, "toolConfig.functionCallingConfig.allowedFunctionNames.0"), choices[i].only);
        else
            assert_null(at(g, "toolConfig.functionCallingConfig.allowedFunctionNames"));
        cJSON_Delete(g);
    }
}

static void test_request_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *body, *param, *says;
    } cases[] = {
        {"[1]", NULL, "JSON object"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logit_bias\":{\"1\":2}}", "logit_bias", "'logit_bias'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"audio\":{}}", "audio", "'audio'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"functions\":[]}", "functions", "'functions'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", "top_logprobs", "'top_logprobs'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"reasoning_effort\":\"low\"}", "reasoning_effort",
         "'reasoning_effort'"},
        {"{\"prompt\":\"once upon\"}", "prompt", "chat requests"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true}", "logprobs", "'logprobs'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", "n", "'n'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":\"1\"}", "n", "'n'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"parallel_tool_calls\":false}", "parallel_tool_calls",
         "parallel_tool_calls"},
        {"{\"messages\":[]}", "messages", "non-empty"},
        {"{\"model\":\"m\"}", "messages", "non-empty"},
        {"{\"messages\":[{\"content\":\"x\"}]}", "messages", "messages[0].role"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages", "messages[0].content"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
         "\"https://x/cat.png\"}}]}]}",
         "messages", "messages[0].content[0].image_url"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"x\","
         "\"format\":\"flac\"}}]}]}",
         "messages", "input_audio"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"file\","
         "\"file\":{}}]}]}",
         "messages", "messages[0].content[1]: content parts of type 'file'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\","
         "\"function\":{\"arguments\":\"{}\"}}]}]}",
         "messages", "messages[1].tool_calls[0].function.name"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\","
         "\"function\":{\"name\":\"f\",\"arguments\":\"[1]\"}}]}]}",
         "messages", "messages[1].tool_calls[0].function.arguments"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"tool\",\"tool_call_id\":\"nope\","
         "\"content\":\"r\"}]}",
         "messages", "tool_call_id 'nope'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\","
         "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c\","
         "\"content\":[{\"type\":\"image_url\"}]}]}",
         "messages", "messages[2]: a tool result"},
        {"{\"messages\":[{\"role\":\"function\",\"content\":\"x\"}]}", "messages", "role 'function'"},
        {"{\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", "messages", "no user or assistant"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}", "temperature", "'temperature'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":5}", "stop", "'stop'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\","
         "\"json_schema\":{\"name\":\"n\"}}}",
         "response_format", "json_schema.schema"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"grammar\"}}",
         "response_format", "'grammar'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", "tools", "'tools' must be an array"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"web_search\"}]}", "tools",
         "tools[0]"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"sometimes\"}", "tool_choice",
         "'tool_choice'"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":{\"type\":\"function\"}}", "tool_choice",
         "'tool_choice'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[400] = "";
        const char *param = "unset";
        cJSON *g = req_of(cases[i].body, err, sizeof(err), &param);
        if (g || !strstr(err, cases[i].says))
            fail_msg("case %zu (%s): got %s, err '%s'", i, cases[i].body, g ? "a request" : "NULL", err);
        if (cases[i].param)
            assert_string_equal(param, cases[i].param);
        else
            assert_null(param);
    }
}

static void test_response(void **state)
{
    (void)state;
    cJSON *in = cJSON_Parse(
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"let me think\",\"thought\":true},"
        "{\"text\":\"Hello\"},{\"text\":\", world\"}]},\"finishReason\":\"STOP\"}],"
        "\"usageMetadata\":{\"promptTokenCount\":10,\"candidatesTokenCount\":4,\"thoughtsTokenCount\":6,"
        "\"cachedContentTokenCount\":3,\"totalTokenCount\":20},\"modelVersion\":\"gemini-2.5-flash\"}");
    cJSON *o = gemini_wire_response(in, "flash", "b1-ns-1");
    assert_string_equal(at_str(o, "object"), "chat.completion");
    assert_string_equal(at_str(o, "id"), "chatcmpl-b1-ns-1");
    assert_string_equal(at_str(o, "model"), "flash");
    assert_string_equal(at_str(o, "choices.0.message.content"), "Hello, world");
    assert_string_equal(at_str(o, "choices.0.message.reasoning_content"), "let me think");
    assert_string_equal(at_str(o, "choices.0.finish_reason"), "stop");
    assert_true(at_num(o, "usage.prompt_tokens") == 10);
    assert_true(at_num(o, "usage.completion_tokens") == 10);
    assert_true(at_num(o, "usage.total_tokens") == 20);
    assert_true(at_num(o, "usage.completion_tokens_details.reasoning_tokens") == 6);
    assert_true(at_num(o, "usage.prompt_tokens_details.cached_tokens") == 3);
    cJSON_Delete(o);
    cJSON_Delete(in);

    in = cJSON_Parse("{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"weather\",\"args\":"
                     "{\"city\":\"Paris\"}}},{\"functionCall\":{\"name\":\"time\"}}]},\"finishReason\":\"STOP\"}]}");
    o = gemini_wire_response(in, "flash", "s");
    assert_true(cJSON_IsNull(at(o, "choices.0.message.content")));
    assert_string_equal(at_str(o, "choices.0.finish_reason"), "tool_calls");
    assert_string_equal(at_str(o, "choices.0.message.tool_calls.0.id"), "call_s_0");
    assert_string_equal(at_str(o, "choices.0.message.tool_calls.0.type"), "function");
    assert_string_equal(at_str(o, "choices.0.message.tool_calls.0.function.name"), "weather");
    assert_string_equal(at_str(o, "choices.0.message.tool_calls.0.function.arguments"), "{\"city\":\"Paris\"}");
    assert_string_equal(at_str(o, "choices.0.message.tool_calls.1.id"), "call_s_1");
    assert_string_equal(at_str(o, "choices.0.message.tool_calls.1.function.arguments"), "{}");
    assert_true(at_num(o, "usage.prompt_tokens") == 0);
    cJSON_Delete(o);
    cJSON_Delete(in);

    static const struct {
        const char *reason, *finish;
    } fr[] = {{"MAX_TOKENS", "length"},     {"SAFETY", "content_filter"}, {"RECITATION", "content_filter"},
              {"PROHIBITED_CONTENT", "content_filter"}, {"OTHER", "stop"}, {"MALFORMED_FUNCTION_CALL", "stop"}};
    for (size_t i = 0; i < sizeof(fr) / sizeof(fr[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body), "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},\"finishReason\":\"%s\"}]}",
                 fr[i].reason);
        in = cJSON_Parse(body);
        o = gemini_wire_response(in, "m", "s");
        assert_string_equal(at_str(o, "choices.0.finish_reason"), fr[i].finish);
        cJSON_Delete(o);
        cJSON_Delete(in);
    }
    /* a blocked prompt: no candidate at all */
    in = cJSON_Parse("{\"promptFeedback\":{\"blockReason\":\"SAFETY\"},\"usageMetadata\":{\"promptTokenCount\":5}}");
    o = gemini_wire_response(in, "m", "s");
    assert_string_equal(at_str(o, "choices.0.finish_reason"), "content_filter");
    assert_string_equal(at_str(o, "choices.0.message.content"), "");
    assert_true(at_num(o, "usage.prompt_tokens") == 5);
    cJSON_Delete(o);
    cJSON_Delete(in);
}

static void test_error_and_states(void **state)
{
    (void)state;
    static const struct {
        const char *status;
        long code;
        const char *type;
    } cases[] = {{"{\"code\":400,\"message\":\"bad thing\",\"status\":\"INVALID_ARGUMENT\"}", 400, "invalid_request_error"},
                 {"{\"code\":3,\"message\":\"bad\"}", 400, "invalid_request_error"},
                 {"{\"code\":8,\"message\":\"quota\"}", 429, "rate_limit_error"},
                 {"{\"status\":\"UNAVAILABLE\"}", 503, "server_error"},
                 {"{\"code\":404,\"message\":\"no model\"}", 404, "api_error"},
                 {"{\"message\":\"??\"}", 500, "server_error"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *st = cJSON_Parse(cases[i].status);
        long code = 0;
        cJSON *e = gemini_wire_error(st, &code);
        assert_int_equal(code, cases[i].code);
        assert_string_equal(at_str(e, "error.type"), cases[i].type);
        assert_non_null(at_str(e, "error.message"));
        cJSON_Delete(e);
        cJSON_Delete(st);
    }
    cJSON *st = cJSON_Parse("{\"code\":400,\"message\":\"bad thing\",\"status\":\"INVALID_ARGUMENT\"}");
    long code;
    cJSON *e = gemini_wire_error(st, &code);
    assert_string_equal(at_str(e, "error.message"), "bad thing");
    assert_string_equal(at_str(e, "error.code"), "INVALID_ARGUMENT");
    cJSON_Delete(e);
    cJSON_Delete(st);

    assert_int_equal(gemini_wire_state_of("BATCH_STATE_PENDING"), GEMINI_STATE_PENDING);
    assert_int_equal(gemini_wire_state_of("JOB_STATE_RUNNING"), GEMINI_STATE_RUNNING);
    assert_int_equal(gemini_wire_state_of("BATCH_STATE_SUCCEEDED"), GEMINI_STATE_SUCCEEDED);
    assert_int_equal(gemini_wire_state_of("JOB_STATE_FAILED"), GEMINI_STATE_FAILED);
    assert_int_equal(gemini_wire_state_of("BATCH_STATE_CANCELLED"), GEMINI_STATE_CANCELLED);
    assert_int_equal(gemini_wire_state_of("JOB_STATE_EXPIRED"), GEMINI_STATE_EXPIRED);
    assert_int_equal(gemini_wire_state_of("BATCH_STATE_UNSPECIFIED"), GEMINI_STATE_UNKNOWN);
    assert_int_equal(gemini_wire_state_of(NULL), GEMINI_STATE_UNKNOWN);
    assert_false(gemini_wire_state_ended(GEMINI_STATE_RUNNING));
    assert_false(gemini_wire_state_ended(GEMINI_STATE_UNKNOWN));
    assert_true(gemini_wire_state_ended(GEMINI_STATE_EXPIRED));
    assert_true(gemini_wire_state_ended(GEMINI_STATE_SUCCEEDED));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_chat),
        cmocka_unit_test(test_request_json_and_tools),
        cmocka_unit_test(test_request_refusals),
        cmocka_unit_test(test_response),
        cmocka_unit_test(test_error_and_states),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
