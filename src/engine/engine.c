/*
 * engine.c — continuous batching over llama.cpp. See engine.h for the design.
 * This file: init/free, the per-request lifecycle and the step loop. The module's other
 * files: device.c (backends, devices, where the model runs), embed.c (engine_run for
 * embeddings), options.c (option names, model file checks), prompt.c (chat rendering and
 * tokenizing); their shared state is engine_int.h.
 *
 * INVARIANTS
 * - A slot is either free, running (its first n_past tokens are in the KV cache under
 *   seq id = slot index) or parked (nothing in KV, n_past == 0). A running sequence may
 *   move to a lower free slot between steps (engine_compact): its KV stream, its trie
 *   entry and its slot state move together, so seq id = slot index still holds.
 * - tok[0..n_tok) is the prompt followed by every token sampled so far; tokens
 *   tok[n_past..n_tok) are pending: fed in the next steps. A generating slot has exactly
 *   one pending token (the last one sampled), a prefilling or resumed slot more.
 * - Σ n_tok over running slots <= n_ctx after every admission and before every decode:
 *   the KV pool never runs out in the common case; when llama.cpp still finds no slot
 *   (fragmentation), the newest running slot is parked and the step retried.
 * - Logits are requested only for a slot's last pending token, and only when the whole
 *   pending run fits in the step: intermediate prompt chunks produce no output.
 * - A request with n > 1 choices has a group: choice 0 is seated like any request, the
 *   others as slots free up (before new requests are pulled), each waiting for a running
 *   choice of its group to hold the prompt and copying its KV. A group is on e->pending
 *   while some choice has no slot yet; it ends (done() once) when every choice has ended,
 *   and fails as a whole when one choice fails.
 */
#include "engine_int.h"
#include "../util/clock.h"

#include "ggml-backend.h"
#include "gguf.h"
#include "llama.h"

#include "chat.h"
#include "lora.h"
#include "prefix.h"
#include "steps.h"
#include "toolwire.h"

#include "../util/buf.h"
#include "../util/status.h"
#include "../util/utf8.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <omp.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int engine_kv_reserved(const struct engine *e);
static int engine_running(const struct engine *e);


/* One forward pass: encoder-only models (BERT-like embedding models) encode, others
 * decode. Its wall time is counted apart (stats.decode_seconds) so that what nightshift
 * spends around llama.cpp can be told from llama.cpp's own compute, whose speed on a
 * shared machine varies far more than anything the scheduler does. */
int engine_forward(struct engine *e, struct llama_batch b)
{
    double s = 0;
    /* the engines of one base model decode one at a time, on one thread (lora.h) */
    int ret = lora_base_forward(e->base, e->ctx, b, llama_model_has_encoder(e->model) && !llama_model_has_decoder(e->model),
                                &s);
    e->stats.decode_seconds += s;
    return ret;
}

int engine_step_ms_parse(const char *s, double *out)
{
    if (!s)
        return NS_ERR_INVALID;
    if (strcmp(s, "auto") == 0) {
        *out = 0;
        return NS_OK;
    }
    if (strcmp(s, "off") == 0) {
        *out = -1;
        return NS_OK;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 1 && v <= 60000))
        return NS_ERR_INVALID;
    *out = v;
    return NS_OK;
}

int engine_pooling_parse(const char *s)
{
    static const char *const names[] = {"none", "mean", "cls", "last"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -2;
}


static void engine_log_cb(enum ggml_log_level level, const char *text, void *ud)
{
    const struct engine_params *p = ud;
    if ((p && p->verbose) || level == GGML_LOG_LEVEL_ERROR)
        fputs(text, stderr);
}

void engine_quiet_log(enum ggml_log_level level, const char *text, void *ud)
{
    (void)level;
    (void)text;
    (void)ud;
}

struct engine_params engine_default_params(void)
{
    struct engine_params p = {
        .model_path = NULL,
        .n_ctx = 0,
        .n_parallel = 64,
        .n_batch = 2048,
        .n_ubatch = 512,
        .n_threads = 0,
        .chat_template = NULL,
        .verbose = false,
        .kv_unified = false,
        .prefix_cache = true,
        .embedding = false,
        .pooling = ENGINE_POOLING_MODEL,
        .interactive_step_ms = 0,
        .n_gpu_layers = ENGINE_GPU_LAYERS_AUTO,
        .devices = NULL,
        .main_gpu = 0,
        .split_mode = ENGINE_SPLIT_LAYER,
        .flash_attn = ENGINE_FA_AUTO,
        .cache_type_k = ENGINE_CACHE_F16,
        .cache_type_v = ENGINE_CACHE_F16,
        .fit = ENGINE_FIT_AUTO,
        .fit_margin_mib = 1024,
    };
    return p;
}

const char *engine_llama_version(void)
{
    return llama_version();
}

const char *engine_llama_commit(void)
{
#ifdef NS_LLAMA_COMMIT
    return NS_LLAMA_COMMIT;
#else
    return "";
#endif
}

/* ---- init / free -------------------------------------------------------------------- */

/* The model's chat template (chat.h): its own Jinja template, the one the user gave (Jinja
 * text, or a llama.cpp built-in name), or ChatML when the GGUF has none. */
static int engine_pick_template(struct engine *e, char *err, size_t errlen)
{
    int rc = chat_templates_init(e->model, e->p.chat_template, &e->chat, err, errlen);
    if (rc != NS_OK)
        return rc;
    const char *t = e->p.chat_template;
    if (t && (strstr(t, "{%") || strstr(t, "{{")))
        snprintf(e->tmpl_label, sizeof(e->tmpl_label), "file");
    else if (t)
        snprintf(e->tmpl_label, sizeof(e->tmpl_label), "%s", t);
    else
        snprintf(e->tmpl_label, sizeof(e->tmpl_label), "%s",
                 chat_templates_fallback(e->chat) ? "chatml (fallback)" : "model");
    return NS_OK;
}

int engine_init(struct engine_params p, struct engine **out, char *err, size_t errlen)
{
    struct engine *e = NULL;
    int rc = NS_OK;
    *out = NULL;
    if (!p.model_path) {
        snprintf(err, errlen, "no model given");
        return NS_ERR_INVALID;
    }
    if ((rc = engine_check_gguf(p.model_path, err, errlen)) != NS_OK)
        return rc;
    if (p.n_parallel < 1)
        p.n_parallel = 1;
    if (p.n_parallel > ENGINE_MAX_PARALLEL)
        p.n_parallel = ENGINE_MAX_PARALLEL;

    if (p.n_batch < 32)
        p.n_batch = 2048;
    if (p.n_ubatch <= 0 || p.n_ubatch > p.n_batch)
        p.n_ubatch = p.n_batch < 512 ? p.n_batch : 512;
    if (p.n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        p.n_threads = n > 0 ? (int)n : 4;
    }

    e = calloc(1, sizeof(*e));
    if (!e)
        return NS_ERR_NOMEM;
    steps_model_init(&e->steps);
    e->p = p;
    if (e->p.model_path)
        e->p.model_path = strdup(p.model_path);
    if (p.chat_template)
        e->p.chat_template = strdup(p.chat_template);

    char note[512];
    if ((rc = engine_backends_check(note, sizeof(note))) != NS_OK) {
        snprintf(err, errlen, "%s", note);
        goto out;
    }
    if (note[0])
        fprintf(stderr, "nightshift: %s\n", note);
    llama_log_set(engine_log_cb, &e->p);
    llama_backend_init();
    if ((rc = engine_pick_devices(e, err, errlen)) != NS_OK)
        goto out;
    if (p.cache_type_v != ENGINE_CACHE_F16 && p.flash_attn == ENGINE_FA_OFF) {
        snprintf(err, errlen, "--cache-type-v %s needs flash attention: leave --flash-attn at auto or set it on",
                 engine_cache_type_name(p.cache_type_v));
        rc = NS_ERR_INVALID;
        goto out;
    }

    int n_gpus = engine_n_gpus(e);
    struct llama_model_params mp = llama_model_default_params();
    mp.devices = e->devs;
    mp.split_mode = (enum llama_split_mode)p.split_mode;
    if (p.main_gpu < 0 || (p.main_gpu > 0 && p.main_gpu >= n_gpus)) {
        snprintf(err, errlen, "--main-gpu %d: there %s %d GPU device%s (numbered from 0; see --list-devices)",
                 p.main_gpu, n_gpus == 1 ? "is" : "are", n_gpus, n_gpus == 1 ? "" : "s");
        rc = NS_ERR_INVALID;
        goto out;
    }
    mp.main_gpu = p.main_gpu;
    int ngl = p.n_gpu_layers;
    if (n_gpus == 0 && (ngl == ENGINE_GPU_LAYERS_ALL || ngl > 0)) {
        /* asked for, but nothing to put them on: run (a config shared by several machines
         * should start everywhere), and say why the model is on the CPU */
        fprintf(stderr, "nightshift: --gpu-layers: no GPU device (%s); the model runs on the CPU\n",
                strcmp(NS_GPU_KIND, "cpu") == 0
                    ? "this nightshift has llama.cpp's CPU backend only: build it with NIGHTSHIFT_GPU=cuda or vulkan "
                      "scripts/bootstrap.sh"
                    : "see nightshift doctor");
        ngl = 0;
    }
    /* all: a count above any model's layers, so that the fit leaves it alone (it only
     * chooses layers left at llama.cpp's default, -1) */
    mp.n_gpu_layers = ngl == ENGINE_GPU_LAYERS_AUTO ? (n_gpus ? -1 : 0) : ngl == ENGINE_GPU_LAYERS_ALL ? 1 << 20 : ngl;

    struct llama_context_params cp = llama_context_default_params();
    cp.n_batch = (uint32_t)p.n_batch;
    cp.n_ubatch = (uint32_t)p.n_ubatch;
    cp.n_seq_max = (uint32_t)(p.n_parallel + (p.n_priority > 0 ? p.n_priority : 0));
    cp.n_threads = p.n_threads;
    cp.n_threads_batch = p.n_threads;
    cp.kv_unified = p.kv_unified;
    cp.no_perf = true;
    cp.type_k = engine_cache_ggml_type(p.cache_type_k);
    cp.type_v = engine_cache_ggml_type(p.cache_type_v);
    cp.flash_attn_type = (enum llama_flash_attn_type)p.flash_attn;

    /* the memory fit, before anything is allocated: it may lower the layers (auto only) and
     * says how many KV cells fit; the context is sized after the model is loaded */
    int n_fit = 0, ctx_train = engine_peek_ctx_train(p.model_path);
    if ((p.fit == ENGINE_FIT_ON || (p.fit == ENGINE_FIT_AUTO && n_gpus > 0)) && !p.embedding) {
        size_t max_dev = llama_max_devices(), max_ovr = llama_max_tensor_buft_overrides();
        e->fit_split = calloc(max_dev, sizeof(*e->fit_split));
        e->fit_overrides = calloc(max_ovr, sizeof(*e->fit_overrides));
        if (!e->fit_split || !e->fit_overrides) {
            rc = NS_ERR_NOMEM;
            goto out;
        }
        struct llama_model_params fm = mp;
        struct llama_context_params fc = cp;
        fc.n_ctx = 0; /* "as much as fits", up to the trained length per sequence */
        char ferr[256];
        int fr = chat_fit_params(p.model_path, &fm, &fc, e->fit_split, e->fit_overrides,
                                 (size_t)p.fit_margin_mib << 20, 256, ferr, sizeof(ferr));
        if (fr == 0 || fr == 1) {
            if (fm.n_gpu_layers != mp.n_gpu_layers && p.verbose)
                fprintf(stderr, "nightshift: memory fit: %d layers on the GPU\n", fm.n_gpu_layers);
            mp = fm;
            /* a reduction only: at the trained length every sequence fits */
            if (ctx_train <= 0 || (int64_t)fc.n_ctx < (int64_t)ctx_train * cp.n_seq_max)
                n_fit = (int)fc.n_ctx;
            if (fr == 1)
                fprintf(stderr, "nightshift: memory fit: '%s' does not leave %d MiB free in %s memory even with the "
                                "smallest context; going on with the least it found\n",
                        p.model_path, p.fit_margin_mib, n_gpus ? "device" : "host");
        } else if (p.verbose) {
            fprintf(stderr, "nightshift: memory fit skipped: %s\n", ferr);
        }
    }

    bool shared;
    if ((rc = lora_base_acquire(p.model_path, &mp, &e->base, &e->model, &shared, err, errlen)) != NS_OK)
        goto out;
    e->info.shared_weights = shared;
    e->vocab = llama_model_get_vocab(e->model);
    e->n_vocab = llama_vocab_n_tokens(e->vocab);
    if (p.step_trace && !(e->trace = fopen(p.step_trace, "a"))) {
        snprintf(err, errlen, "the step trace '%s' cannot be opened: %s", p.step_trace, strerror(errno));
        rc = NS_ERR_INVALID;
        goto out;
    }
    /* one candidate buffer per sampling thread (engine_sample_step) */
    e->n_cur = p.n_threads > 0 ? p.n_threads : 1;
    e->cur = malloc(sizeof(*e->cur) * (size_t)e->n_cur * (size_t)(e->n_vocab > 0 ? e->n_vocab : 1));
    if (!e->cur) {
        rc = NS_ERR_NOMEM;
        goto out;
    }

    if (p.cache_type_k != ENGINE_CACHE_F16 || p.cache_type_v != ENGINE_CACHE_F16) {
        /* q8_0 and q4_0 store blocks of 32 values: a head must be whole blocks (llama.cpp
         * only says so in its log) */
        int n_head = llama_model_n_head(e->model), head = n_head > 0 ? llama_model_n_embd(e->model) / n_head : 0;
        if (head % 32) {
            bool k = p.cache_type_k != ENGINE_CACHE_F16;
            snprintf(err, errlen, "--cache-type-%c %s: the attention heads of '%s' have %d values, not a multiple of "
                                  "%s's blocks of 32: use f16 for this model",
                     k ? 'k' : 'v', engine_cache_type_name(k ? p.cache_type_k : p.cache_type_v), p.model_path, head,
                     engine_cache_type_name(k ? p.cache_type_k : p.cache_type_v));
            rc = NS_ERR_INVALID;
            goto out;
        }
    }
    if (p.n_ctx <= 0 && p.embedding) {
        /* embeddings keep nothing between steps: the KV holds one batch */
        p.n_ctx = p.n_batch;
        e->p.n_ctx = p.n_ctx;
    }
    if (p.n_ctx <= 0) {
        /* auto: 2048 tokens per sequence (less if the model was trained shorter) */
        int per = llama_model_n_ctx_train(e->model);
        if (per <= 0 || per > 2048)
            per = 2048;
        p.n_ctx = per * (p.n_parallel + p.n_priority);
        e->p.n_ctx = p.n_ctx;
    }
    if (n_fit > 0 && p.n_ctx > n_fit) {
        engine_apply_fit(e, &p, n_fit, n_gpus ? "the GPU" : "the host");
        e->p.n_ctx = p.n_ctx;
        e->p.n_parallel = p.n_parallel;
        e->p.n_priority = p.n_priority;
    }
    cp.n_ctx = (uint32_t)p.n_ctx;
    cp.n_seq_max = (uint32_t)(p.n_parallel + (p.n_priority > 0 ? p.n_priority : 0));
    if (p.embedding) {
        if (p.pooling == ENGINE_POOLING_NONE) {
            snprintf(err, errlen, "pooling 'none' gives a vector per token, but an embedding is one vector per input: "
                                  "choose mean, cls or last");
            rc = NS_ERR_INVALID;
            goto out;
        }
        cp.embeddings = true;
        /* An input's tokens must be in one micro-batch for the pooling to see them all: the
         * whole batch is one micro-batch, and the KV is one pool (with a stream per
         * sequence, llama.cpp splits batches into equal-length slices of every sequence,
         * which cuts inputs of different lengths apart). Sequences still attend only to
         * their own tokens. */
        cp.n_ubatch = cp.n_batch;
        cp.kv_unified = true;
        if (p.pooling > 0) {
            cp.pooling_type = (enum llama_pooling_type)p.pooling;
        } else {
            /* the GGUF's own when it names one; a generative model used for embeddings
             * usually names none, and mean pooling is then the usual choice */
            char key[96], val[16];
            char arch[32] = "";
            llama_model_meta_val_str(e->model, "general.architecture", arch, sizeof(arch));
            snprintf(key, sizeof(key), "%s.pooling_type", arch);
            cp.pooling_type = llama_model_meta_val_str(e->model, key, val, sizeof(val)) >= 0 ? LLAMA_POOLING_TYPE_UNSPECIFIED
                                                                                          : LLAMA_POOLING_TYPE_MEAN;
        }
    }
    e->ctx = llama_init_from_model(e->model, cp);
    if (!e->ctx) {
        if (p.cache_type_v != ENGINE_CACHE_F16)
            snprintf(err, errlen, "cannot create a context of %d tokens for '%s' with a %s V cache: it needs flash "
                                  "attention, which this backend does not run for this model (--cache-type-v f16; "
                                  "--verbose shows llama.cpp's reason)",
                     p.n_ctx, p.model_path, engine_cache_type_name(p.cache_type_v));
        else
            snprintf(err, errlen, "cannot create a context of %d tokens for '%s' (out of memory?)", p.n_ctx,
                     p.model_path);
        rc = NS_ERR_ENGINE;
        goto out;
    }
    if ((rc = lora_set_load(&e->lora, e->model, p.model_path, p.lora, p.n_lora, err, errlen)) != NS_OK)
        goto out;
    lora_set_apply(&e->lora, e->ctx);
    e->p.lora = NULL; /* the caller's: read by init only */
    e->p.n_lora = 0;
    snprintf(e->info.lora, sizeof(e->info.lora), "%s", e->lora.desc);
    engine_describe_where(e, mp.n_gpu_layers);
    e->n_ctx = (int)llama_n_ctx(e->ctx);
    /* llama.cpp clamps n_batch to n_ctx (and n_ubatch to n_batch) for a context that is not
     * a pure embedder: a step is budgeted by what was made, never by what was asked, since a
     * batch over llama_n_batch() aborts the process inside llama_decode (issue 27.6) */
    p.n_batch = e->p.n_batch = (int)llama_n_batch(e->ctx);
    p.n_ubatch = e->p.n_ubatch = (int)llama_n_ubatch(e->ctx);
    if (p.embedding) {
        enum llama_pooling_type pt = llama_pooling_type(e->ctx);
        if (pt != LLAMA_POOLING_TYPE_MEAN && pt != LLAMA_POOLING_TYPE_CLS && pt != LLAMA_POOLING_TYPE_LAST) {
            snprintf(err, errlen, "'%s' pools its embeddings as type %d, which gives no one vector per input: choose "
                                  "--pooling mean, cls or last",
                     p.model_path, (int)pt);
            rc = NS_ERR_INVALID;
            goto out;
        }
    }
    e->n_ctx_seq = (int)llama_n_ctx_seq(e->ctx);
    e->max_piece = 1;
    for (int32_t t = 0; t < llama_vocab_n_tokens(e->vocab); t++) {
        char piece[512];
        int n = llama_token_to_piece(e->vocab, t, piece, (int32_t)sizeof(piece), 0, true);
        if (n < 0)
            n = -n; /* longer than the buffer: its length */
        if (n > e->max_piece)
            e->max_piece = n;
    }
    e->batch = llama_batch_init(p.n_batch, 0, 1);
    {
        /* warm-up: one decode now, so the first request does not pay the thread pool's start
         * and the first touch of every (mmap-ed) weight */
        llama_token t = llama_vocab_bos(e->vocab);
        if (t < 0)
            t = 0;
        if (engine_forward(e, llama_batch_get_one(&t, 1)) == 0)
            llama_memory_seq_rm(llama_get_memory(e->ctx), 0, -1, -1);
    }

    if (p.n_priority < 0)
        p.n_priority = 0;
    if (p.n_parallel + p.n_priority > ENGINE_MAX_PARALLEL)
        p.n_priority = ENGINE_MAX_PARALLEL - p.n_parallel;
    e->p.n_priority = p.n_priority;
    e->n_slots = p.n_parallel + p.n_priority;
    e->slots = calloc((size_t)e->n_slots, sizeof(*e->slots));
    e->eog = malloc(sizeof(*e->eog) * 64);
    if (!e->slots || !e->eog) {
        rc = NS_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i < e->n_slots; i++)
        e->slots[i].wait_for = -1;
    if (p.prefix_cache && !(e->trie = prefix_trie_new())) {
        rc = NS_ERR_NOMEM;
        goto out;
    }
    for (llama_token t = 0; t < e->n_vocab && e->n_eog < 64; t++)
        if (llama_vocab_is_eog(e->vocab, t))
            e->eog[e->n_eog++] = t;

    if (!p.embedding && (rc = engine_pick_template(e, err, errlen)) != NS_OK)
        goto out;

    struct engine_info *in = &e->info;
    if (llama_model_meta_val_str(e->model, "general.name", in->name, sizeof(in->name)) < 0 || !in->name[0]) {
        const char *base = strrchr(p.model_path, '/');
        snprintf(in->name, sizeof(in->name), "%s", base ? base + 1 : p.model_path);
    }
    llama_model_desc(e->model, in->desc, sizeof(in->desc));
    snprintf(in->chat_template, sizeof(in->chat_template), "%s", e->tmpl_label);
    in->n_ctx = e->n_ctx;
    in->n_ctx_seq = e->n_ctx_seq;
    in->n_ctx_train = llama_model_n_ctx_train(e->model);
    in->n_vocab = e->n_vocab;
    in->n_parallel = e->n_slots;
    in->n_params = llama_model_n_params(e->model);
    if (llama_model_meta_val_str(e->model, "general.architecture", in->arch, sizeof(in->arch)) < 0)
        in->arch[0] = '\0';
    in->file_type = (int)(llama_model_ftype(e->model) & ~LLAMA_FTYPE_GUESSED);
    in->embedding = p.embedding;
    in->n_embd = llama_model_n_embd(e->model);
    if (p.embedding) {
        enum llama_pooling_type pt = llama_pooling_type(e->ctx);
        snprintf(in->pooling, sizeof(in->pooling), "%s",
                 pt == LLAMA_POOLING_TYPE_CLS ? "cls" : pt == LLAMA_POOLING_TYPE_LAST ? "last" : "mean");
        in->n_embed_max = e->n_ctx < p.n_batch ? e->n_ctx : p.n_batch;
    }

out:
    if (rc != NS_OK) {
        engine_free(e);
        return rc;
    }
    *out = e;
    return NS_OK;
}

static void slot_forget_kv(struct engine *e, struct slot *s)
{
    int id = (int)(s - e->slots);
    llama_memory_seq_rm(llama_get_memory(e->ctx), (llama_seq_id)id, -1, -1);
    if (e->trie)
        prefix_trie_remove(e->trie, id);
    /* whoever waited to copy from it computes the prefix itself */
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].used && e->slots[i].wait_for == id)
            e->slots[i].wait_for = -1;
}

/* A request is over. With the prefix cache its KV stays (the slot is "retained") so the
 * next prompt that starts the same way copies it instead of recomputing it. */
static void slot_release(struct engine *e, struct slot *s)
{
    int id = (int)(s - e->slots);
    bool keep = e->trie && !s->parked && s->n_past > 0 && s->wait_for < 0;
    if (!keep && !s->parked)
        slot_forget_kv(e, s);
    else if (!keep && e->trie)
        prefix_trie_remove(e->trie, id);
    if (s->smpl)
        llama_sampler_free(s->smpl);
    if (s->chat_owned)
        engine_chat_free(s->chat);
    chat_stream_free(s->cs);
    toolwire_stream_free(s->tws);
    s->chat = NULL;
    s->cs = NULL;
    s->tws = NULL;
    buf_release(&s->text);
    free(s->lp);
    buf_release(&s->lp_text);
    if (keep && prefix_trie_set(e->trie, id, s->tok, s->n_past) == NS_OK) {
        llama_token *tok = s->tok;
        int n_past = s->n_past, cap = s->cap_tok;
        memset(s, 0, sizeof(*s));
        s->tok = tok;
        s->cap_tok = cap;
        s->n_tok = s->n_past = n_past;
        s->retained = true;
        s->last_used = ++e->next_order;
        s->wait_for = -1;
        return;
    }
    if (keep)
        slot_forget_kv(e, s);
    free(s->tok);
    memset(s, 0, sizeof(*s));
    s->wait_for = -1;
}

void engine_free(struct engine *e)
{
    if (!e)
        return;
    if (e->slots) {
        for (int i = 0; i < e->n_slots; i++) {
            if (e->slots[i].used)
                slot_release(e, &e->slots[i]);
            free(e->slots[i].tok);
        }
        free(e->slots);
    }
    prefix_trie_free(e->trie);
    if (e->ctx) {
        llama_batch_free(e->batch);
        llama_free(e->ctx);
    }
    lora_set_free(&e->lora);
    lora_base_release(e->base);
    free(e->eog);
    free(e->cur);
    if (e->trace)
        fclose(e->trace);
    free(e->devs);
    free(e->fit_split);
    free(e->fit_overrides);
    chat_templates_free(e->chat);
    free((char *)e->p.model_path);
    free((char *)e->p.chat_template);
    llama_log_set(engine_quiet_log, NULL);
    free(e);
}

void engine_get_info(const struct engine *e, struct engine_info *out) { *out = e->info; }
const char *engine_model_path(const struct engine *e) { return e->p.model_path; }
const char *engine_chat_template(const struct engine *e) { return e->chat ? chat_templates_source(e->chat) : ""; }
void engine_get_stats(const struct engine *e, struct engine_stats *out) { *out = e->stats; }
void engine_stop(struct engine *e) { atomic_store(&e->stop, 1); }

/* ---- per-request lifecycle ---------------------------------------------------------- */

void engine_fail(const struct engine_source *src, struct engine_request *req, int status,
                 const char *param, int n_prompt, const char *fmt, ...)
{
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    res.status = status;
    res.stop_index = -1;
    res.param = param;
    res.text = "";
    res.prompt_tokens = n_prompt;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res.message, sizeof(res.message), fmt, ap);
    va_end(ap);
    res.t_admit = res.t_first = res.t_end = clock_now();
    src->done(src->ud, req, &res);
}

/* The grammar a request's output follows: its own (response_format), else its chat
 * format's (tool calls, lazily from a trigger on, or required), else none. */
static const char *engine_grammar(const struct engine_request *r, const struct chat_prompt *cp)
{
    return r->grammar ? r->grammar : cp ? cp->grammar : NULL;
}

/* the format's grammar starts where the template's generation prompt left off (its prefill
 * tokens fed first); made in chat.cpp, where llama.cpp's exceptions are caught */
static struct llama_sampler *engine_grammar_sampler(const struct engine *e, const struct engine_request *r,
                                                    const struct chat_prompt *cp)
{
    static const struct chat_prompt none = {0};
    char err[256];
    return chat_grammar_sampler(e->vocab, r->grammar, cp ? cp : &none, err, sizeof(err));
}

/* The request's sampler chain in *out, NULL for the argmax fast path (greedy, no
 * penalties, no grammar). NS_ERR_INVALID when the grammar does not compile. */
static int engine_make_sampler(const struct engine *e, const struct engine_request *r, const struct chat_prompt *cp,
                               uint32_t seed, struct llama_sampler **out)
{
    bool penalties = r->presence_penalty != 0.0f || r->frequency_penalty != 0.0f || r->repetition_penalty != 1.0f;
    bool greedy = r->temperature <= 0.0f || r->top_k == 1;
    *out = NULL;
    if (greedy && !penalties && !engine_grammar(r, cp))
        return NS_OK; /* argmax fast path */
    struct llama_sampler *c = llama_sampler_chain_init(llama_sampler_chain_default_params());
    if (!c)
        return NS_ERR_NOMEM;
    if (engine_grammar(r, cp)) {
        /* first, so that penalties and truncation only ever see tokens the grammar allows */
        struct llama_sampler *g = engine_grammar_sampler(e, r, cp);
        if (!g) {
            llama_sampler_free(c);
            return NS_ERR_INVALID;
        }
        llama_sampler_chain_add(c, g);
    }
    if (penalties)
        llama_sampler_chain_add(c, llama_sampler_init_penalties(e->n_vocab, 64, r->repetition_penalty, r->frequency_penalty,
                                                                 r->presence_penalty));
    if (greedy) {
        llama_sampler_chain_add(c, llama_sampler_init_greedy());
        *out = c;
        return NS_OK;
    }
    if (r->top_k > 0)
        llama_sampler_chain_add(c, llama_sampler_init_top_k(r->top_k));
    if (r->top_p < 1.0f)
        llama_sampler_chain_add(c, llama_sampler_init_top_p(r->top_p, 1));
    if (r->min_p > 0.0f)
        llama_sampler_chain_add(c, llama_sampler_init_min_p(r->min_p, 1));
    llama_sampler_chain_add(c, llama_sampler_init_temp(r->temperature));
    llama_sampler_chain_add(c, llama_sampler_init_dist(seed));
    *out = c;
    return NS_OK;
}

/* Copy the first len tokens of src's KV into dst (whose own KV is dropped first). */
static void engine_copy_prefix(struct engine *e, struct slot *dst, struct slot *src_slot, int len)
{
    llama_memory_t mem = llama_get_memory(e->ctx);
    int d = (int)(dst - e->slots), sidx = (int)(src_slot - e->slots);
    if (d != sidx) {
        llama_memory_seq_rm(mem, d, -1, -1);
        /* split KV: a whole-stream copy, applied at the next decode, before its compute;
         * unified KV: the cells are shared, nothing is copied */
        llama_memory_seq_cp(mem, sidx, d, -1, -1);
    }
    llama_memory_seq_rm(mem, d, len, -1);
    dst->n_past = len;
    dst->cached = len;
    e->stats.prompt_cached += (uint64_t)len;
}

/* The slot in [lo, hi) for a new prompt: the free slot whose retained KV shares the most of
 * it, else an empty one, else the least recently used retained one (its cache is evicted).
 * Overwriting a slot that is the source of a copy queued in this step is safe: llama.cpp
 * runs queued stream copies in order at the start of the next decode, before any compute
 * writes new cells, and the metadata was copied when the copy was queued. */
static struct slot *engine_pick_slot(struct engine *e, int lo, int hi, const llama_token *tok, int n, int *reuse)
{
    struct slot *best = NULL, *empty = NULL, *lru = NULL;
    int best_len = 0;
    *reuse = 0;
    for (int i = lo; i < hi; i++) {
        struct slot *s = &e->slots[i];
        if (s->used)
            continue;
        if (!s->retained) {
            if (!empty)
                empty = s;
            continue;
        }
        int l = 0;
        while (l < s->n_past && l < n && s->tok[l] == tok[l])
            l++;
        if (l > best_len) {
            best_len = l;
            best = s;
        }
        if (!lru || s->last_used < lru->last_used)
            lru = s;
    }
    if (best) {
        *reuse = best_len;
        return best;
    }
    return empty ? empty : lru;
}

/* A running slot of group g (other than s) that holds, or is computing, the prompt: the one
 * furthest along; NULL when none runs. */
static struct slot *engine_group_source(struct engine *e, const struct group *g, const struct slot *s)
{
    struct slot *best = NULL;
    for (int i = 0; i < e->n_slots; i++) {
        struct slot *o = &e->slots[i];
        if (o == s || !o->used || o->parked || o->grp != g)
            continue;
        if (!best || o->n_past > best->n_past)
            best = o;
    }
    return best;
}

/* Seat a checked request (or one choice of a group) in a free slot of [lo, hi): takes tok
 * (n prompt tokens, malloc'd) and smpl. On failure done() has been called (for a group:
 * the caller fails the group) and NULL is returned. */
static struct slot *engine_seat(struct engine *e, const struct engine_source *src, struct engine_request *req,
                                llama_token *tok, int n, int max_gen, struct llama_sampler *smpl, struct group *g,
                                int choice, int lo, int hi)
{
    int reuse = 0;
    struct slot *s = NULL;
    if (e->trie) {
        s = engine_pick_slot(e, lo, hi, tok, n, &reuse);
    } else {
        for (int i = lo; i < hi && !s; i++)
            if (!e->slots[i].used)
                s = &e->slots[i];
    }
    if (!s) {
        free(tok);
        if (smpl)
            llama_sampler_free(smpl);
        if (!g)
            engine_fail(src, req, NS_ERR_INTERNAL, NULL, n, "no free sequence slot");
        return NULL;
    }
    int id = (int)(s - e->slots);
    /* Sequences waiting to copy this slot's old prompt can still copy what is reused (it
     * stays in KV); past that the slot will hold the new prompt's tokens, not theirs. */
    for (int i = 0; i < e->n_slots; i++) {
        struct slot *w = &e->slots[i];
        if (w->used && w->wait_for == id && w->wait_len > reuse) {
            if (reuse > w->n_past + 16)
                w->wait_len = reuse;
            else
                w->wait_for = -1;
        }
    }
    /* the slot's old content: kept up to what is reused, the rest dropped */
    free(s->tok);
    if (s->retained && reuse == 0)
        slot_forget_kv(e, s);
    else if (e->trie)
        prefix_trie_remove(e->trie, id);
    memset(s, 0, sizeof(*s));
    s->wait_for = -1;
    s->used = true;
    s->order = ++e->next_order;
    s->req = req;
    s->grp = g;
    s->chat = g ? g->chat : NULL; /* a single request's is set by engine_admit */
    s->choice = choice;
    s->cap_tok = n + (max_gen < 256 ? max_gen : 256) + 1;
    llama_token *grown = realloc(tok, sizeof(*tok) * (size_t)s->cap_tok);
    if (!grown) {
        free(tok);
        if (smpl)
            llama_sampler_free(smpl);
        slot_forget_kv(e, s);
        memset(s, 0, sizeof(*s));
        s->wait_for = -1;
        if (!g)
            engine_fail(src, req, NS_ERR_NOMEM, NULL, n, "out of memory");
        return NULL;
    }
    s->tok = grown;
    s->n_tok = s->n_prompt = n;
    s->stop_index = -1;
    s->max_gen = max_gen;
    s->eog_masked = req->ignore_eos;
    s->smpl = smpl;
    s->i_out = -1;
    buf_init(&s->text, ENGINE_TEXT_MAX);
    buf_init(&s->lp_text, ENGINE_TEXT_MAX);
    s->t_admit = clock_now();
    e->stats.prompt_submitted += (uint64_t)n;
    /* at least the last prompt token is computed: its logits start the generation */
    int limit = n - 1;
    if (reuse > limit)
        reuse = limit;
    if (reuse > 0) {
        llama_memory_seq_rm(llama_get_memory(e->ctx), id, reuse, -1);
        s->n_past = reuse;
        s->cached = reuse;
        e->stats.prompt_cached += (uint64_t)reuse;
    } else if (e->trie) {
        llama_memory_seq_rm(llama_get_memory(e->ctx), id, -1, -1);
    }
    struct slot *sib = g && choice > 0 ? engine_group_source(e, g, s) : NULL;
    if (sib) {
        /* another choice of the same prompt: copy its KV whatever the length (the prompt
         * is computed once per request), now if it is there, else once its prefill is */
        if (limit > s->n_past) {
            if (sib->n_past >= limit)
                engine_copy_prefix(e, s, sib, limit);
            else
                s->wait_for = (int)(sib - e->slots), s->wait_len = limit;
        }
    } else if (e->trie) {
        /* a longer prefix held (or being computed) by another sequence: copy it, now if
         * its KV is there, else once its prefill gets that far */
        int other = -1;
        int len = prefix_trie_match(e->trie, s->tok, limit, -1, &other);
        if (other >= 0 && other != id && len > s->n_past + 16) {
            struct slot *o = &e->slots[other];
            int have = o->parked ? 0 : o->n_past;
            if (have >= len)
                engine_copy_prefix(e, s, o, len);
            else if (o->used && !o->parked)
                s->wait_for = other, s->wait_len = len;
        }
    }
    if (e->trie)
        prefix_trie_set(e->trie, id, s->tok, n);
    return s;
}

/* Tokenize and check a new request, and seat it (its choice 0) in a free slot of [lo, hi).
 * On failure done() has been called and NULL is returned. */
static struct slot *engine_admit(struct engine *e, const struct engine_source *src, struct engine_request *req,
                                 int lo, int hi)
{
    char err[256] = "";
    llama_token *tok = NULL;
    int n_choices = req->n > 1 ? req->n : 1;
    if (req->embed) {
        engine_fail(src, req, NS_ERR_INVALID, "model",
                    0, "This model is loaded for text generation, not embeddings: serve an embedding model with --embedding.");
        return NULL;
    }
    if (n_choices > ENGINE_MAX_CHOICES || n_choices > e->n_slots) {
        engine_fail(src, req, NS_ERR_INVALID, "n", 0,
                    "Invalid 'n': this model runs at most %d sequences at once, so at most %d choices, but got %d.",
                    e->n_slots, e->n_slots < ENGINE_MAX_CHOICES ? e->n_slots : ENGINE_MAX_CHOICES, n_choices);
        return NULL;
    }
    struct chat_prompt *cp = NULL;
    int n = engine_tokenize(e, req, &tok, &cp, err, sizeof(err));
    if (n < 0) {
        int st = -n;
        engine_fail(src, req, st, req->messages ? "messages" : "prompt", 0, "%s",
                    err[0] ? err : "cannot tokenize the prompt");
        return NULL;
    }
    if (n == 0) {
        free(tok);
        engine_chat_free(cp);
        engine_fail(src, req, NS_ERR_INVALID, req->messages ? "messages" : "prompt", 0,
                    "the prompt is empty: it has no tokens");
        return NULL;
    }
    int max_gen = req->max_tokens;
    if (max_gen >= 0 && (long)n + max_gen > e->n_ctx_seq) {
        free(tok);
        engine_chat_free(cp);
        engine_fail(src, req, NS_ERR_CONTEXT, req->messages ? "messages" : "prompt", n,
                    "This model's maximum context length is %d tokens. However, you requested %ld tokens "
                    "(%d in the %s, %d in the completion). Please reduce the length of the %s or completion.",
                    e->n_ctx_seq, (long)n + max_gen, n, req->messages ? "messages" : "prompt", max_gen,
                    req->messages ? "messages" : "prompt");
        return NULL;
    }
    if (n >= e->n_ctx_seq) {
        free(tok);
        engine_chat_free(cp);
        engine_fail(src, req, NS_ERR_CONTEXT, req->messages ? "messages" : "prompt", n,
                    "This model's maximum context length is %d tokens. However, your %s resulted in %d tokens. "
                    "Please reduce the length of the %s.",
                    e->n_ctx_seq, req->messages ? "messages" : "prompt", n, req->messages ? "messages" : "prompt");
        return NULL;
    }
    if (max_gen < 0)
        max_gen = e->n_ctx_seq - n;
    for (int i = 0; i < req->n_logit_bias; i++) {
        if (req->logit_bias[i].token < 0 || req->logit_bias[i].token >= e->n_vocab) {
            free(tok);
            engine_chat_free(cp);
            engine_fail(src, req, NS_ERR_INVALID, "logit_bias", n,
                        "Invalid 'logit_bias': token id %ld is not in this model's vocabulary (0 to %d).",
                        (long)req->logit_bias[i].token, e->n_vocab - 1);
            return NULL;
        }
    }
    struct llama_sampler *smpl = NULL;
    int smpl_rc = engine_make_sampler(e, req, cp, req->seed, &smpl);
    if (smpl_rc != NS_OK) {
        free(tok);
        engine_chat_free(cp);
        if (smpl_rc == NS_ERR_INVALID)
            engine_fail(src, req, smpl_rc, "response_format", n,
                        "the grammar for the requested output format could not be compiled");
        else
            engine_fail(src, req, smpl_rc, NULL, n, "out of memory");
        return NULL;
    }
    struct group *g = NULL;
    if (n_choices > 1) {
        g = calloc(1, sizeof(*g));
        llama_token *copy = malloc(sizeof(*copy) * (size_t)n);
        if (!g || !copy) {
            free(g);
            free(copy);
            free(tok);
            engine_chat_free(cp);
            if (smpl)
                llama_sampler_free(smpl);
            engine_fail(src, req, NS_ERR_NOMEM, NULL, n, "out of memory");
            return NULL;
        }
        memcpy(copy, tok, sizeof(*copy) * (size_t)n);
        g->req = req;
        g->n = n_choices;
        g->seated = 1;
        g->tok = copy;
        g->n_tok = n;
        g->max_gen = max_gen;
        g->chat = cp;
    }
    struct slot *s = engine_seat(e, src, req, tok, n, max_gen, smpl, g, 0, lo, hi);
    if (!s) {
        engine_chat_free(cp); /* a group's too: it is not linked anywhere yet */
        if (g) {
            free(g->tok);
            free(g);
            engine_fail(src, req, NS_ERR_NOMEM, NULL, n, "out of memory");
        }
        return NULL;
    }
    s->chat = cp;
    s->chat_owned = !g;
    if (g) {
        g->n_prompt = n;
        g->cached = s->cached;
        g->t_admit = s->t_admit;
        struct group **tail = &e->pending;
        while (*tail)
            tail = &(*tail)->next;
        *tail = g;
    }
    return s;
}

/* a group ends: unlinked from e->pending, its kept choices freed */
static void group_free(struct engine *e, struct group *g)
{
    for (struct group **p = &e->pending; *p; p = &(*p)->next) {
        if (*p == g) {
            *p = g->next;
            break;
        }
    }
    for (int i = 0; i < ENGINE_MAX_CHOICES; i++) {
        free(g->ch[i].text);
        free(g->ch[i].lp);
        free(g->ch[i].lp_text);
        chat_msg_release(&g->ch[i].msg);
    }
    engine_chat_free(g->chat);
    free(g->tok);
    free(g);
}

/* One slot's request fails: for a group, every other choice stops too and done() is
 * called once for the request. */
static void engine_fail_slot(struct engine *e, const struct engine_source *src, struct slot *s, int status,
                             const char *msg)
{
    struct engine_request *req = s->req;
    struct group *g = s->grp;
    int n_prompt = s->n_prompt;
    /* the tokens generated before the end are spent all the same: a request cancelled because
     * its client went away still reports them, so quotas count them (issue 27.11) */
    int n_gen = s->n_gen;
    slot_release(e, s);
    if (g) {
        for (int i = 0; i < g->n; i++)
            n_gen += g->ch[i].n_gen; /* choices that ended already */
        for (int i = 0; i < e->n_slots; i++)
            if (e->slots[i].used && e->slots[i].grp == g) {
                n_gen += e->slots[i].n_gen;
                slot_release(e, &e->slots[i]);
            }
        group_free(e, g);
    }
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    res.status = status;
    res.stop_index = -1;
    res.text = "";
    res.prompt_tokens = n_prompt;
    res.completion_tokens = n_gen;
    snprintf(res.message, sizeof(res.message), "%s", msg);
    res.t_admit = res.t_first = res.t_end = clock_now();
    src->done(src->ud, req, &res);
}

/* Seat the pending choices of groups (of the priority lane or not) while slots are free
 * in their range. */
static void engine_seat_pending(struct engine *e, const struct engine_source *src, bool priority)
{
    struct group *g = e->pending;
    while (g) {
        struct group *next = g->next;
        if (g->priority != priority) {
            g = next;
            continue;
        }
        int lo = 0, hi = priority ? e->n_slots : e->p.n_parallel;
        while (g->seated < g->n) {
            bool free_slot = false;
            for (int i = lo; i < hi && !free_slot; i++)
                free_slot = !e->slots[i].used;
            int running = engine_running(e);
            if (!free_slot ||
                (e->p.kv_unified && running > 0 && engine_kv_reserved(e) + g->n_tok + running * 16 >= e->n_ctx))
                return; /* in order: a later group waits for this one */
            int choice = g->seated;
            struct llama_sampler *smpl = NULL;
            llama_token *tok = malloc(sizeof(*tok) * (size_t)g->n_tok);
            int rc = tok ? engine_make_sampler(e, g->req, g->chat, g->req->seed + (uint32_t)choice, &smpl) : NS_ERR_NOMEM;
            struct slot *s = NULL;
            if (rc == NS_OK) {
                memcpy(tok, g->tok, sizeof(*tok) * (size_t)g->n_tok);
                s = engine_seat(e, src, g->req, tok, g->n_tok, g->max_gen, smpl, g, choice, lo, hi);
                tok = NULL;
            }
            free(tok);
            if (!s) {
                /* the first choice's sampler compiled, so this is memory */
                struct slot *any = NULL;
                for (int i = 0; i < e->n_slots && !any; i++)
                    if (e->slots[i].used && e->slots[i].grp == g)
                        any = &e->slots[i];
                if (any) {
                    engine_fail_slot(e, src, any, NS_ERR_NOMEM, "out of memory");
                } else {
                    struct engine_request *req = g->req;
                    int n_prompt = g->n_prompt;
                    group_free(e, g);
                    engine_fail(src, req, NS_ERR_NOMEM, NULL, n_prompt, "out of memory");
                }
                break;
            }
            s->priority = priority;
            g->seated++;
        }
        if (g->seated >= g->n) {
            /* all seated: off the pending list (it stays alive through its slots) */
            for (struct group **p = &e->pending; *p; p = &(*p)->next) {
                if (*p == g) {
                    *p = g->next;
                    g->next = NULL;
                    break;
                }
            }
        }
        g = next;
    }
}

/* waiting slots whose source has computed enough copy it now; called before each batch */
static void engine_resolve_waits(struct engine *e)
{
    for (int i = 0; i < e->n_slots; i++) {
        struct slot *s = &e->slots[i];
        if (!s->used || s->wait_for < 0)
            continue;
        struct slot *o = &e->slots[s->wait_for];
        if ((!o->used && !o->retained) || o->parked) {
            s->wait_for = -1; /* the source went away: compute it here */
            continue;
        }
        if (o->n_past >= s->wait_len) {
            engine_copy_prefix(e, s, o, s->wait_len);
            s->wait_for = -1;
        }
    }
}

/* new text (and the logprobs recorded since the last call) to token() */
/* pass one delta to token(), with the logprobs recorded since the last one */
static void engine_emit_delta(const struct engine_source *src, struct slot *s, struct engine_delta *d)
{
    d->cached_tokens = s->cached;
    if (s->req->logprobs) {
        d->logprobs = s->lp + s->lp_sent;
        d->n_logprobs = s->n_lp - s->lp_sent;
        d->logprob_text = s->lp_text.p ? s->lp_text.p : "";
        s->lp_sent = s->n_lp;
    }
    src->token(src->ud, s->req, d);
}

/* New output text for a streaming client. A chat request's text is read back as it comes
 * (chat.h's stream: its format's tool calls and reasoning are not the answer's text), so
 * what goes out is what changed in the answer; final settles what was held back. */
static void engine_emit(const struct engine_source *src, struct slot *s, const char *text, size_t n, bool final,
                        bool cut)
{
    struct engine_delta d = {.index = s->choice, .text = "", .tool_index = -1};
    if (!s->chat) {
        d.text = text ? text : "";
        d.len = n;
        engine_emit_delta(src, s, &d);
        return;
    }
    const struct chat_diff *diffs = NULL;
    int nd = 0, rc;
    char err[128];
    if (s->chat->fallback) {
        if (!s->tws)
            s->tws = toolwire_stream_new();
        rc = s->tws ? toolwire_stream_feed(s->tws, text, n, final, cut, &diffs, &nd) : NS_ERR_NOMEM;
    } else {
        if (!s->cs)
            s->cs = chat_stream_new(s->chat->parser);
        rc = s->cs ? chat_stream_feed(s->cs, text, n, final, cut, &diffs, &nd, err, sizeof(err)) : NS_ERR_NOMEM;
    }
    if (rc != NS_OK) {
        /* out of memory in the reader: the text goes out as it is */
        d.text = text ? text : "";
        d.len = n;
        engine_emit_delta(src, s, &d);
        return;
    }
    for (int i = 0; i < nd; i++) {
        d = (struct engine_delta){.index = s->choice, .text = diffs[i].content ? diffs[i].content : "",
                                  .reasoning = diffs[i].reasoning, .tool_index = diffs[i].call_index,
                                  .tool_id = diffs[i].call_id, .tool_name = diffs[i].call_name,
                                  .tool_args = diffs[i].call_args};
        d.len = strlen(d.text);
        d.reasoning_len = d.reasoning ? strlen(d.reasoning) : 0;
        engine_emit_delta(src, s, &d);
    }
    if (nd == 0 && s->req->logprobs && s->n_lp > s->lp_sent) {
        d = (struct engine_delta){.index = s->choice, .text = "", .tool_index = -1};
        engine_emit_delta(src, s, &d);
    }
}

/* the tokens a reasoning text stands for (the model wrote it, so it tokenizes back to about
 * what was generated; its markers aside) */
/* the tokens text takes: an estimate of what a part of an answer cost (the reasoning's
 * share), so never more than max (the tokens generated: a random or unusual answer may
 * tokenize into more tokens than were sampled) */
static int engine_count_text(const struct engine *e, const char *text, int max)
{
    if (!text || !*text)
        return 0;
    size_t n = strlen(text);
    int32_t got = llama_tokenize(e->vocab, text, (int32_t)(n > INT32_MAX / 2 ? INT32_MAX / 2 : n), NULL, 0, false, false);
    int n_tok = got < 0 && got != INT32_MIN ? -got : got > 0 ? got : 0;
    return n_tok < max ? n_tok : max;
}

/* A chat request's answer read back from text (the stream's when it streamed, so tool call
 * ids stay as sent); *calls malloc'd, pointing into msg. False when there is none to read. */
static bool engine_read_answer(struct slot *s, bool cut, struct chat_msg *msg, struct engine_tool_call **calls)
{
    char err[128];
    memset(msg, 0, sizeof(*msg));
    *calls = NULL;
    if (!s->chat)
        return false;
    if (s->tws)
        toolwire_stream_take(s->tws, msg);
    else if (s->chat->fallback) {
        if (toolwire_parse(s->text.p ? s->text.p : "", s->text.len, cut, msg) != NS_OK)
            return false;
    } else if (s->cs)
        chat_stream_take(s->cs, msg);
    else if (chat_parse(s->chat->parser, s->text.p ? s->text.p : "", s->text.len, cut, msg, err, sizeof(err)) != NS_OK)
        return false;
    if (!msg->content) {
        chat_msg_release(msg);
        return false;
    }
    if (msg->n_calls > 0 && !(*calls = calloc((size_t)msg->n_calls, sizeof(**calls)))) {
        chat_msg_release(msg);
        return false;
    }
    for (int i = 0; i < msg->n_calls; i++)
        (*calls)[i] = (struct engine_tool_call){msg->calls[i].id, msg->calls[i].name, msg->calls[i].arguments};
    return true;
}

/* One choice of a group ended: its text and logprobs move into the group, the slot is
 * released; the last one to end calls done() for the request with every choice. */
static void engine_finish_choice(struct engine *e, const struct engine_source *src, struct slot *s,
                                 enum engine_finish why)
{
    struct group *g = s->grp;
    struct group_choice *c = &g->ch[s->choice];
    struct engine_tool_call *calls = NULL;
    if (engine_read_answer(s, why == ENGINE_FINISH_LENGTH, &c->msg, &calls))
        free(calls); /* made again from c->msg when the last choice ends */
    c->text_len = s->text.len;
    c->text = buf_detach(&s->text);
    c->lp_text_len = s->lp_text.len;
    c->lp_text = buf_detach(&s->lp_text);
    c->lp = s->lp;
    c->n_lp = s->n_lp;
    s->lp = NULL;
    s->n_lp = s->cap_lp = 0;
    c->finish = why;
    c->stop_index = s->stop_index;
    c->n_gen = s->n_gen;
    if (s->t_first > 0 && (g->t_first == 0 || s->t_first < g->t_first))
        g->t_first = s->t_first;
    g->ended++;
    slot_release(e, s);
    if (g->ended < g->n)
        return;
    struct engine_choice ch[ENGINE_MAX_CHOICES];
    struct engine_tool_call *gcalls[ENGINE_MAX_CHOICES] = {0};
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    res.status = NS_OK;
    for (int i = 0; i < g->n; i++) {
        const struct group_choice *k = &g->ch[i];
        ch[i] = (struct engine_choice){.text = k->text ? k->text : "", .text_len = k->text_len, .finish = k->finish,
                                       .stop_index = k->stop_index, .completion_tokens = k->n_gen,
                                       .logprobs = k->lp, .n_logprobs = k->n_lp,
                                       .logprob_text = k->lp_text ? k->lp_text : "", .logprob_text_len = k->lp_text_len};
        if (k->msg.content) {
            ch[i].text = k->msg.content;
            ch[i].text_len = strlen(k->msg.content);
            ch[i].reasoning = k->msg.reasoning;
            ch[i].reasoning_len = k->msg.reasoning ? strlen(k->msg.reasoning) : 0;
            ch[i].reasoning_tokens = engine_count_text(e, k->msg.reasoning, k->n_gen);
            res.reasoning_tokens += ch[i].reasoning_tokens;
            if (k->msg.n_calls > 0 && (gcalls[i] = calloc((size_t)k->msg.n_calls, sizeof(*gcalls[i])))) {
                for (int j = 0; j < k->msg.n_calls; j++)
                    gcalls[i][j] = (struct engine_tool_call){k->msg.calls[j].id, k->msg.calls[j].name,
                                                            k->msg.calls[j].arguments};
                ch[i].tool_calls = gcalls[i];
                ch[i].n_tool_calls = k->msg.n_calls;
            }
        }
        res.completion_tokens += k->n_gen;
    }
    res.text = ch[0].text;
    res.text_len = ch[0].text_len;
    res.finish = ch[0].finish;
    res.stop_index = ch[0].stop_index;
    res.logprobs = ch[0].logprobs;
    res.n_logprobs = ch[0].n_logprobs;
    res.logprob_text = ch[0].logprob_text;
    res.logprob_text_len = ch[0].logprob_text_len;
    res.prompt_tokens = g->n_prompt;
    res.cached_tokens = g->cached;
    res.t_admit = g->t_admit;
    res.t_first = g->t_first;
    res.t_end = clock_now();
    res.reasoning = ch[0].reasoning;
    res.reasoning_len = ch[0].reasoning_len;
    res.tool_calls = ch[0].tool_calls;
    res.n_tool_calls = ch[0].n_tool_calls;
    res.n_choices = g->n;
    res.choices = ch;
    /* done() before freeing: the texts are the group's */
    src->done(src->ud, g->req, &res);
    for (int i = 0; i < g->n; i++)
        free(gcalls[i]);
    group_free(e, g);
}

static void engine_finish(struct engine *e, const struct engine_source *src, struct slot *s, enum engine_finish why)
{
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    res.status = NS_OK;
    /* A random model, or a piece cut mid-character at max_tokens, can leave invalid
     * UTF-8; the result must be valid JSON text. Sanitizing may triple the length. */
    if (buf_reserve(&s->text, s->text.len * 3 + 4) == NS_OK) {
        s->text.len = utf8_sanitize(s->text.p, s->text.len, s->text.cap - 1);
        s->text.p[s->text.len] = '\0';
    }
    if (src->token && (s->text.len > s->sent || s->n_lp > s->lp_sent || s->chat))
        engine_emit(src, s, s->text.p + s->sent, s->text.len - s->sent, true, why == ENGINE_FINISH_LENGTH);
    if (s->grp) {
        engine_finish_choice(e, src, s, why);
        return;
    }
    struct engine_choice one;
    struct chat_msg msg;
    struct engine_tool_call *calls = NULL;
    res.text = s->text.p ? s->text.p : "";
    res.text_len = s->text.len;
    if (engine_read_answer(s, why == ENGINE_FINISH_LENGTH, &msg, &calls)) {
        res.text = msg.content;
        res.text_len = strlen(msg.content);
        res.reasoning = msg.reasoning;
        res.reasoning_len = msg.reasoning ? strlen(msg.reasoning) : 0;
        res.reasoning_tokens = engine_count_text(e, msg.reasoning, s->n_gen);
        res.tool_calls = calls;
        res.n_tool_calls = msg.n_calls;
    }
    res.finish = why;
    res.stop_index = s->stop_index;
    res.prompt_tokens = s->n_prompt;
    res.completion_tokens = s->n_gen;
    res.cached_tokens = s->cached;
    res.t_admit = s->t_admit;
    res.t_first = s->t_first;
    res.t_end = clock_now();
    res.logprobs = s->lp;
    res.n_logprobs = s->n_lp;
    res.logprob_text = s->lp_text.p ? s->lp_text.p : "";
    res.logprob_text_len = s->lp_text.len;
    one = (struct engine_choice){.text = res.text, .text_len = res.text_len, .finish = why,
                                 .stop_index = res.stop_index, .completion_tokens = res.completion_tokens,
                                 .logprobs = res.logprobs, .n_logprobs = res.n_logprobs,
                                 .logprob_text = res.logprob_text, .logprob_text_len = res.logprob_text_len,
                                 .reasoning = res.reasoning, .reasoning_len = res.reasoning_len,
                                 .reasoning_tokens = res.reasoning_tokens,
                                 .tool_calls = res.tool_calls, .n_tool_calls = res.n_tool_calls};
    res.n_choices = 1;
    res.choices = &one;
    /* done() before release: res.text points into the slot (or the answer read back) */
    src->done(src->ud, s->req, &res);
    chat_msg_release(&msg);
    free(calls);
    slot_release(e, s);
}

/* End as cancelled every request in the engine (all), or only those nobody waits for any
 * more (engine_request.cancelled): their sequences stop taking steps and KV. */
static void engine_cancel_where(struct engine *e, const struct engine_source *src, bool all, const char *msg)
{
    for (int i = 0; i < e->n_slots; i++) {
        struct slot *s = &e->slots[i];
        if (s->used && (all || atomic_load_explicit(&s->req->cancelled, memory_order_relaxed)))
            engine_fail_slot(e, src, s, NS_ERR_CANCELLED, msg);
    }
    /* groups whose seated choices all ended but some are still to seat */
    for (struct group *g = e->pending, *next; g; g = next) {
        next = g->next;
        if (all || atomic_load_explicit(&g->req->cancelled, memory_order_relaxed)) {
            struct engine_request *req = g->req;
            int n_prompt = g->n_prompt;
            group_free(e, g);
            engine_fail(src, req, NS_ERR_CANCELLED, NULL, n_prompt, "%s", msg);
        }
    }
}

static void engine_cancel_all(struct engine *e, const struct engine_source *src)
{
    engine_cancel_where(e, src, true, "the request was cancelled");
}

/* the stop strings of a slot: the request's, then those its chat format adds */
static int engine_n_stops(const struct slot *s) { return s->req->n_stop + (s->chat ? s->chat->n_stops : 0); }
static const char *engine_stop_str(const struct slot *s, int i)
{
    return i < s->req->n_stop ? s->req->stop[i] : s->chat->stops[i - s->req->n_stop];
}

/* Where a stop string occurs in text (searching only where new text could complete one);
 * returns its offset or -1, and which one in *which. */
static long engine_find_stop(const struct slot *s, size_t new_from, int *which)
{
    long best = -1;
    for (int i = 0; i < engine_n_stops(s); i++) {
        const char *stop = engine_stop_str(s, i);
        size_t sl = strlen(stop);
        if (!sl || sl > s->text.len)
            continue;
        size_t from = new_from >= sl ? new_from - sl + 1 : 0;
        for (size_t at = from; at + sl <= s->text.len; at++) {
            if (memcmp(s->text.p + at, stop, sl) == 0) {
                if (best < 0 || (long)at < best) {
                    best = (long)at;
                    *which = i;
                }
                break;
            }
        }
    }
    return best;
}

/* bytes at the end of text that could be the start of a stop string */
static size_t engine_stop_holdback(const struct slot *s)
{
    size_t hold = 0;
    for (int i = 0; i < engine_n_stops(s); i++) {
        const char *stop = engine_stop_str(s, i);
        size_t sl = strlen(stop);
        for (size_t k = sl > 1 ? sl - 1 : 0; k > hold; k--) {
            if (k <= s->text.len && memcmp(s->text.p + s->text.len - k, stop, k) == 0) {
                hold = k;
                break;
            }
        }
    }
    return hold;
}

static int slot_push_token(struct slot *s, llama_token t)
{
    if (s->n_tok == s->cap_tok) {
        int cap = s->cap_tok * 2;
        llama_token *p = realloc(s->tok, sizeof(*p) * (size_t)cap);
        if (!p)
            return NS_ERR_NOMEM;
        s->tok = p;
        s->cap_tok = cap;
    }
    s->tok[s->n_tok++] = t;
    return NS_OK;
}

/* Greedy pick over the whole vocabulary, for every sequence at every step (151,936 logits
 * for Qwen2 vocabularies): a branch-free max that the compiler vectorizes, then a scan for
 * its first index. Ties go to the lowest id, as a plain argmax does. */
static llama_token engine_argmax(const float *logits, int n)
{
    float m[16];
    int i = 0;
    for (int k = 0; k < 16; k++)
        m[k] = -INFINITY;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++)
            m[k] = logits[i + k] > m[k] ? logits[i + k] : m[k];
    float best = -INFINITY;
    for (int k = 0; k < 16; k++)
        best = m[k] > best ? m[k] : best;
    for (; i < n; i++)
        best = logits[i] > best ? logits[i] : best;
    for (int j = 0; j < n; j++)
        if (logits[j] == best)
            return j;
    return 0; /* all NaN */
}

static bool engine_is_eog(const struct engine *e, llama_token t)
{
    for (int i = 0; i < e->n_eog; i++)
        if (e->eog[i] == t)
            return true;
    return false;
}

/* token t's piece appended to the slot's logprob text */
static int engine_lp_piece(const struct engine *e, struct slot *s, llama_token t, uint32_t *off, uint32_t *len)
{
    char piece[256];
    int n = llama_token_to_piece(e->vocab, t, piece, (int32_t)sizeof(piece), 0, false);
    *off = (uint32_t)s->lp_text.len;
    *len = 0;
    if (n <= 0)
        return NS_OK;
    *len = (uint32_t)n;
    return buf_append(&s->lp_text, piece, (size_t)n);
}

/* Log-probability of the chosen token t and the request's top_logprobs alternatives,
 * from the logits as sampling saw them before its own chain (bias and EOG mask applied). */
static int engine_record_logprob(const struct engine *e, struct slot *s, const float *logits, llama_token t)
{
    if (s->n_lp == s->cap_lp) {
        int cap = s->cap_lp ? s->cap_lp * 2 : 16;
        struct engine_token_logprob *p = realloc(s->lp, sizeof(*p) * (size_t)cap);
        if (!p)
            return NS_ERR_NOMEM;
        s->lp = p;
        s->cap_lp = cap;
    }
    float mx = -INFINITY;
    for (int i = 0; i < e->n_vocab; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < e->n_vocab; i++)
        sum += expf(logits[i] - mx);
    float lse = mx + (float)log(sum);
    struct engine_token_logprob *lp = &s->lp[s->n_lp];
    memset(lp, 0, sizeof(*lp));
    lp->token = t;
    lp->logprob = logits[t] - lse;
    int rc = engine_lp_piece(e, s, t, &lp->piece_off, &lp->piece_len);
    /* the k best by insertion into a sorted array of at most 20 */
    int k = s->req->top_logprobs;
    int n = 0;
    for (int i = 0; i < e->n_vocab && k > 0; i++) {
        if (logits[i] == -INFINITY || (n == k && logits[i] <= lp->top[n - 1].logprob))
            continue;
        int at = n < k ? n++ : n - 1;
        while (at > 0 && lp->top[at - 1].logprob < logits[i]) {
            lp->top[at] = lp->top[at - 1];
            at--;
        }
        lp->top[at].token = i;
        lp->top[at].logprob = logits[i];
    }
    lp->n_top = n;
    for (int j = 0; j < n && !rc; j++) {
        lp->top[j].logprob -= lse;
        rc = engine_lp_piece(e, s, lp->top[j].token, &lp->top[j].piece_off, &lp->top[j].piece_len);
    }
    if (!rc)
        s->n_lp++;
    return rc;
}

/* a special token the chat format reads back (<tool_call>, ...): written as its text */
static bool engine_preserved(const struct slot *s, llama_token t)
{
    for (int i = 0; s->chat && i < s->chat->n_preserved; i++)
        if (s->chat->preserved[i] == t)
            return true;
    return false;
}

/* Phase one of a step's sampling: slot s's next token from its logits row (the EOG mask
 * and logit bias applied to the row first), -1 when its sampler selects nothing. Reads the
 * slot and writes only its row, its sampler and cur (n_vocab entries of the calling
 * thread's own), so that the sequences of a step are sampled in parallel. The chain runs
 * as llama_sampler_sample() runs it (fill, apply, accept), on a buffer of the thread's:
 * llama_sampler_sample() would synchronize the context from every thread at once. */
static llama_token engine_pick(const struct engine *e, struct slot *s, float *logits, bool mask, llama_token_data *cur)
{
    if (mask)
        for (int i = 0; i < e->n_eog; i++)
            logits[e->eog[i]] = -INFINITY;
    for (int i = 0; i < s->req->n_logit_bias; i++)
        logits[s->req->logit_bias[i].token] += s->req->logit_bias[i].bias;
    if (!s->smpl)
        return engine_argmax(logits, e->n_vocab);
    for (int i = 0; i < e->n_vocab; i++)
        cur[i] = (llama_token_data){.id = i, .logit = logits[i], .p = 0.0f};
    llama_token_data_array a = {.data = cur, .size = (size_t)e->n_vocab, .selected = -1, .sorted = false};
    llama_sampler_apply(s->smpl, &a);
    if (a.selected < 0 || (size_t)a.selected >= a.size)
        return -1;
    llama_token t = a.data[a.selected].id;
    llama_sampler_accept(s->smpl, t);
    return t;
}

/* a grammar decides when the output may end: masking EOG could leave no token at all */
static bool engine_masks_eog(const struct slot *s)
{
    return !engine_grammar(s->req, s->chat) && (s->eog_masked || s->n_gen < s->req->min_tokens);
}

/* Phase two, on the engine thread: slot s takes token t (picked from logits with the EOG
 * mask or not), then it is decided whether it ended */
static void engine_take(struct engine *e, const struct engine_source *src, struct slot *s, const float *logits,
                        llama_token t, bool mask)
{
    if (!logits || t < 0) {
        engine_fail_slot(e, src, s, NS_ERR_ENGINE, logits ? "the sampler selected no token" : "the engine produced no logits");
        return;
    }
    e->stats.gen_tokens++;
    if (s->n_gen == 0)
        s->t_first = clock_now();
    s->n_gen++;
    if (!mask && engine_is_eog(e, t)) {
        engine_finish(e, src, s, ENGINE_FINISH_STOP);
        return;
    }
    if (slot_push_token(s, t) != NS_OK || (s->req->logprobs && engine_record_logprob(e, s, logits, t) != NS_OK)) {
        engine_fail_slot(e, src, s, NS_ERR_NOMEM, "out of memory");
        return;
    }
    char piece[256];
    int n = llama_token_to_piece(e->vocab, t, piece, (int32_t)sizeof(piece), 0, engine_preserved(s, t));
    size_t before = s->text.len;
    if (n > 0 && buf_append(&s->text, piece, (size_t)n) != NS_OK) {
        engine_finish(e, src, s, ENGINE_FINISH_LENGTH);
        return;
    }
    if (engine_n_stops(s) > 0) {
        int which = -1;
        long at = engine_find_stop(s, before, &which);
        if (at >= 0) {
            s->stop_index = which < s->req->n_stop ? which : -1;
            buf_truncate(&s->text, (size_t)at);
            if (s->sent > s->text.len)
                s->sent = s->text.len;
            if (s->clean > s->text.len)
                s->clean = s->text.len;
            engine_finish(e, src, s, ENGINE_FINISH_STOP);
            return;
        }
    }
    if (s->n_gen >= s->max_gen) {
        engine_finish(e, src, s, ENGINE_FINISH_LENGTH);
        return;
    }
    if (src->token) {
        /* streamed text is valid UTF-8 (issue 27.12): an incomplete character is held back
         * until the next piece completes it (as llama-server does), an invalid one replaced;
         * what was sent never changes (sent <= clean), and engine_finish()'s sanitize of
         * the whole text leaves that prefix as it is */
        s->clean = utf8_buf_clean(&s->text, s->clean);
        size_t hold = engine_stop_holdback(s);
        size_t upto = s->text.len - hold;
        if (upto > s->clean)
            upto = s->clean;
        if (upto > s->sent) {
            engine_emit(src, s, s->text.p + s->sent, upto - s->sent, false, false);
            s->sent = upto;
        }
    }
}

/* ---- the step loop ------------------------------------------------------------------ */

/* KV cells the running sequences will hold after this step. Only a unified pool is
 * shared: with the split layout every sequence owns n_ctx_seq cells, admission already
 * checked it fits there, and there is nothing to account (0). */
static int engine_kv_reserved(const struct engine *e)
{
    if (!e->p.kv_unified)
        return 0;
    int sum = 0;
    for (int i = 0; i < e->n_slots; i++) {
        if (e->slots[i].used && !e->slots[i].parked)
            sum += e->slots[i].n_tok;
        else if (e->slots[i].retained)
            sum += e->slots[i].n_past; /* a kept prefix holds cells of the shared pool */
    }
    return sum;
}

static int engine_running(const struct engine *e)
{
    int n = 0;
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].used && !e->slots[i].parked)
            n++;
    return n;
}

/* Drop the least recently used kept prefix (unified KV: it holds cells of the shared pool
 * that running sequences need first). False when none is kept. */
static bool engine_evict_retained(struct engine *e)
{
    struct slot *lru = NULL;
    for (int i = 0; i < e->n_slots; i++) {
        struct slot *s = &e->slots[i];
        if (!s->used && s->retained && (!lru || s->last_used < lru->last_used))
            lru = s;
    }
    if (!lru)
        return false;
    slot_forget_kv(e, lru);
    free(lru->tok);
    memset(lru, 0, sizeof(*lru));
    lru->wait_for = -1;
    return true;
}

/* park the newest running slot, ordinary ones before priority ones; false when only one
 * runs (it must make progress) */
static bool engine_park_newest(struct engine *e)
{
    struct slot *victim = NULL;
    if (engine_running(e) < 2)
        return false;
    for (int i = 0; i < e->n_slots; i++) {
        struct slot *s = &e->slots[i];
        if (!s->used || s->parked)
            continue;
        if (!victim || (victim->priority && !s->priority) ||
            (victim->priority == s->priority && s->order > victim->order))
            victim = s;
    }
    slot_forget_kv(e, victim);
    victim->parked = true;
    victim->n_past = 0;
    victim->wait_for = -1;
    e->stats.preemptions++;
    return true;
}

/* resume parked slots (oldest first) while they fit; false if one is still parked */
static bool engine_resume_parked(struct engine *e)
{
    for (;;) {
        struct slot *oldest = NULL;
        for (int i = 0; i < e->n_slots; i++) {
            struct slot *s = &e->slots[i];
            if (s->used && s->parked && (!oldest || s->order < oldest->order))
                oldest = s;
        }
        if (!oldest)
            return true;
        int running = engine_running(e);
        while (running > 0 && engine_kv_reserved(e) + oldest->n_tok + running + 1 > e->n_ctx && engine_evict_retained(e))
            ;
        if (running > 0 && engine_kv_reserved(e) + oldest->n_tok + running + 1 > e->n_ctx)
            return false;
        oldest->parked = false;
    }
}

/* admit priority requests into any free slot, parking ordinary sequences for KV room */
static void engine_pull_priority(struct engine *e, const struct engine_source *src)
{
    engine_seat_pending(e, src, true);
    if (!src->pull_priority)
        return;
    for (;;) {
        engine_seat_pending(e, src, true);
        int free_slots = 0;
        for (int i = 0; i < e->n_slots; i++)
            free_slots += !e->slots[i].used;
        if (!free_slots)
            return;
        struct engine_request *reqs[ENGINE_MAX_PARALLEL];
        int got = src->pull_priority(src->ud, reqs, free_slots);
        if (got <= 0)
            return;
        for (int k = 0; k < got; k++) {
            /* the reserved sequences first, so ordinary ones stay free for batch work */
            bool reserved_free = false;
            for (int i = e->p.n_parallel; i < e->n_slots; i++)
                reserved_free |= !e->slots[i].used;
            struct slot *s = engine_admit(e, src, reqs[k], reserved_free ? e->p.n_parallel : 0, e->n_slots);
            if (!s)
                continue;
            s->priority = true;
            if (s->grp)
                s->grp->priority = true;
            while (engine_running(e) > 1 && engine_kv_reserved(e) + engine_running(e) > e->n_ctx) {
                bool only_prio = true;
                for (int i = 0; i < e->n_slots; i++)
                    if (e->slots[i].used && !e->slots[i].parked && !e->slots[i].priority)
                        only_prio = false;
                if (engine_evict_retained(e))
                    continue;
                if (only_prio || !engine_park_newest(e))
                    break;
            }
        }
    }
}

/* pull and admit new requests while slots and KV room allow; returns -1 once the source
 * is exhausted, else the number admitted */
static int engine_pull_new(struct engine *e, const struct engine_source *src, bool *exhausted)
{
    int admitted = 0;
    for (;;) {
        /* the other choices of requests already admitted come before new requests */
        engine_seat_pending(e, src, false);
        int free_slots = 0;
        for (int i = 0; i < e->p.n_parallel; i++)
            free_slots += !e->slots[i].used;
        if (!free_slots || *exhausted)
            return admitted;
        /* Keep some KV room per running sequence for growth, so a full pool does not
         * park sequences right after admitting new ones. */
        int running = engine_running(e);
        while (running > 0 && engine_kv_reserved(e) + running * 16 >= e->n_ctx && engine_evict_retained(e))
            ;
        if (running > 0 && engine_kv_reserved(e) + running * 16 >= e->n_ctx)
            return admitted;
        struct engine_request *reqs[ENGINE_MAX_PARALLEL];
        int got = src->pull(src->ud, reqs, free_slots);
        if (got < 0) {
            *exhausted = true;
            return admitted;
        }
        if (got == 0)
            return admitted;
        bool parked_one = false;
        for (int k = 0; k < got; k++) {
            struct slot *s = engine_admit(e, src, reqs[k], 0, e->p.n_parallel);
            if (!s)
                continue;
            admitted++;
            running = engine_running(e);
            /* too big to run next to the others right now: wait parked (recomputed
             * from nothing when room frees up, which costs nothing since it has no KV) */
            if (running > 1 && engine_kv_reserved(e) + running > e->n_ctx) {
                slot_forget_kv(e, s);
                s->n_past = 0;
                s->wait_for = -1;
                s->parked = true;
                parked_one = true;
            }
        }
        if (parked_one)
            return admitted;
    }
}

/* runs of consecutive sequence ids among the slots of [lo, hi) marked in run */
static int engine_count_runs(const bool *run, int lo, int hi)
{
    int runs = 0;
    for (int i = lo; i < hi; i++)
        runs += run[i] && (i == lo || !run[i - 1]);
    return runs;
}

/* Split KV (a stream per sequence): llama.cpp computes a step in one pass over the weights
 * per run of consecutive sequence ids (engine_build_batch), so in the tail of a batch — a
 * few long requests left, scattered over the slots — every step costs a pass per run.
 * Pack the running sequences of [lo, hi) down: the highest movable one goes into the lowest
 * free slot below it, again and again. One such move alone often leaves as many runs (a
 * sequence taken from the end of a run starts a new one below), so the moves are planned
 * first and only the prefix of them that leaves the fewest runs is made. A move is a
 * whole-stream KV copy (a few MB), which llama.cpp applies at the start of the next decode,
 * before any compute (engine_copy_prefix): far cheaper than one more pass over the weights
 * a step. A kept prefix (retained slot) is given up for a move only where evict says so:
 * in the batch lane always (compaction runs after pull_new, so a hole there means the
 * source had nothing to put in it, and the tail's passes cost more than recomputing one
 * prefix; running sequences with the same prefix stay in the cache), in the priority lane
 * once no request can come any more, because there it is the next turn of a conversation.
 * Only plain sequences move (no choices group, no prefix copy pending either way), and
 * only with a few tokens left to generate at least. */
static void engine_compact(struct engine *e, int lo, int hi, bool evict)
{
    if (e->p.kv_unified || hi - lo < 2)
        return; /* one stream: micro-batches take any sequences */
    bool run[ENGINE_MAX_PARALLEL] = {false}, movable[ENGINE_MAX_PARALLEL] = {false};
    bool hole[ENGINE_MAX_PARALLEL] = {false};
    for (int i = lo; i < hi; i++) {
        const struct slot *s = &e->slots[i];
        run[i] = s->used && !s->parked;
        movable[i] = run[i] && !s->grp && s->wait_for < 0 && s->max_gen - s->n_gen >= 4;
        hole[i] = !s->used && (!s->retained || evict);
    }
    for (int i = 0; i < e->n_slots; i++) /* either lane may wait on a slot of this one */
        if (e->slots[i].used && e->slots[i].wait_for >= 0)
            movable[e->slots[i].wait_for] = hole[e->slots[i].wait_for] = false; /* a prefix to copy from there */
    int runs = engine_count_runs(run, lo, hi);
    if (runs < 2)
        return;
    /* plan on the copies: move k is from[k] -> to[k]; best = the prefix with the fewest runs */
    int from[ENGINE_MAX_PARALLEL], to[ENGINE_MAX_PARALLEL], n_moves = 0, best = 0, best_runs = runs;
    int h = lo, top = hi - 1;
    for (;;) {
        while (h < hi && !hole[h])
            h++;
        while (top > h && !movable[top])
            top--;
        if (h >= top)
            break;
        run[h] = true;
        run[top] = false;
        hole[h] = false;
        movable[top] = false;
        from[n_moves] = top;
        to[n_moves++] = h;
        int r = engine_count_runs(run, lo, hi);
        if (r < best_runs) {
            best_runs = r;
            best = n_moves;
        }
    }
    llama_memory_t mem = llama_get_memory(e->ctx);
    for (int k = 0; k < best; k++) {
        struct slot *s = &e->slots[from[k]], *d = &e->slots[to[k]];
        if (d->retained) {
            slot_forget_kv(e, d);
            free(d->tok);
        }
        llama_memory_seq_cp(mem, from[k], to[k], -1, -1); /* a free slot holds no KV (invariant) */
        llama_memory_seq_rm(mem, from[k], -1, -1);
        if (e->trie) {
            prefix_trie_remove(e->trie, from[k]);
            prefix_trie_set(e->trie, to[k], s->tok, s->n_prompt); /* out of memory: one less cache entry */
        }
        *d = *s;
        memset(s, 0, sizeof(*s));
        s->wait_for = -1;
        e->stats.moves++;
    }
}

/* A step's sampling. The next tokens of all the sequences fed are picked in parallel, on the
 * decode's threads (idle by then; OpenMP, as ggml's CPU backend), then taken one after the
 * other on this thread in slot order. Why: a temperature sampler over a 151,936-token
 * vocabulary costs about 1.8 ms a sequence on this project's CPU, so 32 batch sequences
 * sampled in a row took as long as their decode (41 ms against 40, issue 32), which every
 * stream waited for between two tokens and which no batch token computed meanwhile. */
static void engine_sample_step(struct engine *e, const struct engine_source *src)
{
    int idx[ENGINE_MAX_PARALLEL], n = 0;
    float *row[ENGINE_MAX_PARALLEL];
    llama_token tok[ENGINE_MAX_PARALLEL];
    bool mask[ENGINE_MAX_PARALLEL];
    for (int i = 0; i < e->n_slots; i++) {
        struct slot *s = &e->slots[i];
        if (!s->used || s->parked || s->i_out < 0)
            continue;
        row[n] = llama_get_logits_ith(e->ctx, s->i_out); /* synchronizes: here, once */
        mask[n] = engine_masks_eog(s);
        s->i_out = -1;
        idx[n++] = i;
    }
    int threads = n > 1 && e->n_cur > 1 ? e->n_cur : 1;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
    for (int k = 0; k < n; k++)
        tok[k] = row[k] ? engine_pick(e, &e->slots[idx[k]], row[k], mask[k], e->cur + (size_t)omp_get_thread_num() * (size_t)e->n_vocab)
                        : -1;
    for (int k = 0; k < n; k++)
        engine_take(e, src, &e->slots[idx[k]], row[k], tok[k], mask[k]);
}

/* Build the step's batch: one pending token per generating slot first (oldest first),
 * then prompt chunks, the priority lane's before ordinary ones (and before them, the
 * prompt of a slot a priority one waits to copy a prefix from). Returns the number of
 * tokens. lane: the source has a priority lane (a server).
 *
 * A step is what an interactive request waits for, twice: the one running when it
 * arrives, then the one that computes its prompt. So when the source has a priority lane,
 * ordinary prompt chunks are held to about one ubatch a step (llama_decode computes a
 * bigger batch as several ubatches in a row anyway, so batch throughput keeps its pace)
 * and are left out of a step that carries a priority prompt. Before this, a burst of
 * admitted batch lines made 2,048-token steps, and an interactive prompt queued behind
 * their chunks in admission order: 5 s to the first token on a 2-core CPU under load
 * (bench/ttft.mjs), 4x the usual. */
static int engine_build_batch(struct engine *e, bool lane)
{
    struct llama_batch *b = &e->batch;
    int budget = e->p.n_batch;
    b->n_tokens = 0;
    int order_idx[ENGINE_MAX_PARALLEL];
    int n = 0;
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].used && !e->slots[i].parked)
            order_idx[n++] = i;
    /* insertion sort by admission order: n <= 256 and nearly sorted */
    for (int i = 1; i < n; i++) {
        int v = order_idx[i], j = i - 1;
        while (j >= 0 && e->slots[order_idx[j]].order > e->slots[v].order) {
            order_idx[j + 1] = order_idx[j];
            j--;
        }
        order_idx[j + 1] = v;
    }
    /* a slot whose prompt prefix a priority slot waits to copy computes as a priority one
     * (else the interactive request would wait behind batch prompts after all) */
    bool boost[ENGINE_MAX_PARALLEL] = {false};
    for (int k = 0; k < n; k++) {
        const struct slot *s = &e->slots[order_idx[k]];
        if (s->priority && s->wait_for >= 0)
            boost[s->wait_for] = true;
    }
    /* who gets how many tokens, decided in admission order (steps.h: the old plan while no
     * interactive sequence runs, the latency budget while one does) */
    struct steps_seq seq[ENGINE_MAX_PARALLEL] = {{0}};
    int planned[ENGINE_MAX_PARALLEL];
    for (int k = 0; k < n; k++) {
        const struct slot *s = &e->slots[order_idx[k]];
        seq[k] = (struct steps_seq){.id = order_idx[k],
                                    .pending = s->n_tok - s->n_past,
                                    .priority = s->priority || boost[order_idx[k]],
                                    .waiting = s->wait_for >= 0};
    }
    struct steps_params sp = {.n_batch = budget, .n_ubatch = e->p.n_ubatch, .sequential = !e->p.kv_unified,
                              .lane = lane, .target_ms = e->p.interactive_step_ms};
    steps_plan(&sp, &e->steps, seq, n, &e->steps_rr, planned, &e->planned);
    e->step_passes = steps_passes(&sp, seq, planned, n);
    int take_of[ENGINE_MAX_PARALLEL] = {0};
    e->step_seqs = e->step_priority = 0;
    for (int k = 0; k < n; k++) {
        take_of[order_idx[k]] = planned[k];
        e->step_seqs += planned[k] > 0;
        e->step_priority += planned[k] > 0 && seq[k].priority;
    }
    /* ... and laid out in sequence-id order. With a KV stream per sequence, llama.cpp cuts
     * a batch into micro-batches of consecutive sequence ids taken in batch order
     * (split_equal, sequential), and every micro-batch is a pass over all the weights: in
     * admission order, sequences whose requests ended at different times scattered each
     * step over several micro-batches (heavy-tailed lengths: a third of the time). */
    int prev = -2;
    for (int i = 0; i < e->n_slots; i++) {
        int take = take_of[i];
        if (!take)
            continue;
        e->stats.seq_runs += i != prev + 1;
        prev = i;
        struct slot *s = &e->slots[i];
        for (int j = 0; j < take; j++) {
            int at = b->n_tokens++;
            b->token[at] = s->tok[s->n_past + j];
            b->pos[at] = s->n_past + j;
            b->n_seq_id[at] = 1;
            b->seq_id[at][0] = (llama_seq_id)i;
            b->logits[at] = 0;
        }
        if (take == s->n_tok - s->n_past) {
            b->logits[b->n_tokens - 1] = 1;
            s->i_out = b->n_tokens - 1;
        }
    }
    return b->n_tokens;
}

/* a decoded step's time: the model learns from it, and a step planned under the
 * interactive budget counts as kept when it took no longer */
static void engine_step_timed(struct engine *e, int n_tokens, double ms)
{
    steps_model_observe(&e->steps, n_tokens, e->step_seqs, e->step_passes, ms);
    if (e->planned.interactive && e->planned.budget_ms > 0) {
        e->stats.steps_interactive++;
        e->stats.steps_budget_kept += ms <= e->planned.budget_ms;
    }
    struct steps_coef k;
    if (steps_model_coef(&e->steps, &k)) {
        e->stats.step_ms_base = k.a;
        e->stats.step_ms_per_token = k.b;
        e->stats.step_ms_per_sequence = k.c;
        e->stats.step_ms_per_pass = k.d;
    }
}

/* one line per step in the step trace (engine_params.step_trace): when the step began, ms
 * spent admitting and arranging (pre), planning (plan), in llama_decode (decode) and
 * sampling and output (sample); what it carried (tokens, sequences fed of those running,
 * interactive ones among those fed, llama.cpp's passes); the budget it was planned for
 * (0: none) */
static void engine_trace_step(struct engine *e, int running, int n_tokens, double t_loop, double t_step, double t_fw,
                              double t_fwd)
{
    fprintf(e->trace,
            "t=%.3f pre=%.2f plan=%.2f decode=%.2f sample=%.2f tokens=%d seqs=%d running=%d interactive=%d passes=%d "
            "budget=%.1f\n",
            t_loop, (t_step - t_loop) * 1e3, (t_fw - t_step) * 1e3, (t_fwd - t_fw) * 1e3, (clock_now() - t_fwd) * 1e3,
            n_tokens, e->step_seqs, running, e->step_priority, e->step_passes, e->planned.budget_ms);
    fflush(e->trace);
}

/* after a successful decode: advance n_past for every slot that fed tokens */
static void engine_commit_batch(struct engine *e)
{
    struct llama_batch *b = &e->batch;
    for (int i = 0; i < b->n_tokens; i++) {
        struct slot *s = &e->slots[b->seq_id[i][0]];
        s->n_past = b->pos[i] + 1;
        if (s->n_past <= s->n_prompt)
            e->stats.prompt_tokens++;
    }
}

static void engine_clear_outputs(struct engine *e)
{
    for (int i = 0; i < e->n_slots; i++)
        e->slots[i].i_out = -1;
}

/* nothing to run: block in the source's wait (it returns when work may have come), or
 * nap when it has none */
void engine_idle(const struct engine_source *src)
{
    if (src->wait)
        src->wait(src->ud);
    else
        usleep(1000);
}

int engine_run(struct engine *e, const struct engine_source *src)
{
    if (e->p.embedding)
        return engine_run_embed(e, src);
    bool exhausted = false;
    atomic_store(&e->stop, 0);
    for (;;) {
        if (atomic_load(&e->stop)) {
            engine_cancel_all(e, src);
            return NS_OK;
        }
        double t_loop = clock_now();
        engine_pull_priority(e, src);
        engine_cancel_where(e, src, false, "the request was cancelled: its client went away");
        bool all_resumed = engine_resume_parked(e);
        if (all_resumed)
            engine_pull_new(e, src, &exhausted);
        int running = engine_running(e);
        if (running == 0) {
            bool any_parked = false;
            for (int i = 0; i < e->n_slots; i++)
                any_parked |= e->slots[i].used;
            if (any_parked)
                continue; /* resume will take the oldest now that nothing runs */
            if (e->pending)
                continue; /* choices of a group still to seat, in the slots now free */
            if (exhausted)
                return NS_OK;
            engine_idle(src);
            continue;
        }
        /* generation grows every running sequence by one cell per step */
        while (engine_kv_reserved(e) > e->n_ctx && (engine_evict_retained(e) || engine_park_newest(e)))
            ;
        engine_clear_outputs(e);
        engine_resolve_waits(e);
        /* a batch-lane hole left after pull_new means the source had nothing for it now */
        engine_compact(e, 0, e->p.n_parallel, true);
        engine_compact(e, e->p.n_parallel, e->n_slots, exhausted);
        /* a step's time is what a stream waits between tokens: the decode, and the sampling
         * and output of every sequence fed (as much as the decode on a large vocabulary) */
        double t_step = clock_now();
        int n = engine_build_batch(e, src->pull_priority != NULL);
        if (n == 0)
            continue;
        double t_fw = clock_now();
        int ret = engine_forward(e, e->batch);
        double t_fwd = clock_now();
        if (ret == 1) {
            /* no KV slot despite the accounting (fragmentation): make room and retry */
            if (!engine_evict_retained(e) && !engine_park_newest(e)) {
                for (int i = 0; i < e->n_slots; i++) {
                    struct slot *s = &e->slots[i];
                    if (s->used && !s->parked)
                        engine_fail_slot(e, src, s, NS_ERR_CONTEXT, "the KV cache has no room for this request");
                }
            }
            continue;
        }
        if (ret != 0) {
            engine_cancel_all(e, src);
            return NS_ERR_ENGINE;
        }
        e->stats.steps++;
        e->stats.tokens_decoded += (uint64_t)n;
        e->stats.seqs_in_steps += (uint64_t)running;
        engine_commit_batch(e);
        engine_sample_step(e, src);
        engine_step_timed(e, n, (clock_now() - t_step) * 1e3);
        if (e->trace)
            engine_trace_step(e, running, n, t_loop, t_step, t_fw, t_fwd);
    }
}
