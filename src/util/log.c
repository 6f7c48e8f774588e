/*
 * log.c — see log.h.
 */
#include "log.h"

#include <cjson/cJSON.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static atomic_bool log_json;

void log_set_json(bool json) { atomic_store(&log_json, json); }
bool log_is_json(void) { return atomic_load(&log_json); }

static const char *const log_names[] = {"debug", "info", "warn", "error"};

static void log_write(enum log_level level, const char *model, const char *batch_id, const char *request_id,
                      const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));
static void log_write(enum log_level level, const char *model, const char *batch_id, const char *request_id,
                      const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (!atomic_load(&log_json)) {
        fprintf(stderr, "nightshift: %s%s%s%s%s\n", level == LOG_WARN ? "warning: " : "", request_id ? "request " : "",
                request_id ? request_id : "", request_id ? ": " : "", msg);
        fflush(stderr);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(ts.tv_nsec / 1000000) % 1000);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "time", when);
    cJSON_AddStringToObject(o, "level", log_names[level >= LOG_DEBUG && level <= LOG_ERROR ? level : LOG_INFO]);
    cJSON_AddStringToObject(o, "msg", msg);
    if (model)
        cJSON_AddStringToObject(o, "model", model);
    if (batch_id)
        cJSON_AddStringToObject(o, "batch_id", batch_id);
    if (request_id)
        cJSON_AddStringToObject(o, "request_id", request_id);
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (line) {
        fprintf(stderr, "%s\n", line);
        fflush(stderr);
        free(line);
    }
}

void log_event(enum log_level level, const char *model, const char *batch_id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_write(level, model, batch_id, NULL, fmt, ap);
    va_end(ap);
}

void log_request(enum log_level level, const char *request_id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_write(level, NULL, NULL, request_id && *request_id ? request_id : NULL, fmt, ap);
    va_end(ap);
}
