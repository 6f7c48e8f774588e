/*
 * backend_gemini_state.c — gemini-batch's state file and restored lines
 * (backend_gemini_int.h; the design is in backend_gemini.c's header comment).
 */
#include "backend_gemini_int.h"

#include "../util/buf.h"
#include "../util/durable.h"
#include "../util/log.h"
#include "../util/status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *gs_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void backend_gemini_state_save(struct gemini_backend *gb)
{
    if (!gb->state_path)
        return;
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "jobs");
    for (struct gb_batch *b = gb->batches; b; b = b->next) {
        if (b->ended)
            continue; /* its results are in memory; a restart resubmits its unclaimed lines */
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", b->name);
        cJSON_AddStringToObject(o, "display", b->display);
        cJSON *ks = cJSON_AddArrayToObject(o, "keys");
        for (int i = 0; i < b->n_keys; i++)
            cJSON_AddItemToArray(ks, cJSON_CreateString(b->keys[i]));
        cJSON *ls = cJSON_AddArrayToObject(o, "lines");
        for (struct gb_job *j = b->jobs; j; j = j->next) {
            cJSON *l = cJSON_CreateObject();
            cJSON_AddStringToObject(l, "key", j->key);
            cJSON_AddStringToObject(l, "hash", j->hash);
            cJSON_AddItemToArray(ls, l);
        }
        cJSON_AddItemToArray(arr, o);
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s || durable_write_file(gb->state_path, s, strlen(s)) != NS_OK)
        log_event(LOG_WARN, gb->name, NULL,
                  "model '%s': cannot write %s (%s): after a crash its Gemini jobs would be submitted again",
                  gb->name, gb->state_path, s ? strerror(errno) : "out of memory");
    free(s);
}

void backend_gemini_state_load(struct gemini_backend *gb)
{
    FILE *f = gb->state_path ? fopen(gb->state_path, "rb") : NULL;
    if (!f)
        return;
    struct buf b;
    buf_init(&b, 1u << 30);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (buf_append(&b, chunk, n))
            break;
    fclose(f);
    cJSON *root = cJSON_ParseWithLength(b.p ? b.p : "", b.len);
    buf_release(&b);
    const cJSON *o;
    int jobs = 0, lines = 0;
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(root, "jobs"))
    {
        struct gb_batch *bt = calloc(1, sizeof(*bt));
        if (!bt)
            break;
        snprintf(bt->name, sizeof(bt->name), "%s", gs_str(o, "name") ? gs_str(o, "name") : "");
        snprintf(bt->display, sizeof(bt->display), "%s", gs_str(o, "display") ? gs_str(o, "display") : "");
        bt->restored = true;
        const cJSON *ks = cJSON_GetObjectItemCaseSensitive(o, "keys");
        int nk = cJSON_GetArraySize(ks);
        if (nk && (bt->keys = calloc((size_t)nk, sizeof(*bt->keys)))) {
            bt->n_keys = nk;
            for (int i = 0; i < nk; i++)
                snprintf(bt->keys[i], sizeof(bt->keys[i]), "%s",
                         cJSON_IsString(cJSON_GetArrayItem(ks, i)) ? cJSON_GetArrayItem(ks, i)->valuestring : "");
        }
        struct gb_job **tail = &bt->jobs;
        const cJSON *l;
        cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(o, "lines"))
        {
            struct gb_job *j = calloc(1, sizeof(*j));
            if (!j)
                break;
            snprintf(j->key, sizeof(j->key), "%s", gs_str(l, "key") ? gs_str(l, "key") : "");
            snprintf(j->hash, sizeof(j->hash), "%s", gs_str(l, "hash") ? gs_str(l, "hash") : "");
            j->attempts = 1;
            *tail = j;
            tail = &j->next;
            bt->n++;
        }
        bt->next = gb->batches;
        gb->batches = bt;
        jobs++;
        lines += bt->n;
    }
    cJSON_Delete(root);
    if (jobs)
        log_event(LOG_INFO, gb->name, NULL, "model '%s': %d Gemini batch jobs (%d lines) from before the restart: "
                                            "polling them again",
                  gb->name, jobs, lines);
}

static size_t gb_bucket(const struct gemini_backend *gb, const char *hash)
{
    char h[16];
    snprintf(h, sizeof(h), "%.15s", hash);
    return (size_t)strtoull(h, NULL, 16) & (gb->hcap - 1);
}

void backend_gemini_index_build(struct gemini_backend *gb)
{
    free(gb->hidx);
    gb->hidx = NULL;
    gb->hcap = 0;
    size_t n = 0;
    for (struct gb_batch *b = gb->batches; b; b = b->next)
        for (struct gb_job *j = b->restored ? b->jobs : NULL; j; j = j->next)
            n += !j->req;
    if (!n)
        return;
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    if (!(gb->hidx = calloc(cap, sizeof(*gb->hidx))))
        return; /* no index: lines are sent again rather than matched */
    gb->hcap = cap;
    for (struct gb_batch *b = gb->batches; b; b = b->next)
        for (struct gb_job *j = b->restored ? b->jobs : NULL; j; j = j->next)
            if (!j->req) {
                size_t k = gb_bucket(gb, j->hash);
                j->hbatch = b;
                j->hnext = gb->hidx[k];
                gb->hidx[k] = j;
            }
}

struct gb_job *backend_gemini_index_take(struct gemini_backend *gb, const char *hash, struct gb_batch **bo)
{
    if (!gb->hcap)
        return NULL;
    for (struct gb_job **pp = &gb->hidx[gb_bucket(gb, hash)]; *pp; pp = &(*pp)->hnext) {
        struct gb_job *j = *pp;
        if (!strcmp(j->hash, hash) && (!j->hbatch->ended || j->result)) {
            *pp = j->hnext;
            *bo = j->hbatch;
            return j;
        }
    }
    return NULL;
}
