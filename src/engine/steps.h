/*
 * steps.h — how much one engine step carries: the plan of who feeds how many tokens, and
 * the latency budget interactive requests keep while batch work fills the engine.
 *
 * DESIGN
 * llama.cpp decodes a step's tokens as micro-batches in a row, so on a CPU a step's time is
 * close to linear in what it carries: ms = a + b * tokens + c * sequences (a: the step's
 * fixed costs; b: each token's compute; c: what each sequence adds on top, its own
 * attention over its KV and its share of the micro-batch splits). The two are told apart
 * because prompt chunks bring many tokens of one sequence and decodes one token of each:
 * measured on this project's CPU with a 60M model, a 32-sequence decode step cost about
 * 100 ms while a 512-token prompt chunk of one sequence cost about 400 ms, so one line in
 * tokens alone fitted neither (it predicted 40 ms for a single token that takes 5).
 * steps_model learns a, b and c online from the engine's own decode timings (least squares
 * over recent steps, older ones decaying), so it follows the machine, the model and the
 * context lengths without configuration.
 *
 * steps_plan decides each step. With no interactive sequence running, it is the plan the
 * engine always made: every generating sequence one token, then prompts (interactive
 * first) up to n_batch. While interactive sequences run, a step's predicted time is held
 * to the budget (a target in ms): the interactive sequences' tokens first (their decodes,
 * then their prompts, whole: an interactive prompt's first step carries it, with what
 * fits), then batch decodes, taken round-robin so every batch sequence moves, then batch
 * prompt chunks, as far as the budget's tokens reach. At least one batch token goes into
 * every step that has batch work, so neither side starves. The budget is the caller's
 * fixed target, or by default (auto) twice what the interactive tokens alone are predicted
 * to take: a stream under load then moves at most about half as fast as it would idle.
 *
 * THREADS: plain data; the engine thread owns both.
 */
#ifndef NS_ENGINE_STEPS_H
#define NS_ENGINE_STEPS_H

#include <stdbool.h>

/* ms = a + b * tokens + c * sequences, fitted to observed steps; each observation weighs
 * STEPS_DECAY times the one after it */
#define STEPS_DECAY 0.98
#define STEPS_MIN_OBS 8          /* predictions before this many observations: none */

struct steps_model {
    /* decayed sums of x x^T and x y over x = (1, tokens, sequences), y = ms */
    double sxx[3][3], sxy[3], syy;
    int n;                       /* observations so far */
};

void steps_model_init(struct steps_model *m);
/* one decoded step of `tokens` tokens over `seqs` sequences that took `ms` */
void steps_model_observe(struct steps_model *m, int tokens, int seqs, double ms);
/* the predicted ms of such a step; < 0 while the model knows too little */
double steps_model_predict(const struct steps_model *m, int tokens, int seqs);
/* the fitted a, b, c, none negative (false while the model knows too little). Steps that
 * never tell tokens from sequences (decodes only) give c = 0 and b their joint cost. */
bool steps_model_coef(const struct steps_model *m, double *a, double *b, double *c);

/* one sequence as a step sees it */
struct steps_seq {
    int pending;                 /* tokens it has to feed (1: generating; more: a prompt) */
    bool priority;               /* interactive (or computing a prefix an interactive one waits for) */
    bool waiting;                /* waits for another's prefix: feeds nothing */
};

struct steps_params {
    int n_batch;                 /* the most tokens of a step */
    int n_ubatch;                /* llama.cpp's micro-batch */
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

/* Decide take[i] (tokens fed by seq i, 0..pending) for n sequences in admission order.
 * rr: the round-robin position among batch decodes, advanced by the plan. m may be NULL
 * or know too little: the budget then does not apply. */
void steps_plan(const struct steps_params *p, const struct steps_model *m, const struct steps_seq *seq, int n,
                int *rr, int *take, struct steps_outcome *out);

#endif
