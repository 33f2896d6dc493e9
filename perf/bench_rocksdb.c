/* cstore-bench driver for RocksDB, through its C API (rocksdb/c.h, Debian librocksdb-dev).
 *
 * One rocksdb_t per run, in the store folder, default column family. Options: RocksDB's
 * defaults plus create_if_missing and increase_parallelism(CPUs) (background flushes and
 * compactions on every CPU), as its tuning guide suggests; nothing else is tuned.
 * Durability: sync (the default, as cstore's) = WriteOptions sync=true, each write's WAL
 * append is fdatasync'ed before it returns (RocksDB groups concurrent writers into one sync);
 * async = sync=false, the WAL is written to the page cache and never synced by the write;
 * none = disableWAL, writes go to the memtable only.
 * A thread with batch > 1 gathers its puts and deletes into a WriteBatch written every batch
 * operations (and at flush). Gets use rocksdb_get_pinned (no copy inside RocksDB); a cursor is
 * an iterator over an implicit snapshot. RocksDB has no asynchronous calls, so the driver is
 * blocking only; deletes cannot tell whether the key was there and return 0.
 * Errors come back from RocksDB as strings: the first few are printed on stderr and the call
 * returns -EIO. When the Makefile found no rocksdb/c.h this file compiles to nothing. */
#include "bench.h"

#ifdef BENCH_HAVE_ROCKSDB

#include <errno.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RDB_ERRORS_SHOWN_MAX 8u /* RocksDB error strings printed per run */

struct rdb_store {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_writeoptions_t *wopts;
    rocksdb_readoptions_t *ropts;
    const char *mode;      /* durability as described */
    unsigned errors_shown; /* error strings printed so far (atomic) */
};

struct rdb_thread {
    struct rdb_store *st;
    rocksdb_writebatch_t *wb; /* batch > 1 only */
    unsigned batch;           /* writes per WriteBatch */
    unsigned pending;         /* writes in wb */
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

static int rdb_open(const struct bench_config *cfg, void **store)
{
    struct rdb_store *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return -ENOMEM;
    st->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(st->opts, 1);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    rocksdb_options_increase_parallelism(st->opts, cpus > 0 ? (int)cpus : 1);
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
    st->db = rocksdb_open(st->opts, cfg->db_path, &err);
    if (err != NULL) {
        int rc = rdb_error(st, err);
        rocksdb_readoptions_destroy(st->ropts);
        rocksdb_writeoptions_destroy(st->wopts);
        rocksdb_options_destroy(st->opts);
        free(st);
        return rc;
    }
    *store = st;
    return 0;
}

static int rdb_close(void *store)
{
    struct rdb_store *st = store;
    rocksdb_close(st->db);
    rocksdb_readoptions_destroy(st->ropts);
    rocksdb_writeoptions_destroy(st->wopts);
    rocksdb_options_destroy(st->opts);
    free(st);
    return 0;
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
    *th = t;
    return 0;
}

static int rdb_flush(void *th)
{
    struct rdb_thread *t = th;
    if (t->wb == NULL || t->pending == 0)
        return 0;
    char *err = NULL;
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
    rocksdb_put(t->st->db, t->st->wopts, key, klen, val, vlen, &err);
    return rdb_error(t->st, err);
}

static int rdb_get(void *th, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen)
{
    struct rdb_thread *t = th;
    char *err = NULL;
    rocksdb_pinnableslice_t *ps = rocksdb_get_pinned(t->st->db, t->st->ropts, key, klen, &err);
    if (err != NULL)
        return rdb_error(t->st, err);
    if (ps == NULL)
        return BENCH_NOTFOUND;
    const char *v = rocksdb_pinnableslice_value(ps, vlen);
    memcpy(buf, v, *vlen < cap ? *vlen : cap);
    rocksdb_pinnableslice_destroy(ps);
    return 0;
}

static int rdb_del(void *th, const void *key, size_t klen)
{
    struct rdb_thread *t = th;
    if (t->wb != NULL) {
        rocksdb_writebatch_delete(t->wb, key, klen);
        return rdb_batched(t);
    }
    char *err = NULL;
    rocksdb_delete(t->st->db, t->st->wopts, key, klen, &err);
    return rdb_error(t->st, err);
}

static int rdb_scan_open(void *th, void **cursor)
{
    struct rdb_thread *t = th;
    struct rdb_cursor *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->st = t->st;
    c->it = rocksdb_create_iterator(t->st->db, t->st->ropts);
    *cursor = c;
    return 0;
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

static void rdb_describe(void *store, char *buf, size_t cap)
{
    struct rdb_store *st = store;
    snprintf(buf, cap, "rocksdb (C API, defaults + increase_parallelism), %s", st->mode);
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
    .describe = rdb_describe,
    .strerror = rdb_strerror,
};

#else
typedef int bench_rocksdb_absent; /* keeps the translation unit non-empty */
#endif
