/*
 * base64.h — RFC 4648 base64 (standard alphabet, padded), for webhook secrets and
 * signatures (Standard Webhooks).
 */
#ifndef NS_UTIL_BASE64_H
#define NS_UTIL_BASE64_H

#include <stddef.h>

/* encode n bytes into out (room for 4*((n+2)/3)+1 bytes, NUL-terminated); returns its length */
size_t base64_encode(const unsigned char *in, size_t n, char *out);
/* decode a padded or unpadded string into out (room for 3*strlen/4 bytes); the length, or
 * (size_t)-1 when in is not base64 */
size_t base64_decode(const char *in, unsigned char *out);

#endif
