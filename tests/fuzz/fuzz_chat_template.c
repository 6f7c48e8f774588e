/*
 * fuzz_chat_template.c — libFuzzer target: chat messages through the chat template and
 * the tokenizer (engine_count_tokens), as every chat request of a client reaches them
 * before admission.
 *
 * Setup (once, in LLVMFuzzerInitialize): a tiny random-weight model is generated with
 * modelgen from the llama-spm vocab in NIGHTSHIFT_VOCAB_DIR, and one engine is opened per
 * built-in template below (a few MB each). Input: the first byte picks the template; the
 * rest is split at NUL bytes into role, content, role, content, ... (at most 16 messages);
 * an input without NUL is a completions prompt. Roles and contents may be any bytes.
 */
#include "../../src/engine/engine.h"
#include "../../src/engine/modelgen.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_templates[] = {NULL, "chatml", "llama2", "llama3", "gemma", "mistral-v7", "phi3",
                                             "deepseek3", "command-r", "zephyr"};
#define N_TEMPLATES (sizeof(fuzz_templates) / sizeof(fuzz_templates[0]))
static struct engine *fuzz_engines[N_TEMPLATES];
static char fuzz_model[256];

static void fuzz_cleanup(void)
{
    for (size_t i = 0; i < N_TEMPLATES; i++)
        engine_free(fuzz_engines[i]);
    unlink(fuzz_model);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *vd = getenv("NIGHTSHIFT_VOCAB_DIR");
    char vocab[512], err[256];
    snprintf(vocab, sizeof(vocab), "%s/ggml-vocab-llama-spm.gguf", vd && *vd ? vd : NIGHTSHIFT_DEFAULT_VOCAB_DIR);
    snprintf(fuzz_model, sizeof(fuzz_model), "/tmp/ns-fuzz-chat-%ld.gguf", (long)getpid());
    struct modelgen_params mp = modelgen_default_params();
    mp.vocab_path = vocab;
    mp.out_path = fuzz_model;
    if (modelgen_write(&mp, err, sizeof(err))) {
        fprintf(stderr, "fuzz_chat_template: cannot generate a model: %s\n", err);
        exit(1);
    }
    for (size_t i = 0; i < N_TEMPLATES; i++) {
        struct engine_params ep = engine_default_params();
        ep.model_path = fuzz_model;
        ep.n_ctx = 256;
        ep.n_parallel = 1;
        ep.n_threads = 1;
        ep.chat_template = fuzz_templates[i];
        if (engine_init(ep, &fuzz_engines[i], err, sizeof(err))) {
            fprintf(stderr, "fuzz_chat_template: cannot open the engine (%s): %s\n",
                    fuzz_templates[i] ? fuzz_templates[i] : "model", err);
            exit(1);
        }
    }
    atexit(fuzz_cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 64 * 1024)
        return 0;
    struct engine *e = fuzz_engines[data[0] % N_TEMPLATES];
    /* NUL-terminated copy: the engine reads C strings */
    size_t n = size - 1;
    char *s = malloc(n + 1);
    if (!s)
        return 0;
    memcpy(s, data + 1, n);
    s[n] = '\0';
    struct engine_msg msgs[16];
    int n_msgs = 0;
    struct engine_request r;
    engine_request_init(&r);
    if (memchr(s, '\0', n)) {
        const char *p = s, *end = s + n;
        while (p < end && n_msgs < 16) {
            const char *role = p;
            p += strlen(p) + 1;
            const char *content = p < end ? p : "";
            if (p < end)
                p += strlen(p) + 1;
            msgs[n_msgs].role = role;
            msgs[n_msgs].content = content;
            n_msgs++;
        }
        r.messages = msgs;
        r.n_messages = n_msgs;
    } else {
        r.prompt = s;
    }
    char err[256];
    (void)engine_count_tokens(e, &r, err, sizeof(err));
    free(s);
    return 0;
}
