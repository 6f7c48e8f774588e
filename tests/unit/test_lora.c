/* Unit tests: engine/lora — LoRA adapters as their own engines over one loaded base.
 *
 * A generated tiny base, two generated adapters of it, and one of another base's shape:
 * FILE[:SCALE] parsing; a base engine and two adapter engines load the weights once; run
 * at the same time (each on its own thread, as a server's schedulers run them) every
 * request gets the output its own adapter gives alone (greedy), and the adapters' outputs
 * differ from the base's; the prefix cache never gives one adapter's KV to another; and the
 * errors: a missing adapter, a model file given as an adapter, an adapter of another base. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/engine/engine.h"
#include "../../src/engine/lora.h"
#include "../../src/engine/modelgen.h"
#include "../../src/util/status.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef NIGHTSHIFT_DEFAULT_VOCAB_DIR
#define NIGHTSHIFT_DEFAULT_VOCAB_DIR ""
#endif

static char g_dir[64];
static char g_base[128], g_a[128], g_b[128], g_other[128], g_other_lora[128];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/ns-lora-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    const char *vd = getenv("NIGHTSHIFT_VOCAB_DIR");
    char vocab[512], err[256];
    snprintf(vocab, sizeof(vocab), "%s/ggml-vocab-llama-spm.gguf", vd && *vd ? vd : NIGHTSHIFT_DEFAULT_VOCAB_DIR);
    struct modelgen_params p = modelgen_default_params();
    p.vocab_path = vocab;
    p.type = MODELGEN_F32;
    snprintf(g_base, sizeof(g_base), "%s/base.gguf", g_dir);
    p.out_path = g_base;
    if (modelgen_write(&p, err, sizeof(err)))
        goto fail;
    p.n_embd = 128;
    p.n_ff = 256;
    snprintf(g_other, sizeof(g_other), "%s/other.gguf", g_dir);
    p.out_path = g_other;
    if (modelgen_write(&p, err, sizeof(err)))
        goto fail;
    struct modelgen_lora_params lp = modelgen_lora_default_params();
    const char *bases[3] = {g_base, g_base, g_other};
    char *outs[3] = {g_a, g_b, g_other_lora};
    const char *names[3] = {"a", "b", "other-lora"};
    for (int i = 0; i < 3; i++) {
        snprintf(outs[i], sizeof(g_a), "%s/%s.gguf", g_dir, names[i]);
        lp.base_path = bases[i];
        lp.out_path = outs[i];
        lp.seed = (uint64_t)(11 + i);
        if (modelgen_lora_write(&lp, err, sizeof(err)))
            goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "modelgen: %s\n", err);
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    const char *files[] = {g_base, g_a, g_b, g_other, g_other_lora};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(files[i]);
    rmdir(g_dir);
    return 0;
}

static void test_spec_parse(void **state)
{
    (void)state;
    size_t len;
    float scale;
    char err[200];
    assert_int_equal(lora_spec_parse("a.gguf", &len, &scale, err, sizeof(err)), NS_OK);
    assert_int_equal(len, 6);
    assert_true(scale == 1.0f);
    assert_int_equal(lora_spec_parse("/m/a.gguf:0.5", &len, &scale, err, sizeof(err)), NS_OK);
    assert_int_equal(len, 9);
    assert_true(scale == 0.5f);
    assert_int_equal(lora_spec_parse("a.gguf:-2", &len, &scale, err, sizeof(err)), NS_OK);
    assert_true(scale == -2.0f);
    /* a ':' inside a directory name is part of the path */
    assert_int_equal(lora_spec_parse("/data/run:3/a.gguf", &len, &scale, err, sizeof(err)), NS_OK);
    assert_int_equal(len, strlen("/data/run:3/a.gguf"));
    assert_true(scale == 1.0f);
    const char *bad[] = {"a.gguf:x", "a.gguf:", "a.gguf:1000", "a.gguf:nan", "a.gguf:inf", ":0.5", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(lora_spec_parse(bad[i], &len, &scale, err, sizeof(err)), NS_ERR_INVALID);
        assert_true(err[0] != '\0');
    }
    lora_spec_parse("a.gguf:x", &len, &scale, err, sizeof(err));
    assert_non_null(strstr(err, "the scale 'x' of 'a.gguf'"));
}

static struct engine *open_engine(const char *model, const struct lora_spec *lora, int n_lora, bool prefix)
{
    struct engine_params p = engine_default_params();
    p.model_path = model;
    p.n_ctx = 4096;
    p.n_parallel = 4;
    p.n_threads = 2;
    p.prefix_cache = prefix;
    p.lora = lora;
    p.n_lora = n_lora;
    struct engine *e = NULL;
    char err[400];
    if (engine_init(p, &e, err, sizeof(err)))
        fail_msg("engine_init: %s", err);
    return e;
}

static int init_error(const char *model, const struct lora_spec *lora, int n_lora, char *err, size_t errlen)
{
    struct engine_params p = engine_default_params();
    p.model_path = model;
    p.n_ctx = 1024;
    p.n_parallel = 2;
    p.n_threads = 2;
    p.lora = lora;
    p.n_lora = n_lora;
    struct engine *e = NULL;
    int rc = engine_init(p, &e, err, errlen);
    assert_null(e);
    return rc;
}

/* a source over NR fixed prompts, recording each text and its cached tokens */
#define NR 6
struct src {
    struct engine_request req[NR];
    int n, next;
    char text[NR][256];
    int status[NR], cached[NR];
};

static int src_pull(void *ud, struct engine_request **out, int max)
{
    struct src *s = ud;
    int k = 0;
    while (k < max && s->next < s->n)
        out[k++] = &s->req[s->next++];
    return k || s->next < s->n ? k : -1;
}

static void src_done(void *ud, struct engine_request *r, const struct engine_result *res)
{
    struct src *s = ud;
    int i = (int)(r - s->req);
    s->status[i] = res->status;
    s->cached[i] = res->cached_tokens;
    snprintf(s->text[i], sizeof(s->text[i]), "%.*s", (int)(res->status ? strlen(res->message) : res->text_len),
             res->status ? res->message : res->text);
}

static char g_prompts[NR][160];

static void fill(struct src *s, int n)
{
    memset(s, 0, sizeof(*s));
    s->n = n;
    for (int i = 0; i < n; i++) {
        engine_request_init(&s->req[i]);
        snprintf(g_prompts[i], sizeof(g_prompts[i]), "Line %d of a mixed batch: say something about %d.", i, i * 3);
        s->req[i].prompt = g_prompts[i];
        s->req[i].max_tokens = 12;
        s->req[i].temperature = 0;
        s->req[i].ignore_eos = true;
    }
}

static void run(struct engine *e, struct src *s)
{
    struct engine_source es = {.ud = s, .pull = src_pull, .done = src_done};
    assert_int_equal(engine_run(e, &es), NS_OK);
}

struct job {
    struct engine *e;
    struct src *s;
};

static void *job_main(void *arg)
{
    struct job *j = arg;
    struct engine_source es = {.ud = j->s, .pull = src_pull, .done = src_done};
    engine_run(j->e, &es);
    return NULL;
}

/* the base and two adapters, run alone and then all at once: the same outputs */
static void test_mixed_equals_alone(void **state)
{
    (void)state;
    struct lora_spec la = {g_a, 1.0f}, lb[2] = {{g_b, 1.0f}, {g_a, 0.5f}};
    uint64_t loads0 = lora_base_loads();
    struct engine *e[3] = {open_engine(g_base, NULL, 0, true), open_engine(g_base, &la, 1, true),
                           open_engine(g_base, lb, 2, true)};
    /* the weights were loaded once, for the first engine; the others share them */
    assert_int_equal(lora_base_loads(), loads0 + 1);
    struct engine_info in[3];
    for (int i = 0; i < 3; i++)
        engine_get_info(e[i], &in[i]);
    assert_false(in[0].shared_weights);
    assert_true(in[1].shared_weights && in[2].shared_weights);
    assert_string_equal(in[0].lora, "");
    assert_string_equal(in[1].lora, "a.gguf (x1)");
    assert_string_equal(in[2].lora, "b.gguf (x1), a.gguf (x0.5)");

    static struct src alone[3], mixed[3];
    for (int i = 0; i < 3; i++) {
        fill(&alone[i], NR);
        run(e[i], &alone[i]);
    }
    for (int i = 0; i < 3; i++)
        fill(&mixed[i], NR);
    pthread_t t[3];
    struct job jobs[3];
    for (int i = 0; i < 3; i++) {
        jobs[i] = (struct job){e[i], &mixed[i]};
        assert_int_equal(pthread_create(&t[i], NULL, job_main, &jobs[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    int differ_a = 0, differ_b = 0;
    for (int k = 0; k < NR; k++) {
        for (int i = 0; i < 3; i++) {
            assert_int_equal(alone[i].status[k], NS_OK);
            assert_int_equal(mixed[i].status[k], NS_OK);
            assert_string_equal(mixed[i].text[k], alone[i].text[k]);
        }
        differ_a += strcmp(alone[1].text[k], alone[0].text[k]) != 0;
        differ_b += strcmp(alone[2].text[k], alone[0].text[k]) != 0;
    }
    /* the adapters are strong enough to change greedy output */
    assert_int_equal(differ_a, NR);
    assert_int_equal(differ_b, NR);
    for (int i = 2; i >= 0; i--)
        engine_free(e[i]);
    /* all released: the next engine loads the weights again */
    struct engine *again = open_engine(g_base, NULL, 0, false);
    assert_int_equal(lora_base_loads(), loads0 + 2);
    engine_free(again);
}

/* the same prompt under the base, then an adapter: nothing of the base's KV is reused by
 * the adapter's engine (its prompt is computed in full), while a repeat within one adapter
 * set is */
static void test_prefix_cache_per_adapter(void **state)
{
    (void)state;
    struct lora_spec la = {g_a, 1.0f};
    struct engine *base = open_engine(g_base, NULL, 0, true), *ad = open_engine(g_base, &la, 1, true);
    static struct src s1, s2, s3;
    fill(&s1, 1);
    run(base, &s1);
    fill(&s2, 1);
    run(ad, &s2);
    assert_int_equal(s2.status[0], NS_OK);
    assert_int_equal(s2.cached[0], 0);
    struct engine_stats st;
    engine_get_stats(ad, &st);
    assert_int_equal(st.prompt_cached, 0);
    fill(&s3, 1);
    run(ad, &s3);
    assert_true(s3.cached[0] > 0);
    assert_string_equal(s3.text[0], s2.text[0]);
    assert_string_not_equal(s2.text[0], s1.text[0]);
    engine_free(ad);
    engine_free(base);
}

static void test_errors(void **state)
{
    (void)state;
    char err[400];
    uint64_t loads0 = lora_base_loads();
    char missing[200];
    snprintf(missing, sizeof(missing), "%s/missing.gguf", g_dir);
    struct lora_spec s = {missing, 1.0f};
    assert_int_equal(init_error(g_base, &s, 1, err, sizeof(err)), NS_ERR_INVALID);
    assert_non_null(strstr(err, "lora: cannot read adapter"));
    assert_non_null(strstr(err, "missing.gguf"));

    s.path = g_other; /* a model, not an adapter */
    assert_int_equal(init_error(g_base, &s, 1, err, sizeof(err)), NS_ERR_INVALID);
    assert_non_null(strstr(err, "is not a LoRA adapter"));

    s.path = g_other_lora; /* made for another base's shapes */
    assert_int_equal(init_error(g_base, &s, 1, err, sizeof(err)), NS_ERR_INVALID);
    assert_non_null(strstr(err, "does not fit the base model"));
    assert_non_null(strstr(err, "incorrect shape"));

    struct lora_spec many[LORA_MAX + 1];
    for (int i = 0; i <= LORA_MAX; i++)
        many[i] = (struct lora_spec){g_a, 1.0f};
    assert_int_equal(init_error(g_base, many, LORA_MAX + 1, err, sizeof(err)), NS_ERR_INVALID);
    assert_non_null(strstr(err, "at most"));
    /* every failed engine gave its reference back: nothing stays loaded */
    struct engine *e = open_engine(g_base, NULL, 0, false);
    assert_int_equal(lora_base_loads(), loads0 + 5);
    engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_parse),
        cmocka_unit_test(test_mixed_equals_alone),
        cmocka_unit_test(test_prefix_cache_per_adapter),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
