/*
 * steps.c — see steps.h: the step-time model and the step plan.
 */
#include "steps.h"

#include <math.h>
#include <string.h>

void steps_model_init(struct steps_model *m) { memset(m, 0, sizeof(*m)); }

void steps_model_observe(struct steps_model *m, int tokens, double ms)
{
    if (tokens <= 0 || !(ms >= 0) || !isfinite(ms))
        return;
    double t = tokens;
    m->sw = m->sw * STEPS_DECAY + 1;
    m->st = m->st * STEPS_DECAY + t;
    m->sy = m->sy * STEPS_DECAY + ms;
    m->stt = m->stt * STEPS_DECAY + t * t;
    m->sty = m->sty * STEPS_DECAY + t * ms;
    m->n++;
}

bool steps_model_coef(const struct steps_model *m, double *a, double *b)
{
    if (m->n < STEPS_MIN_OBS || m->st <= 0)
        return false;
    double var = m->sw * m->stt - m->st * m->st;
    /* steps of different sizes tell a from b; steps all of one size only their ratio */
    if (var > 1e-9 * m->sw * m->stt) {
        *b = (m->sw * m->sty - m->st * m->sy) / var;
        *a = (m->sy - *b * m->st) / m->sw;
        if (*b > 0 && *a >= 0)
            return true;
        if (*b > 0) {
            /* a negative intercept is noise: the line through the origin */
            *a = 0;
            *b = m->sty / m->stt;
            return *b > 0;
        }
    }
    *a = 0;
    *b = m->sy / m->st;
    return *b > 0;
}

double steps_model_predict(const struct steps_model *m, int tokens)
{
    double a, b;
    if (!steps_model_coef(m, &a, &b))
        return -1;
    return a + b * tokens;
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
    double a = 0, b = 0;
    if (!interactive || p->target_ms < 0 || !m || !steps_model_coef(m, &a, &b)) {
        out->n_tokens = plan_legacy(p, seq, n, take);
        out->interactive = interactive;
        return;
    }
    out->interactive = true;
    /* the interactive tokens first: decodes, then prompts (whole, up to n_batch) */
    int budget = p->n_batch, n_total = 0;
    bool prio_prompt = false;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n && budget > 0; i++) {
            int pending = seq[i].pending;
            if (!seq[i].priority || pending <= 0 || seq[i].waiting || (pass == 0) != (pending == 1))
                continue;
            int t = pending < budget ? pending : budget;
            take[i] = t;
            n_total += t;
            budget -= t;
            prio_prompt |= pass == 1;
        }
    /* what the budget leaves for batch work (at least one token: it never stops) */
    double target = p->target_ms > 0 ? p->target_ms : 2 * (a + b * n_total);
    int cap = (int)floor((target - a) / b);
    int room = cap - n_total;
    if (room < 1)
        room = 1;
    if (room > budget)
        room = budget;
    out->budget_ms = target;
    int left = 0;
    /* batch decodes, round-robin from *rr so that every one moves */
    int start = n > 0 ? (*rr % n + n) % n : 0, last = -1;
    for (int k = 0; k < n; k++) {
        int i = (start + k) % n;
        if (seq[i].priority || seq[i].waiting || seq[i].pending != 1)
            continue;
        if (room > 0) {
            take[i] = 1;
            n_total++;
            room--;
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
        if (room > 0 && !prio_prompt) {
            int t = seq[i].pending < room ? seq[i].pending : room;
            take[i] = t;
            n_total += t;
            room -= t;
            left += t < seq[i].pending;
        } else {
            left++;
        }
    }
    out->capped = left > 0;
    out->n_tokens = n_total;
}
