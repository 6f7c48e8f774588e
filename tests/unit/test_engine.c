/* Unit tests: engine/ on generated random-weight models.
 *
 * Also the guard for the AMX hazard: a Q8_0 model whose matmuls run over many rows at
 * once (a batched prefill across sequences), the path where ggml's AMX kernel crashed on
 * Sapphire Rapids when built with plain GGML_NATIVE=ON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/engine/engine.h"
#include "../../src/engine/modelgen.h"
#include "../../src/proto/jsonschema.h"
#include "../../src/util/status.h"
#include "../../src/util/utf8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#ifndef NIGHTSHIFT_DEFAULT_VOCAB_DIR
#define NIGHTSHIFT_DEFAULT_VOCAB_DIR ""
#endif

static char g_dir[64];
static char g_model[128];   /* tiny, f32 */
static char g_q8[128];      /* wider, q8_0 */

static const char *vocab_dir(void)
{
    const char *d = getenv("NIGHTSHIFT_VOCAB_DIR");
    return d && *d ? d : NIGHTSHIFT_DEFAULT_VOCAB_DIR;
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/ns-engine-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    char vocab[512], err[256];
    snprintf(vocab, sizeof(vocab), "%s/ggml-vocab-llama-spm.gguf", vocab_dir());
    struct modelgen_params p = modelgen_default_params();
    p.vocab_path = vocab;
    snprintf(g_model, sizeof(g_model), "%s/tiny.gguf", g_dir);
    p.out_path = g_model;
    p.type = MODELGEN_F32;
    if (modelgen_write(&p, err, sizeof(err))) {
        fprintf(stderr, "modelgen: %s\n", err);
        return -1;
    }
    p.n_embd = 256;
    p.n_ff = 512;
    p.n_head = 4;
    p.n_head_kv = 4;
    p.type = MODELGEN_Q8_0;
    snprintf(g_q8, sizeof(g_q8), "%s/q8.gguf", g_dir);
    p.out_path = g_q8;
    if (modelgen_write(&p, err, sizeof(err))) {
        fprintf(stderr, "modelgen: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(g_model);
    unlink(g_q8);
    rmdir(g_dir);
    return 0;
}

/* a source over a fixed array of requests, recording each result */
#define MAXR 64
struct src {
    struct engine_request req[MAXR];
    int n, next, done_count[MAXR];
    int status[MAXR], ptok[MAXR], ctok[MAXR];
    enum engine_finish finish[MAXR];
    char text[MAXR][512];
    char streamed[MAXR][512];
    int n_lp[MAXR];
    int32_t first_tok[MAXR];
    bool lp_ok[MAXR];          /* the logprobs were well formed */
    int n_ch[MAXR];            /* choices in the result */
    char ch_text[8][ENGINE_MAX_CHOICES][128];     /* requests 0..7: each choice's text */
    char ch_streamed[8][ENGINE_MAX_CHOICES][128]; /* ... and what token() gave for it */
    int ch_tokens[8][ENGINE_MAX_CHOICES];
    const char *param[MAXR];
    bool bad_delta[MAXR];      /* a token() delta was not valid UTF-8 on its own */
    bool open;                 /* like a server's: "nothing now" (0), not "no more" (-1), until all are done */
    int n_done;
};

static int src_pull(void *ud, struct engine_request **out, int max)
{
    struct src *s = ud;
    int k = 0;
    while (k < max && s->next < s->n)
        out[k++] = &s->req[s->next++];
    if (k || s->next < s->n || (s->open && s->n_done < s->n))
        return k;
    return -1;
}

static void src_done(void *ud, struct engine_request *r, const struct engine_result *res)
{
    struct src *s = ud;
    int i = (int)(r - s->req);
    s->done_count[i]++;
    s->n_done++;
    s->status[i] = res->status;
    s->ptok[i] = res->prompt_tokens;
    s->ctok[i] = res->completion_tokens;
    s->finish[i] = res->finish;
    snprintf(s->text[i], sizeof(s->text[i]), "%s", res->status ? res->message : res->text);
    s->n_lp[i] = res->n_logprobs;
    s->n_ch[i] = res->n_choices;
    s->param[i] = res->param;
    for (int c = 0; i < 8 && c < res->n_choices; c++) {
        snprintf(s->ch_text[i][c], sizeof(s->ch_text[i][c]), "%.*s", (int)res->choices[c].text_len, res->choices[c].text);
        s->ch_tokens[i][c] = res->choices[c].completion_tokens;
    }
    s->lp_ok[i] = true;
    s->first_tok[i] = res->n_logprobs ? res->logprobs[0].token : -1;
    /* each entry: logprob <= 0, top sorted, and (greedy) the chosen token is the best */
    for (int k = 0; k < res->n_logprobs; k++) {
        const struct engine_token_logprob *lp = &res->logprobs[k];
        if (lp->logprob > 1e-4f || lp->n_top != r->top_logprobs)
            s->lp_ok[i] = false;
        for (int j = 1; j < lp->n_top; j++)
            if (lp->top[j].logprob > lp->top[j - 1].logprob)
                s->lp_ok[i] = false;
        if (r->temperature == 0 && lp->n_top && (lp->top[0].token != lp->token || lp->top[0].logprob != lp->logprob))
            s->lp_ok[i] = false;
        if (lp->piece_len && !res->logprob_text[lp->piece_off])
            s->lp_ok[i] = false;
    }
}

static void src_token(void *ud, struct engine_request *r, const struct engine_delta *d)
{
    struct src *s = ud;
    int i = (int)(r - s->req);
    if (utf8_valid_prefix(d->text, d->len) != d->len)
        s->bad_delta[i] = true;
    if (i < 8 && d->index >= 0 && d->index < ENGINE_MAX_CHOICES) {
        char *t = s->ch_streamed[i][d->index];
        size_t l = strlen(t);
        snprintf(t + l, sizeof(s->ch_streamed[i][d->index]) - l, "%.*s", (int)d->len, d->text);
    }
    if (d->index != 0)
        return;
    size_t l = strlen(s->streamed[i]);
    snprintf(s->streamed[i] + l, sizeof(s->streamed[i]) - l, "%.*s", (int)d->len, d->text);
}

static struct engine_stats g_last_stats;

static bool g_unified;
static bool g_no_prefix;

static void run_all(const char *model, int ctx, int parallel, struct src *s, bool stream)
{
    struct engine_params p = engine_default_params();
    p.kv_unified = g_unified;
    p.prefix_cache = !g_no_prefix;
    p.model_path = model;
    p.n_ctx = ctx;
    p.n_parallel = parallel;
    p.n_threads = 2;
    struct engine *e = NULL;
    char err[256];
    int rc = engine_init(p, &e, err, sizeof(err));
    if (rc)
        fail_msg("engine_init: %s", err);
    struct engine_source es = {.ud = s, .pull = src_pull, .done = src_done, .token = stream ? src_token : NULL};
    assert_int_equal(engine_run(e, &es), NS_OK);
    engine_get_stats(e, &g_last_stats);
    engine_free(e);
}

static void fill(struct src *s, int n, int max_tokens)
{
    memset(s, 0, sizeof(*s));
    s->n = n;
    static char prompts[MAXR][96];
    for (int i = 0; i < n; i++) {
        engine_request_init(&s->req[i]);
        snprintf(prompts[i], sizeof(prompts[i]), "Request number %d: tell me something about the number %d.", i, i * 7);
        s->req[i].prompt = prompts[i];
        s->req[i].max_tokens = max_tokens;
        s->req[i].temperature = 0;
        s->req[i].ignore_eos = true;
    }
}

static void test_batched_all_done(void **state)
{
    (void)state;
    static struct src s;
    fill(&s, 20, 12);
    run_all(g_model, 4096, 8, &s, false);
    for (int i = 0; i < s.n; i++) {
        assert_int_equal(s.done_count[i], 1);
        assert_int_equal(s.status[i], NS_OK);
        assert_int_equal(s.ctok[i], 12);
        assert_int_equal(s.finish[i], ENGINE_FINISH_LENGTH);
        assert_true(s.ptok[i] > 5);
    }
}

/* Requests of different lengths end at different steps and their slots are refilled out
 * of order. The batch still lists its sequences in id order, so that llama.cpp (a KV
 * stream per sequence: micro-batches of consecutive ids in batch order) computes each step
 * in as few passes as the running ids allow. Laid out in admission order, this schedule
 * made 2.67 runs of consecutive ids per step; in id order it makes 1.00. */
static void test_batch_in_sequence_order(void **state)
{
    (void)state;
    static struct src s;
    static const int len[12] = {9, 2, 7, 3, 5, 8, 2, 6, 3, 9, 2, 4};
    fill(&s, 12, 1);
    for (int i = 0; i < 12; i++)
        s.req[i].max_tokens = len[i];
    run_all(g_model, 4096, 4, &s, false);
    for (int i = 0; i < s.n; i++) {
        assert_int_equal(s.status[i], NS_OK);
        assert_int_equal(s.ctok[i], len[i]);
    }
    double runs = (double)g_last_stats.seq_runs / (double)g_last_stats.steps;
    print_message("# %llu steps, %.2f runs of consecutive sequence ids per step\n",
                  (unsigned long long)g_last_stats.steps, runs);
    assert_true(runs < 1.6);
}

/* The tail of a batch: two long requests left in slots 0 and 2 once the short ones in 1 and
 * 3 end. The engine moves the one in slot 2 down to slot 1 (its KV copied as a whole
 * stream), so the remaining steps are one run of consecutive sequence ids — one pass over
 * the weights instead of two — and the texts are still those of each request decoded
 * alone (f32 weights: batch composition does not change greedy picks). Without the move:
 * 1.92 runs per step. */
static void test_tail_compaction(void **state)
{
    (void)state;
    static struct src alone, together;
    static const int len[4] = {24, 2, 24, 2};
    fill(&alone, 4, 1);
    fill(&together, 4, 1);
    for (int i = 0; i < 4; i++)
        alone.req[i].max_tokens = together.req[i].max_tokens = len[i];
    run_all(g_model, 4096, 1, &alone, false);
    run_all(g_model, 4096, 4, &together, false);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(together.status[i], NS_OK);
        assert_int_equal(together.ctok[i], len[i]);
        assert_string_equal(together.text[i], alone.text[i]);
    }
    double runs = (double)g_last_stats.seq_runs / (double)g_last_stats.steps;
    print_message("# %llu steps, %llu moves, %.2f runs of consecutive sequence ids per step\n",
                  (unsigned long long)g_last_stats.steps, (unsigned long long)g_last_stats.moves, runs);
    assert_true(g_last_stats.moves >= 1);
    assert_true(runs < 1.3);
    /* the same with a source that stays open, as a server's does: the short requests' slots
     * keep their prefixes (retained), and a batch-lane move may still take them */
    static struct src open_src;
    fill(&open_src, 4, 1);
    open_src.open = true;
    for (int i = 0; i < 4; i++)
        open_src.req[i].max_tokens = len[i];
    run_all(g_model, 4096, 4, &open_src, false);
    for (int i = 0; i < 4; i++)
        assert_string_equal(open_src.text[i], alone.text[i]);
    runs = (double)g_last_stats.seq_runs / (double)g_last_stats.steps;
    print_message("# open source: %llu moves, %.2f runs per step\n", (unsigned long long)g_last_stats.moves, runs);
    assert_true(g_last_stats.moves >= 1);
    assert_true(runs < 1.3);
}

/* the same greedy requests give the same text whether decoded alone or batched */
static void test_parallel_matches_sequential(void **state)
{
    (void)state;
    static struct src a, b;
    fill(&a, 6, 10);
    fill(&b, 6, 10);
    run_all(g_model, 4096, 1, &a, false);
    run_all(g_model, 4096, 6, &b, false);
    int same = 0;
    for (int i = 0; i < a.n; i++)
        same += strcmp(a.text[i], b.text[i]) == 0;
    /* f32 weights: batch composition should not change greedy picks */
    assert_int_equal(same, a.n);
}

static void test_context_overflow(void **state)
{
    (void)state;
    static struct src s;
    fill(&s, 3, 8);
    s.req[1].max_tokens = 600; /* prompt + 600 > 512 per sequence */
    run_all(g_model, 2048, 4, &s, false);
    assert_int_equal(s.status[0], NS_OK);
    assert_int_equal(s.status[1], NS_ERR_CONTEXT);
    assert_non_null(strstr(s.text[1], "maximum context length is 512 tokens"));
    assert_int_equal(s.status[2], NS_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(s.done_count[i], 1);
}

/* more sequences than the KV pool holds at full length: parking and recomputing must
 * finish every one with its full length. (The text may drift from an unparked run after
 * many tokens: recomputing a sequence as one prefill instead of token by token changes
 * float rounding, and random weights make near-ties common.) */
static void test_preemption(void **state)
{
    (void)state;
    static struct src big, small;
    fill(&big, 8, 120);
    fill(&small, 8, 120);
    g_unified = true;
    run_all(g_model, 4096, 8, &big, false);
    assert_int_equal(g_last_stats.preemptions, 0);
    run_all(g_model, 512, 8, &small, false); /* 8 x ~140 tokens do not fit in 512 */
    assert_true(g_last_stats.preemptions > 0);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(small.done_count[i], 1);
        assert_int_equal(small.status[i], NS_OK);
        assert_int_equal(small.ctok[i], 120);
        assert_memory_equal(small.text[i], big.text[i], 8);
    }
    g_unified = false;
}

/* The priority lane (a server's interactive requests): one pulled while batch prompts
 * are still being computed gets its first token from the very next step, not after
 * their chunks; and no step carries more than one ubatch of ordinary prompt tokens (a
 * step is what an interactive request waits for). Without a lane, steps stay n_batch. */
struct lane_src {
    struct src s;                  /* the ordinary requests; first, so src_done works */
    struct engine *e;
    struct engine_request prio;
    bool pulled;
    int prio_done, prio_status, prio_ctok;
    uint64_t pulled_at, first_at;  /* steps done when it was pulled / at its first token */
    uint64_t seen_steps, seen_tokens, max_step;
    struct engine_stats end;       /* after the run */
};

static void lane_observe(struct lane_src *l)
{
    struct engine_stats st;
    engine_get_stats(l->e, &st);
    if (st.steps == l->seen_steps + 1 && st.tokens_decoded - l->seen_tokens > l->max_step)
        l->max_step = st.tokens_decoded - l->seen_tokens;
    l->seen_steps = st.steps;
    l->seen_tokens = st.tokens_decoded;
}

static int lane_pull_priority(void *ud, struct engine_request **out, int max)
{
    struct lane_src *l = ud;
    lane_observe(l);
    if (l->pulled || l->seen_steps < 1 || max < 1)
        return 0;
    l->pulled = true;
    l->pulled_at = l->seen_steps;
    out[0] = &l->prio;
    return 1;
}

static int lane_pull(void *ud, struct engine_request **out, int max)
{
    struct lane_src *l = ud;
    lane_observe(l);
    int got = src_pull(&l->s, out, max);
    /* the engine ends once the ordinary source is exhausted and nothing runs: keep it
     * going until the priority request has come and gone */
    return got < 0 && l->prio_done == 0 ? 0 : got;
}

static void lane_done(void *ud, struct engine_request *r, const struct engine_result *res)
{
    struct lane_src *l = ud;
    if (r != &l->prio) {
        src_done(&l->s, r, res);
        return;
    }
    struct engine_stats st;
    engine_get_stats(l->e, &st);
    l->first_at = st.steps; /* max_tokens 1: its first token is its last */
    l->prio_done++;
    l->prio_status = res->status;
    l->prio_ctok = res->completion_tokens;
}

static void lane_idle(void *ud)
{
    (void)ud;
    usleep(1000);
}

/* shared: the priority prompt starts with 300 of the last batch prompt's 600 " the cat"
 * (prefix cache on), so it waits to copy them from that slot */
static void lane_run(struct lane_src *l, bool with_lane, bool shared)
{
    static char prompts[4][8192];
    static char prio_prompt[4096];
    memset(l, 0, sizeof(*l));
    l->s.n = 4;
    for (int i = 0; i < 4; i++) {
        int off = snprintf(prompts[i], sizeof(prompts[i]), "Document %d:", i);
        for (int k = 0; k < 600; k++)
            off += snprintf(prompts[i] + off, sizeof(prompts[i]) - (size_t)off, " the cat");
        engine_request_init(&l->s.req[i]);
        l->s.req[i].prompt = prompts[i];
        l->s.req[i].max_tokens = 4;
        l->s.req[i].temperature = 0;
        l->s.req[i].ignore_eos = true;
    }
    engine_request_init(&l->prio);
    l->prio.prompt = "Quick question: what is the number seven?";
    if (shared) {
        int off = snprintf(prio_prompt, sizeof(prio_prompt), "Document 3:");
        for (int k = 0; k < 300; k++)
            off += snprintf(prio_prompt + off, sizeof(prio_prompt) - (size_t)off, " the cat");
        snprintf(prio_prompt + off, sizeof(prio_prompt) - (size_t)off, " Which animal was it?");
        l->prio.prompt = prio_prompt;
    }
    l->prio.max_tokens = 1;
    l->prio.temperature = 0;
    l->prio.ignore_eos = true;
    struct engine_params p = engine_default_params();
    p.model_path = g_model;
    p.n_ctx = 5 * 2048;
    p.n_parallel = 4;
    p.n_priority = 1;
    p.n_threads = 2;
    p.prefix_cache = shared;
    p.kv_unified = shared;
    char err[256];
    if (engine_init(p, &l->e, err, sizeof(err)))
        fail_msg("engine_init: %s", err);
    struct engine_source es = {.ud = l, .pull = lane_pull, .done = lane_done, .wait = lane_idle};
    if (with_lane)
        es.pull_priority = lane_pull_priority;
    else
        l->prio_done = 1; /* no priority request in this run */
    assert_int_equal(engine_run(l->e, &es), NS_OK);
    engine_get_stats(l->e, &l->end);
    engine_free(l->e);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(l->s.done_count[i], 1);
        assert_int_equal(l->s.status[i], NS_OK);
        assert_int_equal(l->s.ctok[i], 4);
        assert_true(l->s.ptok[i] > 1000); /* the prompts need several steps */
    }
}

static void test_priority_lane(void **state)
{
    (void)state;
    static struct lane_src l;
    lane_run(&l, true, false);
    assert_int_equal(l.prio_done, 1);
    assert_int_equal(l.prio_status, NS_OK);
    assert_int_equal(l.prio_ctok, 1);
    assert_int_equal(l.pulled_at, 1);
    assert_int_equal(l.first_at, l.pulled_at + 1);
    assert_true(l.max_step <= 512); /* n_ubatch */
    assert_true((double)l.end.tokens_decoded / (double)l.end.steps < 512);
    /* the same ordinary work without a lane: full n_batch steps (4 x ~1,200 prompt
     * tokens in 3 steps, then 3 steps of 4 tokens) */
    lane_run(&l, false, false);
    assert_true((double)l.end.tokens_decoded / (double)l.end.steps > 600);
    /* its prompt's first half is being computed by the newest batch slot, whose prompt
     * waits behind three others: that slot computes as a priority one (one step), the
     * copy and the rest follow (the next), instead of ~8 short steps */
    lane_run(&l, true, true);
    assert_int_equal(l.prio_status, NS_OK);
    assert_true(l.end.prompt_cached >= 600);
    assert_true(l.first_at <= l.pulled_at + 2);
}

/* issue 27.12: every streamed delta is valid UTF-8 on its own, even when the model emits
 * bytes that never form a character (byte-fallback tokens: <0xF1> again and again, each a
 * lead byte the next one does not continue); what was streamed equals the final text */
static void test_stream_invalid_utf8(void **state)
{
    (void)state;
    static struct src s;
    /* the llama SPM vocab: <0x00> is token 3, so <0xF1> is 3 + 0xF1 */
    static struct engine_logit_bias force = {.token = 3 + 0xF1, .bias = 100};
    fill(&s, 2, 6);
    s.req[0].logit_bias = &force;
    s.req[0].n_logit_bias = 1;
    run_all(g_model, 2048, 2, &s, true);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(s.status[i], NS_OK);
        assert_false(s.bad_delta[i]);
        assert_int_equal(utf8_valid_prefix(s.text[i], strlen(s.text[i])), strlen(s.text[i]));
        assert_string_equal(s.streamed[i], s.text[i]);
    }
    assert_non_null(strstr(s.text[0], "\xEF\xBF\xBD")); /* U+FFFD where the bytes were */
}

static void test_stop_and_stream(void **state)
{
    (void)state;
    static struct src a, b;
    fill(&a, 2, 24);
    run_all(g_model, 2048, 2, &a, true);
    /* streamed text equals the final text */
    assert_string_equal(a.streamed[0], a.text[0]);
    size_t len = strlen(a.text[0]);
    if (len < 8)
        skip();
    /* stop at a piece from the middle of what it generated */
    static char stop[8];
    memcpy(stop, a.text[0] + len / 2, 3);
    stop[3] = '\0';
    fill(&b, 2, 24);
    b.req[0].stop[0] = stop;
    b.req[0].n_stop = 1;
    run_all(g_model, 2048, 2, &b, true);
    const char *at = strstr(a.text[0], stop);
    assert_non_null(at);
    assert_int_equal(strlen(b.text[0]), (size_t)(at - a.text[0]));
    assert_int_equal(b.finish[0], ENGINE_FINISH_STOP);
    assert_null(strstr(b.streamed[0], stop)); /* never streamed */
    assert_string_equal(b.streamed[0], b.text[0]);
}

static void test_sampling_seeded(void **state)
{
    (void)state;
    static struct src a, b;
    fill(&a, 4, 16);
    fill(&b, 4, 16);
    for (int i = 0; i < 4; i++) {
        a.req[i].temperature = b.req[i].temperature = 0.9f;
        a.req[i].top_p = b.req[i].top_p = 0.95f;
        a.req[i].top_k = b.req[i].top_k = 40;
        a.req[i].presence_penalty = b.req[i].presence_penalty = 0.5f;
        a.req[i].seed = b.req[i].seed = (uint32_t)(100 + i);
    }
    run_all(g_model, 2048, 4, &a, false);
    run_all(g_model, 2048, 4, &b, false);
    for (int i = 0; i < 4; i++)
        assert_string_equal(a.text[i], b.text[i]);
}

/* AMX guard: a Q8_0 model, 16 sequences of ~300-token prompts in one prefill: the
 * matmuls run over hundreds of rows per call */
static void test_batched_q8_matmul(void **state)
{
    (void)state;
    static struct src s;
    static char longp[16][2048];
    fill(&s, 16, 4);
    for (int i = 0; i < 16; i++) {
        size_t o = 0;
        for (int k = 0; k < 40 && o + 64 < sizeof(longp[i]); k++)
            o += (size_t)snprintf(longp[i] + o, sizeof(longp[i]) - o, "word%d is number %d; ", i, k);
        s.req[i].prompt = longp[i];
    }
    run_all(g_q8, 8192, 16, &s, false);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(s.status[i], NS_OK);
        assert_true(s.ptok[i] > 200);
    }
}

/* 24 prompts = one ~400-token shared instruction + a short distinct item: the prefix is
 * computed about once, not 24 times, and greedy outputs equal those without the cache */
static void test_prefix_cache(void **state)
{
    (void)state;
    static struct src with, without;
    static char prompts[24][4096];
    static char shared[3000];
    size_t o = 0;
    for (int k = 0; k < 60 && o + 64 < sizeof(shared); k++)
        o += (size_t)snprintf(shared + o, sizeof(shared) - o, "Rule %d: answer briefly and politely. ", k);
    for (int pass = 0; pass < 2; pass++) {
        struct src *s = pass ? &without : &with;
        fill(s, 24, 8);
        for (int i = 0; i < 24; i++) {
            snprintf(prompts[i], sizeof(prompts[i]), "%s Item %d: the number %d.", shared, i, i * 13);
            s->req[i].prompt = prompts[i];
        }
        g_no_prefix = pass == 1;
        run_all(g_model, 8 * 1024, 8, s, false);
        if (pass == 0) {
            uint64_t submitted = g_last_stats.prompt_submitted, computed = g_last_stats.prompt_tokens;
            int per = s->ptok[0];
            /* shared part ~ per - 12 tokens; computed once plus ~12 per request and a margin */
            assert_true(submitted == (uint64_t)per * 24 || submitted > (uint64_t)per * 23);
            if (computed > (uint64_t)per + 24 * 20 + 64)
                fail_msg("prefix cache computed %llu of %llu prompt tokens (per request %d)",
                         (unsigned long long)computed, (unsigned long long)submitted, per);
            assert_true(g_last_stats.prompt_cached > (uint64_t)per * 20);
            print_message("prefix cache: %llu of %llu prompt tokens computed (%d per request)\n",
                          (unsigned long long)computed, (unsigned long long)submitted, per);
        } else {
            assert_int_equal(g_last_stats.prompt_cached, 0);
            assert_int_equal(g_last_stats.prompt_tokens, g_last_stats.prompt_submitted);
        }
    }
    g_no_prefix = false;
    for (int i = 0; i < 24; i++) {
        assert_int_equal(with.status[i], NS_OK);
        assert_string_equal(with.text[i], without.text[i]);
    }
}

/* n choices of one prompt: greedy choices are equal, seeded ones reproducible; the prompt
 * is computed once (each other choice computes only its last token); choices wait for free
 * sequences when there are few; more choices than sequences fail naming n */
static void test_choices(void **state)
{
    (void)state;
    static struct src a, b;
    for (int pass = 0; pass < 2; pass++) {
        g_no_prefix = pass == 1; /* the sharing does not need the prefix cache */
        fill(&a, 1, 10);
        a.req[0].n = 3;
        run_all(g_model, 4096, 4, &a, true);
        assert_int_equal(a.status[0], NS_OK);
        assert_int_equal(a.n_ch[0], 3);
        int p = a.ptok[0];
        for (int c = 0; c < 3; c++) {
            assert_string_equal(a.ch_text[0][c], a.ch_text[0][0]);
            assert_string_equal(a.ch_streamed[0][c], a.ch_text[0][c]);
            assert_int_equal(a.ch_tokens[0][c], 10);
        }
        assert_int_equal(a.ctok[0], 30);
        assert_int_equal(g_last_stats.prompt_submitted, (uint64_t)p * 3);
        assert_int_equal(g_last_stats.prompt_tokens, (uint64_t)p + 2);
        assert_int_equal(g_last_stats.prompt_cached, (uint64_t)(p - 1) * 2);
    }
    g_no_prefix = false;

    /* sampled with a seed: the same choices twice, not all alike */
    fill(&a, 1, 16);
    fill(&b, 1, 16);
    a.req[0].n = b.req[0].n = 4;
    a.req[0].temperature = b.req[0].temperature = 1.0f;
    a.req[0].seed = b.req[0].seed = 42;
    a.req[0].ignore_eos = b.req[0].ignore_eos = false;
    run_all(g_model, 4096, 4, &a, false);
    run_all(g_model, 4096, 4, &b, false);
    int distinct = 0;
    for (int c = 0; c < 4; c++) {
        assert_string_equal(a.ch_text[0][c], b.ch_text[0][c]);
        distinct += c > 0 && strcmp(a.ch_text[0][c], a.ch_text[0][0]) != 0;
    }
    assert_true(distinct > 0);

    /* 4 requests of 3 choices on 4 sequences: choices wait for free ones */
    fill(&a, 4, 6);
    fill(&b, 4, 6);
    for (int i = 0; i < 4; i++)
        a.req[i].n = 3;
    run_all(g_model, 4096, 4, &a, false);
    run_all(g_model, 4096, 1, &b, false);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(a.done_count[i], 1);
        assert_int_equal(a.status[i], NS_OK);
        assert_int_equal(a.n_ch[i], 3);
        for (int c = 0; c < 3; c++)
            assert_string_equal(a.ch_text[i][c], b.text[i]);
    }

    /* more choices than sequences */
    fill(&a, 2, 4);
    a.req[0].n = 5;
    run_all(g_model, 4096, 4, &a, false);
    assert_int_equal(a.status[0], NS_ERR_INVALID);
    assert_string_equal(a.param[0], "n");
    assert_non_null(strstr(a.text[0], "'n'"));
    assert_int_equal(a.status[1], NS_OK);
}

/* embeddings: an engine loaded for them gives one L2-normalized vector of n_embd floats
 * per input, the same for an input alone or batched with others, text or its tokens;
 * errors name the input; each kind of engine refuses the other kind of request */
static struct engine_result g_emb[8];
static float g_vec[8][4][512];
static int g_emb_status[8];
static const char *g_emb_param[8];
static char g_emb_msg[8][400];

static void emb_done(void *ud, struct engine_request *r, const struct engine_result *res)
{
    struct engine_request *base = ud;
    int i = (int)(r - base);
    g_emb[i] = *res;
    g_emb_status[i] = res->status;
    g_emb_param[i] = res->param;
    snprintf(g_emb_msg[i], sizeof(g_emb_msg[i]), "%s", res->message);
    for (int k = 0; k < res->n_embed && k < 4; k++)
        memcpy(g_vec[i][k], res->embedding + (size_t)k * (size_t)res->n_embd, sizeof(float) * (size_t)res->n_embd);
}

static struct engine_request *g_emb_reqs;
static int g_emb_n, g_emb_next;

static int emb_pull(void *ud, struct engine_request **out, int max)
{
    (void)ud;
    int k = 0;
    while (k < max && g_emb_next < g_emb_n)
        out[k++] = &g_emb_reqs[g_emb_next++];
    return k ? k : -1;
}

static void emb_run(struct engine *e, struct engine_request *reqs, int n)
{
    g_emb_reqs = reqs;
    g_emb_n = n;
    g_emb_next = 0;
    memset(g_emb, 0, sizeof(g_emb));
    struct engine_source es = {.ud = reqs, .pull = emb_pull, .done = emb_done};
    assert_int_equal(engine_run(e, &es), NS_OK);
}

static void test_embeddings(void **state)
{
    (void)state;
    struct engine_params p = engine_default_params();
    p.model_path = g_model;
    p.n_ctx = 2048;
    p.n_parallel = 4;
    p.n_threads = 2;
    p.embedding = true;
    p.n_batch = 256;
    struct engine *e = NULL;
    char err[256];
    if (engine_init(p, &e, err, sizeof(err)))
        fail_msg("engine_init: %s", err);
    struct engine_info info;
    engine_get_info(e, &info);
    assert_true(info.embedding);
    assert_string_equal(info.pooling, "mean");
    int d = info.n_embd;
    assert_true(d > 0 && d <= 512);
    assert_int_equal(info.n_embed_max, 256);

    static const char *texts[3] = {"The quick brown fox", "jumps over the lazy dog", "Embeddings are vectors."};
    struct engine_embed_input three[3], one[3];
    for (int i = 0; i < 3; i++)
        three[i] = one[i] = (struct engine_embed_input){.text = texts[i], .text_len = strlen(texts[i])};
    static int32_t toks[8];
    struct engine_request reqs[8];
    for (int i = 0; i < 8; i++)
        engine_request_init(&reqs[i]);
    /* 0: three inputs together; 1..3: each alone; 4: the same again */
    reqs[0].embed = three, reqs[0].n_embed = 3;
    for (int i = 0; i < 3; i++)
        reqs[1 + i].embed = &one[i], reqs[1 + i].n_embed = 1;
    reqs[4].embed = three, reqs[4].n_embed = 1;
    emb_run(e, reqs, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(g_emb_status[i], NS_OK);
    assert_int_equal(g_emb[0].n_embed, 3);
    assert_int_equal(g_emb[0].n_embd, d);
    assert_true(g_emb[0].prompt_tokens > 10);
    for (int k = 0; k < 3; k++) {
        double norm = 0, diff = 0;
        for (int x = 0; x < d; x++) {
            norm += (double)g_vec[0][k][x] * g_vec[0][k][x];
            diff = fmax(diff, fabs((double)g_vec[0][k][x] - g_vec[1 + k][0][x]));
        }
        assert_true(fabs(norm - 1.0) < 1e-4);
        if (diff > 1e-4)
            fail_msg("input %d batched differs from alone by %g", k, diff);
    }
    for (int x = 0; x < d; x++) /* the same input again (in another batch composition) */
        assert_true(fabs((double)g_vec[4][0][x] - g_vec[1][0][x]) < 1e-5);

    /* an input as token ids, and the errors */
    struct engine_embed_input tk = {.tokens = toks, .n_tokens = 3};
    toks[0] = 1, toks[1] = 450, toks[2] = 4996;
    static int32_t big[300];
    for (int i = 0; i < 300; i++)
        big[i] = 100 + i;
    struct engine_embed_input toolong = {.tokens = big, .n_tokens = 300};
    static int32_t badtok[1] = {99999999};
    struct engine_embed_input bad = {.tokens = badtok, .n_tokens = 1};
    struct engine_embed_input empty = {.tokens = toks, .n_tokens = 0};
    static char huge[1 << 17];
    memset(huge, 'a', sizeof(huge) - 1);
    struct engine_embed_input hugetext = {.text = huge, .text_len = sizeof(huge) - 1};
    for (int i = 0; i < 8; i++)
        engine_request_init(&reqs[i]);
    reqs[0].embed = &tk, reqs[0].n_embed = 1;
    reqs[1].embed = &toolong, reqs[1].n_embed = 1;
    reqs[2].embed = &bad, reqs[2].n_embed = 1;
    reqs[3].embed = &empty, reqs[3].n_embed = 1;
    reqs[4].prompt = "a generation request";
    reqs[5].embed = &hugetext, reqs[5].n_embed = 1; /* refused by its size, before tokenizing */
    reqs[6].embed = &tk, reqs[6].n_embed = 1, reqs[6].embed_dimensions = d + 1;
    reqs[7].embed = &tk, reqs[7].n_embed = 1, reqs[7].embed_dimensions = d;
    emb_run(e, reqs, 8);
    assert_int_equal(g_emb_status[0], NS_OK);
    assert_int_equal(g_emb[0].prompt_tokens, 3);
    assert_int_equal(g_emb_status[1], NS_ERR_CONTEXT);
    assert_string_equal(g_emb_param[1], "input");
    assert_non_null(strstr(g_emb_msg[1], "300 tokens"));
    assert_int_equal(g_emb_status[2], NS_ERR_INVALID);
    assert_non_null(strstr(g_emb_msg[2], "vocabulary"));
    assert_int_equal(g_emb_status[3], NS_ERR_INVALID);
    assert_string_equal(g_emb_param[3], "input");
    assert_int_equal(g_emb_status[4], NS_ERR_INVALID);
    assert_string_equal(g_emb_param[4], "model");
    assert_int_equal(g_emb_status[5], NS_ERR_CONTEXT);
    assert_non_null(strstr(g_emb_msg[5], "bytes"));
    assert_int_equal(g_emb_status[6], NS_ERR_UNSUPPORTED);
    assert_string_equal(g_emb_param[6], "dimensions");
    assert_int_equal(g_emb_status[7], NS_OK);
    engine_free(e);

    /* pooling none is refused; a generation engine refuses embeddings */
    p.pooling = ENGINE_POOLING_NONE;
    assert_int_equal(engine_init(p, &e, err, sizeof(err)), NS_ERR_INVALID);
    assert_non_null(strstr(err, "pooling 'none'"));
    assert_int_equal(engine_pooling_parse("cls"), ENGINE_POOLING_CLS);
    assert_int_equal(engine_pooling_parse("max"), -2);
    p.pooling = ENGINE_POOLING_LAST;
    if (engine_init(p, &e, err, sizeof(err)))
        fail_msg("engine_init: %s", err);
    engine_get_info(e, &info);
    assert_string_equal(info.pooling, "last");
    engine_free(e);
    p.embedding = false;
    if (engine_init(p, &e, err, sizeof(err)))
        fail_msg("engine_init: %s", err);
    engine_request_init(&reqs[0]);
    reqs[0].embed = three, reqs[0].n_embed = 1;
    emb_run(e, reqs, 1);
    assert_int_equal(g_emb_status[0], NS_ERR_INVALID);
    assert_string_equal(g_emb_param[0], "model");
    engine_free(e);
}

/* grammar-constrained output: every request that ends (not cut by max_tokens) is JSON
 * of the schema's shape, sampled or greedy; a grammar llama.cpp rejects fails the request */
static void test_grammar(void **state)
{
    (void)state;
    static struct src s;
    const char *schema = "{\"type\":\"object\",\"properties\":{\"ok\":{\"type\":\"boolean\"},"
                         "\"n\":{\"type\":\"integer\"},\"tag\":{\"enum\":[\"a\",\"b\"]}},"
                         "\"required\":[\"ok\",\"n\",\"tag\"],\"additionalProperties\":false}";
    cJSON *sj = cJSON_Parse(schema);
    char *g = NULL, err[256];
    assert_int_equal(jsonschema_to_gbnf(sj, &g, err, sizeof(err)), NS_OK);
    cJSON_Delete(sj);
    fill(&s, 13, 120);
    for (int i = 0; i < 12; i++) {
        s.req[i].grammar = g;
        s.req[i].temperature = i < 2 ? 0.0f : 1.0f; /* the greedy path needs a chain too */
        s.req[i].seed = (uint32_t)i;
    }
    s.req[12].grammar = "root ::= (";
    run_all(g_model, 4096, 4, &s, true);
    int parsed = 0;
    for (int i = 0; i < 12; i++) {
        assert_int_equal(s.status[i], NS_OK);
        assert_string_equal(s.streamed[i], s.text[i]);
        if (s.finish[i] != ENGINE_FINISH_STOP)
            continue;
        cJSON *o = cJSON_Parse(s.text[i]);
        if (!o)
            fail_msg("request %d: not JSON: %s", i, s.text[i]);
        assert_true(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(o, "ok")));
        assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "n")));
        assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "tag")));
        assert_int_equal(cJSON_GetArraySize(o), 3);
        cJSON_Delete(o);
        parsed++;
    }
    assert_true(parsed >= 6);
    assert_int_equal(s.status[12], NS_ERR_INVALID);
    assert_non_null(strstr(s.text[12], "grammar"));
    free(g);
}

/* logprobs for every generated token; logit_bias bans or forces tokens */
static void test_logprobs_and_bias(void **state)
{
    (void)state;
    static struct src a, b;
    fill(&a, 3, 8);
    a.req[0].logprobs = true;
    a.req[0].top_logprobs = 5;
    a.req[1].logprobs = true; /* no alternatives */
    a.req[2].logprobs = true;
    a.req[2].top_logprobs = ENGINE_MAX_TOP_LOGPROBS;
    a.req[2].temperature = 1;
    run_all(g_model, 2048, 3, &a, false);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(a.status[i], NS_OK);
        assert_int_equal(a.n_lp[i], a.ctok[i]);
        assert_true(a.lp_ok[i]);
    }
    /* ban the first token greedy chose; force another everywhere; a bad id fails */
    static struct engine_logit_bias ban, force, bad = {.token = 1 << 30, .bias = 1};
    ban = (struct engine_logit_bias){.token = a.first_tok[0], .bias = -100};
    force = (struct engine_logit_bias){.token = 1000, .bias = 100};
    fill(&b, 3, 8);
    for (int i = 0; i < 3; i++)
        b.req[i].logprobs = true;
    b.req[0].logit_bias = &ban;
    b.req[0].n_logit_bias = 1;
    b.req[1].logit_bias = &force;
    b.req[1].n_logit_bias = 1;
    b.req[2].logit_bias = &bad;
    b.req[2].n_logit_bias = 1;
    run_all(g_model, 2048, 3, &b, false);
    assert_int_equal(b.status[0], NS_OK);
    assert_int_not_equal(b.first_tok[0], a.first_tok[0]);
    assert_int_equal(b.first_tok[1], 1000);
    assert_int_equal(b.status[2], NS_ERR_INVALID);
    assert_non_null(strstr(b.text[2], "logit_bias"));
}

/* issue 27.6: no combination of context, parallelism, batch and micro-batch sizes and
 * prompt lengths may abort the process (llama.cpp clamps n_batch to n_ctx, and a step over
 * llama_n_batch() is a GGML_ASSERT): every request ends exactly once, answered or refused.
 * A fixed pseudo-random walk over the space keeps it short and reproducible. */
static void test_param_space(void **state)
{
    (void)state;
    static const int ctxs[] = {64, 100, 256, 1024, 1500, 4096};
    static const int pars[] = {1, 2, 3, 8};
    static const int batches[] = {0, 32, 100, 512, 2048};
    static const int ubatches[] = {0, 16, 64, 512};
    static const int plens[] = {1, 10, 60, 130, 400, 1200};
    static struct src s;
    static char prompts[MAXR][8 * 1300];
    uint32_t x = 12345;
    for (int round = 0; round < 24; round++) {
#define PICK(a) (a[(x = x * 1103515245u + 12345u, (x >> 16) % (sizeof(a) / sizeof(a[0])))])
        struct engine_params p = engine_default_params();
        p.model_path = g_model;
        p.n_ctx = PICK(ctxs);
        p.n_parallel = PICK(pars);
        p.n_batch = PICK(batches);
        p.n_ubatch = PICK(ubatches);
        p.n_priority = round % 3 == 0 ? 1 : 0;
        p.n_threads = 2;
        memset(&s, 0, sizeof(s));
        s.n = 8;
        for (int i = 0; i < s.n; i++) {
            int words = PICK(plens);
            size_t o = 0;
            for (int w = 0; w < words && o + 8 < sizeof(prompts[i]); w++)
                o += (size_t)snprintf(prompts[i] + o, sizeof(prompts[i]) - o, "w%d ", (w * 7 + i) % 100);
            engine_request_init(&s.req[i]);
            s.req[i].prompt = prompts[i];
            s.req[i].max_tokens = 1 + i % 5;
            s.req[i].temperature = 0;
            s.req[i].ignore_eos = true;
        }
#undef PICK
        struct engine *e = NULL;
        char err[256];
        int rc = engine_init(p, &e, err, sizeof(err));
        if (rc)
            fail_msg("engine_init ctx %d parallel %d batch %d ubatch %d: %s", p.n_ctx, p.n_parallel, p.n_batch,
                     p.n_ubatch, err);
        struct engine_source es = {.ud = &s, .pull = src_pull, .done = src_done};
        assert_int_equal(engine_run(e, &es), NS_OK);
        engine_free(e);
        for (int i = 0; i < s.n; i++) {
            if (s.done_count[i] != 1)
                fail_msg("round %d (ctx %d parallel %d batch %d ubatch %d): request %d ended %d times", round, p.n_ctx,
                         p.n_parallel, p.n_batch, p.n_ubatch, i, s.done_count[i]);
            assert_true(s.status[i] == NS_OK || s.status[i] == NS_ERR_CONTEXT);
        }
    }
}

static void test_bad_model(void **state)
{
    (void)state;
    struct engine_params p = engine_default_params();
    struct engine *e = (struct engine *)1;
    char err[512];
    p.model_path = "/nonexistent/model.gguf";
    assert_int_equal(engine_init(p, &e, err, sizeof(err)), NS_ERR_INVALID);
    assert_null(e);
    assert_non_null(strstr(err, "cannot open model"));
    char path[] = "/tmp/ns-notgguf-XXXXXX";
    int fd = mkstemp(path);
    assert_int_equal(write(fd, "hello world\n", 12), 12);
    close(fd);
    p.model_path = path;
    assert_int_equal(engine_init(p, &e, err, sizeof(err)), NS_ERR_INVALID);
    assert_non_null(strstr(err, "not a GGUF"));
    /* GGUF magic but garbage after it */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "GGUF\x03\x00\x00\x00garbage", 15), 15);
    close(fd);
    assert_int_equal(engine_init(p, &e, err, sizeof(err)), NS_ERR_INVALID);
    assert_null(e);
    unlink(path);
}

int main(void)
{
    /* NS_TEST_FILTER=test_priority_lane (a glob): run just those tests */
    const char *filter = getenv("NS_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_all_done),
        cmocka_unit_test(test_batch_in_sequence_order),
        cmocka_unit_test(test_tail_compaction),
        cmocka_unit_test(test_parallel_matches_sequential),
        cmocka_unit_test(test_context_overflow),
        cmocka_unit_test(test_preemption),
        cmocka_unit_test(test_priority_lane),
        cmocka_unit_test(test_stop_and_stream),
        cmocka_unit_test(test_stream_invalid_utf8),
        cmocka_unit_test(test_sampling_seeded),
        cmocka_unit_test(test_batched_q8_matmul),
        cmocka_unit_test(test_prefix_cache),
        cmocka_unit_test(test_choices),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_grammar),
        cmocka_unit_test(test_logprobs_and_bias),
        cmocka_unit_test(test_param_space),
        cmocka_unit_test(test_bad_model),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
