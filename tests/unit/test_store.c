/* Unit tests: the store interface, one suite for every store. Runs on SQLite always and on
 * PostgreSQL when NIGHTSHIFT_TEST_PG_URI names an empty database (CTest's unit_store_pg
 * starts a real server for it: tests/e2e/pg_run.mjs). The shared-store cases (two nodes on
 * one database: leases, claims, once-only results) run on PostgreSQL only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/store/store.h"
#include "../../src/util/status.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct fixture {
    const struct store_ops *ops;
    struct store *st;
    char dir[128];
    char uri[1024];
};

static const char *pg_uri(void)
{
    const char *u = getenv("NIGHTSHIFT_TEST_PG_URI");
    return u && *u ? u : NULL;
}

static int open_store(struct fixture *f, const char *uri, const char *node_dir)
{
    char err[512] = "";
    f->ops = store_find(uri);
    assert_non_null(f->ops);
    int rc = f->ops->open(uri, node_dir, &f->st, err, sizeof(err));
    if (rc)
        fprintf(stderr, "open %s: %s\n", uri, err);
    return rc;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/ns-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char files[160];
    snprintf(files, sizeof(files), "%s/files", f->dir);
    mkdir(files, 0700);
    const char *pg = pg_uri();
    if (pg)
        snprintf(f->uri, sizeof(f->uri), "%s", pg);
    else
        snprintf(f->uri, sizeof(f->uri), "sqlite:%s/t.db", f->dir);
    assert_int_equal(open_store(f, f->uri, f->dir), NS_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->st)
        store_close(f->st); /* NULL: a test closed it and failed before opening it again */
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
    free(f);
    return 0;
}

static void unique_id(char *out, size_t n, const char *prefix)
{
    static int seq;
    snprintf(out, n, "%s%ld_%d", prefix, (long)getpid(), ++seq);
}

/* a batch in validating with n lines inserted, then in_progress */
static void make_batch(struct fixture *f, char id[48], int n)
{
    struct store_batch b;
    memset(&b, 0, sizeof(b));
    unique_id(b.id, sizeof(b.id), "batch_");
    snprintf(b.owner, sizeof(b.owner), "p");
    snprintf(b.endpoint, sizeof(b.endpoint), "/v1/chat/completions");
    snprintf(b.input_file_id, sizeof(b.input_file_id), "file-x");
    snprintf(b.completion_window, sizeof(b.completion_window), "24h");
    b.status = SB_VALIDATING;
    b.created_at = time(NULL);
    assert_int_equal(store_batch_insert(f->st, &b), NS_OK);
    struct store_line *lines = calloc((size_t)n, sizeof(*lines));
    char (*cids)[32] = calloc((size_t)n, 32);
    for (int i = 0; i < n; i++) {
        snprintf(cids[i], 32, "c\t%d\\\"", i); /* tab, backslash, quote: COPY and arrays escape them */
        lines[i] = (struct store_line){.idx = i, .line_no = (uint32_t)i + 1, .custom_id = cids[i], .off = i * 10, .len = 10,
                                       .url = 0, .model = "m"};
    }
    assert_int_equal(store_lines_insert(f->st, b.id, lines, n), NS_OK);
    free(lines);
    free(cids);
    b.status = SB_IN_PROGRESS;
    assert_int_equal(store_batch_update(f->st, &b, SB_VALIDATING), NS_OK);
    /* the compare-and-set: a second move from validating is a conflict */
    assert_int_equal(store_batch_update(f->st, &b, SB_VALIDATING), NS_ERR_CONFLICT);
    snprintf(id, 48, "%s", b.id);
}

static char *make_cancelled(void *ud, const char *custom_id)
{
    (void)ud;
    /* a JSON string of the id: its tab and quote escaped the JSON way */
    char buf[128];
    size_t o = 0;
    o += (size_t)snprintf(buf, sizeof(buf), "{\"cancelled\":\"");
    for (const char *c = custom_id; *c && o < sizeof(buf) - 8; c++) {
        if (*c == '\t') {
            buf[o++] = '\\';
            buf[o++] = 't';
        } else if (*c == '"' || *c == '\\') {
            buf[o++] = '\\';
            buf[o++] = *c;
        } else {
            buf[o++] = *c;
        }
    }
    snprintf(buf + o, sizeof(buf) - o, "\"}");
    return strdup(buf);
}

static void release_lines(struct store_line *l, int n)
{
    for (int i = 0; i < n; i++)
        store_line_release(&l[i]);
    free(l);
}

static void test_lines_lifecycle(void **state)
{
    struct fixture *f = *state;
    char id[48];
    make_batch(f, id, 10);
    struct store_batch b;
    assert_int_equal(store_batch_get(f->st, id, &b), NS_OK);
    assert_int_equal(b.total, 10);
    assert_int_equal(b.status, SB_IN_PROGRESS);
    store_batch_release(&b);

    struct store_line *l = NULL;
    int n = 0;
    assert_int_equal(store_lines_claim(f->st, id, "m", 4, &l, &n), NS_OK);
    assert_int_equal(n, 4);
    for (int i = 0; i < n; i++)
        assert_int_equal(l[i].idx, i); /* in order */
    assert_string_equal(l[1].custom_id, "c\t1\\\"");
    assert_int_equal(l[3].off, 30);
    int64_t pending, running;
    assert_int_equal(store_lines_count_unfinished(f->st, id, &pending, &running), NS_OK);
    assert_int_equal(pending, 6);
    assert_int_equal(running, 4);

    /* results: a JSON text with quotes and backslashes goes in and comes out as it is */
    struct store_result rs[3] = {
        {.batch_id = id, .idx = 0, .ok = true, .json = "{\"a\":\"x\\\"y\\\\z\"}", .prompt_tokens = 5, .completion_tokens = 2},
        {.batch_id = id, .idx = 1, .ok = false, .json = "{\"error\":1}", .prompt_tokens = 1},
        {.batch_id = id, .idx = 0, .ok = false, .json = "{\"again\":1}"}, /* a second result: ignored */
    };
    assert_int_equal(store_lines_finish(f->st, rs, 2), NS_OK);
    assert_int_equal(store_lines_finish(f->st, rs + 2, 1), NS_OK);
    assert_int_equal(store_batch_get(f->st, id, &b), NS_OK);
    assert_int_equal(b.completed, 1);
    assert_int_equal(b.failed, 1);
    assert_int_equal(b.input_tokens, 6);
    assert_int_equal(b.output_tokens, 2);
    store_batch_release(&b);

    char path[200];
    snprintf(path, sizeof(path), "%s/export", f->dir);
    FILE *ok = fopen(path, "w+");
    assert_int_equal(store_lines_export(f->st, id, ok, NULL), NS_OK);
    rewind(ok);
    char line[256] = "";
    assert_non_null(fgets(line, sizeof(line), ok));
    assert_string_equal(line, "{\"a\":\"x\\\"y\\\\z\"}\n");
    assert_null(fgets(line, sizeof(line), ok));
    fclose(ok);

    /* start-up requeue: running lines (this node's) are pending again */
    assert_int_equal(store_lines_requeue(f->st), NS_OK);
    assert_int_equal(store_lines_count_unfinished(f->st, id, &pending, &running), NS_OK);
    assert_int_equal(pending, 8);
    assert_int_equal(running, 0);
    release_lines(l, n);

    /* cancel: every unfinished line fails once, counted as canceled */
    assert_int_equal(store_lines_fail_unfinished(f->st, id, true, SF_CANCELLED, make_cancelled, NULL), NS_OK);
    assert_int_equal(store_lines_count_unfinished(f->st, id, &pending, &running), NS_OK);
    assert_int_equal(pending + running, 0);
    assert_int_equal(store_batch_get(f->st, id, &b), NS_OK);
    assert_int_equal(b.failed, 9);
    assert_int_equal(b.canceled, 8);
    store_batch_release(&b);
    ok = fopen(path, "w+");
    assert_int_equal(store_lines_export(f->st, id, NULL, ok), NS_OK);
    rewind(ok);
    assert_non_null(fgets(line, sizeof(line), ok));
    assert_string_equal(line, "{\"error\":1}\n"); /* line order */
    assert_non_null(fgets(line, sizeof(line), ok));
    char *want = make_cancelled(NULL, "c\t2\\\"");
    assert_int_equal(strncmp(line, want, strlen(want)), 0);
    assert_string_equal(line + strlen(want), "\n");
    free(want);
    fclose(ok);
    struct store_line *failed = NULL;
    assert_int_equal(store_lines_failed(f->st, id, &failed, &n), NS_OK);
    assert_int_equal(n, 9);
    release_lines(failed, n);
    assert_int_equal(store_batch_delete(f->st, id), NS_OK);
    assert_int_equal(store_batch_get(f->st, id, &b), NS_ERR_NOT_FOUND);
    assert_int_equal(store_batch_delete(f->st, id), NS_ERR_NOT_FOUND);
}

/* the share of one backend in routes (zeroed when absent) */
static struct store_route route_of(struct store *st, const char *id, const char *backend)
{
    struct store_route *rt = NULL, want;
    int n = 0;
    memset(&want, 0, sizeof(want));
    assert_int_equal(store_lines_routes(st, id, &rt, &n), NS_OK);
    for (int i = 0; i < n; i++)
        if (strcmp(rt[i].backend, backend) == 0)
            want = rt[i];
    free(rt);
    return want;
}

/* spill-over and fail-over in the store: a line's route decides who claims it, moves only
 * while pending (the last lines first), comes back, a released running line goes pending
 * to its new route, and each finished line counts in the share of the backend that ran it */
static void test_lines_routes(void **state)
{
    struct fixture *f = *state;
    char id[48];
    make_batch(f, id, 10);
    struct store_line *l = NULL;
    int n = 0;
    assert_int_equal(store_lines_claim(f->st, id, "m", 2, &l, &n), NS_OK); /* 0, 1 run on m */
    assert_int_equal(n, 2);
    int64_t moved = 0;
    /* spill 5: the last five pending lines (5..9) go to fb; running 0, 1 stay */
    assert_int_equal(store_lines_route(f->st, id, "m", "m", "fb", 5, &moved), NS_OK);
    assert_int_equal(moved, 5);
    struct store_route m = route_of(f->st, id, "m"), fb = route_of(f->st, id, "fb");
    assert_int_equal(m.pending, 3);
    assert_int_equal(m.running, 2);
    assert_int_equal(fb.pending, 5);
    /* m claims only its own: 2, 3, 4 */
    struct store_line *l2 = NULL;
    int n2 = 0;
    assert_int_equal(store_lines_claim(f->st, id, "m", 10, &l2, &n2), NS_OK);
    assert_int_equal(n2, 3);
    assert_int_equal(l2[0].idx, 2);
    assert_int_equal(l2[2].idx, 4);
    /* the rate recovered: two of fb's pending lines (the last: 8, 9) come back */
    assert_int_equal(store_lines_route(f->st, id, "m", "fb", "m", 2, &moved), NS_OK);
    assert_int_equal(moved, 2);
    struct store_line *l3 = NULL;
    int n3 = 0;
    assert_int_equal(store_lines_claim(f->st, id, "fb", 10, &l3, &n3), NS_OK);
    assert_int_equal(n3, 3); /* 5, 6, 7 */
    assert_int_equal(l3[0].idx, 5);
    assert_int_equal(l3[2].idx, 7);
    /* nothing pending on fb is left to move; running lines never move */
    assert_int_equal(store_lines_route(f->st, id, "m", "fb", "m", 10, &moved), NS_OK);
    assert_int_equal(moved, 0);
    /* fail-over: m's running lines 2, 3 are given up to fb */
    int64_t give[2] = {2, 3};
    assert_int_equal(store_lines_release(f->st, id, give, 2, "fb"), NS_OK);
    fb = route_of(f->st, id, "fb");
    assert_int_equal(fb.pending, 2);
    assert_int_equal(fb.running, 3);
    /* results, each counted in its backend's share */
    struct store_result rs[4] = {
        {.batch_id = id, .idx = 0, .ok = true, .json = "{}", .prompt_tokens = 5, .completion_tokens = 2, .backend = "m"},
        {.batch_id = id, .idx = 1, .ok = false, .json = "{}", .backend = "m"},
        {.batch_id = id, .idx = 5, .ok = true, .json = "{}", .prompt_tokens = 7, .completion_tokens = 3, .backend = "fb"},
        {.batch_id = id, .idx = 0, .ok = true, .json = "{}", .prompt_tokens = 50, .backend = "fb"}, /* twice: ignored */
    };
    assert_int_equal(store_lines_finish(f->st, rs, 4), NS_OK);
    m = route_of(f->st, id, "m");
    fb = route_of(f->st, id, "fb");
    assert_int_equal(m.completed, 1);
    assert_int_equal(m.failed, 1);
    assert_int_equal(m.input_tokens, 5);
    assert_int_equal(m.output_tokens, 2);
    assert_int_equal(fb.completed, 1);
    assert_int_equal(fb.input_tokens, 7);
    assert_int_equal(m.running, 1); /* 4 */
    /* every line is still there exactly once */
    int64_t pending, running;
    assert_int_equal(store_lines_count_unfinished(f->st, id, &pending, &running), NS_OK);
    assert_int_equal(pending + running, 7);
    /* a restart requeues running lines on their routes */
    assert_int_equal(store_lines_requeue(f->st), NS_OK);
    fb = route_of(f->st, id, "fb");
    assert_int_equal(fb.pending, 4); /* 2, 3, 6, 7 */
    release_lines(l, n);
    release_lines(l2, n2);
    release_lines(l3, n3);
    assert_int_equal(store_batch_delete(f->st, id), NS_OK);
    assert_int_equal(route_of(f->st, id, "m").completed, 0);
}

static void test_files(void **state)
{
    struct fixture *f = *state;
    struct store_file sf;
    memset(&sf, 0, sizeof(sf));
    unique_id(sf.id, sizeof(sf.id), "file-");
    snprintf(sf.owner, sizeof(sf.owner), "p");
    snprintf(sf.purpose, sizeof(sf.purpose), "batch");
    sf.filename = "in.jsonl";
    char path[256];
    snprintf(path, sizeof(path), "%s/files/%s", f->dir, sf.id);
    /* 2.5 MiB of varied bytes: several chunks in PostgreSQL, the last one short */
    FILE *w = fopen(path, "w");
    for (int i = 0; i < 2621440; i++)
        fputc((i * 7 + i / 1000) & 0xff, w);
    fclose(w);
    sf.bytes = 2621440;
    sf.created_at = time(NULL);
    sf.path = path;
    assert_int_equal(store_file_insert(f->st, &sf), NS_OK);
    struct store_file got;
    assert_int_equal(store_file_get(f->st, sf.id, &got), NS_OK);
    assert_int_equal(got.bytes, sf.bytes);
    assert_string_equal(got.filename, "in.jsonl");
    assert_string_equal(got.path, path);
    store_file_release(&got);
    struct store_list_page pg = {.limit = 10, .owner = "p"};
    struct store_file *list = NULL;
    int n = 0;
    bool more = true;
    assert_int_equal(store_file_list(f->st, &pg, &list, &n, &more), NS_OK);
    assert_true(n >= 1);
    for (int i = 0; i < n; i++)
        store_file_release(&list[i]);
    free(list);
    if (pg_uri()) {
        /* another node (another data dir) gets its own copy, byte for byte */
        struct fixture g = {0};
        snprintf(g.dir, sizeof(g.dir), "%.60s/node2", f->dir);
        char files[160];
        snprintf(files, sizeof(files), "%s/files", g.dir);
        mkdir(g.dir, 0700);
        mkdir(files, 0700);
        assert_int_equal(open_store(&g, f->uri, g.dir), NS_OK);
        assert_int_equal(store_file_get(g.st, sf.id, &got), NS_OK);
        assert_string_not_equal(got.path, path);
        FILE *a = fopen(path, "r"), *b = fopen(got.path, "r");
        int ca, cb;
        long same = 0;
        do {
            ca = fgetc(a);
            cb = fgetc(b);
            same += ca == cb;
        } while (ca == cb && ca != EOF);
        assert_int_equal(ca, cb);
        assert_int_equal(same, 2621441);
        fclose(a);
        fclose(b);
        store_file_release(&got);
        store_close(g.st);
    }
    assert_int_equal(store_file_delete(f->st, sf.id), NS_OK);
    assert_int_equal(store_file_get(f->st, sf.id, &got), NS_ERR_NOT_FOUND);
    assert_int_equal(store_file_delete(f->st, sf.id), NS_ERR_NOT_FOUND);
}

static void test_keys(void **state)
{
    struct fixture *f = *state;
    struct store_key k = {.admin = true, .created_at = 1};
    unique_id(k.name, sizeof(k.name), "key");
    snprintf(k.project, sizeof(k.project), "proj");
    char hash[80];
    unique_id(hash, sizeof(hash), "hash");
    assert_int_equal(store_key_insert(f->st, &k, hash), NS_OK);
    assert_int_equal(store_key_insert(f->st, &k, hash), NS_ERR_CONFLICT);
    /* the database's words for it, on this thread */
    char why[256];
    store_last_error(why, sizeof(why));
    if (!strstr(why, "constraint"))
        fail_msg("store_last_error after a conflict: '%s'", why);
    struct store_key got;
    assert_int_equal(store_key_get(f->st, hash, &got), NS_OK);
    assert_string_equal(got.project, "proj");
    assert_true(got.admin);
    assert_int_equal(got.rpm, 0); /* 0 = unlimited, stored as given */
    assert_int_equal(store_key_get(f->st, "nope", &got), NS_ERR_NOT_FOUND);
    /* limits: -1 (not set: the server's default) is stored as NULL and read back as -1 */
    struct store_key l = {.rpm = 60, .tokens_per_day = -1, .batch_queue_tokens = 5000000000LL, .created_at = 2};
    unique_id(l.name, sizeof(l.name), "key");
    snprintf(l.project, sizeof(l.project), "proj");
    char lhash[80];
    unique_id(lhash, sizeof(lhash), "hash");
    assert_int_equal(store_key_insert(f->st, &l, lhash), NS_OK);
    assert_int_equal(store_key_get(f->st, lhash, &got), NS_OK);
    assert_false(got.admin);
    assert_int_equal(got.rpm, 60);
    assert_int_equal(got.tokens_per_day, -1);
    assert_int_equal(got.batch_queue_tokens, 5000000000LL);
    int64_t count = 0;
    assert_int_equal(store_key_count(f->st, &count), NS_OK);
    assert_true(count >= 1);
}

/* ---- Responses API objects ---------------------------------------------------------- */

/* a response to insert (its strings are the caller's: not released) */
static struct store_response make_response(const char *prev, int64_t created_at, bool background)
{
    struct store_response r;
    memset(&r, 0, sizeof(r));
    unique_id(r.id, sizeof(r.id), "resp_");
    snprintf(r.owner, sizeof(r.owner), "proj");
    r.created_at = created_at;
    r.status = SR_QUEUED;
    r.background = background;
    r.model = "tiny";
    r.previous_id = (char *)prev;
    /* quotes, backslashes, a tab, a newline and UTF-8: stored as they are */
    r.request = "{\"input\":[{\"role\":\"user\",\"content\":\"a \\\"b\\\"\\\\ \tc\nd \xc3\xa9\"}],\"model\":\"tiny\"}";
    r.body = "{\"object\":\"response\",\"status\":\"queued\"}";
    return r;
}

/* the position of id in ids, or -1 */
static int id_at(char (*ids)[48], int n, const char *id)
{
    for (int i = 0; i < n; i++)
        if (strcmp(ids[i], id) == 0)
            return i;
    return -1;
}

static void test_responses(void **state)
{
    struct fixture *f = *state;

    /* the status words, both ways */
    for (int s = 0; s < SR_STATUS_COUNT_; s++)
        assert_int_equal(store_response_status_of(store_response_status_name((enum store_response_status)s)), s);
    assert_string_equal(store_response_status_name(SR_IN_PROGRESS), "in_progress");
    assert_string_equal(store_response_status_name(SR_CANCELLED), "cancelled");
    assert_string_equal(store_response_status_name(SR_STATUS_COUNT_), "unknown");
    assert_int_equal(store_response_status_of("canceled"), -1);
    assert_int_equal(store_response_status_of(NULL), -1);

    /* insert and get: every field back as it went in, a NULL previous_id too */
    struct store_response r1 = make_response(NULL, 1000, true);
    assert_int_equal(store_response_insert(f->st, &r1), NS_OK);
    assert_true(r1.seq > 0);
    struct store_response got;
    assert_int_equal(store_response_get(f->st, r1.id, &got), NS_OK);
    assert_string_equal(got.id, r1.id);
    assert_string_equal(got.owner, "proj");
    assert_int_equal(got.created_at, 1000);
    assert_int_equal(got.status, SR_QUEUED);
    assert_true(got.background);
    assert_string_equal(got.model, "tiny");
    assert_null(got.previous_id);
    assert_string_equal(got.request, r1.request);
    assert_string_equal(got.body, r1.body);
    assert_int_equal(got.seq, r1.seq);
    store_response_release(&got);
    assert_null(got.model);
    store_response_release(NULL);

    struct store_response r2 = make_response(r1.id, 2000, false);
    r2.owner[0] = '\0'; /* open mode */
    /* a big body: 256 KiB */
    char *big = malloc(256 * 1024 + 1);
    memset(big, 'x', 256 * 1024);
    big[256 * 1024] = '\0';
    r2.body = big;
    assert_int_equal(store_response_insert(f->st, &r2), NS_OK);
    assert_true(r2.seq > r1.seq);
    assert_int_equal(store_response_get(f->st, r2.id, &got), NS_OK);
    assert_string_equal(got.previous_id, r1.id);
    assert_string_equal(got.owner, "");
    assert_false(got.background);
    assert_string_equal(got.body, big);
    store_response_release(&got);
    free(big);
    r2.body = "{}";

    /* the id exists: a conflict, and the stored one is left as it was */
    struct store_response dup = make_response(NULL, 5, false);
    snprintf(dup.id, sizeof(dup.id), "%s", r1.id);
    dup.body = "{\"dup\":true}";
    assert_int_equal(store_response_insert(f->st, &dup), NS_ERR_CONFLICT);
    assert_int_equal(store_response_get(f->st, r1.id, &got), NS_OK);
    assert_string_equal(got.body, r1.body);
    assert_int_equal(got.created_at, 1000);
    store_response_release(&got);

    /* update: a compare-and-set of status and body, and nothing else */
    struct store_response up = r1;
    up.status = SR_IN_PROGRESS;
    up.body = "{\"status\":\"in_progress\"}";
    up.model = "other";      /* not written */
    up.created_at = 7;       /* not written */
    up.background = false;   /* not written */
    assert_int_equal(store_response_update(f->st, &up, SR_QUEUED), NS_OK);
    assert_int_equal(store_response_get(f->st, r1.id, &got), NS_OK);
    assert_int_equal(got.status, SR_IN_PROGRESS);
    assert_string_equal(got.body, "{\"status\":\"in_progress\"}");
    assert_string_equal(got.model, "tiny");
    assert_int_equal(got.created_at, 1000);
    assert_true(got.background);
    store_response_release(&got);
    /* a stale expect: the status moved on */
    up.status = SR_CANCELLED;
    up.body = "{\"status\":\"cancelled\"}";
    assert_int_equal(store_response_update(f->st, &up, SR_QUEUED), NS_ERR_CONFLICT);
    assert_int_equal(store_response_get(f->st, r1.id, &got), NS_OK);
    assert_int_equal(got.status, SR_IN_PROGRESS);
    store_response_release(&got);
    up.status = SR_COMPLETED;
    up.body = "{\"status\":\"completed\"}";
    assert_int_equal(store_response_update(f->st, &up, SR_IN_PROGRESS), NS_OK);
    /* gone: not found, whatever the expect */
    struct store_response none = make_response(NULL, 1, false);
    assert_int_equal(store_response_update(f->st, &none, SR_QUEUED), NS_ERR_NOT_FOUND);
    assert_int_equal(store_response_get(f->st, none.id, &got), NS_ERR_NOT_FOUND);

    /* ids by status, oldest first (the store may hold others': look at ours) */
    struct store_response r3 = make_response(NULL, 3000, true);
    assert_int_equal(store_response_insert(f->st, &r3), NS_OK);
    char(*ids)[48] = NULL;
    int n = -1;
    assert_int_equal(store_response_ids_by_status(f->st, SR_QUEUED, &ids, &n), NS_OK);
    assert_non_null(ids);
    int at2 = id_at(ids, n, r2.id), at3 = id_at(ids, n, r3.id);
    assert_true(at2 >= 0 && at3 > at2);
    assert_int_equal(id_at(ids, n, r1.id), -1);
    free(ids);
    assert_int_equal(store_response_ids_by_status(f->st, SR_COMPLETED, &ids, &n), NS_OK);
    assert_true(id_at(ids, n, r1.id) >= 0);
    free(ids);
    assert_int_equal(store_response_ids_by_status(f->st, SR_INCOMPLETE, &ids, &n), NS_OK);
    assert_non_null(ids); /* none: an empty array, not NULL */
    assert_int_equal(n, 0);
    free(ids);

    /* delete, then it is not found */
    assert_int_equal(store_response_delete(f->st, r2.id), NS_OK);
    assert_int_equal(store_response_get(f->st, r2.id, &got), NS_ERR_NOT_FOUND);
    assert_int_equal(store_response_delete(f->st, r2.id), NS_ERR_NOT_FOUND);
    assert_int_equal(store_response_update(f->st, &r2, SR_QUEUED), NS_ERR_NOT_FOUND);

    /* expire: created before 1500 (r1, whatever its status), not r3 */
    int64_t gone = -1;
    assert_int_equal(store_response_expire(f->st, 1500, &gone), NS_OK);
    assert_int_equal(gone, 1);
    assert_int_equal(store_response_get(f->st, r1.id, &got), NS_ERR_NOT_FOUND);
    assert_int_equal(store_response_get(f->st, r3.id, &got), NS_OK);
    store_response_release(&got);
    assert_int_equal(store_response_expire(f->st, 1500, &gone), NS_OK);
    assert_int_equal(gone, 0);
    assert_int_equal(store_response_delete(f->st, r3.id), NS_OK);
}

/* a store of the schema version before responses (SQLite 6, PostgreSQL 3), made by taking
 * the tables of the last two versions out of a current one (responses; the routes of lines,
 * schema SQLite 8 / PostgreSQL 5), migrates at open and keeps its rows */
static void test_responses_migrate(void **state)
{
    struct fixture *f = *state;
    int have = 0, known = 0;
    char err[256] = "", sql[200];
    assert_int_equal(f->ops->admin.probe(f->uri, f->dir, &have, &known, err, sizeof(err)), NS_OK);
    assert_int_equal(have, known);
    assert_int_equal(known, pg_uri() ? 5 : 8);
    char id[48];
    make_batch(f, id, 2);
    store_close(f->st);
    f->st = NULL;
    if (pg_uri()) {
        PGconn *c = PQconnectdb(f->uri);
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        snprintf(sql, sizeof(sql),
                 "DROP TABLE responses; DROP TABLE batch_backends; ALTER TABLE lines DROP COLUMN backend;"
                 "DELETE FROM ns_schema; INSERT INTO ns_schema VALUES(%d)",
                 known - 2);
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            fail_msg("%s", PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(c);
    } else {
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open(f->uri + strlen("sqlite:"), &db), SQLITE_OK);
        snprintf(sql, sizeof(sql),
                 "DROP TABLE responses; DELETE FROM sqlite_sequence WHERE name='responses'; DROP TABLE batch_backends;"
                 "ALTER TABLE lines DROP COLUMN backend; PRAGMA user_version=%d",
                 known - 2);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
    }
    assert_int_equal(f->ops->admin.probe(f->uri, f->dir, &have, &known, err, sizeof(err)), NS_OK);
    assert_int_equal(have, known - 2);

    assert_int_equal(open_store(f, f->uri, f->dir), NS_OK);
    assert_int_equal(f->ops->admin.probe(f->uri, f->dir, &have, &known, err, sizeof(err)), NS_OK);
    assert_int_equal(have, known);
    struct store_batch b;
    assert_int_equal(store_batch_get(f->st, id, &b), NS_OK);
    assert_int_equal(b.total, 2);
    store_batch_release(&b);
    /* the migrated lines route */
    int64_t moved = 0;
    assert_int_equal(store_lines_route(f->st, id, "m", "m", "fb", 1, &moved), NS_OK);
    assert_int_equal(moved, 1);
    struct store_response r = make_response(NULL, 1, true);
    assert_int_equal(store_response_insert(f->st, &r), NS_OK);
    struct store_response got;
    assert_int_equal(store_response_get(f->st, r.id, &got), NS_OK);
    assert_string_equal(got.request, r.request);
    store_response_release(&got);
    assert_int_equal(store_response_delete(f->st, r.id), NS_OK);
}

/* ---- two nodes on one database (PostgreSQL) ---------------------------------------- */

static void test_shared_leases(void **state)
{
    struct fixture *f = *state;
    if (!pg_uri() || !f->ops->batch.lease) {
        skip();
        return;
    }
    /* two nodes with one-second leases */
    struct fixture a = {0}, b = {0};
    char uri[1100];
    snprintf(a.dir, sizeof(a.dir), "%s", f->dir);
    snprintf(b.dir, sizeof(b.dir), "%s", f->dir);
    snprintf(uri, sizeof(uri), "%s%snode=A&lease_seconds=1", f->uri, strchr(f->uri, '?') ? "&" : "?");
    assert_int_equal(open_store(&a, uri, a.dir), NS_OK);
    snprintf(uri, sizeof(uri), "%s%snode=B&lease_seconds=1", f->uri, strchr(f->uri, '?') ? "&" : "?");
    assert_int_equal(open_store(&b, uri, b.dir), NS_OK);
    char node[64];
    assert_int_equal(store_node_id(a.st, node, sizeof(node)), NS_OK);
    assert_string_equal(node, "A");
    char id[48];
    make_batch(&a, id, 6);

    /* A claims 4; B gets the other 2, never A's */
    struct store_line *la = NULL, *lb = NULL;
    int na = 0, nb = 0;
    assert_int_equal(store_lines_claim(a.st, id, NULL, 4, &la, &na), NS_OK);
    assert_int_equal(na, 4);
    assert_int_equal(store_lines_claim(b.st, id, NULL, 10, &lb, &nb), NS_OK);
    assert_int_equal(nb, 2);
    assert_int_equal(lb[0].idx, 4);
    release_lines(lb, nb);

    /* the batch lease: A holds it, B is refused until it runs out */
    assert_int_equal(store_batch_lease(a.st, id), NS_OK);
    assert_int_equal(store_batch_lease(b.st, id), NS_ERR_CONFLICT);
    assert_int_equal(store_batch_lease(a.st, id), NS_OK); /* renewed */

    /* B's start-up requeue leaves A's lines alone */
    assert_int_equal(store_lines_requeue(b.st), NS_OK);
    int64_t pending, running;
    assert_int_equal(store_lines_count_unfinished(a.st, id, &pending, &running), NS_OK);
    assert_int_equal(pending, 2);
    assert_int_equal(running, 4);

    /* A "dies": its heartbeat renews every 1/3 s, so close it (the heartbeat stops) and wait */
    store_close(a.st);
    sleep(2);
    assert_int_equal(store_lines_count_unfinished(b.st, id, &pending, &running), NS_OK);
    assert_int_equal(pending, 6);
    assert_int_equal(running, 0);
    assert_int_equal(store_batch_lease(b.st, id), NS_OK);
    assert_int_equal(store_lines_claim(b.st, id, NULL, 10, &lb, &nb), NS_OK);
    assert_int_equal(nb, 6); /* A's four came back, B's own requeued two too */
    /* A's late result of line 0 (it was only paused) counts once; B's result for it is ignored */
    struct store_result r0 = {.batch_id = id, .idx = 0, .ok = true, .json = "{\"from\":\"A\"}"};
    struct store_result r0b = {.batch_id = id, .idx = 0, .ok = true, .json = "{\"from\":\"B\"}"};
    assert_int_equal(store_lines_finish(b.st, &r0, 1), NS_OK);
    assert_int_equal(store_lines_finish(b.st, &r0b, 1), NS_OK);
    struct store_batch bt;
    assert_int_equal(store_batch_get(b.st, id, &bt), NS_OK);
    assert_int_equal(bt.completed, 1);
    store_batch_release(&bt);
    release_lines(la, na);
    release_lines(lb, nb);

    /* a cancel on B settles B's lines; a live node C's running line stays C's */
    struct fixture c = {0};
    snprintf(c.dir, sizeof(c.dir), "%s", f->dir);
    snprintf(uri, sizeof(uri), "%s%snode=C&lease_seconds=30", f->uri, strchr(f->uri, '?') ? "&" : "?");
    assert_int_equal(open_store(&c, uri, c.dir), NS_OK);
    char id2[48];
    make_batch(&c, id2, 3);
    struct store_line *lc = NULL;
    int nc = 0;
    assert_int_equal(store_lines_claim(c.st, id2, NULL, 1, &lc, &nc), NS_OK);
    assert_int_equal(nc, 1);
    release_lines(lc, nc);
    assert_int_equal(store_lines_fail_unfinished(b.st, id2, true, SF_CANCELLED, make_cancelled, NULL), NS_OK);
    assert_int_equal(store_lines_count_unfinished(b.st, id2, &pending, &running), NS_OK);
    assert_int_equal(pending, 0);
    assert_int_equal(running, 1);
    assert_int_equal(store_lines_fail_unfinished(c.st, id2, true, SF_CANCELLED, make_cancelled, NULL), NS_OK);
    assert_int_equal(store_lines_count_unfinished(c.st, id2, &pending, &running), NS_OK);
    assert_int_equal(pending + running, 0);
    store_close(c.st);
    store_close(b.st);
}

/* webhooks: a due delivery is handed to one node at a time */
static void test_webhooks(void **state)
{
    struct fixture *f = *state;
    struct store_webhook w = {.created_at = 1, .next_at = 1};
    unique_id(w.id, sizeof(w.id), "evt_");
    snprintf(w.batch_id, sizeof(w.batch_id), "batch_w");
    snprintf(w.type, sizeof(w.type), "batch.completed");
    snprintf(w.endpoint, sizeof(w.endpoint), "e");
    w.url = "http://127.0.0.1:1/hook";
    w.body = "{}";
    assert_int_equal(store_webhook_insert(f->st, &w), NS_OK);
    struct store_webhook *due = NULL;
    int n = 0;
    assert_int_equal(store_webhooks_due(f->st, time(NULL), 100, &due, &n), NS_OK);
    int mine = 0;
    for (int i = 0; i < n; i++) {
        mine += strcmp(due[i].id, w.id) == 0;
        if (strcmp(due[i].id, w.id) == 0) {
            due[i].state = SW_DELIVERED;
            due[i].attempts = 1;
            assert_int_equal(store_webhook_update(f->st, &due[i]), NS_OK);
        }
        store_webhook_release(&due[i]);
    }
    free(due);
    assert_int_equal(mine, 1);
    if (pg_uri()) {
        /* claimed: asked again right away, it is not handed out twice */
        struct store_webhook w2 = w;
        unique_id(w2.id, sizeof(w2.id), "evt_");
        assert_int_equal(store_webhook_insert(f->st, &w2), NS_OK);
        assert_int_equal(store_webhooks_due(f->st, time(NULL), 100, &due, &n), NS_OK);
        for (int i = 0; i < n; i++)
            store_webhook_release(&due[i]);
        free(due);
        assert_int_equal(store_webhooks_due(f->st, time(NULL), 100, &due, &n), NS_OK);
        for (int i = 0; i < n; i++) {
            assert_string_not_equal(due[i].id, w2.id);
            store_webhook_release(&due[i]);
        }
        free(due);
    }
    assert_int_equal(store_webhooks_list(f->st, "batch_w", 10, &due, &n), NS_OK);
    assert_true(n >= 1);
    for (int i = 0; i < n; i++)
        store_webhook_release(&due[i]);
    free(due);
}

/* open errors: the message names what is wrong */
/* another connection to the SQLite store's file holds its write lock for `ms` */
struct lock_holder {
    sqlite3 *db;
    int ms;
};

static void *release_later(void *arg)
{
    struct lock_holder *h = arg;
    struct timespec ts = {.tv_sec = h->ms / 1000, .tv_nsec = (long)(h->ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    assert_int_equal(sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* contention (store.h): a write lock another process holds past SQLite's busy timeout is
 * NS_ERR_BUSY, not an I/O error, and is not waited out again by the retries; one released
 * in time is waited for and the write goes through */
static void test_busy_sqlite(void **state)
{
    struct fixture *f = *state;
    if (pg_uri())
        skip(); /* two connections to one file: SQLite's case */
    char id[48];
    make_batch(f, id, 2);
    struct store_line *l = NULL;
    int n = 0;
    assert_int_equal(store_lines_claim(f->st, id, NULL, 2, &l, &n), NS_OK);
    release_lines(l, n);
    struct lock_holder h = {.db = NULL, .ms = 300};
    assert_int_equal(sqlite3_open(f->uri + strlen("sqlite:"), &h.db), SQLITE_OK);

    /* released after 300 ms: the busy timeout waits for it */
    assert_int_equal(sqlite3_exec(h.db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, release_later, &h), 0);
    struct store_result r0 = {.batch_id = id, .idx = 0, .ok = true, .json = "{}", .prompt_tokens = 1};
    assert_int_equal(store_lines_finish(f->st, &r0, 1), NS_OK);
    pthread_join(t, NULL);

    /* held throughout: NS_ERR_BUSY once the busy timeout (10 s) ran out, and no second wait */
    assert_int_equal(sqlite3_exec(h.db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    struct store_result r1 = {.batch_id = id, .idx = 1, .ok = true, .json = "{}", .prompt_tokens = 1};
    double t0 = now_s();
    assert_int_equal(store_lines_finish(f->st, &r1, 1), NS_ERR_BUSY);
    double took = now_s() - t0;
    assert_true(took >= 9.0 && took < 15.0);
    char why[256];
    store_last_error(why, sizeof(why));
    assert_non_null(strstr(why, "locked"));
    assert_int_equal(sqlite3_exec(h.db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h.db);

    /* nothing of the refused try was kept: line 1 is still unfinished, and finishes now */
    struct store_batch b;
    assert_int_equal(store_batch_get(f->st, id, &b), NS_OK);
    assert_int_equal(b.completed, 1);
    store_batch_release(&b);
    assert_int_equal(store_lines_finish(f->st, &r1, 1), NS_OK);
    assert_int_equal(store_batch_get(f->st, id, &b), NS_OK);
    assert_int_equal(b.completed, 2);
    store_batch_release(&b);
}

/* the retry policy and the database codes that feed it */
static void test_busy_status(void **state)
{
    (void)state;
    assert_int_equal(status_http(NS_ERR_BUSY), 503);
    assert_int_equal(store_status_of_sqlstate("40001"), NS_ERR_BUSY); /* serialization_failure */
    assert_int_equal(store_status_of_sqlstate("40P01"), NS_ERR_BUSY); /* deadlock_detected */
    assert_int_equal(store_status_of_sqlstate("23505"), NS_ERR_IO);
    assert_int_equal(store_status_of_sqlstate(NULL), NS_ERR_IO);
    assert_int_equal(store_status_of_sqlite(SQLITE_BUSY), NS_ERR_BUSY);
    assert_int_equal(store_status_of_sqlite(SQLITE_BUSY_SNAPSHOT), NS_ERR_BUSY);
    assert_int_equal(store_status_of_sqlite(SQLITE_LOCKED), NS_ERR_BUSY);
    assert_int_equal(store_status_of_sqlite(SQLITE_IOERR), NS_ERR_IO);
    assert_int_equal(store_status_of_sqlite(SQLITE_FULL), NS_ERR_IO);

    /* busy: tried STORE_BUSY_TRIES times in all; anything else: not again */
    struct store_retry r = store_retry_begin();
    int again = 0;
    while (store_retry_again(&r, NS_ERR_BUSY))
        again++;
    assert_int_equal(again, STORE_BUSY_TRIES - 1);
    r = store_retry_begin();
    assert_false(store_retry_again(&r, NS_OK));
    r = store_retry_begin();
    assert_false(store_retry_again(&r, NS_ERR_IO));
    r = store_retry_begin();
    assert_false(store_retry_again(&r, NS_ERR_CONFLICT));
    /* past the budget (a try that already waited that long): not again */
    r = store_retry_begin();
    r.start -= STORE_BUSY_BUDGET_MS / 1000.0;
    assert_false(store_retry_again(&r, NS_ERR_BUSY));
}

static void test_open_errors(void **state)
{
    (void)state;
    struct store *st = NULL;
    char err[512] = "";
    assert_null(store_find("mysql://x"));
    assert_ptr_equal(store_find("postgresql://h/db"), &store_pg_ops);
    assert_ptr_equal(store_find("postgres://h/db"), &store_pg_ops);
    assert_ptr_equal(store_find("sqlite:/tmp/x.db"), &store_sqlite_ops);
    assert_int_equal(store_pg_ops.open("postgres:///x?lease_seconds=abc", "/tmp", &st, err, sizeof(err)), NS_ERR_INVALID);
    assert_non_null(strstr(err, "lease_seconds must be a whole number of seconds from 1 to 3600 (got 'abc')"));
    assert_null(st);
    assert_int_equal(store_pg_ops.open("postgres://u:secret@127.0.0.1:1/x?connect_timeout=2", "/tmp", &st, err,
                                       sizeof(err)),
                     NS_ERR_IO);
    assert_non_null(strstr(err, "cannot connect to PostgreSQL at 'postgres://u:***@127.0.0.1:1/x'"));
    assert_null(strstr(err, "secret"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lines_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lines_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhooks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_responses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_responses_migrate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_leases, setup, teardown),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test_setup_teardown(test_busy_sqlite, setup, teardown),
        cmocka_unit_test(test_busy_status),
    };
    fprintf(stderr, "store under test: %s\n", pg_uri() ? "postgres" : "sqlite");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
