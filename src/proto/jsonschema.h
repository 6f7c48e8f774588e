/*
 * jsonschema.h — a JSON Schema (OpenAI response_format json_schema, tool parameters,
 * Ollama format) -> a GBNF grammar, by llama.cpp's own converter (common's
 * json_schema_to_grammar, through engine/chat.h), with a guard in front of it.
 *
 * Why a guard: llama.cpp's converter silently ignores what it does not read (not, if/then/
 * else, multipleOf, uniqueItems, patternProperties, number bounds, most formats, keywords
 * beside $ref or anyOf, ...) and replaces a regex pattern it cannot translate by "any string"
 * with only a warning on stderr. A grammar that ignores a constraint produces outputs that
 * do not validate, so the API layer refuses such a schema instead (a 400 naming the keyword
 * and where it is: "'not' at '#/properties/a' is not supported: ..."), before any work is
 * scheduled; the engine only ever sees a grammar string (engine_request.grammar).
 *
 * DESIGN
 * A copy of the schema is walked the way common/json-schema.cpp reads it ($ref alone, then
 * oneOf/anyOf alone, a type array as one reading per type, const, enum, then the kind that
 * type or the structural keywords pick). On each node every keyword must be an annotation
 * (title, description, default, examples, $schema, $id, $comment, deprecated, readOnly,
 * writeOnly, $defs, definitions), one that kind honours, or one that constrains only another
 * type than the node's (maxLength on an integer). A few things are rewritten first so that
 * what is accepted validates:
 *   - format: llama.cpp enforces date, time, date-time and uuid only (and date too loosely);
 *     email, uri/url, hostname, ipv4, ipv6, uuid, date, time, date-time and duration get a
 *     conservative pattern llama.cpp translates, every match of which is valid for the
 *     format; zod 4's own pattern for the format is replaced by it. Any other format, or a
 *     format beside a pattern of the schema's own, is refused.
 *   - pattern: \d and \w become classes; chat_schema_pattern_ok says whether llama.cpp
 *     translates the rest, else a 400. A length beside a pattern is refused (llama.cpp
 *     drops it).
 *   - integer bounds are folded to inclusive integers (exclusive*, fractions); a bounded
 *     number is narrowed to the integers in its range (llama.cpp bounds only integers);
 *     bounds beyond +-1e18 are dropped, so zod's +-2^53-1 are kept and honoured.
 *   - "$ref": "#" (zod's recursion) points at a $defs copy of the root, since llama.cpp
 *     resolves only "#/..." references; `true` sub-schemas become {}.
 *   - allOf is accepted only over objects with properties (all that llama.cpp merges).
 * oneOf is read as anyOf: it validates when its branches are disjoint (documented in
 * docs/API.md).
 *
 * THREADS: none; reentrant.
 * OWNERSHIP: the schema is only read; *out is yours to free(3), *held to cJSON_Delete.
 */
#ifndef NS_API_JSONSCHEMA_H
#define NS_API_JSONSCHEMA_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define JSONSCHEMA_MAX_DEPTH 64      /* schema nesting (and $ref chains) */
#define JSONSCHEMA_MAX_REPEAT 1024   /* largest minItems/maxItems/minLength/maxLength */
#define JSONSCHEMA_MAX_GRAMMAR (4u << 20)

/* Convert `schema` (an object, or the boolean true) to a grammar whose start rule is
 * "root". 0 ok with *out set; else NS_ERR_UNSUPPORTED (a keyword or value llama.cpp cannot
 * honour, named with its path) or NS_ERR_INVALID (not a valid schema: wrong types, dangling
 * $ref, a bad regex; llama.cpp's words), err saying what and where, *out NULL. NS_ERR_TOO_LARGE when the grammar would exceed
 * JSONSCHEMA_MAX_GRAMMAR, NS_ERR_NOMEM when out of memory. */
int jsonschema_to_gbnf(const cJSON *schema, char **out, char *err, size_t errlen);

/* jsonschema_to_gbnf, and *held (when held is not NULL; NULL on error) the schema the grammar
 * was made from: the copy with the rewrites above. A tool's parameters reach llama.cpp's
 * tool-call grammar (its chat formats, engine/toolwire) as a schema, not a grammar, so they
 * must be given as this: as sent, formats, number bounds and "#" would not be held. */
int jsonschema_convert(const cJSON *schema, char **out, cJSON **held, char *err, size_t errlen);

#endif
