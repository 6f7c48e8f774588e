/*
 * modelgen.h — write a small random-weight llama-architecture GGUF model whose tokenizer
 * (and chat template) is copied from a real vocab-only GGUF file.
 *
 * Tests and benchmarks run on such models because no trained weights can be downloaded.
 * See modelgen.c for the design notes.
 */
#ifndef NIGHTSHIFT_ENGINE_MODELGEN_H
#define NIGHTSHIFT_ENGINE_MODELGEN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Type of the 2-D weight matrices (token embedding and all projections). Norm vectors are
 * always F32. Row lengths (n_embd and n_ff) must be a multiple of the type's block size:
 * 32 for q8_0, 256 for q4_k; a q4_k matrix whose rows are a multiple of 32 but not of 256 is
 * stored as q5_0, as llama-quantize does (so n_embd 896, the Qwen2-0.5B shape, works). */
enum modelgen_type { MODELGEN_F32, MODELGEN_F16, MODELGEN_Q8_0, MODELGEN_Q4_K };

struct modelgen_params {
    const char *vocab_path;     /* ggml-vocab-*.gguf: tokenizer source (required) */
    const char *out_path;       /* where to write the model (required) */
    const char *name;           /* general.name; default "nightshift-random" */
    const char *chat_template;  /* NULL: keep the vocab's tokenizer.chat_template if it has one,
                                   else write a ChatML jinja template; "" : write none */
    int n_layer, n_embd, n_ff, n_head, n_head_kv, n_ctx_train;
    enum modelgen_type type;    /* type of the 2-D weight matrices; norms stay F32 */
    uint64_t seed;              /* same seed -> byte-identical file */
};

/* A tiny model: 2 layers, n_embd 64, n_ff 128, 4 heads (head dim 16), 2 kv heads,
 * n_ctx_train 4096, Q8_0 weights, seed 42, name "nightshift-random", chat_template NULL.
 * vocab_path and out_path are NULL and must be set by the caller. */
struct modelgen_params modelgen_default_params(void);

/* Validate p, then write the model to p->out_path (through "<out_path>.tmp" and a rename, so a
 * failed or interrupted run never leaves a truncated model under the final name). Tensor data is
 * generated, quantized and written in bounded chunks; memory use does not grow with model size
 * beyond the tokenizer metadata.
 * Returns 0 on success; nonzero on failure with a lowercase message in err (if err != NULL). */
int modelgen_write(const struct modelgen_params *p, char *err, size_t errlen);

/* Parse "f32" | "f16" | "q8_0" | "q4_k" (case-insensitive). Returns 0 and sets *out on success,
 * nonzero (leaving *out untouched) otherwise. */
int modelgen_type_parse(const char *s, enum modelgen_type *out);

/* "f32" | "f16" | "q8_0" | "q4_k"; "?" for an invalid value. */
const char *modelgen_type_name(enum modelgen_type t);

/* ---- LoRA adapters ------------------------------------------------------------------
 * A random LoRA adapter for an existing base GGUF (a generated one or any llama-family file),
 * in the format llama_adapter_lora_init() loads: general.type "adapter", adapter.type "lora",
 * adapter.lora.alpha, and for each targeted matrix W (ne = [n_in, n_out]) of every layer
 * (attn_q, attn_v, attn_output, ffn_up, ffn_down where the base has them) two F32 tensors
 * "W.lora_a" (ne = [n_in, rank]) and "W.lora_b" (ne = [rank, n_out]). The delta
 * (alpha / rank) * B.A changes each projection's output by about `strength` times the base's
 * (A has standard deviation 1/sqrt(n_in), B strength/sqrt(rank)), so greedy output under the
 * adapter differs from the base's. Same parameters and seed, same bytes. */
struct modelgen_lora_params {
    const char *base_path;      /* the base model (required): its architecture and shapes */
    const char *out_path;       /* where to write the adapter (required) */
    int rank;                   /* default 8 */
    float alpha;                /* default = rank (scale 1 at a user scale of 1) */
    float strength;             /* default 2 */
    uint64_t seed;              /* default 7 */
};
struct modelgen_lora_params modelgen_lora_default_params(void);
/* 0, or nonzero with a lowercase message in err */
int modelgen_lora_write(const struct modelgen_lora_params *p, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* NIGHTSHIFT_ENGINE_MODELGEN_H */
