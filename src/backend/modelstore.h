/*
 * modelstore.h — the model store: GGUF models pulled from the Hugging Face Hub (hub.h) or a
 * URL, kept under one directory and found by name. `nightshift pull`, `nightshift models`,
 * `serve`/`run --model NAME` and the Ollama API's /api/pull, /api/tags and /api/show use it.
 *
 * DESIGN
 * Where: $NIGHTSHIFT_MODELS, else $XDG_CACHE_HOME/nightshift/models, else
 * ~/.cache/nightshift/models. Inside it:
 *   files/ORG/REPO/PATH            a repository's file (PATH as in the repository)
 *   files/_url/NAME/FILE           a file pulled from a plain URL
 *   manifests/ORG/REPO/QUANT.json  one model: {name, source, repo, quant, files: [{path,
 *   manifests/_url/NAME.json        local, size, sha256}], size, pulled_at}
 * A model's name is ORG/REPO:QUANT with QUANT spelled as in its file names ("Q4_K_M"), or
 * NAME, the URL's file name without .gguf. References to it may add hf.co/ or
 * huggingface.co/ in front, spell the quant in any case, or leave it out (the one quant of
 * that repository in the store, else its Q4_K_M).
 *
 * A pull is two steps: plan (the listing, the choice of files: quick, and where a wrong
 * name, a missing quant or a gated repository fails) and run (downloads, checks, manifest).
 * Each file is downloaded to FILE.part (resumed by the next pull when cut short: hub.h),
 * its SHA-256 compared with the Hub's (a mismatch deletes it), then renamed to FILE; the
 * manifest is written last (util/durable.h), so a model is listed only once all its files
 * are whole. A file already there with the right size and digest is not downloaded again.
 *
 * Nothing is downloaded unless a pull is asked for: finding a model never reaches the net.
 *
 * THREADS: no state of its own. Pulls of different models may run at once; two pulls of
 * one file conflict (NS_ERR_CONFLICT from the second, hub.h).
 */
#ifndef NS_BACKEND_MODELSTORE_H
#define NS_BACKEND_MODELSTORE_H

#include "hub.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* the store's directory (see above) into out; NS_ERR_INVALID when neither
 * NIGHTSHIFT_MODELS, XDG_CACHE_HOME nor HOME is set */
int modelstore_dir(char *out, size_t n, char *err, size_t errlen);

struct modelstore_model {
    char name[256];      /* "org/repo:Q4_K_M", or a URL pull's NAME */
    char source[2300];   /* "hf.co/org/repo:Q4_K_M", or the URL */
    char path[4400];     /* the GGUF file to load (the first split): absolute when the store's
                            directory is */
    uint64_t size;       /* bytes of all its files */
    int n_files;
    char sha256[65];     /* of the first file */
    char pulled_at[32];  /* RFC 3339, UTC */
    int64_t pulled_unix;
};

/* Is s a model reference rather than a file path? hf.co/..., huggingface.co/..., http(s)://
 * URLs, and ORG/REPO[:QUANT] or NAME that name no existing file and do not end in .gguf. */
bool modelstore_is_ref(const char *s);

/* The model ref names in the store at dir. NS_ERR_MODEL_NOT_FOUND with err saying it is not
 * there (and which quants of the same repository are), NS_ERR_INVALID for a malformed ref. */
int modelstore_find(const char *dir, const char *ref, struct modelstore_model *out, char *err, size_t errlen);

/* Every model in the store, sorted by name: *out malloc'd (free(3) it), *n of them. */
int modelstore_list(const char *dir, struct modelstore_model **out, int *n, char *err, size_t errlen);

/* Remove the model ref names: its files and its manifest. out (may be NULL): what it was. */
int modelstore_remove(const char *dir, const char *ref, struct modelstore_model *out, char *err, size_t errlen);

/* ---- pulling ------------------------------------------------------------------------ */

struct modelstore_pull;

enum modelstore_phase {
    MODELSTORE_DOWNLOAD, /* a file's bytes: completed of total */
    MODELSTORE_VERIFY,   /* a file downloaded, its SHA-256 being checked */
    MODELSTORE_WRITE,    /* every file there: the manifest being written */
    MODELSTORE_DONE,
};

struct modelstore_event {
    enum modelstore_phase phase;
    const char *file;    /* the file's path in the repository (or URL's file name) */
    const char *digest;  /* its SHA-256 as the source reports it; "" when unknown */
    uint64_t completed, total;
    int index, count;    /* which file of how many */
    bool skipped;        /* DOWNLOAD: the file was there already */
};

/* called at most ten times a second per file (once a second while no byte comes), and at
 * each phase; nonzero stops the pull (what was downloaded stays, for the next pull to
 * resume) */
typedef int (*modelstore_event_fn)(void *ud, const struct modelstore_event *ev);

/* Resolve ref (hf.co/ORG/REPO[:QUANT], ORG/REPO[:QUANT], or an http(s) URL of a .gguf
 * file) on the Hub: which files make the model. *out freed with modelstore_pull_free(). */
int modelstore_pull_plan(const char *dir, const struct hub_conf *c, const char *ref, struct modelstore_pull **out,
                         char *err, size_t errlen);
/* the name the model will have in the store; its files' total bytes; their count */
const char *modelstore_pull_name(const struct modelstore_pull *p);
uint64_t modelstore_pull_size(const struct modelstore_pull *p);
int modelstore_pull_files(const struct modelstore_pull *p);
/* Download, check and record the model; out (may be NULL) then describes it. */
int modelstore_pull_run(struct modelstore_pull *p, modelstore_event_fn fn, void *ud, struct modelstore_model *out,
                        char *err, size_t errlen);
void modelstore_pull_free(struct modelstore_pull *p);

#endif
