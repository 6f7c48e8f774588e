/* Unit tests: sched/sched with a fake backend (answers every pulled request at once) on a
 * real SQLite store: every line of a batch runs once and is committed, idle() is reported
 * once; and with a store that refuses commits for a while (a full disk), nothing is lost,
 * the scheduler says the store is not writable, and the batch ends once commits go
 * through again (issue 27.5), without a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/backend/backend.h"
#include "../../src/proto/batchfile.h"
#include "../../src/sched/sched.h"
#include "../../src/store/store.h"
#include "../../src/util/status.h"
#include "batch_fixture.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- a backend that answers at once ------------------------------------------------------ */

struct fake_impl {
    atomic_bool stop;
    atomic_int answered;
};

static int fake_init(const struct backend_conf *c, void **out, char *err, size_t errlen)
{
    (void)c;
    (void)err;
    (void)errlen;
    *out = calloc(1, sizeof(struct fake_impl));
    return *out ? NS_OK : NS_ERR_NOMEM;
}

static void fake_free(void *impl) { free(impl); }

static int fake_run(void *impl, const struct engine_source *src)
{
    struct fake_impl *f = impl;
    while (!atomic_load(&f->stop)) {
        struct engine_request *got[8];
        int n = src->pull(src->ud, got, 8);
        if (n < 0)
            break;
        for (int i = 0; i < n; i++) {
            struct engine_result res;
            memset(&res, 0, sizeof(res));
            res.status = NS_OK;
            res.text = "ok";
            res.text_len = 2;
            res.prompt_tokens = 3;
            res.completion_tokens = 1;
            src->done(src->ud, got[i], &res);
            atomic_fetch_add(&f->answered, 1);
        }
        if (n == 0 && src->wait)
            src->wait(src->ud);
    }
    return NS_OK;
}

static void fake_stop(void *impl) { atomic_store(&((struct fake_impl *)impl)->stop, true); }

static const struct backend_ops fake_ops = {
    .kind = "fake", .init = fake_init, .free = fake_free, .run = fake_run, .stop = fake_stop};

/* ---- a store that can refuse commits ------------------------------------------------------ */

struct failing_store {
    struct store_base base;     /* first: store.h */
    struct store *inner;
    atomic_int refuse;          /* lines_finish calls still to refuse */
    atomic_int refused;
};

static struct store_ops g_failing_ops;

static int fs_lines_claim(struct store *st, const char *batch_id, const char *model, int max, struct store_line **out,
                          int *n)
{
    return store_lines_claim(((struct failing_store *)st)->inner, batch_id, model, max, out, n);
}

/* the scheduler reads a batch's deadline when it takes the batch up */
static int fs_batch_get(struct store *st, const char *id, struct store_batch *out)
{
    return store_batch_get(((struct failing_store *)st)->inner, id, out);
}

static int fs_lines_finish(struct store *st, const struct store_result *rs, int n)
{
    struct failing_store *fs = (struct failing_store *)st;
    if (atomic_load(&fs->refuse) > 0) {
        atomic_fetch_sub(&fs->refuse, 1);
        atomic_fetch_add(&fs->refused, 1);
        return NS_ERR_IO;
    }
    return store_lines_finish(fs->inner, rs, n);
}

/* ---- fixture ----------------------------------------------------------------------------- */

static char g_dir[64];
static struct store *g_st;
static atomic_int g_idle;

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/ns-sched-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    char err[256];
    if (store_find(NULL)->open(NULL, g_dir, &g_st, err, sizeof(err)))
        return -1;
    g_failing_ops = *store_ops_of(g_st);
    g_failing_ops.lines.claim = fs_lines_claim;
    g_failing_ops.lines.finish = fs_lines_finish;
    g_failing_ops.batch.get = fs_batch_get;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    store_close(g_st);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void on_idle(void *ud, const char *batch_id)
{
    (void)ud;
    (void)batch_id;
    atomic_fetch_add(&g_idle, 1);
}

/* a batch of n chat lines in the store, its input file written; the file's path in path */
static void make_batch(const char *id, int n, char *path, size_t pn)
{
    fixture_make_batch(g_st, g_dir, id, n, "fake", NULL, 0, path, pn);
}

static struct sched *start_sched(struct store *st)
{
    struct backend *be = calloc(1, sizeof(*be));
    assert_non_null(be);
    be->ops = &fake_ops;
    be->name = strdup("fake");
    assert_int_equal(fake_ops.init(NULL, &be->impl, NULL, 0), NS_OK);
    struct sched_params p = sched_default_params();
    p.model_name = "fake";
    p.claim_chunk = 7;
    struct sched *s = NULL;
    assert_int_equal(sched_init(p, be, st, on_idle, NULL, &s), NS_OK);
    assert_int_equal(sched_start(s), NS_OK);
    return s;
}

static void wait_idle(int want)
{
    for (int i = 0; i < 1000 && atomic_load(&g_idle) < want; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&g_idle), want);
}

static void test_every_line_once(void **state)
{
    (void)state;
    char path[128];
    make_batch("batch_a", 50, path, sizeof(path));
    atomic_store(&g_idle, 0);
    struct sched *s = start_sched(g_st);
    assert_int_equal(sched_add_batch(s, "batch_a", path), NS_OK);
    wait_idle(1);
    int64_t pending = -1, running = -1;
    assert_int_equal(store_lines_count_unfinished(g_st, "batch_a", &pending, &running), NS_OK);
    assert_int_equal(pending + running, 0);
    struct store_batch b;
    assert_int_equal(store_batch_get(g_st, "batch_a", &b), NS_OK);
    assert_int_equal(b.completed, 50);
    assert_int_equal(b.failed, 0);
    store_batch_release(&b);
    sched_free(s);
}

static void test_store_refuses_commits(void **state)
{
    (void)state;
    char path[128];
    make_batch("batch_b", 30, path, sizeof(path));
    struct failing_store fs = {.base = {.ops = &g_failing_ops}, .inner = g_st};
    atomic_store(&fs.refuse, 4);
    atomic_store(&g_idle, 0);
    struct sched *s = start_sched((struct store *)&fs);
    assert_int_equal(sched_add_batch(s, "batch_b", path), NS_OK);
    /* refused at first: the scheduler says so; then the backoff retries go through */
    bool saw_down = false;
    for (int i = 0; i < 300 && atomic_load(&g_idle) == 0; i++) {
        saw_down |= !sched_store_writable(s);
        usleep(10000);
    }
    wait_idle(1);
    assert_true(saw_down);
    assert_int_equal(atomic_load(&fs.refused), 4);
    assert_true(sched_store_writable(s));
    struct store_batch b;
    assert_int_equal(store_batch_get(g_st, "batch_b", &b), NS_OK);
    assert_int_equal(b.completed, 30); /* nothing lost, nothing twice */
    store_batch_release(&b);
    sched_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_line_once),
        cmocka_unit_test(test_store_refuses_commits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
