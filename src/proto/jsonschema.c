/*
 * jsonschema.c — see jsonschema.h. A guard and a few rewrites on a copy of the schema, then
 * llama.cpp's converter (engine/chat.h, chat_schema_grammar). Which keyword llama.cpp reads
 * where mirrors common/json-schema.cpp (build_node): $ref first, then oneOf/anyOf, then a
 * type array (one alternative per type), const, enum, then the kind that type or the
 * structural keywords pick.
 */
#include "jsonschema.h"

#include "../engine/chat.h"
#include "../util/status.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JS_PATH_MAX 256
#define JS_ROOT_DEF "ns-root"        /* $defs entry a "$ref": "#" is pointed at */
#define JS_STR_(x) #x
#define JS_STR(x) JS_STR_(x)
#define JS_INT_LIMIT 1e18            /* integer bounds beyond this are dropped or refused */

/* What llama.cpp makes of a node (common_chat_schema::node_kind). */
enum js_kind { K_ANY, K_CONST, K_ENUM, K_OBJECT, K_ALLOF, K_ARRAY, K_STRING, K_INTEGER, K_NUMBER, K_BOOLEAN, K_NULL };

/* Keyword classes. A type-specific keyword constrains only values of its type (JSON Schema
 * semantics), so on a node whose kind fixes another type it is harmless, honoured or not. */
enum js_class { C_ANNOT, C_STRUCT, C_STR, C_NUM, C_ARR, C_OBJ, C_ANY };

static const struct {
    const char *name;
    enum js_class cls;
} js_keywords[] = {
    {"title", C_ANNOT}, {"description", C_ANNOT}, {"default", C_ANNOT}, {"examples", C_ANNOT},
    {"$schema", C_ANNOT}, {"$id", C_ANNOT}, {"$comment", C_ANNOT}, {"deprecated", C_ANNOT},
    {"readOnly", C_ANNOT}, {"writeOnly", C_ANNOT}, {"$defs", C_ANNOT}, {"definitions", C_ANNOT},
    {"type", C_STRUCT}, {"$ref", C_STRUCT}, {"anyOf", C_STRUCT}, {"oneOf", C_STRUCT}, {"allOf", C_STRUCT},
    {"const", C_STRUCT}, {"enum", C_STRUCT},
    {"pattern", C_STR}, {"format", C_STR}, {"minLength", C_STR}, {"maxLength", C_STR},
    {"contentEncoding", C_STR}, {"contentMediaType", C_STR}, {"contentSchema", C_STR},
    {"minimum", C_NUM}, {"maximum", C_NUM}, {"exclusiveMinimum", C_NUM}, {"exclusiveMaximum", C_NUM},
    {"multipleOf", C_NUM},
    {"items", C_ARR}, {"prefixItems", C_ARR}, {"minItems", C_ARR}, {"maxItems", C_ARR}, {"uniqueItems", C_ARR},
    {"contains", C_ARR}, {"minContains", C_ARR}, {"maxContains", C_ARR}, {"additionalItems", C_ARR},
    {"unevaluatedItems", C_ARR},
    {"properties", C_OBJ}, {"required", C_OBJ}, {"additionalProperties", C_OBJ}, {"patternProperties", C_OBJ},
    {"propertyNames", C_OBJ}, {"minProperties", C_OBJ}, {"maxProperties", C_OBJ}, {"dependentRequired", C_OBJ},
    {"dependentSchemas", C_OBJ}, {"dependencies", C_OBJ}, {"unevaluatedProperties", C_OBJ},
};

/* Formats llama.cpp does not enforce (all but date, time, date-time, uuid), and those it
 * enforces too loosely for a strict validator (its date admits 2023-02-31): each gets a
 * pattern llama.cpp translates, every match of which is valid for the format (ajv-formats,
 * full mode), bounded so that a sampled string ends. `zod` lists the patterns zod 4 emits
 * beside the format; each admits every match of ours, so ours may stand in for it. */
static const struct {
    const char *format;
    const char *pattern;
    int minlen, maxlen;
    const char *zod[3];
} js_formats[] = {
    {"email", "^[a-z0-9]{1,16}(?:\\.[a-z0-9]{1,16}){0,2}@(?:[a-z0-9]{1,16}\\.){1,2}[a-z]{2,6}$", 6, 91,
     {"^(?:[A-Za-z0-9_'+\\-]+\\.)*[A-Za-z0-9_'+\\-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9\\-]*\\.)+[A-Za-z]{2,}$"}},
    {"uri", "^https://[a-z0-9]{1,16}(?:\\.[a-z0-9]{1,16}){0,2}\\.[a-z]{2,6}(?:/[a-z0-9]{1,16}){0,3}$", 12, 116, {0}},
    {"url", "^https://[a-z0-9]{1,16}(?:\\.[a-z0-9]{1,16}){0,2}\\.[a-z]{2,6}(?:/[a-z0-9]{1,16}){0,3}$", 12, 116, {0}},
    {"uri-reference", "^https://[a-z0-9]{1,16}(?:\\.[a-z0-9]{1,16}){0,2}\\.[a-z]{2,6}(?:/[a-z0-9]{1,16}){0,3}$", 12, 116,
     {0}},
    {"hostname", "^[a-z0-9]{1,16}(?:\\.[a-z0-9]{1,16}){0,3}$", 1, 67,
     {"^(?=.{1,253}\\.?$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[-0-9a-zA-Z]{0,61}[0-9a-zA-Z])?)*"
      "\\.?$"}},
    {"ipv4", "^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$", 7,
     15,
     {"^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])$"}},
    {"ipv6", "^(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}$", 15, 39,
     {"^(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-"
      "fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:"
      "[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:((:[0-9a-fA-F]{1,4}){1,6})|:(("
      ":[0-9a-fA-F]{1,4}){1,7}|:))$"}},
    {"uuid", "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", 36, 36,
     {"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}|00000000-0000-0000-0000-"
      "000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$",
      "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"}},
    {"date", "^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])$", 10, 10,
     {"^(?:(?:\\d\\d[2468][048]|\\d\\d[13579][26]|\\d\\d0[48]|[02468][048]00|[13579][26]00)-02-29|\\d{4}-(?:(?:0[13578]|1["
      "02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|(?:02)-(?:0[1-9]|1\\d|2[0-8])))$"}},
    {"time", "^(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,3})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$", 9,
     18, {0}},
    {"date-time",
     "^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,3})?Z$",
     20, 24,
     {"^(?:(?:\\d\\d[2468][048]|\\d\\d[13579][26]|\\d\\d0[48]|[02468][048]00|[13579][26]00)-02-29|\\d{4}-(?:(?:0[13578]|1["
      "02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|(?:02)-(?:0[1-9]|1\\d|2[0-8])))T(?:(?:[01]\\d|2[0-3]"
      "):[0-5]\\d:[0-5]\\d(?:\\.\\d+)?(?:Z))$"}},
    {"duration", "^P(?:[0-9]{1,3}Y)?(?:[0-9]{1,3}M)?[0-9]{1,3}D(?:T[0-9]{1,2}H)?$", 3, 17,
     {"^P(?:(\\d+W)|(?!.*W)(?=\\d|T\\d)(\\d+Y)?(\\d+M)?(\\d+D)?(T(?=\\d)(\\d+H)?(\\d+M)?(\\d+([.,]\\d+)?S)?)?)$"}},
};

/* zod's string checks that emit a format of their own beside the pattern that does the work */
static const char *const js_zod_pattern_formats[] = {"starts_with", "ends_with", "includes"};

struct js {
    cJSON *root;
    char path[JS_PATH_MAX];
    size_t plen;
    bool root_ref;   /* a "$ref": "#" was pointed at JS_ROOT_DEF */
    char *err;
    size_t errlen;
};

static int js_fail(struct js *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int js_fail(struct js *c, int status, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* "'kw' at '#/path': why" — the shape of every refusal */
static int js_refuse(struct js *c, const char *kw, const char *why)
{
    return js_fail(c, NS_ERR_UNSUPPORTED, "'%s' at '%s' is not supported: %s", kw, c->plen ? c->path : "#", why);
}

/* path segments; a path longer than the buffer is cut (it only names the place) */
static size_t js_push(struct js *c, const char *seg)
{
    size_t old = c->plen;
    int n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "/%s", seg);
    if (n > 0)
        c->plen = c->plen + (size_t)n < sizeof(c->path) ? c->plen + (size_t)n : sizeof(c->path) - 1;
    return old;
}
static void js_pop(struct js *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

static enum js_class js_class_of(const char *kw, bool *known)
{
    for (size_t i = 0; i < sizeof(js_keywords) / sizeof(js_keywords[0]); i++)
        if (!strcmp(js_keywords[i].name, kw)) {
            *known = true;
            return js_keywords[i].cls;
        }
    *known = false;
    return C_ANY;
}

static int js_node(struct js *c, cJSON *node, int depth);

/* A sub-schema in place: `true` becomes {} (llama.cpp wants objects); `false` admits nothing,
 * which no grammar can produce. */
static int js_sub(struct js *c, cJSON *parent, cJSON *item, const char *seg, int depth)
{
    size_t old = js_push(c, seg);
    int rc = NS_OK;
    if (cJSON_IsTrue(item)) {
        cJSON *empty = cJSON_CreateObject();
        if (!empty) {
            rc = js_fail(c, NS_ERR_NOMEM, "out of memory");
            goto out;
        }
        cJSON_ReplaceItemViaPointer(parent, item, empty);
    } else if (cJSON_IsFalse(item)) {
        rc = js_fail(c, NS_ERR_UNSUPPORTED, "the schema 'false' at '%s' admits no value", c->path);
    } else if (!cJSON_IsObject(item)) {
        rc = js_fail(c, NS_ERR_INVALID, "the schema at '%s' is not an object", c->path);
    } else {
        rc = js_node(c, item, depth + 1);
    }
out:
    js_pop(c, old);
    return rc;
}

/* every member of an object of schemas ($defs, properties) */
static int js_map(struct js *c, cJSON *node, const char *kw, int depth)
{
    cJSON *m = cJSON_GetObjectItemCaseSensitive(node, kw);
    if (!m)
        return NS_OK;
    if (!cJSON_IsObject(m))
        return js_fail(c, NS_ERR_INVALID, "'%s' at '%s' must be an object", kw, c->plen ? c->path : "#");
    size_t old = js_push(c, kw);
    int rc = NS_OK;
    for (cJSON *it = m->child, *next; it && !rc; it = next) {
        next = it->next;  /* js_sub may replace it */
        rc = js_sub(c, m, it, it->string, depth);
    }
    js_pop(c, old);
    return rc;
}

/* every member of an array of schemas (anyOf, prefixItems, tuple items) */
static int js_list(struct js *c, cJSON *node, const char *kw, int depth)
{
    cJSON *a = cJSON_GetObjectItemCaseSensitive(node, kw);
    if (!cJSON_IsArray(a) || !a->child)
        return js_fail(c, NS_ERR_INVALID, "'%s' at '%s' must be a non-empty array of schemas", kw, c->plen ? c->path : "#");
    size_t old = js_push(c, kw);
    int rc = NS_OK, i = 0;
    for (cJSON *it = a->child, *next; it && !rc; it = next, i++) {
        next = it->next;
        char seg[16];
        snprintf(seg, sizeof(seg), "%d", i);
        rc = js_sub(c, a, it, seg, depth);
    }
    js_pop(c, old);
    return rc;
}

/* JSON pointer "#/a/b" into the root (for allOf's check); NULL when it does not resolve */
static const cJSON *js_resolve(const struct js *c, const char *ref)
{
    const cJSON *t = c->root;
    if (!strcmp(ref, "#"))
        return t;
    if (strncmp(ref, "#/", 2))
        return NULL;
    const char *p = ref + 2;
    while (t && *p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char seg[128];
        if (n >= sizeof(seg))
            return NULL;
        memcpy(seg, p, n);
        seg[n] = '\0';
        t = cJSON_IsArray(t) ? cJSON_GetArrayItem(t, (int)strtol(seg, NULL, 10)) : cJSON_GetObjectItemCaseSensitive(t, seg);
        p = end ? end + 1 : p + n;
    }
    return t;
}

static bool js_has(const cJSON *node, const char *kw) { return cJSON_GetObjectItemCaseSensitive(node, kw) != NULL; }

/* what build_node in common/json-schema.cpp makes of node when its type is `type` (NULL: none) */
static enum js_kind js_kind_of(const cJSON *node, const char *type)
{
    if (js_has(node, "const"))
        return K_CONST;
    if (js_has(node, "enum"))
        return K_ENUM;
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(node, "additionalProperties");
    bool has_props = js_has(node, "properties") || (ap && !cJSON_IsTrue(ap));
    if (!type) {
        if (has_props)
            return K_OBJECT;
        if (js_has(node, "allOf"))
            return K_ALLOF;
        if (js_has(node, "items") || js_has(node, "prefixItems"))
            return K_ARRAY;
        /* formats were given patterns already; one left without is refused elsewhere */
        if (js_has(node, "pattern") || js_has(node, "minLength") || js_has(node, "maxLength") || js_has(node, "format"))
            return K_STRING;
        return K_ANY;
    }
    if (!strcmp(type, "object"))
        return !has_props && js_has(node, "allOf") ? K_ALLOF : K_OBJECT;
    if (!strcmp(type, "string"))
        return js_has(node, "allOf") ? K_ALLOF : K_STRING;
    if (!strcmp(type, "array"))
        return K_ARRAY;
    if (!strcmp(type, "integer"))
        return K_INTEGER;
    if (!strcmp(type, "number"))
        return K_NUMBER;
    if (!strcmp(type, "boolean"))
        return K_BOOLEAN;
    if (!strcmp(type, "null"))
        return K_NULL;
    return K_ANY;  /* llama.cpp refuses the type itself ("unrecognized type") */
}

/* the class of keywords a kind reads; type-specific keywords of other classes are harmless */
static enum js_class js_kind_class(enum js_kind k)
{
    switch (k) {
    case K_OBJECT:
    case K_ALLOF:
        return C_OBJ;
    case K_ARRAY:
        return C_ARR;
    case K_STRING:
        return C_STR;
    case K_INTEGER:
    case K_NUMBER:
        return C_NUM;
    case K_BOOLEAN:
    case K_NULL:
        return C_ANNOT;  /* none: every type-specific keyword is harmless */
    default:
        return C_ANY;    /* the value's type is open: no keyword is harmless */
    }
}

/* whether kind k reads keyword kw (given the node's other keywords) */
static bool js_honoured(enum js_kind k, const char *kw)
{
    static const char *const obj[] = {"properties", "required", "additionalProperties", NULL};
    static const char *const arr[] = {"items", "prefixItems", "minItems", "maxItems", "additionalItems", NULL};
    static const char *const str[] = {"pattern", "format", "minLength", "maxLength", NULL};
    static const char *const num[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", NULL};
    const char *const *set = NULL;
    switch (k) {
    case K_CONST:
        return !strcmp(kw, "const");
    case K_ENUM:
        return !strcmp(kw, "enum");
    case K_ALLOF:
        return !strcmp(kw, "allOf");
    case K_OBJECT:
        set = obj;
        break;
    case K_ARRAY:
        set = arr;
        break;
    case K_STRING:
        set = str;
        break;
    case K_INTEGER:
    case K_NUMBER:
        set = num;
        break;
    default:
        return false;
    }
    for (int i = 0; set[i]; i++)
        if (!strcmp(set[i], kw))
            return true;
    return false;
}

static bool js_value_is(const cJSON *v, const char *type)
{
    if (!strcmp(type, "string"))
        return cJSON_IsString(v);
    if (!strcmp(type, "number"))
        return cJSON_IsNumber(v);
    if (!strcmp(type, "integer"))
        return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble);
    if (!strcmp(type, "boolean"))
        return cJSON_IsBool(v);
    if (!strcmp(type, "null"))
        return cJSON_IsNull(v);
    if (!strcmp(type, "array"))
        return cJSON_IsArray(v);
    if (!strcmp(type, "object"))
        return cJSON_IsObject(v);
    return false;
}

/* const/enum: llama.cpp emits the values as they are and ignores "type"; each must be of it */
static int js_values_typed(struct js *c, const cJSON *node, const char *kw)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(node, "type");
    const cJSON *vals = cJSON_GetObjectItemCaseSensitive(node, kw);
    if (!type)
        return NS_OK;
    const cJSON *one = !strcmp(kw, "const") ? vals : vals ? vals->child : NULL;
    for (; one; one = !strcmp(kw, "const") ? NULL : one->next) {
        bool ok = false;
        if (cJSON_IsString(type))
            ok = js_value_is(one, type->valuestring);
        for (const cJSON *t = cJSON_IsArray(type) ? type->child : NULL; t && !ok; t = t->next)
            ok = cJSON_IsString(t) && js_value_is(one, t->valuestring);
        if (!ok)
            return js_refuse(c, kw, "a value is not of the schema's 'type' (llama.cpp would emit it anyway)");
    }
    return NS_OK;
}

/* A pattern as llama.cpp can read it: \d and \w (which it does not translate) spelled as
 * the classes they are in JS, and anchored: llama.cpp translates only ^...$ patterns, while
 * a JSON Schema pattern matches anywhere, so "ab" becomes "^.*(?:ab).*$". Whole-string
 * matches of the body are matches of the original, so this only narrows. */
static char *js_pattern_prepare(const char *p)
{
    size_t n = strlen(p), cap = n * 10 + 16;
    char *o = malloc(cap), *w = o;
    if (!o)
        return NULL;
    bool head = n && p[0] == '^';
    size_t bs = 0;  /* backslashes before the final '$': an odd count escapes it */
    while (n >= 2 + bs && p[n - 2 - bs] == '\\')
        bs++;
    bool tail = n > (head ? 1u : 0u) && p[n - 1] == '$' && bs % 2 == 0;
    size_t from = head ? 1 : 0, to = tail ? n - 1 : n;
    bool wrap = !head || !tail;
    w += snprintf(w, cap, "^%s", head ? "" : ".*");
    if (wrap)
        w += snprintf(w, cap - (size_t)(w - o), "(?:");
    bool in_class = false;
    for (size_t i = from; i < to; i++) {
        if (p[i] == '\\' && i + 1 < to && (p[i + 1] == 'd' || p[i + 1] == 'w')) {
            const char *cls = p[i + 1] == 'd' ? "0-9" : "A-Za-z0-9_";
            w += snprintf(w, cap - (size_t)(w - o), in_class ? "%s" : "[%s]", cls);
            i++;
            continue;
        }
        if (p[i] == '\\' && i + 1 < to) {
            *w++ = p[i++];
            *w++ = p[i];
            continue;
        }
        if (p[i] == '[')
            in_class = true;
        else if (p[i] == ']')
            in_class = false;
        *w++ = p[i];
    }
    snprintf(w, cap - (size_t)(w - o), "%s%s$", wrap ? ")" : "", tail ? "" : ".*");
    return o;
}

static int js_set_string(struct js *c, cJSON *node, const char *kw, const char *value)
{
    cJSON *s = cJSON_CreateString(value);
    if (!s)
        return js_fail(c, NS_ERR_NOMEM, "out of memory");
    if (js_has(node, kw))
        cJSON_ReplaceItemInObjectCaseSensitive(node, kw, s);
    else
        cJSON_AddItemToObject(node, kw, s);
    return NS_OK;
}

/* format and pattern: llama.cpp reads the pattern when there is one and then ignores format
 * and the lengths; else it enforces only date, time, date-time and uuid. Every format gets a
 * pattern of js_formats here (standing in for zod's own), or is refused. */
static int js_string(struct js *c, cJSON *node)
{
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(node, "format");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(node, "pattern");
    const cJSON *minl = cJSON_GetObjectItemCaseSensitive(node, "minLength");
    const cJSON *maxl = cJSON_GetObjectItemCaseSensitive(node, "maxLength");
    char *rewritten = NULL;
    int rc = NS_OK;
    if (pat && !cJSON_IsString(pat))
        return js_fail(c, NS_ERR_INVALID, "'pattern' at '%s' must be a string", c->plen ? c->path : "#");
    if (fmt && !cJSON_IsString(fmt))
        return js_fail(c, NS_ERR_INVALID, "'format' at '%s' must be a string", c->plen ? c->path : "#");
    if (fmt) {
        const char *f = fmt->valuestring;
        size_t i = 0, nf = sizeof(js_formats) / sizeof(js_formats[0]);
        while (i < nf && strcmp(js_formats[i].format, f))
            i++;
        if (i < nf) {
            bool replace = !pat;
            for (int z = 0; !replace && z < 3 && js_formats[i].zod[z]; z++)
                replace = !strcmp(pat->valuestring, js_formats[i].zod[z]);
            if (!replace)
                return js_refuse(c, "format", "llama.cpp cannot enforce a format together with a 'pattern' of the "
                                              "schema's own");
            if ((minl && cJSON_IsNumber(minl) && minl->valuedouble > js_formats[i].minlen) ||
                (maxl && cJSON_IsNumber(maxl) && maxl->valuedouble < js_formats[i].maxlen))
                return js_refuse(c, minl && minl->valuedouble > js_formats[i].minlen ? "minLength" : "maxLength",
                                 "llama.cpp does not combine a length with a format");
            /* the format goes: the pattern says it all, and a second reading (a type
             * array) must not take ours for a pattern of the schema's own */
            cJSON_DeleteItemFromObjectCaseSensitive(node, "format");
            return js_set_string(c, node, "pattern", js_formats[i].pattern);
        }
        bool zod_own = false;
        for (size_t z = 0; z < sizeof(js_zod_pattern_formats) / sizeof(js_zod_pattern_formats[0]); z++)
            zod_own |= !strcmp(js_zod_pattern_formats[z], f);
        if (!zod_own || !pat) {
            char why[128];
            snprintf(why, sizeof(why), "llama.cpp does not enforce format '%.64s'", f);
            return js_refuse(c, "format", why);
        }
    }
    if (!pat)
        return NS_OK;
    if (minl || maxl)
        return js_refuse(c, minl ? "minLength" : "maxLength", "llama.cpp does not combine a length with a 'pattern'");
    rewritten = js_pattern_prepare(pat->valuestring);
    if (!rewritten)
        return js_fail(c, NS_ERR_NOMEM, "out of memory");
    bool ok = false;
    char why[160];
    rc = chat_schema_pattern_ok(rewritten, &ok, why, sizeof(why));
    if (rc == NS_ERR_INVALID)
        rc = js_fail(c, NS_ERR_INVALID, "'pattern' at '%s' is not a valid regex: %s", c->plen ? c->path : "#", why);
    else if (rc)
        rc = js_fail(c, rc, "%s", why);
    else if (!ok)
        rc = js_refuse(c, "pattern", "llama.cpp cannot translate it to a grammar (it supports anchored ^...$ patterns "
                                     "without lookarounds, backreferences or escapes other than \\d \\w \\x \\u)");
    else if (strcmp(rewritten, pat->valuestring))
        rc = js_set_string(c, node, "pattern", rewritten);
    free(rewritten);
    return rc;
}

/* a bound as an integer: fractional ones rounded inwards, exclusive ones made inclusive;
 * *set false when there is none (or it is beyond any integer a grammar would produce) */
static int js_bound(struct js *c, const cJSON *node, bool lower, double *out, bool *set)
{
    const cJSON *inc = cJSON_GetObjectItemCaseSensitive(node, lower ? "minimum" : "maximum");
    const cJSON *exc = cJSON_GetObjectItemCaseSensitive(node, lower ? "exclusiveMinimum" : "exclusiveMaximum");
    *set = false;
    if ((inc && !cJSON_IsNumber(inc)) || (exc && !cJSON_IsNumber(exc)))
        return js_fail(c, NS_ERR_INVALID, "a numeric bound at '%s' is not a number", c->plen ? c->path : "#");
    if (inc) {
        *out = lower ? ceil(inc->valuedouble) : floor(inc->valuedouble);
        *set = true;
    }
    if (exc) {
        double e = lower ? floor(exc->valuedouble) + 1 : ceil(exc->valuedouble) - 1;
        if (!*set || (lower ? e > *out : e < *out))
            *out = e;
        *set = true;
    }
    if (*set && (lower ? *out < -JS_INT_LIMIT : *out > JS_INT_LIMIT))
        *set = false;  /* no integer the grammar can write lies beyond it */
    return NS_OK;
}

/* integer and number bounds, rewritten as llama.cpp's integer bounds: it reads only the
 * integer kind's (and minimum before exclusiveMinimum); a bounded number is narrowed to the
 * integers in its range, each of which validates. */
static int js_numeric(struct js *c, cJSON *node, bool number)
{
    double lo = 0, hi = 0;
    bool has_lo, has_hi;
    int rc = js_bound(c, node, true, &lo, &has_lo);
    if (!rc)
        rc = js_bound(c, node, false, &hi, &has_hi);
    if (rc)
        return rc;
    if (!has_lo && !has_hi) {
        if (js_has(node, "minimum") || js_has(node, "maximum") || js_has(node, "exclusiveMinimum") ||
            js_has(node, "exclusiveMaximum")) {
            cJSON_DeleteItemFromObjectCaseSensitive(node, "minimum");
            cJSON_DeleteItemFromObjectCaseSensitive(node, "maximum");
            cJSON_DeleteItemFromObjectCaseSensitive(node, "exclusiveMinimum");
            cJSON_DeleteItemFromObjectCaseSensitive(node, "exclusiveMaximum");
        }
        return NS_OK;
    }
    if ((has_lo && lo > JS_INT_LIMIT) || (has_hi && hi < -JS_INT_LIMIT) || (has_lo && has_hi && lo > hi))
        return js_refuse(c, has_lo ? "minimum" : "maximum",
                         number ? "no integer lies in the range (llama.cpp bounds only integers)"
                                : "no integer lies in the range");
    cJSON_DeleteItemFromObjectCaseSensitive(node, "minimum");
    cJSON_DeleteItemFromObjectCaseSensitive(node, "maximum");
    cJSON_DeleteItemFromObjectCaseSensitive(node, "exclusiveMinimum");
    cJSON_DeleteItemFromObjectCaseSensitive(node, "exclusiveMaximum");
    if ((has_lo && !cJSON_AddNumberToObject(node, "minimum", lo)) ||
        (has_hi && !cJSON_AddNumberToObject(node, "maximum", hi)))
        return js_fail(c, NS_ERR_NOMEM, "out of memory");
    if (number) {
        /* "number" -> "integer", in a type array too */
        cJSON *type = cJSON_GetObjectItemCaseSensitive(node, "type");
        for (cJSON *t = cJSON_IsArray(type) ? type->child : type; t; t = cJSON_IsArray(type) ? t->next : NULL)
            if (cJSON_IsString(t) && !strcmp(t->valuestring, "number") && cJSON_SetValuestring(t, "integer") == NULL)
                return js_fail(c, NS_ERR_NOMEM, "out of memory");
    }
    return NS_OK;
}

/* allOf: llama.cpp merges the properties of object members (all made required) and nothing
 * else; any other member would be dropped silently */
static int js_allof(struct js *c, const cJSON *node)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(node, "allOf");
    for (const cJSON *m = cJSON_IsArray(a) ? a->child : NULL; m; m = m->next) {
        const cJSON *t = m;
        for (int hops = 0; t && cJSON_IsObject(t) && js_has(t, "$ref") && hops < JSONSCHEMA_MAX_DEPTH; hops++) {
            const cJSON *r = cJSON_GetObjectItemCaseSensitive(t, "$ref");
            t = cJSON_IsString(r) ? js_resolve(c, r->valuestring) : NULL;
        }
        const cJSON *type = t ? cJSON_GetObjectItemCaseSensitive(t, "type") : NULL;
        if (!cJSON_IsObject(t) || !js_has(t, "properties") || (type && !(cJSON_IsString(type) && !strcmp(type->valuestring, "object"))) ||
            js_has(t, "anyOf") || js_has(t, "oneOf") || js_has(t, "allOf"))
            return js_refuse(c, "allOf", "llama.cpp merges only members that are objects with 'properties'");
    }
    return NS_OK;
}

/* check node as llama.cpp will read it with type `type`, rewriting what needs it */
static int js_typed(struct js *c, cJSON *node, const char *type, int depth)
{
    enum js_kind k = js_kind_of(node, type);
    enum js_class kc = js_kind_class(k);
    int rc = NS_OK;
    if (k == K_STRING && (rc = js_string(c, node)))
        return rc;
    if ((k == K_INTEGER || k == K_NUMBER) && (rc = js_numeric(c, node, k == K_NUMBER)))
        return rc;
    if (k == K_ARRAY) {
        cJSON *items = cJSON_GetObjectItemCaseSensitive(node, "items");
        if (cJSON_IsFalse(items) && js_has(node, "prefixItems"))
            cJSON_DeleteItemFromObjectCaseSensitive(node, "items");  /* a tuple of exactly prefixItems */
        else if (items && js_has(node, "prefixItems"))
            return js_refuse(c, "prefixItems", "llama.cpp reads 'items' and ignores 'prefixItems' beside it");
        items = cJSON_GetObjectItemCaseSensitive(node, "items");
        bool tuple = cJSON_IsArray(items) || js_has(node, "prefixItems");
        if (tuple && (js_has(node, "minItems") || js_has(node, "maxItems")))
            return js_refuse(c, js_has(node, "minItems") ? "minItems" : "maxItems",
                             "llama.cpp ignores it on a tuple (which it writes at exactly its length)");
    }
    if (k == K_CONST && (rc = js_values_typed(c, node, "const")))
        return rc;
    if (k == K_ENUM) {
        if (js_has(node, "const"))
            return js_refuse(c, "enum", "llama.cpp reads 'const' and ignores 'enum' beside it");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(node, "enum");
        if (!cJSON_IsArray(e) || !e->child)
            return js_fail(c, NS_ERR_INVALID, "'enum' at '%s' must be a non-empty array", c->plen ? c->path : "#");
        if ((rc = js_values_typed(c, node, "enum")))
            return rc;
    }
    if (k == K_CONST && js_has(node, "enum"))
        return js_refuse(c, "enum", "llama.cpp reads 'const' and ignores 'enum' beside it");
    if (k == K_ALLOF && type && !strcmp(type, "string"))
        return js_refuse(c, "allOf", "llama.cpp merges only object schemas");
    if (k == K_ALLOF && (rc = js_allof(c, node)))
        return rc;

    for (const cJSON *it = node->child; it; it = it->next) {
        bool known;
        enum js_class cls = js_class_of(it->string, &known);
        if (cls == C_ANNOT || !strcmp(it->string, "type"))
            continue;
        if (js_honoured(k, it->string)) {
            /* llama.cpp's grammar parser unrolls repetitions: a huge count is memory */
            if (!strcmp(it->string, "minItems") || !strcmp(it->string, "maxItems") || !strcmp(it->string, "minLength") ||
                !strcmp(it->string, "maxLength")) {
                if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble != floor(it->valuedouble))
                    return js_fail(c, NS_ERR_INVALID, "'%s' at '%s' must be a non-negative integer", it->string, c->path);
                if (it->valuedouble > JSONSCHEMA_MAX_REPEAT)
                    return js_refuse(c, it->string, "over " JS_STR(JSONSCHEMA_MAX_REPEAT));
            }
            continue;
        }
        if (known && (cls == C_STR || cls == C_NUM || cls == C_ARR || cls == C_OBJ) && kc != C_ANY && cls != kc)
            continue;  /* applies to another type than this node's */
        return js_refuse(c, it->string, known ? "llama.cpp's grammar does not honour it here"
                                              : "not a keyword llama.cpp's grammar honours");
    }

    if (k == K_OBJECT) {
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(node, "properties");
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(node, "required");
        for (const cJSON *r = cJSON_IsArray(req) ? req->child : NULL; r; r = r->next)
            if (cJSON_IsString(r) && !cJSON_GetObjectItemCaseSensitive(props, r->valuestring))
                return js_refuse(c, "required", "it names a property outside 'properties', which llama.cpp would "
                                                "leave out");
        if ((rc = js_map(c, node, "properties", depth)))
            return rc;
        cJSON *ap = cJSON_GetObjectItemCaseSensitive(node, "additionalProperties");
        if (cJSON_IsObject(ap))
            rc = js_sub(c, node, ap, "additionalProperties", depth);
    } else if (k == K_ARRAY) {
        cJSON *items = cJSON_GetObjectItemCaseSensitive(node, "items");
        if (cJSON_IsArray(items))
            rc = js_list(c, node, "items", depth);
        else if (items)
            rc = js_sub(c, node, items, "items", depth);
        else if (js_has(node, "prefixItems"))
            rc = js_list(c, node, "prefixItems", depth);
    } else if (k == K_ALLOF) {
        rc = js_list(c, node, "allOf", depth);
    }
    return rc;
}

static int js_node(struct js *c, cJSON *node, int depth)
{
    int rc;
    if (depth > JSONSCHEMA_MAX_DEPTH)
        return js_fail(c, NS_ERR_UNSUPPORTED, "the schema at '%s' is nested deeper than %d", c->path,
                       JSONSCHEMA_MAX_DEPTH);
    if ((rc = js_map(c, node, "$defs", depth)) || (rc = js_map(c, node, "definitions", depth)))
        return rc;

    cJSON *ref = cJSON_GetObjectItemCaseSensitive(node, "$ref");
    const char *alt = js_has(node, "oneOf") ? "oneOf" : js_has(node, "anyOf") ? "anyOf" : NULL;
    if (ref || alt) {
        /* llama.cpp follows $ref alone, and oneOf/anyOf alone: every sibling is ignored */
        const char *own = ref ? "$ref" : alt;
        for (const cJSON *it = node->child; it; it = it->next) {
            bool known;
            if (js_class_of(it->string, &known) == C_ANNOT || !strcmp(it->string, own))
                continue;
            char why[96];
            snprintf(why, sizeof(why), "llama.cpp follows '%s' alone and ignores what is beside it", own);
            return js_refuse(c, it->string, why);
        }
        if (!ref)
            return js_list(c, node, alt, depth);
        if (cJSON_IsString(ref) && !strcmp(ref->valuestring, "#")) {
            /* llama.cpp resolves only "#/..."; the root gets a $defs entry of its own */
            if (cJSON_SetValuestring(ref, "#/$defs/" JS_ROOT_DEF) == NULL)
                return js_fail(c, NS_ERR_NOMEM, "out of memory");
            c->root_ref = true;
        }
        return NS_OK;  /* llama.cpp says what a dangling $ref is */
    }

    const cJSON *type = cJSON_GetObjectItemCaseSensitive(node, "type");
    if (!cJSON_IsArray(type))
        return js_typed(c, node, cJSON_IsString(type) ? type->valuestring : NULL, depth);
    /* one alternative per type, each with every keyword: check each reading. Types are
     * read from a snapshot since js_numeric may rename "number" in place. */
    char types[8][16];
    int nt = 0;
    for (const cJSON *t = type->child; t && nt < 8; t = t->next)
        if (cJSON_IsString(t))
            snprintf(types[nt++], sizeof(types[0]), "%s", t->valuestring);
    for (int i = 0; i < nt; i++)
        if ((rc = js_typed(c, node, types[i], depth)))
            return rc;
    return NS_OK;
}

int jsonschema_to_gbnf(const cJSON *schema, char **out, char *err, size_t errlen)
{
    return jsonschema_convert(schema, out, NULL, err, errlen);
}

int jsonschema_convert(const cJSON *schema, char **out, cJSON **held, char *err, size_t errlen)
{
    struct js c = {.err = err, .errlen = errlen};
    char *text = NULL;
    int rc = NS_OK;
    *out = NULL;
    if (held)
        *held = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (cJSON_IsTrue(schema) || (cJSON_IsObject(schema) && !schema->child)) {
        c.root = cJSON_CreateObject();  /* any value */
    } else if (cJSON_IsObject(schema)) {
        c.root = cJSON_Duplicate(schema, 1);
    } else {
        rc = js_fail(&c, cJSON_IsFalse(schema) ? NS_ERR_UNSUPPORTED : NS_ERR_INVALID,
                     cJSON_IsFalse(schema) ? "the schema 'false' admits no value" : "the schema is not an object");
        goto cleanup;
    }
    if (!c.root) {
        rc = js_fail(&c, NS_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    c.path[0] = '#';
    c.path[1] = '\0';
    c.plen = 1;
    if ((rc = js_node(&c, c.root, 0)))
        goto cleanup;
    if (c.root_ref) {
        /* the root as a $defs entry, for the "$ref": "#" pointed there */
        cJSON *defs = cJSON_GetObjectItemCaseSensitive(c.root, "$defs");
        cJSON *copy = cJSON_Duplicate(c.root, 1);
        if (!copy || (!defs && !(defs = cJSON_AddObjectToObject(c.root, "$defs")))) {
            cJSON_Delete(copy);
            rc = js_fail(&c, NS_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(copy, "$defs");
        cJSON_DeleteItemFromObjectCaseSensitive(defs, JS_ROOT_DEF);
        cJSON_AddItemToObject(defs, JS_ROOT_DEF, copy);
    }
    text = cJSON_PrintUnformatted(c.root);
    if (!text) {
        rc = js_fail(&c, NS_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    rc = chat_schema_grammar(text, out, err, errlen);
    for (char *p = rc && err ? err : NULL; p && *p; p++)
        if (*p == '\n')
            *p = ' ';  /* llama.cpp's message is multi-line; an API error is one line */
    if (rc == NS_OK && strlen(*out) > JSONSCHEMA_MAX_GRAMMAR) {
        free(*out);
        *out = NULL;
        rc = js_fail(&c, NS_ERR_TOO_LARGE, "the schema's grammar is over %u bytes", JSONSCHEMA_MAX_GRAMMAR);
    }
cleanup:
    if (rc == NS_OK && held) {
        *held = c.root;
        c.root = NULL;
    }
    cJSON_Delete(c.root);
    free(text);
    return rc;
}
