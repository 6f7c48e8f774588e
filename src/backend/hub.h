/*
 * hub.h — the Hugging Face Hub as a source of GGUF files: a repository's file listing, the
 * choice of a quantization among its .gguf files, and resumable downloads over libcurl.
 * The model store (modelstore.h) is built on it; nothing here knows where files are kept.
 *
 * DESIGN
 * Listing: GET {endpoint}/api/models/ORG/REPO/tree/main?recursive=true, the Hub's tree API:
 * a JSON array of {type, path, size, lfs: {oid (the SHA-256), size}}, in pages: each
 * answer's "Link: <URL>; rel="next"" header names the next one, followed to the end. (The model-info API's
 * `siblings` carry lfs.sha256 instead; both names are read.) A file is fetched from
 * {endpoint}/ORG/REPO/resolve/main/PATH, following redirects (the Hub sends LFS files to its
 * CDN; libcurl drops the Authorization header when a redirect changes host).
 * Authentication as the Hub's own tools: HF_ENDPOINT (default https://huggingface.co) and
 * HF_TOKEN (sent as "Authorization: Bearer"; unset, the token `hf auth login` saved in
 * $HF_TOKEN_PATH or $HF_HOME/token, default ~/.cache/huggingface/token; set empty, none);
 * libcurl reads the proxy environment (https_proxy, no_proxy) by itself.
 *
 * Quantization tags: a .gguf file's tag is the last '-' or '.' separated part of its name
 * (split suffix -00001-of-00003 and .gguf removed) when it looks like one (Q4_K_M, IQ3_XS,
 * Q8_0, F16, BF16, ...), else its whole name. Files of one tag form one model: a single file
 * or every split. mmproj-* (vision projectors) and imatrix files are never models.
 *
 * Downloads resume: the bytes go to PATH.part; when it already holds some, the request asks
 * for the rest with "Range: bytes=N-", and a server that answers 200 (no ranges) restarts
 * the file from zero. The .part file is locked (flock) while it is written, so two pulls of
 * one file never interleave: the second fails at once.
 *
 * Errors: NS_OK; NS_ERR_AUTH (401/403: a gated or private repository; err says to set
 * HF_TOKEN, or that the token was refused); NS_ERR_MODEL_NOT_FOUND (404, or no file of the
 * asked tag: err lists the tags there are); NS_ERR_UPSTREAM (other HTTP failures, a
 * connection cut short: err says to pull again to resume); NS_ERR_IO (the local disk);
 * NS_ERR_CANCELLED (the progress callback asked to stop); NS_ERR_CONFLICT (the .part file
 * is being written by another pull).
 *
 * THREADS: no state of its own; calls may run in any threads at once.
 */
#ifndef NS_BACKEND_HUB_H
#define NS_BACKEND_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hub_conf {
    const char *endpoint; /* no trailing '/'; default https://huggingface.co */
    const char *token;    /* NULL: none */
};
/* HF_ENDPOINT and HF_TOKEN from the environment, or the saved token (see above); the strings
 * live as long as the process */
struct hub_conf hub_default_conf(void);

struct hub_file {
    char path[512];    /* in the repository: "Q4_K_M/model-00001-of-00002.gguf" */
    uint64_t size;     /* bytes (the LFS object's) */
    char sha256[65];   /* of an LFS file; "" for a plain git file */
    char tag[64];      /* a .gguf file's quantization tag ("Q4_K_M"); "" for other files */
};

struct hub_listing {
    struct hub_file *files; /* malloc'd, n of them */
    int n;
};

/* The files of repo ("ORG/REPO") on its main branch. *out is the caller's: release it with
 * hub_listing_release(). */
int hub_list(const struct hub_conf *c, const char *repo, struct hub_listing *out, char *err, size_t errlen);
void hub_listing_release(struct hub_listing *l);

/* A listing's JSON (the tree API's array, or the model-info object with siblings) into
 * *out; NS_ERR_UPSTREAM when it is neither. */
int hub_listing_parse(const char *json, size_t len, struct hub_listing *out, char *err, size_t errlen);

/* the quantization tag of a file name (see above) into out; false when it is no model file */
bool hub_file_tag(const char *path, char *out, size_t n);

/* The model files of tag (case-insensitive) in l: their indexes into idx (at most max, in
 * split order), their count returned. tag NULL or "": the default, Q4_K_M when there is
 * one, else the only tag there is. 0 with err listing the tags the repo has (or saying it
 * has no GGUF file) when nothing matches; tag_out gets the tag as the files spell it. */
int hub_select(const struct hub_listing *l, const char *tag, int *idx, int max, char *tag_out, size_t tag_n,
               char *err, size_t errlen);

/* progress of a download: completed of total bytes (total 0: unknown); nonzero stops it */
typedef int (*hub_progress_fn)(void *ud, uint64_t completed, uint64_t total);

/* Fetch url into part_path, resuming what it holds; size the expected bytes (0: unknown,
 * then whatever the server sends). The Bearer token goes only to URLs under the endpoint.
 * On NS_OK part_path holds the whole file, not yet checked or renamed. */
int hub_fetch(const struct hub_conf *c, const char *url, const char *part_path, uint64_t size,
              hub_progress_fn progress, void *ud, char *err, size_t errlen);

/* the URL of a repository file: {endpoint}/ORG/REPO/resolve/main/PATH (each part escaped) */
int hub_file_url(const struct hub_conf *c, const char *repo, const char *path, char *out, size_t n);

#endif
