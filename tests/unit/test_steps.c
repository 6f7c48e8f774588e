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

/* the fake decoder: a step of t tokens over q sequences in r passes takes A + B t + C q + D r
 * ms (and a little noise); prompt tokens are cheap beside what each sequence adds, and each
 * pass over the weights costs about as much as a sequence (as measured on a CPU) */
#define A 2.0
#define B 0.5
#define C 2.5
#define D 3.0
static double fake_ms(int tokens, int seqs, int passes, int k)
{
    return A + B * tokens + C * seqs + D * passes + 0.05 * ((k * 7919) % 11 - 5) / 5.0;
}

/* what an engine sees: decode steps of 1..32 sequences in one to three runs, and prompt
 * chunks */
static void learn(struct steps_model *m)
{
    steps_model_init(m);
    for (int k = 0; k < 80; k++) {
        int q = 1 + (k * 13) % 32, t = k % 3 == 0 ? q + 64 * (1 + k % 7) : q, r = 1 + (k * 5) % 3;
        if (r > q)
            r = q;
        steps_model_observe(m, t, q, r, fake_ms(t, q, r, k));
    }
}

static void test_model(void **state)
{
    (void)state;
    struct steps_model m;
    steps_model_init(&m);
    assert_true(steps_model_predict(&m, 10, 1, 1) < 0);
    for (int k = 0; k < STEPS_MIN_OBS - 1; k++)
        steps_model_observe(&m, 10, 1, 1, 12);
    assert_true(steps_model_predict(&m, 10, 1, 1) < 0); /* too few to say */
    learn(&m);
    struct steps_coef k;
    assert_true(steps_model_coef(&m, &k));
    assert_true(fabs(k.a - A) < 0.3 && fabs(k.b - B) < 0.05 && fabs(k.c - C) < 0.2 && fabs(k.d - D) < 0.3);
    assert_true(fabs(steps_model_predict(&m, 32, 32, 1) - (A + 32 * (B + C) + D)) < 0.5);
    assert_true(fabs(steps_model_predict(&m, 9, 9, 3) - (A + 9 * (B + C) + 3 * D)) < 0.5);
    assert_true(fabs(steps_model_predict(&m, 512, 1, 1) - (A + 512 * B + C + D)) < 2);
    /* decodes only, in one run: tokens and sequences cannot be told apart; no term negative */
    steps_model_init(&m);
    for (int j = 0; j < 40; j++)
        steps_model_observe(&m, 1 + j % 16, 1 + j % 16, 1, 2 + 3.0 * (1 + j % 16));
    assert_true(steps_model_coef(&m, &k));
    assert_true(k.a >= 0 && k.b >= 0 && k.c >= 0 && k.d >= 0);
    assert_true(fabs(steps_model_predict(&m, 8, 8, 1) - 26) < 0.5);
    /* all steps alike: only their total is known, and it is predicted */
    steps_model_init(&m);
    for (int j = 0; j < 20; j++)
        steps_model_observe(&m, 16, 16, 1, 32);
    assert_true(steps_model_coef(&m, &k));
    assert_true(fabs(steps_model_predict(&m, 16, 16, 1) - 32) < 1e-6);
    /* what is not a step is ignored */
    steps_model_observe(&m, 0, 1, 1, 5);
    steps_model_observe(&m, 4, 0, 1, 5);
    steps_model_observe(&m, 4, 1, 0, 5);
    steps_model_observe(&m, 4, 1, 1, NAN);
    steps_model_observe(&m, 4, 1, 1, -1);
    assert_int_equal(m.n, 20);
    /* the machine slows down (another load): the model follows */
    learn(&m);
    for (int j = 0; j < 400; j++) {
        int q = 1 + (j * 13) % 32, t = j % 3 == 0 ? q + 64 * (1 + j % 7) : q;
        steps_model_observe(&m, t, q, 1, 3 * fake_ms(t, q, 1, j));
    }
    assert_true(fabs(steps_model_predict(&m, 16, 16, 1) - 3 * (A + 16 * (B + C) + D)) < 2);
}

/* the passes llama.cpp makes: runs of consecutive ids with a KV stream each, and the
 * prompt tokens left over by a run's first pass; n_ubatch tokens a pass with unified KV */
static void test_passes(void **state)
{
    (void)state;
    struct steps_params p = {.n_batch = 2048, .n_ubatch = 512, .sequential = true};
    struct steps_seq seq[6];
    int take[6];
    for (int i = 0; i < 6; i++) {
        seq[i] = (struct steps_seq){.id = i, .pending = 1};
        take[i] = 1;
    }
    assert_int_equal(steps_passes(&p, seq, take, 6), 1);
    seq[3].id = 7; /* 0 1 2, 7, 4 5 */
    assert_int_equal(steps_passes(&p, seq, take, 6), 3);
    take[4] = take[5] = 0; /* 0 1 2, 7 */
    assert_int_equal(steps_passes(&p, seq, take, 6), 2);
    take[1] = 100; /* run 0 1 2 takes one token each, then 99 of seq 1 */
    assert_int_equal(steps_passes(&p, seq, take, 6), 3);
    for (int i = 0; i < 6; i++)
        take[i] = 0;
    take[2] = 600; /* a prompt alone: two micro-batches */
    assert_int_equal(steps_passes(&p, seq, take, 6), 2);
    take[2] = 0;
    assert_int_equal(steps_passes(&p, seq, take, 6), 0);
    p.sequential = false; /* unified: 600 + 5 tokens, two micro-batches whatever the ids */
    for (int i = 0; i < 6; i++)
        take[i] = 1;
    take[2] = 600;
    assert_int_equal(steps_passes(&p, seq, take, 6), 2);
    seq[5].id = STEPS_MAX_ID + 3; /* an id beyond the table counts, as a run of its own */
    p.sequential = true;
    for (int i = 0; i < 6; i++)
        take[i] = i == 5;
    assert_int_equal(steps_passes(&p, seq, take, 6), 1);
}

#define N 33
static const struct steps_params SERVER = {.n_batch = 2048, .n_ubatch = 512, .sequential = true, .lane = true,
                                           .target_ms = 0};

/* 32 batch sequences generating (ids 0..31), seq 32 interactive when `inter` */
static void fill(struct steps_seq *seq, bool inter)
{
    for (int i = 0; i < N; i++)
        seq[i] = (struct steps_seq){.id = i, .pending = 1};
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

/* steps kept within the budget while the interactive sequence runs; the batch decodes of a
 * step are one window (one pass), every batch sequence still moves (round-robin), and the
 * fake clock agrees with the prediction */
static void test_budget_kept(void **state)
{
    (void)state;
    struct steps_model m;
    learn(&m);
    struct steps_seq seq[N];
    int take[N], rr = 0, got[N] = {0};
    struct steps_outcome out;
    fill(seq, true);
    struct steps_params fixed = SERVER;
    fixed.target_ms = 30;
    for (int step = 0; step < 40; step++) {
        steps_plan(&fixed, &m, seq, N, &rr, take, &out);
        assert_true(out.interactive);
        assert_int_equal(take[N - 1], 1); /* the interactive decode is always in */
        int n = sum(take, N), passes = steps_passes(&fixed, seq, take, N);
        /* the interactive decode alone: 2 + 0.5 + 2.5 + 3 = 8 ms; 22 ms left: a window
         * away from it costs its own pass (6 ms for the first, 3 for each next: six
         * decodes), one touching it (ids up to 31) joins its pass */
        assert_true(passes <= 2);
        assert_true(n >= 7 && n <= 9);
        double ms = fake_ms(n, n, passes, step);
        assert_true(ms <= out.budget_ms + 0.5);
        assert_true(out.capped);
        steps_model_observe(&m, n, n, passes, ms);
        for (int i = 0; i < N - 1; i++)
            got[i] += take[i];
        if (step == 0) /* from id 0: ids 0..5, one window */
            for (int i = 0; i < N - 1; i++)
                assert_int_equal(take[i], i < 6);
    }
    /* 40 steps of 6 to 8 batch decodes over 32 sequences, round-robin: each 7 to 10 */
    for (int i = 0; i < N - 1; i++)
        assert_true(got[i] >= 7 && got[i] <= 11);
    /* auto: twice the interactive decode's own time, 16 ms: one batch decode fits beside it
     * (a window of its own costs 6) */
    rr = 0;
    steps_plan(&SERVER, &m, seq, N, &rr, take, &out);
    assert_true(fabs(out.budget_ms - 16) < 1);
    assert_int_equal(sum(take, N), 2);
    /* a window that reaches the interactive sequence's id joins its pass: id 31 costs no
     * pass of its own, so two batch decodes fit where one did */
    rr = 30;
    steps_plan(&SERVER, &m, seq, N, &rr, take, &out);
    assert_true(take[30] && take[31]);
    assert_int_equal(sum(take, N), 3);
    assert_int_equal(steps_passes(&SERVER, seq, take, N), 1);
    steps_plan(&SERVER, &m, seq, N, &rr, take, &out); /* ... and the next starts over from id 0 */
    assert_true(take[0]);
    /* a target below what anything takes: batch work still gets one token */
    fixed.target_ms = 0.5;
    steps_plan(&fixed, &m, seq, N, &rr, take, &out);
    assert_int_equal(sum(take, N), 2);
    /* no batch decodes but a batch prompt: a chunk sized to the budget */
    fill(seq, true);
    for (int i = 0; i < N - 1; i++)
        seq[i].pending = 0;
    seq[3].pending = 1000;
    fixed.target_ms = 50; /* 42 ms left: (42 - 2.5 - 3) / 0.5 = 73 tokens */
    steps_plan(&fixed, &m, seq, N, &rr, take, &out);
    assert_true(take[3] >= 70 && take[3] <= 76);
    /* unified KV: any ids in one pass, sequences priced alone */
    struct steps_params uni = fixed;
    uni.sequential = false;
    uni.target_ms = 30;
    fill(seq, true);
    steps_plan(&uni, &m, seq, N, &rr, take, &out);
    assert_true(sum(take, N) >= 8 && sum(take, N) <= 9); /* (30 - 8) / 3 = 7 batch decodes */
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
    /* auto budget: twice the prompt's own 2 + 100 + 2.5 + 3 ms: room for the 31 batch
     * decodes (6 + 30 x 3 = 96 ms) */
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
        cmocka_unit_test(test_passes),
        cmocka_unit_test(test_unconstrained),
        cmocka_unit_test(test_budget_kept),
        cmocka_unit_test(test_interactive_prompt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
