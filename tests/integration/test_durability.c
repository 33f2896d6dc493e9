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
#include <sys/wait.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cstore.h"
#include "tests/test_util.h"

static char root[256];
static char dbdir[300];
static int dbseq;

static int value_pad = 400; /* see value_of */

static void fresh_dir(void)
{
    snprintf(dbdir, sizeof(dbdir), "%s/db%d", root, dbseq++);
    value_pad = 400; /* a test that failed half way may have left another */
}

/* Open with shards=1 and extra "name=value" pairs (NULL-terminated). */
/* Open the test database (one shard) with extra "name=value" options, NULL-terminated. */
#define open_with(db, ...) cst_open(dbdir, db, "shards=1", __VA_ARGS__)

static void key_of(int i, char *k)
{
    snprintf(k, 32, "key-%06d", i);
}

/* value_pad: bytes after the value's "v<i>.<version>:"; -1: 40 for even i, 400 for odd i */
static size_t value_of(int i, int version, char *v)
{
    /* values big enough that WAL segments fill quickly, and compressible */
    int n = snprintf(v, 600, "v%d.%d:", i, version);
    size_t pad = (size_t)(value_pad >= 0 ? value_pad : i % 2 ? 400 : 40);
    memset(v + n, 'a' + (i % 26), pad);
    return (size_t)n + pad;
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
    /* the WAL since the checkpoint before this one stays (none before: all of it) */
    assert_true(count_files("wal-") >= 3);
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
    /* a second checkpoint: the first stays as its fallback, the WAL before the first goes */
    assert_int_equal(cs_checkpoint(db), 0);
    assert_int_equal(count_files("snap-"), 2);
    assert_true(count_files("wal-") <= 2);
    assert_int_equal(cs_close(db), 0);
    assert_int_equal(open_with(&db, NULL), 0);
    assert_int_equal(stats0(db).recovered_records, 0);
    check_i(db, 5, 2);
    check_i(db, 150, -1);
    check_i(db, 5000, 1);
    assert_int_equal(cs_close(db), 0);
}

static bool checkpointed(void *arg)
{
    return stats0(arg).checkpoints >= 1;
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
    assert_true(cst_wait_until(checkpointed, db, 60000));
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
    assert_int_equal(cs_close(db), CS_EIO); /* the read-only shard's error */
    assert_int_equal(open_with(&db, NULL), 0);
    for (int j = 0; j < failed; j++)
        check_i(db, j, 1);
    check_i(db, failed, -1);
    put_i(db, failed, 3);
    check_i(db, failed, 3);
    assert_int_equal(cs_close(db), 0);
}

/* failed_frames_undo_their_writes: keys 0..UNDO_OLD-1 hold version 1 first; then key i is
 * overwritten twice (version 2, then 3: i % 3 == 0), deleted (i % 3 == 1) or overwritten once
 * (i % 3 == 2); the keys from UNDO_OLD on are inserted (version 2). */
enum { UNDO_OLD = 900, UNDO_NEW = 300, UNDO_DEPTH = 128, UNDO_OPS = UNDO_OLD * 4 / 3 + UNDO_NEW };

struct undo_op {
    int key;     /* key_of() index */
    int version; /* the version it writes; -1: a delete */
    int rc;      /* its completion */
};

/* The state of key i (a version, -1 absent) if exactly the ops in ops[first, last) with rc 0 (or
 * with any rc, when all) were applied. */
static int undo_state(const struct undo_op *ops, int first, int last, int i, bool all)
{
    int state = i < UNDO_OLD ? 1 : -1;
    for (int j = first; j < last; j++)
        if (ops[j].key == i && (all || ops[j].rc == 0))
            state = ops[j].version;
    return state;
}

static int read_version(cs_db *db, int i)
{
    char k[32];
    key_of(i, k);
    void *v = NULL;
    size_t vl;
    int rc = cs_get(db, "d", k, strlen(k), &v, &vl);
    int version = rc == CS_ENOTFOUND ? -1 : rc == 0 && vl > 3 ? v_version(v) : -2;
    cs_free(v);
    return version;
}

/* Many writes in flight (so frames hold many records, one being written while the next
 * fills) overwrite (some keys twice), delete and insert; fault fails one frame. Every write
 * whose completion failed (with fail_rc, never anything else) left no trace that a reader can
 * see, and every one that succeeded is there, also after a reopen. After the reopen, a failed
 * write is gone too when lost (the write never reached the file); when the fdatasync failed,
 * the data may have reached the disk: then a key may also hold what a failed write after its
 * last successful one wrote. Values of pad bytes (see value_pad): small ones are taken back
 * from the frame's log, large ones from a snapshot, and with both, a frame's log precedes its
 * snapshot. */
static void failed_frames_undo_their_writes(const char *fault, int fail_rc, bool lost, int pad)
{
    fresh_dir();
    value_pad = pad;
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

    static struct undo_op ops[UNDO_OPS];
    static char keys[UNDO_OPS][32], vals[UNDO_OPS][600];
    int nops = 0;
    for (int i = 0; i < UNDO_OLD + UNDO_NEW; i++) {
        bool old = i < UNDO_OLD;
        ops[nops++] = (struct undo_op){i, old && i % 3 == 1 ? -1 : 2, 1};
        if (old && i % 3 == 0)
            ops[nops++] = (struct undo_op){i, 3, 1};
    }
    assert_int_equal(nops, UNDO_OPS);

    /* lost: the failure is immediate; a group-commit delay makes the failed frame gather many
     * of the writes in flight. Otherwise the failed frame is really written, and the next one
     * fills meanwhile: both are taken back. */
    assert_int_equal(open_with(&db, "wal_compress_bytes=0",
                               lost ? "group_commit_delay_us=1000" : "group_commit_delay_us=0",
                               fault, NULL),
                     0);
    cs_session *s;
    assert_int_equal(cs_session_open(db, UNDO_DEPTH, &s), 0);
    struct cs_completion done[UNDO_DEPTH];
    int completed = 0;
    for (int j = 0; j < nops || completed < nops;) {
        if (j < nops && cs_session_inflight(s) < UNDO_DEPTH) {
            key_of(ops[j].key, keys[j]);
            int rc =
                ops[j].version < 0
                    ? cs_session_del(s, "d", keys[j], strlen(keys[j]), (uint64_t)j)
                    : cs_session_put(s, "d", keys[j], strlen(keys[j]), vals[j],
                                     value_of(ops[j].key, ops[j].version, vals[j]), (uint64_t)j);
            assert_int_equal(rc, 0);
            j++;
            continue;
        }
        int n = cs_session_poll(s, done, UNDO_DEPTH, 1);
        assert_true(n > 0);
        for (int d = 0; d < n; d++)
            ops[done[d].user_data].rc = done[d].rc;
        completed += n;
    }
    cs_session_close(s);
    int ok = 0, failed = 0;
    for (int j = 0; j < nops; j++) {
        if (ops[j].rc != 0 && ops[j].rc != fail_rc)
            fail_msg("write %d: %s, expected 0 or %s", j, cs_strerror(ops[j].rc),
                     cs_strerror(fail_rc));
        ok += ops[j].rc == 0;
        failed += ops[j].rc != 0;
    }
    assert_true(ok > UNDO_DEPTH / 2); /* the frames before the failed one */
    assert_true(failed > 1);          /* a frame of more than one record failed */
    for (int pass = 0; pass < 2; pass++) {
        uint64_t present = 0;
        bool maybe = pass == 1 && !lost;
        for (int i = 0, j = 0; i < UNDO_OLD + UNDO_NEW; i++) {
            int first = j;
            while (j < nops && ops[j].key == i)
                j++;
            int want = undo_state(ops, first, j, i, false), got = read_version(db, i);
            present += want >= 0;
            bool allowed = got == want;
            /* after a failed fdatasync, any later failed write may have reached the disk */
            int last_ok = first - 1;
            for (int o = first; o < j; o++)
                if (ops[o].rc == 0)
                    last_ok = o;
            for (int o = last_ok + 1; maybe && o < j; o++)
                allowed = allowed || got == undo_state(ops, first, o + 1, i, true);
            if (!allowed)
                fail_msg("pass %d, key %d: version %d, expected %d", pass, i, got, want);
        }
        if (!maybe)
            assert_int_equal(stats0(db).records, present);
        int close_rc = cs_close(db);
        assert_true(close_rc == 0 || close_rc == CS_EIO);
        if (pass == 0)
            assert_int_equal(open_with(&db, NULL), 0);
    }
    value_pad = 400;
}

static void test_failed_frames_undo_exactly_their_writes_eio(void **state)
{
    (void)state;
    /* small values are taken back from the frame's log, large ones from a snapshot */
    failed_frames_undo_their_writes("fault=fsync_eio=4,latency_us=2000", CS_EIO, false, 40);
    failed_frames_undo_their_writes("fault=fsync_eio=4,latency_us=2000", CS_EIO, false, 400);
    failed_frames_undo_their_writes("fault=fsync_eio=4,latency_us=2000", CS_EIO, false,
                                    -1); /* both */
}

static void test_failed_frames_undo_exactly_their_writes_enospc(void **state)
{
    (void)state;
    failed_frames_undo_their_writes("fault=write_enospc=4", -ENOSPC, true, 40);
    failed_frames_undo_their_writes("fault=write_enospc=4", -ENOSPC, true, 400);
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
    /* leftovers of an interrupted checkpoint and segment creation, and no LOCK file: verify and
     * an in-memory open (durability=none) read them all and remove or create nothing */
    char shard[400], path[700];
    snprintf(shard, sizeof(shard), "%s/shard-000", dbdir);
    const char *leftovers[] = {"snap-00000000000000ff.tmp", "wal-00000000000000ff.log.tmp"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", shard, leftovers[i]);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/LOCK", dbdir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(cs_verify(dbdir, NULL, NULL), 0);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(open_with(&db, "durability=none", NULL), 0);
    check_i(db, 299, 1);
    assert_int_equal(cs_close(db), 0);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", shard, leftovers[i]);
        assert_int_equal(access(path, F_OK), 0);
    }
    /* a normal open cleans them up */
    assert_int_equal(open_with(&db, NULL), 0);
    assert_int_equal(cs_close(db), 0);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", shard, leftovers[i]);
        assert_int_equal(access(path, F_OK), -1);
    }
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
    /* one record frames take a block each: this lands in the middle of the log */
    flip_in("wal-", 4096 * 101 + 200);
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

/* The newest checkpoint damaged, the one before it sound: the open loads the older one and
 * replays the WAL since it (kept for this), losing nothing. */
static void test_damaged_newest_checkpoint_falls_back_to_the_one_before(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db;
    assert_int_equal(open_with(&db, "durability=async", "checkpoint_wal_bytes=0", NULL), 0);
    for (int i = 0; i < 3000; i++)
        put_i(db, i, 1);
    assert_int_equal(cs_checkpoint(db), 0);
    for (int i = 1000; i < 4000; i++)
        put_i(db, i, 2);
    assert_int_equal(cs_checkpoint(db), 0);
    for (int i = 3500; i < 4500; i++)
        put_i(db, i, 3);
    assert_int_equal(cs_close(db), 0);
    assert_int_equal(count_files("snap-"), 2);
    /* damage the newest one (the names sort by LSN) */
    char shard0[400], newest[256] = "", path[700];
    snprintf(shard0, sizeof(shard0), "%s/shard-000", dbdir);
    DIR *d = opendir(shard0);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "snap-", 5) == 0 && strcmp(e->d_name, newest) > 0)
            snprintf(newest, sizeof(newest), "%s", e->d_name);
    closedir(d);
    snprintf(path, sizeof(path), "%s/%s", shard0, newest);
    FILE *f = fopen(path, "r+");
    assert_non_null(f);
    fseek(f, 64 + 32 + 10, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 64 + 32 + 10, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
    assert_int_equal(open_with(&db, NULL), 0);
    assert_true(stats0(db).recovered_records >= 3000);
    for (int i = 0; i < 4500; i++)
        check_i(db, i, i < 1000 ? 1 : (i < 3500 ? 2 : 3));
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
    cst_tmpdir_make(root, sizeof(root), "durability");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return cst_tmpdir_remove(root);
}

/* io_uring itself failing (not one write) must fail-stop like a failed frame: writes fail with
 * CS_EIO from then on, reads keep working and never show an unacknowledged write, close returns
 * (it used to wait forever for the lost completion), and after a reopen every acknowledged write
 * is there. */
static void test_ring_failure_fails_stop_and_close_returns(void **state)
{
    (void)state;
    for (int nth = 3; nth <= 12; nth += 3) {
        fresh_dir();
        cs_db *db;
        char spec[64];
        snprintf(spec, sizeof(spec), "fault=ring_eio=%d", nth);
        assert_int_equal(open_with(&db, "checkpoint_wal_bytes=0", spec, NULL), 0);
        int acked = 0, failed_at = -1;
        for (int i = 0; i < 200; i++) {
            char k[32], v[600];
            key_of(i, k);
            size_t vl = value_of(i, 1, v);
            int rc = cs_put(db, "d", k, strlen(k), v, vl);
            if (rc == 0 && failed_at < 0) {
                acked = i + 1;
                continue;
            }
            if (failed_at < 0)
                failed_at = i;
            assert_int_equal(rc, CS_EIO);
        }
        assert_true(failed_at >= 0); /* the fault fired */
        for (int i = 0; i < acked; i++)
            check_i(db, i, 1);
        for (int i = failed_at + 1; i < 200; i++)
            check_i(db, i, -1);
        assert_int_equal(cs_close(db), CS_EIO);
        assert_int_equal(open_with(&db, NULL), 0);
        for (int i = 0; i < acked; i++)
            check_i(db, i, 1);
        for (int i = failed_at + 1; i < 200; i++)
            check_i(db, i, -1);
        assert_int_equal(cs_close(db), 0);
    }
}

/* The LOCK file's clean-close mark: after a process ended without cs_close (its io_uring writes
 * may still be landing), the next open appends to a new WAL segment; after a clean close it
 * appends to the last one. */
static void test_unclean_end_makes_the_next_open_start_a_new_segment(void **state)
{
    (void)state;
    fresh_dir();
    cs_db *db;
    assert_int_equal(open_with(&db, NULL), 0);
    put_i(db, 1, 1);
    assert_int_equal(cs_close(db), 0);
    int segs = count_files("wal-");
    assert_int_equal(open_with(&db, NULL), 0); /* after a clean close: the same segment */
    put_i(db, 2, 1);
    assert_int_equal(count_files("wal-"), segs);
    assert_int_equal(cs_close(db), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        cs_db *child;
        if (open_with(&child, NULL) != 0)
            _exit(2);
        char k[32], v[600];
        key_of(3, k);
        size_t vl = value_of(3, 1, v);
        _exit(cs_put(child, "d", k, strlen(k), v, vl) == 0 ? 0 : 1); /* no cs_close */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(open_with(&db, NULL), 0);
    assert_int_equal(count_files("wal-"), segs + 1);
    for (int i = 1; i <= 3; i++)
        check_i(db, i, 1);
    assert_int_equal(cs_close(db), 0);
    assert_int_equal(open_with(&db, NULL), 0);
    assert_int_equal(count_files("wal-"), segs + 1);
    assert_int_equal(cs_close(db), 0);
}

/* Disk blocks held by the shard's WAL segments. */
static uint64_t wal_disk_bytes(void)
{
    char shard[400], path[700];
    snprintf(shard, sizeof(shard), "%s/shard-000", dbdir);
    DIR *d = opendir(shard);
    assert_non_null(d);
    uint64_t bytes = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "wal-", 4) == 0) {
            struct stat st;
            snprintf(path, sizeof(path), "%s/%s", shard, e->d_name);
            assert_int_equal(stat(path, &st), 0);
            bytes += (uint64_t)st.st_blocks * 512u;
        }
    closedir(d);
    return bytes;
}

/* A crash loop: every unclean end starts a new segment at the next open; the old one gives its
 * preallocated tail back, so the log's disk use does not grow by a segment per crash. */
static void test_unclean_reopens_give_back_the_old_segments_disk(void **state)
{
    (void)state;
    fresh_dir();
    enum { CRASHES = 6 };
    for (int i = 0; i < CRASHES; i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            cs_db *child;
            if (open_with(&child, "wal_segment_bytes=16M", NULL) != 0)
                _exit(2);
            put_i(child, i, 1);
            _exit(0); /* no cs_close */
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    cs_db *db;
    assert_int_equal(open_with(&db, "wal_segment_bytes=16M", NULL), 0);
    for (int i = 0; i < CRASHES; i++)
        check_i(db, i, 1);
    assert_true(count_files("wal-") >= CRASHES);
    uint64_t used = wal_disk_bytes();
    /* the live segment is preallocated (16 MiB); each dead one keeps only what it holds */
    if (used > 24u << 20)
        fail_msg("the WAL holds %llu bytes of disk after %d unclean ends", (unsigned long long)used,
                 CRASHES);
    assert_int_equal(cs_close(db), 0);
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
        cmocka_unit_test(test_damaged_newest_checkpoint_falls_back_to_the_one_before),
        cmocka_unit_test(test_ring_failure_fails_stop_and_close_returns),
        cmocka_unit_test(test_unclean_end_makes_the_next_open_start_a_new_segment),
        cmocka_unit_test(test_unclean_reopens_give_back_the_old_segments_disk),
        cmocka_unit_test(test_damaged_checkpoint_is_salvaged_and_replaced),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
