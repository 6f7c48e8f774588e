/* Unit tests: cli/config (the --config INI file): a good file read whole; every kind of bad
 * file refused with the file, the line and the fix; what a model section needs decided by
 * its backend's capabilities (backend.h: local_file), never by its kind's name; providers
 * (`provider = groq`: backend, url and key variable by default, their limits enforced,
 * completion_window parsed) and every way to get them wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/cli/config.h"
#include "../../src/util/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_path[64];

static const char *write_ini(const char *text)
{
    snprintf(g_path, sizeof(g_path), "/tmp/ns-config-XXXXXX");
    int fd = mkstemp(g_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return g_path;
}

static void test_good_file(void **state)
{
    (void)state;
    setenv("NS_TEST_UPSTREAM_KEY", "sk-test", 1);
    struct config *c = NULL;
    char err[512] = "";
    const char *p = write_ini("[server]\nlisten = 127.0.0.1:9\n\n"
                              "[model local-one]\nbackend = local\npath = /m/one.gguf\ninteractive_step_ms = 25\n\n"
                              "[model up]\nbackend = openai-http\nurl = https://api.example.com/v1\n"
                              "api_key_env = NS_TEST_UPSTREAM_KEY\nconcurrency = 8\nprice_input = 0.15\n\n"
                              "spill_to = off\non_failure = fallback\nspill_turnaround = 30\n\n"
                              "[model off]\nbackend = anthropic-batch\nurl = https://api.example.com/v1\n\n"
                              /* a kind with its provider's own URL needs none */
                              "[model gem]\nbackend = gemini-batch\nupstream_model = gemini-2.5-flash\n");
    int rc = config_load(p, NULL, &c, err, sizeof(err));
    unlink(p);
    if (rc)
        fail_msg("%s", err);
    assert_int_equal(c->n_server, 1);
    assert_string_equal(c->server[0].key, "listen");
    assert_int_equal(c->n_models, 4);
    assert_string_equal(c->models[3].conf.kind, "gemini-batch");
    assert_null(c->models[3].conf.url); /* the backend's default_url applies */
    assert_string_equal(c->models[0].conf.kind, "local");
    assert_string_equal(c->models[0].path, "/m/one.gguf");
    assert_true(c->models[0].has_step_ms && c->models[0].interactive_step_ms == 25);
    assert_false(c->models[1].has_step_ms);
    assert_string_equal(c->models[1].conf.api_key, "sk-test");
    assert_int_equal(c->models[1].conf.concurrency, 8);
    assert_true(c->models[1].conf.price_input > 0.14 && c->models[1].conf.price_input < 0.16);
    assert_string_equal(c->models[1].spill_to, "off");
    assert_true(c->models[1].on_failure_fallback);
    assert_true(c->models[1].spill_turnaround_s == 30);
    assert_null(c->models[0].spill_to);
    assert_false(c->models[0].on_failure_fallback);
    assert_true(c->models[0].spill_turnaround_s == 60 && c->models[0].spill_margin > 0.19);
    config_free(c);
}

static void test_bad_files(void **state)
{
    (void)state;
    unsetenv("NS_TEST_UNSET_KEY");
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"[model m]\nbackend = nope\n", ":2: [model m]: unknown backend 'nope'"},
        {"[model m]\nbackend = local\n", "[model m]: backend local needs path"},
        {"[model m]\nbackend = local\npath = /x.gguf\nurl = http://h/v1\n", "are for upstream backends, not local"},
        {"[model m]\nbackend = openai-http\n", "[model m]: backend openai-http needs url"},
        {"[model m]\nbackend = openai-http\nurl = http://h/v1\npath = /x.gguf\n", "path is for backend local"},
        {"[model m]\nbackend = openai-http\nurl = ftp://h\n", "url must start with http:// or https://"},
        {"[model m]\nbackend = openai-http\nurl = http://h/v1\napi_key = sk\n", "keys are not read from the config file"},
        {"[model m]\nbackend = openai-http\nurl = http://h/v1\napi_key_env = NS_TEST_UNSET_KEY\n", "which is not set"},
        {"[model m]\nbackend = openai-http\nurl = http://h/v1\nconcurrency = 0\n", "concurrency"},
        {"[model m]\nbackend = openai-http\nurl = http://h/v1\nsurprise = 1\n", "unknown key 'surprise'"},
        {"[model m]\nbackend = local\npath = /x.gguf\ninteractive_step_ms = soon\n",
         "interactive_step_ms must be auto, off or milliseconds from 1 to 60000, not 'soon'"},
        {"[model m]\nbackend = openai-http\nurl = http://h/v1\ninteractive_step_ms = 20\n",
         "interactive_step_ms is for backend local"},
        /* spill-over and fail-over */
        {"[model m]\nbackend = openai-http\nurl = http://h/v1\nspill_to = ghost\n",
         "[model m]: spill_to names 'ghost', which is no [model] section of this file"},
        {"[model m]\nbackend = openai-http\nurl = http://h/v1\nspill_to = m\n", "[model m]: spill_to names the model itself"},
        {"[model a]\nbackend = openai-http\nurl = http://h/v1\nspill_to = b\n"
         "[model b]\nbackend = openai-http\nurl = http://h/v1\nspill_to = c\n"
         "[model c]\nbackend = openai-http\nurl = http://h/v1\nspill_to = a\n",
         "[model a]: spill_to makes a cycle (a -> b -> c -> a)"},
        {"[model m]\nbackend = openai-http\nurl = http://h/v1\non_failure = retry\n",
         "[model m]: on_failure must be fail or fallback, not 'retry'"},
        {"[model m]\nbackend = openai-http\nurl = http://h/v1\non_failure = fallback\n",
         "[model m]: on_failure = fallback needs spill_to"},
        {"[model m]\nbackend = openai-http\nurl = http://h/v1\nspill_to = a\nspill_to = b\n", "spill_to is given twice"},
        {"[model m]\nbackend = openai-http\nurl = http://h/v1\nspill_margin = -1\n", "spill_margin must be a number"},
        {"this is not ini\n", ":1: not a 'key = value' line or a [section] header"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config *c = (struct config *)1;
        char err[512] = "";
        const char *p = write_ini(cases[i].text);
        int rc = config_load(p, NULL, &c, err, sizeof(err));
        unlink(p);
        if (rc == NS_OK || c != NULL || !strstr(err, cases[i].want))
            fail_msg("case %zu: rc %d, err '%s', wanted '%s'", i, rc, err, cases[i].want);
        assert_non_null(strstr(err, g_path)); /* the file is named */
    }
}

static void test_providers(void **state)
{
    (void)state;
    setenv("GROQ_API_KEY", "gsk-test", 1);
    setenv("NS_TEST_KLUSTER_KEY", "kl-test", 1);
    struct config *c = NULL;
    char err[512] = "";
    const char *p = write_ini("[model g]\nprovider = groq\nupstream_model = llama-3.1-8b-instant\n"
                              "completion_window = 3d\n\n"
                              "[model k]\ncompletion_window = 90m\nbatch_max_lines = 999\nbatch_max_bytes = 5000000\n"
                              "provider = kluster\nbackend = openai-batch\nurl = http://127.0.0.1:9/v1\n"
                              "api_key_env = NS_TEST_KLUSTER_KEY\n\n"
                              "[model plain]\nbackend = openai-batch\nurl = http://127.0.0.1:9/v1\n");
    int rc = config_load(p, NULL, &c, err, sizeof(err));
    unlink(p);
    if (rc)
        fail_msg("%s", err);
    assert_int_equal(c->n_models, 3);
    const struct backend_conf *g = &c->models[0].conf, *k = &c->models[1].conf, *o = &c->models[2].conf;
    assert_string_equal(g->kind, "openai-batch");
    assert_string_equal(g->provider, "groq");
    assert_string_equal(g->url, "https://api.groq.com/openai/v1");
    assert_string_equal(g->api_key, "gsk-test");
    assert_true(g->completion_window_s == 3 * 86400);
    assert_int_equal(g->max_lines, 50000); /* the default; the backend caps it by the provider's */
    assert_string_equal(k->provider, "kluster");
    assert_string_equal(k->url, "http://127.0.0.1:9/v1"); /* url and key variable override the provider's */
    assert_string_equal(k->api_key, "kl-test");
    assert_true(k->completion_window_s == 90 * 60);
    assert_int_equal(k->max_lines, 999);
    assert_true(k->max_bytes == 5000000);
    assert_null(o->provider);
    assert_null(o->api_key);
    assert_true(o->completion_window_s == 24 * 3600);
    config_free(c);
}

static void test_provider_errors(void **state)
{
    (void)state;
    setenv("GROQ_API_KEY", "gsk-test", 1);
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"[model m]\nprovider = nope\n", ":2: [model m]: unknown provider 'nope' (known: groq, kluster, openai)"},
        {"[model m]\nprovider = groq\nprovider = groq\n", ":3: [model m]: provider is given twice"},
        {"[model m]\nprovider = groq\ncompletion_window = soon\n",
         ":3: [model m]: completion_window must be a whole number of minutes, hours or days (90m, 24h, 7d), not 'soon'"},
        {"[model m]\nprovider = groq\ncompletion_window = 0h\n", ":3: [model m]: completion_window must be"},
        {"[model m]\nprovider = groq\ncompletion_window = 24\n", ":3: [model m]: completion_window must be"},
        {"[model m]\nbackend = anthropic-batch\nprovider = groq\n",
         "[model m]: provider groq is for backend openai-batch, not anthropic-batch"},
        {"[model m]\nprovider = kluster\nbackend = local\n", "[model m]: provider kluster is for backend openai-batch, not local"},
        {"[model m]\nprovider = groq\nbatch_max_lines = 60000\n",
         "[model m]: batch_max_lines 60000 is over Groq's 50000 lines per batch"},
        {"[model m]\nprovider = kluster\nbatch_max_bytes = 200000000\napi_key_env = GROQ_API_KEY\n",
         "[model m]: batch_max_bytes 200000000 is over kluster.ai's 100000000 bytes per batch input file"},
        {"[model m]\nprovider = groq\nbatch_max_bytes = 10\n", ":3: batch_max_bytes must be an integer from 1024"},
        {"[model m]\nprovider = kluster\n",
         "[model m]: provider kluster reads its key from KLUSTER_API_KEY, which is not set in the environment"},
    };
    unsetenv("KLUSTER_API_KEY");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config *c = (struct config *)1;
        char err[512] = "";
        const char *p = write_ini(cases[i].text);
        int rc = config_load(p, NULL, &c, err, sizeof(err));
        unlink(p);
        if (rc == NS_OK || c != NULL || !strstr(err, cases[i].want))
            fail_msg("case %zu: rc %d, err '%s', wanted '%s'", i, rc, err, cases[i].want);
        assert_non_null(strstr(err, g_path));
    }
}

/* base = a section or a file, lora = FILE[:SCALE] (repeatable): resolved after the whole
 * file is read (base may name a later section), its errors naming the model and the key */
static void test_lora_keys(void **state)
{
    (void)state;
    char ad[64] = "/tmp/ns-config-lora-XXXXXX", tmpl[64] = "/tmp/ns-config-tmpl-XXXXXX", text[2048];
    int fd = mkstemp(ad);
    assert_true(fd >= 0);
    close(fd);
    fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{{ messages }}", 14), 14);
    close(fd);
    snprintf(text, sizeof(text),
             "[model x]\nbase = b\nlora = %s:0.5\nlora = %s\n\n"
             "[model b]\npath = /m/b.gguf\nchat_template_file = %s\n\n"
             "[model y]\nbase = %s\nlora = %s:-1\n",
             ad, ad, tmpl, ad, ad);
    struct config *c = NULL;
    char err[512] = "";
    const char *p = write_ini(text);
    int rc = config_load(p, NULL, &c, err, sizeof(err));
    unlink(p);
    if (rc)
        fail_msg("%s", err);
    assert_string_equal(c->models[0].path, "/m/b.gguf");
    assert_int_equal(c->models[0].n_lora, 2);
    assert_string_equal(c->models[0].lora[0].path, ad);
    assert_true(c->models[0].lora[0].scale == 0.5f && c->models[0].lora[1].scale == 1.0f);
    assert_string_equal(c->models[0].chat_template, "{{ messages }}"); /* the base's template */
    assert_string_equal(c->models[2].path, ad);                         /* base = a file */
    assert_true(c->models[2].lora[0].scale == -1.0f);
    config_free(c);

    char nine[1200] = "[model m]\nbase = /dev/null\n";
    for (int i = 0; i < 9; i++) {
        size_t l = strlen(nine);
        snprintf(nine + l, sizeof(nine) - l, "lora = %s\n", ad);
    }
    struct {
        char text[1200];
        const char *want;
    } cases[] = {
        {"", "[model m]: lora: at most 8 adapters on one model"},
        {"[model m]\nbase = /dev/null\nlora = /nonexistent/a.gguf\n",
         "[model m]: lora: cannot read the adapter '/nonexistent/a.gguf': No such file"},
        {"", "[model m]: lora: the scale 'big' of '"},
        {"", "[model m]: lora: the scale '101' of '"},
        {"[model m]\nbase = m\n", "[model m]: base names this model itself"},
        {"[model m]\nbase = n\n[model n]\nbase = /dev/null\n", "base = n names a model without path = FILE.gguf of its own"},
        {"[model m]\nbase = /nonexistent/b.gguf\n", "base = /nonexistent/b.gguf is neither a [model] section nor a readable file"},
        {"[model m]\npath = /x.gguf\nbase = /dev/null\n", "[model m]: give path or base, not both"},
        {"", "[model m]: lora is for backend local"},
        {"[model m]\nbackend = openai-http\nurl = http://h/v1\nbase = x\n", "[model m]: base is for backend local"},
        {"[model m]\nlora = /dev/null\n", "[model m]: backend local needs path = FILE.gguf (or base = MODEL"},
    };
    snprintf(cases[0].text, sizeof(cases[0].text), "%s", nine);
    snprintf(cases[2].text, sizeof(cases[2].text), "[model m]\nbase = /dev/null\nlora = %s:big\n", ad);
    snprintf(cases[3].text, sizeof(cases[3].text), "[model m]\nbase = /dev/null\nlora = %s:101\n", ad);
    snprintf(cases[8].text, sizeof(cases[8].text), "[model m]\nbackend = openai-http\nurl = http://h/v1\nlora = %s\n", ad);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        c = (struct config *)1;
        err[0] = '\0';
        p = write_ini(cases[i].text);
        rc = config_load(p, NULL, &c, err, sizeof(err));
        unlink(p);
        if (rc == NS_OK || c != NULL || !strstr(err, cases[i].want))
            fail_msg("case %zu: rc %d, err '%s', wanted '%s'", i, rc, err, cases[i].want);
    }
    unlink(ad);
    unlink(tmpl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_providers),
        cmocka_unit_test(test_provider_errors),
        cmocka_unit_test(test_lora_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
