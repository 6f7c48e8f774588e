/* Unit tests: cli/config (the --config INI file): a good file read whole; every kind of bad
 * file refused with the file, the line and the fix; what a model section needs decided by
 * its backend's capabilities (backend.h: local_file), never by its kind's name. */
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
                              "[model off]\nbackend = anthropic-batch\nurl = https://api.example.com/v1\n");
    int rc = config_load(p, NULL, &c, err, sizeof(err));
    unlink(p);
    if (rc)
        fail_msg("%s", err);
    assert_int_equal(c->n_server, 1);
    assert_string_equal(c->server[0].key, "listen");
    assert_int_equal(c->n_models, 3);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
