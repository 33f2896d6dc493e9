/* Integration tests of cstored from C: a real server (the built binary, started per test on a
 * loopback port the kernel picks, stopped with SIGTERM and its exit status checked) reached with
 * hiredis and with raw sockets. They prove: binary-safe keys and values (NUL, CR, LF inside) and
 * large values; a pipeline of thousands of commands answered in order; MSET across shards seen
 * whole; a corpus of malformed requests each answered with a protocol error and a closed
 * connection while the data stays intact and the server keeps serving; many idle connections;
 * maxclients; a client that does not read its replies held back (the server stops reading from
 * it) without hurting the others or growing the server; a reply over the output limit closing
 * its connection; a request over the query limit refused; cross-shard commits beside cursors;
 * MULTI/EXEC: each command's reply in EXEC's array with reads seeing the block's writes,
 * EXECABORT and the other errors, DISCARD, WATCH aborting on another client's change (and not
 * otherwise), blocks across shards seen whole, retries applying a block once, the connection's
 * order kept around EXEC, the byte budget of a block. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/test_util.h"

static char root[CST_PATH_MAX];
static pid_t server_pid;
static int server_port;

static bool port_written(void *arg)
{
    const char *path = arg;
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    int port = 0;
    bool ok = fscanf(f, "%d", &port) == 1 && port > 0;
    fclose(f);
    if (ok)
        server_port = port;
    return ok;
}

/* Start cstored on root/db with extra flags (NULL-terminated). */
static void start_server(const char *first, ...)
{
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char bin[CST_PATH_MAX], db[CST_PATH_MAX + 8], portf[CST_PATH_MAX + 8], log[CST_PATH_MAX + 8];
    snprintf(bin, sizeof(bin), "%s/cstored", build);
    snprintf(db, sizeof(db), "%s/db", root);
    snprintf(portf, sizeof(portf), "%s/port", root);
    snprintf(log, sizeof(log), "%s/log", root);
    unlink(portf);
    const char *argv[32] = {bin,           "--db", db,         "--listen", "127.0.0.1:0",
                            "--port-file", portf,  "--shards", "2"};
    int argc = 9;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    server_pid = fork();
    assert_true(server_pid >= 0);
    if (server_pid == 0) {
        /* under AddressSanitizer: freed memory goes back at once, so that the resident size
         * the tests look at is what the server holds (no effect on other builds) */
        setenv("ASAN_OPTIONS", "quarantine_size_mb=0:allocator_release_to_os_interval_ms=0", 0);
        FILE *f = freopen(log, "a", stderr); /* and nothing on the test's own output */
        FILE *o = freopen("/dev/null", "w", stdout);
        (void)f;
        (void)o;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    if (!cst_wait_until(port_written, portf, 10000))
        fail_msg("cstored did not start (see %s)", log);
}

static bool exited(void *arg)
{
    int *status = arg;
    return waitpid(server_pid, status, WNOHANG) == server_pid;
}

static void stop_server(void)
{
    int status = 0;
    kill(server_pid, SIGTERM);
    if (!cst_wait_until(exited, &status, 10000)) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, &status, 0);
        fail_msg("cstored did not stop within 10 s of SIGTERM");
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static redisContext *connect_client(void)
{
    struct timeval tv = {.tv_sec = 10};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", server_port, tv);
    assert_non_null(c);
    if (c->err)
        fail_msg("connect: %s", c->errstr);
    assert_int_equal(redisSetTimeout(c, tv), REDIS_OK);
    return c;
}

static redisReply *cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r)
        fail_msg("command failed: %s", c->errstr);
    return r;
}

static void expect_status(redisContext *c, const char *want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, want) != 0)
        fail_msg("expected +%s, got type %d '%s'", want, r->type, r->str ? r->str : "");
    freeReplyObject(r);
}

static int raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Read until the server closes (or timeout_ms passes with nothing new); returns bytes read and
 * whether it closed. */
static size_t raw_read_all(int fd, char *buf, size_t cap, int timeout_ms, bool *closed)
{
    size_t n = 0;
    *closed = false;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, timeout_ms) <= 0)
            return n;
        char tmp[65536];
        ssize_t got = recv(fd, tmp, sizeof(tmp), 0);
        if (got <= 0) {
            *closed = true;
            return n;
        }
        size_t take = (size_t)got < cap - n ? (size_t)got : cap - n;
        memcpy(buf + n, tmp, take);
        n += take;
    }
}

static int setup(void **state)
{
    (void)state;
    cst_tmpdir_make(root, sizeof(root), "server");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cst_tmpdir_remove(root);
    return 0;
}

static void test_binary_safe_values_and_big_values(void **state)
{
    (void)state;
    start_server(NULL);
    redisContext *c = connect_client();
    const char key[] = "k\0e\r\ny";
    const char val[] = "v\0a\r\nl\n\rue";
    expect_status(c, "OK", "SET %b %b", key, sizeof(key), val, sizeof(val));
    redisReply *r = cmd(c, "GET %b", key, sizeof(key));
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, sizeof(val));
    assert_memory_equal(r->str, val, sizeof(val));
    freeReplyObject(r);
    size_t big = 1u << 20;
    char *b = malloc(big);
    assert_non_null(b);
    for (size_t i = 0; i < big; i++)
        b[i] = (char)(i * 7 + 3);
    expect_status(c, "OK", "SET big %b", b, big);
    r = cmd(c, "GET big");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, big);
    assert_memory_equal(r->str, b, big);
    freeReplyObject(r);
    r = cmd(c, "STRLEN big");
    assert_int_equal(r->integer, (long long)big);
    freeReplyObject(r);
    free(b);
    redisFree(c);
    stop_server();
}

static void test_pipeline_answers_in_order(void **state)
{
    (void)state;
    start_server(NULL);
    redisContext *c = connect_client();
    enum { N = 5000 };
    for (int i = 0; i < N; i++) {
        assert_int_equal(redisAppendCommand(c, "SET key%d val%d", i, i), REDIS_OK);
        assert_int_equal(redisAppendCommand(c, "GET key%d", i), REDIS_OK);
        assert_int_equal(redisAppendCommand(c, "INCR ctr"), REDIS_OK);
    }
    for (int i = 0; i < N; i++) {
        redisReply *r;
        assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
        assert_int_equal(r->type, REDIS_REPLY_STATUS);
        freeReplyObject(r);
        assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
        char want[32];
        snprintf(want, sizeof(want), "val%d", i);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_string_equal(r->str, want);
        freeReplyObject(r);
        assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        assert_int_equal(r->integer, i + 1);
        freeReplyObject(r);
    }
    redisFree(c);
    stop_server();
}

/* MSET over keys of both shards is one transaction: a reader that MGETs them in a loop while a
 * writer MSETs them to equal values never sees two different values. */
static void test_mset_across_shards_is_atomic(void **state)
{
    (void)state;
    start_server(NULL);
    redisContext *w = connect_client();
    redisContext *rd = connect_client();
    enum { KEYS = 8, ROUNDS = 300 };
    for (int round = 0; round < ROUNDS; round++) {
        char argbuf[KEYS][16], vals[16];
        const char *argv[1 + 2 * KEYS];
        size_t argl[1 + 2 * KEYS];
        argv[0] = "MSET";
        argl[0] = 4;
        snprintf(vals, sizeof(vals), "%d", round);
        for (int k = 0; k < KEYS; k++) {
            snprintf(argbuf[k], sizeof(argbuf[k]), "acct%d", k);
            argv[1 + 2 * k] = argbuf[k];
            argl[1 + 2 * k] = strlen(argbuf[k]);
            argv[2 + 2 * k] = vals;
            argl[2 + 2 * k] = strlen(vals);
        }
        assert_int_equal(redisAppendCommandArgv(w, 1 + 2 * KEYS, argv, argl), REDIS_OK);
        redisReply *r = cmd(rd, "MGET acct0 acct1 acct2 acct3 acct4 acct5 acct6 acct7");
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        assert_int_equal(r->elements, KEYS);
        for (int k = 1; k < KEYS; k++) {
            assert_int_equal(r->element[k]->type, r->element[0]->type);
            if (r->element[0]->type == REDIS_REPLY_STRING)
                assert_string_equal(r->element[k]->str, r->element[0]->str);
        }
        freeReplyObject(r);
        redisReply *ok;
        assert_int_equal(redisGetReply(w, (void **)&ok), REDIS_OK);
        assert_int_equal(ok->type, REDIS_REPLY_STATUS);
        freeReplyObject(ok);
    }
    redisFree(w);
    redisFree(rd);
    stop_server();
}

/* Cross-shard MSETs (whose commit steps run on the shard threads) while another client runs
 * whole-collection cursors (DBSIZE, SCAN on the slow lane): a commit must never wait at the
 * cursor gate on a shard thread that the cursor's cut needs. Both finish, and every MSET is
 * seen whole by SCAN's final count. */
static void test_cross_shard_commits_beside_cursors(void **state)
{
    (void)state;
    start_server(NULL);
    redisContext *w = connect_client();
    redisContext *rd = connect_client();
    enum { ROUNDS = 400 };
    for (int round = 0; round < ROUNDS; round++) {
        assert_int_equal(
            redisAppendCommand(w, "MSET a%d 1 b%d 2 c%d 3 d%d 4", round, round, round, round),
            REDIS_OK);
        assert_int_equal(redisAppendCommand(rd, "DBSIZE"), REDIS_OK);
        redisReply *r;
        assert_int_equal(redisGetReply(rd, (void **)&r), REDIS_OK);
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        assert_int_equal(r->integer % 4, 0); /* each MSET whole or not at all */
        freeReplyObject(r);
        assert_int_equal(redisGetReply(w, (void **)&r), REDIS_OK);
        assert_int_equal(r->type, REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }
    redisReply *r = cmd(rd, "DBSIZE");
    assert_int_equal(r->integer, 4 * ROUNDS);
    freeReplyObject(r);
    redisFree(w);
    redisFree(rd);
    stop_server();
}

/* Read-modify-writes run atomically on the key's shard: 4 clients pipelining 500 INCRs each on
 * two counters (on different shards, by name) and 500 APPENDs of one byte each end with every
 * increment and every byte counted; GETDEL hands a value to exactly one of two racing clients. */
static void test_read_modify_writes_are_atomic(void **state)
{
    (void)state;
    start_server(NULL);
    enum { CLIENTS = 4, EACH = 500 };
    redisContext *c[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        c[i] = connect_client();
    for (int k = 0; k < EACH; k++)
        for (int i = 0; i < CLIENTS; i++) {
            assert_int_equal(redisAppendCommand(c[i], "INCR ctr-a"), REDIS_OK);
            assert_int_equal(redisAppendCommand(c[i], "INCRBY ctr-b 2"), REDIS_OK);
            assert_int_equal(redisAppendCommand(c[i], "APPEND log x"), REDIS_OK);
        }
    for (int i = 0; i < CLIENTS; i++)
        for (int k = 0; k < 3 * EACH; k++) {
            redisReply *r;
            assert_int_equal(redisGetReply(c[i], (void **)&r), REDIS_OK);
            assert_int_equal(r->type, REDIS_REPLY_INTEGER);
            freeReplyObject(r);
        }
    redisReply *r = cmd(c[0], "MGET ctr-a ctr-b");
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !r->element[0]->str ||
        !r->element[1]->str)
        fail_msg("MGET: type %d, %s", r->type, r->str ? r->str : "(no text)");
    assert_string_equal(r->element[0]->str, "2000");
    assert_string_equal(r->element[1]->str, "4000");
    freeReplyObject(r);
    r = cmd(c[0], "STRLEN log");
    assert_int_equal(r->integer, CLIENTS * EACH);
    freeReplyObject(r);
    /* GETDEL races: each value goes to exactly one client */
    int got = 0;
    for (int k = 0; k < 200; k++) {
        expect_status(c[0], "OK", "SET prize %d", k);
        assert_int_equal(redisAppendCommand(c[1], "GETDEL prize"), REDIS_OK);
        assert_int_equal(redisAppendCommand(c[2], "GETDEL prize"), REDIS_OK);
        for (int i = 1; i <= 2; i++) {
            assert_int_equal(redisGetReply(c[i], (void **)&r), REDIS_OK);
            got += r->type == REDIS_REPLY_STRING;
            freeReplyObject(r);
        }
    }
    assert_int_equal(got, 200);
    for (int i = 0; i < CLIENTS; i++)
        redisFree(c[i]);
    stop_server();
}

struct bad_request {
    const char *bytes;
    size_t len;
    const char *reply_prefix; /* what the first reply starts with */
    bool closes;              /* the server closes the connection after it */
};

#define BAD(s, prefix, closes)                                                                     \
    {                                                                                              \
        s, sizeof(s) - 1, prefix, closes                                                           \
    }
static const struct bad_request bad[] = {
    BAD("*abc\r\n", "-ERR Protocol error: invalid multibulk length", true),
    BAD("*2\r\n$3\r\nGET\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length", true),
    BAD("*1\r\n$99999999999999999\r\n", "-ERR Protocol error: invalid bulk length", true),
    BAD("*9999999\r\n", "-ERR Protocol error: invalid multibulk length", true),
    BAD("*1\r\nx3\r\nGET\r\n", "-ERR Protocol error: expected '$', got 'x'", true),
    BAD("*1\r\n$3\r\nGETxx", "-ERR Protocol error", true),
    BAD("SET \"abc\r\n", "-ERR Protocol error: unbalanced quotes in request", true),
    BAD("\x01\x02\x03 junk\r\n", "-ERR unknown command", false),
    BAD("*1\r\n$4\r\nNOPE\r\n", "-ERR unknown command 'NOPE'", false),
    BAD("*2\r\n$3\r\nGET\r\n$0\r\n\r\n", "-ERR key must be 1 to 1024 bytes", false),
    BAD("*1\r\n$3\r\nGET\r\n", "-ERR wrong number of arguments for 'get' command", false),
    BAD("*3\r\n$4\r\nINCR\r\n$1\r\na\r\n$1\r\nb\r\n", "-ERR wrong number of arguments", false),
    BAD("*2\r\n$4\r\nINCR\r\n$4\r\nkeep\r\n", "-ERR value is not an integer", false),
};

static void test_malformed_requests_are_refused_and_data_kept(void **state)
{
    (void)state;
    start_server(NULL);
    redisContext *c = connect_client();
    expect_status(c, "OK", "SET keep precious");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int fd = raw_connect();
        assert_int_equal(send(fd, bad[i].bytes, bad[i].len, MSG_NOSIGNAL), (ssize_t)bad[i].len);
        char buf[4096];
        bool closed;
        size_t n = raw_read_all(fd, buf, sizeof(buf) - 1, bad[i].closes ? 5000 : 300, &closed);
        buf[n] = '\0';
        if (strncmp(buf, bad[i].reply_prefix, strlen(bad[i].reply_prefix)) != 0)
            fail_msg("request %zu: expected a reply starting with [%s], got [%s]", i,
                     bad[i].reply_prefix, buf);
        if (bad[i].closes && !closed)
            fail_msg("request %zu: the connection stayed open", i);
        if (!bad[i].closes && closed)
            fail_msg("request %zu: the connection was closed", i);
        close(fd);
    }
    /* a request cut off by the client's close: no reply, nothing written */
    int fd = raw_connect();
    static const char cut[] = "*3\r\n$3\r\nSET\r\n$4\r\nkeep\r\n$100\r\nabc";
    assert_int_equal(send(fd, cut, sizeof(cut) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(cut) - 1);
    close(fd);
    redisReply *r = cmd(c, "GET keep");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "precious");
    freeReplyObject(r);
    redisFree(c);
    stop_server();
}

struct clients_wanted {
    redisContext *c; /* asks */
    char line[64];   /* INFO's line that says enough are connected */
};

static bool clients_connected(void *arg)
{
    struct clients_wanted *w = arg;
    redisReply *r = cmd(w->c, "INFO clients");
    bool ok = r->type == REDIS_REPLY_STRING && strstr(r->str, w->line) != NULL;
    freeReplyObject(r);
    return ok;
}

/* The fuzzer's seed corpus of requests (tests/fuzz/corpus_resp/, malformed ones among them) sent
 * whole to a live server, one connection each: every one is answered or refused and closed
 * within its time, the server keeps serving, and the record stored before is intact. */
static void test_request_corpus_replayed_against_a_live_server(void **state)
{
    (void)state;
    start_server(NULL);
    redisContext *c = connect_client();
    expect_status(c, "OK", "SET keep precious");
    DIR *d = opendir("tests/fuzz/corpus_resp");
    assert_non_null(d);
    unsigned files = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof(path), "tests/fuzz/corpus_resp/%s", e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        char req[65536];
        size_t n = fread(req, 1, sizeof(req), f);
        fclose(f);
        int fd = raw_connect();
        if (n)
            (void)!send(fd, req, n, MSG_NOSIGNAL);
        shutdown(fd, SHUT_WR); /* the request ends here: the server answers what it can */
        char buf[65536];
        bool closed;
        (void)raw_read_all(fd, buf, sizeof(buf), 5000, &closed);
        if (!closed)
            fail_msg("%s: the server kept the connection after the client's end", e->d_name);
        close(fd);
        files++;
        expect_status(c, "PONG", "PING");
    }
    closedir(d);
    assert_true(files >= 10);
    redisReply *r = cmd(c, "GET keep");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "precious");
    freeReplyObject(r);
    redisFree(c);
    stop_server();
}

static void test_idle_connections_and_maxclients(void **state)
{
    (void)state;
    /* the 10,000 idle connections, when the descriptor limit allows them (the server
     * inherits this process's limit and raises its soft limit to the hard one, as does this) */
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    int idle = rl.rlim_cur > 10300 ? 10000 : (int)rl.rlim_cur - 300;
    if (idle < 10000)
        print_message("idle connections: %d (RLIMIT_NOFILE %llu is under 10300)\n", idle,
                      (unsigned long long)rl.rlim_cur);
    assert_true(idle > 50);
    char maxc[16];
    snprintf(maxc, sizeof(maxc), "%d", idle + 1);
    start_server("--maxclients", maxc, NULL);
    int *fds = calloc((size_t)idle, sizeof(int));
    assert_non_null(fds);
    for (int i = 0; i < idle; i++)
        fds[i] = raw_connect();
    redisContext *c = connect_client(); /* the last one allowed */
    expect_status(c, "PONG", "PING");
    /* every connection made so far is accepted (the kernel queues them; the shards accept them
     * in any order) before the one too many comes */
    struct clients_wanted w = {.c = c};
    snprintf(w.line, sizeof(w.line), "connected_clients:%d\r\n", idle + 1);
    assert_true(cst_wait_until(clients_connected, &w, 10000));
    int extra = raw_connect();
    char buf[256];
    bool closed;
    size_t n = raw_read_all(extra, buf, sizeof(buf) - 1, 5000, &closed);
    buf[n] = '\0';
    assert_string_equal(buf, "-ERR max number of clients reached\r\n");
    assert_true(closed);
    close(extra);
    for (int i = 0; i < idle; i++)
        close(fds[i]);
    free(fds);
    expect_status(c, "PONG", "PING");
    redisFree(c);
    stop_server();
}

/* The server's resident memory in KiB (VmRSS), or 0 when unknown. */
static long server_rss_kib(void)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)server_pid);
    FILE *f = fopen(path, "r");
    long kib = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

/* A client that sends 400 GETs of a 512 KiB value (200 MiB of replies) and reads nothing: the
 * server stops reading from it once about a MiB of its replies wait (backpressure), so its memory
 * grows by that MiB plus the replies of the commands in flight (pipeline-max 32 here: 16 MiB),
 * not by the 200 MiB; the other clients are served meanwhile; and once the client reads, every
 * reply arrives, whole and in order. */
static void test_client_that_does_not_read_is_held_back(void **state)
{
    (void)state;
    start_server("--pipeline-max", "32", NULL);
    redisContext *c = connect_client();
    size_t vlen = 512 * 1024;
    char *v = malloc(vlen);
    assert_non_null(v);
    memset(v, 'x', vlen);
    expect_status(c, "OK", "SET big %b", v, vlen);
    long rss_before = server_rss_kib();
    int fd = raw_connect();
    static const char get[] = "*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n";
    enum { GETS = 400 };
    size_t want = sizeof(get) - 1, sent = 0;
    char *reqs = malloc(GETS * want);
    assert_non_null(reqs);
    for (int i = 0; i < GETS; i++)
        memcpy(reqs + (size_t)i * want, get, want);
    while (sent < GETS * want) {
        ssize_t s = send(fd, reqs + sent, GETS * want - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (s <= 0)
            break; /* the server stopped reading: its socket buffer is full */
        sent += (size_t)s;
    }
    free(reqs);
    for (int i = 0; i < 20; i++) /* the others are served meanwhile */
        expect_status(c, "PONG", "PING");
    long rss_held = server_rss_kib();
    if (rss_before > 0 && rss_held > 0 && rss_held - rss_before > 64 * 1024)
        fail_msg("the server grew by %ld KiB for a client that does not read",
                 rss_held - rss_before);
    /* now read: finish sending, and every reply is the value, in order */
    size_t reply_len = 1 + 6 + 2 + vlen + 2; /* "$524288\r\n" value "\r\n" */
    char *buf = malloc(reply_len);
    assert_non_null(buf);
    size_t got_replies = 0, have = 0;
    while (got_replies < GETS) {
        if (sent < GETS * want) {
            char *rest = malloc(GETS * want);
            assert_non_null(rest);
            for (int i = 0; i < GETS; i++)
                memcpy(rest + (size_t)i * want, get, want);
            ssize_t s = send(fd, rest + sent, GETS * want - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (s > 0)
                sent += (size_t)s;
            free(rest);
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_true(poll(&p, 1, 10000) == 1);
        ssize_t r = recv(fd, buf + have, reply_len - have, 0);
        assert_true(r > 0);
        have += (size_t)r;
        if (have == reply_len) {
            assert_memory_equal(buf, "$524288\r\n", 9);
            assert_true(buf[9] == 'x' && buf[reply_len - 3] == 'x');
            assert_memory_equal(buf + reply_len - 2, "\r\n", 2);
            got_replies++;
            have = 0;
        }
    }
    free(buf);
    free(v);
    close(fd);
    redisFree(c);
    stop_server();
}

/* A reply over client-output-bytes-max (an MGET of many large values) closes the connection
 * instead of buffering it; the server and the other clients go on. */
static void test_reply_over_output_limit_closes(void **state)
{
    (void)state;
    start_server("--client-output-bytes-max", "1048576", NULL);
    redisContext *c = connect_client();
    size_t vlen = 300 * 1024;
    char *v = malloc(vlen);
    assert_non_null(v);
    memset(v, 'y', vlen);
    expect_status(c, "OK", "MSET a %b b %b c %b d %b", v, vlen, v, vlen, v, vlen, v, vlen);
    free(v);
    redisContext *big = connect_client();
    redisReply *r = redisCommand(big, "MGET a b c d");
    assert_null(r); /* the connection was closed */
    redisFree(big);
    r = cmd(c, "STRLEN a");
    assert_int_equal(r->integer, (long long)vlen);
    freeReplyObject(r);
    redisFree(c);
    stop_server();
}

static void test_request_over_query_limit_is_refused(void **state)
{
    (void)state;
    start_server("--client-query-bytes-max", "65536", NULL);
    int fd = raw_connect();
    static const char head[] = "*3\r\n$3\r\nSET\r\n$1\r\nq\r\n$200000\r\n";
    assert_int_equal(send(fd, head, sizeof(head) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(head) - 1);
    char *body = calloc(1, 100000);
    assert_non_null(body);
    (void)!send(fd, body, 100000, MSG_NOSIGNAL);
    free(body);
    char buf[512];
    bool closed;
    size_t n = raw_read_all(fd, buf, sizeof(buf) - 1, 5000, &closed);
    buf[n] = '\0';
    assert_true(strncmp(buf, "-ERR Protocol error", 19) == 0);
    assert_true(closed);
    close(fd);
    redisContext *c = connect_client();
    redisReply *r = cmd(c, "EXISTS q");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    redisFree(c);
    stop_server();
}

static int metrics_port;

static bool metrics_port_written(void *arg)
{
    FILE *f = fopen(arg, "r");
    if (!f)
        return false;
    bool ok = fscanf(f, "%d", &metrics_port) == 1 && metrics_port > 0;
    fclose(f);
    return ok;
}

/* One HTTP exchange with the metrics endpoint: the whole answer into buf (NUL-terminated). */
static size_t http(const char *request, char *buf, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)metrics_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(send(fd, request, strlen(request), MSG_NOSIGNAL), (ssize_t)strlen(request));
    bool closed;
    size_t n = raw_read_all(fd, buf, cap - 1, 5000, &closed);
    buf[n] = '\0';
    assert_true(closed); /* Connection: close */
    close(fd);
    return n;
}

/* The value of the first sample line that starts with prefix, or -1. */
static double sample(const char *text, const char *prefix)
{
    for (const char *p = text; (p = strstr(p, prefix)) != NULL; p++)
        if (p == text || p[-1] == '\n')
            return atof(p + strlen(prefix));
    return -1;
}

/* GET /metrics: the engine's histograms and counters and the server's own families, in the
 * Prometheus text format, with counts that follow what the clients did; other paths 404, other
 * methods 405. */
static void test_metrics_endpoint(void **state)
{
    (void)state;
    char mport[CST_PATH_MAX + 16];
    snprintf(mport, sizeof(mport), "%s/mport", root);
    start_server("--metrics-listen", "127.0.0.1:0", "--metrics-port-file", mport, NULL);
    assert_true(cst_wait_until(metrics_port_written, mport, 10000));
    redisContext *c = connect_client();
    for (int i = 0; i < 50; i++) {
        redisReply *r = cmd(c, "SET m%d v", i);
        freeReplyObject(r);
    }
    size_t cap = 1u << 20;
    char *buf = malloc(cap);
    assert_non_null(buf);
    http("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n", buf, cap);
    assert_true(strncmp(buf, "HTTP/1.0 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(buf, "Content-Type: text/plain; version=0.0.4"));
    const char *body = strstr(buf, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    assert_non_null(strstr(body, "# TYPE cstore_request_duration_seconds histogram\n"));
    assert_non_null(strstr(body, "# TYPE cstore_wal_sync_duration_seconds histogram\n"));
    assert_non_null(strstr(body, "# TYPE cstored_connected_clients gauge\n"));
    double puts = sample(body, "cstore_request_duration_seconds_count{shard=\"0\",op=\"put\"} ") +
                  sample(body, "cstore_request_duration_seconds_count{shard=\"1\",op=\"put\"} ");
    assert_true(puts >= 50);
    assert_true(sample(body, "cstored_connected_clients ") >= 1);
    assert_true(sample(body, "cstored_commands_total ") >= 50);
    http("GET /other HTTP/1.1\r\n\r\n", buf, cap);
    assert_true(strncmp(buf, "HTTP/1.0 404", 12) == 0);
    http("POST /metrics HTTP/1.1\r\n\r\n", buf, cap);
    assert_true(strncmp(buf, "HTTP/1.0 405", 12) == 0);
    free(buf);
    redisFree(c);
    stop_server();
}

/* The next reply of a pipeline (the caller frees it). */
static redisReply *get_reply(redisContext *c)
{
    redisReply *r;
    if (redisGetReply(c, (void **)&r) != REDIS_OK)
        fail_msg("reply: %s", c->errstr);
    return r;
}

static void expect_queued(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, "QUEUED") != 0)
        fail_msg("expected +QUEUED, got type %d '%s'", r->type, r->str ? r->str : "");
    freeReplyObject(r);
}

static void expect_error(redisContext *c, const char *prefix, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    if (r->type != REDIS_REPLY_ERROR || strncmp(r->str, prefix, strlen(prefix)) != 0)
        fail_msg("expected -%s..., got type %d '%s'", prefix, r->type, r->str ? r->str : "");
    freeReplyObject(r);
}

static void expect_int(redisContext *c, long long want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    if (r->type != REDIS_REPLY_INTEGER || r->integer != want)
        fail_msg("expected :%lld, got type %d (%lld) '%s'", want, r->type, r->integer,
                 r->str ? r->str : "");
    freeReplyObject(r);
}

/* MULTI queues (+QUEUED) and EXEC answers every command's reply, in order, as it would alone:
 * SET with options, INCR family, APPEND, GETDEL, SETNX, MSET, MGET, DEL, EXISTS, STRLEN, CS.*,
 * with reads seeing the block's own earlier writes and a command's own refusal (INCR on text)
 * in its place while the others apply. */
static void test_multi_exec_replies_each_command_and_reads_its_writes(void **state)
{
    (void)state;
    start_server(NULL);
    redisContext *c = connect_client();
    expect_status(c, "OK", "SET text abc");
    expect_status(c, "OK", "MULTI");
    expect_queued(c, "SET a 1");
    expect_queued(c, "INCRBY a 41");
    expect_queued(c, "GET a");
    expect_queued(c, "SET a x GET");
    expect_queued(c, "SET a y NX");
    expect_queued(c, "SETNX b 7");
    expect_queued(c, "APPEND b 8");
    expect_queued(c, "INCR text");
    expect_queued(c, "MSET m1 v1 m2 v2");
    expect_queued(c, "MGET a b m1 m2 none");
    expect_queued(c, "GETDEL m1");
    expect_queued(c, "DEL m1 m2 m2");
    expect_queued(c, "EXISTS a b a m2");
    expect_queued(c, "STRLEN b");
    expect_queued(c, "CS.PUT users ann 5");
    expect_queued(c, "CS.GET users ann");
    expect_queued(c, "CS.DEL users ann");
    expect_queued(c, "PING");
    redisReply *r = cmd(c, "EXEC");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 18);
    redisReply **e = r->element;
    assert_string_equal(e[0]->str, "OK");
    assert_int_equal(e[1]->integer, 42);
    assert_string_equal(e[2]->str, "42");
    assert_string_equal(e[3]->str, "42"); /* SET GET: the old value */
    assert_int_equal(e[4]->type, REDIS_REPLY_NIL);
    assert_int_equal(e[5]->integer, 1);
    assert_int_equal(e[6]->integer, 2);
    assert_int_equal(e[7]->type, REDIS_REPLY_ERROR);
    assert_string_equal(e[7]->str, "ERR value is not an integer or out of range");
    assert_string_equal(e[8]->str, "OK");
    assert_int_equal(e[9]->type, REDIS_REPLY_ARRAY);
    assert_int_equal(e[9]->elements, 5);
    assert_string_equal(e[9]->element[0]->str, "x");
    assert_string_equal(e[9]->element[1]->str, "78");
    assert_string_equal(e[9]->element[2]->str, "v1");
    assert_string_equal(e[9]->element[3]->str, "v2");
    assert_int_equal(e[9]->element[4]->type, REDIS_REPLY_NIL);
    assert_string_equal(e[10]->str, "v1");
    assert_int_equal(e[11]->integer, 1); /* m1 already gone, m2 once */
    assert_int_equal(e[12]->integer, 3);
    assert_int_equal(e[13]->integer, 2);
    assert_string_equal(e[14]->str, "OK");
    assert_string_equal(e[15]->str, "5");
    assert_int_equal(e[16]->integer, 1);
    assert_string_equal(e[17]->str, "PONG");
    freeReplyObject(r);
    r = cmd(c, "MGET a b text m1 m2");
    assert_string_equal(r->element[0]->str, "x");
    assert_string_equal(r->element[1]->str, "78");
    assert_string_equal(r->element[2]->str, "abc");
    assert_int_equal(r->element[3]->type, REDIS_REPLY_NIL);
    assert_int_equal(r->element[4]->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    /* an empty block */
    expect_status(c, "OK", "MULTI");
    r = cmd(c, "EXEC");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 0);
    freeReplyObject(r);
    redisFree(c);
    stop_server();
}

/* The errors around a block: EXEC or DISCARD without MULTI, nested MULTI (the block goes on),
 * WATCH inside MULTI; a command refused at queue time (unknown, arity, syntax, a whole-collection
 * command, an empty key) makes EXEC answer EXECABORT and nothing of the block is applied;
 * DISCARD drops the block. */
static void test_multi_errors_execabort_and_discard(void **state)
{
    (void)state;
    start_server(NULL);
    redisContext *c = connect_client();
    expect_error(c, "ERR EXEC without MULTI", "EXEC");
    expect_error(c, "ERR DISCARD without MULTI", "DISCARD");
    expect_status(c, "OK", "MULTI");
    expect_error(c, "ERR MULTI calls can not be nested", "MULTI");
    expect_error(c, "ERR WATCH inside MULTI is not allowed", "WATCH k");
    expect_queued(c, "SET n 1");
    redisReply *r = cmd(c, "EXEC");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    freeReplyObject(r);
    const char *refused[] = {"NOSUCH x", "GET",    "SET k v BOGUS", "INCRBY k notint", "MSET a 1 b",
                             "SCAN 0",   "DBSIZE", "FLUSHALL",      "EXPIRE k ten",    "GET %b"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        expect_status(c, "OK", "MULTI");
        expect_queued(c, "SET written%d 1", (int)i);
        r = i == 9 ? redisCommand(c, refused[i], "", (size_t)0) : redisCommand(c, refused[i]);
        assert_non_null(r);
        if (r->type != REDIS_REPLY_ERROR)
            fail_msg("'%s' inside MULTI: expected an error, got type %d", refused[i], r->type);
        freeReplyObject(r);
        expect_queued(c, "SET after%d 1", (int)i); /* still queued (and dropped at EXEC) */
        expect_error(c, "EXECABORT Transaction discarded because of previous errors.", "EXEC");
        expect_int(c, 0, "EXISTS written%d after%d", (int)i, (int)i);
    }
    expect_error(c, "ERR EXEC without MULTI", "EXEC"); /* EXECABORT ended the block */
    expect_status(c, "OK", "MULTI");
    expect_queued(c, "SET dropped 1");
    expect_status(c, "OK", "DISCARD");
    expect_int(c, 0, "EXISTS dropped");
    expect_error(c, "ERR EXEC without MULTI", "EXEC");
    redisFree(c);
    stop_server();
}

/* WATCH: another client's change to a watched key between WATCH and EXEC aborts the block (the
 * null array, nothing applied); an unchanged watched key lets it run; UNWATCH and DISCARD drop
 * the watches; a watched key that did not exist and was created aborts too. */
static void test_watch_aborts_on_change_by_another_client(void **state)
{
    (void)state;
    start_server(NULL);
    redisContext *a = connect_client();
    redisContext *b = connect_client();
    expect_status(a, "OK", "SET w 1");
    /* changed by b: aborted */
    expect_status(a, "OK", "WATCH w other");
    expect_status(b, "OK", "SET w 2");
    expect_status(a, "OK", "MULTI");
    expect_queued(a, "SET w mine");
    expect_queued(a, "SET other mine");
    redisReply *r = cmd(a, "EXEC");
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    r = cmd(a, "MGET w other");
    assert_string_equal(r->element[0]->str, "2");
    assert_int_equal(r->element[1]->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    /* a missing key created by b: aborted */
    expect_status(a, "OK", "WATCH fresh");
    expect_status(b, "OK", "SET fresh x");
    expect_status(a, "OK", "MULTI");
    expect_queued(a, "INCR w");
    r = cmd(a, "EXEC");
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    /* unchanged (b wrote another key): runs */
    expect_status(a, "OK", "WATCH w");
    expect_status(b, "OK", "SET unrelated 1");
    expect_status(a, "OK", "MULTI");
    expect_queued(a, "INCR w");
    r = cmd(a, "EXEC");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->element[0]->integer, 3);
    freeReplyObject(r);
    /* EXEC dropped the watches: a change now does not abort the next block */
    expect_status(b, "OK", "SET w 10");
    expect_status(a, "OK", "MULTI");
    expect_queued(a, "INCR w");
    r = cmd(a, "EXEC");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->element[0]->integer, 11);
    freeReplyObject(r);
    /* UNWATCH, pipelined right behind the WATCH whose read is still in flight, drops it */
    assert_int_equal(redisAppendCommand(a, "WATCH w"), REDIS_OK);
    assert_int_equal(redisAppendCommand(a, "UNWATCH"), REDIS_OK);
    for (int i = 0; i < 2; i++) {
        r = get_reply(a);
        assert_int_equal(r->type, REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }
    expect_status(b, "OK", "SET w 20");
    expect_status(a, "OK", "MULTI");
    expect_queued(a, "INCR w");
    r = cmd(a, "EXEC");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->element[0]->integer, 21);
    freeReplyObject(r);
    /* DISCARD drops the watches too */
    expect_status(a, "OK", "WATCH w");
    expect_status(a, "OK", "MULTI");
    expect_status(a, "OK", "DISCARD");
    expect_status(b, "OK", "SET w 30");
    expect_status(a, "OK", "MULTI");
    expect_queued(a, "INCR w");
    r = cmd(a, "EXEC");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->element[0]->integer, 31);
    freeReplyObject(r);
    redisFree(a);
    redisFree(b);
    stop_server();
}

/* A block of SETs over keys of both shards is one transaction: a reader (MGET, and a MULTI of
 * GETs) never sees part of one, while the writer pipelines its blocks. */
static void test_exec_across_shards_is_atomic(void **state)
{
    (void)state;
    start_server(NULL);
    redisContext *w = connect_client();
    redisContext *rd = connect_client();
    enum { KEYS = 8, ROUNDS = 300 };
    for (int round = 0; round < ROUNDS; round++) {
        assert_int_equal(redisAppendCommand(w, "MULTI"), REDIS_OK);
        for (int k = 0; k < KEYS; k++)
            assert_int_equal(redisAppendCommand(w, "SET acct%d %d", k, round), REDIS_OK);
        assert_int_equal(redisAppendCommand(w, "EXEC"), REDIS_OK);
        redisReply *r;
        if (round % 2) {
            r = cmd(rd, "MGET acct0 acct1 acct2 acct3 acct4 acct5 acct6 acct7");
        } else {
            assert_int_equal(redisAppendCommand(rd, "MULTI"), REDIS_OK);
            for (int k = 0; k < KEYS; k++)
                assert_int_equal(redisAppendCommand(rd, "GET acct%d", k), REDIS_OK);
            assert_int_equal(redisAppendCommand(rd, "EXEC"), REDIS_OK);
            for (int k = 0; k <= KEYS; k++)
                freeReplyObject(get_reply(rd)); /* +OK, +QUEUED... */
            r = get_reply(rd);
        }
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        assert_int_equal(r->elements, KEYS);
        for (int k = 1; k < KEYS; k++) {
            assert_int_equal(r->element[k]->type, r->element[0]->type);
            if (r->element[0]->type == REDIS_REPLY_STRING)
                assert_string_equal(r->element[k]->str, r->element[0]->str);
        }
        freeReplyObject(r);
        for (int k = 0; k <= KEYS; k++)
            freeReplyObject(get_reply(w));
        r = get_reply(w);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        assert_int_equal(r->elements, KEYS);
        freeReplyObject(r);
    }
    redisFree(w);
    redisFree(rd);
    stop_server();
}

/* A number of INFO stats, or -1. */
static long long info_number(redisContext *c, const char *field)
{
    redisReply *r = cmd(c, "INFO stats");
    const char *p = r->type == REDIS_REPLY_STRING ? strstr(r->str, field) : NULL;
    long long n = p ? atoll(p + strlen(field)) : -1;
    freeReplyObject(r);
    return n;
}

/* The transaction conflicts of the server so far. */
static long long txn_conflicts(redisContext *c)
{
    return info_number(c, "txn_conflicts:");
}

struct hammer {
    redisContext *c;   /* its own connection */
    _Atomic bool stop; /* set by the test when done */
    long long rounds;  /* pipelines of MSETs it sent */
};

/* Rewrite the hot keys (cross-shard MSETs through the shards' sessions) until told to stop. */
static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    while (!atomic_load(&h->stop)) {
        for (int j = 0; j < 16; j++)
            if (redisAppendCommand(h->c, "MSET hot0 %d hot1 %d hot2 %d hot3 %d", j, j, j, j) !=
                REDIS_OK)
                return NULL;
        for (int j = 0; j < 16; j++) {
            redisReply *r;
            if (redisGetReply(h->c, (void **)&r) != REDIS_OK)
                return NULL;
            freeReplyObject(r);
        }
        h->rounds++;
    }
    return NULL;
}

/* EXEC retried on conflicts never applies a block twice nor answers twice: writers run blocks
 * of INCR ctr plus reads of hot keys that another client keeps rewriting (cross-shard MSETs on
 * the shards, so EXEC's commits conflict and are retried); every EXEC succeeds, as in Redis
 * (after a few conflicts the server holds the other clients' writes for it: before that, about
 * half failed after 100 retries), the INCR answers are exactly 1..successes and the counter
 * ends there, and the hammer still gets its writes through. */
static void test_exec_retries_apply_once(void **state)
{
    (void)state;
    start_server(NULL);
    enum { WRITERS = 3, ROUNDS = 150, MAXN = WRITERS * ROUNDS };
    redisContext *wr[WRITERS];
    for (int i = 0; i < WRITERS; i++)
        wr[i] = connect_client();
    static struct hammer h;
    h.c = connect_client();
    h.rounds = 0;
    atomic_store(&h.stop, false);
    long long conflicts_before = txn_conflicts(wr[0]);
    pthread_t ht;
    assert_int_equal(pthread_create(&ht, NULL, hammer_main, &h), 0);
    static bool seen[MAXN + 1];
    memset(seen, 0, sizeof(seen));
    long long successes = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < WRITERS; i++) {
            assert_int_equal(redisAppendCommand(wr[i], "MULTI"), REDIS_OK);
            assert_int_equal(redisAppendCommand(wr[i], "INCR ctr"), REDIS_OK);
            assert_int_equal(redisAppendCommand(wr[i], "MGET hot0 hot1 hot2 hot3"), REDIS_OK);
            assert_int_equal(redisAppendCommand(wr[i], "EXEC"), REDIS_OK);
        }
        for (int i = 0; i < WRITERS; i++) {
            for (int k = 0; k < 3; k++)
                freeReplyObject(get_reply(wr[i]));
            redisReply *r = get_reply(wr[i]);
            if (r->type == REDIS_REPLY_ARRAY) {
                assert_int_equal(r->elements, 2);
                assert_int_equal(r->element[0]->type, REDIS_REPLY_INTEGER);
                long long v = r->element[0]->integer;
                assert_true(v >= 1 && v <= MAXN);
                assert_false(seen[v]); /* an answer given twice: a block applied twice */
                seen[v] = true;
                successes++;
            } else { /* Redis never fails an EXEC without WATCH; neither may cstored */
                fail_msg("EXEC %d of round %d answered %d: %s", i, round, r->type,
                         r->type == REDIS_REPLY_ERROR ? r->str : "");
            }
            freeReplyObject(r);
        }
    }
    atomic_store(&h.stop, true);
    assert_int_equal(pthread_join(ht, NULL), 0);
    assert_int_equal(successes, MAXN);
    assert_true(h.rounds > 0); /* the hammer's writes were held at times, never for good */
    for (long long v = 1; v <= successes; v++)
        assert_true(seen[v]);
    redisReply *r = cmd(wr[0], "GET ctr");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(atoll(r->str), successes);
    freeReplyObject(r);
    print_message("exec retries: %lld successful EXECs, %lld transaction conflicts, %lld hammer "
                  "rounds, %lld exclusive runs\n",
                  successes, txn_conflicts(wr[0]) - conflicts_before, h.rounds,
                  info_number(wr[0], "exclusive_runs:"));
    for (int i = 0; i < WRITERS; i++)
        redisFree(wr[i]);
    redisFree(h.c);
    stop_server();
}

/* A pipelined SET, block and GET on one key: the GET reads what the block wrote (EXEC orders
 * as a barrier), and a GET inside reads the SET before it. */
static void test_exec_keeps_connection_order(void **state)
{
    (void)state;
    start_server(NULL);
    redisContext *c = connect_client();
    enum { ROUNDS = 200 };
    for (int i = 0; i < ROUNDS; i++) {
        assert_int_equal(redisAppendCommand(c, "SET o%d 1", i), REDIS_OK);
        assert_int_equal(redisAppendCommand(c, "MULTI"), REDIS_OK);
        assert_int_equal(redisAppendCommand(c, "INCR o%d", i), REDIS_OK);
        assert_int_equal(redisAppendCommand(c, "EXEC"), REDIS_OK);
        assert_int_equal(redisAppendCommand(c, "GET o%d", i), REDIS_OK);
    }
    for (int i = 0; i < ROUNDS; i++) {
        for (int k = 0; k < 3; k++)
            freeReplyObject(get_reply(c));
        redisReply *r = get_reply(c);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        assert_int_equal(r->element[0]->integer, 2);
        freeReplyObject(r);
        r = get_reply(c);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_string_equal(r->str, "2");
        freeReplyObject(r);
    }
    redisFree(c);
    stop_server();
}

/* A block over CMD_MULTI_BYTES_MAX (8 MiB) of arguments: the command that crosses it is refused,
 * EXEC answers EXECABORT and nothing is written. */
static void test_multi_over_byte_budget_aborts(void **state)
{
    (void)state;
    start_server(NULL);
    redisContext *c = connect_client();
    size_t vlen = 1u << 20;
    char *v = malloc(vlen);
    assert_non_null(v);
    memset(v, 'z', vlen);
    expect_status(c, "OK", "MULTI");
    for (int i = 0; i < 7; i++)
        expect_queued(c, "SET big%d %b", i, v, vlen);
    expect_error(c, "ERR transaction too large", "SET big7 %b", v, vlen);
    expect_error(c, "EXECABORT", "EXEC");
    expect_int(c, 0, "EXISTS big0 big6 big7");
    free(v);
    redisFree(c);
    stop_server();
}

/* An integer reply within [lo, hi] (TTL and PTTL: time passes between a write and its read). */
static long long expect_int_in(redisContext *c, long long lo, long long hi, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    if (r->type != REDIS_REPLY_INTEGER || r->integer < lo || r->integer > hi)
        fail_msg("'%s': expected :%lld..%lld, got type %d (%lld) '%s'", fmt, lo, hi, r->type,
                 r->integer, r->str ? r->str : "");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void expect_bulk(redisContext *c, const char *want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    if (want ? r->type != REDIS_REPLY_STRING || strcmp(r->str, want) != 0
             : r->type != REDIS_REPLY_NIL)
        fail_msg("'%s': expected %s, got type %d '%s'", fmt, want ? want : "nil", r->type,
                 r->str ? r->str : "");
    freeReplyObject(r);
}

/* Expiry through a Redis client: SET's EX PX EXAT PXAT KEEPTTL, SETEX, PSETEX, EXPIRE's family
 * with NX XX GT LT, TTL, PTTL, PERSIST, GETEX, GETDEL; INCR and APPEND keep the expiry, a plain
 * SET clears it; a time already past removes the key at once; bad amounts are errors that write
 * nothing; pipelined and inside MULTI/EXEC; expiries survive a restart. Remaining times are
 * checked within bounds (time passes), never against the clock's speed. */
static void test_expiry_commands(void **state)
{
    (void)state;
    start_server(NULL);
    redisContext *c = connect_client();
    expect_status(c, "OK", "SET k v EX 100");
    expect_int_in(c, 90, 100, "TTL k");
    expect_int_in(c, 90000, 100000, "PTTL k");
    expect_status(c, "OK", "SET k v2 KEEPTTL");
    expect_int_in(c, 90, 100, "TTL k");
    expect_status(c, "OK", "SET k v3");
    expect_int(c, -1, "TTL k");
    expect_int(c, -2, "TTL missing");
    expect_int(c, -2, "PTTL missing");
    expect_int(c, 1, "EXPIRE k 50");
    expect_int_in(c, 40, 50, "TTL k");
    expect_int(c, 0, "EXPIRE k 10 GT");
    expect_int(c, 1, "EXPIRE k 60 GT");
    expect_int(c, 0, "EXPIRE k 70 LT");
    expect_int(c, 0, "EXPIRE k 70 NX");
    expect_int(c, 1, "EXPIRE k 70 XX");
    expect_int_in(c, 60, 70, "TTL k");
    expect_int(c, 1, "PEXPIRE k 200000");
    expect_int_in(c, 190000, 200000, "PTTL k");
    expect_int(c, 1, "EXPIREAT k 4102444800"); /* 2100-01-01 */
    expect_int(c, 1, "PERSIST k");
    expect_int(c, 0, "PERSIST k");
    expect_int(c, -1, "TTL k");
    expect_int(c, 0, "EXPIRE nothere 10");
    expect_int(c, 1, "PEXPIREAT k 1"); /* in the past: the key goes */
    expect_int(c, 0, "EXISTS k");
    expect_status(c, "OK", "SETEX s 100 sv");
    expect_int_in(c, 90, 100, "TTL s");
    expect_status(c, "OK", "PSETEX p 100000 pv");
    expect_int_in(c, 90000, 100000, "PTTL p");
    expect_bulk(c, "sv", "GETEX s PERSIST");
    expect_int(c, -1, "TTL s");
    expect_bulk(c, "pv", "GETEX p EX 300");
    expect_int_in(c, 290, 300, "TTL p");
    expect_bulk(c, NULL, "GETEX nothere EX 10");
    expect_int(c, 1, "INCR n");
    expect_int(c, 1, "EXPIRE n 100");
    expect_int(c, 6, "INCRBY n 5");
    expect_int_in(c, 90, 100, "TTL n");
    expect_int(c, 2, "APPEND n x");
    expect_int_in(c, 90, 100, "TTL n");
    expect_int(c, 1, "EXPIRE n -5");
    expect_int(c, 0, "EXISTS n");
    expect_status(c, "OK", "SET x v PXAT 1");
    expect_bulk(c, NULL, "GET x");
    expect_int(c, 0, "EXISTS x");
    expect_error(c, "ERR invalid expire time in 'set' command", "SET x v EX -1");
    expect_error(c, "ERR invalid expire time in 'set' command", "SET x v PX 0");
    expect_error(c, "ERR value is not an integer", "EXPIRE x abc");
    expect_error(c, "ERR GT and LT options", "EXPIRE x 1 GT LT");
    expect_error(c, "ERR invalid expire time in 'psetex' command", "PSETEX x 0 v");
    expect_error(c, "ERR syntax error", "GETEX x EX");
    expect_int(c, 0, "EXISTS x");
    expect_status(c, "OK", "SET g gv EX 100");
    expect_bulk(c, "gv", "GETDEL g");
    expect_int(c, -2, "TTL g");
    /* pipelined: each SET's expiry, then each TTL */
    for (int i = 0; i < 50; i++)
        redisAppendCommand(c, "SET pipe%d v EX %d", i, 1000 + i);
    for (int i = 0; i < 50; i++)
        redisAppendCommand(c, "TTL pipe%d", i);
    for (int i = 0; i < 100; i++) {
        redisReply *r = get_reply(c);
        if (i < 50) {
            assert_int_equal(r->type, REDIS_REPLY_STATUS);
        } else {
            assert_int_equal(r->type, REDIS_REPLY_INTEGER);
            assert_true(r->integer <= 1000 + (i - 50) && r->integer >= 990 + (i - 50));
        }
        freeReplyObject(r);
    }
    /* inside MULTI/EXEC */
    expect_status(c, "OK", "MULTI");
    expect_queued(c, "SET m 1 PX 100000");
    expect_queued(c, "PTTL m");
    expect_queued(c, "INCR m");
    expect_queued(c, "TTL m");
    expect_queued(c, "SET m2 v");
    expect_queued(c, "EXPIRE m2 500");
    redisReply *r = cmd(c, "EXEC");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 6);
    assert_true(r->element[1]->integer > 90000 && r->element[1]->integer <= 100000);
    assert_int_equal(r->element[2]->integer, 2);
    assert_true(r->element[3]->integer >= 90 && r->element[3]->integer <= 100);
    assert_int_equal(r->element[5]->integer, 1);
    freeReplyObject(r);
    expect_int_in(c, 490, 500, "TTL m2");
    redisFree(c);
    stop_server(); /* a restart keeps the expiries */
    start_server(NULL);
    c = connect_client();
    expect_int_in(c, 280, 300, "TTL p");
    expect_int_in(c, 480, 500, "TTL m2");
    expect_int(c, -1, "TTL s");
    expect_int(c, 0, "EXISTS k n x");
    redisFree(c);
    stop_server();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_binary_safe_values_and_big_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_answers_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mset_across_shards_is_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_shard_commits_beside_cursors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_requests_are_refused_and_data_kept, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_request_corpus_replayed_against_a_live_server, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_idle_connections_and_maxclients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_that_does_not_read_is_held_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reply_over_output_limit_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_over_query_limit_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_modify_writes_are_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multi_exec_replies_each_command_and_reads_its_writes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_multi_errors_execabort_and_discard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_aborts_on_change_by_another_client, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exec_across_shards_is_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_retries_apply_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_keeps_connection_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multi_over_byte_budget_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_commands, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
