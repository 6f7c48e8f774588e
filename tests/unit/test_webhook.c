/* Unit tests: sched/webhook on a real SQLite store, without the delivery thread: which
 * events a batch's end queues (one per interested endpoint, one for the batch's own
 * metadata.webhook_url), their bodies and the URL and secret checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/sched/webhook.h"
#include "../../src/store/store.h"
#include "../../src/util/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[64];
static struct store *g_st;

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/ns-webhook-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    char err[256];
    return store_find(NULL)->open(NULL, g_dir, &g_st, err, sizeof(err)) == NS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    store_close(g_st);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int queued(const char *batch_id, struct store_webhook **out)
{
    int n = 0;
    assert_int_equal(store_webhooks_list(g_st, batch_id, 20, out, &n), NS_OK);
    return n;
}

static void test_events_queued(void **state)
{
    (void)state;
    /* "whsec_" + base64 of 24 bytes */
    const struct webhook_endpoint eps[] = {
        {.name = "only-done", .url = "http://127.0.0.1:9/a", .secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3",
         .events = WEBHOOK_EV_COMPLETED, .max_attempts = 3, .retry_base_s = 1},
        {.name = "all", .url = "http://127.0.0.1:9/b", .secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3",
         .events = WEBHOOK_EV_ALL, .max_attempts = 3, .retry_base_s = 1},
    };
    struct webhook *w = NULL;
    assert_int_equal(webhook_init(g_st, eps, 2, &w), NS_OK);
    assert_true(webhook_enabled(w));
    struct store_batch b;
    memset(&b, 0, sizeof(b));
    snprintf(b.id, sizeof(b.id), "batch_done");
    b.status = SB_COMPLETED;
    b.metadata = (char *)"{\"webhook_url\":\"http://127.0.0.1:9/mine\"}";
    webhook_batch_ended(w, &b);
    struct store_webhook *ws = NULL;
    int n = queued("batch_done", &ws);
    assert_int_equal(n, 3); /* both endpoints, and the batch's own URL */
    int own = 0;
    for (int i = 0; i < n; i++) {
        assert_string_equal(ws[i].type, "batch.completed");
        assert_non_null(strstr(ws[i].body, "\"batch_done\""));
        assert_non_null(strstr(ws[i].body, "\"batch.completed\""));
        own += strcmp(ws[i].url, "http://127.0.0.1:9/mine") == 0;
        store_webhook_release(&ws[i]);
    }
    free(ws);
    assert_int_equal(own, 1);
    /* a failed batch: only the endpoint that wants every event */
    snprintf(b.id, sizeof(b.id), "batch_failed");
    b.status = SB_FAILED;
    b.metadata = NULL;
    webhook_batch_ended(w, &b);
    n = queued("batch_failed", &ws);
    assert_int_equal(n, 1);
    assert_string_equal(ws[0].type, "batch.failed");
    assert_string_equal(ws[0].endpoint, "all");
    store_webhook_release(&ws[0]);
    free(ws);
    webhook_free(w);
}

static void test_checks(void **state)
{
    (void)state;
    assert_int_equal(webhook_event_bit("batch.expired"), WEBHOOK_EV_EXPIRED);
    assert_int_equal(webhook_event_bit("batch.nope"), 0);
    assert_true(webhook_secret_ok("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"));
    assert_false(webhook_secret_ok("whsec_c2hvcnQ="));  /* 5 bytes */
    assert_false(webhook_secret_ok("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"));
    char why[200];
    assert_true(webhook_url_ok("https://hooks.example.com/x?y=1", why, sizeof(why)));
    assert_false(webhook_url_ok("ftp://example.com/x", why, sizeof(why)));
    assert_non_null(strstr(why, "ftp"));
    assert_false(webhook_url_ok("not a url", why, sizeof(why)));
    assert_false(webhook_url_ok("http://", why, sizeof(why)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_queued),
        cmocka_unit_test(test_checks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
