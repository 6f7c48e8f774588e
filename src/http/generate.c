/*
 * generate.c — real-time generation (server_int.h): chat, completions, messages,
 * embeddings and the Ollama routes; jobs handed to a scheduler, the connection suspended
 * while it waits, streaming in each API's event format.
 */
#include "server_int.h"

/* ---- chat / completions ------------------------------------------------------------- */

struct job {
    struct sched_job sj;
    pthread_mutex_t mu;
    /* the connection waiting for this job: MHD suspends it (generate_job_suspend) while there is
     * nothing to send, and the engine side resumes it (job_wake) */
    struct MHD_Connection *conn;
    bool suspended;
    bool starved;               /* job_next_events found nothing to send yet */
    int refs;                   /* the engine's and the HTTP side's */
    bool done;
    bool stream;
    const struct dialect *d;    /* the route's dialect: how it answers and streams (proto/dialect.h) */
    /* the answer's identity (id, model, created, t_start, ...) and, when streamed, its
     * state: what the dialect's answer and stream read (proto/stream.h) */
    struct stream st;
    struct engine_result res;   /* deep copy of the final result (engine_result_copy) */
    struct quota *quota;        /* count the call's tokens for key (quota.h) when it ends */
    char key[64];
    struct buf out;             /* SSE bytes ready for the reader */
    size_t out_pos;
    /* a route whose answers are kept (Responses with store): the answer is saved once it is
     * done, before its last event or its body goes out (responses.c) */
    bool save;
    struct server *srv;
    char owner[64];
};

void generate_job_unref(struct job *j)
{
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left)
        return;
    oai_request_release(&j->sj.oreq);
    stream_release(&j->st);
    buf_release(&j->out);
    engine_result_release(&j->res);
    pthread_mutex_destroy(&j->mu);
    free(j);
}


/* Waiting without a thread: the connection's handler or content reader suspends it until
 * the job has something for it. Both sides hold mu, so a resume always follows its
 * suspend; MHD is called for the resume after mu is released (MHD's own locks are never
 * taken inside mu by one thread and around it by another). */
void generate_job_suspend(struct job *j)
{
    j->suspended = true;
    MHD_suspend_connection(j->conn);
}

/* mu held: news for the connection; true when the caller must resume it (after unlock) */
static bool job_wake(struct job *j)
{
    bool resume = j->suspended;
    j->suspended = false;
    return resume;
}

static void job_on_token(struct sched_job *sj, const struct engine_delta *d)
{
    struct job *j = (struct job *)sj;
    pthread_mutex_lock(&j->mu);
    j->d->stream_delta(&j->st, d);
    bool resume = job_wake(j);
    pthread_mutex_unlock(&j->mu);
    if (resume)
        MHD_resume_connection(j->conn); /* the engine's reference keeps j alive */
}

static void job_on_done(struct sched_job *sj, const struct engine_result *res)
{
    struct job *j = (struct job *)sj;
    pthread_mutex_lock(&j->mu);
    /* text, logprobs and choices are valid during done() only */
    if (engine_result_copy(&j->res, res) != NS_OK) {
        memset(&j->res, 0, sizeof(j->res));
        j->res.status = NS_ERR_NOMEM;
        j->res.text = "";
        snprintf(j->res.message, sizeof(j->res.message), "out of memory");
    }
    if (j->key[0])
        quota_tokens_add(j->quota, j->key, (int64_t)res->prompt_tokens + res->completion_tokens);
    j->done = true;
    bool resume = job_wake(j);
    pthread_mutex_unlock(&j->mu);
    if (resume)
        MHD_resume_connection(j->conn);
    generate_job_unref(j);
}

/* a finished job whose answer is kept: its object (answer: the one the caller built, else
 * NULL) to the store, once (mu held or the job the caller's alone) */
static void job_save(struct job *j, const cJSON *answer)
{
    if (!j->save || !j->done)
        return;
    j->save = false;
    if (j->res.status != NS_OK)
        return;
    cJSON *own = answer ? NULL : j->d->answer(&j->st, &j->res);
    if (answer || own)
        responses_save(j->srv, j->owner, &j->sj.oreq, j->st.id, j->st.created, j->st.model,
                       answer ? answer : own);
    cJSON_Delete(own);
}

/* fill j->out with the next bytes of the stream (mu held): the dialect writes them
 * (proto/dialect.h); j->starved when there is nothing yet */
static void job_next_events(struct job *j)
{
    j->starved = false;
    job_save(j, NULL); /* kept before the stream says it is complete: a next turn finds it */
    while (j->out_pos >= j->out.len) {
        buf_reset(&j->out);
        j->out_pos = 0;
        j->st.res = j->done ? &j->res : NULL;
        int step = j->d->stream_next(&j->st, &j->out);
        if (step == STREAM_WAIT) {
            j->starved = true;
            return;
        }
        if (step == STREAM_END)
            return;
    }
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    struct job *j = cls;
    pthread_mutex_lock(&j->mu);
    job_next_events(j);
    if (j->out_pos >= j->out.len) {
        if (j->starved) {
            /* called again once resumed, with something to send */
            generate_job_suspend(j);
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
    pthread_mutex_unlock(&j->mu);
    return (ssize_t)n;
}

/* the stream's response is gone: finished, or its client went away (a write failed); in
 * the second case the engine stops generating for nobody */
static void stream_free(void *cls)
{
    struct job *j = cls;
    pthread_mutex_lock(&j->mu);
    if (!j->done)
        atomic_store(&j->sj.oreq.req.cancelled, true);
    pthread_mutex_unlock(&j->mu);
    generate_job_unref(j);
}


/* each generation route: the dialect it speaks, chat (messages) or completion (prompt),
 * the field that holds its input (errors name it), and whether its answers are kept in the
 * store and may continue stored ones or run in the background (Responses: responses.c) */
static const struct {
    const struct dialect *d;
    bool chat;
    const char *input;
    bool stored;
} gen_routes[] = {
    [GEN_CHAT] = {&dialect_openai, true, "messages", false},
    [GEN_COMPLETION] = {&dialect_openai, false, "prompt", false},
    [GEN_MESSAGES] = {&dialect_anthropic, true, "messages", false},
    [GEN_OLLAMA_CHAT] = {&dialect_ollama, true, "messages", false},
    [GEN_OLLAMA_GENERATE] = {&dialect_ollama, false, "prompt", false},
    [GEN_RESPONSES] = {&dialect_responses, true, "input", true},
};

/* an error in the shape of the route's API */
#define GEN_ERROR(x, flavor, status, param, ...)                                                                   \
    respond_error((x)->c, gen_routes[flavor].d, (status), (param), NULL, __VA_ARGS__)

/* the scheduler of the model a client names, as its dialect matches names */
static struct sched *gen_sched(struct server *srv, const struct dialect *d, const char *name)
{
    for (int i = 0; i < srv->n_scheds; i++)
        if (dialect_model_matches(d, sched_model_name(srv->scheds[i]), name))
            return srv->scheds[i];
    return NULL;
}

/* dialect_parse.forwards: the model's backend forwards the client's body upstream (ud: the
 * route_ctx) */
static bool gen_forwards(void *ud, const char *model)
{
    struct sched *s = server_sched_by_model(((struct route_ctx *)ud)->srv, model);
    return s && sched_backend(s)->ops->forward;
}

static enum MHD_Result gen_answer(struct MHD_Connection *c, struct job *j, int flavor);

/* Not done yet: the connection is suspended and r keeps j for answer (true). Done already:
 * false, the caller answers now. */
static bool job_wait(struct job *j, struct req *r, enum MHD_Result (*answer)(struct MHD_Connection *, struct job *, int),
                     int flavor)
{
    pthread_mutex_lock(&j->mu);
    bool wait = !j->done;
    if (wait) {
        r->answer = answer;
        r->job = j;
        r->flavor = flavor;
        generate_job_suspend(j);
    }
    pthread_mutex_unlock(&j->mu);
    return wait;
}

static enum MHD_Result h_generate(struct route_ctx *x, enum gen_flavor flavor)
{
    const struct dialect *d = gen_routes[flavor].d;
    bool chat = gen_routes[flavor].chat;
    struct oai_error err;
    /* the key's budget first: a refused call costs no parsing (and counts for nothing) */
    if (x->key[0]) {
        struct quota_refusal why;
        int qrc = quota_request_admit(x->srv->quota, x->key, x->lim, &why);
        if (qrc == NS_ERR_QUOTA_REQUESTS || qrc == NS_ERR_QUOTA_TOKENS)
            return respond_quota_refusal(x->c, d, &why);
        if (qrc)
            return GEN_ERROR(x, flavor, qrc, NULL, "out of memory");
    }
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return GEN_ERROR(x, flavor, NS_ERR_NOMEM, NULL, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    j->conn = x->c;
    stream_init(&j->st, 64u << 20);
    buf_init(&j->out, 64u << 20);
    j->refs = 1;
    const char *body = x->r->body.p ? x->r->body.p : "";
    /* the model decides how much the dialect checks: an upstream judges its own bodies */
    struct dialect_parse how = {.chat = chat,
                                .forwards = gen_forwards,
                                .history = gen_routes[flavor].stored ? responses_history : NULL,
                                .ud = x};
    const char *input = gen_routes[flavor].input;
    int rc = d->parse(body, x->r->body.len, &how, &j->sj.oreq, &err);
    if (rc) {
        generate_job_unref(j);
        return GEN_ERROR(x, flavor, rc, err.param, "%s", err.message);
    }
    struct sched *s = gen_sched(x->srv, d, j->sj.oreq.model);
    if (!s) {
        char msg[200];
        d->model_missing(msg, sizeof(msg), j->sj.oreq.model);
        generate_job_unref(j);
        return GEN_ERROR(x, flavor, NS_ERR_MODEL_NOT_FOUND, "model", "%s", msg);
    }
    j->st.t_start = clock_now();
    struct backend *be = sched_backend(s);
    struct backend_info info;
    be->ops->get_info(be->impl, &info);
    if (d->admit) {
        cJSON *now = NULL;
        if ((rc = d->admit(&j->sj.oreq, info.n_ctx_seq, &now, &err)) || now) {
            generate_job_unref(j);
            return now ? respond_json(x->c, 200, now) : GEN_ERROR(x, flavor, rc, err.param, "%s", err.message);
        }
    }
    struct engine_info ei;
    bool local = backend_model_info(be, &ei);
    if (local) {
        if (ei.embedding) {
            snprintf(ei.name, sizeof(ei.name), "%s", j->sj.oreq.model ? j->sj.oreq.model : "");
            generate_job_unref(j);
            return GEN_ERROR(x, flavor, NS_ERR_INVALID, "model",
                             "The model '%.100s' is loaded for embeddings only (--embedding): use /v1/embeddings.",
                             ei.name);
        }
    }
    /* check the context now, so an oversized prompt is a 400, not a broken stream (an
     * upstream checks its own) */
    char terr[256];
    int n_prompt = backend_count_tokens(be, &j->sj.oreq.req, terr, sizeof(terr));
    if (n_prompt < 0) {
        generate_job_unref(j);
        return GEN_ERROR(x, flavor, -n_prompt, input, "%s", terr);
    }
    int want = j->sj.oreq.req.max_tokens > 0 ? j->sj.oreq.req.max_tokens : 0;
    /* Responses' truncation "auto": the oldest items go until it fits (or nothing can go) */
    while (gen_routes[flavor].stored && info.n_ctx_seq > 0 &&
           (n_prompt + want > info.n_ctx_seq || n_prompt >= info.n_ctx_seq)) {
        rc = responses_request_truncate(&j->sj.oreq, false, &err);
        if (rc == NS_ERR_CONTEXT)
            break;
        if (rc || (n_prompt = backend_count_tokens(be, &j->sj.oreq.req, terr, sizeof(terr))) < 0) {
            generate_job_unref(j);
            return rc ? GEN_ERROR(x, flavor, rc, err.param, "%s", err.message)
                      : GEN_ERROR(x, flavor, -n_prompt, input, "%s", terr);
        }
    }
    if (info.n_ctx_seq > 0 && (n_prompt + want > info.n_ctx_seq || n_prompt >= info.n_ctx_seq)) {
        generate_job_unref(j);
        return GEN_ERROR(x, flavor, NS_ERR_CONTEXT, input,
                          "This model's maximum context length is %d tokens. However, you requested %d tokens "
                          "(%d in the %s, %d in the completion). Please reduce the length of the %s or completion.",
                          info.n_ctx_seq, n_prompt + want, n_prompt, input, want, input);
    }
    if (j->sj.oreq.req.n > 1 && local) {
        /* the choices run side by side, one sequence each: say so now, not in the stream */
        if (j->sj.oreq.req.n > ei.n_parallel) {
            int n = j->sj.oreq.req.n;
            generate_job_unref(j);
            return GEN_ERROR(x, flavor, NS_ERR_UNSUPPORTED, "n",
                             "Invalid 'n': this model runs at most %d sequences at once (--parallel), so at most %d "
                             "choices, but got %d.",
                             ei.n_parallel, ei.n_parallel, n);
        }
    }
    j->stream = j->sj.oreq.stream;
    j->d = d;
    j->st.r = &j->sj.oreq;
    snprintf(j->st.model, sizeof(j->st.model), "%s", j->sj.oreq.model);
    oai_make_id(j->st.id, sizeof(j->st.id), d->id_prefix[chat]);
    j->st.created = time(NULL);
    j->st.chat = chat;
    j->st.include_usage = j->sj.oreq.include_usage;
    j->st.n_prompt = n_prompt;
    if (gen_routes[flavor].stored && responses_request_background(&j->sj.oreq)) {
        /* a one-line batch on the batch lane; the client polls (responses.c) */
        enum MHD_Result ret = responses_background(x, &j->sj.oreq, j->st.id, (int64_t)j->st.created);
        generate_job_unref(j);
        return ret;
    }
    j->save = gen_routes[flavor].stored && responses_request_store(&j->sj.oreq);
    j->srv = x->srv;
    snprintf(j->owner, sizeof(j->owner), "%s", x->owner);
    j->quota = x->srv->quota;
    snprintf(j->key, sizeof(j->key), "%s", x->key);
    j->sj.on_done = job_on_done;
    j->sj.on_token = j->stream ? job_on_token : NULL;
    j->refs = 2; /* the engine's reference is dropped in job_on_done */
    if (!j->sj.oreq.has_seed)
        j->sj.oreq.req.seed = (uint32_t)rand();
    if (sched_submit(s, &j->sj) != NS_OK) {
        j->refs = 1;
        generate_job_unref(j);
        return GEN_ERROR(x, flavor, NS_ERR_UNAVAILABLE, NULL, "the server is shutting down");
    }
    if (j->stream) {
        /* sent to the fallback at submission (on_failure = fallback, the backend down) */
        const char *fb = j->sj.served_by;
        if (fb)
            httpguard_set_fallback(x->c, fb);
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, j,
                                                                      stream_free);
        if (!resp) {
            generate_job_unref(j);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, j->d->stream_type);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result ret = httpguard_queue(x->c, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    if (job_wait(j, x->r, gen_answer, flavor))
        return MHD_YES;
    return gen_answer(x->c, j, flavor);
}

/* the answer of a finished non-streamed job (flavor: its enum gen_flavor); drops the HTTP
 * side's reference */
static enum MHD_Result gen_answer(struct MHD_Connection *c, struct job *j, int flavor)
{
    struct route_ctx xx = {.c = c};
    struct route_ctx *x = &xx;
    enum MHD_Result ret;
    const char *fb = j->sj.served_by;
    if (fb)
        httpguard_set_fallback(c, fb); /* on_failure = fallback: the answer says who gave it */
    if (j->d->answer_passes_raw && j->res.raw_body && j->res.http_status)
        /* an upstream's answer, byte for byte as it gave it (the backend parsed it already:
         * it is JSON) */
        ret = respond_bytes(x->c, (unsigned)j->res.http_status, "application/json", j->res.raw_body, j->res.raw_len);
    else if (j->res.status != NS_OK)
        ret = GEN_ERROR(x, flavor, j->res.status, j->res.param, "%s", j->res.message);
    else {
        cJSON *answer = j->d->answer(&j->st, &j->res);
        job_save(j, answer);
        ret = respond_json(x->c, 200, answer);
    }
    generate_job_unref(j);
    return ret;
}

static enum MHD_Result emb_answer(struct MHD_Connection *c, struct job *j, int flavor)
{
    (void)flavor;
    enum MHD_Result ret = j->res.status != NS_OK
                              ? respond_oai_error(c, j->res.status, j->res.param, NULL, "%s", j->res.message)
                              : respond_json(c, 200, oai_completion_body(&j->sj.oreq, &j->res, "", j->st.model, time(NULL)));
    generate_job_unref(j);
    return ret;
}

/* POST /v1/embeddings: on a local model loaded with --embedding; inputs of concurrent
 * requests are decoded together by its engine */
enum MHD_Result generate_embeddings(struct route_ctx *x)
{
    struct oai_error err;
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return respond_oai_error(x->c, NS_ERR_NOMEM, NULL, NULL, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    j->conn = x->c;
    j->refs = 1;
    cJSON *root = cJSON_ParseWithLength(x->r->body.p ? x->r->body.p : "", x->r->body.len);
    int rc = root ? oai_embeddings_from_json(root, &j->sj.oreq, &err)
                  : oai_error_set(&err, NS_ERR_INVALID, NULL,
                                  "We could not parse the JSON body of your request. The body must be valid JSON.");
    if (rc) {
        generate_job_unref(j);
        return respond_oai_error(x->c, rc, err.param, NULL, "%s", err.message);
    }
    struct sched *s = server_sched_by_model(x->srv, j->sj.oreq.model);
    if (!s) {
        enum MHD_Result ret = respond_oai_error(x->c, NS_ERR_MODEL_NOT_FOUND, "model", NULL,
                                         "The model '%.100s' does not exist or you do not have access to it.",
                                         j->sj.oreq.model);
        generate_job_unref(j);
        return ret;
    }
    struct backend *be = sched_backend(s);
    struct engine_info ei;
    backend_model_info(be, &ei);
    if (!ei.embedding) {
        enum MHD_Result ret = respond_oai_error(x->c, NS_ERR_INVALID, "model", NULL,
                                         "The model '%.100s' is not loaded for embeddings: serve an embedding model "
                                         "with --embedding.",
                                         j->sj.oreq.model);
        generate_job_unref(j);
        return ret;
    }
    snprintf(j->st.model, sizeof(j->st.model), "%s", j->sj.oreq.model);
    j->sj.on_done = job_on_done;
    j->refs = 2; /* the engine's reference is dropped in job_on_done */
    if (sched_submit(s, &j->sj) != NS_OK) {
        j->refs = 1;
        generate_job_unref(j);
        return respond_oai_error(x->c, NS_ERR_UNAVAILABLE, NULL, NULL, "the server is shutting down");
    }
    if (job_wait(j, x->r, emb_answer, 0))
        return MHD_YES;
    return emb_answer(x->c, j, 0);
}

/* POST /apply-template (llama-server's route): the prompt an OpenAI chat body renders to
 * with the named model's template, {"prompt": "..."}, nothing generated. The body is read
 * as /v1/chat/completions reads it, so the prompt is the one a chat call would run. */
enum MHD_Result generate_apply_template(struct route_ctx *x)
{
    struct oai_request req;
    struct oai_error err;
    struct dialect_parse how = {.chat = true};
    char *prompt = NULL;
    char msg[512];
    memset(&req, 0, sizeof(req));
    int rc = dialect_openai.parse(x->r->body.p ? x->r->body.p : "", x->r->body.len, &how, &req, &err);
    if (rc)
        return respond_oai_error(x->c, rc, err.param, NULL, "%s", err.message);
    struct sched *s = gen_sched(x->srv, &dialect_openai, req.model);
    if (!s) {
        dialect_openai.model_missing(msg, sizeof(msg), req.model);
        oai_request_release(&req);
        return respond_oai_error(x->c, NS_ERR_MODEL_NOT_FOUND, "model", NULL, "%s", msg);
    }
    rc = backend_render_prompt(sched_backend(s), &req.req, &prompt, msg, sizeof(msg));
    oai_request_release(&req);
    if (rc)
        return respond_oai_error(x->c, rc, rc == NS_ERR_UNSUPPORTED ? "model" : "messages", NULL, "%s", msg);
    cJSON *body = cJSON_CreateObject();
    if (!body || !cJSON_AddStringToObject(body, "prompt", prompt)) {
        cJSON_Delete(body);
        free(prompt);
        return respond_oai_error(x->c, NS_ERR_NOMEM, NULL, NULL, "out of memory");
    }
    free(prompt);
    return respond_json(x->c, 200, body);
}

/* POST /v1/messages/count_tokens: the prompt's tokens as a /v1/messages call with this body
 * would count them (the same parse, the same template and tokenizer: backend_count_tokens,
 * which h_generate's context check and usage.input_tokens use), nothing run. Local models
 * only: an upstream counts its own. */
enum MHD_Result generate_count_tokens(struct route_ctx *x)
{
    if (x->key[0]) {
        struct quota_refusal why;
        int qrc = quota_request_admit(x->srv->quota, x->key, x->lim, &why);
        if (qrc == NS_ERR_QUOTA_REQUESTS || qrc == NS_ERR_QUOTA_TOKENS)
            return respond_quota_refusal(x->c, &dialect_anthropic, &why);
        if (qrc)
            return respond_ant_error(x->c, qrc, "out of memory");
    }
    struct oai_request req;
    struct oai_error err;
    int rc = anthropic_count_request_parse(x->r->body.p ? x->r->body.p : "", x->r->body.len, &req, &err);
    if (rc)
        return respond_ant_error(x->c, rc, "%s", err.message);
    char msg[300];
    struct sched *s = gen_sched(x->srv, &dialect_anthropic, req.model);
    struct engine_info ei;
    bool local = s && backend_model_info(sched_backend(s), &ei);
    if (!s)
        dialect_anthropic.model_missing(msg, sizeof(msg), req.model);
    else if (!local)
        snprintf(msg, sizeof(msg), "model: '%.100s' is served by an upstream, which counts its own tokens; "
                                   "count_tokens is answered for local models", req.model);
    else if (ei.embedding)
        snprintf(msg, sizeof(msg), "model: '%.100s' is loaded for embeddings only (--embedding)", req.model);
    if (!local || ei.embedding) {
        oai_request_release(&req);
        return respond_ant_error(x->c, !s ? NS_ERR_MODEL_NOT_FOUND : NS_ERR_UNSUPPORTED, "%s", msg);
    }
    int n = backend_count_tokens(sched_backend(s), &req.req, msg, sizeof(msg));
    oai_request_release(&req);
    if (n < 0)
        return respond_ant_error(x->c, -n, "messages: %s", msg);
    cJSON *o = anthropic_count_answer(n);
    return o ? respond_json(x->c, 200, o) : respond_ant_error(x->c, NS_ERR_NOMEM, "out of memory");
}

enum MHD_Result generate_chat(struct route_ctx *x) { return h_generate(x, GEN_CHAT); }
enum MHD_Result generate_completions(struct route_ctx *x) { return h_generate(x, GEN_COMPLETION); }
enum MHD_Result generate_messages(struct route_ctx *x) { return h_generate(x, GEN_MESSAGES); }
enum MHD_Result generate_responses(struct route_ctx *x) { return h_generate(x, GEN_RESPONSES); }

/* ---- Ollama API (ollama.h) ---------------------------------------------------------- */

enum MHD_Result generate_ollama_chat(struct route_ctx *x) { return h_generate(x, GEN_OLLAMA_CHAT); }
enum MHD_Result generate_ollama_generate(struct route_ctx *x) { return h_generate(x, GEN_OLLAMA_GENERATE); }

/* a model on an upstream backend has no file: its URL stands for the path (digest, size 0) */
static void ollama_model_of(struct sched *s, struct ollama_model *m, struct backend_info *bi)
{
    struct backend *be = sched_backend(s);
    memset(m, 0, sizeof(*m));
    m->name = sched_model_name(s);
    if (backend_model_info(be, &m->info)) {
        m->path = backend_model_path(be);
        m->chat_template = backend_chat_template(be);
        return;
    }
    be->ops->get_info(be->impl, bi);
    m->path = bi->desc;
    snprintf(m->info.name, sizeof(m->info.name), "%s", m->name);
}

/* GET /api/tags, GET /api/ps: every served model is loaded and running */
static enum MHD_Result ollama_models(struct route_ctx *x, bool running)
{
    struct ollama_model *ms = calloc((size_t)x->srv->n_scheds + 1, sizeof(*ms));
    if (!ms)
        return respond_ollama_error(x->c, NS_ERR_NOMEM, "out of memory");
    struct backend_info *bis = calloc((size_t)x->srv->n_scheds + 1, sizeof(*bis));
    if (!bis) {
        free(ms);
        return respond_ollama_error(x->c, NS_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < x->srv->n_scheds; i++)
        ollama_model_of(x->srv->scheds[i], &ms[i], &bis[i]);
    cJSON *o = ollama_list(ms, x->srv->n_scheds, running);
    if (!running)
        models_ollama_tags_add(x->srv, o); /* what the model store has besides */
    free(ms);
    free(bis);
    return respond_json(x->c, 200, o);
}

enum MHD_Result generate_ollama_tags(struct route_ctx *x) { return ollama_models(x, false); }
enum MHD_Result generate_ollama_ps(struct route_ctx *x) { return ollama_models(x, true); }

/* the served model a /api/show or /api/embed body names; NULL when *ret is the error */
static struct sched *ollama_body_model(struct route_ctx *x, enum MHD_Result *ret)
{
    char name[256];
    struct oai_error err;
    if (ollama_model_field(x->r->body.p ? x->r->body.p : "", x->r->body.len, name, sizeof(name), &err)) {
        *ret = respond_ollama_error(x->c, err.status, "%s", err.message);
        return NULL;
    }
    struct sched *s = gen_sched(x->srv, &dialect_ollama, name);
    if (!s)
        *ret = respond_ollama_error(x->c, NS_ERR_MODEL_NOT_FOUND, "model \"%.100s\" not found", name);
    return s;
}

enum MHD_Result generate_ollama_show(struct route_ctx *x)
{
    char name[256];
    struct oai_error err;
    const char *body = x->r->body.p ? x->r->body.p : "";
    if (ollama_model_field(body, x->r->body.len, name, sizeof(name), &err) == NS_OK &&
        !gen_sched(x->srv, &dialect_ollama, name)) {
        cJSON *o = models_ollama_show(x->srv, name); /* a model of the store, not served */
        if (o)
            return respond_json(x->c, 200, o);
    }
    enum MHD_Result ret;
    struct sched *s = ollama_body_model(x, &ret);
    if (!s)
        return ret;
    struct ollama_model m;
    struct backend_info bi;
    ollama_model_of(s, &m, &bi);
    return respond_json(x->c, 200, ollama_show(&m));
}

/* the answer of an Ollama embeddings job (flavor: 1 the legacy /api/embeddings) */
static enum MHD_Result ollama_emb_answer(struct MHD_Connection *c, struct job *j, int flavor)
{
    enum MHD_Result ret = j->res.status != NS_OK
                              ? respond_ollama_error(c, j->res.status, "%s", j->res.message)
                              : respond_json(c, 200, ollama_embed_answer(flavor, j->st.model, &j->res, j->st.t_start));
    generate_job_unref(j);
    return ret;
}

/* POST /api/embed and the legacy /api/embeddings: on a model loaded with --embedding, the
 * same engine path as /v1/embeddings, in Ollama's shapes (issue 31.8); elsewhere a 400
 * that says which models do embeddings */
static enum MHD_Result ollama_embed(struct route_ctx *x, bool legacy)
{
    struct oai_error err;
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return respond_ollama_error(x->c, NS_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    j->conn = x->c;
    j->refs = 1;
    j->st.t_start = clock_now();
    int rc = ollama_embed_parse(x->r->body.p ? x->r->body.p : "", x->r->body.len, legacy, &j->sj.oreq, &err);
    if (rc) {
        generate_job_unref(j);
        return respond_ollama_error(x->c, rc, "%s", err.message);
    }
    snprintf(j->st.model, sizeof(j->st.model), "%s", j->sj.oreq.model);
    struct sched *s = gen_sched(x->srv, &dialect_ollama, j->sj.oreq.model);
    struct engine_info ei;
    if (!s || !backend_model_info(sched_backend(s), &ei) || !ei.embedding) {
        enum MHD_Result ret =
            !s ? respond_ollama_error(x->c, NS_ERR_MODEL_NOT_FOUND, "model \"%.100s\" not found", j->st.model)
               : respond_ollama_error(x->c, NS_ERR_UNSUPPORTED,
                                      "model \"%.100s\" does not support embeddings: nightshift serves them from models "
                                      "loaded with --embedding",
                                      j->st.model);
        generate_job_unref(j);
        return ret;
    }
    if (j->sj.oreq.req.n_embed == 0) {
        /* nothing to embed: no vectors, as Ollama answers */
        enum MHD_Result ret = respond_json(x->c, 200, ollama_embed_answer(legacy, j->st.model, NULL, j->st.t_start));
        generate_job_unref(j);
        return ret;
    }
    j->sj.on_done = job_on_done;
    j->refs = 2; /* the engine's reference is dropped in job_on_done */
    if (sched_submit(s, &j->sj) != NS_OK) {
        j->refs = 1;
        generate_job_unref(j);
        return respond_ollama_error(x->c, NS_ERR_UNAVAILABLE, "the server is shutting down");
    }
    if (job_wait(j, x->r, ollama_emb_answer, legacy))
        return MHD_YES;
    return ollama_emb_answer(x->c, j, legacy);
}

enum MHD_Result generate_ollama_embed(struct route_ctx *x) { return ollama_embed(x, false); }
enum MHD_Result generate_ollama_embeddings(struct route_ctx *x) { return ollama_embed(x, true); }

/* push, create, copy, delete: the served models are the ones given at start (pull: models.c) */
enum MHD_Result generate_ollama_manage(struct route_ctx *x)
{
    return respond_ollama_error(x->c, NS_ERR_UNSUPPORTED,
                             "model management is not supported: nightshift serves the models given to "
                             "'nightshift serve --model' (see GET /api/tags)");
}

enum MHD_Result generate_ollama_version(struct route_ctx *x) { return respond_json(x->c, 200, ollama_version()); }

/* GET /: tools probe it to find an Ollama server, and compare the text */
enum MHD_Result generate_ollama_root(struct route_ctx *x)
{
    char *t = strdup("Ollama is running");
    if (!t)
        return MHD_NO;
    return respond_text(x->c, 200, "text/plain; charset=utf-8", t);
}

