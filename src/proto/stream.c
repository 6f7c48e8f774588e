/*
 * stream.c — see stream.h.
 */
#include "stream.h"

#include "../util/utf8.h"

#include <stdlib.h>
#include <string.h>

void stream_init(struct stream *s, size_t max)
{
    memset(s, 0, sizeof(*s));
    buf_init(&s->pending, max);
    buf_init(&s->acc, max);
    s->block = -1;
    s->cached = -1;
}

void stream_release(struct stream *s)
{
    buf_release(&s->pending);
    buf_release(&s->acc);
}

int stream_pass_pending(struct stream *s, struct buf *out)
{
    if (s->pending.len) {
        buf_append(out, s->pending.p, s->pending.len);
        buf_reset(&s->pending);
        return STREAM_MORE;
    }
    return s->res ? STREAM_END : STREAM_WAIT;
}

void stream_sse(struct buf *out, const char *name, cJSON *o)
{
    char *t = utf8_fix(cJSON_PrintUnformatted(o));
    cJSON_Delete(o);
    if (!t)
        return;
    if (name)
        buf_appendf(out, "event: %s\n", name);
    buf_appends(out, "data: ");
    buf_appends(out, t);
    buf_appends(out, "\n\n");
    free(t);
}

void stream_ndjson(struct buf *out, cJSON *o)
{
    char *t = utf8_fix(cJSON_PrintUnformatted(o));
    cJSON_Delete(o);
    if (!t)
        return;
    buf_appends(out, t);
    buf_appends(out, "\n");
    free(t);
}
