/*
 * batchfile.c — see batchfile.h.
 *
 * Order of checks, so that each invalid line gets the one most useful error:
 * JSON syntax, object, custom_id (present, string, non-empty, unique), method, url,
 * body (object), body.model (present, string, served). A line that passes all is kept.
 */
#include "batchfile.h"

#include "../util/status.h"
#include "../util/jsonscan.h"
#include "../util/strset.h"
#include "../util/utf8.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BATCHFILE_CUSTOM_ID_MAX 512

struct batchfile_params batchfile_default_params(void)
{
    struct batchfile_params p = {
        .max_bytes = 200u * 1000u * 1000u,
        .max_lines = 50000,
        .max_errors = 1000,
        .model_ok = NULL,
        .model_ud = NULL,
        .served_models = NULL,
        .one_model = false,
        .endpoint = NULL,
        .name = NULL,
    };
    return p;
}

enum batchfile_url batchfile_url_of(const char *path)
{
    for (int u = BATCHFILE_URL_CHAT; u <= BATCHFILE_URL_RESPONSES; u++)
        if (path && strcmp(path, batchfile_url_path((enum batchfile_url)u)) == 0)
            return (enum batchfile_url)u;
    return (enum batchfile_url)0;
}

uint32_t batchfile_line_seed(const char *custom_id, uint64_t base_seed)
{
    uint64_t h = strset_hash(custom_id, strlen(custom_id), base_seed);
    return (uint32_t)(h ^ (h >> 32));
}

const char *batchfile_url_path(enum batchfile_url url)
{
    switch (url) {
    case BATCHFILE_URL_CHAT:
        return "/v1/chat/completions";
    case BATCHFILE_URL_COMPLETIONS:
        return "/v1/completions";
    case BATCHFILE_URL_MESSAGES:
        return "/v1/messages";
    case BATCHFILE_URL_EMBEDDINGS:
        return "/v1/embeddings";
    case BATCHFILE_URL_RESPONSES:
        return "/v1/responses";
    }
    return "?";
}

static void batchfile_add_error(struct batchfile *bf, const struct batchfile_params *p, uint32_t line,
                                const char *code, const char *param, const char *custom_id, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

static void batchfile_add_error(struct batchfile *bf, const struct batchfile_params *p, uint32_t line,
                                const char *code, const char *param, const char *custom_id, const char *fmt, ...)
{
    (void)p;
    bf->n_invalid++;
    if (bf->n_errors == bf->errors_cap_) {
        size_t cap = bf->errors_cap_ ? bf->errors_cap_ * 2 : 16;
        struct batchfile_error *v = realloc(bf->errors, cap * sizeof(*v));
        if (!v) {
            bf->nomem_ = true;
            return;
        }
        bf->errors = v;
        bf->errors_cap_ = cap;
    }
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct batchfile_error *e = &bf->errors[bf->n_errors];
    e->line = line;
    e->code = code;
    e->param = param;
    e->message = strdup(msg);
    e->custom_id = custom_id ? strdup(custom_id) : NULL;
    if (!e->message || (custom_id && !e->custom_id)) {
        free(e->message);
        free(e->custom_id);
        bf->nomem_ = true;
        return;
    }
    bf->n_errors++;
}

/* quote s for a message: at most 64 chars, non-printables as '?' */
static const char *batchfile_shorten(const char *s, char *out, size_t n)
{
    size_t j = 0, i = 0;
    for (; s[i] && j + 4 < n && i < 64; i++)
        out[j++] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    /* never cut a character in two: the message must stay valid UTF-8 (issue 27.12) */
    while (j > 0 && s[i] && ((unsigned char)s[i] & 0xC0) == 0x80) {
        i--;
        j--;
    }
    if (strlen(s) > 64 && j + 4 < n) {
        out[j++] = '.';
        out[j++] = '.';
        out[j++] = '.';
    }
    out[j] = '\0';
    return out;
}

static const char *json_type_name(const cJSON *v)
{
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsObject(v))
        return "an object";
    return "invalid";
}

/* check one non-blank line; on success append it to bf->lines */
static void batchfile_check_line(struct batchfile *bf, const struct batchfile_params *p, struct strset *ids,
                                 size_t off, size_t len, uint32_t line_no)
{
    const char *s = bf->data + off;
    const char *end = NULL;
    char q[80];
    cJSON *root = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    if (!root) {
        size_t at = end && end >= s ? (size_t)(end - s) : 0;
        batchfile_add_error(bf, p, line_no, "invalid_json_line", NULL, NULL,
                            "line %u is not valid JSON (error at byte %zu of the line)", line_no, at + 1);
        return;
    }
    /* trailing garbage after the value */
    if (end) {
        const char *t = end;
        while (t < s + len && (*t == ' ' || *t == '\t' || *t == '\r'))
            t++;
        if (t != s + len) {
            batchfile_add_error(bf, p, line_no, "invalid_json_line", NULL, NULL,
                                "line %u has text after its JSON object (byte %zu of the line); put one request on each line",
                                line_no, (size_t)(t - s) + 1);
            goto out;
        }
    }
    if (!cJSON_IsObject(root)) {
        batchfile_add_error(bf, p, line_no, "invalid_json_line", NULL, NULL,
                            "line %u is %s, not a JSON object", line_no, json_type_name(root));
        goto out;
    }
    /* cJSON cuts strings at a NUL: "b\u0000x" would become "b", a duplicate of another
     * line's id, and a prompt would lose its tail. Refuse, never truncate silently. */
    bool nul_in_cid = false;
    long nul_at = jsonscan_nul(s, len, "custom_id", &nul_in_cid);
    if (nul_at >= 0) {
        if (nul_in_cid)
            batchfile_add_error(bf, p, line_no, "invalid_custom_id", "custom_id", NULL,
                                "line %u: custom_id contains a NUL character (\\u0000, byte %ld of the line), which "
                                "cannot be stored",
                                line_no, nul_at + 1);
        else
            batchfile_add_error(bf, p, line_no, "invalid_body", "body", NULL,
                                "line %u: a string contains a NUL character (\\u0000, byte %ld of the line), which "
                                "cannot be passed to the model",
                                line_no, nul_at + 1);
        goto out;
    }
    const cJSON *cid = cJSON_GetObjectItemCaseSensitive(root, "custom_id");
    if (!cid) {
        batchfile_add_error(bf, p, line_no, "missing_required_parameter", "custom_id", NULL,
                            "line %u: custom_id is missing", line_no);
        goto out;
    }
    if (!cJSON_IsString(cid)) {
        batchfile_add_error(bf, p, line_no, "invalid_custom_id", "custom_id", NULL,
                            "line %u: custom_id must be a string, not %s", line_no, json_type_name(cid));
        goto out;
    }
    const char *custom_id = cid->valuestring;
    if (!custom_id[0] || strlen(custom_id) > BATCHFILE_CUSTOM_ID_MAX) {
        batchfile_add_error(bf, p, line_no, "invalid_custom_id", "custom_id", NULL,
                            "line %u: custom_id must be 1 to %d characters", line_no, BATCHFILE_CUSTOM_ID_MAX);
        goto out;
    }
    if (strset_has(ids, custom_id)) {
        batchfile_add_error(bf, p, line_no, "duplicate_custom_id", "custom_id", custom_id,
                            "line %u: custom_id '%s' is used by an earlier line; each must be unique", line_no,
                            batchfile_shorten(custom_id, q, sizeof(q)));
        goto out;
    }
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(root, "method");
    if (!method) {
        batchfile_add_error(bf, p, line_no, "missing_required_parameter", "method", custom_id,
                            "line %u: method is missing (it must be \"POST\")", line_no);
        goto out;
    }
    if (!cJSON_IsString(method) || strcmp(method->valuestring, "POST") != 0) {
        batchfile_add_error(bf, p, line_no, "invalid_method", "method", custom_id,
                            "line %u: method must be \"POST\", not %s%s%s", line_no,
                            cJSON_IsString(method) ? "\"" : "",
                            cJSON_IsString(method) ? batchfile_shorten(method->valuestring, q, sizeof(q))
                                                   : json_type_name(method),
                            cJSON_IsString(method) ? "\"" : "");
        goto out;
    }
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(root, "url");
    enum batchfile_url kind;
    if (!url) {
        batchfile_add_error(bf, p, line_no, "missing_required_parameter", "url", custom_id,
                            "line %u: url is missing", line_no);
        goto out;
    }
    if (cJSON_IsString(url) && strcmp(url->valuestring, "/v1/chat/completions") == 0) {
        kind = BATCHFILE_URL_CHAT;
    } else if (cJSON_IsString(url) && strcmp(url->valuestring, "/v1/completions") == 0) {
        kind = BATCHFILE_URL_COMPLETIONS;
    } else if (cJSON_IsString(url) && strcmp(url->valuestring, "/v1/embeddings") == 0) {
        kind = BATCHFILE_URL_EMBEDDINGS;
    } else if (cJSON_IsString(url) && strcmp(url->valuestring, "/v1/responses") == 0) {
        kind = BATCHFILE_URL_RESPONSES;
    } else if (cJSON_IsString(url) && strcmp(url->valuestring, "/v1/messages") == 0 && p->endpoint &&
               strcmp(p->endpoint, "/v1/messages") == 0) {
        kind = BATCHFILE_URL_MESSAGES; /* Anthropic Message Batches, converted by the server */
    } else {
        batchfile_add_error(bf, p, line_no, "invalid_url", "url", custom_id,
                            "line %u: url %s%s%s is not supported; use /v1/chat/completions, /v1/completions, "
                            "/v1/embeddings or /v1/responses",
                            line_no, cJSON_IsString(url) ? "\"" : "",
                            cJSON_IsString(url) ? batchfile_shorten(url->valuestring, q, sizeof(q))
                                                : json_type_name(url),
                            cJSON_IsString(url) ? "\"" : "");
        goto out;
    }
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(root, "body");
    if (!body) {
        batchfile_add_error(bf, p, line_no, "missing_required_parameter", "body", custom_id,
                            "line %u: body is missing", line_no);
        goto out;
    }
    if (!cJSON_IsObject(body)) {
        batchfile_add_error(bf, p, line_no, "invalid_body", "body", custom_id,
                            "line %u: body must be a JSON object, not %s", line_no, json_type_name(body));
        goto out;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (!model) {
        batchfile_add_error(bf, p, line_no, "missing_required_parameter", "body.model", custom_id,
                            "line %u: body.model is missing", line_no);
        goto out;
    }
    if (!cJSON_IsString(model)) {
        batchfile_add_error(bf, p, line_no, "invalid_model", "body.model", custom_id,
                            "line %u: body.model must be a string, not %s", line_no, json_type_name(model));
        goto out;
    }
    if (p->model_ok && !p->model_ok(p->model_ud, model->valuestring)) {
        batchfile_add_error(bf, p, line_no, "model_not_found", "body.model", custom_id,
                            "line %u: model '%s' is not served here (served: %s)", line_no,
                            batchfile_shorten(model->valuestring, q, sizeof(q)),
                            p->served_models ? p->served_models : "none");
        goto out;
    }
    if (p->endpoint && strcmp(batchfile_url_path(kind), p->endpoint) != 0) {
        batchfile_add_error(bf, p, line_no, "mismatched_endpoint", "url", custom_id,
                            "line %u: url %s does not match the batch's endpoint %s", line_no,
                            batchfile_url_path(kind), p->endpoint);
        goto out;
    }
    if (p->one_model && bf->model && strcmp(bf->model, model->valuestring) != 0) {
        batchfile_add_error(bf, p, line_no, "mismatched_model", "body.model", custom_id,
                            "line %u: model '%s' differs from '%s' of the first line; a batch uses one model",
                            line_no, batchfile_shorten(model->valuestring, q, sizeof(q)), bf->model);
        goto out;
    }
    if (!bf->model && !(bf->model = strdup(model->valuestring))) {
        batchfile_add_error(bf, p, line_no, "internal_error", NULL, NULL, "line %u: out of memory", line_no);
        goto out;
    }
    struct batchfile_line *l = &bf->lines[bf->n_lines];
    l->custom_id = strdup(custom_id);
    l->model = strdup(model->valuestring);
    if (!l->custom_id || !l->model) {
        free(l->model);
        free(l->custom_id);
        l->model = l->custom_id = NULL;
        batchfile_add_error(bf, p, line_no, "internal_error", NULL, NULL, "line %u: out of memory", line_no);
        goto out;
    }
    if (strset_add(ids, l->custom_id) < 0) {
        free(l->custom_id);
        free(l->model);
        l->model = l->custom_id = NULL;
        batchfile_add_error(bf, p, line_no, "internal_error", NULL, NULL, "line %u: out of memory", line_no);
        goto out;
    }
    l->off = off;
    l->len = len;
    l->line_no = line_no;
    l->url = kind;
    bf->n_lines++;
out:
    cJSON_Delete(root);
}

int batchfile_parse(const char *data, size_t size, const struct batchfile_params *p, struct batchfile **out,
                    char *err, size_t errlen)
{
    struct batchfile *bf = NULL;
    struct strset ids;
    int rc = NS_OK;
    *out = NULL;
    strset_init(&ids);

    if (size > p->max_bytes) {
        snprintf(err, errlen, "the input file is %zu bytes; the limit is %zu (--max-bytes)", size, p->max_bytes);
        return NS_ERR_TOO_LARGE;
    }
    /* count lines and check the encoding first: both are whole-file errors */
    size_t n_nonblank = 0;
    uint32_t line_no = 0;
    for (size_t off = 0; off < size;) {
        const char *nl = memchr(data + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (data + off)) : size - off;
        line_no++;
        size_t v = utf8_valid_prefix(data + off, len);
        if (v != len) {
            snprintf(err, errlen, "the input file is not valid UTF-8: line %u, byte %zu of the line", line_no, v + 1);
            return NS_ERR_INVALID;
        }
        bool blank = true;
        for (size_t i = 0; i < len && blank; i++)
            blank = data[off + i] == ' ' || data[off + i] == '\t' || data[off + i] == '\r';
        if (!blank && ++n_nonblank > p->max_lines) {
            snprintf(err, errlen, "the input file has more than %zu requests (the limit; see --max-lines)", p->max_lines);
            return NS_ERR_TOO_LARGE;
        }
        off += len + 1;
    }
    if (n_nonblank == 0) {
        snprintf(err, errlen, "the input file is empty: it has no request lines");
        return NS_ERR_INVALID;
    }

    bf = calloc(1, sizeof(*bf));
    if (!bf)
        return NS_ERR_NOMEM;
    bf->data = data;
    bf->size = size;
    bf->n_requests = n_nonblank;
    bf->hash = strset_hash(data, size, size);
    bf->lines = calloc(n_nonblank, sizeof(*bf->lines));
    if (!bf->lines) {
        rc = NS_ERR_NOMEM;
        goto out;
    }
    line_no = 0;
    for (size_t off = 0; off < size;) {
        const char *nl = memchr(data + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (data + off)) : size - off;
        line_no++;
        size_t tl = len;
        while (tl && (data[off + tl - 1] == '\r' || data[off + tl - 1] == ' ' || data[off + tl - 1] == '\t'))
            tl--;
        size_t lead = 0;
        while (lead < tl && (data[off + lead] == ' ' || data[off + lead] == '\t'))
            lead++;
        if (tl > lead)
            batchfile_check_line(bf, p, &ids, off + lead, tl - lead, line_no);
        off += len + 1;
    }
    if (bf->nomem_)
        rc = NS_ERR_NOMEM;
out:
    strset_release(&ids);
    if (rc != NS_OK) {
        batchfile_free(bf);
        snprintf(err, errlen, "out of memory reading the input file");
        return rc;
    }
    *out = bf;
    return NS_OK;
}

int batchfile_open(const char *path, const struct batchfile_params *p, struct batchfile **out, char *err,
                   size_t errlen)
{
    struct stat st;
    void *map = NULL;
    int rc;
    const char *name = p->name ? p->name : path;
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open input file '%s': %s", name, strerror(errno));
        return NS_ERR_IO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "input '%s' is not a regular file", name);
        close(fd);
        return NS_ERR_INVALID;
    }
    if ((size_t)st.st_size > p->max_bytes) {
        snprintf(err, errlen, "the input file '%s' is %lld bytes; the limit is %zu (--max-bytes)", name,
                 (long long)st.st_size, p->max_bytes);
        close(fd);
        return NS_ERR_TOO_LARGE;
    }
    if (st.st_size == 0) {
        snprintf(err, errlen, "the input file '%s' is empty", name);
        close(fd);
        return NS_ERR_INVALID;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "cannot map input file '%s': %s", name, strerror(errno));
        return NS_ERR_IO;
    }
    madvise(map, (size_t)st.st_size, MADV_SEQUENTIAL);
    rc = batchfile_parse(map, (size_t)st.st_size, p, out, err, errlen);
    if (rc != NS_OK) {
        munmap(map, (size_t)st.st_size);
        return rc;
    }
    (*out)->map_ = map;
    (*out)->map_len_ = (size_t)st.st_size;
    return NS_OK;
}

/* ---- running order grouped by shared prompt prefix -------------------------------- */

#define BF_KEY_MAX 512

struct bf_key {
    char key[BF_KEY_MAX];
    size_t len;
    size_t idx;
};

/* the start of what the prompt will be: message roles and contents, or the prompt */
static void bf_prompt_key(const struct batchfile *bf, size_t i, struct bf_key *k)
{
    const struct batchfile_line *l = &bf->lines[i];
    k->idx = i;
    k->len = 0;
    cJSON *root = cJSON_ParseWithLength(bf->data + l->off, l->len);
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(root, "body");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(body, "prompt");
#define KEY_ADD(str)                                                                                               \
    do {                                                                                                           \
        const char *s_ = (str);                                                                                    \
        size_t n_ = strlen(s_);                                                                                    \
        if (n_ > BF_KEY_MAX - k->len)                                                                             \
            n_ = BF_KEY_MAX - k->len;                                                                             \
        memcpy(k->key + k->len, s_, n_);                                                                           \
        k->len += n_;                                                                                              \
    } while (0)
    if (cJSON_IsArray(msgs)) {
        const cJSON *m;
        cJSON_ArrayForEach(m, msgs)
        {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
            if (cJSON_IsString(role))
                KEY_ADD(role->valuestring);
            KEY_ADD("\x1f");
            if (cJSON_IsString(content))
                KEY_ADD(content->valuestring);
            KEY_ADD("\x1e");
            if (k->len == BF_KEY_MAX)
                break;
        }
    } else if (cJSON_IsString(prompt)) {
        KEY_ADD(prompt->valuestring);
    }
#undef KEY_ADD
    cJSON_Delete(root);
}

static int bf_key_cmp(const void *a, const void *b)
{
    const struct bf_key *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

size_t *batchfile_prefix_order(const struct batchfile *bf, bool group)
{
    size_t n = bf->n_lines;
    size_t *order = malloc(sizeof(*order) * (n ? n : 1));
    if (!order)
        return NULL;
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    if (!group || n < 2)
        return order;
    struct bf_key *keys = malloc(sizeof(*keys) * n);
    if (!keys)
        return order; /* file order still works */
    for (size_t i = 0; i < n; i++)
        bf_prompt_key(bf, i, &keys[i]);
    qsort(keys, n, sizeof(*keys), bf_key_cmp);
    for (size_t i = 0; i < n; i++)
        order[i] = keys[i].idx;
    free(keys);
    return order;
}

cJSON *batchfile_errors_json(const struct batchfile *bf, size_t max)
{
    cJSON *errs = cJSON_CreateObject();
    cJSON_AddStringToObject(errs, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(errs, "data");
    for (size_t i = 0; i < bf->n_errors && (max == 0 || i < max); i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "code", bf->errors[i].code);
        cJSON_AddNumberToObject(e, "line", bf->errors[i].line);
        cJSON_AddStringToObject(e, "message", bf->errors[i].message);
        if (bf->errors[i].param)
            cJSON_AddStringToObject(e, "param", bf->errors[i].param);
        else
            cJSON_AddNullToObject(e, "param");
        cJSON_AddItemToArray(data, e);
    }
    return errs;
}

static int bf_error_cmp(const void *a, const void *b)
{
    const struct batchfile_error *x = a, *y = b;
    return x->line < y->line ? -1 : x->line > y->line;
}

int batchfile_add_external_error(struct batchfile *bf, const struct batchfile_params *p, uint32_t line,
                                 const char *code, const char *param, const char *custom_id, const char *message)
{
    bf->n_requests++;
    batchfile_add_error(bf, p, line, code, param, custom_id, "%s", message);
    return bf->nomem_ ? NS_ERR_NOMEM : NS_OK;
}

void batchfile_errors_sort(struct batchfile *bf)
{
    qsort(bf->errors, bf->n_errors, sizeof(*bf->errors), bf_error_cmp);
}

void batchfile_free(struct batchfile *bf)
{
    if (!bf)
        return;
    if (bf->lines)
        for (size_t i = 0; i < bf->n_lines; i++) {
            free(bf->lines[i].custom_id);
            free(bf->lines[i].model);
        }
    if (bf->errors)
        for (size_t i = 0; i < bf->n_errors; i++) {
            free(bf->errors[i].message);
            free(bf->errors[i].custom_id);
        }
    free(bf->lines);
    free(bf->errors);
    free(bf->model);
    if (bf->map_)
        munmap(bf->map_, bf->map_len_);
    free(bf);
}
