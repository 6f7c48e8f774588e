/*
 * toolwire.c — see toolwire.h: nightshift's fallback tool-call format for templates
 * llama.cpp knows no format for.
 */
#include "toolwire.h"

#include "../util/buf.h"
#include "../util/status.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define TW_TEXT_MAX (64u << 20)

/* "call_" and 24 letters and digits, as OpenAI's ids look */
static char *tw_call_id(void)
{
    static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char r[24];
    char *id = malloc(5 + sizeof(r) + 1);
    if (!id)
        return NULL;
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        for (size_t i = 0; i < sizeof(r); i++)
            r[i] = (unsigned char)rand();
    memcpy(id, "call_", 5);
    for (size_t i = 0; i < sizeof(r); i++)
        id[5 + i] = abc[r[i] % (sizeof(abc) - 1)];
    id[5 + sizeof(r)] = '\0';
    return id;
}

/* ---- rendering ------------------------------------------------------------------------ */

/* the grammar of one call's JSON: {"name": one of the tools, "arguments": its parameters},
 * through llama.cpp's converter; its start rule renamed so ours can wrap it */
static int tw_call_grammar(const cJSON *tools, char **out, char *err, size_t errlen)
{
    cJSON *root = cJSON_CreateObject(), *any = cJSON_AddArrayToObject(root, "anyOf");
    const cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        /* the schema the calls are held to: the guard's rewrite when there is one */
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "held_parameters");
        if (!params)
            params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        if (!cJSON_IsString(name))
            continue;
        cJSON *alt = cJSON_CreateObject();
        cJSON_AddStringToObject(alt, "type", "object");
        cJSON *props = cJSON_AddObjectToObject(alt, "properties");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(props, "name"), "const", name->valuestring);
        cJSON_AddItemToObject(props, "arguments",
                              cJSON_IsObject(params) ? cJSON_Duplicate(params, 1)
                                                     : cJSON_Parse("{\"type\":\"object\",\"properties\":{}}"));
        cJSON *req = cJSON_AddArrayToObject(alt, "required");
        cJSON_AddItemToArray(req, cJSON_CreateString("name"));
        cJSON_AddItemToArray(req, cJSON_CreateString("arguments"));
        cJSON_AddFalseToObject(alt, "additionalProperties");
        cJSON_AddItemToArray(any, alt);
    }
    char *schema = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!schema)
        return NS_ERR_NOMEM;
    char *g = NULL;
    int rc = chat_schema_grammar(schema, &g, err, errlen);
    cJSON_free(schema);
    if (rc)
        return rc;
    /* "root ::= ..." becomes "tw-call ::= ...", references to it too (a schema's "#") */
    struct buf b;
    buf_init(&b, TW_TEXT_MAX);
    for (const char *p = g; *p && !rc;) {
        const char *hit = strstr(p, "root");
        if (!hit) {
            rc = buf_appends(&b, p);
            break;
        }
        bool word = (hit == g || !(hit[-1] == '-' || hit[-1] == '_' || (hit[-1] >= 'a' && hit[-1] <= 'z') ||
                                   (hit[-1] >= '0' && hit[-1] <= '9') || hit[-1] == '"')) &&
                    !(hit[4] == '-' || hit[4] == '_' || (hit[4] >= 'a' && hit[4] <= 'z') || (hit[4] >= '0' && hit[4] <= '9') ||
                      hit[4] == '"');
        rc = buf_append(&b, p, (size_t)(hit - p));
        if (!rc)
            rc = buf_appends(&b, word ? "tw-call" : "root");
        p = hit + 4;
    }
    free(g);
    if (!rc)
        rc = buf_appends(&b, "root ::= \"" TOOLWIRE_OPEN "\" tw-call \"" TOOLWIRE_CLOSE "\"\n");
    /* lazy or not, the grammar is the call: lazily it starts at the trigger */
    if (rc) {
        buf_release(&b);
        return rc;
    }
    *out = buf_detach(&b);
    return *out ? NS_OK : NS_ERR_NOMEM;
}

/* the instruction: the tools as JSON, one per line, and how to call one */
static char *tw_instruction(const cJSON *tools, bool required)
{
    struct buf b;
    buf_init(&b, TW_TEXT_MAX);
    int rc = buf_appends(&b, "You can call these functions (JSON, one per line):\n");
    const cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        /* shown as the client sent it */
        cJSON *shown = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(t, "function"), 1);
        cJSON_DeleteItemFromObjectCaseSensitive(shown, "held_parameters");
        char *fj = shown ? cJSON_PrintUnformatted(shown) : NULL;
        cJSON_Delete(shown);
        if (!rc)
            rc = fj ? buf_appendf(&b, "%s\n", fj) : NS_ERR_NOMEM;
        cJSON_free(fj);
    }
    if (!rc)
        rc = buf_appendf(&b,
                         "%s To call one, reply with only " TOOLWIRE_OPEN
                         "{\"name\": <the function's name>, \"arguments\": <its arguments as a JSON object>}" TOOLWIRE_CLOSE
                         "%s",
                         required ? "You must call one of them." : "Call one when it helps to answer.",
                         required ? "." : "; otherwise answer normally.");
    char *s = rc ? NULL : buf_detach(&b);
    buf_release(&b);
    return s;
}

/* an assistant message's tool_calls appended to its content in the format */
static int tw_calls_as_text(cJSON *msg)
{
    cJSON *calls = cJSON_DetachItemFromObjectCaseSensitive(msg, "tool_calls");
    if (!cJSON_IsArray(calls) || !calls->child) {
        cJSON_Delete(calls);
        return NS_OK;
    }
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    struct buf b;
    buf_init(&b, TW_TEXT_MAX);
    int rc = cJSON_IsString(content) ? buf_appends(&b, content->valuestring) : NS_OK;
    const cJSON *c;
    cJSON_ArrayForEach(c, calls)
    {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        cJSON *call = cJSON_CreateObject();
        cJSON_AddStringToObject(call, "name", cJSON_IsString(name) ? name->valuestring : "");
        cJSON *parsed = cJSON_IsString(args) ? cJSON_Parse(args->valuestring) : cJSON_Duplicate(args, 1);
        cJSON_AddItemToObject(call, "arguments", parsed ? parsed : cJSON_CreateObject());
        char *j = cJSON_PrintUnformatted(call);
        cJSON_Delete(call);
        if (!rc && b.len)
            rc = buf_appends(&b, "\n");
        if (!rc)
            rc = j ? buf_appendf(&b, TOOLWIRE_OPEN "%s" TOOLWIRE_CLOSE, j) : NS_ERR_NOMEM;
        cJSON_free(j);
    }
    cJSON_Delete(calls);
    if (!rc) {
        cJSON_DeleteItemFromObjectCaseSensitive(msg, "content");
        if (!cJSON_AddStringToObject(msg, "content", b.p ? b.p : ""))
            rc = NS_ERR_NOMEM;
    }
    buf_release(&b);
    return rc;
}

int toolwire_rewrite(const char *chat_json, char **out, char **grammar, bool *lazy, char *err, size_t errlen)
{
    *out = *grammar = NULL;
    *lazy = false;
    cJSON *body = cJSON_Parse(chat_json ? chat_json : "{}");
    if (!body)
        return NS_ERR_NOMEM;
    int rc = NS_OK;
    cJSON *tools = cJSON_DetachItemFromObjectCaseSensitive(body, "tools");
    cJSON *choice = cJSON_DetachItemFromObjectCaseSensitive(body, "tool_choice");
    const char *mode = cJSON_IsString(choice) ? choice->valuestring : "auto";
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!cJSON_IsArray(tools) || !tools->child || strcmp(mode, "none") == 0 || !cJSON_IsArray(msgs))
        goto out; /* nothing to show: rendered as it came */
    bool required = strcmp(mode, "required") == 0;
    *lazy = !required;
    if ((rc = tw_call_grammar(tools, grammar, err, errlen)))
        goto out;
    cJSON *m;
    cJSON_ArrayForEach(m, msgs)
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (cJSON_IsString(role) && strcmp(role->valuestring, "assistant") == 0 && (rc = tw_calls_as_text(m)))
            goto out;
    }
    char *text = tw_instruction(tools, required);
    if (!text) {
        rc = NS_ERR_NOMEM;
        goto out;
    }
    /* in front of the conversation's own system message, or as a new first message */
    cJSON *first = msgs->child;
    const cJSON *frole = cJSON_GetObjectItemCaseSensitive(first, "role");
    const cJSON *fcontent = cJSON_GetObjectItemCaseSensitive(first, "content");
    if (cJSON_IsString(frole) && strcmp(frole->valuestring, "system") == 0 && cJSON_IsString(fcontent)) {
        struct buf b;
        buf_init(&b, TW_TEXT_MAX);
        rc = buf_appendf(&b, "%s\n\n%s", fcontent->valuestring, text);
        if (!rc)
            cJSON_ReplaceItemInObjectCaseSensitive(first, "content", cJSON_CreateString(b.p));
        buf_release(&b);
    } else {
        cJSON *sys = cJSON_CreateObject();
        cJSON_AddStringToObject(sys, "role", "system");
        cJSON_AddStringToObject(sys, "content", text);
        cJSON_InsertItemInArray(msgs, 0, sys);
    }
    free(text);
    if (!rc && !(*out = cJSON_PrintUnformatted(body)))
        rc = NS_ERR_NOMEM;
out:
    cJSON_Delete(tools);
    cJSON_Delete(choice);
    cJSON_Delete(body);
    if (rc) {
        free(*grammar);
        free(*out);
        *out = *grammar = NULL;
        if (rc == NS_ERR_NOMEM)
            snprintf(err, errlen, "out of memory");
    }
    return rc;
}

/* ---- reading back ----------------------------------------------------------------------- */

/* a cut call's name: the string after "name": as far as it went (its JSON does not parse) */
static char *tw_cut_name(const char *json, size_t n)
{
    const char *end = json + n, *at = memmem(json, n, "\"name\"", 6);
    if (!at)
        return NULL;
    const char *p = at + 6;
    while (p < end && (*p == ' ' || *p == '\n'))
        p++;
    if (p == end || *p++ != ':')
        return NULL;
    while (p < end && (*p == ' ' || *p == '\n'))
        p++;
    if (p == end || *p++ != '"')
        return NULL;
    const char *q = p;
    while (q < end && *q != '"' && *q != '\\')
        q++;
    return strndup(p, (size_t)(q - p));
}

/* one call's text (between the markers) as a call: a name and an object of arguments */
static int tw_add_call(struct chat_msg *m, const char *json, size_t n, bool cut)
{
    /* the whole text between the markers is the call: a JSON object and nothing after it
     * but space (a parse that stops early would take "{...} junk" for a call) */
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(json, n, &end, false);
    while (o && end && end < json + n && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
        end++;
    if (o && end != json + n) {
        cJSON_Delete(o);
        o = NULL;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(o, "arguments");
    char *a = NULL;
    if (cJSON_IsString(name) && cJSON_IsObject(args))
        a = cJSON_PrintUnformatted(args);
    else if (cut) {
        /* cut at max_tokens: the arguments so far, as OpenAI keeps a cut call */
        const char *at = memmem(json, n, "\"arguments\"", 11);
        const char *colon = at ? memchr(at + 11, ':', n - (size_t)(at + 11 - json)) : NULL;
        if (colon) {
            const char *s = colon + 1;
            while (s < json + n && (*s == ' ' || *s == '\n'))
                s++;
            a = strndup(s, n - (size_t)(s - json));
        }
    }
    if (!a && !cut) {
        cJSON_Delete(o);
        return NS_ERR_INVALID; /* not a call: the text stays content */
    }
    struct chat_tool_call *grown = realloc(m->calls, sizeof(*grown) * (size_t)(m->n_calls + 1));
    if (!grown) {
        free(a);
        cJSON_Delete(o);
        return NS_ERR_NOMEM;
    }
    m->calls = grown;
    struct chat_tool_call *c = &m->calls[m->n_calls];
    c->id = tw_call_id();
    c->name = cJSON_IsString(name) ? strdup(name->valuestring) : cut ? tw_cut_name(json, n) : NULL;
    if (!c->name)
        c->name = strdup("");
    c->arguments = a ? a : strdup("");
    cJSON_Delete(o);
    if (!c->id || !c->name || !c->arguments) {
        free(c->id);
        free(c->name);
        free(c->arguments);
        return NS_ERR_NOMEM;
    }
    m->n_calls++;
    return NS_OK;
}

int toolwire_parse(const char *text, size_t len, bool cut, struct chat_msg *out)
{
    memset(out, 0, sizeof(*out));
    struct buf content;
    buf_init(&content, TW_TEXT_MAX);
    const size_t lo = sizeof(TOOLWIRE_OPEN) - 1, lc = sizeof(TOOLWIRE_CLOSE) - 1;
    size_t i = 0;
    int rc = NS_OK;
    while (i < len && !rc) {
        const char *open = memmem(text + i, len - i, TOOLWIRE_OPEN, lo);
        if (!open) {
            rc = buf_append(&content, text + i, len - i);
            break;
        }
        size_t at = (size_t)(open - text);
        const char *close = memmem(open + lo, len - at - lo, TOOLWIRE_CLOSE, lc);
        size_t end = close ? (size_t)(close - text) : len;
        int crc = close || cut ? tw_add_call(out, open + lo, end - at - lo, !close) : NS_ERR_INVALID;
        if (crc == NS_ERR_NOMEM) {
            rc = crc;
            break;
        }
        if (crc == NS_OK) {
            rc = buf_append(&content, text + i, at - i);
        } else {
            /* not a call after all: text, as it came */
            rc = buf_append(&content, text + i, (close ? end + lc : len) - i);
        }
        i = close ? end + lc : len;
    }
    /* what surrounds calls: the space between them is not an answer */
    while (!rc && out->n_calls && content.len && (content.p[content.len - 1] == '\n' || content.p[content.len - 1] == ' '))
        content.len--;
    out->content = rc ? NULL : strndup(content.p ? content.p : "", content.len);
    buf_release(&content);
    if (!out->content) {
        chat_msg_release(out);
        return NS_ERR_NOMEM;
    }
    return NS_OK;
}

/* ---- streaming ------------------------------------------------------------------------- */

struct toolwire_stream {
    struct buf text;             /* everything so far */
    size_t sent;                 /* bytes of text settled (sent as content or read as calls) */
    struct chat_msg msg;         /* calls made so far */
    struct chat_diff *diffs;     /* the last feed's */
    int n_diffs, cap_diffs;
    char **owned;                /* the last feed's content deltas */
    int n_owned;
    bool cut;                    /* the final feed's: an unclosed call is a call only when cut */
};

struct toolwire_stream *toolwire_stream_new(void)
{
    struct toolwire_stream *s = calloc(1, sizeof(*s));
    if (s)
        buf_init(&s->text, TW_TEXT_MAX);
    return s;
}

static void tw_stream_clear(struct toolwire_stream *s)
{
    for (int i = 0; i < s->n_owned; i++)
        free(s->owned[i]);
    s->n_owned = 0;
    s->n_diffs = 0;
}

void toolwire_stream_free(struct toolwire_stream *s)
{
    if (!s)
        return;
    tw_stream_clear(s);
    free(s->owned);
    free(s->diffs);
    buf_release(&s->text);
    chat_msg_release(&s->msg);
    free(s);
}

/* how many bytes at the end of p[0..n) could be the start of the opening marker */
static size_t tw_holdback(const char *p, size_t n)
{
    const size_t lo = sizeof(TOOLWIRE_OPEN) - 1;
    for (size_t k = lo - 1 < n ? lo - 1 : n; k > 0; k--)
        if (memcmp(p + n - k, TOOLWIRE_OPEN, k) == 0)
            return k;
    return 0;
}

static int tw_push(struct toolwire_stream *s, struct chat_diff d)
{
    if (s->n_diffs == s->cap_diffs) {
        int cap = s->cap_diffs ? s->cap_diffs * 2 : 4;
        struct chat_diff *nd = realloc(s->diffs, sizeof(*nd) * (size_t)cap);
        char **no = realloc(s->owned, sizeof(*no) * (size_t)cap);
        if (nd)
            s->diffs = nd;
        if (no)
            s->owned = no;
        if (!nd || !no)
            return NS_ERR_NOMEM;
        s->cap_diffs = cap;
    }
    s->diffs[s->n_diffs++] = d;
    return NS_OK;
}

static int tw_push_text(struct toolwire_stream *s, const char *p, size_t n)
{
    char *t = strndup(p, n);
    if (!t || tw_push(s, (struct chat_diff){.content = t, .call_index = -1})) {
        free(t);
        return NS_ERR_NOMEM;
    }
    s->owned[s->n_owned++] = t;
    return NS_OK;
}

int toolwire_stream_feed(struct toolwire_stream *s, const char *text, size_t len, bool final, bool cut,
                         const struct chat_diff **diffs, int *n)
{
    *diffs = NULL;
    *n = 0;
    tw_stream_clear(s);
    if (final)
        s->cut = cut;
    if (len && buf_append(&s->text, text, len))
        return NS_ERR_NOMEM;
    const size_t lo = sizeof(TOOLWIRE_OPEN) - 1, lc = sizeof(TOOLWIRE_CLOSE) - 1;
    int rc = NS_OK;
    for (;;) {
        const char *p = s->text.p ? s->text.p + s->sent : "";
        size_t avail = s->text.len - s->sent;
        if (!avail)
            break;
        const char *open = memmem(p, avail, TOOLWIRE_OPEN, lo);
        size_t plain = open ? (size_t)(open - p) : avail - (final ? 0 : tw_holdback(p, avail));
        if (plain > 0) {
            if ((rc = tw_push_text(s, p, plain)))
                break;
            s->sent += plain;
        }
        if (!open)
            break;
        const char *close = memmem(open + lo, avail - plain - lo, TOOLWIRE_CLOSE, lc);
        if (!close && !final)
            break; /* a call on its way: held */
        size_t end = close ? (size_t)(close - open) : avail - plain;
        int before = s->msg.n_calls;
        /* a call left open is a call only when the output was cut (as toolwire_parse reads it) */
        int crc = close || cut ? tw_add_call(&s->msg, open + lo, end - lo, !close && cut) : NS_ERR_INVALID;
        if (crc == NS_ERR_NOMEM) {
            rc = crc;
            break;
        }
        if (s->msg.n_calls > before) {
            const struct chat_tool_call *c = &s->msg.calls[before];
            rc = tw_push(s, (struct chat_diff){.call_index = before, .call_id = c->id, .call_name = c->name,
                                               .call_args = c->arguments});
        } else {
            rc = tw_push_text(s, open, close ? end + lc : end); /* not a call after all: text */
        }
        s->sent += close ? end + lc : end;
        if (rc)
            break;
    }
    *diffs = s->n_diffs ? s->diffs : NULL;
    *n = s->n_diffs;
    return rc;
}

void toolwire_stream_take(struct toolwire_stream *s, struct chat_msg *out)
{
    /* the answer's content and calls read as a whole, the ids kept as streamed */
    struct chat_msg whole;
    if (toolwire_parse(s->text.p ? s->text.p : "", s->text.len, s->cut, &whole) != NS_OK) {
        memset(out, 0, sizeof(*out));
        return;
    }
    for (int i = 0; i < whole.n_calls && i < s->msg.n_calls; i++) {
        free(whole.calls[i].id);
        whole.calls[i].id = s->msg.calls[i].id;
        s->msg.calls[i].id = NULL;
    }
    *out = whole;
}
