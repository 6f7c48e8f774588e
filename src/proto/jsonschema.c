/*
 * jsonschema.c — see jsonschema.h. One rule per schema node, memoized by node address so
 * that a node reached twice (through $ref, or a recursive schema) is one rule.
 */
#include "jsonschema.h"

#include "../util/buf.h"
#include "../util/status.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JS_PATH_MAX 256

/* Rules every grammar carries. Whitespace is bounded so that a model cannot spend its
 * whole budget on indentation; digit counts likewise. */
static const char js_prelude[] =
    "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n"
    "char ::= [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})\n"
    "string ::= \"\\\"\" char* \"\\\"\"\n"
    "integer ::= \"-\"? (\"0\" | [1-9] [0-9]{0,15})\n"
    "number ::= integer (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?\n"
    "boolean ::= \"true\" | \"false\"\n"
    "null ::= \"null\"\n"
    "value ::= object | array | string | number | boolean | null\n"
    "object ::= \"{\" ws ( string ws \":\" ws value ws ( \",\" ws string ws \":\" ws value ws )* )? \"}\"\n"
    "array ::= \"[\" ws ( value ws ( \",\" ws value ws )* )? \"]\"\n";

struct js_memo {
    const cJSON *node;
    int id;
};

struct js {
    const cJSON *root;
    struct buf out;
    int next_id;
    struct js_memo *memo;
    int n_memo, cap_memo;
    char *err;
    size_t errlen;
};

static int js_fail(struct js *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int js_fail(struct js *c, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return status;
}

static int js_node(struct js *c, const cJSON *s, const char *path, int depth, int *id);

/* keywords that only describe (never constrain) and the containers of definitions */
static const char *const js_annotations[] = {"title", "description", "$schema", "$id", "$comment", "default",
                                             "examples", "deprecated", "readOnly", "writeOnly", "$defs",
                                             "definitions", NULL};
static const char *const js_structural[] = {"type", "properties", "required", "additionalProperties", "items",
                                            "minItems", "maxItems", "minLength", "maxLength", NULL};
/* each of these defines the whole value by itself */
static const char *const js_exclusive[] = {"enum", "const", "anyOf", "oneOf", "$ref", NULL};

static bool js_in(const char *const *set, const char *k)
{
    for (int i = 0; set[i]; i++)
        if (strcmp(set[i], k) == 0)
            return true;
    return false;
}

/* parent + "/" + seg; a path too long for errors is cut (it only names a place) */
static void js_path(char *dst, const char *parent, const char *seg)
{
    size_t pl = strnlen(parent, JS_PATH_MAX - 1), sl = strlen(seg);
    memmove(dst, parent, pl);
    if (pl + 1 < JS_PATH_MAX)
        dst[pl++] = '/';
    if (sl > JS_PATH_MAX - 1 - pl)
        sl = JS_PATH_MAX - 1 - pl;
    memcpy(dst + pl, seg, sl);
    dst[pl + sl] = '\0';
}

/* a GBNF string literal holding exactly the bytes of s */
static int js_literal(struct buf *b, const char *s)
{
    int rc = buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p && !rc; p++) {
        if (*p == '"' || *p == '\\')
            rc = buf_appendf(b, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7F)
            rc = buf_appendf(b, "\\x%02X", *p);
        else
            rc = buf_append(b, p, 1);
    }
    return rc ? rc : buf_append(b, "\"", 1);
}

/* a GBNF literal for the exact JSON text of v */
static int js_json_literal(struct buf *b, const cJSON *v)
{
    char *txt = cJSON_PrintUnformatted(v);
    if (!txt)
        return NS_ERR_NOMEM;
    int rc = js_literal(b, txt);
    cJSON_free(txt);
    return rc;
}

/* the rule "s<id> ::= body" */
static int js_emit(struct js *c, int id, const char *suffix, const struct buf *body)
{
    return buf_appendf(&c->out, "s%d%s ::= %s\n", id, suffix, body->p ? body->p : "");
}

/* a non-negative integer keyword, at most JSONSCHEMA_MAX_REPEAT; absent leaves *out */
static int js_count(struct js *c, const cJSON *s, const char *k, const char *path, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, k);
    if (!v)
        return NS_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != floor(v->valuedouble))
        return js_fail(c, NS_ERR_INVALID, "'%s' at '%s' must be a non-negative integer", k, path);
    if (v->valuedouble > JSONSCHEMA_MAX_REPEAT)
        return js_fail(c, NS_ERR_UNSUPPORTED, "'%s' at '%s' is above %d, the most supported", k, path,
                       JSONSCHEMA_MAX_REPEAT);
    *out = (int)v->valuedouble;
    return NS_OK;
}

/* "{lo,hi}" (hi < 0: unbounded) as GBNF repetition of the preceding group */
static int js_repeat(struct buf *b, int lo, int hi)
{
    if (lo == 0 && hi < 0)
        return buf_appends(b, "*");
    if (hi < 0)
        return buf_appendf(b, "{%d,}", lo);
    return buf_appendf(b, "{%d,%d}", lo, hi);
}

static int js_min_max(struct js *c, const cJSON *s, const char *kmin, const char *kmax, const char *path, int *lo,
                      int *hi)
{
    int rc;
    *lo = 0;
    *hi = -1;
    if ((rc = js_count(c, s, kmin, path, lo)) || (rc = js_count(c, s, kmax, path, hi)))
        return rc;
    if (*hi >= 0 && *lo > *hi)
        return js_fail(c, NS_ERR_INVALID, "'%s' at '%s' is above '%s': no value can match", kmin, path, kmax);
    return NS_OK;
}

static int js_string(struct js *c, const cJSON *s, const char *path, struct buf *b)
{
    int lo, hi, rc;
    if ((rc = js_min_max(c, s, "minLength", "maxLength", path, &lo, &hi)))
        return rc;
    if (lo == 0 && hi < 0)
        return buf_appends(b, "string");
    if ((rc = buf_appends(b, "\"\\\"\" char")) || (rc = js_repeat(b, lo, hi)))
        return rc;
    return buf_appends(b, " \"\\\"\"");
}

static int js_array(struct js *c, const cJSON *s, const char *path, int depth, struct buf *b)
{
    int lo, hi, rc;
    if ((rc = js_min_max(c, s, "minItems", "maxItems", path, &lo, &hi)))
        return rc;
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    char item[32] = "value";
    if (items && cJSON_IsArray(items))
        return js_fail(c, NS_ERR_UNSUPPORTED, "'items' as an array (tuple validation) at '%s' is not supported", path);
    if (items) {
        char p[JS_PATH_MAX];
        int id;
        js_path(p, path, "items");
        if ((rc = js_node(c, items, p, depth + 1, &id)))
            return rc;
        snprintf(item, sizeof(item), "s%d", id);
    }
    if (hi == 0)
        return buf_appends(b, "\"[\" ws \"]\"");
    if ((rc = buf_appendf(b, "\"[\" ws %s%s ws", lo == 0 ? "( " : "", item)))
        return rc;
    /* the first item is written; the rest repeat after commas */
    int rlo = lo > 0 ? lo - 1 : 0, rhi = hi > 0 ? hi - 1 : -1;
    if (rhi != 0) {
        if ((rc = buf_appendf(b, " ( \",\" ws %s ws )", item)) || (rc = js_repeat(b, rlo, rhi)))
            return rc;
    }
    return buf_appends(b, lo == 0 ? " )? \"]\"" : " \"]\"");
}

static int js_object(struct js *c, const cJSON *s, const char *path, int depth, int id, struct buf *b)
{
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *addl = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    int rc = NS_OK;
    if (props && !cJSON_IsObject(props))
        return js_fail(c, NS_ERR_INVALID, "'properties' at '%s' must be an object", path);
    if (req && !cJSON_IsArray(req))
        return js_fail(c, NS_ERR_INVALID, "'required' at '%s' must be an array of strings", path);
    if (addl && !cJSON_IsBool(addl) && !(cJSON_IsObject(addl) && !addl->child))
        return js_fail(c, NS_ERR_UNSUPPORTED,
                       "'additionalProperties' at '%s' must be true or false; a schema there is not supported", path);
    const cJSON *r;
    cJSON_ArrayForEach(r, req)
    {
        if (!cJSON_IsString(r))
            return js_fail(c, NS_ERR_INVALID, "'required' at '%s' must be an array of strings", path);
        if (!cJSON_GetObjectItemCaseSensitive(props, r->valuestring))
            return js_fail(c, NS_ERR_UNSUPPORTED,
                           "required property '%.64s' at '%s' is not in 'properties', which is not supported",
                           r->valuestring, path);
    }
    int n = props ? cJSON_GetArraySize(props) : 0;
    if (n == 0)
        return buf_appends(b, cJSON_IsFalse(addl) ? "\"{\" ws \"}\"" : "object");

    /* kv<i>: one property; t<i>: properties i.. each after a comma; h<i>: the first
     * property written is i or a later one. Required ones must appear, optional ones may. */
    bool *required = calloc((size_t)n, sizeof(*required));
    if (!required)
        return NS_ERR_NOMEM;
    struct buf rb;
    buf_init(&rb, JSONSCHEMA_MAX_GRAMMAR);
    int i = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, props)
    {
        required[i] = false;
        cJSON_ArrayForEach(r, req) if (strcmp(r->valuestring, p->string) == 0) required[i] = true;
        char pp[JS_PATH_MAX];
        js_path(pp, path, "properties");
        js_path(pp, pp, p->string);
        int child;
        if ((rc = js_node(c, p, pp, depth + 1, &child)))
            goto out;
        cJSON *name = cJSON_CreateString(p->string);
        if (!name) {
            rc = NS_ERR_NOMEM;
            goto out;
        }
        buf_reset(&rb);
        rc = js_json_literal(&rb, name);
        cJSON_Delete(name);
        if (rc || (rc = buf_appendf(&rb, " ws \":\" ws s%d ws", child)))
            goto out;
        char suffix[24];
        snprintf(suffix, sizeof(suffix), "-kv%d", i);
        if ((rc = js_emit(c, id, suffix, &rb)))
            goto out;
        i++;
    }
    for (i = n - 1; i >= 0; i--) {
        char suffix[24], next[40] = "";
        if (i + 1 < n)
            snprintf(next, sizeof(next), " s%d-t%d", id, i + 1);
        buf_reset(&rb);
        if (i > 0) { /* t0 is never used: property 0 can only come first */
            rc = required[i] ? buf_appendf(&rb, "\",\" ws s%d-kv%d%s", id, i, next)
                             : buf_appendf(&rb, "( \",\" ws s%d-kv%d )?%s", id, i, next);
            snprintf(suffix, sizeof(suffix), "-t%d", i);
            if (rc || (rc = js_emit(c, id, suffix, &rb)))
                goto out;
            buf_reset(&rb);
        }
        if (required[i])
            rc = buf_appendf(&rb, "s%d-kv%d%s", id, i, next);
        else if (i + 1 < n)
            rc = buf_appendf(&rb, "s%d-kv%d%s | s%d-h%d", id, i, next, id, i + 1);
        else
            rc = buf_appendf(&rb, "( s%d-kv%d )?", id, i);
        snprintf(suffix, sizeof(suffix), "-h%d", i);
        if (rc || (rc = js_emit(c, id, suffix, &rb)))
            goto out;
    }
    rc = buf_appendf(b, "\"{\" ws s%d-h0 \"}\"", id);
out:
    buf_release(&rb);
    free(required);
    return rc;
}

static int js_typed(struct js *c, const cJSON *s, const char *type, const char *path, int depth, int id,
                    struct buf *b)
{
    if (strcmp(type, "string") == 0)
        return js_string(c, s, path, b);
    if (strcmp(type, "number") == 0 || strcmp(type, "integer") == 0 || strcmp(type, "boolean") == 0 ||
        strcmp(type, "null") == 0)
        return buf_appends(b, type);
    if (strcmp(type, "object") == 0)
        return js_object(c, s, path, depth, id, b);
    if (strcmp(type, "array") == 0)
        return js_array(c, s, path, depth, b);
    return js_fail(c, NS_ERR_INVALID, "'type' at '%s' has an unknown value '%.40s'", path, type);
}

/* "#", "#/a/b~1c" → the node, or NULL */
static const cJSON *js_resolve(const cJSON *root, const char *ref)
{
    const cJSON *cur = root;
    const char *p = ref + 1;
    while (*p == '/' && cur) {
        p++;
        char seg[JS_PATH_MAX];
        size_t n = 0;
        for (; *p && *p != '/'; p++) {
            char ch = *p;
            if (ch == '~' && (p[1] == '0' || p[1] == '1'))
                ch = *++p == '0' ? '~' : '/';
            if (n + 1 >= sizeof(seg))
                return NULL;
            seg[n++] = ch;
        }
        seg[n] = '\0';
        if (cJSON_IsArray(cur)) {
            char *end;
            long k = strtol(seg, &end, 10);
            cur = (n && !*end && k >= 0) ? cJSON_GetArrayItem(cur, (int)k) : NULL;
        } else {
            cur = cJSON_GetObjectItemCaseSensitive(cur, seg);
        }
    }
    return *p ? NULL : cur;
}

/* the body of rule s<id> for schema s */
static int js_body(struct js *c, const cJSON *s, const char *path, int depth, int id, struct buf *b)
{
    int rc;
    if (cJSON_IsTrue(s))
        return buf_appends(b, "value");
    if (cJSON_IsFalse(s))
        return js_fail(c, NS_ERR_UNSUPPORTED, "the schema 'false' at '%s' matches nothing", path);
    if (!cJSON_IsObject(s))
        return js_fail(c, NS_ERR_INVALID, "the schema at '%s' must be an object", path);
    const char *excl = NULL, *structural = NULL;
    const cJSON *k;
    cJSON_ArrayForEach(k, s)
    {
        if (js_in(js_annotations, k->string))
            continue;
        if (js_in(js_exclusive, k->string)) {
            if (excl)
                return js_fail(c, NS_ERR_UNSUPPORTED, "'%s' combined with '%s' at '%s' is not supported", k->string,
                               excl, path);
            excl = k->string;
        } else if (js_in(js_structural, k->string)) {
            if (!structural || strcmp(structural, "type") == 0)
                structural = k->string;
        } else {
            return js_fail(c, NS_ERR_UNSUPPORTED, "unsupported JSON Schema keyword '%.64s' at '%s'", k->string, path);
        }
    }
    /* enum and const may say their type; anything else next to an exclusive keyword
     * would constrain what its values alone define */
    if (excl && structural &&
        (strcmp(structural, "type") != 0 || !(strcmp(excl, "enum") == 0 || strcmp(excl, "const") == 0)))
        return js_fail(c, NS_ERR_UNSUPPORTED, "'%s' combined with '%s' at '%s' is not supported", excl, structural, path);

    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "$ref"))) {
        if (!cJSON_IsString(v))
            return js_fail(c, NS_ERR_INVALID, "'$ref' at '%s' must be a string", path);
        if (v->valuestring[0] != '#')
            return js_fail(c, NS_ERR_UNSUPPORTED, "'$ref' '%.100s' at '%s': only local references ('#/$defs/...') are supported",
                           v->valuestring, path);
        const cJSON *t = js_resolve(c->root, v->valuestring);
        if (!t)
            return js_fail(c, NS_ERR_INVALID, "'$ref' '%.100s' at '%s' points to nothing", v->valuestring, path);
        int tid;
        if ((rc = js_node(c, t, v->valuestring, depth + 1, &tid)))
            return rc;
        if (tid == id)
            return js_fail(c, NS_ERR_INVALID, "'$ref' '%.100s' at '%s' refers to itself", v->valuestring, path);
        return buf_appendf(b, "s%d", tid);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "enum")) || (v = cJSON_GetObjectItemCaseSensitive(s, "const"))) {
        bool is_enum = strcmp(v->string, "enum") == 0;
        if (is_enum && (!cJSON_IsArray(v) || !v->child))
            return js_fail(c, NS_ERR_INVALID, "'enum' at '%s' must be a non-empty array", path);
        if (!is_enum)
            return js_json_literal(b, v);
        const cJSON *e;
        cJSON_ArrayForEach(e, v)
        {
            if ((e != v->child && (rc = buf_appends(b, " | "))) || (rc = js_json_literal(b, e)))
                return rc;
        }
        return NS_OK;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(s, "anyOf")) || (v = cJSON_GetObjectItemCaseSensitive(s, "oneOf"))) {
        if (!cJSON_IsArray(v) || !v->child)
            return js_fail(c, NS_ERR_INVALID, "'%s' at '%s' must be a non-empty array of schemas", v->string, path);
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, v)
        {
            char pp[JS_PATH_MAX], idx[16];
            snprintf(idx, sizeof(idx), "%d", i);
            js_path(pp, path, v->string);
            js_path(pp, pp, idx);
            int sid;
            if ((rc = js_node(c, e, pp, depth + 1, &sid)) || (rc = buf_appendf(b, "%ss%d", i ? " | " : "", sid)))
                return rc;
            i++;
        }
        return NS_OK;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (cJSON_IsString(type))
        return js_typed(c, s, type->valuestring, path, depth, id, b);
    if (cJSON_IsArray(type) && type->child) {
        const cJSON *t;
        cJSON_ArrayForEach(t, type)
        {
            if (!cJSON_IsString(t))
                return js_fail(c, NS_ERR_INVALID, "'type' at '%s' must be a string or an array of strings", path);
            /* an object branch names its helper rules after id, so only one may exist */
            if ((t != type->child && (rc = buf_appends(b, " | "))) || (rc = buf_appends(b, "( ")) ||
                (rc = js_typed(c, s, t->valuestring, path, depth, id, b)) || (rc = buf_appends(b, " )")))
                return rc;
        }
        return NS_OK;
    }
    if (type)
        return js_fail(c, NS_ERR_INVALID, "'type' at '%s' must be a string or an array of strings", path);
    /* no type: what the keywords imply, else any value */
    if (cJSON_GetObjectItemCaseSensitive(s, "properties") || cJSON_GetObjectItemCaseSensitive(s, "required") ||
        cJSON_GetObjectItemCaseSensitive(s, "additionalProperties"))
        return js_object(c, s, path, depth, id, b);
    if (cJSON_GetObjectItemCaseSensitive(s, "items") || cJSON_GetObjectItemCaseSensitive(s, "minItems") ||
        cJSON_GetObjectItemCaseSensitive(s, "maxItems"))
        return js_array(c, s, path, depth, b);
    if (cJSON_GetObjectItemCaseSensitive(s, "minLength") || cJSON_GetObjectItemCaseSensitive(s, "maxLength"))
        return js_string(c, s, path, b);
    return buf_appends(b, "value");
}

/* the rule for schema node s (made once per node), its id in *id */
static int js_node(struct js *c, const cJSON *s, const char *path, int depth, int *id)
{
    for (int i = 0; i < c->n_memo; i++) {
        if (c->memo[i].node == s) {
            *id = c->memo[i].id;
            return NS_OK;
        }
    }
    if (depth > JSONSCHEMA_MAX_DEPTH)
        return js_fail(c, NS_ERR_UNSUPPORTED, "the schema is nested deeper than %d at '%s'", JSONSCHEMA_MAX_DEPTH, path);
    if (c->n_memo == c->cap_memo) {
        int cap = c->cap_memo ? c->cap_memo * 2 : 16;
        struct js_memo *m = realloc(c->memo, sizeof(*m) * (size_t)cap);
        if (!m)
            return NS_ERR_NOMEM;
        c->memo = m;
        c->cap_memo = cap;
    }
    int my = c->next_id++;
    /* named before the body: a $ref back to this node becomes a recursive rule */
    c->memo[c->n_memo++] = (struct js_memo){s, my};
    struct buf b;
    buf_init(&b, JSONSCHEMA_MAX_GRAMMAR);
    int rc = js_body(c, s, path, depth, my, &b);
    if (!rc)
        rc = js_emit(c, my, "", &b);
    buf_release(&b);
    if (!rc)
        *id = my;
    return rc;
}

int jsonschema_to_gbnf(const cJSON *schema, char **out, char *err, size_t errlen)
{
    struct js c = {.root = schema, .err = err, .errlen = errlen};
    buf_init(&c.out, JSONSCHEMA_MAX_GRAMMAR);
    *out = NULL;
    if (errlen)
        err[0] = '\0';
    int id = 0;
    int rc = buf_appends(&c.out, js_prelude);
    if (!rc)
        rc = js_node(&c, schema, "#", 0, &id);
    if (!rc)
        rc = buf_appendf(&c.out, "root ::= s%d\n", id);
    if (rc == NS_ERR_TOO_LARGE && (!err[0]))
        js_fail(&c, rc, "the schema's grammar is larger than %u bytes", JSONSCHEMA_MAX_GRAMMAR);
    else if (rc == NS_ERR_NOMEM && !err[0])
        js_fail(&c, rc, "out of memory");
    if (!rc && !(*out = buf_detach(&c.out)))
        rc = js_fail(&c, NS_ERR_NOMEM, "out of memory");
    buf_release(&c.out);
    free(c.memo);
    return rc;
}
