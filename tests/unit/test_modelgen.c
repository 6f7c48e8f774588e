/*
 * test_modelgen.c — unit tests for src/engine/modelgen.c.
 *
 * Generates tiny random-weight models from the vocab-only GGUF files shipped in llama.cpp's
 * source tree, loads them with libllama and decodes a prompt. The vocab directory comes from
 * NIGHTSHIFT_VOCAB_DIR, else $NIGHTSHIFT_LLAMA_PREFIX/src/models, else the compile-time
 * NIGHTSHIFT_DEFAULT_VOCAB_DIR; tests that need a vocab file are skipped when none is found.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "llama.h"

#include "../../src/engine/modelgen.h"

#define PROMPT_TOKENS 16

struct fixture {
    char dir[512];
};

static struct fixture g_fx;

/* ---- helpers ------------------------------------------------------------------------- */

static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

/* Path of vocab file `name` (e.g. "ggml-vocab-qwen2.gguf"); false if not found. */
static bool vocab_path(const char *name, char *buf, size_t len) {
    const char *dir = getenv("NIGHTSHIFT_VOCAB_DIR");
    const char *prefix = getenv("NIGHTSHIFT_LLAMA_PREFIX");
    struct stat st;

    if (dir != NULL && dir[0] != '\0') {
        snprintf(buf, len, "%s/%s", dir, name);
    } else if (prefix != NULL && prefix[0] != '\0') {
        snprintf(buf, len, "%s/src/models/%s", prefix, name);
    } else {
#ifdef NIGHTSHIFT_DEFAULT_VOCAB_DIR
        snprintf(buf, len, "%s/%s", NIGHTSHIFT_DEFAULT_VOCAB_DIR, name);
#else
        return false;
#endif
    }
    return stat(buf, &st) == 0;
}

#define REQUIRE_VOCAB(name, buf)                                                               \
    do {                                                                                       \
        if (!vocab_path((name), (buf), sizeof(buf))) {                                         \
            print_message("vocab %s not found (set NIGHTSHIFT_VOCAB_DIR); skipping\n", (name)); \
            skip();                                                                            \
        }                                                                                      \
    } while (0)

static void out_path(const char *file, char *buf, size_t len) {
    snprintf(buf, len, "%s/%s", g_fx.dir, file);
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* a temporary file of out's (out.tmp-XXXXXX, util/durable.h) left beside it */
static bool temp_left(const char *out) {
    char dir[1024], prefix[1024];
    const char *slash = strrchr(out, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - out) : 1, slash ? out : ".");
    snprintf(prefix, sizeof prefix, "%s.tmp", slash ? slash + 1 : out);
    DIR *d = opendir(dir);
    bool found = false;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        found |= strncmp(de->d_name, prefix, strlen(prefix)) == 0;
    if (d)
        closedir(d);
    return found;
}

/* Whole file into a malloc'd buffer. */
static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void generate(const struct modelgen_params *p) {
    char err[512] = "";
    int rc = modelgen_write(p, err, sizeof err);
    if (rc != 0) {
        print_error("modelgen_write: %s\n", err);
    }
    assert_int_equal(rc, 0);
    assert_string_equal(err, "");
}

static struct llama_model *load(const char *path, bool vocab_only) {
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *m;
    mp.n_gpu_layers = 0;
    mp.vocab_only = vocab_only;
    m = llama_model_load_from_file(path, mp);
    assert_non_null(m);
    return m;
}

static void assert_logits_sane(const float *logits, int n_vocab) {
    float lo = INFINITY, hi = -INFINITY;
    assert_non_null(logits);
    for (int i = 0; i < n_vocab; i++) {
        assert_true(isfinite(logits[i]));
        if (logits[i] < lo) lo = logits[i];
        if (logits[i] > hi) hi = logits[i];
    }
    /* random weights: logits are O(1) and not all equal */
    assert_true(hi - lo > 1e-3f);
    assert_true(hi < 1e4f && lo > -1e4f);
}

/* Load the model, decode a 16-token prompt, check the logits, then decode one more token. */
static void load_and_decode(const char *path, const struct modelgen_params *p, int n_vocab_want) {
    static const char text[] =
        "The quick brown fox jumps over the lazy dog. Once upon a time, in a land far away, "
        "there lived a king who loved numbers: 1, 2, 3, 42 and 1000.";
    struct llama_model *model = load(path, false);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    struct llama_context_params cp = llama_context_default_params();
    struct llama_context *ctx;
    llama_token toks[256];
    llama_token next;
    int n_vocab, n, best = 0;
    const float *logits;

    n_vocab = llama_vocab_n_tokens(vocab);
    if (n_vocab_want > 0) {
        assert_int_equal(n_vocab, n_vocab_want);
    }
    assert_int_equal(llama_model_n_embd(model), p->n_embd);
    assert_int_equal(llama_model_n_layer(model), p->n_layer);

    n = llama_tokenize(vocab, text, (int32_t)strlen(text), toks, 256, true, false);
    assert_true(n >= PROMPT_TOKENS);

    cp.n_ctx = 128;
    cp.n_batch = 32;
    cp.n_ubatch = 32;
    cp.n_threads = 2;
    cp.n_threads_batch = 2;
    ctx = llama_init_from_model(model, cp);
    assert_non_null(ctx);

    assert_int_equal(llama_decode(ctx, llama_batch_get_one(toks, PROMPT_TOKENS)), 0);
    logits = llama_get_logits_ith(ctx, -1);
    assert_logits_sane(logits, n_vocab);
    for (int i = 1; i < n_vocab; i++) {
        if (logits[i] > logits[best]) best = i;
    }
    next = (llama_token)best;
    assert_int_equal(llama_decode(ctx, llama_batch_get_one(&next, 1)), 0);
    assert_logits_sane(llama_get_logits_ith(ctx, -1), n_vocab);

    llama_free(ctx);
    llama_model_free(model);
}

/* Value of a string KV in a gguf file (malloc'd) or NULL if absent. */
static char *gguf_str(const char *path, const char *key) {
    struct gguf_init_params ip = { .no_alloc = true, .ctx = NULL };
    struct gguf_context *g = gguf_init_from_file(path, ip);
    char *val = NULL;
    int64_t id;

    assert_non_null(g);
    id = gguf_find_key(g, key);
    if (id >= 0) {
        const char *s;
        assert_int_equal(gguf_get_kv_type(g, id), GGUF_TYPE_STRING);
        s = gguf_get_val_str(g, id);
        val = malloc(strlen(s) + 1);
        assert_non_null(val);
        memcpy(val, s, strlen(s) + 1);
    }
    gguf_free(g);
    return val;
}

/* ---- fixture ------------------------------------------------------------------------- */

static int group_setup(void **state) {
    const char *tmp = getenv("TMPDIR");
    (void)state;
    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    snprintf(g_fx.dir, sizeof g_fx.dir, "%s/nightshift-modelgen-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    return mkdtemp(g_fx.dir) == NULL ? -1 : 0;
}

static int group_teardown(void **state) {
    DIR *d = opendir(g_fx.dir);
    (void)state;
    if (d != NULL) {
        struct dirent *e;
        char path[1024];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
                continue;
            }
            snprintf(path, sizeof path, "%s/%s", g_fx.dir, e->d_name);
            remove(path);
        }
        closedir(d);
    }
    rmdir(g_fx.dir);
    llama_backend_free();
    return 0;
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_type_parse(void **state) {
    enum modelgen_type t = MODELGEN_F32;
    (void)state;
    assert_int_equal(modelgen_type_parse("f16", &t), 0);
    assert_int_equal(t, MODELGEN_F16);
    assert_int_equal(modelgen_type_parse("Q8_0", &t), 0);
    assert_int_equal(t, MODELGEN_Q8_0);
    assert_int_equal(modelgen_type_parse("q4_k", &t), 0);
    assert_int_equal(t, MODELGEN_Q4_K);
    assert_int_equal(modelgen_type_parse("f32", &t), 0);
    assert_int_equal(t, MODELGEN_F32);
    assert_int_not_equal(modelgen_type_parse("q4_0", &t), 0);
    assert_int_not_equal(modelgen_type_parse("", &t), 0);
    assert_int_not_equal(modelgen_type_parse("f32x", &t), 0);
    assert_int_not_equal(modelgen_type_parse(NULL, &t), 0);
    assert_int_equal(t, MODELGEN_F32); /* untouched on failure */
    assert_string_equal(modelgen_type_name(MODELGEN_Q4_K), "q4_k");
}

static void test_default_params(void **state) {
    struct modelgen_params p = modelgen_default_params();
    (void)state;
    assert_null(p.vocab_path);
    assert_null(p.out_path);
    assert_null(p.chat_template);
    assert_string_equal(p.name, "nightshift-random");
    assert_int_equal(p.n_layer, 2);
    assert_int_equal(p.n_embd, 64);
    assert_int_equal(p.n_ff, 128);
    assert_int_equal(p.n_head, 4);
    assert_int_equal(p.n_head_kv, 2);
    assert_int_equal(p.n_ctx_train, 4096);
    assert_int_equal(p.type, MODELGEN_Q8_0);
}

static void test_spm_decodes(void **state) {
    char vocab[1024], out[1024];
    struct modelgen_params p = modelgen_default_params();
    (void)state;
    REQUIRE_VOCAB("ggml-vocab-llama-spm.gguf", vocab);
    out_path("spm-q8_0.gguf", out, sizeof out);
    p.vocab_path = vocab;
    p.out_path = out;
    generate(&p);
    assert_true(file_exists(out));
    assert_false(temp_left(out));
    load_and_decode(out, &p, 32000);
    remove(out);
}

static void test_qwen2_decodes(void **state) {
    char vocab[1024], out[1024], *arch;
    struct modelgen_params p = modelgen_default_params();
    struct gguf_init_params ip = { .no_alloc = true, .ctx = NULL };
    struct gguf_context *g;
    (void)state;
    REQUIRE_VOCAB("ggml-vocab-qwen2.gguf", vocab);
    out_path("qwen2-q8_0.gguf", out, sizeof out);
    p.vocab_path = vocab;
    p.out_path = out;
    p.name = "tiny-qwen2-vocab";
    generate(&p);
    load_and_decode(out, &p, 151936);

    /* only our architecture's keys remain; the vocab's own qwen2.* / general.* are gone */
    arch = gguf_str(out, "general.architecture");
    assert_string_equal(arch, "llama");
    free(arch);
    arch = gguf_str(out, "general.name");
    assert_string_equal(arch, "tiny-qwen2-vocab");
    free(arch);
    g = gguf_init_from_file(out, ip);
    assert_non_null(g);
    for (int64_t i = 0; i < gguf_get_n_kv(g); i++) {
        const char *k = gguf_get_key(g, i);
        assert_true(strncmp(k, "general.", 8) == 0 || strncmp(k, "llama.", 6) == 0 ||
                    strncmp(k, "tokenizer.", 10) == 0);
    }
    assert_true(gguf_find_key(g, "tokenizer.ggml.merges") >= 0);
    assert_int_equal(gguf_find_tensor(g, "output.weight"), -1); /* tied to token_embd */
    assert_int_equal(gguf_get_n_tensors(g), 2 + 9 * p.n_layer);
    gguf_free(g);
    remove(out);
}

static void test_other_types_decode(void **state) {
    static const enum modelgen_type types[] = { MODELGEN_F32, MODELGEN_F16, MODELGEN_Q4_K };
    char vocab[1024], out[1024];
    (void)state;
    REQUIRE_VOCAB("ggml-vocab-llama-spm.gguf", vocab);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        struct modelgen_params p = modelgen_default_params();
        char file[64];
        snprintf(file, sizeof file, "spm-%s.gguf", modelgen_type_name(types[i]));
        out_path(file, out, sizeof out);
        p.vocab_path = vocab;
        p.out_path = out;
        p.type = types[i];
        p.n_embd = 256; /* q4_k needs rows that are a multiple of 256 */
        p.n_ff = 512;
        p.n_head = 4;
        p.n_head_kv = 1;
        p.n_layer = 3;
        generate(&p);
        load_and_decode(out, &p, 32000);
        remove(out);
    }
}

static enum ggml_type tensor_type(const struct gguf_context *g, const char *name) {
    const int64_t id = gguf_find_tensor(g, name);
    assert_true(id >= 0);
    return gguf_get_tensor_type(g, id);
}

/* q4_k with rows of 128 values (as n_embd 896 in the 0.5b shape): those matrices are q5_0,
 * llama-quantize's fallback; rows of n_ff = 512 stay q4_k; llama.cpp loads and decodes it. */
static void test_q4_k_fallback_q5_0(void **state) {
    struct gguf_init_params ip = { .no_alloc = true, .ctx = NULL };
    struct modelgen_params p = modelgen_default_params();
    struct gguf_context *g;
    char vocab[1024], out[1024];
    (void)state;
    REQUIRE_VOCAB("ggml-vocab-llama-spm.gguf", vocab);
    out_path("spm-q4_k-fallback.gguf", out, sizeof out);
    p.vocab_path = vocab;
    p.out_path = out;
    p.type = MODELGEN_Q4_K;
    p.n_embd = 128;
    p.n_ff = 512;
    p.n_head = 4;
    p.n_head_kv = 1;
    p.n_layer = 2;
    generate(&p);
    g = gguf_init_from_file(out, ip);
    assert_non_null(g);
    assert_int_equal(tensor_type(g, "token_embd.weight"), GGML_TYPE_Q5_0);
    assert_int_equal(tensor_type(g, "blk.0.attn_q.weight"), GGML_TYPE_Q5_0);
    assert_int_equal(tensor_type(g, "blk.1.ffn_down.weight"), GGML_TYPE_Q4_K);
    assert_int_equal(tensor_type(g, "blk.1.ffn_norm.weight"), GGML_TYPE_F32);
    gguf_free(g);
    load_and_decode(out, &p, 32000);
    remove(out);
}

static void test_same_seed_identical(void **state) {
    char vocab[1024], a[1024], b[1024], c[1024];
    struct modelgen_params p = modelgen_default_params();
    unsigned char *da, *db, *dc;
    size_t la, lb, lc;
    (void)state;
    REQUIRE_VOCAB("ggml-vocab-llama-bpe.gguf", vocab);
    out_path("seed-a.gguf", a, sizeof a);
    out_path("seed-b.gguf", b, sizeof b);
    out_path("seed-c.gguf", c, sizeof c);
    p.vocab_path = vocab;
    p.seed = 1234;
    p.out_path = a;
    generate(&p);
    p.out_path = b;
    generate(&p);
    p.out_path = c;
    p.seed = 1235;
    generate(&p);

    da = slurp(a, &la);
    db = slurp(b, &lb);
    dc = slurp(c, &lc);
    assert_int_equal(la, lb);
    assert_memory_equal(da, db, la);
    assert_int_equal(la, lc);                   /* same shapes ... */
    assert_memory_not_equal(da, dc, la);        /* ... different weights */
    free(da);
    free(db);
    free(dc);
    remove(a);
    remove(b);
    remove(c);
}

static void test_bad_vocab_path(void **state) {
    char out[1024], err[512] = "";
    struct modelgen_params p = modelgen_default_params();
    const char *bad = "/nonexistent/dir/ggml-vocab-missing.gguf";
    (void)state;
    out_path("never.gguf", out, sizeof out);
    p.vocab_path = bad;
    p.out_path = out;
    assert_int_not_equal(modelgen_write(&p, err, sizeof err), 0);
    assert_non_null(strstr(err, bad));
    assert_non_null(strstr(err, "cannot open vocab file"));
    assert_false(file_exists(out));
    assert_false(temp_left(out));
}

static void test_vocab_not_gguf(void **state) {
    char notgguf[1024], out[1024], err[512] = "";
    struct modelgen_params p = modelgen_default_params();
    FILE *f;
    (void)state;
    out_path("not-a-vocab.gguf", notgguf, sizeof notgguf);
    f = fopen(notgguf, "wb");
    assert_non_null(f);
    fputs("this is not a gguf file\n", f);
    fclose(f);
    out_path("never2.gguf", out, sizeof out);
    p.vocab_path = notgguf;
    p.out_path = out;
    assert_int_not_equal(modelgen_write(&p, err, sizeof err), 0);
    assert_non_null(strstr(err, notgguf));
    assert_false(file_exists(out));
    remove(notgguf);
}

static void test_q4_k_bad_dims(void **state) {
    char err[512] = "";
    struct modelgen_params p = modelgen_default_params();
    (void)state;
    /* validation happens before the vocab is opened, so no real files are needed */
    p.vocab_path = "/nonexistent/vocab.gguf";
    p.out_path = "/nonexistent/out.gguf";
    p.type = MODELGEN_Q4_K; /* rows of 48: neither q4_k (256) nor its q5_0 fallback (32) */
    p.n_embd = 48;
    assert_int_not_equal(modelgen_write(&p, err, sizeof err), 0);
    assert_non_null(strstr(err, "n_embd (48)"));
    assert_non_null(strstr(err, "32"));
    assert_non_null(strstr(err, "q4_k"));

    p.n_embd = 256;
    p.n_ff = 400;
    assert_int_not_equal(modelgen_write(&p, err, sizeof err), 0);
    assert_non_null(strstr(err, "n_ff (400)"));
    assert_non_null(strstr(err, "32"));

    p.type = MODELGEN_Q8_0;
    p.n_embd = 48;
    p.n_head = 4;
    p.n_ff = 128;
    assert_int_not_equal(modelgen_write(&p, err, sizeof err), 0);
    assert_non_null(strstr(err, "n_embd (48)"));
    assert_non_null(strstr(err, "32"));
}

static void test_invalid_params(void **state) {
    char err[512] = "";
    struct modelgen_params p = modelgen_default_params();
    struct modelgen_params q;
    (void)state;
    assert_int_not_equal(modelgen_write(&p, err, sizeof err), 0); /* no vocab_path */
    assert_non_null(strstr(err, "vocab_path"));
    p.vocab_path = "/nonexistent/vocab.gguf";
    assert_int_not_equal(modelgen_write(&p, err, sizeof err), 0); /* no out_path */
    assert_non_null(strstr(err, "out_path"));
    p.out_path = "/nonexistent/out.gguf";

    q = p;
    q.n_head = 3; /* 64 % 3 */
    assert_int_not_equal(modelgen_write(&q, err, sizeof err), 0);
    assert_non_null(strstr(err, "n_head"));
    q = p;
    q.n_head_kv = 3; /* 4 % 3 */
    assert_int_not_equal(modelgen_write(&q, err, sizeof err), 0);
    assert_non_null(strstr(err, "n_head_kv"));
    q = p;
    q.n_layer = 0;
    assert_int_not_equal(modelgen_write(&q, err, sizeof err), 0);
    assert_non_null(strstr(err, "n_layer"));
    q = p;
    q.type = (enum modelgen_type)99;
    assert_int_not_equal(modelgen_write(&q, err, sizeof err), 0);
    assert_non_null(strstr(err, "type"));
    assert_int_not_equal(modelgen_write(NULL, err, sizeof err), 0);
    assert_int_not_equal(modelgen_write(&q, NULL, 0), 0); /* no err buffer: no crash */
}

static void test_chat_template(void **state) {
    char spm[1024], qwen[1024], out[1024];
    struct modelgen_params p = modelgen_default_params();
    struct llama_model *m;
    const char *tmpl;
    char *want;
    (void)state;
    REQUIRE_VOCAB("ggml-vocab-llama-spm.gguf", spm);
    REQUIRE_VOCAB("ggml-vocab-qwen2.gguf", qwen);
    out_path("tmpl.gguf", out, sizeof out);
    p.out_path = out;

    /* vocab without a template, NULL -> ChatML */
    p.vocab_path = spm;
    generate(&p);
    m = load(out, true);
    tmpl = llama_model_chat_template(m, NULL);
    assert_non_null(tmpl);
    assert_non_null(strstr(tmpl, "<|im_start|>"));
    llama_model_free(m);

    /* vocab with a template, NULL -> kept as is */
    p.vocab_path = qwen;
    generate(&p);
    want = gguf_str(qwen, "tokenizer.chat_template");
    assert_non_null(want);
    m = load(out, true);
    tmpl = llama_model_chat_template(m, NULL);
    assert_non_null(tmpl);
    assert_string_equal(tmpl, want);
    llama_model_free(m);
    free(want);

    /* "" -> none */
    p.chat_template = "";
    generate(&p);
    m = load(out, true);
    assert_null(llama_model_chat_template(m, NULL));
    llama_model_free(m);

    /* explicit template -> that one */
    p.vocab_path = spm;
    p.chat_template = "{{ messages[0]['content'] }}";
    generate(&p);
    m = load(out, true);
    tmpl = llama_model_chat_template(m, NULL);
    assert_non_null(tmpl);
    assert_string_equal(tmpl, "{{ messages[0]['content'] }}");
    llama_model_free(m);
    remove(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_parse),
        cmocka_unit_test(test_default_params),
        cmocka_unit_test(test_spm_decodes),
        cmocka_unit_test(test_qwen2_decodes),
        cmocka_unit_test(test_other_types_decode),
        cmocka_unit_test(test_same_seed_identical),
        cmocka_unit_test(test_bad_vocab_path),
        cmocka_unit_test(test_vocab_not_gguf),
        cmocka_unit_test(test_q4_k_bad_dims),
        cmocka_unit_test(test_q4_k_fallback_q5_0),
        cmocka_unit_test(test_invalid_params),
        cmocka_unit_test(test_chat_template),
    };
    return cmocka_run_group_tests_name("modelgen", tests, group_setup, group_teardown);
}
