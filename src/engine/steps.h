/*
 * steps.h — how much one engine step carries: the plan of who feeds how many tokens, and
 * the latency budget interactive requests keep while batch work fills the engine.
 *
 * DESIGN
 * llama.cpp decodes a step's tokens as micro-batches in a row, each a pass over the weights,
 * and on a CPU a step's time is close to linear in what it carries:
 *     ms = a + b * tokens + c * sequences + d * passes
 * a: the step's fixed costs; b: each token's compute; c: what each sequence adds (its
 * attention over its KV, and its sampling, which a temperature sampler over a 151,936-token
 * vocabulary makes about 1 ms a sequence on 2 threads); d: each pass over the weights.
 * Passes: with a KV stream per sequence (the default) llama.cpp cuts a step into
 * micro-batches of consecutive sequence ids (split_equal, sequential), so a step's passes
 * are its runs of consecutive ids; with one unified KV it cuts n_ubatch tokens at a time.
 * They are told apart because prompt chunks bring many tokens of one sequence, decodes one
 * token of each, and the same number of sequences comes in one run or in several:
 * measured with a 60M model on this project's 2-core CPU (issue 32, NS step traces), a
 * 32-sequence decode step in one run took 40 ms and 9 sequences in three runs 60-75 ms,
 * where one run of 8 takes 16. steps_model learns a..d online from the engine's own steps
 * (least squares weighted by relative error over recent steps, older ones decaying, none
 * negative), so it follows the machine, the model and the context lengths.
 *
 * steps_plan decides each step. With no interactive sequence running, it is the plan the
 * engine always made: every generating sequence one token, then prompts (interactive
 * first) up to n_batch. While interactive sequences run, a step's predicted time is held
 * to the budget (a target in ms): the interactive sequences' tokens first (their decodes,
 * then their prompts, whole: an interactive prompt's first step carries it, with what
 * fits), then batch decodes, round-robin over their sequence ids in one window of
 * consecutive ids (each step takes up where the last left off, so every batch sequence
 * moves, and the window is one pass, not one per sequence), then batch prompt chunks, as
 * far as the budget reaches. At least one batch token goes into every step that has batch
 * work, so neither side starves. The budget is the caller's fixed target, or by default
 * (auto) twice what the interactive tokens alone are predicted to take: a stream under
 * load then moves at most about half as fast as it would idle.
 *
 * THREADS: plain data; the engine thread owns both.
 */
#ifndef NS_ENGINE_STEPS_H
#define NS_ENGINE_STEPS_H

#include <stdbool.h>

/* ms = a + b * tokens + c * sequences + d * passes, fitted to observed steps; each
 * observation weighs STEPS_DECAY times the one after it */
#define STEPS_DECAY 0.98
#define STEPS_MIN_OBS 8          /* predictions before this many observations: none */
#define STEPS_NX 4               /* the terms: 1, tokens, sequences, passes */
#define STEPS_MAX_ID 1024        /* sequence ids the plan tells apart (llama.cpp: 256) */

struct steps_model {
    /* decayed sums of x x^T and x y over x = (1, tokens, sequences, passes), y = ms */
    double sxx[STEPS_NX][STEPS_NX], sxy[STEPS_NX], syy;
    int n;                       /* observations so far */
};

/* the fitted coefficients, in ms */
struct steps_coef {
    double a;                    /* per step */
    double b;                    /* per token */
    double c;                    /* per sequence */
    double d;                    /* per pass over the weights */
};

void steps_model_init(struct steps_model *m);
/* one decoded step of `tokens` tokens over `seqs` sequences in `passes` passes (micro-batches)
 * that took `ms` */
void steps_model_observe(struct steps_model *m, int tokens, int seqs, int passes, double ms);
/* the predicted ms of such a step; < 0 while the model knows too little */
double steps_model_predict(const struct steps_model *m, int tokens, int seqs, int passes);
/* the fitted coefficients, none negative (false while the model knows too little). Terms
 * the steps seen never tell apart (decodes only, in one run) get 0, and another term their
 * joint cost. */
bool steps_model_coef(const struct steps_model *m, struct steps_coef *k);

/* one sequence as a step sees it */
struct steps_seq {
    int id;                      /* its sequence id (KV stream), 0..STEPS_MAX_ID-1 */
    int pending;                 /* tokens it has to feed (1: generating; more: a prompt) */
    bool priority;               /* interactive (or computing a prefix an interactive one waits for) */
    bool waiting;                /* waits for another's prefix: feeds nothing */
};

struct steps_params {
    int n_batch;                 /* the most tokens of a step */
    int n_ubatch;                /* llama.cpp's micro-batch */
    bool sequential;             /* a KV stream per sequence: a pass per run of consecutive
                                    ids (else n_ubatch tokens a pass) */
    bool lane;                   /* the engine has a priority lane (a server) */
    double target_ms;            /* the interactive budget: > 0 fixed, 0 auto (twice the
                                    interactive tokens' own time), < 0 off */
};

/* what a plan decided about the budget */
struct steps_outcome {
    bool interactive;            /* interactive sequences fed this step: the budget applied */
    bool capped;                 /* ... and it left batch tokens out */
    double budget_ms;            /* the budget it planned for (0 when none applied) */
    int n_tokens;
};

/* the passes llama.cpp makes over a step in which seq[i] feeds take[i] tokens */
int steps_passes(const struct steps_params *p, const struct steps_seq *seq, const int *take, int n);

/* Decide take[i] (tokens fed by seq i, 0..pending) for n sequences in admission order.
 * rr: the round-robin position (a sequence id) among batch decodes, advanced by the plan.
 * m may be NULL or know too little: the budget then does not apply. */
void steps_plan(const struct steps_params *p, const struct steps_model *m, const struct steps_seq *seq, int n,
                int *rr, int *take, struct steps_outcome *out);

#endif
