/*
 * options.c — the engine's option names (KV cache types, flash attention, split mode, GPU
 * layers) parsed and named, and the cheap checks of a model file made before loading it
 * (the GGUF magic, its general.name). Part of the engine module (engine_int.h).
 *
 * THREADS
 * Any thread: nothing here keeps state.
 *
 * INVARIANTS
 * - A parser returns the option's ENGINE_* value, or a negative value for a name it does not
 *   know (the caller names the field in its error).
 */
#include "engine_int.h"

#include "gguf.h"

#include "../util/status.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int engine_cache_type_parse(const char *s)
{
    static const char *const names[] = {"f16", "q8_0", "q4_0"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -3;
}

const char *engine_cache_type_name(int t)
{
    return t == ENGINE_CACHE_Q8_0 ? "q8_0" : t == ENGINE_CACHE_Q4_0 ? "q4_0" : "f16";
}

enum ggml_type engine_cache_ggml_type(int t)
{
    return t == ENGINE_CACHE_Q8_0 ? GGML_TYPE_Q8_0 : t == ENGINE_CACHE_Q4_0 ? GGML_TYPE_Q4_0 : GGML_TYPE_F16;
}

int engine_flash_attn_parse(const char *s)
{
    return strcmp(s, "auto") == 0 ? ENGINE_FA_AUTO : strcmp(s, "on") == 0 ? ENGINE_FA_ON
                                                     : strcmp(s, "off") == 0 ? ENGINE_FA_OFF
                                                                            : -3;
}

int engine_split_mode_parse(const char *s)
{
    return strcmp(s, "none") == 0 ? ENGINE_SPLIT_NONE : strcmp(s, "layer") == 0 ? ENGINE_SPLIT_LAYER
                                                       : strcmp(s, "row") == 0 ? ENGINE_SPLIT_ROW
                                                                              : -3;
}

int engine_gpu_layers_parse(const char *s)
{
    if (strcmp(s, "auto") == 0)
        return ENGINE_GPU_LAYERS_AUTO;
    if (strcmp(s, "all") == 0)
        return ENGINE_GPU_LAYERS_ALL;
    if (!*s || strlen(s) > 5)
        return -3;
    int v = 0;
    for (const char *c = s; *c; c++) {
        if (*c < '0' || *c > '9')
            return -3;
        v = v * 10 + (*c - '0');
    }
    return v <= 10000 ? v : -3;
}

int engine_check_gguf(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open model '%s': %s", path, strerror(errno));
        return NS_ERR_INVALID;
    }
    unsigned char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    if (n < 4 || memcmp(magic, "GGUF", 4) != 0) {
        snprintf(err, errlen, "'%s' is not a GGUF model file (it does not start with the GGUF magic)", path);
        return NS_ERR_INVALID;
    }
    return NS_OK;
}

int engine_peek_name(const char *path, char *out, size_t n, char *err, size_t errlen)
{
    int rc = engine_check_gguf(path, err, errlen);
    if (rc)
        return rc;
    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) {
        snprintf(err, errlen, "'%s' is not a readable GGUF model file (bad or truncated header)", path);
        return NS_ERR_INVALID;
    }
    int64_t k = gguf_find_key(g, "general.name");
    snprintf(out, n, "%s", k >= 0 && gguf_get_kv_type(g, k) == GGUF_TYPE_STRING ? gguf_get_val_str(g, k) : "");
    gguf_free(g);
    return NS_OK;
}
