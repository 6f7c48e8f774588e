/*
 * serve.c — `nightshift serve`: the OpenAI-compatible server (http/server.h) over the
 * store, one scheduler and engine per model, and the batch manager.
 *
 * Start-up order: data dir and its lock (one server per data dir), the sweep of unfinished
 * upload temp files, store, the sweep of files no store row names (both left by a crash),
 * engines (one per --model), schedulers, batch manager (which requeues the lines a crash
 * left running), HTTP.
 *
 * Signals: SIGINT, SIGTERM and SIGHUP are blocked before any thread exists (so every thread
 * inherits the mask) and taken synchronously by the main thread with sigwaitinfo(): no
 * handler runs at an arbitrary point and no signal is lost between a check and a wait.
 * SIGHUP calls serve_reload() (re-reads --config, applies limits and prices); it never stops the server.
 *
 * Graceful shutdown on SIGINT/SIGTERM: HTTP stops listening and answers new requests with
 * 503, the schedulers hand out no more batch lines, and what runs (interactive requests,
 * batch lines in the engines) gets --grace-period seconds to finish; a second signal cuts
 * the wait short. Then each engine stops (what still runs ends as cancelled; its batch lines
 * stay claimed and are requeued at the next start), HTTP closes its connections, the
 * manager stops, the store closes, the lock goes.
 */
#include "cli.h"
#include "../util/clock.h"
#include "config.h"
#include "datadir.h"
#include "gpuopts.h"
#include "pull.h"

#include "../http/httpguard.h"
#include "../http/server.h"
#include "../backend/backend.h"
#include "../backend/modelstore.h"
#include "../engine/engine.h"
#include "../sched/batchmgr.h"
#include "../sched/sched.h"
#include "../sched/webhook.h"
#include "../store/store.h"
#include "../util/num.h"
#include "../util/status.h"
#include "../util/log.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SERVE_MAX_MODELS 64
#define SERVE_DEFAULT_GRACE 30
#define SERVE_ORPHAN_AGE 60 /* seconds: younger files under files/ are never swept */
#define SERVE_FD_RESERVE 128 /* descriptors kept for other than connections */

static void serve_usage(FILE *f)
{
    fputs("usage: nightshift serve --model [NAME=]MODEL.gguf [options]\n"
          "\n"
          "OpenAI-compatible server: Files, Batches, Chat Completions, Completions, Models.\n"
          "Batch work runs in the background on the same engine; interactive requests go first.\n"
          "\n"
          "  -m, --model [NAME=]FILE  a model to serve (repeatable); NAME defaults to the file name;\n"
          "                           FILE may be a model store reference (ORG/REPO:QUANT, hf.co/...,\n"
          "                           a pulled name: `nightshift pull`), served under its store name\n"
          "      --pull               pull --model references missing from the model store first\n"
          "      --config FILE        an INI file: [server] options and [model NAME] sections, which\n"
          "                           also route models to upstream servers, and name a fallback model\n"
          "                           (spill_to, on_failure: spill-over and fail-over; docs/API.md)\n"
          "      --model-alias NAME   the name of the first model (same as NAME= on it)\n"
          "      --lora FILE[:SCALE]  a LoRA adapter on the one --model, scale 1 by default (repeatable:\n"
          "                           stacked); in a --config, [model NAME] sections take base = and\n"
          "                           lora = instead, each served under its own name (docs/USAGE.md)\n"
          "  -d, --data-dir DIR       database and files (default ./nightshift-data)\n"
          "      --db URI             store: sqlite:PATH (default DATA_DIR/nightshift.db) or postgres://...\n"
          "                           (one PostgreSQL database shared by many nodes; docs/DEPLOYMENT.md)\n"
          "  -l, --listen HOST:PORT   default 127.0.0.1:8080 (port 0 picks a free one)\n"
          "  -p, --parallel N         sequences decoded together per model (default 64)\n"
          "      --interactive-slots N  extra sequences reserved for real-time requests (default 4)\n"
          "      --interactive-step-ms MS|auto|off  while real-time requests run, steps are held to\n"
          "                           this many ms (batch work fills what is left); auto (default):\n"
          "                           twice what their own tokens take; off: every sequence every step\n"
          "  -c, --ctx N              KV cache tokens per model, split evenly between its sequences\n"
          "                           (default: 2048 per sequence)\n"
          "      --kv-unified         one KV pool shared by all sequences instead\n"
          "      --results-retention-days N  keep ended Anthropic Message Batches N days (29)\n"
          "      --embedding          load the models for embeddings only (/v1/embeddings and\n"
          "                           /v1/embeddings batch lines; chat and completions are refused)\n"
          "      --pooling P          embedding pooling: mean, cls or last (default: the model's,\n"
          "                           else mean)\n"
          "      --no-prefix-cache    compute every prompt in full (by default shared prompt prefixes\n"
          "                           are computed once and batch lines run grouped by prefix)\n"
          "  -t, --threads N          CPU threads (default: all)\n"
          "      --api-key KEY        an admin key: 'Authorization: Bearer KEY' (or NIGHTSHIFT_API_KEY);\n"
          "                           keys of `nightshift keys create` are required once one exists\n"
          "      --no-auth            no keys at all (loopback addresses only; development)\n"
          "      --quota-rpm N        default limit of real-time requests per minute for keys created\n"
          "                           without one of their own; admin keys only have their own (0: none)\n"
          "      --quota-tokens-per-day N  the same for real-time prompt + completion tokens per UTC day\n"
          "      --quota-batch-queue-tokens N  the same for the estimated tokens of unfinished batches\n"
          "      --max-connections N  HTTP connections at once (default 4096; more wait in the listen\n"
          "                           queue); bounded by the descriptor limit\n"
          "      --http-threads N     threads serving HTTP, event-driven (default: one per CPU, 4 to 64)\n"
          "      --allowed-host NAME  a Host name the server answers to besides IP addresses and localhost\n"
          "                           (a guard against DNS rebinding; '.example.com' for a domain, '*' any;\n"
          "                           repeatable)\n"
          "      --cors-origin ORIGIN let web pages from ORIGIN (https://app.example.com, or '*') call the\n"
          "                           API: CORS headers and preflights; other origins get 403 (repeatable)\n"
          "      --public-url URL     the base of the URLs the server hands out (Message Batches'\n"
          "                           results_url), e.g. https://api.example.com; by default they are\n"
          "                           built from each request: its Host, https under --tls-cert\n"
          "      --trusted-proxy ADDR a reverse proxy (address or CIDR block) whose X-Forwarded-Proto and\n"
          "                           X-Forwarded-Host are believed for those URLs (repeatable, or\n"
          "                           comma-separated)\n"
          "      --max-connections-per-ip N  connections from one address (default a quarter of\n"
          "                           --max-connections, at least 16; raise it behind a proxy)\n"
          "      --header-timeout S   seconds a new connection has to send its request head (default 10)\n"
          "      --idle-timeout S     seconds of silence before a connection is closed (default 60)\n"
          "      --min-body-rate B    bytes/s a request body must average once 10 s old (default 1024; 0 off)\n"
          "      --max-body SIZE      largest JSON request body (default 16MB)\n"
          "      --max-file-size SIZE largest upload (default 200MB)\n"
          "      --max-lines N        most requests per batch (default 50000)\n"
          "      --chat-template NAME a llama.cpp built-in template instead of the model's\n"
          "      --chat-template-file FILE  this Jinja chat template instead of the model's (every\n"
          "                           local model; a [model] section's chat_template_file wins)\n"
          "      --batch-hours HH:MM-HH:MM  batch work gets full capacity only inside this local-time\n"
          "                           window (may wrap midnight); outside it see --off-hours\n"
          "      --off-hours idle|none  outside the window: batch work only while no interactive\n"
          "                           request runs (idle, default), or none\n"
          "      --grace-period SECONDS  on SIGTERM/SIGINT, how long running requests and batch\n"
          "                           lines may take to finish (default 30; 0: stop at once);\n"
          "                           lines still running then run again at the next start\n"
          "      --tls-cert FILE      serve HTTPS with this PEM certificate (chain) ...\n"
          "      --tls-key FILE       ... and its PEM private key (libmicrohttpd's GnuTLS)\n"
          "      --log-format F       text (default) or json: one JSON object per line on stderr\n"
          "                           (time, level, msg, model, batch_id, request_id)\n"
          "  -v, --verbose            llama.cpp's own log on stderr\n",
          f);
    fputs(gpuopts_usage, f);
}

struct serve_model {
    char name[128];
    bool named;                      /* NAME= given: a store reference keeps it */
    const char *path;
    const struct backend_conf *conf; /* from --config; NULL: local, from --model */
    const char *chat_template;       /* its [model] chat_template_file's text, or NULL */
    const double *step_ms;           /* its [model] interactive_step_ms, or NULL */
    const struct lora_spec *lora;    /* its adapters (lora = / --lora), n_lora of them */
    int n_lora;
    const struct config_model *cm;   /* its [model] section, or NULL (spill_to, on_failure) */
};

#define SERVE_LIST_MAX 2048 /* --allowed-host / --cors-origin values, comma-joined */

enum { O_ALIAS = 1000, O_DB, O_ISLOTS, O_KEY, O_MAXBODY, O_MAXFILE, O_MAXLINES, O_TMPL, O_TMPLF, O_HOURS, O_OFF, O_KVU, O_NOPC,
       O_RETAIN, O_CONFIG, O_LOGFMT, O_GRACE, O_NOAUTH, O_TLSCERT, O_TLSKEY, O_QRPM, O_QTPD, O_QBQT, O_MAXCONN,
       O_EMBED, O_POOL, O_HTHREADS, O_AHOST, O_CORS, O_PERIP, O_HDRTO, O_IDLETO, O_MINRATE, O_PUBURL, O_TPROXY, O_STEPMS,
       O_LORA, O_PULL };
static const struct option serve_opts[] = {
    {"model", required_argument, 0, 'm'},        {"model-alias", required_argument, 0, O_ALIAS},
    {"pull", no_argument, 0, O_PULL},
    {"data-dir", required_argument, 0, 'd'},     {"db", required_argument, 0, O_DB},
    {"listen", required_argument, 0, 'l'},       {"parallel", required_argument, 0, 'p'},
    {"interactive-slots", required_argument, 0, O_ISLOTS}, {"ctx", required_argument, 0, 'c'},
    {"threads", required_argument, 0, 't'},      {"api-key", required_argument, 0, O_KEY},
    {"no-auth", no_argument, 0, O_NOAUTH},
    {"quota-rpm", required_argument, 0, O_QRPM}, {"quota-tokens-per-day", required_argument, 0, O_QTPD},
    {"quota-batch-queue-tokens", required_argument, 0, O_QBQT},
    {"max-connections", required_argument, 0, O_MAXCONN},
    {"http-threads", required_argument, 0, O_HTHREADS},
    {"allowed-host", required_argument, 0, O_AHOST}, {"cors-origin", required_argument, 0, O_CORS},
    {"public-url", required_argument, 0, O_PUBURL}, {"trusted-proxy", required_argument, 0, O_TPROXY},
    {"max-connections-per-ip", required_argument, 0, O_PERIP}, {"header-timeout", required_argument, 0, O_HDRTO},
    {"idle-timeout", required_argument, 0, O_IDLETO}, {"min-body-rate", required_argument, 0, O_MINRATE},
    {"tls-cert", required_argument, 0, O_TLSCERT}, {"tls-key", required_argument, 0, O_TLSKEY},
    {"max-body", required_argument, 0, O_MAXBODY}, {"max-file-size", required_argument, 0, O_MAXFILE},
    {"max-lines", required_argument, 0, O_MAXLINES}, {"chat-template", required_argument, 0, O_TMPL},
    {"chat-template-file", required_argument, 0, O_TMPLF},
    {"batch-hours", required_argument, 0, O_HOURS}, {"off-hours", required_argument, 0, O_OFF},
    {"kv-unified", no_argument, 0, O_KVU},      {"no-prefix-cache", no_argument, 0, O_NOPC},
    {"interactive-step-ms", required_argument, 0, O_STEPMS},
    {"lora", required_argument, 0, O_LORA},
    {"embedding", no_argument, 0, O_EMBED},     {"pooling", required_argument, 0, O_POOL},
    {"results-retention-days", required_argument, 0, O_RETAIN},
    {"config", required_argument, 0, O_CONFIG},
    {"grace-period", required_argument, 0, O_GRACE},
    {"log-format", required_argument, 0, O_LOGFMT},
    GPUOPTS_LONG_OPTIONS,
    {"verbose", no_argument, 0, 'v'},            {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0}};

/* a [server] key of the config is a long option of ours (but not these) */
static bool serve_config_key_ok(const char *key, const char *value, char *why, size_t n)
{
    if (strcmp(key, "config") == 0 || strcmp(key, "help") == 0 || strcmp(key, "model") == 0 ||
        strcmp(key, "model-alias") == 0 || strcmp(key, "api-key") == 0) {
        snprintf(why, n, "'%s' cannot be set here%s", key,
                 strcmp(key, "api-key") == 0 ? " (keys are never read from the config file; use NIGHTSHIFT_API_KEY)"
                 : strncmp(key, "model", 5) == 0 ? " (use a [model NAME] section)"
                                                 : "");
        return false;
    }
    for (const struct option *o = serve_opts; o->name; o++) {
        if (strcmp(o->name, key) != 0)
            continue;
        if (o->has_arg == no_argument && strcmp(value, "true") && strcmp(value, "false")) {
            snprintf(why, n, "'%s' is a switch: true or false, not '%s'", key, value);
            return false;
        }
        return true;
    }
    snprintf(why, n, "unknown option '%s' (the [server] keys are the long options of `nightshift serve --help`)", key);
    return false;
}

/* argv with the config's [server] options first, so the command line overrides them */
static char **serve_config_argv(const struct config *cfg, int argc, char **argv, int *out_argc, int *n_owned)
{
    char **av = calloc((size_t)(argc + cfg->n_server + 1), sizeof(*av));
    if (!av)
        return NULL;
    int n = 0;
    av[n++] = argv[0];
    for (int i = 0; i < cfg->n_server; i++) {
        const struct config_kv *kv = &cfg->server[i];
        bool sw = false;
        for (const struct option *o = serve_opts; o->name; o++)
            if (strcmp(o->name, kv->key) == 0)
                sw = o->has_arg == no_argument;
        if (sw && strcmp(kv->value, "false") == 0)
            continue;
        size_t len = strlen(kv->key) + strlen(kv->value) + 4;
        char *a = malloc(len);
        if (!a)
            continue; /* freed with the rest; getopt then misses it, which the caller reports */
        if (sw)
            snprintf(a, len, "--%s", kv->key);
        else
            snprintf(a, len, "--%s=%s", kv->key, kv->value);
        av[n++] = a;
    }
    *n_owned = n - 1; /* av[1..n_owned] are ours */
    for (int i = 1; i < argc; i++)
        av[n++] = argv[i];
    *out_argc = n;
    return av;
}

/* SIGHUP (systemd's ExecReload): re-read the --config file and apply, without dropping a
 * connection or a request, what can change live: each existing upstream model's limits
 * (concurrency, tries, timeouts, backoff, circuit, batch flushing and polling) and every
 * model's prices. What cannot (models added, removed or moved to another backend, [server]
 * options, local engine settings) is named in the log as needing a restart. A config that
 * does not load is reported and the running one kept. */
static void serve_reload(const char *config_path, struct sched **scheds, int n_scheds)
{
    if (!config_path) {
        log_event(LOG_INFO, NULL, NULL, "reload requested (SIGHUP), but there is no --config file to re-read");
        fflush(stderr);
        return;
    }
    struct config *cfg = NULL;
    char err[600];
    if (config_load(config_path, serve_config_key_ok, &cfg, err, sizeof(err))) {
        log_event(LOG_ERROR, NULL, NULL, "reload failed, keeping the running configuration: %s", err);
        fflush(stderr);
        return;
    }
    int updated = 0;
    for (int k = 0; k < cfg->n_models; k++) {
        const struct backend_conf *c = &cfg->models[k].conf;
        struct backend *be = NULL;
        for (int i = 0; i < n_scheds && !be; i++)
            if (strcmp(sched_model_name(scheds[i]), c->name) == 0)
                be = sched_backend(scheds[i]);
        if (!be)
            log_event(LOG_WARN, NULL, NULL, "reload: model '%s' is new: restart to serve it", c->name);
        else if (be->ops != backend_find(c->kind))
            log_event(LOG_WARN, NULL, NULL, "reload: model '%s' moved from %s to %s: restart to apply", c->name,
                    be->ops->kind, c->kind);
        else
            updated += backend_reconfigure(be, c) == NS_OK;
    }
    for (int i = 0; i < n_scheds; i++) {
        bool kept = false;
        for (int k = 0; k < cfg->n_models && !kept; k++)
            kept = strcmp(cfg->models[k].conf.name, sched_model_name(scheds[i])) == 0;
        if (!kept && !sched_backend(scheds[i])->ops->local_file)
            log_event(LOG_WARN, NULL, NULL, "reload: model '%s' is no longer in %s: restart to stop serving it",
                    sched_model_name(scheds[i]), config_path);
    }
    log_event(LOG_INFO, NULL, NULL, "reloaded %s: %d model%s updated ([server] options apply at the next start)",
            config_path, updated, updated == 1 ? "" : "s");
    fflush(stderr);
    config_free(cfg);
}

/* the next of the blocked signals in `set`, waiting at most timeout_ms (< 0: for ever);
 * 0 when none came */
static int serve_next_signal(const sigset_t *set, int timeout_ms)
{
    int sig;
    do {
        if (timeout_ms < 0) {
            sig = sigwaitinfo(set, NULL);
        } else {
            struct timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000L};
            sig = sigtimedwait(set, NULL, &ts);
            if (sig < 0 && errno == EAGAIN)
                return 0;
        }
    } while (sig < 0 && errno == EINTR);
    return sig < 0 ? 0 : sig;
}


/* graceful shutdown: stop taking work, wait up to grace seconds (or a second signal) for
 * what runs to finish; the caller then stops the engines */
static void serve_drain(struct server *srv, struct sched **scheds, int n_scheds, int grace, const sigset_t *sigs)
{
    server_drain(srv);
    for (int i = 0; i < n_scheds; i++)
        sched_drain(scheds[i]);
    log_event(LOG_INFO, NULL, NULL, "shutting down: taking no new work; up to %d s for running requests", grace);
    fflush(stderr);
    double deadline = clock_now() + grace;
    for (;;) {
        int http = server_inflight(srv), engine = 0;
        for (int i = 0; i < n_scheds; i++)
            engine += sched_inflight(scheds[i]);
        if (http == 0 && engine == 0)
            break;
        if (clock_now() >= deadline) {
            log_event(LOG_WARN, NULL, NULL,
                      "grace period over: stopping %d HTTP requests and %d engine requests; their batch lines run "
                      "again at the next start",
                      http, engine);
            break;
        }
        int sig = serve_next_signal(sigs, 100);
        if (sig == SIGINT || sig == SIGTERM) {
            log_event(LOG_INFO, NULL, NULL, "second stop signal: not waiting for %d HTTP and %d engine requests", http,
                    engine);
            break;
        }
        if (sig == SIGHUP)
            log_event(LOG_INFO, NULL, NULL, "reload requested while shutting down: ignored");
    }
}

/* Remove the temporary files that a crash cut short (kill -9 while an upload streamed in,
 * or while an output file was written): only a committed file has its id as its name
 * (util/durable.h), so a *.tmp-* file (or an upload-* of older versions) at start-up
 * belongs to no one. One server per data dir, so none is being written. */
static void serve_sweep_uploads(const char *dir)
{
    char sub[4096], path[4096 + 300];
    snprintf(sub, sizeof(sub), "%s/files", dir);
    DIR *d = opendir(sub);
    if (!d)
        return;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "upload-", 7) != 0 && !strstr(de->d_name, ".tmp-"))
            continue;
        snprintf(path, sizeof(path), "%s/%s", sub, de->d_name);
        if (unlink(path) == 0)
            n++;
    }
    closedir(d);
    if (n)
        log_event(LOG_INFO, NULL, NULL, "removed %d unfinished upload%s left by an earlier run", n, n == 1 ? "" : "s");
}

/* Remove the files under files/ that no store row names: a crash between a file's rename to
 * its id and its row's insert (an upload, a batch's output, an inline batch's input) leaves
 * one, and a crash while writing <id>.tmp leaves that. Only files older than min_age seconds
 * go: at start-up nothing of ours writes there yet, but a file that appeared a moment ago
 * (a clock step, an operator copying files in) is left for the next start rather than
 * guessed about. A store that cannot answer removes nothing. */
static void serve_sweep_orphans(const char *dir, struct store *st, int64_t min_age)
{
    char sub[4096], path[4096 + 300];
    snprintf(sub, sizeof(sub), "%s/files", dir);
    DIR *d = opendir(sub);
    if (!d)
        return;
    int n = 0;
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", sub, de->d_name);
        struct stat sb;
        if (lstat(path, &sb) || !S_ISREG(sb.st_mode) || (int64_t)(now - sb.st_mtime) < min_age)
            continue;
        struct store_file f;
        int rc = store_file_get(st, de->d_name, &f);
        if (rc == NS_OK)
            store_file_release(&f);
        else if (rc == NS_ERR_NOT_FOUND && unlink(path) == 0)
            n++;
    }
    closedir(d);
    if (n)
        log_event(LOG_INFO, NULL, NULL, "removed %d file%s under %s that no store row names (left by a crash)", n,
                  n == 1 ? "" : "s", sub);
}

static void serve_log_model(struct backend *be, const char *name, const char *path, int parallel, int islots)
{
    struct engine_info info;
    if (!backend_model_info(be, &info)) {
        struct backend_info bi;
        be->ops->get_info(be->impl, &bi);
        log_event(LOG_INFO, name, NULL, "model '%s': %s backend, %s", name, bi.kind, bi.desc);
        return;
    }
    /* info.n_parallel counts both kinds, after the memory fit */
    int n_inter = islots < info.n_parallel ? islots : 0;
    (void)parallel;
    log_event(LOG_INFO, name, NULL,
              "model '%s': %s (%s) on %s, %d parallel + %d interactive, context %d (%d per sequence, KV %s/%s "
              "%.1f MiB), template %s",
              name, path, info.desc, info.where, info.n_parallel - n_inter, n_inter, info.n_ctx, info.n_ctx_seq,
              info.cache_type_k, info.cache_type_v, (double)info.mem_kv / 1048576.0, info.chat_template);
    if (info.lora[0] || info.shared_weights)
        log_event(LOG_INFO, name, NULL, "model '%s': %s%s%s", name, info.lora[0] ? "LoRA " : "", info.lora,
                  info.shared_weights ? (info.lora[0] ? " over weights already loaded (shared, loaded once)"
                                                      : "weights already loaded (shared, loaded once)")
                                      : "");
}

/* Each HTTP connection holds a descriptor (and a thread): raise the soft descriptor limit to
 * the hard one (systemd starts services with a soft 1024), and keep the connection limit
 * under what the descriptors allow, with room for the store, the models and the logs. */
static void serve_fd_limit(struct server_params *sp)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl))
            rl.rlim_cur = old;
    }
    rlim_t room = rl.rlim_cur > SERVE_FD_RESERVE ? rl.rlim_cur - SERVE_FD_RESERVE : 1;
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)sp->max_connections > room) {
        log_event(LOG_WARN, NULL, NULL,
                  "--max-connections %u is more than the descriptor limit allows (ulimit -n %llu): %llu connections",
                  sp->max_connections, (unsigned long long)rl.rlim_cur, (unsigned long long)room);
        sp->max_connections = (unsigned)room;
    }
}

/* a PEM file into memory (libmicrohttpd takes the texts); 0 ok, else err says why */
static int serve_read_pem(const char *path, const char *opt, char **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot read '%s': %s", opt, path, strerror(errno));
        return NS_ERR_IO;
    }
    char *text = calloc(1, 1u << 20);
    size_t n = text ? fread(text, 1, (1u << 20) - 1, f) : 0;
    bool more = text && fgetc(f) != EOF;
    fclose(f);
    if (!text || more || n == 0 || !strstr(text, "-----BEGIN ")) {
        snprintf(err, errlen, "%s: '%s' is %s", opt, path,
                 !text ? "too big to read (out of memory)" : more ? "over 1 MB: not a PEM file" : "not a PEM file");
        free(text);
        return NS_ERR_INVALID;
    }
    *out = text;
    return NS_OK;
}

static int serve_main(int argc, char **argv, const struct config *cfg)
{
    struct serve_model models[SERVE_MAX_MODELS] = {0};
    int n_models = 0;
    const char *alias = NULL, *data_dir = "nightshift-data", *db = NULL, *listen = "127.0.0.1:8080";
    const char *tmpl = NULL, *tmpl_file = NULL;
    char *tmpl_text = NULL;
    struct lora_spec cli_lora[LORA_MAX]; /* --lora, for the one --model */
    int n_cli_lora = 0;
    int parallel = 64, islots = 4, ctx = 0, threads = 0, grace = SERVE_DEFAULT_GRACE;
    bool verbose = false, kv_unified = false, no_prefix = false, embedding = false, pull = false;
    static char store_paths[SERVE_MAX_MODELS][4400]; /* --model store references: their files */
    int pooling = ENGINE_POOLING_MODEL;
    double step_ms = engine_default_params().interactive_step_ms;
    int win_start = -1, win_end = -1;
    bool off_idle = true;
    struct server_params sp = server_default_params();
    static char hosts_list[SERVE_LIST_MAX], cors_list[SERVE_LIST_MAX], proxy_list[SERVE_LIST_MAX];
    const char *tls_cert_path = NULL, *tls_key_path = NULL;
    char *tls_cert = NULL, *tls_key = NULL;
    struct batchmgr_params bp = batchmgr_default_params();
    char err[512];
    struct engine_params gpu = engine_default_params(); /* --gpu-layers, --cache-type-k, ... */
    sp.api_key = getenv("NIGHTSHIFT_API_KEY");
    long long v;
    uint64_t sz;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "m:d:l:p:c:t:vh", serve_opts, NULL)) != -1) {
        int g = gpuopts_parse(ch, optarg, &gpu);
        if (g == GPUOPTS_EXIT_OK)
            return 0;
        if (g != GPUOPTS_NOT_MINE) {
            if (g)
                return g;
            continue;
        }
        switch (ch) {
        case 'm': {
            if (n_models == SERVE_MAX_MODELS)
                return cli_fail("at most %d models", SERVE_MAX_MODELS);
            struct serve_model *m = &models[n_models++];
            const char *eq = strchr(optarg, '='), *scheme = strstr(optarg, "://");
            if (eq && eq != optarg && (!scheme || scheme > eq)) { /* a URL's '=' is in its query */
                snprintf(m->name, sizeof(m->name), "%.*s", (int)(eq - optarg), optarg);
                m->path = eq + 1;
                m->named = true;
            } else {
                m->path = optarg;
                const char *base = strrchr(optarg, '/');
                snprintf(m->name, sizeof(m->name), "%s", base ? base + 1 : optarg);
                size_t l = strlen(m->name);
                if (l > 5 && strcmp(m->name + l - 5, ".gguf") == 0)
                    m->name[l - 5] = '\0';
            }
            break;
        }
        case O_ALIAS: alias = optarg; break;
        case O_PULL: pull = true; break;
        case 'd': data_dir = optarg; break;
        case O_DB: db = optarg; break;
        case 'l': listen = optarg; break;
        case 'p':
            if (num_parse_long(optarg, 1, 256, &v))
                return cli_fail("--parallel must be an integer from 1 to 256, not '%s'", optarg);
            parallel = (int)v;
            break;
        case O_ISLOTS:
            if (num_parse_long(optarg, 0, 64, &v))
                return cli_fail("--interactive-slots must be an integer from 0 to 64, not '%s'", optarg);
            islots = (int)v;
            break;
        case 'c':
            if (num_parse_long(optarg, 64, 1 << 24, &v))
                return cli_fail("--ctx must be an integer from 64 to 16777216, not '%s'", optarg);
            ctx = (int)v;
            break;
        case 't':
            if (num_parse_long(optarg, 1, 1024, &v))
                return cli_fail("--threads must be an integer from 1 to 1024, not '%s'", optarg);
            threads = (int)v;
            break;
        case O_KEY: sp.api_key = optarg; break;
        case O_NOAUTH: sp.no_auth = true; break;
        case O_QRPM:
        case O_QTPD:
        case O_QBQT: {
            int64_t *lim[] = {&sp.quota_default.rpm, &sp.quota_default.tokens_per_day,
                              &sp.quota_default.batch_queue_tokens};
            static const char *const names[] = {"--quota-rpm", "--quota-tokens-per-day", "--quota-batch-queue-tokens"};
            if (num_parse_long(optarg, 0, 1000000000000LL, &v))
                return cli_fail("%s must be an integer from 0 (unlimited) to 10^12, not '%s'", names[ch - O_QRPM],
                                optarg);
            *lim[ch - O_QRPM] = v;
            break;
        }
        case O_TLSCERT: tls_cert_path = optarg; break;
        case O_TLSKEY: tls_key_path = optarg; break;
        case O_MAXCONN:
            if (num_parse_long(optarg, 1, 1000000, &v))
                return cli_fail("--max-connections must be an integer from 1 to 1000000, not '%s'", optarg);
            sp.max_connections = (unsigned)v;
            break;
        case O_AHOST:
        case O_CORS: {
            char *list = ch == O_AHOST ? hosts_list : cors_list;
            size_t have = strlen(list);
            if (have + strlen(optarg) + 2 > SERVE_LIST_MAX)
                return cli_fail("too many --%s values", ch == O_AHOST ? "allowed-host" : "cors-origin");
            snprintf(list + have, SERVE_LIST_MAX - have, "%s%s", have ? "," : "", optarg);
            break;
        }
        case O_PUBURL:
            if (server_public_url_check(optarg, err, sizeof(err)))
                return cli_fail("%s", err);
            sp.public_url = optarg;
            break;
        case O_TPROXY: {
            size_t have = strlen(proxy_list);
            if (httpguard_proxies_check(optarg, err, sizeof(err)))
                return cli_fail("--trusted-proxy: %s", err);
            if (have + strlen(optarg) + 2 > SERVE_LIST_MAX)
                return cli_fail("too many --trusted-proxy values");
            snprintf(proxy_list + have, SERVE_LIST_MAX - have, "%s%s", have ? "," : "", optarg);
            break;
        }
        case O_PERIP:
        case O_HDRTO:
        case O_IDLETO:
        case O_MINRATE: {
            static const char *const names[] = {"max-connections-per-ip", "header-timeout", "idle-timeout", "min-body-rate"};
            int lo = ch == O_PERIP || ch == O_IDLETO ? 1 : 0;
            if (num_parse_long(optarg, lo, 100000000, &v))
                return cli_fail("--%s must be an integer from %d, not '%s'", names[ch - O_PERIP], lo, optarg);
            *(ch == O_PERIP ? &sp.max_per_ip : ch == O_HDRTO ? &sp.header_timeout : ch == O_IDLETO ? &sp.idle_timeout : &sp.min_body_rate) =
                (unsigned)v;
            break;
        }
        case O_HTHREADS:
            if (num_parse_long(optarg, 1, 1024, &v))
                return cli_fail("--http-threads must be an integer from 1 to 1024, not '%s'", optarg);
            sp.http_threads = (int)v;
            break;
        case O_MAXBODY:
            if (num_parse_size(optarg, &sz) || sz == 0)
                return cli_fail("--max-body must be a size like 16MB, not '%s'", optarg);
            sp.max_body = (size_t)sz;
            break;
        case O_MAXFILE:
            if (num_parse_size(optarg, &sz) || sz == 0)
                return cli_fail("--max-file-size must be a size like 200MB, not '%s'", optarg);
            sp.max_file = (size_t)sz;
            bp.max_bytes = (size_t)sz;
            break;
        case O_MAXLINES:
            if (num_parse_long(optarg, 1, 100000000, &v))
                return cli_fail("--max-lines must be a positive integer, not '%s'", optarg);
            bp.max_lines = (size_t)v;
            break;
        case O_TMPL: tmpl = optarg; break;
        case O_TMPLF: tmpl_file = optarg; break;
        case O_HOURS:
            if (sched_parse_window(optarg, &win_start, &win_end))
                return cli_fail("--batch-hours must look like 22:00-06:00, not '%s'", optarg);
            break;
        case O_OFF:
            if (strcmp(optarg, "idle") && strcmp(optarg, "none"))
                return cli_fail("--off-hours must be 'idle' or 'none', not '%s'", optarg);
            off_idle = strcmp(optarg, "idle") == 0;
            break;
        case O_KVU: kv_unified = true; break;
        case O_EMBED: embedding = true; break;
        case O_POOL:
            if ((pooling = engine_pooling_parse(optarg)) < 0 || pooling == ENGINE_POOLING_NONE)
                return cli_fail("--pooling must be mean, cls or last, not '%s' (an embedding is one vector per input)",
                                optarg);
            break;
        case O_NOPC: no_prefix = true; bp.group_by_prefix = false; break;
        case O_LORA:
            if (config_lora_arg(optarg, cli_lora, &n_cli_lora, err, sizeof(err)))
                return cli_fail("--lora %s: %s", optarg, err);
            break;
        case O_STEPMS:
            if (engine_step_ms_parse(optarg, &step_ms))
                return cli_fail("--interactive-step-ms must be auto, off or milliseconds from 1 to 60000, not '%s'",
                                optarg);
            break;
        case O_RETAIN:
            if (num_parse_long(optarg, 1, 3650, &v))
                return cli_fail("--results-retention-days must be an integer from 1 to 3650, not '%s'", optarg);
            sp.message_batch_retention = bp.message_batch_retention = v * 86400;
            break;
        case O_GRACE:
            if (num_parse_long(optarg, 0, 3600, &v))
                return cli_fail("--grace-period must be a number of seconds from 0 to 3600, not '%s'", optarg);
            grace = (int)v;
            break;
        case O_CONFIG: break; /* read before */
        case O_LOGFMT:
            if (strcmp(optarg, "text") && strcmp(optarg, "json"))
                return cli_fail("--log-format must be 'text' or 'json', not '%s'", optarg);
            log_set_json(strcmp(optarg, "json") == 0);
            break;
        case 'v': verbose = true; break;
        case 'h': serve_usage(stdout); return 0;
        default: serve_usage(stderr); return 2;
        }
    }
    if (optind < argc)
        return cli_fail("unexpected argument '%s'", argv[optind]);
    /* store references become their files (pulled first with --pull), served by store name */
    for (int i = 0; i < n_models; i++) {
        char sname[256];
        int prc = pull_model_resolve(models[i].path, pull, store_paths[i], sizeof(store_paths[i]), sname, sizeof(sname));
        if (prc)
            return prc;
        if (!sname[0])
            continue;
        models[i].path = store_paths[i];
        if (!models[i].named && strlen(sname) >= sizeof(models[i].name))
            return cli_fail("the store name '%s' is too long to serve under: give it one (--model NAME=%s)", sname, sname);
        if (!models[i].named)
            memcpy(models[i].name, sname, strlen(sname) + 1);
    }
    if (alias && n_models)
        snprintf(models[0].name, sizeof(models[0].name), "%s", alias);
    for (int i = 0; cfg && i < cfg->n_models; i++) {
        if (n_models == SERVE_MAX_MODELS)
            return cli_fail("at most %d models", SERVE_MAX_MODELS);
        struct serve_model *m = &models[n_models++];
        snprintf(m->name, sizeof(m->name), "%s", cfg->models[i].conf.name);
        m->path = cfg->models[i].path;
        m->conf = &cfg->models[i].conf;
        m->chat_template = cfg->models[i].chat_template;
        m->step_ms = cfg->models[i].has_step_ms ? &cfg->models[i].interactive_step_ms : NULL;
        m->lora = cfg->models[i].lora;
        m->n_lora = cfg->models[i].n_lora;
        m->cm = &cfg->models[i];
    }
    for (int i = 0; i < n_models; i++)
        for (int k = 0; k < i; k++)
            if (strcmp(models[i].name, models[k].name) == 0)
                return cli_fail("two models are named '%s'; give one another name (--model NAME=FILE)", models[i].name);
    if (n_models == 0) {
        const char *env = getenv("NIGHTSHIFT_MODEL");
        if (!env) {
            serve_usage(stderr);
            return cli_fail("no model given (--model FILE.gguf or NIGHTSHIFT_MODEL)");
        }
        models[0].path = env;
        models[0].conf = NULL;
        snprintf(models[0].name, sizeof(models[0].name), "%s", alias ? alias : "default");
        n_models = 1;
    }
    if (n_cli_lora && (n_models != 1 || cfg))
        return cli_fail("--lora applies to the one --model; with several models or --config, give each [model NAME] "
                        "its own lora = FILE[:SCALE] lines");
    if (n_cli_lora) {
        models[0].lora = cli_lora;
        models[0].n_lora = n_cli_lora;
    }
    const char *colon = strrchr(listen, ':');
    char host[256];
    if (!colon || num_parse_long(colon + 1, 0, 65535, &v))
        return cli_fail("--listen must be HOST:PORT, not '%s'", listen);
    snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
    sp.host = host;
    sp.port = (int)v;
    sp.data_dir = data_dir;
    bp.data_dir = data_dir;
    static char models_dir[4096];
    char merr[256];
    sp.models_dir = modelstore_dir(models_dir, sizeof(models_dir), merr, sizeof(merr)) == NS_OK ? models_dir : NULL;
    sp.allowed_hosts = hosts_list[0] ? hosts_list : NULL;
    sp.cors_origins = cors_list[0] ? cors_list : NULL;
    sp.trusted_proxies = proxy_list[0] ? proxy_list : NULL;
    if (!tls_cert_path != !tls_key_path)
        return cli_fail("--tls-cert and --tls-key go together (a PEM certificate and its PEM private key)");
    bool loopback = strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0;
    if (sp.no_auth && !loopback)
        return cli_fail("--no-auth is for loopback development only; '%s' is not a loopback address (create keys "
                        "with `nightshift keys create`)",
                        host);
    if (sp.no_auth)
        log_event(LOG_WARN, NULL, NULL, "--no-auth: every request is served as an admin, keys are not checked");
    if (!sp.no_auth && !sp.api_key && !loopback)
        log_event(LOG_WARN, NULL, NULL,
                  "listening on %s without --api-key: until a key is created (nightshift keys create) anyone who "
                  "reaches it can use it",
                  host);
    if (tmpl && tmpl_file)
        return cli_fail("--chat-template and --chat-template-file: give one (a built-in name, or a Jinja file)");
    if (tmpl_file) {
        if (config_read_template(tmpl_file, "--chat-template-file", &tmpl_text, err, sizeof(err)))
            return cli_fail("%s", err);
        tmpl = tmpl_text;
    }

    /* before any thread exists: every thread inherits the mask (see the file header) */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    serve_fd_limit(&sp);
    int lock_fd = -1;
    /* everything the server creates (the database, its journal, files, results) is
     * owner-only, whatever umask it was started with (issue 27.14) */
    umask(077);
    if (datadir_create(data_dir, err, sizeof(err)) || datadir_lock(data_dir, &lock_fd, err, sizeof(err))) {
        free(tmpl_text);
        return cli_fail("%s", err);
    }
    serve_sweep_uploads(data_dir); /* uploads a crash cut short (we hold the lock: none is ours) */
    const struct store_ops *ops = store_find(db);
    if (!ops) {
        datadir_unlock(lock_fd);
        free(tmpl_text);
        return cli_fail("no store for '%s' (this build has: sqlite:PATH, postgres://...)", db);
    }
    struct store *st = NULL;
    if (ops->open(db, data_dir, &st, err, sizeof(err))) {
        datadir_unlock(lock_fd);
        free(tmpl_text);
        return cli_fail("%s", err);
    }
    char node[256];
    if (store_node_id(st, node, sizeof(node)) == NS_OK) {
        log_event(LOG_INFO, NULL, NULL, "store: %s, shared; this node is '%s'", ops->scheme, node);
    }
    serve_sweep_orphans(data_dir, st, SERVE_ORPHAN_AGE);
    struct sched *scheds[SERVE_MAX_MODELS] = {0};
    struct batchmgr *bm = NULL;
    struct server *srv = NULL;
    struct webhook *wh = NULL;
    int n_scheds = 0;
    int rc = 0;
    struct webhook_endpoint eps[16];
    int n_eps = 0;
    for (int i = 0; cfg && i < cfg->n_webhooks && n_eps < 16; i++)
        eps[n_eps++] = cfg->webhooks[i].ep;
    if (webhook_init(st, eps, n_eps, &wh)) {
        rc = cli_fail("cannot set up the webhooks");
        goto out;
    }
    bp.webhooks = wh;
    sp.webhooks = webhook_enabled(wh);
    if (batchmgr_init(bp, st, scheds, n_models, &bm)) {
        rc = cli_fail("out of memory");
        goto out;
    }
    for (int i = 0; i < n_models; i++) {
        struct backend_conf bc = models[i].conf ? *models[i].conf : backend_default_conf();
        bc.name = models[i].name;
        bc.state_dir = data_dir;
        bc.shed_when_open = models[i].cm && models[i].cm->spill_to; /* fail-over: sched.h */
        struct engine_params epm = engine_default_params(), *ep = &epm;
        bc.engine = ep;
        ep->model_path = models[i].path;
        ep->n_ctx = ctx;
        ep->n_parallel = parallel;
        ep->n_priority = islots;
        ep->n_threads = threads;
        ep->chat_template = models[i].chat_template ? models[i].chat_template : tmpl;
        ep->verbose = verbose;
        ep->kv_unified = kv_unified;
        ep->prefix_cache = !no_prefix;
        ep->embedding = embedding;
        ep->pooling = pooling;
        ep->interactive_step_ms = models[i].step_ms ? *models[i].step_ms : step_ms;
        ep->step_trace = getenv("NIGHTSHIFT_STEP_TRACE");
        ep->lora = models[i].lora;
        ep->n_lora = models[i].n_lora;
        gpuopts_apply(&gpu, ep);
        struct backend *be = NULL;
        if (backend_init(&bc, &be, err, sizeof(err))) {
            rc = cli_fail("%s", err);
            goto out;
        }
        struct sched_params schp = sched_default_params();
        schp.model_name = models[i].name;
        schp.window_start = win_start;
        schp.window_end = win_end;
        schp.off_hours_idle = off_idle;
        if (sched_init(schp, be, st, batchmgr_on_idle, bm, &scheds[i])) {
            backend_free(be);
            rc = cli_fail("out of memory");
            goto out;
        }
        n_scheds++;
        serve_log_model(be, models[i].name, models[i].path, parallel, islots);
    }
    /* spill-over and fail-over: each model's fallback (config.c checked the names and that
     * the chains end) */
    for (int i = 0; i < n_scheds; i++) {
        const struct config_model *cm = models[i].cm;
        if (!cm || !cm->spill_to)
            continue;
        struct sched_route_params rp = sched_default_route_params();
        rp.margin = cm->spill_margin;
        rp.turnaround_s = cm->spill_turnaround_s;
        rp.realtime_fallback = cm->on_failure_fallback;
        for (int k = 0; k < n_scheds; k++)
            if (strcmp(sched_model_name(scheds[k]), cm->spill_to) == 0)
                sched_set_fallback(scheds[i], scheds[k], rp);
    }
    for (int i = 0; i < n_scheds; i++)
        if (sched_start(scheds[i])) {
            rc = cli_fail("cannot start the engine thread");
            goto out;
        }
    if (batchmgr_start(bm)) {
        rc = cli_fail("cannot start the batch manager (store error)");
        goto out;
    }
    if (webhook_start(wh)) {
        rc = cli_fail("cannot start the webhook delivery thread");
        goto out;
    }
    if (tls_cert_path) {
        if (serve_read_pem(tls_cert_path, "--tls-cert", &tls_cert, err, sizeof(err)) ||
            serve_read_pem(tls_key_path, "--tls-key", &tls_key, err, sizeof(err))) {
            rc = cli_fail("%s", err);
            goto out;
        }
        sp.tls_cert = tls_cert;
        sp.tls_key = tls_key;
    }
    if (server_start(sp, st, scheds, n_scheds, bm, &srv, err, sizeof(err))) {
        rc = cli_fail("%s", err);
        goto out;
    }
    log_event(LOG_INFO, NULL, NULL, "listening on %s://%s:%d (data dir %s)", sp.tls_cert ? "https" : "http", host,
              server_port(srv), data_dir);
    fflush(stderr);
    for (;;) {
        int sig = serve_next_signal(&sigs, -1);
        if (sig == SIGINT || sig == SIGTERM)
            break;
        if (sig == SIGHUP)
            serve_reload(cfg ? cfg->path : NULL, scheds, n_scheds);
    }
    serve_drain(srv, scheds, n_scheds, grace, &sigs);
out:
    /* engines first: a handler waiting for its request returns only once that ends, and
     * server_stop() waits for the handlers */
    for (int i = 0; i < n_scheds; i++)
        sched_stop(scheds[i]);
    server_stop(srv);
    batchmgr_free(bm);
    webhook_free(wh);
    for (int i = 0; i < n_scheds; i++)
        sched_free(scheds[i]);
    store_close(st);
    datadir_unlock(lock_fd);
    free(tls_cert);
    free(tmpl_text);
    for (int i = 0; i < n_cli_lora; i++)
        free((char *)cli_lora[i].path);
    if (tls_key) {
        memset(tls_key, 0, strlen(tls_key));
        free(tls_key);
    }
    if (rc == 0)
        log_event(LOG_INFO, NULL, NULL, "stopped");
    return rc;
}

int cli_serve(int argc, char **argv)
{
    /* --config first: its [server] options go before the command line's */
    const char *config_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config_path = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            config_path = argv[i] + 9;
    }
    if (!config_path)
        return serve_main(argc, argv, NULL);
    struct config *cfg = NULL;
    char cerr[600];
    if (config_load(config_path, serve_config_key_ok, &cfg, cerr, sizeof(cerr)))
        return cli_fail("%s", cerr);
    int n_owned = 0;
    char **cargv = serve_config_argv(cfg, argc, argv, &argc, &n_owned);
    int rc = cargv ? serve_main(argc, cargv, cfg) : cli_fail("out of memory");
    for (int i = 1; cargv && i <= n_owned; i++)
        free(cargv[i]);
    free(cargv);
    config_free(cfg);
    return rc;
}
