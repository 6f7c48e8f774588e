/* Unit tests: backend/backend_batch ("openai-batch", "anthropic-batch") through its ops
 * table, against a mock provider written here (plain POSIX sockets, one thread, one
 * request per connection) and a fake engine source; run() is driven on the test's thread
 * until the source is exhausted. Covered: the upload (JSONL lines with our custom_ids, the
 * upstream model, the batch-create body, the key headers); results mapped back (the
 * client's model name, text, usage; a provider's 4xx is the line's error as it came; 5xx
 * lines, lines in the error file and lines missing from the results go into a new upstream
 * batch, and fail after max_attempts tries); a whole batch the provider failed; bad
 * provider answers (not JSON, no file id, no batch id, a failed poll or results download,
 * retried; a 401 on submit fails every line); real-time requests refused unless
 * "service_tier": "flex"; stop() cancels what is upstream; init errors; Anthropic:
 * the OpenAI -> Message Batches params mapping and what it refuses, results (succeeded,
 * errored by type, canceled, expired) mapped to OpenAI bodies or errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/backend/backend.h"
#include "../../src/util/status.h"

#include <cjson/cJSON.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the mock provider ------------------------------------------------------------------- */

#define MAX_UPLOADS 8

struct mock {
    int fd, port;
    pthread_t th;
    atomic_bool stop;
    pthread_mutex_t mu;
    /* what it saw */
    int n_files, n_creates, n_polls, n_downloads;
    cJSON *uploads[MAX_UPLOADS]; /* each upstream batch's lines (OpenAI lines / Anthropic requests) */
    int n_uploads;
    cJSON *last_create;          /* the OpenAI batch-create body */
    char auth[256], key[256], version[128]; /* Authorization, x-api-key, anthropic-version */
    /* how it answers */
    int files_fail[4];           /* codes answered to POST /files first, in turn (0: done) */
    const char *files_body;      /* answer of POST /files instead of a file object */
    const char *create_body;     /* answer of POST /batches instead of a batch object */
    const char *final_status;    /* "completed" (default), "failed", or "in_progress" forever */
    int poll_fail;               /* polls answered 404 first */
    bool errors_array;           /* a failed batch's errors as Groq gives them: a bare array */
    const char *retry_after;     /* Retry-After of a 429 answer, or NULL */
    int download_fail;           /* results downloads answered 404 first */
};

static struct mock g_m;

/* the content of the last message of an upstream body ("" when none is a string) */
static const char *last_content(const cJSON *body)
{
    const cJSON *ms = cJSON_GetObjectItem(body, "messages");
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetArrayItem(ms, cJSON_GetArraySize(ms) - 1), "content");
    return cJSON_IsString(c) ? c->valuestring : "";
}

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* the answer to one line of upload k, by the content it asked */
static cJSON *oa_result(int k, const cJSON *line, bool *in_error_file)
{
    const char *cid = str_of(line, "custom_id");
    const char *c = last_content(cJSON_GetObjectItem(line, "body"));
    *in_error_file = false;
    if ((!strcmp(c, "missing") && k == 0) || !strcmp(c, "never"))
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", "batch_req_1");
    cJSON_AddStringToObject(o, "custom_id", cid);
    if (!strcmp(c, "errline") && k == 0) {
        *in_error_file = true;
        cJSON_AddNullToObject(o, "response");
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "code", "batch_expired");
        cJSON_AddStringToObject(e, "message", "expired upstream");
        return o;
    }
    cJSON *r = cJSON_AddObjectToObject(o, "response");
    if (!strcmp(c, "reject")) {
        cJSON_AddNumberToObject(r, "status_code", 400);
        cJSON_AddItemToObject(r, "body", cJSON_Parse("{\"error\":{\"message\":\"too long for me\",\"type\":"
                                                     "\"invalid_request_error\",\"code\":\"context_length_exceeded\"}}"));
    } else if ((!strcmp(c, "once500") && k == 0) || !strcmp(c, "always500")) {
        cJSON_AddNumberToObject(r, "status_code", 500);
        cJSON_AddItemToObject(r, "body", cJSON_Parse("{\"error\":{\"message\":\"upstream hiccup\"}}"));
    } else {
        cJSON_AddNumberToObject(r, "status_code", 200);
        cJSON_AddItemToObject(r, "body", cJSON_Parse("{\"id\":\"chatcmpl-u\",\"object\":\"chat.completion\",\"created\":1,"
                                                     "\"model\":\"gpt-up\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                                                     "\"assistant\",\"content\":\"hello\"},\"finish_reason\":\"stop\"}],"
                                                     "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,"
                                                     "\"total_tokens\":9}}"));
    }
    return o;
}

/* an Anthropic result of upload k's request, by its last user content */
static cJSON *an_result(int k, const cJSON *req)
{
    const char *cid = str_of(req, "custom_id");
    const char *c = last_content(cJSON_GetObjectItem(req, "params"));
    char text[1024];
    if (!strcmp(c, "missing") && k == 0)
        return NULL;
    if (!strcmp(c, "bad"))
        snprintf(text, sizeof(text), "{\"type\":\"errored\",\"error\":{\"type\":\"error\",\"error\":{\"type\":"
                                     "\"invalid_request_error\",\"message\":\"prompt is too long\"}}}");
    else if (!strcmp(c, "nokey"))
        snprintf(text, sizeof(text), "{\"type\":\"errored\",\"error\":{\"type\":\"error\",\"error\":{\"type\":"
                                     "\"authentication_error\",\"message\":\"invalid x-api-key\"}}}");
    else if (!strcmp(c, "busy") && k == 0)
        snprintf(text, sizeof(text), "{\"type\":\"errored\",\"error\":{\"type\":\"error\",\"error\":{\"type\":"
                                     "\"overloaded_error\",\"message\":\"Overloaded\"}}}");
    else if (!strcmp(c, "late") && k == 0)
        snprintf(text, sizeof(text), "{\"type\":\"expired\"}");
    else if (!strcmp(c, "stopped") && k == 0)
        snprintf(text, sizeof(text), "{\"type\":\"canceled\"}");
    else
        snprintf(text, sizeof(text),
                 "{\"type\":\"succeeded\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\","
                 "\"model\":\"claude-up\",\"content\":[{\"type\":\"text\",\"text\":\"hel\"},{\"type\":\"tool_use\"},"
                 "{\"type\":\"text\",\"text\":\"lo\"}],\"stop_reason\":\"%s\",\"usage\":{\"input_tokens\":5,"
                 "\"cache_read_input_tokens\":3,\"output_tokens\":2}}}",
                 !strcmp(c, "long") ? "max_tokens" : "end_turn");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "custom_id", cid);
    cJSON_AddItemToObject(o, "result", cJSON_Parse(text));
    return o;
}

static char *jsonl_of(cJSON **lines, int n)
{
    size_t cap = 1, len = 0;
    char *s = calloc(1, 1);
    for (int i = 0; i < n; i++) {
        char *l = cJSON_PrintUnformatted(lines[i]);
        cap += strlen(l) + 1;
        s = realloc(s, cap);
        len += (size_t)snprintf(s + len, cap - len, "%s\n", l);
        free(l);
    }
    return s;
}

/* the answer to one request: *code and a malloc'd body */
static char *mock_route(const char *method, const char *path, const char *body, size_t body_len, int *code)
{
    struct mock *m = &g_m;
    int k = -1;
    *code = 200;
    char out[512];
    if (!strcmp(method, "POST") && !strcmp(path, "/v1/files")) {
        m->n_files++;
        for (int i = 0; i < 4; i++)
            if (m->files_fail[i]) {
                *code = m->files_fail[i];
                m->files_fail[i] = 0;
                return strdup("{\"error\":{\"message\":\"files say no\"}}");
            }
        if (m->files_body)
            return strdup(m->files_body);
        /* the JSONL part of the multipart body: from the first line to the boundary */
        cJSON *lines = cJSON_CreateArray();
        const char *p = body, *end = body + body_len;
        while (p && (p = strstr(p, "{\"custom_id\"")) && p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            cJSON_AddItemToArray(lines, cJSON_ParseWithLength(p, nl ? (size_t)(nl - p) : (size_t)(end - p)));
            p = nl;
        }
        if (m->n_uploads >= MAX_UPLOADS) {
            cJSON_Delete(lines);
            *code = 500;
            return strdup("{}");
        }
        m->uploads[m->n_uploads] = lines;
        snprintf(out, sizeof(out), "{\"id\":\"file-up%d\",\"object\":\"file\",\"purpose\":\"batch\"}", m->n_uploads++);
        return strdup(out);
    }
    if (!strcmp(method, "POST") && !strcmp(path, "/v1/batches")) {
        m->n_creates++;
        cJSON_Delete(m->last_create);
        m->last_create = cJSON_ParseWithLength(body, body_len);
        if (m->create_body)
            return strdup(m->create_body);
        const char *fid = str_of(m->last_create, "input_file_id");
        snprintf(out, sizeof(out), "{\"id\":\"ub-%s\",\"status\":\"validating\"}",
                 strncmp(fid, "file-up", 7) == 0 ? fid + 7 : "x");
        return strdup(out);
    }
    if (!strcmp(method, "GET") && sscanf(path, "/v1/batches/ub-%d", &k) == 1) {
        m->n_polls++;
        if (m->poll_fail > 0) {
            m->poll_fail--;
            *code = 404;
            return strdup("{\"error\":{\"message\":\"no such batch\"}}");
        }
        const char *st = m->final_status ? m->final_status : "completed";
        if (m->n_polls % 2 == 1 && strcmp(st, "failed")) /* in progress at every other poll */
            st = "in_progress";
        if (!strcmp(st, "failed") && m->errors_array)
            snprintf(out, sizeof(out), "{\"id\":\"ub-%d\",\"status\":\"failed\",\"output_file_id\":null,"
                                       "\"errors\":[{\"code\":\"invalid_method\",\"message\":\"bad method\",\"line\":1}]}", k);
        else if (!strcmp(st, "failed"))
            snprintf(out, sizeof(out), "{\"id\":\"ub-%d\",\"status\":\"failed\",\"output_file_id\":null,"
                                       "\"errors\":{\"data\":[{\"code\":\"invalid\",\"message\":\"bad jsonl\"}]}}", k);
        else
            snprintf(out, sizeof(out), "{\"id\":\"ub-%d\",\"status\":\"%s\",\"output_file_id\":\"out-%d\","
                                       "\"error_file_id\":\"err-%d\"}", k, st, k, k);
        return strdup(out);
    }
    bool err_file = false;
    if (!strcmp(method, "GET") && (sscanf(path, "/v1/files/out-%d/content", &k) == 1 ||
                                   (sscanf(path, "/v1/files/err-%d/content", &k) == 1 && (err_file = true))) &&
        k >= 0 && k < m->n_uploads) {
        m->n_downloads++;
        if (m->download_fail > 0) {
            m->download_fail--;
            *code = 404;
            return strdup("gone");
        }
        cJSON *res[64];
        int n = 0;
        const cJSON *line;
        cJSON_ArrayForEach(line, m->uploads[k])
        {
            bool in_err;
            cJSON *r = oa_result(k, line, &in_err);
            if (r && in_err == err_file && n < 64)
                res[n++] = r;
            else
                cJSON_Delete(r);
        }
        char *s = jsonl_of(res, n);
        for (int i = 0; i < n; i++)
            cJSON_Delete(res[i]);
        return s;
    }
    /* Anthropic Message Batches */
    if (!strcmp(method, "POST") && !strcmp(path, "/v1/messages/batches")) {
        m->n_creates++;
        cJSON *o = cJSON_ParseWithLength(body, body_len);
        if (m->n_uploads >= MAX_UPLOADS) {
            cJSON_Delete(o);
            *code = 500;
            return strdup("{}");
        }
        m->uploads[m->n_uploads] = cJSON_DetachItemFromObject(o, "requests");
        cJSON_Delete(o);
        snprintf(out, sizeof(out), "{\"id\":\"msgbatch_%d\",\"type\":\"message_batch\",\"processing_status\":"
                                   "\"in_progress\"}", m->n_uploads++);
        return strdup(out);
    }
    if (!strcmp(method, "GET") && sscanf(path, "/v1/messages/batches/msgbatch_%d", &k) == 1) {
        m->n_polls++;
        if (m->n_polls % 2 == 1) /* in progress at every other poll */
            snprintf(out, sizeof(out), "{\"id\":\"msgbatch_%d\",\"processing_status\":\"in_progress\","
                                       "\"results_url\":null}", k);
        else
            snprintf(out, sizeof(out), "{\"id\":\"msgbatch_%d\",\"processing_status\":\"ended\",\"results_url\":"
                                       "\"http://127.0.0.1:%d/results/%d\"}", k, m->port, k);
        return strdup(out);
    }
    if (!strcmp(method, "GET") && sscanf(path, "/results/%d", &k) == 1 && k >= 0 && k < m->n_uploads) {
        m->n_downloads++;
        cJSON *res[64];
        int n = 0;
        const cJSON *req;
        cJSON_ArrayForEach(req, m->uploads[k])
        {
            cJSON *r = an_result(k, req);
            if (r && n < 64)
                res[n++] = r;
        }
        char *s = jsonl_of(res, n);
        for (int i = 0; i < n; i++)
            cJSON_Delete(res[i]);
        return s;
    }
    *code = 404;
    return strdup("{\"error\":{\"message\":\"no route\"}}");
}

static void header_value(const char *head, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    for (const char *p = head; p && *p; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL)
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1, *e = strstr(v, "\r\n");
            while (*v == ' ')
                v++;
            snprintf(out, n, "%.*s", (int)(e ? e - v : (long)strlen(v)), v);
            return;
        }
}

static void mock_serve(int c)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    char *hend = NULL;
    size_t want = 0;
    for (;;) {
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t r = read(c, buf + len, cap - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        buf[len] = '\0';
        if (!hend && (hend = strstr(buf, "\r\n\r\n"))) {
            char cl[32] = "0";
            *hend = '\0';
            header_value(buf, "Content-Length", cl, sizeof(cl));
            want = (size_t)(hend - buf) + 4 + strtoul(cl, NULL, 10);
        }
        if (hend && len >= want)
            break;
    }
    if (hend) {
        char method[8] = "", path[512] = "";
        sscanf(buf, "%7s %511s", method, path);
        pthread_mutex_lock(&g_m.mu);
        header_value(buf, "Authorization", g_m.auth, sizeof(g_m.auth));
        header_value(buf, "x-api-key", g_m.key, sizeof(g_m.key));
        header_value(buf, "anthropic-version", g_m.version, sizeof(g_m.version));
        int code;
        char *body = mock_route(method, path, hend + 4, len - (size_t)(hend + 4 - buf), &code);
        pthread_mutex_unlock(&g_m.mu);
        char head[320], ra[64] = "";
        if (code == 429 && g_m.retry_after)
            snprintf(ra, sizeof(ra), "Retry-After: %s\r\n", g_m.retry_after);
        int hl = snprintf(head, sizeof(head),
                          "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                          code, strlen(body), ra);
        /* the client may be gone (MSG_NOSIGNAL: no SIGPIPE then) */
        if (send(c, head, (size_t)hl, MSG_NOSIGNAL) == hl && send(c, body, strlen(body), MSG_NOSIGNAL) < 0)
            code = 0;
        free(body);
    }
    free(buf);
    close(c);
}

static void *mock_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&g_m.stop)) {
        struct pollfd pf = {.fd = g_m.fd, .events = POLLIN};
        if (poll(&pf, 1, 20) <= 0)
            continue;
        int c = accept(g_m.fd, NULL, NULL);
        if (c >= 0)
            mock_serve(c);
    }
    return NULL;
}

static void mock_start(void)
{
    memset(&g_m, 0, sizeof(g_m));
    pthread_mutex_init(&g_m.mu, NULL);
    g_m.fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(g_m.fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(g_m.fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(g_m.fd, 16), 0);
    assert_int_equal(getsockname(g_m.fd, (struct sockaddr *)&a, &al), 0);
    g_m.port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&g_m.th, NULL, mock_thread, NULL), 0);
}

static void mock_stop(void)
{
    atomic_store(&g_m.stop, true);
    pthread_join(g_m.th, NULL);
    close(g_m.fd);
    for (int i = 0; i < g_m.n_uploads; i++)
        cJSON_Delete(g_m.uploads[i]);
    cJSON_Delete(g_m.last_create);
    pthread_mutex_destroy(&g_m.mu);
}

/* ---- a fake engine source ---------------------------------------------------------------- */

#define MAX_REQ 16

struct src {
    struct engine_request req[MAX_REQ];
    cJSON *body[MAX_REQ];
    bool prio[MAX_REQ];          /* comes through pull_priority */
    int n, next, next_prio;
    bool forever;                /* pull() never says exhausted */
    /* results */
    atomic_int n_done;
    int status[MAX_REQ], http[MAX_REQ], attempts[MAX_REQ], prompt[MAX_REQ], completion[MAX_REQ];
    char msg[MAX_REQ][400];
    char *raw[MAX_REQ];
    char text[MAX_REQ][64];
};

static struct src g_s;

static int src_take(bool prio, struct engine_request **out, int max)
{
    int n = 0;
    int *next = prio ? &g_s.next_prio : &g_s.next;
    while (*next < g_s.n && n < max) {
        int i = (*next)++;
        if (g_s.prio[i] == prio)
            out[n++] = &g_s.req[i];
    }
    return n;
}

static int src_pull(void *ud, struct engine_request **out, int max)
{
    (void)ud;
    int n = src_take(false, out, max);
    return n || g_s.forever || g_s.next < g_s.n ? n : -1;
}

static int src_pull_priority(void *ud, struct engine_request **out, int max)
{
    (void)ud;
    return src_take(true, out, max);
}

static void src_done(void *ud, struct engine_request *r, const struct engine_result *res)
{
    (void)ud;
    int i = (int)(intptr_t)r->user;
    assert_int_equal(g_s.status[i], -1); /* exactly once */
    g_s.status[i] = res->status;
    g_s.http[i] = res->http_status;
    g_s.attempts[i] = res->attempts;
    g_s.prompt[i] = res->prompt_tokens;
    g_s.completion[i] = res->completion_tokens;
    snprintf(g_s.msg[i], sizeof(g_s.msg[i]), "%s", res->message);
    snprintf(g_s.text[i], sizeof(g_s.text[i]), "%.*s", (int)res->text_len, res->text ? res->text : "");
    if (res->raw_body) {
        g_s.raw[i] = malloc(res->raw_len + 1);
        memcpy(g_s.raw[i], res->raw_body, res->raw_len);
        g_s.raw[i][res->raw_len] = '\0';
    }
    atomic_fetch_add(&g_s.n_done, 1);
}

static const struct engine_source g_src = {
    .ud = NULL, .pull = src_pull, .pull_priority = src_pull_priority, .done = src_done};

static void src_reset(void)
{
    for (int i = 0; i < g_s.n; i++) {
        cJSON_Delete(g_s.body[i]);
        free(g_s.raw[i]);
    }
    memset(&g_s, 0, sizeof(g_s));
}

/* a request with this JSON body; returns its index */
static int src_add(const char *json, bool prio)
{
    int i = g_s.n++;
    assert_true(i < MAX_REQ);
    g_s.body[i] = cJSON_Parse(json);
    assert_non_null(g_s.body[i]);
    g_s.req[i].body = g_s.body[i];
    g_s.req[i].user = (void *)(intptr_t)i;
    g_s.prio[i] = prio;
    g_s.status[i] = -1;
    return i;
}

static int chat(const char *content)
{
    char j[512];
    snprintf(j, sizeof(j), "{\"model\":\"cheap\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":4}",
             content);
    return src_add(j, false);
}

/* ---- the backend under test ---------------------------------------------------------------- */

static void *be_init(const struct backend_ops *ops, const char *upstream_model)
{
    char url[64], err[256] = "";
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/", g_m.port);
    struct backend_conf c = backend_default_conf();
    c.name = "cheap";
    c.kind = ops->kind;
    c.url = url;
    c.api_key = "sk-test-123";
    c.upstream_model = upstream_model;
    c.max_attempts = 3;
    c.timeout_s = 5;
    c.retry_base_s = 0.001;
    c.retry_max_s = 0.002;
    c.flush_lines = 1;
    c.flush_after_s = 0;
    c.poll_interval_s = 0.001;
    c.poll_max_s = 0.002;
    void *impl = NULL;
    if (ops->init(&c, &impl, err, sizeof(err)) != NS_OK)
        fail_msg("init: %s", err);
    return impl;
}

/* an openai-batch backend for a provider (batch_preset.h), its window and byte limit */
static void *be_init_provider(const char *provider, int64_t window_s, int64_t max_bytes)
{
    char url[64], err[256] = "";
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1", g_m.port);
    struct backend_conf c = backend_default_conf();
    c.name = "cheap";
    c.kind = "openai-batch";
    c.provider = provider;
    c.completion_window_s = window_s;
    c.max_bytes = max_bytes;
    c.url = url;
    c.api_key = "gsk-test";
    c.max_attempts = 3;
    c.timeout_s = 5;
    c.retry_base_s = 0.001;
    c.retry_max_s = 0.002;
    c.flush_lines = 1000; /* flushed when full or when the source runs out */
    c.flush_after_s = 0;
    c.poll_interval_s = 0.001;
    c.poll_max_s = 0.002;
    void *impl = NULL;
    if (backend_openai_batch_ops.init(&c, &impl, err, sizeof(err)) != NS_OK)
        fail_msg("init: %s", err);
    return impl;
}

/* run until the source is exhausted and every request ended */
static void be_run(const struct backend_ops *ops, void *impl)
{
    assert_int_equal(ops->run(impl, &g_src), NS_OK);
    assert_int_equal(atomic_load(&g_s.n_done), g_s.n);
}

static int setup(void **state)
{
    (void)state;
    mock_start();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mock_stop();
    src_reset();
    return 0;
}

static cJSON *raw_json(int i)
{
    assert_non_null(g_s.raw[i]);
    cJSON *o = cJSON_Parse(g_s.raw[i]);
    assert_non_null(o);
    return o;
}

/* ---- OpenAI ------------------------------------------------------------------------------ */

static void test_openai_results_mapped_and_retried(void **state)
{
    (void)state;
    const struct backend_ops *ops = &backend_openai_batch_ops;
    void *impl = be_init(ops, "gpt-up");
    int ok = chat("ok"), rej = chat("reject"), o500 = chat("once500"), miss = chat("missing"), errl = chat("errline");
    be_run(ops, impl);
    /* the upload and the batch */
    assert_int_equal(g_m.n_uploads, 2); /* the retried three went up again, together */
    assert_int_equal(cJSON_GetArraySize(g_m.uploads[0]), 5);
    assert_int_equal(cJSON_GetArraySize(g_m.uploads[1]), 3);
    const cJSON *l0 = cJSON_GetArrayItem(g_m.uploads[0], 0);
    assert_string_equal(cJSON_GetObjectItem(l0, "custom_id")->valuestring, "ns-1");
    assert_string_equal(cJSON_GetObjectItem(l0, "method")->valuestring, "POST");
    assert_string_equal(cJSON_GetObjectItem(l0, "url")->valuestring, "/v1/chat/completions");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(l0, "body"), "model")->valuestring, "gpt-up");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(g_m.uploads[1], 0), "custom_id")->valuestring, "ns-6");
    assert_string_equal(cJSON_GetObjectItem(g_m.last_create, "endpoint")->valuestring, "/v1/chat/completions");
    assert_string_equal(cJSON_GetObjectItem(g_m.last_create, "completion_window")->valuestring, "24h");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(g_m.last_create, "metadata"), "source")->valuestring,
                        "nightshift");
    assert_string_equal(g_m.auth, "Bearer sk-test-123");
    assert_string_equal(g_m.key, "");
    assert_string_equal(g_m.version, "");
    /* a success: the client's model name, the provider's text and usage */
    assert_int_equal(g_s.status[ok], NS_OK);
    assert_int_equal(g_s.attempts[ok], 1);
    assert_string_equal(g_s.text[ok], "hello");
    assert_int_equal(g_s.prompt[ok], 7);
    assert_int_equal(g_s.completion[ok], 2);
    cJSON *o = raw_json(ok);
    assert_string_equal(cJSON_GetObjectItem(o, "model")->valuestring, "cheap");
    cJSON_Delete(o);
    /* a 400 is the line's error as the provider gave it */
    assert_int_equal(g_s.status[rej], NS_ERR_INVALID);
    assert_int_equal(g_s.http[rej], 400);
    assert_string_equal(g_s.msg[rej], "too long for me");
    o = raw_json(rej);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "error"), "code")->valuestring,
                        "context_length_exceeded");
    cJSON_Delete(o);
    /* a 500, a line in the error file, a line missing from the results: tried again */
    for (int i = 0; i < 3; i++) {
        int j = i == 0 ? o500 : i == 1 ? miss : errl;
        assert_int_equal(g_s.status[j], NS_OK);
        assert_int_equal(g_s.attempts[j], 2);
        assert_string_equal(g_s.text[j], "hello");
    }
    struct backend_stats st;
    ops->get_stats(impl, &st);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.retries, 3);
    assert_int_equal(st.inflight, 0);
    struct backend_info info;
    ops->get_info(impl, &info);
    assert_string_equal(info.kind, "openai-batch");
    assert_non_null(strstr(info.desc, "127.0.0.1"));
    ops->free(impl);
}

/* a line that never finishes fails after max_attempts tries, saying why */
static void test_openai_tries_spent(void **state)
{
    (void)state;
    const struct backend_ops *ops = &backend_openai_batch_ops;
    void *impl = be_init(ops, NULL);
    int a = chat("always500"), n = chat("never");
    be_run(ops, impl);
    assert_int_equal(g_m.n_uploads, 3);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(g_m.uploads[0], 0), "body"),
                                            "model")->valuestring, "cheap"); /* no upstream_model: the client's */
    for (int i = 0; i < 2; i++) {
        int j = i ? n : a;
        assert_int_equal(g_s.status[j], NS_ERR_UPSTREAM);
        assert_int_equal(g_s.attempts[j], 3);
        assert_non_null(strstr(g_s.msg[j], "did not finish this request in 3 tries"));
    }
    assert_non_null(strstr(g_s.msg[a], "HTTP 500: upstream hiccup"));
    assert_non_null(strstr(g_s.msg[n], "ended completed"));
    ops->free(impl);
}

/* the provider failed the whole batch: every line again, then failed with its reason */
static void test_openai_batch_failed_upstream(void **state)
{
    (void)state;
    const struct backend_ops *ops = &backend_openai_batch_ops;
    g_m.final_status = "failed";
    void *impl = be_init(ops, NULL);
    int a = chat("ok");
    be_run(ops, impl);
    assert_int_equal(g_m.n_uploads, 3);
    assert_int_equal(g_m.n_downloads, 0); /* no output file to fetch */
    assert_int_equal(g_s.status[a], NS_ERR_UPSTREAM);
    assert_non_null(strstr(g_s.msg[a], "ended failed: bad jsonl"));
    ops->free(impl);
}

/* bad answers while submitting, polling, downloading: retried, the lines still finish */
static void test_openai_bad_answers_retried(void **state)
{
    (void)state;
    const struct backend_ops *ops = &backend_openai_batch_ops;
    /* retried inside the call: the upload form must go again whole (it once went as
     * headers only, and the call waited out its timeout) */
    g_m.files_fail[0] = 503;
    g_m.files_fail[1] = 429;
    g_m.poll_fail = 1;       /* a 404 poll: polled again */
    g_m.download_fail = 1;   /* a 404 download: fetched again */
    void *impl = be_init(ops, NULL);
    int a = chat("ok");
    be_run(ops, impl);
    assert_int_equal(g_s.status[a], NS_OK);
    assert_int_equal(g_s.attempts[a], 1); /* one upstream batch */
    assert_int_equal(g_m.n_files, 3);
    assert_int_equal(g_m.n_uploads, 1);
    struct backend_stats st;
    ops->get_stats(impl, &st);
    assert_int_equal(st.rate_limited, 1);
    ops->free(impl);
}

/* answers that are not what the API promises: the submit fails, the lines go again until
 * their tries are spent */
static void test_openai_malformed_answers(void **state)
{
    (void)state;
    static const char *const files[] = {"this is not json", "[1,2]", "{\"object\":\"file\"}", NULL};
    static const char *const creates[] = {NULL, NULL, NULL, "{\"status\":\"validating\"}"};
    static const char *const says[] = {"not a JSON object", "not a JSON object", "no file id", "no batch id"};
    const struct backend_ops *ops = &backend_openai_batch_ops;
    for (int k = 0; k < 4; k++) {
        mock_stop();
        src_reset();
        mock_start();
        g_m.files_body = files[k];
        g_m.create_body = creates[k];
        void *impl = be_init(ops, NULL);
        int a = chat("ok");
        be_run(ops, impl);
        assert_int_equal(g_s.status[a], NS_ERR_UPSTREAM);
        assert_int_equal(g_s.attempts[a], 3);
        if (!strstr(g_s.msg[a], says[k]))
            fail_msg("case %d: %s", k, g_s.msg[a]);
        assert_int_equal(g_m.n_files, 3);
        ops->free(impl);
    }
}

/* a 401 on submit: every line fails at once with the provider's refusal */
static void test_openai_submit_refused(void **state)
{
    (void)state;
    const struct backend_ops *ops = &backend_openai_batch_ops;
    g_m.files_fail[0] = 401;
    void *impl = be_init(ops, NULL);
    int a = chat("ok"), b = chat("ok");
    be_run(ops, impl);
    assert_int_equal(g_m.n_files, 1);
    for (int i = 0; i < 2; i++) {
        int j = i ? b : a;
        assert_int_equal(g_s.status[j], NS_ERR_AUTH);
        assert_non_null(strstr(g_s.msg[j], "refused the batch"));
        assert_non_null(strstr(g_s.msg[j], "files say no"));
        assert_null(strstr(g_s.msg[j], "sk-test-123")); /* the key never shows */
    }
    ops->free(impl);
}

/* real-time requests: refused, unless "service_tier": "flex" (those wait for the batch);
 * a completions body goes to /v1/completions */
static void test_openai_realtime_and_flex(void **state)
{
    (void)state;
    const struct backend_ops *ops = &backend_openai_batch_ops;
    void *impl = be_init(ops, NULL);
    int rt = src_add("{\"model\":\"cheap\",\"messages\":[{\"role\":\"user\",\"content\":\"ok\"}]}", true);
    int flex = src_add("{\"model\":\"cheap\",\"service_tier\":\"flex\",\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"ok\"}]}", true);
    be_run(ops, impl);
    assert_int_equal(g_s.status[rt], NS_ERR_UNSUPPORTED);
    assert_non_null(strstr(g_s.msg[rt], "served through a provider's batch API (openai-batch)"));
    assert_int_equal(g_s.status[flex], NS_OK);
    assert_int_equal(g_m.n_uploads, 1);
    assert_int_equal(cJSON_GetArraySize(g_m.uploads[0]), 1);
    ops->free(impl);
}

static void *run_thread(void *impl)
{
    backend_openai_batch_ops.run(impl, &g_src);
    return NULL;
}

/* stop() while a line is upstream: it ends cancelled, run() returns */
static void test_openai_stop(void **state)
{
    (void)state;
    const struct backend_ops *ops = &backend_openai_batch_ops;
    g_m.final_status = "in_progress";
    g_s.forever = true;
    void *impl = be_init(ops, NULL);
    int a = chat("ok");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run_thread, impl), 0);
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&g_m.mu);
        int polls = g_m.n_polls;
        pthread_mutex_unlock(&g_m.mu);
        if (polls >= 2)
            break;
        usleep(5000);
    }
    ops->wake(impl);
    ops->stop(impl);
    pthread_join(th, NULL);
    assert_int_equal(g_s.status[a], NS_ERR_CANCELLED);
    assert_non_null(strstr(g_s.msg[a], "shutting down"));
    ops->free(impl);
}

static void test_init_errors(void **state)
{
    (void)state;
    static const char *const urls[] = {NULL, "", "ftp://h/v1", "127.0.0.1:8080/v1"};
    for (int k = 0; k < 2; k++) {
        const struct backend_ops *ops = k ? &backend_anthropic_batch_ops : &backend_openai_batch_ops;
        for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
            struct backend_conf c = backend_default_conf();
            c.name = "m";
            c.url = urls[i];
            char err[256] = "";
            void *impl = (void *)1;
            assert_int_equal(ops->init(&c, &impl, err, sizeof(err)), NS_ERR_INVALID);
            assert_null(impl);
            assert_non_null(strstr(err, "needs url = http(s)://HOST[:PORT]/v1"));
            assert_non_null(strstr(err, ops->kind));
        }
    }
}

/* ---- providers (batch_preset.h) ---------------------------------------------------------- */

/* Groq: the window asked is the one Groq accepts nearest below nightshift's; upstream
 * batches are cut by the input file's bytes, every line in exactly one of them */
static void test_provider_window_and_byte_split(void **state)
{
    (void)state;
    const struct backend_ops *ops = &backend_openai_batch_ops;
    void *impl = be_init_provider("groq", 30 * 3600, 600);
    int ids[7];
    for (int i = 0; i < 7; i++)
        ids[i] = chat("ok");
    be_run(ops, impl);
    assert_string_equal(cJSON_GetObjectItem(g_m.last_create, "completion_window")->valuestring, "24h");
    assert_true(g_m.n_uploads >= 3);
    int total = 0;
    for (int k = 0; k < g_m.n_uploads; k++) {
        char *text = cJSON_PrintUnformatted(g_m.uploads[k]);
        assert_true(strlen(text) <= 600); /* the lines of one input file, under max_bytes */
        free(text);
        total += cJSON_GetArraySize(g_m.uploads[k]);
    }
    assert_int_equal(total, 7);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(g_s.status[ids[i]], NS_OK);
        assert_int_equal(g_s.attempts[ids[i]], 1);
    }
    struct backend_info info;
    ops->get_info(impl, &info);
    assert_non_null(strstr(info.desc, "Groq, completion_window 24h"));
    ops->free(impl);
}

/* kluster.ai: 5h goes as 3h; 3 days as its longest, 24h */
static void test_provider_kluster_windows(void **state)
{
    (void)state;
    const struct backend_ops *ops = &backend_openai_batch_ops;
    void *impl = be_init_provider("kluster", 5 * 3600, 0);
    int a = chat("ok");
    be_run(ops, impl);
    assert_int_equal(g_s.status[a], NS_OK);
    assert_string_equal(cJSON_GetObjectItem(g_m.last_create, "completion_window")->valuestring, "3h");
    ops->free(impl);
    src_reset();
    impl = be_init_provider("kluster", 3 * 86400, 0);
    a = chat("ok");
    be_run(ops, impl);
    assert_int_equal(g_s.status[a], NS_OK);
    assert_string_equal(cJSON_GetObjectItem(g_m.last_create, "completion_window")->valuestring, "24h");
    ops->free(impl);
}

/* what the provider would refuse is refused here, before anything goes upstream: an
 * endpoint it does not run, a request larger than its input file limit */
static void test_provider_refusals(void **state)
{
    (void)state;
    const struct backend_ops *ops = &backend_openai_batch_ops;
    void *impl = be_init_provider("groq", 86400, 2000);
    int comp = src_add("{\"model\":\"cheap\",\"prompt\":\"hi\",\"max_tokens\":4}", false);
    char big[4000];
    snprintf(big, sizeof(big), "{\"model\":\"cheap\",\"messages\":[{\"role\":\"user\",\"content\":\"%03000d\"}]}", 7);
    int huge = src_add(big, false);
    int ok = chat("ok");
    be_run(ops, impl);
    assert_int_equal(g_s.status[comp], NS_ERR_UNSUPPORTED);
    assert_string_equal(g_s.msg[comp], "model 'cheap' runs on Groq's batch API, which runs /v1/chat/completions only, "
                                       "not /v1/completions");
    assert_int_equal(g_s.status[huge], NS_ERR_TOO_LARGE);
    assert_non_null(strstr(g_s.msg[huge], "over the 2000-byte input file limit of the batch API behind model 'cheap'"));
    assert_int_equal(g_s.status[ok], NS_OK);
    assert_int_equal(g_m.n_uploads, 1);
    assert_int_equal(cJSON_GetArraySize(g_m.uploads[0]), 1);
    ops->free(impl);
    /* OpenAI's own (no provider) runs /v1/completions */
    src_reset();
    impl = be_init_provider(NULL, 86400, 0);
    comp = src_add("{\"model\":\"cheap\",\"prompt\":\"hi\",\"max_tokens\":4}", false);
    be_run(ops, impl);
    assert_int_equal(g_s.status[comp], NS_OK);
    assert_string_equal(cJSON_GetObjectItem(g_m.last_create, "endpoint")->valuestring, "/v1/completions");
    ops->free(impl);
}

/* Groq's quirks: a failed batch's errors as a bare array; a 429 with retry-after, waited
 * out and the call made again */
static void test_provider_groq_quirks(void **state)
{
    (void)state;
    const struct backend_ops *ops = &backend_openai_batch_ops;
    g_m.files_fail[0] = 429;
    g_m.retry_after = "1";
    void *impl = be_init_provider("groq", 86400, 0);
    int a = chat("ok");
    be_run(ops, impl);
    assert_int_equal(g_s.status[a], NS_OK);
    assert_int_equal(g_m.n_files, 2);
    struct backend_stats st;
    ops->get_stats(impl, &st);
    assert_int_equal(st.rate_limited, 1);
    ops->free(impl);
    src_reset();
    g_m.final_status = "failed";
    g_m.errors_array = true;
    impl = be_init_provider("groq", 86400, 0);
    a = chat("ok");
    be_run(ops, impl);
    assert_int_equal(g_s.status[a], NS_ERR_UPSTREAM);
    assert_non_null(strstr(g_s.msg[a], "ended failed: bad method"));
    ops->free(impl);
}

static void test_provider_init_errors(void **state)
{
    (void)state;
    struct backend_conf c = backend_default_conf();
    c.name = "m";
    c.url = "http://127.0.0.1:9/v1";
    c.provider = "nope";
    char err[256] = "";
    void *impl = (void *)1;
    assert_int_equal(backend_openai_batch_ops.init(&c, &impl, err, sizeof(err)), NS_ERR_INVALID);
    assert_null(impl);
    assert_string_equal(err, "model 'm': unknown provider 'nope' (known: groq, kluster, openai)");
    c.provider = "groq";
    impl = (void *)1;
    assert_int_equal(backend_anthropic_batch_ops.init(&c, &impl, err, sizeof(err)), NS_ERR_INVALID);
    assert_null(impl);
    assert_string_equal(err, "model 'm': provider groq is for backend openai-batch, not anthropic-batch");
}

/* ---- Anthropic --------------------------------------------------------------------------- */

static void test_anthropic_mapping_and_results(void **state)
{
    (void)state;
    const struct backend_ops *ops = &backend_anthropic_batch_ops;
    void *impl = be_init(ops, "claude-up");
    int full = src_add("{\"model\":\"cheap\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                       "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"No lists.\"}]},"
                       "{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"Hello.\"},"
                       "{\"role\":\"user\",\"content\":\"long\"}],\"max_completion_tokens\":9,\"max_tokens\":99,"
                       "\"temperature\":1.7,\"top_p\":0.9,\"stop\":\"END\",\"seed\":4,\"user\":\"u\"}", false);
    int bad = chat("bad"), nokey = chat("nokey"), busy = chat("busy"), late = chat("late"), stopped = chat("stopped"),
        miss = chat("missing");
    be_run(ops, impl);
    assert_string_equal(g_m.key, "sk-test-123");
    assert_string_equal(g_m.auth, "");
    assert_string_equal(g_m.version, "2023-06-01");
    assert_int_equal(g_m.n_uploads, 2);
    assert_int_equal(cJSON_GetArraySize(g_m.uploads[0]), 7);
    assert_int_equal(cJSON_GetArraySize(g_m.uploads[1]), 4); /* busy, late, stopped, missing */
    /* the params of the first request */
    const cJSON *p = cJSON_GetObjectItem(cJSON_GetArrayItem(g_m.uploads[0], 0), "params");
    char *ps = cJSON_PrintUnformatted(p);
    assert_string_equal(ps, "{\"model\":\"claude-up\",\"max_tokens\":9,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                            "{\"role\":\"assistant\",\"content\":\"Hello.\"},{\"role\":\"user\",\"content\":\"long\"}],"
                            "\"system\":\"Be brief.\\n\\nNo lists.\",\"temperature\":1,\"top_p\":0.9,"
                            "\"stop_sequences\":[\"END\"]}");
    free(ps);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(g_m.uploads[0], 1), "params"),
                                         "max_tokens")->valueint, 4);
    /* succeeded: an OpenAI chat.completion; text parts joined, max_tokens -> length, cached
     * input counted in the prompt */
    assert_int_equal(g_s.status[full], NS_OK);
    assert_string_equal(g_s.text[full], "hello");
    cJSON *o = raw_json(full);
    assert_string_equal(cJSON_GetObjectItem(o, "object")->valuestring, "chat.completion");
    assert_string_equal(cJSON_GetObjectItem(o, "id")->valuestring, "chatcmpl-msg_01");
    assert_string_equal(cJSON_GetObjectItem(o, "model")->valuestring, "cheap");
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(ch, "finish_reason")->valuestring, "length");
    const cJSON *u = cJSON_GetObjectItem(o, "usage");
    assert_int_equal(cJSON_GetObjectItem(u, "prompt_tokens")->valueint, 8);
    assert_int_equal(cJSON_GetObjectItem(u, "completion_tokens")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(u, "total_tokens")->valueint, 10);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(u, "prompt_tokens_details"), "cached_tokens")->valueint, 3);
    cJSON_Delete(o);
    /* errored, final: the error as an OpenAI body with the matching HTTP status */
    assert_int_equal(g_s.status[bad], NS_ERR_INVALID);
    assert_int_equal(g_s.http[bad], 400);
    assert_string_equal(g_s.msg[bad], "prompt is too long");
    o = raw_json(bad);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "error"), "type")->valuestring,
                        "invalid_request_error");
    cJSON_Delete(o);
    assert_int_equal(g_s.status[nokey], NS_ERR_AUTH);
    assert_int_equal(g_s.http[nokey], 401);
    /* overloaded, expired, canceled, missing: the next upstream batch, then fine */
    for (int i = 0; i < 4; i++) {
        int j = i == 0 ? busy : i == 1 ? late : i == 2 ? stopped : miss;
        assert_int_equal(g_s.status[j], NS_OK);
        assert_int_equal(g_s.attempts[j], 2);
        o = raw_json(j);
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0),
                                                "finish_reason")->valuestring, "stop");
        cJSON_Delete(o);
    }
    ops->free(impl);
}

/* what Message Batches cannot take fails at once, without a call upstream */
static void test_anthropic_refused_mappings(void **state)
{
    (void)state;
    static const struct {
        const char *body, *says;
    } cases[] = {
        {"{\"model\":\"cheap\",\"prompt\":\"hi\"}", "has no /v1/completions"},
        {"{\"model\":\"cheap\",\"tools\":[{\"type\":\"function\"}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
         "'tools' cannot be mapped"},
        {"{\"model\":\"cheap\",\"response_format\":{\"type\":\"json_object\"},\"messages\":[]}", "'response_format'"},
        {"{\"model\":\"cheap\",\"logprobs\":true,\"messages\":[]}", "'logprobs'"},
        {"{\"model\":\"cheap\",\"n\":2,\"messages\":[]}", "'n' other than 1"},
        {"{\"model\":\"cheap\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "role 'tool' cannot be mapped"},
        {"{\"model\":\"cheap\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
         "messages[0]: only text content"},
        {"{\"model\":\"cheap\",\"messages\":[{\"role\":\"user\",\"content\":\"ok\"},{\"content\":\"x\"}]}",
         "messages[1]: only text content"},
    };
    const struct backend_ops *ops = &backend_anthropic_batch_ops;
    void *impl = be_init(ops, NULL);
    int n = (int)(sizeof(cases) / sizeof(cases[0]));
    for (int i = 0; i < n; i++)
        src_add(cases[i].body, false);
    /* allowed: logprobs false, tools null, n 1 */
    int fine = src_add("{\"model\":\"cheap\",\"n\":1,\"logprobs\":false,\"tools\":null,\"messages\":[{\"role\":\"user\","
                       "\"content\":\"ok\"}]}", false);
    be_run(ops, impl);
    for (int i = 0; i < n; i++) {
        assert_int_equal(g_s.status[i], NS_ERR_UNSUPPORTED);
        if (!strstr(g_s.msg[i], cases[i].says))
            fail_msg("case %d: %s", i, g_s.msg[i]);
    }
    assert_int_equal(g_s.status[fine], NS_OK);
    assert_int_equal(g_m.n_uploads, 1);
    assert_int_equal(cJSON_GetArraySize(g_m.uploads[0]), 1);
    const cJSON *p = cJSON_GetObjectItem(cJSON_GetArrayItem(g_m.uploads[0], 0), "params");
    assert_string_equal(cJSON_GetObjectItem(p, "model")->valuestring, "cheap");
    assert_int_equal(cJSON_GetObjectItem(p, "max_tokens")->valueint, 4096); /* Anthropic needs one */
    ops->free(impl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_openai_results_mapped_and_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openai_tries_spent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openai_batch_failed_upstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openai_bad_answers_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openai_malformed_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openai_submit_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openai_realtime_and_flex, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openai_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_provider_window_and_byte_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_provider_kluster_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_provider_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_provider_groq_quirks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_provider_init_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anthropic_mapping_and_results, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anthropic_refused_mappings, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
