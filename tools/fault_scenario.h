/* What the scenarios of cstore-fault share: the run's context (configuration, model, counters;
 * passed explicitly, no file-scope state), opening a database, the workload, the check after a
 * reopen, scenario folders and iteration pacing (tools/fault_common.c), and the scenario
 * families (tools/fault_child.c, fault_inprocess.c, fault_bitflip.c, fault_txn.c,
 * fault_server.c). See
 * tools/cstore_fault.c for what each scenario proves. */
#ifndef CS_TOOLS_FAULT_SCENARIO_H
#define CS_TOOLS_FAULT_SCENARIO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/fault_model.h"

#define PATH_BYTES_MAX 1024u

enum scenario {
    SC_CRASH,
    SC_EIO,
    SC_TORN,
    SC_ENOSPC,
    SC_BITFLIP,
    SC_SLOW,
    SC_POWERCUT,
    SC_FILEIO,
    SC_ALLOC,
    SC_TXN,
    SC_SERVER,
    SC_COUNT
};

extern const char *const scenario_names[SC_COUNT];

/* Iterations run per scenario when neither --iterations nor --duration is given. */
extern const unsigned scenario_default_iterations[SC_COUNT];

struct config {
    uint64_t seed;           /* --seed */
    unsigned iterations;     /* --iterations (0: default or by duration) */
    unsigned duration_s;     /* --duration (0: none) */
    char db[PATH_BYTES_MAX]; /* --db: parent folder of the scenario databases */
    bool db_given;           /* --db was given (else a temporary folder, removed at the end) */
    unsigned shards;         /* --shards */
    unsigned threads;        /* --threads */
    bool verbose;            /* --verbose: one line per iteration */
    int txn_plan;            /* --plan: the txn scenario's only fault plan (-1: each in turn) */
    char cstored[PATH_BYTES_MAX]; /* --cstored: the server's executable ("": beside this one) */
    char durability[16];          /* --durability of the server scenario's cstored ("": sync) */
};

/* One run of the tool: everything the scenarios share, passed to each function that needs it. */
struct fault_ctx {
    struct config cfg;               /* from the command line */
    struct model model;              /* of the scenario running */
    _Atomic uint64_t ckpt_failures;  /* cs_checkpoint calls of the workload that failed */
    struct op_rec log_buf[64];       /* drain_log: records read from a child's pipe */
    size_t log_have;                 /* bytes of log_buf holding a partial record */
    struct result results[SC_COUNT]; /* per scenario */
};

/* A SplitMix64 stream. */
struct rng {
    uint64_t s; /* state */
};

uint64_t rng_next(struct rng *r);
uint64_t rng_below(struct rng *r, uint64_t n); /* uniform in [0, n), n > 0 */
uint64_t now_ms(void);
/* Read fixed-size records (rec_size bytes) that a child writes to fd into buf[0..cap), until EOF
 * (true) or deadline_ms (0: EOF only; false); apply(arg, record) runs for each whole record, and
 * *have keeps the bytes of a partial one between calls. A log that ends in a partial record is a
 * violation of m. */
bool drain_records(int fd, void *buf, size_t cap, size_t *have, size_t rec_size,
                   uint64_t deadline_ms, void (*apply)(void *arg, const void *rec), void *arg,
                   struct model *m);
/* out = a + sep + b; a path that does not fit is a set-up error (exit 2). */
void path_join(char *out, size_t size, const char *a, const char *sep, const char *b);
/* Print with --verbose only. */
void note(struct fault_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct open_opts {
    const char *fault;      /* fault spec, "" = none */
    const char *segment;    /* wal_segment_bytes, NULL = default */
    const char *ckpt_bytes; /* checkpoint_wal_bytes, NULL = default */
    bool no_compress;       /* wal_compress_bytes = 0 */
    const char *durability; /* durability, NULL = sync */
};

/* Open dir with cfg.shards shards and the options oo (NULL: defaults, durability sync). */
int db_open(struct fault_ctx *ctx, const char *dir, const struct open_opts *oo, cs_db **db);

struct workload {
    cs_db *db;               /* open database */
    int log_fd;              /* >= 0: write records here (child); < 0: apply to the model */
    uint64_t seed;           /* per iteration */
    uint32_t iteration;      /* goes into operation ids */
    uint32_t ops_per_thread; /* 0 = until stop */
    size_t filler_max;       /* value filler bytes, max */
    bool checkpoints;        /* thread 0 calls cs_checkpoint now and then */
    uint32_t fail_stop;      /* stop a thread after this many consecutive failures (0: never) */
    atomic_bool stop;        /* set to end the workload */
    /* keys of thread t on shard s: by_shard[t][s][0..count[t][s]) */
    uint32_t by_shard[THREADS_MAX][8][KEYS_PER_THREAD];
    uint32_t count[THREADS_MAX][8];
    struct fault_ctx *ctx; /* the run: configuration, model, counters */
};

/* A workload on db (exits 2 when out of memory); the caller frees it. */
struct workload *workload_new(struct fault_ctx *ctx, cs_db *db, uint64_t seed, uint32_t iteration,
                              uint32_t ops_per_thread, size_t filler_max);
/* Run the workload with cfg.threads threads until each did ops_per_thread operations (or w->stop
 * when that is 0). */
void workload_run(struct workload *w);

/* Shards that cut a torn tail at open, as a bit mask; *torn_total counts them. */
uint64_t torn_mask(struct fault_ctx *ctx, cs_db *db, unsigned *torn_total);
/* Reopen without faults, check everything, close. Returns the cs_open result. */
int reopen_and_check(struct fault_ctx *ctx, const char *dir, const struct open_opts *oo,
                     bool lenient_torn, size_t filler_max);

int remove_tree(const char *path, unsigned depth);
/* Copy folder src (files and subfolders, depth-limited) to dst, which must not exist. */
int copy_tree(const char *src, const char *dst, unsigned depth);
/* A fresh database folder for scenario sc: <db>/<name>. One we made before (it holds our
 * marker) is removed first; any other existing path is refused (exit 2). */
void scenario_dir(struct fault_ctx *ctx, enum scenario sc, char *dir, size_t size);
/* Remove the folder, unless --db was given and the scenario found violations. */
void scenario_dir_done(struct fault_ctx *ctx, const char *dir);

struct pacer {
    unsigned max;    /* iterations to run (UINT_MAX: until the deadline) */
    uint64_t end_ms; /* deadline, 0 = none */
};

struct pacer pacer_for(struct fault_ctx *ctx, enum scenario sc, unsigned share);
bool pacer_more(const struct pacer *p, unsigned done);
/* Start scenario sc: a fresh folder in dir, its pacer in *p, an empty model; returns the
 * scenario's seeded random stream. */
struct rng scenario_begin(struct fault_ctx *ctx, enum scenario sc, unsigned share, char *dir,
                          size_t size, struct pacer *p);

/* The scenario families; each adds its figures to res. */
void run_crash_like(struct fault_ctx *ctx, enum scenario sc, struct result *res, unsigned share);
void run_powercut(struct fault_ctx *ctx, struct result *res, unsigned share);
void run_inprocess(struct fault_ctx *ctx, enum scenario sc, struct result *res, unsigned share);
void run_bitflip(struct fault_ctx *ctx, struct result *res, unsigned share);
void run_txn(struct fault_ctx *ctx, struct result *res, unsigned share);
void run_server(struct fault_ctx *ctx, struct result *res, unsigned share);
/* The index of a txn fault plan by name (--plan), or -1 when there is none of that name. */
int txn_plan_index(const char *name);

#endif
