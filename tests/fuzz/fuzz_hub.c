/*
 * fuzz_hub.c — what the Hugging Face Hub (or anything at HF_ENDPOINT) answers is untrusted:
 * a listing of any shape through hub_listing_parse (the tree API's array or the model-info
 * object), then the choice of files for a quantization tag, as `nightshift pull` makes it.
 * The mode byte picks the tag: 0 none (the default), 1 "Q4_K_M", 2 "q8_0", else the first
 * file's own tag. Whatever it reads, a chosen file is a .gguf file of that one tag, in split
 * order, and an empty choice explains itself.
 */
#include "fuzz.h"

#include "../../src/backend/hub.h"
#include "../../src/util/status.h"

#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t mode;
    size_t n;
    char *in = fuzz_input(data, size, 1, &mode, &n);
    if (!in)
        return 0;
    struct hub_listing l;
    char err[1200];
    if (hub_listing_parse(in, n, &l, err, sizeof(err)) == NS_OK) {
        const char *tag = mode == 0 ? NULL : mode == 1 ? "Q4_K_M" : mode == 2 ? "q8_0" : l.n ? l.files[0].tag : "";
        int idx[64];
        char got[64];
        err[0] = '\0';
        int k = hub_select(&l, tag, idx, 64, got, sizeof(got), err, sizeof(err));
        if (k == 0 && !err[0])
            __builtin_trap();
        for (int i = 0; i < k; i++) {
            const struct hub_file *f = &l.files[idx[i]];
            size_t pl = strlen(f->path);
            if (idx[i] < 0 || idx[i] >= l.n || pl < 5 || strcasecmp(f->path + pl - 5, ".gguf") != 0 ||
                strcasecmp(f->tag, got) != 0)
                __builtin_trap();
        }
        hub_listing_release(&l);
    }
    free(in);
    return 0;
}
