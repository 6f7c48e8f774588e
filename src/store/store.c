/*
 * store.c — the registry of stores and the helpers shared by every implementation.
 */
#include "store.h"

#include "../util/clock.h"
#include "../util/status.h"

#include <errno.h>
#include <time.h>

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

void store_response_release(struct store_response *r)
{
    if (!r)
        return;
    free(r->model);
    free(r->previous_id);
    free(r->request);
    free(r->body);
    r->model = r->previous_id = r->request = r->body = NULL;
}

/* the Responses API's words (the object's "status") */
static const char *const store_response_status_names[SR_STATUS_COUNT_] = {
    [SR_QUEUED] = "queued",       [SR_IN_PROGRESS] = "in_progress", [SR_COMPLETED] = "completed",
    [SR_INCOMPLETE] = "incomplete", [SR_FAILED] = "failed",         [SR_CANCELLED] = "cancelled",
};

const char *store_response_status_name(enum store_response_status s)
{
    return (unsigned)s < SR_STATUS_COUNT_ ? store_response_status_names[s] : "unknown";
}

int store_response_status_of(const char *name)
{
    for (int s = 0; name && s < SR_STATUS_COUNT_; s++)
        if (strcmp(name, store_response_status_names[s]) == 0)
            return s;
    return -1;
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

struct store_retry store_retry_begin(void)
{
    return (struct store_retry){.tries = 0, .start = clock_now()};
}

bool store_retry_again(struct store_retry *r, int rc)
{
    r->tries++;
    if (rc != NS_ERR_BUSY || r->tries >= STORE_BUSY_TRIES || (clock_now() - r->start) * 1000 >= STORE_BUSY_BUDGET_MS)
        return false;
    /* 10, 20, 40 ms plus up to as much again at random: two nodes (or threads of two
     * processes) that collided do not collide again in step */
    long ms = 10L << (r->tries - 1);
    ms += rand() % ms;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = ms * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    return true;
}

int store_status_of_sqlstate(const char *sqlstate)
{
    /* serialization_failure, deadlock_detected: PostgreSQL rolled the transaction back
     * and says that running it again may well succeed */
    if (sqlstate && (strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0))
        return NS_ERR_BUSY;
    return NS_ERR_IO;
}

/* for the store implementations (routes): see store.h */
struct store_route *store_route_row(struct store_route **arr, int *n, int *cap, const char *name)
{
    for (int i = 0; i < *n; i++)
        if (strcmp((*arr)[i].backend, name) == 0)
            return &(*arr)[i];
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 4;
        struct store_route *v = realloc(*arr, sizeof(*v) * (size_t)c);
        if (!v)
            return NULL;
        *arr = v;
        *cap = c;
    }
    struct store_route *r = &(*arr)[(*n)++];
    memset(r, 0, sizeof(*r));
    snprintf(r->backend, sizeof(r->backend), "%s", name);
    return r;
}
