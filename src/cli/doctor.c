/*
 * doctor.c — `nightshift doctor`: checks what `nightshift serve` needs, before it is
 * started or while it runs, and says what to fix.
 *
 * One line per check on stdout: "ok", "warn" or "FAIL", what was found, and for anything
 * not ok what to do. Nothing is changed: the store is only probed (store_ops.admin.probe opens
 * it read-only and never migrates), the data dir is not created. Exit status 1 when a
 * check failed, so `nightshift doctor && systemctl start nightshift` reads naturally.
 *
 * Checks: the data dir (exists or can be created, writable, whether a server holds it),
 * the store's schema version against this binary's, each model file (a GGUF header, its
 * size against the machine's memory), the CPU against the instruction sets the linked
 * llama.cpp was compiled for (a mismatch dies with SIGILL at the first decode), free disk
 * space on the data dir's file system, the llama.cpp backends and devices (each with its free
 * and total memory, and how many layers of each model a GPU would take, measured without
 * allocating), and with --config each upstream backend (GET its /models with its key:
 * reachable, key refused, or down).
 */
#include "cli.h"
#include "datadir.h"
#include "pull.h"

#include "config.h"

#include "../backend/upstream.h"
#include "../engine/engine.h"
#include "../store/store.h"
#include "../util/status.h"

#include <curl/curl.h>

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define DOCTOR_MAX_MODELS 8
/* below this much free space on the data dir's file system: a warning */
#define DOCTOR_LOW_DISK (1ull << 30)

enum doctor_level { DOCTOR_OK, DOCTOR_WARN, DOCTOR_FAIL };

struct doctor {
    int warns, fails;
};

static void doctor_say(struct doctor *d, enum doctor_level lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void doctor_say(struct doctor *d, enum doctor_level lv, const char *fmt, ...)
{
    static const char *const tag[] = {"ok  ", "warn", "FAIL"};
    va_list ap;
    d->warns += lv == DOCTOR_WARN;
    d->fails += lv == DOCTOR_FAIL;
    printf("%s  ", tag[lv]);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

static void doctor_usage(FILE *f)
{
    fputs("usage: nightshift doctor [--config FILE] [--data-dir DIR] [--db URI] [--model [NAME=]FILE ...]\n"
          "\n"
          "Checks what 'nightshift serve' needs and says what to fix: the data dir, the\n"
          "store's schema version, the model files, the CPU, the llama.cpp backends and devices\n"
          "(memory, layers a GPU would take), free disk space, and the upstream\n"
          "backends of a --config file. One line per check: ok, warn or FAIL, what it found,\n"
          "and what to do. Changes nothing.\n"
          "\n"
          "      --config FILE        the server's config: its data dir, db, models and backends\n"
          "  -d, --data-dir DIR       the server's data dir (default ./nightshift-data)\n"
          "      --db URI             its store (default: sqlite:DATA_DIR/nightshift.db)\n"
          "  -m, --model [NAME=]FILE  a model file to check (repeatable; default: NIGHTSHIFT_MODEL),\n"
          "                           or a model store name (`nightshift pull`)\n"
          "  -h, --help               this text\n"
          "\n"
          "Exit status: 0 nothing failed (warnings may remain), 1 a check failed, 2 bad usage.\n",
          f);
}

/* ---- data dir ------------------------------------------------------------------------ */

/* the nearest existing directory at or above dir (for free space when dir is not there yet) */
static void doctor_existing_dir(const char *dir, char *out, size_t n)
{
    struct stat sb;
    snprintf(out, n, "%s", dir);
    while (stat(out, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s", out);
        snprintf(out, n, "%s", dirname(tmp));
        if (strcmp(out, "/") == 0 || strcmp(out, ".") == 0)
            return;
    }
}

static void doctor_check_data_dir(struct doctor *d, const char *dir)
{
    struct stat sb;
    char sub[4096];
    if (stat(dir, &sb) != 0) {
        char parent[4096];
        if (errno != ENOENT) {
            doctor_say(d, DOCTOR_FAIL, "data dir '%s': %s: fix its path or permissions", dir, strerror(errno));
            return;
        }
        doctor_existing_dir(dir, parent, sizeof(parent));
        if (access(parent, W_OK) == 0)
            doctor_say(d, DOCTOR_WARN, "data dir '%s' does not exist yet: 'nightshift serve' creates it", dir);
        else
            doctor_say(d, DOCTOR_FAIL,
                       "data dir '%s' does not exist and '%s' is not writable: create it for the user the server "
                       "runs as (install -d -o nightshift '%s')",
                       dir, parent, dir);
        return;
    }
    if (!S_ISDIR(sb.st_mode)) {
        doctor_say(d, DOCTOR_FAIL, "data dir '%s' is not a directory: give --data-dir a directory", dir);
        return;
    }
    snprintf(sub, sizeof(sub), "%s/files", dir);
    if (access(dir, W_OK) || (access(sub, F_OK) == 0 && access(sub, W_OK))) {
        doctor_say(d, DOCTOR_FAIL,
                   "data dir '%s' is not writable by uid %d: chown -R it to the user the server runs as", dir,
                   (int)geteuid());
        return;
    }
    pid_t holder = datadir_holder(dir);
    if (holder > 0)
        doctor_say(d, DOCTOR_OK, "data dir '%s': writable; a server is using it (pid %d)", dir, (int)holder);
    else if (holder < 0)
        doctor_say(d, DOCTOR_OK, "data dir '%s': writable; a server is using it", dir);
    else
        doctor_say(d, DOCTOR_OK, "data dir '%s': writable; no server is using it", dir);
}

static void doctor_check_disk(struct doctor *d, const char *dir)
{
    char at[4096];
    struct statvfs vs;
    doctor_existing_dir(dir, at, sizeof(at));
    if (statvfs(at, &vs)) {
        doctor_say(d, DOCTOR_WARN, "free disk space of '%s': cannot tell (%s)", at, strerror(errno));
        return;
    }
    unsigned long long avail = (unsigned long long)vs.f_bavail * vs.f_frsize;
    double gib = (double)avail / (double)(1ull << 30);
    if (avail < DOCTOR_LOW_DISK)
        doctor_say(d, DOCTOR_WARN,
                   "free disk space: %.0f MiB on the file system of '%s': batch input and result files and the "
                   "database need room; free some or move the data dir",
                   (double)avail / (1 << 20), at);
    else
        doctor_say(d, DOCTOR_OK, "free disk space: %.1f GiB on the file system of '%s'", gib, at);
}

/* ---- store --------------------------------------------------------------------------- */

static void doctor_check_store(struct doctor *d, const char *db, const char *dir)
{
    char err[512];
    const struct store_ops *ops = store_find(db);
    int have = 0, known = 0;
    if (!ops) {
        doctor_say(d, DOCTOR_FAIL, "store '%s': no such store in this build (it has: sqlite:PATH, postgres://...): fix --db", db);
        return;
    }
    if (!ops->admin.probe) {
        doctor_say(d, DOCTOR_WARN, "store '%s': this kind of store cannot be checked here", db);
        return;
    }
    if (ops->admin.probe(db, dir, &have, &known, err, sizeof(err))) {
        if (strcmp(ops->scheme, "sqlite") == 0)
            doctor_say(d, DOCTOR_FAIL, "store: %s: restore a backup (nightshift restore) or move it away", err);
        else
            doctor_say(d, DOCTOR_FAIL, "store: %s: check the --db URI and that the database server is up", err);
        return;
    }
    if (have == 0)
        doctor_say(d, DOCTOR_OK, "store: no database yet; 'nightshift serve' creates it (schema version %d)", known);
    else if (have < known)
        doctor_say(d, DOCTOR_WARN,
                   "store: schema version %d, older than this nightshift's %d: the next start migrates it, after "
                   "which older nightshift versions refuse it; back it up first (nightshift backup DIR)",
                   have, known);
    else if (have == known)
        doctor_say(d, DOCTOR_OK, "store: schema version %d (current)", have);
    else
        doctor_say(d, DOCTOR_FAIL,
                   "store: schema version %d is newer than this nightshift knows (%d): a newer nightshift wrote it; "
                   "run that one, or restore a backup taken before the upgrade",
                   have, known);
}

/* ---- models -------------------------------------------------------------------------- */

static void doctor_check_models(struct doctor *d, const char *const *models, int n)
{
    char err[512], name[256];
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double ram = pages > 0 && page > 0 ? (double)pages * (double)page : 0, total = 0;
    if (n == 0) {
        doctor_say(d, DOCTOR_OK, "models: none given (--model FILE checks one)");
        return;
    }
    for (int i = 0; i < n; i++) {
        const char *spec = models[i], *eq = strchr(spec, '=');
        const char *path = eq && eq != spec ? eq + 1 : spec;
        struct stat sb;
        if (engine_peek_name(path, name, sizeof(name), err, sizeof(err))) {
            doctor_say(d, DOCTOR_FAIL, "model: %s: give the path of a GGUF model file", err);
            continue;
        }
        stat(path, &sb);
        total += (double)sb.st_size;
        doctor_say(d, DOCTOR_OK, "model '%s': GGUF, general.name '%s', %.1f MiB", path, name,
                   (double)sb.st_size / (double)(1u << 20));
    }
    if (ram > 0 && total > 0.9 * ram)
        doctor_say(d, DOCTOR_WARN,
                   "models: %.1f GiB of weights on a machine with %.1f GiB of memory: they will be paged from disk "
                   "(slow); serve fewer or smaller models",
                   total / (double)(1ull << 30), ram / (double)(1ull << 30));
}

/* ---- CPU ----------------------------------------------------------------------------- */

struct doctor_cpu {
    bool x86;
    bool avx, avx2, avx512, amx;
};

/* the flags the kernel reports (it hides what the OS does not enable, e.g. AVX-512 state) */
static void doctor_read_cpu(struct doctor_cpu *c)
{
    char line[8192];
    memset(c, 0, sizeof(*c));
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "flags", 5) != 0)
            continue;
        c->x86 = true;
        for (char *save = NULL, *t = strtok_r(line, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save)) {
            c->avx |= strcmp(t, "avx") == 0;
            c->avx2 |= strcmp(t, "avx2") == 0;
            c->avx512 |= strcmp(t, "avx512f") == 0;
            c->amx |= strcmp(t, "amx_tile") == 0;
        }
        break;
    }
    fclose(f);
}

static void doctor_check_cpu(struct doctor *d)
{
    struct doctor_cpu c;
    struct engine_cpu_build b;
    doctor_read_cpu(&c);
    engine_cpu_build(&b);
    if (!c.x86) {
        doctor_say(d, DOCTOR_OK, "cpu: not an x86 CPU (or no /proc/cpuinfo): instruction sets not checked");
        return;
    }
    const struct {
        const char *name;
        bool built, have;
    } sets[] = {{"AVX", b.avx, c.avx}, {"AVX2", b.avx2, c.avx2}, {"AVX-512", b.avx512, c.avx512}};
    bool ok = true;
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
        if (sets[i].built && !sets[i].have) {
            doctor_say(d, DOCTOR_FAIL,
                       "cpu: this nightshift's llama.cpp was built to use %s, which this CPU lacks: it would die "
                       "with an illegal instruction; build nightshift on this machine (make build)",
                       sets[i].name);
            ok = false;
        }
    if (ok && !c.avx2)
        doctor_say(d, DOCTOR_WARN, "cpu: no AVX2: inference runs several times slower than on a CPU with it");
    else if (ok)
        doctor_say(d, DOCTOR_OK, "cpu: AVX2 yes, AVX-512 %s; llama.cpp built for%s%s%s", c.avx512 ? "yes" : "no",
                   b.avx ? " AVX" : "", b.avx2 ? " AVX2" : "", b.avx512 ? " AVX-512" : "");
    if (b.amx)
        doctor_say(d, DOCTOR_WARN,
                   "cpu: llama.cpp was built with AMX kernels, which crashed on Sapphire Rapids: rebuild with "
                   "scripts/bootstrap.sh (it leaves them out)");
    else if (c.amx)
        doctor_say(d, DOCTOR_OK,
                   "cpu: AMX present and deliberately unused: ggml's AMX kernels crashed on Sapphire Rapids, so "
                   "scripts/bootstrap.sh builds llama.cpp without them");
}

/* ---- devices (issue 30) ---------------------------------------------------------------- */

/* the llama.cpp build and its backends, every device with its memory, and for each model
 * file how many of its layers would go to a GPU (measured without allocating) */
static void doctor_check_devices(struct doctor *d, const char *const *models, int n)
{
    char note[512];
    if (engine_backends_check(note, sizeof(note)) != NS_OK) {
        doctor_say(d, DOCTOR_FAIL, "backend: %s", note);
        return;
    }
    doctor_say(d, DOCTOR_OK, "backend: llama.cpp %s, %s build", engine_llama_version(), engine_build_kind());
    if (note[0])
        doctor_say(d, DOCTOR_WARN, "backend: %s", note);
    struct engine_device dev[32];
    int nd = engine_devices_list(dev, 32), n_gpu = 0;
    for (int i = 0; i < nd && i < 32; i++) {
        n_gpu += strcmp(dev[i].type, "gpu") == 0 || strcmp(dev[i].type, "igpu") == 0;
        doctor_say(d, DOCTOR_OK, "device %s (%s, %s): %s, %.0f MiB free of %.0f MiB", dev[i].name, dev[i].type,
                   dev[i].backend, dev[i].desc, (double)dev[i].mem_free / 1048576.0,
                   (double)dev[i].mem_total / 1048576.0);
    }
    if (!n_gpu)
        doctor_say(d, DOCTOR_OK, "devices: no GPU: models run on the CPU%s",
                   strcmp(engine_build_kind(), "cpu") == 0
                       ? " (a GPU build: NIGHTSHIFT_GPU=cuda|vulkan scripts/bootstrap.sh; docs/OPERATIONS.md)"
                       : "");
    for (int i = 0; i < n && n_gpu; i++) {
        const char *spec = models[i], *eq = strchr(spec, '=');
        struct engine_params p = engine_default_params();
        p.model_path = eq && eq != spec ? eq + 1 : spec;
        p.n_priority = 4;
        struct engine_plan pl;
        char err[512];
        if (engine_plan_placement(&p, &pl, err, sizeof(err)) != NS_OK)
            continue; /* the model check above says what is wrong with the file */
        doctor_say(d, pl.fits ? DOCTOR_OK : DOCTOR_WARN,
                   "model '%s': %d/%d layers on the GPU, KV room for %d tokens with 1 GiB left free%s", p.model_path,
                   pl.n_layers_gpu, pl.n_layers, pl.n_ctx_fit,
                   pl.fits ? "" : ": it does not fit with that margin (--fit-target, --gpu-layers, --cache-type-k q8_0)");
    }
}

/* ---- backends ------------------------------------------------------------------------ */

static size_t doctor_discard(char *p, size_t sz, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return sz * n;
}

/* each upstream model of --config: GET {url}/models with its key, 5 s at most */
static void doctor_check_backends(struct doctor *d, const struct config *cfg)
{
    if (!cfg)
        return;
    upstream_global_init();
    for (int i = 0; i < cfg->n_models; i++) {
        const struct backend_conf *c = &cfg->models[i].conf;
        const struct backend_ops *ops = backend_find(c->kind);
        if (!ops || !ops->auth_header)
            continue; /* no upstream to ask */
        char *url = upstream_url_join(c->url, "/models");
        CURL *e = curl_easy_init();
        struct curl_slist *h = NULL;
        char hdr[1024], eb[CURL_ERROR_SIZE] = "";
        if (c->api_key) {
            snprintf(hdr, sizeof(hdr), ops->auth_header, c->api_key);
            h = curl_slist_append(h, hdr);
            memset(hdr, 0, sizeof(hdr));
        }
        if (ops->extra_header)
            h = curl_slist_append(h, ops->extra_header);
        if (!url || !e) {
            doctor_say(d, DOCTOR_FAIL, "backend '%s': out of memory", c->name);
        } else {
            curl_easy_setopt(e, CURLOPT_URL, url);
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
            curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, doctor_discard);
            curl_easy_setopt(e, CURLOPT_ERRORBUFFER, eb);
            curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
            CURLcode cc = curl_easy_perform(e);
            long code = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
            if (cc != CURLE_OK)
                doctor_say(d, DOCTOR_FAIL, "backend '%s' (%s): cannot reach %s: %s: check the url and the network",
                           c->name, c->kind, url, eb[0] ? eb : curl_easy_strerror(cc));
            else if (code == 401 || code == 403)
                doctor_say(d, DOCTOR_FAIL, "backend '%s' (%s): %s refused the key (HTTP %ld): check api_key_env",
                           c->name, c->kind, url, code);
            else if (code >= 200 && code < 300)
                doctor_say(d, DOCTOR_OK, "backend '%s' (%s): %s answers (HTTP %ld)", c->name, c->kind, url, code);
            else
                doctor_say(d, DOCTOR_WARN, "backend '%s' (%s): %s answered HTTP %ld: it is up, but check the url",
                           c->name, c->kind, url, code);
        }
        curl_slist_free_all(h);
        if (e)
            curl_easy_cleanup(e);
        free(url);
    }
}

int cli_doctor(int argc, char **argv)
{
    static const struct option lo[] = {{"data-dir", required_argument, 0, 'd'},
                                       {"db", required_argument, 0, 1000},
                                       {"config", required_argument, 0, 1001},
                                       {"model", required_argument, 0, 'm'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    const char *data_dir = NULL, *db = NULL, *config_path = NULL;
    const char *models[DOCTOR_MAX_MODELS];
    int n_models = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "d:m:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'd': data_dir = optarg; break;
        case 1000: db = optarg; break;
        case 1001: config_path = optarg; break;
        case 'm': {
            if (n_models == DOCTOR_MAX_MODELS)
                return cli_fail("at most %d models", DOCTOR_MAX_MODELS);
            /* a model store name is checked as its file (nothing is pulled) */
            static char store_paths[DOCTOR_MAX_MODELS][4400];
            const char *eq = strchr(optarg, '=');
            const char *scheme = strstr(optarg, "://");
            const char *ref = eq && eq != optarg && (!scheme || scheme > eq) ? eq + 1 : optarg;
            char sname[256];
            int prc = pull_model_resolve(ref, false, store_paths[n_models], sizeof(store_paths[0]), sname, sizeof(sname));
            if (prc)
                return prc;
            models[n_models] = sname[0] ? store_paths[n_models] : optarg;
            n_models++;
            break;
        }
        case 'h': doctor_usage(stdout); return 0;
        default: doctor_usage(stderr); return 2;
        }
    }
    if (optind < argc)
        return cli_fail("unexpected argument '%s'", argv[optind]);
    struct config *cfg = NULL;
    char cerr[600];
    if (config_path && config_load(config_path, NULL, &cfg, cerr, sizeof(cerr)))
        return cli_fail("%s", cerr);
    /* the config's data dir, db and local models, unless the command line names them */
    for (int i = 0; cfg && i < cfg->n_server; i++) {
        if (!data_dir && strcmp(cfg->server[i].key, "data-dir") == 0)
            data_dir = cfg->server[i].value;
        if (!db && strcmp(cfg->server[i].key, "db") == 0)
            db = cfg->server[i].value;
    }
    for (int i = 0; cfg && i < cfg->n_models && n_models < DOCTOR_MAX_MODELS; i++)
        if (cfg->models[i].path)
            models[n_models++] = cfg->models[i].path;
    if (!data_dir)
        data_dir = "nightshift-data";
    if (n_models == 0 && getenv("NIGHTSHIFT_MODEL"))
        models[n_models++] = getenv("NIGHTSHIFT_MODEL");
    struct doctor d = {0};
    printf("nightshift doctor: nightshift %s, llama.cpp %s\n", NIGHTSHIFT_VERSION, engine_llama_version());
    doctor_check_data_dir(&d, data_dir);
    doctor_check_store(&d, db, data_dir);
    doctor_check_models(&d, models, n_models);
    doctor_check_backends(&d, cfg);
    doctor_check_cpu(&d);
    doctor_check_devices(&d, models, n_models);
    doctor_check_disk(&d, data_dir);
    printf("%d failed, %d warnings\n", d.fails, d.warns);
    config_free(cfg);
    return d.fails ? 1 : 0;
}
