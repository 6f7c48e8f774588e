/*
 * lora.h — LoRA adapters served as their own models over one loaded base model: the
 * process-wide registry of loaded weights (one llama_model per GGUF file, shared by every
 * engine that runs it), the turn that keeps those engines' decodes one at a time, and the
 * adapter sets an engine applies to its context.
 *
 * DESIGN
 * llama.cpp applies adapters per context (llama_set_adapters_lora), never per sequence, so
 * sequences of different adapter sets cannot share a decode. Each model section with
 * adapters (config `base =` / `lora =`, or --lora) is an engine of its own: its own context
 * and KV, with its adapter set applied once, over the base's weights loaded once
 * (lora_base_acquire). Their steps interleave: while a base has several engines, their
 * llama_decode calls run on the base's one decode thread (lora_base_forward), one at a time
 * in the order asked, each with every CPU thread. Why one thread: llama.cpp's CPU backend
 * computes with an OpenMP team per calling thread, whose idle workers spin for a while after
 * a graph; in the quietest measurement, decodes issued from each engine's own thread in turn
 * ran a mixed batch at 0.55 of a single-adapter batch's throughput, against 0.65 for the same
 * steps from one thread (noisier runs did not separate the two; bench/lora.sh), and the
 * decode thread costs a single adapter nothing measurable (1.00-1.02). An engine alone on its
 * base decodes on its own thread as without adapters. The other design, one context whose
 * adapter set is switched between adapter-homogeneous steps, was slower in every run (mixed
 * batch 0.54-0.68 against 0.61-0.80 for one context per adapter, 0.63-0.74 through the
 * decode thread): a switch costs ~10 us in llama_set_adapters_lora, but re-reserves the
 * context's compute graph at the next decode (2-4 ms against a 17-33 ms step of 8
 * sequences). The cost of this design is memory: each adapter model has its own KV cache.
 *
 * Prefix cache: the KV of a prompt depends on the adapter set, so it must never be shared
 * between sets. Each engine has its own KV and its own prefix trie, so reuse stays within
 * one adapter set by construction.
 *
 * THREADS
 * acquire/release: any thread (one mutex guards the registry). forward: the engines'
 * threads; a base's decode thread runs from its first shared decode to its release. A set
 * is loaded and applied by the thread that creates its engine.
 *
 * OWNERSHIP
 * The registry owns the models; an engine holds a reference from acquire to release (the
 * model is freed with the last one). A lora_set owns its adapters (freed by lora_set_free,
 * before the model's reference is released).
 */
#ifndef NS_ENGINE_LORA_H
#define NS_ENGINE_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LORA_MAX 8             /* adapters stacked on one model */
#define LORA_SCALE_MAX 100.0f  /* |scale| */

struct llama_model;
struct llama_context;
struct llama_model_params;
struct llama_adapter_lora;

/* one adapter of a model: its GGUF file and its scale (1 = as trained) */
struct lora_spec {
    const char *path;
    float scale;
};

/* "FILE[:SCALE]" as a user writes it: *path_len = the length of FILE, *scale = SCALE (1 when
 * absent). The scale is what follows the last ':' when that is a number ("a.gguf:0.5"); a
 * ':' followed by a non-number is part of the file name unless it looks like a scale
 * ("a.gguf:x" is a bad scale: NS_ERR_INVALID with err). A scale is a finite number from
 * -LORA_SCALE_MAX to LORA_SCALE_MAX. */
int lora_spec_parse(const char *text, size_t *path_len, float *scale, char *err, size_t errlen);

/* ---- shared base weights ------------------------------------------------------------------ */
struct lora_base;

/* The model of `path`, loaded with mp the first time and shared after (a later caller's mp
 * is not applied: the first placement stands). *shared says whether it was loaded already.
 * NS_OK, or NS_ERR_INVALID when llama.cpp cannot load it (err says so). */
int lora_base_acquire(const char *path, const struct llama_model_params *mp, struct lora_base **out,
                      struct llama_model **model, bool *shared, char *err, size_t errlen);
void lora_base_release(struct lora_base *b);
/* engines holding b now */
int lora_base_users(const struct lora_base *b);
/* times this process loaded a model's weights (shares excluded): for tests and logs */
uint64_t lora_base_loads(void);

/* An engine's llama_decode (llama_encode when encode) of ctx, a context of b's model: while
 * b has one engine, on the caller's thread; with several, on b's decode thread, one at a time
 * in the order asked (the caller sleeps meanwhile). Returns what llama.cpp returned;
 * *seconds = the time llama.cpp took, waiting excluded. b NULL: on the caller's thread. */
struct llama_batch;
int lora_base_forward(struct lora_base *b, struct llama_context *ctx, struct llama_batch batch, bool encode,
                      double *seconds);

/* ---- adapter sets ------------------------------------------------------------------------- */
struct lora_set {
    int n;
    struct llama_adapter_lora *ad[LORA_MAX];
    float scale[LORA_MAX];
    char desc[256];            /* "a.gguf (x1), b.gguf (x0.5)"; "" when empty */
};

/* Load specs[0..n) for `model` (the base file, for messages): each must be a LoRA adapter
 * GGUF of the base's architecture whose matrices fit the base's shapes. NS_OK; else
 * NS_ERR_INVALID with err naming the file and why ("'x.gguf' is not a LoRA adapter
 * (general.type is 'model')", "... does not fit the base model 'b.gguf': tensor ... has
 * incorrect shape"), the set left empty. */
int lora_set_load(struct lora_set *s, struct llama_model *model, const char *base_path, const struct lora_spec *specs,
                  int n, char *err, size_t errlen);
/* make ctx compute with the set (an empty set: none) */
void lora_set_apply(const struct lora_set *s, struct llama_context *ctx);
void lora_set_free(struct lora_set *s);

#endif
