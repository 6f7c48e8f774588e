/*
 * route.c — see route.h.
 */
#include "route.h"

#include "../util/status.h"

#include <cjson/cJSON.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct route_conf route_default_conf(void)
{
    struct route_conf c = {.margin = 0.2, .turnaround_s = 60, .min_observe_s = 10, .alpha = 0.3, .tick_s = 1};
    return c;
}

void route_rate_sample(struct route_rate *r, const struct route_conf *c, double now, int64_t done, bool busy)
{
    if (!busy) {
        r->running = false; /* the next busy stretch starts a new interval; the rate stays */
        return;
    }
    if (!r->running) {
        r->running = true;
        r->last_t = now;
        r->last_done = done;
        if (!r->known) {
            r->first_t = now;
            r->first_done = done;
        }
        return;
    }
    if (now - r->last_t < c->tick_s)
        return;
    double inst = (double)(done - r->last_done) / (now - r->last_t);
    if (!r->known) {
        if (now - r->first_t >= c->min_observe_s) {
            r->rate = (double)(done - r->first_done) / (now - r->first_t);
            r->known = true;
        }
    } else {
        r->rate = c->alpha * inst + (1 - c->alpha) * r->rate;
    }
    r->last_t = now;
    r->last_done = done;
}

int64_t route_plan(const struct route_conf *c, const struct route_rate *r, double now, double deadline, int64_t left,
                   int64_t pending_here, int64_t pending_there)
{
    double time_left = deadline - now;
    if (!r->known || deadline <= 0 || time_left <= 0)
        return 0;
    double capacity = r->rate * time_left / (1 + c->margin);
    if ((double)left > capacity) {
        int64_t spill = (int64_t)ceil((double)left - capacity);
        return spill < pending_here ? spill : pending_here;
    }
    double reserve = time_left - c->turnaround_s * (1 + c->margin);
    if (pending_there <= 0 || reserve <= 0)
        return 0;
    int64_t back = (int64_t)floor(r->rate * reserve / (1 + 2 * c->margin) - (double)left);
    if (back <= 0)
        return 0;
    return -(back < pending_there ? back : pending_there);
}

/* days from 1970-01-01 of a proleptic Gregorian date (no timegm: not C11) */
static int64_t route_days(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int route_parse_time(const char *s, double *out)
{
    if (!s || !*s)
        return NS_ERR_INVALID;
    bool digits = true;
    for (const char *p = s; *p; p++)
        digits = digits && (isdigit((unsigned char)*p) || *p == '.');
    if (digits) {
        char *end = NULL;
        double v = strtod(s, &end);
        if (*end || !isfinite(v) || v <= 0)
            return NS_ERR_INVALID;
        *out = v;
        return NS_OK;
    }
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n < 19 || mo < 1 ||
        mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return NS_ERR_INVALID;
    const char *p = s + n;
    double frac = 0;
    if (*p == '.') {
        char *end = NULL;
        frac = strtod(p, &end);
        if (end == p + 1)
            return NS_ERR_INVALID;
        p = end;
    }
    int off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, k = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5 || oh > 23 || om > 59)
            return NS_ERR_INVALID;
        off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return NS_ERR_INVALID; /* RFC 3339 needs the offset */
    }
    if (*p)
        return NS_ERR_INVALID;
    *out = (double)(route_days(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off) + frac;
    return NS_OK;
}

double route_deadline(const char *metadata, int64_t expires_at)
{
    double deadline = (double)expires_at;
    cJSON *m = metadata ? cJSON_Parse(metadata) : NULL;
    cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "deadline");
    double t = 0;
    char num[32];
    const char *text = cJSON_IsString(v) ? v->valuestring : NULL;
    if (cJSON_IsNumber(v)) {
        snprintf(num, sizeof(num), "%.3f", v->valuedouble);
        text = num;
    }
    if (text && route_parse_time(text, &t) == NS_OK && (deadline <= 0 || t < deadline))
        deadline = t;
    cJSON_Delete(m);
    return deadline;
}
