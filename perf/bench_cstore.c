/* cstore-bench driver for cstore itself, through the public API only.
 *
 * One cs_db per run, in collection "bench". A thread handle holds a cs_session of the depth
 * the thread asked for (none for depth 1, which uses the blocking calls), the completions of
 * its last reap (their values are released at the next reap), and with --batch N > 1 (blocking
 * calls only) one cs_batch per shard: a put or delete goes into the batch of its key's shard
 * (cs_key_shard), which is written with cs_write once it holds N operations (or is full), the
 * way a bulk loader would use cstore; the peers' drivers commit a transaction every N writes.
 * Without --batch, concurrent writers are grouped by the shards' group commit. Durability,
 * shards, cpuset and --set are
 * cs_options_set names. A cursor is opened per seek, as the peers' drivers do. persist
 * (--persist) is cs_checkpoint: every shard writes its trees to a checkpoint file and syncs it,
 * so that everything written is on disk whatever the durability (it is not available with
 * durability none, which writes nothing to the folder).
 * Transactions are cs_txn: txn_begin is cs_txn_begin (BENCH_TXN_READONLY: CS_TXN_READONLY, a
 * snapshot), gets and puts are cs_txn_get and cs_txn_put (cstore's transactions are optimistic:
 * for_update changes nothing), commit is cs_txn_commit, whose CS_ECONFLICT is BENCH_CONFLICT; a
 * cursor inside a read-only transaction is cs_txn_cursor_open. A thread with a session submits
 * commits with cs_session_commit, many in flight. The phase note sums the shards' transaction
 * counters (cs_stats) since the open: how many transactions spanned shards, how many the shards
 * refused. Durability stays cstore's default (sync) unless --durability says otherwise. */
#include "bench.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cstore.h"

#define CSB_COLL "bench"
#define CSB_OPT_NAME_MAX 64u

struct csb_thread {
    cs_db *db;
    cs_session *session;                       /* NULL for blocking use */
    cs_batch **batches;                        /* one per shard with --batch > 1, else NULL */
    unsigned nbatches;                         /* shards */
    unsigned batch;                            /* operations per cs_write */
    struct cs_completion done[BENCH_REAP_MAX]; /* completions of the last reap */
    unsigned done_count;                       /* entries of done holding values to free */
};

struct csb_cursor {
    cs_cursor *cursor;
    int started; /* positioned: cs_cursor_first or a seek was called */
    int pending; /* a seek's result (0 or CS_ENOTFOUND) is for the next scan_next to return */
    int seek_rc; /* that result */
};

static int csb_set(cs_options *o, const char *name, const char *value)
{
    int rc = cs_options_set(o, name, value);
    if (rc != 0)
        fprintf(stderr, "cstore-bench: option %s=%s: %s\n", name, value, cs_strerror(rc));
    return rc;
}

static int csb_open(const struct bench_config *cfg, void **store)
{
    cs_options *o = cs_options_new();
    if (o == NULL)
        return -ENOMEM;
    int rc = 0;
    if (cfg->durability != NULL)
        rc = csb_set(o, "durability", cfg->durability);
    if (rc == 0 && cfg->shards != NULL)
        rc = csb_set(o, "shards", cfg->shards);
    if (rc == 0 && cfg->cpuset != NULL)
        rc = csb_set(o, "cpuset", cfg->cpuset);
    for (unsigned i = 0; rc == 0 && i < cfg->set_count; i++) {
        const char *eq = strchr(cfg->sets[i], '=');
        size_t n = eq != NULL ? (size_t)(eq - cfg->sets[i]) : 0;
        char name[CSB_OPT_NAME_MAX + 1];
        if (eq == NULL || n == 0 || n > CSB_OPT_NAME_MAX) {
            fprintf(stderr, "cstore-bench: --set %s: expected NAME=VALUE\n", cfg->sets[i]);
            rc = CS_EOPTION;
            break;
        }
        memcpy(name, cfg->sets[i], n);
        name[n] = '\0';
        rc = csb_set(o, name, eq + 1);
    }
    cs_db *db = NULL;
    if (rc == 0)
        rc = cs_open(cfg->db_path, o, &db);
    cs_options_free(o);
    if (rc != 0)
        return rc;
    *store = db;
    return 0;
}

/* With CSTORE_BENCH_STATS set, each shard's WAL frames, records and checkpoints go to stderr at
 * close: the records per frame show how well group commit gathered the writes. */
static int csb_close(void *store)
{
    if (getenv("CSTORE_BENCH_STATS"))
        for (unsigned i = 0; i < cs_shard_count(store); i++) {
            struct cs_shard_stats st;
            if (cs_stats(store, i, &st) == 0)
                fprintf(stderr, "shard %u: frames %llu records %llu loops %llu checkpoints %llu\n",
                        i, (unsigned long long)st.wal_frames, (unsigned long long)st.wal_records,
                        (unsigned long long)st.loops, (unsigned long long)st.checkpoints);
        }
    return cs_close(store);
}

static int csb_thread_open(void *store, unsigned depth, unsigned batch, void **th)
{
    struct csb_thread *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->db = store;
    if (depth <= 1 && batch > 1) {
        t->batch = batch < CS_BATCH_OPS_MAX ? batch : CS_BATCH_OPS_MAX;
        t->nbatches = cs_shard_count(t->db);
        t->batches = calloc(t->nbatches, sizeof(*t->batches));
        for (unsigned i = 0; t->batches != NULL && i < t->nbatches; i++)
            if ((t->batches[i] = cs_batch_new()) == NULL) {
                while (i > 0)
                    cs_batch_free(t->batches[--i]);
                free(t->batches);
                t->batches = NULL;
            }
        if (t->batches == NULL) {
            free(t);
            return -ENOMEM;
        }
    }
    if (depth > 1) {
        int rc = cs_session_open(t->db, depth, &t->session);
        if (rc != 0) {
            free(t);
            return rc;
        }
    }
    *th = t;
    return 0;
}

static void csb_release_done(struct csb_thread *t)
{
    for (unsigned i = 0; i < t->done_count; i++)
        cs_free(t->done[i].val);
    t->done_count = 0;
}

/* Write the batch of one shard (if it holds anything) and empty it. */
static int csb_write(struct csb_thread *t, unsigned shard)
{
    cs_batch *b = t->batches[shard];
    if (cs_batch_count(b) == 0)
        return 0;
    int rc = cs_write(t->db, b);
    cs_batch_clear(b);
    return rc;
}

static int csb_flush(void *th)
{
    struct csb_thread *t = th;
    int first = 0;
    for (unsigned i = 0; t->batches != NULL && i < t->nbatches; i++) {
        int rc = csb_write(t, i);
        if (first == 0)
            first = rc;
    }
    return first;
}

static int csb_add(cs_batch *b, bool del, const void *key, size_t klen, const void *val,
                   size_t vlen)
{
    return del ? cs_batch_del(b, CSB_COLL, key, klen)
               : cs_batch_put(b, CSB_COLL, key, klen, val, vlen);
}

/* Add a put or delete to the batch of key's shard, writing the batch when it is full. */
static int csb_batched(struct csb_thread *t, bool del, const void *key, size_t klen,
                       const void *val, size_t vlen)
{
    unsigned shard = 0;
    int krc = cs_key_shard(t->db, key, klen, &shard);
    if (krc)
        return krc;
    cs_batch *b = t->batches[shard];
    int rc = csb_add(b, del, key, klen, val, vlen);
    if (rc == CS_EBATCH) { /* over the byte limit: write what it holds, then add */
        rc = csb_write(t, shard);
        if (rc == 0)
            rc = csb_add(b, del, key, klen, val, vlen);
    }
    if (rc == 0 && cs_batch_count(b) >= t->batch)
        rc = csb_write(t, shard);
    return rc;
}

static void csb_thread_close(void *th)
{
    struct csb_thread *t = th;
    csb_release_done(t);
    for (unsigned i = 0; t->batches != NULL && i < t->nbatches; i++)
        cs_batch_free(t->batches[i]);
    free(t->batches);
    if (t->session != NULL)
        cs_session_close(t->session);
    free(t);
}

static int csb_put(void *th, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct csb_thread *t = th;
    if (t->batches != NULL)
        return csb_batched(t, false, key, klen, val, vlen);
    return cs_put(t->db, CSB_COLL, key, klen, val, vlen);
}

static int csb_get(void *th, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen)
{
    struct csb_thread *t = th;
    void *v = NULL;
    int rc = cs_get(t->db, CSB_COLL, key, klen, &v, vlen);
    if (rc == CS_ENOTFOUND)
        return BENCH_NOTFOUND;
    if (rc != 0)
        return rc;
    if (*vlen > 0) /* v is NULL for an empty value */
        memcpy(buf, v, *vlen < cap ? *vlen : cap);
    cs_free(v);
    return 0;
}

static int csb_del(void *th, const void *key, size_t klen)
{
    struct csb_thread *t = th;
    if (t->batches != NULL)
        return csb_batched(t, true, key, klen, NULL, 0);
    int rc = cs_del(t->db, CSB_COLL, key, klen);
    return rc == CS_ENOTFOUND ? BENCH_NOTFOUND : rc;
}

static int csb_submit_put(void *th, const void *key, size_t klen, const void *val, size_t vlen,
                          uint64_t tag)
{
    struct csb_thread *t = th;
    return cs_session_put(t->session, CSB_COLL, key, klen, val, vlen, tag);
}

static int csb_submit_get(void *th, const void *key, size_t klen, uint64_t tag)
{
    struct csb_thread *t = th;
    return cs_session_get(t->session, CSB_COLL, key, klen, tag);
}

static int csb_submit_del(void *th, const void *key, size_t klen, uint64_t tag)
{
    struct csb_thread *t = th;
    return cs_session_del(t->session, CSB_COLL, key, klen, tag);
}

/* cstore's result code as the driver's: CS_ENOTFOUND and CS_ECONFLICT are not errors. */
static int csb_rc(int rc)
{
    if (rc == CS_ENOTFOUND)
        return BENCH_NOTFOUND;
    return rc == CS_ECONFLICT ? BENCH_CONFLICT : rc;
}

static int csb_reap(void *th, struct bench_done *out, unsigned max, unsigned min)
{
    struct csb_thread *t = th;
    csb_release_done(t);
    if (max > BENCH_REAP_MAX)
        max = BENCH_REAP_MAX;
    int n = cs_session_poll(t->session, t->done, max, min);
    if (n < 0)
        return n;
    t->done_count = (unsigned)n;
    for (int i = 0; i < n; i++) {
        out[i].tag = t->done[i].user_data;
        out[i].rc = csb_rc(t->done[i].rc);
        out[i].val = t->done[i].val;
        out[i].vlen = t->done[i].vlen;
    }
    return n;
}

static int csb_scan_open(void *th, void **cursor)
{
    struct csb_thread *t = th;
    struct csb_cursor *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    int rc = cs_cursor_open(t->db, CSB_COLL, &c->cursor);
    if (rc != 0) {
        free(c);
        return rc;
    }
    *cursor = c;
    return 0;
}

static int csb_scan_seek(void *cursor, const void *key, size_t klen)
{
    struct csb_cursor *c = cursor;
    int rc = cs_cursor_seek(c->cursor, key, klen);
    if (rc != 0 && rc != CS_ENOTFOUND)
        return rc;
    c->started = 1;
    c->pending = 1;
    c->seek_rc = rc;
    return 0;
}

static int csb_scan_next(void *cursor, const void **key, size_t *klen, const void **val,
                         size_t *vlen)
{
    struct csb_cursor *c = cursor;
    int rc;
    if (c->pending)
        rc = c->seek_rc;
    else
        rc = c->started ? cs_cursor_next(c->cursor) : cs_cursor_first(c->cursor);
    c->started = 1;
    c->pending = 0;
    if (rc == CS_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    rc = cs_cursor_key(c->cursor, key, klen);
    if (rc == 0)
        rc = cs_cursor_value(c->cursor, val, vlen);
    return rc != 0 ? rc : 1;
}

static void csb_scan_close(void *cursor)
{
    struct csb_cursor *c = cursor;
    cs_cursor_close(c->cursor);
    free(c);
}

static int csb_txn_begin(void *th, unsigned flags, void **txn)
{
    struct csb_thread *t = th;
    cs_txn *x = NULL;
    int rc = cs_txn_begin(t->db, (flags & BENCH_TXN_READONLY) ? CS_TXN_READONLY : 0, &x);
    if (rc != 0)
        return csb_rc(rc);
    *txn = x;
    return 0;
}

static int csb_txn_get(void *txn, const void *key, size_t klen, int for_update, void *buf,
                       size_t cap, size_t *vlen)
{
    (void)for_update; /* optimistic: every read is validated at commit */
    void *v = NULL;
    int rc = cs_txn_get(txn, CSB_COLL, key, klen, &v, vlen);
    if (rc != 0)
        return csb_rc(rc);
    if (*vlen > 0) /* v is NULL for an empty value */
        memcpy(buf, v, *vlen < cap ? *vlen : cap);
    cs_free(v);
    return 0;
}

static int csb_txn_put(void *txn, const void *key, size_t klen, const void *val, size_t vlen)
{
    return csb_rc(cs_txn_put(txn, CSB_COLL, key, klen, val, vlen));
}

static int csb_txn_commit(void *txn)
{
    return csb_rc(cs_txn_commit(txn));
}

static void csb_txn_abort(void *txn)
{
    cs_txn_abort(txn);
}

static int csb_txn_scan_open(void *txn, void **cursor)
{
    struct csb_cursor *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    int rc = cs_txn_cursor_open(txn, CSB_COLL, &c->cursor);
    if (rc != 0) {
        free(c);
        return rc;
    }
    *cursor = c;
    return 0;
}

static int csb_txn_submit_commit(void *th, void *txn, uint64_t tag)
{
    struct csb_thread *t = th;
    return csb_rc(cs_session_commit(t->session, txn, tag));
}

static int csb_key_shard(void *store, const void *key, size_t klen, unsigned *shard)
{
    return cs_key_shard(store, key, klen, shard);
}

/* The shards' transaction counters since the open, when there were transactions: commits on
 * the shards (a cross-shard transaction counts on each participant), cross-shard transactions
 * (each once), and transactions the shards refused (CS_ECONFLICT). */
static void csb_phase_note(void *store, char *buf, size_t cap)
{
    cs_db *db = store;
    uint64_t commits = 0, cross = 0, refused = 0;
    for (unsigned i = 0; i < cs_shard_count(db); i++) {
        struct cs_shard_stats st;
        if (cs_stats(db, i, &st) != 0)
            continue;
        commits += st.txn_commits;
        cross += st.txn_cross_commits;
        refused += st.txn_conflicts;
    }
    buf[0] = '\0';
    if (commits + refused > 0)
        snprintf(buf, cap,
                 "since open: shard transaction commits %llu, cross-shard transactions %llu, "
                 "refused %llu",
                 (unsigned long long)commits, (unsigned long long)cross,
                 (unsigned long long)refused);
}

static int csb_persist(void *store)
{
    return cs_checkpoint(store);
}

/* Version, shards, and what the open recovered (records replayed from the WAL, and the
 * longest shard's recovery time), so that a reopen run reports its replay. */
static void csb_describe(void *store, char *buf, size_t cap)
{
    cs_db *db = store;
    unsigned shards = cs_shard_count(db);
    uint64_t records = 0, recovery_us = 0;
    for (unsigned i = 0; i < shards; i++) {
        struct cs_shard_stats st;
        if (cs_stats(db, i, &st) != 0)
            continue;
        records += st.recovered_records;
        if (st.recovery_us > recovery_us)
            recovery_us = st.recovery_us;
    }
    snprintf(buf, cap, "cstore %s, %u shards, replayed %llu WAL records in %.1f ms",
             CS_VERSION_STRING, shards, (unsigned long long)records, (double)recovery_us / 1e3);
}

const struct bench_engine bench_engine_cstore = {
    .name = "cstore",
    .open = csb_open,
    .close = csb_close,
    .thread_open = csb_thread_open,
    .flush = csb_flush,
    .thread_close = csb_thread_close,
    .put = csb_put,
    .get = csb_get,
    .del = csb_del,
    .submit_put = csb_submit_put,
    .submit_get = csb_submit_get,
    .submit_del = csb_submit_del,
    .reap = csb_reap,
    .scan_open = csb_scan_open,
    .scan_seek = csb_scan_seek,
    .scan_next = csb_scan_next,
    .scan_close = csb_scan_close,
    .persist = csb_persist,
    .phase_note = csb_phase_note,
    .describe = csb_describe,
    .strerror = cs_strerror,
    .txn_begin = csb_txn_begin,
    .txn_get = csb_txn_get,
    .txn_put = csb_txn_put,
    .txn_commit = csb_txn_commit,
    .txn_abort = csb_txn_abort,
    .txn_scan_open = csb_txn_scan_open,
    .txn_submit_commit = csb_txn_submit_commit,
    .key_shard = csb_key_shard,
};
