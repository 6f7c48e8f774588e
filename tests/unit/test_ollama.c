/* Unit tests: proto/ollama (Ollama bodies in, Ollama answers and model descriptions out). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/proto/ollama.h"
#include "../../src/util/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse(const char *json, bool chat, struct oai_request *r, struct ollama_extra *ox, struct oai_error *e)
{
    return ollama_request_parse(json, strlen(json), chat, r, ox, e);
}

static bool near(float a, float b) { return a > b - 1e-4f && a < b + 1e-4f; }

static void test_chat_ok(void **state)
{
    (void)state;
    struct oai_request r;
    struct ollama_extra ox;
    struct oai_error e;
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
                       "{\"role\":\"user\",\"content\":\"hi\",\"images\":[]},{\"role\":\"assistant\"},"
                       "{\"role\":\"user\",\"content\":\"again\",\"thinking\":\"\"}],"
                       "\"options\":{\"num_predict\":7,\"temperature\":0.5,\"top_k\":5,\"top_p\":0.5,\"min_p\":0.1,"
                       "\"seed\":3,\"stop\":[\"x\",\"\",\"yy\"],\"repeat_penalty\":1.2,\"presence_penalty\":0.5,"
                       "\"frequency_penalty\":-0.5,\"num_ctx\":512,\"num_gpu\":99,\"use_mmap\":true,\"typical_p\":1,"
                       "\"mirostat\":0,\"tfs_z\":1,\"num_thread\":null},"
                       "\"keep_alive\":\"5m\",\"format\":\"\",\"think\":false,\"tools\":[],\"truncate\":true}";
    assert_int_equal(parse(body, true, &r, &ox, &e), NS_OK);
    assert_string_equal(r.model, "m");
    assert_true(r.stream); /* Ollama streams by default */
    assert_false(ox.load_only);
    assert_int_equal(ox.num_ctx, 512);
    assert_int_equal(r.req.n_messages, 4);
    assert_string_equal(r.req.messages[0].role, "system");
    assert_string_equal(r.req.messages[2].content, ""); /* content may be left out */
    assert_int_equal(r.req.max_tokens, 7);
    assert_true(near(r.req.temperature, 0.5f));
    assert_int_equal(r.req.top_k, 5);
    assert_true(near(r.req.top_p, 0.5f));
    assert_true(near(r.req.min_p, 0.1f));
    assert_true(r.has_seed);
    assert_int_equal(r.req.seed, 3);
    assert_int_equal(r.req.n_stop, 2); /* empty stop strings are dropped */
    assert_string_equal(r.req.stop[1], "yy");
    assert_true(near(r.req.repetition_penalty, 1.2f));
    assert_true(near(r.req.presence_penalty, 0.5f));
    assert_true(near(r.req.frequency_penalty, -0.5f));
    oai_request_release(&r);
}

static const cJSON *get(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v)
        fail_msg("field '%s' missing", k);
    return v;
}

/* tools, tool_calls (arguments as objects), tool results (tool_name) and think: into the
 * chat JSON; the answer's thinking and tool calls back in Ollama's shape */
static void test_tools_think(void **state)
{
    (void)state;
    struct oai_request r;
    struct ollama_extra ox;
    struct oai_error e;
    const char *body = "{\"model\":\"m\",\"think\":\"high\",\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},"
                       "{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"hmm\",\"tool_calls\":[{\"function\":"
                       "{\"name\":\"get_w\",\"arguments\":{\"city\":\"Oslo\"}}}]},{\"role\":\"tool\",\"content\":\"sunny\","
                       "\"tool_name\":\"get_w\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_w\","
                       "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]}";
    if (parse(body, true, &r, &ox, &e))
        fail_msg("%s", e.message);
    assert_true(r.tools);
    cJSON *chat = cJSON_Parse(r.req.chat);
    cJSON *m = cJSON_GetObjectItemCaseSensitive(chat, "messages");
    const cJSON *a = cJSON_GetArrayItem(m, 1);
    assert_string_equal(get(a, "reasoning_content")->valuestring, "hmm");
    const cJSON *f = get(cJSON_GetArrayItem(get(a, "tool_calls"), 0), "function");
    assert_string_equal(get(f, "name")->valuestring, "get_w");
    assert_string_equal(get(f, "arguments")->valuestring, "{\"city\":\"Oslo\"}");
    assert_string_equal(get(cJSON_GetArrayItem(m, 2), "name")->valuestring, "get_w");
    assert_int_equal(cJSON_GetArraySize(get(chat, "tools")), 1);
    assert_true(cJSON_IsTrue(get(get(chat, "chat_template_kwargs"), "enable_thinking")));
    assert_string_equal(get(chat, "reasoning_effort")->valuestring, "high");
    cJSON_Delete(chat);
    oai_request_release(&r);
    /* think false: the template is told; generate carries it too */
    assert_int_equal(parse("{\"model\":\"m\",\"prompt\":\"x\",\"think\":false}", false, &r, &ox, &e), NS_OK);
    assert_non_null(strstr(r.req.chat, "\"enable_thinking\":false"));
    oai_request_release(&r);

    /* the answer: message.thinking and message.tool_calls with object arguments */
    struct engine_tool_call calls[1] = {{"call_1", "get_w", "{\"city\":\"Rome\"}"}};
    struct engine_result res = {.text = "", .reasoning = "so", .reasoning_len = 2, .tool_calls = calls, .n_tool_calls = 1};
    cJSON *o = ollama_final(true, "m", &res, "x", 0);
    const cJSON *msg = get(o, "message");
    assert_string_equal(get(msg, "thinking")->valuestring, "so");
    const cJSON *fn = get(cJSON_GetArrayItem(get(msg, "tool_calls"), 0), "function");
    assert_string_equal(get(fn, "name")->valuestring, "get_w");
    assert_string_equal(get(get(fn, "arguments"), "city")->valuestring, "Rome");
    cJSON_Delete(o);
}

static void test_defaults_and_generate(void **state)
{
    (void)state;
    struct oai_request r;
    struct ollama_extra ox;
    struct oai_error e;
    /* Ollama's defaults where the request says nothing; a negative seed is a random one */
    assert_int_equal(parse("{\"model\":\"m\",\"prompt\":\"p\",\"system\":\"s\",\"stream\":false,"
                           "\"options\":{\"seed\":-1,\"num_predict\":-2}}",
                           false, &r, &ox, &e),
                     NS_OK);
    assert_false(r.stream);
    assert_false(r.has_seed);
    assert_int_equal(r.req.max_tokens, -1);
    assert_true(near(r.req.temperature, 0.8f));
    assert_int_equal(r.req.top_k, 40);
    assert_true(near(r.req.top_p, 0.9f));
    assert_true(near(r.req.repetition_penalty, 1.1f));
    /* the prompt goes through the chat template, after the system message */
    assert_int_equal(r.req.n_messages, 2);
    assert_string_equal(r.req.messages[0].role, "system");
    assert_string_equal(r.req.messages[1].role, "user");
    assert_string_equal(r.req.messages[1].content, "p");
    assert_null(r.req.prompt);
    oai_request_release(&r);

    /* raw: the prompt as it is */
    assert_int_equal(parse("{\"model\":\"m\",\"prompt\":\"p\",\"raw\":true,\"options\":{\"top_k\":0}}", false, &r, &ox,
                           &e),
                     NS_OK);
    assert_string_equal(r.req.prompt, "p");
    assert_null(r.req.messages);
    assert_int_equal(r.req.top_k, 0);
    oai_request_release(&r);

    /* no prompt, no messages: a request to load the model */
    assert_int_equal(parse("{\"model\":\"m\"}", false, &r, &ox, &e), NS_OK);
    assert_true(ox.load_only);
    oai_request_release(&r);
    assert_int_equal(parse("{\"model\":\"m\",\"prompt\":\"\",\"keep_alive\":0}", false, &r, &ox, &e), NS_OK);
    assert_true(ox.load_only);
    oai_request_release(&r);
    assert_int_equal(parse("{\"model\":\"m\",\"messages\":[]}", true, &r, &ox, &e), NS_OK);
    assert_true(ox.load_only);
    oai_request_release(&r);
}

struct bad {
    const char *body;
    bool chat;
    int status;
    const char *needle;
};

/* format: "json" and a JSON schema become grammars */
static void test_format(void **state)
{
    (void)state;
    struct oai_request r;
    struct ollama_extra ox;
    struct oai_error e;
    static const char a[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"format\":\"json\"}";
    assert_int_equal(ollama_request_parse(a, strlen(a), true, &r, &ox, &e), NS_OK);
    assert_non_null(r.req.grammar);
    assert_non_null(strstr(r.req.grammar, "root ::="));
    oai_request_release(&r);
    static const char b[] = "{\"model\":\"m\",\"prompt\":\"x\",\"format\":{\"type\":\"object\",\"properties\":"
                            "{\"age\":{\"type\":\"integer\"}},\"required\":[\"age\"]}}";
    assert_int_equal(ollama_request_parse(b, strlen(b), false, &r, &ox, &e), NS_OK);
    assert_non_null(strstr(r.req.grammar, "age"));
    oai_request_release(&r);
    static const char c[] = "{\"model\":\"m\",\"prompt\":\"x\",\"format\":\"\"}";
    assert_int_equal(ollama_request_parse(c, strlen(c), false, &r, &ox, &e), NS_OK);
    assert_null(r.req.grammar);
    oai_request_release(&r);
}

static void test_rejections(void **state)
{
    (void)state;
#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"
#define OPT(o) "{\"model\":\"m\"," MSG ",\"options\":{" o "}}"
    static const struct bad cases[] = {
        {"", true, NS_ERR_INVALID, "missing request body"},
        {"{", true, NS_ERR_INVALID, "not valid JSON"},
        {"[1]", true, NS_ERR_INVALID, "must be a JSON object"},
        {"{" MSG "}", true, NS_ERR_INVALID, "model is required"},
        {"{\"model\":\"\"," MSG "}", true, NS_ERR_INVALID, "model is required"},
        {"{\"model\":7," MSG "}", true, NS_ERR_INVALID, "model: expected a string"},
        {"{\"model\":\"m\"," MSG ",\"foo\":1}", true, NS_ERR_INVALID, "unknown field \"foo\""},
        {"{\"model\":\"m\",\"prompt\":\"x\"}", true, NS_ERR_INVALID, "unknown field \"prompt\""},
        {"{\"model\":\"m\"," MSG "}", false, NS_ERR_INVALID, "unknown field \"messages\""},
        {"{\"model\":\"m\",\"messages\":{}}", true, NS_ERR_INVALID, "messages: expected an array"},
        {"{\"model\":\"m\",\"messages\":[\"x\"]}", true, NS_ERR_INVALID, "messages[0]: expected an object"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"x\":1}]}", true, NS_ERR_INVALID,
         "messages[0]: unknown field \"x\""},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"wizard\"}]}", true, NS_ERR_INVALID, "messages[0].role"},
        {"{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}", true, NS_ERR_INVALID, "messages[0].role"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":3}]}", true, NS_ERR_INVALID, "messages[0].role: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[]}]}", true, NS_ERR_INVALID,
         "messages[0].content: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"images\":[\"aGk=\"]}]}", true, NS_ERR_UNSUPPORTED,
         "messages[0].images: images are not supported"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{}]}]}", true, NS_ERR_INVALID,
         "messages[0].tool_calls[0].function.name: required"},
        {"{\"model\":\"m\"," MSG ",\"format\":\"yaml\"}", true, NS_ERR_INVALID, "format: expected \"json\" or a JSON schema"},
        {"{\"model\":\"m\"," MSG ",\"format\":5}", true, NS_ERR_INVALID, "format: expected"},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"format\":{\"type\":\"string\",\"pattern\":\"^(?=a)$\"}}", false, NS_ERR_UNSUPPORTED,
         "format: 'pattern' at '#' is not supported"},
        {"{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\"}]}", true, NS_ERR_INVALID, "tools[0].function.name: required"},
        {"{\"model\":\"m\"," MSG ",\"tools\":{}}", true, NS_ERR_INVALID, "tools: expected an array"},
        {"{\"model\":\"m\"," MSG ",\"think\":\"very\"}", true, NS_ERR_INVALID, "think: expected true, false"},
        {"{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"not\":{}}}}]}", true, NS_ERR_UNSUPPORTED, "tools[0].function.parameters"},
        {"{\"model\":\"m\"," MSG ",\"format\":\"json\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}", true, NS_ERR_UNSUPPORTED, "format cannot be combined with tools"},
        {"{\"model\":\"m\"," MSG ",\"logprobs\":true}", true, NS_ERR_UNSUPPORTED, "logprobs:"},
        {"{\"model\":\"m\"," MSG ",\"top_logprobs\":3}", true, NS_ERR_UNSUPPORTED, "top_logprobs:"},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"images\":[\"aGk=\"]}", false, NS_ERR_UNSUPPORTED, "images:"},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"suffix\":\"y\"}", false, NS_ERR_UNSUPPORTED, "suffix: fill-in-the-middle"},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"template\":\"{{ .Prompt }}\"}", false, NS_ERR_UNSUPPORTED, "template:"},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"context\":[1,2]}", false, NS_ERR_UNSUPPORTED, "context: the deprecated"},
        {"{\"model\":\"m\",\"prompt\":3}", false, NS_ERR_INVALID, "prompt: expected a string"},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"system\":[]}", false, NS_ERR_INVALID, "system: expected a string"},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"raw\":1}", false, NS_ERR_INVALID, "raw: expected true or false"},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"raw\":true,\"system\":\"s\"}", false, NS_ERR_INVALID,
         "raw mode does not support"},
        {"{\"model\":\"m\"," MSG ",\"stream\":\"yes\"}", true, NS_ERR_INVALID, "stream: expected true or false"},
        {"{\"model\":\"m\"," MSG ",\"truncate\":1}", true, NS_ERR_INVALID, "truncate: expected true or false"},
        {"{\"model\":\"m\"," MSG ",\"keep_alive\":{}}", true, NS_ERR_INVALID, "keep_alive: expected a duration"},
        {"{\"model\":\"m\"," MSG ",\"options\":[]}", true, NS_ERR_INVALID, "options: expected an object"},
        {OPT("\"temprature\":1"), true, NS_ERR_INVALID, "options: unknown option \"temprature\""},
        {OPT("\"temperature\":\"hot\""), true, NS_ERR_INVALID, "options.temperature: expected a number"},
        {OPT("\"temperature\":-1"), true, NS_ERR_INVALID, "options.temperature: -1 is out of range"},
        {OPT("\"top_p\":2"), true, NS_ERR_INVALID, "options.top_p: 2 is out of range"},
        {OPT("\"min_p\":-0.5"), true, NS_ERR_INVALID, "options.min_p"},
        {OPT("\"repeat_penalty\":0"), true, NS_ERR_INVALID, "options.repeat_penalty"},
        {OPT("\"presence_penalty\":3"), true, NS_ERR_INVALID, "options.presence_penalty"},
        {OPT("\"frequency_penalty\":-3"), true, NS_ERR_INVALID, "options.frequency_penalty"},
        {OPT("\"top_k\":1.5"), true, NS_ERR_INVALID, "options.top_k: expected an integer"},
        {OPT("\"num_predict\":\"10\""), true, NS_ERR_INVALID, "options.num_predict: expected an integer"},
        {OPT("\"use_mmap\":1"), true, NS_ERR_INVALID, "options.use_mmap: expected true or false"},
        {OPT("\"stop\":\"x\""), true, NS_ERR_INVALID, "options.stop: expected an array of strings"},
        {OPT("\"stop\":[\"x\",1]"), true, NS_ERR_INVALID, "options.stop: expected an array of strings"},
        {OPT("\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]"), true, NS_ERR_INVALID, "at most 4 stop sequences"},
        {OPT("\"seed\":5000000000"), true, NS_ERR_INVALID, "options.seed"},
        {OPT("\"num_ctx\":0"), true, NS_ERR_INVALID, "options.num_ctx: expected a positive integer"},
        {OPT("\"typical_p\":0.5"), true, NS_ERR_UNSUPPORTED, "options.typical_p"},
        {OPT("\"mirostat\":2"), true, NS_ERR_UNSUPPORTED, "options.mirostat"},
    };
#undef OPT
#undef MSG
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct oai_request r;
        struct ollama_extra ox;
        struct oai_error e;
        int rc = parse(cases[i].body, cases[i].chat, &r, &ox, &e);
        if (rc != cases[i].status || !strstr(e.message, cases[i].needle))
            fail_msg("case %zu (%s): got status %d, message '%s'", i, cases[i].body, rc, rc ? e.message : "");
        assert_null(r.root_); /* released on failure */
    }
}

static void test_num_ctx_and_names(void **state)
{
    (void)state;
    struct oai_error e;
    struct ollama_extra ox = {.num_ctx = 0};
    assert_int_equal(ollama_check_num_ctx(&ox, 2048, &e), NS_OK);
    ox.num_ctx = 2048;
    assert_int_equal(ollama_check_num_ctx(&ox, 2048, &e), NS_OK);
    ox.num_ctx = 2049;
    assert_int_equal(ollama_check_num_ctx(&ox, 2048, &e), NS_ERR_INVALID);
    assert_non_null(strstr(e.message, "options.num_ctx: 2049 is more than the 2048 tokens"));

    assert_true(ollama_name_matches("tiny", "tiny"));
    assert_true(ollama_name_matches("tiny", "tiny:latest"));
    assert_false(ollama_name_matches("tiny", "tiny:7b"));
    assert_false(ollama_name_matches("tiny", "tin"));
    assert_false(ollama_name_matches("tiny", "tinyx"));
    assert_true(ollama_name_matches("m:q4", "m:q4"));

    char name[8];
    const char *b = "{\"model\":\"abc\"}";
    assert_int_equal(ollama_model_field(b, strlen(b), name, sizeof(name), &e), NS_OK);
    assert_string_equal(name, "abc");
    b = "{\"name\":\"old\",\"verbose\":true}"; /* the field's older name */
    assert_int_equal(ollama_model_field(b, strlen(b), name, sizeof(name), &e), NS_OK);
    assert_string_equal(name, "old");
    b = "{\"verbose\":true}";
    assert_int_equal(ollama_model_field(b, strlen(b), name, sizeof(name), &e), NS_ERR_INVALID);
    assert_string_equal(e.message, "model is required");
    b = "{\"model\":\"much-too-long\"}";
    assert_int_equal(ollama_model_field(b, strlen(b), name, sizeof(name), &e), NS_ERR_INVALID);
    assert_non_null(strstr(e.message, "too long"));
    assert_int_equal(ollama_model_field("x", 1, name, sizeof(name), &e), NS_ERR_INVALID);
    assert_int_equal(ollama_model_field("", 0, name, sizeof(name), &e), NS_ERR_INVALID);
    assert_string_equal(e.message, "missing request body");
}


static void test_answers(void **state)
{
    (void)state;
    cJSON *o = ollama_chunk(true, "m", "hello", 3);
    assert_string_equal(get(get(o, "message"), "content")->valuestring, "hel");
    assert_string_equal(get(get(o, "message"), "role")->valuestring, "assistant");
    assert_true(cJSON_IsFalse(get(o, "done")));
    /* RFC 3339 with microseconds, UTC */
    const char *t = get(o, "created_at")->valuestring;
    assert_int_equal(strlen(t), 27);
    assert_int_equal(t[26], 'Z');
    cJSON_Delete(o);
    o = ollama_chunk(false, "m", "hi", 2);
    assert_string_equal(get(o, "response")->valuestring, "hi");
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "message"));
    cJSON_Delete(o);

    struct engine_result res = {.finish = ENGINE_FINISH_LENGTH, .prompt_tokens = 12, .completion_tokens = 5,
                                .t_admit = 10.5, .t_first = 10.75, .t_end = 11.0};
    o = ollama_final(false, "m", &res, "full text", 10.0);
    assert_true(cJSON_IsTrue(get(o, "done")));
    assert_string_equal(get(o, "done_reason")->valuestring, "length");
    assert_string_equal(get(o, "response")->valuestring, "full text");
    assert_true(get(o, "total_duration")->valuedouble == 1e9);
    assert_true(get(o, "load_duration")->valuedouble == 5e8);
    assert_true(get(o, "prompt_eval_duration")->valuedouble == 2.5e8);
    assert_true(get(o, "eval_duration")->valuedouble == 2.5e8);
    assert_int_equal(get(o, "prompt_eval_count")->valueint, 12);
    assert_int_equal(get(o, "eval_count")->valueint, 5);
    cJSON_Delete(o);
    /* no token sampled: no time is counted twice, none is negative */
    res = (struct engine_result){.finish = ENGINE_FINISH_STOP, .t_admit = 10.5, .t_first = 0, .t_end = 11.0};
    o = ollama_final(true, "m", &res, "", 10.0);
    assert_string_equal(get(o, "done_reason")->valuestring, "stop");
    assert_true(get(o, "prompt_eval_duration")->valuedouble == 5e8);
    assert_true(get(o, "eval_duration")->valuedouble == 0);
    assert_string_equal(get(get(o, "message"), "content")->valuestring, "");
    cJSON_Delete(o);

    o = ollama_load_answer(true, "m");
    assert_string_equal(get(o, "done_reason")->valuestring, "load");
    assert_string_equal(get(get(o, "message"), "content")->valuestring, "");
    cJSON_Delete(o);
    o = ollama_load_answer(false, "m");
    assert_string_equal(get(o, "response")->valuestring, "");
    cJSON_Delete(o);
    o = ollama_error("boom");
    assert_string_equal(get(o, "error")->valuestring, "boom");
    cJSON_Delete(o);
    o = ollama_version();
    assert_string_equal(get(o, "version")->valuestring, OLLAMA_API_VERSION);
    cJSON_Delete(o);
}

static void test_sizes(void **state)
{
    (void)state;
    char s[32];
    static const struct {
        uint64_t n;
        const char *want;
    } cases[] = {{999, "999"},          {2122048, "2.12M"},    {494032768, "494.03M"}, {7000000000ull, "7B"},
                 {8030261248ull, "8.0B"}, {1500, "2K"},       {3000000, "3M"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ollama_parameter_size(cases[i].n, s, sizeof(s));
        assert_string_equal(s, cases[i].want);
    }
    assert_string_equal(ollama_quantization(0), "F32");
    assert_string_equal(ollama_quantization(7), "Q8_0");
    assert_string_equal(ollama_quantization(15), "Q4_K_M");
    assert_string_equal(ollama_quantization(32), "BF16");
    assert_string_equal(ollama_quantization(4), "unknown"); /* removed from llama.cpp */
    assert_string_equal(ollama_quantization(-1), "unknown");
    assert_string_equal(ollama_quantization(1000), "unknown");
}

static void test_models(void **state)
{
    (void)state;
    char path[] = "/tmp/nightshift-ollama-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "GGUF1234", 8), 8);
    close(fd);
    struct ollama_model ms[2];
    memset(ms, 0, sizeof(ms));
    ms[0].name = "a";
    ms[0].path = path;
    ms[0].chat_template = "chatml";
    snprintf(ms[0].info.arch, sizeof(ms[0].info.arch), "llama");
    ms[0].info.file_type = 7;
    ms[0].info.n_params = 494032768;
    ms[0].info.n_ctx_seq = 2048;
    ms[0].info.n_ctx_train = 32768;
    ms[1] = ms[0];
    ms[1].name = "gone";
    ms[1].path = "/nonexistent/nightshift/model.gguf";

    cJSON *o = ollama_list(ms, 2, false);
    const cJSON *a = cJSON_GetArrayItem(get(o, "models"), 0);
    assert_string_equal(get(a, "name")->valuestring, "a");
    assert_string_equal(get(a, "model")->valuestring, "a");
    assert_int_equal(get(a, "size")->valueint, 8);
    assert_int_equal(strlen(get(a, "digest")->valuestring), 64);
    assert_non_null(get(a, "modified_at")->valuestring);
    const cJSON *d = get(a, "details");
    assert_string_equal(get(d, "format")->valuestring, "gguf");
    assert_string_equal(get(d, "family")->valuestring, "llama");
    assert_string_equal(cJSON_GetArrayItem(get(d, "families"), 0)->valuestring, "llama");
    assert_string_equal(get(d, "parameter_size")->valuestring, "494.03M");
    assert_string_equal(get(d, "quantization_level")->valuestring, "Q8_0");
    assert_null(cJSON_GetObjectItemCaseSensitive(a, "expires_at"));
    /* the digest is stable while the file is unchanged */
    cJSON *o2 = ollama_list(ms, 1, false);
    assert_string_equal(get(cJSON_GetArrayItem(get(o2, "models"), 0), "digest")->valuestring,
                        get(a, "digest")->valuestring);
    cJSON_Delete(o2);
    const cJSON *g = cJSON_GetArrayItem(get(o, "models"), 1);
    assert_int_equal(get(g, "size")->valueint, 0); /* a file gone since loading is still listed */
    assert_string_not_equal(get(g, "digest")->valuestring, get(a, "digest")->valuestring);
    cJSON_Delete(o);

    o = ollama_list(ms, 1, true);
    a = cJSON_GetArrayItem(get(o, "models"), 0);
    assert_int_equal(get(a, "context_length")->valueint, 2048);
    assert_int_equal(get(a, "size_vram")->valueint, 0);
    assert_non_null(get(a, "expires_at")->valuestring);
    cJSON_Delete(o);

    o = ollama_show(&ms[0]);
    assert_non_null(strstr(get(o, "modelfile")->valuestring, "FROM /tmp/nightshift-ollama-test-"));
    assert_non_null(strstr(get(o, "parameters")->valuestring, "2048"));
    assert_string_equal(get(o, "template")->valuestring, "chatml");
    assert_string_equal(get(get(o, "details"), "quantization_level")->valuestring, "Q8_0");
    const cJSON *mi = get(o, "model_info");
    assert_string_equal(get(mi, "general.architecture")->valuestring, "llama");
    assert_int_equal(get(mi, "llama.context_length")->valueint, 32768);
    assert_true(get(mi, "general.parameter_count")->valuedouble == 494032768.0);
    assert_string_equal(cJSON_GetArrayItem(get(o, "capabilities"), 0)->valuestring, "completion");
    assert_non_null(get(o, "modified_at")->valuestring);
    cJSON_Delete(o);
    unlink(path);
}

/* issue 31.8: /api/embed and /api/embeddings bodies into embeddings requests; their answers */
static void test_embed(void **state)
{
    (void)state;
    struct oai_request r;
    struct oai_error e;
    const char *many = "{\"model\":\"emb\",\"input\":[\"a\",\"bc\"],\"keep_alive\":\"5m\",\"options\":{\"num_thread\":2}}";
    assert_int_equal(ollama_embed_parse(many, strlen(many), false, &r, &e), NS_OK);
    assert_true(r.embeddings);
    assert_true(r.req.embed_truncate); /* Ollama's default */
    assert_int_equal(r.req.n_embed, 2);
    assert_string_equal(r.req.embed[1].text, "bc");
    oai_request_release(&r);
    const char *one = "{\"model\":\"emb\",\"input\":\"a\",\"truncate\":false,\"dimensions\":8}";
    assert_int_equal(ollama_embed_parse(one, strlen(one), false, &r, &e), NS_OK);
    assert_false(r.req.embed_truncate);
    assert_int_equal(r.req.n_embed, 1);
    assert_int_equal(r.req.embed_dimensions, 8);
    oai_request_release(&r);
    const char *legacy = "{\"model\":\"emb\",\"prompt\":\"hello\"}";
    assert_int_equal(ollama_embed_parse(legacy, strlen(legacy), true, &r, &e), NS_OK);
    assert_int_equal(r.req.n_embed, 1);
    assert_string_equal(r.req.embed[0].text, "hello");
    oai_request_release(&r);
    /* nothing to embed is no error: no inputs */
    static const char *const empty[] = {"{\"model\":\"emb\",\"input\":[]}", "{\"model\":\"emb\",\"input\":\"\"}",
                                        "{\"model\":\"emb\"}"};
    for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
        assert_int_equal(ollama_embed_parse(empty[i], strlen(empty[i]), false, &r, &e), NS_OK);
        assert_int_equal(r.req.n_embed, 0);
        oai_request_release(&r);
    }
    static const struct {
        const char *body;
        bool legacy;
        const char *msg;
    } bad[] = {
        {"{\"input\":\"a\"}", false, "model is required"},
        {"{\"model\":\"emb\",\"input\":[\"a\",2]}", false, "input[1]: expected a string"},
        {"{\"model\":\"emb\",\"input\":5}", false, "input: expected a string or an array of strings"},
        {"{\"model\":\"emb\",\"input\":\"a\",\"prompt\":\"b\"}", false, "unknown field \"prompt\""},
        {"{\"model\":\"emb\",\"prompt\":[\"a\"]}", true, "prompt: expected a string"},
        {"{\"model\":\"emb\",\"prompt\":\"a\",\"truncate\":true}", true, "unknown field \"truncate\""},
        {"{\"model\":\"emb\",\"input\":\"a\",\"truncate\":1}", false, "truncate: expected true or false"},
        {"{\"model\":\"emb\",\"input\":\"a\",\"dimensions\":-1}", false, "dimensions: expected a positive integer"},
        {"{\"model\":\"emb\",\"input\":\"a\",\"options\":{\"temprature\":1}}", false, "unknown option"},
        {"[1]", false, "must be a JSON object"},
        {"", false, "missing request body"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_not_equal(ollama_embed_parse(bad[i].body, strlen(bad[i].body), bad[i].legacy, &r, &e), NS_OK);
        if (!strstr(e.message, bad[i].msg))
            fail_msg("%s: '%s' lacks '%s'", bad[i].body, e.message, bad[i].msg);
    }
    /* answers: the vectors in Ollama's shapes */
    const float v[4] = {0.5f, 0.5f, 1.0f, 0.0f};
    struct engine_result res = {.embedding = v, .n_embed = 2, .n_embd = 2, .prompt_tokens = 7, .t_admit = 1.5,
                                .t_end = 2.0};
    cJSON *a = ollama_embed_answer(false, "emb", &res, 1.0);
    assert_string_equal(cJSON_GetObjectItem(a, "model")->valuestring, "emb");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(a, "embeddings")), 2);
    assert_true(cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetObjectItem(a, "embeddings"), 1), 0)->valuedouble == 1.0);
    assert_int_equal(cJSON_GetObjectItem(a, "prompt_eval_count")->valueint, 7);
    assert_true(cJSON_GetObjectItem(a, "total_duration")->valuedouble == 1e9);
    assert_true(cJSON_GetObjectItem(a, "load_duration")->valuedouble == 5e8);
    cJSON_Delete(a);
    a = ollama_embed_answer(true, "emb", &res, 1.0);
    assert_int_equal(cJSON_GetArraySize(a), 1);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(a, "embedding")), 2);
    cJSON_Delete(a);
    a = ollama_embed_answer(false, "emb", NULL, 1.0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(a, "embeddings")), 0);
    cJSON_Delete(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_ok),          cmocka_unit_test(test_defaults_and_generate),
        cmocka_unit_test(test_tools_think),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_rejections),       cmocka_unit_test(test_num_ctx_and_names),
        cmocka_unit_test(test_answers),          cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_embed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
