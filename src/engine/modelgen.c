/*
 * modelgen.c — generate a random-weight llama-architecture GGUF model with a real tokenizer.
 *
 * What it writes
 *   A GGUF v3 file that llama.cpp loads as LLM_ARCH_LLAMA:
 *     KV    general.architecture = "llama", general.name, general.description, general.file_type,
 *           general.quantization_version, llama.{context_length, embedding_length, block_count,
 *           feed_forward_length, attention.head_count, attention.head_count_kv,
 *           attention.layer_norm_rms_epsilon, rope.dimension_count, rope.freq_base, vocab_size},
 *           then every tokenizer.* key of the vocab file (tokens, scores/types, merges, special
 *           token ids, pre-tokenizer, chat templates). The vocab file's other keys (its general.*
 *           and its own architecture's keys such as qwen2.*) are dropped, so only ours remain.
 *     data  token_embd.weight [n_embd, n_vocab], then per layer blk.N.{attn_norm, attn_q, attn_k,
 *           attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}.weight, then
 *           output_norm.weight. There is no output.weight: the output projection is tied to the
 *           token embedding (as in Qwen2.5-0.5B and Llama-3.2-1B), which llama.cpp supports by
 *           duplicating token_embd; this keeps files for large vocabularies small.
 *   2-D matrices are stored in the requested type (f32, f16, q8_0 or q4_k, quantized with
 *   ggml_quantize_chunk); norm vectors are F32 and all 1.0. A q4_k matrix whose rows are not a
 *   multiple of 256 values (n_embd 896 in the Qwen2-0.5B shape) is stored as q5_0 instead,
 *   the fallback llama.cpp's llama-quantize uses for the same case, so the ≈0.5B shape has a
 *   q4_k variant with the same tensor types a real Q4_K quantization of it has.
 *
 * Why random weights are fine
 *   The server's tests and benchmarks measure throughput, latency, batching, scheduling, KV-cache
 *   handling and robustness, not answer quality. Those depend on the architecture, the shapes,
 *   the weight type and the tokenizer (prompt lengths, special tokens, chat template), all of
 *   which are real here; the values in the matrices do not change the work done per token. The
 *   weights are uniform in [-a, a] with a = sqrt(3 / fan_in), i.e. standard deviation
 *   1/sqrt(fan_in), so every projection roughly preserves the RMS of its input, RMS norms keep
 *   the residual stream bounded, and logits come out O(1): finite, non-degenerate, and sampling
 *   produces varied tokens (gibberish text, which is all a load test needs).
 *
 * Determinism
 *   Every row of every matrix has its own splitmix64 stream, seeded from (seed, tensor index,
 *   row index). Values therefore do not depend on chunking or on how many threads generate them,
 *   quantization is a pure function of its input, and metadata is written in a fixed order, so
 *   the same parameters and seed give a byte-identical file.
 *
 * Streaming
 *   The metadata (header, KV pairs, tensor infos: a few MB for a 150k-token vocabulary) is
 *   written first with gguf_write_to_file_ptr(only_meta = true); tensor data then follows, each
 *   tensor generated, quantized and written in chunks of about CHUNK_ELEMS values and padded to
 *   the GGUF alignment, matching the offsets gguf assigned (checked as we go). Memory use is
 *   bounded by the tokenizer metadata plus two chunk buffers, whatever the model size. Chunks
 *   are split by rows across a few threads. Output goes to "<out_path>.tmp" and is renamed into
 *   place only when complete.
 */
#define _POSIX_C_SOURCE 200809L

#include "modelgen.h"

#include "../util/durable.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ggml.h"
#include "gguf.h"

#define MODELGEN_DEFAULT_NAME "nightshift-random"

/* Values generated and quantized per chunk (4 MiB of floats). */
#define CHUNK_ELEMS ((int64_t)1 << 20)
#define MAX_THREADS 16

/* Sanity bounds: large enough for any model this tool is meant for, small enough that no size
 * computation below can overflow int64. */
#define MAX_DIM    (1 << 20)
#define MAX_LAYERS 4096

/* llama.h's enum llama_ftype values, for general.file_type (not included to keep this module
 * on the ggml/gguf C API only). */
#define FTYPE_ALL_F32        0
#define FTYPE_MOSTLY_F16     1
#define FTYPE_MOSTLY_Q8_0    7
#define FTYPE_MOSTLY_Q4_K_S 14

static const char CHATML_TEMPLATE[] =
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

enum tensor_init { INIT_ONES, INIT_RANDOM };

struct tensor_spec {
    char name[GGML_MAX_NAME];
    int64_t ne0, ne1;           /* ne1 == 1 for vectors */
    enum ggml_type type;
    enum tensor_init init;
};

/* One thread's share of a chunk: rows [row0, row0 + nrows) of a tensor. */
struct gen_job {
    const struct tensor_spec *t;
    uint64_t tensor_key;
    int64_t row0, nrows;
    float *src;                 /* nrows * ne0 floats */
    void *dst;                  /* nrows * row_size bytes */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- PRNG ---------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t splitmix64_next(uint64_t *state) {
    *state += 0x9E3779B97F4A7C15ULL;
    return mix64(*state);
}

static uint64_t tensor_key(uint64_t seed, size_t index) {
    return mix64(seed ^ mix64((uint64_t)index + 1));
}

/* Fill dst[0..n) with values uniform in [-a, a) for one row. Each 64-bit draw gives two 24-bit
 * uniforms, which convert to float exactly. */
static void fill_row(float *dst, int64_t n, uint64_t key, int64_t row, float a) {
    const float inv = 1.0f / 8388608.0f; /* 2^-23: maps [0, 2^24) to [0, 2) */
    uint64_t state = mix64(key ^ mix64((uint64_t)row * 0xD1B54A32D192ED03ULL + 1));
    int64_t i = 0;
    for (; i + 1 < n; i += 2) {
        const uint64_t x = splitmix64_next(&state);
        dst[i]     = ((float)(uint32_t)(x >> 40) * inv - 1.0f) * a;
        dst[i + 1] = ((float)(uint32_t)((x >> 16) & 0xFFFFFFu) * inv - 1.0f) * a;
    }
    if (i < n) {
        const uint64_t x = splitmix64_next(&state);
        dst[i] = ((float)(uint32_t)(x >> 40) * inv - 1.0f) * a;
    }
}

/* ---- types and parameters ------------------------------------------------------------ */

static enum ggml_type ggml_type_of(enum modelgen_type t) {
    switch (t) {
    case MODELGEN_F32:  return GGML_TYPE_F32;
    case MODELGEN_F16:  return GGML_TYPE_F16;
    case MODELGEN_Q8_0: return GGML_TYPE_Q8_0;
    case MODELGEN_Q4_K: return GGML_TYPE_Q4_K;
    }
    return GGML_TYPE_COUNT;
}

/* The type of a matrix whose rows hold ne0 values when the weights are wt: wt itself, or
 * llama-quantize's fallback when ne0 is not a multiple of wt's block (q4_k -> q5_0);
 * GGML_TYPE_COUNT when neither fits. */
static enum ggml_type modelgen_row_type(enum ggml_type wt, int64_t ne0) {
    if (ne0 % ggml_blck_size(wt) == 0) {
        return wt;
    }
    if (wt == GGML_TYPE_Q4_K && ne0 % ggml_blck_size(GGML_TYPE_Q5_0) == 0) {
        return GGML_TYPE_Q5_0;
    }
    return GGML_TYPE_COUNT;
}

static uint32_t file_type_of(enum modelgen_type t) {
    switch (t) {
    case MODELGEN_F32:  return FTYPE_ALL_F32;
    case MODELGEN_F16:  return FTYPE_MOSTLY_F16;
    case MODELGEN_Q8_0: return FTYPE_MOSTLY_Q8_0;
    case MODELGEN_Q4_K: return FTYPE_MOSTLY_Q4_K_S;
    }
    return FTYPE_ALL_F32;
}

const char *modelgen_type_name(enum modelgen_type t) {
    switch (t) {
    case MODELGEN_F32:  return "f32";
    case MODELGEN_F16:  return "f16";
    case MODELGEN_Q8_0: return "q8_0";
    case MODELGEN_Q4_K: return "q4_k";
    }
    return "?";
}

static bool ieq(const char *a, const char *b) {
    for (; *a != '\0' && *b != '\0'; a++, b++) {
        char ca = *a, cb = *b;
        if (ca >= 'A' && ca <= 'Z') ca = (char)(ca - 'A' + 'a');
        if (cb >= 'A' && cb <= 'Z') cb = (char)(cb - 'A' + 'a');
        if (ca != cb) {
            return false;
        }
    }
    return *a == '\0' && *b == '\0';
}

int modelgen_type_parse(const char *s, enum modelgen_type *out) {
    static const enum modelgen_type all[] = { MODELGEN_F32, MODELGEN_F16, MODELGEN_Q8_0,
                                              MODELGEN_Q4_K };
    if (s == NULL || out == NULL) {
        return -1;
    }
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (ieq(s, modelgen_type_name(all[i]))) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

struct modelgen_params modelgen_default_params(void) {
    struct modelgen_params p;
    memset(&p, 0, sizeof p);
    p.vocab_path = NULL;
    p.out_path = NULL;
    p.name = MODELGEN_DEFAULT_NAME;
    p.chat_template = NULL;
    p.n_layer = 2;
    p.n_embd = 64;
    p.n_ff = 128;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.n_ctx_train = 4096;
    p.type = MODELGEN_Q8_0;
    p.seed = 42;
    return p;
}

static int check_range(const char *what, int v, int max, char *err, size_t errlen) {
    if (v < 1 || v > max) {
        set_err(err, errlen, "%s must be between 1 and %d, got %d", what, max, v);
        return -1;
    }
    return 0;
}

static int validate(const struct modelgen_params *p, char *err, size_t errlen) {
    enum ggml_type wt;
    int64_t blck;

    if (p->vocab_path == NULL || p->vocab_path[0] == '\0') {
        set_err(err, errlen, "vocab_path is required");
        return -1;
    }
    if (p->out_path == NULL || p->out_path[0] == '\0') {
        set_err(err, errlen, "out_path is required");
        return -1;
    }
    wt = ggml_type_of(p->type);
    if (wt == GGML_TYPE_COUNT) {
        set_err(err, errlen, "invalid weight type %d", (int)p->type);
        return -1;
    }
    if (check_range("n_layer", p->n_layer, MAX_LAYERS, err, errlen) != 0 ||
        check_range("n_embd", p->n_embd, MAX_DIM, err, errlen) != 0 ||
        check_range("n_ff", p->n_ff, MAX_DIM, err, errlen) != 0 ||
        check_range("n_head", p->n_head, MAX_DIM, err, errlen) != 0 ||
        check_range("n_head_kv", p->n_head_kv, MAX_DIM, err, errlen) != 0 ||
        check_range("n_ctx_train", p->n_ctx_train, 1 << 26, err, errlen) != 0) {
        return -1;
    }
    if (p->n_embd % p->n_head != 0) {
        set_err(err, errlen, "n_embd (%d) must be a multiple of n_head (%d)", p->n_embd, p->n_head);
        return -1;
    }
    if ((p->n_embd / p->n_head) % 2 != 0) {
        set_err(err, errlen, "head dimension n_embd/n_head (%d) must be even for rope",
                p->n_embd / p->n_head);
        return -1;
    }
    if (p->n_head_kv > p->n_head || p->n_head % p->n_head_kv != 0) {
        set_err(err, errlen, "n_head (%d) must be a multiple of n_head_kv (%d)", p->n_head,
                p->n_head_kv);
        return -1;
    }
    /* Rows of every matrix have length n_embd (token_embd, attn_q/k/v, attn_output, ffn_gate,
     * ffn_up) or n_ff (ffn_down). q4_k rows that are not a multiple of 256 fall back to q5_0
     * (blocks of 32), so the smallest block that fits is named. */
    blck = ggml_blck_size(wt);
    if (wt == GGML_TYPE_Q4_K) {
        blck = ggml_blck_size(GGML_TYPE_Q5_0);
    }
    if (modelgen_row_type(wt, p->n_embd) == GGML_TYPE_COUNT) {
        set_err(err, errlen, "n_embd (%d) must be a multiple of %lld for %s weights", p->n_embd,
                (long long)blck, modelgen_type_name(p->type));
        return -1;
    }
    if (modelgen_row_type(wt, p->n_ff) == GGML_TYPE_COUNT) {
        set_err(err, errlen, "n_ff (%d) must be a multiple of %lld for %s weights", p->n_ff,
                (long long)blck, modelgen_type_name(p->type));
        return -1;
    }
    return 0;
}

/* ---- vocab --------------------------------------------------------------------------- */

static bool has_prefix(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Open and check the vocab file; *n_vocab = number of tokens. */
static int load_vocab(const char *path, struct gguf_context **out, int64_t *n_vocab, char *err,
                      size_t errlen) {
    struct gguf_init_params ip = { .no_alloc = true, .ctx = NULL };
    struct gguf_context *v = NULL;
    FILE *f = NULL;
    int64_t id;
    size_t n;
    int rc = -1;

    f = fopen(path, "rb");
    if (f == NULL) {
        set_err(err, errlen, "cannot open vocab file '%s': %s", path, strerror(errno));
        goto out;
    }
    v = gguf_init_from_file_ptr(f, ip);
    if (v == NULL) {
        set_err(err, errlen, "cannot read vocab file '%s': not a valid gguf file", path);
        goto out;
    }
    id = gguf_find_key(v, "tokenizer.ggml.model");
    if (id < 0 || gguf_get_kv_type(v, id) != GGUF_TYPE_STRING) {
        set_err(err, errlen, "vocab file '%s' has no tokenizer.ggml.model string", path);
        goto out;
    }
    id = gguf_find_key(v, "tokenizer.ggml.tokens");
    if (id < 0 || gguf_get_kv_type(v, id) != GGUF_TYPE_ARRAY ||
        gguf_get_arr_type(v, id) != GGUF_TYPE_STRING) {
        set_err(err, errlen, "vocab file '%s' has no tokenizer.ggml.tokens string array", path);
        goto out;
    }
    n = gguf_get_arr_n(v, id);
    if (n == 0 || n > (size_t)INT32_MAX) {
        set_err(err, errlen, "vocab file '%s' has an unusable token count %zu", path, n);
        goto out;
    }
    *n_vocab = (int64_t)n;
    *out = v;
    v = NULL;
    rc = 0;
out:
    if (v != NULL) {
        gguf_free(v);
    }
    if (f != NULL) {
        fclose(f);
    }
    return rc;
}

/* Append every tokenizer.* KV of vocab to ctx (in the vocab's order), then apply the
 * chat-template policy. */
static void copy_tokenizer(struct gguf_context *ctx, const struct gguf_context *vocab,
                           const char *chat_template) {
    struct gguf_context *tok = gguf_init_empty();
    const int64_t n_kv = gguf_get_n_kv(vocab);

    /* gguf has no single-key copy: copy everything into a scratch context, drop what is not
     * tokenizer.*, then copy the rest. */
    gguf_set_kv(tok, vocab);
    for (int64_t i = 0; i < n_kv; i++) {
        const char *key = gguf_get_key(vocab, i);
        if (!has_prefix(key, "tokenizer.")) {
            gguf_remove_key(tok, key);
        }
    }
    if (chat_template != NULL && chat_template[0] == '\0') {
        /* no template at all: drop the default one and any named ones */
        for (int64_t i = 0; i < n_kv; i++) {
            const char *key = gguf_get_key(vocab, i);
            if (has_prefix(key, "tokenizer.chat_template")) {
                gguf_remove_key(tok, key);
            }
        }
    } else if (chat_template != NULL) {
        gguf_set_val_str(tok, "tokenizer.chat_template", chat_template);
    } else if (gguf_find_key(tok, "tokenizer.chat_template") < 0) {
        gguf_set_val_str(tok, "tokenizer.chat_template", CHATML_TEMPLATE);
    }
    gguf_set_kv(ctx, tok);
    gguf_free(tok);
}

/* ---- tensor list --------------------------------------------------------------------- */

static void spec_set(struct tensor_spec *t, const char *name, int64_t ne0, int64_t ne1,
                     enum ggml_type type, enum tensor_init init) {
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ne0 = ne0;
    t->ne1 = ne1;
    t->type = type;
    t->init = init;
}

/* Fills specs (capacity 2 + 9 * n_layer); returns the count. */
static size_t build_specs(struct tensor_spec *specs, const struct modelgen_params *p,
                          int64_t n_vocab) {
    const enum ggml_type wt = ggml_type_of(p->type);
    const int64_t n_embd = p->n_embd;
    const int64_t n_embd_kv = (int64_t)(p->n_embd / p->n_head) * p->n_head_kv;
    const int64_t n_ff = p->n_ff;
    char name[GGML_MAX_NAME];
    size_t n = 0;

    spec_set(&specs[n++], "token_embd.weight", n_embd, n_vocab, modelgen_row_type(wt, n_embd),
             INIT_RANDOM);
    for (int il = 0; il < p->n_layer; il++) {
        static const struct {
            const char *suffix;
            int in, out;        /* 0: n_embd, 1: n_embd_kv, 2: n_ff; out < 0: vector */
        } layer[] = {
            { "attn_norm",   0, -1 },
            { "attn_q",      0,  0 },
            { "attn_k",      0,  1 },
            { "attn_v",      0,  1 },
            { "attn_output", 0,  0 },
            { "ffn_norm",    0, -1 },
            { "ffn_gate",    0,  2 },
            { "ffn_up",      0,  2 },
            { "ffn_down",    2,  0 },
        };
        for (size_t j = 0; j < sizeof layer / sizeof layer[0]; j++) {
            const int64_t dims[3] = { n_embd, n_embd_kv, n_ff };
            snprintf(name, sizeof name, "blk.%d.%s.weight", il, layer[j].suffix);
            if (layer[j].out < 0) {
                spec_set(&specs[n++], name, dims[layer[j].in], 1, GGML_TYPE_F32, INIT_ONES);
            } else {
                spec_set(&specs[n++], name, dims[layer[j].in], dims[layer[j].out],
                         modelgen_row_type(wt, dims[layer[j].in]), INIT_RANDOM);
            }
        }
    }
    spec_set(&specs[n++], "output_norm.weight", n_embd, 1, GGML_TYPE_F32, INIT_ONES);
    return n;
}

/* ---- data ---------------------------------------------------------------------------- */

static void *gen_worker(void *arg) {
    struct gen_job *j = arg;
    const int64_t ne0 = j->t->ne0;
    const float a = sqrtf(3.0f / (float)ne0);

    for (int64_t r = 0; r < j->nrows; r++) {
        fill_row(j->src + r * ne0, ne0, j->tensor_key, j->row0 + r, a);
    }
    ggml_quantize_chunk(j->t->type, j->src, j->dst, 0, j->nrows, ne0, NULL);
    return NULL;
}

static int write_bytes(FILE *f, const void *data, size_t n, const char *path, char *err,
                       size_t errlen) {
    if (n > 0 && fwrite(data, 1, n, f) != n) {
        set_err(err, errlen, "write error on '%s': %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Generate, quantize and write one tensor's data. fbuf/obuf hold cap floats/cap*4 bytes. */
static int write_tensor(FILE *f, const struct tensor_spec *t, uint64_t key, float *fbuf,
                        void *obuf, int64_t cap, int nthreads, const char *path, char *err,
                        size_t errlen) {
    const size_t row_size = ggml_row_size(t->type, t->ne0);
    int64_t rows_per_chunk = cap / t->ne0;

    if (t->init == INIT_ONES) {
        /* vectors: F32 ones (ne0 <= cap) */
        for (int64_t i = 0; i < t->ne0 * t->ne1; i++) {
            fbuf[i] = 1.0f;
        }
        return write_bytes(f, fbuf, (size_t)(t->ne0 * t->ne1) * sizeof(float), path, err, errlen);
    }
    if (rows_per_chunk < 1) {
        rows_per_chunk = 1;
    }
    for (int64_t row0 = 0; row0 < t->ne1; row0 += rows_per_chunk) {
        const int64_t nrows = t->ne1 - row0 < rows_per_chunk ? t->ne1 - row0 : rows_per_chunk;
        struct gen_job jobs[MAX_THREADS];
        pthread_t tids[MAX_THREADS];
        bool started[MAX_THREADS];
        int nj = nthreads;
        int64_t per, r = 0;

        if (nj > nrows) {
            nj = (int)nrows;
        }
        per = (nrows + nj - 1) / nj;
        for (int k = 0; k < nj; k++) {
            const int64_t cnt = nrows - r < per ? nrows - r : per;
            jobs[k].t = t;
            jobs[k].tensor_key = key;
            jobs[k].row0 = row0 + r;
            jobs[k].nrows = cnt;
            jobs[k].src = fbuf + r * t->ne0;
            jobs[k].dst = (char *)obuf + (size_t)r * row_size;
            r += cnt;
        }
        /* job 0 runs on this thread; a thread that cannot be started runs inline too */
        for (int k = 1; k < nj; k++) {
            started[k] = pthread_create(&tids[k], NULL, gen_worker, &jobs[k]) == 0;
        }
        gen_worker(&jobs[0]);
        for (int k = 1; k < nj; k++) {
            if (started[k]) {
                pthread_join(tids[k], NULL);
            } else {
                gen_worker(&jobs[k]);
            }
        }
        if (write_bytes(f, obuf, (size_t)nrows * row_size, path, err, errlen) != 0) {
            return -1;
        }
    }
    return 0;
}

static int pick_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) {
        return 1;
    }
    return n > MAX_THREADS ? MAX_THREADS : (int)n;
}

/* ---- main entry ---------------------------------------------------------------------- */

int modelgen_write(const struct modelgen_params *p, char *err, size_t errlen) {
    static const uint8_t zeros[64] = { 0 };
    struct gguf_context *vocab = NULL;
    struct gguf_context *gctx = NULL;
    struct ggml_context *tctx = NULL;
    struct tensor_spec *specs = NULL;
    float *fbuf = NULL;
    void *obuf = NULL;
    FILE *f = NULL;
    const char *tmp_path = NULL;
    struct durable out;
    durable_init(&out);
    const char *name;
    char desc[160];
    int64_t n_vocab = 0, cap, max_ne0 = 0;
    size_t n_specs, alignment;
    uint64_t data_pos = 0;
    int head_dim, nthreads;
    int rc = -1;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (p == NULL) {
        set_err(err, errlen, "params are required");
        goto out;
    }
    if (validate(p, err, errlen) != 0) {
        goto out;
    }
    if (load_vocab(p->vocab_path, &vocab, &n_vocab, err, errlen) != 0) {
        goto out;
    }
    head_dim = p->n_embd / p->n_head;
    name = p->name != NULL && p->name[0] != '\0' ? p->name : MODELGEN_DEFAULT_NAME;

    /* metadata: ours first, then the tokenizer */
    gctx = gguf_init_empty();
    gguf_set_val_str(gctx, "general.architecture", "llama");
    gguf_set_val_str(gctx, "general.name", name);
    snprintf(desc, sizeof desc,
             "random-weight test model (not trained) written by nightshift modelgen, seed %llu",
             (unsigned long long)p->seed);
    gguf_set_val_str(gctx, "general.description", desc);
    gguf_set_val_u32(gctx, "general.file_type", file_type_of(p->type));
    gguf_set_val_u32(gctx, "general.quantization_version", GGML_QNT_VERSION);
    gguf_set_val_u32(gctx, "llama.context_length", (uint32_t)p->n_ctx_train);
    gguf_set_val_u32(gctx, "llama.embedding_length", (uint32_t)p->n_embd);
    gguf_set_val_u32(gctx, "llama.block_count", (uint32_t)p->n_layer);
    gguf_set_val_u32(gctx, "llama.feed_forward_length", (uint32_t)p->n_ff);
    gguf_set_val_u32(gctx, "llama.attention.head_count", (uint32_t)p->n_head);
    gguf_set_val_u32(gctx, "llama.attention.head_count_kv", (uint32_t)p->n_head_kv);
    gguf_set_val_f32(gctx, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_set_val_u32(gctx, "llama.rope.dimension_count", (uint32_t)head_dim);
    gguf_set_val_f32(gctx, "llama.rope.freq_base", 10000.0f);
    gguf_set_val_u32(gctx, "llama.vocab_size", (uint32_t)n_vocab);
    copy_tokenizer(gctx, vocab, p->chat_template);
    gguf_free(vocab);
    vocab = NULL;

    /* tensor infos (descriptors only: no_alloc) */
    specs = calloc(2 + 9 * (size_t)p->n_layer, sizeof *specs);
    if (specs == NULL) {
        set_err(err, errlen, "out of memory");
        goto out;
    }
    n_specs = build_specs(specs, p, n_vocab);
    {
        struct ggml_init_params ip = {
            .mem_size = (n_specs + 1) * ggml_tensor_overhead(),
            .mem_buffer = NULL,
            .no_alloc = true,
        };
        tctx = ggml_init(ip);
        if (tctx == NULL) {
            set_err(err, errlen, "cannot create ggml context");
            goto out;
        }
    }
    for (size_t i = 0; i < n_specs; i++) {
        struct ggml_tensor *t = specs[i].ne1 == 1 && specs[i].init == INIT_ONES
            ? ggml_new_tensor_1d(tctx, specs[i].type, specs[i].ne0)
            : ggml_new_tensor_2d(tctx, specs[i].type, specs[i].ne0, specs[i].ne1);
        ggml_set_name(t, specs[i].name);
        gguf_add_tensor(gctx, t);
        if (specs[i].ne0 > max_ne0) {
            max_ne0 = specs[i].ne0;
        }
    }
    alignment = gguf_get_alignment(gctx);
    if (alignment == 0 || alignment > sizeof zeros) {
        set_err(err, errlen, "unsupported gguf alignment %zu", alignment);
        goto out;
    }

    /* chunk buffers: a chunk is whole rows, at least one */
    cap = max_ne0 > CHUNK_ELEMS ? max_ne0 : CHUNK_ELEMS;
    fbuf = malloc((size_t)cap * sizeof(float));
    obuf = malloc((size_t)cap * sizeof(float)); /* no type is larger than f32 per element */
    if (fbuf == NULL || obuf == NULL) {
        set_err(err, errlen, "out of memory");
        goto out;
    }

    /* complete or absent, and durable (util/durable.h) */
    if (durable_open_mode(&out, p->out_path, DURABLE_MODE_UMASK) || (f = durable_stream(&out)) == NULL) {
        set_err(err, errlen, "cannot create a file beside '%s': %s", p->out_path, strerror(errno));
        goto out;
    }
    tmp_path = out.tmp;
    if (!gguf_write_to_file_ptr(gctx, f, /*only_meta=*/true)) {
        set_err(err, errlen, "cannot write gguf metadata to '%s'", tmp_path);
        goto out;
    }

    ggml_quantize_init(ggml_type_of(p->type));
    nthreads = pick_threads();
    for (size_t i = 0; i < n_specs; i++) {
        const uint64_t off = (uint64_t)gguf_get_tensor_offset(gctx, (int64_t)i);
        const uint64_t size = (uint64_t)gguf_get_tensor_size(gctx, (int64_t)i);

        /* pad the previous tensor up to this one's offset (always < alignment bytes) */
        if (off < data_pos || off - data_pos >= alignment) {
            set_err(err, errlen, "internal error: tensor '%s' offset %llu, expected near %llu",
                    specs[i].name, (unsigned long long)off, (unsigned long long)data_pos);
            goto out;
        }
        if (write_bytes(f, zeros, (size_t)(off - data_pos), tmp_path, err, errlen) != 0) {
            goto out;
        }
        if (write_tensor(f, &specs[i], tensor_key(p->seed, i), fbuf, obuf, cap, nthreads,
                         tmp_path, err, errlen) != 0) {
            goto out;
        }
        data_pos = off + size;
    }
    /* trailing padding, as gguf_write_to_file would write it */
    if (write_bytes(f, zeros, (size_t)((alignment - data_pos % alignment) % alignment), tmp_path,
                    err, errlen) != 0) {
        goto out;
    }
    if (ferror(f)) {
        set_err(err, errlen, "write error on '%s': %s", tmp_path, strerror(errno));
        goto out;
    }
    f = NULL; /* the durable's: closed by commit or rollback */
    if (durable_commit(&out) != 0) {
        set_err(err, errlen, "cannot write '%s': %s", p->out_path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    durable_rollback(&out);
    free(obuf);
    free(fbuf);
    free(specs);
    if (tctx != NULL) {
        ggml_free(tctx);
    }
    if (gctx != NULL) {
        gguf_free(gctx);
    }
    if (vocab != NULL) {
        gguf_free(vocab);
    }
    return rc;
}

/* ---- LoRA adapters ------------------------------------------------------------------- */

struct modelgen_lora_params modelgen_lora_default_params(void) {
    struct modelgen_lora_params p = {
        .base_path = NULL, .out_path = NULL, .rank = 8, .alpha = 0, .strength = 2.0f, .seed = 7,
    };
    return p;
}

static bool lora_target(const char *name) {
    static const char *const suffixes[] = { ".attn_q.weight", ".attn_v.weight", ".attn_output.weight",
                                            ".ffn_up.weight", ".ffn_down.weight" };
    const size_t n = strlen(name);
    if (!has_prefix(name, "blk.") || n + strlen(".lora_a") >= GGML_MAX_NAME) {
        return false;
    }
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        const size_t k = strlen(suffixes[i]);
        if (n > k && strcmp(name + n - k, suffixes[i]) == 0) {
            return true;
        }
    }
    return false;
}

int modelgen_lora_write(const struct modelgen_lora_params *p, char *err, size_t errlen) {
    struct ggml_context *meta = NULL, *data = NULL;
    struct gguf_context *base = NULL, *gctx = NULL;
    struct durable out;
    durable_init(&out);
    FILE *f = NULL;
    char arch[64];
    int rc = -1, n_target = 0;
    size_t bytes = 0;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (p == NULL || p->base_path == NULL || p->out_path == NULL) {
        set_err(err, errlen, "a base model and an output path are required");
        goto out;
    }
    if (p->rank < 1 || p->rank > 1024 || !(p->alpha >= 0) || !(p->strength > 0 && p->strength < 1000)) {
        set_err(err, errlen, "rank must be 1..1024, alpha >= 0 and strength in (0, 1000)");
        goto out;
    }
    {
        struct gguf_init_params ip = { .no_alloc = true, .ctx = &meta };
        base = gguf_init_from_file(p->base_path, ip);
    }
    if (base == NULL) {
        set_err(err, errlen, "cannot read '%s' as a GGUF model", p->base_path);
        goto out;
    }
    {
        const int64_t id = gguf_find_key(base, "general.architecture");
        if (id < 0 || gguf_get_kv_type(base, id) != GGUF_TYPE_STRING) {
            set_err(err, errlen, "'%s' has no general.architecture", p->base_path);
            goto out;
        }
        snprintf(arch, sizeof arch, "%s", gguf_get_val_str(base, id));
    }
    for (struct ggml_tensor *t = ggml_get_first_tensor(meta); t != NULL; t = ggml_get_next_tensor(meta, t)) {
        if (lora_target(t->name) && ggml_n_dims(t) == 2) {
            n_target++;
            bytes += (size_t)(t->ne[0] + t->ne[1]) * (size_t)p->rank * sizeof(float);
        }
    }
    if (n_target == 0) {
        set_err(err, errlen, "'%s' has no attn_q/attn_v/attn_output/ffn_up/ffn_down matrices to adapt", p->base_path);
        goto out;
    }
    {
        struct ggml_init_params ip = {
            .mem_size = bytes + (size_t)(2 * n_target + 1) * (ggml_tensor_overhead() + 64),
            .mem_buffer = NULL,
            .no_alloc = false,
        };
        if ((data = ggml_init(ip)) == NULL) {
            set_err(err, errlen, "out of memory");
            goto out;
        }
    }
    gctx = gguf_init_empty();
    gguf_set_val_str(gctx, "general.architecture", arch);
    gguf_set_val_str(gctx, "general.type", "adapter");
    gguf_set_val_str(gctx, "general.name", "nightshift-random-lora");
    gguf_set_val_str(gctx, "adapter.type", "lora");
    gguf_set_val_f32(gctx, "adapter.lora.alpha", p->alpha > 0 ? p->alpha : (float)p->rank);
    {
        size_t index = 0;
        for (struct ggml_tensor *t = ggml_get_first_tensor(meta); t != NULL; t = ggml_get_next_tensor(meta, t)) {
            if (!lora_target(t->name) || ggml_n_dims(t) != 2) {
                continue;
            }
            const int64_t n_in = t->ne[0], n_out = t->ne[1], r = p->rank;
            struct ggml_tensor *a = ggml_new_tensor_2d(data, GGML_TYPE_F32, n_in, r);
            struct ggml_tensor *b = ggml_new_tensor_2d(data, GGML_TYPE_F32, r, n_out);
            char name[GGML_MAX_NAME + 8]; /* lora_target: it fits GGML_MAX_NAME */
            snprintf(name, sizeof name, "%s.lora_a", t->name);
            ggml_set_name(a, name);
            snprintf(name, sizeof name, "%s.lora_b", t->name);
            ggml_set_name(b, name);
            /* uniform in [-x, x) has standard deviation x / sqrt(3) */
            const float xa = sqrtf(3.0f / (float)n_in), xb = p->strength * sqrtf(3.0f / (float)r);
            for (int64_t row = 0; row < r; row++) {
                fill_row((float *)a->data + row * n_in, n_in, tensor_key(p->seed, 2 * index), row, xa);
            }
            for (int64_t row = 0; row < n_out; row++) {
                fill_row((float *)b->data + row * r, r, tensor_key(p->seed, 2 * index + 1), row, xb);
            }
            gguf_add_tensor(gctx, a);
            gguf_add_tensor(gctx, b);
            index++;
        }
    }
    if (durable_open_mode(&out, p->out_path, DURABLE_MODE_UMASK) || (f = durable_stream(&out)) == NULL) {
        set_err(err, errlen, "cannot create a file beside '%s': %s", p->out_path, strerror(errno));
        goto out;
    }
    if (!gguf_write_to_file_ptr(gctx, f, /*only_meta=*/false) || ferror(f)) {
        set_err(err, errlen, "cannot write '%s'", out.tmp);
        goto out;
    }
    f = NULL; /* the durable's: closed by commit or rollback */
    if (durable_commit(&out) != 0) {
        set_err(err, errlen, "cannot write '%s': %s", p->out_path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    durable_rollback(&out);
    if (gctx != NULL) {
        gguf_free(gctx);
    }
    if (base != NULL) {
        gguf_free(base);
    }
    if (data != NULL) {
        ggml_free(data);
    }
    if (meta != NULL) {
        ggml_free(meta);
    }
    return rc;
}
