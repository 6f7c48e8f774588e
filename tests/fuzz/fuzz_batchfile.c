/*
 * fuzz_batchfile.c — libFuzzer target: the OpenAI Batch input validator (proto/batchfile).
 *
 * The input is a whole batch file. Its first byte (when there is one) picks the
 * parameters a server would pass, so every branch is reached: one model per file or
 * any, a fixed endpoint or any, a model check, a small error cap. After parsing, the
 * prefix-grouped running order and the errors object are built too, and every valid
 * line's body goes through the OpenAI or Anthropic request parser, as it does when it
 * runs (sched.c).
 */
#include "../../src/proto/batchfile.h"
#include "../../src/proto/anthropic.h"
#include "../../src/proto/oai.h"
#include "fuzz.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool model_is_m(void *ud, const char *model)
{
    (void)ud;
    return strcmp(model, "m") == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t mode;
    size_t n;
    char *copy = fuzz_input(data, size, 1, &mode, &n);
    if (!copy)
        return 0;
    struct batchfile_params p = batchfile_default_params();
    p.max_bytes = 1u << 20;
    p.max_lines = 2000;
    if (mode & 1) {
        p.model_ok = model_is_m;
        p.served_models = "'m'";
    }
    p.one_model = mode & 2;
    if (mode & 4)
        p.endpoint = "/v1/chat/completions";
    if (mode & 8)
        p.max_errors = 3;
    struct batchfile *bf = NULL;
    char err[256];
    if (batchfile_parse(copy, n, &p, &bf, err, sizeof(err)) == 0) {
        size_t *order = batchfile_prefix_order(bf, mode & 16);
        free(order);
        cJSON *ej = batchfile_errors_json(bf, p.max_errors);
        cJSON_Delete(ej);
        /* every invalid line is kept, whatever the listing cap */
        if (bf->n_errors != bf->n_invalid)
            __builtin_trap();
        for (size_t i = 0; i < bf->n_lines && i < 64; i++) {
            const struct batchfile_line *l = &bf->lines[i];
            cJSON *root = cJSON_ParseWithLength(bf->data + l->off, l->len);
            cJSON *body = cJSON_DetachItemFromObjectCaseSensitive(root, "body");
            struct oai_request r;
            struct oai_error oe;
            /* the parser takes body over, and releases it on failure too */
            int rc = !body                                 ? -1
                     : l->url == BATCHFILE_URL_MESSAGES ? anthropic_request_from_json(body, &r, &oe)
                                                        : oai_request_from_json(body, l->url == BATCHFILE_URL_CHAT, &r, &oe);
            if (rc == 0)
                oai_request_release(&r);
            cJSON_Delete(root);
        }
        batchfile_free(bf);
    }
    free(copy);
    return 0;
}
