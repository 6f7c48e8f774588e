/*
 * server.h — the HTTP surface of `nightshift serve`: OpenAI-compatible Files, Batches,
 * Chat Completions, Completions and Models, plus /health and /ready, on libmicrohttpd.
 *
 * DESIGN
 * libmicrohttpd runs event-driven: a pool of http_threads threads (default: one per CPU, at
 * least 4), each watching its share of the connections with epoll. A handler must not wait
 * for a model: a non-streaming request whose job is still running suspends its connection
 * (MHD_suspend_connection) and is answered when the job's done() resumes it; a streaming
 * one's content reader suspends when no token is ready and the next token resumes it. So
 * thousands of waiting requests cost no thread, and a forwarded request no thread wake-up
 * of its own. Store reads and file writes still run on the pool threads (short; a 200 MB
 * upload's final fsync holds up the connections of one thread for its duration). Request
 * bodies are read in pieces: JSON bodies into a capped buffer (413 past --max-body),
 * multipart uploads streamed to a temporary file under the data dir (never whole in memory;
 * 413 past --max-file-size).
 *
 * Connections: at most max_connections at once (MHD_OPTION_CONNECTION_LIMIT; more wait in
 * the listen queue).
 *
 * Quotas (quota.h): server_auth() resolves the key's limits (its own, else the defaults of
 * server_params for non-admin keys); real-time calls are admitted or refused before their
 * body is parsed and their tokens counted when they end; batch creates (files, retries,
 * Message Batches, deferred requests) are checked against the key's queue by the estimate
 * of their input. A refusal is a 429 with Retry-After in the route's error shape.
 *
 * Anthropic (/v1/messages...) and Ollama (/api/...) routes share the same engine path;
 * errors are in the shape of the API a path belongs to (OpenAI error object, Anthropic
 * error, Ollama {"error"}), with the HTTP status of util/status.h's table.
 *
 * OWNERSHIP: the server borrows the store, the schedulers and the batch manager; they
 * outlive it.
 */
#ifndef NS_API_SERVER_H
#define NS_API_SERVER_H

#include "../sched/batchmgr.h"
#include "../sched/sched.h"
#include "../store/store.h"
#include "quota.h"

#include <stddef.h>
#include <stdint.h>

struct server;

struct server_params {
    const char *host;            /* default 127.0.0.1 */
    int port;                    /* default 8080; 0 = any free port */
    const char *data_dir;
    const char *api_key;         /* an admin key; NULL: only the store's keys (keys create),
                                    and none at all while the store has none */
    bool no_auth;                /* --no-auth: every request is an admin (loopback only) */
    unsigned max_connections;    /* HTTP connections at once; default 4096 */
    int http_threads;            /* threads serving HTTP; 0 = server_default_threads() */
    size_t max_body;             /* JSON request bodies; default 16 MB */
    size_t max_file;             /* uploads; default 200 MB */
    int64_t message_batch_retention; /* seconds; default 29 days */
    bool webhooks;               /* webhook endpoints are configured: a batch may name its own
                                    metadata.webhook_url */
    const char *tls_cert, *tls_key; /* PEM texts (not paths): HTTPS through libmicrohttpd's
                                    GnuTLS; both NULL = plain HTTP */
    struct quota_limits quota_default; /* limits of non-admin keys that set none of their own
                                    (quota.h; 0 = unlimited, the default) */
    /* guards (httpguard.h, issue 27.8 and 27.10) */
    const char *allowed_hosts;   /* Host names served besides IP literals and localhost
                                    (comma-separated; ".suffix", "*"); NULL none */
    const char *cors_origins;    /* origins allowed cross-origin (comma-separated, "*"); NULL: off */
    unsigned max_per_ip;         /* connections from one address; 0 = max_connections / 4, at least 16 */
    unsigned header_timeout;     /* seconds a new connection has to send a request head; default 10 */
    unsigned idle_timeout;       /* seconds of silence before a connection is closed; default 60 */
    unsigned min_body_rate;      /* bytes/s a request body must average once 10 s old; default 1024; 0 off */
    /* the URLs the server hands out (Message Batches' results_url, issue 31.1) */
    const char *public_url;      /* "https://api.example.com[/prefix]": their base, whatever the
                                    request says; NULL: from the request (httpguard_origin) */
    const char *trusted_proxies; /* addresses or CIDR blocks (comma-separated) whose
                                    X-Forwarded-Proto/-Host are believed; NULL none */
    const char *models_dir;      /* the model store (backend/modelstore.h): POST /api/pull
                                    pulls into it, /api/tags, /api/show and /v1/models list
                                    its models too; NULL none */
};
struct server_params server_default_params(void);

/* Is url a --public-url: http(s)://HOST[:PORT][/PREFIX], no query, fragment or spaces?
 * 0, else NS_ERR_INVALID and err says what is expected */
int server_public_url_check(const char *url, char *err, size_t n);

/* the HTTP threads when none are asked for: one per CPU, at least 4 */
int server_default_threads(void);

int server_start(struct server_params p, struct store *st, struct sched **scheds,
                 int n_scheds, struct batchmgr *bm, struct server **out, char *err, size_t errlen);
/* the port actually bound */
int server_port(const struct server *s);
/* graceful shutdown, step 1: close the listening socket (new connections are refused) and
 * answer every request that starts from now on with 503; requests already started go on.
 * Any thread; idempotent. */
void server_drain(struct server *s);
/* requests started and not yet completed (answered, or their connection closed) */
int server_inflight(struct server *s);
/* close every connection and free the server; a handler still waiting for its scheduler
 * holds this up, so stop the schedulers first (sched_stop) when they must not finish */
void server_stop(struct server *s);

#endif
