/*
 * request.c — see request.h: a request's defaults, and the deep copy of a result that
 * outlives done() (a server answers it later, on another thread).
 *
 * OWNERSHIP: engine_result_copy's blocks hang on one growable list (owned_), freed together
 * by engine_result_release; the copy's pointers point into them.
 */
#include "request.h"

#include "../util/status.h"

#include <stdlib.h>
#include <string.h>

void engine_request_init(struct engine_request *r)
{
    memset(r, 0, sizeof(*r));
    r->max_tokens = -1;
    r->temperature = 1.0f;
    r->top_p = 1.0f;
    r->repetition_penalty = 1.0f;
}

struct result_owned {
    int n, cap;
    void **p;
};

static void *result_dup(struct result_owned *o, const void *p, size_t n, bool nul)
{
    if (o->n == o->cap) {
        int cap = o->cap ? o->cap * 2 : 16;
        void **np = realloc(o->p, sizeof(*np) * (size_t)cap);
        if (!np)
            return NULL;
        o->p = np;
        o->cap = cap;
    }
    char *d = malloc(n + (nul ? 1 : 0) + 1);
    if (!d)
        return NULL;
    if (n)
        memcpy(d, p, n);
    if (nul)
        d[n] = '\0';
    o->p[o->n++] = d;
    return d;
}

static const char *result_str(struct result_owned *o, const char *s)
{
    return s ? result_dup(o, s, strlen(s), true) : NULL;
}

/* reasoning and tool calls of one answer (the result's, or a choice's) */
static int result_copy_msg(struct result_owned *o, const char **reasoning, size_t reasoning_len,
                           const struct engine_tool_call **calls, int n_calls)
{
    if (*reasoning && !(*reasoning = result_dup(o, *reasoning, reasoning_len, true)))
        return NS_ERR_NOMEM;
    if (n_calls <= 0) {
        *calls = NULL;
        return NS_OK;
    }
    struct engine_tool_call *c = result_dup(o, *calls, sizeof(*c) * (size_t)n_calls, false);
    if (!c)
        return NS_ERR_NOMEM;
    for (int i = 0; i < n_calls; i++)
        if (!(c[i].id = result_str(o, c[i].id ? c[i].id : "")) || !(c[i].name = result_str(o, c[i].name ? c[i].name : "")) ||
            !(c[i].arguments = result_str(o, c[i].arguments ? c[i].arguments : "{}")))
            return NS_ERR_NOMEM;
    *calls = c;
    return NS_OK;
}

int engine_result_copy(struct engine_result *dst, const struct engine_result *src)
{
    struct result_owned *o = calloc(1, sizeof(*o));
    *dst = *src;
    dst->owned_ = o;
    dst->choices = NULL;
    if (!o)
        goto fail;
    if (!(dst->text = result_dup(o, src->text ? src->text : "", src->text_len, true)))
        goto fail;
    if (result_copy_msg(o, &dst->reasoning, src->reasoning_len, &dst->tool_calls, src->n_tool_calls))
        goto fail;
    if (src->raw_body && !(dst->raw_body = result_dup(o, src->raw_body, src->raw_len, true)))
        goto fail;
    if (src->embedding && src->n_embed > 0 &&
        !(dst->embedding = result_dup(o, src->embedding, sizeof(float) * (size_t)src->n_embed * (size_t)src->n_embd, false)))
        goto fail;
    int nc = src->n_choices > ENGINE_MAX_CHOICES ? ENGINE_MAX_CHOICES : src->n_choices;
    dst->n_choices = nc;
    struct engine_choice *ch = NULL;
    if (nc > 0 && !(ch = result_dup(o, src->choices, sizeof(*ch) * (size_t)nc, false)))
        goto fail;
    dst->choices = ch;
    for (int i = 0; i < nc; i++) {
        const struct engine_choice *c = &src->choices[i];
        if (!(ch[i].text = result_dup(o, c->text ? c->text : "", c->text_len, true)))
            goto fail;
        if (result_copy_msg(o, &ch[i].reasoning, c->reasoning_len, &ch[i].tool_calls, c->n_tool_calls))
            goto fail;
        ch[i].logprobs = NULL;
        ch[i].n_logprobs = 0;
        ch[i].logprob_text = "";
        if (c->n_logprobs > 0) {
            if (!(ch[i].logprobs = result_dup(o, c->logprobs, sizeof(*c->logprobs) * (size_t)c->n_logprobs, false)) ||
                !(ch[i].logprob_text = result_dup(o, c->logprob_text, c->logprob_text_len, true)))
                goto fail;
            ch[i].n_logprobs = c->n_logprobs;
        }
    }
    if (nc > 0) {
        /* the top-level fields are choice 0's */
        dst->logprobs = ch[0].logprobs;
        dst->n_logprobs = ch[0].n_logprobs;
        dst->logprob_text = ch[0].logprob_text;
        dst->reasoning = ch[0].reasoning;
        dst->tool_calls = ch[0].tool_calls;
    } else if (src->n_logprobs > 0) {
        if (!(dst->logprobs = result_dup(o, src->logprobs, sizeof(*src->logprobs) * (size_t)src->n_logprobs, false)) ||
            !(dst->logprob_text = result_dup(o, src->logprob_text, src->logprob_text_len, true)))
            goto fail;
    } else {
        dst->logprobs = NULL;
        dst->logprob_text = "";
    }
    return NS_OK;
fail:
    engine_result_release(dst);
    return NS_ERR_NOMEM;
}

void engine_result_release(struct engine_result *r)
{
    struct result_owned *o = r->owned_;
    if (o) {
        for (int i = 0; i < o->n; i++)
            free(o->p[i]);
        free(o->p);
        free(o);
    }
    memset(r, 0, sizeof(*r));
    r->text = "";
}
