/*
 * engine_int.h — the engine's private state, shared by the files of the engine module
 * (engine.c, device.c, embed.c, options.c, prompt.c) and by nothing else: engine.h is the
 * public API.
 *
 * DESIGN
 * engine.c grew past what one file should hold; it is split along its sections: device.c
 * (llama.cpp's backends, the devices, and where a model runs: placement, memory fit),
 * embed.c (engine_run for an embedding engine), options.c (option names, model file
 * checks), prompt.c (chat rendering, tokenizing), engine.c (init/free, the per-request
 * lifecycle and the step loop). struct engine and struct slot are defined
 * here so that each file reads the same state; the functions declared below are the ones
 * one file calls in another, engine_-prefixed and internal (not in engine.h).
 *
 * THREADS
 * As engine.h: an engine is driven by one thread (engine_run's); the functions here are
 * called from it, or from engine_init / engine_plan_placement on the caller's thread.
 *
 * INVARIANTS
 * See engine.c's header for the slot, KV and group invariants these structs keep.
 */
#ifndef NS_ENGINE_INT_H
#define NS_ENGINE_INT_H

#include "engine.h"

#include "ggml-backend.h"
#include "llama.h"

#include "chat.h"
#include "lora.h"
#include "prefix.h"
#include "steps.h"
#include "toolwire.h"

#include "../util/buf.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* the GPU kind this binary was built for (CMake's NS_GPU_KIND); "cpu" without one */
#ifndef NS_GPU_KIND
#define NS_GPU_KIND "cpu"
#endif

#define ENGINE_MAX_PARALLEL 256 /* LLAMA_MAX_SEQ */
#define ENGINE_TEXT_MAX (64u << 20)

struct group;

struct slot {
    bool used, parked;
    struct group *grp;              /* request.n > 1: the choices' group, else NULL */
    int choice;                     /* which choice this slot computes */
    int lp_sent;                    /* logprobs entries already passed to token() */
    bool priority;                  /* came through pull_priority() */
    uint64_t order;                 /* admission order; higher = newer */
    struct engine_request *req;
    llama_token *tok;
    int n_tok, cap_tok;
    int n_prompt, n_past, n_gen, max_gen;
    int cached;
    bool eog_masked;                /* EOS suppressed for the whole request */
    int stop_index;                 /* the stop string that ended it, -1 none */
    struct llama_sampler *smpl;     /* NULL: greedy argmax */
    /* a chat request: its rendered prompt's grammar, triggers, preserved tokens, stops and
     * parser (owned by the slot, or by its group for request.n > 1), and the stream reading
     * its output back (streaming only) */
    struct chat_prompt *chat;
    bool chat_owned;
    struct chat_stream *cs;
    struct toolwire_stream *tws;    /* ... when its calls are in the fallback format */
    struct buf text;
    size_t sent;                    /* bytes of text passed to token() */
    size_t clean;                   /* bytes of text known valid UTF-8 (streaming); sent <= clean */
    int i_out;                      /* row of this slot's logits in the batch, -1 none */
    double t_admit, t_first;
    struct engine_token_logprob *lp; /* request.logprobs: one per generated token */
    int n_lp, cap_lp;
    struct buf lp_text;             /* their pieces */
    /* prefix cache */
    bool retained;                  /* free, but its KV (tok[0..n_past)) is kept for reuse */
    uint64_t last_used;             /* LRU among retained slots */
    int wait_for;                   /* slot whose prompt prefix this one waits to copy, -1 none */
    int wait_len;                   /* ... that many tokens of it */
};

/* the finished part of one choice of a group, kept until the last choice ends */
struct group_choice {
    char *text;
    size_t text_len;
    struct chat_msg msg;            /* a chat request's answer read back */
    struct engine_token_logprob *lp;
    int n_lp;
    char *lp_text;
    size_t lp_text_len;
    enum engine_finish finish;
    int stop_index;
    int n_gen;
};

struct group {
    struct engine_request *req;
    int n;                          /* choices */
    int seated;                     /* choices given a slot so far */
    int ended;                      /* choices finished */
    bool priority;                  /* seated in the priority lane's slots */
    llama_token *tok;               /* the prompt, for choices seated later */
    int n_tok, max_gen;
    int n_prompt, cached;           /* choice 0's */
    double t_admit, t_first;
    struct group_choice ch[ENGINE_MAX_CHOICES];
    struct chat_prompt *chat;       /* a chat request's, shared by its choices */
    struct group *next;             /* on e->pending while seated < n */
};

struct engine {
    struct engine_params p;
    struct llama_model *model;      /* shared with the other engines of its file (lora.h) */
    struct lora_base *base;         /* ... through this reference */
    struct lora_set lora;           /* the adapters applied to ctx (params.lora) */
    struct llama_context *ctx;
    const struct llama_vocab *vocab;
    struct llama_batch batch;
    int n_ctx, n_ctx_seq, n_vocab;
    int max_piece;                  /* the most bytes one token stands for (specials included) */
    struct chat_templates *chat;    /* the model's chat template (chat.h); NULL for embeddings */
    char tmpl_label[64];
    llama_token *eog;               /* end-of-generation tokens */
    int n_eog;
    struct slot *slots;
    int n_slots;
    uint64_t next_order;
    atomic_int stop;
    struct engine_stats stats;
    struct engine_info info;
    struct prefix_trie *trie;       /* NULL when the prefix cache is off */
    struct group *pending;          /* groups with choices still to seat, oldest first */
    /* the interactive latency budget (steps.h): step times learned from the decodes, the
     * round-robin position among batch decodes, and what the last plan decided */
    struct steps_model steps;
    llama_token_data *cur;          /* n_cur x n_vocab: each sampling thread's candidates */
    FILE *trace;                    /* engine_params.step_trace, open; NULL none */
    int n_cur;
    int steps_rr;
    struct steps_outcome planned;
    int step_seqs;                  /* sequences fed by the step built last */
    int step_passes;                /* ... and llama.cpp's passes over it (steps_passes) */
    int step_priority;              /* ... and the interactive sequences among those fed */
    /* where the model runs: the devices asked for (NULL-terminated; NULL = llama.cpp's
     * choice, every GPU), and the buffers the memory fit may point the model's params into */
    ggml_backend_dev_t *devs;
    float *fit_split;
    struct llama_model_tensor_buft_override *fit_overrides;
};

/* ---- engine.c ---- */

/* one forward pass (decode, or encode for an encoder-only model), timed in stats */
int engine_forward(struct engine *e, struct llama_batch b);
/* a llama.cpp log callback that drops everything */
void engine_quiet_log(enum ggml_log_level level, const char *text, void *ud);
/* ends req with an error: status, the offending field (or NULL), the prompt tokens counted */
void engine_fail(const struct engine_source *src, struct engine_request *req, int status, const char *param,
                 int n_prompt, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* nothing to run: wait for the source, or nap */
void engine_idle(const struct engine_source *src);

/* ---- device.c: where the model runs ---- */

/* --device NAME[,NAME...] -> e->devs (NULL-terminated); none given: e->devs stays NULL */
int engine_pick_devices(struct engine *e, char *err, size_t errlen);
/* the GPUs llama.cpp would put layers on: among e->devs, or every one */
int engine_n_gpus(const struct engine *e);
/* GGUF <arch>.context_length without loading the model (0 when absent) */
int engine_peek_ctx_train(const char *path);
/* fills e->info's memory breakdown, devices and layer counts after the context is made */
void engine_describe_where(struct engine *e, int ngl);
/* fewer sequences (or a smaller context) for the n_fit cells the memory fit found room for */
void engine_apply_fit(struct engine *e, struct engine_params *p, int n_fit, const char *margin_where);

/* ---- options.c ---- */

/* ENGINE_CACHE_* -> the KV cache's ggml type */
enum ggml_type engine_cache_ggml_type(int t);

/* ---- prompt.c ---- */

/* tokenize the request's prompt into *tok (malloc'd); returns count or < 0. A chat request
 * is rendered first; its rendering goes to *chat when chat is not NULL (else freed). */
int engine_tokenize(struct engine *e, const struct engine_request *r, llama_token **tok, struct chat_prompt **chat,
                    char *err, size_t errlen);
/* frees a rendered chat prompt (NULL: nothing) */
void engine_chat_free(struct chat_prompt *cp);

/* ---- embed.c ---- */

/* engine_run for an embedding engine (e->p.embedding) */
int engine_run_embed(struct engine *e, const struct engine_source *src);

#endif
