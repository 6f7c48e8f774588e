/*
 * backend.h — where a model's requests run. Each kind of backend is a const table of
 * operations registered by name (like SQLite's VFS): "local" (the built-in llama.cpp
 * engine), "openai-http" (any OpenAI-compatible /v1/chat/completions server: vLLM,
 * Ollama, llama.cpp's llama-server, OpenAI, Groq, ...), and "openai-batch" /
 * "anthropic-batch" / "gemini-batch" (a provider's own batch API, for its batch discount).
 *
 * DESIGN
 * Every backend speaks the engine's pull contract (engine.h, struct engine_source): its
 * run() loop asks the scheduler for as many requests as it has room for, and reports each
 * one's end through done() exactly once. So the scheduler (sched.h) — interactive lane
 * first, batch lines round-robin, results written line by line to the store — is the same
 * whatever runs the requests, and so are durability and accounting. Room means free
 * sequences and KV for the engine, and free connections under the adaptive concurrency
 * limit for an upstream.
 *
 * A request forwarded upstream is the client's own OpenAI body when it has one
 * (engine_request.body), so fields nightshift's engine does not implement (tools,
 * response_format, logprobs, ...) still reach the upstream; its answer comes back whole
 * in engine_result.raw_body and is passed on unchanged (model name aside).
 *
 * OWNERSHIP: backend_init() copies what it needs from the conf (strings included);
 * the caller owns the conf. The backend owns its engine or connections.
 */
#ifndef NS_BACKEND_BACKEND_H
#define NS_BACKEND_BACKEND_H

#include "../engine/request.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct engine;
struct engine_params;

struct backend_conf {
    const char *name;             /* the model name clients use */
    const char *kind;             /* "local" (default) or "openai-http" */

    /* local: the engine's parameters (engine.h), NULL = engine_default_params(); the
     * caller's, read by backend_init only */
    const struct engine_params *engine;

    /* openai-http */
    const char *url;              /* base URL, /chat/completions is appended: http://h:8080/v1 */
    const char *api_key;          /* sent as Bearer; never logged, stored or echoed */
    const char *upstream_model;   /* "model" sent upstream; NULL = the client's */
    int concurrency;              /* most requests in flight; default 16 */
    int max_attempts;             /* tries per request, the first included; default 6 */
    double timeout_s;             /* per attempt; default 600 */
    double retry_base_s;          /* backoff: base * 2^(try-1), full jitter; default 0.5 */
    double retry_max_s;           /* cap of one backoff wait; default 60 */
    int circuit_failures;         /* consecutive failed tries that open the circuit; default 5 */
    double circuit_cooldown_s;    /* first open period, doubled while it keeps failing (max
                                     300 s); default 5 */
    bool shed_when_open;          /* when the circuit opens, requests waiting for a retry end at
                                     once (NS_ERR_UNAVAILABLE) instead of waiting out the cooldown:
                                     the model has a fallback to take them (sched.h); default false */

    /* openai-batch, anthropic-batch: lines go upstream in batches */
    int max_lines;                /* most requests in one upstream batch; default 50000 */
    int64_t max_bytes;            /* most bytes of one upstream input file; default 200 MB */
    /* openai-batch: the provider (batch_preset.h: its windows, endpoints, and the caps of
     * max_lines and max_bytes), a static string; NULL = OpenAI's own */
    const char *provider;
    int64_t completion_window_s;  /* the window an upstream batch gets: sent as the nearest one
                                     the provider accepts (batch_preset_window); default 24h */
    int flush_lines;              /* send when this many wait and no more are coming; default 50 */
    double flush_after_s;         /* ... or when the oldest has waited this long; default 120 */
    double poll_interval_s;       /* first poll of an upstream batch; x1.5 per poll; default 5 */
    double poll_max_s;            /* longest wait between polls; default 300 */
    const char *state_dir;        /* where a kind may keep durable state (gemini-batch: its
                                     upstream jobs, to poll them again after a restart); NULL =
                                     none */

    /* accounting: the real-time price, USD per million tokens (0 = unknown), and the share
     * of it batch work does not pay (0.5 = a provider's 50% batch discount; 1 = free, e.g.
     * a local model priced at the cloud model it replaces) */
    double price_input, price_output;
    double batch_discount;
};

struct backend_conf backend_default_conf(void);

struct backend_info {
    char kind[16];
    char desc[256];               /* "llama 0.5B Q8_0" or the upstream URL */
    int n_ctx_seq;                /* most tokens one request may hold; 0 = the upstream decides */
};

enum backend_circuit { BACKEND_CIRCUIT_CLOSED = 0, BACKEND_CIRCUIT_OPEN = 1, BACKEND_CIRCUIT_HALF_OPEN = 2 };

struct backend_stats {
    uint64_t attempts;            /* requests sent upstream, retries included */
    uint64_t retries;
    uint64_t failed;              /* requests that ended in an error */
    uint64_t rate_limited;        /* 429 answers */
    int circuit;                  /* enum backend_circuit */
    int inflight;
    int limit;                    /* the adaptive concurrency limit now */
};

struct backend_ops {
    const char *kind;
    bool forward;               /* requests go upstream as the client's body (engine_request.body):
                                   parse them with oai_request_forward_from_json() */
    /* what the kind is: callers ask these, never compare kind names (issue 28) */
    bool local_file;            /* runs a GGUF file on this machine: a model section needs path, no url */
    bool offline;               /* answers through a provider's batch API, hours later: real-time
                                   requests are queued like batch lines, and `nightshift run`
                                   does not drive it */
    const char *auth_header;    /* how its upstream takes the key, a printf format with one %s
                                   ("Authorization: Bearer %s"); NULL: no upstream */
    const char *extra_header;   /* sent on every upstream call ("anthropic-version: ..."), or NULL */
    const char *default_url;    /* the provider's own URL, used when a model gives none; or NULL
                                   (then url is required) */
    const char *default_key_env;/* the environment variable read for the key when a model names
                                   none with api_key_env ("GEMINI_API_KEY"); or NULL */
    int (*init)(const struct backend_conf *c, void **out, char *err, size_t errlen);
    void (*free)(void *impl);
    /* engine_run()'s contract: returns when the source is exhausted or stop() is called;
     * requests still running then end with NS_ERR_CANCELLED */
    int (*run)(void *impl, const struct engine_source *src);
    void (*stop)(void *impl);   /* any thread */
    /* optional, any thread: new work may be waiting (run() may be asleep) */
    void (*wake)(void *impl);
    /* prompt tokens of a request; NULL when the backend cannot know (an upstream) */
    int (*count_tokens)(void *impl, const struct engine_request *r, char *err, size_t errlen);
    void (*get_info)(void *impl, struct backend_info *out);
    /* NULL for the local engine (its counters are engine_stats) */
    void (*get_stats)(void *impl, struct backend_stats *out);
    /* the engine of a local backend, else NULL: for backend.c's wrappers below only */
    struct engine *(*engine)(void *impl);
    /* optional, any thread: new limits from a reloaded config (its numbers only; the URL,
     * key and model name stay); applied by run() at its next turn */
    void (*reconfigure)(void *impl, const struct backend_conf *c);
};

extern const struct backend_ops backend_local_ops;
extern const struct backend_ops backend_http_ops;
extern const struct backend_ops backend_openai_batch_ops;
extern const struct backend_ops backend_anthropic_batch_ops;
extern const struct backend_ops backend_gemini_batch_ops;

/* the ops of a kind, NULL when unknown; backend_kinds() lists them ("local, openai-http") */
const struct backend_ops *backend_find(const char *kind);
const char *backend_kinds(void);

struct backend {
    const struct backend_ops *ops;
    void *impl;
    char *name;
    _Atomic double price_input, price_output; /* a reload may change them while HTTP threads read */
    _Atomic double batch_discount;
};

/* USD for tokens at real-time prices per million (price_in, price_out), or at batch prices
 * (less `discount`, a share); < 0 when there is no price */
double backend_price(double price_in, double price_out, double discount, int64_t prompt_tokens,
                     int64_t completion_tokens, bool batch);
/* the same at the backend's prices */
double backend_cost(const struct backend *b, int64_t prompt_tokens, int64_t completion_tokens, bool batch);

/* On failure *out is NULL and err says why. */
int backend_init(const struct backend_conf *c, struct backend **out, char *err, size_t errlen);
void backend_free(struct backend *b);
/* a reloaded config for this model: prices, and the limits the kind can change live */
int backend_reconfigure(struct backend *b, const struct backend_conf *c);

/* What a local model is and does (its engine's report): true with out filled; false, out
 * zeroed, for an upstream, which reports what it can through get_info. Callers above the
 * backends learn a model's facts here, never from the engine. */
bool backend_model_info(const struct backend *b, struct engine_info *out);
/* The prompt a chat request renders to with a local model's template (engine_render_prompt:
 * llama-server's /apply-template), *out malloc'd; NS_ERR_UNSUPPORTED with err for an
 * upstream, which renders its own. */
int backend_render_prompt(const struct backend *b, const struct engine_request *r, char **out, char *err,
                          size_t errlen);
/* a local model's GGUF path and the chat template text it uses; NULL for an upstream */
const char *backend_model_path(const struct backend *b);
const char *backend_chat_template(const struct backend *b);
/* the local engine's counters (read unlocked: they may lag a step); false, zeroed, for an
 * upstream (its counters are get_stats) */
bool backend_engine_stats(const struct backend *b, struct engine_stats *out);

/* prompt tokens, or 0 with nothing checked when the backend cannot count (upstream);
 * < 0 (minus a status) with err set when the request cannot be tokenized */
int backend_count_tokens(struct backend *b, const struct engine_request *r, char *err, size_t errlen);

#endif
