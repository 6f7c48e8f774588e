/*
 * jsonschema.h — a JSON Schema (the subset OpenAI's structured outputs use) → a GBNF
 * grammar for llama.cpp's grammar sampler.
 *
 * Why here and not in engine/: the conversion is a pure text transform of a request body
 * (cJSON in, GBNF text out) that needs nothing from llama.cpp; the API layer converts,
 * reports schema errors as 400s naming the keyword (or the batch line's error) before any
 * work is scheduled, and the engine only ever sees a grammar string
 * (engine_request.grammar). The engine's grammar sampler is what enforces it.
 *
 * DESIGN
 * Every schema node becomes one rule ("s<N>"); $ref targets get their rule once, named
 * before their body is generated, so recursive schemas become recursive rules. The
 * grammar is built so that everything it accepts validates against the schema:
 *   - objects list their properties in declaration order; required ones always appear,
 *     optional ones may be left out; no property outside `properties` is ever produced
 *     (valid whether or not additionalProperties is false). An object schema without
 *     `properties` whose additionalProperties is not false is any JSON object.
 *   - arrays honour items, minItems, maxItems; strings minLength, maxLength.
 *   - enum / const become the exact JSON text of their values.
 *   - anyOf / oneOf become alternatives (oneOf validates when its branches are disjoint,
 *     which the grammar cannot check: documented in docs/API.md).
 *   - numbers and integers have bounded digit counts (16 significant, 2 exponent), so a
 *     random model cannot run on forever inside one and JSON parsers read them finite.
 *   - whitespace is allowed only inside containers and is bounded (at most 20 indent
 *     characters per newline); nothing may follow the root value, so the sampler allows
 *     only end-of-generation once the value is complete.
 * Any keyword outside the supported set (pattern, format, minimum, allOf, ...) is refused
 * with NS_ERR_UNSUPPORTED naming it and where it is ("'pattern' at '#/properties/a'"),
 * since honouring it silently could not be promised.
 *
 * THREADS: none; reentrant.
 * OWNERSHIP: the schema is only read; *out is yours to free(3).
 */
#ifndef NS_API_JSONSCHEMA_H
#define NS_API_JSONSCHEMA_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define JSONSCHEMA_MAX_DEPTH 64      /* schema nesting (and $ref chains) */
#define JSONSCHEMA_MAX_REPEAT 1024   /* largest minItems/maxItems/minLength/maxLength */
#define JSONSCHEMA_MAX_GRAMMAR (4u << 20)

/* Convert `schema` (an object, or the boolean true) to a grammar whose start rule is
 * "root". 0 ok with *out set; else NS_ERR_UNSUPPORTED (a keyword or value we cannot
 * honour) or NS_ERR_INVALID (not a valid schema: wrong types, dangling $ref), err saying
 * what and where, *out NULL. NS_ERR_TOO_LARGE when the grammar would exceed
 * JSONSCHEMA_MAX_GRAMMAR, NS_ERR_NOMEM when out of memory. */
int jsonschema_to_gbnf(const cJSON *schema, char **out, char *err, size_t errlen);

#endif
