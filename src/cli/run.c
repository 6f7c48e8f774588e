/*
 * run.c — `nightshift run`: an OpenAI Batch input file through the local engine.
 *
 * DESIGN
 * 1. Validate the whole input (batchfile) before anything runs; structural errors fail
 *    the job like an OpenAI batch that fails validation, unless --skip-invalid.
 * 2. Open the checkpoint (runstate) and skip every line it already holds: a re-run of
 *    the same command after a crash or kill -9 resumes where it stopped.
 * 3. The engine pulls lines in file order; each line's body is parsed when it is pulled
 *    (only the lines in flight are in memory). Request-level errors (a value the
 *    endpoint rejects, a prompt over the context) become HTTP-style error lines; a
 *    failing line never stops the others.
 * 4. Each finished line goes to the checkpoint at once (grouped commits); at the end the
 *    output and error files are written from the checkpoint, in input order, via a
 *    temporary file and rename, so they are complete or absent, never half-written.
 *
 * THREADS: one. The engine calls pull()/done() on this thread between decode steps.
 */
#include "cli.h"
#include "../util/clock.h"
#include "config.h"
#include "datadir.h"
#include "gpuopts.h"
#include "pull.h"
#include "progress.h"

#include "../proto/batchfile.h"
#include "../proto/batchline.h"
#include "../proto/gemini.h"
#include "../proto/oai.h"
#include "../backend/backend.h"
#include "../engine/engine.h"
#include "../store/runstate.h"
#include "../util/buf.h"
#include "../util/durable.h"
#include "../util/num.h"
#include "../util/path.h"
#include "../util/status.h"
#include "../util/utf8.h"
#include "../util/strset.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RUN_MAX_ALIASES 16
/* invalid lines printed on stderr when validation stops a run (all go to the error file) */
#define RUN_ERRORS_LISTED 1000

struct run_opts {
    const char *input, *output, *errors, *state, *summary, *model, *chat_template;
    const char *chat_template_file; /* --chat-template-file: read into chat_template */
    const char *aliases[RUN_MAX_ALIASES];
    int n_aliases;
    bool any_model;
    int parallel, ctx, threads, batch;
    uint64_t seed;
    bool skip_invalid, verbose, quiet, kv_unified, no_prefix_cache, gemini, embedding;
    bool pull;                 /* --pull: a --model store reference missing is pulled first */
    bool validate_only;        /* --validate-only: validate the input, report, run nothing */
    int pooling;
    double progress_interval;
    struct batchfile_params bfp;
    /* cost accounting: real-time USD per million tokens, and the batch discount */
    double price_input, price_output, batch_discount;
    const char *config;        /* --config: --model then names one of its [model] sections */
    struct engine_params gpu;  /* where the model runs, KV cache types (gpuopts.h) */
    struct lora_spec lora[LORA_MAX]; /* --lora (paths malloc'd) */
    int n_lora;
};

/* cost at batch and at real-time prices; false when no price was given */
static bool run_cost(const struct run_opts *o, const struct runstate_totals *tot, double *batch, double *realtime)
{
    if (!tot)
        return false;
    int64_t p = (int64_t)tot->prompt_tokens, c = (int64_t)tot->completion_tokens;
    *realtime = backend_price(o->price_input, o->price_output, o->batch_discount, p, c, false);
    *batch = backend_price(o->price_input, o->price_output, o->batch_discount, p, c, true);
    return *realtime >= 0;
}

struct run_item {
    struct oai_request oreq;
    const struct batchfile_line *line;
};

struct run_ctx {
    const struct run_opts *o;
    struct batchfile *bf;
    struct runstate *rs;
    struct backend *be;       /* the local engine, or an upstream (--config) */
    struct strset done;       /* custom_ids finished in an earlier run */
    char **done_ids;          /* storage of the strings in done */
    size_t n_done_ids;
    size_t next;              /* next position in order[] to pull */
    size_t *order;            /* bf->lines indices in running order */
    const char *model_name;   /* what "model" says in responses */
    struct progress prog;
    uint64_t ok, failed;      /* this run */
    uint64_t prompt_tokens, completion_tokens, cached_tokens;
    int io_error;
    char io_msg[256];
    struct buf gemini_buf;    /* --input-format gemini: the converted lines (bf points into it) */
};

static volatile sig_atomic_t run_interrupted;
/* local and openai-http stops are a flag and a wakeup write: safe in a signal handler */
static struct backend *run_backend_for_signal;

static void run_on_signal(int sig)
{
    (void)sig;
    run_interrupted = 1;
    if (run_backend_for_signal)
        run_backend_for_signal->ops->stop(run_backend_for_signal->impl);
}

static void run_usage(FILE *f)
{
    fputs("usage: nightshift run INPUT.jsonl -o OUTPUT.jsonl --model MODEL.gguf [options]\n"
          "\n"
          "Runs every line of an OpenAI Batch input file on a local GGUF model and writes the\n"
          "OpenAI Batch output and error files. Re-running the same command resumes.\n"
          "\n"
          "  -o, --output FILE        results of the lines that succeeded (required)\n"
          "  -e, --errors FILE        lines that failed (default: OUTPUT with .errors.jsonl)\n"
          "  -m, --model FILE         GGUF model (or NIGHTSHIFT_MODEL); with --config, the name of\n"
          "                           one of its [model NAME] sections (local or openai-http); or a\n"
          "                           model store reference (ORG/REPO:QUANT, hf.co/...: `nightshift\n"
          "                           pull`), whose store name body.model may then use\n"
          "      --pull               pull a --model reference missing from the model store first\n"
          "      --config FILE        a `nightshift serve` config file: run on its model's backend\n"
          "                           (an OpenAI-compatible server, with its retries and limits)\n"
          "      --model-alias NAME   a body.model value to accept for this model (repeatable;\n"
          "                           '*' accepts any); the file name and general.name always are\n"
          "  -p, --parallel N         sequences decoded together (default 64)\n"
          "  -c, --ctx N              KV cache tokens for all sequences, split evenly between them\n"
          "                           (default: 2048 per sequence)\n"
          "      --kv-unified         one KV pool shared by all sequences instead (slower attention\n"
          "                           with many sequences; lets one sequence use the whole --ctx)\n"
          "  -t, --threads N          CPU threads (default: all)\n"
          "  -b, --batch-size N       most tokens per engine step (default 2048)\n"
          "      --chat-template NAME a llama.cpp built-in template instead of the model's\n"
          "      --lora FILE[:SCALE]  a LoRA adapter on the model, scale 1 by default (repeatable:\n"
          "                           adapters stacked)\n"
          "      --chat-template-file FILE  this Jinja chat template instead of the model's\n"
          "      --input-format F     openai (default) or gemini: {\"key\", \"request\"} lines in,\n"
          "                           {\"key\", \"response\"|\"status\"} lines out\n"
          "      --embedding          load the model for embeddings only (/v1/embeddings lines;\n"
          "                           chat and completion lines fail)\n"
          "      --pooling P          embedding pooling: mean, cls or last (default: the model's,\n"
          "                           else mean)\n"
          "      --no-prefix-cache    compute every prompt in full (for comparison): by default a\n"
          "                           prompt prefix already computed for another line is reused,\n"
          "                           and lines run grouped by shared prefix\n"
          "      --state FILE         checkpoint database (default: OUTPUT.state.db)\n"
          "      --skip-invalid       run the valid lines even if some fail validation\n"
          "      --validate-only      validate the input (read, parse, check every line) and\n"
          "                           report its size, lines and MB/s; run nothing, write no\n"
          "                           output (-o is then optional)\n"
          "      --max-lines N        most requests in the input (default 50000)\n"
          "      --max-bytes SIZE     largest input file (default 200MB)\n"
          "      --seed N             seed for lines without body.seed (default 0)\n"
          "      --summary FILE       write a JSON summary (batch-object-like) to FILE\n"
          "      --price-input USD    real-time price per million prompt tokens (cost accounting)\n"
          "      --price-output USD   real-time price per million completion tokens\n"
          "      --batch-discount F   share of that price batch work does not pay (0.5 = 50% off)\n"
          "      --progress-interval S  seconds between progress lines when not a terminal (10)\n"
          , f);
    fputs(gpuopts_usage, f);
    fputs("  -q, --quiet              no progress output\n"
          "  -v, --verbose            llama.cpp's own log on stderr\n"
          "\n"
          "Exit status: 0 done (some lines may have failed: see the error file), 1 the input\n"
          "failed validation or the run failed, 2 bad usage, model or input file, 130 interrupted.\n",
          f);
}

static bool run_model_ok(void *ud, const char *model)
{
    const char *const *names = ud;
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], "*") == 0 || strcmp(names[i], model) == 0)
            return true;
    return false;
}

static void run_add_done(void *ud, const char *custom_id)
{
    struct run_ctx *c = ud;
    char **ids = realloc(c->done_ids, sizeof(*ids) * (c->n_done_ids + 1));
    char *s = strdup(custom_id);
    if (!ids || !s) {
        free(s);
        if (ids)
            c->done_ids = ids;
        c->io_error = NS_ERR_NOMEM;
        return;
    }
    c->done_ids = ids;
    ids[c->n_done_ids++] = s;
    if (strset_add(&c->done, s) < 0)
        c->io_error = NS_ERR_NOMEM;
}

/* Checkpoint keys are namespaced so that no custom_id can collide with the key of an
 * invalid line: "c:" + custom_id for requests, "l:" + line number for invalid lines. */
static void run_key(char *out, size_t n, const char *custom_id)
{
    snprintf(out, n, "c:%s", custom_id);
}

static void run_record(struct run_ctx *c, const char *key, uint32_t line, bool ok, cJSON *json, int pt, int ct,
                       int cached)
{
    char *text = utf8_fix(cJSON_PrintUnformatted(json));
    cJSON_Delete(json);
    if (!text) {
        c->io_error = NS_ERR_NOMEM;
        return;
    }
    int rc = runstate_put(c->rs, key, line, ok, text, pt, ct, cached);
    free(text);
    if (rc && !c->io_error) {
        c->io_error = rc;
        snprintf(c->io_msg, sizeof(c->io_msg), "cannot write the checkpoint database (disk full?)");
        c->be->ops->stop(c->be->impl);
    }
    if (ok)
        c->ok++;
    else
        c->failed++;
    c->prompt_tokens += (uint64_t)pt;
    c->completion_tokens += (uint64_t)ct;
    c->cached_tokens += (uint64_t)cached;
}

static void run_record_key(struct run_ctx *c, const char *custom_id, uint32_t line, bool ok, cJSON *json)
{
    char key[600];
    run_key(key, sizeof(key), custom_id);
    run_record(c, key, line, ok, json, 0, 0, 0);
}

static void run_record_error(struct run_ctx *c, const struct batchfile_line *l, int status, const char *message,
                             const char *param, int prompt_tokens)
{
    (void)prompt_tokens; /* a failed request has no usage, as at OpenAI */
    run_record_key(c, l->custom_id, l->line_no, false,
                   batchline_error(dialect_of_batch(batchfile_url_path(l->url), c->o->gemini), l->custom_id, status,
                                   param, message));
}

static int run_pull(void *ud, struct engine_request **out, int max)
{
    struct run_ctx *c = ud;
    int n = 0;
    while (n < max && c->next < c->bf->n_lines && !run_interrupted && !c->io_error) {
        const struct batchfile_line *l = &c->bf->lines[c->order[c->next++]];
        char key[600];
        run_key(key, sizeof(key), l->custom_id);
        if (strset_has(&c->done, key))
            continue;
        struct run_item *it = calloc(1, sizeof(*it));
        if (!it) {
            c->io_error = NS_ERR_NOMEM;
            break;
        }
        it->line = l;
        struct oai_error err;
        int rc = batchline_request(c->bf->data + l->off, l->len, l->url, l->custom_id, c->be->ops->forward, c->o->seed,
                                   &it->oreq, &err);
        if (rc != NS_OK) {
            run_record_error(c, l, err.status, err.message, err.param, 0);
            free(it);
            progress_update(&c->prog, c->ok + c->failed, c->completion_tokens);
            continue;
        }
        it->oreq.req.user = it;
        out[n++] = &it->oreq.req;
    }
    if (n == 0 && (c->next >= c->bf->n_lines || run_interrupted || c->io_error))
        return -1;
    return n;
}

static void run_done(void *ud, struct engine_request *req, const struct engine_result *res)
{
    struct run_ctx *c = ud;
    struct run_item *it = req->user;
    const struct batchfile_line *l = it->line;
    if (res->status == NS_ERR_CANCELLED && (run_interrupted || c->io_error)) {
        /* interrupted: not recorded, so the next run computes it */
    } else {
        bool ok = res->status == NS_OK;
        char key[600];
        run_key(key, sizeof(key), l->custom_id);
        run_record(c, key, l->line_no, ok,
                   batchline_result(dialect_of_batch(batchfile_url_path(l->url), c->o->gemini), l->custom_id, ok ? &it->oreq : NULL, res,
                                    it->oreq.model),
                   ok ? res->prompt_tokens : 0, ok ? res->completion_tokens : 0, ok ? res->cached_tokens : 0);
    }
    oai_request_release(&it->oreq);
    free(it);
    progress_update(&c->prog, c->ok + c->failed, c->completion_tokens);
}

/* Read a Gemini batch file and convert it (gemini.h); c->bf then reads the converted
 * lines, whose numbering is the original file's. */
static int run_load_gemini(struct run_ctx *c, struct run_opts *o, char *err, size_t errlen)
{
    FILE *f = fopen(o->input, "rb");
    struct buf in;
    struct gemini_errors ge;
    int rc = NS_OK;
    memset(&ge, 0, sizeof(ge));
    buf_init(&in, o->bfp.max_bytes);
    buf_init(&c->gemini_buf, o->bfp.max_bytes * 2 + 1024);
    if (!f) {
        snprintf(err, errlen, "cannot open input file '%s': %s", o->input, strerror(errno));
        return NS_ERR_IO;
    }
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (buf_append(&in, chunk, n)) {
            snprintf(err, errlen, "the input file '%s' is larger than the limit of %zu bytes (--max-bytes)", o->input,
                     o->bfp.max_bytes);
            rc = NS_ERR_TOO_LARGE;
            goto out;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read input file '%s': %s", o->input, strerror(errno));
        rc = NS_ERR_IO;
        goto out;
    }
    if (gemini_convert(in.p ? in.p : "", in.len, c->model_name, &c->gemini_buf, &ge)) {
        snprintf(err, errlen, "cannot convert the Gemini input file (out of memory)");
        rc = NS_ERR_NOMEM;
        goto out;
    }
    rc = batchfile_parse(c->gemini_buf.p ? c->gemini_buf.p : "", c->gemini_buf.len, &o->bfp, &c->bf, err, errlen);
    if (rc == NS_ERR_INVALID && ge.n && strstr(err, "empty")) {
        /* every line failed conversion: report those, not "empty" */
        snprintf(err, errlen, "%s", ge.v[0].message);
    }
    if (rc)
        goto out;
    for (size_t i = 0; i < ge.n && !rc; i++)
        rc = batchfile_add_external_error(c->bf, &o->bfp, ge.v[i].line, ge.v[i].code, ge.v[i].param, ge.v[i].key,
                                          ge.v[i].message);
    batchfile_errors_sort(c->bf);
    /* the validators speak OpenAI's names: say the Gemini fields the user wrote */
    for (size_t i = 0; !rc && i < c->bf->n_errors; i++) {
        char msg[1024], *m;
        gemini_rename_params(c->bf->errors[i].message, msg, sizeof(msg));
        if ((m = strdup(msg))) {
            free(c->bf->errors[i].message);
            c->bf->errors[i].message = m;
        }
    }
    if (rc)
        snprintf(err, errlen, "out of memory reading the input file");
out:
    fclose(f);
    buf_release(&in);
    gemini_errors_release(&ge);
    return rc;
}

/* Running order: file order, or with the prefix cache, grouped by shared prompt prefix
 * (batchfile_prefix_order) so an instruction stays hot in the cache while its lines run. */
static int run_make_order(struct run_ctx *c, bool group)
{
    c->order = batchfile_prefix_order(c->bf, group);
    return c->order ? NS_OK : NS_ERR_NOMEM;
}

/* write the rows of the checkpoint to the output and error files, each durably
 * (util/durable.h): both complete, or the earlier ones left as they were */
static int run_export(struct run_ctx *c, const char *out_path, const char *err_path, struct runstate_totals *tot,
                      char *msg, size_t msglen)
{
    struct durable dout, derr;
    durable_init(&dout);
    durable_init(&derr);
    int rc = NS_OK;
    FILE *fo = NULL, *fe = NULL;
    if (durable_open_mode(&dout, out_path, DURABLE_MODE_UMASK) || !(fo = durable_stream(&dout)) ||
        durable_open_mode(&derr, err_path, DURABLE_MODE_UMASK) ||
        !(fe = durable_stream(&derr))) {
        snprintf(msg, msglen, "cannot write '%.300s': %s", !fo ? out_path : err_path, strerror(errno));
        rc = NS_ERR_IO;
        goto out;
    }
    rc = runstate_export(c->rs, fo, fe, tot);
    if (rc) {
        snprintf(msg, msglen, "cannot write the output files (disk full?)");
        goto out;
    }
    if (durable_commit(&dout) || durable_commit(&derr)) {
        snprintf(msg, msglen, "cannot write the output files: %s", strerror(errno));
        rc = NS_ERR_IO;
    }
out:
    durable_rollback(&dout);
    durable_rollback(&derr);
    return rc;
}

static void run_print_validation(const struct batchfile *bf, FILE *f)
{
    fprintf(f, "nightshift: the input failed validation: %zu of %zu lines are invalid; nothing was run\n",
            bf->n_invalid, bf->n_requests);
    size_t shown = bf->n_errors < RUN_ERRORS_LISTED ? bf->n_errors : RUN_ERRORS_LISTED;
    for (size_t i = 0; i < shown; i++)
        fprintf(f, "  line %u [%s]: %s\n", bf->errors[i].line, bf->errors[i].code, bf->errors[i].message);
    if (bf->n_invalid > shown)
        fprintf(f, "  ... and %zu more\n", bf->n_invalid - shown);
    fputs("fix those lines, or pass --skip-invalid to run the valid ones and list these in the error file\n", f);
}

static int run_write_summary(const struct run_opts *ro, const char *status, const struct batchfile *bf,
                             const struct runstate_totals *tot, double wall, const struct engine_stats *st,
                             size_t resumed, const struct engine_info *info)
{
    const char *path = ro->summary;
    if (!path)
        return NS_OK;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "nightshift.run");
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddItemToObject(o, "errors", batchfile_errors_json(bf, ro->bfp.max_errors));
    cJSON *rc = cJSON_AddObjectToObject(o, "request_counts");
    cJSON_AddNumberToObject(rc, "total", (double)bf->n_requests);
    cJSON_AddNumberToObject(rc, "completed", tot ? (double)tot->ok : 0);
    cJSON_AddNumberToObject(rc, "failed", tot ? (double)tot->failed : (double)bf->n_invalid);
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "input_tokens", tot ? (double)tot->prompt_tokens : 0);
    cJSON *itd = cJSON_AddObjectToObject(u, "input_tokens_details");
    cJSON_AddNumberToObject(itd, "cached_tokens", tot ? (double)tot->cached_tokens : 0);
    cJSON_AddNumberToObject(u, "output_tokens", tot ? (double)tot->completion_tokens : 0);
    cJSON *otd = cJSON_AddObjectToObject(u, "output_tokens_details");
    cJSON_AddNumberToObject(otd, "reasoning_tokens", 0);
    cJSON_AddNumberToObject(u, "total_tokens", tot ? (double)(tot->prompt_tokens + tot->completion_tokens) : 0);
    cJSON_AddNumberToObject(o, "wall_seconds", wall);
    cJSON_AddNumberToObject(o, "resumed_lines", (double)resumed);
    double batch, rt;
    if (run_cost(ro, tot, &batch, &rt)) {
        cJSON *c = cJSON_AddObjectToObject(o, "cost");
        cJSON_AddNumberToObject(c, "usd", batch);
        cJSON_AddNumberToObject(c, "realtime_usd", rt);
        cJSON_AddNumberToObject(c, "savings_usd", rt - batch);
    }
    if (st) {
        cJSON *e = cJSON_AddObjectToObject(o, "engine");
        cJSON_AddNumberToObject(e, "steps", (double)st->steps);
        cJSON_AddNumberToObject(e, "avg_sequences_per_step", st->steps ? (double)st->seqs_in_steps / (double)st->steps : 0);
        cJSON_AddNumberToObject(e, "prompt_tokens_submitted", (double)st->prompt_submitted);
        cJSON_AddNumberToObject(e, "prompt_tokens_computed", (double)st->prompt_tokens);
        cJSON_AddNumberToObject(e, "prompt_tokens_cached", (double)st->prompt_cached);
        cJSON_AddNumberToObject(e, "generated_tokens", (double)st->gen_tokens);
        cJSON_AddNumberToObject(e, "preemptions", (double)st->preemptions);
        /* with a KV stream per sequence, each run of consecutive ids is a pass over the weights */
        cJSON_AddNumberToObject(e, "sequence_runs_per_step", st->steps ? (double)st->seq_runs / (double)st->steps : 0);
        cJSON_AddNumberToObject(e, "sequence_moves", (double)st->moves);
        /* llama.cpp's compute; wall_seconds minus this is nightshift's own time (and loading) */
        cJSON_AddNumberToObject(e, "decode_seconds", st->decode_seconds);
    }
    if (info) {
        /* where the model ran: device, layers offloaded, KV cache types and sizes */
        cJSON *d = cJSON_AddObjectToObject(o, "device");
        cJSON_AddStringToObject(d, "where", info->where);
        cJSON_AddNumberToObject(d, "layers", info->n_layers);
        cJSON_AddNumberToObject(d, "layers_offloaded", info->n_layers_gpu);
        cJSON_AddStringToObject(d, "cache_type_k", info->cache_type_k);
        cJSON_AddStringToObject(d, "cache_type_v", info->cache_type_v);
        cJSON_AddStringToObject(d, "flash_attn", info->flash_attn);
        cJSON_AddNumberToObject(d, "parallel", info->n_parallel);
        cJSON_AddNumberToObject(d, "ctx", info->n_ctx);
        cJSON_AddNumberToObject(d, "kv_bytes", (double)info->mem_kv);
        cJSON_AddNumberToObject(d, "model_bytes", (double)info->mem_model);
        cJSON_AddNumberToObject(d, "compute_bytes", (double)info->mem_compute);
        cJSON *m = cJSON_AddArrayToObject(d, "memory");
        for (int i = 0; m && i < info->n_dev_mem; i++) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "buffer", info->dev_mem[i].name);
            cJSON_AddBoolToObject(r, "host", info->dev_mem[i].host);
            cJSON_AddNumberToObject(r, "bytes", (double)info->dev_mem[i].bytes);
            cJSON_AddItemToArray(m, r);
        }
        if (info->fit_note[0])
            cJSON_AddStringToObject(d, "fit", info->fit_note);
    }
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    FILE *f = text ? fopen(path, "w") : NULL;
    int rc2 = NS_OK;
    if (!f || fputs(text, f) == EOF || fputc('\n', f) == EOF)
        rc2 = NS_ERR_IO;
    if (f && fclose(f))
        rc2 = NS_ERR_IO;
    free(text);
    if (rc2)
        fprintf(stderr, "nightshift: cannot write summary '%s': %s\n", path, strerror(errno));
    return rc2;
}

/* --validate-only: the validation's outcome and speed on stdout (and the summary, whose
 * status is "validated" or "failed"); 0 when every line is valid (or --skip-invalid), else 1.
 * wall counts from process start: reading, parsing and checking the file, and the model's
 * name peeked from its GGUF header (the model itself is not loaded). */
static int run_report_validation(const struct run_opts *o, const struct batchfile *bf, double wall)
{
    const bool ok = bf->n_invalid == 0 || o->skip_invalid;
    const double mb = (double)bf->size / 1e6;
    if (bf->n_invalid)
        run_print_validation(bf, stderr);
    run_write_summary(o, ok ? "validated" : "failed", bf, NULL, wall, NULL, 0, NULL);
    if (!o->quiet) {
        printf("nightshift run: %s (--validate-only: nothing was run)\n", ok ? "validated" : "failed validation");
        printf("  lines      %zu valid, %zu invalid, of %zu\n", bf->n_requests - bf->n_invalid, bf->n_invalid,
               bf->n_requests);
        printf("  input      %zu bytes (%.1f MB) in %.3f s: %.1f MB/s, %.0f lines/s\n", bf->size, mb, wall,
               wall > 0 ? mb / wall : 0.0, wall > 0 ? (double)bf->n_requests / wall : 0.0);
    }
    return ok ? 0 : 1;
}

static int run_parse_args(int argc, char **argv, struct run_opts *o)
{
    enum {
        OPT_ALIAS = 1000, OPT_STATE, OPT_SKIP, OPT_MAXL, OPT_MAXB, OPT_SEED, OPT_SUMMARY, OPT_TMPL, OPT_TMPLF, OPT_PINT, OPT_KVU, OPT_NOPC, OPT_FORMAT,
        OPT_PIN, OPT_POUT, OPT_DISC, OPT_CONFIG, OPT_VALIDATE, OPT_EMBED, OPT_POOL, OPT_LORA, OPT_PULL
    };
    static const struct option lo[] = {
        {"output", required_argument, 0, 'o'},      {"errors", required_argument, 0, 'e'},
        {"model", required_argument, 0, 'm'},       {"model-alias", required_argument, 0, OPT_ALIAS},
        {"parallel", required_argument, 0, 'p'},    {"ctx", required_argument, 0, 'c'},
        {"threads", required_argument, 0, 't'},     {"batch-size", required_argument, 0, 'b'},
        {"state", required_argument, 0, OPT_STATE}, {"skip-invalid", no_argument, 0, OPT_SKIP},
        {"max-lines", required_argument, 0, OPT_MAXL}, {"max-bytes", required_argument, 0, OPT_MAXB},
        {"seed", required_argument, 0, OPT_SEED},   {"summary", required_argument, 0, OPT_SUMMARY},
        {"chat-template", required_argument, 0, OPT_TMPL}, {"chat-template-file", required_argument, 0, OPT_TMPLF}, {"progress-interval", required_argument, 0, OPT_PINT},
        {"kv-unified", no_argument, 0, OPT_KVU},     {"no-prefix-cache", no_argument, 0, OPT_NOPC},
        {"embedding", no_argument, 0, OPT_EMBED},   {"pooling", required_argument, 0, OPT_POOL},
        {"input-format", required_argument, 0, OPT_FORMAT},
        {"price-input", required_argument, 0, OPT_PIN}, {"price-output", required_argument, 0, OPT_POUT},
        {"batch-discount", required_argument, 0, OPT_DISC}, {"config", required_argument, 0, OPT_CONFIG},
        {"validate-only", no_argument, 0, OPT_VALIDATE}, {"lora", required_argument, 0, OPT_LORA},
        {"pull", no_argument, 0, OPT_PULL},
        GPUOPTS_LONG_OPTIONS,
        {"quiet", no_argument, 0, 'q'},             {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    long long v;
    uint64_t sz;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "o:e:m:p:c:t:b:qvh", lo, NULL)) != -1) {
        int g = gpuopts_parse(ch, optarg, &o->gpu);
        if (g == GPUOPTS_EXIT_OK)
            return -1;
        if (g != GPUOPTS_NOT_MINE) {
            if (g)
                return g;
            continue;
        }
        switch (ch) {
        case 'o': o->output = optarg; break;
        case 'e': o->errors = optarg; break;
        case 'm': o->model = optarg; break;
        case OPT_ALIAS:
            if (o->n_aliases == RUN_MAX_ALIASES)
                return cli_fail("too many --model-alias (at most %d)", RUN_MAX_ALIASES);
            o->aliases[o->n_aliases++] = optarg;
            break;
        case 'p':
            if (num_parse_long(optarg, 1, 256, &v))
                return cli_fail("--parallel must be an integer from 1 to 256, not '%s'", optarg);
            o->parallel = (int)v;
            break;
        case 'c':
            if (num_parse_long(optarg, 64, 1 << 24, &v))
                return cli_fail("--ctx must be an integer from 64 to 16777216, not '%s'", optarg);
            o->ctx = (int)v;
            break;
        case 't':
            if (num_parse_long(optarg, 1, 1024, &v))
                return cli_fail("--threads must be an integer from 1 to 1024, not '%s'", optarg);
            o->threads = (int)v;
            break;
        case 'b':
            if (num_parse_long(optarg, 32, 1 << 16, &v))
                return cli_fail("--batch-size must be an integer from 32 to 65536, not '%s'", optarg);
            o->batch = (int)v;
            break;
        case OPT_STATE: o->state = optarg; break;
        case OPT_SKIP: o->skip_invalid = true; break;
        case OPT_VALIDATE: o->validate_only = true; break;
        case OPT_PULL: o->pull = true; break;
        case OPT_KVU: o->kv_unified = true; break;
        case OPT_EMBED: o->embedding = true; break;
        case OPT_POOL:
            if ((o->pooling = engine_pooling_parse(optarg)) < 0 || o->pooling == ENGINE_POOLING_NONE)
                return cli_fail("--pooling must be mean, cls or last, not '%s' (an embedding is one vector per input)",
                                optarg);
            break;
        case OPT_NOPC: o->no_prefix_cache = true; break;
        case OPT_FORMAT:
            if (strcmp(optarg, "openai") && strcmp(optarg, "gemini"))
                return cli_fail("--input-format must be 'openai' or 'gemini', not '%s'", optarg);
            o->gemini = strcmp(optarg, "gemini") == 0;
            break;
        case OPT_MAXL:
            if (num_parse_long(optarg, 1, 100000000, &v))
                return cli_fail("--max-lines must be a positive integer, not '%s'", optarg);
            o->bfp.max_lines = (size_t)v;
            break;
        case OPT_MAXB:
            if (num_parse_size(optarg, &sz) || sz == 0)
                return cli_fail("--max-bytes must be a size like 200MB or 1GiB, not '%s'", optarg);
            o->bfp.max_bytes = (size_t)sz;
            break;
        case OPT_SEED:
            if (num_parse_long(optarg, 0, INT64_MAX, &v))
                return cli_fail("--seed must be a non-negative integer, not '%s'", optarg);
            o->seed = (uint64_t)v;
            break;
        case OPT_SUMMARY: o->summary = optarg; break;
        case OPT_CONFIG: o->config = optarg; break;
        case OPT_PIN:
        case OPT_POUT:
        case OPT_DISC: {
            char *end;
            errno = 0;
            double d = strtod(optarg, &end);
            double hi = ch == OPT_DISC ? 1 : 1e6;
            if (end == optarg || *end || errno || !(d >= 0 && d <= hi))
                return cli_fail("--%s must be a number from 0 to %g, not '%s'",
                                ch == OPT_PIN ? "price-input" : ch == OPT_POUT ? "price-output" : "batch-discount", hi, optarg);
            *(ch == OPT_PIN ? &o->price_input : ch == OPT_POUT ? &o->price_output : &o->batch_discount) = d;
            break;
        }
        case OPT_TMPL: o->chat_template = optarg; break;
        case OPT_TMPLF: o->chat_template_file = optarg; break;
        case OPT_LORA: {
            char lerr[400];
            if (config_lora_arg(optarg, o->lora, &o->n_lora, lerr, sizeof(lerr)))
                return cli_fail("--lora %s: %s", optarg, lerr);
            break;
        }
        case OPT_PINT:
            if (num_parse_long(optarg, 1, 86400, &v))
                return cli_fail("--progress-interval must be seconds from 1 to 86400, not '%s'", optarg);
            o->progress_interval = (double)v;
            break;
        case 'q': o->quiet = true; break;
        case 'v': o->verbose = true; break;
        case 'h': run_usage(stdout); return -1;
        default: run_usage(stderr); return 2;
        }
    }
    if (optind < argc)
        o->input = argv[optind++];
    if (optind < argc)
        return cli_fail("unexpected argument '%s' (one input file per run)", argv[optind]);
    if (!o->input) {
        run_usage(stderr);
        return cli_fail("no input file given");
    }
    if (!o->output && !o->validate_only)
        return cli_fail("no output file given (-o FILE)");
    if (!o->model && !o->config)
        o->model = getenv("NIGHTSHIFT_MODEL");
    if (!o->model && !o->config)
        return cli_fail("no model given (--model FILE.gguf or NIGHTSHIFT_MODEL)");
    return 0;
}

/* No two of the files a run reads and writes may be one file: `-o in.jsonl` would replace
 * the input with its results, `-e in.jsonl` truncate it, `-o X -e X` lose one of the two.
 * Compared by device and inode where both exist, else by canonical name. 0 ok, else 2
 * after one line saying which two. */
static int run_check_paths(const struct run_opts *o)
{
    const struct {
        const char *what, *path;
    } f[] = {
        {"the input file", o->input},
        {"the output file (-o)", o->validate_only ? NULL : o->output},
        {"the error file (-e)", o->validate_only ? NULL : o->errors},
        {"the checkpoint (--state)", o->validate_only ? NULL : o->state},
        {"the summary (--summary)", o->summary},
    };
    const size_t n = sizeof(f) / sizeof(f[0]);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            if (!f[i].path || !f[j].path || strcmp(f[i].path, "-") == 0 || strcmp(f[j].path, "-") == 0)
                continue;
            if (path_same_file(f[i].path, f[j].path))
                return cli_fail("%s '%s' is also %s: one would overwrite the other; give each its own path", f[j].what,
                                f[j].path, f[i].what);
        }
    return 0;
}

/* errors path default: results.jsonl -> results.errors.jsonl */
static void run_default_errors_path(const char *output, char *out, size_t n)
{
    size_t len = strlen(output);
    if (len > 6 && strcmp(output + len - 6, ".jsonl") == 0)
        snprintf(out, n, "%.*s.errors.jsonl", (int)(len - 6), output);
    else
        snprintf(out, n, "%s.errors.jsonl", output);
}

/* tmpl_text: --chat-template-file's text, owned by the caller */
static int run_main(int argc, char **argv, char **tmpl_text)
{
    struct run_opts o;
    memset(&o, 0, sizeof(o));
    o.parallel = 64;
    o.ctx = 0;
    o.batch = 2048;
    o.pooling = ENGINE_POOLING_MODEL;
    o.progress_interval = 10;
    o.bfp = batchfile_default_params();
    o.gpu = engine_default_params();
    struct run_ctx c;
    memset(&c, 0, sizeof(c));
    c.o = &o;
    strset_init(&c.done);
    char err[512] = "", errors_path[4096], state_path[4096], peek[128] = "";
    const char *names[RUN_MAX_ALIASES + 4];
    char base[256], base_noext[256];
    char served[1024];
    int rc = 0;
    double t0 = clock_now();
    struct runstate_totals tot;
    memset(&tot, 0, sizeof(tot));
    struct engine_stats st;
    memset(&st, 0, sizeof(st));
    size_t resumed = 0;
    int lock_fd = -1;
    struct engine_info info; /* the local engine's, when have_info */
    bool have_info = false;
    memset(&info, 0, sizeof(info));

    int a = run_parse_args(argc, argv, &o);
    if (a)
        return a < 0 ? 0 : 2;
    if (!o.output)
        o.output = "-"; /* --validate-only: nothing is written */
    if (!o.errors) {
        run_default_errors_path(o.output, errors_path, sizeof(errors_path));
        o.errors = errors_path;
    }
    if (!o.state) {
        snprintf(state_path, sizeof(state_path), "%s.state.db", o.output);
        o.state = state_path;
    }
    if (run_check_paths(&o))
        return 2;
    if (o.chat_template_file) {
        if (o.chat_template)
            return cli_fail("--chat-template and --chat-template-file: give one (a built-in name, or a Jinja file)");
        if (config_read_template(o.chat_template_file, "--chat-template-file", tmpl_text, err, sizeof(err)))
            return cli_fail("%s", err);
        o.chat_template = *tmpl_text;
    }

    /* --config: the model is one of its sections; an upstream one runs on its backend */
    struct config *cfg = NULL;
    const struct config_model *cm = NULL;
    if (o.config) {
        char cerr[600];
        if (config_load(o.config, NULL, &cfg, cerr, sizeof(cerr)))
            return cli_fail("%s", cerr);
        char have[512] = "";
        for (int i = 0; i < cfg->n_models; i++) {
            size_t hl = strlen(have);
            snprintf(have + hl, sizeof(have) - hl, "%s%s", i ? ", " : "", cfg->models[i].conf.name);
            if (o.model ? strcmp(cfg->models[i].conf.name, o.model) == 0 : cfg->n_models == 1)
                cm = &cfg->models[i];
        }
        if (!cm) {
            cli_fail("%s: no [model %s] section (it has: %s)", o.config, o.model ? o.model : "?", have[0] ? have : "none");
            config_free(cfg);
            return 2;
        }
        const struct backend_ops *kops = backend_find(cm->conf.kind);
        if (!kops || kops->offline) {
            cli_fail("model '%s' runs on %s, which `nightshift run` does not drive: use `nightshift serve` for "
                     "provider batch backends",
                     cm->conf.name, cm->conf.kind);
            config_free(cfg);
            return 2;
        }
        if (o.n_lora) {
            cli_fail("--lora with --config: give model '%s' its adapters in its section (lora = FILE[:SCALE])",
                     cm->conf.name);
            config_free(cfg);
            return 2;
        }
        if (o.n_aliases < RUN_MAX_ALIASES)
            o.aliases[o.n_aliases++] = cm->conf.name;
        o.model = cm->path; /* NULL for an upstream */
    }
    /* a model store reference: its file, and its store name is what body.model says */
    static char store_path[4400], store_name[256];
    if (o.model && !cm) {
        int prc = pull_model_resolve(o.model, o.pull, store_path, sizeof(store_path), store_name, sizeof(store_name));
        if (prc)
            return prc;
        if (store_name[0]) {
            o.model = store_path;
            if (o.n_aliases < RUN_MAX_ALIASES) {
                /* first: it names the model in the results */
                memmove(&o.aliases[1], &o.aliases[0], (size_t)(RUN_MAX_ALIASES - 1) * sizeof(o.aliases[0]));
                o.aliases[0] = store_name;
                o.n_aliases++;
            }
        }
    }
    /* the names body.model may use: aliases, the file name, general.name */
    peek[0] = '\0';
    if (o.model && engine_peek_name(o.model, peek, sizeof(peek), err, sizeof(err)) != NS_OK) {
        cli_fail("%s", err);
        config_free(cfg);
        return 2;
    }
    const char *mp = o.model ? o.model : cm->conf.name;
    const char *slash = strrchr(mp, '/');
    snprintf(base, sizeof(base), "%s", slash ? slash + 1 : mp);
    snprintf(base_noext, sizeof(base_noext), "%s", base);
    size_t bl = strlen(base_noext);
    if (bl > 5 && strcmp(base_noext + bl - 5, ".gguf") == 0)
        base_noext[bl - 5] = '\0';
    int nn = 0;
    for (int i = 0; i < o.n_aliases; i++)
        names[nn++] = o.aliases[i];
    names[nn++] = base_noext;
    names[nn++] = base;
    if (peek[0])
        names[nn++] = peek;
    names[nn] = NULL;
    served[0] = '\0';
    for (int i = 0; i < nn; i++) {
        size_t sl = strlen(served);
        snprintf(served + sl, sizeof(served) - sl, "%s'%s'", i ? ", " : "", names[i]);
    }
    o.bfp.model_ok = run_model_ok;
    o.bfp.model_ud = names;
    o.bfp.served_models = served;
    c.model_name = cm ? cm->conf.name : o.n_aliases && strcmp(o.aliases[0], "*") ? o.aliases[0] : base_noext;

    /* 1. validate (a Gemini file is first converted to OpenAI lines, line for line) */
    if (o.gemini) {
        o.bfp.model_ok = NULL; /* the converter names the model */
        rc = run_load_gemini(&c, &o, err, sizeof(err));
    } else {
        rc = batchfile_open(o.input, &o.bfp, &c.bf, err, sizeof(err));
    }
    if (rc) {
        cli_fail("%s", err);
        buf_release(&c.gemini_buf);
        config_free(cfg);
        return 2;
    }
    if (o.validate_only) {
        rc = run_report_validation(&o, c.bf, clock_now() - t0);
        batchfile_free(c.bf);
        buf_release(&c.gemini_buf);
        config_free(cfg);
        return rc;
    }
    if (c.bf->n_invalid && !o.skip_invalid) {
        run_print_validation(c.bf, stderr);
        run_write_summary(&o, "failed", c.bf, NULL, clock_now() - t0, NULL, 0, NULL);
        batchfile_free(c.bf);
        buf_release(&c.gemini_buf);
        config_free(cfg);
        return 1;
    }

    /* 2. checkpoint */
    /* One run per checkpoint (issue 27.15): a second `run` with the same -o would resume the
     * same lines and fight over the database; it is refused at once, naming the holder. The
     * lock file stays beside the checkpoint (removing it would race a third run). */
    {
        char lock_path[4200], what[4400];
        snprintf(lock_path, sizeof(lock_path), "%s.lock", o.state);
        snprintf(what, sizeof(what), "the checkpoint '%s' of -o '%s'", o.state, o.output);
        if (datadir_lock_file(lock_path, what, &lock_fd, err, sizeof(err))) {
            cli_fail("%s", err);
            rc = 2;
            goto out;
        }
    }
    rc = runstate_open(o.state, runstate_default_params(), c.bf->size, c.bf->hash, &c.rs, err, sizeof(err));
    if (rc) {
        cli_fail("%s", err);
        rc = 2;
        goto out;
    }
    if (runstate_each_done(c.rs, run_add_done, &c) || c.io_error) {
        cli_fail("cannot read the checkpoint database '%s'", o.state);
        rc = 1;
        goto out;
    }
    resumed = c.n_done_ids;
    /* lines that failed validation, when skipped, are results too: recorded once */
    for (size_t i = 0; i < c.bf->n_errors; i++) {
        const struct batchfile_error *e = &c.bf->errors[i];
        char key[32];
        snprintf(key, sizeof(key), "l:%u", e->line);
        if (strset_has(&c.done, key))
            continue;
        cJSON *line = o.gemini ? gemini_error_line(e->custom_id, NS_ERR_INVALID, e->message)
                               : oai_batch_line(e->custom_id, 400, oai_error_body(NS_ERR_INVALID, e->message, e->param, e->code));
        run_record(&c, key, e->line, false, line, 0, 0, 0);
    }

    if (run_make_order(&c, !o.no_prefix_cache)) {
        cli_fail("out of memory");
        rc = 1;
        goto out;
    }
    size_t remaining = 0;
    for (size_t i = 0; i < c.bf->n_lines; i++) {
        char key[600];
        run_key(key, sizeof(key), c.bf->lines[i].custom_id);
        remaining += !strset_has(&c.done, key);
    }

    /* 3. engine */
    if (remaining > 0) {
        struct backend_conf bc = cm ? cm->conf : backend_default_conf();
        bc.name = c.model_name;
        struct engine_params epm = engine_default_params(), *ep = &epm;
        bc.engine = ep;
        ep->model_path = o.model;
        ep->n_ctx = o.ctx;
        ep->n_parallel = o.parallel;
        ep->n_batch = o.batch;
        ep->n_threads = o.threads;
        ep->chat_template = cm && cm->chat_template ? cm->chat_template : o.chat_template;
        ep->verbose = o.verbose;
        ep->kv_unified = o.kv_unified;
        ep->step_trace = getenv("NIGHTSHIFT_STEP_TRACE");
        ep->prefix_cache = !o.no_prefix_cache;
        ep->embedding = o.embedding;
        ep->pooling = o.pooling;
        ep->lora = cm ? cm->lora : o.lora;
        ep->n_lora = cm ? cm->n_lora : o.n_lora;
        gpuopts_apply(&o.gpu, ep);
        rc = backend_init(&bc, &c.be, err, sizeof(err));
        if (rc) {
            cli_fail("%s", err);
            rc = 2;
            goto out;
        }
        bool local = have_info = backend_model_info(c.be, &info);
        if (!o.quiet && local) {
            fprintf(stderr, "nightshift: model %s (%s) on %s, %d parallel, context %d (%d per sequence%s, KV %s/%s, %.1f MiB), chat template %s\n",
                    info.name, info.desc, info.where, info.n_parallel, info.n_ctx, info.n_ctx_seq, o.kv_unified ? ", unified" : "",
                    info.cache_type_k, info.cache_type_v, (double)info.mem_kv / 1048576.0, info.chat_template);
        } else if (!o.quiet) {
            struct backend_info bi;
            c.be->ops->get_info(c.be->impl, &bi);
            fprintf(stderr, "nightshift: model %s on %s (%s), up to %d requests at once\n", c.model_name, bi.kind, bi.desc,
                    bc.concurrency);
        }
        if (!o.quiet) {
            if (resumed)
                fprintf(stderr, "nightshift: resuming: %zu lines already done, %zu to run\n", resumed, remaining);
        }
        progress_init(&c.prog, remaining, o.quiet, o.progress_interval);
        run_backend_for_signal = c.be;
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = run_on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        struct engine_source src = {.ud = &c, .pull = run_pull, .done = run_done};
        int erc = c.be->ops->run(c.be->impl, &src);
        run_backend_for_signal = NULL;
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        progress_finish(&c.prog);
        backend_engine_stats(c.be, &st);
        if (erc) {
            runstate_flush(c.rs);
            cli_fail("the engine failed (llama_decode error); finished lines are kept, re-run to resume");
            rc = 1;
            goto out;
        }
    }
    if (runstate_flush(c.rs) || c.io_error) {
        cli_fail("%s", c.io_msg[0] ? c.io_msg : "cannot write the checkpoint database");
        rc = 1;
        goto out;
    }
    if (run_interrupted) {
        fprintf(stderr, "nightshift: interrupted; %llu lines finished this run are saved in %s; "
                        "run the same command again to resume\n",
                (unsigned long long)(c.ok + c.failed), o.state);
        rc = 130;
        goto out;
    }

    /* 4. output files */
    rc = run_export(&c, o.output, o.errors, &tot, err, sizeof(err));
    if (rc) {
        cli_fail("%s", err);
        rc = 1;
        goto out;
    }
    double wall = clock_now() - t0;
    run_write_summary(&o, "completed", c.bf, &tot, wall, &st, resumed, have_info ? &info : NULL);
    if (!o.quiet) {
        printf("nightshift run: completed\n");
        printf("  lines      %llu ok, %llu failed, of %zu%s\n", (unsigned long long)tot.ok,
               (unsigned long long)tot.failed, c.bf->n_requests, resumed ? " (resumed run)" : "");
        printf("  tokens     prompt %llu (cached %llu), completion %llu\n", (unsigned long long)tot.prompt_tokens,
               (unsigned long long)tot.cached_tokens, (unsigned long long)tot.completion_tokens);
        printf("  this run   %llu lines, %llu generated tokens in %.1f s: %.1f tok/s, %.2f lines/s\n",
               (unsigned long long)(c.ok + c.failed), (unsigned long long)c.completion_tokens, wall,
               wall > 0 ? (double)c.completion_tokens / wall : 0.0, wall > 0 ? (double)(c.ok + c.failed) / wall : 0.0);
        if (st.steps)
            printf("  engine     %llu steps, %.1f sequences per step on average\n", (unsigned long long)st.steps,
                   (double)st.seqs_in_steps / (double)st.steps);
        if (have_info)
            printf("  device     %s; KV %s/%s, %.1f MiB for %d sequences\n", info.where, info.cache_type_k,
                   info.cache_type_v, (double)info.mem_kv / 1048576.0, info.n_parallel);
        if (st.prompt_submitted)
            printf("  prompts    %llu tokens submitted, %llu computed, %llu from the prefix cache (hit ratio %.1f%%)\n",
                   (unsigned long long)st.prompt_submitted, (unsigned long long)st.prompt_tokens,
                   (unsigned long long)st.prompt_cached,
                   100.0 * (double)st.prompt_cached / (double)st.prompt_submitted);
        double cb, crt;
        if (run_cost(&o, &tot, &cb, &crt))
            printf("  cost       $%.4f at batch prices ($%.4f in real time: %.0f%% saved)\n", cb, crt,
                   crt > 0 ? 100.0 * (crt - cb) / crt : 0.0);
        printf("  output     %s\n  errors     %s\n", o.output, o.errors);
    }
    rc = 0;
out:
    backend_free(c.be);
    config_free(cfg);
    runstate_close(c.rs);
    datadir_unlock(lock_fd);
    batchfile_free(c.bf);
    strset_release(&c.done);
    for (size_t i = 0; i < c.n_done_ids; i++)
        free(c.done_ids[i]);
    free(c.done_ids);
    free(c.order);
    buf_release(&c.gemini_buf);
    for (int i = 0; i < o.n_lora; i++)
        free((char *)o.lora[i].path);
    return rc;
}

int cli_run(int argc, char **argv)
{
    char *tmpl_text = NULL;
    int rc = run_main(argc, argv, &tmpl_text);
    free(tmpl_text);
    return rc;
}
