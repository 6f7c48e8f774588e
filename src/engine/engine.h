/*
 * engine.h — the local inference engine: one GGUF model, one llama.cpp context whose
 * KV cache is shared by up to n_parallel sequences, decoded together (continuous batching).
 *
 * This module and modelgen are the only code that includes llama.h.
 *
 * DESIGN
 * The engine pulls work; it is never pushed. engine_run() loops: at every step it asks
 * its source for as many new requests as it has free sequences and KV room, builds ONE
 * llama_batch holding the next token of every decoding sequence plus prompt chunks of
 * newly admitted ones (chunked prefill under a per-step token budget), calls llama_decode
 * once, samples for every sequence that produced logits, retires finished sequences
 * (their KV freed at once) and admits new ones in the same step. Pulling keeps admission
 * order and batch composition a pure function of the input order, so a run is
 * reproducible, and it lets the caller's scheduler decide priority (interactive before
 * batch) at the last moment.
 *
 * KV memory: by default n_ctx is split evenly between the sequences (each attends to its
 * own cells, which is what makes many short sequences fast). llama.cpp then computes a
 * step as one pass over the weights per run of consecutive sequence ids, so the batch is
 * written in sequence-id order and running sequences are packed down into free slots
 * (engine_compact) to keep each step one run. With kv_unified it is one
 * pool of n_ctx cells: a sequence is admitted when its prompt fits next to the sequences
 * already running; when generation outgrows the pool, the most recently admitted sequence
 * is parked (its KV dropped, its tokens kept) and recomputed later: the oldest sequence
 * always makes progress.
 *
 * PRIORITY
 * A server's interactive requests come through pull_priority(): at every step they are
 * admitted first, into n_priority sequences reserved for them (or any free one), and
 * ordinary (batch) sequences are parked when their KV is needed; their prompt chunks go
 * into a step before ordinary ones, and a step that carries one has no ordinary prompt
 * tokens. With a priority lane, ordinary prompt chunks are held to about one ubatch per
 * step, so steps stay short. A saturating batch therefore delays an interactive request
 * by at most one short step.
 *
 * THREADS
 * engine_run() runs on the caller's thread and calls the source's callbacks on it.
 * engine_stop() may be called from any thread (or a signal handler).
 *
 * OWNERSHIP
 * Requests belong to the caller, who keeps each one alive and unchanged from pull() until
 * done() is called for it. The engine owns everything else (model, context, samplers).
 */
#ifndef NS_ENGINE_ENGINE_H
#define NS_ENGINE_ENGINE_H

#include "lora.h"      /* LoRA adapters over shared base weights */
#include "request.h"   /* the request contract: requests, results, sources, info, stats */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct engine;

struct engine_params {
    const char *model_path;
    int n_ctx;             /* KV cells for all sequences; 0 = 2048 per sequence (auto) */
    int n_parallel;        /* most sequences decoding at once; default 64 */
    int n_batch;           /* most tokens in one llama_decode; default 2048 */
    int n_ubatch;          /* physical batch; default 512 */
    int n_threads;         /* 0 = online CPUs */
    int n_priority;        /* extra sequences only the priority lane may use (interactive
                              requests of a server); 0 = none */
    bool kv_unified;       /* one KV pool shared by all sequences (needed to share prompt
                              prefixes) instead of n_ctx split evenly between them. Split is
                              the default: each sequence then attends to its own cells only,
                              while unified attention scans every used cell for every token
                              (measured 3-4x slower at 32 sequences) */
    bool prefix_cache;     /* reuse prompt prefixes already in KV (default true): a new
                              sequence copies the longest prefix another sequence holds,
                              or waits for one being computed, instead of recomputing it */
    const char *chat_template; /* NULL = the model's own, else a llama.cpp built-in name */
    bool verbose;          /* let llama.cpp log to stderr */
    /* Load the model for embeddings only: one llama.cpp context computes either logits or
     * pooled embeddings, so such an engine serves engine_request.embed requests and fails
     * generation requests (NS_ERR_INVALID, param "model"), and a generation engine fails
     * embedding requests the same way. */
    bool embedding;
    int pooling;           /* embedding: an enum engine_pooling */
    /* The interactive latency budget (steps.h): while interactive sequences run, a step's
     * predicted time (learned from this engine's own steps: ms = a + b * tokens + c *
     * sequences + d * passes) is held to this many ms, batch decodes (round-robin, one
     * window of sequence ids) and prompt chunks filling what it leaves, at least one batch
     * token a step; with no interactive sequence steps are as large as they can be.
     * 0 = auto (default): twice what the step's interactive tokens alone are predicted to
     * take; < 0 = off: every generating sequence decodes every step. Measured (issue 32,
     * bench/latency.mjs, 60M model, --parallel 32, 2 cores): under a saturating batch auto
     * cut a stream's inter-token p99 from about 200 ms to 45 and kept the batch at 0.78 of
     * its throughput with 0.5 streams/s. */
    double interactive_step_ms;
    /* a file that gets one line per engine step (its plan, passes, decode and sampling
     * times), for diagnosing step sizes; NULL = none (NIGHTSHIFT_STEP_TRACE in the CLI).
     * Appended to; read by engine_init only. */
    const char *step_trace;

    /* Where the model runs (issue 30). A build with a GPU backend (scripts/bootstrap.sh with
     * NIGHTSHIFT_GPU) loads llama.cpp's backends at the first engine call; the CPU build has
     * the CPU device only. */
    int n_gpu_layers;      /* ENGINE_GPU_LAYERS_AUTO (default): all when a GPU device is
                              present, fewer when the fit says they do not fit; ALL: every
                              layer; N: the last N layers (+ the output layer as the N+1th) */
    const char *devices;   /* comma-separated device names ("Vulkan0,CUDA1", as
                              engine_devices_list names them); NULL = every GPU */
    int main_gpu;          /* split_mode none: the device (index in `devices`) that holds it all */
    int split_mode;        /* an enum engine_split_mode */
    int flash_attn;        /* an enum engine_flash_attn */
    int cache_type_k, cache_type_v; /* enum engine_cache_type: KV cache element types */
    /* The memory fit (llama.cpp's common/fit, as llama-server): before loading, choose the
     * layers to offload (with n_gpu_layers auto) and, when the context asked for (n_ctx, or
     * the default per sequence) would not leave fit_margin_mib free on a device, the most
     * sequences (then the largest context) that do; the change is printed on stderr and
     * shown in engine_info. ENGINE_FIT_AUTO (default): only when a GPU device is used (on
     * the CPU llama.cpp measures against total host memory, and the measuring costs about a
     * second per start); ON: also on the CPU; OFF: load as asked, and fail at the
     * allocation. */
    int fit;
    int fit_margin_mib;    /* default 1024, as llama-server's --fit-target */

    /* LoRA adapters (lora.h): applied to this engine's context, stacked, each with its scale;
     * the caller's array, read by engine_init only. NULL/0: none. Whatever the adapters, the
     * weights of model_path are loaded once per process: every engine of the same file shares
     * them (the first one's placement stands), and such engines' steps are decoded one at a
     * time, on one thread (lora.h). */
    const struct lora_spec *lora;
    int n_lora;
};

enum { ENGINE_GPU_LAYERS_AUTO = -2, ENGINE_GPU_LAYERS_ALL = -1 };
enum engine_split_mode { ENGINE_SPLIT_NONE = 0, ENGINE_SPLIT_LAYER = 1, ENGINE_SPLIT_ROW = 2 };
enum engine_flash_attn { ENGINE_FA_AUTO = -1, ENGINE_FA_OFF = 0, ENGINE_FA_ON = 1 };
enum engine_cache_type { ENGINE_CACHE_F16 = 0, ENGINE_CACHE_Q8_0 = 1, ENGINE_CACHE_Q4_0 = 2 };
enum engine_fit { ENGINE_FIT_AUTO = -1, ENGINE_FIT_OFF = 0, ENGINE_FIT_ON = 1 };
/* the names the CLI takes ("f16", "q8_0", "q4_0"; "on", "off", "auto"; "none", "layer",
 * "row"; "all", "auto" or a number 0..10000) -> the enums above; -3 for anything else */
int engine_cache_type_parse(const char *s);
const char *engine_cache_type_name(int t);
int engine_flash_attn_parse(const char *s); /* also --fit: on, off, auto */
int engine_split_mode_parse(const char *s);
int engine_gpu_layers_parse(const char *s);

enum engine_pooling {
    ENGINE_POOLING_MODEL = -1, /* the GGUF's pooling type; mean when it names none */
    ENGINE_POOLING_NONE = 0,   /* refused by engine_init: OpenAI's shape is one vector per input */
    ENGINE_POOLING_MEAN = 1,
    ENGINE_POOLING_CLS = 2,
    ENGINE_POOLING_LAST = 3,
};
/* "mean", "cls", "last", "none" -> enum engine_pooling; -2 for anything else */
int engine_pooling_parse(const char *s);
/* an interactive_step_ms as a user writes it: "auto" (0), "off" (-1) or milliseconds from
 * 1 to 60000; NS_OK, or NS_ERR_INVALID for anything else */
int engine_step_ms_parse(const char *s, double *out);

struct engine_params engine_default_params(void);


/* Load the model and create the context. On failure *out is NULL and err says why
 * ("'x.gguf' is not a GGUF file", "cannot load model ..."). Status NS_ERR_INVALID for
 * a bad file, NS_ERR_ENGINE for llama.cpp failures. */
int engine_init(struct engine_params p, struct engine **out, char *err, size_t errlen);
void engine_free(struct engine *e);

/* Run until the source is exhausted (pull returned -1 and nothing is running) or
 * engine_stop() is called; on stop, running requests end with NS_ERR_CANCELLED.
 * Returns NS_OK, or NS_ERR_ENGINE when llama_decode fails fatally. */
int engine_run(struct engine *e, const struct engine_source *src);
void engine_stop(struct engine *e);

void engine_get_info(const struct engine *e, struct engine_info *out);
/* The GGUF file loaded, and the chat template applied (the model's Jinja source, or a
 * llama.cpp built-in name such as "chatml"); valid as long as the engine is not freed. */
const char *engine_model_path(const struct engine *e);
const char *engine_chat_template(const struct engine *e);
void engine_get_stats(const struct engine *e, struct engine_stats *out);

/* Number of prompt tokens of a request, with the chat template applied (for checks and
 * prefix grouping before scheduling). < 0 with err set on failure. */
int engine_count_tokens(struct engine *e, const struct engine_request *r, char *err, size_t errlen);

/* The prompt a chat request renders to with the model's template, special tokens spelled
 * out, exactly as llama-server --jinja's /apply-template renders it (no tokenizing): *out
 * malloc'd. NS_ERR_INVALID with err for a request without messages or one the template
 * refuses. Any thread, as engine_count_tokens. */
int engine_render_prompt(struct engine *e, const struct engine_request *r, char **out, char *err, size_t errlen);

/* Is `path` a GGUF file? 0 yes; NS_ERR_INVALID with err filled otherwise. */
int engine_check_gguf(const char *path, char *err, size_t errlen);

/* general.name of a GGUF file without loading it; 0 ok (out may be "" when absent) */
int engine_peek_name(const char *path, char *out, size_t n, char *err, size_t errlen);

/* the version the linked llama.cpp reports (llama_version(): "0.5.0-dev") */
const char *engine_llama_version(void);
/* the git commit it was built from ("de3ff81"; "" when the build did not know it) */
const char *engine_llama_commit(void);

/* the x86 instruction sets the linked llama.cpp was compiled to use: its CPU code dies with
 * SIGILL on a CPU that lacks one of them (scripts/bootstrap.sh builds for the build
 * machine's CPU, AMX excluded) */
struct engine_cpu_build {
    bool avx, avx2, avx512, amx;
};
void engine_cpu_build(struct engine_cpu_build *out);

/* ---- backends and devices (issue 30) -------------------------------------------------------
 * Which llama.cpp this binary uses: "cpu" (built from source, static, the CPU backend only)
 * or "vulkan" / "cuda" (linked to the prebuilt libraries of the same release from the npm
 * package, whose backends are loaded from their directory at the first call here). */
const char *engine_build_kind(void);
/* The linked libraries are the release this binary was built against (ggml's version and
 * commit compared with what the build recorded), and the GPU backend of the build loaded.
 * NS_OK, or NS_ERR_ENGINE with err saying what is wrong and how to fix it (a mismatch is
 * refused: engine_init fails with the same words). Loads the backends once, any thread. */
int engine_backends_check(char *err, size_t errlen);

struct engine_device {
    char name[64];         /* "CPU", "Vulkan0", "CUDA0": what --device takes */
    char desc[128];        /* "llvmpipe (LLVM 15.0.6, 256 bits)", "NVIDIA H100 80GB HBM3" */
    char backend[32];      /* its backend: "CPU", "Vulkan", "CUDA" */
    char type[8];          /* "cpu", "gpu", "igpu", "accel" */
    uint64_t mem_free, mem_total; /* bytes, as the backend reports them now */
};
/* the devices llama.cpp sees, into out[0..max); returns how many there are */
int engine_devices_list(struct engine_device *out, int max);

/* Where a model would run with these params, measured without allocating anything (the
 * memory fit's no-alloc load: safe beside a running server): layers in all and on a GPU, and
 * the most KV cells that leave fit_margin_mib free (0 when not measured: no GPU and fit not
 * on). For `doctor`. NS_OK, or NS_ERR_INVALID / NS_ERR_ENGINE with err. */
struct engine_plan {
    int n_layers, n_layers_gpu;
    int n_ctx_fit;
    bool fits;             /* the fit found a placement that leaves the margin */
};
int engine_plan_placement(const struct engine_params *p, struct engine_plan *out, char *err, size_t errlen);

#endif
