/* cstore-bench: shared declarations of the benchmark driver.
 *
 * The program is three parts that meet here:
 * - engines (bench_cstore.c, bench_rocksdb.c, bench_lmdb.c, bench_sqlite.c): a struct
 *   bench_engine of function pointers over one store, with a per-thread handle for blocking
 *   calls and, when the engine has them, pipelined calls (submit many, reap completions);
 * - workloads (bench_workload.c): one function per phase, run by every thread of the phase
 *   against an engine, recording each request's latency in the thread's histogram;
 * - the driver (bench.c): options, the phase runner (threads, start barrier, wall clock, CPU
 *   time, warm-up, memory and disk figures), the two fdatasync floors, and the report (text or
 *   JSON).
 * Adding an engine is one file with a struct bench_engine and a line in bench.c's engine table;
 * adding a workload is one function and a line in the workload table of bench_workload.c.
 * Transactions are optional calls of an engine (txn_*): a transactional phase (transfer, or a
 * ycsb or seekrandom phase with --txn) needs them, and counts the transactions it committed and
 * the attempts it retried after a conflict (aborts).
 * A peer engine is compiled in when the Makefile found its header (BENCH_HAVE_ROCKSDB,
 * BENCH_HAVE_LMDB, BENCH_HAVE_SQLITE); without it its file compiles to nothing. */
#ifndef BENCH_H
#define BENCH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "bench_hist.h"

#define BENCH_MUST_CHECK __attribute__((warn_unused_result))

#define BENCH_SETS_MAX 32u               /* --set NAME=VALUE options */
#define BENCH_INFLIGHT_MAX 65536u        /* --inflight */
#define BENCH_THREADS_MAX 1024u          /* --threads and phase:threads */
#define BENCH_KEY_BYTES_MIN 8u           /* keys start with 8 unique bytes */
#define BENCH_KEY_BYTES_MAX 1024u        /* --key-size */
#define BENCH_VALUE_BYTES_MAX (1u << 20) /* --value-size */
#define BENCH_REAP_MAX 64u               /* completions reaped per call */
#define BENCH_SCAN_LENGTH_MAX 100000u    /* --scan-length */
#define BENCH_BATCH_MAX 1000000u         /* --batch, --load-batch */
#define BENCH_TXN_OPS_MAX 64u            /* --txn: requests per transaction */

struct bench_config {
    const char *engine;               /* engine name */
    const char *db_path;              /* store folder */
    unsigned threads;                 /* default threads per phase */
    unsigned inflight;                /* requests in flight per thread; 1 = blocking calls */
    uint64_t keys;                    /* records loaded by the fill phases; the key space */
    uint64_t ops;                     /* requests of a non-fill phase, over all threads */
    uint64_t duration_ns;             /* stop each phase after this long; 0 = no limit */
    double rate;                      /* open loop: requests per second, all threads; 0 = closed */
    unsigned key_bytes;               /* bytes per key */
    unsigned value_bytes;             /* bytes per value */
    unsigned scan_length;             /* records read after each seek (seekrandom, ycsb-e max) */
    double zipf_theta;                /* zipfian constant of the ycsb workloads */
    double zipf_zetan;                /* zeta(keys, theta), computed by bench.c */
    double zipf_zeta2;                /* zeta(2, theta) */
    uint64_t warmup_ns;               /* unmeasured run of each measured read or mixed phase */
    int sequential_keys;              /* key(i) sorts like i (set when fillseq is run) */
    int compressible;                 /* values compress about 2:1 (default: incompressible) */
    int persist;                      /* write phases end with the engine's persist, timed */
    int settle;                       /* --settle: settle after a write phase another follows */
    unsigned batch;                   /* --batch: writes per commit of the measured phases */
    unsigned txn_ops;                 /* --txn: requests per transaction; 0 = none */
    int cross_shard;                  /* --cross-shard: a transfer's two records on two shards */
    int txn_writes;                   /* some phase writes in transactions (set by bench.c) */
    uint64_t seed;                    /* key generator and random reads */
    const char *durability;           /* sync | async | none, or NULL for the engine default */
    const char *shards;               /* shard count, or NULL for the engine default */
    const char *cpuset;               /* cpuset, or NULL */
    const char *sets[BENCH_SETS_MAX]; /* engine options as NAME=VALUE */
    unsigned set_count;               /* entries in sets */
};

/* One completed pipelined request. */
struct bench_done {
    uint64_t tag;    /* as given at submission */
    int rc;          /* 0, BENCH_NOTFOUND, BENCH_CONFLICT (commits) or an engine error */
    const void *val; /* gets: value, valid until the next reap on this thread */
    size_t vlen;     /* gets: value length */
};

#define BENCH_NOTFOUND 1 /* a get found no record (positive: not an error) */
#define BENCH_CONFLICT                                                                             \
    2 /* a transaction lost to another one: nothing of it applied, retry it                        \
       * (positive: not an error) */
#define BENCH_TXN_READONLY 1u /* txn_begin: a snapshot for reads only, which never conflicts */

/* An engine under test. Error returns are negative and described by strerror(). Calls on a
 * thread handle come from its one thread; open/close from the main thread. */
struct bench_engine {
    const char *name;
    int (*open)(const struct bench_config *cfg, void **store);
    int (*close)(void *store);
    /* depth: requests the thread will keep in flight (1: only blocking calls are used).
     * batch: puts and deletes an engine with transactions may group into one commit (1: each
     * is its own commit); engines without such grouping ignore it. */
    int (*thread_open)(void *store, unsigned depth, unsigned batch, void **th);
    /* Commit what a batch holds (NULL when the engine never groups). Called before close. */
    int (*flush)(void *th);
    void (*thread_close)(void *th);
    /* Blocking calls. get copies the value into buf (cap bytes; longer values are cut) and
     * returns 0, BENCH_NOTFOUND or an error; *vlen gets the full length. del returns 0 or
     * BENCH_NOTFOUND (engines that cannot tell return 0) or an error. */
    int (*put)(void *th, const void *key, size_t klen, const void *val, size_t vlen);
    int (*get)(void *th, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen);
    int (*del)(void *th, const void *key, size_t klen);
    /* Pipelined calls; all NULL when the engine has none. Buffers passed to a submit stay
     * valid until its completion is reaped. reap waits for at least min completions. */
    int (*submit_put)(void *th, const void *key, size_t klen, const void *val, size_t vlen,
                      uint64_t tag);
    int (*submit_get)(void *th, const void *key, size_t klen, uint64_t tag);
    int (*submit_del)(void *th, const void *key, size_t klen, uint64_t tag);
    int (*reap)(void *th, struct bench_done *out, unsigned max, unsigned min);
    /* Cursors in key order. scan_next moves to the first record on its first call, then to
     * the next; after scan_seek (first record >= key) it first returns that record. Returns 1
     * on a record (key and value are views valid until the next call), 0 at the end, or an
     * error. One cursor per thread at a time. */
    int (*scan_open)(void *th, void **cursor);
    int (*scan_seek)(void *cursor, const void *key, size_t klen);
    int (*scan_next)(void *cursor, const void **key, size_t *klen, const void **val, size_t *vlen);
    void (*scan_close)(void *cursor);
    /* Make everything written so far durable on disk (NULL: the engine's writes already are,
     * or it cannot). With --persist a write phase's clock stops after it returns. */
    int (*persist)(void *store);
    /* Bring the store into its steady state for reads after a load (RocksDB: flush the
     * memtable and compact), unmeasured; NULL when there is nothing to do. */
    int (*settle)(void *store);
    /* The engine's own state after a measured phase, one short line for the report (RocksDB:
     * SST files per level and compactions still running, so that a row can show that it
     * compacted); NULL when there is nothing to say. */
    void (*phase_note)(void *store, char *buf, size_t cap);
    /* One line of engine facts for the report: version, build, the options that were set
     * (and why they differ from the defaults), durability mapping; or NULL. */
    void (*describe)(void *store, char *buf, size_t cap);
    const char *(*strerror)(int rc);
    /* Transactions; all NULL when the engine has none (txn_submit_commit also when it has no
     * pipelined calls, txn_scan_open when it has no cursor inside a transaction). A thread
     * builds one transaction at a time: txn_begin, then txn_get, txn_put and txn_scan_open on
     * it, then txn_commit, txn_submit_commit or txn_abort, which end it (the txn handle is
     * invalid afterwards, whatever they return). txn_begin takes 0 (read-write) or
     * BENCH_TXN_READONLY. txn_get is get inside the transaction, seeing its own writes;
     * for_update says that the transaction will write the key (an engine that locks takes an
     * exclusive lock then, a shared one otherwise). txn_put copies key and value. txn_get and
     * txn_put return BENCH_CONFLICT when an engine that locks gave up waiting for a lock (or
     * found a deadlock): the caller then aborts the transaction. txn_commit returns 0 (applied,
     * as durable as the engine's durability makes a put), BENCH_CONFLICT (nothing applied:
     * retry the whole transaction) or an error. txn_scan_open opens a cursor (scan_seek,
     * scan_next, scan_close as above) over a read-only transaction's snapshot; close it before
     * the transaction ends. txn_submit_commit hands the commit to the thread's pipeline; its
     * completion (reap) has the rc txn_commit would have returned. */
    int (*txn_begin)(void *th, unsigned flags, void **txn);
    int (*txn_get)(void *txn, const void *key, size_t klen, int for_update, void *buf, size_t cap,
                   size_t *vlen);
    int (*txn_put)(void *txn, const void *key, size_t klen, const void *val, size_t vlen);
    int (*txn_commit)(void *txn);
    void (*txn_abort)(void *txn);
    int (*txn_scan_open)(void *txn, void **cursor);
    int (*txn_submit_commit)(void *th, void *txn, uint64_t tag);
    /* The shard key lives on (engines that partition their keys; NULL for the others), so that
     * --cross-shard can choose records on different shards. Returns 0 or an error. */
    int (*key_shard)(void *store, const void *key, size_t klen, unsigned *shard);
};

extern const struct bench_engine bench_engine_cstore;
#ifdef BENCH_HAVE_ROCKSDB
extern const struct bench_engine bench_engine_rocksdb;
#endif
#ifdef BENCH_HAVE_LMDB
extern const struct bench_engine bench_engine_lmdb;
#endif
#ifdef BENCH_HAVE_SQLITE
extern const struct bench_engine bench_engine_sqlite;
#endif

/* What the threads of one phase share (written with atomics). */
struct bench_shared {
    uint64_t inserted; /* records inserted beyond cfg->keys (ycsb-d, ycsb-e) */
};

/* One thread of a phase, as the workloads see it. */
struct bench_worker {
    const struct bench_engine *engine;
    const struct bench_config *cfg;
    void *store;                 /* the engine's store */
    struct bench_shared *shared; /* the phase's shared counters */
    unsigned index;              /* this thread, 0..count-1 */
    unsigned count;              /* threads in the phase */
    unsigned depth;              /* requests in flight this phase asks for */
    unsigned batch;              /* writes per commit this phase asks for */
    int txn;                     /* the phase runs transactions (bench_workload_txn) */
    uint64_t ops_total;          /* requests of the phase, all threads */
    uint64_t duration_ns;        /* stop after this long; 0 = no limit (the load phase) */
    pthread_barrier_t *ready;    /* every thread has its handle open: the clock may start */
    pthread_barrier_t *go;       /* the clock runs: start the requests */
    int started;                 /* this thread passed both barriers (bench_worker_start) */
    double rate;                 /* open loop, requests/s over all threads; 0 = closed loop */
    uint64_t ops;                /* requests completed */
    uint64_t misses;             /* gets that found nothing */
    uint64_t mismatches;         /* gets or scans that returned unexpected bytes */
    uint64_t errors;             /* requests that failed */
    int first_error;             /* the first failure's code, or 0 */
    uint64_t commits;            /* transactions committed (transactional phases) */
    uint64_t aborts;             /* transaction attempts that conflicted and were retried */
    struct bench_hist hist;      /* latency per request */
};

/* How a workload uses transactions. */
enum bench_txn_use {
    BENCH_TXN_NEVER,  /* --txn does not apply */
    BENCH_TXN_OPTION, /* --txn N: every N consecutive requests of a thread are one transaction */
    BENCH_TXN_ALWAYS, /* each request is a transaction (transfer) */
};

/* A workload: run by each thread of its phase. Returns 0, or an error that stops the thread
 * (per-request failures are counted in the worker and do not stop it). */
struct bench_workload {
    const char *name;
    int (*run)(struct bench_worker *w);
    int single_thread;      /* the phase always runs one thread */
    int fill;               /* writes every key once: its size is --keys, not --ops */
    int needs_load;         /* --workload runs a fillrandom load phase first */
    int blocking_only;      /* uses calls that have no pipelined form (seeks, read-modify-write) */
    int writes;             /* writes records: --persist applies */
    enum bench_txn_use txn; /* transactions */
    /* An invariant of the store that the phase keeps (NULL: none): its value, computed from
     * the main thread with a scan before the phase's threads start and after they end
     * (unmeasured); the driver counts a change as a wrong value. Returns 0 or an error. */
    int (*invariant)(const struct bench_engine *e, const struct bench_config *cfg, void *store,
                     uint64_t *value);
    const char *describe;
};

/* Whether phases of workload wl run transactions under cfg. */
int bench_workload_txn(const struct bench_workload *wl, const struct bench_config *cfg);

/* Called by a workload once its thread handle is open (or failed to open): waits until every
 * thread of the phase is ready and the driver has started the clock. Once per thread; the
 * driver calls it for a workload that returned without calling it. */
void bench_worker_start(struct bench_worker *w);

const struct bench_workload *bench_workload_find(const char *name);
/* The names of every workload, comma-separated, for --help. */
const char *bench_workload_names(void);
/* zeta(n, theta) = sum of 1/i^theta for i in 1..n: O(n), called once per run. */
double bench_zeta(uint64_t n, double theta);

uint64_t bench_now_ns(void);

#endif
