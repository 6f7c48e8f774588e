/*
 * fuzz_ollama.c — libFuzzer target: Ollama /api/chat, /api/generate, /api/show, /api/embed
 * and /api/embeddings bodies (proto/ollama). The first byte picks the route.
 */
#include "../../src/proto/ollama.h"
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t mode;
    size_t n;
    char *copy = fuzz_input(data, size, 1, &mode, &n);
    if (!copy)
        return 0;
    struct oai_error err;
    if (mode & 4) {
        struct oai_request r;
        if (ollama_embed_parse(copy, n, mode & 1, &r, &err) == 0) {
            size_t walked = 0;
            for (int i = 0; i < r.req.n_embed; i++)
                walked += strlen(r.req.embed[i].text);
            if (walked == SIZE_MAX) /* keeps the reads */
                abort();
            oai_request_release(&r);
        }
    } else if (mode & 2) {
        char model[128];
        (void)ollama_model_field(copy, n, model, sizeof(model), &err);
    } else {
        struct oai_request r;
        struct ollama_extra ox;
        if (ollama_request_parse(copy, n, mode & 1, &r, &ox, &err) == 0) {
            (void)ollama_check_num_ctx(&ox, 4096, &err);
            oai_request_release(&r);
        }
    }
    free(copy);
    return 0;
}
