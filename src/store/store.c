/*
 * store.c — the registry of stores and the helpers shared by every implementation.
 */
#include "store.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static const struct store_ops *const store_registry[] = {
    &store_sqlite_ops,
    &store_pg_ops,
};

const struct store_ops *store_find(const char *uri)
{
    if (!uri || !*uri || strncmp(uri, "sqlite:", 7) == 0 || !strstr(uri, "://"))
        return &store_sqlite_ops;
    for (size_t i = 0; i < sizeof(store_registry) / sizeof(store_registry[0]); i++) {
        const char *names[2] = {store_registry[i]->scheme, store_registry[i]->alias};
        for (int k = 0; k < 2; k++) {
            size_t n = names[k] ? strlen(names[k]) : 0;
            if (n && strncmp(uri, names[k], n) == 0 && uri[n] == ':')
                return store_registry[i];
        }
    }
    return NULL;
}

void store_file_release(struct store_file *f)
{
    free(f->filename);
    free(f->path);
    f->filename = f->path = NULL;
}

void store_batch_release(struct store_batch *b)
{
    free(b->model);
    free(b->metadata);
    free(b->errors);
    b->model = b->metadata = b->errors = NULL;
}

void store_line_release(struct store_line *l)
{
    free(l->custom_id);
    free(l->model);
    l->custom_id = l->model = NULL;
}

static const char *const store_status_names[SB_STATUS_COUNT_] = {
    [SB_VALIDATING] = "validating", [SB_FAILED] = "failed",       [SB_IN_PROGRESS] = "in_progress",
    [SB_FINALIZING] = "finalizing", [SB_COMPLETED] = "completed", [SB_EXPIRED] = "expired",
    [SB_CANCELLING] = "cancelling", [SB_CANCELLED] = "cancelled",
};

const char *store_batch_status_name(enum store_batch_status s)
{
    return (unsigned)s < SB_STATUS_COUNT_ ? store_status_names[s] : "unknown";
}

bool store_batch_status_terminal(enum store_batch_status s)
{
    return s == SB_FAILED || s == SB_COMPLETED || s == SB_EXPIRED || s == SB_CANCELLED;
}

void store_webhook_release(struct store_webhook *w)
{
    if (!w)
        return;
    free(w->url);
    free(w->body);
    w->url = w->body = NULL;
}

/* one per thread: an operation fails and is reported on the same thread */
static _Thread_local char store_err[256];

void store_note_error(const char *msg)
{
    size_t n = strcspn(msg ? msg : "", "\n");
    snprintf(store_err, sizeof(store_err), "%.*s", (int)n, msg ? msg : "");
}

void store_last_error(char *buf, size_t n)
{
    snprintf(buf, n, "%s", store_err);
}
