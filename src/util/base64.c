/*
 * base64.c — see base64.h: nettle's codec, with our padding rules around it.
 */
#include "base64.h"

#include <nettle/base64.h>

#include <stdlib.h>
#include <string.h>

size_t base64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t len = BASE64_ENCODE_RAW_LENGTH(n);
    base64_encode_raw(out, n, in); /* padded, standard alphabet */
    out[len] = '\0';
    return len;
}

size_t base64_decode(const char *in, unsigned char *out)
{
    /* nettle wants the padding an unpadded input leaves out */
    size_t n = strlen(in);
    char *padded = malloc(n + 4);
    if (!padded)
        return (size_t)-1;
    memcpy(padded, in, n);
    while (n % 4)
        padded[n++] = '=';
    struct base64_decode_ctx c;
    base64_decode_init(&c);
    size_t got = BASE64_DECODE_LENGTH(n);
    int ok = base64_decode_update(&c, &got, out, n, padded) && base64_decode_final(&c);
    free(padded);
    return ok ? got : (size_t)-1;
}
