/*
 * config.c — see config.h. libinih calls config_on_key() once per key (and once per new
 * section: Debian's build does not call it for a section header, so a section is seen
 * through its first key); ini_parse returns the line of the first handler failure, which
 * is how every error gets its line number.
 */
#include "config.h"

#include "../backend/batch_preset.h"
#include "../engine/engine.h"
#include "../util/num.h"
#include "../util/status.h"

#include <ini.h>

#include <errno.h>
#include <math.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct config_parse {
    struct config *c;
    int cur_webhook;            /* its webhook index, or -1 */
    char err[400];              /* the first error (its line comes from ini_parse) */
    char section[128];          /* the section being read */
    int cur;                    /* its model index, -1 for [server] */
    config_server_key_fn server_key_ok;
};

static int config_fail(struct config_parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int config_fail(struct config_parse *p, const char *fmt, ...)
{
    if (!p->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, sizeof(p->err), fmt, ap);
        va_end(ap);
    }
    return 0;
}

static int config_number(struct config_parse *p, const char *key, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(d) || d < lo || d > hi)
        return config_fail(p, "%s must be a number from %g to %g, not '%s'", key, lo, hi, v);
    *out = d;
    return 1;
}

static int config_int(struct config_parse *p, const char *key, const char *v, long long lo, long long hi, int *out)
{
    long long ll;
    if (num_parse_long(v, lo, hi, &ll))
        return config_fail(p, "%s must be an integer from %lld to %lld, not '%s'", key, lo, hi, v);
    *out = (int)ll;
    return 1;
}

static char *config_dup(struct config_parse *p, const char *v)
{
    char *s = strdup(v);
    if (!s)
        config_fail(p, "out of memory");
    return s;
}

#define CONFIG_TEMPLATE_MAX (1u << 20)

int config_read_template(const char *path, const char *what, char **out, char *err, size_t errlen)
{
    int rc = NS_OK;
    char *text = NULL;
    size_t n = 0;
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot read '%s': %s", what, path, strerror(errno));
        return NS_ERR_IO;
    }
    if (!(text = malloc(CONFIG_TEMPLATE_MAX + 1))) {
        snprintf(err, errlen, "out of memory");
        rc = NS_ERR_NOMEM;
        goto out;
    }
    n = fread(text, 1, CONFIG_TEMPLATE_MAX + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read '%s': %s", what, path, strerror(errno));
        rc = NS_ERR_IO;
        goto out;
    }
    if (n > CONFIG_TEMPLATE_MAX || n == 0 || memchr(text, 0, n)) {
        snprintf(err, errlen, "%s: '%s' is %s", what, path,
                 n == 0 ? "empty, not a chat template" : n > CONFIG_TEMPLATE_MAX ? "over 1 MB, not a chat template"
                                                                           : "binary, not a chat template");
        rc = NS_ERR_INVALID;
        goto out;
    }
    text[n] = '\0';
    *out = text;
    text = NULL;
out:
    free(text);
    fclose(f);
    return rc;
}

/* a string key of a model: once only */
static int config_str(struct config_parse *p, const struct config_model *m, const char *key, const char **field,
                      const char *v)
{
    if (*field)
        return config_fail(p, "[model %s]: %s is given twice", m->conf.name, key);
    return (*field = config_dup(p, v)) != NULL;
}

/* lora = FILE[:SCALE]: repeatable, each an adapter stacked on the model */
int config_lora_arg(const char *text, struct lora_spec *specs, int *n, char *err, size_t errlen)
{
    size_t len;
    float scale;
    if (*n == LORA_MAX) {
        snprintf(err, errlen, "at most %d adapters on one model", LORA_MAX);
        return NS_ERR_INVALID;
    }
    if (lora_spec_parse(text, &len, &scale, err, errlen))
        return NS_ERR_INVALID;
    char *path = strndup(text, len);
    if (!path) {
        snprintf(err, errlen, "out of memory");
        return NS_ERR_NOMEM;
    }
    specs[*n].path = path;
    specs[(*n)++].scale = scale;
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "cannot read the adapter '%s': %s", path, strerror(errno));
        return NS_ERR_IO;
    }
    return NS_OK;
}

static int config_lora(struct config_parse *p, struct config_model *m, const char *v)
{
    char why[300];
    if (config_lora_arg(v, m->lora, &m->n_lora, why, sizeof(why)))
        return config_fail(p, "[model %s]: lora: %s", m->conf.name, why);
    return 1;
}

static int config_model_key(struct config_parse *p, struct config_model *m, const char *k, const char *v)
{
    struct backend_conf *c = &m->conf;
    if (strcmp(k, "backend") == 0) {
        if (!backend_find(v))
            return config_fail(p, "[model %s]: unknown backend '%s' (known: %s)", c->name, v, backend_kinds());
        c->kind = backend_find(v)->kind;
        m->has_backend = true;
        return 1;
    }
    if (strcmp(k, "provider") == 0) {
        const struct batch_preset *pr = batch_preset_find(v);
        if (c->provider)
            return config_fail(p, "[model %s]: provider is given twice", c->name);
        if (!pr)
            return config_fail(p, "[model %s]: unknown provider '%s' (known: %s)", c->name, v, batch_preset_names());
        c->provider = pr->name;
        return 1;
    }
    if (strcmp(k, "completion_window") == 0) {
        if (batch_preset_parse_window(v, &c->completion_window_s))
            return config_fail(p, "[model %s]: completion_window must be a whole number of minutes, hours or days "
                                  "(90m, 24h, 7d), not '%s'", c->name, v);
        return 1;
    }
    if (strcmp(k, "batch_max_bytes") == 0) {
        long long ll;
        if (num_parse_long(v, 1024, 1LL << 40, &ll))
            return config_fail(p, "batch_max_bytes must be an integer from 1024 to %lld, not '%s'", 1LL << 40, v);
        c->max_bytes = ll;
        m->has_max_bytes = true;
        return 1;
    }
    if (strcmp(k, "path") == 0)
        return config_str(p, m, k, (const char **)&m->path, v);
    if (strcmp(k, "base") == 0)
        return config_str(p, m, k, (const char **)&m->base, v);
    if (strcmp(k, "lora") == 0)
        return config_lora(p, m, v);
    if (strcmp(k, "url") == 0) {
        if (strncmp(v, "http://", 7) && strncmp(v, "https://", 8))
            return config_fail(p, "[model %s]: url must start with http:// or https://, not '%s'", c->name, v);
        return config_str(p, m, k, &c->url, v);
    }
    if (strcmp(k, "api_key_env") == 0) {
        const char *key = getenv(v);
        if (!key || !*key)
            return config_fail(p, "[model %s]: api_key_env names %s, which is not set in the environment", c->name, v);
        return config_str(p, m, k, &c->api_key, key);
    }
    if (strcmp(k, "api_key") == 0)
        return config_fail(p, "[model %s]: keys are not read from the config file; put the key in an environment "
                              "variable and name it with api_key_env",
                           c->name);
    if (strcmp(k, "upstream_model") == 0)
        return config_str(p, m, k, &c->upstream_model, v);
    if (strcmp(k, "chat_template_file") == 0) {
        char what[200];
        if (m->chat_template)
            return config_fail(p, "[model %s]: %s is given twice", c->name, k);
        snprintf(what, sizeof(what), "[model %s]: chat_template_file", c->name);
        if (config_read_template(v, what, &m->chat_template, p->err, sizeof(p->err)))
            return 0;
        return 1;
    }
    if (strcmp(k, "interactive_step_ms") == 0) {
        if (engine_step_ms_parse(v, &m->interactive_step_ms))
            return config_fail(p, "[model %s]: interactive_step_ms must be auto, off or milliseconds from 1 to 60000, "
                                  "not '%s'",
                               c->name, v);
        m->has_step_ms = true;
        return 1;
    }
    if (strcmp(k, "concurrency") == 0)
        return config_int(p, k, v, 1, 4096, &c->concurrency);
    if (strcmp(k, "max_attempts") == 0)
        return config_int(p, k, v, 1, 100, &c->max_attempts);
    if (strcmp(k, "circuit_failures") == 0)
        return config_int(p, k, v, 1, 1000000, &c->circuit_failures);
    if (strcmp(k, "timeout") == 0)
        return config_number(p, k, v, 0.001, 86400, &c->timeout_s);
    if (strcmp(k, "retry_base") == 0)
        return config_number(p, k, v, 0, 3600, &c->retry_base_s);
    if (strcmp(k, "retry_max") == 0)
        return config_number(p, k, v, 0, 3600, &c->retry_max_s);
    if (strcmp(k, "circuit_cooldown") == 0)
        return config_number(p, k, v, 0.001, 300, &c->circuit_cooldown_s);
    if (strcmp(k, "batch_max_lines") == 0) {
        m->has_max_lines = true;
        return config_int(p, k, v, 1, 1000000, &c->max_lines);
    }
    if (strcmp(k, "flush_lines") == 0)
        return config_int(p, k, v, 1, 1000000, &c->flush_lines);
    if (strcmp(k, "flush_after") == 0)
        return config_number(p, k, v, 0, 86400, &c->flush_after_s);
    if (strcmp(k, "poll_interval") == 0)
        return config_number(p, k, v, 0.01, 86400, &c->poll_interval_s);
    if (strcmp(k, "poll_max") == 0)
        return config_number(p, k, v, 0.01, 86400, &c->poll_max_s);
    if (strcmp(k, "price_input") == 0)
        return config_number(p, k, v, 0, 1e6, &c->price_input);
    if (strcmp(k, "price_output") == 0)
        return config_number(p, k, v, 0, 1e6, &c->price_output);
    if (strcmp(k, "batch_discount") == 0)
        return config_number(p, k, v, 0, 1, &c->batch_discount);
    if (strcmp(k, "spill_to") == 0)
        return config_str(p, m, k, (const char **)&m->spill_to, v);
    if (strcmp(k, "on_failure") == 0) {
        if (strcmp(v, "fail") && strcmp(v, "fallback"))
            return config_fail(p, "[model %s]: on_failure must be fail or fallback, not '%s'", c->name, v);
        m->on_failure_fallback = strcmp(v, "fallback") == 0;
        return 1;
    }
    if (strcmp(k, "spill_turnaround") == 0)
        return config_number(p, k, v, 0, 7 * 86400, &m->spill_turnaround_s);
    if (strcmp(k, "spill_margin") == 0)
        return config_number(p, k, v, 0, 10, &m->spill_margin);
    return config_fail(p,
                       "[model %s]: unknown key '%s' (known: backend, path, base, lora, chat_template_file, interactive_step_ms, url, api_key_env, upstream_model, "
                       "concurrency, max_attempts, timeout, retry_base, retry_max, circuit_failures, "
                       "circuit_cooldown, provider, completion_window, batch_max_lines, batch_max_bytes, flush_lines, "
                       "flush_after, poll_interval, poll_max, price_input, price_output, batch_discount, spill_to, on_failure, spill_turnaround, "
                       "spill_margin)",
                       c->name, k);
}

static int config_webhook_section(struct config_parse *p, const char *name)
{
    struct config *c = p->c;
    for (int i = 0; i < c->n_webhooks; i++)
        if (strcmp(c->webhooks[i].ep.name, name) == 0)
            return config_fail(p, "webhook '%s' is defined twice", name);
    struct config_webhook *ws = realloc(c->webhooks, (size_t)(c->n_webhooks + 1) * sizeof(*ws));
    if (!ws)
        return config_fail(p, "out of memory");
    c->webhooks = ws;
    memset(&ws[c->n_webhooks], 0, sizeof(ws[0]));
    if (!(ws[c->n_webhooks].ep.name = config_dup(p, name)))
        return 0;
    p->cur = -2;
    p->cur_webhook = c->n_webhooks++;
    return 1;
}

static int config_webhook_key(struct config_parse *p, struct webhook_endpoint *e, const char *k, const char *v)
{
    if (strcmp(k, "url") == 0) {
        if (strncmp(v, "http://", 7) && strncmp(v, "https://", 8))
            return config_fail(p, "[webhook %s]: url must start with http:// or https://, not '%s'", e->name, v);
        if (e->url)
            return config_fail(p, "[webhook %s]: url is given twice", e->name);
        return (e->url = config_dup(p, v)) != NULL;
    }
    if (strcmp(k, "secret_env") == 0) {
        const char *sec = getenv(v);
        if (!sec || !*sec)
            return config_fail(p, "[webhook %s]: secret_env names %s, which is not set in the environment", e->name, v);
        if (!webhook_secret_ok(sec))
            return config_fail(p, "[webhook %s]: the secret in %s must be 'whsec_' followed by the base64 of at "
                                  "least 16 random bytes (Standard Webhooks)", e->name, v);
        if (e->secret)
            return config_fail(p, "[webhook %s]: secret_env is given twice", e->name);
        return (e->secret = config_dup(p, sec)) != NULL;
    }
    if (strcmp(k, "events") == 0) {
        char list[512];
        snprintf(list, sizeof(list), "%s", v);
        e->events = 0;
        for (char *save = NULL, *t = strtok_r(list, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
            unsigned bit = webhook_event_bit(t);
            if (!bit)
                return config_fail(p, "[webhook %s]: unknown event '%s' (batch.completed, batch.failed, "
                                      "batch.cancelled, batch.expired)", e->name, t);
            e->events |= bit;
        }
        return 1;
    }
    if (strcmp(k, "max_attempts") == 0)
        return config_int(p, k, v, 1, 1000, &e->max_attempts);
    if (strcmp(k, "retry_base") == 0)
        return config_number(p, k, v, 0.01, 86400, &e->retry_base_s);
    if (strcmp(k, "secret") == 0)
        return config_fail(p, "[webhook %s]: secrets are not read from the config file; put it in an environment "
                              "variable and name it with secret_env", e->name);
    return config_fail(p, "[webhook %s]: unknown key '%s' (known: url, secret_env, events, max_attempts, retry_base)",
                       e->name, k);
}

/* a new section header: [server], [model NAME] or [webhook NAME] */
static int config_section(struct config_parse *p, const char *section)
{
    struct config *c = p->c;
    snprintf(p->section, sizeof(p->section), "%s", section);
    p->cur_webhook = -1;
    if (strcmp(section, "server") == 0) {
        p->cur = -1;
        return 1;
    }
    if (strncmp(section, "webhook ", 8) == 0 && section[8] && !strchr(section + 8, ' '))
        return config_webhook_section(p, section + 8);
    if (strncmp(section, "model ", 6) || !section[6] || strchr(section + 6, ' '))
        return config_fail(p, "unknown section [%s]: sections are [server], [model NAME] and [webhook NAME]", section);
    const char *name = section + 6;
    for (int i = 0; i < c->n_models; i++)
        if (strcmp(c->models[i].conf.name, name) == 0)
            return config_fail(p, "model '%s' is defined twice", name);
    struct config_model *ms = realloc(c->models, (size_t)(c->n_models + 1) * sizeof(*ms));
    if (!ms)
        return config_fail(p, "out of memory");
    c->models = ms;
    struct config_model *m = &ms[c->n_models];
    memset(m, 0, sizeof(*m));
    m->conf = backend_default_conf();
    m->spill_turnaround_s = 60;
    m->spill_margin = 0.2;
    if (!(m->conf.name = config_dup(p, name)))
        return 0;
    p->cur = c->n_models++;
    return 1;
}

static int config_on_key(void *ud, const char *section, const char *key, const char *value)
{
    struct config_parse *p = ud;
    struct config *c = p->c;
    if (p->err[0])
        return 0;
    if (strcmp(section, p->section) != 0 || !p->section[0]) {
        if (!section[0])
            return config_fail(p, "'%s' is outside any section ([server] or [model NAME])", key);
        if (!config_section(p, section))
            return 0;
    }
    if (p->cur_webhook >= 0)
        return config_webhook_key(p, &c->webhooks[p->cur_webhook].ep, key, value);
    if (p->cur >= 0)
        return config_model_key(p, &c->models[p->cur], key, value);
    char why[300] = "";
    if (p->server_key_ok && !p->server_key_ok(key, value, why, sizeof(why)))
        return config_fail(p, "[server]: %s", why);
    struct config_kv *kv = realloc(c->server, (size_t)(c->n_server + 1) * sizeof(*kv));
    if (!kv)
        return config_fail(p, "out of memory");
    c->server = kv;
    kv = &kv[c->n_server];
    kv->key = strdup(key);
    kv->value = strdup(value);
    c->n_server++;
    if (!kv->key || !kv->value)
        return config_fail(p, "out of memory");
    return 1;
}

/* a provider's defaults (backend, url, key) where the section gave none, and its limits
 * checked against the section's (backend/batch_preset.h) */
static int config_apply_provider(struct config_model *m, char *err, size_t errlen)
{
    struct backend_conf *c = &m->conf;
    const struct batch_preset *pr = batch_preset_find(c->provider);
    if (!pr)
        return NS_OK;
    if (m->has_backend && strcmp(c->kind, pr->kind) != 0) {
        snprintf(err, errlen, "[model %s]: provider %s is for backend %s, not %s", c->name, pr->name, pr->kind, c->kind);
        return NS_ERR_INVALID;
    }
    c->kind = backend_find(pr->kind)->kind;
    if (m->has_max_lines && c->max_lines > pr->max_lines) {
        snprintf(err, errlen, "[model %s]: batch_max_lines %d is over %s's %d lines per batch", c->name, c->max_lines,
                 pr->title, pr->max_lines);
        return NS_ERR_INVALID;
    }
    if (m->has_max_bytes && c->max_bytes > pr->max_bytes) {
        snprintf(err, errlen, "[model %s]: batch_max_bytes %lld is over %s's %lld bytes per batch input file", c->name,
                 (long long)c->max_bytes, pr->title, (long long)pr->max_bytes);
        return NS_ERR_INVALID;
    }
    if (!c->url && !(c->url = strdup(pr->url))) {
        snprintf(err, errlen, "out of memory");
        return NS_ERR_NOMEM;
    }
    if (!c->api_key) {
        const char *key = getenv(pr->key_env);
        if (!key || !*key) {
            snprintf(err, errlen, "[model %s]: provider %s reads its key from %s, which is not set in the environment "
                                  "(or name another variable with api_key_env)", c->name, pr->name, pr->key_env);
            return NS_ERR_INVALID;
        }
        if (!(c->api_key = strdup(key))) {
            snprintf(err, errlen, "out of memory");
            return NS_ERR_NOMEM;
        }
    }
    return NS_OK;
}

/* what a whole model section needs, once it is read */
static int config_check_model(struct config_model *m, char *err, size_t errlen)
{
    const struct backend_conf *c = &m->conf;
    int rc = config_apply_provider(m, err, errlen);
    if (rc)
        return rc;
    const struct backend_ops *ops = backend_find(c->kind);
    bool local = ops && ops->local_file;
    if (local && !m->path) {
        snprintf(err, errlen, "[model %s]: backend local needs path = FILE.gguf (or base = MODEL with lora = FILE)",
                 c->name);
        return NS_ERR_INVALID;
    }
    if (local && (c->url || c->api_key || c->upstream_model)) {
        snprintf(err, errlen, "[model %s]: url, api_key_env and upstream_model are for upstream backends, "
                              "not local", c->name);
        return NS_ERR_INVALID;
    }
    if (!local && !c->url && !(ops && ops->default_url)) {
        snprintf(err, errlen, "[model %s]: backend %s needs url = http(s)://HOST:PORT/v1", c->name,
                 c->kind);
        return NS_ERR_INVALID;
    }
    if (!local && (m->path || m->chat_template || m->has_step_ms || m->base || m->n_lora)) {
        snprintf(err, errlen, "[model %s]: %s is for backend local", c->name,
                 m->base ? "base" : m->n_lora ? "lora" : m->path ? "path" : m->chat_template ? "chat_template_file"
                                                                                             : "interactive_step_ms");
        return NS_ERR_INVALID;
    }
    return NS_OK;
}

/* base = a [model] section's name (its file, and its chat template unless this model has
 * its own) or a GGUF file: sets path */
static int config_resolve_base(struct config *c, struct config_model *m, char *err, size_t errlen)
{
    const struct backend_ops *ops = backend_find(m->conf.kind);
    if (!m->base || !ops || !ops->local_file)
        return NS_OK; /* an upstream's base is refused by config_check_model */
    if (m->path) {
        snprintf(err, errlen, "[model %s]: give path or base, not both (base names the model whose weights the "
                              "adapters go on)", m->conf.name);
        return NS_ERR_INVALID;
    }
    const struct config_model *b = NULL;
    for (int i = 0; i < c->n_models && !b; i++)
        if (strcmp(c->models[i].conf.name, m->base) == 0)
            b = &c->models[i];
    if (b == m) {
        snprintf(err, errlen, "[model %s]: base names this model itself", m->conf.name);
        return NS_ERR_INVALID;
    }
    if (b && (b->base || !b->path)) {
        snprintf(err, errlen, "[model %s]: base = %s names a model without path = FILE.gguf of its own%s", m->conf.name,
                 m->base, b->base ? " (its weights come from its own base: name that one)" : "");
        return NS_ERR_INVALID;
    }
    if (!b && access(m->base, R_OK) != 0) {
        snprintf(err, errlen, "[model %s]: base = %s is neither a [model] section nor a readable file: %s",
                 m->conf.name, m->base, strerror(errno));
        return NS_ERR_INVALID;
    }
    if (!(m->path = strdup(b ? b->path : m->base)) ||
        (b && b->chat_template && !m->chat_template && !(m->chat_template = strdup(b->chat_template)))) {
        snprintf(err, errlen, "out of memory");
        return NS_ERR_NOMEM;
    }
    return NS_OK;
}

static int config_model_index(const struct config *c, const char *name)
{
    for (int i = 0; i < c->n_models; i++)
        if (strcmp(c->models[i].conf.name, name) == 0)
            return i;
    return -1;
}

/* spill_to names another configured model, and following the names never comes back to
 * where it started (a cycle would move lines around forever); on_failure = fallback needs
 * a spill_to to fall back to */
static int config_check_spill(const struct config *c, char *err, size_t errlen)
{
    for (int i = 0; i < c->n_models; i++) {
        const struct config_model *m = &c->models[i];
        if (!m->spill_to) {
            if (m->on_failure_fallback) {
                snprintf(err, errlen, "[model %s]: on_failure = fallback needs spill_to = MODEL (the model to fall back to)",
                         m->conf.name);
                return NS_ERR_INVALID;
            }
            continue;
        }
        if (strcmp(m->spill_to, m->conf.name) == 0) {
            snprintf(err, errlen, "[model %s]: spill_to names the model itself; name another [model] section",
                     m->conf.name);
            return NS_ERR_INVALID;
        }
        if (config_model_index(c, m->spill_to) < 0) {
            snprintf(err, errlen, "[model %s]: spill_to names '%s', which is no [model] section of this file",
                     m->conf.name, m->spill_to);
            return NS_ERR_INVALID;
        }
        /* walk the chain: at most n_models steps, or it loops */
        int k = i, steps = 0;
        char chain[400];
        int len = snprintf(chain, sizeof(chain), "%s", m->conf.name);
        while (k >= 0 && c->models[k].spill_to && steps <= c->n_models) {
            k = config_model_index(c, c->models[k].spill_to);
            if (k < 0)
                break;
            if (len < (int)sizeof(chain))
                len += snprintf(chain + len, sizeof(chain) - (size_t)len, " -> %s", c->models[k].conf.name);
            steps++;
            if (k == i) {
                snprintf(err, errlen, "[model %s]: spill_to makes a cycle (%s); a fallback chain must end", m->conf.name,
                         chain);
                return NS_ERR_INVALID;
            }
        }
    }
    return NS_OK;
}

int config_load(const char *path, config_server_key_fn server_key_ok, struct config **out, char *err, size_t errlen)
{
    int rc = NS_OK;
    *out = NULL;
    struct config *c = calloc(1, sizeof(*c));
    struct config_parse p;
    memset(&p, 0, sizeof(p));
    p.c = c;
    p.cur = -1;
    p.cur_webhook = -1;
    p.server_key_ok = server_key_ok;
    if (!c || !(c->path = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        rc = NS_ERR_NOMEM;
        goto out;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read config '%s': %s", path, strerror(errno));
        rc = NS_ERR_IO;
        goto out;
    }
    int line = ini_parse_file(f, config_on_key, &p);
    fclose(f);
    if (line != 0) {
        if (p.err[0])
            snprintf(err, errlen, "%s:%d: %s", path, line, p.err);
        else
            snprintf(err, errlen, "%s:%d: not a 'key = value' line or a [section] header", path, line);
        rc = NS_ERR_INVALID;
        goto out;
    }
    for (int i = 0; i < c->n_webhooks; i++)
        if (!c->webhooks[i].ep.url || !c->webhooks[i].ep.secret) {
            snprintf(err, errlen, "%s: [webhook %s] needs url and secret_env", path, c->webhooks[i].ep.name);
            rc = NS_ERR_INVALID;
            goto out;
        }
    for (int i = 0; i < c->n_models; i++)
        if ((rc = config_resolve_base(c, &c->models[i], err, errlen)) ||
            (rc = config_check_model(&c->models[i], err, errlen))) {
            char tmp[512];
            snprintf(tmp, sizeof(tmp), "%s: %s", path, err);
            snprintf(err, errlen, "%s", tmp);
            goto out;
        }
    if ((rc = config_check_spill(c, err, errlen))) {
        char tmp[512];
        snprintf(tmp, sizeof(tmp), "%s: %s", path, err);
        snprintf(err, errlen, "%s", tmp);
        goto out;
    }
    *out = c;
out:
    if (rc)
        config_free(c);
    return rc;
}

void config_free(struct config *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n_server; i++) {
        free(c->server[i].key);
        free(c->server[i].value);
    }
    free(c->server);
    for (int i = 0; i < c->n_models; i++) {
        struct backend_conf *b = &c->models[i].conf;
        if (b->api_key) {
            memset((char *)b->api_key, 0, strlen(b->api_key));
            free((char *)b->api_key);
        }
        free((char *)b->name);
        free((char *)b->url);
        free((char *)b->upstream_model);
        free(c->models[i].path);
        free(c->models[i].chat_template);
        free(c->models[i].base);
        for (int k = 0; k < c->models[i].n_lora; k++)
            free((char *)c->models[i].lora[k].path);
        free(c->models[i].spill_to);
    }
    free(c->models);
    for (int i = 0; i < c->n_webhooks; i++) {
        struct webhook_endpoint *e = &c->webhooks[i].ep;
        if (e->secret) {
            memset((char *)e->secret, 0, strlen(e->secret));
            free((char *)e->secret);
        }
        free((char *)e->name);
        free((char *)e->url);
    }
    free(c->webhooks);
    free(c->path);
    free(c);
}
