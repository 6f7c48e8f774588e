/*
 * client.c — `nightshift submit | batches | status | results | cancel`: the command-line
 * client of a running `nightshift serve` (its OpenAI Batch API, docs/API.md), over HTTP
 * with libcurl.
 *
 * DESIGN
 * 1. One struct client per command: the server's base URL, the Authorization header, one
 *    curl easy handle (reused, so that polling keeps its connection open) and the body of
 *    the last answer in a capped buf. client_request() is the only place that talks HTTP;
 *    it sorts every outcome into the exit statuses: 0 a 2xx answer, 1 an error answer
 *    ("<message> (HTTP <code>, <type>[, param <p>])" from the OpenAI error object) or a
 *    local write failure, 2 no answer ("cannot reach the server at URL: <curl error>").
 *    The message is kept in c->msg; the caller prints it, or, while waiting on a batch,
 *    retries first when it may pass (no connection, 502/503/504: the server restarting;
 *    a restarted server resumes every batch).
 * 2. Uploads are streamed from disk (curl_mime_filedata); downloads are streamed to
 *    FILE.tmp and renamed into place, so a result file is complete or absent. Only a 2xx
 *    body goes to the file: an error answer is read into memory to be reported.
 * 3. `submit --wait` polls the batch with a backoff (0.5 s growing to 5 s) and shows its
 *    progress (finished lines of the total, generated tokens/s) with progress.h; Ctrl-C
 *    stops waiting, never the batch. Then both result files are written (empty when the
 *    batch has no such file, as `nightshift run` always writes both), so a result file
 *    left from an earlier submit of the same input never passes for this batch's.
 * 4. The API key comes from --api-key or NIGHTSHIFT_API_KEY, goes only into the
 *    Authorization header, and is never printed: curl is never verbose, redirects are not
 *    followed (the header would go along), and a server message that quotes it is
 *    redacted. Text from the server is printed with control characters replaced, so an
 *    answer cannot drive the terminal.
 *
 * Exit statuses: 0 done; 1 the server answered an error, or the batch failed (submit --wait:
 * also expired or cancelled); 2 bad usage, an unreadable input file, or no answer from the
 * server; 130 interrupted while waiting.
 */
#include "cli.h"
#include "../util/clock.h"
#include "progress.h"
#include "../proto/batchfile.h"

#include "../util/buf.h"
#include "../util/durable.h"
#include "../util/num.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef NIGHTSHIFT_VERSION
#define NIGHTSHIFT_VERSION "0.1.0"
#endif

#define CLIENT_DEFAULT_SERVER "http://127.0.0.1:8080"
#define CLIENT_MAX_ANSWER ((size_t)64 << 20) /* largest answer read into memory (JSON, errors) */
#define CLIENT_MAX_METADATA 16               /* as the server (and OpenAI) accept */
#define CLIENT_MAX_ID 256                    /* longest id accepted on the command line */
#define CLIENT_RETRY_SECONDS 120.0           /* --wait rides out an unreachable server this long */
#define CLIENT_POLL_FIRST 0.5                /* --wait: first poll interval, seconds */
#define CLIENT_POLL_MAX 5.0                  /* --wait: longest poll interval */
#define CLIENT_PATH_MAX 4096

/* ---- options common to every sub-command ------------------------------------------------ */

enum {
    OPT_SERVER = 1000, OPT_KEY, OPT_JSON, OPT_ENDPOINT, OPT_WINDOW, OPT_METADATA, OPT_WAIT, OPT_LIMIT, OPT_AFTER
};

#define CLIENT_COMMON_OPTIONS                                                                                   \
    {"server", required_argument, 0, OPT_SERVER}, {"api-key", required_argument, 0, OPT_KEY},                   \
        {"json", no_argument, 0, OPT_JSON}, {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}

static const char client_common_usage[] =
    "      --server URL     the nightshift server (default: $NIGHTSHIFT_SERVER, else " CLIENT_DEFAULT_SERVER ")\n"
    "      --api-key KEY    sent as 'Authorization: Bearer KEY' (default: $NIGHTSHIFT_API_KEY, which\n"
    "                       other users cannot see, unlike a command line)\n"
    "      --json           print the server's JSON object instead of text\n"
    "  -q, --quiet          no progress and no notes on stderr\n"
    "  -h, --help           this text\n";

struct common_opts {
    const char *server, *api_key;
    bool json, quiet;
};

/* one of the options every sub-command takes; false when ch is not one of them */
static bool client_common_opt(struct common_opts *o, int ch, const char *arg)
{
    switch (ch) {
    case OPT_SERVER: o->server = arg; return true;
    case OPT_KEY: o->api_key = arg; return true;
    case OPT_JSON: o->json = true; return true;
    case 'q': o->quiet = true; return true;
    default: return false;
    }
}

/* ---- the client ------------------------------------------------------------------------- */

struct client {
    char base[2048];               /* server URL, no trailing '/' */
    char shown[2048];              /* the same without user:password@, for messages */
    const char *api_key;           /* NULL: none */
    bool json, quiet;
    bool curl_inited;
    CURL *curl;
    struct curl_slist *hdr;        /* Authorization (with a key), no Expect: 100-continue wait */
    struct curl_slist *hdr_json;   /* the same + Content-Type: application/json */
    struct buf resp;               /* body of the last answer (unless streamed to a file) */
    long http;                     /* HTTP status of the last answer; 0: none */
    bool retryable;                /* the last failure may pass (no answer, 502/503/504) */
    char msg[16384];               /* the last failure, for "nightshift: <msg>" */
    char errbuf[CURL_ERROR_SIZE];
};

struct request {
    const char *method;  /* "GET" or "POST" */
    const char *path;    /* appended to the base URL: "/v1/batches/..." */
    const char *json;    /* POST body (application/json); NULL: none */
    curl_mime *mime;     /* POST body (multipart/form-data) */
    FILE *to;            /* a 2xx body is written here, not into c->resp */
    const char *to_name; /* for messages about writing `to` */
};

struct sink {
    struct client *c;
    FILE *to;
    bool write_failed, too_large;
    int err;
};

static volatile sig_atomic_t client_interrupted;

static void client_on_signal(int sig)
{
    (void)sig;
    client_interrupted = 1;
}

/* print s with control characters (terminal escapes from an answer) replaced by '?' */
static void client_put_clean(FILE *f, const char *s)
{
    for (; s && *s; s++)
        fputc(((unsigned char)*s < 0x20 || *s == 0x7f) && *s != '\t' ? '?' : *s, f);
}

static void client_clean_copy(char *out, size_t n, const char *s)
{
    size_t i = 0;
    for (; s && *s && i + 1 < n; s++)
        out[i++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
    out[i] = '\0';
}

/* replace each occurrence of the API key in c->msg by "***" */
static void client_redact(struct client *c)
{
    if (!c->api_key || strlen(c->api_key) < 4)
        return;
    size_t kl = strlen(c->api_key);
    char *p;
    while ((p = strstr(c->msg, c->api_key)) != NULL) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + kl, strlen(p + kl) + 1);
    }
}

static int client_report(struct client *c, int rc)
{
    client_redact(c);
    fputs("nightshift: ", stderr);
    client_put_clean(stderr, c->msg);
    fputc('\n', stderr);
    return rc;
}

static int client_add_header(struct curl_slist **list, const char *header)
{
    struct curl_slist *l = curl_slist_append(*list, header);
    if (!l)
        return -1;
    *list = l;
    return 0;
}

static int client_open(struct client *c, const struct common_opts *o)
{
    memset(c, 0, sizeof(*c));
    buf_init(&c->resp, CLIENT_MAX_ANSWER);
    c->json = o->json;
    c->quiet = o->quiet;
    const char *server = o->server;
    if (!server || !*server)
        server = getenv("NIGHTSHIFT_SERVER");
    if (!server || !*server)
        server = CLIENT_DEFAULT_SERVER;
    int n = snprintf(c->base, sizeof(c->base), "%s%s", strstr(server, "://") ? "" : "http://", server);
    if (n < 0 || (size_t)n >= sizeof(c->base))
        return cli_fail("the server URL is too long");
    for (const char *s = c->base; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return cli_fail("the server URL must not contain spaces or control characters");
    size_t len = strlen(c->base);
    while (len > 0 && c->base[len - 1] == '/')
        c->base[--len] = '\0';
    /* shown: scheme://host... without user:password@ */
    const char *auth = strstr(c->base, "://") + 3;
    const char *slash = strchr(auth, '/');
    const char *at = strchr(auth, '@');
    if (at && (!slash || at < slash))
        snprintf(c->shown, sizeof(c->shown), "%.*s%s", (int)(auth - c->base), c->base, at + 1);
    else
        snprintf(c->shown, sizeof(c->shown), "%s", c->base);

    c->api_key = o->api_key && *o->api_key ? o->api_key : getenv("NIGHTSHIFT_API_KEY");
    if (c->api_key && !*c->api_key)
        c->api_key = NULL;
    if (c->api_key)
        for (const char *s = c->api_key; *s; s++)
            if ((unsigned char)*s < 0x20 || *s == 0x7f)
                return cli_fail("the API key must not contain control characters");

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return cli_fail("cannot initialise libcurl");
    c->curl_inited = true;
    c->curl = curl_easy_init();
    if (!c->curl)
        return cli_fail("cannot initialise libcurl");
    struct buf h;
    buf_init(&h, 64 * 1024);
    int rc = 0;
    if (c->api_key && buf_appendf(&h, "Authorization: Bearer %s", c->api_key)) {
        rc = cli_fail("the API key is too long");
        goto out;
    }
    for (int i = 0; i < 2 && !rc; i++) {
        struct curl_slist **l = i ? &c->hdr_json : &c->hdr;
        if (client_add_header(l, "Expect:") || (c->api_key && client_add_header(l, h.p)) ||
            (i && client_add_header(l, "Content-Type: application/json")))
            rc = cli_fail("out of memory");
    }
out:
    if (h.p)
        memset(h.p, 0, h.len);
    buf_release(&h);
    return rc;
}

static void client_close(struct client *c)
{
    curl_slist_free_all(c->hdr);
    curl_slist_free_all(c->hdr_json);
    if (c->curl)
        curl_easy_cleanup(c->curl);
    if (c->curl_inited)
        curl_global_cleanup();
    buf_release(&c->resp);
}

static size_t client_on_data(char *p, size_t size, size_t n, void *ud)
{
    struct sink *s = ud;
    size_t len = size * n;
    long code = 0;
    curl_easy_getinfo(s->c->curl, CURLINFO_RESPONSE_CODE, &code);
    if (s->to && code >= 200 && code < 300) {
        if (fwrite(p, 1, len, s->to) != len) {
            s->write_failed = true;
            s->err = errno;
            return 0;
        }
        return len;
    }
    if (buf_append(&s->c->resp, p, len)) {
        s->too_large = true;
        return 0;
    }
    return len;
}

/* c->msg from an error answer: the OpenAI error object (or Anthropic's: the same fields) */
static void client_error_message(struct client *c)
{
    cJSON *root = c->resp.p ? cJSON_ParseWithLength(c->resp.p, c->resp.len) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "type");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "param");
    if (cJSON_IsString(m)) {
        int n = snprintf(c->msg, sizeof(c->msg), "%s (HTTP %ld, %s", m->valuestring, c->http,
                         cJSON_IsString(t) ? t->valuestring : "error");
        size_t used = n < 0 ? 0 : (size_t)n < sizeof(c->msg) ? (size_t)n : sizeof(c->msg) - 1;
        if (cJSON_IsString(p))
            snprintf(c->msg + used, sizeof(c->msg) - used, ", param %s)", p->valuestring);
        else
            snprintf(c->msg + used, sizeof(c->msg) - used, ")");
    } else {
        snprintf(c->msg, sizeof(c->msg), "the server at %s answered HTTP %ld%s", c->shown, c->http,
                 c->http == 404 ? " (is it a nightshift server?)" : "");
    }
    cJSON_Delete(root);
}

/* One HTTP exchange. 0: a 2xx answer, its body in c->resp (or written to r->to);
 * 1: an error answer, or the body could not be kept; 2: no answer. c->msg says why. */
static int client_request(struct client *c, const struct request *r)
{
    char url[CLIENT_PATH_MAX + 2048];
    struct sink s = {.c = c, .to = r->to};
    buf_reset(&c->resp);
    c->http = 0;
    c->retryable = false;
    c->msg[0] = '\0';
    c->errbuf[0] = '\0';
    int n = snprintf(url, sizeof(url), "%s%s", c->base, r->path);
    if (n < 0 || (size_t)n >= sizeof(url)) {
        snprintf(c->msg, sizeof(c->msg), "the request URL is too long");
        return 2;
    }
    CURL *h = c->curl;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "nightshift/" NIGHTSHIFT_VERSION);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    /* no overall timeout (a download may be large); a stalled server is given up on */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 300L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, client_on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, r->json ? c->hdr_json : c->hdr);
    if (r->mime) {
        curl_easy_setopt(h, CURLOPT_MIMEPOST, r->mime);
    } else if (strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->json ? r->json : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(r->json ? strlen(r->json) : 0));
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    CURLcode cc = curl_easy_perform(h);
    if (cc == CURLE_WRITE_ERROR && s.write_failed) {
        snprintf(c->msg, sizeof(c->msg), "cannot write '%s': %s", r->to_name ? r->to_name : "the output",
                 strerror(s.err));
        return 1;
    }
    if (cc == CURLE_WRITE_ERROR && s.too_large) {
        snprintf(c->msg, sizeof(c->msg), "the answer of the server at %s is larger than %zu bytes", c->shown,
                 CLIENT_MAX_ANSWER);
        return 1;
    }
    if (cc != CURLE_OK) {
        snprintf(c->msg, sizeof(c->msg), "cannot reach the server at %s: %s", c->shown,
                 c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
        c->retryable = true;
        return 2;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->http);
    if (c->http >= 200 && c->http < 300)
        return 0;
    client_error_message(c);
    c->retryable = c->http == 502 || c->http == 503 || c->http == 504;
    return 1;
}

/* a request answered by a JSON object: 0 and *out (cJSON_Delete it), else as client_request */
static int client_json(struct client *c, const char *method, const char *path, const char *body, curl_mime *mime,
                       cJSON **out)
{
    *out = NULL;
    struct request r = {.method = method, .path = path, .json = body, .mime = mime};
    int rc = client_request(c, &r);
    if (rc)
        return rc;
    cJSON *o = cJSON_ParseWithLength(c->resp.p ? c->resp.p : "", c->resp.len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        snprintf(c->msg, sizeof(c->msg), "the server at %s answered %s %s with something other than a JSON object",
                 c->shown, method, path);
        return 1;
    }
    *out = o;
    return 0;
}

/* prefix + the id, URL-escaped + suffix */
static int client_id_path(struct client *c, char *out, size_t n, const char *prefix, const char *id,
                          const char *suffix)
{
    char *e = curl_easy_escape(c->curl, id, 0);
    if (!e)
        return cli_fail("out of memory");
    int k = snprintf(out, n, "%s%s%s", prefix, e, suffix);
    curl_free(e);
    if (k < 0 || (size_t)k >= n)
        return cli_fail("the id is too long");
    return 0;
}

/* GET path into dest ("-": stdout), a file written durably (util/durable.h): complete or absent */
static int client_download(struct client *c, const char *path, const char *dest)
{
    bool to_stdout = strcmp(dest, "-") == 0;
    FILE *f = stdout;
    struct durable d;
    durable_init(&d);
    if (!to_stdout) {
        if (durable_open_mode(&d, dest, DURABLE_MODE_UMASK) || !(f = durable_stream(&d))) {
            snprintf(c->msg, sizeof(c->msg), "cannot write '%.300s': %s", dest, strerror(errno));
            durable_rollback(&d);
            return 1;
        }
    }
    struct request r = {.method = "GET", .path = path, .to = f, .to_name = to_stdout ? "stdout" : dest};
    int rc = client_request(c, &r);
    if (to_stdout) {
        if (fflush(stdout) && !rc) {
            snprintf(c->msg, sizeof(c->msg), "cannot write to stdout: %s", strerror(errno));
            rc = 1;
        }
        return rc;
    }
    if (!rc && durable_commit(&d)) {
        snprintf(c->msg, sizeof(c->msg), "cannot write '%.300s': %s", dest, strerror(errno));
        rc = 1;
    }
    durable_rollback(&d);
    return rc;
}

/* a batch output file into dest: its content when the batch has one (id), else empty */
static int client_fetch_file(struct client *c, const char *id, const char *dest)
{
    char path[CLIENT_PATH_MAX];
    if (id) {
        if (client_id_path(c, path, sizeof(path), "/v1/files/", id, "/content"))
            return 2;
        return client_download(c, path, dest);
    }
    if (strcmp(dest, "-") == 0)
        return 0;
    FILE *f = fopen(dest, "wb");
    if (!f || fclose(f)) {
        snprintf(c->msg, sizeof(c->msg), "cannot write '%s': %s", dest, strerror(errno));
        return 1;
    }
    return 0;
}

/* ---- batch objects ---------------------------------------------------------------------- */

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static unsigned long long jcount(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) && v->valuedouble > 0 ? (unsigned long long)v->valuedouble : 0;
}

static unsigned long long jcount2(const cJSON *o, const char *k1, const char *k2)
{
    return jcount(cJSON_GetObjectItemCaseSensitive(o, k1), k2);
}

static bool client_status_ended(const char *s)
{
    return s && (!strcmp(s, "completed") || !strcmp(s, "failed") || !strcmp(s, "expired") || !strcmp(s, "cancelled"));
}

static void client_time(const cJSON *b, const char *k, char *out, size_t n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, k);
    struct tm tm;
    time_t t = cJSON_IsNumber(v) ? (time_t)v->valuedouble : 0;
    if (t <= 0 || !localtime_r(&t, &tm) || !strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(out, n, "-");
}

static void client_print_json(const cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
    }
    free(s);
}

/* the errors of a batch (a failed one: its input lines that failed validation) */
static void client_print_batch_errors(const cJSON *b, FILE *f)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "errors"), "data");
    const cJSON *e;
    cJSON_ArrayForEach(e, data)
    {
        const cJSON *line = cJSON_GetObjectItemCaseSensitive(e, "line");
        const char *code = jstr(e, "code");
        if (cJSON_IsNumber(line))
            fprintf(f, "  line %lld [", (long long)line->valuedouble);
        else
            fputs("  [", f);
        client_put_clean(f, code ? code : "error");
        fputs("]: ", f);
        client_put_clean(f, jstr(e, "message"));
        fputc('\n', f);
    }
}

static void client_print_counts(const cJSON *b, FILE *f)
{
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(b, "usage");
    fprintf(f, "  requests     %llu total: %llu completed, %llu failed\n", jcount2(b, "request_counts", "total"),
            jcount2(b, "request_counts", "completed"), jcount2(b, "request_counts", "failed"));
    fprintf(f, "  tokens       input %llu (cached %llu), output %llu, total %llu\n", jcount(u, "input_tokens"),
            jcount2(u, "input_tokens_details", "cached_tokens"), jcount(u, "output_tokens"), jcount(u, "total_tokens"));
}

/* "status, counts, usage, timestamps, file ids, errors" of a batch, for `status` */
static void client_print_batch(const cJSON *b)
{
    static const struct {
        const char *key, *label;
    } times[] = {{"created_at", "created"},       {"in_progress_at", "in progress"}, {"finalizing_at", "finalizing"},
                 {"completed_at", "completed"},   {"failed_at", "failed"},           {"expired_at", "expired"},
                 {"cancelling_at", "cancelling"}, {"cancelled_at", "cancelled"},     {"expires_at", "expires"}};
    static const struct {
        const char *key, *label;
    } fields[] = {{"status", "status"}, {"endpoint", "endpoint"}, {"model", "model"},
                  {"completion_window", "window"}};
    static const struct {
        const char *key, *label;
    } files[] = {{"input_file_id", "input file"}, {"output_file_id", "output file"}, {"error_file_id", "error file"}};
    char ts[64];
    client_put_clean(stdout, jstr(b, "id"));
    fputc('\n', stdout);
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        printf("  %-12s ", fields[i].label);
        const char *v = jstr(b, fields[i].key);
        client_put_clean(stdout, v ? v : "-");
        fputc('\n', stdout);
    }
    client_print_counts(b, stdout);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        const char *v = jstr(b, files[i].key);
        printf("  %-12s ", files[i].label);
        client_put_clean(stdout, v ? v : "-");
        fputc('\n', stdout);
    }
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        client_time(b, times[i].key, ts, sizeof(ts));
        if (strcmp(ts, "-"))
            printf("  %-12s %s\n", times[i].label, ts);
    }
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(b, "metadata");
    if (cJSON_IsObject(md) && md->child) {
        const cJSON *kv;
        printf("  %-12s", "metadata");
        cJSON_ArrayForEach(kv, md)
        {
            fputc(' ', stdout);
            client_put_clean(stdout, kv->string);
            fputc('=', stdout);
            client_put_clean(stdout, cJSON_IsString(kv) ? kv->valuestring : "?");
        }
        fputc('\n', stdout);
    }
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "errors"), "data");
    if (cJSON_GetArraySize(data) > 0) {
        printf("  errors\n");
        client_print_batch_errors(b, stdout);
    }
}

/* ---- --wait ----------------------------------------------------------------------------- */

/* sleep s seconds; true when interrupted meanwhile */
static bool client_sleep(double s)
{
    double end = clock_now() + s;
    while (!client_interrupted) {
        double left = end - clock_now();
        if (left <= 0)
            return false;
        if (left > 0.1)
            left = 0.1;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(left * 1e9)};
        nanosleep(&ts, NULL);
    }
    return true;
}

/* Poll the batch until it ends; *out: the ended batch. 130 when interrupted. */
static int client_wait(struct client *c, const char *id, cJSON **out)
{
    char path[CLIENT_PATH_MAX];
    struct progress prog;
    bool shown = false;
    double delay = CLIENT_POLL_FIRST, failing_since = 0;
    int rc = 0;
    struct sigaction sa, old_int;
    *out = NULL;
    if (client_id_path(c, path, sizeof(path), "/v1/batches/", id, ""))
        return 2;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = client_on_signal;
    sigaction(SIGINT, &sa, &old_int);
    for (;;) {
        cJSON *b = NULL;
        rc = client_json(c, "GET", path, NULL, NULL, &b);
        if (rc && c->retryable && !client_interrupted) {
            /* the server restarting: it resumes the batch, so keep waiting a while */
            double now = clock_now();
            if (!failing_since) {
                failing_since = now;
                if (!c->quiet) {
                    client_redact(c);
                    if (shown && prog.tty && prog.drawn)
                        fputc('\n', stderr);
                    fputs("nightshift: ", stderr);
                    client_put_clean(stderr, c->msg);
                    fprintf(stderr, "; retrying for up to %.0f s\n", CLIENT_RETRY_SECONDS);
                }
            }
            if (now - failing_since < CLIENT_RETRY_SECONDS) {
                if (client_sleep(CLIENT_POLL_MAX)) {
                    rc = 130;
                    goto out;
                }
                continue;
            }
        }
        if (rc)
            goto out;
        failing_since = 0;
        const char *status = jstr(b, "status");
        uint64_t total = jcount2(b, "request_counts", "total");
        uint64_t done = jcount2(b, "request_counts", "completed") + jcount2(b, "request_counts", "failed");
        uint64_t tokens = jcount2(b, "usage", "output_tokens");
        bool ended = client_status_ended(status);
        if (!shown && total > 0 && !ended) {
            progress_init(&prog, total, c->quiet, 10);
            shown = true;
        }
        if (ended) {
            if (shown) {
                prog.done = done; /* the last line: drawn once, by progress_finish */
                prog.tokens = tokens;
            }
            *out = b;
            goto out;
        }
        if (shown)
            progress_update(&prog, done, tokens);
        cJSON_Delete(b);
        if (client_sleep(delay)) {
            rc = 130;
            goto out;
        }
        delay = delay * 1.5 < CLIENT_POLL_MAX ? delay * 1.5 : CLIENT_POLL_MAX;
    }
out:
    sigaction(SIGINT, &old_int, NULL);
    if (shown)
        progress_finish(&prog);
    if (rc == 130) {
        fputs("nightshift: stopped waiting; the batch goes on: 'nightshift status ", stderr);
        client_put_clean(stderr, id);
        fputs("' shows it, 'nightshift cancel ", stderr);
        client_put_clean(stderr, id);
        fputs("' stops it\n", stderr);
    } else if (rc) {
        client_report(c, rc);
    }
    return rc;
}

/* ---- submit ----------------------------------------------------------------------------- */

struct submit_opts {
    struct common_opts co;
    const char *file, *endpoint, *window, *output, *errors;
    const char *metadata[CLIENT_MAX_METADATA];
    int n_metadata;
    bool wait;
};

static void submit_usage(FILE *f)
{
    fputs("usage: nightshift submit FILE.jsonl [options]\n"
          "\n"
          "Uploads an OpenAI Batch input file to a nightshift server and creates a batch; prints\n"
          "its id. With --wait, follows it to the end and downloads its result files.\n"
          "\n"
          "      --endpoint PATH  /v1/chat/completions, /v1/completions, /v1/embeddings or\n"
          "                       /v1/responses (default: the url of the file's first line, else\n"
          "                       /v1/chat/completions)\n"
          "      --window W       completion window: 24h (default), or a duration like 90m\n"
          "      --metadata K=V   a metadata pair of the batch (repeatable, at most 16)\n"
          "      --wait           wait for the batch to end, showing its progress, then write\n"
          "                       its result files and a summary\n"
          "  -o, --output FILE    with --wait: where the results go (default: FILE with\n"
          "                       .results.jsonl for .jsonl)\n"
          "  -e, --errors FILE    with --wait: where the failed lines go (default: FILE with\n"
          "                       .errors.jsonl, or OUTPUT's with .errors.jsonl when -o is given)\n",
          f);
    fputs(client_common_usage, f);
    fputs("\n"
          "With -q, only the batch id is printed. Exit status: 0 created (with --wait: completed;\n"
          "some lines may have failed: see the error file), 1 the server refused it, or with\n"
          "--wait the batch failed, expired or was cancelled, 2 bad usage, an unreadable FILE or\n"
          "no server, 130 interrupted while waiting (the batch goes on).\n",
          f);
}

static int submit_parse_args(int argc, char **argv, struct submit_opts *o)
{
    static const struct option lo[] = {
        {"endpoint", required_argument, 0, OPT_ENDPOINT}, {"window", required_argument, 0, OPT_WINDOW},
        {"metadata", required_argument, 0, OPT_METADATA}, {"wait", no_argument, 0, OPT_WAIT},
        {"output", required_argument, 0, 'o'},            {"errors", required_argument, 0, 'e'},
        CLIENT_COMMON_OPTIONS,                            {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "o:e:qh", lo, NULL)) != -1) {
        if (client_common_opt(&o->co, ch, optarg))
            continue;
        switch (ch) {
        case OPT_ENDPOINT: o->endpoint = optarg; break;
        case OPT_WINDOW: o->window = optarg; break;
        case OPT_METADATA: {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg)
                return cli_fail("--metadata must be KEY=VALUE, not '%s'", optarg);
            if (o->n_metadata == CLIENT_MAX_METADATA)
                return cli_fail("at most %d --metadata pairs", CLIENT_MAX_METADATA);
            o->metadata[o->n_metadata++] = optarg;
            break;
        }
        case OPT_WAIT: o->wait = true; break;
        case 'o': o->output = optarg; break;
        case 'e': o->errors = optarg; break;
        case 'h': submit_usage(stdout); return -1;
        default: submit_usage(stderr); return 2;
        }
    }
    if (optind < argc)
        o->file = argv[optind++];
    if (optind < argc)
        return cli_fail("unexpected argument '%s' (one input file per batch)", argv[optind]);
    if (!o->file) {
        submit_usage(stderr);
        return cli_fail("no input file given");
    }
    if ((o->output || o->errors) && !o->wait)
        return cli_fail("-o and --errors need --wait (or use 'nightshift results ID -o FILE' later)");
    if ((o->output && strcmp(o->output, "-") == 0) || (o->errors && strcmp(o->errors, "-") == 0))
        return cli_fail("submit --wait writes files; use 'nightshift results ID' for stdout");
    return 0;
}

/* The "url" of the first non-blank line of the file, when it is a known endpoint. */
static const char *submit_guess_endpoint(const char *path)
{
    enum { PEEK = 1 << 20 };
    const char *found = NULL;
    char *data = malloc(PEEK + 1);
    FILE *f = fopen(path, "rb");
    if (!data || !f)
        goto out;
    size_t n = fread(data, 1, PEEK, f);
    data[n] = '\0';
    size_t i = 0;
    while (i < n && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
        i++;
    char *nl = memchr(data + i, '\n', n - i);
    if (!nl && n == PEEK)
        goto out; /* the first line is longer than what we read */
    size_t len = nl ? (size_t)(nl - (data + i)) : n - i;
    cJSON *line = cJSON_ParseWithLength(data + i, len);
    /* the endpoints an OpenAI batch takes (a Message Batch is `nightshift submit`'s other
     * route, not this one) */
    enum batchfile_url u = batchfile_url_of(jstr(line, "url"));
    if (u && u != BATCHFILE_URL_MESSAGES)
        found = batchfile_url_path(u);
    cJSON_Delete(line);
out:
    if (f)
        fclose(f);
    free(data);
    return found;
}

/* in.jsonl -> in<suffix>; any other name -> name<suffix> */
static int client_derive_path(const char *from, const char *suffix, char *out, size_t n)
{
    size_t len = strlen(from);
    int k;
    if (len > 6 && strcmp(from + len - 6, ".jsonl") == 0)
        k = snprintf(out, n, "%.*s%s", (int)(len - 6), from, suffix);
    else
        k = snprintf(out, n, "%s%s", from, suffix);
    return k < 0 || (size_t)k >= n ? cli_fail("the path '%.200s' is too long", from) : 0;
}

static int client_copy_path(const char *from, char *out, size_t n)
{
    int k = snprintf(out, n, "%s", from);
    return k < 0 || (size_t)k >= n ? cli_fail("the path '%.200s' is too long", from) : 0;
}

/* fail early, before a long wait, when a result file cannot be written */
static int client_check_writable(const char *path)
{
    char tmp[CLIENT_PATH_MAX + 8];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return cli_fail("the path '%.200s' is too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return cli_fail("cannot write '%s': %s", tmp, strerror(errno));
    fclose(f);
    unlink(tmp);
    return 0;
}

static char *submit_create_body(const struct submit_opts *o, const char *file_id, const char *endpoint)
{
    char *text = NULL;
    cJSON *body = cJSON_CreateObject();
    if (!body || !cJSON_AddStringToObject(body, "input_file_id", file_id) ||
        !cJSON_AddStringToObject(body, "endpoint", endpoint) ||
        !cJSON_AddStringToObject(body, "completion_window", o->window))
        goto out;
    if (o->n_metadata) {
        cJSON *md = cJSON_AddObjectToObject(body, "metadata");
        if (!md)
            goto out;
        for (int i = 0; i < o->n_metadata; i++) {
            const char *kv = o->metadata[i], *eq = strchr(kv, '=');
            char key[256];
            snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
            cJSON_DeleteItemFromObjectCaseSensitive(md, key); /* the last one given wins */
            if (!cJSON_AddStringToObject(md, key, eq + 1))
                goto out;
        }
    }
    text = cJSON_PrintUnformatted(body);
out:
    cJSON_Delete(body);
    return text;
}

/* what --wait prints and returns once the batch ended */
static int submit_finish(struct client *c, const cJSON *b, const char *out_path, const char *err_path)
{
    const char *id = jstr(b, "id"), *status = jstr(b, "status");
    int rc;
    if (!strcmp(status, "failed")) {
        fputs("nightshift: batch ", stderr);
        client_put_clean(stderr, id);
        fputs(" failed", stderr);
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "errors"), "data");
        fputs(cJSON_GetArraySize(data) ? ": the input failed validation; nothing was run\n" : "\n", stderr);
        client_print_batch_errors(b, stderr);
        if (c->json)
            client_print_json(b);
        return 1;
    }
    if ((rc = client_fetch_file(c, jstr(b, "output_file_id"), out_path)) ||
        (rc = client_fetch_file(c, jstr(b, "error_file_id"), err_path))) {
        client_report(c, rc);
        fputs("nightshift: the results stay on the server: 'nightshift results ", stderr);
        client_put_clean(stderr, id);
        fputs(" -o FILE' gets them\n", stderr);
        return rc;
    }
    if (c->json) {
        client_print_json(b);
    } else if (!c->quiet) {
        char t0[64], t1[64];
        const char *end_key = !strcmp(status, "completed") ? "completed_at"
                              : !strcmp(status, "expired") ? "expired_at"
                                                           : "cancelled_at";
        client_time(b, "created_at", t0, sizeof(t0));
        client_time(b, end_key, t1, sizeof(t1));
        client_put_clean(stdout, id);
        printf(" %s\n", status);
        client_print_counts(b, stdout);
        printf("  time         created %s, ended %s\n", t0, t1);
        printf("  output       %s\n  errors       %s\n", out_path, err_path);
    }
    if (strcmp(status, "completed")) {
        unsigned long long total = jcount2(b, "request_counts", "total");
        unsigned long long ok = jcount2(b, "request_counts", "completed");
        fputs("nightshift: batch ", stderr);
        client_put_clean(stderr, id);
        fprintf(stderr, " %s: %llu of %llu lines succeeded; the others are in the error file\n", status, ok, total);
        return 1;
    }
    return 0;
}

int cli_submit(int argc, char **argv)
{
    struct submit_opts o;
    memset(&o, 0, sizeof(o));
    o.window = "24h";
    struct client c;
    cJSON *file = NULL, *batch = NULL, *final = NULL;
    curl_mime *mime = NULL;
    char *body = NULL;
    char out_path[CLIENT_PATH_MAX], err_path[CLIENT_PATH_MAX];
    struct stat st;
    int rc = submit_parse_args(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : 2;
    memset(&c, 0, sizeof(c));
    if ((rc = client_open(&c, &o.co)))
        goto out;

    FILE *probe = fopen(o.file, "rb");
    if (!probe || stat(o.file, &st) || !S_ISREG(st.st_mode)) {
        rc = cli_fail("cannot read '%s': %s", o.file, !probe ? strerror(errno) : "not a regular file");
        if (probe)
            fclose(probe);
        goto out;
    }
    fclose(probe);
    if (!o.endpoint)
        o.endpoint = submit_guess_endpoint(o.file);
    if (!o.endpoint)
        o.endpoint = "/v1/chat/completions";
    if (o.wait) {
        if ((rc = o.output ? client_copy_path(o.output, out_path, sizeof(out_path))
                           : client_derive_path(o.file, ".results.jsonl", out_path, sizeof(out_path))) ||
            (rc = o.errors ? client_copy_path(o.errors, err_path, sizeof(err_path))
                           : client_derive_path(o.output ? o.output : o.file, ".errors.jsonl", err_path,
                                                sizeof(err_path))))
            goto out;
        if ((rc = client_check_writable(out_path)) || (rc = client_check_writable(err_path)))
            goto out;
    }

    /* 1. upload, streamed from disk */
    curl_mimepart *part;
    mime = curl_mime_init(c.curl);
    if (!mime || !(part = curl_mime_addpart(mime)) || curl_mime_name(part, "purpose") ||
        curl_mime_data(part, "batch", CURL_ZERO_TERMINATED) || !(part = curl_mime_addpart(mime)) ||
        curl_mime_name(part, "file") || curl_mime_filedata(part, o.file) ||
        curl_mime_type(part, "application/jsonl")) {
        rc = cli_fail("cannot prepare the upload of '%s'", o.file);
        goto out;
    }
    if ((rc = client_json(&c, "POST", "/v1/files", NULL, mime, &file))) {
        client_report(&c, rc);
        goto out;
    }
    const char *file_id = jstr(file, "id");
    if (!file_id) {
        snprintf(c.msg, sizeof(c.msg), "the server at %s answered the upload without a file id", c.shown);
        rc = client_report(&c, 1);
        goto out;
    }

    /* 2. the batch */
    body = submit_create_body(&o, file_id, o.endpoint);
    if (!body) {
        rc = cli_fail("out of memory");
        goto out;
    }
    if ((rc = client_json(&c, "POST", "/v1/batches", body, NULL, &batch))) {
        client_report(&c, rc);
        goto out;
    }
    const char *id = jstr(batch, "id");
    if (!id) {
        snprintf(c.msg, sizeof(c.msg), "the server at %s answered the batch creation without a batch id", c.shown);
        rc = client_report(&c, 1);
        goto out;
    }
    if (c.quiet && !c.json) {
        client_put_clean(stdout, id);
        fputc('\n', stdout);
    } else if (!c.json || !o.wait) {
        if (c.json) {
            client_print_json(batch);
        } else {
            client_put_clean(stdout, id);
            fputs(" created (", stdout);
            client_put_clean(stdout, jstr(batch, "status") ? jstr(batch, "status") : "?");
            fputs(")\n", stdout);
        }
    }
    fflush(stdout);
    if (!o.wait) {
        rc = 0;
        goto out;
    }

    /* 3. --wait */
    if ((rc = client_wait(&c, id, &final)))
        goto out;
    rc = submit_finish(&c, final, out_path, err_path);
out:
    cJSON_Delete(file);
    cJSON_Delete(batch);
    cJSON_Delete(final);
    cJSON_free(body);
    curl_mime_free(mime);
    client_close(&c);
    return rc;
}

/* ---- batches ---------------------------------------------------------------------------- */

static void batches_usage(FILE *f)
{
    fputs("usage: nightshift batches [options]\n"
          "\n"
          "Lists the batches of a nightshift server, newest first: ID, STATUS, ENDPOINT, MODEL,\n"
          "DONE/TOTAL (lines finished, successfully or not), FAILED, CREATED (local time).\n"
          "\n"
          "      --limit N        at most N batches (1 to 100, default 20)\n"
          "      --after ID       the batches after this one (the next page)\n",
          f);
    fputs(client_common_usage, f);
    fputs("\nExit status: 0 listed, 1 the server answered an error, 2 bad usage or no server.\n", f);
}

static void batches_table(const cJSON *list)
{
    enum { CELL = 80 };
    static const char *const head[] = {"ID", "STATUS", "ENDPOINT", "MODEL", "DONE/TOTAL", "FAILED", "CREATED"};
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(list, "data");
    const cJSON *b;
    int w[7];
    char cell[7][CELL];
    for (int i = 0; i < 7; i++)
        w[i] = (int)strlen(head[i]);
    if (cJSON_GetArraySize(data) == 0) {
        printf("no batches\n");
        return;
    }
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            printf("%-*s  %-*s  %-*s  %-*s  %*s  %*s  %s\n", w[0], head[0], w[1], head[1], w[2], head[2], w[3],
                   head[3], w[4], head[4], w[5], head[5], head[6]);
        cJSON_ArrayForEach(b, data)
        {
            const char *model = jstr(b, "model");
            client_clean_copy(cell[0], CELL, jstr(b, "id") ? jstr(b, "id") : "?");
            client_clean_copy(cell[1], CELL, jstr(b, "status") ? jstr(b, "status") : "?");
            client_clean_copy(cell[2], CELL, jstr(b, "endpoint") ? jstr(b, "endpoint") : "-");
            client_clean_copy(cell[3], CELL, model ? model : "-");
            snprintf(cell[4], CELL, "%llu/%llu",
                     jcount2(b, "request_counts", "completed") + jcount2(b, "request_counts", "failed"),
                     jcount2(b, "request_counts", "total"));
            snprintf(cell[5], CELL, "%llu", jcount2(b, "request_counts", "failed"));
            client_time(b, "created_at", cell[6], CELL);
            if (pass == 0) {
                for (int i = 0; i < 7; i++)
                    if ((int)strlen(cell[i]) > w[i])
                        w[i] = (int)strlen(cell[i]);
            } else {
                printf("%-*s  %-*s  %-*s  %-*s  %*s  %*s  %s\n", w[0], cell[0], w[1], cell[1], w[2], cell[2], w[3],
                       cell[3], w[4], cell[4], w[5], cell[5], cell[6]);
            }
        }
    }
}

int cli_batches(int argc, char **argv)
{
    static const struct option lo[] = {{"limit", required_argument, 0, OPT_LIMIT},
                                       {"after", required_argument, 0, OPT_AFTER},
                                       CLIENT_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
    struct common_opts co;
    memset(&co, 0, sizeof(co));
    long long limit = 20;
    const char *after = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "qh", lo, NULL)) != -1) {
        if (client_common_opt(&co, ch, optarg))
            continue;
        switch (ch) {
        case OPT_LIMIT:
            if (num_parse_long(optarg, 1, 100, &limit))
                return cli_fail("--limit must be an integer from 1 to 100, not '%s'", optarg);
            break;
        case OPT_AFTER:
            if (strlen(optarg) > CLIENT_MAX_ID)
                return cli_fail("--after: that is not a batch id");
            after = optarg;
            break;
        case 'h': batches_usage(stdout); return 0;
        default: batches_usage(stderr); return 2;
        }
    }
    if (optind < argc)
        return cli_fail("unexpected argument '%s'", argv[optind]);

    struct client c;
    cJSON *list = NULL;
    char path[CLIENT_PATH_MAX], lim[32];
    int rc = client_open(&c, &co);
    if (rc)
        goto out;
    snprintf(lim, sizeof(lim), "/v1/batches?limit=%lld%s", limit, after ? "&after=" : "");
    if ((rc = client_id_path(&c, path, sizeof(path), lim, after ? after : "", "")))
        goto out;
    if ((rc = client_json(&c, "GET", path, NULL, NULL, &list))) {
        client_report(&c, rc);
        goto out;
    }
    if (c.json) {
        client_print_json(list);
    } else {
        batches_table(list);
        const char *last = jstr(list, "last_id");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(list, "has_more")) && last && !c.quiet) {
            fputs("nightshift: more: nightshift batches --after ", stderr);
            client_put_clean(stderr, last);
            fputc('\n', stderr);
        }
    }
    rc = 0;
out:
    cJSON_Delete(list);
    client_close(&c);
    return rc;
}

/* ---- status, results, cancel: one batch id ---------------------------------------------- */

struct id_opts {
    struct common_opts co;
    const char *id, *output, *errors;
};

/* the options of a command on one batch; with_files: -o and --errors (results) */
static int id_parse_args(int argc, char **argv, struct id_opts *o, bool with_files, void (*usage)(FILE *))
{
    static const struct option lo_files[] = {{"output", required_argument, 0, 'o'},
                                             {"errors", required_argument, 0, 'e'},
                                             CLIENT_COMMON_OPTIONS,
                                             {0, 0, 0, 0}};
    static const struct option lo[] = {CLIENT_COMMON_OPTIONS, {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, with_files ? "o:e:qh" : "qh", with_files ? lo_files : lo, NULL)) != -1) {
        if (client_common_opt(&o->co, ch, optarg))
            continue;
        switch (ch) {
        case 'o': o->output = optarg; break;
        case 'e': o->errors = optarg; break;
        case 'h': usage(stdout); return -1;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc)
        o->id = argv[optind++];
    if (optind < argc)
        return cli_fail("unexpected argument '%s' (one batch id)", argv[optind]);
    if (!o->id || !*o->id) {
        usage(stderr);
        return cli_fail("no batch id given");
    }
    if (strlen(o->id) > CLIENT_MAX_ID)
        return cli_fail("that is not a batch id (longer than %d characters)", CLIENT_MAX_ID);
    return 0;
}

/* GET the batch: 0 and *out, else the failure printed */
static int client_get_batch(struct client *c, const char *id, cJSON **out)
{
    char path[CLIENT_PATH_MAX];
    *out = NULL;
    if (client_id_path(c, path, sizeof(path), "/v1/batches/", id, ""))
        return 2;
    int rc = client_json(c, "GET", path, NULL, NULL, out);
    return rc ? client_report(c, rc) : 0;
}

static void status_usage(FILE *f)
{
    fputs("usage: nightshift status BATCH_ID [options]\n"
          "\n"
          "Shows a batch: status, request counts, token usage, times (local), file ids, errors.\n"
          "\n",
          f);
    fputs(client_common_usage, f);
    fputs("\nExit status: 0 shown (whatever the batch's status), 1 the server answered an error\n"
          "(404: no such batch), 2 bad usage or no server.\n",
          f);
}

int cli_status(int argc, char **argv)
{
    struct id_opts o;
    memset(&o, 0, sizeof(o));
    int rc = id_parse_args(argc, argv, &o, false, status_usage);
    if (rc)
        return rc < 0 ? 0 : 2;
    struct client c;
    cJSON *b = NULL;
    if ((rc = client_open(&c, &o.co)) || (rc = client_get_batch(&c, o.id, &b)))
        goto out;
    if (c.json)
        client_print_json(b);
    else
        client_print_batch(b);
out:
    cJSON_Delete(b);
    client_close(&c);
    return rc;
}

static void results_usage(FILE *f)
{
    fputs("usage: nightshift results BATCH_ID [options]\n"
          "\n"
          "Downloads the results of a batch. Of a batch still running: the lines finished so far.\n"
          "\n"
          "  -o, --output FILE    the result lines (default: stdout; '-' is stdout)\n"
          "  -e, --errors FILE    the failed lines (default: OUTPUT with .errors.jsonl when -o\n"
          "                       names a file, else not downloaded)\n",
          f);
    fputs(client_common_usage, f);
    fputs("\nExit status: 0 downloaded (of an expired or cancelled batch: the lines it finished),\n"
          "1 the server answered an error or the batch failed (it has no results), 2 bad usage or\n"
          "no server.\n",
          f);
}

int cli_results(int argc, char **argv)
{
    struct id_opts o;
    memset(&o, 0, sizeof(o));
    int rc = id_parse_args(argc, argv, &o, true, results_usage);
    if (rc)
        return rc < 0 ? 0 : 2;
    struct client c;
    cJSON *b = NULL;
    char err_path[CLIENT_PATH_MAX], path[CLIENT_PATH_MAX];
    const char *out_path = o.output ? o.output : "-";
    const char *errs = o.errors;
    if ((rc = client_open(&c, &o.co)))
        goto out;
    if (!errs && o.output && strcmp(o.output, "-")) {
        if ((rc = client_derive_path(o.output, ".errors.jsonl", err_path, sizeof(err_path))))
            goto out;
        errs = err_path;
    }
    if ((rc = client_get_batch(&c, o.id, &b)))
        goto out;
    const char *status = jstr(b, "status");
    unsigned long long failed = jcount2(b, "request_counts", "failed");
    if (status && !strcmp(status, "failed")) {
        fputs("nightshift: batch ", stderr);
        client_put_clean(stderr, o.id);
        fputs(" failed; it has no results\n", stderr);
        client_print_batch_errors(b, stderr);
        rc = 1;
        goto out;
    }
    if (client_status_ended(status)) {
        if ((rc = client_fetch_file(&c, jstr(b, "output_file_id"), out_path)) ||
            (errs && (rc = client_fetch_file(&c, jstr(b, "error_file_id"), errs)))) {
            client_report(&c, rc);
            goto out;
        }
        if (!c.quiet && strcmp(status, "completed")) {
            fputs("nightshift: batch ", stderr);
            client_put_clean(stderr, o.id);
            fprintf(stderr, " %s: results of the %llu lines it finished\n", status,
                    jcount2(b, "request_counts", "completed"));
        }
    } else {
        if (!c.quiet) {
            fputs("batch still ", stderr);
            client_put_clean(stderr, status ? status : "?");
            fputs("; results so far:\n", stderr);
        }
        if ((rc = client_id_path(&c, path, sizeof(path), "/v1/batches/", o.id, "/output")))
            goto out;
        if ((rc = client_download(&c, path, out_path))) {
            client_report(&c, rc);
            goto out;
        }
        if (errs) {
            if ((rc = client_id_path(&c, path, sizeof(path), "/v1/batches/", o.id, "/errors")))
                goto out;
            if ((rc = client_download(&c, path, errs))) {
                client_report(&c, rc);
                goto out;
            }
        }
    }
    if (!errs && failed && !c.quiet)
        fprintf(stderr, "nightshift: %llu line%s failed; '--errors FILE' downloads %s\n", failed,
                failed == 1 ? "" : "s", failed == 1 ? "it" : "them");
    rc = 0;
out:
    cJSON_Delete(b);
    client_close(&c);
    return rc;
}

static void cancel_usage(FILE *f)
{
    fputs("usage: nightshift cancel BATCH_ID [options]\n"
          "\n"
          "Cancels a batch: it turns 'cancelling', the lines running finish, the others get\n"
          "batch_cancelled, then it turns 'cancelled'. Prints the new status.\n"
          "\n",
          f);
    fputs(client_common_usage, f);
    fputs("\nExit status: 0 cancelling, 1 the server answered an error (404: no such batch, 409:\n"
          "it already ended), 2 bad usage or no server.\n",
          f);
}

int cli_cancel(int argc, char **argv)
{
    struct id_opts o;
    memset(&o, 0, sizeof(o));
    int rc = id_parse_args(argc, argv, &o, false, cancel_usage);
    if (rc)
        return rc < 0 ? 0 : 2;
    struct client c;
    cJSON *b = NULL;
    char path[CLIENT_PATH_MAX];
    if ((rc = client_open(&c, &o.co)) ||
        (rc = client_id_path(&c, path, sizeof(path), "/v1/batches/", o.id, "/cancel")))
        goto out;
    if ((rc = client_json(&c, "POST", path, NULL, NULL, &b))) {
        client_report(&c, rc);
        goto out;
    }
    if (c.json) {
        client_print_json(b);
    } else {
        client_put_clean(stdout, jstr(b, "id") ? jstr(b, "id") : o.id);
        fputc(' ', stdout);
        client_put_clean(stdout, jstr(b, "status") ? jstr(b, "status") : "?");
        fputc('\n', stdout);
    }
out:
    cJSON_Delete(b);
    client_close(&c);
    return rc;
}
