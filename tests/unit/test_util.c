/* Unit tests: util/ (buf, utf8, strset, num, status, sha256). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/util/base64.h"
#include "../../src/util/buf.h"
#include "../../src/util/durable.h"
#include "../../src/util/jsonscan.h"
#include "../../src/util/path.h"
#include "../../src/util/num.h"
#include "../../src/util/sha256.h"
#include "../../src/util/status.h"
#include "../../src/util/strset.h"
#include "../../src/util/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_buf_cap(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 8);
    assert_int_equal(buf_appends(&b, "hello"), NS_OK);
    assert_int_equal(buf_appends(&b, "abc"), NS_OK);
    assert_int_equal(b.len, 8);
    assert_int_equal(buf_appends(&b, "x"), NS_ERR_TOO_LARGE);
    assert_string_equal(b.p, "helloabc"); /* unchanged by the failed append */
    buf_truncate(&b, 2);
    assert_string_equal(b.p, "he");
    assert_int_equal(buf_appendf(&b, "%d%s", 12, "3456"), NS_OK);
    assert_string_equal(b.p, "he123456");
    assert_int_equal(buf_appendf(&b, "%d", 7), NS_ERR_TOO_LARGE);
    char *s = buf_detach(&b);
    assert_string_equal(s, "he123456");
    assert_null(b.p);
    free(s);
    buf_release(&b);
    /* no cap at all: SIZE_MAX (max + 1 must not wrap to a zero-size realloc) */
    buf_init(&b, SIZE_MAX);
    for (int i = 0; i < 100; i++)
        assert_int_equal(buf_appends(&b, "0123456789"), NS_OK);
    assert_int_equal(b.len, 1000);
    assert_memory_equal(b.p + 990, "0123456789", 11);
    buf_release(&b);
}

static void test_utf8(void **state)
{
    (void)state;
    assert_int_equal(utf8_valid_prefix("abc", 3), 3);
    assert_int_equal(utf8_valid_prefix("a\xc3\xa9z", 4), 4);             /* é */
    assert_int_equal(utf8_valid_prefix("ab\xc0\xaf", 4), 2);             /* overlong */
    assert_int_equal(utf8_valid_prefix("ab\xed\xa0\x80", 5), 2);         /* surrogate */
    assert_int_equal(utf8_valid_prefix("\xf0\x9f\x98\x80", 4), 4);       /* emoji */
    assert_int_equal(utf8_valid_prefix("\xf4\x90\x80\x80", 4), 0);       /* > U+10FFFF */
    assert_int_equal(utf8_incomplete_tail("ab\xe2\x82", 4), 2);
    assert_int_equal(utf8_incomplete_tail("ab\xe2\x82\xac", 5), 0);
    assert_int_equal(utf8_incomplete_tail("ab\xf0", 3), 1);
    assert_int_equal(utf8_incomplete_tail("abc", 3), 0);
    char s[32] = "IN\xED\x03V";
    size_t n = utf8_sanitize(s, 5, sizeof(s) - 1);
    assert_int_equal(n, 7);
    assert_memory_equal(s, "IN\xEF\xBF\xBD\x03V", 7);
    /* no room: '?' instead */
    char t[6] = "a\xffz";
    n = utf8_sanitize(t, 3, 3);
    assert_int_equal(n, 3);
    assert_memory_equal(t, "a?z", 3);
}

static void test_strset(void **state)
{
    (void)state;
    struct strset s;
    strset_init(&s);
    char keys[500][16];
    for (int i = 0; i < 500; i++) {
        snprintf(keys[i], sizeof(keys[i]), "id-%d", i);
        assert_int_equal(strset_add(&s, keys[i]), 0);
    }
    assert_int_equal(strset_add(&s, "id-42"), 1);
    assert_true(strset_has(&s, "id-499"));
    assert_false(strset_has(&s, "id-500"));
    assert_int_equal(s.n, 500);
    strset_release(&s);
    assert_false(strset_has(&s, "id-1"));
}

static void test_num(void **state)
{
    (void)state;
    long long v;
    uint64_t u;
    assert_int_equal(num_parse_long("42", 0, 100, &v), NS_OK);
    assert_int_equal(v, 42);
    assert_int_equal(num_parse_long("42x", 0, 100, &v), NS_ERR_INVALID);
    assert_int_equal(num_parse_long("", 0, 100, &v), NS_ERR_INVALID);
    assert_int_equal(num_parse_long("101", 0, 100, &v), NS_ERR_INVALID);
    assert_int_equal(num_parse_long("-1", 0, 100, &v), NS_ERR_INVALID);
    assert_int_equal(num_parse_size("200MB", &u), NS_OK);
    assert_int_equal(u, 200000000ULL);
    assert_int_equal(num_parse_size("1GiB", &u), NS_OK);
    assert_int_equal(u, 1ULL << 30);
    assert_int_equal(num_parse_size("12parsecs", &u), NS_ERR_INVALID);
    assert_int_equal(num_parse_size("-5", &u), NS_ERR_INVALID);
}

static void test_sha256(void **state)
{
    (void)state;
    char hex[65];
    sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* 56 bytes: the length no longer fits the first block's padding */
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(m, strlen(m), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* a million 'a' */
    unsigned char d[32];
    char *a = malloc(1000000);
    assert_non_null(a);
    memset(a, 'a', 1000000);
    sha256_digest_of(a, 1000000, d);
    free(a);
    static const unsigned char want[32] = {0xcd, 0xc7, 0x6e, 0x5c, 0x99, 0x14, 0xfb, 0x92, 0x81, 0xa1, 0xc7,
                                           0xe2, 0x84, 0xd7, 0x3e, 0x67, 0xf1, 0x80, 0x9a, 0x48, 0xa4, 0x97,
                                           0x20, 0x0e, 0x04, 0x6d, 0x39, 0xcc, 0xc7, 0x11, 0x2c, 0xd0};
    assert_memory_equal(d, want, 32);
    /* HMAC-SHA256, RFC 4231 test case 2 */
    unsigned char mac[32];
    sha256_hmac("Jefe", 4, "what do ya want for nothing?", 28, mac);
    static const unsigned char want_mac[8] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e};
    assert_memory_equal(mac, want_mac, 8);
    /* base64: padded and unpadded in, padded out, junk refused */
    char enc[16];
    unsigned char dec[16];
    assert_int_equal(base64_encode((const unsigned char *)"ab", 2, enc), 4);
    assert_string_equal(enc, "YWI=");
    assert_int_equal(base64_decode("YWI=", dec), 2);
    assert_int_equal(base64_decode("YWI", dec), 2);
    assert_memory_equal(dec, "ab", 2);
    assert_int_equal(base64_decode("Y!I=", dec), (size_t)-1);
}

static void test_status_table(void **state)
{
    (void)state;
    assert_int_equal(status_http(NS_ERR_INVALID), 400);
    assert_int_equal(status_http(NS_ERR_NOT_FOUND), 404);
    assert_int_equal(status_http(NS_ERR_TOO_LARGE), 413);
    assert_int_equal(status_http(NS_ERR_RATE_LIMIT), 429);
    assert_int_equal(status_http(NS_ERR_UNAVAILABLE), 503);
    assert_int_equal(status_http(NS_ERR_METHOD), 405);
    assert_int_equal(status_http(NS_ERR_BUSY), 503);
    assert_string_equal(status_code(NS_ERR_BUSY), "store_busy");
    assert_int_equal(status_http(NS_ERR_CANCELLED), 0);
    assert_string_equal(status_code(NS_ERR_CANCELLED), "batch_cancelled");
    assert_string_equal(status_code(NS_ERR_EXPIRED), "batch_expired");
    assert_string_equal(status_code(NS_ERR_CONTEXT), "context_length_exceeded");
    assert_string_equal(status_type(NS_ERR_INVALID), "invalid_request_error");
    /* out of range maps to internal, never crashes */
    assert_int_equal(status_http(9999), 500);
    for (int i = 1; i < NS_STATUS_COUNT_; i++)
        assert_non_null(status_name(i));
    /* issue 31.6: a 4xx is final (x-should-retry: false) except 429; a 5xx may pass later.
     * A 409 (cancelling an ended batch) is no transient conflict: the SDKs retried it */
    assert_false(status_retryable(NS_ERR_CONFLICT));
    assert_true(status_retryable(NS_ERR_QUOTA_TOKENS));
    for (int i = 1; i < NS_STATUS_COUNT_; i++) {
        int h = status_http(i);
        if (h >= 400 && h < 500)
            assert_true(status_retryable(i) == (h == 429 || h == 408));
        else if (h >= 500)
            assert_true(status_retryable(i));
    }
}

/* issue 27.13: NUL inside JSON strings, raw or escaped, and whether it is in custom_id */
static void test_jsonscan_nul(void **state)
{
    (void)state;
    bool in = true;
    const char *ok = "{\"custom_id\":\"a\\\\u0000\",\"body\":{\"x\":\"\\\\\"}}"; /* an escaped backslash, then u0000 */
    assert_int_equal(jsonscan_nul(ok, strlen(ok), "custom_id", &in), -1);
    assert_false(in);
    const char *cid = "{\"custom_id\":\"b\\u0000x\",\"method\":\"POST\"}";
    assert_int_equal(jsonscan_nul(cid, strlen(cid), "custom_id", &in), 15);
    assert_true(in);
    const char *body = "{\"custom_id\":\"b\",\"body\":{\"custom_id\":\"\\u0000\"}}";
    assert_true(jsonscan_nul(body, strlen(body), "custom_id", &in) > 0);
    assert_false(in); /* a nested member of the same name is not the line's custom_id */
    const char raw[] = "{\"custom_id\":\"b\0x\"}";
    assert_int_equal(jsonscan_nul(raw, sizeof(raw) - 1, "custom_id", &in), 15);
    assert_true(in);
    const char *key = "{\"a\\u0000\":1}";
    assert_int_equal(jsonscan_nul(key, strlen(key), "custom_id", &in), 3);
    assert_false(in);
    /* truncated input: never reads past n */
    assert_int_equal(jsonscan_nul("\"\\u00", 5, NULL, NULL), -1);
    assert_int_equal(jsonscan_nul("\"\\", 2, NULL, NULL), -1);
}

/* issue 27.2: one file by device and inode, or by canonical name before it exists */
static void test_path_same_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/ns-path-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char a[128], b[128], link_[128], dot[160], missing[160], missing2[200];
    snprintf(a, sizeof(a), "%s/a", dir);
    snprintf(b, sizeof(b), "%s/b", dir);
    snprintf(link_, sizeof(link_), "%s/l", dir);
    snprintf(dot, sizeof(dot), "%s/./a", dir);
    snprintf(missing, sizeof(missing), "%s/new.jsonl", dir);
    snprintf(missing2, sizeof(missing2), "%s/../%s/new.jsonl", dir, strrchr(dir, '/') + 1);
    FILE *f = fopen(a, "w");
    assert_non_null(f);
    fclose(f);
    f = fopen(b, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(link(a, link_), 0);
    assert_true(path_same_file(a, a));
    assert_true(path_same_file(a, dot));
    assert_true(path_same_file(a, link_));
    assert_false(path_same_file(a, b));
    assert_false(path_same_file(a, missing));
    assert_true(path_same_file(missing, missing2));
    unlink(a);
    unlink(b);
    unlink(link_);
    rmdir(dir);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* issue 27.3: a durable file is complete or absent at every fault point; the Nth call of
 * an operation fails once (NIGHTSHIFT_FAULT_DURABLE, read at the first durable_open) */
static void test_durable(void **state)
{
    (void)state;
    char dir[] = "/tmp/ns-durable-XXXXXX";
    assert_non_null(mkdtemp(dir));
    /* call 2 fails at open, 3 at write, 4 at fsync, 5 at rename, 6 at dirsync (a call that
     * fails stops there, so each is the second call of its operation) */
    setenv("NIGHTSHIFT_FAULT_DURABLE", "open:2,write:2,fsync:2,rename:2,dirsync:2", 1);
    for (int k = 1; k <= 7; k++) {
        char path[128];
        snprintf(path, sizeof(path), "%s/f%d", dir, k);
        int rc = durable_write_file(path, "hello", 5);
        struct stat st;
        bool there = stat(path, &st) == 0;
        if (k == 1 || k == 7) {
            assert_int_equal(rc, 0);
            assert_true(there);
            assert_int_equal(st.st_size, 5);
            assert_int_equal(st.st_mode & 0777, 0600);
        } else {
            assert_int_not_equal(rc, 0);
            /* the directory sync is the only failure after which the file is in place */
            assert_true(there == (k == 6));
        }
    }
    /* no temporary file is left by any of them: 3 files (1, 6, 7) */
    assert_int_equal(count_entries(dir), 3);
    /* rollback leaves nothing; a stream commit works */
    struct durable d;
    char path[128];
    snprintf(path, sizeof(path), "%s/s", dir);
    assert_int_equal(durable_open(&d, path), 0);
    durable_rollback(&d);
    assert_int_equal(count_entries(dir), 3);
    assert_int_equal(durable_open_mode(&d, path, 0644), 0);
    FILE *f = durable_stream(&d);
    assert_non_null(f);
    fprintf(f, "x=%d\n", 42);
    assert_int_equal(durable_commit(&d), 0);
    durable_rollback(&d); /* after a commit: a no-op */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 5);
    assert_int_equal(st.st_mode & 0777, 0644);
    unsetenv("NIGHTSHIFT_FAULT_DURABLE");
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durable), cmocka_unit_test(test_jsonscan_nul), cmocka_unit_test(test_path_same_file),
        cmocka_unit_test(test_buf_cap),  cmocka_unit_test(test_utf8),         cmocka_unit_test(test_strset),
        cmocka_unit_test(test_num),      cmocka_unit_test(test_status_table), cmocka_unit_test(test_sha256),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
