/* Durability tests through the public API: checkpoints (explicit and automatic) and recovery
 * from checkpoint + WAL tail, removal of covered WAL segments, a damaged checkpoint reported as
 * corruption, and frames that cannot be made durable: ENOSPC rolls them back and the database
 * keeps working; an I/O error rolls them back and turns the shard read-only; in both cases no
 * reader ever sees the lost writes and every acknowledged write survives a reopen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cstore.h"

static char root[256];
static char dbdir[300];
static int dbseq;

static void fresh_dir(void)
{
    snprintf(dbdir, sizeof(dbdir), "%s/db%d", root, dbseq++);
}

/* Open with shards=1 and extra "name=value" pairs (NULL-terminated). */
static int open_with(cs_db **db, ...)
{
    cs_options *o = cs_options_new();
    assert_int_equal(cs_options_set(o, "shards", "1"), 0);
    va_list ap;
    va_start(ap, db);
    for (const char *kv; (kv = va_arg(ap, const char *)) != NULL;) {
        char name[64];
        const char *eq = strchr(kv, '=');
        assert_non_null(eq);
        snprintf(name, sizeof(name), "%.*s", (int)(eq - kv), kv);
        assert_int_equal(cs_options_set(o, name, eq + 1), 0);
    }
    va_end(ap);
    *db = NULL;
    int rc = cs_open(dbdir, o, db);
    cs_options_free(o);
    return rc;
}

static void key_of(int i, char *k)
{
    snprintf(k, 32, "key-%06d", i);
}

static size_t value_of(int i, int version, char *v)
{
    /* values big enough that WAL segments fill quickly, and compressible */
    int n = snprintf(v, 600, "v%d.%d:", i, version);
    memset(v + n, 'a' + (i % 26), 400);
    return (size_t)n + 400;
}

static void put_i(cs_db *db, int i, int version)
{
    char k[32], v[600];
    key_of(i, k);
    size_t vl = value_of(i, version, v);
    int rc = cs_put(db, "d", k, strlen(k), v, vl);
    if (rc)
        fail_msg("put %d: %s", i, cs_strerror(rc));
}

static void check_i(cs_db *db, int i, int version)
{
    char k[32], want[600];
    key_of(i, k);
    void *v = NULL;
    size_t vl;
    int rc = cs_get(db, "d", k, strlen(k), &v, &vl);
    if (version < 0) {
        if (rc != CS_ENOTFOUND)
            fail_msg("key %d should be absent, rc %d", i, rc);
        return;
    }
    size_t wl = value_of(i, version, want);
    if (rc || vl != wl || memcmp(v, want, wl) != 0)
        fail_msg("key %d: rc %d (%s), value differs from version %d", i, rc, cs_strerror(rc),
                 version);
    cs_free(v);
}

/* The version a value_of() value was made with ("v<i>.<version>:..."). */
static int v_version(const void *v)
{
    const char *dot = memchr(v, '.', 16);
    return dot ? atoi(dot + 1) : -2;
}

static int count_files(const char *prefix)
{
    char shard[400];
    snprintf(shard, sizeof(shard), "%s/shard-000", dbdir);
    DIR *d = opendir(shard);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

static struct cs_shard_stats stats0(cs_db *db)
{
    struct cs_shard_stats st;
    assert_int_equal(cs_stats(db, 0, &st), 0);
    return st;
}

static void test_checkpoint_then_reopen_loads_it_and_replays_the_tail(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db;
    assert_int_equal(open_with(&db, "wal_segment_bytes=1M", "checkpoint_wal_bytes=0",
                               "durability=async", "wal_compress_bytes=0", NULL),
                     0);
    enum { N = 6000 };
    for (int i = 0; i < N; i++)
        put_i(db, i, 1);
    assert_true(count_files("wal-") >= 3);
    assert_int_equal(cs_checkpoint(db), 0);
    struct cs_shard_stats st = stats0(db);
    assert_int_equal(st.checkpoints, 1);
    assert_true(st.checkpoint_lsn >= N);
    assert_int_equal(count_files("snap-"), 1);
    assert_true(count_files("wal-") <= 2); /* covered segments are gone */
    /* the tail after the checkpoint: overwrites, deletes, a new collection */
    for (int i = 0; i < 100; i++)
        put_i(db, i, 2);
    for (int i = 100; i < 200; i++) {
        char k[32];
        key_of(i, k);
        assert_int_equal(cs_del(db, "d", k, strlen(k)), 0);
    }
    assert_int_equal(cs_put(db, "late", "x", 1, "y", 1), 0);
    assert_int_equal(cs_close(db), 0);

    assert_int_equal(open_with(&db, NULL), 0);
    st = stats0(db);
    assert_true(st.checkpoint_lsn >= N);
    assert_true(st.recovered_records <= 210); /* only the tail was replayed */
    assert_int_equal(st.records, N - 100 + 1);
    for (int i = 0; i < N; i++)
        check_i(db, i, i < 100 ? 2 : (i < 200 ? -1 : 1));
    void *v;
    size_t vl;
    assert_int_equal(cs_get(db, "late", "x", 1, &v, &vl), 0);
    cs_free(v);
    /* a second checkpoint replaces the first */
    assert_int_equal(cs_checkpoint(db), 0);
    assert_int_equal(count_files("snap-"), 1);
    assert_int_equal(cs_close(db), 0);
    assert_int_equal(open_with(&db, NULL), 0);
    assert_int_equal(stats0(db).recovered_records, 0);
    check_i(db, 5, 2);
    check_i(db, 150, -1);
    check_i(db, 5000, 1);
    assert_int_equal(cs_close(db), 0);
}

static void test_checkpoint_starts_by_itself_after_enough_wal(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db;
    assert_int_equal(open_with(&db, "wal_segment_bytes=1M", "checkpoint_wal_bytes=1M",
                               "durability=async", "wal_compress_bytes=0", NULL),
                     0);
    for (int i = 0; i < 8000; i++)
        put_i(db, i, 1);
    /* The checkpoint runs on the shard's helper thread: wait for it (up to 60 s on a loaded
     * machine); without the trigger it never comes. */
    for (int waited = 0; stats0(db).checkpoints < 1 && waited < 6000; waited++)
        usleep(10000);
    assert_true(stats0(db).checkpoints >= 1);
    assert_int_equal(cs_close(db), 0);
    assert_int_equal(open_with(&db, NULL), 0);
    for (int i = 0; i < 8000; i += 7)
        check_i(db, i, 1);
    assert_int_equal(cs_close(db), 0);
}

static void test_damaged_checkpoint_is_corruption_naming_the_file(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db;
    assert_int_equal(open_with(&db, "checkpoint_wal_bytes=0", "durability=async", NULL), 0);
    for (int i = 0; i < 500; i++)
        put_i(db, i, 1);
    assert_int_equal(cs_checkpoint(db), 0);
    assert_int_equal(cs_close(db), 0);
    char shard[400], path[700];
    snprintf(shard, sizeof(shard), "%s/shard-000", dbdir);
    DIR *d = opendir(shard);
    struct dirent *e;
    path[0] = 0;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "snap-", 5) == 0)
            snprintf(path, sizeof(path), "%s/%s", shard, e->d_name);
    closedir(d);
    assert_true(path[0] != 0);
    FILE *f = fopen(path, "r+");
    assert_non_null(f);
    fseek(f, 200, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 200, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
    assert_int_equal(open_with(&db, NULL), CS_ECORRUPT);
    assert_null(db);
    assert_non_null(strstr(cs_last_error(), "snap-"));
    assert_non_null(strstr(cs_last_error(), "offset"));
}

static char big[16384];

static int big_put(cs_db *db, int i, int version)
{
    char k[32];
    key_of(i, k);
    memset(big, 'A' + version, sizeof(big));
    memcpy(big, &i, sizeof(i));
    return cs_put(db, "big", k, strlen(k), big, sizeof(big));
}

static void big_check(cs_db *db, int i, int version)
{
    char k[32];
    key_of(i, k);
    void *v = NULL;
    size_t vl = 0;
    int rc = cs_get(db, "big", k, strlen(k), &v, &vl);
    if (version < 0) {
        if (rc != CS_ENOTFOUND)
            fail_msg("big %d should be absent, rc %d", i, rc);
        return;
    }
    memset(big, 'A' + version, sizeof(big));
    memcpy(big, &i, sizeof(i));
    if (rc || vl != sizeof(big) || memcmp(v, big, vl) != 0)
        fail_msg("big %d: rc %d, not version %d", i, rc, version);
    cs_free(v);
}

static void test_enospc_rolls_back_the_frame_and_the_database_goes_on(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db;
    /* allocation 1 is the first segment at creation; 2 is the first rotation */
    assert_int_equal(
        open_with(&db, "wal_segment_bytes=1M", "fault=enospc=2", "wal_compress_bytes=0", NULL), 0);
    int failed = -1;
    for (int i = 0; i < 500 && failed < 0; i++) {
        int rc = big_put(db, i, 1);
        if (rc == -ENOSPC)
            failed = i;
        else
            assert_int_equal(rc, 0);
    }
    assert_true(failed > 0);
    big_check(db, failed, -1);    /* the refused write is not visible */
    big_check(db, failed - 1, 1); /* what was acknowledged is */
    struct cs_shard_stats st = stats0(db);
    assert_int_equal(st.wal_enospc, 1);
    assert_int_equal(st.io_error, 0);
    /* space is back: writes work again, into a new segment */
    for (int j = failed; j < failed + 80; j++)
        assert_int_equal(big_put(db, j, 2), 0);
    assert_int_equal(cs_close(db), 0);
    assert_int_equal(open_with(&db, NULL), 0);
    for (int j = 0; j < failed; j++)
        big_check(db, j, 1);
    for (int j = failed; j < failed + 80; j++)
        big_check(db, j, 2);
    assert_int_equal(cs_close(db), 0);
}

static void test_write_error_rolls_back_and_turns_read_only(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db;
    assert_int_equal(open_with(&db, "fault=write_eio=30", NULL), 0);
    int i = 0, failed = -1;
    for (; i < 100 && failed < 0; i++) {
        char k[32], v[600];
        key_of(i, k);
        size_t vl = value_of(i, 1, v);
        int rc = cs_put(db, "d", k, strlen(k), v, vl);
        if (rc == CS_EIO)
            failed = i;
        else
            assert_int_equal(rc, 0);
    }
    assert_true(failed > 0);
    check_i(db, failed, -1); /* never acknowledged, never visible */
    for (int j = 0; j < failed; j++)
        check_i(db, j, 1); /* reads keep working */
    char k[32];
    key_of(0, k);
    assert_int_equal(cs_put(db, "d", k, strlen(k), "x", 1), CS_EIO);
    assert_int_equal(cs_del(db, "d", k, strlen(k)), CS_EIO);
    assert_int_equal(cs_checkpoint(db), CS_EIO);
    assert_int_equal(stats0(db).io_error, CS_EIO);
    cs_close(db);
    assert_int_equal(open_with(&db, NULL), 0);
    for (int j = 0; j < failed; j++)
        check_i(db, j, 1);
    check_i(db, failed, -1);
    put_i(db, failed, 3);
    check_i(db, failed, 3);
    assert_int_equal(cs_close(db), 0);
}

/* What key i holds after failed_frames_undo_their_writes' second phase: its op there was an
 * overwrite (i % 3 == 0), a delete (i % 3 == 1) or, for the new keys, an insert. */
enum { UNDO_OLD = 900, UNDO_NEW = 300, UNDO_DEPTH = 128 };

static int undo_state(int i, bool applied)
{
    if (i >= UNDO_OLD)
        return applied ? 2 : -1;
    if (i % 3 == 1)
        return applied ? -1 : 1;
    return applied ? 2 : 1;
}

/* Key i holds one of the states its write can have left (either, when the write failed but may
 * have reached the disk). */
static void check_undo(cs_db *db, int i, bool applied, bool maybe)
{
    if (!maybe) {
        check_i(db, i, undo_state(i, applied));
        return;
    }
    char k[32];
    key_of(i, k);
    void *v = NULL;
    size_t vl;
    int rc = cs_get(db, "d", k, strlen(k), &v, &vl);
    int version = rc == CS_ENOTFOUND ? -1 : rc == 0 && vl > 3 ? v_version(v) : -2;
    cs_free(v);
    if (version != undo_state(i, true) && version != undo_state(i, false))
        fail_msg("key %d: rc %d, version %d: neither before nor after its write", i, rc, version);
}

/* Many writes in flight (so frames hold many records, one being written while the next
 * fills) overwrite, delete and insert; fault fails one frame. Every write whose completion
 * failed (with fail_rc, never anything else) left no trace that a reader can see, and every
 * one that succeeded is there, also after a reopen. After the reopen, a failed write is gone
 * too when lost (the write never reached the file); when the fdatasync failed, the data may
 * have reached the disk: it may be there. */
static void failed_frames_undo_their_writes(const char *fault, int fail_rc, bool lost)
{
    fresh_dir();
    cs_db *db;
    assert_int_equal(open_with(&db, "wal_compress_bytes=0", NULL), 0);
    cs_batch *b = cs_batch_new();
    for (int i = 0; i < UNDO_OLD; i++) {
        char k[32], v[600];
        key_of(i, k);
        size_t vl = value_of(i, 1, v);
        assert_int_equal(cs_batch_put(b, "d", k, strlen(k), v, vl), 0);
    }
    assert_int_equal(cs_write(db, b), 0);
    cs_batch_free(b);
    assert_int_equal(cs_close(db), 0);

    assert_int_equal(open_with(&db, "wal_compress_bytes=0", fault, NULL), 0);
    cs_session *s;
    assert_int_equal(cs_session_open(db, UNDO_DEPTH, &s), 0);
    static char keys[UNDO_OLD + UNDO_NEW][32], vals[UNDO_OLD + UNDO_NEW][600];
    int rcs[UNDO_OLD + UNDO_NEW];
    struct cs_completion done[UNDO_DEPTH];
    int completed = 0;
    for (int i = 0; i < UNDO_OLD + UNDO_NEW || completed < UNDO_OLD + UNDO_NEW;) {
        if (i < UNDO_OLD + UNDO_NEW && cs_session_inflight(s) < UNDO_DEPTH) {
            key_of(i, keys[i]);
            size_t vl = value_of(i, 2, vals[i]);
            int rc =
                i < UNDO_OLD && i % 3 == 1
                    ? cs_session_del(s, "d", keys[i], strlen(keys[i]), (uint64_t)i)
                    : cs_session_put(s, "d", keys[i], strlen(keys[i]), vals[i], vl, (uint64_t)i);
            assert_int_equal(rc, 0);
            i++;
            continue;
        }
        int n = cs_session_poll(s, done, UNDO_DEPTH, 1);
        assert_true(n > 0);
        for (int j = 0; j < n; j++)
            rcs[done[j].user_data] = done[j].rc;
        completed += n;
    }
    cs_session_close(s);
    int ok = 0, failed = 0;
    for (int i = 0; i < UNDO_OLD + UNDO_NEW; i++) {
        if (rcs[i] != 0 && rcs[i] != fail_rc)
            fail_msg("write %d: %s, expected 0 or %s", i, cs_strerror(rcs[i]),
                     cs_strerror(fail_rc));
        ok += rcs[i] == 0;
        failed += rcs[i] != 0;
    }
    assert_true(ok > 2 * UNDO_DEPTH / 4); /* the frames before the failed one */
    assert_true(failed > 1);              /* a frame of more than one record failed */
    for (int pass = 0; pass < 2; pass++) {
        uint64_t present = 0;
        bool maybe = pass == 1 && !lost;
        for (int i = 0; i < UNDO_OLD + UNDO_NEW; i++) {
            check_undo(db, i, rcs[i] == 0, maybe && rcs[i] != 0);
            present += undo_state(i, rcs[i] == 0) >= 0;
        }
        if (!maybe)
            assert_int_equal(stats0(db).records, present);
        cs_close(db);
        if (pass == 0)
            assert_int_equal(open_with(&db, NULL), 0);
    }
}

static void test_failed_frames_undo_exactly_their_writes_eio(void **state)
{
    (void)state;
    failed_frames_undo_their_writes("fault=fsync_eio=4", CS_EIO, false);
}

static void test_failed_frames_undo_exactly_their_writes_enospc(void **state)
{
    (void)state;
    failed_frames_undo_their_writes("fault=write_enospc=4", -ENOSPC, true);
}

static void test_checkpoint_refused_without_a_wal(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db;
    assert_int_equal(open_with(&db, "durability=none", NULL), 0);
    assert_int_equal(cs_checkpoint(db), CS_ENOTSUP);
    assert_int_equal(cs_close(db), 0);
}

static void flip_in(const char *prefix, long off)
{
    char shard[400], path[700];
    snprintf(shard, sizeof(shard), "%s/shard-000", dbdir);
    DIR *d = opendir(shard);
    assert_non_null(d);
    struct dirent *e;
    path[0] = 0;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && !path[0])
            snprintf(path, sizeof(path), "%s/%s", shard, e->d_name);
    closedir(d);
    assert_true(path[0] != 0);
    FILE *f = fopen(path, "r+");
    assert_non_null(f);
    fseek(f, off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(c ^ 0x04, f);
    fclose(f);
}

static void test_verify_passes_a_sound_database_and_changes_nothing(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db;
    assert_int_equal(open_with(&db, "durability=async", NULL), 0);
    for (int i = 0; i < 300; i++)
        put_i(db, i, 1);
    assert_int_equal(cs_close(db), 0);
    char *report = NULL;
    assert_int_equal(cs_verify(dbdir, NULL, &report), 0);
    assert_non_null(report);
    assert_non_null(strstr(report, "300 records"));
    assert_non_null(strstr(report, ": ok"));
    cs_free(report);
    /* a folder without a database */
    char empty[400];
    snprintf(empty, sizeof(empty), "%s/empty", root);
    assert_int_equal(mkdir(empty, 0755), 0);
    assert_int_equal(cs_verify(empty, NULL, NULL), CS_ENOTFOUND);
}

static void test_damaged_wal_fails_verify_and_open_until_salvaged(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db;
    /* sync: every blocking put is its own frame, so the damage lands mid-log whatever the timing */
    assert_int_equal(open_with(&db, "checkpoint_wal_bytes=0", NULL), 0);
    for (int i = 0; i < 300; i++)
        put_i(db, i, 1);
    assert_int_equal(cs_close(db), 0);
    /* one record frames are ~470 bytes: this lands in the middle of the log */
    flip_in("wal-", 64 + 470 * 100 + 200);
    char *report = NULL;
    assert_int_equal(cs_verify(dbdir, NULL, &report), CS_ECORRUPT);
    assert_non_null(strstr(cs_last_error(), "wal-"));
    cs_free(report);
    assert_int_equal(open_with(&db, NULL), CS_ECORRUPT);
    /* salvage keeps what precedes the damage and drops the rest */
    assert_int_equal(open_with(&db, "salvage=true", NULL), 0);
    struct cs_shard_stats st = stats0(db);
    assert_true(st.recovery_salvaged_bytes > 0);
    assert_true(st.records >= 90 && st.records < 300);
    for (int i = 0; i < 90; i++)
        check_i(db, i, 1);
    put_i(db, 1000, 1);
    assert_int_equal(cs_close(db), 0);
    assert_int_equal(cs_verify(dbdir, NULL, NULL), 0);
    assert_int_equal(open_with(&db, NULL), 0);
    check_i(db, 1000, 1);
    assert_int_equal(cs_close(db), 0);
}

static void test_damaged_checkpoint_is_salvaged_and_replaced(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db;
    assert_int_equal(open_with(&db, "durability=async", "checkpoint_wal_bytes=0", NULL), 0);
    for (int i = 0; i < 5000; i++)
        put_i(db, i, 1);
    assert_int_equal(cs_checkpoint(db), 0);
    assert_int_equal(cs_close(db), 0);
    flip_in("snap-", 64 + 32 + 10); /* inside the first block's payload */
    assert_int_equal(cs_verify(dbdir, NULL, NULL), CS_ECORRUPT);
    assert_non_null(strstr(cs_last_error(), "snap-"));
    assert_int_equal(open_with(&db, "salvage=true", NULL), 0);
    assert_int_equal(cs_checkpoint(db), 0); /* waits for the replacement too */
    put_i(db, 7, 9);
    assert_int_equal(cs_close(db), 0);
    assert_int_equal(cs_verify(dbdir, NULL, NULL), 0);
    assert_int_equal(open_with(&db, NULL), 0);
    check_i(db, 7, 9);
    assert_int_equal(cs_close(db), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "%s/cs-test-dur-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(root));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_then_reopen_loads_it_and_replays_the_tail),
        cmocka_unit_test(test_checkpoint_starts_by_itself_after_enough_wal),
        cmocka_unit_test(test_damaged_checkpoint_is_corruption_naming_the_file),
        cmocka_unit_test(test_enospc_rolls_back_the_frame_and_the_database_goes_on),
        cmocka_unit_test(test_write_error_rolls_back_and_turns_read_only),
        cmocka_unit_test(test_failed_frames_undo_exactly_their_writes_eio),
        cmocka_unit_test(test_failed_frames_undo_exactly_their_writes_enospc),
        cmocka_unit_test(test_checkpoint_refused_without_a_wal),
        cmocka_unit_test(test_verify_passes_a_sound_database_and_changes_nothing),
        cmocka_unit_test(test_damaged_wal_fails_verify_and_open_until_salvaged),
        cmocka_unit_test(test_damaged_checkpoint_is_salvaged_and_replaced),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
