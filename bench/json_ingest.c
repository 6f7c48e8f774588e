/*
 * json_ingest.c - compare Debian-packaged JSON parsers on OpenAI Batch JSONL.
 *
 * Generates a deterministic, in-memory OpenAI batch input file (default
 * ~200 MB) and runs the validation pass nightshift needs on every line:
 * parse, look up custom_id (string), method (string), url (string),
 * body (object), body.model (string), body.messages (array), then free.
 * Each library is timed best-of-N with CLOCK_MONOTONIC; a memchr-only line
 * split is measured as the floor.
 *
 * Build:
 *   gcc -std=c11 -O2 -Wall -Wextra -Werror bench/json_ingest.c \
 *       $(pkg-config --cflags --libs libcjson jansson json-c) -o /tmp/json_ingest
 * Run:
 *   /tmp/json_ingest [MB] [runs]        (MB = 10^6 bytes, default 200; runs default 3)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <jansson.h>

/*
 * json-c's <json.h> cannot be included together with <jansson.h>: both
 * declare json_object, json_type, json_object_get, json_object_iter and
 * json_object_iter_next at the C level.  (The shared libraries themselves
 * coexist fine: both use versioned symbols, JSONC_0.14 vs libjansson.so.4.)
 * So declare the json-c 0.16 subset used here, copied verbatim from
 * /usr/include/json-c/{json_types,json_object,json_tokener,json_c_version}.h.
 * jansson's json_type is a typedef of an anonymous enum, so the json-c
 * enum tags below do not clash with it.
 */
struct json_object;
struct json_tokener;
typedef int json_bool;
enum json_type {
    json_type_null,
    json_type_boolean,
    json_type_double,
    json_type_int,
    json_type_object,
    json_type_array,
    json_type_string
};
enum json_tokener_error {
    json_tokener_success,
    json_tokener_continue,
    json_tokener_error_depth,
    json_tokener_error_parse_eof,
    json_tokener_error_parse_unexpected,
    json_tokener_error_parse_null,
    json_tokener_error_parse_boolean,
    json_tokener_error_parse_number,
    json_tokener_error_parse_array,
    json_tokener_error_parse_object_key_name,
    json_tokener_error_parse_object_key_sep,
    json_tokener_error_parse_object_value_sep,
    json_tokener_error_parse_string,
    json_tokener_error_parse_comment,
    json_tokener_error_parse_utf8_string,
    json_tokener_error_size
};
struct json_tokener *json_tokener_new(void);
void json_tokener_free(struct json_tokener *tok);
void json_tokener_reset(struct json_tokener *tok);
struct json_object *json_tokener_parse_ex(struct json_tokener *tok, const char *str,
                                          int len);
enum json_tokener_error json_tokener_get_error(struct json_tokener *tok);
json_bool json_object_object_get_ex(const struct json_object *obj, const char *key,
                                    struct json_object **value);
int json_object_is_type(const struct json_object *obj, enum json_type type);
int json_object_get_string_len(const struct json_object *obj);
int json_object_put(struct json_object *obj);
const char *json_c_version(void);

/* ------------------------------------------------------------------ */
/* Output buffer                                                       */
/* ------------------------------------------------------------------ */

struct buf {
    char *p;
    size_t len;
    size_t cap;
};

static void die(const char *msg)
{
    fprintf(stderr, "json_ingest: %s\n", msg);
    exit(EXIT_FAILURE);
}

static void buf_reserve(struct buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap - b->len < extra) {
        if (ncap > SIZE_MAX / 2)
            die("buffer too large");
        ncap *= 2;
    }
    char *np = realloc(b->p, ncap);
    if (!np)
        die("out of memory");
    b->p = np;
    b->cap = ncap;
}

static void put_mem(struct buf *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put_str(struct buf *b, const char *s)
{
    put_mem(b, s, strlen(s));
}

/* Decimal, zero-padded to at least `width` digits. */
static void put_uint(struct buf *b, uint64_t v, unsigned width)
{
    char tmp[32];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v != 0 && n < sizeof tmp);
    while (n < width && n < sizeof tmp)
        tmp[n++] = '0';
    buf_reserve(b, n);
    while (n > 0)
        b->p[b->len++] = tmp[--n];
}

/* ------------------------------------------------------------------ */
/* Deterministic generator                                             */
/* ------------------------------------------------------------------ */

static uint64_t rng_state = 0x6e6967687473686cULL; /* "nightshl" */

static uint64_t rng_next(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static size_t rng_range(size_t lo, size_t hi)
{
    return lo + (size_t)(rng_next() % (uint64_t)(hi - lo + 1));
}

static const char *const words[] = {
    "the", "model", "should", "answer", "question", "carefully", "and",
    "concisely", "using", "only", "information", "from", "context", "below",
    "summarize", "following", "document", "in", "three", "sentences", "a",
    "customer", "review", "product", "quality", "shipping", "was", "late",
    "but", "support", "team", "helpful", "translate", "this", "paragraph",
    "into", "French", "classify", "sentiment", "as", "positive", "negative",
    "neutral", "extract", "all", "named", "entities", "return", "JSON",
    "list", "of", "objects", "with", "fields", "name", "type", "score",
    "data", "pipeline", "batch", "inference", "latency", "throughput",
    "token", "prompt", "completion", "assistant", "user", "system", "is",
    "to", "for", "on", "be", "not", "it", "that", "with", "any", "each",
};
#define N_WORDS (sizeof words / sizeof words[0])

/* Fragments already in JSON-escaped form: \uXXXX escapes (as produced by
 * Python's json.dumps default ensure_ascii=True), raw UTF-8 (as produced
 * by ensure_ascii=False and most other encoders), quotes, newlines. */
static const char *const specials[] = {
    "\\\"quoted\\\"",          /* "quoted" */
    "caf\\u00e9",              /* café */
    "na\\u00efve",             /* naïve */
    "\\u2014",                 /* em dash */
    "\\u201cnice\\u201d",      /* curly quotes */
    "it\\u2019s",              /* it’s */
    "\\u4e2d\\u6587",          /* 中文 */
    "\\ud83d\\ude00",          /* emoji, surrogate pair */
    "\\n\\n",                  /* paragraph break */
    "C:\\\\path\\\\file.txt",  /* backslashes */
    "\\t",                     /* tab */
    "caf\xc3\xa9",             /* raw UTF-8 café */
    "\xe2\x80\x94",            /* raw UTF-8 em dash */
    "\xe6\x97\xa5\xe6\x9c\xac", /* raw UTF-8 日本 */
    "</s>",
    "{\\\"key\\\": 1}",        /* JSON inside a string */
};
#define N_SPECIALS (sizeof specials / sizeof specials[0])

/* Append JSON-string body text of roughly `target` bytes.
 * special_pct: probability (in %) that a token is a special fragment. */
static void put_text(struct buf *b, size_t target, unsigned special_pct)
{
    size_t start = b->len;
    int first = 1;
    while (b->len - start < target) {
        if (!first)
            put_mem(b, " ", 1);
        first = 0;
        uint64_t r = rng_next();
        if (r % 100 < special_pct)
            put_str(b, specials[(r >> 8) % N_SPECIALS]);
        else
            put_str(b, words[(r >> 8) % N_WORDS]);
        if ((r >> 32) % 12 == 0)
            put_mem(b, ((r >> 40) & 1) ? "." : ",", 1);
    }
}

#define N_SYSTEM 16

struct dataset {
    char *data;
    size_t len;
    size_t lines;
};

static struct dataset generate(size_t target_bytes)
{
    /* A batch typically shares a handful of system prompts. */
    struct buf sys[N_SYSTEM];
    for (size_t i = 0; i < N_SYSTEM; i++) {
        sys[i] = (struct buf){ 0 };
        put_str(&sys[i], "You are a helpful assistant. ");
        put_text(&sys[i], rng_range(270, 300), 15);
    }

    struct buf b = { 0 };
    buf_reserve(&b, target_bytes + 8192);
    size_t lines = 0;
    while (b.len < target_bytes) {
        put_str(&b, "{\"custom_id\":\"req-");
        put_uint(&b, lines, 6);
        put_str(&b, "\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                    "\"body\":{\"model\":\"m\",\"messages\":["
                    "{\"role\":\"system\",\"content\":\"");
        const struct buf *s = &sys[rng_next() % N_SYSTEM];
        put_mem(&b, s->p, s->len);
        put_str(&b, "\"},{\"role\":\"user\",\"content\":\"");
        put_text(&b, rng_range(200, 2000), 4);
        put_str(&b, "\"}],\"max_tokens\":64,\"temperature\":0.0}}\n");
        lines++;
    }
    for (size_t i = 0; i < N_SYSTEM; i++)
        free(sys[i].p);
    return (struct dataset){ .data = b.p, .len = b.len, .lines = lines };
}

/* ------------------------------------------------------------------ */
/* Validators: return 1 if the line has the required shape.            */
/* *sum accumulates len(custom_id) + len(model) so all libraries must  */
/* agree and the work cannot be optimised away.                        */
/* ------------------------------------------------------------------ */

typedef int (*check_fn)(void *ctx, const char *p, size_t n, uint64_t *sum);

static int check_memchr(void *ctx, const char *p, size_t n, uint64_t *sum)
{
    (void)ctx;
    (void)p;
    *sum += n;
    return 1;
}

static int check_cjson(void *ctx, const char *p, size_t n, uint64_t *sum)
{
    (void)ctx;
    cJSON *root = cJSON_ParseWithLength(p, n);
    if (!root)
        return 0;
    int ok = 0;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "custom_id");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(root, "method");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(root, "url");
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(root, "body");
    if (cJSON_IsString(id) && cJSON_IsString(method) && cJSON_IsString(url) &&
        cJSON_IsObject(body)) {
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
        if (cJSON_IsString(model) && cJSON_IsArray(msgs)) {
            *sum += strlen(id->valuestring) + strlen(model->valuestring);
            ok = 1;
        }
    }
    cJSON_Delete(root);
    return ok;
}

static int check_jansson(void *ctx, const char *p, size_t n, uint64_t *sum)
{
    (void)ctx;
    json_error_t err;
    json_t *root = json_loadb(p, n, 0, &err);
    if (!root)
        return 0;
    int ok = 0;
    json_t *id = json_object_get(root, "custom_id");
    json_t *method = json_object_get(root, "method");
    json_t *url = json_object_get(root, "url");
    json_t *body = json_object_get(root, "body");
    if (json_is_string(id) && json_is_string(method) && json_is_string(url) &&
        json_is_object(body)) {
        json_t *model = json_object_get(body, "model");
        json_t *msgs = json_object_get(body, "messages");
        if (json_is_string(model) && json_is_array(msgs)) {
            *sum += json_string_length(id) + json_string_length(model);
            ok = 1;
        }
    }
    json_decref(root);
    return ok;
}

/* json-c: one tokener reused across lines (reset per line). */
static int check_jsonc(void *ctx, const char *p, size_t n, uint64_t *sum)
{
    struct json_tokener *tok = ctx;
    if (n > INT32_MAX)
        return 0;
    json_tokener_reset(tok);
    struct json_object *root = json_tokener_parse_ex(tok, p, (int)n);
    if (!root)
        return 0;
    int ok = 0;
    struct json_object *id, *method, *url, *body, *model, *msgs;
    if (json_tokener_get_error(tok) == json_tokener_success &&
        json_object_object_get_ex(root, "custom_id", &id) &&
        json_object_object_get_ex(root, "method", &method) &&
        json_object_object_get_ex(root, "url", &url) &&
        json_object_object_get_ex(root, "body", &body) &&
        json_object_is_type(id, json_type_string) &&
        json_object_is_type(method, json_type_string) &&
        json_object_is_type(url, json_type_string) &&
        json_object_is_type(body, json_type_object) &&
        json_object_object_get_ex(body, "model", &model) &&
        json_object_object_get_ex(body, "messages", &msgs) &&
        json_object_is_type(model, json_type_string) &&
        json_object_is_type(msgs, json_type_array)) {
        *sum += (uint64_t)json_object_get_string_len(id) +
                (uint64_t)json_object_get_string_len(model);
        ok = 1;
    }
    json_object_put(root);
    return ok;
}

/* ------------------------------------------------------------------ */
/* Timing                                                              */
/* ------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct result {
    const char *name;
    char version[32];
    check_fn fn;
    void *ctx;
    double best_s;
    size_t ok_lines;
    uint64_t sum;
};

static void run_pass(const struct dataset *ds, struct result *r)
{
    const char *p = ds->data;
    const char *end = ds->data + ds->len;
    size_t ok = 0;
    uint64_t sum = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n > 0)
            ok += (size_t)r->fn(r->ctx, p, n, &sum);
        p += n + 1;
    }
    r->ok_lines = ok;
    r->sum = sum;
}

static void bench(const struct dataset *ds, struct result *r, int runs)
{
    r->best_s = 0.0;
    for (int i = 0; i < runs; i++) {
        double t0 = now_s();
        run_pass(ds, r);
        double dt = now_s() - t0;
        if (i == 0 || dt < r->best_s)
            r->best_s = dt;
    }
}

static long parse_arg(const char *s, long lo, long hi, const char *what)
{
    char *endp;
    errno = 0;
    long v = strtol(s, &endp, 10);
    if (errno != 0 || endp == s || *endp != '\0' || v < lo || v > hi) {
        fprintf(stderr, "json_ingest: invalid %s '%s' (want %ld..%ld)\n", what, s,
                lo, hi);
        exit(EXIT_FAILURE);
    }
    return v;
}

static void set_version(struct result *r, const char *v)
{
    size_t n = strlen(v);
    if (n >= sizeof r->version)
        n = sizeof r->version - 1;
    memcpy(r->version, v, n);
    r->version[n] = '\0';
}

int main(int argc, char **argv)
{
    if (argc > 3) {
        fprintf(stderr, "usage: %s [MB (default 200)] [runs (default 3)]\n", argv[0]);
        return EXIT_FAILURE;
    }
    long mb = argc > 1 ? parse_arg(argv[1], 1, 16384, "MB") : 200;
    int runs = argc > 2 ? (int)parse_arg(argv[2], 1, 100, "runs") : 3;

    double g0 = now_s();
    struct dataset ds = generate((size_t)mb * 1000000u);
    double gen_s = now_s() - g0;

    struct json_tokener *tok = json_tokener_new();
    if (!tok)
        die("json_tokener_new failed");

    struct result res[] = {
        { .name = "memchr (floor)", .fn = check_memchr },
        { .name = "cJSON", .fn = check_cjson },
        { .name = "jansson", .fn = check_jansson },
        { .name = "json-c", .fn = check_jsonc, .ctx = tok },
    };
    const size_t nres = sizeof res / sizeof res[0];
    set_version(&res[0], "libc");
    set_version(&res[1], cJSON_Version());
    set_version(&res[2], jansson_version_str());
    set_version(&res[3], json_c_version());

    printf("json_ingest: %.1f MB, %zu lines (avg %.0f B/line), best of %d, "
           "generated in %.2f s\n\n",
           (double)ds.len / 1e6, ds.lines, (double)ds.len / (double)ds.lines, runs,
           gen_s);

    for (size_t i = 0; i < nres; i++)
        bench(&ds, &res[i], runs);

    /* Fastest real parser (excluding the memchr floor). */
    double fastest = 0.0;
    for (size_t i = 1; i < nres; i++)
        if (fastest == 0.0 || res[i].best_s < fastest)
            fastest = res[i].best_s;

    printf("%-16s %-9s %9s %10s %12s %11s\n", "library", "version", "best s",
           "MB/s", "lines/s", "vs fastest");
    int bad = 0;
    uint64_t ref_sum = res[1].sum;
    for (size_t i = 0; i < nres; i++) {
        const struct result *r = &res[i];
        printf("%-16s %-9s %9.3f %10.1f %12.0f %10.2fx\n", r->name, r->version,
               r->best_s, (double)ds.len / 1e6 / r->best_s,
               (double)ds.lines / r->best_s, fastest / r->best_s);
        if (r->ok_lines != ds.lines) {
            fprintf(stderr, "  %s: only %zu of %zu lines validated\n", r->name,
                    r->ok_lines, ds.lines);
            bad = 1;
        }
        if (i > 0 && r->sum != ref_sum) {
            fprintf(stderr, "  %s: checksum %llu != cJSON %llu\n", r->name,
                    (unsigned long long)r->sum, (unsigned long long)ref_sum);
            bad = 1;
        }
    }
    printf("\n(MB = 10^6 bytes; 'vs fastest' = throughput relative to the fastest "
           "parser)\n");

    json_tokener_free(tok);
    free(ds.data);
    return bad ? EXIT_FAILURE : EXIT_SUCCESS;
}
