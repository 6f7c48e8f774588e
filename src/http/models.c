/*
 * models.c — the model store (backend/modelstore.h) over HTTP: the Ollama API's POST
 * /api/pull, and the store's models in GET /api/tags, POST /api/show and GET /v1/models
 * beside the served ones.
 *
 * DESIGN
 * A store model that no --model serves is listed as available: in /api/tags as Ollama lists
 * what it has on disk, in /v1/models with "served": false (a request naming it gets the
 * usual 404 until a server is started with it; models are not loaded on demand).
 *
 * /api/pull resolves the reference on its own thread (the Hub listing: a wrong name, a
 * missing quant or a gated repository answers at once with 404/401/400, in Ollama's error
 * shape), then runs the download on a thread of its own. Its progress goes to the client as
 * Ollama streams it, one JSON object a line: {"status":"pulling manifest"}, {"status":
 * "pulling <digest[:12]>","digest":"sha256:...","total":N,"completed":M}..., {"status":
 * "verifying sha256 digest"}, {"status":"writing manifest"}, {"status":"success"}, or a last
 * {"error":"..."}. With "stream": false only the last line is sent. The connection waits
 * suspended while there is nothing to send (as generate.c's streams do): the pull thread
 * resumes it only when it was suspended, so it never touches a closed connection. A client
 * that goes away stops the pull (its .part stays, for the next pull to resume).
 *
 * Pulls need an admin key (they write to the server's disk). server_drain() tells pulls to
 * stop (at their next progress report: a second at most, even when stalled), and
 * server_stop() calls models_stop() before stopping the daemon, which waits for them.
 *
 * THREADS: MHD's threads for the routes; one thread per pull.
 */
#include "server_int.h"

#include "../backend/modelstore.h"
#include "../engine/ggufinfo.h"

#define MODELS_OUT_MAX (8u << 20) /* NDJSON not yet sent: the client reads slowly */

/* ---- listing --------------------------------------------------------------------------- */

/* is store model m one a scheduler serves (by name, or the same file under another name)? */
static bool models_served(const struct server *srv, const struct modelstore_model *m)
{
    for (int i = 0; i < srv->n_scheds; i++) {
        const char *p = backend_model_path(sched_backend(srv->scheds[i]));
        if (strcmp(sched_model_name(srv->scheds[i]), m->name) == 0 || (p && strcmp(p, m->path) == 0))
            return true;
    }
    return false;
}

/* the store's models that are not served: *out malloc'd (free it), *n of them */
static void models_unserved(const struct server *srv, struct modelstore_model **out, int *n)
{
    *out = NULL;
    *n = 0;
    char err[256];
    if (!srv->p.models_dir || modelstore_list(srv->p.models_dir, out, n, err, sizeof(err)))
        return;
    int k = 0;
    for (int i = 0; i < *n; i++)
        if (!models_served(srv, &(*out)[i]))
            (*out)[k++] = (*out)[i];
    *n = k;
}

void models_openai_add(struct server *srv, cJSON *data)
{
    struct modelstore_model *ms;
    int n;
    models_unserved(srv, &ms, &n);
    for (int i = 0; i < n; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", ms[i].name);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", (double)ms[i].pulled_unix);
        cJSON_AddStringToObject(m, "owned_by", "nightshift");
        cJSON_AddBoolToObject(m, "served", false);
        cJSON_AddItemToArray(data, m);
    }
    free(ms);
}

void models_ollama_tags_add(struct server *srv, cJSON *tags)
{
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(tags, "models");
    struct modelstore_model *ms;
    int n;
    models_unserved(srv, &ms, &n);
    for (int i = 0; i < n && arr; i++) {
        struct ollama_model om = {.name = ms[i].name, .path = ms[i].path};
        char err[256];
        if (ggufinfo_read(ms[i].path, &om.info, NULL, err, sizeof(err)))
            continue; /* a damaged file: `nightshift models show` says so */
        cJSON *one = ollama_list(&om, 1, false);
        cJSON *e = cJSON_DetachItemFromArray(cJSON_GetObjectItemCaseSensitive(one, "models"), 0);
        cJSON_Delete(one);
        if (!e)
            continue;
        /* the whole model (every split) and the digest the source gave */
        cJSON_ReplaceItemInObjectCaseSensitive(e, "size", cJSON_CreateNumber((double)ms[i].size));
        if (ms[i].sha256[0])
            cJSON_ReplaceItemInObjectCaseSensitive(e, "digest", cJSON_CreateString(ms[i].sha256));
        cJSON_AddItemToArray(arr, e);
    }
    free(ms);
}

cJSON *models_ollama_show(struct server *srv, const char *name)
{
    struct modelstore_model m;
    char err[2048];
    if (!srv->p.models_dir || modelstore_find(srv->p.models_dir, name, &m, err, sizeof(err)))
        return NULL;
    struct ollama_model om = {.name = m.name, .path = m.path};
    if (ggufinfo_read(m.path, &om.info, NULL, err, sizeof(err)))
        return NULL;
    return ollama_show(&om);
}

/* ---- POST /api/pull -------------------------------------------------------------------- */

struct pull_job {
    pthread_mutex_t mu;
    int refs;                 /* the thread's and the response's */
    struct server *srv;
    struct MHD_Connection *conn;
    struct modelstore_pull *plan;   /* NULL until the thread has planned it (streamed) */
    char *name;               /* the model asked for */
    struct hub_conf hc;
    bool stream;
    struct buf out;           /* NDJSON not yet sent */
    size_t out_pos;
    bool done;                /* the thread has written its last line */
    bool suspended;
    bool gone;                /* the response is freed: the client went away */
    int last_index;           /* the file of the last progress line */
    uint64_t last_completed;
};

static void pull_job_unref(struct pull_job *j)
{
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left)
        return;
    modelstore_pull_free(j->plan);
    free(j->name);
    buf_release(&j->out);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* a line for the client (mu held); true when the caller must resume the connection */
static bool pull_job_line(struct pull_job *j, cJSON *o)
{
    stream_ndjson(&j->out, o);
    bool resume = j->suspended;
    j->suspended = false;
    return resume;
}

static int pull_on_event(void *ud, const struct modelstore_event *ev)
{
    struct pull_job *j = ud;
    cJSON *o = NULL;
    char status[64], digest[80], hex[65];
    switch (ev->phase) {
    case MODELSTORE_DOWNLOAD:
        if (!j->stream)
            break;
        if (ev->digest[0])
            snprintf(hex, sizeof(hex), "%s", ev->digest);
        else
            sha256_hex(ev->file, strlen(ev->file), hex); /* a URL's file: an id all the same */
        snprintf(status, sizeof(status), "pulling %.12s", hex);
        snprintf(digest, sizeof(digest), "sha256:%s", hex);
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", status);
        cJSON_AddStringToObject(o, "digest", digest);
        cJSON_AddNumberToObject(o, "total", (double)ev->total);
        cJSON_AddNumberToObject(o, "completed", (double)ev->completed);
        break;
    case MODELSTORE_VERIFY:
    case MODELSTORE_WRITE:
        if (!j->stream)
            break;
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", ev->phase == MODELSTORE_VERIFY ? "verifying sha256 digest" : "writing manifest");
        break;
    case MODELSTORE_DONE: break; /* the thread writes the last line */
    }
    pthread_mutex_lock(&j->mu);
    bool stop = j->gone || atomic_load(&j->srv->pull_stop);
    bool resume = o && !stop ? pull_job_line(j, o) : false;
    pthread_mutex_unlock(&j->mu);
    if (o && stop)
        cJSON_Delete(o); /* nobody to send it to */
    if (resume)
        MHD_resume_connection(j->conn);
    return stop;
}

static void *pull_thread(void *arg)
{
    struct pull_job *j = arg;
    struct server *srv = j->srv;
    char err[2048] = "";
    struct modelstore_model m;
    int rc = NS_OK;
    /* a streamed pull reads the Hub's listing here, not on the HTTP thread, which serves
     * other connections meanwhile (a listing may take up to the client's timeout); its
     * errors follow "pulling manifest" as an error line, as Ollama's own do */
    if (!j->plan) {
        char why[1900] = "";
        if ((rc = modelstore_pull_plan(srv->p.models_dir, &j->hc, j->name, &j->plan, why, sizeof(why))) != NS_OK)
            snprintf(err, sizeof(err), "pull model manifest: %s", why);
    }
    if (rc == NS_OK)
        rc = modelstore_pull_run(j->plan, pull_on_event, j, &m, err, sizeof(err));
    cJSON *o = cJSON_CreateObject();
    if (rc)
        cJSON_AddStringToObject(o, "error", err);
    else
        cJSON_AddStringToObject(o, "status", "success");
    if (rc)
        log_event(LOG_WARN, NULL, NULL, "pull of %s failed: %s", j->plan ? modelstore_pull_name(j->plan) : j->name, err);
    else
        log_event(LOG_INFO, NULL, NULL, "pulled %s into the model store", modelstore_pull_name(j->plan));
    pthread_mutex_lock(&j->mu);
    bool resume = pull_job_line(j, o);
    j->done = true;
    pthread_mutex_unlock(&j->mu);
    if (resume)
        MHD_resume_connection(j->conn);
    pull_job_unref(j);
    pthread_mutex_lock(&srv->pull_mu);
    srv->n_pulls--;
    pthread_cond_broadcast(&srv->pull_cv);
    pthread_mutex_unlock(&srv->pull_mu);
    return NULL;
}

static ssize_t pull_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    struct pull_job *j = cls;
    pthread_mutex_lock(&j->mu);
    if (j->out_pos >= j->out.len) {
        if (!j->done) {
            /* called again once resumed, with something to send */
            j->suspended = true;
            MHD_suspend_connection(j->conn);
            pthread_mutex_unlock(&j->mu);
            return 0;
        }
        pthread_mutex_unlock(&j->mu);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    size_t n = j->out.len - j->out_pos;
    if (n > max)
        n = max;
    memcpy(out, j->out.p + j->out_pos, n);
    j->out_pos += n;
    if (j->out_pos == j->out.len) {
        buf_reset(&j->out);
        j->out_pos = 0;
    }
    pthread_mutex_unlock(&j->mu);
    return (ssize_t)n;
}

static void pull_free(void *cls)
{
    struct pull_job *j = cls;
    pthread_mutex_lock(&j->mu);
    j->gone = true;
    pthread_mutex_unlock(&j->mu);
    pull_job_unref(j);
}

enum MHD_Result models_ollama_pull(struct route_ctx *x)
{
    if (!x->admin)
        return respond_ollama_error(x->c, NS_ERR_AUTH, "pulling a model needs an admin key");
    const char *body = x->r->body.p ? x->r->body.p : "";
    char name[1024], err[2048];
    struct oai_error oerr;
    if (ollama_model_field(body, x->r->body.len, name, sizeof(name), &oerr))
        return respond_ollama_error(x->c, oerr.status, "%s", oerr.message);
    cJSON *o = cJSON_ParseWithLength(body, x->r->body.len);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "stream");
    bool stream = !cJSON_IsBool(st) || cJSON_IsTrue(st);
    bool bad_stream = st && !cJSON_IsBool(st) && !cJSON_IsNull(st);
    cJSON_Delete(o);
    if (bad_stream)
        return respond_ollama_error(x->c, NS_ERR_INVALID, "stream must be true or false");
    if (!x->srv->p.models_dir)
        return respond_ollama_error(x->c, NS_ERR_UNSUPPORTED, "this server has no model store (set NIGHTSHIFT_MODELS)");
    struct hub_conf hc = hub_default_conf();
    struct modelstore_pull *plan = NULL;
    /* not streamed: the answer's status is the listing's (404 unknown, 401 gated), so it is
     * read before answering; streamed: by the pull thread (pull_thread) */
    if (!stream) {
        int rc = modelstore_pull_plan(x->srv->p.models_dir, &hc, name, &plan, err, sizeof(err));
        if (rc)
            return respond_ollama_error(x->c, rc == NS_ERR_UPSTREAM ? NS_ERR_UPSTREAM : rc, "pull model manifest: %s", err);
    }
    struct pull_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->name = strdup(name))) {
        free(j);
        modelstore_pull_free(plan);
        return respond_ollama_error(x->c, NS_ERR_NOMEM, "out of memory");
    }
    j->hc = hc;
    pthread_mutex_init(&j->mu, NULL);
    j->refs = 2;
    j->srv = x->srv;
    j->conn = x->c;
    j->plan = plan;
    j->stream = stream;
    j->last_index = -1;
    buf_init(&j->out, MODELS_OUT_MAX);
    if (stream) {
        cJSON *first = cJSON_CreateObject();
        cJSON_AddStringToObject(first, "status", "pulling manifest");
        stream_ndjson(&j->out, first);
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, pull_reader, j, pull_free);
    if (!resp) {
        j->refs = 1;
        pull_job_unref(j);
        return MHD_NO;
    }
    log_event(LOG_INFO, NULL, NULL, "pulling %s into the model store (/api/pull)", plan ? modelstore_pull_name(plan) : name);
    pthread_mutex_lock(&x->srv->pull_mu);
    x->srv->n_pulls++;
    pthread_mutex_unlock(&x->srv->pull_mu);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, pull_thread, j) != 0) {
        pthread_mutex_lock(&x->srv->pull_mu);
        x->srv->n_pulls--;
        pthread_mutex_unlock(&x->srv->pull_mu);
        /* the thread's part, done here: an error line, the end */
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "error", "cannot start the pull thread");
        pthread_mutex_lock(&j->mu);
        pull_job_line(j, e);
        j->done = true;
        pthread_mutex_unlock(&j->mu);
        pull_job_unref(j);
    }
    pthread_attr_destroy(&attr);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = httpguard_queue(x->c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

void models_stop(struct server *s)
{
    pthread_mutex_lock(&s->pull_mu);
    atomic_store(&s->pull_stop, true);
    while (s->n_pulls > 0)
        pthread_cond_wait(&s->pull_cv, &s->pull_mu);
    pthread_mutex_unlock(&s->pull_mu);
}
