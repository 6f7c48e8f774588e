/*
 * pull.c — `nightshift pull REF` (a model from the Hugging Face Hub or a URL into the model
 * store), `nightshift models list|show|rm`, and --model's store references for run/serve
 * (pull.h). The store itself, its layout and the downloads are backend/modelstore.h's.
 *
 * Progress goes to stderr: a bar redrawn in place on a terminal, one line per file and
 * phase otherwise (logs, CI). The result (the model's name and file) goes to stdout.
 */
#include "pull.h"
#include "cli.h"

#include "../backend/modelstore.h"
#include "../engine/ggufinfo.h"
#include "../proto/ollama.h"
#include "../util/clock.h"
#include "../util/status.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* bytes as people read them: "1.5 GB", "27.0 MB", "512 B" */
static void pull_bytes(uint64_t b, char *out, size_t n)
{
    if (b >= 1000000000ull)
        snprintf(out, n, "%.2f GB", (double)b / 1e9);
    else if (b >= 1000000ull)
        snprintf(out, n, "%.1f MB", (double)b / 1e6);
    else if (b >= 1000ull)
        snprintf(out, n, "%.1f kB", (double)b / 1e3);
    else
        snprintf(out, n, "%llu B", (unsigned long long)b);
}

struct pull_view {
    bool tty;
    bool drawn;
    int shown;       /* the file whose start line was printed (plain output) */
    double t0;       /* when the current file's bytes began */
    uint64_t start;  /* its bytes at t0 (a resumed .part) */
};

static int pull_on_event(void *ud, const struct modelstore_event *ev)
{
    struct pull_view *v = ud;
    char a[32], b[32];
    switch (ev->phase) {
    case MODELSTORE_DOWNLOAD:
        if (ev->skipped) {
            pull_bytes(ev->total, a, sizeof(a));
            fprintf(stderr, "%s%s (%s): already in the store\n", v->drawn ? "\n" : "", ev->file, a);
            v->drawn = false;
            break;
        }
        if (v->shown != ev->index) {
            v->shown = ev->index;
            v->t0 = clock_now();
            v->start = ev->completed;
            pull_bytes(ev->total, a, sizeof(a));
            if (!v->tty) {
                char resume[64] = "";
                if (ev->completed) {
                    pull_bytes(ev->completed, b, sizeof(b));
                    snprintf(resume, sizeof(resume), ", resuming at %s", b);
                }
                fprintf(stderr, "downloading %s (%s%s), file %d of %d\n", ev->file, a, resume, ev->index + 1,
                        ev->count);
            }
        }
        if (v->tty) {
            double pct = ev->total ? 100.0 * (double)ev->completed / (double)ev->total : 0;
            double dt = clock_now() - v->t0;
            double rate = dt > 0.2 ? (double)(ev->completed - v->start) / dt : 0;
            int filled = (int)(pct / 5);
            char bar[21];
            for (int i = 0; i < 20; i++)
                bar[i] = i < filled ? '#' : '.';
            bar[20] = '\0';
            pull_bytes(ev->completed, a, sizeof(a));
            pull_bytes(ev->total, b, sizeof(b));
            char r[32] = "";
            if (rate > 0) {
                pull_bytes((uint64_t)rate, r, sizeof(r));
                strncat(r, "/s", sizeof(r) - strlen(r) - 1);
            }
            fprintf(stderr, "\r%-40.40s [%s] %5.1f%% %s / %s %s\033[K", ev->file, bar, pct, a, b, r);
            v->drawn = true;
        }
        break;
    case MODELSTORE_VERIFY:
        fprintf(stderr, "%sverifying the SHA-256 of %s\n", v->drawn ? "\n" : "", ev->file);
        v->drawn = false;
        break;
    case MODELSTORE_WRITE:
        fprintf(stderr, "%swriting the manifest\n", v->drawn ? "\n" : "");
        v->drawn = false;
        break;
    case MODELSTORE_DONE: break;
    }
    fflush(stderr);
    return 0;
}

/* pull ref into the store at dir; out describes it. 0, or the exit status after the message */
static int pull_do(const char *dir, const char *ref, struct modelstore_model *out)
{
    char err[2048] = "";
    struct hub_conf hc = hub_default_conf();
    struct modelstore_pull *p = NULL;
    fprintf(stderr, "pulling %s\n", ref);
    int rc = modelstore_pull_plan(dir, &hc, ref, &p, err, sizeof(err));
    if (rc)
        return cli_fail("cannot pull %s: %s", ref, err);
    char sz[32];
    pull_bytes(modelstore_pull_size(p), sz, sizeof(sz));
    fprintf(stderr, "%s: %d file%s, %s\n", modelstore_pull_name(p), modelstore_pull_files(p),
            modelstore_pull_files(p) == 1 ? "" : "s", sz);
    struct pull_view v = {.tty = isatty(STDERR_FILENO) == 1, .shown = -1};
    rc = modelstore_pull_run(p, pull_on_event, &v, out, err, sizeof(err));
    if (v.drawn)
        fputc('\n', stderr);
    modelstore_pull_free(p);
    if (rc) {
        cli_fail("cannot pull %s: %s", ref, err);
        return 1;
    }
    return 0;
}

static int pull_store_dir(char *dir, size_t n)
{
    char err[256];
    if (modelstore_dir(dir, n, err, sizeof(err)))
        return cli_fail("%s", err);
    return 0;
}

int pull_model_resolve(const char *arg, bool pull, char *path, size_t pn, char *name, size_t nn)
{
    name[0] = '\0';
    if (!modelstore_is_ref(arg)) {
        snprintf(path, pn, "%s", arg);
        return 0;
    }
    char dir[4096], err[2048];
    if (pull_store_dir(dir, sizeof(dir)))
        return 2;
    struct modelstore_model m;
    int rc = modelstore_find(dir, arg, &m, err, sizeof(err));
    if (rc == NS_ERR_MODEL_NOT_FOUND && pull) {
        fprintf(stderr, "nightshift: %s is not in the model store: pulling it (--pull)\n", arg);
        if ((rc = pull_do(dir, arg, &m)))
            return rc;
    } else if (rc == NS_ERR_MODEL_NOT_FOUND && !strchr(arg, '/')) {
        /* a bare name: a file that is not there, or a name the store does not have */
        return cli_fail("'%s' is neither a file nor a model in the model store (%s); `nightshift models list` shows the "
                        "store",
                        arg, dir);
    } else if (rc == NS_ERR_MODEL_NOT_FOUND) {
        return cli_fail("%s: `nightshift pull %s` downloads it (run and serve also take --pull); a GGUF file's path "
                        "works too",
                        err, arg);
    } else if (rc) {
        return cli_fail("%s", err);
    }
    snprintf(path, pn, "%s", m.path);
    snprintf(name, nn, "%s", m.name);
    return 0;
}

/* ---- nightshift pull ------------------------------------------------------------------- */

static void pull_usage(FILE *f)
{
    fputs("usage: nightshift pull REF\n"
          "\n"
          "Downloads a GGUF model into the model store, where `run`, `serve` and `models` find it by name.\n"
          "\n"
          "REF is one of:\n"
          "  hf.co/ORG/REPO[:QUANT]   a Hugging Face repository; QUANT picks its .gguf files by their\n"
          "  ORG/REPO[:QUANT]         quantization tag (Q4_K_M, q8_0, ...; any case). Without QUANT:\n"
          "                           Q4_K_M, else the only one; split files (-00001-of-0000N) all come\n"
          "  https://HOST/FILE.gguf   a plain URL\n"
          "\n"
          "The model's name is ORG/REPO:QUANT (QUANT as its files spell it), or FILE for a URL.\n"
          "An interrupted download resumes where it stopped when pulled again. The SHA-256 the Hub\n"
          "reports is checked; a mismatch deletes the file.\n"
          "\n"
          "Environment: NIGHTSHIFT_MODELS (the store; default $XDG_CACHE_HOME/nightshift/models, or\n"
          "~/.cache/nightshift/models), HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (gated\n"
          "and private repositories; unset: the token a Hub login saved, ~/.cache/huggingface/token),\n"
          "https_proxy / no_proxy.\n",
          f);
}

int cli_pull(int argc, char **argv)
{
    static const struct option lo[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (ch == 'h') {
            pull_usage(stdout);
            return 0;
        }
        pull_usage(stderr);
        return 2;
    }
    if (optind >= argc) {
        pull_usage(stderr);
        return cli_fail("pull: no model given (hf.co/ORG/REPO[:QUANT], ORG/REPO[:QUANT] or a URL)");
    }
    if (optind + 1 < argc)
        return cli_fail("pull: one model at a time, not '%s'", argv[optind + 1]);
    char dir[4096];
    if (pull_store_dir(dir, sizeof(dir)))
        return 2;
    struct modelstore_model m;
    int rc = pull_do(dir, argv[optind], &m);
    if (rc)
        return rc;
    char sz[32];
    pull_bytes(m.size, sz, sizeof(sz));
    printf("%s\t%s\t%s\n", m.name, sz, m.path);
    fprintf(stderr, "pulled %s: `nightshift serve --model %s` serves it\n", m.name, m.name);
    return 0;
}

/* ---- nightshift models ------------------------------------------------------------------ */

static void models_usage(FILE *f)
{
    fputs("usage: nightshift models list\n"
          "       nightshift models show NAME\n"
          "       nightshift models rm NAME\n"
          "\n"
          "The model store (`nightshift pull`): list its models, describe one (file, size, architecture,\n"
          "parameters, quantization, context length, chat template, source), remove one.\n"
          "NAME is ORG/REPO:QUANT as `list` shows it (hf.co/ in front, any case of QUANT, or no QUANT\n"
          "when the store has one of that repository).\n"
          "The store is $NIGHTSHIFT_MODELS (default $XDG_CACHE_HOME/nightshift/models, or\n"
          "~/.cache/nightshift/models).\n",
          f);
}

static int models_list(const char *dir)
{
    struct modelstore_model *ms = NULL;
    int n = 0;
    char err[256];
    if (modelstore_list(dir, &ms, &n, err, sizeof(err)))
        return cli_fail("%s", err);
    if (n == 0) {
        fprintf(stderr, "the model store (%s) is empty: `nightshift pull ORG/REPO:QUANT` adds one\n", dir);
        free(ms);
        return 0;
    }
    printf("%-50s %10s  %-20s  %s\n", "NAME", "SIZE", "PULLED", "SOURCE");
    for (int i = 0; i < n; i++) {
        char sz[32];
        pull_bytes(ms[i].size, sz, sizeof(sz));
        printf("%-50s %10s  %-20s  %s\n", ms[i].name, sz, ms[i].pulled_at, ms[i].source);
    }
    free(ms);
    return 0;
}

static int models_show(const char *dir, const char *ref)
{
    struct modelstore_model m;
    char err[2048];
    int rc = modelstore_find(dir, ref, &m, err, sizeof(err));
    if (rc)
        return cli_fail("%s", err);
    struct engine_info in;
    uint64_t bytes = 0;
    if (ggufinfo_read(m.path, &in, &bytes, err, sizeof(err)))
        return cli_fail("%s (the store's file is damaged: `nightshift models rm %s`, then pull it again)", err, m.name);
    char sz[32], params[32];
    pull_bytes(m.size ? m.size : bytes, sz, sizeof(sz));
    ollama_parameter_size(in.n_params, params, sizeof(params));
    const char *colon = strrchr(m.name, ':');
    const char *q = ollama_quantization(in.file_type);
    printf("name:            %s\n", m.name);
    printf("file:            %s%s\n", m.path, m.n_files > 1 ? " (first of the splits)" : "");
    printf("files:           %d\n", m.n_files);
    printf("size:            %s (%llu bytes)\n", sz, (unsigned long long)(m.size ? m.size : bytes));
    printf("architecture:    %s\n", in.arch[0] ? in.arch : "unknown");
    printf("parameters:      %s (%llu)\n", params, (unsigned long long)in.n_params);
    printf("quantization:    %s\n", strcmp(q, "unknown") ? q : colon ? colon + 1 : "unknown");
    printf("context length:  %d\n", in.n_ctx_train);
    printf("chat template:   %s\n", in.chat_template);
    printf("general.name:    %s\n", in.name);
    printf("source:          %s\n", m.source);
    printf("sha256:          %s\n", m.sha256[0] ? m.sha256 : "unknown");
    printf("pulled at:       %s\n", m.pulled_at);
    return 0;
}

static int models_rm(const char *dir, const char *ref)
{
    struct modelstore_model m;
    char err[2048];
    if (modelstore_remove(dir, ref, &m, err, sizeof(err)))
        return cli_fail("%s", err);
    char sz[32];
    pull_bytes(m.size, sz, sizeof(sz));
    printf("removed %s (%s)\n", m.name, sz);
    return 0;
}

int cli_models(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            models_usage(stdout);
            return 0;
        }
    if (argc < 2) {
        models_usage(stderr);
        return cli_fail("models: give list, show NAME or rm NAME");
    }
    const char *sub = argv[1];
    bool wants_name = strcmp(sub, "show") == 0 || strcmp(sub, "rm") == 0;
    if (strcmp(sub, "list") != 0 && strcmp(sub, "ls") != 0 && !wants_name) {
        models_usage(stderr);
        return cli_fail("models: unknown command '%s' (list, show or rm)", sub);
    }
    if (wants_name && argc != 3)
        return cli_fail("models %s: give one model NAME (as `nightshift models list` shows it)", sub);
    if (!wants_name && argc != 2)
        return cli_fail("models list: unexpected argument '%s'", argv[2]);
    char dir[4096];
    if (pull_store_dir(dir, sizeof(dir)))
        return 2;
    if (!wants_name)
        return models_list(dir);
    return strcmp(sub, "show") == 0 ? models_show(dir, argv[2]) : models_rm(dir, argv[2]);
}
