/*
 * sha256.c — see sha256.h: thin calls into nettle.
 */
#include "sha256.h"
#include "status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <nettle/hmac.h>
#include <nettle/sha2.h>

void sha256_digest_of(const void *data, size_t n, unsigned char out[32])
{
    struct sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, n, data);
    sha256_digest(&c, SHA256_DIGEST_SIZE, out);
}

static void sha256_to_hex(const unsigned char d[32], char out[65])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = '\0';
}

void sha256_hex(const void *data, size_t n, char out[65])
{
    unsigned char d[32];
    sha256_digest_of(data, n, d);
    sha256_to_hex(d, out);
}

int sha256_file_hex(const char *path, char out[65])
{
    FILE *f = fopen(path, "rb");
    unsigned char *chunk = malloc(1u << 20);
    int rc = NS_OK;
    if (!f || !chunk) {
        rc = NS_ERR_IO;
        goto out;
    }
    struct sha256_ctx c;
    sha256_init(&c);
    size_t n;
    while ((n = fread(chunk, 1, 1u << 20, f)) > 0)
        sha256_update(&c, n, chunk);
    if (ferror(f)) {
        rc = NS_ERR_IO;
        goto out;
    }
    unsigned char d[32];
    sha256_digest(&c, SHA256_DIGEST_SIZE, d);
    sha256_to_hex(d, out);
out:
    if (!chunk)
        errno = ENOMEM;
    free(chunk);
    if (f)
        fclose(f);
    return rc;
}

void sha256_hmac(const void *key, size_t key_len, const void *data, size_t n, unsigned char out[32])
{
    struct hmac_sha256_ctx c;
    hmac_sha256_set_key(&c, key_len, key);
    hmac_sha256_update(&c, n, data);
    hmac_sha256_digest(&c, SHA256_DIGEST_SIZE, out);
}
