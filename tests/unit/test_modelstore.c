/* Unit tests: backend/hub and backend/modelstore without a network: quantization tags of
 * file names, the choice of files for a tag (default, case, splits in order, the error
 * listing the tags), both shapes of the Hub's listing, the store's directory from the
 * environment, which --model values are references, and finding, listing and removing
 * models by their manifests in a temporary store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/backend/hub.h"
#include "../../src/backend/modelstore.h"
#include "../../src/engine/ggufinfo.h"
#include "../../src/util/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_file_tag(void **state)
{
    (void)state;
    char t[64];
    assert_true(hub_file_tag("Llama-3.2-1B-Instruct-Q4_K_M.gguf", t, sizeof(t)));
    assert_string_equal(t, "Q4_K_M");
    assert_true(hub_file_tag("model.q8_0.gguf", t, sizeof(t)));
    assert_string_equal(t, "q8_0");
    assert_true(hub_file_tag("Q4_K_M/big-Q4_K_M-00001-of-00003.gguf", t, sizeof(t)));
    assert_string_equal(t, "Q4_K_M");
    assert_true(hub_file_tag("x-IQ3_XS.gguf", t, sizeof(t)));
    assert_string_equal(t, "IQ3_XS");
    assert_true(hub_file_tag("x-bf16.gguf", t, sizeof(t)));
    assert_string_equal(t, "bf16");
    assert_true(hub_file_tag("x-F16-00002-of-00002.gguf", t, sizeof(t)));
    assert_string_equal(t, "F16");
    /* no tag-shaped part: the whole stem is the tag */
    assert_true(hub_file_tag("stories260K.gguf", t, sizeof(t)));
    assert_string_equal(t, "stories260K");
    assert_false(hub_file_tag("README.md", t, sizeof(t)));
    assert_false(hub_file_tag("mmproj-model-f16.gguf", t, sizeof(t)));
    assert_false(hub_file_tag("imatrix.gguf", t, sizeof(t)));
}

static void listing_of(struct hub_listing *l, const char *const *paths, int n)
{
    l->files = calloc((size_t)n, sizeof(*l->files));
    l->n = n;
    for (int i = 0; i < n; i++) {
        snprintf(l->files[i].path, sizeof(l->files[i].path), "%s", paths[i]);
        if (!hub_file_tag(paths[i], l->files[i].tag, sizeof(l->files[i].tag)))
            l->files[i].tag[0] = '\0';
    }
}

static void test_select(void **state)
{
    (void)state;
    static const char *const paths[] = {"README.md", "m-Q8_0.gguf", "Q4_K_M/m-Q4_K_M-00002-of-00002.gguf",
                                        "Q4_K_M/m-Q4_K_M-00001-of-00002.gguf", "m-Q5_K_S.gguf"};
    struct hub_listing l;
    listing_of(&l, paths, 5);
    int idx[8];
    char tag[64], err[1200];
    /* no tag: Q4_K_M, both splits, the first first */
    assert_int_equal(hub_select(&l, NULL, idx, 8, tag, sizeof(tag), err, sizeof(err)), 2);
    assert_string_equal(tag, "Q4_K_M");
    assert_int_equal(idx[0], 3);
    assert_int_equal(idx[1], 2);
    /* any case */
    assert_int_equal(hub_select(&l, "q8_0", idx, 8, tag, sizeof(tag), err, sizeof(err)), 1);
    assert_string_equal(tag, "Q8_0");
    assert_int_equal(idx[0], 1);
    /* unknown: the tags there are */
    assert_int_equal(hub_select(&l, "Q2_K", idx, 8, tag, sizeof(tag), err, sizeof(err)), 0);
    assert_string_equal(err, "no quantization 'Q2_K' in the repository (it has: Q8_0, Q4_K_M, Q5_K_S)");
    hub_listing_release(&l);

    /* no Q4_K_M and several: no default */
    static const char *const two[] = {"a-Q8_0.gguf", "a-F16.gguf"};
    listing_of(&l, two, 2);
    assert_int_equal(hub_select(&l, "", idx, 8, tag, sizeof(tag), err, sizeof(err)), 0);
    assert_string_equal(err, "the repository has 2 quantizations; name one as ORG/REPO:QUANT (it has: Q8_0, F16)");
    hub_listing_release(&l);
    /* only one: it */
    static const char *const one[] = {"README.md", "a-Q6_K.gguf"};
    listing_of(&l, one, 2);
    assert_int_equal(hub_select(&l, NULL, idx, 8, tag, sizeof(tag), err, sizeof(err)), 1);
    assert_string_equal(tag, "Q6_K");
    hub_listing_release(&l);
    /* none */
    static const char *const none[] = {"README.md", "config.json"};
    listing_of(&l, none, 2);
    assert_int_equal(hub_select(&l, NULL, idx, 8, tag, sizeof(tag), err, sizeof(err)), 0);
    assert_string_equal(err, "the repository has no GGUF model file");
    hub_listing_release(&l);
}

static void test_listing_parse(void **state)
{
    (void)state;
    char err[256];
    struct hub_listing l;
    /* the tree API: lfs.oid; directories skipped */
    const char *tree = "[{\"type\":\"directory\",\"oid\":\"x\",\"size\":0,\"path\":\"sub\"},"
                       "{\"type\":\"file\",\"oid\":\"abc\",\"size\":12,\"path\":\"README.md\"},"
                       "{\"type\":\"file\",\"oid\":\"def\",\"size\":134,\"path\":\"m-Q4_K_M.gguf\",\"lfs\":{\"oid\":"
                       "\"9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08\",\"size\":1934567890,"
                       "\"pointerSize\":134}}]";
    assert_int_equal(hub_listing_parse(tree, strlen(tree), &l, err, sizeof(err)), NS_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.files[0].path, "README.md");
    assert_string_equal(l.files[0].sha256, "");
    assert_string_equal(l.files[0].tag, "");
    assert_true(l.files[1].size == 1934567890ull);
    assert_string_equal(l.files[1].sha256, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    assert_string_equal(l.files[1].tag, "Q4_K_M");
    hub_listing_release(&l);
    /* the model-info API: siblings with rfilename and lfs.sha256 */
    const char *info = "{\"id\":\"a/b\",\"siblings\":[{\"rfilename\":\"x-Q8_0.gguf\",\"size\":5,\"lfs\":{\"sha256\":"
                       "\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\",\"size\":5}}]}";
    assert_int_equal(hub_listing_parse(info, strlen(info), &l, err, sizeof(err)), NS_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.files[0].path, "x-Q8_0.gguf");
    assert_string_equal(l.files[0].tag, "Q8_0");
    hub_listing_release(&l);
    assert_int_equal(hub_listing_parse("{\"error\":1}", 11, &l, err, sizeof(err)), NS_ERR_UPSTREAM);
    assert_int_equal(hub_listing_parse("nope", 4, &l, err, sizeof(err)), NS_ERR_UPSTREAM);
}

static void test_file_url(void **state)
{
    (void)state;
    struct hub_conf c = {.endpoint = "https://hub.example/", .token = NULL};
    char url[512];
    assert_int_equal(hub_file_url(&c, "org/repo", "Q4 K/m-Q4_K_M.gguf", url, sizeof(url)), NS_OK);
    assert_string_equal(url, "https://hub.example/org/repo/resolve/main/Q4%20K/m-Q4_K_M.gguf");
    assert_int_equal(hub_file_url(&c, "org/repo", "x.gguf", url, 20), NS_ERR_INVALID);
}

static void test_dir_env(void **state)
{
    (void)state;
    char d[512], err[256];
    setenv("NIGHTSHIFT_MODELS", "/m", 1);
    setenv("XDG_CACHE_HOME", "/x", 1);
    setenv("HOME", "/h", 1);
    assert_int_equal(modelstore_dir(d, sizeof(d), err, sizeof(err)), NS_OK);
    assert_string_equal(d, "/m");
    unsetenv("NIGHTSHIFT_MODELS");
    assert_int_equal(modelstore_dir(d, sizeof(d), err, sizeof(err)), NS_OK);
    assert_string_equal(d, "/x/nightshift/models");
    unsetenv("XDG_CACHE_HOME");
    assert_int_equal(modelstore_dir(d, sizeof(d), err, sizeof(err)), NS_OK);
    assert_string_equal(d, "/h/.cache/nightshift/models");
    unsetenv("HOME");
    assert_int_equal(modelstore_dir(d, sizeof(d), err, sizeof(err)), NS_ERR_INVALID);
    assert_non_null(strstr(err, "NIGHTSHIFT_MODELS"));
}

static void test_is_ref(void **state)
{
    (void)state;
    assert_true(modelstore_is_ref("hf.co/org/repo"));
    assert_true(modelstore_is_ref("huggingface.co/org/repo:Q4_K_M"));
    assert_true(modelstore_is_ref("https://example.com/x.gguf"));
    assert_true(modelstore_is_ref("org/repo:q8_0"));
    assert_true(modelstore_is_ref("plain-name"));
    assert_false(modelstore_is_ref("models/tiny.gguf")); /* a path, even when missing */
    assert_false(modelstore_is_ref("/"));                /* exists */
    assert_false(modelstore_is_ref("a/b/c"));            /* not ORG/REPO */
    assert_false(modelstore_is_ref("org/repo:bad tag"));
    assert_false(modelstore_is_ref(""));
}

/* a manifest written by hand, as a pull leaves it */
static void put(const char *root, const char *rel, const char *text)
{
    char p[1024], cmd[1200];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\"", p);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void manifest(const char *root, const char *repo, const char *tag, const char *file)
{
    char rel[512], text[2048];
    snprintf(rel, sizeof(rel), "manifests/%s/%s.json", repo, tag);
    snprintf(text, sizeof(text),
             "{\"name\":\"%s:%s\",\"source\":\"hf.co/%s:%s\",\"files\":[{\"path\":\"%s\",\"local\":\"files/%s/%s\","
             "\"size\":3,\"sha256\":\"\"}],\"size\":3,\"pulled_at\":\"2026-01-01T00:00:00Z\",\"pulled_unix\":1}",
             repo, tag, repo, tag, file, repo, file);
    put(root, rel, text);
    snprintf(rel, sizeof(rel), "files/%s/%s", repo, file);
    put(root, rel, "abc");
}

static void test_find_list_remove(void **state)
{
    (void)state;
    char root[] = "/tmp/ns-modelstore-XXXXXX";
    assert_non_null(mkdtemp(root));
    char err[2048];
    struct modelstore_model m, *all = NULL;
    int n = -1;
    /* empty (no manifests dir): nothing, no error */
    assert_int_equal(modelstore_list(root, &all, &n, err, sizeof(err)), NS_OK);
    assert_int_equal(n, 0);
    free(all);
    manifest(root, "org/one", "Q8_0", "one-Q8_0.gguf");
    manifest(root, "org/one", "Q4_K_M", "one-Q4_K_M.gguf");
    manifest(root, "org/two", "F16", "two-F16.gguf");
    manifest(root, "org/three", "Q8_0", "three-Q8_0.gguf");
    manifest(root, "org/three", "Q6_K", "three-Q6_K.gguf");
    put(root, "manifests/org/broken/Q8_0.json", "{not json");
    assert_int_equal(modelstore_list(root, &all, &n, err, sizeof(err)), NS_OK);
    assert_int_equal(n, 5); /* the unreadable one left out */
    assert_string_equal(all[0].name, "org/one:Q4_K_M");
    assert_string_equal(all[4].name, "org/two:F16");
    free(all);

    assert_int_equal(modelstore_find(root, "hf.co/org/one:q8_0", &m, err, sizeof(err)), NS_OK);
    assert_string_equal(m.name, "org/one:Q8_0");
    char want[512];
    snprintf(want, sizeof(want), "%s/files/org/one/one-Q8_0.gguf", root);
    assert_string_equal(m.path, want);
    assert_true(m.size == 3);
    assert_int_equal(m.n_files, 1);
    /* no tag: the only one, else Q4_K_M, else an error listing them */
    assert_int_equal(modelstore_find(root, "org/two", &m, err, sizeof(err)), NS_OK);
    assert_string_equal(m.name, "org/two:F16");
    assert_int_equal(modelstore_find(root, "org/one", &m, err, sizeof(err)), NS_OK);
    assert_string_equal(m.name, "org/one:Q4_K_M");
    assert_int_equal(modelstore_find(root, "org/three", &m, err, sizeof(err)), NS_ERR_MODEL_NOT_FOUND);
    assert_non_null(strstr(err, "has 2 quantizations of org/three; name one as org/three:QUANT"));
    assert_int_equal(modelstore_find(root, "org/two:Q8_0", &m, err, sizeof(err)), NS_ERR_MODEL_NOT_FOUND);
    assert_non_null(strstr(err, "it has org/two as: F16"));
    assert_int_equal(modelstore_find(root, "org/none:Q8_0", &m, err, sizeof(err)), NS_ERR_MODEL_NOT_FOUND);
    assert_int_equal(modelstore_find(root, "bad name!", &m, err, sizeof(err)), NS_ERR_INVALID);
    assert_int_equal(modelstore_find(root, "org/broken:Q8_0", &m, err, sizeof(err)), NS_ERR_IO);
    assert_non_null(strstr(err, "unreadable"));

    /* remove: the files, the manifest and the directories left empty */
    assert_int_equal(modelstore_remove(root, "org/two", &m, err, sizeof(err)), NS_OK);
    assert_string_equal(m.name, "org/two:F16");
    char p[1024];
    struct stat sb;
    snprintf(p, sizeof(p), "%s/files/org/two", root);
    assert_int_not_equal(stat(p, &sb), 0);
    snprintf(p, sizeof(p), "%s/manifests/org/two", root);
    assert_int_not_equal(stat(p, &sb), 0);
    snprintf(p, sizeof(p), "%s/files/org/one/one-Q8_0.gguf", root);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(modelstore_remove(root, "org/two", &m, err, sizeof(err)), NS_ERR_MODEL_NOT_FOUND);
    /* an unreadable manifest is removed all the same */
    assert_int_equal(modelstore_remove(root, "org/broken:Q8_0", NULL, err, sizeof(err)), NS_OK);

    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

static void test_plan_refs(void **state)
{
    (void)state;
    /* refused before any request: nothing that could be pulled */
    struct hub_conf c = {.endpoint = "http://127.0.0.1:9", .token = NULL};
    struct modelstore_pull *p = (void *)1;
    char err[1024];
    assert_int_equal(modelstore_pull_plan("/tmp", &c, "just-a-name", &p, err, sizeof(err)), NS_ERR_INVALID);
    assert_null(p);
    assert_non_null(strstr(err, "is not something to pull"));
    assert_int_equal(modelstore_pull_plan("/tmp", &c, "https://example.com/", &p, err, sizeof(err)), NS_ERR_INVALID);
    /* a URL: its file name is the model's name; no request until it runs */
    assert_int_equal(modelstore_pull_plan("/tmp", &c, "https://example.com/d/my-model.Q8_0.gguf?x=1", &p, err, sizeof(err)),
                     NS_OK);
    assert_string_equal(modelstore_pull_name(p), "my-model.Q8_0");
    assert_int_equal(modelstore_pull_files(p), 1);
    modelstore_pull_free(p);
    /* a Hub that does not answer: the listing fails, saying which repository */
    assert_int_equal(modelstore_pull_plan("/tmp", &c, "org/repo", &p, err, sizeof(err)), NS_ERR_UPSTREAM);
    assert_non_null(strstr(err, "cannot list repository 'org/repo'"));
}

static void test_gguf_facts(void **state)
{
    (void)state;
    assert_string_equal(ggufinfo_template_name(NULL), "none");
    assert_string_equal(ggufinfo_template_name("{{ '<|im_start|>' + m.role }}"), "chatml");
    assert_string_equal(ggufinfo_template_name("<|start_header_id|>{{ role }}<|end_header_id|>"), "llama3");
    assert_string_equal(ggufinfo_template_name("<start_of_turn>user"), "gemma");
    assert_string_equal(ggufinfo_template_name("{{ messages }}"), "jinja");
    /* not a GGUF file: said, naming it */
    char path[] = "/tmp/ns-ggufinfo-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "GGXF", 4), 4);
    close(fd);
    struct engine_info in;
    char err[512];
    assert_int_equal(ggufinfo_read(path, &in, NULL, err, sizeof(err)), NS_ERR_INVALID);
    assert_non_null(strstr(err, "is not a GGUF model file"));
    unlink(path);
    assert_int_equal(ggufinfo_read("/nonexistent.gguf", &in, NULL, err, sizeof(err)), NS_ERR_INVALID);
    assert_non_null(strstr(err, "cannot open model '/nonexistent.gguf'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_tag),     cmocka_unit_test(test_select),  cmocka_unit_test(test_listing_parse),
        cmocka_unit_test(test_file_url),     cmocka_unit_test(test_is_ref),  cmocka_unit_test(test_find_list_remove),
        cmocka_unit_test(test_plan_refs),    cmocka_unit_test(test_dir_env), cmocka_unit_test(test_gguf_facts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
