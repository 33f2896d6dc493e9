/* Integration tests of the public API on a real database folder: single-key calls, collections,
 * atomic batches, cursors across shards, sessions, statistics, reopen (write, close, reopen,
 * compare), the durability modes, and the bad-input list (each case returns its error code and
 * leaves stored data intact). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cstore.h"
#include "tests/test_util.h"

static char root[256];
static char dbdir[300];
static int dbseq;

static void fresh_dir(void)
{
    snprintf(dbdir, sizeof(dbdir), "%s/db%d", root, dbseq++);
}

static unsigned cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

static cs_db *open_db(const char *durability, unsigned shards)
{
    cs_options *o = cs_options_new();
    assert_non_null(o);
    char buf[16];
    snprintf(buf, sizeof(buf), "%u", shards);
    assert_int_equal(cs_options_set(o, "shards", buf), 0);
    assert_int_equal(cs_options_set(o, "durability", durability), 0);
    cs_db *db = NULL;
    int rc = cs_open(dbdir, o, &db);
    if (rc)
        fail_msg("cs_open(%s): %s (%s)", dbdir, cs_strerror(rc), cs_last_error());
    cs_options_free(o);
    return db;
}

static unsigned test_shards(void)
{
    return cpus() >= 2 ? 2 : 1;
}

static void put_str(cs_db *db, const char *coll, const char *k, const char *v)
{
    int rc = cs_put(db, coll, k, strlen(k), v, strlen(v));
    if (rc)
        fail_msg("put %s: %s", k, cs_strerror(rc));
}

static void check_value(cs_db *db, const char *coll, const char *k, const char *v)
{
    void *val = NULL;
    size_t vlen = 0;
    int rc = cs_get(db, coll, k, strlen(k), &val, &vlen);
    if (!v) {
        assert_int_equal(rc, CS_ENOTFOUND);
        assert_null(val);
        return;
    }
    if (rc)
        fail_msg("get %s: %s", k, cs_strerror(rc));
    assert_int_equal(vlen, strlen(v));
    assert_memory_equal(val, v, vlen);
    cs_free(val);
}

static void test_put_get_del_round_trip(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync", test_shards());
    put_str(db, "users", "alice", "1");
    put_str(db, "users", "bob", "2");
    check_value(db, "users", "alice", "1");
    put_str(db, "users", "alice", "one");
    check_value(db, "users", "alice", "one");
    assert_int_equal(cs_del(db, "users", "alice", 5), 0);
    check_value(db, "users", "alice", NULL);
    assert_int_equal(cs_del(db, "users", "alice", 5), CS_ENOTFOUND);
    check_value(db, "nosuch", "bob", NULL);
    /* an empty value is a value */
    assert_int_equal(cs_put(db, "users", "empty", 5, NULL, 0), 0);
    void *v = (void *)1;
    size_t vlen = 99;
    assert_int_equal(cs_get(db, "users", "empty", 5, &v, &vlen), 0);
    assert_null(v);
    assert_int_equal(vlen, 0);
    /* the largest key and value */
    char *big = malloc(CS_VALUE_MAX);
    memset(big, 'b', CS_VALUE_MAX);
    assert_int_equal(cs_put(db, "users", big, CS_KEY_MAX, big, CS_VALUE_MAX), 0);
    assert_int_equal(cs_get(db, "users", big, CS_KEY_MAX, &v, &vlen), 0);
    assert_int_equal(vlen, CS_VALUE_MAX);
    assert_memory_equal(v, big, CS_VALUE_MAX);
    cs_free(v);
    free(big);
    assert_int_equal(cs_close(db), 0);
}

static void test_collections_create_drop_list(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync", test_shards());
    assert_int_equal(cs_collection_create(db, "b"), 0);
    assert_int_equal(cs_collection_create(db, "b"), CS_EEXIST);
    put_str(db, "a", "k", "v"); /* implicit creation */
    char **names;
    size_t n;
    assert_int_equal(cs_collection_list(db, &names, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "a");
    assert_string_equal(names[1], "b");
    cs_free(names);
    assert_int_equal(cs_collection_drop(db, "a"), 0);
    assert_int_equal(cs_collection_drop(db, "a"), CS_ENOTFOUND);
    check_value(db, "a", "k", NULL);
    assert_int_equal(cs_close(db), 0);
    /* drops and creations survive a reopen; a recreated collection starts empty */
    db = open_db("sync", test_shards());
    assert_int_equal(cs_collection_list(db, &names, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "b");
    cs_free(names);
    check_value(db, "a", "k", NULL);
    put_str(db, "a", "k2", "v2");
    assert_int_equal(cs_close(db), 0);
    db = open_db("sync", test_shards());
    check_value(db, "a", "k", NULL);
    check_value(db, "a", "k2", "v2");
    assert_int_equal(cs_close(db), 0);
}

/* Find n keys "p<i>" that all live on the same shard as "p0" (or on another one), as
 * cs_key_shard tells; a two-key batch commits either way (across shards by two-phase commit). */
static int same_shard_keys(cs_db *db, char keys[][16], int n, bool same)
{
    cs_batch *b = cs_batch_new();
    int found = 0;
    unsigned home = cst_key_shard(db, "p0", 2);
    assert_true(home < cs_shard_count(db));
    snprintf(keys[found++], 16, "p0");
    for (int i = 1; i < 10000 && found < n; i++) {
        char k[16];
        snprintf(k, sizeof(k), "p%d", i);
        unsigned shard = cst_key_shard(db, k, strlen(k));
        assert_true(shard < cs_shard_count(db));
        cs_batch_clear(b);
        assert_int_equal(cs_batch_put(b, "probe", "p0", 2, "", 0), 0);
        assert_int_equal(cs_batch_put(b, "probe", k, strlen(k), "", 0), 0);
        assert_int_equal(cs_write(db, b), 0); /* on one shard or across two */
        if ((shard == home) == same)
            snprintf(keys[found++], 16, "%s", k);
    }
    cs_batch_free(b);
    return found;
}

/* A bulk load the way cs_key_shard allows it: one batch per shard, large enough that each
 * write replaces most of the tree's nodes (copy-on-write for rollback) and the shard gives the
 * old ones back to the system; then every record reads back, also after a reopen. */
static void test_per_shard_batches_load_in_bulk(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync", test_shards());
    enum { KEYS = 80000, ROUNDS = 2 };
    unsigned shards = cs_shard_count(db);
    cs_batch *b[8];
    assert_true(shards <= 8);
    for (unsigned s = 0; s < shards; s++)
        assert_non_null(b[s] = cs_batch_new());
    unsigned sh = 99;
    assert_int_equal(cs_key_shard(NULL, "k", 1, &sh), CS_EINVAL);
    assert_int_equal(cs_key_shard(db, NULL, 1, &sh), CS_EINVAL);
    assert_int_equal(cs_key_shard(db, "k", 1, NULL), CS_EINVAL);
    assert_int_equal(cs_key_shard(db, "k", 0, &sh), CS_EKEYSIZE);
    assert_int_equal(cs_key_shard(db, "k", CS_KEY_MAX + 1, &sh), CS_EKEYSIZE);
    assert_int_equal(sh, 99); /* unchanged on error */
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < KEYS; i++) {
            char k[24], v[128];
            int kl = snprintf(k, sizeof(k), "bulk%08d", (i * 7919) % KEYS);
            int vl = snprintf(v, sizeof(v), "value-%d-%d-%090d", round, (i * 7919) % KEYS, 0);
            unsigned s = cst_key_shard(db, k, (size_t)kl);
            assert_true(s < shards);
            assert_int_equal(cs_batch_put(b[s], "bulk", k, (size_t)kl, v, (size_t)vl), 0);
        }
        for (unsigned s = 0; s < shards; s++) {
            assert_int_equal(cs_write(db, b[s]), 0);
            cs_batch_clear(b[s]);
        }
    }
    for (unsigned s = 0; s < shards; s++)
        cs_batch_free(b[s]);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < KEYS; i += 97) {
            char k[24], v[128];
            snprintf(k, sizeof(k), "bulk%08d", i);
            snprintf(v, sizeof(v), "value-%d-%d-%090d", ROUNDS - 1, i, 0);
            check_value(db, "bulk", k, v);
        }
        uint64_t records = 0;
        for (unsigned s = 0; s < shards; s++) {
            struct cs_shard_stats st;
            assert_int_equal(cs_stats(db, s, &st), 0);
            records += st.records;
        }
        assert_int_equal(records, KEYS);
        assert_int_equal(cs_close(db), 0);
        if (pass == 0)
            db = open_db("sync", test_shards());
    }
}

static void test_batch_is_atomic_on_one_shard_and_across(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync", test_shards());
    char keys[8][16];
    assert_int_equal(same_shard_keys(db, keys, 8, true), 8);
    put_str(db, "t", keys[7], "old");
    cs_batch *b = cs_batch_new();
    for (int i = 0; i < 6; i++)
        assert_int_equal(cs_batch_put(b, "t", keys[i], strlen(keys[i]), "x", 1), 0);
    assert_int_equal(cs_batch_del(b, "t", keys[7], strlen(keys[7])), 0);
    assert_int_equal(cs_batch_del(b, "t", keys[6], strlen(keys[6])), 0); /* absent: fine */
    assert_int_equal(cs_batch_count(b), 8);
    assert_int_equal(cs_write(db, b), 0);
    for (int i = 0; i < 6; i++)
        check_value(db, "t", keys[i], "x");
    check_value(db, "t", keys[7], NULL);
    if (test_shards() > 1) {
        char other[2][16];
        assert_int_equal(same_shard_keys(db, other, 2, false), 2);
        cs_batch_clear(b);
        assert_int_equal(cs_batch_put(b, "t", other[0], strlen(other[0]), "y", 1), 0);
        assert_int_equal(cs_batch_put(b, "t", other[1], strlen(other[1]), "y", 1), 0);
        assert_int_equal(cs_write(db, b), 0); /* across shards: two-phase commit */
        check_value(db, "t", other[0], "y");
        check_value(db, "t", other[1], "y");
    }
    cs_batch_free(b);
    assert_int_equal(cs_close(db), 0);
    /* the batch is in the WAL as one record and replays (and the cross-shard one, which
     * rewrote keys[0] == other[0] == "p0", as PREPARE and COMMIT records) */
    db = open_db("sync", test_shards());
    for (int i = 1; i < 6; i++)
        check_value(db, "t", keys[i], "x");
    check_value(db, "t", keys[0], test_shards() > 1 ? "y" : "x");
    check_value(db, "t", keys[7], NULL);
    assert_int_equal(cs_close(db), 0);
}

static void test_batch_limits_and_bad_ops_are_refused(void **state)
{
    (void)state;
    cs_batch *b = cs_batch_new();
    assert_int_equal(cs_batch_put(b, NULL, "k", 1, "v", 1), CS_ENAME);
    assert_int_equal(cs_batch_put(b, "c", "k", 0, "v", 1), CS_EKEYSIZE);
    assert_int_equal(cs_batch_put(b, "c", "k", 1, "v", CS_VALUE_MAX + 1), CS_EVALSIZE);
    assert_int_equal(cs_batch_count(b), 0);
    char *v = calloc(1, CS_VALUE_MAX);
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++) {
        char k[16];
        snprintf(k, sizeof(k), "%d", i);
        rc = cs_batch_put(b, "c", k, strlen(k), v, CS_VALUE_MAX);
    }
    assert_int_equal(rc, CS_EBATCH);
    assert_int_equal(cs_batch_count(b), CS_BATCH_BYTES_MAX / (CS_VALUE_MAX + 2));
    free(v);
    cs_batch_free(b);
}

static void test_cursor_merges_shards_in_key_order(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("async", test_shards());
    enum { N = 3000 };
    for (int i = 0; i < N; i++) {
        char k[16], v[16];
        snprintf(k, sizeof(k), "k%05d", i * 2); /* even numbers: seeks can fall between */
        snprintf(v, sizeof(v), "v%d", i);
        put_str(db, "c", k, v);
    }
    put_str(db, "other", "k00001", "not in c");
    cs_cursor *c;
    assert_int_equal(cs_cursor_open(db, "c", &c), 0);
    /* a write after the open is not seen by the cursor */
    put_str(db, "c", "k00001", "late");
    int n = 0, rc;
    for (rc = cs_cursor_first(c); rc == 0; rc = cs_cursor_next(c), n++) {
        const void *k, *v;
        size_t kl, vl;
        assert_int_equal(cs_cursor_key(c, &k, &kl), 0);
        assert_int_equal(cs_cursor_value(c, &v, &vl), 0);
        char want[16];
        snprintf(want, sizeof(want), "k%05d", n * 2);
        assert_int_equal(kl, strlen(want));
        assert_memory_equal(k, want, kl);
    }
    assert_int_equal(rc, CS_ENOTFOUND);
    assert_int_equal(n, N);
    assert_int_equal(cs_cursor_next(c), CS_EINVAL);
    /* backward from the end */
    n = 0;
    for (rc = cs_cursor_last(c); rc == 0; rc = cs_cursor_prev(c), n++) {
        const void *k;
        size_t kl;
        assert_int_equal(cs_cursor_key(c, &k, &kl), 0);
        char want[16];
        snprintf(want, sizeof(want), "k%05d", (N - 1 - n) * 2);
        assert_memory_equal(k, want, kl);
    }
    assert_int_equal(n, N);
    /* seek between keys, then change direction */
    assert_int_equal(cs_cursor_seek(c, "k01001", 6), 0);
    const void *k;
    size_t kl;
    assert_int_equal(cs_cursor_key(c, &k, &kl), 0);
    assert_memory_equal(k, "k01002", 6);
    assert_int_equal(cs_cursor_prev(c), 0);
    assert_int_equal(cs_cursor_key(c, &k, &kl), 0);
    assert_memory_equal(k, "k01000", 6);
    assert_int_equal(cs_cursor_next(c), 0);
    assert_int_equal(cs_cursor_key(c, &k, &kl), 0);
    assert_memory_equal(k, "k01002", 6);
    assert_int_equal(cs_cursor_seek(c, "z", 1), CS_ENOTFOUND);
    cs_cursor_close(c);
    /* a cursor over a missing collection is empty */
    assert_int_equal(cs_cursor_open(db, "missing", &c), 0);
    assert_int_equal(cs_cursor_first(c), CS_ENOTFOUND);
    assert_int_equal(cs_cursor_last(c), CS_ENOTFOUND);
    cs_cursor_close(c);
    assert_int_equal(cs_close(db), 0);
}

static void test_session_keeps_many_requests_in_flight(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync", test_shards());
    enum { N = 2000, DEPTH = 64 };
    static char keys[N][16];
    cs_session *s;
    assert_int_equal(cs_session_open(db, DEPTH, &s), 0);
    struct cs_completion done[DEPTH];
    int submitted = 0, completed = 0;
    while (completed < N) {
        while (submitted < N && cs_session_inflight(s) < DEPTH) {
            snprintf(keys[submitted], 16, "s%06d", submitted);
            assert_int_equal(cs_session_put(s, "sess", keys[submitted], 7, keys[submitted], 7,
                                            (uint64_t)submitted),
                             0);
            submitted++;
        }
        if (submitted < N)
            assert_int_equal(cs_session_put(s, "sess", "x", 1, "x", 1, 0), CS_EFULL);
        int n = cs_session_poll(s, done, DEPTH, 1);
        assert_true(n >= 1);
        for (int i = 0; i < n; i++) {
            assert_int_equal(done[i].rc, 0);
            assert_true(done[i].user_data < (uint64_t)submitted);
        }
        completed += n;
    }
    assert_int_equal(cs_session_inflight(s), 0);
    /* gets through the session return the values */
    for (int i = 0; i < DEPTH; i++)
        assert_int_equal(cs_session_get(s, "sess", keys[i], 7, (uint64_t)i), 0);
    int got = 0;
    while (got < DEPTH) {
        int n = cs_session_poll(s, done, DEPTH, 1);
        for (int i = 0; i < n; i++) {
            assert_int_equal(done[i].rc, 0);
            assert_int_equal(done[i].vlen, 7);
            assert_memory_equal(done[i].val, keys[done[i].user_data], 7);
            cs_free(done[i].val);
        }
        got += n;
    }
    assert_int_equal(cs_session_del(s, "sess", "nope", 4, 7), 0);
    assert_int_equal(cs_session_poll(s, done, 1, 1), 1);
    assert_int_equal(done[0].rc, CS_ENOTFOUND);
    assert_int_equal(cs_session_poll(s, done, 1, 2), CS_EINVAL); /* min above in flight */
    cs_session_close(s);
    check_value(db, "sess", keys[N - 1], keys[N - 1]);
    assert_int_equal(cs_close(db), 0);
}

static void test_reopen_returns_what_was_written(void **state)
{
    (void)state;
    static const char *modes[] = {"sync", "async"};
    for (int m = 0; m < 2; m++) {
        fresh_dir();
        cs_db *db = open_db(modes[m], test_shards());
        enum { N = 5000 };
        for (int i = 0; i < N; i++) {
            char k[16], v[32];
            snprintf(k, sizeof(k), "r%d", i);
            snprintf(v, sizeof(v), "value-%d-%s", i, modes[m]);
            put_str(db, "r", k, v);
        }
        for (int i = 0; i < N; i += 3) {
            char k[16];
            snprintf(k, sizeof(k), "r%d", i);
            assert_int_equal(cs_del(db, "r", k, strlen(k)), 0);
        }
        assert_int_equal(cs_close(db), 0);
        db = open_db(modes[m], test_shards());
        uint64_t records = 0, recovered = 0;
        for (unsigned i = 0; i < cs_shard_count(db); i++) {
            struct cs_shard_stats st;
            assert_int_equal(cs_stats(db, i, &st), 0);
            records += st.records;
            recovered += st.recovered_records;
        }
        assert_int_equal(records, N - (N + 2) / 3);
        assert_true(recovered >= N + (N + 2) / 3);
        for (int i = 0; i < N; i++) {
            char k[16], v[32];
            snprintf(k, sizeof(k), "r%d", i);
            snprintf(v, sizeof(v), "value-%d-%s", i, modes[m]);
            check_value(db, "r", k, i % 3 == 0 ? NULL : v);
        }
        assert_int_equal(cs_close(db), 0);
    }
}

static void test_durability_none_keeps_nothing_on_disk(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("none", test_shards());
    put_str(db, "m", "k", "v");
    check_value(db, "m", "k", "v");
    assert_int_equal(cs_close(db), 0);
    db = open_db("none", test_shards());
    check_value(db, "m", "k", NULL);
    assert_int_equal(cs_close(db), 0);
    /* an in-memory open of a durable database sees its data and leaves the folder as it was */
    db = open_db("sync", test_shards());
    put_str(db, "m", "durable", "1");
    assert_int_equal(cs_close(db), 0);
    db = open_db("none", test_shards());
    check_value(db, "m", "durable", "1");
    put_str(db, "m", "volatile", "2");
    check_value(db, "m", "volatile", "2");
    assert_int_equal(cs_close(db), 0);
    db = open_db("sync", test_shards());
    check_value(db, "m", "durable", "1");
    check_value(db, "m", "volatile", NULL);
    assert_int_equal(cs_close(db), 0);
}

static bool views_published(void *arg)
{
    struct cs_shard_stats st;
    assert_int_equal(cs_stats(arg, 0, &st), 0);
    return st.views > 0;
}

static void test_stats_count_operations(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync", 1);
    put_str(db, "s", "a", "1");
    put_str(db, "s", "b", "2");
    struct cs_shard_stats st;
    assert_int_equal(cs_stats(db, 0, &st), 0);
    assert_int_equal(st.views, 0); /* sync mode publishes views only once readers want them */
    assert_int_equal(st.gets, 0);
    check_value(db, "s", "a", "1"); /* misses: asks for views, and the shard answers it */
    assert_int_equal(cs_stats(db, 0, &st), 0);
    assert_int_equal(st.gets, 1);
    /* the shard publishes at the end of the loop iteration that ran the get; requests that
     * arrive meanwhile (these stats too) run in that same iteration: wait for the publish */
    assert_true(cst_wait_until(views_published, db, 60000));
    assert_int_equal(cs_stats(db, 0, &st), 0);
    if (st.views != 1) /* the shard published once the read had asked */
        fail_msg("views %llu gets %llu puts %llu frames %llu lsn %llu durable %llu",
                 (unsigned long long)st.views, (unsigned long long)st.gets,
                 (unsigned long long)st.puts, (unsigned long long)st.wal_frames,
                 (unsigned long long)st.wal_lsn, (unsigned long long)st.wal_durable_lsn);
    check_value(db, "s", "b", "2"); /* from the view now */
    assert_int_equal(cs_del(db, "s", "b", 1), 0);
    assert_int_equal(cs_stats(db, 0, &st), 0);
    assert_int_equal(st.puts, 2);
    assert_int_equal(st.gets, 1);
    assert_true(st.views >= 1); /* 2 when the del's frame came within VIEW_HOLD_NS */
    assert_int_equal(st.dels, 1);
    assert_int_equal(st.records, 1);
    assert_int_equal(st.collections, 1);
    assert_true(st.wal_frames >= 1);
    assert_int_equal(st.wal_durable_lsn, st.wal_lsn);
    assert_int_equal(st.wal_lsn, 4); /* create, put, put, del */
    assert_int_equal(cs_stats(db, 1, &st), CS_EINVAL);
    assert_int_equal(cs_close(db), 0);
}

static void test_bad_arguments_get_error_codes_and_keep_data(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("sync", test_shards());
    put_str(db, "keep", "k", "v");
    void *v;
    size_t vl;
    char name[CS_NAME_MAX + 2];
    memset(name, 'n', sizeof(name));
    name[CS_NAME_MAX + 1] = 0;
    assert_int_equal(cs_put(db, NULL, "k", 1, "v", 1), CS_ENAME);
    assert_int_equal(cs_put(db, "", "k", 1, "v", 1), CS_ENAME);
    assert_int_equal(cs_put(db, name, "k", 1, "v", 1), CS_ENAME);
    name[CS_NAME_MAX] = 0;
    assert_int_equal(cs_put(db, name, "k", 1, "v", 1), 0); /* exactly the limit is fine */
    assert_int_equal(cs_put(db, "a/b", "k", 1, "v", 1), CS_ENAME);
    assert_int_equal(cs_put(db, "keep", "k", 0, "v", 1), CS_EKEYSIZE);
    assert_int_equal(cs_put(db, "keep", NULL, 1, "v", 1), CS_EINVAL);
    char *big = calloc(1, CS_VALUE_MAX + 1);
    assert_int_equal(cs_put(db, "keep", big, CS_KEY_MAX + 1, "v", 1), CS_EKEYSIZE);
    assert_int_equal(cs_put(db, "keep", "k", 1, big, CS_VALUE_MAX + 1), CS_EVALSIZE);
    free(big);
    assert_int_equal(cs_put(db, "keep", "k", 1, NULL, 3), CS_EINVAL);
    assert_int_equal(cs_get(db, "keep", "k", 1, NULL, &vl), CS_EINVAL);
    assert_int_equal(cs_get(NULL, "keep", "k", 1, &v, &vl), CS_EINVAL);
    assert_int_equal(cs_del(db, "keep", "", 0), CS_EKEYSIZE);
    assert_int_equal(cs_collection_create(db, "x/y"), CS_ENAME);
    assert_int_equal(cs_collection_drop(db, NULL), CS_ENAME);
    assert_int_equal(cs_cursor_open(db, "", NULL), CS_EINVAL);
    cs_session *s;
    assert_int_equal(cs_session_open(db, 0, &s), CS_EINVAL);
    assert_int_equal(cs_session_open(db, CS_SESSION_DEPTH_MAX + 1, &s), CS_EINVAL);
    check_value(db, "keep", "k", "v");
    assert_int_equal(cs_close(db), 0);
    db = open_db("sync", test_shards());
    check_value(db, "keep", "k", "v");
    assert_int_equal(cs_close(db), 0);
}

static void test_bad_options_are_refused(void **state)
{
    (void)state;
    cs_options *o = cs_options_new();
    assert_int_equal(cs_options_set(o, "nonsense", "1"), CS_EOPTION);
    assert_int_equal(cs_options_set(o, "shards", "0"), CS_EOPTVAL);
    assert_int_equal(cs_options_set(o, "shards", "-1"), CS_EOPTVAL);
    assert_int_equal(cs_options_set(o, "shards", "2x"), CS_EOPTVAL);
    assert_int_equal(cs_options_set(o, "shards", "999"), CS_EOPTVAL);
    assert_int_equal(cs_options_set(o, "durability", "sometimes"), CS_EOPTVAL);
    assert_int_equal(cs_options_set(o, "cpuset", "3-1"), CS_EOPTVAL);
    assert_int_equal(cs_options_set(o, "cpuset", "a"), CS_EOPTVAL);
    assert_int_equal(cs_options_set(o, "cpuset", "0,"), CS_EOPTVAL);
    assert_int_equal(cs_options_set(o, "batch_max", "0"), CS_EOPTVAL);
    assert_int_equal(cs_options_set(o, "wait_yield_us", "0"), 0);
    assert_int_equal(cs_options_set(o, "wait_yield_us", "-5"), CS_EOPTVAL);
    assert_int_equal(cs_options_set(o, "wait_yield_us", "1000001"), CS_EOPTVAL);
    assert_int_equal(cs_options_set(o, "wal_segment_bytes", "64M"), 0);
    assert_int_equal(cs_options_set(o, "wal_segment_bytes", "1K"), CS_EOPTVAL);
    assert_int_equal(cs_options_set(o, NULL, "1"), CS_EINVAL);
    /* a config file: the bad line is named */
    char path[300];
    snprintf(path, sizeof(path), "%s/bad.ini", root);
    FILE *f = fopen(path, "w");
    fprintf(f, "[cstore]\nshards = 1\ndurability = async\nbogus = 3\n");
    fclose(f);
    int line = 0;
    assert_int_equal(cs_options_load(o, path, &line), CS_EOPTION);
    assert_int_equal(line, 4);
    f = fopen(path, "w");
    fprintf(f, "# comment\nshards = 1\ndurability = none\n");
    fclose(f);
    assert_int_equal(cs_options_load(o, path, &line), 0);
    assert_int_equal(cs_options_load(o, "/nonexistent/x.ini", &line), -ENOENT);
    assert_int_equal(cs_options_load(o, root, &line), -EISDIR);
    cs_options_free(o);

    /* combinations checked at open */
    cs_db *db = NULL;
    fresh_dir();
    o = cs_options_new();
    char buf[16];
    snprintf(buf, sizeof(buf), "%u", cpus() + 1);
    assert_int_equal(cs_options_set(o, "shards", buf), 0);
    assert_int_equal(cs_open(dbdir, o, &db), CS_ECPUSET);
    assert_null(db);
    cs_options_free(o);
    o = cs_options_new();
    assert_int_equal(cs_options_set(o, "cpuset", "1000"), 0);
    assert_int_equal(cs_open(dbdir, o, &db), CS_ECPUSET);
    assert_non_null(strstr(cs_last_error(), "1000"));
    cs_options_free(o);
}

/* A process may open and close databases for as long as it likes: each shard's allocator arena
 * is handed to the next shard (jemalloc creates at most about 4000; the 4000th open used to
 * crash). Sanitizer builds use libc malloc, without arenas: a few rounds suffice there. */
static void test_open_and_close_thousands_of_times(void **state)
{
    (void)state;
#ifdef CS_NO_JEMALLOC
    const int rounds = 50;
#else
    const int rounds = 4500;
#endif
    fresh_dir();
    cs_options *o = cs_options_new();
    assert_int_equal(cs_options_set(o, "shards", "1"), 0);
    assert_int_equal(cs_options_set(o, "durability", "none"), 0);
    for (int i = 0; i < rounds; i++) {
        cs_db *db = NULL;
        int rc = cs_open(dbdir, o, &db);
        if (rc)
            fail_msg("open %d: %s", i, cs_strerror(rc));
        assert_int_equal(cs_put(db, "c", "k", 1, "v", 1), 0);
        check_value(db, "c", "k", "v");
        assert_int_equal(cs_close(db), 0);
    }
    cs_options_free(o);
}

static void test_shard_count_is_fixed_at_creation(void **state)
{
    (void)state;
    if (cpus() < 2)
        skip();
    fresh_dir();
    cs_db *db = open_db("sync", 2);
    put_str(db, "c", "k", "v");
    assert_int_equal(cs_close(db), 0);
    cs_options *o = cs_options_new();
    assert_int_equal(cs_options_set(o, "shards", "1"), 0);
    assert_int_equal(cs_open(dbdir, o, &db), CS_ESHARDS);
    assert_null(db);
    cs_options_free(o);
    /* with no shard count given, the recorded one is used */
    assert_int_equal(cs_open(dbdir, NULL, &db), 0);
    assert_int_equal(cs_shard_count(db), 2);
    check_value(db, "c", "k", "v");
    assert_int_equal(cs_close(db), 0);
}

static void test_data_folder_problems_are_refused(void **state)
{
    (void)state;
    cs_db *db = NULL;
    char path[300];
    snprintf(path, sizeof(path), "%s/plainfile", root);
    FILE *f = fopen(path, "w");
    fputs("x", f);
    fclose(f);
    assert_int_equal(cs_open(path, NULL, &db), CS_ENOTDIR);
    assert_null(db);
    char under[320];
    snprintf(under, sizeof(under), "%s/sub", path);
    assert_int_equal(cs_open(under, NULL, &db), CS_ENOTDIR);
    assert_int_equal(cs_open("", NULL, &db), CS_EINVAL);
    assert_int_equal(cs_open(NULL, NULL, &db), CS_EINVAL);
    assert_int_equal(cs_open("/nonexistent-parent/x/y", NULL, &db), -ENOENT);
    /* the same folder opened twice: the second is refused, the first keeps working */
    fresh_dir();
    cs_db *first = open_db("sync", 1);
    cs_options *o = cs_options_new();
    assert_int_equal(cs_options_set(o, "shards", "1"), 0);
    assert_int_equal(cs_open(dbdir, o, &db), CS_ELOCKED);
    cs_options_free(o);
    put_str(first, "c", "k", "v");
    /* ...and so is another process */
    pid_t pid = fork();
    if (pid == 0) {
        cs_db *other = NULL;
        _exit(cs_open(dbdir, NULL, &other) == CS_ELOCKED ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    check_value(first, "c", "k", "v");
    assert_int_equal(cs_close(first), 0);
    /* a damaged format record is corruption, not a crash */
    char meta[340];
    snprintf(meta, sizeof(meta), "%s/CSTORE", dbdir);
    f = fopen(meta, "r+");
    fputs("garbage", f);
    fclose(f);
    assert_int_equal(cs_open(dbdir, NULL, &db), CS_ECORRUPT);
    assert_null(db);
}

static void test_strerror_describes_every_code(void **state)
{
    (void)state;
    for (int rc = CS_ERR_BASE; rc >= CS_ERR_LAST; rc--) {
        const char *s = cs_strerror(rc);
        assert_non_null(s);
        assert_true(strlen(s) > 5);
    }
    assert_string_equal(cs_strerror(0), "success");
    assert_non_null(strstr(cs_strerror(-ENOENT), "No such file"));
    assert_non_null(strstr(cs_strerror(12345), "unknown"));
}

static int setup(void **state)
{
    (void)state;
    cst_tmpdir_make(root, sizeof(root), "api");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return cst_tmpdir_remove(root);
}

/* CS_COLLECTIONS_MAX is enforced: one more collection on a shard is CS_EFULL (by create or by a
 * put that would create it), what was stored stays, and a drop makes room again. */
static void test_collections_limit_is_enforced(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_db("async", 1);
    char name[32];
    for (unsigned i = 0; i < CS_COLLECTIONS_MAX; i++) {
        snprintf(name, sizeof(name), "c%u", i);
        int rc = cs_collection_create(db, name);
        if (rc)
            fail_msg("create %s: %s", name, cs_strerror(rc));
    }
    put_str(db, "c7", "k", "v");
    assert_int_equal(cs_collection_create(db, "one-too-many"), CS_EFULL);
    assert_int_equal(cs_put(db, "one-too-many", "k", 1, "v", 1), CS_EFULL);
    cs_batch *b = cs_batch_new();
    assert_non_null(b);
    assert_int_equal(cs_batch_put(b, "c8", "k", 1, "v", 1), 0);
    assert_int_equal(cs_batch_put(b, "one-too-many", "k", 1, "v", 1), 0);
    assert_int_equal(cs_write(db, b), CS_EFULL);
    cs_batch_free(b);
    void *v;
    size_t vl;
    assert_int_equal(cs_get(db, "c8", "k", 1, &v, &vl), CS_ENOTFOUND); /* the batch took nothing */
    assert_int_equal(cs_get(db, "c7", "k", 1, &v, &vl), 0);
    cs_free(v);
    assert_int_equal(cs_collection_drop(db, "c0"), 0);
    assert_int_equal(cs_collection_create(db, "one-too-many"), 0);
    assert_int_equal(cs_close(db), 0);
    /* and after a reopen (replay re-creates them all) */
    db = open_db("async", 1);
    assert_int_equal(cs_collection_create(db, "another"), CS_EFULL);
    assert_int_equal(cs_get(db, "c7", "k", 1, &v, &vl), 0);
    cs_free(v);
    assert_int_equal(cs_close(db), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_del_round_trip),
        cmocka_unit_test(test_collections_create_drop_list),
        cmocka_unit_test(test_batch_is_atomic_on_one_shard_and_across),
        cmocka_unit_test(test_per_shard_batches_load_in_bulk),
        cmocka_unit_test(test_batch_limits_and_bad_ops_are_refused),
        cmocka_unit_test(test_cursor_merges_shards_in_key_order),
        cmocka_unit_test(test_session_keeps_many_requests_in_flight),
        cmocka_unit_test(test_reopen_returns_what_was_written),
        cmocka_unit_test(test_durability_none_keeps_nothing_on_disk),
        cmocka_unit_test(test_stats_count_operations),
        cmocka_unit_test(test_bad_arguments_get_error_codes_and_keep_data),
        cmocka_unit_test(test_bad_options_are_refused),
        cmocka_unit_test(test_shard_count_is_fixed_at_creation),
        cmocka_unit_test(test_open_and_close_thousands_of_times),
        cmocka_unit_test(test_data_folder_problems_are_refused),
        cmocka_unit_test(test_strerror_describes_every_code),
        cmocka_unit_test(test_collections_limit_is_enforced),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
