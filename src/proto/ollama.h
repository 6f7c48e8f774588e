/*
 * ollama.h — the Ollama API (/api/chat, /api/generate, /api/embed, /api/embeddings,
 * /api/tags, /api/show, /api/ps, /api/version) on the same parsed-request type as the OpenAI
 * routes (struct oai_request), so one scheduler and one engine serve every API.
 *
 * DESIGN
 * Requests in: an /api/chat body maps its messages one for one; an /api/generate body
 * becomes [system, user: prompt] so the model's chat template applies, as Ollama does,
 * and with "raw": true the prompt goes to the model as it is (a completion). options map
 * onto the engine request: num_predict, temperature, top_k, top_p, min_p, seed, stop,
 * repeat_penalty, presence_penalty, frequency_penalty. Ollama's defaults apply where the
 * request says nothing (temperature 0.8, top_k 40, top_p 0.9, repeat_penalty 1.1), and
 * "stream" defaults to true. num_ctx cannot resize a loaded context: it is accepted up to
 * the loaded per-sequence context (ollama_check_num_ctx) and refused above it.
 *
 * What cannot be mapped is refused with a 400 that names the field, never dropped: format
 * (structured output), tools, images, think, suffix, template, context, logprobs, and
 * sampling the engine lacks (mirostat, typical_p < 1). Load-time settings (num_gpu,
 * num_thread, use_mmap, ...) and keep_alive are accepted and have no effect: models are
 * loaded once, at start, for as long as the server runs. Unknown fields and options are
 * refused (Ollama ignores them; a typo would otherwise pass silently).
 *
 * Answers out: the final object of a stream or a whole answer carries done_reason and the
 * durations in nanoseconds, taken from the engine's clock (ollama_final()). Model
 * descriptions (tags, ps, show) come from the engine's info and a stat() of the GGUF file;
 * the digest is the SHA-256 of "path\nsize\nmtime" (stable while the file is unchanged;
 * hashing gigabytes of weights at every start would cost seconds), not of the content, so
 * it does not match ollama.com's digests.
 *
 * Ownership as in oai.h: struct oai_request owns the parsed body; builders return cJSON
 * trees the caller deletes.
 */
#ifndef NS_API_OLLAMA_H
#define NS_API_OLLAMA_H

#include "../engine/request.h"
#include "oai.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* the Ollama release whose API shapes nightshift follows (GET /api/version); clients
 * gate features on it */
#define OLLAMA_API_VERSION "0.12.0"

/* what an Ollama body says besides the engine request */
struct ollama_extra {
    int num_ctx;               /* options.num_ctx; 0 when not given */
    bool load_only;            /* no prompt / no messages: Ollama's "load the model" call */
};

/* Parse an /api/chat (chat) or /api/generate body. On failure returns the status and
 * fills *err (r is then released). `json` need not be NUL-terminated. */
int ollama_request_parse(const char *json, size_t len, bool chat, struct oai_request *r, struct ollama_extra *ox,
                         struct oai_error *err);
/* Parse an /api/embed body ({model, input: string | [string], truncate, dimensions,
 * options, keep_alive}) or, legacy, an /api/embeddings one ({model, prompt, options,
 * keep_alive}) into an embeddings request (r->embeddings, req.embed): truncate (default
 * true, as Ollama's) cuts an input longer than the context instead of failing; options are
 * checked as /api/chat's and change nothing; dimensions only as the model's own size. An
 * empty input ("" or []) is no error: req.n_embed is 0, nothing to run, and Ollama's
 * answer is no vectors. r is released on failure. */
int ollama_embed_parse(const char *json, size_t len, bool legacy, struct oai_request *r, struct oai_error *err);
/* {model, embeddings: [[...]], total_duration, load_duration, prompt_eval_count}, or legacy
 * {embedding: [...]} (the vectors L2-normalized, as the engine makes them); res NULL: no
 * inputs, no vectors */
cJSON *ollama_embed_answer(bool legacy, const char *model, const struct engine_result *res, double t_start);
/* NS_ERR_INVALID when options.num_ctx is over the context one sequence has (n_ctx_seq) */
int ollama_check_num_ctx(const struct ollama_extra *ox, int n_ctx_seq, struct oai_error *err);
/* The model named by a /api/show or /api/embed body ("model", or the older "name"),
 * copied into out. */
int ollama_model_field(const char *json, size_t len, char *out, size_t n, struct oai_error *err);

/* Is `requested` the served model `served`? Ollama names carry a tag: "tiny:latest" is "tiny". */
bool ollama_name_matches(const char *served, const char *requested);

/* A streamed object: {"model","created_at","message":{"role":"assistant","content"},
 * "done":false} for chat, {"model","created_at","response","done":false} for generate. */
cJSON *ollama_chunk(bool chat, const char *model, const char *text, size_t n);
/* The last object of a stream (text "") or the whole answer: done, done_reason and the
 * durations since t_start (clock_now() when the request came in). */
cJSON *ollama_final(bool chat, const char *model, const struct engine_result *res, const char *text,
                    double t_start);
/* the answer to a request without prompt or messages: done_reason "load" */
cJSON *ollama_load_answer(bool chat, const char *model);
/* {"error": message} */
cJSON *ollama_error(const char *message);

/* A served model, as the server knows it; the pointers are borrowed. */
struct ollama_model {
    const char *name;          /* the name clients use */
    const char *path;          /* the GGUF file */
    const char *chat_template; /* Jinja source, or a llama.cpp built-in name */
    struct engine_info info;
};

/* GET /api/tags ({"models":[{name, model, modified_at, size, digest, details}]}) or, with
 * running, GET /api/ps (the same with expires_at, size_vram, context_length) */
cJSON *ollama_list(const struct ollama_model *models, int n, bool running);
/* POST /api/show: modelfile, parameters, template, details, model_info, capabilities,
 * modified_at */
cJSON *ollama_show(const struct ollama_model *m);
/* GET /api/version */
cJSON *ollama_version(void);

/* details.parameter_size as Ollama writes it: "494.03M", "8.0B", "7B" */
void ollama_parameter_size(uint64_t n_params, char *out, size_t n);
/* details.quantization_level for a llama_ftype: "Q4_K_M", "F16"; "unknown" when not known */
const char *ollama_quantization(int file_type);

#endif
