/* Integration tests of lock-free reads from published views (see "VIEWS" in shards/shard.c):
 * a read never misses an acknowledged write (async and none publish on demand), in sync mode a
 * read never sees a write before it is durable, a cursor's pinned view stays unchanged while
 * writers replace everything, sessions answer gets from views, and retired views are freed. */
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

static cs_db *open_with(const char *durability, const char *shards, const char *fault)
{
    cs_options *o = cs_options_new();
    assert_non_null(o);
    assert_int_equal(cs_options_set(o, "durability", durability), 0);
    assert_int_equal(cs_options_set(o, "shards", shards), 0);
    if (fault)
        assert_int_equal(cs_options_set(o, "fault", fault), 0);
    cs_db *db = NULL;
    int rc = cs_open(dbdir, o, &db);
    if (rc)
        fail_msg("cs_open(%s): %s (%s)", dbdir, cs_strerror(rc), cs_last_error());
    cs_options_free(o);
    return db;
}

static struct cs_shard_stats stats_sum(cs_db *db, unsigned shards)
{
    struct cs_shard_stats sum, st;
    memset(&sum, 0, sizeof(sum));
    for (unsigned i = 0; i < shards; i++) {
        assert_int_equal(cs_stats(db, i, &st), 0);
        sum.gets += st.gets;
        sum.scans += st.scans;
        sum.views += st.views;
        sum.tree_bytes += st.tree_bytes;
        sum.records += st.records;
    }
    return sum;
}

static void check_get(cs_db *db, const char *key, const char *want)
{
    void *v = NULL;
    size_t vl = 0;
    int rc = cs_get(db, "v", key, strlen(key), &v, &vl);
    if (!want) {
        assert_int_equal(rc, CS_ENOTFOUND);
        return;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(vl, strlen(want));
    assert_memory_equal(v, want, vl);
    cs_free(v);
}

/* Every get and cursor right after a write sees it, while most reads still come from views. */
static void read_your_writes(const char *durability)
{
    fresh_dir();
    cs_db *db = open_with(durability, "2", NULL);
    char key[32], val[32];
    unsigned reads = 0;
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof(key), "k%03d", i % 64);
        snprintf(val, sizeof(val), "v%d", i);
        if (i % 7 == 3 && i >= 64) { /* the key exists from i = 64 on */
            assert_int_equal(cs_del(db, "v", key, strlen(key)), 0);
            check_get(db, key, NULL);
            assert_int_equal(cs_put(db, "v", key, strlen(key), val, strlen(val)), 0);
        } else {
            assert_int_equal(cs_put(db, "v", key, strlen(key), val, strlen(val)), 0);
        }
        for (int r = 0; r < 4; r++, reads++)
            check_get(db, key, val);
        if (i % 50 == 0) {
            cs_cursor *c;
            assert_int_equal(cs_cursor_open(db, "v", &c), 0);
            assert_int_equal(cs_cursor_seek(c, key, strlen(key)), 0);
            const void *k, *v;
            size_t kl, vl;
            assert_int_equal(cs_cursor_key(c, &k, &kl), 0);
            assert_int_equal(cs_cursor_value(c, &v, &vl), 0);
            assert_int_equal(kl, strlen(key));
            assert_memory_equal(k, key, kl);
            assert_int_equal(vl, strlen(val));
            assert_memory_equal(v, val, vl);
            cs_cursor_close(c);
        }
    }
    struct cs_shard_stats st = stats_sum(db, 2);
    assert_true(st.views > 0);
    assert_true(st.gets < reads); /* some reads were answered by views */
    assert_int_equal(cs_close(db), 0);
}

static void test_async_reads_see_every_acknowledged_write(void **state)
{
    (void)state;
    read_your_writes("async");
}

static void test_none_reads_see_every_acknowledged_write(void **state)
{
    (void)state;
    read_your_writes("none");
}

static void test_sync_reads_see_every_acknowledged_write(void **state)
{
    (void)state;
    read_your_writes("sync");
}

struct slow_put {
    cs_db *db;
    atomic_int returned;
};

static void *slow_put_main(void *arg)
{
    struct slow_put *p = arg;
    assert_int_equal(cs_put(p->db, "v", "late", 4, "new", 3), 0);
    atomic_store(&p->returned, 1);
    return NULL;
}

/* sync: while a frame is being written (slowly), readers still see only the durable value. */
static void test_sync_reads_never_see_a_frame_before_it_is_durable(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_with("sync", "1", "latency_us=300000");
    assert_int_equal(cs_put(db, "v", "late", 4, "old", 3), 0);
    check_get(db, "late", "old"); /* misses: asks for views */
    /* the shard publishes at the end of the loop iteration that answered the get; a put
     * arriving in that same iteration would seal (and stall) first: wait for the publish */
    for (int i = 0; i < 2000 && stats_sum(db, 1).views == 0; i++)
        usleep(500);
    struct slow_put p = {.db = db};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_put_main, &p), 0);
    unsigned seen_old = 0;
    for (;;) {
        int returned = atomic_load(&p.returned);
        void *v = NULL;
        size_t vl = 0;
        assert_int_equal(cs_get(db, "v", "late", 4, &v, &vl), 0);
        assert_int_equal(vl, 3);
        if (!returned && memcmp(v, "new", 3) == 0) {
            /* durable and published just before the put's acknowledgement reached its
             * thread: allowed; poll until the put returns, then it must be visible */
            cs_free(v);
            usleep(1000);
            continue;
        }
        if (returned) {
            assert_memory_equal(v, "new", 3); /* acknowledged: must be visible */
            cs_free(v);
            break;
        }
        assert_memory_equal(v, "old", 3);
        cs_free(v);
        seen_old++;
        usleep(1000);
    }
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(seen_old > 10); /* the write took 300 ms: readers were answered meanwhile */
    assert_int_equal(cs_close(db), 0);
}

/* A cursor keeps its snapshot while writers replace and delete everything; memory held for it
 * is freed once it closes. */
static void test_cursor_view_stays_unchanged_and_is_freed(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_with("async", "2", NULL);
    char key[32], val[128];
    const int n = 4000;
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "key%06d", i);
        memset(val, 'a', 100);
        assert_int_equal(cs_put(db, "v", key, strlen(key), val, 100), 0);
    }
    check_get(db, "missing", NULL); /* asks for a publish */
    uint64_t base = stats_sum(db, 2).tree_bytes;
    cs_cursor *c;
    assert_int_equal(cs_cursor_open(db, "v", &c), 0);
    for (int round = 0; round < 5; round++)
        for (int i = 0; i < n; i++) {
            snprintf(key, sizeof(key), "key%06d", i);
            memset(val, 'b' + round, 100);
            if (i % 2)
                assert_int_equal(cs_del(db, "v", key, strlen(key)), 0);
            else
                assert_int_equal(cs_put(db, "v", key, strlen(key), val, 100), 0);
            if (round < 4 && i % 2)
                assert_int_equal(cs_put(db, "v", key, strlen(key), val, 100), 0);
            if (i % 500 == 0)
                check_get(db, "missing", NULL); /* publishes: the old views get retired */
        }
    int seen = 0;
    for (int rc = cs_cursor_first(c); rc == 0; rc = cs_cursor_next(c), seen++) {
        const void *k, *v;
        size_t kl, vl;
        assert_int_equal(cs_cursor_key(c, &k, &kl), 0);
        assert_int_equal(cs_cursor_value(c, &v, &vl), 0);
        snprintf(key, sizeof(key), "key%06d", seen);
        assert_int_equal(kl, strlen(key));
        assert_memory_equal(k, key, kl);
        assert_int_equal(vl, 100);
        assert_int_equal(((const char *)v)[0], 'a');
        assert_int_equal(((const char *)v)[99], 'a');
    }
    assert_int_equal(seen, n);
    cs_cursor_close(c);
    assert_int_equal(cs_cursor_open(db, "v", &c), 0); /* a new cursor sees the new state */
    seen = 0;
    for (int rc = cs_cursor_first(c); rc == 0; rc = cs_cursor_next(c), seen++) {
        const void *v;
        size_t vl;
        assert_int_equal(cs_cursor_value(c, &v, &vl), 0);
        assert_int_equal(((const char *)v)[0], 'f');
    }
    assert_int_equal(seen, n / 2);
    cs_cursor_close(c);
    /* The closed cursor's view and every retired one are released (on the shard, soon after):
     * what is left is half the records in about as many nodes as before. Without reclamation
     * the cursor's copy alone would add a whole tree, and the retired views several more. */
    check_get(db, "missing", NULL);
    uint64_t now = 0;
    for (int waited = 0; waited < 500; waited++) {
        check_get(db, "missing", NULL);
        now = stats_sum(db, 2).tree_bytes;
        if (now < base + base / 2)
            break;
        usleep(10000);
    }
    if (now >= base + base / 2)
        fail_msg("tree bytes %llu after the cursor closed, %llu before the rewrites",
                 (unsigned long long)now, (unsigned long long)base);
    assert_int_equal(cs_close(db), 0);
}

/* Session gets are answered from views (at once, in the submit call) and through the queue. */
/* 4000 durable puts into coll through s, 64 in flight. */
static void load_unread(cs_session *s, const char *coll)
{
    static char keys[4000][16];
    struct cs_completion done[64];
    for (int i = 0; i < 4000; i++) {
        snprintf(keys[i], sizeof(keys[i]), "big%05d", i);
        assert_int_equal(cs_session_put(s, coll, keys[i], strlen(keys[i]), "0123456789", 10, 0), 0);
        if (cs_session_inflight(s) == 64 || i == 3999) {
            int n = cs_session_poll(s, done, 64, cs_session_inflight(s));
            for (int j = 0; j < n; j++)
                assert_int_equal(done[j].rc, 0);
        }
    }
}

/* Sync mode publishes views only while readers use them: writes nobody reads publish none,
 * the first read asks for them (and is answered by the shard), the next ones are answered from
 * the view. A collection dropped while nobody reads still gives back its memory once the drop is
 * durable. */
static void test_sync_views_follow_readers_and_drops_free_memory(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_with("sync", "1", NULL);
    cs_session *s;
    assert_int_equal(cs_session_open(db, 64, &s), 0);
    load_unread(s, "big");
    struct cs_shard_stats st = stats_sum(db, 1);
    assert_int_equal(st.views, 0);
    assert_int_equal(st.records, 4000);
    assert_true(st.tree_bytes > 4000 * 20);
    void *v;
    size_t vl;
    assert_int_equal(cs_get(db, "big", "big00007", 8, &v, &vl), 0); /* asks; the shard answers */
    cs_free(v);
    assert_int_equal(stats_sum(db, 1).gets, 1);
    /* the shard publishes at the end of the loop iteration that ran the get: wait for it */
    for (int i = 0; i < 2000 && stats_sum(db, 1).views == 0; i++)
        usleep(500);
    assert_int_equal(cs_get(db, "big", "big00008", 8, &v, &vl), 0); /* the view answers */
    cs_free(v);
    st = stats_sum(db, 1);
    assert_int_equal(st.gets, 1);
    assert_int_equal(st.views, 1);

    /* a collection nobody reads (long after the last read), then dropped: its tree is freed
     * without any read */
    usleep(300000);
    uint64_t before = stats_sum(db, 1).tree_bytes;
    load_unread(s, "unread");
    st = stats_sum(db, 1);
    assert_int_equal(st.views, 1);
    assert_true(st.tree_bytes > before + 4000 * 20);
    assert_int_equal(cs_collection_drop(db, "unread"), 0);
    for (int i = 0; i < 1000 && stats_sum(db, 1).tree_bytes > before; i++)
        usleep(1000);
    st = stats_sum(db, 1);
    if (st.tree_bytes > before)
        fail_msg("the dropped collection still holds %llu bytes",
                 (unsigned long long)(st.tree_bytes - before));
    assert_int_equal(st.records, 4000);
    cs_session_close(s);
    assert_int_equal(cs_close(db), 0);
}

static void test_session_gets_from_views_and_queue(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db = open_with("async", "2", NULL);
    char keys[200][16];
    for (int i = 0; i < 200; i++) {
        snprintf(keys[i], sizeof(keys[i]), "s%04d", i);
        assert_int_equal(cs_put(db, "v", keys[i], strlen(keys[i]), keys[i], strlen(keys[i])), 0);
    }
    cs_session *s;
    assert_int_equal(cs_session_open(db, 64, &s), 0);
    unsigned got = 0;
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 200; i++) {
            while (cs_session_get(s, "v", keys[i], strlen(keys[i]), (uint64_t)i) == CS_EFULL) {
                struct cs_completion done[64];
                int n = cs_session_poll(s, done, 64, 1);
                assert_true(n >= 1);
                for (int j = 0; j < n; j++, got++) {
                    assert_int_equal(done[j].rc, 0);
                    const char *want = keys[done[j].user_data];
                    assert_int_equal(done[j].vlen, strlen(want));
                    assert_memory_equal(done[j].val, want, done[j].vlen);
                    cs_free(done[j].val);
                }
            }
        }
    while (cs_session_inflight(s) > 0) {
        struct cs_completion done[64];
        int n = cs_session_poll(s, done, 64, 1);
        for (int j = 0; j < n; j++, got++) {
            assert_int_equal(done[j].rc, 0);
            cs_free(done[j].val);
        }
    }
    assert_int_equal(got, 600);
    cs_session_close(s);
    struct cs_shard_stats st = stats_sum(db, 2);
    assert_true(st.gets < 600); /* views answered some */
    assert_int_equal(cs_close(db), 0);
}

static int setup(void **state)
{
    (void)state;
    cst_tmpdir_make(root, sizeof(root), "views");
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
        cmocka_unit_test(test_async_reads_see_every_acknowledged_write),
        cmocka_unit_test(test_none_reads_see_every_acknowledged_write),
        cmocka_unit_test(test_sync_reads_see_every_acknowledged_write),
        cmocka_unit_test(test_sync_reads_never_see_a_frame_before_it_is_durable),
        cmocka_unit_test(test_cursor_view_stays_unchanged_and_is_freed),
        cmocka_unit_test(test_session_gets_from_views_and_queue),
        cmocka_unit_test(test_sync_views_follow_readers_and_drops_free_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
