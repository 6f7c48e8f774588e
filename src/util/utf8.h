/*
 * utf8.h — UTF-8 checks for text that crosses a trust boundary: batch input files
 * (must be UTF-8) and model output (token pieces can split a character, and a random
 * model can emit any bytes; JSON output must still be valid UTF-8).
 */
#ifndef NS_UTIL_UTF8_H
#define NS_UTIL_UTF8_H

#include <stddef.h>

struct buf;

/* length of the longest valid UTF-8 prefix of s[0..n) (== n when all valid) */
size_t utf8_valid_prefix(const char *s, size_t n);
/* bytes at the end of s[0..n) that start a multi-byte character not yet complete
 * (0..3); callers streaming text hold these back until more arrives */
size_t utf8_incomplete_tail(const char *s, size_t n);
/* rewrite s in place replacing each invalid sequence by U+FFFD; returns the new length.
 * s must have room: the result can grow by 2 bytes per invalid byte, so the caller
 * passes cap; when it would not fit, invalid bytes become '?' instead. */
size_t utf8_sanitize(char *s, size_t n, size_t cap);
/* s (malloc'ed, NUL-terminated; NULL passes through) with every invalid sequence replaced
 * by U+FFFD: the same pointer when it was valid, else a reallocated one (or, without the
 * memory, '?' in place). For JSON text about to leave the process (a response, an SSE
 * event, a result line): cJSON copies string bytes as they are, and structure is ASCII,
 * so this makes any printed JSON valid UTF-8 without changing what it means otherwise. */
char *utf8_fix(char *s);
/* Streaming text kept valid UTF-8: b's bytes from `clean` on (clean <= b->len, a character
 * boundary) are checked, but for a character still incomplete at the very end (held back
 * until the next piece completes it), and each invalid sequence is replaced by U+FFFD in
 * place ('?' when the buf cannot grow). Returns the new clean offset: b->p[0..it) is valid
 * UTF-8 and never changes again, so it may be sent. */
size_t utf8_buf_clean(struct buf *b, size_t clean);

#endif
