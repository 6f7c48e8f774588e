/* Unit tests: proto/batchfile (the OpenAI Batch input reader and validator). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/proto/batchfile.h"
#include "../../src/util/buf.h"
#include "../../src/util/status.h"
#include "../../src/util/utf8.h"
#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GOOD(id) "{\"custom_id\":\"" id "\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"messages\":[]}}\n"

static bool only_m(void *ud, const char *model)
{
    (void)ud;
    return strcmp(model, "m") == 0;
}

static struct batchfile *parse_ok(const char *data, struct batchfile_params *p)
{
    struct batchfile *bf = NULL;
    char err[256] = "";
    int rc = batchfile_parse(data, strlen(data), p, &bf, err, sizeof(err));
    if (rc)
        fail_msg("unexpected whole-file error: %s", err);
    return bf;
}

static void test_valid_lines(void **state)
{
    (void)state;
    struct batchfile_params p = batchfile_default_params();
    p.model_ok = only_m;
    const char *data = GOOD("a") "\n   \n" GOOD("b")
        "{\"custom_id\":\"c\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\",\"prompt\":\"x\"}}\r\n";
    struct batchfile *bf = parse_ok(data, &p);
    assert_int_equal(bf->n_lines, 3);
    assert_int_equal(bf->n_requests, 3);
    assert_int_equal(bf->n_invalid, 0);
    assert_string_equal(bf->lines[0].custom_id, "a");
    assert_int_equal(bf->lines[0].line_no, 1);
    assert_int_equal(bf->lines[1].line_no, 4); /* blank lines 2-3 still count for numbering */
    assert_int_equal(bf->lines[2].url, BATCHFILE_URL_COMPLETIONS);
    /* the kept offsets point at the line, without the \r */
    assert_int_equal(bf->data[bf->lines[2].off + bf->lines[2].len - 1], '}');
    batchfile_free(bf);
}

struct expect {
    unsigned line;
    const char *code;
    const char *param;
};

static void test_structural_errors(void **state)
{
    (void)state;
    struct batchfile_params p = batchfile_default_params();
    p.model_ok = only_m;
    p.served_models = "'m'";
    const char *data =
        GOOD("a")                                                                              /* 1 ok */
        "{not json\n"                                                                           /* 2 */
        "[1,2]\n"                                                                               /* 3 */
        "{\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\"}}\n"  /* 4 */
        GOOD("a")                                                                              /* 5 dup */
        "{\"custom_id\":\"e\",\"method\":\"GET\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\"}}\n"
        "{\"custom_id\":\"f\",\"method\":\"POST\",\"url\":\"/v1/audio/speech\",\"body\":{\"model\":\"m\"}}\n"
        "{\"custom_id\":\"g\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":\"hi\"}\n"
        "{\"custom_id\":\"h\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{}}\n"
        "{\"custom_id\":\"i\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"gpt-9\"}}\n"
        "{\"custom_id\":7,\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\"}}\n"
        "{\"custom_id\":\"j\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\"}} x\n"
        "{\"custom_id\":\"k\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\"}}\n"
        "{\"custom_id\":\"l\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":3}}\n"
        GOOD("z");                                                                             /* 15 ok */
    static const struct expect want[] = {
        {2, "invalid_json_line", NULL},
        {3, "invalid_json_line", NULL},
        {4, "missing_required_parameter", "custom_id"},
        {5, "duplicate_custom_id", "custom_id"},
        {6, "invalid_method", "method"},
        {7, "invalid_url", "url"},
        {8, "invalid_body", "body"},
        {9, "missing_required_parameter", "body.model"},
        {10, "model_not_found", "body.model"},
        {11, "invalid_custom_id", "custom_id"},
        {12, "invalid_json_line", NULL},
        {13, "missing_required_parameter", "method"},
        {14, "invalid_model", "body.model"},
    };
    struct batchfile *bf = parse_ok(data, &p);
    assert_int_equal(bf->n_lines, 2);
    assert_int_equal(bf->n_requests, 15);
    assert_int_equal(bf->n_invalid, sizeof(want) / sizeof(want[0]));
    assert_int_equal(bf->n_errors, bf->n_invalid);
    for (size_t i = 0; i < bf->n_errors; i++) {
        assert_int_equal(bf->errors[i].line, want[i].line);
        assert_string_equal(bf->errors[i].code, want[i].code);
        if (want[i].param)
            assert_string_equal(bf->errors[i].param, want[i].param);
        else
            assert_null(bf->errors[i].param);
        /* every message names its line */
        char tag[32];
        snprintf(tag, sizeof(tag), "line %u", want[i].line);
        assert_non_null(strstr(bf->errors[i].message, tag));
    }
    assert_non_null(strstr(bf->errors[8].message, "gpt-9"));
    assert_non_null(strstr(bf->errors[8].message, "'m'"));
    batchfile_free(bf);
}

/* issue 27.12 and 27.13: a quoted value cut at 64 bytes never splits a character, and a NUL
 * in custom_id (escaped or raw) is refused, never truncated into a duplicate */
static void test_utf8_and_nul(void **state)
{
    (void)state;
    struct batchfile_params p = batchfile_default_params();
    p.model_ok = only_m;
    p.served_models = "'m'";
    char data[2048];
    snprintf(data, sizeof(data),
             "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"%s\u20ac\u20ac\","
             "\"messages\":[]}}\n" GOOD("b")
             "{\"custom_id\":\"b\\u0000x\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\"}}\n"
             "{\"custom_id\":\"c\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\\u0000y\"}]}}\n",
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    struct batchfile *bf = parse_ok(data, &p);
    assert_int_equal(bf->n_lines, 1);
    assert_int_equal(bf->n_errors, 3);
    for (size_t i = 0; i < bf->n_errors; i++) {
        const char *m = bf->errors[i].message;
        assert_int_equal(utf8_valid_prefix(m, strlen(m)), strlen(m));
    }
    assert_string_equal(bf->errors[1].code, "invalid_custom_id");
    assert_non_null(strstr(bf->errors[1].message, "NUL"));
    assert_string_equal(bf->errors[2].code, "invalid_body");
    assert_non_null(strstr(bf->errors[2].message, "NUL"));
    batchfile_free(bf);
}

/* issue 27.1: the cap on *listed* errors (OpenAI's errors.data) never caps the errors kept,
 * each of which becomes a result line: 100,000 invalid lines keep 100,000 errors */
static void test_error_cap(void **state)
{
    (void)state;
    struct batchfile_params p = batchfile_default_params();
    p.max_errors = 3;
    p.max_lines = 200000;
    const size_t n = 100000;
    struct buf b;
    buf_init(&b, 1u << 20);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(buf_appends(&b, "oops\n"), 0);
    struct batchfile *bf = parse_ok(b.p, &p);
    assert_int_equal(bf->n_errors, n);
    assert_int_equal(bf->n_invalid, n);
    assert_int_equal(bf->errors[n - 1].line, n);
    cJSON *ej = batchfile_errors_json(bf, p.max_errors);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(ej, "data")), 3);
    cJSON_Delete(ej);
    /* an external error (a line a converter refused) joins them, in line order after the sort */
    assert_int_equal(batchfile_add_external_error(bf, &p, 1, "invalid_request", NULL, "g", "no"), 0);
    batchfile_errors_sort(bf);
    assert_int_equal(bf->n_errors, n + 1);
    assert_int_equal(bf->errors[0].line, 1);
    assert_int_equal(bf->errors[n].line, n);
    batchfile_free(bf);
    buf_release(&b);
}

static void test_whole_file_errors(void **state)
{
    (void)state;
    struct batchfile_params p = batchfile_default_params();
    struct batchfile *bf = NULL;
    char err[256];
    assert_int_equal(batchfile_parse("\n  \n", 4, &p, &bf, err, sizeof(err)), NS_ERR_INVALID);
    assert_null(bf);
    assert_non_null(strstr(err, "empty"));

    const char bad[] = GOOD("a") "{\"custom_id\":\"b\xff\"}\n";
    assert_int_equal(batchfile_parse(bad, sizeof(bad) - 1, &p, &bf, err, sizeof(err)), NS_ERR_INVALID);
    assert_non_null(strstr(err, "UTF-8"));
    assert_non_null(strstr(err, "line 2"));

    p.max_lines = 1;
    const char two[] = GOOD("a") GOOD("b");
    assert_int_equal(batchfile_parse(two, sizeof(two) - 1, &p, &bf, err, sizeof(err)), NS_ERR_TOO_LARGE);
    assert_non_null(strstr(err, "--max-lines"));

    p = batchfile_default_params();
    p.max_bytes = 10;
    assert_int_equal(batchfile_parse(two, sizeof(two) - 1, &p, &bf, err, sizeof(err)), NS_ERR_TOO_LARGE);
    assert_non_null(strstr(err, "--max-bytes"));
}

static void test_open_file(void **state)
{
    (void)state;
    struct batchfile_params p = batchfile_default_params();
    struct batchfile *bf = NULL;
    char err[512];
    assert_int_equal(batchfile_open("/nonexistent/x.jsonl", &p, &bf, err, sizeof(err)), NS_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/x.jsonl"));
    char path[] = "/tmp/ns-bf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(batchfile_open(path, &p, &bf, err, sizeof(err)), NS_ERR_INVALID); /* empty */
    const char one[] = GOOD("a");
    assert_int_equal(write(fd, one, sizeof(one) - 1), (ssize_t)(sizeof(one) - 1));
    close(fd);
    assert_int_equal(batchfile_open(path, &p, &bf, err, sizeof(err)), NS_OK);
    assert_int_equal(bf->n_lines, 1);
    uint64_t h = bf->hash;
    batchfile_free(bf);
    assert_int_equal(batchfile_open(path, &p, &bf, err, sizeof(err)), NS_OK);
    assert_true(bf->hash == h); /* the identity of an input is stable */
    batchfile_free(bf);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_lines),       cmocka_unit_test(test_structural_errors),
        cmocka_unit_test(test_utf8_and_nul), cmocka_unit_test(test_error_cap),         cmocka_unit_test(test_whole_file_errors),
        cmocka_unit_test(test_open_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
