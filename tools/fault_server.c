/* The server scenario of cstore-fault: the crash check of `crash`, with the writes going through
 * the network to a cstored (tools/cstored.c) that is SIGKILLed and restarted.
 *
 * THE SERVER is the built cstored (beside the cstore-fault binary, or --cstored PATH), started
 * as a child on 127.0.0.1 port 0 with --port-file, cfg.shards shards, durability sync (or the
 * --durability given: a demonstration that the check catches what async and none lose), 1 MiB
 * WAL segments and checkpoint_wal_bytes of 256K or 4M in turn, so kills also land in rotations
 * and checkpoints. Its stderr goes to <db>/server.log. The same database folder serves every
 * iteration. The child is started with PR_SET_PDEATHSIG=SIGKILL, so it dies with this process
 * whatever way this one ends; every normal path kills and reaps it itself.
 *
 * THE CLIENT is a minimal RESP2 client on plain sockets (resp_*, conn_*): requests are encoded
 * as arrays of bulk strings, replies parsed into a flat pre-order list of items, every wait is a
 * poll with a deadline. Not hiredis: the tool then needs no library beyond the engine's, and
 * the acknowledgement point is exact and visible here: an operation is acknowledged when its
 * whole reply has been parsed, and a reply cut short by the kill acknowledges nothing.
 *
 * THE LOAD. cfg.threads connections, one thread each. Connection t owns the model keys
 * [t*KEYS_PER_THREAD, (t+1)*KEYS_PER_THREAD) ("key-NNNNNN", tools/fault_model.c) and
 * SRV_COUNTERS_PER_CONN counters ("ctr-NNN"), so the operations on a key form one sequence. In
 * rounds, it pipelines 1..SRV_PIPELINE_MAX commands, then reads their replies: SET (a value
 * "v<id>" + filler that names the operation, iteration, connection and sequence number, as the
 * crash scenario's values do), DEL of one key, MSET of 2..BATCH_KEYS_MAX keys (on any shards:
 * MSET is one transaction across shards) and INCR of a counter. A key takes at most
 * SRV_KEY_INFLIGHT_MAX commands in one round (the model remembers MAYBE_MAX in flight). Each
 * operation is announced to the model (INTENT) before it is sent and acknowledged (ACK) when
 * its reply arrives, in order: the server answers a connection's commands in order and applies
 * those on one key in order. DEL answering 0 is an acknowledgement that the key is absent (the
 * model checks it had no acknowledged value). An INCR's reply must be exactly one more than the
 * last acknowledged value of its counter. An error reply is a violation (no fault is injected
 * but the kill) and leaves the operation in flight.
 *
 * THE KILL. Each iteration runs the load and SIGKILLs cstored after a seeded delay (mostly
 * 40..640 ms, some 5..45 ms); in a quarter of the iterations the restart is SIGKILLed too,
 * after a seeded delay up to the last start-up time (so during its recovery), and started
 * again. A connection that breaks before the kill, or a server that dies before it, is a
 * violation.
 *
 * THE CHECK, through the network on the restarted server: PING answers PONG; MGET of every model
 * key: each must read as its acknowledged state or a state in flight (model_check_key), never a
 * value that was never written; every MSET in flight landed whole or not at all
 * (model_check_batches); every counter reads at least its acknowledged value and at most that
 * plus its INCRs in flight; SCAN walks every key: each is a model key the MGETs found, a
 * counter that exists, or a redis-benchmark key, each once; DBSIZE is the number of keys the
 * SCAN saw. Then the model adopts what was read. After the last iteration, the server is
 * stopped with SIGTERM (it must exit 0), started again, checked again and stopped again.
 *
 * WITH REDIS-BENCHMARK (every fourth iteration, when redis-benchmark is on the PATH): besides
 * the connections above, `redis-benchmark -t set -r SRV_BENCH_KEYSPACE -n 1000000 -P 16 -c 8
 * -d 3` loads the server as background and is killed with it. Which of its SETs were
 * acknowledged is unknown (it does not say), so its keys are judged by shape only: each
 * "key:NNNNNNNNNNNN" (12 digits, below the keyspace) holds 3 bytes of redis-benchmark's data
 * ('0'..'o' in 7.x, 'x' in older ones). The precise checks are those of the scenario's own
 * connections, which run alongside and must lose nothing either.
 *
 * Each iteration prints one line (acknowledged operations, kill delay, start-up time, keys and
 * counters checked); the scenario ends with "N passed, M failed" and its figures. */
#include "tools/fault_scenario.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#define SRV_PIPELINE_MAX 32u     /* commands a connection sends before reading their replies */
#define SRV_KEY_INFLIGHT_MAX 4u  /* commands on one key in one round (< MAYBE_MAX) */
#define SRV_KEY_TRIES_MAX 16u    /* draws of a key with room in the round */
#define SRV_COUNTERS_PER_CONN 4u /* INCR counters each connection owns */
#define SRV_COUNTERS_MAX (THREADS_MAX * SRV_COUNTERS_PER_CONN)
#define SRV_OUT_BYTES (256u << 10)      /* requests of one round (32 MSETs of 4 values: ~40 KiB) */
#define SRV_IN_BYTES (1u << 20)         /* replies received and not yet parsed */
#define SRV_ITEMS_MAX 4096u             /* items in one parsed reply (a SCAN page, an MGET) */
#define SRV_DEPTH_MAX 4u                /* nesting of arrays in a reply */
#define SRV_BULK_BYTES_MAX (512u << 10) /* one bulk string of a reply */
#define SRV_ARGS_MAX 600u               /* arguments of one command */
#define SRV_MGET_KEYS 64u               /* model keys per MGET of the check */
#define SRV_SCAN_COUNT 500u             /* SCAN ... COUNT */
#define SRV_SCAN_STEPS_MAX 1000u        /* SCAN calls per check (keys: ~2k model, 20k benchmark) */
#define SRV_START_MS_MAX 20000u         /* cstored writes its port file within this */
#define SRV_REPLY_MS_MAX 10000u         /* a live cstored answers within this */
#define SRV_REAP_MS_MAX 10000u          /* a SIGKILLed process is gone within this */
#define SRV_STOP_MS_MAX 20000u          /* SIGTERM: cstored exits within this */
#define SRV_PORT_POLL_MS 2u             /* between looks at the port file */
#define SRV_BENCH_KEYSPACE 20000u       /* redis-benchmark -r */
#define SRV_BENCH_DATA_BYTES 3u         /* redis-benchmark -d */
#define SRV_FILLER_MAX 200u             /* value filler bytes, max */
#define SRV_ARG_BYTES 32u               /* a key, a number or an option as text */

/* ---- a minimal RESP2 client ---- */

/* One element of a reply; a reply is a list of them in pre-order (an array, then its
 * elements). */
struct resp_item {
    char type;     /* '+', '-', ':', '$' or '*' */
    int64_t n;     /* ':' the integer; '$' and '*' the length (-1: nil) */
    const char *s; /* '+', '-', '$': the bytes (in the connection's input buffer) */
    size_t len;    /* their length */
};

struct resp_conn {
    int fd;                  /* nonblocking TCP socket, -1 when closed */
    char *out;               /* requests: out[out_sent, out_len) still to send */
    size_t out_len;          /* bytes of out in use */
    size_t out_sent;         /* of which sent */
    char *in;                /* bytes received and not yet parsed: in[0, in_len) */
    size_t in_len;           /* bytes of in in use */
    struct resp_item *items; /* the reply being handed out (SRV_ITEMS_MAX) */
};

/* Called for each reply, in order; items[0, count) lives until the call returns. */
typedef void (*resp_reply_fn)(void *arg, const struct resp_item *items, uint32_t count);

/* A decimal integer of at most 18 digits, optionally negative. */
static bool resp_int(const char *s, size_t len, int64_t *v)
{
    size_t i = len > 0 && s[0] == '-' ? 1 : 0;
    if (len == i || len - i > 18)
        return false;
    int64_t x = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (s[i] - '0');
    }
    *v = s[0] == '-' ? -x : x;
    return true;
}

/* Parse one whole reply at p[0, n) into items (pre-order, at most SRV_ITEMS_MAX, arrays nested
 * at most SRV_DEPTH_MAX deep). Returns its length in bytes, 0 when more bytes are needed, -1
 * when the bytes are not RESP2 or exceed a limit. */
static ssize_t resp_parse(const char *p, size_t n, struct resp_item *items, uint32_t *count)
{
    uint32_t left[SRV_DEPTH_MAX];
    unsigned depth = 0;
    size_t pos = 0;
    *count = 0;
    for (;;) {
        const char *nl = pos < n ? memchr(p + pos, '\n', n - pos) : NULL;
        if (!nl)
            return 0;
        size_t eol = (size_t)(nl - p);
        if (eol < pos + 2 || p[eol - 1] != '\r' || *count == SRV_ITEMS_MAX)
            return -1;
        struct resp_item *it = &items[(*count)++];
        it->type = p[pos];
        it->s = p + pos + 1;
        it->len = eol - 1 - (pos + 1);
        it->n = 0;
        pos = eol + 1;
        if (it->type == ':' || it->type == '$' || it->type == '*') {
            if (!resp_int(it->s, it->len, &it->n) || (it->type != ':' && it->n < -1))
                return -1;
            if ((it->type == '$' && it->n > SRV_BULK_BYTES_MAX) ||
                (it->type == '*' && it->n > SRV_ITEMS_MAX))
                return -1;
        } else if (it->type != '+' && it->type != '-') {
            return -1;
        }
        if (it->type == '$' && it->n >= 0) {
            size_t end = pos + (size_t)it->n + 2;
            if (n < end)
                return 0;
            if (p[end - 2] != '\r' || p[end - 1] != '\n')
                return -1;
            it->s = p + pos;
            it->len = (size_t)it->n;
            pos = end;
        }
        if (it->type == '*' && it->n > 0) {
            if (depth == SRV_DEPTH_MAX)
                return -1;
            left[depth++] = (uint32_t)it->n;
            continue;
        }
        /* one element done: it may complete its array, and that one its parent */
        while (depth > 0 && --left[depth - 1] == 0)
            depth--;
        if (depth == 0)
            return (ssize_t)pos;
    }
}

/* Buffers for a connection (exits 2 when out of memory); not connected yet. */
static void conn_init(struct resp_conn *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->out = malloc(SRV_OUT_BYTES);
    c->in = malloc(SRV_IN_BYTES);
    c->items = calloc(SRV_ITEMS_MAX, sizeof(*c->items));
    if (!c->out || !c->in || !c->items) {
        fprintf(stderr, "cstore-fault: out of memory\n");
        exit(2);
    }
}

static void conn_close(struct resp_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->out_len = c->out_sent = c->in_len = 0;
}

static void conn_free(struct resp_conn *c)
{
    conn_close(c);
    free(c->out);
    free(c->in);
    free(c->items);
}

/* Wait by deadline_ms for a nonblocking connect on fd to finish. Returns 0 or a negative
 * errno. */
static int conn_connected(int fd, uint64_t deadline_ms)
{
    for (unsigned tries = 0; tries < 1000; tries++) {
        uint64_t now = now_ms();
        if (now >= deadline_ms)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int n = poll(&pfd, 1, (int)(deadline_ms - now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n == 0 ? -ETIMEDOUT : -errno;
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            return -errno;
        return err ? -err : 0;
    }
    return -ETIMEDOUT;
}

/* Connect to 127.0.0.1:port by deadline_ms. Returns 0 or a negative errno. */
static int conn_open(struct resp_conn *c, int port, uint64_t deadline_ms)
{
    conn_close(c);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        rc = errno == EINPROGRESS ? conn_connected(fd, deadline_ms) : -errno;
    if (rc) {
        close(fd);
        return rc;
    }
    c->fd = fd;
    return 0;
}

/* Append one request (argc bulk strings) to the output. The caller keeps a round within
 * SRV_OUT_BYTES (asserted). */
static void conn_cmd(struct resp_conn *c, unsigned argc, const char *const *argv,
                     const size_t *lens)
{
    cs_assert(argc > 0);
    cs_assert(argc <= SRV_ARGS_MAX);
    size_t need = 16;
    for (unsigned i = 0; i < argc; i++)
        need += lens[i] + 24;
    cs_assert(c->out_len + need <= SRV_OUT_BYTES);
    c->out_len += (size_t)snprintf(c->out + c->out_len, need, "*%u\r\n", argc);
    for (unsigned i = 0; i < argc; i++) {
        c->out_len += (size_t)snprintf(c->out + c->out_len, 24, "$%zu\r\n", lens[i]);
        memcpy(c->out + c->out_len, argv[i], lens[i]);
        memcpy(c->out + c->out_len + lens[i], "\r\n", 2);
        c->out_len += lens[i] + 2;
    }
}

/* A request of NUL-terminated arguments. */
static void conn_cmd_str(struct resp_conn *c, unsigned argc, const char *const *argv)
{
    size_t lens[8];
    cs_assert(argc <= 8);
    for (unsigned i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    conn_cmd(c, argc, argv, lens);
}

/* Hand every whole reply in the input to fn, up to *got == want; keep the rest. Returns 0 or
 * -EPROTO. */
static int conn_parse(struct resp_conn *c, uint32_t want, uint32_t *got, resp_reply_fn fn,
                      void *arg)
{
    size_t off = 0;
    while (*got < want) {
        uint32_t count = 0;
        ssize_t used = resp_parse(c->in + off, c->in_len - off, c->items, &count);
        if (used < 0)
            return -EPROTO;
        if (used == 0)
            break;
        fn(arg, c->items, count);
        off += (size_t)used;
        (*got)++;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return 0;
}

/* Send the requests appended since the last exchange and read `want` replies, handing each to
 * fn in order, all by deadline_ms. Returns 0, -EPIPE (the server closed the connection),
 * -ETIMEDOUT, -EPROTO (not RESP2, or a reply over the limits) or another negative errno; on an
 * error the replies already handed out stay handed out, and the connection must be closed. */
static int conn_exchange(struct resp_conn *c, uint32_t want, uint64_t deadline_ms, resp_reply_fn fn,
                         void *arg)
{
    uint32_t got = 0;
    for (;;) {
        if (conn_parse(c, want, &got, fn, arg))
            return -EPROTO;
        if (got == want && c->out_sent == c->out_len) {
            c->out_len = c->out_sent = 0;
            return 0;
        }
        if (c->in_len == SRV_IN_BYTES)
            return -EPROTO;
        uint64_t now = now_ms();
        if (now >= deadline_ms)
            return -ETIMEDOUT;
        bool sending = c->out_sent < c->out_len;
        struct pollfd pfd = {.fd = c->fd, .events = (short)(POLLIN | (sending ? POLLOUT : 0))};
        int n = poll(&pfd, 1, (int)(deadline_ms - now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ETIMEDOUT;
        if (sending && (pfd.revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                return errno == ECONNRESET ? -EPIPE : -errno;
            c->out_sent += w > 0 ? (size_t)w : 0;
        }
        if (pfd.revents & (POLLIN | POLLERR | POLLHUP)) {
            ssize_t r = recv(c->fd, c->in + c->in_len, SRV_IN_BYTES - c->in_len, 0);
            if (r == 0)
                return -EPIPE;
            if (r < 0 && errno != EAGAIN && errno != EINTR)
                return errno == ECONNRESET ? -EPIPE : -errno;
            c->in_len += r > 0 ? (size_t)r : 0;
        }
    }
}

/* ---- the run ---- */

/* What the scenario knows of one INCR counter. */
struct srv_counter {
    int64_t acked;      /* the value its last acknowledged INCR returned, or the one last read */
    uint32_t in_flight; /* INCRs sent whose reply has not come */
};

enum srv_op { SRV_SET, SRV_DEL, SRV_MSET, SRV_INCR };

/* A command sent whose reply is awaited. */
struct srv_pending {
    struct op_rec r;  /* SET, DEL, MSET: the operation as the model knows it */
    uint8_t op;       /* enum srv_op */
    uint32_t counter; /* SRV_INCR: the counter's index */
};

struct srv_run;

/* One connection of the load and its thread. */
struct srv_client {
    struct srv_run *sr;                        /* the run */
    unsigned t;                                /* its index: which keys and counters it owns */
    struct rng rng;                            /* its operations */
    struct resp_conn conn;                     /* its socket and buffers */
    struct srv_pending pend[SRV_PIPELINE_MAX]; /* the round's commands, in order */
    uint32_t npend;                            /* commands in the round */
    uint32_t next;                             /* the next reply answers pend[next] */
    uint32_t seq;                              /* operations begun this iteration */
    uint8_t round_uses[KEYS_PER_THREAD];       /* commands on each of its keys this round */
    uint64_t acked;                            /* replies acknowledged this iteration */
    uint64_t incr_acked;                       /* of which INCRs */
    char *vbuf;                                /* the values of one command (BATCH_KEYS_MAX) */
};

/* The scenario: its server, its counters and its figures. */
struct srv_run {
    struct fault_ctx *ctx;                         /* the run: configuration, model, counters */
    char bin[PATH_BYTES_MAX];                      /* the cstored executable */
    char bench[PATH_BYTES_MAX];                    /* redis-benchmark, "" when not installed */
    char dir[PATH_BYTES_MAX];                      /* the database (the same every iteration) */
    char port_file[PATH_BYTES_MAX];                /* cstored --port-file */
    char log[PATH_BYTES_MAX];                      /* cstored's stderr, appended */
    const char *durability;                        /* --durability of cstored */
    const char *ckpt_bytes;                        /* --checkpoint_wal_bytes of the next start */
    pid_t pid;                                     /* the running cstored, 0 when none */
    int port;                                      /* its port */
    uint32_t iteration;                            /* 1-based; goes into operation ids */
    atomic_bool killed;                            /* the SIGKILL is sent: connections may break */
    struct srv_counter counters[SRV_COUNTERS_MAX]; /* ctr-NNN */
    uint32_t ncounters;                            /* counters in use */
    uint64_t start_ms_last;                        /* the last start-up, spawn to port file */
    uint64_t start_ms_max;                         /* the slowest start-up */
    uint64_t start_ms_sum;                         /* all start-ups that completed */
    uint32_t starts;                               /* start-ups that completed */
    uint32_t kills;                                /* SIGKILLs sent to cstored */
    uint32_t start_kills;                          /* of which during a start-up */
    uint32_t bench_runs;                           /* iterations with redis-benchmark */
    uint64_t bench_keys;                           /* redis-benchmark keys judged by shape */
    uint64_t counters_checked;                     /* counter verifications */
};

static void srv_violation(struct srv_run *sr, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A violation from any thread (the model's lock serialises the count and the message). */
static void srv_violation(struct srv_run *sr, const char *fmt, ...)
{
    struct model *m = &sr->ctx->model;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&m->lock);
    model_violation(m, "%s", msg);
    pthread_mutex_unlock(&m->lock);
}

static size_t counter_key(uint32_t index, char *buf, size_t size)
{
    return (size_t)snprintf(buf, size, "ctr-%03u", index);
}

/* The index of a counter key, or UINT32_MAX. */
static uint32_t counter_parse(const char *key, size_t len, uint32_t ncounters)
{
    char buf[SRV_ARG_BYTES];
    if (len != 7 || memcmp(key, "ctr-", 4) != 0)
        return UINT32_MAX;
    uint32_t v = 0;
    for (size_t i = 4; i < len; i++) {
        if (key[i] < '0' || key[i] > '9')
            return UINT32_MAX;
        v = v * 10u + (uint32_t)(key[i] - '0');
    }
    counter_key(v, buf, sizeof(buf));
    return v < ncounters && memcmp(buf, key, len) == 0 ? v : UINT32_MAX;
}

/* ---- processes ---- */

/* Wait up to timeout_ms for child pid to end (through a pidfd when the kernel has them).
 * Returns true, with its wait status, when it ended. */
static bool child_wait(pid_t pid, int *status, uint64_t timeout_ms)
{
    int pfd = -1;
#ifdef SYS_pidfd_open
    pfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
    uint64_t deadline = now_ms() + timeout_ms;
    bool done = false;
    for (unsigned steps = 0; steps < 1000000u; steps++) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            done = true;
            break;
        }
        if (r < 0 && errno != EINTR)
            break;
        uint64_t now = now_ms();
        if (now >= deadline)
            break;
        struct pollfd p = {.fd = pfd, .events = POLLIN};
        if (pfd < 0 || poll(&p, 1, (int)(deadline - now)) < 0)
            usleep(1000);
    }
    if (pfd >= 0)
        close(pfd);
    return done;
}

/* Fork and exec argv (argv[0] is the path) with stdin and stdout on /dev/null and stderr
 * appended to log. The child dies with this process (PR_SET_PDEATHSIG: the calling thread, which
 * is always the scenario's main thread). Returns its pid, or -1 when the fork failed. */
static pid_t spawn(const char *const *argv, const char *log)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(126);
    int null = open("/dev/null", O_RDWR);
    int err = open(log, O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(err < 0 ? null : err, 2) < 0)
        _exit(126);
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

/* Fork cstored on the database (sr->pid). */
static void server_spawn(struct srv_run *sr)
{
    char shards[SRV_ARG_BYTES];
    snprintf(shards, sizeof(shards), "%u", sr->ctx->cfg.shards);
    const char *argv[32] = {sr->bin,        "--db",
                            sr->dir,        "--listen",
                            "127.0.0.1:0",  "--port-file",
                            sr->port_file,  "--shards",
                            shards,         "--durability",
                            sr->durability, "--wal_segment_bytes",
                            "1M",           "--checkpoint_wal_bytes",
                            sr->ckpt_bytes};
    unsigned argc = 15;
    if (strcmp(sr->durability, "async") == 0) {
        argv[argc++] = "--sync_interval_ms"; /* a long unsynced tail: the losses show */
        argv[argc++] = "1000";
    }
    argv[argc] = NULL;
    unlink(sr->port_file);
    sr->pid = spawn(argv, sr->log);
    if (sr->pid < 0) {
        fprintf(stderr, "cstore-fault: fork: %s\n", strerror(errno));
        exit(2);
    }
}

/* The port in the port file, or 0 when it is not there (yet). The file is written whole
 * (cstored renames it into place). */
static int port_read(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int port = 0;
    if (fscanf(f, "%d", &port) != 1 || port <= 0 || port > 65535)
        port = 0;
    fclose(f);
    return port;
}

/* Start cstored and wait for its port (at most SRV_START_MS_MAX). Returns false, after a
 * violation, when it exited or did not start in time (then it is killed). */
static bool server_start(struct srv_run *sr)
{
    uint64_t t0 = now_ms();
    server_spawn(sr);
    for (unsigned steps = 0; steps < SRV_START_MS_MAX / SRV_PORT_POLL_MS + 1; steps++) {
        sr->port = port_read(sr->port_file);
        if (sr->port) {
            sr->start_ms_last = now_ms() - t0;
            sr->start_ms_sum += sr->start_ms_last;
            sr->start_ms_max =
                sr->start_ms_last > sr->start_ms_max ? sr->start_ms_last : sr->start_ms_max;
            sr->starts++;
            return true;
        }
        int status = 0;
        if (child_wait(sr->pid, &status, SRV_PORT_POLL_MS)) {
            srv_violation(sr, "iteration %u: cstored exited at start-up (status %#x; see %s)",
                          sr->iteration, status, sr->log);
            sr->pid = 0;
            return false;
        }
        if (now_ms() - t0 > SRV_START_MS_MAX)
            break;
    }
    srv_violation(sr, "iteration %u: cstored did not listen within %u ms (see %s)", sr->iteration,
                  SRV_START_MS_MAX, sr->log);
    kill(sr->pid, SIGKILL);
    int status;
    child_wait(sr->pid, &status, SRV_REAP_MS_MAX);
    sr->pid = 0;
    return false;
}

/* SIGKILL cstored and reap it. It must still have been alive: dying of anything but our
 * SIGKILL is a violation. */
static void server_kill(struct srv_run *sr, const char *when)
{
    if (sr->pid <= 0)
        return;
    atomic_store(&sr->killed, true);
    kill(sr->pid, SIGKILL);
    sr->kills++;
    int status = 0;
    if (!child_wait(sr->pid, &status, SRV_REAP_MS_MAX)) {
        fprintf(stderr, "cstore-fault: cstored (pid %d) is not gone %u ms after SIGKILL\n",
                (int)sr->pid, SRV_REAP_MS_MAX);
        exit(2);
    }
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        srv_violation(sr, "iteration %u: cstored ended by itself %s (status %#x; see %s)",
                      sr->iteration, when, status, sr->log);
    sr->pid = 0;
}

/* SIGTERM: cstored must finish and exit 0 within SRV_STOP_MS_MAX. */
static void server_stop(struct srv_run *sr)
{
    if (sr->pid <= 0)
        return;
    kill(sr->pid, SIGTERM);
    int status = 0;
    if (!child_wait(sr->pid, &status, SRV_STOP_MS_MAX)) {
        srv_violation(sr, "cstored did not stop within %u ms of SIGTERM", SRV_STOP_MS_MAX);
        server_kill(sr, "after SIGTERM");
        return;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        srv_violation(sr, "cstored exited with status %#x after SIGTERM (see %s)", status, sr->log);
    sr->pid = 0;
}

/* redis-benchmark on the server as background load; 0 when it is not installed. */
static pid_t bench_spawn(struct srv_run *sr)
{
    if (!sr->bench[0])
        return 0;
    char port[SRV_ARG_BYTES], keyspace[SRV_ARG_BYTES], data[SRV_ARG_BYTES];
    snprintf(port, sizeof(port), "%d", sr->port);
    snprintf(keyspace, sizeof(keyspace), "%u", SRV_BENCH_KEYSPACE);
    snprintf(data, sizeof(data), "%u", SRV_BENCH_DATA_BYTES);
    const char *argv[] = {sr->bench, "-h",     "127.0.0.1", "-p",      port, "-t", "set",
                          "-r",      keyspace, "-n",        "1000000", "-P", "16", "-c",
                          "8",       "-d",     data,        "-q",      NULL};
    pid_t pid = spawn(argv, "/dev/null");
    if (pid < 0) {
        fprintf(stderr, "cstore-fault: fork: %s\n", strerror(errno));
        exit(2);
    }
    sr->bench_runs++;
    return pid;
}

/* An executable named name on $PATH into out ("" when there is none). */
static void path_find(const char *name, char *out, size_t size)
{
    out[0] = '\0';
    const char *path = getenv("PATH");
    for (const char *p = path; p && *p;) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0 && len + strlen(name) + 2 <= size) {
            snprintf(out, size, "%.*s/%s", (int)len, p, name);
            if (access(out, X_OK) == 0)
                return;
        }
        p = end ? end + 1 : p + len;
    }
    out[0] = '\0';
}

/* cstored beside this executable, or --cstored. Missing: a set-up error (exit 2). */
static void server_find(struct fault_ctx *ctx, char *out, size_t size)
{
    if (ctx->cfg.cstored[0]) {
        snprintf(out, size, "%s", ctx->cfg.cstored);
    } else {
        char self[PATH_BYTES_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        self[n > 0 ? n : 0] = '\0';
        char *slash = strrchr(self, '/');
        if (slash)
            *slash = '\0';
        path_join(out, size, slash ? self : ".", "/", "cstored");
    }
    if (access(out, X_OK) != 0) {
        fprintf(stderr, "cstore-fault: server: no cstored at %s (build it, or give --cstored)\n",
                out);
        exit(2);
    }
}

/* ---- the load ---- */

/* A key of connection t with room in the round, as a model index; UINT32_MAX when the draws
 * found none. */
static uint32_t client_key(struct srv_client *cl)
{
    for (unsigned tries = 0; tries < SRV_KEY_TRIES_MAX; tries++) {
        uint32_t i = (uint32_t)rng_below(&cl->rng, KEYS_PER_THREAD);
        if (cl->round_uses[i] < SRV_KEY_INFLIGHT_MAX) {
            cl->round_uses[i]++;
            return cl->t * KEYS_PER_THREAD + i;
        }
    }
    return UINT32_MAX;
}

/* Draw the next command of connection cl into p, announce it to the model and append it to the
 * output. */
static void client_op(struct srv_client *cl, struct srv_pending *p, char *vbuf)
{
    struct srv_run *sr = cl->sr;
    memset(p, 0, sizeof(*p));
    struct op_rec *r = &p->r;
    r->magic = REC_MAGIC;
    r->kind = REC_INTENT;
    r->thread = (uint16_t)cl->t;
    r->op_id = (uint64_t)sr->iteration << 32 | (uint64_t)cl->t << 24 | (++cl->seq & 0xffffffu);
    uint64_t dice = rng_below(&cl->rng, 100);
    p->op = dice < 40 ? SRV_SET : dice < 55 ? SRV_DEL : dice < 80 ? SRV_MSET : SRV_INCR;
    unsigned want = p->op == SRV_MSET ? 2 + (unsigned)rng_below(&cl->rng, BATCH_KEYS_MAX - 1) : 1;
    for (unsigned tries = 0; p->op != SRV_INCR && r->count < want && tries < want * 4; tries++) {
        uint32_t k = client_key(cl);
        bool dup = k == UINT32_MAX;
        for (unsigned i = 0; i < r->count && !dup; i++)
            dup = r->key[i] == k;
        if (dup) {
            if (k != UINT32_MAX)
                cl->round_uses[k - cl->t * KEYS_PER_THREAD]--;
            continue;
        }
        r->key[r->count] = k;
        r->val[r->count] = p->op == SRV_DEL ? 0 : r->op_id << 3 | (r->count + 1u);
        r->count++;
    }
    if (p->op == SRV_MSET && r->count == 1)
        p->op = SRV_SET; /* no second key had room */
    if (r->count == 0)
        p->op = SRV_INCR;
    const char *argv[1 + 2 * BATCH_KEYS_MAX];
    size_t lens[1 + 2 * BATCH_KEYS_MAX];
    char keys[BATCH_KEYS_MAX][SRV_ARG_BYTES];
    unsigned argc = 1;
    static const char *const names[] = {"SET", "DEL", "MSET", "INCR"};
    argv[0] = names[p->op];
    lens[0] = strlen(argv[0]);
    if (p->op == SRV_INCR) {
        p->counter =
            cl->t * SRV_COUNTERS_PER_CONN + (uint32_t)rng_below(&cl->rng, SRV_COUNTERS_PER_CONN);
        sr->counters[p->counter].in_flight++;
        lens[1] = counter_key(p->counter, keys[0], sizeof(keys[0]));
        argv[argc++] = keys[0];
        conn_cmd(&cl->conn, argc, argv, lens);
        return;
    }
    for (unsigned i = 0; i < r->count; i++) {
        lens[argc] = key_make(r->key[i], keys[i], sizeof(keys[i]));
        argv[argc++] = keys[i];
        if (p->op == SRV_DEL)
            continue;
        char *v = vbuf + i * (VAL_HEAD_BYTES + SRV_FILLER_MAX + 1);
        lens[argc] = value_make(r->val[i], SRV_FILLER_MAX, v);
        argv[argc++] = v;
    }
    model_apply(&sr->ctx->model, r);
    conn_cmd(&cl->conn, argc, argv, lens);
}

/* A reply of the load: it answers pend[next]. */
static void client_reply(void *arg, const struct resp_item *items, uint32_t count)
{
    struct srv_client *cl = arg;
    struct srv_run *sr = cl->sr;
    cs_assert(cl->next < cl->npend);
    cs_assert(count > 0);
    struct srv_pending *p = &cl->pend[cl->next++];
    const struct resp_item *it = &items[0];
    bool ok = false;
    int rc = 0;
    if (p->op == SRV_SET || p->op == SRV_MSET) {
        ok = it->type == '+' && it->len == 2 && memcmp(it->s, "OK", 2) == 0;
    } else if (p->op == SRV_DEL) {
        ok = it->type == ':' && (it->n == 0 || it->n == 1);
        rc = it->n == 0 ? CS_ENOTFOUND : 0; /* acknowledged: the key is absent */
    } else {
        struct srv_counter *c = &sr->counters[p->counter];
        ok = it->type == ':';
        if (ok && it->n != c->acked + 1)
            srv_violation(sr,
                          "INCR ctr-%03u answered %" PRId64 ", but its last acknowledged value "
                          "was %" PRId64 " and it is the connection's own",
                          p->counter, it->n, c->acked);
        if (ok) {
            c->acked = it->n;
            c->in_flight--;
            cl->incr_acked++;
        }
    }
    if (!ok) {
        srv_violation(sr, "connection %u: %s answered '%c%.*s'", cl->t,
                      p->op == SRV_SET    ? "SET"
                      : p->op == SRV_DEL  ? "DEL"
                      : p->op == SRV_MSET ? "MSET"
                                          : "INCR",
                      it->type, (int)(it->len > 80 ? 80 : it->len), it->s ? it->s : "");
        rc = -EPROTO;
    }
    cl->acked += ok;
    if (p->op == SRV_INCR)
        return;
    p->r.kind = ok ? REC_ACK : REC_FAIL;
    p->r.rc = rc;
    model_apply(&sr->ctx->model, &p->r);
}

/* One connection's load until the server is killed (its connection breaks) or the sequence
 * numbers run out. */
static void *client_main(void *arg)
{
    struct srv_client *cl = arg;
    struct srv_run *sr = cl->sr;
    int rc = conn_open(&cl->conn, sr->port, now_ms() + SRV_REPLY_MS_MAX);
    while (rc == 0 && cl->seq < 0xffffffu - SRV_PIPELINE_MAX) {
        memset(cl->round_uses, 0, sizeof(cl->round_uses));
        cl->npend = 1 + (uint32_t)rng_below(&cl->rng, SRV_PIPELINE_MAX);
        cl->next = 0;
        for (uint32_t i = 0; i < cl->npend; i++)
            client_op(cl, &cl->pend[i], cl->vbuf);
        rc = conn_exchange(&cl->conn, cl->npend, now_ms() + SRV_REPLY_MS_MAX, client_reply, cl);
    }
    if (rc && !atomic_load(&sr->killed))
        srv_violation(sr, "iteration %u: connection %u broke while cstored was alive: %s",
                      sr->iteration, cl->t, strerror(-rc));
    conn_close(&cl->conn);
    return NULL;
}

/* ---- the check, through the network ---- */

/* What a check gathers as its replies come. */
struct srv_check {
    struct srv_run *sr;                        /* the run */
    struct model *m;                           /* its model; m->got receives the states read */
    char *scratch;                             /* value_parse */
    bool ok;                                   /* the last reply was the expected kind */
    uint32_t first;                            /* MGET of model keys: the first one's index */
    uint32_t asked;                            /* MGET: keys asked */
    int64_t counter_got[SRV_COUNTERS_MAX];     /* the value each counter read as (0: absent) */
    uint8_t seen[KEYS_MAX];                    /* SCAN: model keys seen */
    uint8_t counter_seen[SRV_COUNTERS_MAX];    /* SCAN: counters seen */
    char cursor[SRV_ARG_BYTES];                /* SCAN: the next cursor ("0": done) */
    uint64_t scanned;                          /* SCAN: keys seen in all */
    char bench[SRV_SCAN_COUNT][SRV_ARG_BYTES]; /* SCAN: this page's redis-benchmark keys */
    uint32_t nbench;                           /* entries of bench in use */
    int64_t dbsize;                            /* DBSIZE's answer */
};

static void check_simple(void *arg, const struct resp_item *items, uint32_t count)
{
    struct srv_check *ck = arg;
    ck->ok = count == 1 && items[0].type == '+' && items[0].len == 4 &&
             memcmp(items[0].s, "PONG", 4) == 0;
}

static void check_int(void *arg, const struct resp_item *items, uint32_t count)
{
    struct srv_check *ck = arg;
    ck->ok = count == 1 && items[0].type == ':';
    ck->dbsize = items[0].n;
}

/* An MGET of model keys [first, first + asked): judge each. */
static void check_mget_keys(void *arg, const struct resp_item *items, uint32_t count)
{
    struct srv_check *ck = arg;
    ck->ok = items[0].type == '*' && items[0].n == (int64_t)ck->asked && count == ck->asked + 1;
    for (uint32_t j = 0; ck->ok && j < ck->asked; j++) {
        uint32_t i = ck->first + j;
        const struct resp_item *it = &items[1 + j];
        char key[SRV_ARG_BYTES];
        key_make(i, key, sizeof(key));
        uint64_t g = 0;
        if (it->type == '$' && it->n >= 0)
            g = model_read_value(ck->m, key, it->s, it->len, SRV_FILLER_MAX, ck->scratch);
        else if (it->type != '$')
            srv_violation(ck->sr, "MGET answered '%c' for %s", it->type, key);
        ck->m->got[i] = g;
        model_check_key(ck->m, i, g, 0, false);
    }
}

/* The MGET of every counter: each between its acknowledged value and that plus its INCRs in
 * flight. */
static void check_mget_counters(void *arg, const struct resp_item *items, uint32_t count)
{
    struct srv_check *ck = arg;
    struct srv_run *sr = ck->sr;
    ck->ok =
        items[0].type == '*' && items[0].n == (int64_t)sr->ncounters && count == sr->ncounters + 1;
    for (uint32_t c = 0; ck->ok && c < sr->ncounters; c++) {
        const struct resp_item *it = &items[1 + c];
        const struct srv_counter *sc = &sr->counters[c];
        int64_t v = 0;
        if (it->type == '$' && it->n >= 0 && !resp_int(it->s, it->len, &v))
            srv_violation(sr, "ctr-%03u holds '%.*s', not a number", c, (int)it->len, it->s);
        ck->counter_got[c] = v;
        sr->counters_checked++;
        ck->m->res->keys_checked++;
        if (v < sc->acked || v > sc->acked + (int64_t)sc->in_flight)
            srv_violation(sr,
                          "ctr-%03u reads %" PRId64 ", but %" PRId64 " was acknowledged and %u "
                          "INCRs were in flight",
                          c, v, sc->acked, sc->in_flight);
    }
}

/* Is this value what redis-benchmark writes? 3 bytes of its generated data: '0'..'o' (7.x) or
 * 'x' (before). */
static bool bench_value(const struct resp_item *it)
{
    if (it->type != '$' || it->n != SRV_BENCH_DATA_BYTES)
        return false;
    for (size_t i = 0; i < it->len; i++)
        if (!((it->s[i] >= '0' && it->s[i] <= 'o') || it->s[i] == 'x'))
            return false;
    return true;
}

/* A redis-benchmark key: "key:" and 12 digits, below the keyspace. */
static bool bench_key(const char *s, size_t len)
{
    if (len != 16 || memcmp(s, "key:", 4) != 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 4; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10u + (uint64_t)(s[i] - '0');
    }
    return v < SRV_BENCH_KEYSPACE;
}

/* One SCAN page: classify every key. */
static void check_scan(void *arg, const struct resp_item *items, uint32_t count)
{
    struct srv_check *ck = arg;
    struct srv_run *sr = ck->sr;
    ck->ok = count >= 3 && items[0].type == '*' && items[0].n == 2 && items[1].type == '$' &&
             items[1].len < sizeof(ck->cursor) && items[2].type == '*' &&
             count == 3 + (uint32_t)(items[2].n > 0 ? items[2].n : 0) &&
             (uint32_t)count - 3 <= SRV_SCAN_COUNT;
    ck->nbench = 0;
    if (!ck->ok)
        return;
    memcpy(ck->cursor, items[1].s, items[1].len);
    ck->cursor[items[1].len] = '\0';
    for (uint32_t j = 3; j < count; j++) {
        const struct resp_item *it = &items[j];
        ck->scanned++;
        uint32_t i = it->type == '$' ? key_parse(it->s, it->len, ck->m->nkeys) : UINT32_MAX;
        uint32_t c = it->type == '$' ? counter_parse(it->s, it->len, sr->ncounters) : UINT32_MAX;
        if (i != UINT32_MAX) {
            if (ck->seen[i]++ || ck->m->got[i] == 0)
                srv_violation(sr, "SCAN shows key-%06u %s", i,
                              ck->seen[i] > 1 ? "twice" : "which MGET did not find");
        } else if (c != UINT32_MAX) {
            if (ck->counter_seen[c]++ || ck->counter_got[c] == 0)
                srv_violation(sr, "SCAN shows ctr-%03u %s", c,
                              ck->counter_seen[c] > 1 ? "twice" : "which MGET did not find");
        } else if (it->type == '$' && bench_key(it->s, it->len)) {
            memcpy(ck->bench[ck->nbench], it->s, it->len);
            ck->bench[ck->nbench++][it->len] = '\0';
        } else {
            srv_violation(sr, "SCAN shows a key that was never written: '%.*s'",
                          (int)(it->len > 64 ? 64 : it->len), it->s ? it->s : "");
        }
    }
}

/* The MGET of a SCAN page's redis-benchmark keys: each of its shape. */
static void check_mget_bench(void *arg, const struct resp_item *items, uint32_t count)
{
    struct srv_check *ck = arg;
    ck->ok = items[0].type == '*' && items[0].n == (int64_t)ck->nbench && count == ck->nbench + 1;
    for (uint32_t j = 0; ck->ok && j < ck->nbench; j++) {
        ck->sr->bench_keys++;
        if (!bench_value(&items[1 + j]))
            srv_violation(ck->sr, "%s holds %zd bytes that redis-benchmark does not write",
                          ck->bench[j], (ssize_t)items[1 + j].n);
    }
}

/* Send one request and take its reply into fn; a broken connection or a reply of the wrong
 * kind (fn leaves ck->ok false) is a violation. Returns whether the reply came and was of the
 * right kind. */
static bool check_call(struct srv_check *ck, struct resp_conn *c, const char *what,
                       resp_reply_fn fn)
{
    ck->ok = false;
    int rc = conn_exchange(c, 1, now_ms() + SRV_REPLY_MS_MAX, fn, ck);
    if (rc)
        srv_violation(ck->sr, "check: %s: %s", what, strerror(-rc));
    else if (!ck->ok)
        srv_violation(ck->sr, "check: %s: an unexpected reply", what);
    return rc == 0 && ck->ok;
}

/* MGET every model key and every counter, judge them (the file comment). Returns false when
 * the server did not answer. */
static bool check_values(struct srv_check *ck, struct resp_conn *c)
{
    struct srv_run *sr = ck->sr;
    const char *argv[1 + SRV_MGET_KEYS];
    size_t lens[1 + SRV_MGET_KEYS];
    char keys[SRV_MGET_KEYS][SRV_ARG_BYTES];
    argv[0] = "MGET";
    lens[0] = 4;
    for (uint32_t first = 0; first < ck->m->nkeys; first += SRV_MGET_KEYS) {
        ck->first = first;
        ck->asked = ck->m->nkeys - first < SRV_MGET_KEYS ? ck->m->nkeys - first : SRV_MGET_KEYS;
        for (uint32_t j = 0; j < ck->asked; j++) {
            lens[1 + j] = key_make(first + j, keys[j], sizeof(keys[j]));
            argv[1 + j] = keys[j];
        }
        conn_cmd(c, 1 + ck->asked, argv, lens);
        if (!check_call(ck, c, "MGET of the keys", check_mget_keys))
            return false;
    }
    model_check_batches(ck->m, ck->m->got);
    cs_assert(sr->ncounters <= SRV_MGET_KEYS);
    for (uint32_t k = 0; k < sr->ncounters; k++) {
        lens[1 + k] = counter_key(k, keys[k], sizeof(keys[k]));
        argv[1 + k] = keys[k];
    }
    conn_cmd(c, 1 + sr->ncounters, argv, lens);
    return check_call(ck, c, "MGET of the counters", check_mget_counters);
}

/* SCAN every key (each a known one, once) and DBSIZE (the count). */
static bool check_scan_all(struct srv_check *ck, struct resp_conn *c)
{
    struct srv_run *sr = ck->sr;
    snprintf(ck->cursor, sizeof(ck->cursor), "0");
    unsigned steps = 0;
    for (; steps < SRV_SCAN_STEPS_MAX; steps++) {
        char countv[SRV_ARG_BYTES];
        snprintf(countv, sizeof(countv), "%u", SRV_SCAN_COUNT);
        char cursor[SRV_ARG_BYTES];
        memcpy(cursor, ck->cursor, sizeof(cursor));
        const char *scan[] = {"SCAN", cursor, "COUNT", countv};
        conn_cmd_str(c, 4, scan);
        if (!check_call(ck, c, "SCAN", check_scan))
            return false;
        if (ck->nbench) {
            const char *argv[1 + SRV_SCAN_COUNT];
            size_t lens[1 + SRV_SCAN_COUNT];
            argv[0] = "MGET";
            lens[0] = 4;
            for (uint32_t j = 0; j < ck->nbench; j++) {
                argv[1 + j] = ck->bench[j];
                lens[1 + j] = strlen(ck->bench[j]);
            }
            conn_cmd(c, 1 + ck->nbench, argv, lens);
            if (!check_call(ck, c, "MGET of redis-benchmark keys", check_mget_bench))
                return false;
        }
        if (strcmp(ck->cursor, "0") == 0)
            break;
    }
    if (steps == SRV_SCAN_STEPS_MAX)
        srv_violation(sr, "SCAN did not end within %u calls", SRV_SCAN_STEPS_MAX);
    uint32_t present = 0, seen = 0;
    for (uint32_t i = 0; i < ck->m->nkeys; i++) {
        present += ck->m->got[i] != 0;
        seen += ck->seen[i] != 0;
    }
    for (uint32_t k = 0; k < sr->ncounters; k++) {
        present += ck->counter_got[k] != 0;
        seen += ck->counter_seen[k] != 0;
    }
    if (present != seen)
        srv_violation(sr, "SCAN saw %u of the scenario's keys, MGET found %u", seen, present);
    const char *dbsize[] = {"DBSIZE"};
    conn_cmd_str(c, 1, dbsize);
    if (!check_call(ck, c, "DBSIZE", check_int))
        return false;
    if (ck->dbsize != (int64_t)ck->scanned)
        srv_violation(sr, "DBSIZE answers %" PRId64 ", SCAN saw %" PRIu64 " keys", ck->dbsize,
                      ck->scanned);
    return true;
}

/* Check the running server against the model (the file comment), then adopt what it holds. */
static void server_check(struct srv_run *sr, struct srv_check *ck, struct resp_conn *c)
{
    struct model *m = &sr->ctx->model;
    memset(ck, 0, offsetof(struct srv_check, bench));
    ck->sr = sr;
    ck->m = m;
    ck->scratch = malloc(VAL_HEAD_BYTES + SRV_FILLER_MAX + 1);
    if (!ck->scratch)
        exit(2);
    m->stage = "server check after restart";
    int rc = conn_open(c, sr->port, now_ms() + SRV_REPLY_MS_MAX);
    if (rc) {
        srv_violation(sr, "check: connect to cstored: %s", strerror(-rc));
    } else {
        const char *ping[] = {"PING"};
        conn_cmd_str(c, 1, ping);
        if (check_call(ck, c, "PING", check_simple) && check_values(ck, c))
            check_scan_all(ck, c);
    }
    conn_close(c);
    /* settled: what was read is the acknowledged state now */
    model_adopt(m, m->got);
    for (uint32_t k = 0; k < sr->ncounters; k++) {
        sr->counters[k].acked = ck->counter_got[k];
        sr->counters[k].in_flight = 0;
    }
    free(ck->scratch);
    ck->scratch = NULL;
}

/* ---- the iterations ---- */

/* Start cstored, in some iterations SIGKILLing a first start-up after a seeded delay (during
 * its recovery, or just after). Returns whether a server is up. */
static bool server_restart(struct srv_run *sr, struct rng *rng, bool *start_killed)
{
    *start_killed = rng_below(rng, 4) == 0;
    if (*start_killed) {
        uint64_t delay = rng_below(rng, sr->start_ms_last + 2);
        server_spawn(sr);
        int status = 0;
        if (delay && child_wait(sr->pid, &status, delay)) {
            srv_violation(sr, "iteration %u: cstored exited at start-up (status %#x; see %s)",
                          sr->iteration, status, sr->log);
            sr->pid = 0;
        }
        server_kill(sr, "during its start-up");
        sr->start_kills++;
    }
    return server_start(sr);
}

/* The load on the running server until a SIGKILL after kill_ms; with bench, redis-benchmark
 * alongside. */
static void load_and_kill(struct srv_run *sr, struct srv_client *cl, uint64_t kill_ms, bool bench)
{
    struct fault_ctx *ctx = sr->ctx;
    atomic_store(&sr->killed, false);
    ctx->model.stage = "server load";
    pid_t bpid = bench ? bench_spawn(sr) : 0;
    pthread_t tid[THREADS_MAX];
    for (unsigned t = 0; t < ctx->cfg.threads; t++) {
        cl[t].acked = cl[t].incr_acked = 0;
        cl[t].seq = 0;
        if (pthread_create(&tid[t], NULL, client_main, &cl[t]) != 0) {
            fprintf(stderr, "cstore-fault: pthread_create failed\n");
            exit(2);
        }
    }
    int status = 0;
    if (child_wait(sr->pid, &status, kill_ms)) {
        srv_violation(sr, "iteration %u: cstored died under load (status %#x; see %s)",
                      sr->iteration, status, sr->log);
        atomic_store(&sr->killed, true); /* the connections' breaks are this one's echo */
        sr->pid = 0;
    }
    server_kill(sr, "under load");
    for (unsigned t = 0; t < ctx->cfg.threads; t++)
        pthread_join(tid[t], NULL);
    if (bpid > 0) {
        kill(bpid, SIGKILL);
        if (!child_wait(bpid, &status, SRV_REAP_MS_MAX))
            fprintf(stderr, "cstore-fault: redis-benchmark (pid %d) is not gone\n", (int)bpid);
    }
}

static void srv_run_init(struct srv_run *sr, struct fault_ctx *ctx, const char *dir)
{
    sr->ctx = ctx;
    server_find(ctx, sr->bin, sizeof(sr->bin));
    path_find("redis-benchmark", sr->bench, sizeof(sr->bench));
    snprintf(sr->dir, sizeof(sr->dir), "%s", dir);
    path_join(sr->port_file, sizeof(sr->port_file), dir, ".", "port");
    path_join(sr->log, sizeof(sr->log), dir, ".", "log");
    unlink(sr->log);
    sr->durability = ctx->cfg.durability[0] ? ctx->cfg.durability : "sync";
    sr->ckpt_bytes = "256K";
    sr->ncounters = ctx->cfg.threads * SRV_COUNTERS_PER_CONN;
    atomic_init(&sr->killed, false);
    if (!sr->bench[0])
        printf("server: redis-benchmark is not on the PATH: its iterations run without it\n");
}

static struct srv_client *clients_new(struct srv_run *sr, struct rng *rng)
{
    unsigned n = sr->ctx->cfg.threads;
    struct srv_client *cl = calloc(n, sizeof(*cl));
    if (!cl) {
        fprintf(stderr, "cstore-fault: out of memory\n");
        exit(2);
    }
    for (unsigned t = 0; t < n; t++) {
        cl[t].sr = sr;
        cl[t].t = t;
        cl[t].rng.s = mix64(rng_next(rng) ^ t);
        conn_init(&cl[t].conn);
        cl[t].vbuf = malloc(BATCH_KEYS_MAX * (VAL_HEAD_BYTES + SRV_FILLER_MAX + 1));
        if (!cl[t].vbuf) {
            fprintf(stderr, "cstore-fault: out of memory\n");
            exit(2);
        }
    }
    return cl;
}

static void clients_free(struct srv_run *sr, struct srv_client *cl)
{
    for (unsigned t = 0; t < sr->ctx->cfg.threads; t++) {
        conn_free(&cl[t].conn);
        free(cl[t].vbuf);
    }
    free(cl);
}

/* After the iterations: SIGTERM (a clean exit), start, check, SIGTERM again. */
static void server_finish(struct srv_run *sr, struct srv_check *ck, struct resp_conn *c)
{
    if (sr->pid <= 0)
        return;
    sr->ctx->model.stage = "server stop";
    server_stop(sr);
    sr->iteration++;
    if (!server_start(sr))
        return;
    server_check(sr, ck, c);
    server_stop(sr);
}

void run_server(struct fault_ctx *ctx, struct result *res, unsigned share)
{
    char dir[PATH_BYTES_MAX];
    struct pacer p;
    struct rng rng = scenario_begin(ctx, SC_SERVER, share, dir, sizeof(dir), &p);
    struct srv_run *sr = calloc(1, sizeof(*sr));
    struct srv_check *ck = calloc(1, sizeof(*ck));
    if (!sr || !ck) {
        fprintf(stderr, "cstore-fault: out of memory\n");
        exit(2);
    }
    srv_run_init(sr, ctx, dir);
    struct srv_client *cl = clients_new(sr, &rng);
    struct resp_conn checker;
    conn_init(&checker);
    unsigned passed = 0, failed = 0;
    uint64_t commands = 0, incrs_all = 0;
    ctx->model.stage = "server start";
    bool up = server_start(sr);
    for (unsigned it = 0; up && pacer_more(&p, it); it++) {
        uint64_t violations_before = res->violations, acked_before = ctx->model.acked_ops;
        sr->iteration = it + 1;
        bool bench = it % 4 == 3;
        uint64_t kill_ms = bench                     ? 200 + rng_below(&rng, 800)
                           : rng_below(&rng, 4) == 0 ? 5 + rng_below(&rng, 40)
                                                     : 40 + rng_below(&rng, 600);
        load_and_kill(sr, cl, kill_ms, bench);
        uint64_t acked = 0, incrs = 0;
        for (unsigned t = 0; t < ctx->cfg.threads; t++) {
            acked += cl[t].acked;
            incrs += cl[t].incr_acked;
        }
        res->acked_ops += incrs; /* the model counts the others */
        sr->ckpt_bytes = it % 2 ? "256K" : "4M";
        bool start_killed = false;
        ctx->model.stage = "server restart";
        up = server_restart(sr, &rng, &start_killed);
        if (up)
            server_check(sr, ck, &checker);
        commands += acked;
        incrs_all += incrs;
        bool ok = res->violations == violations_before;
        passed += ok;
        failed += !ok;
        res->iterations++;
        printf("server %u: %skilled after %" PRIu64 " ms: %" PRIu64
               " commands acknowledged (%" PRIu64 " key writes, %" PRIu64
               " INCR); restart %s%" PRIu64 " ms; %s\n",
               it, bench && sr->bench[0] ? "redis-benchmark, " : "", kill_ms, acked,
               ctx->model.acked_ops - acked_before, incrs,
               start_killed ? "killed during start-up, then " : "", sr->start_ms_last,
               ok ? "ok" : "VIOLATIONS");
        fflush(stdout);
    }
    server_finish(sr, ck, &checker);
    if (sr->pid > 0)
        server_kill(sr, "at the end");
    res->acked_ops += ctx->model.acked_ops;
    res->failed_ops += ctx->model.failed_ops;
    res->faults += sr->kills;
    printf("server: %u passed, %u failed; %" PRIu64 " acknowledged commands checked (%" PRIu64
           " key writes, %" PRIu64 " INCR), %" PRIu64 " counter reads; %u kills (%u during "
           "start-up); start-up %" PRIu64 " ms mean, %" PRIu64 " ms max; redis-benchmark in %u "
           "iterations, %" PRIu64 " reads of its keys\n",
           passed, failed, commands, ctx->model.acked_ops, incrs_all, sr->counters_checked,
           sr->kills, sr->start_kills, sr->starts ? sr->start_ms_sum / sr->starts : 0,
           sr->start_ms_max, sr->bench_runs, sr->bench_keys);
    conn_free(&checker);
    clients_free(sr, cl);
    if (res->violations == 0 || !ctx->cfg.db_given)
        unlink(sr->log);
    unlink(sr->port_file);
    free(ck);
    free(sr);
    scenario_dir_done(ctx, dir);
}
