/*
 * batch_preset.h — named rows of defaults and limits for providers whose batch API speaks
 * the OpenAI Batch protocol (files + batches), used by the "openai-batch" kind: a model
 * section says `provider = groq` and gets Groq's base URL, key variable, the completion
 * windows Groq accepts, its most lines and bytes per input file and the endpoints its batch
 * API runs.
 *
 * DESIGN
 * A provider is not a kind: the kind is the protocol (how nightshift talks to the upstream:
 * upload a JSONL file, create a batch, poll, download the output and error files), and it is
 * the same for OpenAI, Groq and kluster.ai; what differs is data (URL, limits, windows,
 * endpoints). So a provider is one const row here, read by the config (defaults: url, key
 * variable; checks: batch_max_lines, batch_max_bytes) and by backend_batch.c (the limits it
 * splits upstream batches by, the window it sends, the endpoints it refuses before sending).
 * Each number carries, next to it in batch_preset.c, the document it comes from.
 *
 * The quirks of these providers (Groq's batch `errors` as a bare array, kluster.ai's
 * timestamps as strings and its "finalising" status, expired lines in the error file or
 * not reported at all, 429 with Retry-After) are absorbed by backend_batch.c's tolerant
 * reading for every provider, so no row needs a flag for them.
 *
 * THREADS: the table is const; every function is pure and thread-safe.
 */
#ifndef NS_BACKEND_BATCH_PRESET_H
#define NS_BACKEND_BATCH_PRESET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* one completion window a provider accepts: its length and how it is spelt upstream */
struct batch_window {
    int64_t seconds;
    const char *text;              /* "24h", "7d" */
};

struct batch_preset {
    const char *name;              /* what `provider =` names: "groq" */
    const char *title;             /* for messages: "Groq" */
    const char *kind;              /* the backend kind it runs on: "openai-batch" */
    const char *url;               /* base URL, /files and /batches are appended */
    const char *key_env;           /* the environment variable its key is read from by default */
    const struct batch_window *windows; /* ascending */
    int n_windows;
    int max_lines;                 /* most requests in one input file */
    int64_t max_bytes;             /* most bytes of one input file */
    bool completions;              /* runs /v1/completions lines (every row runs /v1/chat/completions) */
};

/* the row named `name`, NULL when there is none; batch_preset_names() lists them */
const struct batch_preset *batch_preset_find(const char *name);
const char *batch_preset_names(void);   /* "groq, kluster, openai" */
/* the row of a plain openai-batch model (no provider): OpenAI's own limits */
const struct batch_preset *batch_preset_default(void);

/* The window to ask the provider for, given the window nightshift wants (seconds): the
 * longest the provider accepts that is not longer (so the upstream batch ends by then), or
 * the provider's shortest when every one is longer. Never NULL. */
const struct batch_window *batch_preset_window(const struct batch_preset *p, int64_t seconds);

/* "90m", "24h", "7d" (a positive integer and one unit: m, h or d) -> seconds; 0 ok,
 * NS_ERR_INVALID when it is not one of those */
int batch_preset_parse_window(const char *s, int64_t *seconds);

#endif
