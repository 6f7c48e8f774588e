/* Unit tests: sched/batchmgr, the life of a batch, on a real SQLite store with a real
 * scheduler in front of a fake backend (answers at once; fails a request that says "fail";
 * holds one that says "hold" until told). Covered: completion window parsing and file
 * paths; validation (a good file runs and is finalized into output and error files in
 * line order, with their file rows and the batch's webhook event; a missing input file, a
 * bad line, a model not served, too many lines fail the batch with the OpenAI error list;
 * an Anthropic Message Batch turns bad lines into errored results and still runs); cancel
 * (running lines finish first, the rest are settled as cancelled; before validation, an
 * Anthropic batch's requests are still read and each ends canceled; a batch whose input
 * file vanished can still be cancelled); expiry (not_before respected, every line
 * batch_expired); a restart (running lines requeued, the batch resumed); finalization
 * retried after the files directory could not be written; ended Message Batches purged
 * after their retention; batches another node ended dropped from the schedulers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/backend/backend.h"
#include "../../src/proto/batchfile.h"
#include "../../src/sched/batchmgr.h"
#include "../../src/sched/sched.h"
#include "../../src/sched/webhook.h"
#include "../../src/store/store.h"
#include "../../src/util/status.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- a backend that answers at once, fails "fail", holds "hold" ---------------------------- */

#define FAKE_HOLD_MAX 2

struct fake_impl {
    atomic_bool stop;
};

static atomic_bool g_release; /* answer the held requests */
static atomic_int g_held;     /* requests held now */

static int fake_init(const struct backend_conf *c, void **out, char *err, size_t errlen)
{
    (void)c;
    (void)err;
    (void)errlen;
    *out = calloc(1, sizeof(struct fake_impl));
    return *out ? NS_OK : NS_ERR_NOMEM;
}

static void fake_free(void *impl) { free(impl); }

static const char *fake_content(const struct engine_request *r)
{
    return r->n_messages > 0 && r->messages[r->n_messages - 1].content ? r->messages[r->n_messages - 1].content : "";
}

static void fake_answer(const struct engine_source *src, struct engine_request *r, int status)
{
    struct engine_result res;
    memset(&res, 0, sizeof(res));
    res.status = status;
    res.stop_index = -1;
    if (status == NS_OK) {
        res.text = "ok";
        res.text_len = 2;
        res.prompt_tokens = 3;
        res.completion_tokens = 1;
    } else {
        res.text = "";
        snprintf(res.message, sizeof(res.message), "%s",
                 status == NS_ERR_CANCELLED ? "stopped" : "refused by the fake backend");
    }
    src->done(src->ud, r, &res);
}

static int fake_run(void *impl, const struct engine_source *src)
{
    struct fake_impl *f = impl;
    struct engine_request *held[FAKE_HOLD_MAX];
    int n_held = 0;
    while (!atomic_load(&f->stop)) {
        if (n_held && atomic_load(&g_release)) {
            for (int i = 0; i < n_held; i++)
                fake_answer(src, held[i], NS_OK);
            n_held = 0;
            atomic_store(&g_held, 0);
        }
        struct engine_request *got[8];
        int room = FAKE_HOLD_MAX - n_held; /* at most that many in flight */
        int n = room > 0 ? src->pull(src->ud, got, room) : 0;
        if (n < 0)
            break;
        for (int i = 0; i < n; i++) {
            const char *c = fake_content(got[i]);
            if (strcmp(c, "hold") == 0 && !atomic_load(&g_release)) {
                held[n_held++] = got[i];
                atomic_store(&g_held, n_held);
            } else {
                fake_answer(src, got[i], strcmp(c, "fail") == 0 ? NS_ERR_INVALID : NS_OK);
            }
        }
        if (n == 0 && n_held == 0 && src->wait)
            src->wait(src->ud);
        else if (n == 0)
            usleep(2000);
    }
    for (int i = 0; i < n_held; i++)
        fake_answer(src, held[i], NS_ERR_CANCELLED);
    atomic_store(&g_held, 0);
    return NS_OK;
}

static void fake_stop(void *impl) { atomic_store(&((struct fake_impl *)impl)->stop, true); }

static const struct backend_ops fake_ops = {
    .kind = "fake", .init = fake_init, .free = fake_free, .run = fake_run, .stop = fake_stop};

/* ---- fixture ----------------------------------------------------------------------------- */

static char g_dir[64], g_files[96];
static struct store *g_st;

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/ns-batchmgr-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(g_files, sizeof(g_files), "%s/files", g_dir);
    if (mkdir(g_files, 0700))
        return -1;
    char err[256];
    return store_find(NULL)->open(NULL, g_dir, &g_st, err, sizeof(err)) == NS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    store_close(g_st);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* a manager over one sched ("fake", its lines claimed two at a time) */
struct rig {
    struct sched *s;
    struct batchmgr *m;
    struct webhook *w;
};

static const struct webhook_endpoint g_ep = {.name = "all", .url = "http://127.0.0.1:9/hook",
                                             .secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3",
                                             .events = WEBHOOK_EV_ALL, .max_attempts = 3, .retry_base_s = 1};

static void rig_start(struct rig *r, const char *data_dir, int64_t retention, size_t max_lines)
{
    memset(r, 0, sizeof(*r));
    atomic_store(&g_release, false);
    atomic_store(&g_held, 0);
    struct backend *be = calloc(1, sizeof(*be));
    assert_non_null(be);
    be->ops = &fake_ops;
    be->name = strdup("fake");
    assert_int_equal(fake_ops.init(NULL, &be->impl, NULL, 0), NS_OK);
    assert_int_equal(webhook_init(g_st, &g_ep, 1, &r->w), NS_OK); /* queues only: not started */
    struct batchmgr_params p = batchmgr_default_params();
    p.data_dir = data_dir ? data_dir : g_dir;
    p.webhooks = r->w;
    if (retention)
        p.message_batch_retention = retention;
    if (max_lines)
        p.max_lines = max_lines;
    struct sched_params sp = sched_default_params();
    sp.model_name = "fake";
    sp.claim_chunk = 2;
    assert_int_equal(batchmgr_init(p, g_st, &r->s, 1, &r->m), NS_OK);
    assert_int_equal(sched_init(sp, be, g_st, batchmgr_on_idle, r->m, &r->s), NS_OK);
    assert_int_equal(sched_start(r->s), NS_OK);
    assert_int_equal(batchmgr_start(r->m), NS_OK);
}

static void rig_stop(struct rig *r)
{
    atomic_store(&g_release, true);
    sched_stop(r->s); /* no idle() call into the manager after this */
    batchmgr_free(r->m);
    sched_free(r->s);
    webhook_free(r->w);
}

/* an input file (purpose batch) with this content, in the store and in g_dir/files */
static void put_file(const char *id, const char *content)
{
    char path[256];
    batchmgr_file_path(g_dir, id, path, sizeof(path));
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    struct store_file sf;
    memset(&sf, 0, sizeof(sf));
    snprintf(sf.id, sizeof(sf.id), "%s", id);
    snprintf(sf.owner, sizeof(sf.owner), "default");
    snprintf(sf.purpose, sizeof(sf.purpose), "batch");
    sf.filename = (char *)"in.jsonl";
    sf.bytes = (int64_t)strlen(content);
    sf.created_at = time(NULL);
    sf.path = path;
    assert_int_equal(store_file_insert(g_st, &sf), NS_OK);
}

static void append(char *out, size_t n, const char *s)
{
    size_t l = strlen(out);
    snprintf(out + l, n - l, "%s", s);
}

/* a chat line asking `content` of model `model` */
static void chat_line(char *out, size_t n, const char *cid, const char *model, const char *content)
{
    size_t l = strlen(out);
    snprintf(out + l, n - l,
             "{\"custom_id\":\"%s\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"%s\","
             "\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}}\n",
             cid, model, content);
}

static void msg_line(char *out, size_t n, const char *cid, const char *model, const char *content)
{
    size_t l = strlen(out);
    snprintf(out + l, n - l,
             "{\"custom_id\":\"%s\",\"method\":\"POST\",\"url\":\"/v1/messages\",\"body\":{\"model\":\"%s\","
             "\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}}\n",
             cid, model, content);
}

static void put_batch(const char *id, const char *endpoint, const char *file_id, enum store_batch_status st,
                      int64_t created_at, int64_t expires_at, int64_t not_before)
{
    struct store_batch b;
    memset(&b, 0, sizeof(b));
    snprintf(b.id, sizeof(b.id), "%s", id);
    snprintf(b.owner, sizeof(b.owner), "default");
    snprintf(b.endpoint, sizeof(b.endpoint), "%s", endpoint);
    snprintf(b.input_file_id, sizeof(b.input_file_id), "%s", file_id);
    snprintf(b.completion_window, sizeof(b.completion_window), "24h");
    b.status = st;
    b.created_at = created_at ? created_at : time(NULL);
    b.expires_at = expires_at;
    b.not_before = not_before;
    b.output_expires_after = 3600;
    if (st == SB_CANCELLING)
        b.cancelling_at = time(NULL);
    assert_int_equal(store_batch_insert(g_st, &b), NS_OK);
}

/* wait (10 s at most) for the batch to reach a status; b holds it (release it) */
static void wait_status(const char *id, enum store_batch_status want, struct store_batch *b)
{
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(store_batch_get(g_st, id, b), NS_OK);
        if (b->status == want)
            return;
        store_batch_release(b);
        usleep(10000);
    }
    assert_int_equal(store_batch_get(g_st, id, b), NS_OK);
    assert_int_equal(b->status, want);
}

/* a file's content (free it); NULL when the store has no such file */
static char *file_text(const char *file_id)
{
    struct store_file f;
    if (!file_id[0] || store_file_get(g_st, file_id, &f) != NS_OK)
        return NULL;
    FILE *fp = fopen(f.path, "r");
    assert_non_null(fp);
    char *s = calloc(1, (size_t)f.bytes + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)f.bytes, fp), (size_t)f.bytes);
    fclose(fp);
    assert_string_equal(f.purpose, "batch_output");
    store_file_release(&f);
    return s;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

static int n_webhooks(const char *batch_id, const char *type)
{
    struct store_webhook *ws = NULL;
    int n = 0, hits = 0;
    assert_int_equal(store_webhooks_list(g_st, batch_id, 20, &ws, &n), NS_OK);
    for (int i = 0; i < n; i++) {
        hits += strcmp(ws[i].type, type) == 0;
        store_webhook_release(&ws[i]);
    }
    free(ws);
    return hits;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_parse_window_and_paths(void **state)
{
    (void)state;
    int64_t s = 0;
    assert_int_equal(batchmgr_parse_window("24h", &s), NS_OK);
    assert_int_equal(s, 86400);
    assert_int_equal(batchmgr_parse_window("90m", &s), NS_OK);
    assert_int_equal(s, 5400);
    assert_int_equal(batchmgr_parse_window("3600s", &s), NS_OK);
    assert_int_equal(s, 3600);
    static const char *const bad[] = {"", "h", "24", "24d", "0h", "-1h", "1000001s", "24 h", "24hh", "x24h", NULL};
    for (int i = 0; bad[i]; i++) {
        s = 7;
        assert_int_equal(batchmgr_parse_window(bad[i], &s), NS_ERR_INVALID);
        assert_int_equal(s, 7); /* untouched */
    }
    char path[64];
    batchmgr_file_path("/d", "file-1", path, sizeof(path));
    assert_string_equal(path, "/d/files/file-1");
    batchmgr_file_path("/data", "file-abcdef", path, 12); /* cut, still terminated */
    assert_string_equal(path, "/data/files");
}

static void test_sched_for(void **state)
{
    (void)state;
    struct rig r;
    rig_start(&r, NULL, 0, 0);
    assert_ptr_equal(batchmgr_sched_for(r.m, "fake"), r.s);
    assert_null(batchmgr_sched_for(r.m, "other"));
    assert_null(batchmgr_sched_for(r.m, NULL));
    rig_stop(&r);
}

static void test_completes_with_files(void **state)
{
    (void)state;
    char in[2048] = "";
    chat_line(in, sizeof(in), "c0", "fake", "hi");
    chat_line(in, sizeof(in), "c1", "fake", "hi");
    chat_line(in, sizeof(in), "c2", "fake", "fail");
    append(in, sizeof(in), "\n"); /* a blank line is no request */
    chat_line(in, sizeof(in), "c3", "fake", "hi");
    chat_line(in, sizeof(in), "c4", "fake", "hi");
    put_file("file-ok", in);
    put_batch("batch_ok", "/v1/chat/completions", "file-ok", SB_VALIDATING, 0, 0, 0);
    struct rig r;
    rig_start(&r, NULL, 0, 0);
    struct store_batch b;
    wait_status("batch_ok", SB_COMPLETED, &b);
    assert_string_equal(b.model, "fake");
    assert_int_equal(b.total, 5);
    assert_int_equal(b.completed, 4);
    assert_int_equal(b.failed, 1);
    assert_true(b.in_progress_at > 0 && b.finalizing_at > 0 && b.completed_at > 0);
    char *out = file_text(b.output_file_id), *err = file_text(b.error_file_id);
    assert_int_equal(count_lines(out), 4);
    assert_int_equal(count_lines(err), 1);
    /* in input order, whatever order they ran in */
    assert_true(strstr(out, "\"c0\"") < strstr(out, "\"c1\"") && strstr(out, "\"c1\"") < strstr(out, "\"c3\""));
    assert_non_null(strstr(out, "\"c4\""));
    assert_non_null(strstr(err, "\"c2\""));
    assert_non_null(strstr(err, "refused by the fake backend"));
    struct store_file f;
    assert_int_equal(store_file_get(g_st, b.output_file_id, &f), NS_OK);
    assert_string_equal(f.filename, "batch_ok_output.jsonl");
    assert_int_equal(f.expires_at, b.created_at + 3600);
    assert_int_equal(f.bytes, (int64_t)strlen(out));
    store_file_release(&f);
    assert_int_equal(n_webhooks("batch_ok", "batch.completed"), 1);
    free(out);
    free(err);
    store_batch_release(&b);
    rig_stop(&r);
}

/* every line succeeds: no error file (and the reverse: no output file when all fail) */
static void test_no_empty_files(void **state)
{
    (void)state;
    char in[1024] = "", in2[1024] = "";
    chat_line(in, sizeof(in), "a", "fake", "hi");
    chat_line(in2, sizeof(in2), "a", "fake", "fail");
    put_file("file-allok", in);
    put_file("file-allbad", in2);
    put_batch("batch_allok", "/v1/chat/completions", "file-allok", SB_VALIDATING, 0, 0, 0);
    put_batch("batch_allbad", "/v1/chat/completions", "file-allbad", SB_VALIDATING, 0, 0, 0);
    struct rig r;
    rig_start(&r, NULL, 0, 0);
    struct store_batch b;
    wait_status("batch_allok", SB_COMPLETED, &b);
    assert_true(b.output_file_id[0] != '\0');
    assert_string_equal(b.error_file_id, "");
    store_batch_release(&b);
    wait_status("batch_allbad", SB_COMPLETED, &b);
    assert_string_equal(b.output_file_id, "");
    assert_true(b.error_file_id[0] != '\0');
    assert_int_equal(b.failed, 1);
    store_batch_release(&b);
    rig_stop(&r);
}

/* the batch's errors, checked to hold code (and param, when not NULL) */
static void assert_failed_with(const char *id, const char *code, const char *param)
{
    struct store_batch b;
    wait_status(id, SB_FAILED, &b);
    assert_non_null(b.errors);
    assert_true(b.failed_at > 0);
    char want[96];
    snprintf(want, sizeof(want), "\"code\":\"%s\"", code);
    if (!strstr(b.errors, want))
        fail_msg("%s: %s has no %s", id, b.errors, want);
    if (param) {
        snprintf(want, sizeof(want), "\"param\":\"%s\"", param);
        if (!strstr(b.errors, want))
            fail_msg("%s: %s has no %s", id, b.errors, want);
    }
    assert_int_equal(b.total, 0);
    assert_string_equal(b.output_file_id, "");
    store_batch_release(&b);
    int64_t pending = -1, running = -1;
    assert_int_equal(store_lines_count_unfinished(g_st, id, &pending, &running), NS_OK);
    assert_int_equal(pending + running, 0); /* no line was inserted */
    assert_int_equal(n_webhooks(id, "batch.failed"), 1);
}

static void test_validation_failures(void **state)
{
    (void)state;
    char in[2048] = "";
    /* the input file row is gone */
    put_batch("batch_nofile", "/v1/chat/completions", "file-missing", SB_VALIDATING, 0, 0, 0);
    /* a line that is not JSON, among good ones: the whole OpenAI batch fails */
    chat_line(in, sizeof(in), "a", "fake", "hi");
    append(in, sizeof(in), "{not json\n");
    chat_line(in, sizeof(in), "b", "fake", "hi");
    put_file("file-badline", in);
    put_batch("batch_badline", "/v1/chat/completions", "file-badline", SB_VALIDATING, 0, 0, 0);
    /* a model this server does not serve */
    in[0] = '\0';
    chat_line(in, sizeof(in), "a", "gpt-nope", "hi");
    put_file("file-nomodel", in);
    put_batch("batch_nomodel", "/v1/chat/completions", "file-nomodel", SB_VALIDATING, 0, 0, 0);
    /* more lines than max_lines (3 here) */
    in[0] = '\0';
    for (int i = 0; i < 4; i++) {
        char cid[8];
        snprintf(cid, sizeof(cid), "l%d", i);
        chat_line(in, sizeof(in), cid, "fake", "hi");
    }
    put_file("file-toomany", in);
    put_batch("batch_toomany", "/v1/chat/completions", "file-toomany", SB_VALIDATING, 0, 0, 0);
    /* no request at all */
    put_file("file-empty", "\n\n");
    put_batch("batch_empty", "/v1/chat/completions", "file-empty", SB_VALIDATING, 0, 0, 0);
    /* the store knows the file, the disk does not */
    put_file("file-gone", "x\n");
    char path[256];
    batchmgr_file_path(g_dir, "file-gone", path, sizeof(path));
    assert_int_equal(unlink(path), 0);
    put_batch("batch_gone", "/v1/chat/completions", "file-gone", SB_VALIDATING, 0, 0, 0);

    struct rig r;
    rig_start(&r, NULL, 0, 3);
    assert_failed_with("batch_nofile", "invalid_file", "input_file_id");
    assert_failed_with("batch_badline", "invalid_json_line", NULL);
    assert_failed_with("batch_nomodel", "model_not_found", "body.model");
    assert_failed_with("batch_toomany", "too_large", NULL);
    assert_failed_with("batch_empty", "invalid_file", NULL);
    assert_failed_with("batch_gone", "invalid_file", NULL);
    struct store_batch b;
    assert_int_equal(store_batch_get(g_st, "batch_badline", &b), NS_OK);
    assert_non_null(strstr(b.errors, "\"line\":2")); /* the line at fault is named */
    store_batch_release(&b);
    rig_stop(&r);
}

/* Message Batches: a bad request is an errored result of its own; the batch still runs */
static void test_message_batch_errors_per_line(void **state)
{
    (void)state;
    char in[2048] = "";
    msg_line(in, sizeof(in), "m0", "fake", "hi");
    append(in, sizeof(in), "{not json\n");
    msg_line(in, sizeof(in), "m2", "claude-nope", "hi");
    msg_line(in, sizeof(in), "m3", "fake", "fail");
    put_file("file-msg", in);
    put_batch("msgbatch_a", "/v1/messages", "file-msg", SB_VALIDATING, 0, 0, 0);
    struct rig r;
    rig_start(&r, NULL, 0, 0);
    struct store_batch b;
    wait_status("msgbatch_a", SB_COMPLETED, &b);
    assert_null(b.errors);
    assert_int_equal(b.completed, 1);
    assert_int_equal(b.failed, 3);
    char *out = file_text(b.output_file_id), *err = file_text(b.error_file_id);
    assert_int_equal(count_lines(out), 1);
    assert_int_equal(count_lines(err), 3);
    assert_non_null(strstr(out, "\"m0\""));
    assert_non_null(strstr(err, "\"line-2\"")); /* no custom_id: named after its line */
    assert_non_null(strstr(err, "\"m2\""));
    assert_non_null(strstr(err, "\"m3\""));
    assert_non_null(strstr(err, "errored"));
    assert_non_null(strstr(err, "not_found_error")); /* the unknown model, as Anthropic says it */
    free(out);
    free(err);
    store_batch_release(&b);
    rig_stop(&r);
}

/* cancel: the lines in the engine finish, the others are settled as batch_cancelled */
static void test_cancel_waits_for_running_lines(void **state)
{
    (void)state;
    char in[2048] = "";
    for (int i = 0; i < 5; i++) {
        char cid[8];
        snprintf(cid, sizeof(cid), "h%d", i);
        chat_line(in, sizeof(in), cid, "fake", "hold");
    }
    put_file("file-hold", in);
    put_batch("batch_cancel", "/v1/chat/completions", "file-hold", SB_VALIDATING, 0, 0, 0);
    struct rig r;
    rig_start(&r, NULL, 0, 0);
    struct store_batch b;
    wait_status("batch_cancel", SB_IN_PROGRESS, &b);
    for (int i = 0; i < 1000 && atomic_load(&g_held) < FAKE_HOLD_MAX; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&g_held), FAKE_HOLD_MAX);
    /* as POST /v1/batches/{id}/cancel does it */
    b.status = SB_CANCELLING;
    b.cancelling_at = time(NULL);
    assert_int_equal(store_batch_update(g_st, &b, SB_IN_PROGRESS), NS_OK);
    store_batch_release(&b);
    batchmgr_kick(r.m);
    usleep(700 * 1000); /* a round or two: held lines keep it cancelling, however long */
    assert_int_equal(store_batch_get(g_st, "batch_cancel", &b), NS_OK);
    assert_int_equal(b.status, SB_CANCELLING);
    store_batch_release(&b);
    atomic_store(&g_release, true);
    wait_status("batch_cancel", SB_CANCELLED, &b);
    assert_true(b.cancelled_at > 0);
    assert_int_equal(b.completed, FAKE_HOLD_MAX);
    assert_int_equal(b.failed, 5 - FAKE_HOLD_MAX);
    assert_int_equal(b.canceled, 5 - FAKE_HOLD_MAX);
    char *err = file_text(b.error_file_id);
    assert_int_equal(count_lines(err), 5 - FAKE_HOLD_MAX);
    assert_non_null(strstr(err, "batch_cancelled"));
    assert_int_equal(count_lines(strstr(err, "because the batch was cancelled") ? err : ""), 5 - FAKE_HOLD_MAX);
    free(err);
    assert_int_equal(n_webhooks("batch_cancel", "batch.cancelled"), 1);
    store_batch_release(&b);
    rig_stop(&r);
}

/* cancelled before validation: an OpenAI batch ends with no lines; an Anthropic Message
 * Batch reads its requests, each a canceled result */
static void test_cancel_before_validation(void **state)
{
    (void)state;
    char in[2048] = "";
    chat_line(in, sizeof(in), "a", "fake", "hi");
    chat_line(in, sizeof(in), "b", "fake", "hi");
    put_file("file-cv", in);
    put_batch("batch_cv", "/v1/chat/completions", "file-cv", SB_CANCELLING, 0, 0, 0);
    in[0] = '\0';
    msg_line(in, sizeof(in), "a", "fake", "hi");
    msg_line(in, sizeof(in), "b", "fake", "hi");
    append(in, sizeof(in), "[]\n"); /* a bad one: errored, not canceled */
    put_file("file-mcv", in);
    put_batch("msgbatch_cv", "/v1/messages", "file-mcv", SB_CANCELLING, 0, 0, 0);
    struct rig r;
    rig_start(&r, NULL, 0, 0);
    struct store_batch b;
    wait_status("batch_cv", SB_CANCELLED, &b);
    assert_int_equal(b.total, 0);
    assert_int_equal(b.completed + b.failed, 0);
    assert_string_equal(b.output_file_id, "");
    assert_string_equal(b.error_file_id, "");
    store_batch_release(&b);
    wait_status("msgbatch_cv", SB_CANCELLED, &b);
    assert_int_equal(b.completed, 0);
    assert_int_equal(b.failed, 3);
    assert_int_equal(b.canceled, 2);
    char *err = file_text(b.error_file_id);
    assert_int_equal(count_lines(err), 3);
    assert_non_null(strstr(err, "\"canceled\""));
    assert_non_null(strstr(err, "\"errored\""));
    free(err);
    store_batch_release(&b);
    rig_stop(&r);
}

/* past expires_at, never started (not_before ahead): every line batch_expired */
static void test_expiry(void **state)
{
    (void)state;
    char in[2048] = "";
    for (int i = 0; i < 3; i++) {
        char cid[8];
        snprintf(cid, sizeof(cid), "e%d", i);
        chat_line(in, sizeof(in), cid, "fake", "hi");
    }
    put_file("file-exp", in);
    int64_t now = time(NULL);
    put_batch("batch_exp", "/v1/chat/completions", "file-exp", SB_VALIDATING, now - 100, now - 1, now + 3600);
    struct rig r;
    rig_start(&r, NULL, 0, 0);
    struct store_batch b;
    wait_status("batch_exp", SB_EXPIRED, &b);
    assert_true(b.expired_at > 0);
    assert_int_equal(b.total, 3);
    assert_int_equal(b.completed, 0); /* not_before: no line ran */
    assert_int_equal(b.failed, 3);
    assert_int_equal(b.expired, 3);
    assert_string_equal(b.output_file_id, "");
    char *err = file_text(b.error_file_id);
    assert_int_equal(count_lines(err), 3);
    assert_non_null(strstr(err, "batch_expired"));
    assert_non_null(strstr(err, "\"e0\""));
    free(err);
    assert_int_equal(n_webhooks("batch_exp", "batch.expired"), 1);
    store_batch_release(&b);
    rig_stop(&r);
}

/* lines of an in-progress batch, as validation inserts them (input written to g_dir/files) */
static void put_running_batch(const char *id, const char *file_id, int n, bool write_file)
{
    char in[4096] = "";
    struct store_line lines[8];
    char cids[8][16];
    assert_true(n <= 8);
    for (int i = 0; i < n; i++) {
        size_t off = strlen(in);
        snprintf(cids[i], sizeof(cids[i]), "r%d", i);
        chat_line(in, sizeof(in), cids[i], "fake", "hi");
        lines[i] = (struct store_line){.idx = i, .line_no = (uint32_t)i + 1, .custom_id = cids[i],
                                       .off = (int64_t)off, .len = (int64_t)(strlen(in) - off - 1),
                                       .url = BATCHFILE_URL_CHAT, .model = (char *)"fake"};
    }
    if (write_file)
        put_file(file_id, in);
    put_batch(id, "/v1/chat/completions", file_id, SB_VALIDATING, 0, 0, 0);
    struct store_batch b;
    assert_int_equal(store_batch_get(g_st, id, &b), NS_OK);
    free(b.model);
    b.model = strdup("fake");
    b.status = SB_IN_PROGRESS;
    b.in_progress_at = time(NULL);
    assert_int_equal(store_batch_update(g_st, &b, SB_VALIDATING), NS_OK);
    store_batch_release(&b);
    assert_int_equal(store_lines_insert(g_st, id, lines, n), NS_OK);
}

/* a restart after kill -9: lines that were running are requeued, the batch resumes */
static void test_restart_resumes(void **state)
{
    (void)state;
    put_running_batch("batch_resume", "file-resume", 4, true);
    struct store_line *got = NULL;
    int n = 0;
    assert_int_equal(store_lines_claim(g_st, "batch_resume", "fake", 2, &got, &n), NS_OK); /* the dead process's */
    assert_int_equal(n, 2);
    for (int i = 0; i < n; i++)
        store_line_release(&got[i]);
    free(got);
    struct rig r;
    rig_start(&r, NULL, 0, 0);
    struct store_batch b;
    wait_status("batch_resume", SB_COMPLETED, &b);
    assert_int_equal(b.completed, 4);
    assert_int_equal(b.failed, 0);
    char *out = file_text(b.output_file_id);
    assert_int_equal(count_lines(out), 4);
    free(out);
    store_batch_release(&b);
    rig_stop(&r);
}

/* the input file vanished behind the server's back: the batch cannot run, and says so,
 * but it can still be cancelled */
static void test_input_vanished_then_cancel(void **state)
{
    (void)state;
    put_running_batch("batch_vanished", "file-vanished", 3, false);
    struct rig r;
    rig_start(&r, NULL, 0, 0);
    batchmgr_kick(r.m);
    usleep(300 * 1000);
    struct store_batch b;
    assert_int_equal(store_batch_get(g_st, "batch_vanished", &b), NS_OK);
    assert_int_equal(b.status, SB_IN_PROGRESS); /* stuck: nothing ran */
    assert_int_equal(b.completed + b.failed, 0);
    b.status = SB_CANCELLING;
    b.cancelling_at = time(NULL);
    assert_int_equal(store_batch_update(g_st, &b, SB_IN_PROGRESS), NS_OK);
    store_batch_release(&b);
    batchmgr_kick(r.m);
    wait_status("batch_vanished", SB_CANCELLED, &b);
    assert_int_equal(b.failed, 3);
    assert_int_equal(b.canceled, 3);
    store_batch_release(&b);
    rig_stop(&r);
}

/* the output files cannot be written (no files directory): the batch waits in finalizing,
 * and ends once they can */
static void test_finalize_retried(void **state)
{
    (void)state;
    char in[1024] = "", data[128], files[160];
    chat_line(in, sizeof(in), "a", "fake", "hi");
    put_file("file-fin", in);
    put_batch("batch_fin", "/v1/chat/completions", "file-fin", SB_VALIDATING, 0, 0, 0);
    snprintf(data, sizeof(data), "%s/other", g_dir);
    snprintf(files, sizeof(files), "%s/files", data);
    assert_int_equal(mkdir(data, 0700), 0);
    struct rig r;
    rig_start(&r, data, 0, 0);
    struct store_batch b;
    wait_status("batch_fin", SB_FINALIZING, &b);
    store_batch_release(&b);
    usleep(1200 * 1000); /* two rounds or more: no files directory, so never completed */
    assert_int_equal(store_batch_get(g_st, "batch_fin", &b), NS_OK);
    assert_int_equal(b.status, SB_FINALIZING);
    assert_string_equal(b.output_file_id, "");
    store_batch_release(&b);
    assert_int_equal(n_webhooks("batch_fin", "batch.completed"), 0);
    assert_int_equal(mkdir(files, 0700), 0);
    batchmgr_kick(r.m);
    wait_status("batch_fin", SB_COMPLETED, &b);
    char *out = file_text(b.output_file_id);
    assert_int_equal(count_lines(out), 1);
    free(out);
    struct store_file f;
    assert_int_equal(store_file_get(g_st, b.output_file_id, &f), NS_OK);
    assert_int_equal(strncmp(f.path, files, strlen(files)), 0);
    store_file_release(&f);
    assert_int_equal(n_webhooks("batch_fin", "batch.completed"), 1);
    store_batch_release(&b);
    rig_stop(&r);
}

/* ended Message Batches past their retention are deleted with their files; OpenAI batches
 * are kept */
/* ended Message Batches past their retention, and stored responses past theirs */
static void test_purge_message_batches(void **state)
{
    (void)state;
    int64_t old = time(NULL) - 100;
    put_file("file-p-in", "x\n");
    put_file("file-p-out", "y\n");
    put_batch("msgbatch_old", "/v1/messages", "file-p-in", SB_VALIDATING, old, 0, 0);
    struct store_batch b;
    assert_int_equal(store_batch_get(g_st, "msgbatch_old", &b), NS_OK);
    b.status = SB_COMPLETED;
    b.completed_at = old + 1;
    snprintf(b.output_file_id, sizeof(b.output_file_id), "file-p-out");
    assert_int_equal(store_batch_update(g_st, &b, SB_VALIDATING), NS_OK);
    store_batch_release(&b);
    put_file("file-p-oai", "z\n");
    put_batch("batch_old", "/v1/chat/completions", "file-p-oai", SB_VALIDATING, old, 0, 0);
    assert_int_equal(store_batch_get(g_st, "batch_old", &b), NS_OK);
    b.status = SB_FAILED;
    b.failed_at = old + 1;
    assert_int_equal(store_batch_update(g_st, &b, SB_VALIDATING), NS_OK);
    store_batch_release(&b);

    /* stored responses: one past the 30 days OpenAI keeps them, one new */
    static const char *const rids[] = {"resp_old", "resp_new"};
    for (int i = 0; i < 2; i++) {
        struct store_response sr = {.created_at = time(NULL) - (i ? 0 : 31 * 86400), .status = SR_COMPLETED,
                                    .model = "fake", .request = "{}", .body = "{}"};
        snprintf(sr.id, sizeof(sr.id), "%s", rids[i]);
        assert_int_equal(store_response_insert(g_st, &sr), NS_OK);
    }

    struct rig r;
    rig_start(&r, NULL, 10, 0);
    struct store_response sr;
    int rc = NS_OK;
    for (int i = 0; i < 1000 && rc == NS_OK; i++) {
        rc = store_response_get(g_st, "resp_old", &sr);
        if (rc == NS_OK) {
            store_response_release(&sr);
            usleep(10000);
        }
    }
    assert_int_equal(rc, NS_ERR_NOT_FOUND);
    assert_int_equal(store_response_get(g_st, "resp_new", &sr), NS_OK);
    store_response_release(&sr);
    rc = NS_OK;
    for (int i = 0; i < 1000 && rc == NS_OK; i++) {
        rc = store_batch_get(g_st, "msgbatch_old", &b);
        if (rc == NS_OK) {
            store_batch_release(&b);
            usleep(10000);
        }
    }
    assert_int_equal(rc, NS_ERR_NOT_FOUND);
    struct store_file f;
    assert_int_equal(store_file_get(g_st, "file-p-in", &f), NS_ERR_NOT_FOUND);
    assert_int_equal(store_file_get(g_st, "file-p-out", &f), NS_ERR_NOT_FOUND);
    char path[256];
    batchmgr_file_path(g_dir, "file-p-out", path, sizeof(path));
    assert_int_not_equal(access(path, F_OK), 0);
    /* the OpenAI one stays (it runs the same round, before or after: both are done now) */
    assert_int_equal(store_batch_get(g_st, "batch_old", &b), NS_OK);
    store_batch_release(&b);
    assert_int_equal(store_file_get(g_st, "file-p-oai", &f), NS_OK);
    store_file_release(&f);
    rig_stop(&r);
}

/* a batch a sched still works but the store says ended (another node finished it) or no
 * longer has: dropped from the sched */
static void test_forget_ended(void **state)
{
    (void)state;
    put_file("file-fe", "x\n");
    put_batch("batch_fe", "/v1/chat/completions", "file-fe", SB_VALIDATING, 0, 0, 0);
    struct store_batch b;
    assert_int_equal(store_batch_get(g_st, "batch_fe", &b), NS_OK);
    b.status = SB_FAILED;
    b.failed_at = time(NULL);
    assert_int_equal(store_batch_update(g_st, &b, SB_VALIDATING), NS_OK);
    store_batch_release(&b);
    char path[256];
    batchmgr_file_path(g_dir, "file-fe", path, sizeof(path));
    struct rig r;
    rig_start(&r, NULL, 0, 0);
    assert_int_equal(sched_add_batch(r.s, "batch_fe", path), NS_OK);
    assert_int_equal(sched_add_batch(r.s, "batch_nowhere", path), NS_OK);
    batchmgr_kick(r.m);
    for (int i = 0; i < 1000 && (sched_batch_inflight(r.s, "batch_fe") >= 0 ||
                                 sched_batch_inflight(r.s, "batch_nowhere") >= 0); i++)
        usleep(10000);
    assert_int_equal(sched_batch_inflight(r.s, "batch_fe"), -1);
    assert_int_equal(sched_batch_inflight(r.s, "batch_nowhere"), -1);
    rig_stop(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_window_and_paths),
        cmocka_unit_test(test_sched_for),
        cmocka_unit_test(test_completes_with_files),
        cmocka_unit_test(test_no_empty_files),
        cmocka_unit_test(test_validation_failures),
        cmocka_unit_test(test_message_batch_errors_per_line),
        cmocka_unit_test(test_cancel_waits_for_running_lines),
        cmocka_unit_test(test_cancel_before_validation),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_restart_resumes),
        cmocka_unit_test(test_input_vanished_then_cancel),
        cmocka_unit_test(test_finalize_retried),
        cmocka_unit_test(test_purge_message_batches),
        cmocka_unit_test(test_forget_ended),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
