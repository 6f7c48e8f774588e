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

/* the fake decoder: a step of t tokens over q sequences takes A + B t + C q ms (and a little
 * noise); prompt tokens are cheap beside what each sequence adds (as measured on a CPU) */
#define A 2.0
#define B 0.5
#define C 2.5
static double fake_ms(int tokens, int seqs, int k)
{
    return A + B * tokens + C * seqs + 0.05 * ((k * 7919) % 11 - 5) / 5.0;
}

/* what an engine sees: decode steps of 1..32 sequences and prompt chunks */
static void learn(struct steps_model *m)
{
    steps_model_init(m);
    for (int k = 0; k < 60; k++) {
        int q = 1 + (k * 13) % 32, t = k % 3 == 0 ? q + 64 * (1 + k % 7) : q;
        steps_model_observe(m, t, q, fake_ms(t, q, k));
    }
}

static void test_model(void **state)
{
    (void)state;
    struct steps_model m;
    steps_model_init(&m);
    assert_true(steps_model_predict(&m, 10, 1) < 0);
    for (int k = 0; k < STEPS_MIN_OBS - 1; k++)
        steps_model_observe(&m, 10, 1, 12);
    assert_true(steps_model_predict(&m, 10, 1) < 0); /* too few to say */
    learn(&m);
    double a, b, c;
    assert_true(steps_model_coef(&m, &a, &b, &c));
    if (fabs(a - A) > 0.3 || fabs(b - B) > 0.02 || fabs(c - C) > 0.05)
        fail_msg("fitted a %.3f b %.3f c %.3f", a, b, c);
    assert_true(fabs(steps_model_predict(&m, 32, 32) - (A + 32 * (B + C))) < 0.5);
    assert_true(fabs(steps_model_predict(&m, 512, 1) - (A + 512 * B + C)) < 2);
    /* decodes only: tokens and sequences cannot be told apart, their joint cost is b */
    steps_model_init(&m);
    for (int k = 0; k < 30; k++)
        steps_model_observe(&m, 1 + k % 16, 1 + k % 16, 2 + 3.0 * (1 + k % 16));
    assert_true(steps_model_coef(&m, &a, &b, &c));
    if (fabs(a - 2) > 0.01 || fabs(b + c - 3) > 0.01)
        fail_msg("fitted a %.3f b %.3f c %.3f", a, b, c);
    /* steps all of one size: the line through the origin (no negative cost) */
    steps_model_init(&m);
    for (int k = 0; k < 20; k++)
        steps_model_observe(&m, 16, 16, 32);
    assert_true(steps_model_coef(&m, &a, &b, &c));
    assert_true(a >= 0 && b >= 0 && c >= 0);
    assert_true(fabs(steps_model_predict(&m, 16, 16) - 32) < 1e-6);
    /* nonsense is ignored */
    steps_model_observe(&m, 0, 1, 5);
    steps_model_observe(&m, 4, 0, 5);
    steps_model_observe(&m, 4, 1, NAN);
    steps_model_observe(&m, 4, 1, -1);
    assert_int_equal(m.n, 20);
    /* it follows a machine that got slower */
    learn(&m);
    for (int k = 0; k < 300; k++) {
        int q = 1 + k % 24, t = k % 2 ? q : q + 100;
        steps_model_observe(&m, t, q, 3 * fake_ms(t, q, k));
    }
    assert_true(fabs(steps_model_predict(&m, 16, 16) - 3 * (A + 16 * (B + C))) < 2);
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
        /* auto: twice the interactive decode's own time, 2 * (2 + 0.5 + 2.5) = 10 ms: one
         * batch decode (3 ms) fits beside it, a second would not */
        assert_true(fabs(out.budget_ms - 10) < 0.5);
        int n = sum(take, N);
        assert_int_equal(n, 2);
        double ms = fake_ms(n, n, step);
        assert_true(ms <= out.budget_ms + 0.2);
        assert_true(out.capped);
        steps_model_observe(&m, n, n, ms);
        for (int i = 0; i < N; i++)
            got[i] += take[i];
    }
    /* 40 steps of one batch decode over 32 sequences, round-robin: each 1 or 2 */
    for (int i = 0; i < N - 1; i++)
        assert_true(got[i] >= 1 && got[i] <= 2);
    /* a fixed target: 20 ms, so (20 - 5) / 3 = 5 batch decodes (the fit has moved a little
     * with 40 steps of one size) */
    struct steps_params fixed = SERVER;
    fixed.target_ms = 20;
    steps_plan(&fixed, &m, seq, N, &rr, take, &out);
    assert_true(sum(take, N) >= 5 && sum(take, N) <= 6);
    /* a target below what anything takes: batch work still gets one token */
    fixed.target_ms = 0.5;
    steps_plan(&fixed, &m, seq, N, &rr, take, &out);
    assert_int_equal(sum(take, N), 2);
    /* no batch decodes but a batch prompt: a chunk sized to the budget */
    fill(seq, true);
    for (int i = 0; i < N - 1; i++)
        seq[i].pending = 0;
    seq[3].pending = 1000;
    fixed.target_ms = 50; /* 45 ms left: (45 - 2.5) / 0.5 = 85 tokens */
    steps_plan(&fixed, &m, seq, N, &rr, take, &out);
    assert_true(take[3] >= 83 && take[3] <= 86);
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
    /* auto budget: twice the prompt's own 2 + 100 + 2.5 ms: room for the 31 batch decodes
     * (93 ms) */
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
