/*
 * request.h — the pull contract every backend speaks: what a request asks (struct
 * engine_request), what its end and its stream report (engine_result, engine_delta), the
 * source a backend pulls requests from (engine_source), and what a local model and its
 * engine report (engine_info, engine_stats). Types only: no function here touches a model.
 *
 * WHY HERE: the local engine is the lowest layer that runs requests, so the contract lives
 * with it; the upstream backends (backend/) implement the same contract, which is why a few
 * fields are upstream-only (engine_request.body, engine_result.http_status/raw_body/
 * attempts). Every layer above the backends (proto/, sched/, http/) includes this header,
 * never engine.h: only backend/ (which owns an engine) and cli/ (which configures one:
 * engine_params, version strings) see the engine itself.
 *
 * OWNERSHIP: a request belongs to its caller from pull() until done() (engine.h); result
 * and delta pointers are valid during the callback only (engine_result_copy keeps them).
 */
#ifndef NS_ENGINE_REQUEST_H
#define NS_ENGINE_REQUEST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cJSON;

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
    bool embed_truncate;   /* an input longer than the context is cut to its first tokens
                              (Ollama's truncate) instead of failing the request */

    /* input: messages (chat) or prompt (completion), not both */
    const struct engine_msg *messages;
    int n_messages;
    const char *prompt;
    /* a chat request's whole conversation as JSON text in the shape of an OpenAI chat body
     * (engine/chat.h, INTERFACE: messages with tool calls and tool results, tools,
     * tool_choice, parallel_tool_calls, chat_template_kwargs, reasoning_format, ...). The
     * local engine renders it with the model's own template and reads the answer back
     * (reasoning, tool calls: engine_result). NULL: the engine builds it from messages
     * (plain role and content). Upstream backends read messages or body, never this. */
    const char *chat;

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

/* a tool call the model made, read back from its output in its family's format */
struct engine_tool_call {
    const char *id;            /* "call_..." */
    const char *name;
    const char *arguments;     /* JSON text */
};

/* one choice of a result (request.n); text, reasoning, tool calls and logprobs as in
 * engine_result */
struct engine_choice {
    const char *text;
    size_t text_len;
    const char *reasoning;
    size_t reasoning_len;
    int reasoning_tokens;
    const struct engine_tool_call *tool_calls;
    int n_tool_calls;
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
    /* a chat request (engine_request.chat): text is the answer's new text; reasoning what
     * the model thought, split from it; a tool call that starts (tool_index >= 0 with its id
     * and name) or whose arguments grow (tool_args). NULL / -1 when nothing of that kind */
    const char *reasoning;
    size_t reasoning_len;
    int tool_index;
    const char *tool_id, *tool_name;
    const char *tool_args;
    const struct engine_token_logprob *logprobs;
    int n_logprobs;
    const char *logprob_text;
    /* the choice's prompt tokens read from the prefix cache, as engine_result.cached_tokens
     * will say (known once the prompt is in, so on every delta of the local engine); -1 when
     * the source cannot say before the end (an upstream) */
    int cached_tokens;
};

struct engine_result {
    int status;                /* NS_OK, or an ns_status; message/param say why */
    char message[400];
    const char *param;         /* static string naming the field at fault, or NULL */
    const char *text;          /* generated text, valid UTF-8; valid during done() only. For a
                                  chat request: the answer, reasoning and tool calls taken out */
    size_t text_len;
    /* a chat request: what the model thought (its <think> part or its format's), NULL when
     * none or when the request asked reasoning_format "none" (it then stays in text), and
     * the tool calls it made, parsed (done() only) */
    const char *reasoning;
    size_t reasoning_len;
    int reasoning_tokens;      /* of completion_tokens, those the reasoning took (all choices) */
    const struct engine_tool_call *tool_calls;
    int n_tool_calls;
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
    /* where it runs (issue 30) */
    char where[192];       /* "Vulkan0 (llvmpipe), 6/6 layers" or "CPU" */
    int n_layers;          /* offloadable layers: the repeating ones + the output layer */
    int n_layers_gpu;      /* of which on a GPU device */
    char cache_type_k[8], cache_type_v[8]; /* "f16", "q8_0", "q4_0" */
    char flash_attn[8];    /* as asked: "auto", "on", "off" */
    uint64_t mem_model, mem_kv, mem_compute; /* bytes on all devices (host included) */
    int n_dev_mem;         /* rows of dev_mem: each device buffer type the model uses */
    struct {
        char name[64];     /* "Vulkan0", "CUDA0", "CPU", "CPU_REPACK" */
        bool host;         /* host memory */
        uint64_t bytes;    /* weights + KV + compute buffers there */
    } dev_mem[6];
    char fit_note[256];    /* what the memory fit changed ("" when nothing) */
    /* LoRA (engine/lora.h): the adapters applied ("a.gguf (x1), b.gguf (x0.5)"; "" none), and
     * whether the weights were loaded already by another model of the same file (shared) */
    char lora[256];
    bool shared_weights;
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
    /* the interactive latency budget (engine.h's interactive_step_ms): steps planned while
     * interactive sequences ran, and of those the ones whose decode took no longer than
     * their budget; the step-time model's fit (ms = a + b * tokens + c * sequences + d *
     * passes, engine/steps.h; 0 until it knows) */
    uint64_t steps_interactive, steps_budget_kept;
    double step_ms_base, step_ms_per_token, step_ms_per_sequence, step_ms_per_pass;
};

#endif
