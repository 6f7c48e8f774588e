/* Unit tests: backend/batch_preset (the providers of the openai-batch kind): every row's
 * numbers as the providers document them (batch_preset.c says where each comes from),
 * lookup by name (unknown and NULL names included), the window chosen for a nightshift
 * window (the longest accepted that is not longer, else the shortest), and the window
 * syntax of the config (every malformed spelling refused). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/backend/backend.h"
#include "../../src/backend/batch_preset.h"
#include "../../src/util/status.h"

#include <string.h>

#define H 3600LL
#define D 86400LL
#define MB (1000LL * 1000LL)

static void test_rows(void **state)
{
    (void)state;
    const struct batch_preset *g = batch_preset_find("groq");
    assert_non_null(g);
    assert_string_equal(g->kind, "openai-batch");
    assert_non_null(backend_find(g->kind));
    assert_string_equal(g->url, "https://api.groq.com/openai/v1");
    assert_string_equal(g->key_env, "GROQ_API_KEY");
    assert_int_equal(g->max_lines, 50000);
    assert_true(g->max_bytes == 100 * MB);
    assert_false(g->completions);
    assert_int_equal(g->n_windows, 7);
    assert_true(g->windows[0].seconds == 24 * H);
    assert_string_equal(g->windows[0].text, "24h");
    assert_true(g->windows[g->n_windows - 1].seconds == 7 * D);
    assert_string_equal(g->windows[g->n_windows - 1].text, "7d");

    const struct batch_preset *k = batch_preset_find("kluster");
    assert_non_null(k);
    assert_string_equal(k->kind, "openai-batch");
    assert_string_equal(k->url, "https://api.kluster.ai/v1");
    assert_string_equal(k->key_env, "KLUSTER_API_KEY");
    assert_int_equal(k->max_lines, 50000);
    assert_true(k->max_bytes == 100 * MB);
    assert_false(k->completions);
    static const char *const kw[] = {"1h", "3h", "6h", "12h", "24h"};
    static const long long ks[] = {1 * H, 3 * H, 6 * H, 12 * H, 24 * H};
    assert_int_equal(k->n_windows, 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(k->windows[i].text, kw[i]);
        assert_true(k->windows[i].seconds == ks[i]);
    }

    const struct batch_preset *o = batch_preset_find("openai");
    assert_non_null(o);
    assert_ptr_equal(batch_preset_default(), o);
    assert_int_equal(o->max_lines, 50000);
    assert_true(o->max_bytes == 200 * MB);
    assert_true(o->completions);
    assert_int_equal(o->n_windows, 1);
    assert_string_equal(o->windows[0].text, "24h");

    /* every row: windows ascending, each window's text parses back to its seconds */
    const char *names[] = {"groq", "kluster", "openai"};
    for (int r = 0; r < 3; r++) {
        const struct batch_preset *p = batch_preset_find(names[r]);
        assert_non_null(strstr(batch_preset_names(), names[r]));
        for (int i = 0; i < p->n_windows; i++) {
            int64_t s = 0;
            assert_int_equal(batch_preset_parse_window(p->windows[i].text, &s), NS_OK);
            assert_true(s == p->windows[i].seconds);
            if (i)
                assert_true(p->windows[i].seconds > p->windows[i - 1].seconds);
        }
    }
}

static void test_find_unknown(void **state)
{
    (void)state;
    assert_null(batch_preset_find("nope"));
    assert_null(batch_preset_find(""));
    assert_null(batch_preset_find(NULL));
    assert_null(batch_preset_find("Groq")); /* names are exact */
}

static void test_window_choice(void **state)
{
    (void)state;
    static const struct {
        const char *preset;
        long long want_s;
        const char *got;
    } cases[] = {
        {"groq", 60, "24h"},        {"groq", 1 * H, "24h"},     {"groq", 24 * H, "24h"},  {"groq", 30 * H, "24h"},
        {"groq", 48 * H, "48h"},    {"groq", 100 * H, "96h"},   {"groq", 7 * D, "7d"},    {"groq", 30 * D, "7d"},
        {"kluster", 30 * 60, "1h"}, {"kluster", 2 * H, "1h"},   {"kluster", 5 * H, "3h"}, {"kluster", 12 * H, "12h"},
        {"kluster", 24 * H, "24h"}, {"kluster", 7 * D, "24h"},  {"openai", 60, "24h"},    {"openai", 7 * D, "24h"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct batch_window *w = batch_preset_window(batch_preset_find(cases[i].preset), cases[i].want_s);
        if (strcmp(w->text, cases[i].got))
            fail_msg("case %zu: %s for %llds gave %s, wanted %s", i, cases[i].preset, cases[i].want_s, w->text,
                     cases[i].got);
    }
}

static void test_parse_window(void **state)
{
    (void)state;
    int64_t s = -1;
    assert_int_equal(batch_preset_parse_window("90m", &s), NS_OK);
    assert_true(s == 90 * 60);
    assert_int_equal(batch_preset_parse_window("24h", &s), NS_OK);
    assert_true(s == 24 * H);
    assert_int_equal(batch_preset_parse_window("7d", &s), NS_OK);
    assert_true(s == 7 * D);
    static const char *const bad[] = {"", "h", "24", "24x", "-1h", "0h", "24hh", " 24h", "1.5h", "24 h", "+3h",
                                      "99999999999h", "24s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        s = -1;
        if (batch_preset_parse_window(bad[i], &s) != NS_ERR_INVALID || s != -1)
            fail_msg("'%s' was accepted", bad[i]);
    }
    assert_int_equal(batch_preset_parse_window(NULL, &s), NS_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_find_unknown),
        cmocka_unit_test(test_window_choice),
        cmocka_unit_test(test_parse_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
