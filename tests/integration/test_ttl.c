/* Integration tests of record expiry (time to live) through the public API: an expired record is
 * absent to every reader (cs_get, sessions, cursors, transactions, cs_get_expiry, cs_del), its
 * expiry survives close/reopen, checkpoints and a crash, cs_expire sets and clears it, plain puts
 * clear it, the background reclaim removes expired records and logs their deletes, and bad
 * expiries are refused. Time is moved with the engine's test hook (cs_clock_shift_ms), never
 * waited for; what the shards do by themselves is awaited with cst_wait_until. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cstore.h"
#include "tests/test_util.h"
#include "util.h" /* cs_clock_shift_ms: the test hook */

#define HOUR_MS 3600000ull

static char root[CST_PATH_MAX];
static char dir[CST_PATH_MAX + 32];
static int seq;

static void fresh(void)
{
    snprintf(dir, sizeof(dir), "%s/db%d", root, seq++);
}

static cs_db *open_db(const char *durability)
{
    cs_db *db = NULL;
    int rc = cst_open(dir, &db, "shards=2", durability, NULL);
    if (rc)
        fail_msg("cs_open: %s (%s)", cs_strerror(rc), cs_last_error());
    return db;
}

static int get_rc(cs_db *db, const char *key)
{
    void *v = NULL;
    size_t n = 0;
    int rc = cs_get(db, "c", key, strlen(key), &v, &n);
    cs_free(v);
    return rc;
}

static uint64_t expiry_of(cs_db *db, const char *key)
{
    uint64_t exp = 7;
    assert_int_equal(cs_get_expiry(db, "c", key, strlen(key), &exp), 0);
    return exp;
}

static size_t cursor_count(cs_db *db)
{
    cs_cursor *c;
    assert_int_equal(cs_cursor_open(db, "c", &c), 0);
    size_t n = 0;
    for (int rc = cs_cursor_first(c); rc == 0; rc = cs_cursor_next(c))
        n++;
    cs_cursor_close(c);
    return n;
}

static void put_ttl(cs_db *db, const char *key, const char *val, uint64_t exp)
{
    assert_int_equal(cs_put_ttl(db, "c", key, strlen(key), val, strlen(val), exp), 0);
}

static void test_expired_record_is_absent_to_every_reader(void **state)
{
    (void)state;
    fresh();
    cs_db *db = open_db("durability=sync");
    uint64_t exp = cs_clock_ms() + HOUR_MS;
    put_ttl(db, "t", "soon gone", exp);
    assert_int_equal(cs_put(db, "c", "p", 1, "stays", 5), 0);
    assert_int_equal(get_rc(db, "t"), 0);
    assert_int_equal(expiry_of(db, "t"), exp);
    assert_int_equal(expiry_of(db, "p"), 0);
    assert_int_equal(cursor_count(db), 2);

    cs_clock_shift_ms((int64_t)(2 * HOUR_MS)); /* past the expiry */
    assert_int_equal(get_rc(db, "t"), CS_ENOTFOUND);
    assert_int_equal(get_rc(db, "p"), 0);
    uint64_t e = 7;
    assert_int_equal(cs_get_expiry(db, "c", "t", 1, &e), CS_ENOTFOUND);
    assert_int_equal(e, 0);
    assert_int_equal(cursor_count(db), 1);
    cs_txn *t;
    assert_int_equal(cs_txn_begin(db, 0, &t), 0);
    void *v = NULL;
    size_t n = 0;
    assert_int_equal(cs_txn_get(t, "c", "t", 1, &v, &n), CS_ENOTFOUND);
    cs_cursor *tc;
    assert_int_equal(cs_txn_cursor_open(t, "c", &tc), 0);
    assert_int_equal(cs_cursor_first(tc), 0);
    const void *k;
    size_t kl;
    assert_int_equal(cs_cursor_key(tc, &k, &kl), 0);
    assert_memory_equal(k, "p", 1);
    assert_int_equal(cs_cursor_next(tc), CS_ENOTFOUND);
    cs_cursor_close(tc);
    assert_int_equal(cs_txn_commit(t), 0);
    assert_int_equal(cs_txn_begin(db, CS_TXN_READONLY, &t), 0);
    assert_int_equal(cs_txn_get(t, "c", "t", 1, &v, &n), CS_ENOTFOUND);
    assert_int_equal(cs_txn_commit(t), 0);
    cs_session *s;
    assert_int_equal(cs_session_open(db, 4, &s), 0);
    assert_int_equal(cs_session_get(s, "c", "t", 1, 1), 0);
    struct cs_completion out;
    assert_int_equal(cs_session_poll(s, &out, 1, 1), 1);
    assert_int_equal(out.rc, CS_ENOTFOUND);
    cs_session_close(s);
    assert_int_equal(cs_expire(db, "c", "t", 1, 0), CS_ENOTFOUND); /* nothing to persist */
    cs_clock_shift_ms(-(int64_t)(2 * HOUR_MS));
    assert_int_equal(cs_close(db), 0);
}

static void test_past_expiry_is_absent_at_once_and_overflow_is_refused(void **state)
{
    (void)state;
    fresh();
    cs_db *db = open_db("durability=sync");
    put_ttl(db, "old", "v", 1); /* 1970 */
    assert_int_equal(get_rc(db, "old"), CS_ENOTFOUND);
    assert_int_equal(cs_del(db, "c", "old", 3), CS_ENOTFOUND);
    assert_int_equal(cs_put_ttl(db, "c", "x", 1, "v", 1, CS_EXPIRE_MAX_MS + 1), CS_EINVAL);
    assert_int_equal(cs_put_ttl(db, "c", "x", 1, "v", 1, UINT64_MAX), CS_EINVAL);
    assert_int_equal(get_rc(db, "x"), CS_ENOTFOUND);
    assert_int_equal(cs_put(db, "c", "x", 1, "v", 1), 0);
    assert_int_equal(cs_expire(db, "c", "x", 1, CS_EXPIRE_MAX_MS + 1), CS_EINVAL);
    assert_int_equal(expiry_of(db, "x"), 0);
    cs_batch *b = cs_batch_new();
    assert_int_equal(cs_batch_put_ttl(b, "c", "y", 1, "v", 1, CS_EXPIRE_MAX_MS + 1), CS_EINVAL);
    assert_int_equal(cs_batch_count(b), 0);
    cs_batch_free(b);
    uint64_t e;
    assert_int_equal(cs_get_expiry(db, "c", "x", 1, NULL), CS_EINVAL);
    assert_int_equal(cs_get_expiry(db, "nope", "x", 1, &e), CS_ENOTFOUND);
    assert_int_equal(cs_close(db), 0);
}

static void test_expire_persist_and_plain_put_clears(void **state)
{
    (void)state;
    fresh();
    cs_db *db = open_db("durability=sync");
    assert_int_equal(cs_put(db, "c", "k", 1, "value", 5), 0);
    assert_int_equal(expiry_of(db, "k"), 0);
    uint64_t exp = cs_clock_ms() + HOUR_MS;
    assert_int_equal(cs_expire(db, "c", "k", 1, exp), 0);
    assert_int_equal(expiry_of(db, "k"), exp);
    void *v = NULL;
    size_t n = 0;
    assert_int_equal(cs_get(db, "c", "k", 1, &v, &n), 0); /* the value is kept */
    assert_int_equal(n, 5);
    assert_memory_equal(v, "value", 5);
    cs_free(v);
    assert_int_equal(cs_expire(db, "c", "k", 1, 0), 0); /* persist */
    assert_int_equal(expiry_of(db, "k"), 0);
    assert_int_equal(cs_expire(db, "c", "k", 1, exp), 0);
    assert_int_equal(cs_put(db, "c", "k", 1, "new", 3), 0); /* SET clears it */
    assert_int_equal(expiry_of(db, "k"), 0);
    assert_int_equal(cs_expire(db, "c", "k", 1, exp), 0);
    cs_txn *t;
    assert_int_equal(cs_txn_begin(db, 0, &t), 0);
    assert_int_equal(cs_txn_put(t, "c", "k", 1, "txn", 3), 0);
    assert_int_equal(cs_txn_commit(t), 0);
    assert_int_equal(expiry_of(db, "k"), 0); /* a transaction's put clears it too */
    assert_int_equal(cs_expire(db, "c", "missing", 7, exp), CS_ENOTFOUND);
    assert_int_equal(cs_expire(db, "c", "k", 1, 1), 0); /* in the past: gone at once */
    assert_int_equal(get_rc(db, "k"), CS_ENOTFOUND);
    /* a large (blob) value keeps its bytes through cs_expire */
    static char big[100000];
    memset(big, 'b', sizeof(big));
    assert_int_equal(cs_put(db, "c", "big", 3, big, sizeof(big)), 0);
    assert_int_equal(cs_expire(db, "c", "big", 3, exp), 0);
    assert_int_equal(cs_get(db, "c", "big", 3, &v, &n), 0);
    assert_int_equal(n, sizeof(big));
    assert_memory_equal(v, big, sizeof(big));
    cs_free(v);
    assert_int_equal(cs_close(db), 0);
    db = open_db("durability=sync"); /* the WAL holds the value and the expiry */
    assert_int_equal(expiry_of(db, "big"), exp);
    assert_int_equal(cs_get(db, "c", "big", 3, &v, &n), 0);
    assert_int_equal(n, sizeof(big));
    cs_free(v);
    assert_int_equal(cs_close(db), 0);
}

static void test_expiry_survives_reopen_checkpoint_and_batches(void **state)
{
    (void)state;
    fresh();
    cs_db *db = open_db("durability=sync");
    uint64_t exp = cs_clock_ms() + HOUR_MS;
    char key[32];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "k%03d", i);
        if (i % 2)
            put_ttl(db, key, "v", exp + (uint64_t)i);
        else
            assert_int_equal(cs_put(db, "c", key, strlen(key), "v", 1), 0);
    }
    cs_batch *b = cs_batch_new(); /* keys on both shards: a two-phase commit */
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "b%02d", i);
        assert_int_equal(cs_batch_put_ttl(b, "c", key, strlen(key), "bv", 2, exp + 1000), 0);
    }
    assert_int_equal(cs_write(db, b), 0);
    cs_batch_free(b);
    for (int round = 0; round < 3; round++) {
        if (round == 1)
            assert_int_equal(cs_checkpoint(db), 0);
        assert_int_equal(cs_close(db), 0);
        db = open_db("durability=sync");
        for (int i = 0; i < 200; i++) {
            snprintf(key, sizeof(key), "k%03d", i);
            assert_int_equal(expiry_of(db, key), i % 2 ? exp + (uint64_t)i : 0);
        }
        for (int i = 0; i < 20; i++) {
            snprintf(key, sizeof(key), "b%02d", i);
            assert_int_equal(expiry_of(db, key), exp + 1000);
        }
    }
    assert_int_equal(cs_close(db), 0);
}

struct reclaim_wait {
    cs_db *db;
    uint64_t expired_min;
};

static bool reclaimed(void *arg)
{
    struct reclaim_wait *w = arg;
    uint64_t expired = 0;
    for (unsigned s = 0; s < cs_shard_count(w->db); s++) {
        struct cs_shard_stats st;
        assert_int_equal(cs_stats(w->db, s, &st), 0);
        expired += st.expired;
    }
    return expired >= w->expired_min;
}

static uint64_t records(cs_db *db)
{
    uint64_t n = 0;
    for (unsigned s = 0; s < cs_shard_count(db); s++) {
        struct cs_shard_stats st;
        assert_int_equal(cs_stats(db, s, &st), 0);
        n += st.records;
    }
    return n;
}

/* The reclaim deletes every expired record (logged: they stay gone after a reopen with the clock
 * back where it was, so that the records are not expired by the clock then), and a checkpoint
 * taken meanwhile leaves them out without making replay of those deletes fail. */
static void test_background_reclaim_deletes_expired_records_durably(void **state)
{
    (void)state;
    fresh();
    cs_db *db = open_db("durability=sync");
    uint64_t exp = cs_clock_ms() + HOUR_MS;
    char key[32];
    for (int i = 0; i < 600; i++) {
        snprintf(key, sizeof(key), "e%04d", i);
        put_ttl(db, key, "expiring", exp);
    }
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "s%d", i);
        assert_int_equal(cs_put(db, "c", key, strlen(key), "stays", 5), 0);
    }
    assert_int_equal(records(db), 610);
    cs_clock_shift_ms((int64_t)(2 * HOUR_MS));
    assert_int_equal(cs_checkpoint(db), 0); /* leaves whatever is expired out */
    struct reclaim_wait w = {db, 600};
    assert_true(cst_wait_until(reclaimed, &w, 60000));
    assert_int_equal(records(db), 10);
    assert_int_equal(cursor_count(db), 10);
    cs_clock_shift_ms(-(int64_t)(2 * HOUR_MS));
    assert_int_equal(get_rc(db, "e0000"), CS_ENOTFOUND); /* deleted, not only hidden */
    assert_int_equal(cs_close(db), 0);
    db = open_db("durability=sync");
    assert_int_equal(records(db), 10);
    assert_int_equal(get_rc(db, "e0001"), CS_ENOTFOUND);
    assert_int_equal(get_rc(db, "s1"), 0);
    assert_int_equal(cs_close(db), 0);
}

/* A child writes records with expiries durably, reports each acknowledgement, and is killed
 * without closing: every acknowledged record comes back with its expiry. */
static void test_acknowledged_expiries_survive_a_crash(void **state)
{
    (void)state;
    fresh();
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    uint64_t exp = cs_clock_ms() + HOUR_MS;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        cs_db *db = NULL;
        if (cst_open(dir, &db, "shards=2", "durability=sync", NULL))
            _exit(2);
        for (uint32_t i = 0; i < 300; i++) {
            char key[32];
            snprintf(key, sizeof(key), "c%04u", i);
            if (cs_put_ttl(db, "c", key, strlen(key), "v", 1, exp + i))
                _exit(3);
            if (write(fds[1], &i, sizeof(i)) != sizeof(i))
                _exit(4);
        }
        raise(SIGKILL);
        _exit(5);
    }
    close(fds[1]);
    uint32_t acked = 0, i;
    while (read(fds[0], &i, sizeof(i)) == sizeof(i))
        acked = i + 1;
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(acked, 300);
    cs_db *db = open_db("durability=sync");
    for (i = 0; i < acked; i++) {
        char key[32];
        snprintf(key, sizeof(key), "c%04u", i);
        assert_int_equal(expiry_of(db, key), exp + i);
    }
    assert_int_equal(cs_close(db), 0);
}

static void test_session_put_ttl_sets_the_expiry(void **state)
{
    (void)state;
    fresh();
    cs_db *db = open_db("durability=async");
    cs_session *s;
    assert_int_equal(cs_session_open(db, 8, &s), 0);
    uint64_t exp = cs_clock_ms() + HOUR_MS;
    assert_int_equal(cs_session_put_ttl(s, "c", "s", 1, "v", 1, exp, 9), 0);
    assert_int_equal(cs_session_put_ttl(s, "c", "x", 1, "v", 1, CS_EXPIRE_MAX_MS + 1, 9),
                     CS_EINVAL);
    struct cs_completion out;
    assert_int_equal(cs_session_poll(s, &out, 1, 1), 1);
    assert_int_equal(out.rc, 0);
    cs_session_close(s);
    assert_int_equal(expiry_of(db, "s"), exp);
    assert_int_equal(cs_close(db), 0);
}

static int setup(void **state)
{
    (void)state;
    cst_tmpdir_make(root, sizeof(root), "ttl");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cst_tmpdir_remove(root);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expired_record_is_absent_to_every_reader),
        cmocka_unit_test(test_past_expiry_is_absent_at_once_and_overflow_is_refused),
        cmocka_unit_test(test_expire_persist_and_plain_put_clears),
        cmocka_unit_test(test_expiry_survives_reopen_checkpoint_and_batches),
        cmocka_unit_test(test_background_reclaim_deletes_expired_records_durably),
        cmocka_unit_test(test_acknowledged_expiries_survive_a_crash),
        cmocka_unit_test(test_session_put_ttl_sets_the_expiry),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
