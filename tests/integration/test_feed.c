/* Integration tests of the change feed (cs_feed_*): events for puts, deletes, batches and
 * transactions across shards (a transaction's events together), a collection filter, per-key
 * commit order while writers run, resuming from a position token (also after a reopen, with
 * nothing repeated and nothing lost), a position the logs no longer hold, and bad arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cstore.h"
#include "tests/test_util.h"

static char root[CST_PATH_MAX];
static char dbdir[CST_PATH_MAX + 32];
static int dbseq;

static void fresh_dir(void)
{
    snprintf(dbdir, sizeof(dbdir), "%s/db%d", root, dbseq++);
}

static cs_db *open_db(const char *extra)
{
    cs_db *db = NULL;
    int rc = cst_open(dbdir, &db, "shards=2", "durability=sync", extra ? extra : "shards=2", NULL);
    if (rc)
        fail_msg("cs_open(%s): %s (%s)", dbdir, cs_strerror(rc), cs_last_error());
    return db;
}

static void key_on(cs_db *db, unsigned shard, const char *prefix, int from, char *out, size_t size)
{
    for (int i = from; i < from + 100000; i++) {
        snprintf(out, size, "%s%d", prefix, i);
        if (cst_key_shard(db, out, strlen(out)) == shard)
            return;
    }
    fail_msg("no key on shard %u", shard);
}

static void put(cs_db *db, const char *coll, const char *k, const char *v)
{
    assert_int_equal(cs_put(db, coll, k, strlen(k), v, strlen(v)), 0);
}

/* The next event must be (coll, key, value or NULL for a deletion). */
static void expect(cs_feed *f, const char *coll, const char *key, const char *val,
                   struct cs_feed_event *out)
{
    struct cs_feed_event ev;
    int rc = cs_feed_next(f, &ev, 5000);
    if (rc)
        fail_msg("feed: %s while waiting for %s/%s", cs_strerror(rc), coll, key);
    assert_string_equal(ev.coll, coll);
    assert_int_equal(ev.klen, strlen(key));
    assert_memory_equal(ev.key, key, ev.klen);
    if (val) {
        assert_false(ev.deleted);
        assert_int_equal(ev.vlen, strlen(val));
        assert_memory_equal(ev.val, val, ev.vlen);
    } else {
        assert_true(ev.deleted);
    }
    assert_non_null(ev.position);
    if (out)
        *out = ev;
}

static void expect_none(cs_feed *f)
{
    struct cs_feed_event ev;
    assert_int_equal(cs_feed_next(f, &ev, 50), CS_ENOTFOUND);
}

static void test_puts_deletes_batches_and_transactions(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db(NULL);
    put(db, "t", "before", "x"); /* before the feed: not shown */
    cs_feed *f = NULL;
    assert_int_equal(cs_feed_open(db, NULL, NULL, &f), 0);
    expect_none(f);
    put(db, "t", "a", "1");
    put(db, "t", "a", "2");
    assert_int_equal(cs_del(db, "t", "a", 1), 0);
    expect(f, "t", "a", "1", NULL);
    expect(f, "t", "a", "2", NULL);
    expect(f, "t", "a", NULL, NULL);
    /* a one-shard batch: its events one after another */
    char s0[16], s0b[16], s1[16];
    key_on(db, 0, "b", 0, s0, sizeof(s0));
    key_on(db, 0, "b", atoi(s0 + 1) + 1, s0b, sizeof(s0b));
    key_on(db, 1, "b", 0, s1, sizeof(s1));
    cs_batch *b = cs_batch_new();
    assert_int_equal(cs_batch_put(b, "t", s0, strlen(s0), "p", 1), 0);
    assert_int_equal(cs_batch_put(b, "u", s0b, strlen(s0b), "q", 1), 0);
    assert_int_equal(cs_write(db, b), 0);
    struct cs_feed_event e1, e2;
    expect(f, "t", s0, "p", &e1);
    expect(f, "u", s0b, "q", &e2);
    assert_int_equal(e2.txn_id, 0);
    /* a transaction across shards: its events together, with its id */
    cs_txn *t = NULL;
    assert_int_equal(cs_txn_begin(db, 0, &t), 0);
    assert_int_equal(cs_txn_put(t, "t", s0, strlen(s0), "T0", 2), 0);
    assert_int_equal(cs_txn_put(t, "t", s1, strlen(s1), "T1", 2), 0);
    assert_int_equal(cs_txn_commit(t), 0);
    put(db, "t", s1, "after");
    struct cs_feed_event ev[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(cs_feed_next(f, &ev[i], 5000), 0),
            ev[i].key = strndup(ev[i].key, ev[i].klen);
    /* the two transaction events first (either order), with one id, then the later put */
    assert_true(ev[0].txn_id != 0 && ev[0].txn_id == ev[1].txn_id);
    assert_int_equal(ev[2].txn_id, 0);
    assert_memory_equal(ev[2].key, s1, strlen(s1));
    for (int i = 0; i < 3; i++)
        free((void *)ev[i].key);
    expect_none(f);
    cs_feed_close(f);
    /* a filter */
    assert_int_equal(cs_feed_open(db, "u", NULL, &f), 0);
    put(db, "t", "x", "1");
    put(db, "u", "y", "2");
    expect(f, "u", "y", "2", NULL);
    expect_none(f);
    cs_feed_close(f);
    cs_batch_free(b);
    assert_int_equal(cs_close(db), 0);
}

/* Resume from a token: in the same open, and after a reopen; nothing repeated, nothing lost. */
static void test_resume_from_a_position(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db(NULL);
    cs_feed *f = NULL;
    assert_int_equal(cs_feed_open(db, "t", NULL, &f), 0);
    char k0[16], k1[16];
    key_on(db, 0, "r", 0, k0, sizeof(k0));
    key_on(db, 1, "r", 0, k1, sizeof(k1));
    put(db, "t", k0, "1");
    cs_txn *t = NULL;
    assert_int_equal(cs_txn_begin(db, 0, &t), 0);
    assert_int_equal(cs_txn_put(t, "t", k0, strlen(k0), "2", 1), 0);
    assert_int_equal(cs_txn_put(t, "t", k1, strlen(k1), "2", 1), 0);
    assert_int_equal(cs_txn_commit(t), 0);
    put(db, "t", k1, "3");
    struct cs_feed_event ev;
    expect(f, "t", k0, "1", &ev);
    char *tok = strdup(ev.position);
    cs_feed_close(f);
    /* from the token: the transaction and the last put */
    assert_int_equal(cs_feed_open(db, "t", tok, &f), 0);
    struct cs_feed_event a, b2;
    assert_int_equal(cs_feed_next(f, &a, 5000), 0);
    uint64_t id = a.txn_id;
    assert_true(id != 0);
    assert_int_equal(cs_feed_next(f, &b2, 5000), 0);
    assert_int_equal(b2.txn_id, id);
    char *tok2 = strdup(b2.position); /* after the transaction */
    expect(f, "t", k1, "3", NULL);
    expect_none(f);
    cs_feed_close(f);
    assert_int_equal(cs_close(db), 0);
    /* after a reopen, from the token after the transaction: only the last put, then new ones */
    db = open_db(NULL);
    assert_int_equal(cs_feed_open(db, "t", tok2, &f), 0);
    expect(f, "t", k1, "3", NULL);
    put(db, "t", k0, "4");
    expect(f, "t", k0, "4", NULL);
    expect_none(f);
    cs_feed_close(f);
    free(tok);
    free(tok2);
    assert_int_equal(cs_close(db), 0);
}

/* Writers bump per-key versions (plain puts and transactions across shards) while the feed
 * reads: per key the versions arrive in increasing order, and every committed one arrives. */
#define FK 8
#define ROUNDS 150

struct writer {
    cs_db *db;
    char keys[FK][16];
    int id;
    int error;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (int v = 1; v <= ROUNDS && !w->error; v++) {
        char val[32];
        int n = snprintf(val, sizeof(val), "%d", v);
        int k = (v * 7 + w->id) % FK;
        if (v % 3) { /* a transaction over two keys (often two shards) */
            cs_txn *t = NULL;
            int rc = cs_txn_begin(w->db, 0, &t);
            if (!rc)
                rc = cs_txn_put(t, "o", w->keys[k], strlen(w->keys[k]), val, (size_t)n);
            if (!rc)
                rc = cs_txn_put(t, "o", w->keys[(k + 1) % FK], strlen(w->keys[(k + 1) % FK]), val,
                                (size_t)n);
            if (rc) {
                cs_txn_abort(t);
                w->error = rc;
                break;
            }
            rc = cs_txn_commit(t);
            if (rc && rc != CS_ECONFLICT)
                w->error = rc;
        } else {
            w->error = cs_put(w->db, "o", w->keys[k], strlen(w->keys[k]), val, (size_t)n);
        }
    }
    return NULL;
}

static void test_per_key_order_while_writers_run(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db(NULL);
    cs_feed *f = NULL;
    assert_int_equal(cs_feed_open(db, "o", NULL, &f), 0);
    struct writer w;
    memset(&w, 0, sizeof(w));
    w.db = db;
    for (int i = 0; i < FK; i++)
        snprintf(w.keys[i], sizeof(w.keys[i]), "ok%d", i);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
    int last[FK] = {0};
    long events = 0;
    for (;;) {
        struct cs_feed_event ev;
        int rc = cs_feed_next(f, &ev, 2000);
        if (rc == CS_ENOTFOUND)
            break;
        assert_int_equal(rc, 0);
        char buf[32];
        assert_true(ev.klen > 2 && ev.klen < sizeof(buf));
        memcpy(buf, ev.key, ev.klen);
        buf[ev.klen] = '\0';
        int k = atoi(buf + 2);
        assert_true(k >= 0 && k < FK);
        assert_true(ev.vlen < sizeof(buf));
        memcpy(buf, ev.val, ev.vlen);
        buf[ev.vlen] = '\0';
        int v = atoi(buf);
        if (v <= last[k])
            fail_msg("key %d: version %d after %d", k, v, last[k]);
        last[k] = v;
        events++;
    }
    pthread_join(th, NULL);
    if (w.error)
        fail_msg("writer: %s", cs_strerror(w.error));
    assert_true(events > 0);
    /* the last version of every key is what the database holds */
    for (int i = 0; i < FK; i++) {
        void *v = NULL;
        size_t n = 0;
        if (cs_get(db, "o", w.keys[i], strlen(w.keys[i]), &v, &n) == 0) {
            char buf[32];
            memcpy(buf, v, n);
            buf[n] = '\0';
            assert_int_equal(atoi(buf), last[i]);
            cs_free(v);
        }
    }
    cs_feed_close(f);
    assert_int_equal(cs_close(db), 0);
}

/* Every event's position resumes exactly: transactions across two shards interleaved with plain
 * puts on both (so that a position can fall between a transaction's PREPARE and its COMMIT on a
 * shard), then a feed from the start; from each event's token a new feed yields, per key, exactly
 * the values that followed that event in the first. */
struct mixer {
    cs_db *db;
    _Atomic int stop;
    int error;
};

static void *plain_main(void *arg)
{
    struct mixer *m = arg;
    for (int i = 0; !atomic_load(&m->stop) && !m->error; i++) {
        char k[16], v[16];
        snprintf(k, sizeof(k), "p%d", i % 16);
        int n = snprintf(v, sizeof(v), "%d", i);
        m->error = cs_put(m->db, "m", k, strlen(k), v, (size_t)n);
    }
    return NULL;
}

#define MIXED_TXNS 60

struct seen {
    char key[16];
    char val[16];
    size_t at; /* index in the full sequence */
};

static size_t read_all(cs_feed *f, struct seen *out, size_t cap, char **tokens)
{
    size_t n = 0;
    struct cs_feed_event ev;
    while (n < cap && cs_feed_next(f, &ev, 0) == 0) { /* everything is durable by now */
        assert_true(ev.klen < sizeof(out[n].key) && ev.vlen < sizeof(out[n].val));
        memcpy(out[n].key, ev.key, ev.klen);
        out[n].key[ev.klen] = '\0';
        memcpy(out[n].val, ev.val ? ev.val : "", ev.vlen);
        out[n].val[ev.vlen] = '\0';
        out[n].at = n;
        if (tokens)
            tokens[n] = strdup(ev.position);
        n++;
    }
    return n;
}

static void test_every_position_resumes_exactly(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db(NULL);
    struct mixer m = {.db = db};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, plain_main, &m), 0);
    for (int i = 0; i < MIXED_TXNS; i++) {
        char k0[16], k1[16], v[16];
        key_on(db, 0, "x", (i % 4) * 100, k0, sizeof(k0));
        key_on(db, 1, "x", (i % 4) * 100, k1, sizeof(k1));
        int n = snprintf(v, sizeof(v), "t%d", i);
        cs_txn *t = NULL;
        assert_int_equal(cs_txn_begin(db, 0, &t), 0);
        assert_int_equal(cs_txn_put(t, "m", k0, strlen(k0), v, (size_t)n), 0);
        assert_int_equal(cs_txn_put(t, "m", k1, strlen(k1), v, (size_t)n), 0);
        assert_int_equal(cs_txn_commit(t), 0);
    }
    atomic_store(&m.stop, 1);
    pthread_join(th, NULL);
    assert_int_equal(m.error, 0);
    enum { CAP = 200000 };
    struct seen *all = calloc(CAP, sizeof(*all)), *again = calloc(CAP, sizeof(*again));
    char **tokens = calloc(CAP, sizeof(*tokens));
    assert_true(all && again && tokens);
    cs_feed *f = NULL;
    assert_int_equal(cs_feed_open(db, NULL, "cs1.2.0-0.0-0", &f), 0);
    size_t n = read_all(f, all, CAP, tokens);
    cs_feed_close(f);
    assert_true(n >= 2 * MIXED_TXNS);
    /* resume from every event's token (a stride keeps it quick, plus every event of a txn) */
    for (size_t i = 0; i < n; i++) {
        if (i % 7 && all[i].val[0] != 't')
            continue;
        int orc = cs_feed_open(db, NULL, tokens[i], &f);
        if (orc)
            fail_msg("from event %zu (%s=%s, token %s): %s", i, all[i].key, all[i].val, tokens[i],
                     cs_strerror(orc));
        size_t m2 = read_all(f, again, CAP, NULL);
        cs_feed_close(f);
        /* events of a group share the token: resuming skips the rest of the group, so compare
         * with what follows the last event carrying this token */
        size_t last = i;
        while (last + 1 < n && strcmp(tokens[last + 1], tokens[i]) == 0)
            last++;
        /* per key, the values after `last` in the full run equal the resumed ones */
        size_t want = n - last - 1;
        if (m2 != want)
            fail_msg("from event %zu: %zu events, expected %zu", i, m2, want);
        for (size_t a = 0; a < m2; a++) {
            /* the a-th resumed event of its key is the a-th event of that key after `last` */
            size_t rank = 0;
            for (size_t b = 0; b < a; b++)
                rank += strcmp(again[b].key, again[a].key) == 0;
            size_t c = last + 1, r = 0;
            for (; c < n; c++)
                if (strcmp(all[c].key, again[a].key) == 0 && r++ == rank)
                    break;
            if (c == n || strcmp(all[c].val, again[a].val) != 0)
                fail_msg("from event %zu: key %s's event %zu differs", i, again[a].key, rank);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(tokens[i]);
    free(tokens);
    free(all);
    free(again);
    assert_int_equal(cs_close(db), 0);
}

static void test_positions_the_log_lost_and_bad_arguments(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("wal_segment_bytes=1048576");
    cs_feed *f = NULL;
    assert_int_equal(cs_feed_open(NULL, NULL, NULL, &f), CS_EINVAL);
    assert_int_equal(cs_feed_open(db, NULL, NULL, NULL), CS_EINVAL);
    assert_int_equal(cs_feed_open(db, "", NULL, &f), CS_ENAME);
    assert_int_equal(cs_feed_open(db, NULL, "nonsense", &f), CS_EINVAL);
    assert_int_equal(cs_feed_open(db, NULL, "cs1.3.0-0.0-0.0-0", &f), CS_EINVAL);  /* 3 shards */
    assert_int_equal(cs_feed_open(db, NULL, "cs1.2.ffffff-0.0-0", &f), CS_EINVAL); /* beyond */
    assert_int_equal(cs_feed_open(db, NULL, "cs1.2.0-0.0-0", &f), 0); /* from the start */
    struct cs_feed_event ev;
    assert_int_equal(cs_feed_next(NULL, &ev, 0), CS_EINVAL);
    assert_int_equal(cs_feed_next(f, NULL, 0), CS_EINVAL);
    cs_feed_close(f);
    cs_feed_close(NULL);
    /* enough log for several segments, two checkpoints: the oldest segments go */
    static char val[4000];
    memset(val, 'v', sizeof(val));
    for (int i = 0; i < 1200; i++) {
        char k[16];
        snprintf(k, sizeof(k), "z%d", i);
        assert_int_equal(cs_put(db, "z", k, strlen(k), val, sizeof(val)), 0);
    }
    assert_int_equal(cs_checkpoint(db), 0);
    assert_int_equal(cs_checkpoint(db), 0);
    assert_int_equal(cs_feed_open(db, NULL, "cs1.2.0-0.0-0", &f), CS_ENOTFOUND);
    assert_int_equal(cs_close(db), 0);
    fresh_dir();
    assert_int_equal(cst_open(dbdir, &db, "shards=2", "durability=none", NULL), 0);
    assert_int_equal(cs_feed_open(db, NULL, NULL, &f), CS_ENOTSUP);
    assert_int_equal(cs_close(db), 0);
}

static int setup(void **state)
{
    (void)state;
    cst_tmpdir_make(root, sizeof(root), "feed");
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
        cmocka_unit_test(test_puts_deletes_batches_and_transactions),
        cmocka_unit_test(test_resume_from_a_position),
        cmocka_unit_test(test_per_key_order_while_writers_run),
        cmocka_unit_test(test_every_position_resumes_exactly),
        cmocka_unit_test(test_positions_the_log_lost_and_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
