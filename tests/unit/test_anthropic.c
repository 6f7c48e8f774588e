/* Unit tests: proto/anthropic (Messages bodies in). Regression inputs found by
 * tests/fuzz/fuzz_anthropic.c live here as named cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/proto/anthropic.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_max_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
