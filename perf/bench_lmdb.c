/* cstore-bench driver for LMDB, through its C API (lmdb.h, Debian liblmdb-dev).
 *
 * One MDB_env per run on the store folder (data.mdb, lock.mdb), its unnamed database, a map of
 * LMDB_MAP_BYTES (sparse: only written pages take disk) and MDB_NOTLS, so that a thread's read
 * transaction is not tied to thread-local storage. Each thread keeps one read transaction that
 * it renews for a get or a cursor and resets after (the cheap path the LMDB docs recommend).
 * Writes: LMDB has one writer at a time; with batch 1 every put or delete is its own write
 * transaction, with batch N a thread commits every N writes (a bulk load in few transactions;
 * other writers wait for the commit, as LMDB makes them).
 * Durability: sync (the default, as cstore's) = LMDB's default, a commit fsyncs the data and
 * then the meta page; async = MDB_NOSYNC, commits reach the page cache only and a crash may
 * lose the last ones (LMDB has no periodic sync of its own; the OS writes back); none =
 * MDB_NOSYNC | MDB_NOMETASYNC, which LMDB treats as async (both skip every sync). persist
 * (--persist) is mdb_env_sync(force): everything committed is on disk when it returns.
 * Expert settings, all in lmdb_open: MDB_WRITEMAP when the measured phases write in batches
 * (--batch > 1, the bulk load): a write transaction then changes the memory-mapped pages in
 * place instead of copying each dirty page from malloc'ed memory at commit, LMDB's fastest
 * load (its docs and benchmarks); read transactions are renewed, never recreated (above).
 * Transactions: a read-write one is one LMDB write transaction (mdb_txn_begin, mdb_get and
 * mdb_put inside it, mdb_txn_commit, durable as any commit), so writers take turns and never
 * conflict; a read-only one is the thread's read transaction, renewed (mdb_txn_renew) and reset
 * at its end, never recreated, with its gets and cursor inside it.
 * LMDB has no asynchronous calls: the driver is blocking only. Error codes: errno values as
 * -errno, MDB_* codes (already negative) as they are. When the Makefile found no lmdb.h this
 * file compiles to nothing. */
#include "bench.h"

#ifdef BENCH_HAVE_LMDB

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LMDB_MAP_BYTES (64ull << 30)              /* address space reserved for the map */
#define LMDB_READERS_MAX (BENCH_THREADS_MAX + 16) /* reader slots: one per thread, and spare */

struct lmdb_store {
    MDB_env *env;
    MDB_dbi dbi;
    const char *mode; /* durability as described */
    int writemap;     /* opened with MDB_WRITEMAP */
};

struct lmdb_thread {
    struct lmdb_store *st;
    MDB_txn *rtxn;    /* read transaction, reset between uses */
    MDB_txn *wtxn;    /* open write transaction of a batch or a transaction, or NULL */
    unsigned batch;   /* writes per write transaction */
    unsigned pending; /* writes in wtxn (a batch's) */
    int txn_readonly; /* the open transaction (txn_begin) is rtxn, renewed */
};

struct lmdb_cursor {
    struct lmdb_thread *t;
    MDB_cursor *cur;
    int owns_txn;   /* it renewed the read transaction and resets it at close */
    MDB_val k, v;   /* the current record */
    int started;    /* positioned by a seek or the first scan_next */
    int pending;    /* a seek positioned it: the next scan_next returns its result */
    int pending_rc; /* that result */
};

/* LMDB's code as this program's: MDB_* codes are negative already, errno values are not. */
static int lmdb_rc(int rc)
{
    return rc > 0 ? -rc : rc;
}

static int lmdb_open(const struct bench_config *cfg, void **store)
{
    struct lmdb_store *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return -ENOMEM;
    const char *d = cfg->durability != NULL ? cfg->durability : "sync";
    unsigned flags = MDB_NOTLS;
    st->mode = "default (sync at commit)";
    st->writemap = cfg->batch > 1;
    if (st->writemap)
        flags |= MDB_WRITEMAP;
    if (strcmp(d, "async") == 0) {
        flags |= MDB_NOSYNC;
        st->mode = "MDB_NOSYNC";
    } else if (strcmp(d, "none") == 0) {
        flags |= MDB_NOSYNC | MDB_NOMETASYNC;
        st->mode = "MDB_NOSYNC|MDB_NOMETASYNC";
    }
    MDB_txn *txn = NULL;
    int rc = mdb_env_create(&st->env);
    if (rc != 0) {
        free(st);
        return lmdb_rc(rc);
    }
    rc = mdb_env_set_mapsize(st->env, LMDB_MAP_BYTES);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(st->env, LMDB_READERS_MAX);
    if (rc == 0)
        rc = mdb_env_open(st->env, cfg->db_path, flags, 0644);
    if (rc == 0)
        rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, NULL, 0, &st->dbi);
    if (txn != NULL) {
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    if (rc != 0) {
        mdb_env_close(st->env);
        free(st);
        return lmdb_rc(rc);
    }
    *store = st;
    return 0;
}

static int lmdb_close(void *store)
{
    struct lmdb_store *st = store;
    int rc = mdb_env_sync(st->env, 1); /* what async and none left in the page cache */
    mdb_env_close(st->env);
    free(st);
    return lmdb_rc(rc);
}

static int lmdb_persist(void *store)
{
    struct lmdb_store *st = store;
    return lmdb_rc(mdb_env_sync(st->env, 1));
}

static int lmdb_thread_open(void *store, unsigned depth, unsigned batch, void **th)
{
    (void)depth;
    struct lmdb_thread *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->st = store;
    t->batch = batch > 1 ? batch : 1;
    int rc = mdb_txn_begin(t->st->env, NULL, MDB_RDONLY, &t->rtxn);
    if (rc != 0) {
        free(t);
        return lmdb_rc(rc);
    }
    mdb_txn_reset(t->rtxn);
    *th = t;
    return 0;
}

static int lmdb_flush(void *th)
{
    struct lmdb_thread *t = th;
    if (t->wtxn == NULL)
        return 0;
    int rc = mdb_txn_commit(t->wtxn);
    t->wtxn = NULL;
    t->pending = 0;
    return lmdb_rc(rc);
}

static void lmdb_thread_close(void *th)
{
    struct lmdb_thread *t = th;
    if (t->wtxn != NULL)
        mdb_txn_abort(t->wtxn);
    mdb_txn_abort(t->rtxn);
    free(t);
}

/* One write (put when val != NULL, else delete) in the thread's write transaction. */
static int lmdb_write(struct lmdb_thread *t, const void *key, size_t klen, const void *val,
                      size_t vlen)
{
    if (t->wtxn == NULL) {
        int rc = mdb_txn_begin(t->st->env, NULL, 0, &t->wtxn);
        if (rc != 0) {
            t->wtxn = NULL;
            return lmdb_rc(rc);
        }
    }
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    MDB_val v = {.mv_size = vlen, .mv_data = (void *)val};
    int rc = val != NULL ? mdb_put(t->wtxn, t->st->dbi, &k, &v, 0)
                         : mdb_del(t->wtxn, t->st->dbi, &k, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        mdb_txn_abort(t->wtxn); /* a failed write leaves the transaction unusable */
        t->wtxn = NULL;
        t->pending = 0;
        return lmdb_rc(rc);
    }
    int frc = ++t->pending >= t->batch ? lmdb_flush(t) : 0;
    if (frc != 0)
        return frc;
    return rc == MDB_NOTFOUND ? BENCH_NOTFOUND : 0;
}

static int lmdb_put(void *th, const void *key, size_t klen, const void *val, size_t vlen)
{
    static const char empty[1] = {0};
    return lmdb_write(th, key, klen, val != NULL ? val : empty, vlen);
}

static int lmdb_del(void *th, const void *key, size_t klen)
{
    return lmdb_write(th, key, klen, NULL, 0);
}

static int lmdb_get(void *th, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen)
{
    struct lmdb_thread *t = th;
    int rc = mdb_txn_renew(t->rtxn);
    if (rc != 0)
        return lmdb_rc(rc);
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key}, v;
    rc = mdb_get(t->rtxn, t->st->dbi, &k, &v);
    if (rc == 0) {
        *vlen = v.mv_size;
        memcpy(buf, v.mv_data, v.mv_size < cap ? v.mv_size : cap);
    }
    mdb_txn_reset(t->rtxn);
    return rc == MDB_NOTFOUND ? BENCH_NOTFOUND : lmdb_rc(rc);
}

static int lmdb_scan_open(void *th, void **cursor)
{
    struct lmdb_thread *t = th;
    struct lmdb_cursor *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->t = t;
    c->owns_txn = 1;
    int rc = mdb_txn_renew(t->rtxn);
    if (rc == 0) {
        rc = mdb_cursor_open(t->rtxn, t->st->dbi, &c->cur);
        if (rc != 0)
            mdb_txn_reset(t->rtxn);
    }
    if (rc != 0) {
        free(c);
        return lmdb_rc(rc);
    }
    *cursor = c;
    return 0;
}

static int lmdb_scan_seek(void *cursor, const void *key, size_t klen)
{
    struct lmdb_cursor *c = cursor;
    c->k.mv_size = klen;
    c->k.mv_data = (void *)key;
    int rc = mdb_cursor_get(c->cur, &c->k, &c->v, MDB_SET_RANGE);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmdb_rc(rc);
    c->started = 1;
    c->pending = 1;
    c->pending_rc = rc;
    return 0;
}

static int lmdb_scan_next(void *cursor, const void **key, size_t *klen, const void **val,
                          size_t *vlen)
{
    struct lmdb_cursor *c = cursor;
    int rc;
    if (c->pending)
        rc = c->pending_rc;
    else
        rc = mdb_cursor_get(c->cur, &c->k, &c->v, c->started ? MDB_NEXT : MDB_FIRST);
    c->started = 1;
    c->pending = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return lmdb_rc(rc);
    *key = c->k.mv_data;
    *klen = c->k.mv_size;
    *val = c->v.mv_data;
    *vlen = c->v.mv_size;
    return 1;
}

static void lmdb_scan_close(void *cursor)
{
    struct lmdb_cursor *c = cursor;
    mdb_cursor_close(c->cur);
    if (c->owns_txn)
        mdb_txn_reset(c->t->rtxn);
    free(c);
}

static int lmdb_txn_begin(void *th, unsigned flags, void **txn)
{
    struct lmdb_thread *t = th;
    int rc = lmdb_flush(t); /* a batch still open */
    if (rc != 0)
        return rc;
    t->txn_readonly = (flags & BENCH_TXN_READONLY) != 0;
    rc = t->txn_readonly ? mdb_txn_renew(t->rtxn) : mdb_txn_begin(t->st->env, NULL, 0, &t->wtxn);
    if (rc != 0) {
        t->wtxn = NULL;
        return lmdb_rc(rc);
    }
    *txn = t;
    return 0;
}

static int lmdb_txn_get(void *txn, const void *key, size_t klen, int for_update, void *buf,
                        size_t cap, size_t *vlen)
{
    (void)for_update; /* the write transaction excludes every other writer already */
    struct lmdb_thread *t = txn;
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key}, v;
    int rc = mdb_get(t->txn_readonly ? t->rtxn : t->wtxn, t->st->dbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return BENCH_NOTFOUND;
    if (rc != 0)
        return lmdb_rc(rc);
    *vlen = v.mv_size;
    memcpy(buf, v.mv_data, v.mv_size < cap ? v.mv_size : cap);
    return 0;
}

static int lmdb_txn_put(void *txn, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct lmdb_thread *t = txn;
    if (t->txn_readonly)
        return -EINVAL;
    static const char empty[1] = {0};
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    MDB_val v = {.mv_size = vlen, .mv_data = (void *)(val != NULL ? val : empty)};
    return lmdb_rc(mdb_put(t->wtxn, t->st->dbi, &k, &v, 0));
}

static int lmdb_txn_commit(void *txn)
{
    struct lmdb_thread *t = txn;
    if (t->txn_readonly) {
        mdb_txn_reset(t->rtxn);
        return 0;
    }
    int rc = mdb_txn_commit(t->wtxn); /* frees the transaction, also on error */
    t->wtxn = NULL;
    return lmdb_rc(rc);
}

static void lmdb_txn_abort(void *txn)
{
    struct lmdb_thread *t = txn;
    if (t->txn_readonly) {
        mdb_txn_reset(t->rtxn);
        return;
    }
    mdb_txn_abort(t->wtxn);
    t->wtxn = NULL;
}

static int lmdb_txn_scan_open(void *txn, void **cursor)
{
    struct lmdb_thread *t = txn;
    if (!t->txn_readonly)
        return -ENOTSUP; /* the workloads seek in read-only transactions only */
    struct lmdb_cursor *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->t = t;
    int rc = mdb_cursor_open(t->rtxn, t->st->dbi, &c->cur);
    if (rc != 0) {
        free(c);
        return lmdb_rc(rc);
    }
    *cursor = c;
    return 0;
}

static void lmdb_describe(void *store, char *buf, size_t cap)
{
    struct lmdb_store *st = store;
    int major = 0, minor = 0, patch = 0;
    mdb_version(&major, &minor, &patch);
    snprintf(buf, cap,
             "lmdb %d.%d.%d (Debian package), %s%s, MDB_NOTLS, map %llu GiB, read transactions "
             "renewed (mdb_txn_reset/renew)",
             major, minor, patch, st->mode, st->writemap ? ", MDB_WRITEMAP (batched loads)" : "",
             LMDB_MAP_BYTES >> 30);
}

static const char *lmdb_strerror(int rc)
{
    if (rc <= MDB_KEYEXIST && rc >= MDB_LAST_ERRCODE)
        return mdb_strerror(rc);
    return rc < 0 ? mdb_strerror(-rc) : "not an error";
}

const struct bench_engine bench_engine_lmdb = {
    .name = "lmdb",
    .open = lmdb_open,
    .close = lmdb_close,
    .thread_open = lmdb_thread_open,
    .flush = lmdb_flush,
    .thread_close = lmdb_thread_close,
    .put = lmdb_put,
    .get = lmdb_get,
    .del = lmdb_del,
    .scan_open = lmdb_scan_open,
    .scan_seek = lmdb_scan_seek,
    .scan_next = lmdb_scan_next,
    .scan_close = lmdb_scan_close,
    .persist = lmdb_persist,
    .describe = lmdb_describe,
    .strerror = lmdb_strerror,
    .txn_begin = lmdb_txn_begin,
    .txn_get = lmdb_txn_get,
    .txn_put = lmdb_txn_put,
    .txn_commit = lmdb_txn_commit,
    .txn_abort = lmdb_txn_abort,
    .txn_scan_open = lmdb_txn_scan_open,
};

#else
typedef int bench_lmdb_absent; /* keeps the translation unit non-empty */
#endif
