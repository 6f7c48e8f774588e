/*
 * log.h — what the server says on stderr: one line per event, as text ("nightshift: ...",
 * for a person at a terminal or journald) or as one JSON object per line
 * (`--log-format json`: {"time", "level", "msg", "model", "batch_id", "request_id"}, for a
 * log pipeline).
 *
 * Messages never carry secrets: API keys and webhook secrets are only ever held in memory
 * (backend.h, webhook.h), and no message formats them.
 *
 * THREADS: any; each event is one write.
 */
#ifndef NS_UTIL_LOG_H
#define NS_UTIL_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* text (default) or JSON lines; set once at start */
void log_set_json(bool json);
bool log_is_json(void);

/* one event; model and batch_id may be NULL. Text: "nightshift: [warning: ]msg". */
void log_event(enum log_level level, const char *model, const char *batch_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* one event of an HTTP request: request_id is the x-request-id of its answer (what the SDKs
 * show as _request_id), so a client's report finds its lines. Text: "nightshift:
 * [warning: ]request req_...: msg"; JSON: its "request_id" field. */
void log_request(enum log_level level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
