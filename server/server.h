/* cstored's server: the engine reached over TCP with the Redis protocol (RESP2). */
#ifndef CS_SERVER_H
#define CS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "cstore.h"
#include "util.h"

#define SERVER_PASSWORD_BYTES_MAX 512u /* a requirepass file's password */

struct server_config {
    const char *host;           /* address to listen on (numeric IPv4 or IPv6), e.g. 127.0.0.1 */
    uint16_t port;              /* TCP port; 0 = any free port (server_port tells which) */
    const char *password;       /* AUTH password, or NULL: no AUTH needed (copied) */
    unsigned maxclients;        /* connections at once over all shards; more are refused */
    const char *collection;     /* the collection the Redis commands use (copied) */
    size_t query_bytes_max;     /* input a connection may have buffered and not yet parsed */
    size_t output_bytes_max;    /* replies a connection may have waiting: over it, it is closed */
    unsigned pipeline_max;      /* commands of one connection in flight at once */
    size_t args_max;            /* arguments of one request */
    size_t bulk_bytes_max;      /* bytes of one argument */
    size_t inline_bytes_max;    /* bytes of one inline command line */
    const char *metrics_host;   /* Prometheus endpoint's address (GET /metrics), or NULL: none */
    uint16_t metrics_port;      /* its port; 0 = any free port (server_metrics_port tells) */
    const char *const *options; /* engine options as NAME=VALUE, for CONFIG GET (borrowed) */
    size_t noptions;            /* entries in options */
};
/* Defaults: 127.0.0.1:6380, no password, 10000 clients, collection "redis", 1 GiB query buffer
 * (Redis's client-query-buffer-limit), 256 MiB of replies, 1024 commands in flight per
 * connection, Redis's argument limits. */
void server_config_default(struct server_config *c);

struct server;
/* Listen on cfg's address and serve db from every shard's loop. db stays open while the server
 * runs. Errors: -errno (socket, bind, listen: e.g. -EADDRINUSE), -ENOMEM, CS_ECLOSED. */
CS_MUST_CHECK int server_start(cs_db *db, const struct server_config *cfg, struct server **out);
/* The port it listens on, and the metrics endpoint's (0 when there is none). */
uint16_t server_port(const struct server *s);
uint16_t server_metrics_port(const struct server *s);
/* Stop accepting, let every command in flight finish and its reply go out (a client that does
 * not read is cut off after a few seconds), close the connections, detach from the shards and
 * free the server. The database stays open. */
void server_stop(struct server *s);

#endif
