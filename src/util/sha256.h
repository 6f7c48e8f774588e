/*
 * sha256.h — SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), computed by Debian's nettle
 * (already loaded through GnuTLS), not by our own code: identifiers clients expect as
 * SHA-256 digests (the Ollama API's model digests), the API keys kept in the store
 * (cli/keys.c: a key is 143 random bits, so an unsalted hash cannot be brute-forced and a
 * lookup by hash needs no per-key salt), and webhook signatures (Standard Webhooks:
 * HMAC-SHA256 over "id.timestamp.body").
 */
#ifndef NS_UTIL_SHA256_H
#define NS_UTIL_SHA256_H

#include <stddef.h>

/* the 32-byte digest of data */
void sha256_digest_of(const void *data, size_t n, unsigned char out[32]);
/* the same as 64 lowercase hex digits and a NUL into out */
void sha256_hex(const void *data, size_t n, char out[65]);
/* the digest of a whole file as 64 lowercase hex digits (read in 1 MiB pieces, so any size);
 * 0, or NS_ERR_IO with errno set (the model store verifies downloads with it) */
int sha256_file_hex(const char *path, char out[65]);
/* HMAC-SHA256 of data under key */
void sha256_hmac(const void *key, size_t key_len, const void *data, size_t n, unsigned char out[32]);

#endif
