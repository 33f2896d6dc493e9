/* cstore-bench driver for RocksDB, through its C API (rocksdb/c.h).
 *
 * The library is the release build of Debian's source that perf/rocksdb-release.sh makes, in
 * BENCH_ROCKSDB_RELEASE_DIR, or Debian's librocksdb when that build failed, which has its
 * asserts on. The report names the file the library was loaded from (dladdr) and the build
 * that file is, so a library swapped in at run time (LD_LIBRARY_PATH) is named as what it is.
 * One rocksdb_t per run, in the store folder, default column family. The options differ from
 * RocksDB's defaults only in rdb_tune(), which says why for each; the describe line lists them
 * (and the store's OPTIONS-* file holds the full set). Durability: sync (the default, as cstore's)
 * = WriteOptions sync=true, each write's WAL append is fdatasync'ed before it returns (RocksDB
 * groups concurrent writers into one sync); async = sync=false, the WAL is written to the page
 * cache and never synced by the write; none = disableWAL, writes go to the memtable only. persist
 * (--persist, the bulk load) flushes the memtable to an SST file and syncs the WAL, so that
 * everything written is on disk. settle (after --workload's load phase, or with --settle after a
 * measured write phase) flushes the memtable and compacts the whole key range, so that reads find
 * the data in the fewest SST files, with their bloom filters, and not in the memtable. A thread
 * with batch > 1 gathers its puts and deletes into a WriteBatch written every batch operations (and
 * at flush). Gets use rocksdb_get_pinned (no copy inside RocksDB); a cursor is an iterator over an
 * implicit snapshot. RocksDB has no asynchronous calls, so the driver is blocking only; deletes
 * cannot tell whether the key was there and return 0. Errors come back from RocksDB as strings: the
 * first few are printed on stderr and the call returns -EIO.
 * Transactions (--set txn, chosen in rdb_tune): pessimistic opens a TransactionDB; a transaction
 * reads with GetForUpdate (an exclusive lock when it will write the key, else a shared one), so a
 * read-write transaction is serializable without a snapshot, and commits with the run's
 * WriteOptions (sync=true by default). optimistic opens an OptimisticTransactionDB; a transaction
 * takes a snapshot at begin (set_snapshot), reads through it with GetForUpdate (which records the
 * key for validation), and its commit fails with Busy (a key written since the snapshot) or
 * TryAgain (the memtable history no longer covers it): both are BENCH_CONFLICT, as are a
 * pessimistic lock wait that timed out (TimedOut) and a deadlock (Busy). A thread reuses one
 * rocksdb_transaction_t for all its transactions (the old_txn argument of begin). A read-only
 * transaction, in every mode, is an explicit snapshot that gets and an iterator read through.
 * With a TransactionDB the plain calls go through its rocksdb_transactiondb_* functions; its C
 * API has no compaction call, so settle only flushes the memtable there. When the Makefile found
 * no rocksdb/c.h this file compiles to nothing. */
#include "bench.h"

#ifdef BENCH_HAVE_ROCKSDB

#include <dlfcn.h>
#include <errno.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RDB_ERRORS_SHOWN_MAX 8u          /* RocksDB error strings printed per run */
#define RDB_BLOOM_BITS_PER_KEY 10.0      /* bloom filter: about 1% false positives */
#define RDB_CACHE_SLACK 2u               /* block cache: this many times the raw data */
#define RDB_CACHE_MIN_BYTES (8ull << 20) /* RocksDB's default block cache */
#define RDB_TUNED_BYTES 768u             /* the tuned options, as text */
#define RDB_NOTE_LEVELS_BYTES 64u        /* files per level in a phase note */

#define RDB_BUILD_RELEASE "release build of the Debian source (DEBUG_LEVEL=0)"
#define RDB_BUILD_DEBIAN "Debian package build, with assertions"
#ifndef BENCH_ROCKSDB_VERSION
#define BENCH_ROCKSDB_VERSION "?"
#endif

/* Which kind of database is open (--set txn). */
enum rdb_txn_mode {
    RDB_TXN_NONE,        /* rocksdb_t: read-only transactions only */
    RDB_TXN_PESSIMISTIC, /* TransactionDB: locks, GetForUpdate */
    RDB_TXN_OPTIMISTIC,  /* OptimisticTransactionDB: validation at commit */
};

struct rdb_store {
    rocksdb_t *db; /* the DB, or an OptimisticTransactionDB's base DB; NULL with a TransactionDB */
    rocksdb_transactiondb_t *tdb;                       /* TransactionDB, or NULL */
    rocksdb_optimistictransactiondb_t *odb;             /* OptimisticTransactionDB, or NULL */
    rocksdb_transactiondb_options_t *tdb_opts;          /* TransactionDB: its options */
    rocksdb_transaction_options_t *txn_opts;            /* TransactionDB: each transaction's */
    rocksdb_optimistictransaction_options_t *otxn_opts; /* OptimisticTransactionDB: each one's */
    enum rdb_txn_mode txn_mode;                         /* which of the three is open */
    rocksdb_options_t *opts;
    rocksdb_writeoptions_t *wopts;
    rocksdb_readoptions_t *ropts;
    rocksdb_block_based_table_options_t *table; /* bloom filter and block cache */
    rocksdb_cache_t *cache;                     /* the block cache */
    rocksdb_filterpolicy_t *filter;             /* owned by table once set */
    char tuned[RDB_TUNED_BYTES];                /* the options rdb_tune set */
    const char *mode;                           /* durability as described */
    unsigned errors_shown;                      /* error strings printed so far (atomic) */
};

struct rdb_thread {
    struct rdb_store *st;
    rocksdb_writebatch_t *wb;   /* batch > 1 only */
    unsigned batch;             /* writes per WriteBatch */
    unsigned pending;           /* writes in wb */
    rocksdb_transaction_t *txn; /* reused by every read-write begin, or NULL before the first */
    rocksdb_readoptions_t *txn_ropts; /* reads of the open transaction: through its snapshot */
    const rocksdb_snapshot_t *snap;   /* the open transaction's snapshot, or NULL */
    int txn_readonly;                 /* the open transaction is read-only (snap is the DB's) */
};

struct rdb_cursor {
    struct rdb_store *st;
    rocksdb_iterator_t *it;
    int started; /* positioned by a seek or the first scan_next */
    int pending; /* a seek positioned it: the next scan_next returns that record */
};

/* Report and free a RocksDB error string; returns -EIO, or 0 when err is NULL. */
static int rdb_error(struct rdb_store *st, char *err)
{
    if (err == NULL)
        return 0;
    if (__atomic_fetch_add(&st->errors_shown, 1, __ATOMIC_RELAXED) < RDB_ERRORS_SHOWN_MAX)
        fprintf(stderr, "cstore-bench: rocksdb: %s\n", err);
    rocksdb_free(err);
    return -EIO;
}

/* Everything that differs from RocksDB's defaults, in one place, each with its reason (the
 * RocksDB tuning guide and db_bench's options for the same workloads):
 * - increase_parallelism(CPUs): background flushes and compactions may use every CPU.
 * - allow_concurrent_memtable_write only when the writer threads fit on the CPUs: with more
 *   threads than CPUs (64 durable writers on 2 CPUs) the concurrent insert's spinning and
 *   adaptive yield cost more than they save, and off is 50-60% faster there; with few threads
 *   (the default, on) inserts proceed in parallel. enable_write_thread_adaptive_yield follows
 *   the same rule: it makes a writer waiting for its group's leader spin (up to 100 us) before
 *   it blocks, which with more threads than CPUs takes the CPU from the threads being waited
 *   for. --set allow_concurrent_memtable_write=true|false overrides the choice (both), to
 *   measure it.
 * - --set block_cache=SIZE (bytes, or with a K, M or G suffix): a block cache of that size
 *   instead of the rule below, for the rows whose data is deliberately larger than the cache
 *   (so that reads miss it and read SST blocks, and the memtable flushes and compactions run).
 * - --set table=plain: PlainTable with mmap reads instead (rdb_plain_table), for the in-memory
 *   point-read row.
 * - a block-based table with a 10-bit-per-key bloom filter (whole keys) so that a point read
 *   probes one SST file, not every level, and a block cache sized to hold the data (twice the
 *   raw bytes of the loaded records; at least RocksDB's default 8 MiB), so that reads after the
 *   settle step are served from memory like the other engines' are.
 * - compression stays the default (Snappy), which gives up quickly on incompressible values.
 * - --set txn=pessimistic|optimistic|none: a TransactionDB, an OptimisticTransactionDB or a plain
 *   DB (default: pessimistic when a phase writes in transactions, none otherwise); their
 *   settings are in rdb_tune_txn. */
/* The value of --set NAME=VALUE for this driver, or NULL. */
static const char *rdb_set_value(const struct bench_config *cfg, const char *name)
{
    size_t n = strlen(name);
    for (unsigned i = 0; i < cfg->set_count; i++)
        if (strncmp(cfg->sets[i], name, n) == 0 && cfg->sets[i][n] == '=')
            return cfg->sets[i] + n + 1;
    return NULL;
}

/* The bytes of a --set size such as 33554432, 32768K, 32M or 1G; 0 when it is not one. */
static uint64_t rdb_parse_bytes(const char *v)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *v < '0' || *v > '9')
        return 0;
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift != 0)
        end++;
    if (*end != '\0' || n > (UINT64_MAX >> shift))
        return 0;
    return (uint64_t)n << shift;
}

/* PlainTable for in-memory point reads (--set table=plain): SST files memory-mapped
 * (allow_mmap_reads, every file kept open) and indexed by a hash of an 8-byte prefix (the
 * driver's keys begin with 8 unique bytes), with a bloom filter; RocksDB's suggestion for a
 * store that fits in memory and is read by key. Range scans across prefixes need
 * total_order_seek, so the suite uses it for readrandom only. */
static void rdb_plain_table(struct rdb_store *st, const struct bench_config *cfg)
{
    rocksdb_options_set_prefix_extractor(st->opts, rocksdb_slicetransform_create_fixed_prefix(8));
    rocksdb_options_set_plain_table_factory(st->opts, cfg->key_bytes, (int)RDB_BLOOM_BITS_PER_KEY,
                                            0.75, 16);
    rocksdb_options_set_allow_mmap_reads(st->opts, 1);
    rocksdb_options_set_max_open_files(st->opts, -1);
}

/* --set txn (see rdb_tune). */
static enum rdb_txn_mode rdb_txn_choice(const struct bench_config *cfg)
{
    const char *v = rdb_set_value(cfg, "txn");
    if (v == NULL)
        return cfg->txn_writes ? RDB_TXN_PESSIMISTIC : RDB_TXN_NONE;
    if (strcmp(v, "pessimistic") == 0)
        return RDB_TXN_PESSIMISTIC;
    if (strcmp(v, "optimistic") == 0)
        return RDB_TXN_OPTIMISTIC;
    if (strcmp(v, "none") != 0)
        fprintf(stderr,
                "cstore-bench: rocksdb: --set txn=%s is not pessimistic, optimistic or "
                "none; using none\n",
                v);
    return RDB_TXN_NONE;
}

/* The transaction settings of rdb_tune: TransactionDB with deadlock detection in each
 * transaction (set_deadlock_detect: a lock cycle fails at once with Busy, retried as a conflict,
 * instead of waiting out the 1 s lock timeout; the transfer takes its locks in one order and has
 * none, ycsb transactions can), its other options RocksDB's defaults (no snapshot: GetForUpdate
 * locks then reads the latest value, which the lock keeps; 16 lock stripes, 1 s lock timeout);
 * or OptimisticTransactionDB with set_snapshot, so that every read of a transaction sees one
 * state and the commit validates against it (RocksDB's advice for consistent reads). */
static const char *rdb_tune_txn(struct rdb_store *st, const struct bench_config *cfg)
{
    st->txn_mode = rdb_txn_choice(cfg);
    if (st->txn_mode == RDB_TXN_PESSIMISTIC) {
        st->tdb_opts = rocksdb_transactiondb_options_create();
        st->txn_opts = rocksdb_transaction_options_create();
        rocksdb_transaction_options_set_deadlock_detect(st->txn_opts, 1);
        return "TransactionDB (pessimistic: GetForUpdate, deadlock_detect)";
    }
    if (st->txn_mode == RDB_TXN_OPTIMISTIC) {
        st->otxn_opts = rocksdb_optimistictransaction_options_create();
        rocksdb_optimistictransaction_options_set_set_snapshot(st->otxn_opts, 1);
        return "OptimisticTransactionDB (snapshot at begin, GetForUpdate)";
    }
    return "plain DB (read-only transactions as snapshots)";
}

static void rdb_tune(struct rdb_store *st, const struct bench_config *cfg)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    rocksdb_options_increase_parallelism(st->opts, (int)cpus);
    int concurrent = cfg->threads <= (unsigned)cpus;
    const char *v = rdb_set_value(cfg, "allow_concurrent_memtable_write");
    if (v != NULL) /* --set: measure the other choice */
        concurrent = strcmp(v, "true") == 0;
    rocksdb_options_set_allow_concurrent_memtable_write(st->opts, (unsigned char)concurrent);
    rocksdb_options_set_enable_write_thread_adaptive_yield(st->opts, (unsigned char)concurrent);
    const char *txn = rdb_tune_txn(st, cfg);
    int n = snprintf(st->tuned, sizeof(st->tuned),
                     "%s, increase_parallelism(%ld), allow_concurrent_memtable_write=%s and "
                     "enable_write_thread_adaptive_yield=%s (%u threads on %ld CPUs), ",
                     txn, cpus, concurrent ? "true" : "false", concurrent ? "true" : "false",
                     cfg->threads, cpus);
    size_t used = n > 0 && (size_t)n < sizeof(st->tuned) ? (size_t)n : 0;
    v = rdb_set_value(cfg, "table");
    if (v != NULL && strcmp(v, "plain") == 0) {
        rdb_plain_table(st, cfg);
        snprintf(st->tuned + used, sizeof(st->tuned) - used,
                 "PlainTable (8-byte prefix hash, bloom %.0f bits/key), allow_mmap_reads, "
                 "max_open_files=-1",
                 RDB_BLOOM_BITS_PER_KEY);
        return;
    }
    uint64_t raw = cfg->keys * ((uint64_t)cfg->key_bytes + cfg->value_bytes);
    uint64_t cache_bytes = raw * RDB_CACHE_SLACK;
    if (cache_bytes < RDB_CACHE_MIN_BYTES)
        cache_bytes = RDB_CACHE_MIN_BYTES;
    const char *cache_rule = "twice the raw data";
    v = rdb_set_value(cfg, "block_cache");
    if (v != NULL && rdb_parse_bytes(v) != 0) { /* --set: smaller than the data on purpose */
        cache_bytes = rdb_parse_bytes(v);
        cache_rule = "set by --set block_cache";
    } else if (v != NULL) {
        fprintf(stderr, "cstore-bench: rocksdb: --set block_cache=%s is not a size; using %s\n", v,
                cache_rule);
    }
    st->table = rocksdb_block_based_options_create();
    st->filter = rocksdb_filterpolicy_create_bloom(RDB_BLOOM_BITS_PER_KEY);
    rocksdb_block_based_options_set_filter_policy(st->table, st->filter);
    st->cache = rocksdb_cache_create_lru((size_t)cache_bytes);
    rocksdb_block_based_options_set_block_cache(st->table, st->cache);
    rocksdb_options_set_block_based_table_factory(st->opts, st->table);
    snprintf(st->tuned + used, sizeof(st->tuned) - used,
             "block-based table, bloom filter %.0f bits/key, LRU block cache %llu MiB (%s, raw "
             "data %llu MiB), write_buffer_size %llu MiB",
             RDB_BLOOM_BITS_PER_KEY, (unsigned long long)(cache_bytes >> 20), cache_rule,
             (unsigned long long)(raw >> 20),
             (unsigned long long)(rocksdb_options_get_write_buffer_size(st->opts) >> 20));
}

/* Close whichever database is open (none after a failed open) and free the store. */
static int rdb_close(void *store)
{
    struct rdb_store *st = store;
    if (st->odb != NULL) {
        if (st->db != NULL)
            rocksdb_optimistictransactiondb_close_base_db(st->db);
        rocksdb_optimistictransactiondb_close(st->odb);
    } else if (st->tdb != NULL) {
        rocksdb_transactiondb_close(st->tdb);
    } else if (st->db != NULL) {
        rocksdb_close(st->db);
    }
    if (st->tdb_opts != NULL)
        rocksdb_transactiondb_options_destroy(st->tdb_opts);
    if (st->txn_opts != NULL)
        rocksdb_transaction_options_destroy(st->txn_opts);
    if (st->otxn_opts != NULL)
        rocksdb_optimistictransaction_options_destroy(st->otxn_opts);
    rocksdb_readoptions_destroy(st->ropts);
    rocksdb_writeoptions_destroy(st->wopts);
    rocksdb_options_destroy(st->opts);
    if (st->table != NULL) /* NULL with PlainTable */
        rocksdb_block_based_options_destroy(st->table);
    if (st->cache != NULL)
        rocksdb_cache_destroy(st->cache);
    free(st);
    return 0;
}

static int rdb_open(const struct bench_config *cfg, void **store)
{
    struct rdb_store *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return -ENOMEM;
    st->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(st->opts, 1);
    rdb_tune(st, cfg);
    st->wopts = rocksdb_writeoptions_create();
    st->ropts = rocksdb_readoptions_create();
    const char *d = cfg->durability != NULL ? cfg->durability : "sync";
    if (strcmp(d, "sync") == 0) {
        rocksdb_writeoptions_set_sync(st->wopts, 1);
        st->mode = "WriteOptions sync=true";
    } else if (strcmp(d, "async") == 0) {
        rocksdb_writeoptions_set_sync(st->wopts, 0);
        st->mode = "WriteOptions sync=false";
    } else {
        rocksdb_writeoptions_disable_WAL(st->wopts, 1);
        st->mode = "WAL disabled";
    }
    char *err = NULL;
    if (st->txn_mode == RDB_TXN_PESSIMISTIC) {
        st->tdb = rocksdb_transactiondb_open(st->opts, st->tdb_opts, cfg->db_path, &err);
    } else if (st->txn_mode == RDB_TXN_OPTIMISTIC) {
        st->odb = rocksdb_optimistictransactiondb_open(st->opts, cfg->db_path, &err);
        if (err == NULL)
            st->db = rocksdb_optimistictransactiondb_get_base_db(st->odb);
    } else {
        st->db = rocksdb_open(st->opts, cfg->db_path, &err);
    }
    if (err != NULL) {
        int rc = rdb_error(st, err);
        rdb_close(st);
        return rc;
    }
    *store = st;
    return 0;
}

/* Flush the memtable into an SST file and wait for it. */
static int rdb_flush_memtable(struct rdb_store *st)
{
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    char *err = NULL;
    if (st->tdb != NULL)
        rocksdb_transactiondb_flush(st->tdb, fo, &err);
    else
        rocksdb_flush(st->db, fo, &err);
    rocksdb_flushoptions_destroy(fo);
    return rdb_error(st, err);
}

/* Everything written on disk: the memtable as an SST file (written and synced by the flush)
 * and the WAL synced (it holds nothing the SST does not, unless the WAL is off). */
static int rdb_persist(void *store)
{
    struct rdb_store *st = store;
    int rc = rdb_flush_memtable(st);
    if (rc == 0) {
        char *err = NULL;
        if (st->tdb != NULL)
            rocksdb_transactiondb_flush_wal(st->tdb, 1, &err);
        else
            rocksdb_flush_wal(st->db, 1, &err);
        rc = rdb_error(st, err);
    }
    return rc;
}

/* After a load: flush, then compact the whole key range (waits for the compaction); a
 * TransactionDB only flushes (its C API has no compaction call). */
static int rdb_settle(void *store)
{
    struct rdb_store *st = store;
    int rc = rdb_flush_memtable(st);
    if (rc == 0 && st->db != NULL)
        rocksdb_compact_range(st->db, NULL, 0, NULL, 0);
    return rc;
}

static int rdb_thread_open(void *store, unsigned depth, unsigned batch, void **th)
{
    (void)depth;
    struct rdb_thread *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->st = store;
    t->batch = batch > 1 ? batch : 1;
    if (t->batch > 1)
        t->wb = rocksdb_writebatch_create();
    t->txn_ropts = rocksdb_readoptions_create();
    *th = t;
    return 0;
}

static int rdb_flush(void *th)
{
    struct rdb_thread *t = th;
    if (t->wb == NULL || t->pending == 0)
        return 0;
    char *err = NULL;
    if (t->st->tdb != NULL)
        rocksdb_transactiondb_write(t->st->tdb, t->st->wopts, t->wb, &err);
    else
        rocksdb_write(t->st->db, t->st->wopts, t->wb, &err);
    rocksdb_writebatch_clear(t->wb);
    t->pending = 0;
    return rdb_error(t->st, err);
}

static void rdb_thread_close(void *th)
{
    struct rdb_thread *t = th;
    if (t->wb != NULL)
        rocksdb_writebatch_destroy(t->wb);
    if (t->txn != NULL)
        rocksdb_transaction_destroy(t->txn);
    rocksdb_readoptions_destroy(t->txn_ropts);
    free(t);
}

/* After adding a write to the batch: write it out when full. */
static int rdb_batched(struct rdb_thread *t)
{
    return ++t->pending >= t->batch ? rdb_flush(t) : 0;
}

static int rdb_put(void *th, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct rdb_thread *t = th;
    if (t->wb != NULL) {
        rocksdb_writebatch_put(t->wb, key, klen, val, vlen);
        return rdb_batched(t);
    }
    char *err = NULL;
    if (t->st->tdb != NULL)
        rocksdb_transactiondb_put(t->st->tdb, t->st->wopts, key, klen, val, vlen, &err);
    else
        rocksdb_put(t->st->db, t->st->wopts, key, klen, val, vlen, &err);
    return rdb_error(t->st, err);
}

/* A pinned get outside a transaction's locks, with ropts (the plain one or a snapshot's). */
static rocksdb_pinnableslice_t *rdb_get_pinned(struct rdb_store *st,
                                               const rocksdb_readoptions_t *ropts, const void *key,
                                               size_t klen, char **err)
{
    if (st->tdb != NULL)
        return rocksdb_transactiondb_get_pinned(st->tdb, ropts, key, klen, err);
    return rocksdb_get_pinned(st->db, ropts, key, klen, err);
}

/* A get's result: copy the value of ps (NULL: not found) into buf, free ps. */
static int rdb_get_result(rocksdb_pinnableslice_t *ps, void *buf, size_t cap, size_t *vlen)
{
    if (ps == NULL)
        return BENCH_NOTFOUND;
    const char *v = rocksdb_pinnableslice_value(ps, vlen);
    memcpy(buf, v, *vlen < cap ? *vlen : cap);
    rocksdb_pinnableslice_destroy(ps);
    return 0;
}

static int rdb_get(void *th, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen)
{
    struct rdb_thread *t = th;
    char *err = NULL;
    rocksdb_pinnableslice_t *ps = rdb_get_pinned(t->st, t->st->ropts, key, klen, &err);
    if (err != NULL)
        return rdb_error(t->st, err);
    return rdb_get_result(ps, buf, cap, vlen);
}

static int rdb_del(void *th, const void *key, size_t klen)
{
    struct rdb_thread *t = th;
    if (t->wb != NULL) {
        rocksdb_writebatch_delete(t->wb, key, klen);
        return rdb_batched(t);
    }
    char *err = NULL;
    if (t->st->tdb != NULL)
        rocksdb_transactiondb_delete(t->st->tdb, t->st->wopts, key, klen, &err);
    else
        rocksdb_delete(t->st->db, t->st->wopts, key, klen, &err);
    return rdb_error(t->st, err);
}

/* A cursor over an iterator that reads with ropts (the plain one or a snapshot's). */
static int rdb_iterator_open(struct rdb_store *st, const rocksdb_readoptions_t *ropts,
                             void **cursor)
{
    struct rdb_cursor *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->st = st;
    if (st->tdb != NULL)
        c->it = rocksdb_transactiondb_create_iterator(st->tdb, ropts);
    else
        c->it = rocksdb_create_iterator(st->db, ropts);
    *cursor = c;
    return 0;
}

static int rdb_scan_open(void *th, void **cursor)
{
    struct rdb_thread *t = th;
    return rdb_iterator_open(t->st, t->st->ropts, cursor);
}

static int rdb_scan_seek(void *cursor, const void *key, size_t klen)
{
    struct rdb_cursor *c = cursor;
    rocksdb_iter_seek(c->it, key, klen);
    c->started = 1;
    c->pending = 1;
    return 0;
}

static int rdb_scan_next(void *cursor, const void **key, size_t *klen, const void **val,
                         size_t *vlen)
{
    struct rdb_cursor *c = cursor;
    if (!c->started)
        rocksdb_iter_seek_to_first(c->it);
    else if (!c->pending && rocksdb_iter_valid(c->it))
        rocksdb_iter_next(c->it);
    c->started = 1;
    c->pending = 0;
    if (!rocksdb_iter_valid(c->it)) {
        char *err = NULL;
        rocksdb_iter_get_error(c->it, &err);
        return rdb_error(c->st, err);
    }
    *key = rocksdb_iter_key(c->it, klen);
    *val = rocksdb_iter_value(c->it, vlen);
    return 1;
}

static void rdb_scan_close(void *cursor)
{
    struct rdb_cursor *c = cursor;
    rocksdb_iter_destroy(c->it);
    free(c);
}

/* An error of a transaction call: Busy (a deadlock, or an optimistic commit that found a key
 * written since its snapshot), TimedOut (a lock wait gave up) and TryAgain (the memtable history
 * no longer covers an optimistic transaction) are BENCH_CONFLICT; anything else is rdb_error's.
 * 0 when err is NULL. The prefixes are those of rocksdb::Status::ToString. */
static int rdb_txn_error(struct rdb_store *st, char *err)
{
    static const char *const conflicts[] = {"Resource busy", "Operation timed out",
                                            "Operation failed. Try again."};
    if (err == NULL)
        return 0;
    for (size_t i = 0; i < sizeof(conflicts) / sizeof(conflicts[0]); i++)
        if (strncmp(err, conflicts[i], strlen(conflicts[i])) == 0) {
            rocksdb_free(err);
            return BENCH_CONFLICT;
        }
    return rdb_error(st, err);
}

static int rdb_txn_begin(void *th, unsigned flags, void **txn)
{
    struct rdb_thread *t = th;
    struct rdb_store *st = t->st;
    t->txn_readonly = (flags & BENCH_TXN_READONLY) != 0;
    if (t->txn_readonly) {
        t->snap = st->tdb != NULL ? rocksdb_transactiondb_create_snapshot(st->tdb)
                                  : rocksdb_create_snapshot(st->db);
    } else if (st->txn_mode == RDB_TXN_PESSIMISTIC) {
        t->txn = rocksdb_transaction_begin(st->tdb, st->wopts, st->txn_opts, t->txn);
    } else if (st->txn_mode == RDB_TXN_OPTIMISTIC) {
        t->txn = rocksdb_optimistictransaction_begin(st->odb, st->wopts, st->otxn_opts, t->txn);
        t->snap = rocksdb_transaction_get_snapshot(t->txn); /* a copy, freed with rocksdb_free */
    } else {
        if (__atomic_fetch_add(&st->errors_shown, 1, __ATOMIC_RELAXED) < RDB_ERRORS_SHOWN_MAX)
            fprintf(stderr, "cstore-bench: rocksdb: read-write transactions need --set "
                            "txn=pessimistic or txn=optimistic\n");
        return -ENOTSUP;
    }
    rocksdb_readoptions_set_snapshot(t->txn_ropts, t->snap);
    *txn = t;
    return 0;
}

/* Release what the open transaction holds besides its rocksdb_transaction_t: its snapshot. */
static void rdb_txn_end(struct rdb_thread *t)
{
    rocksdb_readoptions_set_snapshot(t->txn_ropts, NULL);
    if (t->snap != NULL && t->txn_readonly && t->st->tdb != NULL)
        rocksdb_transactiondb_release_snapshot(t->st->tdb, t->snap);
    else if (t->snap != NULL && t->txn_readonly)
        rocksdb_release_snapshot(t->st->db, t->snap);
    else if (t->snap != NULL)
        rocksdb_free((void *)t->snap);
    t->snap = NULL;
}

static int rdb_txn_get(void *txn, const void *key, size_t klen, int for_update, void *buf,
                       size_t cap, size_t *vlen)
{
    struct rdb_thread *t = txn;
    char *err = NULL;
    rocksdb_pinnableslice_t *ps;
    if (t->txn_readonly)
        ps = rdb_get_pinned(t->st, t->txn_ropts, key, klen, &err);
    else if (t->st->txn_mode == RDB_TXN_PESSIMISTIC)
        ps = rocksdb_transaction_get_pinned_for_update(t->txn, t->st->ropts, key, klen,
                                                       (unsigned char)(for_update != 0), &err);
    else
        ps = rocksdb_transaction_get_pinned_for_update(t->txn, t->txn_ropts, key, klen, 1, &err);
    if (err != NULL)
        return rdb_txn_error(t->st, err);
    return rdb_get_result(ps, buf, cap, vlen);
}

static int rdb_txn_put(void *txn, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct rdb_thread *t = txn;
    if (t->txn_readonly)
        return -EINVAL;
    char *err = NULL;
    rocksdb_transaction_put(t->txn, key, klen, val, vlen, &err);
    return rdb_txn_error(t->st, err);
}

static void rdb_txn_abort(void *txn)
{
    struct rdb_thread *t = txn;
    if (!t->txn_readonly) {
        char *err = NULL;
        rocksdb_transaction_rollback(t->txn, &err);
        if (err != NULL)
            rdb_error(t->st, err);
    }
    rdb_txn_end(t);
}

static int rdb_txn_commit(void *txn)
{
    struct rdb_thread *t = txn;
    if (t->txn_readonly) {
        rdb_txn_end(t);
        return 0;
    }
    char *err = NULL;
    rocksdb_transaction_commit(t->txn, &err);
    int rc = rdb_txn_error(t->st, err);
    if (rc != 0)
        rdb_txn_abort(t); /* what a failed commit left */
    else
        rdb_txn_end(t);
    return rc;
}

static int rdb_txn_scan_open(void *txn, void **cursor)
{
    struct rdb_thread *t = txn;
    if (!t->txn_readonly)
        return -ENOTSUP; /* the workloads seek in read-only transactions only */
    return rdb_iterator_open(t->st, t->txn_ropts, cursor);
}

static void rdb_describe(void *store, char *buf, size_t cap)
{
    struct rdb_store *st = store;
    Dl_info info;
    const char *lib = "?";
    if (dladdr((void *)rocksdb_open, &info) != 0 && info.dli_fname != NULL)
        lib = info.dli_fname;
    const char *build = RDB_BUILD_DEBIAN;
#ifdef BENCH_ROCKSDB_RELEASE_DIR
    if (strncmp(lib, BENCH_ROCKSDB_RELEASE_DIR, strlen(BENCH_ROCKSDB_RELEASE_DIR)) == 0)
        build = RDB_BUILD_RELEASE;
#endif
    snprintf(buf, cap, "rocksdb %s, %s, loaded from %s; %s; %s", BENCH_ROCKSDB_VERSION, build, lib,
             st->mode, st->tuned);
}

/* After a measured phase: the SST files of each level (from "rocksdb.levelstats"; a flush
 * writes level 0 only, so files below it mean a compaction finished) and the compactions still
 * running, e.g. "SST files per level 2,4; compactions running 0". */
static void rdb_phase_note(void *store, char *buf, size_t cap)
{
    struct rdb_store *st = store;
    char levels[RDB_NOTE_LEVELS_BYTES] = "";
    size_t used = 0;
    char *stats = st->tdb != NULL
                      ? rocksdb_transactiondb_property_value(st->tdb, "rocksdb.levelstats")
                      : rocksdb_property_value(st->db, "rocksdb.levelstats");
    /* Lines "  <level>  <files>  <MB>" after a two-line header; the last non-empty level ends
     * the list. */
    size_t keep = 0;
    for (char *save = NULL, *line = stats != NULL ? strtok_r(stats, "\n", &save) : NULL;
         line != NULL; line = strtok_r(NULL, "\n", &save)) {
        unsigned level;
        unsigned long long files;
        if (sscanf(line, " %u %llu", &level, &files) != 2)
            continue;
        int n = snprintf(levels + used, sizeof(levels) - used, "%s%llu", used ? "," : "", files);
        if (n < 0 || (size_t)n >= sizeof(levels) - used)
            break;
        used += (size_t)n;
        if (files != 0)
            keep = used;
    }
    levels[keep] = '\0';
    if (stats != NULL)
        rocksdb_free(stats);
    uint64_t running = 0;
    const char *prop = "rocksdb.num-running-compactions";
    if ((st->tdb != NULL ? rocksdb_transactiondb_property_int(st->tdb, prop, &running)
                         : rocksdb_property_int(st->db, prop, &running)) != 0)
        running = 0;
    snprintf(buf, cap, "SST files per level %s; compactions running %llu", keep ? levels : "none",
             (unsigned long long)running);
}

static const char *rdb_strerror(int rc)
{
    return rc < 0 ? strerror(-rc) : "not an error";
}

const struct bench_engine bench_engine_rocksdb = {
    .name = "rocksdb",
    .open = rdb_open,
    .close = rdb_close,
    .thread_open = rdb_thread_open,
    .flush = rdb_flush,
    .thread_close = rdb_thread_close,
    .put = rdb_put,
    .get = rdb_get,
    .del = rdb_del,
    .scan_open = rdb_scan_open,
    .scan_seek = rdb_scan_seek,
    .scan_next = rdb_scan_next,
    .scan_close = rdb_scan_close,
    .persist = rdb_persist,
    .settle = rdb_settle,
    .phase_note = rdb_phase_note,
    .describe = rdb_describe,
    .strerror = rdb_strerror,
    .txn_begin = rdb_txn_begin,
    .txn_get = rdb_txn_get,
    .txn_put = rdb_txn_put,
    .txn_commit = rdb_txn_commit,
    .txn_abort = rdb_txn_abort,
    .txn_scan_open = rdb_txn_scan_open,
};

#else
typedef int bench_rocksdb_absent; /* keeps the translation unit non-empty */
#endif
