/*
 * hub.c — see hub.h: the Hub's listing, quantization tags, resumable downloads.
 */
#include "hub.h"
#include "upstream.h"

#include "../util/buf.h"
#include "../util/status.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include <ctype.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define HUB_LISTING_MAX (64u << 20) /* a listing's JSON: a repo of ~100k files */
#define HUB_ERRBODY_MAX 4096        /* the start of an error answer, for the message */
#define HUB_MAX_FILES 100000
#define HUB_MAX_PAGES 1000          /* of a listing: the Hub sends 1,000 files a page */
#define HUB_URL_MAX 8192            /* a listing page's URL (its cursor) */

/* the token `hf auth login` saved: $HF_TOKEN_PATH, else $HF_HOME/token, else
 * $XDG_CACHE_HOME/huggingface/token or ~/.cache/huggingface/token; read once */
static char hub_saved_token[512];
static pthread_once_t hub_token_once = PTHREAD_ONCE_INIT;

static void hub_read_saved_token(void)
{
    char path[4096];
    const char *p = getenv("HF_TOKEN_PATH"), *home = getenv("HF_HOME"), *xdg = getenv("XDG_CACHE_HOME");
    if (p && *p)
        snprintf(path, sizeof(path), "%s", p);
    else if (home && *home)
        snprintf(path, sizeof(path), "%s/token", home);
    else if (xdg && *xdg)
        snprintf(path, sizeof(path), "%s/huggingface/token", xdg);
    else if ((home = getenv("HOME")) && *home)
        snprintf(path, sizeof(path), "%s/.cache/huggingface/token", home);
    else
        return;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (!fgets(hub_saved_token, sizeof(hub_saved_token), f))
        hub_saved_token[0] = '\0';
    fclose(f);
    hub_saved_token[strcspn(hub_saved_token, " \t\r\n")] = '\0';
}

struct hub_conf hub_default_conf(void)
{
    struct hub_conf c = {.endpoint = getenv("HF_ENDPOINT"), .token = getenv("HF_TOKEN")};
    if (!c.endpoint || !*c.endpoint)
        c.endpoint = "https://huggingface.co";
    if (!c.token) {
        /* HF_TOKEN unset (not set empty, which means none): the saved login, as the Hub's tools */
        pthread_once(&hub_token_once, hub_read_saved_token);
        c.token = hub_saved_token;
    }
    if (!*c.token)
        c.token = NULL;
    return c;
}

/* the endpoint without trailing slashes, into out */
static void hub_base(const struct hub_conf *c, char *out, size_t n)
{
    snprintf(out, n, "%s", c->endpoint);
    size_t l = strlen(out);
    while (l > 0 && out[l - 1] == '/')
        out[--l] = '\0';
}

void hub_listing_release(struct hub_listing *l)
{
    free(l->files);
    l->files = NULL;
    l->n = 0;
}

/* ---- quantization tags --------------------------------------------------------------- */

/* Q4_K_M, IQ3_XS, Q8_0, TQ1_0, F16, F32, BF16, MXFP4...: the shapes of llama.cpp's types */
static bool hub_looks_like_tag(const char *s, size_t n)
{
    if (n == 0 || n >= 32)
        return false;
    size_t i = 0;
    if (n >= 3 && (strncasecmp(s, "F16", 3) == 0 || strncasecmp(s, "F32", 3) == 0))
        return n == 3;
    if (n == 4 && strncasecmp(s, "BF16", 4) == 0)
        return true;
    if (n >= 5 && strncasecmp(s, "MXFP4", 5) == 0)
        return true;
    if (toupper((unsigned char)s[0]) == 'I' || toupper((unsigned char)s[0]) == 'T')
        i = 1;
    if (i >= n || toupper((unsigned char)s[i]) != 'Q' || i + 1 >= n || !isdigit((unsigned char)s[i + 1]))
        return false;
    for (; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_')
            return false;
    return true;
}

/* "-00001-of-00003" at the end of a stem: its length, else 0 */
static size_t hub_split_suffix(const char *stem, size_t n, int *no, int *count)
{
    /* -NNNNN-of-NNNNN is 15 characters */
    if (n < 15)
        return 0;
    const char *s = stem + n - 15;
    if (s[0] != '-' || strncmp(s + 6, "-of-", 4) != 0)
        return 0;
    for (int i = 1; i < 15; i++)
        if (i < 6 || i >= 10) {
            if (!isdigit((unsigned char)s[i]))
                return 0;
        }
    *no = *count = 0;
    for (int i = 1; i < 6; i++)
        *no = *no * 10 + (s[i] - '0');
    for (int i = 10; i < 15; i++)
        *count = *count * 10 + (s[i] - '0');
    return 15;
}

bool hub_file_tag(const char *path, char *out, size_t n)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (len <= 5 || strcasecmp(base + len - 5, ".gguf") != 0)
        return false;
    if (strncasecmp(base, "mmproj", 6) == 0 || strcasestr(base, "imatrix"))
        return false;
    len -= 5;
    int no, count;
    len -= hub_split_suffix(base, len, &no, &count);
    /* the last part after '-' or '.' when it is a tag, else the whole stem */
    size_t start = len;
    while (start > 0 && base[start - 1] != '-' && base[start - 1] != '.')
        start--;
    if (hub_looks_like_tag(base + start, len - start))
        snprintf(out, n, "%.*s", (int)(len - start), base + start);
    else
        snprintf(out, n, "%.*s", (int)len, base);
    return true;
}

/* a file's split number (1 for a single file) */
static int hub_split_no(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    int no = 1, count = 1;
    if (len > 5)
        hub_split_suffix(base, len - 5, &no, &count);
    return no;
}

int hub_select(const struct hub_listing *l, const char *tag, int *idx, int max, char *tag_out, size_t tag_n,
               char *err, size_t errlen)
{
    /* the tags there are, in listing order, each once */
    char tags[1024] = "";
    int n_tags = 0;
    const char *only = NULL;
    bool has_default = false;
    for (int i = 0; i < l->n; i++) {
        const char *t = l->files[i].tag;
        if (!*t)
            continue;
        bool seen = false;
        for (int k = 0; k < i && !seen; k++)
            seen = strcasecmp(l->files[k].tag, t) == 0;
        if (seen)
            continue;
        size_t tl = strlen(tags);
        snprintf(tags + tl, sizeof(tags) - tl, "%s%s", n_tags ? ", " : "", t);
        n_tags++;
        only = t;
        has_default = has_default || strcasecmp(t, "Q4_K_M") == 0;
    }
    if (n_tags == 0) {
        snprintf(err, errlen, "the repository has no GGUF model file");
        return 0;
    }
    const char *want = tag && *tag ? tag : has_default ? "Q4_K_M" : n_tags == 1 ? only : NULL;
    if (!want) {
        snprintf(err, errlen, "the repository has %d quantizations; name one as ORG/REPO:QUANT (it has: %s)", n_tags,
                 tags);
        return 0;
    }
    int n = 0;
    for (int i = 0; i < l->n && n < max; i++)
        if (l->files[i].tag[0] && strcasecmp(l->files[i].tag, want) == 0)
            idx[n++] = i;
    if (n == 0) {
        snprintf(err, errlen, "no quantization '%s' in the repository (it has: %s)", want, tags);
        return 0;
    }
    /* split order: -00001-of-... first (insertion sort; a handful of files) */
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && hub_split_no(l->files[idx[k]].path) < hub_split_no(l->files[idx[k - 1]].path); k--) {
            int t = idx[k];
            idx[k] = idx[k - 1];
            idx[k - 1] = t;
        }
    snprintf(tag_out, tag_n, "%s", l->files[idx[0]].tag);
    return n;
}

/* ---- listing ------------------------------------------------------------------------ */

/* a byte count of the listing: a number from 0 to 2^62, else 0 (unknown) */
static uint64_t hub_size(const cJSON *v)
{
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 4.6e18 ? (uint64_t)v->valuedouble : 0;
}

static int hub_add_file(struct hub_listing *out, const cJSON *f, const char *path_key)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(f, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "file") != 0)
        return NS_OK; /* a directory */
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(f, path_key);
    if (!cJSON_IsString(p) || strlen(p->valuestring) >= sizeof(out->files[0].path))
        return NS_OK;
    struct hub_file *hf = &out->files[out->n];
    memset(hf, 0, sizeof(*hf));
    snprintf(hf->path, sizeof(hf->path), "%s", p->valuestring);
    hf->size = hub_size(cJSON_GetObjectItemCaseSensitive(f, "size"));
    const cJSON *lfs = cJSON_GetObjectItemCaseSensitive(f, "lfs");
    if (cJSON_IsObject(lfs)) {
        uint64_t ls = hub_size(cJSON_GetObjectItemCaseSensitive(lfs, "size"));
        if (ls)
            hf->size = ls;
        const cJSON *sha = cJSON_GetObjectItemCaseSensitive(lfs, "sha256");
        if (!cJSON_IsString(sha))
            sha = cJSON_GetObjectItemCaseSensitive(lfs, "oid");
        if (cJSON_IsString(sha) && strlen(sha->valuestring) == 64)
            for (int i = 0; i <= 64; i++)
                hf->sha256[i] = (char)tolower((unsigned char)sha->valuestring[i]);
    }
    if (!hub_file_tag(hf->path, hf->tag, sizeof(hf->tag)))
        hf->tag[0] = '\0';
    out->n++;
    return NS_OK;
}

int hub_listing_parse(const char *json, size_t len, struct hub_listing *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *arr = root;
    const char *path_key = "path";
    if (cJSON_IsObject(root)) {
        arr = cJSON_GetObjectItemCaseSensitive(root, "siblings");
        path_key = "rfilename";
    }
    int rc = NS_OK;
    if (!cJSON_IsArray(arr)) {
        snprintf(err, errlen, "the Hub's file listing is not what was expected (a JSON array of files)");
        rc = NS_ERR_UPSTREAM;
        goto out;
    }
    int n = cJSON_GetArraySize(arr);
    if (n > HUB_MAX_FILES)
        n = HUB_MAX_FILES;
    out->files = calloc((size_t)n + 1, sizeof(*out->files));
    if (!out->files) {
        snprintf(err, errlen, "out of memory");
        rc = NS_ERR_NOMEM;
        goto out;
    }
    const cJSON *f;
    int i = 0;
    cJSON_ArrayForEach(f, arr)
    {
        if (i++ >= n)
            break;
        hub_add_file(out, f, path_key);
    }
out:
    cJSON_Delete(root);
    return rc;
}

/* ---- HTTP ------------------------------------------------------------------------- */

struct hub_xfer {
    CURL *e;
    struct buf body;      /* a listing, or the start of an error answer */
    int fd;               /* the .part file of a download; -1 for a listing */
    uint64_t offset;      /* bytes the .part held when this request began */
    uint64_t got;         /* bytes written in this request */
    bool checked;         /* the status of the answer has been looked at */
    bool failed;          /* an HTTP error answer: its body goes to `body`, not the file */
    bool io_error;
    int io_errno;
    hub_progress_fn progress;
    void *ud;
    uint64_t total;
    bool stopped;         /* the progress callback asked to stop */
};

static size_t hub_on_data(char *p, size_t sz, size_t nm, void *ud)
{
    struct hub_xfer *x = ud;
    size_t n = sz * nm;
    if (x->fd < 0) {
        return buf_append(&x->body, p, n) == NS_OK ? n : 0;
    }
    if (!x->checked) {
        x->checked = true;
        long code = 0;
        curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 400) {
            x->failed = true;
        } else if (code == 200 && x->offset > 0) {
            /* the server sent the whole file, not the rest: start over */
            if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) < 0) {
                x->io_error = true;
                x->io_errno = errno;
                return 0;
            }
            x->offset = 0;
        }
    }
    if (x->failed) {
        if (x->body.len + n <= HUB_ERRBODY_MAX)
            buf_append(&x->body, p, n);
        return n;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(x->fd, p + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            x->io_error = true;
            x->io_errno = w < 0 ? errno : ENOSPC;
            return 0;
        }
        done += (size_t)w;
    }
    x->got += n;
    return n;
}

static int hub_on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    struct hub_xfer *x = ud;
    if (!x->progress || x->failed)
        return 0;
    if (x->progress(x->ud, x->offset + x->got, x->total)) {
        x->stopped = true;
        return 1;
    }
    return 0;
}

/* the message for an HTTP error answer: its JSON "error" when it has one */
static void hub_http_error(const struct hub_conf *c, long code, const struct buf *body, const char *what, char *err,
                           size_t errlen, int *rc)
{
    char detail[300] = "";
    cJSON *o = body->p ? cJSON_ParseWithLength(body->p, body->len) : NULL;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "error");
    if (cJSON_IsString(m))
        snprintf(detail, sizeof(detail), ": %s", m->valuestring);
    cJSON_Delete(o);
    if (code == 401 || code == 403) {
        *rc = NS_ERR_AUTH;
        if (c->token)
            snprintf(err, errlen,
                     "%s: HTTP %ld, the Hub refused HF_TOKEN%s (is it valid, and have you accepted the repository's "
                     "terms on its page?)",
                     what, code, detail);
        else
            snprintf(err, errlen,
                     "%s: HTTP %ld, the repository is gated or private%s: accept its terms on its Hub page, then set "
                     "HF_TOKEN to an access token (https://huggingface.co/settings/tokens)",
                     what, code, detail);
    } else if (code == 404) {
        *rc = NS_ERR_MODEL_NOT_FOUND;
        snprintf(err, errlen, "%s: not found (HTTP 404)%s", what, detail);
    } else {
        *rc = NS_ERR_UPSTREAM;
        snprintf(err, errlen, "%s: HTTP %ld%s", what, code, detail);
    }
}

static struct curl_slist *hub_headers(const struct hub_conf *c, const char *url)
{
    char base[2048];
    hub_base(c, base, sizeof(base));
    size_t bl = strlen(base);
    struct curl_slist *h = curl_slist_append(NULL, "User-Agent: nightshift");
    if (c->token && strncmp(url, base, bl) == 0 && (url[bl] == '/' || url[bl] == '\0')) {
        char auth[4200];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
        h = curl_slist_append(h, auth);
    }
    return h;
}

static void hub_setup(CURL *e, const char *url, struct curl_slist *h, struct hub_xfer *x, char *cerr)
{
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
    /* a connection that stalls for a minute ends; the next pull resumes */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, hub_on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
}

int hub_file_url(const struct hub_conf *c, const char *repo, const char *path, char *out, size_t n)
{
    char base[2048];
    hub_base(c, base, sizeof(base));
    struct buf b;
    buf_init(&b, n);
    int rc = buf_appendf(&b, "%s/%s/resolve/main", base, repo);
    /* each part of the path escaped, the slashes kept */
    const char *s = path;
    while (!rc && *s) {
        const char *slash = strchr(s, '/');
        size_t len = slash ? (size_t)(slash - s) : strlen(s);
        char *esc = curl_easy_escape(NULL, s, (int)len);
        rc = esc ? buf_appendf(&b, "/%s", esc) : NS_ERR_NOMEM;
        curl_free(esc);
        s += len + (slash ? 1 : 0);
    }
    if (!rc)
        snprintf(out, n, "%s", b.p);
    buf_release(&b);
    return rc ? NS_ERR_INVALID : NS_OK;
}

/* a listing page's "Link: <URL>; rel=\"next\"" header (the Hub pages long listings) */
static size_t hub_on_header(char *p, size_t sz, size_t nm, void *ud)
{
    char *next = ud; /* HUB_URL_MAX bytes */
    size_t n = sz * nm;
    if (n >= 5 && strncmp(p, "HTTP/", 5) == 0)
        next[0] = '\0'; /* a new answer (after a redirect): its own links */
    if (n > 5 && strncasecmp(p, "link:", 5) == 0) {
        char line[HUB_URL_MAX + 64];
        snprintf(line, sizeof(line), "%.*s", (int)(n < sizeof(line) - 1 ? n : sizeof(line) - 1), p);
        char *lt = strchr(line, '<'), *gt = lt ? strchr(lt, '>') : NULL;
        if (lt && gt && strstr(gt, "rel=\"next\"") && (size_t)(gt - lt - 1) < HUB_URL_MAX) {
            *gt = '\0';
            snprintf(next, HUB_URL_MAX, "%s", lt + 1);
        }
    }
    return n;
}

/* one page of a listing from url into *out; next gets the next page's URL or "" */
static int hub_list_page(const struct hub_conf *c, const char *url, const char *what, struct hub_listing *out,
                         char *next, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    char cerr[CURL_ERROR_SIZE] = "";
    struct hub_xfer x = {.fd = -1};
    buf_init(&x.body, HUB_LISTING_MAX);
    next[0] = '\0';
    upstream_global_init();
    CURL *e = curl_easy_init();
    struct curl_slist *h = hub_headers(c, url);
    int rc = NS_OK;
    if (!e || !h) {
        snprintf(err, errlen, "out of memory");
        rc = NS_ERR_NOMEM;
        goto out;
    }
    x.e = e;
    hub_setup(e, url, h, &x, cerr);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 120000L);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, hub_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, next);
    CURLcode cc = curl_easy_perform(e);
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "cannot list %s: %s", what, cerr[0] ? cerr : curl_easy_strerror(cc));
        rc = NS_ERR_UPSTREAM;
    } else if (code != 200) {
        hub_http_error(c, code, &x.body, what, err, errlen, &rc);
    } else {
        rc = hub_listing_parse(x.body.p ? x.body.p : "", x.body.len, out, err, errlen);
    }
out:
    curl_slist_free_all(h);
    if (e)
        curl_easy_cleanup(e);
    buf_release(&x.body);
    if (rc)
        next[0] = '\0';
    return rc;
}

int hub_list(const struct hub_conf *c, const char *repo, struct hub_listing *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    char base[2048], what[2400];
    static_assert(HUB_URL_MAX >= 2600, "a listing URL fits");
    char *url = malloc(HUB_URL_MAX), *next = malloc(HUB_URL_MAX);
    int rc = NS_OK;
    if (!url || !next) {
        snprintf(err, errlen, "out of memory");
        rc = NS_ERR_NOMEM;
        goto out;
    }
    hub_base(c, base, sizeof(base));
    snprintf(url, HUB_URL_MAX, "%s/api/models/%s/tree/main?recursive=true", base, repo);
    snprintf(what, sizeof(what), "repository '%s' on %s", repo, base);
    for (int page = 0; !rc && url[0] && page < HUB_MAX_PAGES; page++) {
        struct hub_listing part;
        rc = hub_list_page(c, url, what, &part, next, err, errlen);
        if (rc)
            break;
        /* append the page */
        if (part.n > 0 && out->n + part.n <= HUB_MAX_FILES) {
            struct hub_file *f = realloc(out->files, (size_t)(out->n + part.n) * sizeof(*f));
            if (!f) {
                snprintf(err, errlen, "out of memory");
                rc = NS_ERR_NOMEM;
            } else {
                memcpy(f + out->n, part.files, (size_t)part.n * sizeof(*f));
                out->files = f;
                out->n += part.n;
            }
        }
        hub_listing_release(&part);
        memcpy(url, next, HUB_URL_MAX);
    }
out:
    if (rc)
        hub_listing_release(out);
    free(url);
    free(next);
    return rc;
}

int hub_fetch(const struct hub_conf *c, const char *url, const char *part_path, uint64_t size,
              hub_progress_fn progress, void *ud, char *err, size_t errlen)
{
    char cerr[CURL_ERROR_SIZE] = "";
    struct hub_xfer x = {.fd = -1, .progress = progress, .ud = ud, .total = size};
    buf_init(&x.body, HUB_ERRBODY_MAX + CURL_MAX_WRITE_SIZE);
    CURL *e = NULL;
    struct curl_slist *h = NULL;
    int rc = NS_OK;
    int fd = open(part_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create '%s': %s", part_path, strerror(errno));
        return NS_ERR_IO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "'%s' is being downloaded by another pull; wait for it to end", part_path);
        close(fd);
        return NS_ERR_CONFLICT;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "cannot read '%s': %s", part_path, strerror(errno));
        rc = NS_ERR_IO;
        goto out;
    }
    x.offset = (uint64_t)sb.st_size;
    if (size && x.offset > size) {
        /* more than the file has: not ours to keep */
        if (ftruncate(fd, 0) != 0) {
            snprintf(err, errlen, "cannot truncate '%s': %s", part_path, strerror(errno));
            rc = NS_ERR_IO;
            goto out;
        }
        x.offset = 0;
    }
    if (lseek(fd, (off_t)x.offset, SEEK_SET) < 0) {
        snprintf(err, errlen, "cannot seek in '%s': %s", part_path, strerror(errno));
        rc = NS_ERR_IO;
        goto out;
    }
    if (size && x.offset == size)
        goto out; /* complete already (an earlier pull stopped at the check) */
    x.fd = fd;
    upstream_global_init();
    e = curl_easy_init();
    h = hub_headers(c, url);
    if (!e || !h) {
        snprintf(err, errlen, "out of memory");
        rc = NS_ERR_NOMEM;
        goto out;
    }
    x.e = e;
    hub_setup(e, url, h, &x, cerr);
    /* "Range: bytes=N-" (CURLOPT_RANGE, not RESUME_FROM: that fails on a 200, where this
     * restarts the file) */
    char range[48];
    snprintf(range, sizeof(range), "%llu-", (unsigned long long)x.offset);
    if (x.offset > 0)
        curl_easy_setopt(e, CURLOPT_RANGE, range);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, hub_on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, &x);
    CURLcode cc = curl_easy_perform(e);
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    uint64_t have = x.offset + x.got;
    if (x.stopped) {
        snprintf(err, errlen, "download stopped after %llu bytes (a pull of the same model resumes it)",
                 (unsigned long long)have);
        rc = NS_ERR_CANCELLED;
    } else if (x.io_error) {
        snprintf(err, errlen, "cannot write '%s': %s", part_path, strerror(x.io_errno));
        rc = NS_ERR_IO;
    } else if (code == 416 && x.offset > 0) {
        /* the range is past the end: the .part is not a prefix of this file; start over */
        if (ftruncate(fd, 0) != 0) {
            snprintf(err, errlen, "cannot truncate '%s': %s", part_path, strerror(errno));
            rc = NS_ERR_IO;
        } else {
            snprintf(err, errlen, "the server refused to resume '%s' (HTTP 416): pull again to start it over", url);
            rc = NS_ERR_UPSTREAM;
        }
    } else if (code >= 400) {
        hub_http_error(c, code, &x.body, url, err, errlen, &rc);
    } else if (cc != CURLE_OK) {
        snprintf(err, errlen, "download of %s cut short after %llu of %llu bytes (%s): pull again to resume", url,
                 (unsigned long long)have, (unsigned long long)size, cerr[0] ? cerr : curl_easy_strerror(cc));
        rc = NS_ERR_UPSTREAM;
    } else if (size && have != size) {
        snprintf(err, errlen, "download of %s ended at %llu of %llu bytes: pull again to resume", url,
                 (unsigned long long)have, (unsigned long long)size);
        rc = NS_ERR_UPSTREAM;
    } else if (fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write '%s': %s", part_path, strerror(errno));
        rc = NS_ERR_IO;
    }
    if (!rc && progress)
        progress(ud, have, size ? size : have);
out:
    curl_slist_free_all(h);
    if (e)
        curl_easy_cleanup(e);
    buf_release(&x.body);
    close(fd); /* drops the lock */
    return rc;
}
