/* Unit tests: store/runstate (the checkpoint of `nightshift run`): results survive a close
 * and a reopen, a custom_id is recorded once, the export is in input line order, and a
 * checkpoint refuses another input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/store/runstate.h"
#include "../../src/util/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[64], g_path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/ns-runstate-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(g_path, sizeof(g_path), "%s/out.state.db", g_dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void count_done(void *ud, const char *custom_id)
{
    (void)custom_id;
    (*(int *)ud)++;
}

static void test_resume_and_export(void **state)
{
    (void)state;
    struct runstate *rs = NULL;
    char err[256];
    struct runstate_params p = runstate_default_params();
    p.commit_every = 2;
    assert_int_equal(runstate_open(g_path, p, 100, 42, &rs, err, sizeof(err)), NS_OK);
    assert_int_equal(runstate_put(rs, "c", 3, true, "{\"custom_id\":\"c\"}", 5, 2, 1), NS_OK);
    assert_int_equal(runstate_put(rs, "a", 1, true, "{\"custom_id\":\"a\"}", 4, 3, 0), NS_OK);
    assert_int_equal(runstate_put(rs, "b", 2, false, "{\"custom_id\":\"b\",\"error\":1}", 0, 0, 0), NS_OK);
    runstate_close(rs);
    /* reopened: every result is there, and a second put of one is not a second line */
    rs = NULL;
    assert_int_equal(runstate_open(g_path, p, 100, 42, &rs, err, sizeof(err)), NS_OK);
    int n = 0;
    assert_int_equal(runstate_each_done(rs, count_done, &n), NS_OK);
    assert_int_equal(n, 3);
    runstate_put(rs, "a", 1, true, "{\"custom_id\":\"a\"}", 4, 3, 0);
    char okb[512] = "", errb[512] = "";
    FILE *fo = fmemopen(okb, sizeof(okb), "w"), *fe = fmemopen(errb, sizeof(errb), "w");
    struct runstate_totals tot;
    assert_int_equal(runstate_export(rs, fo, fe, &tot), NS_OK);
    fclose(fo);
    fclose(fe);
    assert_string_equal(okb, "{\"custom_id\":\"a\"}\n{\"custom_id\":\"c\"}\n"); /* input line order */
    assert_string_equal(errb, "{\"custom_id\":\"b\",\"error\":1}\n");
    assert_int_equal(tot.ok, 2);
    assert_int_equal(tot.failed, 1);
    assert_int_equal(tot.prompt_tokens, 9);
    assert_int_equal(tot.completion_tokens, 5);
    assert_int_equal(tot.cached_tokens, 1);
    runstate_close(rs);
    /* another input (size or hash) is refused, the checkpoint kept */
    rs = (struct runstate *)1;
    assert_int_equal(runstate_open(g_path, p, 100, 43, &rs, err, sizeof(err)), NS_ERR_CONFLICT);
    assert_null(rs);
    assert_true(strlen(err) > 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_and_export),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
