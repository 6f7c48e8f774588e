/*
 * lora.c — see lora.h for the design.
 *
 * INVARIANTS
 * - The registry holds one entry per loaded file (by its real path), refs >= 1; an entry
 *   leaves the registry, and its model is freed, when refs drops to 0.
 * - Decodes of a base with more than one engine run on its decode thread, one at a time, in
 *   the order they were asked (a FIFO of jobs on the askers' stacks); an asker sleeps until
 *   its job is done. The thread runs from the first such decode to the base's release.
 */
#include "lora.h"

#include "gguf.h"
#include "llama.h"

#include "../util/status.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int lora_spec_parse(const char *text, size_t *path_len, float *scale, char *err, size_t errlen)
{
    size_t n = strlen(text);
    *path_len = n;
    *scale = 1.0f;
    const char *colon = strrchr(text, ':');
    if (colon) {
        const char *v = colon + 1;
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        bool numeric = end != v && !*end && !errno;
        /* "a.gguf:x", "a.gguf:" and "a.gguf:1e999" are meant as scales; a ':' inside a path
         * ("/data/run:3/a.gguf") is followed by a '/' */
        if (!numeric && strchr(v, '/'))
            colon = NULL;
        else if (!numeric || !isfinite(d) || fabs(d) > LORA_SCALE_MAX) {
            snprintf(err, errlen, "the scale '%s' of '%.*s' must be a number from -%g to %g", v, (int)(colon - text),
                     text, (double)LORA_SCALE_MAX, (double)LORA_SCALE_MAX);
            return NS_ERR_INVALID;
        } else {
            *path_len = (size_t)(colon - text);
            *scale = (float)d;
        }
    }
    if (*path_len == 0) {
        snprintf(err, errlen, "'%s' names no adapter file (FILE or FILE:SCALE)", text);
        return NS_ERR_INVALID;
    }
    return NS_OK;
}

/* ---- shared base weights ------------------------------------------------------------------ */

struct lora_job {
    struct llama_context *ctx;
    struct llama_batch batch;
    bool encode, done;
    int ret;
    double seconds;
    struct lora_job *next;
};

struct lora_base {
    char *path;                /* realpath of the file */
    struct llama_model *model;
    int refs;                  /* under lora_mu */
    /* the decode thread; its queue under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv_job, cv_done;
    struct lora_job *head, *tail;
    bool running, quit;
    pthread_t thread;
    struct lora_base *link;
};

static pthread_mutex_t lora_mu = PTHREAD_MUTEX_INITIALIZER;
static struct lora_base *lora_bases;
static uint64_t lora_loads;

int lora_base_acquire(const char *path, const struct llama_model_params *mp, struct lora_base **out,
                      struct llama_model **model, bool *shared, char *err, size_t errlen)
{
    int rc = NS_OK;
    char real[PATH_MAX];
    *out = NULL;
    *model = NULL;
    *shared = false;
    if (!realpath(path, real))
        snprintf(real, sizeof(real), "%s", path);
    pthread_mutex_lock(&lora_mu);
    struct lora_base *b = lora_bases;
    while (b && strcmp(b->path, real) != 0)
        b = b->link;
    if (b) {
        b->refs++;
        *shared = true;
        goto out;
    }
    /* loaded under the registry's mutex: a second engine of the same file waits for it
     * rather than loading it again */
    if (!(b = calloc(1, sizeof(*b))) || !(b->path = strdup(real))) {
        free(b);
        b = NULL;
        snprintf(err, errlen, "out of memory");
        rc = NS_ERR_NOMEM;
        goto out;
    }
    if (!(b->model = llama_model_load_from_file(path, *mp))) {
        snprintf(err, errlen, "cannot load model '%s': llama.cpp rejected it (run with --verbose for its log)", path);
        free(b->path);
        free(b);
        b = NULL;
        rc = NS_ERR_INVALID;
        goto out;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv_job, NULL);
    pthread_cond_init(&b->cv_done, NULL);
    b->refs = 1;
    b->link = lora_bases;
    lora_bases = b;
    lora_loads++;
out:
    pthread_mutex_unlock(&lora_mu);
    if (b) {
        *out = b;
        *model = b->model;
    }
    return rc;
}

void lora_base_release(struct lora_base *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&lora_mu);
    bool last = --b->refs == 0;
    if (last) {
        struct lora_base **pp = &lora_bases;
        while (*pp != b)
            pp = &(*pp)->link;
        *pp = b->link;
    }
    pthread_mutex_unlock(&lora_mu);
    if (!last)
        return;
    if (b->running) {
        pthread_mutex_lock(&b->mu);
        b->quit = true;
        pthread_cond_broadcast(&b->cv_job);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->thread, NULL);
    }
    llama_model_free(b->model);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv_job);
    pthread_cond_destroy(&b->cv_done);
    free(b->path);
    free(b);
}

int lora_base_users(const struct lora_base *b)
{
    pthread_mutex_lock(&lora_mu);
    int n = b ? b->refs : 0;
    pthread_mutex_unlock(&lora_mu);
    return n;
}

uint64_t lora_base_loads(void)
{
    pthread_mutex_lock(&lora_mu);
    uint64_t n = lora_loads;
    pthread_mutex_unlock(&lora_mu);
    return n;
}

static int lora_run(struct llama_context *ctx, struct llama_batch batch, bool encode, double *seconds)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int ret = encode ? llama_encode(ctx, batch) : llama_decode(ctx, batch);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    return ret;
}

static void *lora_decode_main(void *arg)
{
    struct lora_base *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->head && !b->quit)
            pthread_cond_wait(&b->cv_job, &b->mu);
        if (!b->head)
            break;
        struct lora_job *j = b->head;
        b->head = j->next;
        if (!b->head)
            b->tail = NULL;
        pthread_mutex_unlock(&b->mu);
        j->ret = lora_run(j->ctx, j->batch, j->encode, &j->seconds);
        pthread_mutex_lock(&b->mu);
        j->done = true;
        pthread_cond_broadcast(&b->cv_done);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int lora_base_forward(struct lora_base *b, struct llama_context *ctx, struct llama_batch batch, bool encode,
                      double *seconds)
{
    /* alone on its weights (the usual case): on the caller's thread, as without adapters */
    if (!b || lora_base_users(b) < 2)
        return lora_run(ctx, batch, encode, seconds);
    struct lora_job j = {.ctx = ctx, .batch = batch, .encode = encode};
    pthread_mutex_lock(&b->mu);
    if (!b->running) {
        if (pthread_create(&b->thread, NULL, lora_decode_main, b) != 0) {
            pthread_mutex_unlock(&b->mu);
            /* no thread: decode here, one at a time all the same */
            pthread_mutex_lock(&lora_mu);
            int ret = lora_run(ctx, batch, encode, seconds);
            pthread_mutex_unlock(&lora_mu);
            return ret;
        }
        b->running = true;
    }
    if (b->tail)
        b->tail->next = &j;
    else
        b->head = &j;
    b->tail = &j;
    pthread_cond_signal(&b->cv_job);
    while (!j.done)
        pthread_cond_wait(&b->cv_done, &b->mu);
    pthread_mutex_unlock(&b->mu);
    *seconds = j.seconds;
    return j.ret;
}

/* ---- adapter sets ------------------------------------------------------------------------- */

/* llama.cpp says why it refused an adapter only in its log: the last error line is kept
 * (and passed on to the log callback that was set) while an adapter loads */
struct lora_log {
    ggml_log_callback prev;
    void *prev_ud;
    char last[300];
};

static void lora_log_cb(enum ggml_log_level level, const char *text, void *ud)
{
    struct lora_log *l = ud;
    if (level == GGML_LOG_LEVEL_ERROR && text[0] && text[0] != '\n') {
        snprintf(l->last, sizeof(l->last), "%s", text);
        size_t n = strlen(l->last);
        while (n && (l->last[n - 1] == '\n' || l->last[n - 1] == ' '))
            l->last[--n] = '\0';
    }
    if (l->prev)
        l->prev(level, text, l->prev_ud);
}

/* what llama.cpp checks first, checked here to say it plainly */
static int lora_check_file(const char *path, const char *arch, const char *base_path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "lora: cannot read adapter '%s': %s", path, strerror(errno));
        return NS_ERR_INVALID;
    }
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got != 4 || memcmp(magic, "GGUF", 4) != 0) {
        snprintf(err, errlen, "lora: '%s' is not a GGUF file (a LoRA adapter in GGUF, e.g. from llama.cpp's "
                              "convert_lora_to_gguf.py)", path);
        return NS_ERR_INVALID;
    }
    struct gguf_init_params ip = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, ip);
    if (!g) {
        snprintf(err, errlen, "lora: '%s' is not a readable GGUF file", path);
        return NS_ERR_INVALID;
    }
    int rc = NS_OK;
    int64_t k = gguf_find_key(g, "general.type");
    const char *type = k >= 0 && gguf_get_kv_type(g, k) == GGUF_TYPE_STRING ? gguf_get_val_str(g, k) : "";
    k = gguf_find_key(g, "adapter.type");
    const char *atype = k >= 0 && gguf_get_kv_type(g, k) == GGUF_TYPE_STRING ? gguf_get_val_str(g, k) : "";
    k = gguf_find_key(g, "general.architecture");
    const char *a = k >= 0 && gguf_get_kv_type(g, k) == GGUF_TYPE_STRING ? gguf_get_val_str(g, k) : "";
    if (strcmp(type, "adapter") != 0 || strcmp(atype, "lora") != 0) {
        snprintf(err, errlen, "lora: '%s' is not a LoRA adapter (general.type '%s', adapter.type '%s'; a model file "
                              "goes in path or base)", path, type, atype);
        rc = NS_ERR_INVALID;
    } else if (strcmp(a, arch) != 0) {
        snprintf(err, errlen, "lora: adapter '%s' is for the %s architecture, but the base model '%s' is %s", path, a,
                 base_path, arch);
        rc = NS_ERR_INVALID;
    }
    gguf_free(g);
    return rc;
}

int lora_set_load(struct lora_set *s, struct llama_model *model, const char *base_path, const struct lora_spec *specs,
                  int n, char *err, size_t errlen)
{
    int rc = NS_OK;
    memset(s, 0, sizeof(*s));
    if (n > LORA_MAX) {
        snprintf(err, errlen, "lora: %d adapters on one model: at most %d", n, LORA_MAX);
        return NS_ERR_INVALID;
    }
    char arch[32] = "";
    llama_model_meta_val_str(model, "general.architecture", arch, sizeof(arch));
    for (int i = 0; i < n; i++) {
        if ((rc = lora_check_file(specs[i].path, arch, base_path, err, errlen)))
            goto out;
        /* the model's list of its adapters changes here: under the registry's mutex, as every
         * other change to a shared model */
        struct lora_log l = {0};
        pthread_mutex_lock(&lora_mu);
        llama_log_get(&l.prev, &l.prev_ud);
        llama_log_set(lora_log_cb, &l);
        s->ad[i] = llama_adapter_lora_init(model, specs[i].path);
        llama_log_set(l.prev, l.prev_ud);
        pthread_mutex_unlock(&lora_mu);
        if (!s->ad[i]) {
            const char *why = strstr(l.last, ": ") ? strstr(l.last, ": ") + 2 : l.last;
            snprintf(err, errlen, "lora: adapter '%s' does not fit the base model '%s'%s%s", specs[i].path, base_path,
                     why[0] ? ": " : "", why);
            rc = NS_ERR_INVALID;
            goto out;
        }
        s->scale[i] = specs[i].scale;
        s->n = i + 1;
        const char *base = strrchr(specs[i].path, '/');
        size_t len = strlen(s->desc);
        snprintf(s->desc + len, sizeof(s->desc) - len, "%s%s (x%g)", i ? ", " : "", base ? base + 1 : specs[i].path,
                 (double)specs[i].scale);
    }
out:
    if (rc)
        lora_set_free(s);
    return rc;
}

void lora_set_apply(const struct lora_set *s, struct llama_context *ctx)
{
    struct llama_adapter_lora *ad[LORA_MAX];
    float scale[LORA_MAX];
    for (int i = 0; i < s->n; i++) {
        ad[i] = s->ad[i];
        scale[i] = s->scale[i];
    }
    llama_set_adapters_lora(ctx, s->n ? ad : NULL, (size_t)s->n, s->n ? scale : NULL);
}

void lora_set_free(struct lora_set *s)
{
    pthread_mutex_lock(&lora_mu);
    for (int i = 0; i < s->n; i++)
        if (s->ad[i])
            llama_adapter_lora_free(s->ad[i]);
    pthread_mutex_unlock(&lora_mu);
    memset(s, 0, sizeof(*s));
}
