/* cstored: the engine as a network server speaking RESP2 (server/), so that redis-cli,
 * redis-benchmark and every Redis client library can use it.
 *
 *   cstored [--config FILE] [--db DIR] [--listen HOST:PORT] [--requirepass-file F]
 *           [--maxclients N] [--resp-collection NAME] [--port-file F]
 *           [--client-query-bytes-max N] [--client-output-bytes-max N] [--pipeline-max N]
 *           [--metrics-listen HOST:PORT] [--metrics-port-file F]
 *           [--NAME VALUE]...
 *
 * With no flags it serves ./data/cstored on 127.0.0.1:6380. Every engine option is a flag of the
 * same name (as cs_options_set, the INI file and the CLI take it: --durability sync, --shards 2,
 * or --set NAME=VALUE); durability defaults to sync here too. The config file is an INI file:
 * engine options at the top or under [cstore], the server's under [cstored] (listen,
 * requirepass-file, maxclients, resp-collection); flags override it. HOST:PORT takes a numeric
 * IPv4 address or a bracketed IPv6 one ([::1]:6380); port 0 picks a free port, which --port-file
 * writes out once the server listens (tests use it). Per connection: unparsed input up to
 * client-query-bytes-max (default 1 GiB, Redis's client-query-buffer-limit; a bigger request is
 * a protocol error and the connection closes), one reply up to client-output-bytes-max (default
 * 256 MiB: a bigger one closes the connection), and pipeline-max commands in flight (default
 * 1024). A client that does not read its replies is not read from either once about a MiB of
 * them waits; what it can make the server hold is then about that MiB plus the replies of its
 * commands in flight: at most pipeline-max of them.
 *
 * --metrics-listen serves GET /metrics (Prometheus text: the engine's latency histograms and
 * counters, then the server's connections and commands; server/metrics.c); off by default.
 *
 * SIGTERM and SIGINT stop accepting, let what is in flight finish, and close the database
 * cleanly (exit 0). Exit 1: the database or the socket could not be opened; 2: usage. */
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cstore.h"
#include "server/server.h"

#define CSTORED_OPTIONS_MAX 64u /* engine options given as flags or in the file */

struct cstored {
    const char *db_path;
    char *listen;                    /* HOST:PORT (owned) */
    char *pass_file;                 /* owned */
    char *collection;                /* owned, or NULL: the default */
    char *port_file;                 /* owned, or NULL */
    char *metrics_listen;            /* HOST:PORT of GET /metrics (owned), or NULL: none */
    char *metrics_port_file;         /* owned, or NULL */
    unsigned maxclients;             /* 0: the default */
    char *opts[CSTORED_OPTIONS_MAX]; /* NAME=VALUE, owned */
    size_t nopts;
    size_t query_max;  /* 0: the default */
    size_t output_max; /* 0: the default */
    unsigned pipeline; /* 0: the default */
};

static int usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "cstored: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nusage: cstored [--config FILE] [--db DIR] [--listen HOST:PORT] "
                    "[--requirepass-file F] [--maxclients N] [--resp-collection NAME] "
                    "[--port-file F] [--ENGINE-OPTION VALUE]...\n");
    return 2;
}

static int add_opt(struct cstored *d, const char *name, size_t nlen, const char *value)
{
    if (d->nopts == CSTORED_OPTIONS_MAX)
        return usage("too many options (at most 64): %s", name);
    size_t vlen = strlen(value);
    char *o = malloc(nlen + vlen + 2);
    if (!o)
        return 1;
    memcpy(o, name, nlen);
    o[nlen] = '=';
    memcpy(o + nlen + 1, value, vlen + 1);
    d->opts[d->nopts++] = o;
    return 0;
}

static int set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = strdup(v);
    return *dst ? 0 : 1;
}

/* A server setting by name (from a flag or the [cstored] section); 1 when name is not one. */
static int server_setting(struct cstored *d, const char *name, const char *value, int *err)
{
    *err = 0;
    if (strcmp(name, "listen") == 0) {
        *err = set_str(&d->listen, value);
    } else if (strcmp(name, "requirepass-file") == 0) {
        *err = set_str(&d->pass_file, value);
    } else if (strcmp(name, "resp-collection") == 0 || strcmp(name, "resp_collection") == 0) {
        *err = set_str(&d->collection, value);
    } else if (strcmp(name, "port-file") == 0) {
        *err = set_str(&d->port_file, value);
    } else if (strcmp(name, "maxclients") == 0) {
        char *end;
        unsigned long v = strtoul(value, &end, 10);
        if (*value == '\0' || *end || v == 0 || v >= (1u << 24))
            *err = usage("--maxclients: expected 1..16777215, not '%s'", value);
        else
            d->maxclients = (unsigned)v;
    } else if (strcmp(name, "client-query-bytes-max") == 0 ||
               strcmp(name, "client-output-bytes-max") == 0 || strcmp(name, "pipeline-max") == 0) {
        char *end;
        unsigned long long v = strtoull(value, &end, 10);
        bool pipe = strcmp(name, "pipeline-max") == 0;
        if (*value == '\0' || *end || v < (pipe ? 1 : 1024) || v > (pipe ? 1u << 20 : 1ull << 40))
            *err = usage("expected 1024..2^40 bytes (pipeline-max: 1..1048576 commands), not "
                         "'%s'",
                         value);
        else if (strcmp(name, "client-query-bytes-max") == 0)
            d->query_max = (size_t)v;
        else if (strcmp(name, "client-output-bytes-max") == 0)
            d->output_max = (size_t)v;
        else
            d->pipeline = (unsigned)v;
    } else if (strcmp(name, "metrics-listen") == 0) {
        *err = set_str(&d->metrics_listen, value);
    } else if (strcmp(name, "metrics-port-file") == 0) {
        *err = set_str(&d->metrics_port_file, value);
    } else {
        return 1;
    }
    return 0;
}

static int ini_line(void *user, const char *section, const char *name, const char *value)
{
    struct cstored *d = user;
    int err;
    if (strcmp(section, "cstored") == 0) {
        if (server_setting(d, name, value, &err) != 0) {
            fprintf(stderr, "cstored: config: unknown server setting '%s'\n", name);
            return 0;
        }
        return err == 0;
    }
    if (section[0] && strcmp(section, "cstore") != 0) {
        fprintf(stderr, "cstored: config: unknown section [%s]\n", section);
        return 0;
    }
    return add_opt(d, name, strlen(name), value) == 0;
}

static int parse_args(struct cstored *d, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage("%s", "the engine as a RESP2 (Redis protocol) server");
            exit(0);
        }
        if (strcmp(a, "--version") == 0) {
            printf("cstored %s\n", CS_VERSION_STRING);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0)
            return usage("unexpected argument '%s'", a);
        const char *name = a + 2;
        size_t nlen = strcspn(name, "=");
        const char *value;
        if (name[nlen] == '=')
            value = name + nlen + 1;
        else if (i + 1 < argc)
            value = argv[++i];
        else
            return usage("option '%s' needs a value", a);
        char key[64];
        if (nlen >= sizeof(key))
            return usage("unknown option '%s'", a);
        memcpy(key, name, nlen);
        key[nlen] = '\0';
        int err;
        if (strcmp(key, "db") == 0) {
            d->db_path = value;
        } else if (strcmp(key, "config") == 0) {
            int line = ini_parse(value, ini_line, d);
            if (line < 0)
                return usage("--config %s: cannot read it", value);
            if (line > 0) {
                fprintf(stderr, "cstored: --config %s: line %d is not valid\n", value, line);
                return 2;
            }
        } else if (strcmp(key, "set") == 0) {
            const char *eq = strchr(value, '=');
            if (!eq)
                return usage("--set '%s': expected NAME=VALUE", value);
            if (add_opt(d, value, (size_t)(eq - value), eq + 1) != 0)
                return 2;
        } else if (server_setting(d, key, value, &err) == 0) {
            if (err)
                return err;
        } else if (add_opt(d, key, nlen, value) != 0) {
            return 2;
        }
    }
    return 0;
}

/* HOST:PORT or [HOST6]:PORT into host (owned) and port. */
static int parse_listen(const char *s, char **host, uint16_t *port)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - s);
    }
    char *end;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end || p > 65535 || hl == 0)
        return -1;
    *host = strndup(h, hl);
    *port = (uint16_t)p;
    return *host ? 0 : -1;
}

/* The password: the file's first line, without its line ending. */
static int read_password(const char *path, char **out)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cstored: --requirepass-file %s: %s\n", path, strerror(errno));
        return 1;
    }
    char buf[SERVER_PASSWORD_BYTES_MAX + 2];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (buf[0] == '\0' || strlen(buf) > SERVER_PASSWORD_BYTES_MAX) {
        fprintf(stderr,
                "cstored: --requirepass-file %s: expected a password of 1..%u bytes on "
                "its first line\n",
                path, SERVER_PASSWORD_BYTES_MAX);
        return 1;
    }
    *out = strdup(buf);
    return *out ? 0 : 1;
}

/* Write port into path (through a temporary file and a rename, so a reader never sees half). */
static int write_port(const char *path, unsigned port)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "cstored: %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void cstored_free(struct cstored *d)
{
    free(d->listen);
    free(d->pass_file);
    free(d->collection);
    free(d->port_file);
    free(d->metrics_listen);
    free(d->metrics_port_file);
    for (size_t i = 0; i < d->nopts; i++)
        free(d->opts[i]);
}

static int run(struct cstored *d)
{
    struct server_config sc;
    server_config_default(&sc);
    char *host = NULL, *password = NULL, *mhost = NULL;
    uint16_t port = sc.port;
    if (d->listen && parse_listen(d->listen, &host, &port) != 0)
        return usage("--listen: expected HOST:PORT, not '%s'", d->listen);
    if (d->metrics_listen && parse_listen(d->metrics_listen, &mhost, &sc.metrics_port) != 0) {
        free(host);
        return usage("--metrics-listen: expected HOST:PORT, not '%s'", d->metrics_listen);
    }
    sc.metrics_host = mhost;
    if (host)
        sc.host = host;
    sc.port = port;
    if (d->pass_file && read_password(d->pass_file, &password) != 0) {
        free(host);
        return 1;
    }
    sc.password = password;
    if (d->maxclients)
        sc.maxclients = d->maxclients;
    if (d->collection)
        sc.collection = d->collection;
    if (d->query_max)
        sc.query_bytes_max = d->query_max;
    if (d->output_max)
        sc.output_bytes_max = d->output_max;
    if (d->pipeline)
        sc.pipeline_max = d->pipeline;
    sc.options = (const char *const *)d->opts;
    sc.noptions = d->nopts;

    int ex = 1;
    cs_db *db = NULL;
    struct server *srv = NULL;
    cs_options *o = cs_options_new();
    if (!o)
        goto out;
    for (size_t i = 0; i < d->nopts; i++) {
        char *eq = strchr(d->opts[i], '=');
        *eq = '\0';
        int rc = cs_options_set(o, d->opts[i], eq + 1);
        *eq = '=';
        if (rc) {
            fprintf(stderr, "cstored: option %s: %s\n", d->opts[i], cs_strerror(rc));
            ex = 2;
            goto out;
        }
    }
    /* SIGTERM and SIGINT are taken by sigwait below: block them before any thread starts, so
     * that every thread inherits the mask and none is interrupted by them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    if (strcmp(d->db_path, "./data/cstored") == 0)
        (void)mkdir("./data", 0755); /* the default's parent (cs_open makes the folder itself) */
    int rc = cs_open(d->db_path, o, &db);
    if (rc) {
        fprintf(stderr, "cstored: cannot open %s: %s\n", d->db_path, cs_strerror(rc));
        goto out;
    }
    rc = server_start(db, &sc, &srv);
    if (rc) {
        fprintf(stderr, "cstored: cannot listen on %s:%u: %s\n", sc.host, sc.port, cs_strerror(rc));
        goto out;
    }
    if ((d->metrics_port_file && write_port(d->metrics_port_file, server_metrics_port(srv))) ||
        (d->port_file && write_port(d->port_file, server_port(srv))))
        goto out;
    fprintf(stderr, "cstored: serving %s on %s:%u (%u shards)\n", d->db_path, sc.host,
            server_port(srv), cs_shard_count(db));
    if (mhost)
        fprintf(stderr, "cstored: metrics on http://%s:%u/metrics\n", mhost,
                server_metrics_port(srv));
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "cstored: %s: stopping\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    ex = 0;
out:
    server_stop(srv);
    if (db) {
        rc = cs_close(db);
        if (rc) {
            fprintf(stderr, "cstored: close: %s\n", cs_strerror(rc));
            ex = 1;
        }
    }
    cs_options_free(o);
    free(host);
    free(mhost);
    free(password);
    return ex;
}

int main(int argc, char **argv)
{
    struct cstored d;
    memset(&d, 0, sizeof(d));
    d.db_path = "./data/cstored";
    int ex = parse_args(&d, argc, argv);
    if (ex == 0)
        ex = run(&d);
    cstored_free(&d);
    return ex;
}
