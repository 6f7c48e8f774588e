/*
 * dialect.c — see dialect.h: the two lookups, the one place that reads endpoint and path
 * names to pick a dialect.
 */
#include "dialect.h"

#include <string.h>

const struct dialect *dialect_of_path(const char *path)
{
    if (strncmp(path, "/v1/messages", 12) == 0)
        return &dialect_anthropic;
    if (strncmp(path, "/api/", 5) == 0 || strcmp(path, "/") == 0)
        return &dialect_ollama;
    return &dialect_openai;
}

const struct dialect *dialect_of_batch(const char *endpoint, bool gemini)
{
    if (endpoint && strcmp(endpoint, dialect_anthropic.batch_endpoint) == 0)
        return &dialect_anthropic;
    return gemini ? &dialect_gemini : &dialect_openai;
}
