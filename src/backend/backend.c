/*
 * backend.c — the registry of backend kinds, and "local": the built-in engine behind the
 * backend operations (a thin shim, so the scheduler never needs to know which it drives).
 */
#include "backend.h"

#include "../engine/engine.h"

#include "../util/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct backend_conf backend_default_conf(void)
{
    struct backend_conf c = {
        .kind = "local",
        .engine = NULL,
        .concurrency = 16,
        .max_attempts = 6,
        .timeout_s = 600,
        .retry_base_s = 0.5,
        .retry_max_s = 60,
        .circuit_failures = 5,
        .circuit_cooldown_s = 5,
        .max_lines = 50000,
        .max_bytes = 200LL * 1000 * 1000,
        .completion_window_s = 24 * 3600,
        .flush_lines = 50,
        .flush_after_s = 120,
        .poll_interval_s = 5,
        .poll_max_s = 300,
    };
    return c;
}

/* ---- local ---------------------------------------------------------------------------- */

static int local_init(const struct backend_conf *c, void **out, char *err, size_t errlen)
{
    struct engine *e = NULL;
    int rc = engine_init(c->engine ? *c->engine : engine_default_params(), &e, err, errlen);
    *out = e;
    return rc;
}

static void local_free(void *impl) { engine_free(impl); }
static int local_run(void *impl, const struct engine_source *src) { return engine_run(impl, src); }
static void local_stop(void *impl) { engine_stop(impl); }

static int local_count_tokens(void *impl, const struct engine_request *r, char *err, size_t errlen)
{
    return engine_count_tokens(impl, r, err, errlen);
}

static void local_get_info(void *impl, struct backend_info *out)
{
    struct engine_info ei;
    engine_get_info(impl, &ei);
    memset(out, 0, sizeof(*out));
    snprintf(out->kind, sizeof(out->kind), "local");
    snprintf(out->desc, sizeof(out->desc), "%s", ei.desc);
    out->n_ctx_seq = ei.n_ctx_seq;
}

static struct engine *local_engine(void *impl) { return impl; }

const struct backend_ops backend_local_ops = {
    .kind = "local",
    .forward = false,
    .local_file = true,
    .init = local_init,
    .free = local_free,
    .run = local_run,
    .stop = local_stop,
    .count_tokens = local_count_tokens,
    .get_info = local_get_info,
    .get_stats = NULL,
    .engine = local_engine,
};

static struct engine *backend_engine(const struct backend *b) { return b->ops->engine ? b->ops->engine(b->impl) : NULL; }

bool backend_model_info(const struct backend *b, struct engine_info *out)
{
    struct engine *e = backend_engine(b);
    memset(out, 0, sizeof(*out));
    if (e)
        engine_get_info(e, out);
    return e != NULL;
}

int backend_render_prompt(const struct backend *b, const struct engine_request *r, char **out, char *err,
                          size_t errlen)
{
    struct engine *e = backend_engine(b);
    *out = NULL;
    if (!e) {
        snprintf(err, errlen, "model '%s' is served by an upstream (%s), which renders its own prompts",
                 b->name ? b->name : "?", b->ops->kind);
        return NS_ERR_UNSUPPORTED;
    }
    return engine_render_prompt(e, r, out, err, errlen);
}

const char *backend_model_path(const struct backend *b)
{
    struct engine *e = backend_engine(b);
    return e ? engine_model_path(e) : NULL;
}

const char *backend_chat_template(const struct backend *b)
{
    struct engine *e = backend_engine(b);
    return e ? engine_chat_template(e) : NULL;
}

bool backend_engine_stats(const struct backend *b, struct engine_stats *out)
{
    struct engine *e = backend_engine(b);
    memset(out, 0, sizeof(*out));
    if (e)
        engine_get_stats(e, out);
    return e != NULL;
}

/* ---- registry --------------------------------------------------------------------------- */

static const struct backend_ops *const backend_table[] = {&backend_local_ops, &backend_http_ops,
                                                          &backend_openai_batch_ops, &backend_anthropic_batch_ops,
                                                          &backend_gemini_batch_ops};

const struct backend_ops *backend_find(const char *kind)
{
    for (size_t i = 0; i < sizeof(backend_table) / sizeof(backend_table[0]); i++)
        if (strcmp(backend_table[i]->kind, kind ? kind : "local") == 0)
            return backend_table[i];
    return NULL;
}

const char *backend_kinds(void) { return "local, openai-http, openai-batch, anthropic-batch, gemini-batch"; }

int backend_init(const struct backend_conf *c, struct backend **out, char *err, size_t errlen)
{
    int rc;
    *out = NULL;
    const struct backend_ops *ops = backend_find(c->kind);
    struct backend *b = NULL;
    if (!ops) {
        snprintf(err, errlen, "model '%s': unknown backend '%s' (known: %s)", c->name ? c->name : "?", c->kind,
                 backend_kinds());
        return NS_ERR_INVALID;
    }
    b = calloc(1, sizeof(*b));
    if (!b || !(b->name = strdup(c->name ? c->name : "default"))) {
        rc = NS_ERR_NOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    b->ops = ops;
    b->price_input = c->price_input;
    b->price_output = c->price_output;
    b->batch_discount = c->batch_discount;
    if ((rc = ops->init(c, &b->impl, err, errlen)))
        goto out;
    *out = b;
out:
    if (rc && b) {
        free(b->name);
        free(b);
    }
    return rc;
}

void backend_free(struct backend *b)
{
    if (!b)
        return;
    if (b->impl)
        b->ops->free(b->impl);
    free(b->name);
    free(b);
}

int backend_reconfigure(struct backend *b, const struct backend_conf *c)
{
    b->price_input = c->price_input;
    b->price_output = c->price_output;
    b->batch_discount = c->batch_discount;
    if (b->ops->reconfigure)
        b->ops->reconfigure(b->impl, c);
    return NS_OK;
}

double backend_price(double price_in, double price_out, double discount, int64_t prompt_tokens,
                     int64_t completion_tokens, bool batch)
{
    if (price_in <= 0 && price_out <= 0)
        return -1;
    double usd = ((double)prompt_tokens * price_in + (double)completion_tokens * price_out) / 1e6;
    return batch ? usd * (1.0 - discount) : usd;
}

double backend_cost(const struct backend *b, int64_t prompt_tokens, int64_t completion_tokens, bool batch)
{
    return backend_price(b->price_input, b->price_output, b->batch_discount, prompt_tokens, completion_tokens, batch);
}

int backend_count_tokens(struct backend *b, const struct engine_request *r, char *err, size_t errlen)
{
    if (!b->ops->count_tokens)
        return 0;
    return b->ops->count_tokens(b->impl, r, err, errlen);
}
