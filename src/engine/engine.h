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

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct engine;
struct cJSON;

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
};

enum engine_pooling {
    ENGINE_POOLING_MODEL = -1, /* the GGUF's pooling type; mean when it names none */
    ENGINE_POOLING_NONE = 0,   /* refused by engine_init: OpenAI's shape is one vector per input */
    ENGINE_POOLING_MEAN = 1,
    ENGINE_POOLING_CLS = 2,
    ENGINE_POOLING_LAST = 3,
};
/* "mean", "cls", "last", "none" -> enum engine_pooling; -2 for anything else */
int engine_pooling_parse(const char *s);

struct engine_params engine_default_params(void);

struct engine_msg {
    const char *role;
    const char *content;
};

enum engine_finish { ENGINE_FINISH_STOP = 0, ENGINE_FINISH_LENGTH = 1 };

struct engine_token_logprob;

#define ENGINE_MAX_STOP 4
#define ENGINE_MAX_TOP_LOGPROBS 20
#define ENGINE_MAX_CHOICES 16

struct engine_logit_bias {
    int32_t token;
    float bias;            /* added to the token's logit; -100 bans it in practice */
};

/* one generated token's log-probability, with the most likely alternatives at that step.
 * Pieces are bytes of the result's logprob_text (a piece may split a UTF-8 character). */
struct engine_token_logprob {
    int32_t token;
    float logprob;
    uint32_t piece_off, piece_len;
    int n_top;
    struct {
        int32_t token;
        float logprob;
        uint32_t piece_off, piece_len;
    } top[ENGINE_MAX_TOP_LOGPROBS];
};

/* one embedding input: text (tokenized with the model's BOS/EOS as it adds them), or token
 * ids (used as they are) */
struct engine_embed_input {
    const char *text;
    size_t text_len;
    const int32_t *tokens;
    int n_tokens;
};

struct engine_request {
    /* embeddings (an engine loaded with params.embedding): the inputs; nothing else in the
     * request applies. Inputs of many requests are decoded together, one sequence each. An
     * input longer than the context fails the request (NS_ERR_CONTEXT, param "input"). */
    const struct engine_embed_input *embed;
    int n_embed;
    int embed_dimensions;  /* the size the client asked for, 0 = any: only the model's own
                              n_embd is served (NS_ERR_UNSUPPORTED, param "dimensions") */

    /* input: messages (chat) or prompt (completion), not both */
    const struct engine_msg *messages;
    int n_messages;
    const char *prompt;

    int max_tokens;        /* < 0: up to the context */
    /* set by any thread once nobody wants the answer (a streaming client went away): the
     * engine ends the request at its next step, NS_ERR_CANCELLED, its KV freed */
    atomic_bool cancelled;
    int min_tokens;        /* EOS suppressed before this many tokens (extension) */
    bool ignore_eos;       /* extension: never stop at EOS */
    const char *stop[ENGINE_MAX_STOP];
    int n_stop;

    float temperature;     /* 0 = greedy */
    float top_p;           /* 1 = off */
    int top_k;             /* 0 = off */
    float min_p;           /* 0 = off */
    float presence_penalty, frequency_penalty; /* 0 = off */
    float repetition_penalty;                  /* 1 = off */
    uint32_t seed;
    /* choices: n independent completions of the one prompt (0 or 1: one). Each runs in its
     * own sequence; the prompt's KV is computed once, by choice 0, and copied to the others
     * (llama_memory_seq_cp), which compute only the last prompt token themselves (its logits
     * start their sampling). Choice i samples with seed + i. done() is called once, when
     * every choice has ended, with all of them in engine_result.choices. More than
     * ENGINE_MAX_CHOICES, or more than the engine's n_parallel sequences, fails the request
     * with NS_ERR_INVALID, param "n". */
    int n;
    /* a GBNF grammar (start rule "root") the output must follow, or NULL: llama.cpp's
     * grammar sampler masks every token that would leave it, and end-of-generation is
     * allowed only once the grammar is complete. min_tokens and ignore_eos do not apply
     * to such a request (they could demand a token the grammar forbids). A grammar that
     * llama.cpp cannot compile fails the request with NS_ERR_INVALID, param
     * "response_format". */
    const char *grammar;
    /* added to the logits before sampling (and before logprobs); a token id outside the
     * vocabulary fails the request with NS_ERR_INVALID, param "logit_bias" */
    const struct engine_logit_bias *logit_bias;
    int n_logit_bias;
    /* record each generated token's log-probability (log-softmax of the logits after
     * logit_bias, before temperature/truncation/grammar) and the top_logprobs most
     * likely tokens (0..ENGINE_MAX_TOP_LOGPROBS); the end-of-generation token is not
     * recorded */
    bool logprobs;
    int top_logprobs;

    /* the client's OpenAI request body (a cJSON object) when there is one: backends that
     * forward requests upstream send it as it came, so fields this engine does not act
     * on still reach the upstream; the local engine never reads it */
    const struct cJSON *body;

    void *user;            /* the caller's; the engine never reads it */
};

/* a request with OpenAI's defaults (temperature 1, top_p 1, no limit) */
void engine_request_init(struct engine_request *r);

/* one choice of a result (request.n); text and logprobs as in engine_result */
struct engine_choice {
    const char *text;
    size_t text_len;
    enum engine_finish finish;
    int stop_index;
    int completion_tokens;
    const struct engine_token_logprob *logprobs;
    int n_logprobs;
    const char *logprob_text;
    size_t logprob_text_len;
};

/* new text of one choice for token() (streaming): text never splits a UTF-8 character nor
 * shows what may become a stop string; logprobs are the tokens generated since the last
 * delta of that choice (request.logprobs), pieces in logprob_text. Valid during the call. */
struct engine_delta {
    int index;                 /* the choice */
    const char *text;
    size_t len;
    const struct engine_token_logprob *logprobs;
    int n_logprobs;
    const char *logprob_text;
};

struct engine_result {
    int status;                /* NS_OK, or an ns_status; message/param say why */
    char message[400];
    const char *param;         /* static string naming the field at fault, or NULL */
    const char *text;          /* generated text, valid UTF-8; valid during done() only */
    size_t text_len;
    enum engine_finish finish;
    int stop_index;            /* which request stop string ended it; -1: EOS, length or error */
    int prompt_tokens;
    int completion_tokens;
    int cached_tokens;         /* prompt tokens not recomputed */
    double t_admit, t_first, t_end; /* seconds, monotonic clock */
    /* from an upstream (backend.h): its HTTP status and its whole JSON answer (success or
     * error body), valid during done() only; 0/NULL from the local engine */
    int http_status;
    const char *raw_body;
    size_t raw_len;
    int attempts;              /* upstream tries made (retries + 1); 0 for the engine */
    /* when the request asked for logprobs: one entry per generated token, in order (a stop
     * string's tokens included), pieces in logprob_text; valid during done() only */
    const struct engine_token_logprob *logprobs;
    int n_logprobs;
    const char *logprob_text;
    size_t logprob_text_len;
    /* every choice in index order (a successful local result: n_choices >= 1, choice 0 is
     * also in the fields above and completion_tokens is the sum over the choices); 0 and
     * NULL for a failure or an upstream's answer */
    int n_choices;
    const struct engine_choice *choices;
    /* embeddings: n_embed vectors of n_embd floats, in input order, L2-normalized */
    const float *embedding;
    int n_embed, n_embd;
    void *owned_;              /* engine_result_copy()'s allocations */
};

/* Deep copy of a result (for use after done() returns): text, raw body, logprobs and
 * choices are copied. NS_ERR_NOMEM leaves dst released. Free with engine_result_release. */
int engine_result_copy(struct engine_result *dst, const struct engine_result *src);
void engine_result_release(struct engine_result *r);

struct engine_source {
    void *ud;
    /* Fill out[0..max) with new requests; return how many (0 = none now), or -1 when
     * no more will ever come: engine_run() then returns once the running ones finish. */
    int (*pull)(void *ud, struct engine_request **out, int max);
    /* Optional: the priority lane (interactive requests). Pulled before pull() at every
     * step, into any free sequence, and admitted even when the KV pool is full: the newest
     * ordinary sequences are parked to make room. Return count, 0 when none. */
    int (*pull_priority)(void *ud, struct engine_request **out, int max);
    /* A request ended (success or failure). Called exactly once per pulled request. */
    void (*done)(void *ud, struct engine_request *req, const struct engine_result *res);
    /* Optional: new text (and logprobs) of one of a request's choices (streaming) */
    void (*token)(void *ud, struct engine_request *req, const struct engine_delta *d);
    /* Optional: block until pull() may have work (a server); NULL when pull never waits. */
    void (*wait)(void *ud);
};

struct engine_info {
    char name[128];        /* general.name, or the file's base name */
    char desc[128];        /* llama_model_desc: "llama 0.5B Q8_0" */
    char chat_template[64];/* "model" or the built-in used */
    int n_ctx;             /* KV cells (after llama.cpp's rounding) */
    int n_ctx_seq;         /* the most one sequence may hold (prompt + completion) */
    int n_ctx_train;
    int n_vocab;
    int n_parallel;
    uint64_t n_params;
    char arch[32];         /* general.architecture: "llama", "qwen2" */
    int file_type;         /* llama_ftype (general.file_type, or as llama.cpp guessed it):
                              0 all F32, 1 F16, 7 Q8_0, 15 Q4_K_M, ... */
    bool embedding;        /* loaded for embeddings only */
    int n_embd;            /* embedding size */
    char pooling[8];       /* embedding: "mean", "cls", "last" */
    int n_embed_max;       /* embedding: the most tokens one input may have */
};

struct engine_stats {
    uint64_t steps;            /* llama_decode calls */
    uint64_t tokens_decoded;   /* tokens in those batches */
    uint64_t seqs_in_steps;    /* sum over steps of sequences in the batch */
    uint64_t prompt_tokens;    /* prompt tokens computed (recomputation included) */
    uint64_t prompt_submitted; /* prompt tokens of the admitted requests */
    uint64_t prompt_cached;    /* ... of which copied from the prefix cache */
    uint64_t gen_tokens;       /* tokens sampled */
    uint64_t preemptions;      /* sequences parked for lack of KV */
    uint64_t seq_runs;         /* sum over steps of runs of consecutive sequence ids in the
                                  batch: with a KV stream per sequence llama.cpp computes at
                                  least one micro-batch (a pass over the weights) per run */
    uint64_t moves;            /* sequences moved to a lower slot to close a gap (engine_compact) */
    double decode_seconds;     /* wall time inside llama_decode/llama_encode: the rest of a
                                  run is nightshift's own (scheduling, sampling, prefix
                                  cache, output) */
};

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

#endif
