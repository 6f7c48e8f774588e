/*
 * stream.h — one answer as a dialect writes it (dialect.h: answer, stream_delta,
 * stream_next): its identity (id, model, times), the state every dialect's stream keeps,
 * and the framing helpers.
 *
 * The engine thread hands each delta to stream_delta(), which keeps what it needs in
 * `pending` (the text of choice 0, or whole events); the connection's side asks
 * stream_next() for the next bytes: some events, "wait" (nothing yet: a delta or the end
 * will come), or "end". Both run under the caller's lock; neither blocks.
 *
 * OWNERSHIP: the caller owns the struct and the request and result it points to (the
 * result once the answer is done); stream_release() frees what the stream allocated.
 */
#ifndef NS_PROTO_STREAM_H
#define NS_PROTO_STREAM_H

#include "oai.h"

#include "../util/buf.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum stream_step { STREAM_MORE = 0, STREAM_WAIT = 1, STREAM_END = 2 };

struct stream {
    const struct oai_request *r;        /* the request (tools, logprobs, n, stop) */
    char id[48];
    char model[128];
    time_t created;
    double t_start;                     /* clock_now() when it came in (Ollama's durations) */
    bool chat, include_usage;
    int n_prompt;
    int cached;                         /* prompt tokens read from the cache, from the first
                                           delta that says (engine_delta.cached_tokens); -1
                                           until then */
    const struct engine_result *res;    /* the final result once done, else NULL */
    int phase;                          /* the dialect's own */
    /* from the engine thread: the text of choice 0, or whole events (OpenAI) */
    struct buf pending;
    size_t lp_offset[ENGINE_MAX_CHOICES]; /* completions' streamed text_offset, per choice */
    /* a dialect whose answer is a list of typed blocks (Anthropic: thinking, text,
     * tool_use): the open block's index (-1: none yet), its kind (the dialect's own), and
     * how many have been opened */
    int block, block_kind, n_blocks;
    /* a dialect whose events are numbered and whose items close with their whole text
     * (Responses): the next sequence_number, the open item's text so far, and its call id
     * and name when it is a tool call */
    int seq;
    struct buf acc;
    int call_index;
    char call_id[64], call_name[128];
};

/* The middle of every stream: the whole events the engine thread left in pending, moved to
 * out (STREAM_MORE); else STREAM_WAIT while the result is not in; else STREAM_END: the
 * result is in and nothing is left, the caller writes its closing events. */
int stream_pass_pending(struct stream *s, struct buf *out);

/* every buffer capped at max bytes */
void stream_init(struct stream *s, size_t max);
void stream_release(struct stream *s);

/* o (deleted here) as one server-sent event ("event: NAME\n" when name, then
 * "data: JSON\n\n"), or one NDJSON line; printed valid UTF-8 */
void stream_sse(struct buf *out, const char *name, cJSON *o);
void stream_ndjson(struct buf *out, cJSON *o);

#endif
