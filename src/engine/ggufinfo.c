/*
 * ggufinfo.c — see ggufinfo.h: a GGUF header read for what the model is, never its weights.
 */
#include "ggufinfo.h"

#include "ggml.h"
#include "gguf.h"
#include "llama.h"

#include "../util/status.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* marker tokens of the common chat template families, most specific first */
static const struct {
    const char *marker;
    const char *name;
} ggufinfo_templates[] = {
    {"<|start_header_id|>", "llama3"}, {"<|im_start|>", "chatml"},     {"<start_of_turn>", "gemma"},
    {"[INST]", "mistral"},             {"<|assistant|>", "phi3"},      {"<|START_OF_TURN_TOKEN|>", "command-r"},
    {"<｜Assistant｜>", "deepseek"},   {"<|channel|>", "gpt-oss"},     {"### Instruction:", "alpaca"},
};

const char *ggufinfo_template_name(const char *jinja)
{
    if (!jinja || !*jinja)
        return "none";
    for (size_t i = 0; i < sizeof(ggufinfo_templates) / sizeof(ggufinfo_templates[0]); i++)
        if (strstr(jinja, ggufinfo_templates[i].marker))
            return ggufinfo_templates[i].name;
    return "jinja";
}

/* a string value of g, or NULL */
static const char *ggufinfo_str(const struct gguf_context *g, const char *key)
{
    int64_t k = gguf_find_key(g, key);
    return k >= 0 && gguf_get_kv_type(g, k) == GGUF_TYPE_STRING ? gguf_get_val_str(g, k) : NULL;
}

/* an integer value of g of any integer type, or -1 */
static int64_t ggufinfo_int(const struct gguf_context *g, const char *key)
{
    int64_t k = gguf_find_key(g, key);
    if (k < 0)
        return -1;
    switch (gguf_get_kv_type(g, k)) {
    case GGUF_TYPE_UINT8: return gguf_get_val_u8(g, k);
    case GGUF_TYPE_INT8: return gguf_get_val_i8(g, k);
    case GGUF_TYPE_UINT16: return gguf_get_val_u16(g, k);
    case GGUF_TYPE_INT16: return gguf_get_val_i16(g, k);
    case GGUF_TYPE_UINT32: return gguf_get_val_u32(g, k);
    case GGUF_TYPE_INT32: return gguf_get_val_i32(g, k);
    case GGUF_TYPE_UINT64: return (int64_t)gguf_get_val_u64(g, k);
    case GGUF_TYPE_INT64: return gguf_get_val_i64(g, k);
    default: return -1;
    }
}

/* the elements of every tensor of g (a tensor's bytes / its type's block bytes * block size) */
static uint64_t ggufinfo_params(const struct gguf_context *g)
{
    uint64_t n = 0;
    for (int64_t i = 0; i < gguf_get_n_tensors(g); i++) {
        enum ggml_type t = gguf_get_tensor_type(g, i);
        size_t ts = ggml_type_size(t);
        if (ts)
            n += (uint64_t)gguf_get_tensor_size(g, i) / ts * (uint64_t)ggml_blck_size(t);
    }
    return n;
}

static struct gguf_context *ggufinfo_open(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    unsigned char magic[4] = {0};
    size_t got = f ? fread(magic, 1, 4, f) : 0;
    if (f)
        fclose(f);
    if (!f) {
        snprintf(err, errlen, "cannot open model '%s'", path);
        return NULL;
    }
    if (got < 4 || memcmp(magic, "GGUF", 4) != 0) {
        snprintf(err, errlen, "'%s' is not a GGUF model file (it does not start with the GGUF magic)", path);
        return NULL;
    }
    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g)
        snprintf(err, errlen, "'%s' is not a readable GGUF model file (bad or truncated header)", path);
    return g;
}

static uint64_t ggufinfo_file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

int ggufinfo_read(const char *path, struct engine_info *out, uint64_t *bytes, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    struct gguf_context *g = ggufinfo_open(path, err, errlen);
    if (!g)
        return NS_ERR_INVALID;
    const char *s = ggufinfo_str(g, "general.name");
    const char *base = strrchr(path, '/');
    snprintf(out->name, sizeof(out->name), "%s", s && *s ? s : base ? base + 1 : path);
    s = ggufinfo_str(g, "general.architecture");
    snprintf(out->arch, sizeof(out->arch), "%s", s ? s : "");
    out->file_type = (int)ggufinfo_int(g, "general.file_type");
    char key[96];
    snprintf(key, sizeof(key), "%s.context_length", out->arch);
    int64_t v = ggufinfo_int(g, key);
    out->n_ctx_train = v > 0 && v < (1LL << 31) ? (int)v : 0;
    int64_t k = gguf_find_key(g, "tokenizer.ggml.tokens");
    out->n_vocab = k >= 0 && gguf_get_kv_type(g, k) == GGUF_TYPE_ARRAY ? (int)gguf_get_arr_n(g, k) : 0;
    snprintf(out->chat_template, sizeof(out->chat_template), "%s",
             ggufinfo_template_name(ggufinfo_str(g, "tokenizer.chat_template")));
    out->n_params = ggufinfo_params(g);
    uint64_t total = ggufinfo_file_size(path);
    int64_t n_split = ggufinfo_int(g, "split.count");
    gguf_free(g);
    /* the other splits sit beside the first, named as llama.cpp names them */
    char prefix[4096], split[4200];
    if (n_split > 1 && n_split < 10000 && llama_split_prefix(prefix, sizeof(prefix), path, 1, (int)n_split) > 0) {
        for (int i = 2; i <= n_split; i++) {
            llama_split_path(split, sizeof(split), prefix, i, (int)n_split);
            struct gguf_context *gs = ggufinfo_open(split, err, errlen);
            if (!gs)
                return NS_ERR_INVALID;
            out->n_params += ggufinfo_params(gs);
            total += ggufinfo_file_size(split);
            gguf_free(gs);
        }
    }
    if (bytes)
        *bytes = total;
    /* the shape of llama_model_desc(): "llama 494.03M Q8_0" */
    double p = (double)out->n_params;
    char psz[32];
    if (p >= 1e9)
        snprintf(psz, sizeof(psz), "%.2fB", p / 1e9);
    else
        snprintf(psz, sizeof(psz), "%.2fM", p / 1e6);
    char ft[64] = "";
    if (out->file_type >= 0)
        snprintf(ft, sizeof(ft), " ftype %d", out->file_type);
    snprintf(out->desc, sizeof(out->desc), "%s %s%s", out->arch[0] ? out->arch : "?", psz, ft);
    return NS_OK;
}
