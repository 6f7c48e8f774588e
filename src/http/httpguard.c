/*
 * httpguard.c — see httpguard.h.
 */
#include "httpguard.h"
#include "../util/clock.h"

#include "../proto/oai.h"
#include "../util/log.h"
#include "../util/status.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

struct guard_conn {
    struct httpguard *g;
    int fd;
    double deadline;              /* the first head must be in by then (monotonic s) */
    atomic_bool head_seen;
    struct guard_conn *prev, *next;
    /* the request being served on this connection (one at a time: MHD reads the next head
     * once the answer to this one is sent); written and read on the connection's thread */
    struct httpguard_request req;
};

struct httpguard {
    struct httpguard_params p;
    char *allowed_hosts, *cors_origins, *trusted_proxies;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct guard_conn *conns;     /* waiting for their first head (mu) */
    pthread_t reaper;
    bool reaper_started, stopping;
    atomic_uint_fast64_t dropped;
};


struct httpguard_params httpguard_default_params(void)
{
    struct httpguard_params p = {.allowed_hosts = NULL, .cors_origins = NULL, .header_timeout = 10};
    return p;
}

/* ---- the header deadline ---------------------------------------------------------------- */

static void guard_unlink(struct httpguard *g, struct guard_conn *k)
{
    if (k->prev)
        k->prev->next = k->next;
    else if (g->conns == k)
        g->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
}

static void *guard_reaper(void *arg)
{
    struct httpguard *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stopping) {
        double now = clock_now();
        int n = 0;
        for (struct guard_conn *k = g->conns, *next; k; k = next) {
            next = k->next;
            if (atomic_load(&k->head_seen)) {
                guard_unlink(g, k); /* in time: no longer watched */
                continue;
            }
            if (now >= k->deadline) {
                shutdown(k->fd, SHUT_RDWR); /* MHD sees the end and closes it */
                guard_unlink(g, k);
                n++;
            }
        }
        if (n) {
            atomic_fetch_add(&g->dropped, (uint64_t)n);
            log_event(LOG_WARN, NULL, NULL, "dropped %d connection%s that sent no request head within %u s", n,
                      n == 1 ? "" : "s", g->p.header_timeout);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

static char *guard_dup(const char *s) { return s ? strdup(s) : NULL; }

struct httpguard *httpguard_start(struct httpguard_params p)
{
    struct httpguard *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->p = p;
    g->allowed_hosts = guard_dup(p.allowed_hosts);
    g->cors_origins = guard_dup(p.cors_origins);
    g->trusted_proxies = guard_dup(p.trusted_proxies);
    g->p.allowed_hosts = g->allowed_hosts;
    g->p.cors_origins = g->cors_origins;
    g->p.trusted_proxies = g->trusted_proxies;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    if ((p.allowed_hosts && !g->allowed_hosts) || (p.cors_origins && !g->cors_origins) ||
        (p.trusted_proxies && !g->trusted_proxies)) {
        httpguard_stop(g);
        return NULL;
    }
    if (p.header_timeout)
        g->reaper_started = pthread_create(&g->reaper, NULL, guard_reaper, g) == 0;
    return g;
}

void httpguard_stop(struct httpguard *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    g->stopping = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    if (g->reaper_started)
        pthread_join(g->reaper, NULL);
    /* no entry is left: MHD_stop_daemon() notified MHD_CONNECTION_NOTIFY_CLOSED for every
     * connection, which unlinked and freed it */
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g->allowed_hosts);
    free(g->cors_origins);
    free(g->trusted_proxies);
    free(g);
}

uint64_t httpguard_dropped(struct httpguard *g) { return g ? atomic_load(&g->dropped) : 0; }

void httpguard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe)
{
    struct httpguard *g = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        struct guard_conn *k = calloc(1, sizeof(*k));
        *socket_context = k;
        if (!k)
            return;
        k->g = g;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        k->fd = ci ? ci->connect_fd : -1;
        if (!g->p.header_timeout || k->fd < 0) {
            atomic_store(&k->head_seen, true);
            return;
        }
        k->deadline = clock_now() + g->p.header_timeout;
        pthread_mutex_lock(&g->mu);
        k->next = g->conns;
        if (g->conns)
            g->conns->prev = k;
        g->conns = k;
        pthread_mutex_unlock(&g->mu);
        return;
    }
    struct guard_conn *k = *socket_context;
    if (!k)
        return;
    pthread_mutex_lock(&g->mu);
    if (k->prev || g->conns == k)
        guard_unlink(g, k);
    pthread_mutex_unlock(&g->mu);
    free(k);
    *socket_context = NULL;
}

static struct guard_conn *guard_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* ---- Host and Origin ---------------------------------------------------------------------- */

/* is name (no port) in the comma-separated list? "*" any, ".example.com" that domain and
 * below, else equal (case-insensitive) */
static bool guard_listed(const char *list, const char *name, size_t n)
{
    for (const char *e = list; e && *e;) {
        const char *end = strchr(e, ',');
        size_t l = end ? (size_t)(end - e) : strlen(e);
        while (l && *e == ' ')
            e++, l--;
        while (l && e[l - 1] == ' ')
            l--;
        if (l == 1 && *e == '*')
            return true;
        if (l && *e == '.' && n >= l && strncasecmp(name + n - l, e, l) == 0)
            return true; /* a subdomain */
        if (l && *e == '.' && n == l - 1 && strncasecmp(name, e + 1, n) == 0)
            return true; /* the domain itself */
        if (l == n && strncasecmp(name, e, n) == 0)
            return true;
        e = end ? end + 1 : e + l;
    }
    return false;
}

static bool guard_host_ok(const struct httpguard *g, const char *host)
{
    if (!host || !*host)
        return true; /* HTTP/1.0 without Host: nothing a browser sends */
    char name[256];
    if (host[0] == '[')
        return true; /* an IPv6 literal */
    size_t n = strcspn(host, ":");
    if (n >= sizeof(name))
        return false;
    memcpy(name, host, n);
    name[n] = '\0';
    struct in_addr a;
    if (inet_pton(AF_INET, name, &a) == 1 || strcasecmp(name, "localhost") == 0)
        return true;
    return guard_listed(g->p.allowed_hosts, name, n);
}

/* the origin is the server itself: its host[:port] is the Host header */
static bool guard_same_origin(const char *origin, const char *host)
{
    const char *p = strstr(origin, "://");
    return p && host && strcasecmp(p + 3, host) == 0;
}

static bool guard_origin_listed(const struct httpguard *g, const char *origin)
{
    return g->p.cors_origins && guard_listed(g->p.cors_origins, origin, strlen(origin));
}

/* a new request on k's connection: its id and what log lines call it */
static void guard_request_begin(struct guard_conn *k, const char *method, const char *url)
{
    oai_make_id(k->req.id, sizeof(k->req.id), "req_");
    k->req.fallback[0] = '\0';
    snprintf(k->req.line, sizeof(k->req.line), "%.16s %.140s", method ? method : "?", url ? url : "?");
    for (char *p = k->req.line; *p; p++)
        if ((unsigned char)*p < ' ' || *p == 0x7f)
            *p = '?'; /* a decoded %0a must not start a log line of its own */
}

void httpguard_set_fallback(struct MHD_Connection *c, const char *model)
{
    struct guard_conn *k = guard_of(c);
    if (k && model)
        snprintf(k->req.fallback, sizeof(k->req.fallback), "%s", model);
}

const struct httpguard_request *httpguard_request(struct MHD_Connection *c)
{
    struct guard_conn *k = guard_of(c);
    return k && k->req.id[0] ? &k->req : NULL;
}

int httpguard_check(struct MHD_Connection *c, const char *method, const char *url, char *msg, size_t n)
{
    struct guard_conn *k = guard_of(c);
    if (!k)
        return NS_OK;
    guard_request_begin(k, method, url);
    if (!k->g)
        return NS_OK;
    atomic_store(&k->head_seen, true);
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    if (!guard_host_ok(k->g, host)) {
        snprintf(msg, n,
                 "The Host '%.100s' is not one this server answers to (a guard against DNS rebinding); start it with "
                 "--allowed-host NAME to serve that name.",
                 host);
        return NS_ERR_FORBIDDEN;
    }
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (origin && !guard_same_origin(origin, host) && !guard_origin_listed(k->g, origin)) {
        snprintf(msg, n,
                 "Cross-origin requests from '%.100s' are refused; start the server with --cors-origin %.100s to allow "
                 "them.",
                 origin, origin);
        return NS_ERR_FORBIDDEN;
    }
    return NS_OK;
}

static void guard_cors_headers(struct MHD_Response *resp, const char *origin)
{
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
    MHD_add_response_header(resp, "Vary", "Origin");
    MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                            "Retry-After, Content-Type, x-request-id, request-id, x-should-retry, x-nightshift-fallback");
}

bool httpguard_preflight(struct MHD_Connection *c, const char *method, const char *url, enum MHD_Result *ret)
{
    struct guard_conn *k = guard_of(c);
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    const char *want = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Method");
    if (strcmp(method, "OPTIONS") != 0 || !origin || !want || !k || !k->g || !guard_origin_listed(k->g, origin))
        return false;
    guard_request_begin(k, method, url);
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        *ret = MHD_NO;
        return true;
    }
    MHD_add_response_header(resp, "x-request-id", k->req.id);
    MHD_add_response_header(resp, "request-id", k->req.id);
    guard_cors_headers(resp, origin);
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
    const char *hdrs = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
    /* the SDKs send their own headers (x-stainless-*, anthropic-version, ...): echo what was
     * asked, which the origin is trusted with anyway */
    MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                            hdrs && *hdrs ? hdrs : "authorization, content-type, x-api-key, anthropic-version");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    *ret = MHD_queue_response(c, MHD_HTTP_NO_CONTENT, resp);
    MHD_destroy_response(resp);
    return true;
}

enum MHD_Result httpguard_queue(struct MHD_Connection *c, unsigned code, struct MHD_Response *resp)
{
    struct guard_conn *k = guard_of(c);
    char id[32];
    if (k && k->req.id[0])
        snprintf(id, sizeof(id), "%s", k->req.id);
    else
        oai_make_id(id, sizeof(id), "req_"); /* no state kept for the connection: an id all the same */
    /* OpenAI's SDKs read x-request-id, Anthropic's request-id: both, the same id */
    MHD_add_response_header(resp, "x-request-id", id);
    MHD_add_response_header(resp, "request-id", id);
    if (k && k->req.fallback[0])
        MHD_add_response_header(resp, "x-nightshift-fallback", k->req.fallback);
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (origin && k && k->g && guard_origin_listed(k->g, origin))
        guard_cors_headers(resp, origin);
    return MHD_queue_response(c, code, resp);
}

/* ---- trusted proxies and the origin clients reach ------------------------------------------ */

/* one entry of a proxy list ("10.0.0.1", "10.0.0.0/8", "::1", "fd00::/8") into its family,
 * address bytes and prefix length; false when malformed */
static bool guard_cidr_parse(const char *e, size_t l, int *family, unsigned char addr[16], int *bits)
{
    char tmp[64];
    if (l == 0 || l >= sizeof(tmp))
        return false;
    memcpy(tmp, e, l);
    tmp[l] = '\0';
    char *slash = strchr(tmp, '/');
    if (slash)
        *slash = '\0';
    if (inet_pton(AF_INET, tmp, addr) == 1)
        *family = AF_INET;
    else if (inet_pton(AF_INET6, tmp, addr) == 1)
        *family = AF_INET6;
    else
        return false;
    int max = *family == AF_INET ? 32 : 128;
    *bits = max;
    if (slash) {
        char *end = NULL;
        long b = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || b < 0 || b > max)
            return false;
        *bits = (int)b;
    }
    return true;
}

/* the entries of a comma-separated list, spaces around each trimmed; fn(entry, len, ud)
 * until it returns false; empty entries are skipped */
static bool guard_each(const char *list, bool (*fn)(const char *e, size_t l, void *ud), void *ud)
{
    for (const char *e = list; e && *e;) {
        const char *end = strchr(e, ',');
        size_t l = end ? (size_t)(end - e) : strlen(e);
        const char *next = end ? end + 1 : e + l;
        while (l && *e == ' ')
            e++, l--;
        while (l && e[l - 1] == ' ')
            l--;
        if (l && !fn(e, l, ud))
            return false;
        e = next;
    }
    return true;
}

struct guard_bad {
    char *err;
    size_t n;
};

static bool guard_entry_ok(const char *e, size_t l, void *ud)
{
    int family, bits;
    unsigned char addr[16];
    if (guard_cidr_parse(e, l, &family, addr, &bits))
        return true;
    struct guard_bad *b = ud;
    snprintf(b->err, b->n, "'%.*s' is not an IP address or a CIDR block (10.0.0.1, 10.0.0.0/8, ::1)",
             (int)(l > 64 ? 64 : l), e);
    return false;
}

int httpguard_proxies_check(const char *list, char *err, size_t n)
{
    struct guard_bad b = {err, n};
    return guard_each(list, guard_entry_ok, &b) ? NS_OK : NS_ERR_INVALID;
}

struct guard_peer {
    int family;
    unsigned char addr[16];
    bool found;
};

static bool guard_entry_match(const char *e, size_t l, void *ud)
{
    struct guard_peer *p = ud;
    int family, bits;
    unsigned char net[16];
    if (!guard_cidr_parse(e, l, &family, net, &bits) || family != p->family)
        return true;
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(net, p->addr, (size_t)whole) != 0)
        return true;
    if (rest && ((net[whole] ^ p->addr[whole]) & (unsigned char)(0xff << (8 - rest))))
        return true;
    p->found = true;
    return false;
}

bool httpguard_addr_listed(const char *list, const struct sockaddr *sa)
{
    if (!list || !sa)
        return false;
    struct guard_peer p = {0};
    if (sa->sa_family == AF_INET) {
        p.family = AF_INET;
        memcpy(p.addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const unsigned char *a6 = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a6, mapped, 12) == 0) { /* ::ffff:10.0.0.1 is 10.0.0.1 */
            p.family = AF_INET;
            memcpy(p.addr, a6 + 12, 4);
        } else {
            p.family = AF_INET6;
            memcpy(p.addr, a6, 16);
        }
    } else {
        return false;
    }
    guard_each(list, guard_entry_match, &p);
    return p.found;
}

/* the first value of a header that may list several (proxies append theirs), trimmed, if
 * it is a plain host[:port] (or scheme): letters, digits and . - _ : [ ]; else false */
static bool guard_first_value(const char *v, char *out, size_t n)
{
    if (!v)
        return false;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t l = strcspn(v, ",");
    while (l && (v[l - 1] == ' ' || v[l - 1] == '\t'))
        l--;
    if (l == 0 || l >= n)
        return false;
    for (size_t i = 0; i < l; i++) {
        char ch = v[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                  ch == '-' || ch == '_' || ch == ':' || ch == '[' || ch == ']';
        if (!ok)
            return false;
    }
    memcpy(out, v, l);
    out[l] = '\0';
    return true;
}

void httpguard_origin_of(bool tls, const char *host, const char *xf_proto, const char *xf_host, const char *fallback,
                         char *out, size_t n)
{
    const char *scheme = tls ? "https" : "http";
    char proto[16], h[256];
    if (guard_first_value(xf_proto, proto, sizeof(proto))) {
        if (strcasecmp(proto, "https") == 0)
            scheme = "https";
        else if (strcasecmp(proto, "http") == 0)
            scheme = "http";
    }
    if (!guard_first_value(xf_host, h, sizeof(h)) && !guard_first_value(host, h, sizeof(h)))
        snprintf(h, sizeof(h), "%s", fallback ? fallback : "localhost");
    snprintf(out, n, "%s://%s", scheme, h);
}

void httpguard_origin(struct MHD_Connection *c, bool tls, const char *fallback, char *out, size_t n)
{
    struct guard_conn *k = guard_of(c);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    bool trusted = k && k->g && ci && httpguard_addr_listed(k->g->p.trusted_proxies, ci->client_addr);
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    const char *xp = trusted ? MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Forwarded-Proto") : NULL;
    const char *xh = trusted ? MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Forwarded-Host") : NULL;
    httpguard_origin_of(tls, host, xp, xh, fallback, out, n);
}
