/*
 * embed.c — engine_run for an embedding engine (engine_params.embedding): requests' inputs
 * are tokenized when admitted, packed into one batch per step (one sequence per input, in
 * arrival order, interactive requests first), and one forward pass pools each sequence's
 * vector, normalized to unit length. Part of the engine module (engine_int.h).
 *
 * THREADS
 * engine_run's thread only, as the step loop in engine.c; the source's callbacks are
 * called from it.
 *
 * INVARIANTS
 * - A job owns its tokens and vectors until done() (req is the caller's: gone after it).
 * - A batch holds at most n_batch tokens and the context's sequences; the KV is cleared
 *   before each batch (no state is kept between steps: embeddings need no prefix cache).
 * - Every request admitted ends with done() once: finished, failed, or cancelled on stop.
 */
#include "engine_int.h"

#include "../util/clock.h"
#include "../util/status.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* an embedding request in progress: its inputs' tokens, and the vectors filled so far */
struct embed_job {
    struct engine_request *req;
    int n;                          /* inputs (req is the caller's: gone after done()) */
    llama_token **tok;
    int *n_tok;
    int next;                       /* the next input to put in a batch */
    int finished;                   /* inputs whose vector is in out */
    int total_tokens;
    float *out;                     /* n_embed x n_embd */
    double t_admit;
};

static void embed_job_free(struct embed_job *j)
{
    for (int i = 0; j->tok && i < j->n; i++)
        free(j->tok[i]);
    free(j->tok);
    free(j->n_tok);
    free(j->out);
    memset(j, 0, sizeof(*j));
}

/* Tokenize and check a new embedding request into j; on failure done() has been called. */
static bool embed_admit(struct engine *e, const struct engine_source *src, struct engine_request *req,
                        struct embed_job *j)
{
    memset(j, 0, sizeof(*j));
    j->req = req;
    j->n = req->n_embed > 0 ? req->n_embed : 0;
    j->t_admit = clock_now();
    if (!req->embed || req->n_embed <= 0) {
        engine_fail(src, req, NS_ERR_INVALID, "model", 0,
                    "This model is loaded for embeddings only (--embedding): it serves /v1/embeddings, not text "
                    "generation.");
        return false;
    }
    int max = e->info.n_embed_max, n_embd = e->info.n_embd;
    if (req->embed_dimensions > 0 && req->embed_dimensions != n_embd) {
        engine_fail(src, req, NS_ERR_UNSUPPORTED, "dimensions", 0,
                    "Invalid 'dimensions': this model's embeddings have %d dimensions and cannot be shortened; "
                    "leave 'dimensions' out or give %d.",
                    n_embd, n_embd);
        return false;
    }
    j->tok = calloc((size_t)req->n_embed, sizeof(*j->tok));
    j->n_tok = calloc((size_t)req->n_embed, sizeof(*j->n_tok));
    j->out = malloc(sizeof(float) * (size_t)req->n_embed * (size_t)n_embd);
    if (!j->tok || !j->n_tok || !j->out) {
        embed_job_free(j);
        engine_fail(src, req, NS_ERR_NOMEM, NULL, 0, "out of memory");
        return false;
    }
    for (int i = 0; i < req->n_embed; i++) {
        const struct engine_embed_input *in = &req->embed[i];
        int n;
        if (in->tokens) {
            n = in->n_tokens;
            for (int k = 0; k < n; k++) {
                if (in->tokens[k] < 0 || in->tokens[k] >= e->n_vocab) {
                    int tk = in->tokens[k];
                    embed_job_free(j);
                    engine_fail(src, req, NS_ERR_INVALID, "input", 0,
                                "Invalid 'input[%d]': token id %d is not in this model's vocabulary (0 to %d).", i, tk,
                                e->n_vocab - 1);
                    return false;
                }
            }
        } else {
            size_t len = in->text ? in->text_len : 0;
            if (!req->embed_truncate && len / (size_t)e->max_piece >= (size_t)max) {
                embed_job_free(j);
                engine_fail(src, req, NS_ERR_CONTEXT, "input", j->total_tokens,
                            "This model's maximum context length is %d tokens, however input[%d] holds %zu bytes, so "
                            "at least %zu tokens. Please reduce the length of the input.",
                            max, i, len, len / (size_t)e->max_piece);
                return false;
            }
            n = llama_tokenize(e->vocab, in->text ? in->text : "", (int32_t)len, NULL, 0, true, false);
            n = n < 0 ? -n : n;
        }
        int n_all = n; /* tokenized whole, then cut to the context when asked to */
        if (req->embed_truncate && n > max)
            n = max;
        if (n == 0 || n > max) {
            int total = j->total_tokens;
            embed_job_free(j);
            if (n == 0)
                engine_fail(src, req, NS_ERR_INVALID, "input", total, "Invalid 'input[%d]': it has no tokens.", i);
            else
                engine_fail(src, req, NS_ERR_CONTEXT, "input", total,
                            "This model's maximum context length is %d tokens, however input[%d] has %d tokens. Please "
                            "reduce the length of the input.",
                            max, i, n);
            return false;
        }
        j->tok[i] = malloc(sizeof(llama_token) * (size_t)n_all);
        if (!j->tok[i]) {
            embed_job_free(j);
            engine_fail(src, req, NS_ERR_NOMEM, NULL, 0, "out of memory");
            return false;
        }
        if (in->tokens)
            memcpy(j->tok[i], in->tokens, sizeof(llama_token) * (size_t)n);
        else /* all n_all tokens (the count above); the first n are embedded */
            llama_tokenize(e->vocab, in->text ? in->text : "", (int32_t)in->text_len, j->tok[i], n_all, true, false);
        j->n_tok[i] = n;
        j->total_tokens += n;
    }
    e->stats.prompt_submitted += (uint64_t)j->total_tokens;
    return true;
}

static void embed_normalize(float *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    float k = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
    for (int i = 0; i < n; i++)
        v[i] *= k;
}

/* engine_run for an embedding engine: at every step, inputs of the waiting requests (in
 * arrival order, interactive ones first) fill one batch, one sequence each, up to n_batch
 * tokens and the context's sequences; one forward pass pools each sequence's vector */
int engine_run_embed(struct engine *e, const struct engine_source *src)
{
    enum { MAXJ = ENGINE_MAX_PARALLEL };
    struct embed_job jobs[MAXJ];
    int n_jobs = 0, rc = NS_OK;
    bool exhausted = false;
    int n_seq = e->n_slots, n_embd = e->info.n_embd, budget = e->info.n_embed_max;
    struct { int job, input; } at[ENGINE_MAX_PARALLEL];
    atomic_store(&e->stop, 0);
    for (;;) {
        if (atomic_load(&e->stop))
            break;
        for (int lane = 0; lane < 2 && n_jobs < MAXJ; lane++) {
            int (*pull)(void *, struct engine_request **, int) = lane == 0 ? src->pull_priority : src->pull;
            if (!pull || (lane == 1 && exhausted))
                continue;
            struct engine_request *reqs[MAXJ];
            int got = pull(src->ud, reqs, MAXJ - n_jobs);
            if (got < 0) {
                if (lane == 1)
                    exhausted = true;
                continue;
            }
            for (int k = 0; k < got; k++)
                if (embed_admit(e, src, reqs[k], &jobs[n_jobs]))
                    n_jobs++;
        }
        if (n_jobs == 0) {
            if (exhausted)
                return NS_OK;
            engine_idle(src);
            continue;
        }
        /* one batch */
        struct llama_batch *b = &e->batch;
        b->n_tokens = 0;
        int n_at = 0;
        for (int ji = 0; ji < n_jobs && n_at < n_seq; ji++) {
            struct embed_job *j = &jobs[ji];
            while (j->next < j->req->n_embed && n_at < n_seq && b->n_tokens + j->n_tok[j->next] <= budget) {
                int n = j->n_tok[j->next];
                for (int k = 0; k < n; k++) {
                    int t = b->n_tokens++;
                    b->token[t] = j->tok[j->next][k];
                    b->pos[t] = k;
                    b->n_seq_id[t] = 1;
                    b->seq_id[t][0] = (llama_seq_id)n_at;
                    b->logits[t] = 1;
                }
                at[n_at].job = ji;
                at[n_at].input = j->next++;
                n_at++;
            }
            if (j->next < j->req->n_embed)
                break; /* the batch is full: keep arrival order */
        }
        llama_memory_clear(llama_get_memory(e->ctx), true);
        int ret = engine_forward(e, *b);
        e->stats.steps++;
        e->stats.tokens_decoded += (uint64_t)b->n_tokens;
        e->stats.prompt_tokens += (uint64_t)b->n_tokens;
        e->stats.seqs_in_steps += (uint64_t)n_at;
        for (int i = 0; i < n_at; i++) {
            struct embed_job *j = &jobs[at[i].job];
            const float *v = ret == 0 ? llama_get_embeddings_seq(e->ctx, (llama_seq_id)i) : NULL;
            if (!v) {
                j->next = -1; /* failed: ended below */
                continue;
            }
            float *dst = j->out + (size_t)at[i].input * (size_t)n_embd;
            memcpy(dst, v, sizeof(float) * (size_t)n_embd);
            embed_normalize(dst, n_embd);
            j->finished++;
        }
        /* end the requests that are complete or failed, keeping the others in order */
        int kept = 0;
        for (int ji = 0; ji < n_jobs; ji++) {
            struct embed_job *j = &jobs[ji];
            if (j->next >= 0 && j->finished < j->req->n_embed) {
                jobs[kept++] = *j;
                continue;
            }
            if (j->next < 0) {
                engine_fail(src, j->req, NS_ERR_ENGINE, NULL, j->total_tokens, "the engine could not compute the embeddings");
            } else {
                struct engine_result res;
                memset(&res, 0, sizeof(res));
                res.status = NS_OK;
                res.text = "";
                res.stop_index = -1;
                res.prompt_tokens = j->total_tokens;
                res.embedding = j->out;
                res.n_embed = j->req->n_embed;
                res.n_embd = n_embd;
                res.t_admit = j->t_admit;
                res.t_first = res.t_end = clock_now();
                src->done(src->ud, j->req, &res);
            }
            embed_job_free(j);
        }
        n_jobs = kept;
        if (ret != 0 && ret != 1) {
            rc = NS_ERR_ENGINE;
            break;
        }
    }
    for (int ji = 0; ji < n_jobs; ji++) {
        engine_fail(src, jobs[ji].req, NS_ERR_CANCELLED, NULL, jobs[ji].total_tokens, "the request was cancelled");
        embed_job_free(&jobs[ji]);
    }
    return rc;
}
