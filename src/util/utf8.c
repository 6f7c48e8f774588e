/*
 * utf8.c — strict UTF-8 (RFC 3629: no overlongs, no surrogates, max U+10FFFF).
 */
#include "utf8.h"

#include "buf.h"

#include <stdlib.h>
#include <string.h>

/* length of the valid sequence at s (1..4), 0 if invalid or truncated */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80)
            return 0;
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && s[1] < 0xA0)
            return 0; /* overlong */
        if (c == 0xED && s[1] >= 0xA0)
            return 0; /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90)
            return 0;
        if (c == 0xF4 && s[1] >= 0x90)
            return 0;
        return 4;
    }
    return 0;
}

size_t utf8_valid_prefix(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            unsigned long long w;
            memcpy(&w, u + i, 8);
            if (w & 0x8080808080808080ULL)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        size_t l = utf8_seq_len(u + i, n - i);
        if (!l)
            return i;
        i += l;
    }
    return n;
}

size_t utf8_incomplete_tail(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    /* look back at most 3 bytes for a lead byte whose sequence runs past the end */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned c = u[n - back];
        if ((c & 0xC0) == 0x80)
            continue; /* continuation: keep looking for the lead */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

size_t utf8_sanitize(char *s, size_t n, size_t cap)
{
    size_t v = utf8_valid_prefix(s, n);
    if (v == n)
        return n;
    unsigned char *u = (unsigned char *)s;
    size_t i = v, o = v;
    /* count the room needed first: each invalid byte becomes 3 bytes */
    size_t extra = 0;
    for (size_t j = v; j < n;) {
        size_t l = utf8_seq_len(u + j, n - j);
        if (l) {
            j += l;
        } else {
            extra += 2;
            j++;
        }
    }
    int wide = n + extra <= cap;
    if (!wide) {
        for (; i < n;) {
            size_t l = utf8_seq_len(u + i, n - i);
            if (l) {
                memmove(u + o, u + i, l);
                o += l;
                i += l;
            } else {
                u[o++] = '?';
                i++;
            }
        }
        return o;
    }
    /* grow from the back so nothing is overwritten before it is read */
    size_t outlen = n + extra;
    /* forward pass into a scratch layout is simplest: shift tail right first */
    memmove(u + v + extra, u + v, n - v);
    i = v + extra;
    o = v;
    size_t end = n + extra;
    while (i < end) {
        size_t l = utf8_seq_len(u + i, end - i);
        if (l) {
            memmove(u + o, u + i, l);
            o += l;
            i += l;
        } else {
            u[o++] = 0xEF;
            u[o++] = 0xBF;
            u[o++] = 0xBD;
            i++;
        }
    }
    (void)outlen;
    return o;
}

char *utf8_fix(char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    if (utf8_valid_prefix(s, n) == n)
        return s;
    char *w = realloc(s, n * 3 + 1);
    if (w)
        s = w;
    n = utf8_sanitize(s, n, w ? n * 3 : n);
    s[n] = '\0';
    return s;
}

size_t utf8_buf_clean(struct buf *b, size_t clean)
{
    size_t len = b->len;
    if (!b->p || clean >= len)
        return clean;
    size_t end = len - utf8_incomplete_tail(b->p, len);
    if (end <= clean)
        return clean;
    size_t n = end - clean;
    if (utf8_valid_prefix(b->p + clean, n) == n)
        return end;
    char tail[4];
    size_t nt = len - end; /* 0..3 */
    memcpy(tail, b->p + end, nt);
    (void)buf_reserve(b, len + 2 * n + 1); /* without the room, invalid bytes become '?' */
    char *p = b->p + clean;
    size_t m = utf8_sanitize(p, n, b->cap - 1 - clean - nt);
    memcpy(p + m, tail, nt);
    b->len = clean + m + nt;
    b->p[b->len] = '\0';
    return clean + m;
}
