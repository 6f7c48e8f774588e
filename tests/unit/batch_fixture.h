/* Unit-test fixture shared by test_sched and test_route: a batch of n chat lines for one
 * model, its input file written in dir and its rows in the store. Include after cmocka.h,
 * store.h and batchfile.h. */
#ifndef NS_TEST_BATCH_FIXTURE_H
#define NS_TEST_BATCH_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* metadata: the batch's metadata JSON or NULL; expires_in: seconds from its creation to its
 * expiry, 0 none. The file's path in path. */
static void fixture_make_batch(struct store *st, const char *dir, const char *id, int n, const char *model,
                               const char *metadata, int64_t expires_in, char *path, size_t pn)
{
    snprintf(path, pn, "%s/%s.jsonl", dir, id);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    struct store_line *lines = calloc((size_t)n, sizeof(*lines));
    char (*cids)[16] = calloc((size_t)n, sizeof(*cids));
    long off = 0;
    for (int i = 0; i < n; i++) {
        snprintf(cids[i], sizeof(cids[i]), "c%d", i);
        int len = fprintf(f, "{\"custom_id\":\"%s\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":"
                             "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}",
                          cids[i], model);
        fputc('\n', f);
        lines[i] = (struct store_line){.idx = i, .line_no = (uint32_t)i + 1, .custom_id = cids[i], .off = off,
                                       .len = len, .url = BATCHFILE_URL_CHAT, .model = (char *)model};
        off += len + 1;
    }
    fclose(f);
    struct store_batch b;
    memset(&b, 0, sizeof(b));
    snprintf(b.id, sizeof(b.id), "%s", id);
    snprintf(b.owner, sizeof(b.owner), "default");
    snprintf(b.endpoint, sizeof(b.endpoint), "/v1/chat/completions");
    snprintf(b.input_file_id, sizeof(b.input_file_id), "file-x");
    snprintf(b.completion_window, sizeof(b.completion_window), "24h");
    b.status = SB_IN_PROGRESS;
    b.created_at = time(NULL);
    b.expires_at = expires_in ? b.created_at + expires_in : 0;
    b.metadata = (char *)metadata;
    b.total = n;
    assert_int_equal(store_batch_insert(st, &b), NS_OK);
    assert_int_equal(store_lines_insert(st, id, lines, n), NS_OK);
    free(lines);
    free(cids);
}

#endif
