/* Unit tests: backend/batch_loop (the run loop openai-batch, anthropic-batch and
 * gemini-batch share), with a fake kind as its ops and a fake source: a real-time request
 * without "service_tier": "flex" refused (status, param, the kind's words) while a flex one
 * waits with the batch lines; the pull stops when pending bytes reach max_bytes (cap_bytes)
 * and not otherwise; a reload's numbers taken between rounds (the kind's reconf called, the
 * stats' limit, strings dropped); a request's settling (times, tries, failures counted); a
 * line's retries spent; a failed submit's backoff and which statuses are refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/backend/batch_loop.h"
#include "../../src/util/status.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_MAX 16

struct fake {
    struct batch_loop l;
    /* the source */
    struct engine_request reqs[N_MAX];
    int n_reqs, next;          /* batch lines, one per pull */
    struct engine_request *prio[N_MAX];
    int n_prio;
    int status[N_MAX];         /* each request's final status, -1 before */
    char message[N_MAX][512];
    const char *param[N_MAX];
    /* the kind */
    struct engine_request *pending[N_MAX];
    int n_pending;
    struct engine_request *up[N_MAX];
    int n_up;
    size_t line_bytes;
    int flushes[N_MAX];        /* lines in each flush */
    int n_flushes, reconfs;
};

static int fk_index(struct fake *f, const struct engine_request *r)
{
    for (int i = 0; i < f->n_reqs; i++)
        if (&f->reqs[i] == r)
            return i;
    fail_msg("a request the source did not give");
    return -1;
}

static int fk_pull(void *ud, struct engine_request **out, int max)
{
    struct fake *f = ud;
    if (f->next >= f->n_reqs)
        return -1;
    assert_true(max >= 1);
    out[0] = &f->reqs[f->next++];
    return 1;
}

static int fk_pull_priority(void *ud, struct engine_request **out, int max)
{
    struct fake *f = ud;
    int n = f->n_prio < max ? f->n_prio : max;
    memcpy(out, f->prio, (size_t)n * sizeof(*out));
    f->n_prio = 0;
    return n;
}

static void fk_done(void *ud, struct engine_request *r, const struct engine_result *res)
{
    struct fake *f = ud;
    int i = fk_index(f, r);
    assert_int_equal(f->status[i], -1); /* once */
    f->status[i] = res->status;
    snprintf(f->message[i], sizeof(f->message[i]), "%s", res->message);
    f->param[i] = res->param;
}

static void fk_admit(void *impl, struct engine_request *r, double now)
{
    (void)now;
    struct fake *f = impl;
    bool was_empty = f->n_pending == 0;
    f->pending[f->n_pending++] = r;
    batch_loop_pended(&f->l, was_empty, f->line_bytes);
}

static void fk_flush(void *impl, double now)
{
    (void)now;
    struct fake *f = impl;
    int n = f->n_pending < f->l.c.max_lines ? f->n_pending : f->l.c.max_lines;
    for (int i = 0; i < n; i++)
        f->up[f->n_up++] = f->pending[i];
    memmove(f->pending, f->pending + n, (size_t)(f->n_pending - n) * sizeof(f->pending[0]));
    f->n_pending -= n;
    f->l.n_pending -= n;
    f->l.pending_bytes -= (size_t)n * f->line_bytes;
    f->flushes[f->n_flushes++] = n;
}

static void fk_poll_all(void *impl, double now)
{
    (void)now;
    struct fake *f = impl;
    for (int i = 0; i < f->n_up; i++) {
        struct engine_result res;
        memset(&res, 0, sizeof(res));
        batch_loop_done(&f->l, f->up[i], &res, 1.0, 1);
    }
    f->n_up = 0;
}

static int fk_upstream(void *impl, bool *live, double *until)
{
    struct fake *f = impl;
    *live = f->n_up > 0;
    *until = 0; /* never sleep: each round runs at once */
    return f->n_up;
}

static void fk_reconf(void *impl)
{
    struct fake *f = impl;
    f->reconfs++;
}

static void fk_cancel_all(void *impl)
{
    struct fake *f = impl;
    assert_int_equal(f->n_pending, 0);
    assert_int_equal(f->n_up, 0);
}

static const struct batch_loop_ops fk_ops = {fk_admit, fk_flush, fk_poll_all, fk_upstream, fk_reconf, fk_cancel_all};

static struct fake *fk_new(int lines, size_t line_bytes, struct backend_conf *c)
{
    struct fake *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->n_reqs = lines;
    f->line_bytes = line_bytes;
    for (int i = 0; i < N_MAX; i++)
        f->status[i] = -1;
    c->name = "m";
    c->kind = "fake-batch";
    batch_loop_init(&f->l, &fk_ops, f, "m", "the fake batch API (fake-batch)", c);
    assert_null(f->l.c.name);
    assert_null(f->l.c.kind);
    return f;
}

static int fk_run(struct fake *f)
{
    struct engine_source src = {.ud = f, .pull = fk_pull, .pull_priority = fk_pull_priority, .done = fk_done};
    return batch_loop_run(&f->l, &src);
}

static void fk_free(struct fake *f)
{
    for (int i = 0; i < f->n_reqs; i++)
        cJSON_Delete((cJSON *)f->reqs[i].body);
    batch_loop_free(&f->l);
    free(f);
}

static void test_flex(void **state)
{
    (void)state;
    struct backend_conf c = backend_default_conf();
    struct fake *f = fk_new(3, 10, &c); /* all three real-time (the priority lane) */
    f->reqs[1].body = cJSON_Parse("{\"service_tier\": \"flex\"}");
    f->reqs[2].body = cJSON_Parse("{\"service_tier\": \"auto\"}");
    f->prio[0] = &f->reqs[1];
    f->prio[1] = &f->reqs[2];
    f->prio[2] = &f->reqs[0]; /* no body at all: not flex */
    f->n_prio = 3;
    f->next = 3;              /* pull(): none left, exhausted */
    assert_int_equal(fk_run(f), NS_OK);
    assert_int_equal(f->status[1], NS_OK); /* waited with the batch lines */
    assert_int_equal(f->n_flushes, 1);
    assert_int_equal(f->flushes[0], 1);
    for (int i = 0; i < 3; i += 2) {
        assert_int_equal(f->status[i], NS_ERR_UNSUPPORTED);
        assert_string_equal(f->param[i], "model");
        assert_non_null(strstr(f->message[i], "model 'm' is served through the fake batch API (fake-batch): send it "
                                              "in a batch (/v1/batches)"));
        assert_non_null(strstr(f->message[i], "\"service_tier\": \"flex\""));
    }
    struct backend_stats st;
    batch_loop_get_stats(&f->l, &st);
    assert_int_equal(st.failed, 0); /* refusals are not upstream failures */
    fk_free(f);
}

static void test_bytes(void **state)
{
    (void)state;
    for (int cap = 0; cap < 2; cap++) {
        struct backend_conf c = backend_default_conf();
        c.max_bytes = 100;
        c.flush_after_s = 1e9;
        c.flush_lines = 1000;
        struct fake *f = fk_new(5, 60, &c);
        f->l.cap_bytes = cap;
        assert_int_equal(fk_run(f), NS_OK);
        for (int i = 0; i < 5; i++)
            assert_int_equal(f->status[i], NS_OK);
        if (cap) { /* two lines fill 100 bytes: sent, then the next two, then the last */
            assert_int_equal(f->n_flushes, 3);
            assert_int_equal(f->flushes[0], 2);
            assert_int_equal(f->flushes[1], 2);
            assert_int_equal(f->flushes[2], 1);
        } else { /* bytes are the kind's business: all five, once the source is exhausted */
            assert_int_equal(f->n_flushes, 1);
            assert_int_equal(f->flushes[0], 5);
        }
        fk_free(f);
    }
}

static void test_reload(void **state)
{
    (void)state;
    struct backend_conf c = backend_default_conf();
    struct fake *f = fk_new(3, 1, &c);
    struct backend_stats st;
    batch_loop_get_stats(&f->l, &st);
    struct backend_conf n = backend_default_conf();
    n.name = "other";
    n.url = "http://x";
    n.max_lines = 1;
    batch_loop_reconfigure(&f->l, &n);
    assert_true(f->l.has_next);
    assert_null(f->l.next_c.name);
    assert_null(f->l.next_c.url);
    assert_int_equal(fk_run(f), NS_OK);
    assert_int_equal(f->reconfs, 1);
    assert_int_equal(f->l.c.max_lines, 1);
    assert_null(f->l.c.name);
    batch_loop_get_stats(&f->l, &st);
    assert_int_equal(st.limit, 1);
    assert_int_equal(f->n_flushes, 3); /* one line each */
    fk_free(f);
}

static void test_settle(void **state)
{
    (void)state;
    struct backend_conf c = backend_default_conf();
    c.max_attempts = 2;
    c.retry_base_s = 1;
    c.retry_max_s = 3;
    struct fake *f = fk_new(2, 1, &c);
    struct engine_source src = {.ud = f, .done = fk_done};
    f->l.src = &src;
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    res.status = NS_ERR_UPSTREAM;
    batch_loop_done(&f->l, &f->reqs[0], &res, 5.0, 2);
    assert_true(res.t_admit == 5.0);
    assert_true(res.t_end > 0 && res.t_first == res.t_end);
    assert_int_equal(res.attempts, 2);
    assert_int_equal(res.stop_index, -1);
    assert_string_equal(res.text, "");
    assert_int_equal(f->status[0], NS_ERR_UPSTREAM);
    batch_loop_reject(&f->l, &f->reqs[1], NS_ERR_NOMEM, NULL, "out of %s", "memory");
    assert_int_equal(f->status[1], NS_ERR_NOMEM);
    assert_string_equal(f->message[1], "out of memory");

    assert_true(batch_loop_may_retry(&f->l, 1));
    assert_false(batch_loop_may_retry(&f->l, 2)); /* tries spent */
    struct backend_stats st;
    batch_loop_get_stats(&f->l, &st);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.retries, 1);

    assert_false(batch_loop_submit_failed(&f->l, NS_ERR_UPSTREAM, 100.0));
    assert_true(f->l.submit_after > 100.0 && f->l.submit_after <= 103.0);
    assert_true(batch_loop_submit_failed(&f->l, NS_ERR_INVALID, 100.0));
    assert_true(batch_loop_submit_failed(&f->l, NS_ERR_AUTH, 100.0));
    assert_true(batch_loop_submit_failed(&f->l, NS_ERR_NOT_FOUND, 100.0));
    assert_true(batch_loop_submit_failed(&f->l, NS_ERR_TOO_LARGE, 100.0));
    assert_true(f->l.submit_after == 103.0); /* the backoff's cap */
    fk_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flex),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_settle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
