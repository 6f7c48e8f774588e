/*
 * buf.h — a growable byte buffer with a hard cap (after curl's dynbuf, git's strbuf).
 *
 * Untrusted input can never grow a buf past `max`: appends beyond it fail with
 * NS_ERR_TOO_LARGE and leave the contents as they were. The contents are always
 * NUL-terminated once anything was appended, so b->p can be used as a C string.
 *
 * Lifecycle: buf_init() allocates nothing; buf_release() frees the storage and
 * leaves an empty buf that may be reused; buf_detach() hands the storage to the
 * caller (free(3) it).
 */
#ifndef NS_UTIL_BUF_H
#define NS_UTIL_BUF_H

#include <stddef.h>

struct buf {
    char *p;      /* NULL until the first append */
    size_t len;   /* bytes used, not counting the NUL */
    size_t cap;   /* bytes allocated */
    size_t max;   /* hard cap on len */
};

void buf_init(struct buf *b, size_t max);
void buf_release(struct buf *b);
/* empty the contents, keep the storage */
void buf_reset(struct buf *b);
int buf_append(struct buf *b, const void *data, size_t n);
int buf_appends(struct buf *b, const char *s);
int buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* make room for n bytes of contents in total (p is then non-NULL) */
int buf_reserve(struct buf *b, size_t n);
/* shorten to n bytes (n <= len) */
void buf_truncate(struct buf *b, size_t n);
/* the storage, NUL-terminated (an empty string when nothing was appended); caller frees;
 * the buf is left empty. NULL on allocation failure. */
char *buf_detach(struct buf *b);

#endif
