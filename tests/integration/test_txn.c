/* Integration tests of transactions (cs_txn_*) and of batches that span shards (cs_write): atomic
 * commit across shards and across reopen, read-your-writes, the classic anomalies that optimistic
 * validation must refuse (write skew, lost update, a read of an absent key then an insert), many
 * threads moving money between accounts on different shards (the total never changes, every
 * commit is counted), limits and misuse, and crashes at the commit's decision point: a process
 * killed with every PREPARE durable comes back committed; one killed after a participant voted no
 * comes back with nothing applied. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cstore.h"
#include "tests/test_util.h"

#define SHARDS "2"

static char root[CST_PATH_MAX];
static char dbdir[CST_PATH_MAX + 32];
static int dbseq;

static void fresh_dir(void)
{
    snprintf(dbdir, sizeof(dbdir), "%s/db%d", root, dbseq++);
}

static cs_db *open_db(const char *durability)
{
    char d[32];
    snprintf(d, sizeof(d), "durability=%s", durability);
    cs_db *db = NULL;
    int rc = cst_open(dbdir, &db, "shards=" SHARDS, d, NULL);
    if (rc)
        fail_msg("cs_open(%s): %s (%s)", dbdir, cs_strerror(rc), cs_last_error());
    return db;
}

/* Key "<prefix><i>" for the first i >= from that lives on shard. */
static void key_on(cs_db *db, unsigned shard, const char *prefix, int from, char *out, size_t size)
{
    for (int i = from; i < from + 100000; i++) {
        snprintf(out, size, "%s%d", prefix, i);
        if (cst_key_shard(db, out, strlen(out)) == shard)
            return;
    }
    fail_msg("no key on shard %u", shard);
}

static void check_value(cs_db *db, const char *coll, const char *key, const char *want)
{
    void *v = NULL;
    size_t n = 0;
    int rc = cs_get(db, coll, key, strlen(key), &v, &n);
    if (!want) {
        assert_int_equal(rc, CS_ENOTFOUND);
        return;
    }
    if (rc)
        fail_msg("get %s/%s: %s", coll, key, cs_strerror(rc));
    assert_int_equal(n, strlen(want));
    assert_memory_equal(v, want, n);
    cs_free(v);
}

static long get_long(cs_db *db, const char *coll, const char *key)
{
    void *v = NULL;
    size_t n = 0;
    int rc = cs_get(db, coll, key, strlen(key), &v, &n);
    if (rc)
        fail_msg("get %s/%s: %s", coll, key, cs_strerror(rc));
    char buf[32];
    assert_true(n < sizeof(buf));
    memcpy(buf, v, n);
    buf[n] = '\0';
    cs_free(v);
    return strtol(buf, NULL, 10);
}

static void put_str(cs_db *db, const char *coll, const char *k, const char *v)
{
    assert_int_equal(cs_put(db, coll, k, strlen(k), v, strlen(v)), 0);
}

/* In a transaction: read key as a number (absent: 0). */
static int txn_get_long(cs_txn *t, const char *coll, const char *key, long *out)
{
    void *v = NULL;
    size_t n = 0;
    int rc = cs_txn_get(t, coll, key, strlen(key), &v, &n);
    if (rc == CS_ENOTFOUND) {
        *out = 0;
        return 0;
    }
    if (rc)
        return rc;
    char buf[32];
    assert_true(n < sizeof(buf));
    memcpy(buf, v, n);
    buf[n] = '\0';
    cs_free(v);
    *out = strtol(buf, NULL, 10);
    return 0;
}

static int txn_put_long(cs_txn *t, const char *coll, const char *key, long val)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld", val);
    return cs_txn_put(t, coll, key, strlen(key), buf, (size_t)n);
}

/* ---- batches across shards ---- */

static void test_batch_across_shards_commits_atomically_and_replays(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync");
    char k0[16], k1[16];
    key_on(db, 0, "b", 0, k0, sizeof(k0));
    key_on(db, 1, "b", 0, k1, sizeof(k1));
    put_str(db, "t", k1, "old");
    cs_batch *b = cs_batch_new();
    assert_non_null(b);
    assert_int_equal(cs_batch_put(b, "t", k0, strlen(k0), "x0", 2), 0);
    assert_int_equal(cs_batch_put(b, "t", k1, strlen(k1), "x1", 2), 0);
    assert_int_equal(cs_batch_put(b, "u", k1, strlen(k1), "new coll", 8), 0);
    assert_int_equal(cs_batch_del(b, "t", "absent", 6), 0);
    assert_int_equal(cs_write(db, b), 0);
    check_value(db, "t", k0, "x0");
    check_value(db, "t", k1, "x1");
    check_value(db, "u", k1, "new coll");
    struct cs_shard_stats st0, st1;
    assert_int_equal(cs_stats(db, 0, &st0), 0);
    assert_int_equal(cs_stats(db, 1, &st1), 0);
    assert_true(st0.txn_commits >= 1 && st1.txn_commits >= 1);
    assert_int_equal(st0.txn_cross_commits + st1.txn_cross_commits, 1);
    /* a delete across shards too */
    cs_batch_clear(b);
    assert_int_equal(cs_batch_del(b, "t", k0, strlen(k0)), 0);
    assert_int_equal(cs_batch_put(b, "t", k1, strlen(k1), "x2", 2), 0);
    assert_int_equal(cs_write(db, b), 0);
    check_value(db, "t", k0, NULL);
    assert_int_equal(cs_close(db), 0);
    db = open_db("sync"); /* PREPARE and COMMIT records replay */
    check_value(db, "t", k0, NULL);
    check_value(db, "t", k1, "x2");
    check_value(db, "u", k1, "new coll");
    /* after a checkpoint too */
    assert_int_equal(cs_checkpoint(db), 0);
    assert_int_equal(cs_close(db), 0);
    db = open_db("sync");
    check_value(db, "t", k1, "x2");
    cs_batch_free(b);
    assert_int_equal(cs_close(db), 0);
}

/* ---- blind batches across shards never conflict ----
 * Writer threads commit cs_write batches that set four keys (two per shard) to one tag, while
 * other threads run interactive transactions that read the four keys and set them to a tag of
 * their own (retrying on CS_ECONFLICT), all on the same keys. A batch reads nothing, so it must
 * never be refused for a conflict; snapshots (read-only transactions and cursors) must always
 * see the four keys equal: every batch and transaction whole. */
#define BLIND_KEYS 4
#define BLIND_WRITERS 40
#define BLIND_BATCHES 20
#define BLIND_TXNS 4
#define BLIND_TXN_COMMITS 30

struct blind {
    cs_db *db;
    char (*keys)[16]; /* BLIND_KEYS, two on each shard */
    int id;
    long conflicts; /* cs_write's CS_ECONFLICT (must stay 0) */
    long retries;   /* interactive: conflicts retried */
    long bad;       /* readers: snapshots that were not whole */
    long reads;
    int error;
};

static _Atomic int blind_done;

static void *blind_writer_main(void *arg)
{
    struct blind *w = arg;
    cs_batch *b = cs_batch_new();
    if (!b) {
        w->error = -ENOMEM;
        return NULL;
    }
    for (int i = 0; i < BLIND_BATCHES && !w->error; i++) {
        char tag[32];
        int n = snprintf(tag, sizeof(tag), "w%d-%d", w->id, i);
        cs_batch_clear(b);
        for (int k = 0; k < BLIND_KEYS && !w->error; k++)
            w->error = cs_batch_put(b, "blind", w->keys[k], strlen(w->keys[k]), tag, (size_t)n);
        int rc = w->error ? 0 : cs_write(w->db, b);
        if (rc == CS_ECONFLICT)
            w->conflicts++;
        else if (rc)
            w->error = rc;
    }
    cs_batch_free(b);
    return NULL;
}

static void *blind_txn_main(void *arg)
{
    struct blind *w = arg;
    for (int i = 0; i < BLIND_TXN_COMMITS && !w->error;) {
        cs_txn *t = NULL;
        int rc = cs_txn_begin(w->db, 0, &t);
        char tag[32];
        int n = snprintf(tag, sizeof(tag), "t%d-%d", w->id, i);
        for (int k = 0; k < BLIND_KEYS && !rc; k++) {
            void *v = NULL;
            size_t vlen = 0;
            rc = cs_txn_get(t, "blind", w->keys[k], strlen(w->keys[k]), &v, &vlen);
            cs_free(v);
        }
        for (int k = 0; k < BLIND_KEYS && !rc; k++)
            rc = cs_txn_put(t, "blind", w->keys[k], strlen(w->keys[k]), tag, (size_t)n);
        if (rc) {
            cs_txn_abort(t);
            w->error = rc;
            break;
        }
        rc = cs_txn_commit(t);
        if (rc == CS_ECONFLICT) {
            w->retries++;
            continue;
        }
        if (rc)
            w->error = rc;
        i++;
    }
    return NULL;
}

/* A read-only transaction's four reads, then a cursor's walk: each must find one tag. */
static void *blind_reader_main(void *arg)
{
    struct blind *w = arg;
    while (!atomic_load(&blind_done) && !w->error) {
        char seen[BLIND_KEYS][32];
        size_t len[BLIND_KEYS];
        cs_txn *t = NULL;
        int rc = cs_txn_begin(w->db, CS_TXN_READONLY, &t);
        for (int k = 0; k < BLIND_KEYS && !rc; k++) {
            void *v = NULL;
            rc = cs_txn_get(t, "blind", w->keys[k], strlen(w->keys[k]), &v, &len[k]);
            if (!rc && len[k] < sizeof(seen[k]))
                memcpy(seen[k], v, len[k]);
            cs_free(v);
        }
        if (t)
            cs_txn_abort(t);
        if (rc) {
            w->error = rc;
            break;
        }
        w->reads++;
        for (int k = 1; k < BLIND_KEYS; k++)
            if (len[k] != len[0] || memcmp(seen[k], seen[0], len[0]) != 0) {
                w->bad++;
                break;
            }
        cs_cursor *c = NULL;
        if ((rc = cs_cursor_open(w->db, "blind", &c))) {
            w->error = rc;
            break;
        }
        int n = 0;
        for (rc = cs_cursor_first(c); rc == 0; rc = cs_cursor_next(c), n++) {
            const void *v;
            size_t vl;
            if (cs_cursor_value(c, &v, &vl) || vl >= sizeof(seen[0])) {
                w->error = CS_ECORRUPT;
                break;
            }
            if (n == 0) {
                memcpy(seen[0], v, vl);
                len[0] = vl;
            } else if (vl != len[0] || memcmp(v, seen[0], vl) != 0) {
                w->bad++;
                break;
            }
        }
        cs_cursor_close(c);
    }
    return NULL;
}

static void test_blind_batches_across_shards_never_conflict(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync");
    char keys[BLIND_KEYS][16];
    for (int k = 0; k < BLIND_KEYS; k++) {
        key_on(db, (unsigned)(k % 2), "bk", k * 1000, keys[k], sizeof(keys[k]));
        put_str(db, "blind", keys[k], "init");
    }
    enum { N = BLIND_WRITERS + BLIND_TXNS + 1 };
    struct blind w[N];
    pthread_t th[N];
    atomic_store(&blind_done, 0);
    for (int i = 0; i < N; i++) {
        w[i] = (struct blind){.db = db, .keys = keys, .id = i};
        void *(*fn)(void *) = i < BLIND_WRITERS                ? blind_writer_main
                              : i < BLIND_WRITERS + BLIND_TXNS ? blind_txn_main
                                                               : blind_reader_main;
        assert_int_equal(pthread_create(&th[i], NULL, fn, &w[i]), 0);
    }
    long conflicts = 0, retries = 0;
    for (int i = 0; i < N - 1; i++) {
        pthread_join(th[i], NULL);
        if (w[i].error)
            fail_msg("thread %d: %s", i, cs_strerror(w[i].error));
        conflicts += w[i].conflicts;
        retries += w[i].retries;
    }
    atomic_store(&blind_done, 1);
    pthread_join(th[N - 1], NULL);
    struct blind *rd = &w[N - 1];
    if (rd->error)
        fail_msg("reader: %s", cs_strerror(rd->error));
    print_message("blind batches: %d, conflicts %ld; transactions: %d, retries %ld; snapshots "
                  "%ld\n",
                  BLIND_WRITERS * BLIND_BATCHES, conflicts, BLIND_TXNS * BLIND_TXN_COMMITS, retries,
                  rd->reads);
    if (conflicts)
        fail_msg("%ld of %d cross-shard batches were refused with CS_ECONFLICT", conflicts,
                 BLIND_WRITERS * BLIND_BATCHES);
    if (rd->bad)
        fail_msg("%ld of %ld snapshots saw part of a batch", rd->bad, rd->reads);
    /* the last writer's tag is on every key, also after reopen */
    void *v0 = NULL;
    size_t n0 = 0;
    assert_int_equal(cs_get(db, "blind", keys[0], strlen(keys[0]), &v0, &n0), 0);
    char last[32];
    assert_true(n0 < sizeof(last));
    memcpy(last, v0, n0);
    last[n0] = '\0';
    cs_free(v0);
    for (int k = 1; k < BLIND_KEYS; k++)
        check_value(db, "blind", keys[k], last);
    assert_int_equal(cs_close(db), 0);
    db = open_db("sync");
    for (int k = 0; k < BLIND_KEYS; k++)
        check_value(db, "blind", keys[k], last);
    assert_int_equal(cs_close(db), 0);
}

/* ---- interactive transactions ---- */

static void test_reads_own_writes_and_abort_discards(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync");
    char k0[16], k1[16];
    key_on(db, 0, "r", 0, k0, sizeof(k0));
    key_on(db, 1, "r", 0, k1, sizeof(k1));
    put_str(db, "t", k0, "before");
    cs_txn *t = NULL;
    assert_int_equal(cs_txn_begin(db, 0, &t), 0);
    long v = -1;
    assert_int_equal(txn_put_long(t, "t", k1, 7), 0);
    assert_int_equal(txn_get_long(t, "t", k1, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(txn_put_long(t, "t", k1, 8), 0); /* replaces its own write */
    assert_int_equal(txn_get_long(t, "t", k1, &v), 0);
    assert_int_equal(v, 8);
    assert_int_equal(cs_txn_del(t, "t", k0, strlen(k0)), 0);
    void *val = NULL;
    size_t n = 0;
    assert_int_equal(cs_txn_get(t, "t", k0, strlen(k0), &val, &n), CS_ENOTFOUND);
    check_value(db, "t", k0, "before"); /* nothing is visible before commit */
    check_value(db, "t", k1, NULL);
    cs_txn_abort(t);
    check_value(db, "t", k0, "before");
    check_value(db, "t", k1, NULL);
    assert_int_equal(cs_txn_begin(db, 0, &t), 0);
    assert_int_equal(txn_put_long(t, "t", k1, 9), 0);
    assert_int_equal(cs_txn_del(t, "t", k0, strlen(k0)), 0);
    assert_int_equal(cs_txn_commit(t), 0);
    check_value(db, "t", k0, NULL);
    check_value(db, "t", k1, "9");
    assert_int_equal(cs_close(db), 0);
}

/* Two doctors on call, each on another shard (or both on one): each transaction checks that the
 * other is on call, then goes off call. Serializable execution lets only one of them commit. */
static void write_skew(cs_db *db, const char *a, const char *b)
{
    put_str(db, "oncall", a, "1");
    put_str(db, "oncall", b, "1");
    cs_txn *t1 = NULL, *t2 = NULL;
    assert_int_equal(cs_txn_begin(db, 0, &t1), 0);
    assert_int_equal(cs_txn_begin(db, 0, &t2), 0);
    long va, vb;
    assert_int_equal(txn_get_long(t1, "oncall", a, &va), 0);
    assert_int_equal(txn_get_long(t1, "oncall", b, &vb), 0);
    assert_int_equal(va + vb, 2);
    assert_int_equal(txn_get_long(t2, "oncall", a, &va), 0);
    assert_int_equal(txn_get_long(t2, "oncall", b, &vb), 0);
    assert_int_equal(va + vb, 2);
    assert_int_equal(txn_put_long(t1, "oncall", a, 0), 0);
    assert_int_equal(txn_put_long(t2, "oncall", b, 0), 0);
    assert_int_equal(cs_txn_commit(t1), 0);
    assert_int_equal(cs_txn_commit(t2), CS_ECONFLICT);
    assert_int_equal(get_long(db, "oncall", a) + get_long(db, "oncall", b), 1);
}

static void test_write_skew_is_refused(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync");
    char a[16], b[16], c[16];
    key_on(db, 0, "doc", 0, a, sizeof(a));
    key_on(db, 1, "doc", 0, b, sizeof(b));
    write_skew(db, a, b); /* two shards: prepare, validate, vote */
    key_on(db, 0, "doc", atoi(a + 3) + 1, c, sizeof(c));
    write_skew(db, a, c); /* one shard: validate and apply in one step */
    struct cs_shard_stats st;
    assert_int_equal(cs_stats(db, 0, &st), 0);
    assert_true(st.txn_conflicts >= 1);
    assert_int_equal(cs_close(db), 0);
}

/* A transaction that saw a key absent conflicts with an insert of it (one shard and two). */
static void test_read_of_absent_key_then_insert_conflicts(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync");
    char k0[16], k1[16];
    key_on(db, 0, "ab", 0, k0, sizeof(k0));
    key_on(db, 1, "ab", 0, k1, sizeof(k1));
    for (int two = 0; two < 2; two++) {
        cs_txn *t = NULL;
        assert_int_equal(cs_txn_begin(db, 0, &t), 0);
        long v;
        assert_int_equal(txn_get_long(t, two ? "p2" : "p1", k0, &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(txn_put_long(t, two ? "p2" : "p1", two ? k1 : k0, 5), 0);
        put_str(db, two ? "p2" : "p1", k0, "3"); /* the phantom */
        assert_int_equal(cs_txn_commit(t), CS_ECONFLICT);
        if (two)
            check_value(db, "p2", k1, NULL);
    }
    assert_int_equal(cs_close(db), 0);
}

/* ---- concurrency: transfers between shards ---- */

#define ACCOUNTS 8
static _Atomic int transfers_done;
#define TRANSFERS 300
#define THREADS 4

struct bank {
    cs_db *db;
    char acct[ACCOUNTS][16];
    int seed;
    long commits;
    long conflicts;
    int error;
};

static void *transfer_main(void *arg)
{
    struct bank *bk = arg;
    unsigned s = (unsigned)bk->seed * 2654435761u + 1;
    for (int i = 0; i < TRANSFERS && !bk->error;) {
        s = s * 1103515245u + 12345u;
        int from = (int)((s >> 8) % ACCOUNTS), to = (int)((s >> 16) % ACCOUNTS);
        if (from == to)
            continue;
        cs_txn *t = NULL;
        int rc = cs_txn_begin(bk->db, 0, &t);
        long a = 0, b = 0;
        if (!rc)
            rc = txn_get_long(t, "bank", bk->acct[from], &a);
        if (!rc)
            rc = txn_get_long(t, "bank", bk->acct[to], &b);
        if (!rc)
            rc = txn_put_long(t, "bank", bk->acct[from], a - 1);
        if (!rc)
            rc = txn_put_long(t, "bank", bk->acct[to], b + 1);
        if (rc) {
            cs_txn_abort(t);
            bk->error = rc;
            break;
        }
        rc = cs_txn_commit(t);
        if (rc == CS_ECONFLICT) {
            bk->conflicts++;
            continue;
        }
        if (rc) {
            bk->error = rc;
            break;
        }
        bk->commits++;
        i++;
    }
    return NULL;
}

/* Readers sum every account with plain gets while transfers run: a get never shows part of a
 * committed transfer, so sums read one account at a time may differ from the total only by
 * transfers in flight; the total itself is checked exactly at the end and after reopen. */
/* A cursor over every account, opened again and again while transfers commit, always sums to
 * the total: no cursor sees part of a transfer. */
struct summer {
    cs_db *db;
    char (*acct)[16];
    long sums;
    long bad;
    long last_bad;
    int error;
};

/* The same through read-only transactions, which read a snapshot and never abort. */
static long ro_sum(struct summer *sm)
{
    cs_txn *t = NULL;
    int rc = cs_txn_begin(sm->db, CS_TXN_READONLY, &t);
    long total = 0;
    for (int a = 0; a < ACCOUNTS && !rc; a++) {
        long v = 0;
        rc = txn_get_long(t, "bank", sm->acct[a], &v);
        total += v;
    }
    if (t) {
        int crc = cs_txn_commit(t);
        rc = rc ? rc : crc;
    }
    if (rc)
        sm->error = rc;
    return total;
}

static void *sum_main(void *arg)
{
    struct summer *sm = arg;
    for (long i = 0; !atomic_load(&transfers_done) && !sm->error; i++) {
        if (i & 1) {
            long total = ro_sum(sm);
            sm->sums++;
            if (!sm->error && total != 100 * ACCOUNTS) {
                sm->bad++;
                sm->last_bad = total;
            }
            continue;
        }
        cs_cursor *c = NULL;
        int rc = cs_cursor_open(sm->db, "bank", &c);
        if (rc) {
            sm->error = rc;
            break;
        }
        long total = 0;
        for (rc = cs_cursor_first(c); rc == 0; rc = cs_cursor_next(c)) {
            const void *v;
            size_t n;
            char buf[32];
            if (cs_cursor_value(c, &v, &n) || n >= sizeof(buf)) {
                sm->error = CS_ECORRUPT;
                break;
            }
            memcpy(buf, v, n);
            buf[n] = '\0';
            total += strtol(buf, NULL, 10);
        }
        cs_cursor_close(c);
        sm->sums++;
        if (total != 100 * ACCOUNTS) {
            sm->bad++;
            sm->last_bad = total;
        }
    }
    return NULL;
}

/* Checkpoints while transfers commit: each waits until no transaction is prepared or settling
 * on its shard (their PREPAREs must stay in the log), so none may hang or lose a transfer. */

static void *checkpoint_main(void *arg)
{
    cs_db *db = arg;
    long n = 0;
    while (!atomic_load(&transfers_done)) {
        int rc = cs_checkpoint(db);
        if (rc)
            fail_msg("checkpoint during transfers: %s", cs_strerror(rc));
        n++;
    }
    return (void *)n;
}

static void test_transfers_between_shards_keep_the_total(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = NULL;
    int orc = cst_open(dbdir, &db, "shards=" SHARDS, "durability=sync",
                       "checkpoint_wal_bytes=65536", NULL);
    if (orc)
        fail_msg("open: %s", cs_strerror(orc));
    struct bank bk[THREADS];
    memset(bk, 0, sizeof(bk));
    for (int a = 0; a < ACCOUNTS; a++) {
        key_on(db, (unsigned)(a % 2), "acct", a * 1000, bk[0].acct[a], sizeof(bk[0].acct[a]));
        put_str(db, "bank", bk[0].acct[a], "100");
    }
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        bk[i].db = db;
        bk[i].seed = i + 1;
        memcpy(bk[i].acct, bk[0].acct, sizeof(bk[0].acct));
        assert_int_equal(pthread_create(&th[i], NULL, transfer_main, &bk[i]), 0);
    }
    atomic_store(&transfers_done, 0);
    pthread_t ck, sum;
    assert_int_equal(pthread_create(&ck, NULL, checkpoint_main, db), 0);
    struct summer sm = {.db = db, .acct = bk[0].acct};
    assert_int_equal(pthread_create(&sum, NULL, sum_main, &sm), 0);
    long commits = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        if (bk[i].error)
            fail_msg("transfer thread %d: %s", i, cs_strerror(bk[i].error));
        commits += bk[i].commits;
    }
    atomic_store(&transfers_done, 1);
    void *ckn = NULL;
    pthread_join(ck, &ckn);
    pthread_join(sum, NULL);
    if (sm.error)
        fail_msg("summing cursor: %s", cs_strerror(sm.error));
    assert_true(sm.sums > 0);
    if (sm.bad)
        fail_msg("%ld of %ld cursor sums saw part of a transfer (last %ld)", sm.bad, sm.sums,
                 sm.last_bad);
    assert_true((long)ckn > 0);
    assert_int_equal(commits, THREADS * TRANSFERS);
    struct cs_shard_stats st;
    assert_int_equal(cs_stats(db, 0, &st), 0);
    assert_true(st.checkpoints > 0);
    long total = 0;
    for (int a = 0; a < ACCOUNTS; a++)
        total += get_long(db, "bank", bk[0].acct[a]);
    assert_int_equal(total, 100 * ACCOUNTS);
    assert_int_equal(cs_close(db), 0);
    db = open_db("sync");
    total = 0;
    for (int a = 0; a < ACCOUNTS; a++)
        total += get_long(db, "bank", bk[0].acct[a]);
    assert_int_equal(total, 100 * ACCOUNTS);
    assert_int_equal(cs_close(db), 0);
}

/* Concurrent increments of one counter pair (one key per shard): each commit adds exactly one to
 * both; nothing is lost. Plain puts to the same keys meanwhile wait for the locks instead of
 * failing. */
static void *increment_main(void *arg)
{
    struct bank *bk = arg;
    for (int i = 0; i < 100 && !bk->error;) {
        cs_txn *t = NULL;
        int rc = cs_txn_begin(bk->db, 0, &t);
        long a = 0, b = 0;
        if (!rc)
            rc = txn_get_long(t, "ctr", bk->acct[0], &a);
        if (!rc)
            rc = txn_get_long(t, "ctr", bk->acct[1], &b);
        if (!rc)
            rc = txn_put_long(t, "ctr", bk->acct[0], a + 1);
        if (!rc)
            rc = txn_put_long(t, "ctr", bk->acct[1], b + 1);
        if (rc) {
            cs_txn_abort(t);
            bk->error = rc;
            break;
        }
        rc = cs_txn_commit(t);
        if (rc == CS_ECONFLICT)
            continue;
        if (rc) {
            bk->error = rc;
            break;
        }
        i++;
    }
    return NULL;
}

static void test_concurrent_increments_lose_nothing(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync");
    struct bank bk[THREADS];
    memset(bk, 0, sizeof(bk));
    key_on(db, 0, "c", 0, bk[0].acct[0], sizeof(bk[0].acct[0]));
    key_on(db, 1, "c", 0, bk[0].acct[1], sizeof(bk[0].acct[1]));
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        bk[i].db = db;
        memcpy(bk[i].acct, bk[0].acct, sizeof(bk[0].acct));
        assert_int_equal(pthread_create(&th[i], NULL, increment_main, &bk[i]), 0);
    }
    /* plain writes to another collection's keys of the same names never wait for long, and
     * plain writes to the locked keys themselves are parked, not refused */
    for (int i = 0; i < 50; i++)
        put_str(db, "ctr-side", bk[0].acct[i % 2], "x");
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        if (bk[i].error)
            fail_msg("increment thread %d: %s", i, cs_strerror(bk[i].error));
    }
    assert_int_equal(get_long(db, "ctr", bk[0].acct[0]), 100 * THREADS);
    assert_int_equal(get_long(db, "ctr", bk[0].acct[1]), 100 * THREADS);
    assert_int_equal(cs_close(db), 0);
}

/* A plain put of a key a prepared transaction holds waits for it, then applies after it. */
static void *plain_writer_main(void *arg)
{
    struct bank *bk = arg;
    for (int i = 0; i < 200 && !bk->error; i++) {
        int rc = cs_put(bk->db, "ctr", bk->acct[0], strlen(bk->acct[0]), "0", 1);
        if (rc)
            bk->error = rc;
    }
    return NULL;
}

static void test_plain_writes_wait_for_prepared_keys(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync");
    struct bank bk[2];
    memset(bk, 0, sizeof(bk));
    key_on(db, 0, "w", 0, bk[0].acct[0], sizeof(bk[0].acct[0]));
    key_on(db, 1, "w", 0, bk[0].acct[1], sizeof(bk[0].acct[1]));
    bk[0].db = bk[1].db = db;
    memcpy(bk[1].acct, bk[0].acct, sizeof(bk[0].acct));
    pthread_t a, b;
    assert_int_equal(pthread_create(&a, NULL, increment_main, &bk[0]), 0);
    assert_int_equal(pthread_create(&b, NULL, plain_writer_main, &bk[1]), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    if (bk[0].error || bk[1].error)
        fail_msg("%s / %s", cs_strerror(bk[0].error), cs_strerror(bk[1].error));
    assert_int_equal(get_long(db, "ctr", bk[0].acct[1]), 100); /* no plain write touched it */
    assert_int_equal(cs_close(db), 0);
}

/* Batches over two shards, written one after another with increasing numbers, while a reader
 * gets the two keys one at a time: once a get shows batch v on one shard, a later get of the
 * other key shows v or newer (no half-installed batch is ever visible). Blind batches from two
 * threads on the same keys never interleave: both keys end with the same batch. */
struct seq {
    cs_db *db;
    char k[2][16];
    int n;
    int id;
    long violations;
    long reads;
    long stale; /* own writes not read back */
    _Atomic int done;
    _Atomic int error;
};

static void *seq_writer_main(void *arg)
{
    struct seq *q = arg;
    cs_batch *b = cs_batch_new();
    for (int v = 1; v <= q->n && !q->error; v++) {
        char val[32];
        int n = snprintf(val, sizeof(val), "%d", q->id * 1000000 + v);
        cs_batch_clear(b);
        int rc = cs_batch_put(b, "seq", q->k[0], strlen(q->k[0]), val, (size_t)n);
        if (!rc)
            rc = cs_batch_put(b, "seq", q->k[1], strlen(q->k[1]), val, (size_t)n);
        do
            rc = rc ? rc : cs_write(q->db, b);
        while (rc == CS_ECONFLICT && (rc = 0, 1)); /* a lock held by the other writer: retry */
        q->error = rc;
        if (!rc && q->id == 0) /* the only writer reads its own write back at once */
            for (int i = 0; i < 2; i++)
                if (get_long(q->db, "seq", q->k[i]) != v)
                    q->stale++;
    }
    cs_batch_free(b);
    atomic_store(&q->done, 1);
    return NULL;
}

/* Plain puts on both shards keep frames in flight while batches install. */
static void *side_writer_main(void *arg)
{
    struct seq *q = arg;
    for (int i = 0; !atomic_load(&q->done) && !q->error; i++)
        q->error = cs_put(q->db, "seq-side", q->k[i & 1], strlen(q->k[i & 1]), "x", 1);
    return NULL;
}

static void *seq_reader_main(void *arg)
{
    struct seq *q = arg;
    for (int i = 0; !atomic_load(&q->done) && !q->error; i++) {
        int first = i & 1;
        long a = get_long(q->db, "seq", q->k[first]);
        long b = get_long(q->db, "seq", q->k[!first]);
        q->violations += b < a;
        q->reads++;
    }
    return NULL;
}

static void gets_never_see_half_a_batch(const char *durability)
{
    fresh_dir();
    cs_db *db = open_db(durability);
    struct seq q;
    memset(&q, 0, sizeof(q));
    q.db = db;
    q.n = 400;
    key_on(db, 0, "s", 0, q.k[0], sizeof(q.k[0]));
    key_on(db, 1, "s", 0, q.k[1], sizeof(q.k[1]));
    put_str(db, "seq", q.k[0], "0");
    put_str(db, "seq", q.k[1], "0");
    pthread_t w, r, side;
    assert_int_equal(pthread_create(&w, NULL, seq_writer_main, &q), 0);
    assert_int_equal(pthread_create(&r, NULL, seq_reader_main, &q), 0);
    assert_int_equal(pthread_create(&side, NULL, side_writer_main, &q), 0);
    pthread_join(w, NULL);
    pthread_join(r, NULL);
    pthread_join(side, NULL);
    if (q.error)
        fail_msg("writer: %s", cs_strerror(q.error));
    assert_true(q.reads > 0);
    if (q.stale)
        fail_msg("%ld reads after a committed batch missed it", q.stale);
    if (q.violations)
        fail_msg("%ld of %ld read pairs saw half a batch", q.violations, q.reads);
    assert_int_equal(get_long(db, "seq", q.k[0]), 400);
    assert_int_equal(get_long(db, "seq", q.k[1]), 400);
    /* two blind writers on the same keys */
    struct seq w2[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        memset(&w2[i], 0, sizeof(w2[i]));
        w2[i].db = db;
        w2[i].n = 200;
        w2[i].id = i + 1;
        memcpy(w2[i].k, q.k, sizeof(q.k));
        assert_int_equal(pthread_create(&th[i], NULL, seq_writer_main, &w2[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        if (w2[i].error)
            fail_msg("writer %d: %s", i, cs_strerror(w2[i].error));
    }
    assert_int_equal(get_long(db, "seq", q.k[0]), get_long(db, "seq", q.k[1]));
    assert_int_equal(cs_close(db), 0);
}

static void test_gets_never_see_half_a_committed_batch(void **state)
{
    (void)state;
    gets_never_see_half_a_batch("sync");
    gets_never_see_half_a_batch("async"); /* gets are answered at once: the window is widest */
}

/* Batches that write the same number to a key of collection "ma" and a key of "mb" (on one
 * shard, or on two), while readers read both keys: read-only transactions (one snapshot over
 * every collection) and read-write transactions that commit (their reads are validated; from
 * views while they are fresh) must see both keys equal. */
struct mix {
    cs_db *db;
    char k[2][16];
    int n;
    _Atomic long reads, bad; /* two readers count */
    _Atomic int done;
    _Atomic int error;
};

static void *mix_writer_main(void *arg)
{
    struct mix *m = arg;
    cs_batch *b = cs_batch_new();
    for (int v = 1; v <= m->n && !m->error; v++) {
        char val[16];
        int n = snprintf(val, sizeof(val), "%d", v);
        cs_batch_clear(b);
        int rc = cs_batch_put(b, "ma", m->k[0], strlen(m->k[0]), val, (size_t)n);
        if (!rc)
            rc = cs_batch_put(b, "mb", m->k[1], strlen(m->k[1]), val, (size_t)n);
        do /* a cross-shard batch meets a reader's read marks: retry */
            rc = rc ? rc : cs_write(m->db, b);
        while (rc == CS_ECONFLICT && (rc = 0, 1));
        if (rc)
            m->error = rc;
    }
    cs_batch_free(b);
    atomic_store(&m->done, 1);
    return NULL;
}

static void *mix_reader_main(void *arg)
{
    struct mix *m = arg;
    for (long i = 0; !atomic_load(&m->done) && !m->error; i++) {
        bool ro = i & 1;
        cs_txn *t = NULL;
        long a = 0, b = 0;
        int rc = cs_txn_begin(m->db, ro ? CS_TXN_READONLY : 0, &t);
        if (!rc)
            rc = txn_get_long(t, "ma", m->k[0], &a);
        if (!rc)
            rc = txn_get_long(t, "mb", m->k[1], &b);
        if (!rc && !ro)
            rc = txn_put_long(t, "mc", m->k[0], i);
        if (rc) {
            cs_txn_abort(t);
            m->error = rc;
            break;
        }
        rc = cs_txn_commit(t);
        if (rc == CS_ECONFLICT)
            continue;
        if (rc) {
            m->error = rc;
            break;
        }
        atomic_fetch_add(&m->reads, 1);
        atomic_fetch_add(&m->bad, a != b);
    }
    return NULL;
}

static void snapshots_span_collections(const char *durability, unsigned shard_b)
{
    fresh_dir();
    cs_db *db = open_db(durability);
    struct mix m;
    memset(&m, 0, sizeof(m));
    m.db = db;
    m.n = strcmp(durability, "sync") == 0 ? 150 : 600;
    key_on(db, 0, "m", 0, m.k[0], sizeof(m.k[0]));
    key_on(db, shard_b, "m", 1000, m.k[1], sizeof(m.k[1]));
    put_str(db, "ma", m.k[0], "0");
    put_str(db, "mb", m.k[1], "0");
    pthread_t w, r[2];
    assert_int_equal(pthread_create(&w, NULL, mix_writer_main, &m), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&r[i], NULL, mix_reader_main, &m), 0);
    pthread_join(w, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(r[i], NULL);
    if (m.error)
        fail_msg("%s, shards 0 and %u: %s", durability, shard_b, cs_strerror(m.error));
    assert_true(m.reads > 0);
    if (m.bad)
        fail_msg("%s, shards 0 and %u: %ld of %ld transactions saw half a batch", durability,
                 shard_b, atomic_load(&m.bad), atomic_load(&m.reads));
    assert_int_equal(cs_close(db), 0);
}

static void test_snapshots_span_collections(void **state)
{
    (void)state;
    snapshots_span_collections("async", 0); /* two collections of one shard */
    snapshots_span_collections("async", 1);
    snapshots_span_collections("sync", 0);
    snapshots_span_collections("sync", 1);
}

/* A frame that fails after a cross-shard commit was acknowledged (its COMMIT record is in that
 * frame, nobody waits for it) takes back the frame's changes, but not the committed install:
 * live reads keep showing the whole transaction, and so does the next open. Each fault plan
 * fails the Nth WAL write or fdatasync. */
static int commit_pair(cs_db *db, const char *k0, const char *k1, const char *v)
{
    cs_txn *t = NULL;
    int rc = cs_txn_begin(db, 0, &t);
    if (!rc)
        rc = cs_txn_put(t, "c", k0, strlen(k0), v, 1);
    if (!rc)
        rc = cs_txn_put(t, "c", k1, strlen(k1), v, 1);
    if (rc) {
        cs_txn_abort(t);
        return rc;
    }
    return cs_txn_commit(t);
}

/* What a get of key reads: its one-byte value, '-' when absent, 'E' on an error. */
static char read_byte(cs_db *db, const char *key)
{
    void *v = NULL;
    size_t n = 0;
    int rc = cs_get(db, "c", key, strlen(key), &v, &n);
    char c = rc == CS_ENOTFOUND ? '-' : rc || n != 1 ? 'E' : *(char *)v;
    cs_free(v);
    return c;
}

static void test_failed_frame_keeps_committed_installs(void **state)
{
    (void)state;
    const char *kinds[] = {"fsync_eio", "write_eio", "write_enospc"};
    for (int kind = 0; kind < 3; kind++)
        for (int nth = 1; nth <= 8; nth++) {
            fresh_dir();
            cs_db *db = open_db("sync");
            char k0[16], k1[16];
            key_on(db, 0, "f", 0, k0, sizeof(k0));
            key_on(db, 1, "f", 0, k1, sizeof(k1));
            assert_int_equal(cs_close(db), 0);
            char fault[64];
            snprintf(fault, sizeof(fault), "fault=%s=%d", kinds[kind], nth);
            assert_int_equal(cst_open(dbdir, &db, "shards=" SHARDS, "durability=sync", fault, NULL),
                             0);
            int rc1 = commit_pair(db, k0, k1, "1");
            int rc2 = commit_pair(db, k0, k1, "2");
            char a = read_byte(db, k0), b = read_byte(db, k1);
            if (a != 'E' && b != 'E' && a != b)
                fail_msg("%s: live reads show half a transaction: %c / %c (commits %d, %d)", fault,
                         a, b, rc1, rc2);
            /* a read may fail (CS_EIO: it waited for a frame that failed), never be wrong */
            if (rc2 == 0 && ((a != 'E' && a != '2') || (b != 'E' && b != '2')))
                fail_msg("%s: acknowledged commit 2 not read: %c / %c", fault, a, b);
            if (rc1 == 0 && rc2 != 0 && ((a != 'E' && a != '1') || (b != 'E' && b != '1')))
                fail_msg("%s: acknowledged commit 1 not read: %c / %c (commit 2: %d)", fault, a, b,
                         rc2);
            int crc = cs_close(db); /* CS_EIO when a shard failed */
            assert_true(crc == 0 || crc == CS_EIO);
            db = open_db("sync");
            a = read_byte(db, k0);
            b = read_byte(db, k1);
            if (a != b || (rc2 == 0 && a != '2') || (rc1 == 0 && a == '-'))
                fail_msg("%s: after reopen %c / %c (commits %d, %d)", fault, a, b, rc1, rc2);
            assert_int_equal(cs_close(db), 0);
        }
}

/* A batch across shards while one participant's WAL write fails: ENOSPC refuses it whole and
 * the shards stay writable (the same batch then commits); EIO refuses it, and whatever the next
 * open decides, it is all of the batch or none of it. */
static void test_batch_across_shards_under_enospc_and_eio(void **state)
{
    (void)state;
    const char *faults[] = {"fault=write_enospc=1", "fault=write_enospc=2", "fault=write_eio=1",
                            "fault=write_eio=2"};
    for (int f = 0; f < 4; f++) {
        fresh_dir();
        cs_db *db = open_db("sync");
        char k0[16], k1[16];
        key_on(db, 0, "e", 0, k0, sizeof(k0));
        key_on(db, 1, "e", 0, k1, sizeof(k1));
        assert_int_equal(cs_close(db), 0);
        assert_int_equal(cst_open(dbdir, &db, "shards=" SHARDS, "durability=sync", faults[f], NULL),
                         0);
        cs_batch *b = cs_batch_new();
        assert_int_equal(cs_batch_put(b, "c", k0, strlen(k0), "x", 1), 0); /* read_byte's */
        assert_int_equal(cs_batch_put(b, "c", k1, strlen(k1), "x", 1), 0);
        int rc = cs_write(db, b);
        bool enospc = f < 2;
        if (enospc) {
            assert_int_equal(rc, -ENOSPC);
            assert_int_equal(read_byte(db, k0), '-'); /* nothing of it */
            assert_int_equal(read_byte(db, k1), '-');
            assert_int_equal(cs_write(db, b), 0); /* still writable */
            assert_int_equal(read_byte(db, k0), 'x');
            assert_int_equal(read_byte(db, k1), 'x');
        } else {
            assert_int_equal(rc, CS_EIO);
        }
        int crc = cs_close(db);
        assert_true(crc == 0 || crc == CS_EIO);
        db = open_db("sync");
        char a = read_byte(db, k0), c = read_byte(db, k1);
        if (a != c || (enospc && a != 'x'))
            fail_msg("%s: after reopen %c / %c", faults[f], a, c);
        assert_int_equal(cs_close(db), 0);
        cs_batch_free(b);
    }
}

/* Commits through a session: one thread keeps many in flight; each completion carries what
 * cs_txn_commit would have returned. Transactions on distinct keys all commit; two that read and
 * write the same key, in flight together, cannot both. */
static void test_session_commits_many_in_flight(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync");
    cs_session *s = NULL;
    assert_int_equal(cs_session_open(db, 16, &s), 0);
    int submitted = 0, reaped = 0, ok = 0;
    struct cs_completion comp[16];
    while (reaped < 200) {
        while (submitted < 200 && cs_session_inflight(s) < 16) {
            char a[16], b[16];
            snprintf(a, sizeof(a), "sa%d", submitted);
            snprintf(b, sizeof(b), "sb%d", submitted);
            cs_txn *t = NULL;
            assert_int_equal(cs_txn_begin(db, 0, &t), 0);
            long v;
            assert_int_equal(txn_get_long(t, "sess", a, &v), 0); /* absent: a read to validate */
            assert_int_equal(txn_put_long(t, "sess", a, submitted), 0);
            assert_int_equal(txn_put_long(t, "sess", b, submitted), 0);
            assert_int_equal(cs_session_commit(s, t, (uint64_t)submitted), 0);
            submitted++;
        }
        int n = cs_session_poll(s, comp, 16, 1);
        assert_true(n >= 1);
        for (int i = 0; i < n; i++) {
            if (comp[i].rc)
                fail_msg("commit %llu: %s", (unsigned long long)comp[i].user_data,
                         cs_strerror(comp[i].rc));
            ok++;
        }
        reaped += n;
    }
    assert_int_equal(ok, 200);
    for (int i = 0; i < 200; i += 37) {
        char a[16], b[16];
        snprintf(a, sizeof(a), "sa%d", i);
        snprintf(b, sizeof(b), "sb%d", i);
        assert_int_equal(get_long(db, "sess", a), i);
        assert_int_equal(get_long(db, "sess", b), i);
    }
    /* two in flight on one key: at most one commits */
    cs_txn *t1 = NULL, *t2 = NULL;
    long v;
    assert_int_equal(cs_txn_begin(db, 0, &t1), 0);
    assert_int_equal(cs_txn_begin(db, 0, &t2), 0);
    assert_int_equal(txn_get_long(t1, "sess", "sa1", &v), 0);
    assert_int_equal(txn_get_long(t2, "sess", "sa1", &v), 0);
    assert_int_equal(txn_put_long(t1, "sess", "sa1", v + 1), 0);
    assert_int_equal(txn_put_long(t2, "sess", "sa1", v + 1), 0);
    assert_int_equal(txn_put_long(t1, "sess", "sb7", 1), 0); /* across shards too, maybe */
    assert_int_equal(cs_session_commit(s, t1, 1), 0);
    assert_int_equal(cs_session_commit(s, t2, 2), 0);
    assert_int_equal(cs_session_poll(s, comp, 16, 2), 2);
    int committed = (comp[0].rc == 0) + (comp[1].rc == 0);
    assert_true(committed <= 1);
    for (int i = 0; i < 2; i++)
        assert_true(comp[i].rc == 0 || comp[i].rc == CS_ECONFLICT);
    assert_int_equal(get_long(db, "sess", "sa1"), v + committed);
    /* bad arguments free the transaction and submit nothing */
    assert_int_equal(cs_txn_begin(db, 0, &t1), 0);
    assert_int_equal(cs_session_commit(NULL, t1, 0), CS_EINVAL);
    assert_int_equal(cs_session_commit(s, NULL, 0), CS_EINVAL);
    assert_int_equal(cs_session_inflight(s), 0);
    cs_session_close(s);
    assert_int_equal(cs_close(db), 0);
}

/* A transaction's request that meets a prepared transaction's lock waits for its outcome (the
 * younger one waits for the older one) and is then validated again. One thread owns three
 * sessions, so the first transaction cannot decide before its session is polled: the other two
 * meet its locks for certain. A blind cross-shard write (younger) commits after it; a one-shard
 * commit whose read the first one changed is refused after the wait; a one-shard commit whose
 * read still holds commits after the wait. */
static void test_transactions_wait_for_prepared_locks(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync");
    char k0[16], k1[16], k2[16];
    key_on(db, 0, "w", 0, k0, sizeof(k0));
    key_on(db, 1, "w", 0, k1, sizeof(k1));
    key_on(db, 0, "w", 1000, k2, sizeof(k2));
    put_str(db, "w", k0, "0");
    put_str(db, "w", k1, "0");
    put_str(db, "w", k2, "0");
    cs_session *s[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(cs_session_open(db, 4, &s[i]), 0);
    cs_txn *t[4];
    long v;
    for (int i = 0; i < 4; i++)
        assert_int_equal(cs_txn_begin(db, 0, &t[i]), 0);
    /* the holder: writes k0 and k1 */
    assert_int_equal(txn_put_long(t[0], "w", k0, 1), 0);
    assert_int_equal(txn_put_long(t[0], "w", k1, 1), 0);
    /* a blind write of both keys: waits, then commits after it */
    assert_int_equal(txn_put_long(t[1], "w", k0, 2), 0);
    assert_int_equal(txn_put_long(t[1], "w", k1, 2), 0);
    /* read k0 (0, which the holder changes), write k2: one shard; waits, then refused */
    assert_int_equal(txn_get_long(t[2], "w", k0, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(txn_put_long(t[2], "w", k2, 3), 0);
    /* read k2 (which nobody before it changes), write k0: waits, then commits */
    assert_int_equal(txn_get_long(t[3], "w", k2, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(txn_put_long(t[3], "w", k0, 4), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(cs_session_commit(s[i], t[i], (uint64_t)i), 0);
    struct cs_completion comp;
    int want[4] = {0, 0, CS_ECONFLICT, 0};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(cs_session_poll(s[i], &comp, 1, 1), 1);
        if (comp.rc != want[i])
            fail_msg("transaction %d: %s, expected %s", i, cs_strerror(comp.rc),
                     cs_strerror(want[i]));
    }
    /* in the order they were parked on k0's lock: the blind write, then the last one */
    assert_int_equal(get_long(db, "w", k0), 4);
    assert_int_equal(get_long(db, "w", k1), 2);
    assert_int_equal(get_long(db, "w", k2), 0);
    for (int i = 0; i < 4; i++)
        cs_session_close(s[i]);
    assert_int_equal(cs_close(db), 0);
}

/* A cross-shard commit answers at its decision, before its installs finish: whatever the caller
 * does next must see the transaction whole. Each round commits the same number to a key on each
 * of two shards (through cs_txn_commit, or a session), then reads both at once: plain gets (in
 * both orders), a session's gets, a cursor and a read-only transaction. */
static void read_after_commit_expect(cs_db *db, const char *k0, const char *k1, long want)
{
    if (get_long(db, "rw", k0) != want || get_long(db, "rw", k1) != want)
        fail_msg("get after commit %ld: %ld/%ld", want, get_long(db, "rw", k0),
                 get_long(db, "rw", k1));
}

static void read_after_commit_views(cs_db *db, const char *k0, const char *k1, long want)
{
    cs_cursor *c = NULL;
    assert_int_equal(cs_cursor_open(db, "rw", &c), 0);
    int n = 0;
    for (int rc = cs_cursor_first(c); rc == 0; rc = cs_cursor_next(c), n++) {
        const void *v;
        size_t vl;
        char buf[32];
        assert_int_equal(cs_cursor_value(c, &v, &vl), 0);
        assert_true(vl < sizeof(buf));
        memcpy(buf, v, vl);
        buf[vl] = '\0';
        if (strtol(buf, NULL, 10) != want)
            fail_msg("cursor after commit %ld: %s", want, buf);
    }
    assert_int_equal(n, 2);
    cs_cursor_close(c);
    cs_txn *t = NULL;
    long a = -1, b = -1;
    assert_int_equal(cs_txn_begin(db, CS_TXN_READONLY, &t), 0);
    assert_int_equal(txn_get_long(t, "rw", k1, &b), 0);
    assert_int_equal(txn_get_long(t, "rw", k0, &a), 0);
    assert_int_equal(cs_txn_commit(t), 0);
    if (a != want || b != want)
        fail_msg("read-only transaction after commit %ld: %ld/%ld", want, a, b);
}

static void read_after_commit(const char *durability, long rounds)
{
    fresh_dir();
    cs_db *db = open_db(durability);
    char k0[16], k1[16];
    key_on(db, 0, "r", 0, k0, sizeof(k0));
    key_on(db, 1, "r", 0, k1, sizeof(k1));
    cs_session *s = NULL;
    assert_int_equal(cs_session_open(db, 4, &s), 0);
    for (long i = 1; i <= rounds; i++) {
        cs_txn *t = NULL;
        assert_int_equal(cs_txn_begin(db, 0, &t), 0);
        assert_int_equal(txn_put_long(t, "rw", k0, i), 0);
        assert_int_equal(txn_put_long(t, "rw", k1, i), 0);
        struct cs_completion comp[2];
        if (i % 2) {
            assert_int_equal(cs_txn_commit(t), 0);
        } else {
            assert_int_equal(cs_session_commit(s, t, 0), 0);
            assert_int_equal(cs_session_poll(s, comp, 1, 1), 1);
            assert_int_equal(comp[0].rc, 0);
            /* the session's own gets next */
            assert_int_equal(cs_session_get(s, "rw", k1, strlen(k1), 1), 0);
            assert_int_equal(cs_session_get(s, "rw", k0, strlen(k0), 0), 0);
            assert_int_equal(cs_session_poll(s, comp, 2, 2), 2);
            for (int j = 0; j < 2; j++) {
                char buf[32];
                assert_int_equal(comp[j].rc, 0);
                assert_true(comp[j].vlen < sizeof(buf));
                memcpy(buf, comp[j].val, comp[j].vlen);
                buf[comp[j].vlen] = '\0';
                cs_free(comp[j].val);
                if (strtol(buf, NULL, 10) != i)
                    fail_msg("session get after commit %ld: %s", i, buf);
            }
        }
        switch (i % 3) {
        case 0:
            read_after_commit_expect(db, k0, k1, i);
            break;
        case 1:
            read_after_commit_expect(db, k1, k0, i);
            break;
        default:
            read_after_commit_views(db, k0, k1, i);
            break;
        }
    }
    cs_session_close(s);
    assert_int_equal(cs_close(db), 0);
}

static void test_reads_right_after_a_commit_see_it_whole(void **state)
{
    (void)state;
    read_after_commit("async", 3000); /* votes at once: the installs lag the answer the most */
    read_after_commit("sync", 300);
}

/* ---- transaction cursors ---- */

/* Sum the values of coll's keys in [from, to) through a transaction cursor. */
static long txn_scan_sum(cs_txn *t, const char *coll, const char *from, const char *to, int *n)
{
    cs_cursor *c = NULL;
    assert_int_equal(cs_txn_cursor_open(t, coll, &c), 0);
    long sum = 0;
    *n = 0;
    for (int rc = cs_cursor_seek(c, from, strlen(from)); rc == 0; rc = cs_cursor_next(c)) {
        const void *k, *v;
        size_t kl, vl;
        assert_int_equal(cs_cursor_key(c, &k, &kl), 0);
        assert_int_equal(cs_cursor_value(c, &v, &vl), 0);
        if (memcmp(k, to, kl < strlen(to) ? kl : strlen(to)) >= 0)
            break;
        char buf[32];
        assert_true(vl < sizeof(buf));
        memcpy(buf, v, vl);
        buf[vl] = '\0';
        sum += strtol(buf, NULL, 10);
        (*n)++;
    }
    cs_cursor_close(c);
    return sum;
}

/* A transaction that scanned a range conflicts with an insert into it (a phantom), on one shard
 * and across shards; an insert outside what it walked does not. */
static void test_cursor_ranges_are_validated_no_phantoms(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync");
    for (int i = 0; i < 8; i++) {
        char k[16];
        snprintf(k, sizeof(k), "m%d", i);
        put_str(db, "ph", k, "10");
    }
    for (int round = 0; round < 3; round++) {
        cs_txn *t = NULL;
        assert_int_equal(cs_txn_begin(db, 0, &t), 0);
        int n;
        long sum = txn_scan_sum(t, "ph", "m", "n", &n);
        assert_int_equal(n, 8); /* the scan ran before this round's insert */
        assert_int_equal(txn_put_long(t, "sums", "total", sum), 0);
        if (round == 0)
            put_str(db, "ph", "m35", "5"); /* a phantom inside the walked range */
        else if (round == 1)
            put_str(db, "ph", "a9", "5"); /* outside: before where the walk began (after it, the
                                           * walk ran off the end: that end was seen too) */
        else
            put_str(db, "other", "m4", "7"); /* another collection */
        int rc = cs_txn_commit(t);
        assert_int_equal(rc, round == 0 ? CS_ECONFLICT : 0);
        if (round == 0)
            assert_int_equal(cs_del(db, "ph", "m35", 3), 0);
    }
    assert_int_equal(get_long(db, "sums", "total"), 80);
    /* a change of a walked record conflicts too (its value is in the range's sum) */
    cs_txn *t = NULL;
    assert_int_equal(cs_txn_begin(db, 0, &t), 0);
    int n;
    (void)txn_scan_sum(t, "ph", "m", "n", &n);
    assert_int_equal(txn_put_long(t, "sums", "total", 0), 0);
    put_str(db, "ph", "m2", "11");
    assert_int_equal(cs_txn_commit(t), CS_ECONFLICT);
    assert_int_equal(get_long(db, "sums", "total"), 80);
    assert_int_equal(cs_close(db), 0);
}

/* A transaction cursor shows the transaction's own writes (puts and deletes) over the stored
 * records, in key order both ways; a read-only transaction's cursor reads its snapshot. */
static void test_cursor_reads_own_writes_and_snapshots(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync");
    put_str(db, "c", "a", "1");
    put_str(db, "c", "c", "3");
    put_str(db, "c", "e", "5");
    cs_txn *t = NULL;
    assert_int_equal(cs_txn_begin(db, 0, &t), 0);
    assert_int_equal(cs_txn_put(t, "c", "b", 1, "2", 1), 0);
    assert_int_equal(cs_txn_put(t, "c", "c", 1, "33", 2), 0);
    assert_int_equal(cs_txn_del(t, "c", "e", 1), 0);
    assert_int_equal(cs_txn_put(t, "c", "f", 1, "6", 1), 0);
    cs_cursor *c = NULL;
    assert_int_equal(cs_txn_cursor_open(t, "c", &c), 0);
    const char *want_k[] = {"a", "b", "c", "f"}, *want_v[] = {"1", "2", "33", "6"};
    int i = 0;
    for (int rc = cs_cursor_first(c); rc == 0; rc = cs_cursor_next(c), i++) {
        const void *k, *v;
        size_t kl, vl;
        assert_int_equal(cs_cursor_key(c, &k, &kl), 0);
        assert_int_equal(cs_cursor_value(c, &v, &vl), 0);
        assert_true(i < 4);
        assert_int_equal(kl, 1);
        assert_memory_equal(k, want_k[i], 1);
        assert_int_equal(vl, strlen(want_v[i]));
        assert_memory_equal(v, want_v[i], vl);
    }
    assert_int_equal(i, 4);
    /* backwards from the end, and a turn */
    assert_int_equal(cs_cursor_last(c), 0);
    const void *k;
    size_t kl;
    assert_int_equal(cs_cursor_key(c, &k, &kl), 0);
    assert_memory_equal(k, "f", 1);
    assert_int_equal(cs_cursor_prev(c), 0);
    assert_int_equal(cs_cursor_key(c, &k, &kl), 0);
    assert_memory_equal(k, "c", 1); /* e is deleted by the transaction */
    assert_int_equal(cs_cursor_next(c), 0);
    assert_int_equal(cs_cursor_key(c, &k, &kl), 0);
    assert_memory_equal(k, "f", 1);
    assert_int_equal(cs_cursor_seek(c, "d", 1), 0);
    assert_int_equal(cs_cursor_key(c, &k, &kl), 0);
    assert_memory_equal(k, "f", 1);
    cs_cursor_close(c);
    assert_int_equal(cs_txn_commit(t), 0);
    /* a read-only transaction's cursor: its snapshot, not later writes */
    assert_int_equal(cs_txn_begin(db, CS_TXN_READONLY, &t), 0);
    put_str(db, "c", "d", "4");
    assert_int_equal(cs_txn_cursor_open(t, "c", &c), 0);
    i = 0;
    for (int rc = cs_cursor_first(c); rc == 0; rc = cs_cursor_next(c))
        i++;
    assert_int_equal(i, 4);                /* a b c f, not d */
    assert_int_equal(cs_txn_commit(t), 0); /* the cursor stays readable: it pinned its views */
    assert_int_equal(cs_cursor_first(c), 0);
    cs_cursor_close(c);
    assert_int_equal(cs_txn_cursor_open(NULL, "c", &c), CS_EINVAL);
    assert_int_equal(cs_close(db), 0);
}

/* ---- limits and misuse ---- */

static void test_limits_and_bad_arguments(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("none");
    cs_txn *t = NULL;
    assert_int_equal(cs_txn_begin(NULL, 0, &t), CS_EINVAL);
    assert_int_equal(cs_txn_begin(db, 0, NULL), CS_EINVAL);
    assert_int_equal(cs_txn_begin(db, 0x80, &t), CS_EINVAL);
    assert_int_equal(cs_txn_commit(NULL), CS_EINVAL);
    cs_txn_abort(NULL);
    assert_int_equal(cs_txn_begin(db, CS_TXN_READONLY, &t), 0);
    assert_int_equal(cs_txn_put(t, "t", "k", 1, "v", 1), CS_EINVAL);
    assert_int_equal(cs_txn_del(t, "t", "k", 1), CS_EINVAL);
    assert_int_equal(cs_txn_commit(t), 0); /* nothing read, nothing written */
    assert_int_equal(cs_txn_begin(db, 0, &t), 0);
    assert_int_equal(cs_txn_put(t, "", "k", 1, "v", 1), CS_ENAME);
    assert_int_equal(cs_txn_put(t, "t", "", 0, "v", 1), CS_EKEYSIZE);
    static char big[CS_VALUE_MAX + 1];
    assert_int_equal(cs_txn_put(t, "t", "k", 1, big, sizeof(big)), CS_EVALSIZE);
    void *v = NULL;
    size_t n = 0;
    assert_int_equal(cs_txn_get(t, "t", "k", 1, NULL, &n), CS_EINVAL);
    assert_int_equal(cs_txn_get(t, "t", "k", 1, &v, &n), CS_ENOTFOUND);
    /* past CS_TXN_BYTES_MAX: CS_EBATCH, and the transaction stays usable */
    static char val[CS_VALUE_MAX];
    int rc = 0;
    for (int i = 0; i < 16 && !rc; i++) {
        char k[16];
        snprintf(k, sizeof(k), "big%d", i);
        rc = cs_txn_put(t, "t", k, strlen(k), val, sizeof(val));
    }
    assert_int_equal(rc, CS_EBATCH);
    assert_int_equal(cs_txn_put(t, "t", "small", 5, "v", 1), 0);
    cs_txn_abort(t);
    check_value(db, "t", "small", NULL);
    assert_int_equal(cs_close(db), 0);
}

/* ---- crashes at the decision point ---- */

/* Child: open with txn_crash=1 and commit one transaction over both shards: it writes k0 and k1,
 * or, with no_vote, writes k0 and reads k1, which a plain put changes before the commit (so k1's
 * shard votes no). The plan kills the child at the decision. */
static void crash_child(const char *k0, const char *k1, bool no_vote, const char *fault)
{
    cs_db *db = NULL;
    int rc = cst_open(dbdir, &db, "shards=" SHARDS, "durability=sync", fault, NULL);
    if (rc)
        _exit(10);
    cs_txn *t = NULL;
    if (cs_txn_begin(db, 0, &t))
        _exit(11);
    void *v = NULL;
    size_t n = 0;
    if (no_vote && cs_txn_get(t, "t", k1, strlen(k1), &v, &n) != CS_ENOTFOUND)
        _exit(12);
    if (cs_txn_put(t, "t", k0, strlen(k0), "A", 1) ||
        (!no_vote && cs_txn_put(t, "t", k1, strlen(k1), "B", 1)))
        _exit(13);
    if (no_vote && cs_put(db, "t", k1, strlen(k1), "changed", 7))
        _exit(14);
    int rc2 = cs_txn_commit(t);
    _exit(rc2 ? 16 : 15); /* the plan should have killed us */
}

static void crash_at_decision(bool no_vote, const char *fault)
{
    fresh_dir();
    cs_db *db = open_db("sync");
    char k0[16], k1[16];
    key_on(db, 0, "d", 0, k0, sizeof(k0));
    key_on(db, 1, "d", 0, k1, sizeof(k1));
    assert_int_equal(cs_close(db), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        crash_child(k0, k1, no_vote, fault);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("child did not die at the decision (status %d)", status);
    db = open_db("sync");
    if (no_vote) {
        /* the shard of k1 voted no: nothing of the transaction may be there */
        check_value(db, "t", k0, NULL);
        check_value(db, "t", k1, "changed");
    } else {
        check_value(db, "t", k0, "A");
        check_value(db, "t", k1, "B");
    }
    assert_int_equal(cs_close(db), 0);
    db = open_db("sync"); /* the outcome was made durable at the first reopen */
    check_value(db, "t", k0, no_vote ? NULL : "A");
    assert_int_equal(cs_close(db), 0);
}

static void test_crash_with_every_prepare_durable_commits(void **state)
{
    (void)state;
    crash_at_decision(false, "fault=txn_crash=1");
    /* the PREPAREs are then only in the checkpoints (and the log after them): carried */
    crash_at_decision(false, "fault=txn_ckpt_crash=1");
}

static void test_crash_after_a_no_vote_applies_nothing(void **state)
{
    (void)state;
    crash_at_decision(true, "fault=txn_crash=1");
    crash_at_decision(true, "fault=txn_ckpt_crash=1");
}

static int setup(void **state)
{
    (void)state;
    cst_tmpdir_make(root, sizeof(root), "txn");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return cst_tmpdir_remove(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_across_shards_commits_atomically_and_replays),
        cmocka_unit_test(test_blind_batches_across_shards_never_conflict),
        cmocka_unit_test(test_reads_own_writes_and_abort_discards),
        cmocka_unit_test(test_write_skew_is_refused),
        cmocka_unit_test(test_read_of_absent_key_then_insert_conflicts),
        cmocka_unit_test(test_transfers_between_shards_keep_the_total),
        cmocka_unit_test(test_concurrent_increments_lose_nothing),
        cmocka_unit_test(test_plain_writes_wait_for_prepared_keys),
        cmocka_unit_test(test_gets_never_see_half_a_committed_batch),
        cmocka_unit_test(test_snapshots_span_collections),
        cmocka_unit_test(test_transactions_wait_for_prepared_locks),
        cmocka_unit_test(test_reads_right_after_a_commit_see_it_whole),
        cmocka_unit_test(test_failed_frame_keeps_committed_installs),
        cmocka_unit_test(test_batch_across_shards_under_enospc_and_eio),
        cmocka_unit_test(test_session_commits_many_in_flight),
        cmocka_unit_test(test_cursor_ranges_are_validated_no_phantoms),
        cmocka_unit_test(test_cursor_reads_own_writes_and_snapshots),
        cmocka_unit_test(test_limits_and_bad_arguments),
        cmocka_unit_test(test_crash_with_every_prepare_durable_commits),
        cmocka_unit_test(test_crash_after_a_no_vote_applies_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
