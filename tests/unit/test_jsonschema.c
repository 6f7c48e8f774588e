/* Unit tests: proto/jsonschema (JSON Schema → GBNF). What the grammar accepts is tested
 * against llama.cpp's sampler in test_engine and end to end with ajv in parity.test.mjs;
 * here: the rules produced and every refusal. */
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

/* convert the schema text; on success the grammar is returned (caller frees) */
static int conv(const char *schema, char **g, char *err, size_t n)
{
    cJSON *s = cJSON_Parse(schema);
    assert_non_null(s);
    int rc = jsonschema_to_gbnf(s, g, err, n);
    cJSON_Delete(s);
    return rc;
}

static void expect_ok(const char *schema, const char *const *needles)
{
    char err[256], *g = NULL;
    int rc = conv(schema, &g, err, sizeof(err));
    if (rc)
        fail_msg("%s: %s", schema, err);
    assert_non_null(strstr(g, "\nroot ::= s"));
    for (int i = 0; needles && needles[i]; i++)
        if (!strstr(g, needles[i]))
            fail_msg("%s: no '%s' in\n%s", schema, needles[i], g);
    free(g);
}

static void expect_err(const char *schema, int status, const char *msg)
{
    char err[256], *g = (char *)1;
    assert_int_equal(conv(schema, &g, err, sizeof(err)), status);
    assert_null(g);
    if (!strstr(err, msg))
        fail_msg("%s: error '%s' lacks '%s'", schema, err, msg);
}

static void test_types(void **state)
{
    (void)state;
    expect_ok("{\"type\":\"object\"}", (const char *[]){"s0 ::= object\n", "root ::= s0\n", NULL});
    expect_ok("true", (const char *[]){"s0 ::= value\n", NULL});
    expect_ok("{}", (const char *[]){"s0 ::= value\n", NULL});
    expect_ok("{\"type\":\"integer\",\"description\":\"d\",\"title\":\"t\"}", (const char *[]){"s0 ::= integer\n", NULL});
    expect_ok("{\"type\":[\"string\",\"null\"]}", (const char *[]){"s0 ::= ( string ) | ( null )\n", NULL});
    expect_ok("{\"type\":\"string\",\"minLength\":2,\"maxLength\":5}",
              (const char *[]){"s0 ::= \"\\\"\" char{2,5} \"\\\"\"\n", NULL});
    expect_ok("{\"maxLength\":3}", (const char *[]){"char{0,3}", NULL});
    expect_ok("{\"type\":\"string\",\"enum\":[\"a\\\"b\",1,null,{\"k\":[true]}]}",
              (const char *[]){"s0 ::= \"\\\"a\\\\\\\"b\\\"\" | \"1\" | \"null\" | \"{\\\"k\\\":[true]}\"\n", NULL});
    expect_ok("{\"const\":\"x\"}", (const char *[]){"s0 ::= \"\\\"x\\\"\"\n", NULL});
    expect_ok("{\"anyOf\":[{\"type\":\"number\"},{\"type\":\"boolean\"}]}",
              (const char *[]){"s0 ::= s1 | s2\n", "s1 ::= number\n", "s2 ::= boolean\n", NULL});
    expect_ok("{\"oneOf\":[{\"type\":\"null\"}]}", (const char *[]){"s0 ::= s1\n", NULL});
}

static void test_objects(void **state)
{
    (void)state;
    /* required a, optional b, required c: a first, b may be left out */
    expect_ok("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"},\"b\":{\"type\":\"integer\"},"
              "\"c\":{\"type\":\"boolean\"}},\"required\":[\"a\",\"c\"],\"additionalProperties\":false}",
              (const char *[]){"s0-kv0 ::= \"\\\"a\\\"\" ws \":\" ws s1 ws\n", "s0-t2 ::= \",\" ws s0-kv2\n",
                               "s0-t1 ::= ( \",\" ws s0-kv1 )? s0-t2\n", "s0-h0 ::= s0-kv0 s0-t1\n",
                               "s0 ::= \"{\" ws s0-h0 \"}\"\n", NULL});
    /* all optional: any subset, in order, possibly none */
    expect_ok("{\"properties\":{\"a\":{},\"b\":{}}}",
              (const char *[]){"s0-h0 ::= s0-kv0 s0-t1 | s0-h1\n", "s0-h1 ::= ( s0-kv1 )?\n", NULL});
    expect_ok("{\"type\":\"object\",\"additionalProperties\":false}", (const char *[]){"s0 ::= \"{\" ws \"}\"\n", NULL});
    expect_ok("{\"type\":\"object\",\"additionalProperties\":{}}", (const char *[]){"s0 ::= object\n", NULL});
    /* names are JSON-escaped, then GBNF-escaped */
    expect_ok("{\"properties\":{\"q\\\"\\n\":{}},\"required\":[\"q\\\"\\n\"]}",
              (const char *[]){"s0-kv0 ::= \"\\\"q\\\\\\\"\\\\n\\\"\" ws", NULL});
}

static void test_arrays(void **state)
{
    (void)state;
    expect_ok("{\"type\":\"array\"}", (const char *[]){"s0 ::= \"[\" ws ( value ws ( \",\" ws value ws )* )? \"]\"\n", NULL});
    expect_ok("{\"type\":\"array\",\"items\":{\"type\":\"null\"},\"minItems\":2,\"maxItems\":4}",
              (const char *[]){"s0 ::= \"[\" ws s1 ws ( \",\" ws s1 ws ){1,3} \"]\"\n", NULL});
    expect_ok("{\"items\":{\"type\":\"null\"},\"minItems\":3}", (const char *[]){"( \",\" ws s1 ws ){2,}", NULL});
    expect_ok("{\"items\":{\"type\":\"null\"},\"maxItems\":1}", (const char *[]){"s0 ::= \"[\" ws ( s1 ws )? \"]\"\n", NULL});
    expect_ok("{\"type\":\"array\",\"maxItems\":0}", (const char *[]){"s0 ::= \"[\" ws \"]\"\n", NULL});
}

static void test_refs(void **state)
{
    (void)state;
    /* a recursive tree: the $ref target is one rule, referenced from inside itself */
    expect_ok("{\"$ref\":\"#/$defs/node\",\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{"
              "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"},\"maxItems\":2}}}}}",
              (const char *[]){"s0 ::= s1\n", "s3 ::= s1\n", NULL});
    expect_ok("{\"definitions\":{\"a~/b\":{\"type\":\"null\"}},\"$ref\":\"#/definitions/a~0~1b\"}",
              (const char *[]){"s1 ::= null\n", NULL});
    expect_ok("{\"type\":\"array\",\"items\":{\"$ref\":\"#\"},\"maxItems\":1}", (const char *[]){"s1 ::= s0\n", NULL});
}

static void test_refusals(void **state)
{
    (void)state;
    expect_err("{\"type\":\"string\",\"pattern\":\"^a\"}", NS_ERR_UNSUPPORTED, "keyword 'pattern' at '#'");
    expect_err("{\"properties\":{\"a\":{\"format\":\"date\"}}}", NS_ERR_UNSUPPORTED, "'format' at '#/properties/a'");
    expect_err("{\"allOf\":[]}", NS_ERR_UNSUPPORTED, "'allOf'");
    expect_err("{\"type\":\"integer\",\"minimum\":3}", NS_ERR_UNSUPPORTED, "'minimum'");
    expect_err("{\"type\":\"date\"}", NS_ERR_INVALID, "'type' at '#' has an unknown value 'date'");
    expect_err("{\"type\":7}", NS_ERR_INVALID, "'type' at '#' must be");
    expect_err("{\"type\":[\"string\",3]}", NS_ERR_INVALID, "'type' at '#' must be");
    expect_err("false", NS_ERR_UNSUPPORTED, "'false'");
    expect_err("3", NS_ERR_INVALID, "must be an object");
    expect_err("{\"$ref\":\"http://x/s.json\"}", NS_ERR_UNSUPPORTED, "only local references");
    expect_err("{\"$ref\":\"#/$defs/nope\"}", NS_ERR_INVALID, "points to nothing");
    expect_err("{\"$ref\":3}", NS_ERR_INVALID, "'$ref' at '#' must be a string");
    expect_err("{\"$ref\":\"#\"}", NS_ERR_INVALID, "refers to itself");
    expect_err("{\"$ref\":\"#/$defs/a\",\"type\":\"object\",\"$defs\":{\"a\":{}}}", NS_ERR_UNSUPPORTED,
               "'$ref' combined with 'type'");
    expect_err("{\"anyOf\":[{}],\"properties\":{}}", NS_ERR_UNSUPPORTED, "'anyOf' combined with 'properties'");
    expect_err("{\"anyOf\":[{}],\"enum\":[1]}", NS_ERR_UNSUPPORTED, "combined with");
    expect_err("{\"anyOf\":[]}", NS_ERR_INVALID, "'anyOf' at '#' must be a non-empty array");
    expect_err("{\"oneOf\":{}}", NS_ERR_INVALID, "'oneOf' at '#'");
    expect_err("{\"enum\":[]}", NS_ERR_INVALID, "'enum' at '#' must be a non-empty array");
    expect_err("{\"type\":\"array\",\"items\":[{}]}", NS_ERR_UNSUPPORTED, "tuple");
    expect_err("{\"type\":\"array\",\"minItems\":-1}", NS_ERR_INVALID, "'minItems' at '#' must be a non-negative");
    expect_err("{\"type\":\"array\",\"maxItems\":1.5}", NS_ERR_INVALID, "'maxItems'");
    expect_err("{\"type\":\"array\",\"maxItems\":100000}", NS_ERR_UNSUPPORTED, "above 1024");
    expect_err("{\"type\":\"string\",\"minLength\":3,\"maxLength\":2}", NS_ERR_INVALID, "no value can match");
    expect_err("{\"type\":\"object\",\"properties\":[]}", NS_ERR_INVALID, "'properties' at '#' must be an object");
    expect_err("{\"type\":\"object\",\"required\":\"a\"}", NS_ERR_INVALID, "'required' at '#'");
    expect_err("{\"type\":\"object\",\"properties\":{},\"required\":[1]}", NS_ERR_INVALID, "'required' at '#'");
    expect_err("{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}", NS_ERR_UNSUPPORTED,
               "required property 'b'");
    expect_err("{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}}", NS_ERR_UNSUPPORTED,
               "'additionalProperties' at '#'");
    expect_err("{\"properties\":{\"a\":{\"type\":\"bogus\"}}}", NS_ERR_INVALID, "'#/properties/a'");
    expect_err("{\"items\":{\"items\":{\"pattern\":\"x\"}}}", NS_ERR_UNSUPPORTED, "'#/items/items'");
    expect_err("{\"anyOf\":[{},{\"uniqueItems\":true}]}", NS_ERR_UNSUPPORTED, "'#/anyOf/1'");

    /* nesting beyond the limit */
    char deep[2048] = "";
    size_t n = 0;
    for (int i = 0; i < JSONSCHEMA_MAX_DEPTH + 2; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{\"items\":");
    n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{}");
    for (int i = 0; i < JSONSCHEMA_MAX_DEPTH + 2; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "}");
    expect_err(deep, NS_ERR_UNSUPPORTED, "nested deeper than 64");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_objects),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
