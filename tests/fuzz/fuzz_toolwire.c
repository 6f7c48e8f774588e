/*
 * fuzz_toolwire.c — nightshift's fallback tool-call format (engine/toolwire.h) reading what a
 * model wrote, whatever it wrote: toolwire_parse over the input (cut and not), and the same
 * input streamed in pieces (sizes from the input itself) through toolwire_stream. Checked:
 * nothing crashes or leaks; every call has a name and arguments; the stream's deltas (content
 * and calls) are what a whole parse gives, so a streaming client and a non-streaming one read
 * the same answer.
 */
#include "fuzz.h"

#include "../../src/engine/toolwire.h"
#include "../../src/util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool cut = data[0] & 1;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    struct chat_msg whole;
    if (toolwire_parse(text, n, cut, &whole) != 0)
        return 0;
    for (int i = 0; i < whole.n_calls; i++)
        if (!whole.calls[i].id || !whole.calls[i].name || !whole.calls[i].arguments)
            __builtin_trap();

    struct toolwire_stream *s = toolwire_stream_new();
    struct buf content;
    buf_init(&content, 1u << 24);
    int calls = 0;
    size_t at = 0, step = 1 + (data[0] >> 1) % 13;
    bool ok = s != NULL;
    while (ok) {
        size_t k = at + step <= n ? step : n - at;
        bool final = at + k >= n;
        const struct chat_diff *d;
        int nd;
        ok = toolwire_stream_feed(s, text + at, k, final, cut, &d, &nd) == 0;
        for (int i = 0; ok && i < nd; i++) {
            if (d[i].content)
                buf_appends(&content, d[i].content);
            if (d[i].call_index >= 0) {
                if (d[i].call_index != calls || !d[i].call_id || !d[i].call_name)
                    __builtin_trap();
                calls++;
            }
        }
        at += k;
        if (final)
            break;
    }
    if (ok) {
        struct chat_msg taken;
        toolwire_stream_take(s, &taken);
        /* the stream and the whole parse read the same calls */
        if (taken.content && (taken.n_calls != whole.n_calls || calls != whole.n_calls))
            __builtin_trap();
        for (int i = 0; taken.content && i < taken.n_calls; i++)
            if (strcmp(taken.calls[i].name, whole.calls[i].name) || strcmp(taken.calls[i].arguments, whole.calls[i].arguments))
                __builtin_trap();
        chat_msg_release(&taken);
    }
    buf_release(&content);
    toolwire_stream_free(s);
    chat_msg_release(&whole);
    return 0;
}
