/*
 * fuzz_gemini.c — libFuzzer target: Gemini batch files converted to OpenAI batch lines
 * (proto/gemini, `nightshift run --input-format gemini`), then validated as the run does.
 */
#include "../../src/proto/batchfile.h"
#include "../../src/proto/gemini.h"
#include "fuzz.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t mode;
    size_t n;
    char *copy = fuzz_input(data, size, 0, &mode, &n);
    if (!copy)
        return 0;
    struct buf out;
    buf_init(&out, n * 2 + 1024); /* as run.c sizes it */
    struct gemini_errors errs;
    memset(&errs, 0, sizeof(errs));
    if (gemini_convert(copy, n, "m", &out, &errs) == 0) {
        struct batchfile_params p = batchfile_default_params();
        struct batchfile *bf = NULL;
        char err[256];
        if (batchfile_parse(out.p ? out.p : "", out.len, &p, &bf, err, sizeof(err)) == 0) {
            for (size_t i = 0; i < errs.n; i++)
                batchfile_add_external_error(bf, &p, errs.v[i].line, errs.v[i].code, errs.v[i].param, errs.v[i].key,
                                             errs.v[i].message);
            batchfile_free(bf);
        }
    }
    gemini_errors_release(&errs);
    buf_release(&out);
    free(copy);
    return 0;
}
