/*
 * bench/lib/relay.c — the floor of any forwarder's work on this machine: a bare TCP relay,
 * one thread, one epoll set, no HTTP parsing, no copies beyond the one read buffer.
 *
 *   relay UPSTREAM_PORT      (listens on 127.0.0.1, an ephemeral port; prints "PORT <n>")
 *
 * Each accepted client connection is paired with its own keep-alive connection to the
 * upstream on 127.0.0.1:UPSTREAM_PORT; bytes read on one side are written to the other.
 * A forwarded request therefore costs it exactly the socket work every forwarder must do —
 * read the request, write it upstream, read the answer, write it back (four syscalls, plus
 * its share of an epoll_wait) — and nothing else. bench/forward.mjs runs the same load
 * through it as through nightshift: its CPU per request is the anchor for nightshift's
 * (what this machine's syscalls and wake-ups cost), its added latency the anchor for
 * nightshift's added latency. A benchmark tool, not part of nightshift.
 *
 * Level-triggered: one read per readiness (a short read means the socket is drained), so
 * no extra read that returns EAGAIN. When the peer cannot take all of it, the rest waits
 * in the buffer, this side stops reading and the peer is watched for EPOLLOUT (rearm: an
 * end reads while its buffer is empty and waits to write while its peer's is not).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSZ 65536

struct end {
    int fd;
    struct end *peer;
    char *buf;          /* bytes read here, not yet written to peer */
    size_t off, len;
    unsigned ev;        /* the events it is watched for now */
};

static int epfd;

static void watch(struct end *e, int op, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = e};
    if (epoll_ctl(epfd, op, e->fd, &ev) != 0 && op != EPOLL_CTL_DEL) {
        perror("relay: epoll_ctl");
        exit(1);
    }
}

/* what x must be watched for now; epoll_ctl only on a change (never, while every write
 * goes through whole) */
static void rearm(struct end *x)
{
    unsigned want = (x->len == 0 ? EPOLLIN : 0u) | (x->peer->len > 0 ? EPOLLOUT : 0u);
    if (want != x->ev) {
        watch(x, EPOLL_CTL_MOD, want);
        x->ev = want;
    }
}

static void close_pair(struct end *e)
{
    struct end *p = e->peer;
    close(e->fd); /* close() drops it from the epoll set */
    close(p->fd);
    free(e->buf);
    free(p->buf);
    /* the other end may still be among this epoll_wait's events: mark, free later */
    e->fd = p->fd = -1;
}

/* write what e holds to its peer; 0 all written, 1 the peer is full, -1 the pair is gone */
static int flush(struct end *e)
{
    while (e->off < e->len) {
        ssize_t w = write(e->peer->fd, e->buf + e->off, e->len - e->off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 1;
            return -1;
        }
        e->off += (size_t)w;
    }
    e->off = e->len = 0;
    return 0;
}

static int tcp_nodelay(int fd)
{
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int main(int argc, char **argv)
{
    char *endp = NULL;
    long up_port = argc == 2 ? strtol(argv[1], &endp, 10) : 0;
    if (argc != 2 || !endp || *endp || up_port <= 0 || up_port > 65535) {
        fprintf(stderr, "usage: relay UPSTREAM_PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 4096) != 0) {
        perror("relay: listen");
        return 1;
    }
    socklen_t sl = sizeof(sa);
    getsockname(ls, (struct sockaddr *)&sa, &sl);
    printf("PORT %d\n", ntohs(sa.sin_port));
    fflush(stdout);

    struct sockaddr_in up = {.sin_family = AF_INET, .sin_port = htons((uint16_t)up_port)};
    up.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    epfd = epoll_create1(0);
    struct end listener = {.fd = ls};
    watch(&listener, EPOLL_CTL_ADD, EPOLLIN);

    struct epoll_event evs[256];
    struct end *dead[512];
    for (;;) {
        int n = epoll_wait(epfd, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("relay: epoll_wait");
            return 1;
        }
        int n_dead = 0;
        for (int i = 0; i < n; i++) {
            struct end *e = evs[i].data.ptr;
            if (e == &listener) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    /* the upstream is local: a blocking connect returns at once */
                    int u = socket(AF_INET, SOCK_STREAM, 0);
                    if (u < 0 || connect(u, (struct sockaddr *)&up, sizeof(up)) != 0) {
                        perror("relay: connect upstream");
                        close(c);
                        if (u >= 0)
                            close(u);
                        continue;
                    }
                    fcntl(u, F_SETFL, fcntl(u, F_GETFL) | O_NONBLOCK);
                    tcp_nodelay(c);
                    tcp_nodelay(u);
                    struct end *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
                    if (!a || !b || !(a->buf = malloc(BUFSZ)) || !(b->buf = malloc(BUFSZ))) {
                        fprintf(stderr, "relay: out of memory\n");
                        return 1;
                    }
                    a->fd = c, b->fd = u, a->peer = b, b->peer = a;
                    a->ev = b->ev = EPOLLIN;
                    watch(a, EPOLL_CTL_ADD, EPOLLIN);
                    watch(b, EPOLL_CTL_ADD, EPOLLIN);
                }
                continue;
            }
            if (e->fd < 0)
                continue; /* its pair closed earlier in this batch */
            if ((evs[i].events & EPOLLOUT) && e->peer->len) {
                /* the peer's pending bytes drain into e */
                if (flush(e->peer) < 0) {
                    close_pair(e);
                    dead[n_dead++] = e;
                    continue;
                }
            }
            if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && e->len == 0) {
                ssize_t r = read(e->fd, e->buf, BUFSZ);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    close_pair(e);
                    dead[n_dead++] = e;
                    continue;
                }
                if (r > 0) {
                    e->len = (size_t)r;
                    if (flush(e) < 0) {
                        close_pair(e);
                        dead[n_dead++] = e;
                        continue;
                    }
                }
            } else if ((evs[i].events & (EPOLLHUP | EPOLLERR)) && e->len) {
                close_pair(e); /* gone while its last read still waits for the peer */
                dead[n_dead++] = e;
                continue;
            }
            rearm(e);
            rearm(e->peer);
        }
        for (int i = 0; i < n_dead; i++) {
            free(dead[i]->peer);
            free(dead[i]);
        }
    }
}
