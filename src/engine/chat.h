/*
 * chat.h — a model's conversation format, the way its makers trained it: the model's own
 * Jinja chat template rendered exactly as llama-server --jinja renders it, the tool-call
 * format of its family (the lazy grammar that enforces it and the parser that reads calls
 * back), reasoning (<think>...</think> and the like) split from the answer, and JSON Schema
 * turned into a grammar. All of it is llama.cpp's `common` library (common/chat.h,
 * common/json-schema-to-grammar.h) from the same release as libllama.
 *
 * WHY C++ HERE: common is C++ and is where llama.cpp keeps ~70 model families' formats up to
 * date; re-implementing it in C would mean chasing every new family by hand. chat.cpp is the
 * project's only C++ translation unit: it speaks C on this side (extern "C", plain structs,
 * malloc'd strings), and every C++ exception is caught at this boundary and returned as a
 * status with a message. No C++ type crosses it.
 *
 * INTERFACE
 * A request's conversation travels as JSON text in the shape of an OpenAI chat body (the
 * subset that shapes the prompt): {"messages": [...], "tools": [...], "tool_choice",
 * "parallel_tool_calls", "json_schema", "chat_template_kwargs", "reasoning_format",
 * "reasoning_effort", "add_generation_prompt"}. That is the shape common parses itself
 * (common_chat_msgs_parse_oaicompat), so what nightshift renders is what llama-server
 * renders for the same body. proto/ writes it for every dialect (Anthropic and Ollama
 * bodies are translated to it).
 *
 * THREADS: a chat_templates is read-only after init and may be used from any thread;
 * parsers and streams belong to one request (one thread at a time).
 */
#ifndef NS_ENGINE_CHAT_H
#define NS_ENGINE_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct llama_model;
struct llama_vocab;
struct llama_sampler;
struct chat_templates;
struct chat_parser;
struct chat_stream;

/* The model's templates: override (Jinja source text, or a llama.cpp built-in name such as
 * "chatml") when not NULL, else the GGUF's tokenizer.chat_template; a model without one
 * gets ChatML (common's documented fallback). NS_ERR_INVALID when the template does not
 * parse; err says where. */
int chat_templates_init(const struct llama_model *model, const char *override, struct chat_templates **out,
                        char *err, size_t errlen);
void chat_templates_free(struct chat_templates *t);
/* the Jinja source in use (valid while t lives) */
const char *chat_templates_source(const struct chat_templates *t);
/* true when the GGUF carried no template and ChatML stands in */
bool chat_templates_fallback(const struct chat_templates *t);
/* does llama.cpp know a tool-call format for this template (it renders tools and calls)?
 * When not, tools go through nightshift's fallback format (toolwire.h) */
bool chat_templates_tools_native(const struct chat_templates *t);

/* What rendering a conversation gives the engine. Owned: chat_prompt_release. */
struct chat_prompt {
    char *text;                  /* the prompt, special tokens spelled out (tokenize with parse_special) */
    char *grammar;               /* GBNF the output must follow, or NULL */
    bool grammar_lazy;           /* the grammar applies only from a trigger on (tool calls that
                                    may or may not come) */
    char **trigger_patterns;     /* lazy grammar: regexes over the output that start it */
    int n_trigger_patterns;
    int32_t *trigger_tokens;     /* ... and tokens that start it */
    int n_trigger_tokens;
    int32_t *prefill;            /* tokens the (non-lazy) grammar is fed first: the part of the
                                    format the template already wrote into the prompt */
    int n_prefill;
    int32_t *preserved;          /* special tokens the output keeps as text (the parser reads them) */
    int n_preserved;
    char **stops;                /* stop strings the format adds */
    int n_stops;
    bool has_tools;              /* the output may hold tool calls */
    const char *format;          /* llama.cpp's name of the output format (static) */
    bool fallback;               /* set by the caller: calls are in toolwire.h's format, read by it */
    struct chat_parser *parser;  /* reads the output back (chat_parse, chat_stream_new) */
};

/* Render request_json (see INTERFACE) with t. NS_ERR_INVALID with err for what the template
 * or the format refuses (a message shape it cannot render, both tools and a grammar, an
 * unknown reasoning_format); out is zeroed on failure. */
int chat_render(const struct chat_templates *t, const struct llama_model *model, const char *request_json,
                struct chat_prompt *out, char *err, size_t errlen);
void chat_prompt_release(struct chat_prompt *p);

struct chat_tool_call {
    char *id;                    /* "call_..." made here when the format carries none */
    char *name;
    char *arguments;             /* JSON text */
};

/* A model's answer read back: what the user sees, what it thought, the calls it made. */
struct chat_msg {
    char *content;
    char *reasoning;             /* NULL when there was none (or reasoning_format "none") */
    struct chat_tool_call *calls;
    int n_calls;
};

/* Parse a whole output; cut: it ended at max_tokens, so a call may be unfinished (it is
 * kept, with the arguments so far, as OpenAI keeps a cut call). Never fails on odd model
 * output (text it cannot read as a call stays content); NS_ERR_NOMEM or NS_ERR_ENGINE on an
 * internal error, err set. */
int chat_parse(const struct chat_parser *p, const char *text, size_t len, bool cut, struct chat_msg *out, char *err,
               size_t errlen);
void chat_msg_release(struct chat_msg *m);

/* Streaming: feed the text as it comes, get what changed (llama-server's diffs: content and
 * reasoning deltas, a tool call's id and name once, then its argument deltas). Deltas are
 * valid until the next call. */
struct chat_diff {
    const char *content;         /* appended to the answer, or NULL */
    const char *reasoning;       /* appended to the reasoning, or NULL */
    int call_index;              /* -1: none; else a tool call that starts or grows */
    const char *call_id, *call_name; /* set on a call's first delta */
    const char *call_args;       /* arguments text appended, or NULL */
};
struct chat_stream *chat_stream_new(const struct chat_parser *p);
void chat_stream_free(struct chat_stream *s);
/* final: the output ended (what was held back as a possible prefix of a call is settled);
 * cut: as chat_parse's */
int chat_stream_feed(struct chat_stream *s, const char *text, size_t len, bool final, bool cut,
                     const struct chat_diff **diffs, int *n, char *err, size_t errlen);
/* after final: the answer moves to *out (the caller releases it), so ids stay as streamed */
void chat_stream_take(struct chat_stream *s, struct chat_msg *out);

/* The grammar sampler of a request: its own grammar (a response_format's GBNF), else the
 * prompt's format grammar (lazy from its triggers, or fed its prefill tokens first). NULL
 * when the grammar does not compile or its prefill does not fit it (llama.cpp throws there:
 * caught here, err says why). */
struct llama_sampler *chat_grammar_sampler(const struct llama_vocab *vocab, const char *grammar,
                                           const struct chat_prompt *p, char *err, size_t errlen);

/* JSON Schema (text) -> GBNF, as llama.cpp converts it (numeric bounds, format, pattern,
 * allOf/anyOf/oneOf, $ref, ...). NS_ERR_INVALID with llama.cpp's words naming what it cannot
 * honour; *out malloc'd. */
int chat_schema_grammar(const char *schema_json, char **out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

/* ---- JSON Schema pattern check (issue 29: proto/jsonschema's guard) ----------------------
 * llama.cpp's converter translates a regex `pattern` it understands into grammar rules; one
 * it cannot translate (lookarounds, \d, unanchored, ...) it only warns about on stderr and
 * accepts any string in its place. This tells the two apart so that the caller can refuse
 * the schema instead. *translatable false and NS_OK for a valid pattern llama.cpp cannot
 * translate; NS_ERR_INVALID with llama.cpp's words for one that is not a valid regex. */
#ifdef __cplusplus
extern "C" {
#endif
int chat_schema_pattern_ok(const char *pattern, bool *translatable, char *err, size_t errlen);
#ifdef __cplusplus
}
#endif
/* ---- end of the pattern check ---------------------------------------------------------- */


/* ---- memory: the fit and the breakdown (issue 30) ---------------------------------------
 * Two more doors into llama.cpp's C++ (common/fit.h and src/llama-ext.h), here because this
 * is the engine's one C++ translation unit. The engine calls them; nothing else does. */
#ifdef __cplusplus
extern "C" {
#endif
struct llama_model_params;
struct llama_context_params;
struct llama_context;

/* llama.cpp's memory fit (common_fit_params, what llama-server runs before loading): with
 * mp->n_gpu_layers at llama.cpp's default (-1) and cp->n_ctx 0 it chooses the layers to
 * offload and the largest context that leaves `margin` bytes free on every device (host
 * memory when there is no GPU), never below n_ctx_min cells per KV stream. tensor_split
 * (llama_max_devices() floats) and overrides (llama_max_tensor_buft_overrides() entries) are
 * buffers mp may point into afterwards: keep them until the model is loaded.
 * 0: fitted; 1: it cannot fit (the parameters are then as good as it got); NS_ERR_ENGINE
 * with err for a hard error (no such model). Not thread-safe (it swaps llama.cpp's logger). */
int chat_fit_params(const char *model_path, struct llama_model_params *mp, struct llama_context_params *cp,
                    float *tensor_split, void *overrides, size_t margin, uint32_t n_ctx_min, char *err,
                    size_t errlen);

/* what one buffer type of a context holds (llama_get_memory_breakdown) */
struct chat_mem {
    char name[64];       /* the buffer type: "CPU", "Vulkan0", "CUDA0", "CUDA_Host" */
    char device[64];     /* its device ("" when none: a host buffer) */
    bool host;           /* in host memory */
    uint64_t model, context, compute; /* bytes: weights, KV (+ recurrent state), compute buffers */
};
/* up to max rows, returns how many there are (may exceed max); -1 on error */
int chat_memory_breakdown(const struct llama_context *ctx, struct chat_mem *out, int max);
#ifdef __cplusplus
}
#endif
/* ---- end of memory ------------------------------------------------------------------- */

#endif
