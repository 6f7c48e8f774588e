/*
 * prompt.c — a request's prompt: a chat request rendered through the model's chat template
 * (chat.h: its grammar, triggers and stops come with it, or the tool-call fallback's), then
 * tokenized; engine_count_tokens and engine_render_prompt on the same path. Part of the
 * engine module (engine_int.h).
 *
 * THREADS
 * The caller's: engine_run's thread at admission; engine_count_tokens and
 * engine_render_prompt from any thread (engine.h): they read only the engine's model,
 * vocabulary and templates, fixed after engine_init.
 *
 * INVARIANTS
 * - A rendered chat_prompt is owned by whoever engine_tokenize hands it to (freed with
 *   engine_chat_free), or freed here.
 */
#include "engine_int.h"

#include "../util/buf.h"
#include "../util/status.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The conversation as chat.h's JSON: the request's own, or one made from its plain messages. */
static char *engine_chat_json(const struct engine_request *r)
{
    if (r->chat)
        return strdup(r->chat);
    cJSON *body = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(body, "messages");
    for (int i = 0; msgs && i < r->n_messages; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddItemToArray(msgs, m);
        cJSON_AddStringToObject(m, "role", r->messages[i].role);
        cJSON_AddStringToObject(m, "content", r->messages[i].content);
    }
    char *text = msgs ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    return text;
}

/* A template llama.cpp knows no tool format for: the tools in nightshift's fallback format
 * (toolwire.h), its grammar (lazy from the opening marker for tool_choice auto) in cp */
static int engine_chat_fallback(struct chat_prompt *cp, char *grammar, bool lazy)
{
    free(cp->grammar);
    cp->grammar = grammar;
    cp->grammar_lazy = lazy;
    cp->has_tools = true;
    cp->fallback = true;
    cp->n_prefill = 0;
    for (int i = 0; i < cp->n_trigger_patterns; i++)
        free(cp->trigger_patterns[i]);
    free(cp->trigger_patterns);
    cp->n_trigger_patterns = 0;
    cp->n_trigger_tokens = 0;
    if (!lazy)
        return NS_OK;
    if (!(cp->trigger_patterns = calloc(1, sizeof(char *))) || !(cp->trigger_patterns[0] = strdup(TOOLWIRE_OPEN)))
        return NS_ERR_NOMEM;
    cp->n_trigger_patterns = 1;
    return NS_OK;
}

/* Render a chat request with the model's template (chat.h) into *out (malloc'd). */
static int engine_render_chat(const struct engine *e, const struct engine_request *r, struct chat_prompt **out,
                              char *err, size_t errlen)
{
    *out = NULL;
    if (!e->chat) {
        /* an embedding model has no chat template: it cannot render a conversation */
        snprintf(err, errlen, "This model is loaded for embeddings only (--embedding): use /v1/embeddings.");
        return NS_ERR_INVALID;
    }
    char *json = engine_chat_json(r), *wire = NULL, *grammar = NULL;
    bool lazy = false;
    struct chat_prompt *cp = calloc(1, sizeof(*cp));
    int rc = json && cp ? NS_OK : NS_ERR_NOMEM;
    if (!rc && !chat_templates_tools_native(e->chat))
        rc = toolwire_rewrite(json, &wire, &grammar, &lazy, err, errlen);
    if (!rc)
        rc = chat_render(e->chat, e->model, wire ? wire : json, cp, err, errlen);
    if (!rc && wire) {
        rc = engine_chat_fallback(cp, grammar, lazy);
        grammar = NULL;
    }
    free(json);
    free(wire);
    free(grammar);
    if (rc != NS_OK) {
        if (rc == NS_ERR_NOMEM)
            snprintf(err, errlen, "out of memory");
        if (cp)
            chat_prompt_release(cp);
        free(cp);
        return rc;
    }
    *out = cp;
    return NS_OK;
}

void engine_chat_free(struct chat_prompt *cp)
{
    if (cp) {
        chat_prompt_release(cp);
        free(cp);
    }
}

/* tokenize the request's prompt into *tok (malloc'd); returns count or < 0. A chat request
 * is rendered first; its rendering goes to *chat when chat is not NULL (else freed). */
int engine_tokenize(struct engine *e, const struct engine_request *r, llama_token **tok,
                    struct chat_prompt **chat, char *err, size_t errlen)
{
    struct buf text;
    const char *s;
    size_t n;
    int rc;
    struct chat_prompt *cp = NULL;
    *tok = NULL;
    if (chat)
        *chat = NULL;
    buf_init(&text, ENGINE_TEXT_MAX);
    if (r->messages || r->chat) {
        if ((rc = engine_render_chat(e, r, &cp, err, errlen)) != NS_OK) {
            buf_release(&text);
            return -rc;
        }
        s = cp->text;
        n = strlen(s);
    } else {
        s = r->prompt ? r->prompt : "";
        n = strlen(s);
    }
    if (n > INT32_MAX / 2 || n / (size_t)e->max_piece >= (size_t)e->n_ctx_seq) {
        /* certainly over the context (no token stands for more than max_piece bytes): say
         * so now rather than tokenize megabytes first */
        snprintf(err, errlen,
                 "This model's maximum context length is %d tokens. However, the %s hold %zu bytes, so at least %zu "
                 "tokens. Please reduce the length of the %s.",
                 e->n_ctx_seq, r->messages ? "messages" : "prompt", n, n / (size_t)e->max_piece,
                 r->messages ? "messages" : "prompt");
        buf_release(&text);
        engine_chat_free(cp);
        return -NS_ERR_CONTEXT;
    }
    int cap = (int)n + 8;
    llama_token *t = malloc(sizeof(*t) * (size_t)cap);
    if (!t) {
        buf_release(&text);
        engine_chat_free(cp);
        return -NS_ERR_NOMEM;
    }
    int got = llama_tokenize(e->vocab, s, (int32_t)n, t, cap, true, true);
    if (got < 0 && got != INT32_MIN) {
        cap = -got;
        llama_token *t2 = realloc(t, sizeof(*t) * (size_t)cap);
        if (!t2) {
            free(t);
            buf_release(&text);
            engine_chat_free(cp);
            return -NS_ERR_NOMEM;
        }
        t = t2;
        got = llama_tokenize(e->vocab, s, (int32_t)n, t, cap, true, true);
    }
    buf_release(&text);
    if (got < 0) {
        free(t);
        engine_chat_free(cp);
        snprintf(err, errlen, "the prompt cannot be tokenized");
        return -NS_ERR_INVALID;
    }
    *tok = t;
    if (chat)
        *chat = cp;
    else
        engine_chat_free(cp);
    return got;
}

int engine_count_tokens(struct engine *e, const struct engine_request *r, char *err, size_t errlen)
{
    llama_token *t;
    int n = engine_tokenize(e, r, &t, NULL, err, errlen);
    free(t);
    return n;
}

/* The prompt a chat request renders to (engine.h): chat.h's rendering, not tokenized. */
int engine_render_prompt(struct engine *e, const struct engine_request *r, char **out, char *err, size_t errlen)
{
    struct chat_prompt *cp = NULL;
    *out = NULL;
    if (!e->chat) {
        snprintf(err, errlen, "This model is loaded for embeddings only (--embedding): it has no chat template.");
        return NS_ERR_UNSUPPORTED;
    }
    if (!r->messages && !r->chat) {
        snprintf(err, errlen, "'messages' is required");
        return NS_ERR_INVALID;
    }
    int rc = engine_render_chat(e, r, &cp, err, errlen);
    if (rc != NS_OK)
        return rc;
    *out = cp->text;
    cp->text = NULL;
    engine_chat_free(cp);
    return NS_OK;
}
