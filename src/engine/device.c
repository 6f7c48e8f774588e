/*
 * device.c — llama.cpp's backends and devices, and where a model runs: loading the backends
 * (once per process), listing the devices, picking the ones asked for (--device), counting
 * GPUs, the placement plan (engine_plan_placement: layers on a GPU, the context the memory
 * fit allows), shrinking the sequences to what fits, and describing where the context ended
 * up (engine_info). Part of the engine module: engine_int.h holds the shared state.
 *
 * THREADS
 * engine_backends_check: any thread; the backends load once (pthread_once), every caller
 * sees the same result. The rest: the thread of engine_init / engine_plan_placement, or any
 * thread for engine_devices_list / engine_cpu_build (after the backends are loaded, ggml's
 * device registry is only read).
 *
 * INVARIANTS
 * - e->devs is NULL (llama.cpp's choice: every GPU) or NULL-terminated, and owned by e.
 * - engine_plan_placement builds no context and loads no weights: it asks llama.cpp's fit
 *   with the same params engine_init would use.
 */
#include "engine_int.h"

#include "gguf.h"

#include "../util/buf.h"
#include "../util/status.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- backends and devices ------------------------------------------------------------------
 * The CPU build links llama.cpp statically with its CPU backend registered at start. A GPU
 * build (CMake's NS_GPU_KIND, from scripts/bootstrap.sh NIGHTSHIFT_GPU=...) links the npm
 * package's shared libllama/libggml and loads its backends (the best CPU variant for this
 * CPU, and the GPU one) from NS_GGML_BACKEND_DIR at the first call, once for the process. */
static pthread_once_t engine_backends_once = PTHREAD_ONCE_INIT;
static int engine_backends_rc;            /* NS_OK or NS_ERR_ENGINE */
static char engine_backends_msg[512];     /* the error, or a warning with NS_OK */

const char *engine_build_kind(void) { return NS_GPU_KIND; }

#ifdef NS_GGML_BACKEND_DIR
/* the first host library of the backend's that does not load, or NULL */
static const char *engine_missing_runtime(void)
{
    static const char *const vulkan[] = {"libvulkan.so.1", NULL};
    static const char *const cuda[] = {"libcuda.so.1", "libcudart.so.13", "libcublas.so.13", NULL};
    const char *const *libs = strcmp(NS_GPU_KIND, "cuda") == 0 ? cuda : vulkan;
    for (int i = 0; libs[i]; i++) {
        void *h = dlopen(libs[i], RTLD_LAZY | RTLD_LOCAL);
        if (!h)
            return libs[i];
        dlclose(h);
    }
    return NULL;
}
#endif

static void engine_backends_load(void)
{
#ifdef NS_GGML_BACKEND_DIR
    /* same release, or nothing: the headers this binary was compiled with must describe the
     * libraries it runs with (structs passed by value cross this line) */
    const char *ver = ggml_version(), *commit = ggml_commit();
    if (strcmp(ver, NS_GGML_VERSION) != 0 || strcmp(commit, NS_GGML_COMMIT) != 0) {
        engine_backends_rc = NS_ERR_ENGINE;
        snprintf(engine_backends_msg, sizeof(engine_backends_msg),
                 "llama.cpp library mismatch: this nightshift was built for ggml %s (commit %s) from the %s package, "
                 "but the loaded libraries are ggml %s (commit %s): rebuild with NIGHTSHIFT_GPU=%s scripts/bootstrap.sh "
                 "and make build, and check LD_LIBRARY_PATH",
                 NS_GGML_VERSION, NS_GGML_COMMIT, NS_GPU_KIND, ver, commit, NS_GPU_KIND);
        return;
    }
    const char *dir = getenv("NIGHTSHIFT_BACKEND_DIR");
    if (!dir || !*dir)
        dir = NS_GGML_BACKEND_DIR;
    llama_log_set(engine_quiet_log, NULL); /* a backend that cannot load is reported below */
    ggml_backend_load_all_from_path(dir);
    if (ggml_backend_dev_count() == 0) {
        engine_backends_rc = NS_ERR_ENGINE;
        snprintf(engine_backends_msg, sizeof(engine_backends_msg),
                 "no llama.cpp backend loaded from '%s' (not even the CPU's): run NIGHTSHIFT_GPU=%s "
                 "scripts/bootstrap.sh again, or set NIGHTSHIFT_BACKEND_DIR to the package's bins directory",
                 dir, NS_GPU_KIND);
        return;
    }
    const char *reg = strcmp(NS_GPU_KIND, "cuda") == 0 ? "CUDA" : "Vulkan";
    if (!ggml_backend_reg_by_name(reg)) {
        const char *lib = engine_missing_runtime();
        if (lib)
            snprintf(engine_backends_msg, sizeof(engine_backends_msg),
                     "the %s backend is not loaded: %s is missing on this machine (%s); running on the CPU", reg, lib,
                     strcmp(reg, "CUDA") == 0 ? "install the NVIDIA driver and the CUDA 13 runtime: libcudart13 and "
                                                "libcublas13, e.g. from NVIDIA's CUDA repository"
                                              : "Debian: apt-get install libvulkan1 mesa-vulkan-drivers");
        else
            snprintf(engine_backends_msg, sizeof(engine_backends_msg),
                     "the %s backend did not load from '%s' (run with --verbose for ggml's log); running on the CPU",
                     reg, dir);
    }
#endif
}

int engine_backends_check(char *err, size_t errlen)
{
    pthread_once(&engine_backends_once, engine_backends_load);
    if (err && errlen)
        snprintf(err, errlen, "%s", engine_backends_msg);
    return engine_backends_rc;
}

static const char *engine_dev_type_name(enum ggml_backend_dev_type t)
{
    switch (t) {
    case GGML_BACKEND_DEVICE_TYPE_CPU: return "cpu";
    case GGML_BACKEND_DEVICE_TYPE_GPU: return "gpu";
    case GGML_BACKEND_DEVICE_TYPE_IGPU: return "igpu";
    default: return "accel";
    }
}

static bool engine_dev_is_gpu(ggml_backend_dev_t d)
{
    enum ggml_backend_dev_type t = ggml_backend_dev_type(d);
    return t == GGML_BACKEND_DEVICE_TYPE_GPU || t == GGML_BACKEND_DEVICE_TYPE_IGPU;
}

int engine_devices_list(struct engine_device *out, int max)
{
    engine_backends_check(NULL, 0);
    int n = (int)ggml_backend_dev_count();
    for (int i = 0; i < n && i < max; i++) {
        ggml_backend_dev_t d = ggml_backend_dev_get((size_t)i);
        struct engine_device *o = &out[i];
        memset(o, 0, sizeof(*o));
        snprintf(o->name, sizeof(o->name), "%s", ggml_backend_dev_name(d));
        snprintf(o->desc, sizeof(o->desc), "%s", ggml_backend_dev_description(d));
        ggml_backend_reg_t r = ggml_backend_dev_backend_reg(d);
        snprintf(o->backend, sizeof(o->backend), "%s", r ? ggml_backend_reg_name(r) : "");
        snprintf(o->type, sizeof(o->type), "%s", engine_dev_type_name(ggml_backend_dev_type(d)));
        size_t fr = 0, tot = 0;
        ggml_backend_dev_memory(d, &fr, &tot);
        o->mem_free = fr;
        o->mem_total = tot;
    }
    return n;
}

void engine_cpu_build(struct engine_cpu_build *out)
{
    /* the CPU backend's features: the instruction sets its code was compiled with (in a GPU
     * build, of the variant ggml chose for this CPU at load) */
    memset(out, 0, sizeof(*out));
    engine_backends_check(NULL, 0);
    ggml_backend_reg_t cpu = ggml_backend_reg_by_name("CPU");
    ggml_backend_get_features_t get =
        cpu ? (ggml_backend_get_features_t)ggml_backend_reg_get_proc_address(cpu, "ggml_backend_get_features") : NULL;
    for (struct ggml_backend_feature *f = get ? get(cpu) : NULL; f && f->name; f++) {
        bool on = strcmp(f->value, "1") == 0;
        out->avx |= on && strcmp(f->name, "AVX") == 0;
        out->avx2 |= on && strcmp(f->name, "AVX2") == 0;
        out->avx512 |= on && strcmp(f->name, "AVX512") == 0;
        out->amx |= on && strcmp(f->name, "AMX_INT8") == 0;
    }
}


/* ---- where the model runs ---------------------------------------------------------------- */
/* --device NAME[,NAME...] -> e->devs (NULL-terminated); none given: e->devs stays NULL and
 * llama.cpp uses every GPU */
int engine_pick_devices(struct engine *e, char *err, size_t errlen)
{
    const char *list = e->p.devices;
    if (!list || !*list)
        return NS_OK;
    size_t n = 1;
    for (const char *c = list; *c; c++)
        n += *c == ',';
    e->devs = calloc(n + 1, sizeof(*e->devs));
    if (!e->devs)
        return NS_ERR_NOMEM;
    size_t k = 0;
    for (const char *c = list; *c;) {
        const char *end = strchr(c, ',');
        size_t len = end ? (size_t)(end - c) : strlen(c);
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)(len < sizeof(name) ? len : sizeof(name) - 1), c);
        ggml_backend_dev_t d = len ? ggml_backend_dev_by_name(name) : NULL;
        if (!d) {
            char have[256] = "";
            size_t used = 0;
            for (size_t i = 0; i < ggml_backend_dev_count() && used < sizeof(have); i++)
                used += (size_t)snprintf(have + used, sizeof(have) - used, "%s%s", i ? ", " : "",
                                         ggml_backend_dev_name(ggml_backend_dev_get(i)));
            snprintf(err, errlen, "--device: no device named '%s' (this machine has: %s; see --list-devices)", name,
                     have);
            return NS_ERR_INVALID;
        }
        e->devs[k++] = d;
        c = end ? end + 1 : c + len;
    }
    return NS_OK;
}

/* would llama.cpp put layers on a GPU: one among the devices asked for, or any */
int engine_n_gpus(const struct engine *e)
{
    int n = 0;
    if (e->devs) {
        for (ggml_backend_dev_t *d = e->devs; *d; d++)
            n += engine_dev_is_gpu(*d);
    } else {
        for (size_t i = 0; i < ggml_backend_dev_count(); i++)
            n += engine_dev_is_gpu(ggml_backend_dev_get(i));
    }
    return n;
}

/* GGUF <arch>.context_length without loading the model (0 when absent) */
int engine_peek_ctx_train(const char *path)
{
    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g)
        return 0;
    int v = 0;
    int64_t k = gguf_find_key(g, "general.architecture");
    if (k >= 0 && gguf_get_kv_type(g, k) == GGUF_TYPE_STRING) {
        char key[96];
        snprintf(key, sizeof(key), "%s.context_length", gguf_get_val_str(g, k));
        int64_t c = gguf_find_key(g, key);
        if (c >= 0 && gguf_get_kv_type(g, c) == GGUF_TYPE_UINT32)
            v = (int)gguf_get_val_u32(g, c);
    }
    gguf_free(g);
    return v;
}

/* what the context ended up holding where, and how many layers a GPU has (llama.cpp counts
 * the output layer as one: n_layer + 1 offloadable, the last ones first) */
void engine_describe_where(struct engine *e, int ngl)
{
    struct engine_info *in = &e->info;
    struct chat_mem rows[8];
    int n = chat_memory_breakdown(e->ctx, rows, 8);
    bool on_gpu = false;
    struct buf where;
    buf_init(&where, 4096);
    in->n_dev_mem = 0;
    for (int i = 0; i < n && i < 8; i++) {
        in->mem_model += rows[i].model;
        in->mem_kv += rows[i].context;
        in->mem_compute += rows[i].compute;
        uint64_t b = rows[i].model + rows[i].context + rows[i].compute;
        if (b && in->n_dev_mem < (int)(sizeof(in->dev_mem) / sizeof(in->dev_mem[0]))) {
            snprintf(in->dev_mem[in->n_dev_mem].name, sizeof(in->dev_mem[0].name), "%s", rows[i].name);
            in->dev_mem[in->n_dev_mem].host = rows[i].host;
            in->dev_mem[in->n_dev_mem++].bytes = b;
        }
        ggml_backend_dev_t d = rows[i].device[0] ? ggml_backend_dev_by_name(rows[i].device) : NULL;
        if (rows[i].model && d && engine_dev_is_gpu(d)) {
            on_gpu = true;
            buf_appendf(&where, "%s%s (%s)", where.len ? ", " : "", ggml_backend_dev_name(d),
                        ggml_backend_dev_description(d));
        }
    }
    in->n_layers = llama_model_n_layer(e->model) + 1;
    in->n_layers_gpu = !on_gpu ? 0 : ngl < 0 || ngl > in->n_layers ? in->n_layers : ngl;
    if (on_gpu)
        buf_appendf(&where, ", %d/%d layers", in->n_layers_gpu, in->n_layers);
    /* the devices first: a long list is cut, never the layer count of a short one */
    snprintf(in->where, sizeof(in->where), "%s", on_gpu && where.p ? where.p : "CPU");
    buf_release(&where);
    snprintf(in->cache_type_k, sizeof(in->cache_type_k), "%s", engine_cache_type_name(e->p.cache_type_k));
    snprintf(in->cache_type_v, sizeof(in->cache_type_v), "%s", engine_cache_type_name(e->p.cache_type_v));
    snprintf(in->flash_attn, sizeof(in->flash_attn), "%s",
             e->p.flash_attn == ENGINE_FA_ON ? "on" : e->p.flash_attn == ENGINE_FA_OFF ? "off" : "auto");
}

/* Too many sequences for the memory: the fit found room for n_fit cells, the context asked
 * for wants more. Keep each sequence's context and run fewer sequences (the interactive
 * ones last to go); below one sequence, one sequence with what fits. */
void engine_apply_fit(struct engine *e, struct engine_params *p, int n_fit, const char *margin_where)
{
    int slots = p->n_parallel + p->n_priority;
    int per = p->n_ctx / (slots > 0 ? slots : 1);
    int old_par = p->n_parallel, old_ctx = p->n_ctx;
    if (p->kv_unified) {
        p->n_ctx = n_fit;
    } else if (per > 0 && n_fit / per >= 1) {
        int fit_slots = n_fit / per;
        if (fit_slots > p->n_priority) {
            p->n_parallel = fit_slots - p->n_priority;
        } else {
            p->n_parallel = 1;
            p->n_priority = fit_slots - 1;
        }
        p->n_ctx = per * (p->n_parallel + p->n_priority);
    } else {
        p->n_parallel = 1;
        p->n_priority = 0;
        p->n_ctx = n_fit;
    }
    snprintf(e->info.fit_note, sizeof(e->info.fit_note),
             "%d sequences with a context of %d would not leave %d MiB free on %s: %d sequences, context %d",
             old_par, old_ctx, p->fit_margin_mib, margin_where, p->n_parallel, p->n_ctx);
    fprintf(stderr, "nightshift: memory fit: %s\n", e->info.fit_note);
}

int engine_plan_placement(const struct engine_params *p, struct engine_plan *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    int rc = engine_check_gguf(p->model_path, err, errlen);
    if (rc != NS_OK || (rc = engine_backends_check(err, errlen)) != NS_OK)
        return rc;
    struct engine tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.p = *p;
    if ((rc = engine_pick_devices(&tmp, err, errlen)) != NS_OK) {
        free(tmp.devs);
        return rc;
    }
    int n_gpus = engine_n_gpus(&tmp);
    struct llama_model_params mp = llama_model_default_params();
    mp.devices = tmp.devs;
    int ngl = p->n_gpu_layers;
    mp.n_gpu_layers = !n_gpus ? 0 : ngl == ENGINE_GPU_LAYERS_AUTO ? -1 : ngl == ENGINE_GPU_LAYERS_ALL ? 1 << 20 : ngl;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_seq_max = (uint32_t)(p->n_parallel + (p->n_priority > 0 ? p->n_priority : 0));
    cp.n_batch = (uint32_t)p->n_batch;
    cp.n_ubatch = (uint32_t)p->n_ubatch;
    cp.type_k = engine_cache_ggml_type(p->cache_type_k);
    cp.type_v = engine_cache_ggml_type(p->cache_type_v);
    cp.flash_attn_type = (enum llama_flash_attn_type)p->flash_attn;
    cp.n_ctx = 0;
    float *split = calloc(llama_max_devices(), sizeof(*split));
    struct llama_model_tensor_buft_override *ovr = calloc(llama_max_tensor_buft_overrides(), sizeof(*ovr));
    if (!split || !ovr) {
        rc = NS_ERR_NOMEM;
        goto done;
    }
    if (n_gpus || p->fit == ENGINE_FIT_ON) {
        llama_log_set(engine_quiet_log, NULL);
        int fr = chat_fit_params(p->model_path, &mp, &cp, split, ovr, (size_t)p->fit_margin_mib << 20, 256, err, errlen);
        if (fr != 0 && fr != 1) {
            rc = fr;
            goto done;
        }
        out->fits = fr == 0;
        out->n_ctx_fit = (int)cp.n_ctx;
    }
    /* <arch>.block_count: the repeating layers; llama.cpp offloads the output layer as one more */
    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(p->model_path, gp);
    if (g) {
        int64_t k = gguf_find_key(g, "general.architecture");
        if (k >= 0 && gguf_get_kv_type(g, k) == GGUF_TYPE_STRING) {
            char key[96];
            snprintf(key, sizeof(key), "%s.block_count", gguf_get_val_str(g, k));
            int64_t c = gguf_find_key(g, key);
            if (c >= 0 && gguf_get_kv_type(g, c) == GGUF_TYPE_UINT32)
                out->n_layers = (int)gguf_get_val_u32(g, c) + 1;
        }
        gguf_free(g);
    }
    out->n_layers_gpu = !n_gpus ? 0 : mp.n_gpu_layers < 0 || mp.n_gpu_layers > out->n_layers ? out->n_layers
                                                                                                : mp.n_gpu_layers;
done:
    free(split);
    free(ovr);
    free(tmp.devs);
    return rc;
}
