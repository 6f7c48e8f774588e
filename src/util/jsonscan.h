/*
 * jsonscan.h — what cJSON cannot tell: NUL characters inside JSON strings.
 *
 * cJSON hands strings out as C strings, so "b\u0000x" (or a raw NUL byte) silently
 * becomes "b": a custom_id would be truncated and collide with another, a prompt would
 * lose its tail. The parsers call this on the raw text first and refuse such input with a
 * specific error instead (issue 27.13). It is a lexer only: it assumes nothing about the
 * text being valid JSON, and never reads past n bytes.
 *
 * THREADS: pure function.
 */
#ifndef NS_UTIL_JSONSCAN_H
#define NS_UTIL_JSONSCAN_H

#include <stdbool.h>
#include <stddef.h>

/* The byte offset of the first NUL inside a string of the JSON text s[0..n) (a raw 0x00 byte
 * or a \u0000 escape), or -1 when there is none. When key is not NULL, *in_key tells whether
 * that NUL is in the string value of a top-level member named key (e.g. "custom_id"). */
long jsonscan_nul(const char *s, size_t n, const char *key, bool *in_key);

#endif
