/*
 * bench/lora.c — how to batch sequences of different LoRA adapters over one base model,
 * measured on llama.cpp itself (the engine's two candidate designs, without the engine).
 *
 * llama.cpp applies adapters per context (llama_set_adapters_lora), not per sequence, so
 * a step holds sequences of one adapter set. Two ways to run two adapters' sequences:
 *   (a) switch: ONE context, both groups' sequences in its KV; steps alternate between the
 *       groups and the context's adapter set is switched before each step;
 *   (b) contexts: one context PER adapter (own KV), all sharing the base model's weights;
 *       steps of the two contexts alternate, on one thread;
 *   (b') each context on its own thread (as each model's engine runs), decodes taking turns
 *       (a ticket lock), sampling outside it;
 *   (b'') each context on its own thread, its decodes run on the base's one decode thread
 *       (engine/lora.c's lora_base_forward: what the engine does).
 * Both are measured against the anchor "single": the same number of sequences, all on one
 * adapter, in one context (what a single-adapter batch of the same size costs). Each run
 * prefills N prompts of P tokens, then decodes G tokens per sequence (greedy argmax).
 * The rounds are interleaved (single, a, b, then rotated), and the ratios are printed per
 * round and as medians, so drift of a shared machine hits the three alike.
 *
 * It also times the switch itself: llama_set_adapters_lora() returns at once, but marks the
 * context's compute graph for re-reservation, paid by the next decode; so the cost is
 * (decode after a switch) - (decode without one), over K steps each.
 *
 * usage: bench_lora BASE.gguf A.gguf B.gguf [N=16] [P=32] [G=32] [ROUNDS=3] [THREADS=2]
 * Prints comparisons, never pass/fail. bench/lora.sh builds the models and runs it.
 */
#include "llama.h"

#include "../src/engine/lora.h"

#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void quiet(enum ggml_log_level level, const char *text, void *ud)
{
    (void)ud;
    if (level == GGML_LOG_LEVEL_ERROR)
        fputs(text, stderr);
}

struct run {
    struct llama_model *model;
    struct lora_base *base;
    struct llama_adapter_lora *ad[2];
    int n, p, g, threads, n_vocab;
};

static struct llama_context *ctx_new(const struct run *r, int n_seq)
{
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_seq * (r->p + r->g + 16));
    cp.n_batch = 2048;
    cp.n_ubatch = 512;
    cp.n_seq_max = (uint32_t)n_seq;
    cp.kv_unified = false; /* the engine's default: KV split between the sequences */
    cp.n_threads = cp.n_threads_batch = r->threads;
    return llama_init_from_model(r->model, cp);
}

static void set_adapter(struct llama_context *ctx, struct llama_adapter_lora *a)
{
    float scale = 1.0f;
    llama_set_adapters_lora(ctx, &a, 1, &scale);
}

static int decode(const struct run *r, struct llama_context *ctx, struct llama_batch b, int mode);

/* prefill sequences [s0, s0+n) of ctx (ids from 0), then return; last[] gets argmax */
static int prefill(const struct run *r, struct llama_context *ctx, struct llama_batch *b, int seq0, int n, int tag,
                   llama_token *last, int mode)
{
    b->n_tokens = 0;
    for (int s = 0; s < n; s++)
        for (int i = 0; i < r->p; i++) {
            int k = b->n_tokens++;
            b->token[k] = (llama_token)(1000 + ((s + tag * 131) * 977 + i * 31) % (r->n_vocab - 2000));
            b->pos[k] = i;
            b->n_seq_id[k] = 1;
            b->seq_id[k][0] = seq0 + s;
            b->logits[k] = i == r->p - 1;
        }
    if (decode(r, ctx, *b, mode))
        return -1;
    for (int s = 0; s < n; s++) {
        const float *lg = llama_get_logits_ith(ctx, s * r->p + r->p - 1);
        int best = 0;
        for (int v = 1; v < r->n_vocab; v++)
            if (lg[v] > lg[best])
                best = v;
        last[seq0 + s] = best;
    }
    return 0;
}

/* one decode step of sequences [seq0, seq0+n) at position pos */
static int step(const struct run *r, struct llama_context *ctx, struct llama_batch *b, int seq0, int n, int pos,
                llama_token *last, int mode)
{
    b->n_tokens = 0;
    for (int s = 0; s < n; s++) {
        int k = b->n_tokens++;
        b->token[k] = last[seq0 + s];
        b->pos[k] = pos;
        b->n_seq_id[k] = 1;
        b->seq_id[k][0] = seq0 + s;
        b->logits[k] = 1;
    }
    if (decode(r, ctx, *b, mode))
        return -1;
    for (int s = 0; s < n; s++) {
        const float *lg = llama_get_logits_ith(ctx, s);
        int best = 0;
        for (int v = 1; v < r->n_vocab; v++)
            if (lg[v] > lg[best])
                best = v;
        last[seq0 + s] = best;
    }
    return 0;
}

/* (b'): a ticket lock, first come first served */
static pthread_mutex_t g_turn_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_turn_cv = PTHREAD_COND_INITIALIZER;
static uint64_t g_turn_next, g_turn_serving;

static void turn_begin(void)
{
    pthread_mutex_lock(&g_turn_mu);
    uint64_t mine = g_turn_next++;
    while (g_turn_serving != mine)
        pthread_cond_wait(&g_turn_cv, &g_turn_mu);
    pthread_mutex_unlock(&g_turn_mu);
}

static void turn_end(void)
{
    pthread_mutex_lock(&g_turn_mu);
    g_turn_serving++;
    pthread_cond_broadcast(&g_turn_cv);
    pthread_mutex_unlock(&g_turn_mu);
}

/* decode one batch: mode 3 in turns, mode 4 on the base's decode thread, else here */
static int decode(const struct run *r, struct llama_context *ctx, struct llama_batch b, int mode)
{
    double s;
    if (mode == 4)
        return lora_base_forward(r->base, ctx, b, false, &s);
    if (mode == 3)
        turn_begin();
    int ret = llama_decode(ctx, b);
    if (mode == 3)
        turn_end();
    return ret;
}

/* (b'), (b''): one context's whole run on its own thread */
struct half {
    const struct run *r;
    struct llama_context *ctx;
    int n, tag, rc;
    int mode;
};

static void *half_main(void *arg)
{
    struct half *h = arg;
    const struct run *r = h->r;
    struct llama_batch b = llama_batch_init(h->n * r->p, 0, 1);
    llama_token *last = calloc((size_t)h->n, sizeof(*last));
    h->rc |= prefill(r, h->ctx, &b, 0, h->n, h->tag, last, h->mode);
    for (int g = 0; g < r->g && !h->rc; g++)
        h->rc |= step(r, h->ctx, &b, 0, h->n, r->p + g, last, h->mode);
    free(last);
    llama_batch_free(b);
    return NULL;
}

/* mode 0 single, 1 switch (a), 2 contexts (b), 3 contexts on threads in turns (b'), 4 contexts
 * on threads, decodes on the base's decode thread (b''): seconds for prefill + G steps */
static double run_mode(const struct run *r, int mode)
{
    struct llama_batch b = llama_batch_init(r->n * r->p, 0, 1);
    llama_token *last = calloc((size_t)r->n, sizeof(*last));
    bool two = mode >= 2 && mode <= 4;
    struct llama_context *c0 = ctx_new(r, two ? r->n / 2 : r->n);
    struct llama_context *c1 = two ? ctx_new(r, r->n - r->n / 2) : NULL;
    int h = r->n / 2, rc = 0;
    double t0 = now();
    if (mode == 0 || mode == 5) {
        /* 5: the same through the base's decode thread (an adapter model busy while the
         * others of its base are idle) */
        int how = mode == 5 ? 4 : 0;
        set_adapter(c0, r->ad[0]);
        rc |= prefill(r, c0, &b, 0, r->n, 0, last, how);
        for (int g = 0; g < r->g && !rc; g++)
            rc |= step(r, c0, &b, 0, r->n, r->p + g, last, how);
    } else if (mode == 1) {
        set_adapter(c0, r->ad[0]);
        rc |= prefill(r, c0, &b, 0, h, 0, last, 0);
        set_adapter(c0, r->ad[1]);
        rc |= prefill(r, c0, &b, h, r->n - h, 1, last, 0);
        for (int g = 0; g < r->g && !rc; g++) {
            set_adapter(c0, r->ad[0]);
            rc |= step(r, c0, &b, 0, h, r->p + g, last, 0);
            set_adapter(c0, r->ad[1]);
            rc |= step(r, c0, &b, h, r->n - h, r->p + g, last, 0);
        }
    } else if (mode == 3 || mode == 4) {

        set_adapter(c0, r->ad[0]);
        set_adapter(c1, r->ad[1]);
        struct half hs[2] = {{r, c0, h, 0, 0, mode}, {r, c1, r->n - h, 1, 0, mode}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, half_main, &hs[i]);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], 0);
        rc = hs[0].rc | hs[1].rc;
    } else {
        set_adapter(c0, r->ad[0]);
        set_adapter(c1, r->ad[1]);
        rc |= prefill(r, c0, &b, 0, h, 0, last, 0);
        rc |= prefill(r, c1, &b, 0, r->n - h, 1, last + h, 0);
        for (int g = 0; g < r->g && !rc; g++) {
            rc |= step(r, c0, &b, 0, h, r->p + g, last, 0);
            rc |= step(r, c1, &b, 0, r->n - h, r->p + g, last + h, 0);
        }
    }
    double t = now() - t0;
    if (rc)
        fprintf(stderr, "bench_lora: a decode failed (mode %d)\n", mode);
    llama_free(c0);
    if (c1)
        llama_free(c1);
    free(last);
    llama_batch_free(b);
    return rc ? NAN : t;
}

/* per-switch cost: K steps of n/2 sequences with the adapter switched before each, minus K
 * steps without; also the time inside llama_set_adapters_lora itself */
static void switch_cost(const struct run *r, int k, double *per_switch, double *in_call, double *step_s)
{
    struct llama_batch b = llama_batch_init(r->n * r->p, 0, 1);
    llama_token *last = calloc((size_t)r->n, sizeof(*last));
    struct llama_context *c = ctx_new(r, r->n);
    int h = r->n / 2;
    set_adapter(c, r->ad[0]);
    prefill(r, c, &b, 0, h, 0, last, 0);
    int pos = r->p;
    double t0 = now();
    for (int i = 0; i < k; i++) {
        set_adapter(c, r->ad[0]); /* the same set: a no-op */
        step(r, c, &b, 0, h, pos++, last, 0);
    }
    double t_same = now() - t0, t_call = 0;
    t0 = now();
    for (int i = 0; i < k; i++) {
        double tc = now();
        set_adapter(c, r->ad[(i + 1) & 1]);
        t_call += now() - tc;
        step(r, c, &b, 0, h, pos++, last, 0);
    }
    double t_switch = now() - t0;
    *per_switch = (t_switch - t_same) / k;
    *in_call = t_call / k;
    *step_s = t_same / k;
    llama_free(c);
    free(last);
    llama_batch_free(b);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s BASE.gguf A.gguf B.gguf [N=16] [P=32] [G=32] [ROUNDS=3] [THREADS=2]\n", argv[0]);
        return 2;
    }
    struct run r = {.n = 16, .p = 32, .g = 32, .threads = 2};
    int rounds = 3;
    if (argc > 4) r.n = atoi(argv[4]) > 1 ? atoi(argv[4]) : 16;
    if (argc > 5) r.p = atoi(argv[5]) > 0 ? atoi(argv[5]) : 32;
    if (argc > 6) r.g = atoi(argv[6]) > 0 ? atoi(argv[6]) : 32;
    if (argc > 7) rounds = atoi(argv[7]) > 0 ? atoi(argv[7]) : 3;
    if (argc > 8) r.threads = atoi(argv[8]) > 0 ? atoi(argv[8]) : 2;
    if (rounds > 32) rounds = 32;
    llama_log_set(quiet, 0);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    double tl = now();
    char err[300];
    bool shared;
    struct lora_base *second;
    struct llama_model *same;
    /* two references, as two engines of one base hold: its decodes go to its decode thread */
    if (lora_base_acquire(argv[1], &mp, &r.base, &r.model, &shared, err, sizeof(err)) ||
        lora_base_acquire(argv[1], &mp, &second, &same, &shared, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    tl = now() - tl;
    r.n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(r.model));
    double ta = now();
    for (int i = 0; i < 2; i++)
        if (!(r.ad[i] = llama_adapter_lora_init(r.model, argv[2 + i]))) {
            fprintf(stderr, "cannot load adapter %s\n", argv[2 + i]);
            return 1;
        }
    ta = (now() - ta) / 2;
    printf("model %s (load %.2f s), adapters %s %s (load %.1f ms each)\n", argv[1], tl, argv[2], argv[3], ta * 1e3);
    printf("N=%d sequences, P=%d prompt tokens, G=%d generated each, %d rounds, %d threads\n", r.n, r.p, r.g, rounds,
           r.threads);

    double ra[32], rb[32], rt[32], rw[32], rs[32], sw[32], swc[32], sst[32];
    run_mode(&r, 0); /* warm-up: page the weights in */
    for (int i = 0; i < rounds; i++) {
        double t[6];
        for (int j = 0; j < 6; j++) {
            int m = (i + j) % 6;
            t[m] = run_mode(&r, m);
        }
        rw[i] = t[0] / t[4];
        rs[i] = t[0] / t[5];
        ra[i] = t[0] / t[1];
        rb[i] = t[0] / t[2];
        rt[i] = t[0] / t[3];
        switch_cost(&r, 16, &sw[i], &swc[i], &sst[i]);
        printf("round %d: single %.3f s, (a) switch %.3f s, (b) contexts %.3f s, (b') threads %.3f s, (b'') decode "
               "thread %.3f s; throughput vs single: (a) %.3f (b) %.3f (b') %.3f (b'') %.3f; switch %.2f ms (call %.1f "
               "us) against a %.2f ms step of %d sequences\n",
               i + 1, t[0], t[1], t[2], t[3], t[4], ra[i], rb[i], rt[i], rw[i], sw[i] * 1e3, swc[i] * 1e6,
               sst[i] * 1e3, r.n / 2);
        fflush(stdout);
    }
    double lo[5], hi[5], *v[5] = {ra, rb, rt, rw, rs};
    for (int k = 0; k < 5; k++) {
        lo[k] = hi[k] = v[k][0];
        for (int i = 1; i < rounds; i++)
            lo[k] = fmin(lo[k], v[k][i]), hi[k] = fmax(hi[k], v[k][i]);
    }
    double ma = median(ra, rounds), mb = median(rb, rounds), mt = median(rt, rounds), mw = median(rw, rounds);
    printf("median throughput of a mixed 2-adapter batch vs a single-adapter batch of %d [min..max over rounds]: "
           "(a) switch %.3f [%.3f..%.3f], (b) contexts %.3f [%.3f..%.3f], (b') threads %.3f [%.3f..%.3f], "
           "(b'') decode thread %.3f [%.3f..%.3f]\n",
           r.n, ma, lo[0], hi[0], mb, lo[1], hi[1], mt, lo[2], hi[2], mw, lo[3], hi[3]);
    double ms = median(rs, rounds);
    printf("median throughput of the single-adapter batch through the decode thread vs on its own thread: %.3f "
           "[%.3f..%.3f]\n", ms, lo[4], hi[4]);
    printf("median adapter switch cost: %.2f ms per switch (llama_set_adapters_lora itself %.1f us; the rest is "
           "the next decode's graph re-reservation), a step of %d sequences %.2f ms\n",
           median(sw, rounds) * 1e3, median(swc, rounds) * 1e6, r.n / 2, median(sst, rounds) * 1e3);
    lora_base_release(second);
    lora_base_release(r.base);
    llama_backend_free();
    return 0;
}
