/* The network server on the shard loops: cstored's connections, their requests and replies.
 *
 * DESIGN (DESIGN.md section 6). Every shard's loop hosts a guest (engine/host.h): a listening
 * socket of its own on the same address (SO_REUSEPORT: the kernel spreads new connections over
 * the shards), a multishot accept, and the connections it accepted, whose recv and send go
 * through the shard's own io_uring. A connection lives on one shard for its whole life. Its
 * requests are parsed there (server/resp.c); each key operation goes to the key's owning shard
 * through the engine's lock-free rings, by a session the guest owns (one per shard), whose
 * completions wake the loop (host_session_open): a key of the connection's own shard takes no
 * thread hop at all, a key elsewhere one hop each way. Pipelined requests are all parsed and
 * their key operations all submitted before the loop waits, so a pipeline's operations reach
 * each shard together and join the same group-commit frame.
 *
 * ORDER. A connection keeps its commands in flight in a queue in request order. A command's reply
 * is built in its own buffer when its last key operation completes; replies move to the
 * connection's output buffer from the head of the queue only, so they leave in request order
 * whatever order the shards answer in. Execution follows request order wherever a client could
 * tell: a command starts only once every earlier command of its connection that touches one of
 * its keys (a read after a write, a write after a read or write; reads beside reads run
 * together) has completed — except two single-key writes through the rings (SET, DEL, INCR,
 * APPEND... : CMD_F_INBOX), which reach each key's shard in submission order and run there in
 * that order (a put parked on a transaction's lock parks the later ones on that key behind it) —
 * and whole-collection commands (SCAN, DBSIZE, FLUSHALL, CS.SCAN) wait
 * for everything before them and hold back everything after them. A command that waits holds
 * back the later ones too (they start in order), so commands start in request order: the
 * connection's MULTI state (server/cmd.c) changes in that order. A command queued inside MULTI is
 * ordered by its own keys when it is queued (it touches nothing then); EXEC, which runs the
 * queue, is a barrier like the whole-collection commands, and so are DISCARD and UNWATCH (they
 * drop watches that an earlier WATCH still in flight is reading). Without this a pipelined GET
 * answered from a published view could overtake the SET before it, or a slow-lane INCR the plain
 * SET before it. Commands on different keys run in parallel on their shards, as any client of a
 * sharded store sees them.
 *
 * BLOCKING WORK. The loop must never block: a blocking engine call on a shard thread would wait
 * for its own shard. Commands that need one (a read-modify-write run as a transaction, EXEC's
 * block, SCAN's cursor, DBSIZE, INFO's statistics, FLUSHALL) go to the slow lane
 * (server/slow.c), one thread that runs them in order and hands each back to its shard, which
 * sends the reply.
 *
 * LIMITS (server_config): unparsed input per connection (query_bytes_max, then a protocol error
 * and close); replies waiting per connection: at NET_OUT_SOFT_BYTES the connection stops being
 * read and parsed until they are sent (backpressure: a client that does not read its replies
 * holds about that much, and its own socket buffers fill), and one reply over output_bytes_max
 * closes the connection; commands in flight per connection (pipeline_max: reading pauses);
 * connections in all (maxclients: the new one gets -ERR and is closed); and the parser's argument
 * limits. Memory per idle connection: one NET_IN_BYTES buffer and the structure. The output
 * buffer is appended to only while no send is in flight (the kernel reads it meanwhile).
 *
 * STOP. server_stop sets stopping and wakes every shard: each guest cancels its accept, stops
 * reading, lets the commands in flight finish and their replies go out (up to NET_STOP_GRACE_MS),
 * closes its connections and reports stopped once nothing of it is in the ring or the session;
 * then the guests are detached. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "io/ring.h"
#include "server/server_int.h"

/* Tags: SHARD_GUEST_TAG | kind << 56 | slot << 24 | generation (24 bits). */
enum net_kind { NET_ACCEPT = 1, NET_RECV = 2, NET_SEND = 3, NET_CANCEL = 4 };
#define NET_SLOTS_MAX (1u << 24) /* connections per shard (the tag's slot field) */
#define NET_GEN_MASK 0xffffffu

static uint64_t net_tag(enum net_kind kind, unsigned slot, uint32_t gen)
{
    return SHARD_GUEST_TAG | (uint64_t)kind << 56 | (uint64_t)slot << 24 | (gen & NET_GEN_MASK);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void ready(struct conn *c)
{
    if (c->in_ready)
        return;
    c->in_ready = true;
    c->ready_next = c->net->ready;
    c->net->ready = c;
}

/* ---- commands ---- */

/* A finished command: its values and transaction go; the command itself, with its argument,
 * sub, key and reply buffers, is kept for the next one on this shard (no allocation per
 * command in the steady state), unless the cache is full or the buffers are big. */
static void cmd_free(struct cmd *c)
{
    for (size_t i = 0; i < c->nsubs; i++) {
        if (c->subs[i].val_malloced)
            free(c->subs[i].val);
        else
            cs_free(c->subs[i].val);
    }
    cs_txn_abort(c->txn);
    multi_free(c->multi);
    struct net *n = c->conn->net;
    if (n->ncache < NET_CMD_CACHE_MAX && c->mem_cap <= NET_CMD_CACHE_BYTES &&
        c->reply.cap <= NET_CMD_CACHE_BYTES && c->subs_cap <= NET_CMD_CACHE_BYTES / 64) {
        c->next = n->cmd_cache;
        n->cmd_cache = c;
        n->ncache++;
        return;
    }
    free(c->subs);
    free(c->keys);
    resp_out_free(&c->reply);
    free(c->mem);
    free(c);
}

/* A clean command for conn: a recycled one (its buffers kept) or a new one. */
static struct cmd *cmd_get(struct conn *conn)
{
    struct net *n = conn->net;
    struct cmd *c = n->cmd_cache;
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (c)
            resp_out_init(&c->reply, n->srv->cfg.output_bytes_max);
    } else {
        n->cmd_cache = c->next;
        n->ncache--;
        struct cmd keep = *c;
        memset(c, 0, sizeof(*c));
        c->mem = keep.mem;
        c->mem_cap = keep.mem_cap;
        c->subs = keep.subs;
        c->subs_cap = keep.subs_cap;
        c->keys = keep.keys;
        c->keys_cap = keep.keys_cap;
        c->reply = keep.reply;
        resp_out_reset(&c->reply);
    }
    if (c)
        c->conn = conn;
    return c;
}

static void cmd_cache_free(struct net *n)
{
    while (n->cmd_cache) {
        struct cmd *c = n->cmd_cache;
        n->cmd_cache = c->next;
        free(c->subs);
        free(c->keys);
        resp_out_free(&c->reply);
        free(c->mem);
        free(c);
    }
    n->ncache = 0;
}

/* A command from the parser's arguments: one allocation holding the argument table, the copied
 * arguments (each NUL-terminated) and room for nsubs key operations. */
static struct cmd *cmd_new(struct conn *conn)
{
    size_t argc = resp_parser_argc(&conn->parser), bytes = 0;
    for (size_t i = 0; i < argc; i++) {
        size_t len;
        (void)resp_parser_arg(&conn->parser, i, &len);
        bytes += len + 1;
    }
    struct cmd *c = cmd_get(conn);
    if (!c)
        return NULL;
    size_t table = argc * (sizeof(char *) + sizeof(size_t));
    if (c->mem_cap < table + bytes + 1) {
        char *m = realloc(c->mem, table + bytes + 1);
        if (!m) {
            cmd_free(c);
            return NULL;
        }
        c->mem = m;
        c->mem_cap = table + bytes + 1;
    }
    c->argc = argc;
    c->argv = (char **)c->mem;
    c->argl = (size_t *)(c->mem + argc * sizeof(char *));
    char *p = c->mem + table;
    for (size_t i = 0; i < argc; i++) {
        size_t len;
        const char *a = resp_parser_arg(&conn->parser, i, &len);
        memcpy(p, a, len);
        p[len] = '\0';
        c->argv[i] = p;
        c->argl[i] = len;
        p += len + 1;
    }
    return c;
}

static void conn_push(struct conn *conn, struct cmd *c)
{
    c->next = NULL;
    if (conn->tail)
        conn->tail->next = c;
    else
        conn->head = c;
    conn->tail = c;
    conn->ncmds++;
}

/* Whether c conflicts with a command of its connection that started and is not done. The
 * connection counts those (busy_keyed, busy_wr), so that the common cases need no walk: nothing
 * keyed in flight, or a read with no write in flight (a pipeline of GETs). */
static bool conflicts_in_flight(const struct cmd *c)
{
    const struct conn *conn = c->conn;
    if (c->access == CMD_ACCESS_NONE || conn->busy_keyed == 0)
        return false;
    if (c->barrier)
        return true;
    if (c->access == CMD_ACCESS_READ && conn->busy_wr == 0)
        return false;
    for (const struct cmd *d = c->conn->head; d && d != c; d = d->next)
        if (d->started && !d->done && cmd_conflicts(c, d))
            return true;
    return false;
}

static void cmd_start(struct cmd *c)
{
    c->started = true;
    if (c->access != CMD_ACCESS_NONE) {
        c->busy_counted = true;
        c->conn->busy_keyed++;
        if (c->access == CMD_ACCESS_WRITE || c->barrier)
            c->conn->busy_wr++;
    }
    cmd_exec(c);
}

/* Start the waiting commands, oldest first, until one still conflicts. */
static void start_waiting(struct conn *conn)
{
    while (conn->wait_head && !conflicts_in_flight(conn->wait_head)) {
        struct cmd *c = conn->wait_head;
        conn->wait_head = c->wnext;
        if (!conn->wait_head)
            conn->wait_tail = NULL;
        cmd_start(c);
    }
}

/* A new command: it starts now unless an earlier one waits, or one in flight touches its keys
 * (then it waits, and so does every later one). */
static void cmd_admit(struct conn *conn, struct cmd *c)
{
    if (!conn->wait_head && !conflicts_in_flight(c)) {
        cmd_start(c);
        return;
    }
    c->wnext = NULL;
    if (conn->wait_tail)
        conn->wait_tail->wnext = c;
    else
        conn->wait_head = c;
    conn->wait_tail = c;
}

void net_cmd_done(struct cmd *c)
{
    c->done = true;
    if (c->busy_counted) {
        c->busy_counted = false;
        c->conn->busy_keyed--;
        if (c->access == CMD_ACCESS_WRITE || c->barrier)
            c->conn->busy_wr--;
    }
    c->conn->held_bytes += c->reply.len - c->reply.head;
    ready(c->conn);
}

static void backlog_add(struct net *n, struct cmd *c)
{
    c->bnext = NULL;
    if (n->backlog_tail)
        n->backlog_tail->bnext = c;
    else
        n->backlog = c;
    n->backlog_tail = c;
}

/* A write may go to the engine unless the slow lane holds the writes (slow_exclusive). Counted
 * first, then the flag read, while the lane sets the flag and then reads the count (both
 * sequentially consistent): a write either sees the flag or is counted, and the lane waits for
 * it. */
static bool write_admit(struct net *n)
{
    atomic_fetch_add(&n->writes_busy, 1);
    if (!atomic_load(&n->srv->excl))
        return true;
    atomic_fetch_sub(&n->writes_busy, 1);
    return false;
}

/* Submit what fits of c's work; returns false when the session is full or writes are held (c
 * waits in the backlog, which keeps the net's order). */
static bool submit_some(struct cmd *c)
{
    struct net *n = c->conn->net;
    if (c->txn && !c->txn_submitted) {
        /* a commit refused for want of room frees the transaction: look for room first */
        if (cs_session_inflight(n->sess) >= CS_SESSION_DEPTH_MAX || !write_admit(n))
            return false;
        int rc = cs_session_commit(n->sess, c->txn, (uint64_t)(uintptr_t)&c->subs[0]);
        c->txn = NULL; /* the session owns it now (or freed it on error) */
        c->txn_submitted = true;
        if (rc) {
            c->subs[0].rc = rc;
            c->completed++;
            atomic_fetch_sub(&n->writes_busy, 1);
        } else {
            c->subs[0].busy = true;
        }
        c->submitted = 1;
    }
    while (c->submitted < c->nsubs && !c->txn_submitted) {
        struct sub *s = &c->subs[c->submitted];
        const char *key = c->argv[s->arg];
        size_t klen = c->argl[s->arg];
        uint64_t ud = (uint64_t)(uintptr_t)s;
        bool write = s->op != SUB_GET;
        if (write && !write_admit(n))
            return false;
        int rc;
        if (s->op == SUB_GET)
            rc = cs_session_get(n->sess, s->coll, key, klen, ud);
        else if (s->op == SUB_UPDATE)
            rc = host_session_update(n->sess, s->coll, key, klen, &s->upd, ud);
        else if (s->op == SUB_DEL)
            rc = cs_session_del(n->sess, s->coll, key, klen, ud);
        else
            rc = cs_session_put(n->sess, s->coll, key, klen, c->argv[s->arg + 1],
                                c->argl[s->arg + 1], ud);
        if (write && rc) /* not in the engine */
            atomic_fetch_sub(&n->writes_busy, 1);
        if (rc == CS_EFULL)
            return false;
        s->rc = rc;
        s->busy = write && rc == 0;
        c->submitted++;
        if (rc) /* refused at submission: completed with that answer */
            c->completed++;
    }
    return true;
}

void net_submit(struct cmd *c)
{
    struct net *n = c->conn->net;
    if (n->backlog || !submit_some(c)) {
        backlog_add(n, c);
        return;
    }
    if (c->completed == c->nsubs && c->submitted == c->nsubs)
        cmd_subs_done(c);
}

static void backlog_run(struct net *n)
{
    while (n->backlog) {
        struct cmd *c = n->backlog;
        if (!submit_some(c))
            return;
        n->backlog = c->bnext;
        if (!n->backlog)
            n->backlog_tail = NULL;
        if (c->completed == c->nsubs && c->submitted == c->nsubs)
            cmd_subs_done(c);
    }
}

static void reap(struct net *n)
{
    for (;;) {
        int got = cs_session_poll(n->sess, n->comp, NET_COMPLETIONS, 0);
        if (got <= 0)
            break;
        for (int i = 0; i < got; i++) {
            struct sub *s = (struct sub *)(uintptr_t)n->comp[i].user_data;
            s->rc = n->comp[i].rc;
            if (s->busy) {
                s->busy = false;
                atomic_fetch_sub(&n->writes_busy, 1);
            }
            if (s->op != SUB_UPDATE) { /* an update keeps what its function copied */
                s->val = n->comp[i].val;
                s->vlen = n->comp[i].vlen;
            }
            struct cmd *c = s->cmd;
            c->completed++;
            if (c->completed == c->nsubs && c->submitted == c->nsubs)
                cmd_subs_done(c);
        }
    }
    struct ck_stack_entry *e = ck_stack_batch_pop_upmc(&n->slow_done);
    while (e) {
        struct ck_stack_entry *next = e->next;
        struct cmd *c = (struct cmd *)((char *)e - offsetof(struct cmd, link));
        n->slow_out--;
        net_cmd_done(c);
        e = next;
    }
}

/* ---- connections ---- */

static void conn_close_fd(struct conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

/* Free c once nothing of it is in flight; returns whether it was freed. */
static bool conn_reclaim(struct conn *c)
{
    if (c->recv_armed || c->send_armed || c->ncmds > 0)
        return false;
    struct net *n = c->net;
    conn_close_fd(c);
    resp_parser_free(&c->parser);
    resp_out_free(&c->out);
    free(c->in);
    multi_free(c->multi); /* a MULTI block never EXECed, and WATCHed keys */
    n->conns[c->slot] = NULL;
    n->gens[c->slot]++;
    n->free_slots[n->nfree++] = c->slot;
    n->nconns--;
    atomic_fetch_sub(&n->srv->clients, 1);
    free(c);
    return true;
}

static struct conn *conn_new(struct net *n, int fd)
{
    if (n->nfree == 0)
        return NULL;
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->in_cap = NET_IN_BYTES;
    c->in = malloc(c->in_cap);
    struct resp_limits lim;
    resp_limits_default(&lim);
    lim.args_max = n->srv->cfg.args_max;
    lim.bulk_bytes_max = n->srv->cfg.bulk_bytes_max;
    lim.inline_bytes_max = n->srv->cfg.inline_bytes_max;
    if (!c->in || resp_parser_init(&c->parser, &lim) != 0) {
        free(c->in);
        free(c);
        return NULL;
    }
    resp_out_init(&c->out, n->srv->cfg.output_bytes_max);
    c->net = n;
    c->fd = fd;
    c->slot = n->free_slots[--n->nfree];
    c->gen = n->gens[c->slot];
    c->id = atomic_fetch_add(&n->srv->next_id, 1) + 1;
    c->authed = n->srv->password == NULL;
    n->conns[c->slot] = c;
    n->nconns++;
    return c;
}

static void on_accept(struct net *n, struct io_ring *ring, int res, uint32_t flags)
{
    if (!(flags & IORING_CQE_F_MORE))
        n->accept_armed = false;
    if (res < 0) {
        if (res != -ECANCELED && !atomic_load(&n->srv->stopping))
            fprintf(stderr, "cstored: shard %u: accept: %s\n", n->shard, strerror(-res));
        return;
    }
    int fd = res;
    struct server *srv = n->srv;
    if (atomic_load(&srv->stopping)) {
        close(fd);
        return;
    }
    if (atomic_fetch_add(&srv->clients, 1) >= srv->cfg.maxclients) {
        atomic_fetch_sub(&srv->clients, 1);
        atomic_fetch_add(&srv->rejected, 1);
        static const char msg[] = "-ERR max number of clients reached\r\n";
        (void)!send(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        close(fd);
        return;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct conn *c = conn_new(n, fd);
    if (!c) {
        atomic_fetch_sub(&srv->clients, 1);
        close(fd);
        return;
    }
    atomic_fetch_add(&srv->connections, 1);
    ready(c);
    (void)ring;
}

static void on_recv(struct conn *c, int res)
{
    c->recv_armed = false;
    if (res > 0) {
        c->in_len += (size_t)res;
    } else if (res == 0 || res != -ECANCELED) {
        c->eof = true; /* the peer is gone (or reading failed): finish what was received */
        if (res < 0 && res != -ECONNRESET)
            c->dead = true;
    }
    ready(c);
}

static void on_send(struct conn *c, int res)
{
    c->send_armed = false;
    if (res < 0)
        c->dead = true;
    else
        resp_out_consume(&c->out, (size_t)res);
    ready(c);
}

/* Reply bytes waiting: in the output buffer and in finished commands not yet moved there. */
static size_t out_waiting(const struct conn *c)
{
    size_t len;
    (void)resp_out_pending(&c->out, &len);
    return len + c->held_bytes;
}

static void guest_event(void *arg, struct io_ring *ring, uint64_t tag, int res, uint32_t flags)
{
    struct net *n = arg;
    enum net_kind kind = (enum net_kind)((tag >> 56) & 0x7f);
    unsigned slot = (unsigned)((tag >> 24) & (NET_SLOTS_MAX - 1));
    uint32_t gen = (uint32_t)(tag & NET_GEN_MASK);
    if (kind == NET_ACCEPT) {
        on_accept(n, ring, res, flags);
        return;
    }
    if (kind == NET_CANCEL)
        return;
    struct conn *c = slot < n->srv->cfg.maxclients + 1 ? n->conns[slot] : NULL;
    if (!c || (c->gen & NET_GEN_MASK) != gen)
        return; /* cannot happen: a slot is reused only once nothing of it is in flight */
    if (kind == NET_RECV)
        on_recv(c, res);
    else if (kind == NET_SEND)
        on_send(c, res);
}

/* Parse and run what c received, within the limits. */
static void conn_parse(struct conn *c)
{
    struct server *srv = c->net->srv;
    size_t off = c->in_off;
    for (unsigned budget = 0; budget < NET_PARSE_BUDGET && !c->closing; budget++) {
        if (c->ncmds >= srv->cfg.pipeline_max || out_waiting(c) >= NET_OUT_SOFT_BYTES)
            break;
        if (off == c->in_len)
            break;
        size_t used = 0;
        int rc = resp_parse(&c->parser, c->in + off, c->in_len - off, &used);
        if (rc == RESP_MORE)
            break;
        struct cmd *cmd = NULL;
        if (rc == RESP_OK) {
            if (resp_parser_argc(&c->parser) == 0) { /* an empty request: nothing to answer */
                off += used;
                continue;
            }
            cmd = cmd_new(c);
            off += used;
            if (!cmd) {
                c->closing = true;
                c->dead = true;
                break;
            }
            conn_push(c, cmd);
            atomic_fetch_add_explicit(&srv->commands, 1, memory_order_relaxed);
            if (cmd_prepare(cmd) != 0) {
                reply_rc(cmd, -ENOMEM);
                net_cmd_done(cmd);
                continue;
            }
            cmd_admit(c, cmd);
        } else {
            cmd = cmd_get(c);
            if (!cmd) {
                c->dead = true;
                c->closing = true;
                break;
            }
            conn_push(c, cmd);
            cmd->started = true;
            reply_error(cmd, "ERR %s", resp_parser_error(&c->parser));
            cmd->close_after = true;
            c->closing = true;
            net_cmd_done(cmd);
            off = c->in_len;
        }
    }
    c->in_off = off; /* the bytes before are parsed: dropped by conn_compact */
}

/* Drop the parsed bytes at the start of the input buffer: only while no recv is in flight (the
 * kernel writes at the offset the recv was given). */
static void conn_compact(struct conn *c)
{
    if (c->recv_armed || c->in_off == 0)
        return;
    memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
    c->in_len -= c->in_off;
    c->in_off = 0;
}

/* Move finished replies, oldest first, to the output buffer: only while no send is in flight
 * (the kernel reads the buffer, which an append may move). */
static void conn_collect(struct conn *c)
{
    while (c->head && c->head->done && !c->send_armed) {
        struct cmd *cmd = c->head;
        c->head = cmd->next;
        if (!c->head)
            c->tail = NULL;
        c->ncmds--;
        size_t rlen;
        const char *r = resp_out_pending(&cmd->reply, &rlen);
        c->held_bytes -= rlen;
        if (!c->dead && (cmd->reply.over || resp_out_append(&c->out, r, rlen) != 0))
            c->dead = true; /* a reply over output_bytes_max */
        if (cmd->close_after)
            c->closing = true;
        cmd_free(cmd);
    }
}

/* Room to receive into: grow the buffer when it is full, up to query_bytes_max. */
static bool conn_room(struct conn *c)
{
    if (c->in_len < c->in_cap)
        return true;
    size_t max = c->net->srv->cfg.query_bytes_max;
    if (c->in_cap >= max)
        return false;
    size_t cap = c->in_cap * 2 > max ? max : c->in_cap * 2;
    char *p = realloc(c->in, cap);
    if (!p)
        return false;
    c->in = p;
    c->in_cap = cap;
    return true;
}

/* Everything a connection does in one loop iteration. */
static void conn_step(struct net *n, struct io_ring *ring, struct conn *c)
{
    bool stopping = atomic_load(&n->srv->stopping);
    start_waiting(c); /* commands that waited for earlier ones that just finished */
    if (!c->dead && !c->closing && !stopping)
        conn_parse(c);
    conn_collect(c);
    if (!c->dead && !c->closing && !stopping && c->eof && c->ncmds == 0)
        c->closing = true; /* the peer closed and everything it sent was answered */
    conn_compact(c);
    if (!c->dead && !c->closing && !c->eof && !stopping && !c->recv_armed && !conn_room(c)) {
        /* a request bigger than query_bytes_max */
        struct cmd *cmd = cmd_get(c);
        if (cmd) {
            conn_push(c, cmd);
            cmd->started = true;
            reply_error(cmd, "ERR Protocol error: request bigger than the query buffer limit");
            cmd->close_after = true;
            net_cmd_done(cmd);
            conn_collect(c);
        }
        c->closing = true;
        if (!cmd)
            c->dead = true;
    }
    if (c->dead && !c->send_armed)
        resp_out_reset(&c->out);
    size_t plen;
    const char *pend = resp_out_pending(&c->out, &plen);
    if (!c->dead && !c->send_armed && plen > 0) {
        if (io_ring_send(ring, c->fd, pend, plen, net_tag(NET_SEND, c->slot, c->gen)) == 0)
            c->send_armed = true;
        else
            c->dead = true;
    }
    bool want_read = !c->dead && !c->closing && !c->eof && !stopping &&
                     c->ncmds < n->srv->cfg.pipeline_max && out_waiting(c) < NET_OUT_SOFT_BYTES &&
                     c->in_len < c->in_cap;
    if (want_read && !c->recv_armed) {
        if (io_ring_recv(ring, c->fd, c->in + c->in_len, c->in_cap - c->in_len,
                         net_tag(NET_RECV, c->slot, c->gen)) == 0)
            c->recv_armed = true;
        else
            c->dead = true;
    }
    bool finished = c->dead || ((c->closing || stopping) && c->ncmds == 0 && !c->send_armed &&
                                out_waiting(c) == 0);
    if (stopping && n->stop_deadline_ns && now_ns() > n->stop_deadline_ns)
        finished = true; /* a client that does not read its last replies is cut off */
    if (finished) {
        if (c->recv_armed && !c->cancel_sent) {
            c->cancel_sent = true;
            (void)!io_ring_cancel(ring, net_tag(NET_RECV, c->slot, c->gen),
                                  net_tag(NET_CANCEL, c->slot, c->gen));
        }
        if (c->send_armed || c->recv_armed) {
            /* shutdown makes a stuck send or recv complete */
            if (c->fd >= 0)
                shutdown(c->fd, SHUT_RDWR);
        }
        c->dead = true;
        conn_reclaim(c);
    }
}

static bool guest_poll(void *arg, struct io_ring *ring)
{
    struct net *n = arg;
    bool stopping = atomic_load(&n->srv->stopping);
    reap(n);
    backlog_run(n);
    if (stopping && !n->stop_deadline_ns) {
        n->stop_deadline_ns = now_ns() + (uint64_t)NET_STOP_GRACE_MS * 1000000u;
        for (unsigned i = 0; i <= n->srv->cfg.maxclients; i++)
            if (n->conns[i])
                ready(n->conns[i]);
    }
    if (stopping && n->accept_armed && !n->accept_cancelled) {
        if (io_ring_cancel(ring, net_tag(NET_ACCEPT, 0, 0), net_tag(NET_CANCEL, 0, 0)) == 0)
            n->accept_cancelled = true;
    }
    if (!stopping && !n->accept_armed) {
        if (io_ring_accept(ring, n->lfd, net_tag(NET_ACCEPT, 0, 0)) == 0)
            n->accept_armed = true;
    }
    bool busy = false;
    struct conn *list = n->ready;
    n->ready = NULL;
    while (list) {
        struct conn *c = list;
        list = c->ready_next;
        c->in_ready = false;
        conn_step(n, ring, c);
    }
    if (n->ready)
        busy = true; /* commands completed at once during the steps */
    if (stopping) {
        /* connections that wait for their last completions get looked at again */
        for (unsigned i = 0; i <= n->srv->cfg.maxclients && n->nconns; i++)
            if (n->conns[i] && !n->conns[i]->in_ready && now_ns() > n->stop_deadline_ns)
                ready(n->conns[i]);
        if (n->nconns == 0 && !n->accept_armed && n->slow_out == 0 &&
            cs_session_inflight(n->sess) == 0)
            atomic_store(&n->stopped, 1);
        else if (n->nconns)
            busy = busy || now_ns() > n->stop_deadline_ns;
    }
    return busy;
}

static bool guest_pending(void *arg)
{
    struct net *n = arg;
    return host_session_ready(n->sess) ||
           __atomic_load_n(&n->slow_done.head, __ATOMIC_ACQUIRE) != NULL;
}

/* ---- start and stop ---- */

static void wake_net(void *arg)
{
    struct net *n = arg;
    host_wake(n->srv->db, n->shard);
}

int net_listen(const char *host, uint16_t port, bool reuse, uint16_t *bound)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        sl = sizeof(*a4);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        sl = sizeof(*a6);
    } else {
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (reuse && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
        bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 511) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    *bound = ntohs(ss.ss_family == AF_INET ? a4->sin_port : a6->sin6_port);
    return fd;
}

static void net_free(struct net *n)
{
    if (!n)
        return;
    if (n->sess)
        cs_session_close(n->sess);
    if (n->lfd >= 0)
        close(n->lfd);
    cmd_cache_free(n);
    free(n->conns);
    free(n->gens);
    free(n->free_slots);
    free(n);
}

static int net_new(struct server *s, unsigned shard, uint16_t port, struct net **out)
{
    struct net *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->srv = s;
    n->shard = shard;
    n->lfd = -1;
    unsigned slots = s->cfg.maxclients + 1;
    n->conns = calloc(slots, sizeof(*n->conns));
    n->gens = calloc(slots, sizeof(*n->gens));
    n->free_slots = calloc(slots, sizeof(*n->free_slots));
    if (!n->conns || !n->gens || !n->free_slots) {
        net_free(n);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < slots; i++)
        n->free_slots[i] = slots - 1 - i;
    n->nfree = slots;
    ck_stack_init(&n->slow_done);
    int rc = host_session_open(s->db, CS_SESSION_DEPTH_MAX, wake_net, n, &n->sess);
    if (rc) {
        net_free(n);
        return rc;
    }
    uint16_t bound = 0;
    n->lfd = net_listen(s->cfg.host, port, true, &bound);
    if (n->lfd < 0) {
        rc = n->lfd;
        n->lfd = -1;
        net_free(n);
        return rc;
    }
    s->port = bound;
    n->guest.arg = n;
    n->guest.event = guest_event;
    n->guest.poll = guest_poll;
    n->guest.pending = guest_pending;
    *out = n;
    return 0;
}

void server_config_default(struct server_config *c)
{
    memset(c, 0, sizeof(*c));
    c->host = "127.0.0.1";
    c->port = 6380;
    c->maxclients = 10000;
    c->collection = "redis";
    c->query_bytes_max = (size_t)1 << 30;
    c->output_bytes_max = (size_t)256 << 20;
    c->pipeline_max = 1024;
    struct resp_limits l;
    resp_limits_default(&l);
    c->args_max = l.args_max;
    c->bulk_bytes_max = l.bulk_bytes_max;
    c->inline_bytes_max = l.inline_bytes_max;
}

static void server_free(struct server *s)
{
    for (unsigned i = 0; s->nets && i < s->nshards; i++)
        net_free(s->nets[i]);
    free(s->nets);
    free(s->guests);
    free(s->password);
    free(s->collection);
    free(s);
}

int server_start(cs_db *db, const struct server_config *cfg, struct server **out)
{
    if (!db || !cfg || !out || !cfg->host || !cfg->collection || cfg->maxclients == 0 ||
        cfg->maxclients >= NET_SLOTS_MAX || cfg->pipeline_max == 0)
        return CS_EINVAL;
    struct server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->db = db;
    s->cfg = *cfg;
    s->metrics_fd = -1;
    s->nshards = host_shards(db);
    s->start_ns = now_ns();
    s->collection = strdup(cfg->collection);
    s->cfg.collection = s->collection;
    if (cfg->password) {
        s->password = strdup(cfg->password);
        s->password_len = strlen(cfg->password);
    }
    s->nets = calloc(s->nshards, sizeof(*s->nets));
    s->guests = calloc(s->nshards, sizeof(*s->guests));
    if (!s->collection || (cfg->password && !s->password) || !s->nets || !s->guests) {
        server_free(s);
        return -ENOMEM;
    }
    int rc = cs_collection_create(db, s->collection);
    if (rc && rc != CS_EEXIST) {
        server_free(s);
        return rc;
    }
    uint16_t port = cfg->port;
    for (unsigned i = 0; i < s->nshards; i++) {
        rc = net_new(s, i, port, &s->nets[i]);
        if (rc) {
            server_free(s);
            return rc;
        }
        port = s->port; /* port 0: the others share the port the first one got */
        s->guests[i] = &s->nets[i]->guest;
    }
    if (cfg->metrics_host) {
        int fd = net_listen(cfg->metrics_host, cfg->metrics_port, false, &s->metrics_port);
        if (fd < 0) {
            server_free(s);
            return fd;
        }
        rc = metrics_start(s, fd);
        if (rc) {
            close(fd);
            server_free(s);
            return rc;
        }
    }
    rc = slow_start(s);
    if (rc) {
        metrics_stop(s);
        server_free(s);
        return rc;
    }
    rc = host_attach(db, s->guests);
    if (rc) {
        host_detach(db);
        slow_stop(s);
        metrics_stop(s);
        server_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

uint16_t server_port(const struct server *s)
{
    return s->port;
}

uint16_t server_metrics_port(const struct server *s)
{
    return s->metrics_on ? s->metrics_port : 0;
}

void server_stop(struct server *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, 1);
    metrics_stop(s);
    for (;;) {
        unsigned left = 0;
        for (unsigned i = 0; i < s->nshards; i++) {
            if (!atomic_load(&s->nets[i]->stopped)) {
                left++;
                host_wake(s->db, i);
            }
        }
        if (!left)
            break;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
        nanosleep(&ts, NULL);
    }
    host_detach(s->db);
    slow_stop(s);
    server_free(s);
}
