/*
 * step_cost.c - what one engine step costs in llama.cpp, by what it carries (issue 32).
 *
 * The interactive latency budget (src/engine/steps.h) sizes steps from a learned model,
 * ms = a + b*tokens + c*sequences + d*passes. This program measures the shape behind it on
 * the model and machine at hand, with llama.cpp's C API alone (no nightshift code): N
 * sequences each holding FILL tokens of KV, then decode steps of one token for K of them
 * (K = 1, 2, 4, 8, 16, N), in one run of consecutive sequence ids and scattered over
 * several (each run is a pass over the weights with a KV stream per sequence), with split and
 * unified KV; and the sampling a step needs per sequence (greedy argmax, and a temperature
 * sampler over the whole vocabulary). Every figure is printed as a ratio to the one-token
 * decode measured in the same run (the anchor: what an idle stream pays per token).
 *
 * Build (LLAMA_PREFIX: scripts/bootstrap.sh's llama.cpp, as CMake's):
 *   gcc -std=c11 -O2 -Wall -Wextra -Werror bench/step_cost.c -I$LLAMA_PREFIX/include \
 *       -L$LLAMA_PREFIX/lib -lllama -lggml -lggml-cpu -lggml-base -lstdc++ -lm -fopenmp \
 *       -o /tmp/step_cost
 * Run:
 *   /tmp/step_cost MODEL.gguf [threads 2] [sequences 32] [fill 300] [reps 20]
 */
#define _GNU_SOURCE

#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int arg_int(int argc, char **argv, int i, int def)
{
    if (argc <= i)
        return def;
    char *end;
    long v = strtol(argv[i], &end, 10);
    return *end || v <= 0 || v > 100000 ? def : (int)v;
}

static void quiet(enum ggml_log_level level, const char *text, void *ud)
{
    (void)level, (void)text, (void)ud;
}

struct run {
    struct llama_context *ctx;
    struct llama_batch b;
    int pos[256];
    int n_seq;
};

/* one decode step of one token for each sequence in ids[0..k); its ms */
static double step(struct run *r, const int *ids, int k)
{
    r->b.n_tokens = 0;
    for (int j = 0; j < k; j++) {
        int at = r->b.n_tokens++, s = ids[j];
        r->b.token[at] = 100 + (r->pos[s] * 7 + s) % 1000;
        r->b.pos[at] = r->pos[s]++;
        r->b.n_seq_id[at] = 1;
        r->b.seq_id[at][0] = s;
        r->b.logits[at] = 1;
    }
    double t0 = now_ms();
    if (llama_decode(r->ctx, r->b) != 0) {
        fprintf(stderr, "step_cost: llama_decode failed\n");
        exit(1);
    }
    llama_synchronize(r->ctx);
    return now_ms() - t0;
}

static double median(double *v, int n)
{
    for (int i = 1; i < n; i++) /* insertion sort: n is small */
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v[n / 2];
}

static double median_step(struct run *r, const int *ids, int k, int reps)
{
    double v[64];
    if (reps > 64)
        reps = 64;
    for (int i = 0; i < reps; i++)
        v[i] = step(r, ids, k);
    return median(v, reps);
}

static int open_run(struct run *r, struct llama_model *m, int unified, int threads, int n_seq, int fill)
{
    memset(r, 0, sizeof(*r));
    r->n_seq = n_seq;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_seq * (fill + 256));
    cp.n_batch = 2048;
    cp.n_ubatch = 512;
    cp.n_seq_max = (uint32_t)n_seq;
    cp.kv_unified = unified;
    cp.n_threads = cp.n_threads_batch = threads;
    if (!(r->ctx = llama_init_from_model(m, cp)))
        return -1;
    r->b = llama_batch_init(4096, 0, 1);
    for (int s = 0; s < n_seq; s++) { /* each sequence holds `fill` tokens of KV */
        r->b.n_tokens = 0;
        for (int i = 0; i < fill; i++) {
            int at = r->b.n_tokens++;
            r->b.token[at] = 100 + (i * 7 + s) % 1000;
            r->b.pos[at] = r->pos[s]++;
            r->b.n_seq_id[at] = 1;
            r->b.seq_id[at][0] = s;
            r->b.logits[at] = i == fill - 1;
        }
        if (llama_decode(r->ctx, r->b) != 0)
            return -1;
    }
    return 0;
}

static void close_run(struct run *r)
{
    llama_batch_free(r->b);
    llama_free(r->ctx);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: step_cost MODEL.gguf [threads 2] [sequences 32] [fill 300] [reps 20]\n");
        return 2;
    }
    int threads = arg_int(argc, argv, 2, 2), n_seq = arg_int(argc, argv, 3, 32), fill = arg_int(argc, argv, 4, 300),
        reps = arg_int(argc, argv, 5, 20);
    if (n_seq > 256)
        n_seq = 256;
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model *m = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!m) {
        fprintf(stderr, "step_cost: cannot load %s\n", argv[1]);
        return 1;
    }
    printf("step_cost: %s, %d threads, %d sequences holding %d tokens each, medians of %d steps\n", argv[1], threads, n_seq,
           fill, reps);
    int ks[] = {1, 2, 4, 8, 16, n_seq};
    double anchor = 0;
    for (int unified = 0; unified < 2; unified++) {
        struct run r;
        if (open_run(&r, m, unified, threads, n_seq, fill) != 0) {
            fprintf(stderr, "step_cost: cannot set up the context\n");
            return 1;
        }
        printf("\n%s KV: one token for K sequences                 ms   x(1-token step)\n",
               unified ? "unified" : "split (a stream per sequence)");
        for (size_t ki = 0; ki < sizeof(ks) / sizeof(ks[0]); ki++) {
            int k = ks[ki], ids[256];
            if (k > n_seq)
                break;
            for (int j = 0; j < k; j++) /* one run: ids 0..k-1 */
                ids[j] = j;
            double one = median_step(&r, ids, k, reps);
            if (!unified && k == 1)
                anchor = one;
            printf("  K = %-3d one run of consecutive ids          %7.2f  %6.2f\n", k, one, one / anchor);
            if (k >= 2 && k * 2 <= n_seq) { /* every other id: k runs */
                for (int j = 0; j < k; j++)
                    ids[j] = 2 * j;
                double spread = median_step(&r, ids, k, reps);
                printf("  K = %-3d %3d runs (every other id)           %7.2f  %6.2f\n", k, k, spread, spread / anchor);
            }
        }
        if (!unified) { /* sampling one sequence's next token, on this thread */
            const float *logits = llama_get_logits_ith(r.ctx, 0);
            int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(m));
            llama_token_data *cur = malloc(sizeof(*cur) * (size_t)n_vocab);
            struct llama_sampler *ch = llama_sampler_chain_init(llama_sampler_chain_default_params());
            llama_sampler_chain_add(ch, llama_sampler_init_temp(1.0f));
            llama_sampler_chain_add(ch, llama_sampler_init_dist(1));
            double v[64], sink = 0;
            int n = reps > 64 ? 64 : reps;
            for (int i = 0; i < n && cur; i++) {
                double t0 = now_ms();
                for (int t = 0; t < n_vocab; t++)
                    cur[t] = (llama_token_data){t, logits[t], 0.0f};
                llama_token_data_array a = {cur, (size_t)n_vocab, -1, false};
                llama_sampler_apply(ch, &a);
                sink += a.selected;
                v[i] = now_ms() - t0;
            }
            double temp = cur ? median(v, n) : 0;
            for (int i = 0; i < n; i++) {
                __asm__ volatile("" ::: "memory"); /* the logits may have changed: no hoisting */
                double t0 = now_ms();
                int best = 0;
                for (int t = 1; t < n_vocab; t++)
                    best = logits[t] > logits[best] ? t : best;
                __asm__ volatile("" : : "g"(best) : "memory"); /* computed before the clock is read */
                sink += best;
                v[i] = now_ms() - t0;
            }
            double greedy = median(v, n);
            printf("  sampling one sequence (vocabulary %d): temperature %.2f ms (%.2f), greedy %.3f ms (%.3f)%s\n", n_vocab,
                   temp, temp / anchor, greedy, greedy / anchor, sink < 0 ? "" : "");
            llama_sampler_free(ch);
            free(cur);
        }
        close_run(&r);
    }
    llama_model_free(m);
    return 0;
}
