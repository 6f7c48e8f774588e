/*
 * config.h — the --config file of `nightshift serve`: an INI file (parsed by Debian's
 * libinih) naming the served models and their backends.
 *
 *   [server]                   ; any long option of `nightshift serve`, without the --
 *   listen = 127.0.0.1:8080
 *   data-dir = /var/lib/nightshift
 *
 *   [model qwen]               ; a model clients call "qwen", on the built-in engine
 *   backend = local
 *   path = /models/qwen2-0.5b-instruct-q8_0.gguf
 *   chat_template_file = /models/qwen2.jinja   ; optional: this Jinja template, not the GGUF's
 *
 *   [model qwen-sql]           ; a LoRA fine-tune of qwen, served as its own model over
 *   base = qwen                ; qwen's weights, loaded once (a [model] name or a GGUF file)
 *   lora = /models/sql-lora.gguf:0.8   ; FILE[:SCALE], repeatable: adapters stacked
 *
 *   [model gpt-4o-mini]        ; forwarded to an OpenAI-compatible server
 *   backend = openai-http
 *   url = https://api.openai.com/v1
 *   api_key_env = OPENAI_API_KEY   ; the key is read from this variable, never from the file
 *   concurrency = 64
 *   price_input = 0.15         ; USD per million prompt tokens
 *   price_output = 0.60
 *   spill_to = local-big       ; optional: the model that takes lines this one would finish late
 *   on_failure = fallback      ; real-time requests while its backend is down: fail (503) or fallback
 *
 *   [model llama-groq]         ; Groq's batch API (backend/batch_preset.h: groq, kluster, openai)
 *   provider = groq            ; backend openai-batch, its url, key from GROQ_API_KEY, its limits
 *   upstream_model = llama-3.1-8b-instant
 *   completion_window = 48h    ; sent as the nearest window the provider accepts
 *
 *   [webhook ops]              ; batch.completed/failed/cancelled/expired events, signed
 *   url = https://hooks.example.com/nightshift
 *   secret_env = NIGHTSHIFT_WEBHOOK_SECRET   ; "whsec_<base64>", Standard Webhooks
 *   events = batch.completed, batch.failed   ; default: all four
 *
 * Strict: an unknown section or key, a bad number, a duplicate model, a missing required
 * key or an unset key variable is an error naming the file, the line and the fix.
 *
 * OWNERSHIP: config_load() returns a config that owns every string its models' confs
 * point to (API keys included); config_free() wipes the keys before freeing them.
 */
#ifndef NS_CLI_CONFIG_H
#define NS_CLI_CONFIG_H

#include "../backend/backend.h"
#include "../engine/lora.h"
#include "../sched/webhook.h"

#include <stdbool.h>
#include <stddef.h>

struct config_kv {
    char *key, *value;
};

struct config_model {
    struct backend_conf conf;   /* kind, url, key, limits, prices; engine params left default */
    char *path;                 /* local: the GGUF file */
    char *chat_template;        /* local: chat_template_file's text, or NULL (the model's own) */
    bool has_step_ms;           /* local: interactive_step_ms given (engine.h) ... */
    double interactive_step_ms; /* ... this */
    bool has_backend, has_max_lines, has_max_bytes; /* given in the section (a provider checks them) */
    char *base;                 /* local: `base` as written (a [model] name or a file); path is
                                   set from it once the file is read */
    struct lora_spec lora[LORA_MAX]; /* local: the adapters (paths owned), stacked in order */
    int n_lora;
    /* spill-over and fail-over (sched.h: struct sched_route_conf) */
    char *spill_to;             /* spill_to: another [model]'s name, or NULL */
    bool on_failure_fallback;   /* on_failure = fallback (true) or fail (false, the default) */
    double spill_turnaround_s;  /* spill_turnaround: the fallback's expected turnaround; default 60 */
    double spill_margin;        /* spill_margin: the safety share of the prediction; default 0.2 */
};

/* [webhook NAME]: batch events POSTed to url, signed with the secret from secret_env */
struct config_webhook {
    struct webhook_endpoint ep; /* strings owned by the config */
};

struct config {
    char *path;
    struct config_webhook *webhooks;
    int n_webhooks;
    struct config_kv *server;   /* [server] keys, in file order */
    int n_server;
    struct config_model *models;
    int n_models;
};

/* Is a [server] key acceptable? true, or false with why filled (the caller knows its
 * options; the config knows the line). */
typedef bool (*config_server_key_fn)(const char *key, const char *value, char *why, size_t n);

/* 0 ok; else *out is NULL and err says "FILE:LINE: why" */
int config_load(const char *path, config_server_key_fn server_key_ok, struct config **out, char *err, size_t errlen);
void config_free(struct config *c);

/* FILE[:SCALE] (a `lora =` value, a --lora argument) appended to specs[*n] (*n < LORA_MAX),
 * its path copied (free(3) it; on failure too once *n has grown); 0 ok, else err says why: a
 * bad scale, too many adapters, a file that cannot be read */
int config_lora_arg(const char *text, struct lora_spec *specs, int *n, char *err, size_t errlen);

/* A chat template file's text (--chat-template-file, chat_template_file): *out malloc'd;
 * NS_ERR_IO when it cannot be read, NS_ERR_INVALID when empty, binary or over 1 MB; err
 * starts with `what` (the option or key that named it). */
int config_read_template(const char *path, const char *what, char **out, char *err, size_t errlen);

#endif
