/*
 * dialect.c — see dialect.h: the two lookups, the one place that reads endpoint and path
 * names to pick a dialect.
 */
#include "dialect.h"

#include <stdio.h>
#include <string.h>

const struct dialect *dialect_of_path(const char *path)
{
    if (strncmp(path, "/v1/messages", 12) == 0)
        return &dialect_anthropic;
    if (strncmp(path, "/api/", 5) == 0 || strcmp(path, "/") == 0)
        return &dialect_ollama;
    if (strncmp(path, "/v1/responses", 13) == 0)
        return &dialect_responses;
    return &dialect_openai;
}

const struct dialect *dialect_of_batch(const char *endpoint, bool gemini)
{
    if (endpoint && strcmp(endpoint, dialect_anthropic.batch_endpoint) == 0)
        return &dialect_anthropic;
    if (endpoint && strcmp(endpoint, "/v1/responses") == 0)
        return &dialect_responses;
    return gemini ? &dialect_gemini : &dialect_openai;
}

void dialect_model_missing(char *out, size_t n, const char *model)
{
    snprintf(out, n, "The model '%.100s' does not exist or you do not have access to it.", model ? model : "");
}

bool dialect_model_matches(const struct dialect *d, const char *served, const char *name)
{
    if (!name)
        return false;
    return d->model_matches ? d->model_matches(served, name) : strcmp(served, name) == 0;
}
