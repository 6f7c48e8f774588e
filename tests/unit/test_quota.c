/* Unit tests: http/quota (sliding minute window, Retry-After, UTC day rollover, batch queue,
 * estimates), on an injected clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/http/quota.h"
#include "../../src/util/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int64_t fake_now;
static int64_t clock_fn(void *ud)
{
    (void)ud;
    return fake_now;
}

static struct quota *make(int64_t (*left)(void *, const char *, int64_t), void *ud)
{
    struct quota_params p = quota_default_params();
    p.now = clock_fn;
    p.batch_left = left;
    p.batch_ud = ud;
    struct quota *q = NULL;
    assert_int_equal(quota_create(p, &q), NS_OK);
    return q;
}

static void test_rpm_window(void **state)
{
    (void)state;
    struct quota *q = make(NULL, NULL);
    struct quota_limits lim = {.rpm = 3};
    struct quota_refusal why;
    fake_now = 1000000; /* calls at t=0, 10, 20 (relative) */
    assert_int_equal(quota_request_admit(q, "ci", lim, &why), NS_OK);
    fake_now += 10;
    assert_int_equal(quota_request_admit(q, "ci", lim, &why), NS_OK);
    fake_now += 10;
    assert_int_equal(quota_request_admit(q, "ci", lim, &why), NS_OK);
    fake_now += 2; /* t=22: full; the call at t=0 leaves the window at t=60 */
    assert_int_equal(quota_request_admit(q, "ci", lim, &why), NS_ERR_QUOTA_REQUESTS);
    assert_int_equal(why.status, NS_ERR_QUOTA_REQUESTS);
    assert_int_equal(why.retry_after, 38);
    assert_string_equal(why.message, "rate limit exceeded for key 'ci': 3 requests per minute; retry after 38 s");
    /* a refused call is not counted; another key is not affected */
    assert_int_equal(quota_request_admit(q, "other", lim, &why), NS_OK);
    fake_now = 1000000 + 59;
    assert_int_equal(quota_request_admit(q, "ci", lim, &why), NS_ERR_QUOTA_REQUESTS);
    assert_int_equal(why.retry_after, 1);
    fake_now = 1000000 + 60; /* the first call is out: room for one */
    assert_int_equal(quota_request_admit(q, "ci", lim, &why), NS_OK);
    assert_int_equal(quota_request_admit(q, "ci", lim, &why), NS_ERR_QUOTA_REQUESTS);
    assert_int_equal(why.retry_after, 10); /* t=10's call leaves at t=70 */
    /* unlimited: never refused */
    struct quota_limits none = {0};
    for (int i = 0; i < 1000; i++)
        assert_int_equal(quota_request_admit(q, "ci", none, &why), NS_OK);
    quota_free(q);
}

static void test_rpm_burst(void **state)
{
    (void)state;
    struct quota *q = make(NULL, NULL);
    struct quota_limits lim = {.rpm = 60};
    struct quota_refusal why;
    fake_now = 5000;
    for (int i = 0; i < 60; i++)
        assert_int_equal(quota_request_admit(q, "k", lim, &why), NS_OK);
    assert_int_equal(quota_request_admit(q, "k", lim, &why), NS_ERR_QUOTA_REQUESTS);
    assert_int_equal(why.retry_after, 60); /* all in one second: the whole minute */
    fake_now += 59;
    assert_int_equal(quota_request_admit(q, "k", lim, &why), NS_ERR_QUOTA_REQUESTS);
    assert_int_equal(why.retry_after, 1);
    fake_now += 1;
    for (int i = 0; i < 60; i++)
        assert_int_equal(quota_request_admit(q, "k", lim, &why), NS_OK);
    /* a long silence: old buckets never count again */
    fake_now += 3600;
    assert_int_equal(quota_request_admit(q, "k", lim, &why), NS_OK);
    quota_free(q);
}

static void test_tokens_per_day(void **state)
{
    (void)state;
    struct quota *q = make(NULL, NULL);
    struct quota_limits lim = {.tokens_per_day = 100};
    struct quota_refusal why;
    int64_t day = 20000; /* unix day number */
    fake_now = day * 86400 + 86400 - 3600; /* 23:00 UTC */
    assert_int_equal(quota_request_admit(q, "ci", lim, &why), NS_OK);
    quota_tokens_add(q, "ci", 60);
    assert_int_equal(quota_request_admit(q, "ci", lim, &why), NS_OK); /* 60 < 100: admitted */
    quota_tokens_add(q, "ci", 70);                                   /* the crossing call finishes */
    assert_int_equal(quota_tokens_today(q, "ci"), 130);
    fake_now += 1;
    assert_int_equal(quota_request_admit(q, "ci", lim, &why), NS_ERR_QUOTA_TOKENS);
    assert_int_equal(why.status, NS_ERR_QUOTA_TOKENS);
    assert_int_equal(why.retry_after, 3599); /* until midnight UTC */
    assert_string_equal(why.message,
                        "rate limit exceeded for key 'ci': 100 tokens per day (130 used today, UTC); retry after 3599 s");
    fake_now = (day + 1) * 86400 - 1;
    assert_int_equal(quota_request_admit(q, "ci", lim, &why), NS_ERR_QUOTA_TOKENS);
    assert_int_equal(why.retry_after, 1);
    fake_now = (day + 1) * 86400; /* rollover */
    assert_int_equal(quota_request_admit(q, "ci", lim, &why), NS_OK);
    assert_int_equal(quota_tokens_today(q, "ci"), 0);
    quota_tokens_add(q, "ci", 5);
    assert_int_equal(quota_tokens_today(q, "ci"), 5);
    quota_tokens_add(q, "ci", 0);
    quota_tokens_add(q, "ci", -3); /* ignored */
    assert_int_equal(quota_tokens_today(q, "ci"), 5);
    quota_free(q);
}

/* the batches the fake store knows: id -> tokens left (-1: unknown) */
struct fake_store {
    const char *ids[8];
    int64_t left[8];
    int n;
    int calls;
};
static int64_t fake_left(void *ud, const char *id, int64_t est)
{
    (void)est;
    struct fake_store *fs = ud;
    fs->calls++;
    for (int i = 0; i < fs->n; i++)
        if (strcmp(fs->ids[i], id) == 0)
            return fs->left[i];
    return -1;
}

static void test_batch_queue(void **state)
{
    (void)state;
    struct fake_store fs = {.ids = {"b1", "b2"}, .left = {600, 300}, .n = 2};
    struct quota *q = make(fake_left, &fs);
    struct quota_limits lim = {.batch_queue_tokens = 1000};
    struct quota_refusal why;
    fake_now = 100000;
    assert_int_equal(quota_batch_admit(q, "ci", lim, "b1", 600, &why), NS_OK);
    assert_int_equal(quota_batch_admit(q, "ci", lim, "b2", 300, &why), NS_OK);
    assert_int_equal(quota_batch_admit(q, "ci", lim, "b3", 200, &why), NS_ERR_QUOTA_TOKENS);
    assert_int_equal(why.status, NS_ERR_QUOTA_TOKENS);
    assert_int_equal(why.retry_after, 60);
    assert_string_equal(why.message, "rate limit exceeded for key 'ci': 1000 enqueued batch tokens (900 queued, this "
                                     "batch about 200); retry after 60 s");
    /* another key has its own queue */
    assert_int_equal(quota_batch_admit(q, "other", lim, "b9", 900, &why), NS_OK);
    /* b1 runs: half its lines done */
    fs.left[0] = 300;
    assert_int_equal(quota_batch_admit(q, "ci", lim, "b3", 400, &why), NS_OK); /* 300 + 300 + 400 */
    /* b3 is not in the store yet (just admitted): it counts whole for a minute */
    assert_int_equal(quota_batch_admit(q, "ci", lim, "b4", 1, &why), NS_ERR_QUOTA_TOKENS);
    /* a batch bigger than the limit says so */
    assert_int_equal(quota_batch_admit(q, "ci", lim, "big", 5000, &why), NS_ERR_QUOTA_TOKENS);
    assert_non_null(strstr(why.message, "this batch alone is about 5000: split it"));
    /* b3 never got stored (its create failed): forgotten after a minute; b1, b2 end */
    fake_now += 61;
    fs.left[0] = 0;
    fs.left[1] = 0;
    assert_int_equal(quota_batch_admit(q, "ci", lim, "b5", 1000, &why), NS_OK);
    /* unlimited */
    struct quota_limits none = {0};
    fs.calls = 0;
    assert_int_equal(quota_batch_admit(q, "ci", none, "b6", 1000000, &why), NS_OK);
    assert_int_equal(fs.calls, 0);
    quota_free(q);
}

static void test_many_keys(void **state)
{
    (void)state;
    struct quota *q = make(NULL, NULL);
    struct quota_limits lim = {.rpm = 1};
    struct quota_refusal why;
    char name[32];
    fake_now = 777;
    for (int i = 0; i < 500; i++) { /* the table grows; every key keeps its own window */
        snprintf(name, sizeof(name), "key-%d", i);
        assert_int_equal(quota_request_admit(q, name, lim, &why), NS_OK);
    }
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof(name), "key-%d", i);
        assert_int_equal(quota_request_admit(q, name, lim, &why), NS_ERR_QUOTA_REQUESTS);
    }
    quota_free(q);
}

static void count_refused(void *ud, const char *key, const uint64_t refused[QUOTA_LIMITS_])
{
    char *out = ud;
    size_t n = strlen(out);
    snprintf(out + n, 256 - n, "%s:%llu/%llu/%llu ", key, (unsigned long long)refused[0], (unsigned long long)refused[1],
             (unsigned long long)refused[2]);
}

static void test_refused_counts(void **state)
{
    (void)state;
    struct quota *q = make(NULL, NULL);
    struct quota_refusal why;
    fake_now = 9000;
    struct quota_limits lim = {.rpm = 1, .tokens_per_day = 10, .batch_queue_tokens = 5};
    assert_int_equal(quota_request_admit(q, "a", lim, &why), NS_OK);
    assert_int_equal(quota_request_admit(q, "a", lim, &why), NS_ERR_QUOTA_REQUESTS);
    assert_int_equal(quota_request_admit(q, "a", lim, &why), NS_ERR_QUOTA_REQUESTS);
    quota_tokens_add(q, "a", 10);
    assert_int_equal(quota_request_admit(q, "a", lim, &why), NS_ERR_QUOTA_TOKENS);
    assert_int_equal(quota_batch_admit(q, "a", lim, "b", 6, &why), NS_ERR_QUOTA_TOKENS);
    char out[256] = "";
    quota_foreach(q, count_refused, out);
    assert_string_equal(out, "a:2/1/1 ");
    assert_string_equal(quota_limit_names[QUOTA_BATCH_QUEUE], "batch_queue_tokens");
    quota_free(q);
}

static void test_estimate(void **state)
{
    (void)state;
    const char *a = "{\"custom_id\":\"a\",\"body\":{\"model\":\"m\",\"max_tokens\":10}}";     /* 56 bytes */
    const char *b = "{\"custom_id\":\"b\",\"body\":{\"max_completion_tokens\":7}}";            /* 52 bytes */
    const char *c = "{\"custom_id\":\"c\",\"body\":{}}";                                        /* 27 bytes */
    char text[512];
    snprintf(text, sizeof(text), "%s\n\n  \n%s\r\n%s", a, b, c);
    int64_t want = (int64_t)strlen(a) / 4 + 10 + (int64_t)(strlen(b) + 1) / 4 + 7 + (int64_t)strlen(c) / 4 + 100;
    assert_int_equal(quota_estimate_jsonl(text, strlen(text), 100), want);
    assert_int_equal(quota_estimate_jsonl("", 0, 100), 0);
    assert_int_equal(quota_estimate_jsonl("not json", 8, 100), 2 + 100);
    /* issue 27.11: the fields the engine obeys: max_completion_tokens over max_tokens, times n */
    const char *d = "{\"custom_id\":\"d\",\"body\":{\"max_tokens\":1,\"max_completion_tokens\":1000,\"n\":4}}";
    assert_int_equal(quota_estimate_jsonl(d, strlen(d), 100), (int64_t)strlen(d) / 4 + 4000);
    const char *e = "{\"custom_id\":\"e\",\"body\":{\"n\":3}}";
    assert_int_equal(quota_estimate_jsonl(e, strlen(e), 100), (int64_t)strlen(e) / 4 + 300);
    char path[] = "/tmp/ns-quota-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    int64_t est = -1;
    assert_int_equal(quota_estimate_file(path, 100, &est), NS_OK);
    assert_int_equal(est, want);
    unlink(path);
    assert_int_equal(quota_estimate_file(path, 100, &est), NS_ERR_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rpm_window), cmocka_unit_test(test_rpm_burst), cmocka_unit_test(test_tokens_per_day),
        cmocka_unit_test(test_batch_queue), cmocka_unit_test(test_many_keys), cmocka_unit_test(test_estimate),
        cmocka_unit_test(test_refused_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
