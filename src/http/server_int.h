/*
 * server_int.h — what the files of the HTTP server share, and nobody else sees: the server
 * and request state, the route context, the answer helpers, and each file's handlers for
 * the route table (server.c). One file per subsystem:
 *   server.c     daemon, route table and dispatch, auth, per-request state, health/models
 *   respond.c    answers: JSON (valid UTF-8 always), errors in each API's shape, objects
 *   generate.c   chat, completions, messages, embeddings, Ollama: jobs, waiting, streaming
 *   files.c      uploads and the Files API
 *   batches.c    the Batch API, retries, deferred requests
 *   msgbatches.c Anthropic Message Batches
 *   responses.c  the Responses API's stored and background responses
 *   metrics.c    /metrics, /v1/nightshift/stats, the sampler and the dashboard
 * THREADS: handlers run on MHD's threads; see server.h for the rest.
 */
#ifndef NS_HTTP_SERVER_INT_H
#define NS_HTTP_SERVER_INT_H

#include "server.h"
#include "../util/clock.h"

#include "../backend/backend.h"
#include "../engine/request.h"
#include "../util/buf.h"
#include "../util/durable.h"
#include "../util/sha256.h"
#include "../util/status.h"
#include "../util/utf8.h"
#include "../util/jsonscan.h"
#include "../proto/anthropic.h"
#include "../proto/batchfile.h"
#include "../sched/webhook.h"
#include "../proto/dialect.h"
#include "../proto/stream.h"
#include "dashboard.h"
#include "httpguard.h"
#include "keycache.h"
#include "../proto/oai.h"
#include "../proto/ollama.h"
#include "../proto/responses.h"
#include "quota.h"
#include "../util/log.h"

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include <arpa/inet.h>
#include <stdarg.h>
#include <strings.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


struct server {
    struct server_params p;
    char *data_dir;
    char *api_key;
    char api_key_hash[65];       /* its SHA-256, compared in constant time */
    bool no_auth;
    struct store *st;
    struct sched **scheds;
    int n_scheds;
    struct batchmgr *bm;
    struct quota *quota;         /* per-key limits (quota.h) */
    struct keycache *keys;       /* API keys read from the store, for a moment (keycache.h) */
    struct httpguard *guard;     /* Host, Origin, slow heads (httpguard.h) */
    struct MHD_Daemon *mhd;
    int port;
    char *public_url;            /* p.public_url without a trailing '/', or NULL */
    int64_t started_at;          /* unix seconds: the `created` of upstream models */
    atomic_bool draining;        /* server_drain(): new requests get 503 */
    atomic_int inflight;         /* requests started, not completed (server_inflight) */
    /* the dashboard's last hour: a sample every SAMPLE_EVERY s (sampler thread) */
    pthread_t sampler;
    bool sampler_started, sampler_stop;
    pthread_mutex_t smu;
    pthread_cond_t scv;
    struct sample *ring;
    int n_samples, head;
    uint64_t last_tokens, last_lines;
    double last_t;
    /* /api/pull's threads (models.c): counted, so server_stop() can stop them and wait */
    pthread_mutex_t pull_mu;
    pthread_cond_t pull_cv;
    int n_pulls;
    atomic_bool pull_stop;
};

#define SAMPLES 720
#define SAMPLE_EVERY 5

struct sample {
    double t;                   /* unix seconds */
    double tokens_per_s, lines_per_s;
    double batch_pending, interactive_waiting;
};

struct upload {
    struct MHD_PostProcessor *pp;
    struct durable file;        /* files/<id>, written under a temporary name (durable.h) */
    char id[48];                /* the file's id, chosen when the upload starts */
    char *filename;
    struct buf purpose;
    /* expires_after[anchor] and expires_after[seconds] as sent (cut at their size: a longer
     * value is invalid anyway), and the first field the upload does not know */
    char expires_anchor[16], expires_seconds[24];
    bool have_anchor, have_seconds;
    char unknown[64];
    int64_t bytes;
    bool have_file;
    bool too_large;
};

struct job;

struct req {
    struct server *srv;
    double t_start;             /* when its head came in (monotonic s): the body's rate */
    uint64_t body_bytes;
    bool counted;               /* in srv->inflight */
    bool started;
    int early_status;           /* set while reading the body: answer with this */
    char early_msg[200];
    struct buf body;
    struct upload *up;
    /* a handler that waits for a job (h_generate, generate_embeddings) suspends the connection;
     * once resumed, MHD calls on_request again and answer(c, job, flavor) replies with the
     * job's result (and drops the reference) */
    enum MHD_Result (*answer)(struct MHD_Connection *c, struct job *j, int flavor);
    struct job *job;            /* the HTTP side's reference, while it waits */
    int flavor;                 /* h_generate's enum gen_flavor */
};

/* errors in a dialect's shape (proto/dialect.h); the three that routes name directly */
#define respond_oai_error(c, status, param, code, ...) respond_error((c), &dialect_openai, (status), (param), (code), __VA_ARGS__)
#define respond_ant_error(c, status, ...) respond_error((c), &dialect_anthropic, (status), NULL, NULL, __VA_ARGS__)
#define respond_ollama_error(c, status, ...) respond_error((c), &dialect_ollama, (status), NULL, NULL, __VA_ARGS__)

#define MAX_IDS 2

struct route_ctx {
    struct server *srv;
    struct MHD_Connection *c;
    struct req *r;
    const char *ids[MAX_IDS];
    char idbuf[MAX_IDS][128];
    /* who asks (server_auth): the project that owns what it creates, and whether it may
     * see every project's files and batches */
    char owner[64];
    bool admin;
    /* the key's name ("" for --api-key, --no-auth and the open mode: no quota) and its
     * limits, the server's defaults filled in */
    char key[64];
    struct quota_limits lim;
    int store_rc;              /* the last failed store call's status (respond_store_status) */
};

/* a failed store call as the answer's status: busy past the store's retries stays busy (503
 * with Retry-After), anything else is an I/O error (500) */
static inline int respond_store_status(int rc) { return rc == NS_ERR_BUSY ? rc : NS_ERR_IO; }

typedef enum MHD_Result (*handler_fn)(struct route_ctx *x);

enum gen_flavor { GEN_CHAT, GEN_COMPLETION, GEN_MESSAGES, GEN_OLLAMA_CHAT, GEN_OLLAMA_GENERATE, GEN_RESPONSES };

#define ANT_MAX_REQUESTS 100000
#define ANT_MAX_BYTES (256u * 1000u * 1000u)

/* ---- shared functions, by the file that defines them ----------------------------------- */

/* server.c */
/* the base of the URLs the server hands out ("https://api.example.com", no trailing '/'):
 * --public-url, else how this request reached the server (httpguard_origin) */
void server_public_base(const struct route_ctx *x, char *out, size_t n);
int server_query_limit(struct route_ctx *x, int lo, int hi, int def, int *out);
const char *server_query(struct route_ctx *x, const char *k);
struct sched *server_sched_by_model(struct server *s, const char *model);

/* respond.c */
void respond_add_str_or_null(cJSON *o, const char *k, const char *v);
void respond_add_ts(cJSON *o, const char *k, int64_t v);
cJSON *respond_batch_json(struct server *srv, const struct store_batch *b);
cJSON *respond_file_json(const struct store_file *f);
char *respond_json_print(cJSON *o);
enum MHD_Result respond_bytes(struct MHD_Connection *c, unsigned code, const char *type, const char *p, size_t len);
enum MHD_Result respond_json(struct MHD_Connection *c, unsigned code, cJSON *o);
/* 405 with Allow (the methods the path takes) */
enum MHD_Result respond_method_not_allowed(struct MHD_Connection *c, const struct dialect *d, const char *msg,
                                           const char *allow);
enum MHD_Result respond_quota_refusal(struct MHD_Connection *c, const struct dialect *d, const struct quota_refusal *why);
enum MHD_Result respond_error(struct MHD_Connection *c, const struct dialect *d, int status, const char *param,
                                  const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
enum MHD_Result respond_text(struct MHD_Connection *c, unsigned code, const char *type, char *text);

/* generate.c */
enum MHD_Result generate_apply_template(struct route_ctx *x);
enum MHD_Result generate_chat(struct route_ctx *x);
enum MHD_Result generate_completions(struct route_ctx *x);
enum MHD_Result generate_count_tokens(struct route_ctx *x);
enum MHD_Result generate_embeddings(struct route_ctx *x);
enum MHD_Result generate_messages(struct route_ctx *x);
enum MHD_Result generate_ollama_chat(struct route_ctx *x);
/* models.c: the model store over HTTP (POST /api/pull; its models in /api/tags, /api/show,
 * /v1/models) */
enum MHD_Result models_ollama_pull(struct route_ctx *x);
void models_openai_add(struct server *srv, cJSON *data);
void models_ollama_tags_add(struct server *srv, cJSON *tags);
cJSON *models_ollama_show(struct server *srv, const char *name); /* NULL: not in the store */
void models_stop(struct server *s);
enum MHD_Result generate_ollama_embed(struct route_ctx *x);
enum MHD_Result generate_ollama_embeddings(struct route_ctx *x);
enum MHD_Result generate_ollama_generate(struct route_ctx *x);
enum MHD_Result generate_ollama_manage(struct route_ctx *x);
enum MHD_Result generate_ollama_ps(struct route_ctx *x);
enum MHD_Result generate_ollama_root(struct route_ctx *x);
enum MHD_Result generate_ollama_show(struct route_ctx *x);
enum MHD_Result generate_ollama_tags(struct route_ctx *x);
enum MHD_Result generate_ollama_version(struct route_ctx *x);
enum MHD_Result generate_responses(struct route_ctx *x);
void generate_job_suspend(struct job *j);
void generate_job_unref(struct job *j);

/* files.c */
enum MHD_Result files_content(struct route_ctx *x);
enum MHD_Result files_delete(struct route_ctx *x);
enum MHD_Result files_get(struct route_ctx *x);
enum MHD_Result files_list(struct route_ctx *x);
enum MHD_Result files_upload(struct route_ctx *x);
const char *files_owner_filter(const struct route_ctx *x);
/* past its expires_at (an upload's expires_after, a batch output's output_expires_after):
 * gone to clients */
bool files_expired(const struct store_file *f);
bool files_owner_ok(const struct route_ctx *x, const char *owner);

/* batches.c */
int batches_quota_admit(struct route_ctx *x, const char *batch_id, const char *path, const struct buf *jsonl,
                             struct quota_refusal *why);
enum MHD_Result batches_ant_cancel(struct route_ctx *x);
enum MHD_Result batches_ant_delete(struct route_ctx *x);
enum MHD_Result batches_ant_get(struct route_ctx *x);
enum MHD_Result batches_ant_list(struct route_ctx *x);
enum MHD_Result batches_ant_results(struct route_ctx *x);
enum MHD_Result batches_cancel(struct route_ctx *x);
enum MHD_Result batches_create(struct route_ctx *x);
enum MHD_Result batches_errors(struct route_ctx *x);
enum MHD_Result batches_get(struct route_ctx *x);
enum MHD_Result batches_list(struct route_ctx *x);
enum MHD_Result batches_output(struct route_ctx *x);
enum MHD_Result batches_retry(struct route_ctx *x);
enum MHD_Result batches_deferred_chat(struct route_ctx *x);
enum MHD_Result batches_deferred_completions(struct route_ctx *x);
enum MHD_Result batches_deferred_get(struct route_ctx *x);
int batches_request_cancel(struct server *srv, struct store_batch *b);
cJSON *batches_one_result(struct server *srv, const struct store_batch *b);

/* responses.c: the Responses API's stored objects (generate.c runs the requests) */
int responses_history(void *x, const char *response_id, cJSON **items, struct oai_error *err);
enum MHD_Result responses_background(struct route_ctx *x, const struct oai_request *r, const char *id,
                                     int64_t created);
void responses_save(struct server *srv, const char *owner, const struct oai_request *r, const char *id,
                    int64_t created, const char *model, const cJSON *object);
enum MHD_Result responses_get(struct route_ctx *x);
enum MHD_Result responses_delete(struct route_ctx *x);
enum MHD_Result responses_input_items(struct route_ctx *x);
enum MHD_Result responses_cancel(struct route_ctx *x);

/* msgbatches.c */
/* a Message Batch as Anthropic shows it; results_url from how x's request reached the server */
cJSON *msgbatches_json(const struct route_ctx *x, const struct store_batch *b);
enum MHD_Result msgbatches_create(struct route_ctx *x);
int msgbatches_inline_create(struct route_ctx *x, const struct buf *jsonl, int n, const char *endpoint,
                               const char *id_prefix, const char *filename, const char *metadata, struct store_batch *b,
                               struct quota_refusal *why, char *err, size_t errlen);
int msgbatches_inline_line(struct buf *jsonl, const char *custom_id, const char *url, const cJSON *body);

/* metrics.c */
enum MHD_Result metrics_dashboard_file(struct route_ctx *x);
enum MHD_Result metrics_prometheus(struct route_ctx *x);
enum MHD_Result metrics_root(struct route_ctx *x);
enum MHD_Result metrics_stats(struct route_ctx *x);
enum MHD_Result metrics_webhooks(struct route_ctx *x);
bool metrics_public_route(const char *method, const char *url);
void *metrics_sampler_thread(void *arg);

#endif
