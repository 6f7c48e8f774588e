/*
 * steps.c — see steps.h: the step-time model and the step plan.
 */
#include "steps.h"

#include <math.h>
#include <string.h>

void steps_model_init(struct steps_model *m) { memset(m, 0, sizeof(*m)); }

void steps_model_observe(struct steps_model *m, int tokens, int seqs, double ms)
{
    if (tokens <= 0 || seqs <= 0 || !(ms >= 0) || !isfinite(ms))
        return;
    /* relative error is what is minimized (weight 1/ms^2): the budget decides small steps,
     * and the large ones (prompt chunks, full decodes) would otherwise set the line's low
     * end, where a step's time is not quite linear (measured: a fit by absolute error put a
     * single token at 45 ms where it takes 7) */
    double w = 1 / (ms > 0.1 ? ms * ms : 0.01);
    double x[3] = {1, tokens, seqs};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++)
            m->sxx[i][j] = m->sxx[i][j] * STEPS_DECAY + w * x[i] * x[j];
        m->sxy[i] = m->sxy[i] * STEPS_DECAY + w * x[i] * ms;
    }
    m->syy = m->syy * STEPS_DECAY + w * ms * ms;
    m->n++;
}

/* least squares over the coefficients in `use` (bits 0..2: a, b, c; the others 0): false
 * when the steps seen cannot tell them apart (a singular system) */
static bool fit_subset(const struct steps_model *m, int use, double beta[3])
{
    int idx[3], k = 0;
    for (int i = 0; i < 3; i++)
        if (use & (1 << i))
            idx[k++] = i;
    double A[3][4];
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
        if (fabs(A[piv][col]) < 1e-12 * fabs(m->sxx[idx[col]][idx[col]]) || A[piv][col] == 0)
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
    beta[0] = beta[1] = beta[2] = 0;
    for (int r = 0; r < k; r++)
        beta[idx[r]] = A[r][k] / A[r][r];
    return true;
}

/* the weighted squared error of coefficients beta over the steps seen */
static double fit_sse(const struct steps_model *m, const double beta[3])
{
    double sse = m->syy;
    for (int i = 0; i < 3; i++) {
        sse -= 2 * beta[i] * m->sxy[i];
        for (int j = 0; j < 3; j++)
            sse += beta[i] * beta[j] * m->sxx[i][j];
    }
    return sse;
}

bool steps_model_coef(const struct steps_model *m, double *a, double *b, double *c)
{
    if (m->n < STEPS_MIN_OBS)
        return false;
    /* non-negative least squares by trying every subset of the three (seven of them): a
     * cost cannot be negative, and a fit that wants one is told by the data without it */
    double best[3] = {0, 0, 0}, best_sse = INFINITY;
    for (int use = 1; use < 8; use++) {
        double beta[3];
        if (!fit_subset(m, use, beta) || beta[0] < 0 || beta[1] < 0 || beta[2] < 0)
            continue;
        if (beta[1] + beta[2] <= 0)
            continue; /* a step that costs the same whatever it carries predicts nothing */
        double sse = fit_sse(m, beta);
        if (!isfinite(best_sse) || sse < best_sse - 1e-9 * (1 + fabs(best_sse))) {
            best_sse = sse;
            memcpy(best, beta, sizeof(best));
        }
    }
    if (!isfinite(best_sse))
        return false;
    *a = best[0];
    *b = best[1];
    *c = best[2];
    return true;
}

double steps_model_predict(const struct steps_model *m, int tokens, int seqs)
{
    double a, b, c;
    if (!steps_model_coef(m, &a, &b, &c))
        return -1;
    return a + b * tokens + c * seqs;
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

void steps_plan(const struct steps_params *p, const struct steps_model *m, const struct steps_seq *seq, int n,
                int *rr, int *take, struct steps_outcome *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < n; i++)
        take[i] = 0;
    bool interactive = false;
    for (int i = 0; i < n; i++)
        interactive |= seq[i].priority && seq[i].pending > 0;
    double a = 0, b = 0, c = 0;
    if (!interactive || p->target_ms < 0 || !m || !steps_model_coef(m, &a, &b, &c)) {
        out->n_tokens = plan_legacy(p, seq, n, take);
        out->interactive = interactive;
        return;
    }
    out->interactive = true;
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
        }
    /* what the budget leaves for batch work, in ms (at least one token: it never stops) */
    double own = a + b * n_total + c * n_seqs;
    double target = p->target_ms > 0 ? p->target_ms : 2 * own;
    double room = target - own;
    out->budget_ms = target;
    int left = 0, given = 0;
    /* batch decodes, round-robin from *rr so that every one moves */
    int start = n > 0 ? (*rr % n + n) % n : 0, last = -1;
    for (int k = 0; k < n; k++) {
        int i = (start + k) % n;
        if (seq[i].priority || seq[i].waiting || seq[i].pending != 1)
            continue;
        if (budget > 0 && (room >= b + c || given == 0)) {
            take[i] = 1;
            n_total++;
            budget--;
            room -= b + c;
            given++;
            last = i;
        } else {
            left++;
        }
    }
    if (last >= 0)
        *rr = (last + 1) % n;
    /* batch prompt chunks, in admission order, with what is left (none beside an
     * interactive prompt, as without a budget) */
    for (int i = 0; i < n; i++) {
        if (seq[i].priority || seq[i].waiting || seq[i].pending <= 1)
            continue;
        int fit = b > 0 ? (int)floor((room - c) / b) : budget;
        if (given == 0 && fit < 1)
            fit = 1;
        if (fit > budget)
            fit = budget;
        if (fit > 0 && !prio_prompt) {
            int t = seq[i].pending < fit ? seq[i].pending : fit;
            take[i] = t;
            n_total += t;
            budget -= t;
            room -= c + b * t;
            given++;
            left += t < seq[i].pending;
        } else {
            left++;
        }
    }
    out->capped = left > 0;
    out->n_tokens = n_total;
}
