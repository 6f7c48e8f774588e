/* Unit tests: proto/jsonschema (JSON Schema -> GBNF through llama.cpp's converter, behind
 * the guard). Here: that each honoured keyword converts (and the rewrites: formats to
 * patterns, number bounds, "$ref": "#"), that every keyword llama.cpp would ignore is a
 * refusal naming it and its path, and zod 4's schemas as the OpenAI SDK sends them. What the
 * grammars accept is tested against llama.cpp's sampler in test_engine and end to end with
 * ajv in tests/e2e/schemas.test.mjs. Schemas are written with ' for " (q()). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/proto/jsonschema.h"
#include "../../src/util/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ' -> " (the schemas below hold no ' of their own; zod's email pattern spells it \u0027) */
static char *q(const char *s)
{
    char *o = strdup(s);
    assert_non_null(o);
    for (char *p = o; *p; p++)
        if (*p == '\'')
            *p = '"';
    return o;
}

static int conv(const char *schema, char **g, char *err, size_t n)
{
    char *text = q(schema);
    cJSON *s = cJSON_Parse(text);
    free(text);
    assert_non_null(s);
    int rc = jsonschema_to_gbnf(s, g, err, n);
    cJSON_Delete(s);
    return rc;
}

/* converts; the grammar holds every needle and none of the `absent` */
static void expect_ok2(const char *schema, const char *const *needles, const char *const *absent)
{
    char err[512], *g = NULL;
    int rc = conv(schema, &g, err, sizeof(err));
    if (rc)
        fail_msg("%s: %d %s", schema, rc, err);
    assert_non_null(strstr(g, "root ::= "));
    for (int i = 0; needles && needles[i]; i++)
        if (!strstr(g, needles[i]))
            fail_msg("%s: no '%s' in\n%s", schema, needles[i], g);
    for (int i = 0; absent && absent[i]; i++)
        if (strstr(g, absent[i]))
            fail_msg("%s: '%s' in\n%s", schema, absent[i], g);
    free(g);
}
#define expect_ok(s, ...) expect_ok2((s), (const char *[]){__VA_ARGS__, NULL}, NULL)

static void expect_err(const char *schema, int status, const char *msg)
{
    char err[512], *g = (char *)1;
    int rc = conv(schema, &g, err, sizeof(err));
    if (rc != status)
        fail_msg("%s: status %d (want %d): %s", schema, rc, status, rc ? err : "");
    assert_null(g);
    if (!strstr(err, msg))
        fail_msg("%s: error '%s' lacks '%s'", schema, err, msg);
}

static void test_honoured(void **state)
{
    (void)state;
    expect_ok("true", "root ::= value");
    expect_ok("{}", "root ::= value");
    expect_ok("{'type':'object'}", "root ::= object");
    expect_ok("{'type':'boolean','title':'t','description':'d','default':true,'examples':[true],'$schema':'x',"
              "'$id':'i','$comment':'c','deprecated':false,'readOnly':true,'writeOnly':false}",
              "root ::= (\"true\" | \"false\")");
    expect_ok("{'type':'null'}", "root ::= \"null\"");
    expect_ok("{'type':'string','minLength':2,'maxLength':5}", "root ::= \"\\\"\" char{2,5} \"\\\"\"");
    expect_ok("{'type':'integer','minimum':-5,'maximum':7}", "root ::= (");
    expect_ok("{'type':'integer','exclusiveMinimum':0,'exclusiveMaximum':10}", "[1-9]");
    /* zod's int(): +-(2^53 - 1) are bounds like any other */
    expect_ok("{'type':'integer','minimum':-9007199254740991,'maximum':9007199254740991}", "\"-\"");
    /* a bounded number is narrowed to the integers in its range: no fraction, no exponent */
    expect_ok2("{'type':'number','minimum':0.5,'maximum':3}", (const char *[]){"[1-3]", NULL},
               (const char *[]){"decimal-part", NULL});
    expect_ok2("{'type':['number','null'],'exclusiveMinimum':0,'exclusiveMaximum':10}",
               (const char *[]){"null", NULL}, (const char *[]){"decimal-part", NULL});
    expect_ok("{'type':'number'}", "decimal-part");
    /* bounds beyond any integer a grammar writes are dropped */
    expect_ok("{'type':'integer','minimum':-1e300}", "integral-part");
    expect_ok("{'type':'string','enum':['a','b'],'description':'x'}", "\"\\\"a\\\"\" | \"\\\"b\\\"\"");
    expect_ok("{'type':'number','const':3}", "root ::= \"3\"");
    expect_ok("{'anyOf':[{'type':'integer'},{'type':'null'}],'description':'d'}", "root ::= integer | null");
    expect_ok("{'oneOf':[{'type':'integer'},{'type':'boolean'}]}", "root ::= integer | boolean");
    expect_ok("{'type':['string','null']}", "null");
    /* type-specific keywords of another type are harmless: JSON Schema applies them to
     * values of their type only */
    expect_ok("{'type':'integer','maxLength':3,'uniqueItems':true,'minProperties':1}", "root ::= (\"-\"? integral-part)");
    expect_ok("{'type':['string','integer'],'maxLength':3,'minimum':0}", "char");
}

static void test_structures(void **state)
{
    (void)state;
    expect_ok("{'type':'object','properties':{'a':{'type':'string'},'b':{'type':'integer'}},'required':['a'],"
              "'additionalProperties':false}",
              "a-kv ::= \"\\\"a\\\"\" space \":\" space string", "root ::= \"{\" space a-kv");
    expect_ok("{'type':'object','additionalProperties':{'type':'integer'}}", "additional-kv");
    expect_ok("{'type':'array','items':{'type':'null'},'minItems':2,'maxItems':4}", "null (\",\" space null){1,3}");
    expect_ok("{'type':'array','prefixItems':[{'type':'null'},{'type':'boolean'}],'items':false}",
              "root ::= \"[\" space null \",\" space boolean space \"]\"");
    expect_ok("{'type':'array','items':[{'type':'null'}],'additionalItems':false}", "root ::= \"[\" space null space");
    expect_ok("{'type':'array','items':true}", "root ::= \"[\"");
    expect_ok("{'allOf':[{'type':'object','properties':{'a':{'type':'null'}}},{'$ref':'#/$defs/b'}],"
              "'$defs':{'b':{'properties':{'b':{'type':'boolean'}}}}}",
              "a-kv", "b-kv");
    expect_ok("{'$ref':'#/definitions/n','definitions':{'n':{'type':'null'}}}", "root ::= null");
    /* zod's recursion: "$ref": "#" resolved through a $defs copy of the root */
    expect_ok("{'type':'object','properties':{'name':{'type':'string'},'children':{'type':'array','items':"
              "{'$ref':'#'}}},'required':['name','children'],'additionalProperties':false}",
              "ref-defs-ns-root-children-item ::= ref-defs-ns-root");
}

static void test_patterns_formats(void **state)
{
    (void)state;
    expect_ok("{'type':'string','pattern':'^[a-z]{2,4}-(x|y)$'}", "[a-z]");
    /* \d and \w, which llama.cpp does not read, as classes (in a class too) */
    expect_ok2("{'type':'string','pattern':'^\\\\d{2}[\\\\w.]$'}", (const char *[]){"[0-9]", "A-Za-z0-9_.", NULL},
               (const char *[]){"\\\\d", NULL});
    expect_ok("{'pattern':'^a$'}", "\"a\"");
    /* unanchored: matched anywhere, so wrapped in .* */
    expect_ok("{'type':'string','pattern':'b|c'}", "dot");
    /* each format's own pattern, with and without zod's beside it */
    const char *fmts[] = {"email", "uri", "url", "uri-reference", "hostname", "ipv4", "ipv6", "uuid", "date", "time",
                          "date-time", "duration"};
    for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
        char s[128];
        snprintf(s, sizeof(s), "{'type':'string','format':'%s'}", fmts[i]);
        expect_ok2(s, (const char *[]){"root ::= \"\\\"\" (", NULL}, (const char *[]){"root ::= string", NULL});
    }
    expect_ok("{'type':['string','null'],'format':'email'}", "\"@\"");
    expect_ok("{'type':'string','format':'email','maxLength':200}", "\"@\"");
    expect_ok("{'format':'date'}", "2]");
    /* zod 4's patterns (OpenAI SDK zodResponseFormat) */
    expect_ok("{'type':'string','format':'email','pattern':'^(?:[A-Za-z0-9_\\u0027+\\\\-]+\\\\.)*[A-Za-z0-9_\\u0027+\\\\-]*"
              "[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9\\\\-]*\\\\.)+[A-Za-z]{2,}$'}",
              "\"@\"");
    expect_ok("{'type':'string','format':'uuid','pattern':'^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-"
              "[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}|00000000-0000-0000-0000-000000000000|"
              "ffffffff-ffff-ffff-ffff-ffffffffffff)$'}",
              "\"-4\"");
    expect_ok("{'type':'string','format':'ipv4','pattern':'^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
              "\\\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])$'}",
              "25");
    /* zod's string checks beside a pattern that does the work */
    expect_ok("{'type':'string','format':'starts_with','pattern':'^ab.*'}", "\"ab\"");
}

static void test_refusals(void **state)
{
    (void)state;
    static const char *const ignored[][2] = {
        {"{'properties':{'a':{'not':{'type':'null'}}}}", "'not' at '#/properties/a'"},
        {"{'if':{},'then':{}}", "'if' at '#'"},
        {"{'type':'object','else':{}}", "'else' at '#'"},
        {"{'type':'integer','multipleOf':2}", "'multipleOf' at '#'"},
        {"{'type':'array','uniqueItems':true}", "'uniqueItems' at '#'"},
        {"{'type':'array','contains':{}}", "'contains' at '#'"},
        {"{'type':'object','patternProperties':{}}", "'patternProperties' at '#'"},
        {"{'type':'object','properties':{},'dependentRequired':{}}", "'dependentRequired' at '#'"},
        {"{'type':'object','minProperties':1}", "'minProperties' at '#'"},
        {"{'type':'object','propertyNames':{}}", "'propertyNames' at '#'"},
        {"{'type':'string','contentEncoding':'base64'}", "'contentEncoding' at '#'"},
        {"{'minimum':3}", "'minimum' at '#'"},
        {"{'type':'null','x-vendor':1}", "'x-vendor' at '#'"},
        {"{'items':{'items':{'uniqueItems':true}}}", "'uniqueItems' at '#/items/items'"},
        {"{'anyOf':[{},{'type':'array','uniqueItems':true}]}", "'uniqueItems' at '#/anyOf/1'"},
        {"{'$defs':{'x':{'not':{}}}}", "'not' at '#/$defs/x'"},
        /* what llama.cpp would ignore beside another keyword */
        {"{'$ref':'#/$defs/a','type':'object','$defs':{'a':{}}}", "'type' at '#' is not supported: llama.cpp follows '$ref'"},
        {"{'anyOf':[{}],'properties':{}}", "'properties' at '#' is not supported: llama.cpp follows 'anyOf'"},
        {"{'anyOf':[{}],'oneOf':[{}]}", "'anyOf' at '#'"},
        {"{'type':'object','properties':{},'allOf':[{}]}", "'allOf' at '#'"},
        {"{'allOf':[{'type':'string'}]}", "'allOf' at '#' is not supported: llama.cpp merges only"},
        {"{'type':'string','allOf':[{'properties':{}}]}", "'allOf' at '#'"},
        {"{'allOf':[{'properties':{},'anyOf':[{}]}]}", "'allOf' at '#'"},
        {"{'const':1,'enum':[1]}", "'enum' at '#'"},
        {"{'enum':['a'],'maxLength':0}", "'maxLength' at '#'"},
        {"{'type':'integer','enum':[1,'a']}", "'enum' at '#' is not supported: a value is not of the schema's 'type'"},
        {"{'type':'string','const':1}", "'const' at '#'"},
        {"{'type':'array','items':{},'prefixItems':[{}]}", "'prefixItems' at '#'"},
        {"{'type':'array','items':[{}],'minItems':1}", "'minItems' at '#'"},
        {"{'type':'array','maxItems':100000}", "'maxItems' at '#' is not supported: over 1024"},
        {"{'type':'object','properties':{'a':{}},'required':['b']}", "'required' at '#'"},
        /* patterns, lengths, formats */
        {"{'type':'string','pattern':'^(?=a)a$'}", "'pattern' at '#' is not supported: llama.cpp cannot translate"},
        {"{'type':'string','pattern':'^a$|^b$'}", "'pattern' at '#'"},
        {"{'type':'string','pattern':'^\\\\s$'}", "'pattern' at '#'"},
        {"{'type':'string','pattern':'^a$','maxLength':3}", "'maxLength' at '#'"},
        {"{'type':'string','format':'binary'}", "'format' at '#' is not supported: llama.cpp does not enforce format 'binary'"},
        {"{'type':'string','format':'starts_with'}", "'format' at '#'"},
        {"{'type':'string','format':'email','pattern':'^a@b.cc$'}", "'format' at '#'"},
        {"{'type':'string','format':'email','maxLength':20}", "'maxLength' at '#'"},
        {"{'type':'string','format':'date','minLength':11}", "'minLength' at '#'"},
        /* numbers */
        {"{'type':'number','minimum':0.2,'maximum':0.8}", "'minimum' at '#' is not supported: no integer"},
        {"{'type':'integer','minimum':1e19}", "'minimum' at '#'"},
    };
    for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
        expect_err(ignored[i][0], NS_ERR_UNSUPPORTED, ignored[i][1]);

    expect_err("false", NS_ERR_UNSUPPORTED, "'false'");
    expect_err("{'properties':{'a':false}}", NS_ERR_UNSUPPORTED, "'false' at '#/properties/a'");
    expect_err("3", NS_ERR_INVALID, "not an object");
    expect_err("{'properties':{'a':3}}", NS_ERR_INVALID, "'#/properties/a' is not an object");
    expect_err("{'type':'object','properties':[]}", NS_ERR_INVALID, "'properties' at '#' must be an object");
    expect_err("{'anyOf':[]}", NS_ERR_INVALID, "'anyOf' at '#' must be a non-empty array");
    expect_err("{'enum':[]}", NS_ERR_INVALID, "'enum' at '#' must be a non-empty array");
    expect_err("{'type':'array','minItems':-1}", NS_ERR_INVALID, "'minItems' at '#' must be a non-negative");
    expect_err("{'type':'string','pattern':3}", NS_ERR_INVALID, "'pattern' at '#' must be a string");
    expect_err("{'type':'string','format':3}", NS_ERR_INVALID, "'format' at '#' must be a string");
    expect_err("{'type':'integer','minimum':'a'}", NS_ERR_INVALID, "not a number");
    expect_err("{'type':'string','pattern':'^(a$'}", NS_ERR_INVALID, "'pattern' at '#' is not a valid regex");
    /* what llama.cpp itself refuses, in its words */
    expect_err("{'type':'date'}", NS_ERR_INVALID, "unrecognized type date");
    expect_err("{'$ref':'#/$defs/nope'}", NS_ERR_INVALID, "nope");
    expect_err("{'$ref':'http://x/s.json'}", NS_ERR_INVALID, "only references into the same document");

    /* nesting beyond the limit */
    char deep[2048] = "";
    size_t n = 0;
    for (int i = 0; i < JSONSCHEMA_MAX_DEPTH + 2; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{'items':");
    n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{}");
    for (int i = 0; i < JSONSCHEMA_MAX_DEPTH + 2; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "}");
    expect_err(deep, NS_ERR_UNSUPPORTED, "nested deeper than 64");
}

/* zod 4 -> the OpenAI SDK's zodResponseFormat, as printed by it (tests/e2e/schemas.test.mjs
 * samples these and validates the outputs with ajv) */
static void test_zod(void **state)
{
    (void)state;
    static const char *const zod[] = {
        "{'$schema':'http://json-schema.org/draft-07/schema#','type':'object','properties':{'n':{'type':'integer',"
        "'minimum':-9007199254740991,'maximum':9007199254740991},'m':{'type':'integer','minimum':-5,'maximum':7}},"
        "'required':['n','m'],'additionalProperties':false}",
        "{'$schema':'http://json-schema.org/draft-07/schema#','type':'object','properties':{'x':{'type':'number',"
        "'minimum':0,'maximum':1},'y':{'type':'number','exclusiveMinimum':0,'exclusiveMaximum':10}},"
        "'required':['x','y'],'additionalProperties':false}",
        "{'$schema':'http://json-schema.org/draft-07/schema#','type':'object','properties':{'u':{'type':'string',"
        "'format':'uri'}},'required':['u'],'additionalProperties':false}",
        "{'$schema':'http://json-schema.org/draft-07/schema#','type':'object','properties':{'c':{'type':'string',"
        "'enum':['red','green']},'l':{'type':'number','const':3}},'required':['c','l'],'additionalProperties':false}",
        "{'$schema':'http://json-schema.org/draft-07/schema#','type':'object','properties':{'a':{'type':['string',"
        "'null']},'b':{'anyOf':[{'type':'integer','minimum':-9007199254740991,'maximum':9007199254740991},"
        "{'type':'null'}]}},'required':['a','b'],'additionalProperties':false}",
        "{'$schema':'http://json-schema.org/draft-07/schema#','type':'object','properties':{'m':{'minItems':1,"
        "'maxItems':3,'type':'array','items':{'maxItems':3,'type':'array','items':{'type':'integer','minimum':0,"
        "'maximum':9}}}},'required':['m'],'additionalProperties':false}",
        "{'$schema':'http://json-schema.org/draft-07/schema#','type':'object','properties':{'d':{'anyOf':[{'type':"
        "'object','properties':{'t':{'type':'string','const':'a'},'a':{'type':'integer'}},'required':['t','a'],"
        "'additionalProperties':false},{'type':'object','properties':{'t':{'type':'string','const':'b'}},"
        "'required':['t'],'additionalProperties':false}]}},'required':['d'],'additionalProperties':false}",
        "{'$schema':'http://json-schema.org/draft-07/schema#','type':'object','properties':{'t':{'type':'string',"
        "'pattern':'^(?:[01]\\\\d|2[0-3]):[0-5]\\\\d(?::[0-5]\\\\d(?:\\\\.\\\\d+)?)?$'},'def':{'default':'x',"
        "'description':'hi','type':'string'},'any':{}},'required':['t','def','any'],'additionalProperties':false}",
    };
    for (size_t i = 0; i < sizeof(zod) / sizeof(zod[0]); i++)
        expect_ok(zod[i], "root ::= ");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_honoured),
        cmocka_unit_test(test_structures),
        cmocka_unit_test(test_patterns_formats),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_zod),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
