/* Unit tests: engine/steps — the step-time model learned from a fake decoder's timings, and
 * the step plan: unconstrained while no interactive sequence runs (the plan the engine
 * always made), held to the budget while one does, batch decodes round-robin so each moves,
 * never a step without batch progress, an interactive prompt carried whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/engine/steps.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the fake decoder: a step of t tokens takes A + B t ms (and a little noise) */
#define A 2.0
#define B 1.0
static double fake_ms(int tokens, int k) { return A + B * tokens + 0.05 * ((k * 7919) % 11 - 5) / 5.0; }

static void learn(struct steps_model *m)
{
    steps_model_init(m);
    for (int k = 0; k < 40; k++) {
        int t = 1 + (k * 13) % 64;
        steps_model_observe(m, t, fake_ms(t, k));
    }
}

static void test_model(void **state)
{
    (void)state;
    struct steps_model m;
    steps_model_init(&m);
    assert_true(steps_model_predict(&m, 10) < 0);
    for (int k = 0; k < STEPS_MIN_OBS - 1; k++)
        steps_model_observe(&m, 10, 12);
    assert_true(steps_model_predict(&m, 10) < 0); /* too few to say */
    learn(&m);
    double a, b;
    assert_true(steps_model_coef(&m, &a, &b));
    assert_true(fabs(a - A) < 0.2);
    assert_true(fabs(b - B) < 0.02);
    assert_true(fabs(steps_model_predict(&m, 32) - (A + 32 * B)) < 0.5);
    /* steps all of one size: only the ratio is known, a line through the origin */
    steps_model_init(&m);
    for (int k = 0; k < 20; k++)
        steps_model_observe(&m, 16, 32);
    assert_true(steps_model_coef(&m, &a, &b));
    assert_true(a == 0 && fabs(b - 2) < 1e-9);
    /* nonsense is ignored */
    steps_model_observe(&m, 0, 5);
    steps_model_observe(&m, 4, NAN);
    steps_model_observe(&m, 4, -1);
    assert_int_equal(m.n, 20);
    /* it follows a machine that got slower */
    for (int k = 0; k < 200; k++)
        steps_model_observe(&m, 8 + k % 24, 3 * (8 + k % 24));
    assert_true(fabs(steps_model_predict(&m, 16) - 48) < 1);
}

#define N 33
static const struct steps_params SERVER = {.n_batch = 2048, .n_ubatch = 512, .lane = true, .target_ms = 0};

/* 32 batch sequences generating, seq 32 interactive when `inter` */
static void fill(struct steps_seq *seq, bool inter)
{
    for (int i = 0; i < N; i++)
        seq[i] = (struct steps_seq){.pending = 1};
    seq[N - 1].priority = true;
    seq[N - 1].pending = inter ? 1 : 0;
}

static int sum(const int *take, int n)
{
    int s = 0;
    for (int i = 0; i < n; i++)
        s += take[i];
    return s;
}

/* no interactive sequence: every batch sequence decodes, as always */
static void test_unconstrained(void **state)
{
    (void)state;
    struct steps_model m;
    learn(&m);
    struct steps_seq seq[N];
    int take[N], rr = 0;
    struct steps_outcome out;
    fill(seq, false);
    steps_plan(&SERVER, &m, seq, N, &rr, take, &out);
    assert_false(out.interactive);
    assert_int_equal(sum(take, N), 32);
    /* and a batch prompt moves beside the decodes, a micro-batch's room */
    seq[0].pending = 3000;
    steps_plan(&SERVER, &m, seq, N, &rr, take, &out);
    assert_int_equal(take[0], 512 - 31);
    /* an interactive sequence but no model yet: the old plan, all of them */
    struct steps_model none;
    steps_model_init(&none);
    fill(seq, true);
    steps_plan(&SERVER, &none, seq, N, &rr, take, &out);
    assert_true(out.interactive);
    assert_int_equal(sum(take, N), 33);
    /* the budget turned off */
    struct steps_params off = SERVER;
    off.target_ms = -1;
    steps_plan(&off, &m, seq, N, &rr, take, &out);
    assert_int_equal(sum(take, N), 33);
}

/* steps kept within the budget while the interactive sequence runs; every batch sequence
 * still moves (round-robin), and the fake clock agrees with the prediction */
static void test_budget_kept(void **state)
{
    (void)state;
    struct steps_model m;
    learn(&m);
    struct steps_seq seq[N];
    int take[N], rr = 0, got[N] = {0};
    struct steps_outcome out;
    fill(seq, true);
    for (int step = 0; step < 40; step++) {
        steps_plan(&SERVER, &m, seq, N, &rr, take, &out);
        assert_true(out.interactive);
        assert_int_equal(take[N - 1], 1); /* the interactive decode is always in */
        /* auto: twice the interactive token's own time, 2 * (2 + 1) = 6 ms: 4 tokens */
        assert_true(fabs(out.budget_ms - 6) < 0.3);
        int n = sum(take, N);
        assert_true(n >= 2 && n <= 4);
        double ms = fake_ms(n, step);
        assert_true(ms <= out.budget_ms + 0.2);
        assert_true(out.capped);
        steps_model_observe(&m, n, ms);
        for (int i = 0; i < N; i++)
            got[i] += take[i];
    }
    /* 40 steps of 3 batch tokens: 120 over 32 sequences, each 3 or 4 */
    for (int i = 0; i < N - 1; i++)
        assert_true(got[i] >= 3 && got[i] <= 4);
    /* a fixed target: 10 ms, so 8 tokens */
    struct steps_params fixed = SERVER;
    fixed.target_ms = 10;
    steps_plan(&fixed, &m, seq, N, &rr, take, &out);
    assert_true(sum(take, N) >= 7 && sum(take, N) <= 8);
    /* a target below what anything takes: batch work still gets one token */
    fixed.target_ms = 0.5;
    steps_plan(&fixed, &m, seq, N, &rr, take, &out);
    assert_int_equal(sum(take, N), 2);
}

/* an interactive prompt goes whole into its first step, with what fits beside it */
static void test_interactive_prompt(void **state)
{
    (void)state;
    struct steps_model m;
    learn(&m);
    struct steps_seq seq[N];
    int take[N], rr = 0;
    struct steps_outcome out;
    fill(seq, true);
    seq[N - 1].pending = 200;
    seq[0].pending = 900; /* a batch prompt: no room beside an interactive prompt */
    steps_plan(&SERVER, &m, seq, N, &rr, take, &out);
    assert_int_equal(take[N - 1], 200);
    assert_int_equal(take[0], 0);
    /* auto budget: 2 * (2 + 200) ms: room for the batch decodes */
    assert_int_equal(sum(take, N), 200 + 31);
    /* a waiting sequence feeds nothing, and a prefix an interactive one waits for computes
     * first (the caller marks it priority) */
    fill(seq, true);
    seq[N - 1].pending = 50;
    seq[N - 1].waiting = true;
    seq[5].pending = 400;
    seq[5].priority = true;
    steps_plan(&SERVER, &m, seq, N, &rr, take, &out);
    assert_int_equal(take[N - 1], 0);
    assert_int_equal(take[5], 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_unconstrained),
        cmocka_unit_test(test_budget_kept),
        cmocka_unit_test(test_interactive_prompt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
