/* cstore-fault: a stress tool that proves cstore's durability promises under injected faults.
 *
 *   cstore-fault <crash|eio|torn|enospc|bitflip|slow|powercut|fileio|alloc|all> [--seed N]
 *                [--iterations N] [--duration SECONDS] [--db DIR] [--shards N] [--threads N]
 *                [--verbose]
 *
 * WORKLOAD. Several threads run mixed single-key puts, deletes and atomic batches (2..4 keys that
 * the documented router, XXH3_64(key) % shards, places on one shard; a CS_ENOTSUP answer is
 * accepted and counted) with durability=sync. Each thread owns its own keys, so the operations on
 * a key form one sequence. Every value is unique and self-describing: "v<16 hex digits id>"
 * followed by filler derived from the id, so a value read back is either exactly one that was
 * written or garbage.
 *
 * LOG AND MODEL. Each operation produces an INTENT record before the call and an ACK (returned 0)
 * or FAIL (returned an error) record after it: one fixed-size record, one write(2) (atomic on a
 * pipe). In-process scenarios feed the records to the model directly; `crash` and `torn` run the
 * workload in a forked child that writes them to a pipe, so a SIGKILL can only lose the tail of
 * the log, never garble it. The model keeps per key: the last acknowledged state (a value id, or
 * absent), the state before it, and the operations in flight (intent seen, no ack: they may or
 * may not have happened). A FAIL with -ENOSPC or CS_ENOTSUP means "not applied": it leaves the
 * in-flight set; so does CS_EIO under write_eio (nothing reached the disk, so the failed writes
 * must never come back). Any other error leaves the operation in flight.
 *
 * CHECK (after every reopen, and before closing in the in-process scenarios). Per key, the value
 * read must be the acknowledged state or one of the states in flight. A cursor scan must show
 * only model keys, with the values the gets returned (nothing that was never written appears).
 * An atomic batch in flight must have landed whole or not at all. A shard that reports a torn WAL
 * tail cut at open (cs_shard_stats.recovery_torn_bytes) may have lost its last frame: for keys
 * of that shard in `bitflip`, the state before the last acknowledgement is accepted too and
 * counted as reported damage. After a check the model adopts what it read.
 *
 * SCENARIOS (the same --seed gives the same fault schedule, kill delays and operations):
 *   crash   fork a writer child, SIGKILL it after a random delay (sometimes during recovery),
 *           reopen, check; many times on the same database. Small WAL segments and checkpoints
 *           (cs_checkpoint and checkpoint_wal_bytes) so kills also land in rotation and
 *           checkpointing.
 *   torn    like crash, but the child runs with fault torn_write=N: a prefix of the Nth WAL write
 *           reaches the file and the child kills itself.
 *   eio     in-process, fault write_eio=N, fsync_eio=N or short_write=N in turn: the failing
 *           frame's writes and every later write on that shard must return CS_EIO, reads must keep
 *           working (checked while the shard is read-only), and after reopening without the fault
 *           every acknowledged write is there.
 *   enospc  in-process, fault enospc=N (the Nth WAL segment preallocation fails; 1 MiB segments
 *           and large values make them frequent) or, every other iteration, write_enospc=N (the
 *           Nth WAL write fails): writes may fail with -ENOSPC and must then not be applied;
 *           afterwards the database must take writes again; after reopening acked writes are
 *           there.
 *   bitflip write, close, flip 1..3 random bits in random WAL segments and snap-* files (mostly
 *           within the written part), reopen: CS_ECORRUPT (then the bits are flipped back and the
 *           database must open and check out), or success with every acked write intact, except
 *           what a reported torn tail accounts for.
 *   slow    fault latency_us with a normal workload; everything must check out.
 *   powercut fork a writer child whose database journals every disk operation
 *           (powercut_log=<db>/powercut.journal) and kills itself before the Nth
 *           (powercut=N; the parent kills it after a random delay if that comes later), with
 *           durability sync, async and none in turn, checkpoints and 1 MiB segments; then play
 *           a seeded power cut (io_powercut_apply: unsynced writes kept, torn at 512-byte
 *           sectors or lost; unsynced creations, renames and removals undone), reopen without
 *           faults and check. The database must always open (CS_ECORRUPT is a violation).
 *           sync: nothing acknowledged lost. async: a key may also read as any state it was
 *           acknowledged in since the last reopen (the unsynced tail; counted in "damage").
 *           none: every key must read as the last clean close left it.
 *   fileio  in-process, fault file_write_eio, file_sync_eio, rename_eio, dirsync_eio,
 *           create_eio or unlink_eio in turn, with frequent checkpoints and WAL rotations:
 *           writes return 0 or CS_EIO; a shard that turned read-only refuses writes with
 *           CS_EIO; reads keep working; after reopening without the fault every acknowledged
 *           write is there. "faults" counts iterations where a shard turned read-only or a
 *           cs_checkpoint failed; an open refused by the fault counts too (the database must
 *           then open without it).
 *   alloc   in-process, alloc_fail=P% on the shard threads (even iterations) or write_eio=N
 *           with alloc_fail at 50..95% (odd ones: taking the failed frame back runs out of
 *           memory and the shard is fenced): writes return 0, -ENOMEM (left in flight) or
 *           CS_EIO; gets may fail with CS_EIO on a fenced shard (counted in "damage"); no
 *           crash; after reopening without faults every acknowledged write is there.
 *   all     each of the above in turn.
 * It prints one line per scenario (iterations, acknowledged operations, keys checked, damage
 * reports, violations) and exits 1 on any violation, 2 on a usage or set-up error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "cstore.h"
#include "io/powercut.h"

#define THREADS_MAX 16u      /* workload threads */
#define KEYS_PER_THREAD 128u /* keys each thread owns */
#define KEYS_MAX (THREADS_MAX * KEYS_PER_THREAD)
#define BATCH_KEYS_MAX 4u         /* keys in one atomic batch */
#define MAYBE_MAX 24u             /* operations in flight remembered per key */
#define PENDING_BATCHES_MAX 4096u /* batches in flight remembered by the model */
#define VIOLATIONS_SHOWN_MAX 20u  /* violations printed in full per scenario */
#define PATH_BYTES_MAX 1024u
#define FLIPS_MAX 3u                        /* bits flipped per bitflip iteration */
#define FILES_MAX 256u                      /* data files considered by bitflip */
#define RECORDS_SCAN_MAX (KEYS_MAX + 1000u) /* cursor steps per check */
#define CHILD_WAIT_MS_MAX 20000u /* torn: kill a child whose fault never fired after this long */
#define ROUNDS_MAX 8u /* eio, enospc: rounds of work per iteration waiting for the fault */
#define POWERCUT_SETTLE_US 100000u /* powercut: wait after the child's death before the cut */
#define HIST_MAX 64u /* acknowledged states remembered per key since the last reopen (async) */
#define COLL "fault"

/* ---- small helpers ---- */

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A SplitMix64 stream. */
struct rng {
    uint64_t s; /* state */
};

static uint64_t rng_next(struct rng *r)
{
    r->s += 0x9e3779b97f4a7c15ull;
    return mix64(r->s);
}

/* Uniform in [0, n), n > 0. */
static uint64_t rng_below(struct rng *r, uint64_t n)
{
    return rng_next(r) % n;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* out = a + sep + b; a path that does not fit is a set-up error. */
static void path_join(char *out, size_t size, const char *a, const char *sep, const char *b)
{
    int n = snprintf(out, size, "%s%s%s", a, sep, b);
    if (n < 0 || (size_t)n >= size) {
        fprintf(stderr, "cstore-fault: path too long: %s%s%s\n", a, sep, b);
        exit(2);
    }
}

/* ---- configuration and results ---- */

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
    SC_COUNT
};

static const char *const scenario_names[SC_COUNT] = {
    "crash", "eio", "torn", "enospc", "bitflip", "slow", "powercut", "fileio", "alloc"};

/* Iterations run per scenario when neither --iterations nor --duration is given. */
static const unsigned scenario_default_iterations[SC_COUNT] = {20, 6, 10, 4, 20, 3, 30, 6, 6};

/* What a check after a reopen accepts for a key, besides its acknowledged state and the states
 * of operations in flight. */
enum check_rule {
    RULE_EXACT,   /* nothing else (sync mode: nothing acknowledged may be lost) */
    RULE_HISTORY, /* any acknowledged state since the last reopen (async: the unsynced tail) */
    RULE_BASE,    /* only the state at the last reopen (durability=none: nothing was written) */
};

struct config {
    uint64_t seed;           /* --seed */
    unsigned iterations;     /* --iterations (0: default or by duration) */
    unsigned duration_s;     /* --duration (0: none) */
    char db[PATH_BYTES_MAX]; /* --db: parent folder of the scenario databases */
    bool db_given;           /* --db was given (else a temporary folder, removed at the end) */
    unsigned shards;         /* --shards */
    unsigned threads;        /* --threads */
    bool verbose;            /* --verbose: one line per iteration */
};

struct result {
    unsigned iterations;   /* iterations run */
    uint64_t acked_ops;    /* acknowledged operations (batch operations count one per key) */
    uint64_t keys_checked; /* per-key verifications made */
    uint64_t failed_ops;   /* operations that returned an error */
    uint64_t damage;       /* damage reported: CS_ECORRUPT at open, torn tails cut */
    uint64_t faults;       /* iterations in which the injected fault visibly fired */
    uint64_t violations;   /* broken promises */
};

static struct config cfg;

/* ---- values and keys ---- */

#define VAL_ID_HEX 16u
#define VAL_HEAD_BYTES (1u + VAL_ID_HEX)

static size_t value_len(uint64_t id, size_t filler_max)
{
    return VAL_HEAD_BYTES + (size_t)(mix64(id ^ 0x5151) % (filler_max + 1));
}

/* Write value id into buf (room for value_len bytes); returns its length. */
static size_t value_make(uint64_t id, size_t filler_max, char *buf)
{
    size_t len = value_len(id, filler_max);
    char head[VAL_HEAD_BYTES + 1];
    snprintf(head, sizeof(head), "v%016" PRIx64, id);
    memcpy(buf, head, VAL_HEAD_BYTES);
    uint64_t h = mix64(id);
    for (size_t i = VAL_HEAD_BYTES; i < len; i++) {
        if ((i & 7u) == 0)
            h = mix64(h + i);
        buf[i] = (char)('a' + (h >> ((i & 7u) * 8)) % 26u);
    }
    return len;
}

/* The id of a well-formed value, or 0 when the bytes are not exactly a value we write. */
static uint64_t value_parse(const void *val, size_t vlen, size_t filler_max, char *scratch)
{
    const char *v = val;
    if (vlen < VAL_HEAD_BYTES || v[0] != 'v')
        return 0;
    uint64_t id = 0;
    for (unsigned i = 1; i < VAL_HEAD_BYTES; i++) {
        char c = v[i];
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                            : 16u;
        if (d == 16u)
            return 0;
        id = id << 4 | d;
    }
    if (id == 0 || value_make(id, filler_max, scratch) != vlen || memcmp(scratch, v, vlen) != 0)
        return 0;
    return id;
}

static size_t key_make(uint32_t index, char *buf, size_t size)
{
    return (size_t)snprintf(buf, size, "key-%06u", index);
}

/* The model key index of a key read back, or UINT32_MAX when it is not one of ours. */
static uint32_t key_parse(const void *key, size_t klen, uint32_t nkeys)
{
    char buf[32];
    if (klen != 10 || memcmp(key, "key-", 4) != 0)
        return UINT32_MAX;
    uint32_t idx = 0;
    for (size_t i = 4; i < klen; i++) {
        char c = ((const char *)key)[i];
        if (c < '0' || c > '9')
            return UINT32_MAX;
        idx = idx * 10u + (uint32_t)(c - '0');
    }
    key_make(idx, buf, sizeof(buf));
    return idx < nkeys && memcmp(buf, key, klen) == 0 ? idx : UINT32_MAX;
}

/* The documented router (engine/db.c): a key lives on shard XXH3_64(key) % shards. */
static unsigned key_shard(uint32_t index)
{
    char buf[32];
    size_t len = key_make(index, buf, sizeof(buf));
    return (unsigned)(XXH3_64bits(buf, len) % cfg.shards);
}

/* ---- the operation log ---- */

enum rec_kind { REC_INTENT = 1, REC_ACK, REC_FAIL };
#define REC_MAGIC 0x43534654u /* "CSFT" */

/* One log record: what an operation does to which keys. val 0 = delete. Fits PIPE_BUF. */
struct op_rec {
    uint32_t magic;               /* REC_MAGIC */
    uint8_t kind;                 /* enum rec_kind */
    uint8_t count;                /* keys touched: 1, or 2..BATCH_KEYS_MAX for a batch */
    uint16_t thread;              /* writing thread */
    int32_t rc;                   /* REC_FAIL: the error returned */
    uint32_t pad;                 /* zero */
    uint64_t op_id;               /* unique operation id */
    uint32_t key[BATCH_KEYS_MAX]; /* key indexes */
    uint64_t val[BATCH_KEYS_MAX]; /* value ids put, 0 for a delete */
};
_Static_assert(sizeof(struct op_rec) <= 512, "a log record must be written atomically");

/* ---- the model ---- */

struct key_state {
    uint64_t acked;                /* value id of the last acknowledged state, 0 = absent */
    uint64_t prev;                 /* the acknowledged state before it */
    uint64_t maybe_val[MAYBE_MAX]; /* states that operations in flight would leave */
    uint64_t maybe_op[MAYBE_MAX];  /* their operation ids */
    uint32_t maybe_count;          /* entries in use */
    bool overflow;                 /* more in flight than remembered: the key is not checked */
    uint64_t fail_op;              /* the last operation on the key that returned an error */
    int fail_rc;                   /* and its error */
    uint64_t base;                 /* the state read at the last reopen (adopted) */
    uint64_t hist[HIST_MAX];       /* acknowledged states since then (newest last) */
    uint32_t nhist;                /* entries of hist[] in use */
    bool hist_overflow;            /* more than HIST_MAX: RULE_HISTORY does not judge the key */
};

struct model {
    pthread_mutex_t lock; /* guards everything below */
    uint32_t nkeys;       /* keys in use: threads * KEYS_PER_THREAD */
    struct key_state keys[KEYS_MAX];
    struct op_rec batches[PENDING_BATCHES_MAX]; /* batches in flight */
    uint32_t batch_count;                       /* entries of batches[] in use */
    uint64_t acked_ops;                         /* acknowledged key operations */
    uint64_t failed_ops;                        /* operations that returned an error */
    uint64_t eio_fails;                         /* of which CS_EIO */
    uint64_t enospc_fails;                      /* of which -ENOSPC */
    uint64_t other_fails;                       /* of which anything else, CS_ENOTSUP excepted */
    int last_other_rc;                          /* the last "anything else" */
    bool eio_not_applied;  /* CS_EIO means "not applied": no failed frame reached the disk */
    bool enomem_ok;        /* -ENOMEM is an expected failure (alloc): left in flight */
    enum check_rule rule;  /* what check_db accepts after a reopen */
    bool reads_may_fail;   /* gets may fail with CS_EIO or -ENOMEM (a fenced shard: alloc) */
    uint64_t lost_acked;   /* keys read back older than acknowledged, accepted by the rule */
    uint64_t failed_reads; /* gets refused under reads_may_fail (a fenced shard) */
};

/* cs_checkpoint calls of the workload that failed (fileio: a checkpoint fault fired). */
static _Atomic uint64_t ckpt_failures;

static struct model model;

static void model_reset(uint32_t nkeys)
{
    memset(model.keys, 0, sizeof(model.keys));
    model.nkeys = nkeys;
    model.batch_count = 0;
    model.acked_ops = model.failed_ops = 0;
    model.eio_fails = model.enospc_fails = model.other_fails = 0;
    model.last_other_rc = 0;
    model.enomem_ok = false;
    model.rule = RULE_EXACT;
    model.reads_may_fail = false;
    model.lost_acked = 0;
}

static void maybe_remove(struct key_state *k, uint64_t op_id)
{
    for (uint32_t i = 0; i < k->maybe_count; i++) {
        if (k->maybe_op[i] == op_id) {
            memmove(&k->maybe_val[i], &k->maybe_val[i + 1],
                    (k->maybe_count - i - 1) * sizeof(uint64_t));
            memmove(&k->maybe_op[i], &k->maybe_op[i + 1],
                    (k->maybe_count - i - 1) * sizeof(uint64_t));
            k->maybe_count--;
            return;
        }
    }
}

static void batch_forget(uint64_t op_id)
{
    for (uint32_t i = 0; i < model.batch_count; i++) {
        if (model.batches[i].op_id == op_id) {
            model.batches[i] = model.batches[--model.batch_count];
            return;
        }
    }
}

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Apply one log record. Caller holds model.lock. */
static void model_apply_locked(const struct op_rec *r)
{
    if (r->magic != REC_MAGIC || r->count == 0 || r->count > BATCH_KEYS_MAX)
        return;
    for (unsigned i = 0; i < r->count; i++)
        if (r->key[i] >= model.nkeys)
            return;
    switch (r->kind) {
    case REC_INTENT:
        for (unsigned i = 0; i < r->count; i++) {
            struct key_state *k = &model.keys[r->key[i]];
            if (k->maybe_count == MAYBE_MAX) {
                k->overflow = true;
                continue;
            }
            k->maybe_val[k->maybe_count] = r->val[i];
            k->maybe_op[k->maybe_count] = r->op_id;
            k->maybe_count++;
        }
        if (r->count > 1 && model.batch_count < PENDING_BATCHES_MAX)
            model.batches[model.batch_count++] = *r;
        break;
    case REC_ACK:
        for (unsigned i = 0; i < r->count; i++) {
            struct key_state *k = &model.keys[r->key[i]];
            if (r->rc == CS_ENOTFOUND && k->acked != 0 && k->maybe_count <= 1 && !k->overflow)
                violation("delete of key-%06u found nothing; acknowledged value %016" PRIx64
                          " lost",
                          r->key[i], k->acked);
            k->prev = k->acked;
            k->acked = r->val[i];
            if (k->nhist < HIST_MAX)
                k->hist[k->nhist++] = r->val[i];
            else
                k->hist_overflow = true;
            k->maybe_count = 0; /* everything earlier on this key is superseded */
            k->overflow = false;
        }
        model.acked_ops += r->count;
        if (r->count > 1)
            batch_forget(r->op_id);
        break;
    case REC_FAIL:
        model.failed_ops++;
        for (unsigned i = 0; i < r->count; i++) {
            model.keys[r->key[i]].fail_op = r->op_id;
            model.keys[r->key[i]].fail_rc = r->rc;
        }
        if (r->rc == CS_EIO)
            model.eio_fails++;
        else if (r->rc == -ENOSPC)
            model.enospc_fails++;
        else if (r->rc != CS_ENOTSUP && !(r->rc == -ENOMEM && model.enomem_ok)) {
            model.other_fails++;
            model.last_other_rc = r->rc;
        }
        if (r->rc == -ENOSPC || r->rc == CS_ENOTSUP || (r->rc == CS_EIO && model.eio_not_applied)) {
            /* Refused whole: not applied, now or later. */
            for (unsigned i = 0; i < r->count; i++)
                maybe_remove(&model.keys[r->key[i]], r->op_id);
            if (r->count > 1)
                batch_forget(r->op_id);
        }
        break;
    }
}

static void model_apply(const struct op_rec *r)
{
    pthread_mutex_lock(&model.lock);
    model_apply_locked(r);
    pthread_mutex_unlock(&model.lock);
}

/* ---- violations ---- */

static struct result *cur;     /* result of the scenario running */
static const char *stage = ""; /* what the scenario is doing, for violation messages */

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...)
{
    cur->violations++;
    if (cur->violations > VIOLATIONS_SHOWN_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "VIOLATION (%s): ", stage);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    if (!cfg.verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

/* ---- opening ---- */

struct open_opts {
    const char *fault;      /* fault spec, "" = none */
    const char *segment;    /* wal_segment_bytes, NULL = default */
    const char *ckpt_bytes; /* checkpoint_wal_bytes, NULL = default */
    bool no_compress;       /* wal_compress_bytes = 0 */
    const char *durability; /* durability, NULL = sync */
};

static int db_open(const char *dir, const struct open_opts *oo, cs_db **db)
{
    cs_options *o = cs_options_new();
    if (!o)
        return -ENOMEM;
    char shards[16];
    snprintf(shards, sizeof(shards), "%u", cfg.shards);
    int rc = cs_options_set(o, "shards", shards);
    if (!rc)
        rc = cs_options_set(o, "durability", oo && oo->durability ? oo->durability : "sync");
    if (!rc && oo && oo->fault)
        rc = cs_options_set(o, "fault", oo->fault);
    if (!rc && oo && oo->segment)
        rc = cs_options_set(o, "wal_segment_bytes", oo->segment);
    if (!rc && oo && oo->ckpt_bytes)
        rc = cs_options_set(o, "checkpoint_wal_bytes", oo->ckpt_bytes);
    if (!rc && oo && oo->no_compress)
        rc = cs_options_set(o, "wal_compress_bytes", "0");
    if (!rc)
        rc = cs_open(dir, o, db);
    cs_options_free(o);
    return rc;
}

/* ---- the workload ---- */

enum { OP_PUT, OP_DEL, OP_BATCH };

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
};

struct worker {
    struct workload *w; /* shared */
    unsigned thread;    /* index */
};

static void log_rec(struct workload *w, const struct op_rec *r)
{
    if (w->log_fd < 0) {
        model_apply(r);
        return;
    }
    for (unsigned tries = 0; tries < 1000; tries++) {
        ssize_t n = write(w->log_fd, r, sizeof(*r));
        if (n == (ssize_t)sizeof(*r))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        _exit(5); /* the parent is gone or the pipe broke: nothing left to prove */
    }
    _exit(5);
}

static void workload_index(struct workload *w)
{
    memset(w->count, 0, sizeof(w->count));
    for (unsigned t = 0; t < cfg.threads; t++) {
        for (uint32_t i = 0; i < KEYS_PER_THREAD; i++) {
            uint32_t key = t * KEYS_PER_THREAD + i;
            unsigned s = key_shard(key) % 8u;
            w->by_shard[t][s][w->count[t][s]++] = key;
        }
    }
}

/* Build the next operation of a thread into r (kind REC_INTENT). */
static void op_build(struct workload *w, unsigned t, struct rng *rng, uint32_t seq,
                     struct op_rec *r)
{
    memset(r, 0, sizeof(*r));
    r->magic = REC_MAGIC;
    r->kind = REC_INTENT;
    r->thread = (uint16_t)t;
    r->op_id = (uint64_t)w->iteration << 32 | (uint64_t)t << 24 | (seq & 0xffffffu);
    uint64_t dice = rng_below(rng, 100);
    int op = dice < 50 ? OP_PUT : dice < 70 ? OP_DEL : OP_BATCH;
    uint32_t first = t * KEYS_PER_THREAD + (uint32_t)rng_below(rng, KEYS_PER_THREAD);
    r->count = 1;
    r->key[0] = first;
    r->val[0] = op == OP_DEL ? 0 : r->op_id << 3 | 1u;
    if (op != OP_BATCH)
        return;
    unsigned s = key_shard(first) % 8u;
    uint32_t avail = w->count[t][s];
    unsigned want = 2 + (unsigned)rng_below(rng, BATCH_KEYS_MAX - 1);
    for (unsigned tries = 0; tries < 16 && r->count < want && avail > 1; tries++) {
        uint32_t k = w->by_shard[t][s][rng_below(rng, avail)];
        bool dup = false;
        for (unsigned i = 0; i < r->count; i++)
            dup |= r->key[i] == k;
        if (dup)
            continue;
        r->key[r->count] = k;
        r->val[r->count] = rng_below(rng, 4) == 0 ? 0 : r->op_id << 3 | (r->count + 1u);
        r->count++;
    }
}

static int op_run(struct workload *w, const struct op_rec *r, char *vbuf)
{
    char key[32];
    if (r->count == 1) {
        size_t klen = key_make(r->key[0], key, sizeof(key));
        if (r->val[0] == 0)
            return cs_del(w->db, COLL, key, klen);
        size_t vlen = value_make(r->val[0], w->filler_max, vbuf);
        return cs_put(w->db, COLL, key, klen, vbuf, vlen);
    }
    cs_batch *b = cs_batch_new();
    if (!b)
        return -ENOMEM;
    int rc = 0;
    for (unsigned i = 0; i < r->count && rc == 0; i++) {
        size_t klen = key_make(r->key[i], key, sizeof(key));
        if (r->val[i] == 0) {
            rc = cs_batch_del(b, COLL, key, klen);
        } else {
            size_t vlen = value_make(r->val[i], w->filler_max, vbuf);
            rc = cs_batch_put(b, COLL, key, klen, vbuf, vlen);
        }
    }
    if (rc == 0)
        rc = cs_write(w->db, b);
    cs_batch_free(b);
    return rc;
}

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    struct workload *w = wk->w;
    struct rng rng = {mix64(w->seed ^ (0x1000u + wk->thread))};
    char *vbuf = malloc(VAL_HEAD_BYTES + w->filler_max + 1);
    if (!vbuf)
        return NULL;
    uint32_t fails_in_row = 0;
    for (uint32_t seq = 1; seq < 0xffffffu; seq++) {
        if (atomic_load(&w->stop) || (w->ops_per_thread && seq > w->ops_per_thread))
            break;
        if (w->fail_stop && fails_in_row >= w->fail_stop)
            break;
        struct op_rec r;
        op_build(w, wk->thread, &rng, seq, &r);
        log_rec(w, &r);
        int rc = op_run(w, &r, vbuf);
        /* A single delete of an absent key answers CS_ENOTFOUND: acknowledged, key absent. */
        bool acked = rc == 0 || (rc == CS_ENOTFOUND && r.count == 1 && r.val[0] == 0);
        r.kind = acked ? REC_ACK : REC_FAIL;
        r.rc = rc;
        log_rec(w, &r);
        fails_in_row = acked || rc == CS_ENOTSUP ? 0 : fails_in_row + 1;
        if (w->checkpoints && wk->thread == 0 && rng_below(&rng, 200) == 0)
            if (cs_checkpoint(w->db) != 0) /* errors that matter show up in the writes */
                atomic_fetch_add(&ckpt_failures, 1);
    }
    free(vbuf);
    return NULL;
}

/* Run the workload with cfg.threads threads until each did ops_per_thread operations (or w->stop
 * when that is 0). */
static void workload_run(struct workload *w)
{
    pthread_t tid[THREADS_MAX];
    struct worker wk[THREADS_MAX];
    unsigned started = 0;
    for (unsigned t = 0; t < cfg.threads; t++) {
        wk[t].w = w;
        wk[t].thread = t;
        if (pthread_create(&tid[t], NULL, worker_main, &wk[t]) != 0)
            break;
        started++;
    }
    for (unsigned t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
}

static struct workload *workload_new(cs_db *db, uint64_t seed, uint32_t iteration,
                                     uint32_t ops_per_thread, size_t filler_max)
{
    struct workload *w = calloc(1, sizeof(*w));
    if (!w) {
        fprintf(stderr, "cstore-fault: out of memory\n");
        exit(2);
    }
    w->db = db;
    w->log_fd = -1;
    w->seed = seed;
    w->iteration = iteration;
    w->ops_per_thread = ops_per_thread;
    w->filler_max = filler_max;
    atomic_init(&w->stop, false);
    workload_index(w);
    return w;
}

/* ---- the check ---- */

static bool in_maybe(const struct key_state *k, uint64_t v)
{
    for (uint32_t i = 0; i < k->maybe_count; i++)
        if (k->maybe_val[i] == v)
            return true;
    return false;
}

static bool in_hist(const struct key_state *k, uint64_t v)
{
    for (uint32_t i = 0; i < k->nhist; i++)
        if (k->hist[i] == v)
            return true;
    return false;
}

/* Atomic batches in flight: all of their keys landed, or none. got[] = states read. */
static void check_batches(const uint64_t *got)
{
    for (uint32_t b = 0; b < model.batch_count; b++) {
        const struct op_rec *r = &model.batches[b];
        unsigned landed = 0, missing = 0;
        bool latest = true;
        for (unsigned i = 0; i < r->count; i++) {
            const struct key_state *k = &model.keys[r->key[i]];
            /* Only judge a batch that is the latest operation on every key it touches. */
            if (k->maybe_count == 0 || k->maybe_op[k->maybe_count - 1] != r->op_id || k->overflow)
                latest = false;
        }
        if (!latest)
            continue;
        for (unsigned i = 0; i < r->count; i++) {
            uint64_t g = got[r->key[i]];
            if (g != r->val[i])
                missing++;
            else if (r->val[i] != 0)
                landed++;
        }
        if (landed && missing)
            violation("batch %016" PRIx64 " landed in part: %u of its puts there, %u keys not",
                      r->op_id, landed, missing);
    }
}

/* Check the open database against the model; torn_shards: bit s = shard s reported a torn tail
 * (its last acknowledged frame may be gone: accepted only when lenient_torn). With adopt (after
 * a reopen: what is on disk is now settled), what was read becomes the acknowledged state and
 * nothing is in flight any more; without (a live database whose failed writes may still be on
 * disk), the model is left as it was. */
static void check_db(cs_db *db, uint64_t torn_shards, bool lenient_torn, bool adopt,
                     size_t filler_max)
{
    static uint64_t got[KEYS_MAX];
    char *scratch = malloc(VAL_HEAD_BYTES + filler_max + 1);
    if (!scratch)
        exit(2);
    pthread_mutex_lock(&model.lock);
    for (uint32_t i = 0; i < model.nkeys; i++) {
        char key[32];
        size_t klen = key_make(i, key, sizeof(key));
        void *val = NULL;
        size_t vlen = 0;
        int rc = cs_get(db, COLL, key, klen, &val, &vlen);
        uint64_t g = 0;
        if (rc == 0) {
            g = value_parse(val, vlen, filler_max, scratch);
            if (g == 0)
                violation("%s holds a value that was never written (%zu bytes)", key, vlen);
            cs_free(val);
        } else if (rc != CS_ENOTFOUND) {
            if (!model.reads_may_fail || (rc != CS_EIO && rc != -ENOMEM))
                violation("get %s failed: %s", key, cs_strerror(rc));
            else
                model.failed_reads++;
            g = model.keys[i].acked; /* unknown; keep the model */
        }
        got[i] = g;
        struct key_state *k = &model.keys[i];
        cur->keys_checked++;
        if (model.rule == RULE_BASE) {
            if (g != k->base)
                violation("%s (shard %u): read %016" PRIx64 ", but durability=none must leave "
                          "%016" PRIx64 " (the state the last clean close left)",
                          key, key_shard(i), g, k->base);
            continue;
        }
        if (k->overflow || g == k->acked || in_maybe(k, g))
            continue;
        if (model.rule == RULE_HISTORY && (k->hist_overflow || g == k->base || in_hist(k, g))) {
            model.lost_acked++; /* an acknowledged write of the unsynced tail was lost */
            continue;
        }
        if (lenient_torn && (torn_shards >> (key_shard(i) % 64u) & 1u) && g == k->prev) {
            cur->damage++; /* lost with a reported torn tail */
            continue;
        }
        violation("%s (shard %u): read %016" PRIx64 ", last acknowledged %016" PRIx64
                  " (%u in flight; last failed operation %016" PRIx64 ": %s)",
                  key, key_shard(i), g, k->acked, k->maybe_count, k->fail_op,
                  k->fail_rc ? cs_strerror(k->fail_rc) : "none");
    }
    check_batches(got);
    /* A scan sees exactly what the gets saw, and nothing else. */
    cs_cursor *c = NULL;
    int rc = cs_cursor_open(db, COLL, &c);
    bool refused = model.reads_may_fail && (rc == CS_EIO || rc == -ENOMEM);
    if (refused) {
        model.failed_reads++; /* a fenced shard: its live trees cannot be read */
    } else if (rc) {
        violation("cursor open failed: %s", cs_strerror(rc));
    } else {
        uint32_t seen = 0;
        rc = cs_cursor_first(c);
        for (uint32_t steps = 0; rc == 0 && steps < RECORDS_SCAN_MAX; steps++) {
            const void *key, *val;
            size_t klen, vlen;
            if (cs_cursor_key(c, &key, &klen) || cs_cursor_value(c, &val, &vlen)) {
                violation("cursor key/value failed on a record");
                break;
            }
            uint32_t idx = key_parse(key, klen, model.nkeys);
            if (idx == UINT32_MAX) {
                violation("scan shows a key that was never written (%zu bytes)", klen);
            } else if (value_parse(val, vlen, filler_max, scratch) != got[idx]) {
                violation("scan and get disagree on key-%06u", idx);
            }
            seen++;
            rc = cs_cursor_next(c);
        }
        if (rc != CS_ENOTFOUND && rc != 0 && model.reads_may_fail &&
            (rc == CS_EIO || rc == -ENOMEM)) {
            model.failed_reads++;
            cs_cursor_close(c);
            goto scanned;
        }
        if (rc != CS_ENOTFOUND && rc != 0)
            violation("scan failed: %s", cs_strerror(rc));
        uint32_t present = 0;
        for (uint32_t i = 0; i < model.nkeys; i++)
            present += got[i] != 0;
        if (present != seen)
            violation("scan saw %u records, gets found %u", seen, present);
        cs_cursor_close(c);
    }
scanned:
    for (uint32_t i = 0; adopt && i < model.nkeys; i++) {
        struct key_state *k = &model.keys[i];
        if (got[i] != k->acked) {
            k->prev = k->acked;
            k->acked = got[i];
        }
        k->maybe_count = 0;
        k->overflow = false;
        k->base = got[i];
        k->nhist = 0;
        k->hist_overflow = false;
    }
    if (adopt)
        model.batch_count = 0;
    pthread_mutex_unlock(&model.lock);
    free(scratch);
}

/* Shards that cut a torn tail at open, as a bit mask; *torn_total counts them. */
static uint64_t torn_mask(cs_db *db, unsigned *torn_total)
{
    uint64_t mask = 0;
    *torn_total = 0;
    for (unsigned s = 0; s < cfg.shards; s++) {
        struct cs_shard_stats st;
        if (cs_stats(db, s, &st) == 0 && st.recovery_torn_bytes > 0) {
            mask |= 1ull << (s % 64u);
            (*torn_total)++;
        }
    }
    return mask;
}

/* Reopen without faults, check everything, close. Returns the cs_open result. */
static int reopen_and_check(const char *dir, const struct open_opts *oo, bool lenient_torn,
                            size_t filler_max)
{
    cs_db *db = NULL;
    struct open_opts plain = oo ? *oo : (struct open_opts){0};
    plain.fault = "";
    int rc = db_open(dir, &plain, &db);
    if (rc)
        return rc;
    stage = "check after reopen";
    unsigned torn;
    uint64_t mask = torn_mask(db, &torn);
    cur->damage += torn;
    check_db(db, mask, lenient_torn, true, filler_max);
    uint64_t segments = 0, recovered = 0, ckpt_lsn_min = UINT64_MAX, recovery_us = 0;
    for (unsigned s = 0; s < cfg.shards; s++) {
        struct cs_shard_stats st;
        if (cs_stats(db, s, &st) != 0)
            continue;
        segments += st.wal_segments;
        recovered += st.recovered_records;
        recovery_us += st.recovery_us;
        ckpt_lsn_min = st.checkpoint_lsn < ckpt_lsn_min ? st.checkpoint_lsn : ckpt_lsn_min;
    }
    note("  reopened: %" PRIu64 " WAL segments, %" PRIu64 " records replayed in %" PRIu64
         " us, oldest shard checkpoint LSN %" PRIu64 ", %u torn tails\n",
         segments, recovered, recovery_us, ckpt_lsn_min, torn);
    rc = cs_close(db);
    if (rc)
        violation("close after a clean check failed: %s", cs_strerror(rc));
    return 0;
}

/* ---- folders ---- */

static int remove_tree(const char *path, unsigned depth)
{
    if (depth > 4)
        return -1;
    DIR *d = opendir(path);
    if (!d)
        return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char sub[PATH_BYTES_MAX];
        path_join(sub, sizeof(sub), path, "/", e->d_name);
        if (e->d_type == DT_DIR)
            rc |= remove_tree(sub, depth + 1);
        else
            rc |= unlink(sub);
    }
    closedir(d);
    return rc | rmdir(path);
}

/* Copy folder src (files and subfolders, depth-limited) to dst, which must not exist. */
static int copy_tree(const char *src, const char *dst, unsigned depth)
{
    static char buf[1u << 16];
    if (depth > 4 || mkdir(dst, 0777) != 0)
        return -1;
    DIR *d = opendir(src);
    if (!d)
        return -1;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char from[PATH_BYTES_MAX], to[PATH_BYTES_MAX];
        path_join(from, sizeof(from), src, "/", e->d_name);
        path_join(to, sizeof(to), dst, "/", e->d_name);
        if (e->d_type == DT_DIR) {
            rc = copy_tree(from, to, depth + 1);
            continue;
        }
        int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0666);
        rc = in < 0 || out < 0 ? -1 : 0;
        for (unsigned chunks = 0; rc == 0 && chunks < (1u << 20); chunks++) {
            ssize_t n = read(in, buf, sizeof(buf));
            if (n <= 0) {
                rc = n < 0 ? -1 : 0;
                break;
            }
            rc = write(out, buf, (size_t)n) == n ? 0 : -1;
        }
        if (in >= 0)
            close(in);
        if (out >= 0 && close(out) != 0)
            rc = -1;
    }
    closedir(d);
    return rc;
}

/* A fresh database folder for scenario sc: <db>/<name>. One we made before (it holds our
 * marker) is removed first; any other existing path is refused. */
static void scenario_dir(enum scenario sc, char *dir, size_t size)
{
    path_join(dir, size, cfg.db, "/", scenario_names[sc]);
    char marker[PATH_BYTES_MAX];
    path_join(marker, sizeof(marker), dir, ".", "cstore-fault");
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (stat(marker, &st) != 0) {
            fprintf(stderr, "cstore-fault: %s exists and was not made by cstore-fault\n", dir);
            exit(2);
        }
        if (remove_tree(dir, 0)) {
            fprintf(stderr, "cstore-fault: cannot remove %s\n", dir);
            exit(2);
        }
    }
    FILE *f = fopen(marker, "w");
    if (!f) {
        fprintf(stderr, "cstore-fault: cannot write %s: %s\n", marker, strerror(errno));
        exit(2);
    }
    fclose(f);
}

static void scenario_dir_done(const char *dir)
{
    char marker[PATH_BYTES_MAX];
    path_join(marker, sizeof(marker), dir, ".", "cstore-fault");
    if (cur->violations == 0 || !cfg.db_given) {
        remove_tree(dir, 0);
        unlink(marker);
    } else {
        fprintf(stderr, "cstore-fault: database kept for inspection: %s\n", dir);
    }
}

/* ---- iteration control ---- */

struct pacer {
    unsigned max;    /* iterations to run (UINT_MAX: until the deadline) */
    uint64_t end_ms; /* deadline, 0 = none */
};

static struct pacer pacer_for(enum scenario sc, unsigned share)
{
    struct pacer p = {.max = cfg.iterations, .end_ms = 0};
    if (cfg.duration_s) {
        p.end_ms = now_ms() + (uint64_t)cfg.duration_s * 1000u / share;
        if (!cfg.iterations)
            p.max = 1000000u;
    } else if (!p.max) {
        p.max = scenario_default_iterations[sc];
    }
    return p;
}

static bool pacer_more(const struct pacer *p, unsigned done)
{
    if (done >= p->max)
        return false;
    return p->end_ms == 0 || done == 0 || now_ms() < p->end_ms;
}

/* ---- crash and torn: a child writes, the parent keeps the log ---- */

/* Read log records from fd until EOF or until deadline_ms (0: EOF only). Returns true at EOF. */
static bool drain_log(int fd, uint64_t deadline_ms)
{
    static struct op_rec buf[64];
    static size_t have; /* bytes of buf[] holding a partial record */
    for (;;) {
        int timeout = -1;
        if (deadline_ms) {
            uint64_t now = now_ms();
            if (now >= deadline_ms)
                return false;
            timeout = (int)(deadline_ms - now);
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int n = poll(&pfd, 1, timeout);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        ssize_t got = read(fd, (char *)buf + have, sizeof(buf) - have);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            if (have)
                violation("log ends in a partial record (%zu bytes)", have);
            have = 0;
            return true;
        }
        have += (size_t)got;
        size_t whole = have / sizeof(struct op_rec);
        for (size_t i = 0; i < whole; i++)
            model_apply(&buf[i]);
        have -= whole * sizeof(struct op_rec);
        memmove(buf, (char *)buf + whole * sizeof(struct op_rec), have);
    }
}

struct child_run {
    const char *dir;        /* database */
    struct open_opts oo;    /* options of the child's open */
    uint64_t seed;          /* workload seed */
    uint32_t iteration;     /* operation ids */
    size_t filler_max;      /* values */
    uint64_t kill_after_ms; /* SIGKILL after this long (0: wait for the child to die) */
    bool checkpoints;       /* the workload calls cs_checkpoint now and then */
};

/* The child: open, run the workload until killed. Exit 3: cs_open failed (reported on stderr). */
static void child_main(const struct child_run *cr, int fd)
{
    signal(SIGPIPE, SIG_IGN);
    cs_db *db = NULL;
    int rc = db_open(cr->dir, &cr->oo, &db);
    if (rc) {
        fprintf(stderr, "cstore-fault: child: cs_open: %s: %s\n", cs_strerror(rc), cs_last_error());
        _exit(3);
    }
    struct workload *w = workload_new(db, cr->seed, cr->iteration, 0, cr->filler_max);
    w->log_fd = fd;
    w->checkpoints = cr->checkpoints;
    stage = "workload";
    workload_run(w);
    _exit(4);
}

/* Fork a child writer, kill it (or let the fault kill it), collect its log. Returns the child's
 * wait status, or -1 when the fork failed; *killed tells whether this process sent the SIGKILL. */
static int child_run(const struct child_run *cr, bool *killed)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        child_main(cr, fds[1]);
    }
    close(fds[1]);
    uint64_t start = now_ms();
    uint64_t deadline = start + (cr->kill_after_ms ? cr->kill_after_ms : CHILD_WAIT_MS_MAX);
    bool eof = drain_log(fds[0], deadline);
    *killed = !eof;
    if (!eof)
        kill(pid, SIGKILL);
    if (!eof)
        drain_log(fds[0], 0);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

static void run_crash_like(enum scenario sc, struct result *res, unsigned share)
{
    char dir[PATH_BYTES_MAX];
    scenario_dir(sc, dir, sizeof(dir));
    struct rng rng = {mix64(cfg.seed ^ (0xc0de0000u + (unsigned)sc))};
    struct pacer p = pacer_for(sc, share);
    model_reset(cfg.threads * KEYS_PER_THREAD);
    const size_t filler_max = 200;
    for (unsigned it = 0; pacer_more(&p, it); it++) {
        char fault[128] = "";
        struct child_run cr = {
            .dir = dir, .seed = rng_next(&rng), .iteration = it + 1, .filler_max = filler_max};
        /* Even iterations: frequent checkpoints (API and WAL size); odd ones: rarely, so that
         * the WAL grows over 1 MiB segments and kills land in rotations too. */
        cr.oo.segment = "1M";
        cr.oo.ckpt_bytes = it % 2 ? "4M" : "512K";
        cr.checkpoints = it % 2 == 0;
        if (sc == SC_TORN) {
            snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",torn_write=%" PRIu64,
                     rng_next(&rng) >> 1, 1 + rng_below(&rng, 120));
            cr.oo.fault = fault;
        } else {
            /* Mostly early kills (open, recovery, first frames), some later ones. */
            cr.kill_after_ms =
                rng_below(&rng, 4) == 0 ? 1 + rng_below(&rng, 20) : 20 + rng_below(&rng, 400);
        }
        bool killed = false;
        int status = child_run(&cr, &killed);
        if (status == -1) {
            fprintf(stderr, "cstore-fault: fork failed: %s\n", strerror(errno));
            exit(2);
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
            violation("%s iteration %u: the writer child could not open the database", dir, it);
        else if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            violation("%s iteration %u: the writer child ended unexpectedly (status %#x)", dir, it,
                      status);
        if (sc == SC_TORN && !killed && WIFSIGNALED(status))
            res->faults++; /* the child died of its torn write, not of our timeout */
        int rc = reopen_and_check(dir, NULL, false, filler_max);
        if (rc)
            violation("%s iteration %u: reopen after a kill failed: %s: %s", dir, it,
                      cs_strerror(rc), cs_last_error());
        if (model.other_fails || model.eio_fails || model.enospc_fails) {
            violation("iteration %u: %" PRIu64 " writes failed without a fault (last: %s)", it,
                      model.other_fails + model.eio_fails + model.enospc_fails,
                      cs_strerror(model.last_other_rc ? model.last_other_rc : CS_EIO));
            model.other_fails = model.eio_fails = model.enospc_fails = 0;
        }
        note("%s %u: fault \"%s\" kill %" PRIu64 " ms, acked %" PRIu64 ", violations %" PRIu64 "\n",
             scenario_names[sc], it, fault, cr.kill_after_ms, model.acked_ops, res->violations);
        res->iterations++;
    }
    res->acked_ops += model.acked_ops;
    res->failed_ops += model.failed_ops;
    scenario_dir_done(dir);
}

/* ---- powercut: a child writes with the power-cut journal; the parent cuts, reopens, checks ----
 */

static void run_powercut(struct result *res, unsigned share)
{
    char dir[PATH_BYTES_MAX], journal[PATH_BYTES_MAX];
    scenario_dir(SC_POWERCUT, dir, sizeof(dir));
    path_join(journal, sizeof(journal), dir, ".", "journal");
    struct rng rng = {mix64(cfg.seed ^ (0xc0de0000u + (unsigned)SC_POWERCUT))};
    struct pacer p = pacer_for(SC_POWERCUT, share);
    model_reset(cfg.threads * KEYS_PER_THREAD);
    const size_t filler_max = 600;
    static const char *const modes[] = {"sync", "async", "none"};
    static const enum check_rule rules[] = {RULE_EXACT, RULE_HISTORY, RULE_BASE};
    for (unsigned it = 0; pacer_more(&p, it); it++) {
        unsigned mode = it % 3u;
        char fault[PATH_BYTES_MAX + 128];
        uint64_t cut_seed = rng_next(&rng);
        snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",powercut=%" PRIu64 ",powercut_log=%s",
                 rng_next(&rng) >> 1, 1 + rng_below(&rng, it % 4 == 0 ? 3000 : 400), journal);
        struct child_run cr = {
            .dir = dir, .seed = rng_next(&rng), .iteration = it + 1, .filler_max = filler_max};
        cr.oo.fault = fault;
        cr.oo.durability = modes[mode];
        cr.oo.segment = "1M";
        cr.oo.ckpt_bytes = it % 2 ? "2M" : "128K";
        cr.checkpoints = true;
        /* The cut usually comes at the seeded operation; without one soon (async and none make
         * few), the parent kills the child itself: the journal is whole at any moment. */
        cr.kill_after_ms = 30 + rng_below(&rng, it % 4 == 0 ? 2500 : 600);
        bool killed = false;
        int status = child_run(&cr, &killed);
        if (status == -1) {
            fprintf(stderr, "cstore-fault: fork failed: %s\n", strerror(errno));
            exit(2);
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
            violation("%s iteration %u: the writer child could not open the database", dir, it);
        else if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            violation("%s iteration %u: the writer child ended unexpectedly (status %#x)", dir, it,
                      status);
        if (!killed && WIFSIGNALED(status))
            res->faults++; /* cut at the seeded operation */
        /* The dead child's io_uring instance is torn down by the kernel after the child is
         * reaped, and operations it had in flight (an async-mode fdatasync, a WAL write in an
         * io-wq worker) can still complete then: cut under them and the reopen saw transient
         * -EIO (seed 777, async iterations). No event says when the teardown is over, so the
         * cut waits a moment. A real power cut has no such afterlife. */
        usleep(POWERCUT_SETTLE_US);
        struct io_powercut_report rep;
        memset(&rep, 0, sizeof(rep));
        int rc = io_powercut_apply(journal, cut_seed, &rep);
        if (rc) {
            fprintf(stderr, "cstore-fault: cannot apply the power cut of %s: %s\n", journal,
                    cs_strerror(rc));
            exit(2);
        }
        unlink(journal);
        /* With --db, the state after the cut is kept until the reopen succeeded, so that a
         * failing one can be replayed. */
        char before[PATH_BYTES_MAX], keep[PATH_BYTES_MAX];
        path_join(before, sizeof(before), dir, ".", "cut");
        path_join(keep, sizeof(keep), dir, ".", "failed");
        bool kept = cfg.db_given && remove_tree(before, 0) == 0 && copy_tree(dir, before, 0) == 0;
        model.rule = rules[mode];
        model.lost_acked = 0;
        rc = reopen_and_check(dir, NULL, false, filler_max);
        model.rule = RULE_EXACT;
        res->damage += model.lost_acked;
        if (rc) {
            violation("%s iteration %u (%s, \"%s\", cut seed %" PRIu64
                      "): reopen after a power cut failed: %s: %s",
                      dir, it, modes[mode], fault, cut_seed, cs_strerror(rc), cs_last_error());
            /* Keep the first failing state for inspection (the next reopen may repair it). */
            if (kept && access(keep, F_OK) != 0 && rename(before, keep) == 0)
                fprintf(stderr, "cstore-fault: the state after the cut, which failed to open: %s\n",
                        keep);
        }
        if (kept)
            remove_tree(before, 0);
        if (model.other_fails || model.eio_fails || model.enospc_fails) {
            violation("iteration %u: %" PRIu64 " writes failed without a fault (last: %s)", it,
                      model.other_fails + model.eio_fails + model.enospc_fails,
                      cs_strerror(model.last_other_rc ? model.last_other_rc : CS_EIO));
            model.other_fails = model.eio_fails = model.enospc_fails = 0;
        }
        note("powercut %u: %s, \"%s\", %s; cut seed %" PRIu64 ": %" PRIu64 " records, writes "
             "%" PRIu64 " durable / %" PRIu64 " kept / %" PRIu64 " torn / %" PRIu64
             " lost, metadata %" PRIu64 " undone, %" PRIu64 " truncated; acked lost %" PRIu64
             ", violations %" PRIu64 "\n",
             it, modes[mode], fault, killed ? "killed by the parent" : "cut at its operation",
             cut_seed, rep.records, rep.writes_durable, rep.writes_kept, rep.writes_torn,
             rep.writes_lost, rep.meta_undone, rep.truncated, model.lost_acked, res->violations);
        res->iterations++;
    }
    res->acked_ops += model.acked_ops;
    res->failed_ops += model.failed_ops;
    unlink(journal);
    scenario_dir_done(dir);
}

/* ---- eio, enospc, slow, fileio, alloc: in-process ---- */

/* Every shard that turned read-only must refuse a write with CS_EIO. Returns the failed shards. */
static unsigned check_fail_stop(cs_db *db, uint32_t iteration, size_t filler_max)
{
    unsigned failed = 0;
    char *vbuf = malloc(VAL_HEAD_BYTES + filler_max + 1);
    if (!vbuf)
        exit(2);
    for (unsigned s = 0; s < cfg.shards; s++) {
        struct cs_shard_stats st;
        if (cs_stats(db, s, &st) != 0 || st.io_error == 0)
            continue;
        failed++;
        if (st.io_error != CS_EIO && st.io_error != -EIO)
            note("shard %u io_error %d (%s)\n", s, st.io_error, cs_strerror(st.io_error));
        /* A probe put on a key of that shard: logged like any write, must fail. */
        for (uint32_t k = 0; k < model.nkeys; k++) {
            if (key_shard(k) != s)
                continue;
            struct op_rec r = {.magic = REC_MAGIC, .kind = REC_INTENT, .count = 1, .key = {k}};
            r.op_id = (uint64_t)(0xff00000u | iteration) << 32 | s; /* unique: values are too */
            r.val[0] = r.op_id << 3 | 1u;
            model_apply(&r);
            char key[32];
            size_t klen = key_make(k, key, sizeof(key));
            size_t vlen = value_make(r.val[0], filler_max, vbuf);
            int rc = cs_put(db, COLL, key, klen, vbuf, vlen);
            r.kind = rc == 0 ? REC_ACK : REC_FAIL;
            r.rc = rc;
            model_apply(&r);
            if (rc != CS_EIO && !(rc == -ENOMEM && model.enomem_ok))
                violation("shard %u is read-only (io_error %d) but a put returned %s", s,
                          st.io_error, cs_strerror(rc));
            break;
        }
    }
    free(vbuf);
    return failed;
}

static void run_inprocess(enum scenario sc, struct result *res, unsigned share)
{
    char dir[PATH_BYTES_MAX];
    scenario_dir(sc, dir, sizeof(dir));
    struct rng rng = {mix64(cfg.seed ^ (0xc0de0000u + (unsigned)sc))};
    struct pacer p = pacer_for(sc, share);
    model_reset(cfg.threads * KEYS_PER_THREAD);
    size_t filler_max = sc == SC_ENOSPC ? 12000 : sc == SC_FILEIO ? 1000 : 200;
    struct open_opts oo = {0};
    if (sc == SC_ENOSPC) {
        oo.segment = "1M";
        oo.no_compress = true;
    }
    if (sc == SC_FILEIO) {
        oo.segment = "1M"; /* rotations */
        oo.ckpt_bytes = "128K";
        oo.no_compress = true;
    }
    for (unsigned it = 0; pacer_more(&p, it); it++) {
        char fault[128];
        uint64_t fseed = rng_next(&rng) >> 1;
        uint32_t ops = 60;
        if (sc == SC_EIO) {
            static const char *const kinds[] = {"write_eio", "fsync_eio", "short_write"};
            snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",%s=%" PRIu64, fseed, kinds[it % 3],
                     1 + rng_below(&rng, 150));
            /* A failed write puts nothing on disk: its records must never come back. A failed
             * fdatasync follows a write that did reach the file; a short write may have missed
             * only the frame's zero padding, leaving a whole frame behind. */
            model.eio_not_applied = it % 3 == 0;
        } else if (sc == SC_ENOSPC) {
            /* Odd iterations: a WAL write itself fails with -ENOSPC instead. */
            if (it % 2)
                snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",write_enospc=%" PRIu64, fseed,
                         1 + rng_below(&rng, 100));
            else
                snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",enospc=%" PRIu64, fseed,
                         2 + rng_below(&rng, 3));
            ops = 80;
        } else if (sc == SC_FILEIO) {
            /* The operations of checkpoints (writes, fdatasync, rename, folder fsync, removal
             * of covered WAL segments) and of WAL segment rotation. */
            static const char *const kinds[] = {"file_write_eio", "file_sync_eio", "rename_eio",
                                                "dirsync_eio",    "create_eio",    "unlink_eio"};
            unsigned kind = it % CS_ARRAY_SIZE(kinds);
            snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",%s=%" PRIu64, fseed, kinds[kind],
                     1 + rng_below(&rng, kind == 0 ? 40 : 8));
        } else if (sc == SC_ALLOC) {
            /* Even iterations: allocations of the shard threads fail now and then. Odd ones: a
             * WAL write fails while many allocations do, so that taking its frame back runs
             * out of memory and the shard is fenced. */
            if (it % 2 == 0)
                snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",alloc_fail=%" PRIu64 ".5%%", fseed,
                         rng_below(&rng, 4));
            else
                snprintf(fault, sizeof(fault),
                         "seed=%" PRIu64 ",write_eio=%" PRIu64 ",alloc_fail=%" PRIu64 "%%", fseed,
                         1 + rng_below(&rng, 10), 50 + rng_below(&rng, 45));
        } else {
            snprintf(fault, sizeof(fault), "seed=%" PRIu64 ",latency_us=%" PRIu64, fseed,
                     100 + rng_below(&rng, 1900));
        }
        oo.fault = fault;
        model.enomem_ok = sc == SC_ALLOC;
        cs_db *db = NULL;
        int rc = db_open(dir, &oo, &db);
        if (rc == -ENOSPC && sc == SC_ENOSPC) {
            /* The fault hit the preallocation at open: a clear refusal, nothing changed. */
            res->faults++;
            res->iterations++;
            continue;
        }
        if ((rc == -EIO || rc == CS_EIO || rc == -ENOMEM) && (sc == SC_FILEIO || sc == SC_ALLOC)) {
            /* The fault hit the open itself: a clear refusal; the database must still open
             * without it and hold every acknowledged write. */
            res->faults++;
            note("%s %u: open with \"%s\" refused: %s\n", scenario_names[sc], it, fault,
                 cs_strerror(rc));
            rc = reopen_and_check(dir, &oo, false, filler_max);
            if (rc)
                violation("%s iteration %u: reopen after a refused open (\"%s\") failed: %s: %s",
                          dir, it, fault, cs_strerror(rc), cs_last_error());
            res->iterations++;
            continue;
        }
        if (rc) {
            violation("%s iteration %u: open with fault \"%s\" failed: %s: %s", dir, it, fault,
                      cs_strerror(rc), cs_last_error());
            break;
        }
        uint64_t eio_before = model.eio_fails, enospc_before = model.enospc_fails;
        uint64_t ckpt_fails_before = atomic_load(&ckpt_failures);
        uint64_t failed_reads_before = model.failed_reads;
        /* Rounds of work until the fault fired (a round may end before the Nth call). */
        for (uint32_t round = 0; round < ROUNDS_MAX; round++) {
            struct workload *w =
                workload_new(db, rng_next(&rng), round << 20 | (it + 1), ops, filler_max);
            w->fail_stop = 40;
            w->checkpoints = sc == SC_FILEIO;
            stage = "workload";
            workload_run(w);
            free(w);
            if (sc == SC_SLOW || model.eio_fails > eio_before || model.enospc_fails > enospc_before)
                break;
            if ((sc == SC_FILEIO || sc == SC_ALLOC) && round >= 2)
                break; /* a checkpoint fault may leave the shard writable: nothing to wait for */
        }
        unsigned failed = check_fail_stop(db, it, filler_max);
        bool eio_seen = model.eio_fails > eio_before;
        bool may_fail = sc == SC_EIO || sc == SC_FILEIO || sc == SC_ALLOC;
        if (failed && !eio_seen)
            violation("iteration %u (%s): a shard turned read-only but no write returned CS_EIO",
                      it, fault);
        if (!may_fail && failed)
            violation("iteration %u (%s): a shard turned read-only", it, fault);
        if (may_fail && eio_seen && !failed)
            violation("iteration %u (%s): CS_EIO returned but no shard is read-only", it, fault);
        if (failed || model.enospc_fails > enospc_before ||
            atomic_load(&ckpt_failures) > ckpt_fails_before)
            res->faults++;
        /* Reads keep working (on a fenced shard they may fail with CS_EIO), and show only
         * acknowledged or in-flight states. */
        stage = "check before close";
        model.reads_may_fail = sc == SC_ALLOC;
        check_db(db, 0, false, false, filler_max);
        model.reads_may_fail = false;
        if (model.failed_reads > failed_reads_before)
            res->damage++; /* alloc: a fenced shard refused reads of its live trees */
        if (sc == SC_ENOSPC && !failed) {
            /* After the fault the database takes writes again. */
            stage = "writes after the fault";
            struct workload *again =
                workload_new(db, rng_next(&rng), ROUNDS_MAX << 20 | (it + 1), 10, filler_max);
            uint64_t fails = model.failed_ops;
            workload_run(again);
            free(again);
            if (model.failed_ops != fails)
                violation("iteration %u (%s): %" PRIu64 " writes failed after the fault", it, fault,
                          model.failed_ops - fails);
        }
        (void)cs_close(db); /* a read-only shard reports its error here */
        model.eio_not_applied = false;
        model.enomem_ok = false;
        rc = reopen_and_check(dir, &oo, false, filler_max);
        if (rc)
            violation("%s iteration %u: reopen after \"%s\" failed: %s: %s", dir, it, fault,
                      cs_strerror(rc), cs_last_error());
        if (model.other_fails) {
            violation("iteration %u (%s): %" PRIu64 " writes failed with %s", it, fault,
                      model.other_fails, cs_strerror(model.last_other_rc));
            model.other_fails = 0;
        }
        note("%s %u: fault \"%s\": read-only shards %u, EIO %" PRIu64 ", ENOSPC %" PRIu64
             ", violations %" PRIu64 "\n",
             scenario_names[sc], it, fault, failed, model.eio_fails - eio_before,
             model.enospc_fails - enospc_before, res->violations);
        res->iterations++;
    }
    res->acked_ops += model.acked_ops;
    res->failed_ops += model.failed_ops;
    scenario_dir_done(dir);
}

/* ---- bitflip ---- */

struct flip {
    char path[PATH_BYTES_MAX]; /* file */
    uint64_t off;              /* byte */
    uint8_t mask;              /* bit */
};

/* WAL segments and checkpoint files of the database, into paths[]; returns the count. */
static unsigned data_files(const char *dir, char (*paths)[PATH_BYTES_MAX], unsigned max)
{
    unsigned n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) && n < max) {
        if (strncmp(e->d_name, "shard-", 6) != 0)
            continue;
        char sub[PATH_BYTES_MAX];
        path_join(sub, sizeof(sub), dir, "/", e->d_name);
        DIR *sd = opendir(sub);
        struct dirent *f;
        while (sd && (f = readdir(sd)) && n < max) {
            if (strncmp(f->d_name, "wal-", 4) == 0 || strncmp(f->d_name, "snap-", 5) == 0)
                path_join(paths[n++], PATH_BYTES_MAX, sub, "/", f->d_name);
        }
        if (sd)
            closedir(sd);
    }
    if (d)
        closedir(d);
    return n;
}

/* Bytes up to and including the last non-zero one (preallocated WAL space is zeros). */
static uint64_t used_bytes(int fd, uint64_t size)
{
    static uint8_t buf[1u << 16];
    uint64_t end = size;
    for (unsigned steps = 0; end > 0 && steps < (1u << 16); steps++) {
        uint64_t start = end > sizeof(buf) ? end - sizeof(buf) : 0;
        ssize_t n = pread(fd, buf, (size_t)(end - start), (off_t)start);
        if (n != (ssize_t)(end - start))
            return size;
        for (size_t i = (size_t)n; i > 0; i--)
            if (buf[i - 1])
                return start + i;
        end = start;
    }
    return 0;
}

static bool flip_bit(const struct flip *f)
{
    int fd = open(f->path, O_RDWR);
    if (fd < 0)
        return false;
    uint8_t b;
    bool ok = pread(fd, &b, 1, (off_t)f->off) == 1;
    b ^= f->mask;
    ok = ok && pwrite(fd, &b, 1, (off_t)f->off) == 1 && fsync(fd) == 0;
    close(fd);
    return ok;
}

/* Choose and apply up to FLIPS_MAX flips; returns how many were applied. */
static unsigned flip_some(const char *dir, struct rng *rng, struct flip *flips)
{
    static char paths[FILES_MAX][PATH_BYTES_MAX];
    unsigned nfiles = data_files(dir, paths, FILES_MAX);
    unsigned want = 1 + (unsigned)rng_below(rng, FLIPS_MAX), done = 0;
    for (unsigned i = 0; i < want && nfiles; i++) {
        struct flip *f = &flips[done];
        path_join(f->path, sizeof(f->path), paths[rng_below(rng, nfiles)], "", "");
        int fd = open(f->path, O_RDONLY);
        if (fd < 0)
            continue;
        struct stat st;
        uint64_t size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
        uint64_t used = size ? used_bytes(fd, size) : 0;
        close(fd);
        if (size == 0)
            continue;
        /* Mostly where the data is; a quarter of WAL flips in the last bytes written (the last
         * frame: a torn tail); now and then anywhere (stale or preallocated space). */
        uint64_t dice = rng_below(rng, 12);
        bool wal = strstr(f->path, "/wal-") != NULL;
        if (used && wal && dice < 3)
            f->off = used - 1 - rng_below(rng, used < 64 ? used : 64);
        else if (used && dice < 11)
            f->off = rng_below(rng, used);
        else
            f->off = rng_below(rng, size);
        f->mask = (uint8_t)(1u << rng_below(rng, 8));
        if (flip_bit(f))
            done++;
    }
    return done;
}

static void run_bitflip(struct result *res, unsigned share)
{
    char dir[PATH_BYTES_MAX];
    scenario_dir(SC_BITFLIP, dir, sizeof(dir));
    struct rng rng = {mix64(cfg.seed ^ (0xc0de0000u + (unsigned)SC_BITFLIP))};
    struct pacer p = pacer_for(SC_BITFLIP, share);
    model_reset(cfg.threads * KEYS_PER_THREAD);
    const size_t filler_max = 3000; /* big enough for compressed frames and rotation */
    struct open_opts oo = {.segment = "1M"};
    for (unsigned it = 0; pacer_more(&p, it); it++) {
        cs_db *db = NULL;
        int rc = db_open(dir, &oo, &db);
        if (rc) {
            violation("%s iteration %u: open before writing failed: %s: %s", dir, it,
                      cs_strerror(rc), cs_last_error());
            break;
        }
        struct workload *w = workload_new(db, rng_next(&rng), it + 1, 40, filler_max);
        stage = "workload";
        workload_run(w);
        free(w);
        if (it % 3 == 2 && (rc = cs_checkpoint(db)) != 0)
            violation("iteration %u: cs_checkpoint failed: %s", it, cs_strerror(rc));
        if (it % 3 == 2) {
            /* a few writes after the checkpoint, so that both kinds of file hold data */
            w = workload_new(db, rng_next(&rng), 0x400000u + it, 10, filler_max);
            stage = "workload";
            workload_run(w);
            free(w);
        }
        rc = cs_close(db);
        if (rc)
            violation("iteration %u: close failed: %s", it, cs_strerror(rc));
        if (model.failed_ops) {
            violation("iteration %u: %" PRIu64 " writes failed before any flip", it,
                      model.failed_ops);
            model.failed_ops = 0;
        }
        struct flip flips[FLIPS_MAX];
        char backup[PATH_BYTES_MAX];
        path_join(backup, sizeof(backup), dir, ".", "backup");
        remove_tree(backup, 0);
        if (copy_tree(dir, backup, 0) != 0) {
            fprintf(stderr, "cstore-fault: cannot copy %s to %s\n", dir, backup);
            exit(2);
        }
        unsigned nflips = flip_some(dir, &rng, flips);
        stage = "open after bit flips";
        rc = db_open(dir, &oo, &db);
        const char *outcome;
        if (rc) {
            outcome = rc == CS_ECORRUPT ? "CS_ECORRUPT" : "error";
            if (rc == CS_ECORRUPT)
                res->damage++;
            else
                violation("iteration %u: open after bit flips failed with %s (not CS_ECORRUPT): %s",
                          it, cs_strerror(rc), cs_last_error());
            note("bitflip %u: %s\n", it, cs_last_error());
            /* Back to the state before the flips (a failed open may still have cut a torn tail
             * on another shard, so flipping the bits back is not enough): it must check out. */
            if (remove_tree(dir, 0) != 0 || rename(backup, dir) != 0) {
                fprintf(stderr, "cstore-fault: cannot restore %s\n", dir);
                exit(2);
            }
            rc = reopen_and_check(dir, &oo, false, filler_max);
            if (rc)
                violation("iteration %u: open of the restored database failed: %s: %s", it,
                          cs_strerror(rc), cs_last_error());
        } else {
            unsigned torn;
            uint64_t mask = torn_mask(db, &torn);
            outcome = torn ? "torn tail" : "opened";
            res->damage += torn;
            check_db(db, mask, true, true, filler_max);
            rc = cs_close(db);
            if (rc)
                violation("iteration %u: close failed: %s", it, cs_strerror(rc));
        }
        note("bitflip %u: %u flips (%s +%" PRIu64 "), %s, violations %" PRIu64 "\n", it, nflips,
             nflips ? flips[0].path : "-", nflips ? flips[0].off : 0, outcome, res->violations);
        remove_tree(backup, 0);
        res->iterations++;
    }
    res->acked_ops += model.acked_ops;
    res->failed_ops += model.failed_ops;
    scenario_dir_done(dir);
}

/* ---- main ---- */

static void run_scenario(enum scenario sc, struct result *res, unsigned share)
{
    cur = res;
    switch (sc) {
    case SC_CRASH:
    case SC_TORN:
        run_crash_like(sc, res, share);
        break;
    case SC_EIO:
    case SC_ENOSPC:
    case SC_SLOW:
    case SC_FILEIO:
    case SC_ALLOC:
        run_inprocess(sc, res, share);
        break;
    case SC_POWERCUT:
        run_powercut(res, share);
        break;
    case SC_BITFLIP:
        run_bitflip(res, share);
        break;
    case SC_COUNT:
        break;
    }
}

/* Open and close a scratch database with the options the scenarios use: a configuration the
 * machine cannot run (more shards than CPUs...) is a set-up error, not a violation. */
static void preflight(void)
{
    char dir[PATH_BYTES_MAX];
    path_join(dir, sizeof(dir), cfg.db, "/", ".cstore-fault-preflight");
    remove_tree(dir, 0);
    cs_db *db = NULL;
    int rc = db_open(dir, NULL, &db);
    if (rc == 0)
        rc = cs_close(db);
    remove_tree(dir, 0);
    if (rc) {
        fprintf(stderr, "cstore-fault: cannot open a database with %u shards: %s: %s\n", cfg.shards,
                cs_strerror(rc), cs_last_error());
        if (!cfg.db_given)
            rmdir(cfg.db);
        exit(2);
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: cstore-fault <scenario|all> [--seed N] [--iterations N] [--duration SECONDS]\n"
            "                    [--db DIR] [--shards N] [--threads N] [--verbose]\n"
            "scenarios:\n"
            "  crash     SIGKILL a writer child at random moments, reopen, check\n"
            "  eio       a WAL write, fdatasync or short write fails (write_eio, fsync_eio,\n"
            "            short_write): CS_EIO, read-only shard, nothing acknowledged lost\n"
            "  torn      a torn WAL write, then the child dies (torn_write)\n"
            "  enospc    a WAL preallocation or write fails with ENOSPC (enospc, write_enospc)\n"
            "  bitflip   bits flipped in closed files: CS_ECORRUPT or intact\n"
            "  slow      latency_us on every write and fdatasync\n"
            "  powercut  a child in sync, async or none mode journals its disk operations\n"
            "            (powercut_log) and is killed at the Nth (powercut=N); the parent plays\n"
            "            a seeded power cut (unsynced writes kept, torn at sectors or lost;\n"
            "            unsynced creations, renames, removals undone), reopens and checks\n"
            "  fileio    checkpoint and segment file operations fail: file_write_eio,\n"
            "            file_sync_eio, rename_eio, dirsync_eio, create_eio, unlink_eio\n"
            "  alloc     shard allocations fail (alloc_fail), alone or while a failed WAL\n"
            "            frame is taken back (the shard is then fenced)\n"
            "faults are set with the fault option / $CSTORE_FAULT; see README and io/fault.c\n");
    exit(2);
}

static unsigned long long arg_num(const char *s, unsigned long long max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *which = argv[1];
    cfg.seed = 1;
    cfg.shards = 2;
    cfg.threads = 4;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--verbose") == 0) {
            cfg.verbose = true;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--seed") == 0)
            cfg.seed = arg_num(v, UINT64_MAX);
        else if (strcmp(a, "--iterations") == 0)
            cfg.iterations = (unsigned)arg_num(v, 100000000u);
        else if (strcmp(a, "--duration") == 0)
            cfg.duration_s = (unsigned)arg_num(v, 86400u * 7);
        else if (strcmp(a, "--shards") == 0)
            cfg.shards = (unsigned)arg_num(v, 8);
        else if (strcmp(a, "--threads") == 0)
            cfg.threads = (unsigned)arg_num(v, THREADS_MAX);
        else if (strcmp(a, "--db") == 0 && strlen(v) < PATH_BYTES_MAX - 64) {
            snprintf(cfg.db, sizeof(cfg.db), "%s", v);
            cfg.db_given = true;
        } else
            usage();
    }
    if (cfg.shards == 0 || cfg.threads == 0)
        usage();
    bool run[SC_COUNT] = {false};
    unsigned nrun = 0;
    for (unsigned s = 0; s < SC_COUNT; s++) {
        run[s] = strcmp(which, "all") == 0 || strcmp(which, scenario_names[s]) == 0;
        nrun += run[s];
    }
    if (nrun == 0)
        usage();
    if (!cfg.db_given) {
        snprintf(cfg.db, sizeof(cfg.db), "%s/cstore-fault-XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(cfg.db)) {
            fprintf(stderr, "cstore-fault: mkdtemp: %s\n", strerror(errno));
            return 2;
        }
    } else if (mkdir(cfg.db, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "cstore-fault: mkdir %s: %s\n", cfg.db, strerror(errno));
        return 2;
    }
    pthread_mutex_init(&model.lock, NULL);
    preflight();
    static struct result results[SC_COUNT];
    uint64_t violations = 0;
    printf("%-8s %10s %12s %12s %8s %8s %10s\n", "scenario", "iterations", "acked_ops",
           "keys_checked", "faults", "damage", "violations");
    fflush(stdout);
    for (unsigned s = 0; s < SC_COUNT; s++) {
        if (!run[s])
            continue;
        struct result *r = &results[s];
        run_scenario((enum scenario)s, r, nrun);
        printf("%-8s %10u %12" PRIu64 " %12" PRIu64 " %8" PRIu64 " %8" PRIu64 " %10" PRIu64 "\n",
               scenario_names[s], r->iterations, r->acked_ops, r->keys_checked, r->faults,
               r->damage, r->violations);
        fflush(stdout);
        violations += r->violations;
    }
    if (!cfg.db_given)
        rmdir(cfg.db);
    printf("seed %" PRIu64 ": %s\n", cfg.seed, violations ? "VIOLATIONS" : "ok");
    return violations ? 1 : 0;
}
