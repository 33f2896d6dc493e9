/* What the server's files share (server/net.c: connections and the loop; server/cmd.c: the
 * commands; server/slow.c: the lane for blocking engine calls). See server/net.c for the design. */
#ifndef CS_SERVER_INT_H
#define CS_SERVER_INT_H

#include <ck_stack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "engine/host.h"
#include "server/resp.h"
#include "server/server.h"

#define NET_COMPLETIONS 64u           /* session completions reaped per call */
#define NET_IN_BYTES 4096u            /* a connection's first receive buffer */
#define NET_OUT_SOFT_BYTES (1u << 20) /* replies waiting: stop parsing more until they are sent */
#define NET_CMD_CACHE_MAX 1024u       /* finished commands a shard keeps for reuse */
#define NET_CMD_CACHE_BYTES 65536u    /* ... when their buffers are at most this big */
#define NET_PARSE_BUDGET 256u         /* commands one connection parses per loop iteration */
#define NET_NAME_BYTES_MAX 256u       /* CLIENT SETNAME */
#define NET_STOP_GRACE_MS 5000u       /* server_stop: wait this long for replies to go out */
#define CMD_TXN_RETRIES 100u          /* a transaction the server runs retries this often */
#define CMD_TXN_EXCL_AFTER 3u  /* slow-lane conflicts before the writes of every client are held */
#define SCAN_TABLE_SIZE 4096u  /* SCAN and CS.SCAN positions remembered */
#define SCAN_COUNT_MAX 100000u /* records one SCAN call may return */
#define CMD_MULTI_CMDS_MAX CS_TXN_OPS_MAX    /* commands one MULTI may queue */
#define CMD_MULTI_BYTES_MAX CS_TXN_BYTES_MAX /* argument bytes one MULTI may queue */
#define CMD_WATCH_KEYS_MAX 1024u             /* keys one connection may WATCH */

struct cmd;
struct conn;
struct net;

/* One key operation of a command, in flight in the shard's session (user_data points here). */
enum sub_op { SUB_GET = 1, SUB_PUT = 2, SUB_DEL = 3, SUB_UPDATE = 4 };
struct sub {
    struct cmd *cmd;   /* owner */
    uint8_t op;        /* enum sub_op */
    const char *coll;  /* collection (NUL-terminated; lives as long as the command) */
    size_t arg;        /* the key's argument index (a put's value is the next one) */
    int rc;            /* its completion's result */
    void *val;         /* gets: value (cs_free); updates: a copy they made (free), or NULL */
    size_t vlen;       /* its length */
    bool val_malloced; /* val is free()'s, not cs_free()'s */
    bool busy;         /* a write counted in its net's writes_busy until it completes */
    /* SUB_UPDATE: the function run on the key's shard, and what it found and decided */
    struct shard_update upd;
    bool found;       /* the key held a value */
    bool wrote;       /* SET: it wrote */
    int verdict;      /* INCR: RMW_NOT_INT, RMW_OVERFLOW, or 0 */
    long long number; /* INCR: the new value */
    char num[24];     /* INCR: the new value as text (what was written) */
};

struct cmd_def;

/* A key WATCHed by a connection: what it held when WATCH read it. */
struct watch {
    char *key;      /* the key (owned), in the default collection */
    size_t klen;    /* its length */
    bool found;     /* it existed */
    uint64_t vhash; /* then: XXH3 of its value */
};

/* A connection's transaction state (server/cmd.c): its MULTI block and its WATCHed keys. EXEC
 * takes it from the connection (cmd->multi) and runs it on the slow lane. */
struct multi {
    bool on;               /* MULTI seen: commands are queued, not run */
    bool dirty;            /* a command was refused while queueing: EXEC answers EXECABORT */
    struct cmd *head;      /* queued commands, oldest first (linked by next; each owns its
                              arguments and reply, and is in no connection queue) */
    struct cmd *tail;      /* newest */
    size_t count;          /* commands queued */
    size_t bytes;          /* their argument bytes */
    struct watch *watches; /* WATCHed keys (owned) */
    size_t nwatches;       /* entries in watches */
    size_t watches_cap;    /* its size */
};

#define CMD_ACCESS_NONE 0        /* touches no key */
#define CMD_ACCESS_READ 1        /* reads its keys */
#define CMD_ACCESS_WRITE 2       /* writes (and may read) its keys */
#define CMD_KEYS_TRACKED_MAX 64u /* a command with more keys is ordered as a barrier */

/* One command of a connection: arguments (copied, each NUL-terminated), its reply (built when it
 * completes) and what it has in flight. Replies leave in request order: a command that completes
 * early waits in the connection's queue behind those before it. */
struct cmd {
    struct conn *conn;             /* owner */
    struct cmd *next;              /* connection's queue, in request order */
    struct cmd *bnext;             /* net's backlog (waiting for session room) */
    const struct cmd_def *def;     /* what it is (NULL: a protocol error reply) */
    size_t argc;                   /* arguments */
    char **argv;                   /* each NUL-terminated; in mem */
    size_t *argl;                  /* their lengths; in mem */
    char *mem;                     /* one allocation for argv, argl and the bytes */
    size_t mem_cap;                /* its size (kept when the command is recycled) */
    size_t subs_cap;               /* entries allocated at subs (kept likewise) */
    size_t keys_cap;               /* entries allocated at keys (kept likewise) */
    struct resp_out reply;         /* the reply, once done */
    bool done;                     /* reply complete */
    bool close_after;              /* QUIT or a protocol error: close once the reply is sent */
    struct sub *subs;              /* key operations */
    size_t nsubs;                  /* their count */
    size_t submitted;              /* subs handed to the session so far */
    size_t completed;              /* subs completed */
    cs_txn *txn;                   /* a write transaction to submit (MSET) */
    bool txn_submitted;            /* it is in the session */
    unsigned retries;              /* conflicts retried */
    void (*finish)(struct cmd *c); /* builds the reply once every sub completed */
    void (*slow)(struct cmd *c);   /* blocking work, run on the slow lane, builds the reply */
    /* Order (see "ORDER" in net.c): the keys it touches, as hashes of collection and key. */
    uint64_t *keys; /* nkeys hashes (owned), or NULL */
    size_t nkeys;
    uint8_t access;             /* CMD_ACCESS_* */
    bool barrier;               /* conflicts with every command (whole-collection ones) */
    bool inbox;                 /* single-key writes through the rings (CMD_F_INBOX) */
    bool started;               /* executed (else it waits on the connection's list) */
    bool busy_counted;          /* counted in its connection's busy_* until done */
    struct cmd *wnext;          /* the connection's waiting list */
    struct ck_stack_entry link; /* slow lane: back to the net */
    struct cmd *slow_next;      /* slow lane queue */
    struct multi *multi;        /* EXEC: the block it runs (owned), else NULL */
};

/* A client connection, owned by the shard thread that accepted it. */
struct conn {
    struct net *net; /* its shard's server part */
    unsigned slot;   /* index in net->conns */
    uint32_t gen;    /* generation of the slot (stale completions are told apart) */
    int fd;          /* socket */
    uint64_t id;     /* CLIENT ID */
    char *in;        /* received bytes; the unparsed ones from in_off (a request starts there) */
    size_t in_off;   /* bytes at the start already parsed: dropped only while no recv is in
                        flight (the kernel writes at the offset the recv was given) */
    size_t in_len;   /* bytes in in */
    size_t in_cap;   /* its size */
    struct resp_parser parser;
    struct resp_out out;   /* replies to send, in order (out.head: the bytes already sent) */
    size_t held_bytes;     /* reply bytes of finished commands not yet moved to out */
    struct cmd *head;      /* commands in flight, oldest first */
    struct cmd *tail;      /* newest */
    unsigned ncmds;        /* commands in flight */
    struct cmd *wait_head; /* commands not yet started, oldest first (they wait for earlier
                              ones that touch the same keys) */
    struct cmd *wait_tail;
    unsigned busy_keyed; /* started, not done, touching keys (access != CMD_ACCESS_NONE) */
    unsigned busy_wr;    /* of those, the writes and barriers: what a read can conflict with */
    bool recv_armed;     /* a recv is in the ring */
    bool send_armed;     /* a send is in the ring */
    bool cancel_sent;    /* its recv was asked to stop */
    bool eof;            /* the peer closed or reading failed: parse what is left, no more */
    bool closing;        /* no more commands: close once the replies are out */
    bool dead;           /* the socket failed: drop replies, free once nothing is in flight */
    bool authed;         /* AUTH passed (or none needed) */
    bool in_ready;       /* on net->ready */
    struct conn *ready_next;
    char name[NET_NAME_BYTES_MAX + 1]; /* CLIENT SETNAME */
    struct multi *multi;               /* MULTI block and WATCHed keys (owned), or NULL: none */
};

/* The server's part on one shard: its listening socket, connections and session. */
struct net {
    struct server *srv;
    unsigned shard;
    struct shard_guest guest; /* handed to the shard */
    int lfd;                  /* listening socket (SO_REUSEPORT: one per shard) */
    bool accept_armed;        /* the multishot accept is in the ring */
    bool accept_cancelled;    /* stopping: asked to stop */
    cs_session *sess;         /* key operations of this shard's connections */
    struct conn **conns;      /* by slot */
    uint32_t *gens;           /* generation per slot */
    unsigned *free_slots;     /* stack of free slots */
    unsigned nfree;
    unsigned nconns;     /* connections open */
    struct conn *ready;  /* connections with work for poll */
    struct cmd *backlog; /* commands waiting for session room, oldest first */
    struct cmd *backlog_tail;
    struct ck_stack slow_done; /* commands back from the slow lane */
    struct cmd *cmd_cache;     /* finished commands kept for reuse (their buffers too) */
    unsigned ncache;           /* entries on it, at most NET_CMD_CACHE_MAX */
    unsigned slow_out;         /* commands on the slow lane */
    _Atomic long writes_busy;  /* writes handed to the engine, not yet completed (slow.c,
                                  EXCLUSIVE: the lane sums them; per net, so that counting
                                  never moves a cache line between the shard threads) */
    _Atomic int stopped;       /* stopping finished: nothing open, nothing in flight */
    uint64_t stop_deadline_ns; /* stopping: cut off clients that do not read after this */
    struct cs_completion comp[NET_COMPLETIONS];
};

/* SCAN positions: a cursor number names the last key a SCAN returned. */
struct scan_pos {
    uint64_t cursor; /* 0: free */
    uint64_t used;   /* last use (LRU) */
    char *coll;      /* collection */
    void *key;       /* last key returned */
    size_t klen;
};

struct server {
    cs_db *db;
    struct server_config cfg;
    char *password; /* or NULL */
    size_t password_len;
    char *collection; /* resp_collection */
    unsigned nshards;
    struct net **nets;
    const struct shard_guest **guests;
    uint16_t port;
    uint64_t start_ns;
    _Atomic unsigned clients;     /* connections open */
    _Atomic uint64_t next_id;     /* CLIENT ID */
    _Atomic int stopping;         /* server_stop began */
    _Atomic uint64_t commands;    /* commands executed */
    _Atomic uint64_t connections; /* connections accepted */
    _Atomic uint64_t rejected;    /* refused over maxclients */
    /* writes held for a slow-lane transaction that kept conflicting (see "EXCLUSIVE" in slow.c) */
    _Atomic int excl;           /* set: the nets start no write */
    _Atomic uint64_t excl_runs; /* times the lane held the writes (INFO) */
    /* slow lane */
    pthread_t slow_thread;
    pthread_mutex_t slow_mu;
    pthread_cond_t slow_cv;
    struct cmd *slow_head, *slow_tail;
    bool slow_quit;
    /* metrics endpoint (server/metrics.c) */
    int metrics_fd; /* listening socket, or -1 */
    uint16_t metrics_port;
    pthread_t metrics_thread;
    bool metrics_on; /* the thread runs */
    /* SCAN positions (slow lane only) */
    struct scan_pos scans[SCAN_TABLE_SIZE];
    uint64_t scan_clock;
};

/* server/cmd.c */
/* Look the command up and note the keys it touches and how (c->keys, access, barrier), for the
 * ordering of a connection's commands. Returns 0 or -ENOMEM. */
CS_MUST_CHECK int cmd_prepare(struct cmd *c);
/* Whether c must wait for d, an earlier command of its connection still in flight. */
bool cmd_conflicts(const struct cmd *c, const struct cmd *d);
/* Run a prepared command: completes it (c->done), or leaves subs, a transaction or slow work in
 * flight that finish it later. */
void cmd_exec(struct cmd *c);
/* Every sub completed (or the transaction did): build the reply, or retry. */
void cmd_subs_done(struct cmd *c);
/* COMMAND COUNT */
size_t cmd_count(void);
/* Free a transaction state (a connection's, or an EXEC's): queued commands and watches. NULL is
 * fine. */
void multi_free(struct multi *m);

/* server/net.c */
/* Hand c's subs (and transaction) to the session, as far as it has room; the rest waits. */
void net_submit(struct cmd *c);
/* c's reply is complete. */
void net_cmd_done(struct cmd *c);

/* server/slow.c */
CS_MUST_CHECK int slow_start(struct server *s);
void slow_stop(struct server *s);
/* A slow-lane transaction that conflicted CMD_TXN_EXCL_AFTER times: hold every client's new
 * writes and wait until the engine finished those in flight; released once the command is done
 * (see "EXCLUSIVE" in slow.c). Slow lane only. */
void slow_exclusive(struct cmd *c);
/* Run c->slow on the lane; the command comes back to its net when done. */
void slow_submit(struct cmd *c);

/* server/metrics.c: serve GET /metrics on the listening socket fd (taken) from a thread. */
CS_MUST_CHECK int metrics_start(struct server *s, int fd);
void metrics_stop(struct server *s);
/* server/net.c: a listening TCP socket on host:port (numeric), SO_REUSEPORT when reuse; returns
 * the fd (with *bound the port it got) or -errno. */
CS_MUST_CHECK int net_listen(const char *host, uint16_t port, bool reuse, uint16_t *bound);

/* Reply helpers (server/cmd.c). */
void reply_error(struct cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void reply_rc(struct cmd *c, int rc); /* an engine error as -ERR <message> */

#endif
