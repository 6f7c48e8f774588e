/*
 * batchfile.h — reads and validates an OpenAI Batch input file (JSONL).
 *
 * One pass over the whole file, before any work starts, finds every structural error:
 * invalid JSON, missing or duplicate custom_id, wrong method, unsupported url, body not
 * an object, body.model missing or not served. Every one is kept, as {code, line,
 * message, param} with 1-based line numbers, the shape of OpenAI's batch `errors.data`:
 * each invalid line becomes a result of its own (an error line, an errored Message Batch
 * result), so a cap here would lose requests. Only what is *listed* (errors.data, the
 * printed summary) is capped, by max_errors. Whole-file problems (cannot read, empty, too large,
 * too many lines, not UTF-8) stop at once with one message instead.
 *
 * The file is mapped, not copied: valid lines are kept as offsets into the mapping and
 * parsed again when they run, so a 200 MB file costs 200 MB of page cache, not heap.
 *
 * Ownership: batchfile_open() returns a struct the caller frees with batchfile_free();
 * every pointer inside it lives as long as it.
 */
#ifndef NS_API_BATCHFILE_H
#define NS_API_BATCHFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum batchfile_url {
    BATCHFILE_URL_CHAT = 1,
    BATCHFILE_URL_COMPLETIONS = 2,
    BATCHFILE_URL_MESSAGES = 3,
    BATCHFILE_URL_EMBEDDINGS = 4,
    BATCHFILE_URL_RESPONSES = 5,   /* OpenAI's Responses API (responses.h) */
};

struct batchfile_line {
    size_t off;              /* byte offset of the line in data */
    size_t len;              /* bytes, without the newline */
    uint32_t line_no;        /* 1-based */
    enum batchfile_url url;
    char *custom_id;
    char *model;             /* body.model */
};

struct batchfile_error {
    uint32_t line;           /* 1-based; 0 for whole-file errors */
    const char *code;        /* static: invalid_json_line, duplicate_custom_id, ... */
    const char *param;       /* static: custom_id, method, url, body, body.model; or NULL */
    char *custom_id;         /* when the line had a usable one, else NULL */
    char *message;
};

struct batchfile_params {
    size_t max_bytes;        /* default 200 MB */
    size_t max_lines;        /* default 50,000 */
    size_t max_errors;       /* errors listed by batchfile_errors_json (all are kept); default 1,000 */
    /* is `model` served? NULL: any model is accepted */
    bool (*model_ok)(void *ud, const char *model);
    void *model_ud;
    const char *served_models; /* for the error message: "a, b, c" */
    bool one_model;          /* every line must name the same model (an OpenAI batch) */
    const char *endpoint;    /* every line's url must be this one; NULL = any supported */
    const char *name;        /* how whole-file errors name the file; NULL: its path. The
                                server passes the file id: its paths are not the caller's
                                business (issue 27.14) */
};

struct batchfile_params batchfile_default_params(void);

struct batchfile {
    const char *data;        /* the file's bytes (mapped) */
    size_t size;
    struct batchfile_line *lines;  /* valid lines, in file order */
    size_t n_lines;
    size_t n_requests;       /* non-blank lines: valid + invalid */
    struct batchfile_error *errors; /* every invalid line, in line order */
    size_t n_errors;         /* == n_invalid */
    size_t n_invalid;        /* all invalid lines, even past the cap */
    uint64_t hash;           /* 64-bit hash of the content: identifies the input */
    char *model;             /* body.model of the first valid line, or NULL */
    /* private */
    void *map_;
    size_t map_len_;
    size_t errors_cap_;
    bool nomem_;
};

/* Map and validate `path`. Whole-file errors: returns NS_ERR_INVALID / NS_ERR_TOO_LARGE /
 * NS_ERR_IO with err filled and *out NULL. Line errors do not fail: see (*out)->errors. */
int batchfile_open(const char *path, const struct batchfile_params *p, struct batchfile **out,
                   char *err, size_t errlen);
/* Same over bytes in memory (not copied: data must outlive the result). */
int batchfile_parse(const char *data, size_t size, const struct batchfile_params *p,
                    struct batchfile **out, char *err, size_t errlen);
void batchfile_free(struct batchfile *bf);

/* Add an error found outside the parser (a line a converter could not translate, e.g.
 * gemini.h): counted as an invalid request line, appended; call batchfile_errors_sort()
 * after the last one to put errors back in line order (once: a sort per call would be
 * quadratic on 100,000 errors). NS_ERR_NOMEM when it could not be kept (then bf must not
 * be used to write results). */
int batchfile_add_external_error(struct batchfile *bf, const struct batchfile_params *p, uint32_t line,
                                  const char *code, const char *param, const char *custom_id, const char *message);

void batchfile_errors_sort(struct batchfile *bf);

/* A running order for the valid lines: indices into bf->lines. With group, sorted by the
 * start of each prompt (message roles and contents, or the prompt; first 512 bytes) so
 * lines sharing an instruction run together while it is hot in the prefix cache; ties keep
 * file order, so the order is reproducible. Caller frees; NULL when out of memory. */
size_t *batchfile_prefix_order(const struct batchfile *bf, bool group);

/* OpenAI's batch `errors` object for the first `max` errors (0: all):
 * {"object":"list","data":[{code,line,message,param}]}; the caller cJSON_Delete()s it. */
struct cJSON *batchfile_errors_json(const struct batchfile *bf, size_t max);

/* The sampling seed of a line whose body gives none, the one formula `run` (base_seed =
 * --seed, default 0) and `serve` (base_seed 0) share, so one file samples the same way
 * through both: the 64-bit strset_hash of custom_id seeded with base_seed, folded to 32
 * bits. Documented in docs/API.md. */
uint32_t batchfile_line_seed(const char *custom_id, uint64_t base_seed);

/* "/v1/chat/completions" for BATCHFILE_URL_CHAT, ... */
const char *batchfile_url_path(enum batchfile_url url);
/* and back: the url of a path, 0 for one no batch line may name */
enum batchfile_url batchfile_url_of(const char *path);

#endif
