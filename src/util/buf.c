/*
 * buf.c — see buf.h. Growth doubles up to the cap.
 */
#include "buf.h"
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
    b->p = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

void buf_release(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

static int buf_grow(struct buf *b, size_t need)
{
    if (need > b->max)
        return NS_ERR_TOO_LARGE;
    if (need + 1 <= b->cap)
        return NS_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need + 1)
        cap *= 2;
    if (b->max < SIZE_MAX && cap > b->max + 1) /* max + 1 would wrap to 0: a free */
        cap = b->max + 1;
    char *p = realloc(b->p, cap);
    if (!p)
        return NS_ERR_NOMEM;
    b->p = p;
    b->cap = cap;
    return NS_OK;
}

int buf_append(struct buf *b, const void *data, size_t n)
{
    if (n > b->max - b->len)
        return NS_ERR_TOO_LARGE;
    int rc = buf_grow(b, b->len + n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return NS_OK;
}

int buf_appends(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_appendf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NS_ERR_INTERNAL;
    if ((size_t)n > b->max - b->len)
        return NS_ERR_TOO_LARGE;
    int rc = buf_grow(b, b->len + (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return NS_OK;
}

int buf_reserve(struct buf *b, size_t n)
{
    int rc = buf_grow(b, n);
    if (rc == NS_OK && b->p && b->len == 0)
        b->p[0] = '\0';
    return rc;
}

void buf_truncate(struct buf *b, size_t n)
{
    if (n < b->len) {
        b->len = n;
        b->p[n] = '\0';
    }
}

char *buf_detach(struct buf *b)
{
    char *p = b->p;
    if (!p)
        p = calloc(1, 1);
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}
