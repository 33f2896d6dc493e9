/* cstored's metrics endpoint: `GET /metrics` over HTTP on --metrics-listen, in the Prometheus
 * text exposition format (0.0.4): the engine's families (cs_metrics_prometheus: per-shard request
 * latency histograms, WAL, checkpoints, transactions, memory; see engine/metrics.c) followed by
 * the server's own (cstored_*: connections open, accepted and refused, commands, shards).
 *
 * One thread, blocking calls: a scrape every few seconds is the whole load, and it must never
 * run on a shard loop (cs_metrics_prometheus asks every shard for its statistics and waits). The
 * HTTP handled is the least a scraper needs: one request per connection (HTTP/1.0 answer with
 * Connection: close), the request line must be `GET /metrics` or `GET /metrics?...` (HEAD too);
 * anything else is 404 or 405; a request must arrive whole within METRICS_IO_MS and
 * METRICS_REQUEST_BYTES_MAX bytes, else the connection is closed with 408 or 431. The listening
 * socket is closed (shutdown) by server_stop, which ends the blocking accept. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "server/server_int.h"

#define METRICS_REQUEST_BYTES_MAX 8192u /* request line and headers */
#define METRICS_IO_MS 2000u             /* to receive a request, and to send each answer chunk */

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the scraper went away or stalled past the timeout */
        p += w;
        n -= (size_t)w;
    }
}

static void answer_status(int fd, const char *status)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf),
                     "HTTP/1.0 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s\n",
                     status, strlen(status) + 1, status);
    send_all(fd, buf, (size_t)n);
}

/* The server's own families, appended to the engine's text. */
static int server_families(struct server *s, char *buf, size_t cap)
{
    unsigned long long clients = atomic_load(&s->clients);
    return snprintf(buf, cap,
                    "# HELP cstored_connected_clients Client connections open now.\n"
                    "# TYPE cstored_connected_clients gauge\n"
                    "cstored_connected_clients %llu\n"
                    "# HELP cstored_connections_total Client connections accepted since start.\n"
                    "# TYPE cstored_connections_total counter\n"
                    "cstored_connections_total %" PRIu64 "\n"
                    "# HELP cstored_rejected_connections_total Connections refused because "
                    "maxclients were open.\n"
                    "# TYPE cstored_rejected_connections_total counter\n"
                    "cstored_rejected_connections_total %" PRIu64 "\n"
                    "# HELP cstored_commands_total Commands parsed and run since start.\n"
                    "# TYPE cstored_commands_total counter\n"
                    "cstored_commands_total %" PRIu64 "\n"
                    "# HELP cstored_maxclients The maxclients setting.\n"
                    "# TYPE cstored_maxclients gauge\n"
                    "cstored_maxclients %u\n",
                    clients, atomic_load(&s->connections), atomic_load(&s->rejected),
                    atomic_load(&s->commands), s->cfg.maxclients);
}

static void serve_metrics(struct server *s, int fd)
{
    char *text = NULL;
    size_t len = 0;
    int rc = cs_metrics_prometheus(s->db, &text, &len);
    if (rc) {
        answer_status(fd, "500 Internal Server Error");
        return;
    }
    char own[2048];
    int olen = server_families(s, own, sizeof(own));
    if (olen < 0 || (size_t)olen >= sizeof(own))
        olen = 0;
    char head[256];
    int hlen = snprintf(head, sizeof(head),
                        "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; "
                        "charset=utf-8\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                        len + (size_t)olen);
    send_all(fd, head, (size_t)hlen);
    send_all(fd, text, len);
    send_all(fd, own, (size_t)olen);
    cs_free(text);
}

/* Read the request head (up to the blank line) and answer it. */
static void handle(struct server *s, int fd)
{
    struct timeval tv = {.tv_sec = METRICS_IO_MS / 1000, .tv_usec = (METRICS_IO_MS % 1000) * 1000};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char req[METRICS_REQUEST_BYTES_MAX + 1];
    size_t n = 0;
    while (!memmem(req, n, "\r\n\r\n", 4) && !memmem(req, n, "\n\n", 2)) {
        if (n == METRICS_REQUEST_BYTES_MAX) {
            answer_status(fd, "431 Request Header Fields Too Large");
            return;
        }
        ssize_t r = recv(fd, req + n, METRICS_REQUEST_BYTES_MAX - n, 0);
        if (r <= 0) {
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                answer_status(fd, "408 Request Timeout");
            return;
        }
        n += (size_t)r;
    }
    req[n] = '\0';
    bool get = strncmp(req, "GET ", 4) == 0, head_only = strncmp(req, "HEAD ", 5) == 0;
    if (!get && !head_only) {
        answer_status(fd, "405 Method Not Allowed");
        return;
    }
    const char *path = req + (get ? 4 : 5);
    size_t plen = strcspn(path, " ?\r\n");
    if (plen != 8 || strncmp(path, "/metrics", 8) != 0) {
        answer_status(fd, "404 Not Found");
        return;
    }
    if (head_only) {
        send_all(fd, "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n", 38);
        return;
    }
    serve_metrics(s, fd);
}

static void *metrics_main(void *arg)
{
    struct server *s = arg;
    for (;;) {
        int fd = accept4(s->metrics_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (atomic_load(&s->stopping) || errno == EINVAL || errno == EBADF)
                break; /* server_stop shut the socket down */
            continue;  /* a connection that went away before accept, or no fd for now */
        }
        handle(s, fd);
        close(fd);
    }
    return NULL;
}

int metrics_start(struct server *s, int fd)
{
    s->metrics_fd = fd;
    int rc = pthread_create(&s->metrics_thread, NULL, metrics_main, s);
    if (rc) {
        s->metrics_fd = -1;
        return -rc;
    }
    s->metrics_on = true;
    return 0;
}

void metrics_stop(struct server *s)
{
    if (!s->metrics_on)
        return;
    shutdown(s->metrics_fd, SHUT_RDWR); /* ends the blocking accept */
    pthread_join(s->metrics_thread, NULL);
    close(s->metrics_fd);
    s->metrics_fd = -1;
    s->metrics_on = false;
}
