/*
 * fuzz_utf8.c — every byte nightshift emits as JSON is valid UTF-8 (issue 27.12), whatever
 * bytes came in. The mode byte picks the path:
 *   0: the input as a string value and a key of an object, printed the way responses are
 *      (utf8_fix over cJSON's print): valid UTF-8, and it parses back;
 *   1: the input as an error message in each dialect's error shape (OpenAI, Anthropic,
 *      Ollama, Gemini), likewise;
 *   2: the input streamed in pieces (sizes from the input itself) through utf8_buf_clean,
 *      as the engine streams token pieces: every delta valid on its own, nothing sent ever
 *      rewritten, and the deltas plus the sanitized rest are the final text.
 */
#include "fuzz.h"

#include "../../src/proto/anthropic.h"
#include "../../src/proto/gemini.h"
#include "../../src/proto/oai.h"
#include "../../src/proto/ollama.h"
#include "../../src/util/buf.h"
#include "../../src/util/status.h"
#include "../../src/util/utf8.h"

#include <cjson/cJSON.h>

static void check_printed(cJSON *o)
{
    char *t = utf8_fix(cJSON_PrintUnformatted(o));
    cJSON_Delete(o);
    if (!t)
        return;
    size_t n = strlen(t);
    if (utf8_valid_prefix(t, n) != n)
        __builtin_trap();
    cJSON *back = cJSON_Parse(t);
    if (!back)
        __builtin_trap();
    cJSON_Delete(back);
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t mode;
    size_t n;
    char *in = fuzz_input(data, size, 1, &mode, &n);
    if (!in)
        return 0;
    char *z = malloc(n + 1); /* as a C string (up to its first NUL) */
    if (!z) {
        free(in);
        return 0;
    }
    memcpy(z, in, n);
    z[n] = '\0';
    switch (mode % 3) {
    case 0: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "v", z);
        cJSON_AddStringToObject(o, z, "k");
        check_printed(o);
        break;
    }
    case 1:
        check_printed(oai_error_body(NS_ERR_INVALID, z, "p", NULL));
        check_printed(anthropic_error(NS_ERR_NOT_FOUND, z));
        check_printed(ollama_error(z));
        check_printed(gemini_error_line(z, NS_ERR_INVALID, z));
        break;
    default: {
        struct buf b;
        buf_init(&b, 1u << 20);
        struct buf sent;
        buf_init(&sent, 1u << 22);
        size_t clean = 0, at = 0, i = 0;
        while (at < n) {
            size_t piece = 1 + (size_t)((uint8_t)in[i++ % n] % 7); /* token pieces are short */
            if (piece > n - at)
                piece = n - at;
            if (buf_append(&b, in + at, piece))
                break;
            at += piece;
            size_t before = clean;
            clean = utf8_buf_clean(&b, clean);
            if (clean < before || clean > b.len)
                __builtin_trap();
            /* the delta: valid on its own */
            if (utf8_valid_prefix(b.p + before, clean - before) != clean - before)
                __builtin_trap();
            buf_append(&sent, b.p + before, clean - before);
            /* nothing sent is ever rewritten */
            if (sent.len && memcmp(sent.p, b.p, sent.len) != 0)
                __builtin_trap();
        }
        /* the end: what is left is sanitized (as engine_finish does) after what was sent */
        if (b.p && buf_reserve(&b, b.len * 3 + 4) == 0) {
            b.len = utf8_sanitize(b.p, b.len, b.cap - 1);
            b.p[b.len] = '\0';
            if (utf8_valid_prefix(b.p, b.len) != b.len || (sent.len && memcmp(sent.p, b.p, sent.len) != 0))
                __builtin_trap();
        }
        buf_release(&b);
        buf_release(&sent);
        break;
    }
    }
    free(z);
    free(in);
    return 0;
}
