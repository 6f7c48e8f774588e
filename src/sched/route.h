/*
 * route.h — spill-over planning: whether a batch will miss its deadline on its model's
 * backend, how many of its lines should go to the model's fallback (spill_to) now, and how
 * many may come back when the backend's rate recovers. Pure: every function takes the
 * caller's clock (`now`, seconds), so tests drive it with a simulated one.
 *
 * THE RULE (docs/API.md, "Spill-over and fail-over")
 *   rate      lines this backend finished per second for the batch, smoothed: the mean over
 *             the first min_observe_s of work, then an exponential moving average
 *             (weight alpha) of each tick's rate. Measured only while the backend has lines
 *             of the batch (an idle backend is not a slow one).
 *   capacity  rate * (deadline - now) / (1 + margin): what it finishes in time, with the
 *             safety margin.
 *   spill     left - capacity lines, when positive (left: the lines routed to this backend
 *             and unfinished), at most the pending ones: they go to the fallback now, the
 *             last ones first.
 *   back      rate * (deadline - now - turnaround * (1 + margin)) / (1 + 2 * margin) - left,
 *             when positive, at most the lines still pending at the fallback: the fallback's
 *             expected turnaround is kept in reserve, so a line taken back can still be
 *             spilled again in time, and the stricter margin keeps the two from flapping.
 * No plan before the rate is known (min_observe_s of work).
 *
 * THREADS: none (plain state, owned by the caller).
 */
#ifndef NS_SCHED_ROUTE_H
#define NS_SCHED_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

struct route_conf {
    double margin;          /* safety share of the prediction; default 0.2 */
    double turnaround_s;    /* the fallback's expected turnaround (a line given to it -> its result); default 60 */
    double min_observe_s;   /* work seen before the rate counts; default 10 */
    double alpha;           /* weight of the newest tick in the average; default 0.3 */
    double tick_s;          /* shortest interval between two samples; default 1 */
};
struct route_conf route_default_conf(void);

struct route_rate {
    double rate;            /* lines per second, once known */
    bool known;
    bool running;           /* sampling (the backend has lines of the batch) */
    double first_t, last_t; /* start of the measure, last sample */
    int64_t first_done, last_done;
};

/* a sample at `now`: `done` lines of the batch finished on this backend so far; busy:
 * whether it has lines of the batch to work on (an idle stretch is not measured) */
void route_rate_sample(struct route_rate *r, const struct route_conf *c, double now, int64_t done, bool busy);

/* > 0: lines to spill to the fallback now; < 0: lines to take back from it; 0: none.
 * left: lines routed here and unfinished; pending_here: of those, not yet started;
 * pending_there: this model's lines pending at the fallback */
int64_t route_plan(const struct route_conf *c, const struct route_rate *r, double now, double deadline, int64_t left,
                   int64_t pending_here, int64_t pending_there);

/* A batch's deadline (unix seconds): metadata's "deadline" (RFC 3339, "2026-12-07T10:00:00Z"
 * or with an offset, or unix seconds as a number or a string of digits) when given and
 * earlier than expires_at, else expires_at (its completion_window from creation); 0 when
 * neither. metadata: the batch's metadata JSON object text, or NULL. */
double route_deadline(const char *metadata, int64_t expires_at);
/* RFC 3339 date-time or unix seconds into unix seconds; 0 ok */
int route_parse_time(const char *s, double *out);

#endif
