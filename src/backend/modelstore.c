/*
 * modelstore.c — see modelstore.h: the store's layout, manifests, lookups and pulls.
 */
#include "modelstore.h"

#include "../util/buf.h"
#include "../util/clock.h"
#include "../util/durable.h"
#include "../util/sha256.h"
#include "../util/status.h"

#include <cjson/cJSON.h>

#include <ctype.h>
#include <stdarg.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MS_PATH 4400
#define MS_MAX_FILES 256       /* splits of one model */
#define MS_MANIFEST_MAX (1u << 20)
#define MS_URL_DIR "_url"      /* files/_url, manifests/_url: models pulled from a URL */
#define MS_DEFAULT_QUANT "Q4_K_M"

/* snprintf for paths and names: vsnprintf, so the compiler does not warn of truncation that
 * the lengths checked on the way in rule out (a truncated result is still refused) */
__attribute__((format(printf, 3, 4))) static int ms_fmt(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    return w < 0 || (size_t)w >= n ? NS_ERR_INVALID : NS_OK;
}

int modelstore_dir(char *out, size_t n, char *err, size_t errlen)
{
    const char *env = getenv("NIGHTSHIFT_MODELS");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return NS_OK;
    }
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && *xdg) {
        snprintf(out, n, "%s/nightshift/models", xdg);
        return NS_OK;
    }
    const char *home = getenv("HOME");
    if (home && *home) {
        snprintf(out, n, "%s/.cache/nightshift/models", home);
        return NS_OK;
    }
    snprintf(err, errlen, "no model store: set NIGHTSHIFT_MODELS (or HOME, XDG_CACHE_HOME)");
    return NS_ERR_INVALID;
}

/* ---- references ------------------------------------------------------------------- */

struct ms_ref {
    bool url;
    char repo[200];   /* "org/repo" */
    char tag[64];     /* "" when not given */
    char name[128];   /* a URL pull's name (or a bare NAME) */
    char url_s[2048];
};

/* a name part: letters, digits, '.', '_', '-', not starting with '.' */
static bool ms_part_ok(const char *s, size_t n)
{
    if (n == 0 || n > 96 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

static bool ms_is_url(const char *s) { return strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0; }

static const char *ms_strip_host(const char *s)
{
    if (strncmp(s, "hf.co/", 6) == 0)
        return s + 6;
    if (strncmp(s, "huggingface.co/", 15) == 0)
        return s + 15;
    return s;
}

static int ms_ref_parse(const char *s, struct ms_ref *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    if (ms_is_url(s)) {
        r->url = true;
        if (strlen(s) >= sizeof(r->url_s)) {
            snprintf(err, errlen, "the URL is too long");
            return NS_ERR_INVALID;
        }
        snprintf(r->url_s, sizeof(r->url_s), "%s", s);
        /* the name: the last path part without query and .gguf */
        size_t end = strcspn(s, "?#");
        size_t start = end;
        while (start > 0 && s[start - 1] != '/')
            start--;
        size_t len = end - start;
        if (len > 5 && strncasecmp(s + start + len - 5, ".gguf", 5) == 0)
            len -= 5;
        if (!ms_part_ok(s + start, len) || s + start <= strstr(s, "://") + 3) {
            snprintf(err, errlen, "'%s' does not end in a file name nightshift can keep (letters, digits, '.', '_', '-')",
                     s);
            return NS_ERR_INVALID;
        }
        snprintf(r->name, sizeof(r->name), "%.*s", (int)len, s + start);
        return NS_OK;
    }
    const char *p = ms_strip_host(s);
    const char *colon = strchr(p, ':');
    size_t body = colon ? (size_t)(colon - p) : strlen(p);
    if (colon) {
        size_t tl = strlen(colon + 1);
        if (!ms_part_ok(colon + 1, tl) || tl >= sizeof(r->tag)) {
            snprintf(err, errlen, "'%s': the quantization after ':' must be letters, digits, '.', '_' or '-' (as Q4_K_M)",
                     s);
            return NS_ERR_INVALID;
        }
        snprintf(r->tag, sizeof(r->tag), "%s", colon + 1);
    }
    const char *slash = memchr(p, '/', body);
    if (!slash) {
        if (!ms_part_ok(p, body) || colon) {
            snprintf(err, errlen, "'%s' is not a model reference (ORG/REPO[:QUANT], hf.co/ORG/REPO[:QUANT] or a URL)", s);
            return NS_ERR_INVALID;
        }
        snprintf(r->name, sizeof(r->name), "%.*s", (int)body, p);
        return NS_OK;
    }
    size_t ol = (size_t)(slash - p), rl = body - ol - 1;
    if (!ms_part_ok(p, ol) || !ms_part_ok(slash + 1, rl)) {
        snprintf(err, errlen, "'%s' is not a model reference: expected ORG/REPO[:QUANT] (letters, digits, '.', '_', '-')",
                 s);
        return NS_ERR_INVALID;
    }
    snprintf(r->repo, sizeof(r->repo), "%.*s", (int)body, p);
    return NS_OK;
}

bool modelstore_is_ref(const char *s)
{
    if (!s || !*s)
        return false;
    if (ms_is_url(s) || strncmp(s, "hf.co/", 6) == 0 || strncmp(s, "huggingface.co/", 15) == 0)
        return true;
    struct stat sb;
    if (stat(s, &sb) == 0)
        return false;
    size_t l = strlen(s);
    if (l >= 5 && strcasecmp(s + l - 5, ".gguf") == 0)
        return false;
    struct ms_ref r;
    char err[256];
    return ms_ref_parse(s, &r, err, sizeof(err)) == NS_OK;
}

/* ---- manifests -------------------------------------------------------------------- */

/* mkdir -p of the directory holding path */
static int ms_mkdirs_for(const char *path)
{
    char d[MS_PATH];
    snprintf(d, sizeof(d), "%s", path);
    char *slash = strrchr(d, '/');
    if (!slash)
        return NS_OK;
    *slash = '\0';
    for (char *p = d + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(d, 0755) != 0 && errno != EEXIST)
            return NS_ERR_IO;
        *p = '/';
    }
    if (mkdir(d, 0755) != 0 && errno != EEXIST)
        return NS_ERR_IO;
    return NS_OK;
}

static char *ms_read_file(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct buf b;
    buf_init(&b, max);
    char chunk[8192];
    size_t n;
    int rc = NS_OK;
    while (!rc && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = buf_append(&b, chunk, n);
    fclose(f);
    if (rc) {
        buf_release(&b);
        return NULL;
    }
    return buf_detach(&b);
}

static const char *ms_jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* a count or time of a manifest: 0 to 2^62, else 0 (a hand-edited manifest may say anything) */
static double ms_jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 4.6e18 ? v->valuedouble : 0;
}

/* a manifest file into out; NS_ERR_INVALID when it is unreadable */
static int ms_manifest_read(const char *dir, const char *mpath, struct modelstore_model *out, cJSON **root_out)
{
    memset(out, 0, sizeof(*out));
    char *text = ms_read_file(mpath, MS_MANIFEST_MAX);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
    const cJSON *first = cJSON_GetArrayItem(files, 0);
    if (!cJSON_IsObject(root) || !cJSON_IsObject(first) || !*ms_jstr(root, "name") || !*ms_jstr(first, "local")) {
        cJSON_Delete(root);
        return NS_ERR_INVALID;
    }
    snprintf(out->name, sizeof(out->name), "%s", ms_jstr(root, "name"));
    snprintf(out->source, sizeof(out->source), "%s", ms_jstr(root, "source"));
    snprintf(out->path, sizeof(out->path), "%s/%s", dir, ms_jstr(first, "local"));
    snprintf(out->sha256, sizeof(out->sha256), "%s", ms_jstr(first, "sha256"));
    snprintf(out->pulled_at, sizeof(out->pulled_at), "%s", ms_jstr(root, "pulled_at"));
    out->pulled_unix = (int64_t)ms_jnum(root, "pulled_unix");
    out->size = (uint64_t)ms_jnum(root, "size");
    out->n_files = cJSON_GetArraySize(files);
    if (root_out)
        *root_out = root;
    else
        cJSON_Delete(root);
    return NS_OK;
}

/* the manifest directory of a ref: manifests/ORG/REPO or manifests/_url */
static void ms_manifest_dir(const char *dir, const struct ms_ref *r, char *out, size_t n)
{
    snprintf(out, n, "%s/manifests/%s", dir, r->repo[0] ? r->repo : MS_URL_DIR);
}

/* the .json files of a directory (the tags), comma-joined into list; their count */
static int ms_tags_in(const char *mdir, char *list, size_t n, char *only, size_t on, bool *has_default)
{
    list[0] = '\0';
    *has_default = false;
    DIR *d = opendir(mdir);
    if (!d)
        return 0;
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l <= 5 || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        size_t have = strlen(list);
        snprintf(list + have, n - have, "%s%.*s", count ? ", " : "", (int)(l - 5), de->d_name);
        snprintf(only, on, "%.*s", (int)(l - 5), de->d_name);
        if (l - 5 == strlen(MS_DEFAULT_QUANT) && strncasecmp(de->d_name, MS_DEFAULT_QUANT, l - 5) == 0)
            *has_default = true;
        count++;
    }
    closedir(d);
    return count;
}

/* the manifest path of a tag in mdir, matching its case-insensitively; false when none */
static bool ms_tag_file(const char *mdir, const char *tag, char *out, size_t n)
{
    DIR *d = opendir(mdir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *de;
    size_t tl = strlen(tag);
    while (!found && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l == tl + 5 && strncasecmp(de->d_name, tag, tl) == 0 && strcmp(de->d_name + tl, ".json") == 0) {
            ms_fmt(out, n, "%s/%s", mdir, de->d_name);
            found = true;
        }
    }
    closedir(d);
    return found;
}

/* the manifest file of ref in the store; NS_ERR_MODEL_NOT_FOUND with err when none */
static int ms_locate(const char *dir, const char *ref, char *mpath, size_t n, char *err, size_t errlen)
{
    struct ms_ref r;
    int rc = ms_ref_parse(ref, &r, err, errlen);
    if (rc)
        return rc;
    char mdir[MS_PATH], tags[1024], only[128];
    ms_manifest_dir(dir, &r, mdir, sizeof(mdir));
    if (!r.repo[0]) {
        ms_fmt(mpath, n, "%s/%s.json", mdir, r.name);
        if (access(mpath, R_OK) == 0)
            return NS_OK;
        snprintf(err, errlen, "model '%s' is not in the model store (%s)", ref, dir);
        return NS_ERR_MODEL_NOT_FOUND;
    }
    bool has_default;
    int count = ms_tags_in(mdir, tags, sizeof(tags), only, sizeof(only), &has_default);
    const char *tag = r.tag[0] ? r.tag : count == 1 ? only : has_default ? MS_DEFAULT_QUANT : NULL;
    if (tag && ms_tag_file(mdir, tag, mpath, n))
        return NS_OK;
    if (count == 0)
        snprintf(err, errlen, "model '%s' is not in the model store (%s)", ref, dir);
    else if (!tag)
        snprintf(err, errlen, "the model store has %d quantizations of %s; name one as %s:QUANT (it has: %s)", count,
                 r.repo, r.repo, tags);
    else
        snprintf(err, errlen, "model '%s' is not in the model store (%s); it has %s as: %s", ref, dir, r.repo, tags);
    return NS_ERR_MODEL_NOT_FOUND;
}

int modelstore_find(const char *dir, const char *ref, struct modelstore_model *out, char *err, size_t errlen)
{
    char mpath[MS_PATH];
    int rc = ms_locate(dir, ref, mpath, sizeof(mpath), err, errlen);
    if (rc)
        return rc;
    if (ms_manifest_read(dir, mpath, out, NULL)) {
        snprintf(err, errlen, "the model store's manifest '%s' is unreadable: remove it, or pull the model again", mpath);
        return NS_ERR_IO;
    }
    return NS_OK;
}

static int ms_cmp(const void *a, const void *b)
{
    return strcmp(((const struct modelstore_model *)a)->name, ((const struct modelstore_model *)b)->name);
}

/* the manifests directly in mdir appended to *out */
static int ms_list_dir(const char *dir, const char *mdir, struct modelstore_model **out, int *n, int *cap)
{
    DIR *d = opendir(mdir);
    if (!d)
        return NS_OK;
    struct dirent *de;
    int rc = NS_OK;
    while (!rc && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l <= 5 || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        if (*n == *cap) {
            int nc = *cap ? *cap * 2 : 16;
            struct modelstore_model *m = realloc(*out, (size_t)nc * sizeof(*m));
            if (!m) {
                rc = NS_ERR_NOMEM;
                break;
            }
            *out = m;
            *cap = nc;
        }
        char mpath[MS_PATH];
        snprintf(mpath, sizeof(mpath), "%s/%s", mdir, de->d_name);
        if (ms_manifest_read(dir, mpath, &(*out)[*n], NULL) == NS_OK)
            (*n)++;
    }
    closedir(d);
    return rc;
}

int modelstore_list(const char *dir, struct modelstore_model **out, int *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    int cap = 0, rc = NS_OK;
    char mroot[MS_PATH], odir[MS_PATH], rdir[MS_PATH];
    snprintf(mroot, sizeof(mroot), "%s/manifests", dir);
    DIR *orgs = opendir(mroot);
    if (!orgs)
        return NS_OK; /* nothing pulled yet */
    struct dirent *o;
    while (!rc && (o = readdir(orgs)) != NULL) {
        if (o->d_name[0] == '.')
            continue;
        ms_fmt(odir, sizeof(odir), "%s/%s", mroot, o->d_name);
        if (strcmp(o->d_name, MS_URL_DIR) == 0) {
            rc = ms_list_dir(dir, odir, out, n, &cap);
            continue;
        }
        DIR *repos = opendir(odir);
        if (!repos)
            continue;
        struct dirent *r;
        while (!rc && (r = readdir(repos)) != NULL) {
            if (r->d_name[0] == '.')
                continue;
            ms_fmt(rdir, sizeof(rdir), "%s/%s", odir, r->d_name);
            rc = ms_list_dir(dir, rdir, out, n, &cap);
        }
        closedir(repos);
    }
    closedir(orgs);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    if (*n > 1)
        qsort(*out, (size_t)*n, sizeof(**out), ms_cmp);
    return NS_OK;
}

/* remove the directories from path's up to (not including) stop while they are empty */
static void ms_prune(const char *path, const char *stop)
{
    char d[MS_PATH];
    snprintf(d, sizeof(d), "%s", path);
    size_t sl = strlen(stop);
    for (;;) {
        char *slash = strrchr(d, '/');
        if (!slash)
            return;
        *slash = '\0';
        if (strlen(d) <= sl || strncmp(d, stop, sl) != 0 || rmdir(d) != 0)
            return;
    }
}

int modelstore_remove(const char *dir, const char *ref, struct modelstore_model *out, char *err, size_t errlen)
{
    char mpath[MS_PATH], fpath[MS_PATH], part[MS_PATH + 8], stop[MS_PATH];
    int rc = ms_locate(dir, ref, mpath, sizeof(mpath), err, errlen);
    if (rc)
        return rc;
    struct modelstore_model m;
    cJSON *root = NULL;
    if (ms_manifest_read(dir, mpath, &m, &root)) {
        /* nothing to say which files are its: the manifest alone goes */
        if (unlink(mpath) != 0) {
            snprintf(err, errlen, "cannot remove '%s': %s", mpath, strerror(errno));
            return NS_ERR_IO;
        }
        memset(&m, 0, sizeof(m));
        snprintf(m.name, sizeof(m.name), "%s", ref);
    } else {
        /* the manifest first: from then on the model is gone, whatever happens to the files */
        if (unlink(mpath) != 0) {
            snprintf(err, errlen, "cannot remove '%s': %s", mpath, strerror(errno));
            cJSON_Delete(root);
            return NS_ERR_IO;
        }
        snprintf(stop, sizeof(stop), "%s/files", dir);
        const cJSON *f;
        cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(root, "files"))
        {
            const char *local = ms_jstr(f, "local");
            if (!*local || strstr(local, ".."))
                continue;
            snprintf(fpath, sizeof(fpath), "%s/%s", dir, local);
            snprintf(part, sizeof(part), "%s.part", fpath);
            unlink(fpath);
            unlink(part);
            ms_prune(fpath, stop);
        }
        cJSON_Delete(root);
    }
    snprintf(stop, sizeof(stop), "%s/manifests", dir);
    ms_prune(mpath, stop);
    durable_sync_dir(mpath);
    if (out)
        *out = m;
    return NS_OK;
}

/* ---- pulling ------------------------------------------------------------------------ */

struct ms_pfile {
    char path[512];     /* in the repository (a URL pull: its file name) */
    char url[4096];
    char local[1024];   /* under the store: files/... */
    uint64_t size;
    char sha256[65];
};

struct modelstore_pull {
    char dir[MS_PATH];
    struct hub_conf conf;
    char endpoint[2048], token[2048];
    char name[256], source[2300], repo[200], tag[64];
    struct ms_pfile files[MS_MAX_FILES];
    int n_files;
    uint64_t total;
    /* progress of the file being fetched */
    modelstore_event_fn fn;
    void *ud;
    int index;
    double last;
    uint64_t last_done; /* the bytes of the last DOWNLOAD event */
};

const char *modelstore_pull_name(const struct modelstore_pull *p) { return p->name; }
uint64_t modelstore_pull_size(const struct modelstore_pull *p) { return p->total; }
int modelstore_pull_files(const struct modelstore_pull *p) { return p->n_files; }
void modelstore_pull_free(struct modelstore_pull *p) { free(p); }

/* a repository path is kept under files/: no empty, '.' or '..' part, no leading '/' */
static bool ms_repo_path_ok(const char *path)
{
    if (!*path || path[0] == '/')
        return false;
    const char *s = path;
    while (*s) {
        size_t len = strcspn(s, "/");
        if (len == 0 || s[0] == '.')
            return false;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)s[i] < 0x20 || s[i] == '\\')
                return false;
        s += len;
        if (*s == '/')
            s++;
    }
    return true;
}

int modelstore_pull_plan(const char *dir, const struct hub_conf *c, const char *ref, struct modelstore_pull **out,
                         char *err, size_t errlen)
{
    *out = NULL;
    struct ms_ref r;
    int rc = ms_ref_parse(ref, &r, err, errlen);
    if (rc)
        return rc;
    if (!r.url && !r.repo[0]) {
        snprintf(err, errlen,
                 "'%s' is not something to pull: give hf.co/ORG/REPO[:QUANT], ORG/REPO[:QUANT] or an https:// URL", ref);
        return NS_ERR_INVALID;
    }
    struct modelstore_pull *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NS_ERR_NOMEM;
    }
    snprintf(p->dir, sizeof(p->dir), "%s", dir);
    snprintf(p->endpoint, sizeof(p->endpoint), "%s", c->endpoint);
    snprintf(p->token, sizeof(p->token), "%s", c->token ? c->token : "");
    p->conf.endpoint = p->endpoint;
    p->conf.token = c->token ? p->token : NULL;
    if (r.url) {
        struct ms_pfile *f = &p->files[0];
        const char *base = r.url_s + strcspn(r.url_s, "?#");
        while (base > r.url_s && base[-1] != '/')
            base--;
        snprintf(p->name, sizeof(p->name), "%s", r.name);
        snprintf(p->source, sizeof(p->source), "%s", r.url_s);
        snprintf(f->path, sizeof(f->path), "%s.gguf", r.name);
        snprintf(f->url, sizeof(f->url), "%s", r.url_s);
        snprintf(f->local, sizeof(f->local), "files/%s/%s/%s", MS_URL_DIR, r.name, f->path);
        p->n_files = 1;
        *out = p;
        return NS_OK;
    }
    struct hub_listing l;
    rc = hub_list(&p->conf, r.repo, &l, err, errlen);
    if (rc) {
        free(p);
        return rc;
    }
    int idx[MS_MAX_FILES];
    char why[1200];
    int n = hub_select(&l, r.tag, idx, MS_MAX_FILES, p->tag, sizeof(p->tag), why, sizeof(why));
    if (n == 0) {
        snprintf(err, errlen, "%s: %s", r.repo, why);
        rc = NS_ERR_MODEL_NOT_FOUND;
        goto fail;
    }
    snprintf(p->repo, sizeof(p->repo), "%s", r.repo);
    ms_fmt(p->name, sizeof(p->name), "%s:%s", r.repo, p->tag);
    snprintf(p->source, sizeof(p->source), "hf.co/%s:%s", r.repo, p->tag);
    if (!ms_part_ok(p->tag, strlen(p->tag))) {
        snprintf(err, errlen, "%s: the quantization '%s' is not a name nightshift can keep", r.repo, p->tag);
        rc = NS_ERR_UNSUPPORTED;
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        const struct hub_file *hf = &l.files[idx[i]];
        struct ms_pfile *f = &p->files[i];
        if (!ms_repo_path_ok(hf->path)) {
            snprintf(err, errlen, "%s: the file name '%s' cannot be kept safely", r.repo, hf->path);
            rc = NS_ERR_UNSUPPORTED;
            goto fail;
        }
        snprintf(f->path, sizeof(f->path), "%s", hf->path);
        snprintf(f->local, sizeof(f->local), "files/%s/%s", r.repo, hf->path);
        f->size = hf->size;
        snprintf(f->sha256, sizeof(f->sha256), "%s", hf->sha256);
        if (hub_file_url(&p->conf, r.repo, hf->path, f->url, sizeof(f->url))) {
            snprintf(err, errlen, "%s: the URL of '%s' is too long", r.repo, hf->path);
            rc = NS_ERR_UNSUPPORTED;
            goto fail;
        }
        p->total += hf->size;
    }
    p->n_files = n;
    hub_listing_release(&l);
    *out = p;
    return NS_OK;
fail:
    hub_listing_release(&l);
    free(p);
    return rc;
}

static int ms_emit(struct modelstore_pull *p, enum modelstore_phase ph, const struct ms_pfile *f, uint64_t done,
                   uint64_t total, bool skipped)
{
    if (!p->fn)
        return 0;
    struct modelstore_event ev = {.phase = ph,
                                  .file = f ? f->path : "",
                                  .digest = f ? f->sha256 : "",
                                  .completed = done,
                                  .total = total,
                                  .index = p->index,
                                  .count = p->n_files,
                                  .skipped = skipped};
    return p->fn(p->ud, &ev);
}

static int ms_on_progress(void *ud, uint64_t completed, uint64_t total)
{
    struct modelstore_pull *p = ud;
    double now = clock_now();
    /* ten a second, the end once (curl reports it more than once), and once a second while
     * nothing comes: the caller's chance to stop a stalled download, and a line that keeps
     * an HTTP client's connection alive */
    bool end = completed == total && p->last_done != total;
    if (!end && (now - p->last < 0.1 || (completed == p->last_done && now - p->last < 1.0)))
        return 0;
    p->last = now;
    p->last_done = completed;
    return ms_emit(p, MODELSTORE_DOWNLOAD, &p->files[p->index], completed, total, false);
}

static void ms_now(char *out, size_t n, int64_t *unix_out)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
    *unix_out = (int64_t)t;
}

static int ms_write_manifest(struct modelstore_pull *p, struct modelstore_model *out, char *err, size_t errlen)
{
    char mpath[MS_PATH], when[32];
    int64_t unix_t;
    ms_now(when, sizeof(when), &unix_t);
    if (p->repo[0])
        ms_fmt(mpath, sizeof(mpath), "%s/manifests/%s/%s.json", p->dir, p->repo, p->tag);
    else
        ms_fmt(mpath, sizeof(mpath), "%s/manifests/%s/%s.json", p->dir, MS_URL_DIR, p->name);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", p->name);
    cJSON_AddStringToObject(o, "source", p->source);
    if (p->repo[0]) {
        cJSON_AddStringToObject(o, "repo", p->repo);
        cJSON_AddStringToObject(o, "quant", p->tag);
    }
    cJSON *arr = cJSON_AddArrayToObject(o, "files");
    uint64_t total = 0;
    for (int i = 0; i < p->n_files; i++) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "path", p->files[i].path);
        cJSON_AddStringToObject(f, "local", p->files[i].local);
        cJSON_AddNumberToObject(f, "size", (double)p->files[i].size);
        cJSON_AddStringToObject(f, "sha256", p->files[i].sha256);
        cJSON_AddItemToArray(arr, f);
        total += p->files[i].size;
    }
    cJSON_AddNumberToObject(o, "size", (double)total);
    cJSON_AddStringToObject(o, "pulled_at", when);
    cJSON_AddNumberToObject(o, "pulled_unix", (double)unix_t);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    int rc = NS_OK;
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return NS_ERR_NOMEM;
    }
    if (ms_mkdirs_for(mpath) || durable_write_file(mpath, text, strlen(text))) {
        snprintf(err, errlen, "cannot write the manifest '%s': %s", mpath, strerror(errno));
        rc = NS_ERR_IO;
    }
    free(text);
    if (!rc && out)
        rc = ms_manifest_read(p->dir, mpath, out, NULL) ? NS_ERR_IO : NS_OK;
    return rc;
}

/* one file: there already, or fetched into .part, checked and renamed */
static int ms_pull_file(struct modelstore_pull *p, struct ms_pfile *f, char *err, size_t errlen)
{
    char final[MS_PATH], part[MS_PATH + 8], got[65];
    ms_fmt(final, sizeof(final), "%s/%s", p->dir, f->local);
    snprintf(part, sizeof(part), "%s.part", final);
    struct stat sb;
    if (stat(final, &sb) == 0 && S_ISREG(sb.st_mode) && (!f->size || (uint64_t)sb.st_size == f->size)) {
        /* there from an earlier pull: kept when its digest is still the source's */
        if (!f->sha256[0] || (sha256_file_hex(final, got) == NS_OK && strcmp(got, f->sha256) == 0)) {
            if (!f->size)
                f->size = (uint64_t)sb.st_size;
            if (!f->sha256[0] && sha256_file_hex(final, got) == NS_OK)
                snprintf(f->sha256, sizeof(f->sha256), "%s", got);
            return ms_emit(p, MODELSTORE_DOWNLOAD, f, f->size, f->size, true) ? NS_ERR_CANCELLED : NS_OK;
        }
    }
    if (ms_mkdirs_for(final)) {
        snprintf(err, errlen, "cannot create the directory of '%s': %s", final, strerror(errno));
        return NS_ERR_IO;
    }
    p->last = 0;
    p->last_done = UINT64_MAX;
    int rc = hub_fetch(&p->conf, f->url, part, f->size, ms_on_progress, p, err, errlen);
    if (rc)
        return rc;
    if (ms_emit(p, MODELSTORE_VERIFY, f, f->size, f->size, false))
        return NS_ERR_CANCELLED;
    if (sha256_file_hex(part, got)) {
        snprintf(err, errlen, "cannot read '%s': %s", part, strerror(errno));
        return NS_ERR_IO;
    }
    if (f->sha256[0] && strcmp(got, f->sha256) != 0) {
        unlink(part);
        snprintf(err, errlen,
                 "%s: SHA-256 mismatch (the source says %s, the download is %s): the file was deleted; pull again", f->path,
                 f->sha256, got);
        return NS_ERR_UPSTREAM;
    }
    snprintf(f->sha256, sizeof(f->sha256), "%s", got);
    if (stat(part, &sb) == 0)
        f->size = (uint64_t)sb.st_size;
    if (rename(part, final) != 0 || durable_sync_dir(final) != 0) {
        snprintf(err, errlen, "cannot rename '%s': %s", part, strerror(errno));
        return NS_ERR_IO;
    }
    return NS_OK;
}

int modelstore_pull_run(struct modelstore_pull *p, modelstore_event_fn fn, void *ud, struct modelstore_model *out,
                        char *err, size_t errlen)
{
    p->fn = fn;
    p->ud = ud;
    if (errlen)
        err[0] = '\0';
    int rc = NS_OK;
    for (p->index = 0; p->index < p->n_files && !rc; p->index++)
        rc = ms_pull_file(p, &p->files[p->index], err, errlen);
    if (rc) {
        if (rc == NS_ERR_CANCELLED && !err[0])
            snprintf(err, errlen, "the pull was stopped (a pull of the same model resumes it)");
        return rc;
    }
    p->index = p->n_files - 1;
    p->total = 0;
    for (int i = 0; i < p->n_files; i++)
        p->total += p->files[i].size;
    if (ms_emit(p, MODELSTORE_WRITE, NULL, p->total, p->total, false))
        return NS_ERR_CANCELLED;
    rc = ms_write_manifest(p, out, err, errlen);
    if (!rc)
        ms_emit(p, MODELSTORE_DONE, NULL, p->total, p->total, false);
    return rc;
}
