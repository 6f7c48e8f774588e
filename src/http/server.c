/*
 * server.c — see server.h. Routing is a flat table of (method, path pattern, handler);
 * a pattern segment "*" matches one id. Daemon, dispatch, auth, per-request state.
 */
#include "server_int.h"

struct server_params server_default_params(void)
{
    struct server_params p = {
        .host = "127.0.0.1",
        .port = 8080,
        .data_dir = ".",
        .api_key = NULL,
        .max_connections = 4096,
        .max_body = 16u << 20,
        .max_file = 200u * 1000u * 1000u,
        .message_batch_retention = 29 * 86400,
        .header_timeout = 10,
        .idle_timeout = 60,
        .min_body_rate = 1024,
    };
    return p;
}

int server_public_url_check(const char *url, char *err, size_t n)
{
    size_t scheme = strncmp(url, "https://", 8) == 0 ? 8 : strncmp(url, "http://", 7) == 0 ? 7 : 0;
    bool ok = scheme && url[scheme] && url[scheme] != '/' && strlen(url) < 512;
    for (const char *p = url; ok && *p; p++)
        ok = (unsigned char)*p > ' ' && *p != 0x7f && *p != '?' && *p != '#' && *p != '"' && *p != '\\';
    if (!ok)
        snprintf(err, n, "--public-url must be an http:// or https:// URL with a host and no query, like "
                         "https://api.example.com or https://example.com/nightshift, not '%.100s'", url);
    return ok ? NS_OK : NS_ERR_INVALID;
}

int server_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 4 ? (int)(n > 64 ? 64 : n) : 4;
}

/* ---- per-request state -------------------------------------------------------------- */




static void upload_free(struct upload *u)
{
    if (!u)
        return;
    if (u->pp)
        MHD_destroy_post_processor(u->pp);
    durable_rollback(&u->file);
    free(u->filename);
    buf_release(&u->purpose);
    free(u);
}


static void req_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct req *r = *con_cls;
    if (!r)
        return;
    if (r->counted)
        atomic_fetch_sub(&r->srv->inflight, 1);
    if (r->job)
        generate_job_unref(r->job); /* ended before its answer (the server stopping) */
    buf_release(&r->body);
    upload_free(r->up);
    free(r);
    *con_cls = NULL;
}

/* ---- routing ------------------------------------------------------------------------ */




const char *server_query(struct route_ctx *x, const char *k)
{
    return MHD_lookup_connection_value(x->c, MHD_GET_ARGUMENT_KIND, k);
}

int server_query_limit(struct route_ctx *x, int lo, int hi, int def, int *out)
{
    const char *v = server_query(x, "limit");
    if (!v) {
        *out = def;
        return NS_OK;
    }
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || n < lo || n > hi)
        return NS_ERR_INVALID;
    *out = (int)n;
    return NS_OK;
}

void server_public_base(const struct route_ctx *x, char *out, size_t n)
{
    const struct server *s = x->srv;
    if (s->public_url) {
        snprintf(out, n, "%s", s->public_url);
        return;
    }
    char fallback[300];
    snprintf(fallback, sizeof(fallback), "%s:%d", s->p.host, s->port);
    httpguard_origin(x->c, s->p.tls_cert && s->p.tls_key, fallback, out, n);
}

struct sched *server_sched_by_model(struct server *s, const char *model)
{
    for (int i = 0; i < s->n_scheds; i++)
        if (strcmp(sched_model_name(s->scheds[i]), model) == 0)
            return s->scheds[i];
    return NULL;
}

/* GET /health */
static enum MHD_Result h_health(struct route_ctx *x)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ok");
    return respond_json(x->c, 200, o);
}

/* GET /ready: a model is loaded and the store takes writes */
static enum MHD_Result h_ready(struct route_ctx *x)
{
    bool ok = x->srv->n_scheds > 0 && store_check(x->srv->st) == NS_OK;
    /* an empty transaction commits on a full disk: the schedulers know whether real writes
     * go through (issue 27.5) */
    bool writable = true;
    for (int i = 0; i < x->srv->n_scheds; i++)
        writable &= sched_store_writable(x->srv->scheds[i]);
    ok &= writable;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", ok ? "ready" : "not_ready");
    if (!writable)
        cJSON_AddStringToObject(o, "reason", "the store refuses writes (disk full?)");
    cJSON_AddNumberToObject(o, "models", x->srv->n_scheds);
    return respond_json(x->c, ok ? 200 : 503, o);
}

/* created: a local model's file time (when it was made or copied in), an upstream's the
 * server's start (issue 31.7: 0 read as 1970 in clients) */
static cJSON *model_json(struct server *srv, struct sched *s)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", sched_model_name(s));
    cJSON_AddStringToObject(m, "object", "model");
    const char *path = backend_model_path(sched_backend(s));
    struct stat sb;
    cJSON_AddNumberToObject(m, "created", path && stat(path, &sb) == 0 ? (double)sb.st_mtime : (double)srv->started_at);
    cJSON_AddStringToObject(m, "owned_by", "nightshift");
    return m;
}

static enum MHD_Result h_models(struct route_ctx *x)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < x->srv->n_scheds; i++)
        cJSON_AddItemToArray(d, model_json(x->srv, x->srv->scheds[i]));
    models_openai_add(x->srv, d); /* the model store's others, "served": false */
    return respond_json(x->c, 200, o);
}

static enum MHD_Result h_model_get(struct route_ctx *x)
{
    struct sched *s = server_sched_by_model(x->srv, x->ids[0]);
    if (!s)
        return respond_oai_error(x->c, NS_ERR_MODEL_NOT_FOUND, "model", NULL,
                          "The model '%.100s' does not exist or you do not have access to it.", x->ids[0]);
    return respond_json(x->c, 200, model_json(x->srv, s));
}

/* ---- dispatch ----------------------------------------------------------------------- */

enum body_kind { BODY_NONE, BODY_JSON, BODY_MULTIPART };

static const struct route {
    const char *method;
    const char *pattern;
    enum body_kind body;
    handler_fn fn;
} routes[] = {
    {"GET", "/health", BODY_NONE, h_health},
    {"GET", "/ready", BODY_NONE, h_ready},
    {"GET", "/metrics", BODY_NONE, metrics_prometheus},
    {"GET", "/v1/models", BODY_NONE, h_models},
    {"GET", "/v1/models/*", BODY_NONE, h_model_get},
    {"POST", "/v1/chat/completions", BODY_JSON, generate_chat},
    {"POST", "/v1/completions", BODY_JSON, generate_completions},
    {"POST", "/v1/embeddings", BODY_JSON, generate_embeddings},
    {"POST", "/apply-template", BODY_JSON, generate_apply_template},
    {"POST", "/v1/files", BODY_MULTIPART, files_upload},
    {"GET", "/v1/files", BODY_NONE, files_list},
    {"GET", "/v1/files/*", BODY_NONE, files_get},
    {"GET", "/v1/files/*/content", BODY_NONE, files_content},
    {"DELETE", "/v1/files/*", BODY_NONE, files_delete},
    {"POST", "/v1/batches", BODY_JSON, batches_create},
    {"POST", "/v1/deferred/chat/completions", BODY_JSON, batches_deferred_chat},
    {"POST", "/v1/deferred/completions", BODY_JSON, batches_deferred_completions},
    {"GET", "/v1/deferred/*", BODY_NONE, batches_deferred_get},
    {"GET", "/v1/batches", BODY_NONE, batches_list},
    {"GET", "/v1/batches/*", BODY_NONE, batches_get},
    {"POST", "/v1/batches/*/cancel", BODY_NONE, batches_cancel},
    {"POST", "/v1/batches/*/retry", BODY_NONE, batches_retry},
    {"GET", "/v1/batches/*/output", BODY_NONE, batches_output},
    {"GET", "/v1/batches/*/errors", BODY_NONE, batches_errors},
    {"POST", "/v1/messages", BODY_JSON, generate_messages},
    {"POST", "/v1/messages/count_tokens", BODY_JSON, generate_count_tokens},
    {"POST", "/v1/responses", BODY_JSON, generate_responses},
    {"GET", "/v1/responses/*", BODY_NONE, responses_get},
    {"DELETE", "/v1/responses/*", BODY_NONE, responses_delete},
    {"GET", "/v1/responses/*/input_items", BODY_NONE, responses_input_items},
    {"POST", "/v1/responses/*/cancel", BODY_NONE, responses_cancel},
    {"POST", "/v1/messages/batches", BODY_JSON, msgbatches_create},
    {"GET", "/v1/messages/batches", BODY_NONE, batches_ant_list},
    {"GET", "/v1/messages/batches/*", BODY_NONE, batches_ant_get},
    {"POST", "/v1/messages/batches/*/cancel", BODY_NONE, batches_ant_cancel},
    {"GET", "/v1/messages/batches/*/results", BODY_NONE, batches_ant_results},
    {"DELETE", "/v1/messages/batches/*", BODY_NONE, batches_ant_delete},
    {"GET", "/", BODY_NONE, metrics_root},
    {"GET", "/dashboard/*", BODY_NONE, metrics_dashboard_file},
    {"GET", "/v1/nightshift/stats", BODY_NONE, metrics_stats},
    {"GET", "/v1/nightshift/webhooks", BODY_NONE, metrics_webhooks},
    {"GET", "/api/version", BODY_NONE, generate_ollama_version},
    {"GET", "/api/tags", BODY_NONE, generate_ollama_tags},
    {"GET", "/api/ps", BODY_NONE, generate_ollama_ps},
    {"POST", "/api/show", BODY_JSON, generate_ollama_show},
    {"POST", "/api/chat", BODY_JSON, generate_ollama_chat},
    {"POST", "/api/generate", BODY_JSON, generate_ollama_generate},
    {"POST", "/api/embed", BODY_JSON, generate_ollama_embed},
    {"POST", "/api/embeddings", BODY_JSON, generate_ollama_embeddings},
    {"POST", "/api/pull", BODY_JSON, models_ollama_pull},
    {"POST", "/api/push", BODY_JSON, generate_ollama_manage},
    {"POST", "/api/create", BODY_JSON, generate_ollama_manage},
    {"POST", "/api/copy", BODY_JSON, generate_ollama_manage},
    {"DELETE", "/api/delete", BODY_JSON, generate_ollama_manage},
};

/* match url against pattern; ids filled for each "*" */
static bool route_match(const char *pattern, const char *url, struct route_ctx *x)
{
    int nid = 0;
    const char *p = pattern, *u = url;
    while (*p && *u) {
        if (*p == '*') {
            const char *end = strchr(u, '/');
            size_t n = end ? (size_t)(end - u) : strlen(u);
            if (n == 0 || n >= sizeof(x->idbuf[0]) || nid >= MAX_IDS)
                return false;
            memcpy(x->idbuf[nid], u, n);
            x->idbuf[nid][n] = '\0';
            x->ids[nid] = x->idbuf[nid];
            nid++;
            u += n;
            p++;
            continue;
        }
        if (*p != *u)
            return false;
        p++;
        u++;
    }
    /* a trailing slash is accepted */
    if (*u == '/' && u[1] == '\0')
        u++;
    return *p == '\0' && *u == '\0';
}

static const struct route *route_find(const char *method, const char *url, struct route_ctx *x, bool *path_known)
{
    *path_known = false;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (!route_match(routes[i].pattern, url, x))
            continue;
        *path_known = true;
        /* HEAD is GET without the body (MHD drops it); Ollama clients probe with HEAD / */
        if (strcmp(routes[i].method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0))
            return &routes[i];
    }
    return NULL;
}

/* 405 with Allow, the methods the path takes (RFC 9110 15.5.6), in the error shape of the
 * API the path belongs to (issue 27.16: OPTIONS, TRACE and unknown methods were 404s) */
static enum MHD_Result send_method_not_allowed(struct MHD_Connection *c, const struct dialect *d, const char *method,
                                               const char *url)
{
    /* the methods of the routes the path matches, in table order, each once (HEAD after GET) */
    const char *seen[8];
    int n_seen = 0;
    struct route_ctx scratch;
    memset(&scratch, 0, sizeof(scratch));
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (!route_match(routes[i].pattern, url, &scratch))
            continue;
        const char *m[2] = {routes[i].method, strcmp(routes[i].method, "GET") == 0 ? "HEAD" : NULL};
        for (int k = 0; k < 2 && m[k]; k++) {
            bool dup = false;
            for (int j = 0; j < n_seen && !dup; j++)
                dup = strcmp(seen[j], m[k]) == 0;
            if (!dup && n_seen < (int)(sizeof(seen) / sizeof(seen[0])))
                seen[n_seen++] = m[k];
        }
    }
    char allow[64] = "";
    for (int j = 0; j < n_seen; j++) {
        size_t l = strlen(allow);
        snprintf(allow + l, sizeof(allow) - l, "%s%s", j ? "," : "", seen[j]);
    }
    char msg[600];
    snprintf(msg, sizeof(msg), "Method %.20s is not allowed on %.200s; it takes %s.", method, url, allow);
    return respond_method_not_allowed(c, d, msg, allow);
}

static int ns_hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* MHD's unescaper for paths and query values, but "%00" stays as it is: decoded, it would
 * end the C string early, and "/v1/files/%00" would be routed as "/v1/files/", the file list
 * (issue 27.16). Kept literal it is an id like any other that does not exist. */
static size_t url_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    char *w = s;
    for (const char *r = s; *r;) {
        int hi, lo;
        if (r[0] == '%' && (hi = ns_hexval(r[1])) >= 0 && (lo = ns_hexval(r[2])) >= 0 && (hi | lo)) {
            *w++ = (char)(hi * 16 + lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* how many times the request carries header name (repeated Content-Length or
 * Transfer-Encoding: request smuggling behind a proxy that reads another one) */
struct header_count {
    const char *name;
    int n;
};

static enum MHD_Result header_count_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    (void)value;
    struct header_count *hc = cls;
    if (strcasecmp(key, hc->name) == 0)
        hc->n++;
    return MHD_YES;
}

static int header_count(struct MHD_Connection *c, const char *name)
{
    struct header_count hc = {name, 0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, header_count_iter, &hc);
    return hc.n;
}

static enum MHD_Result upload_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                   const char *content_type, const char *transfer_encoding, const char *data,
                                   uint64_t off, size_t size)
{
    (void)kind;
    (void)content_type;
    (void)transfer_encoding;
    (void)off;
    struct req *r = cls;
    struct upload *u = r->up;
    if (strcmp(key, "purpose") == 0) {
        if (buf_append(&u->purpose, data, size))
            return MHD_NO;
        return MHD_YES;
    }
    /* OpenAI's expires_after, as the SDKs send it in a form: expires_after[anchor] and
     * expires_after[seconds] (files_upload checks them) */
    bool anchor = strcmp(key, "expires_after[anchor]") == 0, secs = strcmp(key, "expires_after[seconds]") == 0;
    if (anchor || secs) {
        char *v = anchor ? u->expires_anchor : u->expires_seconds;
        size_t cap = anchor ? sizeof(u->expires_anchor) : sizeof(u->expires_seconds), have = strlen(v);
        *(anchor ? &u->have_anchor : &u->have_seconds) = true;
        if (memchr(data, '\0', size))
            data = "?", size = 1; /* a NUL inside: invalid, not cut short into something valid */
        snprintf(v + have, cap - have, "%.*s", (int)(size < cap ? size : cap), data);
        return MHD_YES;
    }
    if (strcmp(key, "file") != 0) {
        /* refused once the body is in, as JSON routes refuse an unknown field (issue 31.5) */
        if (!u->unknown[0])
            snprintf(u->unknown, sizeof(u->unknown), "%s", key);
        return MHD_YES;
    }
    if (!u->have_file) {
        u->have_file = true;
        if (filename && !u->filename)
            u->filename = strdup(filename);
    }
    if (u->too_large)
        return MHD_YES;
    if ((uint64_t)u->bytes + size > r->srv->p.max_file) {
        u->too_large = true;
        return MHD_YES;
    }
    if (durable_write(&u->file, data, size)) {
        r->early_status = NS_ERR_IO;
        snprintf(r->early_msg, sizeof(r->early_msg), "cannot store the upload: %s", strerror(errno));
        /* give the space back now (a full disk), not when the connection ends: the
         * answer may reach the client before req_completed() runs */
        durable_rollback(&u->file);
        return MHD_NO;
    }
    u->bytes += (int64_t)size;
    return MHD_YES;
}

static bool content_type_is(struct MHD_Connection *c, const char *want)
{
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    return ct && strncasecmp(ct, want, strlen(want)) == 0;
}

/* Who is asking. Keys come as 'Authorization: Bearer KEY' or 'x-api-key: KEY' (the
 * Anthropic routes). --api-key is an admin key of project "default"; keys from `nightshift
 * keys create` are found by their SHA-256 in the store. With neither configured (no
 * --api-key, no key in the store) or --no-auth, everyone is an admin of "default": the
 * loopback development mode. False: answer 401. */
/* two 64-digit hex SHA-256 strings equal, in time that does not depend on where they differ */
static bool server_hash_equal(const char *a, const char *b)
{
    unsigned char d = 0;
    for (int i = 0; i < 64; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static bool server_auth(struct server *s, struct MHD_Connection *c, struct route_ctx *x)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    /* the scheme is case-insensitive (RFC 7235 2.1): "bearer KEY" is as good as "Bearer KEY" */
    const char *key = h && strncasecmp(h, "Bearer ", 7) == 0 ? h + 7 : MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
    snprintf(x->owner, sizeof(x->owner), "default");
    x->admin = true;
    if (s->no_auth)
        return true;
    char hash[65] = "";
    if (key && *key)
        sha256_hex(key, strlen(key), hash);
    /* --api-key is compared by hash, in constant time: the time taken tells nothing of how
     * many leading characters a guess got right (issue 27.14) */
    if (hash[0] && s->api_key && server_hash_equal(hash, s->api_key_hash))
        return true;
    if (hash[0]) {
        struct store_key k;
        if (keycache_key_get(s->keys, hash, &k) == NS_OK) {
            snprintf(x->owner, sizeof(x->owner), "%s", k.project);
            x->admin = k.admin;
            snprintf(x->key, sizeof(x->key), "%s", k.name);
            /* a key's own limit, else (not for admin keys) the server's default */
            const struct quota_limits *d = &s->p.quota_default;
            x->lim.rpm = k.rpm >= 0 ? k.rpm : k.admin ? 0 : d->rpm;
            x->lim.tokens_per_day = k.tokens_per_day >= 0 ? k.tokens_per_day : k.admin ? 0 : d->tokens_per_day;
            x->lim.batch_queue_tokens =
                k.batch_queue_tokens >= 0 ? k.batch_queue_tokens : k.admin ? 0 : d->batch_queue_tokens;
            return true;
        }
    }
    if (!s->api_key && keycache_keys_none(s->keys))
        return true;
    x->admin = false;
    return false;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    struct server *s = cls;
    struct req *rr = *con_cls;
    if (rr && rr->job) {
        struct job *j = rr->job;
        rr->job = NULL;
        return rr->answer(c, j, rr->flavor);
    }
    struct route_ctx x;
    memset(&x, 0, sizeof(x));
    x.srv = s;
    x.c = c;
    bool path_known;
    const struct route *rt = route_find(method, url, &x, &path_known);
    struct req *r = *con_cls;
    /* errors in the shape of the API the path belongs to */
    const struct dialect *dl = dialect_of_path(url);
#define EARLY_ERROR(status, param, code, ...) respond_error(c, dl, (status), (param), (code), __VA_ARGS__)
#define AUTH_MESSAGE (dl->auth_message)
    if (!r) {
        /* Host, Origin, CORS preflight (httpguard.h): before the key, since a browser's
         * preflight carries none */
        enum MHD_Result pre;
        if (httpguard_preflight(c, method, url, &pre))
            return pre;
        char gmsg[300];
        int grc = httpguard_check(c, method, url, gmsg, sizeof(gmsg));
        if (grc)
            return EARLY_ERROR(grc, NULL, NULL, "%s", gmsg);
        /* Two Content-Lengths (or one beside a Transfer-Encoding) frame the body two ways: a
         * proxy in front may read the other one and smuggle a request through (RFC 9112
         * 6.3). Refused on the headers, before any body (issue 27.16). */
        int ncl = header_count(c, MHD_HTTP_HEADER_CONTENT_LENGTH), nte = header_count(c, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        if (ncl > 1 || (ncl && nte) || nte > 1)
            return EARLY_ERROR(NS_ERR_INVALID, NULL, "invalid_framing", "%s",
                               "The request is framed twice (repeated Content-Length, or Content-Length with "
                               "Transfer-Encoding); send one.");
        /* Decided on the headers (issue 27.7): a request without a valid key is answered 401
         * before one byte of its body is read or stored; MHD then closes the connection
         * instead of reading the body it was not given a chance to consume. */
        if (!metrics_public_route(method, url) && !server_auth(s, c, &x))
            return EARLY_ERROR(NS_ERR_AUTH, NULL, NULL, "%s", AUTH_MESSAGE);
        r = calloc(1, sizeof(*r));
        if (!r)
            return MHD_NO;
        r->srv = s;
        r->t_start = clock_now();
        /* Message Batches carry their requests inline: up to 256 MB, as at Anthropic */
        buf_init(&r->body, rt && rt->fn == msgbatches_create ? ANT_MAX_BYTES : s->p.max_body);
        *con_cls = r;
        if (atomic_load(&s->draining)) {
            /* shutting down: read the body (so the answer reaches the client), then refuse */
            r->early_status = NS_ERR_UNAVAILABLE;
            snprintf(r->early_msg, sizeof(r->early_msg), "The server is shutting down; retry shortly.");
            return MHD_YES;
        }
        r->counted = true;
        atomic_fetch_add(&s->inflight, 1);
        if (rt && rt->body == BODY_MULTIPART && content_type_is(c, "multipart/form-data")) {
            r->up = calloc(1, sizeof(*r->up));
            if (!r->up)
                return MHD_NO;
            durable_init(&r->up->file);
            buf_init(&r->up->purpose, 256);
            char path[4096];
            oai_make_id(r->up->id, sizeof(r->up->id), "file-");
            batchmgr_file_path(s->data_dir, r->up->id, path, sizeof(path));
            int orc = durable_open(&r->up->file, path);
            r->up->pp = MHD_create_post_processor(c, 64 * 1024, upload_iter, r);
            if (orc || !r->up->pp) {
                r->early_status = NS_ERR_IO;
                snprintf(r->early_msg, sizeof(r->early_msg), "cannot start the upload (data dir not writable?)");
            }
        }
        return MHD_YES;
    }
    /* body pieces */
    if (*upload_data_size) {
        /* a body trickled in to hold the connection (slowloris): once 10 s old it must
         * average min_body_rate; below that the connection is closed (issue 27.8) */
        r->body_bytes += *upload_data_size;
        double age = clock_now() - r->t_start;
        if (s->p.min_body_rate && age > 10 && (double)r->body_bytes < age * s->p.min_body_rate) {
            const struct httpguard_request *hr = httpguard_request(c);
            log_request(LOG_WARN, hr ? hr->id : NULL, "%s: closed the connection: its body came at %.0f bytes/s (below %u)",
                        hr ? hr->line : "", (double)r->body_bytes / age, s->p.min_body_rate);
            return MHD_NO;
        }
        if (!r->early_status) {
            if (r->up && r->up->pp) {
                if (MHD_post_process(r->up->pp, upload_data, *upload_data_size) != MHD_YES && !r->early_status) {
                    r->early_status = NS_ERR_INVALID;
                    snprintf(r->early_msg, sizeof(r->early_msg), "the multipart body is malformed");
                }
            } else if (buf_append(&r->body, upload_data, *upload_data_size)) {
                r->early_status = NS_ERR_TOO_LARGE;
                snprintf(r->early_msg, sizeof(r->early_msg), "The request body is larger than the limit of %zu bytes.",
                         s->p.max_body);
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    /* the whole request is in: answer (in the error shape of the API the path belongs to);
     * the key is checked again (it may have been revoked while the body came in) */
    if (!metrics_public_route(method, url) && !server_auth(s, c, &x))
        return EARLY_ERROR(NS_ERR_AUTH, NULL, NULL, "%s", AUTH_MESSAGE);
    if (!rt) {
        if (path_known)
            return send_method_not_allowed(c, dl, method, url);
        return EARLY_ERROR(NS_ERR_NOT_FOUND, NULL, "unknown_url", "Invalid URL (%s %.200s)", method, url);
    }
    if (r->early_status)
        return EARLY_ERROR(r->early_status, NULL, NULL, "%s", r->early_msg);
    /* JSON routes take application/json only (issue 27.10): without it, or as text/plain, a
     * body is a CORS "simple" request a web page can send without a preflight. Ollama reads
     * any body as JSON (its documented calls are `curl -d`, form-encoded); a page cannot
     * reach it either: browsers send Origin, which httpguard refuses unless listed. */
    if (rt->body == BODY_JSON && r->body.len && !dl->body_any_type && !content_type_is(c, "application/json"))
        return EARLY_ERROR(NS_ERR_MEDIA_TYPE, NULL, NULL, "The request body must be application/json.");
    /* JSON is UTF-8 (RFC 8259); cJSON would pass other bytes through to the engine and
     * the store, so they are refused here, once, for every JSON route */
    if (rt->body == BODY_JSON && r->body.len) {
        size_t ok = utf8_valid_prefix(r->body.p, r->body.len);
        if (ok != r->body.len)
            return EARLY_ERROR(NS_ERR_INVALID, NULL, NULL, "The request body is not valid UTF-8 (byte %zu).", ok + 1);
    }
#undef EARLY_ERROR
#undef AUTH_MESSAGE
    x.r = r;
    return rt->fn(&x);
}

/* quota.h's batch_left: what a queued batch still holds of its estimate, by the share of
 * its lines not finished (all of it while it validates); 0 once it ends or is cancelled */
static int64_t server_batch_left(void *ud, const char *batch_id, int64_t estimate)
{
    struct server *s = ud;
    struct store_batch b;
    int rc = store_batch_get(s->st, batch_id, &b);
    if (rc == NS_ERR_NOT_FOUND)
        return -1;
    if (rc)
        return estimate; /* the store cannot say: keep counting it */
    int64_t left = 0;
    if (!store_batch_status_terminal(b.status) && b.status != SB_CANCELLING)
        left = b.total > 0 ? estimate * (b.total - b.completed - b.failed) / b.total : estimate;
    store_batch_release(&b);
    return left;
}

int server_start(struct server_params p, struct store *st, struct sched **scheds,
                 int n_scheds, struct batchmgr *bm, struct server **out, char *err, size_t errlen)
{
    int rc = NS_ERR_NOMEM;
    struct server *s = calloc(1, sizeof(*s));
    *out = NULL;
    if (!s)
        return NS_ERR_NOMEM;
    s->p = p;
    pthread_mutex_init(&s->pull_mu, NULL);
    pthread_cond_init(&s->pull_cv, NULL);
    s->data_dir = strdup(p.data_dir);
    s->api_key = p.api_key ? strdup(p.api_key) : NULL;
    if (s->api_key)
        sha256_hex(s->api_key, strlen(s->api_key), s->api_key_hash);
    s->no_auth = p.no_auth;
    s->started_at = time(NULL);
    s->st = st;
    s->scheds = scheds;
    s->n_scheds = n_scheds;
    s->bm = bm;
    struct quota_params qp = quota_default_params();
    qp.batch_left = server_batch_left;
    qp.batch_ud = s;
    if (!s->data_dir || (p.api_key && !s->api_key) || quota_create(qp, &s->quota))
        goto out;
    if (p.public_url && server_public_url_check(p.public_url, err, errlen)) {
        rc = NS_ERR_INVALID;
        goto out;
    }
    if (p.trusted_proxies && httpguard_proxies_check(p.trusted_proxies, err, errlen)) {
        rc = NS_ERR_INVALID;
        goto out;
    }
    if (p.public_url) {
        if (!(s->public_url = strdup(p.public_url)))
            goto out;
        size_t l = strlen(s->public_url);
        while (l && s->public_url[l - 1] == '/')
            s->public_url[--l] = '\0';
    }
    if (!(s->keys = keycache_init(keycache_default_params(), st)))
        goto out;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)p.port);
    if (inet_pton(AF_INET, p.host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "cannot listen on '%s': not an IPv4 address", p.host);
        rc = NS_ERR_INVALID;
        goto out;
    }
    /* MHD_USE_ITC: server_drain() needs it to stop listening while connections go on */
    bool tls = p.tls_cert && p.tls_key;
    if (tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(err, errlen, "this libmicrohttpd was built without TLS: --tls-cert/--tls-key cannot be used");
        rc = NS_ERR_UNSUPPORTED;
        goto out;
    }
    /* Event-driven: a small pool of threads, each with its own epoll set (MHD_USE_AUTO picks
     * epoll on Linux), serves every connection; a request waiting for its model holds a
     * suspended connection, not a thread (generate_job_suspend). A thread per connection cost each
     * forwarded request two thread wake-ups (bench/forward.mjs). MHD_USE_ITC: resumes and
     * server_drain() wake the pool. */
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_AUTO |
                         MHD_USE_ERROR_LOG | (tls ? MHD_USE_TLS : 0);
    unsigned int pool = p.http_threads > 0 ? (unsigned)p.http_threads : (unsigned)server_default_threads();
    /* the TLS options end the list early when there is no certificate */
    struct httpguard_params gp = httpguard_default_params();
    gp.allowed_hosts = p.allowed_hosts;
    gp.cors_origins = p.cors_origins;
    gp.header_timeout = p.header_timeout;
    gp.trusted_proxies = p.trusted_proxies;
    if (!(s->guard = httpguard_start(gp))) {
        rc = NS_ERR_NOMEM;
        goto out;
    }
    unsigned max_conn = p.max_connections ? p.max_connections : 4096;
    /* one address may hold a quarter of the connections: a slow or hostile client cannot
     * take them all (behind a proxy every client is one address: raise it there) */
    unsigned per_ip = p.max_per_ip ? p.max_per_ip : max_conn / 4 > 16 ? max_conn / 4 : 16;
    s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                              MHD_OPTION_NOTIFY_COMPLETED, req_completed, NULL, MHD_OPTION_THREAD_POOL_SIZE, pool,
                              MHD_OPTION_UNESCAPE_CALLBACK, url_unescape, NULL,
                              MHD_OPTION_NOTIFY_CONNECTION, httpguard_notify, s->guard,
                              MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip,
                              MHD_OPTION_CONNECTION_TIMEOUT,
                              (unsigned int)(p.idle_timeout ? p.idle_timeout : 60), MHD_OPTION_CONNECTION_LIMIT,
                              max_conn,
                              tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, p.tls_key, MHD_OPTION_HTTPS_MEM_CERT,
                              p.tls_cert, MHD_OPTION_END);
    if (!s->mhd) {
        if (tls)
            snprintf(err, errlen, "cannot listen on %s:%d with TLS (port in use, or a certificate and key that "
                                  "GnuTLS cannot load or that do not match)", p.host, p.port);
        else
            snprintf(err, errlen, "cannot listen on %s:%d (port in use?)", p.host, p.port);
        rc = NS_ERR_IO;
        goto out;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : p.port;
    pthread_mutex_init(&s->smu, NULL);
    pthread_cond_init(&s->scv, NULL);
    s->ring = calloc(SAMPLES, sizeof(*s->ring));
    s->sampler_started = s->ring && pthread_create(&s->sampler, NULL, metrics_sampler_thread, s) == 0;
    if (!s->sampler_started)
        log_event(LOG_WARN, NULL, NULL, "no dashboard history (cannot start the sampler)");
    *out = s;
    return NS_OK;
out:
    if (rc == NS_ERR_NOMEM)
        snprintf(err, errlen, "out of memory");
    httpguard_stop(s->guard);
    keycache_free(s->keys);
    quota_free(s->quota);
    free(s->data_dir);
    free(s->api_key);
    free(s->public_url);
    free(s);
    return rc;
}

int server_port(const struct server *s) { return s->port; }

void server_drain(struct server *s)
{
    if (atomic_exchange(&s->draining, true))
        return;
    /* pulls stop now, not at the end of the grace period: the next pull resumes them */
    atomic_store(&s->pull_stop, true);
    MHD_socket fd = MHD_quiesce_daemon(s->mhd);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

int server_inflight(struct server *s) { return atomic_load(&s->inflight); }

void server_stop(struct server *s)
{
    if (!s)
        return;
    models_stop(s); /* a pull's connection may wait suspended: the daemon cannot stop under it */
    MHD_stop_daemon(s->mhd);
    httpguard_stop(s->guard);
    if (s->sampler_started) {
        pthread_mutex_lock(&s->smu);
        s->sampler_stop = true;
        pthread_cond_broadcast(&s->scv);
        pthread_mutex_unlock(&s->smu);
        pthread_join(s->sampler, NULL);
    }
    pthread_mutex_destroy(&s->smu);
    pthread_mutex_destroy(&s->pull_mu);
    pthread_cond_destroy(&s->pull_cv);
    pthread_cond_destroy(&s->scv);
    free(s->ring);
    quota_free(s->quota);
    keycache_free(s->keys);
    free(s->data_dir);
    free(s->api_key);
    free(s->public_url);
    free(s);
}

