/*
 * status.h — the one status enum of nightshift, and the one table that maps each
 * status to an HTTP code and an OpenAI error object (type, code).
 *
 * Every fallible function returns an `int` that is one of these (0 = NS_OK).
 * Where a status reaches a client (an HTTP answer, a line of a batch error file),
 * status_http() and status_type() say how; the message is always the caller's,
 * specific to what failed ("line 12: body.model is missing").
 */
#ifndef NS_UTIL_STATUS_H
#define NS_UTIL_STATUS_H

#include <stdbool.h>

enum ns_status {
    NS_OK = 0,
    NS_ERR_INVALID,          /* bad input from the user: 400 invalid_request_error */
    NS_ERR_CONTEXT,          /* prompt + max tokens over the context: 400 context_length_exceeded */
    NS_ERR_UNSUPPORTED,      /* a value we do not support (yet): 400 invalid_request_error */
    NS_ERR_AUTH,             /* 401 authentication_error */
    NS_ERR_NOT_FOUND,        /* 404 not_found_error */
    NS_ERR_MODEL_NOT_FOUND,  /* 404 model_not_found */
    NS_ERR_CONFLICT,         /* 409 */
    NS_ERR_TOO_LARGE,        /* 413 */
    NS_ERR_MEDIA_TYPE,       /* 415 */
    NS_ERR_RATE_LIMIT,       /* 429 */
    NS_ERR_NOMEM,            /* 500 server_error */
    NS_ERR_IO,               /* 500 server_error: disk, store */
    NS_ERR_ENGINE,           /* 500 server_error: llama.cpp failed */
    NS_ERR_UNAVAILABLE,      /* 503 */
    NS_ERR_CANCELLED,        /* no HTTP answer: batch_cancelled */
    NS_ERR_EXPIRED,          /* no HTTP answer: batch_expired */
    NS_ERR_TIMEOUT,          /* no HTTP answer: request_timeout */
    NS_ERR_INTERNAL,         /* 500 server_error: a bug */
    NS_ERR_UPSTREAM,         /* 502 server_error: an upstream backend failed (after retries) */
    NS_ERR_QUOTA_REQUESTS,   /* 429 a key's requests-per-minute limit (http/quota.h) */
    NS_ERR_QUOTA_TOKENS,     /* 429 a key's tokens-per-day or enqueued batch tokens limit */
    NS_ERR_METHOD,           /* 405 a path that exists, with a method it does not take */
    NS_ERR_FORBIDDEN,        /* 403 a Host or Origin this server does not serve */
    NS_ERR_BUSY,             /* 503 the store is contended (locked, a serialization failure or a
                              * deadlock) and stayed so through the store's own retries: try again */
    NS_STATUS_COUNT_
};

/* HTTP status for a status; 0 for the ones that have no HTTP answer (cancelled, ...). */
int status_http(int st);
/* OpenAI error "type": invalid_request_error, not_found_error, server_error, ... */
const char *status_type(int st);
/* OpenAI error "code", or NULL when the type says it all. For the no-HTTP-answer
 * statuses this is the batch error code (batch_cancelled, batch_expired, request_timeout). */
const char *status_code(int st);
/* short name for logs */
const char *status_name(int st);
/* may the same request pass if sent again (429, 5xx)? The rest (400, 404, 409, ...) are
 * final: their answers say so (x-should-retry: false), so the SDKs do not retry them */
bool status_retryable(int st);

#endif
