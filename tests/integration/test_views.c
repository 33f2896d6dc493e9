/* Integration tests of lock-free reads from published views (see "VIEWS" in shards/views.c):
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
#include <sched.h>
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

/* Conditions for cst_wait_until. */
struct db_cond {
    cs_db *db;
    unsigned shards;
    uint64_t bound; /* the value the condition compares with */
    bool ask;       /* read a missing key first (a miss asks the shards to publish) */
};

static bool views_published(void *arg)
{
    struct db_cond *c = arg;
    return stats_sum(c->db, c->shards).views > c->bound;
}

static void check_get(cs_db *db, const char *key, const char *want);

/* Tree bytes fall to at most bound once what was retired or dropped is freed. */
static bool tree_bytes_at_most(void *arg)
{
    struct db_cond *c = arg;
    if (c->ask)
        check_get(c->db, "missing", NULL);
    return stats_sum(c->db, c->shards).tree_bytes <= c->bound;
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
    atomic_int started;  /* the put is about to be submitted */
    atomic_int returned; /* the put was acknowledged */
};

static void *slow_put_main(void *arg)
{
    struct slow_put *p = arg;
    atomic_store(&p->started, 1);
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
    struct db_cond published = {db, 1, 0, false};
    assert_true(cst_wait_until(views_published, &published, 60000));
    struct slow_put p = {.db = db};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_put_main, &p), 0);
    /* Read until the put returns. Every read before that sees "old" (or "new" once durable and
     * published, just before the acknowledgement reaches the put's thread); the first read after
     * it must see "new". A read that began after the put started and was answered before it
     * returned shows that readers do not wait for the write (300 ms in the fault plan). */
    bool answered_meanwhile = false;
    for (;;) {
        int started = atomic_load(&p.started);
        int returned = atomic_load(&p.returned);
        void *v = NULL;
        size_t vl = 0;
        assert_int_equal(cs_get(db, "v", "late", 4, &v, &vl), 0);
        assert_int_equal(vl, 3);
        bool is_new = memcmp(v, "new", 3) == 0;
        cs_free(v);
        if (returned) {
            assert_true(is_new); /* acknowledged: must be visible */
            break;
        }
        if (!is_new && started && !atomic_load(&p.returned))
            answered_meanwhile = true;
        sched_yield(); /* two cores: let the put's thread and the shard run */
    }
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(answered_meanwhile);
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
    struct db_cond freed = {db, 2, base + base / 2 - 1, true};
    if (!cst_wait_until(tree_bytes_at_most, &freed, 60000))
        fail_msg("tree bytes %llu after the cursor closed, %llu before the rewrites",
                 (unsigned long long)stats_sum(db, 2).tree_bytes, (unsigned long long)base);
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

/* Sync: a durable write of a record already there (a frame nobody reads) publishes no view:
 * the last reader's hold (VIEW_HOLD_NS) is over. Records stay as they were. */
static bool frames_publish_nothing(void *arg)
{
    cs_db *db = arg;
    uint64_t views = stats_sum(db, 1).views;
    assert_int_equal(cs_put(db, "big", "big00000", 8, "0123456789", 10), 0);
    return stats_sum(db, 1).views == views;
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
    struct db_cond published = {db, 1, 0, false};
    assert_true(cst_wait_until(views_published, &published, 60000));
    assert_int_equal(cs_get(db, "big", "big00008", 8, &v, &vl), 0); /* the view answers */
    cs_free(v);
    st = stats_sum(db, 1);
    assert_int_equal(st.gets, 1);
    assert_int_equal(st.views, 1);

    /* a collection nobody reads (once the frames stopped publishing for the last read), then
     * dropped: its tree is freed without any read */
    assert_true(cst_wait_until(frames_publish_nothing, db, 60000));
    uint64_t before = stats_sum(db, 1).tree_bytes, views = stats_sum(db, 1).views;
    load_unread(s, "unread");
    st = stats_sum(db, 1);
    assert_int_equal(st.views, views);
    assert_true(st.tree_bytes > before + 4000 * 20);
    assert_int_equal(cs_collection_drop(db, "unread"), 0);
    struct db_cond freed = {db, 1, before, false};
    assert_true(cst_wait_until(tree_bytes_at_most, &freed, 60000));
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
