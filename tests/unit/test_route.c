/* Unit tests: spill-over (sched/route.h's rule, driven through two real scheds on a real
 * SQLite store) on a simulated clock: a batch whose local rate cannot meet its deadline
 * spills the right share to the fallback, takes lines back when the local rate recovers,
 * and completes before the deadline with every custom_id exactly once; route_plan's rule
 * and the deadline parser on their own. The scheds and their fake backends run in their
 * threads, in lockstep with the test's clock: the test moves the clock half a simulated
 * second only once both backends have done what that time allows, so nothing depends on
 * the machine's speed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/backend/backend.h"
#include "../../src/proto/batchfile.h"
#include "../../src/sched/route.h"
#include "../../src/sched/sched.h"
#include "../../src/store/store.h"
#include "../../src/util/status.h"
#include "batch_fixture.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the simulated clock ---------------------------------------------------------------- */

static _Atomic double g_now;
static double g_t0;

static double sim_clock(void) { return atomic_load(&g_now); }

/* ---- a backend answering `rate` lines per simulated second ------------------------------ */

struct sim_impl {
    atomic_bool stop;
    _Atomic double rate;       /* lines per simulated second */
    _Atomic double seen;       /* the clock time it has fully caught up with */
    double credit;             /* lines it may still answer */
    double last;
    atomic_int answered;
};

static struct sim_impl *g_sim[2];
static int g_n_sim;

static int sim_init(const struct backend_conf *c, void **out, char *err, size_t errlen)
{
    (void)c;
    (void)err;
    (void)errlen;
    struct sim_impl *f = calloc(1, sizeof(*f));
    f->last = atomic_load(&g_now);
    g_sim[g_n_sim++] = f;
    *out = f;
    return NS_OK;
}

static void sim_free(void *impl) { free(impl); }

static int sim_run(void *impl, const struct engine_source *src)
{
    struct sim_impl *f = impl;
    while (!atomic_load(&f->stop)) {
        double now = atomic_load(&g_now);
        if (now > f->last) {
            f->credit += (now - f->last) * atomic_load(&f->rate);
            f->last = now;
        }
        int room = (int)floor(f->credit + 1e-9);
        if (room > 8)
            room = 8;
        struct engine_request *got[8];
        int n = src->pull(src->ud, got, room); /* with room 0 it still runs the route tick */
        if (n < 0)
            break;
        for (int i = 0; i < n; i++) {
            struct engine_result res;
            memset(&res, 0, sizeof(res));
            res.status = NS_OK;
            res.text = "ok";
            res.text_len = 2;
            res.prompt_tokens = 10;
            res.completion_tokens = 2;
            src->done(src->ud, got[i], &res);
            atomic_fetch_add(&f->answered, 1);
        }
        f->credit -= n;
        if (n < room && f->credit > 1)
            f->credit = fmod(f->credit, 1.0); /* no work for it: an idle backend banks no credit */
        if (n == room || n < room)
            atomic_store(&f->seen, now);
        usleep(200);
    }
    return NS_OK;
}

static void sim_stop(void *impl) { atomic_store(&((struct sim_impl *)impl)->stop, true); }

static const struct backend_ops sim_ops = {
    .kind = "sim", .init = sim_init, .free = sim_free, .run = sim_run, .stop = sim_stop};

/* ---- fixture ----------------------------------------------------------------------------- */

static char g_dir[64];
static struct store *g_st;

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/ns-route-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    char err[256];
    return store_find(NULL)->open(NULL, g_dir, &g_st, err, sizeof(err)) ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    store_close(g_st);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* a batch of n lines of model "local" with metadata {"deadline": deadline} */
static void make_batch(const char *id, int n, const char *deadline, char *path, size_t pn)
{
    char meta[96];
    snprintf(meta, sizeof(meta), "{\"deadline\":\"%s\"}", deadline);
    fixture_make_batch(g_st, g_dir, id, n, "local", meta, 86400, path, pn);
}

static struct sched *new_sched(const char *name, double rate)
{
    struct backend *be = calloc(1, sizeof(*be));
    assert_non_null(be);
    be->ops = &sim_ops;
    be->name = strdup(name);
    assert_int_equal(sim_ops.init(NULL, &be->impl, NULL, 0), NS_OK);
    atomic_store(&((struct sim_impl *)be->impl)->rate, rate);
    struct sched_params p = sched_default_params();
    p.model_name = name;
    p.claim_chunk = 2;
    p.clock = sim_clock;
    struct sched *s = NULL;
    assert_int_equal(sched_init(p, be, g_st, NULL, NULL, &s), NS_OK);
    return s;
}

/* move the clock by dt once both backends caught up with the present */
static void tick(double dt)
{
    double now = atomic_load(&g_now);
    for (int i = 0; i < 200000; i++) {
        if (atomic_load(&g_sim[0]->seen) >= now && atomic_load(&g_sim[1]->seen) >= now)
            break;
        usleep(50);
    }
    assert_true(atomic_load(&g_sim[0]->seen) >= now && atomic_load(&g_sim[1]->seen) >= now);
    atomic_store(&g_now, now + dt);
}

static struct store_route route_of(const char *id, const char *backend)
{
    struct store_route *rt = NULL, want;
    int n = 0;
    memset(&want, 0, sizeof(want));
    assert_int_equal(store_lines_routes(g_st, id, &rt, &n), NS_OK);
    for (int i = 0; i < n; i++)
        if (strcmp(rt[i].backend, backend) == 0)
            want = rt[i];
    free(rt);
    return want;
}

/* 200 lines, 100 s to the deadline, the local backend at 1 line/s: ~10 s to measure the
 * rate, then it can finish (100 - 10) / 1.2 = 75 of the 190 left, so about 115 go to the
 * fallback (3 lines/s, turnaround 5 s); at t+30 the local rate goes to 10 lines/s and
 * lines the fallback has not started come back. */
static void test_spill_and_back(void **state)
{
    (void)state;
    g_n_sim = 0;
    g_t0 = floor((double)time(NULL));
    atomic_store(&g_now, g_t0);
    char path[128], deadline[32];
    snprintf(deadline, sizeof(deadline), "%.0f", g_t0 + 100); /* unix seconds, as metadata string */
    make_batch("batch_spill", 200, deadline, path, sizeof(path));
    struct sched *local = new_sched("local", 1.0), *fb = new_sched("fb", 3.0);
    struct sched_route_params rp = sched_default_route_params();
    rp.turnaround_s = 5;
    rp.margin = 0.2;
    rp.min_observe_s = 10;
    sched_set_fallback(local, fb, rp);
    assert_ptr_equal(sched_fallback(local), fb);
    assert_int_equal(sched_start(local), NS_OK);
    assert_int_equal(sched_start(fb), NS_OK);
    assert_int_equal(sched_add_batch(local, "batch_spill", path), NS_OK);
    assert_int_equal(sched_add_batch(fb, "batch_spill", path), NS_OK);

    /* phase 1: the rate is measured, then the share that cannot make it is spilled */
    while (atomic_load(&g_now) < g_t0 + 15)
        tick(0.5);
    struct sched_stats ls;
    sched_get_stats(local, &ls);
    double rate = 0, dl = 0;
    assert_true(sched_batch_rate(local, "batch_spill", &rate, &dl));
    assert_true(fabs(dl - (g_t0 + 100)) < 0.01);
    assert_true(rate > 0.8 && rate < 1.2);
    /* ~115 predicted at t+10; one line either way per measuring step */
    if (ls.lines_spilled < 100 || ls.lines_spilled > 130)
        fail_msg("spilled %llu lines, expected about 115", (unsigned long long)ls.lines_spilled);
    assert_int_equal(ls.lines_taken_back, 0);

    /* phase 2: the local backend speeds up; what the fallback has not started comes back */
    while (atomic_load(&g_now) < g_t0 + 30)
        tick(0.5);
    atomic_store(&g_sim[0]->rate, 10.0);
    int64_t pending = 1, running = 1;
    double done_at = 0;
    while (atomic_load(&g_now) < g_t0 + 200) {
        tick(0.5);
        assert_int_equal(store_lines_count_unfinished(g_st, "batch_spill", &pending, &running), NS_OK);
        if (pending + running == 0) {
            done_at = atomic_load(&g_now);
            break;
        }
    }
    sched_get_stats(local, &ls);
    if (ls.lines_taken_back == 0)
        fail_msg("no line came back once the local rate recovered");
    if (done_at == 0 || done_at > g_t0 + 100)
        fail_msg("the batch ended at t+%.1f, its deadline is t+100", done_at - g_t0);
    sched_free(local);
    sched_free(fb);

    /* every custom_id exactly once, each line counted where it ran */
    struct store_route l = route_of("batch_spill", "local"), f = route_of("batch_spill", "fb");
    assert_int_equal(l.completed + f.completed, 200);
    assert_true(l.completed > 0 && f.completed > 0);
    assert_int_equal(l.input_tokens, l.completed * 10);
    char out[160];
    snprintf(out, sizeof(out), "%s/out.jsonl", g_dir);
    FILE *o = fopen(out, "w+");
    assert_int_equal(store_lines_export(g_st, "batch_spill", o, NULL), NS_OK);
    rewind(o);
    static char seen[200];
    memset(seen, 0, sizeof(seen));
    char line[4096];
    int lines = 0;
    while (fgets(line, sizeof(line), o)) {
        const char *c = strstr(line, "\"custom_id\":\"c");
        assert_non_null(c);
        int k = atoi(c + 14);
        assert_true(k >= 0 && k < 200);
        assert_int_equal(seen[k], 0);
        seen[k] = 1;
        lines++;
    }
    fclose(o);
    assert_int_equal(lines, 200);
    struct store_batch b;
    assert_int_equal(store_batch_get(g_st, "batch_spill", &b), NS_OK);
    assert_int_equal(b.completed, 200);
    assert_int_equal(b.failed, 0);
    store_batch_release(&b);
    print_message("spill: %lld lines ran on local, %lld on fb; done at t+%.1f of a 100 s deadline\n",
                  (long long)l.completed, (long long)f.completed, done_at - g_t0);
}

/* the rule on its own: nothing before the rate is known; the spill is what does not fit
 * (capped by the pending lines); lines come back only past the fallback's turnaround and
 * the stricter margin */
static void test_plan_rule(void **state)
{
    (void)state;
    struct route_conf c = route_default_conf();
    c.margin = 0.25;
    c.turnaround_s = 10;
    c.min_observe_s = 4;
    c.tick_s = 1;
    struct route_rate r;
    memset(&r, 0, sizeof(r));
    route_rate_sample(&r, &c, 0, 0, true);
    route_rate_sample(&r, &c, 2, 4, true);
    assert_false(r.known);
    assert_int_equal(route_plan(&c, &r, 2, 100, 1000, 1000, 0), 0); /* not known yet */
    route_rate_sample(&r, &c, 4, 8, true);
    assert_true(r.known);
    assert_true(fabs(r.rate - 2) < 1e-9);
    /* 96 s left at 2/s with a 25% margin: 153.6 fit; 200 left -> 47 spill */
    assert_int_equal(route_plan(&c, &r, 4, 100, 200, 150, 0), 47);
    assert_int_equal(route_plan(&c, &r, 4, 100, 200, 30, 0), 30); /* only pending lines move */
    /* back: 2 * (96 - 12.5) / 1.5 = 111.3 - 100 left = 11, capped by what waits there */
    assert_int_equal(route_plan(&c, &r, 4, 100, 100, 100, 50), -11);
    assert_int_equal(route_plan(&c, &r, 4, 100, 100, 100, 5), -5);
    assert_int_equal(route_plan(&c, &r, 4, 100, 140, 100, 50), 0); /* between the two margins */
    assert_int_equal(route_plan(&c, &r, 95, 100, 1, 1, 50), 0);    /* inside the turnaround */
    assert_int_equal(route_plan(&c, &r, 101, 100, 50, 50, 0), 0);  /* past the deadline: expiry's */
    /* an idle stretch is not measured; the EWMA then follows the new rate */
    route_rate_sample(&r, &c, 10, 8, false);
    route_rate_sample(&r, &c, 50, 8, true);
    route_rate_sample(&r, &c, 51, 18, true);
    assert_true(fabs(r.rate - (0.3 * 10 + 0.7 * 2)) < 1e-9);
}

static void test_deadline(void **state)
{
    (void)state;
    double t = 0;
    assert_int_equal(route_parse_time("2026-12-07T10:00:00Z", &t), NS_OK);
    assert_true(t == 1796637600.0);
    assert_int_equal(route_parse_time("2026-12-07T12:00:00+02:00", &t), NS_OK);
    assert_true(t == 1796637600.0);
    assert_int_equal(route_parse_time("2026-12-07t09:30:00.5-00:30", &t), NS_OK);
    assert_true(t == 1796637600.5);
    assert_int_equal(route_parse_time("1796637600", &t), NS_OK);
    assert_true(t == 1796637600.0);
    static const char *const bad[] = {"", "tomorrow", "2026-12-07T10:00:00", "2026-13-07T10:00:00Z",
                                      "2026-12-07T10:00:00Zjunk", "2026-12-07T10:00:00+2", "-5", "1.2.3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (route_parse_time(bad[i], &t) == NS_OK)
            fail_msg("'%s' was taken as a time", bad[i]);
    /* the metadata's deadline when earlier than expiry; else expiry */
    assert_true(route_deadline("{\"deadline\":\"1796637600\"}", 1796640000) == 1796637600.0);
    assert_true(route_deadline("{\"deadline\":\"2026-12-07T10:00:00Z\"}", 0) == 1796637600.0);
    assert_true(route_deadline("{\"deadline\":\"1796647600\"}", 1796640000) == 1796640000.0);
    assert_true(route_deadline("{\"other\":\"x\"}", 1796640000) == 1796640000.0);
    assert_true(route_deadline(NULL, 0) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_rule),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test_setup_teardown(test_spill_and_back, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
