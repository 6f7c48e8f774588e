/*
 * fuzz_http.c — libFuzzer target: request bodies through the real HTTP server (http/server)
 * over a real socket, above all the multipart upload path: libmicrohttpd's post processor
 * needs a live connection, so it cannot be called alone; here it runs as in production,
 * with our upload_iter(), size caps, temp files and h_file_upload() behind it.
 *
 * Setup (once): a data dir under /tmp, the SQLite store, a batch manager that is never
 * started (batches stay validating) and a server on a free loopback port with no model
 * (chat routes answer 404 model_not_found after parsing). Input: the first byte picks the
 * route and content type; the rest is the body, sent with its Content-Length; the answer
 * is read to the end (Connection: close), so every request is finished before the next.
 * Uploaded files are removed every 256 inputs so a long run does not fill the disk.
 */
#include "../../src/http/server.h"
#include "../../src/sched/batchmgr.h"
#include "../../src/store/store.h"
#include "fuzz.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);

static char http_dir[64];
static struct store *http_st;
static struct batchmgr *http_bm;
static struct server *http_srv;
static int http_port;

static const struct {
    const char *path;
    const char *type;
} http_routes[] = {
    {"/v1/files", "multipart/form-data; boundary=B"},
    {"/v1/files", "multipart/form-data; boundary=----x"},
    {"/v1/files", "multipart/form-data"},
    {"/v1/batches", "application/json"},
    {"/v1/messages/batches", "application/json"},
    {"/v1/chat/completions", "application/json"},
    {"/v1/messages", "application/json"},
    {"/v1/deferred/chat/completions", "application/json"},
    {"/api/chat", "application/json"},
};
#define N_ROUTES (sizeof(http_routes) / sizeof(http_routes[0]))

static void http_sweep(void)
{
    char sub[128], path[512];
    snprintf(sub, sizeof(sub), "%s/files", http_dir);
    DIR *d = opendir(sub);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", sub, de->d_name);
        unlink(path);
    }
    closedir(d);
}

static void http_cleanup(void)
{
    server_stop(http_srv);
    batchmgr_free(http_bm);
    store_sqlite_ops.close(http_st);
    http_sweep();
    char path[128];
    snprintf(path, sizeof(path), "%s/files", http_dir);
    rmdir(path);
    static const char *const dbf[] = {"nightshift.db", "nightshift.db-wal", "nightshift.db-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", http_dir, dbf[i]);
        unlink(path);
    }
    rmdir(http_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[256], sub[128];
    snprintf(http_dir, sizeof(http_dir), "/tmp/ns-fuzz-http-XXXXXX");
    if (!mkdtemp(http_dir))
        exit(1);
    snprintf(sub, sizeof(sub), "%s/files", http_dir);
    mkdir(sub, 0750);
    if (store_sqlite_ops.open(NULL, http_dir, &http_st, err, sizeof(err))) {
        fprintf(stderr, "fuzz_http: %s\n", err);
        exit(1);
    }
    struct batchmgr_params bp = batchmgr_default_params();
    bp.data_dir = http_dir;
    if (batchmgr_init(bp, http_st, NULL, 0, &http_bm))
        exit(1);
    struct server_params sp = server_default_params();
    sp.port = 0;
    sp.data_dir = http_dir;
    sp.max_body = 64 * 1024;
    sp.max_file = 64 * 1024;
    if (server_start(sp, http_st, NULL, 0, http_bm, &http_srv, err, sizeof(err))) {
        fprintf(stderr, "fuzz_http: %s\n", err);
        exit(1);
    }
    http_port = server_port(http_srv);
    atexit(http_cleanup);
    return 0;
}

static int http_send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned n_inputs;
    uint8_t mode;
    size_t n;
    char *body = fuzz_input(data, size, 1, &mode, &n);
    if (!body)
        return 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)http_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        char head[512];
        int hn = snprintf(head, sizeof(head),
                          "POST %s HTTP/1.1\r\nHost: fuzz\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                          "Connection: close\r\n\r\n",
                          http_routes[mode % N_ROUTES].path, http_routes[mode % N_ROUTES].type, n);
        if (http_send_all(fd, head, (size_t)hn) == 0 && http_send_all(fd, body, n) == 0) {
            shutdown(fd, SHUT_WR);
            char ans[4096];
            while (recv(fd, ans, sizeof(ans), 0) > 0)
                ;
        }
    }
    if (fd >= 0)
        close(fd);
    free(body);
    if (++n_inputs % 256 == 0)
        http_sweep();
    return 0;
}
