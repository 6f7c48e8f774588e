/*
 * steps.c — see steps.h: the step-time model and the step plan.
 */
#include "steps.h"

#include <math.h>
#include <string.h>

void steps_model_init(struct steps_model *m) { memset(m, 0, sizeof(*m)); }

void steps_model_observe(struct steps_model *m, int tokens, int seqs, int passes, double ms)
{
    if (tokens <= 0 || seqs <= 0 || passes <= 0 || !(ms >= 0) || !isfinite(ms))
        return;
    /* relative error is what is minimized (weight 1/ms^2): the budget decides small steps,
     * and the large ones (prompt chunks, full decodes) would otherwise set the line's low
     * end, where a step's time is not quite linear (measured: a fit by absolute error put a
     * single token at 45 ms where it takes 7) */
    double w = 1 / (ms > 0.1 ? ms * ms : 0.01);
    double x[STEPS_NX] = {1, tokens, seqs, passes};
    for (int i = 0; i < STEPS_NX; i++) {
        for (int j = 0; j < STEPS_NX; j++)
            m->sxx[i][j] = m->sxx[i][j] * STEPS_DECAY + w * x[i] * x[j];
        m->sxy[i] = m->sxy[i] * STEPS_DECAY + w * x[i] * ms;
    }
    m->syy = m->syy * STEPS_DECAY + w * ms * ms;
    m->n++;
}

/* least squares over the coefficients in `use` (bit i: term i; the others 0): false when
 * the steps seen cannot tell them apart (a singular system) */
static bool fit_subset(const struct steps_model *m, int use, double beta[STEPS_NX])
{
    int idx[STEPS_NX], k = 0;
    for (int i = 0; i < STEPS_NX; i++)
        if (use & (1 << i))
            idx[k++] = i;
    double A[STEPS_NX][STEPS_NX + 1];
    for (int r = 0; r < k; r++) {
        for (int c = 0; c < k; c++)
            A[r][c] = m->sxx[idx[r]][idx[c]];
        A[r][k] = m->sxy[idx[r]];
    }
    /* Gaussian elimination with partial pivoting */
    for (int col = 0; col < k; col++) {
        int piv = col;
        for (int r = col + 1; r < k; r++)
            if (fabs(A[r][col]) > fabs(A[piv][col]))
                piv = r;
        if (fabs(A[piv][col]) < 1e-9 * fabs(m->sxx[idx[col]][idx[col]]) || A[piv][col] == 0)
            return false;
        for (int c = 0; c <= k; c++) {
            double t = A[col][c];
            A[col][c] = A[piv][c];
            A[piv][c] = t;
        }
        for (int r = 0; r < k; r++) {
            if (r == col)
                continue;
            double f = A[r][col] / A[col][col];
            for (int c = col; c <= k; c++)
                A[r][c] -= f * A[col][c];
        }
    }
    for (int i = 0; i < STEPS_NX; i++)
        beta[i] = 0;
    for (int r = 0; r < k; r++)
        beta[idx[r]] = A[r][k] / A[r][r];
    return true;
}

/* the weighted squared error of coefficients beta over the steps seen */
static double fit_sse(const struct steps_model *m, const double beta[STEPS_NX])
{
    double sse = m->syy;
    for (int i = 0; i < STEPS_NX; i++) {
        sse -= 2 * beta[i] * m->sxy[i];
        for (int j = 0; j < STEPS_NX; j++)
            sse += beta[i] * beta[j] * m->sxx[i][j];
    }
    return sse;
}

bool steps_model_coef(const struct steps_model *m, struct steps_coef *k)
{
    if (m->n < STEPS_MIN_OBS)
        return false;
    /* non-negative least squares by trying every subset of the terms (fifteen): a cost
     * cannot be negative, and a fit that wants one is told by the data without it */
    double best[STEPS_NX] = {0}, best_sse = INFINITY;
    for (int use = 1; use < (1 << STEPS_NX); use++) {
        double beta[STEPS_NX];
        if (!fit_subset(m, use, beta))
            continue;
        bool neg = false;
        for (int i = 0; i < STEPS_NX; i++)
            neg |= beta[i] < 0;
        if (neg || beta[1] + beta[2] + beta[3] <= 0)
            continue; /* a step that costs the same whatever it carries predicts nothing */
        double sse = fit_sse(m, beta);
        if (!isfinite(best_sse) || sse < best_sse - 1e-9 * (1 + fabs(best_sse))) {
            best_sse = sse;
            memcpy(best, beta, sizeof(best));
        }
    }
    if (!isfinite(best_sse))
        return false;
    *k = (struct steps_coef){.a = best[0], .b = best[1], .c = best[2], .d = best[3]};
    return true;
}

static double coef_ms(const struct steps_coef *k, int tokens, int seqs, int passes)
{
    return k->a + k->b * tokens + k->c * seqs + k->d * passes;
}

double steps_model_predict(const struct steps_model *m, int tokens, int seqs, int passes)
{
    struct steps_coef k;
    if (!steps_model_coef(m, &k))
        return -1;
    return coef_ms(&k, tokens, seqs, passes);
}

int steps_passes(const struct steps_params *p, const struct steps_seq *seq, const int *take, int n)
{
    int tokens = 0, passes = 0, ub = p->n_ubatch > 0 ? p->n_ubatch : 512;
    int tk[STEPS_MAX_ID + 1] = {0};
    for (int i = 0; i < n; i++) {
        tokens += take[i];
        if (take[i] > 0 && seq[i].id >= 0 && seq[i].id < STEPS_MAX_ID)
            tk[seq[i].id] = take[i];
        else if (take[i] > 0)
            passes += (take[i] + ub - 1) / ub; /* an id beyond the table: a run of its own */
    }
    if (tokens == 0)
        return 0;
    if (!p->sequential)
        return (tokens + ub - 1) / ub;
    /* split_equal: a run's first pass takes as many tokens of each of its sequences as the
     * one with fewest has; what prompts have left over goes in further passes */
    for (int id = 0; id < STEPS_MAX_ID;) {
        if (!tk[id]) {
            id++;
            continue;
        }
        int end = id, least = tk[id];
        while (end < STEPS_MAX_ID && tk[end]) {
            least = tk[end] < least ? tk[end] : least;
            end++;
        }
        passes += 1 + (least - 1) / ub;
        for (int j = id; j < end; j++)
            passes += (tk[j] - least + ub - 1) / ub;
        id = end;
    }
    return passes;
}

/* the legacy plan (no interactive sequence, or no model yet): every generating sequence
 * one token, then interactive prompts, then the others, up to n_batch; with a priority lane
 * ordinary prompts get at most a micro-batch's room beside the decodes (at least a quarter
 * of one, so prompts still move), and none in a step that carries an interactive prompt */
static int plan_legacy(const struct steps_params *p, const struct steps_seq *seq, int n, int *take)
{
    int budget = p->n_batch, n_total = 0;
    bool prio_prompt = false;
    for (int pass = 0; pass < 3; pass++) {
        if (pass == 2 && p->lane) {
            if (prio_prompt)
                break;
            int ub = p->n_ubatch, cap = ub - n_total;
            if (cap < ub / 4)
                cap = ub / 4;
            if (cap < budget)
                budget = cap;
        }
        for (int i = 0; i < n && budget > 0; i++) {
            int pending = seq[i].pending;
            if (pending <= 0 || seq[i].waiting || (pass == 0) != (pending == 1))
                continue;
            if (pass && (pass == 1) != seq[i].priority)
                continue;
            int t = pending < budget ? pending : budget;
            take[i] = t;
            n_total += t;
            budget -= t;
            prio_prompt |= pass == 1;
        }
    }
    return n_total;
}

/* the passes one more sequence, id, adds to a step whose fed ids are in fed (sequential
 * KV: a new run unless it touches one, one run fewer when it joins two) */
static int added_passes(const struct steps_params *p, const bool *fed, int id)
{
    if (!p->sequential)
        return 0; /* tokens decide the passes: in b */
    if (id < 0 || id >= STEPS_MAX_ID)
        return 1;
    bool below = id > 0 && fed[id - 1], above = id + 1 < STEPS_MAX_ID && fed[id + 1];
    return 1 - below - above;
}

void steps_plan(const struct steps_params *p, const struct steps_model *m, const struct steps_seq *seq, int n,
                int *rr, int *take, struct steps_outcome *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < n; i++)
        take[i] = 0;
    bool interactive = false;
    for (int i = 0; i < n; i++)
        interactive |= seq[i].priority && seq[i].pending > 0;
    struct steps_coef k;
    if (!interactive || p->target_ms < 0 || !m || !steps_model_coef(m, &k)) {
        out->n_tokens = plan_legacy(p, seq, n, take);
        out->interactive = interactive;
        return;
    }
    out->interactive = true;
    bool fed[STEPS_MAX_ID + 1] = {false};
    /* the interactive tokens first: decodes, then prompts (whole, up to n_batch) */
    int budget = p->n_batch, n_total = 0, n_seqs = 0;
    bool prio_prompt = false;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n && budget > 0; i++) {
            int pending = seq[i].pending;
            if (!seq[i].priority || pending <= 0 || seq[i].waiting || (pass == 0) != (pending == 1))
                continue;
            int t = pending < budget ? pending : budget;
            take[i] = t;
            n_total += t;
            n_seqs++;
            budget -= t;
            prio_prompt |= pass == 1;
            if (seq[i].id >= 0 && seq[i].id < STEPS_MAX_ID)
                fed[seq[i].id] = true;
        }
    /* what the budget leaves for batch work, in ms (at least one token: it never stops) */
    double own = coef_ms(&k, n_total, n_seqs, steps_passes(p, seq, take, n));
    double target = p->target_ms > 0 ? p->target_ms : 2 * own;
    double room = target - own;
    out->budget_ms = target;
    int left = 0, given = 0;
    /* batch decodes by sequence id, round-robin from *rr, in one window: the first that does
     * not fit ends it (the next step starts there), so the window stays one run */
    int order[STEPS_MAX_ID], nc = 0;
    for (int id = 0; id < STEPS_MAX_ID; id++)
        order[id] = -1;
    for (int i = 0; i < n; i++)
        if (!seq[i].priority && !seq[i].waiting && seq[i].pending == 1 && seq[i].id >= 0 && seq[i].id < STEPS_MAX_ID) {
            order[seq[i].id] = i;
            nc++;
        }
    int start = *rr >= 0 && *rr < STEPS_MAX_ID ? *rr : 0, next = start;
    bool closed = false;
    for (int j = 0; j < STEPS_MAX_ID && nc > 0; j++) {
        int id = (start + j) % STEPS_MAX_ID, i = order[id];
        if (i < 0)
            continue;
        double extra = k.b + k.c + k.d * added_passes(p, fed, id);
        if (!closed && budget > 0 && (room >= extra || given == 0)) {
            take[i] = 1;
            fed[id] = true;
            n_total++;
            budget--;
            room -= extra;
            given++;
            next = (id + 1) % STEPS_MAX_ID;
        } else {
            closed = true;
            left++;
        }
    }
    *rr = next;
    /* batch prompt chunks, in admission order, with what is left (none beside an
     * interactive prompt, as without a budget) */
    for (int i = 0; i < n; i++) {
        if (seq[i].priority || seq[i].waiting || seq[i].pending <= 1)
            continue;
        double fixed = k.c + k.d * (p->sequential ? 1 : 0);
        int fit = k.b > 0 ? (int)floor((room - fixed) / k.b) : budget;
        if (given == 0 && fit < 1)
            fit = 1;
        if (fit > budget)
            fit = budget;
        if (fit > 0 && !prio_prompt) {
            int t = seq[i].pending < fit ? seq[i].pending : fit;
            take[i] = t;
            n_total += t;
            budget -= t;
            room -= fixed + k.b * t;
            given++;
            left += t < seq[i].pending;
        } else {
            left++;
        }
    }
    out->capped = left > 0;
    out->n_tokens = n_total;
}
