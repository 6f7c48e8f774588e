/*
 * httpguard.h — what the HTTP server checks of a connection before any handler runs:
 * that it names a host this server answers to, comes from an origin it may serve, and
 * sends its request head in time (issue 27.8, 27.10).
 *
 * DESIGN
 * - Host (DNS rebinding, the class of Ollama's CVE-2024-28224): a web page can make a
 *   browser talk to 127.0.0.1 under a name the attacker controls; the Host header still
 *   carries that name. Accepted: IP literals, "localhost", and --allowed-host entries
 *   (a name, ".suffix" for a domain and its subdomains, "*" for any). Else 403.
 * - Origin: browsers send it on every cross-origin request, SDKs and curl never do. A
 *   request from an origin other than the server's own is refused (403) unless --cors-origin
 *   lists it ("*" for any); listed origins get CORS headers on every answer and their
 *   preflights (OPTIONS with Access-Control-Request-Method) are answered 204. Off by
 *   default: no origin is listed.
 * - Slow clients: a new connection must deliver its first request head within
 *   header_timeout seconds (a slowloris trickles headers forever while MHD's idle timeout
 *   sees progress). A reaper thread shuts down the sockets that did not; MHD then closes
 *   them as any dropped connection. Later requests on a kept-alive connection are left to
 *   the idle timeout. The per-address cap and the idle timeout are MHD options (server.c).
 * - Request ids: each request gets one ("req_" + 24 random characters) when its head is
 *   checked; every answer carries it as x-request-id and request-id (OpenAI's and
 *   Anthropic's SDKs read one each and show it as _request_id), and the server's log lines
 *   about the request name it, so a client's report finds them.
 * - Forwarded headers (X-Forwarded-Proto, X-Forwarded-Host) say how a client reached a
 *   reverse proxy in front of the server; anyone can send them, so they are believed only
 *   from a peer on the --trusted-proxy list (addresses or CIDR blocks). httpguard_origin()
 *   is the URL a client reached the server by, for the URLs the server hands out
 *   (Message Batches' results_url).
 *
 * THREADS: the notify callback runs on MHD's threads, the reaper on its own; one mutex
 * guards the list of connections. MHD calls MHD_CONNECTION_NOTIFY_CLOSED before it closes
 * the socket, and the reaper shuts a socket down only under the mutex while its entry is
 * listed, so it never touches a descriptor that was reused.
 */
#ifndef NS_API_HTTPGUARD_H
#define NS_API_HTTPGUARD_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct httpguard;
struct sockaddr;

struct httpguard_params {
    const char *allowed_hosts;   /* comma-separated; NULL: IP literals and localhost only */
    const char *cors_origins;    /* comma-separated; NULL: no cross-origin request */
    unsigned header_timeout;     /* seconds for a new connection's first head; 0: no limit */
    const char *trusted_proxies; /* comma-separated addresses or CIDR blocks whose forwarded
                                    headers are believed (httpguard_proxies_check); NULL: none */
};

struct httpguard_params httpguard_default_params(void); /* header_timeout 10 */

/* NULL when out of memory; the strings in p are copied */
struct httpguard *httpguard_start(struct httpguard_params p);
/* after MHD_stop_daemon (no more notifications) */
void httpguard_stop(struct httpguard *g);

/* MHD_OPTION_NOTIFY_CONNECTION's callback; cls is the guard */
void httpguard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe);

/* The first call of a request (its head is in): marks it, gives it its id, then checks
 * Host and Origin. 0 ok; else an NS_ERR_* status and msg saying what to do (403
 * NS_ERR_FORBIDDEN). */
int httpguard_check(struct MHD_Connection *c, const char *method, const char *url, char *msg, size_t n);

/* A CORS preflight from a listed origin: answered here (204 with the Access-Control-*
 * headers), *ret set, true. False: not a preflight (or not allowed: the caller answers). */
bool httpguard_preflight(struct MHD_Connection *c, const char *method, const char *url, enum MHD_Result *ret);

/* MHD_queue_response with the request's x-request-id, and the CORS headers when the
 * request's origin is listed */
enum MHD_Result httpguard_queue(struct MHD_Connection *c, unsigned code, struct MHD_Response *resp);

/* the request being served on a connection, from httpguard_check() on (valid until the
 * next request on the connection); NULL before, or when the guard has no state for it */
struct httpguard_request {
    char id[32];                 /* "req_" + 24 characters: x-request-id */
    char line[160];              /* "METHOD /path", cut: what log lines name */
    char fallback[128];          /* the model that answered in place of the one asked
                                    (on_failure = fallback): x-nightshift-fallback; "" none */
};
const struct httpguard_request *httpguard_request(struct MHD_Connection *c);
/* the answer to the request being served came from this fallback model: the response says
 * so in x-nightshift-fallback (connection thread) */
void httpguard_set_fallback(struct MHD_Connection *c, const char *model);

/* "http(s)://HOST[:PORT]" the client reached the server by: https under TLS, the Host
 * header, or from a trusted proxy its X-Forwarded-Proto and X-Forwarded-Host (their first
 * values); fallback ("127.0.0.1:8080") where no usable host was sent */
void httpguard_origin(struct MHD_Connection *c, bool tls, const char *fallback, char *out, size_t n);
/* the same from the header values (xf_proto, xf_host: NULL when the peer is not trusted) */
void httpguard_origin_of(bool tls, const char *host, const char *xf_proto, const char *xf_host, const char *fallback,
                         char *out, size_t n);

/* Is list ("10.0.0.1, 192.168.0.0/16, ::1") well formed? 0, else NS_ERR_INVALID and err
 * names the entry at fault */
int httpguard_proxies_check(const char *list, char *err, size_t n);
/* is the address sa (IPv4, IPv6, IPv4-mapped IPv6) in list? A malformed entry matches
 * nothing */
bool httpguard_addr_listed(const char *list, const struct sockaddr *sa);

/* connections dropped for a slow head since the start (for /metrics) */
uint64_t httpguard_dropped(struct httpguard *g);

#endif
