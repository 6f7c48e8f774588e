/*
 * metrics.c — /metrics (Prometheus), /v1/nightshift/stats, the sampler thread that keeps
 * the dashboard's last hour, and the dashboard's files (server_int.h).
 */
#include "server_int.h"

#include <math.h>

/* ---- metrics ------------------------------------------------------------------------ */

static void metric_hist(struct buf *b, const char *name, const char *model, const struct sched_hist *h)
{
    uint64_t cum = 0;
    for (int i = 0; i < SCHED_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        if (i == SCHED_HIST_BUCKETS - 1)
            buf_appendf(b, "%s_bucket{model=\"%s\",le=\"+Inf\"} %llu\n", name, model, (unsigned long long)cum);
        else
            buf_appendf(b, "%s_bucket{model=\"%s\",le=\"%g\"} %llu\n", name, model, sched_hist_bounds[i],
                        (unsigned long long)cum);
    }
    buf_appendf(b, "%s_sum{model=\"%s\"} %.6f\n%s_count{model=\"%s\"} %llu\n", name, model, h->sum, name, model,
                (unsigned long long)h->n);
}

/* GET /metrics: Prometheus text format (0.0.4) */
static bool sched_cost(struct sched *s, double *cost, double *savings);

struct metric_family {
    const char *name, *type, *help;
};

static void metric_header(struct buf *b, const struct metric_family *f)
{
    buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
}

/* the upstream backends' counters: tries, retries, failures, 429s, circuit, concurrency */
static void metric_backends(struct buf *b, struct server *srv)
{
    static const struct metric_family fam[] = {
        {"nightshift_backend_attempts_total", "counter", "Requests sent to an upstream, retries included."},
        {"nightshift_backend_retries_total", "counter", "Requests sent again after a retryable failure."},
        {"nightshift_backend_failures_total", "counter", "Requests that ended in an error at an upstream."},
        {"nightshift_backend_rate_limited_total", "counter", "429 answers from an upstream."},
        {"nightshift_backend_circuit_state", "gauge", "Circuit breaker: 0 closed, 1 open, 2 half-open."},
        {"nightshift_backend_inflight", "gauge", "Requests in flight to an upstream."},
        {"nightshift_backend_concurrency_limit", "gauge", "The adaptive concurrency limit now."},
    };
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        metric_header(b, &fam[f]);
        for (int i = 0; i < srv->n_scheds; i++) {
            struct backend *be = sched_backend(srv->scheds[i]);
            if (!be->ops->get_stats)
                continue;
            struct backend_stats bs;
            be->ops->get_stats(be->impl, &bs);
            const uint64_t v[] = {bs.attempts, bs.retries, bs.failed, bs.rate_limited, (uint64_t)bs.circuit,
                                  (uint64_t)bs.inflight, (uint64_t)bs.limit};
            buf_appendf(b, "%s{model=\"%s\",backend=\"%s\"} %llu\n", fam[f].name, sched_model_name(srv->scheds[i]),
                        be->ops->kind, (unsigned long long)v[f]);
        }
    }
}

static void metric_quota_key(void *ud, const char *key, const uint64_t refused[QUOTA_LIMITS_])
{
    for (int l = 0; l < QUOTA_LIMITS_; l++)
        buf_appendf(ud, "nightshift_quota_refused_total{key=\"%s\",limit=\"%s\"} %llu\n", key, quota_limit_names[l],
                    (unsigned long long)refused[l]);
}

enum MHD_Result metrics_prometheus(struct route_ctx *x)
{
    if (!x->admin)
        return respond_oai_error(x->c, NS_ERR_AUTH, NULL, "admin_key_required", "GET /metrics needs an admin key.");
    struct buf b;
    buf_init(&b, 4u << 20);
    struct server *srv = x->srv;
    static const struct metric_family fam[] = {
        {"nightshift_queue_depth", "gauge", "Requests waiting to enter the engine, by lane."},
        {"nightshift_active_batches", "gauge", "Batches handing out lines to the engine."},
        {"nightshift_requests_total", "counter", "Requests finished, by lane and outcome."},
        {"nightshift_engine_steps_total", "counter", "llama_decode calls."},
        {"nightshift_engine_sequences_per_step", "gauge", "Average sequences per engine step since start."},
        {"nightshift_prompt_tokens_submitted_total", "counter", "Prompt tokens of admitted requests."},
        {"nightshift_prompt_tokens_computed_total", "counter", "Prompt tokens actually computed."},
        {"nightshift_prompt_tokens_cached_total", "counter", "Prompt tokens served by the prefix cache."},
        {"nightshift_generated_tokens_total", "counter", "Tokens generated."},
        {"nightshift_preemptions_total", "counter", "Sequences parked for lack of KV memory."},
        {"nightshift_engine_sequence_runs_total", "counter",
         "Runs of consecutive sequence ids summed over steps: with a KV stream per sequence, a pass over the weights each."},
        {"nightshift_engine_sequence_moves_total", "counter", "Sequences moved to a lower slot to close a gap in the ids."},
        {"nightshift_engine_decode_seconds_total", "counter", "Wall time inside llama.cpp's decode (the model's compute)."},
        {"nightshift_engine_interactive_steps_total", "counter",
         "Steps planned under the interactive latency budget (--interactive-step-ms), by whether the decode kept it."},
        {"nightshift_routed_total", "counter",
         "Batch lines and real-time requests a model sent to its fallback (spill_to), or took back, by reason."},
    };
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        metric_header(&b, &fam[f]);
        for (int i = 0; i < srv->n_scheds; i++) {
            const char *m = sched_model_name(srv->scheds[i]);
            struct sched_stats ss;
            struct engine_stats es;
            sched_get_stats(srv->scheds[i], &ss);
            struct backend *be = sched_backend(srv->scheds[i]);
            backend_engine_stats(be, &es); /* zero for an upstream */
            switch (f) {
            case 0: buf_appendf(&b, "%s{model=\"%s\",lane=\"interactive\"} %llu\n", fam[f].name, m,
                                (unsigned long long)ss.interactive_waiting); break;
            case 1: buf_appendf(&b, "%s{model=\"%s\"} %d\n", fam[f].name, m, ss.active_batches); break;
            case 2:
                buf_appendf(&b, "%s{model=\"%s\",lane=\"interactive\",outcome=\"ok\"} %llu\n", fam[f].name, m,
                            (unsigned long long)(ss.interactive_done - ss.interactive_failed));
                buf_appendf(&b, "%s{model=\"%s\",lane=\"interactive\",outcome=\"failed\"} %llu\n", fam[f].name, m,
                            (unsigned long long)ss.interactive_failed);
                buf_appendf(&b, "%s{model=\"%s\",lane=\"batch\",outcome=\"ok\"} %llu\n", fam[f].name, m,
                            (unsigned long long)(ss.batch_lines_done - ss.batch_lines_failed));
                buf_appendf(&b, "%s{model=\"%s\",lane=\"batch\",outcome=\"failed\"} %llu\n", fam[f].name, m,
                            (unsigned long long)ss.batch_lines_failed);
                break;
            case 3: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.steps); break;
            case 4: buf_appendf(&b, "%s{model=\"%s\"} %.3f\n", fam[f].name, m,
                                es.steps ? (double)es.seqs_in_steps / (double)es.steps : 0.0); break;
            case 5: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.prompt_submitted); break;
            case 6: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.prompt_tokens); break;
            case 7: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.prompt_cached); break;
            case 8: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.gen_tokens); break;
            case 9: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.preemptions); break;
            case 10: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.seq_runs); break;
            case 11: buf_appendf(&b, "%s{model=\"%s\"} %llu\n", fam[f].name, m, (unsigned long long)es.moves); break;
            case 12: buf_appendf(&b, "%s{model=\"%s\"} %.6f\n", fam[f].name, m, es.decode_seconds); break;
            case 13:
                buf_appendf(&b, "%s{model=\"%s\",budget=\"kept\"} %llu\n", fam[f].name, m,
                            (unsigned long long)es.steps_budget_kept);
                buf_appendf(&b, "%s{model=\"%s\",budget=\"exceeded\"} %llu\n", fam[f].name, m,
                            (unsigned long long)(es.steps_interactive - es.steps_budget_kept));
                break;
            case 14:
                if (!sched_fallback(srv->scheds[i]))
                    break;
                buf_appendf(&b, "%s{model=\"%s\",reason=\"spill\"} %llu\n", fam[f].name, m,
                            (unsigned long long)ss.lines_spilled);
                buf_appendf(&b, "%s{model=\"%s\",reason=\"failover\"} %llu\n", fam[f].name, m,
                            (unsigned long long)ss.lines_failed_over);
                buf_appendf(&b, "%s{model=\"%s\",reason=\"back\"} %llu\n", fam[f].name, m,
                            (unsigned long long)ss.lines_taken_back);
                buf_appendf(&b, "%s{model=\"%s\",reason=\"realtime\"} %llu\n", fam[f].name, m,
                            (unsigned long long)ss.interactive_fallback);
                break;
            }
        }
    }
    /* where each local model's memory is (issue 30): weights, KV and compute buffers by
     * llama.cpp buffer type ("Vulkan0", "CUDA0", "CPU"), and the layers on a GPU */
    static const struct metric_family dev_fam[] = {
        {"nightshift_device_memory_used_bytes", "gauge", "Memory a model's weights, KV cache and compute buffers take, by buffer type."},
        {"nightshift_gpu_layers", "gauge", "Layers of a model on a GPU device (of nightshift_model_layers)."},
        {"nightshift_model_layers", "gauge", "Offloadable layers of a model (repeating layers + output)."},
    };
    for (size_t f = 0; f < sizeof(dev_fam) / sizeof(dev_fam[0]); f++) {
        metric_header(&b, &dev_fam[f]);
        for (int i = 0; i < srv->n_scheds; i++) {
            struct engine_info ei;
            if (!backend_model_info(sched_backend(srv->scheds[i]), &ei))
                continue;
            const char *m = sched_model_name(srv->scheds[i]);
            if (f == 0)
                for (int k = 0; k < ei.n_dev_mem; k++)
                    buf_appendf(&b, "%s{model=\"%s\",buffer=\"%s\",host=\"%s\"} %llu\n", dev_fam[f].name, m,
                                ei.dev_mem[k].name, ei.dev_mem[k].host ? "true" : "false",
                                (unsigned long long)ei.dev_mem[k].bytes);
            else
                buf_appendf(&b, "%s{model=\"%s\"} %d\n", dev_fam[f].name, m, f == 1 ? ei.n_layers_gpu : ei.n_layers);
        }
    }
    static const struct {
        const char *name, *help;
        int which;
    } hists[] = {
        {"nightshift_time_to_first_token_seconds", "Real-time requests: submission to first token.", 0},
        {"nightshift_inter_token_seconds", "Real-time streams: the time between one streamed piece and the next.", 4},
        {"nightshift_request_duration_seconds", "Real-time requests: submission to the last token.", 1},
        {"nightshift_batch_line_duration_seconds", "Batch lines: admission to the last token.", 2},
        {"nightshift_store_write_seconds", "Group commits of batch line results to the store.", 3},
    };
    for (size_t h = 0; h < sizeof(hists) / sizeof(hists[0]); h++) {
        buf_appendf(&b, "# HELP %s %s\n# TYPE %s histogram\n", hists[h].name, hists[h].help, hists[h].name);
        for (int i = 0; i < srv->n_scheds; i++) {
            struct sched_stats ss;
            sched_get_stats(srv->scheds[i], &ss);
            const struct sched_hist *sh = hists[h].which == 0   ? &ss.ttft
                                          : hists[h].which == 1 ? &ss.latency
                                          : hists[h].which == 2 ? &ss.line_latency
                                          : hists[h].which == 4 ? &ss.itl
                                                                : &ss.store_write;
            metric_hist(&b, hists[h].name, sched_model_name(srv->scheds[i]), sh);
        }
    }
    metric_backends(&b, srv);
    buf_appendf(&b, "# HELP nightshift_quota_refused_total Calls and batches refused (429) by a key's limit.\n"
                    "# TYPE nightshift_quota_refused_total counter\n");
    quota_foreach(srv->quota, metric_quota_key, &b);
    buf_appendf(&b, "# HELP nightshift_cost_usd_total Work done at the model's configured prices (batch lines at "
                    "batch prices).\n# TYPE nightshift_cost_usd_total counter\n"
                    "# HELP nightshift_savings_usd_total What batch pricing saved against real-time prices.\n"
                    "# TYPE nightshift_savings_usd_total counter\n");
    for (int i = 0; i < srv->n_scheds; i++) {
        double cost, savings;
        if (sched_cost(srv->scheds[i], &cost, &savings))
            buf_appendf(&b, "nightshift_cost_usd_total{model=\"%s\"} %.6f\nnightshift_savings_usd_total{model=\"%s\"} %.6f\n",
                        sched_model_name(srv->scheds[i]), cost, sched_model_name(srv->scheds[i]), savings);
    }
    buf_appendf(&b, "# HELP nightshift_batches Batches by status.\n# TYPE nightshift_batches gauge\n");
    for (int st = 0; st < SB_STATUS_COUNT_; st++) {
        char(*ids)[48] = NULL;
        int n = 0;
        if (store_batch_ids_by_status(srv->st, (enum store_batch_status)st, &ids, &n) == NS_OK)
            buf_appendf(&b, "nightshift_batches{status=\"%s\"} %d\n", store_batch_status_name((enum store_batch_status)st), n);
        free(ids);
    }
    char *text = buf_detach(&b);
    if (!text)
        return respond_oai_error(x->c, NS_ERR_NOMEM, NULL, NULL, "out of memory");
    return respond_text(x->c, 200, "text/plain; version=0.0.4", text);
}

/* ---- dashboard -------------------------------------------------------------------------- */


/* lines of in-progress batches not yet finished (the batch lane's queue) */
static int64_t batch_lines_pending(struct server *srv)
{
    char(*ids)[48] = NULL;
    int n = 0;
    int64_t left = 0;
    if (store_batch_ids_by_status(srv->st, SB_IN_PROGRESS, &ids, &n) == NS_OK)
        for (int i = 0; i < n; i++) {
            struct store_batch b;
            if (store_batch_get(srv->st, ids[i], &b) == NS_OK) {
                left += b.total - b.completed - b.failed;
                store_batch_release(&b);
            }
        }
    free(ids);
    return left;
}

static void take_sample(struct server *srv)
{
    uint64_t tokens = 0, lines = 0, waiting = 0;
    for (int i = 0; i < srv->n_scheds; i++) {
        struct sched_stats ss;
        sched_get_stats(srv->scheds[i], &ss);
        tokens += ss.completion_tokens;
        lines += ss.batch_lines_done;
        waiting += ss.interactive_waiting;
    }
    struct sample sm = {.t = clock_wall(), .interactive_waiting = (double)waiting,
                        .batch_pending = (double)batch_lines_pending(srv)};
    pthread_mutex_lock(&srv->smu);
    double dt = sm.t - srv->last_t;
    if (srv->last_t > 0 && dt > 0) {
        sm.tokens_per_s = (double)(tokens - srv->last_tokens) / dt;
        sm.lines_per_s = (double)(lines - srv->last_lines) / dt;
    }
    srv->last_t = sm.t;
    srv->last_tokens = tokens;
    srv->last_lines = lines;
    srv->ring[srv->head] = sm;
    srv->head = (srv->head + 1) % SAMPLES;
    if (srv->n_samples < SAMPLES)
        srv->n_samples++;
    pthread_mutex_unlock(&srv->smu);
}

void *metrics_sampler_thread(void *arg)
{
    struct server *srv = arg;
    pthread_mutex_lock(&srv->smu);
    while (!srv->sampler_stop) {
        pthread_mutex_unlock(&srv->smu);
        take_sample(srv);
        pthread_mutex_lock(&srv->smu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += SAMPLE_EVERY;
        while (!srv->sampler_stop && pthread_cond_timedwait(&srv->scv, &srv->smu, &ts) == 0)
            ;
    }
    pthread_mutex_unlock(&srv->smu);
    return NULL;
}

/* what a model's work cost since start (batch lines at batch prices, real-time requests at
 * real-time prices) and what batch pricing saved; false when the model has no price */
static bool sched_cost(struct sched *s, double *cost, double *savings)
{
    struct sched_stats ss;
    sched_get_stats(s, &ss);
    struct backend *be = sched_backend(s);
    int64_t bp = (int64_t)ss.batch_prompt_tokens, bc = (int64_t)ss.batch_completion_tokens;
    double batch = backend_cost(be, bp, bc, true);
    if (batch < 0)
        return false;
    double rt_batch = backend_cost(be, bp, bc, false);
    *cost = batch + backend_cost(be, (int64_t)ss.prompt_tokens - bp, (int64_t)ss.completion_tokens - bc, false);
    *savings = rt_batch - batch;
    return true;
}

static const char *const circuit_names[] = {"closed", "open", "half-open"};

/* the upper bound of the bucket that holds a histogram's 99th percentile (0: empty; the
 * last finite bound when it is in +Inf's) */
static double stats_hist_p99(const struct sched_hist *h)
{
    if (!h->n)
        return 0;
    uint64_t want = h->n - h->n / 100, seen = 0;
    for (int i = 0; i < SCHED_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= want)
            return isfinite(sched_hist_bounds[i]) ? sched_hist_bounds[i] : sched_hist_bounds[SCHED_HIST_BUCKETS - 2];
    }
    return sched_hist_bounds[SCHED_HIST_BUCKETS - 2];
}

static cJSON *stats_model(struct sched *s)
{
    struct sched_stats ss;
    sched_get_stats(s, &ss);
    struct backend *be = sched_backend(s);
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "name", sched_model_name(s));
    cJSON_AddStringToObject(m, "backend", be->ops->kind);
    cJSON_AddNumberToObject(m, "interactive_waiting", (double)ss.interactive_waiting);
    cJSON_AddNumberToObject(m, "interactive_done", (double)ss.interactive_done);
    cJSON_AddNumberToObject(m, "interactive_failed", (double)ss.interactive_failed);
    cJSON_AddNumberToObject(m, "active_batches", ss.active_batches);
    cJSON_AddNumberToObject(m, "batch_lines_done", (double)ss.batch_lines_done);
    cJSON_AddNumberToObject(m, "batch_lines_failed", (double)ss.batch_lines_failed);
    cJSON_AddNumberToObject(m, "prompt_tokens", (double)ss.prompt_tokens);
    cJSON_AddNumberToObject(m, "completion_tokens", (double)ss.completion_tokens);
    cJSON_AddNumberToObject(m, "batch_completion_tokens", (double)ss.batch_completion_tokens);
    /* interactive latency (the histograms' 99th percentile bucket bounds, seconds) */
    cJSON_AddNumberToObject(m, "ttft_p99", stats_hist_p99(&ss.ttft));
    cJSON_AddNumberToObject(m, "itl_p99", stats_hist_p99(&ss.itl));
    double cost, savings;
    if (sched_cost(s, &cost, &savings)) {
        cJSON_AddNumberToObject(m, "cost_usd", cost);
        cJSON_AddNumberToObject(m, "savings_usd", savings);
    }
    struct engine_stats es;
    if (backend_engine_stats(be, &es)) {
        cJSON *e = cJSON_AddObjectToObject(m, "engine");
        cJSON_AddNumberToObject(e, "steps", (double)es.steps);
        cJSON_AddNumberToObject(e, "sequences_per_step", es.steps ? (double)es.seqs_in_steps / (double)es.steps : 0.0);
        cJSON_AddNumberToObject(e, "generated_tokens", (double)es.gen_tokens);
        cJSON_AddNumberToObject(e, "prompt_tokens_computed", (double)es.prompt_tokens);
        cJSON_AddNumberToObject(e, "prompt_tokens_cached", (double)es.prompt_cached);
        cJSON_AddNumberToObject(e, "steps_interactive", (double)es.steps_interactive);
        cJSON_AddNumberToObject(e, "steps_budget_kept", (double)es.steps_budget_kept);
        cJSON_AddNumberToObject(e, "step_ms_base", es.step_ms_base);
        cJSON_AddNumberToObject(e, "step_ms_per_token", es.step_ms_per_token);
        cJSON_AddNumberToObject(e, "step_ms_per_sequence", es.step_ms_per_sequence);
        cJSON_AddNumberToObject(e, "step_ms_per_pass", es.step_ms_per_pass);
    }
    if (be->ops->get_stats) {
        struct backend_stats bs;
        be->ops->get_stats(be->impl, &bs);
        cJSON *u = cJSON_AddObjectToObject(m, "upstream");
        cJSON_AddStringToObject(u, "circuit", circuit_names[bs.circuit >= 0 && bs.circuit < 3 ? bs.circuit : 0]);
        cJSON_AddNumberToObject(u, "inflight", bs.inflight);
        cJSON_AddNumberToObject(u, "concurrency_limit", bs.limit);
        cJSON_AddNumberToObject(u, "attempts", (double)bs.attempts);
        cJSON_AddNumberToObject(u, "retries", (double)bs.retries);
        cJSON_AddNumberToObject(u, "failures", (double)bs.failed);
        cJSON_AddNumberToObject(u, "rate_limited", (double)bs.rate_limited);
    }
    return m;
}

/* GET /v1/nightshift/stats: what the dashboard draws (models now, the last hour's series) */
enum MHD_Result metrics_stats(struct route_ctx *x)
{
    struct server *srv = x->srv;
    if (!x->admin) /* every project's numbers: the dashboard is for operators */
        return respond_oai_error(x->c, NS_ERR_AUTH, NULL, "admin_key_required", "GET /v1/nightshift/stats needs an admin key.");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "time", clock_wall());
    cJSON *ms = cJSON_AddArrayToObject(o, "models");
    for (int i = 0; i < srv->n_scheds; i++)
        cJSON_AddItemToArray(ms, stats_model(srv->scheds[i]));
    cJSON *se = cJSON_AddObjectToObject(o, "series");
    cJSON_AddNumberToObject(se, "interval_seconds", SAMPLE_EVERY);
    cJSON *arr[5];
    static const char *const names[5] = {"t", "tokens_per_s", "lines_per_s", "batch_pending", "interactive_waiting"};
    for (int k = 0; k < 5; k++)
        arr[k] = cJSON_AddArrayToObject(se, names[k]);
    pthread_mutex_lock(&srv->smu);
    for (int i = 0; i < srv->n_samples; i++) {
        const struct sample *sm = &srv->ring[(srv->head - srv->n_samples + i + SAMPLES) % SAMPLES];
        const double v[5] = {sm->t, sm->tokens_per_s, sm->lines_per_s, sm->batch_pending, sm->interactive_waiting};
        for (int k = 0; k < 5; k++)
            cJSON_AddItemToArray(arr[k], cJSON_CreateNumber(v[k]));
    }
    pthread_mutex_unlock(&srv->smu);
    return respond_json(x->c, 200, o);
}

static enum MHD_Result send_asset(struct MHD_Connection *c, const struct dashboard_asset *a)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, a->type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = httpguard_queue(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static bool wants_html(struct MHD_Connection *c)
{
    const char *acc = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    return acc && strstr(acc, "text/html");
}

/* GET /: a browser gets the dashboard; Ollama tools probing the root get their text */
enum MHD_Result metrics_root(struct route_ctx *x)
{
    const struct dashboard_asset *a = dashboard_find("/");
    if (a && wants_html(x->c))
        return send_asset(x->c, a);
    return generate_ollama_root(x);
}

enum MHD_Result metrics_dashboard_file(struct route_ctx *x)
{
    char path[160];
    snprintf(path, sizeof(path), "/dashboard/%.100s", x->ids[0]);
    const struct dashboard_asset *a = dashboard_find(path);
    if (!a)
        return respond_oai_error(x->c, NS_ERR_NOT_FOUND, NULL, "unknown_url", "Invalid URL (GET %.120s)", path);
    return send_asset(x->c, a);
}

/* GET /v1/nightshift/webhooks[?batch_id=ID&limit=N]: deliveries, newest first */
enum MHD_Result metrics_webhooks(struct route_ctx *x)
{
    int limit;
    if (!x->admin)
        return respond_oai_error(x->c, NS_ERR_AUTH, NULL, "admin_key_required", "GET /v1/nightshift/webhooks needs an admin key.");
    if (server_query_limit(x, 1, 1000, 100, &limit))
        return respond_oai_error(x->c, NS_ERR_INVALID, "limit", NULL, "Invalid 'limit': expected an integer from 1 to 1000.");
    struct store_webhook *ws = NULL;
    int n = 0;
    if ((x->store_rc = store_webhooks_list(x->srv->st, server_query(x, "batch_id"), limit, &ws, &n)))
        return respond_oai_error(x->c, respond_store_status(x->store_rc), NULL, NULL, "cannot read the webhook deliveries");
    static const char *const states[] = {"pending", "delivered", "failed"};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "id", ws[i].id);
        cJSON_AddStringToObject(e, "object", "webhook.delivery");
        cJSON_AddStringToObject(e, "type", ws[i].type);
        cJSON_AddStringToObject(e, "batch_id", ws[i].batch_id);
        cJSON_AddStringToObject(e, "endpoint", ws[i].endpoint);
        cJSON_AddStringToObject(e, "url", ws[i].url ? ws[i].url : "");
        cJSON_AddStringToObject(e, "state", states[ws[i].state >= 0 && ws[i].state < 3 ? ws[i].state : 0]);
        cJSON_AddNumberToObject(e, "attempts", ws[i].attempts);
        cJSON_AddNumberToObject(e, "created_at", (double)ws[i].created_at);
        respond_add_ts(e, "next_attempt_at", ws[i].state == SW_PENDING ? ws[i].next_at : 0);
        respond_add_ts(e, "delivered_at", ws[i].delivered_at);
        if (ws[i].last_status)
            cJSON_AddNumberToObject(e, "last_status", ws[i].last_status);
        else
            cJSON_AddNullToObject(e, "last_status");
        respond_add_str_or_null(e, "last_error", ws[i].last_error[0] ? ws[i].last_error : NULL);
        cJSON_AddItemToArray(d, e);
        store_webhook_release(&ws[i]);
    }
    free(ws);
    return respond_json(x->c, 200, o);
}

/* the dashboard's files hold no data, and a browser cannot send a key when it navigates */
bool metrics_public_route(const char *method, const char *url)
{
    /* liveness and readiness probes (a kubelet, a load balancer) carry no key, and say
     * nothing a caller could use: up or not, ready or not */
    return (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
           (strcmp(url, "/") == 0 || strncmp(url, "/dashboard/", 11) == 0 || strcmp(url, "/health") == 0 ||
            strcmp(url, "/ready") == 0);
}

