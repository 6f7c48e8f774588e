/*
 * sha256.c — see sha256.h: thin calls into nettle.
 */
#include "sha256.h"

#include <nettle/hmac.h>
#include <nettle/sha2.h>

void sha256_digest_of(const void *data, size_t n, unsigned char out[32])
{
    struct sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, n, data);
    sha256_digest(&c, SHA256_DIGEST_SIZE, out);
}

void sha256_hex(const void *data, size_t n, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char d[32];
    sha256_digest_of(data, n, d);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = '\0';
}

void sha256_hmac(const void *key, size_t key_len, const void *data, size_t n, unsigned char out[32])
{
    struct hmac_sha256_ctx c;
    hmac_sha256_set_key(&c, key_len, key);
    hmac_sha256_update(&c, n, data);
    hmac_sha256_digest(&c, SHA256_DIGEST_SIZE, out);
}
